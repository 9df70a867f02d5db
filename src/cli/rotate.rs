//! `rotor rotate` and `rotor recover`. Rotation first settles whatever an earlier run left
//! open (DESIGN.md invariant 4), then rotates the selected credentials.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;

use super::output::{Output, open_vault};
use super::{CliResult, Failure, Global, OutputFormat, usage};
use crate::connector::ConnectorError;
use crate::connector::FaultClass;
use crate::credential::CredentialId;
use crate::credential::{AccountName, HostName};
use crate::engine::blast::FailureLimit;
use crate::engine::directory::{Directories, DirectoryWork, OpenDirectory, rotate_directory};
use crate::engine::driver::lease_ttl;
use crate::engine::driver::{self, CredentialResult, Fleet, HostWork, Progress, RunOptions};
use crate::engine::machine::Fault;
use crate::engine::{Outcome, Store};
use crate::inventory::{Directory, DirectorySelection, Host, Inventory, Scope, same_dn};
use crate::playbook::{LdapDirectories, SshFleet};
use crate::report::{FailedDirectory, RunReport};

/// Which credentials: `--scope` (repeatable) or `--all`.
#[derive(Debug, Args, Clone)]
pub struct Selection {
    /// The inventory file (YAML).
    #[arg(short, long, value_name = "FILE")]
    pub inventory: PathBuf,
    /// What to act on: all, host:NAME, group:NAME, account:NAME, directory:NAME,
    /// cred:HOST/ACCOUNT (or DIRECTORY/UID). Repeatable.
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// Everything in the inventory (same as --scope all).
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// Why (recorded with the run), e.g. a ticket or incident number.
    #[arg(long, default_value = "manual rotation")]
    pub reason: String,
    /// Hosts worked on at once, and accounts of one directory rotated at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// Deadline of each SSH or LDAP step (connect, handshake, one command or operation), in
    /// seconds.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub step_timeout: u64,
    /// Rotate this many hosts first; if any of them fails, start no other host.
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub canary: usize,
    /// Unpark credentials parked after repeated failed logins and try them again (after you
    /// fixed why their logins failed).
    #[arg(long)]
    pub retry_parked: bool,
    /// Stop starting new hosts once more than this many hosts failed: a count (5) or a
    /// percentage of the run's hosts (10%). Unreachable hosts count as failed.
    #[arg(long, value_name = "N|P%", value_parser = parse_failure_limit)]
    pub max_failures: Option<FailureLimit>,
    /// `text` for people, `json` for programs.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

fn parse_failure_limit(s: &str) -> Result<FailureLimit, String> {
    s.parse()
}

#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// The inventory file (YAML) that holds the hosts of the interrupted rotations.
    #[arg(short, long, value_name = "FILE")]
    pub inventory: PathBuf,
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub step_timeout: u64,
    /// An operator fixed what went wrong with this credential (HOST/ACCOUNT): unpark it if it
    /// was parked after failed logins, and settle its rotation if it was stuck. Repeatable.
    #[arg(long = "cred", value_name = "HOST/ACCOUNT")]
    pub creds: Vec<String>,
    /// Like --cred, for every credential in a scope (all, host:NAME, group:NAME,
    /// account:NAME, directory:NAME, cred:HOST/ACCOUNT). Repeatable.
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// `text` for people, `json` for programs.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// What a selection resolved to.
pub struct Resolved {
    pub inv: Inventory,
    pub hosts: Vec<HostWork>,
    pub directories: Vec<DirectorySelection>,
    /// The scopes as written, for the run record.
    pub label: String,
}

/// Loads the inventory and resolves the selection into per-host work, or a usage error.
pub fn resolve(sel: &Selection) -> Result<Resolved, Failure> {
    if !sel.all && sel.scopes.is_empty() {
        return Err(usage(
            "say what to act on: --all, or one or more --scope (all, host:NAME, group:NAME, account:NAME, directory:NAME, cred:HOST/ACCOUNT)",
        ));
    }
    let mut scopes = Vec::new();
    if sel.all {
        scopes.push(Scope::All);
    }
    for s in &sel.scopes {
        scopes.push(Scope::parse(s).map_err(usage)?);
    }
    let label = if sel.all {
        vec!["all".to_owned()]
    } else {
        sel.scopes.clone()
    }
    .join(" ");
    let inv = crate::inventory::load(&sel.inventory)?;
    let selected = inv.select(&scopes).map_err(usage)?;
    let hosts = host_work(&inv, selected.hosts);
    Ok(Resolved {
        inv,
        hosts,
        directories: selected.directories,
        label,
    })
}

/// Opens the selected directories (rotor's bind, searches run) and keeps the selected
/// accounts. A directory that cannot be opened is reported, not fatal: the rest runs.
/// Returned apart, as results that changed nothing: an account a `cred:` scope names that the
/// directory does not have (missing), and for new rotations the accounts the directory says
/// must be left alone (`OpenDirectory::may_rotate`: rotor cannot see their locks, say).
pub fn open_directories(
    inv: &Inventory,
    selected: &[DirectorySelection],
    dirs: &dyn Directories,
    purpose: Purpose,
) -> (
    Vec<DirectoryWork>,
    Vec<FailedDirectory>,
    Vec<CredentialResult>,
) {
    let (mut works, mut failed, mut not_started) = (Vec::new(), Vec::new(), Vec::new());
    for sel in selected {
        let d = &sel.directory;
        let opened = dirs.open(d).and_then(|open| {
            let refusals = match purpose {
                Purpose::Rotate => open.may_rotate()?,
                Purpose::RecoverOrVerify => Vec::new(),
            };
            Ok((open, refusals))
        });
        let (open, refusals) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                failed.push(FailedDirectory {
                    directory: d.name.to_string(),
                    class: e.class,
                    message: e.message,
                });
                continue;
            }
        };
        let mut accounts: Vec<(AccountName, String)> = open.accounts().to_vec();
        // rotor's own bind account is rotated only when named (`cred:DIR/UID`), and last: never
        // among the others, even where a listed DN or a search matches its entry (under its
        // credential's name or another uid), since the run's admin connection binds as it.
        let bind_uid = &d.bind_credential.account;
        let bind_account = sel
            .named
            .contains(bind_uid)
            .then(|| (bind_uid.clone(), d.bind_dn.clone()));
        let (bind_entry, others): (Vec<_>, Vec<_>) = accounts
            .into_iter()
            .partition(|(uid, dn)| uid == bind_uid || same_dn(dn, &d.bind_dn));
        accounts = others;
        if !bind_entry.is_empty() && bind_account.is_none() {
            tracing::info!(
                directory = %d.name,
                "rotor's own bind account ({}) is among the directory's accounts; it is rotated only when named: --scope cred:{}",
                d.bind_dn,
                d.bind_credential
            );
        }
        if let Some(only) = &sel.only {
            accounts.retain(|(uid, _)| only.contains(uid));
            for uid in only
                .iter()
                .filter(|u| *u != bind_uid && !accounts.iter().any(|(a, _)| a == *u))
            {
                let (class, why) = if bind_entry.iter().any(|(a, _)| a == uid) {
                    (
                        FaultClass::Refused,
                        format!(
                            "{}: this is rotor's own bind account ({}); to rotate it, name it as --scope cred:{}",
                            d.name, d.bind_dn, d.bind_credential
                        ),
                    )
                } else {
                    (
                        FaultClass::AccountMissing,
                        format!(
                            "{}: no such account among the directory's DNs and search results",
                            d.name
                        ),
                    )
                };
                not_started.push(CredentialResult {
                    cred: CredentialId::new(d.name.clone(), uid.clone()),
                    outcome: Outcome::NotChanged {
                        cause: Fault::target(class, why),
                    },
                    rotation: None,
                    elapsed_ms: 0,
                });
            }
        }
        // By DN: a refused search base can hold thousands of the accounts.
        let refused: std::collections::HashMap<&str, &ConnectorError> = refusals
            .iter()
            .flat_map(|r| r.dns.iter().map(move |dn| (dn.as_str(), &r.cause)))
            .collect();
        for r in &refusals {
            tracing::warn!(directory = %d.name, n_accounts = r.dns.len(), "{}", r.cause.message);
        }
        accounts.retain(|(uid, dn)| {
            let Some(cause) = refused.get(dn.as_str()) else {
                return true;
            };
            not_started.push(CredentialResult {
                cred: CredentialId::new(d.name.clone(), uid.clone()),
                outcome: Outcome::NotChanged {
                    cause: Fault::target(cause.class, cause.message.clone()),
                },
                rotation: None,
                elapsed_ms: 0,
            });
            false
        });
        // The inventory validates that the directory's policy exists.
        let policy = inv
            .policies
            .get(&d.policy)
            .expect("validated policy")
            .clone();
        works.push(DirectoryWork {
            name: d.name.clone(),
            open,
            accounts,
            policy,
            bind_account,
        });
    }
    (works, failed, not_started)
}

/// What a command opens directories for: new rotations need more of a directory (rotor must
/// be able to tell a locked account) than settling old ones or checking logins does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Rotate,
    RecoverOrVerify,
}

/// Opens each directory at most once per command (one bind, one set of searches), whoever
/// asks: the recovery pass and the run that follows it.
struct OpenOnce<D> {
    inner: D,
    opened: std::sync::Mutex<std::collections::HashMap<HostName, Arc<dyn OpenDirectory>>>,
}

impl<D: Directories> OpenOnce<D> {
    fn new(inner: D) -> OpenOnce<D> {
        OpenOnce {
            inner,
            opened: Default::default(),
        }
    }
}

impl<D: Directories> Directories for OpenOnce<D> {
    fn open(&self, directory: &Directory) -> Result<Arc<dyn OpenDirectory>, ConnectorError> {
        // The lock is not held during `inner.open` (network I/O). Callers open directories
        // one after another, so no directory is opened twice at once.
        if let Some(open) = self
            .opened
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&directory.name)
        {
            return Ok(open.clone());
        }
        let open = self.inner.open(directory)?;
        self.opened
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(directory.name.clone(), open.clone());
        Ok(open)
    }
}

/// The directories that hold open rotations, opened for recovery.
fn directories_to_recover(
    inv: &Inventory,
    store: &dyn Store,
    dirs: &dyn Directories,
) -> Result<(Vec<DirectoryWork>, Vec<FailedDirectory>), Failure> {
    let open = store.open_rotations()?;
    let wanted: Vec<DirectorySelection> = inv
        .directories
        .iter()
        .filter(|d| open.iter().any(|r| r.cred.host == d.name))
        .map(|d| DirectorySelection {
            directory: d.clone(),
            only: None,
            named: Default::default(),
        })
        .collect();
    let (mut works, failed, _) = open_directories(inv, &wanted, dirs, Purpose::RecoverOrVerify);
    // Recovery may need to settle a rotation of rotor's own bind account too.
    for w in &mut works {
        if let Some(d) = inv.directories.iter().find(|d| d.name == w.name) {
            w.bind_account = Some((d.bind_credential.account.clone(), d.bind_dn.clone()));
        }
    }
    Ok((works, failed))
}

/// Pairs each selected account with its policy.
pub fn host_work(inv: &Inventory, hosts: Vec<Host>) -> Vec<HostWork> {
    hosts
        .into_iter()
        .map(|host| {
            let accounts = host
                .accounts
                .iter()
                .map(|a| {
                    // The inventory validates that every account's policy exists.
                    let policy = inv
                        .policies
                        .get(&a.policy)
                        .expect("validated policy")
                        .clone();
                    (a.name.clone(), policy)
                })
                .collect();
            HostWork { host, accounts }
        })
        .collect()
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(1024)
        .build()?)
}

/// Test hook (only with the `lab` feature): with `ROTOR_LAB_HOLD_AFTER_BEGIN=FILE`, the run
/// writes `FILE.waiting` once it has begun and waits until `FILE` exists, so a test can break
/// something (e.g. fill the vault's disk) at that exact moment. Release builds lack it.
#[cfg(feature = "lab")]
fn hold_after_begin() {
    let Ok(go) = std::env::var("ROTOR_LAB_HOLD_AFTER_BEGIN") else {
        return;
    };
    let _ = std::fs::write(format!("{go}.waiting"), b"");
    crate::engine::driver::lab_hold(std::path::Path::new(&go));
}

#[cfg(not(feature = "lab"))]
fn hold_after_begin() {}

/// First SIGINT/SIGTERM: start nothing new, let in-flight rotations finish or roll back, then
/// print the report. A second one exits at once; `rotor recover` settles what it left open.
async fn stop_on_signal(stop: Arc<AtomicBool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; an interrupt will stop rotor at once");
        return;
    };
    for n in 0.. {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        if n == 0 {
            stop.store(true, Ordering::SeqCst);
            eprintln!(
                "\nrotor: stopping: no new host or account starts; rotations in flight finish or roll back (interrupt again to quit now; `rotor recover` settles what is left)"
            );
        } else {
            eprintln!("rotor: quitting now; run `rotor recover` to settle open rotations");
            std::process::exit(130);
        }
    }
}

fn progress_callback(bar: &indicatif::ProgressBar) -> Progress {
    let bar = bar.clone();
    Arc::new(move |r: &CredentialResult| {
        if r.outcome != Outcome::Committed {
            bar.set_message(format!("{}: {}", r.cred, r.outcome.label()));
        }
        bar.inc(1);
    })
}

fn emit(out: Output, report: &RunReport) {
    match out.format {
        OutputFormat::Json => outln!("{}", report.to_json()),
        OutputFormat::Text => out!("{}", report.to_text()),
    }
}

pub fn run(g: &Global, a: RotateArgs) -> CliResult {
    let Resolved {
        inv,
        hosts: work,
        directories: selected_dirs,
        label,
    } = resolve(&a.selection)?;
    let out = Output::new(a.output);
    let vault = open_vault(g)?;
    let store: Arc<dyn Store> = vault;
    let fleet: Arc<dyn Fleet> = Arc::new(SshFleet {
        store: store.clone(),
        step_timeout: Duration::from_secs(a.step_timeout),
    });
    let options = RunOptions {
        canary: a.canary,
        max_failures: a.max_failures.unwrap_or(FailureLimit::Unlimited),
        lease_ttl: lease_ttl(Duration::from_secs(a.step_timeout)),
        retry_parked: a.retry_parked,
        ..RunOptions::new(a.concurrency as usize)
    };
    let rt = runtime()?;
    rt.spawn(stop_on_signal(options.stop.clone()));
    // Recovery and the run share each directory's admin connection and resolved searches.
    let dirs = OpenOnce::new(LdapDirectories {
        store: store.clone(),
        step_timeout: Duration::from_secs(a.step_timeout),
        runtime: rt.handle().clone(),
    });

    // Settle what an earlier run left open before starting new work on the same credentials.
    let everything = host_work(&inv, inv.hosts.clone());
    let (recover_dirs, mut failed_dirs) = directories_to_recover(&inv, &*store, &dirs)?;
    let recovered = rt.block_on(driver::recover(
        &everything,
        &recover_dirs,
        store.clone(),
        fleet.clone(),
        options.clone(),
    ))?;
    let (dir_work, failed, not_started) =
        open_directories(&inv, &selected_dirs, &dirs, Purpose::Rotate);
    failed_dirs.extend(failed);
    let recovered = RunReport::new("recover", None, None, 0, recovered);
    if recovered.exit_code() == 4 {
        tracing::warn!(
            "some interrupted rotations are still open; their credentials are skipped in this run"
        );
    }

    let n_creds: usize = work.iter().map(|w| w.accounts.len()).sum::<usize>()
        + dir_work.iter().map(|d| d.accounts.len()).sum::<usize>();
    let bar = out.progress(n_creds, "rotating");
    let options = RunOptions {
        progress: Some(progress_callback(&bar)),
        ..options
    };
    let run = store.begin_run(&options.actor, &a.reason, &label)?;
    hold_after_begin();
    let started = Instant::now();
    let mut results = rt.block_on(async {
        let hosts = driver::rotate(work, run, store.clone(), fleet, options.clone());
        let directories = async {
            let mut all = Vec::new();
            for d in dir_work {
                all.extend(rotate_directory(d, run, store.clone(), options.clone()).await);
            }
            all
        };
        let (mut h, d) = tokio::join!(hosts, directories);
        h.extend(d);
        h
    });
    results.extend(not_started);
    bar.finish_and_clear();
    let report = RunReport::new(
        "rotate",
        Some(run),
        Some(a.reason.clone()),
        started.elapsed().as_millis() as u64,
        results,
    )
    .with_recovered(recovered)
    .with_failed_directories(failed_dirs)
    .with_directories(inv.directories.iter().map(|d| d.name.as_str()));
    // The report first: it is what the operator needs, even if the vault cannot record the
    // end of the run (a full disk, say).
    emit(out, &report);
    if let Err(e) = store.end_run(&options.actor, run, &serde_json::to_string(&report.counts)?) {
        tracing::error!("could not record the end of run {run}: {e}");
    }
    Ok(report.exit_code())
}

/// The credentials the operator vouches for (`--cred`, `--scope`), without duplicates. A
/// scope goes through the inventory's selection, so a typo is an error, not "nothing";
/// a directory's accounts are whatever of it the vault holds (its searches are not run).
fn vouched_for(
    inv: &Inventory,
    vault: &crate::store::Vault,
    a: &RecoverArgs,
) -> Result<Vec<CredentialId>, Failure> {
    let mut creds = std::collections::BTreeSet::new();
    for c in &a.creds {
        creds.insert(CredentialId::parse(c).map_err(usage)?);
    }
    if !a.scopes.is_empty() {
        let scopes = a
            .scopes
            .iter()
            .map(|s| Scope::parse(s).map_err(usage))
            .collect::<Result<Vec<_>, _>>()?;
        let selected = inv.select(&scopes).map_err(usage)?;
        creds.extend(selected.credentials());
        let in_vault = vault.status()?;
        for d in &selected.directories {
            creds.extend(
                in_vault
                    .iter()
                    .filter(|s| s.cred.host == d.directory.name)
                    .filter(|s| {
                        d.only
                            .as_ref()
                            .is_none_or(|only| only.contains(&s.cred.account))
                    })
                    .map(|s| s.cred.clone()),
            );
        }
    }
    Ok(creds.into_iter().collect())
}

pub fn recover(g: &Global, a: RecoverArgs) -> CliResult {
    let inv = crate::inventory::load(&a.inventory)?;
    let out = Output::new(a.output);
    let vault = open_vault(g)?;
    for cred in vouched_for(&inv, &vault, &a)? {
        if vault.parked(&cred)?.is_some() {
            vault.unpark(&cred)?;
            eprintln!("Unparked {cred}: rotor will log in as it again.");
        }
        if vault.reopen_stuck(&cred)? {
            eprintln!("Reopened the stuck rotation of {cred}: recovery settles it now.");
        }
    }
    let store: Arc<dyn Store> = vault;
    let fleet: Arc<dyn Fleet> = Arc::new(SshFleet {
        store: store.clone(),
        step_timeout: Duration::from_secs(a.step_timeout),
    });
    let started = Instant::now();
    let everything = host_work(&inv, inv.hosts.clone());
    let rt = runtime()?;
    let dirs = LdapDirectories {
        store: store.clone(),
        step_timeout: Duration::from_secs(a.step_timeout),
        runtime: rt.handle().clone(),
    };
    let (recover_dirs, failed_dirs) = directories_to_recover(&inv, &*store, &dirs)?;
    for f in &failed_dirs {
        tracing::error!(directory = %f.directory, "cannot open the directory to recover its rotations: {}", f.message);
    }
    let results = rt.block_on(driver::recover(
        &everything,
        &recover_dirs,
        store,
        fleet,
        RunOptions {
            lease_ttl: lease_ttl(Duration::from_secs(a.step_timeout)),
            ..RunOptions::new(32)
        },
    ))?;
    if results.is_empty() && out.format == OutputFormat::Text {
        outln!("Nothing to recover: no rotation is open.");
        return Ok(0);
    }
    let report = RunReport::new(
        "recover",
        None,
        None,
        started.elapsed().as_millis() as u64,
        results,
    )
    .with_directories(inv.directories.iter().map(|d| d.name.as_str()));
    emit(out, &report);
    // Recovery that ends every rotation (committed or rolled back) has done its job.
    let c = report.counts;
    Ok(if c.stuck > 0 || c.unsettled > 0 { 4 } else { 0 })
}

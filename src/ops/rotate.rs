//! `rotate`: settle whatever an earlier run left open anywhere in the inventory (DESIGN.md
//! invariant 4), then rotate the selected credentials of hosts and directories in one run.
//!
//! Order, owned here: recovery first (so no new rotation starts over an open one), then the
//! selected directories are opened for rotation (sharing the recovery's admin connections),
//! the run begins, hosts and directories rotate at once, the report is delivered, and only
//! then is the end of the run recorded: a vault that cannot record it (a full disk) must not
//! swallow the report.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::directories::{OpenOnce, Purpose, directories_to_recover, host_work, open_directories};
use super::{Actor, Context, OpsError, Progress, watch_shutdown};
use crate::credential::CredentialId;
use crate::engine::Outcome;
use crate::engine::blast::FailureLimit;
use crate::engine::directory::rotate_directory;
use crate::engine::driver::{self, CredentialResult, RunOptions, lease_ttl};
use crate::inventory::{Inventory, Selection};
use crate::report::RunReport;

/// What to rotate, how, and for whom.
pub struct RotateRequest<'a> {
    pub inventory: &'a Inventory,
    /// The inventory's selection for the request's scopes.
    pub selection: Selection,
    /// The scopes as written, for the run record.
    pub label: String,
    /// Why (recorded with the run), e.g. a ticket or incident number.
    pub reason: String,
    pub actor: Actor,
    /// Hosts worked on at once, and accounts of one directory rotated at once.
    pub concurrency: usize,
    /// Deadline of each SSH or LDAP step.
    pub step_timeout: Duration,
    /// Hosts rotated first, as a batch; if one fails, no other host starts.
    pub canary: usize,
    pub max_failures: FailureLimit,
    /// Unpark parked credentials and try them again.
    pub retry_parked: bool,
    /// Rotate checked-out credentials too: their checkouts end first (recorded as an
    /// override) and the holder's secret stops working. Otherwise they are skipped.
    pub include_checked_out: bool,
    /// The incident profile: assume the attacker knows every current credential. Adds the
    /// connect identities of the hosts in scope (rotated last on each host) and rotor's bind
    /// accounts of the directories in scope, rotates checked-out credentials too (their
    /// checkouts end, recorded), replaces each SSH key account's whole `authorized_keys`,
    /// and surveys each host for accounts the inventory does not know and live sessions.
    pub breach: bool,
    pub progress: Option<Arc<dyn Progress>>,
    /// Given the report as soon as it exists, before the end of the run is recorded.
    pub deliver: Option<Deliver<'a>>,
}

/// Takes a run's report as soon as it exists (the CLI prints it).
pub type Deliver<'a> = Box<dyn FnOnce(&RunReport) + 'a>;

impl<'a> RotateRequest<'a> {
    /// A request with the CLI's defaults (32 at once, 20 s steps, no canary, no limit).
    pub fn new(inventory: &'a Inventory, selection: Selection, label: String) -> Self {
        RotateRequest {
            inventory,
            selection,
            label,
            reason: "manual rotation".to_owned(),
            actor: Actor::of_this_process(),
            concurrency: 32,
            step_timeout: Duration::from_secs(20),
            canary: 0,
            max_failures: FailureLimit::Unlimited,
            retry_parked: false,
            include_checked_out: false,
            breach: false,
            progress: None,
            deliver: None,
        }
    }
}

/// Resolves scopes as written (`all`, `host:emr-*`, `group:emr,group:lab`, `!host:x`, ...)
/// against `inv` ([`Inventory::select_written`]): the selection and the label a run records.
/// One resolver for `rotor rotate --scope` and `POST /api/v1/rotations`, so both select the
/// same credentials for the same words.
pub fn select(
    inv: &Inventory,
    scopes: &[String],
) -> Result<(Selection, String), crate::inventory::ScopeError> {
    Ok((inv.select_written(scopes)?, scopes.join(" ")))
}

/// How a rotation request ended.
pub struct Rotated {
    pub report: RunReport,
    /// The shutdown future completed during the run: what had not started is skipped.
    pub interrupted: bool,
}

/// Recovers, then rotates the request's selection. A credential that fails is a result; only
/// a vault that cannot be read or cannot begin the run fails the whole request.
pub fn rotate(
    ctx: &Context,
    req: RotateRequest<'_>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Rotated, OpsError> {
    let _span = tracing::info_span!("rotate", actor = %req.actor).entered();
    let (stop, _watch) = watch_shutdown(&ctx.runtime, shutdown);
    let inv = req.inventory;
    let mut req = req;
    let mut warnings = Vec::new();
    if req.breach {
        warnings = with_connect_identities(inv, &mut req.selection);
        req.include_checked_out = true;
    }
    let store = ctx.store.clone();
    let fleet = ctx.targets.hosts(req.step_timeout);
    let options = RunOptions {
        canary: req.canary,
        max_failures: req.max_failures,
        lease_ttl: lease_ttl(req.step_timeout),
        retry_parked: req.retry_parked,
        stop: stop.clone(),
        entropy: ctx.entropy.clone(),
        actor: req.actor.clone(),
        breach: req.breach,
        ..RunOptions::new(req.concurrency)
    };
    // Recovery and the run share each directory's admin connection and resolved searches.
    let dirs = OpenOnce::new(ctx.targets.directories(req.step_timeout));

    // Settle what an earlier run left open before starting new work on the same credentials.
    let everything = host_work(inv, inv.hosts.clone());
    let (recover_dirs, mut failed_dirs) = directories_to_recover(inv, &*store, &dirs)?;
    let recovered = ctx.runtime.block_on(driver::recover(
        &everything,
        &recover_dirs,
        store.clone(),
        fleet.clone(),
        options.clone(),
    ))?;
    let (dir_work, failed, not_started) =
        open_directories(inv, &req.selection.directories, &dirs, Purpose::Rotate);
    failed_dirs.extend(failed);
    let recovered = RunReport::new("recover", None, None, 0, recovered);
    if recovered.exit_code() == 4 {
        tracing::warn!(
            "some interrupted rotations are still open; their credentials are skipped in this run"
        );
    }

    // The survey judges each host against the whole inventory host (a scope's selection
    // keeps only some accounts; the others are managed all the same).
    let breach_hosts = req.breach.then(|| {
        inv.hosts
            .iter()
            .filter(|h| req.selection.hosts.iter().any(|s| s.name == h.name))
            .cloned()
            .collect::<Vec<_>>()
    });
    let work = host_work(inv, req.selection.hosts);
    let n_creds: usize = work.iter().map(|w| w.accounts.len()).sum::<usize>()
        + dir_work.iter().map(|d| d.accounts.len()).sum::<usize>();
    let progress = req.progress.clone();
    if let Some(p) = &progress {
        p.start(n_creds);
    }
    let options = RunOptions {
        progress: progress.map(|p| -> driver::Progress {
            Arc::new(move |r: &CredentialResult| {
                let note = (r.outcome != Outcome::Committed).then(|| r.outcome.label());
                p.done(&r.cred, note);
            })
        }),
        ..options
    };
    // `--include-checked-out`: the checkouts of what this run rotates end first (recorded),
    // so admission lets them through; the vault closes each in the transaction that makes
    // its old secret stop working, and one not rotated stays ending for the next command.
    if req.include_checked_out {
        let mut creds: Vec<CredentialId> = work
            .iter()
            .flat_map(|w| w.accounts.iter().map(|a| a.cred.clone()))
            .collect();
        for d in &dir_work {
            creds.extend(
                d.accounts
                    .iter()
                    .chain(&d.bind_account)
                    .map(|(uid, _)| CredentialId::new(d.name.clone(), uid.clone())),
            );
        }
        ctx.checkouts.force_end(&req.actor, &creds)?;
    }
    let run = store.begin_run(&req.actor, &req.reason, &req.label)?;
    hold_after_begin();
    let started = ctx.clock.monotonic();
    let mut results = ctx.runtime.block_on(async {
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
    // Breach mode: each host is read again once its rotation is done, for what the rotation
    // cannot fix (accounts nobody manages, sessions opened before it). An interrupted run
    // skips it and says so per host.
    let breach = breach_hosts
        .map(|hosts| {
            super::breach::survey_hosts(
                ctx,
                super::breach::rotated_on_hosts(&hosts, &results),
                req.concurrency,
                req.step_timeout,
                stop.clone(),
            )
        })
        .unwrap_or_default();
    let elapsed = ctx.clock.monotonic().saturating_duration_since(started);
    let report = RunReport::new(
        "rotate",
        Some(run),
        Some(req.reason.clone()),
        elapsed.as_millis() as u64,
        results,
    )
    .with_recovered(recovered)
    .with_failed_directories(failed_dirs)
    .with_directories(inv.directories.iter().map(|d| d.name.as_str()))
    .with_warnings(warnings)
    .with_breach(breach);
    // The report first: it is what the operator needs, even if the vault cannot record the
    // end of the run (a full disk, say).
    if let Some(deliver) = req.deliver {
        deliver(&report);
    }
    let summary = serde_json::to_string(&report.counts).expect("counts serialize");
    if let Err(e) = store.end_run(&req.actor, run, &summary) {
        tracing::error!("could not record the end of run {run}: {e}");
    }
    Ok(Rotated {
        report,
        interrupted: stop.load(Ordering::SeqCst),
    })
}

/// Breach mode's selection: every listing of each selected host's connect user (its login
/// secret and, for a non-root user, its sudo password), whatever the scopes chose, and rotor's
/// bind account of each selected directory. Returns a warning for each host whose connect
/// identity the inventory does not manage (it cannot be rotated: no playbook is listed).
fn with_connect_identities(
    inv: &Inventory,
    selection: &mut crate::inventory::Selection,
) -> Vec<String> {
    let mut warnings = Vec::new();
    for host in &mut selection.hosts {
        let Some(full) = inv.hosts.iter().find(|h| h.name == host.name) else {
            continue;
        };
        for account in &full.accounts {
            let cred = account.credential(&full.name);
            if full.is_connect_account(&cred)
                && !host
                    .accounts
                    .iter()
                    .any(|a| a.credential(&host.name) == cred)
            {
                host.accounts.push(account.clone());
            }
        }
        if full.connect_credential().is_none() {
            let user = &full.connect.user;
            let (how, playbook) = match &full.connect.auth {
                crate::inventory::ConnectAuth::KeyFile(path) => {
                    (format!("the key {}", path.display()), "linux-ssh-key")
                }
                crate::inventory::ConnectAuth::Vault(cred) => {
                    (format!("the password of {cred}"), "linux-password")
                }
            };
            // A password held under another credential than the host's own must be renamed
            // too: rotor logs in with what it rotates.
            let rename = match &full.connect.auth {
                crate::inventory::ConnectAuth::Vault(cred)
                    if cred.host != full.name || cred.account != *user =>
                {
                    format!(
                        ", store its password as {}/{user} (`rotor enroll`) and write `credential: {}/{user}` in `connect`",
                        full.name, full.name
                    )
                }
                _ => String::new(),
            };
            warnings.push(format!(
                "{}: rotor logs in as {user} with {how}, which this breach run cannot rotate: the host lists no {playbook} credential of {user} among its accounts. Add `{{ name: {user}, playbook: {playbook} }}` to its accounts{rename} and run again",
                full.name
            ));
        }
    }
    for d in &mut selection.directories {
        d.named.insert(d.directory.bind_credential.account.clone());
    }
    warnings
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::engine::testkit::setup;

    use crate::engine::Phase;
    use crate::inventory::Scope;
    use crate::ops::testkit::{context, inventory, runtime};

    fn labels(report: &RunReport) -> Vec<String> {
        report
            .results
            .iter()
            .map(|r| format!("{} {}", r.cred, r.outcome.label()))
            .collect()
    }

    #[test]
    fn a_run_recovers_first_then_rotates_the_selection_and_delivers_the_report() {
        let rt = runtime();
        let (fleet, store, _) = setup(&["a", "b"]);
        // An earlier run died with b/svc_app applied: its new password is on the host.
        store.left_open("b/svc_app", "left-by-crash", "shared", Phase::Applied);
        fleet.with("b", |h| {
            h.passwords.insert("svc_app".into(), "left-by-crash".into());
        });
        let ctx = context(fleet, &store, &rt);
        let inv = inventory(&["a", "b"]);
        let selection = inv.select(&[Scope::parse("host:a").unwrap()]).unwrap();
        let delivered = std::cell::RefCell::new(None);
        let req = RotateRequest {
            deliver: Some(Box::new(|r: &RunReport| {
                *delivered.borrow_mut() = Some(r.counts.committed)
            })),
            ..RotateRequest::new(&inv, selection, "host:a".into())
        };
        let done = rotate(&ctx, req, std::future::pending()).unwrap();
        assert!(!done.interrupted);
        assert_eq!(
            labels(&done.report),
            ["a/svc_app committed", "a/svc_backup committed"]
        );
        let recovered = done.report.recovered.as_ref().expect("recovery ran");
        assert_eq!(labels(recovered), ["b/svc_app committed"]);
        assert_eq!(*delivered.borrow(), Some(2));
        assert_eq!(
            fleet.password("b", "svc_backup").unwrap(),
            "shared",
            "not selected"
        );
    }

    /// Breach mode adds each selected host's connect-user listings whatever the scope chose,
    /// and warns, with the fix, where the connect identity is not managed.
    #[test]
    fn breach_mode_adds_the_connect_identities_of_the_hosts_in_scope() {
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGXbjC8BvG1dBPUlGHX3ZAcUDyRqQx0eEaD0RdzYX5Zq";
        let text = format!(
            "version: 1\npolicies:\n  default: {{ length: 24, classes: [lower, upper, digit] }}\nhosts:\n  - name: h1\n    address: 10.0.0.1\n    host_key: \"{key}\"\n    connect: {{ user: root, key: /k }}\n    accounts:\n      - {{ name: svc, playbook: linux-password }}\n      - {{ name: root, playbook: linux-ssh-key }}\n  - name: h2\n    address: 10.0.0.2\n    host_key: \"{key}\"\n    connect: {{ user: root, key: /k }}\n    accounts:\n      - {{ name: svc, playbook: linux-password }}\n"
        );
        let inv = crate::inventory::parse(&text, std::path::Path::new("inv.yaml")).unwrap();
        let (mut selection, _) = select(&inv, &["account:svc".to_owned()]).unwrap();
        let warnings = with_connect_identities(&inv, &mut selection);
        let chosen: Vec<String> = selection
            .hosts
            .iter()
            .flat_map(|h| h.accounts.iter().map(|a| a.credential(&h.name).to_string()))
            .collect();
        assert_eq!(chosen, ["h1/svc", "h1/root", "h2/svc"]);
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].starts_with("h2: rotor logs in as root with the key /k")
                && warnings[0].contains("{ name: root, playbook: linux-ssh-key }"),
            "{}",
            warnings[0]
        );
    }

    /// Breach mode rotates a checked-out credential too (its checkout ends first); a plain
    /// run skips it.
    #[test]
    fn breach_mode_rotates_checked_out_credentials() {
        let rt = runtime();
        for breach in [false, true] {
            let (fleet, store, _) = setup(&["a"]);
            let app = CredentialId::parse("a/svc_app").unwrap();
            store
                .inner
                .lock()
                .unwrap()
                .checked_out
                .insert(app, "kato (T-1)".into());
            let ctx = context(fleet, &store, &rt);
            let inv = inventory(&["a"]);
            let selection = inv.select(&[Scope::All]).unwrap();
            let req = RotateRequest {
                breach,
                ..RotateRequest::new(&inv, selection, "all".into())
            };
            let done = rotate(&ctx, req, std::future::pending()).unwrap();
            let app = if breach { "committed" } else { "skipped" };
            assert_eq!(
                labels(&done.report),
                [format!("a/svc_app {app}"), "a/svc_backup committed".into()],
                "breach {breach}"
            );
        }
    }

    #[test]
    fn a_shutdown_that_already_happened_starts_nothing() {
        let rt = runtime();
        let (fleet, store, _) = setup(&["a", "b"]);
        let ctx = context(fleet, &store, &rt);
        let inv = inventory(&["a", "b"]);
        let selection = inv.select(&[Scope::All]).unwrap();
        let req = RotateRequest::new(&inv, selection, "all".into());
        let done = rotate(&ctx, req, std::future::ready(())).unwrap();
        assert!(done.interrupted);
        assert!(
            done.report
                .results
                .iter()
                .all(|r| r.outcome.label() == "skipped"),
            "{:?}",
            labels(&done.report)
        );
        assert!(
            fleet.log.lock().unwrap().is_empty(),
            "no host was contacted"
        );
        assert_eq!(done.report.exit_code(), 3);
    }
}

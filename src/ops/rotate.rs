//! `rotate`: settle whatever an earlier run left open anywhere in the inventory (DESIGN.md
//! invariant 4), then rotate the selected credentials of hosts and directories in one run.
//!
//! Order, owned here: recovery first (so no new rotation starts over an open one), then the
//! selected directories are opened for rotation (sharing the recovery's admin connections),
//! the run begins, hosts and directories rotate at once, the report is delivered, and only
//! then is the end of the run recorded: a vault that cannot record it (a full disk) must not
//! swallow the report. The end records who started the run and every credential whose new
//! secret is not in place; `retry` reads it back for `rotate --retry-failed` (`retry_set`
//! is the pure judgement).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::directories::{OpenOnce, Purpose, directories_to_recover, host_work, open_directories};
use super::{Actor, Context, OpsError, Progress, watch_shutdown};
use crate::credential::{CredentialId, HostName};
use crate::engine::blast::FailureLimit;
use crate::engine::directory::rotate_directory;
use crate::engine::driver::{self, CredentialResult, RunOptions, lease_ttl};
use crate::engine::{Outcome, RunId};
use crate::inventory::{Inventory, Selection};
use crate::report::RunReport;
use crate::store::RunRecord;

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
    /// Who asked, recorded with the end of the run.
    pub origin: RunOrigin,
}

/// Who started a run, recorded with its end (in the run's summary), so that
/// `rotate --retry-failed` retries a person's last `rotate` and not the daemon's pass or a
/// checkout's closing rotation that ran after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOrigin {
    /// `rotor rotate`, or `POST /api/v1/rotations`.
    Rotate,
    /// A pass of `rotor serve`'s scheduler.
    Schedule,
    /// The rotation that ends a checkout.
    Checkout,
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
            origin: RunOrigin::Rotate,
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
    // The canary's credentials: the bar says "canary" until each of them is done (the
    // canary hosts run as a batch before any other host starts).
    let canary_hosts: Vec<HostName> = work
        .iter()
        .take(if req.canary < work.len() {
            req.canary
        } else {
            0
        })
        .map(|w| w.host.name.clone())
        .collect();
    let canary_left = Arc::new(std::sync::atomic::AtomicUsize::new(
        work.iter()
            .filter(|w| canary_hosts.contains(&w.host.name))
            .map(|w| w.accounts.len())
            .sum(),
    ));
    if let Some(p) = &progress {
        p.start(n_creds);
        if !canary_hosts.is_empty() {
            p.phase(Some(&format!(
                "canary: {}",
                crate::report::plural(canary_hosts.len(), "host", "hosts")
            )));
        }
    }
    let options = RunOptions {
        progress: progress.map(|p| -> driver::Progress {
            Arc::new(move |r: &CredentialResult| {
                let note = (r.outcome != Outcome::Committed).then(|| r.outcome.label());
                p.done(&r.cred, note);
                if canary_hosts.contains(&r.cred.host)
                    && canary_left.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1
                {
                    p.phase(None);
                }
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
    let summary = run_summary(&report, req.origin, req.breach);
    if let Err(e) = store.end_run(&req.actor, run, &summary) {
        tracing::error!("could not record the end of run {run}: {e}");
    }
    Ok(Rotated {
        report,
        interrupted: stop.load(Ordering::SeqCst),
    })
}

/// What the end of a run records (`runs.summary`): the report's counts, and beside them who
/// started it and every credential whose new secret is not in place (not committed, not kept
/// new): what `--retry-failed` rotates again, and whether it was a `--breach` run (its retry
/// is one too: an incident's leftovers must not be rotated in append mode).
fn run_summary(report: &RunReport, origin: RunOrigin, breach: bool) -> String {
    let mut summary = serde_json::to_value(report.counts).expect("counts serialize");
    let not_committed: Vec<String> = report
        .results
        .iter()
        .filter(|r| !new_secret_in_place(&r.outcome))
        .map(|r| r.cred.to_string())
        .collect();
    if let serde_json::Value::Object(m) = &mut summary {
        m.insert("origin".into(), serde_json::json!(origin));
        m.insert("not_committed".into(), not_committed.into());
        if breach {
            m.insert("breach".into(), true.into());
        }
    }
    summary.to_string()
}

fn new_secret_in_place(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Committed | Outcome::KeptNew { .. })
}

/// What a run's summary says beyond its counts (`run_summary`); both `None` for a run ended
/// by a rotor older than `--retry-failed`, or not ended at all.
#[derive(Debug, Default)]
pub struct RunEnd {
    pub origin: Option<RunOrigin>,
    pub not_committed: Option<Vec<CredentialId>>,
    /// A `rotate --breach` run.
    pub breach: bool,
}

impl RunEnd {
    pub fn of(run: &RunRecord) -> RunEnd {
        #[derive(serde::Deserialize)]
        struct Raw {
            origin: Option<RunOrigin>,
            not_committed: Option<Vec<String>>,
            #[serde(default)]
            breach: bool,
        }
        let Some(raw) = run
            .summary
            .as_deref()
            .and_then(|s| serde_json::from_str::<Raw>(s).ok())
        else {
            return RunEnd::default();
        };
        RunEnd {
            origin: raw.origin,
            breach: raw.breach,
            // rotor wrote these names; one that does not parse is a hand-edited vault, and
            // is left out rather than failing the whole retry.
            not_committed: raw.not_committed.map(|names| {
                names
                    .iter()
                    .filter_map(|n| CredentialId::parse(n).ok())
                    .collect()
            }),
        }
    }
}

/// The label a retry run records; a retry of a retry reads its run's own summary, never this.
pub fn retry_label(run: RunId) -> String {
    format!("retry of run {run}")
}

/// What `rotate --retry-failed` found to do.
#[derive(Debug)]
pub enum RetryPlan {
    /// Rotate these again.
    Retry(Retry),
    /// Every credential of the run has its new secret (or none is left to rotate).
    Nothing {
        run: RunRecord,
        /// Not committed by the run, but rotated since (by a later run or recovery).
        rotated_since: Vec<CredentialId>,
        /// Not committed by the run, and no longer in the inventory.
        not_in_inventory: Vec<CredentialId>,
    },
    /// No `rotate` run among the vault's latest [`RECENT_RUNS`].
    NoRun,
}

/// The credentials of a run to rotate again, as a selection of the inventory.
#[derive(Debug)]
pub struct Retry {
    pub run: RunRecord,
    pub selection: Selection,
    /// `retry of run N`, recorded with the new run.
    pub label: String,
    pub creds: Vec<CredentialId>,
    pub rotated_since: Vec<CredentialId>,
    pub not_in_inventory: Vec<CredentialId>,
    /// The run was a `--breach` run: so is its retry.
    pub breach: bool,
}

/// How many of the latest runs `--retry-failed` looks through for the last `rotate` run,
/// and the most an unknown `--run N` error names ([`RUNS_NAMED`]).
pub const RECENT_RUNS: usize = 100;
pub const RUNS_NAMED: usize = 5;

/// Why a retry cannot be planned. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("run {asked} is not in the vault; {}", runs_words(.recent))]
    UnknownRun { asked: i64, recent: Vec<RunRecord> },
    #[error(
        "run {} has not recorded its end (it is still running, or rotor was stopped before it ended), so which of its credentials were not committed is not known: once no rotor runs, run `rotor recover -i FILE`, then rotate what it was given again (its scope: {})",
        .0.id, crate::text::escape(&.0.scope)
    )]
    NotEnded(Box<RunRecord>),
    #[error(
        "run {} was recorded by an older rotor, which did not keep which credentials were not committed: rotate what it was given again (its scope: {})",
        .0.id, crate::text::escape(&.0.scope)
    )]
    NotRecorded(Box<RunRecord>),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

fn runs_words(recent: &[RunRecord]) -> String {
    if recent.is_empty() {
        return "the vault has no run yet".to_owned();
    }
    let named: Vec<String> = recent
        .iter()
        .map(|r| {
            format!(
                "{} ({}, {})",
                r.id,
                r.started_at.format("%Y-%m-%d %H:%M UTC"),
                crate::text::escape(&r.scope)
            )
        })
        .collect();
    format!("the latest runs are {}", named.join(", "))
}

/// Plans `rotate --retry-failed [--run N]`: the run asked for (default: the latest run a
/// person's `rotate` made), and of its credentials those whose new secret is not in place.
pub fn retry(
    ctx: &Context,
    inv: &Inventory,
    asked: Option<RunId>,
) -> Result<RetryPlan, RetryError> {
    let run = match asked {
        Some(id) => match ctx.records.run(id)? {
            Some(run) => run,
            None => {
                return Err(RetryError::UnknownRun {
                    asked: id.0,
                    recent: ctx.records.runs(RUNS_NAMED)?,
                });
            }
        },
        None => match last_rotate_run(&ctx.records.runs(RECENT_RUNS)?) {
            Some(run) => run.clone(),
            None => return Ok(RetryPlan::NoRun),
        },
    };
    retry_set(inv, run, &ctx.records.status()?)
}

/// The latest run a `rotate` request made (runs ended by an older rotor say no origin and
/// count as one), from runs listed most recent first.
pub fn last_rotate_run(recent: &[RunRecord]) -> Option<&RunRecord> {
    recent
        .iter()
        .find(|r| RunEnd::of(r).origin.is_none_or(|o| o == RunOrigin::Rotate))
}

/// The credentials of `run` to rotate again: those its end recorded as not committed, less
/// those rotated since (their latest rotation committed after the run began) and those the
/// inventory no longer lists. Pure: the vault's status is an argument.
pub fn retry_set(
    inv: &Inventory,
    run: RunRecord,
    statuses: &[crate::store::CredentialStatus],
) -> Result<RetryPlan, RetryError> {
    if run.ended_at.is_none() {
        return Err(RetryError::NotEnded(Box::new(run)));
    }
    let Some(not_committed) = RunEnd::of(&run).not_committed else {
        return Err(RetryError::NotRecorded(Box::new(run)));
    };
    let rotated_after = |cred: &CredentialId| {
        statuses.iter().any(|s| {
            s.cred == *cred
                && s.last_rotation.as_ref().is_some_and(|r| {
                    matches!(
                        r.phase,
                        crate::engine::Phase::Committed
                            | crate::engine::Phase::Retiring
                            | crate::engine::Phase::Retired
                    ) && r.at > run.started_at
                })
        })
    };
    let (rotated_since, left): (Vec<CredentialId>, Vec<CredentialId>) =
        not_committed.into_iter().partition(|c| rotated_after(c));
    let (creds, not_in_inventory): (Vec<CredentialId>, Vec<CredentialId>) =
        left.into_iter().partition(|c| inv.policy_for(c).is_some());
    if creds.is_empty() {
        return Ok(RetryPlan::Nothing {
            run,
            rotated_since,
            not_in_inventory,
        });
    }
    let scopes: Vec<crate::inventory::Scope> = creds
        .iter()
        .map(|c| crate::inventory::Scope::Cred(c.clone()))
        .collect();
    // Every credential here is one the inventory lists (`policy_for` above), so each scope
    // resolves.
    let selection = inv
        .select(&scopes)
        .expect("a cred: scope of a listed credential resolves");
    Ok(RetryPlan::Retry(Retry {
        label: retry_label(run.id),
        breach: RunEnd::of(&run).breach,
        run,
        selection,
        creds,
        rotated_since,
        not_in_inventory,
    }))
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

    fn run(id: i64, ended: bool, summary: &str) -> RunRecord {
        let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        RunRecord {
            id: RunId(id),
            started_at: t("2026-12-01T10:00:00Z"),
            ended_at: ended.then(|| t("2026-12-01T10:05:00Z")),
            reason: "INC-42".into(),
            scope: "all".into(),
            summary: Some(summary.to_owned()),
        }
    }

    fn committed_at(name: &str, at: &str) -> crate::store::CredentialStatus {
        let at = chrono::DateTime::parse_from_rfc3339(at).unwrap().to_utc();
        crate::store::CredentialStatus {
            cred: CredentialId::parse(name).unwrap(),
            has_current: true,
            current_since: Some(at),
            has_pending: false,
            last_rotation: Some(crate::store::LastRotation {
                id: crate::engine::RotationId(9),
                phase: Phase::Committed,
                at,
                note: None,
            }),
            open_rotation: false,
            parked: None,
            lease_holder: None,
            rotated_at: Some(at),
            heartbeat_at: None,
        }
    }

    fn names(c: &[CredentialId]) -> Vec<String> {
        c.iter().map(ToString::to_string).collect()
    }

    /// The retry set is what the run's end recorded as not committed, less what was rotated
    /// after the run began (a later run, recovery) and what the inventory no longer lists.
    #[test]
    fn a_retry_rotates_what_the_run_left_and_nothing_else() {
        let inv = inventory(&["a", "b"]);
        let summary = r#"{"total":4,"committed":1,"origin":"rotate","not_committed":["a/svc_app","b/svc_backup","gone/svc_app"]}"#;
        let statuses = [
            // Rotated by a later run: done.
            committed_at("b/svc_backup", "2026-12-01T11:00:00Z"),
            // Its last committed rotation is older than the run: still to do.
            committed_at("a/svc_app", "2026-11-01T00:00:00Z"),
        ];
        let RetryPlan::Retry(r) = retry_set(&inv, run(7, true, summary), &statuses).unwrap() else {
            panic!("something is left to retry");
        };
        assert_eq!(r.label, "retry of run 7");
        assert_eq!(names(&r.creds), ["a/svc_app"]);
        assert_eq!(names(&r.rotated_since), ["b/svc_backup"]);
        assert_eq!(names(&r.not_in_inventory), ["gone/svc_app"]);
        let chosen: Vec<String> = r.selection.credentials().map(|c| c.to_string()).collect();
        assert_eq!(chosen, ["a/svc_app"]);

        let all_done = r#"{"total":4,"committed":4,"origin":"rotate","not_committed":[]}"#;
        assert!(matches!(
            retry_set(&inv, run(8, true, all_done), &[]).unwrap(),
            RetryPlan::Nothing { .. }
        ));
        // Not ended (still running, or killed): which credentials are left is not known.
        let e = retry_set(&inv, run(9, false, summary), &[]).unwrap_err();
        assert!(
            e.to_string().starts_with("run 9 has not recorded its end"),
            "{e}"
        );
        // Ended by a rotor that recorded only the counts.
        let e = retry_set(&inv, run(3, true, r#"{"total":4,"committed":1}"#), &[]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("run 3 was recorded by an older rotor")
                && e.to_string().contains("its scope: all"),
            "{e}"
        );
    }

    #[test]
    fn the_default_run_is_the_last_one_a_rotate_request_made() {
        let runs = [
            run(5, true, r#"{"origin":"checkout","not_committed":[]}"#),
            run(4, true, r#"{"origin":"schedule","not_committed":[]}"#),
            run(3, true, r#"{"origin":"rotate","not_committed":[]}"#),
            run(2, true, r#"{"total":1}"#),
        ];
        assert_eq!(last_rotate_run(&runs).map(|r| r.id), Some(RunId(3)));
        // A run ended by an older rotor names no origin: taken as a rotate.
        assert_eq!(last_rotate_run(&runs[3..]).map(|r| r.id), Some(RunId(2)));
        assert_eq!(last_rotate_run(&runs[..2]).map(|r| r.id), None);
        let e = RetryError::UnknownRun {
            asked: 99,
            recent: runs[2..].to_vec(),
        };
        assert_eq!(
            e.to_string(),
            "run 99 is not in the vault; the latest runs are 3 (2026-12-01 10:00 UTC, all), 2 (2026-12-01 10:00 UTC, all)"
        );
    }

    /// The end of a run records every credential whose new secret is not in place, and who
    /// started it; `RunEnd` reads it back.
    #[test]
    fn the_run_summary_records_what_was_not_committed() {
        let rt = runtime();
        let (fleet, store, _) = setup(&["a"]);
        let ctx = context(fleet, &store, &rt);
        let inv = inventory(&["a"]);
        let selection = inv.select(&[Scope::All]).unwrap();
        let req = RotateRequest::new(&inv, selection, "all".into());
        let done = rotate(&ctx, req, std::future::ready(())).unwrap();
        let mut record = run(
            1,
            true,
            &run_summary(&done.report, RunOrigin::Schedule, false),
        );
        let end = RunEnd::of(&record);
        assert_eq!(end.origin, Some(RunOrigin::Schedule));
        assert!(!end.breach);
        // A breach run says so, and its retry is a breach run too.
        let breach = run(2, true, &run_summary(&done.report, RunOrigin::Rotate, true));
        assert!(RunEnd::of(&breach).breach);
        let RetryPlan::Retry(r) = retry_set(&inv, breach, &[]).unwrap() else {
            panic!("nothing was committed, so all is left");
        };
        assert!(
            r.breach,
            "an incident's leftovers are rotated in breach mode"
        );
        assert_eq!(
            names(&end.not_committed.unwrap()),
            ["a/svc_app", "a/svc_backup"]
        );
        assert!(
            record
                .summary
                .as_deref()
                .unwrap()
                .contains(r#""skipped":2"#)
        );
        record.summary = None;
        assert!(RunEnd::of(&record).not_committed.is_none());
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

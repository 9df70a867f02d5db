//! `recover`: settle the rotations interrupted by a crash or a lost host, after unparking and
//! reopening the credentials an operator vouches for (they fixed what went wrong).

use std::future::Future;
use std::time::Duration;

use super::directories::{directories_to_recover, host_work};
use super::{Actor, Context, OpsError, watch_shutdown};
use crate::credential::CredentialId;
use crate::engine::driver::{self, RunOptions, lease_ttl};
use crate::inventory::{Inventory, Selection};
use crate::report::RunReport;

/// What to settle, and for whom.
pub struct RecoverRequest<'a> {
    /// The inventory that holds the hosts and directories of the open rotations.
    pub inventory: &'a Inventory,
    /// Credentials the operator vouches for, one by one.
    pub vouched: Vec<CredentialId>,
    /// And by scope: a directory's accounts are whatever of it the vault holds (its searches
    /// are not run).
    pub vouched_scopes: Selection,
    pub step_timeout: Duration,
    /// Hosts (and directory accounts) settled at once.
    pub concurrency: usize,
    pub actor: Actor,
}

impl<'a> RecoverRequest<'a> {
    /// Nothing vouched for, 20 s steps, 32 at once.
    pub fn new(inventory: &'a Inventory) -> Self {
        RecoverRequest {
            inventory,
            vouched: Vec::new(),
            vouched_scopes: Selection::default(),
            step_timeout: Duration::from_secs(20),
            concurrency: 32,
            actor: Actor::of_this_process(),
        }
    }
}

/// What was done for a vouched-for credential before recovery ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Vouched {
    /// It was parked and is no longer.
    Unparked(CredentialId),
    /// Its stuck rotation was reopened, for this recovery to settle.
    Reopened(CredentialId),
}

/// What recovery did.
pub struct Recovered {
    /// In the order done.
    pub vouched: Vec<Vouched>,
    /// One result per open rotation found.
    pub report: RunReport,
    /// The shutdown future completed: rotations not reached are reported unsettled.
    pub interrupted: bool,
}

/// Unparks and reopens what the operator vouches for, then settles every open rotation.
pub fn recover(
    ctx: &Context,
    req: RecoverRequest<'_>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Recovered, OpsError> {
    let _span = tracing::info_span!("recover", actor = %req.actor).entered();
    let (stop, _watch) = watch_shutdown(&ctx.runtime, shutdown);
    let inv = req.inventory;
    let mut vouched = Vec::new();
    for cred in vouched_for(ctx, &req)? {
        if ctx.store.parked(&cred)?.is_some() {
            ctx.store.unpark(&req.actor, &cred)?;
            vouched.push(Vouched::Unparked(cred.clone()));
        }
        if ctx.records.reopen_stuck(&req.actor, &cred)? {
            vouched.push(Vouched::Reopened(cred));
        }
    }
    let store = ctx.store.clone();
    let fleet = ctx.targets.hosts(req.step_timeout);
    let started = ctx.clock.monotonic();
    let everything = host_work(inv, inv.hosts.clone());
    let dirs = ctx.targets.directories(req.step_timeout);
    let (recover_dirs, failed_dirs) = directories_to_recover(inv, &*store, &*dirs)?;
    for f in &failed_dirs {
        tracing::error!(directory = %f.directory, "cannot open the directory to recover its rotations: {}", f.message);
    }
    let results = ctx.runtime.block_on(driver::recover(
        &everything,
        &recover_dirs,
        store,
        fleet,
        RunOptions {
            lease_ttl: lease_ttl(req.step_timeout),
            stop: stop.clone(),
            entropy: ctx.entropy.clone(),
            actor: req.actor.clone(),
            ..RunOptions::new(req.concurrency)
        },
    ))?;
    let elapsed = ctx.clock.monotonic().saturating_duration_since(started);
    let report = RunReport::new("recover", None, None, elapsed.as_millis() as u64, results)
        .with_directories(inv.directories.iter().map(|d| d.name.as_str()));
    Ok(Recovered {
        vouched,
        report,
        interrupted: stop.load(std::sync::atomic::Ordering::SeqCst),
    })
}

/// The credentials the operator vouches for, without duplicates, in order.
fn vouched_for(ctx: &Context, req: &RecoverRequest<'_>) -> Result<Vec<CredentialId>, OpsError> {
    let mut creds: std::collections::BTreeSet<CredentialId> = req.vouched.iter().cloned().collect();
    let selected = &req.vouched_scopes;
    creds.extend(selected.credentials());
    if !selected.directories.is_empty() {
        let in_vault = ctx.records.status()?;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::Phase;
    use crate::engine::ledger::{Ledger, LoginBudget};
    use crate::engine::testkit::by;
    use crate::engine::testkit::{FakeFleet, MemStore};
    use crate::ops::testkit::{context, inventory, runtime};

    fn crashed(hosts: &[&str]) -> (&'static FakeFleet, Arc<MemStore>) {
        let fleet: &'static FakeFleet = Box::leak(Box::default());
        let store = Arc::new(MemStore::default());
        for h in hosts {
            fleet.with(h, |fh| {
                fh.passwords.insert("svc_app".into(), "new".into());
                fh.passwords.insert("svc_backup".into(), "shared".into());
            });
            store.left_open(&format!("{h}/svc_app"), "new", "shared", Phase::Applied);
        }
        (fleet, store)
    }

    #[test]
    fn vouched_credentials_are_unparked_and_open_rotations_settled() {
        let rt = runtime();
        let (fleet, store) = crashed(&["a"]);
        let backup = CredentialId::parse("a/svc_backup").unwrap();
        store
            .park(&by(), &backup, "2 consecutive failed logins")
            .unwrap();
        let ctx = context(fleet, &store, &rt);
        let inv = inventory(&["a"]);
        let req = RecoverRequest {
            vouched: vec![backup.clone()],
            ..RecoverRequest::new(&inv)
        };
        let done = recover(&ctx, req, std::future::pending()).unwrap();
        assert_eq!(done.vouched, [Vouched::Unparked(backup.clone())]);
        assert!(store.parked(&backup).unwrap().is_none());
        let labels: Vec<String> = done
            .report
            .results
            .iter()
            .map(|r| format!("{} {}", r.cred, r.outcome.label()))
            .collect();
        assert_eq!(labels, ["a/svc_app committed"]);
        assert!(!done.interrupted);
    }

    #[test]
    fn a_shutdown_that_already_happened_settles_nothing_and_leaves_it_open() {
        let rt = runtime();
        let (fleet, store) = crashed(&["a", "b"]);
        let ctx = context(fleet, &store, &rt);
        let inv = inventory(&["a", "b"]);
        let done = recover(&ctx, RecoverRequest::new(&inv), std::future::ready(())).unwrap();
        assert!(done.interrupted);
        assert_eq!(done.report.counts.unsettled, 2);
        assert!(
            fleet.log.lock().unwrap().is_empty(),
            "no host was contacted"
        );
        assert_eq!(store.open_rotations().unwrap().len(), 2);
    }
}

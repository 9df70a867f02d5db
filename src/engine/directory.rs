//! Directories: rotating the accounts of an LDAP directory. Unlike a host (one admin
//! session, accounts in sequence), a directory has one admin connection shared by many
//! accounts rotated concurrently, each through the same pure machine and `rotate_one` as a
//! host's accounts. The edge (ldap3) is behind [`Directories`] and [`OpenDirectory`], so this
//! file is tested with in-memory directories.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::blast::{Breaker, Launch};
use super::driver::{
    CredentialResult, RunOptions, panicked, recover_one, report_progress, rotate_one, skipped,
};
use super::ledger::{OpenRotation, RunId, Store};
use super::machine::{Fault, Outcome};
use crate::connector::{ConnectorError, FaultClass, PasswordTarget};
use crate::credential::{AccountName, CredentialId, HostName};
use crate::inventory::{Directory, Policy};

/// Opens a directory: rotor's admin connection, and its accounts resolved (listed DNs, and
/// every search run).
pub trait Directories: Send + Sync {
    fn open(&self, directory: &Directory) -> Result<Arc<dyn OpenDirectory>, ConnectorError>;
}

/// An open directory.
pub trait OpenDirectory: Send + Sync {
    /// Its accounts as `(uid, dn)`, in directory order, without duplicates.
    fn accounts(&self) -> &[(AccountName, String)];
    /// A target for one account, sharing the admin connection.
    fn target(&self, dn: &str) -> Box<dyn PasswordTarget + Send>;
}

/// The work for one directory: its accounts (already resolved) and their policy.
#[derive(Clone)]
pub struct DirectoryWork {
    pub name: HostName,
    pub open: Arc<dyn OpenDirectory>,
    pub accounts: Vec<(AccountName, String)>,
    pub policy: Policy,
    /// rotor's own bind account `(uid, dn)`, when it is to be rotated (or recovered): always
    /// last, after every other account, since the run's admin connection was bound with its
    /// old secret; the vault switches to the new one only once a bind with it succeeded
    /// (the machine commits only after verification).
    pub bind_account: Option<(AccountName, String)>,
}

/// Rotates every account of `work`, up to `options.concurrency` at once. Never fails as a
/// whole. The breaker counts failed accounts here (a directory is one target), and the stop
/// flag is checked before each account starts.
pub async fn rotate_directory(
    work: DirectoryWork,
    run: RunId,
    store: Arc<dyn Store>,
    options: RunOptions,
) -> Vec<CredentialResult> {
    let semaphore = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let breaker = Arc::new(Mutex::new(Breaker::new(
        options.max_failures,
        work.accounts.len(),
    )));
    let policy = Arc::new(work.policy.clone());
    let mut tasks = Vec::with_capacity(work.accounts.len());
    for (uid, dn) in work.accounts.iter().cloned() {
        let cred = CredentialId::new(work.name.clone(), uid);
        let (semaphore, breaker, store) = (semaphore.clone(), breaker.clone(), store.clone());
        let (open, options, policy) = (work.open.clone(), options.clone(), policy.clone());
        // Taken before the task exists, so accounts start in directory order.
        let permit = semaphore
            .acquire_owned()
            .await
            .expect("semaphore is never closed");
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let launch = {
                let mut b = breaker.lock().unwrap_or_else(|p| p.into_inner());
                if options.stop.load(Ordering::SeqCst) {
                    b.interrupt();
                }
                b.may_launch()
            };
            if let Launch::Skip(reason, detail) = launch {
                let r = skipped(cred, reason, &detail);
                report_progress(options.progress.as_ref(), &r);
                return r;
            }
            let r = rotate_account(open, dn, cred, policy, run, store, options.clone()).await;
            let failed = !matches!(r.outcome, Outcome::Committed | Outcome::Skipped { .. });
            breaker
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .host_finished(r.cred.account.as_str(), failed, false);
            report_progress(options.progress.as_ref(), &r);
            r
        }));
    }
    let mut results = Vec::with_capacity(tasks.len() + 1);
    for task in tasks {
        // Task bodies catch their own panics; a JoinError means the runtime is going away.
        results.push(task.await.expect("account task joins"));
    }
    if let Some((uid, dn)) = work.bind_account.clone() {
        let cred = CredentialId::new(work.name.clone(), uid);
        let r = if options.stop.load(Ordering::SeqCst) {
            skipped(
                cred,
                super::blast::SkipReason::Interrupted,
                "the run was interrupted",
            )
        } else {
            let (open, store) = (work.open.clone(), store.clone());
            rotate_account(open, dn, cred, policy, run, store, options.clone()).await
        };
        report_progress(options.progress.as_ref(), &r);
        results.push(r);
    }
    results
}

/// One account's rotation on the blocking pool (its LDAP calls block on the runtime).
async fn rotate_account(
    open: Arc<dyn OpenDirectory>,
    dn: String,
    cred: CredentialId,
    policy: Arc<Policy>,
    run: RunId,
    store: Arc<dyn Store>,
    options: RunOptions,
) -> CredentialResult {
    let cred_for_panic = cred.clone();
    tokio::task::spawn_blocking(move || {
        let mut target = open.target(&dn);
        rotate_one(cred, &policy, run, &*store, &mut *target, &options)
    })
    .await
    .unwrap_or_else(|panic| panicked(cred_for_panic, super::Phase::Staged, None, &panic))
}

/// Settles a directory's open rotations (each on its own thread, like a run).
pub async fn recover_directory(
    work: &DirectoryWork,
    rotations: Vec<OpenRotation>,
    store: Arc<dyn Store>,
    lease_ttl: Duration,
) -> Vec<CredentialResult> {
    let mut tasks = Vec::new();
    for r in rotations {
        let dn = work
            .accounts
            .iter()
            .chain(work.bind_account.iter())
            .find(|(uid, _)| *uid == r.cred.account)
            .map(|(_, dn)| dn.clone());
        let Some(dn) = dn else {
            tasks.push(tokio::spawn(async move {
                CredentialResult {
                    outcome: Outcome::Unsettled {
                        phase: r.phase,
                        cause: Fault::target(
                            FaultClass::AccountMissing,
                            format!(
                                "{} is no longer among the directory's accounts (deleted, or the search changed); its rotation stays open",
                                r.cred
                            ),
                        ),
                    },
                    rotation: Some(r.id),
                    cred: r.cred,
                    elapsed_ms: 0,
                }
            }));
            continue;
        };
        let (open, store, budget) = (
            work.open.clone(),
            store.clone(),
            work.policy.max_failed_logins,
        );
        tasks.push(tokio::spawn(async move {
            let (cred, phase, id) = (r.cred.clone(), r.phase, r.id);
            tokio::task::spawn_blocking(move || {
                let mut target = open.target(&dn);
                recover_one(r, budget, &*store, &mut *target, lease_ttl)
            })
            .await
            .unwrap_or_else(|panic| panicked(cred, phase, Some(id), &panic))
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("recovery task joins"));
    }
    results
}

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
use crate::connector::{ConnectorError, FaultClass};
use crate::credential::{AccountName, CredentialId, HostName};
use crate::inventory::{Directory, Policy};
use crate::target::Target;

/// Opens a directory: rotor's admin connection, and its accounts resolved (listed DNs, and
/// every search run).
pub trait Directories: Send + Sync {
    fn open(&self, directory: &Directory) -> Result<Arc<dyn OpenDirectory>, ConnectorError>;
}

/// An open directory.
pub trait OpenDirectory: Send + Sync {
    /// Its accounts as `(uid, dn)`, in directory order, without duplicates.
    fn accounts(&self) -> &[(AccountName, String)];
    /// Whether new rotations may start here (recovery and verification need no such check):
    /// an error refuses the whole directory and says why (e.g. rotor cannot tell a locked
    /// account anywhere in it); otherwise the accounts that must be left alone, each group
    /// with why (e.g. those found under a search base where rotor cannot see locks).
    fn may_rotate(&self) -> Result<Vec<Refusal>, ConnectorError> {
        Ok(Vec::new())
    }
    /// A target for one account, sharing the admin connection.
    fn target(&self, dn: &str) -> Box<dyn Target + Send>;
}

/// Accounts of an open directory that new rotations must leave alone, and why.
#[derive(Debug)]
pub struct Refusal {
    /// Their DNs, as in [`OpenDirectory::accounts`].
    pub dns: Vec<String>,
    pub cause: ConnectorError,
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
    by: crate::engine::ledger::Actor,
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
        let (open, store, budget, by) = (
            work.open.clone(),
            store.clone(),
            work.policy.max_failed_logins,
            by.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let (cred, phase, id) = (r.cred.clone(), r.phase, r.id);
            tokio::task::spawn_blocking(move || {
                let mut target = open.target(&dn);
                recover_one(r, budget, &*store, &mut *target, &by, lease_ttl)
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

#[cfg(test)]
mod tests {
    //! `rotate_directory` and `recover_directory` against an in-memory directory and a real
    //! vault in a temporary directory: order, the bind account last, the breaker, the stop flag.
    use std::collections::{HashMap, HashSet};

    use super::*;
    use crate::connector::ConnectorError;
    use crate::secret::Secret;
    use crate::store::{KeySource, Vault};

    /// The directory's passwords by DN (the "hash" is the password itself here), and DNs
    /// whose server refuses a new password.
    #[derive(Default)]
    struct FakeDirectory {
        passwords: Mutex<HashMap<String, String>>,
        refuse: HashSet<String>,
        accounts: Vec<(AccountName, String)>,
    }

    struct FakeAccount {
        directory: Arc<FakeDirectory>,
        dn: String,
    }

    fn refused() -> ConnectorError {
        ConnectorError::new(FaultClass::Refused, "constraint violation")
    }

    impl crate::connector::PasswordTarget for FakeAccount {
        fn restore_point(&mut self, _: &AccountName) -> Result<Secret, ConnectorError> {
            let passwords = self.directory.passwords.lock().unwrap();
            let current = passwords
                .get(&self.dn)
                .ok_or_else(|| ConnectorError::new(FaultClass::AccountMissing, "no such entry"))?;
            Ok(Secret::new(current.clone()))
        }
        fn set_password(&mut self, _: &AccountName, new: &Secret) -> Result<(), ConnectorError> {
            if self.directory.refuse.contains(&self.dn) {
                return Err(refused());
            }
            let mut passwords = self.directory.passwords.lock().unwrap();
            passwords.insert(self.dn.clone(), new.expose().to_owned());
            Ok(())
        }
        fn restore(&mut self, a: &AccountName, saved: &Secret) -> Result<(), ConnectorError> {
            self.set_password(a, saved)
        }
        fn verify_login(&mut self, _: &AccountName, s: &Secret) -> Result<(), ConnectorError> {
            let passwords = self.directory.passwords.lock().unwrap();
            match passwords.get(&self.dn) {
                Some(p) if p == s.expose() => Ok(()),
                _ => Err(ConnectorError::new(
                    FaultClass::VerifyFailed,
                    "invalid credentials",
                )),
            }
        }
    }

    struct Open(Arc<FakeDirectory>);

    impl OpenDirectory for Open {
        fn accounts(&self) -> &[(AccountName, String)] {
            &self.0.accounts
        }
        fn target(&self, dn: &str) -> Box<dyn Target + Send> {
            Box::new(FakeAccount {
                directory: self.0.clone(),
                dn: dn.to_owned(),
            })
        }
    }

    fn dn(uid: &str) -> String {
        format!("uid={uid},ou=service,dc=h")
    }

    /// A directory of `n` accounts sharing one password, rotor's bind account `rotor` (rotated
    /// when `with_bind`), and accounts whose server refuses.
    fn work(n: usize, refuse: &[usize], with_bind: bool) -> (Arc<FakeDirectory>, DirectoryWork) {
        let accounts: Vec<(AccountName, String)> = (1..=n)
            .map(|i| {
                let uid = format!("svc-{i:02}");
                (AccountName::parse(&uid).unwrap(), dn(&uid))
            })
            .collect();
        let mut passwords: HashMap<String, String> = accounts
            .iter()
            .map(|(_, dn)| (dn.clone(), "shared".to_owned()))
            .collect();
        passwords.insert(dn("rotor"), "bind-secret".to_owned());
        let directory = Arc::new(FakeDirectory {
            passwords: Mutex::new(passwords),
            refuse: refuse.iter().map(|i| dn(&format!("svc-{i:02}"))).collect(),
            accounts: accounts.clone(),
        });
        let work = DirectoryWork {
            name: HostName::parse("hospital-ldap").unwrap(),
            open: Arc::new(Open(directory.clone())),
            accounts,
            policy: crate::inventory::default_policy(),
            bind_account: with_bind.then(|| (AccountName::parse("rotor").unwrap(), dn("rotor"))),
        };
        (directory, work)
    }

    fn vault() -> (tempfile::TempDir, Arc<Vault>) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let vault = Vault::init(&dir, KeySource::default_file(&dir)).unwrap();
        (tmp, Arc::new(vault))
    }

    fn run(work: DirectoryWork, store: Arc<Vault>, options: RunOptions) -> Vec<CredentialResult> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let run = store.begin_run("test", "all").unwrap();
        rt.block_on(rotate_directory(work, run, store, options))
    }

    fn labels(results: &[CredentialResult]) -> Vec<String> {
        results
            .iter()
            .map(|r| format!("{} {}", r.cred.account.as_str(), r.outcome.label()))
            .collect()
    }

    #[test]
    fn every_account_gets_its_own_secret_in_directory_order_and_the_bind_account_last() {
        let (directory, work) = work(12, &[], true);
        let (_tmp, vault) = vault();
        let results = run(work, vault.clone(), RunOptions::new(4));
        let mut expected: Vec<String> = (1..=12).map(|i| format!("svc-{i:02} committed")).collect();
        expected.push("rotor committed".to_owned());
        assert_eq!(labels(&results), expected);
        let passwords = directory.passwords.lock().unwrap();
        let mut seen = HashSet::new();
        for r in &results {
            let in_vault = vault.current(&r.cred).unwrap().unwrap();
            assert_eq!(passwords[&dn(r.cred.account.as_str())], in_vault.expose());
            assert!(
                seen.insert(in_vault.expose().to_owned()),
                "secrets must differ"
            );
        }
        // The bind account's rotation began after every other account's ended.
        let rotations: Vec<_> = vault
            .rotations_of_run(crate::engine::RunId(1))
            .unwrap()
            .into_iter()
            .map(|r| r.cred.to_string())
            .collect();
        assert_eq!(
            rotations.last().map(String::as_str),
            Some("hospital-ldap/rotor")
        );
    }

    #[test]
    fn failures_past_the_limit_stop_new_accounts_and_the_rest_are_skipped() {
        // Accounts 1 and 2 are refused; one failure is allowed; one account at a time.
        let (directory, work) = work(6, &[1, 2], false);
        let (_tmp, vault) = vault();
        let mut options = RunOptions::new(1);
        options.max_failures = crate::engine::blast::FailureLimit::Count(1);
        let results = run(work, vault, options);
        assert_eq!(
            labels(&results),
            [
                "svc-01 rolled back",
                "svc-02 rolled back",
                "svc-03 skipped",
                "svc-04 skipped",
                "svc-05 skipped",
                "svc-06 skipped",
            ]
        );
        // Nothing changed where nothing was started, and the refused ones hold the old one.
        let passwords = directory.passwords.lock().unwrap();
        assert!((1..=6).all(|i| passwords[&dn(&format!("svc-{i:02}"))] == "shared"));
    }

    #[test]
    fn a_stop_starts_nothing_not_even_the_bind_account() {
        let (directory, work) = work(3, &[], true);
        let (_tmp, vault) = vault();
        let options = RunOptions::new(2);
        options.stop.store(true, Ordering::SeqCst);
        let results = run(work, vault, options);
        assert!(
            results
                .iter()
                .all(|r| matches!(&r.outcome, Outcome::Skipped { reason, .. } if *reason == super::super::blast::SkipReason::Interrupted)),
            "{:?}",
            labels(&results)
        );
        assert_eq!(results.len(), 4);
        assert_eq!(
            directory.passwords.lock().unwrap()[&dn("rotor")],
            "bind-secret"
        );
    }

    #[test]
    fn recovery_settles_open_rotations_and_leaves_gone_accounts_open() {
        let (directory, work) = work(2, &[], false);
        let (_tmp, vault) = vault();
        let run = vault.begin_run("crashed", "all").unwrap();
        // Two rotations a crashed run left in `applied`: svc-01 (its new password is on the
        // directory), and svc-09, which is no longer among the directory's accounts.
        let mut open = Vec::new();
        for uid in ["svc-01", "svc-09"] {
            let cred = CredentialId::new(work.name.clone(), AccountName::parse(uid).unwrap());
            let lease = vault
                .acquire_lease(&cred, "crashed run", Duration::from_secs(60))
                .unwrap()
                .unwrap();
            let new = Secret::new(format!("{uid}-new"));
            let id = vault
                .stage(run, &cred, &new, &Secret::new("shared".into()), lease)
                .unwrap();
            vault
                .record_phase(id, crate::engine::Phase::Applied, None)
                .unwrap();
            // The crashed process is this one: forget its lease so recovery may take over.
            vault.release_lease(&cred, lease).unwrap();
            open.push(id);
        }
        directory
            .passwords
            .lock()
            .unwrap()
            .insert(dn("svc-01"), "svc-01-new".into());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let rotations = vault.open_rotations().unwrap();
        assert_eq!(rotations.len(), 2);
        let results = rt.block_on(recover_directory(
            &work,
            rotations,
            vault.clone(),
            crate::engine::ledger::Actor::named("test"),
            Duration::from_secs(60),
        ));
        let mut labels = labels(&results);
        labels.sort();
        assert_eq!(labels, ["svc-01 committed", "svc-09 unsettled"]);
        let gone = results
            .iter()
            .find(|r| r.cred.account.as_str() == "svc-09")
            .unwrap();
        assert!(
            matches!(&gone.outcome, Outcome::Unsettled { cause, .. } if cause.message.contains("no longer among")),
            "{:?}",
            gone.outcome
        );
        assert_eq!(vault.open_rotations().unwrap().len(), 1);
        let svc01 = CredentialId::new(work.name.clone(), AccountName::parse("svc-01").unwrap());
        assert_eq!(
            vault.current(&svc01).unwrap().unwrap().expose(),
            "svc-01-new"
        );
    }
}

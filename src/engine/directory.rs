//! Directories: rotating the accounts of an LDAP directory. Unlike a host (one admin
//! session, accounts in sequence), a directory has one admin connection shared by many
//! accounts rotated concurrently (through the one fan-out, [`fanout::run`], with the breaker
//! counting accounts), each through the same pure machine and `rotate_one` as a host's
//! accounts. The edge (ldap3) is behind [`Directories`] and [`OpenDirectory`], so this
//! file is tested with in-memory directories.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinError;

use super::blast::SkipReason;
use super::driver::{
    CredentialResult, RunOptions, not_reached, panicked, recover_one, reported, rotate_one, skipped,
};
use super::fanout;
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

    /// What `rotor scan` reads of one account: its stored `userPassword` (a hash) and, where
    /// the server keeps it, when it last changed (`pwdChangedTime`). Read-only, no bind as
    /// the account. The default reads the restore point and knows no time.
    fn scan_account(
        &self,
        cred: &crate::credential::CredentialId,
        dn: &str,
    ) -> Result<(crate::secret::Secret, Option<chrono::DateTime<chrono::Utc>>), ConnectorError>
    {
        Ok((self.target(dn).read_restore_point(cred)?, None))
    }
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

/// Rotates every account of `work`, up to `options.concurrency` at once, through the one
/// fan-out. Never fails as a whole. The breaker counts failed accounts here (a directory is
/// one target), and the stop flag is checked before each account starts. rotor's own bind
/// account comes last, alone, after every other account ended: only a stop keeps it back.
pub async fn rotate_directory(
    work: DirectoryWork,
    run: RunId,
    store: Arc<dyn Store>,
    options: RunOptions,
) -> Vec<CredentialResult> {
    let accounts = Arc::new(RotateAccounts {
        name: work.name.clone(),
        open: work.open.clone(),
        policy: work.policy.clone(),
        run,
        store,
        options: options.clone(),
    });
    let limits = RunOptions {
        canary: 0,
        ..options.clone()
    }
    .limits();
    let mut results = fanout::run(accounts.clone(), work.accounts.clone(), &limits).await;
    if let Some(bind) = work.bind_account.clone() {
        // A run of its own: the others' failures do not keep the bind account back.
        let alone = fanout::Limits {
            stop: options.stop.clone(),
            ..fanout::Limits::new(1)
        };
        results.extend(fanout::run(accounts, vec![bind], &alone).await);
    }
    results
}

/// A directory's accounts as fan-out work: one item `(uid, dn)` per account, each on a worker
/// of its own over the shared admin connection.
struct RotateAccounts {
    name: HostName,
    open: Arc<dyn OpenDirectory>,
    policy: Policy,
    run: RunId,
    store: Arc<dyn Store>,
    options: RunOptions,
}

impl RotateAccounts {
    fn cred(&self, uid: &AccountName) -> CredentialId {
        CredentialId::new(self.name.clone(), uid.clone())
    }
}

impl fanout::Work for RotateAccounts {
    type Item = (AccountName, String);
    type Output = CredentialResult;
    type Receipt = CredentialId;

    fn name(&self, (uid, _): &Self::Item) -> String {
        uid.to_string()
    }
    fn receipt(&self, (uid, _): &Self::Item) -> CredentialId {
        self.cred(uid)
    }
    fn run(&self, (uid, dn): Self::Item) -> CredentialResult {
        let mut target = self.open.target(&dn);
        let r = rotate_one(
            self.cred(&uid),
            &self.policy,
            crate::target::CredentialKind::Password,
            self.run,
            &*self.store,
            &mut *target,
            &self.options,
        );
        reported(self.options.progress.as_ref(), r)
    }
    fn skip(&self, (uid, _): Self::Item, reason: SkipReason, detail: &str) -> CredentialResult {
        let r = skipped(self.cred(&uid), reason, detail);
        reported(self.options.progress.as_ref(), r)
    }
    fn panicked(&self, cred: CredentialId, panic: &JoinError) -> CredentialResult {
        let r = panicked(cred, super::Phase::Staged, None, panic);
        reported(self.options.progress.as_ref(), r)
    }
    fn failed(&self, r: &CredentialResult) -> bool {
        !matches!(r.outcome, Outcome::Committed | Outcome::Skipped { .. })
    }
}

/// Settles a directory's open rotations, each on a worker of its own (like a run), through
/// the one fan-out, without a breaker; once the stop flag is set the rest stay open.
pub async fn recover_directory(
    work: &DirectoryWork,
    rotations: Vec<OpenRotation>,
    store: Arc<dyn Store>,
    options: &RunOptions,
) -> Vec<CredentialResult> {
    let mut results = Vec::new();
    let mut items = Vec::new();
    for r in rotations {
        let dn = work
            .accounts
            .iter()
            .chain(work.bind_account.iter())
            .find(|(uid, _)| *uid == r.cred.account)
            .map(|(_, dn)| dn.clone());
        match dn {
            Some(dn) => items.push((r, dn)),
            None => results.push(CredentialResult {
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
                notes: Vec::new(),
            }),
        }
    }
    let work = Arc::new(RecoverAccounts {
        open: work.open.clone(),
        store,
        max_failed_logins: work.policy.max_failed_logins,
        by: options.actor.clone(),
        lease_ttl: options.lease_ttl,
    });
    let limits = fanout::Limits {
        stop: options.stop.clone(),
        ..fanout::Limits::new(options.concurrency)
    };
    results.extend(fanout::run(work, items, &limits).await);
    results
}

/// Recovery of a directory's accounts as fan-out work: one item per open rotation.
struct RecoverAccounts {
    open: Arc<dyn OpenDirectory>,
    store: Arc<dyn Store>,
    max_failed_logins: u32,
    by: crate::engine::ledger::Actor,
    lease_ttl: Duration,
}

impl fanout::Work for RecoverAccounts {
    type Item = (OpenRotation, String);
    type Output = CredentialResult;
    type Receipt = (CredentialId, super::Phase, super::RotationId);

    fn name(&self, (r, _): &Self::Item) -> String {
        r.cred.account.to_string()
    }
    fn receipt(&self, (r, _): &Self::Item) -> Self::Receipt {
        (r.cred.clone(), r.phase, r.id)
    }
    fn run(&self, (r, dn): Self::Item) -> CredentialResult {
        let mut target = self.open.target(&dn);
        recover_one(
            r,
            self.max_failed_logins,
            &*self.store,
            &mut *target,
            &self.by,
            self.lease_ttl,
        )
    }
    fn skip(&self, (r, _): Self::Item, _: SkipReason, _: &str) -> CredentialResult {
        not_reached(&r)
    }
    fn panicked(&self, (cred, phase, id): Self::Receipt, panic: &JoinError) -> CredentialResult {
        panicked(cred, phase, Some(id), panic)
    }
    fn failed(&self, _: &CredentialResult) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    //! `rotate_directory` and `recover_directory` against an in-memory directory and a real
    //! vault in a temporary directory: order, the bind account last, the breaker, the stop flag.
    use std::collections::{HashMap, HashSet};
    use std::sync::Mutex;
    use std::sync::atomic::Ordering;

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

    impl Target for FakeAccount {
        fn read_restore_point(&mut self, _cred: &CredentialId) -> Result<Secret, ConnectorError> {
            let passwords = self.directory.passwords.lock().unwrap();
            let current = passwords
                .get(&self.dn)
                .ok_or_else(|| ConnectorError::new(FaultClass::AccountMissing, "no such entry"))?;
            Ok(Secret::new(current.clone()))
        }
        fn apply(
            &mut self,
            _cred: &CredentialId,
            new: &Secret,
            _saved: &Secret,
        ) -> Result<(), ConnectorError> {
            if self.directory.refuse.contains(&self.dn) {
                return Err(refused());
            }
            let mut passwords = self.directory.passwords.lock().unwrap();
            passwords.insert(self.dn.clone(), new.expose().to_owned());
            Ok(())
        }
        fn undo(
            &mut self,
            cred: &CredentialId,
            saved: &Secret,
            _new: &Secret,
        ) -> Result<(), ConnectorError> {
            self.apply(cred, saved, saved)
        }
        fn prove(&mut self, _cred: &CredentialId, s: &Secret) -> Result<(), ConnectorError> {
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
            &RunOptions {
                lease_ttl: Duration::from_secs(60),
                ..RunOptions::new(4)
            },
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

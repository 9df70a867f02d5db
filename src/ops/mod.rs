//! Operations as a library (cargo's `ops` is the model): [`rotate`], [`recover`],
//! [`verify`], [`plan`], [`status`], [`scan`], [`breach`] (the survey of `rotate --breach`),
//! [`preflight`] (`inventory check`: what would stop a rotation, found read-only) and
//! [`checkout`] are what rotor does, whoever asks. Each takes a
//! [`Context`] (the vault, the targets, the clock, the entropy source, one tokio runtime), a
//! request (the selection already resolved against the inventory, options, the [`Actor`])
//! and, for the long ones, a shutdown future (mini-redis's `server::run(listener, shutdown)`):
//! once it completes, no new host or account starts, work in flight finishes, and the report
//! says it was interrupted. They return report data.
//!
//! Invariant: nothing here prints, parses a command line or exits the process. The CLI
//! (`cli/*`), and later the daemon's scheduler and the HTTP API, are front-ends: they build a
//! context once, call one operation per request with their own actor and shutdown future,
//! and present what it returns.
//!
//! The functions block (the vault is SQLite, directories are opened with blocking calls that
//! drive the async LDAP client): call them from a plain thread, or from `spawn_blocking` in
//! an async front-end; they run their concurrent work on `Context::runtime`.

pub mod breach;
pub mod checkout;
pub mod directories;
pub mod export;
pub mod plan;
pub mod preflight;
pub mod recover;
pub mod rotate;
pub mod scan;
pub mod scheduled;
pub mod status;
pub mod verify;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::clock::{Clock, Entropy};
use crate::connector::ConnectorError;
use crate::credential::{AccountName, CredentialId};
use crate::engine::Store;
use crate::engine::directory::Directories;
use crate::engine::driver::Fleet;
use crate::inventory::Host;
use crate::secret::Secret;
use crate::store::{CredentialStatus, StoreError, Vault};

pub use crate::engine::ledger::Actor;
pub use directories::host_work;

/// What every operation runs with. Built once by a front-end (the CLI per command, a daemon
/// at start) and shared by its requests.
#[derive(Clone)]
pub struct Context {
    /// The engine's port to the vault.
    pub store: Arc<dyn Store>,
    /// What the operations read and settle beyond the engine's port.
    pub records: Arc<dyn Records>,
    /// Break-glass checkouts.
    pub checkouts: Arc<dyn checkout::Checkouts>,
    /// The scheduler's remembered due times.
    pub schedules: Arc<dyn scheduled::Schedules>,
    /// Hosts and directories.
    pub targets: Arc<dyn Targets>,
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
    /// The runtime the fan-out and the async LDAP client run on, built once by the caller.
    pub runtime: tokio::runtime::Handle,
}

impl Context {
    /// The context of a front-end over one vault: the vault for every port, the real
    /// targets, the given clock, the system's entropy, and `runtime` (built by the caller,
    /// which keeps it alive as long as the context).
    pub fn for_vault(
        vault: Arc<Vault>,
        clock: Arc<dyn Clock>,
        runtime: tokio::runtime::Handle,
    ) -> Context {
        let store: Arc<dyn Store> = vault.clone();
        Context {
            store: store.clone(),
            records: vault.clone(),
            checkouts: vault.clone(),
            schedules: vault,
            targets: Arc::new(Network {
                store,
                runtime: runtime.clone(),
            }),
            clock,
            entropy: Arc::new(crate::clock::OsEntropy),
            runtime,
        }
    }
}

/// Opens the targets of a request, with its step deadline.
pub trait Targets: Send + Sync {
    /// Hosts (one admin session each).
    fn hosts(&self, step_timeout: Duration) -> Arc<dyn Fleet>;
    /// Directories (rotor's bind, searches resolved).
    fn directories(&self, step_timeout: Duration) -> Arc<dyn Directories>;
    /// A fresh login as `account` on `host` with `secret`, a password or a private key as
    /// `kind` says (the heartbeat): no admin session, nothing changed.
    fn check_login(
        &self,
        host: &Host,
        step_timeout: Duration,
        account: &AccountName,
        kind: crate::target::CredentialKind,
        secret: &Secret,
    ) -> Result<(), ConnectorError>;
    /// What a preflight sees of `host` (`preflight::probe_ssh_host`): read-only, nothing
    /// changed. Targets that cannot look say so.
    fn probe_host(
        &self,
        host: &Host,
        _step_timeout: Duration,
        _password_users: &[AccountName],
    ) -> preflight::HostFacts {
        preflight::HostFacts::not_connected(ConnectorError::new(
            crate::connector::FaultClass::Protocol,
            format!("{}: these targets cannot be checked", host.name),
        ))
    }
    /// What a preflight sees of a directory (`preflight::probe_ldap_directory`).
    fn probe_directory(
        &self,
        d: &crate::inventory::Directory,
        _step_timeout: Duration,
    ) -> preflight::DirectoryFacts {
        preflight::DirectoryFacts {
            tls: Err(ConnectorError::new(
                crate::connector::FaultClass::Protocol,
                format!("{}: these targets cannot be checked", d.name),
            )),
            bind: preflight::BindFact::NotTried,
            searches: Vec::new(),
        }
    }
}

/// The vault as the operations see it beyond the engine's port: every credential's status,
/// and an operator's decision to look at a stuck rotation again.
pub trait Records: Send + Sync {
    fn status(&self) -> Result<Vec<CredentialStatus>, StoreError>;
    /// Reopens the credential's stuck rotation so recovery settles it; false when none is.
    fn reopen_stuck(&self, by: &Actor, cred: &CredentialId) -> Result<bool, StoreError>;
    /// Every current secret with the time it became current, in one audited read (escrow).
    fn export_current(
        &self,
        by: &Actor,
        to: &str,
        scope: Option<&str>,
        keep: &dyn Fn(&CredentialId) -> bool,
    ) -> Result<Vec<CurrentSecret>, StoreError>;
    /// Each host's latest sighting of its bootstrap connect key: (host, a login with it
    /// worked, when).
    fn bootstrap_sightings(&self) -> Result<Vec<(String, bool, String)>, StoreError> {
        Ok(Vec::new())
    }
    /// The latest `limit` runs, the most recent first (`rotate --retry-failed`, `status`).
    fn runs(&self, _limit: usize) -> Result<Vec<crate::store::RunRecord>, StoreError> {
        Ok(Vec::new())
    }
    /// One run by its number.
    fn run(
        &self,
        _id: crate::engine::RunId,
    ) -> Result<Option<crate::store::RunRecord>, StoreError> {
        Ok(None)
    }
    /// Heartbeats that logged in with each credential's current secret, and when.
    fn record_heartbeats(
        &self,
        _worked: &[(CredentialId, chrono::DateTime<chrono::Utc>)],
    ) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A credential's current secret and since when it is current (`Records::export_current`).
pub type CurrentSecret = (CredentialId, Secret, Option<chrono::DateTime<chrono::Utc>>);

impl Records for Vault {
    fn status(&self) -> Result<Vec<CredentialStatus>, StoreError> {
        Vault::status(self)
    }
    fn bootstrap_sightings(&self) -> Result<Vec<(String, bool, String)>, StoreError> {
        Vault::bootstrap_sightings(self)
    }
    fn runs(&self, limit: usize) -> Result<Vec<crate::store::RunRecord>, StoreError> {
        Vault::runs(self, limit)
    }
    fn run(&self, id: crate::engine::RunId) -> Result<Option<crate::store::RunRecord>, StoreError> {
        Vault::run(self, id)
    }
    fn record_heartbeats(
        &self,
        worked: &[(CredentialId, chrono::DateTime<chrono::Utc>)],
    ) -> Result<(), StoreError> {
        Vault::record_heartbeats(self, worked)
    }
    fn reopen_stuck(&self, by: &Actor, cred: &CredentialId) -> Result<bool, StoreError> {
        Vault::reopen_stuck_as(self, by.as_str(), cred)
    }
    fn export_current(
        &self,
        by: &Actor,
        to: &str,
        scope: Option<&str>,
        keep: &dyn Fn(&CredentialId) -> bool,
    ) -> Result<Vec<CurrentSecret>, StoreError> {
        Vault::export_current(self, by.as_str(), to, scope, keep)
    }
}

/// The real targets: SSH hosts running the built-in playbooks, LDAP directories.
pub struct Network {
    pub store: Arc<dyn Store>,
    /// Where the async LDAP client runs (the context's runtime).
    pub runtime: tokio::runtime::Handle,
}

impl Targets for Network {
    fn hosts(&self, step_timeout: Duration) -> Arc<dyn Fleet> {
        Arc::new(crate::target::linux::SshFleet {
            store: self.store.clone(),
            step_timeout,
        })
    }
    fn directories(&self, step_timeout: Duration) -> Arc<dyn Directories> {
        Arc::new(crate::target::directory::LdapDirectories {
            store: self.store.clone(),
            step_timeout,
            runtime: self.runtime.clone(),
        })
    }
    fn check_login(
        &self,
        host: &Host,
        step_timeout: Duration,
        account: &AccountName,
        kind: crate::target::CredentialKind,
        secret: &Secret,
    ) -> Result<(), ConnectorError> {
        let fleet = crate::target::linux::SshFleet {
            store: self.store.clone(),
            step_timeout,
        };
        let target = fleet.target(host);
        match kind {
            crate::target::CredentialKind::Password => {
                crate::connector::ssh::check_password_login(&target, account, secret)
            }
            crate::target::CredentialKind::SshKey => {
                crate::connector::ssh::check_key_login(&target, account, secret)
            }
        }
    }
    fn probe_host(
        &self,
        host: &Host,
        step_timeout: Duration,
        password_users: &[AccountName],
    ) -> preflight::HostFacts {
        let fleet = crate::target::linux::SshFleet {
            store: self.store.clone(),
            step_timeout,
        };
        preflight::probe_ssh_host(&fleet, host, password_users)
    }
    fn probe_directory(
        &self,
        d: &crate::inventory::Directory,
        step_timeout: Duration,
    ) -> preflight::DirectoryFacts {
        preflight::probe_ldap_directory(&*self.store, &self.runtime, d, step_timeout)
    }
}

/// What a front-end hears while an operation runs (a progress bar, a daemon's metrics).
pub trait Progress: Send + Sync {
    /// How many credentials the operation will report on, once that is known.
    fn start(&self, _total: usize) {}
    /// One credential is done; `note` says how, when it is not the plain success.
    fn done(&self, _cred: &CredentialId, _note: Option<&str>) {}
    /// The run entered a phase worth showing (`Some("canary: 2 hosts")`), or left it.
    fn phase(&self, _phase: Option<&str>) {}
}

/// Why an operation could not run at all (a credential that fails is a result, not this).
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] crate::engine::ledger::StoreFailure),
}

/// Watches a shutdown future: the flag it returns is set once the future completes, already
/// set if it had completed before the call, so a request that arrives after shutdown starts
/// nothing. The watcher stops when the returned guard is dropped.
fn watch_shutdown(
    runtime: &tokio::runtime::Handle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (Arc<AtomicBool>, Watch) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut shutdown = Box::pin(shutdown);
    // Polled once here, inside the runtime's context (a signal future registers with its
    // driver on first poll), so an already complete future is seen before any work starts.
    let first = {
        let _in_runtime = runtime.enter();
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        shutdown.as_mut().poll(&mut cx).is_ready()
    };
    if first {
        stop.store(true, Ordering::SeqCst);
        return (stop, Watch(None));
    }
    let flag = stop.clone();
    let task = runtime.spawn(async move {
        shutdown.await;
        flag.store(true, Ordering::SeqCst);
    });
    (stop, Watch(Some(task)))
}

/// Stops watching a shutdown future when dropped.
struct Watch(Option<tokio::task::JoinHandle<()>>);

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

#[cfg(test)]
pub(crate) mod testkit {
    //! A context over the engine's in-memory store and fleet, for the tests of each operation.
    use super::*;
    use crate::clock::{SeededEntropy, TestClock};
    use crate::engine::testkit::{FakeFleet, FleetRef, MemStore};

    /// In-memory directories are not needed by these tests: every directory fails to open.
    struct NoDirectories;
    impl Directories for NoDirectories {
        fn open(
            &self,
            d: &crate::inventory::Directory,
        ) -> Result<Arc<dyn crate::engine::directory::OpenDirectory>, ConnectorError> {
            Err(ConnectorError::new(
                crate::connector::FaultClass::Unreachable,
                format!("{}: no directories in this test", d.name),
            ))
        }
    }

    pub(crate) struct FakeTargets(pub(crate) &'static FakeFleet);

    impl Targets for FakeTargets {
        fn hosts(&self, _: Duration) -> Arc<dyn Fleet> {
            Arc::new(FleetRef(self.0))
        }
        fn directories(&self, _: Duration) -> Arc<dyn Directories> {
            Arc::new(NoDirectories)
        }
        fn check_login(
            &self,
            host: &Host,
            _: Duration,
            account: &AccountName,
            _: crate::target::CredentialKind,
            secret: &Secret,
        ) -> Result<(), ConnectorError> {
            let cred = CredentialId::new(host.name.clone(), account.clone());
            FleetRef(self.0).open(host)?.prove(&cred, secret)
        }
    }

    impl Records for MemStore {
        fn status(&self) -> Result<Vec<CredentialStatus>, StoreError> {
            let m = self.inner.lock().unwrap();
            let mut creds: Vec<&CredentialId> = m.current.keys().collect();
            creds.extend(m.rotations.iter().map(|r| &r.0));
            creds.sort();
            creds.dedup();
            Ok(creds
                .into_iter()
                .map(|cred| CredentialStatus {
                    cred: cred.clone(),
                    has_current: m.current.contains_key(cred),
                    current_since: m.current.contains_key(cred).then(|| {
                        chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
                            .unwrap()
                            .to_utc()
                    }),
                    // The in-memory store's current secrets count as rotated then.
                    rotated_at: m.current.contains_key(cred).then(|| {
                        chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
                            .unwrap()
                            .to_utc()
                    }),
                    heartbeat_at: None,
                    has_pending: false,
                    last_rotation: None,
                    open_rotation: m.rotations.iter().any(|r| &r.0 == cred && r.1.is_open()),
                    parked: m.parked.get(cred).cloned(),
                    lease_holder: None,
                })
                .collect())
        }
        fn reopen_stuck(&self, _: &Actor, _: &CredentialId) -> Result<bool, StoreError> {
            Ok(false)
        }
        fn export_current(
            &self,
            _: &Actor,
            _: &str,
            _: Option<&str>,
            keep: &dyn Fn(&CredentialId) -> bool,
        ) -> Result<Vec<CurrentSecret>, StoreError> {
            let m = self.inner.lock().unwrap();
            let mut out: Vec<CurrentSecret> = m
                .current
                .iter()
                .filter(|(c, _)| keep(c))
                .map(|(c, s)| (c.clone(), Secret::new(s.clone()), None))
                .collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(out)
        }
    }

    /// The in-memory store keeps no schedules: every pass computes them afresh.
    impl super::scheduled::Schedules for MemStore {
        fn rows(
            &self,
        ) -> Result<std::collections::HashMap<CredentialId, crate::scheduler::Stored>, StoreError>
        {
            Ok(std::collections::HashMap::new())
        }
        fn write(
            &self,
            _: &[(CredentialId, Option<crate::scheduler::Stored>)],
        ) -> Result<(), StoreError> {
            Ok(())
        }
    }

    /// The in-memory store has no checkout records: nothing is due; `force_end` ends what
    /// `checked_out` lists.
    impl super::checkout::Checkouts for MemStore {
        fn request(
            &self,
            _: &Actor,
            _: &crate::store::NewCheckout<'_>,
        ) -> Result<(crate::store::CheckoutRecord, Option<Secret>), StoreError> {
            Err(StoreError::Refused("no checkouts in memory".into()))
        }
        fn approve(&self, _: &Actor, id: i64) -> Result<crate::store::CheckoutRecord, StoreError> {
            Err(StoreError::UnknownCheckout(id))
        }
        fn refuse(
            &self,
            _: &Actor,
            id: i64,
            _: &str,
        ) -> Result<crate::store::CheckoutRecord, StoreError> {
            Err(StoreError::UnknownCheckout(id))
        }
        fn claim(
            &self,
            _: &Actor,
            id: i64,
        ) -> Result<(crate::store::CheckoutRecord, Secret), StoreError> {
            Err(StoreError::UnknownCheckout(id))
        }
        fn checkin(&self, _: &Actor, id: i64) -> Result<crate::store::CheckoutRecord, StoreError> {
            Err(StoreError::UnknownCheckout(id))
        }
        fn due(&self, _: &Actor) -> Result<Vec<crate::store::CheckoutRecord>, StoreError> {
            Ok(Vec::new())
        }
        /// Ends what `checked_out` says is checked out, as the vault ends open checkouts.
        fn force_end(
            &self,
            _: &Actor,
            creds: &[CredentialId],
        ) -> Result<Vec<crate::store::CheckoutRecord>, StoreError> {
            let mut inner = self.inner.lock().unwrap();
            for cred in creds {
                inner.checked_out.remove(cred);
            }
            Ok(Vec::new())
        }
        fn get(&self, id: i64) -> Result<crate::store::CheckoutRecord, StoreError> {
            Err(StoreError::UnknownCheckout(id))
        }
        fn rotation_failed(&self, _: &Actor, _: i64, _: &str) -> Result<(), StoreError> {
            Ok(())
        }
        fn list(&self, _: bool) -> Result<Vec<crate::store::CheckoutRecord>, StoreError> {
            Ok(Vec::new())
        }
        fn show(
            &self,
            _: &Actor,
            cred: &CredentialId,
            _: &str,
        ) -> Result<crate::store::Shown, StoreError> {
            let m = self.inner.lock().unwrap();
            Ok(crate::store::Shown {
                secret: m.current.get(cred).map(|s| Secret::new(s.clone())),
                checkout: None,
            })
        }
    }

    /// A context over `fleet` and `store`, its clock at 2026-12-01 00:00 UTC.
    pub(crate) fn context(
        fleet: &'static FakeFleet,
        store: &Arc<MemStore>,
        runtime: &tokio::runtime::Runtime,
    ) -> Context {
        Context {
            store: store.clone(),
            records: store.clone(),
            checkouts: store.clone(),
            schedules: store.clone(),
            targets: Arc::new(FakeTargets(fleet)),
            clock: Arc::new(TestClock::at(
                chrono::DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
                    .unwrap()
                    .to_utc(),
            )),
            entropy: Arc::new(SeededEntropy::new(1)),
            runtime: runtime.handle().clone(),
        }
    }

    pub(crate) fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    /// An inventory of `hosts`, each with the accounts svc_app and svc_backup.
    pub(crate) fn inventory(hosts: &[&str]) -> crate::inventory::Inventory {
        let mut yaml = String::from("version: 1\nhosts:\n");
        for h in hosts {
            yaml.push_str(&format!(
                "  - name: {h}\n    address: 127.0.0.1\n    host_key: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\"\n    connect: {{ user: root, key: /k }}\n    accounts:\n      - {{ name: svc_app, playbook: linux-password }}\n      - {{ name: svc_backup, playbook: linux-password }}\n"
            ));
        }
        crate::inventory::parse(&yaml, std::path::Path::new("test.yaml"))
            .expect("test inventory is valid")
    }
}

//! `verify`: the heartbeat. For each selected credential, a fresh login (SSH) or bind (LDAP)
//! with the vault's current secret. Changes nothing on the targets; rejected logins count
//! against the lockout budget like any other (`count_login`). A credential in the middle of a
//! rotation, or parked, gets no login at all. Hosts (their accounts in sequence) and
//! directory accounts (a fresh bind each) go through the one fan-out. When each login that
//! worked happened is recorded at the end, in one lazy write (`Records::record_heartbeats`):
//! `rotor status`'s last verified time.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinError;

use super::directories::{Purpose, host_work, open_directories};
use super::{Actor, Context, OpsError, Progress, Targets, watch_shutdown};
use crate::connector::ConnectorError;
use crate::credential::{AccountName, CredentialId, HostName};
use crate::engine::Store;
use crate::engine::blast::SkipReason;
use crate::engine::directory::OpenDirectory;
use crate::engine::driver::{HostWork, count_login};
use crate::engine::fanout;
use crate::inventory::{Inventory, Selection};
use crate::report::FailedDirectory;
use crate::secret::Secret;

/// What to check, and for whom.
pub struct VerifyRequest<'a> {
    pub inventory: &'a Inventory,
    pub selection: Selection,
    /// Logins (SSH sessions, LDAP binds) tried at once.
    pub concurrency: usize,
    pub step_timeout: Duration,
    pub actor: Actor,
    pub progress: Option<Arc<dyn Progress>>,
}

/// One credential's heartbeat.
#[derive(Debug, Serialize)]
pub struct Check {
    pub cred: CredentialId,
    /// works, busy, parked, no_secret, error, interrupted, or the fault class that stopped
    /// the check.
    pub result: String,
    pub detail: String,
}

impl Check {
    fn new(cred: CredentialId, result: &str, detail: impl Into<String>) -> Check {
        Check {
            cred,
            result: result.to_owned(),
            detail: detail.into(),
        }
    }

    pub fn works(&self) -> bool {
        self.result == "works"
    }
}

/// What the heartbeat found.
pub struct Verified {
    /// The credentials selected (directory accounts: those the directories' searches found).
    pub total: usize,
    /// One per credential, by credential.
    pub checks: Vec<Check>,
    pub failed_directories: Vec<FailedDirectory>,
    /// The shutdown future completed: credentials not reached say `interrupted`.
    pub interrupted: bool,
}

impl Verified {
    pub fn n_working(&self) -> usize {
        self.checks.iter().filter(|c| c.works()).count()
    }
}

/// Checks every selected credential once.
pub fn verify(
    ctx: &Context,
    req: VerifyRequest<'_>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Verified, OpsError> {
    let _span = tracing::info_span!("verify", actor = %req.actor).entered();
    let (stop, _watch) = watch_shutdown(&ctx.runtime, shutdown);
    let busy = ctx
        .records
        .status()?
        .into_iter()
        .filter_map(|s| {
            let why = match (&s.lease_holder, s.open_rotation) {
                (Some(holder), _) => format!("being rotated by {holder}; no login tried"),
                (None, true) => "a rotation is open: run `rotor recover`; no login tried".into(),
                (None, false) => return None,
            };
            Some((s.cred, why))
        })
        .collect();
    let dirs = ctx.targets.directories(req.step_timeout);
    let (dir_work, failed_directories, _) = open_directories(
        req.inventory,
        &req.selection.directories,
        &*dirs,
        Purpose::RecoverOrVerify,
    );
    let mut items: Vec<Item> = host_work(req.inventory, req.selection.hosts)
        .into_iter()
        .map(|w| Item::Host(Box::new(w)))
        .collect();
    for d in dir_work {
        for (uid, dn) in &d.accounts {
            items.push(Item::Account {
                directory: d.name.clone(),
                open: d.open.clone(),
                max_failed_logins: d.policy.max_failed_logins,
                uid: uid.clone(),
                dn: dn.clone(),
            });
        }
    }
    let total = items.iter().map(|i| i.creds().len()).sum();
    if let Some(p) = &req.progress {
        p.start(total);
    }
    let work = Arc::new(Heartbeat {
        store: ctx.store.clone(),
        by: req.actor.clone(),
        targets: ctx.targets.clone(),
        step_timeout: req.step_timeout,
        busy,
        progress: req.progress.clone(),
        clock: ctx.clock.clone(),
        worked: std::sync::Mutex::new(Vec::new()),
    });
    let work_ref = work.clone();
    let limits = fanout::Limits {
        stop: stop.clone(),
        ..fanout::Limits::new(req.concurrency)
    };
    let mut checks: Vec<Check> = ctx
        .runtime
        .block_on(fanout::run(work, items, &limits))
        .into_iter()
        .flatten()
        .collect();
    checks.sort_by(|a, b| a.cred.cmp(&b.cred));
    // What `rotor status` shows as last verified. A vault that cannot record it loses only
    // that: the heartbeat itself has its answer.
    let worked = std::mem::take(&mut *work_ref.worked.lock().unwrap_or_else(|e| e.into_inner()));
    if let Err(e) = ctx.records.record_heartbeats(&worked) {
        tracing::warn!("could not record when the heartbeat's logins worked: {e}");
    }
    Ok(Verified {
        total,
        checks,
        failed_directories,
        interrupted: stop.load(std::sync::atomic::Ordering::SeqCst),
    })
}

/// A host (its accounts in sequence, over fresh logins) or one directory account.
enum Item {
    Host(Box<HostWork>),
    Account {
        directory: HostName,
        open: Arc<dyn OpenDirectory>,
        max_failed_logins: u32,
        uid: AccountName,
        dn: String,
    },
}

impl Item {
    fn creds(&self) -> Vec<CredentialId> {
        match self {
            Item::Host(w) => w.accounts.iter().map(|a| a.cred.clone()).collect(),
            Item::Account { directory, uid, .. } => {
                vec![CredentialId::new(directory.clone(), uid.clone())]
            }
        }
    }
}

/// The heartbeat as fan-out work.
struct Heartbeat {
    store: Arc<dyn Store>,
    /// Who asked: named with every parking the heartbeat's failed logins cause.
    by: Actor,
    targets: Arc<dyn Targets>,
    step_timeout: Duration,
    /// Credentials in the middle of a rotation (open, or leased by a live rotor), with why:
    /// the target may hold the pending secret, so a login with `current` would be rejected
    /// and spend the account's lockout budget for nothing.
    busy: HashMap<CredentialId, String>,
    progress: Option<Arc<dyn Progress>>,
    clock: Arc<dyn crate::clock::Clock>,
    /// Each credential whose current secret logged in, and when (recorded at the end).
    worked: std::sync::Mutex<Vec<(CredentialId, chrono::DateTime<chrono::Utc>)>>,
}

impl Heartbeat {
    /// Checks one credential with `login` (a fresh SSH login or LDAP bind as the account).
    fn check(
        &self,
        cred: CredentialId,
        max_failed_logins: u32,
        login: impl FnOnce(&Secret) -> Result<(), ConnectorError>,
    ) -> Check {
        let check = self.check_quietly(cred, max_failed_logins, login);
        self.tick(&check);
        check
    }

    fn tick(&self, check: &Check) {
        if let Some(p) = &self.progress {
            p.done(
                &check.cred,
                (!check.works()).then_some(check.result.as_str()),
            );
        }
    }

    fn check_quietly(
        &self,
        cred: CredentialId,
        max_failed_logins: u32,
        login: impl FnOnce(&Secret) -> Result<(), ConnectorError>,
    ) -> Check {
        if let Some(why) = self.busy.get(&cred) {
            return Check::new(cred, "busy", why.clone());
        }
        if let Ok(Some(why)) = self.store.parked(&cred) {
            let detail =
                format!("{why}; no login tried (`rotor recover --cred {cred}` unparks it)");
            return Check::new(cred, "parked", detail);
        }
        let secret = match self.store.current(&cred) {
            Err(e) => return Check::new(cred, "error", e.to_string()),
            Ok(None) => {
                let detail = "the vault holds no current secret; rotate or enroll it";
                return Check::new(cred, "no_secret", detail);
            }
            Ok(Some(secret)) => secret,
        };
        let result = login(&secret);
        count_login(&*self.store, &self.by, &cred, max_failed_logins, &result);
        match result {
            Ok(()) => {
                let at = self.clock.now();
                self.worked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((cred.clone(), at));
                Check::new(cred, "works", "")
            }
            Err(e) => {
                let class = serde_json::to_value(e.class)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "error".into());
                Check::new(cred, &class, e.message)
            }
        }
    }
}

impl fanout::Work for Heartbeat {
    type Item = Item;
    type Output = Vec<Check>;
    type Receipt = Vec<CredentialId>;

    fn name(&self, item: &Item) -> String {
        match item {
            Item::Host(w) => w.host.name.to_string(),
            Item::Account { directory, uid, .. } => format!("{directory}/{uid}"),
        }
    }
    fn receipt(&self, item: &Item) -> Vec<CredentialId> {
        item.creds()
    }
    fn run(&self, item: Item) -> Vec<Check> {
        match item {
            Item::Host(w) => w
                .accounts
                .iter()
                .map(|account| {
                    let cred = account.cred.clone();
                    self.check(cred, account.policy.max_failed_logins, |secret| {
                        self.targets.check_login(
                            &w.host,
                            self.step_timeout,
                            &account.cred.account,
                            account.kind,
                            secret,
                        )
                    })
                })
                .collect(),
            Item::Account {
                directory,
                open,
                max_failed_logins,
                uid,
                dn,
            } => {
                let cred = CredentialId::new(directory, uid);
                let mut target = open.target(&dn);
                let id = cred.clone();
                vec![self.check(cred, max_failed_logins, |secret| target.prove(&id, secret))]
            }
        }
    }
    fn skip(&self, item: Item, _: SkipReason, _: &str) -> Vec<Check> {
        item.creds()
            .into_iter()
            .map(|cred| {
                let check = Check::new(
                    cred,
                    "interrupted",
                    "verify was stopped before this credential was checked",
                );
                self.tick(&check);
                check
            })
            .collect()
    }
    fn panicked(&self, creds: Vec<CredentialId>, panic: &JoinError) -> Vec<Check> {
        let detail = fanout::panic_text(panic);
        creds
            .into_iter()
            .map(|cred| {
                let check = Check::new(cred, "error", detail.clone());
                self.tick(&check);
                check
            })
            .collect()
    }
    fn failed(&self, _: &Vec<Check>) -> bool {
        // No breaker: a heartbeat checks everything it was asked to.
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testkit::{FakeFleet, MemStore};
    use crate::inventory::Scope;
    use crate::ops::testkit::{context, inventory, runtime};

    fn setup() -> (&'static FakeFleet, Arc<MemStore>) {
        let fleet: &'static FakeFleet = Box::leak(Box::default());
        fleet.with("a", |h| {
            h.passwords.insert("svc_app".into(), "app-secret".into());
            h.passwords
                .insert("svc_backup".into(), "changed-by-hand".into());
        });
        let store = Arc::new(MemStore::default());
        {
            let mut m = store.inner.lock().unwrap();
            for (account, secret) in [("svc_app", "app-secret"), ("svc_backup", "old")] {
                let cred = CredentialId::parse(&format!("a/{account}")).unwrap();
                m.current.insert(cred, secret.into());
            }
        }
        (fleet, store)
    }

    fn request<'a>(inv: &'a Inventory) -> VerifyRequest<'a> {
        VerifyRequest {
            inventory: inv,
            selection: inv.select(&[Scope::All]).unwrap(),
            concurrency: 4,
            step_timeout: Duration::from_secs(1),
            actor: Actor::of_this_process(),
            progress: None,
        }
    }

    #[test]
    fn each_credential_is_checked_with_its_current_secret_and_failures_count() {
        let rt = runtime();
        let (fleet, store) = setup();
        let ctx = context(fleet, &store, &rt);
        let inv = inventory(&["a"]);
        let done = verify(&ctx, request(&inv), std::future::pending()).unwrap();
        let got: Vec<String> = done
            .checks
            .iter()
            .map(|c| format!("{} {}", c.cred, c.result))
            .collect();
        assert_eq!(got, ["a/svc_app works", "a/svc_backup verify_failed"]);
        assert_eq!((done.total, done.n_working()), (2, 1));
        let backup = CredentialId::parse("a/svc_backup").unwrap();
        assert_eq!(store.inner.lock().unwrap().failed_logins[&backup], 1);
    }

    #[test]
    fn a_shutdown_that_already_happened_logs_in_nowhere() {
        let rt = runtime();
        let (fleet, store) = setup();
        let ctx = context(fleet, &store, &rt);
        let inv = inventory(&["a"]);
        let done = verify(&ctx, request(&inv), std::future::ready(())).unwrap();
        assert!(done.interrupted);
        assert!(done.checks.iter().all(|c| c.result == "interrupted"));
        assert!(fleet.log.lock().unwrap().is_empty(), "no login was tried");
    }
}

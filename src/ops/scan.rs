//! `scan`: reads what the fleet holds and judges it (`crate::scan::findings`). Every selected
//! host is read over one admin session (accounts from `getent`, each loginable account's
//! `authorized_keys` read as the account, who is logged in from `who`: listed per host in
//! the report, not judged), hosts at once through the one fan-out; every
//! selected directory's accounts (the inventory's DNs and searches) are read with rotor's
//! bind. Read-only: nothing is changed on any target, no login as an account is tried (so no
//! lockout budget is spent), and the vault is not written.
//!
//! Invariant: hashes travel only as `Secret`s into the pure judgement; candidates are
//! compared locally (`password_hash::matches`), never tried by a login.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::RngCore as _;
use tokio::task::JoinError;

use super::directories::{Purpose, host_work, open_directories};
use super::{Context, OpsError, watch_shutdown};
use crate::credential::CredentialId;
use crate::engine::blast::SkipReason;
use crate::engine::driver::Fleet;
use crate::engine::fanout;
use crate::inventory::{Host, Inventory, Selection};
use crate::scan::{
    DirectoryFacts, HostFacts, HostSessions, Managed, PasswordFact, ScanInput, ScanReport,
    ScannedAccount, Unreachable,
};
use crate::secret::Secret;
use crate::target::{AccountFacts, ScannedHost, is_login_shell};

/// What to scan, and what to look for.
pub struct ScanRequest<'a> {
    pub inventory: &'a Inventory,
    pub selection: Selection,
    /// Hosts read at once.
    pub concurrency: usize,
    pub step_timeout: Duration,
    /// Known passwords (vendor defaults) checked locally against every hash read.
    pub candidates: Vec<Secret>,
}

/// Bytes of the per-scan key that names groups of shared credentials.
const GROUP_KEY_BYTES: usize = 32;

/// Reads every selected host and directory once and judges what they hold.
pub fn scan(
    ctx: &Context,
    req: ScanRequest<'_>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<ScanReport, OpsError> {
    let _span = tracing::info_span!("scan").entered();
    let (stop, _watch) = watch_shutdown(&ctx.runtime, shutdown);
    let mut managed = managed(req.inventory);
    let work = Arc::new(ReadHosts {
        fleet: ctx.targets.hosts(req.step_timeout),
    });
    let limits = fanout::Limits {
        stop: stop.clone(),
        ..fanout::Limits::new(req.concurrency)
    };
    let read: Vec<HostRead> =
        ctx.runtime
            .block_on(fanout::run(work, req.selection.hosts.clone(), &limits));
    let mut hosts = Vec::with_capacity(read.len());
    let mut unread = Vec::new();
    let mut sessions = Vec::new();
    for r in read {
        hosts.push(r.facts);
        unread.extend(r.partial);
        sessions.extend(r.sessions);
    }

    // A stop during the hosts' reads leaves the directories unread too.
    let directories = if stop.load(std::sync::atomic::Ordering::SeqCst) {
        req.selection
            .directories
            .iter()
            .map(|d| DirectoryFacts {
                directory: d.directory.name.to_string(),
                accounts: Vec::new(),
                error: Some("the scan was stopped before this directory was read".into()),
            })
            .collect()
    } else {
        read_directories(ctx, &req, &mut managed)
    };
    // The vault's current secrets, decrypted in memory only to be compared with the hashes
    // read (a password rotor keeps for one credential, found on another account).
    let mut vault = Vec::new();
    for s in ctx.records.status()? {
        if s.has_current
            && let Some(secret) = ctx.store.current(&s.cred)?
        {
            vault.push((s.cred.to_string(), secret));
        }
    }
    let mut key = zeroize::Zeroizing::new([0u8; GROUP_KEY_BYTES]);
    ctx.entropy.rng().fill_bytes(&mut key[..]);
    let mut report = crate::scan::findings(ScanInput {
        hosts,
        directories,
        managed: &managed,
        candidates: &req.candidates,
        vault: &vault,
        now: ctx.clock.now(),
        key: &key[..],
    });
    // Files read in part (an account's `authorized_keys` refused as unsafe) are listed by
    // credential beside the targets not read at all.
    report.unreachable.extend(unread);
    report.sessions = sessions;
    Ok(report)
}

/// Every credential the inventory manages (all of it, whatever the scan's scope: an account
/// managed on a host outside the scope is still managed), with its policy's `max_age`.
/// Directory accounts are those its searches find: `read_directories` adds each one it reads.
fn managed(inv: &Inventory) -> Managed {
    let mut m = Managed::default();
    for w in host_work(inv, inv.hosts.clone()) {
        for a in w.accounts {
            m.credentials.insert(a.cred.to_string(), a.policy.max_age);
        }
    }
    m
}

/// The day shadow counts from.
fn shadow_day(day: u64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::UNIX_EPOCH.checked_add_signed(chrono::Duration::days(i64::try_from(day).ok()?))
}

fn scanned(a: AccountFacts, keys: Vec<String>) -> ScannedAccount {
    let password = match (a.password_hash, a.empty_password) {
        (Some(h), _) => PasswordFact::Hash(h),
        (None, true) => PasswordFact::Empty,
        (None, false) => PasswordFact::None,
    };
    ScannedAccount {
        login_shell: is_login_shell(&a.shell),
        changed: a.last_change_day.and_then(shadow_day),
        name: a.name,
        uid: a.uid,
        password,
        keys,
    }
}

/// What one host's read gave the scan.
struct HostRead {
    facts: HostFacts,
    /// Accounts whose keys could not be read safely, by credential.
    partial: Vec<Unreachable>,
    /// Who was logged in; `None` for a host not read.
    sessions: Option<HostSessions>,
}

/// The host's facts, the accounts whose keys could not be read safely, and its sessions.
fn host_facts(
    host: &Host,
    read: Result<ScannedHost, crate::connector::ConnectorError>,
) -> HostRead {
    match read {
        Err(e) => unread_host(host.name.to_string(), e.message),
        Ok(mut s) => {
            let partial = s
                .unreadable_keys
                .drain(..)
                .map(|(name, why)| Unreachable {
                    target: format!("{}/{name}", host.name),
                    error: why,
                })
                .collect();
            let facts = HostFacts {
                host: host.name.to_string(),
                accounts: s
                    .accounts
                    .drain(..)
                    .map(|a| {
                        let keys = s.keys.remove(&a.name).unwrap_or_default();
                        scanned(a, keys)
                    })
                    .collect(),
                error: None,
            };
            let sessions = HostSessions {
                host: host.name.to_string(),
                sessions: std::mem::take(&mut s.sessions),
                unread: s.sessions_unread.take(),
            };
            HostRead {
                facts,
                partial,
                sessions: Some(sessions),
            }
        }
    }
}

fn unread_host(host: String, why: String) -> HostRead {
    HostRead {
        facts: HostFacts {
            host,
            accounts: Vec::new(),
            error: Some(why),
        },
        partial: Vec::new(),
        sessions: None,
    }
}

/// Hosts as fan-out work: one read per host, no breaker (a scan reads everything it can).
struct ReadHosts {
    fleet: Arc<dyn Fleet>,
}

impl fanout::Work for ReadHosts {
    type Item = Host;
    type Output = HostRead;
    type Receipt = String;

    fn name(&self, host: &Host) -> String {
        host.name.to_string()
    }
    fn receipt(&self, host: &Host) -> String {
        host.name.to_string()
    }
    fn run(&self, host: Host) -> Self::Output {
        let _span = tracing::info_span!("scan_host", host = %host.name).entered();
        let read = self.fleet.scan_host(&host);
        if let Err(e) = &read {
            tracing::warn!(host = %host.name, class = %e.class, "host not read");
        }
        host_facts(&host, read)
    }
    fn skip(&self, host: Host, _: SkipReason, _: &str) -> Self::Output {
        let why = "the scan was stopped before this host was read".to_owned();
        unread_host(host.name.to_string(), why)
    }
    fn panicked(&self, host: String, panic: &JoinError) -> Self::Output {
        unread_host(host, fanout::panic_text(panic))
    }
    fn failed(&self, _: &Self::Output) -> bool {
        false
    }
}

/// Each selected directory's accounts with their stored `userPassword` (the hash), read with
/// rotor's bind. A directory that cannot be opened is reported unreachable; an account whose
/// hash cannot be read is counted without a password.
/// Every account found is managed (the inventory's DNs and searches name it): it is added
/// to `managed` with its directory's `max_age`.
fn read_directories(
    ctx: &Context,
    req: &ScanRequest<'_>,
    managed: &mut Managed,
) -> Vec<DirectoryFacts> {
    if req.selection.directories.is_empty() {
        return Vec::new();
    }
    let dirs = ctx.targets.directories(req.step_timeout);
    let (works, failed, _) = open_directories(
        req.inventory,
        &req.selection.directories,
        &*dirs,
        Purpose::RecoverOrVerify,
    );
    let mut out: Vec<DirectoryFacts> = failed
        .into_iter()
        .map(|f| DirectoryFacts {
            directory: f.directory.to_string(),
            accounts: Vec::new(),
            error: Some(f.message),
        })
        .collect();
    for w in works {
        let mut accounts = Vec::with_capacity(w.accounts.len());
        let mut errors = Vec::new();
        for (uid, dn) in &w.accounts {
            let cred = CredentialId::new(w.name.clone(), uid.clone());
            managed
                .credentials
                .insert(cred.to_string(), w.policy.max_age);
            let (password, changed) = match w.open.scan_account(&cred, dn) {
                Ok((hash, changed)) if hash.expose().is_empty() => (PasswordFact::Empty, changed),
                Ok((hash, changed)) => (PasswordFact::Hash(hash), changed),
                Err(e) => {
                    errors.push(e.message);
                    (PasswordFact::None, None)
                }
            };
            accounts.push(ScannedAccount {
                name: uid.to_string(),
                uid: None,
                login_shell: false,
                password,
                changed,
                keys: Vec::new(),
            });
        }
        out.push(DirectoryFacts {
            directory: w.name.to_string(),
            accounts,
            error: (!errors.is_empty()).then(|| errors.join("; ")),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testkit::{FakeFleet, MemStore};
    use crate::inventory::Scope;
    use crate::ops::testkit::{context, inventory, runtime};

    #[test]
    fn hosts_are_read_once_each_and_shared_passwords_found() {
        let rt = runtime();
        let fleet: &'static FakeFleet = Box::leak(Box::default());
        for h in ["a", "b"] {
            fleet.with(h, |h| {
                h.passwords.insert("svc_app".into(), "same".into());
                h.passwords.insert("planted".into(), format!("{h:p}"));
            });
        }
        fleet.with("c", |h| h.down = true);
        let store = Arc::new(MemStore::default());
        let ctx = context(fleet, &store, &rt);
        let inv = inventory(&["a", "b", "c"]);
        let req = ScanRequest {
            inventory: &inv,
            selection: inv.select(&[Scope::All]).unwrap(),
            concurrency: 4,
            step_timeout: Duration::from_secs(1),
            candidates: Vec::new(),
        };
        let report = scan(&ctx, req, std::future::pending()).unwrap();
        let mut log = fleet.log.lock().unwrap().clone();
        log.sort();
        assert_eq!(log, ["a scan", "b scan"]);
        let got: Vec<String> = report
            .findings
            .iter()
            .map(|f| format!("{:?} {}", f.kind, f.credentials.join(" ")))
            .collect();
        assert_eq!(
            got,
            [
                "SharedPassword a/svc_app b/svc_app",
                "UnmanagedAccount a/planted b/planted"
            ]
        );
        assert_eq!(report.unreachable.len(), 1);
        assert_eq!(report.unreachable[0].target, "c");
        // Sessions are listed for every host read (none here), not for one not read.
        let read: Vec<&str> = report.sessions.iter().map(|h| h.host.as_str()).collect();
        assert_eq!(read, ["a", "b"]);
    }

    #[test]
    fn a_scan_after_shutdown_reads_no_host() {
        let rt = runtime();
        let fleet: &'static FakeFleet = Box::leak(Box::default());
        fleet.with("a", |h| {
            h.passwords.insert("svc_app".into(), "x".into());
        });
        let store = Arc::new(MemStore::default());
        let ctx = context(fleet, &store, &rt);
        let inv = inventory(&["a"]);
        let req = ScanRequest {
            inventory: &inv,
            selection: inv.select(&[Scope::All]).unwrap(),
            concurrency: 4,
            step_timeout: Duration::from_secs(1),
            candidates: Vec::new(),
        };
        let report = scan(&ctx, req, std::future::ready(())).unwrap();
        assert!(fleet.log.lock().unwrap().is_empty(), "no host was read");
        assert_eq!(report.unreachable.len(), 1);
        assert!(report.findings.is_empty());
    }
}

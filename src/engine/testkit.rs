//! In-memory doubles of the engine's ports, for tests of the engine and of `ops` without
//! SSH, LDAP or SQLite: a [`FakeFleet`] of scripted hosts (each step logged), a [`MemStore`]
//! whose failures a test switches on, and [`setup`] for hosts with two accounts each.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::connector::{ConnectorError, FaultClass};
use crate::credential::{AccountName, CredentialId, HostName};
use crate::engine::driver::{AccountWork, Fleet, HostWork};
use crate::engine::ledger::{
    Actor, Grants, Leases, Ledger, LoginBudget, Runs, Secrets, StoreFailure,
};
use crate::engine::{Lease, LeaseHeld, OpenRotation, Phase, RotationId, RunId, UnreadableRotation};
use crate::inventory::{ConnectAuth, ConnectIdentity, Host, HostKeyPin, Policy};
use crate::secret::Secret;
use crate::store::StoreError;
use crate::target::Target;

/// What the fake target holds per account: the "shadow hash" is the password itself here.
#[derive(Default)]
pub(crate) struct FakeHost {
    pub(crate) passwords: HashMap<String, String>,
    pub(crate) refuse_set: bool,
    /// The password is set but logins with it fail.
    pub(crate) break_login: bool,
    pub(crate) down: bool,
    /// The host hangs during the next push: it times out, and the host answers no more.
    pub(crate) hang_on_set: bool,
}

#[derive(Default)]
pub(crate) struct FakeFleet {
    pub(crate) hosts: Mutex<HashMap<String, FakeHost>>,
    /// Every (host, step) the driver performed, in order.
    pub(crate) log: Mutex<Vec<String>>,
}

pub(crate) struct FakeTarget<'a> {
    pub(crate) fleet: &'a FakeFleet,
    pub(crate) host: String,
}

impl FakeFleet {
    pub(crate) fn with(&self, host: &str, f: impl FnOnce(&mut FakeHost)) {
        f(self
            .hosts
            .lock()
            .unwrap()
            .entry(host.to_owned())
            .or_default())
    }
    pub(crate) fn note(&self, host: &str, step: &str) {
        self.log.lock().unwrap().push(format!("{host} {step}"));
    }
    pub(crate) fn password(&self, host: &str, account: &str) -> Option<String> {
        self.hosts.lock().unwrap()[host]
            .passwords
            .get(account)
            .cloned()
    }
}

pub(crate) fn err(class: FaultClass) -> ConnectorError {
    ConnectorError::new(class, format!("{class}"))
}

impl Target for FakeTarget<'_> {
    fn read_restore_point(&mut self, cred: &CredentialId) -> Result<Secret, ConnectorError> {
        let a = &cred.account;
        self.fleet.note(&self.host, "read");
        let hosts = self.fleet.hosts.lock().unwrap();
        let h = &hosts[&self.host];
        if h.down {
            return Err(err(FaultClass::Unreachable));
        }
        h.passwords
            .get(a.as_str())
            .map(|p| Secret::new(p.clone()))
            .ok_or(err(FaultClass::AccountMissing))
    }
    fn refuses_rotation(&self, _cred: &CredentialId, restore_point: &Secret) -> Option<String> {
        restore_point
            .expose()
            .starts_with('!')
            .then(|| "locked".to_owned())
    }
    fn apply(
        &mut self,
        cred: &CredentialId,
        new: &Secret,
        _saved: &Secret,
    ) -> Result<(), ConnectorError> {
        let a = &cred.account;
        self.fleet.note(&self.host, "set");
        let mut hosts = self.fleet.hosts.lock().unwrap();
        let h = hosts.get_mut(&self.host).unwrap();
        if h.refuse_set {
            return Err(err(FaultClass::Refused));
        }
        if h.hang_on_set {
            h.down = true;
            return Err(err(FaultClass::TimedOut));
        }
        h.passwords.insert(a.to_string(), new.expose().to_owned());
        Ok(())
    }
    fn undo(
        &mut self,
        cred: &CredentialId,
        saved: &Secret,
        _new: &Secret,
    ) -> Result<(), ConnectorError> {
        let a = &cred.account;
        self.fleet.note(&self.host, "restore");
        let mut hosts = self.fleet.hosts.lock().unwrap();
        let h = hosts.get_mut(&self.host).unwrap();
        if h.down {
            return Err(err(FaultClass::Unreachable));
        }
        h.passwords.insert(a.to_string(), saved.expose().to_owned());
        Ok(())
    }
    fn holds(&self, _: &CredentialId, restore_point: &Secret, secret: &Secret) -> Option<bool> {
        Some(restore_point.ct_eq(secret))
    }
    fn prove(&mut self, cred: &CredentialId, s: &Secret) -> Result<(), ConnectorError> {
        let a = &cred.account;
        self.fleet.note(&self.host, "verify");
        let hosts = self.fleet.hosts.lock().unwrap();
        let h = &hosts[&self.host];
        if h.down {
            return Err(err(FaultClass::Unreachable));
        }
        if !h.break_login && h.passwords.get(a.as_str()).map(String::as_str) == Some(s.expose()) {
            Ok(())
        } else {
            Err(err(FaultClass::VerifyFailed))
        }
    }
}

/// `Fleet::open` needs 'static boxes, so tests share the fleet through a leaked reference.
pub(crate) struct FleetRef(pub(crate) &'static FakeFleet);
impl Fleet for FleetRef {
    fn open(&self, host: &Host) -> Result<Box<dyn Target + Send>, ConnectorError> {
        if self.0.hosts.lock().unwrap()[host.name.as_str()].down {
            return Err(err(FaultClass::Unreachable));
        }
        Ok(Box::new(FakeTarget {
            fleet: self.0,
            host: host.name.to_string(),
        }))
    }

    /// Each scripted password as its own "hash" (the fake stores plaintext): equal passwords
    /// compare equal, which is all a scan test of the gathering needs.
    fn scan_host(&self, host: &Host) -> Result<crate::target::ScannedHost, ConnectorError> {
        let hosts = self.0.hosts.lock().unwrap();
        let h = &hosts[host.name.as_str()];
        if h.down {
            return Err(err(FaultClass::Unreachable));
        }
        self.0.note(host.name.as_str(), "scan");
        let mut accounts: Vec<crate::target::AccountFacts> = h
            .passwords
            .iter()
            .map(|(name, pw)| crate::target::AccountFacts {
                name: name.clone(),
                uid: Some(1000),
                home: format!("/home/{name}"),
                shell: "/bin/bash".into(),
                password_hash: Some(Secret::new(pw.clone())),
                empty_password: false,
                last_change_day: None,
            })
            .collect();
        accounts.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(crate::target::ScannedHost {
            accounts,
            ..Default::default()
        })
    }
}

#[derive(Default)]
pub(crate) struct MemStore {
    pub(crate) inner: Mutex<Mem>,
}
#[derive(Default)]
pub(crate) struct Mem {
    pub(crate) current: HashMap<CredentialId, String>,
    pub(crate) rotations: Vec<(CredentialId, Phase, String, String)>, // cred, phase, pending, restore point
    pub(crate) fail_stage: bool,
    /// Leases are always granted here; the counter only makes tokens distinct.
    pub(crate) last_token: i64,
    pub(crate) failed_logins: HashMap<CredentialId, u32>,
    pub(crate) parked: HashMap<CredentialId, String>,
    /// Open checkouts: who holds the secret, in words.
    pub(crate) checked_out: HashMap<CredentialId, String>,
    /// Lease proofs made right before a write to a target (`renew_lease`).
    pub(crate) n_fences: usize,
    /// `renew_lease` fails: another process took the credential over.
    pub(crate) lose_lease_before_write: bool,
    /// An open rotation of this credential fails its integrity check.
    pub(crate) tampered: Option<CredentialId>,
    /// Another live process holds this credential's lease.
    pub(crate) held_elsewhere: Option<CredentialId>,
}

type Res<T> = Result<T, StoreFailure>;

pub(crate) fn by() -> Actor {
    Actor::named("test")
}

impl Runs for MemStore {
    fn begin_run(&self, _: &Actor, _: &str, _: &str) -> Res<RunId> {
        Ok(RunId(1))
    }
    fn end_run(&self, _: &Actor, _: RunId, _: &str) -> Res<()> {
        Ok(())
    }
}

impl Secrets for MemStore {
    fn fingerprint_taken(&self, s: &Secret) -> Res<bool> {
        Ok(self
            .inner
            .lock()
            .unwrap()
            .current
            .values()
            .any(|c| c == s.expose()))
    }
    fn current(&self, cred: &CredentialId) -> Res<Option<Secret>> {
        Ok(self
            .inner
            .lock()
            .unwrap()
            .current
            .get(cred)
            .map(|s| Secret::new(s.clone())))
    }
}

impl MemStore {
    fn set_phase(&self, id: RotationId, p: Phase) -> Res<()> {
        self.inner.lock().unwrap().rotations[id.0 as usize].1 = p;
        Ok(())
    }

    /// What a run that died leaves: `cred` staged with `pending` over `saved` and, with
    /// `phase` `Applied`, recorded as pushed. Returns the rotation's id.
    pub(crate) fn left_open(
        &self,
        cred: &str,
        pending: &str,
        saved: &str,
        phase: Phase,
    ) -> RotationId {
        let cred = CredentialId::parse(cred).expect("test credential");
        let id = self
            .stage(
                &by(),
                LEASE,
                RunId(1),
                &cred,
                &Secret::new(pending.into()),
                &Secret::new(saved.into()),
            )
            .expect("the in-memory store stages");
        if phase != Phase::Staged {
            self.set_phase(id, phase).expect("in memory");
        }
        id
    }
}

impl Ledger for MemStore {
    fn stage(
        &self,
        _: &Actor,
        _: Lease,
        _: RunId,
        cred: &CredentialId,
        new: &Secret,
        rp: &Secret,
    ) -> Res<RotationId> {
        let mut m = self.inner.lock().unwrap();
        if m.fail_stage {
            return Err(StoreFailure::other("disk full"));
        }
        m.rotations.push((
            cred.clone(),
            Phase::Staged,
            new.expose().into(),
            rp.expose().into(),
        ));
        Ok(RotationId(m.rotations.len() as i64 - 1))
    }
    fn record_phase(
        &self,
        _: &Actor,
        _: Lease,
        id: RotationId,
        p: Phase,
        _: Option<&str>,
    ) -> Res<()> {
        self.set_phase(id, p)
    }
    fn commit(&self, _: &Actor, _: Lease, id: RotationId, then_retire: bool) -> Res<()> {
        let mut m = self.inner.lock().unwrap();
        let (cred, _, pending, _) = m.rotations[id.0 as usize].clone();
        m.current.insert(cred, pending);
        m.rotations[id.0 as usize].1 = if then_retire {
            Phase::Retiring
        } else {
            Phase::Committed
        };
        Ok(())
    }
    fn record_retired(&self, _: &Actor, _: Lease, id: RotationId) -> Res<()> {
        self.set_phase(id, Phase::Retired)
    }
    fn roll_back(&self, _: &Actor, _: Lease, id: RotationId, _: &str) -> Res<()> {
        self.set_phase(id, Phase::RolledBack)
    }
    fn mark_stuck(&self, _: &Actor, _: Lease, id: RotationId, _: &str) -> Res<()> {
        self.set_phase(id, Phase::Stuck)
    }
    fn open_rotations(&self) -> Res<Vec<OpenRotation>> {
        Ok(self
            .inner
            .lock()
            .unwrap()
            .rotations
            .iter()
            .enumerate()
            .filter(|(_, r)| r.1.is_open())
            .map(|(i, r)| OpenRotation {
                id: RotationId(i as i64),
                cred: r.0.clone(),
                phase: r.1,
                pending: Secret::new(r.2.clone()),
                restore_point: Secret::new(r.3.clone()),
            })
            .collect())
    }
    fn unreadable_rotations(&self) -> Res<Vec<UnreadableRotation>> {
        let m = self.inner.lock().unwrap();
        Ok(m.tampered
            .iter()
            .map(|cred| UnreadableRotation {
                id: RotationId(99),
                cred: cred.clone(),
                phase: Phase::Applied,
                error: StoreError::Integrity(format!("restore point of rotation 99 ({cred})"))
                    .into(),
            })
            .collect())
    }
    fn adopt(&self, _: &Actor, _: Lease, _: RotationId) -> Res<()> {
        Ok(())
    }
}

impl Leases for MemStore {
    fn acquire_lease(
        &self,
        _: &Actor,
        cred: &CredentialId,
        _: &str,
        _: Duration,
    ) -> Res<Result<Lease, LeaseHeld>> {
        let mut m = self.inner.lock().unwrap();
        if m.held_elsewhere.as_ref() == Some(cred) {
            return Ok(Err(LeaseHeld {
                holder: "rotor pid 7 on host x, run 1".into(),
                expires_at: chrono::DateTime::UNIX_EPOCH,
            }));
        }
        m.last_token += 1;
        Ok(Ok(Lease {
            token: m.last_token,
        }))
    }
    fn release_lease(&self, _: &CredentialId, _: Lease) -> Res<()> {
        Ok(())
    }
    fn renew_lease(&self, _: Lease, id: RotationId) -> Res<()> {
        let mut m = self.inner.lock().unwrap();
        m.n_fences += 1;
        if m.lose_lease_before_write {
            return Err(StoreError::LeaseLost {
                cred: m.rotations[id.0 as usize].0.to_string(),
                why: "taken over".into(),
            }
            .into());
        }
        Ok(())
    }
}

impl LoginBudget for MemStore {
    fn record_login(&self, cred: &CredentialId, ok: bool) -> Res<u32> {
        let mut m = self.inner.lock().unwrap();
        let n = m.failed_logins.entry(cred.clone()).or_default();
        *n = if ok { 0 } else { *n + 1 };
        Ok(*n)
    }
    fn park(&self, _: &Actor, cred: &CredentialId, reason: &str) -> Res<()> {
        let mut m = self.inner.lock().unwrap();
        m.parked.insert(cred.clone(), reason.to_owned());
        Ok(())
    }
    fn unpark(&self, _: &Actor, cred: &CredentialId) -> Res<()> {
        let mut m = self.inner.lock().unwrap();
        m.parked.remove(cred);
        m.failed_logins.remove(cred);
        Ok(())
    }
    fn parked(&self, cred: &CredentialId) -> Res<Option<String>> {
        Ok(self.inner.lock().unwrap().parked.get(cred).cloned())
    }
}

impl super::ledger::Sightings for MemStore {}

impl Grants for MemStore {
    fn checked_out(&self, cred: &CredentialId) -> Res<Option<String>> {
        Ok(self.inner.lock().unwrap().checked_out.get(cred).cloned())
    }
}

/// The in-memory store grants every lease; tests that stage by hand use this one.
pub(crate) const LEASE: Lease = Lease { token: 0 };

pub(crate) fn host(name: &str) -> Host {
    Host {
        name: HostName::parse(name).unwrap(),
        address: "127.0.0.1".into(),
        port: 22,
        host_key: HostKeyPin::Key("ssh-ed25519 AAAA".into()),
        groups: vec![],
        connect: ConnectIdentity {
            user: AccountName::parse("root").unwrap(),
            auth: ConnectAuth::KeyFile("/k".into()),
        },
        accounts: vec![],
        connect_managed: None,
    }
}

pub(crate) fn policy() -> Policy {
    crate::inventory::default_policy()
}

pub(crate) fn setup(hosts: &[&str]) -> (&'static FakeFleet, Arc<MemStore>, Vec<HostWork>) {
    let fleet: &'static FakeFleet = Box::leak(Box::default());
    let mut work = Vec::new();
    for h in hosts {
        fleet.with(h, |fh| {
            fh.passwords.insert("svc_app".into(), "shared".into());
            fh.passwords.insert("svc_backup".into(), "shared".into());
        });
        work.push(HostWork {
            host: host(h),
            accounts: ["svc_app", "svc_backup"]
                .iter()
                .map(|a| AccountWork {
                    cred: CredentialId::new(
                        HostName::parse(h).unwrap(),
                        AccountName::parse(a).unwrap(),
                    ),
                    playbook: "linux-password".into(),
                    policy: policy(),
                    kind: crate::target::CredentialKind::Password,
                })
                .collect(),
        });
    }
    (fleet, Arc::new(MemStore::default()), work)
}

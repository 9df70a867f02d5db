//! The driver: runs the pure [`Rotation`] machine against a target ([`Target`]) and the
//! [`Store`], for many hosts at once.
//!
//! Hosts run concurrently through the one fan-out ([`fanout::run`]: bounded, canary batch,
//! breaker per host, stop flag, blocking SSH work on tokio's blocking pool, a panic answered
//! per credential); the accounts of one host run in sequence over that host's one admin
//! session. The driver gathers facts and carries out decisions made elsewhere: within a
//! rotation every step is the machine's `Command` and every result is fed back as an `Event`;
//! around it, admission (the lease, parking, a host that stopped answering) is
//! [`admission`]'s and the breaker and canary are [`super::blast`]'s. Time comes from the
//! store's injected clock (the lease fence before every push) and secrets from the run's
//! injected [`Entropy`]. It never logs a secret; it logs ids, phases and fault classes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinError;
use tracing::{info, warn};

use super::admission::{self, Admission};
use super::blast::{FailureLimit, SkipReason};
use super::fanout;
use super::ledger::{
    Actor, Lease, OpenRotation, Phase, RotationId, RunId, Store, StoreFailure, StoreFailureKind,
};
use super::machine::{Command, Event, Fault, FaultKind, Holds, Open, Outcome, Rotation};
use crate::clock::{Entropy, OsEntropy};
use crate::connector::{ConnectorError, FaultClass};
use crate::credential::{CredentialId, HostName};
use crate::inventory::{Host, Policy};
use crate::policy::generate;
use crate::secret::Secret;
use crate::target::{CredentialKind, Target};

/// Opens a target (one admin session) for a host. The SSH implementation lives with the
/// playbooks; tests use an in-memory fleet.
pub trait Fleet: Send + Sync {
    fn open(&self, host: &Host) -> Result<Box<dyn Target + Send>, ConnectorError>;

    /// Reads the host's accounts and their authorized keys for `rotor scan` over one admin
    /// session (read-only). A fleet that cannot read hosts says so for each.
    fn scan_host(&self, host: &Host) -> Result<crate::target::ScannedHost, ConnectorError> {
        Err(ConnectorError::new(
            crate::connector::FaultClass::Refused,
            format!("{}: this fleet cannot scan hosts", host.name),
        ))
    }
}

/// The work for one host: its credentials, in order.
#[derive(Clone, Debug)]
pub struct HostWork {
    pub host: Host,
    pub accounts: Vec<AccountWork>,
}

/// One credential of a host: its address, the policy its new secrets are drawn from (already
/// narrowed by its playbook's rules) and what kind of secret it is.
#[derive(Clone, Debug)]
pub struct AccountWork {
    pub cred: CredentialId,
    /// The playbook's name (for plans and reports).
    pub playbook: String,
    pub policy: Policy,
    pub kind: CredentialKind,
}

/// How one credential ended, for reports.
#[derive(Clone, Debug, Serialize)]
pub struct CredentialResult {
    pub cred: CredentialId,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub rotation: Option<RotationId>,
    pub elapsed_ms: u64,
    /// What the target said of the rotation beyond its outcome: the proof used where it was
    /// not a login as the account, keys removed that rotor had not installed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// How long a credential's lease lasts without a store write. Every write renews it, so it
/// must outlast the longest step between two writes (one push or one verification, each
/// bounded by the step timeout). A process that dies leaves the lease held this long.
const MIN_LEASE_TTL: Duration = Duration::from_secs(300);

/// A lease must outlive the longest gap between two writes of a rotation (a push, or a verify,
/// each bounded by the step timeout, plus the connect steps), with a wide margin: a lease
/// that expires under a live process would let another one take over its rotation.
pub fn lease_ttl(step_timeout: Duration) -> Duration {
    (step_timeout * 12).max(MIN_LEASE_TTL)
}

/// Names this process in a lease, so `rotor status` and the audit log say who held it.
fn lease_holder(what: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "?".to_owned());
    format!("rotor pid {} on host {host}, {what}", std::process::id())
}

/// Why a lease could not be taken.
enum NoLease {
    /// Another live rotor holds it: leave the credential alone ([`admission::busy`]).
    Busy(Admission),
    Store(Fault),
}

/// Takes the credential's lease.
fn take_lease(
    store: &dyn Store,
    by: &Actor,
    cred: &CredentialId,
    what: &str,
    ttl: Duration,
) -> Result<Lease, NoLease> {
    match store.acquire_lease(by, cred, &lease_holder(what), ttl) {
        Ok(Ok(lease)) => Ok(lease),
        Ok(Err(held)) => Err(NoLease::Busy(admission::busy(held))),
        Err(e) => Err(NoLease::Store(Fault::store(e.to_string()))),
    }
}

/// A skip decided by [`admission`], as an outcome.
fn skip(admission: Admission) -> Outcome {
    match admission {
        Admission::Skip(reason, detail) => Outcome::Skipped { reason, detail },
        Admission::Start | Admission::UnparkThenStart => {
            unreachable!("only skips are turned into outcomes")
        }
    }
}

fn give_back(store: &dyn Store, cred: &CredentialId, lease: Lease) {
    if let Err(e) = store.release_lease(cred, lease) {
        // Not fatal: the lease expires by itself after its ttl.
        warn!(cred = %cred, "could not give the lease back: {e}");
    }
}

/// Called after each credential finishes (progress bars).
pub type Progress = Arc<dyn Fn(&CredentialResult) + Send + Sync>;

/// Options of one run.
#[derive(Clone)]
pub struct RunOptions {
    pub concurrency: usize,
    pub progress: Option<Progress>,
    /// Hosts rotated first, as a batch; if any fails, nothing else starts.
    pub canary: usize,
    /// Failed hosts allowed before no new host starts.
    pub max_failures: FailureLimit,
    /// Set by the signal handler: start no new host or account; finish what is in flight.
    pub stop: Arc<AtomicBool>,
    /// How long a credential's lease lasts without a write (see [`lease_ttl`]).
    pub lease_ttl: Duration,
    /// Unpark parked credentials and try them again (the operator fixed the cause).
    pub retry_parked: bool,
    /// Where new secrets are drawn from.
    pub entropy: Arc<dyn Entropy>,
    /// Who the run is for: named in the audit entry of every write.
    pub actor: Actor,
    /// The incident profile (`--breach`): key credentials replace every key their account
    /// had ([`Target::breach`]).
    pub breach: bool,
}

impl RunOptions {
    pub fn new(concurrency: usize) -> RunOptions {
        RunOptions {
            concurrency,
            progress: None,
            canary: 0,
            max_failures: FailureLimit::Unlimited,
            stop: Arc::new(AtomicBool::new(false)),
            lease_ttl: MIN_LEASE_TTL,
            retry_parked: false,
            entropy: Arc::new(OsEntropy),
            actor: Actor::of_this_process(),
            breach: false,
        }
    }

    /// The fan-out's share of the options: concurrency, canary, failure limit, stop flag.
    pub fn limits(&self) -> fanout::Limits {
        fanout::Limits {
            concurrency: self.concurrency,
            canary: self.canary,
            max_failures: self.max_failures,
            stop: self.stop.clone(),
        }
    }
}

/// Rotates every credential of `work` in run `run`. Never fails as a whole: every credential
/// gets a result. The hosts go through the one fan-out ([`fanout::run`]): with a canary, the
/// first `canary` hosts run as a batch before the rest; the breaker counts failed hosts and
/// it and the stop flag are asked before each host starts.
pub async fn rotate(
    work: Vec<HostWork>,
    run: RunId,
    store: Arc<dyn Store>,
    fleet: Arc<dyn Fleet>,
    options: RunOptions,
) -> Vec<CredentialResult> {
    let limits = options.limits();
    let hosts = Arc::new(RotateHosts {
        run,
        store,
        fleet,
        options,
    });
    fanout::run(hosts, work, &limits)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Host rotation as fan-out work: one item per host, its accounts in sequence on one worker.
struct RotateHosts {
    run: RunId,
    store: Arc<dyn Store>,
    fleet: Arc<dyn Fleet>,
    options: RunOptions,
}

fn creds_of(work: &HostWork) -> Vec<CredentialId> {
    work.accounts.iter().map(|a| a.cred.clone()).collect()
}

impl fanout::Work for RotateHosts {
    type Item = HostWork;
    type Output = Vec<CredentialResult>;
    type Receipt = Vec<CredentialId>;

    fn name(&self, work: &HostWork) -> String {
        work.host.name.to_string()
    }
    fn receipt(&self, work: &HostWork) -> Vec<CredentialId> {
        creds_of(work)
    }
    fn run(&self, work: HostWork) -> Vec<CredentialResult> {
        rotate_host(&work, self.run, &*self.store, &*self.fleet, &self.options)
    }
    fn skip(&self, work: HostWork, reason: SkipReason, detail: &str) -> Vec<CredentialResult> {
        let progress = self.options.progress.as_ref();
        creds_of(&work)
            .into_iter()
            .map(|cred| reported(progress, skipped(cred, reason, detail)))
            .collect()
    }
    fn panicked(&self, creds: Vec<CredentialId>, panic: &JoinError) -> Vec<CredentialResult> {
        let progress = self.options.progress.as_ref();
        creds
            .into_iter()
            .map(|cred| reported(progress, panicked(cred, Phase::Staged, None, panic)))
            .collect()
    }
    fn failed(&self, results: &Vec<CredentialResult>) -> bool {
        results
            .iter()
            .any(|r| !matches!(r.outcome, Outcome::Committed | Outcome::Skipped { .. }))
    }
}

/// The result of a credential whose worker panicked. A panic must neither take the run down
/// nor make the credential vanish from the report: it is unsettled, so recovery looks at
/// whatever the worker left.
pub(super) fn panicked(
    cred: CredentialId,
    phase: Phase,
    rotation: Option<RotationId>,
    panic: &JoinError,
) -> CredentialResult {
    CredentialResult {
        cred,
        outcome: Outcome::Unsettled {
            phase,
            cause: Fault::target(FaultClass::Protocol, fanout::panic_text(panic)),
        },
        rotation,
        elapsed_ms: 0,
        notes: Vec::new(),
    }
}

pub(super) fn skipped(cred: CredentialId, reason: SkipReason, detail: &str) -> CredentialResult {
    CredentialResult {
        cred,
        outcome: Outcome::Skipped {
            reason,
            detail: detail.to_owned(),
        },
        rotation: None,
        elapsed_ms: 0,
        notes: Vec::new(),
    }
}

pub(super) fn report_progress(progress: Option<&Progress>, r: &CredentialResult) {
    if let Some(p) = progress {
        p(r);
    }
}

/// `r`, after telling the progress callback about it.
pub(super) fn reported(progress: Option<&Progress>, r: CredentialResult) -> CredentialResult {
    report_progress(progress, &r);
    r
}

/// The result of an open rotation that recovery did not reach because it was told to stop:
/// still open, for the next `rotor recover`.
pub(super) fn not_reached(r: &OpenRotation) -> CredentialResult {
    CredentialResult {
        cred: r.cred.clone(),
        outcome: Outcome::Unsettled {
            phase: r.phase,
            cause: Fault {
                class: FaultKind::Interrupted,
                message:
                    "recovery was stopped before it reached this rotation; run `rotor recover`"
                        .to_owned(),
            },
        },
        rotation: Some(r.id),
        elapsed_ms: 0,
        notes: Vec::new(),
    }
}

/// Settles every open rotation found in the store, grouped by host (directories first). The
/// hosts go through the one fan-out, without a breaker: recovery settles what it can; once
/// the stop flag is set, no new host starts and its rotations stay open.
pub async fn recover(
    hosts: &[HostWork],
    directories: &[super::directory::DirectoryWork],
    store: Arc<dyn Store>,
    fleet: Arc<dyn Fleet>,
    options: RunOptions,
) -> Result<Vec<CredentialResult>, StoreFailure> {
    let mut open = store.open_rotations()?;
    // A row that fails its integrity check is refused alone (nothing is sent for it, and
    // the file should be looked at); every other rotation is settled.
    let mut results: Vec<CredentialResult> = store
        .unreadable_rotations()?
        .into_iter()
        .map(|u| CredentialResult {
            cred: u.cred,
            outcome: Outcome::Unsettled {
                phase: u.phase,
                cause: Fault::store(u.error.to_string()),
            },
            rotation: Some(u.id),
            elapsed_ms: 0,
            notes: Vec::new(),
        })
        .collect();
    for work in directories {
        let (mine, rest): (Vec<_>, Vec<_>) =
            open.into_iter().partition(|r| r.cred.host == work.name);
        open = rest;
        results
            .extend(super::directory::recover_directory(work, mine, store.clone(), &options).await);
    }
    let mut by_host: BTreeMap<HostName, Vec<OpenRotation>> = BTreeMap::new();
    for rotation in open {
        by_host
            .entry(rotation.cred.host.clone())
            .or_default()
            .push(rotation);
    }
    let mut items = Vec::new();
    for (host_name, rotations) in by_host {
        let Some(host) = hosts.iter().find(|h| h.host.name == host_name).cloned() else {
            for r in rotations {
                results.push(CredentialResult {
                    cred: r.cred,
                    outcome: Outcome::Unsettled {
                        phase: r.phase,
                        cause: Fault::target(
                            FaultClass::Protocol,
                            format!("host {host_name} is not in this inventory; run `rotor recover` with the inventory that has it"),
                        ),
                    },
                    rotation: Some(r.id),
                    elapsed_ms: 0,
                    notes: Vec::new(),
                });
            }
            continue;
        };
        items.push((host, rotations));
    }
    let limits = fanout::Limits {
        stop: options.stop.clone(),
        ..fanout::Limits::new(options.concurrency)
    };
    let work = Arc::new(RecoverHosts {
        store,
        fleet,
        by: options.actor.clone(),
        lease_ttl: options.lease_ttl,
    });
    results.extend(
        fanout::run(work, items, &limits)
            .await
            .into_iter()
            .flatten(),
    );
    Ok(results)
}

/// Recovery as fan-out work: one item per host with the open rotations on it.
struct RecoverHosts {
    store: Arc<dyn Store>,
    fleet: Arc<dyn Fleet>,
    by: Actor,
    lease_ttl: Duration,
}

impl fanout::Work for RecoverHosts {
    type Item = (HostWork, Vec<OpenRotation>);
    type Output = Vec<CredentialResult>;
    type Receipt = Vec<(CredentialId, Phase, RotationId)>;

    fn name(&self, (work, _): &Self::Item) -> String {
        work.host.name.to_string()
    }
    fn receipt(&self, (_, rotations): &Self::Item) -> Self::Receipt {
        rotations
            .iter()
            .map(|r| (r.cred.clone(), r.phase, r.id))
            .collect()
    }
    fn run(&self, (work, rotations): Self::Item) -> Vec<CredentialResult> {
        recover_host(
            &work,
            rotations,
            &*self.store,
            &*self.fleet,
            &self.by,
            self.lease_ttl,
        )
    }
    fn skip(&self, (_, rotations): Self::Item, _: SkipReason, _: &str) -> Vec<CredentialResult> {
        rotations.iter().map(not_reached).collect()
    }
    fn panicked(&self, ids: Self::Receipt, panic: &JoinError) -> Vec<CredentialResult> {
        ids.into_iter()
            .map(|(cred, phase, id)| panicked(cred, phase, Some(id), panic))
            .collect()
    }
    fn failed(&self, _: &Vec<CredentialResult>) -> bool {
        // No breaker in recovery: every host's rotations are worth settling.
        false
    }
}

fn rotate_host(
    work: &HostWork,
    run: RunId,
    store: &dyn Store,
    fleet: &dyn Fleet,
    options: &RunOptions,
) -> Vec<CredentialResult> {
    let host = &work.host.name;
    let _span = tracing::info_span!("host", host = %host, run = %run).entered();
    let progress = options.progress.as_ref();
    let started = Instant::now();
    let mut target = match fleet.open(&work.host) {
        Ok(t) => t,
        Err(e) => {
            warn!(host = %host, class = %e.class, "cannot open host, skipping its accounts");
            return work
                .accounts
                .iter()
                .map(|account| {
                    let r = CredentialResult {
                        cred: account.cred.clone(),
                        outcome: Outcome::NotChanged {
                            cause: Fault::target(e.class, e.message.clone()),
                        },
                        rotation: None,
                        elapsed_ms: started.elapsed().as_millis() as u64,
                        notes: Vec::new(),
                    };
                    report_progress(progress, &r);
                    r
                })
                .collect();
        }
    };
    if options.breach {
        target.breach();
    }
    // Set once an account's host stopped answering (timed out, went away): the host's other
    // accounts are not started, so a hung host is not pushed to again and again, each push
    // waiting out the step timeout and leaving another rotation for recovery.
    let mut lost: Option<String> = None;
    work.accounts
        .iter()
        .map(|account| {
            let cred = account.cred.clone();
            // An interrupt lets the account in flight finish, then starts no other.
            let r = if options.stop.load(Ordering::SeqCst) {
                skipped(
                    cred,
                    SkipReason::Interrupted,
                    "the run was interrupted before this account started",
                )
            } else if let Some(why) = &lost {
                skipped(cred, SkipReason::HostLost, why)
            } else {
                let r = rotate_one(
                    cred,
                    &account.policy,
                    account.kind,
                    run,
                    store,
                    &mut *target,
                    options,
                );
                if let Some(cause) = admission::host_lost(&r.outcome) {
                    lost = Some(format!(
                        "not started: {host} stopped answering while rotor worked on {} ({}); run again once the host is back",
                        r.cred, cause.class_text()
                    ));
                }
                r
            };
            report_progress(progress, &r);
            r
        })
        .collect()
}

/// Draws a secret that no other credential in the vault has (invariant 6). A collision of
/// random passwords from a validated policy (64 bits or more) does not happen in practice;
/// this read only saves a staging attempt where it does. The check that counts is made again
/// inside the staging transaction ([`Store::stage`]), where no concurrent staging can race it.
fn generate_unique(
    cred: &CredentialId,
    policy: &Policy,
    kind: CredentialKind,
    store: &dyn Store,
    entropy: &dyn Entropy,
) -> Result<Secret, Fault> {
    for _ in 0..8 {
        let secret = match kind {
            // Validation refuses unsatisfiable policies, so this error means a policy that
            // cannot make a password at all: no new secret, like a collision that will not
            // go away.
            CredentialKind::Password => {
                generate(policy, &mut entropy.rng()).map_err(|e| Fault {
                    class: FaultKind::SecretCollision,
                    message: e.to_string(),
                })?
            }
            CredentialKind::SshKey => crate::sshkey::generate(&mut *entropy.rng(), cred).private,
        };
        match store.fingerprint_taken(&secret) {
            Ok(false) => return Ok(secret),
            Ok(true) => continue,
            Err(e) => return Err(Fault::store(e.to_string())),
        }
    }
    Err(Fault {
        class: FaultKind::SecretCollision,
        message: format!(
            "policy `{}` keeps producing passwords already in use: make it longer",
            policy.name
        ),
    })
}

#[allow(clippy::too_many_arguments)] // each is one fact of the rotation; a struct would only rename them
pub(super) fn rotate_one(
    cred: CredentialId,
    policy: &Policy,
    kind: CredentialKind,
    run: RunId,
    store: &dyn Store,
    target: &mut dyn Target,
    options: &RunOptions,
) -> CredentialResult {
    let started = Instant::now();
    let early = |cred: CredentialId, outcome: Outcome| CredentialResult {
        cred,
        outcome,
        rotation: None,
        elapsed_ms: 0,
        notes: Vec::new(),
    };
    let by = &options.actor;
    let lease = match take_lease(store, by, &cred, &format!("run {run}"), options.lease_ttl) {
        Ok(lease) => lease,
        Err(NoLease::Busy(admission)) => return early(cred, skip(admission)),
        Err(NoLease::Store(cause)) => return early(cred, Outcome::NotChanged { cause }),
    };
    let store_fault = |e: StoreFailure| Outcome::NotChanged {
        cause: Fault::store(e.to_string()),
    };
    let parked = match store.parked(&cred) {
        Ok(parked) => parked,
        Err(e) => {
            give_back(store, &cred, lease);
            return early(cred, store_fault(e));
        }
    };
    let holder = match store.checked_out(&cred) {
        Ok(holder) => holder,
        Err(e) => {
            give_back(store, &cred, lease);
            return early(cred, store_fault(e));
        }
    };
    if let skipped @ Admission::Skip(..) = admission::checked_out(&cred, holder.as_deref()) {
        give_back(store, &cred, lease);
        return early(cred, skip(skipped));
    }
    match admission::admit(&cred, parked.as_deref(), options.retry_parked) {
        Admission::Start => {}
        Admission::UnparkThenStart => {
            if let Err(e) = store.unpark(by, &cred) {
                give_back(store, &cred, lease);
                return early(cred, store_fault(e));
            }
            info!(cred = %cred, "unparked for --retry-parked");
        }
        skipped @ Admission::Skip(..) => {
            give_back(store, &cred, lease);
            return early(cred, skip(skipped));
        }
    }
    let new = match generate_unique(&cred, policy, kind, store, &*options.entropy) {
        Ok(s) => s,
        Err(cause) => {
            give_back(store, &cred, lease);
            return early(cred, Outcome::NotChanged { cause });
        }
    };
    let retires = target.retires(&cred);
    if kind == CredentialKind::SshKey {
        tell_current(store, target, &cred);
    }
    let mut job = Job {
        cred,
        run,
        new,
        by: by.clone(),
        lease,
        max_failed_logins: policy.max_failed_logins,
        rotation: None,
        refused: None,
    };
    let mut outcome = job.drive(Rotation::start(retires), store, target);
    if let Some((reason, detail)) = job.refused.take() {
        // Nothing was sent (the refusal came at Stage): report why, not as a failure.
        outcome = Outcome::Skipped { reason, detail };
    }
    give_back(store, &job.cred, lease);
    log_outcome(&job.cred, &outcome);
    CredentialResult {
        notes: target.notes(&job.cred),
        cred: job.cred,
        outcome,
        rotation: job.rotation,
        elapsed_ms: started.elapsed().as_millis() as u64,
    }
}

fn recover_host(
    work: &HostWork,
    rotations: Vec<OpenRotation>,
    store: &dyn Store,
    fleet: &dyn Fleet,
    by: &Actor,
    lease_ttl: Duration,
) -> Vec<CredentialResult> {
    let host = &work.host;
    let mut target = match fleet.open(host) {
        Ok(t) => Some(t),
        Err(e) => {
            warn!(host = %host.name, class = %e.class, "cannot open host to recover its rotations");
            return rotations
                .into_iter()
                .map(|r| CredentialResult {
                    cred: r.cred,
                    outcome: Outcome::Unsettled {
                        phase: r.phase,
                        cause: Fault::target(e.class, e.message.clone()),
                    },
                    rotation: Some(r.id),
                    elapsed_ms: 0,
                    notes: Vec::new(),
                })
                .collect();
        }
    };
    let target = target.as_deref_mut().expect("set just above");
    rotations
        .into_iter()
        .map(|r| {
            let max_failed_logins = work
                .accounts
                .iter()
                .find(|a| a.cred == r.cred)
                .map_or(crate::inventory::DEFAULT_MAX_FAILED_LOGINS, |a| {
                    a.policy.max_failed_logins
                });
            recover_one(r, max_failed_logins, store, target, by, lease_ttl)
        })
        .collect()
}

/// Settles one open rotation on a target: take the lease, adopt the rotation, run the
/// machine from the ledger's phase, give the lease back.
pub(super) fn recover_one(
    r: OpenRotation,
    max_failed_logins: u32,
    store: &dyn Store,
    target: &mut dyn Target,
    by: &Actor,
    lease_ttl: Duration,
) -> CredentialResult {
    let started = Instant::now();
    info!(cred = %r.cred, rotation = %r.id, phase = %r.phase, "recovering interrupted rotation");
    let unsettled = |cause: Fault| CredentialResult {
        cred: r.cred.clone(),
        outcome: Outcome::Unsettled {
            phase: r.phase,
            cause,
        },
        rotation: Some(r.id),
        elapsed_ms: 0,
        notes: Vec::new(),
    };
    let lease = match take_lease(store, by, &r.cred, "recovery", lease_ttl) {
        Ok(lease) => lease,
        // Another live rotor is working on it (a run in flight): nothing for recovery to
        // settle, nor for an operator to do; that process finishes it.
        Err(NoLease::Busy(admission)) => {
            return CredentialResult {
                cred: r.cred.clone(),
                outcome: skip(admission),
                rotation: Some(r.id),
                elapsed_ms: 0,
                notes: Vec::new(),
            };
        }
        Err(NoLease::Store(cause)) => return unsettled(cause),
    };
    // A parked credential gets no probe login: it stays open for the operator.
    if let Ok(Some(why)) = store.parked(&r.cred) {
        give_back(store, &r.cred, lease);
        return unsettled(Fault {
            class: FaultKind::Parked,
            message: format!(
                "parked ({why}): no login is tried until an operator has checked the account and run `rotor recover --cred {}`",
                r.cred
            ),
        });
    }
    if let Err(e) = store.adopt(by, lease, r.id) {
        give_back(store, &r.cred, lease);
        return unsettled(Fault::store(e.to_string()));
    }
    let retires = target.retires(&r.cred);
    if retires {
        // As the run did before it read the restore point (the saved one lists the same keys).
        tell_current(store, target, &r.cred);
    }
    target.resume(&r.cred, &r.restore_point);
    let open = Open {
        rotation: r.id,
        restore_point: r.restore_point,
        retires,
    };
    let mut job = Job {
        cred: r.cred,
        run: RunId(0),
        new: r.pending,
        by: by.clone(),
        lease,
        max_failed_logins,
        rotation: Some(r.id),
        refused: None,
    };
    let outcome = job.drive(Rotation::recover(r.phase, open), store, target);
    give_back(store, &job.cred, lease);
    log_outcome(&job.cred, &outcome);
    CredentialResult {
        notes: target.notes(&job.cred),
        cred: job.cred,
        outcome,
        rotation: job.rotation,
        elapsed_ms: started.elapsed().as_millis() as u64,
    }
}

fn log_outcome(cred: &CredentialId, outcome: &Outcome) {
    match outcome {
        Outcome::Committed => info!(cred = %cred, "rotated and verified"),
        Outcome::NotChanged { cause } => {
            warn!(cred = %cred, class = %cause.class, "not rotated: {}", cause.message)
        }
        Outcome::RolledBack { cause } => {
            warn!(cred = %cred, class = %cause.class, "rolled back: {}", cause.message)
        }
        Outcome::Unsettled { phase, cause } => tracing::error!(
            cred = %cred, phase = %phase, class = %cause.class,
            "left open for `rotor recover`: {}", cause.message
        ),
        Outcome::Stuck {
            cause,
            restore_error,
        } => tracing::error!(
            cred = %cred, class = %cause.class,
            "STUCK, operator needed: {}; restore failed: {}", cause.message, restore_error.message
        ),
        Outcome::Skipped { reason, detail } => {
            info!(cred = %cred, reason = %reason, "skipped: {detail}")
        }
        Outcome::KeptNew {
            cause,
            rollback_refused,
        } => warn!(
            cred = %cred,
            "kept the new secret: {}; rollback refused: {}", cause.message, rollback_refused.message
        ),
    }
}

/// Tells a key credential's target the vault's current key ([`Target::known_current`]), so
/// that a key stored with `enroll` (installed by someone else) is retired like rotor's own.
/// Called for keys only: passwords need no vault read on their path.
fn tell_current(store: &dyn Store, target: &mut dyn Target, cred: &CredentialId) {
    match store.current(cred) {
        Ok(Some(current)) => target.known_current(cred, &current),
        Ok(None) => {}
        // The run goes on: a key rotor installed is still found by its comment.
        Err(e) => warn!(cred = %cred, "could not read the current key: {e}"),
    }
}

/// Lockout budget bookkeeping (invariant 7), for every login rotor makes as an account
/// (verification, recovery probe, heartbeat): a rejected login counts, an accepted one resets
/// the count; at the policy's limit the credential is parked, so no later run keeps trying
/// until the account locks.
pub fn count_login(
    store: &dyn Store,
    by: &Actor,
    cred: &CredentialId,
    max_failed_logins: u32,
    result: &Result<(), ConnectorError>,
) {
    let rejected = match result {
        Ok(()) => false,
        Err(e) if e.class == FaultClass::VerifyFailed => true,
        // Not an answer about the secret (host down, timeout): nothing to count.
        Err(_) => return,
    };
    match store.record_login(cred, !rejected) {
        Ok(n) if rejected && n >= max_failed_logins => {
            let why = format!(
                "{n} consecutive failed logins as the account (limit {max_failed_logins}); rotor stopped trying so as not to lock it"
            );
            warn!(cred = %cred, failed_logins = n, "parking the credential");
            if let Err(e) = store.park(by, cred, &why) {
                warn!(cred = %cred, "could not park the credential: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => warn!(cred = %cred, "could not record the login attempt: {e}"),
    }
}

/// What the driver holds while the machine runs one rotation: the credential, the new (or,
/// in recovery, pending) secret and the lease. Everything else the steps need (the rotation
/// id, the restore point, the proof of verification) travels in the machine's states and
/// commands.
struct Job {
    cred: CredentialId,
    run: RunId,
    new: Secret,
    /// Who the rotation is done for (the run's actor), named in every audited write.
    by: Actor,
    /// The credential's lease; its token fences the rotation's store writes.
    lease: Lease,
    /// Lockout budget of the account's policy.
    max_failed_logins: u32,
    /// For the report: the ledger row, once staged (or the open rotation recovered).
    rotation: Option<RotationId>,
    /// The store refused to stage for a reason that is not a failure of this run (another
    /// rotation is open, the credential is parked, another process took it over).
    refused: Option<(SkipReason, String)>,
}

impl Job {
    fn drive(
        &mut self,
        start: (Rotation, Command),
        store: &dyn Store,
        target: &mut dyn Target,
    ) -> Outcome {
        let _span = tracing::info_span!("rotation", cred = %self.cred).entered();
        let (mut state, mut command) = start;
        let mut last_cause: Option<String> = None;
        loop {
            if let Command::Finish(outcome) = command {
                return outcome;
            }
            tracing::debug!(rotation = ?self.rotation, step = command.name(), "step");
            let event = self.execute(&command, store, target, last_cause.as_deref());
            if let Event::Failed(f) = &event {
                last_cause = Some(f.message.clone());
            }
            crash_point(&command, &event);
            (state, command) = state.on(event);
        }
    }

    fn execute(
        &mut self,
        command: &Command,
        store: &dyn Store,
        target: &mut dyn Target,
        last_cause: Option<&str>,
    ) -> Event {
        let cred = &self.cred;
        let from_target = |r: Result<(), ConnectorError>| match r {
            Ok(()) => Event::Ok,
            Err(e) => Event::Failed(Fault::target(e.class, e.message)),
        };
        let from_store = |r: Result<(), StoreFailure>| match r {
            Ok(()) => Event::Ok,
            Err(e) => Event::Failed(Fault::store(e.to_string())),
        };
        // A process that stalled past its lease must never write to a target over one that
        // took over: the lease is proved (and renewed) immediately before every such write.
        let (by, lease) = (&self.by, self.lease);
        let fenced = |rotation: RotationId, write: &mut dyn FnMut() -> Event| match store
            .renew_lease(lease, rotation)
        {
            Ok(()) => write(),
            Err(e) => Event::Failed(Fault::store(e.to_string())),
        };
        match command {
            Command::ReadRestorePoint => match target.read_restore_point(cred) {
                Ok(rp) => match target.refuses_rotation(cred, &rp) {
                    Some(why) => Event::Failed(Fault::target(FaultClass::AccountLocked, why)),
                    None => Event::Read(rp),
                },
                Err(e) => Event::Failed(Fault::target(e.class, e.message)),
            },
            Command::Stage { restore_point } => {
                match store.stage(by, lease, self.run, cred, &self.new, restore_point) {
                    Ok(id) => {
                        self.rotation = Some(id);
                        Event::Staged(id)
                    }
                    Err(e) => {
                        use StoreFailureKind as K;
                        self.refused = match e.kind {
                            K::RotationOpen | K::Stuck => Some(SkipReason::OpenRotation),
                            K::Parked => Some(SkipReason::Parked),
                            K::LeaseLost => Some(SkipReason::Busy),
                            K::SecretCollision | K::Integrity | K::Other => None,
                        }
                        .map(|reason| (reason, e.to_string()));
                        let class = match e.kind {
                            K::SecretCollision => FaultKind::SecretCollision,
                            _ => FaultKind::Store,
                        };
                        Event::Failed(Fault {
                            class,
                            message: e.to_string(),
                        })
                    }
                }
            }
            Command::Push {
                rotation,
                restore_point,
            } => fenced(*rotation, &mut || {
                from_target(target.apply(cred, &self.new, restore_point))
            }),
            Command::Record(rotation, phase) => {
                from_store(store.record_phase(by, lease, *rotation, *phase, last_cause))
            }
            Command::Verify | Command::ProbePending => {
                let result = target.prove(cred, &self.new);
                count_login(store, by, cred, self.max_failed_logins, &result);
                from_target(result)
            }
            Command::Commit(verified) => {
                from_store(store.commit(by, lease, verified.rotation(), verified.then_retire()))
            }
            Command::Retire {
                rotation,
                restore_point,
            } => fenced(*rotation, &mut || {
                from_target(target.retire(cred, restore_point, &self.new))
            }),
            Command::RecordRetired(rotation) => {
                from_store(store.record_retired(by, lease, *rotation))
            }
            Command::Restore {
                rotation,
                restore_point,
            } => fenced(*rotation, &mut || {
                from_target(target.undo(cred, restore_point, &self.new))
            }),
            Command::RecordRolledBack(rotation) => {
                let reason = last_cause.unwrap_or("rolled back");
                from_store(store.roll_back(by, lease, *rotation, reason))
            }
            Command::RecordStuck(rotation, reason) => {
                from_store(store.mark_stuck(by, lease, *rotation, reason))
            }
            Command::CheckTarget { restore_point } => match target.read_restore_point(cred) {
                Ok(now) => Event::Holds(if now.ct_eq(restore_point) {
                    Holds::Saved
                } else {
                    match target.holds(cred, &now, &self.new) {
                        Some(true) => Holds::Pending,
                        Some(false) => Holds::Other,
                        None => Holds::Changed,
                    }
                }),
                Err(e) => Event::Failed(Fault::target(e.class, e.message)),
            },
            Command::Finish(_) => unreachable!("drive() returns before executing Finish"),
        }
    }
}

/// Test hooks (only with the `lab` feature; release builds do not contain this code):
/// - `ROTOR_LAB_PAUSE_AT=staged|applied|verified|retiring` makes the process write `$ROTOR_LAB_PAUSE_FILE` and
///   hang right after the first rotation reaches that phase, so a test can SIGKILL it there.
/// - `ROTOR_LAB_HOLD_AT=POINT[,POINT...]` with `ROTOR_LAB_HOLD_DIR=D` holds the first rotation
///   that reaches each point (`applied`, or `restore_refused`: the target's policy refused the
///   rollback) until the test creates `D/POINT`, so the test can change the target there.
#[cfg(feature = "lab")]
fn crash_point(command: &Command, event: &Event) {
    let reached = match (command, event) {
        (Command::Stage { .. }, Event::Staged(_)) => "staged",
        (Command::Record(_, Phase::Applied), Event::Ok) => "applied",
        (Command::Verify, Event::Ok) => "verified",
        (Command::Commit(verified), Event::Ok) if verified.then_retire() => "retiring",
        (Command::Restore { .. }, Event::Failed(f))
            if f.class
                == super::machine::FaultKind::Target(FaultClass::RollbackRefusedByPolicy) =>
        {
            "restore_refused"
        }
        _ => return,
    };
    if let (Ok(points), Ok(dir)) = (
        std::env::var("ROTOR_LAB_HOLD_AT"),
        std::env::var("ROTOR_LAB_HOLD_DIR"),
    ) && points.split(',').any(|p| p == reached)
    {
        let go = std::path::Path::new(&dir).join(reached);
        // create_new: only the first worker to get here is held.
        if std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(go.with_extension("waiting"))
            .is_ok()
        {
            lab_hold(&go);
        }
    }
    if std::env::var("ROTOR_LAB_PAUSE_AT").as_deref() != Ok(reached) {
        return;
    }
    let Ok(file) = std::env::var("ROTOR_LAB_PAUSE_FILE") else {
        return;
    };
    // create_new: only the first worker to get here pauses the run.
    if std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&file)
        .is_ok()
    {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// Lab hook: waits until the test creates `go` (at most two minutes, so a broken test cannot
/// hang a run forever).
#[cfg(feature = "lab")]
pub fn lab_hold(go: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !go.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(not(feature = "lab"))]
fn crash_point(_: &Command, _: &Event) {}

#[cfg(test)]
mod tests {
    //! The driver against an in-memory store and scripted hosts: every failure path of one
    //! rotation, and recovery, in milliseconds.
    use super::*;
    use crate::engine::ledger::{Ledger, LoginBudget, Secrets};
    use crate::engine::testkit::{FakeFleet, FleetRef, MemStore, setup};

    fn run_rotate(
        fleet: &'static FakeFleet,
        store: &Arc<MemStore>,
        work: Vec<HostWork>,
    ) -> Vec<CredentialResult> {
        run_with(fleet, store, work, RunOptions::new(4))
    }

    fn run_with(
        fleet: &'static FakeFleet,
        store: &Arc<MemStore>,
        work: Vec<HostWork>,
        options: RunOptions,
    ) -> Vec<CredentialResult> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut r = rt.block_on(rotate(
            work,
            RunId(1),
            store.clone(),
            Arc::new(FleetRef(fleet)),
            options,
        ));
        r.sort_by(|a, b| a.cred.cmp(&b.cred));
        r
    }

    /// `recover` over `work` on a runtime of its own, in result order.
    fn run_recover(
        fleet: &'static FakeFleet,
        store: &Arc<MemStore>,
        work: &[HostWork],
    ) -> Vec<CredentialResult> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(recover(
            work,
            &[],
            store.clone(),
            Arc::new(FleetRef(fleet)),
            RunOptions::new(2),
        ))
        .unwrap()
    }

    fn skips(results: &[CredentialResult]) -> Vec<String> {
        results
            .iter()
            .map(|r| match &r.outcome {
                Outcome::Skipped { reason, .. } => format!("{} skipped: {reason}", r.cred.host),
                o => format!("{} {}", r.cred.host, o.label()),
            })
            .step_by(2)
            .collect()
    }

    #[test]
    fn a_failed_canary_stops_the_run() {
        let (fleet, store, work) = setup(&["a", "b", "c", "d"]);
        fleet.with("b", |h| h.refuse_set = true);
        let options = RunOptions {
            canary: 2,
            ..RunOptions::new(8)
        };
        let results = run_with(fleet, &store, work, options);
        assert_eq!(
            skips(&results),
            [
                "a committed",
                "b rolled back",
                "c skipped: canary failed",
                "d skipped: canary failed"
            ]
        );
        assert_eq!(
            fleet.password("c", "svc_app").unwrap(),
            "shared",
            "c never touched"
        );
    }

    #[test]
    fn the_breaker_stops_launching_hosts_once_failures_exceed_the_limit() {
        let (fleet, store, work) = setup(&["a", "b", "c", "d"]);
        fleet.with("a", |h| h.down = true);
        fleet.with("b", |h| h.refuse_set = true);
        // Concurrency 1 makes the order of launches, and so the result, deterministic.
        let options = RunOptions {
            max_failures: FailureLimit::Count(1),
            ..RunOptions::new(1)
        };
        let results = run_with(fleet, &store, work, options);
        assert_eq!(
            skips(&results),
            [
                "a not changed",
                "b rolled back",
                "c skipped: failure limit reached",
                "d skipped: failure limit reached"
            ]
        );
    }

    /// Lockout budget: each run's failed verification counts; at the policy's limit (2) the
    /// credential is parked and later runs skip it without a login, until --retry-parked.
    #[test]
    fn repeated_failed_logins_park_the_credential() {
        let (fleet, store, work) = setup(&["a"]);
        fleet.with("a", |h| h.break_login = true);
        let n_verifies = || {
            fleet
                .log
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.ends_with("verify"))
                .count()
        };
        let first = run_rotate(fleet, &store, work.clone());
        assert_eq!(skips(&first), ["a rolled back"]);
        let second = run_rotate(fleet, &store, work.clone());
        assert_eq!(skips(&second), ["a rolled back"]);
        assert_eq!(n_verifies(), 4);
        let app = CredentialId::parse("a/svc_app").unwrap();
        assert!(
            store
                .parked(&app)
                .unwrap()
                .unwrap()
                .contains("2 consecutive failed logins")
        );

        let third = run_rotate(fleet, &store, work.clone());
        assert_eq!(skips(&third), ["a skipped: parked"]);
        assert_eq!(n_verifies(), 4, "no login while parked");

        fleet.with("a", |h| h.break_login = false);
        let options = RunOptions {
            retry_parked: true,
            ..RunOptions::new(1)
        };
        let fourth = run_with(fleet, &store, work, options);
        assert_eq!(skips(&fourth), ["a committed"]);
        assert!(store.parked(&app).unwrap().is_none());
    }

    #[test]
    fn a_locked_account_is_not_given_a_password() {
        let (fleet, store, work) = setup(&["a"]);
        fleet.with("a", |h| {
            h.passwords.insert("svc_app".into(), "!locked".into());
        });
        let results = run_rotate(fleet, &store, work);
        assert_eq!(
            labels(&results),
            ["a/svc_app not changed", "a/svc_backup committed"]
        );
        assert_eq!(fleet.password("a", "svc_app").unwrap(), "!locked");
        assert_eq!(
            fleet
                .log
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.ends_with(" set"))
                .count(),
            1
        );
    }

    #[test]
    fn an_interrupt_starts_nothing_new() {
        let (fleet, store, work) = setup(&["a", "b"]);
        let options = RunOptions::new(1);
        options.stop.store(true, Ordering::SeqCst);
        let results = run_with(fleet, &store, work, options);
        assert_eq!(
            skips(&results),
            ["a skipped: interrupted", "b skipped: interrupted"]
        );
        assert!(
            fleet.log.lock().unwrap().is_empty(),
            "no host was contacted"
        );
    }

    fn labels(results: &[CredentialResult]) -> Vec<String> {
        results
            .iter()
            .map(|r| format!("{} {}", r.cred, r.outcome.label()))
            .collect()
    }

    #[test]
    fn every_write_to_a_target_is_fenced_right_before_it() {
        // One proof before each push; a failed verification adds one before the restore.
        let (fleet, store, work) = setup(&["a"]);
        let results = run_rotate(fleet, &store, work);
        assert!(results.iter().all(|r| r.outcome == Outcome::Committed));
        assert_eq!(store.inner.lock().unwrap().n_fences, 2);
        let (fleet, store, work) = setup(&["a"]);
        fleet.with("a", |h| h.break_login = true);
        let results = run_rotate(fleet, &store, work);
        assert!(results.iter().all(|r| r.outcome.label() == "rolled back"));
        assert_eq!(store.inner.lock().unwrap().n_fences, 4);
    }

    #[test]
    fn a_process_that_lost_its_lease_writes_nothing_to_the_target() {
        let (fleet, store, work) = setup(&["a"]);
        store.inner.lock().unwrap().lose_lease_before_write = true;
        let before = fleet.password("a", "svc_app");
        let results = run_rotate(fleet, &store, work);
        assert_eq!(fleet.password("a", "svc_app"), before);
        assert!(
            !fleet
                .log
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.ends_with(" set")),
            "{:?}",
            fleet.log.lock().unwrap()
        );
        assert!(
            results.iter().all(|r| r.outcome != Outcome::Committed),
            "{:?}",
            labels(&results)
        );
    }

    #[test]
    fn a_host_that_stops_answering_gets_no_more_pushes() {
        let (fleet, store, work) = setup(&["a", "b"]);
        fleet.with("a", |h| h.hang_on_set = true);
        let results = run_rotate(fleet, &store, work);
        assert_eq!(
            labels(&results),
            [
                "a/svc_app unsettled",
                "a/svc_backup skipped",
                "b/svc_app committed",
                "b/svc_backup committed"
            ]
        );
        let a_steps: Vec<String> = fleet
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("a "))
            .cloned()
            .collect();
        // svc_app: read, push (hangs), check (no answer); svc_backup: nothing at all.
        assert_eq!(a_steps, ["a read", "a set", "a read"]);
        match &results[1].outcome {
            Outcome::Skipped { reason, detail } => {
                assert_eq!(*reason, SkipReason::HostLost);
                assert!(
                    detail.contains("a stopped answering while rotor worked on a/svc_app"),
                    "{detail}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_account_gets_its_own_verified_secret() {
        let (fleet, store, work) = setup(&["a", "b", "c"]);
        let results = run_rotate(fleet, &store, work);
        assert!(
            results.iter().all(|r| r.outcome == Outcome::Committed),
            "{:?}",
            labels(&results)
        );
        let mut seen = std::collections::HashSet::new();
        for r in &results {
            let on_host = fleet
                .password(r.cred.host.as_str(), r.cred.account.as_str())
                .unwrap();
            let in_vault = store.current(&r.cred).unwrap().unwrap();
            assert_eq!(on_host, in_vault.expose());
            assert!(seen.insert(on_host), "secrets must differ");
        }
    }

    #[test]
    fn refused_push_rolls_back_only_that_host() {
        let (fleet, store, work) = setup(&["a", "b"]);
        fleet.with("b", |h| h.refuse_set = true);
        let results = run_rotate(fleet, &store, work);
        assert_eq!(
            labels(&results),
            [
                "a/svc_app committed",
                "a/svc_backup committed",
                "b/svc_app rolled back",
                "b/svc_backup rolled back"
            ]
        );
        assert_eq!(fleet.password("b", "svc_app").unwrap(), "shared");
        assert!(store.open_rotations().unwrap().is_empty());
    }

    #[test]
    fn failed_verification_restores_the_old_password() {
        let (fleet, store, work) = setup(&["a"]);
        fleet.with("a", |h| h.break_login = true);
        let results = run_rotate(fleet, &store, work);
        assert!(results.iter().all(|r| r.outcome.label() == "rolled back"));
        assert_eq!(fleet.password("a", "svc_app").unwrap(), "shared");
        assert!(store.current(&results[0].cred).unwrap().is_none());
    }

    #[test]
    fn vault_failure_pushes_nothing() {
        let (fleet, store, work) = setup(&["a"]);
        store.inner.lock().unwrap().fail_stage = true;
        let results = run_rotate(fleet, &store, work);
        assert!(results.iter().all(|r| r.outcome.label() == "not changed"));
        assert!(
            !fleet
                .log
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.ends_with(" set"))
        );
        assert_eq!(fleet.password("a", "svc_app").unwrap(), "shared");
    }

    #[test]
    fn unreachable_host_changes_nothing_and_others_complete() {
        let (fleet, store, work) = setup(&["a", "b"]);
        fleet.with("a", |h| h.down = true);
        let results = run_rotate(fleet, &store, work);
        assert_eq!(
            labels(&results),
            [
                "a/svc_app not changed",
                "a/svc_backup not changed",
                "b/svc_app committed",
                "b/svc_backup committed"
            ]
        );
    }

    /// Crash after staging (nothing pushed) and after applying (pushed, not committed):
    /// recovery drops the first and commits the second.
    #[test]
    fn recovery_settles_staged_and_applied() {
        let (fleet, store, work) = setup(&["a"]);
        let backup = CredentialId::parse("a/svc_backup").unwrap();
        store.left_open("a/svc_app", "new-app", "shared", Phase::Staged);
        fleet.with("a", |h| {
            h.passwords.insert("svc_backup".into(), "new-backup".into());
        });
        store.left_open("a/svc_backup", "new-backup", "shared", Phase::Applied);
        let mut results = run_recover(fleet, &store, &work);
        results.sort_by(|a, b| a.cred.cmp(&b.cred));
        assert_eq!(
            labels(&results),
            ["a/svc_app rolled back", "a/svc_backup committed"]
        );
        assert_eq!(
            store.current(&backup).unwrap().unwrap().expose(),
            "new-backup"
        );
        assert_eq!(fleet.password("a", "svc_app").unwrap(), "shared");
        assert!(store.open_rotations().unwrap().is_empty());
    }

    /// An interrupted rotation whose pending secret no longer logs in, recovered against a
    /// host that holds `on_host` for svc_app (the fake's "hash" is the password itself).
    fn recover_applied_with(on_host: &str, break_login: bool) -> (Vec<String>, String) {
        let (fleet, store, work) = setup(&["a"]);
        store.left_open("a/svc_app", "new-app", "shared", Phase::Applied);
        fleet.with("a", |h| {
            h.passwords.insert("svc_app".into(), on_host.into());
            h.break_login = break_login;
        });
        let results = run_recover(fleet, &store, &work);
        assert!(store.open_rotations().unwrap().is_empty());
        (labels(&results), fleet.password("a", "svc_app").unwrap())
    }

    /// A tampered open rotation is refused alone; the healthy one beside it is settled.
    #[test]
    fn recovery_refuses_a_tampered_rotation_and_settles_the_others() {
        let (fleet, store, work) = setup(&["a", "b"]);
        store.left_open("a/svc_app", "new-app", "shared", Phase::Applied);
        fleet.with("a", |h| {
            h.passwords.insert("svc_app".into(), "new-app".into());
        });
        {
            let mut m = store.inner.lock().unwrap();
            m.tampered = Some(CredentialId::parse("a/svc_backup").unwrap());
            m.held_elsewhere = Some(CredentialId::parse("b/svc_app").unwrap());
        }
        store.left_open("b/svc_app", "new-b", "shared", Phase::Staged);
        let results = run_recover(fleet, &store, &work);
        let mut got = labels(&results);
        got.sort();
        // b/svc_app's rotation belongs to a live run: skipped, not left for an operator.
        assert_eq!(
            got,
            [
                "a/svc_app committed",
                "a/svc_backup unsettled",
                "b/svc_app skipped"
            ]
        );
        let tampered = results
            .iter()
            .find(|r| r.cred.account.as_str() == "svc_backup");
        assert!(
            matches!(&tampered.unwrap().outcome, Outcome::Unsettled { cause, .. } if cause.message.contains("integrity")),
            "{tampered:?}"
        );
    }

    /// The host holds rotor's new password but logins with it fail: rotor's change, undone.
    #[test]
    fn recovery_restores_its_own_change_when_pending_does_not_log_in() {
        let (results, on_host) = recover_applied_with("new-app", true);
        assert_eq!(results, ["a/svc_app rolled back"]);
        assert_eq!(on_host, "shared");
    }

    /// The host holds neither the saved hash nor rotor's new password: an operator reset it
    /// by hand. Recovery must not put the old, perhaps compromised, password back.
    #[test]
    fn recovery_leaves_a_change_made_outside_rotor_alone() {
        let (results, on_host) = recover_applied_with("reset-by-hand", false);
        assert_eq!(results, ["a/svc_app stuck"]);
        assert_eq!(on_host, "reset-by-hand");
    }
}

//! The ledger vocabulary shared by the engine and the store: rotation phases, ids, and the
//! [`Store`] trait the driver writes through. The trait is what lets every crash point of the
//! driver be tested against an in-memory store.
//!
//! Two parts of the protocol live in the trait as well: the per-credential *lease* with its
//! fencing token (invariant 5: one rotation in flight per credential, across processes), and
//! the *lockout budget* bookkeeping (invariant 7: consecutive failed logins, parking).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::credential::CredentialId;
use crate::secret::Secret;

/// The phase of one rotation (DESIGN.md, "The rotation protocol").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Planned,
    /// New secret durably stored as `pending`; nothing sent yet (or sending in progress).
    Staged,
    /// The target accepted the new secret; not yet proven.
    Applied,
    /// A fresh login with the new secret worked.
    Verified,
    /// `pending` became `current`. Final.
    Committed,
    /// `pending` became `current`; the old credential is being removed from the target (SSH
    /// keys). Open: recovery finishes it.
    Retiring,
    /// The old credential was removed after commit. Final.
    Retired,
    RollingBack,
    /// The old credential is back and proven; `pending` dropped. Final.
    RolledBack,
    /// Could not settle; both secrets kept for an operator. Final until an operator acts.
    Stuck,
}

impl Phase {
    pub const ALL: [Phase; 10] = [
        Phase::Planned,
        Phase::Staged,
        Phase::Applied,
        Phase::Verified,
        Phase::Committed,
        Phase::Retiring,
        Phase::Retired,
        Phase::RollingBack,
        Phase::RolledBack,
        Phase::Stuck,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Planned => "planned",
            Phase::Staged => "staged",
            Phase::Applied => "applied",
            Phase::Verified => "verified",
            Phase::Committed => "committed",
            Phase::Retiring => "retiring",
            Phase::Retired => "retired",
            Phase::RollingBack => "rolling_back",
            Phase::RolledBack => "rolled_back",
            Phase::Stuck => "stuck",
        }
    }

    /// A rotation in one of these phases may have touched the target and must be settled by
    /// recovery before the credential is rotated again.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            Phase::Staged | Phase::Applied | Phase::Verified | Phase::RollingBack | Phase::Retiring
        )
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Phase {
    type Err = String;
    fn from_str(s: &str) -> Result<Phase, String> {
        Phase::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown phase `{s}`"))
    }
}

/// A rotation's row id in the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RotationId(pub i64);

/// A run's row id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RunId(pub i64);

impl fmt::Display for RotationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A rotation that recovery must settle: it was left in an open phase.
#[derive(Debug)]
pub struct OpenRotation {
    pub id: RotationId,
    pub cred: CredentialId,
    pub phase: Phase,
    pub pending: Secret,
    /// What the target held before (for Linux: the shadow hash).
    pub restore_point: Secret,
}

/// An open rotation whose secrets fail their integrity check: recovery refuses it alone.
#[derive(Debug)]
pub struct UnreadableRotation {
    pub id: RotationId,
    pub cred: CredentialId,
    pub phase: Phase,
    pub error: crate::store::StoreError,
}

/// A lease on one credential: at most one live holder at a time, across processes (and later
/// machines). The token fences writes: a rotation row records the token it was staged (or
/// adopted) with, and the store refuses writes to it once that token is no longer the
/// credential's current, unexpired lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Fencing token: strictly increasing per vault.
    pub token: i64,
}

/// Why a lease was not granted: someone else holds it and it has not expired.
#[derive(Clone, Debug)]
pub struct LeaseHeld {
    /// Who holds it, as that holder described itself (e.g. "rotor pid 1234 on host x, run 7").
    pub holder: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

impl fmt::Display for LeaseHeld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "held by {} until {}",
            self.holder,
            self.expires_at.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

/// The store as the engine sees it. Every method has committed when it returns (a crash of
/// rotor loses nothing); `stage` is also on disk against power loss (synchronous=FULL), which
/// is what makes "staged before pushed" true. The later writes of a rotation may be lost to
/// power loss only as a suffix, and recovery repairs that by probing.
/// Implementations are shared across host workers, hence `&self` and `Sync`.
pub trait Store: Send + Sync {
    /// Opens a run (a set of rotations started together) with its reason.
    fn begin_run(&self, reason: &str, scope: &str) -> Result<RunId, crate::store::StoreError>;
    /// Ends a run with its summary counts (free-form JSON for the record).
    fn end_run(&self, run: RunId, summary: &str) -> Result<(), crate::store::StoreError>;
    /// True if any stored secret version (of any credential) has this secret's keyed
    /// fingerprint. Used to regenerate on collision and to warn on shared enrolled secrets.
    fn fingerprint_taken(&self, secret: &Secret) -> Result<bool, crate::store::StoreError>;
    /// Stores `new` as the credential's `pending` version and a ledger row in `Staged`, with the
    /// encrypted restore point and `lease`'s token, in one transaction. Fails with
    /// `StoreError::RotationOpen` when the credential already has an open rotation, and with
    /// `StoreError::LeaseLost` when `lease` is not the credential's current, unexpired lease.
    fn stage(
        &self,
        run: RunId,
        cred: &CredentialId,
        new: &Secret,
        restore_point: &Secret,
        lease: Lease,
    ) -> Result<RotationId, crate::store::StoreError>;
    /// Records a phase change (and an optional note, never a secret) for an open rotation.
    ///
    /// Fencing (this and `commit`, `roll_back`, `mark_stuck`): the write happens only if the
    /// rotation's token is the credential's current lease, that lease has not expired, and
    /// it was granted to this store handle (these methods carry no lease, so the handle
    /// remembers what `acquire_lease` gave it; a handle stands for one process). Otherwise
    /// `StoreError::LeaseLost` and nothing changes. A write that happens renews the lease by
    /// the ttl it was acquired with.
    fn record_phase(
        &self,
        id: RotationId,
        phase: Phase,
        note: Option<&str>,
    ) -> Result<(), crate::store::StoreError>;
    /// Proves that this handle still holds the rotation's lease and renews it, changing
    /// nothing else: the fence the driver runs immediately before every write to a target
    /// (push, restore), so a process paused past its lease never changes a target after
    /// another process took the credential over. `StoreError::LeaseLost` otherwise.
    fn renew_lease(&self, id: RotationId) -> Result<(), crate::store::StoreError>;
    /// `pending` -> `current`, old `current` -> `previous`, old `previous` -> retired; ledger
    /// row -> `Committed`. One transaction, which also gives back the rotation's lease (as
    /// `roll_back` and `mark_stuck` do: a closed rotation needs none). With `then_retire`
    /// the row goes to `Retiring` instead and keeps its lease: the old credential is still
    /// to be removed from the target ([`Store::record_retired`] closes it).
    fn commit(&self, id: RotationId, then_retire: bool) -> Result<(), crate::store::StoreError>;
    /// Ends a `Retiring` row in `Retired` (the old credential is gone from the target) and
    /// gives back its lease.
    fn record_retired(&self, id: RotationId) -> Result<(), crate::store::StoreError>;
    /// Drops `pending` (kept as retired history, marked never used) and ends the ledger row in
    /// `RolledBack` with the reason.
    fn roll_back(&self, id: RotationId, reason: &str) -> Result<(), crate::store::StoreError>;
    /// Ends the ledger row in `Stuck` with the reason; keeps `pending` and `current`.
    fn mark_stuck(&self, id: RotationId, reason: &str) -> Result<(), crate::store::StoreError>;
    /// Every rotation in an open phase, with its decrypted pending secret and restore point.
    /// A row that fails its integrity check (altered, or moved to another credential) is not
    /// among them: see [`Store::unreadable_rotations`].
    fn open_rotations(&self) -> Result<Vec<OpenRotation>, crate::store::StoreError>;
    /// The open rotations whose secrets fail their integrity check, with the error: recovery
    /// refuses each of them (it would write who knows what to a target) and settles the rest.
    fn unreadable_rotations(&self) -> Result<Vec<UnreadableRotation>, crate::store::StoreError> {
        Ok(Vec::new())
    }
    /// The credential's `current` secret, if the vault has one.
    fn current(&self, cred: &CredentialId) -> Result<Option<Secret>, crate::store::StoreError>;

    /// Takes the credential's lease for `holder` (e.g. "rotor pid 1234 on host x, run 7") for
    /// `ttl`, unless another holder has a lease that has not expired: then Ok(Err(LeaseHeld)).
    /// A new token is issued every time (greater than any before).
    fn acquire_lease(
        &self,
        cred: &CredentialId,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<Result<Lease, LeaseHeld>, crate::store::StoreError>;
    /// Gives the lease back (no-op if it is no longer ours: token mismatch, or closing its
    /// rotation gave it back already).
    fn release_lease(
        &self,
        cred: &CredentialId,
        lease: Lease,
    ) -> Result<(), crate::store::StoreError>;
    /// Makes `lease` the fencing token of an existing open rotation (recovery taking over a
    /// rotation whose process died).
    fn adopt(&self, id: RotationId, lease: Lease) -> Result<(), crate::store::StoreError>;
    /// Consecutive failed logins rotor made as this account (verification, probe, heartbeat):
    /// `ok` resets it to 0, a failure adds 1. Returns the new count.
    fn record_login(&self, cred: &CredentialId, ok: bool) -> Result<u32, crate::store::StoreError>;
    /// Parks the credential: rotor makes no more logins or rotations for it until an operator
    /// unparks it. Audited.
    fn park(&self, cred: &CredentialId, reason: &str) -> Result<(), crate::store::StoreError>;
    /// Clears parking and the failure count. Audited.
    fn unpark(&self, cred: &CredentialId) -> Result<(), crate::store::StoreError>;
    /// The parking reason, if parked.
    fn parked(&self, cred: &CredentialId) -> Result<Option<String>, crate::store::StoreError>;
}

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

use crate::credential::{CredentialId, HostName};
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
    pub error: StoreFailure,
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

/// A store failure as the engine sees it: a class to branch on and a message for people
/// (never a secret). The store's own error type stays in `store`; it converts at the port.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct StoreFailure {
    pub kind: StoreFailureKind,
    pub message: String,
}

/// What the engine needs to tell apart when the store says no.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreFailureKind {
    /// The credential already has an open rotation.
    RotationOpen,
    /// The credential's last rotation is stuck: an operator must settle it first.
    Stuck,
    /// The credential is parked (lockout budget spent).
    Parked,
    /// The lease given is not the credential's current, unexpired lease (another process took
    /// it over, or it expired).
    LeaseLost,
    /// The new secret is already another credential's (invariant 6).
    SecretCollision,
    /// Stored secrets failed their integrity check (altered, or moved between rows).
    Integrity,
    /// Anything else: the vault could not be read or written.
    Other,
}

impl StoreFailure {
    pub fn other(message: impl Into<String>) -> StoreFailure {
        StoreFailure {
            kind: StoreFailureKind::Other,
            message: message.into(),
        }
    }
}

/// Who acts, recorded with every audited write: the OS user of the real uid for the CLI, or
/// the person sudo ran rotor for when rotor's parent is sudo itself (else `SUDO_USER` is only
/// recorded as claimed), an API token's principal later. Passed with each call, so one store
/// serves many requests for many people.
///
/// `person` is who the rules compare (dual control: an approver must be another person);
/// `shown` is what the audit log records, starting with the person's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    person: String,
    shown: String,
    how: Identified,
}

/// How rotor knows who the actor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identified {
    /// The OS user of the real uid, no sudo involved.
    Os,
    /// The user sudo ran rotor for (sudo itself is rotor's parent).
    Sudo,
    /// The real uid's user, with a `SUDO_USER` nobody can vouch for: the person may be
    /// someone else. Rules that depend on who acts (dual control) refuse such an actor.
    Claimed,
    /// A name a front-end gives (an API token's principal, a test).
    Named,
}

/// What sudo says about who started this process, and whether that can be believed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SudoClaim {
    /// No `SUDO_USER`.
    None,
    /// `SUDO_USER` set, and rotor's parent process is sudo running as root: sudo set it.
    Trusted(String),
    /// `SUDO_USER` set by someone else (the parent is not a root sudo): recorded, not believed.
    Claimed(String),
}

impl Actor {
    /// An actor by the name the audit log shows (outside text is escaped and cut).
    pub fn named(name: &str) -> Actor {
        let name = clean(name);
        Actor {
            person: name.clone(),
            shown: name,
            how: Identified::Named,
        }
    }

    /// The OS user `real_user` (of the real uid), and what sudo says.
    pub fn os_user(real_user: &str, sudo: SudoClaim) -> Actor {
        let real = clean(real_user);
        match sudo {
            SudoClaim::Trusted(user) if !clean(&user).is_empty() => {
                let person = clean(&user);
                Actor {
                    shown: format!("{person} (via sudo as {real})"),
                    person,
                    how: Identified::Sudo,
                }
            }
            SudoClaim::Claimed(user) if !clean(&user).is_empty() => Actor {
                shown: format!(
                    "{real} (SUDO_USER={}, as claimed: the parent is not sudo)",
                    clean(&user)
                ),
                person: real,
                how: Identified::Claimed,
            },
            _ => Actor {
                person: real.clone(),
                shown: real,
                how: Identified::Os,
            },
        }
    }

    /// The person running this process: the real uid's user, or the user sudo ran it for.
    pub fn of_this_process() -> Actor {
        let uid = nix::unistd::getuid();
        let name = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map_or_else(|| format!("uid {uid}"), |user| user.name);
        let claim = match std::env::var("SUDO_USER") {
            Err(_) => SudoClaim::None,
            Ok(user) if parent_is_root_sudo(&user) => SudoClaim::Trusted(user),
            Ok(user) => SudoClaim::Claimed(user),
        };
        Actor::os_user(&name, claim)
    }

    /// The person the rules compare (without the sudo note).
    pub fn person(&self) -> &str {
        &self.person
    }

    /// How rotor knows who this is.
    pub fn identified(&self) -> Identified {
        self.how
    }

    pub fn as_str(&self) -> &str {
        &self.shown
    }
}

/// Whether `SUDO_USER=user` was set by sudo: rotor's parent process is named `sudo`, runs
/// with effective uid 0 (a setuid-root sudo; a user's own program called sudo cannot), its
/// real uid is the invoking user's (`SUDO_UID`), and that is `user`'s uid.
fn parent_is_root_sudo(user: &str) -> bool {
    let ppid = std::os::unix::process::parent_id();
    // One read of the parent's status gives its name and uids together; the parent is asked
    // again afterwards, so a parent that exited meanwhile (its pid reused) is not believed.
    let status = std::fs::read_to_string(format!("/proc/{ppid}/status")).unwrap_or_default();
    if std::os::unix::process::parent_id() != ppid {
        return false;
    }
    let Ok(sudo_uid) = std::env::var("SUDO_UID") else {
        return false;
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_default()
    };
    // `Uid:` real, effective, saved, filesystem.
    let uids: Vec<&str> = field("Uid:").split_whitespace().collect();
    let sudo_ran_it = uids.len() >= 2 && uids[1] == "0" && uids[0] == sudo_uid;
    let uid_is_users = nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .is_some_and(|u| u.uid.to_string() == sudo_uid);
    field("Name:") == "sudo" && sudo_ran_it && uid_is_users
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// The audit log is read by people: keep names printable and short.
fn clean(s: &str) -> String {
    let cut: String = s.chars().take(64).collect();
    crate::text::escape(&cut).into_owned()
}

type Res<T> = Result<T, StoreFailure>;

/// Runs: sets of rotations started together.
pub trait Runs {
    /// Opens a run with its reason and scope.
    fn begin_run(&self, by: &Actor, reason: &str, scope: &str) -> Res<RunId>;
    /// Ends a run with its summary counts (free-form JSON for the record).
    fn end_run(&self, by: &Actor, run: RunId, summary: &str) -> Res<()>;
}

/// Secrets and their versions, as the engine reads them.
pub trait Secrets {
    /// True if any stored secret version (of any credential) has this secret's keyed
    /// fingerprint. Used to regenerate on collision and to warn on shared enrolled secrets.
    fn fingerprint_taken(&self, secret: &Secret) -> Res<bool>;
    /// The credential's `current` secret, if the vault has one.
    fn current(&self, cred: &CredentialId) -> Res<Option<Secret>>;
    /// The credential's `pending` secret, while a rotation of it is open or stuck: what the
    /// target may hold already (rotor's own login tries it first after a crash).
    fn pending(&self, _cred: &CredentialId) -> Res<Option<Secret>> {
        Ok(None)
    }
}

/// The rotation ledger: staging, phases, commit, rollback, and what recovery must settle.
///
/// Fencing: every write after `stage` names the lease it is made under; it happens only if
/// that lease is the rotation's token and the credential's current, unexpired lease.
/// Otherwise `LeaseLost` and nothing changes. A write that happens renews the lease by the
/// ttl it was acquired with.
pub trait Ledger {
    /// Stores `new` as the credential's `pending` version and a ledger row in `Staged`, with the
    /// encrypted restore point and `lease`'s token, in one durable transaction. `RotationOpen`
    /// when the credential already has an open rotation, `SecretCollision` when another
    /// credential holds this secret, `LeaseLost` when `lease` is not current.
    fn stage(
        &self,
        by: &Actor,
        lease: Lease,
        run: RunId,
        cred: &CredentialId,
        new: &Secret,
        restore_point: &Secret,
    ) -> Res<RotationId>;
    /// Records a phase change (and an optional note, never a secret) for an open rotation.
    fn record_phase(
        &self,
        by: &Actor,
        lease: Lease,
        id: RotationId,
        phase: Phase,
        note: Option<&str>,
    ) -> Res<()>;
    /// `pending` -> `current`, old `current` -> `previous`, old `previous` -> retired; ledger
    /// row -> `Committed`, and the lease given back, in one transaction. With `then_retire`
    /// the row goes to `Retiring` instead and keeps its lease: the old credential is still
    /// to be removed from the target ([`Ledger::record_retired`] closes it).
    fn commit(&self, by: &Actor, lease: Lease, id: RotationId, then_retire: bool) -> Res<()>;
    /// Ends a `Retiring` row in `Retired` (the old credential is gone from the target) and
    /// gives back its lease.
    fn record_retired(&self, by: &Actor, lease: Lease, id: RotationId) -> Res<()>;
    /// Drops `pending` (kept as retired history, marked never used) and ends the ledger row in
    /// `RolledBack` with the reason; gives back the lease.
    fn roll_back(&self, by: &Actor, lease: Lease, id: RotationId, reason: &str) -> Res<()>;
    /// Ends the ledger row in `Stuck` with the reason; keeps `pending` and `current`; gives
    /// back the lease.
    fn mark_stuck(&self, by: &Actor, lease: Lease, id: RotationId, reason: &str) -> Res<()>;
    /// Every rotation in an open phase, with its decrypted pending secret and restore point.
    /// A row that fails its integrity check (altered, or moved to another credential) is not
    /// among them: see [`Ledger::unreadable_rotations`].
    fn open_rotations(&self) -> Res<Vec<OpenRotation>>;
    /// The open rotations whose secrets fail their integrity check, with the error: recovery
    /// refuses each of them (it would write who knows what to a target) and settles the rest.
    fn unreadable_rotations(&self) -> Res<Vec<UnreadableRotation>> {
        Ok(Vec::new())
    }
    /// Makes `lease` the fencing token of an existing open rotation (recovery taking over a
    /// rotation whose process died). Audited.
    fn adopt(&self, by: &Actor, lease: Lease, id: RotationId) -> Res<()>;
}

/// Leases: one rotation in flight per credential, across processes (invariant 5).
pub trait Leases {
    /// Takes the credential's lease for `holder` (e.g. "rotor pid 1234 on host x, run 7") for
    /// `ttl`, unless another holder has a lease that has not expired: then Ok(Err(LeaseHeld)).
    /// A new token is issued every time (greater than any before). Taking over another
    /// holder's expired lease is audited under `by`.
    fn acquire_lease(
        &self,
        by: &Actor,
        cred: &CredentialId,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Res<Result<Lease, LeaseHeld>>;
    /// Gives the lease back (no-op if it is no longer the current one).
    fn release_lease(&self, cred: &CredentialId, lease: Lease) -> Res<()>;
    /// Proves that `lease` is still the rotation's current lease and renews it, changing
    /// nothing else: the fence the driver runs immediately before every write to a target
    /// (push, restore, retire), so a process paused past its lease never changes a target
    /// after another process took the credential over. `LeaseLost` otherwise.
    fn renew_lease(&self, lease: Lease, id: RotationId) -> Res<()>;
}

/// The lockout budget (invariant 7): failed logins and parking.
pub trait LoginBudget {
    /// Consecutive failed logins rotor made as this account (verification, probe, heartbeat):
    /// `ok` resets it to 0, a failure adds 1. Returns the new count.
    fn record_login(&self, cred: &CredentialId, ok: bool) -> Res<u32>;
    /// Parks the credential: rotor makes no more logins or rotations for it until an operator
    /// unparks it. Audited.
    fn park(&self, by: &Actor, cred: &CredentialId, reason: &str) -> Res<()>;
    /// Clears parking and the failure count. Audited.
    fn unpark(&self, by: &Actor, cred: &CredentialId) -> Res<()>;
    /// The parking reason, if parked.
    fn parked(&self, cred: &CredentialId) -> Res<Option<String>>;
}

/// The store as the engine sees it, split by concern. Every method has committed when it
/// returns (a crash of rotor loses nothing); `stage` is also on disk against power loss
/// (synchronous=FULL), which is what makes "staged before pushed" true. The later writes of a
/// rotation may be lost to power loss only as a suffix, and recovery repairs that by probing.
/// Implementations are shared across workers, hence `&self` and `Sync`; they hold no state
/// about who calls them: the lease and the actor come with each call.
/// Break-glass checkouts, as admission sees them.
pub trait Grants {
    /// Who holds the credential's secret through an open checkout, in words (checkout id,
    /// holder, ticket, end); `None` when nobody does. A run leaves such a credential alone
    /// unless the checkout was ended first (`--include-checked-out`, check-in, expiry).
    fn checked_out(&self, cred: &CredentialId) -> Res<Option<String>>;
}

/// What rotor saw of a host that no rotation records: whether its bootstrap connect key (the
/// inventory's key file) logged in. `rotor status` reports it. A store that keeps nothing
/// ignores it.
pub trait Sightings {
    fn bootstrap_seen(&self, _host: &HostName, _accepted: bool) {}
}

pub trait Store:
    Runs + Secrets + Ledger + Leases + LoginBudget + Grants + Sightings + Send + Sync
{
}

impl<T: Runs + Secrets + Ledger + Leases + LoginBudget + Grants + Sightings + Send + Sync> Store
    for T
{
}

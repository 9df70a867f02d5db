//! The rotation state machine, pure: no I/O, no clock, no randomness. The driver asks it what
//! to do next ([`Command`]), does it against the target and the store, and feeds back what
//! happened ([`Event`]). Each transition consumes the old state.
//!
//! States carry their data: a state after staging holds the rotation's [`Open`] record (its
//! ledger id and the restore point read before anything changed), so the driver keeps no
//! `Option`s to unwrap; the commands hand it exactly what each step needs. A [`Verified`]
//! token exists only after a successful proof, and [`Command::Commit`] needs one: "verified
//! before committed" is a type.
//!
//! Architecture invariant: the command sequence this machine emits can never push a secret
//! that is not durably staged (Stage precedes Push), never commit one that was not verified
//! (Verify precedes Commit), and never drop the saved restore point before the old credential
//! is proven back (Restore precedes RecordRolledBack). For credentials whose old secret is
//! removed after commit (SSH keys), the old one is removed only after commit (`retiring`), and
//! a crash there is finished by recovery. The property tests at the bottom check this against
//! random outcomes.

use serde::Serialize;

use super::ledger::{Phase, RotationId};
use crate::connector::FaultClass;
use crate::secret::Secret;

/// A rotation once staged: its ledger row and what the target held before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Open {
    pub rotation: RotationId,
    /// What the target held before (Linux: the shadow hash), sealed in the ledger row.
    pub restore_point: Secret,
    /// The credential has work after commit (remove the old SSH key): commit moves the
    /// rotation to `retiring`, not `committed`.
    pub retires: bool,
}

/// Proof that the pending secret logged in on a fresh connection. Only the machine makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    open: Open,
}

impl Verified {
    pub fn rotation(&self) -> RotationId {
        self.open.rotation
    }
    /// Whether the commit leaves the rotation in `retiring` (work after commit follows).
    pub fn then_retire(&self) -> bool {
        self.open.retires
    }
}

/// One thing for the driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Read the target's restore point (Linux: the shadow hash) before anything changes.
    ReadRestorePoint,
    /// Store the new secret as `pending` with a ledger row in `Staged`, durably, with this
    /// restore point; answered with [`Event::Staged`].
    Stage { restore_point: Secret },
    /// Send the new secret to the target (with the restore point, for recipes that build the
    /// new state from the old, like a config file with one line changed).
    Push {
        rotation: RotationId,
        restore_point: Secret,
    },
    /// Record a phase in the ledger.
    Record(RotationId, Phase),
    /// Prove the new secret with a fresh login as the account.
    Verify,
    /// Make `pending` current in the vault (and the rotation `retiring` where it retires).
    Commit(Verified),
    /// Remove the old credential from the target (the new one is current).
    Retire {
        rotation: RotationId,
        restore_point: Secret,
    },
    /// End the ledger row of a retiring rotation: the old credential is gone.
    RecordRetired(RotationId),
    /// Put the restore point back on the target and check that it is back.
    Restore {
        rotation: RotationId,
        restore_point: Secret,
    },
    /// Drop `pending`, end the ledger row in `RolledBack`.
    RecordRolledBack(RotationId),
    /// End the ledger row in `Stuck` with this reason (never a secret), keeping both secrets.
    RecordStuck(RotationId, String),
    /// Recovery: prove the pending secret (fresh login).
    ProbePending,
    /// What does the target hold now: the saved restore point, the pending secret (checked
    /// locally against the target's hash where its scheme allows), or something else?
    CheckTarget { restore_point: Secret },
    /// Nothing more to do.
    Finish(Outcome),
}

impl Command {
    /// The command's name without its data (logs, tests).
    pub fn name(&self) -> &'static str {
        match self {
            Command::ReadRestorePoint => "ReadRestorePoint",
            Command::Stage { .. } => "Stage",
            Command::Push { .. } => "Push",
            Command::Record(..) => "Record",
            Command::Verify => "Verify",
            Command::Commit(_) => "Commit",
            Command::Retire { .. } => "Retire",
            Command::RecordRetired(_) => "RecordRetired",
            Command::Restore { .. } => "Restore",
            Command::RecordRolledBack(_) => "RecordRolledBack",
            Command::RecordStuck(..) => "RecordStuck",
            Command::ProbePending => "ProbePending",
            Command::CheckTarget { .. } => "CheckTarget",
            Command::Finish(_) => "Finish",
        }
    }
}

/// What happened when the driver carried out a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Ok,
    /// `ReadRestorePoint` answers with what it read.
    Read(Secret),
    /// `Stage` answers with the ledger row it wrote.
    Staged(RotationId),
    /// `CheckTarget` answers with what the target holds.
    Holds(Holds),
    Failed(Fault),
}
/// What a target's restore point (Linux: the shadow hash) shows it holds, compared with the
/// rotation's saved restore point and its pending secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holds {
    /// Exactly the saved restore point: the target is as it was before the rotation.
    Saved,
    /// Not the saved one, and the pending secret matches it (checked locally, no login).
    Pending,
    /// Not the saved one, and the pending secret does not match it: someone else set it.
    Other,
    /// Not the saved one, and rotor cannot check it locally (an unknown hash scheme).
    Changed,
}

/// A failure with its class and a message for people (never a secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fault {
    pub class: FaultKind,
    pub message: String,
}

/// A connector fault or a store fault. Serialized flat (`"host_key_mismatch"`, `"store"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    Target(FaultClass),
    /// The vault could not be written.
    Store,
    /// The rotor process was interrupted (killed) before the rotation finished.
    Interrupted,
    /// Recovery found the target changed by someone else (neither the saved restore point
    /// nor the pending secret): rotor left it alone.
    ChangedOutsideRotor,
    /// The new secret is already another credential's (invariant 6): nothing was stored or
    /// sent. Not a store failure: the vault worked and said no.
    SecretCollision,
    /// The credential is parked (lockout budget spent): rotor made no login for it.
    Parked,
}

/// In words (logs, reports): "account missing", never `Target(AccountMissing)`.
impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FaultKind::Target(c) => c.fmt(f),
            FaultKind::Store => f.write_str("vault write failed"),
            FaultKind::Interrupted => f.write_str("rotor was interrupted"),
            FaultKind::ChangedOutsideRotor => f.write_str("changed outside rotor"),
            FaultKind::SecretCollision => f.write_str("secret already in use"),
            FaultKind::Parked => f.write_str("parked"),
        }
    }
}

impl Serialize for FaultKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            FaultKind::Target(c) => c.serialize(s),
            FaultKind::Store => s.serialize_str("store"),
            FaultKind::Interrupted => s.serialize_str("interrupted"),
            FaultKind::ChangedOutsideRotor => s.serialize_str("changed_outside_rotor"),
            FaultKind::SecretCollision => s.serialize_str("secret_collision"),
            FaultKind::Parked => s.serialize_str("parked"),
        }
    }
}

impl Fault {
    pub fn target(class: FaultClass, message: impl Into<String>) -> Fault {
        Fault {
            class: FaultKind::Target(class),
            message: message.into(),
        }
    }
    pub fn store(message: impl Into<String>) -> Fault {
        Fault {
            class: FaultKind::Store,
            message: message.into(),
        }
    }
    /// The class in words, as reports show it.
    pub fn class_text(&self) -> String {
        self.class.to_string()
    }
    /// The target could not be reached at all (so nothing on it can be settled now).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self.class,
            FaultKind::Target(
                FaultClass::Unreachable
                    | FaultClass::TimedOut
                    | FaultClass::HostKeyMismatch
                    | FaultClass::TlsInvalid
                    | FaultClass::LocalFile
            )
        )
    }
}

/// How one credential's rotation ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// New secret verified and current.
    Committed,
    /// Nothing was changed on the target (failure before the push).
    NotChanged { cause: Fault },
    /// The target was changed, the change failed, the old credential is back and proven.
    RolledBack { cause: Fault },
    /// The rotation could not be finished or undone now (host lost, store failing); it stays
    /// open in the ledger, with both secrets, and `rotor recover` settles it.
    Unsettled { phase: Phase, cause: Fault },
    /// The old credential could not be restored: an operator must look. Both secrets kept.
    Stuck { cause: Fault, restore_error: Fault },
    /// Verification failed, but the target's password policy refused the old secret back
    /// (e.g. LDAP ppolicy): the new secret was proven again and kept, as `current`.
    KeptNew {
        cause: Fault,
        rollback_refused: Fault,
    },
    /// Not attempted (canary failed, failure limit, interrupt, parked, busy).
    Skipped {
        reason: super::blast::SkipReason,
        detail: String,
    },
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Committed => "committed",
            Outcome::NotChanged { .. } => "not changed",
            Outcome::RolledBack { .. } => "rolled back",
            Outcome::Unsettled { .. } => "unsettled",
            Outcome::Stuck { .. } => "stuck",
            Outcome::Skipped { .. } => "skipped",
            Outcome::KeptNew { .. } => "kept new",
        }
    }
}

/// Why recovery leaves a target alone that it finds changed by someone else.
fn changed_outside_rotor(held: Holds) -> Fault {
    let why = match held {
        Holds::Other => {
            "its password hash is neither the one saved before the rotation nor one that the pending secret matches"
        }
        _ => {
            "its password hash is not the one saved before the rotation, and its scheme cannot be checked locally against the pending secret"
        }
    };
    Fault {
        class: FaultKind::ChangedOutsideRotor,
        message: format!(
            "the target was changed outside rotor ({why}), perhaps by an operator's emergency reset; rotor left it as it is so as not to undo that. Find out who changed it and what the account's password is now, then store that password with `rotor enroll CREDENTIAL`, which settles this rotation"
        ),
    }
}

/// The state of one rotation. Each variant is where the machine waits for the event of the
/// command it last emitted; every state after staging carries the rotation's [`Open`] record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rotation {
    ReadingRestorePoint {
        retires: bool,
    },
    Staging {
        restore_point: Secret,
        retires: bool,
    },
    Pushing(Open),
    RecordingApplied(Open),
    Verifying(Open),
    Committing(Verified),
    /// Committed; the old credential is being removed.
    Retiring(Open),
    RecordingRetired(Open),
    /// `recovering`: the rollback belongs to recovery, which undoes only what rotor changed
    /// (DESIGN.md invariant 4); a run undoes its own push, which it made moments ago.
    RecordingRollingBack {
        open: Open,
        cause: Fault,
        recovering: bool,
    },
    /// Rolling back: first find out whether the target changed at all.
    CheckingChanged {
        open: Open,
        cause: Fault,
        recovering: bool,
    },
    Restoring {
        open: Open,
        cause: Fault,
    },
    RecordingRolledBack {
        open: Open,
        cause: Fault,
    },
    RecordingStuck {
        open: Open,
        cause: Fault,
        restore_error: Fault,
    },
    /// The old secret cannot go back (policy): prove the new one once more, then keep it.
    ReverifyingKept {
        open: Open,
        cause: Fault,
        refusal: Fault,
    },
    CommittingKept {
        open: Open,
        cause: Fault,
        refusal: Fault,
    },
    /// Recovery of an interrupted rotation found in the ledger: does the pending secret work?
    ProbingPending {
        open: Open,
        phase: Phase,
    },
    /// Recovery of a rotation left staged or rolling back: did the target change at all?
    CheckingBeforeProbe {
        open: Open,
        phase: Phase,
    },
    Done(Outcome),
}

impl Rotation {
    /// A fresh rotation and its first command. `retires`: the credential's old secret is
    /// removed after commit (SSH keys), through `retiring`.
    pub fn start(retires: bool) -> (Rotation, Command) {
        (
            Rotation::ReadingRestorePoint { retires },
            Command::ReadRestorePoint,
        )
    }

    /// Recovery of a rotation left open in `phase`, and its first command. Left before the
    /// push was known to land (`staged`) or while rolling back, the target is asked first
    /// (no login): a login with a pending secret that was never set would only spend the
    /// account's lockout budget. Left after the push (`applied`), the pending secret is probed.
    /// Left `retiring`, the new secret is already current: the old one is removed.
    pub fn recover(phase: Phase, open: Open) -> (Rotation, Command) {
        match phase {
            Phase::Staged | Phase::RollingBack => {
                let restore_point = open.restore_point.clone();
                (
                    Rotation::CheckingBeforeProbe { open, phase },
                    Command::CheckTarget { restore_point },
                )
            }
            Phase::Retiring => retire(open),
            _ => (
                Rotation::ProbingPending { open, phase },
                Command::ProbePending,
            ),
        }
    }

    /// The phase the ledger holds while the machine is in this state (for reports of
    /// unsettled rotations).
    fn ledger_phase(&self) -> Phase {
        match self {
            Rotation::ReadingRestorePoint { .. } => Phase::Planned,
            Rotation::Staging { .. } | Rotation::Pushing(_) | Rotation::RecordingApplied(_) => {
                Phase::Staged
            }
            Rotation::Verifying(_) => Phase::Applied,
            Rotation::Committing(_) => Phase::Applied,
            Rotation::Retiring(_) | Rotation::RecordingRetired(_) => Phase::Retiring,
            Rotation::RecordingRollingBack { .. } => Phase::Applied,
            Rotation::ReverifyingKept { .. } | Rotation::CommittingKept { .. } => {
                Phase::RollingBack
            }
            Rotation::CheckingChanged { .. }
            | Rotation::Restoring { .. }
            | Rotation::RecordingRolledBack { .. }
            | Rotation::RecordingStuck { .. } => Phase::RollingBack,
            Rotation::ProbingPending { phase, .. }
            | Rotation::CheckingBeforeProbe { phase, .. } => *phase,
            Rotation::Done(_) => Phase::Planned,
        }
    }

    /// One transition.
    pub fn on(self, event: Event) -> (Rotation, Command) {
        use Rotation as R;
        let unsettled = |state: &Rotation, cause: Fault| {
            let outcome = Outcome::Unsettled {
                phase: state.ledger_phase(),
                cause,
            };
            (R::Done(outcome.clone()), Command::Finish(outcome))
        };
        let done = |outcome: Outcome| (R::Done(outcome.clone()), Command::Finish(outcome));
        let roll_back = |open: Open, cause: Fault, recovering: bool| {
            let rotation = open.rotation;
            (
                R::RecordingRollingBack {
                    open,
                    cause,
                    recovering,
                },
                Command::Record(rotation, Phase::RollingBack),
            )
        };
        let stuck = |open: Open, cause: Fault, restore_error: Fault| {
            let command = Command::RecordStuck(open.rotation, restore_error.message.clone());
            (
                R::RecordingStuck {
                    open,
                    cause,
                    restore_error,
                },
                command,
            )
        };
        let rolled_back = |open: Open, cause: Fault| {
            let command = Command::RecordRolledBack(open.rotation);
            (R::RecordingRolledBack { open, cause }, command)
        };
        let commit = |open: Open| {
            let verified = Verified { open };
            (R::Committing(verified.clone()), Command::Commit(verified))
        };
        let restore = |open: Open, cause: Fault| {
            let command = Command::Restore {
                rotation: open.rotation,
                restore_point: open.restore_point.clone(),
            };
            (R::Restoring { open, cause }, command)
        };
        match (self, event) {
            // Before anything is stored or sent: a failure changes nothing.
            (R::ReadingRestorePoint { retires }, Event::Read(restore_point)) => (
                R::Staging {
                    restore_point: restore_point.clone(),
                    retires,
                },
                Command::Stage { restore_point },
            ),
            (R::ReadingRestorePoint { .. }, Event::Failed(cause)) => {
                done(Outcome::NotChanged { cause })
            }
            (
                R::Staging {
                    restore_point,
                    retires,
                },
                Event::Staged(rotation),
            ) => (
                R::Pushing(Open {
                    rotation,
                    restore_point: restore_point.clone(),
                    retires,
                }),
                Command::Push {
                    rotation,
                    restore_point,
                },
            ),
            (R::Staging { .. }, Event::Failed(cause)) => done(Outcome::NotChanged { cause }),

            // The push may have half-happened (e.g. a timeout after the command ran), so any
            // push failure restores the saved state, which is harmless if nothing changed.
            (R::Pushing(open), Event::Ok) => {
                let rotation = open.rotation;
                (
                    R::RecordingApplied(open),
                    Command::Record(rotation, Phase::Applied),
                )
            }
            (R::Pushing(open), Event::Failed(cause)) => roll_back(open, cause, false),
            (R::RecordingApplied(open), Event::Ok) => (R::Verifying(open), Command::Verify),
            (s @ R::RecordingApplied(_), Event::Failed(cause)) => unsettled(&s, cause),

            (R::Verifying(open), Event::Ok) => commit(open),
            (R::Verifying(open), Event::Failed(cause)) => roll_back(open, cause, false),
            (R::Committing(verified), Event::Ok) if verified.open.retires => retire(verified.open),
            (R::Committing(_), Event::Ok) => done(Outcome::Committed),
            // Verified on the target but not recorded: the pending secret works, so recovery
            // will commit it.
            (s @ R::Committing(_), Event::Failed(cause)) => unsettled(&s, cause),

            // Committed: the new credential is current and proven; what is left is removing
            // the old one. A failure leaves the rotation `retiring` for recovery to finish (the
            // new credential stays current: nothing is rolled back after commit).
            (R::Retiring(open), Event::Ok) => {
                let rotation = open.rotation;
                (R::RecordingRetired(open), Command::RecordRetired(rotation))
            }
            (s @ R::Retiring(_), Event::Failed(cause)) => unsettled(&s, cause),
            (R::RecordingRetired(_), Event::Ok) => done(Outcome::Committed),
            (s @ R::RecordingRetired(_), Event::Failed(cause)) => unsettled(&s, cause),

            (
                R::RecordingRollingBack {
                    open,
                    cause,
                    recovering,
                },
                Event::Ok,
            ) => {
                let restore_point = open.restore_point.clone();
                (
                    R::CheckingChanged {
                        open,
                        cause,
                        recovering,
                    },
                    Command::CheckTarget { restore_point },
                )
            }
            // The target still holds the saved state (the push never landed, e.g. `chpasswd`
            // refused it): nothing to undo, and no change is made that could itself fail.
            (R::CheckingChanged { open, cause, .. }, Event::Holds(Holds::Saved)) => {
                rolled_back(open, cause)
            }
            // Recovery finds a change that is not rotor's (an operator's emergency reset):
            // putting the saved hash back would undo someone else's fix. Leave it, and say so.
            (
                R::CheckingChanged {
                    open,
                    cause,
                    recovering: true,
                },
                Event::Holds(held @ (Holds::Other | Holds::Changed)),
            ) => stuck(open, cause, changed_outside_rotor(held)),
            (R::CheckingChanged { open, cause, .. }, Event::Holds(_)) => restore(open, cause),
            (s @ R::CheckingChanged { .. }, Event::Failed(f)) if f.is_unreachable() => {
                unsettled(&s, f)
            }
            // Could not tell: a run restores anyway (it is idempotent and checks its own
            // result); recovery, which did not make the change, touches nothing it cannot see.
            (
                s @ R::CheckingChanged {
                    recovering: true, ..
                },
                Event::Failed(f),
            ) => unsettled(&s, f),
            (R::CheckingChanged { open, cause, .. }, Event::Failed(_)) => restore(open, cause),
            (s @ R::RecordingRollingBack { .. }, Event::Failed(store_fault)) => {
                unsettled(&s, store_fault)
            }
            (R::Restoring { open, cause }, Event::Ok) => rolled_back(open, cause),
            // Host lost during the restore: leave it open for recovery rather than calling it
            // stuck; nothing is known to be wrong with the account.
            (s @ R::Restoring { .. }, Event::Failed(restore_error))
                if restore_error.is_unreachable() =>
            {
                unsettled(&s, restore_error)
            }
            // The target's password policy will not take the old secret back: the new one is
            // all there is, so prove it again and keep it rather than leave the account stuck.
            (R::Restoring { open, cause }, Event::Failed(refusal))
                if refusal.class == FaultKind::Target(FaultClass::RollbackRefusedByPolicy) =>
            {
                (
                    R::ReverifyingKept {
                        open,
                        cause,
                        refusal,
                    },
                    Command::Verify,
                )
            }
            (
                R::ReverifyingKept {
                    open,
                    cause,
                    refusal,
                },
                Event::Ok,
            ) => {
                // Kept, not rotated on purpose: nothing is retired, the rotation ends committed.
                let verified = Verified {
                    open: Open {
                        retires: false,
                        ..open.clone()
                    },
                };
                (
                    R::CommittingKept {
                        open,
                        cause,
                        refusal,
                    },
                    Command::Commit(verified),
                )
            }
            (
                R::ReverifyingKept {
                    open,
                    cause,
                    refusal,
                },
                Event::Failed(reverify),
            ) => {
                let command = Command::RecordStuck(open.rotation, reverify.message);
                (
                    R::RecordingStuck {
                        open,
                        cause,
                        restore_error: refusal,
                    },
                    command,
                )
            }
            (R::CommittingKept { cause, refusal, .. }, Event::Ok) => done(Outcome::KeptNew {
                cause,
                rollback_refused: refusal,
            }),
            (s @ R::CommittingKept { .. }, Event::Failed(f)) => unsettled(&s, f),
            (R::Restoring { open, cause }, Event::Failed(restore_error)) => {
                stuck(open, cause, restore_error)
            }
            (R::RecordingRolledBack { cause, .. }, Event::Ok) => {
                done(Outcome::RolledBack { cause })
            }
            (s @ R::RecordingRolledBack { .. }, Event::Failed(f)) => unsettled(&s, f),
            (
                R::RecordingStuck {
                    cause,
                    restore_error,
                    ..
                },
                Event::Ok,
            ) => done(Outcome::Stuck {
                cause,
                restore_error,
            }),
            (s @ R::RecordingStuck { .. }, Event::Failed(f)) => unsettled(&s, f),

            // Recovery: the pending secret works -> it is what the target holds: commit.
            (R::ProbingPending { open, .. }, Event::Ok) => commit(open),
            (s @ R::ProbingPending { .. }, Event::Failed(probe)) if probe.is_unreachable() => {
                unsettled(&s, probe)
            }
            // Target unchanged: the push never landed, or the rollback had finished.
            (R::CheckingBeforeProbe { open, phase }, Event::Holds(Holds::Saved)) => rolled_back(
                open,
                Fault {
                    class: FaultKind::Interrupted,
                    message: if phase == Phase::RollingBack {
                        "rotor stopped while rolling back, after the old secret was back on the target; the rollback is now recorded"
                    } else {
                        "rotor stopped before the new secret reached the target; nothing was changed there"
                    }
                    .into(),
                },
            ),
            // Changed, and checked not to be the pending secret: someone else changed it. No
            // login is tried with a secret the target is known not to hold (it would only
            // spend the account's lockout budget), and nothing is restored over that change.
            (R::CheckingBeforeProbe { open, .. }, Event::Holds(Holds::Other)) => stuck(
                open,
                Fault {
                    class: FaultKind::Interrupted,
                    message: "rotor stopped during the rotation".into(),
                },
                changed_outside_rotor(Holds::Other),
            ),
            // Changed: the new secret may be what it holds now; prove it before anything else.
            (R::CheckingBeforeProbe { open, phase }, Event::Holds(_)) => {
                (R::ProbingPending { open, phase }, Command::ProbePending)
            }
            (s @ R::CheckingBeforeProbe { .. }, Event::Failed(f)) if f.is_unreachable() => {
                unsettled(&s, f)
            }
            (R::CheckingBeforeProbe { open, phase }, Event::Failed(_)) => {
                (R::ProbingPending { open, phase }, Command::ProbePending)
            }
            // It does not: roll back what rotor changed (drop pending if the target never
            // changed, restore the saved state if it holds rotor's new secret), and nothing
            // that someone else changed.
            (R::ProbingPending { open, .. }, Event::Failed(probe)) => roll_back(open, probe, true),

            (R::Done(outcome), _) => done(outcome),
            // An event that does not belong to the state is a driver bug; treat it as a
            // protocol fault that leaves the rotation for recovery rather than guessing.
            (s, e) => unsettled(
                &s,
                Fault::target(
                    FaultClass::Protocol,
                    format!(
                        "internal: unexpected event {} in state {}",
                        event_name(&e),
                        s.name()
                    ),
                ),
            ),
        }
    }

    /// The state's name without its data (its data may hold a restore point).
    fn name(&self) -> &'static str {
        match self {
            Rotation::ReadingRestorePoint { .. } => "ReadingRestorePoint",
            Rotation::Staging { .. } => "Staging",
            Rotation::Pushing(_) => "Pushing",
            Rotation::RecordingApplied(_) => "RecordingApplied",
            Rotation::Verifying(_) => "Verifying",
            Rotation::Committing(_) => "Committing",
            Rotation::Retiring(_) => "Retiring",
            Rotation::RecordingRetired(_) => "RecordingRetired",
            Rotation::RecordingRollingBack { .. } => "RecordingRollingBack",
            Rotation::CheckingChanged { .. } => "CheckingChanged",
            Rotation::Restoring { .. } => "Restoring",
            Rotation::RecordingRolledBack { .. } => "RecordingRolledBack",
            Rotation::RecordingStuck { .. } => "RecordingStuck",
            Rotation::ReverifyingKept { .. } => "ReverifyingKept",
            Rotation::CommittingKept { .. } => "CommittingKept",
            Rotation::ProbingPending { .. } => "ProbingPending",
            Rotation::CheckingBeforeProbe { .. } => "CheckingBeforeProbe",
            Rotation::Done(_) => "Done",
        }
    }
}

/// Enters `retiring`: remove the old credential.
fn retire(open: Open) -> (Rotation, Command) {
    let command = Command::Retire {
        rotation: open.rotation,
        restore_point: open.restore_point.clone(),
    };
    (Rotation::Retiring(open), command)
}

fn event_name(e: &Event) -> String {
    match e {
        Event::Ok => "Ok".into(),
        Event::Read(_) => "Read".into(),
        Event::Staged(id) => format!("Staged({id})"),
        Event::Holds(h) => format!("Holds({h:?})"),
        Event::Failed(f) => format!("Failed({:?})", f.class),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fail(class: FaultClass) -> Event {
        Event::Failed(Fault::target(class, "x"))
    }

    /// The open rotation recovery starts from in these tests.
    fn open() -> Open {
        Open {
            rotation: RotationId(1),
            restore_point: Secret::new("saved".into()),
            retires: false,
        }
    }

    /// A script's `Ok` for a command that answers with data, given that data.
    fn answer(cmd: &Command, e: &Event) -> Event {
        match (cmd, e) {
            (Command::ReadRestorePoint, Event::Ok) => Event::Read(Secret::new("saved".into())),
            (Command::Stage { .. }, Event::Ok) => Event::Staged(RotationId(1)),
            _ => e.clone(),
        }
    }

    /// Runs the machine against a script of events, returning the commands it emitted.
    fn run(start: (Rotation, Command), events: &[Event]) -> Vec<Command> {
        let (mut state, mut cmd) = start;
        let mut cmds = vec![cmd.clone()];
        for e in events {
            if matches!(cmd, Command::Finish(_)) {
                break;
            }
            let e = answer(&cmd, e);
            (state, cmd) = state.on(e);
            cmds.push(cmd.clone());
        }
        cmds
    }

    fn names(cmds: &[Command]) -> String {
        cmds.iter()
            .map(|c| match c {
                Command::Finish(o) => format!("Finish({})", o.label()),
                Command::Record(_, p) => format!("Record({p})"),
                other => other.name().to_owned(),
            })
            .collect::<Vec<_>>()
            .join(" > ")
    }

    fn check(start: (Rotation, Command), events: &[Event], expect: &str) {
        assert_eq!(names(&run(start, events)), expect);
    }

    #[test]
    fn happy_path() {
        check(
            Rotation::start(false),
            &vec![Event::Ok; 6],
            "ReadRestorePoint > Stage > Push > Record(applied) > Verify > Commit > Finish(committed)",
        );
    }

    #[test]
    fn missing_account_changes_nothing() {
        check(
            Rotation::start(false),
            &[fail(FaultClass::AccountMissing)],
            "ReadRestorePoint > Finish(not changed)",
        );
    }

    #[test]
    fn vault_write_failure_pushes_nothing() {
        check(
            Rotation::start(false),
            &[Event::Ok, Event::Failed(Fault::store("disk full"))],
            "ReadRestorePoint > Stage > Finish(not changed)",
        );
    }

    #[test]
    fn refused_push_is_rolled_back() {
        check(
            Rotation::start(false),
            &[
                Event::Ok,
                Event::Ok,
                fail(FaultClass::Refused),
                Event::Ok,
                Event::Holds(Holds::Saved),
                Event::Ok,
            ],
            "ReadRestorePoint > Stage > Push > Record(rolling_back) > CheckTarget > RecordRolledBack > Finish(rolled back)",
        );
        // A push that failed after it landed (e.g. timed out) is undone.
        check(
            Rotation::start(false),
            &[
                Event::Ok,
                Event::Ok,
                fail(FaultClass::TimedOut),
                Event::Ok,
                Event::Holds(Holds::Pending),
                Event::Ok,
                Event::Ok,
            ],
            "ReadRestorePoint > Stage > Push > Record(rolling_back) > CheckTarget > Restore > RecordRolledBack > Finish(rolled back)",
        );
    }

    #[test]
    fn failed_verify_is_rolled_back_and_failed_restore_is_stuck() {
        check(
            Rotation::start(false),
            &[
                Event::Ok,
                Event::Ok,
                Event::Ok,
                Event::Ok,
                fail(FaultClass::VerifyFailed),
                Event::Ok,
                Event::Holds(Holds::Pending),
                fail(FaultClass::Refused),
                Event::Ok,
            ],
            "ReadRestorePoint > Stage > Push > Record(applied) > Verify > Record(rolling_back) > CheckTarget > Restore > RecordStuck > Finish(stuck)",
        );
    }

    #[test]
    fn host_lost_during_restore_is_left_for_recovery() {
        check(
            Rotation::start(false),
            &[
                Event::Ok,
                Event::Ok,
                Event::Ok,
                Event::Ok,
                fail(FaultClass::Unreachable),
                Event::Ok,
                fail(FaultClass::Unreachable),
            ],
            "ReadRestorePoint > Stage > Push > Record(applied) > Verify > Record(rolling_back) > CheckTarget > Finish(unsettled)",
        );
    }

    #[test]
    fn recovery_paths() {
        let rec = || Rotation::recover(Phase::Applied, open());
        check(
            rec(),
            &[Event::Ok, Event::Ok],
            "ProbePending > Commit > Finish(committed)",
        );
        check(
            rec(),
            &[
                fail(FaultClass::VerifyFailed),
                Event::Ok,
                Event::Holds(Holds::Saved),
                Event::Ok,
            ],
            "ProbePending > Record(rolling_back) > CheckTarget > RecordRolledBack > Finish(rolled back)",
        );
        check(
            rec(),
            &[
                fail(FaultClass::VerifyFailed),
                Event::Ok,
                Event::Holds(Holds::Pending),
                Event::Ok,
                Event::Ok,
            ],
            "ProbePending > Record(rolling_back) > CheckTarget > Restore > RecordRolledBack > Finish(rolled back)",
        );
        check(
            rec(),
            &[fail(FaultClass::Unreachable)],
            "ProbePending > Finish(unsettled)",
        );
        // Someone else changed the target (an emergency reset by hand): recovery restores
        // nothing over it, whether the new hash is checked as another password or cannot be
        // checked at all, nor when it cannot read the target.
        for held in [Holds::Other, Holds::Changed] {
            check(
                rec(),
                &[
                    fail(FaultClass::VerifyFailed),
                    Event::Ok,
                    Event::Holds(held),
                    Event::Ok,
                ],
                "ProbePending > Record(rolling_back) > CheckTarget > RecordStuck > Finish(stuck)",
            );
        }
        check(
            rec(),
            &[
                fail(FaultClass::VerifyFailed),
                Event::Ok,
                fail(FaultClass::Protocol),
            ],
            "ProbePending > Record(rolling_back) > CheckTarget > Finish(unsettled)",
        );
        // A run, by contrast, undoes its own push whatever the hash now looks like.
        check(
            Rotation::start(false),
            &[
                Event::Ok,
                Event::Ok,
                Event::Ok,
                Event::Ok,
                fail(FaultClass::VerifyFailed),
                Event::Ok,
                Event::Holds(Holds::Other),
                Event::Ok,
                Event::Ok,
            ],
            "ReadRestorePoint > Stage > Push > Record(applied) > Verify > Record(rolling_back) > CheckTarget > Restore > RecordRolledBack > Finish(rolled back)",
        );
    }

    #[test]
    fn recovery_says_what_it_found() {
        let message = |phase| {
            let (state, _) = Rotation::recover(phase, open());
            let (state, _) = state.on(Event::Holds(Holds::Saved));
            match state.on(Event::Ok).1 {
                Command::Finish(Outcome::RolledBack { cause }) => cause.message,
                other => panic!("{other:?}"),
            }
        };
        assert!(message(Phase::Staged).contains("before the new secret reached the target"));
        assert!(message(Phase::RollingBack).contains("after the old secret was back"));
    }

    #[test]
    fn a_rollback_refused_by_policy_keeps_the_proven_new_secret() {
        let refused = || fail(FaultClass::RollbackRefusedByPolicy);
        let verify_failed = || fail(FaultClass::VerifyFailed);
        let up_to_restore = [
            Event::Ok,
            Event::Ok,
            Event::Ok,
            Event::Ok,
            verify_failed(),
            Event::Ok,
            Event::Holds(Holds::Pending),
        ];
        let mut events = up_to_restore.to_vec();
        events.extend([refused(), Event::Ok, Event::Ok]);
        check(
            Rotation::start(false),
            &events,
            "ReadRestorePoint > Stage > Push > Record(applied) > Verify > Record(rolling_back) > CheckTarget > Restore > Verify > Commit > Finish(kept new)",
        );
        let mut events = up_to_restore.to_vec();
        events.extend([refused(), verify_failed(), Event::Ok]);
        check(
            Rotation::start(false),
            &events,
            "ReadRestorePoint > Stage > Push > Record(applied) > Verify > Record(rolling_back) > CheckTarget > Restore > Verify > RecordStuck > Finish(stuck)",
        );
    }

    /// Left staged (or rolling back), recovery asks the target before any login.
    #[test]
    fn recovery_from_staged_asks_the_target_first() {
        for phase in [Phase::Staged, Phase::RollingBack] {
            check(
                Rotation::recover(phase, open()),
                &[Event::Holds(Holds::Saved), Event::Ok],
                "CheckTarget > RecordRolledBack > Finish(rolled back)",
            );
            check(
                Rotation::recover(phase, open()),
                &[Event::Holds(Holds::Pending), Event::Ok, Event::Ok],
                "CheckTarget > ProbePending > Commit > Finish(committed)",
            );
            check(
                Rotation::recover(phase, open()),
                &[fail(FaultClass::Unreachable)],
                "CheckTarget > Finish(unsettled)",
            );
            // Someone else's password is there: no probe login, nothing restored.
            check(
                Rotation::recover(phase, open()),
                &[Event::Holds(Holds::Other), Event::Ok],
                "CheckTarget > RecordStuck > Finish(stuck)",
            );
        }
    }

    fn any_event() -> impl Strategy<Value = Event> {
        prop_oneof![
            4 => Just(Event::Ok),
            1 => prop::sample::select(vec![Holds::Saved, Holds::Pending, Holds::Other, Holds::Changed]).prop_map(Event::Holds),
            1 => Just(Event::Failed(Fault::store("s"))),
            1 => prop::sample::select(vec![
                FaultClass::Unreachable, FaultClass::TimedOut, FaultClass::Refused,
                FaultClass::VerifyFailed, FaultClass::AccountMissing, FaultClass::Protocol,
            ]).prop_map(|c| Event::Failed(Fault::target(c, "t"))),
        ]
    }

    /// A model of the world the commands act on: what the target holds and what the vault and
    /// ledger hold. Whatever happens, the secret the target accepts must be in the vault (as
    /// `current`, or as `pending` of an open rotation that recovery will settle), and a
    /// rotation is only closed as rolled back when the target no longer holds the new secret.
    #[derive(Debug, Clone)]
    struct World {
        target_has_new: bool,
        pending_stored: bool,
        committed: bool,
        /// The ledger's phase of the rotation, if a row exists.
        ledger: Option<Phase>,
        /// Whether a failed push nonetheless landed.
        failed_push_landed: bool,
        /// The credential's old secret is removed after commit (SSH keys).
        retires: bool,
        /// The old credential is still on the target (for a retiring credential).
        target_has_old: bool,
    }

    impl World {
        fn open(&self) -> bool {
            self.ledger.is_some_and(Phase::is_open)
        }
    }

    /// Runs the machine from `start` against the world, feeding `events` (adjusted to what the
    /// world makes possible), until it finishes or `crash_after` steps have run (the process
    /// dies: the world and the ledger keep whatever was done). Checks the invariant after
    /// every step.
    fn simulate(
        w: &mut World,
        start: (Rotation, Command),
        events: impl Iterator<Item = Event>,
        crash_after: usize,
    ) -> Result<Option<Outcome>, TestCaseError> {
        let (mut state, mut cmd) = start;
        for (step, e) in events.enumerate() {
            if let Command::Finish(outcome) = &cmd {
                return Ok(Some(outcome.clone()));
            }
            if step == crash_after {
                return Ok(None);
            }
            let mut e = e;
            let ok = !matches!(e, Event::Failed(_));
            match &cmd {
                Command::Stage { .. } if ok => {
                    w.pending_stored = true;
                    w.ledger = Some(Phase::Staged);
                }
                Command::Push { .. } => {
                    prop_assert!(w.pending_stored && w.open(), "pushed before staging");
                    w.target_has_new = ok || w.failed_push_landed;
                }
                // A login with the new secret succeeds only if the target holds it.
                Command::Verify | Command::ProbePending if ok && !w.target_has_new => {
                    e = Event::Failed(Fault::target(FaultClass::VerifyFailed, "v"));
                }
                Command::CheckTarget { .. } if ok => {
                    e = Event::Holds(if w.target_has_new {
                        Holds::Pending
                    } else {
                        Holds::Saved
                    })
                }
                Command::Record(_, p) if ok => w.ledger = Some(*p),
                Command::Commit(verified) => {
                    prop_assert!(
                        w.target_has_new,
                        "committed a secret the target does not hold"
                    );
                    if ok {
                        w.committed = true;
                        w.ledger = Some(if verified.then_retire() {
                            Phase::Retiring
                        } else {
                            Phase::Committed
                        });
                    }
                }
                Command::Retire { .. } => {
                    prop_assert!(w.committed, "removed the old credential before commit");
                    if ok {
                        w.target_has_old = false;
                    }
                }
                Command::RecordRetired(_) if ok => {
                    prop_assert!(!w.target_has_old, "retired while the old one is there");
                    w.ledger = Some(Phase::Retired);
                }
                Command::Restore { .. } if ok => w.target_has_new = false,
                Command::RecordRolledBack(_) if ok => {
                    prop_assert!(
                        !w.target_has_new,
                        "dropped pending while the target holds it"
                    );
                    w.ledger = Some(Phase::RolledBack);
                }
                Command::RecordStuck(..) if ok => w.ledger = Some(Phase::Stuck),
                _ => {}
            }
            if !matches!(e, Event::Failed(_)) && !matches!(cmd, Command::CheckTarget { .. }) {
                e = answer(&cmd, &Event::Ok);
            }
            if w.target_has_new {
                prop_assert!(
                    w.committed
                        || (w.pending_stored
                            && w.ledger.is_some_and(|p| p.is_open() || p == Phase::Stuck)),
                    "the working secret is not in the vault: {w:?} after {cmd:?}"
                );
            }
            (state, cmd) = state.on(e);
            prop_assert!(step < 20, "the machine does not terminate");
        }
        Ok(match cmd {
            Command::Finish(outcome) => Some(outcome),
            _ => None,
        })
    }

    proptest! {
        /// Random outcomes and a crash at a random step; then recovery (which may itself fail
        /// or crash) until a recovery runs against a healthy host. The working secret is never
        /// lost, and every rotation ends committed, rolled back or stuck.
        #[test]
        fn never_loses_the_working_secret(
            events in prop::collection::vec(any_event(), 1..16),
            crash_after in 0usize..14,
            recoveries in prop::collection::vec((prop::collection::vec(any_event(), 1..10), 0usize..10), 0..3),
            failed_push_landed: bool,
            retires: bool,
        ) {
            let mut w = World {
                target_has_new: false,
                pending_stored: false,
                committed: false,
                ledger: None,
                failed_push_landed,
                retires,
                target_has_old: true,
            };
            let open = || Open { retires, ..open() };
            let events = events.into_iter().cycle().take(40);
            let mut outcome = simulate(&mut w, Rotation::start(retires), events, crash_after)?;
            // Recovery runs only for rotations the ledger holds as open, as `open_rotations`
            // returns them.
            for (events, crash_after) in recoveries {
                if outcome.is_some() || !w.open() {
                    break;
                }
                let phase = w.ledger.expect("open");
                outcome = simulate(&mut w, Rotation::recover(phase, open()), events.into_iter().cycle().take(40), crash_after)?;
                if matches!(outcome, Some(Outcome::Unsettled { .. })) {
                    outcome = None;
                }
            }
            if matches!(outcome, Some(Outcome::Unsettled { .. })) || (outcome.is_none() && w.open()) {
                let phase = w.ledger.expect("open");
                outcome = simulate(&mut w, Rotation::recover(phase, open()), std::iter::repeat(Event::Ok), usize::MAX)?;
            }
            match outcome {
                // Crashed before staging anything: nothing to settle.
                None => prop_assert!(!w.open() && !w.target_has_new),
                                Some(Outcome::Committed) => {
                    prop_assert!(w.committed && w.target_has_new);
                    // A retiring credential ends with its old secret removed.
                    prop_assert!(!w.retires || !w.target_has_old, "old credential left behind");
                }
                Some(Outcome::KeptNew { .. }) => prop_assert!(w.committed && w.target_has_new),
                Some(Outcome::RolledBack { .. } | Outcome::NotChanged { .. }) => {
                    prop_assert!(!w.open() && !w.target_has_new)
                }
                Some(Outcome::Stuck { .. }) => prop_assert_eq!(w.ledger, Some(Phase::Stuck)),
                Some(o @ (Outcome::Unsettled { .. } | Outcome::Skipped { .. })) => {
                    prop_assert!(false, "ended {o:?} against a healthy host")
                }
            }
        }
    }
}

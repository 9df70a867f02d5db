//! The rotation engine: the ledger vocabulary ([`ledger`]), the pure state machine
//! ([`machine`]), the pure admission and blast-radius rules ([`admission`], [`blast`]), the
//! driver that runs them against targets and the store ([`driver`], [`directory`]) and the one
//! bounded fan-out every many-targets job runs through ([`fanout`]).

pub mod admission;
pub mod blast;
pub mod directory;
pub mod driver;
pub mod fanout;
pub mod ledger;
pub mod machine;
#[cfg(test)]
pub(crate) mod testkit;

pub use ledger::{
    Lease, LeaseHeld, OpenRotation, Phase, RotationId, RunId, Store, UnreadableRotation,
};
pub use machine::{Command, Event, Fault, FaultKind, Holds, Outcome, Rotation};

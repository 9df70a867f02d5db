//! The rotation engine: the ledger vocabulary ([`ledger`]), the pure state machine
//! ([`machine`]), the driver that runs it against connectors and the store ([`driver`],
//! [`directory`]), blast-radius rules ([`blast`]) and the one bounded fan-out every
//! many-targets job runs through ([`fanout`]).

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

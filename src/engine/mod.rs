//! The rotation engine: a pure state machine ([`machine`]), and the ledger vocabulary
//! ([`ledger`]) that the driver and the store share.

pub mod ledger;

pub use ledger::{OpenRotation, Phase, RotationId, RunId, Store};

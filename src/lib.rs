//! rotor: a credential rotation orchestrator.
//!
//! Module map (see ARCHITECTURE.md for the invariants each keeps):
//! - [`clock`]: injected time (`Clock`) and randomness (`Entropy`); the only `now()` and `OsRng`.
//! - [`secret`]: the `Secret` type; redacted, zeroized, exposed only where ARCHITECTURE.md says.
//! - [`credential`]: `HostName`, `AccountName`, `CredentialId` newtypes.
//! - [`inventory`]: YAML inventory parsing and validation, scopes.
//! - [`policy`]: password generation from a policy (pure; RNG injected).
//! - [`schedule`]: crontab schedules, time zones, maintenance windows, due times (pure).
//! - [`scheduler`]: the daemon's decisions per credential: rotate now, wait, catch up, retry (pure).
//! - [`sshkey`]: ed25519 key pairs (OpenSSH format) and line-preserving `authorized_keys` edits.
//! - [`password_hash`]: local checks of a password against a target's stored hash (bounded cost).
//! - [`recipe`]: playbooks as recipes: YAML model, loading with file:line errors, the interpreter.
//! - [`engine`]: the rotation state machine and admission rules (pure), the store port, the
//!   one fan-out and the driver.
//! - [`ops`]: the operations (rotate, recover, verify, plan, status, scan, checkout) every
//!   front-end calls.
//! - [`connector`]: edges to targets (`ssh`, `ldap`), typed faults.
//! - [`store`]: the vault (SQLite, encrypted rows), ledger and audit log.
//! - [`target`]: targets by capability (`Target`: read restore point, apply, prove, undo,
//!   retire) and their adapters: `linux` (a recipe over an SSH session), `directory` (LDAP).
//! - [`scan`]: `rotor scan`'s findings from what hosts and directories hold (pure); its
//!   self-contained HTML report (`scan::html`).
//! - [`breach`]: the breach survey of one host (pure): accounts the inventory does not know
//!   that can be logged in to, sessions of rotated and unknown accounts, what to do.
//! - [`report`]: run summaries as tables and JSON; the breach survey's text.
//! - [`text`]: outside text made safe to print (control characters escaped).
//! - [`server`]: `rotor serve`: the scheduler loop, HTTP API, checkout page and metrics.
//! - [`cli`]: command-line parsing and one module per subcommand.

pub mod breach;
pub mod checkout;
pub mod cli;
pub mod clock;
pub mod connector;
pub mod credential;
pub mod engine;
pub mod inventory;
pub mod ops;
pub mod password_hash;
pub mod policy;
pub mod recipe;
pub mod report;
pub mod scan;
pub mod schedule;
pub mod scheduler;
pub mod secret;
pub mod server;
pub mod sshkey;
pub mod store;
pub mod target;
pub mod text;

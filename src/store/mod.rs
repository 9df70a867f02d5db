//! The vault: one SQLite file (WAL, synchronous=FULL) holding encrypted credential versions,
//! the rotation ledger, runs and the audit log. Implements the engine's store port ([`crate::engine::Store`]: runs, secrets, ledger,
//! leases, login budget), converting its errors to the engine's [`crate::engine::ledger::StoreFailure`].
//!
//! Invariants: no plaintext secret is ever written to disk (every secret column is
//! XChaCha20-Poly1305 ciphertext with the row identity as associated data); every method that
//! changes state has committed when it returns, and those whose loss recovery could not
//! repair (stage, enroll, audited reads, operator decisions) have also been fsynced
//! (synchronous=FULL; the others use NORMAL: see `Vault::write_lazy`); no error, log line or `Debug` output
//! of this module carries a secret or key material.
//!
//! Leases (invariant 5) are rows in the same file, taken and checked under `BEGIN IMMEDIATE`,
//! so they hold across processes on one machine; every write to a rotation is fenced by the
//! token it was staged or adopted with. The lockout-budget counters and parking (invariant 7)
//! are columns of the credential.
//!
//! Files: [`vault`] (the `Vault` type, the `Store` impl and the CLI's queries), [`schema`]
//! (tables and migrations), [`crypto`] (sealing, key wrapping, fingerprints: the only caller of
//! `Secret::expose` here), [`keys`] (master key sources), [`audit`] (the hash-chained log of
//! typed events, its verification and queries), [`syslog`] (each committed audit head sent to
//! the system log), [`files`] (who may change the data directory, the database and the key
//! file).

pub mod audit;
pub mod crypto;
pub mod files;
pub mod keys;
pub mod schema;
pub mod syslog;
pub mod vault;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use files::check_trusted_file;
pub use keys::KeySource;
pub use vault::{
    CheckoutRecord, CredentialStatus, EnrollOutcome, LastRotation, Leader, MAX_TOKEN_TTL,
    NewCheckout, Principal, Role, RotationRecord, RunRecord, Shown, TokenRecord, Vault,
};

/// Errors from the vault. Each message says what went wrong and what to do; none carries a
/// secret.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "no vault in {0}: run `rotor init --data-dir {0}` first, or point --data-dir / ROTOR_DATA_DIR at an existing vault"
    )]
    Missing(PathBuf),
    #[error(
        "a vault already exists in {0}: `rotor init` never overwrites one (its master key was left untouched); use it as it is, or choose another --data-dir"
    )]
    AlreadyInitialized(PathBuf),
    #[error(
        "a master key already exists at the {0}; rotor never overwrites a key. If it belongs to another vault, choose another key location; if it is left over, move it away yourself"
    )]
    KeyExists(String),
    #[error(
        "the master key from the {0} does not match this vault (it cannot unwrap the vault's data key): check that the key source is the one `rotor init` created for this data directory (--key-file / keyring service and user), and that the key file was not replaced"
    )]
    KeyMismatch(String),
    #[error(
        "the master key file {path} has mode {mode:04o}, readable by group or others: rotor refuses to use it. Run `chmod 0400 {path}` (and check who could have read it)"
    )]
    KeyFilePermissions { path: PathBuf, mode: u32 },
    #[error(
        "the {0} does not hold a valid master key (expected the base64 of 32 bytes, as written by `rotor init`): restore the right key file or keyring entry"
    )]
    KeyMalformed(String),
    #[error("{0}")]
    Keyring(String),
    // `cause` rather than `source`: the message already shows it, and a `#[source]` would
    // make the CLI print it twice.
    #[error("cannot {action} {path}: {cause}")]
    Io {
        path: PathBuf,
        action: &'static str,
        cause: std::io::Error,
    },
    #[error(
        "the vault's {0} failed its integrity check: the row was altered or copied from another row. The vault file is corrupted or was tampered with; restore it from a backup or an escrow export"
    )]
    Integrity(String),
    #[error(
        "the vault schema is version {found}, newer than this rotor understands ({known}): upgrade rotor"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error(
        "credential {0} already has a rotation in progress (rotation {1}): run `rotor recover` to settle it"
    )]
    RotationOpen(String, i64),
    #[error(
        "credential {0} is stuck (rotation {1} kept both its pending and current secrets): an operator must settle it before it can be rotated again"
    )]
    Stuck(String, i64),
    #[error(
        "credential {cred}: this rotor process no longer holds its lease ({why}), so it wrote nothing; another rotor process may have taken the credential over. Run `rotor status` to see who holds it, and `rotor recover` to settle a rotation left open"
    )]
    LeaseLost { cred: String, why: String },
    #[error(
        "credential {cred} is parked ({reason}): rotor makes no logins or rotations for it until an operator has checked the account and unparks it"
    )]
    Parked { cred: String, reason: String },
    #[error(
        "credential {0}: the new secret is already the secret of another credential in the vault (checked by keyed fingerprint when it was staged), so it was not stored or sent. With a policy of 64 bits or more this does not happen by chance: check that the policy has not been weakened and that no two rotor instances share a random source"
    )]
    SecretCollision(String),
    #[error("credential {0} is not in the vault: enroll it with `rotor enroll {0}`")]
    UnknownCredential(String),
    /// A rule said no (a checkout's or a token's); the message says why and what to do.
    #[error("{0}")]
    Refused(String),
    #[error("checkout {0} is not in the vault: `rotor checkouts --all` lists them")]
    UnknownCheckout(i64),
    #[error("rotation {0} is not in the vault")]
    UnknownRotation(i64),
    #[error("run {0} is not in the vault")]
    UnknownRun(i64),
    #[error(
        "rotation {id} is {phase}, not open: it cannot be {wanted} (only staged, applied, verified or rolling_back rotations can)"
    )]
    NotOpen {
        id: i64,
        phase: String,
        wanted: &'static str,
    },
    #[error(
        "rotation {0}: `record_phase` only moves between open phases; use commit, roll_back or mark_stuck to end a rotation"
    )]
    PhaseNotRecordable(i64),
    #[error(
        "the audit log fails verification at entry {seq}: {reason}. Someone edited or deleted audit entries; keep this vault file as evidence"
    )]
    AuditTampered { seq: i64, reason: String },
    #[error(
        "the vault is inconsistent: {0}. This is a bug or a hand-edited database; keep the file and report it"
    )]
    Corrupt(String),
    #[error("vault database error: {0}")]
    Db(String),
    #[error(
        "the vault cannot be written ({0}): the disk holding the data directory is full or failing; free space or fix the disk, then run again. Nothing is sent to a target before it is stored, so nothing was changed for credentials reported as not changed"
    )]
    Unwritable(String),
    // Issue 8 (data directory, key and database files; their state on disk). Kept together.
    #[error("refusing the {what} {}: {problem}; {}", path.display(), problem.fix(what, path))]
    UnsafePath {
        /// "data directory", "database", "master key file", ...
        what: &'static str,
        path: PathBuf,
        problem: files::PathProblem,
    },
    #[error(
        "found {} in the data directory before `rotor init`: rotor did not create it, and whoever could write the directory may have placed it. Check it, remove it (`rm {}`), and run `rotor init` again", .0.display(), .0.display()
    )]
    StrayFile(PathBuf),
    #[error("cannot write {}: {}", path.display(), not_writable_hint(path, cause))]
    NotWritable {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// Why a vault file or directory cannot be written, and what to do, for
/// [`StoreError::NotWritable`]. rotor writes on every command (the audit log, leases, and
/// SQLite's shared-memory file even for reads).
fn not_writable_hint(path: &Path, cause: &std::io::Error) -> String {
    let p = path.display();
    match cause.kind() {
        std::io::ErrorKind::ReadOnlyFilesystem => format!(
            "it is on a read-only filesystem. rotor writes the vault on every command (audit log, leases): remount it read-write (`mount -o remount,rw $(findmnt -no TARGET -T {p})`), or copy the data directory to a writable place and point --data-dir at the copy"
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "permission denied for uid {} that rotor runs as ({cause}). Run rotor as the vault's owner, or give it back: `chown {} {p} && chmod u+w {p}`",
            files::euid(),
            files::euid()
        ),
        std::io::ErrorKind::NotFound => "it does not exist. Run `rotor init` to create a vault, or point --data-dir at the existing one".to_owned(),
        _ => format!("{cause}; check the disk and the mount that holds {p}"),
    }
}

impl StoreError {
    pub(crate) fn io(path: &Path, action: &'static str, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_owned(),
            action,
            cause: source,
        }
    }
}

/// SQLite errors carry SQL text and constraint names, never bound values; the store binds only
/// ciphertext anyway, so the message is safe to show.
impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> StoreError {
        use rusqlite::ErrorCode::{DiskFull, SystemIoFailure};
        match &err {
            rusqlite::Error::SqliteFailure(e, _)
                if matches!(e.code, DiskFull | SystemIoFailure) =>
            {
                StoreError::Unwritable(err.to_string())
            }
            _ => StoreError::Db(err.to_string()),
        }
    }
}

/// The engine sees the vault's errors only as [`StoreFailure`]s: a class it can branch on and
/// the message (which already says what to do).
impl From<StoreError> for crate::engine::ledger::StoreFailure {
    fn from(e: StoreError) -> Self {
        use crate::engine::ledger::StoreFailureKind as K;
        let kind = match &e {
            StoreError::RotationOpen(..) => K::RotationOpen,
            StoreError::Stuck(..) => K::Stuck,
            StoreError::Parked { .. } => K::Parked,
            StoreError::LeaseLost { .. } => K::LeaseLost,
            StoreError::SecretCollision(_) => K::SecretCollision,
            StoreError::Integrity(_) => K::Integrity,
            _ => K::Other,
        };
        crate::engine::ledger::StoreFailure {
            kind,
            message: e.to_string(),
        }
    }
}

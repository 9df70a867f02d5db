//! The vault: one SQLite file (WAL, synchronous=FULL) holding encrypted credential versions,
//! the rotation ledger, runs and the audit log. Implements [`crate::engine::Store`].
//!
//! Invariants: no plaintext secret is ever written to disk (every secret column is
//! XChaCha20-Poly1305 ciphertext with the row identity as associated data); every method that
//! changes state has committed durably when it returns.

use std::path::PathBuf;

/// Errors from the vault. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "no vault in {0}: run `rotor init --data-dir {0}` first, or point --data-dir / ROTOR_DATA_DIR at an existing vault"
    )]
    Missing(PathBuf),
    #[error(
        "credential {0} already has a rotation in progress (rotation {1}): run `rotor recover` to settle it"
    )]
    RotationOpen(String, i64),
    #[error("vault database error: {0}")]
    Db(String),
}

//! `Vault`: the SQLite vault behind one mutex-guarded connection. It implements the engine's
//! [`Store`] trait (staging, phases, commit, roll-back, recovery listing) and the queries the
//! CLI needs (`enroll`, `show`, `status`, `rotations_of_run`, the audit log).
//!
//! It never writes a plaintext secret to the database (every secret goes through
//! [`super::crypto`] first), never logs or returns a secret except through [`Secret`], and
//! every state change runs in one `BEGIN IMMEDIATE` transaction that has committed
//! (synchronous=FULL) when the method returns.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};
use serde::Serialize;

use super::crypto::{self, KeyBytes};
use super::keys::KeySource;
use super::{StoreError, audit, schema};
use crate::credential::CredentialId;
use crate::engine::{OpenRotation, Phase, RotationId, RunId, Store};
use crate::secret::Secret;

/// The database file inside the data directory.
pub const DB_FILE: &str = "rotor.db";

const DATA_KEY_AAD: &[u8] = b"rotor/v1/meta/data_key";
const HMAC_KEY_AAD: &[u8] = b"rotor/v1/meta/hmac_key";

/// SQL list of the phases in which a rotation is open (kept equal to `Phase::is_open`; a test
/// checks it).
const OPEN_PHASES_SQL: &str = "('staged', 'applied', 'verified', 'rolling_back')";

/// The encrypted vault. Shared by reference across host workers (`Sync`).
pub struct Vault {
    conn: Mutex<Connection>,
    data_dir: PathBuf,
    data_key: KeyBytes,
    hmac_key: KeyBytes,
    actor: String,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("data_dir", &self.data_dir)
            .field("actor", &self.actor)
            .finish_non_exhaustive()
    }
}

/// What `enroll` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EnrollOutcome {
    /// How many *other* credentials have this same secret as their current or pending version
    /// (the CLI warns: "this password is shared with N other credentials").
    pub shared_with: usize,
    /// True if the credential already had a current version (now `previous`).
    pub replaced_current: bool,
}

/// One line of `rotor status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CredentialStatus {
    pub cred: CredentialId,
    pub has_current: bool,
    /// When the current version became current.
    pub current_since: Option<DateTime<Utc>>,
    pub has_pending: bool,
    pub last_rotation: Option<LastRotation>,
    /// A rotation is in an open phase (recovery must settle it).
    pub open_rotation: bool,
}

/// The latest rotation of a credential.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LastRotation {
    pub id: RotationId,
    pub phase: Phase,
    /// When the rotation last changed phase.
    pub at: DateTime<Utc>,
    pub note: Option<String>,
}

/// One rotation of a run, for reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RotationRecord {
    pub id: RotationId,
    pub run: RunId,
    pub cred: CredentialId,
    pub phase: Phase,
    pub note: Option<String>,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A rotation's row, as the transitions need it.
struct RotationRow {
    credential_row: i64,
    cred: String,
    version_id: i64,
    phase: Phase,
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| StoreError::Corrupt(format!("`{text}` is not an RFC 3339 time")))
}

fn parse_phase(text: &str) -> Result<Phase, StoreError> {
    Phase::from_str(text).map_err(StoreError::Corrupt)
}

fn parse_cred(text: &str) -> Result<CredentialId, StoreError> {
    CredentialId::parse(text).map_err(StoreError::Corrupt)
}

/// Associated data of a credential version's secret: the row identity.
fn version_aad(cred: &str, version_id: i64) -> Vec<u8> {
    format!("rotor/v1/version/{cred}/{version_id}").into_bytes()
}

/// Associated data of a rotation's restore point.
fn restore_aad(rotation_id: i64) -> Vec<u8> {
    format!("rotor/v1/restore/{rotation_id}").into_bytes()
}

fn open_connection(db: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(db, flags)?;
    schema::configure(&conn)?;
    Ok(conn)
}

impl Vault {
    /// The path of the database in a data directory.
    pub fn db_path(data_dir: &Path) -> PathBuf {
        data_dir.join(DB_FILE)
    }

    /// Creates a new vault: the data directory (mode 0700, if it does not exist), the master
    /// key at `source`, and `rotor.db` with fresh data and HMAC keys wrapped by the master key.
    /// Refuses, touching nothing, if the directory already holds a vault.
    pub fn init(data_dir: &Path, source: KeySource) -> Result<Vault, StoreError> {
        let db = Vault::db_path(data_dir);
        if db.exists() {
            return Err(StoreError::AlreadyInitialized(data_dir.to_owned()));
        }
        if !data_dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(data_dir)
                .map_err(|err| StoreError::io(data_dir, "create the data directory", err))?;
            // The umask may have cleared bits but never adds any; set it exactly anyway.
            std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|err| StoreError::io(data_dir, "set the mode of", err))?;
        }
        let master = source.create()?;
        let mut conn = open_connection(
            &db,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        schema::migrate(&mut conn)?;
        let (data_key, hmac_key) = (KeyBytes::random(), KeyBytes::random());
        let vault = Vault {
            conn: Mutex::new(conn),
            data_dir: data_dir.to_owned(),
            data_key,
            hmac_key,
            actor: default_actor(),
        };
        vault.write(|tx| {
            for (name, aad, key) in [
                ("data_key", DATA_KEY_AAD, &vault.data_key),
                ("hmac_key", HMAC_KEY_AAD, &vault.hmac_key),
            ] {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                    params![name, crypto::wrap_key(&master, aad, key)],
                )?;
            }
            vault.audit_in(
                tx,
                "init",
                None,
                &format!("master key: {}", source.describe()),
            )?;
            Ok(())
        })?;
        tracing::info!(data_dir = %data_dir.display(), "created a new vault");
        Ok(vault)
    }

    /// Opens an existing vault with its master key.
    pub fn open(data_dir: &Path, source: KeySource) -> Result<Vault, StoreError> {
        let db = Vault::db_path(data_dir);
        if !db.is_file() {
            return Err(StoreError::Missing(data_dir.to_owned()));
        }
        let master = source.load()?;
        let mut conn = open_connection(
            &db,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        if schema::version(&conn)?.is_none() {
            return Err(StoreError::Missing(data_dir.to_owned()));
        }
        schema::migrate(&mut conn)?;
        let unwrap = |name: &str, aad: &[u8]| -> Result<KeyBytes, StoreError> {
            let blob: Vec<u8> = conn
                .query_row("SELECT value FROM meta WHERE key = ?1", [name], |row| {
                    row.get(0)
                })
                .optional()?
                .ok_or_else(|| StoreError::Corrupt(format!("meta has no wrapped {name}")))?;
            crypto::unwrap_key(&master, aad, &blob)
                .map_err(|_| StoreError::KeyMismatch(source.describe()))
        };
        let data_key = unwrap("data_key", DATA_KEY_AAD)?;
        let hmac_key = unwrap("hmac_key", HMAC_KEY_AAD)?;
        Ok(Vault {
            conn: Mutex::new(conn),
            data_dir: data_dir.to_owned(),
            data_key,
            hmac_key,
            actor: default_actor(),
        })
    }

    /// Names who acts in audit entries from now on (default: `$USER`, else `rotor`).
    pub fn with_actor(mut self, actor: impl Into<String>) -> Vault {
        self.actor = actor.into();
        self
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held dropped its rusqlite Transaction, which rolls back;
        // the connection is therefore consistent and safe to keep using.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction and commits it.
    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    fn audit_in(
        &self,
        conn: &Connection,
        action: &str,
        cred: Option<&str>,
        detail: &str,
    ) -> Result<i64, StoreError> {
        audit::append(
            conn,
            &self.hmac_key,
            &audit::Entry {
                at: &now(),
                actor: &self.actor,
                action,
                cred,
                detail,
            },
        )
    }

    /// Appends an audit entry (for events outside the store: checkouts, approvals...). The
    /// detail must never contain a secret.
    pub fn audit_append(
        &self,
        action: &str,
        cred: Option<&CredentialId>,
        detail: &str,
    ) -> Result<i64, StoreError> {
        let cred = cred.map(ToString::to_string);
        self.write(|tx| self.audit_in(tx, action, cred.as_deref(), detail))
    }

    /// Verifies the whole audit chain; returns the number of entries.
    pub fn audit_verify(&self) -> Result<usize, StoreError> {
        audit::verify(&self.lock(), &self.hmac_key)
    }

    fn credential_row(conn: &Connection, cred: &str) -> Result<Option<i64>, StoreError> {
        Ok(conn
            .query_row(
                "SELECT id FROM credentials WHERE cred = ?1",
                [cred],
                |row| row.get(0),
            )
            .optional()?)
    }

    fn ensure_credential(conn: &Connection, cred: &str, at: &str) -> Result<i64, StoreError> {
        if let Some(id) = Vault::credential_row(conn, cred)? {
            return Ok(id);
        }
        conn.execute(
            "INSERT INTO credentials (cred, created_at) VALUES (?1, ?2)",
            params![cred, at],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// The open rotation of a credential, if any.
    fn open_rotation_of(conn: &Connection, credential_row: i64) -> Result<Option<i64>, StoreError> {
        Ok(conn
            .query_row(
                &format!(
                    "SELECT id FROM rotations WHERE credential_id = ?1 AND phase IN {OPEN_PHASES_SQL}"
                ),
                [credential_row],
                |row| row.get(0),
            )
            .optional()?)
    }

    /// Inserts a version in `state`, then encrypts the secret with the new row's id in the
    /// associated data (same transaction, so the placeholder is never visible).
    fn insert_version(
        &self,
        conn: &Connection,
        credential_row: i64,
        cred: &str,
        state: &str,
        secret: &Secret,
        at: &str,
    ) -> Result<i64, StoreError> {
        conn.execute(
            "INSERT INTO versions (credential_id, state, secret, fingerprint, created_at,
                                   state_changed_at)
             VALUES (?1, ?2, x'', ?3, ?4, ?4)",
            params![
                credential_row,
                state,
                crypto::fingerprint(&self.hmac_key, secret),
                at
            ],
        )?;
        let id = conn.last_insert_rowid();
        let sealed = crypto::seal_secret(&self.data_key, &version_aad(cred, id), secret);
        conn.execute(
            "UPDATE versions SET secret = ?1 WHERE id = ?2",
            params![sealed, id],
        )?;
        Ok(id)
    }

    fn decrypt_version(&self, cred: &str, id: i64, blob: &[u8]) -> Result<Secret, StoreError> {
        crypto::open_secret(&self.data_key, &version_aad(cred, id), blob)
            .map_err(|_| StoreError::Integrity(format!("secret version {id} of {cred}")))
    }

    fn decrypt_restore_point(&self, id: i64, blob: &[u8]) -> Result<Secret, StoreError> {
        crypto::open_secret(&self.data_key, &restore_aad(id), blob)
            .map_err(|_| StoreError::Integrity(format!("restore point of rotation {id}")))
    }

    fn current_in(&self, conn: &Connection, cred: &str) -> Result<Option<Secret>, StoreError> {
        let row: Option<(i64, Vec<u8>)> = conn
            .query_row(
                "SELECT v.id, v.secret FROM versions v JOIN credentials c ON c.id = v.credential_id
                 WHERE c.cred = ?1 AND v.state = 'current'",
                [cred],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        row.map(|(id, blob)| self.decrypt_version(cred, id, &blob))
            .transpose()
    }

    /// Stores `secret` as the credential's `current` version (an existing current becomes
    /// `previous`, an existing previous is retired). Refused while a rotation is open.
    pub fn enroll(
        &self,
        cred: &CredentialId,
        secret: &Secret,
    ) -> Result<EnrollOutcome, StoreError> {
        let cred_text = cred.to_string();
        let fingerprint = crypto::fingerprint(&self.hmac_key, secret);
        self.write(|tx| {
            let at = now();
            let credential_row = Vault::ensure_credential(tx, &cred_text, &at)?;
            if let Some(open) = Vault::open_rotation_of(tx, credential_row)? {
                return Err(StoreError::RotationOpen(cred_text.clone(), open));
            }
            let shared_with: i64 = tx.query_row(
                "SELECT COUNT(DISTINCT credential_id) FROM versions
                 WHERE fingerprint = ?1 AND credential_id != ?2
                   AND state IN ('current', 'pending')",
                params![fingerprint, credential_row],
                |row| row.get(0),
            )?;
            tx.execute(
                "UPDATE versions SET state = 'retired', state_changed_at = ?2
                 WHERE credential_id = ?1 AND state = 'previous'",
                params![credential_row, at],
            )?;
            let replaced_current = tx.execute(
                "UPDATE versions SET state = 'previous', state_changed_at = ?2
                 WHERE credential_id = ?1 AND state = 'current'",
                params![credential_row, at],
            )? == 1;
            let version =
                self.insert_version(tx, credential_row, &cred_text, "current", secret, &at)?;
            self.audit_in(
                tx,
                "enroll",
                Some(&cred_text),
                &format!("version {version}; shared with {shared_with} other credentials"),
            )?;
            Ok(EnrollOutcome {
                shared_with: usize::try_from(shared_with)
                    .map_err(|_| StoreError::Corrupt("negative count".into()))?,
                replaced_current,
            })
        })
    }

    /// The credential's current secret for a person, audited with their reason (the entry is
    /// committed before the secret is returned; a read of an unknown credential is audited
    /// too).
    pub fn show(&self, cred: &CredentialId, reason: &str) -> Result<Option<Secret>, StoreError> {
        let cred_text = cred.to_string();
        self.write(|tx| {
            let secret = self.current_in(tx, &cred_text)?;
            let detail = serde_json::json!({
                "reason": reason,
                "found": secret.is_some(),
            })
            .to_string();
            self.audit_in(tx, "show", Some(&cred_text), &detail)?;
            Ok(secret)
        })
    }

    /// One line per credential, sorted by name.
    pub fn status(&self) -> Result<Vec<CredentialStatus>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT c.cred,
                    (SELECT v.state_changed_at FROM versions v
                      WHERE v.credential_id = c.id AND v.state = 'current'),
                    EXISTS (SELECT 1 FROM versions v
                             WHERE v.credential_id = c.id AND v.state = 'pending'),
                    r.id, r.phase, r.updated_at, r.note
             FROM credentials c
             LEFT JOIN rotations r
               ON r.id = (SELECT MAX(id) FROM rotations WHERE credential_id = c.id)
             ORDER BY c.cred",
        )?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let cred: String = row.get(0)?;
            let current_since: Option<String> = row.get(1)?;
            let has_pending: bool = row.get(2)?;
            let rotation: Option<i64> = row.get(3)?;
            let last_rotation = match rotation {
                None => None,
                Some(id) => Some(LastRotation {
                    id: RotationId(id),
                    phase: parse_phase(&row.get::<_, String>(4)?)?,
                    at: parse_time(&row.get::<_, String>(5)?)?,
                    note: row.get(6)?,
                }),
            };
            out.push(CredentialStatus {
                cred: parse_cred(&cred)?,
                has_current: current_since.is_some(),
                current_since: current_since.as_deref().map(parse_time).transpose()?,
                has_pending,
                // Stage refuses while a rotation is open, so an open rotation is always the
                // credential's latest one.
                open_rotation: last_rotation.as_ref().is_some_and(|r| r.phase.is_open()),
                last_rotation,
            });
        }
        Ok(out)
    }

    /// The rotations of one run, in the order they were staged.
    pub fn rotations_of_run(&self, run: RunId) -> Result<Vec<RotationRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT r.id, c.cred, r.phase, r.note, r.started_at, r.updated_at
             FROM rotations r JOIN credentials c ON c.id = r.credential_id
             WHERE r.run_id = ?1 ORDER BY r.id",
        )?;
        let mut rows = stmt.query([run.0])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(RotationRecord {
                id: RotationId(row.get(0)?),
                run,
                cred: parse_cred(&row.get::<_, String>(1)?)?,
                phase: parse_phase(&row.get::<_, String>(2)?)?,
                note: row.get(3)?,
                started_at: parse_time(&row.get::<_, String>(4)?)?,
                updated_at: parse_time(&row.get::<_, String>(5)?)?,
            });
        }
        Ok(out)
    }

    fn rotation_row(conn: &Connection, id: RotationId) -> Result<RotationRow, StoreError> {
        let row: Option<(i64, String, i64, String)> = conn
            .query_row(
                "SELECT r.credential_id, c.cred, r.version_id, r.phase
                 FROM rotations r JOIN credentials c ON c.id = r.credential_id
                 WHERE r.id = ?1",
                [id.0],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .optional()?;
        let (credential_row, cred, version_id, phase) =
            row.ok_or(StoreError::UnknownRotation(id.0))?;
        Ok(RotationRow {
            credential_row,
            cred,
            version_id,
            phase: parse_phase(&phase)?,
        })
    }

    /// The rotation, which must be open to be `wanted` (a verb for the error message).
    fn open_rotation_row(
        conn: &Connection,
        id: RotationId,
        wanted: &'static str,
    ) -> Result<RotationRow, StoreError> {
        let row = Vault::rotation_row(conn, id)?;
        if !row.phase.is_open() {
            return Err(StoreError::NotOpen {
                id: id.0,
                phase: row.phase.to_string(),
                wanted,
            });
        }
        let pending: Option<String> = conn
            .query_row(
                "SELECT state FROM versions WHERE id = ?1",
                [row.version_id],
                |r| r.get(0),
            )
            .optional()?;
        if pending.as_deref() != Some("pending") {
            return Err(StoreError::Corrupt(format!(
                "open rotation {} points at version {} which is not pending",
                id.0, row.version_id
            )));
        }
        Ok(row)
    }

    fn set_phase(
        conn: &Connection,
        id: RotationId,
        phase: Phase,
        note: Option<&str>,
        at: &str,
    ) -> Result<(), StoreError> {
        conn.execute(
            "UPDATE rotations SET phase = ?2, note = COALESCE(?3, note), updated_at = ?4
             WHERE id = ?1",
            params![id.0, phase.as_str(), note, at],
        )?;
        Ok(())
    }
}

fn default_actor() -> String {
    std::env::var("USER")
        .ok()
        .filter(|user| !user.is_empty())
        .unwrap_or_else(|| "rotor".to_owned())
}

impl Store for Vault {
    fn begin_run(&self, reason: &str, scope: &str) -> Result<RunId, StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO runs (started_at, reason, scope) VALUES (?1, ?2, ?3)",
                params![now(), reason, scope],
            )?;
            Ok(RunId(tx.last_insert_rowid()))
        })
    }

    fn end_run(&self, run: RunId, summary: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE runs SET ended_at = ?2, summary = ?3 WHERE id = ?1",
                params![run.0, now(), summary],
            )?;
            if n == 0 {
                return Err(StoreError::UnknownRun(run.0));
            }
            Ok(())
        })
    }

    fn fingerprint_taken(&self, secret: &Secret) -> Result<bool, StoreError> {
        let fingerprint = crypto::fingerprint(&self.hmac_key, secret);
        Ok(self.lock().query_row(
            "SELECT EXISTS (SELECT 1 FROM versions WHERE fingerprint = ?1)",
            [fingerprint],
            |row| row.get(0),
        )?)
    }

    fn stage(
        &self,
        run: RunId,
        cred: &CredentialId,
        new: &Secret,
        restore_point: &Secret,
    ) -> Result<RotationId, StoreError> {
        let cred_text = cred.to_string();
        self.write(|tx| {
            let at = now();
            let run_exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM runs WHERE id = ?1)",
                [run.0],
                |row| row.get(0),
            )?;
            if !run_exists {
                return Err(StoreError::UnknownRun(run.0));
            }
            let credential_row = Vault::ensure_credential(tx, &cred_text, &at)?;
            if let Some(open) = Vault::open_rotation_of(tx, credential_row)? {
                return Err(StoreError::RotationOpen(cred_text.clone(), open));
            }
            // A pending version without an open rotation is a stuck rotation's: both secrets
            // are kept for an operator, and a new rotation must not replace either.
            let stuck: Option<i64> = tx
                .query_row(
                    "SELECT r.id FROM versions v JOIN rotations r ON r.version_id = v.id
                     WHERE v.credential_id = ?1 AND v.state = 'pending'",
                    [credential_row],
                    |row| row.get(0),
                )
                .optional()?;
            if let Some(stuck) = stuck {
                return Err(StoreError::Stuck(cred_text.clone(), stuck));
            }
            let version =
                self.insert_version(tx, credential_row, &cred_text, "pending", new, &at)?;
            tx.execute(
                "INSERT INTO rotations (run_id, credential_id, version_id, phase, restore_point,
                                        started_at, updated_at)
                 VALUES (?1, ?2, ?3, 'staged', x'', ?4, ?4)",
                params![run.0, credential_row, version, at],
            )?;
            let id = tx.last_insert_rowid();
            let sealed = crypto::seal_secret(&self.data_key, &restore_aad(id), restore_point);
            tx.execute(
                "UPDATE rotations SET restore_point = ?1 WHERE id = ?2",
                params![sealed, id],
            )?;
            self.audit_in(
                tx,
                "stage",
                Some(&cred_text),
                &format!("rotation {id}; run {run}; pending version {version}"),
            )?;
            Ok(RotationId(id))
        })
    }

    fn record_phase(
        &self,
        id: RotationId,
        phase: Phase,
        note: Option<&str>,
    ) -> Result<(), StoreError> {
        if !phase.is_open() {
            return Err(StoreError::PhaseNotRecordable(id.0));
        }
        self.write(|tx| {
            let row = Vault::open_rotation_row(tx, id, "moved to another phase")?;
            Vault::set_phase(tx, id, phase, note, &now())?;
            self.audit_in(
                tx,
                "phase",
                Some(&row.cred),
                &format!("rotation {id}: {} -> {phase}", row.phase),
            )?;
            Ok(())
        })
    }

    fn commit(&self, id: RotationId) -> Result<(), StoreError> {
        self.write(|tx| {
            let at = now();
            let row = Vault::open_rotation_row(tx, id, "committed")?;
            // Order matters for the one-live-state index: free `previous`, then `current`.
            tx.execute(
                "UPDATE versions SET state = 'retired', state_changed_at = ?2
                 WHERE credential_id = ?1 AND state = 'previous'",
                params![row.credential_row, at],
            )?;
            tx.execute(
                "UPDATE versions SET state = 'previous', state_changed_at = ?2
                 WHERE credential_id = ?1 AND state = 'current'",
                params![row.credential_row, at],
            )?;
            tx.execute(
                "UPDATE versions SET state = 'current', state_changed_at = ?2 WHERE id = ?1",
                params![row.version_id, at],
            )?;
            Vault::set_phase(tx, id, Phase::Committed, None, &at)?;
            self.audit_in(
                tx,
                "commit",
                Some(&row.cred),
                &format!("rotation {id}; version {} is current", row.version_id),
            )?;
            Ok(())
        })
    }

    fn roll_back(&self, id: RotationId, reason: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            let at = now();
            let row = Vault::open_rotation_row(tx, id, "rolled back")?;
            tx.execute(
                "UPDATE versions SET state = 'retired', never_current = 1, state_changed_at = ?2
                 WHERE id = ?1",
                params![row.version_id, at],
            )?;
            Vault::set_phase(tx, id, Phase::RolledBack, Some(reason), &at)?;
            let detail = serde_json::json!({ "rotation": id.0, "reason": reason }).to_string();
            self.audit_in(tx, "roll_back", Some(&row.cred), &detail)?;
            Ok(())
        })
    }

    fn mark_stuck(&self, id: RotationId, reason: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            let row = Vault::open_rotation_row(tx, id, "marked stuck")?;
            Vault::set_phase(tx, id, Phase::Stuck, Some(reason), &now())?;
            let detail = serde_json::json!({ "rotation": id.0, "reason": reason }).to_string();
            self.audit_in(tx, "mark_stuck", Some(&row.cred), &detail)?;
            tracing::error!(cred = %row.cred, rotation = id.0, "rotation is stuck, operator needed");
            Ok(())
        })
    }

    fn open_rotations(&self) -> Result<Vec<OpenRotation>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT r.id, c.cred, r.phase, v.id, v.secret, r.restore_point
             FROM rotations r
             JOIN credentials c ON c.id = r.credential_id
             JOIN versions v ON v.id = r.version_id
             WHERE r.phase IN {OPEN_PHASES_SQL}
             ORDER BY r.id"
        ))?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            let cred: String = row.get(1)?;
            let version_id: i64 = row.get(3)?;
            let pending_blob: Vec<u8> = row.get(4)?;
            let restore_blob: Vec<u8> = row.get(5)?;
            out.push(OpenRotation {
                id: RotationId(id),
                cred: parse_cred(&cred)?,
                phase: parse_phase(&row.get::<_, String>(2)?)?,
                pending: self.decrypt_version(&cred, version_id, &pending_blob)?,
                restore_point: self.decrypt_restore_point(id, &restore_blob)?,
            });
        }
        Ok(out)
    }

    fn current(&self, cred: &CredentialId) -> Result<Option<Secret>, StoreError> {
        self.current_in(&self.lock(), &cred.to_string())
    }
}

#[cfg(test)]
pub(super) mod test_support {
    pub const OPEN_PHASES_SQL: &str = super::OPEN_PHASES_SQL;
}

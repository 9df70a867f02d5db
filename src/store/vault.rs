//! `Vault`: the SQLite vault behind one mutex-guarded connection. It implements the engine's
//! [`Store`] trait (staging, phases, commit, roll-back, recovery listing, leases, the lockout
//! budget) and the queries the CLI needs (`enroll`, `show`, `status`, `rotations_of_run`, the
//! audit log).
//!
//! Leases: a credential's lease is one row (holder, token, ttl, expiry), taken in a
//! `BEGIN IMMEDIATE` transaction, so two processes on the same file cannot both get it. Every
//! write to a rotation first checks, in its own transaction, that the rotation's token is still
//! the credential's current unexpired lease (and renews it); a process that stalled past its
//! lease therefore cannot overwrite the work of the one that took over. All times come from
//! the vault's injected clock ([`crate::clock::Clock`]; `with_clock`), and every nonce and
//! key from its injected entropy.
//!
//! It never writes a plaintext secret to the database (every secret goes through
//! [`super::crypto`] first), never logs or returns a secret except through [`Secret`], and
//! every state change runs in one `BEGIN IMMEDIATE` transaction that has committed when
//! the method returns: fsynced (synchronous=FULL) for `write`, and for `write_lazy` only on
//! the next durable write or checkpoint (writes that recovery repairs if power loss drops them).
//! Once a transaction that appended audit entries has committed (never before), its new head
//! goes to the system log ([`super::syslog`]).

use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};
use serde::Serialize;

use super::audit::{self, Event};
use super::crypto::{self, KeyBytes};
use super::keys::KeySource;
use super::schema::CachedSql;
use super::{StoreError, files, schema, syslog};
use crate::clock::{Clock, Entropy, OsEntropy, SystemClock};
use crate::credential::CredentialId;
use crate::engine::ledger::{
    Actor, Grants, Leases, Ledger, LoginBudget, Runs, Secrets, StoreFailure,
};
use crate::engine::{Lease, LeaseHeld, OpenRotation, Phase, RotationId, RunId, UnreadableRotation};
use crate::secret::Secret;

mod checkout;
mod daemon;
mod tokens;
pub use checkout::{CheckoutRecord, NewCheckout, Shown};
pub use daemon::Leader;
pub use tokens::{MAX_TOKEN_TTL, Principal, Role, TokenRecord};

/// The database file inside the data directory.
pub const DB_FILE: &str = "rotor.db";

const DATA_KEY_AAD: &[u8] = b"rotor/v1/meta/data_key";
const HMAC_KEY_AAD: &[u8] = b"rotor/v1/meta/hmac_key";

/// SQL list of the phases in which a rotation is open (kept equal to `Phase::is_open`; a test
/// checks it).
const OPEN_PHASES_SQL: &str = "('staged', 'applied', 'verified', 'retiring', 'rolling_back')";

/// A lease token this handle was granted. `closed_rotation`: closing that rotation ended the
/// lease (its row is gone); the entry stays until the holder's `release_lease`, so that the
/// holder is told "not open" rather than "lost the lease" for a rotation it closed itself.
#[derive(Clone, Copy, PartialEq)]
struct HeldLease {
    token: i64,
    closed_rotation: Option<i64>,
}

/// The encrypted vault. Shared by reference across host workers (`Sync`).
pub struct Vault {
    conn: Mutex<Connection>,
    data_dir: PathBuf,
    data_key: KeyBytes,
    hmac_key: KeyBytes,
    actor: String,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    /// The lease tokens this handle was granted and has not given back, by credential. The
    /// rotation writes (`record_phase`, `commit`, ...) carry no lease, so this is how the
    /// fence knows the caller's token: without it, a stalled process could write a rotation
    /// that another process has adopted (its row then carries the new holder's token).
    held: Mutex<HashMap<String, HeldLease>>,
    /// Where committed audit heads are sent (the system log).
    heads: syslog::HeadLog,
    /// The head the transaction in progress appended, announced once it has committed.
    appended: Mutex<Option<audit::Head>>,
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
    /// The stuck rotation this enrolment settled, if the credential had one: the operator
    /// has told rotor the account's password, so the stuck pending secret is retired.
    pub settled_stuck: Option<RotationId>,
}

/// A credential's current secret and since when it is current (an escrow export's rows).
pub type CurrentSecret = (CredentialId, Secret, Option<DateTime<Utc>>);

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
    /// Why the credential is parked (lockout budget spent), if it is.
    pub parked: Option<String>,
    /// Who holds the credential's lease, if someone does and it has not expired.
    pub lease_holder: Option<String>,
    /// When the current secret became current through a rotation that proved it (committed,
    /// retiring or retired); `None` for a secret that was enrolled, or none at all.
    #[serde(skip)]
    pub rotated_at: Option<DateTime<Utc>>,
    /// The last heartbeat (`rotor verify`) that logged in with a current secret of the
    /// credential (perhaps an earlier one: compare with `current_since`).
    #[serde(skip)]
    pub heartbeat_at: Option<DateTime<Utc>>,
}

/// One run of the ledger (a `rotate` request: the CLI's, the API's, the daemon's, a
/// checkout's end).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    pub id: RunId,
    pub started_at: DateTime<Utc>,
    /// `None` while it runs, or when rotor was killed before it recorded the end.
    pub ended_at: Option<DateTime<Utc>>,
    pub reason: String,
    /// The scopes as written (or a retry's label).
    pub scope: String,
    /// What `end_run` recorded (JSON: the counts, and since schema 10's rotor what
    /// `ops::rotate` adds: the origin and the credentials not committed).
    #[serde(skip)]
    pub summary: Option<String>,
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
    /// The fencing token the rotation was staged or adopted with (`None`: staged before
    /// schema version 2, never adopted).
    lease_token: Option<i64>,
}

/// A credential's lease row.
struct LeaseRow {
    token: i64,
    holder: String,
    owner_host: String,
    owner_pid: u32,
    ttl_ms: i64,
    expires_at: DateTime<Utc>,
}

impl LeaseRow {
    /// The lease is held by a process on this machine that no longer exists (killed, crashed,
    /// or the machine rebooted since): nobody can renew it, so waiting for its ttl would only
    /// delay recovery.
    ///
    /// Judged only where the pid means the same process: the same machine name *and* the same
    /// PID namespace (two containers sharing a hostname do not share pids). The holder is gone
    /// when the machine booted again since the lease was taken (another boot id), when no
    /// process has that pid, or when the pid now belongs to a process started at another time
    /// (a reused pid). A `/proc/PID` that exists but cannot be read (`hidepid`, a security
    /// module) says nothing: that holder is taken to be alive.
    fn holder_is_gone(&self) -> bool {
        self.holder_is_gone_on(&Machine::this())
    }

    fn holder_is_gone_on(&self, here: &Machine) -> bool {
        let owner = Owner::parse(&self.owner_host);
        let Some(owner) = owner else {
            return false;
        };
        if self.owner_pid == 0 || owner.machine != here.name {
            return false;
        }
        // Another boot: whatever has that pid now, even this very process, is not the holder.
        if let (Some(then), Some(now)) = (owner.boot_id, here.boot_id.as_deref())
            && then != now
        {
            return true;
        }
        if self.owner_pid == here.pid {
            // This process, or an earlier one that had its pid: told apart by start time.
            return match (here.process_start)(here.pid) {
                ProcessStart::At(now) => now != owner.started,
                _ => false,
            };
        }
        match (here.process_start)(self.owner_pid) {
            ProcessStart::Gone => true,
            ProcessStart::Unknown => false,
            ProcessStart::At(now) => now != owner.started,
        }
    }
}

/// How a lease names the process that holds it: `MACHINE#START[#BOOT_ID]` (leases written
/// before the boot id was recorded have none).
struct Owner<'a> {
    machine: &'a str,
    started: &'a str,
    boot_id: Option<&'a str>,
}

impl<'a> Owner<'a> {
    fn parse(text: &'a str) -> Option<Owner<'a>> {
        let mut parts = text.splitn(3, '#');
        Some(Owner {
            machine: parts.next()?,
            started: parts.next()?,
            boot_id: parts.next(),
        })
    }
}

/// What [`LeaseRow::holder_is_gone_on`] knows of the machine it runs on (a value, so tests
/// can describe another boot or an unreadable `/proc`).
struct Machine {
    name: String,
    boot_id: Option<String>,
    pid: u32,
    process_start: fn(u32) -> ProcessStart,
}

impl Machine {
    fn this() -> Machine {
        Machine {
            name: this_machine(),
            boot_id: boot_id(),
            pid: std::process::id(),
            process_start,
        }
    }
}

/// Where pids mean the same processes: the machine's name and this PID namespace.
fn this_machine() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let pid_ns = std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    format!("{host} {pid_ns}")
}

/// The kernel's id of this boot: a pid recorded under another boot id names no live process.
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty() && !id.contains('#'))
}

/// What `/proc/PID/stat` says of a process's start.
#[derive(Debug, PartialEq, Eq)]
enum ProcessStart {
    /// Clock ticks since boot (field 22), which with the pid identifies the process.
    At(String),
    /// No such process.
    Gone,
    /// The file exists but could not be read or understood: nothing is known.
    Unknown,
}

/// Whether a process exists is asked of the kernel (`kill(pid, 0)`: only "no such process"
/// means gone), not read from `/proc`: with `hidepid`, `/proc/PID` of another user's process,
/// or of a rotor that made itself non-dumpable, is simply absent.
fn process_start(pid: u32) -> ProcessStart {
    let Some(process) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return ProcessStart::Unknown;
    };
    if rustix::process::test_kill_process(process) == Err(rustix::io::Errno::SRCH) {
        return ProcessStart::Gone;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => parse_process_start(&stat).map_or(ProcessStart::Unknown, ProcessStart::At),
        Err(_) => ProcessStart::Unknown,
    }
}

fn parse_process_start(stat: &str) -> Option<String> {
    // The command name (field 2) is in parentheses and may contain spaces: count after it.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(19).map(str::to_owned)
}

/// How a lease names its holding process, for `holder_is_gone`.
fn this_process_owner() -> String {
    let started = match process_start(std::process::id()) {
        ProcessStart::At(at) => at,
        _ => String::new(),
    };
    let mut owner = format!("{}#{started}", this_machine());
    if let Some(boot) = boot_id() {
        owner.push('#');
        owner.push_str(&boot);
    }
    owner
}

/// How times are written: RFC 3339 in UTC with microseconds.
fn time_text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The longest lease the vault grants; a longer ttl is cut to this. A lease exists to be
/// renewed by a live process, and a week-long lease left by a dead one would block recovery
/// for that long.
const MAX_LEASE_TTL: TimeDelta = TimeDelta::days(1);

fn lease_ttl(ttl: std::time::Duration) -> TimeDelta {
    TimeDelta::from_std(ttl)
        .unwrap_or(MAX_LEASE_TTL)
        .min(MAX_LEASE_TTL)
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

/// Associated data of a rotation's restore point: the credential, the rotation and its
/// pending version (`rotations.restore_aad` = 2). Rows sealed by rotor before schema 4 name
/// only the rotation (1).
fn restore_aad(scheme: i64, cred: &str, rotation_id: i64, version_id: i64) -> Vec<u8> {
    match scheme {
        1 => format!("rotor/v1/restore/{rotation_id}").into_bytes(),
        _ => format!("rotor/v2/restore/{cred}/{rotation_id}/{version_id}").into_bytes(),
    }
}

/// The scheme new restore points are sealed with (see [`restore_aad`]).
const RESTORE_AAD_SCHEME: i64 = 2;

fn open_connection(db: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    // SQLite's "unable to open database file" names no file: name it. (The usual causes, a
    // read-only filesystem or a denied permission, are caught before with their fix.)
    let cannot_open = |err: rusqlite::Error| match &err {
        rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::CannotOpen => {
            StoreError::io(
                db,
                "open the vault database",
                std::io::Error::other(err.to_string()),
            )
        }
        _ => StoreError::from(err),
    };
    let conn = Connection::open_with_flags(db, flags).map_err(cannot_open)?;
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
        Vault::init_at_schema(data_dir, source, schema::SCHEMA_VERSION)
    }

    /// `init` with the schema brought only to `schema_version` (tests build old vaults to
    /// check the migrations).
    fn init_at_schema(
        data_dir: &Path,
        source: KeySource,
        schema_version: i64,
    ) -> Result<Vault, StoreError> {
        let db = Vault::db_path(data_dir);
        // `symlink_metadata`: a dangling link named rotor.db is "something there" too.
        if std::fs::symlink_metadata(&db).is_ok() {
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
        // A directory that already existed must be ours; if others could write it, it is
        // closed now, before anything is put in it. Then nothing may be waiting there for
        // SQLite to pick up (a planted WAL file, or a link in its place).
        files::tighten_data_dir(data_dir)?;
        for suffix in files::DB_SIDE_SUFFIXES {
            let side = files::side_file(&db, suffix);
            if std::fs::symlink_metadata(&side).is_ok() {
                return Err(StoreError::StrayFile(side));
            }
        }
        if let KeySource::File(key) = &source {
            files::check_containing_dirs(key)?;
        }
        files::check_writable(data_dir)?;
        let entropy: Arc<dyn Entropy> = Arc::new(OsEntropy);
        let master = source.create(&mut *entropy.rng())?;
        let mut conn = open_connection(
            &db,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // Only the owner may read the database (its WAL and shm files inherit the mode), even
        // in a data directory someone created with looser permissions.
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600))
            .map_err(|err| StoreError::io(&db, "set the mode of", err))?;
        schema::migrate_to(&mut conn, schema_version)?;
        let (data_key, hmac_key) = (
            KeyBytes::random(&mut *entropy.rng()),
            KeyBytes::random(&mut *entropy.rng()),
        );
        let vault = Vault {
            conn: Mutex::new(conn),
            data_dir: data_dir.to_owned(),
            data_key,
            hmac_key,
            actor: default_actor(),
            clock: Arc::new(SystemClock),
            entropy,
            held: Mutex::default(),
            heads: syslog::HeadLog::from_env(data_dir),
            appended: Mutex::default(),
        };
        vault.write(|tx| {
            for (name, aad, key) in [
                ("data_key", DATA_KEY_AAD, &vault.data_key),
                ("hmac_key", HMAC_KEY_AAD, &vault.hmac_key),
            ] {
                tx.exec(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                    params![
                        name,
                        crypto::wrap_key(&master, aad, key, &mut *vault.entropy.rng())
                    ],
                )?;
            }
            vault.audit_in(
                tx,
                &Event::Init {
                    master_key: source.describe(),
                },
                None,
            )?;
            Ok(())
        })?;
        tracing::info!(data_dir = %data_dir.display(), "created a new vault");
        Ok(vault)
    }

    /// Opens an existing vault with its master key.
    pub fn open(data_dir: &Path, source: KeySource) -> Result<Vault, StoreError> {
        let db = Vault::db_path(data_dir);
        if !data_dir.exists() {
            return Err(StoreError::Missing(data_dir.to_owned()));
        }
        // The directory first: once only we can write it, its files cannot be swapped
        // between these checks and SQLite's open (see `files`).
        files::check_data_dir(data_dir)?;
        if files::check_file("database", &db)?.is_none() {
            return Err(StoreError::Missing(data_dir.to_owned()));
        }
        files::check_db_files(&db)?;
        let master = source.load()?;
        files::check_writable(data_dir)?;
        files::check_writable(&db)?;
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
                .row("SELECT value FROM meta WHERE key = ?1", [name], |row| {
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
            clock: Arc::new(SystemClock),
            entropy: Arc::new(OsEntropy),
            held: Mutex::default(),
            heads: syslog::HeadLog::from_env(data_dir),
            appended: Mutex::default(),
        })
    }

    /// Names who acts in audit entries of this handle's own operations from now on (default:
    /// the OS user of the real uid, `SUDO_USER` beside it as claimed). The engine's port
    /// names the actor with each call instead.
    pub fn with_actor(mut self, actor: impl Into<String>) -> Vault {
        self.actor = actor.into();
        self
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Reads the time from `clock` from now on: leases, their fence and audit entries
    /// (the operation's context passes its clock; tests pass one they move).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Vault {
        self.clock = clock;
        self
    }

    /// Draws nonces from `entropy` from now on.
    pub fn with_entropy(mut self, entropy: Arc<dyn Entropy>) -> Vault {
        self.entropy = entropy;
        self
    }

    /// As [`Vault::with_clock`], in place.
    pub fn set_clock(&mut self, clock: Arc<dyn Clock>) {
        self.clock = clock;
    }

    /// The token this handle holds for the credential, if any (and it is still live).
    pub(super) fn held_token(&self, cred: &str) -> Option<i64> {
        self.held_lease(cred)
            .filter(|h| h.closed_rotation.is_none())
            .map(|h| h.token)
    }

    fn held_lease(&self, cred: &str) -> Option<HeldLease> {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(cred)
            .copied()
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn now_text(&self) -> String {
        time_text(self.now())
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held dropped its rusqlite Transaction, which rolls back;
        // the connection is therefore consistent and safe to keep using.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction and commits it.
    /// A write that is on disk when it returns (synchronous=FULL: the WAL is fsynced at
    /// commit). For what must survive power loss the moment it returns: the staged secret
    /// (invariant 1), enrolled secrets, audited secret reads, operator decisions.
    pub(super) fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        // Set here, not only restored by `write_lazy`: should that restore ever have failed,
        // this write is still durable.
        conn.exec("PRAGMA synchronous = FULL", [])?;
        self.commit_announcing(&mut conn, f)
    }

    /// A write that survives a crash of rotor at once, and power loss once the next durable
    /// write or checkpoint fsyncs the WAL (synchronous=NORMAL). Only for writes whose loss
    /// recovery repairs by itself: phase records, commits and rollbacks of rotations (the
    /// rotation is then found open again and settled by probing), leases, login counters.
    /// Skipping their fsync is what lets thousands of directory accounts rotate per minute.
    pub(super) fn write_lazy<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        conn.exec("PRAGMA synchronous = NORMAL", [])?;
        let result = self.commit_announcing(&mut conn, f);
        // Every other write is durable: put FULL back whatever happened.
        conn.exec("PRAGMA synchronous = FULL", [])?;
        result
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction, commits it, and only then sends the
    /// audit head it appended (if any) to the system log: a transaction that rolls back
    /// announces nothing. Sent under the connection lock, so heads leave in `seq` order.
    fn commit_announcing<T>(
        &self,
        conn: &mut Connection,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx);
        let appended = self
            .appended
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let value = value?;
        tx.commit()?;
        if let Some(head) = appended {
            self.heads.announce(&head, self.now());
        }
        Ok(value)
    }

    fn audit_in(
        &self,
        conn: &Connection,
        event: &Event,
        cred: Option<&str>,
    ) -> Result<i64, StoreError> {
        self.audit_as(&self.actor, conn, event, cred)
    }

    /// [`Vault::audit_in`] for the actor a call names.
    fn audit_as(
        &self,
        by: &str,
        conn: &Connection,
        event: &Event,
        cred: Option<&str>,
    ) -> Result<i64, StoreError> {
        let head = audit::append(conn, &self.hmac_key, &self.now_text(), by, event, cred)?;
        let seq = head.seq;
        *self.appended.lock().unwrap_or_else(PoisonError::into_inner) = Some(head);
        Ok(seq)
    }

    /// Appends `event` (about `cred`, if it concerns one) to the audit log in the caller's
    /// transaction, which must be one of [`Vault::write`] or [`Vault::write_lazy`] (they send
    /// the new head to the system log once it has committed). Returns the entry's `seq`.
    pub(crate) fn audit_append_in(
        &self,
        by: &Actor,
        tx: &Connection,
        event: &Event,
        cred: Option<&str>,
    ) -> Result<i64, StoreError> {
        self.audit_as(by.as_str(), tx, event, cred)
    }

    /// Appends `event` to the audit log in a transaction of its own (durable when it
    /// returns; its head sent to the system log). Returns the entry's `seq`.
    pub fn audit_append(
        &self,
        by: &Actor,
        event: &Event,
        cred: Option<&CredentialId>,
    ) -> Result<i64, StoreError> {
        let cred = cred.map(ToString::to_string);
        self.write(|tx| self.audit_append_in(by, tx, event, cred.as_deref()))
    }

    /// [`Vault::audit_append`] without the fsync: for records whose loss in a power cut costs
    /// no credential (an API call's record), so that every call can be recorded.
    pub fn audit_append_lazy(
        &self,
        by: &Actor,
        event: &Event,
        cred: Option<&CredentialId>,
    ) -> Result<i64, StoreError> {
        let cred = cred.map(ToString::to_string);
        self.write_lazy(|tx| self.audit_append_in(by, tx, event, cred.as_deref()))
    }

    /// Verifies the whole audit chain; returns its length and head.
    pub fn audit_verify(&self) -> Result<audit::Verified, StoreError> {
        audit::verify(&self.lock(), &self.hmac_key)
    }

    /// Verifies the chain, then checks heads recorded elsewhere against it (read from
    /// `source`, named in errors), in one read transaction.
    pub fn audit_verify_heads(
        &self,
        heads: &[audit::RecordedHead],
        source: &str,
    ) -> Result<audit::Verified, StoreError> {
        let conn = self.lock();
        let tx = conn.unchecked_transaction()?;
        let verified = audit::verify(&tx, &self.hmac_key)?;
        audit::check_heads(&tx, &verified, heads, source)?;
        Ok(verified)
    }

    /// The entries of the audit log that `filter` selects, in order.
    pub fn audit_log(&self, filter: &audit::Filter) -> Result<Vec<audit::Record>, StoreError> {
        audit::log(&self.lock(), filter)
    }

    fn credential_row(conn: &Connection, cred: &str) -> Result<Option<i64>, StoreError> {
        Ok(conn
            .row(
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
        conn.exec(
            "INSERT INTO credentials (cred, created_at) VALUES (?1, ?2)",
            params![cred, at],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// The credential's parking reason, if it is parked.
    fn parked_in(conn: &Connection, credential_row: i64) -> Result<Option<String>, StoreError> {
        Ok(conn.row(
            "SELECT parked_reason FROM credentials WHERE id = ?1",
            [credential_row],
            |row| row.get(0),
        )?)
    }

    /// The open rotation of a credential, if any.
    fn open_rotation_of(conn: &Connection, credential_row: i64) -> Result<Option<i64>, StoreError> {
        Ok(conn
            .row(
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
        conn.exec(
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
        let sealed = crypto::seal_secret(
            &self.data_key,
            &version_aad(cred, id),
            secret,
            &mut *self.entropy.rng(),
        );
        conn.exec(
            "UPDATE versions SET secret = ?1 WHERE id = ?2",
            params![sealed, id],
        )?;
        Ok(id)
    }

    fn decrypt_version(&self, cred: &str, id: i64, blob: &[u8]) -> Result<Secret, StoreError> {
        crypto::open_secret(&self.data_key, &version_aad(cred, id), blob)
            .map_err(|_| StoreError::Integrity(format!("secret version {id} of {cred}")))
    }

    fn decrypt_restore_point(
        &self,
        scheme: i64,
        cred: &str,
        id: i64,
        version_id: i64,
        blob: &[u8],
    ) -> Result<Secret, StoreError> {
        crypto::open_secret(
            &self.data_key,
            &restore_aad(scheme, cred, id, version_id),
            blob,
        )
        .map_err(|_| {
            StoreError::Integrity(format!(
                "restore point of rotation {id} (credential {cred}, version {version_id})"
            ))
        })
    }

    fn current_in(&self, conn: &Connection, cred: &str) -> Result<Option<Secret>, StoreError> {
        let row: Option<(i64, Vec<u8>)> = conn
            .row(
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
            let at = self.now_text();
            let credential_row = Vault::ensure_credential(tx, &cred_text, &at)?;
            if let Some(open) = Vault::open_rotation_of(tx, credential_row)? {
                return Err(StoreError::RotationOpen(cred_text.clone(), open));
            }
            // A stuck rotation keeps its pending secret for an operator; enrolling is the
            // operator saying what the account's password is now, which settles it.
            let stuck: Option<(i64, i64)> = tx
                .row(
                    "SELECT r.id, v.id FROM versions v JOIN rotations r ON r.version_id = v.id
                     WHERE v.credential_id = ?1 AND v.state = 'pending'
                       AND r.credential_id = ?1 AND r.phase = 'stuck'",
                    [credential_row],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            if let Some((rotation, version)) = stuck {
                tx.exec(
                    "UPDATE versions SET state = 'retired', never_current = 1, state_changed_at = ?2
                     WHERE id = ?1",
                    params![version, at],
                )?;
                // Closed as rolled back: the new secret never took, and the account's
                // password is now the one enrolled (`status` no longer calls it stuck).
                Vault::set_phase(
                    tx,
                    RotationId(rotation),
                    Phase::RolledBack,
                    Some("settled by an operator: `rotor enroll` stored the account's password"),
                    &at,
                )?;
                self.audit_in(
                    tx,
                    &Event::SettleStuck {
                        rotation: RotationId(rotation),
                    },
                    Some(&cred_text),
                )?;
            }
            let shared_with: i64 = tx.row(
                "SELECT COUNT(DISTINCT credential_id) FROM versions
                 WHERE fingerprint = ?1 AND credential_id != ?2
                   AND state IN ('current', 'pending')",
                params![fingerprint, credential_row],
                |row| row.get(0),
            )?;
            tx.exec(
                "UPDATE versions SET state = 'retired', state_changed_at = ?2
                 WHERE credential_id = ?1 AND state = 'previous'",
                params![credential_row, at],
            )?;
            let replaced_current = tx.exec(
                "UPDATE versions SET state = 'previous', state_changed_at = ?2
                 WHERE credential_id = ?1 AND state = 'current'",
                params![credential_row, at],
            )? == 1;
            let version =
                self.insert_version(tx, credential_row, &cred_text, "current", secret, &at)?;
            self.audit_in(
                tx,
                &Event::Enroll {
                    version,
                    shared_with,
                },
                Some(&cred_text),
            )?;
            Ok(EnrollOutcome {
                shared_with: usize::try_from(shared_with)
                    .map_err(|_| StoreError::Corrupt("negative count".into()))?,
                replaced_current,
                settled_stuck: stuck.map(|(rotation, _)| RotationId(rotation)),
            })
        })
    }

    /// Every current secret of a credential `keep` accepts, with the time it became current,
    /// for an escrow export, in one audited read (`export`, with the recipient `to` and the
    /// `scope` as written: never a secret). The caller encrypts them before anything reaches
    /// a disk.
    pub fn export_current(
        &self,
        by: &str,
        to: &str,
        scope: Option<&str>,
        keep: &dyn Fn(&CredentialId) -> bool,
    ) -> Result<Vec<CurrentSecret>, StoreError> {
        self.write(|tx| {
            // One pass over the current versions, read and audited in one transaction.
            let mut stmt = tx.prepare(
                "SELECT c.cred, v.id, v.secret, v.state_changed_at
                 FROM versions v JOIN credentials c ON c.id = v.credential_id
                 WHERE v.state = 'current' ORDER BY c.cred",
            )?;
            let mut rows = stmt.query([])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let (cred, id, blob, since): (String, i64, Vec<u8>, Option<String>) =
                    (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
                let parsed = parse_cred(&cred)?;
                if !keep(&parsed) {
                    continue;
                }
                let secret = self.decrypt_version(&cred, id, &blob)?;
                let since = since.as_deref().map(parse_time).transpose()?;
                out.push((parsed, secret, since));
            }
            drop(rows);
            drop(stmt);
            let event = Event::Export {
                n_credentials: out.len(),
                to: to.to_owned(),
                scope: scope.map(str::to_owned),
            };
            self.audit_as(by, tx, &event, None)?;
            Ok(out)
        })
    }

    pub fn show(&self, cred: &CredentialId, reason: &str) -> Result<Option<Secret>, StoreError> {
        let cred_text = cred.to_string();
        self.write(|tx| {
            let secret = self.current_in(tx, &cred_text)?;
            let event = Event::Show {
                reason: reason.to_owned(),
                found: secret.is_some(),
            };
            self.audit_in(tx, &event, Some(&cred_text))?;
            Ok(secret)
        })
    }

    /// The restore points the credential's rotations saved, newest first (rotation, phase,
    /// when it started, the point): what `rotor show --removed-keys` reads the lines a breach
    /// run removed from. Audited like a `show`, with `reason`.
    pub fn restore_points(
        &self,
        cred: &CredentialId,
        reason: &str,
    ) -> Result<Vec<(RotationId, Phase, String, Secret)>, StoreError> {
        let cred_text = cred.to_string();
        self.write(|tx| {
            let mut stmt = tx.prepare(
                "SELECT r.id, r.phase, r.started_at, r.version_id, r.restore_point, r.restore_aad
                 FROM rotations r JOIN credentials c ON c.id = r.credential_id
                 WHERE c.cred = ?1 ORDER BY r.id DESC",
            )?;
            // One row as read, before its point is opened.
            struct Row {
                id: i64,
                phase: String,
                started: String,
                version_id: Option<i64>,
                blob: Vec<u8>,
                scheme: i64,
            }
            let rows: Vec<Row> = stmt
                .query_map([&cred_text], |row| {
                    Ok(Row {
                        id: row.get(0)?,
                        phase: row.get(1)?,
                        started: row.get(2)?,
                        version_id: row.get(3)?,
                        blob: row.get(4)?,
                        scheme: row.get(5)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            drop(stmt);
            let mut out = Vec::new();
            for r in rows {
                let Some(version_id) = r.version_id else {
                    continue;
                };
                let point =
                    self.decrypt_restore_point(r.scheme, &cred_text, r.id, version_id, &r.blob)?;
                out.push((RotationId(r.id), parse_phase(&r.phase)?, r.started, point));
            }
            let event = Event::Show {
                reason: format!("restore points (removed keys): {reason}"),
                found: !out.is_empty(),
            };
            self.audit_in(tx, &event, Some(&cred_text))?;
            Ok(out)
        })
    }

    /// An operator asks rotor to try a stuck rotation again (`rotor recover --cred`): its
    /// phase goes back to `rolling_back`, so recovery settles it like any interrupted one
    /// (check the target, probe the pending secret, restore the saved state). Both secrets
    /// were kept while it was stuck. Returns whether there was a stuck rotation. Audited.
    pub fn reopen_stuck(&self, cred: &CredentialId) -> Result<bool, StoreError> {
        self.reopen_stuck_as(&self.actor, cred)
    }

    /// [`Vault::reopen_stuck`] for the actor a request names.
    pub fn reopen_stuck_as(&self, by: &str, cred: &CredentialId) -> Result<bool, StoreError> {
        let cred_text = cred.to_string();
        self.write(|tx| {
            let Some(credential_row) = Vault::credential_row(tx, &cred_text)? else {
                return Ok(false);
            };
            let stuck: Option<i64> = tx
                .row(
                    "SELECT id FROM rotations WHERE credential_id = ?1 AND phase = 'stuck'
                     ORDER BY id DESC LIMIT 1",
                    [credential_row],
                    |row| row.get(0),
                )
                .optional()?;
            let Some(id) = stuck else {
                return Ok(false);
            };
            Vault::set_phase(
                tx,
                RotationId(id),
                Phase::RollingBack,
                Some("reopened by an operator"),
                &self.now_text(),
            )?;
            let event = Event::ReopenStuck {
                rotation: RotationId(id),
            };
            self.audit_as(by, tx, &event, Some(&cred_text))?;
            Ok(true)
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
                    r.id, r.phase, r.updated_at, r.note,
                    c.parked_reason, l.holder, l.expires_at, l.owner_host, l.owner_pid,
                    EXISTS (SELECT 1 FROM versions v JOIN rotations r2 ON r2.version_id = v.id
                             WHERE v.credential_id = c.id AND v.state = 'current'
                               AND r2.phase IN ('committed', 'retiring', 'retired')),
                    c.heartbeat_at
             FROM credentials c
             LEFT JOIN rotations r
               ON r.id = (SELECT MAX(id) FROM rotations WHERE credential_id = c.id)
             LEFT JOIN leases l ON l.credential_id = c.id
             ORDER BY c.cred",
        )?;
        let now = self.now();
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
            let lease_holder = match (
                row.get::<_, Option<String>>(8)?,
                row.get::<_, Option<String>>(9)?,
            ) {
                (Some(holder), Some(expires_at)) => {
                    let lease = LeaseRow {
                        token: 0,
                        expires_at: parse_time(&expires_at)?,
                        owner_host: row.get::<_, Option<String>>(10)?.unwrap_or_default(),
                        owner_pid: row.get::<_, Option<u32>>(11)?.unwrap_or_default(),
                        ttl_ms: 0,
                        holder,
                    };
                    // A lease of a dead process holds nothing: recovery takes it at once.
                    (lease.expires_at > now && !lease.holder_is_gone()).then_some(lease.holder)
                }
                _ => None,
            };
            let current_since = current_since.as_deref().map(parse_time).transpose()?;
            let rotated: bool = row.get(12)?;
            let heartbeat_at: Option<String> = row.get(13)?;
            out.push(CredentialStatus {
                rotated_at: current_since.filter(|_| rotated),
                heartbeat_at: heartbeat_at.as_deref().map(parse_time).transpose()?,
                parked: row.get(7)?,
                lease_holder,
                cred: parse_cred(&cred)?,
                has_current: current_since.is_some(),
                current_since,
                has_pending,
                // Stage refuses while a rotation is open, so an open rotation is always the
                // credential's latest one.
                open_rotation: last_rotation.as_ref().is_some_and(|r| r.phase.is_open()),
                last_rotation,
            });
        }
        Ok(out)
    }

    /// The latest `limit` runs, the most recent first.
    pub fn runs(&self, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, started_at, ended_at, reason, scope, summary FROM runs
             ORDER BY id DESC LIMIT ?1",
        )?;
        let mut rows = stmt.query([i64::try_from(limit).unwrap_or(i64::MAX)])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(Vault::run_record(row)?);
        }
        Ok(out)
    }

    /// One run by its number.
    pub fn run(&self, id: RunId) -> Result<Option<RunRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, started_at, ended_at, reason, scope, summary FROM runs WHERE id = ?1",
        )?;
        let mut rows = stmt.query([id.0])?;
        rows.next()?.map(Vault::run_record).transpose()
    }

    fn run_record(row: &rusqlite::Row<'_>) -> Result<RunRecord, StoreError> {
        Ok(RunRecord {
            id: RunId(row.get(0)?),
            started_at: parse_time(&row.get::<_, String>(1)?)?,
            ended_at: row
                .get::<_, Option<String>>(2)?
                .as_deref()
                .map(parse_time)
                .transpose()?,
            reason: row.get(3)?,
            scope: row.get(4)?,
            summary: row.get(5)?,
        })
    }

    /// Records heartbeats that logged in with each credential's current secret, at the
    /// times given, in one lazy transaction (a lost one is only an older "last verified").
    /// Credentials the vault does not know are ignored. Not audited (see schema 10).
    pub fn record_heartbeats(
        &self,
        worked: &[(CredentialId, DateTime<Utc>)],
    ) -> Result<(), StoreError> {
        if worked.is_empty() {
            return Ok(());
        }
        self.write_lazy(|tx| {
            for (cred, at) in worked {
                tx.exec(
                    "UPDATE credentials SET heartbeat_at = ?2 WHERE cred = ?1",
                    params![cred.to_string(), time_text(*at)],
                )?;
            }
            Ok(())
        })
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
        let row: Option<(i64, String, i64, String, Option<i64>)> = conn
            .row(
                "SELECT r.credential_id, c.cred, r.version_id, r.phase, r.lease_token
                 FROM rotations r JOIN credentials c ON c.id = r.credential_id
                 WHERE r.id = ?1",
                [id.0],
                |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                    ))
                },
            )
            .optional()?;
        let (credential_row, cred, version_id, phase, lease_token) =
            row.ok_or(StoreError::UnknownRotation(id.0))?;
        Ok(RotationRow {
            credential_row,
            cred,
            version_id,
            phase: parse_phase(&phase)?,
            lease_token,
        })
    }

    /// The rotation, for a write by the process holding its lease. A rotation this handle
    /// closed itself is refused as closed. Any other is fenced first (so a stale process
    /// learns that it lost the lease rather than some consequence of the new holder's work):
    /// the rotation must carry a token, this handle must hold that token, and it must be the
    /// credential's current unexpired lease ([`Vault::fence`], which also renews it). Then the
    /// rotation must be open to be `wanted` (a verb for the message).
    fn fenced_rotation_row(
        &self,
        conn: &Connection,
        id: RotationId,
        mine: Option<Lease>,
        wanted: &'static str,
    ) -> Result<RotationRow, StoreError> {
        let row = Vault::rotation_row(conn, id)?;
        // Closing a rotation gave its lease back: its holder, writing it again, is told that
        // it is closed, not that the lease is gone.
        let closed_by_me = match mine {
            Some(lease) => row.lease_token == Some(lease.token) && !row.phase.is_open(),
            None => self
                .held_lease(&row.cred)
                .is_some_and(|h| h.closed_rotation == Some(id.0)),
        };
        if closed_by_me {
            Vault::check_open(conn, id, &row, wanted)?;
        }
        let lost = |why: String| StoreError::LeaseLost {
            cred: row.cred.clone(),
            why,
        };
        let Some(token) = row.lease_token else {
            return Err(lost(format!(
                "rotation {id} carries no lease token: it was staged by an older rotor, and recovery must adopt it first"
            )));
        };
        // The lease the caller names; without one (the handle's own operations), the one
        // this handle was granted.
        let Some(mine) = mine.map(|l| l.token).or_else(|| self.held_token(&row.cred)) else {
            return Err(lost(
                "this process holds no lease on it, or gave it back".into(),
            ));
        };
        self.fence(conn, row.credential_row, &row.cred, mine)?;
        if token != mine {
            return Err(lost(format!(
                "rotation {id} is fenced by lease token {token}, not by this process's token {mine}; {}",
                if token > mine {
                    "another process adopted it"
                } else {
                    "adopt it first"
                }
            )));
        }
        Vault::check_open(conn, id, &row, wanted)?;
        Ok(row)
    }

    /// Fails unless the rotation is open, with its pending version in place.
    fn check_open(
        conn: &Connection,
        id: RotationId,
        row: &RotationRow,
        wanted: &'static str,
    ) -> Result<(), StoreError> {
        if !row.phase.is_open() {
            return Err(StoreError::NotOpen {
                id: id.0,
                phase: row.phase.to_string(),
                wanted,
            });
        }
        let pending: Option<String> = conn
            .row(
                "SELECT state FROM versions WHERE id = ?1",
                [row.version_id],
                |r| r.get(0),
            )
            .optional()?;
        // A retiring rotation was committed: its version is current by now, and only the
        // writes that finish it are allowed (the fence before retiring, recovery adopting
        // it, closing it); a rollback or a second commit would undo a commit.
        let expected = if row.phase == Phase::Retiring {
            if !matches!(wanted, "written to the target" | "adopted" | "retired") {
                return Err(StoreError::NotOpen {
                    id: id.0,
                    phase: row.phase.to_string(),
                    wanted,
                });
            }
            "current"
        } else {
            "pending"
        };
        if pending.as_deref() != Some(expected) {
            return Err(StoreError::Corrupt(format!(
                "open rotation {} points at version {} which is not pending",
                id.0, row.version_id
            )));
        }
        Ok(())
    }

    fn lease_row(conn: &Connection, credential_row: i64) -> Result<Option<LeaseRow>, StoreError> {
        let row: Option<(i64, String, String, u32, i64, String)> = conn
            .row(
                "SELECT token, holder, owner_host, owner_pid, ttl_ms, expires_at
                 FROM leases WHERE credential_id = ?1",
                [credential_row],
                |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                        row.get(5)?,
                    ))
                },
            )
            .optional()?;
        row.map(
            |(token, holder, owner_host, owner_pid, ttl_ms, expires_at)| {
                Ok(LeaseRow {
                    token,
                    holder,
                    owner_host,
                    owner_pid,
                    ttl_ms,
                    expires_at: parse_time(&expires_at)?,
                })
            },
        )
        .transpose()
    }

    /// The fencing check, inside the caller's write transaction: `token` must be the
    /// credential's current lease and that lease must not have expired. On success the lease
    /// is renewed by its ttl (the write proves its holder is alive); on failure the caller's
    /// transaction is rolled back by the error, so a stale process changes nothing.
    fn fence(
        &self,
        conn: &Connection,
        credential_row: i64,
        cred: &str,
        token: i64,
    ) -> Result<(), StoreError> {
        let lost = |why: String| StoreError::LeaseLost {
            cred: cred.to_owned(),
            why,
        };
        let now = self.now();
        let lease = Vault::lease_row(conn, credential_row)?
            .ok_or_else(|| lost(format!("lease token {token} was given back")))?;
        if lease.token != token {
            return Err(lost(format!(
                "lease token {token} was superseded by token {}, taken by {}",
                lease.token, lease.holder
            )));
        }
        if lease.expires_at <= now {
            return Err(lost(format!(
                "lease token {token} expired at {}",
                time_text(lease.expires_at)
            )));
        }
        conn.exec(
            "UPDATE leases SET expires_at = ?2 WHERE credential_id = ?1",
            params![
                credential_row,
                time_text(now + TimeDelta::milliseconds(lease.ttl_ms))
            ],
        )?;
        Ok(())
    }

    /// Closing a rotation ends its lease in the same transaction (the caller's
    /// `release_lease` afterwards then has nothing to write): one write fewer per rotation
    /// on the lock every worker of a bulk run shares.
    fn end_lease_in(conn: &Connection, row: &RotationRow) -> Result<(), StoreError> {
        if let Some(token) = row.lease_token {
            conn.exec(
                "DELETE FROM leases WHERE credential_id = ?1 AND token = ?2",
                params![row.credential_row, token],
            )?;
        }
        Ok(())
    }

    /// Notes, once the transaction that closed rotation `row` (and deleted its lease row) has
    /// committed, that this handle's lease ended with it.
    fn lease_ended_by(&self, id: RotationId, row: &RotationRow) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(h) = held.get_mut(&row.cred)
            && Some(h.token) == row.lease_token
        {
            h.closed_rotation = Some(id.0);
        }
    }

    fn set_phase(
        conn: &Connection,
        id: RotationId,
        phase: Phase,
        note: Option<&str>,
        at: &str,
    ) -> Result<(), StoreError> {
        conn.exec(
            "UPDATE rotations SET phase = ?2, note = COALESCE(?3, note), updated_at = ?4
             WHERE id = ?1",
            params![id.0, phase.as_str(), note, at],
        )?;
        Ok(())
    }

    /// The open rotations, readable ones apart from those whose secrets fail their integrity
    /// check (each with its error).
    fn scan_open_rotations(
        &self,
    ) -> Result<(Vec<OpenRotation>, Vec<UnreadableRotation>), StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT r.id, c.cred, r.phase, v.id, v.secret, r.restore_point, r.restore_aad
             FROM rotations r
             JOIN credentials c ON c.id = r.credential_id
             LEFT JOIN versions v ON v.id = r.version_id
             WHERE r.phase IN {OPEN_PHASES_SQL}
             ORDER BY r.id"
        ))?;
        let mut rows = stmt.query([])?;
        let (mut out, mut unreadable) = (Vec::new(), Vec::new());
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            let cred: String = row.get(1)?;
            // No such version: the row was altered; refused like one that fails to decrypt.
            let (Some(version_id), Some(pending_blob)) = (
                row.get::<_, Option<i64>>(3)?,
                row.get::<_, Option<Vec<u8>>>(4)?,
            ) else {
                unreadable.push(UnreadableRotation {
                    id: RotationId(id),
                    cred: parse_cred(&cred)?,
                    phase: parse_phase(&row.get::<_, String>(2)?)?,
                    error: StoreError::Integrity(format!(
                        "rotation {id} of {cred}: its pending version is missing"
                    ))
                    .into(),
                });
                continue;
            };
            let restore_blob: Vec<u8> = row.get(5)?;
            let (cred_id, phase) = (parse_cred(&cred)?, parse_phase(&row.get::<_, String>(2)?)?);
            let secrets = self
                .decrypt_version(&cred, version_id, &pending_blob)
                .and_then(|pending| {
                    let restore_point = self.decrypt_restore_point(
                        row.get(6)?,
                        &cred,
                        id,
                        version_id,
                        &restore_blob,
                    )?;
                    Ok((pending, restore_point))
                });
            match secrets {
                Ok((pending, restore_point)) => out.push(OpenRotation {
                    id: RotationId(id),
                    cred: cred_id,
                    phase,
                    pending,
                    restore_point,
                }),
                Err(error @ StoreError::Integrity(_)) => unreadable.push(UnreadableRotation {
                    id: RotationId(id),
                    cred: cred_id,
                    phase,
                    error: error.into(),
                }),
                Err(e) => return Err(e),
            }
        }
        Ok((out, unreadable))
    }
}

/// Who acts, for the audit log: the OS user of the real uid (never `$USER`, which anyone can
/// set), with the person sudo says started it, recorded as claimed (`SUDO_USER` is only an
/// environment variable, set by sudo but settable by anyone).
fn default_actor() -> String {
    Actor::of_this_process().to_string()
}

impl Vault {
    pub(crate) fn begin_run_as(
        &self,
        _by: &str,
        reason: &str,
        scope: &str,
    ) -> Result<RunId, StoreError> {
        self.write_lazy(|tx| {
            tx.exec(
                "INSERT INTO runs (started_at, reason, scope) VALUES (?1, ?2, ?3)",
                params![self.now_text(), reason, scope],
            )?;
            Ok(RunId(tx.last_insert_rowid()))
        })
    }

    pub(crate) fn end_run_as(
        &self,
        _by: &str,
        run: RunId,
        summary: &str,
    ) -> Result<(), StoreError> {
        self.write_lazy(|tx| {
            let n = tx.exec(
                "UPDATE runs SET ended_at = ?2, summary = ?3 WHERE id = ?1",
                params![run.0, self.now_text(), summary],
            )?;
            if n == 0 {
                return Err(StoreError::UnknownRun(run.0));
            }
            Ok(())
        })
    }

    pub fn fingerprint_taken(&self, secret: &Secret) -> Result<bool, StoreError> {
        let fingerprint = crypto::fingerprint(&self.hmac_key, secret);
        Ok(self.lock().row(
            "SELECT EXISTS (SELECT 1 FROM versions WHERE fingerprint = ?1)",
            [fingerprint],
            |row| row.get(0),
        )?)
    }

    pub(crate) fn stage_as(
        &self,
        by: &str,
        run: RunId,
        cred: &CredentialId,
        new: &Secret,
        restore_point: &Secret,
        lease: Lease,
    ) -> Result<RotationId, StoreError> {
        let cred_text = cred.to_string();
        self.write(|tx| {
            let at = self.now_text();
            let run_exists: bool = tx.row(
                "SELECT EXISTS (SELECT 1 FROM runs WHERE id = ?1)",
                [run.0],
                |row| row.get(0),
            )?;
            if !run_exists {
                return Err(StoreError::UnknownRun(run.0));
            }
            let credential_row = Vault::ensure_credential(tx, &cred_text, &at)?;
            self.fence(tx, credential_row, &cred_text, lease.token)?;
            if let Some(reason) = Vault::parked_in(tx, credential_row)? {
                return Err(StoreError::Parked {
                    cred: cred_text.clone(),
                    reason,
                });
            }
            if let Some(open) = Vault::open_rotation_of(tx, credential_row)? {
                return Err(StoreError::RotationOpen(cred_text.clone(), open));
            }
            // A pending version without an open rotation is a stuck rotation's: both secrets
            // are kept for an operator, and a new rotation must not replace either.
            let stuck: Option<i64> = tx
                .row(
                    "SELECT r.id FROM versions v JOIN rotations r ON r.version_id = v.id
                     WHERE v.credential_id = ?1 AND v.state = 'pending'",
                    [credential_row],
                    |row| row.get(0),
                )
                .optional()?;
            if let Some(stuck) = stuck {
                return Err(StoreError::Stuck(cred_text.clone(), stuck));
            }
            // Invariant 6, checked where it cannot race: this transaction holds the write
            // lock (BEGIN IMMEDIATE), so no other staging, in this process or another, can
            // store the same secret between this check and the insert below.
            let taken: bool = tx.row(
                "SELECT EXISTS (SELECT 1 FROM versions WHERE fingerprint = ?1)",
                [crypto::fingerprint(&self.hmac_key, new)],
                |row| row.get(0),
            )?;
            if taken {
                return Err(StoreError::SecretCollision(cred_text.clone()));
            }
            let version =
                self.insert_version(tx, credential_row, &cred_text, "pending", new, &at)?;
            tx.exec(
                "INSERT INTO rotations (run_id, credential_id, version_id, phase, restore_point,
                                        started_at, updated_at, lease_token)
                 VALUES (?1, ?2, ?3, 'staged', x'', ?4, ?4, ?5)",
                params![run.0, credential_row, version, at, lease.token],
            )?;
            let id = tx.last_insert_rowid();
            let aad = restore_aad(RESTORE_AAD_SCHEME, &cred_text, id, version);
            let sealed = crypto::seal_secret(
                &self.data_key,
                &aad,
                restore_point,
                &mut *self.entropy.rng(),
            );
            tx.exec(
                "UPDATE rotations SET restore_point = ?1, restore_aad = ?3 WHERE id = ?2",
                params![sealed, id, RESTORE_AAD_SCHEME],
            )?;
            let event = Event::Stage {
                rotation: RotationId(id),
                run,
                version,
                lease_token: lease.token,
            };
            self.audit_as(by, tx, &event, Some(&cred_text))?;
            Ok(RotationId(id))
        })
    }

    pub(crate) fn record_phase_as(
        &self,
        by: &str,
        mine: Option<Lease>,
        id: RotationId,
        phase: Phase,
        note: Option<&str>,
    ) -> Result<(), StoreError> {
        if !phase.is_open() {
            return Err(StoreError::PhaseNotRecordable(id.0));
        }
        self.write_lazy(|tx| {
            let row = self.fenced_rotation_row(tx, id, mine, "moved to another phase")?;
            Vault::set_phase(tx, id, phase, note, &self.now_text())?;
            let event = Event::Phase {
                rotation: id,
                from: row.phase,
                to: phase,
            };
            self.audit_as(by, tx, &event, Some(&row.cred))?;
            Ok(())
        })
    }

    /// Not audited: every push and restore renews once, and the phase records around them
    /// are audited already.
    pub(crate) fn renew_lease_as(
        &self,
        mine: Option<Lease>,
        id: RotationId,
    ) -> Result<(), StoreError> {
        self.write_lazy(|tx| {
            self.fenced_rotation_row(tx, id, mine, "written to the target")?;
            Ok(())
        })
    }

    pub(crate) fn commit_as(
        &self,
        by: &str,
        mine: Option<Lease>,
        id: RotationId,
        then_retire: bool,
    ) -> Result<(), StoreError> {
        self.write_lazy(|tx| {
            let at = self.now_text();
            let row = self.fenced_rotation_row(tx, id, mine, "committed")?;
            // Order matters for the one-live-state index: free `previous`, then `current`.
            tx.exec(
                "UPDATE versions SET state = 'retired', state_changed_at = ?2
                 WHERE credential_id = ?1 AND state = 'previous'",
                params![row.credential_row, at],
            )?;
            tx.exec(
                "UPDATE versions SET state = 'previous', state_changed_at = ?2
                 WHERE credential_id = ?1 AND state = 'current'",
                params![row.credential_row, at],
            )?;
            tx.exec(
                "UPDATE versions SET state = 'current', state_changed_at = ?2 WHERE id = ?1",
                params![row.version_id, at],
            )?;
            let phase = if then_retire {
                Phase::Retiring
            } else {
                Phase::Committed
            };
            Vault::set_phase(tx, id, phase, None, &at)?;
            let event = Event::Commit {
                rotation: id,
                version: row.version_id,
            };
            self.audit_as(by, tx, &event, Some(&row.cred))?;
            if then_retire {
                return Ok(None);
            }
            // The old secret no longer works: a checkout ending on this credential is over.
            self.close_ending_checkout_in(by, tx, &row.cred, id)?;
            Vault::end_lease_in(tx, &row)?;
            Ok(Some(row))
        })
        .map(|row| {
            if let Some(row) = row {
                self.lease_ended_by(id, &row)
            }
        })
    }

    pub(crate) fn record_retired_as(
        &self,
        by: &str,
        mine: Option<Lease>,
        id: RotationId,
    ) -> Result<(), StoreError> {
        self.write_lazy(|tx| {
            let row = self.fenced_rotation_row(tx, id, mine, "retired")?;
            if row.phase != Phase::Retiring {
                return Err(StoreError::NotOpen {
                    id: id.0,
                    phase: row.phase.to_string(),
                    wanted: "retired",
                });
            }
            Vault::set_phase(tx, id, Phase::Retired, None, &self.now_text())?;
            self.audit_as(by, tx, &Event::Retired { rotation: id }, Some(&row.cred))?;
            // The old key is gone from the target: a checkout ending on it is over.
            self.close_ending_checkout_in(by, tx, &row.cred, id)?;
            Vault::end_lease_in(tx, &row)?;
            Ok(row)
        })
        .map(|row| self.lease_ended_by(id, &row))
    }

    pub(crate) fn roll_back_as(
        &self,
        by: &str,
        mine: Option<Lease>,
        id: RotationId,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.write_lazy(|tx| {
            let at = self.now_text();
            let row = self.fenced_rotation_row(tx, id, mine, "rolled back")?;
            tx.exec(
                "UPDATE versions SET state = 'retired', never_current = 1, state_changed_at = ?2
                 WHERE id = ?1",
                params![row.version_id, at],
            )?;
            Vault::set_phase(tx, id, Phase::RolledBack, Some(reason), &at)?;
            let event = Event::RollBack {
                rotation: id,
                reason: reason.to_owned(),
            };
            self.audit_as(by, tx, &event, Some(&row.cred))?;
            Vault::end_lease_in(tx, &row)?;
            Ok(row)
        })
        .map(|row| self.lease_ended_by(id, &row))
    }

    pub(crate) fn mark_stuck_as(
        &self,
        by: &str,
        mine: Option<Lease>,
        id: RotationId,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            let row = self.fenced_rotation_row(tx, id, mine, "marked stuck")?;
            Vault::set_phase(tx, id, Phase::Stuck, Some(reason), &self.now_text())?;
            let event = Event::MarkStuck {
                rotation: id,
                reason: reason.to_owned(),
            };
            self.audit_as(by, tx, &event, Some(&row.cred))?;
            tracing::error!(cred = %row.cred, rotation = id.0, "rotation is stuck, operator needed");
            Vault::end_lease_in(tx, &row)?;
            Ok(row)
        })
        .map(|row| self.lease_ended_by(id, &row))
    }

    pub fn open_rotations(&self) -> Result<Vec<OpenRotation>, StoreError> {
        Ok(self.scan_open_rotations()?.0)
    }

    pub fn unreadable_rotations(&self) -> Result<Vec<UnreadableRotation>, StoreError> {
        Ok(self.scan_open_rotations()?.1)
    }

    pub fn current(&self, cred: &CredentialId) -> Result<Option<Secret>, StoreError> {
        self.current_in(&self.lock(), &cred.to_string())
    }

    /// The credential's `pending` secret (of an open or stuck rotation), if it has one.
    pub fn pending(&self, cred: &CredentialId) -> Result<Option<Secret>, StoreError> {
        let cred = cred.to_string();
        let conn = self.lock();
        let row: Option<(i64, Vec<u8>)> = conn
            .row(
                "SELECT v.id, v.secret FROM versions v JOIN credentials c ON c.id = v.credential_id
                 WHERE c.cred = ?1 AND v.state = 'pending'",
                [&cred],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        row.map(|(id, blob)| self.decrypt_version(&cred, id, &blob))
            .transpose()
    }

    /// Leases are not audited (every rotation takes and gives back one), except when one
    /// holder takes over another's expired lease: that is where a process stalled or died,
    /// which is worth finding afterwards. `ttl` is capped at one day.
    pub(crate) fn acquire_lease_as(
        &self,
        by: &str,
        cred: &CredentialId,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<Result<Lease, LeaseHeld>, StoreError> {
        let cred_text = cred.to_string();
        let ttl = lease_ttl(ttl);
        let granted = self.write_lazy(|tx| {
            let now = self.now();
            let credential_row = Vault::ensure_credential(tx, &cred_text, &time_text(now))?;
            let previous = Vault::lease_row(tx, credential_row)?;
            if let Some(held) = &previous
                && held.holder != holder
                && held.expires_at > now
                && !held.holder_is_gone()
            {
                return Ok(Err(LeaseHeld {
                    holder: held.holder.clone(),
                    expires_at: held.expires_at,
                }));
            }
            let token: i64 = tx.row(
                "UPDATE lease_counter SET last_token = last_token + 1 WHERE id = 1
                 RETURNING last_token",
                [],
                |row| row.get(0),
            )?;
            tx.exec(
                "INSERT INTO leases (credential_id, token, holder, owner_host, owner_pid, ttl_ms,
                                     acquired_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (credential_id) DO UPDATE SET
                   token = excluded.token, holder = excluded.holder,
                   owner_host = excluded.owner_host, owner_pid = excluded.owner_pid,
                   ttl_ms = excluded.ttl_ms, acquired_at = excluded.acquired_at,
                   expires_at = excluded.expires_at",
                params![
                    credential_row,
                    token,
                    holder,
                    this_process_owner(),
                    std::process::id(),
                    ttl.num_milliseconds(),
                    time_text(now),
                    time_text(now + ttl)
                ],
            )?;
            if let Some(expired) = previous.filter(|p| p.holder != holder) {
                let event = Event::LeaseTakeover {
                    previous_holder: expired.holder.clone(),
                    previous_holder_gone: expired.holder_is_gone(),
                    previous_token: expired.token,
                    expired_at: expired.expires_at,
                    holder: holder.to_owned(),
                    token,
                };
                self.audit_as(by, tx, &event, Some(&cred_text))?;
                tracing::warn!(
                    cred = %cred_text, previous_holder = %expired.holder, token,
                    "took over an expired lease"
                );
            }
            Ok(Ok(Lease { token }))
        })?;
        if let Ok(lease) = granted {
            self.held
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(
                    cred_text,
                    HeldLease {
                        token: lease.token,
                        closed_rotation: None,
                    },
                );
        }
        Ok(granted)
    }

    pub fn release_lease(&self, cred: &CredentialId, lease: Lease) -> Result<(), StoreError> {
        let cred_text = cred.to_string();
        let forget = || {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            if held.get(&cred_text).is_some_and(|h| h.token == lease.token) {
                held.remove(&cred_text);
            }
        };
        if self
            .held_lease(&cred_text)
            .is_some_and(|h| h.token == lease.token && h.closed_rotation.is_some())
        {
            // Closing its rotation gave it back already: nothing to write.
            forget();
            return Ok(());
        }
        self.write_lazy(|tx| {
            tx.exec(
                "DELETE FROM leases
                 WHERE credential_id = (SELECT id FROM credentials WHERE cred = ?1)
                   AND token = ?2",
                params![cred_text, lease.token],
            )?;
            Ok(())
        })?;
        forget();
        Ok(())
    }

    /// Audited: adopting is recovery taking a rotation over from another process.
    pub(crate) fn adopt_as(
        &self,
        by: &str,
        id: RotationId,
        lease: Lease,
    ) -> Result<(), StoreError> {
        self.write_lazy(|tx| {
            let row = Vault::rotation_row(tx, id)?;
            Vault::check_open(tx, id, &row, "adopted")?;
            self.fence(tx, row.credential_row, &row.cred, lease.token)?;
            tx.exec(
                "UPDATE rotations SET lease_token = ?2 WHERE id = ?1",
                params![id.0, lease.token],
            )?;
            let event = Event::Adopt {
                rotation: id,
                previous_token: row.lease_token,
                token: lease.token,
            };
            self.audit_as(by, tx, &event, Some(&row.cred))?;
            Ok(())
        })
    }

    /// Not audited (heartbeats would flood the log); parking is.
    pub fn record_login(&self, cred: &CredentialId, ok: bool) -> Result<u32, StoreError> {
        let cred_text = cred.to_string();
        if ok {
            // The common case, a success with no failures counted: nothing to write.
            let conn = self.lock();
            let n: Option<i64> = conn
                .row(
                    "SELECT failed_logins FROM credentials WHERE cred = ?1",
                    [&cred_text],
                    |row| row.get(0),
                )
                .optional()?;
            if n == Some(0) {
                return Ok(0);
            }
        }
        self.write_lazy(|tx| {
            let credential_row = Vault::ensure_credential(tx, &cred_text, &self.now_text())?;
            let n_failed: i64 = tx.row(
                "UPDATE credentials
                 SET failed_logins = CASE WHEN ?2 THEN 0 ELSE failed_logins + 1 END
                 WHERE id = ?1 RETURNING failed_logins",
                params![credential_row, ok],
                |row| row.get(0),
            )?;
            u32::try_from(n_failed)
                .map_err(|_| StoreError::Corrupt(format!("failed login count {n_failed}")))
        })
    }

    pub(crate) fn park_as(
        &self,
        by: &str,
        cred: &CredentialId,
        reason: &str,
    ) -> Result<(), StoreError> {
        let cred_text = cred.to_string();
        self.write(|tx| {
            let at = self.now_text();
            let credential_row = Vault::ensure_credential(tx, &cred_text, &at)?;
            let n_failed: i64 = tx.row(
                "UPDATE credentials SET parked_reason = ?2, parked_at = ?3 WHERE id = ?1
                 RETURNING failed_logins",
                params![credential_row, reason, at],
                |row| row.get(0),
            )?;
            let event = Event::Park {
                reason: reason.to_owned(),
                failed_logins: n_failed,
            };
            self.audit_as(by, tx, &event, Some(&cred_text))?;
            tracing::error!(cred = %cred_text, reason, "credential parked, operator needed");
            Ok(())
        })
    }

    /// Fails with `UnknownCredential` for a credential the vault does not know (a typo).
    pub(crate) fn unpark_as(&self, by: &str, cred: &CredentialId) -> Result<(), StoreError> {
        let cred_text = cred.to_string();
        self.write(|tx| {
            let credential_row = Vault::credential_row(tx, &cred_text)?
                .ok_or_else(|| StoreError::UnknownCredential(cred_text.clone()))?;
            let was_parked = Vault::parked_in(tx, credential_row)?;
            tx.exec(
                "UPDATE credentials SET parked_reason = NULL, parked_at = NULL, failed_logins = 0
                 WHERE id = ?1",
                [credential_row],
            )?;
            self.audit_as(by, tx, &Event::Unpark { was_parked }, Some(&cred_text))?;
            Ok(())
        })
    }

    pub fn parked(&self, cred: &CredentialId) -> Result<Option<String>, StoreError> {
        let conn = self.lock();
        match Vault::credential_row(&conn, &cred.to_string())? {
            Some(credential_row) => Vault::parked_in(&conn, credential_row),
            None => Ok(None),
        }
    }

    // The same operations with the handle's own actor and remembered leases: for the CLI's
    // own commands and the store's tests. The engine goes through the `Store` port below,
    // which names the actor and the lease with every call.

    pub fn begin_run(&self, reason: &str, scope: &str) -> Result<RunId, StoreError> {
        self.begin_run_as(&self.actor, reason, scope)
    }
    pub fn end_run(&self, run: RunId, summary: &str) -> Result<(), StoreError> {
        self.end_run_as(&self.actor, run, summary)
    }
    pub fn stage(
        &self,
        run: RunId,
        cred: &CredentialId,
        new: &Secret,
        restore_point: &Secret,
        lease: Lease,
    ) -> Result<RotationId, StoreError> {
        self.stage_as(&self.actor, run, cred, new, restore_point, lease)
    }
    pub fn record_phase(
        &self,
        id: RotationId,
        phase: Phase,
        note: Option<&str>,
    ) -> Result<(), StoreError> {
        self.record_phase_as(&self.actor, None, id, phase, note)
    }
    pub fn renew_lease(&self, id: RotationId) -> Result<(), StoreError> {
        self.renew_lease_as(None, id)
    }
    pub fn commit(&self, id: RotationId, then_retire: bool) -> Result<(), StoreError> {
        self.commit_as(&self.actor, None, id, then_retire)
    }
    pub fn record_retired(&self, id: RotationId) -> Result<(), StoreError> {
        self.record_retired_as(&self.actor, None, id)
    }
    pub fn roll_back(&self, id: RotationId, reason: &str) -> Result<(), StoreError> {
        self.roll_back_as(&self.actor, None, id, reason)
    }
    pub fn mark_stuck(&self, id: RotationId, reason: &str) -> Result<(), StoreError> {
        self.mark_stuck_as(&self.actor, None, id, reason)
    }
    pub fn acquire_lease(
        &self,
        cred: &CredentialId,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<Result<Lease, LeaseHeld>, StoreError> {
        self.acquire_lease_as(&self.actor, cred, holder, ttl)
    }
    pub fn adopt(&self, id: RotationId, lease: Lease) -> Result<(), StoreError> {
        self.adopt_as(&self.actor, id, lease)
    }
    pub fn park(&self, cred: &CredentialId, reason: &str) -> Result<(), StoreError> {
        self.park_as(&self.actor, cred, reason)
    }
    pub fn unpark(&self, cred: &CredentialId) -> Result<(), StoreError> {
        self.unpark_as(&self.actor, cred)
    }
}

/// The engine's port. The lease each write names is the one checked (not whatever this handle
/// remembers), and the actor each call names is the one audited.
impl Runs for Vault {
    fn begin_run(&self, by: &Actor, reason: &str, scope: &str) -> Result<RunId, StoreFailure> {
        Ok(self.begin_run_as(by.as_str(), reason, scope)?)
    }
    fn end_run(&self, by: &Actor, run: RunId, summary: &str) -> Result<(), StoreFailure> {
        Ok(self.end_run_as(by.as_str(), run, summary)?)
    }
}

impl Secrets for Vault {
    fn fingerprint_taken(&self, secret: &Secret) -> Result<bool, StoreFailure> {
        Ok(Vault::fingerprint_taken(self, secret)?)
    }
    fn current(&self, cred: &CredentialId) -> Result<Option<Secret>, StoreFailure> {
        Ok(Vault::current(self, cred)?)
    }
    fn pending(&self, cred: &CredentialId) -> Result<Option<Secret>, StoreFailure> {
        Ok(Vault::pending(self, cred)?)
    }
}

impl Ledger for Vault {
    fn stage(
        &self,
        by: &Actor,
        lease: Lease,
        run: RunId,
        cred: &CredentialId,
        new: &Secret,
        restore_point: &Secret,
    ) -> Result<RotationId, StoreFailure> {
        Ok(self.stage_as(by.as_str(), run, cred, new, restore_point, lease)?)
    }
    fn record_phase(
        &self,
        by: &Actor,
        lease: Lease,
        id: RotationId,
        phase: Phase,
        note: Option<&str>,
    ) -> Result<(), StoreFailure> {
        Ok(self.record_phase_as(by.as_str(), Some(lease), id, phase, note)?)
    }
    fn commit(
        &self,
        by: &Actor,
        lease: Lease,
        id: RotationId,
        then_retire: bool,
    ) -> Result<(), StoreFailure> {
        Ok(self.commit_as(by.as_str(), Some(lease), id, then_retire)?)
    }
    fn record_retired(&self, by: &Actor, lease: Lease, id: RotationId) -> Result<(), StoreFailure> {
        Ok(self.record_retired_as(by.as_str(), Some(lease), id)?)
    }
    fn roll_back(
        &self,
        by: &Actor,
        lease: Lease,
        id: RotationId,
        reason: &str,
    ) -> Result<(), StoreFailure> {
        Ok(self.roll_back_as(by.as_str(), Some(lease), id, reason)?)
    }
    fn mark_stuck(
        &self,
        by: &Actor,
        lease: Lease,
        id: RotationId,
        reason: &str,
    ) -> Result<(), StoreFailure> {
        Ok(self.mark_stuck_as(by.as_str(), Some(lease), id, reason)?)
    }
    fn open_rotations(&self) -> Result<Vec<OpenRotation>, StoreFailure> {
        Ok(Vault::open_rotations(self)?)
    }
    fn unreadable_rotations(&self) -> Result<Vec<UnreadableRotation>, StoreFailure> {
        Ok(Vault::unreadable_rotations(self)?)
    }
    fn adopt(&self, by: &Actor, lease: Lease, id: RotationId) -> Result<(), StoreFailure> {
        Ok(self.adopt_as(by.as_str(), id, lease)?)
    }
}

impl Leases for Vault {
    fn acquire_lease(
        &self,
        by: &Actor,
        cred: &CredentialId,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<Result<Lease, LeaseHeld>, StoreFailure> {
        Ok(self.acquire_lease_as(by.as_str(), cred, holder, ttl)?)
    }
    fn release_lease(&self, cred: &CredentialId, lease: Lease) -> Result<(), StoreFailure> {
        Ok(Vault::release_lease(self, cred, lease)?)
    }
    fn renew_lease(&self, lease: Lease, id: RotationId) -> Result<(), StoreFailure> {
        Ok(self.renew_lease_as(Some(lease), id)?)
    }
}

impl LoginBudget for Vault {
    fn record_login(&self, cred: &CredentialId, ok: bool) -> Result<u32, StoreFailure> {
        Ok(Vault::record_login(self, cred, ok)?)
    }
    fn park(&self, by: &Actor, cred: &CredentialId, reason: &str) -> Result<(), StoreFailure> {
        Ok(self.park_as(by.as_str(), cred, reason)?)
    }
    fn unpark(&self, by: &Actor, cred: &CredentialId) -> Result<(), StoreFailure> {
        Ok(self.unpark_as(by.as_str(), cred)?)
    }
    fn parked(&self, cred: &CredentialId) -> Result<Option<String>, StoreFailure> {
        Ok(Vault::parked(self, cred)?)
    }
}

impl crate::engine::ledger::Sightings for Vault {
    fn bootstrap_seen(&self, host: &crate::credential::HostName, accepted: bool) {
        if let Err(e) = Vault::bootstrap_seen(self, host.as_str(), accepted) {
            tracing::warn!(host = %host, "could not record whether the bootstrap key logs in: {e}");
        }
    }
}

impl Grants for Vault {
    fn checked_out(&self, cred: &CredentialId) -> Result<Option<String>, StoreFailure> {
        Ok(Vault::open_checkout_words(self, cred)?)
    }
}

#[cfg(test)]
pub(super) mod test_support {
    use super::*;

    pub const OPEN_PHASES_SQL: &str = super::OPEN_PHASES_SQL;

    /// A new vault whose schema stops at `schema_version`, as an older rotor made it.
    pub fn init_at_schema(
        data_dir: &Path,
        source: KeySource,
        schema_version: i64,
    ) -> Result<Vault, StoreError> {
        Vault::init_at_schema(data_dir, source, schema_version)
    }

    /// Sends the vault's audit heads to the socket at `path` from now on.
    pub fn send_heads_to(vault: &mut Vault, path: &Path) {
        vault.heads = super::syslog::HeadLog::at(path.to_owned(), &vault.data_dir);
    }

    /// Seals rotation `id`'s restore point as rotor did before schema 4 (associated data: the
    /// rotation id only), as a vault upgraded with that rotation open holds it.
    pub fn seal_restore_point_as_before_schema_4(
        vault: &Vault,
        id: RotationId,
        restore_point: &Secret,
    ) {
        let sealed = crypto::seal_secret(
            &vault.data_key,
            &restore_aad(1, "", id.0, 0),
            restore_point,
            &mut *vault.entropy.rng(),
        );
        vault
            .lock()
            .execute(
                "UPDATE rotations SET restore_point = ?1, restore_aad = 1 WHERE id = ?2",
                params![sealed, id.0],
            )
            .unwrap();
    }
}

#[cfg(test)]
mod lease_holder_tests {
    use super::*;

    fn lease(owner_host: &str, owner_pid: u32) -> LeaseRow {
        LeaseRow {
            token: 1,
            holder: "rotor pid 4242".into(),
            owner_host: owner_host.into(),
            owner_pid,
            ttl_ms: 1000,
            expires_at: Utc::now(),
        }
    }

    fn here(boot_id: Option<&str>, process_start: fn(u32) -> ProcessStart) -> Machine {
        Machine {
            name: "box pid:[1]".into(),
            boot_id: boot_id.map(str::to_owned),
            pid: 1,
            process_start,
        }
    }

    /// `(lease owner, pid, machine it is judged on, gone?)`.
    fn check(cases: &[(&str, u32, Machine, bool)]) {
        for (owner, pid, machine, gone) in cases {
            assert_eq!(
                lease(owner, *pid).holder_is_gone_on(machine),
                *gone,
                "{owner} pid {pid}"
            );
        }
    }

    #[test]
    fn a_holder_is_gone_only_when_the_machine_says_so() {
        let started_77 = |_| ProcessStart::At("77".into());
        let unreadable = |_| ProcessStart::Unknown;
        let no_process = |_| ProcessStart::Gone;
        check(&[
            // The same process (pid and start time) in the same boot: alive.
            (
                "box pid:[1]#77#boot-a",
                4242,
                here(Some("boot-a"), started_77),
                false,
            ),
            // The pid was reused by a process started later.
            (
                "box pid:[1]#76#boot-a",
                4242,
                here(Some("boot-a"), started_77),
                true,
            ),
            // No such process.
            (
                "box pid:[1]#77#boot-a",
                4242,
                here(Some("boot-a"), no_process),
                true,
            ),
            // /proc/PID exists but cannot be read (hidepid): nothing is known, so alive.
            (
                "box pid:[1]#77#boot-a",
                4242,
                here(Some("boot-a"), unreadable),
                false,
            ),
            // The machine rebooted since: whatever now runs under that pid, the holder is gone,
            // even with an unreadable /proc or a start time that happens to match.
            (
                "box pid:[1]#77#boot-a",
                4242,
                here(Some("boot-b"), unreadable),
                true,
            ),
            (
                "box pid:[1]#77#boot-a",
                4242,
                here(Some("boot-b"), started_77),
                true,
            ),
            // A lease written before boot ids were recorded is judged by the start time.
            (
                "box pid:[1]#77",
                4242,
                here(Some("boot-b"), started_77),
                false,
            ),
            (
                "box pid:[1]#76",
                4242,
                here(Some("boot-b"), started_77),
                true,
            ),
            // Another machine or PID namespace: its pids say nothing here.
            (
                "other pid:[1]#77#boot-a",
                4242,
                here(Some("boot-b"), no_process),
                false,
            ),
            // This process itself in this boot, or no pid recorded.
            (
                "box pid:[1]#77#boot-b",
                1,
                here(Some("boot-b"), no_process),
                false,
            ),
            // This process's pid in this boot: this process (same start) or an earlier one.
            (
                "box pid:[1]#77#boot-b",
                1,
                here(Some("boot-b"), started_77),
                false,
            ),
            (
                "box pid:[1]#76#boot-b",
                1,
                here(Some("boot-b"), started_77),
                true,
            ),
            // The same pid as this process, but taken in an earlier boot.
            (
                "box pid:[1]#77#boot-a",
                1,
                here(Some("boot-b"), started_77),
                true,
            ),
            (
                "box pid:[1]#77#boot-a",
                0,
                here(Some("boot-b"), no_process),
                false,
            ),
        ]);
    }

    #[test]
    fn the_actor_is_the_real_user_and_sudo_is_only_claimed() {
        use crate::engine::ledger::SudoClaim;
        assert_eq!(
            Actor::os_user("alice", SudoClaim::None).to_string(),
            "alice"
        );
        assert_eq!(
            Actor::os_user("alice", SudoClaim::Claimed(String::new())).to_string(),
            "alice"
        );
        let claimed = Actor::os_user("rotor", SudoClaim::Claimed("bob".into()));
        assert_eq!(
            claimed.to_string(),
            "rotor (SUDO_USER=bob, as claimed: the parent is not sudo)"
        );
        assert_eq!(claimed.person(), "rotor");
        let trusted = Actor::os_user("rotor", SudoClaim::Trusted("bob".into()));
        assert_eq!(trusted.to_string(), "bob (via sudo as rotor)");
        assert_eq!(trusted.person(), "bob");
        assert_eq!(
            Actor::os_user("rotor", SudoClaim::Claimed("b\x1b[2Job\u{202e}".into())).to_string(),
            "rotor (SUDO_USER=b\\u{1b}[2Job\\u{202e}, as claimed: the parent is not sudo)"
        );
        // The tests run as root, whatever $USER says.
        let actor = default_actor();
        assert!(actor.starts_with("root"), "{actor}");
    }

    #[test]
    fn this_process_is_named_with_its_boot() {
        let owner = this_process_owner();
        let parsed = Owner::parse(&owner).unwrap();
        assert_eq!(parsed.machine, this_machine());
        assert_eq!(parsed.boot_id, boot_id().as_deref());
        assert!(parsed.boot_id.is_some(), "{owner}");
        assert_eq!(
            process_start(std::process::id()),
            ProcessStart::At(parsed.started.to_owned())
        );
        // No process ever has pid_max as its pid.
        let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(process_start(pid_max), ProcessStart::Gone);
        // A process that exists: pid 1.
        assert!(matches!(process_start(1), ProcessStart::At(_)));
    }
}

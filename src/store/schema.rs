//! The vault's tables, connection settings and migrations.
//!
//! Migrations are numbered SQL batches; `meta.schema_version` records the last one applied.
//! A migration never rewrites a secret column (re-encryption is a separate, explicit step) and
//! never deletes audit rows. The audit table refuses UPDATE and DELETE through triggers, so
//! only someone editing the file outside rotor can change it (and `audit_verify` notices).

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::StoreError;

/// Each entry is one migration; entry `i` brings the schema to version `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: the initial layout.
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value BLOB NOT NULL
    );

    CREATE TABLE credentials (
        id         INTEGER PRIMARY KEY,
        cred       TEXT NOT NULL UNIQUE,
        kind       TEXT NOT NULL DEFAULT 'password',
        created_at TEXT NOT NULL
    );

    -- secret = nonce || XChaCha20-Poly1305(data key, plaintext,
    --          aad = "rotor/v1/version/" || cred || "/" || id)
    -- fingerprint = hex HMAC-SHA256(hmac key, plaintext)
    -- never_current = 1 for a pending version that was rolled back (never became current).
    CREATE TABLE versions (
        id               INTEGER PRIMARY KEY,
        credential_id    INTEGER NOT NULL REFERENCES credentials(id),
        state            TEXT NOT NULL
                         CHECK (state IN ('pending', 'current', 'previous', 'retired')),
        secret           BLOB NOT NULL,
        fingerprint      TEXT NOT NULL,
        never_current    INTEGER NOT NULL DEFAULT 0,
        created_at       TEXT NOT NULL,
        state_changed_at TEXT NOT NULL
    );
    -- At most one pending, one current and one previous version per credential.
    CREATE UNIQUE INDEX versions_one_live_state ON versions(credential_id, state)
        WHERE state IN ('pending', 'current', 'previous');
    CREATE INDEX versions_fingerprint ON versions(fingerprint);

    CREATE TABLE runs (
        id         INTEGER PRIMARY KEY,
        started_at TEXT NOT NULL,
        ended_at   TEXT,
        reason     TEXT NOT NULL,
        scope      TEXT NOT NULL,
        summary    TEXT
    );

    -- restore_point = nonce || XChaCha20-Poly1305(data key, plaintext,
    --                 aad = "rotor/v1/restore/" || id)
    CREATE TABLE rotations (
        id            INTEGER PRIMARY KEY,
        run_id        INTEGER NOT NULL REFERENCES runs(id),
        credential_id INTEGER NOT NULL REFERENCES credentials(id),
        version_id    INTEGER NOT NULL REFERENCES versions(id),
        phase         TEXT NOT NULL CHECK (phase IN ('planned', 'staged', 'applied',
                      'verified', 'committed', 'rolling_back', 'rolled_back', 'stuck')),
        restore_point BLOB NOT NULL,
        note          TEXT,
        started_at    TEXT NOT NULL,
        updated_at    TEXT NOT NULL
    );
    -- At most one open rotation per credential (the store also checks, to give a clear error).
    CREATE UNIQUE INDEX rotations_one_open ON rotations(credential_id)
        WHERE phase IN ('staged', 'applied', 'verified', 'rolling_back');
    CREATE INDEX rotations_run ON rotations(run_id);

    -- hash = hex SHA-256(prev_hash || "\n" || canonical JSON of the row); see audit.rs.
    CREATE TABLE audit (
        seq       INTEGER PRIMARY KEY,
        at        TEXT NOT NULL,
        actor     TEXT NOT NULL,
        action    TEXT NOT NULL,
        cred      TEXT,
        detail    TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash      TEXT NOT NULL
    );
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    "#,
    // 2: leases with fencing tokens (invariant 5) and the lockout budget (invariant 7).
    r#"
    -- One row per credential whose lease was taken and not given back. A row whose
    -- expires_at has passed is free for anyone. Released leases are deleted.
    CREATE TABLE leases (
        credential_id INTEGER PRIMARY KEY REFERENCES credentials(id),
        token         INTEGER NOT NULL UNIQUE,
        holder        TEXT NOT NULL,
        -- The holding process, so a lease whose process died on this machine can be taken
        -- over at once instead of after its ttl.
        owner_host    TEXT NOT NULL DEFAULT '',
        owner_pid     INTEGER NOT NULL DEFAULT 0,
        ttl_ms        INTEGER NOT NULL CHECK (ttl_ms >= 0),
        acquired_at   TEXT NOT NULL,
        expires_at    TEXT NOT NULL
    );
    -- The last fencing token issued. A counter (not MAX(leases.token)) because released
    -- leases are deleted and a token must never be issued twice.
    CREATE TABLE lease_counter (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        last_token INTEGER NOT NULL
    );
    INSERT INTO lease_counter (id, last_token) VALUES (1, 0);

    -- The token a rotation was staged or adopted with. NULL for rotations staged before
    -- version 2: no write is accepted for them until recovery adopts them.
    ALTER TABLE rotations ADD COLUMN lease_token INTEGER;

    -- Lockout budget: consecutive failed logins as the account, and parking.
    ALTER TABLE credentials ADD COLUMN failed_logins INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE credentials ADD COLUMN parked_reason TEXT;
    ALTER TABLE credentials ADD COLUMN parked_at TEXT;
    "#,
    // 3: per-credential lookups of rotations and versions stay O(log n) as history grows
    // (without them every stage scanned all past rotations: a 2,000-account directory slowed
    // down with each run).
    r#"
    CREATE INDEX rotations_credential ON rotations(credential_id, id);
    CREATE INDEX versions_credential ON versions(credential_id, state);
    CREATE INDEX rotations_version ON rotations(version_id);
    "#,
    // 4: the restore point's associated data names the credential, the rotation and the
    // pending version (2); rows sealed before name only the rotation (1). A row moved to
    // another credential or version then fails to decrypt instead of restoring one
    // account's old hash onto another.
    r#"
    ALTER TABLE rotations ADD COLUMN restore_aad INTEGER NOT NULL DEFAULT 1;
    "#,
    // 5: work after commit (SSH keys: remove the old key). A rotation is `retiring` once its
    // new credential is current and until the old one is removed (`retired`); retiring is
    // open, so recovery finishes it and no second rotation starts meanwhile. SQLite cannot
    // change a CHECK constraint in place: the table is rebuilt with its rows and indexes.
    r#"
    CREATE TABLE rotations_v5 (
        id            INTEGER PRIMARY KEY,
        run_id        INTEGER NOT NULL REFERENCES runs(id),
        credential_id INTEGER NOT NULL REFERENCES credentials(id),
        version_id    INTEGER NOT NULL REFERENCES versions(id),
        phase         TEXT NOT NULL CHECK (phase IN ('planned', 'staged', 'applied',
                      'verified', 'committed', 'retiring', 'retired', 'rolling_back',
                      'rolled_back', 'stuck')),
        restore_point BLOB NOT NULL,
        note          TEXT,
        started_at    TEXT NOT NULL,
        updated_at    TEXT NOT NULL,
        lease_token   INTEGER,
        restore_aad   INTEGER NOT NULL DEFAULT 1
    );
    INSERT INTO rotations_v5 (id, run_id, credential_id, version_id, phase, restore_point,
                              note, started_at, updated_at, lease_token, restore_aad)
        SELECT id, run_id, credential_id, version_id, phase, restore_point, note, started_at,
               updated_at, lease_token, restore_aad
        FROM rotations;
    DROP TABLE rotations;
    ALTER TABLE rotations_v5 RENAME TO rotations;
    CREATE UNIQUE INDEX rotations_one_open ON rotations(credential_id)
        WHERE phase IN ('staged', 'applied', 'verified', 'rolling_back', 'retiring');
    CREATE INDEX rotations_run ON rotations(run_id);
    CREATE INDEX rotations_credential ON rotations(credential_id, id);
    CREATE INDEX rotations_version ON rotations(version_id);
    "#,
    // 6: break-glass checkouts (see `crate::checkout` for the states). `ends_at` is the
    // durable deadline: an open checkout expires then, a pending or approved one lapses;
    // any rotor command that starts after it settles it, so no timer in memory is needed.
    // `inventory` is the file the checkout was made with: check-in and expiry rotate the
    // credential with it. At most one active checkout per credential.
    r#"
    CREATE TABLE checkouts (
        id              INTEGER PRIMARY KEY,
        cred            TEXT NOT NULL,
        state           TEXT NOT NULL
                        CHECK (state IN ('pending', 'approved', 'open', 'ending', 'closed')),
        requester       TEXT NOT NULL,
        requester_shown TEXT NOT NULL,
        -- 1 when the request came through sudo: then so must its approval.
        requester_via_sudo INTEGER NOT NULL DEFAULT 0,
        for_name        TEXT,
        ticket          TEXT NOT NULL,
        reason          TEXT NOT NULL,
        ttl_secs        INTEGER NOT NULL CHECK (ttl_secs > 0),
        inventory       TEXT NOT NULL,
        requested_at    TEXT NOT NULL,
        approved_by     TEXT,
        approved_at     TEXT,
        granted_at      TEXT,
        ends_at         TEXT,
        -- When it started ending (checked in, expired, overridden), then when it closed.
        ended_at        TEXT,
        end_reason      TEXT,
        ended_by        TEXT,
        rotation_id     INTEGER,
        failure         TEXT
    );
    CREATE UNIQUE INDEX checkouts_one_active ON checkouts(cred) WHERE state != 'closed';
    CREATE INDEX checkouts_due ON checkouts(state, ends_at);
    "#,
    // 7: API tokens for the daemon (`rotor token`). Only a keyed hash of each token is kept
    // (HMAC-SHA256 under a key derived from the vault's HMAC key): the file alone lets
    // nobody call the API. `name` is the actor the audit log records for its calls.
    r#"
    CREATE TABLE api_tokens (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL,
        role        TEXT NOT NULL CHECK (role IN ('admin', 'approver', 'requester')),
        hash        TEXT NOT NULL UNIQUE,
        created_at  TEXT NOT NULL,
        created_by  TEXT NOT NULL,
        expires_at  TEXT NOT NULL,
        revoked_at  TEXT
    );
    "#,
    // 8: the daemon. `daemon_leader` holds at most one row: the `rotor serve` that owns the
    // vault (its process named as leases name theirs, so a dead one is taken over at once).
    // `schedule_state` is each credential's next scheduled rotation, computed from its plan
    // and its last rotation (`scheduler::Stored`), so a restart neither forgets nor repeats.
    r#"
    CREATE TABLE daemon_leader (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        holder      TEXT NOT NULL,
        owner_host  TEXT NOT NULL,
        owner_pid   INTEGER NOT NULL,
        acquired_at TEXT NOT NULL,
        expires_at  TEXT NOT NULL
    );
    CREATE TABLE schedule_state (
        cred        TEXT PRIMARY KEY,
        plan        TEXT NOT NULL,
        basis       TEXT,
        due_at      TEXT,
        failures    INTEGER NOT NULL DEFAULT 0,
        updated_at  TEXT NOT NULL
    );
    -- One credential's audit entries (`rotor audit log --cred`, the checkout page) without
    -- reading the whole log, which every API call makes longer.
    CREATE INDEX audit_cred ON audit(cred, seq);
    "#,
    // 9: what rotor last saw of each host's bootstrap connect key (the key file the inventory
    // names): whether a login with it worked, and when. `rotor status -i` reports the hosts
    // that still accept it from what was seen, not only from the rotations' phases.
    r#"
    CREATE TABLE bootstrap_seen (
        host        TEXT PRIMARY KEY,
        accepted    INTEGER NOT NULL CHECK (accepted IN (0, 1)),
        seen_at     TEXT NOT NULL
    );
    "#,
    // 10: when a heartbeat (`rotor verify`) last logged in with the credential's current
    // secret. Not audited, like the login counters: heartbeats would flood the log. `rotor
    // status` shows it as the last verified time when it is later than the commit of the
    // rotation that made the secret current.
    r#"
    ALTER TABLE credentials ADD COLUMN heartbeat_at TEXT;
    "#,
];

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Connection settings every vault connection needs: WAL so readers do not block the writer,
/// synchronous=FULL so a returned commit survives power loss, foreign keys enforced, and a
/// busy timeout so a second rotor process waits for the writer instead of failing at once.
pub fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(Duration::from_secs(30))?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Db(format!(
            "could not switch the vault to WAL journaling (got `{mode}`)"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Room for every statement the vault runs (about 50), so none is parsed twice.
    conn.set_prepared_statement_cache_capacity(128);
    Ok(())
}

/// `execute` and `query_row` through the connection's statement cache. The vault runs the
/// same few dozen statements thousands of times in a bulk run, while holding the one lock
/// every worker waits on; parsing each one anew was a measurable share of that time.
pub trait CachedSql {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
}

impl CachedSql for Connection {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

/// The recorded schema version; `None` when the database has no vault tables at all.
pub fn version(conn: &Connection) -> Result<Option<i64>, StoreError> {
    let has_meta: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta')",
        [],
        |row| row.get(0),
    )?;
    if !has_meta {
        return Ok(None);
    }
    let version: Option<String> = conn
        .query_row(
            "SELECT CAST(value AS TEXT) FROM meta WHERE key = 'schema_version'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    match version {
        None => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| StoreError::Corrupt(format!("schema_version `{text}` is not a number"))),
    }
}

/// Applies every migration newer than the recorded version, each in its own immediate
/// transaction together with the version bump (re-checked under the write lock, so two
/// processes opening an old vault at once migrate it once).
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    migrate_to(conn, SCHEMA_VERSION)
}

/// Applies the migrations up to version `target` (tests build old vaults with it).
pub(crate) fn migrate_to(conn: &mut Connection, target: i64) -> Result<(), StoreError> {
    let found = version(conn)?.unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (idx, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .take(target as usize)
        .skip(found as usize)
    {
        let to = idx as i64 + 1;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Another rotor process opening the same old vault may have applied this migration
        // between our first look and our write lock.
        if version(&tx)?.unwrap_or(0) >= to {
            continue;
        }
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [to.to_string()],
        )?;
        tx.commit()?;
        tracing::info!(schema_version = to, "migrated the vault schema");
    }
    Ok(())
}

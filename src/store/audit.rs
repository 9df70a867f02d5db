//! The audit log: append-only rows chained by SHA-256, kept in the vault database, written
//! as typed [`Event`]s.
//!
//! Each row's `hash` is SHA-256 over the previous row's hash, a newline, and the canonical JSON
//! array `[seq, at, actor, action, cred, detail]`; the first row's `prev_hash` is 64 zeros.
//! `action` is the event's name (`stage`, `show`, ...) and `detail` its fields as compact JSON
//! (rows written before typed events hold free text there: they verify and display as they
//! are). An edited row breaks its own hash, a deleted row leaves a gap in `seq`, a moved row
//! breaks the link to the row before it. Deleting rows at the end would leave a valid shorter
//! chain, so the chain's head (`seq:hash`) is also kept in `meta.audit_head` with an HMAC under
//! a key derived from the vault's HMAC key: truncating the log without the master key is
//! detected too. Truncating it *and* putting back an older authentic head (copied from a
//! backup) is not detectable from the file alone: every committed head is also sent to the
//! system log ([`super::syslog`]), and [`check_heads`] compares heads recorded there with the
//! chain.
//!
//! Entries never contain a secret, a fingerprint or key material: an [`Event`] holds names,
//! ids, counts and the operator's words only, and [`crate::secret::Secret`] cannot be
//! serialized, so no variant can carry one.

use std::fmt;
use std::io::BufRead;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Deserializer, Serialize};

use super::StoreError;
use super::crypto::{KeyBytes, hex, hmac_tag, sha256_hex};
use super::schema::CachedSql;
use crate::engine::{Phase, RotationId, RunId};

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Something rotor records. The variant's name is the entry's `action` (its `event` in
/// `rotor audit log`), its fields the entry's `detail`, as JSON. Field names are part of the
/// record: old vaults hold them, so a field is renamed only with a new variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    // The vault itself.
    /// `rotor init` created the vault; where its master key lives (a path or keyring entry).
    Init { master_key: String },

    // Secrets stored and read by people.
    /// An operator stored a credential's current secret (`rotor enroll`).
    Enroll {
        version: i64,
        /// Other credentials whose current or pending secret is the same.
        shared_with: i64,
    },
    /// The enrolment settled the credential's stuck rotation (its pending secret retired).
    SettleStuck {
        #[serde(deserialize_with = "rotation_id")]
        rotation: RotationId,
    },
    /// A person read the current secret (`rotor show`); `found` is false for a credential
    /// without one.
    Show { reason: String, found: bool },
    /// Every current secret was exported for offline escrow, encrypted to `to`.
    Export {
        n_credentials: usize,
        to: String,
        /// The scopes as written (`--scope`); none: every credential.
        #[serde(default)]
        scope: Option<String>,
    },

    // Rotations (the engine's ledger).
    Stage {
        #[serde(deserialize_with = "rotation_id")]
        rotation: RotationId,
        #[serde(deserialize_with = "run_id")]
        run: RunId,
        /// The pending version that holds the new secret.
        version: i64,
        lease_token: i64,
    },
    Phase {
        #[serde(deserialize_with = "rotation_id")]
        rotation: RotationId,
        #[serde(deserialize_with = "phase")]
        from: Phase,
        #[serde(deserialize_with = "phase")]
        to: Phase,
    },
    /// The new secret was proven and is current (the outcome of a successful rotation).
    Commit {
        #[serde(deserialize_with = "rotation_id")]
        rotation: RotationId,
        version: i64,
    },
    /// The old credential was removed from the target after commit (SSH keys).
    Retired {
        #[serde(deserialize_with = "rotation_id")]
        rotation: RotationId,
    },
    /// The old credential was restored and proven; the new one never became current.
    RollBack {
        #[serde(deserialize_with = "rotation_id")]
        rotation: RotationId,
        reason: String,
    },
    /// Neither could be settled: an operator must look (both secrets kept).
    MarkStuck {
        #[serde(deserialize_with = "rotation_id")]
        rotation: RotationId,
        reason: String,
    },
    /// An operator asked for a stuck rotation to be tried again (`rotor recover --cred`).
    ReopenStuck {
        #[serde(deserialize_with = "rotation_id")]
        rotation: RotationId,
    },
    /// Recovery took an open rotation over under a new lease.
    Adopt {
        #[serde(deserialize_with = "rotation_id")]
        rotation: RotationId,
        previous_token: Option<i64>,
        token: i64,
    },
    /// A holder took over another holder's expired (or dead) lease.
    LeaseTakeover {
        previous_holder: String,
        previous_holder_gone: bool,
        previous_token: i64,
        expired_at: DateTime<Utc>,
        holder: String,
        token: i64,
    },

    // The lockout budget.
    /// rotor stopped logging in as the account (repeated rejected logins).
    Park { reason: String, failed_logins: i64 },
    /// An operator let rotor log in as it again; `was_parked` is the reason it had.
    Unpark { was_parked: Option<String> },

    // Break-glass checkouts (`crate::checkout`). Each names its checkout and ticket.
    /// A person asked for a checkout (`approval`: `required` or `none`).
    CheckoutRequested {
        checkout: i64,
        ticket: String,
        reason: String,
        /// The vendor engineer the requester named (`--for`).
        for_name: Option<String>,
        ttl_secs: u64,
        approval: String,
    },
    /// A second person approved it.
    CheckoutApproved { checkout: i64, ticket: String },
    /// A second person refused the pending request (`reason`); it is closed, nothing shown.
    CheckoutRefused {
        checkout: i64,
        ticket: String,
        reason: String,
    },
    /// The secret was shown to the requester, once; the checkout ends `until`.
    CheckoutGranted {
        checkout: i64,
        ticket: String,
        until: DateTime<Utc>,
    },
    /// The holder read the checked-out secret again (`rotor show`).
    ShowByHolder {
        checkout: i64,
        ticket: String,
        reason: String,
        found: bool,
    },
    /// Someone other than the holder read a checked-out secret (`rotor show`).
    ShowOverride {
        checkout: i64,
        ticket: String,
        reason: String,
        found: bool,
    },
    /// The holder (or anyone) checked it in: its credential is rotated now.
    CheckIn { checkout: i64, ticket: String },
    /// Its deadline passed while the secret was out: its credential is rotated now.
    CheckoutExpired { checkout: i64, ticket: String },
    /// A run with `--include-checked-out` ended it to rotate its credential.
    CheckoutOverridden { checkout: i64, ticket: String },
    /// Closed: `end` says how; `rotation` is the rotation that ended it, if one did.
    CheckoutClosed {
        checkout: i64,
        ticket: String,
        end: String,
        rotation: Option<i64>,
    },
    /// An API token was made for `name` with `role` (`rotor token create`).
    TokenCreated {
        token: i64,
        name: String,
        role: String,
        expires_at: DateTime<Utc>,
    },
    /// An API token was revoked.
    TokenRevoked { token: i64 },
    /// A call to the daemon's API or page: who by the entry's actor, the answer's status.
    ApiCall {
        method: String,
        path: String,
        status: u16,
        /// The token presented, when it was valid.
        token: Option<i64>,
    },
    /// The rotation that should end it failed; it is retried by the next rotor command.
    CheckoutRotationFailed {
        checkout: i64,
        ticket: String,
        failure: String,
    },
}

fn rotation_id<'de, D: Deserializer<'de>>(d: D) -> Result<RotationId, D::Error> {
    i64::deserialize(d).map(RotationId)
}

fn run_id<'de, D: Deserializer<'de>>(d: D) -> Result<RunId, D::Error> {
    i64::deserialize(d).map(RunId)
}

fn phase<'de, D: Deserializer<'de>>(d: D) -> Result<Phase, D::Error> {
    let text = String::deserialize(d)?;
    Phase::from_str(&text).map_err(serde::de::Error::custom)
}

impl Event {
    /// The entry's `action` and `detail` columns: the variant's name and its other fields as
    /// compact JSON.
    fn columns(&self) -> (String, String) {
        // Invariant: an `Event` is plain data (strings, numbers, booleans, a time), which
        // serde_json always serializes, as an object because of the `event` tag.
        let value = serde_json::to_value(self).expect("an audit event serializes to JSON");
        let serde_json::Value::Object(mut fields) = value else {
            unreachable!("a tagged enum serializes to an object")
        };
        let name = match fields.remove("event") {
            Some(serde_json::Value::String(name)) => name,
            _ => unreachable!("the `event` tag is the variant's name"),
        };
        (name, serde_json::Value::Object(fields).to_string())
    }

    /// What happened, in words, for `rotor audit log` (outside text such as reasons is
    /// escaped by whoever prints it).
    pub fn describe(&self) -> String {
        match self {
            Event::Init { master_key } => format!("vault created; master key in the {master_key}"),
            Event::Enroll {
                version,
                shared_with,
            } => match shared_with {
                0 => format!("secret stored as version {version}"),
                n => format!(
                    "secret stored as version {version}; the same secret is held by {n} other credential(s)"
                ),
            },
            Event::SettleStuck { rotation } => {
                format!("stuck rotation {rotation} settled by the enrolment")
            }
            Event::Show {
                reason,
                found: true,
            } => format!("secret shown; reason: {reason}"),
            Event::Show {
                reason,
                found: false,
            } => format!("no current secret to show; reason: {reason}"),
            Event::Export {
                n_credentials,
                to,
                scope,
            } => format!(
                "{n_credentials} current secret(s){} exported, encrypted to {to}",
                scope
                    .as_ref()
                    .map(|s| format!(" of scope {s}"))
                    .unwrap_or_default()
            ),
            Event::Stage {
                rotation,
                run,
                version,
                lease_token,
            } => format!(
                "rotation {rotation} (run {run}) staged pending version {version} under lease token {lease_token}"
            ),
            Event::Phase { rotation, from, to } => format!("rotation {rotation}: {from} -> {to}"),
            Event::Commit { rotation, version } => {
                format!("rotation {rotation} committed: version {version} is current")
            }
            Event::Retired { rotation } => {
                format!("rotation {rotation}: the old credential was removed from the target")
            }
            Event::RollBack { rotation, reason } => {
                format!("rotation {rotation} rolled back: {reason}")
            }
            Event::MarkStuck { rotation, reason } => {
                format!("rotation {rotation} is stuck, an operator must settle it: {reason}")
            }
            Event::ReopenStuck { rotation } => {
                format!("stuck rotation {rotation} reopened for recovery")
            }
            Event::Adopt {
                rotation,
                previous_token,
                token,
            } => match previous_token {
                Some(previous) => format!(
                    "rotation {rotation} adopted by recovery (lease token {previous} -> {token})"
                ),
                None => format!("rotation {rotation} adopted by recovery (lease token {token})"),
            },
            Event::LeaseTakeover {
                previous_holder,
                previous_holder_gone,
                previous_token,
                expired_at,
                holder,
                token,
            } => format!(
                "lease of {previous_holder} (token {previous_token}, {}) taken over by {holder} (token {token})",
                if *previous_holder_gone {
                    "its process was gone".to_owned()
                } else {
                    format!("expired {}", expired_at.format("%Y-%m-%d %H:%M:%S"))
                }
            ),
            Event::Park {
                reason,
                failed_logins,
            } => format!("parked after {failed_logins} failed login(s): {reason}"),
            Event::Unpark { was_parked } => match was_parked {
                Some(reason) => format!("unparked (was parked: {reason})"),
                None => "unparked (was not parked)".to_owned(),
            },
            Event::CheckoutRequested {
                checkout,
                ticket,
                reason,
                for_name,
                ttl_secs,
                approval,
            } => format!(
                "checkout {checkout} requested for ticket {ticket}{} for {}, approval {approval}; reason: {reason}",
                for_name
                    .as_ref()
                    .map(|n| format!(" (for {n})"))
                    .unwrap_or_default(),
                crate::text::duration_words(std::time::Duration::from_secs(*ttl_secs))
            ),
            Event::CheckoutApproved { checkout, ticket } => {
                format!("checkout {checkout} (ticket {ticket}) approved")
            }
            Event::CheckoutRefused {
                checkout,
                ticket,
                reason,
            } => format!("checkout {checkout} (ticket {ticket}) refused; reason: {reason}"),
            Event::CheckoutGranted {
                checkout,
                ticket,
                until,
            } => format!(
                "checkout {checkout} (ticket {ticket}) granted: secret shown once, until {}",
                until.format("%Y-%m-%d %H:%M UTC")
            ),
            Event::ShowByHolder {
                checkout,
                ticket,
                reason,
                ..
            } => format!(
                "checked-out secret shown to its holder (checkout {checkout}, ticket {ticket}); reason: {reason}"
            ),
            Event::ShowOverride {
                checkout,
                ticket,
                reason,
                ..
            } => format!(
                "OVERRIDE: checked-out secret shown to someone other than its holder (checkout {checkout}, ticket {ticket}); reason: {reason}"
            ),
            Event::CheckIn { checkout, ticket } => {
                format!("checkout {checkout} (ticket {ticket}) checked in; rotating")
            }
            Event::CheckoutExpired { checkout, ticket } => {
                format!("checkout {checkout} (ticket {ticket}) expired; rotating")
            }
            Event::CheckoutOverridden { checkout, ticket } => format!(
                "OVERRIDE: checkout {checkout} (ticket {ticket}) ended by a run with --include-checked-out"
            ),
            Event::CheckoutClosed {
                checkout,
                ticket,
                end,
                rotation,
            } => match rotation {
                Some(r) => {
                    format!("checkout {checkout} (ticket {ticket}) closed ({end}) by rotation {r}")
                }
                None => format!("checkout {checkout} (ticket {ticket}) closed ({end})"),
            },
            Event::TokenCreated {
                token,
                name,
                role,
                expires_at,
            } => format!(
                "API token {token} made for {name} ({role}), valid until {}",
                expires_at.format("%Y-%m-%d %H:%M UTC")
            ),
            Event::TokenRevoked { token } => format!("API token {token} revoked"),
            Event::ApiCall {
                method,
                path,
                status,
                token,
            } => match token {
                Some(t) => format!("API {method} {path}: {status} (token {t})"),
                None => format!("API {method} {path}: {status}"),
            },
            Event::CheckoutRotationFailed {
                checkout,
                ticket,
                failure,
            } => format!(
                "checkout {checkout} (ticket {ticket}): the rotation ending it failed, retried later: {failure}"
            ),
        }
    }
}

/// The head of the chain: its last entry's sequence number and hash. Printed (and sent to the
/// system log) as `seq=N hash=HEX`, which [`head_in_line`] finds again in any line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Head {
    pub seq: i64,
    pub hash: String,
}

impl fmt::Display for Head {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seq={} hash={}", self.seq, self.hash)
    }
}

/// One entry to append, before it gets its sequence number and hashes.
struct Entry<'a> {
    at: &'a str,
    actor: &'a str,
    action: &'a str,
    cred: Option<&'a str>,
    detail: &'a str,
}

fn row_hash(prev_hash: &str, seq: i64, entry: &Entry<'_>) -> String {
    let canonical = serde_json::json!([
        seq,
        entry.at,
        entry.actor,
        entry.action,
        entry.cred,
        entry.detail
    ])
    .to_string();
    sha256_hex(format!("{prev_hash}\n{canonical}").as_bytes())
}

/// The key that authenticates the chain head, derived so that it is never the same key as the
/// one that fingerprints secrets.
fn head_mac(hmac_key: &KeyBytes, seq: i64, hash: &str) -> String {
    let head_key = KeyBytes::from_slice(&hmac_tag(hmac_key, b"rotor/v1/audit-head-key"))
        // hmac_tag returns exactly 32 bytes, the key length.
        .expect("an HMAC-SHA256 tag is 32 bytes, the key length");
    hex(&hmac_tag(&head_key, format!("{seq}:{hash}").as_bytes()))
}

/// Appends `event` inside the caller's transaction; returns the new head. The caller
/// announces the head once the transaction has committed, never before.
pub(super) fn append(
    conn: &Connection,
    hmac_key: &KeyBytes,
    at: &str,
    actor: &str,
    event: &Event,
    cred: Option<&str>,
) -> Result<Head, StoreError> {
    let (action, detail) = event.columns();
    let entry = Entry {
        at,
        actor,
        action: &action,
        cred,
        detail: &detail,
    };
    let (last_seq, last_hash): (i64, String) = conn
        .row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?
        .unwrap_or((0, GENESIS.to_owned()));
    let (seq, prev_hash) = next_link(conn, hmac_key, last_seq, last_hash)?;
    let hash = row_hash(&prev_hash, seq, &entry);
    conn.exec(
        "INSERT INTO audit (seq, at, actor, action, cred, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            seq,
            entry.at,
            entry.actor,
            entry.action,
            entry.cred,
            entry.detail,
            prev_hash,
            hash
        ],
    )?;
    let head = format!("{seq}:{hash}:{}", head_mac(hmac_key, seq, &hash));
    conn.exec(
        "INSERT INTO meta (key, value) VALUES ('audit_head', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [head],
    )?;
    Ok(Head { seq, hash })
}

/// Where the next entry goes. Normally right after the last row. But a new entry must never
/// hide tampering that `verify` would have found: if the recorded head is authentic and
/// ahead of the last row (entries at the end were deleted), the new entry continues after
/// the head, so the gap stays and `verify` still names the missing entries; if the recorded
/// head is missing, not authentic, or behind the last row (rows forged after it) while rows
/// exist, the new entry leaves a one-entry gap for the same reason. Either way the vault keeps working (every write audits) and the
/// evidence stays.
fn next_link(
    conn: &Connection,
    hmac_key: &KeyBytes,
    last_seq: i64,
    last_hash: String,
) -> Result<(i64, String), StoreError> {
    let recorded: Option<String> = conn
        .row(
            "SELECT CAST(value AS TEXT) FROM meta WHERE key = 'audit_head'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    let authentic = recorded.as_deref().and_then(|r| {
        let mut parts = r.splitn(3, ':');
        let (seq, hash, mac) = (parts.next()?, parts.next()?, parts.next()?);
        let seq: i64 = seq.parse().ok()?;
        (mac == head_mac(hmac_key, seq, hash)).then(|| (seq, hash.to_owned()))
    });
    Ok(match authentic {
        Some((head_seq, head_hash)) if head_seq == last_seq && head_hash == last_hash => {
            (last_seq + 1, last_hash)
        }
        Some((head_seq, head_hash)) if head_seq > last_seq => {
            tracing::error!(
                head_seq,
                last_seq,
                "the audit log ends before its recorded head: entries were deleted; the gap is kept"
            );
            (head_seq + 1, head_hash)
        }
        None if last_seq == 0 => (1, last_hash),
        _ => {
            tracing::error!(
                last_seq,
                "the audit log does not end at its recorded head (missing, not authentic, or rows added after it); the gap is kept"
            );
            (last_seq + 2, last_hash)
        }
    })
}

/// A row as someone without the key could forge it after `prev_hash` (tests): its time,
/// detail and a correct chain hash.
#[cfg(test)]
pub(super) fn forge_row_for_tests(prev_hash: &str, seq: i64) -> (String, String, String) {
    let at = "2030-01-01T00:00:00.000000Z".to_owned();
    let detail = r#"{"reason":"forged","found":true}"#.to_owned();
    let entry = Entry {
        at: &at,
        actor: "mallory",
        action: "show",
        cred: None,
        detail: &detail,
    };
    let hash = row_hash(prev_hash, seq, &entry);
    (at, detail, hash)
}

/// A chain that verified: how many entries, and its head (`None` for an empty log).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verified {
    pub n_entries: usize,
    pub head: Option<Head>,
}

fn tampered(seq: i64, reason: String) -> StoreError {
    StoreError::AuditTampered { seq, reason }
}

/// Walks the whole chain; returns its length and head, or the entry where it breaks.
pub fn verify(conn: &Connection, hmac_key: &KeyBytes) -> Result<Verified, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT seq, at, actor, action, cred, detail, prev_hash, hash FROM audit ORDER BY seq",
    )?;
    let mut rows = stmt.query([])?;
    let mut expected_seq = 1;
    let mut prev_hash = GENESIS.to_owned();
    let mut n_entries = 0;
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        let (at, actor, action): (String, String, String) = (row.get(1)?, row.get(2)?, row.get(3)?);
        let cred: Option<String> = row.get(4)?;
        let detail: String = row.get(5)?;
        let (stored_prev, stored_hash): (String, String) = (row.get(6)?, row.get(7)?);
        if seq != expected_seq {
            let missing = match seq - 1 {
                last if last == expected_seq => format!("entry {expected_seq} is missing"),
                last => format!("entries {expected_seq} to {last} are missing"),
            };
            return Err(tampered(
                expected_seq,
                format!("{missing} (deleted: the log goes on at entry {seq})"),
            ));
        }
        if stored_prev != prev_hash {
            return Err(tampered(
                seq,
                format!(
                    "its link to entry {} is wrong (entries were reordered, replaced or inserted)",
                    seq - 1
                ),
            ));
        }
        let entry = Entry {
            at: &at,
            actor: &actor,
            action: &action,
            cred: cred.as_deref(),
            detail: &detail,
        };
        if row_hash(&prev_hash, seq, &entry) != stored_hash {
            return Err(tampered(
                seq,
                "its contents do not match its hash (the entry was edited)".into(),
            ));
        }
        prev_hash = stored_hash;
        expected_seq += 1;
        n_entries += 1;
    }
    let last_seq = expected_seq - 1;
    let head = (last_seq > 0).then(|| Head {
        seq: last_seq,
        hash: prev_hash.clone(),
    });
    let recorded: Option<String> = conn
        .row(
            "SELECT CAST(value AS TEXT) FROM meta WHERE key = 'audit_head'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    let Some(recorded) = recorded else {
        return match head {
            None => Ok(Verified {
                n_entries,
                head: None,
            }),
            Some(_) => Err(tampered(
                last_seq,
                "the recorded head of the log is missing".into(),
            )),
        };
    };
    let mut parts = recorded.splitn(3, ':');
    let (head_seq, head_hash, mac) = (parts.next(), parts.next(), parts.next());
    let head_seq: Option<i64> = head_seq.and_then(|s| s.parse().ok());
    match (head_seq, head_hash, mac) {
        (Some(head_seq), Some(head_hash), Some(mac))
            if mac == head_mac(hmac_key, head_seq, head_hash) =>
        {
            if head_seq != last_seq || head_hash != prev_hash {
                Err(tampered(
                    last_seq + 1,
                    format!(
                        "the log ends at entry {last_seq} but entry {head_seq} was written \
                         (entries at the end were deleted or replaced)"
                    ),
                ))
            } else {
                Ok(Verified { n_entries, head })
            }
        }
        _ => Err(tampered(
            last_seq,
            "the recorded head of the log is not authentic".into(),
        )),
    }
}

/// The head of the chain as stored (its last entry), without verifying anything.
pub fn head(conn: &Connection) -> Result<Option<Head>, StoreError> {
    Ok(conn
        .row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |row| {
                Ok(Head {
                    seq: row.get(0)?,
                    hash: row.get(1)?,
                })
            },
        )
        .optional()?)
}

/// A head recorded outside the vault, and the line it was read from (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedHead {
    pub head: Head,
    pub line: usize,
}

/// The head a line holds: the first `seq=N hash=HEX` in it (64 hex digits), wherever the
/// line comes from: `rotor audit head`, the system log (`journalctl -t rotor`), a copy.
pub fn head_in_line(line: &str) -> Option<Head> {
    line.match_indices("seq=").find_map(|(at, _)| {
        let rest = &line[at + "seq=".len()..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let seq: i64 = rest[..digits].parse().ok().filter(|&seq| seq >= 1)?;
        let tail = rest[digits..].strip_prefix(" hash=")?;
        let hash = tail.get(..64)?;
        let longer = tail[64..].starts_with(|c: char| c.is_ascii_hexdigit());
        (hash.bytes().all(|b| b.is_ascii_hexdigit()) && !longer).then(|| Head {
            seq,
            hash: hash.to_ascii_lowercase(),
        })
    })
}

/// Every head in `input`, one line at a time (lines that hold none are skipped; bytes that are
/// not UTF-8 are read as replacement characters, so a binary journal export cannot stop it).
/// A line that names another vault (`vault=DIR`, as rotor's system log lines do) is skipped:
/// a machine with several vaults, or a forged line for another one, says nothing about this.
pub fn heads_in(input: impl BufRead, this_vault: &str) -> std::io::Result<Vec<RecordedHead>> {
    let mut heads = Vec::new();
    for (idx, line) in input.split(b'\n').enumerate() {
        let line = String::from_utf8_lossy(&line?).into_owned();
        // `vault=DIR` is the last field: the rest of the line.
        let other_vault = line
            .rsplit_once(" vault=")
            .is_some_and(|(_, named)| named.trim_end() != this_vault);
        if other_vault {
            continue;
        }
        if let Some(head) = head_in_line(&line) {
            heads.push(RecordedHead {
                head,
                line: idx + 1,
            });
        }
    }
    Ok(heads)
}

/// Checks heads recorded elsewhere against a chain that [`verify`] accepted: each must name an
/// entry of the chain with that very hash. A head beyond the chain's end means entries at the
/// end were deleted (and an older head put back in `meta`, or `verify` would have said so):
/// the first missing entry is named. `source` names where the heads came from (a file).
pub fn check_heads(
    conn: &Connection,
    chain: &Verified,
    heads: &[RecordedHead],
    source: &str,
) -> Result<(), StoreError> {
    let last_seq = chain.head.as_ref().map_or(0, |h| h.seq);
    if let Some(beyond) = heads.iter().max_by_key(|h| h.head.seq)
        && beyond.head.seq > last_seq
    {
        return Err(tampered(
            last_seq + 1,
            format!(
                "the log ends at entry {last_seq}, but {source} line {} records entry {} as written \
                 (entries {} to {} were deleted, and an older head of the log was put back)",
                beyond.line,
                beyond.head.seq,
                last_seq + 1,
                beyond.head.seq
            ),
        ));
    }
    for recorded in heads {
        let stored: Option<String> = conn
            .row(
                "SELECT hash FROM audit WHERE seq = ?1",
                [recorded.head.seq],
                |row| row.get(0),
            )
            .optional()?;
        match stored {
            Some(hash) if hash == recorded.head.hash => {}
            _ => {
                return Err(tampered(
                    recorded.head.seq,
                    format!(
                        "it is not the entry {source} line {} records (another hash): the log \
                         was rewritten from this entry or before",
                        recorded.line
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// One entry read back, for `rotor audit log`. Text in it comes from outside (actors,
/// credentials, reasons): escape it before it reaches a terminal.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Record {
    pub seq: i64,
    /// RFC 3339, UTC, as written.
    pub at: String,
    pub actor: String,
    /// The event's name (the `action` column).
    pub event: String,
    pub cred: Option<String>,
    pub fields: Fields,
}

/// An entry's fields: the event's JSON object, or the free text of an entry written before
/// typed events.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Fields {
    Json(serde_json::Map<String, serde_json::Value>),
    Text(String),
}

impl Record {
    fn new(
        seq: i64,
        at: String,
        actor: String,
        event: String,
        cred: Option<String>,
        detail: String,
    ) -> Record {
        let fields = match serde_json::from_str::<serde_json::Value>(&detail) {
            Ok(serde_json::Value::Object(map)) => Fields::Json(map),
            _ => Fields::Text(detail),
        };
        Record {
            seq,
            at,
            actor,
            event,
            cred,
            fields,
        }
    }

    /// The typed event, for entries this rotor knows (`None` for free text, and for events
    /// a newer rotor wrote).
    pub fn typed(&self) -> Option<Event> {
        let Fields::Json(map) = &self.fields else {
            return None;
        };
        let mut map = map.clone();
        map.insert(
            "event".into(),
            serde_json::Value::String(self.event.clone()),
        );
        serde_json::from_value(serde_json::Value::Object(map)).ok()
    }

    /// What happened, in words: the event's sentence, else its fields as `name=value`, else
    /// the old entry's text.
    pub fn describe(&self) -> String {
        if let Some(event) = self.typed() {
            return event.describe();
        }
        match &self.fields {
            Fields::Text(text) => text.clone(),
            Fields::Json(map) => map
                .iter()
                .map(|(name, value)| match value {
                    serde_json::Value::String(s) => format!("{name}={s}"),
                    other => format!("{name}={other}"),
                })
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    fn time(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.at)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// Which entries `rotor audit log` shows; every condition set must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// At or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Before this time.
    pub until: Option<DateTime<Utc>>,
    /// The credential, exactly (`HOST/ACCOUNT`).
    pub cred: Option<String>,
    /// The person: the actor's first word (the actor reads `alice`, or `alice (via sudo ...)`).
    pub actor: Option<String>,
    /// Events whose `ticket` field is this.
    pub ticket: Option<String>,
}

impl Filter {
    pub fn matches(&self, record: &Record) -> bool {
        let time_ok = match (self.since, self.until) {
            (None, None) => true,
            // An entry whose time cannot be read is not "in" any range.
            _ => record.time().is_some_and(|at| {
                self.since.is_none_or(|since| at >= since)
                    && self.until.is_none_or(|until| at < until)
            }),
        };
        let cred_ok = self
            .cred
            .as_ref()
            .is_none_or(|c| record.cred.as_ref() == Some(c));
        let actor_ok = self.actor.as_ref().is_none_or(|u| {
            record.actor == *u || record.actor.split_whitespace().next() == Some(u.as_str())
        });
        let ticket_ok = self.ticket.as_ref().is_none_or(|t| match &record.fields {
            Fields::Json(map) => map.get("ticket").and_then(|v| v.as_str()) == Some(t.as_str()),
            Fields::Text(_) => false,
        });
        time_ok && cred_ok && actor_ok && ticket_ok
    }
}

/// A time bound of `rotor audit log --since/--until` and `GET /api/v1/audit?since=&until=`:
/// an instant, or a whole day (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeArg {
    At(DateTime<Utc>),
    Day(chrono::NaiveDate),
}

impl TimeArg {
    /// The first instant it names (a day: its midnight).
    pub fn start(self) -> DateTime<Utc> {
        match self {
            TimeArg::At(at) => at,
            TimeArg::Day(day) => day.and_time(chrono::NaiveTime::MIN).and_utc(),
        }
    }

    /// The instant after it (a day: the next midnight).
    pub fn end(self) -> DateTime<Utc> {
        match self {
            TimeArg::At(at) => at,
            TimeArg::Day(_) => self.start() + chrono::TimeDelta::days(1),
        }
    }
}

/// Reads a time bound: RFC 3339, or a day (`2026-03-05`).
pub fn parse_time(text: &str) -> Result<TimeArg, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(TimeArg::At(at.with_timezone(&Utc)));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(TimeArg::Day)
        .map_err(|_| {
            "expected an RFC 3339 time (2026-03-05T09:00:00Z, or with an offset: +09:00) or a day (2026-03-05)".to_owned()
        })
}

/// The entries `filter` selects, in order.
pub fn log(conn: &Connection, filter: &Filter) -> Result<Vec<Record>, StoreError> {
    // A credential filter is asked of SQLite (index `audit_cred`, schema 8): the page asks
    // for one credential's entries on every view, and the log grows with every API call.
    let mut stmt = conn.prepare_cached(
        "SELECT seq, at, actor, action, cred, detail FROM audit
         WHERE ?1 IS NULL OR cred = ?1 ORDER BY seq",
    )?;
    let mut rows = stmt.query([filter.cred.as_deref()])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let record = Record::new(
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
        );
        if filter.matches(&record) {
            out.push(record);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: i64, event: &Event, actor: &str, cred: Option<&str>) -> Record {
        let (action, detail) = event.columns();
        Record::new(
            seq,
            format!("2026-03-0{seq}T10:00:00.000000Z"),
            actor.into(),
            action,
            cred.map(str::to_owned),
            detail,
        )
    }

    fn samples() -> Vec<Event> {
        vec![
            Event::Init {
                master_key: "key file /v/master.key".into(),
            },
            Event::Enroll {
                version: 3,
                shared_with: 2,
            },
            Event::Show {
                reason: "INC-42".into(),
                found: true,
            },
            Event::Stage {
                rotation: RotationId(7),
                run: RunId(2),
                version: 9,
                lease_token: 11,
            },
            Event::Phase {
                rotation: RotationId(7),
                from: Phase::Staged,
                to: Phase::RollingBack,
            },
            Event::Adopt {
                rotation: RotationId(7),
                previous_token: None,
                token: 12,
            },
            Event::LeaseTakeover {
                previous_holder: "rotor pid 1".into(),
                previous_holder_gone: true,
                previous_token: 4,
                expired_at: DateTime::parse_from_rfc3339("2026-03-01T10:00:00.123456Z")
                    .unwrap()
                    .with_timezone(&Utc),
                holder: "rotor pid 2".into(),
                token: 5,
            },
            Event::Unpark { was_parked: None },
        ]
    }

    #[test]
    fn an_event_reads_back_as_itself_from_its_columns() {
        for event in samples() {
            let (action, detail) = event.columns();
            assert!(!detail.contains("\"event\""), "{detail}");
            let back = record(1, &event, "alice", None);
            assert_eq!(back.event, action);
            assert_eq!(back.typed().as_ref(), Some(&event), "{detail}");
            assert!(!back.describe().is_empty());
        }
        let (action, detail) = samples()[4].columns();
        assert_eq!(
            (action.as_str(), detail.as_str()),
            (
                "phase",
                r#"{"from":"staged","rotation":7,"to":"rolling_back"}"#
            )
        );
    }

    /// Entries written before typed events: free text shows as it is, and the JSON details of
    /// that time read as today's events.
    #[test]
    fn old_entries_still_display() {
        let text = Record::new(
            5,
            "2025-01-01T00:00:00Z".into(),
            "root".into(),
            "stage".into(),
            Some("h1/a".into()),
            "rotation 5; run 2; pending version 7; lease token 3".into(),
        );
        assert_eq!(text.typed(), None);
        assert_eq!(
            text.describe(),
            "rotation 5; run 2; pending version 7; lease token 3"
        );
        assert_eq!(
            serde_json::to_value(&text).unwrap()["fields"],
            "rotation 5; run 2; pending version 7; lease token 3"
        );
        let show = Record::new(
            6,
            "2025-01-01T00:00:00Z".into(),
            "root".into(),
            "show".into(),
            Some("h1/a".into()),
            r#"{"reason":"T-1","found":true}"#.into(),
        );
        assert_eq!(show.describe(), "secret shown; reason: T-1");
        // An event of a newer rotor: its fields in words.
        let newer = Record::new(
            7,
            "2025-01-01T00:00:00Z".into(),
            "root".into(),
            "teleport".into(),
            None,
            r#"{"to":"mars","n":2}"#.into(),
        );
        assert_eq!(newer.describe(), "n=2, to=mars");
    }

    #[test]
    fn filters_select_by_time_credential_person_and_ticket() {
        let show = |reason: &str| Event::Show {
            reason: reason.into(),
            found: true,
        };
        let mut records = vec![
            record(1, &samples()[0], "root", None),
            record(2, &show("a"), "alice", Some("h1/a")),
            record(
                3,
                &show("b"),
                "bob (via sudo, SUDO_USER=carol, as claimed)",
                Some("h1/b"),
            ),
            record(4, &show("c"), "alice", Some("h1/b")),
        ];
        // A checkout-like event with a ticket (variants to come carry one).
        records.push(Record::new(
            5,
            "2026-03-05T10:00:00Z".into(),
            "dave".into(),
            "checkout_requested".into(),
            Some("h1/a".into()),
            r#"{"ticket":"T-9","reason":"vendor"}"#.into(),
        ));
        let at = |s: &str| Some(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc));
        let check = |filter: Filter, expect: &[i64]| {
            let got: Vec<i64> = records
                .iter()
                .filter(|r| filter.matches(r))
                .map(|r| r.seq)
                .collect();
            assert_eq!(got, expect, "{filter:?}");
        };
        check(Filter::default(), &[1, 2, 3, 4, 5]);
        check(
            Filter {
                since: at("2026-03-02T10:00:00Z"),
                until: at("2026-03-04T10:00:00Z"),
                ..Filter::default()
            },
            &[2, 3],
        );
        check(
            Filter {
                cred: Some("h1/b".into()),
                ..Filter::default()
            },
            &[3, 4],
        );
        let actor = |u: &str| Filter {
            actor: Some(u.into()),
            ..Filter::default()
        };
        let ticket = |t: &str| Filter {
            ticket: Some(t.into()),
            ..Filter::default()
        };
        check(actor("alice"), &[2, 4]);
        // The person is the actor's first word; a claimed SUDO_USER is not the person.
        check(actor("bob"), &[3]);
        check(actor("carol"), &[]);
        check(ticket("T-9"), &[5]);
        check(
            Filter {
                cred: Some("h1/b".into()),
                ..ticket("T-9")
            },
            &[],
        );
    }

    #[test]
    fn heads_are_found_in_any_line_that_holds_one() {
        let hash = "3fa9".repeat(16);
        let check = |line: &str, expect: Option<i64>| {
            assert_eq!(head_in_line(line).map(|h| h.seq), expect, "{line}");
        };
        check(&format!("seq=42 hash={hash}"), Some(42));
        check(
            &format!("Mar 05 10:00:00 box rotor[77]: audit head seq=9 hash={hash} vault=/v"),
            Some(9),
        );
        check(&format!("xseq=3 hash={}", hash.to_uppercase()), Some(3));
        check(&format!("seq=1 hash={}", &hash[..63]), None);
        check(&format!("seq=1 hash={hash}f"), None);
        check(&format!("seq=0 hash={hash}"), None);
        check(&format!("seq= hash={hash}"), None);
        check(&format!("seq=99999999999999999999 hash={hash}"), None);
        check(&format!("seq=1  hash={hash}"), None);
        check(&format!("seq=é hash=é{hash}"), None);
        check("", None);
        let heads = heads_in(&b"noise\n\xff\xfe\nseq=2 hash=00000000000000000000000000000000000000000000000000000000000000ab\n"[..], "/v").unwrap();
        assert_eq!(heads.len(), 1);
        assert_eq!(heads[0].line, 3);
        assert_eq!(heads[0].head.seq, 2);
        // A line naming another vault is none of this one's business.
        let lines = format!(
            "rotor[1]: audit head seq=7 hash={hash} vault=/other\nrotor[2]: audit head seq=3 hash={hash} vault=/v\n"
        );
        let heads = heads_in(lines.as_bytes(), "/v").unwrap();
        assert_eq!(heads.len(), 1);
        assert_eq!((heads[0].line, heads[0].head.seq), (2, 3));
    }
}

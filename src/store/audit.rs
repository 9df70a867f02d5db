//! The audit log: append-only rows chained by SHA-256, kept in the vault database.
//!
//! Each row's `hash` is SHA-256 over the previous row's hash, a newline, and the canonical JSON
//! array `[seq, at, actor, action, cred, detail]`; the first row's `prev_hash` is 64 zeros.
//! An edited row breaks its own hash, a deleted row leaves a gap in `seq`. Deleting rows at the
//! end would leave a valid shorter chain, so the chain's head (`seq:hash`) is also kept in
//! `meta.audit_head` with an HMAC under a key derived from the vault's HMAC key: truncating the
//! log without the master key is detected too.
//!
//! Entries never contain a secret, a fingerprint or key material: callers pass names, ids and
//! the operator's reason only.

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use super::crypto::{KeyBytes, hex, hmac_tag, sha256_hex};
use super::schema::CachedSql;

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One entry to append, before it gets its sequence number and hashes.
pub struct Entry<'a> {
    pub at: &'a str,
    pub actor: &'a str,
    pub action: &'a str,
    pub cred: Option<&'a str>,
    pub detail: &'a str,
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

/// Appends an entry inside the caller's transaction; returns its sequence number.
pub fn append(
    conn: &Connection,
    hmac_key: &KeyBytes,
    entry: &Entry<'_>,
) -> Result<i64, StoreError> {
    let (last_seq, prev_hash): (i64, String) = conn
        .row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?
        .unwrap_or((0, GENESIS.to_owned()));
    let seq = last_seq + 1;
    let hash = row_hash(&prev_hash, seq, entry);
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
    Ok(seq)
}

/// Walks the whole chain; returns the number of entries, or where it breaks.
pub fn verify(conn: &Connection, hmac_key: &KeyBytes) -> Result<usize, StoreError> {
    let tampered = |seq: i64, reason: String| StoreError::AuditTampered { seq, reason };
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
            return Err(tampered(
                expected_seq,
                format!("entries {expected_seq} to {} are missing", seq - 1),
            ));
        }
        if stored_prev != prev_hash {
            return Err(tampered(
                seq,
                "its link to the previous entry is wrong".into(),
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
    let head: Option<String> = conn
        .row(
            "SELECT CAST(value AS TEXT) FROM meta WHERE key = 'audit_head'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    match head {
        None if last_seq == 0 => Ok(0),
        None => Err(tampered(
            last_seq,
            "the recorded head of the log is missing".into(),
        )),
        Some(head) => {
            let mut parts = head.splitn(3, ':');
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
                        Ok(n_entries)
                    }
                }
                _ => Err(tampered(
                    last_seq,
                    "the recorded head of the log is not authentic".into(),
                )),
            }
        }
    }
}

//! API tokens (schema 7) for the daemon's HTTP API: `rotor token create|list|revoke`. A
//! token is `rotor_<id>_<43 base64url characters of 32 random bytes>`; the vault keeps only
//! its keyed hash, so a copy of the vault file calls nothing. Each create and revoke is one
//! durable, audited transaction; the token itself is returned once and never stored.

use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use super::{Vault, parse_time, time_text};
use crate::engine::ledger::Actor;
use crate::secret::Secret;
use crate::store::StoreError;
use crate::store::audit::Event;
use crate::store::crypto::{KeyBytes, hex, hmac_tag};
use crate::store::schema::CachedSql;

/// What a token may do over the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Request, claim and check in checkouts.
    Requester,
    /// Approve others' checkouts (and what a requester may).
    Approver,
    /// Everything: rotations, the audit log, tokens.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Approver => "approver",
            Role::Requester => "requester",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Some(match text {
            "admin" => Role::Admin,
            "approver" => Role::Approver,
            "requester" => Role::Requester,
            _ => return None,
        })
    }
}

/// A token as listed (never the token itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Who a valid token speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub token_id: i64,
    pub name: String,
    pub role: Role,
}

const PREFIX: &str = "rotor_";

/// The longest a token may live.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(366 * 86_400);

impl Vault {
    /// The key token hashes are made with: derived, so it is never the key that fingerprints
    /// secrets nor the one that authenticates the audit head.
    fn token_key(&self) -> KeyBytes {
        KeyBytes::from_slice(&hmac_tag(&self.hmac_key, b"rotor/v1/api-token-key"))
            .expect("an HMAC-SHA256 tag is 32 bytes, the key length")
    }

    fn token_hash(&self, token: &str) -> String {
        hex(&hmac_tag(&self.token_key(), token.as_bytes()))
    }

    /// Creates a token for `name` with `role`, valid for `ttl`; returns its record and the
    /// token, shown once.
    pub fn token_create(
        &self,
        by: &Actor,
        name: &str,
        role: Role,
        ttl: Duration,
    ) -> Result<(TokenRecord, Secret), StoreError> {
        let cut: String = name.trim().chars().take(64).collect();
        let name = crate::text::escape(&cut).into_owned();
        if name.is_empty() {
            return Err(StoreError::Refused(
                "a token needs a --name: it is who the audit log says made each call".into(),
            ));
        }
        if ttl < Duration::from_secs(60) || ttl > MAX_TOKEN_TTL {
            return Err(StoreError::Refused(
                "a token's --ttl must be between 1m and 366d".into(),
            ));
        }
        let mut random = [0u8; 32];
        self.entropy.rng().fill_bytes(&mut random);
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random);
        let now = self.now();
        let expires = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        self.write(|tx| {
            let next: i64 = tx.row(
                "SELECT COALESCE(MAX(id), 0) + 1 FROM api_tokens",
                [],
                |row| row.get(0),
            )?;
            let token = format!("{PREFIX}{next}_{body}");
            tx.exec(
                "INSERT INTO api_tokens (id, name, role, hash, created_at, created_by, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    next,
                    name,
                    role.as_str(),
                    self.token_hash(&token),
                    time_text(now),
                    by.as_str(),
                    time_text(expires)
                ],
            )?;
            let event = Event::TokenCreated {
                token: next,
                name: name.clone(),
                role: role.as_str().to_owned(),
                expires_at: expires,
            };
            self.audit_append_in(by, tx, &event, None)?;
            Ok((
                TokenRecord {
                    id: next,
                    name: name.clone(),
                    role,
                    created_at: now,
                    created_by: by.as_str().to_owned(),
                    expires_at: expires,
                    revoked_at: None,
                },
                Secret::new(token),
            ))
        })
    }

    /// Every token ever made, oldest first.
    pub fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        token_records(&self.lock(), "1 ORDER BY id", [])
    }

    /// Revokes token `id` (its calls are refused from now on). Audited.
    pub fn token_revoke(&self, by: &Actor, id: i64) -> Result<TokenRecord, StoreError> {
        let changed = self.write(|tx| {
            let changed = tx.exec(
                "UPDATE api_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, self.now_text()],
            )?;
            if changed > 0 {
                self.audit_append_in(by, tx, &Event::TokenRevoked { token: id }, None)?;
            }
            Ok(changed)
        })?;
        let record = token_records(&self.lock(), "id = ?1", [id])?
            .pop()
            .ok_or_else(|| {
                StoreError::Refused(format!(
                    "there is no token {id}: `rotor token list` shows them"
                ))
            })?;
        if changed == 0 {
            tracing::info!(token = id, "token was already revoked");
        }
        Ok(record)
    }

    /// Who `token` speaks for, if it is valid now (known, not revoked, not expired). The
    /// lookup is by keyed hash, so no token is compared as text.
    pub fn token_principal(&self, token: &Secret) -> Result<Option<Principal>, StoreError> {
        let token = token.expose();
        if !token.starts_with(PREFIX) || token.len() > 200 {
            return Ok(None);
        }
        let found = token_records(&self.lock(), "hash = ?1", [self.token_hash(token)])?.pop();
        Ok(found
            .filter(|t| t.revoked_at.is_none() && t.expires_at > self.now())
            .map(|t| Principal {
                token_id: t.id,
                name: t.name,
                role: t.role,
            }))
    }
}

/// The tokens `WHERE condition` selects (the one query every lookup goes through).
fn token_records(
    conn: &Connection,
    condition: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<TokenRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id, name, role, created_at, created_by, expires_at, revoked_at
         FROM api_tokens WHERE {condition}"
    ))?;
    let rows = stmt.query_map(params, |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, String>(4)?,
            row.get::<_, String>(5)?,
            row.get::<_, Option<String>>(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, name, role, created, by, expires, revoked) = row?;
        out.push(TokenRecord {
            id,
            name,
            role: Role::parse(&role)
                .ok_or_else(|| StoreError::Corrupt(format!("token {id} has role `{role}`")))?,
            created_at: parse_time(&created)?,
            created_by: by,
            expires_at: parse_time(&expires)?,
            revoked_at: revoked.as_deref().map(parse_time).transpose()?,
        });
    }
    Ok(out)
}

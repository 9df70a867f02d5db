//! Break-glass checkouts in the vault: the `checkouts` table (schema 6), each state change in
//! one durable transaction with its audit entry, the rules of `crate::checkout` checked inside
//! that transaction (so two people acting at once cannot both win), and the secret decrypted
//! in the same transaction that records its grant.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{Vault, parse_cred, parse_time, time_text};
use crate::checkout::{self, Due, End, Read, State};
use crate::credential::CredentialId;
use crate::engine::RotationId;
use crate::engine::ledger::{Actor, Identified};
use crate::secret::Secret;
use crate::store::StoreError;
use crate::store::audit::Event;
use crate::store::schema::CachedSql;

/// One checkout as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutRecord {
    pub id: i64,
    pub cred: CredentialId,
    pub state: State,
    /// The person of record (who the rules compare).
    pub requester: String,
    /// The requester as the audit log shows them (with the sudo note).
    pub requester_shown: String,
    /// The request came through sudo (a shared rotor machine): so must its approval.
    pub requester_via_sudo: bool,
    /// The vendor engineer the operator named (`--for`).
    pub for_name: Option<String>,
    pub ticket: String,
    pub reason: String,
    pub ttl: Duration,
    /// The inventory file check-in and expiry rotate the credential with.
    pub inventory: String,
    pub requested_at: DateTime<Utc>,
    pub approved_by: Option<String>,
    pub approved_at: Option<DateTime<Utc>>,
    pub granted_at: Option<DateTime<Utc>>,
    /// Open: when it expires. Pending or approved: when the request lapses.
    pub ends_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub end: Option<End>,
    pub ended_by: Option<String>,
    /// The rotation that ended it.
    pub rotation: Option<i64>,
    /// Why the last rotation at its end failed (it is retried by every later command).
    pub failure: Option<String>,
}

impl CheckoutRecord {
    /// The state in words: `expired, rotation failed` and the like.
    pub fn state_words(&self) -> String {
        match (self.state, self.end) {
            (State::Ending, Some(end)) => {
                let what = match end {
                    End::Expired => "expired",
                    End::CheckIn => "checked in",
                    End::Forced => "ended by a rotation",
                    End::Cancelled | End::Lapsed | End::Refused => "ending",
                };
                if self.failure.is_some() {
                    format!("{what}, rotation failed")
                } else {
                    format!("{what}, rotating")
                }
            }
            (State::Closed, Some(end)) => match end {
                End::CheckIn => "closed (checked in)".into(),
                End::Expired => "closed (expired)".into(),
                End::Forced => "closed (rotated by a run)".into(),
                End::Cancelled => "closed (cancelled)".into(),
                End::Lapsed => "closed (lapsed)".into(),
                End::Refused => "closed (refused)".into(),
            },
            (state, _) => state.as_str().into(),
        }
    }

    /// "alice (for vendor-kato), ticket T-1, until 2026-12-01 11:00 UTC" for refusals and skips.
    pub fn holder_words(&self) -> String {
        let who = match &self.for_name {
            Some(name) => format!("{} (for {name})", self.requester),
            None => self.requester.clone(),
        };
        let until = self
            .ends_at
            .map(|t| format!(", until {}", t.format("%Y-%m-%d %H:%M UTC")))
            .unwrap_or_default();
        format!(
            "checkout {} by {who}, ticket {}{until}",
            self.id, self.ticket
        )
    }
}

/// A checkout request (`rotor checkout`).
pub struct NewCheckout<'a> {
    pub cred: &'a CredentialId,
    pub ticket: &'a str,
    pub reason: &'a str,
    pub for_name: Option<&'a str>,
    pub ttl: Duration,
    pub inventory: &'a str,
    pub needs_approval: bool,
}

/// What `show_checked` read and how it was recorded.
pub struct Shown {
    pub secret: Option<Secret>,
    /// The credential's open checkout, and whether this read was its holder's or an override.
    pub checkout: Option<(CheckoutRecord, Read)>,
}

const COLUMNS: &str = "id, cred, state, requester, requester_shown, for_name, ticket, reason, \
     ttl_secs, inventory, requested_at, approved_by, approved_at, granted_at, ends_at, ended_at, \
     end_reason, ended_by, rotation_id, failure, requester_via_sudo";

fn record(row: &Row<'_>) -> rusqlite::Result<RawRecord> {
    Ok(RawRecord {
        id: row.get(0)?,
        cred: row.get(1)?,
        state: row.get(2)?,
        requester: row.get(3)?,
        requester_shown: row.get(4)?,
        for_name: row.get(5)?,
        ticket: row.get(6)?,
        reason: row.get(7)?,
        ttl_secs: row.get(8)?,
        inventory: row.get(9)?,
        times: [
            row.get(10)?,
            row.get(12)?,
            row.get(13)?,
            row.get(14)?,
            row.get(15)?,
        ],
        approved_by: row.get(11)?,
        end_reason: row.get(16)?,
        ended_by: row.get(17)?,
        rotation: row.get(18)?,
        failure: row.get(19)?,
        via_sudo: row.get(20)?,
    })
}

struct RawRecord {
    id: i64,
    cred: String,
    state: String,
    requester: String,
    requester_shown: String,
    for_name: Option<String>,
    ticket: String,
    reason: String,
    ttl_secs: i64,
    inventory: String,
    /// requested_at, approved_at, granted_at, ends_at, ended_at.
    times: [Option<String>; 5],
    approved_by: Option<String>,
    end_reason: Option<String>,
    ended_by: Option<String>,
    rotation: Option<i64>,
    failure: Option<String>,
    via_sudo: bool,
}

impl RawRecord {
    fn parse(self) -> Result<CheckoutRecord, StoreError> {
        let time = |t: &Option<String>| t.as_deref().map(parse_time).transpose();
        let [requested, approved, granted, ends, ended] = &self.times;
        Ok(CheckoutRecord {
            id: self.id,
            cred: parse_cred(&self.cred)?,
            state: State::parse(&self.state).ok_or_else(|| {
                StoreError::Corrupt(format!("checkout {} has state `{}`", self.id, self.state))
            })?,
            requester: self.requester,
            requester_shown: self.requester_shown,
            requester_via_sudo: self.via_sudo,
            for_name: self.for_name,
            ticket: self.ticket,
            reason: self.reason,
            ttl: Duration::from_secs(u64::try_from(self.ttl_secs).unwrap_or(0)),
            inventory: self.inventory,
            requested_at: time(requested)?.ok_or_else(|| {
                StoreError::Corrupt(format!("checkout {} has no request time", self.id))
            })?,
            approved_by: self.approved_by,
            approved_at: time(approved)?,
            granted_at: time(granted)?,
            ends_at: time(ends)?,
            ended_at: time(ended)?,
            end: match self.end_reason.as_deref() {
                None => None,
                Some(text) => Some(End::parse(text).ok_or_else(|| {
                    StoreError::Corrupt(format!("checkout {} ended `{text}`", self.id))
                })?),
            },
            ended_by: self.ended_by,
            rotation: self.rotation,
            failure: self.failure,
        })
    }
}

/// Every checkout `sql` (selecting [`COLUMNS`]) returns.
fn records(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<CheckoutRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, record)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row?.parse()?);
    }
    Ok(out)
}

fn refused(e: checkout::Refused) -> StoreError {
    StoreError::Refused(e.0)
}

impl Vault {
    fn checkout_by_id(conn: &Connection, id: i64) -> Result<CheckoutRecord, StoreError> {
        conn.row(
            &format!("SELECT {COLUMNS} FROM checkouts WHERE id = ?1"),
            [id],
            record,
        )
        .optional()?
        .ok_or(StoreError::UnknownCheckout(id))?
        .parse()
    }

    fn active_checkout_in(
        conn: &Connection,
        cred: &str,
    ) -> Result<Option<CheckoutRecord>, StoreError> {
        conn.row(
            &format!("SELECT {COLUMNS} FROM checkouts WHERE cred = ?1 AND state != 'closed'"),
            [cred],
            record,
        )
        .optional()?
        .map(RawRecord::parse)
        .transpose()
    }

    /// The credential's active checkout (pending, approved, open or ending), if any.
    pub fn active_checkout(
        &self,
        cred: &CredentialId,
    ) -> Result<Option<CheckoutRecord>, StoreError> {
        Vault::active_checkout_in(&self.lock(), &cred.to_string())
    }

    /// Checkouts, newest first: the active ones, or with `all` every one ever made.
    pub fn checkouts(&self, all: bool) -> Result<Vec<CheckoutRecord>, StoreError> {
        let conn = self.lock();
        let sql = if all {
            format!("SELECT {COLUMNS} FROM checkouts ORDER BY id DESC")
        } else {
            format!("SELECT {COLUMNS} FROM checkouts WHERE state != 'closed' ORDER BY id DESC")
        };
        records(&conn, &sql, [])
    }

    /// Refuses a grant while the credential is being rotated: a live lease or an open
    /// rotation. (The driver checks for an open checkout under the lease, so whichever comes
    /// second sees the other.)
    fn refuse_while_rotating(&self, conn: &Connection, cred: &str) -> Result<(), StoreError> {
        let now = self.now_text();
        let busy: bool = conn.row(
            "SELECT EXISTS (SELECT 1 FROM leases l JOIN credentials c ON c.id = l.credential_id
                            WHERE c.cred = ?1 AND l.expires_at > ?2)
                 OR EXISTS (SELECT 1 FROM rotations r JOIN credentials c ON c.id = r.credential_id
                            WHERE c.cred = ?1 AND r.phase IN
                            ('staged', 'applied', 'verified', 'rolling_back', 'retiring', 'stuck'))",
            params![cred, now],
            |row| row.get(0),
        )?;
        if busy {
            return Err(StoreError::Refused(format!(
                "{cred} is being rotated, or a rotation of it is open: wait for it to finish (`rotor status` shows it), then check out again"
            )));
        }
        Ok(())
    }

    /// The current secret of `cred` for a grant, or why there is none.
    fn secret_for_grant(&self, conn: &Connection, cred: &str) -> Result<Secret, StoreError> {
        self.current_in(conn, cred)?.ok_or_else(|| {
            StoreError::Refused(format!(
                "the vault holds no current secret for {cred}: rotate it (`rotor rotate --scope cred:{cred}`) or enroll it before it can be checked out"
            ))
        })
    }

    /// Records a request. Without approval it is granted at once and the secret is returned
    /// (read in the same transaction that records the grant); with approval it waits.
    pub fn checkout_request(
        &self,
        by: &Actor,
        new: &NewCheckout<'_>,
    ) -> Result<(CheckoutRecord, Option<Secret>), StoreError> {
        let cred = new.cred.to_string();
        let ttl_secs = i64::try_from(new.ttl.as_secs()).unwrap_or(i64::MAX);
        checkout::may_act(by.identified()).map_err(refused)?;
        self.write(|tx| {
            if let Some(held) = Vault::active_checkout_in(tx, &cred)? {
                return Err(StoreError::Refused(format!(
                    "{cred} is already checked out: {} ({}). Wait for it to end, or ask its holder to run `rotor checkin {}`",
                    held.holder_words(),
                    held.state_words(),
                    held.id
                )));
            }
            let now = self.now();
            let now_text = time_text(now);
            let (state, granted_at, secret) = if new.needs_approval {
                (State::Pending, None, None)
            } else {
                self.refuse_while_rotating(tx, &cred)?;
                let secret = self.secret_for_grant(tx, &cred)?;
                (State::Open, Some(now_text.clone()), Some(secret))
            };
            if new.needs_approval {
                // Nothing to grant later either: say so now, not at the claim.
                self.secret_for_grant(tx, &cred)?;
            }
            let ends = checkout::deadline(now, new.ttl);
            let ends_at = time_text(ends);
            tx.exec(
                "INSERT INTO checkouts (cred, state, requester, requester_shown, for_name, ticket,
                     reason, ttl_secs, inventory, requested_at, granted_at, ends_at,
                     requester_via_sudo)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    cred,
                    state.as_str(),
                    by.person(),
                    by.as_str(),
                    new.for_name,
                    new.ticket,
                    new.reason,
                    ttl_secs,
                    new.inventory,
                    now_text,
                    granted_at,
                    ends_at,
                    by.identified() == Identified::Sudo
                ],
            )?;
            let id = tx.last_insert_rowid();
            let event = Event::CheckoutRequested {
                checkout: id,
                ticket: new.ticket.to_owned(),
                reason: new.reason.to_owned(),
                for_name: new.for_name.map(str::to_owned),
                ttl_secs: new.ttl.as_secs(),
                approval: if new.needs_approval { "required" } else { "none" }.to_owned(),
            };
            self.audit_append_in(by, tx, &event, Some(&cred))?;
            if secret.is_some() {
                self.audit_granted(by, tx, &cred, id, new.ticket, ends)?;
            }
            Ok((Vault::checkout_by_id(tx, id)?, secret))
        })
    }

    fn audit_granted(
        &self,
        by: &Actor,
        conn: &Connection,
        cred: &str,
        id: i64,
        ticket: &str,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let event = Event::CheckoutGranted {
            checkout: id,
            ticket: ticket.to_owned(),
            until,
        };
        self.audit_append_in(by, conn, &event, Some(cred))?;
        Ok(())
    }

    /// A second person approves a pending request; the requester may then claim it until
    /// the request's ttl has passed again.
    pub fn checkout_approve(&self, by: &Actor, id: i64) -> Result<CheckoutRecord, StoreError> {
        self.write(|tx| {
            let c = Vault::checkout_by_id(tx, id)?;
            if c.state != State::Pending {
                return Err(StoreError::Refused(format!(
                    "checkout {id} is {}, not pending: only a pending request can be approved",
                    c.state_words()
                )));
            }
            checkout::may_approve(
                by.person(),
                by.identified(),
                &c.requester,
                c.requester_via_sudo,
                c.for_name.as_deref(),
            )
            .map_err(refused)?;
            let now = self.now();
            let ends_at = time_text(checkout::deadline(now, c.ttl));
            tx.exec(
                "UPDATE checkouts SET state = 'approved', approved_by = ?2, approved_at = ?3,
                     ends_at = ?4 WHERE id = ?1",
                params![id, by.as_str(), time_text(now), ends_at],
            )?;
            let event = Event::CheckoutApproved {
                checkout: id,
                ticket: c.ticket.clone(),
            };
            self.audit_append_in(by, tx, &event, Some(&c.cred.to_string()))?;
            Vault::checkout_by_id(tx, id)
        })
    }

    /// A second person refuses a pending request: it is closed (refused) at once, nothing was
    /// shown and nothing is rotated; `why` is recorded in the audit log with the refusal.
    pub fn checkout_refuse(
        &self,
        by: &Actor,
        id: i64,
        why: &str,
    ) -> Result<CheckoutRecord, StoreError> {
        let why: String = crate::text::escape(why.trim()).chars().take(500).collect();
        if why.is_empty() {
            return Err(StoreError::Refused(
                "refusing a checkout needs a --reason: it is recorded and shown to the requester"
                    .into(),
            ));
        }
        self.write(|tx| {
            let c = Vault::checkout_by_id(tx, id)?;
            if c.state != State::Pending {
                return Err(StoreError::Refused(format!(
                    "checkout {id} is {}, not pending: only a pending request can be refused",
                    c.state_words()
                )));
            }
            checkout::may_refuse(
                by.person(),
                by.identified(),
                &c.requester,
                c.requester_via_sudo,
                c.for_name.as_deref(),
            )
            .map_err(refused)?;
            let event = Event::CheckoutRefused {
                checkout: id,
                ticket: c.ticket.clone(),
                reason: why.clone(),
            };
            // The reason lives in the audit log (as an approval's context does), not in the
            // record: `failure` means a rotation that must be retried.
            self.audit_append_in(by, tx, &event, Some(&c.cred.to_string()))?;
            self.close_in(by, tx, &c, End::Refused)?;
            Vault::checkout_by_id(tx, id)
        })
    }

    /// The requester claims an approved checkout: the grant starts now and the secret is
    /// returned, once (a second claim is refused; the holder may `rotor show` it, recorded).
    pub fn checkout_claim(
        &self,
        by: &Actor,
        id: i64,
    ) -> Result<(CheckoutRecord, Secret), StoreError> {
        self.write(|tx| {
            let c = Vault::checkout_by_id(tx, id)?;
            match c.state {
                State::Approved => {}
                State::Pending => {
                    return Err(StoreError::Refused(format!(
                        "checkout {id} is not approved yet: another person must run `rotor approve {id}` first"
                    )));
                }
                State::Open | State::Ending => {
                    return Err(StoreError::Refused(format!(
                        "checkout {id} was already claimed and its secret shown once; its holder can read it again with `rotor show {} --reason ...` (recorded)",
                        c.cred
                    )));
                }
                State::Closed => {
                    return Err(StoreError::Refused(format!(
                        "checkout {id} is {}: request a new one",
                        c.state_words()
                    )));
                }
            }
            checkout::may_claim(by.person(), by.identified(), &c.requester).map_err(refused)?;
            let cred = c.cred.to_string();
            self.refuse_while_rotating(tx, &cred)?;
            let secret = self.secret_for_grant(tx, &cred)?;
            let now = self.now();
            let ends = checkout::deadline(now, c.ttl);
            tx.exec(
                "UPDATE checkouts SET state = 'open', granted_at = ?2, ends_at = ?3 WHERE id = ?1",
                params![id, time_text(now), time_text(ends)],
            )?;
            self.audit_granted(by, tx, &cred, id, &c.ticket, ends)?;
            Ok((Vault::checkout_by_id(tx, id)?, secret))
        })
    }

    /// Ends a checkout on `rotor checkin`: an open one goes to `ending` (its credential must be
    /// rotated); a request never claimed is closed at once (no secret was shown). An ending
    /// one is returned as it is (the rotation is retried), and so is a closed one.
    pub fn checkout_checkin(&self, by: &Actor, id: i64) -> Result<CheckoutRecord, StoreError> {
        self.write(|tx| {
            let c = Vault::checkout_by_id(tx, id)?;
            match c.state {
                State::Open => self.end_in(by, tx, &c, End::CheckIn)?,
                State::Pending | State::Approved => self.close_in(by, tx, &c, End::Cancelled)?,
                // Being rotated (the caller retries), or already over: returned as it is.
                State::Ending | State::Closed => {}
            }
            Vault::checkout_by_id(tx, id)
        })
    }

    /// Open → ending, audited.
    fn end_in(
        &self,
        by: &Actor,
        conn: &Connection,
        c: &CheckoutRecord,
        end: End,
    ) -> Result<(), StoreError> {
        conn.exec(
            "UPDATE checkouts SET state = 'ending', end_reason = ?2, ended_by = ?3, ended_at = ?4
             WHERE id = ?1",
            params![c.id, end.as_str(), by.as_str(), self.now_text()],
        )?;
        let (checkout, ticket) = (c.id, c.ticket.clone());
        let event = match end {
            End::Expired => Event::CheckoutExpired { checkout, ticket },
            End::Forced => Event::CheckoutOverridden { checkout, ticket },
            _ => Event::CheckIn { checkout, ticket },
        };
        self.audit_append_in(by, conn, &event, Some(&c.cred.to_string()))?;
        Ok(())
    }

    /// The rotation that just made the old secret stop working (its commit, or for a key its
    /// retirement) closes the credential's ending checkout in the same transaction, whichever
    /// run it was: a check-in's, an expiry's, or an operator's own `rotor rotate`.
    pub(super) fn close_ending_checkout_in(
        &self,
        by: &str,
        conn: &Connection,
        cred: &str,
        rotation: RotationId,
    ) -> Result<(), StoreError> {
        let Some(c) = Vault::active_checkout_in(conn, cred)? else {
            return Ok(());
        };
        if c.state != State::Ending {
            return Ok(());
        }
        self.close_as(by, conn, &c, End::CheckIn, Some(rotation.0))
    }

    /// → closed, audited (with the rotation that ended it, if one did).
    fn close_in(
        &self,
        by: &Actor,
        conn: &Connection,
        c: &CheckoutRecord,
        end: End,
    ) -> Result<(), StoreError> {
        self.close_as(by.as_str(), conn, c, end, None)
    }

    fn close_as(
        &self,
        by: &str,
        conn: &Connection,
        c: &CheckoutRecord,
        end: End,
        rotation: Option<i64>,
    ) -> Result<(), StoreError> {
        let end = c.end.filter(|_| c.state == State::Ending).unwrap_or(end);
        conn.exec(
            "UPDATE checkouts SET state = 'closed', end_reason = ?2, ended_by = COALESCE(ended_by, ?3),
                 ended_at = ?4, rotation_id = ?5, failure = NULL WHERE id = ?1",
            params![c.id, end.as_str(), by, self.now_text(), rotation],
        )?;
        let event = Event::CheckoutClosed {
            checkout: c.id,
            ticket: c.ticket.clone(),
            end: end.as_str().to_owned(),
            rotation,
        };
        self.audit_as(by, conn, &event, Some(&c.cred.to_string()))?;
        Ok(())
    }

    /// Settles deadlines that passed (by the vault's clock): open checkouts expire (to
    /// `ending`), requests never claimed lapse (closed). Returns every `ending` checkout: the
    /// credentials to rotate now. One cheap query when nothing is due.
    pub fn checkouts_due(&self, by: &Actor) -> Result<Vec<CheckoutRecord>, StoreError> {
        let now = self.now();
        let now_text = time_text(now);
        let candidates: Vec<CheckoutRecord> = {
            let conn = self.lock();
            let sql = format!(
                "SELECT {COLUMNS} FROM checkouts
                 WHERE state = 'ending' OR (state IN ('pending', 'approved', 'open') AND ends_at <= ?1)
                 ORDER BY id"
            );
            records(&conn, &sql, [&now_text])?
        };
        if candidates.iter().all(|c| c.state == State::Ending) {
            return Ok(candidates);
        }
        self.write(|tx| {
            for c in &candidates {
                // Re-read under the write lock: another rotor may have settled it meanwhile.
                let c = Vault::checkout_by_id(tx, c.id)?;
                match checkout::due(c.state, c.ends_at, now) {
                    Due::Expire => self.end_in(by, tx, &c, End::Expired)?,
                    Due::Lapse => self.close_in(by, tx, &c, End::Lapsed)?,
                    Due::No => {}
                }
            }
            let sql = format!("SELECT {COLUMNS} FROM checkouts WHERE state = 'ending' ORDER BY id");
            records(tx, &sql, [])
        })
    }

    /// A run with `--include-checked-out` ends the open checkouts of these credentials
    /// before it rotates them (to `ending`, recorded as an override); returns them.
    pub fn checkouts_force_end(
        &self,
        by: &Actor,
        creds: &[CredentialId],
    ) -> Result<Vec<CheckoutRecord>, StoreError> {
        self.write(|tx| {
            let mut ended = Vec::new();
            for cred in creds {
                if let Some(c) = Vault::active_checkout_in(tx, &cred.to_string())?
                    && c.state == State::Open
                {
                    self.end_in(by, tx, &c, End::Forced)?;
                    ended.push(Vault::checkout_by_id(tx, c.id)?);
                }
            }
            Ok(ended)
        })
    }

    /// One checkout as recorded now.
    pub fn checkout(&self, id: i64) -> Result<CheckoutRecord, StoreError> {
        Vault::checkout_by_id(&self.lock(), id)
    }

    /// The rotation that should end an `ending` checkout failed: recorded, retried later.
    pub fn checkout_rotation_failed(
        &self,
        by: &Actor,
        id: i64,
        why: &str,
    ) -> Result<(), StoreError> {
        let why: String = crate::text::escape(why).chars().take(500).collect();
        self.write(|tx| {
            let c = Vault::checkout_by_id(tx, id)?;
            // Recorded (and audited) once per distinct failure, and only while it is ending:
            // a retry every command that fails the same way adds nothing.
            let changed = tx.exec(
                "UPDATE checkouts SET failure = ?2
                 WHERE id = ?1 AND state = 'ending' AND failure IS NOT ?2",
                params![id, why],
            )?;
            if changed == 0 {
                return Ok(());
            }
            let event = Event::CheckoutRotationFailed {
                checkout: id,
                ticket: c.ticket.clone(),
                failure: why.clone(),
            };
            self.audit_append_in(by, tx, &event, Some(&c.cred.to_string()))?;
            Ok(())
        })
    }

    /// `rotor show` when the credential may be checked out: the holder's read is recorded
    /// as such; anyone else's is allowed (with the reason `show` always asks for) and
    /// recorded as an override, and the caller is told who holds it.
    pub fn show_checked(
        &self,
        by: &Actor,
        cred: &CredentialId,
        reason: &str,
    ) -> Result<Shown, StoreError> {
        let cred_text = cred.to_string();
        self.write(|tx| {
            let secret = self.current_in(tx, &cred_text)?;
            let held =
                Vault::active_checkout_in(tx, &cred_text)?.filter(|c| c.state.secret_is_out());
            let read = held
                .as_ref()
                .map(|c| checkout::read_by(by.person(), by.identified(), &c.requester));
            let (reason, found) = (reason.to_owned(), secret.is_some());
            let event = match (&held, read) {
                (Some(c), Some(Read::ByHolder)) => Event::ShowByHolder {
                    checkout: c.id,
                    ticket: c.ticket.clone(),
                    reason,
                    found,
                },
                (Some(c), _) => Event::ShowOverride {
                    checkout: c.id,
                    ticket: c.ticket.clone(),
                    reason,
                    found,
                },
                (None, _) => Event::Show { reason, found },
            };
            self.audit_append_in(by, tx, &event, Some(&cred_text))?;
            Ok(Shown {
                secret,
                checkout: held.zip(read),
            })
        })
    }

    /// For the engine's admission: who holds the credential's secret through an open
    /// checkout, in words; `None` when nobody does (an `ending` one is being rotated on
    /// purpose).
    pub(crate) fn open_checkout_words(
        &self,
        cred: &CredentialId,
    ) -> Result<Option<String>, StoreError> {
        let conn = self.lock();
        Ok(Vault::active_checkout_in(&conn, &cred.to_string())?
            .filter(|c| c.state == State::Open)
            .map(|c| c.holder_words()))
    }
}

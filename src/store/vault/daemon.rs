//! What the daemon keeps in the vault (schema 8): the leader lease (one `rotor serve` per
//! vault) and each credential's scheduled next rotation.
//!
//! The leader lease names its process as rotation leases do (`this_process_owner`, pid), so
//! a second daemon takes over at once from one that died on this machine, and never from one
//! that is alive before its ttl (which the holder renews every tick). A PostgreSQL store will
//! hold the same row for several machines.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{LeaseRow, Vault, parse_time, this_process_owner, time_text};
use crate::credential::CredentialId;
use crate::scheduler::Stored;
use crate::store::StoreError;
use crate::store::schema::CachedSql;

/// This process's hold on the vault as its daemon.
#[derive(Clone, Debug)]
pub struct Leader {
    owner_host: String,
    pid: u32,
}

impl Vault {
    /// Records whether a login with `host`'s bootstrap connect key worked just now. Not
    /// audited (no secret is read); the latest sighting replaces the one before.
    pub fn bootstrap_seen(&self, host: &str, accepted: bool) -> Result<(), StoreError> {
        let at = self.now_text();
        self.write_lazy(|tx| {
            tx.execute(
                "INSERT INTO bootstrap_seen (host, accepted, seen_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(host) DO UPDATE SET accepted = ?2, seen_at = ?3",
                rusqlite::params![host, accepted, at],
            )?;
            Ok(())
        })
    }

    /// Every host's latest sighting of its bootstrap key: (host, accepted, when).
    pub fn bootstrap_sightings(&self) -> Result<Vec<(String, bool, String)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT host, accepted, seen_at FROM bootstrap_seen")?;
        let rows = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

impl Vault {
    /// Takes the leader lease for `holder` (words naming this daemon: its pid, user and
    /// listen address) for `ttl`. Refused, naming the holder, while another live process
    /// holds it; taken over from one that is gone or whose lease ran out.
    pub fn leader_acquire(&self, holder: &str, ttl: Duration) -> Result<Leader, StoreError> {
        let owner_host = this_process_owner();
        let pid = std::process::id();
        let now = self.now();
        let expires = expiry(now, ttl);
        self.write(|tx| {
            let found = tx
                .prepare_cached(
                    "SELECT holder, owner_host, owner_pid, acquired_at, expires_at
                     FROM daemon_leader WHERE id = 1",
                )?
                .query_row([], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, u32>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, String>(4)?,
                    ))
                })
                .optional()?;
            if let Some((held_by, host, held_pid, since, until)) = found {
                let until = parse_time(&until)?;
                let row = LeaseRow {
                    token: 0,
                    holder: held_by.clone(),
                    owner_host: host.clone(),
                    owner_pid: held_pid,
                    ttl_ms: 0,
                    expires_at: until,
                };
                let mine = host == owner_host && held_pid == pid;
                if !mine && until > now && !row.holder_is_gone() {
                    return Err(StoreError::Refused(format!(
                        "another rotor serve holds this vault: {held_by}, since {since}. One daemon per vault: stop that one first (or use it), or, if it runs on another machine and is gone, wait until its lease ends at {}",
                        until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    )));
                }
                if !mine {
                    tracing::warn!(previous = %held_by, "taking over the vault from a daemon that is gone");
                }
            }
            tx.exec(
                "INSERT INTO daemon_leader (id, holder, owner_host, owner_pid, acquired_at, expires_at)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET holder = ?1, owner_host = ?2, owner_pid = ?3,
                     acquired_at = ?4, expires_at = ?5",
                params![holder, owner_host, pid, time_text(now), time_text(expires)],
            )?;
            Ok(())
        })?;
        Ok(Leader { owner_host, pid })
    }

    /// Extends the lease by `ttl` from now. Fails when another process took it (this one
    /// was paused past its ttl): the daemon must then stop.
    pub fn leader_renew(&self, leader: &Leader, ttl: Duration) -> Result<(), StoreError> {
        let expires = expiry(self.now(), ttl);
        let changed = self.write_lazy(|tx| {
            Ok(tx.exec(
                "UPDATE daemon_leader SET expires_at = ?3
                 WHERE id = 1 AND owner_host = ?1 AND owner_pid = ?2",
                params![leader.owner_host, leader.pid, time_text(expires)],
            )?)
        })?;
        if changed == 0 {
            return Err(StoreError::Refused(
                "another rotor serve took this vault over (this one was stalled past its lease): stopping".into(),
            ));
        }
        Ok(())
    }

    /// Gives the lease back (a clean stop), so the next daemon starts at once.
    pub fn leader_release(&self, leader: Leader) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.exec(
                "DELETE FROM daemon_leader WHERE id = 1 AND owner_host = ?1 AND owner_pid = ?2",
                params![leader.owner_host, leader.pid],
            )?;
            Ok(())
        })
    }

    /// Every credential's remembered schedule.
    pub fn schedule_rows(&self) -> Result<HashMap<CredentialId, Stored>, StoreError> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare_cached("SELECT cred, plan, basis, due_at, failures FROM schedule_state")?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<String>>(2)?,
                row.get::<_, Option<String>>(3)?,
                row.get::<_, u32>(4)?,
            ))
        })?;
        let mut out = HashMap::new();
        for row in rows {
            let (cred, plan, basis, due_at, failures) = row?;
            // A row for a name this build cannot read is dropped: it is recomputed.
            let Ok(cred) = CredentialId::parse(&cred) else {
                continue;
            };
            let time = |t: Option<String>| t.as_deref().map(parse_time).transpose();
            out.insert(
                cred,
                Stored {
                    plan,
                    basis: time(basis)?,
                    due_at: time(due_at)?,
                    failures,
                },
            );
        }
        Ok(out)
    }

    /// Remembers (or, with `None`, forgets) credentials' schedules, in one transaction. Not
    /// fsynced: a lost write is recomputed from the last rotation.
    pub fn schedule_write(
        &self,
        rows: &[(CredentialId, Option<Stored>)],
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let now = self.now_text();
        let text = |t: Option<DateTime<Utc>>| t.map(time_text);
        self.write_lazy(|tx| {
            for (cred, row) in rows {
                let cred = cred.to_string();
                match row {
                    Some(s) => tx.exec(
                        "INSERT INTO schedule_state (cred, plan, basis, due_at, failures, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                         ON CONFLICT (cred) DO UPDATE SET plan = ?2, basis = ?3, due_at = ?4,
                             failures = ?5, updated_at = ?6",
                        params![cred, s.plan, text(s.basis), text(s.due_at), s.failures, now],
                    )?,
                    None => tx.exec("DELETE FROM schedule_state WHERE cred = ?1", params![cred])?,
                };
            }
            Ok(())
        })
    }
}

/// `now + ttl`, or the end of time for a ttl no clock reaches.
fn expiry(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(ttl)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::KeySource;

    fn vault_in() -> (tempfile::TempDir, Vault) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vault");
        let vault = Vault::init(&dir, KeySource::default_file(&dir)).unwrap();
        (tmp, vault)
    }

    #[test]
    fn one_leader_per_vault_and_the_same_process_renews() {
        let (_dir, vault) = vault_in();
        let leader = vault
            .leader_acquire("rotor serve pid 1", Duration::from_secs(60))
            .unwrap();
        // The same process may take it again (a restart of the loop), and renew it.
        vault
            .leader_renew(&leader, Duration::from_secs(60))
            .unwrap();
        vault.leader_release(leader).unwrap();
        let again = vault
            .leader_acquire("rotor serve pid 1", Duration::from_secs(60))
            .unwrap();
        // Another live process (pid 1 is init, alive) holds it: refused, naming it.
        let super::super::ProcessStart::At(started) = super::super::process_start(1) else {
            panic!("pid 1 is alive and readable by root");
        };
        let owner = format!(
            "{}#{started}#{}",
            super::super::this_machine(),
            super::super::boot_id().unwrap()
        );
        vault
            .lock()
            .execute(
                "UPDATE daemon_leader SET owner_pid = 1, owner_host = ?1,
                     holder = 'rotor serve pid 1 as root'",
                [owner],
            )
            .unwrap();
        let err = vault
            .leader_acquire("me", Duration::from_secs(60))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("another rotor serve holds this vault: rotor serve pid 1 as root"),
            "{err}"
        );
        assert!(vault.leader_renew(&again, Duration::from_secs(60)).is_err());
    }

    #[test]
    fn schedules_are_remembered_and_forgotten() {
        let (_dir, vault) = vault_in();
        let cred = CredentialId::parse("h/svc").unwrap();
        let at = DateTime::parse_from_rfc3339("2026-12-01T18:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let row = Stored {
            plan: "0 3 * * * | Asia/Tokyo | ".into(),
            basis: None,
            due_at: Some(at),
            failures: 2,
        };
        vault
            .schedule_write(&[(cred.clone(), Some(row.clone()))])
            .unwrap();
        assert_eq!(vault.schedule_rows().unwrap().get(&cred), Some(&row));
        vault.schedule_write(&[(cred.clone(), None)]).unwrap();
        assert!(vault.schedule_rows().unwrap().is_empty());
    }
}

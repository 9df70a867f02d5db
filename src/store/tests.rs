//! Vault tests against real SQLite files in temporary directories. Each test builds a fresh
//! vault with [`fixture`]; raw SQL through [`raw`] plays the attacker or the crash.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use tempfile::TempDir;

use super::vault::test_support;
use super::*;
use crate::credential::CredentialId;
use crate::engine::{Lease, Phase, RotationId, RunId};
use crate::secret::Secret;

struct Fixture {
    _tmp: TempDir,
    dir: PathBuf,
    vault: Vault,
    /// The lease `stage` took for each credential (one per credential, kept for the test).
    leases: RefCell<HashMap<String, Lease>>,
}

impl Fixture {
    fn key(&self) -> KeySource {
        KeySource::default_file(&self.dir)
    }

    fn reopen(self) -> Fixture {
        let Fixture {
            _tmp,
            dir,
            vault,
            leases,
        } = self;
        drop(vault);
        let vault = Vault::open(&dir, KeySource::default_file(&dir)).unwrap();
        Fixture {
            _tmp,
            dir,
            vault,
            leases,
        }
    }

    /// `Store::stage` with the credential's lease, taken on first use and again once closing
    /// a rotation gave it back.
    fn stage(
        &self,
        run: RunId,
        c: &CredentialId,
        new: &Secret,
        restore_point: &Secret,
    ) -> Result<RotationId, StoreError> {
        let mut leases = self.leases.borrow_mut();
        let held = self.vault.held_token(&c.to_string());
        let lease = match leases.get(&c.to_string()) {
            Some(lease) if held == Some(lease.token) => *lease,
            _ => {
                let lease = self
                    .vault
                    .acquire_lease(c, "test", TTL)
                    .unwrap()
                    .expect("no one else holds leases in this test");
                leases.insert(c.to_string(), lease);
                lease
            }
        };
        self.vault.stage(run, c, new, restore_point, lease)
    }

    fn run(&self) -> RunId {
        self.vault.begin_run("test", "all").unwrap()
    }
}

fn fixture() -> Fixture {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("data");
    let vault = Vault::init(&dir, KeySource::default_file(&dir)).unwrap();
    Fixture {
        _tmp: tmp,
        dir,
        vault,
        leases: RefCell::default(),
    }
}

/// The lease ttl of the tests.
const TTL: std::time::Duration = std::time::Duration::from_secs(60);

fn cred(s: &str) -> CredentialId {
    CredentialId::parse(s).unwrap()
}

fn secret(s: &str) -> Secret {
    Secret::new(s.to_owned())
}

/// A second connection to the database file, as an attacker or a debugging operator has.
fn raw(dir: &Path) -> Connection {
    Connection::open(Vault::db_path(dir)).unwrap()
}

/// The states of a credential's versions, oldest first.
fn states(dir: &Path, c: &str) -> Vec<String> {
    let conn = raw(dir);
    let mut stmt = conn
        .prepare(
            "SELECT v.state FROM versions v JOIN credentials c ON c.id = v.credential_id
             WHERE c.cred = ?1 ORDER BY v.id",
        )
        .unwrap();
    stmt.query_map([c], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn current(f: &Fixture, c: &str) -> Option<String> {
    f.vault
        .current(&cred(c))
        .unwrap()
        .map(|s| s.expose().to_owned())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_creates_private_layout_and_round_trips() {
    let f = fixture();
    assert_eq!(mode(&f.dir), 0o700);
    assert_eq!(mode(&f.dir.join("master.key")), 0o400);
    assert!(Vault::db_path(&f.dir).is_file());

    let outcome = f
        .vault
        .enroll(&cred("h1/svc"), &secret("s3cret-one"))
        .unwrap();
    assert_eq!(
        outcome,
        EnrollOutcome {
            shared_with: 0,
            replaced_current: false,
            settled_stuck: None
        }
    );
    let f = f.reopen();
    assert_eq!(current(&f, "h1/svc").as_deref(), Some("s3cret-one"));
    assert_eq!(current(&f, "h1/other"), None);
    assert!(!format!("{:?}", f.vault).contains("key"));
}

#[test]
fn init_twice_fails_without_touching_the_key() {
    let f = fixture();
    let key_path = f.dir.join("master.key");
    let before = std::fs::read(&key_path).unwrap();
    let err = Vault::init(&f.dir, f.key()).unwrap_err();
    assert!(matches!(err, StoreError::AlreadyInitialized(_)), "{err}");
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&key_path).unwrap(), before);

    // A key file left over without a database is never overwritten either.
    let tmp = TempDir::new().unwrap();
    std::fs::write(tmp.path().join("master.key"), "left over").unwrap();
    let err = Vault::init(tmp.path(), KeySource::default_file(tmp.path())).unwrap_err();
    assert!(matches!(err, StoreError::KeyExists(_)), "{err}");
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("master.key")).unwrap(),
        "left over"
    );
}

#[test]
fn open_missing_vault_says_run_init() {
    let tmp = TempDir::new().unwrap();
    for dir in [tmp.path().join("nope"), tmp.path().to_owned()] {
        let err = Vault::open(&dir, KeySource::default_file(&dir)).unwrap_err();
        assert!(matches!(err, StoreError::Missing(_)), "{err}");
        assert!(err.to_string().contains("rotor init"), "{err}");
    }
}

#[test]
fn wrong_master_key_is_reported_as_a_mismatch() {
    let a = fixture();
    let b = fixture();
    let err = Vault::open(&a.dir, b.key()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::KeyMismatch(_)), "{msg}");
    assert!(msg.contains("does not match this vault"), "{msg}");
    assert!(
        msg.contains(&b.dir.join("master.key").display().to_string()),
        "{msg}"
    );
    assert!(!msg.to_lowercase().contains("decryption failed"), "{msg}");
}

#[test]
fn malformed_key_file_is_reported() {
    let f = fixture();
    let path = f.dir.join("bad.key");
    std::fs::write(&path, "not base64 at all!").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    let err = Vault::open(&f.dir, KeySource::File(path)).unwrap_err();
    assert!(matches!(err, StoreError::KeyMalformed(_)), "{err}");
}

#[test]
fn key_file_readable_by_others_is_refused() {
    let f = fixture();
    let key = f.dir.join("master.key");
    for (file_mode, ok) in [
        (0o400, true),
        (0o600, true),
        (0o440, false),
        (0o404, false),
        (0o644, false),
    ] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(file_mode)).unwrap();
        match Vault::open(&f.dir, f.key()) {
            Ok(_) => assert!(ok, "mode {file_mode:o} was accepted"),
            Err(err) => {
                assert!(!ok, "mode {file_mode:o}: {err}");
                assert!(
                    matches!(err, StoreError::KeyFilePermissions { .. }),
                    "{err}"
                );
                assert!(err.to_string().contains("chmod 0400"), "{err}");
            }
        }
    }
}

#[test]
fn swapped_ciphertexts_fail_integrity_not_garbage() {
    let f = fixture();
    f.vault
        .enroll(&cred("h1/a"), &secret("alpha-secret"))
        .unwrap();
    f.vault
        .enroll(&cred("h1/b"), &secret("bravo-secret"))
        .unwrap();
    let f = f.reopen();
    {
        let conn = raw(&f.dir);
        let blobs: Vec<(i64, Vec<u8>)> = conn
            .prepare("SELECT id, secret FROM versions ORDER BY id")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(blobs.len(), 2);
        for (i, (id, _)) in blobs.iter().enumerate() {
            conn.execute(
                "UPDATE versions SET secret = ?1 WHERE id = ?2",
                rusqlite::params![blobs[1 - i].1, id],
            )
            .unwrap();
        }
    }
    for c in ["h1/a", "h1/b"] {
        let err = f.vault.current(&cred(c)).unwrap_err();
        assert!(matches!(err, StoreError::Integrity(_)), "{err}");
        assert!(err.to_string().contains(c), "{err}");
    }
}

#[test]
fn swapped_restore_points_fail_integrity() {
    let f = fixture();
    let run = f.run();
    f.stage(run, &cred("h1/a"), &secret("new-a"), &secret("$6$old-a"))
        .unwrap();
    f.stage(run, &cred("h1/b"), &secret("new-b"), &secret("$6$old-b"))
        .unwrap();
    raw(&f.dir)
        .execute_batch(
            "UPDATE rotations SET restore_point =
               (SELECT restore_point FROM rotations r2 WHERE r2.id != rotations.id)",
        )
        .unwrap();
    // SQLite applies the subquery row by row, so at least the first row holds the other's
    // blob now.
    let open = f.vault.open_rotations().unwrap();
    let unreadable = f.vault.unreadable_rotations().unwrap();
    assert!(!unreadable.is_empty());
    assert_eq!(open.len() + unreadable.len(), 2);
    assert!(
        unreadable
            .iter()
            .all(|u| u.error.kind == crate::engine::ledger::StoreFailureKind::Integrity),
        "{unreadable:?}"
    );
}

/// One step of a rotation scenario, applied to credential `h1/svc` enrolled with `v0`.
#[derive(Clone, Copy, Debug)]
enum Step {
    Stage(&'static str),
    Record(Phase),
    Commit,
    RollBack,
    Stuck,
}

/// Runs `steps` and checks the versions' states and the current secret afterwards.
fn check(steps: &[Step], expect_states: &[&str], expect_current: &str, expect_phase: Phase) {
    let f = fixture();
    let c = cred("h1/svc");
    f.vault.enroll(&c, &secret("v0")).unwrap();
    let run = f.run();
    let mut rotation = None;
    for step in steps {
        match *step {
            Step::Stage(s) => rotation = Some(f.stage(run, &c, &secret(s), &secret("rp")).unwrap()),
            Step::Record(p) => f
                .vault
                .record_phase(rotation.unwrap(), p, Some("note"))
                .unwrap(),
            Step::Commit => f.vault.commit(rotation.unwrap(), false).unwrap(),
            Step::RollBack => f
                .vault
                .roll_back(rotation.unwrap(), "verify failed")
                .unwrap(),
            Step::Stuck => f
                .vault
                .mark_stuck(rotation.unwrap(), "both failed")
                .unwrap(),
        }
    }
    assert_eq!(states(&f.dir, "h1/svc"), expect_states, "{steps:?}");
    assert_eq!(current(&f, "h1/svc").as_deref(), Some(expect_current));
    let status = f.vault.status().unwrap();
    let last = status[0].last_rotation.as_ref().unwrap();
    assert_eq!(last.phase, expect_phase, "{steps:?}");
    assert_eq!(status[0].open_rotation, expect_phase.is_open());
    assert_eq!(
        status[0].has_pending,
        expect_states.contains(&"pending"),
        "{steps:?}"
    );
    assert_eq!(f.vault.rotations_of_run(run).unwrap().len(), {
        steps.iter().filter(|s| matches!(s, Step::Stage(_))).count()
    });
}

#[test]
fn rotation_transitions() {
    use Step::*;
    check(&[Stage("v1")], &["current", "pending"], "v0", Phase::Staged);
    check(
        &[
            Stage("v1"),
            Record(Phase::Applied),
            Record(Phase::Verified),
            Commit,
        ],
        &["previous", "current"],
        "v1",
        Phase::Committed,
    );
    check(
        &[Stage("v1"), Commit, Stage("v2"), Commit],
        &["retired", "previous", "current"],
        "v2",
        Phase::Committed,
    );
    check(
        &[
            Stage("v1"),
            Commit,
            Stage("v2"),
            Commit,
            Stage("v3"),
            Commit,
        ],
        &["retired", "retired", "previous", "current"],
        "v3",
        Phase::Committed,
    );
    check(
        &[
            Stage("v1"),
            Record(Phase::Applied),
            Record(Phase::RollingBack),
            RollBack,
        ],
        &["current", "retired"],
        "v0",
        Phase::RolledBack,
    );
    check(
        &[Stage("v1"), RollBack, Stage("v2"), Commit],
        &["previous", "retired", "current"],
        "v2",
        Phase::Committed,
    );
    check(
        &[Stage("v1"), Record(Phase::Applied), Stuck],
        &["current", "pending"],
        "v0",
        Phase::Stuck,
    );
}

#[test]
fn transitions_refuse_closed_rotations_and_final_phases() {
    let f = fixture();
    let c = cred("h1/svc");
    let run = f.run();
    let id = f.stage(run, &c, &secret("v1"), &secret("rp")).unwrap();
    let err = f
        .vault
        .record_phase(id, Phase::Committed, None)
        .unwrap_err();
    assert!(matches!(err, StoreError::PhaseNotRecordable(_)), "{err}");
    f.vault.commit(id, false).unwrap();
    for result in [
        f.vault.commit(id, false),
        f.vault.roll_back(id, "x"),
        f.vault.mark_stuck(id, "x"),
        f.vault.record_phase(id, Phase::Applied, None),
    ] {
        let err = result.unwrap_err();
        assert!(matches!(err, StoreError::NotOpen { .. }), "{err}");
    }
    let err = f.vault.commit(RotationId(999), false).unwrap_err();
    assert!(matches!(err, StoreError::UnknownRotation(999)), "{err}");
    let err = f
        .stage(RunId(999), &c, &secret("v2"), &secret("rp"))
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownRun(999)), "{err}");
}

#[test]
fn one_open_rotation_per_credential() {
    let f = fixture();
    let c = cred("h1/svc");
    let run = f.run();
    let id = f.stage(run, &c, &secret("v1"), &secret("rp")).unwrap();
    let err = f.stage(run, &c, &secret("v2"), &secret("rp")).unwrap_err();
    assert!(
        matches!(&err, StoreError::RotationOpen(name, open) if name == "h1/svc" && *open == id.0),
        "{err}"
    );
    let err = f.vault.enroll(&c, &secret("v9")).unwrap_err();
    assert!(matches!(err, StoreError::RotationOpen(..)), "{err}");
    // Another credential is unaffected.
    f.stage(run, &cred("h2/svc"), &secret("v3"), &secret("rp"))
        .unwrap();

    // A stuck rotation keeps its pending secret, so the credential cannot be staged again.
    f.vault.mark_stuck(id, "operator needed").unwrap();
    let err = f.stage(run, &c, &secret("v4"), &secret("rp")).unwrap_err();
    assert!(matches!(err, StoreError::Stuck(..)), "{err}");

    // An operator reopens it (`rotor recover --cred`): recovery sees it again, rolling back.
    assert!(f.vault.reopen_stuck(&c).unwrap());
    let open: Vec<_> = f
        .vault
        .open_rotations()
        .unwrap()
        .into_iter()
        .filter(|r| r.cred == c)
        .collect();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].phase, Phase::RollingBack);
    assert!(!f.vault.reopen_stuck(&c).unwrap(), "nothing stuck any more");
}

#[test]
fn open_rotations_survive_a_crash() {
    let f = fixture();
    let run = f.run();
    f.vault.enroll(&cred("h1/a"), &secret("a0")).unwrap();
    let a = f
        .stage(run, &cred("h1/a"), &secret("a1"), &secret("$6$hash-a"))
        .unwrap();
    let b = f
        .stage(run, &cred("h1/b"), &secret("b1"), &secret("$6$hash-b"))
        .unwrap();
    f.vault.record_phase(b, Phase::Applied, None).unwrap();
    let done = f
        .stage(run, &cred("h1/c"), &secret("c1"), &secret("rp"))
        .unwrap();
    f.vault.commit(done, false).unwrap();
    // The process dies here: no end_run, no commit of a or b.
    let f = f.reopen();
    let open = f.vault.open_rotations().unwrap();
    let seen: Vec<_> = open
        .iter()
        .map(|o| {
            (
                o.id,
                o.cred.to_string(),
                o.phase,
                o.pending.expose().to_owned(),
                o.restore_point.expose().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                a,
                "h1/a".into(),
                Phase::Staged,
                "a1".into(),
                "$6$hash-a".into()
            ),
            (
                b,
                "h1/b".into(),
                Phase::Applied,
                "b1".into(),
                "$6$hash-b".into()
            ),
        ]
    );
    assert!(!format!("{open:?}").contains("$6$hash"));
}

#[test]
fn fingerprints_detect_reuse_and_sharing() {
    let f = fixture();
    assert!(!f.vault.fingerprint_taken(&secret("shared")).unwrap());
    let first = f.vault.enroll(&cred("h1/a"), &secret("shared")).unwrap();
    assert_eq!(first.shared_with, 0);
    assert!(f.vault.fingerprint_taken(&secret("shared")).unwrap());
    assert!(!f.vault.fingerprint_taken(&secret("other")).unwrap());
    f.vault.enroll(&cred("h2/a"), &secret("shared")).unwrap();
    let third = f.vault.enroll(&cred("h3/a"), &secret("shared")).unwrap();
    assert_eq!(third.shared_with, 2);
    // Re-enrolling the same credential: only *other* credentials count.
    let again = f.vault.enroll(&cred("h3/a"), &secret("shared")).unwrap();
    assert_eq!(
        again,
        EnrollOutcome {
            shared_with: 2,
            replaced_current: true,
            settled_stuck: None
        }
    );
    // Retired versions still count as taken, so an old secret is never reused.
    let run = f.run();
    let id = f
        .stage(run, &cred("h9/x"), &secret("rolled"), &secret("rp"))
        .unwrap();
    f.vault.roll_back(id, "failed").unwrap();
    assert!(f.vault.fingerprint_taken(&secret("rolled")).unwrap());
}

#[test]
fn show_is_audited_and_the_chain_verifies() {
    let f = fixture();
    let c = cred("h1/svc");
    f.vault.enroll(&c, &secret("shown-secret")).unwrap();
    let shown = f.vault.show(&c, "INC-42 vendor call").unwrap();
    assert_eq!(shown.unwrap().expose(), "shown-secret");
    assert!(f.vault.show(&cred("h1/none"), "typo").unwrap().is_none());
    let by = crate::engine::ledger::Actor::named("alice");
    let event = audit::Event::Park {
        reason: "ticket T-1".into(),
        failed_logins: 0,
    };
    f.vault.audit_append(&by, &event, Some(&c)).unwrap();
    let n_entries = f.vault.audit_verify().unwrap().n_entries;
    // init, enroll, show, show, park
    assert_eq!(n_entries, 5);
    let conn = raw(&f.dir);
    let actions: Vec<(String, String)> = conn
        .prepare("SELECT action, detail FROM audit ORDER BY seq")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(actions[2].0, "show");
    assert!(actions[2].1.contains("INC-42 vendor call"));
    assert!(actions.iter().all(|(_, d)| !d.contains("shown-secret")));
}

/// Tampering done with raw SQL (the append-only triggers dropped first, as an attacker with the
/// file would) and what `audit_verify` must say.
#[test]
fn audit_tampering_is_detected() {
    let cases: &[(&str, &str)] = &[
        (
            "edit",
            "UPDATE audit SET detail = 'nothing to see' WHERE seq = 2",
        ),
        ("delete-middle", "DELETE FROM audit WHERE seq = 2"),
        (
            "delete-tail",
            "DELETE FROM audit WHERE seq = (SELECT MAX(seq) FROM audit)",
        ),
        (
            "rehash-edit",
            // Rewrites an entry and recomputes nothing: caught by the hash.
            "UPDATE audit SET actor = 'mallory' WHERE seq = 1",
        ),
        (
            "forge-head",
            "UPDATE meta SET value = '1:abc:def' WHERE key = 'audit_head'",
        ),
    ];
    for (name, sql) in cases {
        let f = fixture();
        f.vault.enroll(&cred("h1/a"), &secret("x1")).unwrap();
        f.vault.show(&cred("h1/a"), "check").unwrap();
        assert_eq!(f.vault.audit_verify().unwrap().n_entries, 3, "{name}");
        let conn = raw(&f.dir);
        // The triggers keep rotor itself (and a careless operator) from changing the log.
        assert!(conn.execute("DELETE FROM audit", []).is_err(), "{name}");
        conn.execute_batch(&format!(
            "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete; {sql};"
        ))
        .unwrap();
        let err = f.vault.audit_verify().unwrap_err();
        assert!(
            matches!(err, StoreError::AuditTampered { .. }),
            "{name}: {err}"
        );
        // The next write of any rotor command does not paper over it: its entry leaves the
        // gap (or the broken row) in place, and the chain still fails, naming an entry.
        f.vault.show(&cred("h1/a"), "after").unwrap();
        let err = f.vault.audit_verify().unwrap_err();
        assert!(
            matches!(err, StoreError::AuditTampered { .. }),
            "{name}, after a write: {err}"
        );
    }
    // Rows forged after the head (the chain's hashes need no key) are caught, and stay caught.
    let f = fixture();
    f.vault.enroll(&cred("h1/a"), &secret("x1")).unwrap();
    let conn = raw(&f.dir);
    let (seq, hash): (i64, String) = conn
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let forged = audit::forge_row_for_tests(&hash, seq + 1);
    conn.execute(
        "INSERT INTO audit (seq, at, actor, action, cred, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, NULL, ?5, ?6, ?7)",
        rusqlite::params![
            seq + 1,
            forged.0,
            "mallory",
            "show",
            forged.1,
            hash,
            forged.2
        ],
    )
    .unwrap();
    assert!(f.vault.audit_verify().is_err());
    f.vault.show(&cred("h1/a"), "after").unwrap();
    assert!(f.vault.audit_verify().is_err());
}

/// Truncating the tail and putting back an older (authentic) head passes `audit_verify`,
/// which sees only the file; heads recorded elsewhere catch it and name the first deleted
/// entry. A recorded head whose hash differs (the log rewritten) names its entry.
#[test]
fn heads_recorded_elsewhere_catch_a_truncated_tail_with_an_older_head_restored() {
    use audit::{Head, RecordedHead};
    let f = fixture();
    f.vault.enroll(&cred("h1/a"), &secret("x1")).unwrap();
    let older_head: String = raw(&f.dir)
        .query_row(
            "SELECT CAST(value AS TEXT) FROM meta WHERE key = 'audit_head'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    let mut recorded = Vec::new();
    for reason in ["one", "two", "three"] {
        f.vault.show(&cred("h1/a"), reason).unwrap();
        let head = f.vault.audit_verify().unwrap().head.unwrap();
        recorded.push(RecordedHead {
            line: recorded.len() + 1,
            head,
        });
    }
    assert_eq!(recorded[2].head.seq, 5);
    let verified = f.vault.audit_verify_heads(&recorded, "heads.txt").unwrap();
    assert_eq!(verified.n_entries, 5);
    raw(&f.dir)
        .execute_batch(&format!(
            "DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq > 2;
             UPDATE meta SET value = '{older_head}' WHERE key = 'audit_head';"
        ))
        .unwrap();
    assert_eq!(f.vault.audit_verify().unwrap().n_entries, 2);
    let err = f
        .vault
        .audit_verify_heads(&recorded, "heads.txt")
        .unwrap_err();
    let StoreError::AuditTampered { seq, reason } = &err else {
        panic!("{err}");
    };
    assert_eq!(*seq, 3, "{err}");
    assert!(
        reason.contains("heads.txt line 3 records entry 5") && reason.contains("entries 3 to 5"),
        "{err}"
    );
    // Heads within the chain must have its hashes.
    let forged = [RecordedHead {
        line: 9,
        head: Head {
            seq: 2,
            hash: "ab".repeat(32),
        },
    }];
    let err = f
        .vault
        .audit_verify_heads(&forged, "heads.txt")
        .unwrap_err();
    assert!(
        matches!(err, StoreError::AuditTampered { seq: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("heads.txt line 9"), "{err}");
}

/// A head is sent once per committed transaction (its last entry), never for one that
/// rolled back.
#[test]
fn heads_are_sent_after_commit_only_and_once_per_transaction() {
    use crate::engine::ledger::Actor;
    let mut f = fixture();
    let socket_dir = TempDir::new().unwrap();
    let socket = socket_dir.path().join("log.sock");
    let listener = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
    listener.set_nonblocking(true).unwrap();
    test_support::send_heads_to(&mut f.vault, &socket);
    let received = || {
        let mut lines = Vec::new();
        let mut buf = [0u8; 1024];
        while let Ok(n) = listener.recv(&mut buf) {
            lines.push(audit::head_in_line(&String::from_utf8_lossy(&buf[..n])).unwrap());
        }
        lines
    };
    let by = Actor::named("alice");
    let event = audit::Event::Unpark { was_parked: None };
    let failed: Result<(), StoreError> = f.vault.write(|tx| {
        f.vault.audit_append_in(&by, tx, &event, None)?;
        Err(StoreError::Corrupt(
            "the test fails this transaction".into(),
        ))
    });
    assert!(failed.is_err());
    assert_eq!(received(), []);
    f.vault
        .write(|tx| {
            f.vault.audit_append_in(&by, tx, &event, None)?;
            f.vault.audit_append_in(&by, tx, &event, Some("h1/a"))
        })
        .unwrap();
    let heads = received();
    // init was entry 1; the rolled-back entry took no number.
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert_eq!(
        Some(&heads[0]),
        f.vault.audit_verify().unwrap().head.as_ref()
    );
    assert_eq!(heads[0].seq, 3);
    f.vault.show(&cred("h1/a"), "read").unwrap();
    assert_eq!(received().len(), 1);
}

#[test]
fn database_files_never_contain_a_plaintext_secret() {
    let plaintexts = [
        "Pl41n-secret-ALPHA-7f3a",
        "Pl41n-secret-BRAVO-91cc",
        "$6$rounds=5000$saltsalt$restorepointhash",
        "Pl41n-secret-CHARLIE-0b2e",
    ];
    let f = fixture();
    f.vault
        .enroll(&cred("h1/a"), &secret(plaintexts[0]))
        .unwrap();
    let run = f.run();
    let id = f
        .stage(
            run,
            &cred("h1/a"),
            &secret(plaintexts[1]),
            &secret(plaintexts[2]),
        )
        .unwrap();
    f.vault.commit(id, false).unwrap();
    f.vault
        .enroll(&cred("h2/b"), &secret(plaintexts[3]))
        .unwrap();

    let scan = |dir: &Path| {
        for file in ["rotor.db", "rotor.db-wal", "rotor.db-shm", "master.key"] {
            let Ok(bytes) = std::fs::read(dir.join(file)) else {
                continue;
            };
            for p in plaintexts {
                assert!(
                    !bytes.windows(p.len()).any(|w| w == p.as_bytes()),
                    "{file} contains a plaintext secret"
                );
            }
        }
    };
    // While open (the WAL holds the recent writes), after close (checkpointed), and after
    // reads, which write audit entries.
    scan(&f.dir);
    let f = f.reopen();
    scan(&f.dir);
    assert_eq!(current(&f, "h1/a").as_deref(), Some(plaintexts[1]));
    let shown = f.vault.show(&cred("h1/a"), "audit me").unwrap();
    assert_eq!(shown.unwrap().expose(), plaintexts[1]);
    let dir = f.dir.clone();
    drop(f.vault);
    scan(&dir);
}

#[test]
fn open_phases_sql_matches_phase_is_open() {
    let sql_phases: Vec<String> = test_support::OPEN_PHASES_SQL
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(|p| p.trim().trim_matches('\'').to_owned())
        .collect();
    let open: Vec<String> = Phase::ALL
        .into_iter()
        .filter(|p| p.is_open())
        .map(|p| p.as_str().to_owned())
        .collect();
    assert_eq!(sql_phases, open);
}

#[test]
fn schema_version_is_recorded_and_newer_is_refused() {
    let f = fixture();
    let dir = f.dir.clone();
    let key = f.key();
    drop(f.vault);
    let conn = raw(&dir);
    let version: String = conn
        .query_row(
            "SELECT CAST(value AS TEXT) FROM meta WHERE key = 'schema_version'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(version, schema::SCHEMA_VERSION.to_string());
    conn.execute(
        "UPDATE meta SET value = '999' WHERE key = 'schema_version'",
        [],
    )
    .unwrap();
    let err = Vault::open(&dir, key).unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 999, .. }),
        "{err}"
    );
}

#[test]
fn end_run_and_status_report() {
    let f = fixture();
    let run = f.run();
    f.vault.enroll(&cred("b/x"), &secret("bx")).unwrap();
    let id = f
        .stage(run, &cred("a/x"), &secret("ax"), &secret("rp"))
        .unwrap();
    f.vault
        .roll_back(id, "verify failed: auth rejected")
        .unwrap();
    f.vault.end_run(run, r#"{"rolled_back":1}"#).unwrap();
    assert!(matches!(
        f.vault.end_run(RunId(77), "{}"),
        Err(StoreError::UnknownRun(77))
    ));
    let status = f.vault.status().unwrap();
    assert_eq!(
        status
            .iter()
            .map(|s| (s.cred.to_string(), s.has_current, s.has_pending))
            .collect::<Vec<_>>(),
        [
            ("a/x".to_owned(), false, false),
            ("b/x".to_owned(), true, false)
        ]
    );
    let last = status[0].last_rotation.as_ref().unwrap();
    assert_eq!(last.phase, Phase::RolledBack);
    assert_eq!(last.note.as_deref(), Some("verify failed: auth rejected"));
    assert!(status[1].current_since.is_some() && status[1].last_rotation.is_none());
}

/// A clock shared by the vault handles of a test, moved forward by hand (the product's own
/// injected [`crate::clock::TestClock`]).
#[derive(Clone)]
struct TestClock(crate::clock::TestClock);

impl TestClock {
    fn new() -> TestClock {
        let start = chrono::DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        TestClock(crate::clock::TestClock::at(start))
    }

    fn advance(&self, secs: u64) {
        self.0.advance(std::time::Duration::from_secs(secs));
    }

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        crate::clock::Clock::now(&self.0)
    }

    fn install(&self, vault: &mut Vault) {
        vault.set_clock(std::sync::Arc::new(self.0.clone()));
    }
}

/// Two `Vault` handles on one file, as two rotor processes have, on one test clock:
/// `a` is the fixture's vault (holder "a"), `b` a second connection (holder "b").
struct Pair {
    f: Fixture,
    b: Vault,
    clock: TestClock,
}

impl Pair {
    fn a(&self) -> &Vault {
        &self.f.vault
    }

    fn acquire(&self, who: &str, c: &str) -> Result<Lease, crate::engine::LeaseHeld> {
        let vault = if who == "a" { self.a() } else { &self.b };
        vault.acquire_lease(&cred(c), who, TTL).unwrap()
    }

    /// The audit entries with this action, as (cred, detail).
    fn audit(&self, action: &str) -> Vec<(Option<String>, String)> {
        raw(&self.f.dir)
            .prepare("SELECT cred, detail FROM audit WHERE action = ?1 ORDER BY seq")
            .unwrap()
            .query_map([action], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Everything a rotation write could change, to show that a refused write changed nothing.
    fn snapshot(&self) -> String {
        let conn = raw(&self.f.dir);
        let mut out = String::new();
        for sql in [
            "SELECT id || ' ' || state || ' ' || state_changed_at FROM versions ORDER BY id",
            "SELECT id || ' ' || phase || ' ' || COALESCE(note, '-') || ' ' || updated_at || ' '
                    || COALESCE(lease_token, '-') FROM rotations ORDER BY id",
            "SELECT credential_id || ' ' || token || ' ' || holder || ' ' || expires_at
             FROM leases ORDER BY credential_id",
            "SELECT CAST(COUNT(*) AS TEXT) FROM audit",
        ] {
            let rows: Vec<String> = conn
                .prepare(sql)
                .unwrap()
                .query_map([], |row| row.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            out.push_str(&rows.join("\n"));
            out.push('\n');
        }
        out
    }
}

fn pair() -> Pair {
    let mut f = fixture();
    let clock = TestClock::new();
    clock.install(&mut f.vault);
    let mut b = Vault::open(&f.dir, f.key()).unwrap().with_actor("b");
    clock.install(&mut b);
    Pair { f, b, clock }
}

fn assert_lease_lost(result: Result<(), StoreError>, c: &str, why: &str) {
    let err = result.unwrap_err();
    assert!(
        matches!(&err, StoreError::LeaseLost { cred, .. } if cred == c),
        "{err}"
    );
    let msg = err.to_string();
    for part in [why, "rotor status", "rotor recover"] {
        assert!(msg.contains(part), "`{part}` missing from: {msg}");
    }
}

/// One step of a lease scenario on credential `h1/svc`, and what it must give.
#[derive(Clone, Copy, Debug)]
enum LeaseStep {
    /// `who` asks for the lease: granted, or held by someone until `t0 + secs`.
    Acquire(&'static str, Expect),
    /// `who` gives back the lease it got at its `n`-th grant (0-based, counting all grants).
    Release(&'static str, usize),
    Advance(i64),
    /// `rotor status` shows this holder (None: free or expired).
    Holder(Option<&'static str>),
}

#[derive(Clone, Copy, Debug)]
enum Expect {
    Granted,
    HeldBy(&'static str, i64),
}

fn check_leases(steps: &[LeaseStep], n_takeovers: usize) {
    let p = pair();
    let t0 = p.clock.now();
    let mut grants: Vec<Lease> = Vec::new();
    for (idx, step) in steps.iter().enumerate() {
        match *step {
            LeaseStep::Acquire(who, expect) => match (p.acquire(who, "h1/svc"), expect) {
                (Ok(lease), Expect::Granted) => {
                    if let Some(last) = grants.last() {
                        assert!(lease.token > last.token, "step {idx}: tokens must increase");
                    }
                    grants.push(lease);
                }
                (Err(held), Expect::HeldBy(holder, secs)) => {
                    assert_eq!(held.holder, holder, "step {idx}");
                    assert_eq!(
                        held.expires_at,
                        t0 + chrono::TimeDelta::seconds(secs),
                        "step {idx}"
                    );
                }
                (got, _) => panic!("step {idx} {step:?}: got {got:?}"),
            },
            LeaseStep::Release(who, n) => {
                let vault = if who == "a" { p.a() } else { &p.b };
                vault.release_lease(&cred("h1/svc"), grants[n]).unwrap();
            }
            LeaseStep::Advance(secs) => p.clock.advance(secs.unsigned_abs()),
            LeaseStep::Holder(expect) => {
                let status = p.b.status().unwrap();
                assert_eq!(status[0].lease_holder.as_deref(), expect, "step {idx}");
            }
        }
    }
    assert_eq!(p.audit("lease_takeover").len(), n_takeovers, "{steps:?}");
}

#[test]
fn leases_across_two_processes() {
    use Expect::*;
    use LeaseStep::*;
    // The second process cannot take a held lease, and can once it expires (TTL is 60 s);
    // taking over someone else's expired lease is audited.
    check_leases(
        &[
            Acquire("a", Granted),
            Holder(Some("a")),
            Acquire("b", HeldBy("a", 60)),
            Advance(59),
            Acquire("b", HeldBy("a", 60)),
            Advance(1),
            Holder(None),
            Acquire("b", Granted),
            Holder(Some("b")),
            Acquire("a", HeldBy("b", 120)),
        ],
        1,
    );
    // The same holder may take its lease again (a new token); release frees it at once.
    check_leases(
        &[
            Acquire("a", Granted),
            Acquire("a", Granted),
            Release("a", 1),
            Holder(None),
            Acquire("b", Granted),
        ],
        0,
    );
    // Giving back a lease that is no longer yours (stale token) changes nothing.
    check_leases(
        &[
            Acquire("a", Granted),
            Advance(60),
            Acquire("b", Granted),
            Release("a", 0),
            Holder(Some("b")),
            Acquire("a", HeldBy("b", 120)),
            Release("b", 1),
            Acquire("a", Granted),
        ],
        1,
    );
    // A holder's own expired lease, taken again by it, is not a takeover.
    check_leases(
        &[Acquire("a", Granted), Advance(600), Acquire("a", Granted)],
        0,
    );
}

/// The clock the test injects, and nothing else, decides when a lease expires and whether
/// the fence before a push (`renew_lease`) lets the holder write to the target.
#[test]
fn the_injected_clock_decides_lease_expiry_and_the_push_fence() {
    let p = pair();
    let c = cred("h1/svc");
    let run = p.a().begin_run("test", "all").unwrap();
    let lease_a = p.acquire("a", "h1/svc").unwrap();
    let id = p
        .a()
        .stage(run, &c, &secret("v1"), &secret("rp"), lease_a)
        .unwrap();
    // 59 s of a 60 s lease: still a's; the fence passes and renews it from now.
    p.clock.advance(59);
    assert!(p.b.acquire_lease(&c, "b", TTL).unwrap().is_err());
    p.a().renew_lease(id).unwrap();
    // 118 s after the start, but only 59 s after the renewal: still a's.
    p.clock.advance(59);
    assert!(p.b.acquire_lease(&c, "b", TTL).unwrap().is_err());
    // Past the renewed expiry: b takes it over, and a's next push is fenced off.
    p.clock.advance(2);
    assert!(p.b.acquire_lease(&c, "b", TTL).unwrap().is_ok());
    assert_lease_lost(p.a().renew_lease(id), "h1/svc", "superseded");
}

/// Through the engine's port a write names its lease and its actor: the lease given is the
/// one checked (not what the handle remembers), and the actor given is the one audited.
#[test]
fn the_port_checks_the_lease_it_is_given_and_audits_the_actor_it_is_given() {
    use crate::engine::ledger::{Actor, Leases, Ledger, Runs};
    let p = pair();
    let c = cred("h1/svc");
    let alice = Actor::named("alice");
    let run = Runs::begin_run(p.a(), &alice, "test", "all").unwrap();
    let lease = Leases::acquire_lease(p.a(), &alice, &c, "a", TTL)
        .unwrap()
        .unwrap();
    let id = Ledger::stage(p.a(), &alice, lease, run, &c, &secret("v1"), &secret("rp")).unwrap();
    // A lease that is not the rotation's token is refused, whoever's handle it comes through.
    let forged = Lease {
        token: lease.token + 100,
    };
    let err = Ledger::record_phase(p.a(), &alice, forged, id, Phase::Applied, None).unwrap_err();
    assert_eq!(
        err.kind,
        crate::engine::ledger::StoreFailureKind::LeaseLost,
        "{err}"
    );
    // The right token is the capability: it works even through the other handle.
    let bob = Actor::named("bob");
    Ledger::record_phase(&p.b, &bob, lease, id, Phase::Applied, None).unwrap();
    Ledger::commit(&p.b, &bob, lease, id, false).unwrap();
    let actors: Vec<String> = raw(&p.f.dir)
        .prepare(
            "SELECT actor FROM audit WHERE action IN ('stage', 'phase', 'commit') ORDER BY seq",
        )
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(actors, ["alice", "bob", "bob"]);
}

#[test]
fn a_stale_holder_cannot_write_after_a_takeover() {
    let p = pair();
    let c = cred("h1/svc");
    p.a().enroll(&c, &secret("v0")).unwrap();
    let run = p.a().begin_run("test", "all").unwrap();
    let lease_a = p.acquire("a", "h1/svc").unwrap();
    let id = p
        .a()
        .stage(run, &c, &secret("v1"), &secret("rp"), lease_a)
        .unwrap();
    p.a().record_phase(id, Phase::Applied, None).unwrap();

    // Process a stalls past its lease; process b takes the credential over.
    p.clock.advance(61);
    let lease_b = p.acquire("b", "h1/svc").unwrap();
    assert!(lease_b.token > lease_a.token);
    let before = p.snapshot();
    let superseded = format!("superseded by token {}, taken by b", lease_b.token);
    for result in [
        p.a().record_phase(id, Phase::Verified, None),
        p.a().commit(id, false),
        p.a().roll_back(id, "late"),
        p.a().mark_stuck(id, "late"),
    ] {
        assert_lease_lost(result, "h1/svc", &superseded);
    }
    assert_lease_lost(
        p.a()
            .stage(run, &cred("h1/svc"), &secret("v2"), &secret("rp"), lease_a)
            .map(|_| ()),
        "h1/svc",
        &superseded,
    );
    assert_eq!(p.snapshot(), before, "a refused write changed something");

    // b's lease alone does not let it write the rotation: it must adopt it first.
    assert_lease_lost(p.b.commit(id, false), "h1/svc", "adopt it first");
    let err = p.b.adopt(id, lease_a).unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err}");
    p.b.adopt(id, lease_b).unwrap();
    assert_eq!(p.audit("adopt").len(), 1);
    assert!(p.audit("adopt")[0].1.contains(&lease_b.token.to_string()));
    // Now the rotation row carries b's token; a, still holding its old one, is refused all
    // the same (the store knows which token each process was given).
    let before = p.snapshot();
    for result in [
        p.a().record_phase(id, Phase::RollingBack, None),
        p.a().commit(id, false),
        p.a().roll_back(id, "late"),
        p.a().mark_stuck(id, "late"),
    ] {
        assert_lease_lost(result, "h1/svc", &superseded);
    }
    // The stale process giving its lease back does not free b's.
    p.a().release_lease(&c, lease_a).unwrap();
    assert_eq!(p.snapshot(), before, "a refused write changed something");
    assert_eq!(p.b.status().unwrap()[0].lease_holder.as_deref(), Some("b"));

    p.b.record_phase(id, Phase::Verified, None).unwrap();
    p.b.commit(id, false).unwrap();
    assert_eq!(p.b.current(&c).unwrap().unwrap().expose(), "v1");
    // The stale process still cannot touch it (and learns why, not just "not open").
    assert_lease_lost(p.a().commit(id, false), "h1/svc", "holds no lease");
    // Adopting a finished rotation is refused.
    let err = p.b.adopt(id, lease_b).unwrap_err();
    assert!(matches!(err, StoreError::NotOpen { .. }), "{err}");
}

#[test]
fn closing_a_rotation_gives_its_lease_back() {
    let p = pair();
    let c = cred("h1/svc");
    let run = p.a().begin_run("test", "all").unwrap();
    for close in ["commit", "roll_back", "mark_stuck"] {
        let lease_a = p.acquire("a", "h1/svc").unwrap();
        let id = p
            .a()
            .stage(run, &c, &secret(close), &secret("rp"), lease_a)
            .unwrap();
        match close {
            "commit" => p.a().commit(id, false).unwrap(),
            "roll_back" => p.a().roll_back(id, "verify failed").unwrap(),
            _ => {
                p.a().mark_stuck(id, "both failed").unwrap();
                assert!(p.a().reopen_stuck(&c).unwrap());
            }
        }
        // Writing the closed rotation again, a is told that it is closed.
        if close != "mark_stuck" {
            let err = p.a().commit(id, false).unwrap_err();
            assert!(matches!(err, StoreError::NotOpen { .. }), "{close}: {err}");
        }
        // Another process gets the credential at once, without waiting for a's ttl...
        let lease_b = p.acquire("b", "h1/svc").unwrap();
        // ...and a giving back the lease its closing already ended frees nothing of b's.
        p.a().release_lease(&c, lease_a).unwrap();
        assert_eq!(p.b.status().unwrap()[0].lease_holder.as_deref(), Some("b"));
        if close == "mark_stuck" {
            // Reopened, it is b's to settle (a holds no lease on it any more).
            p.b.adopt(id, lease_b).unwrap();
            p.b.roll_back(id, "settled").unwrap();
        }
        p.b.release_lease(&c, lease_b).unwrap();
    }
}

#[test]
fn writes_need_an_unexpired_lease_and_renew_it() {
    let p = pair();
    let c = cred("h1/svc");
    let run = p.a().begin_run("test", "all").unwrap();
    let lease = p.acquire("a", "h1/svc").unwrap();
    let id = p
        .a()
        .stage(run, &c, &secret("v1"), &secret("rp"), lease)
        .unwrap();
    // Each write renews the lease to now + ttl, so a busy holder keeps it indefinitely.
    for _ in 0..3 {
        p.clock.advance(50);
        p.a().record_phase(id, Phase::Applied, None).unwrap();
        assert_eq!(p.b.status().unwrap()[0].lease_holder.as_deref(), Some("a"));
        let held = p.acquire("b", "h1/svc").unwrap_err();
        assert_eq!(
            held.expires_at,
            p.clock.now() + chrono::TimeDelta::seconds(60)
        );
    }
    // An expired lease fences writes even when no one has taken it over.
    p.clock.advance(60);
    assert_lease_lost(
        p.a().record_phase(id, Phase::Verified, None),
        "h1/svc",
        "expired at",
    );
    // A released lease too.
    let again = p.acquire("a", "h1/svc").unwrap();
    p.a().adopt(id, again).unwrap();
    p.a().release_lease(&c, again).unwrap();
    assert_lease_lost(p.a().commit(id, false), "h1/svc", "gave it back");
}

#[test]
fn rotations_from_before_leases_must_be_adopted() {
    let f = fixture();
    let c = cred("h1/svc");
    let run = f.run();
    let id = f.stage(run, &c, &secret("v1"), &secret("rp")).unwrap();
    // What a schema-1 rotation looks like after the migration.
    raw(&f.dir)
        .execute("UPDATE rotations SET lease_token = NULL", [])
        .unwrap();
    assert_lease_lost(
        f.vault.record_phase(id, Phase::Applied, None),
        "h1/svc",
        "staged by an older rotor",
    );
    // Recovery in the same process: the fixture's holder takes a fresh token.
    let lease = f.vault.acquire_lease(&c, "test", TTL).unwrap().unwrap();
    f.vault.adopt(id, lease).unwrap();
    f.vault.commit(id, false).unwrap();
    assert_eq!(current(&f, "h1/svc").as_deref(), Some("v1"));
}

#[test]
fn a_schema_1_vault_migrates_on_open_and_keeps_its_data() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("data");
    let old = test_support::init_at_schema(&dir, KeySource::default_file(&dir), 1).unwrap();
    old.enroll(&cred("h1/svc"), &secret("v0-before-migration"))
        .unwrap();
    let run = old.begin_run("before", "all").unwrap();
    drop(old);
    let column_names = |table: &str| -> Vec<String> {
        raw(&dir)
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert!(!column_names("rotations").contains(&"lease_token".to_owned()));

    let vault = Vault::open(&dir, KeySource::default_file(&dir)).unwrap();
    let version: String = raw(&dir)
        .query_row(
            "SELECT CAST(value AS TEXT) FROM meta WHERE key = 'schema_version'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(version, crate::store::schema::SCHEMA_VERSION.to_string());
    assert!(column_names("rotations").contains(&"lease_token".to_owned()));
    let c = cred("h1/svc");
    assert_eq!(
        vault.current(&c).unwrap().unwrap().expose(),
        "v0-before-migration"
    );
    // init, enroll: the chain made before the migration still verifies.
    assert_eq!(vault.audit_verify().unwrap().n_entries, 2);
    let status = vault.status().unwrap();
    assert_eq!(
        (status[0].parked.clone(), status[0].lease_holder.clone()),
        (None, None)
    );
    assert_eq!(vault.parked(&c).unwrap(), None);
    // The new machinery works on the migrated vault, in the run made before.
    let lease = vault.acquire_lease(&c, "a", TTL).unwrap().unwrap();
    let id = vault
        .stage(run, &c, &secret("v1"), &secret("rp"), lease)
        .unwrap();
    vault.commit(id, false).unwrap();
    assert_eq!(vault.current(&c).unwrap().unwrap().expose(), "v1");
    drop(vault);
    // Opening again finds nothing to migrate.
    let vault = Vault::open(&dir, KeySource::default_file(&dir)).unwrap();
    assert_eq!(vault.audit_verify().unwrap().n_entries, 4);
}

#[test]
fn lockout_budget_counts_parks_and_unparks() {
    let f = fixture();
    let c = cred("h1/svc");
    // Consecutive failures count up; a success resets.
    for (ok, expect) in [
        (false, 1),
        (false, 2),
        (true, 0),
        (false, 1),
        (false, 2),
        (false, 3),
    ] {
        assert_eq!(f.vault.record_login(&c, ok).unwrap(), expect, "ok={ok}");
    }
    assert_eq!(f.vault.parked(&c).unwrap(), None);
    f.vault.park(&c, "3 failed logins as the account").unwrap();
    assert_eq!(
        f.vault.parked(&c).unwrap().as_deref(),
        Some("3 failed logins as the account")
    );
    let status = f.vault.status().unwrap();
    assert_eq!(
        status[0].parked.as_deref(),
        Some("3 failed logins as the account")
    );
    // A parked credential is not rotated.
    let err = f
        .stage(f.run(), &c, &secret("v1"), &secret("rp"))
        .unwrap_err();
    assert!(matches!(err, StoreError::Parked { .. }), "{err}");
    assert!(err.to_string().contains("3 failed logins"), "{err}");

    f.vault.unpark(&c).unwrap();
    assert_eq!(f.vault.parked(&c).unwrap(), None);
    assert_eq!(f.vault.status().unwrap()[0].parked, None);
    // Unparking cleared the count as well.
    assert_eq!(f.vault.record_login(&c, false).unwrap(), 1);
    f.stage(f.run(), &c, &secret("v1"), &secret("rp")).unwrap();

    let err = f.vault.unpark(&cred("h1/typo")).unwrap_err();
    assert!(matches!(err, StoreError::UnknownCredential(_)), "{err}");
    assert_eq!(f.vault.parked(&cred("h1/never")).unwrap(), None);

    // Park and unpark are audited; logins are not.
    let conn = raw(&f.dir);
    let actions: Vec<(String, String)> = conn
        .prepare("SELECT action, detail FROM audit WHERE action IN ('park', 'unpark') ORDER BY seq")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert!(
        actions[0].1.contains("3 failed logins") && actions[0].1.contains("\"failed_logins\":3")
    );
    assert!(actions[1].1.contains("was_parked"));
    // init, park, unpark, stage (the refused stage wrote nothing).
    assert_eq!(f.vault.audit_verify().unwrap().n_entries, 4);
}

/// A lease whose holding process on this machine is gone (SIGKILL) is taken over at once,
/// without waiting for its ttl, and the takeover is audited as such.
#[test]
fn a_lease_of_a_dead_process_is_taken_over_at_once() {
    let f = fixture();
    let c = cred("h1/svc_app");
    assert!(
        f.vault
            .acquire_lease(&c, "dead rotor", TTL)
            .unwrap()
            .is_ok()
    );
    // Pretend the holder was another process that has exited: a pid that cannot exist.
    raw(&f.dir)
        .execute("UPDATE leases SET owner_pid = 2147483646", [])
        .unwrap();
    let other = Vault::open(&f.dir, KeySource::default_file(&f.dir)).unwrap();
    assert!(other.acquire_lease(&c, "live rotor", TTL).unwrap().is_ok());
    // A live holder (this process) is respected.
    let third = Vault::open(&f.dir, KeySource::default_file(&f.dir)).unwrap();
    assert!(
        third
            .acquire_lease(&c, "third rotor", TTL)
            .unwrap()
            .is_err()
    );
    let audit: Vec<String> = raw(&f.dir)
        .prepare("SELECT detail FROM audit WHERE action = 'lease_takeover'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        audit
            .iter()
            .any(|d| d.contains("\"previous_holder_gone\":true")),
        "{audit:?}"
    );
}

#[test]
fn the_database_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture();
    let mode = std::fs::metadata(Vault::db_path(&f.dir))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// Invariant 6 under concurrency: two processes (two handles on one file) that drew the same
/// secret for two credentials both pass the read-only `fingerprint_taken` before either has
/// staged; staging itself is where the check counts, so only the first stores it.
#[test]
fn two_stagings_of_one_secret_cannot_both_succeed() {
    let p = pair();
    let same = secret("drawn-twice");
    assert!(!p.a().fingerprint_taken(&same).unwrap());
    assert!(!p.b.fingerprint_taken(&same).unwrap());
    let run_a = p.a().begin_run("a", "all").unwrap();
    let run_b = p.b.begin_run("b", "all").unwrap();
    let lease_a = p.acquire("a", "h1/svc").unwrap();
    let lease_b = p.acquire("b", "h2/svc").unwrap();
    let id = p
        .a()
        .stage(run_a, &cred("h1/svc"), &same, &secret("rp1"), lease_a)
        .unwrap();
    let before = p.snapshot();
    let err =
        p.b.stage(run_b, &cred("h2/svc"), &same, &secret("rp2"), lease_b)
            .unwrap_err();
    assert!(
        matches!(&err, StoreError::SecretCollision(c) if c == "h2/svc"),
        "{err}"
    );
    assert!(!err.to_string().contains("drawn-twice"), "{err}");
    assert_eq!(p.snapshot(), before, "the refused staging changed nothing");
    // Also against a secret that is only history: a rolled-back pending is never reused.
    p.a().roll_back(id, "test").unwrap();
    let lease_b = p.acquire("b", "h2/svc").unwrap();
    let err =
        p.b.stage(run_b, &cred("h2/svc"), &same, &secret("rp2"), lease_b)
            .unwrap_err();
    assert!(matches!(err, StoreError::SecretCollision(_)), "{err}");
}

/// A rotation row pointed at another credential's pending version (a hand-edited or
/// tampered database) must not decrypt: recovery would otherwise write one account's saved
/// hash onto another account.
#[test]
fn a_restore_point_moved_to_another_credential_fails_integrity() {
    let f = fixture();
    let run = f.run();
    f.vault.enroll(&cred("h1/b"), &secret("current-b")).unwrap();
    f.stage(run, &cred("h1/a"), &secret("new-a"), &secret("$6$old-a"))
        .unwrap();
    f.stage(run, &cred("h1/c"), &secret("new-c"), &secret("$6$old-c"))
        .unwrap();
    // Point h1/a's rotation at h1/b and its current version: both still decrypt as what they
    // were sealed as, but the restore point was sealed for h1/a's rotation.
    raw(&f.dir)
        .execute_batch(
            "UPDATE rotations SET
               credential_id = (SELECT id FROM credentials WHERE cred = 'h1/b'),
               version_id = (SELECT v.id FROM versions v JOIN credentials c ON c.id = v.credential_id
                             WHERE c.cred = 'h1/b' AND v.state = 'current')
             WHERE credential_id = (SELECT id FROM credentials WHERE cred = 'h1/a')",
        )
        .unwrap();
    // That row is refused alone: a healthy open rotation beside it is still recovered.
    let open = f.vault.open_rotations().unwrap();
    assert_eq!(
        open.iter().map(|r| r.cred.to_string()).collect::<Vec<_>>(),
        ["h1/c"]
    );
    let unreadable = f.vault.unreadable_rotations().unwrap();
    assert_eq!(unreadable.len(), 1);
    assert_eq!(unreadable[0].cred.to_string(), "h1/b");
    assert!(
        unreadable[0].error.kind == crate::engine::ledger::StoreFailureKind::Integrity
            && unreadable[0].error.message.contains("restore point"),
        "{:?}",
        unreadable[0].error
    );
}

/// A stuck rotation (the target was changed outside rotor, say) is settled by the operator
/// enrolling the account's password: the stuck pending secret is retired, and the credential
/// can be rotated again.
#[test]
fn enrolling_settles_a_stuck_rotation() {
    let f = fixture();
    let c = cred("h1/svc");
    f.vault.enroll(&c, &secret("v0")).unwrap();
    let run = f.run();
    let id = f.stage(run, &c, &secret("v1"), &secret("rp")).unwrap();
    f.vault.mark_stuck(id, "changed outside rotor").unwrap();
    let err = f.stage(run, &c, &secret("v2"), &secret("rp")).unwrap_err();
    assert!(matches!(err, StoreError::Stuck(..)), "{err}");
    let outcome = f.vault.enroll(&c, &secret("set-by-hand")).unwrap();
    assert_eq!(outcome.settled_stuck, Some(id));
    assert_eq!(current(&f, "h1/svc").as_deref(), Some("set-by-hand"));
    assert!(f.vault.open_rotations().unwrap().is_empty());
    let status = f.vault.status().unwrap();
    let last = status[0].last_rotation.as_ref().unwrap();
    assert_eq!((last.id, last.phase), (id, Phase::RolledBack));
    f.stage(run, &c, &secret("v3"), &secret("rp")).unwrap();
}

/// A rotation left open by a rotor from before schema 4 (its restore point sealed with the
/// rotation id only) is still recovered after the upgrade.
#[test]
fn a_restore_point_sealed_before_schema_4_still_opens() {
    let f = fixture();
    let run = f.run();
    let id = f
        .stage(run, &cred("h1/a"), &secret("new-a"), &secret("$6$old-a"))
        .unwrap();
    test_support::seal_restore_point_as_before_schema_4(&f.vault, id, &secret("$6$old-a"));
    let open = f.vault.open_rotations().unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].restore_point.expose(), "$6$old-a");
    assert!(f.vault.unreadable_rotations().unwrap().is_empty());
    // The scheme column is no way around the binding: read as scheme 2, the old blob fails.
    raw(&f.dir)
        .execute_batch("UPDATE rotations SET restore_aad = 2")
        .unwrap();
    assert_eq!(f.vault.unreadable_rotations().unwrap().len(), 1);
}

mod checkouts {
    use super::*;
    use crate::checkout::{End, State};
    use crate::engine::ledger::Actor;

    const HOUR: std::time::Duration = std::time::Duration::from_secs(3600);

    fn request<'a>(c: &'a CredentialId, approval: bool) -> NewCheckout<'a> {
        NewCheckout {
            cred: c,
            ticket: "INC-1",
            reason: "vendor maintenance",
            for_name: Some("kato"),
            ttl: HOUR,
            inventory: "/etc/rotor/inventory.yaml",
            needs_approval: approval,
        }
    }

    fn setup() -> (Fixture, TestClock, CredentialId) {
        let mut f = fixture();
        let clock = TestClock::new();
        clock.install(&mut f.vault);
        let c = cred("h1/svc_app");
        f.vault.enroll(&c, &secret("the-current-secret-1")).unwrap();
        (f, clock, c)
    }

    fn refusal(e: StoreError) -> String {
        match e {
            StoreError::Refused(why) => why,
            other => panic!("expected a refusal, got {other}"),
        }
    }

    #[test]
    fn dual_control_then_one_claim_then_checkin_leaves_it_ending_until_rotated() {
        let (f, clock, c) = setup();
        let (alice, bob, kato) = (
            Actor::named("alice"),
            Actor::named("bob"),
            Actor::named("kato"),
        );
        let (pending, secret) = f
            .vault
            .checkout_request(&alice, &request(&c, true))
            .unwrap();
        assert!(secret.is_none());
        assert_eq!(pending.state, State::Pending);
        // Exclusive even while pending.
        let again = refusal(
            f.vault
                .checkout_request(&bob, &request(&c, true))
                .unwrap_err(),
        );
        assert!(
            again.contains("already checked out: checkout 1 by alice (for kato), ticket INC-1"),
            "{again}"
        );
        // Neither the requester nor the named engineer approves; nobody claims before approval.
        assert!(
            refusal(f.vault.checkout_approve(&alice, 1).unwrap_err()).contains("cannot approve")
        );
        assert!(refusal(f.vault.checkout_approve(&kato, 1).unwrap_err()).contains("is for kato"));
        assert!(
            refusal(f.vault.checkout_claim(&alice, 1).unwrap_err()).contains("not approved yet")
        );
        let approved = f.vault.checkout_approve(&bob, 1).unwrap();
        assert_eq!(approved.state, State::Approved);
        assert_eq!(approved.approved_by.as_deref(), Some("bob"));
        assert!(refusal(f.vault.checkout_claim(&bob, 1).unwrap_err()).contains("only alice"));
        clock.advance(600);
        let (open, secret) = f.vault.checkout_claim(&alice, 1).unwrap();
        assert_eq!(secret.expose(), "the-current-secret-1");
        assert_eq!(open.state, State::Open);
        // The grant's hour starts at the claim.
        assert_eq!(open.ends_at, Some(clock.now() + chrono::Duration::hours(1)));
        assert!(
            refusal(f.vault.checkout_claim(&alice, 1).unwrap_err()).contains("already claimed")
        );
        // Admission sees the open checkout.
        let words = crate::engine::ledger::Grants::checked_out(&f.vault, &c)
            .unwrap()
            .unwrap();
        assert!(
            words.starts_with("checkout 1 by alice (for kato), ticket INC-1, until "),
            "{words}"
        );

        let ending = f.vault.checkout_checkin(&alice, 1).unwrap();
        assert_eq!(
            (ending.state, ending.end),
            (State::Ending, Some(End::CheckIn))
        );
        // Ending: admission lets the rotation through, and every `due` returns it.
        assert_eq!(
            crate::engine::ledger::Grants::checked_out(&f.vault, &c).unwrap(),
            None
        );
        f.vault
            .checkout_rotation_failed(&alice, 1, "host down")
            .unwrap();
        let due = f.vault.checkouts_due(&alice).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].failure.as_deref(), Some("host down"));
        assert_eq!(due[0].state_words(), "checked in, rotation failed");
        // The same failure again is not recorded again.
        let before = raw_count(&f.dir);
        f.vault
            .checkout_rotation_failed(&alice, 1, "host down")
            .unwrap();
        assert_eq!(raw_count(&f.dir), before);
        // The rotation that makes the old secret stop working closes it, in its commit.
        let run = f.run();
        let rotation = f
            .stage(
                run,
                &c,
                &super::secret("the-next-secret-2"),
                &super::secret("saved"),
            )
            .unwrap();
        f.vault.commit(rotation, false).unwrap();
        let closed = f.vault.checkout(1).unwrap();
        assert_eq!(
            (closed.state, closed.end, closed.rotation, closed.failure),
            (State::Closed, Some(End::CheckIn), Some(rotation.0), None)
        );
        assert!(f.vault.checkouts_due(&alice).unwrap().is_empty());
        assert_eq!(f.vault.checkouts(false).unwrap(), Vec::new());
        assert_eq!(f.vault.checkouts(true).unwrap().len(), 1);
        // A new checkout is possible once closed.
        f.vault.checkout_request(&bob, &request(&c, false)).unwrap();
        assert_eq!(f.vault.audit_verify().unwrap().n_entries, raw_count(&f.dir));
    }

    fn raw_count(dir: &Path) -> usize {
        raw(dir)
            .query_row("SELECT COUNT(*) FROM audit", [], |row| row.get::<_, i64>(0))
            .unwrap() as usize
    }

    #[test]
    fn deadlines_expire_open_checkouts_and_lapse_requests_by_the_vault_clock() {
        let (f, clock, c) = setup();
        let other = cred("h1/svc_backup");
        f.vault
            .enroll(&other, &secret("the-other-secret-2"))
            .unwrap();
        let alice = Actor::named("alice");
        let (open, secret) = f
            .vault
            .checkout_request(&alice, &request(&c, false))
            .unwrap();
        assert_eq!(open.state, State::Open);
        assert_eq!(secret.unwrap().expose(), "the-current-secret-1");
        f.vault
            .checkout_request(&alice, &request(&other, true))
            .unwrap();
        clock.advance(3599);
        assert!(f.vault.checkouts_due(&alice).unwrap().is_empty());
        clock.advance(1);
        let due = f.vault.checkouts_due(&alice).unwrap();
        assert_eq!(due.len(), 1, "{due:?}");
        assert_eq!(
            (due[0].cred.clone(), due[0].end),
            (c.clone(), Some(End::Expired))
        );
        // The request nobody approved lapsed: closed, nothing to rotate.
        let all = f.vault.checkouts(true).unwrap();
        let lapsed = all.iter().find(|x| x.cred == other).unwrap();
        assert_eq!(
            (lapsed.state, lapsed.end),
            (State::Closed, Some(End::Lapsed))
        );
        let actions: Vec<String> = raw(&f.dir)
            .prepare("SELECT action FROM audit WHERE action LIKE 'checkout%' ORDER BY seq")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            actions,
            [
                "checkout_requested",
                "checkout_granted",
                "checkout_requested",
                "checkout_expired",
                "checkout_closed"
            ]
        );
    }

    #[test]
    fn a_second_person_refuses_a_pending_request_which_closes_with_the_reason_audited() {
        let (f, _clock, c) = setup();
        let (alice, bob, kato) = (
            Actor::named("alice"),
            Actor::named("bob"),
            Actor::named("kato"),
        );
        f.vault
            .checkout_request(&alice, &request(&c, true))
            .unwrap();
        // Not the requester (she withdraws with checkin), not the named engineer, not
        // without a reason.
        let own = refusal(f.vault.checkout_refuse(&alice, 1, "no").unwrap_err());
        assert!(own.contains("cannot refuse"), "{own}");
        let named = refusal(f.vault.checkout_refuse(&kato, 1, "no").unwrap_err());
        assert!(named.contains("is for kato"), "{named}");
        let bare = refusal(f.vault.checkout_refuse(&bob, 1, "  ").unwrap_err());
        assert!(bare.contains("--reason"), "{bare}");
        let closed = f
            .vault
            .checkout_refuse(&bob, 1, "wrong ticket: use the change ticket")
            .unwrap();
        assert_eq!(
            (closed.state, closed.end, closed.ended_by.as_deref()),
            (State::Closed, Some(End::Refused), Some("bob"))
        );
        assert_eq!(closed.state_words(), "closed (refused)");
        assert_eq!(closed.failure, None, "a refusal is no failed rotation");
        // Only a pending request: a refused one is over, an approved one is the requester's.
        let again = refusal(f.vault.checkout_refuse(&bob, 1, "no").unwrap_err());
        assert!(again.contains("not pending"), "{again}");
        f.vault
            .checkout_request(&alice, &request(&c, true))
            .unwrap();
        f.vault.checkout_approve(&bob, 2).unwrap();
        assert!(
            refusal(f.vault.checkout_refuse(&bob, 2, "no").unwrap_err()).contains("not pending")
        );
        let refused: Vec<String> = raw(&f.dir)
            .prepare("SELECT detail FROM audit WHERE action = 'checkout_refused'")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            refused,
            [r#"{"checkout":1,"reason":"wrong ticket: use the change ticket","ticket":"INC-1"}"#]
        );
        let event = crate::store::audit::Event::CheckoutRefused {
            checkout: 1,
            ticket: "INC-1".into(),
            reason: "wrong ticket".into(),
        };
        assert_eq!(
            event.describe(),
            "checkout 1 (ticket INC-1) refused; reason: wrong ticket"
        );
    }

    #[test]
    fn no_grant_while_the_credential_is_being_rotated_or_has_no_secret() {
        let (f, _clock, c) = setup();
        let alice = Actor::named("alice");
        let lease = f.vault.acquire_lease(&c, "a run", TTL).unwrap().unwrap();
        let busy = refusal(
            f.vault
                .checkout_request(&alice, &request(&c, false))
                .unwrap_err(),
        );
        assert!(busy.contains("is being rotated"), "{busy}");
        f.vault.release_lease(&c, lease).unwrap();
        f.vault
            .checkout_request(&alice, &request(&c, false))
            .unwrap();
        let none = cred("h2/nobody");
        let missing = refusal(
            f.vault
                .checkout_request(&alice, &request(&none, true))
                .unwrap_err(),
        );
        assert!(missing.contains("holds no current secret"), "{missing}");
    }

    #[test]
    fn a_read_of_a_checked_out_secret_is_the_holders_or_an_override() {
        let (f, _clock, c) = setup();
        let (alice, bob) = (Actor::named("alice"), Actor::named("bob"));
        let shown = f.vault.show_checked(&bob, &c, "before").unwrap();
        assert!(shown.checkout.is_none());
        f.vault
            .checkout_request(&alice, &request(&c, false))
            .unwrap();
        let by_holder = f.vault.show_checked(&alice, &c, "lost it").unwrap();
        assert_eq!(
            by_holder.checkout.unwrap().1,
            crate::checkout::Read::ByHolder
        );
        let peek = f.vault.show_checked(&bob, &c, "audit").unwrap();
        assert_eq!(peek.checkout.unwrap().1, crate::checkout::Read::Override);
        assert_eq!(peek.secret.unwrap().expose(), "the-current-secret-1");
        let actions: Vec<String> = raw(&f.dir)
            .prepare("SELECT action FROM audit WHERE action LIKE 'show%' ORDER BY seq")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(actions, ["show", "show_by_holder", "show_override"]);
    }
}

mod tokens {
    use super::*;
    use crate::engine::ledger::Actor;

    #[test]
    fn a_token_speaks_for_its_name_until_it_expires_or_is_revoked_and_only_its_hash_is_kept() {
        let mut f = fixture();
        let clock = TestClock::new();
        clock.install(&mut f.vault);
        let admin = Actor::named("root");
        let day = std::time::Duration::from_secs(86_400);
        let (t, token) = f
            .vault
            .token_create(&admin, "vendor-kato", Role::Requester, day)
            .unwrap();
        assert!(token.expose().starts_with(&format!("rotor_{}_", t.id)));
        let p = f.vault.token_principal(&token).unwrap().unwrap();
        assert_eq!((p.name.as_str(), p.role), ("vendor-kato", Role::Requester));
        // A wrong token, a changed one, or something else entirely: nobody.
        for wrong in [
            format!("{}x", token.expose()),
            token.expose().replace('_', "-"),
            "rotor_1_".to_owned(),
            String::new(),
        ] {
            assert_eq!(f.vault.token_principal(&secret(&wrong)).unwrap(), None);
        }
        // Not stored, not audited: only a keyed hash.
        let bytes = std::fs::read(f.dir.join("rotor.db")).unwrap();
        let needle = token.expose().split('_').next_back().unwrap().as_bytes();
        assert!(!bytes.windows(needle.len()).any(|w| w == needle));
        clock.advance(86_399);
        assert!(f.vault.token_principal(&token).unwrap().is_some());
        clock.advance(1);
        assert_eq!(f.vault.token_principal(&token).unwrap(), None, "expired");

        let (t2, second) = f
            .vault
            .token_create(&admin, "dr-sato", Role::Approver, day)
            .unwrap();
        assert_eq!(t2.id, t.id + 1);
        f.vault.token_revoke(&admin, t2.id).unwrap();
        assert_eq!(f.vault.token_principal(&second).unwrap(), None, "revoked");
        let listed = f.vault.tokens().unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed[1].revoked_at.is_some());
        assert!(f.vault.token_revoke(&admin, 99).is_err());
        assert!(f.vault.token_create(&admin, " ", Role::Admin, day).is_err());
        assert!(
            f.vault
                .token_create(&admin, "x", Role::Admin, day * 400)
                .is_err()
        );
        let actions: Vec<String> = raw(&f.dir)
            .prepare("SELECT action FROM audit WHERE action LIKE 'token%' ORDER BY seq")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(actions, ["token_created", "token_created", "token_revoked"]);
        f.vault.audit_verify().unwrap();
    }
}

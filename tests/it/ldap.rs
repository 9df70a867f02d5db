//! Issue 4 against a real slapd: 2,000 directory accounts that share one password each get
//! their own, proven with `ldapwhoami` (the lab's `bind`, not rotor's code); and the faults:
//! wrong bind secret, a certificate that does not match, an account deleted after the plan,
//! slapd stopped during the run.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::ldap_lab::{LdapLab, ServerCert};
use crate::support::{Leaks, Rotor, json, result_of};

/// An inventory with the lab's directory only.
fn inventory(lab: &LdapLab) -> PathBuf {
    let path = lab.dir().join("inventory.yaml");
    std::fs::write(
        &path,
        format!("version: 1\nhosts: []\n{}", lab.inventory_fragment()),
    )
    .unwrap();
    path
}

fn uid(idx: usize) -> String {
    format!("svc-{idx:04}")
}

/// A vault that knows rotor's bind secret.
fn rotor_for(lab: &LdapLab, bind_secret: &str) -> Rotor {
    let rotor = Rotor::init();
    let out = rotor.run_stdin(&["enroll", "hospital-ldap/rotor"], bind_secret);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = lab;
    rotor
}

/// Runs `f(idx)` for 1..=n on a few threads (each call spawns client processes).
fn each_account<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let n_threads = 8;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n_threads)
            .map(|t| {
                let f = &f;
                s.spawn(move || {
                    (1..=n)
                        .filter(|i| i % n_threads == t)
                        .map(|i| (i, f(i)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<(usize, T)> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, v)| v).collect()
    })
}

#[test]
fn two_thousand_directory_accounts_each_get_their_own_proven_password() {
    let n = 2000;
    let lab = LdapLab::start(n, false);
    let inv = inventory(&lab);
    let rotor = rotor_for(&lab, &lab.bind_password());
    let shared = lab.shared_password();

    let plan = rotor.run(&["plan", "-i", inv.to_str().unwrap(), "--all"]);
    let plan_text = String::from_utf8_lossy(&plan.stdout);
    for expected in [
        "2000 credentials would rotate (requested now): 2000 in 1 directory.",
        "hospital-ldap: 2000 accounts from 1 search (2000 never rotated by rotor)",
    ] {
        assert!(plan_text.contains(expected), "{plan_text}");
    }

    let started = Instant::now();
    let out = rotor.rotate_all(inv.to_str().unwrap());
    eprintln!("rotate: {:?}", started.elapsed());
    let report = json(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["counts"]["committed"], n);

    // Every account binds with exactly what `rotor show` prints; the shared password fails.
    let secrets = each_account(n, |i| {
        let secret = rotor
            .show(&format!("hospital-ldap/{}", uid(i)))
            .expect("in the vault");
        assert!(
            lab.bind_works(&uid(i), &secret),
            "{}: new password must bind",
            uid(i)
        );
        assert!(
            !lab.bind_works(&uid(i), &shared),
            "{}: shared password must fail",
            uid(i)
        );
        secret
    });
    eprintln!("checks: {:?}", started.elapsed());
    let distinct: HashSet<&String> = secrets.iter().collect();
    assert_eq!(distinct.len(), n, "all secrets differ");

    let bind = lab.bind_password();
    let leaks = Leaks::new(
        secrets
            .iter()
            .map(|s| ("a new password", s.as_str()))
            .chain([
                ("the shared password", shared.as_str()),
                ("rotor's bind password", bind.as_str()),
            ]),
    );
    leaks.assert_absent("the vault file", &rotor.vault_bytes());
    leaks.assert_absent("the logs", &out.stderr);
    leaks.assert_absent("the report", &out.stdout);
}

#[test]
fn a_wrong_bind_secret_or_an_untrusted_certificate_changes_nothing() {
    let lab = LdapLab::start(20, false);
    let inv = inventory(&lab);
    let inv = inv.to_str().unwrap();
    let rotor = rotor_for(&lab, "not-the-bind-password");
    // `plan` says which directory could not be planned and why, and does not exit 0 (issue 8).
    let plan = rotor.run(&["plan", "-i", inv, "--all"]);
    let plan_text = String::from_utf8_lossy(&plan.stdout);
    assert_eq!(plan.status.code(), Some(3), "{plan_text}");
    assert!(
        plan_text.contains("hospital-ldap: cannot be planned (connect identity rejected)"),
        "{plan_text}"
    );
    let out = rotor.rotate_all(inv);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(3), "{report:#}");
    assert_eq!(
        report["failed_directories"][0]["class"], "connect_auth_rejected",
        "{report:#}"
    );
    assert_eq!(report["counts"]["total"], 0);

    let rotor = rotor_for(&lab, &lab.bind_password());
    lab.use_cert(ServerCert::OtherName);
    let out = rotor.rotate_all(inv);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(3), "{report:#}");
    assert_eq!(
        report["failed_directories"][0]["class"], "tls_invalid",
        "{report:#}"
    );
    lab.use_cert(ServerCert::Good);
    for i in 1..=20 {
        assert!(
            lab.bind_works(&uid(i), &lab.shared_password()),
            "{} untouched",
            uid(i)
        );
    }
}

/// Starts `rotor rotate` held right after the run began (searches already resolved), lets the
/// test break something, then releases it and returns its output.
fn rotate_held(rotor: &Rotor, inv: &str, break_it: impl FnOnce()) -> std::process::Output {
    let gate = tempfile::tempdir().unwrap();
    let go = gate.path().join("go");
    let child = rotor
        .cmd(&[
            "rotate",
            "-i",
            inv,
            "--all",
            "--output",
            "json",
            "--step-timeout",
            "3",
        ])
        .env("ROTOR_LAB_HOLD_AFTER_BEGIN", &go)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&gate.path().join("go.waiting"), "the run never began");
    break_it();
    std::fs::write(&go, b"").unwrap();
    child.wait_with_output().unwrap()
}

/// Polls (for at most a minute) until `path` exists.
fn wait_for(path: &std::path::Path, or_else: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{or_else}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A `rotor` run held by the lab hook `ROTOR_LAB_HOLD_AT` at the given points, so that the
/// test can change the directory there.
struct Held {
    child: std::process::Child,
    gate: tempfile::TempDir,
}

impl Held {
    fn start(rotor: &Rotor, args: &[&str], points: &str) -> Held {
        let gate = tempfile::tempdir().unwrap();
        let child = rotor
            .cmd(args)
            .env("ROTOR_LAB_HOLD_AT", points)
            .env("ROTOR_LAB_HOLD_DIR", gate.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Held { child, gate }
    }

    /// Waits until the run is held at `point`.
    fn reached(&self, point: &str, or_else: &str) {
        wait_for(&self.gate.path().join(format!("{point}.waiting")), or_else);
    }

    fn release(&self, point: &str) {
        std::fs::write(self.gate.path().join(point), b"").unwrap();
    }

    fn finish(self) -> std::process::Output {
        self.child.wait_with_output().unwrap()
    }
}

#[test]
fn an_account_deleted_between_plan_and_push_is_reported_and_the_rest_rotate() {
    let lab = LdapLab::start(10, false);
    let inv = inventory(&lab);
    let rotor = rotor_for(&lab, &lab.bind_password());
    let out = rotate_held(&rotor, inv.to_str().unwrap(), || lab.delete("svc-0003"));
    let report = json(&out);
    assert_eq!(out.status.code(), Some(3), "{report:#}");
    let gone = result_of(&report, "hospital-ldap/svc-0003");
    assert_eq!(gone["result"], "not_changed", "{gone:#}");
    assert_eq!(gone["cause"]["class"], "account_missing", "{gone:#}");
    assert_eq!(report["counts"]["committed"], 9);
}

#[test]
fn slapd_stopped_during_a_run_loses_no_credential() {
    let lab = LdapLab::start(30, false);
    let inv = inventory(&lab);
    let inv = inv.to_str().unwrap();
    let rotor = rotor_for(&lab, &lab.bind_password());
    let out = rotate_held(&rotor, inv, || lab.stop());
    let report = json(&out);
    assert_ne!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["counts"]["committed"], 0, "{report:#}");
    lab.start_again();
    let out = rotor.run(&["recover", "-i", inv]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every account works with the vault's current secret, or (never rotated) the shared one.
    for i in 1..=30 {
        let works = match rotor.show(&format!("hospital-ldap/{}", uid(i))) {
            Some(secret) => lab.bind_works(&uid(i), &secret),
            None => lab.bind_works(&uid(i), &lab.shared_password()),
        };
        assert!(works, "{} lost its credential", uid(i));
    }
    // And a new run rotates them all.
    let out = rotor.rotate_all(inv);
    assert_eq!(json(&out)["counts"]["committed"], 30);
}

/// rotor's own bind account, when named, is rotated after every other account; the vault
/// holds the new bind secret only once a bind with it worked, and the next run binds with it.
#[test]
fn rotors_own_bind_account_is_rotated_last_and_used_from_then_on() {
    let lab = LdapLab::start(5, false);
    let inv = inventory(&lab);
    let inv = inv.to_str().unwrap();
    let old = lab.bind_password();
    let rotor = rotor_for(&lab, &old);
    let out = rotor.run(&[
        "rotate",
        "-i",
        inv,
        "--scope",
        "directory:hospital-ldap",
        "--scope",
        "cred:hospital-ldap/rotor",
        "--output",
        "json",
    ]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["counts"]["committed"], 6, "{report:#}");
    // Last: its rotation is the newest in the ledger.
    let db = rusqlite::Connection::open(rotor.vault_dir().join("rotor.db")).unwrap();
    let last: String = db
        .query_row(
            "SELECT c.cred FROM rotations r JOIN credentials c ON c.id = r.credential_id
             ORDER BY r.id DESC LIMIT 1",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(last, "hospital-ldap/rotor");
    let new = rotor.show("hospital-ldap/rotor").unwrap();
    assert_ne!(new, old);
    assert!(lab.bind_works("rotor", &new));
    assert!(!lab.bind_works("rotor", &old));
    // Without naming it, a whole-directory run leaves it alone, and binds with the new secret.
    let out = rotor.rotate_all(inv);
    let report = json(&out);
    assert_eq!(report["counts"]["committed"], 5, "{report:#}");
    assert_eq!(rotor.show("hospital-ldap/rotor").unwrap(), new);
    // The heartbeat binds as every account with the vault's current secret.
    let out = rotor.run(&["verify", "-i", inv, "--all"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("5 of 5 credentials work"), "{text}");
}

/// rotor's own bind account among the listed accounts (its DN written another way) is left
/// alone by a run that does not name it: the run binds as it throughout. And an account both
/// listed and found by the search is one credential, rotated once.
#[test]
fn rotors_own_bind_account_among_the_accounts_is_rotated_only_when_named() {
    let lab = LdapLab::start(3, false);
    let inv = lab.dir().join("inventory.yaml");
    let fragment = lab.inventory_fragment().replace(
        "    accounts:\n",
        "    accounts:\n      - { dn: \"CN=rotor, ou=system,dc=hospital,dc=example\" }\n      - { dn: \"UID=svc-0002, ou=service,dc=hospital,dc=example\" }\n",
    );
    assert!(fragment.contains("CN=rotor"), "{fragment}");
    std::fs::write(&inv, format!("version: 1\nhosts: []\n{fragment}")).unwrap();
    let inv = inv.to_str().unwrap();
    let old = lab.bind_password();
    let rotor = rotor_for(&lab, &old);
    let out = rotor.rotate_all(inv);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["counts"]["committed"], 3, "{report:#}");
    assert!(lab.bind_works("rotor", &old));
    assert_eq!(rotor.show("hospital-ldap/rotor").unwrap(), old);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("rotated only when named"), "{log}");
}

/// An administrator locks svc-0002, then `rotor rotate --all` runs (JSON report).
fn rotate_with_svc_0002_locked(lab: &LdapLab) -> (Rotor, std::process::Output) {
    let inv = inventory(lab);
    let rotor = rotor_for(lab, &lab.bind_password());
    lab.lock("svc-0002");
    let out = rotor.rotate_all(inv.to_str().unwrap());
    (rotor, out)
}

/// An account an administrator locked (ppolicy `pwdAccountLockedTime`) is left alone: a new
/// password would unlock it (OpenLDAP clears the lock on an administrator's password change).
/// It stays locked with its old password; the others rotate.
#[test]
fn a_locked_directory_account_is_not_unlocked_by_a_rotation() {
    let lab = LdapLab::start(3, true);
    let shared = lab.shared_password();
    let (rotor, out) = rotate_with_svc_0002_locked(&lab);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(3), "{report:#}");
    let r = result_of(&report, "hospital-ldap/svc-0002");
    assert_eq!(r["result"], "not_changed", "{r:#}");
    assert_eq!(r["cause"]["class"], "account_locked", "{r:#}");
    let why = r["cause"]["message"].as_str().unwrap();
    assert!(why.contains("pwdAccountLockedTime"), "{why}");
    assert_eq!(report["counts"]["committed"], 2, "{report:#}");
    // Still locked (not even the old password binds), and the old password is back in use
    // once an administrator unlocks it.
    assert!(!lab.bind_works("svc-0002", &shared));
    lab.unlock("svc-0002");
    assert!(lab.bind_works("svc-0002", &shared));
    assert_eq!(rotor.show("hospital-ldap/svc-0002"), None);
}

/// Where the directory's ACLs hide `pwdAccountLockedTime` from rotor, it cannot tell a locked
/// account (which a new password would unlock): it rotates nothing there, says what to grant,
/// and changes nothing; `plan` says so too.
#[test]
fn a_directory_that_hides_account_locks_from_rotor_is_not_rotated() {
    let lab = LdapLab::start_hiding_locks(3);
    let shared = lab.shared_password();
    let (rotor, out) = rotate_with_svc_0002_locked(&lab);
    let report = json(&out);
    assert_ne!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["counts"]["total"], 0, "{report:#}");
    let failed = &report["failed_directories"][0];
    assert_eq!(failed["directory"], "hospital-ldap", "{report:#}");
    let why = failed["message"].as_str().unwrap();
    assert!(why.contains("may not read pwdAccountLockedTime"), "{why}");
    // Nothing was changed: the locked account is still locked, the others keep the old one.
    assert!(!lab.bind_works("svc-0002", &shared));
    assert!(lab.bind_works("svc-0001", &shared));
    let inv = lab.dir().join("inventory.yaml");
    let plan = rotor.run(&["plan", "-i", inv.to_str().unwrap(), "--all"]);
    let plan_text = String::from_utf8_lossy(&plan.stdout);
    assert!(plan_text.contains("cannot be planned"), "{plan_text}");
}

/// Where the ACLs let rotor read `pwdAccountLockedTime` under one search base (ou=service)
/// but not under another (ou=vendor, searched second), the accounts of the second base are
/// not rotated (a new password would unlock a locked one, which rotor cannot see), with a
/// message that names the base and what to grant; the first base's accounts rotate. The
/// locked vendor account stays locked, the other keeps its password; `plan` says so too.
#[test]
fn accounts_under_a_search_base_that_hides_locks_are_not_rotated_the_others_are() {
    let lab = LdapLab::start_hiding_vendor_locks(2, 2);
    let shared = lab.shared_password();
    let inv = inventory(&lab);
    let inv = inv.to_str().unwrap();
    let rotor = rotor_for(&lab, &lab.bind_password());
    lab.lock("vnd-0001");
    let out = rotor.rotate_all(inv);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(3), "{report:#}");
    assert_eq!(report["counts"]["committed"], 2, "{report:#}");
    // The directory as a whole was opened and rotated (absent: no directory failed).
    assert!(report.get("failed_directories").is_none(), "{report:#}");
    for uid in ["svc-0001", "svc-0002"] {
        let secret = rotor
            .show(&format!("hospital-ldap/{uid}"))
            .expect("rotated");
        assert!(lab.bind_works(uid, &secret), "{uid}");
    }
    for uid in ["vnd-0001", "vnd-0002"] {
        let r = result_of(&report, &format!("hospital-ldap/{uid}"));
        assert_eq!(r["result"], "not_changed", "{r:#}");
        assert_eq!(r["cause"]["class"], "refused", "{r:#}");
        let why = r["cause"]["message"].as_str().unwrap();
        for expected in [
            "may not read pwdAccountLockedTime",
            "under ou=vendor,dc=hospital,dc=example",
            "grant",
        ] {
            assert!(why.contains(expected), "{expected:?} not in {why}");
        }
        assert!(!why.contains("ou=service"), "{why}");
        assert_eq!(rotor.show(&format!("hospital-ldap/{uid}")), None);
    }
    // Not unlocked by a new password: still locked (not even the old one binds), and the old
    // one is back in use once an administrator unlocks it.
    assert!(!lab.bind_works("vnd-0001", &shared));
    assert!(lab.bind_works("vnd-0002", &shared));
    lab.unlock("vnd-0001");
    assert!(lab.bind_works("vnd-0001", &shared));
    // The heartbeat still covers every account of the directory (it reads no lock): the
    // vendor accounts are there, with no secret in the vault yet.
    let out = rotor.run(&["verify", "-i", inv, "--all"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2 of 4 credentials work"), "{text}");
    assert!(text.contains("hospital-ldap/vnd-0002  no_secret"), "{text}");
    let plan = rotor.run(&["plan", "-i", inv, "--all"]);
    let plan_text = String::from_utf8_lossy(&plan.stdout);
    assert_eq!(plan.status.code(), Some(3), "{plan_text}");
    for expected in [
        "hospital-ldap: 2 accounts from 2 searches",
        "2 accounts will not be rotated",
        "under ou=vendor,dc=hospital,dc=example",
    ] {
        assert!(
            plan_text.contains(expected),
            "{expected:?} not in {plan_text}"
        );
    }
}

/// One subtree search over both OUs: its first entry (a service account) shows locks, the
/// vendor accounts it also finds do not. The lock is checked on each entry, so the locked
/// vendor account is not unlocked by a new password, nor is the other vendor account rotated.
#[test]
fn one_search_over_entries_with_different_acls_rotates_only_those_whose_lock_rotor_sees() {
    let lab = LdapLab::start_hiding_vendor_locks(2, 2);
    let shared = lab.shared_password();
    let fragment = lab.inventory_fragment();
    let head = &fragment[..fragment.find("    accounts:").expect("an accounts list")];
    let path = lab.dir().join("inventory-subtree.yaml");
    std::fs::write(
        &path,
        format!(
            "version: 1\nhosts: []\n{head}    accounts:\n      - {{ search: {{ base: \"dc=hospital,dc=example\", filter: \"(|(uid=svc-*)(uid=vnd-*))\", scope: sub }} }}\n"
        ),
    )
    .unwrap();
    let inv = path.to_str().unwrap();
    let rotor = rotor_for(&lab, &lab.bind_password());
    lab.lock("vnd-0001");
    let out = rotor.rotate_all(inv);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(3), "{report:#}");
    assert_eq!(report["counts"]["committed"], 2, "{report:#}");
    for uid in ["vnd-0001", "vnd-0002"] {
        let r = result_of(&report, &format!("hospital-ldap/{uid}"));
        assert_eq!(r["result"], "not_changed", "{r:#}");
        let why = r["cause"]["message"].as_str().unwrap();
        let expected = format!("may not read pwdAccountLockedTime on uid={uid},");
        assert!(why.contains(&expected), "{why}");
    }
    assert!(!lab.bind_works("vnd-0001", &shared), "still locked");
    lab.unlock("vnd-0001");
    assert!(lab.bind_works("vnd-0001", &shared));
    assert!(lab.bind_works("vnd-0002", &shared));
}

/// slapd restarts in the middle of a run (while one account waits between its push and its
/// verification): the run's admin connection is re-established and every account still gets
/// its own proven password.
#[test]
fn a_run_reconnects_when_slapd_restarts_under_it() {
    let lab = LdapLab::start(10, false);
    let inv = inventory(&lab);
    let inv = inv.to_str().unwrap();
    let rotor = rotor_for(&lab, &lab.bind_password());
    // One account at a time, so that no other account is in flight while slapd is down.
    let held = Held::start(
        &rotor,
        &[
            "rotate",
            "-i",
            inv,
            "--all",
            "--concurrency",
            "1",
            "--output",
            "json",
        ],
        "applied",
    );
    held.reached("applied", "the push never happened");
    lab.stop();
    lab.start_again();
    held.release("applied");
    let out = held.finish();
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["counts"]["committed"], 10, "{report:#}");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("reconnecting"), "{log}");
    for i in 1..=10 {
        let secret = rotor.show(&format!("hospital-ldap/{}", uid(i))).unwrap();
        assert!(lab.bind_works(&uid(i), &secret), "{}", uid(i));
    }
}

/// rotor killed after the directory took its own bind account's new secret and before the
/// vault committed it: the vault's current bind secret no longer works. `rotor recover` binds
/// with the pending one of the open rotation, proves it, commits it, and every later run binds
/// with it.
#[test]
fn a_run_killed_while_rotating_rotors_own_bind_account_is_recovered() {
    let lab = LdapLab::start(3, false);
    let inv = inventory(&lab);
    let inv = inv.to_str().unwrap();
    let old = lab.bind_password();
    let rotor = rotor_for(&lab, &old);
    rotor.kill_at(
        &["rotate", "-i", inv, "--scope", "cred:hospital-ldap/rotor"],
        "applied",
    );
    // The directory holds a secret the vault has only as pending.
    assert!(!lab.bind_works("rotor", &old));
    assert_eq!(rotor.show("hospital-ldap/rotor").unwrap(), old);

    let out = rotor.run(&["recover", "-i", inv, "--output", "json"]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    let r = result_of(&report, "hospital-ldap/rotor");
    assert_eq!(r["result"], "committed", "{r:#}");
    let new = rotor.show("hospital-ldap/rotor").unwrap();
    assert_ne!(new, old);
    assert!(lab.bind_works("rotor", &new));
    // The next run binds with it and rotates the accounts.
    let out = rotor.rotate_all(inv);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["counts"]["committed"], 3, "{report:#}");
}

/// Under an OpenLDAP password policy (ppolicy overlay, `pwdInHistory: 5`), every account still
/// rotates (each new password is fresh), twice in a row, and binds with what the vault holds.
#[test]
fn accounts_under_a_password_history_policy_rotate() {
    let lab = LdapLab::start(20, true);
    let inv = inventory(&lab);
    let inv = inv.to_str().unwrap();
    let rotor = rotor_for(&lab, &lab.bind_password());
    for _ in 0..2 {
        let out = rotor.rotate_all(inv);
        let report = json(&out);
        assert_eq!(out.status.code(), Some(0), "{report:#}");
        assert_eq!(report["counts"]["committed"], 20, "{report:#}");
    }
    for i in 1..=20 {
        let secret = rotor.show(&format!("hospital-ldap/{}", uid(i))).unwrap();
        assert!(lab.bind_works(&uid(i), &secret), "{}", uid(i));
    }
}

/// The policy case: verification fails after the push (an administrator locks the
/// account at that moment, so every bind as it fails), and the directory's password policy
/// (`pwdInHistory: 5`, `pwdCheckQuality: 2`: a value whose quality it cannot check, such as
/// the hash rotor saved, is refused) will not take the old password back. rotor keeps the new
/// password, proves it again (the lock is lifted by then), commits it and says why it did not
/// roll back. Nothing is lost: the account binds with what `rotor show` prints.
#[test]
fn a_rollback_refused_by_the_password_policy_keeps_the_proven_new_password() {
    let lab = LdapLab::start_with(3, Some(2));
    let inv = inventory(&lab);
    let inv = inv.to_str().unwrap();
    let rotor = rotor_for(&lab, &lab.bind_password());
    let shared = lab.shared_password();
    let held = Held::start(
        &rotor,
        &[
            "rotate",
            "-i",
            inv,
            "--scope",
            "cred:hospital-ldap/svc-0002",
            "--output",
            "json",
        ],
        "applied,restore_refused",
    );
    held.reached("applied", "the push never happened");
    lab.lock("svc-0002");
    held.release("applied");
    held.reached(
        "restore_refused",
        "the directory did not refuse the rollback",
    );
    lab.unlock("svc-0002");
    held.release("restore_refused");
    let out = held.finish();
    let report = json(&out);
    // Partial (3): the run did not go as planned, although nothing is left to settle.
    assert_eq!(out.status.code(), Some(3), "{report:#}");
    let r = result_of(&report, "hospital-ldap/svc-0002");
    assert_eq!(r["result"], "kept_new", "{r:#}");
    assert_eq!(r["cause"]["class"], "verify_failed", "{r:#}");
    assert_eq!(
        r["rollback_refused"]["class"], "rollback_refused_by_policy",
        "{r:#}"
    );
    let why = r["rollback_refused"]["message"].as_str().unwrap();
    assert!(why.contains("quality"), "{why}");
    // The vault's current secret is the one the directory holds; the shared one is gone.
    let new = rotor.show("hospital-ldap/svc-0002").unwrap();
    assert!(lab.bind_works("svc-0002", &new));
    assert!(!lab.bind_works("svc-0002", &shared));
    // Nothing is left open, and the others were not touched.
    let status = rotor.run(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        !text.contains("staged") && !text.contains("rolling"),
        "{text}"
    );
    for other in ["svc-0001", "svc-0003"] {
        assert!(lab.bind_works(other, &shared), "{other}");
    }
}

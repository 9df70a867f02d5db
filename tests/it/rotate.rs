//! Issue 2's end-to-end cases against real sshd hosts: rotate a fleet, a wrong pinned key, a
//! host that refuses the change, and crashes at named phases. Every check of a password is made
//! with the system `ssh` client (through `scripts/lab login`), not rotor's own code.

use std::collections::HashSet;

use crate::lab::{Fault, Lab};
use crate::support::{LeakCheck, Leaks, Rotor, creds, json, result_of};

#[test]
fn rotate_all_gives_every_account_its_own_working_password() {
    let lab = Lab::start(20);
    let rotor = Rotor::init();
    let inv = lab.inventory_path();
    let out = rotor.run(&[
        "rotate",
        "-i",
        inv.to_str().unwrap(),
        "--all",
        "--reason",
        "it",
        "--output",
        "json",
    ]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["counts"]["committed"], 40, "{report:#}");

    let mut secrets = HashSet::new();
    let shared = lab.shared_password();
    for (host, account) in creds(&lab) {
        let secret = rotor
            .show(&format!("{host}/{account}"))
            .expect("vault has the secret");
        assert!(
            lab.login_works(&host, &account, &secret),
            "{host}/{account}: new password must work"
        );
        assert!(
            !lab.login_works(&host, &account, shared),
            "{host}/{account}: shared password must fail"
        );
        assert!(
            secrets.insert(secret),
            "{host}/{account}: secrets must all differ"
        );
    }
    assert_eq!(secrets.len(), 40);

    // No secret, nor 8 characters of one, nor its shell-quoted form, in the vault file, the
    // logs (debug level), or the report.
    let leaks = Leaks::new(
        secrets
            .iter()
            .map(|s| ("a new password", s.as_str()))
            .chain([("the shared password", shared)]),
    );
    leaks.assert_absent("the vault file", &rotor.vault_bytes());
    leaks.assert_absent("the logs", &out.stderr);
    leaks.assert_absent("the report", &out.stdout);

    // The heartbeat agrees: every stored secret works.
    let out = rotor.run(&["verify", "-i", inv.to_str().unwrap(), "--all"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("40 of 40 credentials work"), "{text}");
    leaks.assert_absent("the logs of verify", &out.stderr);
    leaks.assert_absent("the report of verify", &out.stdout);
}

#[test]
fn a_host_with_the_wrong_pinned_key_is_refused_and_the_others_complete() {
    let lab = Lab::start(4);
    let rotor = Rotor::init();
    // Pin host-002 to host-003's key: what a man in the middle or a reinstalled host looks like.
    let inv = lab.inventory_path();
    let text = std::fs::read_to_string(&inv).unwrap();
    let keys: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("host_key:"))
        .collect();
    let edited = text.replacen(keys[1], keys[2], 1);
    std::fs::write(&inv, edited).unwrap();

    let out = rotor.run(&[
        "rotate",
        "-i",
        inv.to_str().unwrap(),
        "--all",
        "--output",
        "json",
    ]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(3), "{report:#}");
    assert_eq!(report["counts"]["committed"], 6);
    for account in ["svc_app", "svc_backup"] {
        let r = result_of(&report, &format!("host-002/{account}"));
        assert_eq!(r["result"], "not_changed");
        assert_eq!(r["cause"]["class"], "host_key_mismatch");
        let msg = r["cause"]["message"].as_str().unwrap();
        assert_eq!(
            msg.matches("SHA256:").count(),
            2,
            "both fingerprints: {msg}"
        );
        assert!(lab.login_works("host-002", account, lab.shared_password()));
    }
}

#[test]
fn a_host_that_refuses_the_change_is_rolled_back_and_reported() {
    let lab = Lab::start(3);
    let rotor = Rotor::init();
    lab.fault("host-002", Fault::ChpasswdFails);
    let leaks = LeakCheck::before(&lab, &["host-002"]);
    let inv = lab.inventory_path();
    let out = rotor.run(&[
        "rotate",
        "-i",
        inv.to_str().unwrap(),
        "--all",
        "--output",
        "json",
    ]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(3), "{report:#}");
    for account in ["svc_app", "svc_backup"] {
        let r = result_of(&report, &format!("host-002/{account}"));
        assert_eq!(r["result"], "rolled_back", "{r:#}");
        assert_eq!(r["cause"]["class"], "refused");
        assert!(
            lab.login_works("host-002", account, lab.shared_password()),
            "old password must still work"
        );
        let ok = result_of(&report, &format!("host-001/{account}"));
        assert_eq!(ok["result"], "committed");
    }
    // The text report names the host and says what happened.
    let text_run = rotor.run(&[
        "rotate",
        "-i",
        inv.to_str().unwrap(),
        "--scope",
        "host:host-002",
    ]);
    let text = String::from_utf8_lossy(&text_run.stdout);
    assert!(
        text.contains("host-002/svc_app") && text.contains("rolled back"),
        "{text}"
    );
    leaks.assert_clean(&lab, &rotor, &[&out, &text_run]);
}

/// SIGKILL at a named phase (the lab-only pause hook holds the process there), then recover:
/// every account ends with a password the vault holds as current.
fn crash_at(phase: &str) {
    let lab = Lab::start(3);
    let rotor = Rotor::init();
    let inv = lab.inventory_path();
    // The vault knows the starting (shared) passwords, so "the vault's current" is defined for
    // accounts whose rotation is dropped.
    for (host, account) in creds(&lab) {
        let out = rotor.run_stdin(
            &["enroll", &format!("{host}/{account}")],
            lab.shared_password(),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    rotor.kill_at(
        &[
            "rotate",
            "-i",
            inv.to_str().unwrap(),
            "--all",
            "--concurrency",
            "1",
        ],
        phase,
    );

    let status = rotor.run(&["status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("OPEN"),
        "a rotation must be open after the crash: {status}"
    );

    let out = rotor.run(&["recover", "-i", inv.to_str().unwrap(), "--output", "json"]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    let expected = if phase == "staged" {
        "rolled_back"
    } else {
        "committed"
    };
    assert_eq!(report["results"][0]["result"], expected, "{report:#}");

    for (host, account) in creds(&lab) {
        let current = rotor
            .show(&format!("{host}/{account}"))
            .expect("vault holds a current secret");
        assert!(
            lab.login_works(&host, &account, &current),
            "{host}/{account} after crash at {phase}"
        );
    }
    let status = rotor.run(&["status"]);
    assert!(!String::from_utf8_lossy(&status.stdout).contains("OPEN"));
}

#[test]
fn sigkill_after_staging_then_recover() {
    crash_at("staged");
}

#[test]
fn sigkill_after_applying_then_recover() {
    crash_at("applied");
}

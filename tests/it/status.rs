//! `rotor status -i FILE --check`: ages against each policy's `max_age`, credentials the
//! inventory lists that the vault lacks, and an exit code for monitoring.

use crate::lab::Lab;
use crate::support::{Rotor, json};

#[test]
fn status_check_marks_stale_and_missing_credentials_for_monitoring() {
    let lab = Lab::start(1);
    let rotor = Rotor::init();
    let text = std::fs::read_to_string(lab.inventory_path()).unwrap();
    let inv = lab.dir().join("max-age.yaml");
    let edited = text.replace(
        "  default: { length: 24, classes: [lower, upper, digit, symbol] }",
        "  default: { length: 24, classes: [lower, upper, digit, symbol], max_age: 1d }",
    );
    assert_ne!(
        edited, text,
        "the lab inventory's default policy line changed"
    );
    std::fs::write(&inv, edited).unwrap();
    let inv = inv.to_str().unwrap();
    let status = |ahead_secs: u64| {
        rotor
            .cmd(&["status", "-i", inv, "--check", "--output", "json"])
            .env("ROTOR_LAB_CLOCK_OFFSET_SECS", ahead_secs.to_string())
            .output()
            .unwrap()
    };

    // Nothing rotated yet: both accounts are listed but missing from the vault.
    let before = status(0);
    assert_eq!(before.status.code(), Some(3), "{before:?}");
    let doc = json(&before);
    assert_eq!(doc["missing"].as_array().unwrap().len(), 2, "{doc:#}");

    let out = rotor
        .cmd(&["rotate", "-i", inv, "--scope", "cred:host-001/svc_app"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let after = status(0);
    assert_eq!(
        after.status.code(),
        Some(3),
        "svc_backup is still missing: {after:?}"
    );
    let doc = json(&after);
    assert_eq!(doc["missing"], serde_json::json!(["host-001/svc_backup"]));
    assert_eq!(doc["credentials"][0]["stale"], false, "{doc:#}");
    assert_eq!(doc["credentials"][0]["max_age_secs"], 86_400);

    let out = rotor.rotate_all(inv);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(status(0).status.code(), Some(0));
    // Two days later (the lab clock ahead), both are stale; the table says what to do.
    let late = status(2 * 86_400);
    assert_eq!(late.status.code(), Some(3), "{late:?}");
    assert_eq!(json(&late)["credentials"][1]["stale"], true);
    let table = rotor
        .cmd(&["status", "-i", inv])
        .env("ROTOR_LAB_CLOCK_OFFSET_SECS", (2 * 86_400).to_string())
        .output()
        .unwrap();
    assert_eq!(table.status.code(), Some(0), "without --check: {table:?}");
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("STALE (max_age 1d)"), "{text}");
    assert!(
        text.contains("rotor rotate --scope cred:host-001/svc_app"),
        "{text}"
    );
}

/// Runs `rotor ARGS -o json` with the lab clock `ahead_secs` ahead: its exit code and JSON.
fn status_json(rotor: &Rotor, args: &[&str], ahead_secs: u64) -> (Option<i32>, serde_json::Value) {
    let mut all = vec!["status", "-o", "json"];
    all.extend(args);
    let out = rotor
        .cmd(&all)
        .env("ROTOR_LAB_CLOCK_OFFSET_SECS", ahead_secs.to_string())
        .output()
        .unwrap();
    (out.status.code(), json(&out))
}

fn field<'a>(doc: &'a serde_json::Value, cred: &str, name: &str) -> &'a serde_json::Value {
    let c = doc["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cred"] == cred)
        .unwrap_or_else(|| panic!("{cred} not in {doc:#}"));
    &c[name]
}

/// `--check`: 0 clean, 3 a listed credential whose secret rotor never rotated, 4 a rotation
/// left open; the last-verified column (the rotation, then a later heartbeat); `--scope`;
/// vault credentials the inventory no longer lists; the summary line.
#[test]
fn status_check_exit_codes_last_verified_and_unlisted_credentials() {
    let lab = Lab::start(2);
    let rotor = Rotor::init();
    let inv = lab.inventory_path();
    let inv = inv.to_str().unwrap();
    let out = rotor.rotate_all(inv);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let (code, doc) = status_json(&rotor, &["-i", inv, "--check"], 0);
    assert_eq!(code, Some(0), "{doc:#}");
    assert_eq!(doc["check"], 0);
    let rotated_at = field(&doc, "host-001/svc_app", "last_verified")
        .as_str()
        .expect("verified by its rotation")
        .to_owned();
    assert_eq!(
        field(&doc, "host-001/svc_app", "last_verified_by"),
        "rotation"
    );

    // A heartbeat an hour later proves the same secret again: the later time, by heartbeat.
    let out = rotor
        .cmd(&["verify", "-i", inv, "--all"])
        .env("ROTOR_LAB_CLOCK_OFFSET_SECS", "3600")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let (_, doc) = status_json(&rotor, &["-i", inv], 3600);
    assert_eq!(
        field(&doc, "host-001/svc_app", "last_verified_by"),
        "heartbeat"
    );
    let beat = field(&doc, "host-001/svc_app", "last_verified")
        .as_str()
        .unwrap();
    let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap();
    let gap = t(beat) - t(&rotated_at);
    assert!(
        (3590..3700).contains(&gap.num_seconds()),
        "{rotated_at} then {beat}"
    );
    let table = rotor.run(&["status", "-i", inv]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("LAST VERIFIED (UTC)"), "{text}");
    assert!(text.contains("(heartbeat)"), "{text}");
    assert!(
        text.trim_end()
            .ends_with("4 credential(s): none parked, open, stuck, stale or never rotated. OK."),
        "{text}"
    );

    // host-002 removed from the inventory: its credentials are listed, not judged.
    let text_inv = std::fs::read_to_string(inv).unwrap();
    let cut = text_inv
        .find("  - name: host-002")
        .expect("host-002's entry");
    let smaller = lab.dir().join("without-host-002.yaml");
    std::fs::write(&smaller, &text_inv[..cut]).unwrap();
    let smaller = smaller.to_str().unwrap();
    let (code, doc) = status_json(&rotor, &["-i", smaller, "--check"], 0);
    assert_eq!(code, Some(0), "{doc:#}");
    assert_eq!(
        doc["not_in_inventory"],
        serde_json::json!(["host-002/svc_app", "host-002/svc_backup"])
    );
    let table = rotor.run(&["status", "-i", smaller]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains(&format!(
            "2 credential(s) in the vault are not in {smaller} (a host or account removed from it?): host-002/svc_app, host-002/svc_backup"
        )),
        "{text}"
    );

    // An enrolled secret is no rotation: 3 until rotor rotates it. In scope only.
    // (Later than the heartbeat, which ran with the clock an hour ahead.)
    let mut enroll = rotor.cmd(&["enroll", "host-002/svc_backup"]);
    enroll.env("ROTOR_LAB_CLOCK_OFFSET_SECS", "7200");
    let out = crate::support::run_with_stdin(enroll, "typed-by-hand\n");
    assert!(out.status.success(), "{out:?}");
    let (code, doc) = status_json(&rotor, &["-i", inv, "--check"], 7200);
    assert_eq!(code, Some(3), "{doc:#}");
    assert_eq!(
        doc["never_rotated"],
        serde_json::json!(["host-002/svc_backup"])
    );
    assert!(field(&doc, "host-002/svc_backup", "last_verified").is_null());
    let (code, doc) = status_json(
        &rotor,
        &["-i", inv, "--scope", "host:host-001", "--check"],
        0,
    );
    assert_eq!(code, Some(0), "host-002 is out of scope: {doc:#}");
    assert_eq!(doc["credentials"].as_array().unwrap().len(), 2);
    let out = rotor.run(&["status", "--scope", "host:host-001"]);
    assert_eq!(out.status.code(), Some(2), "--scope needs -i: {out:?}");

    // A rotation killed after it changed the host: open, an operator (or recover) needed.
    let out = rotor.run(&["rotate", "-i", inv, "--scope", "cred:host-002/svc_backup"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    rotor.kill_at(
        &["rotate", "-i", inv, "--scope", "cred:host-001/svc_app"],
        "applied",
    );
    let (code, doc) = status_json(&rotor, &["-i", inv, "--check"], 0);
    assert_eq!(code, Some(4), "{doc:#}");
    assert_eq!(doc["counts"]["open"], 1, "{doc:#}");
    let table = rotor.run(&["status", "-i", inv, "--check"]);
    assert_eq!(table.status.code(), Some(4));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.trim_end().ends_with(
            "4 credential(s): 1 with a rotation left open. Operator needed (status --check exits 4)."
        ),
        "{text}"
    );
    let out = rotor.run(&["recover", "-i", inv]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let (code, doc) = status_json(&rotor, &["-i", inv, "--check"], 0);
    assert_eq!(code, Some(0), "{doc:#}");
}

/// rotor's own LDAP bind account is rotated only on a breach or by name (the scheduler never
/// does): enrolled and older than `max_age`, `status --check` does not alert on it, and
/// lists it apart.
#[test]
fn status_check_does_not_alert_on_rotors_bind_credential() {
    let rotor = Rotor::init();
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("bind.yaml");
    std::fs::write(
        &inv,
        "version: 1\npolicies:\n  default: { length: 24, classes: [lower, upper, digit, symbol], max_age: 1d }\ndirectories:\n  - name: ldap1\n    url: ldaps://127.0.0.1\n    bind: { dn: \"cn=rotor,dc=x\", credential: ldap1/rotor }\n    accounts:\n      - search: { base: \"ou=s,dc=x\", filter: \"(uid=*)\" }\n",
    )
    .unwrap();
    let inv = inv.to_str().unwrap();
    let out = rotor.run_stdin(&["enroll", "ldap1/rotor"], "an-enrolled-bind-secret");
    assert!(out.status.success(), "{out:?}");
    let (code, doc) = status_json(&rotor, &["-i", inv, "--check"], 2 * 86_400);
    assert_eq!(code, Some(0), "{doc:#}");
    assert_eq!(doc["bind_credentials"], serde_json::json!(["ldap1/rotor"]));
    assert_eq!(doc["never_rotated"], serde_json::json!([]), "{doc:#}");
    assert!(
        doc["summary"]
            .as_str()
            .unwrap()
            .contains("rotated only by `rotor rotate --breach` or `--scope cred:DIR/UID`"),
        "{doc:#}"
    );
}

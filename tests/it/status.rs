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

//! Invariant 6 end to end (issue 8): no two credentials share a secret, even when two rotor
//! processes rotate at once under a policy with a small alphabet; and a policy too weak for
//! that promise is refused before anything runs.

use std::process::Stdio;

use crate::lab::Lab;
use crate::support::{Rotor, creds, json};

/// The lab's inventory with its default policy replaced by `policy` (a YAML flow mapping).
fn with_policy(lab: &Lab, policy: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(lab.inventory_path()).unwrap();
    let default = text
        .lines()
        .find(|l| l.trim_start().starts_with("default:"))
        .expect("the lab inventory has a default policy")
        .to_owned();
    let path = lab.dir().join("inventory-policy.yaml");
    std::fs::write(
        &path,
        text.replace(&default, &format!("  default: {policy}")),
    )
    .unwrap();
    path
}

#[test]
fn concurrent_runs_under_a_small_alphabet_never_share_a_secret() {
    let lab = Lab::start(10);
    let rotor = Rotor::init();
    // Ten digits, 20 long: about 66 bits, just above the floor.
    let inv = with_policy(&lab, "{ length: 20, classes: [digit] }");
    let inv = inv.to_str().unwrap();
    let spawn = |group: &str| {
        rotor
            .cmd(&[
                "rotate",
                "-i",
                inv,
                "--scope",
                group,
                "--concurrency",
                "5",
                "--output",
                "json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (odd, even) = (spawn("group:odd"), spawn("group:even"));
    for out in [
        odd.wait_with_output().unwrap(),
        even.wait_with_output().unwrap(),
    ] {
        let report = json(&out);
        assert_eq!(out.status.code(), Some(0), "{report:#}");
        assert_eq!(report["counts"]["committed"], 10, "{report:#}");
    }
    let mut seen = std::collections::HashSet::new();
    for (host, account) in creds(&lab) {
        let secret = rotor.show(&format!("{host}/{account}")).unwrap();
        assert!(
            secret.len() == 20 && secret.chars().all(|c| c.is_ascii_digit()),
            "{host}/{account}: not from the policy"
        );
        assert!(
            seen.insert(secret.clone()),
            "{host}/{account} shares its secret"
        );
        assert!(
            lab.login_works(&host, &account, &secret),
            "{host}/{account}"
        );
    }
    assert_eq!(seen.len(), 20);
}

#[test]
fn a_policy_below_64_bits_is_refused_before_anything_runs() {
    let lab = Lab::start(1);
    let rotor = Rotor::init();
    // The reproduction of the issue: 12 digits with all but one excluded ("~0 bits").
    let inv = with_policy(
        &lab,
        r#"{ length: 12, classes: [digit], exclude: "012345678" }"#,
    );
    let inv = inv.to_str().unwrap();
    for args in [
        vec!["inventory", "check", "-i", inv],
        vec!["plan", "-i", inv, "--all"],
        vec!["rotate", "-i", inv, "--all"],
    ] {
        let out = rotor.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        for needle in [
            "inventory-policy.yaml:3:",
            "too weak",
            "about 0 bits",
            "64 bits",
        ] {
            assert!(
                stderr.contains(needle),
                "{args:?}: {needle} missing in {stderr}"
            );
        }
    }
    assert!(
        lab.login_works("host-001", "svc_app", lab.shared_password()),
        "nothing was rotated"
    );
}

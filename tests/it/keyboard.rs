//! Habits at the keyboard and in scripts: `rotor rotate` at a terminal asks before it rotates
//! more than one host (and asks for a reason), never in a script; `ROTOR_INVENTORY` stands
//! in for `-i`; under `-o json` every error is one JSON object on stdout with a stable code.

use std::process::{Command, Output};

use crate::lab::Lab;
use crate::support::{Rotor, json};

/// Runs `rotor ARGS` on a pseudo-terminal (`script` from util-linux), typing `input`, as a
/// person at the keyboard would.
fn at_terminal(rotor: &Rotor, args: &[&str], input: &str) -> Output {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let line: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_rotor"))
        .chain(args.iter().copied())
        .map(quote)
        .collect();
    let mut c = Command::new("script");
    c.args(["-qec", &line.join(" "), "/dev/null"])
        .env("ROTOR_DATA_DIR", rotor.vault_dir())
        .env_remove("ROTOR_LOG");
    crate::support::run_with_stdin(c, input)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_person_at_a_terminal_confirms_and_gives_a_reason_and_a_script_is_never_asked() {
    let lab = Lab::start(2);
    let rotor = Rotor::init();
    let inv = lab.inventory_path();
    let inv = inv.to_str().unwrap();
    let hosts = lab.host_names().to_vec();

    // No: nothing changes, and the answer says so.
    let declined = at_terminal(&rotor, &["rotate", "-i", inv, "--all"], "INC-7\nno\n");
    let said = text(&declined);
    assert_eq!(declined.status.code(), Some(1), "{said}");
    assert!(said.contains("Reason for this rotation"), "{said}");
    assert!(
        said.contains("rotor will rotate 4 credentials on 2 hosts (scope `all`, reason: INC-7)"),
        "{said}"
    );
    assert!(
        said.contains("not confirmed: nothing was changed"),
        "{said}"
    );
    for host in &hosts {
        assert!(lab.login_works(host, "svc_app", lab.shared_password()));
    }

    // One host in scope: not asked (but still asked for a reason).
    let one = format!("host:{}", hosts[0]);
    let single = at_terminal(&rotor, &["rotate", "-i", inv, "--scope", &one], "INC-8\n");
    let said = text(&single);
    assert_eq!(single.status.code(), Some(0), "{said}");
    assert!(!said.contains("Rotate now?"), "{said}");
    assert!(said.contains("reason: INC-8"), "{said}");

    // Yes: rotated.
    let confirmed = at_terminal(&rotor, &["rotate", "-i", inv, "--all"], "INC-9\nyes\n");
    let said = text(&confirmed);
    assert_eq!(confirmed.status.code(), Some(0), "{said}");
    assert!(said.contains("reason: INC-9"), "{said}");
    for host in &hosts {
        assert!(!lab.login_works(host, "svc_app", lab.shared_password()));
    }

    // --yes and --reason: no question at all.
    let skipped = at_terminal(
        &rotor,
        &["rotate", "-i", inv, "--all", "--yes", "--reason", "INC-10"],
        "",
    );
    let said = text(&skipped);
    assert_eq!(skipped.status.code(), Some(0), "{said}");
    assert!(
        !said.contains("Rotate now?") && !said.contains("Reason for"),
        "{said}"
    );

    // A script (stdin not a terminal) is not asked: warned that no reason was given, and
    // ROTOR_INVENTORY stands in for -i.
    let scripted = rotor
        .cmd(&["rotate", "--all", "-o", "json"])
        .env("ROTOR_INVENTORY", inv)
        .output()
        .unwrap();
    let report = json(&scripted);
    assert_eq!(scripted.status.code(), Some(0));
    assert_eq!(report["reason"], "manual rotation");
    assert!(
        String::from_utf8_lossy(&scripted.stderr).contains("warning: no --reason given"),
        "{}",
        String::from_utf8_lossy(&scripted.stderr)
    );
}

/// Under `-o json`, whatever goes wrong, stdout holds one JSON object with a stable `code`
/// (a script branches on it) and the exit code.
#[test]
fn errors_under_json_output_are_json_with_a_stable_code() {
    let rotor = Rotor::without_vault();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yaml");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "version: 1\nhosts: [\n").unwrap();
    let cases: [(&[&str], &str, i32); 5] = [
        (&["checkouts", "-o", "json"], "vault_missing", 1),
        (
            &["plan", "-o", "json", "--all", "-i", "MISSING"],
            "inventory_invalid",
            1,
        ),
        (
            &["plan", "-o", "json", "--all", "-i", "BAD"],
            "inventory_invalid",
            1,
        ),
        (&["plan", "-o", "json", "-i", "BAD"], "usage", 2),
        (&["rotate", "--bogus", "--output=json"], "usage", 2),
    ];
    for (args, code, exit) in cases {
        let args: Vec<&str> = args
            .iter()
            .map(|a| match *a {
                "MISSING" => missing.to_str().unwrap(),
                "BAD" => bad.to_str().unwrap(),
                a => a,
            })
            .collect();
        let out = rotor.cmd(&args).output().unwrap();
        let said: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: stdout is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        assert_eq!(said["error"]["code"], code, "{args:?}: {said}");
        assert_eq!(said["error"]["exit_code"], exit, "{args:?}: {said}");
        assert_eq!(out.status.code(), Some(exit), "{args:?}");
        assert!(
            said["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{said}"
        );
    }
}

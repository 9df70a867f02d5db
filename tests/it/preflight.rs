//! `rotor inventory check --connect` on the lab: one fleet in which each host is broken in a
//! different way (and one is not), plus an LDAP directory whose certificate rotor must not
//! trust. Every problem is found, each with its fix, and nothing changes: each host's shadow
//! file and root's authorized_keys are byte for byte the same, the audit log gains nothing,
//! and `rotor status` shows no rotation. A missing known_hosts file is "file not found",
//! in the check and in `rotate` alike, never a host key mismatch.

use crate::lab::{Fault, Lab};
use crate::ldap_lab::LdapLab;
use crate::support::{Rotor, json, keygen};

/// `text` with the block of `host` (from its `  - name:` line to the next host's) changed by
/// `edit`, which must change it.
fn edit_host(text: &str, host: &str, edit: impl Fn(&str) -> String) -> String {
    let start = text
        .find(&format!("  - name: {host}\n"))
        .unwrap_or_else(|| panic!("{host} is not in the inventory"));
    let end = text[start + 1..]
        .find("  - name: ")
        .map_or(text.len(), |i| start + 1 + i);
    let block = &text[start..end];
    let changed = edit(block);
    assert_ne!(block, changed, "the edit of {host} changed nothing");
    format!("{}{changed}{}", &text[..start], &text[end..])
}

/// What the test compares before and after: each host's shadow file and root's keys.
fn host_state(lab: &Lab, host: &str) -> String {
    let out = lab.exec(
        host,
        "cat /etc/shadow /etc/passwd; cat /etc/ssh/authorized_keys/root",
    );
    assert!(out.status.success(), "read {host}'s files: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The problems of the JSON report as `(target, check)`, with the whole problem.
fn problems(report: &serde_json::Value) -> Vec<(String, String, serde_json::Value)> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["target"].as_str().unwrap().to_owned(),
                p["check"].as_str().unwrap().to_owned(),
                p.clone(),
            )
        })
        .collect()
}

#[test]
fn preflight_finds_each_problem_with_its_fix_and_changes_nothing() {
    let lab = Lab::start(8);
    let ldap = LdapLab::start(3, false);
    let rotor = Rotor::init();
    let out = rotor.run_stdin(&["enroll", "hospital-ldap/rotor"], &ldap.bind_password());
    assert!(out.status.success(), "{out:?}");
    let dir = lab.dir().display().to_string();
    let base = std::fs::read_to_string(lab.inventory_path()).unwrap();

    // A clean fleet and directory: nothing to say, exit 0.
    let clean = lab.dir().join("clean.yaml");
    std::fs::write(&clean, format!("{base}{}", ldap.inventory_fragment())).unwrap();
    let clean = clean.to_str().unwrap();
    let out = rotor.run(&["inventory", "check", "-i", clean, "--connect"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{stderr}");
    assert!(stderr.contains("no problem found"), "{stderr}");

    // Break each host in its own way (host-001 stays clean).
    let (_, other_key) = keygen(lab.dir(), "not-the-host-key", "elsewhere");
    let other_key: Vec<&str> = other_key.split_whitespace().take(2).collect();
    let other_key = other_key.join(" ");
    let mut text = base.clone();
    text = edit_host(&text, "host-002", |b| {
        let line = b.lines().find(|l| l.contains("host_key:")).unwrap();
        b.replace(line, &format!("    host_key: \"{other_key}\""))
    });
    text = edit_host(&text, "host-004", |b| {
        b.replace(
            &format!("key: {dir}/admin_ed25519"),
            &format!("key: {dir}/no-such-key"),
        )
    });
    text = edit_host(&text, "host-005", |b| {
        format!("{b}      - {{ name: svc_ghost, playbook: linux-password }}\n")
    });
    text = edit_host(&text, "host-008", |b| {
        let line = b.lines().find(|l| l.contains("host_key:")).unwrap();
        b.replace(line, &format!("    known_hosts: {dir}/no-such-known-hosts"))
    });
    let fragment = ldap.inventory_fragment();
    let good_ca = ldap.ca_path().display().to_string();
    assert!(fragment.contains(&good_ca), "{fragment}");
    let fragment = fragment.replace(&good_ca, &ldap.wrong_ca_path().display().to_string());
    let broken = lab.dir().join("broken.yaml");
    std::fs::write(&broken, format!("{text}{fragment}")).unwrap();
    let broken = broken.to_str().unwrap();
    lab.fault("host-003", Fault::Kill);
    let locked = lab.exec("host-006", "usermod -L svc_app");
    assert!(locked.status.success(), "{locked:?}");
    lab.fault("host-007", Fault::PasswordLoginOff);

    let compared = [
        "host-001", "host-002", "host-004", "host-005", "host-006", "host-007", "host-008",
    ];
    let before: Vec<String> = compared.iter().map(|h| host_state(&lab, h)).collect();
    let head_before = rotor.run(&["audit", "head"]);

    // Without --connect: the local files only, no vault needed.
    let files_only = Rotor::without_vault();
    let out = files_only.run(&["inventory", "check", "-i", broken, "-o", "json"]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(3), "{report:#}");
    let found: Vec<(String, String)> = problems(&report)
        .into_iter()
        .map(|(t, c, _)| (t, c))
        .collect();
    assert_eq!(
        found,
        [
            ("host-004".to_owned(), "files".to_owned()),
            ("host-008".to_owned(), "files".to_owned())
        ],
        "{report:#}"
    );
    assert_eq!(report["connected"], false);

    // With --connect: every problem, in text (one line each) and in JSON.
    let text_out = rotor.run(&["inventory", "check", "-i", broken, "--connect"]);
    let stderr = String::from_utf8_lossy(&text_out.stderr);
    assert_eq!(text_out.status.code(), Some(3), "{stderr}");
    let stdout = String::from_utf8(text_out.stdout.clone()).unwrap();
    for line in stdout.lines() {
        let rest = line
            .strip_prefix(&format!("{broken}:"))
            .unwrap_or_else(|| panic!("not FILE:LINE: {line}"));
        assert!(
            rest.starts_with(|c: char| c.is_ascii_digit()),
            "no line number: {line}"
        );
    }
    assert!(stderr.contains("rotor: checked host-001: ok"), "{stderr}");
    eprintln!("{stdout}");
    let out = rotor.run(&[
        "inventory",
        "check",
        "-i",
        broken,
        "--connect",
        "-o",
        "json",
    ]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(3), "{report:#}");
    assert_eq!(report["checked"]["hosts"], 8, "{report:#}");
    assert_eq!(report["checked"]["directories"], 1, "{report:#}");
    let found = problems(&report);
    assert_eq!(found.len(), stdout.lines().count(), "{report:#}\n{stdout}");
    let expect: &[(&str, &str, &str, &str)] = &[
        // (target, check, in the message, in the fix)
        ("host-002", "host_key", "host key mismatch", "out of band"),
        ("host-003", "reachable", "failed", "sshd listens on"),
        ("host-004", "files", "file not found", "ssh-keygen"),
        (
            "host-005",
            "account",
            "svc_ghost does not exist",
            "remove it",
        ),
        (
            "host-006",
            "locked",
            "svc_app is locked",
            "usermod -U svc_app",
        ),
        (
            "host-007",
            "password_login",
            "svc_app",
            "PasswordAuthentication yes",
        ),
        (
            "host-007",
            "password_login",
            "svc_backup",
            "PasswordAuthentication yes",
        ),
        ("host-008", "files", "file not found", "ssh-keyscan"),
        ("hospital-ldap", "tls", "", "set ca_file"),
    ];
    for (target, check, message, fix) in expect {
        let hit = found.iter().find(|(t, c, p)| {
            t == target && c == check && p["message"].as_str().unwrap().contains(message)
        });
        let (_, _, p) = hit.unwrap_or_else(|| {
            panic!("no {check} problem on {target} saying {message:?}:\n{report:#}")
        });
        assert!(
            p["fix"].as_str().unwrap().contains(fix),
            "{target} {check}: the fix does not say {fix:?}: {p:#}"
        );
        assert!(p["line"].as_u64().unwrap() > 0, "{p:#}");
        assert_eq!(p["file"], broken, "{p:#}");
    }
    assert_eq!(
        found.len(),
        expect.len(),
        "only the expected problems:\n{report:#}"
    );
    // rotor proves the new password by its hash where sshd takes none: a warning.
    let by_hash = found
        .iter()
        .find(|(t, c, _)| t == "host-007" && c == "password_login")
        .unwrap();
    assert_eq!(by_hash.2["severity"], "warning");
    assert!(
        by_hash.2["message"]
            .as_str()
            .unwrap()
            .contains("stored hash"),
        "{:#}",
        by_hash.2
    );

    // Nothing changed anywhere.
    let after: Vec<String> = compared.iter().map(|h| host_state(&lab, h)).collect();
    for ((host, b), a) in compared.iter().zip(&before).zip(&after) {
        assert_eq!(b, a, "{host} changed");
    }
    let head_after = rotor.run(&["audit", "head"]);
    assert_eq!(head_before.stdout, head_after.stdout, "the audit log grew");
    let status = json(&rotor.run(&["status", "--output", "json"]));
    for c in status["credentials"].as_array().unwrap() {
        assert!(
            c["last_rotation"].is_null(),
            "a rotation was recorded: {c:#}"
        );
    }

    // `rotate` says a missing known_hosts file is a missing file, not a host key mismatch.
    let out = rotor.run(&[
        "rotate",
        "-i",
        broken,
        "--scope",
        "host:host-008",
        "--output",
        "json",
    ]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("file not found"), "{:?}: {said}", out.status);
    assert!(
        !said.contains("host key mismatch") && !said.contains("host_key_mismatch"),
        "{said}"
    );
    assert_eq!(host_state(&lab, "host-008"), before[6], "host-008 changed");
}

/// Warnings alone (a password proven by its hash where sshd takes none) are printed and in
/// the JSON, but the check passes: a CI gate on `inventory check --connect` can be green.
#[test]
fn preflight_warnings_alone_exit_0() {
    let lab = Lab::start(1);
    let rotor = Rotor::init();
    let inv = lab.inventory_path().display().to_string();
    lab.fault("host-001", Fault::PasswordLoginOff);
    let out = rotor.run(&["inventory", "check", "-i", &inv, "--connect", "-o", "json"]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    let found = problems(&report);
    assert!(!found.is_empty(), "the warnings are reported: {report:#}");
    for (target, check, p) in &found {
        assert_eq!(
            (target.as_str(), check.as_str(), &p["severity"]),
            ("host-001", "password_login", &serde_json::json!("warning")),
            "{report:#}"
        );
    }
    let text = rotor.run(&["inventory", "check", "-i", &inv, "--connect"]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert_eq!(text.status.code(), Some(0), "{text:?}");
    assert!(stdout.contains("warning: "), "{stdout}");
}

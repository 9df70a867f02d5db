//! The accounts rotor logs in with, rotated, and breach mode, against the story's fleet
//! (`Lab::start_root`: root shares one password and one admin key on every host). Every
//! credential is checked with the system `ssh` client, or, where sshd refuses root password
//! logins, with the system's crypt(3) through Python against the host's shadow file: never
//! with rotor's own code.

use std::collections::HashSet;

use crate::lab::Lab;
use crate::support::{Rotor, json, result_of};

/// The lab's inventory with root listed on every host: its password and its admin key. The
/// connect identity stays `{ user: root, key: <the shared admin key> }`: the bootstrap one.
fn root_inventory(lab: &Lab) -> std::path::PathBuf {
    lab.inventory_replacing(
        "root.yaml",
        "      - { name: svc_backup, playbook: linux-password }\n",
        "      - { name: svc_backup, playbook: linux-password }\n      - { name: root, playbook: linux-password }\n      - { name: root, playbook: linux-ssh-key }\n",
    )
}

/// Whether `host`'s shadow file holds `password` for root, judged by the system's crypt(3)
/// (Python's `crypt`), the password on stdin.
fn shadow_holds(lab: &Lab, host: &str, password: &str) -> bool {
    let out = lab.exec(host, "getent shadow root | cut -d: -f2");
    assert!(out.status.success(), "{out:?}");
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(hash.starts_with('$'), "{host}: root has a password hash");
    let mut check = std::process::Command::new("python3");
    check.args([
        "-W",
        "ignore",
        "-c",
        "import crypt, sys; h = sys.argv[1]; sys.exit(0 if crypt.crypt(sys.stdin.readline().rstrip('\\n'), h) == h else 1)",
        &hash,
    ]);
    let out = crate::support::run_with_stdin(check, &format!("{password}\n"));
    match out.status.code() {
        Some(0) => true,
        Some(1) => false,
        _ => panic!("crypt check failed: {out:?}"),
    }
}

/// Odd hosts permit root password logins (see `Lab::start_root`).
fn odd(host: &str) -> bool {
    host.trim_start_matches("host-").parse::<u32>().unwrap() % 2 == 1
}

fn key_of(rotor: &Rotor, cred: &str) -> String {
    rotor.show(cred).expect("the vault has the key") + "\n"
}

#[test]
fn a_breach_run_gives_every_root_its_own_password_and_admin_key_and_the_next_run_logs_in_with_them()
{
    let lab = Lab::start_root(20);
    let rotor = Rotor::init();
    let inv = root_inventory(&lab);
    let inv = inv.to_str().unwrap();
    let shared = lab.shared_password();
    let shared_key = std::fs::read_to_string(lab.dir().join("admin_ed25519")).unwrap();
    // The story's setup, as the system client sees it.
    assert!(lab.key_login_works("host-001", "root", &shared_key));
    assert!(lab.login_works("host-001", "root", shared));
    assert!(shadow_holds(&lab, "host-002", shared));

    let accepting = || {
        let status = json(&rotor.run(&["status", "-i", inv, "--output", "json"]));
        status["bootstrap_key_accepted"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["host"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(accepting(), lab.host_names(), "status names every host");

    let out = rotor.run(&[
        "rotate", "-i", inv, "--all", "--breach", "--reason", "INC-42", "--output", "json",
    ]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["counts"]["committed"], 80, "{report:#}");
    assert!(accepting().is_empty(), "no host accepts the shared key now");

    let mut passwords = HashSet::new();
    let mut keys = HashSet::new();
    for host in lab.host_names() {
        for account in ["svc_app", "svc_backup"] {
            let pw = rotor.show(&format!("{host}/{account}")).unwrap();
            assert!(lab.login_works(host, account, &pw), "{host}/{account}");
            assert!(!lab.login_works(host, account, shared), "{host}/{account}");
            assert!(passwords.insert(pw));
        }
        let root = rotor.show(&format!("{host}/root")).unwrap();
        let notes = result_of(&report, &format!("{host}/root"))["notes"].to_string();
        if odd(host) {
            assert!(lab.login_works(host, "root", &root), "{host}");
            assert!(!lab.login_works(host, "root", shared), "{host}");
            assert_eq!(notes, "null", "{host}: proven by a login");
        } else {
            // sshd refuses root password logins here: the proof was the stored hash, and the
            // report says so.
            assert!(
                notes.contains("proof: the stored password hash"),
                "{host}: {notes}"
            );
        }
        assert!(shadow_holds(&lab, host, &root), "{host}");
        assert!(!shadow_holds(&lab, host, shared), "{host}");
        assert!(passwords.insert(root));

        let key = key_of(&rotor, &format!("{host}/root:key"));
        assert!(lab.key_login_works(host, "root", &key), "{host}");
        assert!(
            !lab.key_login_works(host, "root", &shared_key),
            "{host}: the shared admin key still logs in"
        );
        let notes = result_of(&report, &format!("{host}/root:key"))["notes"].to_string();
        assert!(
            notes.contains("removed from authorized_keys") && notes.contains("rotor-lab-admin"),
            "{host}: {notes}"
        );
        assert!(keys.insert(key), "{host}: a key of its own");
    }

    // The next runs log in with each host's own key (the shared one is rejected everywhere,
    // and the inventory still names it as the bootstrap identity): one whose scope leaves
    // root out, as scheduled runs and check-ins do, and a whole one.
    let scoped = rotor.run(&[
        "rotate",
        "-i",
        inv,
        "--scope",
        "account:svc_app",
        "--output",
        "json",
    ]);
    let report = json(&scoped);
    assert_eq!(scoped.status.code(), Some(0), "{report:#}");
    assert_eq!(report["counts"]["committed"], 20, "{report:#}");
    let again = rotor.rotate_all(inv);
    let report = json(&again);
    assert_eq!(again.status.code(), Some(0), "{report:#}");
    assert_eq!(report["counts"]["committed"], 80, "{report:#}");
    for host in lab.host_names() {
        let key = key_of(&rotor, &format!("{host}/root:key"));
        assert!(lab.key_login_works(host, "root", &key), "{host}");
        assert!(!keys.contains(&key), "{host}: rotated again");
    }
}

/// The inventory of one host: root's key as its connect identity (bootstrap: the shared
/// key), or root's vault password (`credential: HOST/root`).
fn one_host_inventory(lab: &Lab, host: &str, password_connect: bool) -> std::path::PathBuf {
    let text = std::fs::read_to_string(lab.inventory_path()).unwrap();
    let (head, hosts) = text.split_once("hosts:\n").unwrap();
    let block = hosts
        .split_inclusive('\n')
        .fold(Vec::<String>::new(), |mut blocks, line| {
            if line.starts_with("  - name: ") {
                blocks.push(String::new());
            }
            blocks.last_mut().unwrap().push_str(line);
            blocks
        })
        .into_iter()
        .find(|b| b.starts_with(&format!("  - name: {host}\n")))
        .unwrap();
    let block = block.replace(
        "      - { name: svc_backup, playbook: linux-password }\n",
        if password_connect {
            "      - { name: svc_backup, playbook: linux-password }\n      - { name: root, playbook: linux-password }\n"
        } else {
            "      - { name: svc_backup, playbook: linux-password }\n      - { name: root, playbook: linux-ssh-key }\n"
        },
    );
    let block = if password_connect {
        let start = block.find("    connect: ").unwrap();
        let end = start + block[start..].find('\n').unwrap();
        format!(
            "{}    connect: {{ user: root, credential: {host}/root }}{}",
            &block[..start],
            &block[end..]
        )
    } else {
        block
    };
    let path = lab.dir().join(format!("{host}.yaml"));
    std::fs::write(&path, format!("{head}hosts:\n{block}")).unwrap();
    path
}

#[test]
fn a_crash_at_any_phase_of_a_connect_identity_rotation_leaves_rotor_able_to_log_in() {
    let lab = Lab::start_root(7);
    let rotor = Rotor::init();
    let shared_key = std::fs::read_to_string(lab.dir().join("admin_ed25519")).unwrap();
    let cases = [
        ("host-001", false, "staged"),
        ("host-002", false, "applied"),
        ("host-003", false, "verified"),
        ("host-004", false, "retiring"),
        ("host-005", true, "staged"),
        ("host-007", true, "applied"),
    ];
    for (host, password, phase) in cases {
        let inv = one_host_inventory(&lab, host, password);
        let inv = inv.to_str().unwrap();
        let cred = format!("{host}/root");
        if password {
            // rotor logs in as root with root's password, which it rotates.
            let out = rotor.run_stdin(&["enroll", &cred], lab.shared_password());
            assert!(out.status.success(), "{out:?}");
        }
        rotor.kill_at(
            &["rotate", "-i", inv, "--scope", &format!("cred:{cred}")],
            phase,
        );
        let recovered = rotor.run(&["recover", "-i", inv, "--output", "json"]);
        let report = json(&recovered);
        assert_eq!(
            recovered.status.code(),
            Some(0),
            "{host} killed at {phase}: {report:#}"
        );
        // rotor can still log in: a whole run on the host works.
        let again = rotor.run(&[
            "rotate",
            "-i",
            inv,
            "--scope",
            &format!("host:{host}"),
            "--output",
            "json",
        ]);
        let report = json(&again);
        assert_eq!(
            again.status.code(),
            Some(0),
            "{host} after {phase}: {report:#}"
        );
        assert_eq!(report["counts"]["committed"], 3, "{report:#}");
        // And what the vault holds is what the host takes, by the system client.
        let secret = rotor.show(&cred).unwrap();
        if password {
            assert!(
                lab.login_works(host, "root", &secret),
                "{host} after {phase}"
            );
            assert!(
                !lab.login_works(host, "root", lab.shared_password()),
                "{host}"
            );
        } else {
            assert!(
                lab.key_login_works(host, "root", &(secret + "\n")),
                "{host} after {phase}"
            );
            assert!(
                !lab.key_login_works(host, "root", &shared_key),
                "{host} after {phase}: the bootstrap key was retired"
            );
        }
    }
}

#[test]
fn a_breach_run_removes_a_planted_key_and_reports_a_planted_account_and_a_live_session() {
    use crate::breach_survey::{PLANTED_PASSWORD, hold_svc_app, plant};
    let lab = Lab::start(2);
    let rotor = Rotor::init();
    // svc_backup logs in with a key rotor manages; the attacker added one of theirs.
    let inv = lab.inventory_replacing(
        "keys.yaml",
        "{ name: svc_backup, playbook: linux-password }",
        "{ name: svc_backup, playbook: linux-ssh-key }",
    );
    let inv = inv.to_str().unwrap();
    // A session as svc_app, opened before any rotation, still open at the breach run.
    let session = hold_svc_app(&lab, "host-001");
    let first = rotor.rotate_all(inv);
    assert_eq!(first.status.code(), Some(0), "{:#}", json(&first));
    let (attacker_private, attacker_public) =
        crate::support::keygen(lab.dir(), "attacker", "totally-the-vendor");
    let keys = "/home/svc_backup/.ssh/authorized_keys";
    let out = lab.exec(
        "host-001",
        &format!("printf '%s\\n' '{attacker_public}' >> {keys}"),
    );
    assert!(out.status.success(), "{out:?}");
    assert!(lab.key_login_works("host-001", "svc_backup", &attacker_private));
    let planted_hash = plant(&lab, "host-002");

    let out = rotor.run(&[
        "rotate", "-i", inv, "--all", "--breach", "--reason", "INC-7", "--output", "json",
    ]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    // The planted key no longer logs in, rotor's new key does, and the report lists the
    // removed line by fingerprint and comment.
    assert!(!lab.key_login_works("host-001", "svc_backup", &attacker_private));
    let key = key_of(&rotor, "host-001/svc_backup");
    assert!(lab.key_login_works("host-001", "svc_backup", &key));
    let file = String::from_utf8(lab.exec("host-001", &format!("cat {keys}")).stdout).unwrap();
    assert_eq!(file.lines().count(), 1, "only the new key is left: {file}");
    let notes = result_of(&report, "host-001/svc_backup")["notes"].to_string();
    let fingerprint = String::from_utf8(
        std::process::Command::new("ssh-keygen")
            .args(["-l", "-f"])
            .arg(lab.dir().join("attacker.pub"))
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .split_whitespace()
    .nth(1)
    .unwrap()
    .to_owned();
    assert!(
        notes.contains(&fingerprint) && notes.contains("totally-the-vendor"),
        "{fingerprint}: {notes}"
    );
    // The removed line is kept in the vault, whole, for an operator to put back.
    let kept = rotor.run(&[
        "show",
        "host-001/svc_backup",
        "--removed-keys",
        "--reason",
        "put the vendor's key back",
    ]);
    assert!(kept.status.success(), "{kept:?}");
    let kept = String::from_utf8(kept.stdout).unwrap();
    assert!(kept.lines().any(|l| l == attacker_public), "{kept}");
    // The survey: the planted account on host-002, the session on host-001, what to do.
    let survey = report["breach"].as_array().expect("a breach survey");
    let of = |host: &str| survey.iter().find(|s| s["host"] == host).unwrap().clone();
    let unknown: Vec<String> = of("host-002")["unknown_accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(unknown, ["backdoor"], "{report:#}");
    let sessions = of("host-001")["sessions"].to_string();
    assert!(sessions.contains("\"svc_app\""), "{report:#}");
    assert!(
        sessions.contains("pkill") || sessions.contains("loginctl"),
        "{sessions}"
    );
    let text = rotor.run(&["rotate", "-i", inv, "--all", "--breach"]);
    let shown = String::from_utf8_lossy(&text.stdout);
    assert!(
        shown.contains("Breach survey") && shown.contains("backdoor"),
        "{shown}"
    );
    drop(session);
    crate::support::assert_no_leak(
        &[
            (
                "the planted password".to_owned(),
                PLANTED_PASSWORD.to_owned(),
            ),
            ("the planted hash".to_owned(), planted_hash),
        ],
        &rotor,
        &[&out, &text],
    );
}

/// sshd may read keys from files rotor does not edit (the plain lab keeps the admin key in
/// `/etc/ssh/authorized_keys/root`, named by `AuthorizedKeysFile`): after giving root a key
/// of its own, a login with the bootstrap key still works, and the report and `status` say so.
#[test]
fn a_bootstrap_key_kept_in_another_file_is_reported_as_still_accepted() {
    let lab = Lab::start(1);
    let rotor = Rotor::init();
    let inv = lab.inventory_replacing(
        "root-key.yaml",
        "      - { name: svc_backup, playbook: linux-password }\n",
        "      - { name: svc_backup, playbook: linux-password }\n      - { name: root, playbook: linux-ssh-key }\n",
    );
    let inv = inv.to_str().unwrap();
    let out = rotor.rotate_all(inv);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    let notes = result_of(&report, "host-001/root")["notes"].to_string();
    assert!(
        notes.contains("warning: the bootstrap key still logs in as root"),
        "{notes}"
    );
    let shared_key = std::fs::read_to_string(lab.dir().join("admin_ed25519")).unwrap();
    assert!(
        lab.key_login_works("host-001", "root", &shared_key),
        "the lab's other file"
    );
    let status = json(&rotor.run(&["status", "-i", inv, "--output", "json"]));
    let accepted = &status["bootstrap_key_accepted"];
    assert_eq!(accepted.as_array().unwrap().len(), 1, "{status:#}");
    assert!(
        accepted[0]["why"]
            .as_str()
            .unwrap()
            .contains("AuthorizedKeysFile"),
        "{status:#}"
    );
    // The next run logs in with root's own key all the same.
    let again = rotor.rotate_all(inv);
    assert_eq!(again.status.code(), Some(0), "{:#}", json(&again));
}

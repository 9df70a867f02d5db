//! `linux-ssh-key` against real sshd hosts, each key checked with the system `ssh` client
//! (`scripts/lab key-login`: that private key alone, no agent, no password), never with
//! rotor's own code: rotation on 20 hosts beside a password account on the same host, a
//! SIGKILL in `retiring` settled by `rotor recover`, and a host whose `authorized_keys`
//! cannot be written.

use crate::lab::Lab;
use crate::support::{Leaks, Rotor, json, result_of};

const KEYS: &str = "/home/svc_backup/.ssh/authorized_keys";

/// The lab's inventory with `svc_backup` rotated as an SSH key; `svc_app` stays a password.
fn key_inventory(lab: &Lab) -> std::path::PathBuf {
    lab.inventory_replacing(
        "keys.yaml",
        "{ name: svc_backup, playbook: linux-password }",
        "{ name: svc_backup, playbook: linux-ssh-key }",
    )
}

/// A key pair made by `ssh-keygen`, not rotor: (private key text, public line).
fn outside_key(dir: &std::path::Path, name: &str) -> (String, String) {
    crate::support::keygen(dir, name, "vendor-maintenance")
}

/// Gives `svc_backup` an `authorized_keys` with one key rotor does not manage, owned by the
/// account with mode 0640 (not rotor's default, so that keeping it is visible).
fn install_outside_key(lab: &Lab, host: &str, public: &str) {
    let out = lab.exec(
        host,
        &format!(
            "set -e; install -d -m 0700 -o svc_backup -g svc_backup /home/svc_backup/.ssh; \
             printf '%s\\n' '# keys of the vendor' '{public}' > {KEYS}; \
             chown svc_backup:svc_backup {KEYS}; chmod 0640 {KEYS}"
        ),
    );
    assert!(out.status.success(), "{out:?}");
}

fn owner_and_mode(lab: &Lab, host: &str) -> String {
    let out = lab.exec(host, &format!("stat -c '%U:%G %a' {KEYS}"));
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn authorized_keys(lab: &Lab, host: &str) -> String {
    String::from_utf8(lab.exec(host, &format!("cat {KEYS}")).stdout).unwrap()
}

/// `rotor show` of a key, with the final newline `ssh` wants.
fn key_of(rotor: &Rotor, cred: &str) -> String {
    let key = rotor.show(cred).expect("the vault has the key");
    assert!(
        key.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"),
        "{cred}"
    );
    key + "\n"
}

/// The parts of a private key that must never be printed: each base64 line of its body.
fn key_lines(key: &str) -> Vec<String> {
    key.lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn ssh_keys_rotate_on_twenty_hosts_beside_passwords_and_keep_what_rotor_does_not_manage() {
    let lab = Lab::start(20);
    let rotor = Rotor::init();
    let inv = key_inventory(&lab);
    let (outside_private, outside_public) = outside_key(lab.dir(), "vendor");
    for host in lab.host_names() {
        install_outside_key(&lab, host, &outside_public);
    }
    let rotate = || rotor.rotate_all(inv.to_str().unwrap());

    // First rotation: an account with no rotor key gets one; nothing is removed.
    let first = rotate();
    let report = json(&first);
    assert_eq!(first.status.code(), Some(0), "{report:#}");
    assert_eq!(report["counts"]["committed"], 40, "{report:#}");
    let mut first_keys = Vec::new();
    for host in lab.host_names() {
        let key = key_of(&rotor, &format!("{host}/svc_backup"));
        assert!(lab.key_login_works(host, "svc_backup", &key), "{host}");
        assert!(lab.key_login_works(host, "svc_backup", &outside_private));
        first_keys.push(key);
    }

    // Second rotation: the key rotor installed before is removed by fingerprint; the
    // vendor's key, the comment and the file's owner and mode stay.
    let second = rotate();
    let report = json(&second);
    assert_eq!(second.status.code(), Some(0), "{report:#}");
    let mut all_keys = first_keys.clone();
    for (host, old) in lab.host_names().iter().zip(&first_keys) {
        let new = key_of(&rotor, &format!("{host}/svc_backup"));
        assert_ne!(&new, old, "{host}: a new key");
        assert!(
            lab.key_login_works(host, "svc_backup", &new),
            "{host}: new key"
        );
        assert!(
            !lab.key_login_works(host, "svc_backup", old),
            "{host}: the key rotor installed before must be rejected"
        );
        assert!(lab.key_login_works(host, "svc_backup", &outside_private));
        let file = authorized_keys(&lab, host);
        assert!(file.contains(&outside_public), "{host}: {file}");
        assert!(file.contains("# keys of the vendor"), "{host}: {file}");
        assert_eq!(file.lines().count(), 3, "{host}: {file}");
        assert_eq!(owner_and_mode(&lab, host), "svc_backup:svc_backup 640");
        // The password account of the same host was rotated with its own playbook.
        let password = rotor.show(&format!("{host}/svc_app")).unwrap();
        assert!(
            lab.login_works(host, "svc_app", &password),
            "{host}/svc_app"
        );
        assert!(!lab.login_works(host, "svc_app", lab.shared_password()));
        all_keys.push(new);
    }
    let mut distinct = all_keys.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 40, "every key differs");

    // No private key line in the vault file, the logs or the reports.
    let lines: Vec<String> = all_keys.iter().flat_map(|k| key_lines(k)).collect();
    let leaks = Leaks::new(lines.iter().map(|l| ("a private key line", l.as_str())));
    for out in [&first, &second] {
        leaks.assert_absent("the logs", &out.stderr);
        leaks.assert_absent("the report", &out.stdout);
    }
    leaks.assert_absent("the vault file", &rotor.vault_bytes());
}

#[test]
fn a_sigkill_while_retiring_is_finished_by_recover() {
    let lab = Lab::start(1);
    let rotor = Rotor::init();
    let inv = key_inventory(&lab);
    let host = "host-001";
    let cred = "host-001/svc_backup";
    let scope = format!("cred:{cred}");
    let args = ["rotate", "-i", inv.to_str().unwrap(), "--scope", &scope];
    let out = rotor.run(&args);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let old = key_of(&rotor, cred);

    // Killed after the new key was proven and committed, before the old one was removed.
    rotor.kill_at(&args, "retiring");
    let new = key_of(&rotor, cred);
    assert_ne!(new, old, "the new key is current once committed");
    assert!(lab.key_login_works(host, "svc_backup", &new));
    assert!(
        lab.key_login_works(host, "svc_backup", &old),
        "the old key is still there after the crash"
    );
    let status = json(&rotor.run(&["status", "--output", "json"]));
    assert!(status.to_string().contains("retiring"), "{status:#}");

    let out = rotor.run(&["recover", "-i", inv.to_str().unwrap(), "--output", "json"]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(
        result_of(&report, cred)["result"],
        "committed",
        "{report:#}"
    );
    assert!(lab.key_login_works(host, "svc_backup", &new));
    assert!(
        !lab.key_login_works(host, "svc_backup", &old),
        "recover removes the old key"
    );
    assert_eq!(key_of(&rotor, cred), new, "the new key stays current");
}

#[test]
fn a_host_whose_authorized_keys_cannot_be_written_is_rolled_back() {
    let lab = Lab::start(2);
    let rotor = Rotor::init();
    let inv = key_inventory(&lab);
    let out = rotor.run(&["rotate", "-i", inv.to_str().unwrap(), "--all"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let before: Vec<String> = lab
        .host_names()
        .iter()
        .map(|h| key_of(&rotor, &format!("{h}/svc_backup")))
        .collect();

    // host-002's ~/.ssh becomes read-only, for root too (a read-only bind mount).
    let ssh_dir = "/home/svc_backup/.ssh";
    let out = lab.exec(
        "host-002",
        &format!("mount --bind {ssh_dir} {ssh_dir} && mount -o remount,bind,ro {ssh_dir}"),
    );
    assert!(out.status.success(), "{out:?}");

    let out = rotor.rotate_all(inv.to_str().unwrap());
    let report = json(&out);
    assert_eq!(out.status.code(), Some(3), "{report:#}");
    let r = result_of(&report, "host-002/svc_backup");
    assert!(
        matches!(r["result"].as_str(), Some("rolled_back" | "not_changed")),
        "{report:#}"
    );
    assert!(
        r["cause"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("host-002/svc_backup")),
        "{report:#}"
    );
    // The old key still works and is still the vault's; host-001 rotated.
    assert_eq!(key_of(&rotor, "host-002/svc_backup"), before[1]);
    assert!(lab.key_login_works("host-002", "svc_backup", &before[1]));
    assert_eq!(
        result_of(&report, "host-001/svc_backup")["result"],
        "committed"
    );
    let new = key_of(&rotor, "host-001/svc_backup");
    assert!(lab.key_login_works("host-001", "svc_backup", &new));
    assert!(!lab.key_login_works("host-001", "svc_backup", &before[0]));
}

#[test]
fn an_account_with_a_password_and_a_key_has_two_credentials() {
    let lab = Lab::start(1);
    let rotor = Rotor::init();
    let text = std::fs::read_to_string(lab.inventory_path()).unwrap();
    let both = text.replace(
        "      - { name: svc_backup, playbook: linux-password }",
        "      - { name: svc_backup, playbook: linux-password }\n      - { name: svc_backup, playbook: linux-ssh-key }",
    );
    assert_ne!(text, both);
    let inv = lab.dir().join("both.yaml");
    std::fs::write(&inv, both).unwrap();
    let out = rotor.rotate_all(inv.to_str().unwrap());
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["counts"]["committed"], 3, "{report:#}");
    assert_eq!(
        result_of(&report, "host-001/svc_backup")["result"],
        "committed"
    );
    assert_eq!(
        result_of(&report, "host-001/svc_backup:key")["result"],
        "committed"
    );
    let password = rotor.show("host-001/svc_backup").unwrap();
    assert!(lab.login_works("host-001", "svc_backup", &password));
    let key = key_of(&rotor, "host-001/svc_backup:key");
    assert!(lab.key_login_works("host-001", "svc_backup", &key));
    // A scope names one of the two: only the key is rotated.
    let scope = ["--scope", "cred:host-001/svc_backup:key"];
    let out = rotor.run(
        &[
            &["rotate", "-i", inv.to_str().unwrap()][..],
            &scope[..],
            &["--output", "json"],
        ]
        .concat(),
    );
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["results"].as_array().unwrap().len(), 1, "{report:#}");
    assert_eq!(
        result_of(&report, "host-001/svc_backup:key")["result"],
        "committed"
    );
    assert_eq!(
        rotor.show("host-001/svc_backup").unwrap(),
        password,
        "the password stays"
    );
    assert_ne!(
        key_of(&rotor, "host-001/svc_backup:key"),
        key,
        "the key rotated"
    );
    // Asked for a name that does not exist, rotor says which one does.
    let out = rotor.run(&["show", "host-001/svc_app:key", "--reason", "test"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("but it does for host-001/svc_app"), "{err}");
}

/// The post-incident case: a key installed by someone else (the vendor's, enrolled into the
/// vault with `enroll --ssh-key`) is the previous key, and the rotation removes it.
#[test]
fn rotating_an_enrolled_key_removes_it_once_the_new_one_works() {
    let lab = Lab::start(1);
    let rotor = Rotor::init();
    let inv = key_inventory(&lab);
    let (enrolled_private, enrolled_public) = outside_key(lab.dir(), "enrolled");
    let (other_private, other_public) = outside_key(lab.dir(), "other");
    install_outside_key(
        &lab,
        "host-001",
        &format!("{enrolled_public}\n{other_public}"),
    );
    let key_file = lab.dir().join("enrolled");
    let out = rotor.run(&[
        "enroll",
        "host-001/svc_backup",
        "--ssh-key",
        key_file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(lab.key_login_works("host-001", "svc_backup", &enrolled_private));

    let out = rotor.run(&[
        "rotate",
        "-i",
        inv.to_str().unwrap(),
        "--scope",
        "cred:host-001/svc_backup",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let new = key_of(&rotor, "host-001/svc_backup");
    assert!(lab.key_login_works("host-001", "svc_backup", &new));
    assert!(
        !lab.key_login_works("host-001", "svc_backup", &enrolled_private),
        "the enrolled key is the previous one: removed"
    );
    assert!(
        lab.key_login_works("host-001", "svc_backup", &other_private),
        "a key the vault does not hold stays"
    );
}

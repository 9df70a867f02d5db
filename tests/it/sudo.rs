//! Issue 13 (sudo): rotor connects as a non-root user and runs its commands through sudo, with
//! a sudo password (on stdin, `sudo -S`) or a NOPASSWD rule, and refuses a host whose sudo
//! would write the commands' input (the new passwords) to its I/O log. One lab of four
//! hosts: a password rule, a NOPASSWD rule, a password rule with `Defaults:ops log_input`,
//! and the README's least-privilege NOPASSWD line (only the commands linux-password runs).
//! Every password is checked with the system `ssh` client (`scripts/lab login`), not rotor.

use crate::lab::{Lab, SudoMode};
use crate::support::{Leaks, Rotor, json, result_of};

const OPS: &str = "ops";
const OPS_PASSWORD: &str = "Ops-Sudo-Passw0rd!";

/// The lab's inventory with each host connecting as `ops` with the vault's `HOST/ops`.
fn connect_as_ops(lab: &Lab) -> std::path::PathBuf {
    let inv = lab.inventory_path();
    let text = std::fs::read_to_string(&inv).unwrap();
    let mut out = String::new();
    let mut host = String::new();
    for line in text.lines() {
        if let Some(name) = line.trim_start().strip_prefix("- name: ") {
            host = name.to_owned();
        }
        if line.trim_start().starts_with("connect:") {
            out.push_str(&format!(
                "    connect: {{ user: {OPS}, credential: {host}/{OPS} }}\n"
            ));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    let path = lab.dir().join("inventory-sudo.yaml");
    std::fs::write(&path, out).unwrap();
    path
}

#[test]
fn sudo_with_a_password_and_with_nopasswd_rotates_and_a_host_that_logs_input_is_refused() {
    let lab = Lab::start(4);
    let modes = [
        ("host-001", SudoMode::Password),
        ("host-002", SudoMode::Nopasswd),
        ("host-003", SudoMode::LogInput),
        ("host-004", SudoMode::Least),
    ];
    let rotor = Rotor::init();
    for (host, mode) in modes {
        lab.sudo_user(host, OPS, mode, OPS_PASSWORD);
        let cred = format!("{host}/{OPS}");
        let out = rotor.run_stdin(&["enroll", &cred], &format!("{OPS_PASSWORD}\n"));
        assert!(
            out.status.success(),
            "enroll {cred}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let inv = connect_as_ops(&lab);
    let out = rotor.rotate_all(inv.to_str().unwrap());
    let report = json(&out);

    let shared = lab.shared_password();
    let mut secrets = Vec::new();
    for host in ["host-001", "host-002", "host-004"] {
        for account in ["svc_app", "svc_backup"] {
            let cred = format!("{host}/{account}");
            let r = result_of(&report, &cred);
            assert_eq!(r["result"], "committed", "{cred}: {report:#}");
            let secret = rotor.show(&cred).expect("the vault has the new secret");
            assert!(
                lab.login_works(host, account, &secret),
                "{cred}: the new password must work"
            );
            assert!(
                !lab.login_works(host, account, shared),
                "{cred}: the shared password must be rejected"
            );
            secrets.push(secret);
        }
    }

    // host-003's sudo would log stdin: refused before anything was pushed, with the line to add.
    for account in ["svc_app", "svc_backup"] {
        let cred = format!("host-003/{account}");
        let r = result_of(&report, &cred);
        assert_eq!(r["result"], "not_changed", "{cred}: {r:#}");
        assert_eq!(r["cause"]["class"], "refused", "{r:#}");
        let msg = r["cause"]["message"].as_str().unwrap();
        for part in [
            "host-003",
            "ops",
            "log_input",
            "`Defaults:ops !log_input`",
            "visudo -f /etc/sudoers.d/zz-rotor",
        ] {
            assert!(msg.contains(part), "{part:?} not in {msg}");
        }
        assert!(
            lab.login_works("host-003", account, shared),
            "{cred}: nothing was pushed, the shared password still works"
        );
    }
    assert_eq!(out.status.code(), Some(3), "{report:#}");

    // The probes did run through sudo there (its I/O log exists), and no password reached it.
    assert!(
        lab.exec("host-003", "test -d /var/log/sudo-io")
            .status
            .success(),
        "sudo on host-003 logged no command: the check below would prove nothing"
    );
    let io = lab.exec(
        "host-003",
        "find /var/log/sudo-io -type f -exec zcat -f {} + 2>/dev/null",
    );
    let leaks = Leaks::new(
        secrets
            .iter()
            .map(|s| ("a new password", s.as_str()))
            .chain([
                ("the sudo password", OPS_PASSWORD),
                ("the shared password", shared),
            ]),
    );
    leaks.assert_absent("host-003's sudo I/O log", &io.stdout);
    leaks.assert_absent("the report", &out.stdout);
    leaks.assert_absent("the logs", &out.stderr);
    // ops itself was not rotated, and still logs in with its own password.
    for (host, _) in modes {
        assert!(lab.login_works(host, OPS, OPS_PASSWORD), "{host}/ops");
    }
}

/// The connect user's own password (its login and what sudo asks for) rotated with the rest:
/// last on the host, proven by a fresh login; the next run logs in, and sudo takes, the new one.
#[test]
fn a_sudo_user_that_rotor_connects_as_gets_its_own_password_rotated_last() {
    let lab = Lab::start(1);
    let rotor = Rotor::init();
    let host = "host-001";
    lab.sudo_user(host, OPS, SudoMode::Password, OPS_PASSWORD);
    let cred = format!("{host}/{OPS}");
    let out = rotor.run_stdin(&["enroll", &cred], &format!("{OPS_PASSWORD}\n"));
    assert!(out.status.success(), "{out:?}");
    let inv = connect_as_ops(&lab);
    let text = std::fs::read_to_string(&inv).unwrap().replace(
        "      - { name: svc_backup, playbook: linux-password }\n",
        "      - { name: svc_backup, playbook: linux-password }\n      - { name: ops, playbook: linux-password }\n",
    );
    std::fs::write(&inv, text).unwrap();
    let inv = inv.to_str().unwrap();

    let mut seen = Vec::new();
    for round in 0..2 {
        let out = rotor.rotate_all(inv);
        let report = json(&out);
        assert_eq!(out.status.code(), Some(0), "round {round}: {report:#}");
        assert_eq!(report["counts"]["committed"], 3, "{report:#}");
        let ops = rotor.show(&cred).unwrap();
        assert!(lab.login_works(host, OPS, &ops), "round {round}");
        assert!(!lab.login_works(host, OPS, OPS_PASSWORD), "round {round}");
        for account in ["svc_app", "svc_backup"] {
            let pw = rotor.show(&format!("{host}/{account}")).unwrap();
            assert!(lab.login_works(host, account, &pw), "round {round}");
        }
        assert!(!seen.contains(&ops), "a new password each round");
        seen.push(ops);
    }
    // Round two logged in with round one's password and ran every command through sudo
    // with it: sudo took the new password.
}

/// A sudo user that rotor logs in as with the shared admin key (NOPASSWD): its key listed
/// with `linux-ssh-key` becomes a key of the host's own, the shared one is removed (rotor
/// edits ops's authorized_keys as ops, through sudo), and the next run logs in with the new key.
#[test]
fn a_sudo_user_logging_in_with_the_shared_admin_key_gets_a_key_of_its_own() {
    let lab = Lab::start(1);
    let rotor = Rotor::init();
    let host = "host-001";
    lab.sudo_user(host, OPS, SudoMode::Nopasswd, OPS_PASSWORD);
    let admin = lab.dir().join("admin_ed25519");
    let out = lab.exec(
        host,
        &format!(
            "set -e; install -d -m 0700 -o {OPS} -g {OPS} /home/{OPS}/.ssh; \
             install -m 0600 -o {OPS} -g {OPS} {}.pub /home/{OPS}/.ssh/authorized_keys",
            admin.display()
        ),
    );
    assert!(out.status.success(), "{out:?}");
    let shared_key = std::fs::read_to_string(&admin).unwrap();
    assert!(lab.key_login_works(host, OPS, &shared_key));
    let inv = lab.inventory_replacing(
        "ops-key.yaml",
        "    connect: { user: root, key: ",
        "    connect: { user: ops, key: ",
    );
    let text = std::fs::read_to_string(&inv).unwrap().replace(
        "      - { name: svc_backup, playbook: linux-password }\n",
        "      - { name: svc_backup, playbook: linux-password }\n      - { name: ops, playbook: linux-ssh-key }\n",
    );
    std::fs::write(&inv, text).unwrap();
    let inv = inv.to_str().unwrap();
    let cred = format!("{host}/{OPS}");
    let mut keys = Vec::new();
    for round in 0..2 {
        let out = rotor.rotate_all(inv);
        let report = json(&out);
        assert_eq!(out.status.code(), Some(0), "round {round}: {report:#}");
        assert_eq!(report["counts"]["committed"], 3, "{report:#}");
        let key = rotor.show(&cred).unwrap() + "\n";
        assert!(lab.key_login_works(host, OPS, &key), "round {round}");
        assert!(
            !lab.key_login_works(host, OPS, &shared_key),
            "round {round}"
        );
        assert!(!keys.contains(&key));
        keys.push(key);
    }
}

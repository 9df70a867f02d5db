//! Issue 9, must-show 6: bad playbooks in an inventory's `playbooks_dir` (a secret in a
//! command line, an unknown step, an unknown variable, a YAML error) are each a clear error
//! with the playbook's file and line, from `rotor playbook check`, `rotor inventory check` and
//! `rotor rotate` alike, and nothing runs on any host.

use std::path::Path;

use crate::lab::Lab;
use crate::support::Rotor;

/// A site playbook that loads: the test breaks one piece of it per case.
const SITE: &str = r#"name: site-password
kind: password
description: A site's own password playbook.
vars:
  marker: { kind: path, default: /etc/site-rotated, description: a file the set step touches }
steps:
  read_restore_point:
    - run: "getent shadow -- {account}"
      missing_exit: 2
      save: hash
      field: 2
      password_hash: true
  set:
    - run: "chpasswd"
      stdin: "{account}:{secret}\n"
    - run: "touch {marker}"
  prove:
    - action: ssh-password-login
  undo:
    - run: "chpasswd -e"
      stdin: "{account}:{saved.hash}\n"
"#;

/// rotor's exit code and stderr (or stdout, when it succeeded), the work dir as [WORK].
fn outcome(rotor: &Rotor, args: &[&str], work: &Path) -> String {
    let out = rotor.cmd(args).env("ROTOR_LOG", "off").output().unwrap();
    let text = if out.status.success() {
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let text = text.replace(&work.display().to_string(), "[WORK]");
    format!("exit {}\n{}", out.status.code().unwrap(), text.trim_end())
}

/// Every host's sshd log, to show that no command reached any host.
fn sshd_logs(lab: &Lab) -> Vec<(String, String)> {
    lab.host_names()
        .iter()
        .map(|h| {
            let log = lab.dir().join("logs").join(format!("{h}.log"));
            (h.clone(), std::fs::read_to_string(log).unwrap_or_default())
        })
        .collect()
}

#[test]
fn bad_playbooks_are_refused_with_file_and_line_and_nothing_runs() {
    let lab = Lab::start(2);
    let rotor = Rotor::init();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("playbooks");
    std::fs::create_dir(&dir).unwrap();
    let inventory = std::fs::read_to_string(lab.inventory_path())
        .unwrap()
        .replacen("version: 1\n", "version: 1\nplaybooks_dir: playbooks\n", 1)
        .replace(
            "{ name: svc_app, playbook: linux-password }",
            "{ name: svc_app, playbook: site-password }",
        );
    let inv = work.path().join("inventory.yaml");
    std::fs::write(&inv, &inventory).unwrap();
    let inv = inv.to_str().unwrap();
    let playbook = dir.join("site-password.yaml");
    let file = playbook.to_str().unwrap();
    let logs_before = sshd_logs(&lab);

    // The good playbook loads everywhere (so the refusals below are the breakage's).
    std::fs::write(&playbook, SITE).unwrap();
    insta::assert_snapshot!(outcome(&rotor, &["playbook", "check", file], work.path()), @r#"
exit 0
[WORK]/playbooks/site-password.yaml: playbook `site-password` is valid (password, 5 steps)
"#);
    let listed = outcome(&rotor, &["playbook", "list", "-i", inv], work.path());
    let row = listed
        .lines()
        .find(|l| l.trim_start().starts_with("site-password "));
    let row: Vec<&str> = row
        .expect("site-password listed")
        .split_whitespace()
        .take(3)
        .collect();
    assert_eq!(
        row,
        [
            "site-password",
            "password",
            "[WORK]/playbooks/site-password.yaml"
        ]
    );

    let check = |text: &str| {
        std::fs::write(&playbook, text).unwrap();
        let results = [
            outcome(&rotor, &["playbook", "check", file], work.path()),
            outcome(&rotor, &["inventory", "check", "-i", inv], work.path()),
            outcome(&rotor, &["rotate", "-i", inv, "--all"], work.path()),
        ];
        // The same refusal from every command that reads the playbook.
        let first = results[0].clone();
        for other in &results[1..] {
            assert_eq!(other, &first, "every command refuses it in the same words");
        }
        first
    };

    let secret_in_run = SITE.replace(
        "run: \"touch {marker}\"",
        "run: \"echo {secret} > {marker}\"",
    );
    insta::assert_snapshot!(check(&secret_in_run), @r#"
exit 1
error: [WORK]/playbooks/site-password.yaml:16:12: steps.set[1].run: {secret} puts a secret in a command line, where every process on the host can read it: pass it on stdin instead, e.g. `stdin: "{account}:{secret}\n"`
"#);

    let unknown_step = SITE.replace("  prove:\n", "  verify:\n");
    insta::assert_snapshot!(check(&unknown_step), @r#"
exit 1
error: [WORK]/playbooks/site-password.yaml:17:3: steps.verify: unknown step `verify`: a playbook's steps are read_restore_point, set, prove, undo, retire; the proof is `prove`
"#);

    let unknown_variable = SITE.replace("touch {marker}", "touch {marke}");
    insta::assert_snapshot!(check(&unknown_variable), @r#"
exit 1
error: [WORK]/playbooks/site-password.yaml:16:12: steps.set[1].run: unknown variable `{marke}`: the playbook declares marker (declare it under `vars:`, e.g. `marke: { kind: path, default: /etc/app.conf, description: ... }`, or use {account}, {host} or {home}); did you mean `marker`?
"#);

    let yaml_error = SITE.replace("      save: hash\n", "      save: hash\n     field: 2\n");
    insta::assert_snapshot!(check(&yaml_error), @r#"
exit 1
error: [WORK]/playbooks/site-password.yaml:11:6: steps.read_restore_point: while parsing a block collection, did not find expected '-' indicator: this is not valid YAML here; check indentation and quoting
"#);

    // An inventory that gives the playbook a variable it does not declare, or a value that
    // could carry shell syntax, is refused at the account's line.
    std::fs::write(&playbook, SITE).unwrap();
    let bad_vars = work.path().join("bad-vars.yaml");
    std::fs::write(
        &bad_vars,
        inventory
            .replacen(
                "{ name: svc_app, playbook: site-password }",
                "{ name: svc_app, playbook: site-password, vars: { markr: /tmp/x } }",
                1,
            )
            .replacen(
                "{ name: svc_app, playbook: site-password }",
                "{ name: svc_app, playbook: site-password, vars: { marker: \"/tmp/x;reboot\" } }",
                1,
            ),
    )
    .unwrap();
    let bad_vars = bad_vars.to_str().unwrap();
    insta::assert_snapshot!(outcome(&rotor, &["rotate", "-i", bad_vars, "--all"], work.path()), @r#"
exit 1
error: [WORK]/bad-vars.yaml:13:66: hosts[0].accounts[0].vars.markr: playbook `site-password` has no variable `markr`: it declares marker; did you mean `marker`?
[WORK]/bad-vars.yaml:22:67: hosts[1].accounts[0].vars.marker: `/tmp/x;reboot` holds `;`, which could carry shell syntax into a command line: a path may use letters, digits, '.', '_', '-' and '/' (path variable of playbook `site-password`)
"#);

    // Nothing reached any host: no new sshd log line, and the lab's password still logs in
    // to every account (checked with the system ssh client, after the logs were read).
    assert_eq!(
        sshd_logs(&lab),
        logs_before,
        "a bad playbook must not reach a host"
    );
    for host in lab.host_names() {
        for account in ["svc_app", "svc_backup"] {
            assert!(
                lab.login_works(host, account, lab.shared_password()),
                "{host}/{account}"
            );
        }
        let marker = lab.exec(host, "test -e /etc/site-rotated && echo touched");
        assert!(
            String::from_utf8_lossy(&marker.stdout).is_empty(),
            "{host}: the set step ran"
        );
    }
}

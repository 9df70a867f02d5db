//! Issue 9, must-show 4: the built-in `app-config-password` playbook on real sshd hosts. A
//! service account's password also lives in an application's config file: a rotation changes
//! the account's password and the file's `password =` line together (every other byte, the
//! owner and the mode kept, nothing left behind), runs the application's reload and proves the
//! password with the application's own check and an SSH login; a failing check puts both back.
//! Passwords are checked with the system `ssh` client, the file with `cat` and `stat` on the
//! host, never with rotor's own code.

use crate::lab::Lab;
use crate::support::{LeakCheck, Rotor, assert_no_leak, json, result_of};

const CONFIG: &str = "/etc/emr/app.conf";
/// The application's scripts live under `/root`, which each lab host has of its own (like
/// `/etc`, `/home` and `/var/log`); `/usr/local` is shared by every host and by the machine,
/// so a script there could not fail on one host only.
const RELOAD: &str = "/root/bin/emr-reload";
const CHECK: &str = "/root/bin/emr-check";
const RELOAD_LOG: &str = "/var/log/emr-reload.log";
/// Where the failing check records what it was fed: the pending password that was rolled back,
/// which the leak check must look for too.
const CHECK_FED: &str = "/var/log/emr-check-fed";

/// The host whose check fails in the second rotation.
const FAILING: &str = "host-002";

/// The config file as installed, with `{password}` for the `password =` line's value. Lines
/// that look like it but must not be touched (a comment, another key starting with
/// `password`, an indented one), trailing blanks, a tab, non-ASCII text and a last line
/// without a newline: all must come back byte for byte.
const CONFIG_TEMPLATE: &str = "# EMR application settings (managed by the application team)\n\
[database]\n\
host = db.emr.internal\n\
user = svc_app\n\
password = {password}\n\
# password = an-old-one-kept-as-a-comment\n\
password_file_mode = 0600\n\
 \tpool = 8   \n\
site = Hôpital Saint-Éloi\n\
\n\
[http]\n\
port = 8443";

/// Appends a line to the reload log each time it runs.
const RELOAD_SCRIPT: &str = "#!/bin/sh\necho reloaded >> /var/log/emr-reload.log\n";

/// Exits 0 only when the password on stdin is the config file's `password =` value.
const CHECK_SCRIPT: &str = r#"#!/bin/sh
IFS= read -r given || exit 1
want=$(sed -n 's/^password *= *//p' /etc/emr/app.conf)
[ -n "$want" ] && [ "$given" = "$want" ]
"#;

/// Records what it was fed and always fails: the application does not accept the password.
const FAILING_CHECK_SCRIPT: &str = "#!/bin/sh\ncat >> /var/log/emr-check-fed\nexit 1\n";

fn config_with(password: &str) -> String {
    CONFIG_TEMPLATE.replace("{password}", password)
}

/// Runs `cmd` on `host` as root and gives its stdout; panics if it fails.
fn on_host(lab: &Lab, host: &str, cmd: &str) -> Vec<u8> {
    let out = lab.exec(host, cmd);
    assert!(
        out.status.success(),
        "{host}: `{cmd}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Installs `content` at `path` on `host` with `owner` (`USER:GROUP`, names of the host's own
/// `/etc/passwd` and `/etc/group`) and `mode`. The content goes through a file in the lab dir
/// (visible inside the host), so no quoting of it is needed.
fn install(lab: &Lab, host: &str, path: &str, content: &str, owner: &str, mode: &str) {
    let name = path.trim_start_matches('/').replace('/', "_");
    let source = lab.dir().join(format!("install-{host}-{name}"));
    std::fs::write(&source, content).unwrap();
    let (user, group) = owner.split_once(':').unwrap();
    on_host(
        lab,
        host,
        &format!(
            "install -D -o {user} -g {group} -m {mode} {} {path}",
            source.display()
        ),
    );
    std::fs::remove_file(source).unwrap();
}

fn config_bytes(lab: &Lab, host: &str) -> Vec<u8> {
    on_host(lab, host, &format!("cat {CONFIG}"))
}

fn owner_and_mode(lab: &Lab, host: &str) -> String {
    String::from_utf8(on_host(lab, host, &format!("stat -c '%U:%G %a' {CONFIG}")))
        .unwrap()
        .trim()
        .to_owned()
}

/// Every name in the config file's directory: a temporary file left behind shows up here.
fn config_dir(lab: &Lab, host: &str) -> String {
    String::from_utf8(on_host(lab, host, "ls -A /etc/emr"))
        .unwrap()
        .trim()
        .to_owned()
}

fn n_reloads(lab: &Lab, host: &str) -> usize {
    String::from_utf8(on_host(
        lab,
        host,
        &format!("cat {RELOAD_LOG} 2>/dev/null || true"),
    ))
    .unwrap()
    .lines()
    .filter(|l| *l == "reloaded")
    .count()
}

/// The lab's inventory with `svc_app` on every host run by `app-config-password` with the
/// test's file and scripts; `svc_backup` stays `linux-password`.
fn app_inventory(lab: &Lab) -> std::path::PathBuf {
    let text = std::fs::read_to_string(lab.inventory_path()).unwrap();
    let old = "{ name: svc_app, playbook: linux-password }";
    assert_eq!(
        text.matches(old).count(),
        lab.host_names().len(),
        "the lab inventory lists svc_app once per host:\n{text}"
    );
    let changed = text.replace(
        old,
        &format!(
            "{{ name: svc_app, playbook: app-config-password, vars: {{ config: {CONFIG}, reload: {RELOAD}, check: {CHECK} }} }}"
        ),
    );
    let path = lab.dir().join("app-config.yaml");
    std::fs::write(&path, changed).unwrap();
    path
}

#[test]
fn app_config_password_changes_the_account_and_the_file_together_and_a_failing_check_restores_both()
{
    let lab = Lab::start(2);
    let rotor = Rotor::init();
    let shared = lab.shared_password();
    let hosts = lab.host_names().to_vec();
    for host in &hosts {
        install(
            &lab,
            host,
            CONFIG,
            &config_with(shared),
            "root:svc_app",
            "0640",
        );
        install(&lab, host, RELOAD, RELOAD_SCRIPT, "root:root", "0755");
        install(&lab, host, CHECK, CHECK_SCRIPT, "root:root", "0755");
        assert_eq!(owner_and_mode(&lab, host), "root:svc_app 640");
        assert_eq!(config_dir(&lab, host), "app.conf");
    }
    let inv = app_inventory(&lab);
    let inv = inv.to_str().unwrap();
    let rotate = || rotor.run(&["rotate", "-i", inv, "--all", "--output", "json"]);
    let host_refs: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let leak_before_first = LeakCheck::before(&lab, &host_refs);

    // 1. Every credential rotates; svc_app's password and its config line change together.
    let first = rotate();
    let report = json(&first);
    assert_eq!(
        first.status.code(),
        Some(0),
        "{report:#}\n{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(report["counts"]["committed"], 4, "{report:#}");
    let mut first_passwords = Vec::new();
    for host in &hosts {
        let cred = format!("{host}/svc_app");
        assert_eq!(result_of(&report, &cred)["result"], "committed");
        assert_eq!(
            result_of(&report, &format!("{host}/svc_backup"))["result"],
            "committed"
        );
        let new = rotor.show(&cred).expect("the vault has the new password");
        assert_ne!(new, shared);
        // The playbook keeps comment and quote characters out of the line it writes.
        assert!(
            !new.contains(['#', ';', '"', '\'']),
            "{cred}: the secret must respect the playbook's exclude"
        );
        assert!(
            lab.login_works(host, "svc_app", &new),
            "{cred}: the new password must log in"
        );
        assert!(
            !lab.login_works(host, "svc_app", shared),
            "{cred}: the shared password must no longer log in"
        );
        let config = config_bytes(&lab, host);
        assert!(
            config == config_with(&new).into_bytes(),
            "{cred}: only the `password =` line may change, to the new password; the file is now:\n{}",
            String::from_utf8_lossy(&config).replace(&new, "<new password>")
        );
        assert_eq!(owner_and_mode(&lab, host), "root:svc_app 640", "{cred}");
        assert_eq!(
            config_dir(&lab, host),
            "app.conf",
            "{cred}: nothing may be left beside the config file"
        );
        assert_eq!(n_reloads(&lab, host), 1, "{cred}: the reload runs once");
        first_passwords.push(new);
    }
    leak_before_first.assert_clean(&lab, &rotor, &[&first]);

    // The heartbeat runs the same proof (the check command and an SSH login): it passes.
    let verify = rotor.run(&["verify", "-i", inv, "--all"]);
    let text = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(verify.status.code(), Some(0), "{text}");
    assert!(text.contains("4 of 4 credentials work"), "{text}");

    // 2. The application rejects the next password on one host: both changes are put back
    // there, and the other host rotates as before.
    install(
        &lab,
        FAILING,
        CHECK,
        FAILING_CHECK_SCRIPT,
        "root:root",
        "0755",
    );
    let failing_idx = hosts.iter().position(|h| h == FAILING).unwrap();
    let previous = &first_passwords[failing_idx];
    let config_before = config_bytes(&lab, FAILING);
    let leak_before_second = LeakCheck::before(&lab, &host_refs);
    let second = rotate();
    let report = json(&second);
    assert_eq!(
        second.status.code(),
        Some(3),
        "{report:#}\n{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let cred = format!("{FAILING}/svc_app");
    let r = result_of(&report, &cred);
    assert_eq!(r["result"], "rolled_back", "{r:#}");
    assert_eq!(r["cause"]["class"], "verify_failed", "{r:#}");
    assert_eq!(
        rotor.show(&cred).as_deref(),
        Some(previous.as_str()),
        "{cred}: the vault keeps the previous password as current"
    );
    assert!(
        lab.login_works(FAILING, "svc_app", previous),
        "{cred}: the previous password must still log in"
    );
    let rejected = String::from_utf8(on_host(&lab, FAILING, &format!("cat {CHECK_FED}")))
        .unwrap()
        .lines()
        .next()
        .expect("the check was fed the new password")
        .to_owned();
    assert_ne!(&rejected, previous);
    assert!(
        !lab.login_works(FAILING, "svc_app", &rejected),
        "{cred}: the rolled-back password must not log in"
    );
    let config_after = config_bytes(&lab, FAILING);
    assert!(
        config_after == config_before,
        "{cred}: the config file must be back byte for byte; it is now:\n{}",
        String::from_utf8_lossy(&config_after)
            .replace(&rejected, "<rolled-back password>")
            .replace(previous.as_str(), "<previous password>")
    );
    assert_eq!(owner_and_mode(&lab, FAILING), "root:svc_app 640", "{cred}");
    assert_eq!(config_dir(&lab, FAILING), "app.conf", "{cred}");
    // Reloaded after the new file was written and again after the old one was put back.
    assert_eq!(n_reloads(&lab, FAILING), 3, "{cred}");
    assert_eq!(
        result_of(&report, &format!("{FAILING}/svc_backup"))["result"],
        "committed"
    );

    for (host_idx, host) in hosts.iter().enumerate().filter(|(_, h)| *h != FAILING) {
        let cred = format!("{host}/svc_app");
        assert_eq!(
            result_of(&report, &cred)["result"],
            "committed",
            "{report:#}"
        );
        let new = rotor.show(&cred).unwrap();
        assert_ne!(new, first_passwords[host_idx]);
        assert!(lab.login_works(host, "svc_app", &new), "{cred}");
        assert!(
            !lab.login_works(host, "svc_app", &first_passwords[host_idx]),
            "{cred}: the previous password must no longer log in"
        );
        assert!(
            config_bytes(&lab, host) == config_with(&new).into_bytes(),
            "{cred}"
        );
        assert_eq!(owner_and_mode(&lab, host), "root:svc_app 640", "{cred}");
        assert_eq!(config_dir(&lab, host), "app.conf", "{cred}");
        assert_eq!(n_reloads(&lab, host), 2, "{cred}");
    }

    // 3. No secret of either run (current, previous, rolled back, the shared one, the saved
    // hashes) in any run's logs or report, nor in clear in the vault.
    let mut seen: Vec<(String, String)> = first_passwords
        .iter()
        .zip(&hosts)
        .map(|(p, h)| (format!("the first password of {h}/svc_app"), p.clone()))
        .collect();
    seen.push((
        format!("the rolled-back password of {cred}"),
        rejected.clone(),
    ));
    let outputs = [&first, &verify, &second];
    assert_no_leak(&seen, &rotor, &outputs);
    leak_before_first.assert_clean(&lab, &rotor, &outputs);
    leak_before_second.assert_clean(&lab, &rotor, &outputs);
}

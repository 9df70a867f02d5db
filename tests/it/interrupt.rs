//! SIGTERM during a run: no new host or account starts, the host in flight finishes (here: it
//! hangs and its step deadline fires), the report is still printed, and the exit code says
//! the run was partial. And Ctrl-C at `rotor enroll`'s no-echo prompt.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::lab::{Fault, Lab};
use crate::support::{Rotor, creds, json, result_of};

/// The address of a lab host, from the lab's hosts.tsv (name, address, pid).
fn address(lab: &Lab, host: &str) -> String {
    let tsv = std::fs::read_to_string(lab.dir().join("hosts.tsv")).unwrap();
    tsv.lines()
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .find(|f| f[0] == host)
        .map(|f| f[1].to_owned())
        .unwrap()
}

#[test]
fn sigterm_starts_nothing_new_finishes_what_is_in_flight_and_still_reports() {
    let lab = Lab::start(4);
    let rotor = Rotor::init();
    // host-001 hangs (TCP connects, no banner), so it is surely in flight when SIGTERM comes.
    lab.fault("host-001", Fault::Stop);
    let inv = lab.inventory_path();
    let child = rotor
        .cmd(&[
            "rotate",
            "-i",
            inv.to_str().unwrap(),
            "--all",
            "--concurrency",
            "1",
            "--step-timeout",
            "3",
            "--output",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until rotor's connection to host-001 is established, then interrupt.
    let dst = format!("dst {}:22", address(&lab, "host-001"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ss = Command::new("ss")
            .args(["-Htn", "state", "established", &dst])
            .output()
            .unwrap();
        if !ss.stdout.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rotor never connected to host-001"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    lab.fault("host-001", Fault::Cont);

    let report = json(&out);
    assert_eq!(out.status.code(), Some(3), "{report:#}");
    for account in ["svc_app", "svc_backup"] {
        let r = result_of(&report, &format!("host-001/{account}"));
        assert_eq!(r["result"], "not_changed", "{r:#}");
        assert_eq!(r["cause"]["class"], "timed_out", "{r:#}");
    }
    for (host, account) in creds(&lab).into_iter().filter(|(h, _)| h != "host-001") {
        let r = result_of(&report, &format!("{host}/{account}"));
        assert_eq!(r["result"], "skipped", "{r:#}");
        assert_eq!(r["reason"], "interrupted", "{r:#}");
        assert!(
            lab.login_works(&host, &account, lab.shared_password()),
            "{host}/{account} untouched"
        );
    }
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stopping: no new host or account starts")
    );
}

/// Ctrl-C at `rotor enroll`'s prompt on a real terminal (a pty, driven by a small Python
/// program that waits for the prompt before typing): rotor exits 130 having enrolled
/// nothing, and the terminal echoes again (rpassword turned echo off to read the secret).
#[test]
fn ctrl_c_at_the_enroll_prompt_enrolls_nothing_and_gives_the_terminal_back() {
    const DRIVER: &str = r#"
import os, pty, select, subprocess, sys, termios, time
rotor, cred = sys.argv[1], sys.argv[2]
master, slave = pty.openpty()
child = subprocess.Popen([rotor, "enroll", cred], stdin=slave, stdout=slave, stderr=slave)
seen, deadline = b"", time.monotonic() + 30
# Type only once the prompt is shown and the terminal no longer echoes (rpassword reads),
# as a person would; before that, the terminal would still treat Ctrl-C itself.
def reading():
    lflag = termios.tcgetattr(slave)[3]
    return b"not echoed" in seen and not lflag & termios.ECHO
while not reading():
    if time.monotonic() > deadline:
        sys.exit(f"no prompt with echo off; the terminal showed {seen!r}")
    ready, _, _ = select.select([master], [], [], 0.05)
    if ready:
        seen += os.read(master, 4096)
os.write(master, b"typed-but-abandoned\x03")
rc = child.wait(timeout=30)
while select.select([master], [], [], 0.2)[0]:
    seen += os.read(master, 4096)
echo = bool(termios.tcgetattr(slave)[3] & termios.ECHO)
print(f"rc={rc} echo={echo}")
print(seen.decode(errors="replace"))
"#;
    let rotor = Rotor::init();
    let out = Command::new("python3")
        .args(["-c", DRIVER, env!("CARGO_BIN_EXE_rotor"), "h1/svc_app"])
        .env("ROTOR_DATA_DIR", rotor.vault_dir())
        .output()
        .expect("run python3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("rc=130 echo=True"), "{text}");
    assert!(text.contains("nothing was enrolled"), "{text}");
    assert!(!text.contains("typed-but-abandoned"), "{text}");
    assert_eq!(rotor.show("h1/svc_app"), None);
}

/// The reader of rotor's output goes away early (`rotor inventory check -i big.yaml | head`):
/// rotor stops writing without a panic and exits 141, as a process killed by SIGPIPE would.
/// The output (3,000 host lines) is larger than a pipe holds, so rotor is still writing when
/// the pipe closes.
#[test]
fn a_reader_that_goes_away_early_ends_the_output_without_a_panic() {
    use std::io::{BufRead, BufReader};
    let work = tempfile::tempdir().unwrap();
    let inv = work.path().join("big.yaml");
    let mut yaml = String::from("version: 1\nhosts:\n");
    for i in 1..=3000 {
        yaml.push_str(&format!(
            "  - name: host-{i:04}\n    address: 10.0.{}.{}\n    host_key: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f\"\n    connect: {{ user: root, key: /etc/rotor/admin_ed25519 }}\n    accounts: [{{ name: svc_app, playbook: linux-password }}]\n",
            i / 250,
            i % 250 + 1
        ));
    }
    std::fs::write(&inv, yaml).unwrap();
    let rotor = Rotor::without_vault();
    let mut child = rotor
        .cmd(&["inventory", "check", "-i", inv.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is dropped here: the pipe closes with most of the output unread.
    assert!(first.contains("3000 hosts"), "{first}");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

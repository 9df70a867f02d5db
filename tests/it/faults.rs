//! Issue 3's fault classes against real sshd hosts, one test each: the faulty host's
//! credentials get the expected result and cause class in the JSON report, the old password
//! still works where the target was touched (checked with the system `ssh` client), the other
//! hosts commit, and the exit code says "partial".
//!
//! "The host refuses the new password" (`Fault::ChpasswdFails`, `rolled_back` / `refused`) is
//! covered in `rotate.rs`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::lab::{Fault, Lab};
use crate::support::{LeakCheck, Rotor, Run, creds, result_of};

/// Exit code of a run where some credentials were not rotated or were rolled back.
const PARTIAL: i32 = 3;

/// The host every test breaks; host-001 and host-003 stay healthy.
const FAULTY: &str = "host-002";

const ACCOUNTS: [&str; 2] = ["svc_app", "svc_backup"];

/// Asserts `cred` ended with `result` and cause `class`; returns the cause's message.
fn assert_result(report: &serde_json::Value, cred: &str, result: &str, class: &str) -> String {
    let r = result_of(report, cred);
    assert_eq!(r["result"], result, "{cred}: {r:#}");
    assert_eq!(r["cause"]["class"], class, "{cred}: {r:#}");
    r["cause"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Asserts that every credential outside `faulty` was committed and that its new password,
/// read back from the vault, logs in.
fn assert_others_committed(lab: &Lab, rotor: &Rotor, report: &serde_json::Value, faulty: &str) {
    for (host, account) in creds(lab).into_iter().filter(|(h, _)| h != faulty) {
        let cred = format!("{host}/{account}");
        assert_eq!(result_of(report, &cred)["result"], "committed", "{cred}");
        assert_committed_works(lab, rotor, &host, &account);
    }
}

fn assert_committed_works(lab: &Lab, rotor: &Rotor, host: &str, account: &str) {
    let secret = rotor
        .show(&format!("{host}/{account}"))
        .unwrap_or_else(|| panic!("{host}/{account}: the vault must hold the new secret"));
    assert!(
        lab.login_works(host, account, &secret),
        "{host}/{account}: the committed password must log in"
    );
}

/// Asserts the shared (pre-rotation) password still opens `account` on `host`.
fn assert_old_password_works(lab: &Lab, host: &str, account: &str) {
    assert!(
        lab.login_works(host, account, lab.shared_password()),
        "{host}/{account}: the old password must still work"
    );
}

/// Runs `rotor rotate --all --output json` and checks the exit code is "partial".
fn rotate_partial(lab: &Lab, rotor: &Rotor, extra: &[&str]) -> (Run, serde_json::Value) {
    let run = rotor.rotate_all_json(lab, extra);
    let report = run.report();
    assert_eq!(run.code(), Some(PARTIAL), "{report:#}\n{}", run.stderr());
    (run, report)
}

#[test]
fn host_down_is_unreachable_and_the_others_complete() {
    let lab = Lab::start(3);
    let rotor = Rotor::init();
    lab.fault(FAULTY, Fault::Kill);

    let (_, report) = rotate_partial(&lab, &rotor, &[]);
    for account in ACCOUNTS {
        assert_result(
            &report,
            &format!("{FAULTY}/{account}"),
            "not_changed",
            "unreachable",
        );
    }
    assert_others_committed(&lab, &rotor, &report, FAULTY);

    // Back up (same /etc): nothing was changed while it was down.
    lab.fault(FAULTY, Fault::Start);
    for account in ACCOUNTS {
        assert_old_password_works(&lab, FAULTY, account);
    }
}

#[test]
fn hanging_host_times_out_in_bounded_time_and_the_others_complete() {
    let lab = Lab::start(3);
    let rotor = Rotor::init();
    // TCP still connects (the kernel accepts), but no SSH banner ever comes. `lab down`
    // continues a stopped sshd before killing it, so a failed assertion still cleans up.
    lab.fault(FAULTY, Fault::Stop);

    let (run, report) = rotate_partial(&lab, &rotor, &["--step-timeout", "2"]);
    assert!(
        run.elapsed < Duration::from_secs(30),
        "a hanging host must not hold the run: it took {:?}",
        run.elapsed
    );
    for account in ACCOUNTS {
        assert_result(
            &report,
            &format!("{FAULTY}/{account}"),
            "not_changed",
            "timed_out",
        );
    }
    assert_others_committed(&lab, &rotor, &report, FAULTY);

    lab.fault(FAULTY, Fault::Cont);
    for account in ACCOUNTS {
        assert_old_password_works(&lab, FAULTY, account);
    }
}

#[test]
fn changed_host_key_is_refused_with_both_fingerprints() {
    let lab = Lab::start(3);
    let rotor = Rotor::init();
    // The inventory keeps pinning the old key: a reinstalled host, or a man in the middle.
    lab.fault(FAULTY, Fault::Rekey);

    let (_, report) = rotate_partial(&lab, &rotor, &[]);
    for account in ACCOUNTS {
        let msg = assert_result(
            &report,
            &format!("{FAULTY}/{account}"),
            "not_changed",
            "host_key_mismatch",
        );
        assert_eq!(
            msg.matches("SHA256:").count(),
            2,
            "the pinned and the presented fingerprint: {msg}"
        );
    }
    assert_others_committed(&lab, &rotor, &report, FAULTY);

    lab.trust_new_host_key(FAULTY);
    for account in ACCOUNTS {
        assert_old_password_works(&lab, FAULTY, account);
    }
}

#[test]
fn rejected_connect_identity_is_reported_and_the_others_complete() {
    let lab = Lab::start(3);
    let rotor = Rotor::init();
    // The admin key is authorized only through /etc/ssh/authorized_keys/root (the lab's
    // `AuthorizedKeysFile`); without it, root's public-key login is refused.
    let out = lab.exec(FAULTY, "rm /etc/ssh/authorized_keys/root");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (_, report) = rotate_partial(&lab, &rotor, &[]);
    for account in ACCOUNTS {
        assert_result(
            &report,
            &format!("{FAULTY}/{account}"),
            "not_changed",
            "connect_auth_rejected",
        );
        assert_old_password_works(&lab, FAULTY, account);
    }
    assert_others_committed(&lab, &rotor, &report, FAULTY);
}

#[test]
fn missing_account_is_reported_and_the_hosts_other_account_commits() {
    let lab = Lab::start(3);
    let rotor = Rotor::init();
    let out = lab.exec(FAULTY, "userdel svc_backup");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (_, report) = rotate_partial(&lab, &rotor, &[]);
    assert_result(
        &report,
        &format!("{FAULTY}/svc_backup"),
        "not_changed",
        "account_missing",
    );
    assert_eq!(
        result_of(&report, &format!("{FAULTY}/svc_app"))["result"],
        "committed"
    );
    assert_committed_works(&lab, &rotor, FAULTY, "svc_app");
    assert_others_committed(&lab, &rotor, &report, FAULTY);
}

#[test]
fn host_that_claims_success_but_changes_nothing_fails_verification_and_rolls_back() {
    let lab = Lab::start(3);
    let rotor = Rotor::init();
    lab.fault(FAULTY, Fault::ChpasswdLies);
    let leaks = LeakCheck::before(&lab, &[FAULTY]);

    let (run, report) = rotate_partial(&lab, &rotor, &[]);
    for account in ACCOUNTS {
        let cred = format!("{FAULTY}/{account}");
        assert_result(&report, &cred, "rolled_back", "verify_failed");
        assert_old_password_works(&lab, FAULTY, account);
        assert_eq!(
            rotor.show(&cred),
            None,
            "{cred}: a rolled-back secret must not become current"
        );
    }
    assert_others_committed(&lab, &rotor, &report, FAULTY);
    let status = rotor.run(&["status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(!status.contains("OPEN"), "no rotation left open: {status}");
    leaks.assert_clean(&lab, &rotor, &[&run.output]);
}

/// A tmpfs mounted for one test; unmounted when dropped (also while the test panics).
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=700")])
            .arg("rotor-test-vault")
            .arg(path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount a tmpfs on {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            path: path.to_owned(),
        }
    }

    /// Writes zeros to `name` until the filesystem is full.
    fn fill(&self, name: &str) {
        let mut file = std::fs::File::create(self.path.join(name)).expect("create the filler");
        let chunk = vec![0u8; 4096];
        loop {
            match file.write_all(&chunk) {
                Ok(()) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling {}: {e}", self.path.display()),
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Must not panic (it runs during unwinding): report only.
        let unmounted = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success())
            || Command::new("umount")
                .arg("--lazy")
                .arg(&self.path)
                .status()
                .is_ok_and(|s| s.success());
        if !unmounted {
            eprintln!(
                "could not unmount the test tmpfs on {}",
                self.path.display()
            );
        }
    }
}

/// The vault's filesystem is full before the run: rotor cannot open the vault for writing
/// (SQLite cannot create its WAL index), says so with the directory and the fix, exits 1, and
/// pushes nothing.
#[test]
fn full_vault_disk_at_start_is_a_clear_error_and_pushes_nothing() {
    let lab = Lab::start(2);
    let rotor = Rotor::without_vault();
    // Declared after `rotor`, so it is unmounted before the temp dir is removed.
    let fs = Tmpfs::mount(rotor.data.path(), "1m");
    rotor.init_vault();
    fs.fill("filler");

    let run = rotor.rotate_all_json(&lab, &[]);
    assert_eq!(run.code(), Some(1));
    let err = run.stderr();
    assert!(
        err.contains("cannot open the vault in")
            && err.contains("disk holding the data directory is full"),
        "{err}"
    );
    for (host, account) in creds(&lab) {
        assert_old_password_works(&lab, &host, &account);
    }
    std::fs::remove_file(rotor.data.path().join("filler")).unwrap();
    let status = rotor.run(&["status"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
}

/// The vault's filesystem fills up after the run began (the lab-only hold hook stops the run
/// right after it started, the test fills the disk, then lets it go): nothing is pushed, and
/// every credential is reported `not_changed` with class `store`.
#[test]
fn vault_that_cannot_be_written_pushes_nothing_and_reports_every_credential() {
    let lab = Lab::start(3);
    let rotor = Rotor::without_vault();
    let fs = Tmpfs::mount(rotor.data.path(), "1m");
    rotor.init_vault();
    let gate = tempfile::tempdir().unwrap();
    let go = gate.path().join("go");
    let waiting = gate.path().join("go.waiting");
    let inv = lab.inventory_path();
    let child = rotor
        .cmd(&[
            "rotate",
            "-i",
            inv.to_str().unwrap(),
            "--all",
            "--output",
            "json",
        ])
        .env("ROTOR_LAB_HOLD_AFTER_BEGIN", &go)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !waiting.exists() {
        assert!(std::time::Instant::now() < deadline, "the run never began");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    fs.fill("filler");
    std::fs::write(&go, b"").unwrap();
    let output = child.wait_with_output().unwrap();

    for (host, account) in creds(&lab) {
        assert_old_password_works(&lab, &host, &account);
    }
    let report = crate::support::json(&output);
    assert_eq!(output.status.code(), Some(PARTIAL), "{report:#}");
    assert_eq!(report["counts"]["not_changed"], 6, "{report:#}");
    for (host, account) in creds(&lab) {
        assert_result(
            &report,
            &format!("{host}/{account}"),
            "not_changed",
            "store",
        );
    }
    // With room again, the vault is intact and holds no open rotation.
    std::fs::remove_file(rotor.data.path().join("filler")).unwrap();
    let status = rotor.run(&["status"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(!text.contains("OPEN"), "no rotation left open: {text}");
}

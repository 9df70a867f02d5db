//! Process hardening (issue 8, item 5): a running rotor can be neither dumped to a core file
//! nor traced by another process of the same user, whatever limits it was started with.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The uid rotor runs as here: a process of an unprivileged user shows whether it is
/// dumpable in the owner of its /proc files (root when it is not: the kernel hides it from
/// its own user), which a root process cannot show.
const NOBODY: &str = "65534";

/// Started with core dumps allowed (`prlimit --core=unlimited`), as nobody, `rotor enroll`
/// waits for the secret on stdin: by then it has turned dumps off (soft and hard limit 0)
/// and made itself undumpable (its /proc files belong to root, so same-user ptrace and
/// /proc/PID/mem are refused).
#[test]
fn a_running_rotor_cannot_be_dumped_or_traced() {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new("prlimit")
        .args(["--core=unlimited:unlimited", "--", "setpriv"])
        .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_rotor"))
        .args(["enroll", "host-001/svc_app"])
        .env("ROTOR_DATA_DIR", data.path().join("vault"))
        .env("ROTOR_LOG", "off")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let proc_dir = format!("/proc/{pid}");
    // Waiting on stdin: rotor's main has run (prlimit and setpriv exec into it).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let cmdline = std::fs::read(format!("{proc_dir}/cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("{proc_dir}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
        if cmdline.starts_with(env!("CARGO_BIN_EXE_rotor").as_bytes()) && state == Some("S") {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "rotor exited before reading stdin"
        );
        assert!(Instant::now() < deadline, "rotor never waited on stdin");
        std::thread::sleep(Duration::from_millis(20));
    }
    let limits = std::fs::read_to_string(format!("{proc_dir}/limits")).unwrap();
    let status = std::fs::read_to_string(format!("{proc_dir}/status")).unwrap();
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(format!("{proc_dir}/status"))
        .unwrap()
        .uid();
    drop(child.stdin.take());
    child.kill().unwrap();
    child.wait().unwrap();

    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid_line.contains(NOBODY), "not run as nobody: {uid_line}");
    let core: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap()
        .split_whitespace()
        .collect();
    // "Max core file size  SOFT  HARD  bytes"
    assert_eq!(core[4..6], ["0", "0"], "{limits}");
    assert_eq!(
        owner, 0,
        "rotor is still dumpable (its /proc files belong to uid {owner})"
    );
}

/// The audit log names the OS user of the real uid, never `$USER` (which anyone can set); a
/// `SUDO_USER` set by hand (rotor's parent is not sudo) is recorded beside it as claimed.
#[test]
fn the_audit_log_names_the_real_user_not_user() {
    let rotor = crate::support::Rotor::init();
    for (sudo_user, expect) in [
        (None, "root"),
        (
            Some("bob"),
            "root (SUDO_USER=bob, as claimed: the parent is not sudo)",
        ),
    ] {
        let mut cmd = rotor.cmd(&["enroll", "h1/svc"]);
        cmd.env("USER", "mallory").env_remove("SUDO_USER");
        if let Some(s) = sudo_user {
            cmd.env("SUDO_USER", s);
        }
        let out = crate::support::run_with_stdin(cmd, "an-enrolled-secret-1\n");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let db = rusqlite::Connection::open(rotor.vault_dir().join("rotor.db")).unwrap();
        let actor: String = db
            .query_row(
                "SELECT actor FROM audit WHERE action = 'enroll' ORDER BY seq DESC LIMIT 1",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(actor, expect);
    }
}

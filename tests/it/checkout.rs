//! Break-glass checkout against a real sshd host, checked with the system `ssh` client: dual
//! control between two OS users who run rotor through sudo as the vault's owner (the README's
//! shared rotor machine; `scripts/setup` creates `rotor-lab-vault`, `rotor-lab-alice` and
//! `rotor-lab-bob` and the sudoers line), exclusivity, `rotate` skipping a checked-out
//! credential, check-in rotating it, and an expiry that passed while no rotor ran, handled by
//! the next command of any kind.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::lab::Lab;
use crate::support::{Leaks, Rotor, json};

const VAULT_USER: &str = "rotor-lab-vault";
const ALICE: &str = "rotor-lab-alice";
const BOB: &str = "rotor-lab-bob";
const CRED: &str = "host-001/svc_app";

/// A shared rotor machine: a directory owned by the vault's service account holding the
/// vault, the inventory and the admin key; people reach it only through sudo.
struct Shared {
    dir: tempfile::TempDir,
}

impl Shared {
    fn new(lab: &Lab) -> Shared {
        let dir = tempfile::Builder::new()
            .prefix("rotor-shared-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let key = d.join("admin_ed25519");
        std::fs::copy(lab.dir().join("admin_ed25519"), &key).unwrap();
        let inventory = std::fs::read_to_string(lab.inventory_path())
            .unwrap()
            .replace(lab.dir().to_str().unwrap(), d.to_str().unwrap());
        std::fs::write(d.join("inventory.yaml"), inventory).unwrap();
        let chown = Command::new("chown")
            .args(["-R", &format!("{VAULT_USER}:")])
            .arg(d)
            .output()
            .unwrap();
        assert!(chown.status.success(), "{chown:?}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
        let shared = Shared { dir };
        let out = shared.as_vault_owner(&["init"], &[]);
        assert!(out.status.success(), "{out:?}");
        shared
    }

    fn inventory(&self) -> PathBuf {
        self.dir.path().join("inventory.yaml")
    }

    fn vault(&self) -> PathBuf {
        self.dir.path().join("vault")
    }

    fn rotor_args(&self, args: &[&str]) -> Vec<String> {
        let mut all = vec![
            env!("CARGO_BIN_EXE_rotor").to_owned(),
            "--data-dir".to_owned(),
            self.vault().to_str().unwrap().to_owned(),
        ];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        all
    }

    /// `person` runs `sudo -u rotor-lab-vault rotor ARGS`, as on a shared rotor machine.
    fn as_person(&self, person: &str, args: &[&str]) -> Output {
        Command::new("runuser")
            .args(["-u", person, "--", "sudo", "-n", "-u", VAULT_USER, "--"])
            .args(self.rotor_args(args))
            .current_dir("/")
            .output()
            .unwrap()
    }

    /// The vault's owner runs rotor directly, with `env` set (e.g. a hand-made SUDO_USER).
    fn as_vault_owner(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", VAULT_USER, "--"])
            .args(self.rotor_args(args))
            .current_dir("/")
            .env_remove("SUDO_USER")
            .env_remove("SUDO_UID");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        out.status,
        stderr(out)
    );
}

/// The audit rows as text (actor, action, cred, detail), for checks and leak searches.
fn audit_rows(vault: &Path) -> Vec<String> {
    let db = rusqlite::Connection::open(vault.join("rotor.db")).unwrap();
    let mut stmt = db
        .prepare("SELECT actor, action, COALESCE(cred, ''), detail FROM audit ORDER BY seq")
        .unwrap();
    stmt.query_map([], |row| {
        Ok(format!(
            "{} | {} | {} | {}",
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

#[test]
fn a_checkout_with_dual_control_is_exclusive_skipped_by_rotate_and_rotated_at_checkin() {
    let lab = Lab::start(1);
    let shared = Shared::new(&lab);
    let inv = shared.inventory();
    let inv = inv.to_str().unwrap();
    // A first rotation gives every account its own secret in the vault.
    ok(
        &shared.as_person(ALICE, &["rotate", "-i", inv, "--all"]),
        "first rotation",
    );

    // Approval is required by default; the requester names the vendor's engineer.
    let out = shared.as_person(
        ALICE,
        &[
            "checkout",
            CRED,
            "-i",
            inv,
            "--ticket",
            "INC-4711",
            "--reason",
            "vendor maintenance of the EMR database",
            "--for",
            "kato-vendor",
            "--ttl",
            "1h",
        ],
    );
    ok(&out, "checkout request");
    let id = stdout(&out).trim().to_owned();
    assert!(stderr(&out).contains("needs approval"), "{}", stderr(&out));

    // The requester cannot approve it, nor can a hand-made SUDO_USER make the vault's owner
    // into the requester to claim it.
    let own = shared.as_person(ALICE, &["approve", &id]);
    assert_eq!(own.status.code(), Some(1), "{own:?}");
    assert!(stderr(&own).contains("cannot approve"), "{}", stderr(&own));
    let early = shared.as_person(ALICE, &["checkout", "--claim", &id]);
    assert!(stderr(&early).contains("not approved yet"), "{early:?}");

    // Nobody approves as the vault's own account: not with a SUDO_USER set by hand (rotor
    // cannot tell who that is), not without one (a request made through sudo needs an
    // approval through sudo).
    let forged = shared.as_vault_owner(&["approve", &id], &[("SUDO_USER", BOB)]);
    assert_eq!(forged.status.code(), Some(1), "{forged:?}");
    assert!(
        stderr(&forged).contains("cannot tell who you are"),
        "{}",
        stderr(&forged)
    );
    let owner = shared.as_vault_owner(&["approve", &id], &[]);
    assert_eq!(owner.status.code(), Some(1), "{owner:?}");
    assert!(
        stderr(&owner).contains("approved by a person through sudo"),
        "{}",
        stderr(&owner)
    );

    // A second person approves, through sudo.
    ok(&shared.as_person(BOB, &["approve", &id]), "approval by bob");
    let forged = shared.as_vault_owner(&["checkout", "--claim", &id], &[("SUDO_USER", ALICE)]);
    assert_eq!(forged.status.code(), Some(1), "{forged:?}");
    assert!(
        stderr(&forged).contains("cannot tell who you are"),
        "{}",
        stderr(&forged)
    );

    // The requester claims it: the secret, once; it logs in as the account.
    let claim = shared.as_person(ALICE, &["checkout", "--claim", &id]);
    ok(&claim, "claim");
    let secret = stdout(&claim).trim_end_matches('\n').to_owned();
    assert!(lab.login_works("host-001", "svc_app", &secret));
    let again = shared.as_person(ALICE, &["checkout", "--claim", &id]);
    assert!(stderr(&again).contains("already claimed"), "{again:?}");

    // Exclusive: a second checkout names the holder, the ticket and the end time.
    let second = shared.as_person(
        BOB,
        &[
            "checkout", CRED, "-i", inv, "--ticket", "INC-9", "--reason", "other",
        ],
    );
    assert_eq!(second.status.code(), Some(1), "{second:?}");
    let said = stderr(&second);
    assert!(said.contains("already checked out"), "{said}");
    assert!(
        said.contains(&format!(
            "{ALICE} (for kato-vendor), ticket INC-4711, until "
        )),
        "{said}"
    );

    // `rotate --all` skips it and says so; the host's other account rotates.
    let run = shared.as_person(ALICE, &["rotate", "-i", inv, "--all", "--output", "json"]);
    let report = json(&run);
    let result = crate::support::result_of(&report, CRED);
    assert_eq!(result["result"], "skipped", "{report:#}");
    assert!(
        result["detail"]
            .as_str()
            .unwrap()
            .contains("checked out (checkout"),
        "{report:#}"
    );
    assert_eq!(
        crate::support::result_of(&report, "host-001/svc_backup")["result"],
        "committed"
    );
    assert!(lab.login_works("host-001", "svc_app", &secret));

    // Another person's read is an override, said and recorded; the holder's is recorded.
    let peek = shared.as_person(BOB, &["show", CRED, "--reason", "audit check"]);
    ok(&peek, "override read");
    assert!(
        stderr(&peek).contains("recorded as an override"),
        "{}",
        stderr(&peek)
    );
    ok(
        &shared.as_person(ALICE, &["show", CRED, "--reason", "lost it"]),
        "holder read",
    );

    // Check-in rotates: the checked-out secret is rejected, the vault's new one works.
    let checkin = shared.as_person(ALICE, &["checkin", &id, "--output", "json"]);
    ok(&checkin, "checkin");
    let checkin_rotation = crate::support::result_of(&json(&checkin), CRED)["rotation"].clone();
    assert!(checkin_rotation.as_i64().is_some(), "{checkin:?}");
    assert!(!lab.login_works("host-001", "svc_app", &secret));
    let shown = shared.as_person(ALICE, &["show", CRED, "--reason", "after checkin"]);
    let new = stdout(&shown).trim_end_matches('\n').to_owned();
    assert_ne!(new, secret);
    assert!(lab.login_works("host-001", "svc_app", &new));

    let list = shared.as_person(ALICE, &["checkouts", "--all", "--output", "json"]);
    let doc = json(&list);
    let c = &doc["checkouts"][0];
    assert_eq!(c["state"], "closed", "{doc:#}");
    assert_eq!(c["end"], "checked_in");
    assert_eq!(c["requester"], ALICE);
    assert!(
        c["approved_by"].as_str().unwrap().starts_with(BOB),
        "{doc:#}"
    );
    assert_eq!(c["rotation"], checkin_rotation, "{doc:#}");
    let text = shared.as_person(ALICE, &["checkouts", "--all"]);

    // The audit trail names the people sudo ran rotor for, and the forged claim as claimed.
    let rows = audit_rows(&shared.vault());
    let has = |needle: &str| rows.iter().any(|r| r.contains(needle));
    assert!(
        has(&format!(
            "{ALICE} (via sudo as {VAULT_USER}) | checkout_requested"
        )),
        "{rows:#?}"
    );
    assert!(
        has(&format!(
            "{BOB} (via sudo as {VAULT_USER}) | checkout_approved"
        )),
        "{rows:#?}"
    );
    assert!(
        has(&format!("{BOB} (via sudo as {VAULT_USER}) | show_override")),
        "{rows:#?}"
    );
    assert!(has("| show_by_holder |"), "{rows:#?}");
    assert!(has("| check_in |"), "{rows:#?}");
    assert!(has("| checkout_closed |"), "{rows:#?}");

    // The responsible person's review of the ticket: every step, with its person.
    let review = shared.as_person(
        BOB,
        &["audit", "log", "--ticket", "INC-4711", "--output", "json"],
    );
    ok(&review, "audit log --ticket");
    let events: Vec<serde_json::Value> = stdout(&review)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    for kind in [
        "checkout_requested",
        "checkout_approved",
        "checkout_granted",
        "show_override",
        "show_by_holder",
        "check_in",
        "checkout_closed",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing: {kinds:?}");
    }
    let by_actor = shared.as_person(BOB, &["audit", "log", "--actor", BOB, "--output", "json"]);
    assert!(
        stdout(&by_actor).contains("checkout_approved"),
        "{by_actor:?}"
    );
    assert!(
        !stdout(&by_actor).contains("checkout_requested"),
        "{by_actor:?}"
    );

    // No secret in the audit log or the checkouts listings.
    let leaks = Leaks::new([
        ("the checked-out secret", secret.as_str()),
        ("the new secret", new.as_str()),
    ]);
    leaks.assert_absent("the audit log", rows.join("\n").as_bytes());
    leaks.assert_absent("rotor checkouts --output json", &list.stdout);
    leaks.assert_absent("rotor checkouts", &text.stdout);
    leaks.assert_absent("rotor checkouts's stderr", &text.stderr);
    leaks.assert_absent("rotor audit log --output json", &review.stdout);
}

/// The system log as rotor sees it (`ROTOR_SYSLOG_SOCKET`): a thread receives every
/// datagram while the test runs (the kernel queues only 10 unread ones).
struct Syslog {
    path: PathBuf,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    _dir: tempfile::TempDir,
}

impl Syslog {
    fn new() -> Syslog {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_millis(50)))
            .unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (l, st) = (lines.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while !st.load(Ordering::SeqCst) {
                if let Ok(n) = socket.recv(&mut buf) {
                    l.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
        });
        Syslog {
            path,
            lines,
            stop,
            _dir: dir,
        }
    }

    fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

impl Drop for Syslog {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn an_expiry_that_passed_while_no_rotor_ran_is_rotated_by_the_next_command() {
    let lab = Lab::start(1);
    let rotor = Rotor::init();
    let syslog = Syslog::new();
    let run = |args: &[&str], clock_ahead_secs: u64| {
        rotor
            .cmd(args)
            .env("ROTOR_SYSLOG_SOCKET", &syslog.path)
            .env("ROTOR_LAB_CLOCK_OFFSET_SECS", clock_ahead_secs.to_string())
            .output()
            .unwrap()
    };
    // This inventory's policy grants checkouts without approval, for at most 2 hours.
    let text = std::fs::read_to_string(lab.inventory_path()).unwrap();
    let inv = lab.dir().join("no-approval.yaml");
    let policy = "  default: { length: 24, classes: [lower, upper, digit, symbol], checkout: { approval: none, max_ttl: 2h, default_ttl: 30m } }";
    let edited = text.replace(
        "  default: { length: 24, classes: [lower, upper, digit, symbol] }",
        policy,
    );
    assert_ne!(
        edited, text,
        "the lab inventory's default policy line changed"
    );
    std::fs::write(&inv, edited).unwrap();
    let inv = inv.to_str().unwrap();
    ok(&run(&["rotate", "-i", inv, "--all"], 0), "first rotation");
    let first = rotor.show(CRED).unwrap();

    let too_long = run(
        &[
            "checkout", CRED, "-i", inv, "--ticket", "T-1", "--reason", "r", "--ttl", "3h",
        ],
        0,
    );
    assert_eq!(too_long.status.code(), Some(1));
    assert!(stderr(&too_long).contains("max_ttl 2h"), "{too_long:?}");

    let out = run(
        &[
            "checkout",
            CRED,
            "-i",
            inv,
            "--ticket",
            "T-2",
            "--reason",
            "night work",
            "--ttl",
            "10m",
        ],
        0,
    );
    ok(&out, "checkout without approval");
    let secret = stdout(&out).trim_end_matches('\n').to_owned();
    assert_eq!(secret, first);
    assert!(lab.login_works("host-001", "svc_app", &secret));

    // Before the deadline nothing happens.
    ok(&run(&["status"], 0), "status before the deadline");
    assert!(lab.login_works("host-001", "svc_app", &secret));

    // Past it (the lab clock 11 minutes ahead), with the host refusing password changes:
    // the next command tries, the rotation rolls back, the checkout stays `expired, rotation
    // failed`, and the command itself still runs.
    lab.fault("host-001", crate::lab::Fault::ChpasswdFails);
    let failed = run(&["status"], 660);
    ok(&failed, "status while the rotation fails");
    assert!(
        stderr(&failed).contains("ended (expired)"),
        "{}",
        stderr(&failed)
    );
    assert!(
        stderr(&failed).contains("the next rotor command tries again"),
        "{}",
        stderr(&failed)
    );
    assert!(
        stdout(&failed).contains(CRED),
        "status still printed: {failed:?}"
    );
    let listed = run(&["checkouts"], 660);
    assert!(
        stdout(&listed).contains("expired, rotation failed"),
        "{listed:?}"
    );

    // The host is fixed (restarted without the fault): the next command, here
    // `enroll` of another credential, rotates it first, and the checked-out secret is
    // rejected. (`audit` commands alone leave it: the review reads the log as it is.)
    lab.fault("host-001", crate::lab::Fault::Kill);
    lab.fault("host-001", crate::lab::Fault::Start);
    let audit_first = run(&["audit", "log", "--output", "json"], 660);
    ok(&audit_first, "audit log");
    assert!(
        !stderr(&audit_first).contains("was rotated"),
        "{audit_first:?}"
    );
    let mut enroll = rotor.cmd(&["enroll", "elsewhere/other"]);
    enroll
        .env("ROTOR_SYSLOG_SOCKET", &syslog.path)
        .env("ROTOR_LAB_CLOCK_OFFSET_SECS", "660");
    let late = crate::support::run_with_stdin(enroll, "an-unrelated-secret-77\n");
    ok(&late, "enroll after the fix");
    assert!(stderr(&late).contains("was rotated"), "{}", stderr(&late));
    assert!(!lab.login_works("host-001", "svc_app", &secret));
    let new = rotor.show(CRED).unwrap();
    assert_ne!(new, secret);
    assert!(lab.login_works("host-001", "svc_app", &new));

    let list = run(&["checkouts", "--all", "--output", "json"], 660);
    let doc = json(&list);
    assert_eq!(doc["checkouts"][0]["state"], "closed", "{doc:#}");
    assert_eq!(doc["checkouts"][0]["end"], "expired", "{doc:#}");
    let rows = audit_rows(&rotor.vault_dir());
    for event in [
        "| checkout_expired |",
        "| checkout_rotation_failed |",
        "| checkout_closed |",
        "| roll_back |",
        "| commit |",
    ] {
        assert!(rows.iter().any(|r| r.contains(event)), "{event}: {rows:#?}");
    }
    let review = run(
        &["audit", "log", "--ticket", "T-2", "--output", "json"],
        660,
    );
    ok(&review, "audit log --ticket");
    let events: Vec<serde_json::Value> = stdout(&review)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        events.iter().any(|e| e["event"] == "checkout_expired"),
        "{events:#?}"
    );
    assert!(
        syslog.text().contains("audit head seq="),
        "{}",
        syslog.text()
    );

    // No secret anywhere a person or a log collector reads.
    let leaks = Leaks::new([
        ("the checked-out secret", secret.as_str()),
        ("the new secret", new.as_str()),
    ]);
    leaks.assert_absent("the audit log", rows.join("\n").as_bytes());
    let log = run(&["audit", "log", "--output", "json"], 660);
    leaks.assert_absent("rotor audit log --output json", &log.stdout);
    leaks.assert_absent("rotor audit log --ticket", &review.stdout);
    leaks.assert_absent("rotor checkouts --output json", &list.stdout);
    leaks.assert_absent("rotor checkouts", &listed.stdout);
    leaks.assert_absent("the system log lines", syslog.text().as_bytes());
    for (what, out) in [("failed", &failed), ("late", &late)] {
        leaks.assert_absent(&format!("the {what} command's stderr"), &out.stderr);
    }
}

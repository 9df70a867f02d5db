//! `rotor audit`: entries made by the real binary (`enroll`, `show`: no lab hosts needed),
//! their heads sent to the system log (a datagram socket of the test's own, named by
//! `ROTOR_SYSLOG_SOCKET`), `audit log` as a table and as JSON lines, and `audit verify`
//! catching an edited, a deleted and a reordered entry and a truncated tail, each made with
//! the `sqlite3` CLI on the vault file (its append-only triggers dropped first, as whoever
//! holds the file can), naming the entry (issue 10, must-show 3; and 5 for the audit part:
//! no secret in the journal lines or in `audit log --output json`).

use std::cell::RefCell;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Output};

use crate::support::{Leaks, Rotor, run_with_stdin};

const SECRETS: [(&str, &str); 2] = [
    ("h1/svc", "Audit-Secret-Alpha-4f1c9"),
    ("h2/svc", "Audit-Secret-Bravo-77d2e"),
];

/// A vault whose every `rotor` command sends its audit heads to a socket the test reads.
struct Audited {
    rotor: Rotor,
    socket_dir: tempfile::TempDir,
    syslog: UnixDatagram,
    /// Every datagram received so far, in order.
    lines: RefCell<Vec<String>>,
}

impl Audited {
    fn new() -> Audited {
        let socket_dir = tempfile::tempdir().unwrap();
        let syslog = UnixDatagram::bind(socket_dir.path().join("log.sock")).unwrap();
        syslog.set_nonblocking(true).unwrap();
        let a = Audited {
            rotor: Rotor::without_vault(),
            socket_dir,
            syslog,
            lines: RefCell::default(),
        };
        a.ok(&["init"]);
        a
    }

    /// `init`, the two enrolments and three reads: six entries.
    fn with_entries() -> Audited {
        let a = Audited::new();
        a.enroll_both();
        a.ok(&["show", "h1/svc", "--reason", "T-100 check"]);
        a.ok(&["show", "h2/svc", "--reason", "T-101 check"]);
        a.ok(&["show", "h1/svc", "--reason", "T-102 check"]);
        a
    }

    fn enroll_both(&self) {
        for (cred, secret) in SECRETS {
            let out = run_with_stdin(self.cmd(&["enroll", cred]), &format!("{secret}\n"));
            assert!(out.status.success(), "{out:?}");
            self.drain();
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.rotor.cmd(args);
        c.env(
            "ROTOR_SYSLOG_SOCKET",
            self.socket_dir.path().join("log.sock"),
        );
        c
    }

    /// Runs rotor and collects the heads it sent (all sent before it exited: the socket's
    /// queue holds them, nothing to wait for).
    fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd(args).output().unwrap();
        self.drain();
        out
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(out.status.success(), "rotor {args:?}: {out:?}");
        out
    }

    fn drain(&self) {
        let mut buf = [0u8; 2048];
        while let Ok(n) = self.syslog.recv(&mut buf) {
            self.lines
                .borrow_mut()
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }

    /// The `sqlite3` CLI on the vault's database.
    fn sql(&self, sql: &str) -> String {
        let out = Command::new("sqlite3")
            .arg(self.rotor.vault_dir().join("rotor.db"))
            .arg(sql)
            .output()
            .expect("the sqlite3 CLI (scripts/setup installs it)");
        assert!(out.status.success(), "sqlite3 {sql}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// `rotor audit verify ARGS`: its exit code and what it said (stdout and stderr).
    fn verify(&self, args: &[&str]) -> (Option<i32>, String) {
        let mut all = vec!["audit", "verify"];
        all.extend(args);
        let out = self.run(&all);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), said)
    }
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    text(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn seqs(entries: &[serde_json::Value]) -> Vec<i64> {
    entries.iter().map(|e| e["seq"].as_i64().unwrap()).collect()
}

#[test]
fn heads_reach_the_system_log_and_the_log_reads_back_without_a_secret() {
    let a = Audited::with_entries();
    let lines = a.lines.borrow().clone();
    // One head per committed write: init, two enrolments, three reads.
    assert_eq!(lines.len(), 6, "{lines:#?}");
    for (idx, line) in lines.iter().enumerate() {
        assert!(line.starts_with("<38>"), "{line}");
        assert!(
            line.contains("rotor[")
                && line.contains(&format!(": audit head seq={} hash=", idx + 1)),
            "{line}"
        );
    }
    let head = text(&a.ok(&["audit", "head"]));
    let last_hash = lines[5]
        .split("hash=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    assert_eq!(head.trim(), format!("seq=6 hash={last_hash}"));
    let (code, said) = a.verify(&[]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("the audit log verifies: 6 entries, head seq=6"),
        "{said}"
    );

    let all = json_lines(&a.ok(&["audit", "log", "--output", "json"]));
    let events: Vec<&str> = all.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["init", "enroll", "enroll", "show", "show", "show"]);
    assert_eq!(all[3]["cred"], "h1/svc");
    assert_eq!(all[3]["fields"]["reason"], "T-100 check");
    assert_eq!(all[3]["fields"]["found"], true);
    for (filter, expect) in [
        (&["--cred", "h1/svc"][..], vec![2, 4, 6]),
        (&["--actor", "root"][..], vec![1, 2, 3, 4, 5, 6]),
        (&["--actor", "nobody"][..], vec![]),
        (&["--since", "2999-01-01"][..], vec![]),
        (&["--until", "2000-01-01T00:00:00Z"][..], vec![]),
        (&["--ticket", "T-100"][..], vec![]),
    ] {
        let mut args = vec!["audit", "log", "--output", "json"];
        args.extend(filter);
        assert_eq!(seqs(&json_lines(&a.ok(&args))), expect, "{filter:?}");
    }
    let table = text(&a.ok(&["audit", "log", "--cred", "h1/svc"]));
    assert!(
        table.contains("secret shown; reason: T-100 check"),
        "{table}"
    );

    // The secrets enrolled and shown are nowhere in what the log tells.
    let shown = a.ok(&["show", "h1/svc", "--reason", "compare"]);
    assert_eq!(text(&shown).trim(), SECRETS[0].1);
    let json = a.ok(&["audit", "log", "--output", "json"]);
    let leaks = Leaks::new(SECRETS.iter().map(|(cred, s)| (*cred, *s)));
    leaks.assert_absent(
        "the system log lines",
        a.lines.borrow().join("\n").as_bytes(),
    );
    leaks.assert_absent("`audit log --output json`", &json.stdout);
    leaks.assert_absent("`audit log`", table.as_bytes());
}

/// Each case starts from a vault of its own with the same six entries.
#[test]
fn audit_verify_names_an_edited_deleted_or_reordered_entry_and_a_cut_tail() {
    let drop_triggers = "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;";
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "edited",
            "UPDATE audit SET detail = replace(detail, 'T-100 check', 'routine') WHERE seq = 4;",
            &["at entry 4", "the entry was edited"],
        ),
        (
            "deleted",
            "DELETE FROM audit WHERE seq = 3;",
            &["at entry 3", "entry 3 is missing"],
        ),
        (
            "reordered",
            "UPDATE audit SET seq = -5 WHERE seq = 5; UPDATE audit SET seq = 5 WHERE seq = 4;
             UPDATE audit SET seq = 4 WHERE seq = -5;",
            &["at entry 4", "its link to entry 3 is wrong"],
        ),
        (
            "tail cut, head left",
            "DELETE FROM audit WHERE seq > 4;",
            &[
                "at entry 5",
                "the log ends at entry 4 but entry 6 was written",
            ],
        ),
    ];
    for (name, sql, expect) in cases {
        let a = Audited::with_entries();
        // The triggers refuse the change as long as they are there.
        let refused = Command::new("sqlite3")
            .arg(a.rotor.vault_dir().join("rotor.db"))
            .arg(sql)
            .output()
            .unwrap();
        assert!(
            !refused.status.success(),
            "{name}: the triggers let it through"
        );
        a.sql(&format!("{drop_triggers} {sql}"));
        let (code, said) = a.verify(&[]);
        assert_eq!(code, Some(1), "{name}: {said}");
        for words in *expect {
            assert!(said.contains(words), "{name}: `{words}` not in: {said}");
        }
        let out = a.run(&["audit", "verify", "--output", "json"]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let first: serde_json::Value =
            serde_json::from_str(text(&out).lines().next().unwrap()).unwrap();
        assert_eq!(first["verifies"], false, "{name}");
        let entry: i64 = expect[0].trim_start_matches("at entry ").parse().unwrap();
        assert_eq!(first["entry"], entry, "{name}");
    }
}

/// The tail cut and an older head put back in `meta` (copied from before the cut entries were
/// written, as a backup holds it): the file alone cannot show it, the heads the system log
/// received do, naming the first deleted entry.
#[test]
fn heads_from_the_system_log_catch_a_cut_tail_with_an_older_head_restored() {
    let a = Audited::new();
    a.enroll_both();
    a.ok(&["show", "h1/svc", "--reason", "T-100 check"]);
    let older_head = a.sql("SELECT CAST(value AS TEXT) FROM meta WHERE key = 'audit_head'");
    assert!(older_head.starts_with("4:"), "{older_head}");
    a.ok(&["show", "h2/svc", "--reason", "T-101 check"]);
    a.ok(&["show", "h1/svc", "--reason", "T-102 check"]);
    let heads = a.socket_dir.path().join("journal.txt");
    std::fs::write(&heads, a.lines.borrow().join("\n")).unwrap();
    let (code, said) = a.verify(&["--heads", heads.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("holds the 6 head(s)"), "{said}");

    a.sql(&format!(
        "DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq > 4;
         UPDATE meta SET value = '{older_head}' WHERE key = 'audit_head';"
    ));
    // What the file says is consistent: four entries and their authentic head.
    let (code, said) = a.verify(&[]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("verifies: 4 entries"), "{said}");
    let (code, said) = a.verify(&["--heads", heads.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{said}");
    for words in [
        "at entry 5",
        "line 6 records entry 6",
        "entries 5 to 6 were deleted",
    ] {
        assert!(said.contains(words), "`{words}` not in: {said}");
    }
    // `rotor audit head` lines, on standard input, count as well.
    let out = run_with_stdin(
        a.cmd(&["audit", "verify", "--heads", "-"]),
        &a.lines.borrow()[5],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("at entry 5"),
        "{out:?}"
    );
}

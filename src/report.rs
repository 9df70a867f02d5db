//! Run reports: what happened to every credential of a run, as a table for people and as JSON
//! (`schema_version` 1) for machines. The one place that turns results into output, so the
//! text and JSON forms never drift apart.
//!
//! Invariant: reports are built from `CredentialResult`s and, for a `--breach` run, the
//! breach survey's `HostSurvey`s, neither of which carries a secret or a hash. Text from
//! outside (targets' messages, reasons, directory names, a host's account names and sessions)
//! is escaped in the text form
//! ([`crate::text`]); JSON escapes it itself.

use crate::credential::CredentialId;
use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::Serialize;

use crate::breach::{HostSurvey, PasswordState};
use crate::engine::driver::CredentialResult;
use crate::engine::machine::Fault;
use crate::engine::{Outcome, RunId};
use crate::text::escape;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub total: usize,
    pub committed: usize,
    pub not_changed: usize,
    pub rolled_back: usize,
    pub unsettled: usize,
    pub stuck: usize,
    pub skipped: usize,
    pub kept_new: usize,
}

#[derive(Debug, Serialize)]
pub struct RunReport {
    pub schema_version: u32,
    pub command: String,
    pub run: Option<RunId>,
    pub reason: Option<String>,
    /// Hosts with a credential in `results`.
    pub n_hosts: usize,
    /// Directories with a credential in `results` (counted once the caller names the
    /// inventory's directories, [`RunReport::with_directories`]).
    pub n_directories: usize,
    pub elapsed_ms: u64,
    pub counts: Counts,
    pub results: Vec<CredentialResult>,
    /// Interrupted rotations of earlier runs that `rotate` settled before starting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered: Option<Box<RunReport>>,
    /// Directories that could not be opened (bind refused, unreachable, TLS): their accounts
    /// are not in `results`, because their searches could not run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed_directories: Vec<FailedDirectory>,
    /// What the run could not do that the operator asked for, in words with the fix (a breach
    /// run on a host whose connect identity the inventory does not manage).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The breach survey of a `--breach` run, one entry per host (`ops::breach`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub breach: Vec<HostSurvey>,
}

/// A directory a run could not open.
#[derive(Debug, Clone, Serialize)]
pub struct FailedDirectory {
    pub directory: String,
    pub class: crate::connector::FaultClass,
    pub message: String,
}

impl RunReport {
    pub fn new(
        command: &str,
        run: Option<RunId>,
        reason: Option<String>,
        elapsed_ms: u64,
        mut results: Vec<CredentialResult>,
    ) -> RunReport {
        results.sort_by(|a, b| a.cred.cmp(&b.cred));
        let mut counts = Counts {
            total: results.len(),
            ..Counts::default()
        };
        for r in &results {
            match r.outcome {
                Outcome::Committed => counts.committed += 1,
                Outcome::NotChanged { .. } => counts.not_changed += 1,
                Outcome::RolledBack { .. } => counts.rolled_back += 1,
                Outcome::Unsettled { .. } => counts.unsettled += 1,
                Outcome::Stuck { .. } => counts.stuck += 1,
                Outcome::Skipped { .. } => counts.skipped += 1,
                Outcome::KeptNew { .. } => counts.kept_new += 1,
            }
        }
        let n_hosts = results
            .iter()
            .map(|r| &r.cred.host)
            .collect::<BTreeSet<_>>()
            .len();
        RunReport {
            schema_version: SCHEMA_VERSION,
            command: command.to_owned(),
            run,
            reason,
            n_hosts,
            n_directories: 0,
            elapsed_ms,
            counts,
            results,
            recovered: None,
            failed_directories: Vec::new(),
            warnings: Vec::new(),
            breach: Vec::new(),
        }
    }

    /// Tells hosts and directories apart in the counts: `directories` are the inventory's
    /// directory names (credentials of a directory are `DIRECTORY/UID`).
    pub fn with_directories<'a>(
        mut self,
        directories: impl IntoIterator<Item = &'a str>,
    ) -> RunReport {
        let directories: BTreeSet<&str> = directories.into_iter().collect();
        let targets: BTreeSet<&str> = self.results.iter().map(|r| r.cred.host.as_str()).collect();
        self.n_directories = targets.intersection(&directories).count();
        self.n_hosts = targets.len() - self.n_directories;
        if let Some(recovered) = self.recovered.take() {
            self.recovered = Some(Box::new(recovered.with_directories(directories)));
        }
        self
    }

    pub fn with_failed_directories(mut self, failed: Vec<FailedDirectory>) -> RunReport {
        self.failed_directories = failed;
        self
    }

    /// Attaches the breach survey (`ops::breach::survey_hosts`): in the JSON as `breach`, in
    /// the text as its own section after the results. It changes no exit code.
    pub fn with_breach(mut self, surveys: Vec<HostSurvey>) -> RunReport {
        self.breach = surveys;
        self
    }

    /// Attaches the recovery that ran before this run (if it settled anything); the exit code
    /// then covers both.
    pub fn with_warnings(mut self, warnings: Vec<String>) -> RunReport {
        self.warnings = warnings;
        self
    }

    pub fn with_recovered(mut self, recovered: RunReport) -> RunReport {
        if !recovered.results.is_empty() {
            self.recovered = Some(Box::new(recovered));
        }
        self
    }

    /// DESIGN.md exit codes: 0 all done, 3 partial (some not rotated or rolled back), 4 an
    /// operator is needed (stuck, or left open).
    pub fn exit_code(&self) -> i32 {
        let c = &self.counts;
        let own = if c.stuck > 0 || c.unsettled > 0 {
            4
        } else if c.not_changed > 0 || c.rolled_back > 0 || c.skipped > 0 || c.kept_new > 0 {
            3
        } else {
            0
        };
        // A recovery that rolled back is a success (the old secret is proven); only what it
        // left open or stuck makes the whole command need an operator.
        let recovery = match &self.recovered {
            Some(r) if r.counts.stuck > 0 || r.counts.unsettled > 0 => 4,
            _ => 0,
        };
        let directories = if self.failed_directories.is_empty() {
            0
        } else {
            3
        };
        own.max(recovery).max(directories)
    }

    pub fn to_json(&self) -> String {
        // Serializing plain data (strings, numbers, enums) cannot fail.
        serde_json::to_string_pretty(self).expect("report serializes")
    }

    /// The human summary: totals, then the credentials that did not reach `committed`,
    /// grouped by cause, with why and what to do.
    pub fn to_text(&self) -> String {
        self.to_text_with(false)
    }

    /// [`RunReport::to_text`]; `per_credential` (`--verbose`) adds a row for each credential
    /// not rotated, with its own message.
    pub fn to_text_with(&self, per_credential: bool) -> String {
        let c = &self.counts;
        let mut out = String::new();
        if let Some(r) = &self.recovered {
            out.push_str("Settled first: rotations that an earlier run left open\n");
            out.push_str(&r.to_text());
            out.push('\n');
        }
        let secs = self.elapsed_ms as f64 / 1000.0;
        let rate = if secs > 0.0 {
            c.committed as f64 / secs
        } else {
            0.0
        };
        let _ = write!(out, "rotor {}", self.command);
        if let Some(run) = self.run {
            let _ = write!(out, " (run {run})");
        }
        if let Some(reason) = &self.reason {
            let _ = write!(out, ", reason: {}", escape(reason));
        }
        let mut on = Vec::new();
        if self.n_hosts > 0 || self.n_directories == 0 {
            on.push(plural(self.n_hosts, "host", "hosts"));
        }
        if self.n_directories > 0 {
            on.push(plural(self.n_directories, "directory", "directories"));
        }
        let _ = writeln!(
            out,
            "\n{} credentials on {} in {secs:.1} s ({rate:.1} committed per second)\n",
            c.total,
            on.join(" and ")
        );
        for (label, n) in [
            ("committed (new secret verified and stored)", c.committed),
            ("not changed (target untouched)", c.not_changed),
            ("rolled back (old secret in place, checked)", c.rolled_back),
            ("unsettled (run `rotor recover`)", c.unsettled),
            ("stuck (operator needed)", c.stuck),
            ("skipped (not attempted)", c.skipped),
            (
                "kept new (rollback refused by policy; new secret proven)",
                c.kept_new,
            ),
        ] {
            if n > 0 || label.starts_with("committed") {
                let _ = writeln!(out, "  {n:>6}  {label}");
            }
        }
        for f in &self.failed_directories {
            let _ = writeln!(
                out,
                "\nDirectory {} was not rotated ({}): {}",
                escape(&f.directory),
                f.class,
                escape(&f.message)
            );
        }
        for w in &self.warnings {
            let _ = writeln!(out, "\nWarning: {}", escape(w));
        }
        let noted: Vec<&CredentialResult> = self
            .results
            .iter()
            .filter(|r| !r.notes.is_empty())
            .collect();
        if !noted.is_empty() {
            out.push_str("\nNotes:\n");
            for r in noted {
                for note in &r.notes {
                    let _ = writeln!(out, "  {}: {}", r.cred, escape(note));
                }
            }
        }
        self.not_rotated_text(&mut out, per_credential);
        if !self.breach.is_empty() {
            out.push('\n');
            out.push_str(&breach_text(&self.breach));
        }
        out
    }

    /// Every credential that did not reach `committed`, grouped by what happened and why
    /// (hundreds of hosts failing the same way read as one group, the message once), most
    /// common first; `per_credential` (`--verbose`) adds the table of each.
    fn not_rotated_text(&self, out: &mut String, per_credential: bool) {
        let failed: Vec<&CredentialResult> = self
            .results
            .iter()
            .filter(|r| r.outcome != Outcome::Committed)
            .collect();
        if failed.is_empty() {
            return;
        }
        let rows: Vec<[String; 4]> = failed.iter().map(|r| failure_row(r)).collect();
        let _ = writeln!(out, "\nNot rotated ({}), by cause:", failed.len());
        for group in failure_groups(&failed, &rows) {
            group.write(out);
        }
        if per_credential {
            out.push_str("\nEach credential:\n");
            out.push_str(&table(&["CREDENTIAL", "RESULT", "CAUSE", "DETAIL"], &rows));
        } else {
            out.push_str("\n(--verbose lists each credential with its own message.)\n");
        }
    }
}

/// A failed credential's row: credential, result (with the phase it stopped in), cause, the
/// target's message.
fn failure_row(r: &CredentialResult) -> [String; 4] {
    let (cause, phase) = match &r.outcome {
        Outcome::Committed => unreachable!("only failures are rows"),
        Outcome::NotChanged { cause } | Outcome::RolledBack { cause } => (cause, None),
        Outcome::Unsettled { cause, phase } => (cause, Some(*phase)),
        Outcome::Stuck { restore_error, .. } => (restore_error, None),
        Outcome::KeptNew {
            rollback_refused, ..
        } => (rollback_refused, None),
        Outcome::Skipped { reason, detail } => {
            return [
                r.cred.to_string(),
                r.outcome.label().to_owned(),
                reason.to_string(),
                detail.clone(),
            ];
        }
    };
    let result = match phase {
        Some(p) => format!("{} ({p})", r.outcome.label()),
        None => r.outcome.label().to_owned(),
    };
    [
        r.cred.to_string(),
        result,
        cause_label(cause),
        cause.message.clone(),
    ]
}

/// Distinct messages of one group printed each with its hosts; more than this, the first
/// as an example and a count.
const MESSAGES_SHOWN: usize = 3;

/// The failures that share a result and a cause.
struct FailureGroup<'a> {
    result: &'a str,
    cause: &'a str,
    /// The credentials, in report order.
    creds: Vec<&'a CredentialId>,
    /// Each distinct message once, with the credentials that got it.
    messages: Vec<(&'a str, Vec<&'a CredentialId>)>,
}

fn failure_groups<'a>(
    failed: &[&'a CredentialResult],
    rows: &'a [[String; 4]],
) -> Vec<FailureGroup<'a>> {
    let mut groups: Vec<FailureGroup<'a>> = Vec::new();
    for (r, row) in failed.iter().zip(rows) {
        // "host-003 (127.0.1.3:22): the host key ..." on each host is one message.
        let message = crate::text::without_host_lead(&row[3], r.cred.host.as_str());
        let (result, cause) = (row[1].as_str(), row[2].as_str());
        let at = match groups
            .iter()
            .position(|g| g.result == result && g.cause == cause)
        {
            Some(at) => at,
            None => {
                groups.push(FailureGroup {
                    result,
                    cause,
                    creds: Vec::new(),
                    messages: Vec::new(),
                });
                groups.len() - 1
            }
        };
        let g = &mut groups[at];
        g.creds.push(&r.cred);
        match g.messages.iter_mut().find(|(m, _)| *m == message) {
            Some((_, creds)) => creds.push(&r.cred),
            None => g.messages.push((message, vec![&r.cred])),
        }
    }
    // Most credentials first; a stable sort keeps report order among equals.
    groups.sort_by_key(|g| std::cmp::Reverse(g.creds.len()));
    groups
}

impl FailureGroup<'_> {
    fn write(&self, out: &mut String) {
        let n_hosts = distinct_hosts(&self.creds).len();
        let who = if n_hosts == self.creds.len() {
            plural(n_hosts, "host", "hosts")
        } else {
            format!(
                "{} on {}",
                plural(self.creds.len(), "credential", "credentials"),
                plural(n_hosts, "host", "hosts")
            )
        };
        let _ = writeln!(
            out,
            "\n  {who}: {}; {}",
            escape(self.cause),
            escape(self.result)
        );
        if self.messages.len() == 1 {
            let _ = writeln!(out, "    {}", escape(self.messages[0].0));
            let _ = writeln!(out, "    {}", names(&self.creds));
            return;
        }
        for (message, creds) in self.messages.iter().take(MESSAGES_SHOWN) {
            let _ = writeln!(out, "    {}", escape(message));
            let _ = writeln!(out, "      {}", names(creds));
        }
        if self.messages.len() > MESSAGES_SHOWN {
            let rest: Vec<&CredentialId> = self.messages[MESSAGES_SHOWN..]
                .iter()
                .flat_map(|(_, creds)| creds.iter().copied())
                .collect();
            let _ = writeln!(
                out,
                "    and {} more messages (--verbose shows each):",
                self.messages.len() - MESSAGES_SHOWN
            );
            let _ = writeln!(out, "      {}", names(&rest));
        }
    }
}

fn distinct_hosts<'a>(creds: &[&'a CredentialId]) -> Vec<&'a crate::credential::HostName> {
    let mut hosts: Vec<&crate::credential::HostName> = Vec::new();
    for c in creds {
        if !hosts.contains(&&c.host) {
            hosts.push(&c.host);
        }
    }
    hosts
}

/// Who a group or a message is about: the hosts when each has one credential there, else
/// the credentials; every name, wrapped.
fn names(creds: &[&CredentialId]) -> String {
    let hosts = distinct_hosts(creds);
    let (label, names): (&str, Vec<String>) = if hosts.len() == creds.len() {
        ("hosts", hosts.iter().map(|h| h.to_string()).collect())
    } else {
        ("credentials", creds.iter().map(|c| c.to_string()).collect())
    };
    let mut text = format!("{label}: ");
    let mut line_len = text.len();
    for (i, name) in names.iter().enumerate() {
        let name = escape(name);
        if i > 0 {
            text.push(',');
            line_len += 1;
            if line_len + name.len() > 96 {
                text.push_str("\n        ");
                line_len = 8;
            } else {
                text.push(' ');
                line_len += 1;
            }
        }
        text.push_str(&name);
        line_len += name.len();
    }
    text
}

/// Hosts named on the line of hosts with nothing to report, before "and N more".
const QUIET_HOSTS_SHOWN: usize = 20;

/// The breach survey's section of the run report: per host, the accounts the inventory does
/// not know that can be logged in to and the sessions to look at, each with what to do; a
/// host that could not be read, said so; hosts with nothing to say, on one line. Every value
/// from a host is escaped.
pub fn breach_text(surveys: &[HostSurvey]) -> String {
    let mut out = String::new();
    let n_found: usize = surveys
        .iter()
        .map(|s| s.unknown_accounts.len() + s.sessions.len() + s.unknown_account_sessions.len())
        .sum();
    let _ = writeln!(
        out,
        "Breach survey of {}: {} (rotor locks, deletes and logs out nothing itself)",
        plural(surveys.len(), "host", "hosts"),
        if n_found == 0 {
            "no unknown account and no open session of a rotated account found".to_owned()
        } else {
            plural(n_found, "thing to look at", "things to look at")
        }
    );
    let mut quiet = Vec::new();
    for s in surveys {
        if !s.needs_attention() {
            quiet.push(escape(&s.host).into_owned());
            continue;
        }
        let _ = writeln!(out, "\n  {}:", escape(&s.host));
        if let Some(e) = &s.error {
            let _ = writeln!(
                out,
                "    not surveyed: {}; nothing is known of its accounts and sessions: look at it by hand",
                escape(e)
            );
        }
        for a in &s.unknown_accounts {
            let mut has = Vec::new();
            match a.password {
                PasswordState::Set => has.push("a password".to_owned()),
                PasswordState::Empty => has.push("an EMPTY password".to_owned()),
                PasswordState::None => {}
            }
            if !a.keys.is_empty() {
                has.push(format!(
                    "{} ({})",
                    plural(a.keys.len(), "SSH key", "SSH keys"),
                    a.keys
                        .iter()
                        .map(|k| escape(k).into_owned())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            let uid = a.uid.map_or_else(|| "?".to_owned(), |u| u.to_string());
            let _ = writeln!(
                out,
                "    unknown account {} (uid {uid}, shell {}): {}",
                escape(&a.name),
                escape(&a.shell),
                has.join(" and ")
            );
            let _ = writeln!(out, "      what to do: {}", escape(&a.what_to_do));
        }
        for (findings, whose) in [
            (&s.sessions, "rotated in this run"),
            (&s.unknown_account_sessions, "not in the inventory"),
        ] {
            for f in findings {
                let s = &f.session;
                let mut line = format!("    logged in now: {} ({whose})", escape(&s.account));
                for (label, value) in [("on", &s.line), ("from", &s.from), ("since", &s.since)] {
                    if !value.is_empty() {
                        let _ = write!(line, " {label} {}", escape(value));
                    }
                }
                let _ = writeln!(out, "{line}");
                let _ = writeln!(out, "      what to do: {}", escape(&f.what_to_do));
            }
        }
        if let Some(why) = &s.sessions_unread {
            let _ = writeln!(out, "    sessions not (all) read: {}", escape(why));
        }
        for k in &s.keys_unread {
            let _ = writeln!(
                out,
                "    keys of {} not read: {}; look at the file by hand",
                escape(&k.account),
                escape(&k.why)
            );
        }
    }
    if !quiet.is_empty() {
        let n = quiet.len();
        if n > QUIET_HOSTS_SHOWN {
            quiet.truncate(QUIET_HOSTS_SHOWN);
            quiet.push(format!("and {} more", n - QUIET_HOSTS_SHOWN));
        }
        let _ = writeln!(
            out,
            "\n  Nothing to look at on {}: {}",
            plural(n, "host", "hosts"),
            quiet.join(", ")
        );
    }
    out
}

fn cause_label(f: &Fault) -> String {
    f.class_text()
}

/// A plain left-aligned table; the last column is not padded. Every cell is escaped
/// ([`crate::text::escape`]): cells hold targets' messages and names from outside.
pub fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let rows: Vec<[String; N]> = rows
        .iter()
        .map(|row| {
            row.clone()
                .map(|cell| crate::text::escape(&cell).into_owned())
        })
        .collect();
    let rows = &rows[..];
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::from(" ");
        for (i, cell) in cells.iter().enumerate() {
            l.push_str(if i == 0 { " " } else { "  " });
            if i + 1 == N {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:<w$}", w = widths[i]);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// "1 host", "20 hosts".
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::FaultClass;
    use crate::credential::CredentialId;
    use crate::engine::Phase;

    fn result(cred: &str, outcome: Outcome) -> CredentialResult {
        CredentialResult {
            cred: CredentialId::parse(cred).unwrap(),
            outcome,
            rotation: None,
            elapsed_ms: 5,
            notes: Vec::new(),
        }
    }

    fn sample() -> RunReport {
        RunReport::new(
            "rotate",
            Some(RunId(7)),
            Some("INC-42".into()),
            2000,
            vec![
                result("host-002/svc_app", Outcome::Committed),
                result("host-001/svc_app", Outcome::Committed),
                result(
                    "host-003/svc_app",
                    Outcome::NotChanged {
                        cause: Fault::target(
                            FaultClass::HostKeyMismatch,
                            "host-003 presented SHA256:x",
                        ),
                    },
                ),
                result(
                    "host-004/svc_app",
                    Outcome::RolledBack {
                        cause: Fault::target(FaultClass::Refused, "chpasswd exit 1"),
                    },
                ),
                result(
                    "host-005/svc_app",
                    Outcome::Unsettled {
                        phase: Phase::Applied,
                        cause: Fault::target(FaultClass::Unreachable, "connection refused"),
                    },
                ),
            ],
        )
    }

    #[test]
    fn text_report() {
        insta::assert_snapshot!(sample().to_text(), @r"
        rotor rotate (run 7), reason: INC-42
        5 credentials on 5 hosts in 2.0 s (1.0 committed per second)

               2  committed (new secret verified and stored)
               1  not changed (target untouched)
               1  rolled back (old secret in place, checked)
               1  unsettled (run `rotor recover`)

        Not rotated (3), by cause:

          1 host: host key mismatch; not changed
            host-003 presented SHA256:x
            hosts: host-003

          1 host: target refused the change; rolled back
            chpasswd exit 1
            hosts: host-004

          1 host: host unreachable; unsettled (applied)
            connection refused
            hosts: host-005

        (--verbose lists each credential with its own message.)
        ");
    }

    #[test]
    fn verbose_text_adds_the_table_of_each_credential() {
        let text = sample().to_text_with(true);
        let table = &text[text.find("Each credential:").expect("a table")..];
        insta::assert_snapshot!(table, @r"
        Each credential:
          CREDENTIAL        RESULT               CAUSE                      DETAIL
          host-003/svc_app  not changed          host key mismatch          host-003 presented SHA256:x
          host-004/svc_app  rolled back          target refused the change  chpasswd exit 1
          host-005/svc_app  unsettled (applied)  host unreachable           connection refused
        ");
    }

    /// Hundreds of hosts failing the same way read as one group, the message once, then the
    /// hosts; different messages of one cause are each shown once, up to a few.
    #[test]
    fn failures_are_grouped_by_cause_and_host() {
        let mut results = Vec::new();
        for i in 1..=12 {
            results.push(result(
                &format!("emr-{i:02}/svc_app"),
                Outcome::NotChanged {
                    // As a connector words it: the host and its address first.
                    cause: Fault::target(
                        FaultClass::HostKeyMismatch,
                        format!(
                            "emr-{i:02} (10.0.0.{i}:22): the host's SSH key is not the pinned one"
                        ),
                    ),
                },
            ));
        }
        for (i, why) in [
            "connection refused",
            "no route to host",
            "connection refused",
        ]
        .iter()
        .enumerate()
        {
            for account in ["svc_app", "svc_backup"] {
                results.push(result(
                    &format!("lab-{i}/{account}"),
                    Outcome::NotChanged {
                        cause: Fault::target(FaultClass::Unreachable, *why),
                    },
                ));
            }
        }
        let report = RunReport::new("rotate", None, None, 1000, results);
        let text = report.to_text();
        let grouped = &text[text.find("Not rotated").expect("failures")..];
        insta::assert_snapshot!(grouped, @r"
        Not rotated (18), by cause:

          12 hosts: host key mismatch; not changed
            the host's SSH key is not the pinned one
            hosts: emr-01, emr-02, emr-03, emr-04, emr-05, emr-06, emr-07, emr-08, emr-09, emr-10, emr-11,
                emr-12

          6 credentials on 3 hosts: host unreachable; not changed
            connection refused
              credentials: lab-0/svc_app, lab-0/svc_backup, lab-2/svc_app, lab-2/svc_backup
            no route to host
              credentials: lab-1/svc_app, lab-1/svc_backup

        (--verbose lists each credential with its own message.)
        ");
    }

    #[test]
    fn hosts_and_directories_are_counted_apart() {
        let report = RunReport::new(
            "rotate",
            None,
            None,
            1000,
            vec![
                result("host-001/svc_app", Outcome::Committed),
                result("hospital-ldap/svc-0001", Outcome::Committed),
                result("hospital-ldap/svc-0002", Outcome::Committed),
            ],
        )
        .with_directories(["hospital-ldap", "unused-ldap"]);
        assert_eq!((report.n_hosts, report.n_directories), (1, 1));
        let text = report.to_text();
        assert!(
            text.contains("3 credentials on 1 host and 1 directory in 1.0 s"),
            "{text}"
        );
    }

    /// A target that answers with terminal escapes (clear the screen, set the title) reaches
    /// the report escaped.
    #[test]
    fn control_characters_from_targets_are_escaped() {
        let report = RunReport::new(
            "rotate",
            None,
            Some("INC\x1b[2J".into()),
            1,
            vec![result(
                "host-001/svc_app",
                Outcome::NotChanged {
                    cause: Fault::target(
                        FaultClass::Refused,
                        "chpasswd: \x1b]0;owned\x07\x1b[2Jbad\nline",
                    ),
                },
            )],
        )
        .with_failed_directories(vec![FailedDirectory {
            directory: "ldap".into(),
            class: FaultClass::Unreachable,
            message: "down\x1b[31m".into(),
        }]);
        let text = report.to_text();
        assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text}");
        assert!(
            text.contains("chpasswd: \\u{1b}]0;owned\\u{7}\\u{1b}[2Jbad\\u{a}line"),
            "{text}"
        );
        assert!(text.contains("reason: INC\\u{1b}[2J"), "{text}");
        assert!(text.contains("down\\u{1b}[31m"), "{text}");
    }

    fn breach_sample() -> Vec<HostSurvey> {
        use crate::breach::{KeysUnread, SessionFinding, UnknownAccount};
        use crate::target::Session;
        let quiet = |h: &str| HostSurvey {
            error: None,
            ..HostSurvey::unread(h, String::new())
        };
        let mut h1 = quiet("host-001");
        h1.unknown_accounts = vec![UnknownAccount {
            name: "planted".into(),
            uid: Some(1002),
            shell: "/bin/bash".into(),
            password: PasswordState::Set,
            keys: vec!["SHA256:abc".into()],
            what_to_do: "lock it".into(),
        }];
        h1.sessions = vec![SessionFinding {
            session: Session {
                account: "svc_app".into(),
                line: "pts/1".into(),
                from: "127.0.0.1".into(),
                since: "Dec 2 07:03".into(),
            },
            what_to_do: "end it".into(),
        }];
        h1.unknown_account_sessions = vec![SessionFinding {
            session: Session {
                account: "ev\x1b[2Jil".into(),
                line: "tty1".into(),
                ..Session::default()
            },
            what_to_do: "look".into(),
        }];
        h1.keys_unread = vec![KeysUnread {
            account: "svc_backup".into(),
            why: "a link".into(),
        }];
        h1.sessions_unread = None;
        vec![
            h1,
            HostSurvey::unread("host-002", "host-002: unreachable".into()),
            quiet("host-003"),
            quiet("host-004"),
        ]
    }

    #[test]
    fn breach_section() {
        let report = RunReport::new(
            "rotate",
            None,
            None,
            1000,
            vec![result("host-001/svc_app", Outcome::Committed)],
        )
        .with_breach(breach_sample());
        insta::assert_snapshot!(report.to_text(), @r"
        rotor rotate
        1 credentials on 1 host in 1.0 s (1.0 committed per second)

               1  committed (new secret verified and stored)

        Breach survey of 4 hosts: 3 things to look at (rotor locks, deletes and logs out nothing itself)

          host-001:
            unknown account planted (uid 1002, shell /bin/bash): a password and 1 SSH key (SHA256:abc)
              what to do: lock it
            logged in now: svc_app (rotated in this run) on pts/1 from 127.0.0.1 since Dec 2 07:03
              what to do: end it
            logged in now: ev\u{1b}[2Jil (not in the inventory) on tty1
              what to do: look
            keys of svc_backup not read: a link; look at the file by hand

          host-002:
            not surveyed: host-002: unreachable; nothing is known of its accounts and sessions: look at it by hand

          Nothing to look at on 2 hosts: host-003, host-004
        ");
        let v: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(v["breach"][0]["unknown_accounts"][0]["password"], "set");
        assert_eq!(v["breach"][0]["sessions"][0]["account"], "svc_app");
        assert_eq!(v["breach"][1]["error"], "host-002: unreachable");
        let plain = RunReport::new("rotate", None, None, 1, Vec::new());
        assert!(!plain.to_json().contains("breach"));
        assert!(!plain.to_text().contains("Breach"));
    }

    #[test]
    fn exit_codes() {
        assert_eq!(sample().exit_code(), 4);
        let ok = RunReport::new(
            "rotate",
            None,
            None,
            1,
            vec![result("a/b", Outcome::Committed)],
        );
        assert_eq!(ok.exit_code(), 0);
        let partial = RunReport::new(
            "rotate",
            None,
            None,
            1,
            vec![result(
                "a/b",
                Outcome::RolledBack {
                    cause: Fault::target(FaultClass::VerifyFailed, "x"),
                },
            )],
        );
        assert_eq!(partial.exit_code(), 3);
    }

    #[test]
    fn json_report_shape() {
        let v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        assert_eq!(v["schema_version"], 1);
        assert_eq!(v["counts"]["committed"], 2);
        assert_eq!(v["results"][2]["cred"], "host-003/svc_app");
        assert_eq!(v["results"][2]["result"], "not_changed");
        assert_eq!(v["results"][2]["cause"]["class"], "host_key_mismatch");
    }
}

//! Who is logged in on a host, for the fleet scan and the breach survey: one script (sent on
//! stdin to `sh -s`) lists `loginctl`'s sessions where systemd-logind answers, else runs
//! `LC_ALL=C who`;
//! [`parse`] reads its answer into [`Session`]s.
//!
//! The answer is hostile input: a host prints what it likes. It is read within caps (bytes,
//! sessions, characters per field), never panics, and anything before the script's own marker
//! line (a shell startup file's banner) is ignored. The fields stay outside text: they are
//! escaped where they are shown.

use crate::target::Session;

/// The first line of the script's answer, then which tool answered.
const MARKER: &str = "rotor-sessions";
/// Opens each session's block in the `loginctl` answer.
const LOGINCTL_BLOCK: &str = "rotor-session";

/// Most bytes a host may answer with: a few thousand sessions fit in far less.
pub(super) const MAX_BYTES: usize = 1 << 20;
/// Most sessions read from one host; the rest are said to be left out.
pub(super) const MAX_SESSIONS: usize = 4096;
/// Most characters kept of one field (an account, a terminal, a remote host, a time).
const MAX_FIELD_CHARS: usize = 256;

/// The script: `loginctl` where systemd-logind answers (it also knows the sessions without a
/// terminal, `ssh host cmd` and tunnels, which utmp does not: each session's name, terminal,
/// remote host and start, by its id; an id that is not plain letters and digits is skipped,
/// so nothing the host printed is run), else `who` (utmp: terminal logins), else a line saying
/// neither is there.
pub(super) fn script() -> String {
    format!(
        "if command -v loginctl >/dev/null 2>&1 && LC_ALL=C loginctl list-sessions --no-legend --no-pager >/dev/null 2>&1; then echo '{MARKER} loginctl'; \
         LC_ALL=C loginctl list-sessions --no-legend --no-pager 2>/dev/null | while read -r s rest; do \
         case $s in ''|*[!A-Za-z0-9]*) continue;; esac; echo '{LOGINCTL_BLOCK}'; \
         LC_ALL=C loginctl show-session --no-pager -p Name -p TTY -p RemoteHost -p Timestamp \"$s\" 2>/dev/null; \
         done; exit 0; fi\n\
         if command -v who >/dev/null 2>&1; then echo '{MARKER} who'; LC_ALL=C who; exit $?; fi\n\
         echo '{MARKER} none'\n"
    )
}

/// The sessions in the script's answer, and why they are not all there (no tool, an answer
/// the script did not give, more than [`MAX_SESSIONS`]).
pub(super) fn parse(out: &[u8]) -> (Vec<Session>, Option<String>) {
    let cut = &out[..out.len().min(MAX_BYTES)];
    let text = String::from_utf8_lossy(cut);
    let mut lines = text.lines();
    let tool = lines.by_ref().find_map(|l| {
        l.strip_prefix(MARKER)
            .and_then(|rest| rest.strip_prefix(' '))
            .map(str::trim)
    });
    let (mut sessions, mut why) = match tool {
        Some("who") => (lines.filter_map(who_line).collect::<Vec<_>>(), None),
        Some("loginctl") => (loginctl_blocks(lines), None),
        Some("none") => (
            Vec::new(),
            Some("neither `who` nor `loginctl` is installed on the host".to_owned()),
        ),
        _ => (
            Vec::new(),
            Some("the host's answer to the session listing was not the script's".to_owned()),
        ),
    };
    if sessions.len() > MAX_SESSIONS {
        why = Some(format!(
            "the host listed {} sessions; only the first {MAX_SESSIONS} are shown",
            sessions.len()
        ));
        sessions.truncate(MAX_SESSIONS);
    }
    // Said last: the listing itself was cut, whatever else it showed.
    if out.len() > MAX_BYTES {
        why = Some(format!(
            "the session listing was longer than {MAX_BYTES} bytes; only its start was read"
        ));
    }
    (sessions, why)
}

/// At most [`MAX_FIELD_CHARS`] characters of `s`.
fn field(s: &str) -> String {
    s.chars().take(MAX_FIELD_CHARS).collect()
}

/// One line of `who`: `NAME LINE TIME... [(FROM)]`; the time is whatever lies between the
/// terminal and the remote host (`Dec  2 07:03` in the C locale, `2026-12-02 07:03` in
/// others), its spaces squeezed.
fn who_line(line: &str) -> Option<Session> {
    let line = line.trim_end();
    let (rest, from) = match line.strip_suffix(')').and_then(|l| l.rsplit_once(" (")) {
        Some((rest, from)) => (rest, from),
        None => (line, ""),
    };
    let mut words = rest.split_whitespace();
    let account = words.next()?;
    let tty = words.next().unwrap_or("");
    let since: Vec<&str> = words.collect();
    Some(Session {
        account: field(account),
        line: field(tty),
        from: field(from),
        since: field(&since.join(" ")),
    })
}

/// `loginctl show-session` blocks (`Name=`, `TTY=`, `RemoteHost=`, `Timestamp=` lines), each
/// opened by [`LOGINCTL_BLOCK`]; a block without a name is no session.
fn loginctl_blocks<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<Session> {
    let mut out = Vec::new();
    let mut current: Option<Session> = None;
    let finish = |s: Option<Session>, out: &mut Vec<Session>| {
        if let Some(s) = s.filter(|s| !s.account.is_empty()) {
            out.push(s);
        }
    };
    for line in lines {
        if line.trim_end() == LOGINCTL_BLOCK {
            finish(current.take(), &mut out);
            current = Some(Session::default());
            continue;
        }
        let (Some(s), Some((key, value))) = (current.as_mut(), line.split_once('=')) else {
            continue;
        };
        let value = field(value.trim());
        match key {
            "Name" => s.account = value,
            "TTY" => s.line = value,
            "RemoteHost" => s.from = value,
            "Timestamp" => s.since = value,
            _ => {}
        }
    }
    finish(current, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One answer, the sessions as `account line from since` and the note.
    fn check(out: &str, expect: &[&str], expect_why: Option<&str>) {
        let (sessions, why) = parse(out.as_bytes());
        let got: Vec<String> = sessions
            .iter()
            .map(|s| format!("{}|{}|{}|{}", s.account, s.line, s.from, s.since))
            .collect();
        assert_eq!(got, expect, "{out:?}");
        match (why.as_deref(), expect_why) {
            (None, None) => {}
            (Some(w), Some(e)) => assert!(w.contains(e), "{w}"),
            (w, e) => panic!("note {w:?}, expected {e:?}"),
        }
    }

    #[test]
    fn answers() {
        // Captured in the lab: `LC_ALL=C who` on a host with `ssh -tt svc_app@...` open.
        check(
            "rotor-sessions who\nsvc_app  pts/1        Dec  2 07:03 (127.0.0.1)\n",
            &["svc_app|pts/1|127.0.0.1|Dec 2 07:03"],
            None,
        );
        // A banner from a startup file first; a console login has no remote host; another
        // locale's time; a display with spaces in its parentheses.
        check(
            "Welcome!\nrotor-sessions who\nroot     tty1         2026-12-02 07:03\nalice pts/3 Dec 12 10:00 (tmux(12).%0)\nbob pts/4 Dec 1 09:00 (a b)\n",
            &[
                "root|tty1||2026-12-02 07:03",
                "alice|pts/3|tmux(12).%0|Dec 12 10:00",
                "bob|pts/4|a b|Dec 1 09:00",
            ],
            None,
        );
        check("rotor-sessions who\n", &[], None);
        check("rotor-sessions who\n\n   \n", &[], None);
        // Captured from `loginctl show-session` (systemd 252).
        check(
            "rotor-sessions loginctl\nrotor-session\nName=svc_app\nTimestamp=Wed 2026-12-02 07:03:11 UTC\nTTY=pts/1\nRemoteHost=127.0.0.1\nrotor-session\nTTY=tty1\nrotor-session\nName=root\nTTY=tty1\n",
            &[
                "svc_app|pts/1|127.0.0.1|Wed 2026-12-02 07:03:11 UTC",
                "root|tty1||",
            ],
            None,
        );
        check("rotor-sessions none\n", &[], Some("neither `who` nor"));
        check("", &[], Some("not the script's"));
        check("svc_app pts/1 Dec 2 07:03\n", &[], Some("not the script's"));
        check("rotor-sessionswho\n", &[], Some("not the script's"));
    }

    #[test]
    fn hostile_answers_are_capped_and_never_panic() {
        let long = "x".repeat(10_000);
        let (s, _) = parse(format!("rotor-sessions who\n{long} {long} ({long})\n").as_bytes());
        assert_eq!(s[0].account.chars().count(), MAX_FIELD_CHARS);
        assert_eq!(s[0].from.chars().count(), MAX_FIELD_CHARS);

        let many = "rotor-sessions who\n".to_owned() + &"a pts/1 Dec 2 07:03\n".repeat(5000);
        let (s, why) = parse(many.as_bytes());
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(why.unwrap().contains("5000 sessions"));

        let huge = "rotor-sessions who\n".to_owned() + &"a b\n".repeat(MAX_BYTES / 2);
        let (_, why) = parse(huge.as_bytes());
        assert!(why.unwrap().contains("longer than"));

        // Not UTF-8, lone parentheses, control characters: read, kept as text.
        let odd = b"rotor-sessions who\n\xff\xfe pts/1 (\n)\n(\n \x1b[2J t (x)\n";
        let (s, _) = parse(odd);
        assert!(s.iter().any(|s| s.account.contains('\u{fffd}')));
        assert!(s.iter().any(|s| s.account == "\x1b[2J"));
        // Multi-byte characters cut at a character, not a byte.
        let wide = format!("rotor-sessions who\n{} pts/1\n", "é".repeat(1000));
        let (s, _) = parse(wide.as_bytes());
        assert_eq!(s[0].account.chars().count(), MAX_FIELD_CHARS);
    }

    #[test]
    fn the_script_runs_no_word_of_the_hosts() {
        let s = script();
        // loginctl first where logind answers (it knows sessions without a terminal).
        assert!(s.starts_with("if command -v loginctl"), "{s}");
        assert!(s.find("loginctl").unwrap() < s.find("who").unwrap(), "{s}");
        assert!(s.contains("LC_ALL=C who; exit $?"), "{s}");
        assert!(s.contains("*[!A-Za-z0-9]*) continue"), "{s}");
        assert!(s.contains("\"$s\""), "{s}");
    }
}

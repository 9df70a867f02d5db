//! Running a host's commands as root through sudo, pure: how a command line is wrapped and
//! what its stdin becomes in each mode, the order in which a session finds its mode, and
//! the reading of `sudo -l` that tells whether sudo would write a command's input to disk.
//! The I/O (running a probe over the session) is the caller's, passed in as a closure;
//! `target::linux::SshShell` is the caller.
//!
//! Invariants:
//! - No command line built here holds a password: with a sudo password, the password is the
//!   first line of stdin (`sudo -S`), then the command's own stdin.
//! - A password is put in front of a command's stdin only after it was validated on this
//!   session by a command whose stdin held nothing else. `sudo -S` answers a wrong password
//!   by reading the *next* line as the next try, and that line would be the command's input
//!   (a new password); `-k` makes sudo read the password every time, so a cached timestamp
//!   never lets the password line through to the command.
//! - Nothing a host prints while sudo reads a password is put in an error (the module's
//!   errors are rotor's own words, with exit statuses).
//! - When sudo has a NOPASSWD rule for the user, no password is ever sent.

use zeroize::Zeroizing;

use crate::connector::{ConnectorError, FaultClass};
use crate::credential::{AccountName, HostName};
use crate::secret::Secret;

/// The probe for a NOPASSWD rule: `-k` so that a cached timestamp cannot pass for one.
pub const NOPASSWD_PROBE: &str = "sudo -n -k -- true";

/// The probe for NOPASSWD rules that name commands (not `ALL`): listing one's rights needs
/// no password when any rule is NOPASSWD (sudo's default `listpw=any`).
pub const NOPASSWD_LIST_PROBE: &str = "sudo -n -k -l";

/// Whether a `sudo -l` listing shows a rule or Defaults entry that needs no password
/// (`NOPASSWD:`, `!authenticate`). In password mode that means some of
/// rotor's commands may not read the password line, which would then reach the command:
/// such a host is refused ([`mixed_rules`]).
pub fn has_nopasswd(listing: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&listing[..listing.len().min(MAX_LISTING_BYTES)]);
    text.lines()
        .any(|l| l.contains("NOPASSWD:") || l.contains("!authenticate"))
}

/// The refusal for a user whose sudo asks a password for some commands and none for others.
pub fn mixed_rules(host: &HostName, user: &AccountName) -> ConnectorError {
    ConnectorError::new(
        FaultClass::Refused,
        format!(
            "{host}: {user}'s sudo rules ask a password for some commands and none for others (NOPASSWD), so rotor cannot tell which of its commands would read the password it sends on stdin; it changed nothing on {host}. Make {user}'s rules all NOPASSWD (then rotor sends no password) or none, with `visudo -f /etc/sudoers.d/zz-rotor`, then try again"
        ),
    )
}

/// Longest password rotor hands to `sudo -S`. sudo reads the password into a fixed buffer and
/// leaves what does not fit on stdin, where the command would read it; 255 fits every sudo.
const MAX_PASSWORD_BYTES: usize = 255;

/// Most of `sudo -l`'s answer that is read; a longer one cannot be judged and is refused.
pub const MAX_LISTING_BYTES: usize = 64 * 1024;

/// How the session's commands become root.
pub enum Sudo {
    /// The connect user is root: commands run as they are.
    Root,
    /// `sudo -n -- CMD`: a NOPASSWD rule (assumed for a non-root session whose mode was not
    /// detected, as before detection existed).
    Nopasswd,
    /// `sudo -k -S -p '' -- CMD` with the password as the first line of stdin.
    Password(PasswordSudo),
}

/// The sudo password of a session and whether it may be used yet.
pub struct PasswordSudo {
    password: Secret,
    /// Proven on this session by a command whose stdin held only the password.
    validated: bool,
    /// The password before [`Sudo::password_changed`]: tried when the new one fails its
    /// validation (a rollback may have restored it).
    previous: Option<Secret>,
}

/// One command line and its stdin, as sent over the session.
pub struct Invocation {
    pub command: String,
    pub stdin: Zeroizing<Vec<u8>>,
}

impl Invocation {
    fn plain(command: String, stdin: &[u8]) -> Invocation {
        Invocation {
            command,
            stdin: Zeroizing::new(stdin.to_vec()),
        }
    }

    /// `command` with `password` as the first line of stdin, then `rest`.
    fn with_password(command: String, password: &Secret, rest: &[u8]) -> Invocation {
        let password = password.expose().as_bytes();
        let mut stdin = Zeroizing::new(Vec::with_capacity(password.len() + 1 + rest.len()));
        stdin.extend_from_slice(password);
        stdin.push(b'\n');
        stdin.extend_from_slice(rest);
        Invocation { command, stdin }
    }
}

/// The command that validates `password`: its stdin holds the password and nothing else.
pub fn validation(password: &Secret) -> Invocation {
    Invocation::with_password("sudo -k -S -p '' -- true".to_owned(), password, b"")
}

/// Whether `password` can go through `sudo -S` as one line read whole: no line break (sudo
/// stops at `\n` or `\r` and would hand the rest to the command), no NUL, not empty, and
/// short enough for sudo's buffer. Other passwords are never sent.
fn usable(password: &Secret) -> bool {
    let p = password.expose().as_bytes();
    !p.is_empty()
        && p.len() <= MAX_PASSWORD_BYTES
        && !p.iter().any(|b| matches!(b, b'\n' | b'\r' | 0))
}

impl Sudo {
    /// The mode a session of `user` starts in, before detection: root needs no sudo; any other
    /// user is assumed to have a NOPASSWD rule (which sends no password).
    pub fn for_user(user: &AccountName) -> Sudo {
        if user.as_str() == "root" {
            Sudo::Root
        } else {
            Sudo::Nopasswd
        }
    }

    /// Finds the mode of a session of `user`, once, after login: root needs nothing; else a
    /// NOPASSWD rule (`NOPASSWD_PROBE` exits 0: no password is sent, even if one is known);
    /// else the first of `passwords` that validates. `run` runs one invocation on the session
    /// and says whether it exited 0. `Ok(None)`: none works.
    pub fn detect<E>(
        user: &AccountName,
        passwords: Vec<Secret>,
        mut run: impl FnMut(&Invocation) -> Result<bool, E>,
    ) -> Result<Option<Sudo>, E> {
        if user.as_str() == "root" {
            return Ok(Some(Sudo::Root));
        }
        if run(&Invocation::plain(NOPASSWD_PROBE.to_owned(), b""))? {
            return Ok(Some(Sudo::Nopasswd));
        }
        for password in passwords {
            if usable(&password) && run(&validation(&password))? {
                return Ok(Some(Sudo::Password(PasswordSudo {
                    password,
                    validated: true,
                    previous: None,
                })));
            }
        }
        // NOPASSWD rules for rotor's commands only (a least-privilege sudoers line that does
        // not allow `true`): sudo lists them without a password.
        if run(&Invocation::plain(NOPASSWD_LIST_PROBE.to_owned(), b""))? {
            return Ok(Some(Sudo::Nopasswd));
        }
        Ok(None)
    }

    /// Validates the password before its first use on this session (after detection it is
    /// validated already; after [`Sudo::password_changed`] or [`Sudo::session_replaced`] it is
    /// not): the current one, then the previous one. `Ok(false)`: neither works, and the next
    /// command will try again. Other modes need nothing.
    pub fn validate<E>(
        &mut self,
        mut run: impl FnMut(&Invocation) -> Result<bool, E>,
    ) -> Result<bool, E> {
        let Sudo::Password(p) = self else {
            return Ok(true);
        };
        if p.validated {
            return Ok(true);
        }
        // The fallback stays after the new one validates: a rollback puts the old password
        // back ([`Sudo::password_restored`]) after commands ran with the new one.
        if usable(&p.password) && run(&validation(&p.password))? {
            p.validated = true;
            return Ok(true);
        }
        if let Some(previous) = p.previous.take() {
            if usable(&previous) && run(&validation(&previous))? {
                p.password = previous;
                p.validated = true;
                return Ok(true);
            }
            p.previous = Some(previous);
        }
        Ok(false)
    }

    /// The connect user's password was just set to `password` (rotor rotated it): use it from
    /// now on, once validated; the one before stays as the fallback. A NOPASSWD or root
    /// session sends no password, so it keeps none.
    pub fn password_changed(&mut self, password: Secret) {
        if let Sudo::Password(p) = self {
            let old = std::mem::replace(&mut p.password, password);
            // The fallback is the last password known to work: the old one if it was proven,
            // else the fallback it had.
            if p.validated || p.previous.is_none() {
                p.previous = Some(old);
            }
            p.validated = false;
        }
    }

    /// rotor just put the connect user's old password back (a rollback): the fallback becomes
    /// the password again, validated before its first use, and the new one the fallback.
    pub fn password_restored(&mut self) {
        if let Sudo::Password(p) = self
            && let Some(previous) = p.previous.take()
        {
            p.previous = Some(std::mem::replace(&mut p.password, previous));
            p.validated = false;
        }
    }

    /// The session was replaced by a fresh login: a password is validated again before the
    /// next command.
    pub fn session_replaced(&mut self) {
        if let Sudo::Password(p) = self {
            p.validated = false;
        }
    }

    /// `command` (run as root) as the session sends it. `None` when the password is not
    /// validated on this session yet: call [`Sudo::validate`] first.
    pub fn wrap(&self, command: &str, stdin: &[u8]) -> Option<Invocation> {
        match self {
            Sudo::Root => Some(Invocation::plain(command.to_owned(), stdin)),
            Sudo::Nopasswd => Some(Invocation::plain(format!("sudo -n -- {command}"), stdin)),
            Sudo::Password(p) if p.validated => Some(Invocation::with_password(
                format!("sudo -k -S -p '' -- {command}"),
                &p.password,
                stdin,
            )),
            Sudo::Password(_) => None,
        }
    }

    /// The listing of the user's sudo rights (`sudo -l`, in the C locale so that its headers
    /// read as [`input_logging`] expects), or `None` for root. Like [`Sudo::wrap`], `None`
    /// too for a password not validated yet.
    pub fn listing(&self) -> Option<Invocation> {
        match self {
            Sudo::Root => None,
            Sudo::Nopasswd => Some(Invocation::plain("env LC_ALL=C sudo -n -l".to_owned(), b"")),
            Sudo::Password(p) if p.validated => Some(Invocation::with_password(
                "env LC_ALL=C sudo -k -S -p '' -l".to_owned(),
                &p.password,
                b"",
            )),
            Sudo::Password(_) => None,
        }
    }

    /// The listing command as said in messages.
    fn listing_words(&self) -> &'static str {
        match self {
            Sudo::Password(_) => "sudo -l",
            _ => "sudo -n -l",
        }
    }

    fn is_nopasswd(&self) -> bool {
        matches!(self, Sudo::Nopasswd)
    }
}

/// No way to root was found for `user` on `host`: the error and its fix.
pub fn no_way_to_root(host: &HostName, user: &AccountName, n_passwords: usize) -> ConnectorError {
    let tried = match n_passwords {
        0 => "rotor holds no password of it to give sudo".to_owned(),
        1 => "sudo refused the password rotor holds for it".to_owned(),
        n => format!("sudo refused each of the {n} passwords rotor holds for it"),
    };
    ConnectorError::new(
        FaultClass::ConnectAuthRejected,
        format!(
            "{host}: {user} cannot run commands as root: sudo asks it for a password and {tried} (or {user} may not use sudo there). Store {user}'s current password with `rotor enroll {host}/{user}` (on stdin), or give {user} a NOPASSWD rule (`{user} ALL=(ALL:ALL) NOPASSWD: ALL`, with `visudo -f /etc/sudoers.d/zz-rotor`), then try again"
        ),
    )
}

/// `sudo -l` could not be run: the error and its fix (the listing's words are not shown:
/// with a password, sudo read it on the same stdin).
pub fn listing_failed(
    host: &HostName,
    user: &AccountName,
    sudo: &Sudo,
    ended: &str,
) -> ConnectorError {
    let fix = if sudo.is_nopasswd() {
        format!(
            "let {user} list its rights without a password (`Defaults:{user} listpw=never`, with `visudo -f /etc/sudoers.d/zz-rotor`)"
        )
    } else {
        format!("check that {user} may run `sudo -l` on {host}")
    };
    ConnectorError::new(
        FaultClass::Refused,
        format!(
            "{host}: rotor could not list {user}'s sudo rights (`{}`: {ended}) to check that sudo does not write the input of rotor's commands (new passwords) to disk, so it changed nothing on {host}; {fix}, then try again",
            sudo.listing_words()
        ),
    )
}

/// What `sudo -l` says about logging the input of rotor's commands.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct InputLogging {
    /// A Defaults entry for the user enables `log_input` (or `log_stdin`) and none after it
    /// turns it off again.
    pub defaults: bool,
    /// `log_input` was seen enabled in the Defaults (for the fix line).
    pub log_input_seen: bool,
    /// `log_stdin` was seen enabled in the Defaults or a specific entry (for the fix line).
    pub log_stdin_seen: bool,
    /// A Runas or command-specific Defaults entry (`Defaults>…`, `Defaults!…`) enables it.
    pub specific: bool,
    /// A rule's `LOG_INPUT:` tag enables it.
    pub tag: bool,
    /// The answer mentions input logging where rotor cannot place it, or is too long to read.
    pub unreadable: bool,
}

impl InputLogging {
    pub fn logged(&self) -> bool {
        self.defaults || self.specific || self.tag || self.unreadable
    }
}

/// One command of a rule as `sudo -l` lists it.
#[derive(Debug)]
struct RuleEntry {
    /// The runas users of the entry include root (`ALL` or `root`).
    as_root: bool,
    /// The command is `ALL`.
    all: bool,
    /// `LOG_INPUT:` (true) or `NOLOG_INPUT:` (false) in force for it.
    tag: Option<bool>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    None,
    Defaults,
    Specific,
    Rules,
    Unknown,
}

/// Reads `sudo -l`'s answer (sudo 1.9, C locale): would sudo write the input of rotor's
/// commands (run as root) to its I/O log?
///
/// sudo applies Defaults in order (the last word on `log_input`/`log_stdin` wins), then the
/// tags of the last rule that matches the command, which override every Defaults entry. A
/// final rule for every command as root (`(ALL : ALL) ALL`) therefore decides for all of
/// rotor's commands; otherwise any rule that would log is enough to refuse, since rotor runs
/// many commands. The answer is hostile input: it is cut at [`MAX_LISTING_BYTES`] (a longer
/// one is unreadable), never panics, and a mention of input logging outside the places
/// understood counts as logging; an answer that mentions none does not.
pub fn input_logging(listing: &[u8]) -> InputLogging {
    let mut found = InputLogging {
        unreadable: listing.len() > MAX_LISTING_BYTES,
        ..InputLogging::default()
    };
    let text = String::from_utf8_lossy(&listing[..listing.len().min(MAX_LISTING_BYTES)]);
    let mut section = Section::None;
    let mut defaults_on = false;
    let mut entries: Vec<RuleEntry> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            section = Section::None;
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            section = if line.starts_with("Matching Defaults entries for ") {
                Section::Defaults
            } else if line.starts_with("Runas and Command-specific defaults for ") {
                Section::Specific
            } else if line.starts_with("User ") && line.contains(" may run the following commands")
            {
                Section::Rules
            } else {
                if mentions_input_logging(line) {
                    found.unreadable = true;
                }
                Section::Unknown
            };
            continue;
        }
        match section {
            Section::Defaults => {
                for option in line.split(',').map(str::trim) {
                    match option {
                        "log_input" => {
                            defaults_on = true;
                            found.log_input_seen = true;
                        }
                        "log_stdin" => {
                            defaults_on = true;
                            found.log_stdin_seen = true;
                        }
                        "!log_input" | "!log_stdin" => defaults_on = false,
                        // Another option that mentions it (a quoted value, a typo sudo
                        // accepted): not understood, so not trusted.
                        other if mentions_input_logging(other) => found.unreadable = true,
                        _ => {}
                    }
                }
            }
            Section::Specific => {
                // sudo 1.9.13 prints several entries on one line, each `Defaults…` first.
                for word in line.split(|c: char| c == ',' || c.is_whitespace()) {
                    match word {
                        "log_input" => found.specific = true,
                        "log_stdin" => {
                            found.specific = true;
                            found.log_stdin_seen = true;
                        }
                        _ => {}
                    }
                }
            }
            Section::Rules => entries.extend(rule_entries(line)),
            Section::None | Section::Unknown => {
                if mentions_input_logging(line) {
                    found.unreadable = true;
                }
            }
        }
    }
    match entries.last() {
        // The last rule matches every command rotor runs as root, so it alone decides.
        Some(last) if last.all && last.as_root => match last.tag {
            Some(on) => {
                found.tag = on;
                found.defaults = false;
                found.specific = false;
            }
            None => found.defaults = defaults_on,
        },
        Some(_) => {
            found.tag = entries.iter().any(|e| e.tag == Some(true));
            let untagged = entries.iter().any(|e| e.tag.is_none());
            found.defaults = defaults_on && untagged;
            found.specific &= untagged;
        }
        None => found.defaults = defaults_on,
    }
    found
}

fn mentions_input_logging(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("log_input") || lower.contains("log_stdin")
}

/// The commands of one rule line, e.g. `(ALL : ALL) NOPASSWD: NOLOG_INPUT: /usr/bin/ls,
/// LOG_INPUT: /usr/bin/cat, (bob) /usr/bin/id`: tags carry from one command to the next on
/// the line (sudo prints them again on each new line), a `(…)` group sets the runas users.
fn rule_entries(line: &str) -> Vec<RuleEntry> {
    let mut entries = Vec::new();
    let mut as_root = false;
    let mut tag: Option<bool> = None;
    // Split at commas outside parentheses: a runas list holds commas of its own.
    let mut pieces = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (idx, c) in line.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                pieces.push(&line[start..idx]);
                start = idx + 1;
            }
            _ => {}
        }
    }
    pieces.push(&line[start..]);
    for piece in pieces {
        let mut rest = piece.trim();
        if let Some(open) = rest.strip_prefix('(') {
            let (runas, after) = open.split_once(')').unwrap_or((open, ""));
            let users = runas.split(':').next().unwrap_or("");
            as_root = users
                .split(|c: char| c == ',' || c.is_whitespace())
                .any(|u| u == "ALL" || u == "root");
            rest = after.trim();
        }
        let mut command = Vec::new();
        for word in rest.split_whitespace() {
            match word {
                "LOG_INPUT:" => tag = Some(true),
                "NOLOG_INPUT:" => tag = Some(false),
                // Other tags (`NOPASSWD:`, `SETENV:`...) and options (`ROLE=…`, `TIMEOUT=…`).
                w if w.ends_with(':')
                    && w[..w.len() - 1]
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c == '_') => {}
                w if w.split_once('=').is_some_and(|(k, _)| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                }) => {}
                w => command.push(w),
            }
        }
        if !command.is_empty() {
            entries.push(RuleEntry {
                as_root,
                all: command == ["ALL"],
                tag,
            });
        }
    }
    entries
}

/// The refusal of a host whose sudo would log the input of rotor's commands, with the
/// sudoers line that fixes it.
pub fn refusal(
    host: &HostName,
    user: &AccountName,
    sudo: &Sudo,
    found: &InputLogging,
) -> ConnectorError {
    let nopasswd = if sudo.is_nopasswd() { "NOPASSWD: " } else { "" };
    let rule = format!("{user} ALL=(ALL:ALL) {nopasswd}NOLOG_INPUT: ALL");
    let stdin = if found.log_stdin_seen {
        ", !log_stdin"
    } else {
        ""
    };
    let defaults = format!("Defaults:{user} !log_input{stdin}");
    let (why, fix) = if found.unreadable {
        (
            format!(
                "rotor could not read `{}`'s answer and cannot rule out that sudo logs the input of {user}'s commands",
                sudo.listing_words()
            ),
            format!("`{defaults}` and, as {user}'s last rule, `{rule}`"),
        )
    } else if found.tag || found.specific {
        (
            if found.tag {
                format!("a rule of {user}'s has the LOG_INPUT: tag")
            } else {
                "a Runas or command-specific Defaults entry (`Defaults>…` or `Defaults!…`) sets log_input or log_stdin".to_owned()
            },
            format!(
                "as {user}'s last rule (sudo uses the last rule that matches, and its tag overrides Defaults) `{rule}`"
            ),
        )
    } else {
        (
            format!(
                "the Defaults for {user} set {}",
                match (found.log_input_seen, found.log_stdin_seen) {
                    (true, true) => "log_input and log_stdin",
                    (false, true) => "log_stdin",
                    _ => "log_input",
                }
            ),
            format!("`{defaults}` (after the line that sets it: sudo applies Defaults in order)"),
        )
    };
    ConnectorError::new(
        FaultClass::Refused,
        format!(
            "{host}: sudo would write the input of rotor's commands as {user} to its I/O log on disk ({why}), and that input holds the new passwords; rotor refuses {host} and changed nothing there. Add {fix} with `visudo -f /etc/sudoers.d/zz-rotor`, then rotate again"
        ),
    )
}

#[cfg(test)]
mod tests;

//! The breach survey (issue 13, `rotor rotate --breach`), pure: what one host holds that an
//! incident responder must look at beside the rotation. From a host as the scan reads it
//! ([`ScannedHost`]), the inventory's view of that host and the accounts the run rotated, it
//! says which accounts the inventory does not know yet can be logged in to (a password, an
//! empty password or an authorised key: the attacker's backdoor, or an account nobody
//! manages), and who is logged in now as a rotated account (a session opened before the
//! rotation stays open) or as an account the inventory does not know. Each comes with what to
//! do.
//!
//! Invariants:
//! - rotor never deletes, locks or logs out anything on its own: the survey only says what
//!   an operator should do, with the command to do it.
//! - Nothing in a survey holds a hash or a secret: a password is said as `set`, `empty` or
//!   `none` (the tests serialize a survey and look for the hash).
//! - Names and session fields are the host's words (outside text): escaped where shown
//!   (`report::breach_text`), and put into a suggested command only when the name passes the
//!   Linux user-name rule (`AccountName`), so a hostile name cannot become a pasted command.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::credential::AccountName;
use crate::inventory::Host;
use crate::target::{ScannedHost, Session};

/// One host's survey, for the run report's text and its JSON.
#[derive(Clone, Debug, Serialize)]
pub struct HostSurvey {
    pub host: String,
    /// The host could not be read: nothing is known of it (said so, never "nothing found").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Accounts the inventory does not list for the host that can be logged in to.
    pub unknown_accounts: Vec<UnknownAccount>,
    /// Sessions logged in as an account the run rotated.
    pub sessions: Vec<SessionFinding>,
    /// Sessions logged in as an account the inventory does not list for the host.
    pub unknown_account_sessions: Vec<SessionFinding>,
    /// Sessions of accounts the inventory knows but the run did not rotate (counted only).
    pub n_other_sessions: usize,
    /// Why the sessions could not be read, or were read only in part.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions_unread: Option<String>,
    /// Accounts whose `authorized_keys` was not read (a link, another owner): a key there
    /// is unknown, so an unknown account may be missing from `unknown_accounts`.
    pub keys_unread: Vec<KeysUnread>,
}

/// An account the inventory does not know that can be logged in to.
#[derive(Clone, Debug, Serialize)]
pub struct UnknownAccount {
    /// The name as the host lists it.
    pub name: String,
    pub uid: Option<u32>,
    pub shell: String,
    /// `set` (a usable hash), `empty` (no password at all) or `none`.
    pub password: PasswordState,
    /// SHA256 fingerprints of the keys its `authorized_keys` lets in.
    pub keys: Vec<String>,
    pub what_to_do: String,
}

/// What an account's password field holds, without the hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordState {
    Set,
    Empty,
    None,
}

/// A session to look at, and what to do about it.
#[derive(Clone, Debug, Serialize)]
pub struct SessionFinding {
    #[serde(flatten)]
    pub session: Session,
    pub what_to_do: String,
}

/// An account whose keys were not read, and why.
#[derive(Clone, Debug, Serialize)]
pub struct KeysUnread {
    pub account: String,
    pub why: String,
}

impl HostSurvey {
    /// A host that could not be read.
    pub fn unread(host: &str, why: String) -> HostSurvey {
        HostSurvey {
            host: host.to_owned(),
            error: Some(why),
            unknown_accounts: Vec::new(),
            sessions: Vec::new(),
            unknown_account_sessions: Vec::new(),
            n_other_sessions: 0,
            sessions_unread: None,
            keys_unread: Vec::new(),
        }
    }

    /// Whether an operator has something to look at here (a finding, or a host or part of
    /// one that could not be read).
    pub fn needs_attention(&self) -> bool {
        self.error.is_some()
            || !self.unknown_accounts.is_empty()
            || !self.sessions.is_empty()
            || !self.unknown_account_sessions.is_empty()
            || self.sessions_unread.is_some()
            || !self.keys_unread.is_empty()
    }
}

/// Surveys one host: `scanned` as read from it, `host` as the inventory lists it, `rotated`
/// the accounts the run rotated there.
pub fn survey(host: &Host, scanned: &ScannedHost, rotated: &[AccountName]) -> HostSurvey {
    // The accounts the inventory knows on this host: its listed accounts (either slot) and
    // the one rotor connects as.
    let known: BTreeSet<&str> = host
        .accounts
        .iter()
        .map(|a| a.name.as_str())
        .chain(std::iter::once(host.connect.user.as_str()))
        .collect();
    let rotated: BTreeSet<&str> = rotated.iter().map(AccountName::as_str).collect();
    let unknown_accounts = scanned
        .accounts
        .iter()
        .filter(|a| !known.contains(a.name.as_str()))
        .filter_map(|a| {
            let keys = scanned.keys.get(&a.name).cloned().unwrap_or_default();
            let password = match (&a.password_hash, a.empty_password) {
                (Some(_), _) => PasswordState::Set,
                (None, true) => PasswordState::Empty,
                (None, false) => PasswordState::None,
            };
            // No password and no key: a system account nobody logs in to.
            (password != PasswordState::None || !keys.is_empty()).then(|| UnknownAccount {
                what_to_do: account_advice(&a.name, a.uid, password, !keys.is_empty()),
                name: a.name.clone(),
                uid: a.uid,
                shell: a.shell.clone(),
                password,
                keys,
            })
        })
        .collect();
    let mut sessions = Vec::new();
    let mut unknown_account_sessions = Vec::new();
    let mut n_other_sessions = 0;
    for s in &scanned.sessions {
        if rotated.contains(s.account.as_str()) {
            sessions.push(SessionFinding {
                what_to_do: rotated_session_advice(s),
                session: s.clone(),
            });
        } else if !known.contains(s.account.as_str()) {
            unknown_account_sessions.push(SessionFinding {
                what_to_do: unknown_session_advice(s),
                session: s.clone(),
            });
        } else {
            n_other_sessions += 1;
        }
    }
    HostSurvey {
        host: host.name.to_string(),
        error: None,
        unknown_accounts,
        sessions,
        unknown_account_sessions,
        n_other_sessions,
        sessions_unread: scanned.sessions_unread.clone(),
        keys_unread: scanned
            .unreadable_keys
            .iter()
            .map(|(account, why)| KeysUnread {
                account: account.clone(),
                why: why.clone(),
            })
            .collect(),
    }
}

/// The name as it may appear in a suggested command: only a valid Linux user name.
fn command_name(name: &str) -> Option<&str> {
    AccountName::parse(name).ok().map(|_| name)
}

fn account_advice(name: &str, uid: Option<u32>, password: PasswordState, keys: bool) -> String {
    let what = match (password, keys) {
        (PasswordState::Set, true) => "a password and authorised SSH keys",
        (PasswordState::Set, false) => "a password",
        (PasswordState::Empty, true) => "an empty password and authorised SSH keys",
        (PasswordState::Empty, false) => "an empty password (a login without one)",
        (PasswordState::None, _) => "authorised SSH keys",
    };
    let uid = uid.map_or_else(|| "unknown".to_owned(), |u| u.to_string());
    match command_name(name) {
        Some(n) => format!(
            "the inventory does not know this account, yet it has {what}: check who created it; if nobody knows, lock it (`usermod -L -e 1 {n}`) and remove its keys (`~{n}/.ssh/authorized_keys`), or add it to the inventory so rotor rotates it. rotor does not lock or delete accounts itself"
        ),
        None => format!(
            "the inventory does not know this account, yet it has {what}, and its name is not a valid Linux user name (uid {uid}): look at it on the host (`getent passwd {uid}`) and check who created it; if nobody knows, lock it and remove its keys. rotor does not lock or delete accounts itself"
        ),
    }
}

/// How to end one session, and only it: the processes of its terminal (`pkill -t`), never
/// every process of the account (`pkill -u root` would end sshd and every service of root's).
fn end_session(s: &Session) -> String {
    let line = s.line.as_str();
    let terminal = line
        .strip_prefix("pts/")
        .or_else(|| line.strip_prefix("tty"))
        .is_some_and(|n| !n.is_empty() && n.len() <= 6 && n.bytes().all(|b| b.is_ascii_digit()));
    if terminal {
        format!("`pkill -KILL -t {line}` (the processes of that terminal only)")
    } else {
        "its sshd process (`ps -eo pid,user,lstart,args | grep 'sshd: '` shows it): end that one, not every process of the account".to_owned()
    }
}

fn rotated_session_advice(s: &Session) -> String {
    format!(
        "this session was opened before the rotation and stays open: once you know it is not yours, end it with {}",
        end_session(s)
    )
}

fn unknown_session_advice(s: &Session) -> String {
    match command_name(&s.account) {
        Some(n) => format!(
            "an account the inventory does not know is logged in: find out who it is; if nobody knows, end the session ({}) and lock the account (`usermod -L -e 1 {n}`)",
            end_session(s)
        ),
        None => "an account the inventory does not know is logged in, and its name is not a valid Linux user name: look at it on the host (`who -u`) before ending it".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use crate::target::AccountFacts;

    const HASH: &str = "$y$j9T$Wq3eW0yJjZ$4lHbJ1pZqR2uGq9Xr1vY0zZQzC8nJm2yHqR2x1kPq3A";

    /// A host as the inventory lists it: svc_app and svc_backup, connecting as `connect`.
    fn host(connect: &str) -> Host {
        let yaml = format!(
            "version: 1\nhosts:\n  - name: h1\n    address: 127.0.0.1\n    host_key: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\"\n    connect: {{ user: {connect}, key: /k }}\n    accounts:\n      - {{ name: svc_app, playbook: linux-password }}\n      - {{ name: svc_backup, playbook: linux-password }}\n"
        );
        crate::inventory::parse(&yaml, std::path::Path::new("test.yaml"))
            .expect("test inventory is valid")
            .hosts
            .remove(0)
    }

    /// An account: `name` with `pw` (`hash`, `empty`, `none`), `shell`.
    fn account(name: &str, pw: &str, shell: &str) -> AccountFacts {
        AccountFacts {
            name: name.to_owned(),
            uid: Some(1000 + name.len() as u32),
            home: format!("/home/{name}"),
            shell: shell.to_owned(),
            password_hash: (pw == "hash").then(|| Secret::new(HASH.to_owned())),
            empty_password: pw == "empty",
            last_change_day: None,
        }
    }

    fn session(account: &str, line: &str) -> Session {
        Session {
            account: account.to_owned(),
            line: line.to_owned(),
            from: "127.0.0.1".to_owned(),
            since: "Dec 2 07:03".to_owned(),
        }
    }

    /// The survey of `scanned` on a host connecting as `connect`, `rotated` rotated, in
    /// compact lines: `unknown NAME PASSWORD KEYS`, `session NAME LINE`, `unknown-session
    /// NAME LINE`, `other N`, `sessions-unread`, `keys-unread NAME`.
    fn check(connect: &str, scanned: &ScannedHost, rotated: &[&str], expect: &[&str]) {
        let rotated: Vec<AccountName> = rotated
            .iter()
            .map(|a| AccountName::parse(a).unwrap())
            .collect();
        let s = survey(&host(connect), scanned, &rotated);
        let mut got: Vec<String> = Vec::new();
        for a in &s.unknown_accounts {
            got.push(format!(
                "unknown {} {:?} {}",
                a.name,
                a.password,
                a.keys.join(",")
            ));
        }
        for f in &s.sessions {
            got.push(format!("session {} {}", f.session.account, f.session.line));
        }
        for f in &s.unknown_account_sessions {
            got.push(format!(
                "unknown-session {} {}",
                f.session.account, f.session.line
            ));
        }
        if s.n_other_sessions > 0 {
            got.push(format!("other {}", s.n_other_sessions));
        }
        if s.sessions_unread.is_some() {
            got.push("sessions-unread".to_owned());
        }
        for k in &s.keys_unread {
            got.push(format!("keys-unread {}", k.account));
        }
        assert_eq!(got, expect);
        // The invariant: no hash in what the survey says.
        let json = serde_json::to_string(&s).unwrap();
        assert!(!json.contains(HASH) && !json.contains("$y$"), "{json}");
        assert_eq!(
            s.needs_attention(),
            !expect.is_empty() && expect != ["other 1"]
        );
    }

    fn scanned(accounts: Vec<AccountFacts>) -> ScannedHost {
        ScannedHost {
            accounts,
            ..Default::default()
        }
    }

    #[test]
    fn surveys() {
        // The template: only managed accounts and system accounts; nothing to say.
        let base = || {
            vec![
                account("root", "hash", "/bin/bash"),
                account("daemon", "none", "/usr/sbin/nologin"),
                account("svc_app", "hash", "/bin/bash"),
                account("svc_backup", "hash", "/bin/bash"),
            ]
        };
        check("root", &scanned(base()), &["svc_app"], &[]);

        // A planted account with a password, one with only a key, one with an empty
        // password; a locked one without a key is no credential.
        let mut h = scanned(base());
        h.accounts.push(account("planted", "hash", "/bin/bash"));
        h.accounts.push(account("keyonly", "none", "/bin/sh"));
        h.accounts.push(account("nopass", "empty", "/bin/bash"));
        h.accounts.push(account("locked", "none", "/bin/bash"));
        h.keys.insert("keyonly".into(), vec!["SHA256:k1".into()]);
        check(
            "root",
            &h,
            &[],
            &[
                "unknown planted Set ",
                "unknown keyonly None SHA256:k1",
                "unknown nopass Empty ",
            ],
        );

        // Connecting as another account: root, not in the inventory, with a password, is
        // unknown; the connect account is known.
        let mut h = scanned(base());
        h.accounts.push(account("admin", "hash", "/bin/bash"));
        check("admin", &h, &[], &["unknown root Set "]);

        // Sessions: a rotated account's, an unknown account's, root's (known, not rotated).
        let mut h = scanned(base());
        h.sessions = vec![
            session("svc_app", "pts/1"),
            session("bob", "pts/2"),
            session("root", "pts/3"),
            session("svc_backup", "pts/4"),
        ];
        check(
            "root",
            &h,
            &["svc_app"],
            &[
                "session svc_app pts/1",
                "unknown-session bob pts/2",
                "other 2",
            ],
        );
        let mut h = scanned(base());
        h.sessions = vec![session("root", "pts/3")];
        check("root", &h, &["svc_app"], &["other 1"]);

        // What could not be read is said.
        let mut h = scanned(base());
        h.sessions_unread = Some("who failed".into());
        h.unreadable_keys = vec![("svc_backup".into(), "a link".into())];
        check(
            "root",
            &h,
            &["svc_app"],
            &["sessions-unread", "keys-unread svc_backup"],
        );
    }

    #[test]
    fn advice_names_only_valid_names_in_commands() {
        let mut h = scanned(vec![account("planted", "hash", "/bin/bash")]);
        h.accounts.push(account("x; rm -rf /", "hash", "/bin/bash"));
        h.sessions = vec![session("svc_app", "pts/1"), session("$(reboot)", "pts/2")];
        let rotated = [AccountName::parse("svc_app").unwrap()];
        let s = survey(&host("root"), &h, &rotated);
        assert!(
            s.unknown_accounts[0]
                .what_to_do
                .contains("`usermod -L -e 1 planted`"),
            "{}",
            s.unknown_accounts[0].what_to_do
        );
        assert!(s.unknown_accounts[0].what_to_do.contains("does not lock"));
        let hostile = &s.unknown_accounts[1].what_to_do;
        assert!(!hostile.contains("rm -rf"), "{hostile}");
        assert!(hostile.contains("getent passwd 1011"), "{hostile}");
        // One session ends, by its terminal: never every process of the account (root's
        // would be sshd and every service).
        assert!(
            s.sessions[0]
                .what_to_do
                .contains("`pkill -KILL -t pts/1` (the processes of that terminal only)"),
            "{}",
            s.sessions[0].what_to_do
        );
        assert!(!s.sessions[0].what_to_do.contains("-u "));
        assert!(!s.unknown_account_sessions[0].what_to_do.contains("reboot"));
        // A terminal name that is not one goes into no command.
        let mut h = scanned(vec![]);
        h.sessions = vec![
            session("svc_app", "pts/1; reboot"),
            session("svc_app", "notty"),
        ];
        let s = survey(&host("root"), &h, &rotated);
        for f in &s.sessions {
            assert!(
                !f.what_to_do.contains("reboot") && !f.what_to_do.contains("pkill"),
                "{}",
                f.what_to_do
            );
        }
    }

    #[test]
    fn an_unread_host_says_so() {
        let s = HostSurvey::unread("h9", "host unreachable".into());
        assert!(s.needs_attention());
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["error"], "host unreachable");
        assert_eq!(v["unknown_accounts"], serde_json::json!([]));
    }
}

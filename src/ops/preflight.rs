//! Preflight (`rotor inventory check`): what would stop a rotation, found before one runs.
//! [`files_only`] checks the local files the inventory names (`inventory::files`; no vault,
//! no network); [`check`] does that, then connects to every host and directory in the
//! selection and looks: TCP, the host key against its pin, the connect identity (the logins
//! a rotation would use, in its order), sudo in the mode rotor would use, each listed account
//! (exists, not locked), whether sshd offers password login to each account whose password is
//! proven by a login; for a directory, TLS, rotor's bind, each search's count.
//!
//! Split as the rest of `ops`: the gathering ([`probe_ssh_host`], [`probe_ldap_directory`],
//! behind `Targets::probe_host`/`probe_directory`) returns facts; the judgement
//! ([`judge_host`], [`judge_directory`]) is pure and turns facts into [`Problem`]s, each
//! with what to do.
//!
//! Invariants: **nothing is changed** on any target and nothing is written to the vault (no
//! bootstrap-key sighting, no login counted); only rotor's connect identity and bind secret
//! log in, never an account's own secret, so no account's lockout budget is spent (the
//! password-login check sends only SSH's `none` request); a changed host key is never
//! accepted, only reported. Nor is rotor's own budget spent on a guess: the connect identity
//! logs in with the vault's current secret or the key file only, never the pending secret of
//! an open rotation; a host or directory whose connect or bind credential has a rotation open
//! (the target may hold either secret) is not connected to at all, and every open rotation in
//! the selection is reported as a problem ("run `rotor recover`") instead.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::Context;
use crate::connector::ssh::Offered;
use crate::connector::{ConnectorError, FaultClass};
use crate::credential::AccountName;
use crate::engine::blast::SkipReason;
use crate::engine::fanout;
use crate::inventory::files::{DirectoryLines, FieldLines, FileProblem, HostLines};
use crate::inventory::{ConnectAuth, Directory, DirectoryAccounts, Host, Inventory, Selection};
use crate::recipe::{Body, Recipe, Step};
use crate::target::linux::AccountState;

/// Told after each host or directory is checked: its name and how many problems it has.
pub type OnChecked = Arc<dyn Fn(&str, usize) + Send + Sync>;

/// What to check.
pub struct PreflightRequest<'a> {
    pub inventory: &'a Inventory,
    pub selection: Selection,
    /// Hosts checked at once.
    pub concurrency: usize,
    /// Deadline of each SSH or LDAP step.
    pub step_timeout: Duration,
    /// Told after each host or directory: its name and how many problems it has.
    pub progress: Option<OnChecked>,
}

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// A rotation would fail or be refused.
    Error,
    /// A rotation would work, but not as one would expect (a password proven by its hash
    /// rather than a login, a search that finds nobody).
    Warning,
}

/// One thing that would stop (or change) a rotation, with what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The host or directory; empty for the inventory as a whole.
    pub target: String,
    /// What was checked: `files`, `reachable`, `host_key`, `connect`, `sudo`, `account`,
    /// `locked`, `password_login`, `tls`, `bind`, `search`.
    pub check: &'static str,
    pub severity: Severity,
    pub message: String,
    pub fix: String,
    /// The inventory file and the line of the field concerned.
    pub file: Option<PathBuf>,
    pub line: Option<u64>,
}

impl Problem {
    /// `FILE:LINE: TARGET: [warning: ]message: fix`, escaped: one line.
    pub fn line_text(&self) -> String {
        let esc = |s: &str| crate::text::escape(&s.replace('\n', " ")).into_owned();
        let mut out = String::new();
        if let Some(file) = &self.file {
            out.push_str(&esc(&file.display().to_string()));
            if let Some(line) = self.line.filter(|l| *l > 0) {
                out.push_str(&format!(":{line}"));
            }
            out.push_str(": ");
        }
        if !self.target.is_empty() {
            out.push_str(&esc(&self.target));
            out.push_str(": ");
        }
        if self.severity == Severity::Warning {
            out.push_str("warning: ");
        }
        out.push_str(&esc(&self.message));
        out.push_str(": ");
        out.push_str(&esc(&self.fix));
        out
    }
}

impl From<FileProblem> for Problem {
    fn from(p: FileProblem) -> Problem {
        Problem {
            target: p.target,
            check: "files",
            severity: Severity::Error,
            message: p.message,
            fix: p.fix,
            line: Some(p.line),
            file: Some(p.file),
        }
    }
}

/// What a preflight found.
#[derive(Debug, Clone, Serialize)]
pub struct PreflightReport {
    pub problems: Vec<Problem>,
    pub checked: Checked,
    /// Whether hosts and directories were connected to (`--connect`), or only files read.
    pub connected: bool,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Checked {
    pub hosts: usize,
    pub directories: usize,
}

impl PreflightReport {
    /// 3 when an error-severity problem was found (DESIGN.md: problems found), else 0:
    /// warnings are reported but do not fail the check (a CI gate must be able to pass).
    pub fn exit_code(&self) -> i32 {
        if self.problems.iter().any(|p| p.severity == Severity::Error) {
            3
        } else {
            0
        }
    }
}

/// The local files of the selection's hosts and directories (and `playbooks_dir`), without
/// a vault or a network.
pub fn files_only(inv: &Inventory, selection: &Selection) -> PreflightReport {
    let lines = crate::inventory::files::field_lines(inv);
    let problems = file_problems(inv, selection, &lines)
        .into_iter()
        .map(Problem::from)
        .collect();
    PreflightReport {
        problems,
        checked: Checked {
            hosts: selection.hosts.len(),
            directories: selection.directories.len(),
        },
        connected: false,
    }
}

fn file_problems(inv: &Inventory, selection: &Selection, lines: &FieldLines) -> Vec<FileProblem> {
    // Only what the selection names, plus the inventory-wide playbooks_dir.
    let mut problems: Vec<FileProblem> = crate::inventory::files::check_files(inv, lines)
        .into_iter()
        .filter(|p| {
            p.target.is_empty()
                || selection.hosts.iter().any(|h| h.name.as_str() == p.target)
                || selection
                    .directories
                    .iter()
                    .any(|d| d.directory.name.as_str() == p.target)
        })
        .collect();
    problems.sort_by_key(|p| p.line);
    problems
}

/// Files first, then every host (at once, up to `concurrency`) and every directory of the
/// selection. A host whose files make a connection impossible (its only key file missing, its
/// known_hosts pin unreadable) is not connected to: its file problems say what to fix.
pub fn check(ctx: &Context, req: PreflightRequest<'_>) -> PreflightReport {
    let _span = tracing::info_span!("preflight").entered();
    let inv = req.inventory;
    let lines = crate::inventory::files::field_lines(inv);
    let files = file_problems(inv, &req.selection, &lines);
    let (open, open_blocked) = match ctx.records.status() {
        Ok(statuses) => open_rotations(inv, &req.selection, &statuses, &lines),
        Err(e) => (
            vec![problem(
                "",
                "rotation",
                Severity::Error,
                format!("cannot read the vault's rotations: {e}"),
                "check the vault (`rotor status`); no host or directory was connected to".into(),
                &inv.path,
                0,
            )],
            // Without the rotations, an open one of a connect secret cannot be ruled out.
            req.selection
                .hosts
                .iter()
                .map(|h| h.name.to_string())
                .chain(
                    req.selection
                        .directories
                        .iter()
                        .map(|d| d.directory.name.to_string()),
                )
                .collect(),
        ),
    };
    let blocked_names: Vec<String> = files
        .iter()
        .filter(|p| p.blocks_connect)
        .map(|p| p.target.clone())
        .chain(open_blocked)
        .collect();
    let blocked = |name: &str| blocked_names.iter().any(|b| b == name);
    let hosts: Vec<Host> = req
        .selection
        .hosts
        .iter()
        .filter(|h| !blocked(h.name.as_str()))
        .cloned()
        .collect();
    let work = Arc::new(ProbeHosts {
        targets: ctx.targets.clone(),
        step_timeout: req.step_timeout,
        file: inv.path.clone(),
        lines: lines.clone(),
        progress: req.progress.clone(),
    });
    let host_problems: Vec<Vec<Problem>> = ctx.runtime.block_on(fanout::run(
        work,
        hosts,
        &fanout::Limits::new(req.concurrency),
    ));
    let mut problems: Vec<Problem> = files.into_iter().map(Problem::from).collect();
    problems.extend(open);
    problems.extend(host_problems.into_iter().flatten());
    for d in &req.selection.directories {
        let d = &d.directory;
        if blocked(d.name.as_str()) {
            continue;
        }
        let facts = ctx.targets.probe_directory(d, req.step_timeout);
        let found = judge_directory(d, &facts, &lines.directory(d.name.as_str()), &inv.path);
        if let Some(progress) = &req.progress {
            progress(d.name.as_str(), found.len());
        }
        problems.extend(found);
    }
    PreflightReport {
        problems,
        checked: Checked {
            hosts: req.selection.hosts.len(),
            directories: req.selection.directories.len(),
        },
        connected: true,
    }
}

/// The rotations left open (no live rotor holds their lease) among the credentials of the
/// selection: the hosts' accounts and connect credentials, the directories' bind credentials
/// and accounts. Each is a problem; the second list names the hosts and directories not to
/// connect to, since their connect or bind credential is the one open (the target may hold
/// the pending secret or the current one: a login with the wrong one is a failed login that
/// counts towards the target's lockout, and nothing records it). Pure.
pub fn open_rotations(
    inv: &Inventory,
    selection: &Selection,
    statuses: &[crate::store::CredentialStatus],
    lines: &FieldLines,
) -> (Vec<Problem>, Vec<String>) {
    let mut problems = Vec::new();
    let mut blocked = Vec::new();
    let recover = format!(
        "run `rotor recover -i {}` to settle it, then check again",
        inv.path.display()
    );
    let open = |cred: &crate::credential::CredentialId| {
        statuses
            .iter()
            .find(|s| &s.cred == cred && s.open_rotation && s.lease_holder.is_none())
    };
    let said = |s: &crate::store::CredentialStatus| match &s.last_rotation {
        Some(r) => format!("rotation {} of {} is open", r.id, s.cred),
        None => format!("a rotation of {} is open", s.cred),
    };
    for host in &selection.hosts {
        let name = host.name.as_str();
        let hl = lines.host(name);
        let mut connect: Vec<crate::credential::CredentialId> =
            host.connect_credential().into_iter().collect();
        if let ConnectAuth::Vault(cred) = &host.connect.auth
            && !connect.contains(cred)
        {
            connect.push(cred.clone());
        }
        for cred in &connect {
            if let Some(s) = open(cred) {
                problems.push(problem(
                    name,
                    "rotation",
                    Severity::Error,
                    format!(
                        "{}: it is rotor's connect credential, so the host was not connected to (it may hold the new secret or the old)",
                        said(s)
                    ),
                    recover.clone(),
                    &inv.path,
                    hl.connect,
                ));
                blocked.push(name.to_owned());
            }
        }
        let mut seen: Vec<crate::credential::CredentialId> = connect;
        for a in &host.accounts {
            let cred = a.credential(&host.name);
            if seen.contains(&cred) {
                continue;
            }
            if let Some(s) = open(&cred) {
                let line = hl
                    .accounts
                    .get(a.name.as_str())
                    .copied()
                    .unwrap_or(hl.entry);
                problems.push(problem(
                    name,
                    "rotation",
                    Severity::Error,
                    said(s),
                    recover.clone(),
                    &inv.path,
                    line,
                ));
            }
            seen.push(cred);
        }
    }
    for d in &selection.directories {
        let d = &d.directory;
        let name = d.name.as_str();
        let dl = lines.directory(name);
        if let Some(s) = open(&d.bind_credential) {
            problems.push(problem(
                name,
                "rotation",
                Severity::Error,
                format!(
                    "{}: it is rotor's bind credential, so the directory was not connected to (it may hold the new secret or the old)",
                    said(s)
                ),
                recover.clone(),
                &inv.path,
                dl.bind,
            ));
            blocked.push(name.to_owned());
        }
        for s in statuses.iter().filter(|s| {
            s.cred.host.as_str() == name
                && s.cred != d.bind_credential
                && s.open_rotation
                && s.lease_holder.is_none()
        }) {
            problems.push(problem(
                name,
                "rotation",
                Severity::Error,
                said(s),
                recover.clone(),
                &inv.path,
                dl.entry,
            ));
        }
    }
    (problems, blocked)
}

/// The hosts' fan-out: one probe per host on the blocking pool, judged there.
struct ProbeHosts {
    targets: Arc<dyn super::Targets>,
    step_timeout: Duration,
    file: PathBuf,
    lines: FieldLines,
    progress: Option<OnChecked>,
}

impl fanout::Work for ProbeHosts {
    type Item = Host;
    type Output = Vec<Problem>;
    type Receipt = String;

    fn name(&self, host: &Host) -> String {
        host.name.to_string()
    }
    fn receipt(&self, host: &Host) -> String {
        host.name.to_string()
    }
    fn run(&self, host: Host) -> Vec<Problem> {
        let users = password_users(&host);
        let facts = self.targets.probe_host(&host, self.step_timeout, &users);
        let found = judge_host(
            &host,
            &facts,
            &self.lines.host(host.name.as_str()),
            &self.file,
        );
        if let Some(progress) = &self.progress {
            progress(host.name.as_str(), found.len());
        }
        found
    }
    fn skip(&self, host: Host, _: SkipReason, detail: &str) -> Vec<Problem> {
        vec![problem(
            host.name.as_str(),
            "reachable",
            Severity::Error,
            format!("not checked: {detail}"),
            "run the check again".into(),
            &self.file,
            0,
        )]
    }
    fn panicked(&self, host: String, _: &tokio::task::JoinError) -> Vec<Problem> {
        vec![problem(
            &host,
            "reachable",
            Severity::Error,
            "the check of this host failed inside rotor (a panic)".into(),
            "run it again with -vv and report the log".into(),
            &self.file,
            0,
        )]
    }
    fn failed(&self, _: &Vec<Problem>) -> bool {
        false
    }
}

/// The accounts of `host` whose password a rotation proves by a login as the account
/// (`ssh-password-login` among the playbook's `prove` steps), once each.
pub fn password_users(host: &Host) -> Vec<AccountName> {
    let mut users: Vec<AccountName> = Vec::new();
    for a in &host.accounts {
        if proves_by_login(&a.recipe) && !users.contains(&a.name) {
            users.push(a.name.clone());
        }
    }
    users
}

fn proves_by_login(recipe: &Recipe) -> bool {
    matches!(&recipe.body, Body::Steps(s) if s.prove.iter().any(|st| matches!(st, Step::PasswordLogin)))
}

/// Whether the playbook reads the account's password hash (so a locked account is refused,
/// and a password sshd does not take can be proven by the hash).
fn reads_password_hash(recipe: &Recipe) -> bool {
    matches!(&recipe.body, Body::Steps(s) if s.password_hash.is_some())
}

/// What a host showed. Built by [`probe_ssh_host`] (or a test); judged by [`judge_host`].
#[derive(Debug)]
pub struct HostFacts {
    /// TCP, the host key against the pin, the connect identity.
    pub login: Result<(), ConnectorError>,
    /// How commands become root; `None` when not reached.
    pub sudo: Option<Result<(), ConnectorError>>,
    /// Each listed account's state; `None` when not reached.
    pub accounts: Option<Result<Vec<AccountState>, ConnectorError>>,
    /// What sshd offers each account whose password is proven by a login.
    pub methods: Vec<(AccountName, Result<Offered, ConnectorError>)>,
}

impl HostFacts {
    /// A host that could not be logged in to: nothing else is known.
    pub fn not_connected(e: ConnectorError) -> HostFacts {
        HostFacts {
            login: Err(e),
            sudo: None,
            accounts: None,
            methods: Vec::new(),
        }
    }
}

/// What a directory showed. Built by [`probe_ldap_directory`]; judged by
/// [`judge_directory`].
#[derive(Debug)]
pub struct DirectoryFacts {
    /// TCP and TLS (the certificate verified), before any bind.
    pub tls: Result<(), ConnectorError>,
    pub bind: BindFact,
    /// Each search of the directory's `accounts:` (by index there) and how many entries it
    /// found.
    pub searches: Vec<(usize, Result<usize, ConnectorError>)>,
}

#[derive(Debug)]
pub enum BindFact {
    /// rotor's bind secret is not in the vault.
    NoSecret,
    /// Not tried (TLS failed).
    NotTried,
    Tried(Result<(), ConnectorError>),
}

/// Logs in as a rotation would but for an open rotation's pending secret
/// (`SshFleet::login_shell`: the current secret or the key file, in a rotation's order), finds the
/// sudo mode as a rotation would (`SshShell::use_sudo`), reads the accounts' states, and asks
/// sshd which methods it offers each of `password_users` (a fresh connection each, `none`
/// request only). Changes nothing; writes nothing to the vault.
pub fn probe_ssh_host(
    fleet: &crate::target::linux::SshFleet,
    host: &Host,
    password_users: &[AccountName],
) -> HostFacts {
    let mut shell = match fleet.login_shell(host) {
        Ok(shell) => shell,
        Err(e) => return HostFacts::not_connected(e),
    };
    let sudo = fleet
        .sudo_passwords(host)
        .and_then(|passwords| shell.use_sudo(passwords));
    let accounts = sudo.is_ok().then(|| {
        let mut names: Vec<AccountName> = Vec::new();
        for a in &host.accounts {
            if !names.contains(&a.name) {
                names.push(a.name.clone());
            }
        }
        shell.account_states(&names)
    });
    drop(shell);
    let target = fleet.target(host);
    let methods = password_users
        .iter()
        .map(|user| {
            (
                user.clone(),
                crate::connector::ssh::offered_methods(&target, user),
            )
        })
        .collect();
    HostFacts {
        login: Ok(()),
        sudo: Some(sudo),
        accounts,
        methods,
    }
}

/// Connects (TLS verified, no bind), then binds as rotor with the vault's bind secret, then
/// runs each search of the directory's `accounts:` and counts what it finds. Changes
/// nothing. Blocks on `runtime` (call it from a plain or blocking thread).
pub fn probe_ldap_directory(
    store: &dyn crate::engine::Store,
    runtime: &tokio::runtime::Handle,
    d: &Directory,
    step_timeout: Duration,
) -> DirectoryFacts {
    use crate::connector::ldap::{DirectorySpec, DirectoryTarget, LdapAdmin, SearchScope};
    let not_tried = |tls| DirectoryFacts {
        tls,
        bind: BindFact::NotTried,
        searches: Vec::new(),
    };
    let target = match DirectoryTarget::prepare(&DirectorySpec {
        name: d.name.clone(),
        url: d.url.clone(),
        ca_file: d.ca_file.clone(),
        danger_accept_invalid_certs: d.danger_accept_invalid_certs,
        bind_dn: d.bind_dn.clone(),
        timeout: step_timeout,
        limits: crate::connector::ldap::SearchLimits::DEFAULT,
    }) {
        Ok(t) => t,
        Err(e) => return not_tried(Err(e)),
    };
    if let Err(e) = runtime.block_on(crate::connector::ldap::check_tls(&target)) {
        return not_tried(Err(e));
    }
    let secret = match store.current(&d.bind_credential) {
        Ok(Some(secret)) => secret,
        Ok(None) => {
            return DirectoryFacts {
                tls: Ok(()),
                bind: BindFact::NoSecret,
                searches: Vec::new(),
            };
        }
        Err(e) => {
            return DirectoryFacts {
                tls: Ok(()),
                bind: BindFact::Tried(Err(ConnectorError::new(
                    FaultClass::ConnectAuthRejected,
                    format!(
                        "{}: cannot read rotor's bind secret {} from the vault: {e}",
                        d.name, d.bind_credential
                    ),
                ))),
                searches: Vec::new(),
            };
        }
    };
    let admin = match runtime.block_on(LdapAdmin::connect(&target, &secret)) {
        Ok(admin) => admin,
        Err(e) => {
            return DirectoryFacts {
                tls: Ok(()),
                bind: BindFact::Tried(Err(e)),
                searches: Vec::new(),
            };
        }
    };
    let mut searches = Vec::new();
    for (idx, source) in d.accounts.iter().enumerate() {
        if let DirectoryAccounts::Search {
            base,
            filter,
            scope,
        } = source
        {
            let scope = match scope {
                crate::inventory::LdapScope::One => SearchScope::OneLevel,
                crate::inventory::LdapScope::Sub => SearchScope::Subtree,
            };
            let found = runtime
                .block_on(admin.search(base, filter, scope))
                .map(|entries| entries.len());
            searches.push((idx, found));
        }
    }
    DirectoryFacts {
        tls: Ok(()),
        bind: BindFact::Tried(Ok(())),
        searches,
    }
}

fn problem(
    target: &str,
    check: &'static str,
    severity: Severity,
    message: String,
    fix: String,
    file: &Path,
    line: u64,
) -> Problem {
    Problem {
        target: target.to_owned(),
        check,
        severity,
        message,
        fix,
        file: Some(file.to_owned()),
        line: Some(line),
    }
}

/// The connector's message without its `HOST (ADDRESS:PORT): ` or `HOST: ` lead: the line
/// names the host already.
fn without_lead(message: &str, host: &str) -> String {
    crate::text::without_host_lead(message, host).to_owned()
}

/// The problems a host's facts show, each with what to do. Pure.
pub fn judge_host(host: &Host, facts: &HostFacts, lines: &HostLines, file: &Path) -> Vec<Problem> {
    let name = host.name.as_str();
    let at = |check, severity, message, fix, line| {
        problem(name, check, severity, message, fix, file, line)
    };
    let mut out = Vec::new();
    if let Err(e) = &facts.login {
        let message = without_lead(&e.message, name);
        let (check, fix, line) = match e.class {
            FaultClass::Unreachable => (
                "reachable",
                format!(
                    "check that the host is up and that sshd listens on {}:{} (`address` and `port` in the inventory)",
                    host.address, host.port
                ),
                lines.entry,
            ),
            FaultClass::TimedOut => (
                "reachable",
                format!(
                    "check the host and the network to {}:{}: it did not answer within the step timeout (--step-timeout)",
                    host.address, host.port
                ),
                lines.entry,
            ),
            FaultClass::HostKeyMismatch => (
                "host_key",
                "check the host's key out of band (on its console: `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`) before you pin anything; if the host was reinstalled, pin its new key in the inventory. rotor never accepts a changed key".into(),
                lines.pin,
            ),
            FaultClass::ConnectAuthRejected => (
                "connect",
                match &host.connect.auth {
                    ConnectAuth::KeyFile(path) => format!(
                        "put the public half of {} in {}'s authorized_keys on the host (`ssh-copy-id -i {} {}@{}`), or fix connect in the inventory",
                        path.display(),
                        host.connect.user,
                        path.display(),
                        host.connect.user,
                        host.address
                    ),
                    ConnectAuth::Vault(cred) => format!(
                        "store {}'s current password with `rotor enroll {cred}` (read from stdin), or fix connect in the inventory",
                        host.connect.user
                    ),
                },
                lines.connect_auth,
            ),
            FaultClass::LocalFile => (
                "files",
                "fix the file the inventory names (`rotor inventory check` without --connect lists the local files' problems)".into(),
                lines.pin,
            ),
            _ => (
                "connect",
                "see the message; `rotor -vv inventory check --connect` logs each step".into(),
                lines.entry,
            ),
        };
        out.push(at(check, Severity::Error, message, fix, line));
        return out;
    }
    if let Some(Err(e)) = &facts.sudo {
        let fix = match e.class {
            FaultClass::Refused => "change sudoers as the message says (`visudo -f /etc/sudoers.d/zz-rotor`), then check again".to_owned(),
            _ => format!(
                "give {} a NOPASSWD rule for rotor's commands, or store its password with `rotor enroll {}/{}`",
                host.connect.user, host.name, host.connect.user
            ),
        };
        out.push(at(
            "sudo",
            Severity::Error,
            without_lead(&e.message, name),
            fix,
            lines.connect,
        ));
    }
    let account_line = |n: &AccountName| {
        lines
            .accounts
            .get(n.as_str())
            .copied()
            .unwrap_or(lines.entry)
    };
    let mut missing: Vec<&AccountName> = Vec::new();
    match &facts.accounts {
        None => {}
        Some(Err(e)) => out.push(at(
            "account",
            Severity::Error,
            without_lead(&e.message, name),
            "see the message; the accounts could not be read, so nothing about them is known"
                .into(),
            lines.entry,
        )),
        Some(Ok(states)) => {
            for s in states {
                let line = account_line(&s.name);
                if s.unknown {
                    out.push(at(
                        "account",
                        Severity::Warning,
                        format!("the host did not say whether {} exists", s.name),
                        format!("check `getent passwd {}` on the host", s.name),
                        line,
                    ));
                } else if !s.exists {
                    missing.push(&s.name);
                    out.push(at(
                        "account",
                        Severity::Error,
                        format!("account {} does not exist on the host (getent passwd)", s.name),
                        "create it on the host, or remove it from the host's accounts in the inventory".to_owned(),
                        line,
                    ));
                } else if s.locked
                    && host
                        .accounts
                        .iter()
                        .any(|a| a.name == s.name && reads_password_hash(&a.recipe))
                {
                    out.push(at(
                        "locked",
                        Severity::Error,
                        format!(
                            "account {} is locked (`passwd -S` says L, or its password field starts with ! or *): rotate refuses it, since a password rotor set would unlock an account someone locked",
                            s.name
                        ),
                        format!(
                            "if it should log in with a password, unlock it (`usermod -U {}`); otherwise remove it from the inventory",
                            s.name
                        ),
                        line,
                    ));
                }
            }
        }
    }
    for (user, offered) in &facts.methods {
        if missing.contains(&user) {
            continue;
        }
        let line = account_line(user);
        let by_hash = host.accounts.iter().any(|a| {
            &a.name == user
                && reads_password_hash(&a.recipe)
                && !host.is_connect_account(&a.credential(&host.name))
        });
        match offered {
            Err(e) => out.push(at(
                "password_login",
                Severity::Warning,
                without_lead(&e.message, name),
                "check again; whether sshd takes a password login for the account is not known"
                    .into(),
                line,
            )),
            Ok(Offered::NoneAccepted) => out.push(at(
                "password_login",
                Severity::Error,
                format!("{user} logs in without any password (`none` authentication was accepted)"),
                format!(
                    "set a password for {user} and turn off PermitEmptyPasswords in the host's sshd_config"
                ),
                line,
            )),
            Ok(Offered::Methods(methods)) if methods.iter().any(|m| m == "password") => {}
            Ok(Offered::Methods(methods)) => {
                let offered = if methods.is_empty() {
                    "nothing".to_owned()
                } else {
                    methods.join(", ")
                };
                let kbd = if methods.iter().any(|m| m == "keyboard-interactive") {
                    " (rotor proves a password with the `password` method, not keyboard-interactive)"
                } else {
                    ""
                };
                let sshd = format!(
                    "set `PasswordAuthentication yes` in the host's sshd_config (or in a `Match User {user}` block) and reload sshd"
                );
                if by_hash {
                    out.push(at(
                        "password_login",
                        Severity::Warning,
                        format!(
                            "sshd does not offer password login to {user} (it offers {offered}){kbd}, so the new password cannot be proven by a login: rotor will prove it by the stored hash instead, read back over the admin session and checked locally"
                        ),
                        format!("nothing, if that proof is enough; to prove it by a login, {sshd}"),
                        line,
                    ));
                } else {
                    out.push(at(
                        "password_login",
                        Severity::Error,
                        format!(
                            "sshd does not offer password login to {user} (it offers {offered}){kbd}, so the new password cannot be proven: a rotation would roll back"
                        ),
                        sshd,
                        line,
                    ));
                }
            }
        }
    }
    out
}

/// The problems a directory's facts show, each with what to do. Pure.
pub fn judge_directory(
    d: &Directory,
    facts: &DirectoryFacts,
    lines: &DirectoryLines,
    file: &Path,
) -> Vec<Problem> {
    let name = d.name.as_str();
    let at = |check, severity, message, fix, line| {
        problem(name, check, severity, message, fix, file, line)
    };
    let mut out = Vec::new();
    if let Err(e) = &facts.tls {
        let message = without_lead(&e.message, name);
        out.push(match e.class {
            FaultClass::TlsInvalid => at(
                "tls",
                Severity::Error,
                message,
                "set ca_file: to the CA that signed the directory's certificate (a PEM file); if the certificate names another host, use that name in url".into(),
                if lines.ca_file > 0 { lines.ca_file } else { lines.url },
            ),
            FaultClass::Unreachable | FaultClass::TimedOut => at(
                "reachable",
                Severity::Error,
                message,
                format!("check that the directory server is up and that {} is its address", d.url),
                lines.url,
            ),
            _ => at(
                "tls",
                Severity::Error,
                message,
                "see the message; `rotor -vv inventory check --connect` logs each step".into(),
                lines.url,
            ),
        });
        return out;
    }
    match &facts.bind {
        BindFact::NotTried | BindFact::Tried(Ok(())) => {}
        BindFact::NoSecret => out.push(at(
            "bind",
            Severity::Error,
            format!(
                "rotor's bind secret {} is not in the vault",
                d.bind_credential
            ),
            format!(
                "store it with `rotor enroll {}` (the password is read from stdin)",
                d.bind_credential
            ),
            lines.bind,
        )),
        BindFact::Tried(Err(e)) => out.push(at(
            "bind",
            Severity::Error,
            without_lead(&e.message, name),
            if e.class == FaultClass::ConnectAuthRejected {
                format!(
                    "store the current password of {} with `rotor enroll {}`, or fix bind.dn",
                    d.bind_dn, d.bind_credential
                )
            } else {
                "see the message".into()
            },
            lines.bind,
        )),
    }
    for (idx, found) in &facts.searches {
        let line = lines.accounts.get(*idx).copied().unwrap_or(lines.entry);
        let (base, filter) = match d.accounts.get(*idx) {
            Some(DirectoryAccounts::Search { base, filter, .. }) => {
                (base.as_str(), filter.as_str())
            }
            _ => ("?", "?"),
        };
        match found {
            Ok(0) => out.push(at(
                "search",
                Severity::Warning,
                format!(
                    "the search under {base} for {filter} finds no entry: it would rotate nothing"
                ),
                "check its base and filter (e.g. with `ldapsearch -b BASE FILTER dn`)".into(),
                line,
            )),
            Ok(_) => {}
            Err(e) => out.push(at(
                "search",
                Severity::Error,
                without_lead(&e.message, name),
                "check the search's base and filter, and that rotor's bind account may read there"
                    .into(),
                line,
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory() -> Inventory {
        let yaml = "version: 1\nhosts:\n  - name: h1\n    address: 10.0.0.1\n    host_key: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\"\n    connect: { user: root, key: /k }\n    accounts:\n      - { name: svc_app, playbook: linux-password }\n      - { name: svc_key, playbook: linux-ssh-key }\n      - { name: svc_cfg, playbook: app-config-password }\ndirectories:\n  - name: ldap1\n    url: ldaps://127.0.0.1\n    bind: { dn: \"cn=rotor,dc=x\", credential: ldap1/rotor }\n    accounts:\n      - search: { base: \"ou=s,dc=x\", filter: \"(uid=*)\" }\n";
        crate::inventory::parse(yaml, Path::new("inv.yaml")).unwrap()
    }

    fn err(class: FaultClass, message: &str) -> ConnectorError {
        ConnectorError::new(class, message)
    }

    fn name(n: &str) -> AccountName {
        AccountName::parse(n).unwrap()
    }

    fn state(n: &str, exists: bool, locked: bool) -> AccountState {
        AccountState {
            name: name(n),
            exists,
            locked,
            unknown: false,
        }
    }

    /// The host's facts judged: one `check severity line: message | fix` per problem.
    fn check_host(facts: HostFacts, expect: &[&str]) {
        let inv = inventory();
        let lines = HostLines {
            entry: 3,
            pin: 5,
            connect: 6,
            connect_auth: 6,
            accounts: [("svc_app", 8), ("svc_key", 9), ("svc_cfg", 10)]
                .into_iter()
                .map(|(n, l)| (n.to_owned(), l))
                .collect(),
        };
        let got: Vec<String> = judge_host(&inv.hosts[0], &facts, &lines, Path::new("inv.yaml"))
            .iter()
            .map(|p| {
                assert!(!p.message.is_empty() && !p.fix.is_empty());
                format!(
                    "{} {:?} {}: {} | {}",
                    p.check,
                    p.severity,
                    p.line.unwrap(),
                    p.message,
                    p.fix
                )
            })
            .collect();
        let want: Vec<String> = expect.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want);
    }

    fn connected(accounts: Vec<AccountState>, methods: Vec<(&str, Offered)>) -> HostFacts {
        HostFacts {
            login: Ok(()),
            sudo: Some(Ok(())),
            accounts: Some(Ok(accounts)),
            methods: methods.into_iter().map(|(n, o)| (name(n), Ok(o))).collect(),
        }
    }

    fn offers(methods: &[&str]) -> Offered {
        Offered::Methods(methods.iter().map(|m| m.to_string()).collect())
    }

    #[test]
    fn password_users_are_those_proven_by_a_login() {
        let inv = inventory();
        assert_eq!(
            password_users(&inv.hosts[0]),
            [name("svc_app"), name("svc_cfg")]
        );
    }

    #[test]
    fn a_clean_host_has_no_problem() {
        check_host(
            connected(
                vec![
                    state("svc_app", true, false),
                    state("svc_key", true, true),
                    state("svc_cfg", true, false),
                ],
                vec![
                    ("svc_app", offers(&["publickey", "password"])),
                    ("svc_cfg", offers(&["password"])),
                ],
            ),
            &[],
        );
    }

    #[test]
    fn a_failed_login_is_one_problem_named_by_its_class() {
        check_host(
            HostFacts::not_connected(err(
                FaultClass::Unreachable,
                "h1 (10.0.0.1:22): TCP connect to 10.0.0.1:22 failed: refused",
            )),
            &[
                "reachable Error 3: TCP connect to 10.0.0.1:22 failed: refused | check that the host is up and that sshd listens on 10.0.0.1:22 (`address` and `port` in the inventory)",
            ],
        );
        check_host(
            HostFacts::not_connected(err(
                FaultClass::HostKeyMismatch,
                "h1 (10.0.0.1:22): host key mismatch: the host presented X",
            )),
            &[
                "host_key Error 5: host key mismatch: the host presented X | check the host's key out of band (on its console: `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`) before you pin anything; if the host was reinstalled, pin its new key in the inventory. rotor never accepts a changed key",
            ],
        );
        check_host(
            HostFacts::not_connected(err(
                FaultClass::ConnectAuthRejected,
                "h1: root@h1 was rejected",
            )),
            &[
                "connect Error 6: root@h1 was rejected | put the public half of /k in root's authorized_keys on the host (`ssh-copy-id -i /k root@10.0.0.1`), or fix connect in the inventory",
            ],
        );
    }

    #[test]
    fn sudo_accounts_locks_and_password_logins() {
        let mut facts = connected(
            vec![
                state("svc_app", true, true),
                state("svc_key", false, false),
                state("svc_cfg", true, false),
            ],
            vec![
                ("svc_app", offers(&["publickey"])),
                ("svc_cfg", offers(&["publickey", "keyboard-interactive"])),
            ],
        );
        facts.sudo = Some(Err(err(FaultClass::Refused, "h1: sudo would log input")));
        check_host(
            facts,
            &[
                "sudo Error 6: sudo would log input | change sudoers as the message says (`visudo -f /etc/sudoers.d/zz-rotor`), then check again",
                "locked Error 8: account svc_app is locked (`passwd -S` says L, or its password field starts with ! or *): rotate refuses it, since a password rotor set would unlock an account someone locked | if it should log in with a password, unlock it (`usermod -U svc_app`); otherwise remove it from the inventory",
                "account Error 9: account svc_key does not exist on the host (getent passwd) | create it on the host, or remove it from the host's accounts in the inventory",
                "password_login Warning 8: sshd does not offer password login to svc_app (it offers publickey), so the new password cannot be proven by a login: rotor will prove it by the stored hash instead, read back over the admin session and checked locally | nothing, if that proof is enough; to prove it by a login, set `PasswordAuthentication yes` in the host's sshd_config (or in a `Match User svc_app` block) and reload sshd",
                "password_login Warning 10: sshd does not offer password login to svc_cfg (it offers publickey, keyboard-interactive) (rotor proves a password with the `password` method, not keyboard-interactive), so the new password cannot be proven by a login: rotor will prove it by the stored hash instead, read back over the admin session and checked locally | nothing, if that proof is enough; to prove it by a login, set `PasswordAuthentication yes` in the host's sshd_config (or in a `Match User svc_cfg` block) and reload sshd",
            ],
        );
    }

    #[test]
    fn an_account_without_a_password_is_an_error() {
        check_host(
            connected(
                vec![
                    state("svc_app", true, false),
                    state("svc_key", true, false),
                    state("svc_cfg", false, false),
                ],
                vec![("svc_app", Offered::NoneAccepted), ("svc_cfg", offers(&[]))],
            ),
            &[
                "account Error 10: account svc_cfg does not exist on the host (getent passwd) | create it on the host, or remove it from the host's accounts in the inventory",
                "password_login Error 8: svc_app logs in without any password (`none` authentication was accepted) | set a password for svc_app and turn off PermitEmptyPasswords in the host's sshd_config",
            ],
        );
    }

    fn check_directory(facts: DirectoryFacts, expect: &[&str]) {
        let inv = inventory();
        let lines = DirectoryLines {
            entry: 12,
            url: 13,
            ca_file: 0,
            bind: 14,
            accounts: vec![16],
        };
        let got: Vec<String> =
            judge_directory(&inv.directories[0], &facts, &lines, Path::new("inv.yaml"))
                .iter()
                .map(|p| {
                    format!(
                        "{} {:?} {}: {} | {}",
                        p.check,
                        p.severity,
                        p.line.unwrap(),
                        p.message,
                        p.fix
                    )
                })
                .collect();
        let want: Vec<String> = expect.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn directories_tls_bind_and_searches() {
        check_directory(
            DirectoryFacts {
                tls: Ok(()),
                bind: BindFact::Tried(Ok(())),
                searches: vec![(0, Ok(3))],
            },
            &[],
        );
        check_directory(
            DirectoryFacts {
                tls: Err(err(
                    FaultClass::TlsInvalid,
                    "ldap1: the server's certificate is not signed by a trusted CA",
                )),
                bind: BindFact::NotTried,
                searches: Vec::new(),
            },
            &[
                "tls Error 13: the server's certificate is not signed by a trusted CA | set ca_file: to the CA that signed the directory's certificate (a PEM file); if the certificate names another host, use that name in url",
            ],
        );
        check_directory(
            DirectoryFacts {
                tls: Ok(()),
                bind: BindFact::NoSecret,
                searches: Vec::new(),
            },
            &[
                "bind Error 14: rotor's bind secret ldap1/rotor is not in the vault | store it with `rotor enroll ldap1/rotor` (the password is read from stdin)",
            ],
        );
        check_directory(
            DirectoryFacts {
                tls: Ok(()),
                bind: BindFact::Tried(Ok(())),
                searches: vec![(0, Ok(0))],
            },
            &[
                "search Warning 16: the search under ou=s,dc=x for (uid=*) finds no entry: it would rotate nothing | check its base and filter (e.g. with `ldapsearch -b BASE FILTER dn`)",
            ],
        );
    }

    #[test]
    fn warnings_alone_exit_0_and_an_error_exits_3() {
        let warn = |severity| {
            problem(
                "h1",
                "search",
                severity,
                "m".into(),
                "f".into(),
                Path::new("inv.yaml"),
                1,
            )
        };
        let report = |problems| PreflightReport {
            problems,
            checked: Checked {
                hosts: 1,
                directories: 0,
            },
            connected: true,
        };
        assert_eq!(report(vec![]).exit_code(), 0);
        assert_eq!(
            report(vec![warn(Severity::Warning), warn(Severity::Warning)]).exit_code(),
            0
        );
        assert_eq!(
            report(vec![warn(Severity::Warning), warn(Severity::Error)]).exit_code(),
            3
        );
    }

    fn open_status(cred: &str, id: i64) -> crate::store::CredentialStatus {
        crate::store::CredentialStatus {
            cred: crate::credential::CredentialId::parse(cred).unwrap(),
            has_current: true,
            current_since: None,
            has_pending: true,
            last_rotation: Some(crate::store::LastRotation {
                id: crate::engine::ledger::RotationId(id),
                phase: crate::engine::Phase::Applied,
                at: chrono::Utc::now(),
                note: None,
            }),
            open_rotation: true,
            parked: None,
            lease_holder: None,
            rotated_at: None,
            heartbeat_at: None,
        }
    }

    #[test]
    fn open_rotations_are_reported_and_an_open_connect_or_bind_credential_is_not_connected_to() {
        let yaml = "version: 1\nhosts:\n  - name: h1\n    address: 10.0.0.1\n    host_key: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\"\n    connect: { user: rotor, key: /k }\n    accounts:\n      - { name: rotor, playbook: linux-ssh-key }\n      - { name: svc_app, playbook: linux-password }\ndirectories:\n  - name: ldap1\n    url: ldaps://127.0.0.1\n    bind: { dn: \"cn=rotor,dc=x\", credential: ldap1/rotor }\n    accounts:\n      - search: { base: \"ou=s,dc=x\", filter: \"(uid=*)\" }\n";
        let inv = crate::inventory::parse(yaml, Path::new("inv.yaml")).unwrap();
        assert_eq!(
            inv.hosts[0]
                .connect_credential()
                .map(|c| c.to_string())
                .as_deref(),
            Some("h1/rotor")
        );
        let sel = crate::ops::rotate::select(&inv, &["all".to_owned()])
            .unwrap()
            .0;
        let lines = FieldLines::default();
        let text = |(problems, blocked): (Vec<Problem>, Vec<String>)| {
            let p: Vec<String> = problems.iter().map(|p| p.line_text()).collect();
            (p, blocked)
        };
        assert_eq!(
            text(open_rotations(&inv, &sel, &[], &lines)),
            (vec![], vec![])
        );
        let mut leased = open_status("h1/svc_app", 1);
        leased.lease_holder = Some("alice".into());
        assert_eq!(
            text(open_rotations(&inv, &sel, &[leased], &lines)),
            (vec![], vec![]),
            "a live rotor runs it"
        );
        let statuses = [
            open_status("h1/rotor", 7),
            open_status("h1/svc_app", 8),
            open_status("ldap1/rotor", 9),
            open_status("ldap1/alice", 10),
        ];
        let fix = "run `rotor recover -i inv.yaml` to settle it, then check again";
        assert_eq!(
            text(open_rotations(&inv, &sel, &statuses, &lines)),
            (
                vec![
                    format!(
                        "inv.yaml: h1: rotation 7 of h1/rotor is open: it is rotor's connect credential, so the host was not connected to (it may hold the new secret or the old): {fix}"
                    ),
                    format!("inv.yaml: h1: rotation 8 of h1/svc_app is open: {fix}"),
                    format!(
                        "inv.yaml: ldap1: rotation 9 of ldap1/rotor is open: it is rotor's bind credential, so the directory was not connected to (it may hold the new secret or the old): {fix}"
                    ),
                    format!("inv.yaml: ldap1: rotation 10 of ldap1/alice is open: {fix}"),
                ],
                vec!["h1".to_owned(), "ldap1".to_owned()]
            )
        );
    }

    #[test]
    fn a_problem_is_one_escaped_line() {
        let p = problem(
            "h1",
            "account",
            Severity::Warning,
            "bad\nthing \u{1b}[31m".into(),
            "do it".into(),
            Path::new("inv.yaml"),
            7,
        );
        assert_eq!(
            p.line_text(),
            "inv.yaml:7: h1: warning: bad thing \\u{1b}[31m: do it"
        );
    }
}

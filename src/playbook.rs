//! Playbooks: per-platform recipes (how to read a restore point, set, restore and verify a
//! credential), written in YAML under `playbooks/`. The built-in ones are compiled in.
//!
//! [`LinuxHost`] runs a password playbook over one admin SSH session to a host and implements
//! [`PasswordTarget`] for the engine.
//!
//! Invariant: a secret (new password or saved hash) is only ever substituted into a step's
//! `stdin`, never into its `run` command line; [`Playbook::parse`] rejects a playbook that
//! tries. No error built here carries a step's output: every step of a password playbook is
//! fed a secret or reads one, and its output may echo it in any form.

use serde::Deserialize;

use crate::connector::ssh::{ExecOutput, SshAuth, SshSession, SshTarget, check_password_login};
use crate::connector::{ConnectorError, FaultClass, PasswordTarget};
use crate::credential::{AccountName, HostName};
use std::collections::HashMap;
use std::sync::Arc;

use crate::connector::ldap::{
    DirectorySpec, DirectoryTarget, LdapAdmin, LockSeen, SearchScope, check_bind,
};
use crate::engine::directory::{Directories, OpenDirectory, Refusal};
use crate::engine::driver::Fleet;
use crate::inventory::{ConnectAuth, Directory, DirectoryAccounts, Host, LdapScope};
use crate::secret::Secret;

/// Names of the playbooks compiled into rotor.
pub const BUILT_IN: &[&str] = &["linux-password"];

/// The playbook of directory accounts (implemented by [`LdapDirectories`]).
pub const LDAP_PASSWORD: &str = "ldap-password";

const LINUX_PASSWORD: &str = include_str!("../playbooks/linux-password.yaml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    pub name: String,
    pub kind: String,
    pub description: String,
    pub restore_point: CaptureStep,
    pub set: Step,
    pub restore: Step,
    pub verify: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub run: String,
    #[serde(default)]
    pub stdin: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureStep {
    pub run: String,
    pub capture_field: usize,
    pub missing_exit: Option<i32>,
}

impl Playbook {
    /// The built-in playbook of that name.
    pub fn built_in(name: &str) -> Option<Playbook> {
        match name {
            // The built-in text is part of the binary and covered by a unit test, so a parse
            // failure here is a build defect, not an input error.
            "linux-password" => Some(
                Playbook::parse(LINUX_PASSWORD).expect("built-in linux-password playbook parses"),
            ),
            _ => None,
        }
    }

    pub fn parse(text: &str) -> Result<Playbook, String> {
        let p: Playbook = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        for (step, run) in [
            ("restore_point", &p.restore_point.run),
            ("set", &p.set.run),
            ("restore", &p.restore.run),
        ] {
            if run.contains("{secret}") || run.contains("{restore_point}") {
                return Err(format!(
                    "playbook {}: step `{step}` puts a secret in its command line; pass it on stdin instead",
                    p.name
                ));
            }
        }
        if p.verify != "ssh-password-login" {
            return Err(format!(
                "playbook {}: unknown verify method `{}` (known: ssh-password-login)",
                p.name, p.verify
            ));
        }
        Ok(p)
    }
}

/// Builds a step's command line: the account name is validated (`AccountName`), so it is safe
/// unquoted; a non-root connect user runs the step through `sudo -n` (never prompts).
fn command(run: &str, account: &AccountName, sudo: bool) -> String {
    let cmd = run.replace("{account}", account.as_str());
    if sudo {
        format!("sudo -n -- {cmd}")
    } else {
        cmd
    }
}

/// Fills a stdin template; the result holds a secret and is zeroized on drop.
fn stdin(
    template: &str,
    account: &AccountName,
    key: &str,
    secret: &Secret,
) -> zeroize::Zeroizing<String> {
    zeroize::Zeroizing::new(
        template
            .replace("{account}", account.as_str())
            .replace(key, secret.expose()),
    )
}

/// How a step ended, for an error message: its exit status or the signal that killed it.
/// Never the step's output: a step that is fed a secret (`set`, `restore`) or that reads one
/// (`restore_point` prints the shadow hash) may echo it in any form (shell-quoted, cut short,
/// on stderr), so no test of the text for the secret can be trusted to catch it.
fn ended(out: &ExecOutput) -> String {
    match &out.signal {
        // The signal name comes from the host: keep it to what a signal name can be.
        Some(sig) => format!(
            "killed by SIG{}",
            sig.chars()
                .filter(char::is_ascii_alphanumeric)
                .take(16)
                .collect::<String>()
        ),
        None => format!("exit status {}", out.status),
    }
}

/// What the error says instead of the output of a step that handled a secret.
const OUTPUT_WITHHELD: &str = "its output is not shown because the step handles a secret; run the step by hand on the host to see it";

/// The restore point in a step's output: field `capture_field` (1-based, `:`-separated) of the
/// line whose first field is the account. Not simply the first line: a shell startup file on
/// the host may print before the command does, and that text must not become the "hash" that
/// a rollback writes back and then compares against.
fn restore_point_field(text: &str, account: &AccountName, capture_field: usize) -> Option<String> {
    let mut lines = text
        .lines()
        .filter(|line| line.split(':').next() == Some(account.as_str()));
    // Exactly one such line: a banner that happens to start with the account's name makes
    // the output ambiguous, and an ambiguous restore point is none.
    let line = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    line.split(':')
        .nth(capture_field.saturating_sub(1))
        .map(str::to_owned)
}

/// One host, one admin session, a password playbook.
pub struct LinuxHost {
    target: SshTarget,
    session: SshSession,
    playbook: Playbook,
    sudo: bool,
    user: AccountName,
    auth: ConnectWith,
}

/// The connect identity, kept to log in again when a session breaks.
enum ConnectWith {
    KeyFile(std::path::PathBuf),
    Password(Secret),
}

impl ConnectWith {
    fn as_auth(&self) -> SshAuth<'_> {
        match self {
            ConnectWith::KeyFile(p) => SshAuth::KeyFile(p),
            ConnectWith::Password(s) => SshAuth::Password(s),
        }
    }
}

impl LinuxHost {
    /// Logs in with the host's connect identity (host key checked first, by the connector).
    pub fn connect(
        target: SshTarget,
        user: &AccountName,
        auth: SshAuth<'_>,
        playbook: Playbook,
    ) -> Result<LinuxHost, ConnectorError> {
        let session = SshSession::connect(&target, user, auth)?;
        let auth = match auth {
            SshAuth::KeyFile(p) => ConnectWith::KeyFile(p.to_owned()),
            SshAuth::Password(s) => ConnectWith::Password(s.clone()),
        };
        Ok(LinuxHost {
            sudo: user.as_str() != "root",
            target,
            session,
            playbook,
            user: user.clone(),
            auth,
        })
    }

    /// Runs a command on the admin session. A session broken by an earlier failure (a
    /// timeout mid-command, say) is replaced by a fresh login first: a failed push must not
    /// make the rollback that follows impossible.
    fn exec(&mut self, command: &str, stdin: &[u8]) -> Result<ExecOutput, ConnectorError> {
        if self.session.is_broken() {
            tracing::info!(host = %self.target.host, "admin session broke; logging in again");
            self.session = SshSession::connect(&self.target, &self.user, self.auth.as_auth())?;
        }
        self.session.exec(command, stdin)
    }

    fn where_(&self, account: &AccountName) -> String {
        format!("{}/{}", self.target.host, account)
    }

    /// Runs a step whose stdin carries a secret; a non-zero exit is `Refused`.
    fn run_with_secret(
        &mut self,
        step: &Step,
        account: &AccountName,
        placeholder: &str,
        secret: &Secret,
        failure: &str,
    ) -> Result<(), ConnectorError> {
        let input = stdin(&step.stdin, account, placeholder, secret);
        let out = self.exec(&command(&step.run, account, self.sudo), input.as_bytes())?;
        if out.status == 0 {
            return Ok(());
        }
        Err(ConnectorError::new(
            FaultClass::Refused,
            format!(
                "{}: {failure} (`{}`: {}); {OUTPUT_WITHHELD}",
                self.where_(account),
                step.run,
                ended(&out),
            ),
        ))
    }
}

impl PasswordTarget for LinuxHost {
    /// A shadow hash starting with `!` or `*` means the account is locked or has no password
    /// login; `chpasswd` would unlock it.
    fn refuses_rotation(&self, account: &AccountName, restore_point: &Secret) -> Option<String> {
        restore_point.expose().starts_with(['!', '*']).then(|| {
            format!(
                "{}: the account is locked (its password field starts with '!' or '*'); rotor will not give it a working password. Unlock it first (`passwd -u`) or remove it from the inventory",
                self.where_(account)
            )
        })
    }

    fn restore_point(&mut self, account: &AccountName) -> Result<Secret, ConnectorError> {
        let step = self.playbook.restore_point.clone();
        let out = self.exec(&command(&step.run, account, self.sudo), b"")?;
        if Some(out.status) == step.missing_exit {
            return Err(ConnectorError::new(
                FaultClass::AccountMissing,
                format!(
                    "{}: the account does not exist on the host; create it or remove it from the inventory",
                    self.where_(account)
                ),
            ));
        }
        if out.status != 0 {
            return Err(ConnectorError::new(
                FaultClass::Protocol,
                format!(
                    "{}: reading the restore point failed (`{}`: {}); does the connect user have root or sudo rights? ({OUTPUT_WITHHELD})",
                    self.where_(account),
                    step.run,
                    ended(&out),
                ),
            ));
        }
        let text = zeroize::Zeroizing::new(String::from_utf8_lossy(&out.stdout).into_owned());
        let field = restore_point_field(&text, account, step.capture_field);
        match field {
            Some(f) if !f.is_empty() => Ok(Secret::new(f)),
            _ => Err(ConnectorError::new(
                FaultClass::Protocol,
                format!(
                    "{}: unexpected output while reading the restore point",
                    self.where_(account)
                ),
            )),
        }
    }

    fn set_password(&mut self, account: &AccountName, new: &Secret) -> Result<(), ConnectorError> {
        let step = self.playbook.set.clone();
        self.run_with_secret(
            &step,
            account,
            "{secret}",
            new,
            "the host refused the new password",
        )
    }

    fn restore(&mut self, account: &AccountName, saved: &Secret) -> Result<(), ConnectorError> {
        let step = self.playbook.restore.clone();
        self.run_with_secret(
            &step,
            account,
            "{restore_point}",
            saved,
            "restoring the saved password hash failed",
        )?;
        // Prove the restore: the hash must read back exactly as saved.
        let now = self.restore_point(account)?;
        if now.ct_eq(saved) {
            Ok(())
        } else {
            Err(ConnectorError::new(
                FaultClass::Refused,
                format!(
                    "{}: after restoring, the password hash on the host is not the saved one",
                    self.where_(account)
                ),
            ))
        }
    }

    fn verify_login(
        &mut self,
        account: &AccountName,
        secret: &Secret,
    ) -> Result<(), ConnectorError> {
        check_password_login(&self.target, account, secret)
    }
}

/// Opens hosts over SSH with their inventory connect identity: the [`Fleet`] the CLI uses.
pub struct SshFleet {
    pub store: std::sync::Arc<dyn crate::engine::Store>,
    /// Deadline of each SSH step (connect, handshake, each command).
    pub step_timeout: std::time::Duration,
}

impl SshFleet {
    pub fn target(&self, host: &Host) -> SshTarget {
        SshTarget {
            host: host.name.clone(),
            address: host.address.clone(),
            port: host.port,
            pin: host.host_key.clone(),
            timeout: self.step_timeout,
        }
    }
}

impl Fleet for SshFleet {
    fn open(&self, host: &Host) -> Result<Box<dyn crate::target::Target + Send>, ConnectorError> {
        let playbook = Playbook::built_in("linux-password").expect("built in");
        let user = &host.connect.user;
        let target = self.target(host);
        let linux = match &host.connect.auth {
            ConnectAuth::KeyFile(path) => {
                LinuxHost::connect(target, user, SshAuth::KeyFile(path), playbook)?
            }
            ConnectAuth::Vault(cred) => {
                let secret = self.store.current(cred).map_err(|e| {
                    ConnectorError::new(
                        FaultClass::ConnectAuthRejected,
                        format!(
                            "{}: cannot read connect credential {cred} from the vault: {e}",
                            host.name
                        ),
                    )
                })?;
                let Some(secret) = secret else {
                    return Err(ConnectorError::new(
                        FaultClass::ConnectAuthRejected,
                        format!(
                            "{}: the connect credential {cred} is not in the vault; store it with `rotor enroll {cred}`",
                            host.name
                        ),
                    ));
                };
                LinuxHost::connect(target, user, SshAuth::Password(&secret), playbook)?
            }
        };
        Ok(Box::new(linux))
    }
}

/// Opens LDAP directories with rotor's bind account (its secret from the vault): the
/// [`Directories`] the CLI uses for the `ldap-password` playbook.
pub struct LdapDirectories {
    pub store: std::sync::Arc<dyn crate::engine::Store>,
    /// Deadline of each LDAP step (connect with TLS, bind, one operation).
    pub step_timeout: std::time::Duration,
    /// The runtime the async LDAP client runs on; the engine's workers are blocking threads.
    pub runtime: tokio::runtime::Handle,
}

impl Directories for LdapDirectories {
    fn open(&self, directory: &Directory) -> Result<Arc<dyn OpenDirectory>, ConnectorError> {
        let name = &directory.name;
        let bind_cred = &directory.bind_credential;
        let secret = self
            .store
            .current(bind_cred)
            .map_err(|e| {
                ConnectorError::new(
                    FaultClass::ConnectAuthRejected,
                    format!("{name}: cannot read rotor's bind secret {bind_cred} from the vault: {e}"),
                )
            })?
            .ok_or_else(|| {
                ConnectorError::new(
                    FaultClass::ConnectAuthRejected,
                    format!(
                        "{name}: rotor's bind secret {bind_cred} is not in the vault; store it with `rotor enroll {bind_cred}`"
                    ),
                )
            })?;
        let target = DirectoryTarget::prepare(&DirectorySpec {
            name: name.clone(),
            url: directory.url.clone(),
            ca_file: directory.ca_file.clone(),
            danger_accept_invalid_certs: directory.danger_accept_invalid_certs,
            bind_dn: directory.bind_dn.clone(),
            timeout: self.step_timeout,
            limits: crate::connector::ldap::SearchLimits::DEFAULT,
        })?;
        let admin = match self.runtime.block_on(LdapAdmin::connect(&target, &secret)) {
            Ok(admin) => admin,
            // A run that rotated rotor's own bind account may have died after the directory
            // took the new secret and before the vault committed it: that secret is the
            // pending one of its open rotation. One bind with it; recovery then commits it.
            Err(e) if e.class == FaultClass::ConnectAuthRejected => {
                let pending = self
                    .store
                    .open_rotations()
                    .ok()
                    .and_then(|open| open.into_iter().find(|r| &r.cred == bind_cred))
                    .map(|r| r.pending);
                match pending {
                    Some(pending) => {
                        tracing::warn!(directory = %name, "bind with the current secret refused; trying the pending one of an interrupted rotation");
                        self.runtime
                            .block_on(LdapAdmin::connect(&target, &pending))?
                    }
                    None => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let mut accounts: Vec<(AccountName, String)> = Vec::new();
        let mut sources: Vec<AccountSource> = Vec::with_capacity(directory.accounts.len());
        // One credential per entry: an entry found twice (by two searches, or listed and
        // found, perhaps under another uid) is rotated once. Which sources found it (by
        // index into `sources`) decides whether rotor can see its lock.
        let mut found_by: HashMap<String, Vec<usize>> = HashMap::new();
        for (source_idx, spec) in directory.accounts.iter().enumerate() {
            let (found, kind): (Vec<(AccountName, String)>, SourceKind) = match spec {
                DirectoryAccounts::Dn(dn) => {
                    // The inventory validated the DN's first RDN as an account name.
                    let uid = crate::inventory::uid_of(dn).map_err(|why| {
                        ConnectorError::new(FaultClass::Protocol, format!("{name}: {why}"))
                    })?;
                    (vec![(uid, dn.clone())], SourceKind::Listed)
                }
                DirectoryAccounts::Search {
                    base,
                    filter,
                    scope,
                } => {
                    let scope = match scope {
                        LdapScope::One => SearchScope::OneLevel,
                        LdapScope::Sub => SearchScope::Subtree,
                    };
                    let entries = self.runtime.block_on(admin.search(base, filter, scope))?;
                    let mut out = Vec::with_capacity(entries.len());
                    for e in entries {
                        match AccountName::parse(&e.uid) {
                            Ok(uid) => out.push((uid, e.dn)),
                            Err(why) => tracing::warn!(
                                directory = %name, dn = %e.dn,
                                "skipping an entry whose uid cannot name a credential: {why}"
                            ),
                        }
                    }
                    (out, SourceKind::Search { base: base.clone() })
                }
            };
            // rotor's own entry is a poor stand-in: ACLs often let an entry read itself.
            let probe = found
                .iter()
                .map(|(_, dn)| dn)
                .find(|dn| !crate::inventory::same_dn(dn, &directory.bind_dn))
                .cloned();
            sources.push(AccountSource { kind, probe });
            for (uid, dn) in found {
                let by = found_by
                    .entry(crate::inventory::canonical_dn(&dn))
                    .or_default();
                if by.is_empty() {
                    accounts.push((uid, dn));
                }
                if by.last() != Some(&source_idx) {
                    by.push(source_idx);
                }
            }
        }
        let accounts = without_shared_uids(name, accounts);
        Ok(Arc::new(LdapOpen {
            admin,
            target,
            bind_dn: directory.bind_dn.clone(),
            accounts,
            sources,
            found_by,
            runtime: self.runtime.clone(),
        }))
    }
}

/// Two entries under one uid would be one credential `DIRECTORY/UID` (one vault secret for
/// two accounts, and recovery could not tell which entry an open rotation changed): neither
/// is rotated, and rotor says so.
fn without_shared_uids(
    directory: &HostName,
    accounts: Vec<(AccountName, String)>,
) -> Vec<(AccountName, String)> {
    let mut n_entries: std::collections::HashMap<&AccountName, usize> = Default::default();
    for (uid, _) in &accounts {
        *n_entries.entry(uid).or_default() += 1;
    }
    let shared: std::collections::HashSet<AccountName> = n_entries
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(uid, _)| uid.clone())
        .collect();
    for uid in &shared {
        let dns: Vec<&str> = accounts
            .iter()
            .filter(|(u, _)| u == uid)
            .map(|(_, dn)| dn.as_str())
            .collect();
        tracing::warn!(
            directory = %directory, uid = %uid, dns = ?dns,
            "several entries share this uid, which names one credential; none of them is rotated: narrow the searches or list the accounts by DN"
        );
    }
    accounts
        .into_iter()
        .filter(|(uid, _)| !shared.contains(uid))
        .collect()
}

/// One account source of a directory's inventory entry (a listed DN, or a search) as it was
/// resolved when the directory was opened.
struct AccountSource {
    kind: SourceKind,
    /// The entry that stands for the source in the lock probe (`LdapOpen::may_rotate`): the
    /// first it found other than rotor's own bind entry; `None` when there is none.
    probe: Option<String>,
}

enum SourceKind {
    Listed,
    Search { base: String },
}

impl AccountSource {
    /// Where rotor cannot see locks, for messages: `under BASE (checked on DN)`.
    fn where_hidden(&self) -> String {
        let probe = self.probe.as_deref().unwrap_or_default();
        match &self.kind {
            SourceKind::Listed => format!("on {probe} (a listed DN)"),
            SourceKind::Search { base } => format!("under {base} (checked on {probe})"),
        }
    }
}

/// An open directory: one admin connection shared by every account's target.
struct LdapOpen {
    admin: LdapAdmin,
    target: DirectoryTarget,
    bind_dn: String,
    accounts: Vec<(AccountName, String)>,
    /// The inventory's account sources, in its order.
    sources: Vec<AccountSource>,
    /// Canonical DN of every entry found (also those left out as duplicates or shared uids)
    /// -> the indices of the sources that found it.
    found_by: HashMap<String, Vec<usize>>,
    runtime: tokio::runtime::Handle,
}

impl OpenDirectory for LdapOpen {
    fn accounts(&self) -> &[(AccountName, String)] {
        &self.accounts
    }

    fn may_rotate(&self) -> Result<Vec<Refusal>, ConnectorError> {
        // A locked account must be seen as locked (its rotation would unlock it). ACLs differ
        // between subtrees, so one entry of each account source is checked: an account found
        // by a source whose locks rotor may not read is not rotated (found by two sources, it
        // is rotated only if both are readable). Where no source is readable, the whole
        // directory is refused, in one message.
        let mut hidden: Vec<(usize, &AccountSource)> = Vec::new();
        let mut n_probed = 0;
        for (source_idx, source) in self.sources.iter().enumerate() {
            let Some(dn) = &source.probe else {
                continue;
            };
            n_probed += 1;
            match self.runtime.block_on(self.admin.may_read_lock(dn)) {
                Ok(true) => {}
                Ok(false) => hidden.push((source_idx, source)),
                // A listed entry deleted since the inventory was written: its own rotation
                // reports it missing.
                Err(e)
                    if e.class == FaultClass::AccountMissing
                        && matches!(source.kind, SourceKind::Listed) => {}
                Err(e) => return Err(e),
            }
        }
        if hidden.is_empty() {
            return Ok(Vec::new());
        }
        let directory = format!("{} ({})", self.target.name(), self.target.url());
        let grant = format!(
            "grant rotor's bind account ({}) read access to pwdAccountLockedTime on those entries, then run again",
            self.bind_dn
        );
        if hidden.len() == n_probed {
            let places: Vec<String> = hidden.iter().map(|(_, s)| s.where_hidden()).collect();
            return Err(ConnectorError::new(
                FaultClass::Refused,
                format!(
                    "{directory}: rotor's bind account may not read pwdAccountLockedTime {}, so it cannot tell a locked account, which a new password would unlock; {grant}",
                    places.join(", nor ")
                ),
            ));
        }
        let refusals = hidden
            .iter()
            .map(|(source_idx, source)| {
                let dns = self
                    .accounts
                    .iter()
                    .filter(|(_, dn)| {
                        self.found_by
                            .get(&crate::inventory::canonical_dn(dn))
                            .is_some_and(|by| by.contains(source_idx))
                    })
                    .map(|(_, dn)| dn.clone())
                    .collect();
                let cause = ConnectorError::new(
                    FaultClass::Refused,
                    format!(
                        "{directory}: rotor's bind account may not read pwdAccountLockedTime {}, so it cannot tell a locked account there, which a new password would unlock; the accounts found there are not rotated (the directory's others are): {grant}",
                        source.where_hidden()
                    ),
                );
                Refusal { dns, cause }
            })
            .collect();
        Ok(refusals)
    }

    fn target(&self, dn: &str) -> Box<dyn crate::target::Target + Send> {
        Box::new(LdapAccount {
            admin: self.admin.clone(),
            target: self.target.clone(),
            dn: dn.to_owned(),
            runtime: self.runtime.clone(),
            locked_since: None,
            lock_hidden: false,
        })
    }
}

/// One directory account, for the engine: the `ldap-password` playbook. Set with the
/// password-modify operation (or a hashed `userPassword` replace), verified by a fresh bind,
/// rolled back by writing the saved hash back.
struct LdapAccount {
    admin: LdapAdmin,
    target: DirectoryTarget,
    dn: String,
    runtime: tokio::runtime::Handle,
    /// The account's ppolicy lock, as read with its restore point.
    locked_since: Option<String>,
    /// The ACLs hide the account's lock from rotor (checked on this very entry).
    lock_hidden: bool,
}

impl PasswordTarget for LdapAccount {
    fn restore_point(&mut self, _: &AccountName) -> Result<Secret, ConnectorError> {
        let read = self
            .runtime
            .block_on(self.admin.read_restore_point(&self.dn))?;
        self.locked_since = read.locked_since;
        self.lock_hidden = false;
        // No lock in the read: make sure it is not merely hidden from rotor on this entry
        // (the per-source probe of `may_rotate` sees one entry of each search only).
        if self.locked_since.is_none() {
            match self.runtime.block_on(self.admin.compare_lock(&self.dn))? {
                LockSeen::Absent => {}
                LockSeen::Present => self.locked_since = Some(String::new()),
                LockSeen::Hidden => self.lock_hidden = true,
            }
        }
        Ok(read.hash)
    }
    fn refuses_rotation(&self, _: &AccountName, _: &Secret) -> Option<String> {
        if self.lock_hidden {
            return Some(format!(
                "{} ({}): rotor's bind account may not read pwdAccountLockedTime on {}, so it cannot tell whether the account is locked, which a new password would unlock; it is not rotated. Grant rotor's bind account read access to pwdAccountLockedTime on it, then run again",
                self.target.name(),
                self.target.url(),
                self.dn
            ));
        }
        self.locked_since.as_ref().map(|since| {
            let how = if since.starts_with("00000101") {
                "by an administrator".to_owned()
            } else if since.is_empty() {
                "(its lock time is hidden from rotor)".to_owned()
            } else {
                format!("since {since}")
            };
            format!(
                "{} ({}): {} is locked {how} (pwdAccountLockedTime); a new password would unlock it, so rotor leaves it alone. Unlock it first (delete pwdAccountLockedTime) or take it out of the inventory's accounts",
                self.target.name(),
                self.target.url(),
                self.dn
            )
        })
    }
    fn set_password(&mut self, _: &AccountName, new: &Secret) -> Result<(), ConnectorError> {
        self.runtime
            .block_on(self.admin.set_password(&self.dn, new))
    }
    fn restore(&mut self, _: &AccountName, saved: &Secret) -> Result<(), ConnectorError> {
        self.runtime
            .block_on(self.admin.restore_password_hash(&self.dn, saved))
    }
    fn verify_login(&mut self, _: &AccountName, secret: &Secret) -> Result<(), ConnectorError> {
        // A verify bind is a fresh connection that nothing else shares, so it runs on this
        // worker thread's own runtime: its TLS handshake and bind then take no hand-offs
        // between this thread and the shared runtime's workers (measured: they were most of
        // a bulk run's context switches).
        VERIFY_RUNTIME.with(|rt| match rt {
            Ok(rt) => rt.block_on(check_bind(&self.target, &self.dn, secret)),
            Err(_) => self
                .runtime
                .block_on(check_bind(&self.target, &self.dn, secret)),
        })
    }
}

thread_local! {
    /// The verify binds' runtime of one engine worker thread (built at its first verify).
    /// Should building it fail (no file descriptors left), the shared runtime is used.
    static VERIFY_RUNTIME: std::io::Result<tokio::runtime::Runtime> =
        tokio::runtime::Builder::new_current_thread().enable_all().build();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_sharing_a_uid_are_left_out() {
        let uid = |u: &str| AccountName::parse(u).unwrap();
        let accounts = vec![
            (uid("app"), "uid=app,ou=service,dc=h".to_owned()),
            (uid("db"), "uid=db,ou=service,dc=h".to_owned()),
            (uid("app"), "uid=app,ou=people,dc=h".to_owned()),
        ];
        let kept = without_shared_uids(&HostName::parse("ldap").unwrap(), accounts);
        assert_eq!(kept, vec![(uid("db"), "uid=db,ou=service,dc=h".to_owned())]);
    }

    #[test]
    fn built_in_playbooks_parse() {
        for name in BUILT_IN {
            assert!(Playbook::built_in(name).is_some(), "{name}");
        }
    }

    #[test]
    fn a_secret_in_a_command_line_is_refused() {
        let bad = LINUX_PASSWORD.replace("run: \"chpasswd\"", "run: \"echo {secret} | chpasswd\"");
        let err = Playbook::parse(&bad).unwrap_err();
        assert!(err.contains("puts a secret in its command line"), "{err}");
    }

    #[test]
    fn commands_and_stdin() {
        let acct = AccountName::parse("svc_app").unwrap();
        assert_eq!(
            command("getent shadow -- {account}", &acct, false),
            "getent shadow -- svc_app"
        );
        assert_eq!(command("chpasswd", &acct, true), "sudo -n -- chpasswd");
        let s = Secret::new("pa:ss".into());
        assert_eq!(
            stdin("{account}:{secret}\n", &acct, "{secret}", &s).as_str(),
            "svc_app:pa:ss\n"
        );
        let shadow = "motd: welcome\nsvc_app:$y$j9T$salt$hash:19000:0:99999:7:::\n";
        assert_eq!(
            restore_point_field(shadow, &acct, 2).as_deref(),
            Some("$y$j9T$salt$hash")
        );
        assert_eq!(restore_point_field("motd: hello\n", &acct, 2), None);
        let spoofed = format!("svc_app: welcome\n{shadow}");
        assert_eq!(restore_point_field(&spoofed, &acct, 2), None);
    }
}

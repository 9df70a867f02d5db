//! Linux hosts over SSH: [`SshShell`] is one admin session to a host (the recipe
//! interpreter's [`Shell`]), and [`SshFleet`] opens a [`RecipeHost`] per host in which every
//! account runs the playbook the inventory gives it.
//!
//! Invariant: the session's command lines never hold a secret (the interpreter's rule, and
//! `sudo`'s: a sudo password goes on stdin); a broken session is replaced by a fresh login
//! before the next command, so a failed push cannot make the rollback that follows
//! impossible.

use crate::connector::ssh::check_key_login;
use crate::connector::ssh::{ExecOutput, SshAuth, SshSession, SshTarget, check_password_login};
use crate::connector::{ConnectorError, FaultClass};
use crate::credential::{AccountName, CredentialId, HostName, Slot};
use crate::engine::driver::Fleet;
use crate::inventory::{ConnectAuth, Host};
use crate::recipe::{RecipeHost, Shell};
use crate::secret::Secret;
use crate::sshkey::is_private_key;
use crate::target::sudo::{self, Invocation, Sudo};

/// One host's admin session, with what it takes to log in again.
pub struct SshShell {
    target: SshTarget,
    session: SshSession,
    user: AccountName,
    /// What rotor may log in with, best first (see [`SshShell::login`]).
    logins: Vec<Login>,
    /// The credential whose secret is the login, where the inventory manages it: a push of it
    /// puts the new secret first among `logins`, a restore takes it back out of first place.
    connect_cred: Option<CredentialId>,
    /// How commands become root (`target::sudo`); found by [`SshShell::use_sudo`].
    sudo: Sudo,
    /// Told whether a login with the bootstrap key file worked, whenever one was tried.
    seen: Option<Box<dyn Fn(bool) + Send>>,
}

/// One way rotor may log in as the connect user, and how to name it in a message.
pub struct Login {
    with: ConnectWith,
    /// E.g. "the vault's current key of h1/root" (never the secret).
    pub what: String,
}

/// The connect identity, kept to log in again when a session breaks.
enum ConnectWith {
    KeyFile(std::path::PathBuf),
    Password(Secret),
    /// A private key from the vault (a connect credential that is an SSH key).
    KeyMemory(Secret),
}

impl Login {
    pub fn key_file(path: &std::path::Path, what: String) -> Login {
        Login {
            with: ConnectWith::KeyFile(path.to_owned()),
            what,
        }
    }

    /// A vault secret: a private key is offered as a key, never sent as a password.
    pub fn secret(secret: &Secret, what: String) -> Login {
        let with = if is_private_key(secret) {
            ConnectWith::KeyMemory(secret.clone())
        } else {
            ConnectWith::Password(secret.clone())
        };
        Login { with, what }
    }

    fn same(&self, other: &Login) -> bool {
        match (&self.with, &other.with) {
            (ConnectWith::KeyFile(a), ConnectWith::KeyFile(b)) => a == b,
            (ConnectWith::Password(a), ConnectWith::Password(b))
            | (ConnectWith::KeyMemory(a), ConnectWith::KeyMemory(b)) => a.ct_eq(b),
            _ => false,
        }
    }
}

impl ConnectWith {
    fn login(&self, target: &SshTarget, user: &AccountName) -> Result<SshSession, ConnectorError> {
        match self {
            ConnectWith::KeyFile(p) => SshSession::connect(target, user, SshAuth::KeyFile(p)),
            ConnectWith::Password(s) => SshSession::connect(target, user, SshAuth::Password(s)),
            ConnectWith::KeyMemory(k) => SshSession::connect_with_key(target, user, k),
        }
    }
}

/// Logs in with the first of `logins` the host accepts: a rejected one gives way to the next;
/// any other failure (unreachable, host key mismatch, timeout) ends the attempt at once,
/// since the next secret would meet the same host. The index of the one that worked.
fn first_login(
    target: &SshTarget,
    user: &AccountName,
    logins: &[Login],
) -> Result<(SshSession, usize), ConnectorError> {
    first_of(&target.host, user, logins, |login| {
        login.with.login(target, user)
    })
}

/// [`first_login`]'s rule with the login itself passed in (tests).
fn first_of<T>(
    host: &HostName,
    user: &AccountName,
    logins: &[Login],
    mut try_one: impl FnMut(&Login) -> Result<T, ConnectorError>,
) -> Result<(T, usize), ConnectorError> {
    let mut rejected: Vec<&str> = Vec::new();
    for (idx, login) in logins.iter().enumerate() {
        match try_one(login) {
            Ok(session) => {
                if !rejected.is_empty() {
                    tracing::warn!(host = %host, user = %user, "logged in with {} after the host rejected {}", login.what, rejected.join(", "));
                }
                return Ok((session, idx));
            }
            Err(e) if e.class == FaultClass::ConnectAuthRejected && idx + 1 < logins.len() => {
                rejected.push(&login.what);
            }
            Err(e) if e.class == FaultClass::ConnectAuthRejected && !rejected.is_empty() => {
                rejected.push(&login.what);
                return Err(ConnectorError::new(
                    FaultClass::ConnectAuthRejected,
                    format!(
                        "{}: {user} rejected every secret rotor has to log in with ({}); check the account on the host (`rotor status` shows its rotations), then set the inventory's `connect` to a working identity",
                        host,
                        rejected.join(", ")
                    ),
                ));
            }
            Err(e) => return Err(e),
        }
    }
    Err(ConnectorError::new(
        FaultClass::ConnectAuthRejected,
        format!("{}: rotor has nothing to log in as {user} with", host),
    ))
}

impl SshShell {
    /// Logs in with the first of `logins` the host accepts (a rejected one gives way to the
    /// next), and keeps them all for the next login should the session break. `connect_cred`
    /// is the credential whose secret the logins are, where the inventory manages it.
    pub fn login(
        target: SshTarget,
        user: &AccountName,
        mut logins: Vec<Login>,
        connect_cred: Option<CredentialId>,
    ) -> Result<SshShell, ConnectorError> {
        let (session, idx) = first_login(&target, user, &logins)?;
        // The one that worked is tried first next time.
        let worked = logins.remove(idx);
        logins.insert(0, worked);
        Ok(SshShell {
            target,
            session,
            user: user.clone(),
            logins,
            connect_cred,
            sudo: Sudo::for_user(user),
            seen: None,
        })
    }

    /// `seen` is told whether a login with the bootstrap key file worked, each time one is
    /// tried: now, if this session logged in with it, and after retiring the connect key.
    pub fn on_bootstrap_seen(&mut self, seen: Box<dyn Fn(bool) + Send>) {
        if matches!(
            self.logins.first(),
            Some(Login {
                with: ConnectWith::KeyFile(_),
                ..
            })
        ) {
            seen(true);
        }
        self.seen = Some(seen);
    }

    /// Finds how this session's commands become root, once after login, and refuses the
    /// host when sudo would log their input: root needs nothing; else a NOPASSWD rule; else
    /// the first of `passwords` (the connect user's, from the vault) that sudo accepts. Then
    /// `sudo -l` must show that sudo does not write the input of rotor's commands (new
    /// passwords) to disk. An error means the shell must not be used for the host.
    pub fn use_sudo(&mut self, passwords: Vec<Secret>) -> Result<(), ConnectorError> {
        if self.user.as_str() == "root" {
            self.sudo = Sudo::Root;
            return Ok(());
        }
        self.login_again_if_broken()?;
        let n_passwords = passwords.len();
        let session = &mut self.session;
        let found = Sudo::detect(&self.user, passwords, |inv| succeeds(session, inv))?;
        let host = &self.target.host;
        self.sudo = found.ok_or_else(|| sudo::no_way_to_root(host, &self.user, n_passwords))?;
        let Some(listing) = self.sudo.listing() else {
            return Ok(());
        };
        let out = self.session.exec(&listing.command, &listing.stdin)?;
        if out.status != 0 {
            let ended = crate::recipe::ended(&out);
            return Err(sudo::listing_failed(host, &self.user, &self.sudo, &ended));
        }
        if matches!(self.sudo, Sudo::Password(_)) && sudo::has_nopasswd(&out.stdout) {
            return Err(sudo::mixed_rules(host, &self.user));
        }
        let logging = sudo::input_logging(&out.stdout);
        if logging.logged() {
            return Err(sudo::refusal(host, &self.user, &self.sudo, &logging));
        }
        tracing::debug!(host = %host, user = %self.user, "sudo checked: input is not logged");
        Ok(())
    }

    /// Whether each of `names` exists on the host and whether it is locked, read-only
    /// (`getent passwd`, `passwd -S`, and the first character of the `getent shadow`
    /// password field: the hash itself never leaves the host), in one script on stdin as
    /// root. `rotor inventory check --connect` asks it.
    pub fn account_states(
        &mut self,
        names: &[AccountName],
    ) -> Result<Vec<AccountState>, ConnectorError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let out = Shell::exec(self, "sh -s", account_script(names).as_bytes())?;
        if out.status != 0 {
            return Err(ConnectorError::new(
                FaultClass::Protocol,
                format!(
                    "{}: reading the accounts failed ({})",
                    self.target.host,
                    crate::recipe::ended(&out)
                ),
            ));
        }
        Ok(parse_account_states(names, &out.stdout))
    }

    fn login_again_if_broken(&mut self) -> Result<(), ConnectorError> {
        if self.session.is_broken() {
            tracing::info!(host = %self.target.host, "admin session broke; logging in again");
            let (session, idx) = first_login(&self.target, &self.user, &self.logins)?;
            self.session = session;
            let worked = self.logins.remove(idx);
            self.logins.insert(0, worked);
            self.sudo.session_replaced();
        }
        Ok(())
    }
}

/// One account as [`SshShell::account_states`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountState {
    pub name: AccountName,
    /// `getent passwd` knows it.
    pub exists: bool,
    /// `passwd -S` says `L`, or the shadow password field starts with `!` or `*`: no
    /// password logs in, and a password rotor set would unlock it.
    pub locked: bool,
    /// The host did not say (its answer was cut or had no line for the account).
    pub unknown: bool,
}

/// The script of [`SshShell::account_states`]: one line per account, `rotor-account NAME
/// missing` or `rotor-account NAME present STATUS FIRST` (`passwd -S`'s status and the
/// password field's first character, `-` when empty or unknown). Names passed the Linux
/// user-name rule, so they are safe in a script.
fn account_script(names: &[AccountName]) -> String {
    let list: Vec<&str> = names.iter().map(AccountName::as_str).collect();
    format!(
        "for a in {}; do\n\
         if getent passwd -- \"$a\" >/dev/null 2>&1; then\n\
         s=$(passwd -S -- \"$a\" 2>/dev/null | cut -d' ' -f2)\n\
         h=$(getent shadow -- \"$a\" 2>/dev/null | cut -d: -f2 | cut -c1)\n\
         printf 'rotor-account %s present %s %s\\n' \"$a\" \"${{s:--}}\" \"${{h:--}}\"\n\
         else printf 'rotor-account %s missing\\n' \"$a\"; fi\n\
         done\n",
        list.join(" ")
    )
}

/// Reads the script's answer (hostile input: only lines naming an account asked about count,
/// within the first 64 KiB).
fn parse_account_states(names: &[AccountName], stdout: &[u8]) -> Vec<AccountState> {
    let text = String::from_utf8_lossy(&stdout[..stdout.len().min(64 * 1024)]);
    names
        .iter()
        .map(|name| {
            let line = text.lines().find_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some("rotor-account") && f.next() == Some(name.as_str()))
                    .then(|| f.map(str::to_owned).collect::<Vec<_>>())
            });
            match line.as_deref() {
                Some([state]) if state == "missing" => AccountState {
                    name: name.clone(),
                    exists: false,
                    locked: false,
                    unknown: false,
                },
                Some([state, status, first]) if state == "present" => AccountState {
                    name: name.clone(),
                    exists: true,
                    locked: status == "L" || first == "!" || first == "*",
                    unknown: false,
                },
                _ => AccountState {
                    name: name.clone(),
                    exists: false,
                    locked: false,
                    unknown: true,
                },
            }
        })
        .collect()
}

/// Runs `inv` on `session`: did it exit 0? (Its output is not read: a sudo probe's stdin
/// holds a password.)
fn succeeds(session: &mut SshSession, inv: &Invocation) -> Result<bool, ConnectorError> {
    Ok(session.exec(&inv.command, &inv.stdin)?.status == 0)
}

impl Shell for SshShell {
    fn host(&self) -> &HostName {
        &self.target.host
    }

    fn exec(&mut self, command: &str, stdin: &[u8]) -> Result<ExecOutput, ConnectorError> {
        self.login_again_if_broken()?;
        let session = &mut self.session;
        if !self.sudo.validate(|inv| succeeds(session, inv))? {
            return Err(sudo::no_way_to_root(&self.target.host, &self.user, 1));
        }
        let Some(inv) = self.sudo.wrap(command, stdin) else {
            unreachable!("validate succeeded, so the password is validated on this session")
        };
        self.session.exec(&inv.command, &inv.stdin)
    }

    fn password_login(
        &mut self,
        account: &AccountName,
        password: &Secret,
    ) -> Result<(), ConnectorError> {
        check_password_login(&self.target, account, password)
    }

    fn key_login(
        &mut self,
        account: &AccountName,
        private_key: &Secret,
    ) -> Result<(), ConnectorError> {
        check_key_login(&self.target, account, private_key)
    }

    fn logs_in_with(&self, cred: &CredentialId) -> bool {
        self.connect_cred.as_ref() == Some(cred)
    }

    fn bootstrap_accepted(&mut self) -> Option<bool> {
        let path = self.logins.iter().find_map(|l| match &l.with {
            ConnectWith::KeyFile(path) => Some(path.clone()),
            _ => None,
        })?;
        let accepted = match SshSession::connect(&self.target, &self.user, SshAuth::KeyFile(&path))
        {
            Ok(_) => true,
            Err(e) if e.class == FaultClass::ConnectAuthRejected => false,
            Err(_) => return None,
        };
        if let Some(seen) = &self.seen {
            seen(accepted);
        }
        Some(accepted)
    }

    fn secret_changed(&mut self, cred: &CredentialId, new: Option<&Secret>) {
        // The connect user's own password is what sudo asks for: sudo takes the new one
        // (validated before use), and the old one again after a rollback.
        if cred.host == self.target.host && cred.account == self.user && cred.slot == Slot::Main {
            match new {
                Some(new) if !is_private_key(new) => self.sudo.password_changed(new.clone()),
                Some(_) => {}
                None => self.sudo.password_restored(),
            }
        }
        if self.connect_cred.as_ref() != Some(cred) {
            return;
        }
        match new {
            // The host holds the new secret now (or may: a push that failed half-way): a
            // login after a broken session tries it first, the old one after it.
            Some(new) => {
                let login = Login::secret(new, format!("the new secret of {cred}"));
                self.logins.retain(|l| !l.same(&login));
                self.logins.insert(0, login);
            }
            // The saved one is back: the new one goes last.
            None => {
                if self.logins.len() > 1 && self.logins[0].what.starts_with("the new secret") {
                    let new = self.logins.remove(0);
                    self.logins.push(new);
                }
            }
        }
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

    /// What rotor may log in to `host` with, best first. Where the inventory manages the
    /// connect identity (`Host::connect_credential`): the pending secret of an open rotation
    /// of it (a run that died after the host took the new secret; only with `pending`), then
    /// the vault's current one, then the connect key file (the bootstrap identity, before the
    /// host has a key of its own). Otherwise the connect key file, or the vault password
    /// `connect` names.
    fn logins(&self, host: &Host, pending: bool) -> Result<Vec<Login>, ConnectorError> {
        let vault_error = |cred: &CredentialId, e: crate::engine::ledger::StoreFailure| {
            ConnectorError::new(
                FaultClass::ConnectAuthRejected,
                format!(
                    "{}: cannot read connect credential {cred} from the vault: {e}",
                    host.name
                ),
            )
        };
        let mut logins = Vec::new();
        let managed = host.connect_credential();
        if let Some(cred) = &managed {
            let pending = if pending {
                self.store.pending(cred).map_err(|e| vault_error(cred, e))?
            } else {
                None
            };
            if let Some(pending) = pending {
                logins.push(Login::secret(
                    &pending,
                    format!("the pending secret of {cred}"),
                ));
            }
            if let Some(current) = self.store.current(cred).map_err(|e| vault_error(cred, e))? {
                logins.push(Login::secret(
                    &current,
                    format!("the vault's current secret of {cred}"),
                ));
            }
        }
        match &host.connect.auth {
            ConnectAuth::KeyFile(path) => logins.push(Login::key_file(
                path,
                format!("the bootstrap key {}", path.display()),
            )),
            ConnectAuth::Vault(cred) if managed.is_none() => {
                let secret = self.store.current(cred).map_err(|e| vault_error(cred, e))?;
                if let Some(secret) = secret {
                    logins.push(Login::secret(
                        &secret,
                        format!("the vault's current secret of {cred}"),
                    ));
                }
            }
            ConnectAuth::Vault(_) => {}
        }
        if logins.is_empty() {
            let cred = match &host.connect.auth {
                ConnectAuth::Vault(cred) => cred.to_string(),
                ConnectAuth::KeyFile(_) => unreachable!("a key file is always a login"),
            };
            return Err(ConnectorError::new(
                FaultClass::ConnectAuthRejected,
                format!(
                    "{}: the connect credential {cred} is not in the vault; store it with `rotor enroll {cred}`",
                    host.name
                ),
            ));
        }
        Ok(logins)
    }

    /// The host's admin session, logged in with the vault's current connect secret or the
    /// connect key file only (a rotation's logins, in its order, without the pending secret
    /// of an open rotation: a check run every few minutes must not make a failed login that
    /// nothing records), and nothing else: sudo not yet detected, no sighting of the
    /// bootstrap key recorded. `rotor inventory check --connect` uses it, then
    /// [`SshShell::use_sudo`]; it reports an open rotation of the connect credential instead.
    pub fn login_shell(&self, host: &Host) -> Result<SshShell, ConnectorError> {
        SshShell::login(
            self.target(host),
            &host.connect.user,
            self.logins(host, false)?,
            host.connect_credential(),
        )
    }

    /// The host's admin session and each account's recipe.
    pub fn open_host(&self, host: &Host) -> Result<RecipeHost<SshShell>, ConnectorError> {
        let mut shell = SshShell::login(
            self.target(host),
            &host.connect.user,
            self.logins(host, true)?,
            host.connect_credential(),
        )?;
        shell.use_sudo(self.sudo_passwords(host)?)?;
        if host.bootstrap_key().is_some() {
            let (store, name) = (self.store.clone(), host.name.clone());
            shell.on_bootstrap_seen(Box::new(move |accepted| {
                store.bootstrap_seen(&name, accepted)
            }));
        }
        let accounts = host
            .accounts
            .iter()
            .map(|a| (a.credential(&host.name), a.recipe.clone(), a.vars.clone()));
        let mut recipe_host = RecipeHost::new(shell, accounts);
        // The bootstrap key is the connect key credential's previous key wherever the host
        // still has it: retiring removes it with rotor's own, so that after its first rotation
        // no host accepts the key every host shared.
        if let (Some(cred), Some(path)) = (host.connect_credential(), host.bootstrap_key()) {
            let public = bootstrap_public(path)
                .map_err(|why| tracing::warn!(host = %host.name, "cannot read the public half of the bootstrap key {}: {why}; it stays in authorized_keys", path.display()))
                .ok();
            recipe_host.also_previous(&cred, public);
        }
        Ok(recipe_host)
    }
}

/// The public half of a connect key file: its `.pub` file beside it, else read from the
/// private key itself.
fn bootstrap_public(path: &std::path::Path) -> Result<crate::sshkey::PublicKey, String> {
    let mut public_path = path.as_os_str().to_owned();
    public_path.push(".pub");
    if let Ok(text) = std::fs::read_to_string(&public_path) {
        return crate::sshkey::PublicKey::parse(text.trim()).map_err(|e| e.to_string());
    }
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    crate::sshkey::public_of(&Secret::new(text)).map_err(|e| e.to_string())
}

impl SshFleet {
    /// What sudo may be given for a non-root connect user: its password when rotor logs in
    /// with it, else the vault's secret of `HOST/USER` if there is one; never a private key.
    pub fn sudo_passwords(&self, host: &Host) -> Result<Vec<Secret>, ConnectorError> {
        let user = &host.connect.user;
        if user.as_str() == "root" {
            return Ok(Vec::new());
        }
        let read = |cred: &CredentialId| -> Result<Option<Secret>, ConnectorError> {
            let secret = self.store.current(cred).map_err(|e| {
                ConnectorError::new(
                    FaultClass::ConnectAuthRejected,
                    format!(
                        "{}: cannot read {cred} (for sudo) from the vault: {e}",
                        host.name
                    ),
                )
            })?;
            Ok(secret.filter(|s| !is_private_key(s)))
        };
        let own = CredentialId {
            host: host.name.clone(),
            account: user.clone(),
            slot: Slot::Main,
        };
        // The connect credential when it is a password; else (a key file, or a vault key) the
        // user's own password credential.
        let cred = match &host.connect.auth {
            ConnectAuth::Vault(cred) if cred.slot == Slot::Main => cred,
            _ => &own,
        };
        // A run that died after the host took the user's new password left it pending: sudo
        // asks for that one then.
        let pending = self
            .store
            .pending(cred)
            .ok()
            .flatten()
            .filter(|s| !is_private_key(s));
        Ok(pending.into_iter().chain(read(cred)?).collect())
    }
}

impl Fleet for SshFleet {
    fn open(&self, host: &Host) -> Result<Box<dyn crate::target::Target + Send>, ConnectorError> {
        Ok(Box::new(self.open_host(host)?))
    }

    fn scan_host(&self, host: &Host) -> Result<crate::target::ScannedHost, ConnectorError> {
        use crate::target::ScanHost as _;
        self.open_host(host)?.scan_host()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Entropy, SeededEntropy};

    /// Logins are tried in order; a rejected one gives way to the next, any other failure
    /// (the host, not the secret) ends the attempt; all rejected names each one tried.
    #[test]
    fn the_first_accepted_login_wins_and_only_a_rejection_tries_the_next() {
        let host = HostName::parse("h1").unwrap();
        let user = AccountName::parse("root").unwrap();
        let logins = || {
            vec![
                Login::secret(
                    &Secret::new("pending-pw".into()),
                    "the pending secret of h1/root".into(),
                ),
                Login::secret(
                    &Secret::new("current-pw".into()),
                    "the vault's current secret of h1/root".into(),
                ),
                Login::key_file(std::path::Path::new("/k"), "the bootstrap key /k".into()),
            ]
        };
        let answer = |accepts: &'static str, other: Option<FaultClass>| {
            move |login: &Login| -> Result<(), ConnectorError> {
                if login.what.contains(accepts) {
                    return Ok(());
                }
                Err(ConnectorError::new(
                    other.unwrap_or(FaultClass::ConnectAuthRejected),
                    "no",
                ))
            }
        };
        let tried = |accepts, other| {
            first_of(&host, &user, &logins(), answer(accepts, other)).map(|(_, idx)| idx)
        };
        assert_eq!(tried("pending", None).unwrap(), 0);
        assert_eq!(tried("current", None).unwrap(), 1);
        assert_eq!(tried("bootstrap", None).unwrap(), 2);
        // The host itself failed: the next secret would meet the same host.
        let err = tried("bootstrap", Some(FaultClass::HostKeyMismatch)).unwrap_err();
        assert_eq!(err.class, FaultClass::HostKeyMismatch);
        let err = tried("nothing", None).unwrap_err();
        assert_eq!(err.class, FaultClass::ConnectAuthRejected);
        assert!(
            err.message.contains("the pending secret of h1/root, the vault's current secret of h1/root, the bootstrap key /k"),
            "{}",
            err.message
        );
        assert!(!err.message.contains("-pw"), "no secret in the message");
    }

    /// The account script's answer: missing, present, locked by `passwd -S` or by the
    /// password field, and lines that do not fit (or name another account) are not believed.
    #[test]
    fn account_states_are_read_from_the_script_lines_only() {
        let names: Vec<AccountName> = ["svc_app", "svc_backup", "gone", "locked", "star", "odd"]
            .iter()
            .map(|n| AccountName::parse(n).unwrap())
            .collect();
        let script = account_script(&names);
        assert!(script.starts_with("for a in svc_app svc_backup gone locked star odd; do"));
        let out = b"noise rotor-account svc_app present P -\n\
            rotor-account svc_app present P $\n\
            rotor-account svc_backup present P $\n\
            rotor-account gone missing\n\
            rotor-account locked present L !\n\
            rotor-account star present P *\n\
            rotor-account odd present\n";
        let states = parse_account_states(&names, out);
        let got: Vec<(bool, bool, bool)> = states
            .iter()
            .map(|s| (s.exists, s.locked, s.unknown))
            .collect();
        assert_eq!(
            got,
            [
                (true, false, false),
                (true, false, false),
                (false, false, false),
                (true, true, false),
                (true, true, false),
                (false, false, true),
            ]
        );
    }

    /// A connect credential that is a key pair is offered as a key, never sent as a password.
    #[test]
    fn a_private_key_from_the_vault_is_told_from_a_password() {
        let cred = crate::credential::CredentialId::parse("h1/deploy").unwrap();
        let key = crate::sshkey::generate(&mut *SeededEntropy::new(5).rng(), &cred);
        assert!(is_private_key(&key.private));
        for password in [
            "hunter2-very-long",
            "-----BEGIN",
            " -----BEGIN OPENSSH PRIVATE KEY-----",
        ] {
            assert!(
                !is_private_key(&Secret::new(password.to_owned())),
                "{password}"
            );
        }
    }
}

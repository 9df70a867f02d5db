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
    auth: ConnectWith,
    /// How commands become root (`target::sudo`); found by [`SshShell::use_sudo`].
    sudo: Sudo,
}

/// The connect identity, kept to log in again when a session breaks.
enum ConnectWith {
    KeyFile(std::path::PathBuf),
    Password(Secret),
    /// A private key from the vault (a connect credential that is an SSH key).
    KeyMemory(Secret),
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

impl SshShell {
    /// Logs in with the host's connect identity (host key checked first, by the connector).
    pub fn connect(
        target: SshTarget,
        user: &AccountName,
        auth: SshAuth<'_>,
    ) -> Result<SshShell, ConnectorError> {
        let auth = match auth {
            SshAuth::KeyFile(p) => ConnectWith::KeyFile(p.to_owned()),
            // A vault connect credential that is a key pair is offered as a key, never sent as
            // a password.
            SshAuth::Password(s) if is_private_key(s) => ConnectWith::KeyMemory(s.clone()),
            SshAuth::Password(s) => ConnectWith::Password(s.clone()),
        };
        let session = auth.login(&target, user)?;
        Ok(SshShell {
            target,
            session,
            user: user.clone(),
            auth,
            sudo: Sudo::for_user(user),
        })
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
        let logging = sudo::input_logging(&out.stdout);
        if logging.logged() {
            return Err(sudo::refusal(host, &self.user, &self.sudo, &logging));
        }
        tracing::debug!(host = %host, user = %self.user, "sudo checked: input is not logged");
        Ok(())
    }

    /// rotor has just set the connect user's password to `password`: sudo gets this one from
    /// now on, validated before its first use (the one before is the fallback: a rollback may
    /// have restored it). A NOPASSWD or root session sends none.
    pub fn sudo_password_changed(&mut self, password: Secret) {
        self.sudo.password_changed(password);
    }

    fn login_again_if_broken(&mut self) -> Result<(), ConnectorError> {
        if self.session.is_broken() {
            tracing::info!(host = %self.target.host, "admin session broke; logging in again");
            self.session = self.auth.login(&self.target, &self.user)?;
            self.sudo.session_replaced();
        }
        Ok(())
    }
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

    /// The host's admin session and each account's recipe.
    pub fn open_host(&self, host: &Host) -> Result<RecipeHost<SshShell>, ConnectorError> {
        let user = &host.connect.user;
        let target = self.target(host);
        let mut shell = match &host.connect.auth {
            ConnectAuth::KeyFile(path) => SshShell::connect(target, user, SshAuth::KeyFile(path))?,
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
                SshShell::connect(target, user, SshAuth::Password(&secret))?
            }
        };
        shell.use_sudo(self.sudo_passwords(host)?)?;
        let accounts = host
            .accounts
            .iter()
            .map(|a| (a.credential(&host.name), a.recipe.clone(), a.vars.clone()));
        Ok(RecipeHost::new(shell, accounts))
    }
}

impl SshFleet {
    /// What sudo may be given for a non-root connect user: its password when rotor logs in
    /// with it, else the vault's secret of `HOST/USER` if there is one; never a private key.
    fn sudo_passwords(&self, host: &Host) -> Result<Vec<Secret>, ConnectorError> {
        let user = &host.connect.user;
        if user.as_str() == "root" {
            return Ok(Vec::new());
        }
        let read = |cred: &CredentialId| {
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
        if let ConnectAuth::Vault(cred) = &host.connect.auth
            && let Some(password) = read(cred)?
        {
            return Ok(vec![password]);
        }
        let own = CredentialId {
            host: host.name.clone(),
            account: user.clone(),
            slot: Slot::Main,
        };
        Ok(read(&own)?.into_iter().collect())
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

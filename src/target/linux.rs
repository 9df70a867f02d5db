//! Linux hosts over SSH: [`SshShell`] is one admin session to a host (the recipe
//! interpreter's [`Shell`]), and [`SshFleet`] opens a [`RecipeHost`] per host in which every
//! account runs the playbook the inventory gives it.
//!
//! Invariant: the session's command lines never hold a secret (the interpreter's rule); a
//! broken session is replaced by a fresh login before the next command, so a failed push
//! cannot make the rollback that follows impossible.

use crate::connector::ssh::check_key_login;
use crate::connector::ssh::{ExecOutput, SshAuth, SshSession, SshTarget, check_password_login};
use crate::connector::{ConnectorError, FaultClass};
use crate::credential::{AccountName, HostName};
use crate::engine::driver::Fleet;
use crate::inventory::{ConnectAuth, Host};
use crate::recipe::{RecipeHost, Shell};
use crate::secret::Secret;
use crate::sshkey::is_private_key;

/// One host's admin session, with what it takes to log in again.
pub struct SshShell {
    target: SshTarget,
    session: SshSession,
    user: AccountName,
    auth: ConnectWith,
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
        })
    }
}

impl Shell for SshShell {
    fn host(&self) -> &HostName {
        &self.target.host
    }

    fn sudo(&self) -> bool {
        self.user.as_str() != "root"
    }

    fn exec(&mut self, command: &str, stdin: &[u8]) -> Result<ExecOutput, ConnectorError> {
        if self.session.is_broken() {
            tracing::info!(host = %self.target.host, "admin session broke; logging in again");
            self.session = self.auth.login(&self.target, &self.user)?;
        }
        self.session.exec(command, stdin)
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
        let shell = match &host.connect.auth {
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
        let accounts = host
            .accounts
            .iter()
            .map(|a| (a.credential(&host.name), a.recipe.clone(), a.vars.clone()));
        Ok(RecipeHost::new(shell, accounts))
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

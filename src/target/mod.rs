//! Targets by capability: what the engine needs from wherever a credential lives, whatever its
//! kind (password, SSH key pair) and platform (Linux over SSH, an LDAP directory, a recipe a
//! user wrote). The engine sees only this trait; the adapters live beside it
//! (`linux` over an SSH session running a playbook recipe, `directory` over LDAP).
//!
//! One value per host (or directory), holding one admin session reused for every credential
//! on it; each call names the credential, so one host may hold credentials of several kinds.
//!
//! Invariant: no error built by a target contains a secret or a target's words from a step
//! that handled one (see `connector`).

pub mod directory;
pub mod linux;
pub mod sudo;

use crate::connector::ConnectorError;
use crate::credential::CredentialId;
use crate::secret::Secret;

/// What a credential is: the engine's generator and the vault's `show` need to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialKind {
    /// A password (or passphrase) the account logs in with.
    Password,
    /// An ed25519 key pair; the vault keeps the private key in OpenSSH format.
    SshKey,
}

/// The capabilities one rotation uses, in protocol order (DESIGN.md, "The rotation protocol").
pub trait Target {
    /// Reads what is needed to undo a change (Linux password: the shadow hash; SSH key: the
    /// keys rotor manages in `authorized_keys`). Opaque to the engine; sealed in the vault.
    /// `AccountMissing` when the account does not exist.
    fn read_restore_point(&mut self, cred: &CredentialId) -> Result<Secret, ConnectorError>;

    /// Whether the credential must not be rotated, judging by its restore point (a locked
    /// account: giving it a working password would unlock it). `Some(why)` refuses.
    fn refuses_rotation(&self, _cred: &CredentialId, _restore_point: &Secret) -> Option<String> {
        None
    }

    /// Whether `now` (a restore point read from the target just now) shows that the target
    /// holds `secret`, checked without a login. `None` when it cannot be told. Recovery uses
    /// it to undo only what rotor changed.
    /// The default reads `now` as a password hash (shadow, LDAP `{CRYPT}`/`{SSHA}`...).
    fn holds(&self, _cred: &CredentialId, now: &Secret, secret: &Secret) -> Option<bool> {
        crate::password_hash::matches(now, secret)
    }

    /// Applies the new credential (a secret only on stdin or inside the protocol).
    fn apply(
        &mut self,
        cred: &CredentialId,
        new: &Secret,
        saved: &Secret,
    ) -> Result<(), ConnectorError>;

    /// Proves a secret on a fresh connection as the account itself. `VerifyFailed` when the
    /// target answered and rejected it; other classes when the proof could not be attempted.
    fn prove(&mut self, cred: &CredentialId, secret: &Secret) -> Result<(), ConnectorError>;

    /// Puts the saved restore point back (and takes `new` away where both could be present,
    /// as with keys) and checks that it is back.
    fn undo(
        &mut self,
        cred: &CredentialId,
        saved: &Secret,
        new: &Secret,
    ) -> Result<(), ConnectorError>;

    /// The vault's current secret of the credential, told before a rotation or a recovery
    /// reads the restore point: a key it names is the account's previous key even where rotor
    /// did not install it (a key pair stored with `rotor enroll --ssh-key`), so retiring
    /// removes it too. Password targets need nothing of it.
    fn known_current(&mut self, _cred: &CredentialId, _current: &Secret) {}

    /// The incident profile (`rotor rotate --breach`): an SSH key credential rotated on this
    /// target replaces every key its account had (the removed lines are kept in the restore
    /// point and named in the report), rather than only rotor's previous one.
    fn breach(&mut self) {}

    /// Recovery is about to settle a rotation that saved `restore_point`: a target that reads
    /// restore points in more than one way (breach mode) reads this credential's the way the
    /// rotation did.
    fn resume(&mut self, _cred: &CredentialId, _restore_point: &Secret) {}

    /// What the report should say about the credential's last rotation beyond its outcome
    /// (the proof used where it was not a login, keys removed that rotor did not install).
    /// Taken: a second call gives nothing.
    fn notes(&mut self, _cred: &CredentialId) -> Vec<String> {
        Vec::new()
    }

    /// Whether this credential has work after commit (SSH keys: remove the old key). When it
    /// does, the rotation passes through `retiring` and recovery finishes it.
    fn retires(&self, _cred: &CredentialId) -> bool {
        false
    }

    /// Removes the old credential once the new one is proven and current. Idempotent:
    /// recovery repeats it after a crash.
    fn retire(
        &mut self,
        _cred: &CredentialId,
        _saved: &Secret,
        _new: &Secret,
    ) -> Result<(), ConnectorError> {
        Ok(())
    }
}

/// What a host says about one of its accounts, for the fleet scan (shared, unmanaged and
/// stale credentials): read-only, nothing changed. The stored hash is a secret of the host's
/// (it is compared, never shown).
#[derive(Debug)]
pub struct AccountFacts {
    /// The name as the host lists it (outside text: escape it before showing it).
    pub name: String,
    pub uid: Option<u32>,
    pub home: String,
    pub shell: String,
    /// The shadow hash when the account has a usable password (not locked, not empty).
    pub password_hash: Option<Secret>,
    /// The password field is empty: a login without a password.
    pub empty_password: bool,
    /// Days since 1970-01-01 of the last password change (shadow's 3rd field).
    pub last_change_day: Option<u64>,
}

/// Listing a target's accounts and their credential facts (the scan's capability).
pub trait ListAccounts {
    fn list_accounts(&mut self) -> Result<Vec<AccountFacts>, ConnectorError>;
}

/// One host as the fleet scan reads it: its accounts, and the SHA256 fingerprints of the keys
/// each account's `authorized_keys` lets in (accounts one can log in to only).
#[derive(Debug, Default)]
pub struct ScannedHost {
    pub accounts: Vec<AccountFacts>,
    /// By account name; accounts whose file was not read, or is absent, are not here.
    pub keys: std::collections::HashMap<String, Vec<String>>,
    /// Accounts whose `authorized_keys` could not be read safely, with why (a link, another
    /// owner): reported, never followed.
    pub unreadable_keys: Vec<(String, String)>,
    /// Who is logged in now (`who`, or `loginctl` where `who` is missing).
    pub sessions: Vec<Session>,
    /// Why the sessions could not be read, or were read only in part (a failed `who`, an
    /// answer over the caps). A scan never fails for its sessions.
    pub sessions_unread: Option<String>,
}

/// One login session on a host, as `who` (or `loginctl`) lists it. Every field is outside
/// text, cut short where it was read: escape it before showing it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Session {
    /// The account logged in.
    pub account: String,
    /// The terminal (`pts/1`), or empty.
    pub line: String,
    /// Where from (an address or a display), or empty for a local login.
    pub from: String,
    /// When it began, in the host's words (`Dec  2 07:03` from `who` in the C locale).
    pub since: String,
}

/// Whether a login shell lets one in (`nologin`, `false` and `sync`-style commands do not).
pub fn is_login_shell(shell: &str) -> bool {
    let name = shell.rsplit('/').next().unwrap_or(shell);
    !shell.is_empty() && !matches!(name, "nologin" | "false" | "sync" | "halt" | "shutdown")
}

/// Reading a host for the fleet scan (accounts, then the keys of those one can log in to),
/// over the one admin session, changing nothing.
pub trait ScanHost {
    fn scan_host(&mut self) -> Result<ScannedHost, ConnectorError>;
}

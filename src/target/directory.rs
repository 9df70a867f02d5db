//! The `ldap-password` playbook's adapter: [`LdapDirectories`] opens LDAP directories and
//! gives the engine a target per directory account. (Playbooks as recipes, and the Linux
//! hosts that run them, are `recipe` and `target::linux`.)
//!
//! Invariant: no error built here carries an LDAP server's words from an operation that
//! handled a secret (see `connector::ldap`).

use crate::connector::{ConnectorError, FaultClass};
use crate::credential::{AccountName, CredentialId, HostName};
use crate::target::Target;
use std::collections::HashMap;
use std::sync::Arc;

use crate::connector::ldap::{
    DirectorySpec, DirectoryTarget, LdapAdmin, LockSeen, SearchScope, check_bind,
};
use crate::engine::directory::{Directories, OpenDirectory, Refusal};
use crate::inventory::{Directory, DirectoryAccounts, LdapScope};
use crate::secret::Secret;

/// The playbook of directory accounts (implemented by [`LdapDirectories`]).
pub const LDAP_PASSWORD: &str = "ldap-password";

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

    fn scan_account(
        &self,
        _cred: &CredentialId,
        dn: &str,
    ) -> Result<(Secret, Option<chrono::DateTime<chrono::Utc>>), ConnectorError> {
        let read = self.runtime.block_on(self.admin.read_restore_point(dn))?;
        // Generalized time as OpenLDAP writes it (`YYYYMMDDHHMMSSZ`); another form is
        // simply not known.
        let changed = read.changed.as_deref().and_then(|t| {
            chrono::NaiveDateTime::parse_from_str(t, "%Y%m%d%H%M%SZ")
                .ok()
                .map(|t| t.and_utc())
        });
        Ok((read.hash, changed))
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

impl Target for LdapAccount {
    fn read_restore_point(&mut self, _cred: &CredentialId) -> Result<Secret, ConnectorError> {
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
    fn refuses_rotation(&self, _cred: &CredentialId, _: &Secret) -> Option<String> {
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
    fn apply(
        &mut self,
        _cred: &CredentialId,
        new: &Secret,
        _saved: &Secret,
    ) -> Result<(), ConnectorError> {
        self.runtime
            .block_on(self.admin.set_password(&self.dn, new))
    }
    fn undo(
        &mut self,
        _cred: &CredentialId,
        saved: &Secret,
        _new: &Secret,
    ) -> Result<(), ConnectorError> {
        self.runtime
            .block_on(self.admin.restore_password_hash(&self.dn, saved))
    }
    fn prove(&mut self, _cred: &CredentialId, secret: &Secret) -> Result<(), ConnectorError> {
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
}

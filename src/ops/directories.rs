//! Directories and hosts as the operations open them: each selected directory opened once
//! per request (one bind, one set of searches, shared by the recovery pass and the run that
//! follows it: [`OpenOnce`]), its accounts kept as the selection says, and rotor's own bind
//! entry never among the others (by uid or DN): it is rotated only when a `cred:` scope names
//! it, and last (`DirectoryWork::bind_account`). Accounts a directory says new rotations must
//! leave alone (`OpenDirectory::may_rotate`) and named accounts it lacks come back as
//! results that changed nothing.

use std::sync::Arc;

use crate::connector::{ConnectorError, FaultClass};
use crate::credential::{AccountName, CredentialId, HostName};
use crate::engine::directory::{Directories, DirectoryWork, OpenDirectory};
use crate::engine::driver::{AccountWork, CredentialResult, HostWork};
use crate::engine::machine::Fault;
use crate::engine::{Outcome, Store};
use crate::inventory::{Directory, DirectorySelection, Host, Inventory, same_dn};
use crate::report::FailedDirectory;

/// Opens the selected directories (rotor's bind, searches run) and keeps the selected
/// accounts. A directory that cannot be opened is reported, not fatal: the rest runs.
/// Returned apart, as results that changed nothing: an account a `cred:` scope names that the
/// directory does not have (missing), and for new rotations the accounts the directory says
/// must be left alone (`OpenDirectory::may_rotate`: rotor cannot see their locks, say).
pub fn open_directories(
    inv: &Inventory,
    selected: &[DirectorySelection],
    dirs: &dyn Directories,
    purpose: Purpose,
) -> (
    Vec<DirectoryWork>,
    Vec<FailedDirectory>,
    Vec<CredentialResult>,
) {
    let (mut works, mut failed, mut not_started) = (Vec::new(), Vec::new(), Vec::new());
    for sel in selected {
        let d = &sel.directory;
        let opened = dirs.open(d).and_then(|open| {
            let refusals = match purpose {
                Purpose::Rotate => open.may_rotate()?,
                Purpose::RecoverOrVerify => Vec::new(),
            };
            Ok((open, refusals))
        });
        let (open, refusals) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                failed.push(FailedDirectory {
                    directory: d.name.to_string(),
                    class: e.class,
                    message: e.message,
                });
                continue;
            }
        };
        let mut accounts: Vec<(AccountName, String)> = open.accounts().to_vec();
        // rotor's own bind account is rotated only when named (`cred:DIR/UID`), and last: never
        // among the others, even where a listed DN or a search matches its entry (under its
        // credential's name or another uid), since the run's admin connection binds as it.
        let bind_uid = &d.bind_credential.account;
        let bind_account = sel
            .named
            .contains(bind_uid)
            .then(|| (bind_uid.clone(), d.bind_dn.clone()));
        let (bind_entry, others): (Vec<_>, Vec<_>) = accounts
            .into_iter()
            .partition(|(uid, dn)| uid == bind_uid || same_dn(dn, &d.bind_dn));
        accounts = others;
        if !bind_entry.is_empty() && bind_account.is_none() {
            tracing::info!(
                directory = %d.name,
                "rotor's own bind account ({}) is among the directory's accounts; it is rotated only when named: --scope cred:{}",
                d.bind_dn,
                d.bind_credential
            );
        }
        if let Some(only) = &sel.only {
            accounts.retain(|(uid, _)| only.contains(uid));
            for uid in only
                .iter()
                .filter(|u| *u != bind_uid && !accounts.iter().any(|(a, _)| a == *u))
            {
                let (class, why) = if bind_entry.iter().any(|(a, _)| a == uid) {
                    (
                        FaultClass::Refused,
                        format!(
                            "{}: this is rotor's own bind account ({}); to rotate it, name it as --scope cred:{}",
                            d.name, d.bind_dn, d.bind_credential
                        ),
                    )
                } else {
                    (
                        FaultClass::AccountMissing,
                        format!(
                            "{}: no such account among the directory's DNs and search results",
                            d.name
                        ),
                    )
                };
                not_started.push(CredentialResult {
                    cred: CredentialId::new(d.name.clone(), uid.clone()),
                    outcome: Outcome::NotChanged {
                        cause: Fault::target(class, why),
                    },
                    rotation: None,
                    elapsed_ms: 0,
                    notes: Vec::new(),
                });
            }
        }
        // By DN: a refused search base can hold thousands of the accounts.
        let refused: std::collections::HashMap<&str, &ConnectorError> = refusals
            .iter()
            .flat_map(|r| r.dns.iter().map(move |dn| (dn.as_str(), &r.cause)))
            .collect();
        for r in &refusals {
            tracing::warn!(directory = %d.name, n_accounts = r.dns.len(), "{}", r.cause.message);
        }
        accounts.retain(|(uid, dn)| {
            let Some(cause) = refused.get(dn.as_str()) else {
                return true;
            };
            not_started.push(CredentialResult {
                cred: CredentialId::new(d.name.clone(), uid.clone()),
                outcome: Outcome::NotChanged {
                    cause: Fault::target(cause.class, cause.message.clone()),
                },
                rotation: None,
                elapsed_ms: 0,
                notes: Vec::new(),
            });
            false
        });
        // The inventory validates that the directory's policy exists.
        let policy = inv
            .policies
            .get(&d.policy)
            .expect("validated policy")
            .clone();
        works.push(DirectoryWork {
            name: d.name.clone(),
            open,
            accounts,
            policy,
            bind_account,
        });
    }
    (works, failed, not_started)
}

/// What a command opens directories for: new rotations need more of a directory (rotor must
/// be able to tell a locked account) than settling old ones or checking logins does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Rotate,
    RecoverOrVerify,
}

/// Opens each directory at most once per command (one bind, one set of searches), whoever
/// asks: the recovery pass and the run that follows it.
pub struct OpenOnce {
    inner: Arc<dyn Directories>,
    opened: std::sync::Mutex<std::collections::HashMap<HostName, Arc<dyn OpenDirectory>>>,
}

impl OpenOnce {
    pub fn new(inner: Arc<dyn Directories>) -> OpenOnce {
        OpenOnce {
            inner,
            opened: Default::default(),
        }
    }
}

impl Directories for OpenOnce {
    fn open(&self, directory: &Directory) -> Result<Arc<dyn OpenDirectory>, ConnectorError> {
        // The lock is not held during `inner.open` (network I/O). Callers open directories
        // one after another, so no directory is opened twice at once.
        if let Some(open) = self
            .opened
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&directory.name)
        {
            return Ok(open.clone());
        }
        let open = self.inner.open(directory)?;
        self.opened
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(directory.name.clone(), open.clone());
        Ok(open)
    }
}

/// The directories that hold open rotations, opened for recovery.
pub fn directories_to_recover(
    inv: &Inventory,
    store: &dyn Store,
    dirs: &dyn Directories,
) -> Result<(Vec<DirectoryWork>, Vec<FailedDirectory>), crate::engine::ledger::StoreFailure> {
    let open = store.open_rotations()?;
    let wanted: Vec<DirectorySelection> = inv
        .directories
        .iter()
        .filter(|d| open.iter().any(|r| r.cred.host == d.name))
        .map(|d| DirectorySelection {
            directory: d.clone(),
            only: None,
            named: Default::default(),
        })
        .collect();
    let (mut works, failed, _) = open_directories(inv, &wanted, dirs, Purpose::RecoverOrVerify);
    // Recovery may need to settle a rotation of rotor's own bind account too.
    for w in &mut works {
        if let Some(d) = inv.directories.iter().find(|d| d.name == w.name) {
            w.bind_account = Some((d.bind_credential.account.clone(), d.bind_dn.clone()));
        }
    }
    Ok((works, failed))
}

/// Pairs each selected account with its policy.
pub fn host_work(inv: &Inventory, hosts: Vec<Host>) -> Vec<HostWork> {
    hosts
        .into_iter()
        .map(|host| {
            // The connect user's own credentials go last (its password before its key):
            // rotor's own login changes only once every other account of the host is done,
            // and its key only once a password rotation through it has settled.
            let mut listings: Vec<&crate::inventory::Account> = host.accounts.iter().collect();
            listings.sort_by_key(|a| {
                let own = host.is_connect_account(&a.credential(&host.name));
                (
                    own,
                    own && a.recipe.kind == crate::target::CredentialKind::SshKey,
                )
            });
            let accounts = listings
                .into_iter()
                .map(|a| {
                    // The inventory validates that every account's policy exists, and that
                    // its length is within the playbook's bounds.
                    let policy = inv.policies.get(&a.policy).expect("validated policy");
                    let policy = a
                        .recipe
                        .secret
                        .constrain(policy, &a.playbook)
                        .unwrap_or_else(|_| policy.clone());
                    AccountWork {
                        cred: a.credential(&host.name),
                        playbook: a.playbook.clone(),
                        policy,
                        kind: a.recipe.kind,
                    }
                })
                .collect();
            HostWork { host, accounts }
        })
        .collect()
}

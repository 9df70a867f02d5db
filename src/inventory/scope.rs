//! Scopes: which part of the inventory a command works on (`--scope group:emr`).
//! A scope that names nothing in the inventory is an error, never an empty selection,
//! so a typo cannot turn "rotate after the incident" into "rotate nothing, report success".

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::validate::{check_group_name, close_matches};
use super::{Directory, Host, Inventory};
use crate::credential::{AccountName, CredentialId, HostName};
use std::collections::BTreeSet;

const FORMS: &str = "all, host:NAME, group:NAME, account:NAME, directory:NAME or cred:HOST/ACCOUNT";

/// One `--scope` argument.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every account on every host.
    All,
    /// Every account on one host.
    Host(HostName),
    /// Every account on the hosts in a group.
    Group(String),
    /// This account name on every host that has it.
    Account(AccountName),
    /// One credential (`HOST/ACCOUNT` or `DIRECTORY/UID`).
    Cred(CredentialId),
    /// Every account of one LDAP directory.
    Directory(HostName),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("{}: use {FORMS}{}", describe(input), bare_hint(input))]
    UnknownKind { input: String },
    #[error("scope `{input}`: {reason}")]
    InvalidName { input: String, reason: String },

    /// The scope is well formed but names nothing in the inventory.
    #[error("no {what} in {}; {hint}", file.display())]
    NotFound {
        file: PathBuf,
        /// e.g. "host `host-01`", "account `x` on host `h`".
        what: String,
        /// "did you mean ...?" or the names that do exist.
        hint: String,
    },
}

fn describe(input: &str) -> String {
    if input.is_empty() {
        "empty scope".to_owned()
    } else {
        format!("unknown scope `{input}`")
    }
}

fn bare_hint(input: &str) -> String {
    if input.contains(':') || input.is_empty() {
        String::new()
    } else {
        format!(" (to select a host, write host:{input})")
    }
}

impl Scope {
    /// Parses `all`, `host:NAME`, `group:NAME`, `account:NAME` or `cred:HOST/ACCOUNT`.
    /// `directory:NAME` is recognised, and refused until LDAP support exists.
    pub fn parse(input: &str) -> Result<Scope, ScopeError> {
        if input == "all" {
            return Ok(Scope::All);
        }
        let Some((kind, name)) = input.split_once(':') else {
            return Err(ScopeError::UnknownKind {
                input: input.to_owned(),
            });
        };
        let invalid = |reason: String| ScopeError::InvalidName {
            input: input.to_owned(),
            reason,
        };
        if name.is_empty() && matches!(kind, "host" | "group" | "account" | "cred" | "directory") {
            let what = if kind == "cred" {
                "HOST/ACCOUNT"
            } else {
                "NAME"
            };
            return Err(invalid(format!(
                "nothing after `{kind}:`; write {kind}:{what}"
            )));
        }
        match kind {
            "host" => HostName::parse(name).map(Scope::Host).map_err(invalid),
            "group" => check_group_name(name)
                .map(|()| Scope::Group(name.to_owned()))
                .map_err(invalid),
            "account" => AccountName::parse(name)
                .map(Scope::Account)
                .map_err(invalid),
            "cred" => CredentialId::parse(name).map(Scope::Cred).map_err(invalid),
            "directory" => HostName::parse(name).map(Scope::Directory).map_err(invalid),
            _ => Err(ScopeError::UnknownKind {
                input: input.to_owned(),
            }),
        }
    }
}

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Scope, ScopeError> {
        Scope::parse(s)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::All => f.write_str("all"),
            Scope::Host(name) => write!(f, "host:{name}"),
            Scope::Group(name) => write!(f, "group:{name}"),
            Scope::Account(name) => write!(f, "account:{name}"),
            Scope::Cred(id) => write!(f, "cred:{id}"),
            Scope::Directory(name) => write!(f, "directory:{name}"),
        }
    }
}

/// The hosts a set of scopes selects, in inventory order, each with only its selected
/// accounts (a host selected by `host:` or `group:` keeps all of them, possibly none).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub hosts: Vec<Host>,
    pub directories: Vec<DirectorySelection>,
}

/// A selected directory: all its accounts, or only some UIDs (from `cred:` scopes; which
/// entries exist is known only once its searches run).
#[derive(Debug, Clone)]
pub struct DirectorySelection {
    pub directory: Directory,
    pub only: Option<BTreeSet<AccountName>>,
    /// UIDs named one by one (`cred:DIR/UID`), also when the whole directory is selected:
    /// rotor's own bind account is rotated only when named.
    pub named: BTreeSet<AccountName>,
}

impl Selection {
    pub fn n_accounts(&self) -> usize {
        self.hosts.iter().map(|h| h.accounts.len()).sum()
    }

    /// Whether the selection names `cred`: one of its hosts' listed accounts, or an account of
    /// one of its directories (all of them, or the UIDs its `cred:` scopes named).
    pub fn names(&self, cred: &CredentialId) -> bool {
        self.hosts.iter().any(|h| {
            h.name == cred.host && h.accounts.iter().any(|a| a.credential(&h.name) == *cred)
        }) || self.directories.iter().any(|d| {
            d.directory.name == cred.host
                && cred.slot == crate::credential::Slot::Main
                && d.only
                    .as_ref()
                    .is_none_or(|only| only.contains(&cred.account))
        })
    }

    /// The selected credentials, in inventory order.
    pub fn credentials(&self) -> impl Iterator<Item = CredentialId> + '_ {
        self.hosts.iter().flat_map(|host| {
            host.accounts
                .iter()
                .map(|account| CredentialId::new(host.name.clone(), account.name.clone()))
        })
    }
}

impl Inventory {
    /// The union of `scopes`, without duplicates. No scopes select nothing: callers that
    /// default to everything pass `[Scope::All]`. The first scope that names something
    /// absent from the inventory is an error.
    pub fn select(&self, scopes: &[Scope]) -> Result<Selection, ScopeError> {
        // Per directory: None when not selected, Some(None) for all its accounts, else UIDs.
        let mut dirs: Vec<Option<Option<BTreeSet<AccountName>>>> =
            vec![None; self.directories.len()];
        let mut named: Vec<BTreeSet<AccountName>> = vec![BTreeSet::new(); self.directories.len()];
        let all_of = |idx: usize, dirs: &mut Vec<Option<Option<BTreeSet<AccountName>>>>| {
            dirs[idx] = Some(None);
        };
        // Per host: None when not selected, else which of its accounts are.
        let mut chosen: Vec<Option<Vec<bool>>> = vec![None; self.hosts.len()];
        let mut mark = |host_idx: usize, account_idx: Option<usize>| {
            let n_accounts = self.hosts[host_idx].accounts.len();
            let marks = chosen[host_idx].get_or_insert_with(|| vec![false; n_accounts]);
            match account_idx {
                Some(account_idx) => marks[account_idx] = true,
                None => marks.iter_mut().for_each(|m| *m = true),
            }
        };
        for scope in scopes {
            match scope {
                Scope::All => {
                    (0..self.hosts.len()).for_each(|host_idx| mark(host_idx, None));
                    (0..self.directories.len()).for_each(|idx| all_of(idx, &mut dirs));
                }
                Scope::Directory(name) => {
                    match self.directories.iter().position(|d| &d.name == name) {
                        Some(idx) => all_of(idx, &mut dirs),
                        None => {
                            return Err(self.not_found(
                                format!("directory `{name}`"),
                                name.as_str(),
                                self.directories.iter().map(|d| d.name.as_str()),
                                "directories",
                            ));
                        }
                    }
                }
                Scope::Host(name) => mark(self.host_idx(name)?, None),
                Scope::Group(group) => {
                    let mut found = false;
                    for (idx, d) in self.directories.iter().enumerate() {
                        if d.groups.contains(group) {
                            all_of(idx, &mut dirs);
                            found = true;
                        }
                    }
                    for (host_idx, host) in self.hosts.iter().enumerate() {
                        if host.groups.contains(group) {
                            mark(host_idx, None);
                            found = true;
                        }
                    }
                    if !found {
                        let groups = self.groups();
                        return Err(self.not_found(
                            format!("group `{group}`"),
                            group,
                            groups.iter().map(String::as_str),
                            "groups",
                        ));
                    }
                }
                Scope::Account(name) => {
                    let mut found = false;
                    for (host_idx, host) in self.hosts.iter().enumerate() {
                        if let Some(account_idx) =
                            host.accounts.iter().position(|a| &a.name == name)
                        {
                            mark(host_idx, Some(account_idx));
                            found = true;
                        }
                    }
                    if !found {
                        let mut names: Vec<&str> = self
                            .hosts
                            .iter()
                            .flat_map(|h| h.accounts.iter().map(|a| a.name.as_str()))
                            .collect();
                        names.sort_unstable();
                        names.dedup();
                        return Err(self.not_found(
                            format!("account `{name}` on any host"),
                            name.as_str(),
                            names.into_iter(),
                            "accounts",
                        ));
                    }
                }
                Scope::Cred(id)
                    if let Some(idx) = self.directories.iter().position(|d| d.name == id.host) =>
                {
                    named[idx].insert(id.account.clone());
                    match &mut dirs[idx] {
                        Some(None) => {}
                        Some(Some(uids)) => {
                            uids.insert(id.account.clone());
                        }
                        slot @ None => *slot = Some(Some(BTreeSet::from([id.account.clone()]))),
                    }
                }
                Scope::Cred(id) => {
                    let host_idx = self.host_idx(&id.host)?;
                    let accounts = &self.hosts[host_idx].accounts;
                    // The slot too: an account with a password and a key has two credentials,
                    // `HOST/ACCOUNT` and `HOST/ACCOUNT:key`.
                    let host_name = &self.hosts[host_idx].name;
                    match accounts.iter().position(|a| a.credential(host_name) == *id) {
                        Some(account_idx) => mark(host_idx, Some(account_idx)),
                        None => {
                            let names: Vec<String> = accounts
                                .iter()
                                .map(|a| a.credential(host_name).to_string())
                                .collect();
                            return Err(self.not_found(
                                format!("credential `{id}`"),
                                &id.to_string(),
                                names.iter().map(String::as_str),
                                "credentials on that host",
                            ));
                        }
                    }
                }
            }
        }
        let hosts = self
            .hosts
            .iter()
            .zip(chosen)
            .filter_map(|(host, marks)| {
                let marks = marks?;
                let mut host = host.clone();
                let mut keep = marks.into_iter();
                host.accounts.retain(|_| keep.next().unwrap_or(false));
                Some(host)
            })
            .collect();
        let directories = self
            .directories
            .iter()
            .zip(dirs)
            .zip(named)
            .filter_map(|((d, only), named)| {
                Some(DirectorySelection {
                    directory: d.clone(),
                    only: only?,
                    named,
                })
            })
            .collect();
        Ok(Selection { hosts, directories })
    }

    fn host_idx(&self, name: &HostName) -> Result<usize, ScopeError> {
        self.hosts
            .iter()
            .position(|h| &h.name == name)
            .ok_or_else(|| {
                self.not_found(
                    format!("host `{name}`"),
                    name.as_str(),
                    self.hosts.iter().map(|h| h.name.as_str()),
                    "hosts",
                )
            })
    }

    /// Every group named by some host or directory, sorted.
    pub(super) fn groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = self
            .hosts
            .iter()
            .flat_map(|h| h.groups.iter().cloned())
            .chain(
                self.directories
                    .iter()
                    .flat_map(|d| d.groups.iter().cloned()),
            )
            .collect();
        groups.sort_unstable();
        groups.dedup();
        groups
    }

    fn not_found<'a>(
        &self,
        what: String,
        input: &str,
        known: impl Iterator<Item = &'a str> + Clone,
        plural: &str,
    ) -> ScopeError {
        let close = close_matches(input, known.clone());
        let hint = if let [one] = close.as_slice() {
            format!("did you mean `{one}`?")
        } else if !close.is_empty() {
            format!(
                "did you mean one of {}?",
                quoted_list(close.into_iter(), 10)
            )
        } else if known.clone().next().is_none() {
            format!("it has no {plural}")
        } else {
            format!("known {plural}: {}", quoted_list(known, 10))
        };
        ScopeError::NotFound {
            file: self.path.clone(),
            what,
            hint,
        }
    }
}

/// "`a`, `b`, `c`", at most `max` names, then how many more.
fn quoted_list<'a>(names: impl Iterator<Item = &'a str>, max: usize) -> String {
    let names: Vec<&str> = names.collect();
    let mut text = names
        .iter()
        .take(max)
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > max {
        text.push_str(&format!(" and {} more", names.len() - max));
    }
    text
}

//! The inventory: which hosts rotor manages, how it reaches them, which accounts on each it
//! rotates, and with which password policy. Read from a YAML file (`-i FILE`), checked as a
//! whole, and handed to the rest of rotor as a validated [`Inventory`]; [`Scope`]s pick the
//! part of it a command works on.
//!
//! Reading goes in two steps ("parse, don't validate"): serde reads the file into raw
//! structs that reject unknown keys (`raw`), then `validate` turns them into the model
//! here, collecting every problem with its file, line, field and a fix.
//!
//! Architecture invariants:
//! - An inventory holds **no secrets**: only names, addresses, public host keys, paths to
//!   key files and `HOST/ACCOUNT` references to the vault. Only [`files`] reads a key file
//!   (to say what is wrong with it, for `inventory check`), and never shows its bytes.
//! - Loading does no I/O beyond reading the one inventory file in [`load`] (a regular
//!   file, at most [`MAX_INVENTORY_BYTES`]) and the playbooks of its `playbooks_dir:`
//!   (`recipe::Catalog::with_dir`); [`parse`] and [`parse_with_catalog`]
//!   are pure and never panic, whatever the input (a property test checks it). The local
//!   files the inventory names are checked apart, by [`files::check_files`]; [`ansible`]
//!   converts another tool's inventory, purely.
//! - Every account names a loaded playbook, and its `vars:` are the ones that playbook
//!   declares, each checked against its kind (a path cannot carry shell syntax).
//! - It never connects to a host: a pinned host key is checked for form, not for truth.

pub mod ansible;
mod error;
pub mod files;
mod raw;
mod scope;
mod summary;
#[cfg(test)]
mod tests;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub(crate) use self::error::from_serde;
pub use self::error::{InventoryError, MAX_PROBLEMS, Problem, ProblemKind};
pub use self::scope::{DirectorySelection, Glob, Kind as ScopeKind, Scope, ScopeError, Selection};
pub use self::summary::{HostRow, Summary};
pub use self::validate::{DEFAULT_MAX_FAILED_LOGINS, default_policy, parse_age};

/// The most aliases (`*name`) the YAML reader replays in an inventory or a playbook.
pub const MAX_YAML_ALIASES: usize = 5_000;
pub(crate) use self::validate::{close_matches, did_you_mean};
use crate::credential::{AccountName, CredentialId, HostName};
use crate::recipe::{Catalog, Recipe};

/// The largest inventory file rotor reads. Ten thousand hosts take about 3 MiB; the cap is
/// there so that `-i /dev/zero` or a wrong path cannot fill memory.
pub const MAX_INVENTORY_BYTES: u64 = 16 * 1024 * 1024;

/// Reads and validates the inventory file at `path`: a regular file (a FIFO would block and
/// a device never end) of at most [`MAX_INVENTORY_BYTES`]; then the playbooks of its
/// `playbooks_dir:`, whose problems are reported with their own file and line.
pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
    let text = read_file(path, MAX_INVENTORY_BYTES).map_err(|failure| match failure {
        ReadFailure::Io(cause) => InventoryError::Unreadable {
            path: path.to_owned(),
            cause,
        },
        ReadFailure::NotAFile(found) => InventoryError::NotAFile {
            path: path.to_owned(),
            found,
        },
        ReadFailure::TooLarge(size) => InventoryError::TooLarge {
            path: path.to_owned(),
            size,
        },
    })?;
    let raw = read_raw(&text, path).map_err(|e| ansible::hint(e, &text, path))?;
    let catalog = match &raw.playbooks_dir {
        None => Catalog::built_in(),
        Some(dir) => {
            let at = (dir.referenced.line(), dir.referenced.column());
            let invalid = |problems: Vec<Problem>| {
                let n_more = problems.len().saturating_sub(MAX_PROBLEMS);
                InventoryError::Invalid {
                    problems: problems.into_iter().take(MAX_PROBLEMS).collect(),
                    n_more,
                }
            };
            let Some(resolved) = validate::playbooks_dir(&dir.value, path) else {
                return Err(invalid(vec![Problem::new(
                    path,
                    at,
                    "playbooks_dir",
                    ProblemKind::InvalidValue,
                    "empty path: write the directory that holds your playbooks (*.yaml), absolute or relative to the inventory file",
                )]));
            };
            Catalog::with_dir(&resolved).map_err(|e| match e {
                crate::recipe::PlaybookError::Invalid { problems } => invalid(problems),
                crate::recipe::PlaybookError::Unreadable { path: dir, why } => {
                    invalid(vec![Problem::new(
                        path,
                        at,
                        "playbooks_dir",
                        ProblemKind::InvalidValue,
                        format!(
                            "cannot read the playbooks directory \"{}\": {why}; check the path (relative paths start from the inventory file's directory)",
                            dir.display()
                        ),
                    )])
                }
            })?
        }
    };
    // The reader reports what it can read past, so an Ansible file may fail only here.
    validate::validate(raw, path, &catalog).map_err(|e| ansible::hint(e, &text, path))
}

/// Why a file could not be read by [`read_file`].
pub(crate) enum ReadFailure {
    Io(std::io::Error),
    /// What it is instead of a regular file.
    NotAFile(&'static str),
    TooLarge(u64),
}

/// Reads a regular file of at most `max` bytes of UTF-8 text, opened non-blocking so that a
/// FIFO returns at once (and is refused) rather than waiting for a writer.
pub(crate) fn read_file(path: &Path, max: u64) -> Result<String, ReadFailure> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(ReadFailure::Io)?;
    let meta = file.metadata().map_err(ReadFailure::Io)?;
    if !meta.is_file() {
        return Err(ReadFailure::NotAFile(crate::text::file_kind(&meta)));
    }
    if meta.len() > max {
        return Err(ReadFailure::TooLarge(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadFailure::Io)?;
    if bytes.len() as u64 > max {
        return Err(ReadFailure::TooLarge(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|_| {
        ReadFailure::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        ))
    })
}

/// [`read_file`] with the failure in words (for files other than the inventory).
pub(crate) fn read_text(path: &Path, max: u64) -> Result<String, String> {
    read_file(path, max).map_err(|failure| match failure {
        ReadFailure::Io(cause) => cause.to_string(),
        ReadFailure::NotAFile(found) => format!("it is {found}, not a regular file"),
        ReadFailure::TooLarge(size) => {
            format!("it is {size} bytes, more than the {max} rotor reads")
        }
    })
}

/// Validates inventory `text`; `path` is where it came from, used in messages and to resolve
/// relative paths inside it. Knows the built-in playbooks only: a `playbooks_dir:` is read by
/// [`load`] (this function does no I/O), so accounts naming its playbooks fail here.
pub fn parse(text: &str, path: &Path) -> Result<Inventory, InventoryError> {
    parse_with_catalog(text, path, &Catalog::built_in())
}

/// [`parse`], with the playbooks that accounts may use.
pub fn parse_with_catalog(
    text: &str,
    path: &Path,
    playbooks: &Catalog,
) -> Result<Inventory, InventoryError> {
    let raw = read_raw(text, path)?;
    validate::validate(raw, path, playbooks)
}

/// The YAML step: syntax and shape (types, unknown and missing keys), each bad entry
/// reported and left out (`raw::read`); validation then adds its problems to these.
fn read_raw(text: &str, file: &Path) -> Result<raw::RawInventory, InventoryError> {
    if text.trim().is_empty() {
        return Err(InventoryError::Invalid {
            problems: vec![Problem::new(
                file,
                (0, 0),
                "",
                ProblemKind::MissingField,
                "the inventory is empty: start it with `version: 1`, then `hosts:`",
            )],
            n_more: 0,
        });
    }
    raw::read(text, file)
}

/// A validated inventory, ready to use ("parse, don't validate").
#[derive(Debug, Clone)]
pub struct Inventory {
    /// Where it was read from (for messages).
    pub path: PathBuf,
    pub policies: BTreeMap<String, Policy>,
    pub hosts: Vec<Host>,
    pub directories: Vec<Directory>,
    /// The playbooks accounts may use: the built-ins and those of `playbooks_dir:`.
    pub playbooks: Arc<Catalog>,
}

/// An LDAP directory whose accounts rotor manages.
#[derive(Debug, Clone, PartialEq)]
pub struct Directory {
    /// Unique among hosts and directories; the `DIRECTORY` of `DIRECTORY/UID`.
    pub name: HostName,
    /// `ldap://` (StartTLS, always) or `ldaps://`.
    pub url: String,
    /// CA certificates to trust besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// Certificate verification off. Only for labs; rotor warns on every connection.
    pub danger_accept_invalid_certs: bool,
    /// The DN rotor binds as.
    pub bind_dn: String,
    /// Where rotor's bind secret is kept in the vault.
    pub bind_credential: CredentialId,
    pub groups: Vec<String>,
    pub policy: String,
    pub accounts: Vec<DirectoryAccounts>,
}

/// How a directory's accounts are listed.
#[derive(Debug, Clone, PartialEq)]
pub enum DirectoryAccounts {
    /// One entry by DN.
    Dn(String),
    /// Every entry a search finds (resolved when a run is planned).
    Search {
        base: String,
        filter: String,
        scope: LdapScope,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LdapScope {
    /// The base's children.
    One,
    /// The whole subtree.
    Sub,
}

/// The account name of an entry: the value of its first RDN (`uid=svc-app,ou=...` gives
/// `svc-app`), which must be a valid account name so that `DIRECTORY/UID` addresses it.
pub fn uid_of(dn: &str) -> Result<AccountName, String> {
    let first = dn.split(',').next().unwrap_or("").trim();
    let Some((attr, value)) = first.split_once('=') else {
        return Err(format!(
            "`{dn}` is not a DN: write e.g. \"uid=svc-app,ou=service,dc=example,dc=org\""
        ));
    };
    if !matches!(attr.trim().to_ascii_lowercase().as_str(), "uid" | "cn") {
        return Err(format!(
            "`{dn}`: the first part must be uid=NAME or cn=NAME, which names the credential DIRECTORY/NAME"
        ));
    }
    AccountName::parse(value.trim()).map_err(|why| format!("`{dn}`: {why}"))
}

/// Whether two DNs name the same entry, as far as rotor can tell without the server's schema:
/// RDNs compared with attribute names and values trimmed and case-folded
/// (`uid=Svc, OU=service` is `uid=svc,ou=service`).
pub fn same_dn(a: &str, b: &str) -> bool {
    canonical_dn(a) == canonical_dn(b)
}

/// The form of a DN that [`same_dn`] compares.
pub fn canonical_dn(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| match rdn.split_once('=') {
            Some((attr, value)) => format!(
                "{}={}",
                attr.trim().to_ascii_lowercase(),
                value.trim().to_lowercase()
            ),
            None => rdn.trim().to_lowercase(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A password policy. `default` always exists (built in unless the inventory defines it).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    /// Characters in a generated password.
    pub length: usize,
    /// Every class listed must appear at least once.
    pub classes: Vec<CharClass>,
    /// Characters never used (e.g. ones that confuse a target's shell or a person reading aloud).
    pub exclude: String,
    /// When scheduled rotations happen (crontab syntax, parsed).
    pub schedule: Option<crate::schedule::Schedule>,
    /// Older than this since the last verified rotation: stale.
    pub max_age: Option<Duration>,
    /// The zone of `schedule` and `window`; `None`: the machine's
    /// (`clock::machine_timezone`, read by the front-end, never here).
    pub timezone: Option<chrono_tz::Tz>,
    /// When scheduled rotations may run; `None`: any time.
    pub window: Option<crate::schedule::Window>,
    /// Lockout budget: consecutive failed logins rotor makes as an account (verification,
    /// recovery probe, heartbeat) before it parks the credential.
    pub max_failed_logins: u32,
    /// How the credentials under this policy may be checked out (break-glass access).
    pub checkout: CheckoutPolicy,
}

/// A policy's `checkout:` rules. Default: approval required, 2 h, at most 8 h.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckoutPolicy {
    pub approval: Approval,
    pub max_ttl: Duration,
    pub default_ttl: Duration,
}

impl Default for CheckoutPolicy {
    fn default() -> Self {
        CheckoutPolicy {
            approval: Approval::Required,
            max_ttl: Duration::from_secs(8 * 3600),
            default_ttl: Duration::from_secs(2 * 3600),
        }
    }
}

/// Whether a checkout waits for a second person's approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    Required,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CharClass {
    Lower,
    Upper,
    Digit,
    Symbol,
}

impl CharClass {
    pub const ALL: [CharClass; 4] = [
        CharClass::Lower,
        CharClass::Upper,
        CharClass::Digit,
        CharClass::Symbol,
    ];

    /// The name used in the inventory: `lower`, `upper`, `digit`, `symbol`.
    pub fn name(self) -> &'static str {
        match self {
            CharClass::Lower => "lower",
            CharClass::Upper => "upper",
            CharClass::Digit => "digit",
            CharClass::Symbol => "symbol",
        }
    }

    pub fn parse(name: &str) -> Option<CharClass> {
        CharClass::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The characters of the class, before a policy's `exclude`: printable ASCII only, so a
    /// password can be typed on any keyboard and survives any terminal. The generator draws
    /// from exactly these (see `policy::SYMBOLS` for which punctuation is left out and why).
    pub fn chars(self) -> std::str::Chars<'static> {
        match self {
            CharClass::Lower => "abcdefghijklmnopqrstuvwxyz",
            CharClass::Upper => "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            CharClass::Digit => "0123456789",
            CharClass::Symbol => crate::policy::SYMBOLS,
        }
        .chars()
    }
}

#[derive(Debug, Clone)]
pub struct Host {
    pub name: HostName,
    /// What to dial: an IP address or a DNS name.
    pub address: String,
    pub port: u16,
    pub host_key: HostKeyPin,
    pub groups: Vec<String>,
    pub connect: ConnectIdentity,
    pub accounts: Vec<Account>,
    /// [`Host::connect_credential`], found once from the whole host: a selection that keeps
    /// only some accounts (`--scope account:svc_app`) still logs in with the vault's secret.
    pub connect_managed: Option<CredentialId>,
}

impl Host {
    /// The credential rotor logs in to this host with, when the inventory manages it: the
    /// connect user's SSH-key listing when rotor connects with a key file (the file is then
    /// only the bootstrap identity: once the vault holds the host's own key, rotor logs in
    /// with that), or the listing `connect.credential` names.
    pub fn connect_credential(&self) -> Option<CredentialId> {
        self.connect_managed.clone()
    }

    /// [`Host::connect_credential`] as the host's whole account list says.
    pub(crate) fn find_connect_credential(&self) -> Option<CredentialId> {
        let user = &self.connect.user;
        match &self.connect.auth {
            ConnectAuth::KeyFile(_) => self
                .accounts
                .iter()
                .find(|a| &a.name == user && a.recipe.kind == crate::target::CredentialKind::SshKey)
                .map(|a| a.credential(&self.name)),
            ConnectAuth::Vault(cred) => self
                .accounts
                .iter()
                .map(|a| a.credential(&self.name))
                .find(|id| id == cred),
        }
    }

    /// Whether `cred` is one of the connect user's own credentials on this host (its login
    /// secret, or the password `sudo` asks a non-root connect user for): rotated last on the
    /// host, after every other account, so rotor's own session changes only at the end.
    pub fn is_connect_account(&self, cred: &CredentialId) -> bool {
        cred.host == self.name && cred.account == self.connect.user
    }

    /// The connect key file, where rotor connects with one.
    pub fn bootstrap_key(&self) -> Option<&std::path::Path> {
        match &self.connect.auth {
            ConnectAuth::KeyFile(path) => Some(path),
            ConnectAuth::Vault(_) => None,
        }
    }
}

/// How the host's SSH key is pinned.
#[derive(Debug, Clone, PartialEq)]
pub enum HostKeyPin {
    /// An OpenSSH public key line: `ssh-ed25519 AAAA...` (a trailing comment is allowed).
    Key(String),
    /// A known_hosts file (relative paths are relative to the inventory file).
    KnownHosts(PathBuf),
}

/// How rotor logs in to the host to make changes.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectIdentity {
    pub user: AccountName,
    pub auth: ConnectAuth,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ConnectAuth {
    /// A private key file (relative paths are relative to the inventory file).
    KeyFile(PathBuf),
    /// A password credential held in the vault.
    Vault(CredentialId),
}

#[derive(Debug, Clone)]
pub struct Account {
    pub name: AccountName,
    /// Which of the account's credentials this listing is (`Key` for the SSH-key listing of
    /// an account listed with a password playbook too).
    pub slot: crate::credential::Slot,
    pub playbook: String,
    /// The playbook `playbook` names, loaded and checked.
    pub recipe: Arc<Recipe>,
    /// Every variable the playbook declares, with the inventory's value or its default.
    pub vars: BTreeMap<String, String>,
    pub policy: String,
}

impl Account {
    /// The credential this listing is, on `host`.
    pub fn credential(&self, host: &crate::credential::HostName) -> CredentialId {
        CredentialId {
            host: host.clone(),
            account: self.name.clone(),
            slot: self.slot,
        }
    }
}

impl Inventory {
    /// The policy that governs `cred`: its host account's, or its directory's (a directory's
    /// accounts are known only once its searches run, so any UID of a listed directory
    /// counts). `None` when the inventory does not list the credential.
    pub fn policy_for(&self, cred: &CredentialId) -> Option<&Policy> {
        self.policies.get(self.policy_name_for(cred)?)
    }

    /// The name of the policy that governs `cred` (as [`Inventory::policy_for`]): a bounded
    /// label for metrics, since the inventory declares its policies.
    pub fn policy_name_for(&self, cred: &CredentialId) -> Option<&str> {
        self.hosts
            .iter()
            .filter(|h| h.name == cred.host)
            .flat_map(|h| h.accounts.iter().map(move |a| (h, a)))
            .find(|(h, a)| a.credential(&h.name) == *cred)
            .map(|(_, a)| a.policy.as_str())
            .or_else(|| {
                self.directories
                    .iter()
                    .find(|d| d.name == cred.host && cred.slot == crate::credential::Slot::Main)
                    .map(|d| d.policy.as_str())
            })
    }
}

//! The inventory: hosts, accounts and policies, read from YAML. It holds no secrets.
//! (Parsing and validation to be written.)

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::credential::{AccountName, CredentialId, HostName};

/// A validated inventory, ready to use ("parse, don't validate").
#[derive(Debug, Clone)]
pub struct Inventory {
    /// Where it was read from (for messages).
    pub path: PathBuf,
    pub policies: BTreeMap<String, Policy>,
    pub hosts: Vec<Host>,
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
    /// Crontab syntax, 5 fields (validated later by the scheduler work).
    pub schedule: Option<String>,
    pub max_age: Option<Duration>,
    pub timezone: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CharClass {
    Lower,
    Upper,
    Digit,
    Symbol,
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
    pub playbook: String,
    pub policy: String,
}

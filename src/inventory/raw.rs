//! The inventory file as written: serde shapes with source spans and no meaning yet.
//! Every struct denies unknown fields, so a misspelt key is an error, not a silent default.
//! Values that need checking beyond their YAML type stay strings here; `validate` gives
//! them meaning.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInventory {
    pub version: Spanned<u64>,
    /// Where the user's playbooks are (relative to the inventory file).
    pub playbooks_dir: Option<Spanned<String>>,
    #[serde(default)]
    pub policies: BTreeMap<String, Spanned<RawPolicy>>,
    #[serde(default)]
    pub hosts: Vec<Spanned<RawHost>>,
    #[serde(default)]
    pub directories: Vec<Spanned<RawDirectory>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDirectory {
    pub name: Spanned<String>,
    pub url: Spanned<String>,
    pub ca_file: Option<Spanned<String>>,
    pub danger_accept_invalid_certs: Option<Spanned<bool>>,
    pub bind: Spanned<RawBind>,
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
    pub policy: Option<Spanned<String>>,
    #[serde(default)]
    pub accounts: Vec<Spanned<RawDirectoryAccount>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBind {
    pub dn: Spanned<String>,
    pub credential: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDirectoryAccount {
    pub dn: Option<Spanned<String>>,
    pub search: Option<Spanned<RawSearch>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSearch {
    pub base: Spanned<String>,
    pub filter: Spanned<String>,
    pub scope: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub length: Option<Spanned<u64>>,
    pub classes: Option<Spanned<Vec<Spanned<String>>>>,
    pub exclude: Option<Spanned<String>>,
    pub schedule: Option<Spanned<String>>,
    pub max_age: Option<Spanned<String>>,
    pub timezone: Option<Spanned<String>>,
    pub max_failed_logins: Option<Spanned<u64>>,
    pub checkout: Option<Spanned<RawCheckout>>,
    pub window: Option<Spanned<RawWindow>>,
}

/// `window: { days: [mon-fri], hours: "01:00-05:00" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWindow {
    pub days: Option<Spanned<Vec<Spanned<String>>>>,
    pub hours: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheckout {
    pub approval: Option<Spanned<String>>,
    pub max_ttl: Option<Spanned<String>>,
    pub default_ttl: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHost {
    pub name: Spanned<String>,
    pub address: Spanned<String>,
    pub port: Option<Spanned<u64>>,
    pub host_key: Option<Spanned<String>>,
    pub known_hosts: Option<Spanned<String>>,
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
    pub connect: Spanned<RawConnect>,
    #[serde(default)]
    pub accounts: Vec<Spanned<RawAccount>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConnect {
    pub user: Spanned<String>,
    pub key: Option<Spanned<String>>,
    pub credential: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccount {
    pub name: Spanned<String>,
    pub playbook: Spanned<String>,
    pub policy: Option<Spanned<String>>,
    /// Values of the variables the playbook declares.
    #[serde(default)]
    pub vars: BTreeMap<String, Spanned<String>>,
}

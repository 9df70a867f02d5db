//! What `rotor inventory check` prints: counts, then one line per host and per directory.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use super::{DirectoryAccounts, Inventory};
use crate::report::{plural, table};

/// An overview of an inventory, for people. Counts are plain fields so a JSON output can
/// reuse them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub file: PathBuf,
    pub n_hosts: usize,
    pub n_accounts: usize,
    /// Sorted, without duplicates.
    pub groups: Vec<String>,
    /// Policy names, including the built-in `default`.
    pub policies: Vec<String>,
    /// Playbooks used by at least one account, sorted.
    pub playbooks: Vec<String>,
    pub hosts: Vec<HostRow>,
    pub directories: Vec<DirectoryRow>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryRow {
    pub name: String,
    pub url: String,
    /// Certificate verification is off (`danger_accept_invalid_certs`).
    pub tls_unverified: bool,
    pub groups: Vec<String>,
    /// Accounts listed by DN, and searches (resolved only when a run is planned).
    pub n_dns: usize,
    pub n_searches: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRow {
    pub name: String,
    /// `address:port`, IPv6 addresses in brackets.
    pub endpoint: String,
    pub groups: Vec<String>,
    pub n_accounts: usize,
}

impl Inventory {
    pub fn summary(&self) -> Summary {
        let mut playbooks: Vec<String> = self
            .hosts
            .iter()
            .flat_map(|h| h.accounts.iter().map(|a| a.playbook.clone()))
            .collect();
        if !self.directories.is_empty() {
            playbooks.push(crate::target::directory::LDAP_PASSWORD.to_owned());
        }
        playbooks.sort_unstable();
        playbooks.dedup();
        Summary {
            file: self.path.clone(),
            n_hosts: self.hosts.len(),
            n_accounts: self.hosts.iter().map(|h| h.accounts.len()).sum(),
            groups: self.groups(),
            policies: self.policies.keys().cloned().collect(),
            playbooks,
            hosts: self
                .hosts
                .iter()
                .map(|host| HostRow {
                    name: host.name.to_string(),
                    endpoint: match host.address.parse::<IpAddr>() {
                        Ok(IpAddr::V6(_)) => format!("[{}]:{}", host.address, host.port),
                        _ => format!("{}:{}", host.address, host.port),
                    },
                    groups: host.groups.clone(),
                    n_accounts: host.accounts.len(),
                })
                .collect(),
            directories: self
                .directories
                .iter()
                .map(|d| {
                    let is_dn = |a: &&DirectoryAccounts| matches!(a, DirectoryAccounts::Dn(_));
                    let n_dns = d.accounts.iter().filter(is_dn).count();
                    DirectoryRow {
                        name: d.name.to_string(),
                        url: d.url.clone(),
                        tls_unverified: d.danger_accept_invalid_certs,
                        groups: d.groups.clone(),
                        n_dns,
                        n_searches: d.accounts.len() - n_dns,
                    }
                })
                .collect(),
        }
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        items.join(", ")
    }
}

fn groups_cell(groups: &[String]) -> String {
    if groups.is_empty() {
        "-".to_owned()
    } else {
        groups.join(",")
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut counts = vec![
            plural(self.n_hosts, "host", "hosts"),
            plural(self.n_accounts, "account", "accounts"),
        ];
        if !self.directories.is_empty() {
            counts.push(plural(self.directories.len(), "directory", "directories"));
        }
        counts.extend([
            plural(self.groups.len(), "group", "groups"),
            plural(self.policies.len(), "policy", "policies"),
            format!(
                "{} used",
                plural(self.playbooks.len(), "playbook", "playbooks")
            ),
        ]);
        writeln!(f, "{}: {}", self.file.display(), counts.join(", "))?;
        writeln!(f, "  groups:    {}", list_or_none(&self.groups))?;
        writeln!(f, "  policies:  {}", list_or_none(&self.policies))?;
        writeln!(f, "  playbooks: {}", list_or_none(&self.playbooks))?;
        if !self.hosts.is_empty() {
            let rows: Vec<[String; 4]> = self
                .hosts
                .iter()
                .map(|row| {
                    [
                        row.name.clone(),
                        row.endpoint.clone(),
                        groups_cell(&row.groups),
                        row.n_accounts.to_string(),
                    ]
                })
                .collect();
            write!(
                f,
                "\n{}",
                table(&["HOST", "ADDRESS", "GROUPS", "ACCOUNTS"], &rows)
            )?;
        }
        if !self.directories.is_empty() {
            let rows: Vec<[String; 4]> = self
                .directories
                .iter()
                .map(|row| {
                    let mut accounts = Vec::new();
                    if row.n_dns > 0 {
                        accounts.push(plural(row.n_dns, "DN", "DNs"));
                    }
                    if row.n_searches > 0 {
                        accounts.push(plural(row.n_searches, "search", "searches"));
                    }
                    let url = if row.tls_unverified {
                        format!("{} (TLS NOT VERIFIED)", row.url)
                    } else {
                        row.url.clone()
                    };
                    [
                        row.name.clone(),
                        url,
                        groups_cell(&row.groups),
                        accounts.join(", "),
                    ]
                })
                .collect();
            write!(
                f,
                "\n{}",
                table(&["DIRECTORY", "URL", "GROUPS", "ACCOUNTS"], &rows)
            )?;
            writeln!(
                f,
                "\nSearches are run when a run is planned: `rotor plan` shows how many accounts each finds."
            )?;
        }
        Ok(())
    }
}

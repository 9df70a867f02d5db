//! What `rotor inventory check` prints: counts, then one line per host.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use super::Inventory;

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
        }
    }
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        items.join(", ")
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {}, {}, {}, {}, {} used",
            self.file.display(),
            count(self.n_hosts, "host", "hosts"),
            count(self.n_accounts, "account", "accounts"),
            count(self.groups.len(), "group", "groups"),
            count(self.policies.len(), "policy", "policies"),
            count(self.playbooks.len(), "playbook", "playbooks"),
        )?;
        writeln!(f, "  groups:    {}", list_or_none(&self.groups))?;
        writeln!(f, "  policies:  {}", list_or_none(&self.policies))?;
        writeln!(f, "  playbooks: {}", list_or_none(&self.playbooks))?;
        if self.hosts.is_empty() {
            return Ok(());
        }
        let header = ["HOST", "ADDRESS", "GROUPS", "ACCOUNTS"];
        let rows: Vec<[String; 4]> = self
            .hosts
            .iter()
            .map(|row| {
                [
                    row.name.clone(),
                    row.endpoint.clone(),
                    if row.groups.is_empty() {
                        "-".to_owned()
                    } else {
                        row.groups.join(",")
                    },
                    row.n_accounts.to_string(),
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        writeln!(f)?;
        let header = header.map(str::to_owned);
        for row in std::iter::once(&header).chain(&rows) {
            let line = format!(
                "{:<w0$}  {:<w1$}  {:<w2$}  {}",
                row[0],
                row[1],
                row[2],
                row[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
            );
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

//! `rotor plan`: what would rotate and why. Reads the inventory and the vault and changes
//! nothing. It connects to no host; it binds to selected LDAP directories (read only) to
//! resolve their account searches and show how many accounts each matched. A directory that
//! cannot be planned is named with its reason, and so are accounts a rotation would leave
//! alone (rotor cannot see their locks, say); either makes the command exit 3 (partial).

use clap::Args;

use super::output::open_vault;
use super::rotate::{Purpose, Resolved, Selection, open_directories, resolve};
use super::{CliResult, Global};
use crate::connector::FaultClass;
use crate::credential::CredentialId;
use crate::engine::Outcome;
use crate::engine::machine::FaultKind;
use crate::inventory::DirectoryAccounts;
use crate::playbook::LdapDirectories;
use crate::policy::entropy_bits;
use crate::report::{plural, table};

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub selection: Selection,
}

pub fn run(g: &Global, a: PlanArgs) -> CliResult {
    let Resolved {
        inv,
        hosts: work,
        directories,
        label,
    } = resolve(&a.selection)?;
    let vault = open_vault(g)?;
    let status = vault.status()?;
    // By credential: a directory of thousands is looked up once per account.
    let status: std::collections::HashMap<&CredentialId, &crate::store::CredentialStatus> =
        status.iter().map(|s| (&s.cred, s)).collect();
    // Directory accounts: resolved now, counted, listed in summary (they can be thousands).
    let mut dir_lines = Vec::new();
    let mut n_dir_accounts = 0;
    let mut n_unplanned = 0;
    let mut n_refused = 0;
    if !directories.is_empty() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let dirs = LdapDirectories {
            store: vault.clone(),
            step_timeout: std::time::Duration::from_secs(20),
            runtime: rt.handle().clone(),
        };
        let (works, failed, not_started) =
            open_directories(&inv, &directories, &dirs, Purpose::Rotate);
        for w in &works {
            n_dir_accounts += w.accounts.len();
            let d = inv
                .directories
                .iter()
                .find(|d| d.name == w.name)
                .expect("selected from it");
            let n_dns = d
                .accounts
                .iter()
                .filter(|a| matches!(a, DirectoryAccounts::Dn(_)))
                .count();
            let mut from = Vec::new();
            if n_dns > 0 {
                from.push(plural(n_dns, "listed DN", "listed DNs"));
            }
            if d.accounts.len() > n_dns {
                from.push(plural(d.accounts.len() - n_dns, "search", "searches"));
            }
            // Thousands of accounts: one line on how old their secrets are, not a row each.
            let (mut n_new, mut oldest) = (0, None);
            for (uid, _) in &w.accounts {
                let cred = CredentialId::new(w.name.clone(), uid.clone());
                match status.get(&cred).and_then(|s| s.current_since) {
                    Some(t) => {
                        oldest = Some(oldest.map_or(t, |o: chrono::DateTime<chrono::Utc>| o.min(t)))
                    }
                    None => n_new += 1,
                }
            }
            let mut why = Vec::new();
            if n_new > 0 {
                why.push(format!("{n_new} never rotated by rotor"));
            }
            if let Some(t) = oldest {
                why.push(format!(
                    "{} in the vault, the oldest set {}",
                    w.accounts.len() - n_new,
                    t.format("%Y-%m-%d %H:%M UTC")
                ));
            }
            dir_lines.push(format!(
                "  {}: {} from {} ({}), policy {} ({} chars, ~{:.0} bits), playbook ldap-password",
                w.name,
                plural(w.accounts.len(), "account", "accounts"),
                from.join(" and "),
                why.join("; "),
                w.policy.name,
                w.policy.length,
                entropy_bits(&w.policy)
            ));
        }
        n_unplanned = failed.len();
        for f in failed {
            dir_lines.push(format!(
                "  {}: cannot be planned ({}): {}",
                f.directory,
                f.class,
                crate::text::escape(&f.message)
            ));
        }
        // Refused accounts are grouped by why: thousands under one search base share it.
        let mut refused: Vec<(&str, Vec<&CredentialId>)> = Vec::new();
        for r in &not_started {
            let Outcome::NotChanged { cause } = &r.outcome else {
                continue;
            };
            if cause.class == FaultKind::Target(FaultClass::AccountMissing) {
                // Partial, as `rotate` calls it: a named account it will not find.
                n_refused += 1;
                dir_lines.push(format!("  {}: not found in the directory", r.cred));
                continue;
            }
            match refused.iter_mut().find(|(why, _)| *why == cause.message) {
                Some((_, creds)) => creds.push(&r.cred),
                None => refused.push((&cause.message, vec![&r.cred])),
            }
        }
        for (why, creds) in refused {
            n_refused += creds.len();
            let more = match creds.len() {
                1 => String::new(),
                n => format!(" and {} more", n - 1),
            };
            dir_lines.push(format!(
                "  {} will not be rotated ({}{more}): {}",
                plural(creds.len(), "account", "accounts"),
                creds[0],
                crate::text::escape(why)
            ));
        }
    }
    let mut rows = Vec::new();
    for w in &work {
        for (account, policy) in &w.accounts {
            let cred = CredentialId::new(w.host.name.clone(), account.clone());
            let st = status.get(&cred);
            let why = match st {
                None => "never rotated by rotor".to_owned(),
                Some(s) if s.open_rotation => {
                    "an interrupted rotation will be recovered first".to_owned()
                }
                Some(s) => match &s.current_since {
                    Some(t) => format!("current secret set {}", t.format("%Y-%m-%d %H:%M UTC")),
                    None => "no current secret in the vault".to_owned(),
                },
            };
            rows.push([
                cred.to_string(),
                "linux-password".to_owned(),
                format!(
                    "{} ({} chars, ~{:.0} bits)",
                    policy.name,
                    policy.length,
                    entropy_bits(policy)
                ),
                why,
            ]);
        }
    }
    let mut parts = Vec::new();
    if !work.is_empty() || directories.is_empty() {
        parts.push(format!(
            "{} on {}",
            rows.len(),
            plural(work.len(), "host", "hosts")
        ));
    }
    if !directories.is_empty() {
        parts.push(format!(
            "{n_dir_accounts} in {}",
            plural(directories.len(), "directory", "directories")
        ));
    }
    outln!(
        "Plan for scope `{label}`: {} would rotate (requested now): {}.\n",
        plural(rows.len() + n_dir_accounts, "credential", "credentials"),
        parts.join(", ")
    );
    if !dir_lines.is_empty() {
        outln!(
            "Directories (searches resolved now):\n{}\n",
            dir_lines.join("\n")
        );
    }
    if !rows.is_empty() {
        outln!(
            "{}",
            table(&["CREDENTIAL", "PLAYBOOK", "POLICY", "WHY"], &rows)
        );
    }
    outln!("Nothing was changed. Run the same selection with `rotor rotate` to apply.");
    if n_unplanned > 0 {
        // Partial, as `rotate` reports a directory it could not open: the plan above is
        // missing that directory's accounts, which a script must not take for "nothing to do".
        eprintln!(
            "rotor: {} could not be planned (see the Directories section above); fix it and plan again",
            plural(n_unplanned, "directory", "directories")
        );
        return Ok(3);
    }
    if n_refused > 0 {
        // Partial too: `rotate` will leave these accounts alone and exit 3.
        eprintln!(
            "rotor: {} will not be rotated (see the Directories section above); fix what it says and plan again",
            plural(n_refused, "account", "accounts")
        );
        return Ok(3);
    }
    Ok(0)
}

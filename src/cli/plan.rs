//! `rotor plan`: what would rotate and why. Reads the inventory and the vault; changes nothing
//! and connects nowhere.

use clap::Args;

use super::output::open_vault;
use super::rotate::{Selection, resolve};
use super::{CliResult, Global};
use crate::credential::CredentialId;
use crate::policy::entropy_bits;
use crate::report::table;

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub selection: Selection,
}

pub fn run(g: &Global, a: PlanArgs) -> CliResult {
    let (_inv, work, label) = resolve(&a.selection)?;
    let vault = open_vault(g)?;
    let status = vault.status()?;
    let mut rows = Vec::new();
    for w in &work {
        for (account, policy) in &w.accounts {
            let cred = CredentialId::new(w.host.name.clone(), account.clone());
            let st = status.iter().find(|s| s.cred == cred);
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
    println!(
        "Plan for scope `{label}`: {} credentials on {} hosts would rotate (requested now).\n",
        rows.len(),
        work.len()
    );
    print!(
        "{}",
        table(&["CREDENTIAL", "PLAYBOOK", "POLICY", "WHY"], &rows)
    );
    println!("\nNothing was changed. Run the same selection with `rotor rotate` to apply.");
    Ok(0)
}

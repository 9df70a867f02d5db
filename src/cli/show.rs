//! `rotor show CRED --reason R`: print one current secret. Audited.

use clap::Args;

use super::output::open_vault;
use super::{CliResult, Global, usage};
use crate::credential::CredentialId;

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The credential, HOST/ACCOUNT.
    pub cred: String,
    /// Why you need it (recorded in the audit log).
    #[arg(long)]
    pub reason: String,
}

pub fn run(g: &Global, a: ShowArgs) -> CliResult {
    let cred = CredentialId::parse(&a.cred).map_err(usage)?;
    if a.reason.trim().is_empty() {
        return Err(usage(
            "--reason must say why the secret is needed; it is recorded",
        ));
    }
    let vault = open_vault(g)?;
    match vault.show(&cred, &a.reason)? {
        Some(secret) => {
            // The one place rotor prints a secret, on purpose, to stdout only.
            outln!("{}", secret.expose());
            Ok(0)
        }
        None => Err(anyhow::anyhow!(
            "the vault holds no current secret for {cred}: rotate it (`rotor rotate --scope cred:{cred}`) or enroll it (`rotor enroll {cred}`)"
        )
        .into()),
    }
}

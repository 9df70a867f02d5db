//! `rotor enroll CRED`: store a credential's existing secret, read from stdin.

use std::io::{IsTerminal, Read};

use clap::Args;

use super::output::open_vault;
use super::{CliResult, Global, usage};
use crate::credential::CredentialId;
use crate::secret::Secret;

#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// The credential, HOST/ACCOUNT.
    pub cred: String,
}

pub fn run(g: &Global, a: EnrollArgs) -> CliResult {
    let cred = CredentialId::parse(&a.cred).map_err(usage)?;
    if std::io::stdin().is_terminal() {
        eprintln!(
            "Type the current secret of {cred}, then Enter and Ctrl-D (input is echoed; prefer a pipe):"
        );
    }
    let mut raw = zeroize::Zeroizing::new(String::new());
    std::io::stdin().read_to_string(&mut raw)?;
    // One line: drop the line ending a pipe or a terminal adds, nothing else.
    let line = raw.strip_suffix('\n').unwrap_or(&raw);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() || line.contains('\n') {
        return Err(usage(
            "enroll reads exactly one secret, on one line, from stdin (e.g. `rotor enroll host/acct < secret.txt`)",
        ));
    }
    let secret = Secret::new(line.to_owned());
    let vault = open_vault(g)?;
    let outcome = vault.enroll(&cred, &secret)?;
    println!("Enrolled the current secret of {cred}.");
    if outcome.shared_with > 0 {
        eprintln!(
            "warning: this secret is the same as that of {} other credential(s) in the vault; rotate them with `rotor rotate --scope ...` so each gets its own",
            outcome.shared_with
        );
    }
    Ok(0)
}

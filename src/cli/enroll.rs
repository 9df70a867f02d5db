//! `rotor enroll CRED`: store a credential's existing secret, read from stdin: typed without
//! echo when stdin is a terminal, read whole when it is a pipe or a file.

use std::io::{IsTerminal, Read, Write};

use anyhow::Context;
use clap::Args;
use zeroize::Zeroizing;

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
    let raw = if std::io::stdin().is_terminal() {
        read_typed(&cred)?
    } else {
        let mut raw = Zeroizing::new(String::new());
        std::io::stdin().read_to_string(&mut raw)?;
        raw
    };
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

/// Reads one line typed at the terminal on stdin with echo off, after a prompt on stderr.
///
/// rpassword's `prompt_password` / `read_password` use `/dev/tty` for both the prompt and the
/// input; rotor keeps its prompts on stderr (stdout is data) and reads the terminal that is
/// actually stdin, so both are named here. rpassword restores the terminal's echo when done,
/// except on Ctrl-C: it raises SIGINT itself before restoring it, so rotor dies with echo off
/// (`stty echo` brings it back where the shell does not).
fn read_typed(cred: &CredentialId) -> anyhow::Result<Zeroizing<String>> {
    let mut stderr = std::io::stderr();
    write!(stderr, "Current secret of {cred} (not echoed): ")?;
    stderr.flush()?;
    let config = rpassword::ConfigBuilder::new()
        .input_file_path("/dev/stdin")
        .output_writer(std::io::stderr())
        .build();
    let typed = rpassword::read_password_with_config(config).context(
        "could not read the secret from the terminal; or pipe it: `rotor enroll HOST/ACCOUNT < file`",
    )?;
    Ok(Zeroizing::new(typed))
}

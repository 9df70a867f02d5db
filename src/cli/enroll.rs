//! `rotor enroll CRED`: store a credential's existing secret, read from stdin: typed without
//! echo when stdin is a terminal, read whole when it is a pipe or a file.

use std::io::{IsTerminal, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::Args;
use signal_hook::consts::SIGINT;
use zeroize::Zeroizing;

use super::output::open_vault;
use super::{CliResult, Failure, Global, usage};
use crate::credential::CredentialId;
use crate::secret::Secret;

#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// The credential, HOST/ACCOUNT.
    pub cred: String,
}

pub fn run(g: &Global, a: EnrollArgs) -> CliResult {
    let cred = CredentialId::parse(&a.cred).map_err(usage)?;
    // At a terminal, Ctrl-C only sets this flag from the prompt on (see `read_typed`); it is
    // checked again right before the secret is stored.
    let interrupted = Arc::new(AtomicBool::new(false));
    let raw = if std::io::stdin().is_terminal() {
        read_typed(&cred, &interrupted)?
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
    if interrupted.load(Ordering::SeqCst) {
        return Err(interrupted_failure());
    }
    let outcome = vault.enroll(&cred, &secret)?;
    outln!("Enrolled the current secret of {cred}.");
    if let Some(rotation) = outcome.settled_stuck {
        outln!(
            "This settles its stuck rotation {rotation}: its pending secret is retired (kept in the vault's history), and {cred} can be rotated again (if it is parked, `rotor recover --cred {cred}` unparks it)."
        );
    }
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
/// actually stdin, so both are named here. On Ctrl-C rpassword raises SIGINT itself, before it
/// puts the terminal's echo back: from the prompt on, SIGINT only sets `interrupted`, so
/// rpassword returns `Interrupted` and restores the terminal, and rotor exits 130 having
/// enrolled nothing. The handler stays for the rest of the command (signal-hook cannot put
/// the default back), and `run` checks the flag before it stores anything.
fn read_typed(
    cred: &CredentialId,
    interrupted: &Arc<AtomicBool>,
) -> Result<Zeroizing<String>, Failure> {
    // Taken over before the prompt appears, so that a Ctrl-C at any moment of the prompt is
    // seen here, whether rpassword has switched the terminal yet or not.
    signal_hook::flag::register(SIGINT, interrupted.clone())
        .context("could not take over Ctrl-C while reading the secret")?;
    let typed = (|| {
        let mut stderr = std::io::stderr();
        write!(stderr, "Current secret of {cred} (not echoed): ")?;
        stderr.flush()?;
        let config = rpassword::ConfigBuilder::new()
            .input_file_path("/dev/stdin")
            .output_writer(std::io::stderr())
            .build();
        rpassword::read_password_with_config(config)
    })();
    match typed {
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Err(interrupted_failure()),
        _ if interrupted.load(Ordering::SeqCst) => Err(interrupted_failure()),
        Ok(typed) => Ok(Zeroizing::new(typed)),
        Err(e) => Err(anyhow::Error::new(e)
            .context(
                "could not read the secret from the terminal; or pipe it: `rotor enroll HOST/ACCOUNT < file`",
            )
            .into()),
    }
}

fn interrupted_failure() -> Failure {
    Failure {
        code: 130,
        error: anyhow::anyhow!("interrupted: nothing was enrolled"),
    }
}

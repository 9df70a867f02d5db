//! `rotor enroll CRED`: store a credential's existing secret, read from stdin: typed without
//! echo when stdin is a terminal, read whole when it is a pipe or a file. With `--ssh-key
//! FILE`, the secret is an SSH private key read from that file (checked by
//! `sshkey::parse_private`, stored as rotor writes OpenSSH keys); stdin is not read.
//! Neither is ever echoed: messages name the file and the key's fingerprint only.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::Args;
use signal_hook::consts::SIGINT;
use zeroize::Zeroizing;

use super::output::open_vault;
use super::{CliResult, Failure, Global, OutputFormat, usage};
use crate::credential::CredentialId;
use crate::secret::Secret;
use crate::sshkey;

#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// The credential, HOST/ACCOUNT.
    pub cred: String,
    /// Enroll an SSH private key (unencrypted OpenSSH ed25519, e.g. ~/.ssh/id_ed25519) read
    /// from FILE instead of a secret on stdin.
    #[arg(long, value_name = "FILE")]
    pub ssh_key: Option<PathBuf>,
    /// `text` for people, `json` for programs.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

pub fn run(g: &Global, a: EnrollArgs) -> CliResult {
    let cred = CredentialId::parse(&a.cred).map_err(usage)?;
    // At a terminal, Ctrl-C only sets this flag from the prompt on (see `read_typed`); it is
    // checked again right before the secret is stored.
    let interrupted = Arc::new(AtomicBool::new(false));
    let (secret, what) = match &a.ssh_key {
        Some(path) => {
            let key = read_key_file(path)?;
            let public = sshkey::public_of(&key)
                .context("the key read back after re-encoding is unreadable (a bug in rotor)")?;
            let what = format!("SSH private key ({})", public.fingerprint());
            (key, what)
        }
        None => (
            read_secret(&cred, &interrupted)?,
            "current secret".to_owned(),
        ),
    };
    let vault = open_vault(g)?;
    if interrupted.load(Ordering::SeqCst) {
        return Err(interrupted_failure());
    }
    let outcome = vault.enroll(&cred, &secret)?;
    if a.output == OutputFormat::Json {
        outln!(
            "{}",
            serde_json::json!({
                "credential": cred.to_string(),
                "enrolled": what,
                "settled_stuck_rotation": outcome.settled_stuck,
                "shared_with": outcome.shared_with,
            })
        );
    } else {
        outln!("Enrolled the {what} of {cred}.");
    }
    if let Some(rotation) = outcome
        .settled_stuck
        .filter(|_| a.output == OutputFormat::Text)
    {
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

/// Reads one secret from stdin (see the module doc).
fn read_secret(cred: &CredentialId, interrupted: &Arc<AtomicBool>) -> Result<Secret, Failure> {
    let raw = if std::io::stdin().is_terminal() {
        read_typed(cred, interrupted)?
    } else {
        let mut raw = Zeroizing::new(String::new());
        std::io::stdin().read_to_string(&mut raw)?;
        raw
    };
    // One line: drop the line ending a pipe or a terminal adds, nothing else.
    let line = raw.strip_suffix('\n').unwrap_or(&raw);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.contains("PRIVATE KEY-----") {
        return Err(usage(
            "this looks like an SSH private key: enroll it from its file with `rotor enroll HOST/ACCOUNT --ssh-key FILE`",
        ));
    }
    if line.is_empty() || line.contains('\n') {
        return Err(usage(
            "enroll reads exactly one secret, on one line, from stdin (e.g. `rotor enroll host/acct < secret.txt`)",
        ));
    }
    Ok(Secret::new(line.to_owned()))
}

/// Reads and checks an SSH private key file: a regular file (opened non-blocking, so a FIFO is
/// refused at once rather than waited on, as `inventory::load` does) of at most
/// [`sshkey::MAX_PRIVATE_KEY_BYTES`]. Every message names the file, never its contents.
fn read_key_file(path: &Path) -> Result<Secret, Failure> {
    let fail = |what: String| super::output::file_problem("--ssh-key", path, &what);
    let bytes = super::output::read_secret_file(
        "--ssh-key",
        path,
        "give the private key file",
        sshkey::MAX_PRIVATE_KEY_BYTES,
        |size| {
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            sshkey::KeyError::TooLarge { size }.to_string()
        },
    )?;
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        fail("it is not text, so not an OpenSSH private key; give the private key file (e.g. ~/.ssh/id_ed25519)".into())
    })?;
    sshkey::parse_private(text).map_err(|e| fail(e.to_string()).into())
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
        kind: Some("interrupted"),
        error: anyhow::anyhow!("interrupted: nothing was enrolled"),
    }
}

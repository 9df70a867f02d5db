//! `rotor export --recipient AGE_PUBLIC_KEY -o FILE`: offline escrow of every current
//! credential, encrypted to an `age` recipient (`ops::export`). The file is created new
//! (never overwritten) with mode 0600; the plaintext never reaches a disk.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use clap::Args;

use super::{CliResult, Global, OutputFormat, context};
use crate::ops::Actor;
use crate::ops::export::{ExportScope, Recipient, export};

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The age public key to encrypt to (`age1...`, as `age-keygen` prints it). Keep its
    /// identity (private key) off this machine: it is what recovers the credentials.
    #[arg(long, value_name = "AGE_PUBLIC_KEY", value_parser = clap::value_parser!(String))]
    pub recipient: String,
    /// The file to write (created; an existing file is never overwritten).
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: PathBuf,
    /// Only what these scopes select (all, host:NAME, group:NAME, account:NAME,
    /// directory:NAME, cred:HOST/ACCOUNT; globs such as host:emr-*, comma lists, and '!SCOPE'
    /// to exclude, quoted for the shell; repeatable) in the inventory `-i FILE`.
    /// Without it: every current credential in the vault.
    #[arg(long = "scope", value_name = "SCOPE", requires = "inventory")]
    pub scopes: Vec<String>,
    /// The inventory the scopes are resolved in.
    #[arg(short, long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// `json`: a summary object on stdout (`-o` names the file here).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

pub fn run(g: &Global, a: ExportArgs) -> CliResult {
    let recipient: Recipient = a.recipient.parse().map_err(super::usage)?;
    let resolved = match &a.inventory {
        Some(inventory) if !a.scopes.is_empty() => {
            Some(super::rotate::resolve(&super::rotate::Selection {
                inventory: inventory.clone(),
                scopes: a.scopes.clone(),
                all: false,
            })?)
        }
        Some(_) => {
            return Err(super::usage(
                "-i FILE is only for --scope: give the scopes to export, or leave both out to export everything",
            ));
        }
        None => None,
    };
    let scope = match &resolved {
        Some(r) => ExportScope::Selected {
            selection: &r.selected,
            label: r.label.clone(),
        },
        None => ExportScope::All,
    };
    let session = context::open(g)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&a.out)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot create {}: {e}; name a new file (an export never overwrites one)",
                a.out.display()
            )
        })?;
    let done = match export(
        &session.ctx,
        &Actor::of_this_process(),
        &recipient,
        &scope,
        &mut file,
    ) {
        Ok(done) => done,
        Err(e) => {
            // Never leave a truncated file that looks like an export.
            drop(file);
            let _ = std::fs::remove_file(&a.out);
            return Err(anyhow::Error::new(e).into());
        }
    };
    file.sync_all()
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", a.out.display()))?;
    drop(file);
    if a.output == OutputFormat::Json {
        outln!(
            "{}",
            serde_json::json!({
                "file": a.out.display().to_string(),
                "credentials": done.n_credentials,
                "recipient": recipient.to_string(),
            })
        );
    }
    let mut err = std::io::stderr();
    let _ = writeln!(
        err,
        "exported {} credentials to {}, encrypted to {recipient}; recover them with `age -d -i IDENTITY {}`",
        done.n_credentials,
        a.out.display(),
        a.out.display()
    );
    Ok(0)
}

//! `rotor verify`: parse the arguments, call [`ops::verify`](crate::ops::verify) (the
//! heartbeat: a fresh login or bind per credential with the vault's current secret), print
//! what it found, exit 0 when every credential works, else 3.

use std::time::Duration;

use clap::Args;

use super::context;
use super::output::{Bar, Output};
use super::rotate::{Resolved, Selection, resolve};
use super::{CliResult, Global, OutputFormat};
use crate::ops::verify::VerifyRequest;
use crate::ops::{self, Actor};
use crate::report::{SCHEMA_VERSION, table};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// Logins (SSH sessions, LDAP binds) tried at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// Deadline of each SSH or LDAP step (connect, handshake, login), in seconds.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub step_timeout: u64,
    /// `text` for people, `json` for programs.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

pub fn run(g: &Global, a: VerifyArgs) -> CliResult {
    let Resolved { inv, selected, .. } = resolve(&a.selection)?;
    let out = Output::new(a.output);
    let session = context::open(g)?;
    let bar = Bar::new(out, "verifying", false);
    let req = VerifyRequest {
        inventory: &inv,
        selection: selected,
        concurrency: a.concurrency as usize,
        step_timeout: Duration::from_secs(a.step_timeout),
        actor: Actor::of_this_process(),
        progress: Some(bar.clone()),
    };
    // No shutdown future: an interrupt stops `rotor verify` at once, as it always has.
    let done = ops::verify::verify(&session.ctx, req, std::future::pending())?;
    bar.finish();
    for f in &done.failed_directories {
        eprintln!(
            "directory {} could not be checked ({}): {}",
            f.directory,
            f.class,
            crate::text::escape(&f.message)
        );
    }
    let (n, n_ok) = (done.total, done.n_working());
    match out.format {
        OutputFormat::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "schema_version": SCHEMA_VERSION,
                "command": "verify",
                "total": n,
                "works": n_ok,
                "results": done.checks,
                "failed_directories": done.failed_directories,
            }))?
        ),
        OutputFormat::Text => {
            outln!("{n_ok} of {n} credentials work with the vault's current secret.");
            let bad: Vec<[String; 3]> = done
                .checks
                .iter()
                .filter(|c| !c.works())
                .map(|c| [c.cred.to_string(), c.result.clone(), c.detail.clone()])
                .collect();
            if !bad.is_empty() {
                outln!();
                out!("{}", table(&["CREDENTIAL", "RESULT", "DETAIL"], &bad));
            }
        }
    }
    Ok(if n_ok == n && done.failed_directories.is_empty() {
        0
    } else {
        3
    })
}

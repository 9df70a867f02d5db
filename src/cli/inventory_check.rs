//! `rotor inventory check -i FILE [--connect] [--scope S]... [-o json]`: validate and
//! summarise the inventory, check the local files it names (`ops::preflight::files_only`:
//! no vault, no network), and with `--connect` connect to every host and directory in scope
//! and look at what would stop a rotation (`ops::preflight::check`), changing nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::{CliResult, Global, OutputFormat, context, usage};
use crate::ops;
use crate::ops::preflight::{PreflightReport, PreflightRequest, Severity};

#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 when no error was found, 3 when one was (one line each: \
FILE:LINE: TARGET: what is wrong: what to do). Warnings (`warning:`) are printed, and in \
JSON, but do not change the exit status. 1 when the check itself could not run (an invalid \
inventory, a vault that cannot be opened), 2 on a usage error."
)]
pub struct CheckArgs {
    /// The inventory file (YAML).
    #[arg(short, long, value_name = "FILE", env = "ROTOR_INVENTORY")]
    pub inventory: PathBuf,
    /// Also connect to every host and directory in scope, changing nothing: host key, connect
    /// identity, sudo, the accounts (exist, not locked), password login offered by sshd;
    /// a directory's TLS, rotor's bind and each search's count. Uses the vault (read only)
    /// for the connect and bind secrets; never logs in as an account, nor with an open
    /// rotation's pending secret (an open rotation is reported instead).
    #[arg(long)]
    pub connect: bool,
    /// What to check, as `rotate --scope` takes it (globs, comma lists, '!' to take out).
    /// Repeatable. Default: everything.
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// Hosts checked at once (with --connect).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// Deadline of each SSH or LDAP step (connect, handshake, each command), in seconds.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub step_timeout: u64,
    /// `text` for people, `json` for programs.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

pub fn run(g: &Global, a: CheckArgs) -> CliResult {
    let scopes = if a.scopes.is_empty() {
        vec!["all".to_owned()]
    } else {
        a.scopes.clone()
    };
    super::rotate::scope_syntax(&scopes)?;
    let inv = crate::inventory::load(&a.inventory)?;
    let (selection, _) = ops::rotate::select(&inv, &scopes).map_err(usage)?;
    let report = if a.connect {
        let session = context::open(g)?;
        let progress: ops::preflight::OnChecked = Arc::new(|target, n| {
            let said = match n {
                0 => "ok".to_owned(),
                1 => "1 problem".to_owned(),
                n => format!("{n} problems"),
            };
            eprintln!("rotor: checked {}: {said}", crate::text::escape(target));
        });
        ops::preflight::check(
            &session.ctx,
            PreflightRequest {
                inventory: &inv,
                selection,
                concurrency: a.concurrency as usize,
                step_timeout: Duration::from_secs(a.step_timeout),
                progress: Some(progress),
            },
        )
    } else {
        ops::preflight::files_only(&inv, &selection)
    };
    match a.output {
        OutputFormat::Json => outln!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Text => {
            if !a.connect {
                out!("{}", inv.summary());
            }
            for p in &report.problems {
                outln!("{}", p.line_text());
            }
            eprintln!("{}", closing_line(&report));
        }
    }
    // A reader that went away (`| head`) is said as for any command (141), not as problems.
    if let Some(code) = super::output::stdout_exit_code() {
        return Ok(code);
    }
    Ok(report.exit_code())
}

/// What was checked and what was found, for stderr.
fn closing_line(r: &PreflightReport) -> String {
    let n_warnings = r
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Warning)
        .count();
    let n_errors = r.problems.len() - n_warnings;
    use crate::report::plural;
    let targets = format!(
        "{} and {}",
        plural(r.checked.hosts, "host", "hosts"),
        plural(r.checked.directories, "directory", "directories")
    );
    let what = if r.connected {
        format!("connected to {targets}")
    } else {
        format!(
            "checked the local files of {targets} (add --connect to check the hosts and directories themselves)"
        )
    };
    match (n_errors, n_warnings) {
        (0, 0) => format!("rotor: {what}: no problem found"),
        (e, w) => format!(
            "rotor: {what}: {}, {}",
            plural(e, "problem", "problems"),
            plural(w, "warning", "warnings")
        ),
    }
}

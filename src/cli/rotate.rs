//! `rotor rotate` and `rotor recover`: parse the arguments, resolve the selection, call
//! [`ops::rotate`](crate::ops::rotate) or [`ops::recover`](crate::ops::recover), print the
//! report and map it to an exit code. The order of recovery and rotation, directory opening
//! and the run record live in `ops`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::context::{self, interrupt};
use super::output::{Bar, Output};
use super::{CliResult, Failure, Global, OutputFormat, usage};
use crate::credential::CredentialId;
use crate::engine::blast::FailureLimit;
use crate::inventory::{Inventory, Scope, Selection as Selected};
use crate::ops::recover::{RecoverRequest, Vouched};
use crate::ops::rotate::RotateRequest;
use crate::ops::{self, Actor};
use crate::report::RunReport;

/// Which credentials: `--scope` (repeatable) or `--all`.
#[derive(Debug, Args, Clone)]
pub struct Selection {
    /// The inventory file (YAML).
    #[arg(short, long, value_name = "FILE")]
    pub inventory: PathBuf,
    /// What to act on: all, host:NAME, group:NAME, account:NAME, directory:NAME,
    /// cred:HOST/ACCOUNT (or DIRECTORY/UID). Names take globs (host:emr-*, cred:emr-*/svc_app);
    /// a comma list is a union (group:emr,group:lab), as is repeating --scope; a leading !
    /// takes a scope out (quote it for the shell: --scope '!host:emr-db-01'; only exclusions:
    /// everything but them).
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// Everything in the inventory (same as --scope all).
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// Why (recorded with the run), e.g. a ticket or incident number.
    #[arg(long, default_value = "manual rotation")]
    pub reason: String,
    /// Hosts worked on at once, and accounts of one directory rotated at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// Deadline of each SSH or LDAP step (connect, handshake, one command or operation), in
    /// seconds.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub step_timeout: u64,
    /// Rotate this many hosts first; if any of them fails, start no other host.
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub canary: usize,
    /// Unpark credentials parked after repeated failed logins and try them again (after you
    /// fixed why their logins failed).
    #[arg(long)]
    pub retry_parked: bool,
    /// Rotate checked-out credentials too (post-incident): their checkouts end and the
    /// holders' secrets stop working (recorded). Without it they are skipped.
    #[arg(long)]
    pub include_checked_out: bool,
    /// The incident profile: assume the attacker knows every current credential. Also
    /// rotates the accounts rotor logs in with on the hosts in scope (last on each host, after
    /// a second login path is proven) and rotor's directory bind accounts, rotates checked-out
    /// credentials (implies --include-checked-out), replaces each SSH-key account's whole
    /// authorized_keys with its new key (removed lines listed, kept in the vault), and reports
    /// accounts the inventory does not know and sessions logged in as rotated accounts.
    #[arg(long)]
    pub breach: bool,
    /// Stop starting new hosts once more than this many hosts failed: a count (5) or a
    /// percentage of the run's hosts (10%). Unreachable hosts count as failed.
    #[arg(long, value_name = "N|P%", value_parser = parse_failure_limit)]
    pub max_failures: Option<FailureLimit>,
    /// `text` for people, `json` for programs.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

fn parse_failure_limit(s: &str) -> Result<FailureLimit, String> {
    s.parse()
}

#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// The inventory file (YAML) that holds the hosts of the interrupted rotations.
    #[arg(short, long, value_name = "FILE")]
    pub inventory: PathBuf,
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub step_timeout: u64,
    /// An operator fixed what went wrong with this credential (HOST/ACCOUNT): unpark it if it
    /// was parked after failed logins, and settle its rotation if it was stuck. Repeatable.
    #[arg(long = "cred", value_name = "HOST/ACCOUNT")]
    pub creds: Vec<String>,
    /// Like --cred, for every credential in a scope (all, host:NAME, group:NAME,
    /// account:NAME, directory:NAME, cred:HOST/ACCOUNT; globs, comma lists and '!SCOPE'
    /// exclusions as for rotate --scope). Repeatable.
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// `text` for people, `json` for programs.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// What a selection resolved to.
pub struct Resolved {
    pub inv: Inventory,
    pub selected: Selected,
    /// The scopes as written, for the run record.
    pub label: String,
}

/// Loads the inventory and resolves the selection, or a usage error.
pub fn resolve(sel: &Selection) -> Result<Resolved, Failure> {
    if !sel.all && sel.scopes.is_empty() {
        return Err(usage(
            "say what to act on: --all, or one or more --scope (all, host:NAME, group:NAME, account:NAME, directory:NAME, cred:HOST/ACCOUNT)",
        ));
    }
    let scopes = if sel.all {
        vec!["all".to_owned()]
    } else {
        sel.scopes.clone()
    };
    // A scope that cannot be read is said before the inventory is (as it always was); a bare
    // name (`emr`) waits for the inventory, which says whether it is a host, a group or both.
    for s in &scopes {
        if let Err(e) = Scope::parse_list(s)
            && !e.needs_inventory()
        {
            return Err(usage(e));
        }
    }
    let inv = crate::inventory::load(&sel.inventory)?;
    let (selected, label) = ops::rotate::select(&inv, &scopes).map_err(usage)?;
    Ok(Resolved {
        inv,
        selected,
        label,
    })
}

fn emit(out: Output, report: &RunReport) {
    match out.format {
        OutputFormat::Json => outln!("{}", report.to_json()),
        OutputFormat::Text => out!("{}", report.to_text()),
    }
}

pub fn run(g: &Global, a: RotateArgs) -> CliResult {
    let Resolved {
        inv,
        selected,
        label,
    } = resolve(&a.selection)?;
    let out = Output::new(a.output);
    let session = context::open(g)?;
    let bar = Bar::new(out, "rotating", true);
    let printed = bar.clone();
    let req = RotateRequest {
        reason: a.reason.clone(),
        actor: Actor::of_this_process(),
        concurrency: a.concurrency as usize,
        step_timeout: Duration::from_secs(a.step_timeout),
        canary: a.canary,
        max_failures: a.max_failures.unwrap_or(FailureLimit::Unlimited),
        retry_parked: a.retry_parked,
        include_checked_out: a.include_checked_out || a.breach,
        breach: a.breach,
        progress: Some(bar),
        // The report is printed before the end of the run is recorded, which can fail.
        deliver: Some(Box::new(move |report: &RunReport| {
            printed.finish();
            emit(out, report);
        })),
        ..RotateRequest::new(&inv, selected, label)
    };
    let done = ops::rotate::rotate(&session.ctx, req, interrupt())?;
    // An interrupted run reports what it skipped: partial (3), or 4 if something is open.
    Ok(done.report.exit_code())
}

/// The credentials the operator vouches for: `--cred` parsed, `--scope` through the
/// inventory's selection, so a typo is an error, not "nothing".
fn vouched(inv: &Inventory, a: &RecoverArgs) -> Result<(Vec<CredentialId>, Selected), Failure> {
    let creds = a
        .creds
        .iter()
        .map(|c| CredentialId::parse(c).map_err(usage))
        .collect::<Result<Vec<_>, _>>()?;
    if a.scopes.is_empty() {
        return Ok((creds, Selected::default()));
    }
    let selected = inv.select_written(&a.scopes).map_err(usage)?;
    Ok((creds, selected))
}

pub fn recover(g: &Global, a: RecoverArgs) -> CliResult {
    let inv = crate::inventory::load(&a.inventory)?;
    let out = Output::new(a.output);
    let session = context::open(g)?;
    let (vouched, vouched_scopes) = vouched(&inv, &a)?;
    let req = RecoverRequest {
        vouched,
        vouched_scopes,
        step_timeout: Duration::from_secs(a.step_timeout),
        ..RecoverRequest::new(&inv)
    };
    // No shutdown future: an interrupt stops `rotor recover` at once, as it always has.
    let done = ops::recover::recover(&session.ctx, req, std::future::pending())?;
    for v in &done.vouched {
        match v {
            Vouched::Unparked(cred) => eprintln!("Unparked {cred}: rotor will log in as it again."),
            Vouched::Reopened(cred) => {
                eprintln!("Reopened the stuck rotation of {cred}: recovery settles it now.")
            }
        }
    }
    let report = done.report;
    if report.results.is_empty() && out.format == OutputFormat::Text {
        outln!("Nothing to recover: no rotation is open.");
        return Ok(0);
    }
    emit(out, &report);
    // Recovery that ends every rotation (committed or rolled back) has done its job.
    let c = report.counts;
    Ok(if c.stuck > 0 || c.unsettled > 0 { 4 } else { 0 })
}

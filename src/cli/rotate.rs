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
    #[arg(short, long, value_name = "FILE", env = "ROTOR_INVENTORY")]
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

/// `rotate --retry-failed [--run N]`: the credentials an earlier run did not commit, in
/// place of `--scope`/`--all`.
#[derive(Debug, Args, Clone)]
pub struct RetryFailed {
    /// Rotate again only what a run did not commit (failed, rolled back, parked, or never
    /// started because the breaker or an interrupt stopped it), instead of --scope/--all.
    /// The run is the last `rotor rotate` (its number is on the report's first line and in
    /// `rotor status`), or --run N.
    #[arg(long)]
    pub retry_failed: bool,
    /// With --retry-failed: the run to retry, by number.
    #[arg(long = "run", value_name = "N", requires = "retry_failed",
          value_parser = clap::value_parser!(i64).range(1..))]
    pub run: Option<i64>,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub selection: Selection,
    #[command(flatten)]
    pub retry: RetryFailed,
    /// Why (recorded with the run), e.g. a ticket or incident number. Asked for at a
    /// terminal when missing; elsewhere (cron, scripts) recorded as "manual rotation", with
    /// a warning.
    #[arg(long)]
    pub reason: Option<String>,
    /// Do not ask for confirmation. At a terminal, a rotation of more than one host shows
    /// what it will rotate and asks first; scripts and cron (stdin not a terminal) are
    /// never asked.
    #[arg(short = 'y', long)]
    pub yes: bool,
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
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

fn parse_failure_limit(s: &str) -> Result<FailureLimit, String> {
    s.parse()
}

#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// The inventory file (YAML) that holds the hosts of the interrupted rotations.
    #[arg(short, long, value_name = "FILE", env = "ROTOR_INVENTORY")]
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
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// What a selection resolved to.
pub struct Resolved {
    pub inv: Inventory,
    pub selected: Selected,
    /// The scopes as written, for the run record.
    pub label: String,
}

/// A scope that cannot be read is said before the inventory is read (as it always was); a
/// bare name (`emr`) waits for the inventory, which says whether it is a host, a group or both.
pub fn scope_syntax(scopes: &[String]) -> Result<(), Failure> {
    for s in scopes {
        if let Err(e) = Scope::parse_list(s)
            && !e.needs_inventory()
        {
            return Err(usage(e));
        }
    }
    Ok(())
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
    scope_syntax(&scopes)?;
    let inv = crate::inventory::load(&sel.inventory)?;
    let (selected, label) = ops::rotate::select(&inv, &scopes).map_err(usage)?;
    Ok(Resolved {
        inv,
        selected,
        label,
    })
}

/// The selection of a `rotate` and the session it runs in: `--scope`/`--all` resolved (a
/// scope error before the vault is opened, as always), or with `--retry-failed` what the run
/// did not commit, read from the vault, and whether that run was a `--breach` run. `None`
/// when a retry finds nothing to do (said on stdout: exit 0).
fn rotate_selection(
    g: &Global,
    sel: &Selection,
    retry: &RetryFailed,
    out: Output,
) -> Result<Option<(Resolved, context::Session, bool)>, Failure> {
    if !retry.retry_failed {
        let resolved = resolve(sel)?;
        return Ok(Some((resolved, context::open(g)?, false)));
    }
    if sel.all || !sel.scopes.is_empty() {
        return Err(usage(
            "--retry-failed takes its credentials from a run (the last one, or --run N): drop --scope/--all, or drop --retry-failed to rotate a scope",
        ));
    }
    let inv = crate::inventory::load(&sel.inventory)?;
    let session = context::open(g)?;
    let plan = ops::rotate::retry(&session.ctx, &inv, retry.run.map(crate::engine::RunId))
        .map_err(|e| {
            use ops::rotate::RetryError as E;
            match e {
                E::UnknownRun { .. } => Failure::coded(2, "unknown_run", e),
                E::NotEnded(_) => Failure::coded(1, "run_not_ended", e),
                E::NotRecorded(_) => Failure::coded(1, "run_not_recorded", e),
                E::Store(e) => e.into(),
            }
        })?;
    let file = sel.inventory.display();
    let left_out = |rotated_since: &[CredentialId], not_in_inventory: &[CredentialId]| {
        let names = |c: &[CredentialId]| c.iter().map(ToString::to_string).collect::<Vec<_>>();
        let mut words = Vec::new();
        if !rotated_since.is_empty() {
            words.push(format!(
                "rotated since: {}",
                names(rotated_since).join(", ")
            ));
        }
        if !not_in_inventory.is_empty() {
            words.push(format!(
                "no longer in {file}: {}",
                names(not_in_inventory).join(", ")
            ));
        }
        words
    };
    match plan {
        ops::rotate::RetryPlan::Retry(r) => {
            eprintln!(
                "Retrying run {} ({}): {} credential(s) it did not commit.",
                r.run.id,
                crate::text::escape(&r.run.scope),
                r.creds.len()
            );
            for w in left_out(&r.rotated_since, &r.not_in_inventory) {
                eprintln!("Left out, {w}");
            }
            if r.breach {
                eprintln!(
                    "Run {} was a --breach run: its retry is one too (rotor's own logins, SSH keys replaced).",
                    r.run.id
                );
            }
            Ok(Some((
                Resolved {
                    inv,
                    selected: r.selection,
                    label: r.label,
                },
                session,
                r.breach,
            )))
        }
        ops::rotate::RetryPlan::Nothing {
            run,
            rotated_since,
            not_in_inventory,
        } => {
            let notes = left_out(&rotated_since, &not_in_inventory);
            match out.format {
                OutputFormat::Json => outln!(
                    "{}",
                    serde_json::json!({
                        "schema_version": crate::report::SCHEMA_VERSION,
                        "retry_of_run": run.id,
                        "nothing_to_retry": true,
                        "rotated_since": rotated_since,
                        "not_in_inventory": not_in_inventory,
                    })
                ),
                OutputFormat::Text => {
                    outln!(
                        "Nothing to retry: every credential of run {} ({}) has its new secret.",
                        run.id,
                        crate::text::escape(&run.scope)
                    );
                    for n in notes {
                        outln!("Not retried, {n}");
                    }
                }
            }
            Ok(None)
        }
        ops::rotate::RetryPlan::NoRun => {
            match out.format {
                OutputFormat::Json => outln!(
                    "{}",
                    serde_json::json!({
                        "schema_version": crate::report::SCHEMA_VERSION,
                        "retry_of_run": null,
                        "nothing_to_retry": true,
                    })
                ),
                OutputFormat::Text => outln!(
                    "Nothing to retry: the vault has no `rotor rotate` run among its latest {} (the daemon's and checkouts' runs are retried only with --run N).",
                    ops::rotate::RECENT_RUNS
                ),
            }
            Ok(None)
        }
    }
}

/// Prints the report; `per_credential` (`-v`) adds the row of each credential not rotated.
fn emit(out: Output, report: &RunReport, per_credential: bool) {
    match out.format {
        OutputFormat::Json => outln!("{}", report.to_json()),
        OutputFormat::Text => out!("{}", report.to_text_with(per_credential)),
    }
}

/// The reason recorded when none is given where nobody can be asked.
const DEFAULT_REASON: &str = "manual rotation";

/// Must the person at the keyboard confirm first? Only at a terminal (stdin), only for more than
/// one host (or directory), and never with `--yes`.
fn must_confirm(at_terminal: bool, yes: bool, n_targets: usize) -> bool {
    at_terminal && !yes && n_targets > 1
}

/// Where a question goes: stderr, or the terminal itself when stderr is redirected
/// (`rotor rotate --all 2>>rotor.log` typed at a keyboard is still asked, and sees it).
fn to_person(text: &str) {
    use std::io::{IsTerminal as _, Write as _};
    let mut err = std::io::stderr();
    if !err.is_terminal()
        && let Ok(mut tty) = std::fs::OpenOptions::new().write(true).open("/dev/tty")
    {
        let _ = write!(tty, "{text}");
        let _ = tty.flush();
        return;
    }
    let _ = write!(err, "{text}");
    let _ = err.flush();
}

/// Asks one question and reads the answer from stdin (a terminal).
fn ask(question: &str) -> Result<String, Failure> {
    to_person(question);
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| anyhow::anyhow!("cannot read the answer from the terminal: {e}"))?;
    Ok(answer.trim().to_owned())
}

/// `--reason`, else asked for at a terminal, else the default with a warning.
fn reason_of(given: Option<String>, at_terminal: bool) -> Result<String, Failure> {
    if let Some(reason) = given {
        return Ok(reason);
    }
    if !at_terminal {
        eprintln!(
            "warning: no --reason given: this run is recorded as \"{DEFAULT_REASON}\"; pass --reason with the ticket or incident (e.g. --reason INC-42) so the audit log says why"
        );
        return Ok(DEFAULT_REASON.to_owned());
    }
    for _ in 0..3 {
        let answer = ask("Reason for this rotation (a ticket or incident number; recorded): ")?;
        if !answer.is_empty() {
            return Ok(answer);
        }
    }
    Err(usage(
        "no reason given: pass --reason (a ticket or incident number); nothing was changed",
    ))
}

/// At a terminal: what the rotation will touch, and a question; anything but yes stops it.
fn confirm(selected: &Selected, label: &str, reason: &str, breach: bool) -> Result<(), Failure> {
    let n_creds: usize = selected.hosts.iter().map(|h| h.accounts.len()).sum();
    let mut what = vec![format!(
        "{} on {}",
        crate::report::plural(n_creds, "credential", "credentials"),
        crate::report::plural(selected.hosts.len(), "host", "hosts")
    )];
    if !selected.directories.is_empty() {
        what.push(format!(
            "the accounts of {}",
            crate::report::plural(selected.directories.len(), "directory", "directories")
        ));
    }
    to_person(&format!(
        "rotor will rotate {} (scope `{}`, reason: {}){}. Each gets a new secret and its old one stops working; `rotor plan` shows each credential.\n",
        what.join(" and "),
        crate::text::escape(label),
        crate::text::escape(reason),
        if breach {
            ", in breach mode (rotor's own logins too; SSH keys replaced)"
        } else {
            ""
        }
    ));
    let answer = ask("Rotate now? Type yes to go on (--yes skips this question): ")?;
    if matches!(answer.to_ascii_lowercase().as_str(), "y" | "yes") {
        return Ok(());
    }
    Err(Failure::coded(
        1,
        "not_confirmed",
        anyhow::anyhow!("not confirmed: nothing was changed"),
    ))
}

pub fn run(g: &Global, a: RotateArgs) -> CliResult {
    use std::io::IsTerminal as _;
    let out = Output::new(a.output);
    let Some((
        Resolved {
            inv,
            selected,
            label,
        },
        session,
        retried_breach,
    )) = rotate_selection(g, &a.selection, &a.retry, out)?
    else {
        return Ok(0);
    };
    let breach = a.breach || retried_breach;
    // A person types at stdin; scripts and cron never have a terminal there.
    let at_terminal = std::io::stdin().is_terminal();
    let reason = reason_of(a.reason.clone(), at_terminal)?;
    let n_targets = selected.hosts.len() + selected.directories.len();
    if must_confirm(at_terminal, a.yes, n_targets) {
        confirm(&selected, &label, &reason, breach)?;
    }
    let bar = Bar::new(out, "rotating", true);
    let printed = bar.clone();
    let per_credential = g.verbose > 0;
    let req = RotateRequest {
        reason,
        actor: Actor::of_this_process(),
        concurrency: a.concurrency as usize,
        step_timeout: Duration::from_secs(a.step_timeout),
        canary: a.canary,
        max_failures: a.max_failures.unwrap_or(FailureLimit::Unlimited),
        retry_parked: a.retry_parked,
        include_checked_out: a.include_checked_out || breach,
        breach,
        progress: Some(bar),
        // The report is printed before the end of the run is recorded, which can fail.
        deliver: Some(Box::new(move |report: &RunReport| {
            printed.finish();
            emit(out, report, per_credential);
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
    emit(out, &report, g.verbose > 0);
    // Recovery that ends every rotation (committed or rolled back) has done its job.
    let c = report.counts;
    Ok(if c.stuck > 0 || c.unsettled > 0 { 4 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::must_confirm;

    #[test]
    fn only_a_person_at_a_terminal_rotating_several_hosts_is_asked() {
        assert!(must_confirm(true, false, 2));
        assert!(!must_confirm(true, true, 2), "--yes");
        assert!(!must_confirm(true, false, 1), "one host");
        assert!(!must_confirm(false, false, 200), "cron, scripts, pipes");
    }
}

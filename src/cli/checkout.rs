//! Break-glass checkout commands: `checkout` (request, or `--claim` an approved one),
//! `approve`, `refuse`, `checkin`, `checkouts`; and [`settle`], which every command that uses
//! the vault runs first, so a checkout that expired while no rotor ran is rotated by the next one.
//! Each parses, builds the context, calls one `ops::checkout` function and prints.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::context::{self, interrupt};
use super::{CliResult, Global, OutputFormat, usage};
use crate::checkout::State;
use crate::credential::CredentialId;
use crate::ops::checkout::{self as ops_checkout, CheckoutRequest, Ended, Requested};
use crate::ops::{Actor, Context};
use crate::report::table;
use crate::store::CheckoutRecord;
use crate::text::escape;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["cred", "claim"])))]
pub struct CheckoutArgs {
    /// The credential, HOST/ACCOUNT (or DIRECTORY/UID).
    pub cred: Option<String>,
    /// Claim an approved checkout (the requester, after `rotor approve ID` by someone else):
    /// the secret is shown once.
    #[arg(long, value_name = "ID", conflicts_with_all = ["ticket", "reason", "ttl", "for_name"])]
    pub claim: Option<i64>,
    /// The inventory file (YAML): the credential's policy sets approval and the longest ttl,
    /// and check-in and expiry rotate the credential with this file.
    #[arg(
        short,
        long,
        value_name = "FILE",
        env = "ROTOR_INVENTORY",
        required_unless_present = "claim"
    )]
    pub inventory: Option<PathBuf>,
    /// The ticket the work is done under (recorded, shown to the approver).
    #[arg(long, required_unless_present = "claim")]
    pub ticket: Option<String>,
    /// Why the credential is needed (recorded).
    #[arg(long, required_unless_present = "claim")]
    pub reason: Option<String>,
    /// How long the grant lasts (e.g. 90m, 4h, 1d) [default: the policy's default_ttl].
    #[arg(long, value_name = "DURATION", value_parser = super::duration_arg)]
    pub ttl: Option<Duration>,
    /// The vendor engineer who will use it (you stay the requester of record; they cannot
    /// approve it).
    #[arg(long = "for", value_name = "NAME")]
    pub for_name: Option<String>,
    /// `text` for people, `json` for programs.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The checkout's number (`rotor checkouts` lists the pending ones).
    pub id: i64,
    /// `text` for people, `json` for programs.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct RefuseArgs {
    /// The checkout's number (`rotor checkouts` lists the pending ones).
    pub id: i64,
    /// Why it is refused (recorded in the audit log; say what the requester should do).
    #[arg(long)]
    pub reason: String,
    /// `text` for people, `json` for programs.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct CheckinArgs {
    /// The checkout's number.
    pub id: i64,
    /// Rotate with this inventory instead of the one the checkout was made with (if that
    /// one is gone or has changed hands). It must be root's or the vault owner's.
    #[arg(short, long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// `text` for people, `json` for programs (the rotation's report).
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct CheckoutsArgs {
    /// Every checkout ever made, not only the active ones.
    #[arg(long)]
    pub all: bool,
    /// `text` for people, `json` for programs.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Prints a granted secret: the secret alone on stdout (as `rotor show` does), what it is and
/// until when on stderr.
fn print_grant(c: &CheckoutRecord, secret: &crate::secret::Secret, format: OutputFormat) {
    let until = c
        .ends_at
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    eprintln!(
        "Checkout {} of {} granted until {until} (ticket {}). The secret is shown once, below. When the work is done, run `rotor checkin {}`: rotor then rotates {} and this secret stops working; at {until} it does so by itself.",
        c.id,
        c.cred,
        escape(&c.ticket),
        c.id,
        c.cred
    );
    // The one other place rotor prints a secret, on purpose, to stdout only.
    if format == OutputFormat::Json {
        super::output::print_json_with_secret(ops_checkout::json(c), secret);
        return;
    }
    let s = secret.expose();
    out!("{s}{}", super::show::line_end(s));
}

/// A checkout record as JSON on stdout (`-o json` of request, approve and refuse).
fn print_record(c: &CheckoutRecord) {
    outln!("{}", ops_checkout::json(c));
}

pub fn checkout(g: &Global, a: CheckoutArgs) -> CliResult {
    let session = context::open(g)?;
    let by = Actor::of_this_process();
    if let Some(id) = a.claim {
        let (c, secret) = ops_checkout::claim(&session.ctx, &by, id)?;
        print_grant(&c, &secret, a.output);
        return Ok(0);
    }
    let (Some(cred), Some(path), Some(ticket), Some(reason)) =
        (a.cred, a.inventory, a.ticket, a.reason)
    else {
        return Err(usage(
            "say what to check out: CRED with -i FILE, --ticket and --reason (or --claim ID)",
        ));
    };
    let cred = CredentialId::parse(&cred).map_err(usage)?;
    // Its policy decides approval and the ttl: read only a file nobody else could have
    // written, at its resolved path.
    let path = crate::store::check_trusted_file("inventory", &path)?;
    let inventory = crate::inventory::load(&path)?;
    let req = CheckoutRequest {
        inventory: &inventory,
        inventory_path: &path,
        cred,
        ticket,
        reason,
        ttl: a.ttl,
        for_name: a.for_name,
        actor: by,
    };
    match ops_checkout::checkout(&session.ctx, req)? {
        Requested::Granted(c, secret) => print_grant(&c, &secret, a.output),
        Requested::Waiting(c) => {
            eprintln!(
                "Checkout {} of {} requested (ticket {}); it needs approval by another person: `rotor approve {}`. Then run `rotor checkout --claim {}` to see the secret. Unless approved, it lapses at {}.",
                c.id,
                c.cred,
                escape(&c.ticket),
                c.id,
                c.id,
                c.ends_at
                    .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_default()
            );
            match a.output {
                OutputFormat::Json => print_record(&c),
                OutputFormat::Text => outln!("{}", c.id),
            }
        }
    }
    Ok(0)
}

pub fn approve(g: &Global, a: ApproveArgs) -> CliResult {
    let session = context::open(g)?;
    let by = Actor::of_this_process();
    let c = ops_checkout::approve(&session.ctx, &by, a.id)?;
    eprintln!(
        "Approved checkout {} of {} for {} (ticket {}). {} can now run `rotor checkout --claim {}`.",
        c.id,
        c.cred,
        escape(&c.requester),
        escape(&c.ticket),
        escape(&c.requester),
        c.id
    );
    if a.output == OutputFormat::Json {
        print_record(&c);
    }
    Ok(0)
}

pub fn refuse(g: &Global, a: RefuseArgs) -> CliResult {
    let session = context::open(g)?;
    let by = Actor::of_this_process();
    let c = ops_checkout::refuse(&session.ctx, &by, a.id, &a.reason)?;
    eprintln!(
        "Refused checkout {} of {} requested by {} (ticket {}); it is closed and nothing was shown.",
        c.id,
        c.cred,
        escape(&c.requester),
        escape(&c.ticket),
    );
    if a.output == OutputFormat::Json {
        print_record(&c);
    }
    Ok(0)
}

pub fn checkin(g: &Global, a: CheckinArgs) -> CliResult {
    let session = context::open(g)?;
    let by = Actor::of_this_process();
    let ended =
        ops_checkout::checkin(&session.ctx, &by, a.id, a.inventory.as_deref(), interrupt())?;
    let code = tell_ended(&ended, a.output);
    Ok(code)
}

/// Prints how a checkout ended; the exit code: 0 closed, 3 its rotation failed (retried).
fn tell_ended(ended: &Ended, format: OutputFormat) -> i32 {
    if let Some(report) = &ended.report {
        match format {
            OutputFormat::Json => outln!("{}", report.to_json()),
            OutputFormat::Text => out!("{}", report.to_text()),
        }
    }
    let c = &ended.checkout;
    match &ended.failure {
        None if ended.report.is_some() => {
            eprintln!(
                "Checkout {} of {} is {}: {} was rotated, the checked-out secret no longer works.",
                c.id,
                c.cred,
                c.state_words(),
                c.cred
            );
            0
        }
        None => {
            match c.rotation {
                Some(r) => eprintln!(
                    "Checkout {} of {} is already {}: rotation {r} rotated {}, the checked-out secret no longer works.",
                    c.id,
                    c.cred,
                    c.state_words(),
                    c.cred
                ),
                None => eprintln!(
                    "Checkout {} of {} is {} (its secret was never shown, nothing to rotate).",
                    c.id,
                    c.cred,
                    c.state_words()
                ),
            }
            0
        }
        Some(why) => {
            let code = ended.report.as_ref().map_or(1, |r| r.exit_code().max(3));
            eprintln!(
                "Checkout {} of {} ended, but rotating {} failed: {}. The checked-out secret may still work; every rotor command tries the rotation again (or run `rotor checkin {}`).",
                c.id,
                c.cred,
                c.cred,
                escape(why),
                c.id
            );
            code
        }
    }
}

/// Settles checkout deadlines before a command's own work: expires and rotates what is due
/// and retries rotations that failed. Never fails the command: what cannot be settled now
/// is said on stderr and stays recorded for the next command.
pub fn settle(g: &Global) {
    let Ok(vault) = super::output::open_vault(g) else {
        return; // The command itself says why the vault cannot be opened.
    };
    let by = Actor::of_this_process();
    match vault.checkouts_due(&by) {
        Ok(ending) if ending.is_empty() => return,
        Ok(ending) => eprintln!(
            "rotor: {} checkout(s) ended (checked in, expired or overridden): rotating their credentials first, so the checked-out secrets stop working.",
            ending.len()
        ),
        Err(e) => {
            eprintln!("rotor: cannot check the checkouts' deadlines: {e}");
            return;
        }
    }
    drop(vault);
    let session = match context::open(g) {
        Ok(s) => s,
        Err(f) => {
            eprintln!(
                "rotor: cannot settle the checkouts that ended: {:#}",
                f.error
            );
            return;
        }
    };
    settle_with(&session.ctx, &by);
}

fn settle_with(ctx: &Context, by: &Actor) {
    match ops_checkout::settle_due(ctx, by, interrupt()) {
        Ok(ended) => {
            for e in &ended {
                eprintln!(
                    "rotor: checkout {} of {} (ticket {}) ended ({}).",
                    e.checkout.id,
                    e.checkout.cred,
                    escape(&e.checkout.ticket),
                    e.checkout.end.map(|x| x.as_str()).unwrap_or("ending")
                );
                // Its report goes to stderr: stdout belongs to the command that was asked for.
                if let Some(report) = &e.report {
                    eprint!("{}", report.to_text());
                }
                match &e.failure {
                    None => eprintln!(
                        "rotor: {} was rotated; the checked-out secret no longer works.",
                        e.checkout.cred
                    ),
                    Some(why) => eprintln!(
                        "rotor: rotating {} failed: {}; the next rotor command tries again.",
                        e.checkout.cred,
                        escape(why)
                    ),
                }
            }
        }
        Err(e) => eprintln!("rotor: cannot settle the checkouts that ended: {e}"),
    }
}

pub fn list(g: &Global, a: CheckoutsArgs) -> CliResult {
    let session = context::open(g)?;
    let all = ops_checkout::list(&session.ctx, a.all)?;
    if a.output == OutputFormat::Json {
        let rows: Vec<serde_json::Value> = all.iter().map(ops_checkout::json).collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "schema_version": crate::report::SCHEMA_VERSION,
                "checkouts": rows,
            }))?
        );
        return Ok(0);
    }
    if all.is_empty() {
        outln!(
            "{}",
            if a.all {
                "No checkouts were ever made."
            } else {
                "No active checkouts (`--all` lists the closed ones too)."
            }
        );
        return Ok(0);
    }
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or_else(
            || "-".to_owned(),
            |t| t.format("%Y-%m-%d %H:%M").to_string(),
        )
    };
    let rows: Vec<[String; 8]> = all
        .iter()
        .map(|c| {
            [
                c.id.to_string(),
                c.cred.to_string(),
                c.state_words(),
                match &c.for_name {
                    Some(f) => format!("{} (for {f})", c.requester),
                    None => c.requester.clone(),
                },
                c.ticket.clone(),
                c.approved_by.clone().unwrap_or_else(|| "-".into()),
                time(match c.state {
                    State::Ending | State::Closed => c.ended_at,
                    _ => c.ends_at,
                }),
                c.rotation.map_or_else(|| "-".into(), |r| r.to_string()),
            ]
        })
        .collect();
    out!(
        "{}",
        table(
            &[
                "ID",
                "CREDENTIAL",
                "STATE",
                "HOLDER",
                "TICKET",
                "APPROVED BY",
                "ENDS/ENDED (UTC)",
                "ROTATION"
            ],
            &rows
        )
    );
    Ok(0)
}

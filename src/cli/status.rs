//! `rotor status`: call [`ops::status`](crate::ops::status) (every credential in the vault,
//! its age by the context's clock, its last rotation and state) and print it.

use std::path::PathBuf;

use clap::Args;

use super::context;
use super::{CliResult, Global, OutputFormat, usage};
use crate::ops::{
    self,
    status::{Freshness, State},
};
use crate::report::table;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The inventory (YAML): with it, each credential's age is checked against its policy's
    /// `max_age` (stale: rotate it), and the credentials it lists that were never rotated and
    /// the vault's credentials it no longer lists are shown.
    #[arg(short, long, value_name = "FILE", env = "ROTOR_INVENTORY")]
    pub inventory: Option<PathBuf>,
    /// Only these credentials (needs -i), as `rotate --scope` takes them (globs, comma
    /// lists, '!' to take out). Repeatable.
    #[arg(long = "scope", value_name = "SCOPE", requires = "inventory")]
    pub scopes: Vec<String>,
    /// For monitoring, over the credentials shown: exit 0 when all is well; 3 when one is
    /// stale (no rotation proved its current secret within its policy's max_age) or a listed
    /// one was never rotated; 4 when an operator is needed (parked, a rotation left open or
    /// stuck). These codes do not change.
    #[arg(long)]
    pub check: bool,
    /// `text` for people, `json` for programs.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

fn age_words(d: chrono::Duration) -> String {
    if d.num_days() > 0 {
        format!("{}d", d.num_days())
    } else if d.num_hours() > 0 {
        format!("{}h", d.num_hours())
    } else {
        format!("{}m", d.num_minutes())
    }
}

pub fn run(g: &Global, a: StatusArgs) -> CliResult {
    let inventory = a
        .inventory
        .as_deref()
        .map(crate::inventory::load)
        .transpose()?;
    let selection = match &inventory {
        Some(inv) if !a.scopes.is_empty() => {
            Some(ops::rotate::select(inv, &a.scopes).map_err(usage)?.0)
        }
        _ => None,
    };
    let session = context::open(g)?;
    let status = match (&inventory, &selection) {
        (Some(inv), Some(sel)) => ops::status::status_of(&session.ctx, inv, sel)?,
        _ => ops::status::status(&session.ctx, inventory.as_ref())?,
    };
    let code = if a.check { status.check_code() } else { 0 };
    if a.output == OutputFormat::Json {
        outln!("{}", serde_json::to_string_pretty(&status.to_json())?);
        return Ok(code);
    }
    let file = a
        .inventory
        .as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let rows: Vec<[String; 5]> = status
        .credentials
        .iter()
        .zip(&status.freshness)
        .map(|(s, f)| {
            let age = match (status.age(s), f) {
                (Some(d), Freshness::Stale { max_age }) => format!(
                    "{} STALE (max_age {})",
                    age_words(d),
                    crate::text::duration_words(*max_age)
                ),
                (Some(d), _) => age_words(d),
                (None, _) => "-".to_owned(),
            };
            let last = match &s.last_rotation {
                Some(r) => format!("{} {}", r.phase, r.at.format("%Y-%m-%d %H:%M")),
                None => "never".to_owned(),
            };
            let state = match status.state(s) {
                State::Parked(why) => format!(
                    "PARKED ({why}): fix, then `rotor recover --cred {}`",
                    s.cred
                ),
                State::InUse(holder) => format!("in use by {holder}"),
                State::Open => "OPEN: run `rotor recover`".to_owned(),
                State::Stuck => format!(
                    "STUCK: check the account, then `rotor enroll {}` its working secret or `rotor recover --cred {}`",
                    s.cred, s.cred
                ),
                State::CheckedOut(c) => format!("checked out ({})", c.holder_words()),
                State::Ok if f.is_stale() => {
                    format!("rotate it: `rotor rotate --scope cred:{}`", s.cred)
                }
                State::Ok => "ok".to_owned(),
                State::NoCurrentSecret => "no current secret".to_owned(),
            };
            let verified = match ops::status::last_verified(s) {
                Some((at, by)) => format!("{} ({})", at.format("%Y-%m-%d %H:%M"), by.as_str()),
                None => "never".to_owned(),
            };
            [s.cred.to_string(), age, last, verified, state]
        })
        .collect();
    if selection.is_some() {
        outln!("{} credentials in scope.\n", rows.len());
    } else {
        outln!("{} credentials in the vault.\n", rows.len());
    }
    out!(
        "{}",
        table(
            &[
                "CREDENTIAL",
                "AGE",
                "LAST ROTATION (UTC)",
                "LAST VERIFIED (UTC)",
                "STATE"
            ],
            &rows
        )
    );
    let n_stale = status.freshness.iter().filter(|f| f.is_stale()).count();
    if n_stale > 0 {
        outln!(
            "\n{n_stale} credential(s) are older than their policy's max_age: rotate them (`rotor rotate -i FILE --scope ...`)."
        );
    }
    let names = |c: &[crate::credential::CredentialId]| {
        c.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !status.missing.is_empty() {
        outln!(
            "\nThe inventory lists {} credential(s) the vault holds no secret for (never rotated nor enrolled): {}",
            status.missing.len(),
            names(&status.missing)
        );
    }
    if !status.never_rotated.is_empty() {
        outln!(
            "\n{} credential(s) hold a secret enrolled by hand that no rotation replaced (rotor neither generated nor proved it): {}",
            status.never_rotated.len(),
            names(&status.never_rotated)
        );
    }
    if !status.missing.is_empty() || !status.never_rotated.is_empty() {
        outln!("Rotate them: `rotor rotate -i {file} --scope cred:HOST/ACCOUNT`.");
    }
    if !status.unlisted.is_empty() {
        // rotor has no command that forgets a credential: list them only.
        outln!(
            "\n{} credential(s) in the vault are not in {file} (a host or account removed from it?): {}",
            status.unlisted.len(),
            names(&status.unlisted)
        );
    }
    if !status.bootstrap.is_empty() {
        outln!(
            "\n{} host(s) still accept the inventory's connect key file (the key rotor first logs in with):",
            status.bootstrap.len()
        );
        let rows: Vec<[String; 3]> = status
            .bootstrap
            .iter()
            .map(|b| [b.host.clone(), b.key_file.clone(), b.why.clone()])
            .collect();
        out!("{}", table(&["HOST", "KEY FILE", "WHY"], &rows));
    }
    if let Some(run) = &status.last_run {
        let end = ops::rotate::RunEnd::of(run);
        let how = match (&run.ended_at, end.not_committed) {
            (None, _) => "has not recorded its end".to_owned(),
            (Some(_), Some(left)) if !left.is_empty() => format!(
                "{} credential(s) not committed: `rotor rotate -i {} --retry-failed --run {}`",
                left.len(),
                if file.is_empty() { "FILE" } else { &file },
                run.id
            ),
            (Some(_), Some(_)) => "every credential committed".to_owned(),
            (Some(_), None) => "ended".to_owned(),
        };
        outln!(
            "\nLast rotate run: {} at {} UTC ({}): {how}.",
            run.id,
            run.started_at.format("%Y-%m-%d %H:%M"),
            crate::text::escape(&run.scope)
        );
    }
    if inventory.is_none() && !status.credentials.is_empty() {
        eprintln!("(give -i FILE to check ages against the policies' max_age)");
    }
    outln!("\n{}", crate::text::escape(&status.summary_line()));
    Ok(code)
}

//! `rotor status`: call [`ops::status`](crate::ops::status) (every credential in the vault,
//! its age by the context's clock, its last rotation and state) and print it.

use std::path::PathBuf;

use clap::Args;

use super::context;
use super::{CliResult, Global, OutputFormat};
use crate::ops::{
    self,
    status::{Freshness, State},
};
use crate::report::table;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The inventory (YAML): with it, each credential's age is checked against its policy's
    /// `max_age` (stale: rotate it), and credentials it lists that the vault lacks are shown.
    #[arg(short, long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// For monitoring: exit 3 when anything is stale or missing, 4 when an operator is
    /// needed (parked, or a rotation left open), 0 otherwise.
    #[arg(long)]
    pub check: bool,
    /// `text` for people, `json` for programs.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
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
    let session = context::open(g)?;
    let status = ops::status::status(&session.ctx, inventory.as_ref())?;
    let code = if a.check { status.check_code() } else { 0 };
    if a.output == OutputFormat::Json {
        outln!("{}", serde_json::to_string_pretty(&status.to_json())?);
        return Ok(code);
    }
    let rows: Vec<[String; 4]> = status
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
            [s.cred.to_string(), age, last, state]
        })
        .collect();
    outln!("{} credentials in the vault.\n", rows.len());
    out!(
        "{}",
        table(
            &["CREDENTIAL", "AGE", "LAST ROTATION (UTC)", "STATE"],
            &rows
        )
    );
    let n_stale = status.freshness.iter().filter(|f| f.is_stale()).count();
    if n_stale > 0 {
        outln!(
            "\n{n_stale} credential(s) are older than their policy's max_age: rotate them (`rotor rotate -i FILE --scope ...`)."
        );
    }
    if !status.missing.is_empty() {
        outln!(
            "\nThe inventory lists {} credential(s) the vault holds no secret for (never rotated nor enrolled): {}",
            status.missing.len(),
            status
                .missing
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
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
    if inventory.is_none() && !status.credentials.is_empty() {
        eprintln!("(give -i FILE to check ages against the policies' max_age)");
    }
    Ok(code)
}

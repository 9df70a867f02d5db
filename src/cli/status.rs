//! `rotor status`: call [`ops::status`](crate::ops::status) (every credential in the vault,
//! its age by the context's clock, its last rotation and state) and print it.

use clap::Args;

use super::context;
use super::{CliResult, Global, OutputFormat};
use crate::ops::{self, status::State};
use crate::report::table;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// `text` for people, `json` for programs.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

pub fn run(g: &Global, a: StatusArgs) -> CliResult {
    let session = context::open(g)?;
    let status = ops::status::status(&session.ctx)?;
    if a.output == OutputFormat::Json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "schema_version": crate::report::SCHEMA_VERSION,
                "credentials": status.credentials,
            }))?
        );
        return Ok(0);
    }
    let rows: Vec<[String; 4]> = status
        .credentials
        .iter()
        .map(|s| {
            let age = match status.age(s) {
                Some(d) => {
                    if d.num_days() > 0 {
                        format!("{}d", d.num_days())
                    } else if d.num_hours() > 0 {
                        format!("{}h", d.num_hours())
                    } else {
                        format!("{}m", d.num_minutes())
                    }
                }
                None => "-".to_owned(),
            };
            let last = match &s.last_rotation {
                Some(r) => format!("{} {}", r.phase, r.at.format("%Y-%m-%d %H:%M")),
                None => "never".to_owned(),
            };
            let state = match ops::status::state(s) {
                State::Parked(why) => format!(
                    "PARKED ({why}): fix, then `rotor recover --cred {}`",
                    s.cred
                ),
                State::InUse(holder) => format!("in use by {holder}"),
                State::Open => "OPEN: run `rotor recover`".to_owned(),
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
    Ok(0)
}

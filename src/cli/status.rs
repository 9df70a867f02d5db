//! `rotor status`: every credential in the vault, its age and its last rotation.

use clap::Args;

use super::output::open_vault;
use super::{CliResult, Global, OutputFormat};
use crate::report::table;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// `text` for people, `json` for programs.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

pub fn run(g: &Global, a: StatusArgs) -> CliResult {
    let vault = open_vault(g)?;
    let status = vault.status()?;
    if a.output == OutputFormat::Json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "schema_version": crate::report::SCHEMA_VERSION,
                "credentials": status,
            }))?
        );
        return Ok(0);
    }
    let now = chrono::Utc::now();
    let rows: Vec<[String; 4]> = status
        .iter()
        .map(|s| {
            let age = match s.current_since {
                Some(t) => {
                    let d = now - t;
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
            let state = if let Some(why) = &s.parked {
                format!(
                    "PARKED ({why}): fix, then `rotor recover --cred {}`",
                    s.cred
                )
            } else if let Some(holder) = &s.lease_holder {
                format!("in use by {holder}")
            } else if s.open_rotation {
                "OPEN: run `rotor recover`".to_owned()
            } else if s.has_current {
                "ok".to_owned()
            } else {
                "no current secret".to_owned()
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

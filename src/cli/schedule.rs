//! `rotor schedule explain "EXPR" [--timezone TZ] [--from TIME]`: what a crontab schedule
//! means and its next five times, in the zone and in UTC. Needs no vault and no inventory.

use clap::{Args, Subcommand};

use super::{CliResult, OutputFormat, usage};
use crate::schedule::{Schedule, parse_timezone};

/// How many times `explain` shows.
const N_SHOWN: usize = 5;

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Say what a crontab schedule means and print its next five times.
    Explain(ExplainArgs),
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// A crontab schedule: five fields (minute hour day-of-month month day-of-week;
    /// weekday 0 or 7 = Sunday, 1 = Monday) or @hourly, @daily, @weekly, @monthly, @yearly.
    pub expr: String,
    /// An IANA time zone, e.g. Asia/Tokyo [default: this machine's]
    #[arg(long, value_name = "TZ")]
    pub timezone: Option<String>,
    /// Count from this time (RFC 3339, e.g. 2026-12-01T09:00:00+09:00) [default: now]
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

pub fn run(command: ScheduleCommand) -> CliResult {
    match command {
        ScheduleCommand::Explain(a) => explain(a),
    }
}

fn explain(a: ExplainArgs) -> CliResult {
    let schedule = Schedule::parse(&a.expr)
        .map_err(|e| usage(format!("schedule \"{}\": {e}", a.expr.trim())))?;
    let (tz, zone_source) = match &a.timezone {
        Some(name) => (parse_timezone(name).map_err(usage)?, ""),
        None => (crate::clock::machine_timezone(), " (this machine's)"),
    };
    let from = match &a.from {
        None => super::output::clock().now(),
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .map_err(|e| {
                usage(format!(
                    "--from \"{text}\" is not a time ({e}): write RFC 3339, e.g. \
                     2026-12-01T09:00:00+09:00 or 2026-12-01T00:00:00Z"
                ))
            })?
            .with_timezone(&chrono::Utc),
    };
    let times = schedule.upcoming(from, tz, N_SHOWN);
    let local = |t: &chrono::DateTime<chrono::Utc>| {
        t.with_timezone(&tz)
            .format("%Y-%m-%d %a %H:%M %Z")
            .to_string()
    };
    let utc = |t: &chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %a %H:%M UTC").to_string();
    match a.output {
        OutputFormat::Json => {
            let next: Vec<serde_json::Value> = times
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "local": t.with_timezone(&tz).to_rfc3339(),
                        "utc": t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    })
                })
                .collect();
            outln!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "schedule": schedule.as_str(),
                    "meaning": schedule.describe(),
                    "timezone": tz.name(),
                    "from": from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "next": next,
                }))?
            );
        }
        OutputFormat::Text => {
            outln!("schedule:  {}", crate::text::escape(schedule.as_str()));
            outln!("meaning:   {} ({})", schedule.describe(), tz.name());
            outln!("time zone: {}{zone_source}", tz.name());
            if times.is_empty() {
                outln!(
                    "no times after {}: rotor computes schedules up to 2100",
                    utc(&from)
                );
            } else {
                outln!("next {} after {}:", times.len(), utc(&from));
                for t in &times {
                    outln!("  {}   {}", local(t), utc(t));
                }
            }
        }
    }
    Ok(0)
}

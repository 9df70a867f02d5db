//! `rotor audit verify [--heads FILE] | audit head | audit log [filters]`: the hash-chained
//! audit log, checked and read. The chain walk, the heads check and the filters are the
//! store's (`store::audit`); this module parses, calls the vault and prints.

use std::io::BufReader;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};

use super::output::open_vault;
use super::{CliResult, Failure, Global, OutputFormat, usage};
use crate::credential::CredentialId;
use crate::report::table;
use crate::store::StoreError;
use crate::store::audit::{self, Filter, RecordedHead, TimeArg, parse_time};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the audit log's hash chain; exit 1 naming the entry that breaks it.
    Verify(VerifyArgs),
    /// Print the head of the audit log (`seq=N hash=HEX`), to keep somewhere else.
    Head(HeadArgs),
    /// Who did what, when, to which credential (the responsible person's review).
    Log(LogArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Also check heads recorded elsewhere: every line of FILE holding `seq=N hash=HEX` (the
    /// lines of `journalctl -t rotor`, or of `rotor audit head`) must name an entry of the
    /// chain with that hash. `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    pub heads: Option<PathBuf>,
    /// `text` for people, `json` for programs.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct HeadArgs {
    /// `text` (`seq=N hash=HEX`) or `json`.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Entries at or after T: RFC 3339 (`2026-03-05T09:00:00+09:00`) or a day (`2026-03-05`,
    /// from its start, UTC).
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub since: Option<TimeArg>,
    /// Entries before T: RFC 3339, or a day (`2026-03-05`: up to its end, UTC).
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub until: Option<TimeArg>,
    /// Entries about this credential (HOST/ACCOUNT).
    #[arg(long, value_name = "C")]
    pub cred: Option<String>,
    /// Entries by this person (the first word of the actor: `alice` matches `alice (via sudo ...)`).
    #[arg(long, value_name = "U")]
    pub actor: Option<String>,
    /// Entries of this ticket (checkout events carry one).
    #[arg(long, value_name = "T")]
    pub ticket: Option<String>,
    /// `text` (a table) for people, `json` (one object per line) for programs.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

pub fn run(g: &Global, c: AuditCommand) -> CliResult {
    match c {
        AuditCommand::Verify(a) => verify(g, a),
        AuditCommand::Head(a) => head(g, a),
        AuditCommand::Log(a) => log(g, a),
    }
}

fn verify(g: &Global, a: VerifyArgs) -> CliResult {
    let this_vault = crate::store::syslog::vault_name(&super::output::data_dir(g)?);
    let heads = a
        .heads
        .as_ref()
        .map(|path| read_heads(path, &this_vault))
        .transpose()?;
    let vault = open_vault(g)?;
    let result = match &heads {
        Some((source, heads)) => vault.audit_verify_heads(heads, source),
        None => vault.audit_verify(),
    };
    let verified = match result {
        Ok(verified) => verified,
        Err(StoreError::AuditTampered { seq, reason }) if a.output == OutputFormat::Json => {
            outln!(
                "{}",
                serde_json::json!({ "verifies": false, "entry": seq, "reason": reason })
            );
            return Err(StoreError::AuditTampered { seq, reason }.into());
        }
        Err(e) => return Err(e.into()),
    };
    let n_heads = heads.as_ref().map(|(_, h)| h.len());
    if a.output == OutputFormat::Json {
        outln!(
            "{}",
            serde_json::json!({
                "verifies": true,
                "n_entries": verified.n_entries,
                "head": verified.head,
                "n_heads_checked": n_heads,
            })
        );
        return Ok(0);
    }
    let head = verified
        .head
        .as_ref()
        .map_or_else(String::new, |h| format!(", head {h}"));
    out!(
        "the audit log verifies: {} entries{head}",
        verified.n_entries
    );
    match (&heads, n_heads) {
        (Some((source, _)), Some(n)) => outln!(
            ", and holds the {n} head(s) recorded in {}",
            crate::text::escape(source)
        ),
        _ => outln!(),
    }
    Ok(0)
}

/// The heads in FILE (or standard input for `-`), with the name errors give the file.
/// A file with none is refused: checking nothing must not look like a pass.
fn read_heads(path: &PathBuf, this_vault: &str) -> Result<(String, Vec<RecordedHead>), Failure> {
    let stdin = path.as_os_str() == "-";
    let source = if stdin {
        "standard input".to_owned()
    } else {
        path.display().to_string()
    };
    let cannot_read = |e: std::io::Error| {
        anyhow::anyhow!(
            "cannot read the heads file {source}: {e}; name a readable file of lines holding `seq=N hash=HEX`"
        )
    };
    let mut heads = if stdin {
        audit::heads_in(std::io::stdin().lock(), this_vault).map_err(cannot_read)?
    } else {
        let file = std::fs::File::open(path).map_err(cannot_read)?;
        audit::heads_in(BufReader::new(file), this_vault).map_err(cannot_read)?
    };
    // The same head copied many times (a journal keeps every one) is checked once.
    heads.sort_by(|a, b| {
        (a.head.seq, &a.head.hash, a.line).cmp(&(b.head.seq, &b.head.hash, b.line))
    });
    heads.dedup_by(|later, first| later.head == first.head);
    heads.sort_by_key(|h| h.line);
    if heads.is_empty() {
        return Err(anyhow::anyhow!(
            "no line of {source} holds an audit head (`seq=N hash=HEX`): give the lines rotor sent to the system log (`journalctl -t rotor`) or printed with `rotor audit head`"
        )
        .into());
    }
    Ok((source, heads))
}

fn head(g: &Global, a: HeadArgs) -> CliResult {
    let vault = open_vault(g)?;
    // A head copied elsewhere vouches for the log up to it: only a log that verifies has one.
    let verified = vault.audit_verify()?;
    let Some(head) = verified.head else {
        return Err(anyhow::anyhow!("the audit log is empty: there is no head to print").into());
    };
    match a.output {
        OutputFormat::Json => outln!("{}", serde_json::to_string(&head)?),
        OutputFormat::Text => outln!("{head}"),
    }
    Ok(0)
}

fn log(g: &Global, a: LogArgs) -> CliResult {
    let cred = a
        .cred
        .as_deref()
        .map(|c| CredentialId::parse(c).map(|c| c.to_string()))
        .transpose()
        .map_err(usage)?;
    let filter = Filter {
        since: a.since.map(TimeArg::start),
        until: a.until.map(TimeArg::end),
        cred,
        actor: a.actor,
        ticket: a.ticket,
    };
    if let (Some(since), Some(until)) = (filter.since, filter.until)
        && since >= until
    {
        return Err(usage("--since must be before --until"));
    }
    let vault = open_vault(g)?;
    let records = vault.audit_log(&filter)?;
    if a.output == OutputFormat::Json {
        for record in &records {
            outln!("{}", serde_json::to_string(record)?);
        }
        return Ok(0);
    }
    if records.is_empty() {
        outln!("No audit entries match.");
        return Ok(0);
    }
    let rows: Vec<[String; 6]> = records
        .iter()
        .map(|r| {
            let at = DateTime::parse_from_rfc3339(&r.at).map_or_else(
                |_| r.at.clone(),
                |t| {
                    t.with_timezone(&Utc)
                        .format("%Y-%m-%d %H:%M:%S")
                        .to_string()
                },
            );
            [
                r.seq.to_string(),
                at,
                r.actor.clone(),
                r.event.clone(),
                r.cred.clone().unwrap_or_else(|| "-".to_owned()),
                r.describe(),
            ]
        })
        .collect();
    // `table` escapes every cell: actors, credentials and reasons come from outside.
    out!(
        "{}",
        table(
            &["SEQ", "TIME (UTC)", "ACTOR", "EVENT", "CREDENTIAL", "WHAT"],
            &rows
        )
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc_3339_or_whole_days() {
        let utc = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let check = |text: &str, start: &str, end: &str| {
            let t = parse_time(text).unwrap();
            assert_eq!((t.start(), t.end()), (utc(start), utc(end)), "{text}");
        };
        check("2026-03-05", "2026-03-05T00:00:00Z", "2026-03-06T00:00:00Z");
        check(
            "2026-03-05T09:00:00+09:00",
            "2026-03-05T00:00:00Z",
            "2026-03-05T00:00:00Z",
        );
        for bad in ["yesterday", "2026-13-01", "2026-03-05 09:00", ""] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}

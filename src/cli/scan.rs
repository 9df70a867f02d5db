//! `rotor scan`: parse the arguments, read the candidates file, call
//! [`ops::scan`](crate::ops::scan) (read-only: every selected host and directory read once),
//! print the findings. Exit 0 when nothing above `info` was found, 3 otherwise.
//!
//! The candidates file holds known passwords: it is read into `Secret`s (zeroized), never
//! logged, and no message names a line of it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::context;
use super::rotate::{Resolved, Selection, resolve};
use super::{CliResult, Failure, Global, OutputFormat};
use crate::ops;
use crate::ops::scan::ScanRequest;
use crate::report::table;
use crate::scan::ScanReport;
use crate::secret::Secret;
use crate::text::escape;

#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 when nothing above `info` was found, 3 when there are \
findings (shared, unmanaged, stale, empty or known passwords, shared keys), 1 on error."
)]
pub struct ScanArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// A file of known passwords (vendor defaults), one a line, checked locally against the
    /// hashes read (never by a login). At most 1 MiB; its lines are never shown.
    #[arg(long, value_name = "FILE")]
    pub candidates: Option<PathBuf>,
    /// Hosts read at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// Deadline of each SSH or LDAP step (connect, handshake, each command), in seconds.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub step_timeout: u64,
    /// Also write the report as one self-contained HTML file (a summary in plain words, a
    /// host-by-account grid coloured by shared password, an age chart, the findings) for
    /// the person responsible. It holds no password, hash or salt.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
    /// `text` for people, `json` for programs.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Writes the HTML report whole or not at all: a temporary file beside it, then a rename
/// (a reader never sees half a report; an existing report is replaced).
fn write_report(path: &Path, html: &str) -> Result<(), Failure> {
    use std::io::Write as _;
    let cannot = |e: std::io::Error| {
        Failure::from(anyhow::anyhow!(
            "cannot write the report {}: {e}; give --report a path in a directory you can write",
            path.display()
        ))
    };
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(name);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(html.as_bytes())?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(cannot(e));
    }
    Ok(())
}

/// Most bytes of a candidates file.
const MAX_CANDIDATES_BYTES: usize = 1 << 20;

pub fn run(g: &Global, mut a: ScanArgs) -> CliResult {
    // A scan changes nothing, so no scope means the whole inventory.
    if a.selection.scopes.is_empty() {
        a.selection.all = true;
    }
    let candidates = match &a.candidates {
        Some(path) => read_candidates(path)?,
        None => Vec::new(),
    };
    let Resolved { inv, selected, .. } = resolve(&a.selection)?;
    let session = context::open(g)?;
    let req = ScanRequest {
        inventory: &inv,
        selection: selected,
        concurrency: a.concurrency as usize,
        step_timeout: Duration::from_secs(a.step_timeout),
        candidates,
    };
    // No shutdown future: an interrupt stops `rotor scan` at once; it changed nothing.
    let report = ops::scan::scan(&session.ctx, req, std::future::pending())?;
    if let Some(path) = &a.report {
        write_report(path, &crate::scan::html::render(&report))?;
        eprintln!("rotor: the report is in {}", path.display());
    }
    match a.output {
        OutputFormat::Json => outln!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Text => out!("{}", text(&report)),
    }
    Ok(report.exit_code())
}

/// The readable form: what was read, a line per finding (most severe first) with its advice,
/// then the targets not read.
fn text(r: &ScanReport) -> String {
    let mut s = format!(
        "Scanned {} hosts and {} directories: {} accounts, {} with a password or key.\n",
        r.n_hosts,
        r.n_directories,
        r.n_accounts,
        r.credentials.len()
    );
    s.push_str(&sessions_text(r));
    if r.findings.is_empty() {
        s.push_str("No shared, unmanaged, stale or empty credential found.\n");
    }
    for f in &r.findings {
        let severity = serde_json::to_value(f.severity)
            .ok()
            .and_then(|v| v.as_str().map(str::to_uppercase))
            .unwrap_or_default();
        s.push_str(&format!("\n{severity}: {}\n", escape(&f.summary)));
        let mut creds: Vec<String> = f
            .credentials
            .iter()
            .map(|c| escape(c).into_owned())
            .collect();
        const SHOWN: usize = 20;
        if creds.len() > SHOWN {
            let rest = creds.len() - SHOWN;
            creds.truncate(SHOWN);
            creds.push(format!("and {rest} more (--output json lists them all)"));
        }
        s.push_str(&format!("  {}\n", creds.join(", ")));
        if let Some(g) = &f.group {
            s.push_str(&format!("  group {}\n", g.0));
        }
        s.push_str(&format!("  what to do: {}\n", escape(&f.advice)));
    }
    if !r.unreachable.is_empty() {
        s.push('\n');
        let rows: Vec<[String; 2]> = r
            .unreachable
            .iter()
            .map(|u| [u.target.clone(), u.error.clone()])
            .collect();
        s.push_str(&table(&["NOT READ", "WHY"], &rows));
    }
    s
}

/// Sessions listed on the summary line before "and N more".
const SESSIONS_SHOWN: usize = 20;

/// One line of who was logged in when the hosts were read (`HOST/ACCOUNT (TTY from FROM)`),
/// and one per host whose sessions could not be read. Escaped: the host's words.
fn sessions_text(r: &ScanReport) -> String {
    let mut s = String::new();
    let all: Vec<String> = r
        .sessions
        .iter()
        .flat_map(|h| {
            h.sessions.iter().map(move |x| {
                let mut where_ = vec![x.line.clone()];
                if !x.from.is_empty() {
                    where_.push(format!("from {}", x.from));
                }
                escape(&format!("{}/{} ({})", h.host, x.account, where_.join(" "))).into_owned()
            })
        })
        .collect();
    if !all.is_empty() {
        let n = all.len();
        let mut shown: Vec<String> = all.into_iter().take(SESSIONS_SHOWN).collect();
        if n > SESSIONS_SHOWN {
            shown.push(format!(
                "and {} more (--output json lists them all)",
                n - SESSIONS_SHOWN
            ));
        }
        s.push_str(&format!(
            "Logged in now: {} {}.\n",
            crate::report::plural(n, "session:", "sessions:"),
            shown.join(", ")
        ));
    }
    for h in &r.sessions {
        if let Some(why) = &h.unread {
            s.push_str(&format!(
                "Sessions on {} not (all) read: {}\n",
                escape(&h.host),
                escape(why)
            ));
        }
    }
    s
}

/// Reads the candidates file: a regular file (opened non-blocking, so a FIFO is refused at
/// once) of at most 1 MiB, one password a line (a trailing `\r` dropped, empty lines skipped).
/// Every message names the file, never its contents.
fn read_candidates(path: &Path) -> Result<Vec<Secret>, Failure> {
    let bytes = super::output::read_secret_file(
        "--candidates",
        path,
        "give a file of candidate passwords, one a line",
        MAX_CANDIDATES_BYTES,
        |_| format!("it is larger than {MAX_CANDIDATES_BYTES} bytes; split it"),
    )?;
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        super::output::file_problem(
            "--candidates",
            path,
            "it is not UTF-8 text; write one password a line",
        )
    })?;
    Ok(text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.is_empty())
        .map(|l| Secret::new(l.to_owned()))
        .collect())
}

//! Shared plumbing for subcommands: logging setup, the data directory and key source, opening
//! the vault, progress bars.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing_subscriber::EnvFilter;

use super::{Failure, Global, KeySourceArg, OutputFormat};
use crate::store::{KeySource, StoreError, Vault};

/// Turns off core dumps (`RLIMIT_CORE` 0, soft and hard, so no child can raise it again)
/// and makes the process undumpable (`PR_SET_DUMPABLE` 0): the kernel then writes no core
/// even for a core pattern that pipes to a program, and other processes of the same user
/// can neither ptrace rotor nor read its `/proc/PID/mem`. rotor holds decrypted secrets and
/// the vault's data key in memory (DESIGN.md invariant 8). Fails rather than runs without.
pub fn harden_process() -> Result<(), String> {
    use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};
    let zero = Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    setrlimit(Resource::Core, zero)
        .map_err(|e| format!("cannot turn off core dumps (setrlimit RLIMIT_CORE: {e}); rotor does not run where a crash could write its memory to disk"))?;
    set_dumpable_behavior(DumpableBehavior::NotDumpable).map_err(|e| {
        format!("cannot make rotor undumpable (prctl PR_SET_DUMPABLE: {e}); rotor does not run where its memory could be dumped or traced")
    })
}

/// Logs go to stderr. `ROTOR_LOG` (a tracing filter) wins; else warnings, or more with -v.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_env("ROTOR_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// `--data-dir`, else `$ROTOR_DATA_DIR` (both handled by clap), else the XDG data directory.
pub fn data_dir(g: &Global) -> Result<PathBuf, Failure> {
    if let Some(d) = &g.data_dir {
        return Ok(d.clone());
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("rotor"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/rotor")),
        None => Err(super::usage(
            "cannot find a data directory: set --data-dir or ROTOR_DATA_DIR",
        )),
    }
}

pub fn key_source(g: &Global, data_dir: &std::path::Path) -> KeySource {
    match g.key_source {
        KeySourceArg::File => KeySource::File(
            g.key_file
                .clone()
                .unwrap_or_else(|| data_dir.join("master.key")),
        ),
        KeySourceArg::Keyring => KeySource::Keyring {
            service: "rotor".to_owned(),
            user: data_dir.display().to_string(),
        },
    }
}

pub fn open_vault(g: &Global) -> Result<Arc<Vault>, Failure> {
    let dir = data_dir(g)?;
    let source = key_source(g, &dir);
    match Vault::open(&dir, source) {
        Ok(v) => Ok(Arc::new(v.with_clock(clock()))),
        // Database-level failures do not know the path; name it for the operator.
        Err(e @ (StoreError::Unwritable(_) | StoreError::Db(_))) => Err(anyhow::Error::new(e)
            .context(format!("cannot open the vault in {}", dir.display()))
            .into()),
        Err(e) => Err(e.into()),
    }
}

/// The clock every command runs with: the system's. Lab builds (feature `lab`) read
/// `ROTOR_LAB_CLOCK_OFFSET_SECS` and run that many seconds ahead, so a lab test can let a
/// checkout expire while no rotor runs without waiting for it; release builds lack it.
pub fn clock() -> Arc<dyn crate::clock::Clock> {
    #[cfg(feature = "lab")]
    if let Some(secs) = std::env::var("ROTOR_LAB_CLOCK_OFFSET_SECS")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
    {
        return Arc::new(crate::clock::OffsetClock(chrono::Duration::seconds(secs)));
    }
    Arc::new(crate::clock::SystemClock)
}

/// What became of stdout: 0 open, [`BROKEN_PIPE`] its reader has gone, [`WRITE_FAILED`]
/// another error. Once not open, later output is dropped.
static STDOUT_STATE: AtomicU8 = AtomicU8::new(0);
const BROKEN_PIPE: u8 = 1;
const WRITE_FAILED: u8 = 2;

/// Writes data to stdout (the `out!` and `outln!` macros). When the reader has gone
/// (`rotor status | head`), the rest of the output is dropped and the command finishes its
/// work (a run still records its end); any other write failure (a full disk behind `>`) is
/// reported once on stderr. [`stdout_exit_code`] then tells `main` how to exit.
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if STDOUT_STATE.load(Ordering::Relaxed) != 0 {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            STDOUT_STATE.store(BROKEN_PIPE, Ordering::Relaxed);
        } else {
            STDOUT_STATE.store(WRITE_FAILED, Ordering::Relaxed);
            eprintln!("error: cannot write to standard output: {e}");
        }
    }
}

/// The exit code for a command that otherwise succeeded but whose output did not all arrive:
/// 141 (what a process killed by SIGPIPE reports) when the reader went away, 1 when writing
/// failed; `None` when stdout took everything.
pub fn stdout_exit_code() -> Option<i32> {
    match STDOUT_STATE.load(Ordering::Relaxed) {
        BROKEN_PIPE => Some(141),
        WRITE_FAILED => Some(1),
        _ => None,
    }
}

/// Where results go: text or JSON on stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Output {
    pub format: OutputFormat,
}

impl Output {
    pub fn new(format: OutputFormat) -> Output {
        Output { format }
    }

    /// A progress bar on stderr when it is a terminal and the output is for people; hidden
    /// otherwise.
    pub fn progress(&self, len: usize, what: &str) -> ProgressBar {
        if self.format == OutputFormat::Json || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
        // The template is a constant; a parse failure would be a build defect.
        let style = ProgressStyle::with_template(
            "{spinner} {prefix} [{bar:30}] {pos}/{len} {rate} eta {eta} {wide_msg}",
        )
        .expect("valid progress template")
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(&rate_words(state.per_sec()));
            },
        )
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(what.to_owned());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    }
}

/// A progress bar an operation drives ([`crate::ops::Progress`]): made once the operation
/// knows how many credentials it reports on, hidden where [`Output::progress`] says.
pub struct Bar {
    out: Output,
    what: &'static str,
    bar: std::sync::OnceLock<ProgressBar>,
    /// Whether a credential's note (how it ended, when not plainly) is shown beside the bar.
    notes: bool,
    /// Credentials that did not end plainly (a note came with them), and the run's phase:
    /// both in the bar's prefix.
    failed: std::sync::atomic::AtomicUsize,
    phase: std::sync::Mutex<Option<String>>,
}

/// A rate as a person reads it: `12/s`, `2.5/s` below ten, `40/min` below one a second.
fn rate_words(per_sec: f64) -> String {
    if !per_sec.is_finite() || per_sec <= 0.0 {
        String::new()
    } else if per_sec < 1.0 {
        format!("{:.0}/min", per_sec * 60.0)
    } else if per_sec < 10.0 {
        format!("{per_sec:.1}/s")
    } else {
        format!("{per_sec:.0}/s")
    }
}

/// The bar's prefix: what runs, its phase, and how many failed so far.
fn prefix_words(what: &str, phase: Option<&str>, failed: usize) -> String {
    let mut prefix = what.to_owned();
    if let Some(phase) = phase {
        prefix.push_str(&format!(" ({phase})"));
    }
    if failed > 0 {
        prefix.push_str(&format!(", {failed} failed"));
    }
    prefix
}

impl Bar {
    pub fn new(out: Output, what: &'static str, notes: bool) -> Arc<Bar> {
        Arc::new(Bar {
            out,
            what,
            bar: std::sync::OnceLock::new(),
            notes,
            failed: std::sync::atomic::AtomicUsize::new(0),
            phase: std::sync::Mutex::new(None),
        })
    }

    fn show_prefix(&self) {
        if let Some(bar) = self.bar.get() {
            let phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
            bar.set_prefix(prefix_words(
                self.what,
                phase.as_deref(),
                self.failed.load(Ordering::Relaxed),
            ));
        }
    }

    /// Takes the bar off the terminal (before the report is printed).
    pub fn finish(&self) {
        if let Some(bar) = self.bar.get() {
            bar.finish_and_clear();
        }
    }
}

impl crate::ops::Progress for Bar {
    fn start(&self, total: usize) {
        let _ = self.bar.set(self.out.progress(total, self.what));
    }
    fn done(&self, cred: &crate::credential::CredentialId, note: Option<&str>) {
        if note.is_some() {
            self.failed.fetch_add(1, Ordering::Relaxed);
            self.show_prefix();
        }
        if let Some(bar) = self.bar.get() {
            if let Some(note) = note.filter(|_| self.notes) {
                bar.set_message(format!("{cred}: {note}"));
            }
            bar.inc(1);
        }
    }
    fn phase(&self, phase: Option<&str>) {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner()) = phase.map(str::to_owned);
        self.show_prefix();
    }
}

/// What is wrong with a file given as `flag` on the command line: the flag, the file (escaped)
/// and `what`; never a byte of the file.
pub fn file_problem(flag: &str, path: &std::path::Path, what: &str) -> anyhow::Error {
    let shown = crate::text::escape(&path.display().to_string()).into_owned();
    anyhow::anyhow!("{flag} {shown}: {what}")
}

/// Reads a small file that holds secrets, given as `flag`: a regular file (opened
/// non-blocking, so a FIFO is refused at once rather than waited on, as `inventory::load`
/// does) of at most `limit` bytes, into a buffer that never grows (a reallocation would leave
/// an unzeroized copy); one byte more than the limit tells a file that grew since `metadata`.
/// `not_a_file` says what to give instead, `too_large(size)` words a file over the limit.
pub fn read_secret_file(
    flag: &str,
    path: &std::path::Path,
    not_a_file: &str,
    limit: usize,
    too_large: impl Fn(u64) -> String,
) -> Result<zeroize::Zeroizing<Vec<u8>>, Failure> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |what: String| file_problem(flag, path, &what);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| fail(format!("cannot open it: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| fail(format!("cannot read it: {e}")))?;
    if !meta.is_file() {
        return Err(fail(format!(
            "it is {}, not a file; {not_a_file}",
            crate::text::file_kind(&meta)
        ))
        .into());
    }
    if meta.len() > limit as u64 {
        return Err(fail(too_large(meta.len())).into());
    }
    let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(limit + 1));
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read it: {e}")))?;
    if bytes.len() > limit {
        return Err(fail(too_large(bytes.len() as u64)).into());
    }
    Ok(bytes)
}

/// Prints `value` with a `"secret"` field as one JSON line on stdout (`show -o json`, a
/// checkout's grant): the copies JSON needs are zeroized once printed.
pub fn print_json_with_secret(mut value: serde_json::Value, secret: &crate::secret::Secret) {
    use zeroize::Zeroize;
    // Room for the rest and the secret at its longest escaped (`\u00XX`: 6 bytes a byte),
    // so the buffer never grows: a reallocation would free an unzeroized copy.
    let room = value.to_string().len() + 6 * secret.expose().len() + 32;
    let mut copy = secret.expose().to_owned();
    value["secret"] = serde_json::Value::String(std::mem::take(&mut copy));
    let mut text = zeroize::Zeroizing::new(Vec::with_capacity(room));
    // Writing plain data into memory cannot fail.
    serde_json::to_writer(&mut *text, &value).expect("JSON into memory");
    if let Some(serde_json::Value::String(s)) = value.get_mut("secret") {
        s.zeroize();
    }
    write_stdout(format_args!("{}\n", String::from_utf8_lossy(&text)));
}

#[cfg(test)]
mod tests {
    use super::{prefix_words, rate_words};

    #[test]
    fn the_bar_says_a_rounded_rate_the_phase_and_the_failures() {
        let rates: Vec<String> = [0.0, 0.5, 2.345, 57.8, f64::INFINITY]
            .into_iter()
            .map(rate_words)
            .collect();
        assert_eq!(rates, ["", "30/min", "2.3/s", "58/s", ""]);
        assert_eq!(prefix_words("rotating", None, 0), "rotating");
        assert_eq!(
            prefix_words("rotating", Some("canary: 2 hosts"), 3),
            "rotating (canary: 2 hosts), 3 failed"
        );
    }
}

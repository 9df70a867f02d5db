//! The command line: argument definitions (clap derive), the shared plumbing (data directory,
//! key source, logging, output mode: `output`), the operations' context built in one place
//! (`context`) and one small module per subcommand: parse, call one `crate::ops` function,
//! print. `main` only maps the result to an exit code (DESIGN.md: 0 done, 1 error, 2 usage,
//! 3 partial, 4 stuck).
//!
//! Invariant: data goes to stdout, logs and progress to stderr; nothing here prints a secret
//! except `show`, on purpose, audited. Data goes through `out!`/`outln!`, never `print!`,
//! which panics when the reader has gone (`rotor status | head`).

/// `print!` to stdout through [`output::write_stdout`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::write_stdout(format_args!($($arg)*))
    };
}

/// `println!` to stdout through [`output::write_stdout`].
macro_rules! outln {
    () => {
        $crate::cli::output::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

mod audit;
mod checkout;
mod context;
mod enroll;
mod export;
mod init;
mod inventory_check;
mod inventory_import;
mod output;
mod plan;
mod playbook;
mod rotate;
mod scan;
mod schedule;
mod serve;
mod show;
mod status;
mod token;
mod verify;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use output::Output;

/// rotor: give every server and service account its own strong credential, prove it works,
/// and keep it encrypted and retrievable.
#[derive(Debug, Parser)]
#[command(name = "rotor", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Where the vault lives [default: $XDG_DATA_HOME/rotor or ~/.local/share/rotor]
    #[arg(long, global = true, env = "ROTOR_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where the master key comes from.
    #[arg(long, global = true, value_enum, default_value_t = KeySourceArg::File)]
    pub key_source: KeySourceArg,
    /// The master key file [default: DATA_DIR/master.key]
    #[arg(long, global = true, env = "ROTOR_KEY_FILE", value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// More log output on stderr (-v info, -vv debug). `ROTOR_LOG` takes a tracing filter.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeySourceArg {
    /// A key file created by `rotor init` (mode 0400). The server default.
    File,
    /// The OS keyring (workstations with a Secret Service).
    Keyring,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the vault and its master key.
    Init,
    /// Inventory tools.
    #[command(subcommand)]
    Inventory(InventoryCommand),
    /// Playbook tools.
    #[command(subcommand)]
    Playbook(playbook::PlaybookCommand),
    /// Store a credential's current secret, read from stdin (e.g. a password rotor did not set).
    Enroll(enroll::EnrollArgs),
    /// Show what would rotate and why; changes nothing and connects nowhere.
    Plan(plan::PlanArgs),
    /// Rotate credentials now: new secret, push, verify, commit (or roll back). First settles
    /// rotations that an earlier run left open anywhere in the inventory.
    Rotate(rotate::RotateArgs),
    /// Check that the stored credentials work (a login per credential).
    Verify(verify::VerifyArgs),
    /// Find shared, unmanaged, stale and empty credentials (read-only; exit 3 on findings).
    Scan(scan::ScanArgs),
    /// Settle rotations interrupted by a crash or a lost host.
    Recover(rotate::RecoverArgs),
    /// Age, last rotation and state of every credential in the vault.
    Status(status::StatusArgs),
    /// Print one credential's current secret (recorded in the audit log with the reason).
    Show(show::ShowArgs),
    /// Write every current credential to a file encrypted to an age public key (offline
    /// escrow: `age -d` recovers them without rotor).
    Export(export::ExportArgs),
    /// Check out one credential for a ticket and a time limit (break-glass access); with the
    /// policy's approval, another person approves first. It is rotated at check-in or expiry.
    Checkout(checkout::CheckoutArgs),
    /// Approve another person's pending checkout.
    Approve(checkout::ApproveArgs),
    /// Refuse another person's pending checkout (with the reason, recorded); nothing is shown.
    Refuse(checkout::RefuseArgs),
    /// End a checkout: the credential is rotated now and the checked-out secret stops working.
    Checkin(checkout::CheckinArgs),
    /// Pending, open and ending checkouts (`--all`: closed ones too).
    Checkouts(checkout::CheckoutsArgs),
    /// The audit log: `verify [--heads FILE]`, `head`, `log [filters]`.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// API tokens for `rotor serve`: `create --role R --name N`, `list`, `revoke ID`.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Schedule tools: `explain "EXPR"` says what a crontab schedule means and when it runs.
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// The daemon: rotates what its schedules make due, ends checkouts as they expire, and
    /// serves the HTTP API, the checkout page and Prometheus metrics.
    Serve(serve::ServeArgs),
}

#[derive(Debug, Subcommand)]
pub enum InventoryCommand {
    /// Validate an inventory, check the local files it names and print a summary; with
    /// `--connect`, also check every host and directory in scope (changing nothing).
    Check(inventory_check::CheckArgs),
    /// Convert another tool's inventory into a rotor inventory.
    #[command(subcommand)]
    Import(inventory_import::ImportCommand),
}

/// An error with the exit code it maps to, and (for `--output json`) a stable name of what
/// went wrong. `kind: None` is named from the error's type in `cli::main` (`error_code`).
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub kind: Option<&'static str>,
    pub error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure {
            code: 1,
            kind: None,
            error: e.into(),
        }
    }
}

impl Failure {
    /// An error with its exit code and its stable `code` for JSON output (snake_case, e.g.
    /// `preflight_failed`): scripts branch on it, so it never changes once released.
    pub fn coded(code: i32, kind: &'static str, error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code,
            kind: Some(kind),
            error: error.into(),
        }
    }
}

/// A duration on the command line (`--ttl 4h`), in the inventory's units (d, h, m).
fn duration_arg(s: &str) -> Result<std::time::Duration, String> {
    crate::inventory::parse_age(s)
        .map_err(|why| format!("`{s}` {why}: write a number and a unit, e.g. 90m, 4h or 30d"))
}

/// A usage error (exit code 2): the command line itself is wrong.
pub fn usage(msg: impl std::fmt::Display) -> Failure {
    Failure {
        code: 2,
        kind: Some("usage"),
        error: anyhow::anyhow!("{msg}"),
    }
}

pub type CliResult = Result<i32, Failure>;

/// Entry point: parse, run, map to an exit code.
pub fn main() -> i32 {
    // Before anything is read or decrypted: no core file may hold a secret or the data key.
    if let Err(e) = output::harden_process() {
        eprintln!("error: {e}");
        return 1;
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    // A daemon says what it does at info level; a command only what went wrong.
    let serving = matches!(cli.command, Command::Serve(_));
    output::init_logging(cli.global.verbose.max(u8::from(serving)));
    // A panic's message may quote a target's bytes (ldap3 panics on some malformed answers,
    // and the engine turns such a panic into a failed target): printed escaped and cut short,
    // never raw to the terminal.
    std::panic::set_hook(Box::new(|info| {
        let said = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let said: String = said.chars().take(200).collect();
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        // Never panic here (a closed stderr): a panic in the hook aborts the process.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "rotor: internal error{at}: {}",
            crate::text::escape(&said)
        );
    }));
    let code = match run(cli) {
        Ok(code) => code,
        Err(f) => {
            // Errors quote inventory values, targets' answers and file names: escaped.
            let message = format!("{:#}", f.error);
            eprintln!("error: {}", crate::text::escape_lines(&message));
            f.code
        }
    };
    match output::stdout_exit_code() {
        Some(stdout_code) if code == 0 => stdout_code,
        _ => code,
    }
}

pub fn run(cli: Cli) -> CliResult {
    let g = &cli.global;
    // Durable deadlines: a checkout that expired while no rotor ran is rotated before any
    // command that uses the vault does its own work. Not before `init` (no vault yet),
    // the inventory and playbook tools (no vault), `plan` (it connects nowhere), `audit`
    // (the review reads the log as it was found, and writes nothing to it) and `schedule`
    // (it computes times only); `serve` settles them in every pass of its own.
    if !matches!(
        cli.command,
        Command::Init
            | Command::Inventory(_)
            | Command::Playbook(_)
            | Command::Plan(_)
            | Command::Audit(_)
            | Command::Schedule(_)
            | Command::Serve(_)
    ) {
        checkout::settle(g);
    }
    match cli.command {
        Command::Init => init::run(g),
        Command::Inventory(InventoryCommand::Check(a)) => inventory_check::run(g, a),
        Command::Inventory(InventoryCommand::Import(c)) => inventory_import::run(c),
        Command::Playbook(c) => playbook::run(c),
        Command::Enroll(a) => enroll::run(g, a),
        Command::Plan(a) => plan::run(g, a),
        Command::Rotate(a) => rotate::run(g, a),
        Command::Verify(a) => verify::run(g, a),
        Command::Scan(a) => scan::run(g, a),
        Command::Recover(a) => rotate::recover(g, a),
        Command::Status(a) => status::run(g, a),
        Command::Show(a) => show::run(g, a),
        Command::Export(a) => export::run(g, a),
        Command::Checkout(a) => checkout::checkout(g, a),
        Command::Approve(a) => checkout::approve(g, a),
        Command::Refuse(a) => checkout::refuse(g, a),
        Command::Checkin(a) => checkout::checkin(g, a),
        Command::Checkouts(a) => checkout::list(g, a),
        Command::Audit(c) => audit::run(g, c),
        Command::Token(c) => token::run(g, c),
        Command::Schedule(c) => schedule::run(c),
        Command::Serve(a) => serve::run(g, a),
    }
}

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
mod docs;
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
/// What every `--help` ends with: how rotor's exit status reads.
const EXIT_CODES: &str = "\
Exit codes:
  0  done: everything asked for was done (or, for scan and status --check, nothing found)
  1  error: rotor could not do the work (the message says why and what to do)
  2  usage: the command line is wrong
  3  partial: some credentials were not rotated (old secrets in place), or problems found
  4  operator needed: a rotation is stuck or left open (run `rotor recover`)";

const EXAMPLES: &str = "\
Examples:
  rotor init
  rotor inventory import ansible hosts.ini --accounts svc_app,svc_backup -o inventory.yaml
  rotor inventory check -i inventory.yaml --connect
  rotor plan -i inventory.yaml --scope group:emr
  rotor rotate -i inventory.yaml --scope group:emr --reason INC-42
  rotor rotate -i inventory.yaml --retry-failed
  rotor status -i inventory.yaml --check
  rotor show emr-db-01/svc_app --reason \"vendor maintenance TICKET-7\"

  ROTOR_INVENTORY=inventory.yaml saves writing -i. --output json (-o json) gives JSON on every
  command (export and inventory import keep -o for the file they write).";

#[derive(Debug, Parser)]
#[command(
    name = "rotor",
    version,
    about,
    long_about = None,
    propagate_version = true,
    after_help = format!("{EXAMPLES}\n\n{EXIT_CODES}"),
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Where the vault lives [default: $XDG_DATA_HOME/rotor or ~/.local/share/rotor]
    #[arg(
        long,
        global = true,
        env = "ROTOR_DATA_DIR",
        value_name = "DIR",
        help_heading = "Global options"
    )]
    pub data_dir: Option<PathBuf>,
    /// Where the master key comes from.
    #[arg(long, global = true, value_enum, default_value_t = KeySourceArg::File, help_heading = "Global options")]
    pub key_source: KeySourceArg,
    /// The master key file [default: DATA_DIR/master.key]
    #[arg(
        long,
        global = true,
        env = "ROTOR_KEY_FILE",
        value_name = "FILE",
        help_heading = "Global options"
    )]
    pub key_file: Option<PathBuf>,
    /// More log output on stderr (-v info, -vv debug; `ROTOR_LOG` takes a tracing filter).
    /// rotate and recover reports then list each credential not rotated.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = "Global options")]
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
    Init(init::InitArgs),
    /// Inventory tools.
    #[command(subcommand)]
    Inventory(InventoryCommand),
    /// Playbook tools.
    #[command(subcommand)]
    Playbook(playbook::PlaybookCommand),
    /// Store a credential's current secret, read from stdin (e.g. a password rotor did not set).
    #[command(after_help = format!("Examples:\n  rotor enroll hospital-ldap/rotor < bind-password.txt\n  rotor enroll emr-db-01/deploy --ssh-key ~/.ssh/id_ed25519\n\n{EXIT_CODES}"))]
    Enroll(enroll::EnrollArgs),
    /// Show what would rotate and why; changes nothing and connects nowhere.
    #[command(after_help = format!("Examples:\n  rotor plan -i inventory.yaml --scope group:emr\n  rotor plan -i inventory.yaml --scope 'host:emr-*,!host:emr-db-01' -o json\n\n{EXIT_CODES}"))]
    Plan(plan::PlanArgs),
    /// Rotate credentials now: new secret, push, verify, commit (or roll back). First settles
    /// rotations that an earlier run left open anywhere in the inventory.
    #[command(after_help = format!("Examples:\n  rotor rotate -i inventory.yaml --scope group:emr --reason INC-42\n  rotor rotate -i inventory.yaml --all --canary 2 --max-failures 10% --yes --reason \"weekly\"\n  rotor rotate -i inventory.yaml --retry-failed\n  rotor rotate -i inventory.yaml --all --breach --reason INC-42\n\n{EXIT_CODES}"))]
    Rotate(rotate::RotateArgs),
    /// Check that the stored credentials work (a login per credential).
    #[command(after_help = format!("Examples:\n  rotor verify -i inventory.yaml --all\n  rotor verify -i inventory.yaml --scope group:emr -o json\n\n{EXIT_CODES}"))]
    Verify(verify::VerifyArgs),
    /// Find shared, unmanaged, stale and empty credentials (read-only; exit 3 on findings).
    #[command(after_help = format!("Examples:\n  rotor scan -i inventory.yaml --report scan.html\n  rotor scan -i inventory.yaml --candidates vendor-passwords.txt -o json\n\n{EXIT_CODES}"))]
    Scan(scan::ScanArgs),
    /// Settle rotations interrupted by a crash or a lost host.
    #[command(after_help = format!("Examples:\n  rotor recover -i inventory.yaml\n  rotor recover -i inventory.yaml --cred emr-db-01/svc_app\n\n{EXIT_CODES}"))]
    Recover(rotate::RecoverArgs),
    /// Age, last rotation and state of every credential in the vault.
    #[command(after_help = format!("Examples:\n  rotor status\n  rotor status -i inventory.yaml --check\n\n{EXIT_CODES}"))]
    Status(status::StatusArgs),
    /// Print one credential's current secret (recorded in the audit log with the reason).
    #[command(after_help = format!("Examples:\n  rotor show emr-db-01/svc_app --reason TICKET-7\n  rotor show emr-db-01/deploy --reason TICKET-7 > deploy_key\n\n{EXIT_CODES}"))]
    Show(show::ShowArgs),
    /// Write every current credential to a file encrypted to an age public key (offline
    /// escrow: `age -d` recovers them without rotor).
    #[command(after_help = format!("Examples:\n  rotor export --recipient age1... -o escrow.age\n\n{EXIT_CODES}"))]
    Export(export::ExportArgs),
    /// Check out one credential for a ticket and a time limit (break-glass access); with the
    /// policy's approval, another person approves first. It is rotated at check-in or expiry.
    #[command(after_help = format!("Examples:\n  rotor checkout emr-db-01/svc_app -i inventory.yaml --ticket TICKET-7 --reason \"vendor patch\" --ttl 4h\n  rotor checkout --claim 12\n\n{EXIT_CODES}"))]
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
    /// Shell completions: `rotor completions bash > /etc/bash_completion.d/rotor`.
    Completions(docs::CompletionsArgs),
    /// The manual page (`rotor man | man -l -`), or every page with --out-dir.
    Man(docs::ManArgs),
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
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let json = json_requested(&args);
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            if code == 2 && json {
                let rendered = e.render().to_string();
                let message = rendered.strip_prefix("error: ").unwrap_or(&rendered);
                print_json_error("usage", code, message.trim_end());
            }
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
            let said = format!("{:#}", f.error);
            let message = crate::text::escape_lines(&said);
            if json {
                print_json_error(error_code(&f), f.code, &message);
            }
            eprintln!("error: {message}");
            f.code
        }
    };
    match output::stdout_exit_code() {
        Some(stdout_code) if code == 0 => stdout_code,
        _ => code,
    }
}

/// Was JSON output asked for (`-o json`, `--output json`, `--output=json`, `-ojson`)? Read
/// from the raw arguments, so that an error before or during parsing is JSON too.
/// `export` and `inventory import` keep `-o` for the file they write: there only the long
/// form asks for JSON.
fn json_requested(args: &[std::ffi::OsString]) -> bool {
    let args: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    let o_names_a_file = args.contains(&"export")
        || args
            .iter()
            .position(|a| *a == "inventory")
            .is_some_and(|i| args.get(i + 1) == Some(&"import"));
    args.iter().enumerate().any(|(i, a)| {
        let next = args.get(i + 1).copied();
        match *a {
            "--output" => next == Some("json"),
            "-o" => !o_names_a_file && next == Some("json"),
            "-ojson" | "-o=json" => !o_names_a_file,
            _ => *a == "--output=json",
        }
    })
}

/// An error under `--output json`: one JSON object on stdout, so a script that reads stdout
/// always gets JSON (the person at the terminal still gets the `error:` line on stderr).
/// `code` is stable; `exit_code` is the process's exit status.
fn print_json_error(code: &str, exit_code: i32, message: &str) {
    let value = serde_json::json!({
        "error": { "code": code, "message": message, "exit_code": exit_code }
    });
    output::write_stdout(format_args!("{value}\n"));
}

/// The stable name of what went wrong, for JSON errors: the failure's own, else one from
/// the error's type. Scripts branch on these: once released, a name never changes.
fn error_code(f: &Failure) -> &'static str {
    use crate::store::StoreError as S;
    if let Some(kind) = f.kind {
        return kind;
    }
    if f.code == 2 {
        return "usage";
    }
    let store = f.error.chain().find_map(|e| {
        e.downcast_ref::<S>()
            .or_else(|| match e.downcast_ref::<crate::ops::OpsError>() {
                Some(crate::ops::OpsError::Store(s)) => Some(s),
                _ => None,
            })
    });
    if let Some(s) = store {
        return match s {
            S::Missing(_) => "vault_missing",
            S::AlreadyInitialized(_) | S::KeyExists(_) => "vault_exists",
            S::KeyMismatch(_)
            | S::KeyFilePermissions { .. }
            | S::KeyMalformed(_)
            | S::Keyring(_) => "master_key",
            S::SchemaTooNew { .. } => "vault_too_new",
            S::RotationOpen(..) => "rotation_open",
            S::Stuck(..) => "stuck",
            S::LeaseLost { .. } => "lease_lost",
            S::Parked { .. } => "parked",
            S::UnknownCredential(_) => "unknown_credential",
            S::UnknownCheckout(_) => "unknown_checkout",
            S::UnknownRotation(_) => "unknown_rotation",
            S::UnknownRun(_) => "unknown_run",
            S::Refused(_) | S::NotOpen { .. } => "refused",
            S::AuditTampered { .. } => "audit_tampered",
            S::Unwritable(_) | S::NotWritable { .. } => "vault_unwritable",
            S::UnsafePath { .. } | S::StrayFile(_) => "unsafe_path",
            _ => "vault_error",
        };
    }
    if f.error.chain().any(|e| {
        e.downcast_ref::<crate::inventory::InventoryError>()
            .is_some()
    }) {
        return "inventory_invalid";
    }
    "error"
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
        Command::Init(_)
            | Command::Inventory(_)
            | Command::Playbook(_)
            | Command::Plan(_)
            | Command::Audit(_)
            | Command::Schedule(_)
            | Command::Serve(_)
            | Command::Completions(_)
            | Command::Man(_)
    ) {
        checkout::settle(g);
    }
    match cli.command {
        Command::Init(a) => init::run(g, a),
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
        Command::Completions(a) => docs::completions(a),
        Command::Man(a) => docs::man(a),
    }
}

#[cfg(test)]
mod tests {
    use super::json_requested;

    #[test]
    fn json_is_asked_for_by_the_output_option_and_never_by_a_file_named_json() {
        let asked = |line: &str| {
            let args: Vec<std::ffi::OsString> = line.split(' ').map(Into::into).collect();
            json_requested(&args)
        };
        assert!(asked("rotor status -o json"));
        assert!(asked("rotor plan --all --output=json"));
        assert!(asked(
            "rotor export --recipient age1x -o escrow.age --output json"
        ));
        assert!(!asked("rotor status -o text"));
        assert!(
            !asked("rotor export --recipient age1x -o json"),
            "a file named json"
        );
        assert!(!asked("rotor inventory import ansible hosts.ini -o json"));
    }
}

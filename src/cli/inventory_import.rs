//! `rotor inventory import ansible FILE`: convert an Ansible inventory into a rotor inventory.
//! This front-end reads the files (the inventory, `group_vars/` and `host_vars/` beside it,
//! the known_hosts file), calls `inventory::ansible::convert`, and writes the result whole or
//! not at all; the conversion's decisions are all in `inventory::ansible`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::{Args, Subcommand};

use super::{CliResult, Failure, OutputFormat, usage};
use crate::inventory::ansible::{self, KnownHosts, Options, Source, VarsFile, VarsTarget};
use crate::inventory::{MAX_INVENTORY_BYTES, read_text};

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// An Ansible inventory (INI or YAML).
    Ansible(AnsibleArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "EXAMPLES:
  rotor inventory import ansible hosts.ini --accounts svc_app,svc_backup \\
      --known-hosts ~/.ssh/known_hosts -o rotor.yaml
  rotor inventory import ansible inventory.yml --output json

Exit codes: 0 imported, nothing reported; 3 imported, with reports (hosts skipped or not
pinned, secrets left out); 1 nothing written (a host cannot be imported, a dynamic inventory,
the output file exists); 2 usage.")]
pub struct AnsibleArgs {
    /// The Ansible inventory file (INI or YAML; `group_vars/` and `host_vars/` beside it are read too).
    pub file: PathBuf,
    /// Accounts to rotate on every host that sets no `rotor_accounts` var: NAME or
    /// NAME:PLAYBOOK, comma-separated [default playbook: linux-password].
    #[arg(long, value_name = "NAME[:PLAYBOOK],...")]
    pub accounts: Option<String>,
    /// A known_hosts file to pin each host's key from (plain, `[host]:port` and hashed names).
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// The user to log in as on hosts whose vars set no ansible_user (Ansible's remote_user).
    #[arg(long, value_name = "USER")]
    pub connect_user: Option<String>,
    /// The private key file for hosts whose vars set no ansible_ssh_private_key_file.
    #[arg(long, value_name = "FILE")]
    pub connect_key: Option<PathBuf>,
    /// Write the rotor inventory to this file (never overwritten) instead of stdout.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// `json`: print a summary (hosts, groups, reports) instead of the inventory.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

pub fn run(c: ImportCommand) -> CliResult {
    match c {
        ImportCommand::Ansible(a) => ansible_import(a),
    }
}

/// Vars files rotor reads beside the inventory, at most (a directory of thousands of files
/// is not an inventory's).
const MAX_VARS_FILES: usize = 10_000;

fn ansible_import(a: AnsibleArgs) -> CliResult {
    let accounts = match &a.accounts {
        Some(list) => {
            ansible::parse_accounts(list).map_err(|why| usage(format!("--accounts: {why}")))?
        }
        None => Vec::new(),
    };
    if let Some(user) = &a.connect_user {
        crate::credential::AccountName::parse(user)
            .map_err(|why| usage(format!("--connect-user: {why}")))?;
    }
    if let Some(out) = &a.out
        && out.exists()
    {
        return Err(Failure::coded(
            1,
            "output_exists",
            anyhow!(
                "{} exists: rotor never overwrites an inventory; choose another -o FILE, or move the old file away first",
                out.display()
            ),
        ));
    }
    let text = read_text(&a.file, MAX_INVENTORY_BYTES).map_err(|why| {
        Failure::coded(
            1,
            "unreadable",
            anyhow!(
                "{}: cannot read the Ansible inventory: {why}",
                a.file.display()
            ),
        )
    })?;
    let executable = {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(&a.file).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
    };
    let known_hosts = match &a.known_hosts {
        Some(path) => Some(KnownHosts::parse(
            &read_text(path, MAX_INVENTORY_BYTES).map_err(|why| {
                Failure::coded(
                    1,
                    "unreadable",
                    anyhow!(
                        "{}: cannot read the known_hosts file: {why}",
                        path.display()
                    ),
                )
            })?,
        )),
        None => None,
    };
    let vars_files = read_vars_dirs(&a.file)?;
    let base_dir = std::env::current_dir().unwrap_or_default();
    let options = Options {
        accounts,
        known_hosts,
        connect_user: a.connect_user.clone(),
        connect_key: a.connect_key.clone(),
        base_dir,
        home: std::env::var_os("HOME").map(PathBuf::from),
        out_path: a.out.clone().unwrap_or_else(|| PathBuf::from("rotor.yaml")),
    };
    let source = Source {
        path: a.file.clone(),
        text,
        executable,
    };
    let import = ansible::convert(&source, &vars_files, &options).map_err(|e| {
        let code = e.code();
        Failure::coded(1, code, anyhow!("{e}"))
    })?;
    for report in &import.reports {
        eprintln!("{}: {report}", label(report.kind));
    }
    if let Some(out) = &a.out {
        write_new(out, &import.yaml).map_err(|e| {
            Failure::coded(
                1,
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    "output_exists"
                } else {
                    "unwritable"
                },
                anyhow!(
                    "{}: cannot write the inventory: {e}; nothing was written",
                    out.display()
                ),
            )
        })?;
    }
    match (a.output, &a.out) {
        (OutputFormat::Json, out) => {
            let mut summary = serde_json::to_value(&import)?;
            summary["written"] = serde_json::json!(out.as_ref().map(|p| p.display().to_string()));
            outln!("{}", serde_json::to_string_pretty(&summary)?);
        }
        (OutputFormat::Text, None) => out!("{}", import.yaml),
        (OutputFormat::Text, Some(out)) => {
            outln!(
                "wrote {}: {} hosts, {} groups{}; next: rotor inventory check -i {}",
                out.display(),
                import.hosts.len(),
                import.groups.len(),
                match import.reports.len() {
                    0 => String::new(),
                    n => format!(", {n} reported (above)"),
                },
                out.display()
            );
        }
    }
    Ok(if import.reports.is_empty() { 0 } else { 3 })
}

fn label(kind: ansible::ReportKind) -> &'static str {
    use ansible::ReportKind as K;
    match kind {
        K::Secret => "left out",
        K::Connection => "skipped",
        K::NoHostKey => "not pinned",
        K::NoAccounts => "no accounts",
        K::Ignored => "ignored",
        _ => "error",
    }
}

/// `group_vars/NAME[.yml|.yaml|.json]`, `group_vars/NAME/*` and the same under `host_vars/`,
/// beside the inventory file, in the order Ansible reads them (sorted).
fn read_vars_dirs(inventory: &Path) -> Result<Vec<VarsFile>, Failure> {
    let dir = inventory
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut files = Vec::new();
    let mut budget = MAX_INVENTORY_BYTES;
    for (sub, group) in [("group_vars", true), ("host_vars", false)] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if file_name.starts_with('.') {
                continue;
            }
            let (name, inner): (String, Vec<PathBuf>) = if path.is_dir() {
                let mut inner: Vec<PathBuf> = std::fs::read_dir(&path)
                    .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
                    .unwrap_or_default();
                inner.retain(|p| p.is_file() && is_vars_name(p));
                inner.sort();
                (file_name.to_owned(), inner)
            } else {
                (vars_target_name(file_name).to_owned(), vec![path.clone()])
            };
            for file in inner {
                if files.len() >= MAX_VARS_FILES {
                    return Err(Failure::coded(
                        1,
                        "too_many_vars_files",
                        anyhow!(
                            "{}: more than {MAX_VARS_FILES} vars files; import a smaller inventory",
                            dir.display()
                        ),
                    ));
                }
                let text = read_text(&file, budget).map_err(|why| {
                    Failure::coded(
                        1,
                        "unreadable",
                        anyhow!("{}: cannot read the vars file: {why}", file.display()),
                    )
                })?;
                budget = budget.saturating_sub(text.len() as u64);
                files.push(VarsFile {
                    path: file,
                    target: if group {
                        VarsTarget::Group(name.clone())
                    } else {
                        VarsTarget::Host(name.clone())
                    },
                    text,
                });
            }
        }
    }
    Ok(files)
}

/// The host or group a `group_vars/` or `host_vars/` file is for: `web.yml` (`.yaml`,
/// `.json`) is for `web`; any other name is for the host or group of that whole name, as
/// Ansible's `host_group_vars` looks for `NAME` itself first (`host_vars/db1.example.org`).
fn vars_target_name(file_name: &str) -> &str {
    match file_name.rsplit_once('.') {
        Some((stem, "yml" | "yaml" | "json")) if !stem.is_empty() => stem,
        _ => file_name,
    }
}

/// The files of a `group_vars/NAME/` directory Ansible reads: no extension, or .yml, .yaml,
/// .json.
fn is_vars_name(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        None | Some("yml" | "yaml" | "json")
    )
}

/// Writes `text` to `path`, which must not exist, whole or not at all: a temporary file in
/// the same directory, synced, then hard-linked into place (which fails if `path` appeared
/// meanwhile), then the temporary name removed.
fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile_in(dir)?;
    let result = (|| {
        tmp.1.write_all(text.as_bytes())?;
        tmp.1.sync_all()?;
        std::fs::hard_link(&tmp.0, path)
    })();
    let _ = std::fs::remove_file(&tmp.0);
    result
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    for attempt in 0..100u32 {
        let candidate = dir.join(format!(
            ".rotor-import-{}-{attempt}.tmp",
            std::process::id()
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&candidate)
        {
            Ok(file) => return Ok((candidate, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(
        "cannot create a temporary file beside the output",
    ))
}

#[cfg(test)]
mod tests {
    use super::{VarsTarget, read_vars_dirs, vars_target_name};

    #[test]
    fn vars_files_are_for_their_whole_name_unless_yaml_or_json() {
        assert_eq!(vars_target_name("db1.example.org"), "db1.example.org");
        assert_eq!(vars_target_name("10.0.0.5"), "10.0.0.5");
        assert_eq!(vars_target_name("web"), "web");
        assert_eq!(vars_target_name("web.yml"), "web");
        assert_eq!(vars_target_name("web.yaml"), "web");
        assert_eq!(vars_target_name("db1.example.org.json"), "db1.example.org");
    }

    #[test]
    fn a_host_vars_file_named_for_a_dotted_host_is_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("host_vars")).unwrap();
        std::fs::write(
            dir.path().join("host_vars/db1.example.org"),
            "ansible_user: deploy\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("host_vars/web1.yml"),
            "ansible_port: 2222\n",
        )
        .unwrap();
        let files = read_vars_dirs(&dir.path().join("hosts.ini")).unwrap_or_else(|_| panic!());
        let targets: Vec<&VarsTarget> = files.iter().map(|f| &f.target).collect();
        assert_eq!(
            targets,
            [
                &VarsTarget::Host("db1.example.org".into()),
                &VarsTarget::Host("web1".into())
            ]
        );
    }
}

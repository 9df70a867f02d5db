//! `rotor inventory import ansible`: an Ansible inventory (INI or YAML) turned into a rotor
//! inventory, pure (the front-end reads the files and writes the result).
//!
//! Reading (`read`) mirrors ansible-core 2.14's `ini` and `yaml` plugins: groups, children,
//! group and host vars, host ranges, `host:port`. [`convert`] then resolves each host's vars
//! with Ansible's precedence (the `all` group, then the host's groups by depth, priority and
//! name, then `group_vars/`, then the host's own vars, then `host_vars/`), and takes what rotor
//! needs: `ansible_host`, `ansible_port`, `ansible_user`, `ansible_ssh_private_key_file` (and
//! their `ansible_ssh_*` aliases, the last listed winning as in Ansible's connection plugin),
//! the groups, the accounts (`rotor_accounts` or the command line) and the host key (from a
//! known_hosts file). [`render`] writes the rotor YAML by hand, with comments, every string
//! double-quoted; the result is read back with [`super::parse`] before it is returned.
//!
//! Architecture invariants:
//! - **Reported, not guessed.** What rotor cannot carry (dynamic inventory scripts and plugin
//!   files, Jinja, vault-encrypted values, non-SSH connections, a host without a user or a
//!   key) is a [`Report`] with the host or group, file and line. A host that cannot be
//!   imported fails the whole import ([`ImportError::Hosts`]): nothing half-written.
//! - **Secrets are never copied.** `ansible_password`, `ansible_ssh_pass`,
//!   `ansible_become_pass*` are reported by name and line, never by value.
//! - No I/O: the texts come in, a text goes out.

mod read;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use self::read::MAX_HOSTS;
use self::read::{At, Model, Node, Value, Var};
use super::{InventoryError, Problem, ProblemKind};
use crate::credential::{AccountName, HostName};

/// The playbook an account gets when `--accounts` or `rotor_accounts` names none.
pub const DEFAULT_PLAYBOOK: &str = "linux-password";

/// The inventory file as read by the front-end.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
    /// The file has an execute bit: Ansible would run it as a dynamic inventory script.
    pub executable: bool,
}

/// A file of `group_vars/` or `host_vars/` beside the inventory.
#[derive(Debug, Clone)]
pub struct VarsFile {
    pub path: PathBuf,
    /// `group_vars/web.yml` is for the group `web`.
    pub target: VarsTarget,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarsTarget {
    Group(String),
    Host(String),
}

/// What the command line adds.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Accounts for hosts without a `rotor_accounts` var.
    pub accounts: Vec<AccountSpec>,
    pub known_hosts: Option<KnownHosts>,
    /// The connect user of hosts whose vars name none (Ansible's `remote_user`).
    pub connect_user: Option<String>,
    /// The connect key file of hosts whose vars name none.
    pub connect_key: Option<PathBuf>,
    /// Where relative key paths start (Ansible resolves them from the current directory).
    pub base_dir: PathBuf,
    /// `~` in a key path.
    pub home: Option<PathBuf>,
    /// Where the rotor inventory will be written (for the read-back check's messages).
    pub out_path: PathBuf,
}

/// One account to rotate on each host: `name` or `name:playbook`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountSpec {
    pub name: String,
    pub playbook: String,
}

/// Parses `svc_app,svc_backup:linux-ssh-key` (`--accounts` and a `rotor_accounts` string).
pub fn parse_accounts(list: &str) -> Result<Vec<AccountSpec>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(account_spec)
        .collect()
}

fn account_spec(item: &str) -> Result<AccountSpec, String> {
    let (name, playbook) = match item.split_once(':') {
        Some((name, playbook)) => (name.trim(), playbook.trim()),
        None => (item.trim(), DEFAULT_PLAYBOOK),
    };
    AccountName::parse(name)?;
    let catalog = crate::recipe::Catalog::built_in();
    if catalog.get(playbook).is_none() {
        return Err(format!(
            "account `{name}`: no built-in playbook `{playbook}`{}; write NAME or NAME:PLAYBOOK (default {DEFAULT_PLAYBOOK})",
            super::did_you_mean(playbook, catalog.names())
        ));
    }
    Ok(AccountSpec {
        name: name.to_owned(),
        playbook: playbook.to_owned(),
    })
}

/// The result: hosts and groups as rotor will hold them, what was reported, and the text.
#[derive(Debug, Clone, Serialize)]
pub struct Import {
    pub source: String,
    /// `ini` or `yaml`.
    pub format: &'static str,
    pub hosts: Vec<ImportedHost>,
    /// Every group some imported host is in, in the order Ansible defines them.
    pub groups: Vec<String>,
    pub reports: Vec<Report>,
    /// The rotor inventory (YAML).
    #[serde(skip)]
    pub yaml: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImportedHost {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    /// The connect key file, absolute.
    pub key: Option<String>,
    /// The vault credential rotor logs in with when Ansible used a password (`HOST/USER`).
    pub credential: Option<String>,
    pub groups: Vec<String>,
    /// The pinned host key line, when the known_hosts file had one.
    pub host_key: Option<String>,
    pub accounts: Vec<AccountSpec>,
    /// The line of the inventory file that first names the host.
    pub line: u64,
}

/// Something the import could not carry, with where it was written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub kind: ReportKind,
    /// The host the report is about (when the var was written on a group, the first host it
    /// affects; `hosts` counts them all).
    pub host: Option<String>,
    /// The group the var was written on.
    pub group: Option<String>,
    pub var: Option<String>,
    pub file: Option<String>,
    pub line: Option<u64>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    /// A password var: not copied.
    Secret,
    /// `ansible_connection` is not SSH: the host is skipped.
    Connection,
    /// No key in the known_hosts file (or none given): the host is written without a pin.
    NoHostKey,
    /// No accounts to rotate on the host.
    NoAccounts,
    /// Ansible would warn and skip this part of the file too.
    Ignored,
    /// Jinja in a value rotor needs: the host cannot be imported.
    Jinja,
    /// A vault-encrypted value rotor needs: the host cannot be imported.
    Vault,
    /// No connect user: the host cannot be imported.
    NoUser,
    /// No way to log in (no key file, no password): the host cannot be imported.
    NoKey,
    /// A value rotor refuses (host name, address, port, group name, account): the host
    /// cannot be imported.
    Invalid,
}

impl ReportKind {
    /// Whether the host cannot be imported at all.
    pub fn is_fatal(self) -> bool {
        matches!(
            self,
            ReportKind::Jinja
                | ReportKind::Vault
                | ReportKind::NoUser
                | ReportKind::NoKey
                | ReportKind::Invalid
        )
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", crate::text::escape(file))?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
            }
            write!(f, ": ")?;
        }
        match (&self.host, &self.group) {
            (Some(host), Some(group)) => write!(
                f,
                "host {} (from group {}): ",
                crate::text::escape(host),
                crate::text::escape(group)
            )?,
            (Some(host), None) => write!(f, "host {}: ", crate::text::escape(host))?,
            (None, Some(group)) => write!(f, "group {}: ", crate::text::escape(group))?,
            (None, None) => {}
        }
        write!(f, "{}", crate::text::escape(&self.message))
    }
}

/// Why nothing was imported.
#[derive(Debug, Clone, PartialEq)]
pub enum ImportError {
    /// A dynamic inventory (a script, or an inventory plugin's configuration).
    Dynamic { file: String, message: String },
    /// Ansible itself would refuse the file.
    Unreadable {
        file: String,
        line: u64,
        message: String,
    },
    /// Hosts that cannot be imported, each with what to do (a var written on a group is
    /// one problem, however many hosts it stops: `n_hosts` counts them).
    Hosts {
        problems: Vec<Report>,
        n_hosts: usize,
    },
}

impl ImportError {
    /// The stable name of the failure for `--output json`.
    pub fn code(&self) -> &'static str {
        match self {
            ImportError::Dynamic { .. } => "dynamic_inventory",
            ImportError::Unreadable { .. } => "ansible_inventory_invalid",
            ImportError::Hosts { .. } => "hosts_not_importable",
        }
    }
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImportError::Dynamic { file, message } => {
                write!(f, "{}: {message}", crate::text::escape(file))
            }
            ImportError::Unreadable {
                file,
                line,
                message,
            } => {
                write!(f, "{}", crate::text::escape(file))?;
                if *line > 0 {
                    write!(f, ":{line}")?;
                }
                write!(f, ": {}", crate::text::escape(message))
            }
            ImportError::Hosts { problems, n_hosts } => {
                write!(
                    f,
                    "{} cannot be imported, so nothing was written (fix these in the Ansible inventory or with the options named, then run the import again):",
                    match n_hosts {
                        1 => "1 host".to_owned(),
                        n => format!("{n} hosts"),
                    }
                )?;
                for problem in problems {
                    write!(f, "\n  {problem}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ImportError {}

/// Connection plugins that speak SSH, which rotor can use.
const SSH_CONNECTIONS: &[&str] = &[
    "ssh",
    "smart",
    "paramiko",
    "paramiko_ssh",
    "ansible.builtin.ssh",
    "ansible.builtin.paramiko_ssh",
    "ansible.legacy.ssh",
];

/// Vars that hold secrets: reported, never copied.
const SECRET_VARS: &[&str] = &[
    "ansible_password",
    "ansible_ssh_pass",
    "ansible_ssh_password",
    "ansible_become_pass",
    "ansible_become_password",
    "ansible_sudo_pass",
    "ansible_sudo_password",
    "ansible_su_pass",
    "ansible_su_password",
];

/// The login password vars (the others are for privilege escalation).
const LOGIN_PASSWORD_VARS: &[&str] = &[
    "ansible_password",
    "ansible_ssh_pass",
    "ansible_ssh_password",
];

/// Converts an Ansible inventory. `vars_files` are the `group_vars/` and `host_vars/` files
/// beside it (those for groups and hosts the inventory does not have are ignored, as in
/// Ansible).
pub fn convert(
    source: &Source,
    vars_files: &[VarsFile],
    options: &Options,
) -> Result<Import, ImportError> {
    let shown = source.path.display().to_string();
    let static_hint = format!(
        "run it with Ansible and import the static result: `ansible-inventory -i {shown} --list --yaml > static.yaml`, then `rotor inventory import ansible static.yaml`"
    );
    if source.text.starts_with("#!") {
        return Err(ImportError::Dynamic {
            file: shown,
            message: format!(
                "this is a dynamic inventory script (it starts with `#!`); rotor does not run scripts: {static_hint}"
            ),
        });
    }
    if source.executable {
        return Err(ImportError::Dynamic {
            file: shown.clone(),
            message: format!(
                "the file is executable, so Ansible treats it as a dynamic inventory script; rotor does not run scripts: {static_hint}. If it is a static inventory, `chmod -x {shown}` and import it again"
            ),
        });
    }
    let (mut model, format) = read_model(source, &shown, &static_hint)?;
    let mut files = vec![shown.clone()];
    for vars in vars_files {
        let (host, group) = match &vars.target {
            VarsTarget::Group(name) => (None, model.group(name)),
            VarsTarget::Host(name) => (model.host(name), None),
        };
        if host.is_none() && group.is_none() {
            continue;
        }
        let file = files.len();
        files.push(vars.path.display().to_string());
        model
            .add_file_vars(&vars.text, file, host, group)
            .map_err(|e| ImportError::Unreadable {
                file: files[file].clone(),
                line: e.at.line,
                message: e.message,
            })?;
    }
    let depths = depths(&model).map_err(|message| ImportError::Unreadable {
        file: shown.clone(),
        line: 0,
        message,
    })?;
    let mut converter = Converter {
        model: &model,
        files: &files,
        options,
        depths,
        reports: Vec::new(),
        fatal: Vec::new(),
    };
    let mut hosts = Vec::new();
    for h in 0..model.hosts.len() {
        if let Some(host) = converter.host(h) {
            hosts.push(host);
        }
    }
    converter.secrets();
    for (at, message) in &model.warnings {
        converter.reports.push(Report {
            kind: ReportKind::Ignored,
            host: None,
            group: None,
            var: None,
            file: Some(files[at.file].clone()),
            line: Some(at.line).filter(|l| *l > 0),
            message: message.clone(),
        });
    }
    let Converter {
        mut reports,
        mut fatal,
        ..
    } = converter;
    let used: BTreeSet<&str> = hosts
        .iter()
        .flat_map(|h| h.groups.iter().map(String::as_str))
        .collect();
    let groups: Vec<String> = model
        .groups
        .iter()
        .filter(|g| used.contains(g.name.as_str()))
        .map(|g| g.name.clone())
        .collect();
    let mut import = Import {
        source: shown,
        format,
        hosts,
        groups,
        reports: Vec::new(),
        yaml: String::new(),
    };
    if fatal.is_empty() {
        import.yaml = render(&import);
        fatal.extend(read_back(&import, options));
    }
    if !fatal.is_empty() {
        let n_hosts = fatal
            .iter()
            .filter_map(|p| p.host.as_deref())
            .collect::<BTreeSet<_>>()
            .len();
        dedupe(&mut fatal);
        return Err(ImportError::Hosts {
            problems: fatal,
            n_hosts,
        });
    }
    dedupe(&mut reports);
    import.reports = reports;
    Ok(import)
}

/// One report per definition site: a var written on a group is reported once, not per host.
fn dedupe(reports: &mut Vec<Report>) {
    let mut seen = BTreeSet::new();
    reports.retain(|r| {
        let site = if r.group.is_some() && r.var.is_some() {
            (r.kind as u8, None, r.group.clone(), r.var.clone(), r.line)
        } else {
            (
                r.kind as u8,
                r.host.clone(),
                r.group.clone(),
                r.var.clone(),
                r.line,
            )
        };
        seen.insert(site)
    });
}

fn read_model(
    source: &Source,
    shown: &str,
    static_hint: &str,
) -> Result<(Model, &'static str), ImportError> {
    let unreadable = |e: read::ReadError| ImportError::Unreadable {
        file: shown.to_owned(),
        line: e.at.line,
        message: e.message,
    };
    let ext = source
        .path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    // Ansible's yaml plugin takes files with these extensions or none; the ini plugin any.
    let yaml_like = matches!(ext.as_deref(), None | Some("yaml" | "yml" | "json"));
    let mut yaml_error = None;
    if yaml_like {
        match read::parse_yaml(&source.text) {
            Ok(doc) if matches!(doc.value, Node::Map(_)) => {
                if let Some(plugin) = read::plugin_name(&doc.value) {
                    return Err(ImportError::Dynamic {
                        file: shown.to_owned(),
                        message: format!(
                            "this is the configuration of the inventory plugin `{plugin}` (a dynamic inventory), not a list of hosts; {static_hint}"
                        ),
                    });
                }
                return read::model_from_yaml(&doc)
                    .map(|m| (m, "yaml"))
                    .map_err(unreadable);
            }
            Ok(_) => {}
            Err(e) => yaml_error = Some(e),
        }
    }
    match read::parse_ini(&source.text) {
        Ok(model) => Ok((model, "ini")),
        Err(ini_error) => {
            // A .yaml file that is neither: the YAML error says more.
            let explicit_yaml = matches!(ext.as_deref(), Some("yaml" | "yml" | "json"));
            Err(unreadable(match yaml_error {
                Some(y) if explicit_yaml => y,
                _ => ini_error,
            }))
        }
    }
}

/// Each group's depth below `all` (Ansible's `Group.depth`: the longest path), refusing
/// cycles as Ansible does. Walked with a stack of its own, not by recursion: a chain of
/// thousands of `:children` sections must not overflow the stack.
fn depths(model: &Model) -> Result<Vec<u32>, String> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        New,
        /// On the walk's path: meeting it again is a loop.
        Open,
        Done,
    }
    let all = model.group("all").unwrap_or(0);
    let n = model.groups.len();
    let mut depth = vec![0u32; n];
    let mut state = vec![State::New; n];
    state[all] = State::Done;
    for start in 0..n {
        if state[start] == State::Done {
            continue;
        }
        // (group, how many of its parents are walked)
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        state[start] = State::Open;
        while let Some((g, next)) = path.last_mut() {
            let g = *g;
            let parents = &model.groups[g].parents;
            if let Some(&p) = parents.get(*next) {
                *next += 1;
                match state[p] {
                    State::Done => {}
                    State::Open => {
                        return Err(format!(
                            "group `{}` is among its own children (a loop through :children): Ansible refuses this too; remove one link",
                            model.groups[p].name
                        ));
                    }
                    State::New => {
                        state[p] = State::Open;
                        path.push((p, 0));
                    }
                }
                continue;
            }
            depth[g] = parents
                .iter()
                .filter(|p| **p != all)
                .map(|p| depth[*p].saturating_add(1))
                .fold(1, u32::max);
            state[g] = State::Done;
            path.pop();
        }
    }
    Ok(depth)
}

/// Where a resolved var came from.
#[derive(Clone, Copy)]
enum Origin {
    Group(usize),
    Host,
}

struct Converter<'a> {
    model: &'a Model,
    files: &'a [String],
    options: &'a Options,
    depths: Vec<u32>,
    reports: Vec<Report>,
    fatal: Vec<Report>,
}

impl<'a> Converter<'a> {
    /// The host's groups, direct and inherited, without `all` (and without `ungrouped` when
    /// the host is in another group, as Ansible's reconciliation does).
    fn groups_of(&self, h: usize) -> Vec<usize> {
        let model = self.model;
        let all = model.group("all").unwrap_or(0);
        let ungrouped = model.group("ungrouped").unwrap_or(1);
        let direct = &model.hosts[h].groups;
        let mut start: Vec<usize> = direct.iter().copied().filter(|g| *g != all).collect();
        if start.iter().any(|g| *g != ungrouped) {
            start.retain(|g| *g != ungrouped);
        } else if start.is_empty() {
            start.push(ungrouped);
        }
        let mut seen = BTreeSet::new();
        while let Some(g) = start.pop() {
            if g == all || !seen.insert(g) {
                continue;
            }
            start.extend(model.groups[g].parents.iter().copied());
        }
        seen.into_iter().collect()
    }

    /// The host's vars after Ansible's precedence.
    fn vars_of(&self, h: usize, groups: &[usize]) -> BTreeMap<&'a str, (&'a Var, Origin)> {
        let model: &'a Model = self.model;
        let all = model.group("all").unwrap_or(0);
        let mut sorted: Vec<usize> = groups.to_vec();
        sorted.sort_by_key(|g| {
            let group = &model.groups[*g];
            let priority = group
                .vars
                .get("ansible_group_priority")
                .and_then(|v| match &v.value {
                    Value::Int(n) => Some(*n),
                    Value::Str(s) => s.trim().parse().ok(),
                    _ => None,
                })
                .unwrap_or(1);
            (self.depths[*g], priority, group.name.clone())
        });
        let mut layers: Vec<(&'a BTreeMap<String, Var>, Origin)> =
            vec![(&model.groups[all].vars, Origin::Group(all))];
        layers.extend(
            sorted
                .iter()
                .map(|g| (&model.groups[*g].vars, Origin::Group(*g))),
        );
        layers.push((&model.groups[all].file_vars, Origin::Group(all)));
        layers.extend(
            sorted
                .iter()
                .map(|g| (&model.groups[*g].file_vars, Origin::Group(*g))),
        );
        layers.push((&model.hosts[h].vars, Origin::Host));
        layers.push((&model.hosts[h].file_vars, Origin::Host));
        let mut vars: BTreeMap<&'a str, (&'a Var, Origin)> = BTreeMap::new();
        for (map, origin) in layers {
            for (k, v) in map {
                vars.insert(k.as_str(), (v, origin));
            }
        }
        vars
    }

    fn report(
        &self,
        kind: ReportKind,
        host: &str,
        var: Option<(&str, &Var, Origin)>,
        message: String,
    ) -> Report {
        let (group, at) = match var {
            Some((_, v, Origin::Group(g))) => (Some(self.model.groups[g].name.clone()), v.at),
            Some((_, v, Origin::Host)) => (None, v.at),
            None => {
                let h = self.model.host(host).unwrap_or(0);
                (
                    None,
                    self.model.hosts.get(h).map_or(At::default(), |d| d.at),
                )
            }
        };
        Report {
            kind,
            host: Some(host.to_owned()),
            group,
            var: var.map(|(name, _, _)| name.to_owned()),
            file: Some(self.files[at.file].clone()),
            line: Some(at.line).filter(|l| *l > 0),
            message,
        }
    }

    /// The text of the last of `names` that is set (Ansible's connection options: the last
    /// var listed wins), refusing Jinja and vault values.
    fn text_var(
        &mut self,
        host: &str,
        vars: &BTreeMap<&'a str, (&'a Var, Origin)>,
        names: &[&'static str],
    ) -> Result<Option<(String, &'static str, &'a Var, Origin)>, ()> {
        let Some((name, var, origin)) = names.iter().rev().find_map(|n| {
            vars.get(n)
                .filter(|(v, _)| v.value != Value::Null)
                .map(|(v, o)| (*n, *v, *o))
        }) else {
            return Ok(None);
        };
        if self.unusable(host, name, var, origin) {
            return Err(());
        }
        match var.value.scalar_text() {
            Some(text) => Ok(Some((text, name, var, origin))),
            None => {
                let report = self.report(
                    ReportKind::Invalid,
                    host,
                    Some((name, var, origin)),
                    format!(
                        "{name} is a list or a mapping, not a single value: set it to one value"
                    ),
                );
                self.fatal.push(report);
                Err(())
            }
        }
    }

    /// Jinja or a vault value in a var rotor needs: a fatal report.
    fn unusable(&mut self, host: &str, name: &str, var: &Var, origin: Origin) -> bool {
        for text in var.value.strings() {
            if text.contains("{{") || text.contains("{%") {
                let report = self.report(
                    ReportKind::Jinja,
                    host,
                    Some((name, var, origin)),
                    format!("{name} is a Jinja template, which only Ansible can evaluate: rotor does not guess its value; write the value itself for this host (e.g. in host_vars or on the host line)"),
                );
                self.fatal.push(report);
                return true;
            }
            if text.trim_start().starts_with("$ANSIBLE_VAULT;") {
                let report = self.report(
                    ReportKind::Vault,
                    host,
                    Some((name, var, origin)),
                    format!("{name} is vault-encrypted: rotor cannot read it; write the value in clear for this host (it is not a secret), or run `ansible-inventory -i FILE --list --yaml --ask-vault-pass > static.yaml` and import that"),
                );
                self.fatal.push(report);
                return true;
            }
        }
        false
    }

    fn host(&mut self, h: usize) -> Option<ImportedHost> {
        let model: &'a Model = self.model;
        let def = &model.hosts[h];
        let name = def.name.clone();
        let groups = self.groups_of(h);
        let vars = self.vars_of(h, &groups);
        let n_fatal = self.fatal.len();

        // A host Ansible reaches some other way is skipped, not failed.
        if let Ok(Some((connection, var_name, var, origin))) =
            self.text_var(&name, &vars, &["ansible_connection"])
            && !SSH_CONNECTIONS.contains(&connection.as_str())
        {
            let report = self.report(
                ReportKind::Connection,
                &name,
                Some((var_name, var, origin)),
                format!("ansible_connection is `{connection}`, not ssh: rotor rotates over SSH only, so the host is skipped"),
            );
            self.reports.push(report);
            return None;
        }
        if self.fatal.len() > n_fatal {
            return None;
        }

        if let Err(why) = HostName::parse(&name) {
            let report = self.report(
                ReportKind::Invalid,
                &name,
                None,
                format!("{why}; rename the host in the Ansible inventory and keep its address in ansible_host"),
            );
            self.fatal.push(report);
        }

        let address = match self.text_var(&name, &vars, &["ansible_host", "ansible_ssh_host"]) {
            Ok(Some((address, var_name, var, origin))) => {
                if !plausible_address(&address) {
                    let report = self.report(
                        ReportKind::Invalid,
                        &name,
                        Some((var_name, var, origin)),
                        format!("{var_name} `{address}` is not an address rotor can dial: write an IP address or a DNS name"),
                    );
                    self.fatal.push(report);
                }
                address
            }
            Ok(None) => {
                if !plausible_address(&name) {
                    let report = self.report(
                        ReportKind::Invalid,
                        &name,
                        None,
                        "the host has no ansible_host and its name is not an address rotor can dial: set ansible_host".to_owned(),
                    );
                    self.fatal.push(report);
                }
                name.clone()
            }
            Err(()) => String::new(),
        };

        let port = match self.text_var(&name, &vars, &["ansible_port", "ansible_ssh_port"]) {
            Ok(Some((text, var_name, var, origin))) => match text.trim().parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => {
                    let report = self.report(
                        ReportKind::Invalid,
                        &name,
                        Some((var_name, var, origin)),
                        format!("{var_name} `{text}` is not a port: use 1 to 65535"),
                    );
                    self.fatal.push(report);
                    22
                }
            },
            Ok(None) | Err(()) => 22,
        };

        let user = match self.text_var(&name, &vars, &["ansible_user", "ansible_ssh_user"]) {
            Ok(Some((user, var_name, var, origin))) => {
                if let Err(why) = AccountName::parse(&user) {
                    let report = self.report(
                        ReportKind::Invalid,
                        &name,
                        Some((var_name, var, origin)),
                        format!("{var_name}: {why}"),
                    );
                    self.fatal.push(report);
                }
                Some(user)
            }
            Ok(None) => match &self.options.connect_user {
                Some(user) => Some(user.clone()),
                None => {
                    let report = self.report(
                        ReportKind::NoUser,
                        &name,
                        None,
                        "no user to log in as: rotor needs one; set ansible_user for the host or its group (e.g. `ansible_user=deploy` on the host line, or in [GROUP:vars] / [all:vars]), or pass --connect-user USER for every host that sets none".to_owned(),
                    );
                    self.fatal.push(report);
                    None
                }
            },
            Err(()) => None,
        };

        let password = LOGIN_PASSWORD_VARS
            .iter()
            .any(|v| vars.get(v).is_some_and(|(var, _)| var.value != Value::Null));
        let mut key = None;
        let mut credential = None;
        match self.text_var(
            &name,
            &vars,
            &["ansible_private_key_file", "ansible_ssh_private_key_file"],
        ) {
            Ok(Some((path, _, _, _))) => key = Some(self.absolute(&path)),
            Ok(None) => match &self.options.connect_key {
                Some(path) => key = Some(self.absolute(&path.to_string_lossy())),
                None if password => {
                    // Ansible logged in with a password: rotor does too, from its vault.
                    if let Some(user) = &user {
                        credential = Some(format!("{name}/{user}"));
                    }
                }
                None => {
                    let report = self.report(
                        ReportKind::NoKey,
                        &name,
                        None,
                        "no key file to log in with (Ansible would use ssh-agent or ~/.ssh/id_*, which rotor does not): set ansible_ssh_private_key_file for the host or its group, or pass --connect-key FILE".to_owned(),
                    );
                    self.fatal.push(report);
                }
            },
            Err(()) => {}
        }

        let accounts = self.accounts(&name, &vars);

        let mut group_names = Vec::new();
        for g in &groups {
            let group = &model.groups[*g];
            if group.name == "ungrouped" {
                continue;
            }
            if let Err(why) = super::validate::check_group_name(&group.name) {
                let report = Report {
                    kind: ReportKind::Invalid,
                    host: Some(name.clone()),
                    group: Some(group.name.clone()),
                    var: None,
                    file: Some(self.files[group.at.file].clone()),
                    line: Some(group.at.line).filter(|l| *l > 0),
                    message: format!("{why}; rename the group in the Ansible inventory"),
                };
                self.fatal.push(report);
            } else {
                group_names.push((*g, group.name.clone()));
            }
        }
        group_names.sort();

        if self.fatal.len() > n_fatal {
            return None;
        }
        let user = user?;
        let host_key = self
            .options
            .known_hosts
            .as_ref()
            .and_then(|k| k.find(&address, port));
        if host_key.is_none() {
            let how = match &self.options.known_hosts {
                Some(_) => "the known_hosts file given has no key for it",
                None => "no --known-hosts file was given",
            };
            let report = self.report(
                ReportKind::NoHostKey,
                &name,
                None,
                format!("{how}: written without a pin, which `rotor inventory check` refuses; run `ssh-keyscan -p {port} {address}`, compare the fingerprint out of band (the host's console), then re-run the import with --known-hosts FILE"),
            );
            self.reports.push(report);
        }
        if accounts.is_empty() {
            let report = self.report(
                ReportKind::NoAccounts,
                &name,
                None,
                "no accounts to rotate: pass --accounts svc_app,svc_backup, or set rotor_accounts for the host or its group".to_owned(),
            );
            self.reports.push(report);
        }
        Some(ImportedHost {
            name,
            address,
            port,
            user,
            key,
            credential,
            groups: group_names.into_iter().map(|(_, n)| n).collect(),
            host_key,
            accounts,
            line: def.at.line,
        })
    }

    fn accounts(
        &mut self,
        host: &str,
        vars: &BTreeMap<&'a str, (&'a Var, Origin)>,
    ) -> Vec<AccountSpec> {
        let Some((var, origin)) = vars
            .get("rotor_accounts")
            .copied()
            .filter(|(v, _)| v.value != Value::Null)
        else {
            return self.options.accounts.clone();
        };
        if self.unusable(host, "rotor_accounts", var, origin) {
            return Vec::new();
        }
        let items: Option<Vec<String>> = match &var.value {
            Value::List(items) => items.iter().map(Value::scalar_text).collect(),
            other => other.scalar_text().map(|s| vec![s]),
        };
        let Some(items) = items else {
            let report = self.report(
                ReportKind::Invalid,
                host,
                Some(("rotor_accounts", var, origin)),
                "rotor_accounts must be a list of NAME or NAME:PLAYBOOK strings, or one comma-separated string".to_owned(),
            );
            self.fatal.push(report);
            return Vec::new();
        };
        let mut accounts: Vec<AccountSpec> = Vec::new();
        for item in items {
            match parse_accounts(&item) {
                Ok(specs) => {
                    for spec in specs {
                        if !accounts.contains(&spec) {
                            accounts.push(spec);
                        }
                    }
                }
                Err(why) => {
                    let report = self.report(
                        ReportKind::Invalid,
                        host,
                        Some(("rotor_accounts", var, origin)),
                        format!("rotor_accounts: {why}"),
                    );
                    self.fatal.push(report);
                }
            }
        }
        accounts
    }

    /// Ansible expands `~` and resolves relative key paths from the current directory;
    /// rotor's are relative to the inventory file, so the import writes them absolute.
    fn absolute(&self, path: &str) -> String {
        let expanded = match (path.strip_prefix("~/"), &self.options.home) {
            (Some(rest), Some(home)) => home.join(rest),
            _ if path == "~" => self
                .options
                .home
                .clone()
                .unwrap_or_else(|| PathBuf::from(path)),
            _ => PathBuf::from(path),
        };
        if expanded.is_absolute() {
            expanded.display().to_string()
        } else {
            self.options.base_dir.join(expanded).display().to_string()
        }
    }

    /// Secret vars, once per place they are written.
    fn secrets(&mut self) {
        let model = self.model;
        let mut found: Vec<Report> = Vec::new();
        let mut check = |map: &BTreeMap<String, Var>, host: Option<&str>, group: Option<&str>| {
            for (name, var) in map {
                if !SECRET_VARS.contains(&name.as_str()) {
                    continue;
                }
                let what = if LOGIN_PASSWORD_VARS.contains(&name.as_str()) {
                    "a login password"
                } else {
                    "a privilege-escalation password"
                };
                found.push(Report {
                    kind: ReportKind::Secret,
                    host: host.map(str::to_owned),
                    group: group.map(str::to_owned),
                    var: Some(name.clone()),
                    file: Some(self.files[var.at.file].clone()),
                    line: Some(var.at.line).filter(|l| *l > 0),
                    message: format!("{name} is {what}: secrets are never copied into an inventory; store it in rotor's vault with `rotor enroll HOST/USER` (it reads the secret from stdin), then remove it from the Ansible inventory"),
                });
            }
        };
        for group in &model.groups {
            check(&group.vars, None, Some(&group.name));
            check(&group.file_vars, None, Some(&group.name));
        }
        for host in &model.hosts {
            check(&host.vars, Some(&host.name), None);
            check(&host.file_vars, Some(&host.name), None);
        }
        self.reports.extend(found);
    }
}

/// A light check of an address (the read-back by [`super::parse`] is the full one): no
/// spaces, no control characters, no URL or user part.
fn plausible_address(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))
}

/// Reads the rendered inventory back with rotor's own reader; anything it refuses (other
/// than the missing pin already reported) is a host that cannot be imported.
fn read_back(import: &Import, options: &Options) -> Vec<Report> {
    let Err(err) = super::parse(&import.yaml, &options.out_path) else {
        return Vec::new();
    };
    let mut fatal = Vec::new();
    for problem in err.problems() {
        let host_idx = problem
            .field
            .strip_prefix("hosts[")
            .and_then(|rest| rest.split(']').next())
            .and_then(|n| n.parse::<usize>().ok());
        let host = host_idx.and_then(|i| import.hosts.get(i));
        if let Some(host) = host
            && host.host_key.is_none()
            && problem.kind == ProblemKind::MissingField
            && problem.field == format!("hosts[{}]", host_idx.unwrap_or(0))
        {
            continue;
        }
        fatal.push(Report {
            kind: ReportKind::Invalid,
            host: host.map(|h| h.name.clone()),
            group: None,
            var: None,
            file: Some(import.source.clone()),
            line: host.map(|h| h.line).filter(|l| *l > 0),
            message: format!(
                "rotor refuses what the import would write: {}",
                problem.message
            ),
        });
    }
    if fatal.is_empty() && err.problems().is_empty() {
        fatal.push(Report {
            kind: ReportKind::Invalid,
            host: None,
            group: None,
            var: None,
            file: Some(import.source.clone()),
            line: None,
            message: format!("rotor refuses what the import would write: {err}"),
        });
    }
    fatal
}

// ---------------------------------------------------------------------------------------
// Rendering

/// A YAML double-quoted scalar: `"` and `\` escaped, control and non-ASCII-printable
/// characters as `\xNN` / `\uNNNN` / `\UNNNNNNNN`.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
            {
                if (c as u32) <= 0xffff {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                } else {
                    let _ = write!(out, "\\U{:08x}", c as u32);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Text for a comment line: control characters escaped, so nothing ends the comment early.
fn comment(text: &str) -> String {
    crate::text::escape(text).replace(['\n', '\r'], " ")
}

/// The rotor inventory for `import`, with comments.
pub fn render(import: &Import) -> String {
    let mut out = String::new();
    let n_hosts = import.hosts.len();
    let _ = writeln!(
        out,
        "# rotor inventory imported from the Ansible inventory {} ({}) by `rotor inventory import ansible`:",
        comment(&import.source),
        import.format.to_uppercase()
    );
    let _ = writeln!(
        out,
        "# {n_hosts} host{}, {} group{}. Check it with `rotor inventory check -i FILE`, then `rotor plan -i FILE --all`.",
        if n_hosts == 1 { "" } else { "s" },
        import.groups.len(),
        if import.groups.len() == 1 { "" } else { "s" }
    );
    out.push_str("version: 1\n");
    if import.hosts.is_empty() {
        out.push_str("hosts: []\n");
        return out;
    }
    out.push_str("hosts:\n");
    for host in &import.hosts {
        let _ = writeln!(out, "  - name: {}", quote(&host.name));
        let _ = writeln!(out, "    address: {}", quote(&host.address));
        let _ = writeln!(out, "    port: {}", host.port);
        match &host.host_key {
            Some(key) => {
                let _ = writeln!(out, "    host_key: {}", quote(key));
            }
            None => {
                let _ = writeln!(
                    out,
                    "    # No host key pinned: run `ssh-keyscan -p {} {}`, compare the fingerprint out of band,",
                    host.port,
                    comment(&host.address)
                );
                out.push_str("    # then re-run the import with --known-hosts FILE (or write host_key: \"TYPE KEY\" here).\n");
            }
        }
        let groups: Vec<String> = host.groups.iter().map(|g| quote(g)).collect();
        let _ = writeln!(out, "    groups: [{}]", groups.join(", "));
        match (&host.key, &host.credential) {
            (Some(key), _) => {
                let _ = writeln!(
                    out,
                    "    connect: {{ user: {}, key: {} }}",
                    quote(&host.user),
                    quote(key)
                );
            }
            (None, Some(credential)) => {
                let _ = writeln!(
                    out,
                    "    # Ansible logged in with a password: store it with `rotor enroll {}` (stdin).",
                    comment(credential)
                );
                let _ = writeln!(
                    out,
                    "    connect: {{ user: {}, credential: {} }}",
                    quote(&host.user),
                    quote(credential)
                );
            }
            (None, None) => {}
        }
        if host.accounts.is_empty() {
            out.push_str("    # No accounts: list them here, e.g. - { name: \"svc_app\", playbook: \"linux-password\" }\n");
            out.push_str("    accounts: []\n");
        } else {
            out.push_str("    accounts:\n");
            for account in &host.accounts {
                let _ = writeln!(
                    out,
                    "      - {{ name: {}, playbook: {} }}",
                    quote(&account.name),
                    quote(&account.playbook)
                );
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// known_hosts

/// A known_hosts file, for finding the key of an address: plain names, `[host]:port`,
/// hashed `|1|salt|hash` names, `*`/`?` patterns and `!` negations (sshd(8)). Keys marked
/// `@revoked` are never pinned; `@cert-authority` lines pin no host key of their own.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    entries: Vec<KnownHost>,
    revoked: BTreeSet<String>,
}

#[derive(Debug, Clone)]
struct KnownHost {
    patterns: Vec<String>,
    key_type: String,
    key: String,
}

/// The host key types rotor pins, most preferred first.
const PREFERRED_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp521",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp256",
    "ssh-rsa",
];

impl KnownHosts {
    pub fn parse(text: &str) -> KnownHosts {
        let mut file = KnownHosts::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let first = fields.next().unwrap_or_default();
            let (marker, names) = if first.starts_with('@') {
                (Some(first), fields.next().unwrap_or_default())
            } else {
                (None, first)
            };
            let (Some(key_type), Some(key)) = (fields.next(), fields.next()) else {
                continue;
            };
            match marker {
                Some("@revoked") => {
                    file.revoked.insert(key.to_owned());
                }
                Some(_) => {}
                None => file.entries.push(KnownHost {
                    patterns: names.split(',').map(str::to_owned).collect(),
                    key_type: key_type.to_owned(),
                    key: key.to_owned(),
                }),
            }
        }
        file
    }

    /// The key line (`TYPE BASE64`) to pin for `address` on `port`: the name an OpenSSH
    /// client records (`address`, or `[address]:port` off port 22), preferring ed25519.
    pub fn find(&self, address: &str, port: u16) -> Option<String> {
        let name = if port == 22 {
            address.to_ascii_lowercase()
        } else {
            format!("[{}]:{port}", address.to_ascii_lowercase())
        };
        let matching: Vec<&KnownHost> = self
            .entries
            .iter()
            .filter(|e| !self.revoked.contains(&e.key) && names_match(&e.patterns, &name))
            .collect();
        PREFERRED_KEY_TYPES.iter().find_map(|kind| {
            matching
                .iter()
                .find(|e| e.key_type == *kind && key_blob_ok(&e.key_type, &e.key))
                .map(|e| format!("{} {}", e.key_type, e.key))
        })
    }
}

/// The key data decodes and names its own type (a damaged line is not pinned).
fn key_blob_ok(kind: &str, b64: &str) -> bool {
    use base64::Engine as _;
    let Ok(blob) = base64::engine::general_purpose::STANDARD.decode(b64) else {
        return false;
    };
    let Some(len) = blob.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()) else {
        return false;
    };
    let len = u32::from_be_bytes(len) as usize;
    blob.get(4..4 + len) == Some(kind.as_bytes())
}

/// sshd's rule: some pattern matches and no negated one does.
fn names_match(patterns: &[String], name: &str) -> bool {
    let mut matched = false;
    for pattern in patterns {
        if let Some(negated) = pattern.strip_prefix('!') {
            if glob(&negated.to_ascii_lowercase(), name) {
                return false;
            }
        } else if pattern.starts_with("|1|") {
            matched |= hashed_match(pattern, name);
        } else {
            matched |= glob(&pattern.to_ascii_lowercase(), name);
        }
    }
    matched
}

/// `|1|SALT|HASH`: HMAC-SHA1 of the name keyed with the salt (both base64).
fn hashed_match(pattern: &str, name: &str) -> bool {
    use base64::Engine as _;
    use hmac::Mac as _;
    let mut parts = pattern.trim_start_matches("|1|").split('|');
    let (Some(salt), Some(hash)) = (parts.next(), parts.next()) else {
        return false;
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let (Ok(salt), Ok(hash)) = (b64.decode(salt), b64.decode(hash)) else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// `*` and `?` wildcards, as in ssh's `match_pattern`.
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

// ---------------------------------------------------------------------------------------
// The hint for `inventory check`

/// Whether `text` looks like an Ansible inventory rather than a rotor one: INI section
/// headers (`[web]`, `[web:vars]`) over host or `key=value` lines, or YAML whose top level
/// is `all:` or groups with `hosts:`/`children:` (or an inventory plugin's `plugin:`).
pub fn looks_like_ansible(text: &str) -> bool {
    if let Ok(doc) = read::parse_yaml(text)
        && let Node::Map(entries) = &doc.value
    {
        if entries.iter().any(|(k, _)| k.value.0 == "version") {
            return false;
        }
        if read::plugin_name(&doc.value).is_some() {
            return true;
        }
        return entries.iter().any(|(key, value)| {
            let Node::Map(inner) = &value.value else {
                return key.value.0 == "all" && matches!(value.value, Node::Null);
            };
            inner
                .iter()
                .any(|(k, _)| matches!(k.value.0.as_str(), "hosts" | "children" | "vars"))
        });
    }
    let mut n_sections = 0;
    let mut n_entries = 0;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            if read_section(line) {
                n_sections += 1;
                continue;
            }
            return false;
        }
        // A host pattern, or the name of a `key=value` var (whatever its value holds).
        let first = line.split_whitespace().next().unwrap_or("");
        let first = first.split('=').next().unwrap_or("");
        let host_like = !first.ends_with(':')
            && !first.starts_with('-')
            && first.chars().all(|c| {
                c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']' | '=')
            });
        if !host_like {
            return false;
        }
        n_entries += 1;
    }
    n_sections > 0 && n_entries > 0
}

fn read_section(line: &str) -> bool {
    let Some(inside) = line.strip_prefix('[').and_then(|l| l.split(']').next()) else {
        return false;
    };
    let (name, tag) = inside.split_once(':').unwrap_or((inside, "hosts"));
    !name.is_empty()
        && !name.contains(char::is_whitespace)
        && matches!(tag, "hosts" | "children" | "vars")
}

/// Adds the hint to an inventory error when the file looks like an Ansible inventory.
pub(super) fn hint(err: InventoryError, text: &str, path: &Path) -> InventoryError {
    match err {
        InventoryError::Invalid {
            mut problems,
            n_more,
        } if looks_like_ansible(text) => {
            problems.push(Problem::new(
                path,
                (0, 0),
                "",
                ProblemKind::Unsupported,
                format!(
                    "this looks like an Ansible inventory: run `rotor inventory import ansible {}`",
                    path.display()
                ),
            ));
            InventoryError::Invalid { problems, n_more }
        }
        other => other,
    }
}

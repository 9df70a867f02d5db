//! Playbooks as recipes: a playbook is a YAML file that says, for one kind of credential on one
//! platform, which steps read a restore point, set the new credential, prove it, undo the
//! change and retire the old credential. Built-in playbooks (`playbooks/*.yaml`) are compiled
//! in; an inventory's `playbooks_dir:` adds the user's own.
//!
//! - `template`: `{placeholders}`, parsed when the playbook loads.
//! - `load`: YAML into a [`Recipe`], every check made there (file, line and a fix for each
//!   problem), so a bad playbook is refused before anything runs on any host.
//! - `run`: the interpreter, [`RecipeHost`], which runs recipes over a [`Shell`] (one admin
//!   session to a host) and implements [`crate::target::Target`]; its `scan_host` reads a
//!   host for `rotor scan` and the breach survey (keys through `keys`, logins through
//!   `sessions`).
//!
//! Invariants:
//! - A secret (`{secret}`, `{saved.NAME}`) is only ever substituted into a step's stdin or a
//!   file's content, never into a command line: `load` refuses a playbook that tries.
//! - A variable's value is checked against its kind (`path`, `command`, `word`) so that it
//!   cannot carry shell syntax into a command line.
//! - No error built here carries a step's output (see `run`).

mod keys;
mod load;
mod run;
mod sessions;
mod template;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use self::keys::kept_lines;
pub use self::load::{PlaybookError, load_file, parse};
pub(crate) use self::run::ended;
pub use self::run::{AuthorizedKeys, RecipeHost, Shell};
pub use self::template::Template;
use crate::inventory::Problem;
use crate::target::CredentialKind;

/// The playbooks compiled into rotor: file name and text.
const BUILT_IN: &[(&str, &str)] = &[
    (
        "playbooks/linux-password.yaml",
        include_str!("../../playbooks/linux-password.yaml"),
    ),
    (
        "playbooks/linux-ssh-key.yaml",
        include_str!("../../playbooks/linux-ssh-key.yaml"),
    ),
    (
        "playbooks/ldap-password.yaml",
        include_str!("../../playbooks/ldap-password.yaml"),
    ),
    (
        "playbooks/app-config-password.yaml",
        include_str!("../../playbooks/app-config-password.yaml"),
    ),
];

/// One validated playbook ("parse, don't validate": everything here was checked by `load`).
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    pub name: String,
    pub kind: CredentialKind,
    pub description: String,
    pub source: Source,
    pub secret: SecretRules,
    /// The variables it declares, by name.
    pub vars: BTreeMap<String, VarSpec>,
    pub body: Body,
    /// The line of its `name:`, for messages about the name.
    pub name_line: u64,
}

/// Where a playbook came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    BuiltIn,
    File(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::BuiltIn => f.write_str("built-in"),
            Source::File(path) => write!(f, "{}", crate::text::escape(&path.display().to_string())),
        }
    }
}

/// What a playbook does.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// Steps over a host's SSH session.
    Steps(Steps),
    /// A platform adapter written in Rust that the playbook names (`ldap`: the directory
    /// adapter in `target::directory`); it has no steps and is not run on hosts.
    Adapter(String),
}

/// A recipe's steps, phase by phase (DESIGN.md, "The rotation protocol").
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Steps {
    pub read_restore_point: Vec<Step>,
    pub set: Vec<Step>,
    pub prove: Vec<Step>,
    pub undo: Vec<Step>,
    pub retire: Vec<Step>,
    /// The restore point's parts, in the order `read_restore_point` saves them.
    pub parts: Vec<String>,
    /// The part that holds a password hash (`holds`, the locked-account refusal), if any.
    pub password_hash: Option<String>,
}

/// One step: a command over the host's session, or a built-in action.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Command(Command),
    /// A fresh SSH login as the account with the secret as its password.
    PasswordLogin,
    /// A fresh SSH login as the account with the secret as its private key.
    KeyLogin,
    /// Keeps a file's content as a part of the restore point.
    ReadFile {
        path: Template,
        save: String,
    },
    /// Replaces a file atomically (temporary file in its directory, then rename), keeping its
    /// owner, group and mode; the content goes on stdin.
    WriteFile {
        path: Template,
        content: Template,
        replace_line: Option<ReplaceLine>,
    },
    /// A command that must end with an expected exit status (a proof, when in `prove`).
    Check(Command),
    /// Keeps the `authorized_keys` entries rotor manages as a part of the restore point.
    AuthorizedKeysRead {
        save: String,
    },
    /// Adds the new key's public half to `authorized_keys`.
    AuthorizedKeysAdd,
    /// Removes a rotor key from `authorized_keys`.
    AuthorizedKeysRemove {
        which: WhichKey,
    },
}

/// Which key an `authorized-keys-remove` takes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhichKey {
    /// The key being rotated in (undo).
    New,
    /// The rotor keys the restore point lists (retire, after the new key is current).
    Previous,
}

/// A command step.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub run: Template,
    /// `run` as written, for messages (never holds a secret: `load` checks it).
    pub run_text: String,
    pub stdin: Option<Template>,
    pub expect_status: i32,
    /// The exit status that means the account does not exist.
    pub missing_exit: Option<i32>,
    pub save: Option<Save>,
    /// What the error says when the step fails, instead of the phase's default words.
    pub failure: Option<String>,
}

/// What a `read_restore_point` command keeps of its stdout.
#[derive(Debug, Clone, PartialEq)]
pub struct Save {
    pub name: String,
    /// Keep only this field (1-based) of the one line whose first field is the account.
    pub field: Option<usize>,
    pub separator: String,
}

/// `replace_line:` of a `write-file`: every line matching `matching` becomes `with`.
#[derive(Debug, Clone)]
pub struct ReplaceLine {
    pub matching: regex_automata::meta::Regex,
    pub matching_text: String,
    pub with: Template,
}

impl PartialEq for ReplaceLine {
    fn eq(&self, other: &ReplaceLine) -> bool {
        self.matching_text == other.matching_text && self.with == other.with
    }
}

/// Constraints a target puts on the secret, intersected with the account's policy
/// ([`SecretRules::constrain`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecretRules {
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
    /// Characters the target cannot take (a config file's comment character, say).
    pub exclude: String,
}

impl SecretRules {
    /// The account's policy as this playbook can use it: the playbook's excluded characters
    /// added. A policy length outside the playbook's bounds is an error that says which.
    pub fn constrain(
        &self,
        policy: &crate::inventory::Policy,
        playbook: &str,
    ) -> Result<crate::inventory::Policy, String> {
        if let Some(max) = self.max_length.filter(|max| policy.length > *max) {
            return Err(format!(
                "policy `{}` makes passwords of {} characters, but playbook `{playbook}` takes at most {max}: give the account a policy with `length: {max}` or less",
                policy.name, policy.length
            ));
        }
        if let Some(min) = self.min_length.filter(|min| policy.length < *min) {
            return Err(format!(
                "policy `{}` makes passwords of {} characters, but playbook `{playbook}` needs at least {min}: give the account a policy with `length: {min}` or more",
                policy.name, policy.length
            ));
        }
        let mut out = policy.clone();
        for c in self.exclude.chars() {
            if !out.exclude.contains(c) {
                out.exclude.push(c);
            }
        }
        Ok(out)
    }
}

/// A variable a playbook declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarSpec {
    pub kind: VarKind,
    pub default: Option<String>,
    pub description: String,
}

/// What a variable's value may be. Each kind is safe in a command line unquoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarKind {
    /// An absolute path of `[A-Za-z0-9._/-]`, no `..`.
    Path,
    /// A command: words of `[A-Za-z0-9._/=:,+@%-]` separated by single spaces.
    Command,
    /// One word of `[A-Za-z0-9._-]`.
    Word,
}

impl VarKind {
    pub const ALL: [VarKind; 3] = [VarKind::Path, VarKind::Command, VarKind::Word];

    pub fn name(self) -> &'static str {
        match self {
            VarKind::Path => "path",
            VarKind::Command => "command",
            VarKind::Word => "word",
        }
    }

    /// `Err` says what is wrong with `value` and what to write instead.
    pub fn check(self, value: &str) -> Result<(), String> {
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        match self {
            VarKind::Path => {
                if !value.starts_with('/') {
                    return Err(format!(
                        "`{value}` is not an absolute path: write it from `/`, e.g. /etc/emr/app.conf"
                    ));
                }
                if let Some(bad) = value.chars().find(|c| !plain(*c) && *c != '/') {
                    return Err(format!(
                        "`{value}` holds {}, which could carry shell syntax into a command line: a path may use letters, digits, '.', '_', '-' and '/'",
                        describe(bad)
                    ));
                }
                if value.split('/').any(|part| part == "..") {
                    return Err(format!(
                        "`{value}` climbs with `..`: write the path it means directly"
                    ));
                }
                Ok(())
            }
            VarKind::Command => {
                let word =
                    |c: char| plain(c) || matches!(c, '/' | '=' | ':' | ',' | '+' | '@' | '%');
                if value.is_empty() || value.split(' ').any(str::is_empty) {
                    return Err(format!(
                        "`{value}` is not a command: write words separated by single spaces, e.g. `systemctl reload emr-app`"
                    ));
                }
                if let Some(bad) = value.chars().find(|c| !word(*c) && *c != ' ') {
                    return Err(format!(
                        "`{value}` holds {}, which is shell syntax: a command is words of letters, digits and . _ - / = : , + @ %; put anything more in a script on the host and name the script",
                        describe(bad)
                    ));
                }
                Ok(())
            }
            VarKind::Word => {
                if value.is_empty() || !value.chars().all(plain) {
                    return Err(format!(
                        "`{value}` is not a word: use letters, digits, '.', '_' and '-'"
                    ));
                }
                Ok(())
            }
        }
    }
}

fn describe(c: char) -> String {
    if c.is_control() || c == ' ' {
        format!("the character U+{:04X}", c as u32)
    } else {
        format!("`{c}`")
    }
}

/// The playbooks available to an inventory: the built-ins and those of its `playbooks_dir`.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    recipes: BTreeMap<String, Arc<Recipe>>,
}

impl Catalog {
    /// The built-in playbooks alone (parsed once per process).
    pub fn built_in() -> Catalog {
        static BUILT: std::sync::LazyLock<Catalog> =
            std::sync::LazyLock::new(Catalog::parse_built_in);
        BUILT.clone()
    }

    fn parse_built_in() -> Catalog {
        let mut recipes = BTreeMap::new();
        for (file, text) in BUILT_IN {
            // The built-in texts are part of the binary and a unit test parses each, so a
            // failure here is a build defect, not an input error.
            let mut recipe = parse(text, Path::new(file)).expect("built-in playbooks parse");
            recipe.source = Source::BuiltIn;
            recipes.insert(recipe.name.clone(), Arc::new(recipe));
        }
        Catalog { recipes }
    }

    /// The built-ins plus every `*.yaml` in `dir`. Every problem of every file is collected;
    /// a user playbook may not take a built-in's name (nor another file's).
    pub fn with_dir(dir: &Path) -> Result<Catalog, PlaybookError> {
        let mut catalog = Catalog::built_in();
        let entries = std::fs::read_dir(dir).map_err(|cause| PlaybookError::Unreadable {
            path: dir.to_owned(),
            why: cause.to_string(),
        })?;
        let mut files: Vec<PathBuf> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|cause| PlaybookError::Unreadable {
                path: dir.to_owned(),
                why: cause.to_string(),
            })?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
        files.sort();
        let mut problems: Vec<Problem> = Vec::new();
        for file in files {
            match load::load_file(&file) {
                Ok(recipe) => match catalog.clash(&recipe) {
                    Some(problem) => problems.push(problem),
                    None => {
                        catalog
                            .recipes
                            .insert(recipe.name.clone(), Arc::new(recipe));
                    }
                },
                Err(PlaybookError::Invalid { problems: found }) => problems.extend(found),
                Err(e) => return Err(e),
            }
        }
        if problems.is_empty() {
            Ok(catalog)
        } else {
            Err(PlaybookError::Invalid { problems })
        }
    }

    /// The problem with adding `recipe` (read from a file) here: its name is taken.
    pub fn clash(&self, recipe: &Recipe) -> Option<Problem> {
        let other = self.recipes.get(&recipe.name)?;
        let Source::File(file) = &recipe.source else {
            return None;
        };
        // The built-in's own file (`playbook check playbooks/linux-password.yaml`) is no clash.
        let as_built_in = Recipe {
            source: Source::BuiltIn,
            ..recipe.clone()
        };
        if **other == as_built_in {
            return None;
        }
        let why = match &other.source {
            Source::BuiltIn => format!(
                "playbook `{}` is built into rotor; a playbook of your own may not replace it silently: give this one another name (e.g. `site-{}`) and name that in the inventory",
                recipe.name, recipe.name
            ),
            Source::File(first) => format!(
                "playbook `{}` is also defined in {}: playbook names must be unique; rename one",
                recipe.name,
                first.display()
            ),
        };
        Some(Problem::new(
            file,
            (recipe.name_line, 0),
            "name",
            crate::inventory::ProblemKind::Duplicate,
            why,
        ))
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Recipe>> {
        self.recipes.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.recipes.keys().map(String::as_str)
    }

    pub fn recipes(&self) -> impl Iterator<Item = &Arc<Recipe>> {
        self.recipes.values()
    }
}

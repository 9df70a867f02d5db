//! From a playbook's YAML to a [`Recipe`]: serde reads the file into raw shapes that deny
//! unknown keys, then every check is made here, each failure a [`Problem`] with the file, the
//! line and a fix. Problems are worded and cut by the inventory's machinery
//! (`inventory::from_serde`, `Problem::new`'s `tame`, `did_you_mean`), so a playbook's
//! errors read like an inventory's.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::template::{Piece, Template, is_name};
use super::{
    Body, Command, Recipe, ReplaceLine, Save, SecretRules, Source, Step, Steps, VarKind, VarSpec,
    WhichKey,
};
use crate::inventory::{Problem, ProblemKind, close_matches, did_you_mean};
use crate::target::CredentialKind;

/// The largest playbook file rotor reads.
pub const MAX_PLAYBOOK_BYTES: u64 = 1024 * 1024;

/// The phases a playbook's `steps:` may name, in protocol order.
const PHASES: &[&str] = &["read_restore_point", "set", "prove", "undo", "retire"];

/// The built-in actions a step may name.
const ACTIONS: &[&str] = &[
    "ssh-password-login",
    "ssh-key-login",
    "read-file",
    "write-file",
    "check",
    "authorized-keys-read",
    "authorized-keys-add",
    "authorized-keys-remove",
];

/// The Rust adapters a playbook may name instead of steps.
const ADAPTERS: &[&str] = &["ldap"];

/// Placeholders rotor fills itself; a variable may not take their names.
const RESERVED: &[&str] = &["account", "host", "home", "secret", "saved"];

/// Why a playbook could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PlaybookError {
    /// The file or directory could not be read.
    #[error("{}: cannot read the playbook: {why}", crate::text::escape(&path.display().to_string()))]
    Unreadable {
        path: std::path::PathBuf,
        why: String,
    },
    /// Read, but not a valid playbook: every problem found.
    #[error("{}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid { problems: Vec<Problem> },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipe {
    name: Spanned<String>,
    kind: Spanned<String>,
    description: Spanned<String>,
    secret: Option<Spanned<RawSecret>>,
    #[serde(default)]
    vars: HashMap<Spanned<String>, Spanned<RawVar>>,
    adapter: Option<Spanned<String>>,
    steps: Option<Spanned<RawSteps>>,
}

/// `steps:` by phase name; a map rather than a struct so that an unknown phase is worded as
/// a step, with the phases and a did-you-mean.
type RawSteps = BTreeMap<String, Spanned<Vec<Spanned<RawStep>>>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    min_length: Option<Spanned<u64>>,
    max_length: Option<Spanned<u64>>,
    exclude: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVar {
    kind: Spanned<String>,
    default: Option<Spanned<String>>,
    description: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    run: Option<Spanned<String>>,
    action: Option<Spanned<String>>,
    stdin: Option<Spanned<String>>,
    expect_status: Option<Spanned<i64>>,
    missing_exit: Option<Spanned<i64>>,
    save: Option<Spanned<String>>,
    field: Option<Spanned<u64>>,
    separator: Option<Spanned<String>>,
    password_hash: Option<Spanned<bool>>,
    failure: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    content: Option<Spanned<String>>,
    replace_line: Option<Spanned<RawReplaceLine>>,
    key: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReplaceLine {
    matching: Spanned<String>,
    with: Spanned<String>,
}

pub(super) fn problem_at(
    file: &Path,
    location: (u64, u64),
    field: impl Into<String>,
    kind: ProblemKind,
    message: impl Into<String>,
) -> Problem {
    Problem::new(file, location, field, kind, message)
}

/// Reads and validates the playbook file at `path`.
pub fn load_file(path: &Path) -> Result<Recipe, PlaybookError> {
    let text = crate::inventory::read_text(path, MAX_PLAYBOOK_BYTES).map_err(|why| {
        PlaybookError::Unreadable {
            path: path.to_owned(),
            why,
        }
    })?;
    parse(&text, path)
}

/// Validates playbook `text`; `file` is where it came from (for messages and its source).
pub fn parse(text: &str, file: &Path) -> Result<Recipe, PlaybookError> {
    let invalid = |problems| PlaybookError::Invalid { problems };
    if text.trim().is_empty() {
        return Err(invalid(vec![problem_at(
            file,
            (0, 0),
            "",
            ProblemKind::MissingField,
            "the playbook is empty: start it with `name:`, `kind: password` and `description:`, then `steps:`",
        )]));
    }
    let mut options = serde_saphyr::Options::default();
    // An inventory or a playbook has no use for thousands of aliases; the reader's own cap
    // (50,000) would let a hostile file cost seconds of CPU before it is refused.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_aliases = crate::inventory::MAX_YAML_ALIASES;
    options.budget = Some(budget);
    options.with_snippet = false;
    let mut track = serde_path_to_error::Track::new();
    let raw = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        RawRecipe::deserialize(serde_path_to_error::Deserializer::new(de, &mut track))
    })
    .map_err(|err| {
        invalid(vec![crate::inventory::from_serde(
            &err,
            &track.path(),
            file,
        )])
    })?;
    let mut checker = Checker {
        file,
        text,
        problems: Vec::new(),
    };
    let recipe = checker.recipe(raw);
    checker.problems.sort_by_key(|p| (p.line, p.column));
    match recipe {
        Some(recipe) if checker.problems.is_empty() => Ok(recipe),
        _ => Err(invalid(checker.problems)),
    }
}

struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
    problems: Vec<Problem>,
}

fn at(location: Location) -> (u64, u64) {
    (location.line(), location.column())
}

/// What a template may hold, by where it is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    /// A command line or a path: no secret.
    CommandLine,
    /// stdin or a file's content: secrets allowed.
    Input,
}

/// What the steps of one phase may use.
struct Phase<'a> {
    name: &'static str,
    kind: CredentialKind,
    vars: &'a BTreeMap<String, VarSpec>,
    /// Parts saved so far (in `read_restore_point`) or all of them (later phases).
    parts: Vec<String>,
    password_hash: Option<String>,
}

impl Checker<'_> {
    /// Where a mapping key is written, for a problem with the key itself: serde gives the
    /// value's place (the line below the key, for a block list), so the key is looked for on
    /// that line and the ones above it.
    fn key_line(&self, key: &str, value: Location) -> (u64, u64) {
        let line = value.line() as usize;
        let lines: Vec<&str> = self.text.lines().collect();
        for idx in (line.saturating_sub(3)..line.min(lines.len())).rev() {
            if let Some(col) = lines[idx].find(&format!("{key}:")) {
                return (idx as u64 + 1, col as u64 + 1);
            }
        }
        at(value)
    }

    fn report(
        &mut self,
        location: Location,
        field: impl Into<String>,
        kind: ProblemKind,
        message: impl Into<String>,
    ) {
        self.problems
            .push(problem_at(self.file, at(location), field, kind, message));
    }

    fn recipe(&mut self, raw: RawRecipe) -> Option<Recipe> {
        let name = raw.name.value.clone();
        if !is_playbook_name(&name) {
            self.report(
                raw.name.referenced,
                "name",
                ProblemKind::InvalidValue,
                format!(
                    "`{name}` is not a playbook name: use lowercase letters, digits and '-', e.g. `app-config-password`"
                ),
            );
        }
        let kind = match raw.kind.value.as_str() {
            "password" => Some(CredentialKind::Password),
            "ssh-key" => Some(CredentialKind::SshKey),
            other => {
                self.report(
                    raw.kind.referenced,
                    "kind",
                    ProblemKind::InvalidValue,
                    format!(
                        "unknown kind `{other}`: a playbook's kind is `password` or `ssh-key`{}",
                        did_you_mean(other, ["password", "ssh-key"].into_iter())
                    ),
                );
                None
            }
        };
        let secret = raw.secret.map(|s| self.secret(s)).unwrap_or_default();
        let vars = self.vars(raw.vars);
        let body = match (raw.adapter, raw.steps) {
            (Some(adapter), None) => {
                if ADAPTERS.contains(&adapter.value.as_str()) {
                    Some(Body::Adapter(adapter.value))
                } else {
                    self.report(
                        adapter.referenced,
                        "adapter",
                        ProblemKind::UnknownReference,
                        format!(
                            "unknown adapter `{}`: rotor's adapters are {}; a playbook of your own describes its work with `steps:` instead",
                            adapter.value,
                            ADAPTERS.join(", ")
                        ),
                    );
                    None
                }
            }
            (Some(adapter), Some(_)) => {
                self.report(
                    adapter.referenced,
                    "adapter",
                    ProblemKind::InvalidValue,
                    "a playbook names an adapter or lists steps, not both: remove one",
                );
                None
            }
            (None, None) => {
                self.report(
                    raw.name.referenced,
                    "steps",
                    ProblemKind::MissingField,
                    "the playbook has no `steps:`: add read_restore_point, set, prove and undo",
                );
                None
            }
            (None, Some(steps)) => match kind {
                Some(kind) => self.steps(steps, kind, &vars).map(Body::Steps),
                None => None,
            },
        };
        Some(Recipe {
            name,
            kind: kind?,
            description: raw.description.value,
            source: Source::File(self.file.to_owned()),
            secret,
            vars,
            body: body?,
            name_line: raw.name.referenced.line(),
        })
    }

    fn secret(&mut self, raw: Spanned<RawSecret>) -> SecretRules {
        let raw = raw.value;
        let length = |this: &mut Self, value: Option<Spanned<u64>>, field: &str| {
            let value = value?;
            if (12..=128).contains(&value.value) {
                Some(value.value as usize)
            } else {
                this.report(
                    value.referenced,
                    format!("secret.{field}"),
                    ProblemKind::InvalidValue,
                    format!(
                        "{} is outside 12 to 128 characters, the lengths rotor generates: e.g. `{field}: 64`",
                        value.value
                    ),
                );
                None
            }
        };
        let min_length = length(self, raw.min_length, "min_length");
        let max_length = length(self, raw.max_length, "max_length");
        SecretRules {
            min_length,
            max_length,
            exclude: raw.exclude.map(|e| e.value).unwrap_or_default(),
        }
    }

    fn vars(
        &mut self,
        raw: HashMap<Spanned<String>, Spanned<RawVar>>,
    ) -> BTreeMap<String, VarSpec> {
        let mut sorted: Vec<_> = raw.into_iter().collect();
        sorted.sort_by_key(|(name, _)| name.referenced.line());
        let mut vars = BTreeMap::new();
        for (name, spec) in sorted {
            let field = format!("vars.{}", name.value);
            if !is_name(&name.value) || RESERVED.contains(&name.value.as_str()) {
                self.report(
                    name.referenced,
                    &field,
                    ProblemKind::InvalidValue,
                    format!(
                        "`{}` cannot name a variable: use lowercase letters, digits and '_' (not account, host, home, secret or saved, which rotor fills itself)",
                        name.value
                    ),
                );
                continue;
            }
            let spec = spec.value;
            let Some(kind) = VarKind::ALL
                .into_iter()
                .find(|k| k.name() == spec.kind.value)
            else {
                let names: Vec<&str> = VarKind::ALL.iter().map(|k| k.name()).collect();
                self.report(
                    spec.kind.referenced,
                    format!("{field}.kind"),
                    ProblemKind::InvalidValue,
                    format!(
                        "unknown variable kind `{}`: use one of {}{}",
                        spec.kind.value,
                        names.join(", "),
                        did_you_mean(&spec.kind.value, names.iter().copied())
                    ),
                );
                continue;
            };
            if let Some(default) = &spec.default
                && let Err(why) = kind.check(&default.value)
            {
                self.report(
                    default.referenced,
                    format!("{field}.default"),
                    ProblemKind::InvalidValue,
                    why,
                );
                continue;
            }
            vars.insert(
                name.value,
                VarSpec {
                    kind,
                    default: spec.default.map(|d| d.value),
                    description: spec.description.value,
                },
            );
        }
        vars
    }

    fn steps(
        &mut self,
        raw: Spanned<RawSteps>,
        kind: CredentialKind,
        vars: &BTreeMap<String, VarSpec>,
    ) -> Option<Steps> {
        let steps_at = raw.referenced;
        let mut by_phase: BTreeMap<&'static str, Spanned<Vec<Spanned<RawStep>>>> = BTreeMap::new();
        let mut phases: Vec<_> = raw.value.into_iter().collect();
        phases.sort_by_key(|(_, list)| list.referenced.line());
        // Phases an unknown step was probably meant to be: their absence is not reported
        // again (the unknown step's message names them).
        let mut meant: Vec<&str> = Vec::new();
        for (name, list) in phases {
            match PHASES.iter().find(|p| **p == name) {
                Some(phase) => {
                    by_phase.insert(phase, list);
                }
                None => {
                    let (hint, phase) = match name.as_str() {
                        "verify" => ("; the proof is `prove`".to_owned(), Some("prove")),
                        "restore" | "rollback" => (
                            "; putting the old credential back is `undo`".to_owned(),
                            Some("undo"),
                        ),
                        "restore_point" => (
                            "; reading what undo needs is `read_restore_point`".to_owned(),
                            Some("read_restore_point"),
                        ),
                        other => (
                            did_you_mean(other, PHASES.iter().copied()),
                            close_matches(other, PHASES.iter().copied())
                                .first()
                                .copied(),
                        ),
                    };
                    meant.extend(phase);
                    let line = self.key_line(&name, list.referenced);
                    self.problems.push(problem_at(
                        self.file,
                        line,
                        format!("steps.{name}"),
                        ProblemKind::UnknownField,
                        format!(
                            "unknown step `{name}`: a playbook's steps are {}{hint}",
                            PHASES.join(", ")
                        ),
                    ));
                }
            }
        }
        let mut out = Steps::default();
        let mut phase = Phase {
            name: "read_restore_point",
            kind,
            vars,
            parts: Vec::new(),
            password_hash: None,
        };
        for name in PHASES {
            phase.name = name;
            let list = by_phase.remove(name);
            if list.is_none() && meant.contains(name) {
                continue;
            }
            if list.as_ref().is_none_or(|l| l.value.is_empty()) && *name != "retire" {
                let example = match *name {
                    "read_restore_point" => {
                        "`- run: \"getent shadow -- {account}\"` with `save: hash`"
                    }
                    "set" => "`- run: chpasswd` with `stdin: \"{account}:{secret}\\n\"`",
                    "prove" => "`- action: ssh-password-login`",
                    _ => "`- run: chpasswd -e` with `stdin: \"{account}:{saved.hash}\\n\"`",
                };
                self.report(
                    list.as_ref().map(|l| l.referenced).unwrap_or(steps_at),
                    format!("steps.{name}"),
                    ProblemKind::MissingField,
                    format!(
                        "the playbook has no `{name}` step: every playbook needs read_restore_point, set, prove and undo; add `{name}:` with e.g. {example}"
                    ),
                );
                continue;
            }
            let Some(list) = list else { continue };
            let mut checked = Vec::new();
            for (idx, step) in list.value.into_iter().enumerate() {
                let field = format!("steps.{name}[{idx}]");
                if let Some(step) = self.step(&field, step, &mut phase) {
                    checked.push(step);
                }
            }
            match *name {
                "read_restore_point" => out.read_restore_point = checked,
                "set" => out.set = checked,
                "prove" => out.prove = checked,
                "undo" => out.undo = checked,
                _ => out.retire = checked,
            }
        }
        // A `set` that never hands the target the secret would rotate nothing.
        let applies_secret = out.set.iter().any(|step| {
            matches!(step, Step::AuthorizedKeysAdd)
                || step.templates().any(|t| t.uses(&Piece::Secret))
        });
        if !out.set.is_empty() && !applies_secret {
            self.report(
                steps_at,
                "steps.set",
                ProblemKind::InvalidValue,
                "no `set` step hands the target the new secret: give one `{secret}` in its stdin (e.g. `stdin: \"{account}:{secret}\\n\"`) or in a written file's content",
            );
        }
        out.parts = phase.parts;
        out.password_hash = phase.password_hash;
        Some(out)
    }

    fn template(
        &mut self,
        raw: &Spanned<String>,
        field: &str,
        place: Use,
        phase: &Phase<'_>,
    ) -> Option<Template> {
        let template = match Template::parse(&raw.value) {
            Ok(t) => t,
            Err(why) => {
                self.report(raw.referenced, field, ProblemKind::InvalidValue, why);
                return None;
            }
        };
        let mut ok = true;
        let secrets = template.secrets();
        if place == Use::CommandLine && !secrets.is_empty() {
            self.report(
                raw.referenced,
                field,
                ProblemKind::InvalidValue,
                format!(
                    "{} puts a secret in a command line, where every process on the host can read it: pass it on stdin instead, e.g. `stdin: \"{{account}}:{{secret}}\\n\"`",
                    secrets.join(" and ")
                ),
            );
            ok = false;
        } else if phase.name == "read_restore_point" && !secrets.is_empty() {
            self.report(
                raw.referenced,
                field,
                ProblemKind::InvalidValue,
                format!(
                    "{} is not known yet while the restore point is read: no secret may be used in `read_restore_point`",
                    secrets.join(" and ")
                ),
            );
            ok = false;
        }
        for var in template.vars() {
            if !phase.vars.contains_key(var) {
                let known: Vec<&str> = phase.vars.keys().map(String::as_str).collect();
                let declared = if known.is_empty() {
                    "the playbook declares no variables".to_owned()
                } else {
                    format!("the playbook declares {}", known.join(", "))
                };
                self.report(
                    raw.referenced,
                    field,
                    ProblemKind::UnknownReference,
                    format!(
                        "unknown variable `{{{var}}}`: {declared} (declare it under `vars:`, e.g. `{var}: {{ kind: path, default: /etc/app.conf, description: ... }}`, or use {{account}}, {{host}} or {{home}}){}",
                        did_you_mean(var, known.iter().copied().chain(["account", "host", "home"]))
                    ),
                );
                ok = false;
            }
        }
        if phase.name == "prove" && template.saved().next().is_some() {
            self.report(
                raw.referenced,
                field,
                ProblemKind::InvalidValue,
                "`prove` tests the secret alone, on a fresh login or a check: the restore point is not available there",
            );
            ok = false;
        } else if phase.name != "read_restore_point" {
            for part in template.saved() {
                if !phase.parts.iter().any(|p| p == part) {
                    let known = if phase.parts.is_empty() {
                        "read_restore_point saves no part".to_owned()
                    } else {
                        format!("read_restore_point saves {}", phase.parts.join(", "))
                    };
                    self.report(
                        raw.referenced,
                        field,
                        ProblemKind::UnknownReference,
                        format!(
                            "`{{saved.{part}}}` names no saved part: {known} (to save another, add `save: {part}` to a read_restore_point step){}",
                            did_you_mean(part, phase.parts.iter().map(String::as_str))
                        ),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(template)
    }

    fn step(&mut self, field: &str, raw: Spanned<RawStep>, phase: &mut Phase<'_>) -> Option<Step> {
        let step_at = raw.referenced;
        let raw = raw.value;
        let action = match (&raw.action, &raw.run) {
            (None, None) => {
                self.report(
                    step_at,
                    field,
                    ProblemKind::MissingField,
                    format!(
                        "a step is a command (`run: ...`) or an action (`action: ...`, one of {})",
                        ACTIONS.join(", ")
                    ),
                );
                return None;
            }
            (None, Some(_)) => None,
            (Some(action), _) => {
                if !ACTIONS.contains(&action.value.as_str()) {
                    self.report(
                        action.referenced,
                        format!("{field}.action"),
                        ProblemKind::UnknownReference,
                        format!(
                            "unknown action `{}`: the actions are {}{}",
                            action.value,
                            ACTIONS.join(", "),
                            did_you_mean(&action.value, ACTIONS.iter().copied())
                        ),
                    );
                    return None;
                }
                Some(action.value.clone())
            }
        };
        let n_before = self.problems.len();
        let step = match action.as_deref() {
            None | Some("check") => self.command(field, step_at, &raw, phase, action.is_some()),
            Some(name) => self.action(field, step_at, name, &raw, phase),
        };
        // Fields the step's form does not read are refused, not ignored.
        let allowed: &[&str] = match action.as_deref() {
            None => &[
                "run",
                "stdin",
                "expect_status",
                "missing_exit",
                "save",
                "field",
                "separator",
                "password_hash",
                "failure",
            ],
            Some("check") => &["action", "run", "stdin", "expect_status", "failure"],
            Some("read-file") => &["action", "path", "save"],
            Some("write-file") => &["action", "path", "content", "replace_line"],
            Some("authorized-keys-read") => &["action", "save"],
            Some("authorized-keys-remove") => &["action", "key"],
            Some(_) => &["action"],
        };
        for (name, location) in raw.present() {
            if !allowed.contains(&name) {
                let form = action
                    .as_deref()
                    .map(|a| format!("action `{a}`"))
                    .unwrap_or_else(|| "a command step".to_owned());
                self.report(
                    location,
                    format!("{field}.{name}"),
                    ProblemKind::UnknownField,
                    format!(
                        "{form} does not take `{name}`: allowed here are {}",
                        allowed.join(", ")
                    ),
                );
            }
        }
        if self.problems.len() > n_before {
            return None;
        }
        step
    }

    fn command(
        &mut self,
        field: &str,
        step_at: Location,
        raw: &RawStep,
        phase: &mut Phase<'_>,
        is_check: bool,
    ) -> Option<Step> {
        let Some(run_raw) = &raw.run else {
            self.report(
                step_at,
                field,
                ProblemKind::MissingField,
                "action `check` runs a command: add `run: ...`",
            );
            return None;
        };
        let run = self.template(run_raw, &format!("{field}.run"), Use::CommandLine, phase);
        let stdin = raw
            .stdin
            .as_ref()
            .map(|s| self.template(s, &format!("{field}.stdin"), Use::Input, phase));
        let stdin = match stdin {
            Some(None) => return None,
            Some(Some(t)) => Some(t),
            None => None,
        };
        let status =
            |this: &mut Self, value: &Option<Spanned<i64>>, name: &str| -> Option<Option<i32>> {
                match value {
                    None => Some(None),
                    Some(v) if (0..=255).contains(&v.value) => Some(Some(v.value as i32)),
                    Some(v) => {
                        this.report(
                            v.referenced,
                            format!("{field}.{name}"),
                            ProblemKind::InvalidValue,
                            format!("{} is not an exit status: use 0 to 255", v.value),
                        );
                        None
                    }
                }
            };
        let expect_status = status(self, &raw.expect_status, "expect_status")?.unwrap_or(0);
        let missing_exit = status(self, &raw.missing_exit, "missing_exit")?;
        if let Some(m) = &raw.missing_exit
            && phase.name != "read_restore_point"
        {
            self.report(
                m.referenced,
                format!("{field}.missing_exit"),
                ProblemKind::InvalidValue,
                "`missing_exit` (the account does not exist) belongs to read_restore_point steps",
            );
            return None;
        }
        let save = match &raw.save {
            None => {
                for (name, value) in [
                    ("field", raw.field.as_ref().map(|f| f.referenced)),
                    ("separator", raw.separator.as_ref().map(|s| s.referenced)),
                    (
                        "password_hash",
                        raw.password_hash.as_ref().map(|p| p.referenced),
                    ),
                ] {
                    if let Some(location) = value {
                        self.report(location, format!("{field}.{name}"), ProblemKind::InvalidValue, format!("`{name}` says what to keep of the output, which only a step with `save: NAME` keeps"));
                        return None;
                    }
                }
                None
            }
            Some(save) => {
                let name = self.save_name(field, save, phase)?;
                let field_no = match &raw.field {
                    None => None,
                    Some(f) if f.value >= 1 && f.value <= 64 => Some(f.value as usize),
                    Some(f) => {
                        self.report(
                            f.referenced,
                            format!("{field}.field"),
                            ProblemKind::InvalidValue,
                            format!(
                                "{} is not a field number: fields count from 1, e.g. `field: 2`",
                                f.value
                            ),
                        );
                        return None;
                    }
                };
                let separator = raw
                    .separator
                    .as_ref()
                    .map(|s| s.value.clone())
                    .unwrap_or_else(|| ":".to_owned());
                if separator.is_empty() {
                    self.report(
                        raw.separator
                            .as_ref()
                            .map(|s| s.referenced)
                            .unwrap_or(step_at),
                        format!("{field}.separator"),
                        ProblemKind::InvalidValue,
                        "an empty separator splits nothing: e.g. `separator: \":\"`",
                    );
                    return None;
                }
                if let Some(hash) = &raw.password_hash
                    && hash.value
                {
                    if field_no.is_none()
                        || phase.kind != CredentialKind::Password
                        || phase.password_hash.is_some()
                    {
                        self.report(hash.referenced, format!("{field}.password_hash"), ProblemKind::InvalidValue, "`password_hash: true` marks one field (`field: N`) of a password playbook's restore point, once");
                        return None;
                    }
                    phase.password_hash = Some(name.clone());
                }
                Some(Save {
                    name,
                    field: field_no,
                    separator,
                })
            }
        };
        let command = Command {
            run: run?,
            run_text: run_raw.value.clone(),
            stdin,
            expect_status,
            missing_exit,
            save,
            failure: raw.failure.as_ref().map(|f| f.value.clone()),
        };
        Some(if is_check {
            Step::Check(command)
        } else {
            Step::Command(command)
        })
    }

    fn save_name(
        &mut self,
        field: &str,
        save: &Spanned<String>,
        phase: &mut Phase<'_>,
    ) -> Option<String> {
        if phase.name != "read_restore_point" {
            self.report(save.referenced, format!("{field}.save"), ProblemKind::InvalidValue, "only read_restore_point steps save parts of the restore point; later steps use them as {saved.NAME}");
            return None;
        }
        if !is_name(&save.value) {
            self.report(save.referenced, format!("{field}.save"), ProblemKind::InvalidValue, format!("`{}` cannot name a saved part: use lowercase letters, digits and '_', e.g. `save: hash`", save.value));
            return None;
        }
        if phase.parts.contains(&save.value) {
            self.report(
                save.referenced,
                format!("{field}.save"),
                ProblemKind::Duplicate,
                format!(
                    "`{}` is saved twice: give each part its own name",
                    save.value
                ),
            );
            return None;
        }
        phase.parts.push(save.value.clone());
        Some(save.value.clone())
    }

    fn action(
        &mut self,
        field: &str,
        step_at: Location,
        name: &str,
        raw: &RawStep,
        phase: &mut Phase<'_>,
    ) -> Option<Step> {
        // Where each action may stand, and for which kind of credential.
        let (phases, kind): (&[&str], Option<CredentialKind>) = match name {
            "ssh-password-login" => (&["prove"], Some(CredentialKind::Password)),
            "ssh-key-login" => (&["prove"], Some(CredentialKind::SshKey)),
            "read-file" | "authorized-keys-read" => (&["read_restore_point"], None),
            "write-file" => (&["set", "undo"], None),
            "authorized-keys-add" => (&["set"], Some(CredentialKind::SshKey)),
            _ => (&["undo", "retire"], Some(CredentialKind::SshKey)),
        };
        if !phases.contains(&phase.name) {
            self.report(
                step_at,
                field,
                ProblemKind::InvalidValue,
                format!(
                    "action `{name}` belongs in {}, not in {}",
                    phases.join(" or "),
                    phase.name
                ),
            );
            return None;
        }
        if let Some(kind) = kind.filter(|k| *k != phase.kind) {
            let kind = match kind {
                CredentialKind::Password => "password",
                CredentialKind::SshKey => "ssh-key",
            };
            self.report(
                step_at,
                field,
                ProblemKind::InvalidValue,
                format!("action `{name}` is for `kind: {kind}` playbooks"),
            );
            return None;
        }
        let required = |this: &mut Self,
                        value: &Option<Spanned<String>>,
                        key: &str|
         -> Option<Spanned<String>> {
            match value {
                Some(v) => Some(v.clone()),
                None => {
                    this.report(
                        step_at,
                        format!("{field}.{key}"),
                        ProblemKind::MissingField,
                        format!("action `{name}` needs `{key}:`"),
                    );
                    None
                }
            }
        };
        Some(match name {
            "ssh-password-login" => Step::PasswordLogin,
            "ssh-key-login" => Step::KeyLogin,
            "authorized-keys-add" => Step::AuthorizedKeysAdd,
            "authorized-keys-read" => {
                let save = required(self, &raw.save, "save")?;
                Step::AuthorizedKeysRead {
                    save: self.save_name(field, &save, phase)?,
                }
            }
            "authorized-keys-remove" => {
                let which = match raw.key.as_ref().map(|k| k.value.as_str()) {
                    None if phase.name == "undo" => WhichKey::New,
                    None => WhichKey::Previous,
                    Some("new") => WhichKey::New,
                    Some("previous") => WhichKey::Previous,
                    Some(other) => {
                        self.report(raw.key.as_ref().map(|k| k.referenced).unwrap_or(step_at), format!("{field}.key"), ProblemKind::InvalidValue, format!("`{other}` is not a key to remove: write `key: new` (the key being rotated in) or `key: previous` (the rotor keys the restore point lists)"));
                        return None;
                    }
                };
                Step::AuthorizedKeysRemove { which }
            }
            "read-file" => {
                let path_raw = required(self, &raw.path, "path")?;
                let path =
                    self.template(&path_raw, &format!("{field}.path"), Use::CommandLine, phase)?;
                let save = required(self, &raw.save, "save")?;
                Step::ReadFile {
                    path,
                    save: self.save_name(field, &save, phase)?,
                }
            }
            _ => {
                let path_raw = required(self, &raw.path, "path")?;
                let path =
                    self.template(&path_raw, &format!("{field}.path"), Use::CommandLine, phase)?;
                let content_raw = required(self, &raw.content, "content")?;
                let content =
                    self.template(&content_raw, &format!("{field}.content"), Use::Input, phase)?;
                let replace_line = match &raw.replace_line {
                    None => None,
                    Some(r) => {
                        let pattern = &r.value.matching;
                        let matching = match regex_automata::meta::Regex::new(&pattern.value) {
                            Ok(m) => m,
                            Err(e) => {
                                self.report(pattern.referenced, format!("{field}.replace_line.matching"), ProblemKind::InvalidValue, format!("not a regular expression: {e}; e.g. `matching: \"^password *=\"`"));
                                return None;
                            }
                        };
                        let with = self.template(
                            &r.value.with,
                            &format!("{field}.replace_line.with"),
                            Use::Input,
                            phase,
                        )?;
                        Some(ReplaceLine {
                            matching,
                            matching_text: pattern.value.clone(),
                            with,
                        })
                    }
                };
                if content.uses(&Piece::Secret) && replace_line.is_some() {
                    self.report(content_raw.referenced, format!("{field}.content"), ProblemKind::InvalidValue, "with `replace_line`, `content` is the saved file (`{saved.NAME}`) whose line is replaced");
                    return None;
                }
                Step::WriteFile {
                    path,
                    content,
                    replace_line,
                }
            }
        })
    }
}

impl RawStep {
    /// The keys written in the step, with where.
    fn present(&self) -> Vec<(&'static str, Location)> {
        let mut out = Vec::new();
        macro_rules! key {
            ($($name:ident),*) => {$(
                if let Some(v) = &self.$name {
                    out.push((stringify!($name), v.referenced));
                }
            )*};
        }
        key!(
            run,
            action,
            stdin,
            expect_status,
            missing_exit,
            save,
            field,
            separator,
            password_hash,
            failure,
            path,
            content,
            replace_line,
            key
        );
        out
    }
}

/// A playbook's name: lowercase letters, digits and '-', starting with a letter.
fn is_playbook_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.len() <= 64
}

//! The inventory file as written: serde shapes with source spans and no meaning yet.
//! Every struct denies unknown fields, so a misspelt key is an error, not a silent default
//! (only top-level `x-` keys are ignored, the home of YAML anchors). Values that need
//! checking beyond their YAML type stay strings here; `validate` gives them meaning.
//!
//! [`read`] reports every entry serde cannot read, not only the first: serde stops at the
//! first error, so the entry it was in is left out and the file read again, a bounded number
//! of times. Never a second YAML reader or a re-parse of text slices: every pass is
//! serde-saphyr over the whole file, so lines, columns and messages are the parser's own.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::marker::PhantomData;
use std::path::Path;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use super::InventoryError;
use super::error::{MAX_PROBLEMS, Problem, ProblemKind};

/// The document. Read by [`read`], not derived: an entry serde cannot read is left out
/// (`None`, its index kept for messages) and the rest read again, so that every bad entry
/// is reported, not only the first. Top-level keys that start with `x-` are ignored: the home
/// of YAML anchors (`x-common: &common {...}`, then `<<: *common` in hosts), as in compose files.
#[derive(Debug, Default)]
pub(super) struct RawInventory {
    /// `None` when it could not be read (already reported).
    pub version: Option<Spanned<u64>>,
    /// Where the user's playbooks are (relative to the inventory file).
    pub playbooks_dir: Option<Spanned<String>>,
    pub policies: BTreeMap<String, Spanned<RawPolicy>>,
    pub hosts: Vec<Option<Spanned<RawHost>>>,
    pub directories: Vec<Option<Spanned<RawDirectory>>>,
    /// What was wrong with the entries left out, in the order found.
    pub problems: Vec<Problem>,
    /// Policies defined but unreadable: accounts that name them are not told "unknown policy".
    pub broken_policies: BTreeSet<String>,
}

const TOP_FIELDS: &[&str] = &[
    "version",
    "playbooks_dir",
    "policies",
    "hosts",
    "directories",
];

/// What [`read`] leaves out on its next pass.
#[derive(Default)]
struct Skips {
    keys: BTreeSet<String>,
    policies: BTreeSet<String>,
    hosts: BTreeSet<usize>,
    directories: BTreeSet<usize>,
}

/// Where in the document a problem is, as far as leaving it out goes.
#[derive(Debug, PartialEq)]
enum Entry {
    Key(String),
    Policy(String),
    Host(usize),
    Directory(usize),
}

impl Skips {
    /// Leaves `entry` out; false if it already was (no progress: stop).
    fn insert(&mut self, entry: Entry) -> bool {
        match entry {
            Entry::Key(key) => self.keys.insert(key),
            Entry::Policy(name) => self.policies.insert(name),
            Entry::Host(idx) => self.hosts.insert(idx),
            Entry::Directory(idx) => self.directories.insert(idx),
        }
    }
}

/// The entry a serde error is in, from the path serde had reached (`Spanned` shows up as a
/// `value` key, never a name the user wrote at these levels).
fn entry_of(err: &serde_saphyr::Error, path: &serde_path_to_error::Path) -> Option<Entry> {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path
        .iter()
        .filter(|s| {
            !matches!(s, Segment::Map { key } if key == "value") && !matches!(s, Segment::Unknown)
        })
        .collect();
    match segments.as_slice() {
        [Segment::Map { key }, Segment::Seq { index }, ..] if key == "hosts" => {
            Some(Entry::Host(*index))
        }
        [Segment::Map { key }, Segment::Seq { index }, ..] if key == "directories" => {
            Some(Entry::Directory(*index))
        }
        [Segment::Map { key }, Segment::Map { key: name }, ..] if key == "policies" => {
            Some(Entry::Policy(name.clone()))
        }
        [Segment::Map { key }, ..] => Some(Entry::Key(key.clone())),
        [] => {
            let mut err = err;
            while let serde_saphyr::Error::AliasError { error, .. } = err {
                err = error;
            }
            match err {
                serde_saphyr::Error::SerdeUnknownField { field, .. } => {
                    Some(Entry::Key(field.clone()))
                }
                serde_saphyr::Error::SerdeMissingField { field, .. } => {
                    Some(Entry::Key((*field).to_owned()))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// Passes over a broken inventory before rotor stops and reports what it found: each pass
/// costs one read of the file.
const MAX_PASSES: usize = 2 * MAX_PROBLEMS + 1;

/// The text all passes together may read, so that a large broken inventory is refused in
/// about the time a few reads take (a pass over 2.5 MB, 10,000 hosts, takes seconds in a
/// debug build): a typical inventory gets every pass, a huge one at least two.
const PASS_BUDGET_BYTES: usize = 8 * 1024 * 1024;

/// Reads the document: syntax and shape (types, unknown and missing keys). An entry (a host,
/// a directory, a policy, a top-level key) that serde cannot read is reported and left out,
/// and the file read again without it, so one bad host hides no other's problems. A syntax
/// error stops the reader (what follows cannot be read); it is reported with the problems
/// found so far, or, when a tab indents some line, replaced by a problem on each such line.
pub(super) fn read(text: &str, file: &Path) -> Result<RawInventory, InventoryError> {
    let mut skips = Skips::default();
    let mut problems: Vec<Problem> = Vec::new();
    let passes = (PASS_BUDGET_BYTES / text.len().max(1)).clamp(2, MAX_PASSES);
    for _ in 0..passes {
        let mut track = serde_path_to_error::Track::new();
        let result = serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| {
            InventorySeed { skips: &skips }
                .deserialize(serde_path_to_error::Deserializer::new(de, &mut track))
        });
        let err = match result {
            Ok(mut raw) => {
                raw.problems = problems;
                raw.broken_policies = skips.policies;
                return Ok(raw);
            }
            Err(err) => err,
        };
        let path = track.path();
        let problem = super::error::from_serde(&err, &path, file);
        let local = matches!(
            problem.kind,
            ProblemKind::UnknownField
                | ProblemKind::MissingField
                | ProblemKind::WrongType
                | ProblemKind::Duplicate
        );
        let progress = local && entry_of(&err, &path).is_some_and(|entry| skips.insert(entry));
        if !progress {
            if problem.kind == ProblemKind::Syntax {
                let tabs = tab_problems(text, file);
                if !tabs.is_empty() {
                    problems.extend(tabs);
                    return Err(invalid(problems));
                }
            }
            // Leaving an entry out can reach the syntax error that made it unreadable: it
            // is said once, at that place.
            if !problems
                .iter()
                .any(|p| (p.line, p.column) == (problem.line, problem.column))
            {
                problems.push(problem);
            }
            return Err(invalid(problems));
        }
        problems.push(problem);
    }
    problems.push(Problem::new(
        file,
        (0, 0),
        "",
        ProblemKind::Syntax,
        format!(
            "rotor stopped after reading the file {passes} times: more entries may be wrong; fix these and check again"
        ),
    ));
    Err(invalid(problems))
}

fn invalid(mut problems: Vec<Problem>) -> InventoryError {
    problems.sort_by_key(|p| (p.line, p.column));
    let n_more = problems.len().saturating_sub(MAX_PROBLEMS);
    problems.truncate(MAX_PROBLEMS);
    InventoryError::Invalid { problems, n_more }
}

/// One problem per line indented with a tab (YAML forbids them; parsers word it variously).
fn tab_problems(text: &str, file: &Path) -> Vec<Problem> {
    text.lines()
        .enumerate()
        .filter_map(|(idx, line)| {
            let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
            let col = line[..indent].find('\t')?;
            (indent < line.len()).then(|| {
                Problem::new(
                    file,
                    (idx as u64 + 1, col as u64 + 1),
                    "",
                    ProblemKind::Syntax,
                    "YAML forbids tabs: use spaces to indent this line",
                )
            })
        })
        .collect()
}

/// rotor's YAML reader options.
fn options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    // An inventory or a playbook has no use for thousands of aliases; the reader's own cap
    // (50,000) would let a hostile file cost seconds of CPU before it is refused.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_aliases = crate::inventory::MAX_YAML_ALIASES;
    options.budget = Some(budget);
    // We print our own one-line messages with file:line:column; no source snippets.
    options.with_snippet = false;
    options
}

struct InventorySeed<'a> {
    skips: &'a Skips,
}

impl<'de> DeserializeSeed<'de> for InventorySeed<'_> {
    type Value = RawInventory;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<RawInventory, D::Error> {
        de.deserialize_struct("RawInventory", TOP_FIELDS, self)
    }
}

impl<'de> Visitor<'de> for InventorySeed<'_> {
    type Value = RawInventory;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("struct RawInventory")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawInventory, A::Error> {
        let mut raw = RawInventory::default();
        let mut seen = BTreeSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if key.starts_with("x-") || self.skips.keys.contains(&key) {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if !seen.insert(key.clone()) {
                let field = TOP_FIELDS
                    .iter()
                    .find(|f| **f == key)
                    .copied()
                    .unwrap_or("a key");
                return Err(de::Error::duplicate_field(field));
            }
            match key.as_str() {
                "version" => raw.version = Some(map.next_value()?),
                "playbooks_dir" => raw.playbooks_dir = map.next_value()?,
                "policies" => {
                    raw.policies = map.next_value_seed(Policies {
                        skip: &self.skips.policies,
                    })?
                }
                "hosts" => {
                    raw.hosts = map.next_value_seed(Entries {
                        skip: &self.skips.hosts,
                        of: PhantomData,
                    })?
                }
                "directories" => {
                    raw.directories = map.next_value_seed(Entries {
                        skip: &self.skips.directories,
                        of: PhantomData,
                    })?
                }
                other => return Err(de::Error::unknown_field(other, TOP_FIELDS)),
            }
        }
        if raw.version.is_none() && !self.skips.keys.contains("version") {
            return Err(de::Error::missing_field("version"));
        }
        Ok(raw)
    }
}

/// A list whose entries at `skip` are read as anything and left out (`None`).
struct Entries<'a, T> {
    skip: &'a BTreeSet<usize>,
    of: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for Entries<'_, T> {
    type Value = Vec<Option<Spanned<T>>>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        // Null (`hosts:` with nothing after it) is an empty list, as `#[serde(default)]`
        // with an Option would not give; serde-saphyr reads it as an empty sequence.
        de.deserialize_seq(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for Entries<'_, T> {
    type Value = Vec<Option<Spanned<T>>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        loop {
            let entry = if self.skip.contains(&entries.len()) {
                match seq.next_element::<IgnoredAny>()? {
                    None => break,
                    Some(_) => None,
                }
            } else {
                match seq.next_element::<Spanned<T>>()? {
                    None => break,
                    Some(entry) => Some(entry),
                }
            };
            entries.push(entry);
        }
        Ok(entries)
    }
}

/// `policies:`, the ones named in `skip` read as anything and left out.
struct Policies<'a> {
    skip: &'a BTreeSet<String>,
}

impl<'de> DeserializeSeed<'de> for Policies<'_> {
    type Value = BTreeMap<String, Spanned<RawPolicy>>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Policies<'_> {
    type Value = BTreeMap<String, Spanned<RawPolicy>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut policies = BTreeMap::new();
        while let Some(name) = map.next_key::<String>()? {
            if self.skip.contains(&name) {
                map.next_value::<IgnoredAny>()?;
            } else {
                let policy = map.next_value()?;
                policies.insert(name, policy);
            }
        }
        Ok(policies)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDirectory {
    pub name: Spanned<String>,
    pub url: Spanned<String>,
    pub ca_file: Option<Spanned<String>>,
    pub danger_accept_invalid_certs: Option<Spanned<bool>>,
    pub bind: Spanned<RawBind>,
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
    pub policy: Option<Spanned<String>>,
    #[serde(default)]
    pub accounts: Vec<Spanned<RawDirectoryAccount>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBind {
    pub dn: Spanned<String>,
    pub credential: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDirectoryAccount {
    pub dn: Option<Spanned<String>>,
    pub search: Option<Spanned<RawSearch>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSearch {
    pub base: Spanned<String>,
    pub filter: Spanned<String>,
    pub scope: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub length: Option<Spanned<u64>>,
    pub classes: Option<Spanned<Vec<Spanned<String>>>>,
    pub exclude: Option<Spanned<String>>,
    pub schedule: Option<Spanned<String>>,
    pub max_age: Option<Spanned<String>>,
    pub timezone: Option<Spanned<String>>,
    pub max_failed_logins: Option<Spanned<u64>>,
    pub checkout: Option<Spanned<RawCheckout>>,
    pub window: Option<Spanned<RawWindow>>,
}

/// `window: { days: [mon-fri], hours: "01:00-05:00" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWindow {
    pub days: Option<Spanned<Vec<Spanned<String>>>>,
    pub hours: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheckout {
    pub approval: Option<Spanned<String>>,
    pub max_ttl: Option<Spanned<String>>,
    pub default_ttl: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHost {
    pub name: Spanned<String>,
    pub address: Spanned<String>,
    pub port: Option<Spanned<u64>>,
    pub host_key: Option<Spanned<String>>,
    pub known_hosts: Option<Spanned<String>>,
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
    pub connect: Spanned<RawConnect>,
    #[serde(default)]
    pub accounts: Vec<Spanned<RawAccount>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConnect {
    pub user: Spanned<String>,
    pub key: Option<Spanned<String>>,
    pub credential: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccount {
    pub name: Spanned<String>,
    pub playbook: Spanned<String>,
    pub policy: Option<Spanned<String>>,
    /// Values of the variables the playbook declares.
    #[serde(default)]
    pub vars: BTreeMap<String, Spanned<String>>,
}

//! What can be wrong with an inventory file, said so that the reader can fix it.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// At most this many problems are reported at once: more would scroll the first ones away,
/// and the first ones often cause the rest.
pub const MAX_PROBLEMS: usize = 10;

/// Why an inventory could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The file could not be read at all.
    #[error("{}: cannot read the inventory: {cause}; {}", path.display(), read_hint(cause))]
    Unreadable { path: PathBuf, cause: io::Error },
    /// The file was read but is not a valid inventory. A YAML syntax or shape error is
    /// reported alone; validation problems are collected, up to [`MAX_PROBLEMS`].
    #[error("{}", ProblemList { problems, n_more: *n_more })]
    Invalid {
        problems: Vec<Problem>,
        /// Problems found beyond [`MAX_PROBLEMS`] and not listed.
        n_more: usize,
    },
}

impl InventoryError {
    /// The problems found, empty when the file could not be read.
    pub fn problems(&self) -> &[Problem] {
        match self {
            InventoryError::Unreadable { .. } => &[],
            InventoryError::Invalid { problems, .. } => problems,
        }
    }
}

fn read_hint(cause: &io::Error) -> &'static str {
    match cause.kind() {
        io::ErrorKind::NotFound => {
            "check the path given with -i (relative paths start from the current directory)"
        }
        io::ErrorKind::PermissionDenied => {
            "check the file's permissions; rotor only needs to read it"
        }
        io::ErrorKind::InvalidData => "the inventory must be UTF-8 text",
        _ => "check that the path names a readable file",
    }
}

/// One thing wrong in an inventory file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based; 0 when not known.
    pub line: u64,
    /// 1-based; 0 when not known.
    pub column: u64,
    /// Where in the document, e.g. `hosts[2].accounts[0].name` (indices from 0); empty for
    /// the document as a whole.
    pub field: String,
    pub kind: ProblemKind,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// The class of a problem, for callers and tests that branch on it (never on message text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// Not YAML, or YAML that cannot be read (bad indentation, unclosed quote, ...).
    Syntax,
    /// A key that rotor does not know (often a typo).
    UnknownField,
    /// A required key is absent.
    MissingField,
    /// A value of the wrong YAML type (a list where a string belongs, ...).
    WrongType,
    /// The same host, account, key or group appears twice.
    Duplicate,
    /// A value of the right type that is not acceptable (bad address, short length, ...).
    InvalidValue,
    /// A name that refers to something that does not exist (policy, playbook).
    UnknownReference,
    /// Written correctly but not supported by this version of rotor.
    Unsupported,
}

impl Problem {
    pub(super) fn new(
        file: &Path,
        (line, column): (u64, u64),
        field: impl Into<String>,
        kind: ProblemKind,
        message: impl Into<String>,
    ) -> Problem {
        Problem {
            file: file.to_owned(),
            line,
            column,
            field: field.into(),
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

struct ProblemList<'a> {
    problems: &'a [Problem],
    n_more: usize,
}

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (idx, problem) in self.problems.iter().enumerate() {
            if idx > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        if self.n_more > 0 {
            let s = if self.n_more == 1 { "" } else { "s" };
            write!(
                f,
                "\n... and {} more problem{s}; fix these first",
                self.n_more
            )?;
        }
        Ok(())
    }
}

/// Collects validation problems, keeping the first [`MAX_PROBLEMS`] and counting the rest.
#[derive(Default)]
pub(super) struct Problems {
    list: Vec<Problem>,
    n_more: usize,
}

impl Problems {
    pub(super) fn push(&mut self, problem: Problem) {
        if self.list.len() < MAX_PROBLEMS {
            self.list.push(problem);
        } else {
            self.n_more += 1;
        }
    }

    pub(super) fn into_result<T>(self, value: T) -> Result<T, InventoryError> {
        if self.list.is_empty() {
            Ok(value)
        } else {
            Err(InventoryError::Invalid {
                problems: self.list,
                n_more: self.n_more,
            })
        }
    }
}

/// Turns a serde-saphyr error, and the path serde had reached, into a [`Problem`].
pub(super) fn from_serde(
    err: &serde_saphyr::Error,
    path: &serde_path_to_error::Path,
    file: &Path,
) -> Problem {
    use serde_saphyr::Error as E;

    let mut err = err.without_snippet();
    // An error met through a YAML alias: report the error itself.
    while let E::AliasError { error, .. } = err {
        err = error.without_snippet();
    }
    let location = err
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    let mut field = field_path(path);
    let (kind, message) = match err {
        E::SerdeUnknownField {
            field: key,
            expected,
            ..
        } => {
            if !field.ends_with(key.as_str()) {
                field = join(&field, key);
            }
            let allowed = expected.join(", ");
            let hint = super::validate::did_you_mean(key, expected.iter().copied());
            (
                ProblemKind::UnknownField,
                format!("unknown field `{key}`: allowed here are {allowed}{hint}"),
            )
        }
        E::SerdeMissingField { field: key, .. } => {
            field = join(&field, key);
            (
                ProblemKind::MissingField,
                format!("missing field `{key}`: {}", missing_hint(key)),
            )
        }
        E::SerdeInvalidType {
            unexpected,
            expected,
            ..
        }
        | E::SerdeInvalidValue {
            unexpected,
            expected,
            ..
        } => (
            ProblemKind::WrongType,
            format!(
                "expected {}, found {unexpected}",
                humanize_expected(expected)
            ),
        ),
        E::InvalidScalar { ty, .. } => (
            ProblemKind::WrongType,
            format!("expected {}", humanize_expected(ty)),
        ),
        E::Unexpected { expected, .. } => {
            let hint = if *expected == "string scalar" {
                " (quote it if it contains `[`, `{`, `:` or `#`)"
            } else {
                ""
            };
            (
                ProblemKind::WrongType,
                format!("expected {} here{hint}", humanize_expected(expected)),
            )
        }
        E::DuplicateMappingKey { key, .. } => {
            let key = key.as_deref().unwrap_or("a key");
            if !field.ends_with(key) {
                field = join(&field, key);
            }
            (
                ProblemKind::Duplicate,
                format!("`{key}` appears twice in the same mapping: keep one"),
            )
        }
        other => (
            ProblemKind::Syntax,
            format!(
                "{}: this is not valid YAML here; check indentation and quoting",
                strip_location(&other.to_string())
            ),
        ),
    };
    Problem::new(file, location, field, kind, message)
}

/// `hosts[2].connect`; empty at the top of the document. `Spanned` wrappers show up in
/// serde's path as a `value` field, and keys serde could not name as `?`: neither is
/// something the user wrote (no inventory field is called `value`), so both are dropped.
fn field_path(path: &serde_path_to_error::Path) -> String {
    let mut text = String::new();
    for segment in path.iter() {
        use serde_path_to_error::Segment;
        match segment {
            Segment::Seq { index } => text.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if key != "value" {
                    text = join(&text, key);
                }
            }
            Segment::Unknown => {}
        }
    }
    text
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn missing_hint(key: &str) -> &'static str {
    match key {
        "version" => "start the file with `version: 1`",
        "name" => "add `name: ...`",
        "address" => "add `address: ...` with the host's IP address or DNS name",
        "connect" => "add `connect: { user: root, key: /path/to/private_key }`, how rotor logs in",
        "user" => "add `user: ...`, the account rotor logs in as",
        "playbook" => "add `playbook: linux-password`",
        _ => "add it",
    }
}

/// Serde names Rust types ("u64", "struct RawHost"); say it in YAML words instead.
fn humanize_expected(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" | "i64" => "a whole number".to_owned(),
        "a string" | "string" => "a string".to_owned(),
        "a sequence" | "sequence start" => "a list".to_owned(),
        "mapping start" => "a mapping (`key: value` lines)".to_owned(),
        "string scalar" => "a single value".to_owned(),
        e if e.starts_with("struct ") || e.starts_with("a map") => "a mapping".to_owned(),
        e => e.to_owned(),
    }
}

/// The renderer appends " at line L, column C"; our prefix already says where.
fn strip_location(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(idx) => &message[..idx],
        None => message,
    }
}

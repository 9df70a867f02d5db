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
    /// The path names something other than a regular file (a FIFO, a device, a directory).
    #[error("{}: cannot read the inventory: it is {found}, not a regular file. -i takes the inventory's YAML file: write it to a file and pass that file's path", path.display())]
    NotAFile { path: PathBuf, found: &'static str },
    /// Larger than [`super::MAX_INVENTORY_BYTES`].
    #[error("{}: the inventory is {size} bytes, more than the 16 MiB rotor reads: check that -i names the inventory file (ten thousand hosts take about 3 MiB), or split the inventory", path.display())]
    TooLarge { path: PathBuf, size: u64 },
    /// The file was read but is not a valid inventory. Problems are collected (a bad entry's
    /// shape, each validation failure; a YAML syntax error ends the list) and listed in file
    /// order, up to [`MAX_PROBLEMS`].
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
            InventoryError::Unreadable { .. }
            | InventoryError::NotAFile { .. }
            | InventoryError::TooLarge { .. } => &[],
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
    pub(crate) fn new(
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
            message: tame(&message.into()),
        }
    }
}

/// The longest piece of the inventory an error echoes; longer ones are cut, with their length.
const MAX_ECHO_CHARS: usize = 100;

/// The longest message a problem carries, whatever it quotes.
const MAX_MESSAGE_CHARS: usize = 1000;

/// Makes a message safe and short to print, whatever the inventory held: every quoted value
/// (between backticks or double quotes) and every unbroken run of text longer than
/// [`MAX_ECHO_CHARS`] is cut to its start, an ellipsis and its length; control characters are
/// escaped (`\u{1b}`); and the whole is at most [`MAX_MESSAGE_CHARS`]. Messages quote the
/// values they echo, so this one place covers every message, including the ones from
/// `credential` and serde.
pub(crate) fn tame(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE_CHARS + 64));
    let mut rest = message;
    while !rest.is_empty() {
        // The next quoted value, or the next word outside quotes.
        let quote = rest.find(['`', '"']);
        match quote {
            Some(0) => {
                let q = &rest[..1];
                let body_and_more = &rest[1..];
                let end = body_and_more.find(q).unwrap_or(body_and_more.len());
                out.push_str(q);
                out.push_str(&cut(&body_and_more[..end]));
                if end < body_and_more.len() {
                    out.push_str(q);
                    rest = &body_and_more[end + 1..];
                } else {
                    rest = "";
                }
            }
            _ => {
                let until = quote.unwrap_or(rest.len());
                let plain = &rest[..until];
                for (idx, word) in plain.split(' ').enumerate() {
                    if idx > 0 {
                        out.push(' ');
                    }
                    out.push_str(&cut(word));
                }
                rest = &rest[until..];
            }
        }
    }
    if out.chars().count() > MAX_MESSAGE_CHARS {
        let n = out.chars().count();
        out = out.chars().take(MAX_MESSAGE_CHARS).collect();
        out.push_str(&format!("… (message cut: {n} characters)"));
    }
    out
}

/// One echoed value: escaped, and cut to [`MAX_ECHO_CHARS`] with its length.
fn cut(value: &str) -> String {
    let n = value.chars().count();
    if n <= MAX_ECHO_CHARS {
        return crate::text::escape(value).into_owned();
    }
    let head: String = value.chars().take(MAX_ECHO_CHARS - 20).collect();
    format!("{}… ({n} characters)", crate::text::escape(&head))
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            crate::text::escape(&self.file.display().to_string())
        )?;
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

/// Collects problems; reports the first [`MAX_PROBLEMS`] in file order (by line, then
/// column) and counts the rest.
#[derive(Default)]
pub(super) struct Problems {
    list: Vec<Problem>,
}

impl Problems {
    pub(super) fn push(&mut self, problem: Problem) {
        self.list.push(problem);
    }

    pub(super) fn into_result<T>(mut self, value: T) -> Result<T, InventoryError> {
        if self.list.is_empty() {
            return Ok(value);
        }
        // Stable: problems at one place keep the order they were found in.
        self.list.sort_by_key(|p| (p.line, p.column));
        let n_more = self.list.len().saturating_sub(MAX_PROBLEMS);
        self.list.truncate(MAX_PROBLEMS);
        Err(InventoryError::Invalid {
            problems: self.list,
            n_more,
        })
    }
}

/// Turns a serde-saphyr error, and the path serde had reached, into a [`Problem`].
pub(crate) fn from_serde(
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
                "expected {}, found {unexpected}{}",
                expected_here(&field, expected),
                field_fix(&field)
            ),
        ),
        E::InvalidScalar { ty, .. } => (
            ProblemKind::WrongType,
            format!(
                "expected {}{}",
                expected_here(&field, ty),
                field_fix(&field)
            ),
        ),
        E::Unexpected { expected, .. } => {
            // Quoting helps text, never a number.
            let fix = field_fix(&field);
            let hint = if !fix.is_empty() {
                fix
            } else if *expected == "string scalar" {
                " (quote it if it contains `[`, `{`, `:` or `#`)".to_owned()
            } else {
                String::new()
            };
            (
                ProblemKind::WrongType,
                format!("expected {} here{hint}", expected_here(&field, expected)),
            )
        }
        // serde-saphyr words these in Rust ("use Option<String>"); say what the field wants.
        E::NullIntoString { .. }
        | E::InvalidCharNull { .. }
        | E::TaggedScalarCannotDeserializeIntoString { .. }
        | E::BinaryNotUtf8 { .. }
        | E::BytesNotSupportedMissingBinaryTag { .. }
        | E::UnexpectedValueForUnit { .. } => (
            ProblemKind::WrongType,
            format!(
                "expected {}, found no value (null) or a tagged one: write the value itself{}",
                expected_here(&field, "string"),
                field_fix(&field)
            ),
        ),
        E::Budget { breach, .. } => (ProblemKind::Unsupported, budget_message(breach)),
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
        "bind" => {
            "add `bind: { dn: \"cn=rotor,ou=system,dc=example,dc=org\", credential: DIRECTORY/rotor }`, how rotor binds to the directory"
        }
        "url" => "add `url: ldaps://...` (or ldap://, always with StartTLS)",
        "description" => "add `description: ...`, one line saying what the playbook rotates",
        "kind" => "add `kind: password` (or `kind: ssh-key`)",
        _ => "add it",
    }
}

/// What a field takes, in the inventory's words, by its name (the last part of its path).
fn field_words(field: &str) -> Option<&'static str> {
    let last = field.rsplit('.').next().unwrap_or("");
    let last = last.split('[').next().unwrap_or(last);
    let parent = field.rsplit('.').nth(1).unwrap_or("");
    Some(match last {
        "name" if parent.starts_with("hosts") => "a host name (text)",
        "name" if parent.starts_with("directories") => "a directory name (text)",
        "name" => "an account name (text)",
        "address" => "an address (text: an IP address or a DNS name)",
        "user" => "an account name (text)",
        "key" | "known_hosts" | "ca_file" | "playbooks_dir" => "a file path (text)",
        "credential" => "a credential address HOST/ACCOUNT (text)",
        "host_key" => "a host key line (text, as printed by ssh-keyscan)",
        "playbook" => "a playbook name (text)",
        "policy" => "a policy name (text)",
        "url" => "an LDAP URL (text)",
        "dn" | "base" => "an LDAP DN (text)",
        "filter" => "an LDAP filter (text)",
        "port" => "a port number from 1 to 65535",
        "version" => "the inventory version, 1",
        "length" => "a whole number of characters from 12 to 128",
        "max_failed_logins" => "a whole number from 1 to 10",
        "schedule" => "a crontab schedule (text)",
        "max_age" => "an age (text such as 30d, 12h or 90m)",
        "timezone" => "a time zone name (text)",
        "hours" => "a range of local times (text such as \"01:00-05:00\")",
        _ => return None,
    })
}

/// `expected` from serde, or better the field's own words.
fn expected_here(field: &str, expected: &str) -> String {
    field_words(field)
        .map(str::to_owned)
        .unwrap_or_else(|| humanize_expected(expected))
}

/// What to write instead, for fields where the words alone do not say it.
fn field_fix(field: &str) -> String {
    match field.rsplit('.').next().unwrap_or("") {
        "max_failed_logins" => ": the failed logins rotor may make as an account before it stops \
             and parks the credential; keep it below the targets' lockout threshold \
             (pam_faillock locks after 3), e.g. `max_failed_logins: 2`"
            .to_owned(),
        "length" => ": e.g. `length: 24`".to_owned(),
        "port" => ": e.g. `port: 22`".to_owned(),
        "version" => ": write `version: 1`".to_owned(),
        _ => String::new(),
    }
}

/// The YAML reader's resource limits (against documents that expand without end through
/// aliases, or nest without end), said without the reader's internal names.
fn budget_message(breach: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    let what = match breach {
        B::Depth { depth } => format!(
            "the YAML nests {depth} levels deep, more than rotor reads (an inventory needs about 6)"
        ),
        B::Aliases { .. }
        | B::AliasAnchorRatio { .. }
        | B::RecordedAnchorEvents { .. }
        | B::RecordedAnchorBytes { .. } => "the YAML repeats its anchors through aliases (`*name`) more than rotor reads: a document that multiplies itself this way is refused".to_owned(),
        B::Anchors { anchors } => format!("the YAML defines {anchors} anchors (`&name`), more than rotor reads"),
        B::Events { .. } | B::Nodes { .. } => "the YAML has more values than rotor reads".to_owned(),
        B::ScalarBytes { .. } | B::InputBytes { .. } | B::CommentBytes { .. } => {
            "the YAML holds more text than rotor reads".to_owned()
        }
        B::Documents { documents } => format!(
            "the file holds {documents} YAML documents: an inventory is one document (no `---` between parts)"
        ),
        B::MergeKeys { .. } => "the YAML uses more merge keys (`<<`) than rotor reads".to_owned(),
        _ => "the YAML exceeds a limit of rotor's YAML reader".to_owned(),
    };
    format!(
        "{what}. Check that this is the inventory file; write values out instead of through aliases, and split a very large inventory"
    )
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
        // Never a Rust type name (`Option<String>`, `enum Foo`, `rotor::x::Y`).
        e if e.contains(['<', ':']) || e.starts_with("enum ") || e.starts_with("option") => {
            "a value of another kind".to_owned()
        }
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

#[cfg(test)]
mod tame_tests {
    use super::tame;

    #[test]
    fn long_values_are_cut_and_controls_escaped() {
        let long = "x".repeat(5000);
        let spaced = "word ".repeat(1000);
        for (message, expect) in [
            ("`short` is fine".to_owned(), "`short` is fine".to_owned()),
            (
                format!("`{long}` is not valid"),
                format!("`{}… (5000 characters)` is not valid", "x".repeat(80)),
            ),
            (
                format!("found string {long}"),
                format!("found string {}… (5000 characters)", "x".repeat(80)),
            ),
            (
                format!("\"{}\" is not valid", spaced.trim_end()),
                format!("\"{}… (4999 characters)\" is not valid", &spaced[..80]),
            ),
            (
                "`a\u{1b}[31mb` bad".to_owned(),
                "`a\\u{1b}[31mb` bad".to_owned(),
            ),
            ("unclosed `quote".to_owned(), "unclosed `quote".to_owned()),
        ] {
            assert_eq!(tame(&message), expect);
        }
        // Values that are neither quoted nor words still leave the message bounded.
        let mixed = format!("`{}`{}` end", "a b".repeat(500), "c d".repeat(500));
        assert!(tame(&mixed).chars().count() < 1100, "{}", tame(&mixed));
    }
}

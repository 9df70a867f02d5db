//! Scopes: which part of the inventory a command works on (`--scope group:emr`), in the
//! manner of Ansible's `--limit`: names take globs (`host:emr-*`), one argument may hold a
//! comma list (`group:emr,group:lab`), and `!SCOPE` takes something out of the others.
//!
//! A scope that names nothing in the inventory is an error, never an empty selection, so a
//! typo cannot turn "rotate after the incident" into "rotate nothing, report success". The
//! same holds for a glob that matches nothing, an exclusion that matches nothing, and a
//! selection that exclusions leave empty.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::validate::{check_group_name, close_matches};
use super::{Directory, Host, Inventory};
use crate::credential::{AccountName, CredentialId, HostName};
use std::collections::BTreeSet;

const FORMS: &str = "all, host:NAME, group:NAME, account:NAME, directory:NAME or cred:HOST/ACCOUNT; \
names take globs (host:emr-*), commas join scopes, a leading ! excludes";

/// One scope term (one `--scope` argument may hold several, separated by commas).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every account on every host.
    All,
    /// Every account on one host.
    Host(HostName),
    /// Every account on the hosts in a group.
    Group(String),
    /// This account name on every host that has it.
    Account(AccountName),
    /// One credential (`HOST/ACCOUNT` or `DIRECTORY/UID`).
    Cred(CredentialId),
    /// Every account of one LDAP directory.
    Directory(HostName),
    /// A name with `*`, `?` or `[...]`: every name of that kind it matches (at least one).
    Pattern(Kind, Glob),
    /// `!SCOPE`: taken out of the union of the other scopes (of everything, when there are
    /// only exclusions). Never nested, never `!all`.
    Not(Box<Scope>),
}

/// What a pattern's names are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Host,
    Group,
    Account,
    Directory,
    /// `HOST/ACCOUNT`, a glob on each side of the `/`.
    Cred,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Host,
        Kind::Group,
        Kind::Account,
        Kind::Directory,
        Kind::Cred,
    ];

    fn prefix(self) -> &'static str {
        match self {
            Kind::Host => "host",
            Kind::Group => "group",
            Kind::Account => "account",
            Kind::Directory => "directory",
            Kind::Cred => "cred",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Host => "host",
            Kind::Group => "group",
            Kind::Account => "account",
            Kind::Directory => "directory",
            Kind::Cred => "credential",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Kind::Host => "hosts",
            Kind::Group => "groups",
            Kind::Account => "accounts",
            Kind::Directory => "directories",
            Kind::Cred => "credentials",
        }
    }
}

/// A shell-style glob: `*` any run of characters, `?` one character, `[abc]`, `[a-z]` and
/// `[!a-z]` one character of (or not of) a class. Written by hand: a few lines, and the
/// whole name must match (no regex anchoring or escaping to get wrong).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Glob {
    text: String,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Token {
    Literal(char),
    AnyOne,
    AnyRun,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// Whether `name` holds glob syntax (`*`, `?` or `[`); no valid name does.
fn is_glob(name: &str) -> bool {
    name.contains(['*', '?', '['])
}

impl Glob {
    pub fn parse(text: &str) -> Result<Glob, String> {
        if let Some(bad) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "`{}` holds {}: names have none",
                text.escape_debug(),
                if bad.is_whitespace() {
                    "a space"
                } else {
                    "a control character"
                }
            ));
        }
        let mut tokens = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' => Token::AnyRun,
                '?' => Token::AnyOne,
                '[' => {
                    let negated = chars.next_if(|c| matches!(c, '!' | '^')).is_some();
                    let mut ranges = Vec::new();
                    loop {
                        match chars.next() {
                            None => {
                                return Err(format!(
                                    "`{text}`: a `[` is not closed: write a class such as [0-9] or [abc]"
                                ));
                            }
                            Some(']') if !ranges.is_empty() => break,
                            Some(lo) => {
                                if chars.peek() == Some(&'-') {
                                    chars.next();
                                    match chars.next() {
                                        Some(']') | None => {
                                            return Err(format!(
                                                "`{text}`: a range in `[...]` needs both ends, as in [0-9]"
                                            ));
                                        }
                                        Some(hi) => ranges.push((lo, hi)),
                                    }
                                } else {
                                    ranges.push((lo, lo));
                                }
                            }
                        }
                    }
                    Token::Class { negated, ranges }
                }
                c => Token::Literal(c),
            });
        }
        Ok(Glob {
            text: text.to_owned(),
            tokens,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the whole of `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        let (mut t, mut n) = (0, 0);
        // Where the last `*` was, and how much of the name it has taken so far.
        let mut star: Option<(usize, usize)> = None;
        while n < name.len() {
            let step = match self.tokens.get(t) {
                Some(Token::AnyRun) => {
                    star = Some((t, n));
                    t += 1;
                    continue;
                }
                Some(Token::AnyOne) => true,
                Some(Token::Literal(c)) => *c == name[n],
                Some(Token::Class { negated, ranges }) => {
                    ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&name[n])) != *negated
                }
                None => false,
            };
            if step {
                t += 1;
                n += 1;
            } else if let Some((star_t, star_n)) = star {
                // Let the last `*` take one more character and try again from there.
                t = star_t + 1;
                n = star_n + 1;
                star = Some((star_t, star_n + 1));
            } else {
                return false;
            }
        }
        self.tokens[t..].iter().all(|t| *t == Token::AnyRun)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("{}: use {FORMS}{}", describe(input), bare_hint(input))]
    UnknownKind { input: String },
    #[error("scope `{input}`: {reason}")]
    InvalidName { input: String, reason: String },

    /// A bare name (`emr`) that the inventory knows under these kinds.
    #[error("{}", bare_message(input, kinds))]
    Bare { input: String, kinds: Vec<Kind> },

    /// The scope is well formed but names nothing in the inventory.
    #[error("no {what} in {}; {hint}", file.display())]
    NotFound {
        file: PathBuf,
        /// e.g. "host `host-01`", "account `x` on host `h`".
        what: String,
        /// "did you mean ...?" or the names that do exist.
        hint: String,
    },

    /// The exclusions took out everything the other scopes selected.
    #[error(
        "nothing left to act on in {}: after {excluded}, none of what the other scopes select remains; drop an exclusion or widen the selection",
        file.display()
    )]
    EmptyAfterExclusion {
        file: PathBuf,
        /// The exclusions, as written (`!group:emr`, ...).
        excluded: String,
    },
}

impl ScopeError {
    /// Whether the inventory could say more: a bare name (`emr`), which may be a host, a group
    /// or an account. Front-ends that read scopes before the inventory hold this one back.
    pub fn needs_inventory(&self) -> bool {
        matches!(self, ScopeError::UnknownKind { input } if is_bare(input))
    }
}

/// A name without `kind:` (possibly after `!`).
fn is_bare(input: &str) -> bool {
    let name = input.strip_prefix('!').unwrap_or(input);
    !name.is_empty() && !name.contains(':')
}

fn describe(input: &str) -> String {
    if input.is_empty() {
        "empty scope".to_owned()
    } else {
        format!("unknown scope `{input}`")
    }
}

fn bare_hint(input: &str) -> String {
    if !is_bare(input) {
        return match input.split_once(':') {
            Some((kind, _)) if !kind.is_empty() => {
                let prefixes = Kind::ALL.map(Kind::prefix);
                match close_matches(kind, prefixes.into_iter()).first() {
                    Some(close) => format!(" (did you mean {close}:?)"),
                    None => String::new(),
                }
            }
            _ => String::new(),
        };
    }
    let (bang, name) = match input.strip_prefix('!') {
        Some(name) => ("!", name),
        None => ("", input),
    };
    format!(" (to select a host, write {bang}host:{name})")
}

/// "`emr` is a group: write group:emr"; several kinds: each form.
fn bare_message(input: &str, kinds: &[Kind]) -> String {
    let (bang, name) = match input.strip_prefix('!') {
        Some(name) => ("!", name),
        None => ("", input),
    };
    let nouns: Vec<String> = kinds
        .iter()
        .map(|k| {
            if is_glob(name) {
                k.plural().to_owned()
            } else {
                let article = if k.noun().starts_with(['a', 'e', 'i', 'o', 'u']) {
                    "an"
                } else {
                    "a"
                };
                format!("{article} {}", k.noun())
            }
        })
        .collect();
    let forms: Vec<String> = kinds
        .iter()
        .map(|k| format!("{bang}{}:{name}", k.prefix()))
        .collect();
    let verb = if is_glob(name) { "matches" } else { "is" };
    let quote = match forms.first() {
        Some(first) if !bang.is_empty() => format!(" (quoted for the shell: --scope '{first}')"),
        _ => String::new(),
    };
    format!(
        "`{input}` {verb} {}: write {}{quote}",
        and_list(&nouns, "and"),
        and_list(&forms, "or")
    )
}

/// "a", "a and b", "a, b and c".
fn and_list(items: &[String], word: &str) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} {word} {last}", init.join(", ")),
    }
}

/// The terms of one argument: split at commas (outside `[...]`), each trimmed.
fn split_terms(arg: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (idx, c) in arg.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(arg[start..idx].trim());
                start = idx + 1;
            }
            _ => {}
        }
    }
    terms.push(arg[start..].trim());
    terms
}

impl Scope {
    /// Parses one term: `all`, `host:NAME`, `group:NAME`, `account:NAME`, `directory:NAME` or
    /// `cred:HOST/ACCOUNT`, a name possibly a glob, the whole possibly after `!`. A comma list
    /// is [`Scope::parse_list`].
    pub fn parse(input: &str) -> Result<Scope, ScopeError> {
        let invalid = |reason: String| ScopeError::InvalidName {
            input: input.to_owned(),
            reason,
        };
        if input.contains(',') && !input.contains('[') {
            return Err(invalid(
                "a comma separates scopes here: give each scope on its own".to_owned(),
            ));
        }
        let Some(term) = input.strip_prefix('!') else {
            return Scope::parse_term(input, input);
        };
        if term.starts_with('!') {
            return Err(invalid(
                "write a single `!` before the scope it excludes".to_owned(),
            ));
        }
        if term.is_empty() {
            return Err(invalid(
                "nothing after `!`; write the scope to exclude, e.g. !host:NAME or !group:NAME"
                    .to_owned(),
            ));
        }
        if term == "all" {
            return Err(invalid(
                "`!all` excludes everything: drop it, or exclude a part (!host:NAME, !group:NAME)"
                    .to_owned(),
            ));
        }
        Scope::parse_term(input, term).map(|scope| Scope::Not(Box::new(scope)))
    }

    /// Parses one argument as written: terms separated by commas, e.g.
    /// `group:emr,!host:emr-db-01`.
    pub fn parse_list(arg: &str) -> Result<Vec<Scope>, ScopeError> {
        split_terms(arg).into_iter().map(Scope::parse).collect()
    }

    /// `term` is `input` without its `!`; errors quote `input`.
    fn parse_term(input: &str, term: &str) -> Result<Scope, ScopeError> {
        if term == "all" {
            return Ok(Scope::All);
        }
        let Some((kind, name)) = term.split_once(':') else {
            return Err(ScopeError::UnknownKind {
                input: input.to_owned(),
            });
        };
        let invalid = |reason: String| ScopeError::InvalidName {
            input: input.to_owned(),
            reason,
        };
        let Some(kind) = Kind::ALL.into_iter().find(|k| k.prefix() == kind) else {
            return Err(ScopeError::UnknownKind {
                input: input.to_owned(),
            });
        };
        if name.is_empty() {
            let what = if kind == Kind::Cred {
                "HOST/ACCOUNT"
            } else {
                "NAME"
            };
            let kind = kind.prefix();
            return Err(invalid(format!(
                "nothing after `{kind}:`; write {kind}:{what}"
            )));
        }
        if is_glob(name) {
            if kind == Kind::Cred {
                match name.split_once('/') {
                    Some((host, account)) if !host.is_empty() && !account.is_empty() => {}
                    _ => {
                        return Err(invalid(format!(
                            "`{name}` is not a credential address: write it as HOST/ACCOUNT, globs allowed on either side (cred:emr-*/svc_app)"
                        )));
                    }
                }
            }
            return Glob::parse(name)
                .map(|glob| Scope::Pattern(kind, glob))
                .map_err(invalid);
        }
        match kind {
            Kind::Host => HostName::parse(name).map(Scope::Host).map_err(invalid),
            Kind::Group => check_group_name(name)
                .map(|()| Scope::Group(name.to_owned()))
                .map_err(invalid),
            Kind::Account => AccountName::parse(name)
                .map(Scope::Account)
                .map_err(invalid),
            Kind::Cred => CredentialId::parse(name).map(Scope::Cred).map_err(invalid),
            Kind::Directory => HostName::parse(name).map(Scope::Directory).map_err(invalid),
        }
    }
}

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Scope, ScopeError> {
        Scope::parse(s)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::All => f.write_str("all"),
            Scope::Host(name) => write!(f, "host:{name}"),
            Scope::Group(name) => write!(f, "group:{name}"),
            Scope::Account(name) => write!(f, "account:{name}"),
            Scope::Cred(id) => write!(f, "cred:{id}"),
            Scope::Directory(name) => write!(f, "directory:{name}"),
            Scope::Pattern(kind, glob) => write!(f, "{}:{glob}", kind.prefix()),
            Scope::Not(scope) => write!(f, "!{scope}"),
        }
    }
}

/// The hosts a set of scopes selects, in inventory order, each with only its selected
/// accounts (a host selected by `host:` or `group:` keeps all of them, possibly none).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub hosts: Vec<Host>,
    pub directories: Vec<DirectorySelection>,
}

/// A selected directory: all its accounts, or only some UIDs (from `cred:` scopes; which
/// entries exist is known only once its searches run).
#[derive(Debug, Clone)]
pub struct DirectorySelection {
    pub directory: Directory,
    pub only: Option<BTreeSet<AccountName>>,
    /// UIDs named one by one (`cred:DIR/UID`), also when the whole directory is selected:
    /// rotor's own bind account is rotated only when named.
    pub named: BTreeSet<AccountName>,
}

impl Selection {
    pub fn n_accounts(&self) -> usize {
        self.hosts.iter().map(|h| h.accounts.len()).sum()
    }

    /// Whether the selection names `cred`: one of its hosts' listed accounts, or an account of
    /// one of its directories (all of them, or the UIDs its `cred:` scopes named).
    pub fn names(&self, cred: &CredentialId) -> bool {
        self.hosts.iter().any(|h| {
            h.name == cred.host && h.accounts.iter().any(|a| a.credential(&h.name) == *cred)
        }) || self.directories.iter().any(|d| {
            d.directory.name == cred.host
                && cred.slot == crate::credential::Slot::Main
                && d.only
                    .as_ref()
                    .is_none_or(|only| only.contains(&cred.account))
        })
    }

    /// The selected credentials, in inventory order.
    pub fn credentials(&self) -> impl Iterator<Item = CredentialId> + '_ {
        self.hosts.iter().flat_map(|host| {
            host.accounts
                .iter()
                .map(|account| CredentialId::new(host.name.clone(), account.name.clone()))
        })
    }
}

/// What some scopes pick, per host and per directory of the inventory, by index.
struct Marks {
    hosts: Vec<HostMark>,
    dirs: Vec<DirMark>,
    /// Per directory: UIDs named one by one (`cred:DIR/UID`).
    named: Vec<BTreeSet<AccountName>>,
}

#[derive(Debug, Clone, PartialEq)]
enum HostMark {
    No,
    /// The host itself (`host:`, `group:`, `all`): all its accounts, even none.
    Whole,
    /// Some of its accounts (`account:`, `cred:`), by index.
    Accounts(Vec<bool>),
}

#[derive(Debug, Clone, PartialEq)]
enum DirMark {
    No,
    Whole,
    Uids(BTreeSet<AccountName>),
}

impl Marks {
    fn new(inv: &Inventory) -> Marks {
        Marks {
            hosts: vec![HostMark::No; inv.hosts.len()],
            dirs: vec![DirMark::No; inv.directories.len()],
            named: vec![BTreeSet::new(); inv.directories.len()],
        }
    }

    fn is_empty(&self) -> bool {
        self.hosts.iter().all(|m| *m == HostMark::No) && self.dirs.iter().all(|m| *m == DirMark::No)
    }

    fn account(&mut self, host_idx: usize, account_idx: usize, n_accounts: usize) {
        match &mut self.hosts[host_idx] {
            HostMark::Whole => {}
            HostMark::Accounts(marks) => marks[account_idx] = true,
            mark @ HostMark::No => {
                let mut marks = vec![false; n_accounts];
                marks[account_idx] = true;
                *mark = HostMark::Accounts(marks);
            }
        }
    }

    fn uid(&mut self, dir_idx: usize, uid: &AccountName) {
        self.named[dir_idx].insert(uid.clone());
        match &mut self.dirs[dir_idx] {
            DirMark::Whole => {}
            DirMark::Uids(uids) => {
                uids.insert(uid.clone());
            }
            mark @ DirMark::No => *mark = DirMark::Uids(BTreeSet::from([uid.clone()])),
        }
    }
}

impl Inventory {
    /// The union of the positive `scopes`, less the excluded ones ([`Scope::Not`]), without
    /// duplicates. Only exclusions: everything less them. No scopes select nothing: callers
    /// that default to everything pass `[Scope::All]`. A scope or exclusion that names
    /// nothing in the inventory is an error, and so is a selection the exclusions empty.
    pub fn select(&self, scopes: &[Scope]) -> Result<Selection, ScopeError> {
        let (excluded, included): (Vec<&Scope>, Vec<&Scope>) =
            scopes.iter().partition(|s| matches!(s, Scope::Not(_)));
        let mut marks = Marks::new(self);
        if included.is_empty() && !excluded.is_empty() {
            self.mark(&Scope::All, &mut marks, false)?;
        }
        for scope in included {
            self.mark(scope, &mut marks, false)?;
        }
        let mut out = Marks::new(self);
        for scope in &excluded {
            if let Scope::Not(inner) = scope {
                self.mark(inner, &mut out, true)?;
            }
        }
        let selected_some = !marks.is_empty();
        self.subtract(&mut marks, &out, &excluded)?;
        if selected_some && marks.is_empty() {
            return Err(ScopeError::EmptyAfterExclusion {
                file: self.path.clone(),
                excluded: excluded
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(self.selection(marks))
    }

    /// Resolves scopes as written (each argument possibly a comma list): [`Scope::parse_list`]
    /// then [`Inventory::select`]. A bare name (`emr`) is answered with the kinds the
    /// inventory knows it as ("`emr` is a group: write group:emr").
    pub fn select_written<S: AsRef<str>>(&self, written: &[S]) -> Result<Selection, ScopeError> {
        let mut scopes = Vec::new();
        for arg in written {
            for term in split_terms(arg.as_ref()) {
                scopes.push(Scope::parse(term).map_err(|e| self.explain_bare(e))?);
            }
        }
        self.select(&scopes)
    }

    /// A bare name's error, with the kinds of name it is in this inventory.
    fn explain_bare(&self, err: ScopeError) -> ScopeError {
        let ScopeError::UnknownKind { input } = &err else {
            return err;
        };
        if !is_bare(input) {
            return err;
        }
        let name = input.strip_prefix('!').unwrap_or(input);
        let Ok(glob) = Glob::parse(name) else {
            return err;
        };
        let kinds: Vec<Kind> = Kind::ALL
            .into_iter()
            .filter(|kind| match kind {
                Kind::Host => self.hosts.iter().any(|h| glob.matches(h.name.as_str())),
                Kind::Group => self.groups().iter().any(|g| glob.matches(g)),
                Kind::Account => self
                    .hosts
                    .iter()
                    .any(|h| h.accounts.iter().any(|a| glob.matches(a.name.as_str()))),
                Kind::Directory => self
                    .directories
                    .iter()
                    .any(|d| glob.matches(d.name.as_str())),
                Kind::Cred => {
                    name.contains('/')
                        && self.hosts.iter().any(|h| {
                            h.accounts
                                .iter()
                                .any(|a| glob.matches(&a.credential(&h.name).to_string()))
                        })
                }
            })
            .collect();
        if kinds.is_empty() {
            return err;
        }
        ScopeError::Bare {
            input: input.clone(),
            kinds,
        }
    }

    /// Adds what one positive scope picks to `marks`; `excluding` words its error.
    fn mark(&self, scope: &Scope, marks: &mut Marks, excluding: bool) -> Result<(), ScopeError> {
        let to_exclude = if excluding { " to exclude" } else { "" };
        match scope {
            Scope::Not(_) => {
                // `Scope::parse` never nests exclusions; a caller that built one meant this.
                return Err(ScopeError::InvalidName {
                    input: scope.to_string(),
                    reason: "an exclusion inside an exclusion: write a single `!`".to_owned(),
                });
            }
            Scope::All => {
                marks.hosts.fill(HostMark::Whole);
                marks.dirs.fill(DirMark::Whole);
            }
            Scope::Host(name) => marks.hosts[self.host_idx(name, to_exclude)?] = HostMark::Whole,
            Scope::Directory(name) => match self.directories.iter().position(|d| &d.name == name) {
                Some(idx) => marks.dirs[idx] = DirMark::Whole,
                None => {
                    return Err(self.not_found(
                        format!("directory `{name}`{to_exclude}"),
                        name.as_str(),
                        self.directories.iter().map(|d| d.name.as_str()),
                        "directories",
                    ));
                }
            },
            Scope::Group(group) => {
                if !self.mark_groups(|g| g == group, marks) {
                    let groups = self.groups();
                    return Err(self.not_found(
                        format!("group `{group}`{to_exclude}"),
                        group,
                        groups.iter().map(String::as_str),
                        "groups",
                    ));
                }
            }
            Scope::Account(name) => {
                if !self.mark_accounts(|_, a| &a.name == name, marks) {
                    let names = self.account_names();
                    return Err(self.not_found(
                        format!("account `{name}` on any host{to_exclude}"),
                        name.as_str(),
                        names.into_iter(),
                        "accounts",
                    ));
                }
            }
            Scope::Cred(id)
                if let Some(idx) = self.directories.iter().position(|d| d.name == id.host) =>
            {
                marks.uid(idx, &id.account);
            }
            Scope::Cred(id) => {
                let host_idx = self.host_idx(&id.host, to_exclude)?;
                // The slot too: an account with a password and a key has two credentials,
                // `HOST/ACCOUNT` and `HOST/ACCOUNT:key`.
                let host = &self.hosts[host_idx];
                match host
                    .accounts
                    .iter()
                    .position(|a| a.credential(&host.name) == *id)
                {
                    Some(account_idx) => marks.account(host_idx, account_idx, host.accounts.len()),
                    None => {
                        let names: Vec<String> = host
                            .accounts
                            .iter()
                            .map(|a| a.credential(&host.name).to_string())
                            .collect();
                        return Err(self.not_found(
                            format!("credential `{id}`{to_exclude}"),
                            &id.to_string(),
                            names.iter().map(String::as_str),
                            "credentials on that host",
                        ));
                    }
                }
            }
            Scope::Pattern(kind, glob) => {
                let found = match kind {
                    Kind::Host => {
                        let mut found = false;
                        for (idx, host) in self.hosts.iter().enumerate() {
                            if glob.matches(host.name.as_str()) {
                                marks.hosts[idx] = HostMark::Whole;
                                found = true;
                            }
                        }
                        found
                    }
                    Kind::Directory => {
                        let mut found = false;
                        for (idx, d) in self.directories.iter().enumerate() {
                            if glob.matches(d.name.as_str()) {
                                marks.dirs[idx] = DirMark::Whole;
                                found = true;
                            }
                        }
                        found
                    }
                    Kind::Group => self.mark_groups(|g| glob.matches(g), marks),
                    Kind::Account => {
                        self.mark_accounts(|_, a| glob.matches(a.name.as_str()), marks)
                    }
                    Kind::Cred => self.mark_cred_pattern(scope, glob, marks)?,
                };
                if !found {
                    let known: Vec<String> = match kind {
                        Kind::Host => self.hosts.iter().map(|h| h.name.to_string()).collect(),
                        Kind::Directory => self
                            .directories
                            .iter()
                            .map(|d| d.name.to_string())
                            .collect(),
                        Kind::Group => self.groups(),
                        Kind::Account => self
                            .account_names()
                            .into_iter()
                            .map(str::to_owned)
                            .collect(),
                        Kind::Cred => self
                            .hosts
                            .iter()
                            .flat_map(|h| {
                                h.accounts.iter().map(|a| a.credential(&h.name).to_string())
                            })
                            .collect(),
                    };
                    let hint = if known.is_empty() {
                        format!("it has no {}", kind.plural())
                    } else {
                        format!(
                            "known {}: {}",
                            kind.plural(),
                            quoted_list(known.iter().map(String::as_str), 10)
                        )
                    };
                    return Err(ScopeError::NotFound {
                        file: self.path.clone(),
                        what: format!("{} matches `{glob}`{to_exclude}", kind.noun()),
                        hint,
                    });
                }
            }
        }
        Ok(())
    }

    /// Marks the hosts and directories in a group `wanted` accepts; whether there were any.
    fn mark_groups(&self, wanted: impl Fn(&str) -> bool, marks: &mut Marks) -> bool {
        let mut found = false;
        for (idx, d) in self.directories.iter().enumerate() {
            if d.groups.iter().any(|g| wanted(g)) {
                marks.dirs[idx] = DirMark::Whole;
                found = true;
            }
        }
        for (idx, host) in self.hosts.iter().enumerate() {
            if host.groups.iter().any(|g| wanted(g)) {
                marks.hosts[idx] = HostMark::Whole;
                found = true;
            }
        }
        found
    }

    /// Marks the host accounts `wanted` accepts; whether there were any.
    fn mark_accounts(
        &self,
        wanted: impl Fn(&Host, &super::Account) -> bool,
        marks: &mut Marks,
    ) -> bool {
        let mut found = false;
        for (host_idx, host) in self.hosts.iter().enumerate() {
            for (account_idx, account) in host.accounts.iter().enumerate() {
                if wanted(host, account) {
                    marks.account(host_idx, account_idx, host.accounts.len());
                    found = true;
                }
            }
        }
        found
    }

    /// `cred:HOSTGLOB/ACCOUNTGLOB`: the host credentials whose two parts match (the account
    /// part as written, `svc` or `svc:key`), and for matching directories the UID, which
    /// must then be a plain name: a directory's UIDs are known only once its searches run.
    fn mark_cred_pattern(
        &self,
        scope: &Scope,
        glob: &Glob,
        marks: &mut Marks,
    ) -> Result<bool, ScopeError> {
        // `Scope::parse` checked that both sides exist.
        let (host_part, account_part) =
            glob.as_str().split_once('/').unwrap_or((glob.as_str(), ""));
        let invalid = |reason: String| ScopeError::InvalidName {
            input: scope.to_string(),
            reason,
        };
        let host_glob = Glob::parse(host_part).map_err(invalid)?;
        let account_glob = Glob::parse(account_part).map_err(invalid)?;
        let mut found = self.mark_accounts(
            |h, a| {
                let id = a.credential(&h.name).to_string();
                let account = id.split_once('/').map_or("", |(_, account)| account);
                host_glob.matches(h.name.as_str()) && account_glob.matches(account)
            },
            marks,
        );
        // A directory credential has no `:key` slot.
        let mut refused = None;
        for (idx, d) in self.directories.iter().enumerate() {
            if !host_glob.matches(d.name.as_str()) || account_part.contains(':') {
                continue;
            }
            if is_glob(account_part) {
                refused.get_or_insert(&d.name);
                continue;
            }
            let uid = AccountName::parse(account_part).map_err(invalid)?;
            marks.uid(idx, &uid);
            found = true;
        }
        // Refused only when nothing else matched: `cred:*/svc_*` means the hosts' accounts.
        match refused {
            Some(name) if !found => Err(invalid(format!(
                "the accounts of directory `{name}` are known only once its searches run, so a glob cannot pick among them: name the UID (cred:{name}/UID) or take the whole directory (directory:{name})"
            ))),
            _ => Ok(found),
        }
    }

    /// Takes `out` (what the exclusions pick) from `marks`. A host left with none of its
    /// selected accounts is dropped, as is a directory left with no UIDs.
    fn subtract(
        &self,
        marks: &mut Marks,
        out: &Marks,
        excluded: &[&Scope],
    ) -> Result<(), ScopeError> {
        for (host_idx, gone) in out.hosts.iter().enumerate() {
            let mark = &mut marks.hosts[host_idx];
            match gone {
                HostMark::No => {}
                HostMark::Whole => *mark = HostMark::No,
                HostMark::Accounts(gone) => {
                    let mut keep = match mark {
                        HostMark::No => continue,
                        HostMark::Whole => vec![true; gone.len()],
                        HostMark::Accounts(keep) => keep.clone(),
                    };
                    keep.iter_mut().zip(gone).for_each(|(k, g)| *k &= !g);
                    *mark = if keep.iter().any(|k| *k) {
                        HostMark::Accounts(keep)
                    } else {
                        HostMark::No
                    };
                }
            }
        }
        for (dir_idx, gone) in out.dirs.iter().enumerate() {
            let named = &mut marks.named[dir_idx];
            let mark = &mut marks.dirs[dir_idx];
            match gone {
                DirMark::No => {}
                DirMark::Whole => {
                    *mark = DirMark::No;
                    named.clear();
                }
                DirMark::Uids(gone) => match mark {
                    DirMark::No => {}
                    DirMark::Uids(uids) => {
                        uids.retain(|u| !gone.contains(u));
                        named.retain(|u| !gone.contains(u));
                        if uids.is_empty() {
                            *mark = DirMark::No;
                        }
                    }
                    DirMark::Whole => {
                        let d = &self.directories[dir_idx];
                        let written = excluded
                            .iter()
                            .map(|s| s.to_string())
                            .collect::<Vec<_>>()
                            .join(",");
                        return Err(ScopeError::InvalidName {
                            input: written,
                            reason: format!(
                                "rotor cannot take single accounts out of directory `{}`: its accounts are known only once its searches run. Select the UIDs to act on instead (cred:{}/UID, one per account)",
                                d.name, d.name
                            ),
                        });
                    }
                },
            }
        }
        Ok(())
    }

    /// The selection `marks` describe, in inventory order.
    fn selection(&self, marks: Marks) -> Selection {
        let hosts = self
            .hosts
            .iter()
            .zip(marks.hosts)
            .filter_map(|(host, mark)| {
                let mut host = host.clone();
                match mark {
                    HostMark::No => return None,
                    HostMark::Whole => {}
                    HostMark::Accounts(keep) => {
                        let mut keep = keep.into_iter();
                        host.accounts.retain(|_| keep.next().unwrap_or(false));
                    }
                }
                Some(host)
            })
            .collect();
        let directories = self
            .directories
            .iter()
            .zip(marks.dirs)
            .zip(marks.named)
            .filter_map(|((d, mark), named)| {
                let only = match mark {
                    DirMark::No => return None,
                    DirMark::Whole => None,
                    DirMark::Uids(uids) => Some(uids),
                };
                Some(DirectorySelection {
                    directory: d.clone(),
                    only,
                    named,
                })
            })
            .collect();
        Selection { hosts, directories }
    }

    fn host_idx(&self, name: &HostName, to_exclude: &str) -> Result<usize, ScopeError> {
        self.hosts
            .iter()
            .position(|h| &h.name == name)
            .ok_or_else(|| {
                self.not_found(
                    format!("host `{name}`{to_exclude}"),
                    name.as_str(),
                    self.hosts.iter().map(|h| h.name.as_str()),
                    "hosts",
                )
            })
    }

    /// Every account name on some host, sorted, once each.
    fn account_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .hosts
            .iter()
            .flat_map(|h| h.accounts.iter().map(|a| a.name.as_str()))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Every group named by some host or directory, sorted.
    pub(super) fn groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = self
            .hosts
            .iter()
            .flat_map(|h| h.groups.iter().cloned())
            .chain(
                self.directories
                    .iter()
                    .flat_map(|d| d.groups.iter().cloned()),
            )
            .collect();
        groups.sort_unstable();
        groups.dedup();
        groups
    }

    fn not_found<'a>(
        &self,
        what: String,
        input: &str,
        known: impl Iterator<Item = &'a str> + Clone,
        plural: &str,
    ) -> ScopeError {
        let close = close_matches(input, known.clone());
        let hint = if let [one] = close.as_slice() {
            format!("did you mean `{one}`?")
        } else if !close.is_empty() {
            format!(
                "did you mean one of {}?",
                quoted_list(close.into_iter(), 10)
            )
        } else if known.clone().next().is_none() {
            format!("it has no {plural}")
        } else {
            format!("known {plural}: {}", quoted_list(known, 10))
        };
        ScopeError::NotFound {
            file: self.path.clone(),
            what,
            hint,
        }
    }
}

/// "`a`, `b`, `c`", at most `max` names, then how many more.
fn quoted_list<'a>(names: impl Iterator<Item = &'a str>, max: usize) -> String {
    let names: Vec<&str> = names.collect();
    let mut text = names
        .iter()
        .take(max)
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > max {
        text.push_str(&format!(" and {} more", names.len() - max));
    }
    text
}

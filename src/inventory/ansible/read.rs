//! Reading an Ansible inventory, INI or YAML, into [`Model`]: groups (with their vars,
//! children and hosts) and hosts (with their own vars), each value with the line it was
//! written on. This mirrors ansible-core 2.14's `ini` and `yaml` inventory plugins, including
//! their quirks (host ranges, `host:port`, `literal_eval` of INI values, last definition wins).

use std::collections::{BTreeMap, HashSet};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// The most hosts one inventory may expand to (`web[0:99999999]` must not fill memory).
pub const MAX_HOSTS: usize = 100_000;

/// The most host names (times the vars given with them) one inventory file may expand to,
/// counting a host again each time a section lists it: thousands of sections of
/// `web[00000:99999]` add no host but must not take hours. Every membership of a host in a
/// group comes from one expansion, so this bounds the memberships too.
pub const MAX_EXPANSIONS: usize = 10 * MAX_HOSTS;

/// The deepest nesting of lists an INI value may have (`[[[...]]]`).
pub const MAX_NESTING: usize = 64;

/// A variable's value as Ansible would hold it (enough of Python's types for the vars rotor
/// reads; anything else keeps a printable form).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    /// A mapping: rotor reads no mapping-valued var, so only its existence is kept.
    Map,
}

impl Value {
    /// The text Ansible would substitute for this value, for scalar values.
    pub fn scalar_text(&self) -> Option<String> {
        match self {
            Value::Str(s) => Some(s.clone()),
            Value::Int(n) => Some(n.to_string()),
            Value::Float(x) => Some(x.to_string()),
            Value::Bool(b) => Some(if *b { "True" } else { "False" }.to_owned()),
            Value::Null | Value::List(_) | Value::Map => None,
        }
    }

    /// Every string inside the value (for Jinja and vault checks).
    pub fn strings(&self) -> Vec<&str> {
        match self {
            Value::Str(s) => vec![s.as_str()],
            Value::List(items) => items.iter().flat_map(Value::strings).collect(),
            _ => Vec::new(),
        }
    }
}

/// Where something was written: a file of the import (0 is the inventory file) and a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct At {
    pub file: usize,
    /// 1-based; 0 when not known.
    pub line: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Var {
    pub value: Value,
    pub at: At,
}

#[derive(Debug, Clone, Default)]
pub struct Group {
    pub name: String,
    pub vars: BTreeMap<String, Var>,
    /// Vars from `group_vars/` beside the inventory (a higher precedence than `vars`).
    pub file_vars: BTreeMap<String, Var>,
    pub children: Vec<usize>,
    pub parents: Vec<usize>,
    pub at: At,
}

#[derive(Debug, Clone, Default)]
pub struct HostDef {
    pub name: String,
    pub vars: BTreeMap<String, Var>,
    /// Vars from `host_vars/` beside the inventory.
    pub file_vars: BTreeMap<String, Var>,
    /// Groups the host is listed in directly.
    pub groups: Vec<usize>,
    pub at: At,
}

/// An Ansible inventory as Ansible reads it, before rotor gives it meaning.
#[derive(Debug, Clone)]
pub struct Model {
    pub groups: Vec<Group>,
    pub hosts: Vec<HostDef>,
    group_idx: BTreeMap<String, usize>,
    host_idx: BTreeMap<String, usize>,
    /// `(host, group)` for every host listed in a group (`HostDef::groups`, as a set).
    memberships: HashSet<(usize, usize)>,
    /// `(parent, child)` for every link of `Group::children`.
    links: HashSet<(usize, usize)>,
    /// Host names (times their vars) expanded so far, against [`MAX_EXPANSIONS`].
    expanded: usize,
    /// What Ansible would warn about and skip (e.g. an unknown key in a YAML group).
    pub warnings: Vec<(At, String)>,
}

/// Why an inventory cannot be read at all (Ansible refuses it too).
#[derive(Debug, Clone, PartialEq)]
pub struct ReadError {
    pub at: At,
    pub message: String,
}

fn fail<T>(line: u64, message: impl Into<String>) -> Result<T, ReadError> {
    Err(ReadError {
        at: At { file: 0, line },
        message: message.into(),
    })
}

impl Model {
    fn new() -> Model {
        let mut model = Model {
            groups: Vec::new(),
            hosts: Vec::new(),
            group_idx: BTreeMap::new(),
            host_idx: BTreeMap::new(),
            memberships: HashSet::new(),
            links: HashSet::new(),
            expanded: 0,
            warnings: Vec::new(),
        };
        model.add_group("all", At::default());
        model.add_group("ungrouped", At::default());
        model
    }

    pub fn group(&self, name: &str) -> Option<usize> {
        self.group_idx.get(name).copied()
    }

    pub fn host(&self, name: &str) -> Option<usize> {
        self.host_idx.get(name).copied()
    }

    fn add_group(&mut self, name: &str, at: At) -> usize {
        if let Some(idx) = self.group_idx.get(name) {
            return *idx;
        }
        let idx = self.groups.len();
        self.groups.push(Group {
            name: name.to_owned(),
            at,
            ..Group::default()
        });
        self.group_idx.insert(name.to_owned(), idx);
        idx
    }

    fn add_child(&mut self, parent: usize, child: usize) {
        if parent != child && self.links.insert((parent, child)) {
            self.groups[parent].children.push(child);
            self.groups[child].parents.push(parent);
        }
    }

    /// `add_host`: the port of a `host:port` pattern is set as `ansible_port` only when the
    /// host is first seen (ansible's `Host.__init__`).
    fn add_host(
        &mut self,
        name: &str,
        group: usize,
        port: Option<i64>,
        at: At,
    ) -> Result<usize, ReadError> {
        let idx = match self.host_idx.get(name) {
            Some(idx) => *idx,
            None => {
                if self.hosts.len() >= MAX_HOSTS {
                    return fail(
                        at.line,
                        format!(
                            "more than {MAX_HOSTS} hosts: split the inventory, or check the host ranges"
                        ),
                    );
                }
                let idx = self.hosts.len();
                let mut host = HostDef {
                    name: name.to_owned(),
                    at,
                    ..HostDef::default()
                };
                if let Some(port) = port {
                    host.vars.insert(
                        "ansible_port".into(),
                        Var {
                            value: Value::Int(port),
                            at,
                        },
                    );
                }
                self.hosts.push(host);
                self.host_idx.insert(name.to_owned(), idx);
                idx
            }
        };
        if self.memberships.insert((idx, group)) {
            self.hosts[idx].groups.push(group);
        }
        Ok(idx)
    }

    /// [`expand_pattern`] on the line `at`, counting the names (times `1 + n_vars`, the work
    /// each costs) against [`MAX_EXPANSIONS`] for the whole file.
    fn expand(
        &mut self,
        pattern: &str,
        n_vars: usize,
        at: At,
    ) -> Result<(Vec<String>, Option<i64>), ReadError> {
        let (names, port) = expand_pattern(pattern).map_err(|message| ReadError { at, message })?;
        self.expanded = self
            .expanded
            .saturating_add(names.len().saturating_mul(n_vars.saturating_add(1)));
        if self.expanded > MAX_EXPANSIONS {
            return fail(
                at.line,
                format!(
                    "the host patterns up to this line list hosts (times their vars) more than {MAX_EXPANSIONS} times in all: list each range once and put the host in other groups with :children"
                ),
            );
        }
        Ok((names, port))
    }

    /// Vars from a `group_vars/NAME` or `host_vars/NAME` file (YAML), in file `file`.
    pub fn add_file_vars(
        &mut self,
        text: &str,
        file: usize,
        host: Option<usize>,
        group: Option<usize>,
    ) -> Result<(), ReadError> {
        let node = parse_yaml(text).map_err(|mut e| {
            e.at.file = file;
            e
        })?;
        let entries = match node.value {
            Node::Map(entries) => entries,
            Node::Null => Vec::new(),
            _ => {
                return Err(ReadError {
                    at: At {
                        file,
                        line: node.referenced.line(),
                    },
                    message: "a vars file must be a mapping of names to values".into(),
                });
            }
        };
        for (key, value) in entries {
            let var = Var {
                value: value.value.to_value(),
                at: At {
                    file,
                    line: key.referenced.line(),
                },
            };
            if let Some(h) = host {
                self.hosts[h].file_vars.insert(key.value.0, var);
            } else if let Some(g) = group {
                self.groups[g].file_vars.insert(key.value.0, var);
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// INI

/// `to_safe_group_name(name, force=True)`: what the INI plugin does to section names. Every
/// character that is not a word character becomes `_`, and so does a leading digit.
fn safe_group_name(name: &str) -> String {
    name.chars()
        .enumerate()
        .map(|(idx, c)| {
            if (c.is_alphanumeric() || c == '_') && !(idx == 0 && c.is_numeric()) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A section header: `[name]`, `[name:children]`, `[name:vars]`, with an optional comment.
/// `None` when the line is not one.
fn section_header(line: &str) -> Option<(&str, Option<&str>)> {
    let rest = line.strip_prefix('[')?;
    let close = rest.find(']')?;
    let inside = &rest[..close];
    let after = rest[close + 1..].trim_start();
    if !(after.is_empty() || after.starts_with('#')) {
        return None;
    }
    let (name, tag) = match inside.split_once(':') {
        Some((name, tag)) => (name, Some(tag)),
        None => (inside, None),
    };
    let name_ok = !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == ':');
    let tag_ok =
        tag.is_none_or(|t| !t.is_empty() && t.chars().all(|c| c.is_alphanumeric() || c == '_'));
    (name_ok && tag_ok).then_some((name, tag))
}

#[derive(Clone, Copy, PartialEq)]
enum Section {
    Hosts,
    Children,
    Vars,
}

/// The INI plugin's `_parse`.
pub fn parse_ini(text: &str) -> Result<Model, ReadError> {
    let mut model = Model::new();
    let mut group = model.group("ungrouped").unwrap_or(1);
    let mut state = Section::Hosts;
    // Groups named in a `:children` section or given `:vars` before they are declared.
    struct Pending {
        line: u64,
        vars: bool,
        parents: Vec<usize>,
    }
    let mut pending: BTreeMap<String, Pending> = BTreeMap::new();
    for (idx, raw) in text.lines().enumerate() {
        let line_no = idx as u64 + 1;
        let at = At {
            file: 0,
            line: line_no,
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some((name, tag)) = section_header(line) {
            let name = safe_group_name(name);
            state = match tag {
                None | Some("hosts") => Section::Hosts,
                Some("children") => Section::Children,
                Some("vars") => Section::Vars,
                Some(other) => {
                    return fail(
                        line_no,
                        format!(
                            "section [{name}:{other}] has an unknown type `{other}`: use [{name}], [{name}:children] or [{name}:vars]"
                        ),
                    );
                }
            };
            if model.group(&name).is_none()
                && state == Section::Vars
                && !pending.contains_key(&name)
            {
                pending.insert(
                    name.clone(),
                    Pending {
                        line: line_no,
                        vars: true,
                        parents: Vec::new(),
                    },
                );
            }
            group = model.add_group(&name, at);
            if state != Section::Vars
                && let Some(p) = pending.remove(&name)
            {
                for parent in p.parents {
                    model.add_child(parent, group);
                }
            }
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            return fail(
                line_no,
                format!(
                    "invalid section `{line}`: a section has no spaces and no other characters than the group name, `:children` or `:vars`"
                ),
            );
        }
        match state {
            Section::Hosts => {
                let tokens = shlex_split(line).map_err(|why| ReadError {
                    at,
                    message: format!("cannot read the host line: {why}"),
                })?;
                let Some(pattern) = tokens.first() else {
                    continue;
                };
                if let Some(secret) = secret_key(pattern) {
                    return fail(
                        line_no,
                        format!(
                            "`{secret}` (value not shown) where a host name belongs: write vars as key=value after a host name, or in a :vars section"
                        ),
                    );
                }
                let mut vars = Vec::new();
                for token in &tokens[1..] {
                    let Some((key, value)) = token.split_once('=') else {
                        return fail(
                            line_no,
                            format!(
                                "expected key=value after the host name, got `{}`",
                                quotable(token)
                            ),
                        );
                    };
                    let value =
                        literal_value(value).map_err(|message| ReadError { at, message })?;
                    vars.push((key.to_owned(), value));
                }
                let (names, port) = model.expand(pattern, vars.len(), at)?;
                if pattern.trim().ends_with(':') && port.is_none() {
                    return fail(
                        line_no,
                        format!(
                            "host pattern `{}` ends in ':' (reserved for a port)",
                            quotable(pattern)
                        ),
                    );
                }
                for name in names {
                    let h = model.add_host(&name, group, port, at)?;
                    for (key, value) in &vars {
                        model.hosts[h].vars.insert(
                            key.clone(),
                            Var {
                                value: value.clone(),
                                at,
                            },
                        );
                    }
                }
            }
            Section::Vars => {
                let Some((key, value)) = line.split_once('=') else {
                    return fail(
                        line_no,
                        format!(
                            "expected key=value in a :vars section, got `{}`",
                            quotable(line)
                        ),
                    );
                };
                let value =
                    literal_value(value.trim()).map_err(|message| ReadError { at, message })?;
                model.groups[group]
                    .vars
                    .insert(key.trim().to_owned(), Var { value, at });
            }
            Section::Children => {
                let name = line.split('#').next().unwrap_or("").trim();
                if name.is_empty()
                    || name
                        .chars()
                        .any(|c| c.is_whitespace() || c == ':' || c == ']')
                {
                    return fail(
                        line_no,
                        format!(
                            "expected a group name in a :children section, got `{}`",
                            quotable(line)
                        ),
                    );
                }
                match model.group(name) {
                    Some(child) => model.add_child(group, child),
                    None => pending
                        .entry(name.to_owned())
                        .or_insert(Pending {
                            line: line_no,
                            vars: false,
                            parents: Vec::new(),
                        })
                        .parents
                        .push(group),
                }
            }
        }
    }
    if let Some((name, p)) = pending.into_iter().next() {
        return if p.vars {
            fail(
                p.line,
                format!(
                    "section [{name}:vars] is for a group that is never declared: add a [{name}] section or remove it"
                ),
            )
        } else {
            fail(
                p.line,
                format!(
                    "a :children section names group `{name}`, which is never declared: add a [{name}] section"
                ),
            )
        };
    }
    Ok(model)
}

/// The secret var a line or token starts with (`ansible_password`, then `:`, `=`, a space or
/// nothing), for errors that must not quote its value.
fn secret_key(text: &str) -> Option<&str> {
    let key = text
        .trim_start()
        .split(|c: char| c == ':' || c == '=' || c.is_whitespace())
        .next()?;
    super::SECRET_VARS
        .iter()
        .find(|s| s.eq_ignore_ascii_case(key))
        .copied()
}

/// What an error may quote of a line or token that could hold a var's value: a secret var's
/// name alone, the text before the first `:` or `=` (then `...`), or else the whole text.
fn quotable(text: &str) -> String {
    if let Some(secret) = secret_key(text) {
        return format!("{secret}... (value not shown)");
    }
    match text.find([':', '=']) {
        Some(idx) => format!("{}... (value not shown)", &text[..idx]),
        None => text.to_owned(),
    }
}

/// Python's `shlex.split(line, comments=True)` (POSIX mode), as the INI plugin splits a host
/// line: quotes removed, backslash escapes, a `#` outside quotes ends the line.
pub fn shlex_split(line: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut token = String::new();
    let mut in_token = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_token {
                    tokens.push(std::mem::take(&mut token));
                    in_token = false;
                }
            }
            '#' => break,
            '\'' => {
                in_token = true;
                loop {
                    match chars.next() {
                        None => return Err("no closing quotation".into()),
                        Some('\'') => break,
                        Some(c) => token.push(c),
                    }
                }
            }
            '"' => {
                in_token = true;
                loop {
                    match chars.next() {
                        None => return Err("no closing quotation".into()),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            None => return Err("no closing quotation".into()),
                            Some(e @ ('"' | '\\')) => token.push(e),
                            Some(e) => {
                                token.push('\\');
                                token.push(e);
                            }
                        },
                        Some(c) => token.push(c),
                    }
                }
            }
            '\\' => {
                in_token = true;
                match chars.next() {
                    None => return Err("no escaped character".into()),
                    Some(e) => token.push(e),
                }
            }
            c => {
                in_token = true;
                token.push(c);
            }
        }
    }
    if in_token {
        tokens.push(token);
    }
    Ok(tokens)
}

/// `ast.literal_eval` as the INI plugin uses it, for the literals inventories hold: integers,
/// floats, `True`/`False`/`None`, quoted strings and lists of those. Anything else is the text
/// itself, as in Ansible. Lists nested deeper than [`MAX_NESTING`] are an error (the
/// parser must not run out of stack on hostile input).
pub fn literal_value(text: &str) -> Result<Value, String> {
    let mut parser = Literal {
        rest: text.trim(),
        depth: 0,
        too_deep: false,
    };
    let value = parser.value();
    if parser.too_deep {
        return Err(format!(
            "the value nests lists more than {MAX_NESTING} deep: rotor does not read it; flatten it or remove the var"
        ));
    }
    Ok(match value {
        Some(value) if parser.rest.trim().is_empty() => value,
        _ => Value::Str(text.to_owned()),
    })
}

struct Literal<'a> {
    rest: &'a str,
    /// Lists open around the current value.
    depth: usize,
    too_deep: bool,
}

impl Literal<'_> {
    fn skip_ws(&mut self) {
        self.rest = self.rest.trim_start();
    }

    fn value(&mut self) -> Option<Value> {
        self.skip_ws();
        let first = self.rest.chars().next()?;
        match first {
            '\'' | '"' => {
                let mut out = String::new();
                let mut chars = self.rest[1..].char_indices();
                loop {
                    let (idx, c) = chars.next()?;
                    if c == first {
                        self.rest = &self.rest[1 + idx + 1..];
                        return Some(Value::Str(out));
                    }
                    if c == '\\' {
                        let (_, e) = chars.next()?;
                        out.push(match e {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            '0' => '\0',
                            other => other,
                        });
                    } else {
                        out.push(c);
                    }
                }
            }
            '[' => {
                if self.depth >= MAX_NESTING {
                    self.too_deep = true;
                    return None;
                }
                self.rest = &self.rest[1..];
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    if let Some(rest) = self.rest.strip_prefix(']') {
                        self.rest = rest;
                        return Some(Value::List(items));
                    }
                    self.depth += 1;
                    let item = self.value();
                    self.depth -= 1;
                    items.push(item?);
                    self.skip_ws();
                    if let Some(rest) = self.rest.strip_prefix(',') {
                        self.rest = rest;
                    } else if !self.rest.starts_with(']') {
                        return None;
                    }
                }
            }
            _ => {
                let end = self
                    .rest
                    .find(|c: char| c == ',' || c == ']' || c.is_whitespace())
                    .unwrap_or(self.rest.len());
                let word = &self.rest[..end];
                let value = match word {
                    "True" => Value::Bool(true),
                    "False" => Value::Bool(false),
                    "None" => Value::Null,
                    _ => python_number(word)?,
                };
                self.rest = &self.rest[end..];
                Some(value)
            }
        }
    }
}

/// A Python int or float literal (with an optional sign, `_` separators, no leading zeros).
fn python_number(word: &str) -> Option<Value> {
    let (sign, digits) = match word.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, word.strip_prefix('+').unwrap_or(word)),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let plain: String = digits.chars().filter(|c| *c != '_').collect();
    if plain.chars().all(|c| c.is_ascii_digit()) {
        if plain.len() > 1 && plain.starts_with('0') && plain.chars().any(|c| c != '0') {
            return None;
        }
        return plain.parse::<i64>().ok().map(|n| Value::Int(sign * n));
    }
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = plain
            .strip_prefix(prefix)
            .or_else(|| plain.strip_prefix(&prefix.to_uppercase()))
        {
            return i64::from_str_radix(rest, radix)
                .ok()
                .map(|n| Value::Int(sign * n));
        }
    }
    if plain
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && plain.chars().any(|c| c.is_ascii_digit())
    {
        return plain
            .parse::<f64>()
            .ok()
            .map(|x| Value::Float(sign as f64 * x));
    }
    None
}

// ---------------------------------------------------------------------------------------
// Host patterns

/// `_expand_hostpattern`: `host`, `host:port`, `[v6]:port` and ranges (`web[01:10]`,
/// `db-[a:c]`, `[1:9:2]`), expanded as Ansible does.
pub fn expand_pattern(pattern: &str) -> Result<(Vec<String>, Option<i64>), String> {
    let (host, port) = split_port(pattern);
    let names = if host.contains('[') {
        let mut out = Vec::new();
        expand_range(&host, &mut out)?;
        out
    } else {
        vec![host]
    };
    Ok((names, port))
}

/// `parse_address(pattern, allow_ranges=True)`; a pattern it does not recognise is the host
/// name as written, without a port (as in Ansible).
fn split_port(pattern: &str) -> (String, Option<i64>) {
    let mut address = pattern.to_owned();
    let mut port = None;
    // `[host]:port`
    if let Some(inner) = pattern.strip_prefix('[')
        && let Some((host, p)) = inner.rsplit_once("]:")
        && !host.is_empty()
        && !p.is_empty()
        && p.chars().all(|c| c.is_ascii_digit())
    {
        address = host.to_owned();
        port = p.parse::<i64>().ok();
    }
    // `host:port`, where the host has no ':' outside a bracketed range.
    if let Some((host, p)) = address.rsplit_once(':')
        && !p.is_empty()
        && p.chars().all(|c| c.is_ascii_digit())
        && no_colon_outside_brackets(host)
    {
        port = p.parse::<i64>().ok();
        address = host.to_owned();
    }
    if address.parse::<std::net::Ipv6Addr>().is_ok() || is_hostname_pattern(&address) {
        (address, port)
    } else {
        (pattern.to_owned(), None)
    }
}

fn no_colon_outside_brackets(text: &str) -> bool {
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '[' => {
                if depth > 0 {
                    return false;
                }
                depth += 1;
            }
            ']' => {
                if depth == 0 {
                    return false;
                }
                depth -= 1;
            }
            ':' if depth == 0 => return false,
            _ => {}
        }
    }
    depth == 0
}

/// Ansible's `hostname` pattern: dot-separated labels of word characters, '-' and ranges,
/// starting with a word character or a range and not ending in '-' or '_'.
fn is_hostname_pattern(text: &str) -> bool {
    text.split('.').all(|label| {
        // Units: Some(char) for a character, None for a range.
        let mut units: Vec<Option<char>> = Vec::new();
        let mut rest = label;
        while let Some(c) = rest.chars().next() {
            if c == '[' {
                let Some(end) = rest.find(']') else {
                    return false;
                };
                if !is_range(&rest[1..end]) {
                    return false;
                }
                units.push(None);
                rest = &rest[end + 1..];
            } else {
                units.push(Some(c));
                rest = &rest[c.len_utf8()..];
            }
        }
        let word = |c: char| c.is_alphanumeric() || c == '_';
        match (units.first(), units.last()) {
            (Some(first), Some(last)) => {
                first.is_none_or(word)
                    && !matches!(last, Some('_' | '-'))
                    && units.iter().all(|u| u.is_none_or(|c| word(c) || c == '-'))
            }
            _ => false,
        }
    })
}

/// `[a:z]` (one letter each) or `[0:9]`, with an optional `:step`.
fn is_range(inside: &str) -> bool {
    let parts: Vec<&str> = inside.split(':').collect();
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    let letter = |s: &str| s.len() == 1 && s.chars().all(|c| c.is_ascii_alphabetic());
    let bounds_ok = |a: &str, b: &str| (digits(a) && digits(b)) || (letter(a) && letter(b));
    match parts.as_slice() {
        [a, b] => bounds_ok(a, b),
        [a, b, step] => bounds_ok(a, b) && digits(step),
        _ => false,
    }
}

/// `expand_hostname_range`, recursively for several ranges in one name.
fn expand_range(line: &str, out: &mut Vec<String>) -> Result<(), String> {
    let Some(open) = line.find('[') else {
        out.push(line.to_owned());
        return Ok(());
    };
    let head = &line[..open];
    let after = &line[open + 1..];
    let Some(close) = after.find(']') else {
        return Err(format!("host range in `{line}` has no closing ']'"));
    };
    let range = &after[..close];
    let tail = &after[close + 1..];
    let bounds: Vec<&str> = range.split(':').collect();
    let (beg, end, step) = match bounds.as_slice() {
        [b, e] => (*b, *e, "1"),
        [b, e, s] => (*b, *e, *s),
        _ => {
            return Err(format!(
                "host range `[{range}]` must be begin:end or begin:end:step"
            ));
        }
    };
    let beg = if beg.is_empty() { "0" } else { beg };
    if end.is_empty() {
        return Err(format!("host range `[{range}]` must give an end value"));
    }
    let step: usize = step.trim().parse().ok().filter(|s| *s > 0).ok_or_else(|| {
        format!("host range `[{range}]` has a step that is not a positive number")
    })?;
    let width = if beg.len() > 1 && beg.starts_with('0') {
        if beg.len() != end.len() {
            return Err(format!(
                "host range `[{range}]`: begin and end must have the same width (`01:10`, not `01:100`)"
            ));
        }
        beg.len()
    } else {
        0
    };
    let letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let seq: Vec<String> = match (letters.find(beg), letters.find(end)) {
        (Some(b), Some(e)) if beg.len() == 1 && end.len() == 1 => {
            if b > e {
                return Err(format!("host range `[{range}]` must have begin <= end"));
            }
            letters[b..=e]
                .chars()
                .step_by(step)
                .map(String::from)
                .collect()
        }
        _ => {
            let b: i64 = beg.trim().parse().map_err(|_| {
                format!("host range `[{range}]` is neither numbers nor single letters")
            })?;
            let e: i64 = end.trim().parse().map_err(|_| {
                format!("host range `[{range}]` is neither numbers nor single letters")
            })?;
            if e.saturating_sub(b) / step as i64 > MAX_HOSTS as i64 {
                return Err(format!(
                    "host range `[{range}]` makes more than {MAX_HOSTS} hosts"
                ));
            }
            (b..=e)
                .step_by(step)
                .map(|n| format!("{n:0width$}"))
                .collect()
        }
    };
    for item in seq {
        expand_range(&format!("{head}{item}{tail}"), out)?;
        if out.len() > MAX_HOSTS {
            return Err(format!("host ranges make more than {MAX_HOSTS} hosts"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// YAML

/// A YAML document without a target type: what the `yaml` plugin walks.
#[derive(Debug, Clone)]
pub enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<Key>, Spanned<Node>)>),
}

impl Node {
    fn to_value(&self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(n) => Value::Int(*n),
            Node::Float(x) => Value::Float(*x),
            Node::Str(s) => Value::Str(s.clone()),
            Node::Seq(items) => Value::List(items.iter().map(|i| i.value.to_value()).collect()),
            Node::Map(_) => Value::Map,
        }
    }

    fn get(&self, key: &str) -> Option<&Spanned<Node>> {
        match self {
            Node::Map(entries) => entries
                .iter()
                .rev()
                .find(|(k, _)| k.value.0 == key)
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

/// A mapping key of any scalar type, as text.
#[derive(Debug, Clone)]
pub struct Key(pub String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a scalar mapping key")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key, E> {
                Ok(Key(s.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Key, E> {
                Ok(Key(n.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Key, E> {
                Ok(Key(n.to_string()))
            }
            fn visit_f64<E: de::Error>(self, x: f64) -> Result<Key, E> {
                Ok(Key(x.to_string()))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Key, E> {
                Ok(Key(b.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
                Ok(Key(String::new()))
            }
            fn visit_none<E: de::Error>(self) -> Result<Key, E> {
                Ok(Key(String::new()))
            }
        }
        d.deserialize_any(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        struct NodeVisitor;
        impl<'de> Visitor<'de> for NodeVisitor {
            type Value = Node;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Node, E> {
                Ok(Node::Bool(b))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Node, E> {
                Ok(Node::Int(n))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Node, E> {
                Ok(i64::try_from(n).map_or(Node::Float(n as f64), Node::Int))
            }
            fn visit_f64<E: de::Error>(self, x: f64) -> Result<Node, E> {
                Ok(Node::Float(x))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Node, E> {
                Ok(Node::Str(s.to_owned()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Node, D2::Error> {
                Node::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key()? {
                    let value = map.next_value()?;
                    entries.push((key, value));
                }
                Ok(Node::Map(entries))
            }
        }
        d.deserialize_any(NodeVisitor)
    }
}

/// Reads YAML as Ansible's loader would: duplicate keys allowed (the last one wins), merge
/// keys, tags ignored (`!vault` values are their ciphertext), aliases bounded.
pub fn parse_yaml(text: &str) -> Result<Spanned<Node>, ReadError> {
    let mut options = serde_saphyr::Options::default();
    let mut budget = serde_saphyr::Budget::default();
    budget.max_aliases = crate::inventory::MAX_YAML_ALIASES;
    options.budget = Some(budget);
    options.with_snippet = false;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::LastWins;
    serde_saphyr::from_str_with_options::<Spanned<Node>>(text, options).map_err(|e| {
        let line = e.location().map_or(0, |l| l.line());
        ReadError {
            at: At { file: 0, line },
            message: format!("not valid YAML: {}", first_line(&e.to_string())),
        }
    })
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// Whether the YAML document is an inventory plugin's configuration (`plugin: aws_ec2`),
/// which a dynamic source reads, not a list of hosts.
pub fn plugin_name(node: &Node) -> Option<String> {
    node.get("plugin").and_then(|v| match &v.value {
        Node::Null | Node::Bool(false) => None,
        Node::Str(s) if s.is_empty() => None,
        other => Some(other.to_value().scalar_text().unwrap_or_else(|| "?".into())),
    })
}

/// The `yaml` plugin's `parse` over an already-read document.
pub fn model_from_yaml(doc: &Spanned<Node>) -> Result<Model, ReadError> {
    let mut model = Model::new();
    let Node::Map(entries) = &doc.value else {
        return fail(
            doc.referenced.line(),
            "a YAML inventory must be a mapping of group names (start it with `all:`)",
        );
    };
    for (name, data) in entries {
        yaml_group(&mut model, name, data)?;
    }
    Ok(model)
}

fn yaml_group(
    model: &mut Model,
    name: &Spanned<Key>,
    data: &Spanned<Node>,
) -> Result<Option<usize>, ReadError> {
    let line = name.referenced.line();
    let at = At { file: 0, line };
    let entries = match &data.value {
        Node::Map(entries) => entries.as_slice(),
        Node::Null => &[],
        _ => {
            model.warnings.push((
                at,
                format!(
                    "`{}` is not a group definition (a mapping): skipped, as Ansible does",
                    name.value.0
                ),
            ));
            return Ok(None);
        }
    };
    if name.value.0.is_empty() {
        return fail(line, "a group has an empty name");
    }
    let group = model.add_group(&name.value.0, at);
    for (key, value) in entries {
        let key_line = key.referenced.line();
        let section = key.value.0.as_str();
        // A string where a mapping belongs is a mapping with that one key (`hosts: web1`).
        let single;
        let value_node = match (&value.value, section) {
            (Node::Str(s), "vars" | "children" | "hosts") => {
                single = Node::Map(vec![(
                    Spanned::new(Key(s.clone()), value.referenced, value.defined),
                    Spanned::new(Node::Null, value.referenced, value.defined),
                )]);
                &single
            }
            (other, _) => other,
        };
        let items = match value_node {
            Node::Map(items) => items.as_slice(),
            Node::Null => continue,
            _ if matches!(section, "vars" | "children" | "hosts") => {
                return fail(
                    key_line,
                    format!("`{section}` of group `{}` must be a mapping", name.value.0),
                );
            }
            _ => {
                model.warnings.push((
                    At {
                        file: 0,
                        line: key_line,
                    },
                    format!(
                        "key `{section}` in group `{}` is not a mapping: skipped, as Ansible does",
                        name.value.0
                    ),
                ));
                continue;
            }
        };
        match section {
            "vars" => {
                for (var, v) in items {
                    model.groups[group].vars.insert(
                        var.value.0.clone(),
                        Var {
                            value: v.value.to_value(),
                            at: At {
                                file: 0,
                                line: var.referenced.line(),
                            },
                        },
                    );
                }
            }
            "children" => {
                for (child_name, child_data) in items {
                    if let Some(child) = yaml_group(model, child_name, child_data)? {
                        model.add_child(group, child);
                    }
                }
            }
            "hosts" => {
                for (pattern, host_data) in items {
                    let host_at = At {
                        file: 0,
                        line: pattern.referenced.line(),
                    };
                    let vars: &[(Spanned<Key>, Spanned<Node>)] = match &host_data.value {
                        Node::Map(vars) => vars,
                        Node::Null => &[],
                        _ => {
                            return fail(
                                host_at.line,
                                format!("host `{}`: its vars must be a mapping", pattern.value.0),
                            );
                        }
                    };
                    let (names, port) = model.expand(&pattern.value.0, vars.len(), host_at)?;
                    for host_name in names {
                        let h = model.add_host(&host_name, group, port, host_at)?;
                        for (var, v) in vars {
                            model.hosts[h].vars.insert(
                                var.value.0.clone(),
                                Var {
                                    value: v.value.to_value(),
                                    at: At {
                                        file: 0,
                                        line: var.referenced.line(),
                                    },
                                },
                            );
                        }
                    }
                }
            }
            other => {
                model.warnings.push((At { file: 0, line: key_line }, format!("key `{other}` in group `{}` is not vars, children or hosts: skipped, as Ansible does", name.value.0)));
            }
        }
    }
    Ok(Some(group))
}

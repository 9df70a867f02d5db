//! Templates: the text of a step with `{placeholders}`, parsed once when the playbook loads so
//! that every placeholder is known before anything runs. `{{` and `}}` are literal braces.
//!
//! Invariant: a template that becomes a command line (`run`, `path`) may hold no secret
//! placeholder (`{secret}`, `{saved.NAME}`); `load` checks it with [`Template::secrets`].

/// One parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub(super) pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Piece {
    Text(String),
    /// `{account}`: the validated account name.
    Account,
    /// `{host}`: the inventory's host name.
    Host,
    /// `{home}`: the account's home directory (`getent passwd`), read once.
    Home,
    /// A variable the playbook declares.
    Var(String),
    /// `{secret}`: the credential being applied or proven.
    Secret,
    /// `{saved.NAME}`: one part of the restore point.
    Saved(String),
}

impl Template {
    /// Parses `text`; `Err` says what is wrong with a placeholder (no location: the caller
    /// knows the field).
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((idx, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|(_, c)| *c) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let rest = &text[idx + 1..];
                    let Some(end) = rest.find('}') else {
                        return Err(
                            "a `{` opens a placeholder that is never closed: write `{{` for a literal brace"
                                .to_owned(),
                        );
                    };
                    let name = &rest[..end];
                    for _ in 0..name.chars().count() + 1 {
                        chars.next();
                    }
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(placeholder(name)?);
                }
                '}' => {
                    return Err(
                        "a `}` closes no placeholder: write `}}` for a literal brace".to_owned(),
                    );
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Template { pieces })
    }

    /// The secret placeholders it uses, as written (`{secret}`, `{saved.hash}`).
    pub fn secrets(&self) -> Vec<String> {
        self.pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Secret => Some("{secret}".to_owned()),
                Piece::Saved(name) => Some(format!("{{saved.{name}}}")),
                _ => None,
            })
            .collect()
    }

    /// The declared variables it uses.
    pub(super) fn vars(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Var(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// The restore point parts it uses (`{saved.NAME}`).
    pub(super) fn saved(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Saved(name) => Some(name.as_str()),
            _ => None,
        })
    }

    pub(super) fn uses(&self, wanted: &Piece) -> bool {
        self.pieces.contains(wanted)
    }
}

fn placeholder(name: &str) -> Result<Piece, String> {
    Ok(match name {
        "account" => Piece::Account,
        "host" => Piece::Host,
        "home" => Piece::Home,
        "secret" => Piece::Secret,
        _ => {
            if let Some(part) = name.strip_prefix("saved.") {
                if !is_name(part) {
                    return Err(format!(
                        "`{{{name}}}`: a saved part's name is lowercase letters, digits and '_'"
                    ));
                }
                Piece::Saved(part.to_owned())
            } else if is_name(name) {
                Piece::Var(name.to_owned())
            } else {
                return Err(format!(
                    "`{{{name}}}` is not a placeholder: use {{account}}, {{host}}, {{home}}, {{secret}}, {{saved.NAME}} or a variable declared under `vars:` (write `{{{{` for a literal brace)"
                ));
            }
        }
    })
}

/// A variable's or saved part's name: lowercase letters, digits and `_`, starting with a letter.
pub(super) fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expect: &str) {
        let got = match Template::parse(text) {
            Ok(t) => format!("{:?}", t.pieces),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expect, "{text}");
    }

    #[test]
    fn templates() {
        for (text, expect) in [
            (
                "getent shadow -- {account}",
                r#"[Text("getent shadow -- "), Account]"#,
            ),
            (
                "{account}:{secret}\n",
                r#"[Account, Text(":"), Secret, Text("\n")]"#,
            ),
            (
                "{saved.hash} {config}",
                r#"[Saved("hash"), Text(" "), Var("config")]"#,
            ),
            ("awk '{{print $1}}'", r#"[Text("awk '{print $1}'")]"#),
            (
                "{nope",
                "error: a `{` opens a placeholder that is never closed: write `{{` for a literal brace",
            ),
            (
                "a}b",
                "error: a `}` closes no placeholder: write `}}` for a literal brace",
            ),
            (
                "{Bad Name}",
                "error: `{Bad Name}` is not a placeholder: use {account}, {host}, {home}, {secret}, {saved.NAME} or a variable declared under `vars:` (write `{{` for a literal brace)",
            ),
            (
                "{saved.X}",
                "error: `{saved.X}`: a saved part's name is lowercase letters, digits and '_'",
            ),
            ("", "[]"),
        ] {
            check(text, expect);
        }
    }
}

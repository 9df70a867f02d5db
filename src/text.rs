//! Text from outside rotor (targets' messages, inventory values, directory entries, file
//! names) made safe to print on a terminal: control characters, which could move the cursor,
//! rewrite the screen or set the window title, are shown escaped (`\u{1b}`), as are the
//! Unicode bidirectional overrides that make text read differently from what it is.
//!
//! Every text output path uses it: the run report, the status and plan tables, inventory
//! errors and the error line `main` prints. JSON output needs none (serde escapes).
//! [`file_kind`] names what a path is, for messages about a file that is not what was
//! expected.

use std::borrow::Cow;

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
        )
}

/// `text` with every control character (newlines and tabs too) escaped: for one value, a
/// table cell, a line.
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_except(text, None)
}

/// `text` with control characters escaped except newlines: for messages of several lines.
pub fn escape_lines(text: &str) -> Cow<'_, str> {
    escape_except(text, Some('\n'))
}

fn escape_except(text: &str, keep: Option<char>) -> Cow<'_, str> {
    if !text.chars().any(|c| needs_escape(c) && Some(c) != keep) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if needs_escape(c) && Some(c) != keep {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// What a file is, in words, for messages about a path that is not what was expected.
pub fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let ft = meta.file_type();
    if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_char_device() || ft.is_block_device() {
        "a device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        for (input, expect) in [
            ("plain text", "plain text"),
            ("\x1b[2J\x1b]0;owned\x07", "\\u{1b}[2J\\u{1b}]0;owned\\u{7}"),
            ("a\nb\tc\r", "a\\u{a}b\\u{9}c\\u{d}"),
            ("\u{9b}31m", "\\u{9b}31m"),
            ("abc\u{202e}fed", "abc\\u{202e}fed"),
            ("a\u{200f}b\u{61c}", "a\\u{200f}b\\u{61c}"),
            ("日本語", "日本語"),
        ] {
            assert_eq!(escape(input), expect, "{input:?}");
        }
        assert_eq!(escape_lines("one\ntwo\x1b"), "one\ntwo\\u{1b}");
    }
}

/// A duration as a person reads it in a message: `2h`, `1h 30m`, `3d 4h`, `45s`.
pub fn duration_words(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    let (days, hours, mins, s) = (
        secs / 86_400,
        secs % 86_400 / 3_600,
        secs % 3_600 / 60,
        secs % 60,
    );
    let parts: Vec<String> = [(days, "d"), (hours, "h"), (mins, "m"), (s, "s")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if parts.is_empty() {
        "0s".to_owned()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod duration_tests {
    use std::time::Duration;

    #[test]
    fn durations_in_words() {
        let words = |s| super::duration_words(Duration::from_secs(s));
        assert_eq!(words(0), "0s");
        assert_eq!(words(45), "45s");
        assert_eq!(words(5_400), "1h 30m");
        assert_eq!(words(8 * 3_600), "8h");
        assert_eq!(words(3 * 86_400 + 4 * 3_600), "3d 4h");
    }
}

/// `message` without the `HOST (ADDR:PORT): ` or `HOST: ` a connector puts first, so that
/// the same failure on many hosts reads as one message.
pub fn without_host_lead<'a>(message: &'a str, host: &str) -> &'a str {
    let Some(rest) = message.strip_prefix(host) else {
        return message;
    };
    match rest.strip_prefix(" (") {
        Some(r) => r.split_once("): ").map_or(message, |(_, after)| after),
        None => rest.strip_prefix(": ").unwrap_or(message),
    }
}

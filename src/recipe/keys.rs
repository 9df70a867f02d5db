//! The `authorized-keys-*` actions over a host's shell: read the account's
//! `~/.ssh/authorized_keys`, edit it with [`crate::sshkey::authorized_keys`] (every line rotor
//! does not manage kept byte for byte, outside breach mode), and write it back atomically (a temporary file in the
//! same directory, then a rename; owner, group and mode kept; `~/.ssh` created 0700 when
//! missing).
//!
//! The keys rotor manages are the entries whose comment is the credential's
//! (`rotor:HOST/ACCOUNT`, [`crate::sshkey::comment_for`]), the vault's current key where the
//! file has it (an enrolled key, installed by someone else) and the bootstrap connect key
//! ([`Previous::also`]); the restore point lists their fingerprints, one per line, sorted.
//! Breach mode is the exception: there every key of the file is the credential's previous
//! one, the restore point (first line `every-key`) also keeps each line it will remove, and
//! retiring writes the new key alone, so nothing else is kept.
//!
//! Invariant: the account owns its home directory and may be hostile (a compromised service
//! account): whatever it plants in `~/.ssh` (a link to `/etc/shadow`, a swap between a check
//! and a write) must not make rotor read or write anything the account could not itself.
//! So the file is read and written **as the account** (`runuser -u ACCOUNT`, the command
//! run as root by the shell), never as root: through any link or race the account
//! reaches only what it could reach anyway. On top of that, `~/.ssh` and the file must not be
//! symbolic links, the file must have one link and belong to the account, and a file the
//! account cannot write (a root-owned `~/.ssh`, a read-only file system) fails the step with
//! its own words.

use super::WhichKey;
use super::run::{AuthorizedKeys, Previous, Shell};
use crate::connector::{ConnectorError, FaultClass};
use crate::credential::CredentialId;
use crate::secret::Secret;
use crate::sshkey::{self, Fingerprint, authorized_keys};

/// The real editor (the default of every recipe host).
pub struct ShellAuthorizedKeys;

/// Exit status of the scripts below when `~/.ssh` or the file is not safe to touch.
const UNSAFE: i32 = 4;

/// `script` run as the account itself (see the module's invariant).
fn as_account(account: &str, script: &str) -> String {
    format!("runuser -u {account} -- sh -c '{script}'")
}

/// Reads the file (empty output when there is none), at most one byte past the editor's cap
/// so that a larger file is refused rather than cut.
fn read_script(home: &str, account: &str) -> String {
    as_account(
        account,
        &format!(
            "cd -P -- {home} || exit 1; h=$(pwd -P); test -L .ssh && exit {UNSAFE}; test -d .ssh || exit 0; cd -P .ssh || exit 1; test \"$(pwd -P)\" = \"${{h%/}}/.ssh\" || exit {UNSAFE}; f=authorized_keys; test -L $f && exit {UNSAFE}; test -e $f || exit 0; test -f $f || exit {UNSAFE}; test \"$(stat -c %U:%h $f)\" = {account}:1 || exit {UNSAFE}; head -c {} $f",
            authorized_keys::MAX_BYTES + 1
        ),
    )
}

/// Writes stdin as the file, as the account: `~/.ssh` made 0700 when missing; a temporary
/// file beside the old one takes its group and mode (0600 for a new file), then replaces it
/// by a rename.
fn write_script(home: &str, account: &str) -> String {
    as_account(
        account,
        &format!(
            "umask 077; cd -P -- {home} || exit 1; h=$(pwd -P); test -L .ssh && exit {UNSAFE}; if ! test -e .ssh; then mkdir -m 0700 .ssh || exit 1; fi; cd -P .ssh || exit 1; test \"$(pwd -P)\" = \"${{h%/}}/.ssh\" || exit {UNSAFE}; f=authorized_keys; test -L $f && exit {UNSAFE}; if test -e $f; then test -f $f || exit {UNSAFE}; test \"$(stat -c %U:%h $f)\" = {account}:1 || exit {UNSAFE}; fi; t=$(mktemp $f.rotor-XXXXXX) || exit 1; if cat > \"$t\" && if test -e $f; then chown --reference=$f \"$t\" && chmod --reference=$f \"$t\"; else chmod 0600 \"$t\"; fi && mv -f \"$t\" $f; then exit 0; fi; rm -f \"$t\"; exit 1"
        ),
    )
}

fn unsafe_file(cred: &CredentialId, home: &str) -> ConnectorError {
    ConnectorError::new(
        FaultClass::Refused,
        format!(
            "{cred}: {home}/.ssh or its authorized_keys is a link, has more than one link, or belongs to another user; rotor will not edit it. Look at who changed it, make ~/.ssh a directory of the account and authorized_keys a plain file of the account's, then rotate again"
        ),
    )
}

/// The current file's bytes.
fn read_file(
    shell: &mut dyn Shell,
    cred: &CredentialId,
    home: &str,
) -> Result<Vec<u8>, ConnectorError> {
    let cmd = read_script(home, cred.account.as_str());
    let out = shell.exec(&cmd, b"")?;
    match out.status {
        0 => Ok(out.stdout.to_vec()),
        UNSAFE => Err(unsafe_file(cred, home)),
        status => Err(ConnectorError::new(
            FaultClass::Protocol,
            format!(
                "{cred}: reading {home}/.ssh/authorized_keys failed (exit status {status}); does the connect user have root or sudo rights?"
            ),
        )),
    }
}

fn write_file(
    shell: &mut dyn Shell,
    cred: &CredentialId,
    home: &str,
    text: &[u8],
) -> Result<(), ConnectorError> {
    let cmd = write_script(home, cred.account.as_str());
    let out = shell.exec(&cmd, text)?;
    match out.status {
        0 => Ok(()),
        UNSAFE => Err(unsafe_file(cred, home)),
        status => Err(ConnectorError::new(
            FaultClass::Refused,
            format!(
                "{cred}: writing {home}/.ssh/authorized_keys as the account failed (exit status {status}); check that the account can write its ~/.ssh (it is edited as the account, never as root) and that the file system is writable and not full"
            ),
        )),
    }
}

fn edit_error(cred: &CredentialId, e: authorized_keys::AuthorizedKeysError) -> ConnectorError {
    ConnectorError::new(FaultClass::Refused, format!("{cred}: {e}"))
}

fn key_error(cred: &CredentialId, e: sshkey::KeyError) -> ConnectorError {
    ConnectorError::new(
        FaultClass::Protocol,
        format!("{cred}: the vault's key cannot be read as an SSH key ({e})"),
    )
}

/// The fingerprints of the entries rotor manages for `cred`, sorted.
fn managed(cred: &CredentialId, text: &[u8]) -> Result<Vec<Fingerprint>, ConnectorError> {
    let comment = sshkey::comment_for(cred);
    let lines = authorized_keys::parse(text).map_err(|e| edit_error(cred, e))?;
    let mut fps: Vec<Fingerprint> = lines
        .into_iter()
        .filter_map(|line| match line.kind {
            authorized_keys::LineKind::Key { fingerprint, .. } => {
                let text = String::from_utf8_lossy(line.raw);
                let last = text.split_whitespace().last();
                (last == Some(comment.as_str())).then_some(fingerprint)
            }
            _ => None,
        })
        .collect();
    fps.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    fps.dedup();
    Ok(fps)
}

fn listed(managed: &str) -> Vec<Fingerprint> {
    managed
        .lines()
        .filter_map(|l| Fingerprint::parse(l.trim()).ok())
        .collect()
}

/// First line of a restore point read in breach mode ([`Previous::every_key`]): every key of
/// the file is the credential's previous key, and retiring leaves the new key alone in it.
const EVERY_KEY: &str = "every-key";

/// Whether a restore point (a key credential's, whole) was read in breach mode.
pub(super) fn is_every_key(restore_point: &str) -> bool {
    restore_point.lines().next() == Some(EVERY_KEY)
}

/// The lines a breach-mode restore point kept (those its rotation removes from
/// `authorized_keys`), each as the file had it, with a description (fingerprint and comment)
/// for a person; `None` for a restore point not read in breach mode.
pub fn kept_lines(restore_point: &str) -> Option<Vec<(String, Vec<u8>)>> {
    use base64::Engine as _;
    if !is_every_key(restore_point) {
        return None;
    }
    let lines = restore_point
        .lines()
        .filter_map(|l| l.strip_prefix(KEPT))
        .filter_map(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .map(|raw| {
            let described = authorized_keys::parse(&raw)
                .ok()
                .and_then(|lines| lines.first().map(describe))
                .unwrap_or_default();
            (described, raw)
        })
        .collect();
    Some(lines)
}

/// Prefix of a restore point line keeping one line that breach mode removes (base64, so any
/// bytes fit): the vault keeps it, so an operator can put a line back.
const KEPT: &str = "kept ";

/// What a line of a file says about itself, for a note: its fingerprint and comment (text
/// from the host: escaped and cut).
fn describe(line: &authorized_keys::Line<'_>) -> String {
    let text = String::from_utf8_lossy(line.raw);
    let text = text.trim_end();
    match &line.kind {
        authorized_keys::LineKind::Key { fingerprint, .. } => {
            // The comment follows the base64 key body (which starts `AAAA`).
            let words: Vec<&str> = text.split_whitespace().collect();
            let comment = words
                .iter()
                .position(|w| w.starts_with("AAAA"))
                .map(|at| words[at + 1..].join(" "))
                .unwrap_or_default();
            let comment: String = crate::text::escape(&comment).chars().take(80).collect();
            if comment.is_empty() {
                format!("{fingerprint} (no comment)")
            } else {
                format!("{fingerprint} \"{comment}\"")
            }
        }
        // Not quoted: such a line may be anything, a private key pasted by mistake included.
        _ => format!("a line rotor cannot read as a key ({} bytes)", text.len()),
    }
}

impl AuthorizedKeys for ShellAuthorizedKeys {
    fn read(
        &self,
        shell: &mut dyn Shell,
        cred: &CredentialId,
        home: &str,
        previous: &Previous<'_>,
    ) -> Result<String, ConnectorError> {
        use base64::Engine as _;
        let text = read_file(shell, cred, home)?;
        if previous.every_key {
            // Every key line (and every line sshd might read as one) is replaced; each is kept
            // whole in the restore point, which the vault keeps.
            let lines = authorized_keys::parse(&text).map_err(|e| edit_error(cred, e))?;
            let mut fps: Vec<&Fingerprint> = Vec::new();
            let mut kept: Vec<String> = Vec::new();
            // Each line without its line ending: adding the new key gives an unterminated
            // last line one, and a rollback must still read back as saved.
            let body = |raw: &[u8]| {
                let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
                base64::engine::general_purpose::STANDARD
                    .encode(raw.strip_suffix(b"\r").unwrap_or(raw))
            };
            for line in &lines {
                match &line.kind {
                    authorized_keys::LineKind::Key { fingerprint, .. } => {
                        fps.push(fingerprint);
                        kept.push(body(line.raw));
                    }
                    authorized_keys::LineKind::Unparsed => kept.push(body(line.raw)),
                    _ => {}
                }
            }
            fps.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            fps.dedup();
            let mut out = vec![EVERY_KEY.to_owned()];
            out.extend(fps.iter().map(|f| f.as_str().to_owned()));
            out.extend(kept.into_iter().map(|k| format!("{KEPT}{k}")));
            return Ok(out.join("\n"));
        }
        let mut fps = managed(cred, &text)?;
        // The vault's current key, installed by someone else (enrolled), and the bootstrap
        // connect key: keys this rotation replaces, so rotor's to remove once the new one is
        // current.
        let present = authorized_keys::fingerprints(&text).map_err(|e| edit_error(cred, e))?;
        let known = previous.known.and_then(|k| sshkey::public_of(k).ok());
        for public in known.iter().chain(previous.also) {
            if present.contains(public.fingerprint()) && !fps.contains(public.fingerprint()) {
                fps.push(public.fingerprint().clone());
            }
        }
        fps.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(fps
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join("\n"))
    }

    fn add(
        &self,
        shell: &mut dyn Shell,
        cred: &CredentialId,
        home: &str,
        new: &Secret,
    ) -> Result<(), ConnectorError> {
        let public = sshkey::public_of(new).map_err(|e| key_error(cred, e))?;
        let text = read_file(shell, cred, home)?;
        let edit = authorized_keys::add(&text, &public).map_err(|e| edit_error(cred, e))?;
        if edit.changed() {
            write_file(shell, cred, home, &edit.text)?;
        }
        Ok(())
    }

    fn remove(
        &self,
        shell: &mut dyn Shell,
        cred: &CredentialId,
        home: &str,
        which: WhichKey,
        managed: &str,
        key: &Secret,
    ) -> Result<Vec<String>, ConnectorError> {
        let public = sshkey::public_of(key).map_err(|e| key_error(cred, e))?;
        let every_key = managed.lines().next() == Some(EVERY_KEY);
        if which == WhichKey::Previous && every_key {
            // Breach mode: the new key, proven and current, is left alone in the file.
            let text = read_file(shell, cred, home)?;
            let lines = authorized_keys::parse(&text).map_err(|e| edit_error(cred, e))?;
            let removed: Vec<String> = lines
                .iter()
                .filter(|l| match &l.kind {
                    authorized_keys::LineKind::Key { fingerprint, .. } => {
                        fingerprint != public.fingerprint()
                    }
                    authorized_keys::LineKind::Unparsed => true,
                    _ => false,
                })
                .map(describe)
                .collect();
            let only = format!("{}\n", public.line());
            if text != only.as_bytes() {
                write_file(shell, cred, home, only.as_bytes())?;
            }
            return Ok(removed);
        }
        let gone: Vec<Fingerprint> = match which {
            WhichKey::New => vec![public.fingerprint().clone()],
            WhichKey::Previous => listed(managed)
                .into_iter()
                .filter(|f| f != public.fingerprint())
                .collect(),
        };
        if gone.is_empty() {
            return Ok(Vec::new());
        }
        let text = read_file(shell, cred, home)?;
        let lines = authorized_keys::parse(&text).map_err(|e| edit_error(cred, e))?;
        let own = sshkey::comment_for(cred);
        // Said in the report: keys removed that rotor did not install itself (the bootstrap
        // connect key, an enrolled key), so the operator sees that they stopped working.
        let removed: Vec<String> = lines
            .iter()
            .filter(|l| {
                matches!(&l.kind, authorized_keys::LineKind::Key { fingerprint, .. } if gone.contains(fingerprint))
                    && String::from_utf8_lossy(l.raw).split_whitespace().last() != Some(own.as_str())
            })
            .map(describe)
            .collect();
        let edit = authorized_keys::remove(&text, &gone).map_err(|e| edit_error(cred, e))?;
        if edit.changed() {
            write_file(shell, cred, home, &edit.text)?;
        }
        Ok(removed)
    }

    fn holds(&self, managed: &str, key: &Secret) -> Option<bool> {
        let public = sshkey::public_of(key).ok()?;
        Some(listed(managed).contains(public.fingerprint()))
    }
}

/// The fleet scan's one command per host (sent as a script on stdin to `sh -s`): for each
/// account, as the account (the module's invariant; its home from `runuser`'s `HOME`, so no
/// path from the host enters the script), one line `NAME STATE [BASE64]`: `keys` and the
/// file's bytes (at most one byte past the cap), or `none`, `nohome`, `unsafe`, `failed`. The
/// bytes are base64 so a hostile file cannot forge another account's line.
pub(super) fn scan_script(accounts: &[crate::credential::AccountName]) -> String {
    let inner = format!(
        "cd -P ~ 2>/dev/null || {{ echo nohome; exit 0; }}; h=$(pwd -P); test -L .ssh && {{ echo unsafe; exit 0; }}; test -d .ssh || {{ echo none; exit 0; }}; cd -P .ssh || {{ echo unsafe; exit 0; }}; test \"$(pwd -P)\" = \"${{h%/}}/.ssh\" || {{ echo unsafe; exit 0; }}; f=authorized_keys; test -L $f && {{ echo unsafe; exit 0; }}; test -e $f || {{ echo none; exit 0; }}; test -f $f || {{ echo unsafe; exit 0; }}; test \"$(stat -c %U:%h $f)\" = \"$(id -un):1\" || {{ echo unsafe; exit 0; }}; printf \"keys \"; head -c {} $f | base64 -w0; echo",
        authorized_keys::MAX_BYTES + 1
    );
    let mut script = String::new();
    for a in accounts {
        // `a` passed the Linux user-name rule: safe unquoted in a command line.
        script.push_str(&format!(
            "printf '%s ' {a}; {} </dev/null 2>/dev/null || echo failed\n",
            as_account(a.as_str(), &inner)
        ));
    }
    script
}

/// What one account's line of [`scan_script`] says.
pub(super) enum ScannedKeys {
    Keys(Vec<String>),
    Absent,
    Unreadable(String),
}

/// Reads [`scan_script`]'s output: each listed account's fingerprints, or why not.
pub(super) fn parse_scan(out: &[u8]) -> Vec<(String, ScannedKeys)> {
    use base64::Engine as _;
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|line| {
            let mut f = line.split(' ');
            let name = f.next()?.to_owned();
            let state = f.next().unwrap_or("");
            let got = match state {
                "keys" => {
                    let text = base64::engine::general_purpose::STANDARD
                        .decode(f.next().unwrap_or(""))
                        .map_err(|_| "the host's answer was not base64".to_owned())
                        .and_then(|bytes| {
                            authorized_keys::fingerprints(&bytes).map_err(|e| e.to_string())
                        });
                    match text {
                        Ok(fps) => {
                            ScannedKeys::Keys(fps.iter().map(|f| f.as_str().to_owned()).collect())
                        }
                        Err(why) => ScannedKeys::Unreadable(why),
                    }
                }
                "none" | "nohome" => ScannedKeys::Absent,
                "unsafe" => ScannedKeys::Unreadable(
                    "~/.ssh or its authorized_keys is a link, has more than one link, or belongs to another user; not read".into(),
                ),
                _ => ScannedKeys::Unreadable(
                    "reading ~/.ssh/authorized_keys as the account failed".into(),
                ),
            };
            Some((name, got))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Entropy, SeededEntropy};

    #[test]
    fn scan_lines_are_read_per_account_and_a_file_cannot_forge_another_line() {
        use base64::Engine as _;
        let cred = CredentialId::parse("h1/alice").unwrap();
        let key = sshkey::generate(&mut *SeededEntropy::new(9).rng(), &cred);
        // A hostile file holding what looks like another account's line: base64 keeps it
        // inside alice's.
        let file = format!("{}\nbob keys AAAA\n", key.public.line());
        let b64 = base64::engine::general_purpose::STANDARD.encode(file);
        let out = format!("alice keys {b64}\nbob none\ncarol unsafe\ndave failed\nerin keys !!\n");
        let got: Vec<String> = parse_scan(out.as_bytes())
            .into_iter()
            .map(|(name, k)| match k {
                ScannedKeys::Keys(fps) => format!("{name} {}", fps.join(",")),
                ScannedKeys::Absent => format!("{name} absent"),
                ScannedKeys::Unreadable(_) => format!("{name} unreadable"),
            })
            .collect();
        assert_eq!(
            got,
            [
                format!("alice {}", key.public.fingerprint()),
                "bob absent".into(),
                "carol unreadable".into(),
                "dave unreadable".into(),
                "erin unreadable".into(),
            ]
        );
        let names = [crate::credential::AccountName::parse("alice").unwrap()];
        let script = scan_script(&names);
        assert!(
            script.starts_with("printf '%s ' alice; runuser -u alice -- sh -c '"),
            "{script}"
        );
    }

    #[test]
    fn only_entries_with_the_credentials_comment_are_rotors() {
        let cred = CredentialId::parse("h1/deploy").unwrap();
        let other = CredentialId::parse("h2/deploy").unwrap();
        let entropy = SeededEntropy::new(3);
        let mine = sshkey::generate(&mut *entropy.rng(), &cred);
        let theirs = sshkey::generate(&mut *entropy.rng(), &other);
        let text = format!(
            "# vendor\n{}\n{}\n",
            mine.public.line(),
            theirs.public.line()
        );
        let fps = managed(&cred, text.as_bytes()).unwrap();
        assert_eq!(fps, [mine.public.fingerprint().clone()]);
        let listed_text = fps[0].as_str().to_owned();
        assert_eq!(
            ShellAuthorizedKeys.holds(&listed_text, &mine.private),
            Some(true)
        );
        assert_eq!(
            ShellAuthorizedKeys.holds(&listed_text, &theirs.private),
            Some(false)
        );
    }

    #[test]
    fn the_scripts_run_as_the_account_refuse_links_and_keep_group_and_mode() {
        let read = read_script("/home/deploy", "deploy");
        let write = write_script("/home/deploy", "deploy");
        for script in [&read, &write] {
            assert!(
                script.starts_with("runuser -u deploy -- sh -c '"),
                "{script}"
            );
            assert!(script.contains("test -L .ssh && exit 4"), "{script}");
            assert!(script.contains("test -L $f && exit 4"), "{script}");
            assert!(
                script.contains("stat -c %U:%h $f)\" = deploy:1"),
                "{script}"
            );
            assert!(script.contains("\"${h%/}/.ssh\""), "{script}");
        }
        assert!(write.contains("chown --reference=$f"), "{write}");
        assert!(write.contains("umask 077;"), "{write}");
        assert!(write.contains("mkdir -m 0700 .ssh"), "{write}");
        assert!(read.contains("head -c 1048577"), "{read}");
    }
}

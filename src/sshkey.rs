//! SSH key pairs for the `linux-ssh-key` credential kind, and `authorized_keys` editing. Pure:
//! no I/O, the RNG comes from the caller.
//!
//! - [`generate`]: an ed25519 key pair; the private key in OpenSSH format as a [`Secret`] (what
//!   the vault stores and `rotor show` prints), the public key as an `authorized_keys` line
//!   whose comment marks it as rotor's (`rotor:HOST/ACCOUNT`), and its SHA256 fingerprint.
//! - [`public_of`]: the public half of a stored private key, so the previous key rotor
//!   installed can be found (by fingerprint) from the vault's current secret.
//! - [`parse_private`]: validates a key an operator enrolls (`rotor enroll CRED --ssh-key
//!   FILE`): an unencrypted OpenSSH ed25519 private key, re-encoded canonically.
//! - [`authorized_keys`]: line-preserving edits (add one key, remove keys by fingerprint).
//!
//! A rotation of `linux-ssh-key` uses it so: `generate` a pair and stage its private key;
//! read `~/.ssh/authorized_keys`, `authorized_keys::add` the new public key, write the file
//! back (atomically; the runner's job); prove the new key (`connector::ssh::check_key_login`);
//! commit; then `authorized_keys::remove` the fingerprint of `public_of(previous secret)` (the
//! key rotor installed before, if the vault held one) and write the file again. An undo
//! removes the new key's fingerprint the same way. Keys rotor did not install are never named,
//! so never removed.
//!
//! The OpenSSH encodings and the key arithmetic are the `ssh-key` crate's; only the reading of
//! an `authorized_keys` line's layout (options, then key) is rotor's, mirroring sshd.
//!
//! This module must never: put key text (private or public) into an error, or change a line of
//! an `authorized_keys` file other than the ones the caller asked for.

use std::fmt;

use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey};

use crate::clock::SecureRng;
use crate::credential::CredentialId;
use crate::secret::Secret;

/// The largest private key file [`parse_private`] reads. An OpenSSH ed25519 key is about 400
/// bytes; a 16384-bit RSA key about 12 KiB.
pub const MAX_PRIVATE_KEY_BYTES: usize = 64 * 1024;

/// An OpenSSH SHA256 fingerprint, `SHA256:` and 43 characters of unpadded base64 (what
/// `ssh-keygen -l` prints).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// Parses `SHA256:...` as `ssh-keygen -l` prints it.
    pub fn parse(text: &str) -> Result<Fingerprint, String> {
        let fp: ssh_key::Fingerprint = text.parse().map_err(|_| {
            "not an SSH fingerprint: expected `SHA256:` and 43 base64 characters, as \
             `ssh-keygen -lf KEY` prints"
                .to_owned()
        })?;
        if fp.algorithm() != HashAlg::Sha256 {
            return Err("only SHA256 fingerprints are used by rotor".into());
        }
        Ok(Fingerprint(fp.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn of(key: &ssh_key::PublicKey) -> Fingerprint {
        Fingerprint(key.fingerprint(HashAlg::Sha256).to_string())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The public half of a key pair: one `authorized_keys` line (`ssh-ed25519 BASE64 COMMENT`,
/// no options, no line ending, printable ASCII only) and its fingerprint. Built only by this
/// module, so a line handed to [`authorized_keys::add`] is always one well-formed key line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    line: String,
    fingerprint: Fingerprint,
}

impl PublicKey {
    /// Parses a public key line (`TYPE BASE64 [COMMENT]`, e.g. a `.pub` file's line).
    pub fn parse(line: &str) -> Result<PublicKey, KeyError> {
        let key = ssh_key::PublicKey::from_openssh(line.trim_end_matches(['\r', '\n']))
            .map_err(|e| KeyError::Malformed(e.to_string()))?;
        Ok(PublicKey::of(&key))
    }

    /// The `authorized_keys` line, without a line ending.
    pub fn line(&self) -> &str {
        &self.line
    }

    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// The line as `ssh-key` encodes it; a comment that is not printable ASCII (a hostile
    /// enrolled key's comment could hold a line break) is left out.
    fn of(key: &ssh_key::PublicKey) -> PublicKey {
        let mut key = key.clone();
        if !key.comment().bytes().all(|b| (b' '..=b'~').contains(&b)) {
            key.set_comment("");
        }
        let line = key
            .to_openssh()
            .expect("a decoded or generated public key always re-encodes");
        PublicKey {
            fingerprint: Fingerprint::of(&key),
            line,
        }
    }
}

/// A key pair rotor made.
#[derive(Debug)]
pub struct KeyPair {
    /// The private key in OpenSSH format (`-----BEGIN OPENSSH PRIVATE KEY-----`, LF line
    /// endings, ending with one newline), unencrypted: the vault encrypts it.
    pub private: Secret,
    pub public: PublicKey,
}

/// Why a private key was refused. No variant holds any of the key's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key file is empty; give the private key file (e.g. ~/.ssh/id_ed25519)")]
    Empty,
    #[error(
        "the key file is {size} bytes, more than the {MAX_PRIVATE_KEY_BYTES} bytes a private key \
         takes; check that it is the private key file"
    )]
    TooLarge { size: usize },
    #[error(
        "this is a public key; give the private key file (the one without `.pub`), e.g. \
         ~/.ssh/id_ed25519"
    )]
    PublicKeyGiven,
    #[error(
        "this is a PuTTY key; convert a copy to OpenSSH format with `puttygen COPY -O \
         private-openssh-new -o COPY.openssh` and enroll that"
    )]
    Putty,
    #[error(
        "this is a {format} private key; rotor reads OpenSSH format (`-----BEGIN OPENSSH \
         PRIVATE KEY-----`) and manages ed25519 keys: enroll an ed25519 key (`ssh-keygen -t \
         ed25519`), or let the first rotation generate one"
    )]
    NotOpenssh { format: &'static str },
    #[error(
        "this is not an OpenSSH private key ({0}); give a file that begins with `-----BEGIN \
         OPENSSH PRIVATE KEY-----`, as `ssh-keygen -t ed25519` writes"
    )]
    Malformed(String),
    #[error(
        "the key is protected by a passphrase; rotor keeps it in its encrypted vault and must \
         use it unattended: remove the passphrase from a copy (`cp KEY COPY && ssh-keygen -p \
         -N '' -f COPY`), enroll the copy, then delete it"
    )]
    Encrypted,
    #[error(
        "this is a security-key (FIDO) key: it needs its hardware token at every login, which \
         rotor cannot use unattended; enroll a plain ed25519 key, or let the first rotation \
         generate one"
    )]
    SecurityKey,
    #[error(
        "this is {}, not ed25519; rotor's linux-ssh-key rotates ed25519 keys only (every key it \
         generates is ed25519, so the credential would change type at its first rotation): \
         enroll an ed25519 key (`ssh-keygen -t ed25519`), or let the first rotation generate one",
        describe_algorithm(algorithm.as_deref())
    )]
    Unsupported {
        /// The key's type, when `ssh-key` could read it (ECDSA and DSA private keys it does not
        /// decode without features rotor does not need).
        algorithm: Option<String>,
    },
}

fn describe_algorithm(algorithm: Option<&str>) -> String {
    match algorithm {
        Some(name) => format!("a {name} key"),
        None => "a key of another type (ECDSA, DSA or one rotor does not know)".into(),
    }
}

/// The comment rotor puts on every key it generates for `cred`: `rotor:HOST/ACCOUNT`.
pub fn comment_for(cred: &CredentialId) -> String {
    format!("rotor:{cred}")
}

/// A new ed25519 key pair for `cred`, its comment [`comment_for`] (in the private key and in
/// the public line).
pub fn generate(rng: &mut dyn SecureRng, cred: &CredentialId) -> KeyPair {
    let mut key = PrivateKey::random(&mut &mut *rng, Algorithm::Ed25519)
        .expect("ed25519 key generation cannot fail (ssh-key 0.6: no fallible step)");
    key.set_comment(comment_for(cred));
    let public = PublicKey::of(key.public_key());
    KeyPair {
        private: encode(&key),
        public,
    }
}

/// Whether a stored secret is an OpenSSH private key (a key credential) rather than a
/// password: what a connection offers it as, and what an export calls it. By its armor only;
/// [`public_of`] reads it.
pub fn is_private_key(secret: &Secret) -> bool {
    secret
        .expose()
        .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
}

/// The public half of a private key rotor stored (generated or enrolled).
pub fn public_of(private: &Secret) -> Result<PublicKey, KeyError> {
    let key = decode(private.expose())?;
    Ok(PublicKey::of(key.public_key()))
}

/// Validates a private key an operator enrolls: an unencrypted OpenSSH ed25519 key whose public
/// half matches its private half. Returns it re-encoded as rotor writes keys (LF line endings,
/// one final newline), which is what the vault stores and `rotor show` prints.
///
/// Refused, each with its fix: a passphrase-protected key (rotor must use it unattended; the
/// vault is its protection), other key types (rotation generates ed25519, so the credential
/// would change type on its first rotation), security keys (need hardware at each login),
/// PEM/PKCS#8 and PuTTY files, public keys.
pub fn parse_private(text: &str) -> Result<Secret, KeyError> {
    let key = decode(text)?;
    Ok(encode(&key))
}

fn encode(key: &PrivateKey) -> Secret {
    let mut text = key
        .to_openssh(LineEnding::LF)
        .expect("an in-memory ed25519 key always encodes");
    // Move the string out of its `Zeroizing` wrapper into the `Secret`: no copy is left.
    Secret::new(std::mem::take(&mut *text))
}

fn decode(text: &str) -> Result<PrivateKey, KeyError> {
    if text.len() > MAX_PRIVATE_KEY_BYTES {
        return Err(KeyError::TooLarge { size: text.len() });
    }
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(KeyError::Empty);
    }
    if trimmed.starts_with("PuTTY-User-Key-File-") {
        return Err(KeyError::Putty);
    }
    let first = trimmed.lines().next().unwrap_or_default().trim_end();
    let pem_format = [
        ("-----BEGIN RSA PRIVATE KEY-----", "PEM RSA"),
        ("-----BEGIN EC PRIVATE KEY-----", "PEM EC"),
        ("-----BEGIN DSA PRIVATE KEY-----", "PEM DSA"),
        ("-----BEGIN PRIVATE KEY-----", "PKCS#8"),
        ("-----BEGIN ENCRYPTED PRIVATE KEY-----", "encrypted PKCS#8"),
    ];
    if let Some((_, format)) = pem_format.iter().find(|(begin, _)| first == *begin) {
        return Err(KeyError::NotOpenssh { format });
    }
    if first.starts_with("ssh-")
        || first.starts_with("ecdsa-")
        || first.starts_with("sk-")
        || first.starts_with("---- BEGIN SSH2 PUBLIC KEY")
        || first.contains("PUBLIC KEY-----")
    {
        return Err(KeyError::PublicKeyGiven);
    }
    let key = PrivateKey::from_openssh(trimmed.as_bytes()).map_err(|e| match e {
        ssh_key::Error::AlgorithmUnknown => KeyError::Unsupported { algorithm: None },
        e => KeyError::Malformed(e.to_string()),
    })?;
    if key.is_encrypted() {
        return Err(KeyError::Encrypted);
    }
    match key.algorithm() {
        Algorithm::Ed25519 => Ok(key),
        Algorithm::SkEd25519 | Algorithm::SkEcdsaSha2NistP256 => Err(KeyError::SecurityKey),
        other => Err(KeyError::Unsupported {
            // The name comes from the file: printable and short, or not named.
            algorithm: Some(other.as_str())
                .filter(|a| a.len() <= 64 && a.bytes().all(|b| b.is_ascii_graphic()))
                .map(str::to_owned),
        }),
    }
}

/// Line-preserving edits of an `authorized_keys` file, read as sshd reads it
/// (sshd(8) "AUTHORIZED_KEYS FILE FORMAT"; `auth_check_authkey_line` in OpenSSH): a line whose
/// first non-blank character is `#` is a comment; otherwise a line is a key (`TYPE BASE64
/// [COMMENT]`), or options then a key (options end at the first space or tab outside double
/// quotes). Anything else (an unknown key type, a broken key, binary junk, a line that is not
/// UTF-8) is kept verbatim and never matched.
///
/// The functions take and return bytes: the file comes from a target and need not be text.
/// Every line the caller did not ask to change comes back byte for byte, line ending included.
pub mod authorized_keys {
    use super::{Fingerprint, PublicKey};

    /// The largest file rotor edits. OpenSSH reads larger ones, but a file of thousands of keys
    /// is not a file rotor should rewrite; a hostile or broken host must not make rotor hold
    /// gigabytes.
    pub const MAX_BYTES: usize = 1024 * 1024;

    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub enum AuthorizedKeysError {
        #[error(
            "the authorized_keys file is {size} bytes, more than the {MAX_BYTES} bytes rotor \
             edits; look at it (it may not be an authorized_keys file), trim it, and rotate again"
        )]
        TooLarge { size: usize },
    }

    /// What one line is.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum LineKind {
        /// Empty or only spaces and tabs.
        Blank,
        /// First non-blank character `#`.
        Comment,
        /// A key sshd would read.
        Key {
            fingerprint: Fingerprint,
            /// Options precede the key (`from="..."`, `restrict`, `command="..."`).
            has_options: bool,
        },
        /// Not a key rotor can read (unknown type, broken, not text). Kept verbatim.
        Unparsed,
    }

    /// One line of the file.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Line<'a> {
        /// The line's bytes with its line ending (`\n`, or none on an unterminated last line).
        pub raw: &'a [u8],
        pub kind: LineKind,
    }

    /// The result of an edit.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Edit {
        /// The whole new file.
        pub text: Vec<u8>,
        pub n_added: usize,
        pub n_removed: usize,
    }

    impl Edit {
        /// False when the file is unchanged (nothing to write).
        pub fn changed(&self) -> bool {
            self.n_added + self.n_removed > 0
        }
    }

    /// Splits `text` into lines and says what each is.
    pub fn parse(text: &[u8]) -> Result<Vec<Line<'_>>, AuthorizedKeysError> {
        Ok(lines(text)?.collect())
    }

    /// The lines one at a time: the edits below never hold a `Line` per line of a file of a
    /// million empty lines.
    fn lines(text: &[u8]) -> Result<impl Iterator<Item = Line<'_>>, AuthorizedKeysError> {
        if text.len() > MAX_BYTES {
            return Err(AuthorizedKeysError::TooLarge { size: text.len() });
        }
        Ok(text.split_inclusive(|&b| b == b'\n').map(|raw| Line {
            raw,
            kind: kind_of(raw),
        }))
    }

    /// The fingerprints of the keys in `text`, in file order (a key listed twice, twice).
    pub fn fingerprints(text: &[u8]) -> Result<Vec<Fingerprint>, AuthorizedKeysError> {
        Ok(lines(text)?
            .filter_map(|line| match line.kind {
                LineKind::Key { fingerprint, .. } => Some(fingerprint),
                _ => None,
            })
            .collect())
    }

    /// Appends `key` as a line of its own, unless a line already holds that key (with any
    /// options or comment): then the file is returned unchanged. A last line without a line
    /// ending gets one first, so the new key starts a line.
    pub fn add(text: &[u8], key: &PublicKey) -> Result<Edit, AuthorizedKeysError> {
        let present = lines(text)?.any(|line| {
            matches!(&line.kind, LineKind::Key { fingerprint, .. } if fingerprint == key.fingerprint())
        });
        let mut out = text.to_vec();
        if present {
            return Ok(Edit {
                text: out,
                n_added: 0,
                n_removed: 0,
            });
        }
        if !out.is_empty() && !out.ends_with(b"\n") {
            out.push(b'\n');
        }
        out.extend_from_slice(key.line().as_bytes());
        out.push(b'\n');
        Ok(Edit {
            text: out,
            n_added: 1,
            n_removed: 0,
        })
    }

    /// Removes every line whose key has one of `fingerprints`; every other line stays byte for
    /// byte (comments, blank lines, unparsed lines, other keys, lines rotor does not manage).
    pub fn remove(text: &[u8], fingerprints: &[Fingerprint]) -> Result<Edit, AuthorizedKeysError> {
        let mut out = Vec::with_capacity(text.len());
        let mut n_removed = 0;
        for line in lines(text)? {
            match &line.kind {
                LineKind::Key { fingerprint, .. } if fingerprints.contains(fingerprint) => {
                    n_removed += 1;
                }
                _ => out.extend_from_slice(line.raw),
            }
        }
        Ok(Edit {
            text: out,
            n_added: 0,
            n_removed,
        })
    }

    fn is_blank(b: u8) -> bool {
        b == b' ' || b == b'\t'
    }

    fn kind_of(raw: &[u8]) -> LineKind {
        let line = raw.strip_suffix(b"\n").unwrap_or(raw);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let start = line.iter().position(|&b| !is_blank(b));
        let Some(start) = start else {
            return LineKind::Blank;
        };
        let line = &line[start..];
        if line[0] == b'#' {
            return LineKind::Comment;
        }
        // As sshd: a key first; failing that, options, blanks, then a key.
        if let Some(fingerprint) = key_at(line) {
            return LineKind::Key {
                fingerprint,
                has_options: false,
            };
        }
        let rest = past_options(line);
        let rest = &rest[rest
            .iter()
            .position(|&b| !is_blank(b))
            .unwrap_or(rest.len())..];
        match key_at(rest) {
            Some(fingerprint) if !rest.is_empty() => LineKind::Key {
                fingerprint,
                has_options: true,
            },
            _ => LineKind::Unparsed,
        }
    }

    /// The fingerprint of the key `TYPE BASE64` at the start of `line` (a comment may follow;
    /// it is not read, so it may be anything).
    fn key_at(line: &[u8]) -> Option<Fingerprint> {
        let mut fields = line.split(|&b| is_blank(b)).filter(|f| !f.is_empty());
        let key_type = std::str::from_utf8(fields.next()?).ok()?;
        let base64 = std::str::from_utf8(fields.next()?).ok()?;
        let key = ssh_key::PublicKey::from_openssh(&format!("{key_type} {base64}")).ok()?;
        Some(Fingerprint::of(&key))
    }

    /// `line` past its options: up to the first space or tab outside double quotes, `\"`
    /// escaping a quote (OpenSSH's `sshkey_advance_past_options`). An unterminated quote
    /// leaves nothing, as sshd then skips the line.
    fn past_options(line: &[u8]) -> &[u8] {
        let mut quoted = false;
        let mut idx = 0;
        while idx < line.len() && (quoted || !is_blank(line[idx])) {
            if line[idx] == b'\\' && line.get(idx + 1) == Some(&b'"') {
                idx += 1;
            } else if line[idx] == b'"' {
                quoted = !quoted;
            }
            idx += 1;
        }
        if quoted { &[] } else { &line[idx..] }
    }
}

#[cfg(test)]
mod tests {
    use super::authorized_keys::{self, AuthorizedKeysError, LineKind};
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn cred() -> CredentialId {
        CredentialId::parse("emr-db-01/deploy").unwrap()
    }

    fn keypair(seed: u64) -> KeyPair {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        generate(&mut rng, &cred())
    }

    // `ssh-keygen -t ed25519 -N '' -C test@rotor`; `ssh-keygen -lf` prints
    // 256 SHA256:hc77bb1ORmfA9mgFtmbLs44BODmsmebBwcueFYizKbQ test@rotor (ED25519)
    const OTHER_LINE: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKSs3E4orYCVUv8bdx6vsQB1ee4iWOmvGKpBBOinj5/s test@rotor";
    const OTHER_FP: &str = "SHA256:hc77bb1ORmfA9mgFtmbLs44BODmsmebBwcueFYizKbQ";
    const RSA_LINE: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7mmNrvuIdjlQPSmj52uksj9IVvg+VEe8eBEyNqg/QDysz4BzbaAMjLnbVfkbLZ5E5BHGJgzHMDVaQZA0i/Pj1XlHHlE8iyNJVYM5OppM0Zh5HAlbp0f+gLg/6CwSWVxR+JR/vb8GCa8n4ntz87bcqTzXZGImMtnGIVj5WYCNIEw== rsa@rotor";

    #[test]
    fn a_generated_pair_is_an_openssh_ed25519_key_marked_as_rotors() {
        let pair = keypair(1);
        let text = pair.private.expose();
        assert!(
            text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"),
            "{}",
            text.lines().next().unwrap()
        );
        assert!(text.ends_with("-----END OPENSSH PRIVATE KEY-----\n"));
        assert!(!text.ends_with("\n\n"));
        let line = pair.public.line();
        assert!(
            line.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA"),
            "{line}"
        );
        assert!(line.ends_with(" rotor:emr-db-01/deploy"), "{line}");
        assert!(!line.contains('\n'));
        assert!(pair.public.fingerprint().as_str().starts_with("SHA256:"));
        assert_eq!(pair.public.fingerprint().as_str().len(), 7 + 43);
        // The stored private key gives back the same public key.
        assert_eq!(public_of(&pair.private).unwrap(), pair.public);
        // Enrolling what rotor wrote gives the same text.
        assert_eq!(parse_private(text).unwrap().expose(), text);
        assert_ne!(keypair(2).public, pair.public);
        // The RNG decides: the same seed, the same key.
        assert_eq!(keypair(1).public, pair.public);
    }

    #[test]
    fn fingerprints_are_openssh_ones() {
        let key = PublicKey::parse(OTHER_LINE).unwrap();
        assert_eq!(key.fingerprint().as_str(), OTHER_FP);
        assert_eq!(key.line(), OTHER_LINE);
        assert_eq!(Fingerprint::parse(OTHER_FP).unwrap(), *key.fingerprint());
        assert!(Fingerprint::parse("MD5:ab:cd").is_err());
        assert!(Fingerprint::parse("SHA256:short").is_err());
    }

    /// One row: key file text => accepted, or an error whose message holds every needle.
    fn check_private(text: &str, expect: Result<(), KeyError>) {
        let got = parse_private(text).map(|_| ());
        assert_eq!(got, expect, "{text:.60}");
        if let Err(e) = got {
            let msg = e.to_string();
            for piece in text.split_whitespace().filter(|p| p.len() >= 16) {
                assert!(!msg.contains(piece), "key text in the message: {msg}");
            }
        }
    }

    // `ssh-keygen -t ed25519 -N pass -C enc` (bcrypt, aes256-ctr).
    const ENCRYPTED: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0AAAAGAAAABDBZJIngO
cwne7oIUasQkVxAAAAEAAAAAEAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIK8tlavY3fNCxhC2
tM92eAt86pbXncA3nNniru+0cLLgAAAAkM/S3amv7LnuTXN4NY11DqyiAsOC12TT0u/hl3
M3eyaj/mkWqoDydYvFtaRpmhs6ylKh7alWYPjhFQVLVgRCdLrkV2GUuZIfAAmUvyVNga5x
eqF4SHhOWitLq6hoH7b2tgg+n+JlfBOEXR1rcTll6+ukfF9sx0R+VNP14TS0LH8T26XruJ
iUUJ/e9bcPACsKxg==
-----END OPENSSH PRIVATE KEY-----
";

    #[test]
    fn enrolled_keys_are_checked() {
        let pair = keypair(3);
        let good = pair.private.expose().to_owned();
        check_private(&good, Ok(()));
        // CRLF line endings and surrounding blank lines are accepted and normalised.
        let crlf = format!("\n{}\n", good.replace('\n', "\r\n"));
        assert_eq!(parse_private(&crlf).unwrap().expose(), good);
        check_private("", Err(KeyError::Empty));
        check_private(" \n\n", Err(KeyError::Empty));
        check_private(
            &"x".repeat(MAX_PRIVATE_KEY_BYTES + 1),
            Err(KeyError::TooLarge {
                size: MAX_PRIVATE_KEY_BYTES + 1,
            }),
        );
        check_private(OTHER_LINE, Err(KeyError::PublicKeyGiven));
        check_private(pair.public.line(), Err(KeyError::PublicKeyGiven));
        check_private(
            "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n",
            Err(KeyError::Putty),
        );
        check_private(
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEow==\n-----END RSA PRIVATE KEY-----\n",
            Err(KeyError::NotOpenssh { format: "PEM RSA" }),
        );
        check_private(
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n",
            Err(KeyError::NotOpenssh { format: "PKCS#8" }),
        );
        check_private(ENCRYPTED, Err(KeyError::Encrypted));
        // A body cut short, and garbage between the markers.
        let cut: String = good.lines().take(3).collect::<Vec<_>>().join("\n");
        assert!(matches!(parse_private(&cut), Err(KeyError::Malformed(_))));
        let junk = "-----BEGIN OPENSSH PRIVATE KEY-----\n!!!!\n-----END OPENSSH PRIVATE KEY-----\n";
        assert!(matches!(parse_private(junk), Err(KeyError::Malformed(_))));
        assert!(matches!(
            parse_private("hello world"),
            Err(KeyError::Malformed(_))
        ));
        assert!(matches!(
            public_of(&Secret::new("hunter2".into())),
            Err(KeyError::Malformed(_))
        ));
    }

    #[test]
    fn other_key_types_are_refused_with_the_reason() {
        // `ssh-keygen -t ecdsa -N '' -C ec`.
        let ecdsa = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAaAAAABNlY2RzYS
1zaGEyLW5pc3RwMjU2AAAACG5pc3RwMjU2AAAAQQTTpyTsJUd4US21eiXBj5CwGndJRpTp
sICxt5LJGNYBjvpbSB1go1rt2Vjr0ImyhM3eQ55UQTRT6tXER2i6Y2hyAAAAoJMvlQKTL5
UCAAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBNOnJOwlR3hRLbV6
JcGPkLAad0lGlOmwgLG3kskY1gGO+ltIHWCjWu3ZWOvQibKEzd5DnlRBNFPq1cRHaLpjaH
IAAAAhAKFPzHFjXPyFiTWt5MFNntniSEX7nddqhTf8jPSWbNYiAAAAAmVjAQIDBAU=
-----END OPENSSH PRIVATE KEY-----
";
        check_private(ecdsa, Err(KeyError::Unsupported { algorithm: None }));
        let msg = parse_private(ecdsa).unwrap_err().to_string();
        assert!(msg.contains("a key of another type (ECDSA"), "{msg}");
        assert!(msg.contains("ed25519 keys only"), "{msg}");
        // `ssh-keygen -t rsa -b 1024 -N '' -C rsa@rotor` (RSA_LINE is its public half).
        let rsa = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAlwAAAAdzc2gtcn
NhAAAAAwEAAQAAAIEAu5pja77iHY5UD0po+drpLI/SFb4PlRHvHgRMjaoP0A8rM+Ac22gD
Iy521X5Gy2eROQRxiYMxzA1WkGQNIvz49V5Rx5RPIsjSVWDOTqaTNGYeRwJW6dH/oC4P+g
sEllcUfiUf72/BgmvJ+J7c/O23Kk812RiJjLZxiFY+VmAjSBMAAAIAzBQbNMwUGzQAAAAH
c3NoLXJzYQAAAIEAu5pja77iHY5UD0po+drpLI/SFb4PlRHvHgRMjaoP0A8rM+Ac22gDIy
521X5Gy2eROQRxiYMxzA1WkGQNIvz49V5Rx5RPIsjSVWDOTqaTNGYeRwJW6dH/oC4P+gsE
llcUfiUf72/BgmvJ+J7c/O23Kk812RiJjLZxiFY+VmAjSBMAAAADAQABAAAAgQChWcHUs5
HqdbVaiVcMPfl6OCAqTxM71PbhzDTDStbazZEMxt5K3oSER7wxFrBw1RyT+3xjFxFHPNmM
ymB6DTVY6dAMEylOLi3F1yb2S1slQZbW635IMS8PkkY/B4pUR2hALToIOPyrx1evUUuwZ/
2sxoi19pnz05Fu0KZY13WUoQAAAEBynB1X05vgg4yR515LPJQZ91dAiGpiftXyu2T85g1k
MEL0fIZC4dJzCBT2PUKlAmR738H+PMw/19X55ycw9KfPAAAAQQDr1QRHEbYqW/fouqPs5u
EyL37gTHl1eBBmjviRPMf63juvyMnb0MFtuv5LKOFcJziNT0JFJynL3R+1C9CH0IMrAAAA
QQDLpYMOyzPQLTA894dcn9nA1d0KqdsIAtSLWphH4PM0O6zdX2f7j5NByZYIHYE5MEqvEF
yj13rO3o41K9Si1nq5AAAACXJzYUByb3RvcgE=
-----END OPENSSH PRIVATE KEY-----
";
        check_private(
            rsa,
            Err(KeyError::Unsupported {
                algorithm: Some("ssh-rsa".into()),
            }),
        );
        let msg = parse_private(rsa).unwrap_err().to_string();
        assert!(msg.contains("this is a ssh-rsa key, not ed25519"), "{msg}");
    }

    #[test]
    fn messages_say_the_fix() {
        for (err, needle) in [
            (KeyError::Encrypted, "ssh-keygen -p -N '' -f COPY"),
            (KeyError::PublicKeyGiven, "without `.pub`"),
            (KeyError::Putty, "private-openssh-new"),
            (KeyError::SecurityKey, "hardware token"),
        ] {
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    fn fp(line: &str) -> Fingerprint {
        PublicKey::parse(line).unwrap().fingerprint().clone()
    }

    /// One row: a line => what it is.
    fn check_line(line: &str, expect: LineKind) {
        let lines = authorized_keys::parse(line.as_bytes()).unwrap();
        assert_eq!(lines.len(), 1, "{line}");
        assert_eq!(lines[0].kind, expect, "{line}");
        assert_eq!(lines[0].raw, line.as_bytes());
    }

    #[test]
    fn lines_are_read_as_sshd_reads_them() {
        let key = |has_options| LineKind::Key {
            fingerprint: fp(OTHER_LINE),
            has_options,
        };
        let b64 = OTHER_LINE.split(' ').nth(1).unwrap();
        check_line("\n", LineKind::Blank);
        check_line(" \t\r\n", LineKind::Blank);
        check_line("# a comment\n", LineKind::Comment);
        check_line(&format!("  #{OTHER_LINE}\n"), LineKind::Comment);
        check_line(&format!("{OTHER_LINE}\n"), key(false));
        check_line(&format!("{OTHER_LINE}\r\n"), key(false));
        check_line(OTHER_LINE, key(false));
        check_line(&format!("ssh-ed25519 {b64}\n"), key(false));
        check_line(
            &format!("ssh-ed25519\t{b64}  spaces in a comment\n"),
            key(false),
        );
        check_line(&format!("  {OTHER_LINE}\n"), key(false));
        check_line(&format!("restrict {OTHER_LINE}\n"), key(true));
        check_line(
            &format!(
                "from=\"10.0.0.0/8,192.168.1.1\",command=\"echo \\\"hi there\\\"\" {OTHER_LINE}\n"
            ),
            key(true),
        );
        check_line(
            &format!("environment=\"A=b c\"\t {OTHER_LINE}\n"),
            key(true),
        );
        // A comment that is not UTF-8 does not hide the key from rotor (sshd reads it).
        let mut latin1 = format!("ssh-ed25519 {b64} Jos").into_bytes();
        latin1.extend_from_slice(b"\xe9\n");
        let lines = authorized_keys::parse(&latin1).unwrap();
        assert_eq!(lines[0].kind, key(false));
        check_line(
            &format!("{RSA_LINE}\n"),
            LineKind::Key {
                fingerprint: fp(RSA_LINE),
                has_options: false,
            },
        );
        // Unknown or broken keys, an unterminated quote: kept, never matched.
        for junk in [
            format!("ssh-foo {b64}\n"),
            format!("ssh-ed25519 {}\n", &b64[..20]),
            format!("ssh-rsa {b64}\n"),
            format!("from=\"unterminated {OTHER_LINE}\n"),
            "restrict\n".into(),
            "garbage line here\n".into(),
        ] {
            check_line(&junk, LineKind::Unparsed);
        }
    }

    #[test]
    fn add_is_idempotent_and_keeps_the_file() {
        let pair = keypair(4);
        let file = format!("# keys\n{OTHER_LINE}\n\nrestrict {RSA_LINE}\n");
        let added = authorized_keys::add(file.as_bytes(), &pair.public).unwrap();
        assert_eq!(
            String::from_utf8(added.text.clone()).unwrap(),
            format!("{file}{}\n", pair.public.line())
        );
        assert_eq!((added.n_added, added.changed()), (1, true));
        let again = authorized_keys::add(&added.text, &pair.public).unwrap();
        assert_eq!(
            (again.text.as_slice(), again.changed()),
            (&added.text[..], false)
        );
        // Present with options and another comment: present.
        let with_options = format!(
            "from=\"10.0.0.1\" {} someone else's comment\n",
            pair.public.line().rsplit_once(' ').unwrap().0
        );
        let same = authorized_keys::add(with_options.as_bytes(), &pair.public).unwrap();
        assert!(!same.changed());
        // No line ending at the end: one is added before the new line.
        let open = authorized_keys::add(OTHER_LINE.as_bytes(), &pair.public).unwrap();
        assert_eq!(
            String::from_utf8(open.text).unwrap(),
            format!("{OTHER_LINE}\n{}\n", pair.public.line())
        );
        let empty = authorized_keys::add(b"", &pair.public).unwrap();
        assert_eq!(empty.text, format!("{}\n", pair.public.line()).into_bytes());
    }

    #[test]
    fn remove_takes_exactly_the_listed_keys() {
        let old = keypair(5);
        let new = keypair(6);
        let file = format!(
            "# managed by hand\n{OTHER_LINE}\r\n{}\nrestrict {}\n\n{}\nnot a key\n",
            old.public.line(),
            old.public.line(),
            new.public.line()
        );
        let edit =
            authorized_keys::remove(file.as_bytes(), &[old.public.fingerprint().clone()]).unwrap();
        assert_eq!(
            String::from_utf8(edit.text).unwrap(),
            format!(
                "# managed by hand\n{OTHER_LINE}\r\n\n{}\nnot a key\n",
                new.public.line()
            )
        );
        assert_eq!((edit.n_removed, edit.n_added), (2, 0));
        assert_eq!(
            authorized_keys::fingerprints(file.as_bytes()).unwrap(),
            vec![
                fp(OTHER_LINE),
                old.public.fingerprint().clone(),
                old.public.fingerprint().clone(),
                new.public.fingerprint().clone()
            ]
        );
        let none = authorized_keys::remove(file.as_bytes(), &[]).unwrap();
        assert!(!none.changed());
        assert_eq!(none.text, file.into_bytes());
    }

    #[test]
    fn hostile_files_are_refused_or_kept() {
        let pair = keypair(7);
        let huge = vec![b'a'; authorized_keys::MAX_BYTES + 1];
        let err = AuthorizedKeysError::TooLarge { size: huge.len() };
        assert_eq!(authorized_keys::parse(&huge).unwrap_err(), err);
        assert_eq!(authorized_keys::add(&huge, &pair.public).unwrap_err(), err);
        assert_eq!(authorized_keys::remove(&huge, &[]).unwrap_err(), err);
        assert_eq!(authorized_keys::fingerprints(&huge).unwrap_err(), err);
        assert!(
            err.to_string().contains("1048576 bytes rotor edits"),
            "{err}"
        );
        // One very long line, all quotes, all blanks, binary: kept, nothing panics.
        let long_line = vec![b'x'; authorized_keys::MAX_BYTES - 10];
        let quotes = vec![b'"'; 100_000];
        let long_b64 = format!("ssh-ed25519 {}\n", "A".repeat(900_000)).into_bytes();
        let binary: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
        let newlines = vec![b'\n'; authorized_keys::MAX_BYTES];
        for text in [long_line, quotes, long_b64, binary, newlines] {
            let edit =
                authorized_keys::remove(&text, &[pair.public.fingerprint().clone()]).unwrap();
            assert_eq!(edit.text, text);
        }
    }

    /// A line that is not one of rotor's keys: comments, blanks, junk, other keys (some with
    /// options). Never holds a line ending.
    fn other_line() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(OTHER_LINE.as_bytes().to_vec()),
            Just(format!("restrict,from=\"10.0.0.1\" {RSA_LINE}").into_bytes()),
            Just(b"# comment".to_vec()),
            Just(Vec::new()),
            Just(b" \t\r".to_vec()),
            (0u64..1000).prop_map(|seed| keypair(seed).public.line().as_bytes().to_vec()),
            proptest::collection::vec(any::<u8>().prop_filter("no LF", |b| *b != b'\n'), 0..80),
        ]
    }

    fn file_of(lines: &[Vec<u8>]) -> Vec<u8> {
        let mut text = Vec::new();
        for line in lines {
            text.extend_from_slice(line);
            text.push(b'\n');
        }
        text
    }

    proptest! {
        #[test]
        fn add_then_remove_gives_the_file_back(
            lines in proptest::collection::vec(other_line(), 0..12),
            seed in 1000u64..2000,
        ) {
            let key = keypair(seed).public;
            let text = file_of(&lines);
            let added = authorized_keys::add(&text, &key).unwrap();
            prop_assert_eq!(added.n_added, 1);
            prop_assert!(authorized_keys::fingerprints(&added.text).unwrap().contains(key.fingerprint()));
            let removed = authorized_keys::remove(&added.text, &[key.fingerprint().clone()]).unwrap();
            prop_assert_eq!(removed.n_removed, 1);
            prop_assert_eq!(removed.text, text);
        }

        #[test]
        fn remove_touches_only_listed_keys(
            lines in proptest::collection::vec(other_line(), 0..12),
            pick in proptest::collection::vec(any::<bool>(), 12),
            unterminated in any::<bool>(),
        ) {
            let mut text = file_of(&lines);
            if unterminated {
                text.pop();
            }
            let parsed = authorized_keys::parse(&text).unwrap();
            let listed: Vec<Fingerprint> = parsed
                .iter()
                .zip(&pick)
                .filter_map(|(line, pick)| match &line.kind {
                    LineKind::Key { fingerprint, .. } if *pick => Some(fingerprint.clone()),
                    _ => None,
                })
                .collect();
            let kept: Vec<u8> = parsed
                .iter()
                .filter(|line| !matches!(&line.kind, LineKind::Key { fingerprint, .. } if listed.contains(fingerprint)))
                .flat_map(|line| line.raw.iter().copied())
                .collect();
            let edit = authorized_keys::remove(&text, &listed).unwrap();
            prop_assert_eq!(edit.text, kept);
        }

        #[test]
        fn any_bytes_are_read_without_panic(text in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let lines = authorized_keys::parse(&text).unwrap();
            let joined: Vec<u8> = lines.iter().flat_map(|l| l.raw.iter().copied()).collect();
            prop_assert_eq!(joined, text.clone());
            let _ = parse_private(&String::from_utf8_lossy(&text));
        }
    }
}

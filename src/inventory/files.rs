//! The local files an inventory names, checked on rotor's own machine: each host's
//! `connect.key` (a private key rotor can use, not readable by others), its `known_hosts`
//! pin (a file that parses and pins a key for the host's address and port), each
//! directory's `ca_file` (PEM certificates) and `playbooks_dir` (a directory). `rotor
//! inventory check` calls [`check_files`] after [`super::load`], which stays pure of these
//! checks: a file that is missing today may be there when `rotate` runs elsewhere.
//!
//! Every problem names the inventory file and the line of the field ([`FieldLines`], read
//! from the same YAML the inventory was loaded from), what is wrong and what to do.
//!
//! Invariant: no key material is ever put in a problem: a key file's text is read into a
//! zeroized buffer, judged, and dropped; only its kind is said.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::{ConnectAuth, Directory, Host, HostKeyPin, Inventory};

/// The largest key file rotor reads (an RSA 16384-bit key in PEM is about 12 KiB).
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// Which field a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileField {
    ConnectKey,
    KnownHosts,
    CaFile,
    PlaybooksDir,
}

impl FileField {
    /// The field's name in the inventory.
    pub fn name(self) -> &'static str {
        match self {
            FileField::ConnectKey => "connect.key",
            FileField::KnownHosts => "known_hosts",
            FileField::CaFile => "ca_file",
            FileField::PlaybooksDir => "playbooks_dir",
        }
    }
}

/// One thing wrong with a file the inventory names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    /// The inventory file.
    pub file: PathBuf,
    /// The line of the field (1-based; 0 when not known).
    pub line: u64,
    /// The host or directory whose field it is; empty for `playbooks_dir`.
    pub target: String,
    pub field: FileField,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub fix: String,
    /// A connection to the target could not work before this is fixed (a missing key file
    /// or pin; permissions that are too open do not stop rotor itself).
    pub blocks_connect: bool,
}

impl fmt::Display for FileProblem {
    /// `FILE:LINE: TARGET: what is wrong: what to do`, escaped (paths and names are the
    /// user's, messages may quote them).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let esc = |s: &str| crate::text::escape(s).into_owned();
        write!(f, "{}", esc(&self.file.display().to_string()))?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if !self.target.is_empty() {
            write!(f, ": {}", esc(&self.target))?;
        }
        write!(f, ": {}: {}", esc(&self.message), esc(&self.fix))
    }
}

/// Where the fields of each host and directory are in the inventory file, to name in
/// messages. Lines are 1-based; 0 where not known (the file changed since it was loaded).
#[derive(Debug, Clone, Default)]
pub struct FieldLines {
    pub hosts: HashMap<String, HostLines>,
    pub directories: HashMap<String, DirectoryLines>,
    pub playbooks_dir: u64,
}

#[derive(Debug, Clone, Default)]
pub struct HostLines {
    /// The host's `name:`.
    pub entry: u64,
    /// `host_key:` or `known_hosts:`.
    pub pin: u64,
    pub connect: u64,
    /// `connect.key:` (or `connect.credential:`).
    pub connect_auth: u64,
    /// Each account's `name:` line, by account name (the first listing of a name).
    pub accounts: HashMap<String, u64>,
}

#[derive(Debug, Clone, Default)]
pub struct DirectoryLines {
    pub entry: u64,
    pub url: u64,
    pub ca_file: u64,
    pub bind: u64,
    /// Each `accounts:` entry, in order.
    pub accounts: Vec<u64>,
}

impl FieldLines {
    pub fn host(&self, name: &str) -> HostLines {
        self.hosts.get(name).cloned().unwrap_or_default()
    }

    pub fn directory(&self, name: &str) -> DirectoryLines {
        self.directories.get(name).cloned().unwrap_or_default()
    }
}

/// The lines of `inv`'s fields, read again from `inv.path` (the validated model keeps no
/// positions). Empty when the file cannot be read or parsed now.
pub fn field_lines(inv: &Inventory) -> FieldLines {
    let Ok(text) = super::read_file(&inv.path, super::MAX_INVENTORY_BYTES) else {
        return FieldLines::default();
    };
    let Ok(raw) = super::read_raw(&text, &inv.path) else {
        return FieldLines::default();
    };
    let mut lines = FieldLines {
        playbooks_dir: raw
            .playbooks_dir
            .as_ref()
            .map_or(0, |d| d.referenced.line()),
        ..FieldLines::default()
    };
    for host in raw.hosts.iter().flatten() {
        let h = &host.value;
        let connect = &h.connect.value;
        let mut accounts = HashMap::new();
        for a in &h.accounts {
            accounts
                .entry(a.value.name.value.clone())
                .or_insert(a.value.name.referenced.line());
        }
        let pin = h
            .host_key
            .as_ref()
            .or(h.known_hosts.as_ref())
            .map_or(0, |p| p.referenced.line());
        let connect_auth = connect
            .key
            .as_ref()
            .or(connect.credential.as_ref())
            .map_or(h.connect.referenced.line(), |k| k.referenced.line());
        lines
            .hosts
            .entry(h.name.value.clone())
            .or_insert(HostLines {
                entry: h.name.referenced.line(),
                pin,
                connect: h.connect.referenced.line(),
                connect_auth,
                accounts,
            });
    }
    for dir in raw.directories.iter().flatten() {
        let d = &dir.value;
        lines
            .directories
            .entry(d.name.value.clone())
            .or_insert(DirectoryLines {
                entry: d.name.referenced.line(),
                url: d.url.referenced.line(),
                ca_file: d.ca_file.as_ref().map_or(0, |c| c.referenced.line()),
                bind: d.bind.referenced.line(),
                accounts: d.accounts.iter().map(|a| a.referenced.line()).collect(),
            });
    }
    lines
}

/// Checks every local file `inv` names; all problems at once, in inventory order.
pub fn check_files(inv: &Inventory, lines: &FieldLines) -> Vec<FileProblem> {
    let mut problems = Vec::new();
    if let Some(dir) = playbooks_dir_of(inv)
        && let Some((message, fix)) = playbooks_dir_problem(&dir)
    {
        problems.push(FileProblem {
            file: inv.path.clone(),
            line: lines.playbooks_dir,
            target: String::new(),
            field: FileField::PlaybooksDir,
            message,
            fix,
            blocks_connect: false,
        });
    }
    for host in &inv.hosts {
        problems.extend(host_files(inv, host, &lines.host(host.name.as_str())));
    }
    for d in &inv.directories {
        problems.extend(directory_files(inv, d, &lines.directory(d.name.as_str())));
    }
    problems
}

/// The problems of one host's files (its connect key, its known_hosts pin).
pub fn host_files(inv: &Inventory, host: &Host, lines: &HostLines) -> Vec<FileProblem> {
    let mut problems = Vec::new();
    let problem = |field, line, message: String, fix: String, blocks_connect| FileProblem {
        file: inv.path.clone(),
        line,
        target: host.name.to_string(),
        field,
        message,
        fix,
        blocks_connect,
    };
    if let ConnectAuth::KeyFile(path) = &host.connect.auth {
        for p in key_file_problems(path) {
            // A managed connect key: the vault's key is tried before the file, so a missing
            // file does not stop rotor from logging in once the host has its own key.
            let blocks = p.blocks && host.connect_credential().is_none();
            problems.push(problem(
                FileField::ConnectKey,
                lines.connect_auth,
                p.message,
                p.fix,
                blocks,
            ));
        }
    }
    if let HostKeyPin::KnownHosts(path) = &host.host_key
        && let Some((message, fix)) = known_hosts_problem(host, path)
    {
        problems.push(problem(
            FileField::KnownHosts,
            lines.pin,
            message,
            fix,
            true,
        ));
    }
    problems
}

fn directory_files(inv: &Inventory, d: &Directory, lines: &DirectoryLines) -> Vec<FileProblem> {
    let Some(path) = &d.ca_file else {
        return Vec::new();
    };
    let Err(why) = crate::connector::ldap::ca_file_certificates(path) else {
        return Vec::new();
    };
    vec![FileProblem {
        file: inv.path.clone(),
        line: lines.ca_file,
        target: d.name.to_string(),
        field: FileField::CaFile,
        message: why,
        fix: "point ca_file at a PEM file holding the certificate of the CA that signed the \
              directory's certificate (`BEGIN CERTIFICATE` blocks)"
            .into(),
        blocks_connect: true,
    }]
}

/// `playbooks_dir:` resolved as `load` resolves it.
fn playbooks_dir_of(inv: &Inventory) -> Option<PathBuf> {
    let Ok(text) = super::read_file(&inv.path, super::MAX_INVENTORY_BYTES) else {
        return None;
    };
    let raw = super::read_raw(&text, &inv.path).ok()?;
    super::validate::playbooks_dir(&raw.playbooks_dir?.value, &inv.path)
}

fn playbooks_dir_problem(dir: &Path) -> Option<(String, String)> {
    let shown = dir.display();
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => None,
        Ok(meta) => Some((
            format!(
                "{shown} is {}, not a directory",
                crate::text::file_kind(&meta)
            ),
            "point playbooks_dir at the directory that holds your playbooks (*.yaml)".into(),
        )),
        Err(e) => Some((
            format!("{shown}: {}", io_words(&e)),
            "create the directory or fix playbooks_dir (relative paths start from the \
             inventory file's directory)"
                .into(),
        )),
    }
}

/// "file not found", "permission denied" or the error itself.
fn io_words(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "file not found".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// One problem of a key file.
#[derive(Debug, PartialEq, Eq)]
struct KeyProblem {
    message: String,
    fix: String,
    /// rotor could not log in with it.
    blocks: bool,
}

fn key_file_problems(path: &Path) -> Vec<KeyProblem> {
    use std::os::unix::fs::PermissionsExt as _;
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) => {
            return vec![KeyProblem {
                message: format!("the key file {shown}: {}", io_words(&e)),
                fix: if e.kind() == io::ErrorKind::NotFound {
                    "create it (`ssh-keygen -t ed25519 -f FILE`) and put its public half in the \
                     connect user's authorized_keys on the host, or fix connect.key (relative \
                     paths start from the inventory file's directory)"
                        .into()
                } else {
                    "let the user rotor runs as reach and read it".into()
                },
                blocks: true,
            }];
        }
    };
    if !meta.is_file() {
        return vec![KeyProblem {
            message: format!(
                "the key file {shown} is {}, not a regular file",
                crate::text::file_kind(&meta)
            ),
            fix: "point connect.key at the private key file".into(),
            blocks: true,
        }];
    }
    let mut problems = Vec::new();
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        problems.push(KeyProblem {
            message: format!(
                "permissions {mode:04o} for the key file {shown} are too open: group or others \
                 may read the private key (OpenSSH refuses such a key)"
            ),
            fix: format!("`chmod 600 {shown}`"),
            blocks: false,
        });
    }
    match super::read_file(path, MAX_KEY_FILE_BYTES) {
        Ok(text) => {
            let text = zeroize::Zeroizing::new(text);
            if let Some((message, fix)) = connect_key_problem(&text) {
                problems.push(KeyProblem {
                    message: format!("the key file {shown}: {message}"),
                    fix,
                    blocks: true,
                });
            }
        }
        Err(super::ReadFailure::Io(e)) => problems.push(KeyProblem {
            message: format!("the key file {shown}: {}", io_words(&e)),
            fix: if e.kind() == io::ErrorKind::InvalidData {
                "point connect.key at an OpenSSH or PEM private key file".into()
            } else {
                "let the user rotor runs as read it (run rotor as the key's owner)".into()
            },
            blocks: true,
        }),
        Err(super::ReadFailure::NotAFile(found)) => problems.push(KeyProblem {
            message: format!("the key file {shown} is {found}, not a regular file"),
            fix: "point connect.key at the private key file".into(),
            blocks: true,
        }),
        Err(super::ReadFailure::TooLarge(size)) => problems.push(KeyProblem {
            message: format!("the key file {shown} is {size} bytes, more than a private key"),
            fix: "point connect.key at the private key file".into(),
            blocks: true,
        }),
    }
    problems
}

/// Whether a connect key file's text is a private key libssh2 can log in with unattended:
/// OpenSSH format of any type it reads, or PEM/PKCS#8 (libssh2's OpenSSL backend reads
/// those), unencrypted; never a public key, a PuTTY file or a security key. What is wrong
/// and what to do, else `None`. `sshkey::parse_private` knows the forms; a connect key need
/// not be ed25519.
fn connect_key_problem(text: &str) -> Option<(String, String)> {
    use crate::sshkey::KeyError;
    let first = text
        .trim_start()
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end();
    let encrypted_pem = first == "-----BEGIN ENCRYPTED PRIVATE KEY-----"
        || (first.starts_with("-----BEGIN ") && text.contains("Proc-Type: 4,ENCRYPTED"));
    let passphrase = || {
        Some((
            "it is protected by a passphrase, which rotor cannot type".into(),
            "use a key without a passphrase (`cp KEY COPY && ssh-keygen -p -N '' -f COPY`), \
             readable only by rotor's user"
                .into(),
        ))
    };
    if encrypted_pem {
        return passphrase();
    }
    match crate::sshkey::parse_private(text) {
        Ok(_) => None,
        // Other key types and PEM files are for libssh2 to read, not for rotor's own keys.
        Err(KeyError::Unsupported { .. } | KeyError::NotOpenssh { .. }) => None,
        Err(KeyError::Encrypted) => passphrase(),
        Err(KeyError::PublicKeyGiven) => Some((
            "it is a public key".into(),
            "point connect.key at the private key (the file without `.pub`)".into(),
        )),
        Err(KeyError::Putty) => Some((
            "it is a PuTTY key".into(),
            "convert it: `puttygen KEY -O private-openssh-new -o KEY.openssh`, and point \
             connect.key at that"
                .into(),
        )),
        Err(KeyError::SecurityKey) => Some((
            "it is a security-key (FIDO) key, which needs its hardware token at every login".into(),
            "use a plain key (`ssh-keygen -t ed25519`)".into(),
        )),
        Err(KeyError::Empty) => Some((
            "it is empty".into(),
            "point connect.key at the private key file".into(),
        )),
        Err(KeyError::TooLarge { size }) => Some((
            format!("it is {size} bytes, more than a private key"),
            "point connect.key at the private key file".into(),
        )),
        Err(KeyError::Malformed(_)) => Some((
            "it is not a private key rotor can read".into(),
            "point connect.key at an OpenSSH private key (`-----BEGIN OPENSSH PRIVATE \
             KEY-----`, as `ssh-keygen` writes)"
                .into(),
        )),
    }
}

/// A known_hosts pin that cannot work: missing, unreadable, unparsable, or without a usable
/// key for the host's address and port. Read as a connection reads it
/// (`connector::ssh::pinned_keys`).
fn known_hosts_problem(host: &Host, path: &Path) -> Option<(String, String)> {
    let shown = path.display();
    let name = crate::connector::ssh::known_hosts_name(&host.address, host.port);
    if let Err(e) = std::fs::metadata(path) {
        return Some((
            format!("known_hosts file {shown}: {}", io_words(&e)),
            if e.kind() == io::ErrorKind::NotFound {
                format!(
                    "create it with the host's key verified out of band (`ssh-keyscan -p {} {}` \
                     prints it; compare the fingerprint with the host's console), or fix \
                     known_hosts (relative paths start from the inventory file's directory)",
                    host.port, host.address
                )
            } else {
                "let the user rotor runs as read it".into()
            },
        ));
    }
    let target = crate::connector::ssh::SshTarget {
        host: host.name.clone(),
        address: host.address.clone(),
        port: host.port,
        pin: host.host_key.clone(),
        timeout: std::time::Duration::from_secs(1),
    };
    let err = crate::connector::ssh::pinned_keys(&target).err()?;
    let prefix = format!("{} ({}:{}): ", host.name, host.address, host.port);
    let message = err
        .message
        .strip_prefix(&prefix)
        .unwrap_or(&err.message)
        .to_owned();
    Some((
        message,
        format!(
            "fix {shown} so that it pins the host's key for `{name}` (verified out of band), or \
             pin host_key in the inventory"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    const HOST_KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    /// Writes `files` (name, content, mode) and an inventory naming them into a temporary
    /// directory, loads it, and returns each problem as `LINE TARGET FIELD blocks: message`.
    fn check(inventory: &str, files: &[(&str, &str, u32)]) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        for (name, content, mode) in files {
            let path = dir.path().join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).unwrap();
            }
            std::fs::write(&path, content).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).unwrap();
        }
        let path = dir.path().join("inventory.yaml");
        std::fs::write(&path, inventory).unwrap();
        let inv = crate::inventory::load(&path).unwrap();
        let lines = field_lines(&inv);
        check_files(&inv, &lines)
            .into_iter()
            .map(|p| {
                assert_eq!(p.file, path);
                let shown = p.to_string();
                assert!(
                    shown.starts_with(&format!("{}:{}: ", path.display(), p.line)),
                    "{shown}"
                );
                format!(
                    "{} {} {} {}: {}",
                    p.line,
                    p.target,
                    p.field.name(),
                    p.blocks_connect,
                    p.message.replace(&dir.path().display().to_string(), "DIR")
                )
            })
            .collect()
    }

    fn host(name: &str, pin: &str, key: &str) -> String {
        format!(
            "  - name: {name}\n    address: 127.0.0.1\n    {pin}\n    connect: {{ user: root, key: {key} }}\n    accounts:\n      - {{ name: svc_app, playbook: linux-password }}\n"
        )
    }

    fn private_key() -> String {
        let cred = crate::credential::CredentialId::parse("h1/root").unwrap();
        let rng = crate::clock::SeededEntropy::new(3);
        use crate::clock::Entropy as _;
        let pair = crate::sshkey::generate(&mut *rng.rng(), &cred);
        pair.private.expose().to_owned()
    }

    #[test]
    fn good_files_give_no_problem() {
        let key = private_key();
        let known = format!("127.0.0.1 {HOST_KEY}\n");
        let inv = format!(
            "version: 1\nhosts:\n{}{}",
            host("h1", &format!("host_key: \"{HOST_KEY}\""), "id"),
            host("h2", "known_hosts: kh", "id"),
        );
        assert_eq!(
            check(&inv, &[("id", &key, 0o600), ("kh", &known, 0o644)]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn every_problem_is_listed_with_its_line() {
        let key = private_key();
        let public = format!("{HOST_KEY} me@there\n");
        let inv = format!(
            "version: 1\nhosts:\n{}{}{}{}{}",
            // line 3: missing key file and missing known_hosts
            host("h1", "known_hosts: nowhere/kh", "missing"),
            // line 9: group-readable key
            host("h2", &format!("host_key: \"{HOST_KEY}\""), "open"),
            // line 15: a public key, and a known_hosts without the host
            host("h3", "known_hosts: other", "id.pub"),
            // line 21: passphrase-protected PEM
            host("h4", &format!("host_key: \"{HOST_KEY}\""), "enc"),
            // line 27: a directory where the key should be
            host("h5", &format!("host_key: \"{HOST_KEY}\""), "sub"),
        );
        let got = check(
            &inv,
            &[
                ("open", &key, 0o640),
                ("id.pub", &public, 0o600),
                ("other", &format!("10.9.9.9 {HOST_KEY}\n"), 0o644),
                (
                    "enc",
                    "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n",
                    0o600,
                ),
                ("sub/x", "", 0o600),
            ],
        );
        assert_eq!(
            got,
            [
                "6 h1 connect.key true: the key file DIR/missing: file not found",
                "5 h1 known_hosts true: known_hosts file DIR/nowhere/kh: file not found",
                "12 h2 connect.key false: permissions 0640 for the key file DIR/open are too open: group or others may read the private key (OpenSSH refuses such a key)",
                "18 h3 connect.key true: the key file DIR/id.pub: it is a public key",
                "17 h3 known_hosts true: DIR/other has no usable key for `127.0.0.1`; add the host's key, verified out of band, to that file (or pin host_key in the inventory)",
                "24 h4 connect.key true: the key file DIR/enc: it is protected by a passphrase, which rotor cannot type",
                "30 h5 connect.key true: the key file DIR/sub is a directory, not a regular file",
            ]
        );
    }

    #[test]
    fn directories_ca_files_and_playbooks_dir() {
        let key = private_key();
        let inv = format!(
            "version: 1\nplaybooks_dir: pb\nhosts:\n{}directories:\n  - name: ldap1\n    url: ldaps://127.0.0.1\n    ca_file: ca.pem\n    bind: {{ dn: \"cn=rotor,dc=x\", credential: ldap1/rotor }}\n    accounts:\n      - {{ dn: \"uid=svc,dc=x\" }}\n",
            host("h1", &format!("host_key: \"{HOST_KEY}\""), "id"),
        );
        let got = check(
            &inv,
            &[
                ("id", &key, 0o600),
                ("ca.pem", "not a certificate\n", 0o644),
                ("pb/.keep", "", 0o644),
            ],
        );
        assert_eq!(
            got,
            [
                "13 ldap1 ca_file true: the CA file DIR/ca.pem holds no usable certificate (0 could not be parsed)"
            ]
        );
    }

    /// What a connect key file's text is judged to be (kept short: the message only).
    #[test]
    fn connect_keys_that_libssh2_cannot_use_unattended_are_refused() {
        let said = |text: &str| connect_key_problem(text).map(|(m, _)| m);
        assert_eq!(said(&private_key()), None);
        // PEM and PKCS#8 keys of any type: libssh2 reads them.
        assert_eq!(
            said("-----BEGIN RSA PRIVATE KEY-----\nMIIEow==\n-----END RSA PRIVATE KEY-----\n"),
            None
        );
        assert_eq!(
            said(
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMII=\n-----END ENCRYPTED PRIVATE KEY-----\n"
            )
            .as_deref(),
            Some("it is protected by a passphrase, which rotor cannot type")
        );
        assert_eq!(
            said("PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n").as_deref(),
            Some("it is a PuTTY key")
        );
        assert_eq!(said("").as_deref(), Some("it is empty"));
        assert_eq!(
            said("-----BEGIN OPENSSH PRIVATE KEY-----\n!!!!\n-----END OPENSSH PRIVATE KEY-----\n")
                .as_deref(),
            Some("it is not a private key rotor can read")
        );
    }
}

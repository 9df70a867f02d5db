//! The SSH edge, on the blocking `ssh2` crate (libssh2, vendored by `libssh2-sys`).
//!
//! This module turns "talk to a host over SSH" into a few calls: [`SshSession::connect`] (one
//! authenticated session with rotor's connect identity; [`SshSession::connect_with_key`] for a
//! private key held in memory), [`SshSession::exec`] (one command, secret material on stdin),
//! and [`check_password_login`] / [`check_key_login`] (prove a password or a private key on a
//! fresh connection); for `rotor inventory check`, [`pinned_keys`] (a pin read as a
//! connection reads it, offline) and [`offered_methods`] (sshd's methods for a user, nothing
//! authenticated). Every failure is a [`ConnectorError`] with a [`FaultClass`] the engine
//! can branch on; no `ssh2` type leaves this module.
//!
//! Invariants kept here:
//! - **Every step has a deadline.** TCP connect uses `connect_timeout`; libssh2's own timeout
//!   (`Session::set_timeout`) is re-armed before each blocking libssh2 call with the time left
//!   in the current step, so the handshake, authentication and every channel read or write
//!   return `TimedOut` instead of hanging (libssh2 measures that timeout per API call, from the
//!   call's entry, in microseconds; see `BLOCK_ADJUST` / `ssh2_wait_socket` in libssh2).
//! - **Host key checked before authentication.** The host-key algorithm preference is
//!   restricted to the pinned key's type, the presented key is compared with the pin, and only
//!   then is a credential sent. An unknown or changed key fails the host (`HostKeyMismatch`).
//!   In a pinned known_hosts file, a key marked `@revoked` anywhere is never accepted (for any
//!   host), and `@cert-authority` lines are refused with a message: rotor splits the markers
//!   off itself, since libssh2 reads them as host names. The pin is read before TCP: a
//!   known_hosts file that is missing or unreadable is `LocalFile` ("file not found"), never
//!   a host key mismatch.
//! - **No secret in a message, a log field or a command line.** Passwords go only into the
//!   `userauth_password` call, private keys only into `userauth_pubkey_memory` (from memory:
//!   never a key file, never an agent, so a proof uses that one key and no other); commands
//!   passed to [`SshSession::exec`] never hold a secret (the caller guarantees it), secrets
//!   travel on stdin.
//!
//! libssh2's OpenSSL backend reads OpenSSH-format ed25519 private keys from memory (PEM first,
//! then `ossl_key_from_openssh`; proven by the lab test `key_login`).
//!
//! Best effort only: `ssh2` copies a password or a private key into a `CString` that is not
//! zeroized, and libssh2 keeps packets (and the decoded key, freed unzeroized by OpenSSL's
//! `EVP_PKEY_free`) in its own buffers. We zeroize what we own (stdout of `exec`).
//!
//! This module must never: authenticate before the host key matched, put a secret into an
//! error or a tracing field, or block without a deadline.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use sha2::{Digest, Sha256};
use ssh2::{CheckResult, ErrorCode, KnownHostFileKind, MethodType, Session};
use tracing::debug;
use zeroize::Zeroizing;

use super::{ConnectorError, FaultClass};
use crate::credential::{AccountName, HostName};
use crate::inventory::HostKeyPin;
use crate::secret::Secret;

/// Key exchange preference: the classical elliptic-curve methods first because a login is
/// dominated by kex CPU (LAB.md), then the rest of what libssh2 offers as fallbacks.
pub const KEX_PREFERENCE: &str = "curve25519-sha256,curve25519-sha256@libssh.org,\
    ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,\
    diffie-hellman-group-exchange-sha256,diffie-hellman-group16-sha512,\
    diffie-hellman-group18-sha512,diffie-hellman-group14-sha256";

/// How much of a command's stderr is kept (read to the end, so the channel drains; callers
/// decide whether any of it may be shown: a step that handles a secret shows none).
const STDERR_KEEP: usize = 4096;
/// Upper bound on a command's stdout; the commands rotor runs print a few lines.
const STDOUT_MAX: usize = 16 * 1024 * 1024;
/// Time allowed for the polite disconnect when a session is dropped.
const DISCONNECT_BOUND: Duration = Duration::from_secs(2);

// libssh2 error codes we classify (include/libssh2.h).
const LIBSSH2_ERROR_KEX_FAILURE: i32 = -5;
const LIBSSH2_ERROR_SOCKET_SEND: i32 = -7;
const LIBSSH2_ERROR_KEY_EXCHANGE_FAILURE: i32 = -8;
const LIBSSH2_ERROR_TIMEOUT: i32 = -9;
const LIBSSH2_ERROR_SOCKET_DISCONNECT: i32 = -13;
const LIBSSH2_ERROR_FILE: i32 = -16;
const LIBSSH2_ERROR_AUTHENTICATION_FAILED: i32 = -18;
const LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED: i32 = -19;
const LIBSSH2_ERROR_SOCKET_TIMEOUT: i32 = -30;
const LIBSSH2_ERROR_SOCKET_RECV: i32 = -43;
const LIBSSH2_ERROR_KEYFILE_AUTH_FAILED: i32 = -48;

/// Where and how to reach one host over SSH.
#[derive(Debug, Clone)]
pub struct SshTarget {
    pub host: HostName,
    /// What to dial: an IP address or a DNS name (resolution itself is not time-bounded).
    pub address: String,
    pub port: u16,
    pub pin: HostKeyPin,
    /// Deadline of each step: TCP connect, handshake, authentication, one `exec`.
    pub timeout: Duration,
}

/// How to authenticate a session.
#[derive(Debug, Clone, Copy)]
pub enum SshAuth<'a> {
    /// An unencrypted OpenSSH private key file.
    KeyFile(&'a Path),
    /// A password (SSH "password" method; keyboard-interactive is not tried).
    Password(&'a Secret),
}

/// What `authenticate` sends: an [`SshAuth`], or a private key held in memory (a vault secret;
/// [`SshSession::connect_with_key`], [`check_key_login`]). Kept apart from `SshAuth` so that
/// the callers matching on `SshAuth` need not change until they hold such keys.
#[derive(Debug, Clone, Copy)]
enum Login<'a> {
    Auth(SshAuth<'a>),
    /// An unencrypted OpenSSH private key: only this key is offered, never an agent's or a
    /// file's.
    KeyMemory(&'a Secret),
}

/// What one command produced.
pub struct ExecOutput {
    /// Exit status; `-1` when the command died from a signal (see `signal`) or sent none.
    pub status: i32,
    /// Signal name (e.g. `TERM`) when the command was killed by one.
    pub signal: Option<String>,
    /// Everything the command printed on stdout; zeroized on drop (it may hold a shadow hash).
    pub stdout: Zeroizing<Vec<u8>>,
    /// The first few KB of stderr, lossily decoded; zeroized on drop (a hostile command may
    /// echo its stdin there). Never shown for a step that handles a secret.
    pub stderr: Zeroizing<String>,
}

/// One authenticated SSH session. Not `Sync`; one thread drives it at a time.
pub struct SshSession {
    session: Session,
    host: HostName,
    address: String,
    timeout: Duration,
    /// Set after a timeout or I/O error inside `exec`: libssh2's state is then unknown, so the
    /// session refuses further work and the caller reconnects.
    broken: bool,
}

impl SshSession {
    /// Connects, checks the host key against the pin, then authenticates `user`.
    /// A rejected credential is `ConnectAuthRejected`.
    pub fn connect(
        target: &SshTarget,
        user: &AccountName,
        auth: SshAuth<'_>,
    ) -> Result<SshSession, ConnectorError> {
        SshSession::login(target, user, Login::Auth(auth))
    }

    /// [`SshSession::connect`] with a private key held in memory (an unencrypted OpenSSH key
    /// from the vault, as `sshkey` writes it): that key alone is offered.
    pub fn connect_with_key(
        target: &SshTarget,
        user: &AccountName,
        private_key: &Secret,
    ) -> Result<SshSession, ConnectorError> {
        SshSession::login(target, user, Login::KeyMemory(private_key))
    }

    fn login(
        target: &SshTarget,
        user: &AccountName,
        auth: Login<'_>,
    ) -> Result<SshSession, ConnectorError> {
        let span = tracing::debug_span!("ssh_connect", host = %target.host, user = %user);
        let _enter = span.enter();
        let session = open_verified(target)?;
        authenticate(&session, target, user, auth).map_err(|failure| match failure {
            AuthFailure::Rejected(detail) => ConnectorError::new(
                FaultClass::ConnectAuthRejected,
                format!(
                    "{}: {user}@{} ({}:{}) was rejected ({detail}); check that the connect key \
                     or password in the inventory is current and that {user} may log in over SSH",
                    target.host, target.host, target.address, target.port
                ),
            ),
            AuthFailure::Other(err) => err,
        })?;
        debug!("authenticated");
        Ok(SshSession {
            session,
            host: target.host.clone(),
            address: format!("{}:{}", target.address, target.port),
            timeout: target.timeout,
            broken: false,
        })
    }

    /// Runs one command and waits for it to finish, all within the target's step timeout.
    ///
    /// `command` must never contain a secret: it is visible in the target's process list and
    /// may be logged. Secrets go in `stdin`, which is written in full, then EOF is sent.
    ///
    /// Reading order: stdout to EOF, then stderr. libssh2 flow control is per channel, so a
    /// command that writes more than the channel window (about 2 MB) to stderr before closing
    /// stdout, or that prints more than a window of output before reading all its stdin, stalls
    /// until the deadline and ends in `TimedOut`. rotor's commands write a few lines.
    ///
    /// A timeout or I/O failure leaves the session unusable (`Protocol` on the next call).
    pub fn exec(&mut self, command: &str, stdin: &[u8]) -> Result<ExecOutput, ConnectorError> {
        let span = tracing::debug_span!("ssh_exec", host = %self.host);
        let _enter = span.enter();
        if self.broken {
            return Err(self.error(
                FaultClass::Protocol,
                "the session broke during an earlier command; reconnect",
            ));
        }
        let deadline = Instant::now() + self.timeout;
        let result = self.exec_until(command, stdin, deadline);
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    /// True once a command failed mid-way: the session must be replaced by a new one.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    fn exec_until(
        &mut self,
        command: &str,
        stdin: &[u8],
        deadline: Instant,
    ) -> Result<ExecOutput, ConnectorError> {
        let what = "running a command";
        arm(&self.session, deadline).map_err(|_| self.timed_out(what))?;
        let mut channel = self
            .session
            .channel_session()
            .map_err(|e| self.ssh_error(e, "opening a channel"))?;
        arm(&self.session, deadline).map_err(|_| self.timed_out(what))?;
        channel
            .exec(command)
            .map_err(|e| self.ssh_error(e, "starting a command"))?;

        for chunk in stdin.chunks(32 * 1024) {
            arm(&self.session, deadline).map_err(|_| self.timed_out(what))?;
            channel
                .write_all(chunk)
                .map_err(|e| self.io_error(e, "writing the command's stdin"))?;
        }
        arm(&self.session, deadline).map_err(|_| self.timed_out(what))?;
        channel
            .send_eof()
            .map_err(|e| self.ssh_error(e, "closing the command's stdin"))?;

        let mut stdout = Zeroizing::new(Vec::new());
        let mut chunk = Zeroizing::new([0u8; 16 * 1024]);
        loop {
            arm(&self.session, deadline).map_err(|_| self.timed_out(what))?;
            let n = channel
                .read(&mut chunk[..])
                .map_err(|e| self.io_error(e, "reading the command's stdout"))?;
            if n == 0 {
                break;
            }
            if stdout.len() + n > STDOUT_MAX {
                return Err(self.error(
                    FaultClass::Protocol,
                    format!("the command printed more than {STDOUT_MAX} bytes on stdout"),
                ));
            }
            extend_zeroizing(&mut stdout, &chunk[..n]);
        }

        let mut stderr = Zeroizing::new(Vec::new());
        let mut err_stream = channel.stderr();
        let mut buf = Zeroizing::new([0u8; 4096]);
        loop {
            arm(&self.session, deadline).map_err(|_| self.timed_out(what))?;
            let n = err_stream
                .read(&mut buf[..])
                .map_err(|e| self.io_error(e, "reading the command's stderr"))?;
            if n == 0 {
                break;
            }
            // Keep draining past the limit so the channel can close.
            let keep = n.min(STDERR_KEEP.saturating_sub(stderr.len()));
            stderr.extend_from_slice(&buf[..keep]);
        }

        arm(&self.session, deadline).map_err(|_| self.timed_out(what))?;
        channel
            .wait_close()
            .map_err(|e| self.ssh_error(e, "waiting for the command to end"))?;
        let status = channel
            .exit_status()
            .map_err(|e| self.ssh_error(e, "reading the exit status"))?;
        let signal = channel.exit_signal().ok().and_then(|s| s.exit_signal);
        // libssh2 reports 0 when no exit-status message came; a signal means the command died.
        let status = if signal.is_some() { -1 } else { status };
        debug!(status, "command finished");
        Ok(ExecOutput {
            status,
            signal,
            stdout,
            stderr: Zeroizing::new(String::from_utf8_lossy(&stderr).into_owned()),
        })
    }

    /// The key exchange method negotiated for this session (e.g. `curve25519-sha256`).
    pub fn kex(&self) -> Option<&str> {
        self.session.methods(MethodType::Kex)
    }

    fn error(&self, class: FaultClass, what: impl std::fmt::Display) -> ConnectorError {
        ConnectorError::new(class, format!("{} ({}): {what}", self.host, self.address))
    }

    fn timed_out(&self, what: &str) -> ConnectorError {
        self.error(
            FaultClass::TimedOut,
            format!(
                "{what} did not finish within {}; the host or the command hangs",
                human(self.timeout)
            ),
        )
    }

    fn ssh_error(&self, err: ssh2::Error, what: &str) -> ConnectorError {
        if is_timeout(&err) {
            return self.timed_out(what);
        }
        self.error(classify(&err), format!("{what} failed: {}", err.message()))
    }

    fn io_error(&self, err: io::Error, what: &str) -> ConnectorError {
        if err.kind() == io::ErrorKind::TimedOut {
            return self.timed_out(what);
        }
        self.error(FaultClass::Protocol, format!("{what} failed: {err}"))
    }
}

impl Drop for SshSession {
    fn drop(&mut self) {
        // Freeing the session may still talk to the host (channel close, disconnect); bound it.
        arm(
            &self.session,
            Instant::now() + DISCONNECT_BOUND.min(self.timeout),
        )
        .ok();
        self.session.disconnect(None, "rotor done", None).ok();
    }
}

/// Proves `password` for `user` on a fresh connection (password authentication only; one
/// attempt, which counts against the account's lockout budget).
///
/// `Ok` when accepted; `VerifyFailed` when the server rejected it (also what a missing account
/// looks like over SSH); `Refused` when the server does not offer password login to `user` at
/// all (the password is then not sent, so no attempt is spent); other classes when the login
/// could not be tried.
pub fn check_password_login(
    target: &SshTarget,
    user: &AccountName,
    password: &Secret,
) -> Result<(), ConnectorError> {
    check_login(
        target,
        user,
        Method::Password,
        Login::Auth(SshAuth::Password(password)),
    )
}

/// Proves `private_key` (an unencrypted OpenSSH private key, as `sshkey` writes it) for `user`
/// on a fresh connection: public-key authentication with that key alone, from memory (no
/// agent, no key file), so a login cannot succeed through another key of the account. One
/// attempt.
///
/// `Ok` when accepted; `VerifyFailed` when the server answered and rejected the key (not in
/// `authorized_keys`, or a missing account); `Refused` when the server does not offer
/// public-key login to `user` (the key is then not tried); `Protocol` when libssh2 cannot read
/// the key; other classes when the login could not be tried.
pub fn check_key_login(
    target: &SshTarget,
    user: &AccountName,
    private_key: &Secret,
) -> Result<(), ConnectorError> {
    check_login(
        target,
        user,
        Method::PublicKey,
        Login::KeyMemory(private_key),
    )
}

/// The one path of both proofs: host key pinned, `method` offered, one attempt, polite close.
fn check_login(
    target: &SshTarget,
    user: &AccountName,
    method: Method,
    auth: Login<'_>,
) -> Result<(), ConnectorError> {
    let span = tracing::debug_span!(
        "ssh_check_login",
        host = %target.host,
        user = %user,
        method = method.name()
    );
    let _enter = span.enter();
    let session = open_verified(target)?;
    // A server with `PasswordAuthentication no` rejects every password, the right one too;
    // that must not read as "this password is wrong" (which rolls back the rotation and spends
    // the account's lockout budget), so ask first which methods it offers. Keys likewise.
    let result = method_offered(&session, target, user, method)
        .and_then(|()| authenticate(&session, target, user, auth));
    arm(
        &session,
        Instant::now() + DISCONNECT_BOUND.min(target.timeout),
    )
    .ok();
    session.disconnect(None, "rotor verify done", None).ok();
    result.map_err(|failure| match failure {
        AuthFailure::Rejected(detail) => ConnectorError::new(
            FaultClass::VerifyFailed,
            format!(
                "{} ({}:{}): {} login as {user} was rejected ({detail})",
                target.host,
                target.address,
                target.port,
                method.noun()
            ),
        ),
        AuthFailure::Other(err) => err,
    })
}

/// An SSH authentication method a proof uses.
#[derive(Debug, Clone, Copy)]
enum Method {
    Password,
    PublicKey,
}

impl Method {
    /// The method's name in SSH (RFC 4252).
    fn name(self) -> &'static str {
        match self {
            Method::Password => "password",
            Method::PublicKey => "publickey",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Method::Password => "password",
            Method::PublicKey => "key",
        }
    }

    /// The sshd_config setting that turns the method on.
    fn setting(self) -> &'static str {
        match self {
            Method::Password => "PasswordAuthentication",
            Method::PublicKey => "PubkeyAuthentication",
        }
    }
}

/// `Ok` when the server offers `method` to `user`; otherwise a `Refused` error that says how to
/// enable it. Sends only a `none` authentication request (RFC 4252 5.2), which OpenSSH does not
/// count as a failed attempt and which never reaches PAM.
fn method_offered(
    session: &Session,
    target: &SshTarget,
    user: &AccountName,
    method: Method,
) -> Result<(), AuthFailure> {
    let noun = method.noun();
    let at = format!("{} ({}:{})", target.host, target.address, target.port);
    arm(session, Instant::now() + target.timeout).ok();
    let methods = match session.auth_methods(user.as_str()) {
        Ok(methods) => methods,
        Err(err) if is_timeout(&err) => {
            return Err(AuthFailure::Other(ConnectorError::new(
                FaultClass::TimedOut,
                format!(
                    "{at}: asking for the authentication methods did not finish within {}",
                    human(target.timeout)
                ),
            )));
        }
        Err(err) => {
            return Err(AuthFailure::Other(ConnectorError::new(
                classify(&err),
                format!(
                    "{at}: asking for the authentication methods failed: {}",
                    err.message()
                ),
            )));
        }
    };
    if session.authenticated() {
        // The `none` method itself was accepted: the account logs in with no password, so no
        // password can be proven here.
        return Err(AuthFailure::Other(ConnectorError::new(
            FaultClass::Protocol,
            format!(
                "{at}: {user} logged in without any {noun} (`none` authentication was \
                 accepted), so a {noun} cannot be verified; set a password for {user} and \
                 turn off PermitEmptyPasswords in the host's sshd_config"
            ),
        )));
    }
    if methods.split(',').any(|m| m.trim() == method.name()) {
        return Ok(());
    }
    // The list is the server's text: escaped and cut short, as any target's words are.
    let offered = if methods.is_empty() {
        "none".to_owned()
    } else {
        crate::text::escape(&methods.chars().take(200).collect::<String>()).into_owned()
    };
    Err(AuthFailure::Other(ConnectorError::new(
        FaultClass::Refused,
        format!(
            "{at}: {noun} login is disabled for {user} on {} (the server offers only: \
             {offered}), so rotor cannot prove the {noun}; the {noun} was not tried. Set \
             `{} yes` in the host's sshd_config, or allow it for this account only with a \
             `Match User {user}` block that sets it, then reload sshd",
            target.host,
            method.setting()
        ),
    )))
}

/// OpenSSH's fingerprint of a public key blob: `SHA256:` and unpadded base64 of its SHA-256.
pub fn fingerprint_sha256(key_blob: &[u8]) -> String {
    format!(
        "SHA256:{}",
        STANDARD_NO_PAD.encode(Sha256::digest(key_blob))
    )
}

/// One public host key: its SSH key type and wire blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicHostKey {
    pub key_type: String,
    pub blob: Vec<u8>,
}

impl PublicHostKey {
    /// Parses an OpenSSH public key line, `TYPE BASE64 [COMMENT]`, and checks that the blob
    /// names the same type. Returns a message for people on failure.
    pub fn parse_openssh(line: &str) -> Result<PublicHostKey, String> {
        let mut fields = line.split_whitespace();
        let (Some(key_type), Some(b64)) = (fields.next(), fields.next()) else {
            return Err("expected `TYPE BASE64 [COMMENT]`, e.g. `ssh-ed25519 AAAAC3Nz...`".into());
        };
        let blob = STANDARD
            .decode(b64)
            .map_err(|e| format!("the key's base64 does not decode: {e}"))?;
        let inner = blob_key_type(&blob).ok_or("the key blob is malformed")?;
        if inner != key_type {
            return Err(format!(
                "the line says `{key_type}` but the key blob is `{inner}`"
            ));
        }
        if host_key_methods(key_type).is_none() {
            return Err(format!(
                "host key type `{key_type}` is not supported; pin an ssh-ed25519, ecdsa-sha2-* \
                 or ssh-rsa key"
            ));
        }
        Ok(PublicHostKey {
            key_type: key_type.to_owned(),
            blob,
        })
    }

    fn from_blob(blob: Vec<u8>) -> Option<PublicHostKey> {
        let key_type = blob_key_type(&blob)?.to_owned();
        Some(PublicHostKey { key_type, blob })
    }
}

/// The type string at the start of an SSH public key blob (`uint32 len, bytes`).
fn blob_key_type(blob: &[u8]) -> Option<&str> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    std::str::from_utf8(blob.get(4..4 + len)?).ok()
}

/// The host-key signature algorithms that make a server present a key of `key_type`.
fn host_key_methods(key_type: &str) -> Option<&'static str> {
    Some(match key_type {
        "ssh-ed25519" => "ssh-ed25519",
        "ecdsa-sha2-nistp256" => "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384" => "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521" => "ecdsa-sha2-nistp521",
        // OpenSSH 8.8+ refuses SHA-1 signatures by default; the key type stays `ssh-rsa`.
        "ssh-rsa" => "rsa-sha2-512,rsa-sha2-256,ssh-rsa",
        _ => return None,
    })
}

/// Preference among several pinned key types, strongest and cheapest first.
const KEY_TYPE_ORDER: [&str; 5] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
];

/// The keys a host may present, from its pin, plus where they came from (for messages).
struct ExpectedKeys {
    keys: Vec<PublicHostKey>,
    /// Key blobs the pin marks `@revoked`, each with where (file and line): refused even
    /// where `keys` holds them too.
    revoked: Vec<(Vec<u8>, String)>,
    source: String,
}

impl ExpectedKeys {
    /// The host-key method preference: only the pinned types, in [`KEY_TYPE_ORDER`].
    fn method_pref(&self) -> String {
        KEY_TYPE_ORDER
            .iter()
            .filter(|t| self.keys.iter().any(|k| k.key_type == **t))
            .filter_map(|t| host_key_methods(t))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The name a known_hosts file uses for this endpoint: `host` on port 22, `[host]:port` else.
pub fn known_hosts_name(address: &str, port: u16) -> String {
    if port == 22 {
        address.to_owned()
    } else {
        format!("[{address}]:{port}")
    }
}

/// A pinned known_hosts file as rotor reads it: libssh2 matches host names (plain and hashed
/// `|1|` ones) but knows no markers, and reads `@revoked NAME KEY` as a plain entry for a host
/// called `@revoked`, so a revoked key pinned on another line was trusted. rotor therefore
/// splits the markers off itself.
#[derive(Debug, Default, PartialEq)]
struct KnownHostsFile {
    /// Lines without a marker, with their 1-based numbers, for libssh2 to match names on.
    plain: Vec<(usize, String)>,
    /// Key blobs marked `@revoked`, with their line numbers. Never accepted, for any host,
    /// whatever names the line gives: a revoked key is compromised, wherever it turns up.
    revoked: Vec<(usize, Vec<u8>)>,
}

/// Splits a known_hosts file into plain lines and revoked keys (sshd(8), "SSH_KNOWN_HOSTS FILE
/// FORMAT"). `@cert-authority` lines and unknown markers are refused rather than skipped: the
/// operator meant them to decide trust, and rotor cannot honour them. A message for people on
/// failure.
fn parse_known_hosts(text: &str) -> Result<KnownHostsFile, String> {
    let mut file = KnownHostsFile::default();
    for (idx, raw) in text.lines().enumerate() {
        let line_no = idx + 1;
        let line = raw.trim_start_matches([' ', '\t']);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !line.starts_with('@') {
            file.plain.push((line_no, line.to_owned()));
            continue;
        }
        let mut fields = line.split_whitespace();
        let marker = fields.next().unwrap_or_default();
        match marker {
            "@revoked" => {
                let (Some(_names), Some(_key_type), Some(b64)) =
                    (fields.next(), fields.next(), fields.next())
                else {
                    return Err(format!(
                        "line {line_no} is a @revoked line without `NAMES TYPE BASE64`; fix or \
                         remove it (rotor will not guess which key it revokes)"
                    ));
                };
                let blob = STANDARD.decode(b64).map_err(|e| {
                    format!(
                        "line {line_no} is a @revoked line whose key does not decode ({e}); fix \
                         or remove it (rotor will not guess which key it revokes)"
                    )
                })?;
                file.revoked.push((line_no, blob));
            }
            "@cert-authority" => {
                return Err(format!(
                    "line {line_no} is a @cert-authority line: SSH host certificates are not \
                     supported by rotor yet; pin the host's own key instead (a plain `NAME KEY` \
                     line in a known_hosts file without @cert-authority lines, or host_key in \
                     the inventory)"
                ));
            }
            other => {
                return Err(format!(
                    "line {line_no} has the marker `{other}`, which OpenSSH does not know \
                     (only @revoked and @cert-authority exist); fix or remove it"
                ));
            }
        }
    }
    Ok(file)
}

/// The largest known_hosts file rotor reads (a pinned file lists a fleet's keys: 10,000
/// hosts take about 1 MiB).
const MAX_KNOWN_HOSTS_BYTES: u64 = 16 * 1024 * 1024;

/// Reads a pinned known_hosts file. A missing or unreadable file is a local problem, said as
/// such ("file not found"), never as a host key mismatch: nothing about the host is known yet.
fn read_known_hosts(path: &Path) -> Result<String, String> {
    let shown = path.display();
    use crate::inventory::ReadFailure;
    crate::inventory::read_file(path, MAX_KNOWN_HOSTS_BYTES).map_err(|failure| match failure {
        ReadFailure::Io(e) if e.kind() == io::ErrorKind::NotFound => format!(
            "known_hosts file {shown}: file not found; create it with the host's key, verified \
             out of band (`ssh-keyscan` prints it; compare its fingerprint with the host's \
             console), or fix `known_hosts:` in the inventory (relative paths start from the \
             inventory file's directory)"
        ),
        ReadFailure::Io(e) if e.kind() == io::ErrorKind::PermissionDenied => format!(
            "known_hosts file {shown}: permission denied; let the user rotor runs as read it"
        ),
        ReadFailure::Io(e) => format!("cannot read known_hosts file {shown}: {e}"),
        ReadFailure::NotAFile(found) => format!(
            "known_hosts file {shown} is {found}, not a regular file; point known_hosts at the file"
        ),
        ReadFailure::TooLarge(size) => format!(
            "known_hosts file {shown} is {size} bytes, more than the {MAX_KNOWN_HOSTS_BYTES} rotor reads"
        ),
    })
}

/// How many usable keys `target`'s pin holds for its address and port, checked as a
/// connection checks them (markers, revoked keys, names matched by libssh2, hashed ones
/// too) but without connecting: `rotor inventory check` reads every pin this way.
pub fn pinned_keys(target: &SshTarget) -> Result<usize, ConnectorError> {
    let session = Session::new().map_err(|e| {
        ConnectorError::new(
            FaultClass::Protocol,
            format!("{}: cannot start libssh2: {e}", target.host),
        )
    })?;
    Ok(expected_keys(target, &session)?.keys.len())
}

/// The authentication methods sshd offers `user` (RFC 4252 `none` request) on a fresh
/// connection whose host key matched the pin; nothing is authenticated, no secret is sent,
/// and OpenSSH does not count the request as a failed attempt. `rotor inventory check
/// --connect` asks it for the accounts whose password rotor proves by a login.
pub fn offered_methods(target: &SshTarget, user: &AccountName) -> Result<Offered, ConnectorError> {
    let span = tracing::debug_span!("ssh_auth_methods", host = %target.host, user = %user);
    let _enter = span.enter();
    let session = open_verified(target)?;
    let at = format!("{} ({}:{})", target.host, target.address, target.port);
    arm(&session, Instant::now() + target.timeout).ok();
    let answer = session.auth_methods(user.as_str());
    let offered = match answer {
        Ok(_) if session.authenticated() => Ok(Offered::NoneAccepted),
        Ok(methods) => Ok(Offered::Methods(
            methods
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .take(32)
                .map(|m| crate::text::escape(&m.chars().take(64).collect::<String>()).into_owned())
                .collect(),
        )),
        Err(err) if is_timeout(&err) => Err(ConnectorError::new(
            FaultClass::TimedOut,
            format!(
                "{at}: asking for the authentication methods did not finish within {}",
                human(target.timeout)
            ),
        )),
        Err(err) => Err(ConnectorError::new(
            classify(&err),
            format!(
                "{at}: asking for the authentication methods failed: {}",
                err.message()
            ),
        )),
    };
    arm(
        &session,
        Instant::now() + DISCONNECT_BOUND.min(target.timeout),
    )
    .ok();
    session.disconnect(None, "rotor check done", None).ok();
    offered
}

/// What sshd answered a `none` authentication request with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offered {
    /// The methods it would take (`publickey`, `password`, ...), escaped and cut short.
    Methods(Vec<String>),
    /// `none` itself was accepted: the account logs in without any secret.
    NoneAccepted,
}

fn expected_keys(target: &SshTarget, session: &Session) -> Result<ExpectedKeys, ConnectorError> {
    let fail = |what: String| {
        ConnectorError::new(
            FaultClass::HostKeyMismatch,
            format!(
                "{} ({}:{}): {what}",
                target.host, target.address, target.port
            ),
        )
    };
    match &target.pin {
        HostKeyPin::Key(line) => {
            let key = PublicHostKey::parse_openssh(line)
                .map_err(|e| fail(format!("the pinned host_key is not usable: {e}")))?;
            Ok(ExpectedKeys {
                keys: vec![key],
                revoked: Vec::new(),
                source: "host_key in the inventory".into(),
            })
        }
        HostKeyPin::KnownHosts(path) => {
            let shown = path.display();
            let name = known_hosts_name(&target.address, target.port);
            let text = read_known_hosts(path).map_err(|why| {
                ConnectorError::new(
                    FaultClass::LocalFile,
                    format!(
                        "{} ({}:{}): {why}",
                        target.host, target.address, target.port
                    ),
                )
            })?;
            let file = parse_known_hosts(&text)
                .map_err(|e| fail(format!("known_hosts file {shown}: {e}")))?;
            let mut known = session
                .known_hosts()
                .map_err(|e| fail(format!("cannot use known_hosts: {}", e.message())))?;
            for (line_no, line) in &file.plain {
                known
                    .read_str(line, KnownHostFileKind::OpenSSH)
                    .map_err(|e| {
                        fail(format!(
                            "cannot read line {line_no} of known_hosts file {shown}: {}",
                            e.message()
                        ))
                    })?;
            }
            let entries = known
                .iter()
                .map_err(|e| fail(format!("cannot list {shown}: {}", e.message())))?;
            let revoked: Vec<(Vec<u8>, String)> = file
                .revoked
                .into_iter()
                .map(|(line_no, blob)| (blob, format!("{shown} line {line_no}")))
                .collect();
            // libssh2 matches names (hashed ones too); asking it whether each key in the file
            // is recorded for `name` yields exactly the keys pinned for this endpoint.
            let mut keys: Vec<PublicHostKey> = Vec::new();
            let mut n_revoked = 0;
            for entry in entries {
                let Ok(blob) = STANDARD.decode(entry.key()) else {
                    continue;
                };
                if !matches!(known.check(&name, &blob), CheckResult::Match)
                    || keys.iter().any(|k| k.blob == blob)
                {
                    continue;
                }
                if revoked.iter().any(|(r, _)| *r == blob) {
                    n_revoked += 1;
                    continue;
                }
                if let Some(key) = PublicHostKey::from_blob(blob)
                    && host_key_methods(&key.key_type).is_some()
                {
                    keys.push(key);
                }
            }
            if keys.is_empty() && n_revoked > 0 {
                let lines: Vec<&str> = revoked.iter().map(|(_, at)| at.as_str()).collect();
                return Err(fail(format!(
                    "every key {shown} pins for `{name}` is marked @revoked ({}); the host's \
                     key must be treated as compromised: verify the host out of band, give it \
                     a new host key and pin that one",
                    lines.join(", ")
                )));
            }
            if keys.is_empty() {
                return Err(fail(format!(
                    "{shown} has no usable key for `{name}`; add the host's key, verified out of \
                     band, to that file (or pin host_key in the inventory)"
                )));
            }
            Ok(ExpectedKeys {
                keys,
                revoked,
                source: format!("{shown} entry `{name}`"),
            })
        }
    }
}

/// TCP connect, handshake and host-key check: a session that is safe to authenticate on.
fn open_verified(target: &SshTarget) -> Result<Session, ConnectorError> {
    let at = format!("{} ({}:{})", target.host, target.address, target.port);
    let fail =
        |class: FaultClass, what: String| ConnectorError::new(class, format!("{at}: {what}"));

    // The pin is read first: a known_hosts file that is missing is said as such whether or
    // not the host answers.
    let mut session = Session::new()
        .map_err(|e| fail(FaultClass::Protocol, format!("cannot start libssh2: {e}")))?;
    let expected = expected_keys(target, &session)?;
    let tcp = tcp_connect(target).map_err(|(class, what)| fail(class, what))?;
    session
        .method_pref(MethodType::Kex, KEX_PREFERENCE)
        .map_err(|e| fail(FaultClass::Protocol, format!("kex preference: {e}")))?;
    session
        .method_pref(MethodType::HostKey, &expected.method_pref())
        .map_err(|e| fail(FaultClass::Protocol, format!("host key preference: {e}")))?;
    session.set_tcp_stream(tcp);

    let started = Instant::now();
    arm(&session, started + target.timeout).ok();
    if let Err(err) = session.handshake() {
        let timed_out = is_timeout(&err) || started.elapsed() >= target.timeout;
        let code = session_code(&err);
        return Err(if timed_out {
            fail(
                FaultClass::TimedOut,
                format!(
                    "the SSH handshake did not finish within {}; TCP connected but the server \
                     does not answer (sshd hung or overloaded?)",
                    human(target.timeout)
                ),
            )
        } else if matches!(
            code,
            Some(LIBSSH2_ERROR_KEX_FAILURE | LIBSSH2_ERROR_KEY_EXCHANGE_FAILURE)
        ) {
            fail(
                FaultClass::HostKeyMismatch,
                format!(
                    "key exchange failed ({}): the host offers no host key of the pinned type \
                     ({}) or no common key exchange; if the host was reinstalled, verify its \
                     new key out of band and update host_key in the inventory",
                    err.message(),
                    expected.method_pref()
                ),
            )
        } else {
            fail(
                classify(&err),
                format!("SSH handshake failed: {}", err.message()),
            )
        });
    }
    debug!(
        kex = session.methods(MethodType::Kex).unwrap_or("?"),
        host_key_method = session.methods(MethodType::HostKey).unwrap_or("?"),
        "ssh handshake done"
    );

    let Some((presented, _)) = session.host_key() else {
        return Err(fail(
            FaultClass::HostKeyMismatch,
            "the server presented no host key".into(),
        ));
    };
    if let Some((_, at)) = expected.revoked.iter().find(|(blob, _)| *blob == presented) {
        return Err(fail(
            FaultClass::HostKeyMismatch,
            format!(
                "the host presented {} {}, which {at} marks @revoked. Refusing to \
                 authenticate: treat the host's key as compromised, verify the host out of band, \
                 give it a new host key and pin that one",
                blob_key_type(presented).unwrap_or("unknown type"),
                fingerprint_sha256(presented),
            ),
        ));
    }
    if !expected.keys.iter().any(|k| k.blob == presented) {
        let expected_fps = expected
            .keys
            .iter()
            .map(|k| format!("{} {}", k.key_type, fingerprint_sha256(&k.blob)))
            .collect::<Vec<_>>()
            .join(", ");
        // The blob's type string is the server's: named only if it is a type rotor knows.
        let presented_type = blob_key_type(presented)
            .filter(|t| host_key_methods(t).is_some())
            .unwrap_or("a key of an unknown type");
        return Err(fail(
            FaultClass::HostKeyMismatch,
            format!(
                "host key mismatch: the host presented {presented_type} {} but {} pins {}. \
                 Refusing to authenticate. If the host was reinstalled, verify the new key out \
                 of band and update host_key in the inventory",
                fingerprint_sha256(presented),
                expected.source,
                expected_fps
            ),
        ));
    }
    Ok(session)
}

fn tcp_connect(target: &SshTarget) -> Result<TcpStream, (FaultClass, String)> {
    let addrs: Vec<SocketAddr> = (target.address.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| {
            (
                FaultClass::Unreachable,
                format!("cannot resolve the address: {e}; check `address` in the inventory"),
            )
        })?
        .collect();
    let mut last = (
        FaultClass::Unreachable,
        "the address resolved to nothing".to_owned(),
    );
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, target.timeout) {
            Ok(tcp) => {
                tcp.set_nodelay(true).ok();
                return Ok(tcp);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                last = (
                    FaultClass::TimedOut,
                    format!(
                        "TCP connect to {addr} did not finish within {}",
                        human(target.timeout)
                    ),
                );
            }
            Err(e) => {
                last = (
                    FaultClass::Unreachable,
                    format!("TCP connect to {addr} failed: {e}; is the host up and sshd running?"),
                );
            }
        }
    }
    Err(last)
}

enum AuthFailure {
    /// The server answered and said no. The detail never holds the secret.
    Rejected(String),
    Other(ConnectorError),
}

fn authenticate(
    session: &Session,
    target: &SshTarget,
    user: &AccountName,
    auth: Login<'_>,
) -> Result<(), AuthFailure> {
    let at = format!("{} ({}:{})", target.host, target.address, target.port);
    arm(session, Instant::now() + target.timeout).ok();
    let result = match auth {
        Login::Auth(SshAuth::KeyFile(path)) => {
            session.userauth_pubkey_file(user.as_str(), None, path, None)
        }
        // The one place a password enters the protocol.
        Login::Auth(SshAuth::Password(secret)) => {
            session.userauth_password(user.as_str(), secret.expose())
        }
        // The one place a private key enters libssh2; it derives the public half itself.
        Login::KeyMemory(secret) => {
            session.userauth_pubkey_memory(user.as_str(), None, secret.expose(), None)
        }
    };
    match result {
        Ok(()) if session.authenticated() => Ok(()),
        Ok(()) => Err(AuthFailure::Rejected(
            "the server wants further authentication".into(),
        )),
        Err(err) if is_timeout(&err) => Err(AuthFailure::Other(ConnectorError::new(
            FaultClass::TimedOut,
            format!(
                "{at}: authentication did not finish within {}",
                human(target.timeout)
            ),
        ))),
        Err(err) => match session_code(&err) {
            Some(LIBSSH2_ERROR_AUTHENTICATION_FAILED | LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED) => {
                Err(AuthFailure::Rejected(err.message().to_owned()))
            }
            Some(LIBSSH2_ERROR_FILE | LIBSSH2_ERROR_KEYFILE_AUTH_FAILED) => match auth {
                Login::Auth(SshAuth::KeyFile(path)) => Err(AuthFailure::Rejected(format!(
                    "cannot use the key file {}: {}; it must be a readable, unencrypted \
                     OpenSSH private key",
                    path.display(),
                    err.message()
                ))),
                // rotor's own key that libssh2 cannot read: not the server's "no", so it must
                // not count as a rejected login. libssh2's message names no key material.
                Login::KeyMemory(_) => Err(AuthFailure::Other(ConnectorError::new(
                    FaultClass::Protocol,
                    format!(
                        "{at}: libssh2 cannot read the private key rotor holds ({}); it \
                         must be an unencrypted OpenSSH ed25519 key (`rotor enroll \
                         HOST/ACCOUNT --ssh-key FILE` checks one)",
                        err.message()
                    ),
                ))),
                Login::Auth(SshAuth::Password(_)) => {
                    Err(AuthFailure::Rejected(err.message().to_owned()))
                }
            },
            _ => Err(AuthFailure::Other(ConnectorError::new(
                classify(&err),
                format!("{at}: authentication failed: {}", err.message()),
            ))),
        },
    }
}

/// Sets libssh2's per-call timeout to the time left until `deadline` (at least 1 ms, because
/// 0 means "no timeout" to libssh2). `Err` when the deadline has passed.
fn arm(session: &Session, deadline: Instant) -> Result<(), ()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(());
    }
    let ms = u32::try_from(left.as_millis()).unwrap_or(u32::MAX).max(1);
    session.set_timeout(ms);
    Ok(())
}

fn session_code(err: &ssh2::Error) -> Option<i32> {
    match err.code() {
        ErrorCode::Session(code) => Some(code),
        ErrorCode::SFTP(_) => None,
    }
}

fn is_timeout(err: &ssh2::Error) -> bool {
    matches!(
        session_code(err),
        Some(LIBSSH2_ERROR_TIMEOUT | LIBSSH2_ERROR_SOCKET_TIMEOUT)
    )
}

fn classify(err: &ssh2::Error) -> FaultClass {
    match session_code(err) {
        Some(LIBSSH2_ERROR_TIMEOUT | LIBSSH2_ERROR_SOCKET_TIMEOUT) => FaultClass::TimedOut,
        Some(
            LIBSSH2_ERROR_SOCKET_DISCONNECT | LIBSSH2_ERROR_SOCKET_RECV | LIBSSH2_ERROR_SOCKET_SEND,
        ) => FaultClass::Unreachable,
        _ => FaultClass::Protocol,
    }
}

/// Appends without leaving an unzeroized copy behind when the vector grows.
fn extend_zeroizing(buf: &mut Zeroizing<Vec<u8>>, more: &[u8]) {
    if buf.capacity() - buf.len() < more.len() {
        let mut bigger = Zeroizing::new(Vec::with_capacity((buf.len() + more.len()).max(4096) * 2));
        bigger.extend_from_slice(buf);
        // The old buffer is zeroized as it drops here.
        *buf = bigger;
    }
    buf.extend_from_slice(more);
}

fn human(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    // `ssh-keygen -lf` on this key prints:
    // 256 SHA256:hc77bb1ORmfA9mgFtmbLs44BODmsmebBwcueFYizKbQ test@rotor (ED25519)
    const ED25519_LINE: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKSs3E4orYCVUv8bdx6vsQB1ee4iWOmvGKpBBOinj5/s test@rotor";
    const ED25519_FP: &str = "SHA256:hc77bb1ORmfA9mgFtmbLs44BODmsmebBwcueFYizKbQ";

    fn check_parse(line: &str, expect: Result<&str, &str>) {
        match (PublicHostKey::parse_openssh(line), expect) {
            (Ok(key), Ok(key_type)) => assert_eq!(key.key_type, key_type, "{line}"),
            (Err(msg), Err(needle)) => assert!(msg.contains(needle), "{line}: {msg}"),
            (got, want) => panic!("{line}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn pin_parsing() {
        check_parse(ED25519_LINE, Ok("ssh-ed25519"));
        check_parse(
            ED25519_LINE.trim_end_matches(" test@rotor"),
            Ok("ssh-ed25519"),
        );
        check_parse("ssh-ed25519", Err("expected `TYPE BASE64"));
        check_parse("", Err("expected `TYPE BASE64"));
        check_parse("ssh-ed25519 !!!notbase64", Err("does not decode"));
        check_parse(
            &ED25519_LINE.replace("ssh-ed25519 ", "ssh-rsa "),
            Err("the line says `ssh-rsa` but the key blob is `ssh-ed25519`"),
        );
        check_parse("ssh-ed25519 AAAA", Err("malformed"));
        let dss = format!(
            "ssh-dss {}",
            STANDARD.encode(b"\0\0\0\x07ssh-dss\0\0\0\x01x")
        );
        check_parse(&dss, Err("not supported"));
    }

    #[test]
    fn fingerprint_matches_ssh_keygen() {
        let key = PublicHostKey::parse_openssh(ED25519_LINE).unwrap();
        assert_eq!(fingerprint_sha256(&key.blob), ED25519_FP);
    }

    #[test]
    fn method_pref_follows_pinned_types() {
        let ed = PublicHostKey::parse_openssh(ED25519_LINE).unwrap();
        let rsa = PublicHostKey {
            key_type: "ssh-rsa".into(),
            blob: vec![],
        };
        let keys = |keys| ExpectedKeys {
            keys,
            revoked: Vec::new(),
            source: String::new(),
        };
        assert_eq!(keys(vec![ed.clone()]).method_pref(), "ssh-ed25519");
        assert_eq!(
            keys(vec![rsa.clone(), ed]).method_pref(),
            "ssh-ed25519,rsa-sha2-512,rsa-sha2-256,ssh-rsa"
        );
        assert_eq!(
            keys(vec![rsa]).method_pref(),
            "rsa-sha2-512,rsa-sha2-256,ssh-rsa"
        );
    }

    #[test]
    fn known_hosts_names() {
        assert_eq!(known_hosts_name("10.0.0.5", 22), "10.0.0.5");
        assert_eq!(known_hosts_name("10.0.0.5", 2222), "[10.0.0.5]:2222");
    }

    /// One row: a known_hosts file => its plain line numbers and revoked line numbers, or a
    /// message that holds `needle`.
    fn check_known_hosts(text: &str, expect: Result<(&[usize], &[usize]), &str>) {
        match (parse_known_hosts(text), expect) {
            (Ok(file), Ok((plain, revoked))) => {
                let got_plain: Vec<usize> = file.plain.iter().map(|(n, _)| *n).collect();
                let got_revoked: Vec<usize> = file.revoked.iter().map(|(n, _)| *n).collect();
                assert_eq!(
                    (&got_plain[..], &got_revoked[..]),
                    (plain, revoked),
                    "{text}"
                );
            }
            (Err(msg), Err(needle)) => assert!(msg.contains(needle), "{text}: {msg}"),
            (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn known_hosts_markers_are_split_off() {
        let key = ED25519_LINE;
        check_known_hosts(&format!("h1 {key}\n"), Ok((&[1], &[])));
        check_known_hosts(
            &format!("# comment\n\n  h1 {key}\n@revoked h1 {key}\n\t@revoked * {key}\n"),
            Ok((&[3], &[4, 5])),
        );
        check_known_hosts(
            &format!("h1 {key}\n@cert-authority *.example {key}\n"),
            Err("line 2 is a @cert-authority line: SSH host certificates are not supported"),
        );
        check_known_hosts(
            &format!("@trusted h1 {key}\n"),
            Err("line 1 has the marker `@trusted`"),
        );
        check_known_hosts("@revoked h1\n", Err("line 1 is a @revoked line without"));
        check_known_hosts(
            "@revoked h1 ssh-ed25519 !!!\n",
            Err("line 1 is a @revoked line whose key does not decode"),
        );
        // The revoked blob is the key's wire form, what the server presents.
        let file = parse_known_hosts(&format!("@revoked h1 {key}\n")).unwrap();
        let pinned = PublicHostKey::parse_openssh(key).unwrap();
        assert_eq!(file.revoked, vec![(1, pinned.blob)]);
    }

    #[test]
    fn extend_zeroizing_keeps_contents() {
        let mut buf = Zeroizing::new(Vec::new());
        for i in 0..100u8 {
            extend_zeroizing(&mut buf, &[i; 1000]);
        }
        assert_eq!(buf.len(), 100_000);
        assert!(
            buf.chunks(1000)
                .enumerate()
                .all(|(i, c)| c.iter().all(|&b| b == i as u8))
        );
    }
}

/// Real sshd tests. One throwaway sshd on 127.0.0.1 (a free high port) serves every case, run
/// in order by one test so that the fixture is started and stopped exactly once.
#[cfg(all(test, feature = "lab"))]
mod lab {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;
    use std::process::{Command, Stdio};

    use super::*;

    const SSHD: &str = "/usr/sbin/sshd";
    const PASSWORD: &str = "lab-Pw-4f9e1c2b-correct";

    struct Lab {
        dir: tempfile::TempDir,
        port: u16,
        pid: u32,
        /// A second sshd on the same host key and accounts, with `PasswordAuthentication no`.
        no_password: Sshd,
        /// A third, with `PubkeyAuthentication no`.
        no_pubkey: Sshd,
        user: AccountName,
        host_key_line: String,
        client_key: PathBuf,
    }

    /// One running sshd of the lab.
    struct Sshd {
        port: u16,
        pid: u32,
        log: PathBuf,
    }

    /// Writes an sshd_config (the shared settings plus `extra`) named `name` in `d` and starts
    /// sshd with it on a free port.
    fn start_sshd(d: &Path, name: &str, extra: &str) -> Sshd {
        let port = crate::connector::lab_ports::free_port();
        let config = d.join(format!("{name}_config"));
        let log = d.join(format!("{name}.log"));
        let pid_file = d.join(format!("{name}.pid"));
        fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1:{port}\nHostKey {d}/host_ed25519\nPidFile {pid}\n\
                 AuthorizedKeysFile {d}/ak/%u\nUsePAM no\n\
                 KbdInteractiveAuthentication no\nStrictModes no\nPermitRootLogin no\n\
                 MaxStartups 100\nLogLevel VERBOSE\n{extra}",
                d = d.display(),
                pid = pid_file.display(),
            ),
        )
        .unwrap();
        run(Command::new(SSHD)
            .arg("-f")
            .arg(&config)
            .arg("-E")
            .arg(&log));
        // Up once sshd wrote its whole pid (the file exists a moment before it is filled)
        // and the port answers.
        let read_pid = || {
            fs::read_to_string(&pid_file)
                .ok()
                .and_then(|t| t.trim().parse::<u32>().ok())
        };
        assert!(
            poll(Duration::from_secs(5), || read_pid().is_some()
                && TcpStream::connect(("127.0.0.1", port)).is_ok()),
            "sshd did not start: {}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        let pid = read_pid().expect("polled until it parsed");
        Sshd { port, pid, log }
    }

    fn run(cmd: &mut Command) -> String {
        let out = cmd.output().expect("spawn");
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn keygen(path: &Path, key_type: &str) -> String {
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", key_type, "-N", "", "-C", "lab", "-f"])
            .arg(path));
        fs::read_to_string(path.with_extension("pub"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// Polls `f` until it returns true or `within` passes.
    fn poll(within: Duration, mut f: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn signal(pid: u32, sig: &str) {
        Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap();
    }

    impl Lab {
        fn start() -> Lab {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            fs::create_dir_all("/run/sshd").unwrap();
            let host_key_line = keygen(&d.join("host_ed25519"), "ed25519");
            let client_key = d.join("client_ed25519");
            let client_pub = keygen(&client_key, "ed25519");
            let user =
                AccountName::parse(&format!("rotorlab{}", std::process::id() % 100_000)).unwrap();
            fs::create_dir(d.join("ak")).unwrap();
            fs::write(d.join("ak").join(user.as_str()), format!("{client_pub}\n")).unwrap();
            // A throwaway account; removed in Drop.
            // The account's home lives in the tempdir, which must be reachable by it.
            fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
            let home = d.join("home");
            run(Command::new("useradd")
                .args(["-M", "-s", "/bin/sh", "-d"])
                .arg(&home)
                .arg(user.as_str()));
            fs::create_dir(&home).unwrap();
            run(Command::new("chown").arg(user.as_str()).arg(&home));
            let mut chpasswd = Command::new("chpasswd")
                .stdin(Stdio::piped())
                .spawn()
                .unwrap();
            chpasswd
                .stdin
                .take()
                .unwrap()
                .write_all(format!("{user}:{PASSWORD}\n").as_bytes())
                .unwrap();
            assert!(chpasswd.wait().unwrap().success());
            let sshd = start_sshd(d, "sshd", "PasswordAuthentication yes\n");
            let no_password = start_sshd(d, "sshd_no_password", "PasswordAuthentication no\n");
            let no_pubkey = start_sshd(
                d,
                "sshd_no_pubkey",
                "PasswordAuthentication yes\nPubkeyAuthentication no\n",
            );
            Lab {
                dir,
                port: sshd.port,
                pid: sshd.pid,
                no_password,
                no_pubkey,
                user,
                host_key_line,
                client_key,
            }
        }

        fn target(&self, timeout: Duration) -> SshTarget {
            SshTarget {
                host: HostName::parse("lab-1").unwrap(),
                address: "127.0.0.1".into(),
                port: self.port,
                pin: HostKeyPin::Key(self.host_key_line.clone()),
                timeout,
            }
        }

        fn connect(&self) -> SshSession {
            SshSession::connect(
                &self.target(Duration::from_secs(5)),
                &self.user,
                SshAuth::KeyFile(&self.client_key),
            )
            .unwrap_or_else(|e| panic!("{e}"))
        }
    }

    impl Drop for Lab {
        fn drop(&mut self) {
            signal(self.pid, "-CONT");
            signal(self.pid, "-KILL");
            signal(self.no_password.pid, "-KILL");
            signal(self.no_pubkey.pid, "-KILL");
            Command::new("userdel")
                .args(["-f", self.user.as_str()])
                .status()
                .ok();
        }
    }

    fn class_of<T>(r: Result<T, ConnectorError>) -> (FaultClass, String) {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => (e.class, e.message),
        }
    }

    fn key_auth_exec_round_trip(lab: &Lab) {
        let mut s = lab.connect();
        assert!(
            matches!(
                s.kex(),
                Some("curve25519-sha256" | "curve25519-sha256@libssh.org")
            ),
            "{:?}",
            s.kex()
        );
        let out = s.exec("cat", b"hello\nworld\n").unwrap();
        assert_eq!(
            (out.status, &out.stdout[..], out.stderr.as_str()),
            (0, &b"hello\nworld\n"[..], "")
        );
        // Bigger than one read chunk and one libssh2 packet.
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let out = s.exec("cat", &big).unwrap();
        assert!(
            out.stdout[..] == big[..],
            "cat round trip of {} bytes",
            big.len()
        );
        let out = s.exec("echo oops >&2; exit 3", b"").unwrap();
        assert_eq!(
            (out.status, out.signal.as_deref(), out.stderr.as_str()),
            (3, None, "oops\n")
        );
        let out = s.exec("kill -TERM $$", b"").unwrap();
        assert_eq!((out.status, out.signal.as_deref()), (-1, Some("TERM")));
        let out = s.exec("id -un", b"").unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            lab.user.as_str()
        );
    }

    fn password_login(lab: &Lab) {
        let target = lab.target(Duration::from_secs(5));
        check_password_login(&target, &lab.user, &Secret::new(PASSWORD.into())).unwrap();
        let wrong = "lab-wrong-password-93c1";
        let (class, msg) = class_of(check_password_login(
            &target,
            &lab.user,
            &Secret::new(wrong.into()),
        ));
        assert_eq!(class, FaultClass::VerifyFailed, "{msg}");
        assert!(
            msg.contains("lab-1") && msg.contains("127.0.0.1") && !msg.contains(wrong),
            "{msg}"
        );
        let nobody = AccountName::parse("rotor_no_such_user").unwrap();
        let (class, msg) = class_of(check_password_login(
            &target,
            &nobody,
            &Secret::new(PASSWORD.into()),
        ));
        assert_eq!(class, FaultClass::VerifyFailed, "{msg}");
        // The same wrong password as the connect identity is the admin's problem, not a verify.
        let (class, msg) = class_of(SshSession::connect(
            &target,
            &lab.user,
            SshAuth::Password(&Secret::new(wrong.into())),
        ));
        assert_eq!(class, FaultClass::ConnectAuthRejected, "{msg}");
        assert!(
            msg.contains(&format!("{}@lab-1", lab.user)) && !msg.contains(wrong),
            "{msg}"
        );
    }

    fn password_login_disabled(lab: &Lab) {
        let mut target = lab.target(Duration::from_secs(5));
        target.port = lab.no_password.port;
        let (class, msg) = class_of(check_password_login(
            &target,
            &lab.user,
            &Secret::new(PASSWORD.into()),
        ));
        // Not VerifyFailed: the password may be right, the host just does not take passwords.
        assert_eq!(class, FaultClass::Refused, "{msg}");
        for needle in [
            "lab-1",
            "password login is disabled",
            lab.user.as_str(),
            "PasswordAuthentication yes",
            "Match",
        ] {
            assert!(msg.contains(needle), "{needle} missing in: {msg}");
        }
        assert!(!msg.contains(PASSWORD), "{msg}");
        eprintln!("password login disabled: {msg}");
        // The password was never sent: this sshd logged no password attempt, while the other
        // one logged the wrong password of `password_login` (which runs before this case).
        let failed = format!("Failed password for {}", lab.user);
        let main_log = lab.dir.path().join("sshd.log");
        assert!(fs::read_to_string(main_log).unwrap().contains(&failed));
        let log = fs::read_to_string(&lab.no_password.log).unwrap();
        assert!(!log.contains("Failed password"), "{log}");
        // Key login to the same server still works: only the password method is off.
        let mut s = SshSession::connect(&target, &lab.user, SshAuth::KeyFile(&lab.client_key))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.exec("true", b"").unwrap().status, 0);
    }

    /// Key login with a key pair from `sshkey`: proven from memory by `check_key_login` and
    /// `connect_with_key`, rejected once removed, refused (not tried) where sshd takes no keys,
    /// and the OpenSSH text rotor wrote is read by the system's `ssh -i` and `ssh-keygen`.
    fn key_login(lab: &Lab) {
        use crate::sshkey::{self, authorized_keys};
        let cred = crate::credential::CredentialId::new(
            HostName::parse("lab-1").unwrap(),
            lab.user.clone(),
        );
        let mut rng = crate::clock::Entropy::rng(&crate::clock::OsEntropy);
        let pair = sshkey::generate(&mut *rng, &cred);
        let other = sshkey::generate(&mut *rng, &cred);
        let ak = lab.dir.path().join("ak").join(lab.user.as_str());
        let before = fs::read(&ak).unwrap();
        fs::write(
            &ak,
            authorized_keys::add(&before, &pair.public).unwrap().text,
        )
        .unwrap();
        let target = lab.target(Duration::from_secs(5));

        check_key_login(&target, &lab.user, &pair.private).unwrap_or_else(|e| panic!("{e}"));
        let mut s = SshSession::connect_with_key(&target, &lab.user, &pair.private)
            .unwrap_or_else(|e| panic!("{e}"));
        let out = s.exec("id -un", b"").unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            lab.user.as_str()
        );
        drop(s);

        let no_key_text = |msg: &str| {
            for piece in pair
                .private
                .expose()
                .lines()
                .chain(other.private.expose().lines())
            {
                assert!(
                    piece.len() < 20 || !msg.contains(piece),
                    "key text in: {msg}"
                );
            }
        };
        let (class, msg) = class_of(check_key_login(&target, &lab.user, &other.private));
        assert_eq!(class, FaultClass::VerifyFailed, "{msg}");
        assert!(
            msg.contains("key login as") && msg.contains("lab-1"),
            "{msg}"
        );
        no_key_text(&msg);
        let (class, msg) = class_of(SshSession::connect_with_key(
            &target,
            &lab.user,
            &other.private,
        ));
        assert_eq!(class, FaultClass::ConnectAuthRejected, "{msg}");
        let nobody = AccountName::parse("rotor_no_such_user").unwrap();
        let (class, msg) = class_of(check_key_login(&target, &nobody, &pair.private));
        assert_eq!(class, FaultClass::VerifyFailed, "{msg}");
        // Not a key libssh2 can read: rotor's problem, not a rejected login.
        let (class, msg) = class_of(check_key_login(
            &target,
            &lab.user,
            &Secret::new("not-a-key-3f9a".into()),
        ));
        assert_eq!(class, FaultClass::Protocol, "{msg}");
        assert!(!msg.contains("not-a-key-3f9a"), "{msg}");
        // A server that takes no keys: refused, the key never sent.
        let mut no_pubkey = target.clone();
        no_pubkey.port = lab.no_pubkey.port;
        let (class, msg) = class_of(check_key_login(&no_pubkey, &lab.user, &pair.private));
        assert_eq!(class, FaultClass::Refused, "{msg}");
        assert!(
            msg.contains("key login is disabled") && msg.contains("PubkeyAuthentication yes"),
            "{msg}"
        );
        let log = fs::read_to_string(&lab.no_pubkey.log).unwrap();
        assert!(!log.contains("publickey"), "{log}");

        // The system client reads the private key rotor wrote, and agrees on the fingerprint.
        let key_file = lab.dir.path().join("rotor_written_key");
        fs::write(&key_file, pair.private.expose()).unwrap();
        fs::set_permissions(&key_file, fs::Permissions::from_mode(0o600)).unwrap();
        let listed = run(Command::new("ssh-keygen").arg("-lf").arg(&key_file));
        assert!(
            listed.contains(pair.public.fingerprint().as_str()),
            "{listed}"
        );
        let known_hosts = lab.dir.path().join("key_login_known_hosts");
        fs::write(
            &known_hosts,
            format!("[127.0.0.1]:{} {}\n", lab.port, lab.host_key_line),
        )
        .unwrap();
        let ssh = |key: &Path| {
            Command::new("ssh")
                .args([
                    "-F",
                    "/dev/null",
                    "-o",
                    "BatchMode=yes",
                    "-o",
                    "IdentitiesOnly=yes",
                ])
                .args([
                    "-o",
                    "IdentityAgent=none",
                    "-o",
                    "StrictHostKeyChecking=yes",
                ])
                .arg("-o")
                .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
                .arg("-i")
                .arg(key)
                .args(["-p", &lab.port.to_string()])
                .arg(format!("{}@127.0.0.1", lab.user))
                .arg("id -un")
                .stdin(Stdio::null())
                .output()
                .unwrap()
        };
        let out = ssh(&key_file);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            lab.user.as_str()
        );

        // Removed by fingerprint: rejected, by rotor and by ssh; the other line is still there.
        let edit = authorized_keys::remove(
            &fs::read(&ak).unwrap(),
            &[pair.public.fingerprint().clone()],
        )
        .unwrap();
        assert_eq!(edit.n_removed, 1);
        assert_eq!(edit.text, before);
        fs::write(&ak, &edit.text).unwrap();
        let (class, msg) = class_of(check_key_login(&target, &lab.user, &pair.private));
        assert_eq!(class, FaultClass::VerifyFailed, "{msg}");
        assert!(!ssh(&key_file).status.success());
        lab.connect();
    }

    fn wrong_pin(lab: &Lab) {
        let other = keygen(&lab.dir.path().join("other_ed25519"), "ed25519");
        let mut target = lab.target(Duration::from_secs(5));
        target.pin = HostKeyPin::Key(other.clone());
        let (class, msg) = class_of(check_password_login(
            &target,
            &lab.user,
            &Secret::new(PASSWORD.into()),
        ));
        assert_eq!(class, FaultClass::HostKeyMismatch, "{msg}");
        let fp = |line: &str| fingerprint_sha256(&PublicHostKey::parse_openssh(line).unwrap().blob);
        for needle in [
            fp(&other),
            fp(&lab.host_key_line),
            "lab-1".into(),
            "127.0.0.1".into(),
            "out of band".into(),
        ] {
            assert!(msg.contains(&needle), "{needle} missing in: {msg}");
        }
        // No key of the pinned type on the server: the handshake cannot even agree.
        target.pin = HostKeyPin::Key(keygen(&lab.dir.path().join("other_rsa"), "rsa"));
        let (class, msg) = class_of(check_password_login(
            &target,
            &lab.user,
            &Secret::new(PASSWORD.into()),
        ));
        assert_eq!(class, FaultClass::HostKeyMismatch, "{msg}");
    }

    fn known_hosts_pin(lab: &Lab) {
        let path = lab.dir.path().join("known_hosts");
        let mut target = lab.target(Duration::from_secs(5));
        target.pin = HostKeyPin::KnownHosts(path.clone());
        let other = keygen(&lab.dir.path().join("kh_other"), "ed25519");
        // Only an entry for port 22 (plain name) and for another host: not this endpoint.
        fs::write(
            &path,
            format!(
                "127.0.0.1 {}\n[127.0.0.2]:{} {}\n",
                lab.host_key_line, lab.port, lab.host_key_line
            ),
        )
        .unwrap();
        let (class, msg) = class_of(SshSession::connect(
            &target,
            &lab.user,
            SshAuth::KeyFile(&lab.client_key),
        ));
        assert_eq!(class, FaultClass::HostKeyMismatch, "{msg}");
        // A wrong key recorded for this endpoint.
        fs::write(&path, format!("[127.0.0.1]:{} {other}\n", lab.port)).unwrap();
        let (class, msg) = class_of(SshSession::connect(
            &target,
            &lab.user,
            SshAuth::KeyFile(&lab.client_key),
        ));
        assert_eq!(class, FaultClass::HostKeyMismatch, "{msg}");
        // The right key, hashed by ssh-keygen -H, next to an RSA line for another host.
        fs::write(
            &path,
            format!(
                "[127.0.0.1]:{} {}\notherhost ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7\n",
                lab.port, lab.host_key_line
            ),
        )
        .unwrap();
        run(Command::new("ssh-keygen").arg("-H").arg("-f").arg(&path));
        assert!(!fs::read_to_string(&path).unwrap().contains("127.0.0.1"));
        let mut s = SshSession::connect(&target, &lab.user, SshAuth::KeyFile(&lab.client_key))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.exec("true", b"").unwrap().status, 0);
        drop(s);
        known_hosts_markers(lab, &target, &path);
    }

    /// `@revoked` and `@cert-authority` lines, as OpenSSH reads them (sshd(8) "SSH_KNOWN_HOSTS
    /// FILE FORMAT"): a revoked key is refused even where a plain line pins it, for any host.
    fn known_hosts_markers(lab: &Lab, target: &SshTarget, path: &Path) {
        let name = format!("[127.0.0.1]:{}", lab.port);
        let key = &lab.host_key_line;
        let connect = || SshSession::connect(target, &lab.user, SshAuth::KeyFile(&lab.client_key));
        let refused = |text: String, needles: &[&str]| {
            fs::write(path, &text).unwrap();
            let (class, msg) = class_of(connect());
            assert_eq!(class, FaultClass::HostKeyMismatch, "{text}: {msg}");
            for needle in needles {
                assert!(msg.contains(needle), "{needle} missing in: {msg}");
            }
            assert!(msg.contains(&path.display().to_string()), "{msg}");
        };
        // The same key pinned and revoked for this endpoint, in either order.
        refused(
            format!("{name} {key}\n@revoked {name} {key}\n"),
            &["@revoked", "line 2", "lab-1"],
        );
        refused(
            format!("@revoked {name} {key}\n{name} {key}\n"),
            &["@revoked", "line 1"],
        );
        // Revoked under another host's name (and the pin hashed): still never accepted.
        fs::write(path, format!("{name} {key}\n")).unwrap();
        run(Command::new("ssh-keygen").arg("-H").arg("-f").arg(path));
        let hashed = fs::read_to_string(path).unwrap();
        refused(
            format!("{hashed}@revoked otherhost,10.9.9.9 {key}\n"),
            &["@revoked", "line 2"],
        );
        // Another key revoked: the pinned one still works.
        let other = keygen(&lab.dir.path().join("kh_revoked"), "ed25519");
        fs::write(path, format!("@revoked * {other}\n{hashed}")).unwrap();
        let mut s = connect().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.exec("true", b"").unwrap().status, 0);
        drop(s);
        // Host certificates are not supported: said, not silently ignored.
        refused(
            format!("@cert-authority *.example.org {other}\n{name} {key}\n"),
            &["@cert-authority", "line 1", "not supported"],
        );
        // A marker OpenSSH does not know either.
        refused(format!("@trusted {name} {key}\n"), &["@trusted", "line 1"]);
    }

    fn refused_port(lab: &Lab) {
        let mut target = lab.target(Duration::from_secs(5));
        target.port = crate::connector::lab_ports::free_port();
        let started = Instant::now();
        let (class, msg) = class_of(check_password_login(
            &target,
            &lab.user,
            &Secret::new(PASSWORD.into()),
        ));
        assert_eq!(class, FaultClass::Unreachable, "{msg}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    fn command_that_never_ends(lab: &Lab) {
        let mut target = lab.target(Duration::from_millis(1500));
        target.timeout = Duration::from_millis(1500);
        let mut s =
            SshSession::connect(&target, &lab.user, SshAuth::KeyFile(&lab.client_key)).unwrap();
        let started = Instant::now();
        // `sleep` ends on its own soon after, so nothing lingers after the test.
        let (class, msg) = class_of(s.exec("sleep 5", b""));
        let took = started.elapsed();
        assert_eq!(class, FaultClass::TimedOut, "{msg}");
        assert!(
            took >= Duration::from_millis(1400) && took < Duration::from_millis(3000),
            "{took:?}"
        );
        // A command that keeps printing also ends at the step deadline, not per read.
        let mut s =
            SshSession::connect(&target, &lab.user, SshAuth::KeyFile(&lab.client_key)).unwrap();
        let started = Instant::now();
        let (class, msg) =
            class_of(s.exec("for i in $(seq 40); do echo tick; sleep 0.1; done", b""));
        let took = started.elapsed();
        assert_eq!(class, FaultClass::TimedOut, "{msg}");
        assert!(took < Duration::from_millis(3000), "{took:?}");
        let (class, _) = class_of(s.exec("true", b""));
        assert_eq!(
            class,
            FaultClass::Protocol,
            "a session that timed out refuses more work"
        );
        let dropped = Instant::now();
        drop(s);
        assert!(
            dropped.elapsed() < Duration::from_millis(2500),
            "{:?}",
            dropped.elapsed()
        );
    }

    fn stopped_sshd(lab: &Lab) {
        struct Resume(u32);
        impl Drop for Resume {
            fn drop(&mut self) {
                signal(self.0, "-CONT");
            }
        }
        signal(lab.pid, "-STOP");
        let _resume = Resume(lab.pid);
        let status = || fs::read_to_string(format!("/proc/{}/stat", lab.pid)).unwrap_or_default();
        assert!(
            poll(Duration::from_secs(2), || status().contains(") T ")),
            "sshd not stopped"
        );
        let target = lab.target(Duration::from_secs(2));
        let started = Instant::now();
        let (class, msg) = class_of(check_password_login(
            &target,
            &lab.user,
            &Secret::new(PASSWORD.into()),
        ));
        let took = started.elapsed();
        assert_eq!(class, FaultClass::TimedOut, "{msg}");
        assert!(
            took >= Duration::from_millis(1900) && took < Duration::from_millis(3500),
            "{took:?}"
        );
        eprintln!("stopped sshd: TimedOut after {took:?} with a 2s timeout: {msg}");
    }

    fn login_cost(lab: &Lab) {
        let target = lab.target(Duration::from_secs(5));
        let password = Secret::new(PASSWORD.into());
        let n = 50;
        let started = Instant::now();
        for _ in 0..n {
            check_password_login(&target, &lab.user, &password).unwrap();
        }
        let took = started.elapsed();
        let kex = lab.connect().kex().unwrap_or("?").to_owned();
        eprintln!(
            "{n} sequential check_password_login: {took:?} ({:?} each), kex {kex}",
            took / n
        );
    }

    /// A named step of the lab test.
    type Case = (&'static str, fn(&Lab));

    #[test]
    fn against_a_real_sshd() {
        let lab = Lab::start();
        let cases: [Case; 10] = [
            ("key_auth_exec_round_trip", key_auth_exec_round_trip),
            ("key_login", key_login),
            ("password_login", password_login),
            ("password_login_disabled", password_login_disabled),
            ("wrong_pin", wrong_pin),
            ("known_hosts_pin", known_hosts_pin),
            ("refused_port", refused_port),
            ("command_that_never_ends", command_that_never_ends),
            ("login_cost", login_cost),
            // Last: it leaves a half-accepted connection in sshd's backlog.
            ("stopped_sshd", stopped_sshd),
        ];
        for (name, case) in cases {
            eprintln!("case {name}");
            case(&lab);
        }
    }
}

//! The LDAP edge, on the async `ldap3` crate (tokio, rustls with the ring provider).
//!
//! [`DirectoryTarget::prepare`] turns a directory's inventory entry ([`DirectorySpec`]) into a
//! ready value: URL checked, TLS trust loaded once. [`LdapAdmin`] is rotor's one admin
//! connection per directory (cheap to clone; `ldap3` multiplexes operations on it) and
//! [`check_bind`] proves a password with a fresh connection and a simple bind as the account.
//! Every failure is a [`ConnectorError`] with a [`FaultClass`]; no `ldap3` or `rustls` type
//! leaves this module.
//!
//! Invariants kept here:
//! - **TLS always, verified.** `ldap://` URLs get StartTLS, `ldaps://` URLs TLS from the first
//!   byte; plain LDAP is not offered. Certificates are checked against the system roots plus the
//!   directory's CA file. Only `danger_accept_invalid_certs` turns the check off, and every
//!   connection made that way logs a warning.
//! - **Every step has a deadline**: TCP connect, StartTLS and the TLS handshake together
//!   (`LdapConnSettings::set_conn_timeout`), then each operation (`Ldap::with_timeout`, and a
//!   `tokio::time::timeout` around the whole call as a backstop). A stopped server gives
//!   `TimedOut`, a dead one `Unreachable`; nothing waits forever.
//! - **No secret in a message, a log field or a `Debug` output.** Secrets go only into the bind
//!   request, the password-modify request or the modify request. What a server says in a step
//!   that sends or reads a secret (binds, password changes, restores, hash reads) is never
//!   shown: the message gives the step and the result code in rotor's words, and known
//!   ppolicy refusals by name. Other steps' diagnostics are shown escaped and cut short.
//! - **A misbehaving server fails its own directory, nothing more.** Entries are read by
//!   rotor (`entry_of`), not by `ldap3`'s `SearchEntry::construct`, which panics on a DN that
//!   is not UTF-8; any other panic inside `ldap3` is caught at each public call (`contained`)
//!   and becomes a `Protocol` error naming the directory. Every search is capped
//!   ([`SearchLimits`]: entries and bytes), with the cap and the fix in the message.
//! - **Never a cleartext `userPassword` written by rotor.** The RFC 3062 password-modify
//!   operation lets the server hash; where the server lacks it, rotor hashes (`{CRYPT}` SHA-512)
//!   before the modify.
//!
//! Best effort only: `ldap3` copies the password into its BER buffers and `SearchEntry` maps,
//! which are not zeroized.
//!
//! This module must never: send a bind before TLS is up, write a cleartext `userPassword`,
//! retry a write after the connection was lost (the write may have happened), or block
//! without a deadline.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::exop::PasswordModify;
use ldap3::{
    Ldap, LdapConnAsync, LdapConnSettings, LdapError, LdapResult, Mod, ResultEntry, Scope,
    SearchEntry,
};
use rand::{CryptoRng, Rng, RngCore};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, RootCertStore};
use tracing::{debug, info, warn};

use super::{ConnectorError, FaultClass};
use crate::credential::HostName;
use crate::secret::Secret;

/// Entries per page of a paged search (RFC 2696). Below OpenLDAP's default size limit (500), so
/// one page never trips it.
const PAGE_SIZE: i32 = 400;
/// Root DSE object identifier of the RFC 3062 password-modify extended operation.
const PASSWORD_MODIFY_OID: &str = "1.3.6.1.4.1.4203.1.11.1";
/// Request control of the (draft) LDAP password policy: asks OpenLDAP's ppolicy overlay to say
/// why it refused a change, which classifies a refusal better than the diagnostic text.
const PPOLICY_CONTROL_OID: &str = "1.3.6.1.4.1.42.2.27.8.5.1";
/// SHA-crypt rounds for hashes rotor makes itself: glibc's default, what `crypt(3)` and slapd's
/// `{CRYPT}` scheme verify, and cheap enough that a directory of thousands of accounts can
/// verify binds quickly. Raise it only together with the bind benchmark.
const SHA_CRYPT_ROUNDS: usize = 5000;

/// A directory as the inventory describes it. Plain data; [`DirectoryTarget::prepare`] checks it.
#[derive(Debug, Clone)]
pub struct DirectorySpec {
    /// The directory's inventory name (used in messages and `DIRECTORY/UID` addresses).
    pub name: HostName,
    /// `ldap://host[:port]` (StartTLS is always used) or `ldaps://host[:port]`.
    pub url: String,
    /// PEM file of CA certificates trusted in addition to the system roots.
    pub ca_file: Option<PathBuf>,
    /// Turns certificate verification off. Anyone on the path can then read every password
    /// rotor sends; each connection made so logs a warning.
    pub danger_accept_invalid_certs: bool,
    /// The DN rotor binds as (its secret is in the vault).
    pub bind_dn: String,
    /// Deadline of each step: connect (TCP, StartTLS, TLS handshake), bind, one operation.
    pub timeout: Duration,
    /// Caps on what one search may return.
    pub limits: SearchLimits,
}

/// Caps on one search's answer, so that a hostile or broken directory cannot make rotor hold
/// unbounded memory: entries, and bytes of DNs, attribute names and values together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchLimits {
    pub max_entries: usize,
    pub max_bytes: usize,
}

impl SearchLimits {
    /// Far above any directory rotor serves (thousands of service accounts, a few hundred
    /// bytes each), far below what would hurt the machine.
    pub const DEFAULT: SearchLimits = SearchLimits {
        max_entries: 100_000,
        max_bytes: 64 * 1024 * 1024,
    };
}

/// A directory ready to be connected to: URL checked, TLS trust loaded. Cheap to clone.
#[derive(Clone)]
pub struct DirectoryTarget {
    inner: Arc<TargetInner>,
}

struct TargetInner {
    name: HostName,
    url: String,
    tls: Arc<ClientConfig>,
    danger_accept_invalid_certs: bool,
    bind_dn: String,
    timeout: Duration,
    limits: SearchLimits,
}

impl fmt::Debug for DirectoryTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectoryTarget")
            .field("name", &self.inner.name)
            .field("url", &self.inner.url)
            .field(
                "danger_accept_invalid_certs",
                &self.inner.danger_accept_invalid_certs,
            )
            .field("bind_dn", &self.inner.bind_dn)
            .field("timeout", &self.inner.timeout)
            .finish()
    }
}

/// The system's trusted roots, read once per process (reading `/etc/ssl/certs` costs
/// milliseconds, and every verification bind needs the trust store).
static SYSTEM_ROOTS: LazyLock<Vec<CertificateDer<'static>>> = LazyLock::new(|| {
    let loaded = rustls_native_certs::load_native_certs();
    for err in &loaded.errors {
        warn!(error = %err, "could not read some system CA certificates");
    }
    loaded.certs
});

impl DirectoryTarget {
    /// Checks the URL scheme and loads the TLS trust (system roots plus `ca_file`).
    pub fn prepare(spec: &DirectorySpec) -> Result<DirectoryTarget, ConnectorError> {
        let name = &spec.name;
        let url = spec.url.trim();
        let scheme_ok = url.starts_with("ldap://") || url.starts_with("ldaps://");
        if !scheme_ok {
            return Err(ConnectorError::new(
                FaultClass::Protocol,
                format!(
                    "{name}: url `{url}` is not supported; use ldap://HOST (rotor always starts \
                     TLS on it) or ldaps://HOST"
                ),
            ));
        }
        let tls = tls_config(spec)?;
        Ok(DirectoryTarget {
            inner: Arc::new(TargetInner {
                name: name.clone(),
                url: url.to_owned(),
                tls,
                danger_accept_invalid_certs: spec.danger_accept_invalid_certs,
                bind_dn: spec.bind_dn.clone(),
                timeout: spec.timeout,
                limits: spec.limits,
            }),
        })
    }

    pub fn name(&self) -> &HostName {
        &self.inner.name
    }

    pub fn url(&self) -> &str {
        &self.inner.url
    }

    pub fn bind_dn(&self) -> &str {
        &self.inner.bind_dn
    }

    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }
}

fn tls_config(spec: &DirectorySpec) -> Result<Arc<ClientConfig>, ConnectorError> {
    let name = &spec.name;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| {
            ConnectorError::new(
                FaultClass::Protocol,
                format!("{name}: cannot set up TLS: {e}"),
            )
        })?;
    if spec.danger_accept_invalid_certs {
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth();
        return Ok(Arc::new(config));
    }
    let mut roots = RootCertStore::empty();
    // Unparsable system certificates are skipped, as every TLS client does.
    let _ = roots.add_parsable_certificates(SYSTEM_ROOTS.iter().cloned());
    if let Some(path) = &spec.ca_file {
        let shown = path.display();
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                ConnectorError::new(
                    FaultClass::TlsInvalid,
                    format!(
                        "{name}: cannot read the CA file {shown}: {e}; point ca_file at a PEM \
                         file holding the certificate of the CA that signed the directory's \
                         certificate"
                    ),
                )
            })?;
        let (n_added, n_bad) = roots.add_parsable_certificates(certs);
        if n_added == 0 {
            return Err(ConnectorError::new(
                FaultClass::TlsInvalid,
                format!(
                    "{name}: the CA file {shown} holds no usable certificate ({n_bad} could not \
                     be parsed); it must hold PEM `BEGIN CERTIFICATE` blocks"
                ),
            ));
        }
    }
    Ok(Arc::new(
        builder.with_root_certificates(roots).with_no_client_auth(),
    ))
}

/// The verifier behind `danger_accept_invalid_certs`: accepts any certificate, but still checks
/// that the handshake signatures are made with the presented key (so the session is at least
/// bound to *some* key).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// How far a search reaches below its base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchScope {
    Base,
    OneLevel,
    Subtree,
}

impl SearchScope {
    fn to_ldap3(self) -> Scope {
        match self {
            SearchScope::Base => Scope::Base,
            SearchScope::OneLevel => Scope::OneLevel,
            SearchScope::Subtree => Scope::Subtree,
        }
    }
}

/// One account found by a search: its DN (what rotor changes) and its `uid` (its name in
/// `DIRECTORY/UID` addresses).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DirectoryAccount {
    pub dn: String,
    pub uid: String,
}

/// How the directory takes a new password; learned once from the root DSE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PasswordMethod {
    /// RFC 3062 password-modify extended operation: the server hashes with its own scheme.
    PasswordModify,
    /// Modify-replace of `userPassword` with a `{CRYPT}` SHA-512 hash made by rotor.
    ReplaceHashed,
}

/// The step a result code is classified for: the same code means different things in a bind
/// as rotor and in a bind that proves an account's password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    StartTls,
    AdminBind,
    VerifyBind,
    Search,
    ReadHash,
    SetPassword,
    Restore,
}

impl Step {
    /// Steps that send a secret (a bind, a new password, a saved hash) or read one (the
    /// stored hash): what the server says in them is never shown, since it may echo the
    /// secret in any form; rotor says what failed in its own words instead.
    fn handles_secret(self) -> bool {
        matches!(
            self,
            Step::AdminBind | Step::VerifyBind | Step::ReadHash | Step::SetPassword | Step::Restore
        )
    }

    fn describe(self) -> &'static str {
        match self {
            Step::StartTls => "connecting (TCP, then StartTLS or LDAPS)",
            Step::AdminBind => "binding as rotor",
            Step::VerifyBind => "binding as the account",
            Step::Search => "searching",
            Step::ReadHash => "reading userPassword",
            Step::SetPassword => "setting the password",
            Step::Restore => "restoring the saved password hash",
        }
    }
}

/// rotor's admin connection to one directory: bound as `bind_dn`, cheap to clone (clones share
/// the connection, and `ldap3` multiplexes concurrent operations on it). When the connection is
/// found closed, the next operation reconnects and binds again; reads that fail because the
/// connection was lost are retried once, writes never (the write may have reached the server).
#[derive(Clone)]
pub struct LdapAdmin {
    shared: Arc<AdminShared>,
}

struct AdminShared {
    target: DirectoryTarget,
    bind_secret: Secret,
    /// The live handle. Locked only to clone it or to replace it after a loss, so reconnects
    /// are serialized and operations are not.
    conn: tokio::sync::Mutex<Ldap>,
    method: OnceLock<PasswordMethod>,
    /// Salts of the `{CRYPT}` hashes rotor computes.
    entropy: Arc<dyn crate::clock::Entropy>,
}

impl fmt::Debug for LdapAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapAdmin")
            .field("directory", &self.shared.target.inner.name)
            .field("url", &self.shared.target.inner.url)
            .field("bind_dn", &self.shared.target.inner.bind_dn)
            .finish_non_exhaustive()
    }
}

impl LdapAdmin {
    /// Connects (TLS verified) and binds as the target's `bind_dn`. A rejected bind secret is
    /// `ConnectAuthRejected`.
    pub async fn connect(
        target: &DirectoryTarget,
        bind_secret: &Secret,
    ) -> Result<LdapAdmin, ConnectorError> {
        LdapAdmin::connect_with(target, bind_secret, Arc::new(crate::clock::OsEntropy)).await
    }

    /// [`LdapAdmin::connect`], drawing hash salts from `entropy`.
    pub async fn connect_with(
        target: &DirectoryTarget,
        bind_secret: &Secret,
        entropy: Arc<dyn crate::clock::Entropy>,
    ) -> Result<LdapAdmin, ConnectorError> {
        let ldap = contained(
            target,
            Step::AdminBind,
            target.bind_dn(),
            open_and_bind(target, target.bind_dn(), bind_secret, Step::AdminBind),
        )
        .await?;
        debug!(directory = %target.name(), "admin connection bound");
        Ok(LdapAdmin {
            shared: Arc::new(AdminShared {
                target: target.clone(),
                bind_secret: bind_secret.clone(),
                conn: tokio::sync::Mutex::new(ldap),
                method: OnceLock::new(),
                entropy,
            }),
        })
    }

    /// Finds accounts: entries under `base` matching `filter`, with their `uid`. Uses paged
    /// results, so a search larger than the server's per-request size limit still returns every
    /// entry, up to the target's [`SearchLimits`]. An entry without `uid` is an error naming it
    /// (narrow the filter, e.g. `(uid=*)`).
    pub async fn search(
        &self,
        base: &str,
        filter: &str,
        scope: SearchScope,
    ) -> Result<Vec<DirectoryAccount>, ConnectorError> {
        self.contained(
            Step::Search,
            base,
            self.search_unguarded(base, filter, scope),
        )
        .await
    }

    async fn search_unguarded(
        &self,
        base: &str,
        filter: &str,
        scope: SearchScope,
    ) -> Result<Vec<DirectoryAccount>, ConnectorError> {
        let limits = self.shared.target.inner.limits;
        let entries = self
            .read_with_retry(Step::Search, base, |mut ldap, timeout| async move {
                let search = Search {
                    base,
                    scope: scope.to_ldap3(),
                    filter,
                    attrs: vec!["uid"],
                    paged: true,
                };
                capped_search(&mut ldap, timeout, search, limits).await
            })
            .await?
            .map_err(|why| {
                self.error(
                    FaultClass::Protocol,
                    format!("search {filter} under {base} {why}"),
                )
            })?;
        let mut accounts = Vec::with_capacity(entries.len());
        for entry in entries {
            let Some(uid) = entry.attrs.get("uid").and_then(|v| v.first()) else {
                return Err(self.error(
                    FaultClass::Protocol,
                    format!(
                        "search {filter} under {base} matched {}, which has no uid; narrow the \
                         filter (e.g. add (uid=*)) so that it matches only accounts",
                        entry.dn
                    ),
                ));
            };
            accounts.push(DirectoryAccount {
                uid: uid.clone(),
                dn: entry.dn,
            });
        }
        accounts.sort();
        Ok(accounts)
    }

    /// Reads `userPassword` as stored (a hash such as `{SSHA}...`, the restore point).
    /// `AccountMissing` when the entry is gone; `Protocol` when it holds no value or several.
    pub async fn read_password_hash(&self, dn: &str) -> Result<Secret, ConnectorError> {
        Ok(self.read_restore_point(dn).await?.hash)
    }

    /// Whether rotor's bind account may read `pwdAccountLockedTime` on `dn`, which the lock
    /// check of [`LdapAdmin::read_restore_point`] relies on (an attribute the ACLs hide
    /// simply looks absent). An LDAP compare tells: compareTrue/False or noSuchAttribute
    /// (readable), undefinedAttributeType (no password policy schema, so no locks),
    /// insufficientAccess (hidden).
    pub async fn may_read_lock(&self, dn: &str) -> Result<bool, ConnectorError> {
        Ok(self.compare_lock(dn).await? != LockSeen::Hidden)
    }

    /// What an LDAP compare of `pwdAccountLockedTime` on `dn` shows, for an entry whose read
    /// showed no lock: the attribute is really absent, present (a lock that the ACLs let rotor
    /// compare but not read), or hidden altogether. Per entry, because ACLs may differ
    /// between the entries of one search.
    pub async fn compare_lock(&self, dn: &str) -> Result<LockSeen, ConnectorError> {
        self.contained(Step::ReadHash, dn, self.compare_lock_unguarded(dn))
            .await
    }

    async fn compare_lock_unguarded(&self, dn: &str) -> Result<LockSeen, ConnectorError> {
        let result = self
            .read_with_retry(Step::ReadHash, dn, |mut ldap, timeout| async move {
                Ok(ldap
                    .with_timeout(timeout)
                    .compare(dn, LOCKED_TIME, "000001010000Z")
                    .await?
                    .0)
            })
            .await?;
        match result.rc {
            // compareFalse / compareTrue: the attribute is there.
            5 | 6 => Ok(LockSeen::Present),
            // noSuchAttribute; undefinedAttributeType (no ppolicy schema: no locks at all).
            16 | 17 => Ok(LockSeen::Absent),
            50 => Ok(LockSeen::Hidden),
            _ => Err(self.classify(LdapError::LdapResult { result }, Step::ReadHash, dn, &[])),
        }
    }

    /// What rotor reads before it changes an account's password: the stored `userPassword`
    /// (as [`LdapAdmin::read_password_hash`]) and the account's ppolicy lock, if any.
    pub async fn read_restore_point(&self, dn: &str) -> Result<RestorePoint, ConnectorError> {
        self.contained(Step::ReadHash, dn, self.read_restore_point_unguarded(dn))
            .await
    }

    async fn read_restore_point_unguarded(&self, dn: &str) -> Result<RestorePoint, ConnectorError> {
        let limits = self.shared.target.inner.limits;
        let entries: Vec<SearchEntry> = self
            .read_with_retry(Step::ReadHash, dn, |mut ldap, timeout| async move {
                let search = Search {
                    base: dn,
                    scope: Scope::Base,
                    filter: "(objectClass=*)",
                    attrs: vec!["userPassword", LOCKED_TIME, CHANGED_TIME],
                    paged: false,
                };
                capped_search(&mut ldap, timeout, search, limits).await
            })
            .await?
            .map_err(|why| self.error(FaultClass::Protocol, format!("reading {dn} {why}")))?;
        let Some(mut entry) = entries.into_iter().next() else {
            return Err(self.error(
                FaultClass::AccountMissing,
                format!("{dn} was not returned by a base search; check that it still exists"),
            ));
        };
        let locked_since = entry
            .attrs
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(LOCKED_TIME))
            .and_then(|(_, values)| values.first().cloned());
        let changed = entry
            .attrs
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(CHANGED_TIME))
            .and_then(|(_, values)| values.first().cloned());
        let values = entry.attrs.remove("userPassword").unwrap_or_default();
        let n_binary = entry.bin_attrs.get("userPassword").map_or(0, Vec::len);
        match (values.len(), n_binary) {
            (1, 0) => Ok(RestorePoint {
                hash: Secret::new(values.into_iter().next().unwrap_or_default()),
                locked_since,
                changed,
            }),
            (0, 0) => Err(self.error(
                FaultClass::Protocol,
                format!(
                    "{dn} has no userPassword that rotor may read; grant rotor's bind account \
                     read access to userPassword (and check that the account has a password)"
                ),
            )),
            (n_text, n_bin) => Err(self.error(
                FaultClass::Protocol,
                format!(
                    "{dn} has {} userPassword values{}; rotor restores exactly one, so leave one \
                     value before rotating this account",
                    n_text + n_bin,
                    if n_bin > 0 { " (some not UTF-8)" } else { "" }
                ),
            )),
        }
    }

    /// Sets `dn`'s password to `new`: RFC 3062 password-modify where the server offers it (the
    /// server hashes), else a modify-replace of `userPassword` with a `{CRYPT}` SHA-512 hash
    /// rotor makes. `Refused` with the server's diagnostic when the server says no;
    /// `AccountMissing` when the entry is gone.
    pub async fn set_password(&self, dn: &str, new: &Secret) -> Result<(), ConnectorError> {
        self.contained(Step::SetPassword, dn, self.set_password_unguarded(dn, new))
            .await
    }

    async fn set_password_unguarded(&self, dn: &str, new: &Secret) -> Result<(), ConnectorError> {
        let method = self.password_method().await?;
        let mut ldap = self.handle().await?;
        let timeout = self.shared.target.timeout();
        let sent = match method {
            PasswordMethod::PasswordModify => {
                let exop = PasswordModify {
                    user_id: Some(dn),
                    old_pass: None,
                    new_pass: Some(new.expose()),
                };
                bounded(timeout, async {
                    ldap.with_timeout(timeout)
                        .with_controls(ppolicy_request())
                        .extended(exop)
                        .await?
                        .success()
                        .map(|_| ())
                })
                .await
            }
            PasswordMethod::ReplaceHashed => {
                let hashed = crypt_sha512(new, &mut self.shared.entropy.rng());
                bounded(timeout, replace_password(&mut ldap, timeout, dn, &hashed)).await
            }
        };
        sent.map_err(|e| self.classify(e, Step::SetPassword, dn, &[new]))
    }

    /// Puts a saved `userPassword` value back (modify-replace), then reads it back and compares.
    /// When the server's password policy refuses (ppolicy `pwdInHistory`, minimum age, quality),
    /// the class is `RollbackRefusedByPolicy`: the new password is still in place.
    pub async fn restore_password_hash(
        &self,
        dn: &str,
        saved: &Secret,
    ) -> Result<(), ConnectorError> {
        self.contained(Step::Restore, dn, self.restore_unguarded(dn, saved))
            .await
    }

    async fn restore_unguarded(&self, dn: &str, saved: &Secret) -> Result<(), ConnectorError> {
        let mut ldap = self.handle().await?;
        let timeout = self.shared.target.timeout();
        bounded(timeout, replace_password(&mut ldap, timeout, dn, saved))
            .await
            .map_err(|e| self.classify(e, Step::Restore, dn, &[saved]))?;
        let now = self.read_restore_point_unguarded(dn).await?.hash;
        if now.ct_eq(saved) {
            Ok(())
        } else {
            Err(self.error(
                FaultClass::Refused,
                format!(
                    "{dn}: the server accepted the restore but stores a different userPassword \
                     value (an overlay such as ppolicy with olcPPolicyHashCleartext may rewrite \
                     it); check the account by hand"
                ),
            ))
        }
    }

    /// Test hook: pretend the server lacks RFC 3062, to exercise the hashed-replace path.
    #[cfg(all(test, feature = "lab"))]
    fn force_method(&self, method: PasswordMethod) {
        self.shared
            .method
            .set(method)
            .expect("force_method is called before any set_password");
    }

    /// Which way passwords are set here, asked once from the root DSE's `supportedExtension`.
    async fn password_method(&self) -> Result<PasswordMethod, ConnectorError> {
        if let Some(method) = self.shared.method.get() {
            return Ok(*method);
        }
        let limits = self.shared.target.inner.limits;
        let entries: Vec<SearchEntry> = self
            .read_with_retry(
                Step::Search,
                "the root DSE",
                |mut ldap, timeout| async move {
                    let search = Search {
                        base: "",
                        scope: Scope::Base,
                        filter: "(objectClass=*)",
                        attrs: vec!["supportedExtension"],
                        paged: false,
                    };
                    capped_search(&mut ldap, timeout, search, limits).await
                },
            )
            .await?
            .map_err(|why| {
                self.error(FaultClass::Protocol, format!("reading the root DSE {why}"))
            })?;
        let supported = entries.iter().any(|e| {
            e.attrs
                .get("supportedExtension")
                .is_some_and(|oids| oids.iter().any(|oid| oid == PASSWORD_MODIFY_OID))
        });
        let method = if supported {
            PasswordMethod::PasswordModify
        } else {
            info!(
                directory = %self.shared.target.name(),
                "server lacks the password-modify operation; rotor hashes userPassword itself"
            );
            PasswordMethod::ReplaceHashed
        };
        Ok(*self.shared.method.get_or_init(|| method))
    }

    /// A handle on the live connection, reconnecting (and binding) first if it was lost.
    async fn handle(&self) -> Result<Ldap, ConnectorError> {
        let shared = &self.shared;
        let mut conn = shared.conn.lock().await;
        if conn.is_closed() {
            let target = &shared.target;
            info!(directory = %target.name(), "admin connection lost, reconnecting");
            *conn = open_and_bind(
                target,
                target.bind_dn(),
                &shared.bind_secret,
                Step::AdminBind,
            )
            .await?;
        }
        Ok(conn.clone())
    }

    /// Runs a read; if the connection was lost under it, reconnects and tries once more.
    async fn read_with_retry<T, F, Fut>(
        &self,
        step: Step,
        what: &str,
        op: F,
    ) -> Result<T, ConnectorError>
    where
        F: Fn(Ldap, Duration) -> Fut,
        Fut: Future<Output = Result<T, LdapError>>,
    {
        let timeout = self.shared.target.timeout();
        let mut retried = false;
        loop {
            let ldap = self.handle().await?;
            match bounded(timeout, op(ldap, timeout)).await {
                Ok(value) => return Ok(value),
                Err(e) if !retried && is_connection_lost(&e) => {
                    debug!(error = %e, "connection lost during a read, retrying once");
                    retried = true;
                }
                Err(e) => return Err(self.classify(e, step, what, &[])),
            }
        }
    }

    fn classify(
        &self,
        e: LdapError,
        step: Step,
        what: &str,
        secrets: &[&Secret],
    ) -> ConnectorError {
        classify_error(&self.shared.target, e, step, what, secrets)
    }

    async fn contained<T>(
        &self,
        step: Step,
        what: &str,
        op: impl Future<Output = Result<T, ConnectorError>>,
    ) -> Result<T, ConnectorError> {
        contained(&self.shared.target, step, what, op).await
    }

    fn error(&self, class: FaultClass, detail: String) -> ConnectorError {
        let target = &self.shared.target;
        ConnectorError::new(
            class,
            format!("{} ({}): {detail}", target.name(), target.url()),
        )
    }
}

/// Proves `secret` for `dn` with a fresh connection and a simple bind as the account. Ok when
/// the bind succeeds; `VerifyFailed` when the server answered and rejected it (invalid
/// credentials); another class when the bind could not be tried.
pub async fn check_bind(
    target: &DirectoryTarget,
    dn: &str,
    secret: &Secret,
) -> Result<(), ConnectorError> {
    let mut ldap = contained(
        target,
        Step::VerifyBind,
        dn,
        open_and_bind(target, dn, secret, Step::VerifyBind),
    )
    .await?;
    // Best effort: unbind only tells the server to drop the connection; dropping the handle
    // closes it as well.
    let _ = tokio::time::timeout(target.timeout(), ldap.unbind()).await;
    Ok(())
}

/// TCP, then StartTLS or LDAPS, the certificate verified (unless the inventory says
/// `danger_accept_invalid_certs`); the connection driven in the background. `dn` names the
/// connection in errors.
async fn open_tls(target: &DirectoryTarget, dn: &str) -> Result<Ldap, ConnectorError> {
    let inner = &target.inner;
    let settings = LdapConnSettings::new()
        .set_conn_timeout(inner.timeout)
        .set_config(inner.tls.clone())
        .set_starttls(true)
        .set_no_tls_verify(inner.danger_accept_invalid_certs);
    // The outer timeout is a backstop for name resolution or anything else not covered by the
    // connect timeout; the same deadline.
    let (conn, ldap) = bounded(
        inner.timeout,
        LdapConnAsync::with_settings(settings, &inner.url),
    )
    .await
    .map_err(|e| classify_error(target, e, Step::StartTls, dn, &[]))?;
    ldap3::drive!(conn);
    Ok(ldap)
}

/// Connects with verified TLS and binds as `dn`.
async fn open_and_bind(
    target: &DirectoryTarget,
    dn: &str,
    secret: &Secret,
    step: Step,
) -> Result<Ldap, ConnectorError> {
    let inner = &target.inner;
    if inner.danger_accept_invalid_certs {
        warn!(
            directory = %inner.name,
            url = %inner.url,
            "TLS certificate verification is OFF (danger_accept_invalid_certs): anyone on the \
             network path can read the passwords rotor sends"
        );
    }
    let mut ldap = open_tls(target, dn).await?;
    bounded(inner.timeout, async {
        ldap.with_timeout(inner.timeout)
            .simple_bind(dn, secret.expose())
            .await?
            .success()
    })
    .await
    .map_err(|e| classify_error(target, e, step, dn, &[secret]))?;
    Ok(ldap)
}

/// Connects to the directory (TCP, then StartTLS or LDAPS, the certificate verified as
/// every connection verifies it) and disconnects without binding: no secret is sent. `rotor
/// inventory check --connect` asks it before the bind, so an untrusted certificate is said
/// as such even where rotor's bind secret is missing.
pub async fn check_tls(target: &DirectoryTarget) -> Result<(), ConnectorError> {
    let inner = &target.inner;
    contained(target, Step::StartTls, target.bind_dn(), async {
        let mut ldap = open_tls(target, target.bind_dn()).await?;
        let _ = tokio::time::timeout(inner.timeout, ldap.unbind()).await;
        Ok(())
    })
    .await
}

/// How many certificates a `ca_file:` holds that rotor would trust, read as a connection
/// reads it (PEM `BEGIN CERTIFICATE` blocks, each parsed as X.509). A message with the fix
/// when none.
pub fn ca_file_certificates(path: &std::path::Path) -> Result<usize, String> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| match e {
            rustls::pki_types::pem::Error::Io(io) if io.kind() == io::ErrorKind::NotFound => {
                format!("the CA file {shown}: file not found")
            }
            e => format!("cannot read the CA file {shown}: {e}"),
        })?;
    let mut roots = RootCertStore::empty();
    let (n_added, n_bad) = roots.add_parsable_certificates(certs);
    if n_added == 0 {
        return Err(format!(
            "the CA file {shown} holds no usable certificate ({n_bad} could not be parsed)"
        ));
    }
    Ok(n_added)
}

/// `tokio::time::timeout` with `ldap3`'s error type; the backstop deadline of one step.
async fn bounded<T>(
    limit: Duration,
    fut: impl Future<Output = Result<T, LdapError>>,
) -> Result<T, LdapError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => result,
        Err(elapsed) => Err(LdapError::Timeout { elapsed }),
    }
}

async fn replace_password(
    ldap: &mut Ldap,
    timeout: Duration,
    dn: &str,
    value: &Secret,
) -> Result<(), LdapError> {
    ldap.with_timeout(timeout)
        .with_controls(ppolicy_request())
        .modify(
            dn,
            vec![Mod::Replace(
                "userPassword",
                HashSet::from([value.expose()]),
            )],
        )
        .await?
        .success()
        .map(|_| ())
}

/// The ppolicy attribute that marks an account locked (`000001010000Z`: by an administrator,
/// until one unlocks it; else the time a lockout began).
const LOCKED_TIME: &str = "pwdAccountLockedTime";
/// ppolicy's operational attribute: when the password last changed (asked for by name).
const CHANGED_TIME: &str = "pwdChangedTime";

/// An account's state before rotor changes its password.
/// What a compare of `pwdAccountLockedTime` shows (see [`LdapAdmin::compare_lock`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockSeen {
    Absent,
    Present,
    Hidden,
}

pub struct RestorePoint {
    /// `userPassword` as stored: what a rollback writes back.
    pub hash: Secret,
    /// `pwdAccountLockedTime`, when the account is locked. A password change by an
    /// administrator clears the lock (OpenLDAP ppolicy, observed on slapd 2.5.13), so
    /// rotating a locked account would unlock it.
    pub locked_since: Option<String>,
    /// `pwdChangedTime` (generalized time, e.g. `20261201000000Z`) where the server keeps it
    /// (ppolicy): when the password last changed, for `rotor scan`'s ages.
    pub changed: Option<String>,
}

fn ppolicy_request() -> ldap3::controls::RawControl {
    ldap3::controls::RawControl {
        ctype: PPOLICY_CONTROL_OID.to_owned(),
        crit: false,
        val: None,
    }
}

/// One search as rotor asks it.
struct Search<'a> {
    base: &'a str,
    scope: Scope,
    filter: &'a str,
    attrs: Vec<&'a str>,
    /// With the paged-results control (RFC 2696), for searches that may pass the server's
    /// size limit.
    paged: bool,
}

/// Runs a search and collects its entries within `limits`. The outer error is the server's
/// or the connection's; the inner one says, for people, why rotor refused the answer
/// (over a cap, or a malformed entry), after a verb phrase the caller starts
/// ("search F under B ...").
async fn capped_search(
    ldap: &mut Ldap,
    timeout: Duration,
    search: Search<'_>,
    limits: SearchLimits,
) -> Result<Result<Vec<SearchEntry>, String>, LdapError> {
    let mut adapters: Vec<Box<dyn Adapter<_, _>>> = vec![Box::new(EntriesOnly::new())];
    if search.paged {
        adapters.push(Box::new(PagedResults::new(PAGE_SIZE)));
    }
    // ldap3 applies this timeout to each message of the search (every entry and every page),
    // and the caller bounds the whole search by the same deadline.
    let mut stream = ldap
        .with_timeout(timeout)
        .streaming_search_with(
            adapters,
            search.base,
            search.scope,
            search.filter,
            search.attrs,
        )
        .await?;
    let mut entries = Vec::new();
    let mut n_bytes = 0usize;
    // On a refusal the stream is dropped unfinished: ldap3 discards the rest of the answer.
    while let Some(raw) = stream.next().await? {
        if entries.len() >= limits.max_entries {
            return Ok(Err(format!(
                "returned more than {} entries, rotor's cap for one search; narrow the \
                 search's base or filter, or split it into several searches",
                limits.max_entries
            )));
        }
        let (entry, size) = match entry_of(raw) {
            Ok(read) => read,
            Err(why) => {
                return Ok(Err(format!(
                    "returned an entry that {why}; the directory is broken or not the server \
                     it should be: check it (and anything between rotor and it) before running \
                     rotor against it again"
                )));
            }
        };
        n_bytes = n_bytes.saturating_add(size);
        if n_bytes > limits.max_bytes {
            return Ok(Err(format!(
                "returned more than {} bytes of entries (DNs, attribute names and values), \
                 rotor's cap for one search; narrow the search's base or filter, or split it \
                 into several searches",
                limits.max_bytes
            )));
        }
        entries.push(entry);
    }
    stream.finish().await.success()?;
    Ok(Ok(entries))
}

/// An entry of a search answer and its size in bytes. `ldap3`'s `SearchEntry::construct`
/// panics on a malformed entry (a DN that is not UTF-8, say), which any server can send; this
/// reads the same structure (RFC 4511 4.5.2) and says what is wrong instead, after "an entry
/// that".
fn entry_of(raw: ResultEntry) -> Result<(SearchEntry, usize), String> {
    use ldap3::asn1::{PL, StructureTag, TagClass};
    let malformed = || "is not a well-formed SearchResultEntry (RFC 4511 4.5.2)".to_owned();
    let StructureTag {
        class: TagClass::Application,
        id: 4,
        payload: PL::C(parts),
    } = raw.0
    else {
        return Err(malformed());
    };
    let mut parts = parts.into_iter();
    let (
        Some(StructureTag {
            payload: PL::P(dn), ..
        }),
        Some(StructureTag {
            payload: PL::C(attrs),
            ..
        }),
        None,
    ) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let mut size = dn.len();
    let dn = String::from_utf8(dn).map_err(|e| {
        format!(
            "has a DN that is not UTF-8 (`{}`), which LDAP does not allow (RFC 4511 4.1.3)",
            shown(&String::from_utf8_lossy(e.as_bytes()))
        )
    })?;
    let mut entry = SearchEntry {
        dn,
        attrs: HashMap::new(),
        bin_attrs: HashMap::new(),
    };
    for attr in attrs {
        let StructureTag {
            payload: PL::C(pair),
            ..
        } = attr
        else {
            return Err(malformed());
        };
        let mut pair = pair.into_iter();
        let (
            Some(StructureTag {
                payload: PL::P(name),
                ..
            }),
            Some(StructureTag {
                payload: PL::C(values),
                ..
            }),
            None,
        ) = (pair.next(), pair.next(), pair.next())
        else {
            return Err(malformed());
        };
        size = size.saturating_add(name.len());
        let Ok(name) = String::from_utf8(name) else {
            return Err(format!(
                "({}) has an attribute name that is not UTF-8",
                shown(&entry.dn)
            ));
        };
        let mut raw_values = Vec::with_capacity(values.len());
        for value in values {
            let StructureTag {
                payload: PL::P(value),
                ..
            } = value
            else {
                return Err(malformed());
            };
            size = size.saturating_add(value.len());
            raw_values.push(value);
        }
        // As ldap3 does: an attribute with any value that is not UTF-8 is binary as a whole.
        if raw_values.iter().all(|v| std::str::from_utf8(v).is_ok()) {
            let texts = raw_values
                .into_iter()
                .map(|v| String::from_utf8_lossy(&v).into_owned());
            entry.attrs.entry(name).or_default().extend(texts);
        } else {
            entry.bin_attrs.entry(name).or_default().extend(raw_values);
        }
    }
    Ok((entry, size))
}

/// Text a server sent, fit for a message: control characters escaped, at most 200 chars.
fn shown(text: &str) -> String {
    let cut: String = text.chars().take(200).collect();
    let more = if cut.len() < text.len() { "..." } else { "" };
    format!("{}{more}", cut.escape_debug())
}

/// Runs one connector call so that a panic inside `ldap3` (it panics on some malformed
/// answers, e.g. a paged-results control that does not decode) fails this directory's call
/// with a message, instead of unwinding through the engine and ending the whole run.
async fn contained<T>(
    target: &DirectoryTarget,
    step: Step,
    what: &str,
    op: impl Future<Output = Result<T, ConnectorError>>,
) -> Result<T, ConnectorError> {
    match CatchUnwind(Box::pin(op)).await {
        Ok(result) => result,
        Err(payload) => {
            // Only the label ldap3 panicked with (`expect("dn")` panics with "dn: <error>"):
            // the rest may quote the server's bytes.
            let said = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let label = shown(said.split(':').next().unwrap_or_default().trim());
            warn!(directory = %target.name(), step = step.describe(), "ldap3 panicked on the directory's answer");
            Err(ConnectorError::new(
                FaultClass::Protocol,
                format!(
                    "{} ({}): {} for {what}: the directory sent an answer the LDAP client cannot \
                     decode (ldap3 gave up at `{label}`); the directory is broken or not the \
                     server it should be: check it (and anything between rotor and it) before \
                     running rotor against it again",
                    target.name(),
                    target.url(),
                    step.describe()
                ),
            ))
        }
    }
}

/// A future that turns a panic while it is polled into an `Err` with the panic's payload.
struct CatchUnwind<F>(std::pin::Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn std::any::Any + Send>>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let inner = self.get_mut().0.as_mut();
        // Unwind safety: after a panic the inner future is never polled again, and what it
        // shared (the admin connection) is at worst closed, which the next call notices.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(std::task::Poll::Ready(value)) => std::task::Poll::Ready(Ok(value)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(payload) => std::task::Poll::Ready(Err(payload)),
        }
    }
}

/// A `{CRYPT}` SHA-512 (`$6$`) hash of `password` with a random 16-character salt, the form
/// slapd's `{CRYPT}` scheme (and `crypt(3)`) verify. The hash is offline-crackable, so it is a
/// [`Secret`] too.
fn crypt_sha512(password: &Secret, rng: &mut (impl RngCore + CryptoRng)) -> Secret {
    const SALT_CHARS: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let salt: String = (0..16)
        .map(|_| char::from(SALT_CHARS[rng.gen_range(0..SALT_CHARS.len())]))
        .collect();
    let params = sha_crypt::Sha512Params::new(SHA_CRYPT_ROUNDS)
        .expect("SHA_CRYPT_ROUNDS is within sha-crypt's allowed range");
    let hash = sha_crypt::sha512_crypt_b64(password.expose().as_bytes(), salt.as_bytes(), &params)
        .expect("a 16-character salt from the crypt alphabet is valid");
    Secret::new(format!("{{CRYPT}}$6${salt}${hash}"))
}

/// True when the error means the connection is gone (so a read may be retried on a new one).
fn is_connection_lost(e: &LdapError) -> bool {
    match e {
        LdapError::OpSend { .. }
        | LdapError::ResultRecv { .. }
        | LdapError::IdScrubSend { .. }
        | LdapError::EndOfStream => true,
        LdapError::Io { source } => matches!(
            source.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}

/// The class of an LDAP result code in a given step (RFC 4511 appendix A).
fn classify_code(rc: u32, step: Step, policy_refusal: bool) -> FaultClass {
    match (rc, step) {
        (49 | 48, Step::VerifyBind) => FaultClass::VerifyFailed,
        (49 | 48, Step::AdminBind) => FaultClass::ConnectAuthRejected,
        (_, Step::StartTls) => FaultClass::TlsInvalid,
        (32, Step::ReadHash | Step::SetPassword | Step::Restore) => FaultClass::AccountMissing,
        (19 | 53, Step::Restore) if policy_refusal => FaultClass::RollbackRefusedByPolicy,
        (19 | 53, _) => FaultClass::Refused,
        (50, _) => FaultClass::Refused,
        (3, _) => FaultClass::TimedOut,
        (51 | 52, _) => FaultClass::Unreachable,
        _ => FaultClass::Protocol,
    }
}

/// True when a refusal comes from a password policy: the ppolicy response control came back,
/// or the diagnostic is one of OpenLDAP ppolicy's (`servers/slapd/overlays/ppolicy.c`).
fn is_policy_refusal(result: &LdapResult) -> bool {
    if result
        .ctrls
        .iter()
        .any(|c| c.1.ctype == PPOLICY_CONTROL_OID)
    {
        return true;
    }
    let text = result.text.to_ascii_lowercase();
    [
        "password is in history",
        "password fails quality",
        "password is too young",
        "password is too short",
        "password is not being changed",
        "must supply old password",
        "password policy",
        "pwdinhistory",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// What to tell an operator about a result code, after the server's own words.
fn advice(rc: u32, class: FaultClass, step: Step) -> &'static str {
    match (rc, class) {
        (_, FaultClass::RollbackRefusedByPolicy) => {
            "the password policy keeps the old password out; the new password stays in place"
        }
        (50, _) => "grant rotor's bind account write access to userPassword",
        (_, FaultClass::ConnectAuthRejected) => {
            "check that rotor's bind secret in the vault is current (rotor enroll) and that \
             bind_dn is right"
        }
        (_, FaultClass::VerifyFailed) => "the password was not accepted for this account",
        (_, FaultClass::AccountMissing) => "the entry no longer exists; update the inventory",
        (_, FaultClass::TlsInvalid) if step == Step::StartTls => {
            "the server would not start TLS; enable TLS on the server or use an ldaps:// url"
        }
        (4, _) => "raise the size limit for rotor's bind account (olcLimits) or enable paging",
        (19 | 53, _) => "the server's password policy or configuration refused the change",
        _ => "see the server's log for details",
    }
}

/// Turns an `ldap3` error into a classified, secret-free [`ConnectorError`].
fn classify_error(
    target: &DirectoryTarget,
    e: LdapError,
    step: Step,
    what: &str,
    secrets: &[&Secret],
) -> ConnectorError {
    let inner = &target.inner;
    let at = format!("{} ({})", inner.name, inner.url);
    let doing = step.describe();
    let (class, detail) = match &e {
        LdapError::LdapResult { result } => {
            let policy = is_policy_refusal(result);
            let class = classify_code(result.rc, step, policy);
            let said = if step.handles_secret() {
                match policy_reason(&result.text) {
                    Some(reason) => format!(" ({reason})"),
                    None if result.text.is_empty() => String::new(),
                    None => {
                        " (its message is not shown because this step handles a secret)".to_owned()
                    }
                }
            } else {
                let said = shown(&scrub(&result.text, secrets));
                if said.is_empty() {
                    String::new()
                } else {
                    format!(": \"{said}\"")
                }
            };
            (
                class,
                format!(
                    "{doing} for {what}: the server answered result {} ({}){said}; {}",
                    result.rc,
                    result_name(result.rc),
                    advice(result.rc, class, step)
                ),
            )
        }
        LdapError::Timeout { .. } => (
            FaultClass::TimedOut,
            format!(
                "{doing} for {what}: no answer within {:?}; check that the server is up and not \
                 overloaded",
                inner.timeout
            ),
        ),
        _ if tls_failure(&e).is_some() => {
            let why = tls_failure(&e).unwrap_or_default();
            (
                FaultClass::TlsInvalid,
                format!("{doing} for {what}: the TLS handshake failed: {why}"),
            )
        }
        LdapError::Io { source } => {
            let class = match source.kind() {
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => FaultClass::TimedOut,
                _ => FaultClass::Unreachable,
            };
            (
                class,
                format!("{doing} for {what}: {source}; check that the server is up and reachable"),
            )
        }
        _ if is_connection_lost(&e) => (
            FaultClass::Unreachable,
            format!(
                "{doing} for {what}: the connection to the directory was lost; check that the \
                 server is up"
            ),
        ),
        LdapError::UrlParsing { .. } | LdapError::UnknownScheme(_) => (
            FaultClass::Protocol,
            format!("the url is not a valid LDAP url ({e}); fix it in the inventory"),
        ),
        LdapError::DNSName { .. } => (
            FaultClass::TlsInvalid,
            format!("the url's host is not a valid TLS server name ({e}); fix it in the inventory"),
        ),
        LdapError::FilterParsing => (
            FaultClass::Protocol,
            format!(
                "{doing} for {what}: the search filter does not parse; fix it in the inventory"
            ),
        ),
        other if step.handles_secret() => (
            FaultClass::Protocol,
            format!(
                "{doing} for {what}: the LDAP exchange failed ({}); the details are not shown because this step handles a secret",
                error_kind(other)
            ),
        ),
        other => (
            FaultClass::Protocol,
            format!(
                "{doing} for {what}: {}",
                shown(&scrub(&other.to_string(), secrets))
            ),
        ),
    };
    ConnectorError::new(class, format!("{at}: {detail}"))
}

/// A sentence about a certificate problem, if `e` is one (rustls errors arrive inside an
/// `io::Error` from tokio-rustls, or directly).
fn tls_failure(e: &LdapError) -> Option<String> {
    let rustls_error = match e {
        LdapError::Rustls { source } => Some(source),
        LdapError::Io { source } => source
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        _ => None,
    }?;
    Some(describe_tls(rustls_error))
}

fn describe_tls(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::NotValidForName)
        | rustls::Error::InvalidCertificate(C::NotValidForNameContext { .. }) => format!(
            "the server's certificate does not match the host in the url ({e}); use the host \
             name or address the certificate was issued for, or reissue the certificate with \
             that name in its subjectAltName"
        ),
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => format!(
            "the server's certificate is not signed by a trusted CA ({e}); set ca_file to the \
             PEM certificate of the CA that signed it"
        ),
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            format!("the server's certificate has expired ({e}); renew it on the server")
        }
        other => format!("{other}; check the server's certificate and ca_file"),
    }
}

/// rotor's own words for a password-policy refusal it recognises in a server's diagnostic
/// (OpenLDAP ppolicy's messages), so that a refusal in a step that handles a secret can be
/// explained without showing the server's text.
fn policy_reason(text: &str) -> Option<&'static str> {
    let text = text.to_ascii_lowercase();
    [
        (
            "password is in history",
            "the password policy keeps old passwords out: it is in the password history (pwdInHistory)",
        ),
        (
            "password fails quality",
            "the password policy's quality check refused it (pwdCheckQuality)",
        ),
        (
            "password is too young",
            "the password policy's minimum age has not passed (pwdMinAge)",
        ),
        (
            "password is too short",
            "the password policy's minimum length refused it (pwdMinLength)",
        ),
        (
            "must supply old password",
            "the password policy wants the old password (pwdSafeModify)",
        ),
    ]
    .into_iter()
    .find(|(needle, _)| text.contains(needle))
    .map(|(_, reason)| reason)
}

/// The name of an `ldap3` error's kind, without any text from the server.
fn error_kind(e: &LdapError) -> &'static str {
    match e {
        LdapError::EndOfStream => "the server closed the connection",
        LdapError::Timeout { .. } => "timed out",
        LdapError::Io { .. } => "an I/O error",
        LdapError::LdapResult { .. } => "an LDAP error result",
        _ => "a protocol error",
    }
}

/// `text` with every occurrence of each secret replaced.
fn scrub(text: &str, secrets: &[&Secret]) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        let s = secret.expose();
        if !s.is_empty() && out.contains(s) {
            out = out.replace(s, "<redacted>");
        }
    }
    out
}

fn result_name(rc: u32) -> &'static str {
    match rc {
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        8 => "strongerAuthRequired",
        10 => "referral",
        11 => "adminLimitExceeded",
        12 => "unavailableCriticalExtension",
        13 => "confidentialityRequired",
        16 => "noSuchAttribute",
        19 => "constraintViolation",
        21 => "invalidAttributeSyntax",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        64 => "namingViolation",
        65 => "objectClassViolation",
        80 => "other",
        _ => "see RFC 4511",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn target() -> DirectoryTarget {
        DirectoryTarget::prepare(&DirectorySpec {
            name: HostName::parse("corp-ldap").unwrap(),
            url: "ldaps://127.0.0.1:1".into(),
            ca_file: None,
            danger_accept_invalid_certs: false,
            bind_dn: "cn=rotor,dc=example".into(),
            timeout: Duration::from_secs(3),
            limits: SearchLimits::DEFAULT,
        })
        .unwrap()
    }

    fn result(rc: u32, text: &str) -> LdapError {
        LdapError::LdapResult {
            result: LdapResult {
                rc,
                matched: String::new(),
                text: text.into(),
                refs: vec![],
                ctrls: vec![],
            },
        }
    }

    /// One row: result code, diagnostic, step => expected class.
    fn check(rc: u32, text: &str, step: Step, expect: FaultClass) {
        let err = classify_error(&target(), result(rc, text), step, "uid=a,dc=example", &[]);
        assert_eq!(err.class, expect, "rc {rc} {step:?}: {}", err.message);
        assert!(err.message.contains("corp-ldap"), "{}", err.message);
    }

    #[test]
    fn result_codes_map_to_classes() {
        use FaultClass as F;
        check(49, "", Step::VerifyBind, F::VerifyFailed);
        check(49, "", Step::AdminBind, F::ConnectAuthRejected);
        check(32, "", Step::ReadHash, F::AccountMissing);
        check(32, "", Step::SetPassword, F::AccountMissing);
        check(32, "", Step::Restore, F::AccountMissing);
        check(32, "", Step::Search, F::Protocol);
        check(
            19,
            "Password is in history of old passwords",
            Step::Restore,
            F::RollbackRefusedByPolicy,
        );
        check(
            53,
            "Password is too young to change",
            Step::Restore,
            F::RollbackRefusedByPolicy,
        );
        check(
            19,
            "Password is in history of old passwords",
            Step::SetPassword,
            F::Refused,
        );
        check(19, "some other constraint", Step::Restore, F::Refused);
        check(
            53,
            "shadow context; no update referral",
            Step::Restore,
            F::Refused,
        );
        check(
            50,
            "no write access to parent",
            Step::SetPassword,
            F::Refused,
        );
        check(51, "", Step::Search, F::Unreachable);
        check(3, "", Step::Search, F::TimedOut);
        check(
            2,
            "unsupported extended operation",
            Step::StartTls,
            F::TlsInvalid,
        );
        check(80, "", Step::SetPassword, F::Protocol);
    }

    #[test]
    fn insufficient_access_says_what_to_grant() {
        let err = classify_error(&target(), result(50, ""), Step::SetPassword, "uid=a", &[]);
        assert!(
            err.message
                .contains("grant rotor's bind account write access to userPassword"),
            "{}",
            err.message
        );
    }

    #[test]
    fn what_the_server_says_in_a_step_with_a_secret_is_never_shown() {
        let secret = Secret::new("Tr0ub4dor&3-new".into());
        // Echoed whole, cut short, or quoted: none of it may show.
        for text in [
            "value Tr0ub4dor&3-new rejected",
            "value Tr0ub4dor rejected",
            "value 'Tr0ub4dor\\&3-new' rejected",
        ] {
            for step in [
                Step::SetPassword,
                Step::Restore,
                Step::VerifyBind,
                Step::ReadHash,
            ] {
                let err = classify_error(&target(), result(19, text), step, "uid=a", &[&secret]);
                assert!(!err.message.contains("Tr0ub4dor"), "{}", err.message);
                assert!(err.message.contains("not shown"), "{}", err.message);
                assert!(err.message.contains("result 19"), "{}", err.message);
            }
        }
        // A ppolicy refusal is still explained, in rotor's words.
        let err = classify_error(
            &target(),
            result(19, "Password fails quality checking policy"),
            Step::Restore,
            "uid=a",
            &[&secret],
        );
        assert!(
            err.message.contains("quality check refused it"),
            "{}",
            err.message
        );
        // Other steps show the server's words, escaped and cut short.
        let hostile = format!("no such base\x1b[2J{}", "x".repeat(10_000));
        let err = classify_error(&target(), result(32, &hostile), Step::Search, "ou=a", &[]);
        assert!(
            err.message.contains("no such base\\u{1b}[2J"),
            "{}",
            err.message
        );
        assert!(err.message.len() < 1000, "{}", err.message.len());
    }

    #[test]
    fn transport_errors_map_to_classes() {
        let t = target();
        let refused = LdapError::Io {
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        assert_eq!(
            classify_error(&t, refused, Step::AdminBind, "x", &[]).class,
            FaultClass::Unreachable
        );
        let bad_cert = LdapError::Io {
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName),
            ),
        };
        let err = classify_error(&t, bad_cert, Step::StartTls, "x", &[]);
        assert_eq!(err.class, FaultClass::TlsInvalid);
        assert!(
            err.message.contains("does not match the host"),
            "{}",
            err.message
        );
        let unknown = LdapError::Io {
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
            ),
        };
        let err = classify_error(&t, unknown, Step::StartTls, "x", &[]);
        assert_eq!(err.class, FaultClass::TlsInvalid);
        assert!(err.message.contains("set ca_file"), "{}", err.message);
    }

    #[test]
    fn crypt_hash_has_the_crypt_sha512_form_and_verifies() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let pw = Secret::new("Hello world!".into());
        let hashed = crypt_sha512(&pw, &mut rng);
        let value = hashed.expose();
        let rest = value.strip_prefix("{CRYPT}$6$").expect(value);
        let (salt, hash) = rest.split_once('$').expect(value);
        assert_eq!(salt.len(), 16);
        assert_eq!(hash.len(), 86);
        assert!(!value.contains("Hello world"));
        // Recomputing with the same salt gives the same hash (what the server does on bind).
        let params = sha_crypt::Sha512Params::new(SHA_CRYPT_ROUNDS).unwrap();
        let again = sha_crypt::sha512_crypt_b64(b"Hello world!", salt.as_bytes(), &params).unwrap();
        assert_eq!(again, hash);
        // Two hashes of one password differ by their salt.
        assert!(!crypt_sha512(&pw, &mut rng).ct_eq(&hashed));
    }

    #[test]
    fn sha512_crypt_matches_the_reference_vector() {
        // From Ulrich Drepper's SHA-crypt specification: $6$saltstring, "Hello world!".
        let params = sha_crypt::Sha512Params::new(5000).unwrap();
        let hash = sha_crypt::sha512_crypt_b64(b"Hello world!", b"saltstring", &params).unwrap();
        assert_eq!(
            hash,
            "svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
        );
    }

    #[test]
    fn prepare_rejects_plain_schemes_and_bad_ca_files() {
        let mut spec = DirectorySpec {
            name: HostName::parse("corp-ldap").unwrap(),
            url: "ldapi:///var/run/slapd".into(),
            ca_file: None,
            danger_accept_invalid_certs: false,
            bind_dn: "cn=rotor".into(),
            timeout: Duration::from_secs(1),
            limits: SearchLimits::DEFAULT,
        };
        let err = DirectoryTarget::prepare(&spec).unwrap_err();
        assert_eq!(err.class, FaultClass::Protocol);
        spec.url = "ldap://127.0.0.1".into();
        spec.ca_file = Some("/nonexistent/ca.pem".into());
        let err = DirectoryTarget::prepare(&spec).unwrap_err();
        assert_eq!(err.class, FaultClass::TlsInvalid);
        assert!(
            err.message.contains("/nonexistent/ca.pem"),
            "{}",
            err.message
        );
    }

    /// A SearchResultEntry tag: `dn` and `(name, values)` pairs as raw bytes.
    fn raw_entry(dn: &[u8], attrs: &[(&[u8], &[&[u8]])]) -> ResultEntry {
        use ldap3::asn1::{PL, StructureTag, TagClass};
        let octets = |b: &[u8]| StructureTag {
            class: TagClass::Universal,
            id: 4,
            payload: PL::P(b.to_vec()),
        };
        let constructed = |id, parts| StructureTag {
            class: TagClass::Universal,
            id,
            payload: PL::C(parts),
        };
        let attrs = attrs
            .iter()
            .map(|(name, values)| {
                let values = values.iter().map(|v| octets(v)).collect();
                constructed(16, vec![octets(name), constructed(17, values)])
            })
            .collect();
        ResultEntry::new(StructureTag {
            class: TagClass::Application,
            id: 4,
            payload: PL::C(vec![octets(dn), constructed(16, attrs)]),
        })
    }

    #[test]
    fn malformed_entries_are_errors_not_panics() {
        let (entry, size) = entry_of(raw_entry(
            b"uid=a,dc=x",
            &[(b"uid", &[b"a"]), (b"photo", &[b"\xff"])],
        ))
        .unwrap();
        assert_eq!(entry.dn, "uid=a,dc=x");
        assert_eq!(entry.attrs["uid"], vec!["a".to_owned()]);
        assert_eq!(entry.bin_attrs["photo"], vec![vec![0xff]]);
        assert_eq!(size, 10 + 3 + 1 + 5 + 1);
        let why = entry_of(raw_entry(b"uid=\xff\x01,dc=x", &[])).unwrap_err();
        assert!(
            why.contains("DN that is not UTF-8 (`uid=\u{fffd}\\u{1},dc=x`)"),
            "{why}"
        );
        let why = entry_of(raw_entry(b"uid=a", &[(b"\xfe", &[])])).unwrap_err();
        assert!(why.contains("attribute name that is not UTF-8"), "{why}");
        let mut not_an_entry = raw_entry(b"uid=a", &[]);
        not_an_entry.0.id = 5;
        let why = entry_of(not_an_entry).unwrap_err();
        assert!(why.contains("not a well-formed SearchResultEntry"), "{why}");
    }

    #[test]
    fn a_panic_in_ldap3_is_a_protocol_error_of_the_directory() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let err = rt
            .block_on(contained(&target(), Step::Search, "ou=x", async {
                if true {
                    panic!("paged results components: raw server bytes");
                }
                Ok(())
            }))
            .unwrap_err();
        assert_eq!(err.class, FaultClass::Protocol);
        for needle in [
            "corp-ldap",
            "searching for ou=x",
            "`paged results components`",
        ] {
            assert!(err.message.contains(needle), "{needle} missing in: {err}");
        }
        assert!(!err.message.contains("raw server bytes"), "{err}");
    }

    #[test]
    fn debug_output_holds_no_secret() {
        let t = target();
        let shown = format!("{t:?}");
        assert!(shown.contains("corp-ldap"));
    }
}

#[cfg(all(test, feature = "lab"))]
mod lab_tests;

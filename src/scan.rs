//! `rotor scan`: what the fleet holds, judged. Pure: the facts read from hosts and
//! directories (`ops::scan` gathers them, read-only) go in with the inventory's view and a
//! per-scan key, and the findings come out: shared passwords and keys, accounts nobody
//! manages, stale and empty secrets, known default passwords.
//!
//! Invariant: no secret, hash or salt leaves this module in a report. Hashes enter as
//! [`Secret`]s and are only compared; a group of credentials that share one is named by a
//! keyed fingerprint under a key made for this scan alone ([`GroupId`]), so two scans'
//! reports cannot be joined to attack a hash.

pub mod html;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::secret::Secret;

/// What one account on a host holds (read by `ops::scan`; outside text, escaped when shown).
pub struct ScannedAccount {
    /// The name as the host lists it.
    pub name: String,
    pub uid: Option<u32>,
    /// A shell one can log in with (not `nologin`, `false`, empty).
    pub login_shell: bool,
    pub password: PasswordFact,
    /// When the password last changed (shadow's day, or the directory's `pwdChangedTime`).
    pub changed: Option<DateTime<Utc>>,
    /// SHA256 fingerprints of the keys its `authorized_keys` lets in.
    pub keys: Vec<String>,
}

/// An account's password, as the target stores it.
pub enum PasswordFact {
    /// No usable password (locked, `*`, `!`, none).
    None,
    /// An empty password field: a login without a password.
    Empty,
    /// A hash (shadow `$y$...`, LDAP `{SSHA}...`), compared only, never shown.
    Hash(Secret),
}

/// What one host answered (or why it did not).
pub struct HostFacts {
    pub host: String,
    pub accounts: Vec<ScannedAccount>,
    /// The host could not be read: nothing is known of it (reported, not a finding).
    pub error: Option<String>,
}

/// What one directory answered, its accounts by UID.
pub struct DirectoryFacts {
    pub directory: String,
    pub accounts: Vec<ScannedAccount>,
    pub error: Option<String>,
}

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

/// What kind of problem a finding is (the JSON `kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    SharedPassword,
    SharedKey,
    UnmanagedAccount,
    Stale,
    EmptyPassword,
    KnownCandidate,
}

/// A group of credentials sharing one secret, named by a per-scan keyed fingerprint (never
/// the hash): the same group has the same id within one report only.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct GroupId(pub String);

/// One finding: what, how bad, which credentials, what to do.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub kind: Kind,
    pub severity: Severity,
    /// `HOST/ACCOUNT` or `DIRECTORY/UID`.
    pub credentials: Vec<String>,
    /// The shared secret's group, for `shared_*` findings.
    pub group: Option<GroupId>,
    /// One sentence a hospital's IT person understands: what is wrong.
    pub summary: String,
    /// What to do about it.
    pub advice: String,
}

/// One credential as the report shows it (the grid and the age chart).
#[derive(Clone, Debug, Serialize)]
pub struct CredentialRow {
    /// `HOST/ACCOUNT` or `DIRECTORY/UID`.
    pub credential: String,
    /// The host or directory.
    pub target: String,
    pub account: String,
    /// Whether the inventory manages it.
    pub managed: bool,
    /// `none`, `empty`, `password`.
    pub password: &'static str,
    /// The group of credentials sharing its password, if any.
    pub password_group: Option<GroupId>,
    /// Days since its password changed, where known.
    pub age_days: Option<i64>,
    /// Its policy's `max_age` in days, where managed and set.
    pub max_age_days: Option<i64>,
    pub n_keys: usize,
    /// Groups of keys it shares with other accounts.
    pub key_groups: Vec<GroupId>,
}

/// A target that could not be read.
#[derive(Clone, Debug, Serialize)]
pub struct Unreachable {
    pub target: String,
    pub error: String,
}

/// The scan's result, for the table, the JSON (`schema_version`) and the HTML report.
#[derive(Clone, Debug, Serialize)]
pub struct ScanReport {
    pub schema_version: u32,
    pub scanned_at: DateTime<Utc>,
    pub n_hosts: usize,
    pub n_directories: usize,
    pub n_accounts: usize,
    /// Most severe first.
    pub findings: Vec<Finding>,
    /// Every account read, in target then account order.
    pub credentials: Vec<CredentialRow>,
    pub unreachable: Vec<Unreachable>,
}

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

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::secret::Secret;
use crate::text::escape;

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
    /// Who was logged in on each host read, in host order (facts, not findings: `ops::scan`
    /// adds them as read).
    pub sessions: Vec<HostSessions>,
}

/// The sessions open on one host when it was read (`who`), and why not all were read.
#[derive(Clone, Debug, Serialize)]
pub struct HostSessions {
    pub host: String,
    pub sessions: Vec<crate::target::Session>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unread: Option<String>,
}

/// The report's JSON shape; bump it when a field changes meaning.
pub const SCHEMA_VERSION: u32 = 1;

/// What the inventory manages: each credential id (`HOST/ACCOUNT`, `HOST/ACCOUNT:key`,
/// `DIRECTORY/UID`) with its policy's `max_age`, where set.
#[derive(Clone, Debug, Default)]
pub struct Managed {
    pub credentials: HashMap<String, Option<std::time::Duration>>,
}

impl Managed {
    /// Whether the inventory manages the account's password or key (either slot counts: the
    /// account is known and rotated).
    fn manages(&self, cred: &str) -> bool {
        self.credentials.contains_key(cred) || self.credentials.contains_key(&format!("{cred}:key"))
    }

    fn max_age(&self, cred: &str) -> Option<std::time::Duration> {
        self.credentials.get(cred).copied().flatten()
    }
}

/// Everything [`findings`] judges.
pub struct ScanInput<'a> {
    pub hosts: Vec<HostFacts>,
    pub directories: Vec<DirectoryFacts>,
    pub managed: &'a Managed,
    /// Known passwords (vendor defaults) checked locally against each distinct hash.
    pub candidates: &'a [Secret],
    /// The vault's current secrets (`HOST/ACCOUNT` or `DIRECTORY/UID`, the secret), compared
    /// in memory with the hashes read: a password rotor keeps for one credential found on
    /// another account is a shared password. Never into the report.
    pub vault: &'a [(String, Secret)],
    pub now: DateTime<Utc>,
    /// The per-scan key naming groups ([`GroupId`]); random, never stored.
    pub key: &'a [u8],
}

/// Hex characters of a [`GroupId`]: 48 bits tell groups apart within one report.
const GROUP_ID_CHARS: usize = 12;

impl GroupId {
    /// The keyed fingerprint of `what` (a hash string, a candidate's index, a key's
    /// fingerprint), tagged by its kind so a password and a key never share an id.
    fn of(key: &[u8], tag: &str, what: &[u8]) -> GroupId {
        // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
        mac.update(tag.as_bytes());
        mac.update(&[0]);
        mac.update(what);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        GroupId(hex[..GROUP_ID_CHARS].to_owned())
    }
}

/// One credential read, flattened for judging.
struct Seen<'a> {
    cred: String,
    target: &'a str,
    /// Whether the target is a directory (its credentials are `DIRECTORY/UID`).
    directory: bool,
    account: &'a ScannedAccount,
    managed: bool,
}

/// What makes two passwords one: the same hash string, or both matching one candidate.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum PasswordClass<'a> {
    Hash(&'a str),
    Candidate(usize),
}

/// Judges the facts: every finding, most severe first, and one row per credential.
pub fn findings(input: ScanInput<'_>) -> ScanReport {
    let ScanInput {
        hosts,
        directories,
        managed,
        candidates,
        vault,
        now,
        key,
    } = input;
    let mut unreachable = Vec::new();
    let mut n_accounts = 0;
    let mut seen: Vec<Seen<'_>> = Vec::new();
    let targets = hosts
        .iter()
        .map(|h| (&h.host, &h.accounts, &h.error, false))
        .chain(
            directories
                .iter()
                .map(|d| (&d.directory, &d.accounts, &d.error, true)),
        );
    for (target, accounts, error, directory) in targets {
        if let Some(e) = error {
            unreachable.push(Unreachable {
                target: target.clone(),
                error: e.clone(),
            });
        }
        n_accounts += accounts.len();
        for account in accounts {
            let cred = format!("{target}/{}", account.name);
            let is_managed = managed.manages(&cred);
            let holds = !matches!(account.password, PasswordFact::None) || !account.keys.is_empty();
            // An account with nothing to log in with and not managed (a system account) is
            // not a credential: no row, no finding.
            if holds || is_managed {
                seen.push(Seen {
                    cred,
                    target,
                    directory,
                    account,
                    managed: is_managed,
                });
            }
        }
    }
    let n_hosts = hosts.len();
    let mut out: Vec<Finding> = Vec::new();

    // Each distinct hash is checked against each candidate once: with a template shadow most
    // hashes are the same string, and a yescrypt check costs tens of milliseconds.
    let mut distinct: BTreeMap<&str, &Secret> = BTreeMap::new();
    for s in &seen {
        if let PasswordFact::Hash(h) = &s.account.password {
            distinct.entry(h.expose()).or_insert(h);
        }
    }
    let by_hash: BTreeMap<&str, Option<usize>> = if candidates.is_empty() {
        distinct.keys().map(|h| (*h, None)).collect()
    } else {
        candidate_hits(distinct.into_iter().collect(), candidates)
    };
    let mut classes: BTreeMap<PasswordClass<'_>, Vec<usize>> = BTreeMap::new();
    for (idx, s) in seen.iter().enumerate() {
        if let PasswordFact::Hash(h) = &s.account.password {
            let class = match by_hash.get(h.expose()).copied().flatten() {
                Some(c) => PasswordClass::Candidate(c),
                None => PasswordClass::Hash(h.expose()),
            };
            classes.entry(class).or_default().push(idx);
        }
    }
    let mut password_group: HashMap<usize, GroupId> = HashMap::new();
    for (class, members) in &classes {
        let group = match class {
            PasswordClass::Hash(h) => GroupId::of(key, "password-hash", h.as_bytes()),
            PasswordClass::Candidate(c) => GroupId::of(key, "password-candidate", &c.to_le_bytes()),
        };
        let creds: Vec<String> = members.iter().map(|&i| seen[i].cred.clone()).collect();
        if let PasswordClass::Candidate(_) = class {
            out.push(Finding {
                kind: Kind::KnownCandidate,
                severity: Severity::Critical,
                summary: format!(
                    "{} use{} a known password from the candidate list",
                    count_words(creds.len(), "account"),
                    if creds.len() == 1 { "s" } else { "" }
                ),
                advice: shared_advice(
                    &seen,
                    members,
                    "anyone who knows this default password can log in; do it now",
                ),
                credentials: creds.clone(),
                group: Some(group.clone()),
            });
        }
        if members.len() < 2 {
            continue;
        }
        for &i in members {
            password_group.insert(i, group.clone());
        }
        let mixed = members.iter().any(|&i| seen[i].directory)
            && members.iter().any(|&i| !seen[i].directory);
        out.push(Finding {
            kind: Kind::SharedPassword,
            severity: Severity::High,
            summary: shared_summary(&seen, members, n_hosts, "password", mixed),
            advice: shared_advice(&seen, members, "one stolen password opens all of them"),
            credentials: creds,
            group: Some(group),
        });
    }

    for (i, v) in vault_reuse(&seen, vault) {
        let (cred, other) = (&seen[i].cred, &vault[v].0);
        let group = GroupId::of(key, "password-vault", other.as_bytes());
        password_group.entry(i).or_insert_with(|| group.clone());
        out.push(Finding {
            kind: Kind::SharedPassword,
            severity: Severity::High,
            summary: format!("{cred} has the password rotor keeps for {other}"),
            advice: format!(
                "whoever knows one knows both: give {cred} its own password (add it to the inventory and rotate it), then rotate {other} (`rotor rotate --scope cred:{other}`)"
            ),
            credentials: vec![cred.clone(), other.clone()],
            group: Some(group),
        });
    }

    let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (idx, s) in seen.iter().enumerate() {
        let mut keys: Vec<&str> = s.account.keys.iter().map(String::as_str).collect();
        keys.sort_unstable();
        keys.dedup();
        for k in keys {
            by_key.entry(k).or_default().push(idx);
        }
    }
    let mut key_groups: HashMap<usize, Vec<GroupId>> = HashMap::new();
    for (fingerprint, members) in &by_key {
        if members.len() < 2 {
            continue;
        }
        let group = GroupId::of(key, "ssh-key", fingerprint.as_bytes());
        for &i in members {
            key_groups.entry(i).or_default().push(group.clone());
        }
        out.push(Finding {
            kind: Kind::SharedKey,
            severity: Severity::High,
            summary: shared_summary(&seen, members, n_hosts, "SSH key", false),
            advice: "whoever holds the private key logs in to all of them: give each account its own key (`linux-ssh-key` in the inventory, then `rotor rotate`) and remove the shared one".into(),
            credentials: members.iter().map(|&i| seen[i].cred.clone()).collect(),
            group: Some(group),
        });
    }

    // Unmanaged accounts, one finding per account name: the same service account on many
    // hosts is one thing to add to the inventory.
    let mut unmanaged: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (idx, s) in seen.iter().enumerate() {
        if !s.managed {
            unmanaged.entry(&s.account.name).or_default().push(idx);
        }
    }
    for (name, members) in &unmanaged {
        let what = |i: usize| {
            let a = seen[i].account;
            match (&a.password, a.keys.is_empty()) {
                (PasswordFact::None, _) => "an SSH key",
                (_, true) => "a password",
                (_, false) => "a password and an SSH key",
            }
        };
        let kinds: BTreeSet<&str> = members.iter().map(|&i| what(i)).collect();
        let kinds: Vec<&str> = kinds.into_iter().collect();
        out.push(Finding {
            kind: Kind::UnmanagedAccount,
            severity: Severity::Medium,
            summary: format!(
                "{} has {} on {} and rotor does not manage it",
                escape(name),
                kinds.join(" or "),
                count_words(members.len(), "target"),
            ),
            advice:
                "add the account to the inventory (or remove it if nobody needs it) and rotate it"
                    .into(),
            credentials: members.iter().map(|&i| seen[i].cred.clone()).collect(),
            group: None,
        });
    }

    let mut rows = Vec::with_capacity(seen.len());
    for (idx, s) in seen.iter().enumerate() {
        let a = s.account;
        let age_days = a.changed.map(|c| (now - c).num_days());
        let max_age = s.managed.then(|| managed.max_age(&s.cred)).flatten();
        let max_age_days = max_age.map(|d| (d.as_secs() / 86_400) as i64);
        if let (Some(age), Some(max)) = (a.changed.map(|c| now - c), max_age)
            && !matches!(a.password, PasswordFact::None)
            && age.to_std().is_ok_and(|age| age > max)
        {
            out.push(Finding {
                kind: Kind::Stale,
                severity: Severity::Medium,
                summary: format!(
                    "the password of {} is {} days old, older than its policy allows ({} days)",
                    escape(&s.cred),
                    age.num_days(),
                    max.as_secs() / 86_400
                ),
                advice: "rotate it (`rotor rotate --scope cred:...`) and check that the daemon's schedule covers it".into(),
                credentials: vec![s.cred.clone()],
                group: None,
            });
        }
        if let PasswordFact::Empty = a.password {
            out.push(Finding {
                kind: Kind::EmptyPassword,
                severity: Severity::Critical,
                summary: format!("{} has an empty password", escape(&s.cred)),
                advice: "anyone may log in without a password where the service allows it: lock the account (`passwd -l`) or give it a password and manage it with rotor".into(),
                credentials: vec![s.cred.clone()],
                group: None,
            });
        }
        rows.push(CredentialRow {
            credential: s.cred.clone(),
            target: s.target.to_owned(),
            account: a.name.clone(),
            managed: s.managed,
            password: match a.password {
                PasswordFact::None => "none",
                PasswordFact::Empty => "empty",
                PasswordFact::Hash(_) => "password",
            },
            password_group: password_group.get(&idx).cloned(),
            age_days,
            max_age_days,
            n_keys: a.keys.len(),
            key_groups: key_groups.remove(&idx).unwrap_or_default(),
        });
    }
    rows.sort_by(|a, b| a.credential.cmp(&b.credential));
    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| b.credentials.len().cmp(&a.credentials.len()))
            .then_with(|| a.credentials.cmp(&b.credentials))
    });
    ScanReport {
        schema_version: SCHEMA_VERSION,
        scanned_at: now,
        n_hosts,
        n_directories: directories.len(),
        n_accounts,
        findings: out,
        credentials: rows,
        unreachable,
        sessions: Vec::new(),
    }
}

/// What to do about a shared password: rotate what rotor manages, add what it does not.
fn shared_advice(seen: &[Seen<'_>], members: &[usize], why: &str) -> String {
    if members.iter().all(|&i| seen[i].managed) {
        format!(
            "{why}: rotor manages them all; rotate them (`rotor rotate --scope ...`) so each gets its own"
        )
    } else {
        format!("{why}: add each account to the inventory and rotate them, so each gets its own")
    }
}

/// Which candidate (its index) each hash comes from, if any.
fn candidate_hits<'a>(
    hashes: Vec<(&'a str, &'a Secret)>,
    candidates: &[Secret],
) -> BTreeMap<&'a str, Option<usize>> {
    par_map(&hashes, |(text, h)| {
        let hit = candidates
            .iter()
            .position(|c| crate::password_hash::matches(h, c) == Some(true));
        (*text, hit)
    })
    .into_iter()
    .collect()
}

/// `f` over `items`, spread over the machine's cores (at most 8): after a rotation every hash
/// differs, and hundreds of yescrypt checks take seconds on one.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let n_threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let chunk = items.len().div_ceil(n_threads).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            // A panic inside a check (none is known) is the scan's own bug: passed on.
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// Accounts holding a password rotor keeps for another credential: each hash read is first
/// checked against its own credential's current secret (one check: a managed account after
/// a rotation); only those that are not their own are checked against the rest of the
/// vault, each distinct hash once. Returns (seen index, vault index) pairs.
fn vault_reuse(seen: &[Seen<'_>], vault: &[(String, Secret)]) -> Vec<(usize, usize)> {
    if vault.is_empty() {
        return Vec::new();
    }
    let own: HashMap<&str, &Secret> = vault.iter().map(|(c, s)| (c.as_str(), s)).collect();
    let hashed: Vec<(usize, &Secret)> = seen
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match &s.account.password {
            PasswordFact::Hash(h) => Some((i, h)),
            _ => None,
        })
        .collect();
    let is_own = par_map(&hashed, |(i, h)| {
        own.get(seen[*i].cred.as_str())
            .is_some_and(|secret| crate::password_hash::matches(h, secret) == Some(true))
    });
    let mut foreign: BTreeMap<&str, (&Secret, Vec<usize>)> = BTreeMap::new();
    for ((i, h), own) in hashed.iter().zip(is_own) {
        if !own {
            foreign
                .entry(h.expose())
                .or_insert((h, Vec::new()))
                .1
                .push(*i);
        }
    }
    let foreign: Vec<(&Secret, Vec<usize>)> = foreign.into_values().collect();
    let hits = par_map(&foreign, |(h, _)| {
        vault
            .iter()
            .position(|(_, secret)| crate::password_hash::matches(h, secret) == Some(true))
    });
    foreign
        .iter()
        .zip(hits)
        .filter_map(|((_, members), hit)| hit.map(|v| (members, v)))
        .flat_map(|(members, v)| members.iter().map(move |&i| (i, v)))
        .filter(|&(i, v)| seen[i].cred != vault[v].0)
        .collect()
}

/// "3 accounts", "1 account".
fn count_words(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// "14 of 20 servers accept the same svc_app password", or, for different accounts, "5
/// accounts on 3 servers share one password".
fn shared_summary(
    seen: &[Seen<'_>],
    members: &[usize],
    n_hosts: usize,
    what: &str,
    mixed: bool,
) -> String {
    let names: BTreeSet<&str> = members
        .iter()
        .map(|&i| seen[i].account.name.as_str())
        .collect();
    let hosts: BTreeSet<&str> = members
        .iter()
        .filter(|&&i| !seen[i].directory)
        .map(|&i| seen[i].target)
        .collect();
    let n_dir = members.iter().filter(|&&i| seen[i].directory).count();
    let also = if mixed {
        format!(
            ", {} of them in a directory: the directory and the servers share it",
            n_dir
        )
    } else {
        String::new()
    };
    let verb = if what == "password" {
        "accept"
    } else {
        "let in"
    };
    if names.len() == 1 && n_dir == 0 {
        let name = names.iter().next().copied().unwrap_or_default();
        format!(
            "{} of {n_hosts} servers {verb} the same {} {what}",
            hosts.len(),
            escape(name)
        )
    } else if hosts.is_empty() {
        format!(
            "{} in a directory share one {what}",
            count_words(members.len(), "account")
        )
    } else {
        format!(
            "{} on {} share one {what}{also}",
            count_words(members.len(), "account"),
            count_words(hosts.len(), "server"),
        )
    }
}

impl ScanReport {
    /// 0 when nothing above `info` was found, 3 otherwise (the CLI's exit code).
    pub fn exit_code(&self) -> i32 {
        if self.findings.iter().any(|f| f.severity > Severity::Info) {
            3
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "$6$saltone$/OBJ93pynEddTgiKFM9UaTfJJdtQvjC7L2PE/fLNI4Ba9.Bxx6Ri4pxsJBe.N6yaJTtiFqsFHPlE8LI8RaA2x0";
    const B: &str = "$6$salttwo$5uXn69QIfjL.tkbT8DJt0xNEzAkOYmkJYDBUu/htnAU8jVmBmP5P8galdPmnjDQNYJdCehtXRZjnSJBiHiAbo.";
    const DIR: &str = "{SSHA}qN+qw6z+9h2K0k4EJPfV0IytyWphYmNk";
    /// The password of `A`, `B` and `DIR`.
    const CANDIDATE: &str = "vendor-default";

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .to_utc()
    }

    /// `name:password:keys:age_days`, password `-` none, `` empty, else a hash.
    fn account(spec: &str) -> ScannedAccount {
        let f: Vec<&str> = spec.split(':').collect();
        ScannedAccount {
            name: f[0].into(),
            uid: Some(1000),
            login_shell: true,
            password: match f[1] {
                "-" => PasswordFact::None,
                "" => PasswordFact::Empty,
                h => PasswordFact::Hash(Secret::new(h.into())),
            },
            changed: f
                .get(3)
                .and_then(|d| d.parse::<i64>().ok())
                .map(|d| now() - chrono::Duration::days(d)),
            keys: f
                .get(2)
                .filter(|k| !k.is_empty())
                .map(|k| k.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
        }
    }

    fn host(name: &str, accounts: &[&str]) -> HostFacts {
        HostFacts {
            host: name.into(),
            accounts: accounts.iter().map(|a| account(a)).collect(),
            error: None,
        }
    }

    fn managed(creds: &[(&str, Option<u64>)]) -> Managed {
        Managed {
            credentials: creds
                .iter()
                .map(|(c, days)| {
                    (
                        c.to_string(),
                        days.map(|d| std::time::Duration::from_secs(d * 86_400)),
                    )
                })
                .collect(),
        }
    }

    fn scan(
        hosts: Vec<HostFacts>,
        dirs: Vec<DirectoryFacts>,
        m: &Managed,
        candidates: &[&str],
        key: &[u8],
    ) -> ScanReport {
        scan_with_vault(hosts, dirs, m, candidates, &[], key)
    }

    fn scan_with_vault(
        hosts: Vec<HostFacts>,
        dirs: Vec<DirectoryFacts>,
        m: &Managed,
        candidates: &[&str],
        vault: &[(&str, &str)],
        key: &[u8],
    ) -> ScanReport {
        let candidates: Vec<Secret> = candidates
            .iter()
            .map(|c| Secret::new(c.to_string()))
            .collect();
        let vault: Vec<(String, Secret)> = vault
            .iter()
            .map(|(c, s)| (c.to_string(), Secret::new(s.to_string())))
            .collect();
        findings(ScanInput {
            hosts,
            directories: dirs,
            managed: m,
            candidates: &candidates,
            vault: &vault,
            now: now(),
            key,
        })
    }

    #[test]
    fn a_password_the_vault_keeps_for_another_credential_is_found_on_an_account() {
        // h1/svc_app holds what the vault keeps for it (its own: no finding); h2/copy holds
        // the same password under another salt, unmanaged; h3/svc_app a password rotor does
        // not know.
        let hosts = vec![
            host("h1", &[&format!("svc_app:{A}")]),
            host("h2", &[&format!("copy:{B}")]),
            host("h3", &["svc_app:$6$x$unknown"]),
        ];
        let m = managed(&[("h1/svc_app", None), ("h3/svc_app", None)]);
        let vault = [("h1/svc_app", CANDIDATE), ("h3/svc_app", "another-secret")];
        let r = scan_with_vault(hosts, vec![], &m, &[], &vault, b"k");
        check(
            &r,
            &[
                "shared_password high h2/copy h1/svc_app",
                "unmanaged_account medium h2/copy",
            ],
        );
        assert_eq!(
            r.findings[0].summary,
            "h2/copy has the password rotor keeps for h1/svc_app"
        );
        let json = serde_json::to_string(&r).unwrap();
        assert!(
            !json.contains(CANDIDATE) && !json.contains("salttwo"),
            "{json}"
        );
    }

    /// The findings as `kind severity creds...`, the report's order.
    fn check(report: &ScanReport, expect: &[&str]) {
        let got: Vec<String> = report
            .findings
            .iter()
            .map(|f| {
                format!(
                    "{} {} {}",
                    serde_json::to_value(f.kind).unwrap().as_str().unwrap(),
                    serde_json::to_value(f.severity).unwrap().as_str().unwrap(),
                    f.credentials.join(" ")
                )
            })
            .collect();
        assert_eq!(got, expect);
    }

    fn fleet() -> Vec<HostFacts> {
        vec![
            host(
                "h1",
                &["root:-", "svc_app:same-a", "svc_backup:same-b", "daemon:-"],
            ),
            host("h2", &["svc_app:same-a", "svc_backup:same-b"]),
            host("h3", &["svc_app:same-a", "svc_backup:other"]),
        ]
    }

    fn all_managed() -> Managed {
        let mut creds = Vec::new();
        for h in ["h1", "h2", "h3"] {
            for a in ["svc_app", "svc_backup"] {
                creds.push((format!("{h}/{a}"), None));
            }
        }
        Managed {
            credentials: creds.into_iter().collect(),
        }
    }

    #[test]
    fn shared_hashes_are_grouped_exactly() {
        let r = scan(fleet(), vec![], &all_managed(), &[], b"k");
        check(
            &r,
            &[
                "shared_password high h1/svc_app h2/svc_app h3/svc_app",
                "shared_password high h1/svc_backup h2/svc_backup",
            ],
        );
        assert_eq!(
            r.findings[0].summary,
            "3 of 3 servers accept the same svc_app password"
        );
        assert_ne!(r.findings[0].group, r.findings[1].group);
        // System accounts with nothing to log in with are not rows.
        assert_eq!(r.credentials.len(), 6);
        assert_eq!(r.credentials[0].password_group, r.findings[0].group);
        assert_eq!(
            r.credentials[5].password_group, None,
            "h3/svc_backup is alone"
        );
        assert_eq!(r.exit_code(), 3);
    }

    #[test]
    fn a_key_on_three_hosts_and_unmanaged_accounts() {
        let m = managed(&[
            ("h1/deploy:key", None),
            ("h2/deploy", None),
            ("h3/deploy", None),
        ]);
        let hosts = vec![
            host("h1", &["deploy:-:fp-a"]),
            host("h2", &["deploy:-:fp-a", "planted:x"]),
            host("h3", &["deploy:-:fp-a,fp-b"]),
        ];
        let r = scan(hosts, vec![], &m, &[], b"k");
        check(
            &r,
            &[
                "shared_key high h1/deploy h2/deploy h3/deploy",
                "unmanaged_account medium h2/planted",
            ],
        );
        assert_eq!(
            r.findings[0].summary,
            "3 of 3 servers let in the same deploy SSH key"
        );
        assert_eq!(
            r.credentials[3].key_groups.len(),
            1,
            "{:?}",
            r.credentials[3]
        );
    }

    #[test]
    fn stale_and_empty_passwords() {
        let hosts = vec![host("h1", &["svc_app:x::40", "svc_backup:y::10", "guest:"])];
        let m = managed(&[("h1/svc_app", Some(30)), ("h1/svc_backup", Some(30))]);
        let r = scan(hosts, vec![], &m, &[], b"k");
        check(
            &r,
            &[
                "empty_password critical h1/guest",
                "unmanaged_account medium h1/guest",
                "stale medium h1/svc_app",
            ],
        );
        assert_eq!(r.credentials[1].age_days, Some(40));
        assert_eq!(r.credentials[1].max_age_days, Some(30));
    }

    #[test]
    fn a_candidate_joins_different_salts_and_the_directory() {
        let hosts = vec![
            host("h1", &[&format!("svc_app:{A}")]),
            host("h2", &[&format!("svc_app:{B}")]),
        ];
        let dirs = vec![DirectoryFacts {
            directory: "corp".into(),
            accounts: vec![ScannedAccount {
                name: "svc-ldap".into(),
                uid: None,
                login_shell: false,
                password: PasswordFact::Hash(Secret::new(DIR.into())),
                changed: None,
                keys: vec![],
            }],
            error: None,
        }];
        let m = managed(&[
            ("h1/svc_app", None),
            ("h2/svc_app", None),
            ("corp/svc-ldap", None),
        ]);
        let without = scan(fleet_of(&hosts), vec![], &m, &[], b"k");
        check(&without, &[]);
        let r = scan(hosts, dirs, &m, &[CANDIDATE], b"k");
        check(
            &r,
            &[
                "known_candidate critical h1/svc_app h2/svc_app corp/svc-ldap",
                "shared_password high h1/svc_app h2/svc_app corp/svc-ldap",
            ],
        );
        assert_eq!(
            r.findings[1].summary,
            "3 accounts on 2 servers share one password, 1 of them in a directory: the directory and the servers share it"
        );
        let json = serde_json::to_string(&r).unwrap();
        for secret in [A, B, DIR, CANDIDATE, "saltone", "salttwo"] {
            assert!(!json.contains(secret), "{secret} in {json}");
        }
    }

    /// The same hosts again (facts are not `Clone`: they hold secrets).
    fn fleet_of(hosts: &[HostFacts]) -> Vec<HostFacts> {
        hosts
            .iter()
            .map(|h| HostFacts {
                host: h.host.clone(),
                accounts: h
                    .accounts
                    .iter()
                    .map(|a| ScannedAccount {
                        name: a.name.clone(),
                        uid: a.uid,
                        login_shell: a.login_shell,
                        password: match &a.password {
                            PasswordFact::None => PasswordFact::None,
                            PasswordFact::Empty => PasswordFact::Empty,
                            PasswordFact::Hash(h) => PasswordFact::Hash(h.clone()),
                        },
                        changed: a.changed,
                        keys: a.keys.clone(),
                    })
                    .collect(),
                error: h.error.clone(),
            })
            .collect()
    }

    #[test]
    fn group_ids_differ_under_another_key_and_hold_no_hash() {
        let one = scan(fleet(), vec![], &all_managed(), &[], b"key one");
        let two = scan(fleet(), vec![], &all_managed(), &[], b"key two");
        assert_ne!(one.findings[0].group, two.findings[0].group);
        assert_eq!(
            one.findings[0].group.as_ref().unwrap().0.len(),
            GROUP_ID_CHARS
        );
        let json = serde_json::to_string(&one).unwrap();
        assert!(
            !json.contains("same-a") && !json.contains("same-b"),
            "{json}"
        );
    }

    #[test]
    fn an_unreachable_host_is_reported_not_judged() {
        let mut hosts = fleet();
        hosts.push(HostFacts {
            host: "h4".into(),
            accounts: vec![],
            error: Some("h4: connection refused".into()),
        });
        let r = scan(hosts, vec![], &all_managed(), &[], b"k");
        assert_eq!(r.unreachable.len(), 1);
        assert_eq!(
            r.findings[0].summary,
            "3 of 4 servers accept the same svc_app password"
        );
    }
}

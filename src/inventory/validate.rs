//! From the file as written ([`raw`](super::raw)) to the model ([`Inventory`]): every check
//! that needs more than a YAML type lives here, and each failure becomes a [`Problem`] that
//! says where, what and how to fix it. Problems are collected, not returned at the first.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde_saphyr::{Location, Spanned};

use super::InventoryError;
use super::error::{Problem, ProblemKind, Problems};
use super::raw::{
    RawAccount, RawCheckout, RawConnect, RawDirectory, RawHost, RawInventory, RawPolicy, RawWindow,
};
use super::{
    Account, Approval, CharClass, CheckoutPolicy, ConnectAuth, ConnectIdentity, Directory,
    DirectoryAccounts, Host, HostKeyPin, Inventory, LdapScope, Policy, uid_of,
};
use crate::credential::{AccountName, CredentialId, HostName, Slot};
use crate::recipe::{Body, Catalog};
use crate::schedule::{Hours, Weekdays, Window};
use crate::target::CredentialKind;

/// `playbooks_dir:` resolved: relative paths from the inventory file's directory. `None`
/// when empty.
pub(super) fn playbooks_dir(text: &str, file: &Path) -> Option<PathBuf> {
    if text.trim().is_empty() {
        return None;
    }
    let path = Path::new(text);
    Some(if path.is_absolute() {
        path.to_owned()
    } else {
        file.parent().unwrap_or(Path::new("")).join(path)
    })
}

/// The host key types rotor accepts in `host_key:` (what OpenSSH servers offer today).
const HOST_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
];

const MIN_LENGTH: u64 = 12;
const MAX_LENGTH: u64 = 128;
/// The weakest policy rotor accepts, in bits of entropy per password (DESIGN.md invariant 6).
const MIN_POLICY_BITS: f64 = 64.0;
const DEFAULT_LENGTH: usize = 24;
const DEFAULT_PORT: u16 = 22;
/// The longest checkout a policy may allow.
const MAX_CHECKOUT_TTL: Duration = Duration::from_secs(7 * 86_400);
/// Below pam_faillock's default `deny = 3`, so rotor's own failed logins never lock an account.
pub const DEFAULT_MAX_FAILED_LOGINS: u32 = 2;

/// The policy every account gets unless it names another; the inventory may redefine it.
pub fn default_policy() -> Policy {
    Policy {
        name: "default".to_owned(),
        length: DEFAULT_LENGTH,
        classes: CharClass::ALL.to_vec(),
        exclude: String::new(),
        schedule: None,
        max_age: None,
        timezone: None,
        window: None,
        max_failed_logins: DEFAULT_MAX_FAILED_LOGINS,
        checkout: CheckoutPolicy::default(),
    }
}

struct Checker<'a> {
    file: &'a Path,
    playbooks: &'a Catalog,
    problems: Problems,
    /// Policies defined but not valid (already reported): a reference to one is not an
    /// "unknown policy" too.
    broken_policies: std::collections::BTreeSet<String>,
}

fn at(location: Location) -> (u64, u64) {
    (location.line(), location.column())
}

pub(super) fn validate(
    mut raw: RawInventory,
    file: &Path,
    playbooks: &Catalog,
) -> Result<Inventory, InventoryError> {
    let mut checker = Checker {
        file,
        playbooks,
        problems: Problems::default(),
        broken_policies: std::collections::BTreeSet::new(),
    };
    // What the reader could not read comes first; it is sorted with the rest by line.
    for problem in std::mem::take(&mut raw.problems) {
        checker.problems.push(problem);
    }
    checker.broken_policies = std::mem::take(&mut raw.broken_policies);
    let inventory = checker.inventory(raw);
    checker.problems.into_result(inventory)
}

impl Checker<'_> {
    fn report(
        &mut self,
        location: Location,
        field: impl Into<String>,
        kind: ProblemKind,
        message: impl Into<String>,
    ) {
        self.problems
            .push(Problem::new(self.file, at(location), field, kind, message));
    }

    fn inventory(&mut self, raw: RawInventory) -> Inventory {
        if let Some(version) = &raw.version
            && version.value != 1
        {
            self.report(
                version.referenced,
                "version",
                ProblemKind::Unsupported,
                format!(
                    "inventory version {} is not supported: this rotor reads `version: 1`",
                    version.value
                ),
            );
        }

        let mut policies = BTreeMap::new();
        policies.insert("default".to_owned(), default_policy());
        for (name, raw_policy) in raw.policies {
            match self.policy(&name, raw_policy) {
                Some(policy) => {
                    policies.insert(name, policy);
                }
                None => {
                    self.broken_policies.insert(name);
                }
            }
        }

        // Host name -> line of its first definition, for duplicate messages.
        let mut seen_hosts: HashMap<String, u64> = HashMap::new();
        let mut hosts = Vec::with_capacity(raw.hosts.len());
        for (host_idx, raw_host) in raw.hosts.into_iter().enumerate() {
            // Left out by the reader, which reported why.
            let Some(raw_host) = raw_host else { continue };
            let field = format!("hosts[{host_idx}]");
            if let Some(host) = self.host(&field, raw_host, &policies, &mut seen_hosts) {
                hosts.push(host);
            }
        }

        let mut directories = Vec::with_capacity(raw.directories.len());
        for (dir_idx, raw_dir) in raw.directories.into_iter().enumerate() {
            let Some(raw_dir) = raw_dir else { continue };
            let field = format!("directories[{dir_idx}]");
            if let Some(d) = self.directory(&field, raw_dir, &policies, &mut seen_hosts) {
                directories.push(d);
            }
        }

        Inventory {
            path: self.file.to_owned(),
            policies,
            hosts,
            directories,
            playbooks: std::sync::Arc::new(self.playbooks.clone()),
        }
    }

    fn policy(&mut self, name: &str, raw: Spanned<RawPolicy>) -> Option<Policy> {
        let field = format!("policies.{name}");
        let mut ok = true;
        if !is_simple_name(name) {
            self.report(
                raw.referenced,
                &field,
                ProblemKind::InvalidValue,
                format!(
                    "`{name}` is not a valid policy name: use letters, digits, '.', '-' or '_'"
                ),
            );
            ok = false;
        }
        let raw = raw.value;

        let length_at = raw.length.as_ref().map(|length| length.referenced);
        let length = match raw.length {
            None => DEFAULT_LENGTH,
            Some(length) if (MIN_LENGTH..=MAX_LENGTH).contains(&length.value) => {
                // In range, so it fits in usize on every platform.
                length.value as usize
            }
            Some(length) => {
                self.report(
                    length.referenced,
                    format!("{field}.length"),
                    ProblemKind::InvalidValue,
                    format!(
                        "length {} is out of range: use {MIN_LENGTH} to {MAX_LENGTH} characters \
                         ({DEFAULT_LENGTH} if unsure)",
                        length.value
                    ),
                );
                ok = false;
                DEFAULT_LENGTH
            }
        };

        let (exclude, exclude_at) = raw
            .exclude
            .map(|e| (e.value, e.referenced))
            .unwrap_or((String::new(), Location::UNKNOWN));
        let classes = match raw.classes {
            None => CharClass::ALL.to_vec(),
            Some(list) => {
                let classes_field = format!("{field}.classes");
                if list.value.is_empty() {
                    self.report(
                        list.referenced,
                        &classes_field,
                        ProblemKind::InvalidValue,
                        "no character classes: list at least one of lower, upper, digit, symbol",
                    );
                    ok = false;
                }
                let mut classes = Vec::new();
                for (class_idx, class) in list.value.into_iter().enumerate() {
                    let class_field = format!("{classes_field}[{class_idx}]");
                    match CharClass::parse(&class.value) {
                        None => {
                            self.report(
                                class.referenced,
                                class_field,
                                ProblemKind::InvalidValue,
                                format!(
                                    "unknown character class `{}`: use lower, upper, digit or symbol",
                                    class.value
                                ),
                            );
                            ok = false;
                        }
                        Some(c) if classes.contains(&c) => {
                            self.report(
                                class.referenced,
                                class_field,
                                ProblemKind::Duplicate,
                                format!("class `{}` is listed twice: list it once", class.value),
                            );
                            ok = false;
                        }
                        Some(c) => classes.push(c),
                    }
                }
                classes
            }
        };
        for class in &classes {
            if !class.chars().any(|c| !exclude.contains(c)) {
                self.report(
                    exclude_at,
                    format!("{field}.exclude"),
                    ProblemKind::InvalidValue,
                    format!(
                        "`exclude` removes every {} character, but the policy requires one: \
                         exclude fewer characters or drop `{}` from `classes`",
                        class.name(),
                        class.name()
                    ),
                );
                ok = false;
            }
        }

        // Invariant 6: secrets are unique by construction only if collisions are negligible.
        let n_chars = classes
            .iter()
            .flat_map(|c| c.chars())
            .filter(|c| !exclude.contains(*c))
            .count();
        if ok && n_chars > 0 {
            let bits_per_char = (n_chars as f64).log2();
            let bits = length as f64 * bits_per_char;
            if bits < MIN_POLICY_BITS {
                let at = length_at.unwrap_or(exclude_at);
                let fix = if n_chars > 1 {
                    format!(
                        "use a length of at least {} with these classes, or allow more \
                         characters (more classes, fewer exclusions)",
                        (MIN_POLICY_BITS / bits_per_char).ceil()
                    )
                } else {
                    "allow more characters (more classes, fewer exclusions)".to_owned()
                };
                self.report(
                    at,
                    &field,
                    ProblemKind::InvalidValue,
                    format!(
                        "policy `{name}` is too weak: {length} characters from {n_chars} allowed \
                         give about {bits:.0} bits, and rotor refuses policies below \
                         {MIN_POLICY_BITS:.0} bits (two accounts could get the same password); \
                         {fix}"
                    ),
                );
                ok = false;
            }
        }

        let schedule = match raw.schedule {
            None => None,
            Some(schedule) => match crate::schedule::Schedule::parse(&schedule.value) {
                Ok(parsed) => Some(parsed),
                Err(e) => {
                    self.report(
                        schedule.referenced,
                        format!("{field}.schedule"),
                        ProblemKind::InvalidValue,
                        format!("schedule \"{}\": {e}", schedule.value),
                    );
                    ok = false;
                    None
                }
            },
        };

        let max_age = match raw.max_age {
            None => None,
            Some(max_age) => match parse_age(&max_age.value) {
                Ok(age) => Some(age),
                Err(why) => {
                    self.report(
                        max_age.referenced,
                        format!("{field}.max_age"),
                        ProblemKind::InvalidValue,
                        format!(
                            "max_age \"{}\" {why}: write a number and a unit, e.g. 30d, 12h or 90m",
                            max_age.value
                        ),
                    );
                    ok = false;
                    None
                }
            },
        };

        let timezone = match raw.timezone {
            None => None,
            Some(tz) => match crate::schedule::parse_timezone(&tz.value) {
                Ok(zone) => Some(zone),
                Err(e) => {
                    self.report(
                        tz.referenced,
                        format!("{field}.timezone"),
                        ProblemKind::InvalidValue,
                        e.to_string(),
                    );
                    ok = false;
                    None
                }
            },
        };

        let window = match raw.window {
            None => None,
            Some(window) => {
                let window = self.window(&field, window);
                ok &= window.is_some();
                window
            }
        };

        let max_failed_logins = match raw.max_failed_logins {
            None => DEFAULT_MAX_FAILED_LOGINS,
            Some(n) if (1..=10).contains(&n.value) => n.value as u32,
            Some(n) => {
                self.report(
                    n.referenced,
                    format!("{field}.max_failed_logins"),
                    ProblemKind::InvalidValue,
                    format!(
                        "max_failed_logins {} is out of range: use 1 to 10, and keep it below the \
                         targets' lockout threshold (pam_faillock denies after 3 by default)",
                        n.value
                    ),
                );
                ok = false;
                DEFAULT_MAX_FAILED_LOGINS
            }
        };

        let checkout = match raw.checkout {
            None => Some(CheckoutPolicy::default()),
            Some(checkout) => self.checkout_policy(&field, checkout),
        };
        ok &= checkout.is_some();

        ok.then(|| Policy {
            name: name.to_owned(),
            length,
            classes,
            exclude,
            schedule,
            max_age,
            timezone,
            window,
            max_failed_logins,
            checkout: checkout.unwrap_or_default(),
        })
    }

    /// `window: { days: [mon-fri], hours: "01:00-05:00" }`: either may be left out (every
    /// day; all day), not both.
    fn window(&mut self, field: &str, raw: Spanned<RawWindow>) -> Option<Window> {
        let at_window = raw.referenced;
        let raw = raw.value;
        let field = format!("{field}.window");
        let mut ok = true;
        if raw.days.is_none() && raw.hours.is_none() {
            self.report(
                at_window,
                &field,
                ProblemKind::MissingField,
                "an empty window: give `days` (e.g. [mon-fri]), `hours` (e.g. \"01:00-05:00\") \
                 or both, or leave `window` out to rotate at any time",
            );
            return None;
        }
        let days = match raw.days {
            None => Weekdays::ALL,
            Some(list) => {
                if list.value.is_empty() {
                    self.report(
                        list.referenced,
                        format!("{field}.days"),
                        ProblemKind::InvalidValue,
                        "no days: list the days the window opens, e.g. [mon-fri] or [sat, sun], \
                         or leave `days` out for every day",
                    );
                    ok = false;
                }
                let mut days = Weekdays::NONE;
                for (day_idx, item) in list.value.into_iter().enumerate() {
                    match Weekdays::parse_item(&item.value) {
                        Ok(d) => days = days.union(d),
                        Err(e) => {
                            self.report(
                                item.referenced,
                                format!("{field}.days[{day_idx}]"),
                                ProblemKind::InvalidValue,
                                e.to_string(),
                            );
                            ok = false;
                        }
                    }
                }
                days
            }
        };
        let hours = match raw.hours {
            None => Hours::ALL_DAY,
            Some(hours) => match Hours::parse(&hours.value) {
                Ok(h) => h,
                Err(e) => {
                    self.report(
                        hours.referenced,
                        format!("{field}.hours"),
                        ProblemKind::InvalidValue,
                        e.to_string(),
                    );
                    ok = false;
                    Hours::ALL_DAY
                }
            },
        };
        ok.then_some(Window { days, hours })
    }

    /// `checkout: { approval: required | none, max_ttl: 8h, default_ttl: 2h }`.
    fn checkout_policy(
        &mut self,
        field: &str,
        raw: Spanned<RawCheckout>,
    ) -> Option<CheckoutPolicy> {
        let at_checkout = raw.referenced;
        let raw = raw.value;
        let mut policy = CheckoutPolicy::default();
        let mut ok = true;
        if let Some(approval) = raw.approval {
            match approval.value.as_str() {
                "required" => policy.approval = Approval::Required,
                "none" => policy.approval = Approval::None,
                other => {
                    self.report(
                        approval.referenced,
                        format!("{field}.checkout.approval"),
                        ProblemKind::InvalidValue,
                        format!(
                            "approval `{other}` is not one rotor knows: write `required` (a second \
                             person approves each checkout) or `none`"
                        ),
                    );
                    ok = false;
                }
            }
        }
        for (name, raw_ttl, slot) in [
            ("max_ttl", raw.max_ttl, &mut policy.max_ttl),
            ("default_ttl", raw.default_ttl, &mut policy.default_ttl),
        ] {
            let Some(ttl) = raw_ttl else { continue };
            match parse_age(&ttl.value) {
                Ok(d) if d <= MAX_CHECKOUT_TTL => *slot = d,
                Ok(_) => {
                    self.report(
                        ttl.referenced,
                        format!("{field}.checkout.{name}"),
                        ProblemKind::InvalidValue,
                        format!(
                            "{name} \"{}\" is longer than 7d, the longest checkout rotor grants: \
                             a vendor's access should end with the work",
                            ttl.value
                        ),
                    );
                    ok = false;
                }
                Err(why) => {
                    self.report(
                        ttl.referenced,
                        format!("{field}.checkout.{name}"),
                        ProblemKind::InvalidValue,
                        format!(
                            "{name} \"{}\" {why}: write a number and a unit, e.g. 8h, 90m or 1d",
                            ttl.value
                        ),
                    );
                    ok = false;
                }
            }
        }
        if ok && policy.default_ttl > policy.max_ttl {
            self.report(
                at_checkout,
                format!("{field}.checkout"),
                ProblemKind::InvalidValue,
                format!(
                    "default_ttl ({}) is longer than max_ttl ({}): make default_ttl at most max_ttl",
                    crate::text::duration_words(policy.default_ttl),
                    crate::text::duration_words(policy.max_ttl)
                ),
            );
            ok = false;
        }
        ok.then_some(policy)
    }

    fn host(
        &mut self,
        field: &str,
        raw: Spanned<RawHost>,
        policies: &BTreeMap<String, Policy>,
        seen_hosts: &mut HashMap<String, u64>,
    ) -> Option<Host> {
        let host_location = raw.referenced;
        let raw = raw.value;
        let mut ok = true;

        let name = self.unique_name(field, &raw.name, seen_hosts, "host", &mut ok);

        if let Err(why) = check_address(&raw.address.value) {
            self.report(
                raw.address.referenced,
                format!("{field}.address"),
                ProblemKind::InvalidValue,
                why,
            );
            ok = false;
        }
        let address = raw.address.value;

        let port = match raw.port {
            None => DEFAULT_PORT,
            Some(port) => match u16::try_from(port.value) {
                Ok(p) if p > 0 => p,
                _ => {
                    self.report(
                        port.referenced,
                        format!("{field}.port"),
                        ProblemKind::InvalidValue,
                        format!(
                            "port {} is out of range: use 1 to 65535 (SSH listens on 22 unless configured otherwise)",
                            port.value
                        ),
                    );
                    ok = false;
                    DEFAULT_PORT
                }
            },
        };

        let host_key = match (raw.host_key, raw.known_hosts) {
            (Some(key), Some(known_hosts)) => {
                self.report(
                    known_hosts.referenced,
                    format!("{field}.known_hosts"),
                    ProblemKind::InvalidValue,
                    format!(
                        "both `host_key` (line {}) and `known_hosts` are set: keep one, so there is \
                         a single place that says which key to trust",
                        key.referenced.line()
                    ),
                );
                None
            }
            (None, None) => {
                self.report(
                    host_location,
                    field,
                    ProblemKind::MissingField,
                    format!(
                        "no host key pinned: add `host_key: \"...\"` with the line printed by \
                         `ssh-keyscan -t ed25519 {address}` (compare its fingerprint with the \
                         host's console first), or `known_hosts: FILE`"
                    ),
                );
                None
            }
            (Some(key), None) => match check_host_key(&key.value, &address) {
                Ok(line) => Some(HostKeyPin::Key(line)),
                Err(why) => {
                    self.report(
                        key.referenced,
                        format!("{field}.host_key"),
                        ProblemKind::InvalidValue,
                        why,
                    );
                    None
                }
            },
            (None, Some(known_hosts)) => self
                .path(&known_hosts, &format!("{field}.known_hosts"))
                .map(HostKeyPin::KnownHosts),
        };

        let mut groups: Vec<String> = Vec::with_capacity(raw.groups.len());
        for (group_idx, group) in raw.groups.into_iter().enumerate() {
            let group_field = format!("{field}.groups[{group_idx}]");
            if let Err(why) = check_group_name(&group.value) {
                self.report(
                    group.referenced,
                    group_field,
                    ProblemKind::InvalidValue,
                    why,
                );
                ok = false;
            } else if groups.contains(&group.value) {
                self.report(
                    group.referenced,
                    group_field,
                    ProblemKind::Duplicate,
                    format!("group `{}` is listed twice: list it once", group.value),
                );
                ok = false;
            } else {
                groups.push(group.value);
            }
        }

        let connect_at = raw.connect.referenced;
        let connect_line = connect_at.line();
        let connect = self.connect(&format!("{field}.connect"), raw.connect);
        // The vault credential rotor logs in with, if any: when the host lists the connect
        // user among its accounts, rotor rotates that account last on the host and logs in
        // with what the vault holds for it, so the connect credential must be that listing.
        let vault_connect = match &connect {
            Some(ConnectIdentity {
                user,
                auth: ConnectAuth::Vault(credential),
            }) => Some((user.as_str().to_owned(), credential.clone())),
            _ => None,
        };
        // Lines of the connect user's listings, with their credential ids.
        let mut connect_listings: Vec<(u64, String)> = Vec::new();

        let mut accounts: Vec<Account> = Vec::with_capacity(raw.accounts.len());
        // Account name -> line of its first definition on this host, and its playbook's kind
        // once known. An account may be listed twice when one listing is a password playbook
        // and the other an SSH-key one: two credentials, the key one `HOST/ACCOUNT:key`.
        let mut seen_accounts: HashMap<String, (u64, Option<CredentialKind>, bool)> =
            HashMap::new();
        for (account_idx, raw_account) in raw.accounts.into_iter().enumerate() {
            let account_field = format!("{field}.accounts[{account_idx}]");
            let name = raw_account.value.name.value.clone();
            let line = raw_account.value.name.referenced.line();
            let name_at = raw_account.value.name.referenced;
            let kind = self.kind_of(&raw_account.value.playbook.value);
            if let Some((first_line, first_kind, twice)) = seen_accounts.get(&name)
                && (*twice || kind.is_none() || *first_kind == kind)
            {
                self.report(
                    name_at,
                    format!("{account_field}.name"),
                    ProblemKind::Duplicate,
                    format!(
                        "duplicate account \"{name}\" on host \"{}\" (first listed at line \
                         {first_line}): list each account once per host, or twice with one \
                         password playbook and one SSH-key playbook (two credentials: \
                         {}/{name} and {}/{name}:key)",
                        raw.name.value, raw.name.value, raw.name.value
                    ),
                );
                ok = false;
                continue;
            }
            if vault_connect
                .as_ref()
                .is_some_and(|(user, _)| *user == name)
            {
                connect_listings.push((line, name.clone()));
            }
            seen_accounts
                .entry(name)
                .and_modify(|seen| seen.2 = true)
                .or_insert((line, kind, false));
            match self.account(&account_field, raw_account, policies) {
                Some(account) => accounts.push(account),
                None => ok = false,
            }
        }
        // Of an account listed twice, the SSH-key listing is the `:key` credential.
        for account in &mut accounts {
            if account.recipe.kind == CredentialKind::SshKey
                && seen_accounts
                    .get(account.name.as_str())
                    .is_some_and(|seen| seen.2)
            {
                account.slot = Slot::Key;
            }
        }

        if let (Some((user, credential)), Some(host_name)) = (&vault_connect, &name)
            && let Some((line, _)) = connect_listings.first()
            && !accounts
                .iter()
                .any(|a| a.name.as_str() == user && a.credential(host_name) == *credential)
        {
            let listed: Vec<String> = accounts
                .iter()
                .filter(|a| a.name.as_str() == user)
                .map(|a| a.credential(host_name).to_string())
                .collect();
            self.report(
                connect_at,
                format!("{field}.connect.credential"),
                ProblemKind::InvalidValue,
                format!(
                    "`connect` (line {connect_line}) logs in as {user} with the password of {credential}, but {user} is rotated on this host as {} (line {line}): rotor would change the password under its own login. Write `credential: {}` so rotor logs in with what it rotates, or remove {user} from accounts",
                    listed.join(" and "),
                    listed.first().map_or(credential.to_string(), |c| c.clone())
                ),
            );
            ok = false;
        }
        let mut host = Host {
            name: name?,
            address,
            port,
            host_key: host_key?,
            groups,
            connect: connect?,
            accounts,
            connect_managed: None,
        };
        host.connect_managed = host.find_connect_credential();
        Some(host).filter(|_| ok)
    }

    fn connect(&mut self, field: &str, raw: Spanned<RawConnect>) -> Option<ConnectIdentity> {
        let location = raw.referenced;
        let raw = raw.value;
        let user = match AccountName::parse(&raw.user.value) {
            Ok(user) => Some(user),
            Err(why) => {
                self.report(
                    raw.user.referenced,
                    format!("{field}.user"),
                    ProblemKind::InvalidValue,
                    why,
                );
                None
            }
        };
        let auth = match (raw.key, raw.credential) {
            (Some(_), Some(credential)) => {
                self.report(
                    credential.referenced,
                    format!("{field}.credential"),
                    ProblemKind::InvalidValue,
                    "both `key` and `credential` are set: rotor logs in one way; keep one",
                );
                None
            }
            (None, None) => {
                self.report(
                    location,
                    field,
                    ProblemKind::MissingField,
                    "no way to log in: add `key: /path/to/private_key` (an SSH private key file) \
                     or `credential: HOST/ACCOUNT` (a password held in rotor's vault)",
                );
                None
            }
            (Some(key), None) => self
                .path(&key, &format!("{field}.key"))
                .map(ConnectAuth::KeyFile),
            (None, Some(credential)) => match CredentialId::parse(&credential.value) {
                Ok(id) => Some(ConnectAuth::Vault(id)),
                Err(why) => {
                    self.report(
                        credential.referenced,
                        format!("{field}.credential"),
                        ProblemKind::InvalidValue,
                        why,
                    );
                    None
                }
            },
        };
        Some(ConnectIdentity {
            user: user?,
            auth: auth?,
        })
    }

    /// The kind of the playbook `name`, if it is a loaded one.
    fn kind_of(&self, name: &str) -> Option<CredentialKind> {
        self.playbooks.get(name).map(|recipe| recipe.kind)
    }

    fn account(
        &mut self,
        field: &str,
        raw: Spanned<RawAccount>,
        policies: &BTreeMap<String, Policy>,
    ) -> Option<Account> {
        let raw = raw.value;
        let name = match AccountName::parse(&raw.name.value) {
            Ok(name) => Some(name),
            Err(why) => {
                self.report(
                    raw.name.referenced,
                    format!("{field}.name"),
                    ProblemKind::InvalidValue,
                    why,
                );
                None
            }
        };
        let recipe = match self.playbooks.get(&raw.playbook.value) {
            Some(recipe) if matches!(recipe.body, Body::Adapter(_)) => {
                self.report(
                    raw.playbook.referenced,
                    format!("{field}.playbook"),
                    ProblemKind::InvalidValue,
                    format!(
                        "playbook `{}` is for directory accounts (under `directories:`), not a host's: use a host playbook such as linux-password",
                        raw.playbook.value
                    ),
                );
                None
            }
            Some(recipe) => Some(recipe.clone()),
            None => {
                let names: Vec<&str> = self
                    .playbooks
                    .recipes()
                    .filter(|r| matches!(r.body, Body::Steps(_)))
                    .map(|r| r.name.as_str())
                    .collect();
                self.report(
                    raw.playbook.referenced,
                    format!("{field}.playbook"),
                    ProblemKind::UnknownReference,
                    format!(
                        "unknown playbook `{}`: known playbooks are {} (add your own in a directory named by `playbooks_dir:`){}",
                        raw.playbook.value,
                        names.join(", "),
                        did_you_mean(&raw.playbook.value, names.iter().copied())
                    ),
                );
                None
            }
        };
        let vars = match &recipe {
            Some(recipe) => self.account_vars(field, recipe, raw.vars, raw.playbook.referenced),
            None => None,
        };
        let policy = match raw.policy {
            None => Some("default".to_owned()),
            Some(policy) if policies.contains_key(&policy.value) => Some(policy.value),
            Some(policy) if self.broken_policies.contains(&policy.value) => None,
            Some(policy) => {
                let known = policies.keys().map(String::as_str).collect::<Vec<_>>();
                self.report(
                    policy.referenced,
                    format!("{field}.policy"),
                    ProblemKind::UnknownReference,
                    format!(
                        "unknown policy `{}`: define it under `policies:` or use one of {}{}",
                        policy.value,
                        known.join(", "),
                        did_you_mean(&policy.value, known.iter().copied()),
                    ),
                );
                None
            }
        };
        if let (Some(recipe), Some(policy)) = (&recipe, &policy)
            && let Some(p) = policies.get(policy)
            && let Err(why) = recipe.secret.constrain(p, &recipe.name)
        {
            self.report(
                raw.playbook.referenced,
                format!("{field}.policy"),
                ProblemKind::InvalidValue,
                why,
            );
            return None;
        }
        let recipe = recipe?;
        Some(Account {
            name: name?,
            slot: Slot::Main,
            playbook: recipe.name.clone(),
            recipe,
            vars: vars?,
            policy: policy?,
        })
    }

    /// An account's `vars:`: each one its playbook declares, with a value of its kind; a
    /// variable without a default must be given. Gives every declared variable's value.
    fn account_vars(
        &mut self,
        field: &str,
        recipe: &crate::recipe::Recipe,
        raw: BTreeMap<String, Spanned<String>>,
        playbook_at: Location,
    ) -> Option<BTreeMap<String, String>> {
        let mut ok = true;
        let mut values = BTreeMap::new();
        for (name, value) in raw {
            let Some(spec) = recipe.vars.get(&name) else {
                let known: Vec<&str> = recipe.vars.keys().map(String::as_str).collect();
                let declared = if known.is_empty() {
                    "it declares no variables".to_owned()
                } else {
                    format!("it declares {}", known.join(", "))
                };
                self.report(
                    value.referenced,
                    format!("{field}.vars.{name}"),
                    ProblemKind::UnknownField,
                    format!(
                        "playbook `{}` has no variable `{name}`: {declared}{}",
                        recipe.name,
                        did_you_mean(&name, known.iter().copied())
                    ),
                );
                ok = false;
                continue;
            };
            if let Err(why) = spec.kind.check(&value.value) {
                self.report(
                    value.referenced,
                    format!("{field}.vars.{name}"),
                    ProblemKind::InvalidValue,
                    format!(
                        "{why} ({} variable of playbook `{}`)",
                        spec.kind.name(),
                        recipe.name
                    ),
                );
                ok = false;
                continue;
            }
            values.insert(name, value.value);
        }
        for (name, spec) in &recipe.vars {
            if values.contains_key(name) {
                continue;
            }
            match &spec.default {
                Some(default) => {
                    values.insert(name.clone(), default.clone());
                }
                None => {
                    self.report(
                        playbook_at,
                        format!("{field}.vars"),
                        ProblemKind::MissingField,
                        format!(
                            "playbook `{}` needs variable `{name}` ({}): add `vars: {{ {name}: ... }}` to the account",
                            recipe.name, spec.description
                        ),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(values)
    }

    /// A host's or directory's name: valid, and unique among hosts and directories (both are
    /// the first half of a credential address).
    fn unique_name(
        &mut self,
        field: &str,
        raw: &Spanned<String>,
        seen: &mut HashMap<String, u64>,
        kind: &str,
        ok: &mut bool,
    ) -> Option<HostName> {
        let name = match HostName::parse(&raw.value) {
            Ok(name) => Some(name),
            Err(why) => {
                self.report(
                    raw.referenced,
                    format!("{field}.name"),
                    ProblemKind::InvalidValue,
                    why,
                );
                None
            }
        };
        if let Some(first_line) = seen.get(&raw.value) {
            self.report(
                raw.referenced,
                format!("{field}.name"),
                ProblemKind::Duplicate,
                format!(
                    "duplicate {kind} \"{}\" (first defined at line {first_line}): host and directory names must be unique",
                    raw.value
                ),
            );
            *ok = false;
        } else {
            seen.insert(raw.value.clone(), raw.referenced.line());
        }
        name
    }

    /// One `directories:` entry.
    pub(super) fn directory(
        &mut self,
        field: &str,
        raw: Spanned<RawDirectory>,
        policies: &BTreeMap<String, Policy>,
        seen_names: &mut HashMap<String, u64>,
    ) -> Option<Directory> {
        let location = raw.referenced;
        let raw = raw.value;
        let mut ok = true;
        let name = self.unique_name(field, &raw.name, seen_names, "directory", &mut ok);
        let url = raw.url.value.trim().to_owned();
        let url_ok = ["ldap://", "ldaps://"].iter().any(|scheme| {
            url.strip_prefix(scheme)
                .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace))
        });
        if !url_ok {
            self.report(
                raw.url.referenced,
                format!("{field}.url"),
                ProblemKind::InvalidValue,
                format!(
                    "`{url}` is not an LDAP URL: write ldap://HOST[:PORT] (StartTLS is always used) or ldaps://HOST[:PORT]"
                ),
            );
            ok = false;
        }
        let ca_file = match &raw.ca_file {
            Some(p) => {
                let path = self.path(p, &format!("{field}.ca_file"));
                ok &= path.is_some();
                path
            }
            None => None,
        };
        let bind_dn = raw.bind.value.dn.value.trim().to_owned();
        if let Err(why) = check_dn(&bind_dn) {
            self.report(
                raw.bind.value.dn.referenced,
                format!("{field}.bind.dn"),
                ProblemKind::InvalidValue,
                format!("{why}: write e.g. \"cn=rotor,ou=system,dc=example,dc=org\""),
            );
            ok = false;
        }
        let bind_credential = match CredentialId::parse(&raw.bind.value.credential.value) {
            Ok(c) => Some(c),
            Err(why) => {
                self.report(
                    raw.bind.value.credential.referenced,
                    format!("{field}.bind.credential"),
                    ProblemKind::InvalidValue,
                    why,
                );
                None
            }
        };
        let policy = match &raw.policy {
            None => "default".to_owned(),
            Some(p) if policies.contains_key(&p.value) => p.value.clone(),
            Some(p) if self.broken_policies.contains(&p.value) => {
                ok = false;
                String::new()
            }
            Some(p) => {
                let known: Vec<&str> = policies.keys().map(String::as_str).collect();
                self.report(
                    p.referenced,
                    format!("{field}.policy"),
                    ProblemKind::UnknownReference,
                    format!(
                        "unknown policy `{}`: known policies are {}",
                        p.value,
                        known.join(", ")
                    ),
                );
                ok = false;
                String::new()
            }
        };
        let mut groups = Vec::new();
        for (group_idx, group) in raw.groups.into_iter().enumerate() {
            if let Err(why) = check_group_name(&group.value) {
                self.report(
                    group.referenced,
                    format!("{field}.groups[{group_idx}]"),
                    ProblemKind::InvalidValue,
                    why,
                );
                ok = false;
            } else if !groups.contains(&group.value) {
                groups.push(group.value);
            }
        }
        if raw.accounts.is_empty() {
            self.report(
                location,
                format!("{field}.accounts"),
                ProblemKind::MissingField,
                "a directory needs accounts: list them by `dn:` or find them with `search: { base, filter }`",
            );
            ok = false;
        }
        let mut accounts = Vec::new();
        for (idx, acc) in raw.accounts.into_iter().enumerate() {
            let afield = format!("{field}.accounts[{idx}]");
            let at = acc.referenced;
            match (acc.value.dn, acc.value.search) {
                (Some(dn), None) => {
                    match check_dn(dn.value.trim()).and_then(|()| uid_of(&dn.value)) {
                        Ok(_) => accounts.push(DirectoryAccounts::Dn(dn.value.trim().to_owned())),
                        Err(why) => {
                            self.report(
                                dn.referenced,
                                format!("{afield}.dn"),
                                ProblemKind::InvalidValue,
                                why,
                            );
                            ok = false;
                        }
                    }
                }
                (None, Some(search)) => {
                    let s = search.value;
                    let scope = match s.scope.as_ref().map(|v| v.value.as_str()) {
                        None | Some("one") => LdapScope::One,
                        Some("sub") => LdapScope::Sub,
                        Some(other) => {
                            self.report(
                                search.referenced,
                                format!("{afield}.search.scope"),
                                ProblemKind::InvalidValue,
                                format!("unknown search scope `{other}`: use one (children of base) or sub (the whole subtree)"),
                            );
                            ok = false;
                            LdapScope::One
                        }
                    };
                    let filter = s.filter.value.trim().to_owned();
                    if !(filter.starts_with('(') && filter.ends_with(')')) {
                        self.report(
                            s.filter.referenced,
                            format!("{afield}.search.filter"),
                            ProblemKind::InvalidValue,
                            format!("`{filter}` is not an LDAP filter: write it in parentheses, e.g. \"(objectClass=account)\""),
                        );
                        ok = false;
                    } else if ldap3::parse_filter(&filter).is_err() {
                        // ldap3's own parser: what passes here is what rotor will send.
                        self.report(
                            s.filter.referenced,
                            format!("{afield}.search.filter"),
                            ProblemKind::InvalidValue,
                            format!("`{filter}` is not a valid LDAP filter (RFC 4515): check that the parentheses balance, that each item is (attr=value), (&...), (|...) or (!...), and that special characters in values are escaped as \\28 ( \\29 ) \\2a * \\5c \\"),
                        );
                        ok = false;
                    }
                    let base = s.base.value.trim();
                    if let Err(why) = check_dn(base) {
                        self.report(
                            s.base.referenced,
                            format!("{afield}.search.base"),
                            ProblemKind::InvalidValue,
                            format!("{why}: write the search base as a DN, e.g. \"ou=service,dc=example,dc=org\""),
                        );
                        ok = false;
                    }
                    accounts.push(DirectoryAccounts::Search {
                        base: s.base.value.trim().to_owned(),
                        filter,
                        scope,
                    });
                }
                _ => {
                    self.report(
                        at,
                        afield,
                        ProblemKind::InvalidValue,
                        "write exactly one of `dn: \"uid=...,ou=...\"` or `search: { base: ..., filter: ... }`",
                    );
                    ok = false;
                }
            }
        }
        let danger_accept_invalid_certs = raw
            .danger_accept_invalid_certs
            .map(|v| v.value)
            .unwrap_or(false);
        if !(ok && name.is_some() && bind_credential.is_some()) {
            return None;
        }
        Some(Directory {
            name: name?,
            url,
            ca_file,
            danger_accept_invalid_certs,
            bind_dn,
            bind_credential: bind_credential?,
            groups,
            policy,
            accounts,
        })
    }

    /// A file path from the inventory, relative ones taken from the inventory's directory.
    fn path(&mut self, raw: &Spanned<String>, field: &str) -> Option<PathBuf> {
        let text = raw.value.as_str();
        let why = if text.trim().is_empty() {
            "empty path: write the path to the file"
        } else if text.starts_with('~') {
            "rotor does not expand `~`: write the full path, or one relative to the inventory file"
        } else {
            let path = Path::new(text);
            if path.is_absolute() {
                return Some(path.to_owned());
            }
            let dir = self.file.parent().unwrap_or(Path::new(""));
            return Some(dir.join(path));
        };
        self.report(raw.referenced, field, ProblemKind::InvalidValue, why);
        None
    }
}

/// Checks a DN's syntax (RFC 4514) well enough that what rotor sends is a DN: no NUL or other
/// control character (raw or escaped as `\00`..`\1F`), every RDN `attr=value` (several joined
/// by `+`), attribute names as keystrings or OIDs, and escapes complete. Says what is wrong.
pub(super) fn check_dn(dn: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("`{}` is not a DN: {why}", dn.escape_debug()));
    if dn.is_empty() {
        return bad("it is empty");
    }
    if dn.chars().any(char::is_control) {
        return bad("it holds a control character (NUL, newline, ...)");
    }
    // Split into attribute-value assertions on unescaped `,` and `+`, checking escapes.
    let mut avas: Vec<String> = vec![String::new()];
    let mut chars = dn.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(next) = chars.next() else {
                    return bad("it ends in a lone backslash");
                };
                if next.is_ascii_hexdigit() {
                    let Some(low) = chars.next().filter(char::is_ascii_hexdigit) else {
                        return bad("a `\\` escape needs two hex digits or one special character");
                    };
                    let byte = u8::from_str_radix(&format!("{next}{low}"), 16).unwrap_or(0);
                    if byte < 0x20 || byte == 0x7f {
                        return bad("it holds an escaped control character (NUL, newline, ...)");
                    }
                } else if !" \"#+,;<=>\\".contains(next) {
                    return bad("a `\\` escape needs two hex digits or one special character");
                }
                // Escaped: part of the value, never a separator.
                avas.last_mut().unwrap_or(&mut String::new()).push('x');
            }
            ',' | '+' => avas.push(String::new()),
            c => avas.last_mut().unwrap_or(&mut String::new()).push(c),
        }
    }
    for ava in &avas {
        let Some((attr, _value)) = ava.split_once('=') else {
            return bad("each part must be attribute=value (an unescaped `,` or `+` splits parts)");
        };
        let attr = attr.trim();
        let keystring = attr.starts_with(|c: char| c.is_ascii_alphabetic())
            && attr.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        let oid = !attr.is_empty()
            && attr
                .split('.')
                .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if !(keystring || oid) {
            return bad(&format!(
                "`{}` is not an attribute name (letters, digits and `-`, or an OID)",
                attr.escape_debug()
            ));
        }
    }
    Ok(())
}

/// Policy names: what can be written after `policy:` without quoting.
fn is_simple_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// Group names follow the host name rule so that `group:NAME` needs no quoting.
pub(super) fn check_group_name(name: &str) -> Result<(), String> {
    if is_simple_name(name) {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid group name: use 1 to 64 letters, digits, '.', '-' or '_'"
        ))
    }
}

/// `30d`, `12h`, `90m`: a positive whole number and one unit.
pub fn parse_age(text: &str) -> Result<Duration, &'static str> {
    let text = text.trim();
    let Some(unit) = text.chars().last().filter(char::is_ascii_alphabetic) else {
        return Err("has no unit");
    };
    let seconds_per_unit = match unit {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        _ => return Err("has an unknown unit (use d, h or m)"),
    };
    // The unit is one ASCII letter, one byte, so this cut is on a character boundary.
    let number = &text[..text.len() - 1];
    let n: u64 = number
        .parse()
        .map_err(|_| "is not a whole number with a unit")?;
    if n == 0 {
        return Err("is zero");
    }
    n.checked_mul(seconds_per_unit)
        .map(Duration::from_secs)
        .ok_or("is too large")
}

/// An IP address or a DNS name; catches the usual slips (a port or a URL in the address).
fn check_address(text: &str) -> Result<(), String> {
    if text.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let bad = |why: &str| Err(format!("`{text}` is not a valid address: {why}"));
    if text.trim().is_empty() {
        return bad("write an IP address or a DNS name");
    }
    if text.contains("://") {
        return bad("write a host name or IP address, not a URL");
    }
    if text.starts_with('[') {
        return bad("write an IPv6 address without brackets; the port goes in `port:`");
    }
    if let Some((_, port)) = text.rsplit_once(':')
        && !port.is_empty()
        && port.chars().all(|c| c.is_ascii_digit())
        && !text.contains("::")
    {
        return bad("put the port in `port:`, not in the address");
    }
    let name = text.strip_suffix('.').unwrap_or(text);
    let labels_ok = name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !labels_ok {
        return bad("write an IP address (10.0.0.5) or a DNS name (letters, digits, '-' and '.')");
    }
    if name
        .split('.')
        .all(|label| label.chars().all(|c| c.is_ascii_digit()))
    {
        return bad("this looks like an IPv4 address but is not one (each part is 0 to 255)");
    }
    Ok(())
}

/// `TYPE BASE64 [comment]`, with a known type and a key blob that decodes and names that
/// same type (the SSH wire format starts with it), so a damaged paste is caught here.
fn check_host_key(line: &str, address: &str) -> Result<String, String> {
    let keyscan = format!("`ssh-keyscan -t ed25519 {address}`");
    let mut parts = line.split_whitespace();
    let Some(kind) = parts.next() else {
        return Err(format!(
            "empty host key: paste the key line printed by {keyscan}"
        ));
    };
    let b64 = parts.next();
    if !HOST_KEY_TYPES.contains(&kind) {
        if let Some(second) = b64
            && HOST_KEY_TYPES.contains(&second)
        {
            return Err(format!(
                "this looks like a known_hosts or ssh-keyscan line: remove the leading `{kind}` \
                 so the value starts with the key type `{second}`"
            ));
        }
        return Err(format!(
            "unknown host key type `{kind}`: use one of {} (as printed by {keyscan})",
            HOST_KEY_TYPES.join(", ")
        ));
    }
    let Some(b64) = b64 else {
        return Err(format!(
            "the key data is missing after `{kind}`: paste the whole line printed by {keyscan}"
        ));
    };
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| {
            format!("the key data is not valid base64 ({e}): paste it again from {keyscan}")
        })?;
    if wire_key_type(&blob) != Some(kind.as_bytes()) {
        return Err(format!(
            "the key data is not a `{kind}` key: the line is damaged or its type was changed; \
             paste it again from {keyscan}"
        ));
    }
    Ok(line.trim().to_owned())
}

/// The key type at the start of an SSH public key blob: a big-endian u32 length, then the name.
fn wire_key_type(blob: &[u8]) -> Option<&[u8]> {
    let len_bytes: [u8; 4] = blob.get(..4)?.try_into().ok()?;
    let len = usize::try_from(u32::from_be_bytes(len_bytes)).ok()?;
    blob.get(4..4usize.checked_add(len)?)
}

/// ", did you mean `x`?" when a known name is close to `input`, else "".
pub(crate) fn did_you_mean<'a>(input: &str, known: impl Iterator<Item = &'a str>) -> String {
    match close_matches(input, known).as_slice() {
        [] => String::new(),
        [one] => format!("; did you mean `{one}`?"),
        many => format!(
            "; did you mean one of {}?",
            many.iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Known names within a small edit distance of `input`, closest first, at most three.
pub(crate) fn close_matches<'a>(input: &str, known: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let limit = (input.chars().count() / 3).clamp(1, 3);
    let mut matches: Vec<(usize, &str)> = known
        .filter_map(|name| {
            let distance = strsim::levenshtein(input, name);
            (distance <= limit && distance > 0).then_some((distance, name))
        })
        .collect();
    matches.sort();
    matches.dedup();
    matches.into_iter().take(3).map(|(_, name)| name).collect()
}

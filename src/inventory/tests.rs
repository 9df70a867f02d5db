//! Data-driven tests: `check` and `select` are the only callers of the API, so the tests
//! read as inventory text in, message out, and survive refactors.

use std::path::Path;

use insta::assert_snapshot;
use proptest::prelude::*;

use super::*;

const FILE: &str = "lab/inventory.yaml";
/// A well-formed ed25519 public key (not a real host's).
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f";

/// Parses `yaml` as lab/inventory.yaml: the summary if valid, else the error as printed.
fn check(yaml: &str) -> String {
    match parse(yaml, Path::new(FILE)) {
        Ok(inventory) => inventory.summary().to_string(),
        Err(err) => err.to_string(),
    }
}

/// One host, `body` appended to its mapping (indented by 4).
fn host(body: &str) -> String {
    format!(
        "version: 1\nhosts:\n  - name: h1\n    address: 10.0.0.1\n{body}",
        body = indent(body)
    )
}

/// A complete host with `extra` lines after the standard ones.
fn full_host(extra: &str) -> String {
    host(&format!(
        "host_key: \"{KEY}\"\nconnect: {{ user: root, key: /etc/rotor/admin }}\n{extra}"
    ))
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// Parses a valid inventory, applies the scopes, and lists the selection (or the error).
fn select(yaml: &str, scopes: &[&str]) -> String {
    let inventory = match parse(yaml, Path::new(FILE)) {
        Ok(inventory) => inventory,
        Err(err) => return format!("inventory error: {err}"),
    };
    match inventory.select_written(scopes) {
        Ok(selection) => selection
            .hosts
            .iter()
            .map(|h| {
                let accounts: Vec<&str> = h.accounts.iter().map(|a| a.name.as_str()).collect();
                format!("{}: {}", h.name, accounts.join(" "))
            })
            .chain(selection.directories.iter().map(|d| {
                let only = match &d.only {
                    None => "(all)".to_owned(),
                    Some(uids) => uids
                        .iter()
                        .map(|u| u.as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                };
                format!("{} (directory): {only}", d.directory.name)
            }))
            .collect::<Vec<_>>()
            .join("\n"),
        Err(err) => err.to_string(),
    }
}

/// Table-driven scope tests: each row's scopes (as written on the command line) against
/// `yaml`, with the selection or the error, in one snapshot.
fn check_scopes(yaml: &str, rows: &[&[&str]]) -> String {
    rows.iter()
        .map(|scopes| {
            let got = select(yaml, scopes);
            let got = if got.contains('\n') {
                format!("\n  {}", got.replace('\n', "\n  "))
            } else {
                format!(" {got}")
            };
            format!("{scopes:?} ->{got}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const LAB: &str = r#"
version: 1
policies:
  default: { length: 24, classes: [lower, upper, digit, symbol], exclude: "\"'\\`", schedule: "0 3 * * 0", max_age: 30d, timezone: Asia/Tokyo, window: { days: [mon-fri, sun], hours: "22:00-04:00" } }
  short-lived: { length: 32, max_age: 12h }
hosts:
  - name: emr-db-01
    address: 10.0.0.5
    port: 22
    host_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f root@emr-db-01"
    groups: [emr, db]
    connect: { user: root, key: /etc/rotor/admin_ed25519 }
    accounts:
      - { name: svc_app, playbook: linux-password }
      - { name: svc_backup, playbook: linux-password, policy: default }
  - name: emr-app-01
    address: app01.hospital.example
    port: 2222
    known_hosts: keys/known_hosts
    groups: [emr]
    connect: { user: rotor, key: keys/rotor_ed25519 }
    accounts:
      - { name: svc_app, playbook: linux-password, policy: short-lived }
      - { name: rotor, playbook: linux-password }
  - name: host-001
    address: fd00::7
    host_key: "ssh-rsa AAAAB3NzaC1yc2EAAAABAw=="
    connect: { user: root, key: admin_key }
"#;

#[test]
fn valid_inventory() {
    assert_snapshot!(check(LAB), @"
    lab/inventory.yaml: 3 hosts, 4 accounts, 2 groups, 2 policies, 1 playbook used
      groups:    db, emr
      policies:  default, short-lived
      playbooks: linux-password

      HOST        ADDRESS                      GROUPS  ACCOUNTS
      emr-db-01   10.0.0.5:22                  emr,db  2
      emr-app-01  app01.hospital.example:2222  emr     2
      host-001    [fd00::7]:22                 -       0
    ");
    let inventory = parse(LAB, Path::new(FILE)).unwrap();
    let default = &inventory.policies["default"];
    assert_eq!(default.exclude, "\"'\\`");
    assert_eq!(default.max_age, Some(Duration::from_secs(30 * 86_400)));
    let schedule = default.schedule.as_ref().map(|s| s.as_str());
    assert_eq!(schedule, Some("0 3 * * 0"));
    assert_eq!(default.timezone, Some(chrono_tz::Tz::Asia__Tokyo));
    assert_eq!(
        default.window.map(|w| w.to_string()).as_deref(),
        Some("mon,tue,wed,thu,fri,sun 22:00-04:00")
    );
    assert_eq!(inventory.policies["short-lived"].window, None);
    let short = &inventory.policies["short-lived"];
    assert_eq!((short.length, short.classes.len()), (32, 4));
    // Relative paths are taken from the inventory's directory.
    assert_eq!(
        inventory.hosts[1].host_key,
        HostKeyPin::KnownHosts(PathBuf::from("lab/keys/known_hosts"))
    );
    assert_eq!(
        inventory.hosts[2].connect.auth,
        ConnectAuth::KeyFile(PathBuf::from("lab/admin_key"))
    );
    assert_eq!(inventory.hosts[2].port, 22);
}

#[test]
fn default_policy_is_built_in() {
    let inventory = parse(&full_host(""), Path::new(FILE)).unwrap();
    assert_eq!(inventory.policies.len(), 1);
    assert_eq!(inventory.policies["default"], validate::default_policy());
}

#[test]
fn minimal_and_empty() {
    assert_snapshot!(check("version: 1\n"), @"
    lab/inventory.yaml: 0 hosts, 0 accounts, 0 groups, 1 policy, 0 playbooks used
      groups:    (none)
      policies:  default
      playbooks: (none)
    ");
    assert_snapshot!(check(""), @"lab/inventory.yaml: the inventory is empty: start it with `version: 1`, then `hosts:`");
    assert_snapshot!(check("hosts: []\n"), @"lab/inventory.yaml:1:1: version: missing field `version`: start the file with `version: 1`");
    assert_snapshot!(check("version: 2\n"), @"lab/inventory.yaml:1:10: version: inventory version 2 is not supported: this rotor reads `version: 1`");
}

#[test]
fn yaml_errors() {
    assert_snapshot!(check("version: 1\nhosts:\n  - name: [unclosed\n"), @"lab/inventory.yaml:3:11: hosts[0].name: expected a host name (text) here (quote it if it contains `[`, `{`, `:` or `#`)");
    assert_snapshot!(check("version: 1\nhosts: \"a\n"), @"lab/inventory.yaml:2:8: unclosed quote: this is not valid YAML here; check indentation and quoting");
    assert_snapshot!(check("- just\n- a list\n"), @"lab/inventory.yaml:1:1: expected a mapping (`key: value` lines) here");
    assert_snapshot!(check("version: 1\nversion: 1\n"), @"lab/inventory.yaml:2:1: version: `version` appears twice in the same mapping: keep one");
}

#[test]
fn unknown_fields() {
    assert_snapshot!(check("version: 1\nhost:\n  - name: h1\n"), @"lab/inventory.yaml:2:1: host: unknown field `host`: allowed here are version, playbooks_dir, policies, hosts, directories; did you mean `hosts`?");
    assert_snapshot!(check(&full_host("hostkey: x")), @"lab/inventory.yaml:7:5: hosts[0].hostkey: unknown field `hostkey`: allowed here are name, address, port, host_key, known_hosts, groups, connect, accounts; did you mean `host_key`?");
    assert_snapshot!(check(&full_host("accounts:\n  - { name: a, playbok: linux-password }")), @"lab/inventory.yaml:8:20: hosts[0].accounts[0].playbok: unknown field `playbok`: allowed here are name, playbook, policy, vars; did you mean `playbook`?");
    assert_snapshot!(check("version: 1\npolicies:\n  default: { lenght: 30 }\n"), @"lab/inventory.yaml:3:14: policies.default.lenght: unknown field `lenght`: allowed here are length, classes, exclude, schedule, max_age, timezone, max_failed_logins, checkout, window; did you mean `length`?");
}

#[test]
fn missing_fields() {
    assert_snapshot!(check("hosts: []\n"), @"lab/inventory.yaml:1:1: version: missing field `version`: start the file with `version: 1`");
    assert_snapshot!(check("version: 1\nhosts:\n  - name: h1\n"), @"lab/inventory.yaml:3:5: hosts[0].address: missing field `address`: add `address: ...` with the host's IP address or DNS name");
    assert_snapshot!(check(&host(&format!("host_key: \"{KEY}\""))), @"lab/inventory.yaml:5:5: hosts[0].connect: missing field `connect`: add `connect: { user: root, key: /path/to/private_key }`, how rotor logs in");
    assert_snapshot!(check(&full_host("accounts:\n  - { name: a }")), @"lab/inventory.yaml:8:11: hosts[0].accounts[0].playbook: missing field `playbook`: add `playbook: linux-password`");
    assert_snapshot!(check(&host(&format!("host_key: \"{KEY}\"\nconnect: {{ key: /k }}"))), @"lab/inventory.yaml:6:16: hosts[0].connect.user: missing field `user`: add `user: ...`, the account rotor logs in as");
}

#[test]
fn wrong_types() {
    assert_snapshot!(check(&full_host("port: ssh")), @"lab/inventory.yaml:7:11: hosts[0].port: expected a port number from 1 to 65535: e.g. `port: 22`");
    assert_snapshot!(check(&full_host("groups: emr")), @"lab/inventory.yaml:7:13: hosts[0].groups: expected a list here");
    assert_snapshot!(check("version: one\n"), @"lab/inventory.yaml:1:10: version: expected the inventory version, 1: write `version: 1`");
    assert_snapshot!(check("version: 1\nhosts: {}\n"), @"lab/inventory.yaml:2:8: hosts: expected a list here");
    assert_snapshot!(check(&full_host("accounts: [svc_app]")), @"lab/inventory.yaml:7:16: hosts[0].accounts[0]: expected a mapping (`key: value` lines) here");
}

#[test]
fn duplicates() {
    let yaml = format!(
        "{}  - name: h1\n    address: 10.0.0.2\n    host_key: \"{KEY}\"\n    connect: {{ user: root, key: /k }}\n",
        full_host("")
    );
    assert_snapshot!(check(&yaml), @r#"lab/inventory.yaml:7:11: hosts[1].name: duplicate host "h1" (first defined at line 3): host and directory names must be unique"#);
    assert_snapshot!(check(&full_host("accounts:\n  - { name: a, playbook: linux-password }\n  - { name: a, playbook: linux-password }")), @r#"lab/inventory.yaml:9:17: hosts[0].accounts[1].name: duplicate account "a" on host "h1" (first listed at line 8): list each account once per host, or twice with one password playbook and one SSH-key playbook (two credentials: h1/a and h1/a:key)"#);
    // Twice with a password and a key playbook: two credentials, the key one `:key`.
    let inv = crate::inventory::parse(
        &full_host("accounts:\n  - { name: a, playbook: linux-ssh-key }\n  - { name: a, playbook: linux-password }"),
        std::path::Path::new("lab/inventory.yaml"),
    )
    .unwrap();
    let creds: Vec<String> = inv.hosts[0]
        .accounts
        .iter()
        .map(|a| a.credential(&inv.hosts[0].name).to_string())
        .collect();
    assert_eq!(creds, ["h1/a:key", "h1/a"]);
    assert_snapshot!(check(&full_host("groups: [emr, emr]")), @"lab/inventory.yaml:7:19: hosts[0].groups[1]: group `emr` is listed twice: list it once");
}

#[test]
fn addresses() {
    for bad in [
        "10.0.0.5:22",
        "ssh://h1",
        "[fd00::1]",
        "999.1.1.1",
        "bad_name.example",
        "-x",
        "",
    ] {
        let yaml = format!(
            "version: 1\nhosts:\n  - name: h1\n    address: \"{bad}\"\n    host_key: \"{KEY}\"\n    connect: {{ user: root, key: /k }}\n"
        );
        let err = parse(&yaml, Path::new(FILE)).unwrap_err();
        assert_eq!(err.problems()[0].kind, ProblemKind::InvalidValue, "{bad}");
        assert_eq!(err.problems()[0].field, "hosts[0].address", "{bad}");
    }
    assert_snapshot!(check(&host(&format!("address: 10.0.0.5:22\nhost_key: \"{KEY}\"\nconnect: {{ user: root, key: /k }}")).replace("    address: 10.0.0.1\n", "")), @"lab/inventory.yaml:4:14: hosts[0].address: `10.0.0.5:22` is not a valid address: put the port in `port:`, not in the address");
    for good in [
        "10.0.0.5",
        "fd00::1",
        "db01",
        "db-01.hospital.example",
        "db01.example.",
    ] {
        let yaml = format!(
            "version: 1\nhosts:\n  - name: h1\n    address: \"{good}\"\n    host_key: \"{KEY}\"\n    connect: {{ user: root, key: /k }}\n"
        );
        assert!(parse(&yaml, Path::new(FILE)).is_ok(), "{good}");
    }
    assert_snapshot!(check(&full_host("port: 70000")), @"lab/inventory.yaml:7:11: hosts[0].port: port 70000 is out of range: use 1 to 65535 (SSH listens on 22 unless configured otherwise)");
    assert_snapshot!(check(&full_host("port: 0")), @"lab/inventory.yaml:7:11: hosts[0].port: port 0 is out of range: use 1 to 65535 (SSH listens on 22 unless configured otherwise)");
}

#[test]
fn host_keys() {
    let with_key = |key: &str| {
        check(&host(&format!(
            "host_key: \"{key}\"\nconnect: {{ user: root, key: /k }}"
        )))
    };
    assert_snapshot!(check(&host("connect: { user: root, key: /k }")), @r#"lab/inventory.yaml:3:5: hosts[0]: no host key pinned: add `host_key: "..."` with the line printed by `ssh-keyscan -t ed25519 10.0.0.1` (compare its fingerprint with the host's console first), or `known_hosts: FILE`"#);
    assert_snapshot!(check(&host(&format!("host_key: \"{KEY}\"\nknown_hosts: /etc/ssh/known\nconnect: {{ user: root, key: /k }}"))), @"lab/inventory.yaml:6:18: hosts[0].known_hosts: both `host_key` (line 5) and `known_hosts` are set: keep one, so there is a single place that says which key to trust");
    assert_snapshot!(with_key("ssh-dss AAAA"), @"lab/inventory.yaml:5:15: hosts[0].host_key: unknown host key type `ssh-dss`: use one of ssh-ed25519, ecdsa-sha2-nistp256, ecdsa-sha2-nistp384, ecdsa-sha2-nistp521, ssh-rsa (as printed by `ssh-keyscan -t ed25519 10.0.0.1`)");
    assert_snapshot!(with_key(&format!("10.0.0.1 {KEY}")), @"lab/inventory.yaml:5:15: hosts[0].host_key: this looks like a known_hosts or ssh-keyscan line: remove the leading `10.0.0.1` so the value starts with the key type `ssh-ed25519`");
    assert_snapshot!(with_key("ssh-ed25519"), @"lab/inventory.yaml:5:15: hosts[0].host_key: the key data is missing after `ssh-ed25519`: paste the whole line printed by `ssh-keyscan -t ed25519 10.0.0.1`");
    assert_snapshot!(with_key("ssh-ed25519 not*base64"), @"lab/inventory.yaml:5:15: hosts[0].host_key: the key data is not valid base64 (Invalid symbol 42, offset 3.): paste it again from `ssh-keyscan -t ed25519 10.0.0.1`");
    // An RSA key blob labelled as ed25519.
    assert_snapshot!(with_key("ssh-ed25519 AAAAB3NzaC1yc2EAAAABAw=="), @"lab/inventory.yaml:5:15: hosts[0].host_key: the key data is not a `ssh-ed25519` key: the line is damaged or its type was changed; paste it again from `ssh-keyscan -t ed25519 10.0.0.1`");
    assert_snapshot!(with_key(""), @"lab/inventory.yaml:5:15: hosts[0].host_key: empty host key: paste the key line printed by `ssh-keyscan -t ed25519 10.0.0.1`");
    assert_snapshot!(check(&host(&format!("host_key: \"{KEY}\"\nconnect: {{ user: root, key: ~/.ssh/id }}"))), @"lab/inventory.yaml:6:33: hosts[0].connect.key: rotor does not expand `~`: write the full path, or one relative to the inventory file");
}

#[test]
fn connect() {
    assert_snapshot!(check(&host(&format!("host_key: \"{KEY}\"\nconnect: {{ user: root }}"))), @"lab/inventory.yaml:6:14: hosts[0].connect: no way to log in: add `key: /path/to/private_key` (an SSH private key file) or `credential: HOST/ACCOUNT` (a password held in rotor's vault)");
    assert_snapshot!(check(&host(&format!("host_key: \"{KEY}\"\nconnect: {{ user: root, key: /k, credential: h1/root }}"))), @"lab/inventory.yaml:6:49: hosts[0].connect.credential: both `key` and `credential` are set: rotor logs in one way; keep one");
    assert_snapshot!(check(&host(&format!("host_key: \"{KEY}\"\nconnect: {{ user: Admin, credential: h1 }}"))), @"
    lab/inventory.yaml:6:22: hosts[0].connect.user: `Admin` is not a valid Linux user name: start with a lowercase letter or '_', then use lowercase letters, digits, '_' or '-', at most 32 characters
    lab/inventory.yaml:6:41: hosts[0].connect.credential: `h1` is not a credential address: write it as HOST/ACCOUNT, e.g. emr-db-01/svc_app
    ");
}

#[test]
fn the_connect_account_is_rotated_with_what_rotor_logs_in_with() {
    let with = |connect: &str| {
        check(&host(&format!(
            "host_key: \"{KEY}\"\nconnect: {connect}\naccounts:\n  - {{ name: svc_app, playbook: linux-password }}\n  - {{ name: rotor, playbook: linux-password }}"
        )))
    };
    // The password rotor logs in with is the account it rotates: fine (rotated last, after a
    // second login path is proven).
    assert!(with("{ user: rotor, credential: h1/rotor }").contains("1 host, 2 accounts"));
    // The password is held under another credential: rotating h1/rotor would change the
    // password rotor logs in with, and h2/rotor would go stale.
    assert_snapshot!(with("{ user: rotor, credential: h2/rotor }"), @"lab/inventory.yaml:6:14: hosts[0].connect.credential: `connect` (line 6) logs in as rotor with the password of h2/rotor, but rotor is rotated on this host as h1/rotor (line 9): rotor would change the password under its own login. Write `credential: h1/rotor` so rotor logs in with what it rotates, or remove rotor from accounts");
    // A key login survives a password rotation; a vault password of an account that is not
    // rotated here stays valid.
    assert!(with("{ user: rotor, key: /k }").contains("1 host, 2 accounts"));
    assert!(with("{ user: admin, credential: h1/admin }").contains("1 host, 2 accounts"));
}

#[test]
fn the_connect_identity_is_the_listing_rotor_logs_in_with() {
    let inv = |connect: &str, accounts: &str| {
        let text = format!(
            "version: 1\npolicies:\n  default: {{ length: 24, classes: [lower, upper, digit] }}\nhosts:\n  - name: h1\n    address: 10.0.0.1\n    host_key: \"{KEY}\"\n    connect: {connect}\n    accounts:\n{accounts}"
        );
        crate::inventory::parse(&text, std::path::Path::new("lab/inventory.yaml")).unwrap()
    };
    let both = "      - { name: root, playbook: linux-password }\n      - { name: root, playbook: linux-ssh-key }\n      - { name: svc, playbook: linux-password }\n";
    // A key login: the connect user's key listing (the file is the bootstrap identity).
    let i = inv("{ user: root, key: /k }", both);
    let h = &i.hosts[0];
    assert_eq!(h.connect_credential().unwrap().to_string(), "h1/root:key");
    assert_eq!(h.bootstrap_key(), Some(std::path::Path::new("/k")));
    // A vault password: the listing it names.
    let i = inv("{ user: root, credential: h1/root }", both);
    assert_eq!(
        i.hosts[0].connect_credential().unwrap().to_string(),
        "h1/root"
    );
    // Not managed: a key login with only a password listing, or no listing at all.
    let i = inv(
        "{ user: root, key: /k }",
        "      - { name: root, playbook: linux-password }\n",
    );
    assert!(i.hosts[0].connect_credential().is_none());
    assert!(
        i.hosts[0].is_connect_account(&crate::credential::CredentialId::parse("h1/root").unwrap())
    );
    // The connect user's listings go last on the host, its password before its key.
    let i = inv("{ user: root, key: /k }", both);
    let work = crate::ops::directories::host_work(&i, i.hosts.clone());
    let order: Vec<String> = work[0]
        .accounts
        .iter()
        .map(|a| a.cred.to_string())
        .collect();
    assert_eq!(order, ["h1/svc", "h1/root", "h1/root:key"]);
}

#[test]
fn accounts() {
    assert_snapshot!(check(&full_host("accounts:\n  - { name: Svc-App, playbook: linux-password }")), @"lab/inventory.yaml:8:17: hosts[0].accounts[0].name: `Svc-App` is not a valid Linux user name: start with a lowercase letter or '_', then use lowercase letters, digits, '_' or '-', at most 32 characters");
    assert_snapshot!(check(&full_host("accounts:\n  - { name: a, playbook: linux-pasword }")), @"lab/inventory.yaml:8:30: hosts[0].accounts[0].playbook: unknown playbook `linux-pasword`: known playbooks are app-config-password, linux-password, linux-ssh-key (add your own in a directory named by `playbooks_dir:`); did you mean `linux-password`?");
    assert_snapshot!(check(&full_host("accounts:\n  - { name: a, playbook: ldap-password }")), @"lab/inventory.yaml:8:30: hosts[0].accounts[0].playbook: playbook `ldap-password` is for directory accounts (under `directories:`), not a host's: use a host playbook such as linux-password");
    assert_snapshot!(check(&full_host("accounts:\n  - { name: a, playbook: linux-password, policy: defualt }")), @"lab/inventory.yaml:8:54: hosts[0].accounts[0].policy: unknown policy `defualt`: define it under `policies:` or use one of default; did you mean `default`?");
    assert_snapshot!(check(&full_host("accounts:\n  - { name: a, playbook: linux-password, policy: strict }")), @"lab/inventory.yaml:8:54: hosts[0].accounts[0].policy: unknown policy `strict`: define it under `policies:` or use one of default");
}

#[test]
fn account_vars() {
    let acct = |a: &str| {
        check(&full_host(&format!(
            "accounts:\n  - {{ name: a, playbook: app-config-password{a} }}"
        )))
    };
    assert!(
        acct("").starts_with("lab/inventory.yaml: 1 host"),
        "{}",
        acct("")
    );
    assert!(
        acct(", vars: { config: /etc/emr/other.conf }").starts_with("lab/inventory.yaml: 1 host")
    );
    assert_snapshot!(acct(", vars: { confg: /etc/x }"), @"lab/inventory.yaml:8:66: hosts[0].accounts[0].vars.confg: playbook `app-config-password` has no variable `confg`: it declares check, config, reload; did you mean `config`?");
    assert_snapshot!(acct(", vars: { config: \"/etc/$(id)\" }"), @"lab/inventory.yaml:8:67: hosts[0].accounts[0].vars.config: `/etc/$(id)` holds `$`, which could carry shell syntax into a command line: a path may use letters, digits, '.', '_', '-' and '/' (path variable of playbook `app-config-password`)");
    assert_snapshot!(acct(", vars: { reload: \"systemctl reload x; reboot\" }"), @"lab/inventory.yaml:8:67: hosts[0].accounts[0].vars.reload: `systemctl reload x; reboot` holds `;`, which is shell syntax: a command is words of letters, digits and . _ - / = : , + @ %; put anything more in a script on the host and name the script (command variable of playbook `app-config-password`)");
    assert_snapshot!(check(&full_host("accounts:\n  - { name: a, playbook: linux-password, vars: { config: /etc/x } }")), @"lab/inventory.yaml:8:62: hosts[0].accounts[0].vars.config: playbook `linux-password` has no variable `config`: it declares no variables");
}

#[test]
fn account_vars_reach_the_model() {
    let inv = parse(&full_host("accounts:\n  - { name: a, playbook: app-config-password, vars: { config: /srv/app.conf } }"), Path::new(FILE)).unwrap();
    let account = &inv.hosts[0].accounts[0];
    assert_eq!(account.recipe.name, "app-config-password");
    let vars: Vec<(&str, &str)> = account
        .vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        vars,
        [
            ("check", "/usr/local/sbin/emr-app-check"),
            ("config", "/srv/app.conf"),
            ("reload", "systemctl reload emr-app")
        ]
    );
}

#[test]
fn policies() {
    let policy = |body: &str| check(&format!("version: 1\npolicies:\n  default: {{ {body} }}\n"));
    assert_snapshot!(policy("length: 8"), @"lab/inventory.yaml:3:22: policies.default.length: length 8 is out of range: use 12 to 128 characters (24 if unsure)");
    assert_snapshot!(policy("length: 129"), @"lab/inventory.yaml:3:22: policies.default.length: length 129 is out of range: use 12 to 128 characters (24 if unsure)");
    assert_snapshot!(policy("classes: []"), @"lab/inventory.yaml:3:23: policies.default.classes: no character classes: list at least one of lower, upper, digit, symbol");
    assert_snapshot!(policy("classes: [lower, hex, lower]"), @"
    lab/inventory.yaml:3:31: policies.default.classes[1]: unknown character class `hex`: use lower, upper, digit or symbol
    lab/inventory.yaml:3:36: policies.default.classes[2]: class `lower` is listed twice: list it once
    ");
    assert_snapshot!(policy("classes: [digit], exclude: \"0123456789\""), @"lab/inventory.yaml:3:41: policies.default.exclude: `exclude` removes every digit character, but the policy requires one: exclude fewer characters or drop `digit` from `classes`");
    assert_snapshot!(policy("length: 12, classes: [digit], exclude: \"012345678\""), @"lab/inventory.yaml:3:22: policies.default: policy `default` is too weak: 12 characters from 1 allowed give about 0 bits, and rotor refuses policies below 64 bits (two accounts could get the same password); allow more characters (more classes, fewer exclusions)");
    assert_snapshot!(policy("length: 12, classes: [digit]"), @"lab/inventory.yaml:3:22: policies.default: policy `default` is too weak: 12 characters from 10 allowed give about 40 bits, and rotor refuses policies below 64 bits (two accounts could get the same password); use a length of at least 20 with these classes, or allow more characters (more classes, fewer exclusions)");
    // 20 digits: about 66 bits, accepted.
    assert!(policy("length: 20, classes: [digit]").starts_with("lab/inventory.yaml: 0 hosts"));
    assert_snapshot!(policy("schedule: \"0 3 * *\""), @r#"lab/inventory.yaml:3:24: policies.default.schedule: schedule "0 3 * *": it has 4 fields: write 5 crontab fields, minute hour day-of-month month day-of-week, e.g. "0 3 * * 0" for Sundays at 03:00"#);
    assert_snapshot!(policy("schedule: \"0 0 3 * * 0\""), @r#"lab/inventory.yaml:3:24: policies.default.schedule: schedule "0 0 3 * * 0": it has 6 fields (rotor takes crontab syntax, without a seconds field): write 5 crontab fields, minute hour day-of-month month day-of-week, e.g. "0 3 * * 0" for Sundays at 03:00"#);
    assert_snapshot!(policy("schedule: \"0 3 * * 8\""), @r#"lab/inventory.yaml:3:24: policies.default.schedule: schedule "0 3 * * 8": the day-of-week field `8` has 8, out of range: use 0 to 7 (0 and 7 are Sunday, 1 is Monday) or sun to sat"#);
    assert_snapshot!(policy("schedule: \"@reboot\""), @r#"lab/inventory.yaml:3:24: policies.default.schedule: schedule "@reboot": `@reboot` is not a schedule rotor knows: use @hourly, @daily, @weekly, @monthly or @yearly, or 5 crontab fields"#);
    assert!(policy("schedule: \"@weekly\"").starts_with("lab/inventory.yaml: 0 hosts"));
    assert_snapshot!(policy("max_age: 30"), @r#"lab/inventory.yaml:3:23: policies.default.max_age: max_age "30" has no unit: write a number and a unit, e.g. 30d, 12h or 90m"#);
    assert_snapshot!(policy("max_age: 30w"), @r#"lab/inventory.yaml:3:23: policies.default.max_age: max_age "30w" has an unknown unit (use d, h or m): write a number and a unit, e.g. 30d, 12h or 90m"#);
    assert_snapshot!(policy("max_age: 0d"), @r#"lab/inventory.yaml:3:23: policies.default.max_age: max_age "0d" is zero: write a number and a unit, e.g. 30d, 12h or 90m"#);
    assert_snapshot!(policy("max_age: 99999999999999999999d"), @r#"lab/inventory.yaml:3:23: policies.default.max_age: max_age "99999999999999999999d" is not a whole number with a unit: write a number and a unit, e.g. 30d, 12h or 90m"#);
    assert_snapshot!(policy("timezone: \"Asia Tokyo\""), @"lab/inventory.yaml:3:24: policies.default.timezone: `Asia Tokyo` is not a time zone rotor knows: use an IANA name such as Asia/Tokyo, Europe/Berlin or UTC; did you mean `Asia/Tokyo`?");
    assert_snapshot!(policy("timezone: Asia/Tokio"), @"lab/inventory.yaml:3:24: policies.default.timezone: `Asia/Tokio` is not a time zone rotor knows: use an IANA name such as Asia/Tokyo, Europe/Berlin or UTC; did you mean one of `Asia/Tokyo`, `Asia/Tomsk`?");
    assert_snapshot!(policy("window: {}"), @r#"lab/inventory.yaml:3:22: policies.default.window: an empty window: give `days` (e.g. [mon-fri]), `hours` (e.g. "01:00-05:00") or both, or leave `window` out to rotate at any time"#);
    assert_snapshot!(policy("window: { days: [] }"), @r#"lab/inventory.yaml:3:30: policies.default.window.days: no days: list the days the window opens, e.g. [mon-fri] or [sat, sun], or leave `days` out for every day"#);
    assert_snapshot!(policy("window: { days: [mon-fry, 1], hours: \"1-5\" }"), @r#"
    lab/inventory.yaml:3:31: policies.default.window.days[0]: `fry` is not a day: write mon, tue, wed, thu, fri, sat or sun, or a range such as mon-fri
    lab/inventory.yaml:3:40: policies.default.window.days[1]: `1` is not a day: write mon, tue, wed, thu, fri, sat or sun, or a range such as mon-fri
    lab/inventory.yaml:3:51: policies.default.window.hours: hours "1-5" is not a range of times: write HH:MM-HH:MM, e.g. "01:00-05:00", or "22:00-04:00" for a window over midnight
    "#);
    assert_snapshot!(policy("window: { hours: \"03:00-03:00\" }"), @r#"lab/inventory.yaml:3:31: policies.default.window.hours: hours "03:00-03:00" starts and ends at the same time: for the whole day leave `hours` out (or write "00:00-24:00")"#);
    assert_snapshot!(policy("window: { days: mon }"), @r#"lab/inventory.yaml:3:30: policies.default.window.days: expected a list here"#);
    assert_snapshot!(policy("window: { day: [mon] }"), @r#"lab/inventory.yaml:3:24: policies.default.window.day: unknown field `day`: allowed here are days, hours; did you mean `days`?"#);
    assert!(policy("window: { days: [sat, sun] }").starts_with("lab/inventory.yaml: 0 hosts"));
    assert!(
        policy("window: { hours: \"22:00-04:00\" }").starts_with("lab/inventory.yaml: 0 hosts")
    );
    assert_snapshot!(check("version: 1\npolicies:\n  \"bad name\": { length: 20 }\n"), @"lab/inventory.yaml:3:15: policies.bad name: `bad name` is not a valid policy name: use letters, digits, '.', '-' or '_'");
}

#[test]
fn directories() {
    let good = "version: 1\nhosts: []\ndirectories:\n  - name: hospital-ldap\n    url: ldap://127.0.0.1:3890\n    ca_file: ca.pem\n    bind: { dn: \"cn=rotor,ou=system,dc=h,dc=example\", credential: hospital-ldap/rotor }\n    groups: [ldap]\n    accounts:\n      - { dn: \"uid=emr-app,ou=service,dc=h,dc=example\" }\n      - { search: { base: \"ou=service,dc=h,dc=example\", filter: \"(objectClass=account)\", scope: sub } }\n";
    let inv = crate::inventory::parse(good, Path::new("lab/inventory.yaml")).unwrap();
    assert_eq!(inv.directories.len(), 1);
    assert_eq!(
        inv.directories[0].ca_file.as_deref(),
        Some(Path::new("lab/ca.pem"))
    );
    assert_eq!(inv.directories[0].accounts.len(), 2);
    assert_snapshot!(check(
        "version: 1\nhosts: []\ndirectories:\n  - name: hospital-ldap\n    url: http://x\n    bind: { dn: \"nodn\", credential: hospital-ldap/rotor }\n    accounts:\n      - { dn: \"o=x\" }\n      - { search: { base: b, filter: \"objectClass=x\" } }\n"
    ));
    // Filters are parsed as ldap3 will send them, DNs as RFC 4514 DNs (issue 8).
    for (from, to, problem) in [
        (
            "(objectClass=account)",
            "(&(objectClass=account)(uid=a)",
            "accounts[1].search.filter: `(&(objectClass=account)(uid=a)` is not a valid LDAP filter",
        ),
        (
            "base: \"ou=service,dc=h,dc=example\"",
            "base: \"ou=service,dc=h\\\\00,dc=example\"",
            "accounts[1].search.base: `ou=service,dc=h\\\\00,dc=example` is not a DN: it holds an escaped control character",
        ),
        (
            "uid=emr-app,ou=service,dc=h,dc=example",
            "uid=emr-app,ou=service\\u0000,dc=h,dc=example",
            "accounts[0].dn: `uid=emr-app,ou=service\\0,dc=h,dc=example` is not a DN: it holds a control character",
        ),
        (
            "cn=rotor,ou=system,dc=h,dc=example",
            "cn=rotor,,dc=h,dc=example",
            "bind.dn: `cn=rotor,,dc=h,dc=example` is not a DN: each part must be attribute=value",
        ),
        (
            "cn=rotor,ou=system,dc=h,dc=example",
            "cn=rotor,o u=system,dc=h",
            "bind.dn: `cn=rotor,o u=system,dc=h` is not a DN: `o u` is not an attribute name",
        ),
    ] {
        let text = check(&good.replacen(from, to, 1));
        assert!(
            text.starts_with("lab/inventory.yaml:") && text.contains(problem),
            "{to}: {text}"
        );
    }
    for dn in [
        "uid=a\\,b+cn=c,dc=x",
        "uid=a\\2Cb,1.2.3=x,dc=x",
        "cn=#04024869,dc=x",
    ] {
        assert_eq!(super::validate::check_dn(dn), Ok(()), "{dn}");
    }
    // The summary shows the directory, and that its searches are not run yet.
    let unverified = good.replace(
        "    groups: [ldap]\n",
        "    groups: [ldap]\n    danger_accept_invalid_certs: true\n",
    );
    let inv = crate::inventory::parse(&unverified, Path::new("lab/inventory.yaml")).unwrap();
    assert_snapshot!(inv.summary().to_string(), @"
    lab/inventory.yaml: 0 hosts, 0 accounts, 1 directory, 1 group, 1 policy, 1 playbook used
      groups:    ldap
      policies:  default
      playbooks: ldap-password

      DIRECTORY      URL                                       GROUPS  ACCOUNTS
      hospital-ldap  ldap://127.0.0.1:3890 (TLS NOT VERIFIED)  ldap    1 DN, 1 search

    Searches are run when a run is planned: `rotor plan` shows how many accounts each finds.
    ");
}

#[test]
fn dns_compare_without_case_or_spaces() {
    use crate::inventory::same_dn;
    assert!(same_dn(
        "cn=rotor,ou=system,dc=h,dc=example",
        "CN=Rotor, ou=System , DC=h,dc=EXAMPLE"
    ));
    assert!(!same_dn(
        "cn=rotor,ou=system,dc=h",
        "cn=rotor,ou=service,dc=h"
    ));
    assert!(!same_dn("cn=rotor,ou=system,dc=h", "cn=rotor,ou=system"));
    assert!(!same_dn(
        "uid=rotor,ou=system,dc=h",
        "cn=rotor,ou=system,dc=h"
    ));
}

#[test]
fn many_problems_are_collected_and_capped() {
    let mut yaml = String::from("version: 1\nhosts:\n");
    for idx in 0..12 {
        yaml.push_str(&format!(
            "  - {{ name: h{idx}, address: \"bad address\", host_key: \"{KEY}\", connect: {{ user: root, key: /k }} }}\n"
        ));
    }
    assert_snapshot!(check(&yaml), @"
    lab/inventory.yaml:3:26: hosts[0].address: `bad address` is not a valid address: write an IP address (10.0.0.5) or a DNS name (letters, digits, '-' and '.')
    lab/inventory.yaml:4:26: hosts[1].address: `bad address` is not a valid address: write an IP address (10.0.0.5) or a DNS name (letters, digits, '-' and '.')
    lab/inventory.yaml:5:26: hosts[2].address: `bad address` is not a valid address: write an IP address (10.0.0.5) or a DNS name (letters, digits, '-' and '.')
    lab/inventory.yaml:6:26: hosts[3].address: `bad address` is not a valid address: write an IP address (10.0.0.5) or a DNS name (letters, digits, '-' and '.')
    lab/inventory.yaml:7:26: hosts[4].address: `bad address` is not a valid address: write an IP address (10.0.0.5) or a DNS name (letters, digits, '-' and '.')
    lab/inventory.yaml:8:26: hosts[5].address: `bad address` is not a valid address: write an IP address (10.0.0.5) or a DNS name (letters, digits, '-' and '.')
    lab/inventory.yaml:9:26: hosts[6].address: `bad address` is not a valid address: write an IP address (10.0.0.5) or a DNS name (letters, digits, '-' and '.')
    lab/inventory.yaml:10:26: hosts[7].address: `bad address` is not a valid address: write an IP address (10.0.0.5) or a DNS name (letters, digits, '-' and '.')
    lab/inventory.yaml:11:26: hosts[8].address: `bad address` is not a valid address: write an IP address (10.0.0.5) or a DNS name (letters, digits, '-' and '.')
    lab/inventory.yaml:12:26: hosts[9].address: `bad address` is not a valid address: write an IP address (10.0.0.5) or a DNS name (letters, digits, '-' and '.')
    ... and 2 more problems; fix these first
    ");
}

#[test]
fn unreadable_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.yaml");
    let err = load(&missing).unwrap_err();
    let text = err
        .to_string()
        .replace(&dir.path().display().to_string(), "DIR");
    assert_snapshot!(text, @"DIR/nope.yaml: cannot read the inventory: No such file or directory (os error 2); check the path given with -i (relative paths start from the current directory)");
    let not_utf8 = dir.path().join("bin.yaml");
    std::fs::write(&not_utf8, [0xff, 0xfe, 0x00]).unwrap();
    let text = load(&not_utf8)
        .unwrap_err()
        .to_string()
        .replace(&dir.path().display().to_string(), "DIR");
    assert_snapshot!(text, @"DIR/bin.yaml: cannot read the inventory: stream did not contain valid UTF-8; the inventory must be UTF-8 text");
    let good = dir.path().join("inventory.yaml");
    std::fs::write(&good, LAB).unwrap();
    let inventory = load(&good).unwrap();
    assert_eq!(
        inventory.hosts[2].connect.auth,
        ConnectAuth::KeyFile(dir.path().join("admin_key"))
    );
}

#[test]
fn scopes_parse() {
    let parse = |s: &str| match Scope::parse(s) {
        Ok(scope) => format!("ok {scope}"),
        Err(err) => err.to_string(),
    };
    let inputs = [
        "all",
        "host:emr-db-01",
        "group:emr",
        "account:svc_app",
        "cred:emr-db-01/svc_app",
        "directory:hospital-ldap",
        "emr-db-01",
        "hosts:emr-db-01",
        "host:",
        "host:bad name",
        "account:Root",
        "cred:emr-db-01",
        "",
        "host:emr-*",
        "cred:emr-*/svc_?",
        "group:emr-[0-9]",
        "!host:emr-db-01",
        "!group:e*",
        "!",
        "!!host:a",
        "!all",
        "!emr",
        "host:emr-[0-9",
        "host:emr *",
        "cred:emr-*",
        "group:a,group:b",
    ];
    let out: Vec<String> = inputs
        .iter()
        .map(|i| format!("{i:?} -> {}", parse(i)))
        .collect();
    assert_snapshot!(out.join("\n"), @r#"
    "all" -> ok all
    "host:emr-db-01" -> ok host:emr-db-01
    "group:emr" -> ok group:emr
    "account:svc_app" -> ok account:svc_app
    "cred:emr-db-01/svc_app" -> ok cred:emr-db-01/svc_app
    "directory:hospital-ldap" -> ok directory:hospital-ldap
    "emr-db-01" -> unknown scope `emr-db-01`: use all, host:NAME, group:NAME, account:NAME, directory:NAME or cred:HOST/ACCOUNT; names take globs (host:emr-*), commas join scopes, a leading ! excludes (to select a host, write host:emr-db-01)
    "hosts:emr-db-01" -> unknown scope `hosts:emr-db-01`: use all, host:NAME, group:NAME, account:NAME, directory:NAME or cred:HOST/ACCOUNT; names take globs (host:emr-*), commas join scopes, a leading ! excludes (did you mean host:?)
    "host:" -> scope `host:`: nothing after `host:`; write host:NAME
    "host:bad name" -> scope `host:bad name`: `bad name` is not a valid host name: use 1 to 253 letters, digits, '.', '-' or '_'
    "account:Root" -> scope `account:Root`: `Root` is not a valid Linux user name: start with a lowercase letter or '_', then use lowercase letters, digits, '_' or '-', at most 32 characters
    "cred:emr-db-01" -> scope `cred:emr-db-01`: `emr-db-01` is not a credential address: write it as HOST/ACCOUNT, e.g. emr-db-01/svc_app
    "" -> empty scope: use all, host:NAME, group:NAME, account:NAME, directory:NAME or cred:HOST/ACCOUNT; names take globs (host:emr-*), commas join scopes, a leading ! excludes
    "host:emr-*" -> ok host:emr-*
    "cred:emr-*/svc_?" -> ok cred:emr-*/svc_?
    "group:emr-[0-9]" -> ok group:emr-[0-9]
    "!host:emr-db-01" -> ok !host:emr-db-01
    "!group:e*" -> ok !group:e*
    "!" -> scope `!`: nothing after `!`; write the scope to exclude, e.g. !host:NAME or !group:NAME
    "!!host:a" -> scope `!!host:a`: write a single `!` before the scope it excludes
    "!all" -> scope `!all`: `!all` excludes everything: drop it, or exclude a part (!host:NAME, !group:NAME)
    "!emr" -> unknown scope `!emr`: use all, host:NAME, group:NAME, account:NAME, directory:NAME or cred:HOST/ACCOUNT; names take globs (host:emr-*), commas join scopes, a leading ! excludes (to select a host, write !host:emr)
    "host:emr-[0-9" -> scope `host:emr-[0-9`: `emr-[0-9`: a `[` is not closed: write a class such as [0-9] or [abc]
    "host:emr *" -> scope `host:emr *`: `emr *` holds a space: names have none
    "cred:emr-*" -> scope `cred:emr-*`: `emr-*` is not a credential address: write it as HOST/ACCOUNT, globs allowed on either side (cred:emr-*/svc_app)
    "group:a,group:b" -> scope `group:a,group:b`: a comma separates scopes here: give each scope on its own
    "#);
}

#[test]
fn scopes_select() {
    assert_snapshot!(select(LAB, &["all"]), @"
    emr-db-01: svc_app svc_backup
    emr-app-01: svc_app rotor
    host-001:
    ");
    assert_snapshot!(select(LAB, &[]), @"");
    assert_snapshot!(select(LAB, &["group:emr"]), @"
    emr-db-01: svc_app svc_backup
    emr-app-01: svc_app rotor
    ");
    assert_snapshot!(select(LAB, &["account:svc_app"]), @"
    emr-db-01: svc_app
    emr-app-01: svc_app
    ");
    // Union without duplicates, in inventory order whatever the scope order.
    assert_snapshot!(select(LAB, &["cred:emr-app-01/rotor", "account:svc_app", "host:emr-db-01"]), @"
    emr-db-01: svc_app svc_backup
    emr-app-01: svc_app rotor
    ");
    // A host chosen by name keeps all its accounts, even none.
    assert_snapshot!(select(LAB, &["host:host-001"]), @"host-001:");
    assert_snapshot!(select(LAB, &["host:host-01"]), @"no host `host-01` in lab/inventory.yaml; did you mean `host-001`?");
    assert_snapshot!(select(LAB, &["host:web"]), @"no host `web` in lab/inventory.yaml; known hosts: `emr-db-01`, `emr-app-01`, `host-001`");
    assert_snapshot!(select(LAB, &["group:emrr"]), @"no group `emrr` in lab/inventory.yaml; did you mean `emr`?");
    assert_snapshot!(select(LAB, &["group:x"]), @"no group `x` in lab/inventory.yaml; known groups: `db`, `emr`");
    assert_snapshot!(select(LAB, &["account:svc_ap"]), @"no account `svc_ap` on any host in lab/inventory.yaml; did you mean `svc_app`?");
    assert_snapshot!(select(LAB, &["cred:emr-db-01/rotor"]), @"no credential `emr-db-01/rotor` in lab/inventory.yaml; known credentials on that host: `emr-db-01/svc_app`, `emr-db-01/svc_backup`");
    assert_snapshot!(select(LAB, &["cred:emr-db-02/svc_app"]), @"no host `emr-db-02` in lab/inventory.yaml; did you mean `emr-db-01`?");
}

#[test]
fn selection_credentials() {
    let inventory = parse(LAB, Path::new(FILE)).unwrap();
    let selection = inventory.select(&[Scope::All]).unwrap();
    let ids: Vec<String> = selection.credentials().map(|c| c.to_string()).collect();
    assert_eq!(ids.len(), selection.n_accounts());
    assert_eq!(
        ids,
        [
            "emr-db-01/svc_app",
            "emr-db-01/svc_backup",
            "emr-app-01/svc_app",
            "emr-app-01/rotor"
        ]
    );
}

proptest! {
    #[test]
    fn parse_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse(&text, Path::new(FILE));
    }

    #[test]
    fn parse_never_panics_on_yamlish(text in "[a-z_:{}\\[\\],\"' \n\t\\-#&*!|>0-9.]{0,300}") {
        let _ = parse(&text, Path::new(FILE));
    }

    /// Mutating one character of a valid inventory gives a result, never a panic.
    #[test]
    fn parse_never_panics_on_mutated_inventory(idx in 0usize..2000, c in any::<char>()) {
        let mut chars: Vec<char> = LAB.chars().collect();
        let idx = idx % chars.len();
        chars[idx] = c;
        let text: String = chars.into_iter().collect();
        let _ = parse(&text, Path::new(FILE));
    }

    #[test]
    fn scope_parse_never_panics(text in "\\PC{0,40}") {
        let _ = Scope::parse(&text);
    }
}

#[test]
fn checkout_policies() {
    use super::{Approval, CheckoutPolicy};
    use std::time::Duration;
    let policy =
        |body: &str| format!("version: 1\npolicies:\n  default: {{ checkout: {{ {body} }} }}\n");
    let inv = parse(&policy("approval: none, max_ttl: 4h"), Path::new(FILE)).unwrap();
    assert_eq!(
        inv.policies["default"].checkout,
        CheckoutPolicy {
            approval: Approval::None,
            max_ttl: Duration::from_secs(4 * 3600),
            default_ttl: Duration::from_secs(2 * 3600),
        }
    );
    // Without `checkout:`, approval is required, 2 h by default, at most 8 h.
    let plain = parse("version: 1\n", Path::new(FILE)).unwrap();
    assert_eq!(
        plain.policies["default"].checkout,
        CheckoutPolicy::default()
    );
    assert_eq!(
        CheckoutPolicy::default().approval,
        Approval::Required,
        "safe default"
    );
    assert_snapshot!(check(&policy("approval: maybe")), @"lab/inventory.yaml:3:36: policies.default.checkout.approval: approval `maybe` is not one rotor knows: write `required` (a second person approves each checkout) or `none`");
    assert_snapshot!(check(&policy("max_ttl: 8")), @r#"lab/inventory.yaml:3:35: policies.default.checkout.max_ttl: max_ttl "8" has no unit: write a number and a unit, e.g. 8h, 90m or 1d"#);
    assert_snapshot!(check(&policy("max_ttl: 30d")), @r#"lab/inventory.yaml:3:35: policies.default.checkout.max_ttl: max_ttl "30d" is longer than 7d, the longest checkout rotor grants: a vendor's access should end with the work"#);
    assert_snapshot!(check(&policy("max_ttl: 1h, default_ttl: 2h")), @"lab/inventory.yaml:3:24: policies.default.checkout: default_ttl (2h) is longer than max_ttl (1h): make default_ttl at most max_ttl");
    assert_snapshot!(check(&policy("ttl: 2h")), @"lab/inventory.yaml:3:26: policies.default.checkout.ttl: unknown field `ttl`: allowed here are approval, max_ttl, default_ttl");
}

/// LAB with a lab host (an account named like a group) and a directory, for scope tests.
fn scope_lab() -> String {
    format!(
        "{LAB}  - name: lab-01
    address: 10.0.1.1
    host_key: \"{KEY}\"
    groups: [lab]
    connect: {{ user: root, key: /k }}
    accounts:
      - {{ name: svc_app, playbook: linux-password }}
      - {{ name: db, playbook: linux-password }}
      - {{ name: db, playbook: linux-ssh-key }}
directories:
  - name: hospital-ldap
    url: ldaps://ldap.hospital.example
    bind: {{ dn: \"cn=rotor,ou=system,dc=h,dc=example\", credential: hospital-ldap/rotor }}
    groups: [ldap]
    accounts:
      - {{ dn: \"uid=emr-app,ou=service,dc=h,dc=example\" }}
"
    )
}

#[test]
fn scope_globs_lists_and_exclusions() {
    let rows: &[&[&str]] = &[
        // Globs.
        &["host:emr-*"],
        &["host:*-01"],
        &["host:emr-???-01"],
        &["host:emr-[ad]*"],
        &["host:emr-[!a]*"],
        &["group:e?r"],
        &["account:svc_*"],
        &["directory:hospital-*"],
        &["cred:emr-*/svc_app"],
        &["cred:*/db:key"],
        &["cred:*/db*"],
        &["cred:hospital-*/emr-app"],
        // Comma lists: the same union as repeating --scope.
        &["group:db,group:lab"],
        &["group:db", "group:lab"],
        &["host:host-001, account:rotor"],
        // Exclusions.
        &["group:emr", "!host:emr-db-01"],
        &["group:emr,!host:emr-db-01"],
        &["!host:emr-db-01"],
        &["!group:emr", "!group:ldap"],
        &["all", "!account:svc_app"],
        &["host:emr-db-01", "!cred:emr-db-01/svc_app"],
        &["account:svc_app", "!host:emr-*"],
        &["group:lab", "!cred:lab-01/db:key"],
        &[
            "cred:hospital-ldap/a",
            "cred:hospital-ldap/b",
            "!cred:hospital-ldap/a",
        ],
        &["!host:web-01", "group:emr"],
        &["all", "!directory:hospital-ldap", "!host:*"],
        // Errors: nothing matches, nothing left, bare names.
        &["host:web-*"],
        &["group:x*"],
        &["cred:emr-*/nobody"],
        &["!host:emr-db-1"],
        &["!group:nope*"],
        &["group:emr", "!group:emr"],
        &["host:emr-db-01", "!account:svc_*"],
        &["directory:hospital-ldap", "!cred:hospital-ldap/emr-app"],
        &["cred:hospital-ldap/svc-*"],
        &["group:emr,"],
        &["emr"],
        &["db"],
        &["emr-*"],
        &["!emr-db-01"],
        &["lab-01/db"],
        &["nothing-here"],
    ];
    insta::assert_snapshot!(
        "scope_globs_lists_and_exclusions",
        check_scopes(&scope_lab(), rows)
    );
}

/// What a glob matches, against an independent reading of the same glob as a regex.
#[test]
fn globs_match_whole_names() {
    for (glob, name, expect) in [
        ("emr-*", "emr-db-01", true),
        ("emr-*", "emr-", true),
        ("emr-*", "xemr-db", false),
        ("*-01", "emr-db-01", true),
        ("*-01", "emr-db-011", false),
        ("*db*", "emr-db-01", true),
        ("a*b*c", "aXbYbZc", true),
        ("a*b*c", "aXbYbZ", false),
        ("?", "", false),
        ("?", "x", true),
        ("*", "", true),
        ("[a-c]x", "bx", true),
        ("[a-c]x", "dx", false),
        ("[!a-c]x", "dx", true),
        ("[]]", "]", true),
        ("h[0-9][0-9]", "h42", true),
    ] {
        assert_eq!(
            super::Glob::parse(glob).unwrap().matches(name),
            expect,
            "{glob} {name}"
        );
    }
    for bad in ["emr-[0-9", "[a-]", "a b", "a\u{1b}"] {
        assert!(super::Glob::parse(bad).is_err(), "{bad}");
    }
}

/// The glob as a regex, written independently of `Glob`, for the property test.
fn glob_regex(glob: &str) -> regex_automata::meta::Regex {
    let mut re = String::from("^");
    for c in glob.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c if c.is_ascii_alphanumeric() => re.push(c),
            c => re.push_str(&format!("\\x{{{:x}}}", c as u32)),
        }
    }
    re.push('$');
    regex_automata::meta::Regex::new(&re).unwrap()
}

proptest! {
    /// Whatever the scopes, a selection never holds a host an exclusion names, and parsing
    /// and selecting never panic.
    #[test]
    fn a_selection_never_holds_an_excluded_host(
        terms in proptest::collection::vec(
            (any::<bool>(), 0usize..6, "[a-z0-9*?-]{0,8}"),
            0..5,
        )
    ) {
        let inventory = parse(&scope_lab(), Path::new(FILE)).unwrap();
        let kinds = ["host", "group", "account", "cred", "directory", "all"];
        let written: Vec<String> = terms
            .iter()
            .map(|(bang, kind, name)| {
                let term = if kinds[*kind] == "all" { "all".to_owned() } else { format!("{}:{name}", kinds[*kind]) };
                if *bang { format!("!{term}") } else { term }
            })
            .collect();
        let joined = written.join(",");
        let _ = Scope::parse_list(&joined);
        let _ = Scope::parse(&joined);
        if let Ok(selection) = inventory.select_written(&written) {
            for (bang, kind, name) in &terms {
                if !*bang || kinds[*kind] != "host" {
                    continue;
                }
                let re = glob_regex(name);
                for host in &selection.hosts {
                    prop_assert!(!re.is_match(host.name.as_str()), "{written:?} kept {}", host.name);
                }
            }
            if terms.iter().any(|(bang, kind, _)| *bang && kinds[*kind] == "all") {
                prop_assert!(false, "!all was accepted: {written:?}");
            }
        }
    }

    #[test]
    fn scope_lists_never_panic(text in "\\PC{0,60}") {
        let inventory = parse(&scope_lab(), Path::new(FILE)).unwrap();
        let _ = Scope::parse_list(&text);
        let _ = inventory.select_written(&[text]);
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    // Three mistakes in three places: a misspelt key in one host, a wrong type in another,
    // a missing field in a directory; and a validation problem in a good host.
    let yaml = format!(
        "version: 1
policies:
  default: {{ lenght: 30 }}
hosts:
  - name: h1
    address: 10.0.0.1
    hostkey: \"{KEY}\"
    connect: {{ user: root, key: /k }}
  - name: h2
    address: 10.0.0.2
    port: ssh
    host_key: \"{KEY}\"
    connect: {{ user: root, key: /k }}
  - name: h3
    address: \"bad address\"
    host_key: \"{KEY}\"
    connect: {{ user: root, key: /k }}
    accounts:
      - {{ name: svc, playbook: linux-password }}
directories:
  - name: ldap
    url: ldaps://ldap.example
    accounts: []
"
    );
    assert_snapshot!("every_problem_is_reported_at_once", check(&yaml));
    let err = parse(&yaml, Path::new(FILE)).unwrap_err();
    let lines: Vec<u64> = err.problems().iter().map(|p| p.line).collect();
    assert_eq!(lines, [3, 7, 11, 15, 23], "{err}");
}

#[test]
fn tabs_are_reported_on_their_lines() {
    let yaml = "version: 1\nhosts:\n  - name: h1\n\taddress: 10.0.0.1\n  \t  host_key: x\n";
    assert_snapshot!(check(yaml), @"
    lab/inventory.yaml:4:1: YAML forbids tabs: use spaces to indent this line
    lab/inventory.yaml:5:3: YAML forbids tabs: use spaces to indent this line
    ");
    // A tab that is not indentation is YAML's business (here: inside a value).
    assert!(!check("version: 1\nplaybooks_dir: \"a\tb\"\n").contains("tabs"));
}

#[test]
fn x_keys_hold_anchors_for_hosts() {
    let yaml = format!(
        "version: 1
x-connect: &connect {{ user: root, key: /etc/rotor/admin }}
x-host: &host
  host_key: \"{KEY}\"
  groups: [emr]
  connect: *connect
x-notes: anything at all, [ignored]
hosts:
  - <<: *host
    name: h1
    address: 10.0.0.1
  - name: h2
    address: 10.0.0.2
    host_key: \"{KEY}\"
    connect: *connect
"
    );
    let inv = parse(&yaml, Path::new(FILE)).unwrap();
    assert_eq!(inv.hosts.len(), 2);
    assert_eq!(inv.hosts[0].groups, ["emr"]);
    assert_eq!(inv.hosts[0].connect, inv.hosts[1].connect);
    assert_eq!(
        inv.hosts[1].connect.auth,
        ConnectAuth::KeyFile(PathBuf::from("/etc/rotor/admin"))
    );
    // Only `x-` keys: another unknown key is still a typo.
    assert!(check(&yaml.replace("x-notes", "notes")).contains("unknown field `notes`"));
}

/// The example a newcomer copies is valid, and shows each part of an inventory.
#[test]
fn the_example_inventory_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/inventory.yaml");
    let inv = load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(inv.hosts.len(), 3);
    assert!(matches!(inv.hosts[0].host_key, HostKeyPin::Key(_)));
    let examples = path.parent().unwrap();
    for host in &inv.hosts[1..] {
        // Every file the example names is in examples/, so `inventory check` finds it.
        let HostKeyPin::KnownHosts(file) = &host.host_key else {
            panic!("{} pins no known_hosts file", host.name)
        };
        assert_eq!(file, &examples.join("known_hosts"));
        assert!(file.is_file());
        assert!(
            host.bootstrap_key().is_none(),
            "no private key file in an example"
        );
    }
    let default = &inv.policies["default"];
    assert!(default.schedule.is_some() && default.window.is_some());
    assert_eq!(inv.directories[0].accounts.len(), 2);
    // The `x-` anchor merged into the hosts, and a key written beside it won.
    assert_eq!(inv.hosts[0].groups, ["emr", "db"]);
    assert_eq!(inv.hosts[1].groups, ["emr"]);
}

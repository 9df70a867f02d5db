//! The converter against inventories written as an Ansible user writes them. One `import`
//! helper is the only caller of `convert`; the expectations were checked against
//! `ansible-inventory --list` (ansible-core 2.14) by hand and by `tests/it/import.rs`.

use std::path::{Path, PathBuf};

use super::read::{Value, expand_pattern, literal_value, shlex_split};
use super::*;

const KEY_A: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK6nyu8d0baNX95RMq2NN29/Lq1udxPtAp1oA8ZiSe4e";
const KEY_B: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHvP8IKX+3V+t2zwxE2r42ZweT0icW2huRU72dnmrLnj";
/// `db.example.org` hashed by `ssh-keygen -H`, with KEY_A.
const HASHED_A: &str = "|1|d9lDSP0NvT0ufBJ3NRQAhDfy8eo=|PKXTt7LMBPgoKHzcF6Xj0U41adg= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK6nyu8d0baNX95RMq2NN29/Lq1udxPtAp1oA8ZiSe4e";

fn options(known_hosts: Option<&str>, accounts: &str) -> Options {
    Options {
        accounts: parse_accounts(accounts).unwrap(),
        known_hosts: known_hosts.map(KnownHosts::parse),
        connect_user: None,
        connect_key: None,
        base_dir: PathBuf::from("/srv/ansible"),
        home: Some(PathBuf::from("/home/ops")),
        out_path: PathBuf::from("/tmp/rotor.yaml"),
    }
}

fn import_with(
    name: &str,
    text: &str,
    vars: &[VarsFile],
    opts: &Options,
) -> Result<Import, ImportError> {
    let source = Source {
        path: PathBuf::from(name),
        text: text.to_owned(),
        executable: false,
    };
    convert(&source, vars, opts)
}

fn import(name: &str, text: &str, opts: &Options) -> Import {
    let import = import_with(name, text, &[], opts).unwrap_or_else(|e| panic!("{e}"));
    // Whatever was imported reads back as a rotor inventory (when every host is pinned).
    if import.hosts.iter().all(|h| h.host_key.is_some()) {
        crate::inventory::parse(&import.yaml, Path::new("/tmp/rotor.yaml"))
            .unwrap_or_else(|e| panic!("{e}\n{}", import.yaml));
    }
    import
}

fn host<'a>(import: &'a Import, name: &str) -> &'a ImportedHost {
    import
        .hosts
        .iter()
        .find(|h| h.name == name)
        .unwrap_or_else(|| {
            panic!(
                "no host {name} in {:?}",
                import.hosts.iter().map(|h| &h.name).collect::<Vec<_>>()
            )
        })
}

/// (name, address, port, user, key, groups)
fn check_host(import: &Import, expect: (&str, &str, u16, &str, Option<&str>, &[&str])) {
    let (name, address, port, user, key, groups) = expect;
    let h = host(import, name);
    assert_eq!(
        (
            h.address.as_str(),
            h.port,
            h.user.as_str(),
            h.key.as_deref(),
            h.groups.iter().map(String::as_str).collect::<Vec<_>>()
        ),
        (address, port, user, key, groups.to_vec()),
        "{name}"
    );
}

fn known_hosts_for(entries: &[(&str, &str)]) -> String {
    entries
        .iter()
        .map(|(name, key)| format!("{name} {key}\n"))
        .collect()
}

const HOSPITAL_INI: &str = r#"# Hospital fleet, as the Ansible team keeps it.
bastion.example.org ansible_host=192.0.2.10 ansible_user=ops

[web]
web[01:03].example.org
web-legacy.example.org:2222 ansible_ssh_user=legacy ansible_ssh_host=192.0.2.99

[db]
db-[a:c] ansible_host=10.0.2.1 ansible_port=5522

[emr:children]
web
db

[emr:vars]
ansible_user=deploy
ansible_ssh_private_key_file=~/.ssh/emr_ed25519
rotor_accounts=svc_app,svc_backup

[db:vars]
ansible_user = dbadmin
rotor_accounts=['svc_app', 'svc_db:linux-password']

[all:vars]
ansible_ssh_private_key_file=/etc/rotor/admin_ed25519
ansible_user=root
"#;

fn hospital_known_hosts() -> String {
    known_hosts_for(&[
        ("192.0.2.10", KEY_A),
        ("web01.example.org,web02.example.org", KEY_A),
        ("web03.example.org", KEY_B),
        ("[192.0.2.99]:2222", KEY_B),
        ("[10.0.2.1]:5522", KEY_A),
    ])
}

#[test]
fn ini_groups_of_groups_with_ansible_precedence() {
    let kh = hospital_known_hosts();
    let import = import("hosts.ini", HOSPITAL_INI, &options(Some(&kh), "svc_app"));
    assert_eq!(import.format, "ini");
    // Host vars over the child group (db) over the parent (emr) over all.
    check_host(
        &import,
        (
            "bastion.example.org",
            "192.0.2.10",
            22,
            "ops",
            Some("/etc/rotor/admin_ed25519"),
            &[],
        ),
    );
    check_host(
        &import,
        (
            "web01.example.org",
            "web01.example.org",
            22,
            "deploy",
            Some("/home/ops/.ssh/emr_ed25519"),
            &["web", "emr"],
        ),
    );
    check_host(
        &import,
        (
            "web03.example.org",
            "web03.example.org",
            22,
            "deploy",
            Some("/home/ops/.ssh/emr_ed25519"),
            &["web", "emr"],
        ),
    );
    // `host:port`, and the ansible_ssh_* aliases win over ansible_* (the last one Ansible's
    // connection plugin lists).
    check_host(
        &import,
        (
            "web-legacy.example.org",
            "192.0.2.99",
            2222,
            "legacy",
            Some("/home/ops/.ssh/emr_ed25519"),
            &["web", "emr"],
        ),
    );
    check_host(
        &import,
        (
            "db-b",
            "10.0.2.1",
            5522,
            "dbadmin",
            Some("/home/ops/.ssh/emr_ed25519"),
            &["db", "emr"],
        ),
    );
    assert_eq!(import.hosts.len(), 8);
    assert_eq!(import.groups, ["web", "db", "emr"]);
    // rotor_accounts (a string on emr, a Python list on db) over --accounts.
    let names = |h: &str| {
        host(&import, h)
            .accounts
            .iter()
            .map(|a| format!("{}:{}", a.name, a.playbook))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names("web02.example.org"),
        ["svc_app:linux-password", "svc_backup:linux-password"]
    );
    assert_eq!(
        names("db-c"),
        ["svc_app:linux-password", "svc_db:linux-password"]
    );
    assert_eq!(names("bastion.example.org"), ["svc_app:linux-password"]);
    // Host keys: plain, a comma list, `[host]:port`.
    assert_eq!(
        host(&import, "web03.example.org").host_key.as_deref(),
        Some(KEY_B)
    );
    assert_eq!(host(&import, "db-a").host_key.as_deref(), Some(KEY_A));
    assert!(import.reports.is_empty(), "{:?}", import.reports);
}

const HOSPITAL_YAML: &str = r#"
all:
  vars:
    ansible_user: root
    ansible_ssh_private_key_file: /etc/rotor/admin_ed25519
  hosts:
    bastion.example.org:
      ansible_host: 192.0.2.10
      ansible_user: ops
  children:
    emr:
      vars:
        ansible_user: deploy
        rotor_accounts: [svc_app, svc_backup]
      children:
        web:
          hosts:
            web[01:03].example.org:
            web-legacy.example.org:2222:
              ansible_ssh_user: legacy
              ansible_ssh_host: 192.0.2.99
        db:
          vars:
            ansible_user: dbadmin
            ansible_port: "5522"
          hosts:
            db-[a:c]:
              ansible_host: 10.0.2.1
"#;

#[test]
fn yaml_groups_of_groups_with_ansible_precedence() {
    let kh = hospital_known_hosts();
    let import = import("inventory.yml", HOSPITAL_YAML, &options(Some(&kh), ""));
    assert_eq!(import.format, "yaml");
    check_host(
        &import,
        (
            "bastion.example.org",
            "192.0.2.10",
            22,
            "ops",
            Some("/etc/rotor/admin_ed25519"),
            &[],
        ),
    );
    check_host(
        &import,
        (
            "web02.example.org",
            "web02.example.org",
            22,
            "deploy",
            Some("/etc/rotor/admin_ed25519"),
            &["emr", "web"],
        ),
    );
    check_host(
        &import,
        (
            "web-legacy.example.org",
            "192.0.2.99",
            2222,
            "legacy",
            Some("/etc/rotor/admin_ed25519"),
            &["emr", "web"],
        ),
    );
    check_host(
        &import,
        (
            "db-a",
            "10.0.2.1",
            5522,
            "dbadmin",
            Some("/etc/rotor/admin_ed25519"),
            &["emr", "db"],
        ),
    );
    assert_eq!(host(&import, "db-c").accounts.len(), 2);
    // bastion is in no group with rotor_accounts, and no --accounts was given.
    let reported: Vec<_> = import
        .reports
        .iter()
        .map(|r| (r.kind, r.host.as_deref(), r.line))
        .collect();
    assert_eq!(
        reported,
        [(ReportKind::NoAccounts, Some("bastion.example.org"), Some(7))]
    );
}

#[test]
fn sibling_groups_merge_by_name_and_priority_as_ansible_does() {
    // Same depth: the later name wins (`b` over `a`), unless ansible_group_priority says else.
    let ini = "[a]\nh1\nh2\n[b]\nh1\nh2\n[a:vars]\nansible_user=alice\n[b:vars]\nansible_user=bob\n[all:vars]\nansible_ssh_private_key_file=/k\n";
    let kh = known_hosts_for(&[("h1", KEY_A), ("h2", KEY_A)]);
    let plain = import("hosts", ini, &options(Some(&kh), ""));
    assert_eq!(host(&plain, "h1").user, "bob");
    let prioritised = ini.replace("[a:vars]\n", "[a:vars]\nansible_group_priority=10\n");
    let import = import("hosts", &prioritised, &options(Some(&kh), ""));
    assert_eq!(host(&import, "h2").user, "alice");
}

#[test]
fn group_vars_and_host_vars_files_override_the_inventory() {
    let ini = "[web]\nweb1 ansible_user=inline\nweb2\n[web:vars]\nansible_user=ini\n";
    let vars = [
        VarsFile {
            path: "group_vars/all.yml".into(),
            target: VarsTarget::Group("all".into()),
            text: "ansible_ssh_private_key_file: /etc/rotor/key\n".into(),
        },
        VarsFile {
            path: "group_vars/web.yml".into(),
            target: VarsTarget::Group("web".into()),
            text: "ansible_user: from_group_vars\n".into(),
        },
        VarsFile {
            path: "host_vars/web1.yml".into(),
            target: VarsTarget::Host("web1".into()),
            text: "ansible_port: 2200\n".into(),
        },
        VarsFile {
            path: "group_vars/nosuch.yml".into(),
            target: VarsTarget::Group("nosuch".into()),
            text: "{{ not even yaml".into(),
        },
    ];
    let import = import_with("hosts.ini", ini, &vars, &options(None, "")).unwrap();
    // group_vars/web over [web:vars]; the host line over group_vars; host_vars over all.
    assert_eq!(host(&import, "web2").user, "from_group_vars");
    assert_eq!(host(&import, "web1").user, "inline");
    assert_eq!(host(&import, "web1").port, 2200);
    assert_eq!(host(&import, "web2").key.as_deref(), Some("/etc/rotor/key"));
}

#[test]
fn host_patterns_expand_as_ansible_does() {
    let check = |pattern: &str, names: &[&str], port: Option<i64>| {
        let (got, got_port) = expand_pattern(pattern).unwrap();
        assert_eq!(
            (got.iter().map(String::as_str).collect::<Vec<_>>(), got_port),
            (names.to_vec(), port),
            "{pattern}"
        );
    };
    check("web[01:03]", &["web01", "web02", "web03"], None);
    check("db-[a:c]", &["db-a", "db-b", "db-c"], None);
    check("h[1:7:3]", &["h1", "h4", "h7"], None);
    check("r[1:2]-[a:b]", &["r1-a", "r1-b", "r2-a", "r2-b"], None);
    check(
        "10.0.0.[8:10]",
        &["10.0.0.8", "10.0.0.9", "10.0.0.10"],
        None,
    );
    check("web01.example.org:2222", &["web01.example.org"], Some(2222));
    check("web[1:2]:2222", &["web1", "web2"], Some(2222));
    check("[2001:db8::1]:22", &["2001:db8::1"], Some(22));
    check("2001:db8::1", &["2001:db8::1"], None);
    check("h[:2]", &["h0", "h1", "h2"], None);
    assert!(expand_pattern("web[01:100]").is_err(), "unequal widths");
    assert!(expand_pattern("web[0:99999999]").is_err(), "too many hosts");
}

#[test]
fn ini_values_are_python_literals() {
    assert_eq!(literal_value("22").unwrap(), Value::Int(22));
    assert_eq!(literal_value("022").unwrap(), Value::Str("022".into()));
    assert_eq!(
        literal_value("'deploy'").unwrap(),
        Value::Str("deploy".into())
    );
    assert_eq!(literal_value("True").unwrap(), Value::Bool(true));
    assert_eq!(literal_value("yes").unwrap(), Value::Str("yes".into()));
    assert_eq!(
        literal_value("['a', \"b\"]").unwrap(),
        Value::List(vec![Value::Str("a".into()), Value::Str("b".into())])
    );
    assert_eq!(
        literal_value("deploy # the admin").unwrap(),
        Value::Str("deploy # the admin".into())
    );
    assert_eq!(
        shlex_split(r#"web1 ansible_user="a b" x='c d' y=e\ f # comment"#).unwrap(),
        ["web1", "ansible_user=a b", "x=c d", "y=e f"]
    );
}

#[test]
fn reported_cases_are_not_guessed() {
    let ini = r#"[web]
web1 ansible_password=hunter2-but-secret
web2 ansible_become_pass=sudo-secret ansible_ssh_private_key_file=/k
win1 ansible_connection=winrm
local ansible_connection=local
[web:vars]
ansible_user=deploy
"#;
    let import = import("hosts.ini", ini, &options(None, "svc_app"));
    // Secrets: reported by name and line, never written.
    assert!(
        !import.yaml.contains("secret") && !import.yaml.contains("hunter2"),
        "{}",
        import.yaml
    );
    let kinds: Vec<(ReportKind, Option<&str>, Option<u64>)> = import
        .reports
        .iter()
        .map(|r| (r.kind, r.host.as_deref(), r.line))
        .collect();
    for expected in [
        (ReportKind::Secret, Some("web1"), Some(2)),
        (ReportKind::Secret, Some("web2"), Some(3)),
        (ReportKind::Connection, Some("win1"), Some(4)),
        (ReportKind::Connection, Some("local"), Some(5)),
        (ReportKind::NoHostKey, Some("web1"), Some(2)),
    ] {
        assert!(kinds.contains(&expected), "{expected:?} in {kinds:?}");
    }
    assert!(
        import
            .reports
            .iter()
            .all(|r| !r.message.contains("hunter2"))
    );
    // Skipped hosts are not written; the password host logs in with the vault's copy.
    assert_eq!(
        import
            .hosts
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>(),
        ["web1", "web2"]
    );
    assert_eq!(
        host(&import, "web1").credential.as_deref(),
        Some("web1/deploy")
    );
    assert!(
        import.yaml.contains("rotor enroll web1/deploy"),
        "{}",
        import.yaml
    );
}

#[test]
fn a_host_that_cannot_be_imported_fails_the_whole_import() {
    let check = |text: &str, opts: &Options, kind: ReportKind, host: &str, line: u64| {
        let name = if text.starts_with("all:") {
            "hosts.yml"
        } else {
            "hosts.ini"
        };
        let Err(ImportError::Hosts { problems, .. }) = import_with(name, text, &[], opts) else {
            panic!("{text} must fail");
        };
        assert!(
            problems
                .iter()
                .any(|p| p.kind == kind && p.host.as_deref() == Some(host) && p.line == Some(line)),
            "{kind:?} {host}:{line} in {problems:?}"
        );
    };
    let opts = options(None, "svc_app");
    check(
        "[web]\nweb1 ansible_user=a ansible_ssh_private_key_file=/k\nweb2 ansible_ssh_private_key_file=/k\n",
        &opts,
        ReportKind::NoUser,
        "web2",
        3,
    );
    check(
        "[web]\nweb1 ansible_user=a\n",
        &opts,
        ReportKind::NoKey,
        "web1",
        2,
    );
    check(
        "[web]\nweb1 ansible_host=\"{{ lookup('env', 'WEB1') }}\" ansible_user=a ansible_ssh_private_key_file=/k\n",
        &opts,
        ReportKind::Jinja,
        "web1",
        2,
    );
    check(
        "[web]\nweb1\n[web:vars]\nansible_user={{ admin_user }}\nansible_ssh_private_key_file=/k\n",
        &opts,
        ReportKind::Jinja,
        "web1",
        4,
    );
    check(
        "[web]\nweb1 ansible_user=Admin ansible_ssh_private_key_file=/k\n",
        &opts,
        ReportKind::Invalid,
        "web1",
        2,
    );
    check(
        "[web]\nweb1 ansible_port=70000 ansible_user=a ansible_ssh_private_key_file=/k\n",
        &opts,
        ReportKind::Invalid,
        "web1",
        2,
    );
    // --connect-user and --connect-key stand in for what no var sets.
    let mut with_defaults = options(None, "");
    with_defaults.connect_user = Some("deploy".into());
    with_defaults.connect_key = Some("keys/admin".into());
    let import = import_with("hosts.ini", "[web]\nweb1\n", &[], &with_defaults).unwrap();
    assert_eq!(
        (
            host(&import, "web1").user.as_str(),
            host(&import, "web1").key.as_deref()
        ),
        ("deploy", Some("/srv/ansible/keys/admin"))
    );
    check(
        "all:\n  vars: { ansible_user: a, ansible_ssh_private_key_file: /k }\n  hosts:\n    web1:\n      rotor_accounts: [{ name: svc_app }]\n",
        &opts,
        ReportKind::Invalid,
        "web1",
        5,
    );
    // A group's Jinja is one problem, and every host it stops is counted.
    let err = import_with(
        "hosts.ini",
        "[web]\nweb[1:4]\n[web:vars]\nansible_user={{ u }}\nansible_ssh_private_key_file=/k\n",
        &[],
        &opts,
    )
    .unwrap_err();
    let ImportError::Hosts { problems, n_hosts } = &err else {
        panic!("{err:?}")
    };
    assert_eq!((problems.len(), *n_hosts), (1, 4), "{err}");
    assert!(
        err.to_string().contains("4 hosts cannot be imported"),
        "{err}"
    );
    // The error names each host and what to do.
    let err = import_with("hosts.ini", "[web]\nweb1\nweb2\n", &[], &opts).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("2 hosts cannot be imported")
            && text.contains("host web2")
            && text.contains("--connect-user"),
        "{text}"
    );
}

#[test]
fn dynamic_inventories_are_refused_with_what_to_do() {
    let opts = options(None, "");
    let dynamic = |text: &str, name: &str, executable: bool| {
        let source = Source {
            path: name.into(),
            text: text.into(),
            executable,
        };
        match convert(&source, &[], &opts) {
            Err(e @ ImportError::Dynamic { .. }) => e.to_string(),
            other => panic!("{name}: {other:?}"),
        }
    };
    let script = dynamic("#!/usr/bin/env python3\nprint('{}')\n", "ec2.py", false);
    assert!(
        script.contains("ansible-inventory -i ec2.py --list --yaml"),
        "{script}"
    );
    let plugin = dynamic(
        "plugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n",
        "aws_ec2.yml",
        false,
    );
    assert!(plugin.contains("amazon.aws.aws_ec2"), "{plugin}");
    let executable = dynamic("[web]\nweb1\n", "hosts", true);
    assert!(executable.contains("chmod -x hosts"), "{executable}");
}

#[test]
fn ansible_refusals_are_refusals_here_too() {
    let opts = options(None, "");
    let unreadable = |text: &str| match import_with("hosts.ini", text, &[], &opts) {
        Err(ImportError::Unreadable { line, message, .. }) => (line, message),
        other => panic!("{text}: {other:?}"),
    };
    assert_eq!(unreadable("[web]\nweb1 not-a-var\n").0, 2);
    assert_eq!(unreadable("[emr:children]\nweb\n").0, 2);
    assert_eq!(unreadable("[web:vars]\nansible_user=a\n").0, 1);
    assert_eq!(unreadable("[web:hostz]\n").0, 1);
    assert!(
        unreadable("[a:children]\nb\n[b:children]\na\n")
            .1
            .contains("own children")
    );
}

#[test]
fn known_hosts_matches_plain_bracketed_hashed_and_patterns() {
    let file = format!(
        "# comment\n{HASHED_A}\n[10.0.0.5]:2222 {KEY_B}\nweb*.example.org,!web9.example.org {KEY_A}\n@revoked * {KEY_B}\nold.example.org {KEY_B}\nbroken.example.org ssh-ed25519 AAAAnotakey\n"
    );
    let kh = KnownHosts::parse(&file);
    assert_eq!(
        kh.find("db.example.org", 22).as_deref(),
        Some(KEY_A),
        "hashed"
    );
    assert_eq!(
        kh.find("DB.example.org", 22).as_deref(),
        Some(KEY_A),
        "case"
    );
    assert_eq!(kh.find("db.example.org", 2222), None, "port matters");
    assert_eq!(
        kh.find("10.0.0.5", 2222),
        None,
        "revoked key is never pinned"
    );
    assert_eq!(
        kh.find("web1.example.org", 22).as_deref(),
        Some(KEY_A),
        "wildcard"
    );
    assert_eq!(kh.find("web9.example.org", 22), None, "negated");
    assert_eq!(kh.find("old.example.org", 22), None, "revoked");
    assert_eq!(kh.find("broken.example.org", 22), None, "damaged key");
    let bracketed = KnownHosts::parse(&format!("[10.0.0.5]:2222 {KEY_A}\n"));
    assert_eq!(bracketed.find("10.0.0.5", 2222).as_deref(), Some(KEY_A));
}

#[test]
fn rendered_strings_read_back_exactly() {
    for tricky in [
        "plain",
        "with \"quotes\" and \\ back",
        "tab\there",
        "#not a comment",
        "ü-ñ",
        "line\nbreak",
        "\u{1b}[31m",
        "yes",
        "null",
        "0755",
    ] {
        let text = format!("v: {}\n", quote(tricky));
        let back: std::collections::BTreeMap<String, String> =
            serde_saphyr::from_str(&text).unwrap();
        assert_eq!(back["v"], tricky, "{text}");
    }
    // A key path with spaces and quotes survives into rotor's model.
    let ini =
        "[web]\nweb1 ansible_user=a \"ansible_ssh_private_key_file=/keys/my \\\"admin\\\" key\"\n";
    let kh = known_hosts_for(&[("web1", KEY_A)]);
    let import = import("hosts.ini", ini, &options(Some(&kh), "svc_app"));
    let inv = crate::inventory::parse(&import.yaml, Path::new("/tmp/rotor.yaml")).unwrap();
    assert_eq!(
        inv.hosts[0].bootstrap_key(),
        Some(Path::new("/keys/my \"admin\" key"))
    );
}

#[test]
fn unpinned_hosts_read_back_with_only_the_missing_pin() {
    let import = import(
        "hosts.ini",
        "[web]\nweb1 ansible_user=a ansible_ssh_private_key_file=/k\n",
        &options(None, "svc_app"),
    );
    let err = crate::inventory::parse(&import.yaml, Path::new("/tmp/rotor.yaml")).unwrap_err();
    assert_eq!(err.problems().len(), 1, "{err}");
    assert!(
        err.problems()[0].message.contains("no host key pinned"),
        "{err}"
    );
    assert!(
        import.yaml.contains("ssh-keyscan -p 22 web1"),
        "{}",
        import.yaml
    );
}

#[test]
fn ansible_inventories_are_recognised_and_rotor_ones_are_not() {
    for (text, ansible) in [
        ("[web]\nweb1 ansible_host=10.0.0.1\n", true),
        (
            "[db:vars]\nrotor_accounts=['svc_app', 'svc_db']\n[db]\ndb1\n",
            true,
        ),
        ("# fleet\n[web:children]\nemr\n[emr]\nemr01\n", true),
        ("all:\n  hosts:\n    web1:\n", true),
        (
            "web:\n  hosts:\n    web1: { ansible_host: 10.0.0.1 }\n",
            true,
        ),
        ("plugin: aws_ec2\n", true),
        ("version: 1\nhosts: []\n", false),
        ("hosts:\n  - name: a\n", false),
        ("[1, 2, 3]\n", false),
        ("just some words\n", false),
    ] {
        assert_eq!(looks_like_ansible(text), ansible, "{text}");
    }
}

#[test]
fn load_says_when_the_file_is_an_ansible_inventory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hosts.ini");
    std::fs::write(&path, "[web]\nweb1 ansible_host=10.0.0.1\n").unwrap();
    let err = crate::inventory::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("this looks like an Ansible inventory: run `rotor inventory import ansible"),
        "{err}"
    );
    std::fs::write(&path, "version: 1\nhosts: 3\n").unwrap();
    let err = crate::inventory::load(&path).unwrap_err().to_string();
    assert!(!err.contains("Ansible"), "{err}");
}

fn unreadable(text: &str) -> (u64, String) {
    match import_with("hosts.ini", text, &[], &options(None, "svc_app")) {
        Err(err @ ImportError::Unreadable { line, .. }) => (line, err.to_string()),
        other => panic!("expected an unreadable inventory, got {other:?}"),
    }
}

#[test]
fn parse_errors_never_quote_a_password() {
    for (text, line, key) in [
        (
            "[web]\nweb1\n[all:vars]\nansible_become_pass: s3cret\n",
            4,
            "ansible_become_pass",
        ),
        (
            "[web]\nweb1 ansible_password:s3cret\n",
            2,
            "ansible_password",
        ),
        (
            "[web]\nweb1 ansible_ssh_pass s3cret\n",
            2,
            "ansible_ssh_pass",
        ),
        ("[web]\nansible_password=s3cret\n", 2, "ansible_password"),
        ("[web]\nansible_password:s3cret\n", 2, "ansible_password"),
        (
            "[all:vars]\nansible_password s3cret\n",
            2,
            "ansible_password",
        ),
        (
            "[web:children]\nansible_password: s3cret\n",
            2,
            "ansible_password",
        ),
        ("[web]\nweb1 my_token:s3cret\n", 2, "my_token"),
    ] {
        let (at, message) = unreadable(text);
        assert_eq!(at, line, "{message}");
        assert!(message.contains(key), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
    }
}

#[test]
fn deeply_nested_values_are_an_error_not_a_stack_overflow() {
    let deep = "[".repeat(200_000);
    let (line, message) = unreadable(&format!("[web]\nweb1\n[all:vars]\nx={deep}\n"));
    assert_eq!(line, 4);
    assert!(
        message.contains("nests lists more than 64 deep"),
        "{message}"
    );
    let (line, _) = unreadable(&format!("[web]\nweb1 x={deep}\n"));
    assert_eq!(line, 2);
    // 64 levels still read as Python would.
    let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
    assert!(matches!(literal_value(&ok), Ok(Value::List(_))));
    assert!(literal_value(&format!("[{ok}]")).is_err());
}

#[test]
fn long_children_chains_are_walked_without_recursion() {
    let n = 100_000;
    let mut text = String::from("[g0]\nweb1\n");
    for i in 0..n {
        let _ = writeln!(text, "[g{}:children]\ng{i}", i + 1);
    }
    let model = read::parse_ini(&text).unwrap();
    let depth = depths(&model).unwrap();
    assert_eq!(depth[model.group("g0").unwrap()], n + 1);
    assert_eq!(depth[model.group(&format!("g{n}")).unwrap()], 1);
    // A loop is still refused.
    let model = read::parse_ini("[a:children]\nb\n[b:children]\nc\n[c:children]\na\n").unwrap();
    let err = depths(&model).unwrap_err();
    assert!(err.contains("among its own children"), "{err}");
}

#[test]
fn repeated_ranges_are_bounded_by_the_expansion_cap() {
    let mut text = String::new();
    for i in 0..20 {
        let _ = writeln!(text, "[g{i}]\nweb[00000:99999]");
    }
    let (line, message) = unreadable(&text);
    // The 11th section brings the total over 1,000,000.
    assert_eq!(line, 22, "{message}");
    assert!(message.contains("more than 1000000 times"), "{message}");
    // Vars count as work too: 100,000 hosts with 10 vars each.
    let vars: String = (0..10).map(|i| format!(" v{i}=1")).collect();
    let (line, _) = unreadable(&format!("[web]\nweb[00000:99999]{vars}\n"));
    assert_eq!(line, 2);
}

#[test]
fn reports_escape_host_and_group_names() {
    let report = Report {
        kind: ReportKind::Ignored,
        host: Some("web1\u{1b}[2J".into()),
        group: Some("g\u{7}".into()),
        var: None,
        file: Some("hosts.ini".into()),
        line: Some(3),
        message: "m".into(),
    };
    let shown = report.to_string();
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "{shown:?}"
    );
    assert!(shown.contains("host web1"), "{shown}");
    let report = Report {
        host: None,
        ..report
    };
    assert!(!report.to_string().contains('\u{7}'));
}

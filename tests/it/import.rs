//! `rotor inventory import ansible` against Ansible itself: for each fixture, what
//! `ansible-inventory --list` (ansible-core) says each host connects with and belongs to is
//! what rotor imported; the imported inventory passes `rotor inventory check`; and an Ansible
//! INI inventory of a lab, imported with the lab's known_hosts, rotates every account.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::lab::Lab;
use crate::support::{Rotor, json};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK6nyu8d0baNX95RMq2NN29/Lq1udxPtAp1oA8ZiSe4e";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/fixtures/ansible")
        .join(name)
}

/// What Ansible connects each host with: (address, port, user, key file), and its groups
/// (direct and inherited, without `all` and `ungrouped`).
#[derive(Debug, PartialEq)]
struct Connect {
    address: String,
    port: u64,
    user: String,
    key: String,
    groups: BTreeSet<String>,
}

/// `ansible-inventory -i FILE --list`, read the way Ansible's ssh connection plugin reads
/// the vars (the last of `ansible_host`/`ansible_ssh_host` that is set wins, and so on).
fn ansible_view(file: &Path, home: &Path) -> BTreeMap<String, Connect> {
    let out = Command::new("ansible-inventory")
        .args(["-i"])
        .arg(file)
        .arg("--list")
        .env("HOME", home)
        .env("ANSIBLE_LOCAL_TEMP", home.join("tmp"))
        .output()
        .expect("run ansible-inventory (the ansible-core package; scripts/setup installs it)");
    assert!(
        out.status.success(),
        "ansible-inventory: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hostvars = list["_meta"]["hostvars"].as_object().unwrap();
    // Parents of each group and host, from each group's `hosts` and `children`.
    let mut parents: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (group, body) in list.as_object().unwrap() {
        if group == "_meta" {
            continue;
        }
        for key in ["hosts", "children"] {
            for member in body[key].as_array().into_iter().flatten() {
                parents
                    .entry(member.as_str().unwrap().to_owned())
                    .or_default()
                    .push(group.clone());
            }
        }
    }
    let last = |vars: &serde_json::Value, names: &[&str]| -> Option<String> {
        names.iter().rev().find_map(|n| match &vars[*n] {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        })
    };
    let mut view = BTreeMap::new();
    for host in hostvars.keys() {
        let vars = &hostvars[host];
        let mut groups = BTreeSet::new();
        let mut todo = parents.get(host).cloned().unwrap_or_default();
        while let Some(g) = todo.pop() {
            if groups.insert(g.clone()) {
                todo.extend(parents.get(&g).cloned().unwrap_or_default());
            }
        }
        groups.remove("all");
        groups.remove("ungrouped");
        let key = last(
            vars,
            &["ansible_private_key_file", "ansible_ssh_private_key_file"],
        )
        .unwrap_or_default();
        // Ansible expands `~` when it uses the path.
        let key = match key.strip_prefix("~/") {
            Some(rest) => home.join(rest).display().to_string(),
            None => key,
        };
        view.insert(
            host.clone(),
            Connect {
                address: last(vars, &["ansible_host", "ansible_ssh_host"])
                    .unwrap_or_else(|| host.clone()),
                port: last(vars, &["ansible_port", "ansible_ssh_port"])
                    .map_or(22, |p| p.parse().unwrap()),
                user: last(vars, &["ansible_user", "ansible_ssh_user"]).unwrap_or_default(),
                key,
                groups,
            },
        );
    }
    view
}

fn rotor_import(rotor: &Rotor, home: &Path, args: &[&str]) -> Output {
    rotor
        .cmd(&[&["inventory", "import", "ansible"][..], args].concat())
        .env("HOME", home)
        .output()
        .unwrap()
}

fn known_hosts_name(address: &str, port: u64) -> String {
    if port == 22 {
        address.to_owned()
    } else {
        format!("[{address}]:{port}")
    }
}

#[test]
fn each_fixture_imports_as_ansible_reads_it_and_passes_check() {
    let rotor = Rotor::without_vault();
    let home = tempfile::tempdir().unwrap();
    for name in ["hospital.ini", "hospital.yml", "clinic/hosts"] {
        let file = fixture(name);
        let ansible = ansible_view(&file, home.path());
        assert!(ansible.len() >= 3, "{name}: {ansible:?}");
        // A known_hosts file with a key for every endpoint Ansible would dial.
        let known_hosts = home.path().join("known_hosts");
        let lines: Vec<String> = ansible
            .values()
            .map(|c| format!("{} {KEY}\n", known_hosts_name(&c.address, c.port)))
            .collect();
        std::fs::write(&known_hosts, lines.concat()).unwrap();

        let out_file = home
            .path()
            .join(format!("{}.rotor.yaml", name.replace('/', "_")));
        let out = rotor_import(
            &rotor,
            home.path(),
            &[
                file.to_str().unwrap(),
                "--accounts",
                "svc_app",
                "--known-hosts",
                known_hosts.to_str().unwrap(),
                "-o",
                out_file.to_str().unwrap(),
                "--output",
                "json",
            ],
        );
        let summary = json(&out);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: {summary:#}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let imported: BTreeMap<String, Connect> = summary["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["name"].as_str().unwrap().to_owned(),
                    Connect {
                        address: h["address"].as_str().unwrap().to_owned(),
                        port: h["port"].as_u64().unwrap(),
                        user: h["user"].as_str().unwrap().to_owned(),
                        key: h["key"].as_str().unwrap_or_default().to_owned(),
                        groups: h["groups"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|g| g.as_str().unwrap().to_owned())
                            .collect(),
                    },
                )
            })
            .collect();
        assert_eq!(imported, ansible, "{name}");
        assert!(
            summary["hosts"]
                .as_array()
                .unwrap()
                .iter()
                .all(|h| h["host_key"] == KEY),
            "{name}: {summary:#}"
        );

        // The inventory itself is valid; `inventory check` also checks the local files it
        // names, and the fixtures' key files (an Ansible user's, on another machine) are not
        // here: those, and only those, are its problems.
        let check = rotor.run(&[
            "inventory",
            "check",
            "-i",
            out_file.to_str().unwrap(),
            "-o",
            "json",
        ]);
        let said = json(&check);
        let problems = said["problems"].as_array().expect("a problem list");
        assert!(
            problems.iter().all(|p| p["check"] == "files"
                && p["message"].as_str().is_some_and(
                    |m| m.starts_with("the key file") && m.ends_with("file not found")
                )),
            "{name}: {said:#}"
        );
        assert_eq!(
            check.status.code(),
            Some(if problems.is_empty() { 0 } else { 3 }),
            "{name}: {said:#}"
        );
    }
}

#[test]
fn check_on_an_ansible_inventory_says_to_import_it() {
    let rotor = Rotor::without_vault();
    for name in ["hospital.ini", "hospital.yml"] {
        let out = rotor.run(&["inventory", "check", "-i", fixture(name).to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0));
        assert!(
            stderr.contains(
                "this looks like an Ansible inventory: run `rotor inventory import ansible"
            ),
            "{name}: {stderr}"
        );
    }
}

#[test]
fn nothing_is_written_when_a_host_cannot_be_imported_or_the_file_exists() {
    let rotor = Rotor::without_vault();
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    // web2 has no user: the whole import fails, naming it, and no file appears.
    let ini = dir.join("hosts.ini");
    std::fs::write(
        &ini,
        "[web]\nweb1 ansible_user=deploy\nweb2\n[web:vars]\nansible_ssh_private_key_file=/k\n",
    )
    .unwrap();
    let out_file = dir.join("rotor.yaml");
    let out = rotor_import(
        &rotor,
        dir,
        &[ini.to_str().unwrap(), "-o", out_file.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("host web2") && stderr.contains("--connect-user"),
        "{stderr}"
    );
    assert!(!out_file.exists());
    assert_eq!(
        std::fs::read_dir(dir).unwrap().count(),
        1,
        "no temporary file left behind"
    );
    // Under --output json, the error is an object with a stable code.
    let out = rotor_import(&rotor, dir, &[ini.to_str().unwrap(), "--output", "json"]);
    assert_eq!(out.status.code(), Some(1));

    // With --connect-user it imports; an existing file is never overwritten.
    let out = rotor_import(
        &rotor,
        dir,
        &[
            ini.to_str().unwrap(),
            "--connect-user",
            "ops",
            "-o",
            out_file.to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "imported, with hosts not pinned: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = std::fs::read_to_string(&out_file).unwrap();
    assert!(
        first.contains("user: \"ops\"") && first.contains("ssh-keyscan -p 22 web2"),
        "{first}"
    );
    let out = rotor_import(
        &rotor,
        dir,
        &[
            ini.to_str().unwrap(),
            "--connect-user",
            "root",
            "-o",
            out_file.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("never overwrites"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), first);

    // A dynamic inventory script is refused with what to run instead.
    let script = dir.join("ec2.py");
    std::fs::write(&script, "#!/usr/bin/env python3\nprint('{}')\n").unwrap();
    let out = rotor_import(&rotor, dir, &[script.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("ansible-inventory -i"), "{stderr}");
}

#[test]
fn an_imported_ansible_inventory_rotates_the_lab() {
    let lab = Lab::start(3);
    let rotor = Rotor::init();
    let dir = lab.dir();
    let key = dir.join("admin_ed25519");
    // The Ansible inventory an operator of this fleet would have: groups of groups, the
    // connect identity on the parent group, one host by IP pattern.
    let hosts = lab.host_names();
    let ini = format!(
        "[odd]\n{h1} ansible_host={a1}\n{h3} ansible_host={a3}\n\n[even]\n{h2} ansible_host={a2}\n\n[lab:children]\nodd\neven\n\n[lab:vars]\nansible_user=root\nansible_ssh_private_key_file={key}\nansible_become_pass=not-copied\n",
        h1 = hosts[0],
        h2 = hosts[1],
        h3 = hosts[2],
        a1 = lab.address(&hosts[0]),
        a2 = lab.address(&hosts[1]),
        a3 = lab.address(&hosts[2]),
        key = key.display(),
    );
    let ansible_file = dir.join("ansible-hosts.ini");
    std::fs::write(&ansible_file, &ini).unwrap();
    let imported = dir.join("imported.yaml");
    let out = rotor.run(&[
        "inventory",
        "import",
        "ansible",
        ansible_file.to_str().unwrap(),
        "--known-hosts",
        dir.join("known_hosts").to_str().unwrap(),
        "--accounts",
        "svc_app,svc_backup",
        "-o",
        imported.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The become password is reported (exit 3), never written.
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("ansible_become_pass"), "{stderr}");
    let text = std::fs::read_to_string(&imported).unwrap();
    assert!(!text.contains("not-copied"), "{text}");
    assert_eq!(text.matches("host_key: ").count(), 3, "{text}");

    let check = rotor.run(&["inventory", "check", "-i", imported.to_str().unwrap()]);
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let out = rotor.run(&[
        "rotate",
        "-i",
        imported.to_str().unwrap(),
        "--all",
        "--reason",
        "it",
        "--output",
        "json",
    ]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["counts"]["committed"], 6, "{report:#}");
    for host in hosts {
        for account in ["svc_app", "svc_backup"] {
            let secret = rotor
                .show(&format!("{host}/{account}"))
                .expect("vault has the secret");
            assert!(
                lab.login_works(host, account, &secret),
                "{host}/{account}: the new password works"
            );
            assert!(
                !lab.login_works(host, account, lab.shared_password()),
                "{host}/{account}: the old one does not"
            );
        }
    }
}

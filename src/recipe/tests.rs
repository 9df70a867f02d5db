//! The recipe model through its two doors: loading a playbook's text (every refusal with its
//! line and fix) and running a recipe over a fake shell (the exact commands and stdin).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use insta::assert_snapshot;

use super::*;
use crate::connector::ssh::ExecOutput;
use crate::connector::{ConnectorError, FaultClass};
use crate::credential::{AccountName, CredentialId, HostName};
use crate::secret::Secret;
use crate::target::Target;

/// Loads `text` as `site/bad.yaml`: the recipe's name, or every problem, one per line.
fn check(text: &str) -> String {
    match parse(text, Path::new("site/bad.yaml")) {
        Ok(recipe) => format!("ok: {}", recipe.name),
        Err(e) => e.to_string(),
    }
}

const GOOD: &str = "name: site-password
kind: password
description: test
vars:
  config: { kind: path, default: /etc/app.conf, description: the file }
steps:
  read_restore_point:
    - run: getent shadow -- {account}
      save: hash
      field: 2
      password_hash: true
  set:
    - run: chpasswd
      stdin: \"{account}:{secret}\\n\"
  prove:
    - action: ssh-password-login
  undo:
    - run: chpasswd -e
      stdin: \"{account}:{saved.hash}\\n\"
";

/// `GOOD` with one piece of text replaced.
fn bad(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "{from}");
    GOOD.replace(from, to)
}

#[test]
fn built_in_playbooks_load() {
    let catalog = Catalog::built_in();
    let names: Vec<&str> = catalog.names().collect();
    assert_eq!(
        names,
        [
            "app-config-password",
            "ldap-password",
            "linux-password",
            "linux-ssh-key"
        ]
    );
    assert_eq!(check(GOOD), "ok: site-password");
}

#[test]
fn a_secret_in_a_command_line_is_refused() {
    assert_snapshot!(check(&bad("run: chpasswd\n", "run: echo {secret} | chpasswd\n")), @r#"site/bad.yaml:13:12: steps.set[0].run: {secret} puts a secret in a command line, where every process on the host can read it: pass it on stdin instead, e.g. `stdin: "{account}:{secret}\n"`"#);
    assert_snapshot!(check(&bad("run: chpasswd -e", "run: chpasswd -e {saved.hash}")), @r#"site/bad.yaml:18:12: steps.undo[0].run: {saved.hash} puts a secret in a command line, where every process on the host can read it: pass it on stdin instead, e.g. `stdin: "{account}:{secret}\n"`"#);
}

#[test]
fn unknown_steps_actions_and_variables() {
    assert_snapshot!(check(&bad("  prove:\n", "  verify:\n")), @"site/bad.yaml:15:3: steps.verify: unknown step `verify`: a playbook's steps are read_restore_point, set, prove, undo, retire; the proof is `prove`");
    assert_snapshot!(check(&bad("  undo:\n", "  undoo:\n")), @"site/bad.yaml:17:3: steps.undoo: unknown step `undoo`: a playbook's steps are read_restore_point, set, prove, undo, retire; did you mean `undo`?");
    assert_snapshot!(check(&bad("ssh-password-login", "ssh-pasword-login")), @"site/bad.yaml:16:15: steps.prove[0].action: unknown action `ssh-pasword-login`: the actions are ssh-password-login, ssh-key-login, read-file, write-file, check, authorized-keys-read, authorized-keys-add, authorized-keys-remove; did you mean `ssh-password-login`?");
    assert_snapshot!(check(&bad("getent shadow -- {account}", "getent shadow -- {acount} {config}")), @"site/bad.yaml:8:12: steps.read_restore_point[0].run: unknown variable `{acount}`: the playbook declares config (declare it under `vars:`, e.g. `acount: { kind: path, default: /etc/app.conf, description: ... }`, or use {account}, {host} or {home}); did you mean `account`?");
    assert_snapshot!(check(&bad("{saved.hash}", "{saved.hsh}")), @"site/bad.yaml:19:14: steps.undo[0].stdin: `{saved.hsh}` names no saved part: read_restore_point saves hash (to save another, add `save: hsh` to a read_restore_point step); did you mean `hash`?");
    assert_snapshot!(check(&bad("      field: 2\n", "      feild: 2\n")), @"site/bad.yaml:10:7: steps.read_restore_point[0].feild: unknown field `feild`: allowed here are run, action, stdin, expect_status, missing_exit, save, field, separator, password_hash, failure, path, content, replace_line, key");
    assert_snapshot!(check(&bad("kind: password", "kind: pasword")), @"site/bad.yaml:2:7: kind: unknown kind `pasword`: a playbook's kind is `password` or `ssh-key`; did you mean `password`?");
}

#[test]
fn yaml_errors_and_missing_parts() {
    assert_snapshot!(check(&bad("  set:\n", "  set\n")), @"site/bad.yaml:12:3: steps.read_restore_point[0]: simple key expected ':': this is not valid YAML here; check indentation and quoting");
    assert_snapshot!(check(&bad("description: test\n", "")), @"site/bad.yaml:5:1: description: missing field `description`: add `description: ...`, one line saying what the playbook rotates");
    assert_snapshot!(check(""), @"site/bad.yaml: the playbook is empty: start it with `name:`, `kind: password` and `description:`, then `steps:`");
    assert_snapshot!(check(&bad("config: { kind: path, default: /etc/app.conf,", "config: { kind: path, default: \"/etc/$(id).conf\",")), @"site/bad.yaml:5:34: vars.config.default: `/etc/$(id).conf` holds `$`, which could carry shell syntax into a command line: a path may use letters, digits, '.', '_', '-' and '/'");
    assert_snapshot!(check(&bad("    - action: ssh-password-login\n", "    - action: ssh-password-login\n      path: /etc/x\n")), @"site/bad.yaml:17:13: steps.prove[0].path: action `ssh-password-login` does not take `path`: allowed here are action");
    assert_snapshot!(check(&bad("  prove:\n    - action: ssh-password-login\n", "")), @"site/bad.yaml:7:3: steps.prove: the playbook has no `prove` step: every playbook needs read_restore_point, set, prove and undo; add `prove:` with e.g. `- action: ssh-password-login`");
    assert_snapshot!(check(&bad("ssh-password-login", "ssh-key-login")), @"site/bad.yaml:16:7: steps.prove[0]: action `ssh-key-login` is for `kind: ssh-key` playbooks");
}

#[test]
fn variable_values() {
    let cases = [
        (VarKind::Path, "/etc/emr/app.conf", "ok"),
        (
            VarKind::Path,
            "etc/app.conf",
            "`etc/app.conf` is not an absolute path: write it from `/`, e.g. /etc/emr/app.conf",
        ),
        (
            VarKind::Path,
            "/etc/a;rm -rf /",
            "`/etc/a;rm -rf /` holds `;`, which could carry shell syntax into a command line: a path may use letters, digits, '.', '_', '-' and '/'",
        ),
        (
            VarKind::Path,
            "/etc/../shadow",
            "`/etc/../shadow` climbs with `..`: write the path it means directly",
        ),
        (
            VarKind::Path,
            "/etc/a b",
            "`/etc/a b` holds the character U+0020, which could carry shell syntax into a command line: a path may use letters, digits, '.', '_', '-' and '/'",
        ),
        (VarKind::Command, "systemctl reload emr-app", "ok"),
        (
            VarKind::Command,
            "systemctl reload emr-app && id",
            "`systemctl reload emr-app && id` holds `&`, which is shell syntax: a command is words of letters, digits and . _ - / = : , + @ %; put anything more in a script on the host and name the script",
        ),
        (
            VarKind::Command,
            "a  b",
            "`a  b` is not a command: write words separated by single spaces, e.g. `systemctl reload emr-app`",
        ),
        (VarKind::Word, "emr-app", "ok"),
        (
            VarKind::Word,
            "$(id)",
            "`$(id)` is not a word: use letters, digits, '.', '_' and '-'",
        ),
    ];
    for (kind, value, expect) in cases {
        let got = kind.check(value).err().unwrap_or_else(|| "ok".to_owned());
        assert_eq!(got, expect, "{value}");
    }
}

#[test]
fn a_user_playbook_may_not_shadow_a_built_in() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mine.yaml"),
        bad("name: site-password", "name: linux-password"),
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a playbook").unwrap();
    let err = Catalog::with_dir(dir.path()).unwrap_err().to_string();
    let err = err.replace(&dir.path().display().to_string(), "DIR");
    assert_snapshot!(err, @"DIR/mine.yaml:1: name: playbook `linux-password` is built into rotor; a playbook of your own may not replace it silently: give this one another name (e.g. `site-linux-password`) and name that in the inventory");
    std::fs::write(dir.path().join("mine.yaml"), GOOD).unwrap();
    let catalog = Catalog::with_dir(dir.path()).unwrap();
    let mine = catalog.get("site-password").unwrap();
    assert_eq!(mine.source, Source::File(dir.path().join("mine.yaml")));
}

/// A host that answers each command from a script and records what it was sent.
struct FakeShell {
    host: HostName,
    sudo: bool,
    /// (command prefix, exit status, stdout); the first matching prefix answers.
    answers: Vec<(String, i32, String)>,
    /// Every command with its stdin, and every login, in order.
    sent: Vec<(String, String)>,
    login_ok: bool,
    /// A failed login says sshd offers no password login (`Refused`), not a rejection.
    login_refused: bool,
    /// The credential's secret is what the shell logs in with (`Shell::logs_in_with`).
    logs_in_with: bool,
}

impl FakeShell {
    fn new(answers: &[(&str, i32, &str)]) -> FakeShell {
        FakeShell {
            host: HostName::parse("h1").unwrap(),
            sudo: true,
            answers: answers
                .iter()
                .map(|(p, s, o)| (p.to_string(), *s, o.to_string()))
                .collect(),
            sent: Vec::new(),
            login_ok: true,
            login_refused: false,
            logs_in_with: false,
        }
    }
}

impl Shell for FakeShell {
    fn host(&self) -> &HostName {
        &self.host
    }
    fn exec(&mut self, command: &str, stdin: &[u8]) -> Result<ExecOutput, ConnectorError> {
        // Commands run as root: like the SSH shell's NOPASSWD mode, the fake adds sudo itself.
        let command = &if self.sudo {
            format!("sudo -n -- {command}")
        } else {
            command.to_owned()
        };
        self.sent.push((
            command.to_owned(),
            String::from_utf8_lossy(stdin).into_owned(),
        ));
        let (status, stdout) = self
            .answers
            .iter()
            .find(|(prefix, _, _)| command.starts_with(prefix.as_str()))
            .map(|(_, s, o)| (*s, o.clone()))
            .unwrap_or((0, String::new()));
        Ok(ExecOutput {
            status,
            signal: None,
            stdout: zeroize::Zeroizing::new(stdout.into_bytes()),
            stderr: zeroize::Zeroizing::new(String::new()),
        })
    }
    fn password_login(&mut self, account: &AccountName, _: &Secret) -> Result<(), ConnectorError> {
        self.sent
            .push((format!("<password login as {account}>"), String::new()));
        if self.login_ok {
            Ok(())
        } else if self.login_refused {
            Err(ConnectorError::new(
                FaultClass::Refused,
                "no password login",
            ))
        } else {
            Err(ConnectorError::new(FaultClass::VerifyFailed, "rejected"))
        }
    }
    fn logs_in_with(&self, _: &CredentialId) -> bool {
        self.logs_in_with
    }
    fn key_login(&mut self, account: &AccountName, _: &Secret) -> Result<(), ConnectorError> {
        self.sent
            .push((format!("<key login as {account}>"), String::new()));
        Ok(())
    }
}

const SHADOW: &str = "motd: hi\nsvc:$y$j9T$salt$hash:19000:0:99999:7:::\n";
const NEW: &str = "N3w-Secret-Value-123";

fn host(
    recipe: &str,
    vars: &[(&str, &str)],
    answers: &[(&str, i32, &str)],
) -> RecipeHost<FakeShell> {
    let recipe = Catalog::built_in().get(recipe).unwrap().clone();
    let vars: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    RecipeHost::new(
        FakeShell::new(answers),
        [(
            CredentialId::new(
                HostName::parse("h1").unwrap(),
                AccountName::parse("svc").unwrap(),
            ),
            recipe,
            vars,
        )],
    )
}

fn cred() -> CredentialId {
    CredentialId::parse("h1/svc").unwrap()
}

/// What the host was sent, one line per command (`$ command` then `< stdin` lines).
fn transcript(host: &RecipeHost<FakeShell>) -> String {
    let mut out = String::new();
    for (cmd, stdin) in &host.shell().sent {
        assert!(
            !cmd.contains(NEW) && !cmd.contains("$y$j9T"),
            "a secret in a command line: {cmd}"
        );
        out.push_str(&format!("$ {cmd}\n"));
        for line in stdin.lines() {
            out.push_str(&format!("< {line}\n"));
        }
    }
    out
}

#[test]
fn linux_password_steps() {
    let mut h = host(
        "linux-password",
        &[],
        &[("sudo -n -- getent shadow", 0, SHADOW)],
    );
    let saved = h.read_restore_point(&cred()).unwrap();
    // One part: the bare shadow hash, as before recipes (open rotations still recover).
    assert_eq!(saved.expose(), "$y$j9T$salt$hash");
    assert_eq!(h.refuses_rotation(&cred(), &saved), None);
    let new = Secret::new(NEW.to_owned());
    h.apply(&cred(), &new, &saved).unwrap();
    h.prove(&cred(), &new).unwrap();
    h.undo(&cred(), &saved, &new).unwrap();
    assert!(!h.retires(&cred()));
    assert_snapshot!(transcript(&h), @r#"
$ sudo -n -- getent shadow -- svc
$ sudo -n -- chpasswd
< svc:N3w-Secret-Value-123
$ <password login as svc>
$ sudo -n -- chpasswd -e
< svc:$y$j9T$salt$hash
$ sudo -n -- getent shadow -- svc
"#);
}

#[test]
fn linux_password_refusals() {
    let locked = Secret::new("!$y$j9T$salt$hash".to_owned());
    let h = host("linux-password", &[], &[]);
    assert_snapshot!(h.refuses_rotation(&cred(), &locked).unwrap(), @"h1/svc: the account is locked (its password field starts with '!' or '*'); rotor will not give it a working password. Unlock it first (`passwd -u`) or remove it from the inventory");
    let mut h = host(
        "linux-password",
        &[],
        &[("sudo -n -- getent shadow", 2, "")],
    );
    assert_snapshot!(h.read_restore_point(&cred()).unwrap_err().to_string(), @"h1/svc: the account does not exist on the host; create it or remove it from the inventory");
    let mut h = host(
        "linux-password",
        &[],
        &[("sudo -n -- getent shadow", 1, "")],
    );
    assert_snapshot!(h.read_restore_point(&cred()).unwrap_err().to_string(), @"h1/svc: reading the restore point failed (`getent shadow -- {account}`: exit status 1); does the connect user have root or sudo rights? (its output is not shown because the step handles a secret; run the step by hand on the host to see it)");
    let mut h = host(
        "linux-password",
        &[],
        &[("sudo -n -- getent shadow", 0, "svc: hello\nsvc:x:1\n")],
    );
    assert_snapshot!(h.read_restore_point(&cred()).unwrap_err().to_string(), @"h1/svc: unexpected output while reading the restore point");
    let saved = Secret::new("$y$j9T$salt$hash".to_owned());
    let new = Secret::new(NEW.to_owned());
    let mut h = host(
        "linux-password",
        &[],
        &[("sudo -n -- chpasswd", 1, "echo: N3w-Secret-Value-123")],
    );
    assert_snapshot!(h.apply(&cred(), &new, &saved).unwrap_err().to_string(), @"h1/svc: the host refused the new password (`chpasswd`: exit status 1); its output is not shown because the step handles a secret; run the step by hand on the host to see it");
    let mut h = host(
        "linux-password",
        &[],
        &[("sudo -n -- getent shadow", 0, "svc:$6$other:1\n")],
    );
    assert_snapshot!(h.undo(&cred(), &saved, &new).unwrap_err().to_string(), @"h1/svc: after restoring, the password hash on the host is not the saved one");
}

#[test]
fn app_config_password_steps() {
    let conf = "# emr\nuser = svc\npassword = old-one\n";
    let mut h = host(
        "app-config-password",
        &[
            ("config", "/etc/emr/app.conf"),
            ("reload", "/usr/local/bin/emr-reload"),
        ],
        &[
            ("sudo -n -- getent shadow", 0, SHADOW),
            ("sudo -n -- sh -c 'f=/etc/emr/app.conf;", 0, conf),
        ],
    );
    let saved = h.read_restore_point(&cred()).unwrap();
    assert!(saved.expose().starts_with("rotor-restore-point-v1\n"));
    let new = Secret::new(NEW.to_owned());
    h.apply(&cred(), &new, &saved).unwrap();
    h.prove(&cred(), &new).unwrap();
    h.undo(&cred(), &saved, &new).unwrap();
    assert_eq!(h.holds(&cred(), &saved, &new), Some(false));
    let log = transcript(&h)
        .replace(&super::run::write_file_script("/etc/emr/app.conf"), "WRITE")
        .replace(&super::run::read_file_script("/etc/emr/app.conf"), "READ");
    assert_snapshot!(log, @r#"
$ sudo -n -- getent shadow -- svc
$ sudo -n -- READ
$ sudo -n -- chpasswd
< svc:N3w-Secret-Value-123
$ sudo -n -- WRITE
< # emr
< user = svc
< password = N3w-Secret-Value-123
$ sudo -n -- /usr/local/bin/emr-reload
$ sudo -n -- /usr/local/sbin/emr-app-check
< N3w-Secret-Value-123
$ <password login as svc>
$ sudo -n -- chpasswd -e
< svc:$y$j9T$salt$hash
$ sudo -n -- WRITE
< # emr
< user = svc
< password = old-one
$ sudo -n -- /usr/local/bin/emr-reload
$ sudo -n -- getent shadow -- svc
$ sudo -n -- READ
"#);
    assert_snapshot!(super::run::write_file_script("/etc/emr/app.conf"), @r#"sh -c 'f=/etc/emr/app.conf; test -L "$f" && exit 4; d=$(dirname -- "$f"); test "$(stat -c %u -- "$d")" = 0 || exit 5; case "$(stat -c %A -- "$d")" in ?????w*|????????w*) exit 5;; esac; if test -e "$f"; then test "$(stat -c %h -- "$f")" = 1 || exit 6; fi; test -f "$f" || exit 3; t=$(mktemp "$f.rotor-XXXXXX") || exit 1; if cat > "$t" && chown --reference="$f" "$t" && chmod --reference="$f" "$t" && mv -f "$t" "$f"; then exit 0; fi; rm -f "$t"; exit 1'"#);
}

#[test]
fn app_config_password_failures() {
    let saved_conf = "user = svc\n";
    let mut h = host(
        "app-config-password",
        &[],
        &[
            ("sudo -n -- getent shadow", 0, SHADOW),
            ("sudo -n -- cat", 0, saved_conf),
        ],
    );
    let saved = h.read_restore_point(&cred()).unwrap();
    let new = Secret::new(NEW.to_owned());
    assert_snapshot!(h.apply(&cred(), &new, &saved).unwrap_err().to_string(), @"h1/svc: no line of /etc/emr/app.conf matches `^password *=`, so the new password has nowhere to go; check the file, or the playbook's replace_line");
    let mut h = host(
        "app-config-password",
        &[],
        &[("sudo -n -- /usr/local/sbin/emr-app-check", 1, "")],
    );
    assert_snapshot!(h.prove(&cred(), &new).unwrap_err().to_string(), @"h1/svc: the check rejected the credential (`{check}`: exit status 1); its output is not shown because the step handles a secret; run the step by hand on the host to see it");
}

#[test]
fn linux_ssh_key_steps_call_the_hooks() {
    let mut h = host(
        "linux-ssh-key",
        &[],
        &[
            (
                "sudo -n -- getent passwd",
                0,
                "svc:x:1000:1000::/home/svc:/bin/sh\n",
            ),
            // No authorized_keys yet: the read script prints nothing.
            (
                "sudo -n -- runuser -u svc -- sh -c 'cd -P -- /home/svc",
                0,
                "",
            ),
        ],
    );
    assert!(h.retires(&cred()));
    let managed = h.read_restore_point(&cred()).unwrap();
    assert_eq!(managed.expose(), "", "no key of rotor's yet");
    let new = Secret::new(NEW.to_owned());
    h.prove(&cred(), &new).unwrap();
    let log = transcript(&h);
    assert!(
        log.starts_with(
            "$ sudo -n -- getent passwd -- svc\n$ sudo -n -- runuser -u svc -- sh -c 'cd -P -- /home/svc || exit 1;"
        ),
        "{log}"
    );
    assert!(log.ends_with("$ <key login as svc>\n"), "{log}");
}

#[test]
fn restore_points_of_several_parts_round_trip() {
    let h = host("app-config-password", &[], &[]);
    let steps = match &Catalog::built_in().get("app-config-password").unwrap().body {
        Body::Steps(s) => s.clone(),
        Body::Adapter(_) => unreachable!(),
    };
    let _ = h;
    for (hash, file) in [("$y$x", "a\nb\n"), ("", ""), ("h", "password = ü 7\n\n")] {
        let parts = vec![
            ("hash".to_owned(), zeroize::Zeroizing::new(hash.to_owned())),
            (
                "config_file".to_owned(),
                zeroize::Zeroizing::new(file.to_owned()),
            ),
        ];
        let encoded = super::run::encode_for_test(&parts);
        let back = super::run::decode_for_test(&steps, &encoded).unwrap();
        assert_eq!(back, parts);
    }
    assert!(super::run::decode_for_test(&steps, &Secret::new("$y$bare".to_owned())).is_none());
    let _ = Arc::new(());
}

#[test]
fn secret_rules_meet_the_policy() {
    let rules = SecretRules {
        min_length: None,
        max_length: Some(16),
        exclude: "#;".to_owned(),
    };
    let policy = crate::inventory::default_policy();
    assert_snapshot!(rules.constrain(&policy, "site").unwrap_err(), @"policy `default` makes passwords of 24 characters, but playbook `site` takes at most 16: give the account a policy with `length: 16` or less");
    let short = crate::inventory::Policy {
        length: 16,
        exclude: ";x".to_owned(),
        ..policy
    };
    assert_eq!(rules.constrain(&short, "site").unwrap().exclude, ";x#");
}

#[test]
fn a_set_that_never_uses_the_secret_is_refused() {
    assert_snapshot!(check(&bad("      stdin: \"{account}:{secret}\\n\"\n  prove", "  prove")), @r#"site/bad.yaml:7:3: steps.set: no `set` step hands the target the new secret: give one `{secret}` in its stdin (e.g. `stdin: "{account}:{secret}\n"`) or in a written file's content"#);
}

#[test]
fn a_host_lists_its_accounts_and_their_credential_facts() {
    use crate::target::ListAccounts;
    let mut h = host(
        "linux-password",
        &[],
        &[
            (
                "sudo -n -- getent passwd",
                0,
                "root:x:0:0:root:/root:/bin/bash\nsvc:x:1000:1000::/home/svc:/bin/sh\nnopw:x:1001:1001::/home/nopw:/bin/sh\ngone:x:1002:1002::/home/gone:/usr/sbin/nologin\n",
            ),
            (
                "sudo -n -- getent shadow",
                0,
                "root:!:19000:0:99999:7:::\nsvc:$y$j9T$salt$hash:19500:0:99999:7:::\nnopw::19600:0:99999:7:::\n",
            ),
        ],
    );
    let facts = h.list_accounts().unwrap();
    let shown: Vec<String> = facts
        .iter()
        .map(|f| {
            format!(
                "{} uid={:?} shell={} hash={} empty={} changed={:?}",
                f.name,
                f.uid,
                f.shell,
                f.password_hash.is_some(),
                f.empty_password,
                f.last_change_day
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            "root uid=Some(0) shell=/bin/bash hash=false empty=false changed=Some(19000)",
            "svc uid=Some(1000) shell=/bin/sh hash=true empty=false changed=Some(19500)",
            "nopw uid=Some(1001) shell=/bin/sh hash=false empty=true changed=Some(19600)",
            "gone uid=Some(1002) shell=/usr/sbin/nologin hash=false empty=false changed=None",
        ]
    );
    assert_eq!(
        facts[1].password_hash.as_ref().unwrap().expose(),
        "$y$j9T$salt$hash"
    );
}

/// Where sshd takes no password login for the account (none offered; for root, any password
/// rejected: PermitRootLogin prohibit-password, proven in the lab), the proof is the stored
/// hash read back: it must be the new password's, and the notes say which proof was used. A
/// hash of anything else is no proof, and neither is another account's rejected login (an
/// expired account), nor a hash of the password rotor logs in with.
#[test]
fn a_password_login_sshd_does_not_offer_is_proven_by_the_stored_hash_only_when_it_matches() {
    let params = sha_crypt::Sha512Params::new(5000).unwrap();
    let of = |pw: &str| sha_crypt::sha512_crypt_b64(pw.as_bytes(), b"saltsalt", &params).unwrap();
    let new = Secret::new(NEW.to_owned());
    let shadow_of = |stored: &str| format!("svc:$6$saltsalt${stored}:19000:0:99999:7:::\n");
    // (stored hash, sshd refuses password logins, rotor logs in with it, proven)
    for (stored, refused, logs_in_with, proven) in [
        (of(NEW), true, false, true),
        (of("the-old-one"), true, false, false),
        (of(NEW), false, false, false),
        (of(NEW), true, true, false),
    ] {
        let shadow = shadow_of(&stored);
        let mut h = host(
            "linux-password",
            &[],
            &[("sudo -n -- getent shadow", 0, &shadow)],
        );
        h.shell_mut().login_ok = false;
        h.shell_mut().login_refused = refused;
        h.shell_mut().logs_in_with = logs_in_with;
        let got = h.prove(&cred(), &new);
        assert_eq!(got.is_ok(), proven, "{refused} {logs_in_with}: {got:?}");
        let notes = h.notes(&cred());
        if proven {
            assert_eq!(notes.len(), 1);
            assert!(
                notes[0].starts_with("proof: the stored password hash"),
                "{notes:?}"
            );
        } else {
            assert!(notes.is_empty());
        }
    }
}

/// A `linux-ssh-key` host whose `h1/svc` has `/home/svc` and the `authorized_keys` `file`.
fn keys_host(file: &str) -> RecipeHost<FakeShell> {
    host(
        "linux-ssh-key",
        &[],
        &[
            (
                "sudo -n -- getent passwd",
                0,
                "svc:x:1000:1000::/home/svc:/bin/sh\n",
            ),
            ("sudo -n -- runuser -u svc -- sh -c 'cd -P", 0, file),
        ],
    )
}

/// Breach mode on an SSH key: the restore point lists every key of the file and keeps each
/// line the run will remove; retiring leaves the new key alone in the file and names what it
/// removed (fingerprint and comment); recovery reads a breach restore point the same way.
#[test]
fn breach_mode_replaces_the_whole_authorized_keys_and_names_what_it_removed() {
    use crate::clock::{Entropy, SeededEntropy};
    let entropy = SeededEntropy::new(11);
    let old = crate::sshkey::generate(&mut *entropy.rng(), &cred());
    let planted = crate::sshkey::generate(
        &mut *entropy.rng(),
        &CredentialId::parse("evil/box").unwrap(),
    );
    let new = crate::sshkey::generate(&mut *entropy.rng(), &cred());
    let file = format!(
        "# the vendor's keys\n{}\n{}\nssh-unknown AAAA junk\n",
        old.public.line(),
        planted.public.line()
    );
    let mut h = keys_host(&file);
    h.breach();
    let saved = h.read_restore_point(&cred()).unwrap();
    let text = saved.expose().to_owned();
    assert!(text.starts_with("every-key\n"), "{text}");
    for fp in [old.public.fingerprint(), planted.public.fingerprint()] {
        assert!(text.contains(fp.as_str()), "{text}");
    }
    assert_eq!(
        text.lines().filter(|l| l.starts_with("kept ")).count(),
        3,
        "{text}"
    );
    h.apply(&cred(), &new.private, &saved).unwrap();
    h.retire(&cred(), &saved, &new.private).unwrap();
    let (written, stdin) = h.shell().sent.last().unwrap().clone();
    assert!(
        written.contains("umask 077"),
        "the last command writes the file: {written}"
    );
    assert_eq!(
        stdin,
        format!("{}\n", new.public.line()),
        "only the new key is left"
    );
    let notes = h.notes(&cred()).join("\n");
    assert_snapshot!(notes.replace(old.public.fingerprint().as_str(), "OLD").replace(planted.public.fingerprint().as_str(), "PLANTED"), @r#"
    removed from authorized_keys: OLD "rotor:h1/svc"
    removed from authorized_keys: PLANTED "rotor:evil/box"
    removed from authorized_keys: a line rotor cannot read as a key (21 bytes)
    "#);
    // A file without a final line ending reads as the same restore point as once adding the
    // new key (which ends the last line first) and taking it away again gave it one.
    let unterminated = file.trim_end_matches('\n').to_owned();
    let mut before = keys_host(&unterminated);
    before.breach();
    let mut after = keys_host(&file);
    after.breach();
    assert!(
        before
            .read_restore_point(&cred())
            .unwrap()
            .ct_eq(&after.read_restore_point(&cred()).unwrap())
    );
    // Recovery: a host opened without breach mode reads this credential's restore point the
    // way the rotation saved it, so it compares equal (nothing changed outside rotor).
    let mut later = keys_host(&file);
    later.resume(&cred(), &saved);
    assert!(later.read_restore_point(&cred()).unwrap().ct_eq(&saved));
    let mut plain = keys_host(&file);
    assert!(!plain.read_restore_point(&cred()).unwrap().ct_eq(&saved));
}

/// The bootstrap connect key is the connect key credential's previous key where the file has
/// it, so retiring removes it (and says so), while other keys stay.
#[test]
fn the_bootstrap_key_is_retired_with_rotors_own() {
    use crate::clock::{Entropy, SeededEntropy};
    let entropy = SeededEntropy::new(12);
    let bootstrap = crate::sshkey::generate(
        &mut *entropy.rng(),
        &CredentialId::parse("lab/admin").unwrap(),
    );
    let vendor = crate::sshkey::generate(
        &mut *entropy.rng(),
        &CredentialId::parse("vendor/x").unwrap(),
    );
    let new = crate::sshkey::generate(&mut *entropy.rng(), &cred());
    let file = format!("{}\n{}\n", bootstrap.public.line(), vendor.public.line());
    let mut h = keys_host(&file);
    h.also_previous(&cred(), Some(bootstrap.public.clone()));
    let saved = h.read_restore_point(&cred()).unwrap();
    assert_eq!(saved.expose(), bootstrap.public.fingerprint().as_str());
    h.retire(&cred(), &saved, &new.private).unwrap();
    let (_, stdin) = h.shell().sent.last().unwrap().clone();
    assert_eq!(
        stdin,
        format!("{}\n", vendor.public.line()),
        "the vendor's key stays"
    );
    let notes = h.notes(&cred());
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains(bootstrap.public.fingerprint().as_str()),
        "{notes:?}"
    );
}

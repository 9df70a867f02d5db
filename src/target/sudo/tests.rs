use std::cell::RefCell;

use insta::assert_snapshot;

use super::*;

fn user(name: &str) -> AccountName {
    AccountName::parse(name).unwrap()
}

fn secret(s: &str) -> Secret {
    Secret::new(s.to_owned())
}

/// What a session was sent: each command with its stdin (lossy), as one line.
fn shown(inv: &Invocation) -> String {
    format!(
        "$ {} < {:?}",
        inv.command,
        String::from_utf8_lossy(&inv.stdin)
    )
}

/// Runs detection against a host where the NOPASSWD probe answers `nopasswd` and exactly the
/// passwords `good` validate; returns the mode found and every invocation sent.
fn detect(
    name: &str,
    nopasswd: bool,
    lists: bool,
    good: &[&str],
    passwords: &[&str],
) -> (String, String) {
    let sent = RefCell::new(Vec::new());
    let mode = Sudo::detect(
        &user(name),
        passwords.iter().map(|p| secret(p)).collect(),
        |inv| {
            sent.borrow_mut().push(shown(inv));
            Ok::<_, ()>(if inv.command == NOPASSWD_PROBE {
                nopasswd
            } else if inv.command == NOPASSWD_LIST_PROBE {
                lists
            } else {
                let line = String::from_utf8_lossy(&inv.stdin).into_owned();
                good.iter().any(|g| line == format!("{g}\n"))
            })
        },
    )
    .unwrap();
    let mode = match mode {
        None => "none".to_owned(),
        Some(Sudo::Root) => "root".to_owned(),
        Some(Sudo::Nopasswd) => "nopasswd".to_owned(),
        Some(Sudo::Password(p)) => format!("password {}", p.password.expose()),
    };
    (mode, sent.into_inner().join("\n"))
}

#[test]
fn detection_tries_root_then_nopasswd_then_each_password_in_order() {
    // Root: nothing is run.
    assert_eq!(
        detect("root", false, false, &[], &["pw"]),
        ("root".into(), "".into())
    );
    // NOPASSWD: no password is sent, even one that would work.
    let (mode, sent) = detect("ops", true, false, &["pw"], &["pw"]);
    assert_eq!(mode, "nopasswd");
    assert_snapshot!(sent, @r#"$ sudo -n -k -- true < """#);
    // Passwords in order; the first that validates wins, the rest are not tried.
    let (mode, sent) = detect(
        "ops",
        false,
        false,
        &["second", "third"],
        &["first", "second", "third"],
    );
    assert_eq!(mode, "password second");
    assert_snapshot!(sent, @r#"
    $ sudo -n -k -- true < ""
    $ sudo -k -S -p '' -- true < "first\n"
    $ sudo -k -S -p '' -- true < "second\n"
    "#);
    // None works.
    let (mode, _) = detect("ops", false, false, &[], &["first"]);
    assert_eq!(mode, "none");
    // NOPASSWD rules for rotor's commands only (not `true`): sudo lists them without a
    // password, after the passwords were tried.
    let (mode, sent) = detect("ops", false, true, &[], &["first"]);
    assert_eq!(mode, "nopasswd");
    assert_snapshot!(sent, @r#"
    $ sudo -n -k -- true < ""
    $ sudo -k -S -p '' -- true < "first\n"
    $ sudo -n -k -l < ""
    "#);
}

#[test]
fn a_password_sudo_cannot_read_as_one_line_is_never_sent() {
    let long = "x".repeat(MAX_PASSWORD_BYTES + 1);
    let (mode, sent) = detect(
        "ops",
        false,
        false,
        &["a\nb", "a\rb", "", &long, "ok"],
        &["a\nb", "a\rb", "", &long, "a\0b", "ok"],
    );
    assert_eq!(mode, "password ok");
    assert_snapshot!(sent, @r#"
    $ sudo -n -k -- true < ""
    $ sudo -k -S -p '' -- true < "ok\n"
    "#);
}

#[test]
fn a_probe_that_fails_to_run_ends_detection_with_its_error() {
    let got = Sudo::detect(&user("ops"), vec![secret("pw")], |_| {
        Err::<bool, _>("broken")
    });
    assert!(matches!(got, Err("broken")));
}

fn validated(password: &str) -> Sudo {
    Sudo::Password(PasswordSudo {
        password: secret(password),
        validated: true,
        previous: None,
    })
}

#[test]
fn commands_are_wrapped_by_mode_and_the_password_is_only_ever_the_first_line_of_stdin() {
    let cmd = "chpasswd";
    let input = b"svc:N3w-Secret\n";
    let root = Sudo::Root.wrap(cmd, input).unwrap();
    assert_snapshot!(shown(&root), @r#"$ chpasswd < "svc:N3w-Secret\n""#);
    let nopasswd = Sudo::Nopasswd.wrap(cmd, input).unwrap();
    assert_snapshot!(shown(&nopasswd), @r#"$ sudo -n -- chpasswd < "svc:N3w-Secret\n""#);
    let password = validated("Sudo-Pw").wrap(cmd, input).unwrap();
    assert_snapshot!(shown(&password), @r#"$ sudo -k -S -p '' -- chpasswd < "Sudo-Pw\nsvc:N3w-Secret\n""#);
    assert!(!password.command.contains("Sudo-Pw"));
    let listing = validated("Sudo-Pw").listing().unwrap();
    assert_snapshot!(shown(&listing), @r#"$ env LC_ALL=C sudo -k -S -p '' -l < "Sudo-Pw\n""#);
    assert_snapshot!(shown(&Sudo::Nopasswd.listing().unwrap()), @r#"$ env LC_ALL=C sudo -n -l < """#);
    assert!(Sudo::Root.listing().is_none());
    assert_eq!(
        Sudo::for_user(&user("root"))
            .wrap("id", b"")
            .unwrap()
            .command,
        "id"
    );
    assert_eq!(
        Sudo::for_user(&user("ops"))
            .wrap("id", b"")
            .unwrap()
            .command,
        "sudo -n -- id"
    );
}

/// Validates `sudo` against a host where only `good` works; what was sent, and the result.
fn validate(sudo: &mut Sudo, good: &str) -> (bool, String) {
    let mut sent = Vec::new();
    let ok = sudo
        .validate(|inv| {
            sent.push(shown(inv));
            Ok::<_, ()>(inv.stdin.as_slice() == format!("{good}\n").as_bytes())
        })
        .unwrap();
    (ok, sent.join("\n"))
}

#[test]
fn a_changed_password_is_validated_before_use_and_the_old_one_is_the_fallback() {
    let mut sudo = validated("old");
    sudo.password_changed(secret("new"));
    // Not usable before it is validated.
    assert!(sudo.wrap("true", b"").is_none());
    assert!(sudo.listing().is_none());
    let (ok, sent) = validate(&mut sudo, "new");
    assert!(ok);
    assert_snapshot!(sent, @r#"$ sudo -k -S -p '' -- true < "new\n""#);
    assert_snapshot!(shown(&sudo.wrap("id", b"").unwrap()), @r#"$ sudo -k -S -p '' -- id < "new\n""#);
    // Once validated, nothing more is sent.
    assert_eq!(validate(&mut sudo, "new"), (true, String::new()));

    // The new one fails (a rollback restored the old one): the old one is used.
    let mut sudo = validated("old");
    sudo.password_changed(secret("new"));
    let (ok, sent) = validate(&mut sudo, "old");
    assert!(ok);
    assert_snapshot!(sent, @r#"
    $ sudo -k -S -p '' -- true < "new\n"
    $ sudo -k -S -p '' -- true < "old\n"
    "#);
    assert_snapshot!(shown(&sudo.wrap("id", b"").unwrap()), @r#"$ sudo -k -S -p '' -- id < "old\n""#);

    // Neither works: nothing is run, and the next command tries both again.
    let mut sudo = validated("old");
    sudo.password_changed(secret("new"));
    assert!(!validate(&mut sudo, "other").0);
    assert!(sudo.wrap("id", b"").is_none());
    let (ok, sent) = validate(&mut sudo, "old");
    assert!(ok, "{sent}");

    // Two changes before any command: the fallback is the last one proven.
    let mut sudo = validated("first");
    sudo.password_changed(secret("second"));
    sudo.password_changed(secret("third"));
    let (ok, sent) = validate(&mut sudo, "first");
    assert!(ok);
    assert_snapshot!(sent, @r#"
    $ sudo -k -S -p '' -- true < "third\n"
    $ sudo -k -S -p '' -- true < "first\n"
    "#);
}

/// A rollback after the new password was validated and used (the restore itself ran with
/// it): the old one is the password again, validated before its next use.
#[test]
fn a_rollback_puts_the_old_password_back_after_the_new_one_was_used() {
    let mut sudo = validated("old");
    sudo.password_changed(secret("new"));
    assert!(validate(&mut sudo, "new").0);
    assert_snapshot!(shown(&sudo.wrap("chpasswd -e", b"x").unwrap()), @r#"$ sudo -k -S -p '' -- chpasswd -e < "new\nx""#);
    sudo.password_restored();
    assert!(sudo.wrap("id", b"").is_none(), "validated before use");
    let (ok, sent) = validate(&mut sudo, "old");
    assert!(ok);
    assert_snapshot!(sent, @r#"$ sudo -k -S -p '' -- true < "old\n""#);
    assert_snapshot!(shown(&sudo.wrap("id", b"").unwrap()), @r#"$ sudo -k -S -p '' -- id < "old\n""#);
}

#[test]
fn a_new_session_validates_the_password_again_and_other_modes_send_none() {
    let mut sudo = validated("pw");
    sudo.session_replaced();
    assert!(sudo.wrap("id", b"").is_none());
    let (ok, sent) = validate(&mut sudo, "pw");
    assert!(ok);
    assert_snapshot!(sent, @r#"$ sudo -k -S -p '' -- true < "pw\n""#);

    for mut sudo in [Sudo::Nopasswd, Sudo::Root] {
        sudo.password_changed(secret("new"));
        sudo.session_replaced();
        assert_eq!(validate(&mut sudo, "new"), (true, String::new()));
        assert!(!sudo.wrap("id", b"").unwrap().stdin.starts_with(b"new"));
    }
}

/// `sudo -l` answers captured from Debian 12's sudo 1.9.13p3 in the lab (`scripts/lab
/// sudo-user`, then the sudoers file beside each), and what rotor makes of them.
#[test]
fn sudo_listings_are_read_as_sudo_applies_them() {
    macro_rules! listing {
        ($name:literal) => {
            (
                $name,
                include_str!(concat!("listings/", $name, ".sudoers")),
                include_str!(concat!("listings/", $name, ".txt")),
            )
        };
    }
    let cases = [
        listing!("plain"),
        listing!("nopasswd"),
        listing!("user_log_input"),
        listing!("global_log_input"),
        listing!("log_stdin"),
        listing!("not_log_input"),
        listing!("not_log_stdin"),
        listing!("tag_log_input"),
        listing!("tag_nolog_input"),
        listing!("specific"),
        listing!("specific_then_nolog"),
        listing!("tag_then_nolog_all"),
        listing!("nolog_one_command"),
        listing!("mixed"),
        listing!("runas_list"),
    ];
    let mut table = String::new();
    for (name, sudoers, text) in cases {
        let found = input_logging(text.as_bytes());
        let rules: Vec<&str> = sudoers.lines().collect();
        table.push_str(&format!(
            "{name}: {} {found:?}\n    {}\n",
            if found.logged() {
                "LOGGED"
            } else {
                "not logged"
            },
            rules.join(" | ")
        ));
    }
    assert_snapshot!(table);
}

#[test]
fn hostile_or_unknown_listings_are_judged_conservatively_without_panicking() {
    let check = |text: &[u8]| input_logging(text).logged();
    // Nothing about input logging anywhere: not refused.
    assert!(!check(b""));
    assert!(!check(b"garbage\n\xff\xfe\n    (((((,,,,)))))\n"));
    assert!(!check(
        "User ops may run the following commands on h:\n    (\n    )\n    ,\n".as_bytes()
    ));
    // A mention where rotor cannot place it: refused.
    assert!(check(b"Something new:\n    log_input\n"));
    assert!(check(
        b"Matching Defaults entries for ops on h:\n    env_keep+=\"log_input\"\n"
    ));
    assert!(check(b"sudo: Log_Input is set\n"));
    // Too long to read whole: refused, even if the part read is harmless.
    let mut long = b"Matching Defaults entries for ops on h:\n".to_vec();
    long.resize(MAX_LISTING_BYTES + 1, b' ');
    assert!(check(&long));
    assert!(input_logging(&long).unreadable);
}

fn refusal_text(listing: &str, sudo: &Sudo) -> String {
    let found = input_logging(listing.as_bytes());
    assert!(found.logged());
    let host = HostName::parse("host-003").unwrap();
    refusal(&host, &user("ops"), sudo, &found).message
}

#[test]
fn a_refusal_names_the_host_the_user_and_the_line_to_add() {
    let pw = validated("pw");
    assert_snapshot!(
        refusal_text(include_str!("listings/user_log_input.txt"), &pw),
        @"host-003: sudo would write the input of rotor's commands as ops to its I/O log on disk (the Defaults for ops set log_input), and that input holds the new passwords; rotor refuses host-003 and changed nothing there. Add `Defaults:ops !log_input` (after the line that sets it: sudo applies Defaults in order) with `visudo -f /etc/sudoers.d/zz-rotor`, then rotate again"
    );
    assert_snapshot!(
        refusal_text(include_str!("listings/log_stdin.txt"), &pw),
        @"host-003: sudo would write the input of rotor's commands as ops to its I/O log on disk (the Defaults for ops set log_stdin), and that input holds the new passwords; rotor refuses host-003 and changed nothing there. Add `Defaults:ops !log_input, !log_stdin` (after the line that sets it: sudo applies Defaults in order) with `visudo -f /etc/sudoers.d/zz-rotor`, then rotate again"
    );
    assert_snapshot!(
        refusal_text(include_str!("listings/tag_log_input.txt"), &Sudo::Nopasswd),
        @"host-003: sudo would write the input of rotor's commands as ops to its I/O log on disk (a rule of ops's has the LOG_INPUT: tag), and that input holds the new passwords; rotor refuses host-003 and changed nothing there. Add as ops's last rule (sudo uses the last rule that matches, and its tag overrides Defaults) `ops ALL=(ALL:ALL) NOPASSWD: NOLOG_INPUT: ALL` with `visudo -f /etc/sudoers.d/zz-rotor`, then rotate again"
    );
    assert_snapshot!(
        refusal_text(include_str!("listings/specific.txt"), &pw),
        @"host-003: sudo would write the input of rotor's commands as ops to its I/O log on disk (a Runas or command-specific Defaults entry (`Defaults>…` or `Defaults!…`) sets log_input or log_stdin), and that input holds the new passwords; rotor refuses host-003 and changed nothing there. Add as ops's last rule (sudo uses the last rule that matches, and its tag overrides Defaults) `ops ALL=(ALL:ALL) NOLOG_INPUT: ALL` with `visudo -f /etc/sudoers.d/zz-rotor`, then rotate again"
    );
}

#[test]
fn errors_say_what_to_do() {
    let host = HostName::parse("host-001").unwrap();
    assert_snapshot!(no_way_to_root(&host, &user("ops"), 1).to_string(), @"host-001: ops cannot run commands as root: sudo asks it for a password and sudo refused the password rotor holds for it (or ops may not use sudo there). Store ops's current password with `rotor enroll host-001/ops` (on stdin), or give ops a NOPASSWD rule (`ops ALL=(ALL:ALL) NOPASSWD: ALL`, with `visudo -f /etc/sudoers.d/zz-rotor`), then try again");
    assert_snapshot!(listing_failed(&host, &user("ops"), &Sudo::Nopasswd, "exit status 1").to_string(), @"host-001: rotor could not list ops's sudo rights (`sudo -n -l`: exit status 1) to check that sudo does not write the input of rotor's commands (new passwords) to disk, so it changed nothing on host-001; let ops list its rights without a password (`Defaults:ops listpw=never`, with `visudo -f /etc/sudoers.d/zz-rotor`), then try again");
}

#[test]
fn a_password_listing_with_nopasswd_rules_is_told() {
    assert!(has_nopasswd(b"User ops may run the following commands on h1:\n    (ALL : ALL) ALL\n    (root) NOPASSWD: /usr/sbin/chpasswd\n"));
    assert!(!has_nopasswd(
        b"User ops may run the following commands on h1:\n    (ALL : ALL) ALL\n"
    ));
}

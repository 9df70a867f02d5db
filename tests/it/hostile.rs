//! Hostile targets (issue 8): hosts whose `chpasswd` or `getent` print what they were fed,
//! shell-quoted or cut short, on stderr, or print a banner before their output. Nothing a
//! step that handles a secret prints may reach the report, the logs or the vault; and a
//! banner must not become the restore point.
//!
//! Each replaced command records what it was fed (`Lab::seen`), so the leak check searches
//! for exactly the secrets that crossed the wire, pending ones included.

use crate::lab::Lab;
use crate::support::{LeakCheck, Rotor, assert_no_leak, result_of};

const HOSTILE: &str = "host-001";
const CHPASSWD: &str = "/usr/sbin/chpasswd";
const GETENT: &str = "/usr/bin/getent";

/// Every secret in what `chpasswd` was fed (`ACCOUNT:SECRET` lines: new passwords and, for
/// `chpasswd -e`, saved hashes).
fn fed_secrets(lab: &Lab) -> Vec<(String, String)> {
    lab.seen(HOSTILE, CHPASSWD)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(account, secret)| {
            (
                format!("what chpasswd on {HOSTILE} was fed for {account}"),
                secret.to_owned(),
            )
        })
        .collect()
}

/// A `chpasswd` that records its input, may apply it with the real one, then prints it back
/// (shell-quoted, and cut short) on stderr and fails.
fn echoing_chpasswd(apply: bool) -> String {
    format!(
        r#"input=$(cat)
printf '%s\n' "$input" >>"$SEEN"
{}
printf 'chpasswd: cannot parse %q\n' "$input" >&2
printf 'chpasswd: near "%s"\n' "${{input:8:12}}" >&2
exit 1"#,
        if apply {
            r#"printf '%s\n' "$input" | "$REAL" "$@" || exit 1"#
        } else {
            ""
        }
    )
}

#[test]
fn output_of_a_step_fed_a_secret_is_never_shown() {
    let lab = Lab::start(2);
    let rotor = Rotor::init();
    let leak = LeakCheck::before(&lab, &[HOSTILE]);
    // The new password is refused, and echoed back.
    lab.replace_command(HOSTILE, CHPASSWD, &echoing_chpasswd(false));
    let refused = rotor.rotate_all_json(&lab, &[]);
    let report = refused.report();
    for account in ["svc_app", "svc_backup"] {
        let r = result_of(&report, &format!("{HOSTILE}/{account}"));
        assert_eq!(r["result"], "rolled_back", "{r:#}");
        let message = r["cause"]["message"].as_str().unwrap();
        for needle in ["exit status 1", "not shown", HOSTILE] {
            assert!(message.contains(needle), "{needle} missing in {message}");
        }
        assert!(lab.login_works(HOSTILE, account, lab.shared_password()));
    }
    assert_eq!(
        result_of(&report, "host-002/svc_app")["result"],
        "committed"
    );

    // Now it takes the password, echoes it and says it failed; the rollback (`chpasswd -e`,
    // fed the saved hash) is echoed and refused too: the rotation ends stuck with the new
    // password live on the host, and still nothing of it or of the hash is shown.
    lab.replace_command(HOSTILE, CHPASSWD, &echoing_chpasswd(true));
    let stuck = rotor.rotate_all_json(&lab, &["--scope", &format!("host:{HOSTILE}")]);
    let report = stuck.report();
    assert_eq!(stuck.code(), Some(4), "{report:#}\n{}", stuck.stderr());
    for account in ["svc_app", "svc_backup"] {
        let r = result_of(&report, &format!("{HOSTILE}/{account}"));
        assert_eq!(r["result"], "stuck", "{r:#}");
    }
    let fed = fed_secrets(&lab);
    // Both runs' new passwords and the saved hashes were fed: the check below is not vacuous.
    assert!(fed.len() >= 6, "{fed:?}");
    assert!(fed.iter().any(|(_, s)| s.starts_with('$')), "{fed:?}");
    assert_no_leak(&fed, &rotor, &[&refused.output, &stuck.output]);
    leak.assert_clean(&lab, &rotor, &[&refused.output, &stuck.output]);
}

#[test]
fn a_restore_point_read_is_never_shown_and_a_banner_is_not_a_hash() {
    let lab = Lab::start(2);
    let rotor = Rotor::init();
    let leak = LeakCheck::before(&lab, &[HOSTILE]);
    // `getent` writes its line to stderr and fails: the hash must not be printed.
    lab.replace_command(
        HOSTILE,
        GETENT,
        r#""$REAL" "$@" >&2; echo "getent: (lab) failed after printing" >&2; exit 1"#,
    );
    let failed = rotor.rotate_all_json(&lab, &["--scope", &format!("host:{HOSTILE}")]);
    let report = failed.report();
    let r = result_of(&report, &format!("{HOSTILE}/svc_app"));
    assert_eq!(r["result"], "not_changed", "{r:#}");
    assert!(
        r["cause"]["message"]
            .as_str()
            .unwrap()
            .contains("exit status 1"),
        "{r:#}"
    );
    leak.assert_clean(&lab, &rotor, &[&failed.output]);

    // A shell startup file prints a line first (one with a colon, so it parses as fields), and
    // `chpasswd` sets the password but reports failure. The rollback must compare the real
    // hash: if the banner were the "restore point", the target would look unchanged, the
    // new password would be dropped from the vault while it is live on the host, and
    // the account would be lost.
    lab.replace_command(
        HOSTILE,
        GETENT,
        r#"echo "note: maintenance window tonight"; exec "$REAL" "$@""#,
    );
    lab.replace_command(
        HOSTILE,
        CHPASSWD,
        r#"if [ "$1" = -e ]; then exec "$REAL" "$@"; fi
input=$(cat)
printf '%s\n' "$input" >>"$SEEN"
printf '%s\n' "$input" | "$REAL" "$@"
echo "chpasswd: (lab) claims failure after changing the password" >&2
exit 1"#,
    );
    let banner = rotor.rotate_all_json(&lab, &["--scope", &format!("host:{HOSTILE}")]);
    let report = banner.report();
    for account in ["svc_app", "svc_backup"] {
        let r = result_of(&report, &format!("{HOSTILE}/{account}"));
        assert_eq!(r["result"], "rolled_back", "{r:#}");
        assert!(
            lab.login_works(HOSTILE, account, lab.shared_password()),
            "{account}: the saved hash must be back on the host"
        );
    }
    assert_no_leak(
        &fed_secrets(&lab),
        &rotor,
        &[&failed.output, &banner.output],
    );
    leak.assert_clean(&lab, &rotor, &[&failed.output, &banner.output]);
}

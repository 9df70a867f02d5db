//! `rotor schedule explain`: the binary, no lab and no vault (it needs neither).

use std::process::Command;

fn explain(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rotor"))
        .args(["schedule", "explain"])
        .args(args)
        .env("ROTOR_LOG", "off")
        // A data directory that does not exist: explain must not touch a vault.
        .env("ROTOR_DATA_DIR", "/nonexistent/rotor-schedule-test")
        .output()
        .expect("the rotor binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn explain_prints_the_next_five_times_in_the_zone_and_in_utc() {
    let (code, stdout, stderr) = explain(&[
        "0 3 * * 1",
        "--timezone",
        "Asia/Tokyo",
        "--from",
        "2026-12-01T00:00:00+09:00",
    ]);
    assert_eq!((code, stderr.as_str()), (0, ""));
    insta::assert_snapshot!(stdout, @r"
    schedule:  0 3 * * 1
    meaning:   at 03:00, on Mon (Asia/Tokyo)
    time zone: Asia/Tokyo
    next 5 after 2026-11-30 Mon 15:00 UTC:
      2026-12-07 Mon 03:00 JST   2026-12-06 Sun 18:00 UTC
      2026-12-14 Mon 03:00 JST   2026-12-13 Sun 18:00 UTC
      2026-12-21 Mon 03:00 JST   2026-12-20 Sun 18:00 UTC
      2026-12-28 Mon 03:00 JST   2026-12-27 Sun 18:00 UTC
      2027-01-04 Mon 03:00 JST   2027-01-03 Sun 18:00 UTC
    ");
}

#[test]
fn a_bad_expression_or_zone_is_a_usage_error_with_the_fix() {
    let (code, stdout, stderr) = explain(&["0 3 * * 8"]);
    assert_eq!((code, stdout.as_str()), (2, ""));
    insta::assert_snapshot!(stderr, @r#"error: schedule "0 3 * * 8": the day-of-week field `8` has 8, out of range: use 0 to 7 (0 and 7 are Sunday, 1 is Monday) or sun to sat"#);
    let (code, _, stderr) = explain(&["@daily", "--timezone", "Asia/Tokio"]);
    assert_eq!(code, 2);
    insta::assert_snapshot!(stderr, @"error: `Asia/Tokio` is not a time zone rotor knows: use an IANA name such as Asia/Tokyo, Europe/Berlin or UTC; did you mean one of `Asia/Tokyo`, `Asia/Tomsk`?");
    let (code, _, stderr) = explain(&["@daily", "--from", "yesterday"]);
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("error: --from \"yesterday\" is not a time"),
        "{stderr}"
    );
}

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;

use super::*;

const TOKYO: Tz = Tz::Asia__Tokyo;
const BERLIN: Tz = Tz::Europe__Berlin;

fn utc(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("test times are RFC 3339")
        .with_timezone(&Utc)
}

fn local(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz)
        .format("%Y-%m-%d %a %H:%M %Z")
        .to_string()
}

/// The only caller of the schedule API in these tests: the next `n` times of `expr` after
/// `from`, written in the zone.
fn check(expr: &str, tz: Tz, from: &str, expect: &[&str]) {
    let schedule = Schedule::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let got: Vec<String> = schedule
        .upcoming(utc(from), tz, expect.len())
        .into_iter()
        .map(|t| local(t, tz))
        .collect();
    assert_eq!(got, expect, "{expr} after {from}");
}

fn error(expr: &str) -> String {
    match Schedule::parse(expr) {
        Ok(s) => panic!("{expr} parsed as {:?}", s.cron_forms()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn next_run_across_a_day_and_a_year_boundary_in_tokyo() {
    check(
        "30 23 * * *",
        TOKYO,
        "2026-12-31T23:00:00+09:00",
        &[
            "2026-12-31 Thu 23:30 JST",
            "2027-01-01 Fri 23:30 JST",
            "2027-01-02 Sat 23:30 JST",
        ],
    );
    // Just after the time: the next day's.
    check(
        "30 23 * * *",
        TOKYO,
        "2026-12-31T23:30:00+09:00",
        &["2027-01-01 Fri 23:30 JST"],
    );
    // In UTC the Tokyo evening is the same day's afternoon.
    let next = Schedule::parse("30 23 * * *")
        .unwrap()
        .next_after(utc("2026-12-31T23:00:00+09:00"), TOKYO);
    assert_eq!(next, Some(utc("2026-12-31T14:30:00Z")));
}

#[test]
fn next_run_across_month_ends_in_tokyo_including_a_leap_february() {
    check(
        "0 0 1 * *",
        TOKYO,
        "2028-01-31T12:00:00+09:00",
        &[
            "2028-02-01 Tue 00:00 JST",
            "2028-03-01 Wed 00:00 JST",
            "2028-04-01 Sat 00:00 JST",
        ],
    );
    // Midnight in Tokyo on the 1st is the last day of the month before in UTC.
    let next = Schedule::parse("0 0 1 * *")
        .unwrap()
        .next_after(utc("2028-02-15T00:00:00Z"), TOKYO);
    assert_eq!(next, Some(utc("2028-02-29T15:00:00Z")));
    // 2028 is a leap year: the 29th of February exists and the evening run lands on it.
    check(
        "30 23 * * *",
        TOKYO,
        "2028-02-28T23:40:00+09:00",
        &["2028-02-29 Tue 23:30 JST", "2028-03-01 Wed 23:30 JST"],
    );
    check(
        "0 12 29 2 *",
        TOKYO,
        "2026-03-01T00:00:00+09:00",
        &["2028-02-29 Tue 12:00 JST", "2032-02-29 Sun 12:00 JST"],
    );
    // The 31st fires only in months that have one.
    check(
        "0 0 31 * *",
        TOKYO,
        "2028-01-31T01:00:00+09:00",
        &["2028-03-31 Fri 00:00 JST", "2028-05-31 Wed 00:00 JST"],
    );
}

#[test]
fn weekday_1_is_monday_and_0_and_7_are_sunday() {
    check(
        "0 3 * * 1",
        TOKYO,
        "2026-12-01T00:00:00+09:00",
        &[
            "2026-12-07 Mon 03:00 JST",
            "2026-12-14 Mon 03:00 JST",
            "2026-12-21 Mon 03:00 JST",
        ],
    );
    for sunday in [
        "0 3 * * 0",
        "0 3 * * 7",
        "0 3 * * sun",
        "0 3 * * SUN",
        "0 3 * * Sun",
    ] {
        check(
            sunday,
            TOKYO,
            "2026-12-01T00:00:00+09:00",
            &["2026-12-06 Sun 03:00 JST", "2026-12-13 Sun 03:00 JST"],
        );
    }
    // The translation the `cron` crate (1 = Sunday) is given: names, never numbers.
    let form = |expr: &str| Schedule::parse(expr).unwrap().cron_forms();
    assert_eq!(form("0 3 * * 1"), ["0 0 3 * * MON"]);
    assert_eq!(form("0 3 * * 0"), ["0 0 3 * * SUN"]);
    assert_eq!(form("0 3 * * 7"), ["0 0 3 * * SUN"]);
    assert_eq!(form("0 3 * * 1-5"), ["0 0 3 * * MON-FRI"]);
    assert_eq!(form("0 3 * * mon-fri"), ["0 0 3 * * MON-FRI"]);
    assert_eq!(form("0 3 * * 5-7"), ["0 0 3 * * SUN,FRI,SAT"]);
    assert_eq!(form("0 3 * * 0-7"), ["0 0 3 * * *"]);
    assert_eq!(form("0 3 * * 1,3,5"), ["0 0 3 * * MON,WED,FRI"]);
    assert_eq!(form("0 3 * * 1-5/2"), ["0 0 3 * * MON,WED,FRI"]);
    assert_eq!(form("0 3 * * */2"), ["0 0 3 * * SUN,TUE,THU,SAT"]);
    check(
        "0 9 * * 1-5",
        TOKYO,
        "2026-12-04T10:00:00+09:00",
        &["2026-12-07 Mon 09:00 JST", "2026-12-08 Tue 09:00 JST"],
    );
    check(
        "0 9 * * 5-7",
        TOKYO,
        "2026-12-07T10:00:00+09:00",
        &[
            "2026-12-11 Fri 09:00 JST",
            "2026-12-12 Sat 09:00 JST",
            "2026-12-13 Sun 09:00 JST",
        ],
    );
}

#[test]
fn ranges_lists_steps_and_month_names() {
    let form = |expr: &str| Schedule::parse(expr).unwrap().cron_forms();
    assert_eq!(form("*/15 1-3 * * *"), ["0 0,15,30,45 1-3 * * *"]);
    assert_eq!(form("5,10 0 * JAN,jul *"), ["0 5,10 0 * 1,7 *"]);
    assert_eq!(form("0 0 * mar-may *"), ["0 0 0 * 3-5 *"]);
    assert_eq!(form("0 0-23/6 * * *"), ["0 0 0,6,12,18 * * *"]);
    check(
        "0 0 1 jan,Jul *",
        TOKYO,
        "2026-02-01T00:00:00+09:00",
        &["2026-07-01 Wed 00:00 JST", "2027-01-01 Fri 00:00 JST"],
    );
}

#[test]
fn macros() {
    let form = |expr: &str| Schedule::parse(expr).unwrap().cron_forms();
    assert_eq!(form("@daily"), ["0 0 0 * * *"]);
    assert_eq!(form("@midnight"), ["0 0 0 * * *"]);
    assert_eq!(form("@weekly"), ["0 0 0 * * SUN"]);
    assert_eq!(form("@monthly"), ["0 0 0 1 * *"]);
    assert_eq!(form("@hourly"), ["0 0 * * * *"]);
    assert_eq!(form("@yearly"), ["0 0 0 1 1 *"]);
    assert_eq!(form("@annually"), ["0 0 0 1 1 *"]);
    assert_eq!(form("@DAILY"), ["0 0 0 * * *"]);
    check(
        "@weekly",
        TOKYO,
        "2026-12-01T00:00:00+09:00",
        &["2026-12-06 Sun 00:00 JST"],
    );
    check(
        "@monthly",
        TOKYO,
        "2026-12-01T00:00:00+09:00",
        &["2027-01-01 Fri 00:00 JST"],
    );
}

#[test]
fn both_day_fields_restricted_means_either_day_as_in_crontab() {
    // Every 13th and every Friday (the cron crate alone would give only Friday the 13th).
    assert_eq!(
        Schedule::parse("0 0 13 * 5").unwrap().cron_forms(),
        ["0 0 0 13 * *", "0 0 0 * * FRI"]
    );
    check(
        "0 0 13 * 5",
        TOKYO,
        "2026-11-01T00:00:00+09:00",
        &[
            "2026-11-06 Fri 00:00 JST",
            "2026-11-13 Fri 00:00 JST",
            "2026-11-20 Fri 00:00 JST",
            "2026-11-27 Fri 00:00 JST",
            "2026-12-04 Fri 00:00 JST",
            "2026-12-11 Fri 00:00 JST",
            "2026-12-13 Sun 00:00 JST",
        ],
    );
    // A field starting with `*` counts as unrestricted (vixie cron): both must match.
    check(
        "0 0 */2 * 1",
        TOKYO,
        "2026-12-01T00:00:00+09:00",
        &["2026-12-07 Mon 00:00 JST", "2026-12-21 Mon 00:00 JST"],
    );
    assert_eq!(
        Schedule::parse("0 0 13 * 5").unwrap().describe(),
        "at 00:00, on day 13 of the month and on every Fri"
    );
}

#[test]
fn in_words() {
    let words = |expr: &str| Schedule::parse(expr).unwrap().describe();
    assert_eq!(words("0 3 * * 0"), "at 03:00, on Sun");
    assert_eq!(words("0 3 * * 1-5"), "at 03:00, on Mon-Fri");
    assert_eq!(words("30 23 * * *"), "at 23:30, every day");
    assert_eq!(
        words("0 0 1 jan,jul *"),
        "at 00:00, on day 1 of the month, in Jan,Jul"
    );
    assert_eq!(
        words("*/15 * * * *"),
        "at minute 0,15,30,45 of every hour, every day"
    );
    assert_eq!(
        words("0 0 */2 * 1"),
        "at 00:00, on day 1,3,5,7,9,11,13,15,17,19,21,23,25,27,29,31 of the month when it falls on a Mon"
    );
}

#[test]
fn refused_expressions_say_what_to_write() {
    assert_eq!(
        error("  "),
        "the schedule is empty: write 5 crontab fields, minute hour day-of-month month day-of-week, e.g. \"0 3 * * 0\" for Sundays at 03:00, or @daily"
    );
    assert_eq!(
        error("0 3 * *"),
        "it has 4 fields: write 5 crontab fields, minute hour day-of-month month day-of-week, e.g. \"0 3 * * 0\" for Sundays at 03:00"
    );
    assert_eq!(
        error("0 0 3 * * 0"),
        "it has 6 fields (rotor takes crontab syntax, without a seconds field): write 5 crontab fields, minute hour day-of-month month day-of-week, e.g. \"0 3 * * 0\" for Sundays at 03:00"
    );
    assert_eq!(
        error("@reboot"),
        "`@reboot` is not a schedule rotor knows: use @hourly, @daily, @weekly, @monthly or @yearly, or 5 crontab fields"
    );
    assert_eq!(
        error("60 3 * * *"),
        "the minute field `60` has 60, out of range: use 0 to 59"
    );
    assert_eq!(
        error("0 24 * * *"),
        "the hour field `24` has 24, out of range: use 0 to 23"
    );
    assert_eq!(
        error("0 3 0 * *"),
        "the day-of-month field `0` has 0, out of range: use 1 to 31"
    );
    assert_eq!(
        error("0 3 * 13 *"),
        "the month field `13` has 13, out of range: use 1 to 12 or jan to dec"
    );
    assert_eq!(
        error("0 3 * * 8"),
        "the day-of-week field `8` has 8, out of range: use 0 to 7 (0 and 7 are Sunday, 1 is Monday) or sun to sat"
    );
    assert_eq!(
        error("0 3 * * monday"),
        "the day-of-week field `monday` has `monday`, which is not a value: use 0 to 7 (0 and 7 are Sunday, 1 is Monday) or sun to sat"
    );
    assert_eq!(
        error("0 3 * * sat-sun"),
        "the day-of-week field `sat-sun` has the range `sat-sun`, which runs backwards: write the smaller value first, or a list (e.g. 22,23,0 for hours, sat,sun or 6-7 for the weekend)"
    );
    assert_eq!(
        error("*/0 3 * * *"),
        "the minute field `*/0` has the step `/0`: a step is a whole number from 1, e.g. */15"
    );
    assert_eq!(
        error("5/10 3 * * *"),
        "the minute field `5/10` has `5/10`: crontab steps go over a range or `*`, e.g. 5-59/10 or */10"
    );
    assert_eq!(
        error("0 3 1,,2 * *"),
        "the day-of-month field `1,,2` has an empty item: write numbers (1 to 31), ranges (1-5), steps (*/15) and lists (1,15)"
    );
    assert_eq!(
        error("0 3 30 2 *"),
        "it never fires (no month has that day): pick days that exist, e.g. \"0 3 28 2 *\" rather than the 30th of February"
    );
    // Names are for months and weekdays only.
    assert!(error("0 mon * * *").starts_with("the hour field `mon` has `mon`"));
}

#[test]
fn daylight_saving_gaps_fire_after_the_gap_and_repeats_fire_once() {
    // 2026-03-29: Berlin skips 02:00-03:00. 02:30 fires once, at 03:00 CEST.
    check(
        "30 2 * * *",
        BERLIN,
        "2026-03-28T12:00:00Z",
        &["2026-03-29 Sun 03:00 CEST", "2026-03-30 Mon 02:30 CEST"],
    );
    // Every minute of the skipped hour collapses into that one instant.
    check(
        "* 2 * * *",
        BERLIN,
        "2026-03-29T00:58:00Z",
        &["2026-03-29 Sun 03:00 CEST", "2026-03-30 Mon 02:00 CEST"],
    );
    // 2026-10-25: Berlin repeats 02:00-03:00. 02:30 fires once, the first time.
    check(
        "30 2 * * *",
        BERLIN,
        "2026-10-24T12:00:00Z",
        &["2026-10-25 Sun 02:30 CEST", "2026-10-26 Mon 02:30 CET"],
    );
    // Asked during the repeated hour, after the first 02:30: not again that night.
    check(
        "30 2 * * *",
        BERLIN,
        "2026-10-25T01:10:00Z",
        &["2026-10-26 Mon 02:30 CET"],
    );
    // Tokyo has no daylight saving: nothing to skip or repeat.
    check(
        "30 2 * * *",
        TOKYO,
        "2026-03-28T12:00:00Z",
        &["2026-03-29 Sun 02:30 JST"],
    );
}

#[test]
fn no_times_past_2100() {
    let daily = Schedule::parse("@daily").unwrap();
    assert_eq!(daily.next_after(utc("2101-01-01T00:00:00Z"), TOKYO), None);
    assert_eq!(daily.next_after(DateTime::<Utc>::MAX_UTC, TOKYO), None);
    assert!(daily.next_after(DateTime::<Utc>::MIN_UTC, TOKYO).is_some());
}

#[test]
fn time_zone_names() {
    assert_eq!(parse_timezone("Asia/Tokyo"), Ok(TOKYO));
    assert_eq!(parse_timezone("UTC"), Ok(Tz::UTC));
    assert_eq!(
        parse_timezone("Asia/Tokio").unwrap_err().to_string(),
        "`Asia/Tokio` is not a time zone rotor knows: use an IANA name such as Asia/Tokyo, Europe/Berlin or UTC; did you mean one of `Asia/Tokyo`, `Asia/Tomsk`?"
    );
    assert_eq!(
        parse_timezone("asia/tokyo").unwrap_err().to_string(),
        "`asia/tokyo` is not a time zone rotor knows: use an IANA name such as Asia/Tokyo, Europe/Berlin or UTC; did you mean `Asia/Tokyo`? (zone names are case-sensitive)"
    );
    assert_eq!(
        parse_timezone("Mars/Olympus_Mons").unwrap_err().to_string(),
        "`Mars/Olympus_Mons` is not a time zone rotor knows: use an IANA name such as Asia/Tokyo, Europe/Berlin or UTC"
    );
}

fn window(days: &[&str], hours: Option<&str>) -> Window {
    let days = days
        .iter()
        .map(|d| Weekdays::parse_item(d).unwrap())
        .fold(Weekdays::NONE, Weekdays::union);
    let hours = hours.map_or(Hours::ALL_DAY, |h| Hours::parse(h).unwrap());
    Window { days, hours }
}

#[test]
fn window_days_and_hours_parse() {
    assert_eq!(
        window(&["mon-fri"], None).days.to_string(),
        "mon,tue,wed,thu,fri"
    );
    assert_eq!(
        window(&["fri-mon"], None).days.to_string(),
        "mon,fri,sat,sun"
    );
    assert_eq!(window(&["Sat", "sunday"], None).days.to_string(), "sat,sun");
    assert_eq!(window(&["sun-sat"], None).days, Weekdays::ALL);
    assert_eq!(
        Hours::parse("01:00-05:00").unwrap().to_string(),
        "01:00-05:00"
    );
    assert_eq!(
        Hours::parse("22:00-00:00").unwrap().to_string(),
        "22:00-24:00"
    );
    assert_eq!(Hours::parse("0:00-24:00").unwrap(), Hours::ALL_DAY);
    let day_error = |d: &str| Weekdays::parse_item(d).unwrap_err().to_string();
    let hours_error = |h: &str| Hours::parse(h).unwrap_err().to_string();
    assert_eq!(
        day_error("1"),
        "`1` is not a day: write mon, tue, wed, thu, fri, sat or sun, or a range such as mon-fri"
    );
    assert_eq!(
        day_error("mon-fry"),
        "`fry` is not a day: write mon, tue, wed, thu, fri, sat or sun, or a range such as mon-fri"
    );
    assert_eq!(
        hours_error("1-5"),
        "hours \"1-5\" is not a range of times: write HH:MM-HH:MM, e.g. \"01:00-05:00\", or \"22:00-04:00\" for a window over midnight"
    );
    assert_eq!(
        hours_error("01:00-25:00"),
        "hours \"01:00-25:00\" is not a range of times: write HH:MM-HH:MM, e.g. \"01:00-05:00\", or \"22:00-04:00\" for a window over midnight"
    );
    assert_eq!(
        hours_error("01:60-02:00"),
        "hours \"01:60-02:00\" is not a range of times: write HH:MM-HH:MM, e.g. \"01:00-05:00\", or \"22:00-04:00\" for a window over midnight"
    );
    assert_eq!(
        hours_error("03:00-03:00"),
        "hours \"03:00-03:00\" starts and ends at the same time: for the whole day leave `hours` out (or write \"00:00-24:00\")"
    );
    assert_eq!(
        hours_error("24:00-03:00"),
        "hours \"24:00-03:00\" starts at 24:00: start at 00:00 instead"
    );
}

#[test]
fn a_window_is_open_on_its_days_within_its_hours() {
    let w = window(&["mon-fri"], Some("01:00-05:00"));
    let open = |t: &str| w.contains(utc(t), TOKYO);
    assert!(open("2026-12-07T01:00:00+09:00")); // Monday, the first minute
    assert!(open("2026-12-07T04:59:59+09:00"));
    assert!(!open("2026-12-07T05:00:00+09:00")); // the end is not in it
    assert!(!open("2026-12-07T00:59:00+09:00"));
    assert!(!open("2026-12-06T02:00:00+09:00")); // Sunday
    // The same instant is in the window in Tokyo and not in Berlin.
    assert!(!w.contains(utc("2026-12-07T02:00:00+09:00"), BERLIN));
}

#[test]
fn an_overnight_window_belongs_to_the_day_it_opens() {
    // Friday 22:00 to Saturday 04:00 only.
    let w = window(&["fri"], Some("22:00-04:00"));
    let open = |t: &str| w.contains(utc(t), TOKYO);
    assert!(open("2026-12-11T22:00:00+09:00")); // Friday night
    assert!(open("2026-12-12T03:59:00+09:00")); // Saturday morning
    assert!(!open("2026-12-12T04:00:00+09:00"));
    assert!(!open("2026-12-12T22:30:00+09:00")); // Saturday night is not Friday's
    assert!(!open("2026-12-11T03:00:00+09:00")); // Friday morning is Thursday's
    assert_eq!(
        w.next_open(utc("2026-12-12T05:00:00+09:00"), TOKYO)
            .map(|t| local(t, TOKYO)),
        Some("2026-12-18 Fri 22:00 JST".to_owned())
    );
}

#[test]
fn next_open_is_now_when_open_else_the_next_start() {
    let w = window(&["mon-fri"], Some("01:00-05:00"));
    let next = |t: &str| w.next_open(utc(t), TOKYO).map(|t| local(t, TOKYO));
    let inside = utc("2026-12-07T02:00:00+09:00");
    assert_eq!(w.next_open(inside, TOKYO), Some(inside));
    assert_eq!(
        next("2026-12-07T00:30:00+09:00").as_deref(),
        Some("2026-12-07 Mon 01:00 JST")
    );
    assert_eq!(
        next("2026-12-07T06:00:00+09:00").as_deref(),
        Some("2026-12-08 Tue 01:00 JST")
    );
    // Friday after the window: Monday's.
    assert_eq!(
        next("2026-12-11T06:00:00+09:00").as_deref(),
        Some("2026-12-14 Mon 01:00 JST")
    );
    // A window inside Berlin's skipped hour does not open that day.
    let gap = window(&["sun"], Some("02:00-02:30"));
    assert_eq!(
        gap.next_open(utc("2026-03-28T12:00:00Z"), BERLIN)
            .map(|t| local(t, BERLIN)),
        Some("2026-04-05 Sun 02:00 CEST".to_owned())
    );
}

fn weekly() -> Schedule {
    Schedule::parse("0 3 * * 0").unwrap()
}

#[test]
fn a_credential_never_rotated_is_due_at_once() {
    let now = utc("2026-12-09T12:00:00+09:00");
    assert_eq!(
        due(&weekly(), TOKYO, None, None, now),
        Due::Now {
            since: None,
            n_ticks: 0
        }
    );
}

#[test]
fn the_cadence_counts_from_the_last_rotation() {
    // Rotated on Sunday's tick; on Wednesday the next is the coming Sunday.
    let last = utc("2026-12-06T03:00:05+09:00");
    let now = utc("2026-12-09T12:00:00+09:00");
    assert_eq!(
        due(&weekly(), TOKYO, None, Some(last), now),
        Due::Later {
            at: utc("2026-12-13T03:00:00+09:00"),
            deferred_from: None
        }
    );
    // Sunday's tick missed (rotor down), then a manual rotation on Tuesday: nothing is due
    // until the Sunday after it.
    let manual = utc("2026-12-15T10:00:00+09:00");
    let now = utc("2026-12-16T12:00:00+09:00");
    assert_eq!(
        due(&weekly(), TOKYO, None, Some(manual), now),
        Due::Later {
            at: utc("2026-12-20T03:00:00+09:00"),
            deferred_from: None
        }
    );
}

#[test]
fn missed_ticks_make_one_due_rotation() {
    // Down for three Sundays: one rotation now, and the count says three.
    let last = utc("2026-11-29T03:00:05+09:00");
    let now = utc("2026-12-21T09:00:00+09:00");
    assert_eq!(
        due(&weekly(), TOKYO, None, Some(last), now),
        Due::Now {
            since: Some(utc("2026-12-06T03:00:00+09:00")),
            n_ticks: 3
        }
    );
    // The count stops at its cap.
    let minutely = Schedule::parse("* * * * *").unwrap();
    assert_eq!(
        due(
            &minutely,
            TOKYO,
            None,
            Some(utc("2026-01-01T00:00:00Z")),
            now
        ),
        Due::Now {
            since: Some(utc("2026-01-01T00:01:00Z")),
            n_ticks: MAX_COUNTED_TICKS
        }
    );
}

#[test]
fn a_due_time_outside_the_window_waits_for_it() {
    // Sundays 03:00, but rotations only on weekdays 01:00-05:00: Monday 01:00.
    let w = window(&["mon-fri"], Some("01:00-05:00"));
    let last = utc("2026-12-06T03:00:05+09:00");
    let now = utc("2026-12-09T12:00:00+09:00");
    assert_eq!(
        due(&weekly(), TOKYO, Some(&w), Some(last), now),
        Due::Later {
            at: utc("2026-12-14T01:00:00+09:00"),
            deferred_from: Some(utc("2026-12-13T03:00:00+09:00"))
        }
    );
    // Overdue with the window shut (Sunday noon): at its opening, and then due.
    let now = utc("2026-12-13T12:00:00+09:00");
    let deferred = due(&weekly(), TOKYO, Some(&w), Some(last), now);
    assert_eq!(
        deferred,
        Due::Later {
            at: utc("2026-12-14T01:00:00+09:00"),
            deferred_from: Some(utc("2026-12-13T03:00:00+09:00"))
        }
    );
    let at = deferred.at(now).unwrap();
    assert_eq!(
        due(&weekly(), TOKYO, Some(&w), Some(last), at),
        Due::Now {
            since: Some(utc("2026-12-13T03:00:00+09:00")),
            n_ticks: 1
        }
    );
    // Never rotated, window shut: at the opening.
    assert_eq!(
        due(&weekly(), TOKYO, Some(&w), None, now),
        Due::Later {
            at: utc("2026-12-14T01:00:00+09:00"),
            deferred_from: Some(now)
        }
    );
    // A tick inside the window is not moved.
    let inside = Schedule::parse("0 2 * * 1").unwrap();
    let last = utc("2026-12-13T03:00:05+09:00");
    assert_eq!(
        due(&inside, TOKYO, Some(&w), Some(last), now),
        Due::Later {
            at: utc("2026-12-14T02:00:00+09:00"),
            deferred_from: None
        }
    );
}

#[test]
fn jitter_spreads_within_the_spread() {
    let t = utc("2026-12-14T01:00:00Z");
    let hour = Duration::from_secs(3600);
    assert_eq!(jitter(t, hour, 0), t);
    assert_eq!(
        jitter(t, hour, u64::MAX),
        t + chrono::Duration::seconds(3600)
    );
    assert_eq!(
        jitter(t, hour, u64::MAX / 2),
        t + chrono::Duration::seconds(1800)
    );
    assert_eq!(jitter(t, Duration::ZERO, u64::MAX), t);
    assert_eq!(
        jitter(DateTime::<Utc>::MAX_UTC, hour, u64::MAX),
        DateTime::<Utc>::MAX_UTC
    );
}

fn field_text(lo: u32, hi: u32) -> impl Strategy<Value = String> {
    let item = prop_oneof![
        Just("*".to_owned()),
        (lo..=hi).prop_map(|v| v.to_string()),
        (lo..=hi, lo..=hi).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        (1u32..20).prop_map(|s| format!("*/{s}")),
        (lo..=hi, lo..=hi, 1u32..10).prop_map(|(a, b, s)| format!("{}-{}/{s}", a.min(b), a.max(b))),
    ];
    prop::collection::vec(item, 1..4).prop_map(|items| items.join(","))
}

fn expression() -> impl Strategy<Value = String> {
    (
        field_text(0, 59),
        field_text(0, 23),
        field_text(1, 28),
        field_text(1, 12),
        field_text(0, 7),
    )
        .prop_map(|(m, h, dom, mon, dow)| format!("{m} {h} {dom} {mon} {dow}"))
}

fn zone() -> impl Strategy<Value = Tz> {
    prop::sample::select(vec![
        Tz::UTC,
        TOKYO,
        BERLIN,
        Tz::America__New_York,
        Tz::Australia__Lord_Howe,
        Tz::Pacific__Apia,
        Tz::Asia__Kolkata,
    ])
}

fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    // 1970 to 2099.
    (0i64..4_102_444_800).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap_or_default())
}

proptest! {
    #[test]
    fn parse_never_panics(text in ".{0,60}") {
        let _ = Schedule::parse(&text);
        let _ = Hours::parse(&text);
        let _ = Weekdays::parse_item(&text);
        let _ = parse_timezone(&text);
    }

    #[test]
    fn crontab_like_text_never_panics(text in "[0-9*/,a-z@ -]{0,30}") {
        let _ = Schedule::parse(&text);
    }

    #[test]
    fn the_next_time_is_later_and_matches(expr in expression(), t in instant(), tz in zone()) {
        let schedule = Schedule::parse(&expr).unwrap();
        if let Some(next) = schedule.next_after(t, tz) {
            prop_assert!(next > t, "{expr} after {t} in {tz}: {next}");
        }
    }

    #[test]
    fn a_window_opens_when_it_says(
        days in prop::collection::vec(prop::sample::select(DAY_NAMES.to_vec()), 1..4),
        start in 0u32..1440,
        end in 1u32..1440,
        t in instant(),
        tz in zone(),
    ) {
        prop_assume!(start != end);
        let hours = format!("{:02}:{:02}-{:02}:{:02}", start / 60, start % 60, end / 60, end % 60);
        let w = window(&days, Some(&hours));
        let open = w.next_open(t, tz);
        prop_assert!(open.is_some());
        let open = open.unwrap_or(t);
        prop_assert!(open >= t);
        prop_assert!(w.contains(open, tz), "{w} from {t} in {tz}: {open}");
    }

    #[test]
    fn due_is_never_before_now_and_its_time_is_due(
        expr in expression(), last in instant(), now in instant(), tz in zone(),
    ) {
        let schedule = Schedule::parse(&expr).unwrap();
        let w = window(&["mon-fri"], Some("22:00-04:00"));
        match due(&schedule, tz, Some(&w), Some(last), now) {
            Due::Now { .. } => prop_assert!(w.contains(now, tz)),
            Due::Later { at, .. } => {
                prop_assert!(at >= now);
                prop_assert!(w.contains(at, tz));
            }
            Due::Never => {}
        }
    }
}

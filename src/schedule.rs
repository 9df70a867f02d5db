//! Rotation schedules, pure: crontab expressions ([`Schedule`]), time zones, maintenance
//! windows ([`Window`]) and when a credential is due ([`due`], [`jitter`]). Every function
//! takes the time (and the zone, and any randomness) as an argument; the daemon's loop and
//! `rotor schedule explain` give them their clock's reading.
//!
//! Users write **crontab** syntax (vixie cron, `man 5 crontab`): five fields, minute hour
//! day-of-month month day-of-week, with `*`, ranges, lists, steps, names (`jan`..`dec`,
//! `sun`..`sat`, any case), weekday 0 or 7 = Sunday and 1 = Monday, and the macros `@hourly`,
//! `@daily` (`@midnight`), `@weekly`, `@monthly`, `@yearly` (`@annually`). rotor parses every
//! field itself into the set of values it means, then hands the `cron` crate an expression
//! of explicit lists in that crate's own form: a seconds field first, and the weekdays as
//! names (the crate numbers them 1 = Sunday, Quartz-style, so `1` passed through would run a
//! Monday job on Sunday). The tests pin that translation.
//!
//! Crontab's day rule: when both day-of-month and day-of-week are restricted (neither field
//! starts with `*`), a day matching **either** fires ("0 0 1 * 1" runs on the 1st and on
//! every Monday). The `cron` crate requires both; rotor follows crontab by asking the crate
//! twice (day-of-month alone, day-of-week alone) and taking the earlier time. As in vixie
//! cron, a field that starts with `*` counts as unrestricted for this rule, so
//! "0 0 */2 * 1" means odd days that are Mondays.
//!
//! Wall-clock times are in the policy's zone, and daylight-saving changes are handled as
//! vixie and ISC cron do in spirit: a time that does not exist (the hour skipped in spring)
//! fires once, at the first instant after the gap (02:30 on Europe/Berlin's spring-forward
//! day fires at 03:00 CEST); a time that happens twice (the hour repeated in autumn) fires
//! once, at its first occurrence.
//!
//! Architecture invariant: nothing here reads a clock, the environment or a file
//! (`clock::machine_timezone` is the edge that finds the machine's zone), and no input makes
//! it panic (property-tested).

use std::fmt;
use std::time::Duration;

use chrono::{
    DateTime, Datelike, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike,
    Utc,
};
use chrono_tz::Tz;

/// The last year the `cron` crate computes times for; later instants have no next time.
const LAST_YEAR: i32 = 2100;

/// The longest daylight-saving (or zone) gap rotor steps over, in minutes. tzdata's longest
/// is a day (Samoa skipped 2011-12-30); steps are minutes because transitions fall on them.
const MAX_GAP_MINUTES: u32 = 25 * 60;

/// How many candidate times [`Schedule::next_after`] passes over (the repeated hour of an
/// autumn night, each minute of it already fired) before it gives up.
const MAX_SKIPPED: u32 = 10_000;

/// How many missed ticks [`due`] counts before it stops counting (they are one rotation
/// anyway; the count is for the log).
pub const MAX_COUNTED_TICKS: u32 = 1_000;

/// One crontab field: its name, range and names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const CRON_DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const DAY_WORDS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTH_WORDS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl Field {
    const ALL: [Field; 5] = [
        Field::Minute,
        Field::Hour,
        Field::DayOfMonth,
        Field::Month,
        Field::DayOfWeek,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day-of-month",
            Field::Month => "month",
            Field::DayOfWeek => "day-of-week",
        }
    }

    /// The values a number may take (day-of-week: 7 is Sunday again).
    fn range(self) -> (u32, u32) {
        match self {
            Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::DayOfMonth => (1, 31),
            Field::Month => (1, 12),
            Field::DayOfWeek => (0, 7),
        }
    }

    fn value_of_name(self, name: &str) -> Option<u32> {
        let names: &[&str] = match self {
            Field::Month => &MONTH_NAMES,
            Field::DayOfWeek => &DAY_NAMES,
            _ => return None,
        };
        let at = names.iter().position(|n| n.eq_ignore_ascii_case(name))? as u32;
        Some(if self == Field::Month { at + 1 } else { at })
    }

    fn hint(self) -> &'static str {
        match self {
            Field::Minute => "0 to 59",
            Field::Hour => "0 to 23",
            Field::DayOfMonth => "1 to 31",
            Field::Month => "1 to 12 or jan to dec",
            Field::DayOfWeek => "0 to 7 (0 and 7 are Sunday, 1 is Monday) or sun to sat",
        }
    }
}

/// Why a crontab expression was refused. Each message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "the schedule is empty: write 5 crontab fields, minute hour day-of-month month \
         day-of-week, e.g. \"0 3 * * 0\" for Sundays at 03:00, or @daily"
    )]
    Empty,
    #[error(
        "it has {n_fields} fields{extra}: write 5 crontab fields, minute hour day-of-month month \
         day-of-week, e.g. \"0 3 * * 0\" for Sundays at 03:00",
        extra = if *n_fields == 6 { " (rotor takes crontab syntax, without a seconds field)" } else { "" }
    )]
    FieldCount { n_fields: usize },
    #[error(
        "`{name}` is not a schedule rotor knows: use @hourly, @daily, @weekly, @monthly or \
         @yearly, or 5 crontab fields"
    )]
    UnknownMacro { name: String },
    #[error("the {} field `{text}` {why}", field.name())]
    BadField {
        field: Field,
        text: String,
        why: String,
    },
    #[error(
        "it never fires (no month has that day): pick days that exist, e.g. \"0 3 28 2 *\" \
         rather than the 30th of February"
    )]
    Never,
}

/// A set of small numbers (0..64) as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bits(u64);

impl Bits {
    fn has(self, value: u32) -> bool {
        value < 64 && self.0 & (1 << value) != 0
    }

    fn values(self) -> impl Iterator<Item = u32> {
        (0..64).filter(move |v| self.has(*v))
    }

    fn count(self) -> u32 {
        self.0.count_ones()
    }

    fn full(field: Field) -> Bits {
        let (lo, hi) = field.range();
        let hi = if field == Field::DayOfWeek { 6 } else { hi };
        Bits((lo..=hi).fold(0, |acc, v| acc | 1 << v))
    }

    /// Runs of consecutive values: `[(1, 5), (7, 7)]`.
    fn runs(self) -> Vec<(u32, u32)> {
        let mut runs: Vec<(u32, u32)> = Vec::new();
        for v in self.values() {
            match runs.last_mut() {
                Some((_, end)) if *end + 1 == v => *end = v,
                _ => runs.push((v, v)),
            }
        }
        runs
    }

    /// Compact list of the values: `1-5,7`, each value written by `name`.
    fn list(self, name: impl Fn(u32) -> String) -> String {
        self.runs()
            .into_iter()
            .map(|(a, b)| match b - a {
                0 => name(a),
                1 => format!("{},{}", name(a), name(b)),
                _ => format!("{}-{}", name(a), name(b)),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Parses one crontab field into its set of values.
fn parse_field(field: Field, text: &str) -> Result<Bits, ScheduleError> {
    let bad = |why: String| ScheduleError::BadField {
        field,
        text: text.to_owned(),
        why,
    };
    let (lo, hi) = field.range();
    let value = |word: &str| -> Result<u32, ScheduleError> {
        if let Some(v) = field.value_of_name(word) {
            return Ok(v);
        }
        match word.parse::<u32>() {
            Ok(v) if (lo..=hi).contains(&v) => Ok(v),
            Ok(v) => Err(bad(format!("has {v}, out of range: use {}", field.hint()))),
            Err(_) if word.is_empty() => Err(bad(format!(
                "has an empty item: write numbers ({}), ranges (1-5), steps (*/15) and lists (1,15)",
                field.hint()
            ))),
            Err(_) => Err(bad(format!(
                "has `{word}`, which is not a value: use {}",
                field.hint()
            ))),
        }
    };
    let mut bits = 0u64;
    for item in text.split(',') {
        let (span, step) = match item.split_once('/') {
            None => (item, None),
            Some((span, step)) => match step.parse::<u32>() {
                Ok(n) if n > 0 => (span, Some(n)),
                _ => {
                    return Err(bad(format!(
                        "has the step `/{step}`: a step is a whole number from 1, e.g. */15"
                    )));
                }
            },
        };
        let (start, end) = if span == "*" {
            (lo, if field == Field::DayOfWeek { 6 } else { hi })
        } else if let Some((a, b)) = span.split_once('-') {
            let (a, b) = (value(a)?, value(b)?);
            if a > b {
                return Err(bad(format!(
                    "has the range `{span}`, which runs backwards: write the smaller value first, \
                     or a list (e.g. 22,23,0 for hours, sat,sun or 6-7 for the weekend)"
                )));
            }
            (a, b)
        } else {
            let v = value(span)?;
            if step.is_some() {
                return Err(bad(format!(
                    "has `{item}`: crontab steps go over a range or `*`, e.g. {v}-{}/{} or */{}",
                    if field == Field::DayOfWeek { 7 } else { hi },
                    step.unwrap_or(1),
                    step.unwrap_or(1)
                )));
            }
            (v, v)
        };
        let step = step.unwrap_or(1);
        let mut v = start;
        while v <= end {
            // Weekday 7 is Sunday, like 0.
            let v_mod = if field == Field::DayOfWeek && v == 7 {
                0
            } else {
                v
            };
            bits |= 1 << v_mod;
            v += step;
        }
    }
    Ok(Bits(bits))
}

/// A parsed crontab schedule. Compares equal when it means the same as written.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// As written, whitespace collapsed.
    text: String,
    minutes: Bits,
    hours: Bits,
    days_of_month: Bits,
    months: Bits,
    days_of_week: Bits,
    /// Both day fields restricted: a day matching either fires (crontab's rule).
    either_day: bool,
    /// What the `cron` crate is asked: one schedule, or two for the either-day rule.
    cron: Vec<cron::Schedule>,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Schedule) -> bool {
        self.text == other.text
    }
}

impl Eq for Schedule {}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Schedule {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Schedule, ScheduleError> {
        Schedule::parse(s)
    }
}

impl Schedule {
    /// Parses a crontab expression (five fields, or a macro such as `@daily`).
    pub fn parse(expr: &str) -> Result<Schedule, ScheduleError> {
        let text = expr.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() {
            return Err(ScheduleError::Empty);
        }
        let fields_text = match text.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *".to_owned(),
            "@monthly" => "0 0 1 * *".to_owned(),
            "@weekly" => "0 0 * * 0".to_owned(),
            "@daily" | "@midnight" => "0 0 * * *".to_owned(),
            "@hourly" => "0 * * * *".to_owned(),
            _ if text.starts_with('@') => {
                return Err(ScheduleError::UnknownMacro { name: text });
            }
            _ => text.clone(),
        };
        let words: Vec<&str> = fields_text.split(' ').collect();
        if words.len() != 5 {
            return Err(ScheduleError::FieldCount {
                n_fields: words.len(),
            });
        }
        let mut sets = [Bits(0); 5];
        for (slot, (field, word)) in sets.iter_mut().zip(Field::ALL.into_iter().zip(&words)) {
            *slot = parse_field(field, word)?;
        }
        let [minutes, hours, days_of_month, months, days_of_week] = sets;
        // Vixie cron's test: a field "is restricted" unless it starts with `*`.
        let dom_star = words[2].starts_with('*');
        let dow_star = words[4].starts_with('*');
        let either_day = !dom_star && !dow_star;

        let list = |bits: Bits, field: Field| {
            if bits == Bits::full(field) {
                "*".to_owned()
            } else if field == Field::DayOfWeek {
                bits.list(|v| CRON_DAY_NAMES[v as usize].to_owned())
            } else {
                bits.list(|v| v.to_string())
            }
        };
        let (m, h, mon) = (
            list(minutes, Field::Minute),
            list(hours, Field::Hour),
            list(months, Field::Month),
        );
        let (dom, dow) = (
            list(days_of_month, Field::DayOfMonth),
            list(days_of_week, Field::DayOfWeek),
        );
        let forms = if either_day {
            vec![
                format!("0 {m} {h} {dom} {mon} *"),
                format!("0 {m} {h} * {mon} {dow}"),
            ]
        } else {
            vec![format!("0 {m} {h} {dom} {mon} {dow}")]
        };
        let mut cron = Vec::with_capacity(forms.len());
        for form in forms {
            let parsed = form
                .parse::<cron::Schedule>()
                .map_err(|e| ScheduleError::BadField {
                    field: Field::Minute,
                    text: text.clone(),
                    why: format!(
                        "could not be translated (as `{form}`: {e}); this is a bug in rotor: \
                         please report it, and meanwhile write the fields as plain numbers"
                    ),
                })?;
            cron.push(parsed);
        }
        let schedule = Schedule {
            text,
            minutes,
            hours,
            days_of_month,
            months,
            days_of_week,
            either_day,
            cron,
        };
        // A day that no month has (the 30th of February) never fires: refuse it now rather
        // than let a credential silently never rotate.
        let reference = NaiveDate::from_ymd_opt(2000, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .ok_or(ScheduleError::Never)?;
        if schedule.next_local_after(reference).is_none() {
            return Err(ScheduleError::Never);
        }
        Ok(schedule)
    }

    /// The expression as written (whitespace collapsed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// What the `cron` crate is asked (seconds first, weekdays by name); two expressions
    /// when crontab's either-day rule applies. For `schedule explain` and tests.
    pub fn cron_forms(&self) -> Vec<String> {
        self.cron.iter().map(|c| c.source().to_owned()).collect()
    }

    /// The schedule in words: "at 03:00 on Mon".
    pub fn describe(&self) -> String {
        let two = |v: u32| format!("{v:02}");
        let time = if self.minutes.count() * self.hours.count() <= 6 {
            let times: Vec<String> = self
                .hours
                .values()
                .flat_map(|h| self.minutes.values().map(move |m| format!("{h:02}:{m:02}")))
                .collect();
            format!("at {}", times.join(", "))
        } else {
            let minutes = if self.minutes == Bits::full(Field::Minute) {
                "every minute".to_owned()
            } else {
                format!("at minute {}", self.minutes.list(|v| v.to_string()))
            };
            let hours = if self.hours == Bits::full(Field::Hour) {
                "of every hour".to_owned()
            } else {
                format!("past hour {}", self.hours.list(two))
            };
            format!("{minutes} {hours}")
        };
        let dom_full = self.days_of_month == Bits::full(Field::DayOfMonth);
        let dow_full = self.days_of_week == Bits::full(Field::DayOfWeek);
        let dom = || {
            format!(
                "day {} of the month",
                self.days_of_month.list(|v| v.to_string())
            )
        };
        let dow = || self.days_of_week.list(|v| DAY_WORDS[v as usize].to_owned());
        let days = match (dom_full, dow_full) {
            (true, true) => "every day".to_owned(),
            (true, false) => format!("on {}", dow()),
            (false, true) => format!("on {}", dom()),
            (false, false) if self.either_day => format!("on {} and on every {}", dom(), dow()),
            (false, false) => format!("on {} when it falls on a {}", dom(), dow()),
        };
        let months = if self.months == Bits::full(Field::Month) {
            String::new()
        } else {
            format!(
                ", in {}",
                self.months
                    .list(|v| MONTH_WORDS[(v - 1) as usize].to_owned())
            )
        };
        format!("{time}, {days}{months}")
    }

    /// The first wall-clock time of the schedule strictly after `local`, zone-free.
    fn next_local_after(&self, local: NaiveDateTime) -> Option<NaiveDateTime> {
        if local.year() > LAST_YEAR {
            return None;
        }
        // The crate knows the years from 1970 only: earlier instants start there.
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?.and_hms_opt(0, 0, 0)?;
        let local = if local < epoch {
            epoch.checked_sub_signed(chrono::Duration::seconds(1))?
        } else {
            local
        };
        // The crate is asked in UTC, where every wall-clock time exists once: the zone's
        // gaps and repeats are rotor's to decide (`instant_of`).
        let floating = local.and_utc();
        self.cron
            .iter()
            .filter_map(|c| c.after(&floating).next())
            .min()
            .map(|t| t.naive_utc())
    }

    /// The first time the schedule fires strictly after `after`, in zone `tz`. `None` past
    /// the year 2100 (the `cron` crate's end).
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        if after.year() > LAST_YEAR {
            return None;
        }
        let mut local = after.with_timezone(&tz).naive_local();
        for _ in 0..MAX_SKIPPED {
            let candidate = self.next_local_after(local)?;
            let at = instant_of(candidate, tz)?;
            // A wall-clock time of the repeated autumn hour whose first occurrence is at or
            // before `after` has fired already: it does not fire again.
            if at > after {
                return Some(at);
            }
            local = candidate;
        }
        None
    }

    /// The next `n` times after `after` (fewer past the year 2100).
    pub fn upcoming(&self, after: DateTime<Utc>, tz: Tz, n: usize) -> Vec<DateTime<Utc>> {
        let mut times = Vec::with_capacity(n.min(1024));
        let mut t = after;
        while times.len() < n {
            match self.next_after(t, tz) {
                Some(next) => {
                    times.push(next);
                    t = next;
                }
                None => break,
            }
        }
        times
    }
}

/// The instant a wall-clock time in `tz` names: its only one; the first of two (the
/// repeated autumn hour); or, for a time the zone skips, the first instant after the gap.
/// `None` only at the ends of chrono's range.
pub fn instant_of(local: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    let mut probe = local;
    for _ in 0..=MAX_GAP_MINUTES {
        match tz.from_local_datetime(&probe) {
            LocalResult::Single(t) => return Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(first, _) => return Some(first.with_timezone(&Utc)),
            LocalResult::None => {
                // Gaps end on a whole minute: step to the next one.
                let next_minute = probe.with_second(0)?.with_nanosecond(0)?;
                probe = next_minute.checked_add_signed(chrono::Duration::minutes(1))?;
            }
        }
    }
    None
}

/// Parses an IANA zone name (`Asia/Tokyo`, `UTC`). The error names close matches.
pub fn parse_timezone(name: &str) -> Result<Tz, TimezoneError> {
    if let Ok(tz) = name.parse::<Tz>() {
        return Ok(tz);
    }
    let names = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name());
    let suggestion = match names.clone().find(|n| n.eq_ignore_ascii_case(name)) {
        Some(exact) => format!("; did you mean `{exact}`? (zone names are case-sensitive)"),
        None => crate::inventory::did_you_mean(name, names),
    };
    Err(TimezoneError {
        name: name.to_owned(),
        suggestion,
    })
}

/// A time zone name that is not in the IANA database chrono-tz carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{name}` is not a time zone rotor knows: use an IANA name such as Asia/Tokyo, \
     Europe/Berlin or UTC{suggestion}"
)]
pub struct TimezoneError {
    pub name: String,
    /// `; did you mean ...?`, or empty.
    suggestion: String,
}

/// A set of weekdays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weekdays(u8);

impl Weekdays {
    pub const ALL: Weekdays = Weekdays(0x7f);
    pub const NONE: Weekdays = Weekdays(0);

    /// One item of a window's `days:` list: a day name (`mon`, `Monday`, any case) or a
    /// range of names going forward through the week (`mon-fri`; `fri-mon` wraps over the
    /// weekend).
    pub fn parse_item(item: &str) -> Result<Weekdays, WindowError> {
        let day = |word: &str| -> Result<u32, WindowError> {
            let word = word.trim();
            let lower = word.to_ascii_lowercase();
            let full = [
                "sunday",
                "monday",
                "tuesday",
                "wednesday",
                "thursday",
                "friday",
                "saturday",
            ];
            DAY_NAMES
                .iter()
                .position(|n| *n == lower)
                .or_else(|| full.iter().position(|n| *n == lower))
                .map(|p| p as u32)
                .ok_or_else(|| WindowError::Day {
                    text: word.to_owned(),
                })
        };
        let (a, b) = match item.split_once('-') {
            Some((a, b)) => (day(a)?, day(b)?),
            None => {
                let d = day(item)?;
                (d, d)
            }
        };
        let mut bits = 0u8;
        let mut d = a;
        loop {
            bits |= 1 << d;
            if d == b {
                break;
            }
            d = (d + 1) % 7;
        }
        Ok(Weekdays(bits))
    }

    pub fn union(self, other: Weekdays) -> Weekdays {
        Weekdays(self.0 | other.0)
    }

    /// Whether `day` is in the set.
    pub fn has(self, day: chrono::Weekday) -> bool {
        self.0 & (1 << day.num_days_from_sunday()) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Weekdays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Listed from Monday, as people read a week.
        let order = [1u32, 2, 3, 4, 5, 6, 0];
        let names: Vec<&str> = order
            .iter()
            .filter(|d| self.0 & (1 << **d) != 0)
            .map(|d| DAY_NAMES[*d as usize])
            .collect();
        f.write_str(&names.join(","))
    }
}

/// The hours of a maintenance window, local time: from `start` (inclusive) to `end`
/// (exclusive). An end before the start runs overnight into the next day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hours {
    /// Minutes after midnight, 0..1440.
    start: u32,
    /// Minutes after midnight, 1..=1440 (`24:00`).
    end: u32,
}

impl Hours {
    pub const ALL_DAY: Hours = Hours {
        start: 0,
        end: 24 * 60,
    };

    /// `HH:MM-HH:MM` (`24:00` may end a window; `22:00-04:00` runs overnight).
    pub fn parse(text: &str) -> Result<Hours, WindowError> {
        let bad = || WindowError::Hours {
            text: text.to_owned(),
            why: "is not a range of times: write HH:MM-HH:MM, e.g. \"01:00-05:00\", or \
                  \"22:00-04:00\" for a window over midnight"
                .to_owned(),
        };
        let (a, b) = text.split_once('-').ok_or_else(bad)?;
        let minutes = |s: &str| -> Option<u32> {
            let (h, m) = s.trim().split_once(':')?;
            if h.is_empty() || h.len() > 2 || m.len() != 2 {
                return None;
            }
            let (h, m) = (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?);
            let total = h.checked_mul(60)?.checked_add(m)?;
            (m < 60 && total <= 24 * 60).then_some(total)
        };
        let (start, end) = (minutes(a).ok_or_else(bad)?, minutes(b).ok_or_else(bad)?);
        if start == 24 * 60 {
            return Err(WindowError::Hours {
                text: text.to_owned(),
                why: "starts at 24:00: start at 00:00 instead".to_owned(),
            });
        }
        if start == end || (start == 0 && end == 0) {
            return Err(WindowError::Hours {
                text: text.to_owned(),
                why: "starts and ends at the same time: for the whole day leave `hours` out \
                      (or write \"00:00-24:00\")"
                    .to_owned(),
            });
        }
        // 00:00 as an end is midnight at the end of the day.
        let end = if end == 0 { 24 * 60 } else { end };
        Ok(Hours { start, end })
    }

    fn overnight(self) -> bool {
        self.end < self.start
    }
}

impl fmt::Display for Hours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// Why a maintenance window was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error(
        "`{text}` is not a day: write mon, tue, wed, thu, fri, sat or sun, or a range such as mon-fri"
    )]
    Day { text: String },
    #[error("hours \"{text}\" {why}")]
    Hours { text: String, why: String },
}

/// A maintenance window: the days it opens on and its hours, in the policy's zone.
/// `days` name the day a window opens: `{ days: [fri], hours: "22:00-04:00" }` is Friday
/// 22:00 to Saturday 04:00.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub days: Weekdays,
    pub hours: Hours,
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.days, self.hours)
    }
}

impl Window {
    /// Whether the window is open at `t`.
    pub fn contains(&self, t: DateTime<Utc>, tz: Tz) -> bool {
        let local = t.with_timezone(&tz);
        let minute = local.hour() * 60 + local.minute();
        let today = local.weekday();
        let Hours { start, end } = self.hours;
        if self.hours.overnight() {
            (self.days.has(today) && minute >= start)
                || (self.days.has(today.pred()) && minute < end)
        } else {
            self.days.has(today) && start <= minute && minute < end
        }
    }

    /// `t` if the window is open then, else the next time it opens. `None` only at the ends
    /// of chrono's range (a window with days opens within a week).
    pub fn next_open(&self, t: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        if self.contains(t, tz) {
            return Some(t);
        }
        let today = t.with_timezone(&tz).date_naive();
        let start = NaiveTime::from_hms_opt(self.hours.start / 60, self.hours.start % 60, 0)?;
        // Eight days: every weekday once, and today's again if it has passed. A day whose
        // whole window falls in a daylight-saving gap does not open (`contains` says so).
        for n_days in 0..=8 {
            let date = today.checked_add_days(Days::new(n_days))?;
            if !self.days.has(date.weekday()) {
                continue;
            }
            let opens = instant_of(date.and_time(start), tz)?;
            if opens > t && self.contains(opens, tz) {
                return Some(opens);
            }
        }
        None
    }
}

/// When a credential is due for a scheduled rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Rotate now.
    Now {
        /// The first tick since the last rotation; `None` for a credential never rotated.
        since: Option<DateTime<Utc>>,
        /// Ticks passed since the last rotation (at most [`MAX_COUNTED_TICKS`]): however
        /// many, they make one rotation.
        n_ticks: u32,
    },
    /// Rotate at `at`.
    Later {
        at: DateTime<Utc>,
        /// When it was due, if the window moved it later.
        deferred_from: Option<DateTime<Utc>>,
    },
    /// The schedule fires no more (past the year 2100).
    Never,
}

impl Due {
    /// The time to rotate: `now` for [`Due::Now`].
    pub fn at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Due::Now { .. } => Some(now),
            Due::Later { at, .. } => Some(*at),
            Due::Never => None,
        }
    }
}

/// When a credential under `schedule` (in `tz`, inside `window` if any) is next due.
///
/// The cadence counts from `last_rotation` (the last successful rotation, scheduled or
/// not): a manual rotation resets it. A credential never rotated is due at once. Ticks
/// missed while rotor was down make one rotation, not one per tick. A due time outside the
/// window waits for the window's next opening.
pub fn due(
    schedule: &Schedule,
    tz: Tz,
    window: Option<&Window>,
    last_rotation: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Due {
    let (since, n_ticks) = match last_rotation {
        None => (None, 0),
        Some(last) => {
            let Some(tick) = schedule.next_after(last, tz) else {
                return Due::Never;
            };
            if tick > now {
                return match window {
                    None => Due::Later {
                        at: tick,
                        deferred_from: None,
                    },
                    Some(w) => match w.next_open(tick, tz) {
                        Some(at) => Due::Later {
                            at,
                            deferred_from: (at != tick).then_some(tick),
                        },
                        None => Due::Never,
                    },
                };
            }
            let mut n_ticks = 1;
            let mut t = tick;
            while n_ticks < MAX_COUNTED_TICKS {
                match schedule.next_after(t, tz) {
                    Some(next) if next <= now => {
                        n_ticks += 1;
                        t = next;
                    }
                    _ => break,
                }
            }
            (Some(tick), n_ticks)
        }
    };
    match window {
        Some(w) if !w.contains(now, tz) => match w.next_open(now, tz) {
            Some(at) => Due::Later {
                at,
                deferred_from: Some(since.unwrap_or(now)),
            },
            None => Due::Never,
        },
        _ => Due::Now { since, n_ticks },
    }
}

/// `due` moved later by a share of `spread` chosen by `rng_value` (a uniform random `u64`
/// from the caller's entropy), so that credentials due at once after downtime do not all
/// start in the same second. Whole seconds, from 0 to `spread` inclusive; the offset is
/// `rng_value * (spread + 1) / 2^64`, whose bias (below 2^-32 for spreads under a century)
/// does not matter for spreading load.
pub fn jitter(due: DateTime<Utc>, spread: Duration, rng_value: u64) -> DateTime<Utc> {
    // A spread of more than a year is no spread rotor means: capped, so the offset always
    // fits a `chrono::Duration`.
    let span = u128::from(spread.as_secs().min(366 * 86_400)) + 1;
    let offset = ((u128::from(rng_value) * span) >> 64) as i64;
    chrono::Duration::try_seconds(offset)
        .and_then(|d| due.checked_add_signed(d))
        .unwrap_or(due)
}

#[cfg(test)]
mod tests;

//! `rotor scan --report FILE.html`: the scan's report as one self-contained HTML file that a
//! hospital's responsible person reads without help: the summary in plain words, a
//! host-by-account grid in which credentials sharing a password share a colour, an age chart
//! (inline SVG) and the findings, most severe first.
//!
//! Pure: a [`ScanReport`] in, a `String` out. It prints only the report's own fields, and the
//! model holds no secret, hash or salt (see the invariant in [`crate::scan`]); groups are
//! shown by a letter and a colour, not even by their per-scan id.
//!
//! Invariants: no JavaScript and no external resource (fonts, images, links): the file is
//! opened from disk or from a mail, often on a closed network, and its policy (`default-src
//! 'none'`) says so to the browser. Every value from the report goes through one escape
//! function, `esc`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use super::{CredentialRow, Finding, GroupId, Kind, ScanReport, Severity};

/// A target with more accounts than this (a directory, typically) is shown as a list of its
/// password groups with counts instead of columns in the grid: 2,000 accounts as columns
/// would make the grid unreadable.
const GRID_MAX_ACCOUNTS: usize = 40;

/// At most this many account columns in the grid; the accounts of the columns past it (the
/// least widespread: local users of one server) share one "other accounts" column, each
/// cell named.
const GRID_MAX_COLUMNS: usize = 12;

/// A grid of at most this many columns has its legend beside it, a wider one above it.
const LEGEND_BESIDE_MAX_COLUMNS: usize = 6;

/// At most this many credentials of a finding are listed before the rest folds away.
const FINDING_CREDENTIALS_SHOWN: usize = 12;

/// Group colours in order of a group's first appearance; light enough for dark text, told
/// apart by a letter too (colour-blind readers, black-and-white prints).
const PALETTE: [&str; 12] = [
    "#6baed6", "#fdae6b", "#74c476", "#f781bf", "#9e9ac8", "#fdd835", "#4dd0c4", "#e07b5f",
    "#a1887f", "#c5e17a", "#ff8a80", "#90a4ae",
];

/// Password age buckets of the chart: label and the upper bound in days (exclusive).
const AGE_BUCKETS: [(&str, i64); 4] = [
    ("under 30 days", 30),
    ("30–90 days", 90),
    ("90 days – 1 year", 365),
    ("over 1 year", i64::MAX),
];

/// Outside text (host and account names, messages) for HTML text or a double-quoted
/// attribute: control characters and bidi overrides shown escaped (`text::escape`), then
/// the HTML metacharacters (the checkout page's `escape_html`).
fn esc(text: &str) -> String {
    crate::server::web::escape_html(&crate::text::escape(text))
}

/// The report as one HTML document.
pub fn render(report: &ScanReport) -> String {
    let passwords = Groups::of_passwords(report);
    let keys = Groups::of_keys(report);
    let mut out = String::with_capacity(64 * 1024 + report.credentials.len() * 200);
    head(&mut out, report);
    out.push_str("<main>\n");
    summary(&mut out, report);
    grid(&mut out, report, &passwords, &keys);
    age_chart(&mut out, report);
    findings(&mut out, report, &passwords, &keys);
    logged_in(&mut out, report);
    unreachable(&mut out, report);
    out.push_str("</main>\n");
    out.push_str(
        "<footer><p>Made by <code>rotor scan</code>. This report holds no password, hash or \
         salt: accounts that share a password are only shown with the same colour and letter, \
         and the letters mean nothing outside this report.</p></footer>\n</body>\n</html>\n",
    );
    out
}

fn head(out: &mut String, report: &ScanReport) {
    let when = report.scanned_at.format("%-d %B %Y, %H:%M UTC").to_string();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    // A file opened from disk has no server to send headers, so the policy is a meta
    // element. Inline style is allowed because the file must stand alone (no stylesheet
    // to fetch); nothing else is: no script, no font, no image but data: URLs, no request.
    out.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; img-src data:\">\n",
    );
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(out, "<title>Credential scan, {}</title>", esc(&when));
    out.push_str("<style>\n");
    out.push_str(include_str!("report.css"));
    out.push_str("</style>\n</head>\n<body>\n");
    let mut read = vec![count(report.n_hosts, "server", "servers")];
    if report.n_directories > 0 {
        read.push(count(report.n_directories, "directory", "directories"));
    }
    let _ = writeln!(
        out,
        "<header class=\"bar\"><h1>Credential scan</h1><p>{}: {} and {} read.</p></header>",
        esc(&when),
        read.join(", "),
        count(report.n_accounts, "account", "accounts"),
    );
}

/// `1 server`, `3 servers`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Groups (of passwords or of keys) in order of first appearance, each with its members.
struct Groups<'a> {
    index: HashMap<&'a GroupId, usize>,
    members: Vec<Vec<&'a CredentialRow>>,
}

impl<'a> Groups<'a> {
    fn of_passwords(report: &'a ScanReport) -> Groups<'a> {
        Groups::collect(
            report,
            report
                .credentials
                .iter()
                .filter_map(|row| row.password_group.as_ref().map(|g| (g, row))),
            Kind::SharedPassword,
        )
    }

    fn of_keys(report: &'a ScanReport) -> Groups<'a> {
        Groups::collect(
            report,
            report
                .credentials
                .iter()
                .flat_map(|row| row.key_groups.iter().map(move |g| (g, row))),
            Kind::SharedKey,
        )
    }

    fn collect(
        report: &'a ScanReport,
        rows: impl Iterator<Item = (&'a GroupId, &'a CredentialRow)>,
        kind: Kind,
    ) -> Groups<'a> {
        let mut groups = Groups {
            index: HashMap::new(),
            members: Vec::new(),
        };
        for (group, row) in rows {
            let idx = groups.idx(group);
            groups.members[idx].push(row);
        }
        // A finding may name a group no row carries (rows cut by the scanner): it still
        // gets a letter, so the findings list never shows a bare id.
        for finding in report.findings.iter().filter(|f| f.kind == kind) {
            if let Some(group) = &finding.group {
                groups.idx(group);
            }
        }
        groups
    }

    fn idx(&mut self, group: &'a GroupId) -> usize {
        let next = self.members.len();
        let idx = *self.index.entry(group).or_insert(next);
        if idx == next {
            self.members.push(Vec::new());
        }
        idx
    }

    fn of(&self, group: &GroupId) -> Option<usize> {
        self.index.get(group).copied()
    }
}

/// A password group's colour.
fn colour(idx: usize) -> &'static str {
    PALETTE[idx % PALETTE.len()]
}

/// A password group's letter: A..Z, then A2..Z2 and so on (the colours repeat after 12, the
/// letters do not).
fn letter(idx: usize) -> String {
    let c = char::from(b'A' + (idx % 26) as u8);
    match idx / 26 {
        0 => c.to_string(),
        round => format!("{c}{}", round + 1),
    }
}

/// A key group's label.
fn key_label(idx: usize) -> String {
    format!("K{}", idx + 1)
}

/// The summary in plain words: shared passwords (largest group first), shared keys, empty
/// and well-known passwords, unmanaged accounts, stale passwords, unreadable targets. A
/// clean report says so.
pub fn summary_lines(report: &ScanReport) -> Vec<String> {
    let mut lines = Vec::new();
    let passwords = Groups::of_passwords(report);
    let mut shared: Vec<&Vec<&CredentialRow>> =
        passwords.members.iter().filter(|m| m.len() > 1).collect();
    // One password on many servers first (the story behind rotor), then the largest
    // groups; ties keep the order of first appearance (the sort is stable).
    shared.sort_by_key(|m| {
        let n_targets = distinct(m.iter().map(|r| r.target.as_str()));
        (std::cmp::Reverse(n_targets), std::cmp::Reverse(m.len()))
    });
    for members in &shared {
        lines.push(shared_password_line(report, members));
    }
    if shared.is_empty() {
        lines.push("No shared passwords found.".to_owned());
    }

    let keys = Groups::of_keys(report);
    let shared_keys: Vec<&Vec<&CredentialRow>> =
        keys.members.iter().filter(|m| m.len() > 1).collect();
    for members in &shared_keys {
        let n_targets = distinct(members.iter().map(|r| r.target.as_str()));
        lines.push(format!(
            "One SSH key lets one into {} on {}: {}.",
            count(members.len(), "account", "accounts"),
            count(n_targets, "server", "servers"),
            some_credentials(members.iter().map(|r| r.credential.as_str()), 4),
        ));
    }
    if shared_keys.is_empty() {
        lines.push("No shared SSH keys found.".to_owned());
    }

    let n_empty = report
        .credentials
        .iter()
        .filter(|r| r.password == "empty")
        .count();
    if n_empty > 0 {
        lines.push(format!(
            "{} can log in with an empty password.",
            count(n_empty, "account", "accounts")
        ));
    }
    let n_known: usize = report
        .findings
        .iter()
        .filter(|f| f.kind == Kind::KnownCandidate)
        .map(|f| f.credentials.len())
        .sum();
    if n_known > 0 {
        lines.push(format!(
            "{} a well-known default password.",
            count(n_known, "account uses", "accounts use")
        ));
    }
    let n_unmanaged = report.credentials.iter().filter(|r| !r.managed).count();
    if n_unmanaged > 0 {
        lines.push(format!(
            "{} nobody manages: rotor's inventory does not list {}, so nobody changes {} password.",
            count(n_unmanaged, "account", "accounts"),
            if n_unmanaged == 1 { "it" } else { "them" },
            if n_unmanaged == 1 { "its" } else { "their" },
        ));
    }
    let n_stale = report.credentials.iter().filter(|r| over_age(r)).count();
    if n_stale > 0 {
        lines.push(format!(
            "{} older than {} policy allows.",
            count(n_stale, "password is", "passwords are"),
            if n_stale == 1 { "its" } else { "their" },
        ));
    }
    if !report.unreachable.is_empty() {
        lines.push(format!(
            "{} could not be read and {} not checked: {}.",
            count(report.unreachable.len(), "target", "targets"),
            if report.unreachable.len() == 1 {
                "was"
            } else {
                "were"
            },
            some_credentials(report.unreachable.iter().map(|u| u.target.as_str()), 4),
        ));
    }
    lines
}

/// One shared password group in words, as the issue asks: "14 of 20 servers accept the
/// same root password".
fn shared_password_line(report: &ScanReport, members: &[&CredentialRow]) -> String {
    let first = members[0];
    let n_targets = distinct(members.iter().map(|r| r.target.as_str()));
    if n_targets == 1 {
        let n_on_target = report
            .credentials
            .iter()
            .filter(|r| r.target == first.target)
            .count();
        return format!(
            "{}: {} of its {} accounts share one password.",
            first.target,
            members.len(),
            n_on_target
        );
    }
    if members.iter().all(|r| r.account == first.account) {
        let n_having = distinct(
            report
                .credentials
                .iter()
                .filter(|r| r.account == first.account)
                .map(|r| r.target.as_str()),
        );
        return format!(
            "{} of {} servers accept the same {} password.",
            members.len(),
            n_having,
            first.account,
        );
    }
    format!(
        "{} on {} share one password: {}.",
        count(members.len(), "account", "accounts"),
        count(n_targets, "server", "servers"),
        some_credentials(members.iter().map(|r| r.credential.as_str()), 4),
    )
}

fn distinct<'a>(items: impl Iterator<Item = &'a str>) -> usize {
    let mut seen: Vec<&str> = items.collect();
    seen.sort_unstable();
    seen.dedup();
    seen.len()
}

/// `a, b, c and 5 more`.
fn some_credentials<'a>(items: impl Iterator<Item = &'a str>, shown: usize) -> String {
    let all: Vec<&str> = items.collect();
    if all.len() <= shown {
        return all.join(", ");
    }
    format!("{} and {} more", all[..shown].join(", "), all.len() - shown)
}

fn over_age(row: &CredentialRow) -> bool {
    matches!((row.age_days, row.max_age_days), (Some(age), Some(max)) if age > max)
}

fn summary(out: &mut String, report: &ScanReport) {
    let lines = summary_lines(report);
    let clean = report.findings.is_empty() && report.unreachable.is_empty();
    let _ = writeln!(
        out,
        "<section class=\"summary{}\" id=\"summary\"><h2>In short</h2><ul class=\"summary\">",
        if clean { " clean" } else { "" }
    );
    for line in &lines {
        let _ = writeln!(out, "<li>{}</li>", esc(line));
    }
    out.push_str("</ul>\n");
    if clean {
        out.push_str(
            "<p class=\"muted\">Nothing to do: every account read has a password of its own.</p>\n",
        );
    } else {
        out.push_str(
            "<p class=\"muted\">Why it matters: one password that opens many servers lets whoever \
             learns it into all of them. Below, each account's colour shows which passwords are \
             the same; the findings at the end say what to do.</p>\n",
        );
    }
    out.push_str("</section>\n");
}

/// Targets in order of first appearance, each with its rows.
fn targets(report: &ScanReport) -> Vec<(&str, Vec<&CredentialRow>)> {
    let mut order: Vec<(&str, Vec<&CredentialRow>)> = Vec::new();
    let mut at: HashMap<&str, usize> = HashMap::new();
    for row in &report.credentials {
        let idx = *at.entry(row.target.as_str()).or_insert_with(|| {
            order.push((row.target.as_str(), Vec::new()));
            order.len() - 1
        });
        order[idx].1.push(row);
    }
    order
}

fn grid(out: &mut String, report: &ScanReport, passwords: &Groups, keys: &Groups) {
    out.push_str("<section id=\"grid\"><h2>Who shares a password</h2>\n");
    if report.credentials.is_empty() {
        out.push_str("<p class=\"muted\">No account was read.</p></section>\n");
        return;
    }
    let all = targets(report);
    let (narrow, wide): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|(_, rows)| rows.len() <= GRID_MAX_ACCOUNTS);
    // The legend beside a narrow grid, read before it and while reading it; above a wide
    // one, in a row.
    let n_columns = distinct(
        narrow
            .iter()
            .flat_map(|(_, rows)| rows.iter().map(|r| r.account.as_str())),
    );
    let layout = if n_columns > LEGEND_BESIDE_MAX_COLUMNS {
        "grid-layout wide"
    } else {
        "grid-layout"
    };
    let _ = write!(out, "<div class=\"{layout}\">");
    legend(out, report, passwords);
    if !narrow.is_empty() {
        grid_table(out, &narrow, passwords, keys);
    }
    out.push_str("</div>\n");
    for (target, rows) in &wide {
        wide_target(out, target, rows, passwords, keys);
    }
    out.push_str("</section>\n");
}

/// What the grid's marks mean: the groups, then only the marks this report uses.
fn legend(out: &mut String, report: &ScanReport, passwords: &Groups) {
    out.push_str("<div class=\"legend\"><strong>Same colour and letter = same password.</strong>");
    for (idx, members) in passwords
        .members
        .iter()
        .enumerate()
        .filter(|(_, m)| m.len() > 1)
    {
        let _ = write!(
            out,
            "<span><span class=\"cell\" style=\"background:{}\"><span class=\"label\">{}</span></span> \
             {}</span>",
            colour(idx),
            letter(idx),
            count(members.len(), "account", "accounts"),
        );
    }
    out.push_str("<span><span class=\"cell unique\">own</span> a password of its own</span>");
    let rows = &report.credentials;
    let marks = [
        (
            rows.iter().any(|r| r.password == "none"),
            "<span><span class=\"cell nopass\">none</span> no password (locked)</span>",
        ),
        (
            rows.iter().any(|r| r.password == "empty"),
            "<span><span class=\"cell empty\">empty</span> empty password: no password needed</span>",
        ),
        (
            rows.iter().any(|r| !r.managed),
            "<span><span class=\"cell unique unmanaged\">&nbsp;</span> dashed: not managed by rotor</span>",
        ),
        (
            rows.iter().any(|r| !r.key_groups.is_empty()),
            "<span><span class=\"badge-key\">K1</span> an SSH key shared with other accounts</span>",
        ),
        (
            rows.iter().any(over_age),
            "<span><span class=\"cell unique\"><span class=\"age over\">400 d</span></span> \
             days since the last change, red: older than its policy allows</span>",
        ),
    ];
    for (_, mark) in marks.iter().filter(|(used, _)| *used) {
        out.push_str(mark);
    }
    out.push_str("</div>\n");
}

/// One account's cell: its group's colour and letter (or none/empty/own), its age, a badge
/// per shared key, a dashed outline when rotor does not manage it.
fn cell(out: &mut String, row: &CredentialRow, named: bool, passwords: &Groups, keys: &Groups) {
    let shared = row
        .password_group
        .as_ref()
        .and_then(|g| passwords.of(g))
        .filter(|&idx| passwords.members[idx].len() > 1);
    let (class, style, label) = match (row.password, shared) {
        ("none", _) => ("nopass", String::new(), "none".to_owned()),
        ("empty", _) => ("empty", String::new(), "empty".to_owned()),
        (_, Some(idx)) => (
            "shared",
            format!(" style=\"background:{}\"", colour(idx)),
            letter(idx),
        ),
        _ => ("unique", String::new(), "own".to_owned()),
    };
    let managed = if row.managed { "" } else { " unmanaged" };
    let mut title = row.credential.clone();
    if !row.managed {
        title.push_str(": not managed by rotor");
    }
    let _ = write!(
        out,
        "<span class=\"cell {class}{managed}\"{style} title=\"{}\">",
        esc(&title)
    );
    if named {
        let _ = write!(out, "<span class=\"name\">{}</span>", esc(&row.account));
    }
    let _ = write!(out, "<span class=\"label\">{}</span>", esc(&label));
    for group in &row.key_groups {
        if let Some(idx) = keys.of(group) {
            let _ = write!(out, "<span class=\"badge-key\">{}</span>", key_label(idx));
        }
    }
    if let Some(age) = row.age_days {
        let over = if over_age(row) { " over" } else { "" };
        let _ = write!(out, "<span class=\"age{over}\">{age} d</span>");
    }
    out.push_str("</span>");
}

fn grid_table(
    out: &mut String,
    targets: &[(&str, Vec<&CredentialRow>)],
    passwords: &Groups,
    keys: &Groups,
) {
    // Columns: account names, the most widespread first (root, the service accounts), ties
    // in order of first appearance.
    let mut columns: Vec<(&str, usize, usize)> = Vec::new();
    for (_, rows) in targets {
        for row in rows {
            match columns.iter_mut().find(|(name, _, _)| *name == row.account) {
                Some(column) => column.1 += 1,
                None => {
                    let first = columns.len();
                    columns.push((row.account.as_str(), 1, first));
                }
            }
        }
    }
    columns.sort_by_key(|&(_, n, first)| (std::cmp::Reverse(n), first));
    let others: Vec<&str> = if columns.len() > GRID_MAX_COLUMNS {
        columns
            .split_off(GRID_MAX_COLUMNS - 1)
            .into_iter()
            .map(|(name, _, _)| name)
            .collect()
    } else {
        Vec::new()
    };
    out.push_str("<div class=\"grid-wrap\"><table class=\"grid\"><thead><tr><th></th>");
    for (name, _, _) in &columns {
        let _ = write!(out, "<th class=\"account\">{}</th>", esc(name));
    }
    if !others.is_empty() {
        out.push_str("<th class=\"account\">other accounts</th>");
    }
    out.push_str("</tr></thead><tbody>\n");
    for (target, rows) in targets {
        let _ = write!(out, "<tr><th class=\"target\">{}</th>", esc(target));
        for (name, _, _) in &columns {
            out.push_str("<td>");
            match rows.iter().find(|r| r.account == *name) {
                Some(row) => cell(out, row, false, passwords, keys),
                None => out.push_str("<span class=\"cell absent\">–</span>"),
            }
            out.push_str("</td>");
        }
        if !others.is_empty() {
            out.push_str("<td class=\"others\">");
            for row in rows.iter().filter(|r| others.contains(&r.account.as_str())) {
                cell(out, row, true, passwords, keys);
            }
            out.push_str("</td>");
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table></div>\n");
}

/// A target with many accounts (a directory): its password groups with counts and a few
/// names each, then what is left.
fn wide_target(
    out: &mut String,
    target: &str,
    rows: &[&CredentialRow],
    passwords: &Groups,
    keys: &Groups,
) {
    let _ = writeln!(
        out,
        "<h3>{} <span class=\"muted small\">({}, shown by group)</span></h3>",
        esc(target),
        count(rows.len(), "account", "accounts")
    );
    let mut by_group: BTreeMap<usize, Vec<&CredentialRow>> = BTreeMap::new();
    let mut own = 0;
    let mut none = 0;
    let mut empty = Vec::new();
    for row in rows {
        let shared = row
            .password_group
            .as_ref()
            .and_then(|g| passwords.of(g))
            .filter(|&idx| passwords.members[idx].len() > 1);
        match (row.password, shared) {
            ("none", _) => none += 1,
            ("empty", _) => empty.push(*row),
            (_, Some(idx)) => by_group.entry(idx).or_default().push(*row),
            _ => own += 1,
        }
    }
    out.push_str("<table class=\"list\"><thead><tr><th>Password</th><th>Accounts</th><th>Which</th></tr></thead><tbody>\n");
    for (idx, members) in &by_group {
        let _ = writeln!(
            out,
            "<tr><td><span class=\"cell\" style=\"background:{}\"><span class=\"label\">{}</span></span> shared</td><td>{}</td><td>{}</td></tr>",
            colour(*idx),
            letter(*idx),
            members.len(),
            esc(&some_credentials(
                members.iter().map(|r| r.account.as_str()),
                8
            )),
        );
    }
    if !empty.is_empty() {
        let _ = writeln!(
            out,
            "<tr><td><span class=\"cell empty\">empty</span></td><td>{}</td><td>{}</td></tr>",
            empty.len(),
            esc(&some_credentials(
                empty.iter().map(|r| r.account.as_str()),
                8
            )),
        );
    }
    if own > 0 {
        let _ = writeln!(
            out,
            "<tr><td><span class=\"cell unique\">own</span></td><td>{own}</td><td class=\"muted\">a password of its own</td></tr>",
        );
    }
    if none > 0 {
        let _ = writeln!(
            out,
            "<tr><td><span class=\"cell nopass\">none</span></td><td>{none}</td><td class=\"muted\">no password</td></tr>",
        );
    }
    let unmanaged: Vec<&str> = rows
        .iter()
        .filter(|r| !r.managed)
        .map(|r| r.account.as_str())
        .collect();
    if !unmanaged.is_empty() {
        let _ = writeln!(
            out,
            "<tr><td><span class=\"cell unique unmanaged\">&nbsp;</span> not managed</td><td>{}</td><td>{}</td></tr>",
            unmanaged.len(),
            esc(&some_credentials(unmanaged.into_iter(), 8)),
        );
    }
    let keyed: Vec<&&CredentialRow> = rows.iter().filter(|r| !r.key_groups.is_empty()).collect();
    if !keyed.is_empty() {
        let _ = write!(
            out,
            "<tr><td>shared SSH key</td><td>{}</td><td>",
            keyed.len()
        );
        for row in keyed.iter().take(8) {
            let _ = write!(out, "{} ", esc(&row.account));
            for group in &row.key_groups {
                if let Some(idx) = keys.of(group) {
                    let _ = write!(out, "<span class=\"badge-key\">{}</span> ", key_label(idx));
                }
            }
        }
        out.push_str("</td></tr>\n");
    }
    out.push_str("</tbody></table>\n");
}

fn age_chart(out: &mut String, report: &ScanReport) {
    // Only accounts with a password have an age worth charting.
    let rows: Vec<&CredentialRow> = report
        .credentials
        .iter()
        .filter(|r| r.password != "none")
        .collect();
    out.push_str("<section id=\"ages\" class=\"chart\"><h2>How old the passwords are</h2>\n");
    if rows.is_empty() {
        out.push_str("<p class=\"muted\">No account with a password was read.</p></section>\n");
        return;
    }
    // (label, all, over policy)
    let mut buckets: Vec<(&str, usize, usize)> = AGE_BUCKETS
        .iter()
        .map(|&(label, _)| (label, 0, 0))
        .collect();
    buckets.push(("unknown", 0, 0));
    for row in &rows {
        let idx = match row.age_days {
            Some(age) => AGE_BUCKETS
                .iter()
                .position(|&(_, below)| age < below)
                .unwrap_or(AGE_BUCKETS.len() - 1),
            None => AGE_BUCKETS.len(),
        };
        buckets[idx].1 += 1;
        if over_age(row) {
            buckets[idx].2 += 1;
        }
    }
    let max = buckets.iter().map(|b| b.1).max().unwrap_or(0).max(1);
    let (width, height, top, bottom, left) = (660.0, 250.0, 24.0, 44.0, 20.0);
    let plot = height - top - bottom;
    let slot = (width - 2.0 * left) / buckets.len() as f64;
    let bar = slot * 0.6;
    let _ = write!(
        out,
        "<svg viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"Password ages\" \
         xmlns=\"http://www.w3.org/2000/svg\" font-family=\"system-ui, sans-serif\" font-size=\"13\">\
         <title>Password ages</title>\
         <line x1=\"{left}\" y1=\"{base}\" x2=\"{right}\" y2=\"{base}\" stroke=\"#aab2bf\"/>",
        base = top + plot,
        right = width - left,
    );
    for (idx, (label, all, over)) in buckets.iter().enumerate() {
        let x = left + slot * idx as f64 + (slot - bar) / 2.0;
        let h_all = plot * *all as f64 / max as f64;
        let h_over = plot * *over as f64 / max as f64;
        let y_all = top + plot - h_all;
        let fill = if *label == "unknown" {
            "#b4b9c2"
        } else {
            "#6baed6"
        };
        let _ = write!(
            out,
            "<rect x=\"{x:.1}\" y=\"{y_all:.1}\" width=\"{bar:.1}\" height=\"{h_all:.1}\" fill=\"{fill}\"/>"
        );
        if *over > 0 {
            // The part over policy sits at the bottom of its bar, in red.
            let _ = write!(
                out,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{h_over:.1}\" fill=\"#d93025\"/>",
                top + plot - h_over
            );
        }
        let mid = x + bar / 2.0;
        let said = if *over > 0 {
            format!("{all} ({over} too old)")
        } else {
            all.to_string()
        };
        let _ = write!(
            out,
            "<text x=\"{mid:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-weight=\"600\">{}</text>\
             <text x=\"{mid:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#5b6472\">{}</text>",
            y_all - 6.0,
            esc(&said),
            top + plot + 20.0,
            esc(label),
        );
    }
    out.push_str("</svg>\n");
    out.push_str(
        "<p class=\"small muted\"><span class=\"cell\" style=\"background:#6baed6;min-width:1rem\">&nbsp;</span> \
         within its policy or no policy &nbsp; <span class=\"cell\" style=\"background:#d93025;min-width:1rem\">&nbsp;</span> \
         older than its policy's maximum age &nbsp; <span class=\"cell\" style=\"background:#b4b9c2;min-width:1rem\">&nbsp;</span> \
         age not known</p>\n</section>\n",
    );
}

fn severity_word(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "critical",
        Severity::High => "high",
        Severity::Medium => "medium",
        Severity::Low => "low",
        Severity::Info => "info",
    }
}

fn findings(out: &mut String, report: &ScanReport, passwords: &Groups, keys: &Groups) {
    let _ = writeln!(
        out,
        "<section id=\"findings\"><h2>Findings <span class=\"muted small\">({})</span></h2>",
        report.findings.len()
    );
    if report.findings.is_empty() {
        // Said of what was read: a target that did not answer is listed below, unjudged.
        let of_what = if report.unreachable.is_empty() {
            ""
        } else {
            " in what could be read"
        };
        let _ = writeln!(
            out,
            "<p class=\"ok\">No findings{of_what}: nothing shared, nothing unmanaged, nothing too old.</p>\n</section>",
        );
        return;
    }
    let mut sorted: Vec<&Finding> = report.findings.iter().collect();
    // Most severe first whatever order the scanner gave (stable: its order within a level).
    sorted.sort_by_key(|f| std::cmp::Reverse(f.severity));
    out.push_str("<ol class=\"findings\">\n");
    for finding in sorted {
        let word = severity_word(finding.severity);
        let _ = write!(out, "<li><span class=\"sev {word}\">{word}</span>");
        if let Some(group) = &finding.group {
            match finding.kind {
                Kind::SharedKey => {
                    if let Some(idx) = keys.of(group) {
                        let _ = write!(out, " <span class=\"badge-key\">{}</span>", key_label(idx));
                    }
                }
                _ => {
                    if let Some(idx) = passwords.of(group) {
                        let _ = write!(
                            out,
                            " <span class=\"cell\" style=\"background:{};min-width:1.6rem;text-align:center\"><span class=\"label\">{}</span></span>",
                            colour(idx),
                            letter(idx)
                        );
                    }
                }
            }
        }
        let _ = write!(out, "<span class=\"what\">{}</span>", esc(&finding.summary));
        let creds = &finding.credentials;
        let shown: Vec<String> = creds
            .iter()
            .take(FINDING_CREDENTIALS_SHOWN)
            .map(|c| esc(c))
            .collect();
        let _ = write!(out, "<div class=\"creds mono\">{}", shown.join(", "));
        if creds.len() > FINDING_CREDENTIALS_SHOWN {
            let rest: Vec<String> = creds[FINDING_CREDENTIALS_SHOWN..]
                .iter()
                .map(|c| esc(c))
                .collect();
            let _ = write!(
                out,
                "<details><summary>and {} more</summary>{}</details>",
                rest.len(),
                rest.join(", ")
            );
        }
        out.push_str("</div>");
        let _ = writeln!(out, "<p class=\"advice\">{}</p></li>", esc(&finding.advice));
    }
    out.push_str("</ol>\n</section>\n");
}

/// Who was logged in on each host when it was read (hosts with a session, or whose
/// sessions could not be read).
fn logged_in(out: &mut String, report: &ScanReport) {
    let hosts: Vec<_> = report
        .sessions
        .iter()
        .filter(|h| !h.sessions.is_empty() || h.unread.is_some())
        .collect();
    if hosts.is_empty() {
        return;
    }
    out.push_str(
        "<section id=\"sessions\"><h2>Logged in now</h2><p class=\"muted\">Sessions open when \
         each server was read. A session opened before a password changes stays open.</p>\n\
         <table class=\"list\"><thead><tr><th>Server</th><th>Account</th><th>Terminal</th>\
         <th>From</th><th>Since</th></tr></thead><tbody>\n",
    );
    for h in hosts {
        for s in &h.sessions {
            let _ = writeln!(
                out,
                "<tr><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td>{}</td></tr>",
                esc(&h.host),
                esc(&s.account),
                esc(&s.line),
                esc(&s.from),
                esc(&s.since)
            );
        }
        if let Some(why) = &h.unread {
            let _ = writeln!(
                out,
                "<tr><td class=\"mono\">{}</td><td colspan=\"4\">sessions not (all) read: {}</td></tr>",
                esc(&h.host),
                esc(why)
            );
        }
    }
    out.push_str("</tbody></table></section>\n");
}

fn unreachable(out: &mut String, report: &ScanReport) {
    if report.unreachable.is_empty() {
        return;
    }
    out.push_str(
        "<section id=\"unreachable\"><h2>Not read</h2><p class=\"muted\">Nothing is known of \
         these: they were not checked, so they may share passwords too.</p>\n\
         <table class=\"list\"><thead><tr><th>Target</th><th>Why</th></tr></thead><tbody>\n",
    );
    for u in &report.unreachable {
        let _ = writeln!(
            out,
            "<tr><td class=\"mono\">{}</td><td>{}</td></tr>",
            esc(&u.target),
            esc(&u.error)
        );
    }
    out.push_str("</tbody></table></section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::Unreachable;
    use chrono::{TimeZone as _, Utc};

    fn row(target: &str, account: &str, group: Option<&str>) -> CredentialRow {
        CredentialRow {
            credential: format!("{target}/{account}"),
            target: target.to_owned(),
            account: account.to_owned(),
            managed: true,
            password: "password",
            password_group: group.map(|g| GroupId(g.to_owned())),
            age_days: Some(10),
            max_age_days: Some(90),
            n_keys: 0,
            key_groups: Vec::new(),
        }
    }

    fn report(credentials: Vec<CredentialRow>, findings: Vec<Finding>) -> ScanReport {
        let n_hosts = distinct(credentials.iter().map(|r| r.target.as_str()));
        ScanReport {
            schema_version: 1,
            scanned_at: Utc.with_ymd_and_hms(2026, 12, 2, 5, 36, 0).unwrap(),
            n_hosts,
            n_directories: 0,
            n_accounts: credentials.len(),
            findings,
            credentials,
            unreachable: Vec::new(),
            sessions: Vec::new(),
        }
    }

    fn finding(kind: Kind, severity: Severity, summary: &str, group: Option<&str>) -> Finding {
        Finding {
            kind,
            severity,
            credentials: vec!["host-01/root".to_owned()],
            group: group.map(|g| GroupId(g.to_owned())),
            summary: summary.to_owned(),
            advice: "Rotate it.".to_owned(),
        }
    }

    /// 20 hosts with root; hosts 1..=14 share group g1, the rest have their own.
    fn shared_fleet() -> ScanReport {
        let rows = (1..=20)
            .map(|i| {
                let group = (i <= 14).then_some("g1");
                row(&format!("host-{i:02}"), "root", group)
            })
            .collect();
        report(
            rows,
            vec![finding(
                Kind::SharedPassword,
                Severity::Critical,
                "shared",
                Some("g1"),
            )],
        )
    }

    #[test]
    fn a_hostile_name_is_shown_as_text() {
        let mut fleet = report(
            vec![row("host-01", "<script>alert(1)</script>", None)],
            vec![finding(
                Kind::UnmanagedAccount,
                Severity::Medium,
                "<img src=x onerror=alert(1)>",
                None,
            )],
        );
        fleet.unreachable.push(Unreachable {
            target: "h\"><b>".to_owned(),
            error: "bad\u{1b}[2J".to_owned(),
        });
        fleet.sessions.push(crate::scan::HostSessions {
            host: "host-01".to_owned(),
            sessions: vec![crate::target::Session {
                account: "<i>svc</i>".to_owned(),
                line: "pts/1".to_owned(),
                from: "127.0.0.1".to_owned(),
                since: "Dec 2 07:03".to_owned(),
            }],
            unread: Some("<u>cut</u>".to_owned()),
        });
        let html = render(&fleet);
        assert!(html.contains("<h2>Logged in now</h2>"), "{html}");
        assert!(html.contains("&lt;i&gt;svc&lt;/i&gt;"), "{html}");
        assert!(!html.contains("<i>") && !html.contains("<u>"), "{html}");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("h&quot;&gt;&lt;b&gt;"));
        // A control character is shown escaped, not sent to the reader.
        assert!(html.contains("bad\\u{1b}[2J"), "{html}");
        assert!(!html.contains('\u{1b}'));
    }

    #[test]
    fn the_report_has_a_strict_policy_and_no_script_or_outside_resource() {
        let html = render(&shared_fleet());
        assert!(
            html.contains(
                "content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\""
            )
        );
        assert!(!html.to_ascii_lowercase().contains("<script"));
        assert!(!html.contains("<link"));
        assert!(!html.contains("@import"));
        assert!(!html.contains("url("));
        // The one URL is the SVG namespace, which is a name, never fetched.
        let urls: Vec<&str> = html
            .match_indices("http:")
            .map(|(at, _)| &html[at..at + 26])
            .collect();
        assert!(
            urls.iter()
                .all(|u| u.starts_with("http://www.w3.org/2000/svg")),
            "{urls:?}"
        );
        assert!(!html.contains("https:"));
    }

    #[test]
    fn the_same_group_has_the_same_colour_and_groups_are_coloured_in_order() {
        let fleet = report(
            vec![
                row("a", "root", Some("g2")),
                row("a", "app", Some("g1")),
                row("b", "root", Some("g2")),
                row("b", "app", Some("g1")),
                row("c", "root", Some("g3")),
                row("d", "root", Some("g3")),
            ],
            Vec::new(),
        );
        let groups = Groups::of_passwords(&fleet);
        let g = |id: &str| groups.of(&GroupId(id.to_owned())).unwrap();
        assert_eq!((g("g2"), g("g1"), g("g3")), (0, 1, 2));
        assert_eq!(colour(g("g2")), PALETTE[0]);
        assert_eq!(colour(g("g1")), PALETTE[1]);
        let palette: std::collections::HashSet<&str> = PALETTE.iter().copied().collect();
        assert_eq!(palette.len(), PALETTE.len(), "distinct colours");
        assert_eq!(colour(12), colour(0), "the colours repeat");
        assert_ne!(letter(12), letter(0));
        assert_eq!(letter(26), "A2");
        // In the grid, both cells of a group carry its colour and letter.
        let html = render(&fleet);
        let cell = format!("style=\"background:{}\"", PALETTE[0]);
        let n_cells = html.matches(&format!("{cell} title=")).count();
        assert_eq!(n_cells, 2, "{html}");
    }

    #[test]
    fn summary_of_a_shared_password_says_how_many_of_how_many() {
        let lines = summary_lines(&shared_fleet());
        assert_eq!(
            lines,
            [
                "14 of 20 servers accept the same root password.",
                "No shared SSH keys found.",
            ]
        );
    }

    #[test]
    fn summary_of_everything_wrong() {
        let mut rows = vec![
            row("host-01", "root", Some("g1")),
            row("host-01", "app", Some("g1")),
            row("host-02", "root", None),
            row("ldap", "u1", Some("g2")),
            row("ldap", "u2", Some("g2")),
            row("ldap", "u3", None),
        ];
        rows[0].key_groups = vec![GroupId("k1".to_owned())];
        rows[2].key_groups = vec![GroupId("k1".to_owned())];
        rows[2].managed = false;
        rows[2].password = "empty";
        rows[5].age_days = Some(400);
        let mut fleet = report(
            rows,
            vec![finding(
                Kind::KnownCandidate,
                Severity::Critical,
                "default",
                None,
            )],
        );
        fleet.unreachable.push(Unreachable {
            target: "host-03".to_owned(),
            error: "timed out".to_owned(),
        });
        assert_eq!(
            summary_lines(&fleet),
            [
                "host-01: 2 of its 2 accounts share one password.".to_owned(),
                "ldap: 2 of its 3 accounts share one password.".to_owned(),
                "One SSH key lets one into 2 accounts on 2 servers: host-01/root, host-02/root."
                    .to_owned(),
                "1 account can log in with an empty password.".to_owned(),
                "1 account uses a well-known default password.".to_owned(),
                "1 account nobody manages: rotor's inventory does not list it, so nobody changes its password.".to_owned(),
                "1 password is older than its policy allows.".to_owned(),
                "1 target could not be read and was not checked: host-03.".to_owned(),
            ]
        );
    }

    #[test]
    fn summary_of_accounts_sharing_across_servers_and_names() {
        let fleet = report(
            vec![row("a", "root", Some("g")), row("b", "admin", Some("g"))],
            Vec::new(),
        );
        assert_eq!(
            summary_lines(&fleet)[0],
            "2 accounts on 2 servers share one password: a/root, b/admin."
        );
    }

    #[test]
    fn summary_of_a_clean_report_says_so() {
        let fleet = report(
            vec![row("a", "root", None), row("b", "root", Some("lonely"))],
            Vec::new(),
        );
        assert_eq!(
            summary_lines(&fleet),
            ["No shared passwords found.", "No shared SSH keys found."]
        );
        let html = render(&fleet);
        assert!(html.contains("No findings"));
        assert!(html.contains("section class=\"summary clean\""));
    }

    #[test]
    fn a_large_directory_is_listed_by_group_not_as_columns() {
        let rows = (0..2000)
            .map(|i| row("ldap-main", &format!("u{i:04}"), (i < 1500).then_some("g")))
            .collect();
        let html = render(&report(rows, Vec::new()));
        assert!(!html.contains("<th class=\"account\">"), "no grid columns");
        assert!(
            html.contains("ldap-main <span class=\"muted small\">(2000 accounts, shown by group)")
        );
        assert!(html.contains("<td>1500</td>"));
        assert!(
            html.contains("u0000, u0001, u0002, u0003, u0004, u0005, u0006, u0007 and 1492 more")
        );
        assert!(html.len() < 100_000, "{} bytes", html.len());
    }

    #[test]
    fn accounts_past_the_column_limit_share_a_named_column() {
        let mut rows = Vec::new();
        for host in ["a", "b"] {
            rows.push(row(host, "root", None));
            for i in 0..20 {
                rows.push(row(host, &format!("{host}-user{i:02}"), None));
            }
        }
        let html = render(&report(rows, Vec::new()));
        assert_eq!(
            html.matches("<th class=\"account\">").count(),
            GRID_MAX_COLUMNS
        );
        assert!(html.contains("<th class=\"account\">other accounts</th>"));
        assert!(html.contains("<span class=\"name\">b-user19</span>"));
    }

    #[test]
    fn findings_are_listed_most_severe_first() {
        let fleet = report(
            vec![row("a", "root", None)],
            vec![
                finding(Kind::Stale, Severity::Low, "low one", None),
                finding(
                    Kind::SharedPassword,
                    Severity::Critical,
                    "critical one",
                    None,
                ),
                finding(Kind::UnmanagedAccount, Severity::Medium, "medium one", None),
            ],
        );
        let html = render(&fleet);
        let at = |s: &str| html.find(s).unwrap();
        assert!(at("critical one") < at("medium one"));
        assert!(at("medium one") < at("low one"));
    }

    #[test]
    fn ages_are_charted_in_buckets_with_the_part_over_policy() {
        let mut rows: Vec<CredentialRow> =
            (0..5).map(|i| row("h", &format!("a{i}"), None)).collect();
        rows[0].age_days = Some(5);
        rows[1].age_days = Some(45);
        rows[2].age_days = Some(120); // over its 90 days
        rows[3].age_days = Some(800);
        rows[3].max_age_days = None;
        rows[4].age_days = None;
        let html = render(&report(rows, Vec::new()));
        let chart = &html[html.find("<svg").unwrap()..html.find("</svg>").unwrap()];
        assert!(chart.contains(">1 (1 too old)</text>"), "{chart}");
        assert_eq!(chart.matches("fill=\"#d93025\"").count(), 1);
        for label in [
            "under 30 days",
            "30–90 days",
            "90 days – 1 year",
            "over 1 year",
            "unknown",
        ] {
            assert!(chart.contains(&format!(">{label}</text>")), "{label}");
        }
    }

    /// The model holds no secret; the render prints only its fields. A group's id (a keyed
    /// fingerprint, hash-like) is not printed either: the reader sees letters.
    #[test]
    fn no_group_id_or_hash_like_text_is_printed() {
        let id = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let mut fleet = report(
            vec![row("a", "root", Some(id)), row("b", "root", Some(id))],
            vec![finding(
                Kind::SharedPassword,
                Severity::High,
                "shared",
                Some(id),
            )],
        );
        fleet.credentials[0].key_groups = vec![GroupId(format!("SHA256:{id}"))];
        let html = render(&fleet);
        assert!(!html.contains(&id[..16]), "{html}");
        assert!(!html.contains("SHA256"));
        assert!(!html.contains('$'), "no crypt-style text");
    }
}

//! `rotor scan`'s HTML report in headless Chromium: a realistic report (20 servers with two
//! shared passwords, a shared SSH key, stale and unmanaged accounts, a server that did not
//! answer, a directory of 50 accounts with one password) and a clean one are rendered by
//! `rotor::scan::html::render`, opened from disk (`file://`), checked for console errors
//! (the report's own CSP would report anything it blocks) and saved as full-page
//! screenshots: `target/screenshots/scan-report.png`, `scan-report-print.png` (as printed)
//! and `scan-report-clean.png`; a report whose names are markup shows them as text
//! (`scan-report-hostile.png`).

use chrono::{TimeZone as _, Utc};
use fantoccini::Client;
use rotor::scan::{CredentialRow, Finding, GroupId, Kind, ScanReport, Severity, Unreachable, html};

use crate::browser::{
    Driver, browser, console_errors, emulate_media, find, full_page_screenshot, screenshots_dir,
};

fn row(target: &str, account: &str, group: Option<&str>, age: i64) -> CredentialRow {
    CredentialRow {
        credential: format!("{target}/{account}"),
        target: target.to_owned(),
        account: account.to_owned(),
        managed: true,
        password: "password",
        password_group: group.map(|g| GroupId(g.to_owned())),
        age_days: Some(age),
        max_age_days: Some(90),
        n_keys: 0,
        key_groups: Vec::new(),
    }
}

fn group(id: &str) -> GroupId {
    GroupId(id.to_owned())
}

/// 20 servers with `root` (14 share one password) and `svc_app` (6 share another), a
/// `backup` account nobody manages on host-07, a locked service account on each of 12, root's key on three servers, some passwords
/// past their 90 days, host-21 unreachable, and `ldap-main` with 50 accounts of one password.
fn fleet() -> ScanReport {
    let mut credentials = Vec::new();
    for i in 1..=20 {
        let host = format!("host-{i:02}");
        let mut root = row(&host, "root", (i <= 14).then_some("g-root"), 400 + i);
        if i <= 3 {
            root.n_keys = 1;
            root.key_groups = vec![group("k-root")];
        }
        credentials.push(root);
        let app_age = if i % 4 == 0 { 150 } else { 20 + i };
        credentials.push(row(&host, "svc_app", (i <= 6).then_some("g-app"), app_age));
        // Service accounts of one server each, locked: the grid's last columns, and past
        // its 12 columns one "other accounts" column.
        let services = [
            "postgres", "nginx", "redis", "mysql", "tomcat", "jenkins", "grafana", "mongodb",
            "rabbitmq", "elastic", "zabbix", "pacs",
        ];
        if i >= 9 {
            let mut service = row(&host, services[(i - 9) as usize], None, 0);
            service.password = "none";
            service.age_days = None;
            credentials.push(service);
        }
        if i == 7 {
            let mut backup = row(&host, "backup", None, 1200);
            backup.managed = false;
            backup.max_age_days = None;
            credentials.push(backup);
        }
    }
    for u in 1..=50 {
        let mut account = row("ldap-main", &format!("u{u:03}"), Some("g-ldap"), 60);
        account.credential = format!("ldap-main/{}", 10_000 + u);
        account.age_days = None;
        account.max_age_days = None;
        credentials.push(account);
    }
    let members = |g: &str| -> Vec<String> {
        credentials
            .iter()
            .filter(|r| r.password_group.as_ref().is_some_and(|x| x.0 == g))
            .map(|r| r.credential.clone())
            .collect()
    };
    let stale: Vec<String> = credentials
        .iter()
        .filter(|r| matches!((r.age_days, r.max_age_days), (Some(a), Some(m)) if a > m))
        .map(|r| r.credential.clone())
        .collect();
    let findings = vec![
        Finding {
            kind: Kind::SharedPassword,
            severity: Severity::Critical,
            credentials: members("g-root"),
            group: Some(group("g-root")),
            summary: "14 servers accept the same root password.".to_owned(),
            advice: "Rotate root on these servers with rotor: each gets a password of its own."
                .to_owned(),
        },
        Finding {
            kind: Kind::SharedPassword,
            severity: Severity::High,
            credentials: members("g-ldap"),
            group: Some(group("g-ldap")),
            summary: "50 directory accounts share one password.".to_owned(),
            advice: "Add them to the inventory and rotate them.".to_owned(),
        },
        Finding {
            kind: Kind::SharedPassword,
            severity: Severity::High,
            credentials: members("g-app"),
            group: Some(group("g-app")),
            summary: "6 servers accept the same svc_app password.".to_owned(),
            advice: "Rotate svc_app on these servers.".to_owned(),
        },
        Finding {
            kind: Kind::SharedKey,
            severity: Severity::High,
            credentials: (1..=3).map(|i| format!("host-{i:02}/root")).collect(),
            group: Some(group("k-root")),
            summary: "One SSH key lets one in as root on 3 servers.".to_owned(),
            advice: "Give each server's root its own key (linux-ssh-key) and remove this one."
                .to_owned(),
        },
        Finding {
            kind: Kind::UnmanagedAccount,
            severity: Severity::Medium,
            credentials: vec!["host-07/backup".to_owned()],
            group: None,
            summary: "host-07 has an account the inventory does not list: backup.".to_owned(),
            advice: "Add it to the inventory so rotor rotates it, or remove it.".to_owned(),
        },
        Finding {
            kind: Kind::Stale,
            severity: Severity::Low,
            credentials: stale,
            group: None,
            summary: "Passwords older than their policy's 90 days.".to_owned(),
            advice: "Rotate them: rotor rotate --scope account:root.".to_owned(),
        },
    ];
    ScanReport {
        schema_version: 1,
        scanned_at: Utc.with_ymd_and_hms(2026, 12, 2, 5, 36, 0).unwrap(),
        n_hosts: 21,
        n_directories: 1,
        n_accounts: credentials.len(),
        findings,
        credentials,
        unreachable: vec![Unreachable {
            target: "host-21".to_owned(),
            error: "connection timed out after 10 s (port 22)".to_owned(),
        }],
        sessions: Vec::new(),
    }
}

/// Every server with accounts of their own, nothing shared.
fn clean() -> ScanReport {
    let credentials: Vec<CredentialRow> = (1..=6)
        .flat_map(|i| {
            let host = format!("host-{i:02}");
            [
                row(&host, "root", None, 10 * i),
                row(&host, "svc_app", None, 5 * i),
            ]
        })
        .collect();
    ScanReport {
        schema_version: 1,
        scanned_at: Utc.with_ymd_and_hms(2026, 12, 2, 5, 36, 0).unwrap(),
        n_hosts: 6,
        n_directories: 0,
        n_accounts: credentials.len(),
        findings: Vec::new(),
        credentials,
        unreachable: Vec::new(),
        sessions: Vec::new(),
    }
}

const HOSTILE_NAME: &str =
    "<script>console.error('ran')</script><img src=x onerror=console.error(1)>";

/// One server whose account and error message are markup.
fn hostile() -> ScanReport {
    let mut report = clean();
    report.credentials.truncate(1);
    report.n_hosts = 2;
    report.n_accounts = 1;
    report.credentials[0].account = HOSTILE_NAME.to_owned();
    report.credentials[0].credential = format!("host-01/{HOSTILE_NAME}");
    report.unreachable.push(Unreachable {
        target: "host-02\"><b>bold</b>".to_owned(),
        error: HOSTILE_NAME.to_owned(),
    });
    report
}

/// Writes the report beside its screenshot, opens it from disk, waits for it, checks the
/// console and saves the whole page; the page's text comes back.
async fn open_and_shoot(c: &Client, report: &ScanReport, name: &str) -> String {
    let file = screenshots_dir().join(format!("{name}.html"));
    let page = html::render(report);
    // Groups are keyed fingerprints in a real scan: the reader sees letters, never an id.
    for id in report
        .credentials
        .iter()
        .flat_map(|r| r.password_group.iter().chain(&r.key_groups))
    {
        assert!(!page.contains(&id.0), "group id {:?} in {name}", id.0);
    }
    std::fs::write(&file, page).unwrap();
    let url = url::Url::from_file_path(&file).unwrap();
    c.goto(url.as_str()).await.unwrap();
    let text = find(c, "#summary").await.text().await.unwrap();
    find(c, "#findings").await;
    full_page_screenshot(c, &format!("{name}.png")).await;
    let errors = console_errors(c).await;
    assert!(errors.is_empty(), "console errors on {name}: {errors:#?}");
    let body = c.source().await.unwrap();
    assert!(!body.contains("<script"), "a script in {name}");
    text
}

#[test]
fn the_scan_report_renders_in_chromium_without_console_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let driver = Driver::start(&tmp.path().join("chromedriver.log"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = browser(&driver, &tmp.path().join("profile")).await;
        let summary = open_and_shoot(&c, &fleet(), "scan-report").await;
        for said in [
            "14 of 20 servers accept the same root password.",
            "ldap-main: 50 of its 50 accounts share one password.",
            "6 of 20 servers accept the same svc_app password.",
            "One SSH key lets one into 3 accounts on 3 servers",
            "1 account nobody manages",
            "1 target could not be read and was not checked: host-21.",
        ] {
            assert!(summary.contains(said), "{said:?} not in {summary}");
        }
        // As on paper: the print styles, saved for a look (`scan-report-print.png`).
        emulate_media(&c, Some("print")).await;
        full_page_screenshot(&c, "scan-report-print.png").await;
        emulate_media(&c, None).await;
        let grid = find(&c, "#grid").await.text().await.unwrap();
        assert!(
            grid.contains("Same colour and letter = same password."),
            "{grid}"
        );
        assert!(grid.contains("other accounts"), "{grid}");
        let unreachable = find(&c, "#unreachable").await.text().await.unwrap();
        assert!(unreachable.contains("host-21"), "{unreachable}");

        let summary = open_and_shoot(&c, &clean(), "scan-report-clean").await;
        assert!(summary.contains("No shared passwords found."), "{summary}");
        assert!(summary.contains("No shared SSH keys found."), "{summary}");

        // Names from a host are outside text: shown as text, run never (a script the
        // escaping missed would also be blocked, and reported, by the page's CSP).
        let hostile = hostile();
        open_and_shoot(&c, &hostile, "scan-report-hostile").await;
        let grid = find(&c, "#grid").await.text().await.unwrap();
        assert!(grid.contains(HOSTILE_NAME), "{grid}");
        let n_images = c
            .find_all(fantoccini::Locator::Css("img"))
            .await
            .unwrap()
            .len();
        assert_eq!(n_images, 0, "a name became an element");

        // The console check above sees errors: a probe shows up.
        c.execute("console.error('rotor-probe')", Vec::new())
            .await
            .unwrap();
        let probe = console_errors(&c).await;
        assert!(
            probe.iter().any(|e| e.contains("rotor-probe")),
            "the console log did not show a probe error: {probe:#?}"
        );
        c.close().await.unwrap();
    });
}

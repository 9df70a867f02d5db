//! The checkout page in headless Chromium, against a real sshd host: the vendor's engineer
//! signs in with a requester token and requests a checkout; an approver, in a second browser
//! session, approves it; the engineer claims it (the secret once, a copy button, a countdown)
//! and the secret logs in with the system ssh client; check-in rotates the credential and the
//! secret stops working; a second request is refused with a reason. Every page is saved as a screenshot in `target/screenshots/` and no
//! console error may appear. The daemon's HTTP side runs in this process (`serve_http` on
//! `127.0.0.1:0`) over a vault the real `rotor` binary made; Chromium is driven over WebDriver
//! (Debian's `chromium-driver`, started and stopped by its PID in `browser.rs`).
//!
//! A second test, without a browser, holds the page's guards: the strict headers and a 403
//! for a form posted without its CSRF field.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use rotor::checkout::{End, State};
use rotor::ops::Actor;
use rotor::server::{Loaded, Shared};
use rotor::store::{KeySource, Role, Vault};

use crate::browser::{Driver, browser, console_errors, find};
use crate::lab::Lab;
use crate::support::Rotor;

const CRED: &str = "host-001/svc_app";

/// The daemon's HTTP side over a vault, on its own runtime.
struct Daemon {
    rt: tokio::runtime::Runtime,
    vault: Arc<Vault>,
    addr: std::net::SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Daemon {
    fn start(vault_dir: &Path, inventory: &Path) -> Daemon {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let vault = Arc::new(Vault::open(vault_dir, KeySource::default_file(vault_dir)).unwrap());
        let path = rotor::store::check_trusted_file("inventory", inventory).unwrap();
        let loaded = Loaded {
            inventory: rotor::inventory::load(&path).unwrap(),
            path,
        };
        let ctx = rotor::ops::Context::for_vault(
            vault.clone(),
            Arc::new(rotor::clock::SystemClock),
            rt.handle().clone(),
        );
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared::new(
            ctx,
            vault.clone(),
            loaded,
            Duration::from_secs(60),
            stopping,
        ));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = shared.shutdown();
        rt.spawn(rotor::server::serve_http(listener, shared, shutdown));
        Daemon {
            rt,
            vault,
            addr,
            stop,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// A token for `name` with `role`, as `rotor token create` makes it.
    fn token(&self, name: &str, role: Role) -> String {
        let (_, token) = self
            .vault
            .token_create(
                &Actor::named("test-admin"),
                name,
                role,
                Duration::from_secs(3600),
            )
            .unwrap();
        token.expose().to_owned()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// One plain HTTP/1.1 exchange (no browser): the status line's code, the headers (names in
/// lower case) and the body.
fn http(addr: std::net::SocketAddr, request: &str) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn post(addr: std::net::SocketAddr, path: &str, cookie: &str, form: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nCookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    )
}

const SMALL_INVENTORY: &str = "version: 1
policies:
  default: { checkout: { approval: required, max_ttl: 4h, default_ttl: 1h } }
hosts:
  - name: a
    address: 127.0.0.1
    host_key: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\"
    connect: { user: root, key: /k }
    accounts:
      - { name: svc_app, playbook: linux-password }
";

#[test]
fn the_page_has_a_strict_policy_and_refuses_a_form_without_its_csrf_field() {
    let rotor = Rotor::init();
    let inv = rotor.data.path().join("inventory.yaml");
    std::fs::write(&inv, SMALL_INVENTORY).unwrap();
    let d = Daemon::start(&rotor.vault_dir(), &inv);
    let token = d.token("kato-vendor", Role::Requester);

    let get = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        d.addr
    );
    let (status, headers, body) = http(d.addr, &get);
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-security-policy"),
        [
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        ]
    );
    assert_eq!(header(&headers, "x-content-type-options"), ["nosniff"]);
    assert_eq!(header(&headers, "x-frame-options"), ["DENY"]);
    assert_eq!(header(&headers, "cache-control"), ["no-store"]);
    assert!(body.contains("name=\"csrf\""), "{body}");

    // Sign-in without the form's field: 403, no session.
    let (status, headers, body) = http(
        d.addr,
        &post(d.addr, "/login", "", &format!("token={token}")),
    );
    assert_eq!(status, 403, "{body}");
    assert!(header(&headers, "set-cookie").is_empty());
    assert!(body.contains("did not sign you in"), "{body}");

    // A valid session cookie is not enough: a request without the field is refused and
    // nothing is recorded.
    let session = format!("rotor_session={token}");
    let form = "cred=a%2Fsvc_app&ticket=T-1&reason=x";
    let (status, _, body) = http(d.addr, &post(d.addr, "/checkouts", &session, form));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("security code"), "{body}");
    let wrong = format!("csrf={}&{form}", "0".repeat(64));
    let (status, _, _) = http(d.addr, &post(d.addr, "/checkouts", &session, &wrong));
    assert_eq!(status, 403);
    assert!(d.vault.checkouts(true).unwrap().is_empty());
    // And each refusal is in the audit log, with its status.
    let log = d
        .vault
        .audit_log(&rotor::store::audit::Filter::default())
        .unwrap();
    let calls: Vec<String> = log
        .iter()
        .filter(|r| r.event == "api_call")
        .map(|r| format!("{} {}", r.actor, serde_json::to_string(&r.fields).unwrap()))
        .collect();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("kato-vendor ") && c.contains("\"status\":403")),
        "{calls:#?}"
    );
}

/// Saves the page as `target/screenshots/web-NAME.png`.
async fn shot(c: &Client, name: &str) -> PathBuf {
    crate::browser::screenshot(c, &format!("web-{name}.png")).await
}

async fn sign_in(c: &Client, base: &str, token: &str) {
    c.goto(base).await.unwrap();
    find(c, "#token").await.send_keys(token).await.unwrap();
    find(c, "form[action='/login'] button")
        .await
        .click()
        .await
        .unwrap();
    find(c, ".who").await;
}

#[test]
fn request_approve_in_a_second_session_claim_and_check_in_in_chromium() {
    let lab = Lab::start(1);
    let rotor = Rotor::init();
    let inv = lab.inventory_path();
    // A first rotation gives the account a secret of its own in the vault.
    let first = rotor.rotate_all(inv.to_str().unwrap());
    assert!(first.status.success(), "{first:?}");

    let d = Daemon::start(&rotor.vault_dir(), &inv);
    let vendor = d.token("kato-vendor", Role::Requester);
    let approver = d.token("sato-approver", Role::Approver);
    let tmp = tempfile::tempdir().unwrap();
    let driver = Driver::start(&tmp.path().join("chromedriver.log"));
    let base = d.url();

    let secret = d.rt.block_on(async {
        let engineer = browser(&driver, &tmp.path().join("profile-engineer")).await;
        let approving = browser(&driver, &tmp.path().join("profile-approver")).await;

        // The engineer signs in and asks.
        engineer.goto(&base).await.unwrap();
        find(&engineer, "#token").await;
        shot(&engineer, "1-sign-in").await;
        sign_in(&engineer, &base, &vendor).await;
        shot(&engineer, "2-dashboard").await;
        find(&engineer, "#cred")
            .await
            .select_by_value(CRED)
            .await
            .unwrap();
        find(&engineer, "#ticket")
            .await
            .send_keys("INC-4711")
            .await
            .unwrap();
        find(&engineer, "#reason")
            .await
            .send_keys("Vendor maintenance of the EMR database")
            .await
            .unwrap();
        find(&engineer, "#ttl").await.send_keys("1h").await.unwrap();
        find(&engineer, "#request button[type='submit']")
            .await
            .click()
            .await
            .unwrap();
        find(&engineer, "#mine tr[data-state='pending']").await;
        let flash = find(&engineer, ".flash").await.text().await.unwrap();
        assert!(flash.contains("waits for another person"), "{flash}");
        shot(&engineer, "3-requested").await;

        // The approver, in a session of their own, sees it and approves.
        sign_in(&approving, &base, &approver).await;
        let row = find(&approving, "#approvals tr[data-checkout='1']").await;
        let text = row.text().await.unwrap();
        assert!(
            text.contains("kato-vendor") && text.contains("INC-4711"),
            "{text}"
        );
        shot(&approving, "4-approver-sees-request").await;
        row.find(Locator::Css("form[action='/checkouts/1/approve'] button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let flash = find(&approving, ".flash").await.text().await.unwrap();
        assert!(flash.contains("You approved checkout 1"), "{flash}");
        shot(&approving, "5-approved").await;

        // The engineer reloads, sees it approved, and claims it.
        engineer.refresh().await.unwrap();
        find(&engineer, "#mine tr[data-state='approved']").await;
        shot(&engineer, "6-engineer-sees-approved").await;
        find(&engineer, "form[action='/checkouts/1/claim'] button")
            .await
            .click()
            .await
            .unwrap();
        let field = find(&engineer, "#secret").await;
        let secret = field.prop("value").await.unwrap().unwrap_or_default();
        assert!(!secret.is_empty());
        assert!(field.attr("readonly").await.unwrap().is_some());
        // The countdown shows the time left and moves.
        let countdown = find(&engineer, "#countdown").await;
        let before = countdown.text().await.unwrap();
        assert!(
            before.starts_with("59m ") || before.starts_with("1h "),
            "{before}"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = countdown.text().await.unwrap();
            if now != before {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the countdown stayed at {before}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        find(&engineer, "button[data-copy='secret']")
            .await
            .click()
            .await
            .unwrap();
        let status = find(&engineer, "#copy-status").await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while status.text().await.unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the copy button said nothing");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        shot(&engineer, "7-secret").await;

        // The secret works for the account, with the system ssh client.
        let works = tokio::task::block_in_place(|| lab.login_works("host-001", "svc_app", &secret));
        assert!(works, "the checked-out secret must log in");

        // Check-in rotates it.
        find(&engineer, "form[action='/checkouts/1/checkin'] button")
            .await
            .click()
            .await
            .unwrap();
        let flash = engineer
            .wait()
            .at_most(Duration::from_secs(180))
            .for_element(Locator::Css(".flash"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(flash.contains("Checkout 1 is checked in"), "{flash}");
        find(&engineer, "#ended tr[data-checkout='1']").await;
        shot(&engineer, "8-checked-in").await;

        // A second request, refused with a reason: closed, nothing shown.
        find(&engineer, "#cred")
            .await
            .select_by_value(CRED)
            .await
            .unwrap();
        find(&engineer, "#ticket")
            .await
            .send_keys("INC-4712")
            .await
            .unwrap();
        find(&engineer, "#reason")
            .await
            .send_keys("One more look")
            .await
            .unwrap();
        find(&engineer, "#request button[type='submit']")
            .await
            .click()
            .await
            .unwrap();
        find(
            &engineer,
            "#mine tr[data-checkout='2'][data-state='pending']",
        )
        .await;
        approving.refresh().await.unwrap();
        let row = find(&approving, "#approvals tr[data-checkout='2']").await;
        row.find(Locator::Css("input[name='reason']"))
            .await
            .unwrap()
            .send_keys("Use the change ticket, not the incident")
            .await
            .unwrap();
        row.find(Locator::Css("form.refuse button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let flash = find(&approving, ".flash").await.text().await.unwrap();
        assert!(flash.contains("You refused checkout 2"), "{flash}");
        shot(&approving, "9-refused").await;
        engineer.refresh().await.unwrap();
        let ended = find(&engineer, "#ended tr[data-checkout='2']")
            .await
            .text()
            .await
            .unwrap();
        assert!(ended.contains("closed (refused)"), "{ended}");
        assert!(
            ended.contains("Use the change ticket, not the incident (sato-approver)"),
            "{ended}"
        );
        shot(&engineer, "10-engineer-sees-refused").await;

        // Up to here, not one console error in either browser.
        for (who, c) in [("engineer", &engineer), ("approver", &approving)] {
            let errors = console_errors(c).await;
            assert!(
                errors.is_empty(),
                "console errors in the {who}'s browser: {errors:#?}"
            );
        }

        // A request the policy does not allow: a page that says why and what to do. Its
        // status (409) is all the console reports.
        find(&engineer, "#ticket")
            .await
            .send_keys("INC-4713")
            .await
            .unwrap();
        find(&engineer, "#reason")
            .await
            .send_keys("A long job")
            .await
            .unwrap();
        find(&engineer, "#ttl").await.send_keys("9h").await.unwrap();
        find(&engineer, "#request button[type='submit']")
            .await
            .click()
            .await
            .unwrap();
        let said = find(&engineer, ".flash.bad").await.text().await.unwrap();
        assert!(said.contains("max_ttl 8h"), "{said}");
        shot(&engineer, "11-refused-by-policy").await;
        let errors = console_errors(&engineer).await;
        assert!(
            errors.len() == 1 && errors[0].contains("status of 409 (Conflict)"),
            "{errors:#?}"
        );
        find(&engineer, "a[href='/']").await.click().await.unwrap();
        find(&engineer, "#request").await;

        for (who, c) in [("engineer", &engineer), ("approver", &approving)] {
            let errors = console_errors(c).await;
            assert!(
                errors.is_empty(),
                "console errors in the {who}'s browser: {errors:#?}"
            );
            // The log is really read: an error made now is in it.
            c.execute("console.error('rotor-probe')", Vec::new())
                .await
                .unwrap();
            let probe = console_errors(c).await;
            assert!(
                probe.iter().any(|m| m.contains("rotor-probe")),
                "the console log did not show a probe error: {probe:#?}"
            );
        }
        engineer.close().await.unwrap();
        approving.close().await.unwrap();
        secret
    });

    let c = d.vault.checkout(1).unwrap();
    assert_eq!((c.state, c.end), (State::Closed, Some(End::CheckIn)));
    assert!(c.rotation.is_some());
    assert!(
        !lab.login_works("host-001", "svc_app", &secret),
        "after check-in the checked-out secret must no longer work"
    );
    // Neither the secret nor a token is anywhere in the vault's files in clear (the audit
    // log of every page call included).
    let leaks = crate::support::Leaks::new([
        ("the checked-out secret", secret.as_str()),
        ("the engineer's token", vendor.as_str()),
        ("the approver's token", approver.as_str()),
    ]);
    leaks.assert_absent("the vault's files", &rotor.vault_bytes());
    drop(driver);
}

/// The first CSRF field of a page.
fn csrf_of(body: &str) -> String {
    let at = body.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    body[at..at + body[at..].find('"').unwrap()].to_owned()
}

#[test]
fn a_request_made_on_the_page_is_refused_from_the_shell_and_the_page_says_why() {
    let rotor = Rotor::init();
    let inv = rotor.data.path().join("inventory.yaml");
    std::fs::write(&inv, SMALL_INVENTORY).unwrap();
    let enroll = rotor.run_stdin(&["enroll", "a/svc_app"], "an-enrolled-secret\n");
    assert!(enroll.status.success(), "{enroll:?}");
    let d = Daemon::start(&rotor.vault_dir(), &inv);
    let session = format!("rotor_session={}", d.token("kato-vendor", Role::Requester));
    let get = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nCookie: {session}\r\n\r\n",
        d.addr
    );
    let csrf = csrf_of(&http(d.addr, &get).2);
    let form = format!("csrf={csrf}&cred=a%2Fsvc_app&ticket=T-7&reason=db");
    let (status, headers, _) = http(d.addr, &post(d.addr, "/checkouts", &session, &form));
    assert_eq!(status, 303);
    assert_eq!(header(&headers, "location"), ["/?m=requested&id=1"]);

    // Without a reason clap refuses; with one, the operator (root, not the requester) can.
    let bare = rotor.run(&["refuse", "1"]);
    assert_eq!(bare.status.code(), Some(2), "{bare:?}");
    let out = rotor.run(&["refuse", "1", "--reason", "Use the change ticket"]);
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("Refused checkout 1 of a/svc_app"), "{said}");
    let again = rotor.run(&["refuse", "1", "--reason", "twice"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not pending"),
        "{again:?}"
    );

    let (_, _, body) = http(d.addr, &get);
    assert!(body.contains("closed (refused)"), "{body}");
    assert!(body.contains("Use the change ticket (root)"), "{body}");
}

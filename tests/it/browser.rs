//! Headless Chromium for the tests that look at a page (the checkout page in `web`, the scan
//! report in `scan_report`): chromedriver started on a free loopback port and stopped by its
//! process group, one browser session per profile, the console's errors, screenshots in
//! `target/screenshots/`.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};

/// Chromedriver on a free loopback port, stopped by its PID when dropped.
pub struct Driver {
    child: Child,
    pub port: u16,
}

impl Driver {
    pub fn start(log: &Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // A process group of its own: the browsers it starts are in it too, so a test that
        // fails before closing its sessions still stops them (see `Drop`).
        let child = Command::new("/usr/bin/chromedriver")
            .process_group(0)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start /usr/bin/chromedriver (Debian package chromium-driver)");
        Driver { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group's id is the driver's pid: only what this test started.
        crate::support::kill_group(&mut self.child);
    }
}

/// Chromedriver's log of the browser's console since the last call (`goog:loggingPrefs`).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}

/// One browser session of its own (a fresh profile), through the driver.
pub async fn browser(driver: &Driver, profile: &Path) -> Client {
    let caps = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--window-size=1280,1100",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
        "goog:loggingPrefs": { "browser": "ALL" },
    });
    let caps = match caps {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    };
    let url = format!("http://127.0.0.1:{}", driver.port);
    // The driver takes a moment to listen: poll until it answers, with a deadline.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(c) => return c,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("chromedriver on port {} never answered: {e}", driver.port),
        }
    }
}

/// Waits for `css` to be on the page (the WebDriver wait polls with its own deadline).
pub async fn find(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| {
            panic!("`{css}` never appeared: {e}");
        })
}

/// Saves what the window shows as `target/screenshots/FILE`.
pub async fn screenshot(c: &Client, file: &str) -> PathBuf {
    let path = screenshots_dir().join(file);
    std::fs::write(&path, c.screenshot().await.unwrap()).unwrap();
    path
}

/// Saves the whole page, however long, as `target/screenshots/FILE`: the viewport is made
/// as tall as the document (DevTools' device metrics), shot, and set back.
pub async fn full_page_screenshot(c: &Client, file: &str) -> PathBuf {
    let metrics = c
        .issue_cmd(Cdp::new("Page.getLayoutMetrics", serde_json::json!({})))
        .await
        .unwrap();
    let size = &metrics["cssContentSize"];
    let width = size["width"].as_f64().expect("a content width").ceil();
    let height = size["height"].as_f64().expect("a content height").ceil();
    c.issue_cmd(Cdp::new(
        "Emulation.setDeviceMetricsOverride",
        serde_json::json!({
            "width": width as u64,
            "height": height as u64,
            "deviceScaleFactor": 1,
            "mobile": false,
        }),
    ))
    .await
    .unwrap();
    let path = screenshot(c, file).await;
    c.issue_cmd(Cdp::new(
        "Emulation.clearDeviceMetricsOverride",
        serde_json::json!({}),
    ))
    .await
    .unwrap();
    path
}

/// Renders the page as for paper (`@media print`) or, with `None`, for the screen again.
pub async fn emulate_media(c: &Client, media: Option<&str>) {
    c.issue_cmd(Cdp::new(
        "Emulation.setEmulatedMedia",
        serde_json::json!({ "media": media.unwrap_or_default() }),
    ))
    .await
    .unwrap();
}

/// `target/screenshots/`, made if missing.
pub fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One DevTools command through chromedriver (`goog/cdp/execute`).
#[derive(Debug)]
struct Cdp {
    body: String,
}

impl Cdp {
    fn new(cmd: &str, params: serde_json::Value) -> Cdp {
        Cdp {
            body: serde_json::json!({ "cmd": cmd, "params": params }).to_string(),
        }
    }
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.body.clone()))
    }
}

/// Every console entry of level SEVERE (errors, CSP violations, failed loads) since the
/// last call.
pub async fn console_errors(c: &Client) -> Vec<String> {
    let log = c.issue_cmd(BrowserLog).await.unwrap();
    log.as_array()
        .expect("chromedriver's log is a list")
        .iter()
        .filter(|e| e["level"] == "SEVERE")
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

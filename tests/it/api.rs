//! The daemon's HTTP API against a real sshd host: the server runs in this process (the
//! `rotor` library, a tokio runtime, `127.0.0.1:0`), the vault is opened in-process, and every
//! call goes over HTTP with bearer tokens. A first rotation is started through the API; then
//! the full break-glass checkout with two people (a requester and an approver), the claimed
//! secret proved with the system `ssh` client, the check-in that rotates it, and the audit
//! log read with an admin token, naming the tokens as actors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rotor::ops::{Actor, Context};
use rotor::server::{Loaded, Shared};
use rotor::store::{KeySource, Role, Vault};
use serde_json::Value;

use crate::lab::Lab;

const CRED: &str = "host-001/svc_app";

/// The daemon in this process, on a loopback port of its own.
struct Daemon {
    base: String,
    agent: ureq::Agent,
    vault: Arc<Vault>,
    stop: tokio::sync::watch::Sender<bool>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    rt: tokio::runtime::Runtime,
    _data: tempfile::TempDir,
}

impl Daemon {
    fn start(lab: &Lab) -> Daemon {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("vault");
        let vault = Arc::new(Vault::init(&dir, KeySource::default_file(&dir)).unwrap());
        let path = rotor::store::check_trusted_file("inventory", &lab.inventory_path()).unwrap();
        let inventory = rotor::inventory::load(&path).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let ctx = Context::for_vault(
            vault.clone(),
            Arc::new(rotor::clock::SystemClock),
            rt.handle().clone(),
        );
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared::new(
            ctx,
            vault.clone(),
            Loaded { inventory, path },
            Duration::from_secs(60),
            stopping,
        ));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let tls = rotor::server::tls::listen_policy(addr, None, None).unwrap();
        assert!(tls.is_none(), "loopback is served plain");
        let shutdown = shared.shutdown();
        let server = rt.spawn(rotor::server::serve(listener, tls, shared, shutdown));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Daemon {
            base: format!("http://{addr}"),
            agent,
            vault,
            stop,
            server: Some(server),
            rt,
            _data: data,
        }
    }

    fn token(&self, name: &str, role: Role) -> String {
        let (_, token) = self
            .vault
            .token_create(
                &Actor::named("api-test"),
                name,
                role,
                Duration::from_secs(3600),
            )
            .unwrap();
        token.expose().to_owned()
    }

    /// One call; the status and the JSON answer.
    fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {token}");
        let response = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("Authorization", &auth).call(),
            (_, body) => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or(Value::Null).to_string()),
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        assert_eq!(
            response.headers()["cache-control"],
            "no-store",
            "{method} {path}"
        );
        let text = response.body_mut().read_to_string().unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json)
    }

    /// The value of one series on `/metrics` (no token needed there).
    fn metric(&self, series: &str) -> f64 {
        let mut response = self
            .agent
            .get(format!("{}/metrics", self.base))
            .call()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let text = response.body_mut().read_to_string().unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} missing:\n{text}"))
    }

    /// Polls a rotation job until it finishes (a deadline, no sleeps of fixed length).
    fn wait_for_job(&self, token: &str, id: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, doc) = self.call("GET", &format!("/api/v1/rotations/{id}"), token, None);
            assert_eq!(status, 200, "{doc:#}");
            if doc["job"]["state"] != "running" {
                return doc["job"].clone();
            }
            assert!(Instant::now() < deadline, "job {id} still running: {doc:#}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(server) = self.server.take() {
            let _ = self.rt.block_on(server);
        }
    }
}

#[test]
fn the_full_checkout_flow_works_over_http_with_two_tokens() {
    let lab = Lab::start(1);
    let daemon = Daemon::start(&lab);
    let admin = daemon.token("ops-admin", Role::Admin);
    let alice = daemon.token("alice", Role::Requester);
    let bob = daemon.token("bob", Role::Approver);

    // The post-incident trigger: a rotation of a scope, with a reason, in the background.
    let (status, started) = daemon.call(
        "POST",
        "/api/v1/rotations",
        &admin,
        Some(serde_json::json!({ "scope": ["group:lab"], "reason": "INC-42" })),
    );
    assert_eq!(status, 202, "{started:#}");
    let job = daemon.wait_for_job(&admin, started["job"]["id"].as_u64().unwrap());
    assert_eq!(job["state"], "finished", "{job:#}");
    assert_eq!(job["report"]["counts"]["committed"], 2, "{job:#}");
    assert_eq!(job["by"], "ops-admin");
    assert_eq!(
        daemon.metric("rotor_rotations_total{policy=\"default\",result=\"committed\"}"),
        2.0
    );

    // Alice asks (approval is required by default); she cannot approve it herself.
    let (status, asked) = daemon.call(
        "POST",
        "/api/v1/checkouts",
        &alice,
        Some(serde_json::json!({
            "credential": CRED,
            "ticket": "INC-4711",
            "reason": "vendor maintenance",
            "ttl": "1h",
            "for": "kato-vendor",
        })),
    );
    assert_eq!(status, 202, "{asked:#}");
    assert!(asked.get("secret").is_none(), "{asked:#}");
    let id = asked["checkout"]["id"].as_i64().unwrap();
    let (status, own) = daemon.call(
        "POST",
        &format!("/api/v1/checkouts/{id}/approve"),
        &alice,
        None,
    );
    assert_eq!(
        (status, own["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );

    // Bob approves; only Alice may claim, once.
    let (status, approved) = daemon.call(
        "POST",
        &format!("/api/v1/checkouts/{id}/approve"),
        &bob,
        None,
    );
    assert_eq!(status, 200, "{approved:#}");
    let (status, stolen) =
        daemon.call("POST", &format!("/api/v1/checkouts/{id}/claim"), &bob, None);
    assert_eq!(
        (status, stolen["error"]["code"].as_str()),
        (403, Some("refused"))
    );
    let (status, claimed) = daemon.call(
        "POST",
        &format!("/api/v1/checkouts/{id}/claim"),
        &alice,
        None,
    );
    assert_eq!(status, 200, "{claimed:#}");
    let secret = claimed["secret"].as_str().unwrap().to_owned();
    assert!(lab.login_works("host-001", "svc_app", &secret));
    let (status, again) = daemon.call(
        "POST",
        &format!("/api/v1/checkouts/{id}/claim"),
        &alice,
        None,
    );
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (403, Some("refused"))
    );
    assert!(!again.to_string().contains(&secret));

    // Status shows it checked out, without the secret.
    let (status, st) = daemon.call("GET", "/api/v1/status", &alice, None);
    assert_eq!(status, 200);
    assert!(!st.to_string().contains(&secret));
    let row = st["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cred"] == CRED)
        .unwrap();
    assert_eq!(row["checkout"], id, "{st:#}");
    assert_eq!(daemon.metric("rotor_checkouts{state=\"open\"}"), 1.0);

    // Check-in rotates: the checked-out secret stops working.
    let (status, ended) = daemon.call(
        "POST",
        &format!("/api/v1/checkouts/{id}/checkin"),
        &alice,
        None,
    );
    assert_eq!(status, 200, "{ended:#}");
    assert_eq!(ended["rotated"], true, "{ended:#}");
    assert_eq!(ended["checkout"]["state"], "closed", "{ended:#}");
    assert!(!lab.login_works("host-001", "svc_app", &secret));
    assert_eq!(
        daemon.metric("rotor_rotations_total{policy=\"default\",result=\"committed\"}"),
        3.0
    );
    assert_eq!(daemon.metric("rotor_checkouts{state=\"open\"}"), 0.0);

    // The audit log, read with the admin token: the steps and the API calls, the tokens'
    // names as actors; a requester or an approver may not read it.
    let (status, _) = daemon.call("GET", "/api/v1/audit", &bob, None);
    assert_eq!(status, 403);
    let (status, log) = daemon.call("GET", "/api/v1/audit?ticket=INC-4711", &admin, None);
    assert_eq!(status, 200, "{log:#}");
    let steps: Vec<(String, String)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_owned(),
                e["event"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (actor, event) in [
        ("alice", "checkout_requested"),
        ("bob", "checkout_approved"),
        ("alice", "checkout_granted"),
    ] {
        assert!(
            steps.iter().any(|(a, e)| a == actor && e == event),
            "{actor} {event}: {steps:?}"
        );
    }
    let (_, calls) = daemon.call("GET", "/api/v1/audit", &admin, None);
    let calls = calls["entries"].as_array().unwrap();
    let called = |actor: &str, path: &str, status: u16| {
        calls.iter().any(|e| {
            e["event"] == "api_call"
                && e["actor"] == actor
                && e["fields"]["path"] == path
                && e["fields"]["status"] == status
        })
    };
    assert!(called("ops-admin", "/api/v1/rotations", 202));
    assert!(called(
        "alice",
        &format!("/api/v1/checkouts/{id}/approve"),
        403
    ));
    assert!(called(
        "bob",
        &format!("/api/v1/checkouts/{id}/approve"),
        200
    ));
    assert!(called(
        "alice",
        &format!("/api/v1/checkouts/{id}/checkin"),
        200
    ));
    assert!(called("bob", "/api/v1/audit", 403));
    assert!(
        !serde_json::to_string(calls).unwrap().contains(&secret),
        "no secret in the audit log"
    );
}

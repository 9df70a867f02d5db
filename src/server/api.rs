//! The HTTP API under `/api/v1/`, with `/health` and `/metrics`: thin handlers over `ops`.
//!
//! | method and path | role | what |
//! |---|---|---|
//! | `GET /health` | none | 200 `{"status":"ok"}`; 503 `{"status":"unhealthy"}` once no scheduler pass completed for 2 ticks, or while stopping |
//! | `GET /metrics` | none | Prometheus text (counts only: no names, no secrets) |
//! | `GET /api/v1/status` | any | every credential as `rotor status --output json` (no secrets) |
//! | `POST /api/v1/rotations` | admin | `{"scope": "group:emr" or [..], "reason": "INC-42", "include_checked_out": false, "breach": false}`: 202, a job runs recovery then the rotation in the background |
//! | `GET /api/v1/rotations`, `GET /api/v1/rotations/{id}` | admin | the last 50 jobs, running or finished (with the run's report) |
//! | `GET /api/v1/checkouts[?all=true]` | any | active (or all) checkouts; a requester sees only their own |
//! | `POST /api/v1/checkouts` | any | `{"credential", "ticket", "reason", "ttl": "4h", "for"}`: 202 waiting for approval, or 201 with the secret once |
//! | `POST /api/v1/checkouts/{id}/approve` | approver | never by the requester (or the `for` engineer): the vault refuses, 403 `refused` |
//! | `POST /api/v1/checkouts/{id}/refuse` | approver | body `{"reason": "..."}`; a pending request only, never by its requester |
//! | `POST /api/v1/checkouts/{id}/claim` | any | the requester, once approved: the secret, once |
//! | `POST /api/v1/checkouts/{id}/checkin` | any | the vault decides who; rotates the credential now (may take seconds) |
//! | `GET /api/v1/audit?since=&until=&cred=&actor=&ticket=&limit=` | admin | the audit log, filtered as `rotor audit log` (the last `limit`, default 1000) |
//!
//! A token is `Authorization: Bearer TOKEN` (`rotor token create --role ...`); its name is the
//! actor every operation and audit entry records. Every `/api/v1/` call, refused ones
//! included (401 too), is recorded in the audit log (`api_call`: method, path, status,
//! token). `/health` and `/metrics` are probes scraped every few seconds: they are not
//! recorded (they would drown the log) and need no token (they say nothing secret).
//!
//! Errors are `{"error": {"code": CODE, "message": "..."}}`; the codes are stable:
//!
//! | status | code | meaning |
//! |---|---|---|
//! | 400 | `bad_request` | the body, a path or a query parameter is malformed or missing a field |
//! | 401 | `unauthenticated` | no token, or one unknown, revoked or expired |
//! | 403 | `forbidden` | the token's role is below the route's |
//! | 403 | `refused` | a rule said no: dual control, claim by another, not approved yet, already claimed, checked out |
//! | 404 | `not_found` | no such checkout, credential, rotation or job |
//! | 409 | `conflict` | the credential is busy: a rotation open or stuck, parked, its lease held |
//! | 413 | `too_large` | a body over 64 KiB |
//! | 503 | `unavailable` | the daemon is stopping, or the vault cannot be written |
//! | 500 | `internal` | anything else (the daemon's log says what) |
//!
//! Invariants: a secret crosses JSON only in a grant (`POST /checkouts` needing no approval)
//! and a claim, through an explicit `expose()`; never in an error or a log line. Every answer
//! carries `Cache-Control: no-store`. Handlers run `ops` (blocking) in `spawn_blocking`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Shared;
use super::auth::{self, AuthError, Principal, Role};
use crate::credential::CredentialId;
use crate::engine::ledger::StoreFailureKind;
use crate::ops::checkout::{CheckoutRequest, Requested};
use crate::ops::rotate::{RotateRequest, Rotated};
use crate::ops::{self, OpsError};
use crate::secret::Secret;
use crate::store::StoreError;
use crate::store::audit::{Filter, parse_time};

/// The largest request body read (a checkout request is a few hundred bytes).
pub const BODY_LIMIT: usize = 64 * 1024;
/// Rotation jobs kept in memory for `GET /api/v1/rotations`.
pub const KEPT_JOBS: usize = 50;
/// Audit entries answered when the query sets no `limit`.
const DEFAULT_AUDIT_LIMIT: usize = 1000;

/// `/health`, `/metrics` and `/api/v1/*`. The API routes pass through [`guard`]: the token,
/// the audit record and `Cache-Control: no-store`.
pub fn routes(shared: &Arc<Shared>) -> Router<Arc<Shared>> {
    let api = Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/rotations", get(rotations).post(start_rotation))
        .route("/api/v1/rotations/{id}", get(rotation))
        .route("/api/v1/checkouts", get(checkouts).post(request_checkout))
        .route("/api/v1/checkouts/{id}/approve", post(approve))
        .route("/api/v1/checkouts/{id}/refuse", post(refuse))
        .route("/api/v1/checkouts/{id}/claim", post(claim))
        .route("/api/v1/checkouts/{id}/checkin", post(checkin))
        .route("/api/v1/audit", get(audit))
        // Below the named routes (matchit prefers them): an unknown API path is a JSON 404,
        // authenticated and audited like any other call.
        .route("/api/v1/{*rest}", any(unknown))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(shared.clone(), guard));
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .layer(middleware::map_response(no_store))
        .merge(api)
}

/// An API error: a status, a stable code, a message saying what to do (never a secret).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// An error the caller cannot act on: logged whole, answered in general words (vault
    /// messages name files and SQL that a requester's token need not see).
    fn internal(message: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %message, "API call failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the daemon failed to answer; its log says why",
        )
    }

    /// A body the JSON extractor refused: too large, not JSON, or missing a field.
    fn from_json(rejection: JsonRejection) -> ApiError {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the request body is over {BODY_LIMIT} bytes"),
            );
        }
        ApiError::bad_request(rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"rotor\""),
            );
        }
        response
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        match e {
            AuthError::Missing | AuthError::Invalid => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string())
            }
            AuthError::Forbidden { .. } => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string())
            }
            AuthError::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Refused(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "refused", e.to_string())
            }
            StoreError::UnknownCheckout(_)
            | StoreError::UnknownCredential(_)
            | StoreError::UnknownRotation(_)
            | StoreError::UnknownRun(_) => ApiError::not_found(e.to_string()),
            StoreError::RotationOpen(..)
            | StoreError::Stuck(..)
            | StoreError::Parked { .. }
            | StoreError::LeaseLost { .. } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            StoreError::Unwritable(_) => ApiError::unavailable(
                "the vault cannot be written (disk full or failing): an operator must free space; nothing was changed",
            ),
            // A checkout's inventory that is no longer trusted, and the like: the message
            // names the file and the fix, which the operator asking needs.
            StoreError::UnsafePath { .. } => {
                ApiError::new(StatusCode::FORBIDDEN, "refused", e.to_string())
            }
            e => ApiError::internal(e),
        }
    }
}

impl From<OpsError> for ApiError {
    fn from(e: OpsError) -> ApiError {
        match e {
            OpsError::Store(e) => e.into(),
            OpsError::Engine(f) => match f.kind {
                StoreFailureKind::RotationOpen
                | StoreFailureKind::Stuck
                | StoreFailureKind::Parked
                | StoreFailureKind::LeaseLost => {
                    ApiError::new(StatusCode::CONFLICT, "conflict", f.message)
                }
                _ => ApiError::internal(f.message),
            },
        }
    }
}

/// Runs blocking work (the vault, an operation) off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(ApiError::internal(format!("a worker thread failed: {e}"))))
}

/// Every answer may hold a secret or a state that changes: no cache keeps it.
async fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Authenticates the call's token (the principal is handed to the handler as an
/// extension), runs the handler, and records the call with the status answered, before the
/// caller sees the answer.
async fn guard(State(shared): State<Arc<Shared>>, mut req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(auth::bearer)
        .map(|t| Secret::new(t.to_owned()));
    let vault = shared.vault.clone();
    let who = blocking(move || {
        // The token goes only to the vault's keyed-hash lookup.
        auth::authenticate(&vault, token.as_ref().map(Secret::expose)).map_err(ApiError::from)
    })
    .await;
    let (principal, response) = match who {
        Ok(p) => {
            req.extensions_mut().insert(p.clone());
            (Some(p), next.run(req).await)
        }
        Err(e) => (None, e.into_response()),
    };
    let status = response.status().as_u16();
    let audited = shared.clone();
    let _ = tokio::task::spawn_blocking(move || {
        audited.audit_call(principal.as_ref(), &method, &path, status);
    })
    .await;
    no_store(response).await
}

async fn unknown(Path(rest): Path<String>) -> ApiError {
    let shown: String = crate::text::escape(&rest).chars().take(80).collect();
    ApiError::not_found(format!(
        "no API route /api/v1/{shown}: see the API section of the README for the routes"
    ))
}

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let stopping = shared.is_stopping();
    let healthy = !stopping && shared.health.healthy();
    let body = json!({
        "status": if healthy { "ok" } else { "unhealthy" },
        "stopping": stopping,
        "since_last_pass_secs": shared.health.since_last_pass().as_secs(),
        "tick_secs": shared.health.tick.as_secs(),
    });
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let answer = blocking(move || {
        let loaded = shared.loaded();
        let status = ops::status::status(&shared.ctx, Some(&loaded.inventory))?;
        Ok(shared.metrics.render(&status))
    })
    .await;
    match answer {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            )],
            text,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn status(State(shared): State<Arc<Shared>>) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let loaded = shared.loaded();
        let status = ops::status::status(&shared.ctx, Some(&loaded.inventory))?;
        Ok(Json(status.to_json()))
    })
    .await
}

/// One scope or several, as written for `rotor rotate --scope`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scopes {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRotation {
    scope: Scopes,
    reason: String,
    #[serde(default)]
    include_checked_out: bool,
    /// The incident profile (`rotor rotate --breach`).
    #[serde(default)]
    breach: bool,
}

/// The longest reason recorded.
const MAX_REASON: usize = 500;

async fn start_rotation(
    State(shared): State<Arc<Shared>>,
    Extension(p): Extension<Principal>,
    body: Result<Json<StartRotation>, JsonRejection>,
) -> Result<Response, ApiError> {
    auth::require(&p, Role::Admin)?;
    let Json(body) = body.map_err(ApiError::from_json)?;
    if shared.is_stopping() {
        return Err(ApiError::unavailable(
            "the daemon is stopping: no new rotation starts; send it again to the next one",
        ));
    }
    let reason = body.reason.trim();
    if reason.is_empty() {
        return Err(ApiError::bad_request(
            "a rotation needs a \"reason\" (an incident or ticket number): it is recorded with the run",
        ));
    }
    if reason.chars().count() > MAX_REASON {
        return Err(ApiError::bad_request(format!(
            "the \"reason\" is over {MAX_REASON} characters: give the ticket, not its text"
        )));
    }
    let scopes = match body.scope {
        Scopes::One(s) => vec![s],
        Scopes::Many(v) => v,
    };
    if scopes.is_empty() {
        return Err(ApiError::bad_request(
            "say what to rotate: \"scope\": \"all\", \"host:NAME\", \"group:NAME\", \"account:NAME\", \"directory:NAME\" or \"cred:HOST/ACCOUNT\" (or a list of them); names take globs (\"host:emr-*\"), a string may hold a comma list, and \"!host:NAME\" excludes",
        ));
    }
    // The inventory in force now; the job keeps it even if SIGHUP replaces it meanwhile.
    let loaded = shared.loaded();
    let (selection, label) = ops::rotate::select(&loaded.inventory, &scopes)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let job = shared.jobs.start(
        shared.ctx.clock.now(),
        &label,
        reason,
        auth::actor(&p).as_str(),
    )?;
    let answer = shared.jobs.json(job).unwrap_or(Value::Null);
    let reason = reason.to_owned();
    let actor = auth::actor(&p);
    let include_checked_out = body.include_checked_out || body.breach;
    let breach = body.breach;
    let runner = shared.clone();
    let rotation = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let req = RotateRequest {
            reason,
            actor,
            include_checked_out,
            breach,
            ..RotateRequest::new(&loaded.inventory, selection, label)
        };
        let result = ops::rotate::rotate(&runner.ctx, req, runner.shutdown());
        if let Ok(done) = &result {
            count_rotations(&runner, &done.report, started);
        }
        result.map_err(|e| e.to_string())
    });
    // A rotation that panicked still ends its job: as failed, not running forever.
    let recorder = shared.clone();
    tokio::spawn(async move {
        let result = rotation
            .await
            .unwrap_or_else(|e| Err(format!("the rotation task failed: {e}")));
        recorder.jobs.finish(job, recorder.ctx.clock.now(), result);
    });
    let location =
        HeaderValue::from_str(&format!("/api/v1/rotations/{job}")).map_err(ApiError::internal)?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(json!({ "job": answer })),
    )
        .into_response())
}

/// Counts a run's rotations in the metrics: by the policy of the inventory in force (a
/// credential it no longer lists counts under `none`) and outcome.
pub(crate) fn count_rotations(
    shared: &Shared,
    report: &crate::report::RunReport,
    started: Instant,
) {
    let loaded = shared.loaded();
    for r in &report.results {
        let policy = loaded.inventory.policy_name_for(&r.cred).unwrap_or("none");
        shared.metrics.rotation(policy, r.outcome.label());
    }
    shared.metrics.run_duration(started.elapsed().as_secs_f64());
}

async fn rotations(
    State(shared): State<Arc<Shared>>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    auth::require(&p, Role::Admin)?;
    Ok(Json(json!({ "jobs": shared.jobs.list() })))
}

async fn rotation(
    State(shared): State<Arc<Shared>>,
    Extension(p): Extension<Principal>,
    id: Result<Path<u64>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    auth::require(&p, Role::Admin)?;
    let Path(id) = id.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let job = shared.jobs.json(id).ok_or_else(|| {
        ApiError::not_found(format!(
            "no rotation job {id}: the daemon keeps the last {KEPT_JOBS} since it started (`GET /api/v1/rotations`)"
        ))
    })?;
    Ok(Json(json!({ "job": job })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListCheckouts {
    #[serde(default)]
    all: bool,
}

async fn checkouts(
    State(shared): State<Arc<Shared>>,
    Extension(p): Extension<Principal>,
    query: Result<Query<ListCheckouts>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    // Approvers must see the requests waiting for them; a requester sees their own only
    // (others' tickets and reasons are not theirs to read).
    let own_only = p.role < Role::Approver;
    let person = auth::actor(&p).person().to_owned();
    blocking(move || {
        let all = ops::checkout::list(&shared.ctx, query.all)?;
        let rows: Vec<Value> = all
            .iter()
            .filter(|c| !own_only || c.requester == person)
            .map(ops::checkout::json)
            .collect();
        Ok(Json(json!({
            "schema_version": crate::report::SCHEMA_VERSION,
            "checkouts": rows,
        })))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCheckoutBody {
    credential: String,
    ticket: String,
    reason: String,
    ttl: Option<String>,
    #[serde(rename = "for")]
    for_name: Option<String>,
}

/// The one place a granted or claimed secret enters JSON: on purpose, for the caller who
/// may see it, in the answer only (never logged; `no-store` keeps caches from it).
fn grant(c: &crate::store::CheckoutRecord, secret: &Secret) -> Value {
    json!({ "checkout": ops::checkout::json(c), "secret": secret.expose() })
}

async fn request_checkout(
    State(shared): State<Arc<Shared>>,
    Extension(p): Extension<Principal>,
    body: Result<Json<NewCheckoutBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(ApiError::from_json)?;
    let cred = CredentialId::parse(&body.credential)
        .map_err(|e| ApiError::bad_request(format!("\"credential\": {e}")))?;
    let ttl = body
        .ttl
        .as_deref()
        .map(|t| {
            crate::inventory::parse_age(t).map_err(|why| {
                ApiError::bad_request(format!(
                    "\"ttl\": `{t}` {why}: write a number and a unit, e.g. 90m, 4h or 1d"
                ))
            })
        })
        .transpose()?;
    let actor = auth::actor(&p);
    blocking(move || {
        let loaded = shared.loaded();
        let req = CheckoutRequest {
            inventory: &loaded.inventory,
            inventory_path: &loaded.path,
            cred,
            ticket: body.ticket,
            reason: body.reason,
            ttl,
            for_name: body.for_name,
            actor,
        };
        Ok(match ops::checkout::checkout(&shared.ctx, req)? {
            Requested::Granted(c, secret) => {
                (StatusCode::CREATED, Json(grant(&c, &secret))).into_response()
            }
            Requested::Waiting(c) => (
                StatusCode::ACCEPTED,
                Json(json!({ "checkout": ops::checkout::json(&c) })),
            )
                .into_response(),
        })
    })
    .await
}

fn checkout_id(id: Result<Path<i64>, PathRejection>) -> Result<i64, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(id)
}

async fn approve(
    State(shared): State<Arc<Shared>>,
    Extension(p): Extension<Principal>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    auth::require(&p, Role::Approver)?;
    let id = checkout_id(id)?;
    let actor = auth::actor(&p);
    blocking(move || {
        let c = ops::checkout::approve(&shared.ctx, &actor, id)?;
        Ok(Json(json!({ "checkout": ops::checkout::json(&c) })))
    })
    .await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RefuseBody {
    reason: String,
}

async fn refuse(
    State(shared): State<Arc<Shared>>,
    Extension(p): Extension<Principal>,
    id: Result<Path<i64>, PathRejection>,
    body: Result<Json<RefuseBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    auth::require(&p, Role::Approver)?;
    let id = checkout_id(id)?;
    let Json(body) = body.map_err(ApiError::from_json)?;
    let actor = auth::actor(&p);
    blocking(move || {
        let c = ops::checkout::refuse(&shared.ctx, &actor, id, &body.reason)?;
        Ok(Json(json!({ "checkout": ops::checkout::json(&c) })))
    })
    .await
}

async fn claim(
    State(shared): State<Arc<Shared>>,
    Extension(p): Extension<Principal>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = checkout_id(id)?;
    let actor = auth::actor(&p);
    blocking(move || {
        let (c, secret) = ops::checkout::claim(&shared.ctx, &actor, id)?;
        Ok(Json(grant(&c, &secret)))
    })
    .await
}

async fn checkin(
    State(shared): State<Arc<Shared>>,
    Extension(p): Extension<Principal>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = checkout_id(id)?;
    let actor = auth::actor(&p);
    blocking(move || {
        // The rotation that ends it runs here (seconds); SIGTERM lets it finish.
        let started = Instant::now();
        let others = p.role >= Role::Approver;
        let ended =
            ops::checkout::checkin_as_caller(&shared.ctx, &actor, others, id, shared.shutdown())?;
        if let Some(report) = &ended.report {
            count_rotations(&shared, report, started);
        }
        Ok(Json(json!({
            "checkout": ops::checkout::json(&ended.checkout),
            "rotated": ended.report.is_some() && ended.failure.is_none(),
            "failure": ended.failure,
            "report": ended.report.as_ref().map(|r| serde_json::to_value(r).unwrap_or_default()),
        })))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    since: Option<String>,
    until: Option<String>,
    cred: Option<String>,
    actor: Option<String>,
    ticket: Option<String>,
    limit: Option<usize>,
}

async fn audit(
    State(shared): State<Arc<Shared>>,
    Extension(p): Extension<Principal>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    auth::require(&p, Role::Admin)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let time = |name: &str, text: Option<&String>| {
        text.map(|t| parse_time(t).map_err(|why| ApiError::bad_request(format!("{name}: {why}"))))
            .transpose()
    };
    let since = time("since", q.since.as_ref())?;
    let until = time("until", q.until.as_ref())?;
    let cred = q
        .cred
        .as_deref()
        .map(|c| CredentialId::parse(c).map(|c| c.to_string()))
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("cred: {e}")))?;
    let filter = Filter {
        since: since.map(|t| t.start()),
        until: until.map(|t| t.end()),
        cred,
        actor: q.actor,
        ticket: q.ticket,
    };
    if let (Some(since), Some(until)) = (filter.since, filter.until)
        && since >= until
    {
        return Err(ApiError::bad_request("since must be before until"));
    }
    let limit = q.limit.unwrap_or(DEFAULT_AUDIT_LIMIT);
    blocking(move || {
        let records = shared.vault.audit_log(&filter)?;
        let n_matched = records.len();
        let kept = &records[n_matched.saturating_sub(limit)..];
        Ok(Json(json!({ "n_matched": n_matched, "entries": kept })))
    })
    .await
}

/// Rotations started through the API, the last [`KEPT_JOBS`], in memory only: a job is a
/// view of a run the vault records anyway (`runs`, the audit log).
#[derive(Default)]
pub struct Jobs {
    inner: Mutex<JobList>,
}

#[derive(Default)]
struct JobList {
    last_id: u64,
    jobs: VecDeque<Job>,
}

struct Job {
    id: u64,
    scope: String,
    reason: String,
    by: String,
    started_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    state: JobState,
}

enum JobState {
    Running,
    Finished {
        report: Value,
        interrupted: bool,
        exit_code: i32,
    },
    /// The run could not start (the vault could not be read or begin the run).
    Failed(String),
}

impl Job {
    fn json(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "scope": self.scope,
            "reason": self.reason,
            "by": self.by,
            "started_at": self.started_at.to_rfc3339(),
            "ended_at": self.ended_at.map(|t| t.to_rfc3339()),
        });
        let extra = match &self.state {
            JobState::Running => json!({ "state": "running" }),
            JobState::Finished {
                report,
                interrupted,
                exit_code,
            } => json!({
                "state": "finished",
                "interrupted": interrupted,
                "exit_code": exit_code,
                "report": report,
            }),
            JobState::Failed(why) => json!({ "state": "failed", "error": why }),
        };
        if let (Value::Object(v), Value::Object(extra)) = (&mut v, extra) {
            v.extend(extra);
        }
        v
    }
}

impl Jobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, JobList> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a job that starts now; returns its id.
    /// Records a new running job, or refuses with the one still running: one rotation
    /// started through the API at a time (each fans out to dozens of workers; a client
    /// retrying on its own timeout must not start the same incident run ten times).
    fn start(
        &self,
        now: DateTime<Utc>,
        scope: &str,
        reason: &str,
        by: &str,
    ) -> Result<u64, ApiError> {
        let mut list = self.lock();
        if let Some(running) = list
            .jobs
            .iter()
            .find(|j| matches!(j.state, JobState::Running))
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!(
                    "rotation job {} ({}, by {}) is still running: one at a time. Follow it at /api/v1/rotations/{}, and start the next when it ends",
                    running.id, running.scope, running.by, running.id
                ),
            ));
        }
        list.last_id += 1;
        let id = list.last_id;
        list.jobs.push_back(Job {
            id,
            scope: scope.to_owned(),
            reason: reason.to_owned(),
            by: by.to_owned(),
            started_at: now,
            ended_at: None,
            state: JobState::Running,
        });
        // Forget the oldest finished jobs first; a running one only if all are running.
        while list.jobs.len() > KEPT_JOBS {
            let idx = list
                .jobs
                .iter()
                .position(|j| !matches!(j.state, JobState::Running))
                .unwrap_or(0);
            list.jobs.remove(idx);
        }
        Ok(id)
    }

    fn finish(&self, id: u64, now: DateTime<Utc>, result: Result<Rotated, String>) {
        let state = match result {
            Ok(done) => JobState::Finished {
                exit_code: done.report.exit_code(),
                report: serde_json::to_value(&done.report).unwrap_or_default(),
                interrupted: done.interrupted,
            },
            Err(why) => JobState::Failed(why),
        };
        let mut list = self.lock();
        if let Some(job) = list.jobs.iter_mut().find(|j| j.id == id) {
            job.state = state;
            job.ended_at = Some(now);
        }
    }

    fn json(&self, id: u64) -> Option<Value> {
        self.lock().jobs.iter().find(|j| j.id == id).map(Job::json)
    }

    /// Newest first.
    fn list(&self) -> Vec<Value> {
        self.lock().jobs.iter().rev().map(Job::json).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use axum::body::Body;
    use tower::ServiceExt;

    use super::*;
    use crate::clock::SystemClock;
    use crate::ops::{Actor, Context};
    use crate::server::{Loaded, router};
    use crate::store::{KeySource, Vault};

    /// One host, approval required (the default), so checkouts wait for a second person.
    const INVENTORY: &str = "version: 1
hosts:
  - name: a
    address: 127.0.0.1
    host_key: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\"
    connect: { user: root, key: /k }
    accounts:
      - { name: svc_app, playbook: linux-password }
";

    struct World {
        _tmp: tempfile::TempDir,
        vault: Arc<Vault>,
        shared: Arc<Shared>,
        stop: tokio::sync::watch::Sender<bool>,
    }

    /// A real vault holding `a/svc_app`, the daemon's shared state over it (the scheduler's
    /// tick as given), and no network: nothing here reaches a host.
    fn world(tick: Duration) -> World {
        world_with(tick, INVENTORY)
    }

    fn world_with(tick: Duration, inventory: &str) -> World {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("inventory.yaml");
        std::fs::write(&file, inventory).unwrap();
        let path = crate::store::check_trusted_file("inventory", &file).unwrap();
        let inventory = crate::inventory::load(&path).unwrap();
        let dir = tmp.path().join("vault");
        let vault = Arc::new(Vault::init(&dir, KeySource::default_file(&dir)).unwrap());
        vault
            .enroll(
                &CredentialId::parse("a/svc_app").unwrap(),
                &Secret::new("the-enrolled-secret".into()),
            )
            .unwrap();
        let ctx = Context::for_vault(
            vault.clone(),
            Arc::new(SystemClock),
            tokio::runtime::Handle::current(),
        );
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared::new(
            ctx,
            vault.clone(),
            Loaded { inventory, path },
            tick,
            stopping,
        ));
        World {
            _tmp: tmp,
            vault,
            shared,
            stop,
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    struct Answer {
        status: StatusCode,
        headers: axum::http::HeaderMap,
        body: Value,
        text: String,
    }

    impl Answer {
        fn code(&self) -> &str {
            self.body["error"]["code"].as_str().unwrap_or("")
        }
    }

    impl World {
        fn token(&self, name: &str, role: Role) -> String {
            let (_, token) = self
                .vault
                .token_create(&Actor::named("setup"), name, role, HOUR)
                .unwrap();
            token.expose().to_owned()
        }

        async fn call(&self, method: &str, path: &str, token: Option<&str>, body: &str) -> Answer {
            let mut req = Request::builder().method(method).uri(path);
            if let Some(t) = token {
                req = req.header("Authorization", format!("Bearer {t}"));
            }
            if !body.is_empty() {
                req = req.header("Content-Type", "application/json");
            }
            let req = req.body(Body::from(body.to_owned())).unwrap();
            let res = router(self.shared.clone()).oneshot(req).await.unwrap();
            let status = res.status();
            let headers = res.headers().clone();
            let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
                .await
                .unwrap();
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let body = serde_json::from_str(&text).unwrap_or(Value::Null);
            Answer {
                status,
                headers,
                body,
                text,
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_without_a_valid_token_is_refused_and_audited() {
        let w = world(HOUR);
        let none = w.call("GET", "/api/v1/status", None, "").await;
        assert_eq!(none.status, StatusCode::UNAUTHORIZED, "{}", none.text);
        assert_eq!(none.code(), "unauthenticated");
        assert_eq!(none.headers["cache-control"], "no-store");
        assert!(none.headers.contains_key("www-authenticate"));
        let forged = w
            .call("GET", "/api/v1/status", Some("rotor_1_forged"), "")
            .await;
        assert_eq!(forged.status, StatusCode::UNAUTHORIZED);

        let filter = Filter {
            actor: Some("anonymous".into()),
            ..Filter::default()
        };
        let calls = w.vault.audit_log(&filter).unwrap();
        assert_eq!(calls.len(), 2, "{calls:#?}");
        let fields = serde_json::to_value(&calls[0].fields).unwrap();
        assert_eq!(calls[0].event, "api_call");
        assert_eq!(fields["status"], 401);
        assert_eq!(fields["path"], "/api/v1/status");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_revoked_token_is_refused() {
        let w = world(HOUR);
        let token = w.token("ops-dashboard", Role::Requester);
        let ok = w.call("GET", "/api/v1/status", Some(&token), "").await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
        assert_eq!(ok.body["credentials"][0]["cred"], "a/svc_app");
        assert!(!ok.text.contains("the-enrolled-secret"));
        let id = w.vault.tokens().unwrap()[0].id;
        w.vault.token_revoke(&Actor::named("setup"), id).unwrap();
        let after = w.call("GET", "/api/v1/status", Some(&token), "").await;
        assert_eq!(after.status, StatusCode::UNAUTHORIZED);
        assert_eq!(after.code(), "unauthenticated");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_route_asks_for_its_role() {
        let w = world(HOUR);
        let requester = w.token("alice", Role::Requester);
        let approver = w.token("bob", Role::Approver);
        let admin = w.token("root-admin", Role::Admin);
        let approve = w
            .call("POST", "/api/v1/checkouts/1/approve", Some(&requester), "")
            .await;
        assert_eq!(approve.status, StatusCode::FORBIDDEN, "{}", approve.text);
        assert_eq!(approve.code(), "forbidden");
        assert!(
            approve.text.contains("needs the approver role"),
            "{}",
            approve.text
        );
        let audit = w.call("GET", "/api/v1/audit", Some(&approver), "").await;
        assert_eq!(audit.status, StatusCode::FORBIDDEN);
        assert_eq!(audit.code(), "forbidden");
        let rotate = w
            .call(
                "POST",
                "/api/v1/rotations",
                Some(&approver),
                r#"{"scope":"all","reason":"INC-1"}"#,
            )
            .await;
        assert_eq!(rotate.status, StatusCode::FORBIDDEN);
        let audit = w.call("GET", "/api/v1/audit", Some(&admin), "").await;
        assert_eq!(audit.status, StatusCode::OK, "{}", audit.text);
        // The refused calls are in it, with the tokens' names as actors.
        let entries = audit.body["entries"].as_array().unwrap();
        let refused = |actor: &str, path: &str| {
            entries.iter().any(|e| {
                e["actor"] == actor && e["fields"]["path"] == path && e["fields"]["status"] == 403
            })
        };
        assert!(
            refused("alice", "/api/v1/checkouts/1/approve"),
            "{entries:#?}"
        );
        assert!(refused("bob", "/api/v1/audit"), "{entries:#?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dual_control_holds_over_the_api() {
        let w = world(HOUR);
        let bob = w.token("bob", Role::Approver);
        let carol = w.token("carol", Role::Approver);
        let alice = w.token("alice", Role::Requester);
        let asked = w
            .call(
                "POST",
                "/api/v1/checkouts",
                Some(&bob),
                r#"{"credential":"a/svc_app","ticket":"INC-7","reason":"vendor work","ttl":"1h"}"#,
            )
            .await;
        assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.text);
        assert!(asked.body.get("secret").is_none(), "{}", asked.text);
        let id = asked.body["checkout"]["id"].as_i64().unwrap();
        assert_eq!(asked.body["checkout"]["requester"], "bob");

        // The requester cannot approve their own request, even holding the approver role.
        let own = w
            .call(
                "POST",
                &format!("/api/v1/checkouts/{id}/approve"),
                Some(&bob),
                "",
            )
            .await;
        assert_eq!(own.status, StatusCode::FORBIDDEN, "{}", own.text);
        assert_eq!(own.code(), "refused");
        let own_refusal = w
            .call(
                "POST",
                &format!("/api/v1/checkouts/{id}/refuse"),
                Some(&bob),
                r#"{"reason": "no"}"#,
            )
            .await;
        assert_eq!(own_refusal.code(), "refused", "{}", own_refusal.text);
        // A requester sees only their own checkouts; an approver sees the waiting one.
        let mine = w.call("GET", "/api/v1/checkouts", Some(&alice), "").await;
        assert_eq!(mine.body["checkouts"], json!([]), "{}", mine.text);
        let waiting = w.call("GET", "/api/v1/checkouts", Some(&carol), "").await;
        assert_eq!(waiting.body["checkouts"][0]["id"], id);

        let early = w
            .call(
                "POST",
                &format!("/api/v1/checkouts/{id}/claim"),
                Some(&bob),
                "",
            )
            .await;
        assert_eq!(early.code(), "refused", "{}", early.text);
        let approved = w
            .call(
                "POST",
                &format!("/api/v1/checkouts/{id}/approve"),
                Some(&carol),
                "",
            )
            .await;
        assert_eq!(approved.status, StatusCode::OK, "{}", approved.text);
        assert_eq!(approved.body["checkout"]["approved_by"], "carol");
        let other = w
            .call(
                "POST",
                &format!("/api/v1/checkouts/{id}/claim"),
                Some(&alice),
                "",
            )
            .await;
        assert_eq!(
            other.code(),
            "refused",
            "only the requester claims: {}",
            other.text
        );
        let ended_by_other = w
            .call(
                "POST",
                &format!("/api/v1/checkouts/{id}/checkin"),
                Some(&alice),
                "",
            )
            .await;
        assert_eq!(
            ended_by_other.code(),
            "refused",
            "another requester cannot end it: {}",
            ended_by_other.text
        );
        let claimed = w
            .call(
                "POST",
                &format!("/api/v1/checkouts/{id}/claim"),
                Some(&bob),
                "",
            )
            .await;
        assert_eq!(claimed.status, StatusCode::OK, "{}", claimed.text);
        assert_eq!(claimed.body["secret"], "the-enrolled-secret");
        assert_eq!(claimed.headers["cache-control"], "no-store");
        let again = w
            .call(
                "POST",
                &format!("/api/v1/checkouts/{id}/claim"),
                Some(&bob),
                "",
            )
            .await;
        assert_eq!(again.code(), "refused", "{}", again.text);
        assert!(!again.text.contains("the-enrolled-secret"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_checkout_needing_no_approval_answers_the_secret_once() {
        let inventory = INVENTORY.replace(
            "version: 1\n",
            "version: 1\npolicies:\n  default: { checkout: { approval: none, max_ttl: 4h, default_ttl: 1h } }\n",
        );
        let w = world_with(HOUR, &inventory);
        let alice = w.token("alice", Role::Requester);
        let body = r#"{"credential":"a/svc_app","ticket":"INC-9","reason":"restore a backup"}"#;
        let granted = w
            .call("POST", "/api/v1/checkouts", Some(&alice), body)
            .await;
        assert_eq!(granted.status, StatusCode::CREATED, "{}", granted.text);
        assert_eq!(granted.body["secret"], "the-enrolled-secret");
        assert_eq!(granted.body["checkout"]["state"], "open");
        assert_eq!(granted.headers["cache-control"], "no-store");
        let id = granted.body["checkout"]["id"].as_i64().unwrap();
        let again = w
            .call(
                "POST",
                &format!("/api/v1/checkouts/{id}/claim"),
                Some(&alice),
                "",
            )
            .await;
        assert_eq!(again.code(), "refused", "{}", again.text);
        // Exclusive: a second request names the first.
        let second = w
            .call("POST", "/api/v1/checkouts", Some(&alice), body)
            .await;
        assert_eq!(second.code(), "refused", "{}", second.text);
        assert!(!second.text.contains("the-enrolled-secret"));
        let audit = w.vault.audit_log(&Filter::default()).unwrap();
        let all = serde_json::to_string(&audit).unwrap();
        assert!(
            !all.contains("the-enrolled-secret"),
            "no secret in the audit log"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn errors_are_json_with_stable_codes() {
        let w = world(HOUR);
        let admin = w.token("root-admin", Role::Admin);
        let check = |a: &Answer, status: StatusCode, code: &str| {
            assert_eq!((a.status, a.code()), (status, code), "{}", a.text);
            assert!(
                a.body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
        };
        let post = |path: &'static str, body: String| {
            let admin = admin.clone();
            let w = &w;
            async move { w.call("POST", path, Some(&admin), &body).await }
        };
        check(
            &post("/api/v1/checkouts", "{not json".into()).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        );
        check(
            &post(
                "/api/v1/rotations",
                r#"{"scope":"all","reason":"  "}"#.into(),
            )
            .await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        );
        let unknown = post(
            "/api/v1/rotations",
            r#"{"scope":["group:nope"],"reason":"INC-1"}"#.into(),
        )
        .await;
        check(&unknown, StatusCode::BAD_REQUEST, "bad_request");
        check(
            &post("/api/v1/checkouts/999/approve", String::new()).await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
        check(
            &post("/api/v1/checkouts/abc/approve", String::new()).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        );
        let huge = format!(r#"{{"scope":"all","reason":"{}"}}"#, "x".repeat(BODY_LIMIT));
        check(
            &post("/api/v1/rotations", huge).await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        );
        let nowhere = w.call("GET", "/api/v1/nowhere", Some(&admin), "").await;
        check(&nowhere, StatusCode::NOT_FOUND, "not_found");
        let job = w.call("GET", "/api/v1/rotations/5", Some(&admin), "").await;
        check(&job, StatusCode::NOT_FOUND, "not_found");
        let bad_time = w
            .call("GET", "/api/v1/audit?since=yesterday", Some(&admin), "")
            .await;
        check(&bad_time, StatusCode::BAD_REQUEST, "bad_request");
        // Stopping: no new rotation starts.
        w.stop.send(true).unwrap();
        check(
            &post(
                "/api/v1/rotations",
                r#"{"scope":"all","reason":"INC-2"}"#.into(),
            )
            .await,
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn health_says_unhealthy_once_no_pass_came_for_two_ticks_or_while_stopping() {
        let w = world(HOUR);
        let ok = w.call("GET", "/health", None, "").await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
        assert_eq!(ok.body["status"], "ok");
        w.stop.send(true).unwrap();
        let stopping = w.call("GET", "/health", None, "").await;
        assert_eq!(stopping.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(stopping.body["status"], "unhealthy");

        let w = world(Duration::from_millis(5));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let a = w.call("GET", "/health", None, "").await;
            if a.status == StatusCode::SERVICE_UNAVAILABLE {
                assert_eq!(a.body["status"], "unhealthy");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still healthy: {}",
                a.text
            );
            tokio::task::yield_now().await;
        }
    }

    /// `promtool check metrics` (Debian's `prometheus`, installed by scripts/setup) reads the
    /// text and lints its names.
    fn promtool(text: &str) -> std::process::Output {
        use std::io::Write;
        let mut child = std::process::Command::new("/usr/bin/promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run /usr/bin/promtool (apt-get install prometheus; scripts/setup does)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn metrics_are_prometheus_text_that_promtool_accepts() {
        let w = world(HOUR);
        w.shared.metrics.rotation("default", "committed");
        w.shared.metrics.rotation("default", "rolled back");
        w.shared.metrics.run_duration(12.5);
        w.shared.metrics.pass_completed(1_764_547_200);
        let a = w.call("GET", "/metrics", None, "").await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(
            a.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        let text = &a.text;
        for line in [
            r#"rotor_rotations_total{policy="default",result="committed"} 1"#,
            r#"rotor_credentials{state="ok"} 1"#,
            "rotor_credentials_stale 0",
            "rotor_run_duration_seconds_count 1",
            "rotor_last_successful_pass_timestamp_seconds 1764547200",
            r#"rotor_checkouts{state="open"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(
            !text.contains("svc_app"),
            "no per-credential labels:\n{text}"
        );
        let out = promtool(text);
        assert!(
            out.status.success(),
            "promtool: {}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // And promtool does reject what is not metrics text: the check checks.
        assert!(!promtool("rotor_broken{ 1\n").status.success());
    }

    /// A self-signed certificate for `localhost`, written as PEM files.
    fn certificate(
        dir: &std::path::Path,
    ) -> (PathBuf, PathBuf, rustls::pki_types::CertificateDer<'static>) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        (cert, key, made.cert.der().clone())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_serves_the_router_with_the_given_certificate() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let w = world(HOUR);
        let tmp = tempfile::tempdir().unwrap();
        let (cert, key, der) = certificate(tmp.path());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tls = crate::server::tls::listen_policy(addr, Some(&cert), Some(&key))
            .unwrap()
            .expect("a certificate given: TLS");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::server::serve(
            listener,
            Some(tls),
            w.shared.clone(),
            async move {
                let _ = stopped.await;
            },
        ));

        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut stream = connector.connect(name, tcp).await.unwrap();
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&answer).contains("\"status\"") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buf[..n]);
        }
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

        // A plain-HTTP client gets no answer from the TLS port.
        let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
        plain
            .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let _ = plain.read_to_end(&mut got).await;
        assert!(!String::from_utf8_lossy(&got).contains("200 OK"));

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}

//! The checkout web page at `/`, for the vendor's engineer and the approver: sign in with an
//! API token, request a checkout, see it pending or approved, claim it (the secret is shown
//! once, with a copy button and a countdown to its end), check it in; an approver sees the
//! pending requests of others and approves or refuses them.
//!
//! Plain server-rendered HTML (every outside value through [`escape_html`]) with one script
//! and one stylesheet served from `/static/` (no external resources: closed networks). Every
//! page carries a strict Content-Security-Policy ([`CSP`]: no inline script or style at all),
//! `nosniff`, `no-referrer`, `DENY` framing and `no-store`.
//!
//! The session is the token itself in the `rotor_session` cookie (`HttpOnly`,
//! `SameSite=Strict`, `Secure` when [`WebKeys::secure_cookies`] says the daemon is served over
//! TLS), checked against the vault on every request, so a revoked or expired token ends the
//! session at once. Every form carries a CSRF field: for a session, an HMAC of the token under
//! a key made at start and kept in memory ([`WebKeys`]); for the sign-in form, an HMAC of a
//! random nonce held in a `rotor_login` cookie (double submit). A cross-site
//! `Sec-Fetch-Site` is refused too. Fields are compared in constant time; a failed check is a
//! 403 page that says what to do.
//!
//! Invariant: like the API, nothing here decides a checkout. A handler resolves the session,
//! calls one `ops::checkout` function in `spawn_blocking` as the token's actor, audits the call
//! (`Shared::audit_call`), and redirects (Post/Redirect/Get) or renders. The token and the
//! secret are never logged; the secret is rendered only in the answer to the claim (or to a
//! request granted at once) that returned it.

use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::Shared;
use super::auth::{self, AuthError, Principal, Role};
use crate::checkout::State as CheckoutState;
use crate::clock::Entropy;
use crate::credential::CredentialId;
use crate::ops::OpsError;
use crate::ops::checkout::{self as ops_checkout, CheckoutRequest, Requested};
use crate::store::{CheckoutRecord, StoreError};

/// The session cookie: the API token itself.
pub const SESSION_COOKIE: &str = "rotor_session";
/// The sign-in form's nonce (double-submit CSRF before there is a session).
const LOGIN_COOKIE: &str = "rotor_login";

/// The page's Content-Security-Policy: its own script and stylesheet only, no inline code, no
/// framing, forms only to itself.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const APP_JS: &str = include_str!("web/app.js");
const APP_CSS: &str = include_str!("web/app.css");
const FAVICON: &str = include_str!("web/favicon.svg");

/// A short hash of the assets, put in their URLs: a browser may keep them a day, and a new
/// build's assets have new URLs.
static ASSET_VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut h = Sha256::new();
    for asset in [APP_JS, APP_CSS, FAVICON] {
        h.update(asset.as_bytes());
    }
    hex(&h.finalize()[..6])
});

/// The page's keys: the CSRF key (random per daemon start, never stored: a restart only
/// makes open forms stale) and whether cookies are marked `Secure`.
pub struct WebKeys {
    csrf_key: Zeroizing<[u8; 32]>,
    secure_cookies: bool,
}

impl std::fmt::Debug for WebKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebKeys")
            .field("csrf_key", &"[redacted]")
            .field("secure_cookies", &self.secure_cookies)
            .finish()
    }
}

impl WebKeys {
    /// A fresh CSRF key from `entropy`; cookies without `Secure` (plain HTTP on loopback).
    pub fn generate(entropy: &dyn Entropy) -> WebKeys {
        let mut key = Zeroizing::new([0u8; 32]);
        entropy.rng().fill_bytes(&mut key[..]);
        WebKeys {
            csrf_key: key,
            secure_cookies: false,
        }
    }

    /// Marks the cookies `Secure`: set it when the daemon is served over TLS (a browser then
    /// never sends the token over plain HTTP).
    pub fn secure_cookies(mut self, on: bool) -> WebKeys {
        self.secure_cookies = on;
        self
    }

    fn tag(&self, purpose: &str, value: &str) -> String {
        // HMAC accepts a key of any length: this cannot fail for 32 bytes.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.csrf_key[..])
            .expect("HMAC-SHA256 takes a 32-byte key");
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(value.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// The CSRF field of a session's forms: bound to its token.
    fn session_csrf(&self, token: &str) -> String {
        self.tag("rotor/web/session-csrf", token)
    }

    /// The CSRF field of the sign-in form: bound to the nonce of its cookie.
    fn login_csrf(&self, nonce: &str) -> String {
        self.tag("rotor/web/login-csrf", nonce)
    }

    /// A cookie's name as set and read: with the `__Host-` prefix when `Secure` (the
    /// browser then takes it only from this origin over HTTPS, never set by a sibling
    /// subdomain).
    fn name(&self, base: &str) -> String {
        if self.secure_cookies {
            format!("__Host-{base}")
        } else {
            base.to_owned()
        }
    }

    fn cookie(&self, name: &str, value: &str, max_age: Option<u32>) -> HeaderValue {
        let name = self.name(name);
        let mut c = format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/");
        if let Some(age) = max_age {
            let _ = write!(c, "; Max-Age={age}");
        }
        if self.secure_cookies {
            c.push_str("; Secure");
        }
        // Names are constants; values are hex or a token (`rotor_N_` and base64url): no
        // character a header value refuses.
        HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("rotor_invalid=1"))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Constant-time equality of a CSRF field with the expected one.
fn same_secret(expected: &str, given: &str) -> bool {
    expected.as_bytes().ct_eq(given.as_bytes()).into()
}

/// Text from outside (names, tickets, reasons, messages, the secret itself) made safe for
/// HTML text and for attribute values in double quotes.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

use escape_html as esc;

pub fn routes() -> axum::Router<Arc<Shared>> {
    axum::Router::new()
        .route("/", get(index))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/checkouts", post(request))
        .route("/checkouts/{id}/approve", post(approve))
        .route("/checkouts/{id}/refuse", post(refuse))
        .route("/checkouts/{id}/claim", post(claim))
        .route("/checkouts/{id}/checkin", post(checkin))
        .route("/static/app.js", get(app_js))
        .route("/static/app.css", get(app_css))
        .route("/static/favicon.svg", get(favicon))
        .layer(axum::middleware::map_response(security_headers))
}

/// The headers every answer of the page carries; pages are never stored (a secret page above
/// all), the assets set their own caching.
async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn favicon() -> Response {
    asset("image/svg+xml", FAVICON)
}

// ---------------------------------------------------------------------------------------
// Sessions, CSRF, blocking calls.

/// The value of cookie `name` among the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A signed-in person.
struct Session {
    who: Principal,
    /// The CSRF field their forms carry.
    csrf: String,
}

enum SessionState {
    /// No session cookie.
    None,
    /// A cookie whose token is unknown, revoked or expired.
    Ended,
    Active(Session),
}

/// Runs blocking work (the vault is SQLite; a check-in rotates over SSH) off the async
/// workers. A panic in it becomes a 500 page; the daemon's log has the panic.
async fn blocking<T: Send + 'static>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&Shared) -> T + Send + 'static,
) -> Result<T, Page> {
    let s = shared.clone();
    tokio::task::spawn_blocking(move || f(&s))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "a page's work panicked");
            Page::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong inside rotor",
                "rotor hit an internal error while doing this. Go back to the checkout page to see where things stand, and try again; if it happens again, tell the rotor operator (the daemon's log says more).",
            )
        })
}

async fn session(shared: &Arc<Shared>, headers: &HeaderMap) -> Result<SessionState, Page> {
    let Some(token) = cookie(headers, &shared.web.name(SESSION_COOKIE)).filter(|t| !t.is_empty())
    else {
        return Ok(SessionState::None);
    };
    let token = Zeroizing::new(token.to_owned());
    let found = blocking(shared, move |s| {
        auth::authenticate(&s.vault, Some(&token)).map(|who| Session {
            who,
            csrf: s.web.session_csrf(&token),
        })
    })
    .await?;
    match found {
        Ok(session) => Ok(SessionState::Active(session)),
        Err(AuthError::Missing | AuthError::Invalid | AuthError::Forbidden { .. }) => {
            Ok(SessionState::Ended)
        }
        Err(AuthError::Store(e)) => Err(store_trouble(&e)),
    }
}

fn store_trouble(e: &StoreError) -> Page {
    tracing::error!(error = %e, "the page cannot read the vault");
    Page::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "rotor cannot read its vault",
        // The detail (paths, SQLite's words) is for the operator's log, as the API does.
        "Try again in a moment; if it persists, tell the rotor operator (the daemon's log says why).",
    )
}

/// A browser says where a request came from: a form posted from another site is refused
/// whatever its fields (older browsers send no `Sec-Fetch-Site`; the CSRF field covers them).
fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| !matches!(site, "same-origin" | "none"))
}

fn forbidden_form() -> Page {
    Page::error(
        StatusCode::FORBIDDEN,
        "This form cannot be accepted",
        "The form was sent without its security code, with an old one, or from another site, so rotor did nothing. Go back to the checkout page, reload it, and try again.",
    )
}

/// The session of a form post, once its CSRF field matches; otherwise the 403 page (and,
/// for the audit, the principal if there was one).
async fn guarded(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<Session, (Option<Principal>, Page)> {
    let state = session(shared, headers).await.map_err(|p| (None, p))?;
    let s = match state {
        SessionState::Active(s) => s,
        SessionState::None | SessionState::Ended => {
            return Err((
                None,
                Page::error(
                    StatusCode::FORBIDDEN,
                    "You are not signed in",
                    "Your session has ended (signed out, or the token expired or was revoked), so rotor did nothing. Sign in again with your token.",
                ),
            ));
        }
    };
    if cross_site(headers) || !same_secret(&s.csrf, csrf) {
        return Err((Some(s.who), forbidden_form()));
    }
    Ok(s)
}

/// Audits a call and answers it.
fn answer(
    shared: &Shared,
    who: Option<&Principal>,
    method: &str,
    path: &str,
    res: Response,
) -> Response {
    let status = res.status().as_u16();
    // A vault write (it may wait behind another writer): off the async worker's other tasks,
    // as the API's guard does with `spawn_blocking`, so a slow vault stalls no other page or
    // `/health`. A current-thread runtime (unit tests) has no other worker to hand them to.
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(|| shared.audit_call(who, method, path, status));
    } else {
        shared.audit_call(who, method, path, status);
    }
    res
}

// ---------------------------------------------------------------------------------------
// Pages.

/// A rendered page with its status (and any cookies to set).
struct Page {
    status: StatusCode,
    title: String,
    /// The signed-in person's bar (name, role, sign-out form), if any.
    bar: Option<String>,
    body: String,
    narrow: bool,
    cookies: Vec<HeaderValue>,
}

impl Page {
    fn new(title: &str, body: String) -> Page {
        Page {
            status: StatusCode::OK,
            title: title.to_owned(),
            bar: None,
            body,
            narrow: false,
            cookies: Vec::new(),
        }
    }

    fn error(status: StatusCode, title: &str, message: &str) -> Page {
        let body = format!(
            "<section class=\"stack\"><h2>{}</h2><div class=\"flash bad\">{}</div><p><a href=\"/\">Back to the checkout page</a></p></section>",
            esc(title),
            esc(message)
        );
        Page {
            status,
            narrow: true,
            ..Page::new(title, body)
        }
    }

    fn signed_in(mut self, s: &Session) -> Page {
        self.bar = Some(format!(
            "<div class=\"who\">Signed in as <strong>{}</strong> ({})<form method=\"post\" action=\"/logout\">{}<button type=\"submit\" class=\"link\">Sign out</button></form></div>",
            esc(&s.who.name),
            s.who.role.as_str(),
            csrf_field(&s.csrf)
        ));
        self
    }

    fn into_response(self) -> Response {
        let v = &*ASSET_VERSION;
        let html = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title} · rotor</title><link rel=\"icon\" href=\"/static/favicon.svg?v={v}\" type=\"image/svg+xml\"><link rel=\"stylesheet\" href=\"/static/app.css?v={v}\"><script src=\"/static/app.js?v={v}\" defer></script></head><body><header class=\"bar\"><h1>rotor · credential checkout</h1>{bar}</header><main{narrow}>{body}</main></body></html>\n",
            title = esc(&self.title),
            bar = self.bar.unwrap_or_default(),
            narrow = if self.narrow { " class=\"narrow\"" } else { "" },
            body = self.body,
        );
        let mut res = (self.status, Html(html)).into_response();
        for c in self.cookies {
            res.headers_mut().append(header::SET_COOKIE, c);
        }
        res
    }
}

fn csrf_field(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(csrf)
    )
}

/// A time as people read it on the page (UTC, said so).
fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// "1h 05m" left until `end` (the script keeps it current).
fn left_words(end: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (end - now).num_seconds().max(0);
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else {
        format!("{m}m {s:02}s")
    }
}

fn countdown(end: DateTime<Utc>, now: DateTime<Utc>, over: &str, id: Option<&str>) -> String {
    format!(
        "<strong{} data-ends-at=\"{}\" data-over=\"{}\">{}</strong>",
        id.map(|i| format!(" id=\"{}\"", esc(i)))
            .unwrap_or_default(),
        esc(&end.to_rfc3339()),
        esc(over),
        esc(&left_words(end, now))
    )
}

/// The messages a redirect may ask for (`?m=CODE&id=N`): fixed texts, never outside text.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct Flash {
    m: String,
    id: Option<i64>,
}

fn flash_html(f: &Flash) -> String {
    let id = f.id.map(|i| i.to_string()).unwrap_or_else(|| "?".into());
    let (class, text) = match f.m.as_str() {
        "requested" => (
            "ok",
            format!(
                "Checkout {id} requested. It now waits for another person to approve it; once they have, it shows as approved below and you can claim it."
            ),
        ),
        "approved" => (
            "ok",
            format!(
                "You approved checkout {id}. Its requester can now claim it and see the secret."
            ),
        ),
        "refused" => (
            "ok",
            format!("You refused checkout {id}. It is closed; no secret was shown."),
        ),
        "checked-in" => (
            "ok",
            format!(
                "Checkout {id} is checked in: rotor changed the credential, so the secret you were shown no longer works."
            ),
        ),
        "cancelled" => (
            "ok",
            format!("Checkout {id} is cancelled. No secret was shown, so nothing had to change."),
        ),
        "closed" => ("warn", format!("Checkout {id} was already closed.")),
        "signed-out" => ("ok", "You are signed out.".to_owned()),
        _ => return String::new(),
    };
    format!(
        "<div class=\"flash {class}\" role=\"status\">{}</div>",
        esc(&text)
    )
}

fn redirect(code: &str, id: i64) -> Response {
    Redirect::to(&format!("/?m={code}&id={id}")).into_response()
}

// ---------------------------------------------------------------------------------------
// Sign in and out.

fn sign_in_page(shared: &Shared, headers: &HeaderMap, note: Option<(&str, &str)>) -> Page {
    // Reuse the nonce of an earlier visit (two tabs keep working); else make one.
    let existing = cookie(headers, &shared.web.name(LOGIN_COOKIE))
        .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned);
    let mut cookies = Vec::new();
    let nonce = existing.unwrap_or_else(|| {
        let mut raw = [0u8; 32];
        shared.ctx.entropy.rng().fill_bytes(&mut raw);
        let nonce = hex(&raw);
        cookies.push(shared.web.cookie(LOGIN_COOKIE, &nonce, Some(3600)));
        nonce
    });
    let note = note
        .map(|(class, text)| {
            format!(
                "<div class=\"flash {class}\" role=\"status\">{}</div>",
                esc(text)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<section class=\"signin\">{note}<h2>Sign in</h2>\
         <p>Sign in with your rotor token to request a checkout or to approve one.</p>\
         <form method=\"post\" action=\"/login\">{csrf}\
         <label for=\"token\">Token</label>\
         <input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"off\" required autofocus placeholder=\"rotor_…\">\
         <button type=\"submit\" class=\"primary\">Sign in</button></form>\
         <p class=\"muted small\">No token? Ask the rotor administrator: <code>rotor token create --role requester --name YOUR-NAME</code> (approvers get <code>--role approver</code>).</p>\
         </section>",
        csrf = csrf_field(&shared.web.login_csrf(&nonce)),
    );
    Page {
        cookies,
        narrow: true,
        ..Page::new("Sign in", body)
    }
}

#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct LoginForm {
    token: String,
    csrf: String,
}

async fn login(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let token = Zeroizing::new(form.token);
    let nonce_ok = cookie(&headers, &shared.web.name(LOGIN_COOKIE))
        .is_some_and(|nonce| same_secret(&shared.web.login_csrf(nonce), &form.csrf));
    if cross_site(&headers) || !nonce_ok {
        let page = Page::error(
            StatusCode::FORBIDDEN,
            "The sign-in form expired",
            "The sign-in form was too old, sent without its security code, or came from another site, so rotor did not sign you in. Open the checkout page again and sign in there.",
        );
        return answer(&shared, None, "POST", "/login", page.into_response());
    }
    let checked = {
        let token = token.clone();
        blocking(&shared, move |s| auth::authenticate(&s.vault, Some(&token))).await
    };
    let res = match checked {
        Err(page) => return answer(&shared, None, "POST", "/login", page.into_response()),
        Ok(Err(AuthError::Store(e))) => store_trouble(&e).into_response(),
        Ok(Err(_)) => {
            let mut page = sign_in_page(
                &shared,
                &headers,
                Some((
                    "bad",
                    "That token is unknown, revoked or expired. Check that you pasted all of it (it starts with rotor_), or ask the rotor administrator for a new one.",
                )),
            );
            page.status = StatusCode::UNAUTHORIZED;
            page.into_response()
        }
        Ok(Ok(who)) => {
            let mut res = Redirect::to("/").into_response();
            let h = res.headers_mut();
            h.append(
                header::SET_COOKIE,
                shared.web.cookie(SESSION_COOKIE, &token, None),
            );
            h.append(
                header::SET_COOKIE,
                shared.web.cookie(LOGIN_COOKIE, "", Some(0)),
            );
            return answer(&shared, Some(&who), "POST", "/login", res);
        }
    };
    answer(&shared, None, "POST", "/login", res)
}

#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let s = match guarded(&shared, &headers, &form.csrf).await {
        Ok(s) => s,
        Err((who, page)) => {
            return answer(
                &shared,
                who.as_ref(),
                "POST",
                "/logout",
                page.into_response(),
            );
        }
    };
    let mut res = Redirect::to("/?m=signed-out").into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        shared.web.cookie(SESSION_COOKIE, "", Some(0)),
    );
    answer(&shared, Some(&s.who), "POST", "/logout", res)
}

// ---------------------------------------------------------------------------------------
// The dashboard.

async fn index(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    flash: Result<Query<Flash>, QueryRejection>,
) -> Response {
    let flash = flash.map(|Query(f)| f).unwrap_or_default();
    let s = match session(&shared, &headers).await {
        Err(page) => return answer(&shared, None, "GET", "/", page.into_response()),
        Ok(SessionState::Active(s)) => s,
        Ok(SessionState::None) => {
            let note = (flash.m == "signed-out").then_some(("ok", "You are signed out."));
            let page = sign_in_page(&shared, &headers, note);
            return answer(&shared, None, "GET", "/", page.into_response());
        }
        Ok(SessionState::Ended) => {
            let mut page = sign_in_page(
                &shared,
                &headers,
                Some((
                    "warn",
                    "Your session has ended: the token expired or was revoked. Sign in with a current token.",
                )),
            );
            page.cookies
                .push(shared.web.cookie(SESSION_COOKIE, "", Some(0)));
            return answer(&shared, None, "GET", "/", page.into_response());
        }
    };
    let name = s.who.name.clone();
    let listed = blocking(&shared, move |sh| {
        let all = ops_checkout::list(&sh.ctx, true)?;
        let why = refusal_reasons(sh, &name, &all);
        Ok::<_, OpsError>((all, why))
    })
    .await;
    let page = match listed {
        Err(page) => page,
        Ok(Err(e)) => ops_trouble(&e),
        Ok(Ok((all, why))) => dashboard(&shared, &s, &flash, &all, &why),
    };
    answer(
        &shared,
        Some(&s.who),
        "GET",
        "/",
        page.signed_in(&s).into_response(),
    )
}

/// Names as the checkout rules compare them (`crate::checkout`): case and spaces aside.
fn same_person(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

fn state_badge(c: &CheckoutRecord) -> String {
    let class = match c.state {
        CheckoutState::Pending => "pending",
        CheckoutState::Approved => "approved",
        CheckoutState::Open => "open",
        CheckoutState::Ending => "ending",
        CheckoutState::Closed => "closed",
    };
    let words = match c.state {
        CheckoutState::Pending => "waiting for approval".to_owned(),
        CheckoutState::Approved => "approved: ready to claim".to_owned(),
        CheckoutState::Open => "in use".to_owned(),
        _ => c.state_words(),
    };
    format!("<span class=\"state {class}\">{}</span>", esc(&words))
}

fn action_form(s: &Session, id: i64, what: &str, class: &str, label: &str) -> String {
    format!(
        "<form method=\"post\" action=\"/checkouts/{id}/{what}\">{}<button type=\"submit\" class=\"{class}\">{}</button></form>",
        csrf_field(&s.csrf),
        esc(label)
    )
}

fn holder(c: &CheckoutRecord) -> String {
    match &c.for_name {
        Some(f) => format!(
            "{} <span class=\"muted\">(for {})</span>",
            esc(&c.requester),
            esc(f)
        ),
        None => esc(&c.requester),
    }
}

/// The checkouts `name` requested that ended in the last day, as the dashboard lists them.
fn recently_ended<'a>(
    all: &'a [CheckoutRecord],
    name: &'a str,
    now: DateTime<Utc>,
) -> impl Iterator<Item = &'a CheckoutRecord> {
    all.iter()
        .filter(|c| c.state == CheckoutState::Closed)
        .filter(move |c| same_person(&c.requester, name))
        .filter(move |c| {
            c.ended_at
                .is_some_and(|t| now - t < chrono::Duration::days(1))
        })
        .take(5)
}

/// Why each of the person's recently refused requests was refused: the reason is kept in the
/// audit log's `checkout_refused` entry (the record has no field for it). A log that cannot
/// be read only leaves the reason out.
fn refusal_reasons(
    shared: &Shared,
    name: &str,
    all: &[CheckoutRecord],
) -> std::collections::HashMap<i64, String> {
    let now = shared.ctx.clock.now();
    let mut why = std::collections::HashMap::new();
    for c in recently_ended(all, name, now).filter(|c| c.end == Some(crate::checkout::End::Refused))
    {
        let filter = crate::store::audit::Filter {
            since: c.ended_at.map(|t| t - chrono::Duration::minutes(1)),
            cred: Some(c.cred.to_string()),
            ticket: Some(c.ticket.clone()),
            ..Default::default()
        };
        let Ok(records) = shared.vault.audit_log(&filter) else {
            continue;
        };
        let reason = records.iter().rev().find_map(|r| match &r.fields {
            crate::store::audit::Fields::Json(map)
                if r.event == "checkout_refused"
                    && map.get("checkout").and_then(serde_json::Value::as_i64) == Some(c.id) =>
            {
                map.get("reason")
                    .and_then(|v| v.as_str())
                    .map(|reason| format!("{reason} ({})", r.actor))
            }
            _ => None,
        });
        if let Some(reason) = reason {
            why.insert(c.id, reason);
        }
    }
    why
}

fn dashboard(
    shared: &Shared,
    s: &Session,
    flash: &Flash,
    all: &[CheckoutRecord],
    refusals: &std::collections::HashMap<i64, String>,
) -> Page {
    let now = shared.ctx.clock.now();
    let mine = |c: &&CheckoutRecord| same_person(&c.requester, &s.who.name);
    let mut body = flash_html(flash);

    // Others' requests, for those who may decide them.
    if s.who.role >= Role::Approver {
        let waiting: Vec<&CheckoutRecord> = all
            .iter()
            .filter(|c| c.state == CheckoutState::Pending)
            .collect();
        body.push_str("<section id=\"approvals\"><h2>Requests waiting for approval</h2>");
        if waiting.is_empty() {
            body.push_str("<p class=\"muted\">No requests are waiting.</p>");
        } else {
            body.push_str("<table><thead><tr><th>No.</th><th>Credential</th><th>Requested by</th><th>Ticket and reason</th><th>How long</th><th>Decide</th></tr></thead><tbody>");
            for c in waiting {
                let involved = same_person(&c.requester, &s.who.name)
                    || c.for_name
                        .as_deref()
                        .is_some_and(|f| same_person(f, &s.who.name));
                let decide = if involved {
                    "<span class=\"muted small\">Your own request: another approver must decide it.</span>".to_owned()
                } else {
                    format!(
                        "{}<form method=\"post\" action=\"/checkouts/{id}/refuse\" class=\"refuse\">{csrf}<input type=\"text\" name=\"reason\" required maxlength=\"500\" placeholder=\"Why refused\" aria-label=\"Why checkout {id} is refused\"> <button type=\"submit\" class=\"danger\">Refuse</button></form>",
                        action_form(s, c.id, "approve", "primary", "Approve"),
                        id = c.id,
                        csrf = csrf_field(&s.csrf),
                    )
                };
                let _ = write!(
                    body,
                    "<tr data-checkout=\"{id}\"><td>{id}</td><td class=\"mono\">{cred}</td><td>{who}<br><span class=\"muted small\">{at}</span></td><td><strong>{ticket}</strong><br>{reason}</td><td>{ttl}</td><td class=\"actions\">{decide}</td></tr>",
                    id = c.id,
                    cred = esc(&c.cred.to_string()),
                    who = holder(c),
                    at = esc(&when(c.requested_at)),
                    ticket = esc(&c.ticket),
                    reason = esc(&c.reason),
                    ttl = esc(&crate::text::duration_words(c.ttl)),
                );
            }
            body.push_str("</tbody></table>");
        }
        body.push_str("</section>");
    }

    // Their own active checkouts.
    let own: Vec<&CheckoutRecord> = all
        .iter()
        .filter(|c| c.state != CheckoutState::Closed)
        .filter(mine)
        .collect();
    body.push_str("<section id=\"mine\"><h2>Your checkouts</h2>");
    if own.is_empty() {
        body.push_str("<p class=\"muted\">You have no active checkouts. Request one below.</p>");
    } else {
        body.push_str("<table><thead><tr><th>No.</th><th>Credential</th><th>Ticket</th><th>State</th><th>Time left</th><th>What you can do</th></tr></thead><tbody>");
        for c in &own {
            let left = match (c.state, c.ends_at) {
                (CheckoutState::Open, Some(end)) => {
                    countdown(end, now, "time is up: rotating", None)
                }
                (CheckoutState::Pending | CheckoutState::Approved, Some(end)) => format!(
                    "<span class=\"muted small\">lapses at {}</span>",
                    esc(&when(end))
                ),
                _ => "<span class=\"muted\">–</span>".to_owned(),
            };
            let actions = match c.state {
                CheckoutState::Pending => action_form(s, c.id, "checkin", "", "Cancel request"),
                CheckoutState::Approved => format!(
                    "{}{}",
                    action_form(s, c.id, "claim", "primary", "Claim: show the secret"),
                    action_form(s, c.id, "checkin", "", "Cancel request")
                ),
                CheckoutState::Open => {
                    action_form(s, c.id, "checkin", "danger", "Check in: I am done")
                }
                CheckoutState::Ending => action_form(s, c.id, "checkin", "", "Retry the rotation"),
                CheckoutState::Closed => String::new(),
            };
            let approved = c
                .approved_by
                .as_deref()
                .map(|a| {
                    format!(
                        "<br><span class=\"muted small\">approved by {}</span>",
                        esc(a)
                    )
                })
                .unwrap_or_default();
            let _ = write!(
                body,
                "<tr data-checkout=\"{id}\" data-state=\"{state}\"><td>{id}</td><td class=\"mono\">{cred}</td><td class=\"nowrap\">{ticket}</td><td>{badge}{approved}</td><td>{left}</td><td class=\"actions\">{actions}</td></tr>",
                id = c.id,
                state = c.state.as_str(),
                cred = esc(&c.cred.to_string()),
                ticket = esc(&c.ticket),
                badge = state_badge(c),
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("</section>");

    // What ended lately, so a requester sees a refusal or a finished rotation.
    let ended: Vec<&CheckoutRecord> = recently_ended(all, &s.who.name, now).collect();
    if !ended.is_empty() {
        body.push_str("<section id=\"ended\"><h2>Ended in the last day</h2><table><thead><tr><th>No.</th><th>Credential</th><th>Ticket</th><th>How it ended</th><th>When</th></tr></thead><tbody>");
        for c in ended {
            let _ = write!(
                body,
                "<tr data-checkout=\"{id}\"><td>{id}</td><td class=\"mono\">{cred}</td><td>{ticket}</td><td>{how}</td><td>{at}</td></tr>",
                id = c.id,
                cred = esc(&c.cred.to_string()),
                ticket = esc(&c.ticket),
                how = match refusals.get(&c.id) {
                    Some(why) => format!(
                        "{}<br><span class=\"muted small\">{}</span>",
                        esc(&c.state_words()),
                        esc(why)
                    ),
                    None => esc(&c.state_words()),
                },
                at = c.ended_at.map(|t| esc(&when(t))).unwrap_or_default(),
            );
        }
        body.push_str("</tbody></table></section>");
    }
    body.push_str(&request_form(shared, s));

    Page::new("Checkouts", body)
}

/// The credentials a person may ask for: every host account of the inventory in force and
/// every directory account it lists by DN (a search's accounts are known only to a run).
fn requestable(shared: &Shared) -> Vec<(CredentialId, String)> {
    let loaded = shared.loaded();
    let inv = &loaded.inventory;
    let mut creds: Vec<CredentialId> = inv
        .hosts
        .iter()
        .flat_map(|h| h.accounts.iter().map(|a| a.credential(&h.name)))
        .collect();
    for d in &inv.directories {
        for listed in &d.accounts {
            if let crate::inventory::DirectoryAccounts::Dn(dn) = listed
                && let Ok(uid) = crate::inventory::uid_of(dn)
            {
                creds.push(CredentialId {
                    host: d.name.clone(),
                    account: uid,
                    slot: crate::credential::Slot::Main,
                });
            }
        }
    }
    creds
        .into_iter()
        .map(|c| {
            let hint = inv.policy_for(&c).map_or_else(String::new, |p| {
                format!(
                    " ({}, up to {})",
                    if crate::checkout::needs_approval(&p.checkout) {
                        "needs approval"
                    } else {
                        "no approval"
                    },
                    crate::text::duration_words(p.checkout.max_ttl)
                )
            });
            (c, hint)
        })
        .collect()
}

fn request_form(shared: &Shared, s: &Session) -> String {
    let mut options = String::new();
    for (c, hint) in requestable(shared) {
        let text = c.to_string();
        let _ = write!(
            options,
            "<option value=\"{}\">{}{}</option>",
            esc(&text),
            esc(&text),
            esc(&hint)
        );
    }
    format!(
        "<section id=\"request\"><h2>Request a checkout</h2>\
         <p class=\"muted small\">You get one credential for one ticket and a time limit. When you check in, or when the time is up, rotor changes it, so the secret you saw stops working.</p>\
         <form method=\"post\" action=\"/checkouts\" class=\"grid\">{csrf}\
         <label for=\"cred\">Credential</label><select id=\"cred\" name=\"cred\" required>{options}</select>\
         <label for=\"ticket\">Ticket</label><input type=\"text\" id=\"ticket\" name=\"ticket\" required maxlength=\"200\" placeholder=\"e.g. INC-4711\">\
         <label for=\"reason\">Reason</label><textarea id=\"reason\" name=\"reason\" required maxlength=\"1000\" placeholder=\"What you will do with it\"></textarea>\
         <label for=\"ttl\">How long<span class=\"hint\">e.g. 90m or 2h</span></label><input type=\"text\" id=\"ttl\" name=\"ttl\" maxlength=\"20\" placeholder=\"the policy's default\">\
         <label for=\"for\">For<span class=\"hint\">optional: the vendor engineer who will use it</span></label><input type=\"text\" id=\"for\" name=\"for\" maxlength=\"64\">\
         <span></span><div><button type=\"submit\" class=\"primary\">Request</button></div>\
         </form></section>",
        csrf = csrf_field(&s.csrf),
    )
}

/// What an operation's error means to the person who asked.
fn ops_trouble(e: &OpsError) -> Page {
    match e {
        OpsError::Store(StoreError::Refused(why)) => {
            Page::error(StatusCode::CONFLICT, "rotor did not do this", why)
        }
        OpsError::Store(StoreError::UnknownCheckout(id)) => Page::error(
            StatusCode::NOT_FOUND,
            "No such checkout",
            &format!(
                "There is no checkout {id}. Go back to the checkout page and pick one from its lists."
            ),
        ),
        other => {
            tracing::error!(error = %other, "a page's operation failed");
            Page::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "rotor could not do this",
                "Try again; if it happens again, tell the rotor operator (the daemon's log says why).",
            )
        }
    }
}

// ---------------------------------------------------------------------------------------
// Actions.

#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct RequestForm {
    csrf: String,
    cred: String,
    ticket: String,
    reason: String,
    ttl: String,
    #[serde(rename = "for")]
    for_name: String,
}

async fn request(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    form: Result<Form<RequestForm>, FormRejection>,
) -> Response {
    const PATH: &str = "/checkouts";
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let s = match guarded(&shared, &headers, &form.csrf).await {
        Ok(s) => s,
        Err((who, page)) => {
            return answer(&shared, who.as_ref(), "POST", PATH, page.into_response());
        }
    };
    let bad = |title: &str, why: String| {
        Page::error(StatusCode::BAD_REQUEST, title, &why)
            .signed_in(&s)
            .into_response()
    };
    let cred = match CredentialId::parse(form.cred.trim()) {
        Ok(c) => c,
        Err(e) => {
            let res = bad(
                "Pick a credential",
                format!("{e}. Pick the credential from the list."),
            );
            return answer(&shared, Some(&s.who), "POST", PATH, res);
        }
    };
    let ttl = match form.ttl.trim() {
        "" => None,
        text => match crate::inventory::parse_age(text) {
            Ok(d) => Some(d),
            Err(why) => {
                let res = bad(
                    "How long?",
                    format!(
                        "\"{text}\" {why}: write a number and a unit, e.g. 90m or 2h, or leave it empty for the policy's default."
                    ),
                );
                return answer(&shared, Some(&s.who), "POST", PATH, res);
            }
        },
    };
    let actor = auth::actor(&s.who);
    let for_name = Some(form.for_name).filter(|f| !f.trim().is_empty());
    let (ticket, reason) = (form.ticket, form.reason);
    let done = blocking(&shared, move |sh| {
        let loaded = sh.loaded();
        let req = CheckoutRequest {
            inventory: &loaded.inventory,
            inventory_path: &loaded.path,
            cred,
            ticket,
            reason,
            ttl,
            for_name,
            actor,
        };
        ops_checkout::checkout(&sh.ctx, req)
    })
    .await;
    let res = match done {
        Err(page) => page.signed_in(&s).into_response(),
        Ok(Err(e)) => ops_trouble(&e).signed_in(&s).into_response(),
        Ok(Ok(Requested::Waiting(c))) => redirect("requested", c.id),
        // No approval needed: this answer is the one time the secret is shown.
        Ok(Ok(Requested::Granted(c, secret))) => {
            secret_page(&shared, &s, &c, secret.expose()).into_response()
        }
    };
    answer(&shared, Some(&s.who), "POST", PATH, res)
}

/// The page that shows a granted secret, once: a read-only field, a copy button, the time
/// left, and the check-in.
fn secret_page(shared: &Shared, s: &Session, c: &CheckoutRecord, secret: &str) -> Page {
    let now = shared.ctx.clock.now();
    let field = if secret.contains('\n') {
        format!(
            "<textarea id=\"secret\" readonly spellcheck=\"false\" autocomplete=\"off\" aria-label=\"The secret\">{}</textarea>",
            esc(secret)
        )
    } else {
        format!(
            "<input type=\"text\" id=\"secret\" readonly spellcheck=\"false\" autocomplete=\"off\" aria-label=\"The secret\" value=\"{}\">",
            esc(secret)
        )
    };
    let (left, until) = match c.ends_at {
        Some(end) => (
            countdown(
                end,
                now,
                "time is up: rotor is changing it",
                Some("countdown"),
            ),
            format!(" (until {})", esc(&when(end))),
        ),
        None => ("<strong>–</strong>".to_owned(), String::new()),
    };
    let body = format!(
        "<section class=\"stack\" id=\"granted\"><h2>Checkout {id}: <span class=\"mono\">{cred}</span></h2>\
         <div class=\"flash warn\">This secret is shown <strong>once</strong>. Copy it now: this page will not show it again. Keep it out of e-mail and chat.</div>\
         <p class=\"muted small\">Ticket {ticket}</p>\
         <label for=\"secret\">Secret</label>\
         <div class=\"secret-row\">{field}<button type=\"button\" class=\"primary\" data-copy=\"secret\" data-status=\"copy-status\">Copy</button></div>\
         <p id=\"copy-status\" class=\"muted small\" role=\"status\"></p>\
         <p class=\"countdown\">Time left: {left}{until}</p>\
         <p>When you are done, check in: rotor then changes the credential and this secret stops working. When the time is up, rotor does so by itself.</p>\
         {checkin}\
         <p><a href=\"/\">Back to your checkouts</a></p></section>",
        id = c.id,
        cred = esc(&c.cred.to_string()),
        ticket = esc(&c.ticket),
        checkin = action_form(s, c.id, "checkin", "danger", "Check in now: I am done"),
    );
    Page {
        narrow: true,
        ..Page::new(&format!("Checkout {}", c.id), body)
    }
    .signed_in(s)
}

#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct RefuseForm {
    csrf: String,
    reason: String,
}

/// The common start of an action on checkout `id`: the session, its CSRF check and, for
/// deciding a request, the approver role.
async fn act(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    csrf: &str,
    need: Role,
) -> Result<Session, (Option<Principal>, Page)> {
    let s = guarded(shared, headers, csrf).await?;
    if let Err(e) = auth::require(&s.who, need) {
        let page = Page::error(
            StatusCode::FORBIDDEN,
            "Your token cannot do this",
            &format!("{e}. Ask the rotor administrator for an approver token."),
        )
        .signed_in(&s);
        return Err((Some(s.who), page));
    }
    Ok(s)
}

async fn approve(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let path = format!("/checkouts/{id}/approve");
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let s = match act(&shared, &headers, &form.csrf, Role::Approver).await {
        Ok(s) => s,
        Err((who, page)) => {
            return answer(&shared, who.as_ref(), "POST", &path, page.into_response());
        }
    };
    let actor = auth::actor(&s.who);
    let done = blocking(&shared, move |sh| {
        ops_checkout::approve(&sh.ctx, &actor, id)
    })
    .await;
    let res = match done {
        Err(page) => page.signed_in(&s).into_response(),
        Ok(Err(e)) => ops_trouble(&e).signed_in(&s).into_response(),
        Ok(Ok(c)) => redirect("approved", c.id),
    };
    answer(&shared, Some(&s.who), "POST", &path, res)
}

async fn refuse(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    form: Result<Form<RefuseForm>, FormRejection>,
) -> Response {
    let path = format!("/checkouts/{id}/refuse");
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let s = match act(&shared, &headers, &form.csrf, Role::Approver).await {
        Ok(s) => s,
        Err((who, page)) => {
            return answer(&shared, who.as_ref(), "POST", &path, page.into_response());
        }
    };
    let actor = auth::actor(&s.who);
    let why = form.reason;
    let done = blocking(&shared, move |sh| {
        ops_checkout::refuse(&sh.ctx, &actor, id, &why)
    })
    .await;
    let res = match done {
        Err(page) => page.signed_in(&s).into_response(),
        Ok(Err(e)) => ops_trouble(&e).signed_in(&s).into_response(),
        Ok(Ok(c)) => redirect("refused", c.id),
    };
    answer(&shared, Some(&s.who), "POST", &path, res)
}

async fn claim(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let path = format!("/checkouts/{id}/claim");
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let s = match act(&shared, &headers, &form.csrf, Role::Requester).await {
        Ok(s) => s,
        Err((who, page)) => {
            return answer(&shared, who.as_ref(), "POST", &path, page.into_response());
        }
    };
    let actor = auth::actor(&s.who);
    let done = blocking(&shared, move |sh| ops_checkout::claim(&sh.ctx, &actor, id)).await;
    let res = match done {
        Err(page) => page.signed_in(&s).into_response(),
        Ok(Err(e)) => ops_trouble(&e).signed_in(&s).into_response(),
        // The one answer that holds the secret: rendered, never stored (no-store).
        Ok(Ok((c, secret))) => secret_page(&shared, &s, &c, secret.expose()).into_response(),
    };
    answer(&shared, Some(&s.who), "POST", &path, res)
}

async fn checkin(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let path = format!("/checkouts/{id}/checkin");
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let s = match act(&shared, &headers, &form.csrf, Role::Requester).await {
        Ok(s) => s,
        Err((who, page)) => {
            return answer(&shared, who.as_ref(), "POST", &path, page.into_response());
        }
    };
    let actor = auth::actor(&s.who);
    let others = s.who.role >= Role::Approver;
    let shutdown = shared.shutdown();
    // The rotation runs here (over SSH, seconds): the answer comes once it is done.
    let done = blocking(&shared, move |sh| {
        ops_checkout::checkin_as_caller(&sh.ctx, &actor, others, id, shutdown)
    })
    .await;
    let res = match done {
        Err(page) => page.signed_in(&s).into_response(),
        Ok(Err(e)) => ops_trouble(&e).signed_in(&s).into_response(),
        Ok(Ok(ended)) => match (&ended.failure, &ended.report) {
            (None, Some(_)) => redirect("checked-in", id),
            (None, None) if ended.checkout.rotation.is_some() => redirect("closed", id),
            // Closed now by this call (a request never claimed), or closed before (refused,
            // lapsed): the record's end says which message fits.
            (None, None) if ended.checkout.end == Some(crate::checkout::End::Cancelled) => {
                redirect("cancelled", id)
            }
            (None, None) => redirect("closed", id),
            (Some(why), _) => Page::error(
                StatusCode::BAD_GATEWAY,
                "Checked in, but the credential is not changed yet",
                &format!(
                    "Checkout {id} of {} is ended, but rotating it failed: {why}. The secret you were shown may still work until rotor succeeds; rotor tries again by itself. Tell the rotor operator.",
                    ended.checkout.cred
                ),
            )
            .signed_in(&s)
            .into_response(),
        },
    };
    answer(&shared, Some(&s.who), "POST", &path, res)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    use super::*;
    use crate::ops::Actor;
    use crate::secret::Secret;
    use crate::server::{Loaded, Shared};
    use crate::store::{KeySource, Vault};

    const INVENTORY: &str = "version: 1
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

    struct World {
        _tmp: tempfile::TempDir,
        shared: Arc<Shared>,
        alice: String,
        bob: String,
        _stop: tokio::sync::watch::Sender<bool>,
    }

    /// A vault with one enrolled credential, a requester (alice) and an approver (bob).
    fn world() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("inventory.yaml");
        std::fs::write(&path, INVENTORY).unwrap();
        let inventory = crate::inventory::load(&path).unwrap();
        let dir = tmp.path().join("vault");
        let vault = Arc::new(Vault::init(&dir, KeySource::default_file(&dir)).unwrap());
        let cred = CredentialId::parse("a/svc_app").unwrap();
        vault
            .enroll(&cred, &Secret::new("the-secret".into()))
            .unwrap();
        let admin = Actor::named("admin");
        let token = |name: &str, role| {
            let (_, t) = vault
                .token_create(&admin, name, role, Duration::from_secs(3600))
                .unwrap();
            t.expose().to_owned()
        };
        let (alice, bob) = (
            token("alice", Role::Requester),
            token("bob", Role::Approver),
        );
        let ctx = crate::ops::Context::for_vault(
            vault.clone(),
            Arc::new(crate::clock::SystemClock),
            tokio::runtime::Handle::current(),
        );
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared::new(
            ctx,
            vault,
            Loaded { inventory, path },
            Duration::from_secs(60),
            stopping,
        ));
        World {
            _tmp: tmp,
            shared,
            alice,
            bob,
            _stop: stop,
        }
    }

    struct Answer {
        status: StatusCode,
        headers: HeaderMap,
        body: String,
    }

    impl Answer {
        fn header(&self, name: header::HeaderName) -> String {
            self.headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect::<Vec<_>>()
                .join("\n")
        }

        /// The first CSRF field of the page.
        fn csrf(&self) -> String {
            let at = self
                .body
                .find("name=\"csrf\" value=\"")
                .expect("a csrf field");
            let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
            rest[..rest.find('"').unwrap()].to_owned()
        }

        /// The value of a cookie the answer sets.
        fn cookie(&self, name: &str) -> String {
            let set = self.header(header::SET_COOKIE);
            let line = set
                .lines()
                .find(|l| l.starts_with(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name} cookie in {set}"));
            line[name.len() + 1..line.find(';').unwrap()].to_owned()
        }
    }

    async fn call(w: &World, method: &str, uri: &str, cookie: &str, form: &str) -> Answer {
        call_with(w, method, uri, cookie, form, &[]).await
    }

    async fn call_with(
        w: &World,
        method: &str,
        uri: &str,
        cookie: &str,
        form: &str,
        extra: &[(&str, &str)],
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        if !cookie.is_empty() {
            req = req.header(header::COOKIE, cookie);
        }
        if method == "POST" {
            req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let res = crate::server::router(w.shared.clone())
            .oneshot(req.body(Body::from(form.to_owned())).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        Answer {
            status,
            headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }

    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    /// Signs in with `token` through the form; returns the session cookie header value.
    async fn sign_in(w: &World, token: &str) -> String {
        let page = call(w, "GET", "/", "", "").await;
        let nonce = format!("{LOGIN_COOKIE}={}", page.cookie(LOGIN_COOKIE));
        let form = format!("token={}&csrf={}", enc(token), page.csrf());
        let res = call(w, "POST", "/login", &nonce, &form).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
        let set = res.header(header::SET_COOKIE);
        assert!(set.contains("HttpOnly; SameSite=Strict; Path=/"), "{set}");
        format!("{SESSION_COOKIE}={}", res.cookie(SESSION_COOKIE))
    }

    #[test]
    fn outside_text_is_escaped_for_text_and_attributes() {
        assert_eq!(
            escape_html("<b a=\"x\" c='y'>&amp;</b>"),
            "&lt;b a=&quot;x&quot; c=&#39;y&#39;&gt;&amp;amp;&lt;/b&gt;"
        );
        assert_eq!(escape_html("plain-Text_1/2"), "plain-Text_1/2");
    }

    #[test]
    fn csrf_fields_are_bound_to_their_token_and_key() {
        let keys = WebKeys::generate(&crate::clock::OsEntropy);
        let other = WebKeys::generate(&crate::clock::OsEntropy);
        let a = keys.session_csrf("rotor_1_a");
        assert_eq!(a.len(), 64);
        assert!(same_secret(&a, &keys.session_csrf("rotor_1_a")));
        assert!(!same_secret(&a, &keys.session_csrf("rotor_2_b")));
        assert!(!same_secret(&a, &other.session_csrf("rotor_1_a")));
        assert!(!same_secret(&a, &keys.login_csrf("rotor_1_a")));
        assert!(!same_secret(&a, ""));
        assert!(!format!("{keys:?}").contains(&a[..8]));
        let secure = keys.secure_cookies(true).cookie(SESSION_COOKIE, "t", None);
        assert_eq!(
            secure.to_str().unwrap(),
            "__Host-rotor_session=t; HttpOnly; SameSite=Strict; Path=/; Secure"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_page_has_the_strict_headers_and_assets_their_types() {
        let w = world();
        let page = call(&w, "GET", "/", "", "").await;
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(page.header(header::CONTENT_SECURITY_POLICY), CSP);
        assert_eq!(page.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(page.header(header::REFERRER_POLICY), "no-referrer");
        assert_eq!(page.header(header::X_FRAME_OPTIONS), "DENY");
        assert_eq!(page.header(header::CACHE_CONTROL), "no-store");
        assert!(page.body.contains("action=\"/login\""), "{}", page.body);
        // No inline script or style anywhere: the policy would block it.
        for inline in ["<script>", "style=", "onclick", "<style"] {
            assert!(!page.body.contains(inline), "{inline} in {}", page.body);
        }
        for (path, kind) in [
            ("/static/app.js", "text/javascript; charset=utf-8"),
            ("/static/app.css", "text/css; charset=utf-8"),
            ("/static/favicon.svg", "image/svg+xml"),
        ] {
            let a = call(&w, "GET", path, "", "").await;
            assert_eq!(a.status, StatusCode::OK, "{path}");
            assert_eq!(a.header(header::CONTENT_TYPE), kind, "{path}");
            assert_eq!(a.header(header::CACHE_CONTROL), "public, max-age=86400");
            assert_eq!(a.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sign_in_needs_the_forms_code_and_a_valid_token() {
        let w = world();
        let page = call(&w, "GET", "/", "", "").await;
        let nonce = format!("{LOGIN_COOKIE}={}", page.cookie(LOGIN_COOKIE));
        let token = enc(&w.alice);
        // No code, a wrong one, or no nonce cookie: 403, nobody signed in.
        for (cookie, form) in [
            (nonce.as_str(), format!("token={token}")),
            (nonce.as_str(), format!("token={token}&csrf=00")),
            ("", format!("token={token}&csrf={}", page.csrf())),
        ] {
            let res = call(&w, "POST", "/login", cookie, &form).await;
            assert_eq!(res.status, StatusCode::FORBIDDEN, "{form}");
            assert!(res.header(header::SET_COOKIE).is_empty());
            assert!(res.body.contains("reload") || res.body.contains("Open the checkout page"));
        }
        let bad = call(
            &w,
            "POST",
            "/login",
            &nonce,
            &format!("token=rotor_9_nope&csrf={}", page.csrf()),
        )
        .await;
        assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
        assert!(
            bad.body.contains("unknown, revoked or expired"),
            "{}",
            bad.body
        );
        let session = sign_in(&w, &w.alice).await;
        let home = call(&w, "GET", "/", &session, "").await;
        assert!(
            home.body.contains("Signed in as <strong>alice</strong>"),
            "{}",
            home.body
        );
        // A cookie whose token is not (or no longer) valid is a sign-in page again.
        let stale = call(&w, "GET", "/", "rotor_session=rotor_9_gone", "").await;
        assert!(
            stale.body.contains("Your session has ended"),
            "{}",
            stale.body
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_approved_by_another_then_claimed_shows_the_secret_once() {
        let w = world();
        let alice = sign_in(&w, &w.alice).await;
        let home = call(&w, "GET", "/", &alice, "").await;
        let csrf = home.csrf();
        assert!(
            home.body.contains("<option value=\"a/svc_app\">"),
            "{}",
            home.body
        );
        assert!(
            !home.body.contains("Requests waiting"),
            "a requester decides nothing"
        );
        let form = format!(
            "csrf={csrf}&cred=a%2Fsvc_app&ticket={}&reason=db&ttl=30m&for=",
            enc("<script>x</script>")
        );
        // Without its code, or from another site, nothing happens.
        let bare = form.replacen(&format!("csrf={csrf}&"), "", 1);
        let refused = call(&w, "POST", "/checkouts", &alice, &bare).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        let cross = call_with(
            &w,
            "POST",
            "/checkouts",
            &alice,
            &form,
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
        assert_eq!(cross.status, StatusCode::FORBIDDEN);
        assert!(w.shared.vault.checkouts(true).unwrap().is_empty());

        let asked = call(&w, "POST", "/checkouts", &alice, &form).await;
        assert_eq!(asked.status, StatusCode::SEE_OTHER, "{}", asked.body);
        assert_eq!(asked.header(header::LOCATION), "/?m=requested&id=1");
        let home = call(&w, "GET", "/?m=requested&id=1", &alice, "").await;
        assert!(home.body.contains("waiting for approval"), "{}", home.body);
        assert!(home.body.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(!home.body.contains("<script>x"));

        // The approver's own csrf: alice's does not pass for bob.
        let bob = sign_in(&w, &w.bob).await;
        let theirs = call(
            &w,
            "POST",
            "/checkouts/1/approve",
            &bob,
            &format!("csrf={csrf}"),
        )
        .await;
        assert_eq!(theirs.status, StatusCode::FORBIDDEN);
        let own = call(
            &w,
            "POST",
            "/checkouts/1/approve",
            &alice,
            &format!("csrf={csrf}"),
        )
        .await;
        assert_eq!(
            own.status,
            StatusCode::FORBIDDEN,
            "a requester token approves nothing"
        );
        let bob_home = call(&w, "GET", "/", &bob, "").await;
        assert!(bob_home.body.contains("Requests waiting for approval"));
        let ok = call(
            &w,
            "POST",
            "/checkouts/1/approve",
            &bob,
            &format!("csrf={}", bob_home.csrf()),
        )
        .await;
        assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);

        let claimed = call(
            &w,
            "POST",
            "/checkouts/1/claim",
            &alice,
            &format!("csrf={csrf}"),
        )
        .await;
        assert_eq!(claimed.status, StatusCode::OK, "{}", claimed.body);
        assert!(
            claimed.body.contains("value=\"the-secret\""),
            "{}",
            claimed.body
        );
        assert!(claimed.body.contains("data-ends-at=\""));
        assert_eq!(claimed.header(header::CACHE_CONTROL), "no-store");
        let again = call(
            &w,
            "POST",
            "/checkouts/1/claim",
            &alice,
            &format!("csrf={csrf}"),
        )
        .await;
        assert_eq!(again.status, StatusCode::CONFLICT);
        assert!(again.body.contains("already claimed"), "{}", again.body);
        assert!(!again.body.contains("the-secret"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_approver_refuses_with_a_reason_and_the_requester_sees_it_ended() {
        let w = world();
        let alice = sign_in(&w, &w.alice).await;
        let csrf = call(&w, "GET", "/", &alice, "").await.csrf();
        let form = format!("csrf={csrf}&cred=a%2Fsvc_app&ticket=T-1&reason=db");
        call(&w, "POST", "/checkouts", &alice, &form).await;
        let bob = sign_in(&w, &w.bob).await;
        let bob_csrf = call(&w, "GET", "/", &bob, "").await.csrf();
        let res = call(
            &w,
            "POST",
            "/checkouts/1/refuse",
            &bob,
            &format!(
                "csrf={bob_csrf}&reason={}",
                enc("wrong ticket <img src=x onerror=alert(1)>")
            ),
        )
        .await;
        assert_eq!(res.header(header::LOCATION), "/?m=refused&id=1");
        let home = call(&w, "GET", "/", &alice, "").await;
        assert!(home.body.contains("closed (refused)"), "{}", home.body);
        // The reason is shown to the requester, as text.
        assert!(
            home.body
                .contains("wrong ticket &lt;img src=x onerror=alert(1)&gt; (bob)"),
            "{}",
            home.body
        );
        assert!(!home.body.contains("<img"));
        // Signing out ends the cookie.
        let out = call(&w, "POST", "/logout", &alice, &format!("csrf={csrf}")).await;
        assert_eq!(out.status, StatusCode::SEE_OTHER);
        assert!(out.header(header::SET_COOKIE).contains("Max-Age=0"));
    }
}

//! `rotor serve`: the daemon. A scheduler loop that rotates what is due (`ops::scheduled`),
//! the HTTP API (`api`), the checkout web page (`web`) and Prometheus metrics (`metrics`),
//! served plain on loopback or over TLS elsewhere (`tls::listen_policy`, [`serve`]),
//! all front-ends over `ops` sharing one [`Shared`]: the operations context, the vault, the
//! inventory in force (replaced whole on SIGHUP), the scheduler's health and the metrics.
//!
//! Invariant: nothing here decides what a rotation or a checkout does. A handler
//! authenticates (`auth`), calls one `ops` function in `spawn_blocking` with the token's
//! [`Actor`], audits the call, and presents the result; the loop calls `ops::scheduled`.

pub mod api;
pub mod auth;
mod daemon;
pub mod http;
pub mod metrics;
pub mod tls;
pub mod web;

pub use daemon::{
    ServeError, ServeOptions, load_inventory, run, run_pass, scheduler_actor, scheduler_loop,
};

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::inventory::Inventory;
use crate::ops;
use crate::store::Vault;
use crate::store::audit::Event;

pub use crate::ops::Actor;

/// The inventory in force and the file it came from (check-ins and expiries rotate with it).
pub struct Loaded {
    pub inventory: Inventory,
    /// The inventory file, resolved (as `store::check_trusted_file` returns it).
    pub path: PathBuf,
}

/// What the scheduler loop, the API and the page share.
pub struct Shared {
    pub ctx: ops::Context,
    /// The vault itself, for what is not an operation: token lookups, the audit log.
    pub vault: Arc<Vault>,
    loaded: RwLock<Arc<Loaded>>,
    pub health: Health,
    pub metrics: metrics::Metrics,
    /// Rotations started through the API (`/api/v1/rotations`), the last few kept.
    pub(crate) jobs: api::Jobs,
    /// The page's CSRF key (made at start, in memory only) and cookie settings.
    pub web: web::WebKeys,
    /// How many calls without a valid token the audit log takes per minute.
    anonymous: AnonymousBudget,
    /// Set once the daemon stops: no new work starts.
    stopping: tokio::sync::watch::Receiver<bool>,
}

/// Calls without a valid token are recorded up to a budget per minute: anyone who can reach
/// the port can make them, and each would otherwise be a row in the audit log forever. The
/// rest are counted and said in the daemon's log once a minute.
pub struct AnonymousBudget {
    /// The minute (unix time / 60), calls recorded in it, calls left out.
    window: Mutex<(i64, u32, u32)>,
}

impl AnonymousBudget {
    /// Recorded anonymous calls per minute.
    pub const PER_MINUTE: u32 = 60;

    fn new() -> AnonymousBudget {
        AnonymousBudget {
            window: Mutex::new((0, 0, 0)),
        }
    }

    /// Whether a call at `unix_secs` is recorded.
    fn admit(&self, unix_secs: i64) -> bool {
        let minute = unix_secs.div_euclid(60);
        let mut w = self
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if w.0 != minute {
            if w.2 > 0 {
                tracing::warn!(
                    left_out = w.2,
                    "calls without a valid token beyond {} a minute were not recorded in the audit log",
                    Self::PER_MINUTE
                );
            }
            *w = (minute, 0, 0);
        }
        if w.1 < Self::PER_MINUTE {
            w.1 += 1;
            true
        } else {
            w.2 += 1;
            false
        }
    }
}

impl Shared {
    pub fn new(
        ctx: ops::Context,
        vault: Arc<Vault>,
        loaded: Loaded,
        tick: Duration,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Shared {
        let web = web::WebKeys::generate(&*ctx.entropy);
        Shared {
            ctx,
            vault,
            loaded: RwLock::new(Arc::new(loaded)),
            health: Health::new(tick),
            metrics: metrics::Metrics::new(),
            jobs: api::Jobs::default(),
            web,
            anonymous: AnonymousBudget::new(),
            stopping,
        }
    }

    /// Replaces the page's keys, e.g. `WebKeys::generate(..).secure_cookies(true)` when the
    /// daemon is served over TLS.
    pub fn with_web(mut self, web: web::WebKeys) -> Shared {
        self.web = web;
        self
    }

    /// The inventory in force now (a request keeps the one it started with).
    pub fn loaded(&self) -> Arc<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Puts a new inventory in force (SIGHUP, after it was read and checked whole).
    pub fn replace(&self, loaded: Loaded) {
        *self
            .loaded
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(loaded);
    }

    /// Whether the daemon is stopping.
    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// A future that completes once the daemon stops: the shutdown an operation started by
    /// a request is given, so SIGTERM lets it finish what is in flight and start nothing new.
    pub fn shutdown(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.stopping.clone();
        async move {
            let _ = rx.wait_for(|stopping| *stopping).await;
        }
    }

    /// Records one API or page call in the audit log: who (the token's name, or `anonymous`
    /// for a call that presented none or a bad one), the method, the path without its
    /// query, and the status answered. A failure to record is logged, never answered.
    pub fn audit_call(&self, who: Option<&auth::Principal>, method: &str, path: &str, status: u16) {
        if who.is_none() && !self.anonymous.admit(self.ctx.clock.now().timestamp()) {
            return;
        }
        let actor = who.map_or_else(|| Actor::named("anonymous"), auth::actor);
        let event = Event::ApiCall {
            method: method.to_owned(),
            path: crate::text::escape(path).chars().take(200).collect(),
            status,
            token: who.map(|p| p.token_id),
        };
        if let Err(e) = self.vault.audit_append_lazy(&actor, &event, None) {
            tracing::error!(error = %e, "cannot record an API call in the audit log");
        }
    }
}

/// Whether the scheduler loop is alive: `/health` is unhealthy once no pass has completed
/// for twice the tick interval.
pub struct Health {
    pub tick: Duration,
    started: Instant,
    last_pass: Mutex<Option<Instant>>,
}

impl Health {
    pub fn new(tick: Duration) -> Health {
        Health {
            tick,
            started: Instant::now(),
            last_pass: Mutex::new(None),
        }
    }

    /// The loop completed a pass now.
    pub fn pass_completed(&self) {
        *self
            .last_pass
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
    }

    /// How long since the last completed pass (or since the start, before the first).
    pub fn since_last_pass(&self) -> Duration {
        let last = *self
            .last_pass
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        last.unwrap_or(self.started).elapsed()
    }

    /// Whether a pass completed within twice the tick interval. The first pass may take
    /// longer (it recovers and catches up): until it ends, the start counts as a pass.
    pub fn healthy(&self) -> bool {
        self.since_last_pass() <= self.tick * 2
    }
}

/// The HTTP side: the API, `/health`, `/metrics` and the page.
pub fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .merge(api::routes(&shared))
        .merge(web::routes())
        .with_state(shared)
}

/// Serves `router(shared)` on `listener`, over TLS when `tls` is given (from
/// [`tls::listen_policy`], which decides whether the address may be plain), until `shutdown`
/// completes; requests in flight are answered first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: Arc<Shared>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = http::Limits::default();
    match tls {
        None => http::serve_connections(listener, router(shared), limits, shutdown).await,
        Some(config) => {
            let listener = tls::TlsListener::new(listener, config)?;
            http::serve_connections(listener, router(shared), limits, shutdown).await
        }
    }
}

/// [`serve`] over plain HTTP (tests, and a loopback daemon).
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve(listener, None, shared, shutdown).await
}

#[cfg(test)]
mod budget_tests {
    use super::AnonymousBudget;

    #[test]
    fn anonymous_calls_are_recorded_up_to_the_budget_per_minute() {
        let b = AnonymousBudget::new();
        let recorded = (0..100).filter(|_| b.admit(120)).count();
        assert_eq!(recorded, AnonymousBudget::PER_MINUTE as usize);
        assert!(b.admit(180), "a new minute, a new budget");
    }
}

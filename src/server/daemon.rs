//! The daemon's life: take the vault's leader lease, listen, run the scheduler loop on this
//! thread (one `ops::scheduled::pass` per tick), answer HTTP on the runtime, re-read the
//! inventory on SIGHUP, and on SIGTERM or SIGINT start nothing new, let what is in flight
//! finish or roll back, give the lease back and return.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{Loaded, Shared};
use crate::clock::Clock;
use crate::ops::scheduled::{self, Scheduler};
use crate::ops::{self, Actor};
use crate::scheduler::Settings;
use crate::store::{StoreError, Vault};

/// What `rotor serve` runs with.
pub struct ServeOptions {
    pub inventory: PathBuf,
    pub listen: SocketAddr,
    /// Certificate chain and key files (PEM), for TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Mark the page's cookies Secure without TLS here (a TLS proxy in front).
    pub secure_cookies: bool,
    pub tick: Duration,
    pub catch_up_spread: Duration,
    pub concurrency: usize,
    pub step_timeout: Duration,
    pub clock: Arc<dyn Clock>,
}

/// Why the daemon could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Inventory(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "cannot listen on {addr}: {source}. Is another program (or another rotor serve) using the port? Pick another with --listen"
    )]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Tls(String),
    #[error("cannot start the daemon's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("{0}")]
    LostLease(String),
}

/// The actor the scheduler's own work is recorded as.
pub fn scheduler_actor() -> Actor {
    Actor::named("rotor serve (scheduler)")
}

/// The leader lease's ttl: renewed every tick, so ten ticks (at least five minutes) of a
/// stalled daemon pass before another may take over from it.
fn leader_ttl(tick: Duration) -> Duration {
    (tick * 10).max(Duration::from_secs(300))
}

/// Reads and checks the inventory: a file only root or the vault's owner may write (it
/// decides who may check out what), parsed and validated whole.
pub fn load_inventory(path: &Path) -> Result<Loaded, ServeError> {
    let path = crate::store::check_trusted_file("inventory", path)?;
    let inventory =
        crate::inventory::load(&path).map_err(|e| ServeError::Inventory(format!("{e}")))?;
    Ok(Loaded { inventory, path })
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(vault: Arc<Vault>, o: ServeOptions) -> Result<(), ServeError> {
    // Before the lease: a listen address refused without TLS fails at once.
    let tls = super::tls::listen_policy(
        o.listen,
        o.tls.as_ref().map(|(cert, _)| cert.as_path()),
        o.tls.as_ref().map(|(_, key)| key.as_path()),
    )
    .map_err(|e| ServeError::Tls(e.to_string()))?;
    let loaded = load_inventory(&o.inventory)?;
    let holder = format!(
        "rotor serve pid {} as {}, listening on {}",
        std::process::id(),
        Actor::of_this_process().as_str(),
        o.listen
    );
    let leader = vault.leader_acquire(&holder, leader_ttl(o.tick))?;
    let result = run_as_leader(&vault, &leader, loaded, tls, &o);
    if let Err(e) = vault.leader_release(leader) {
        tracing::warn!(error = %e, "cannot give the leader lease back; the next daemon takes it over");
    }
    result
}

fn run_as_leader(
    vault: &Arc<Vault>,
    leader: &crate::store::Leader,
    loaded: Loaded,
    tls: Option<Arc<rustls::ServerConfig>>,
    o: &ServeOptions,
) -> Result<(), ServeError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // A directory's accounts each take a blocking worker while rotated at once.
        .max_blocking_threads(1024)
        .build()
        .map_err(ServeError::Runtime)?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(o.listen))
        .map_err(|source| ServeError::Listen {
            addr: o.listen,
            source,
        })?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ctx = ops::Context::for_vault(vault.clone(), o.clock.clone(), runtime.handle().clone());
    let keys = super::web::WebKeys::generate(&*ctx.entropy)
        .secure_cookies(tls.is_some() || o.secure_cookies);
    let shared = Arc::new(Shared::new(ctx, vault.clone(), loaded, o.tick, stop_rx).with_web(keys));
    let wake = Arc::new(tokio::sync::Notify::new());
    let lost = Arc::new(std::sync::Mutex::new(None::<String>));

    // The bound address (a port 0 in --listen is chosen by the kernel).
    let bound = listener
        .local_addr()
        .map_or_else(|_| o.listen.to_string(), |a| a.to_string());
    let http = runtime.spawn(super::serve(
        listener,
        tls,
        shared.clone(),
        shared.shutdown(),
    ));
    // Installed here, before READY=1 and the "started" line: a SIGTERM that comes right
    // after them must find rotor's handler, not the default action (which kills at once).
    let handlers = {
        let _in_runtime = runtime.enter();
        Signals::install().map_err(ServeError::Runtime)?
    };
    runtime.spawn(signals(
        handlers,
        shared.clone(),
        stop_tx.clone(),
        wake.clone(),
        o.inventory.clone(),
    ));
    runtime.spawn(renew_leader(
        vault.clone(),
        Arc::new(leader.clone()),
        o.tick,
        stop_tx.clone(),
        lost.clone(),
    ));
    tracing::info!(listen = %bound, tick = ?o.tick, "rotor serve started");
    notify_systemd(&[sd_notify::NotifyState::Ready]);

    let mut sched = Scheduler::new(
        Settings {
            started_at: o.clock.now(),
            catch_up_spread: o.catch_up_spread,
        },
        crate::clock::machine_timezone(),
    );
    sched.concurrency = o.concurrency;
    sched.step_timeout = o.step_timeout;
    scheduler_loop(&shared, &mut sched, &runtime, &wake);

    notify_systemd(&[sd_notify::NotifyState::Stopping]);
    tracing::info!("stopping: rotations in flight finish or roll back");
    let _ = stop_tx.send(true);
    // Requests in flight are answered first, but a client that never finishes its request
    // must not hold the stop: after 30 s its connection is dropped with the runtime.
    match runtime.block_on(async { tokio::time::timeout(Duration::from_secs(30), http).await }) {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the HTTP server ended with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "the HTTP server task failed"),
        Err(_) => tracing::warn!("HTTP connections still open after 30 s are dropped"),
    }
    // Dropping the runtime waits for blocking work in flight (a rotation an API call
    // started): it has seen the stop and starts nothing new.
    drop(runtime);
    let lost = lost
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    match lost {
        Some(why) => Err(ServeError::LostLease(why)),
        None => Ok(()),
    }
}

/// One pass per tick until the daemon stops; a SIGHUP wakes it early.
pub fn scheduler_loop(
    shared: &Shared,
    sched: &mut Scheduler,
    runtime: &tokio::runtime::Runtime,
    wake: &tokio::sync::Notify,
) {
    let actor = scheduler_actor();
    let mut current = shared.loaded();
    while !shared.is_stopping() {
        let loaded = shared.loaded();
        if !Arc::ptr_eq(&loaded, &current) {
            sched.inventory_changed();
            current = loaded.clone();
        }
        // A panic in a pass is a bug; it must not end the daemon silently. It is logged,
        // `/health` turns unhealthy (no pass completed), and the next tick tries again.
        let pass = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_pass(shared, sched, &loaded, &actor);
        }));
        if pass.is_err() {
            tracing::error!(
                "a scheduler pass panicked (a bug: please report it); the next tick tries again"
            );
        }
        if shared.is_stopping() {
            break;
        }
        let stop = shared.shutdown();
        runtime.block_on(async {
            tokio::select! {
                () = tokio::time::sleep(shared.health.tick) => {}
                () = stop => {}
                () = wake.notified() => {}
            }
        });
    }
}

/// One pass, its log lines and its metrics.
pub fn run_pass(shared: &Shared, sched: &mut Scheduler, loaded: &Loaded, actor: &Actor) {
    let started = Instant::now();
    match scheduled::pass(&shared.ctx, sched, &loaded.inventory, actor, || {
        shared.shutdown()
    }) {
        Ok(pass) => {
            if let Some(run) = &pass.run {
                super::api::count_rotations(shared, run, started);
                tracing::info!(
                    due = pass.due.len(),
                    committed = run
                        .results
                        .iter()
                        .filter(|r| matches!(r.outcome, crate::engine::Outcome::Committed))
                        .count(),
                    interrupted = pass.interrupted,
                    "scheduled run ended"
                );
            }
            for ended in &pass.checkouts {
                match &ended.failure {
                    None => {
                        tracing::info!(checkout = ended.checkout.id, cred = %ended.checkout.cred, "checkout ended: rotated")
                    }
                    Some(why) => {
                        tracing::warn!(checkout = ended.checkout.id, cred = %ended.checkout.cred, failure = %why, "checkout rotation failed; retried next tick")
                    }
                }
            }
            tracing::debug!(
                scheduled = pass.n_scheduled,
                stale = pass.stale.len(),
                next_due = ?pass.next_due,
                took_ms = started.elapsed().as_millis() as u64,
                "scheduler pass"
            );
            shared.health.pass_completed();
            shared
                .metrics
                .pass_completed(shared.ctx.clock.now().timestamp());
        }
        Err(e) => tracing::error!(error = %e, "scheduler pass failed; the next tick tries again"),
    }
}

/// The daemon's signal streams.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers (inside the runtime's context).
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// SIGTERM and SIGINT stop the daemon; SIGHUP re-reads the inventory.
async fn signals(
    signals: Signals,
    shared: Arc<Shared>,
    stop: tokio::sync::watch::Sender<bool>,
    wake: Arc<tokio::sync::Notify>,
    path: PathBuf,
) {
    let Signals {
        mut term,
        mut int,
        mut hup,
    } = signals;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                let path = path.clone();
                match tokio::task::spawn_blocking(move || load_inventory(&path)).await {
                    Ok(Ok(loaded)) => {
                        tracing::info!(
                            inventory = %loaded.path.display(),
                            hosts = loaded.inventory.hosts.len(),
                            directories = loaded.inventory.directories.len(),
                            "SIGHUP: the new inventory is in force"
                        );
                        shared.replace(loaded);
                        wake.notify_one();
                    }
                    Ok(Err(e)) => tracing::error!(error = %e, "SIGHUP: the new inventory is refused; the one in force is kept"),
                    Err(e) => tracing::error!(error = %e, "SIGHUP: reading the inventory failed; the one in force is kept"),
                }
            }
        }
    }
    tracing::info!("signal received: no new work starts");
    let _ = stop.send(true);
}

/// Renews the leader lease every tick, beside the loop (a long pass must not let it lapse).
/// A failed renewal (another daemon took over) stops this one.
async fn renew_leader(
    vault: Arc<Vault>,
    leader: Arc<crate::store::Leader>,
    tick: Duration,
    stop: tokio::sync::watch::Sender<bool>,
    lost: Arc<std::sync::Mutex<Option<String>>>,
) {
    let stopped = AtomicBool::new(false);
    let mut every = tokio::time::interval(tick);
    every.tick().await;
    loop {
        every.tick().await;
        if *stop.borrow() || stopped.load(Ordering::SeqCst) {
            return;
        }
        let (v, l) = (vault.clone(), leader.clone());
        let renewed =
            tokio::task::spawn_blocking(move || v.leader_renew(&l, leader_ttl(tick))).await;
        match renewed {
            Ok(Ok(())) => {}
            Ok(Err(StoreError::Refused(why))) => {
                tracing::error!(error = %why, "lost the vault's leader lease");
                *lost
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(why);
                stopped.store(true, Ordering::SeqCst);
                let _ = stop.send(true);
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot renew the leader lease; trying again next tick")
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the leader lease; trying again next tick")
            }
        }
    }
}

/// Tells systemd (`Type=notify`) where the daemon is; nothing when not run by systemd.
fn notify_systemd(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::debug!(error = %e, "cannot notify systemd");
    }
}

//! The daemon's HTTP connections, served by hyper directly rather than `axum::serve`, for
//! the limits a daemon on a network needs and axum's server does not set: a client must send
//! its request headers within [`HEADER_READ_TIMEOUT`] (hyper has a default but no timer
//! without one: a slow client could hold a connection forever), and at most
//! [`MAX_CONNECTIONS`] are open at once (the next waits in the kernel's backlog). Over plain
//! TCP or the TLS listener alike (`axum::serve::Listener`). At shutdown every connection
//! finishes the request it is answering and closes.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Semaphore, mpsc, watch};

/// How long a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(15);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 512;

/// What a connection may take.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then lets open connections
/// finish the request in hand.
pub async fn serve_connections<L>(
    mut listener: L,
    router: axum::Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
{
    let limit = Arc::new(Semaphore::new(limits.max_connections));
    let (close_tx, close_rx) = watch::channel(false);
    // Each connection task holds a sender; `recv` returns `None` once all are gone.
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    let mut shutdown = pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (io, _addr) = tokio::select! {
            connection = listener.accept() => connection,
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let mut close = close_rx.clone();
        let open = open_tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _open = open;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout);
            let mut conn = pin!(builder.serve_connection(TokioIo::new(io), service));
            let closing = async move {
                let _ = close.wait_for(|closing| *closing).await;
            };
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "HTTP connection ended with an error");
                    }
                }
                () = closing => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    let _ = close_tx.send(true);
    drop(open_tx);
    let _ = open_rx.recv().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn a_client_that_never_finishes_its_headers_is_cut_off() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let router = axum::Router::new().route("/", axum::routing::get(|| async { "hi" }));
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let limits = Limits {
            header_read_timeout: Duration::from_millis(200),
            max_connections: 4,
        };
        let server = rt.spawn(serve_connections(listener, router, limits, async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        }));
        // A whole request is answered.
        let mut ok = std::net::TcpStream::connect(addr).unwrap();
        ok.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        ok.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("hi"),
            "{answer}"
        );
        // Half a request line: the server closes the connection once the header timeout
        // passed (the read returns), long before the test's own read timeout would.
        let mut slow = std::net::TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET / HT").unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut buf = Vec::new();
        let started = std::time::Instant::now();
        let closed = slow.read_to_end(&mut buf);
        assert!(closed.is_ok(), "the server closed it: {closed:?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        let _ = stop_tx.send(true);
        rt.block_on(server).unwrap().unwrap();
    }
}

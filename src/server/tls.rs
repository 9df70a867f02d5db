//! Where the daemon may listen, and TLS when it must: [`listen_policy`] lets a loopback
//! address serve plain HTTP (only this machine reaches it) and refuses any other address
//! unless a certificate and key are given; [`TlsListener`] then terminates TLS (rustls with
//! the ring provider, TLS 1.2 and 1.3) in front of the same router, for `axum::serve`.
//!
//! Invariant: a bearer token never crosses a network in the clear. Nothing here offers a way
//! around the refusal (no "insecure" flag): an operator who wants plain HTTP puts the daemon
//! on loopback behind their own TLS proxy.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Why the daemon will not listen as asked.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "refusing to listen on {0} without TLS: API tokens would cross the network in the clear. Give a certificate and its key (PEM): `--tls-cert FILE --tls-key FILE`, or listen on a loopback address (`--listen 127.0.0.1:8200`)"
    )]
    PlainNotLoopback(SocketAddr),
    #[error(
        "--tls-cert and --tls-key go together: give both (PEM files), or neither on a loopback address"
    )]
    HalfGiven,
    #[error("cannot read the TLS {what} {}: {cause}; give a readable PEM file", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        cause: String,
    },
    #[error("the TLS certificate file {} holds no certificate (expected PEM `BEGIN CERTIFICATE` blocks, the server's first)", .0.display())]
    NoCertificate(PathBuf),
    #[error(
        "the TLS certificate and key cannot be used together: {0}; check that the key is the certificate's"
    )]
    Config(String),
}

/// Whether `addr` may be served, and how: `Ok(None)` plain HTTP (a loopback address without
/// a certificate), `Ok(Some(config))` TLS with `cert` and `key` (PEM; on any address), or the
/// refusal, saying what to do.
pub fn listen_policy(
    addr: SocketAddr,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(server_config(cert, key)?)),
        (None, None) if is_loopback(addr) => Ok(None),
        (None, None) => Err(TlsError::PlainNotLoopback(addr)),
        _ => Err(TlsError::HalfGiven),
    }
}

/// Loopback, IPv4-mapped IPv6 loopback (`::ffff:127.0.0.1`) included. `0.0.0.0` and `::`
/// listen on every interface: not loopback.
fn is_loopback(addr: SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

/// A rustls server configuration from a PEM certificate chain and private key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let read =
        |what: &'static str, path: &Path, cause: rustls::pki_types::pem::Error| TlsError::Read {
            what,
            path: path.to_owned(),
            cause: cause.to_string(),
        };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| read("certificate file", cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read("certificate file", cert, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_owned()));
    }
    // The key's own parse error names no key bytes (rustls-pki-types reports kinds only).
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| read("key file", key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    // The server speaks HTTP/1.1 only (axum's `http1` feature).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Handshakes in flight at once: a crowd of slow clients waits, it does not exhaust memory.
const MAX_HANDSHAKES: usize = 64;
/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TCP connections with TLS terminated, as `axum::serve` accepts them. Handshakes run off the
/// accept path (a background task accepts and spawns each one), so one slow or silent client
/// cannot hold up every other connection; a failed handshake is logged at debug and dropped.
pub struct TlsListener {
    local: SocketAddr,
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    /// The accepting task, stopped when the listener is dropped.
    _accepting: AbortOnDrop,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl TlsListener {
    /// Starts accepting on `listener` (call inside a tokio runtime).
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = tokio::sync::mpsc::channel(MAX_HANDSHAKES);
        let acceptor = TlsAcceptor::from(config);
        let permits = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        let task = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning
                        // (axum's own accept loop does the same).
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return; // The semaphore is never closed; nothing to accept for.
                };
                let acceptor = acceptor.clone();
                let ready = tx.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = ready.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(peer = %peer, "TLS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    return; // The server stopped serving.
                }
            }
        });
        Ok(TlsListener {
            local,
            ready,
            _accepting: AbortOnDrop(task),
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accepting task ended (it only does once the server is gone): no more
            // connections will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn loopback_may_be_plain_and_anything_else_needs_tls() {
        for plain in [
            "127.0.0.1:8200",
            "127.8.9.1:1",
            "[::1]:8200",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert!(
                matches!(listen_policy(addr(plain), None, None), Ok(None)),
                "{plain}"
            );
        }
        for open in [
            "0.0.0.0:8200",
            "[::]:8200",
            "10.0.0.5:8200",
            "[::ffff:10.0.0.5]:1",
        ] {
            let err = listen_policy(addr(open), None, None).unwrap_err();
            assert!(matches!(err, TlsError::PlainNotLoopback(_)), "{open}");
            assert!(
                err.to_string().contains("--tls-cert FILE --tls-key FILE"),
                "{err}"
            );
        }
        let half = listen_policy(addr("0.0.0.0:1"), Some(Path::new("/c.pem")), None);
        assert!(matches!(half, Err(TlsError::HalfGiven)));
    }

    #[test]
    fn unreadable_or_empty_files_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let empty = tmp.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let gone = tmp.path().join("gone.pem");
        let err = listen_policy(addr("0.0.0.0:1"), Some(&gone), Some(&gone)).unwrap_err();
        assert!(err.to_string().contains("gone.pem"), "{err}");
        let err = listen_policy(addr("0.0.0.0:1"), Some(&empty), Some(&empty)).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate(_)), "{err}");
    }
}

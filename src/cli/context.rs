//! The one place the CLI builds what the operations run with: the vault, the real targets
//! (SSH hosts, LDAP directories), the system clock and entropy, and one tokio runtime per
//! command; and the shutdown future the long commands pass (SIGINT/SIGTERM).

use super::output::open_vault;
use super::{Failure, Global};
use crate::ops;

/// An operations context and the runtime its handle points into (dropped together).
pub struct Session {
    pub ctx: ops::Context,
    _runtime: tokio::runtime::Runtime,
}

/// Opens the vault and builds the context for one command.
pub fn open(g: &Global) -> Result<Session, Failure> {
    let vault = open_vault(g)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // A directory's accounts each take a blocking worker while rotated at once.
        .max_blocking_threads(1024)
        .build()?;
    let ctx = ops::Context::for_vault(vault, super::output::clock(), runtime.handle().clone());
    Ok(Session {
        ctx,
        _runtime: runtime,
    })
}

/// Completes on the first SIGINT/SIGTERM: the operation starts nothing new and lets what is
/// in flight finish or roll back, then the report is printed. A second one exits at once
/// (130); `rotor recover` settles what it left open.
pub async fn interrupt() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; an interrupt will stop rotor at once");
        return std::future::pending::<()>().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    eprintln!(
        "\nrotor: stopping: no new host or account starts; rotations in flight finish or roll back (interrupt again to quit now; `rotor recover` settles what is left)"
    );
    // The CLI's own choice, not the operation's: the operation returns its report after a
    // first interrupt; a second one means the operator will not wait for it.
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        eprintln!("rotor: quitting now; run `rotor recover` to settle open rotations");
        std::process::exit(130);
    });
}

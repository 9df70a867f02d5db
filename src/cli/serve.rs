//! `rotor serve -i FILE`: the daemon. Parses its options, takes the vault's leader lease,
//! listens, and hands over to `server::run` (the scheduler loop, the HTTP API, the page).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::output::open_vault;
use super::{CliResult, Failure, Global, duration_arg, usage};
use crate::server::{self, ServeOptions};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The inventory file (re-read on SIGHUP; a bad new one is refused and the old kept).
    #[arg(short, long, value_name = "FILE", env = "ROTOR_INVENTORY")]
    pub inventory: PathBuf,
    /// Where the API, the page and the metrics listen. Any address but loopback needs TLS.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8200")]
    pub listen: SocketAddr,
    /// TLS certificate chain (PEM), with --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM), with --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The page is reached over HTTPS through a proxy in front of a loopback daemon: its
    /// cookies are marked Secure (as they are when rotor serves TLS itself).
    #[arg(long)]
    pub secure_cookies: bool,
    /// How often the scheduler looks for due credentials and checkouts.
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = tick_arg)]
    pub tick: Duration,
    /// Runs missed while no daemon ran (and first runs) are spread over this long.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = spread_arg)]
    pub catch_up_spread: Duration,
    /// Hosts worked on at once, and accounts of one directory rotated at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// Deadline of each SSH or LDAP step, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 20)]
    pub step_timeout: u64,
}

/// `--tick`: whole seconds from 1 s (lab tests tick fast), or the inventory's units.
fn tick_arg(s: &str) -> Result<Duration, String> {
    let d = seconds_or_duration(s)?;
    if d < Duration::from_secs(1) {
        return Err("a tick shorter than 1s would only burn CPU: use 1s or more".into());
    }
    if d > Duration::from_secs(3600) {
        return Err(
            "a tick longer than 1h would leave expired checkouts open that long: use at most 1h"
                .into(),
        );
    }
    Ok(d)
}

fn spread_arg(s: &str) -> Result<Duration, String> {
    let d = seconds_or_duration(s)?;
    if d > Duration::from_secs(86_400) {
        return Err("spread missed runs over at most a day (1d)".into());
    }
    Ok(d)
}

fn seconds_or_duration(s: &str) -> Result<Duration, String> {
    match s.strip_suffix('s').and_then(|n| n.parse::<u64>().ok()) {
        Some(secs) => Ok(Duration::from_secs(secs)),
        None => duration_arg(s),
    }
}

pub fn run(g: &Global, a: ServeArgs) -> CliResult {
    if !(1..=3600).contains(&a.step_timeout) {
        return Err(usage("--step-timeout is in seconds, from 1 to 3600"));
    }
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
        _ => None,
    };
    let vault = open_vault(g)?;
    let options = ServeOptions {
        inventory: a.inventory,
        listen: a.listen,
        tls,
        secure_cookies: a.secure_cookies,
        tick: a.tick,
        catch_up_spread: a.catch_up_spread,
        concurrency: usize::from(a.concurrency),
        step_timeout: Duration::from_secs(a.step_timeout),
        clock: super::output::clock(),
    };
    server::run(vault, options).map_err(|e| Failure {
        code: 1,
        kind: Some("serve_failed"),
        error: anyhow::Error::new(e),
    })?;
    Ok(0)
}

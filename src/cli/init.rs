//! `rotor init`: create the vault and its master key.

use super::output::{data_dir, key_source};
use super::{CliResult, Global};
use crate::store::{KeySource, Vault};

pub fn run(g: &Global) -> CliResult {
    let dir = data_dir(g)?;
    let source = key_source(g, &dir);
    Vault::init(&dir, source.clone())?;
    outln!("Created the vault in {}", dir.display());
    match source {
        KeySource::File(path) => outln!(
            "Master key: {} (mode 0400). Back it up somewhere safe and separate: without it the vault cannot be opened.",
            path.display()
        ),
        KeySource::Keyring { service, user } => {
            outln!("Master key: in the OS keyring (service `{service}`, user `{user}`).")
        }
    }
    Ok(0)
}

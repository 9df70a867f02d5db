//! `rotor init`: create the vault and its master key.

use super::output::{data_dir, key_source};
use super::{CliResult, Global, OutputFormat};
use crate::store::{KeySource, Vault};

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// `text` for people, `json` for programs.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

pub fn run(g: &Global, a: InitArgs) -> CliResult {
    let dir = data_dir(g)?;
    let source = key_source(g, &dir);
    Vault::init(&dir, source.clone())?;
    if a.output == OutputFormat::Json {
        let key = match &source {
            KeySource::File(path) => serde_json::json!({ "file": path.display().to_string() }),
            KeySource::Keyring { service, user } => {
                serde_json::json!({ "keyring": { "service": service, "user": user } })
            }
        };
        outln!(
            "{}",
            serde_json::json!({ "data_dir": dir.display().to_string(), "master_key": key })
        );
        return Ok(0);
    }
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

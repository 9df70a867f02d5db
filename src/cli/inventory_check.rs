//! `rotor inventory check -i FILE`: validate and summarise.

use std::path::PathBuf;

use clap::Args;

use super::CliResult;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The inventory file (YAML).
    #[arg(short, long, value_name = "FILE")]
    pub inventory: PathBuf,
}

pub fn run(a: CheckArgs) -> CliResult {
    let inv = crate::inventory::load(&a.inventory)?;
    out!("{}", inv.summary());
    Ok(0)
}

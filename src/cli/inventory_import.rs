//! `rotor inventory import ansible FILE`: convert an Ansible inventory into a rotor inventory.

use clap::{Args, Subcommand};

use super::CliResult;

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// An Ansible inventory (INI or YAML).
    Ansible(AnsibleArgs),
}

#[derive(Debug, Args)]
pub struct AnsibleArgs {
    /// The Ansible inventory file (INI or YAML).
    pub file: std::path::PathBuf,
}

pub fn run(c: ImportCommand) -> CliResult {
    match c {
        ImportCommand::Ansible(_) => Err(super::usage("not built yet")),
    }
}

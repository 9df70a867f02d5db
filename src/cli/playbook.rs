//! `rotor playbook check FILE` and `rotor playbook list [-i INVENTORY]`: validate one
//! playbook; show the playbooks an inventory's accounts may name.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{CliResult, OutputFormat};
use crate::recipe::{Body, Catalog, PlaybookError, Recipe};

#[derive(Debug, Subcommand)]
pub enum PlaybookCommand {
    /// Validate one playbook file: exit 0 with a summary, or its problems with file and line.
    Check(CheckArgs),
    /// List the available playbooks: built in, and those of an inventory's `playbooks_dir:`.
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The playbook file (YAML).
    pub file: PathBuf,
    /// `text` for people, `json` for programs.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Also list the playbooks of this inventory's `playbooks_dir:`.
    #[arg(short, long, value_name = "FILE", env = "ROTOR_INVENTORY")]
    pub inventory: Option<PathBuf>,
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

pub fn run(command: PlaybookCommand) -> CliResult {
    match command {
        PlaybookCommand::Check(a) => check(a),
        PlaybookCommand::List(a) => list(a),
    }
}

fn check(a: CheckArgs) -> CliResult {
    let recipe = crate::recipe::load_file(&a.file)?;
    // A name the inventory would refuse (a built-in's) is refused here too.
    if let Some(problem) = Catalog::built_in().clash(&recipe) {
        return Err(PlaybookError::Invalid {
            problems: vec![problem],
        }
        .into());
    }
    if a.output == OutputFormat::Json {
        outln!(
            "{}",
            serde_json::json!({
                "file": a.file.display().to_string(),
                "playbook": recipe.name,
                "valid": true,
                "kind": kind(&recipe),
                "what": what(&recipe),
            })
        );
        return Ok(0);
    }
    outln!(
        "{}: playbook `{}` is valid ({}, {})",
        crate::text::escape(&a.file.display().to_string()),
        crate::text::escape(&recipe.name),
        kind(&recipe),
        what(&recipe)
    );
    Ok(0)
}

fn list(a: ListArgs) -> CliResult {
    let catalog = match &a.inventory {
        Some(path) => crate::inventory::load(path)?.playbooks.as_ref().clone(),
        None => Catalog::built_in(),
    };
    if a.output == OutputFormat::Json {
        let rows: Vec<serde_json::Value> = catalog
            .recipes()
            .map(|r| {
                serde_json::json!({
                    "name": r.name,
                    "kind": kind(r),
                    "source": r.source.to_string(),
                    "description": r.description,
                    "vars": r.vars.keys().collect::<Vec<_>>(),
                })
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "schema_version": crate::report::SCHEMA_VERSION,
                "playbooks": rows,
            }))?
        );
        return Ok(0);
    }
    let rows: Vec<[String; 4]> = catalog
        .recipes()
        .map(|r| {
            [
                r.name.clone(),
                kind(r).to_owned(),
                r.source.to_string(),
                r.description.clone(),
            ]
        })
        .collect();
    out!(
        "{}",
        crate::report::table(&["PLAYBOOK", "KIND", "SOURCE", "DESCRIPTION"], &rows)
    );
    Ok(0)
}

fn kind(recipe: &Recipe) -> &'static str {
    match recipe.kind {
        crate::target::CredentialKind::Password => "password",
        crate::target::CredentialKind::SshKey => "ssh-key",
    }
}

/// `5 steps` or `the ldap adapter`.
fn what(recipe: &Recipe) -> String {
    match &recipe.body {
        Body::Steps(s) => {
            let n = s.read_restore_point.len()
                + s.set.len()
                + s.prove.len()
                + s.undo.len()
                + s.retire.len();
            format!("{n} steps")
        }
        Body::Adapter(adapter) => format!("run by the {adapter} adapter"),
    }
}

//! `rotor token create|list|revoke`: the API tokens of the daemon to come (`rotor serve`).
//! A token is printed once, at creation; the vault keeps only its keyed hash.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use super::output::open_vault;
use super::{CliResult, Global, OutputFormat};
use crate::ops::Actor;
use crate::report::table;
use crate::store::Role;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token; it is printed once (keep it like a password).
    Create(CreateArgs),
    /// Every token: name, role, validity (never the tokens themselves).
    List(ListArgs),
    /// Revoke a token: its calls are refused from now on.
    Revoke(RevokeArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// Everything: rotations, the audit log.
    Admin,
    /// Approve other people's checkouts.
    Approver,
    /// Request, claim and check in checkouts.
    Requester,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[arg(long, value_enum)]
    pub role: RoleArg,
    /// Who uses it: the audit log names this for every call made with it.
    #[arg(long)]
    pub name: String,
    /// How long it is valid (e.g. 30d, 12h) [at most 366d].
    #[arg(long, default_value = "30d", value_parser = super::duration_arg)]
    pub ttl: Duration,
    /// `text` for people, `json` for programs.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// `text` for people, `json` for programs.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The token's number (`rotor token list`).
    pub id: i64,
    /// `text` for people, `json` for programs.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

pub fn run(g: &Global, c: TokenCommand) -> CliResult {
    let vault = open_vault(g)?;
    let by = Actor::of_this_process();
    match c {
        TokenCommand::Create(a) => {
            let role = match a.role {
                RoleArg::Admin => Role::Admin,
                RoleArg::Approver => Role::Approver,
                RoleArg::Requester => Role::Requester,
            };
            let (t, token) = vault.token_create(&by, &a.name, role, a.ttl)?;
            eprintln!(
                "Token {} for {} ({}), valid until {}. It is shown once, below; rotor keeps only its hash.",
                t.id,
                crate::text::escape(&t.name),
                t.role.as_str(),
                t.expires_at.format("%Y-%m-%d %H:%M UTC")
            );
            // A credential of the API, printed on purpose, to stdout only.
            if a.output == OutputFormat::Json {
                let value = serde_json::json!({
                    "id": t.id,
                    "name": t.name,
                    "role": t.role.as_str(),
                    "expires_at": t.expires_at.to_rfc3339(),
                });
                super::output::print_json_with_secret(value, &token);
                return Ok(0);
            }
            outln!("{}", token.expose());
            Ok(0)
        }
        TokenCommand::List(a) => {
            let tokens = vault.tokens()?;
            if a.output == OutputFormat::Json {
                let rows: Vec<serde_json::Value> = tokens
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "id": t.id,
                            "name": t.name,
                            "role": t.role.as_str(),
                            "created_at": t.created_at.to_rfc3339(),
                            "created_by": t.created_by,
                            "expires_at": t.expires_at.to_rfc3339(),
                            "revoked_at": t.revoked_at.map(|r| r.to_rfc3339()),
                        })
                    })
                    .collect();
                outln!("{}", serde_json::json!({ "tokens": rows }));
                return Ok(0);
            }
            if tokens.is_empty() {
                outln!("No tokens yet: `rotor token create --role ROLE --name NAME`.");
                return Ok(0);
            }
            let rows: Vec<[String; 5]> = tokens
                .iter()
                .map(|t| {
                    [
                        t.id.to_string(),
                        t.name.clone(),
                        t.role.as_str().to_owned(),
                        t.expires_at.format("%Y-%m-%d %H:%M").to_string(),
                        t.revoked_at.map_or_else(
                            || "valid".to_owned(),
                            |r| format!("revoked {}", r.format("%Y-%m-%d %H:%M")),
                        ),
                    ]
                })
                .collect();
            out!(
                "{}",
                table(&["ID", "NAME", "ROLE", "EXPIRES (UTC)", "STATE"], &rows)
            );
            Ok(0)
        }
        TokenCommand::Revoke(a) => {
            let t = vault.token_revoke(&by, a.id)?;
            eprintln!(
                "Token {} ({}) is revoked.",
                t.id,
                crate::text::escape(&t.name)
            );
            if a.output == OutputFormat::Json {
                outln!("{}", serde_json::json!({ "id": t.id, "revoked": true }));
            }
            Ok(0)
        }
    }
}

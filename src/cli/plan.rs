//! `rotor plan`: parse the arguments, call [`ops::plan`](crate::ops::plan) (what would rotate
//! and why; changes nothing, connects to no host, binds read-only to selected directories to
//! resolve their searches), print it. A directory that cannot be planned, or accounts a
//! rotation would leave alone, make the command exit 3 (partial), as `rotate` would.

use clap::Args;

use super::context;
use super::rotate::{Resolved, Selection, resolve};
use super::{CliResult, Global, OutputFormat};
use crate::inventory::Policy;
use crate::ops::plan::{Plan, PlanRequest, Why};
use crate::ops::{self, Actor};
use crate::policy::entropy_bits;
use crate::report::{plural, table};
use crate::text::escape;

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// `text` for people, `json` for programs.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

const WHEN: &str = "%Y-%m-%d %H:%M UTC";

fn policy_text(policy: &Policy) -> String {
    format!(
        "{} ({} chars, ~{:.0} bits)",
        policy.name,
        policy.length,
        entropy_bits(policy)
    )
}

pub fn run(g: &Global, a: PlanArgs) -> CliResult {
    let Resolved {
        inv,
        selected,
        label,
    } = resolve(&a.selection)?;
    let session = context::open(g)?;
    let req = PlanRequest {
        inventory: &inv,
        selection: selected,
        actor: Actor::of_this_process(),
    };
    let plan = ops::plan::plan(&session.ctx, req)?;
    if a.output == OutputFormat::Json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&plan_json(&plan, &label))?
        );
        return Ok(exit_code(&plan));
    }
    let mut dir_lines = Vec::new();
    for d in &plan.directories {
        let mut from = Vec::new();
        if d.n_listed_dns > 0 {
            from.push(plural(d.n_listed_dns, "listed DN", "listed DNs"));
        }
        if d.n_searches > 0 {
            from.push(plural(d.n_searches, "search", "searches"));
        }
        // Thousands of accounts: one line on how old their secrets are, not a row each.
        let mut why = Vec::new();
        if d.n_new > 0 {
            why.push(format!("{} never rotated by rotor", d.n_new));
        }
        if let Some(t) = d.oldest {
            why.push(format!(
                "{} in the vault, the oldest set {}",
                d.n_accounts - d.n_new,
                t.format(WHEN)
            ));
        }
        dir_lines.push(format!(
            "  {}: {} from {} ({}), policy {}, playbook ldap-password",
            d.name,
            plural(d.n_accounts, "account", "accounts"),
            from.join(" and "),
            why.join("; "),
            policy_text(&d.policy),
        ));
    }
    for f in &plan.unplanned {
        dir_lines.push(format!(
            "  {}: cannot be planned ({}): {}",
            f.directory,
            f.class,
            escape(&f.message)
        ));
    }
    for cred in &plan.missing {
        dir_lines.push(format!("  {cred}: not found in the directory"));
    }
    let host_lines: Vec<String> = plan
        .unplanned_hosts
        .iter()
        .map(|u| format!("  {}: cannot be rotated: {}", u.host, escape(&u.why)))
        .collect();
    for (why, creds) in &plan.refused {
        let more = match creds.len() {
            1 => String::new(),
            n => format!(" and {} more", n - 1),
        };
        dir_lines.push(format!(
            "  {} will not be rotated ({}{more}): {}",
            plural(creds.len(), "account", "accounts"),
            creds[0],
            escape(why)
        ));
    }
    let rows: Vec<[String; 4]> = plan
        .credentials
        .iter()
        .map(|c| {
            let why = match c.why {
                Why::NeverRotated => "never rotated by rotor".to_owned(),
                Why::Interrupted => "an interrupted rotation will be recovered first".to_owned(),
                Why::CurrentSince(t) => format!("current secret set {}", t.format(WHEN)),
                Why::NoCurrentSecret => "no current secret in the vault".to_owned(),
            };
            [
                c.cred.to_string(),
                c.playbook.clone(),
                policy_text(&c.policy),
                why,
            ]
        })
        .collect();
    let mut parts = Vec::new();
    if plan.n_hosts > 0 || plan.n_directories == 0 {
        parts.push(format!(
            "{} on {}",
            rows.len(),
            plural(plan.n_hosts, "host", "hosts")
        ));
    }
    if plan.n_directories > 0 {
        parts.push(format!(
            "{} in {}",
            plan.n_directory_accounts(),
            plural(plan.n_directories, "directory", "directories")
        ));
    }
    outln!(
        "Plan for scope `{label}`: {} would rotate (requested now): {}.\n",
        plural(plan.n_credentials(), "credential", "credentials"),
        parts.join(", ")
    );
    if !dir_lines.is_empty() {
        outln!(
            "Directories (searches resolved now):\n{}\n",
            dir_lines.join("\n")
        );
    }
    if !host_lines.is_empty() {
        outln!("Hosts:\n{}\n", host_lines.join("\n"));
    }
    if !rows.is_empty() {
        outln!(
            "{}",
            table(&["CREDENTIAL", "PLAYBOOK", "POLICY", "WHY"], &rows)
        );
    }
    outln!("Nothing was changed. Run the same selection with `rotor rotate` to apply.");
    if !plan.unplanned.is_empty() {
        // Partial, as `rotate` reports a directory it could not open: the plan above is
        // missing that directory's accounts, which a script must not take for "nothing to do".
        eprintln!(
            "rotor: {} could not be planned (see the Directories section above); fix it and plan again",
            plural(plan.unplanned.len(), "directory", "directories")
        );
        return Ok(3);
    }
    if !plan.unplanned_hosts.is_empty() {
        eprintln!(
            "rotor: {} cannot be rotated (see the Hosts section above); fix it and plan again",
            plural(plan.unplanned_hosts.len(), "host", "hosts")
        );
        return Ok(3);
    }
    if plan.n_refused() > 0 {
        // Partial too: `rotate` will leave these accounts alone and exit 3.
        eprintln!(
            "rotor: {} will not be rotated (see the Directories section above); fix what it says and plan again",
            plural(plan.n_refused(), "account", "accounts")
        );
        return Ok(3);
    }
    Ok(0)
}

/// 0 when the whole selection can be planned, 3 (partial) when a part cannot: a directory
/// rotor cannot open, accounts a rotation would leave alone, a host it cannot log in to.
fn exit_code(plan: &Plan) -> i32 {
    if plan.unplanned.is_empty() && plan.n_refused() == 0 && plan.unplanned_hosts.is_empty() {
        0
    } else {
        3
    }
}

fn plan_json(plan: &Plan, label: &str) -> serde_json::Value {
    use serde_json::json;
    let policy =
        |p: &Policy| json!({ "name": p.name, "length": p.length, "bits": entropy_bits(p).floor() });
    let credentials: Vec<serde_json::Value> = plan
        .credentials
        .iter()
        .map(|c| {
            let (why, since) = match c.why {
                Why::NeverRotated => ("never_rotated", None),
                Why::Interrupted => ("interrupted", None),
                Why::CurrentSince(t) => ("current_since", Some(t.to_rfc3339())),
                Why::NoCurrentSecret => ("no_current_secret", None),
            };
            json!({
                "credential": c.cred.to_string(),
                "playbook": c.playbook,
                "policy": policy(&c.policy),
                "why": why,
                "current_since": since,
            })
        })
        .collect();
    let directories: Vec<serde_json::Value> = plan
        .directories
        .iter()
        .map(|d| {
            json!({
                "directory": d.name,
                "accounts": d.n_accounts,
                "listed_dns": d.n_listed_dns,
                "searches": d.n_searches,
                "never_rotated": d.n_new,
                "oldest_current_since": d.oldest.map(|t| t.to_rfc3339()),
                "policy": policy(&d.policy),
            })
        })
        .collect();
    json!({
        "schema_version": crate::report::SCHEMA_VERSION,
        "scope": label,
        "n_credentials": plan.n_credentials(),
        "n_hosts": plan.n_hosts,
        "n_directories": plan.n_directories,
        "credentials": credentials,
        "directories": directories,
        "unplanned_directories": plan.unplanned.iter().map(|f| json!({
            "directory": f.directory,
            "class": f.class.to_string(),
            "message": f.message,
        })).collect::<Vec<_>>(),
        "unplanned_hosts": plan.unplanned_hosts.iter().map(|u| json!({
            "host": u.host.to_string(),
            "why": u.why,
        })).collect::<Vec<_>>(),
        "missing": plan.missing.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        "refused": plan.refused.iter().map(|(why, creds)| json!({
            "why": why,
            "credentials": creds.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "complete": exit_code(plan) == 0,
    })
}

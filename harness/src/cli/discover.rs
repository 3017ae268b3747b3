//! `stakeguard discover`: the endpoints in recorded traffic, their coverage by a policy,
//! and a skeleton policy for the ones nothing covers (the work is in
//! [`stakeguard_harness::inventory`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use stakeguard_harness::inventory::{discover, merge, skeleton};
use stakeguard_policies::Policy;
use stakeguard_policies::json::Json;

use super::{CliError, TrafficArgs, read_traffic, resolve_policy};

/// How `discover` prints the endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON document for tools.
    Json,
}

/// Arguments of `discover`.
#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// Traffic files.
    #[command(flatten)]
    pub traffic: TrafficArgs,
    /// A policy to measure coverage against (file or JSON text).
    #[arg(long, value_name = "POLICY")]
    pub policy: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write a policy listing the uncovered endpoints (merged into --policy if given).
    #[arg(long, value_name = "FILE")]
    pub write_skeleton: Option<PathBuf>,
}

/// Runs `discover`.
pub fn run(args: DiscoverArgs) -> Result<ExitCode, CliError> {
    let records = read_traffic(&args.traffic)?;
    let policy_text = match &args.policy {
        Some(arg) => Some(policy_text(arg)?),
        None => None,
    };
    let policy = match &policy_text {
        Some(text) => Some(Policy::from_json(text).map_err(|e| {
            CliError::Usage(format!(
                "the policy is refused:\n{e}\nfix it first (`stakeguard check` shows the same)"
            ))
        })?),
        None => None,
    };
    let inventory = discover::discover(&records, policy.as_ref());
    match args.format {
        Format::Table => print!("{}", discover::render_table(&inventory)),
        Format::Json => println!("{}", to_json(&inventory)?),
    }
    if let Some(path) = &args.write_skeleton {
        let document = match &policy_text {
            Some(text) => Some(
                Json::parse(text)
                    .map(Json::into_owned)
                    .map_err(|e| CliError::Usage(format!("policy: {e}")))?,
            ),
            None => None,
        };
        let merged =
            skeleton::skeleton(document, &inventory).map_err(|e| CliError::Usage(e.to_string()))?;
        for line in merged.skipped.iter().chain(&merged.conflicts) {
            eprintln!("stakeguard: skeleton: {line}");
        }
        let text = merge::finish(&merged).map_err(|e| {
            CliError::Usage(format!(
                "the skeleton would be refused (a bug; please report it):\n{e}"
            ))
        })?;
        std::fs::write(path, text).map_err(|source| CliError::Io {
            context: format!("failed to write {}", path.display()),
            source,
        })?;
        eprintln!(
            "stakeguard: wrote {} ({} changes): give each `unassigned` API its owner and tier",
            path.display(),
            merged.changes.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The policy as text (it must be UTF-8 JSON).
pub fn policy_text(arg: &str) -> Result<String, CliError> {
    String::from_utf8(resolve_policy(arg)?)
        .map_err(|_| CliError::Usage(format!("policy `{arg}` is not UTF-8 text")))
}

fn to_json(inventory: &discover::Inventory) -> Result<String, CliError> {
    serde_json::to_string_pretty(inventory)
        .map_err(|e| CliError::Usage(format!("cannot write JSON: {e}")))
}

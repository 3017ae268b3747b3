//! `stakeguard import`: the APIs of an OpenAPI document, merged into a policy or into a
//! new one (the work is in [`stakeguard_harness::inventory`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use stakeguard_harness::inventory::merge::{self, Defaults};
use stakeguard_harness::inventory::openapi::{self, GroupBy, Options};
use stakeguard_harness::inventory::{UNASSIGNED, UNCLASSIFIED, source};
use stakeguard_harness::traffic::time::{format_rfc3339, parse_rfc3339};
use stakeguard_policies::json::Json;

use super::CliError;
use super::discover::policy_text;

/// How operations become APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Grouping {
    /// One API per tag (untagged operations by path group).
    Tag,
    /// One API per path group (the first segment that is not `api` or a version).
    Path,
}

/// Arguments of `import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The OpenAPI 3.0 or 3.1 document (JSON or YAML).
    #[arg(value_name = "OPENAPI")]
    pub openapi: PathBuf,
    /// The tier of APIs the document gives none (`x-stakeguard-tier`).
    #[arg(long, value_name = "T", default_value = UNCLASSIFIED)]
    pub tier: String,
    /// The owner of APIs the document gives none (`x-stakeguard-owner`).
    #[arg(long, value_name = "O", default_value = UNASSIGNED)]
    pub owner: String,
    /// Merge into this policy (file or JSON text) instead of starting a new one.
    #[arg(long, value_name = "POLICY")]
    pub into: Option<String>,
    /// How operations become APIs.
    #[arg(long, value_enum, default_value_t = Grouping::Tag)]
    pub group_by: Grouping,
    /// `deprecated_at` of deprecated operations that carry no
    /// `x-stakeguard-deprecated-at` (RFC 3339; default: today, midnight UTC).
    #[arg(long, value_name = "TIME")]
    pub deprecated_at: Option<String>,
    /// Write the policy here instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Runs `import`.
pub fn run(args: ImportArgs) -> Result<ExitCode, CliError> {
    let deprecated_at = match &args.deprecated_at {
        Some(time) => {
            parse_rfc3339(time).map_err(|e| CliError::Usage(format!("--deprecated-at: {e}")))?;
            time.clone()
        }
        None => today(),
    };
    let doc = source::read(&args.openapi).map_err(|e| CliError::Usage(e.to_string()))?;
    let options = Options {
        group_by: match args.group_by {
            Grouping::Tag => GroupBy::Tag,
            Grouping::Path => GroupBy::Path,
        },
        deprecated_at,
    };
    let described = openapi::describe(&doc, &options).map_err(|problems| {
        let lines: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {p}", args.openapi.display()))
            .collect();
        CliError::Usage(lines.join("\n"))
    })?;
    let policy = match &args.into {
        Some(arg) => Json::parse(&policy_text(arg)?)
            .map(Json::into_owned)
            .map_err(|e| CliError::Usage(format!("--into: {e}")))?,
        None => Json::Object(vec![
            (
                "revision".into(),
                Json::string(format!("imported: {}", described.title)),
            ),
            ("tiers".into(), Json::Object(Vec::new())),
            ("apis".into(), Json::Array(Vec::new())),
        ]),
    };
    let defaults = Defaults {
        owner: args.owner.clone(),
        tier: args.tier.clone(),
    };
    let merged = merge::merge(policy, &described.apis, &defaults)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let text = merge::finish(&merged)
        .map_err(|e| CliError::Usage(format!("the merged policy is refused:\n{e}")))?;
    for note in &described.notes {
        eprintln!("stakeguard: note: {note}");
    }
    for line in &merged.changes {
        eprintln!("stakeguard: {line}");
    }
    for line in &merged.skipped {
        eprintln!("stakeguard: skipped: {line}");
    }
    for line in &merged.conflicts {
        eprintln!("stakeguard: conflict: {line}");
    }
    eprintln!(
        "stakeguard: {} APIs from {}: {} changes, {} conflicts, {} skipped",
        described.apis.len(),
        args.openapi.display(),
        merged.changes.len(),
        merged.conflicts.len(),
        merged.skipped.len()
    );
    match &args.output {
        Some(path) => std::fs::write(path, text).map_err(|source| CliError::Io {
            context: format!("failed to write {}", path.display()),
            source,
        })?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Midnight UTC of today, RFC 3339.
fn today() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let midnight = now - now.rem_euclid(86_400);
    format_rfc3339(midnight * 1_000_000_000).replace(".000Z", "Z")
}

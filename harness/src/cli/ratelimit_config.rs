//! `stakeguard ratelimit-config`: the rate limit service's configuration for a policy's
//! service-counted controls, for services that read limits from their own configuration
//! (`counters.service.limits: config`, or windows no request can name).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use stakeguard_harness::ratelimit::{ConfigFormat, service_config};

use super::{CliError, resolve_policy};

/// The file formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// envoyproxy/ratelimit's configuration (one domain).
    EnvoyRatelimit,
    /// Limitador's limits file.
    Limitador,
}

/// Arguments of `ratelimit-config`.
#[derive(Debug, Args)]
pub struct RatelimitConfigArgs {
    /// The policy file (or the policy JSON itself).
    #[arg(value_name = "POLICY")]
    pub policy: String,
    /// The service's configuration format.
    #[arg(long, value_enum, default_value = "envoy-ratelimit")]
    pub format: Format,
    /// Write the file here instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Runs `ratelimit-config`.
pub fn run(args: RatelimitConfigArgs) -> Result<ExitCode, CliError> {
    let text = String::from_utf8_lossy(&resolve_policy(&args.policy)?).into_owned();
    let policy = stakeguard_policies::Policy::from_json(&text)
        .map_err(|e| CliError::Usage(format!("the policy is refused:\n{e}")))?;
    let format = match args.format {
        Format::EnvoyRatelimit => ConfigFormat::EnvoyRatelimit,
        Format::Limitador => ConfigFormat::Limitador,
    };
    let yaml = service_config(&policy.service_limits(), format, policy.revision())
        .map_err(|e| CliError::Usage(format!("ratelimit-config: {e}")))?;
    match &args.output {
        Some(path) => std::fs::write(path, yaml).map_err(|source| CliError::Io {
            context: format!("failed to write {}", path.display()),
            source,
        })?,
        None => print!("{yaml}"),
    }
    Ok(ExitCode::SUCCESS)
}

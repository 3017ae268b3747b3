//! The `stakeguard` command line: argument parsing (clap) here, one file per subcommand
//! for resolving the arguments and running it.

pub mod bench;
pub mod check;
pub mod diff;
pub mod discover;
pub mod import;
pub mod ratelimit_config;
pub mod replay;
pub mod report;

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use stakeguard_harness::abi::LogLevel;
use stakeguard_harness::callouts::CalloutConfig;
use stakeguard_harness::replay::FailurePolicy;
use stakeguard_harness::traffic::{self, Record};
use stakeguard_harness::{HarnessConfig, HarnessError, LoadError};

/// The default module path, relative to the repository root.
pub const DEFAULT_MODULE: &str = "target/wasm32-wasip1/release/stakeguard_filter.wasm";

/// stakeguard: replay recorded traffic through a proxy-wasm module as Envoy would run it.
#[derive(Debug, Parser)]
#[command(name = "stakeguard", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replay traffic through the module and report what it did to each request.
    Replay(replay::ReplayArgs),
    /// Start the module with a policy and say whether it accepts it.
    Check(check::CheckArgs),
    /// Replay traffic under two policies and show the requests whose fate changed.
    Diff(diff::DiffArgs),
    /// Measure replay throughput on one worker.
    Bench(bench::BenchArgs),
    /// Group recorded traffic into endpoints and show what a policy covers.
    Discover(discover::DiscoverArgs),
    /// Turn an OpenAPI document into policy APIs, merged into a policy or a new one.
    Import(import::ImportArgs),
    /// Render the policy's posture for API owners, with what its controls did to
    /// recorded traffic or in a running Envoy: one HTML page, or JSON.
    Report(report::ReportArgs),
    /// Write the rate limit service's configuration (envoyproxy/ratelimit or Limitador)
    /// for the policy's controls counted in a service.
    RatelimitConfig(ratelimit_config::RatelimitConfigArgs),
}

/// The module to load.
#[derive(Debug, Clone, Args)]
pub struct ModuleArgs {
    /// The proxy-wasm module (.wasm or .wat).
    #[arg(long, value_name = "M.wasm", default_value = DEFAULT_MODULE)]
    pub module: PathBuf,
}

/// How the host runs the module.
#[derive(Debug, Clone, Args)]
pub struct HostArgs {
    /// Worker VMs (Envoy worker threads); connections are spread round-robin.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// What streams meet once a VM trapped, as Envoy's `failure_policy`: fail-closed
    /// (503, the VM stays failed: Envoy's default), fail-open (through without the
    /// filter, the VM stays failed) or fail-reload (503, then a fresh VM). `replay
    /// --envoy` gives Envoy the same.
    #[arg(long, value_name = "POLICY", default_value = "fail-reload", value_parser = failure_policy)]
    pub failure_policy: FailurePolicy,
    /// Split request and response bodies into chunks of this many bytes.
    #[arg(long, value_name = "N")]
    pub chunk_size: Option<usize>,
    /// Harness config with callout stubs (TOML or JSON).
    #[arg(long, value_name = "FILE")]
    pub callouts: Option<PathBuf>,
    /// Answer the policy's rate limit service clusters (`counters.service.cluster`) with
    /// an in-memory RLS v3 service shared by every worker, on the virtual clock (a
    /// cluster the callouts file names keeps the file's stub).
    #[arg(long)]
    pub ratelimit_service: bool,
    /// Seed of WASI random_get.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Host log level: trace, debug, info, warn, error, critical.
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// How long one callback may run before it counts as a hang, in units of about a
    /// microsecond of wall time per thousand (checked by epoch interruption; at least
    /// 20 ms).
    #[arg(long, default_value_t = 2_000_000_000)]
    pub fuel: u64,
    /// Plugin root_id.
    #[arg(long, default_value = "stakeguard")]
    pub root_id: String,
    /// VM id (shared data and queues are scoped by it).
    #[arg(long, default_value = "stakeguard")]
    pub vm_id: String,
    /// VM configuration (file or raw string).
    #[arg(long, value_name = "FILE_OR_STRING")]
    pub vm_config: Option<String>,
    /// VM environment variable, KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
}

/// `--failure-policy`'s parser.
fn failure_policy(name: &str) -> Result<FailurePolicy, String> {
    FailurePolicy::parse(name)
        .ok_or_else(|| format!("expected one of {}", FailurePolicy::NAMES.join(", ")))
}

/// Traffic files.
#[derive(Debug, Clone, Args)]
pub struct TrafficArgs {
    /// Recorded traffic: HAR, Envoy tap traces or stakeguard JSON Lines; a directory is
    /// read whole (its files, by name). Records from several files are replayed in
    /// recorded-time order, ties in argument order; one file keeps its own order.
    #[arg(value_name = "TRAFFIC", required = true)]
    pub traffic: Vec<PathBuf>,
    /// Report unreadable entries and skip them instead of stopping.
    #[arg(long)]
    pub skip_invalid: bool,
}

/// An error of the CLI layer.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// From the harness.
    #[error(transparent)]
    Harness(#[from] HarnessError),
    /// A bad argument.
    #[error("{0}")]
    Usage(String),
    /// An I/O error with context.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

impl From<LoadError> for CliError {
    fn from(e: LoadError) -> Self {
        CliError::Harness(HarnessError::Load(e))
    }
}

/// A policy argument: the file it names, or the policy itself when it is JSON text (it
/// starts with `{`). Anything else must name a file, so a mistyped path says "no such
/// file" instead of being handed to the module as its configuration; configuration text
/// that is not a JSON object (another module's) goes through `--config-string`.
pub fn resolve_policy(arg: &str) -> Result<Vec<u8>, CliError> {
    if arg.is_empty() || arg.trim_start().starts_with('{') {
        return Ok(arg.as_bytes().to_vec());
    }
    std::fs::read(arg).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => CliError::Usage(format!(
            "no such file `{arg}`: give the path of a policy file, or the policy JSON itself; \
             pass other configuration text with --config-string"
        )),
        _ => CliError::Io {
            context: format!("failed to read policy {arg}"),
            source,
        },
    })
}

/// The plugin configuration of a command: `--config-string` as it is, else its policy
/// argument (see [`resolve_policy`]).
pub fn plugin_configuration(
    policy: Option<&str>,
    config_string: Option<&str>,
) -> Result<Vec<u8>, CliError> {
    match config_string {
        Some(text) => Ok(text.as_bytes().to_vec()),
        None => resolve_policy(policy.unwrap_or_default()),
    }
}

/// The VM configuration: the file's contents if it names a file, the string itself
/// otherwise (VM configurations are commonly short words, such as a runtime's flags).
fn file_or_text(arg: &str) -> Result<Vec<u8>, CliError> {
    let path = Path::new(arg);
    if path.is_file() {
        std::fs::read(path).map_err(|source| CliError::Io {
            context: format!("failed to read {}", path.display()),
            source,
        })
    } else {
        Ok(arg.as_bytes().to_vec())
    }
}

/// Reads the module, with a hint when it is the default one and missing.
pub fn read_module(args: &ModuleArgs) -> Result<Vec<u8>, CliError> {
    std::fs::read(&args.module).map_err(|source| {
        CliError::Harness(HarnessError::Load(LoadError::Read {
            path: args.module.clone(),
            source,
        }))
    })
}

/// Builds the harness configuration from host arguments and a policy.
pub fn harness_config(host: &HostArgs, policy: Vec<u8>) -> Result<HarnessConfig, CliError> {
    let log_level = LogLevel::parse(&host.log_level).ok_or_else(|| {
        CliError::Usage(format!(
            "unknown log level `{}`; use trace, debug, info, warn, error or critical",
            host.log_level
        ))
    })?;
    let mut callouts = match &host.callouts {
        Some(p) => CalloutConfig::from_file(p).map_err(HarnessError::from)?,
        None => CalloutConfig::default(),
    };
    // A policy the module refuses says why when it starts; only a valid one that counts
    // nothing in a service is --ratelimit-service's mistake, and one that counts in a
    // cluster nothing answers is worth a note: every such request meets the service's
    // failure_mode, which a replay or a diff would otherwise show without saying why.
    if let Ok(compiled) = stakeguard_policies::Policy::from_json(&String::from_utf8_lossy(&policy))
    {
        let limits = compiled.service_limits();
        if host.ratelimit_service && limits.is_empty() {
            return Err(CliError::Usage(
                "--ratelimit-service: the policy counts no control in a rate limit service; set `counters` (see the README) or drop the option".to_string(),
            ));
        }
        let mut unanswered = Vec::new();
        for limit in &limits {
            if host.ratelimit_service {
                callouts.serve_ratelimit(&limit.cluster);
            } else if !callouts.knows(&limit.cluster) && !unanswered.contains(&&limit.cluster) {
                unanswered.push(&limit.cluster);
            }
        }
        for cluster in unanswered {
            eprintln!(
                "stakeguard: note: policy {} counts in the rate limit service of cluster `{cluster}`, which nothing answers here: those requests meet the service's failure_mode; pass --ratelimit-service (an in-memory service) or stub the cluster in --callouts",
                compiled.revision()
            );
        }
    }
    let mut env = Vec::new();
    for kv in &host.env {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--env `{kv}`: expected KEY=VALUE")))?;
        env.push((k.to_string(), v.to_string()));
    }
    if host.workers == 0 {
        return Err(CliError::Usage("--workers must be at least 1".to_string()));
    }
    Ok(HarnessConfig {
        plugin_configuration: policy,
        vm_configuration: match &host.vm_config {
            Some(v) => file_or_text(v)?,
            None => Vec::new(),
        },
        root_id: host.root_id.clone(),
        vm_id: host.vm_id.clone(),
        plugin_name: host.root_id.clone(),
        workers: host.workers,
        failure_policy: host.failure_policy,
        chunk_size: host.chunk_size,
        callouts,
        seed: host.seed,
        log_level,
        env,
        fuel: host.fuel,
        ..HarnessConfig::default()
    })
}

/// Reads every traffic file and directory, merged in recorded-time order.
pub fn read_traffic(args: &TrafficArgs) -> Result<Vec<Record>, CliError> {
    if !args.skip_invalid {
        return Ok(traffic::read_paths(&args.traffic).map_err(HarnessError::from)?);
    }
    let (records, errors) =
        traffic::read_paths_lenient(&args.traffic).map_err(HarnessError::from)?;
    for e in errors {
        eprintln!("stakeguard: skipped: {e}");
    }
    Ok(records)
}

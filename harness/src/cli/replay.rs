//! `stakeguard replay`: replay traffic, print a table or JSON Lines, compare with a
//! golden file; with `--envoy`, replay it through a real Envoy too and print every record
//! where Envoy and the harness disagree.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use std::io::IsTerminal;

use stakeguard_harness::envoy::{self, CompareOptions, EnvoyOptions};
use stakeguard_harness::{Harness, HarnessConfig, HarnessError, golden};

use super::{
    CliError, HostArgs, ModuleArgs, TrafficArgs, harness_config, plugin_configuration, read_module,
    read_traffic,
};

/// Arguments of `replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The module.
    #[command(flatten)]
    pub module: ModuleArgs,
    /// The policy file (or the policy JSON itself); none by default.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<String>,
    /// The plugin configuration as it is, for text that is not a policy file.
    #[arg(long, value_name = "TEXT", conflicts_with = "policy")]
    pub config_string: Option<String>,
    /// Host options.
    #[command(flatten)]
    pub host: HostArgs,
    /// Output format.
    #[arg(long, value_parser = ["table", "jsonl"], default_value = "table")]
    pub format: String,
    /// Compare the JSON Lines output with this golden file (exit 1 on difference).
    #[arg(long, value_name = "GOLDEN.jsonl")]
    pub expect: Option<PathBuf>,
    /// Print the whole text of bodies the module rewrote (by default their length and
    /// the start of their SHA-256).
    #[arg(long)]
    pub show_bodies: bool,
    /// Rewrite the golden file with this replay's output.
    #[arg(long, requires = "expect")]
    pub update_expect: bool,
    /// Traffic.
    #[command(flatten)]
    pub traffic: TrafficArgs,
    /// Envoy comparison.
    #[command(flatten)]
    pub envoy: EnvoyArgs,
}

/// `--envoy` and its options.
#[derive(Debug, Args)]
pub struct EnvoyArgs {
    /// Also send the traffic through a real Envoy running the module (paced to the
    /// recorded times, an upstream answering the recorded responses) and print every
    /// record where Envoy and the harness disagree (exit 1 if any).
    #[arg(long, conflicts_with_all = ["expect", "update_expect"])]
    pub envoy: bool,
    /// The Envoy binary; default `$STAKEGUARD_ENVOY`, else `.venv/bin/envoy`.
    #[arg(long, value_name = "PATH", requires = "envoy")]
    pub envoy_bin: Option<PathBuf>,
    /// Run recorded time this many times faster: policy durations and the gaps between
    /// records are divided by it (both sides alike). Default 60 for a stakeguard policy;
    /// another module's configuration is not transformed, so its default is 1.
    #[arg(long, value_name = "N", requires = "envoy")]
    pub time_scale: Option<f64>,
    /// Do not carry each record's recorded peer in `x-forwarded-for` (with one more
    /// trusted hop in the policy); every client is then 127.0.0.1. Only a stakeguard
    /// policy can trust one more hop, so another module's records never carry it.
    #[arg(long, requires = "envoy")]
    pub no_forward_identity: bool,
}

/// Runs `replay`.
pub fn run(args: ReplayArgs) -> Result<ExitCode, CliError> {
    let module = read_module(&args.module)?;
    let policy = plugin_configuration(args.policy.as_deref(), args.config_string.as_deref())?;
    if args.envoy.envoy {
        return compare_with_envoy(&args, &module, &policy);
    }
    let config = HarnessConfig {
        show_bodies: args.show_bodies,
        ..harness_config(&args.host, policy)?
    };
    let records = read_traffic(&args.traffic)?;
    let harness = Harness::new(&module, config)?;
    let progress = (std::io::stderr().is_terminal() && records.len() >= 2000).then(|| {
        let bar = indicatif::ProgressBar::new(records.len() as u64);
        bar.set_message("replaying");
        bar
    });
    let report = match &progress {
        Some(bar) => {
            harness.replay_with_progress(&records, &mut |done| bar.set_position(done as u64))?
        }
        None => harness.replay(&records)?,
    };
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let jsonl = report.to_jsonl();
    match args.format.as_str() {
        "jsonl" => print!("{jsonl}"),
        _ => print!("{}", report.to_table()),
    }
    if let Some(path) = &args.expect {
        if args.update_expect {
            std::fs::write(path, &jsonl).map_err(|source| CliError::Io {
                context: format!("failed to write {}", path.display()),
                source,
            })?;
            eprintln!("stakeguard: wrote {}", path.display());
            return Ok(ExitCode::SUCCESS);
        }
        let expected = std::fs::read_to_string(path).map_err(|source| {
            CliError::Harness(HarnessError::Io {
                context: format!(
                    "failed to read golden file {}; create it with --update-expect",
                    path.display()
                ),
                source,
            })
        })?;
        let diffs = golden::compare(&expected, &jsonl);
        if !diffs.is_empty() {
            eprint!("{}", golden::render(&diffs));
            eprintln!(
                "stakeguard: {} difference(s) from {}; rerun with --update-expect if the change is intended",
                diffs.len(),
                path.display()
            );
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `replay --envoy`: the same records through Envoy and the harness, and the mismatches.
fn compare_with_envoy(
    args: &ReplayArgs,
    module: &[u8],
    policy: &[u8],
) -> Result<ExitCode, CliError> {
    let base = harness_config(&args.host, Vec::new())?;
    super::check::refuse_unless_accepted(
        module,
        HarnessConfig {
            plugin_configuration: policy.to_vec(),
            ..base.clone()
        },
    )?;
    let records = read_traffic(&args.traffic)?;
    let options = CompareOptions {
        envoy: EnvoyOptions {
            binary: args
                .envoy
                .envoy_bin
                .clone()
                .unwrap_or_else(|| envoy::process::default_binary(Path::new("."))),
            module: args.module.module.clone(),
            concurrency: u32::try_from(args.host.workers).unwrap_or(u32::MAX),
        },
        time_scale: args
            .envoy
            .time_scale
            .unwrap_or_else(|| envoy::default_time_scale(policy)),
        forward_identity: envoy::is_stakeguard_policy(policy) && !args.envoy.no_forward_identity,
    };
    let run = envoy::compare_recording(&options, module, policy, &records, base)
        .map_err(|e| CliError::Usage(format!("envoy comparison: {e}")))?;
    print!("{}", run.comparison.render());
    eprintln!(
        "stakeguard: envoy took {:.1?} ({} over mTLS), the harness {:.1?}",
        run.envoy.elapsed, run.envoy.mtls, run.harness_elapsed
    );
    Ok(match run.comparison.mismatches.is_empty() {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(1),
    })
}

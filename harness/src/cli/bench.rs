//! `stakeguard bench`: requests per second of replays on one worker, or with
//! `--host-calls` the host calls one replay makes, per callback and kind.

use std::process::ExitCode;

use clap::Args;

use stakeguard_harness::Harness;
use stakeguard_harness::bench::{bench, host_calls};

use super::{
    CliError, HostArgs, ModuleArgs, TrafficArgs, harness_config, plugin_configuration, read_module,
    read_traffic,
};

/// Arguments of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The module.
    #[command(flatten)]
    pub module: ModuleArgs,
    /// The policy file (or the policy JSON itself); none by default.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<String>,
    /// The plugin configuration as it is, for text that is not a policy file.
    #[arg(long, value_name = "TEXT", conflicts_with = "policy")]
    pub config_string: Option<String>,
    /// Timed replays.
    #[arg(long, default_value_t = 20)]
    pub iterations: usize,
    /// Count the host calls of one replay (after one to warm up) instead of timing:
    /// per callback and kind, with bytes copied each way and guest allocations.
    #[arg(long)]
    pub host_calls: bool,
    /// Host options.
    #[command(flatten)]
    pub host: HostArgs,
    /// Traffic.
    #[command(flatten)]
    pub traffic: TrafficArgs,
}

/// Runs `bench`.
pub fn run(args: BenchArgs) -> Result<ExitCode, CliError> {
    let module = read_module(&args.module)?;
    let mut config = harness_config(
        &args.host,
        plugin_configuration(args.policy.as_deref(), args.config_string.as_deref())?,
    )?;
    config.workers = 1;
    let records = read_traffic(&args.traffic)?;
    let harness = Harness::new(&module, config)?;
    if args.host_calls {
        let calls = host_calls(&harness, &records)?;
        println!("host calls of {} requests, one worker:", records.len());
        print!("{}", calls.table(records.len()));
        return Ok(ExitCode::SUCCESS);
    }
    let r = bench(&harness, &records, args.iterations)?;
    println!(
        "{} requests x {} iterations in {:.3}s: {:.0} requests/s ({:.1} us/request)",
        r.requests,
        r.iterations,
        r.elapsed.as_secs_f64(),
        r.requests_per_sec,
        r.micros_per_request
    );
    Ok(ExitCode::SUCCESS)
}

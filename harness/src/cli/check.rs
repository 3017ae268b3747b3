//! `stakeguard check`: start the module with a policy and say whether it took it.

use std::process::ExitCode;

use clap::Args;

use stakeguard_harness::check::check;
use stakeguard_harness::{Harness, HarnessConfig, HarnessError};

use super::{CliError, HostArgs, ModuleArgs, harness_config, plugin_configuration, read_module};

/// Arguments of `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The policy file (or the policy JSON itself).
    #[arg(value_name = "POLICY", required_unless_present = "config_string")]
    pub policy: Option<String>,
    /// The plugin configuration as it is, for text that is not a policy file.
    #[arg(long, value_name = "TEXT", conflicts_with = "policy")]
    pub config_string: Option<String>,
    /// Once the module took the policy, print every API's effective controls (its tier
    /// over the `defaults`, its own overrides over both) in business words, and which
    /// block wrote each.
    #[arg(long)]
    pub explain: bool,
    /// The module.
    #[command(flatten)]
    pub module: ModuleArgs,
    /// Host options.
    #[command(flatten)]
    pub host: HostArgs,
}

/// Runs `check`.
pub fn run(args: CheckArgs) -> Result<ExitCode, CliError> {
    let module = read_module(&args.module)?;
    let policy = plugin_configuration(args.policy.as_deref(), args.config_string.as_deref())?;
    let mut config = harness_config(&args.host, policy.clone())?;
    config.workers = 1;
    let harness = Harness::new(&module, config)?;
    let result = check(&harness)?;
    for line in &result.logs {
        println!("{line}");
    }
    match result.refusal() {
        None => {
            println!(
                "ok: {} accepted the configuration",
                args.module.module.display()
            );
            if args.explain {
                let text = String::from_utf8_lossy(&policy);
                let explained = stakeguard_policies::explain::explain(&text)
                    .map_err(|e| CliError::Usage(format!("cannot explain the policy: {e}")))?;
                print!("\n{explained}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(why) => {
            println!("rejected: {why}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Starts the module once with `config` and refuses, as a replay would, when it does not
/// take its configuration: for commands that hand the policy to something that would
/// only say that it failed (Envoy logs the module's errors among its own).
pub fn refuse_unless_accepted(module: &[u8], config: HarnessConfig) -> Result<(), CliError> {
    let harness = Harness::new(
        module,
        HarnessConfig {
            workers: 1,
            ..config
        },
    )?;
    let result = check(&harness)?;
    let Some(reason) = result.refusal() else {
        return Ok(());
    };
    Err(CliError::Harness(HarnessError::PluginStart {
        worker: 0,
        reason,
        logs: result.logs,
    }))
}

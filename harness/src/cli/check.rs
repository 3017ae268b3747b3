//! `stakeguard check`: start the module with a policy and say whether it took it.

use std::process::ExitCode;

use clap::Args;

use stakeguard_harness::Harness;
use stakeguard_harness::check::check;

use super::{CliError, HostArgs, ModuleArgs, harness_config, read_module, resolve_policy};

/// Arguments of `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The policy: a file, or the configuration string itself.
    #[arg(value_name = "POLICY")]
    pub policy: String,
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
    let policy = resolve_policy(&args.policy)?;
    let mut config = harness_config(&args.host, policy)?;
    config.workers = 1;
    let harness = Harness::new(&module, config)?;
    let result = check(&harness)?;
    for line in &result.logs {
        println!("{line}");
    }
    if let Some(trap) = &result.trap {
        println!("trap: {trap}");
    }
    if result.ok() {
        println!(
            "ok: {} accepted the configuration",
            args.module.module.display()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        let why = if result.trap.is_some() {
            "trapped"
        } else if !result.vm_start {
            "proxy_on_vm_start returned false"
        } else {
            "proxy_on_configure returned false"
        };
        println!("rejected: {why}");
        Ok(ExitCode::from(1))
    }
}

//! `stakeguard replay`: replay traffic, print a table or JSON Lines, compare with a
//! golden file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use std::io::IsTerminal;

use stakeguard_harness::{Harness, HarnessError, golden};

use super::{
    CliError, HostArgs, ModuleArgs, TrafficArgs, harness_config, read_module, read_traffic,
    resolve_policy,
};

/// Arguments of `replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The module.
    #[command(flatten)]
    pub module: ModuleArgs,
    /// The policy: a file, or the configuration string itself.
    #[arg(long, value_name = "FILE_OR_RAW_STRING", default_value = "")]
    pub policy: String,
    /// Host options.
    #[command(flatten)]
    pub host: HostArgs,
    /// Output format.
    #[arg(long, value_parser = ["table", "jsonl"], default_value = "table")]
    pub format: String,
    /// Compare the JSON Lines output with this golden file (exit 1 on difference).
    #[arg(long, value_name = "GOLDEN.jsonl")]
    pub expect: Option<PathBuf>,
    /// Rewrite the golden file with this replay's output.
    #[arg(long, requires = "expect")]
    pub update_expect: bool,
    /// Traffic.
    #[command(flatten)]
    pub traffic: TrafficArgs,
}

/// Runs `replay`.
pub fn run(args: ReplayArgs) -> Result<ExitCode, CliError> {
    let module = read_module(&args.module)?;
    let policy = resolve_policy(&args.policy)?;
    let config = harness_config(&args.host, policy)?;
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

//! The `stakeguard` binary: parses the command line, runs the subcommand, and prints an
//! error chain once.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let result = match args.command {
        cli::Command::Replay(a) => cli::replay::run(a),
        cli::Command::Check(a) => cli::check::run(a),
        cli::Command::Diff(a) => cli::diff::run(a),
        cli::Command::Bench(a) => cli::bench::run(a),
        cli::Command::Discover(a) => cli::discover::run(a),
        cli::Command::Import(a) => cli::import::run(a),
        cli::Command::Report(a) => cli::report::run(a),
        cli::Command::RatelimitConfig(a) => cli::ratelimit_config::run(a),
    };
    match result {
        Ok(code) => code,
        // A refused configuration is the policy's fault, not the tool's: the module's
        // own errors and exit 1, as `check` answers it.
        Err(e @ cli::CliError::Harness(stakeguard_harness::HarnessError::PluginStart { .. })) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
        Err(e) => {
            let mut message = format!("stakeguard: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                let text = s.to_string();
                if !message.contains(&text) {
                    message.push_str(&format!("\n  caused by: {text}"));
                }
                source = s.source();
            }
            eprintln!("{message}");
            ExitCode::from(2)
        }
    }
}

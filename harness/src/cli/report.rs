//! `stakeguard report`: the posture page (or its JSON twin) of a policy, with what its
//! controls did to recorded traffic (replayed through the module, as `replay` does) or
//! what a running Envoy counted (`/stats/prometheus`, a file or an `http://` URL). The
//! work is in [`stakeguard_harness::posture`]; this file reads the inputs.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};

use stakeguard_harness::Harness;
use stakeguard_harness::envoy::http::{Request, send_on};
use stakeguard_harness::posture::{self, Evidence, counters};
use stakeguard_harness::traffic::time::parse_rfc3339;

use super::{
    CliError, HostArgs, ModuleArgs, TrafficArgs, harness_config, read_module, read_traffic,
};

/// How `report` writes the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One self-contained HTML page.
    Html,
    /// The same data as JSON, for tools.
    Json,
}

/// Arguments of `report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The policy file (or the policy JSON itself).
    #[arg(long, value_name = "POLICY")]
    pub policy: String,
    /// Recorded traffic to replay through the module (as `replay` reads it).
    #[arg(value_name = "TRAFFIC", conflicts_with = "metrics")]
    pub traffic: Vec<PathBuf>,
    /// Report unreadable traffic entries and skip them instead of stopping.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Envoy's `/stats/prometheus` text instead of traffic: a file, or an `http://` URL
    /// of the admin endpoint.
    #[arg(long, value_name = "URL_OR_FILE")]
    pub metrics: Option<String>,
    /// Where to write the report; standard output by default.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Html)]
    pub format: Format,
    /// The date days to sunset count from (RFC 3339); now by default.
    #[arg(long, value_name = "TIME")]
    pub as_of: Option<String>,
    /// The module.
    #[command(flatten)]
    pub module: ModuleArgs,
    /// Host options.
    #[command(flatten)]
    pub host: HostArgs,
}

/// Runs `report`.
pub fn run(args: ReportArgs) -> Result<ExitCode, CliError> {
    let text = super::discover::policy_text(&args.policy)?;
    let as_of = match &args.as_of {
        Some(t) => parse_rfc3339(t).map_err(|e| CliError::Usage(format!("--as-of: {e}")))?,
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
    };
    let refused = |e| {
        CliError::Usage(format!(
            "the policy is refused:\n{e}\nfix it first (`stakeguard check` shows the same)"
        ))
    };
    let report = if !args.traffic.is_empty() {
        let module = read_module(&args.module)?;
        // The module must take the policy, or every request would be a failed VM's 503.
        let config = stakeguard_harness::posture::evidence::for_report(harness_config(
            &args.host,
            text.clone().into_bytes(),
        )?);
        super::check::refuse_unless_accepted(&module, config.clone())?;
        let records = read_traffic(&TrafficArgs {
            traffic: args.traffic.clone(),
            skip_invalid: args.skip_invalid,
        })?;
        let replay = Harness::new(&module, config)?.replay(&records)?;
        let files: Vec<String> = args
            .traffic
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let evidence = Evidence::Replay {
            records: &records,
            report: &replay,
            files: &files,
        };
        posture::build(&text, as_of, evidence).map_err(refused)?
    } else if let Some(from) = &args.metrics {
        let stats = read_metrics(from)?;
        let counters =
            counters::from_prometheus(from, &stats).map_err(|e| CliError::Usage(e.to_string()))?;
        let evidence = Evidence::Prometheus {
            counters: &counters,
            from,
        };
        posture::build(&text, as_of, evidence).map_err(refused)?
    } else {
        posture::build(&text, as_of, Evidence::None).map_err(refused)?
    };
    let body = match args.format {
        Format::Html => posture::html::render(&report),
        Format::Json => report.to_json() + "\n",
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, &body).map_err(|source| CliError::Io {
                context: format!("failed to write {}", path.display()),
                source,
            })?;
            eprintln!(
                "stakeguard: wrote {} ({} bytes)",
                path.display(),
                body.len()
            );
        }
        None => {
            let _ = std::io::stdout().write_all(body.as_bytes());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The stats text: fetched from an `http://` URL, else read from a file.
fn read_metrics(from: &str) -> Result<String, CliError> {
    if from.starts_with("https://") {
        return Err(CliError::Usage(format!(
            "--metrics {from}: only http:// URLs are fetched (Envoy's admin endpoint is plain \
             HTTP); save the stats to a file and pass its path"
        )));
    }
    let Some(rest) = from.strip_prefix("http://") else {
        return std::fs::read_to_string(from).map_err(|source| CliError::Io {
            context: format!("failed to read --metrics {from}"),
            source,
        });
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/stats/prometheus"),
    };
    let fail = |why: String| CliError::Usage(format!("--metrics {from}: {why}"));
    let address = authority
        .to_socket_addrs()
        .map_err(|e| {
            fail(format!(
                "cannot resolve `{authority}` ({e}); write host:port"
            ))
        })?
        .next()
        .ok_or_else(|| fail(format!("`{authority}` has no address")))?;
    let stream = TcpStream::connect_timeout(&address, Duration::from_secs(10))
        .map_err(|e| fail(format!("cannot connect: {e}")))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| fail(e.to_string()))?;
    let response = send_on(stream, &Request::get(path).host(authority))
        .map_err(|e| fail(format!("no answer: {e}")))?;
    if response.status != 200 {
        return Err(fail(format!(
            "answered {}: {}",
            response.status,
            response.text().chars().take(200).collect::<String>()
        )));
    }
    Ok(response.text())
}

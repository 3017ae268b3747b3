//! Open-loop latency: `oha` sending one request at a fixed rate whatever Envoy's answers
//! take (`-q`), with `--latency-correction` so that a stall counts for every request it
//! held back (no coordinated omission), pinned to the load generator's core.

use serde_json::{Value, json};
use stakeguard_harness::envoy::http::Request;

/// What one oha run measured.
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub requests_per_second: f64,
    /// Requests with no answer (connection errors, timeouts).
    pub failed: u64,
    /// Requests answered, and those answered with other than 2xx.
    pub total: u64,
    pub non_2xx: u64,
}

impl Latency {
    pub fn to_json(&self) -> Value {
        json!({
            "p50_us": self.p50_us,
            "p99_us": self.p99_us,
            "requests_per_second": self.requests_per_second,
            "failed": self.failed,
            "answered": self.total,
            "not_2xx": self.non_2xx,
        })
    }

    /// `  p50 … µs p99 … µs at …/s`: the end of a round's progress line.
    pub fn progress(&self) -> String {
        format!(
            "  p50 {:.0} µs p99 {:.0} µs at {:.0}/s",
            self.p50_us, self.p99_us, self.requests_per_second
        )
    }
}

/// Whether oha is installed (`make bench-tools`).
pub fn available() -> bool {
    std::process::Command::new("oha")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `request` sent to `127.0.0.1:port` at `rate` per second for `seconds`, over 8
/// keep-alive connections; `None` when oha printed nothing readable.
pub fn run(port: u16, request: &Request, rate: u64, seconds: u64) -> Option<Latency> {
    let mut command = std::process::Command::new("taskset");
    command.args(["-c", "1", "oha", "--no-tui", "--output-format", "json"]);
    command.args(["--worker-threads", "1", "-c", "8", "-w"]);
    command.args(["-z", &format!("{seconds}s"), "-q", &rate.to_string()]);
    command.arg("--latency-correction");
    command.args(["-m", &request.method, "--host", &request.host]);
    for (name, value) in &request.headers {
        command.arg("-H").arg(format!("{name}: {value}"));
    }
    command.arg(format!("http://127.0.0.1:{port}{}", request.path));
    let out = command.output().ok()?;
    let value: Value = serde_json::from_slice(&out.stdout).ok().or_else(|| {
        eprintln!(
            "oha printed no JSON: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        None
    })?;
    let percentile = |p: &str| value.pointer(&format!("/latencyPercentiles/{p}"))?.as_f64();
    let failed = value
        .get("errorDistribution")
        .and_then(Value::as_object)
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
    let statuses = value
        .get("statusCodeDistribution")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let count = |ok: bool| -> u64 {
        statuses
            .iter()
            .filter(|(code, _)| code.starts_with('2') == ok)
            .filter_map(|(_, n)| n.as_u64())
            .sum()
    };
    Some(Latency {
        total: count(true) + count(false),
        non_2xx: count(false),
        p50_us: percentile("p50")? * 1e6,
        p99_us: percentile("p99")? * 1e6,
        requests_per_second: value.pointer("/summary/requestsPerSec")?.as_f64()?,
        failed,
    })
}

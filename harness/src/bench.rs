//! `bench`: replay throughput on one worker, as a library function so other benches
//! (the native engine comparison) can reuse the numbers.

use std::time::{Duration, Instant};

use crate::error::HarnessError;
use crate::replay::Harness;
use crate::traffic::Record;

/// Throughput of repeated replays.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchResult {
    /// Requests per replay.
    pub requests: usize,
    /// Replays timed.
    pub iterations: usize,
    /// Wall time of the timed replays.
    pub elapsed: Duration,
    /// Requests per second.
    pub requests_per_sec: f64,
    /// Mean time per request, in microseconds.
    pub micros_per_request: f64,
}

/// Replays `records` once to warm up, then `iterations` times, and measures.
pub fn bench(
    harness: &Harness,
    records: &[Record],
    iterations: usize,
) -> Result<BenchResult, HarnessError> {
    harness.replay(records)?;
    let start = Instant::now();
    for _ in 0..iterations {
        harness.replay(records)?;
    }
    let elapsed = start.elapsed();
    let total = (records.len() * iterations) as f64;
    let secs = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    Ok(BenchResult {
        requests: records.len(),
        iterations,
        elapsed,
        requests_per_sec: total / secs,
        micros_per_request: if total > 0.0 { secs * 1e6 / total } else { 0.0 },
    })
}

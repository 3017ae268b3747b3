//! `bench`: steady-state replay throughput on one worker, as a library function so other
//! benches (the native engine comparison) can reuse the numbers.
//!
//! The VMs are started once (instantiated, configured) and every pass replays the same
//! records through them, as a long-running proxy would see traffic: nothing is compiled
//! or instantiated per pass or per request. Counters are not reset between passes (the
//! module's shared data is its own business); instead each pass runs [`PASS_GAP_NS`] of
//! virtual time after the previous one, so the windows, lockouts and sessions a pass
//! opened have expired when the next one starts and every pass decides like the first.
//!
//! [`host_calls`] counts instead of timing: what one pass asks of the host, per callback
//! and kind of call (`stakeguard bench --host-calls`).

use std::time::{Duration, Instant};

use crate::error::HarnessError;
use crate::host::calls::HostCalls;
use crate::replay::{Harness, first_time_ns};
use crate::traffic::Record;

/// Virtual time between the end of one pass and the start of the next: longer than the
/// windows a policy counts over (a day), so passes do not saturate each other's counters.
pub const PASS_GAP_NS: u64 = 2 * 24 * 3600 * 1_000_000_000;

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

/// How far apart the passes over `records` start on the virtual clock.
pub fn pass_period_ns(records: &[Record]) -> u64 {
    let times = records
        .iter()
        .filter_map(|r| r.time_ns.and_then(|t| u64::try_from(t).ok()));
    let (first, last) = times.fold((u64::MAX, 0), |(lo, hi), t| (lo.min(t), hi.max(t)));
    last.saturating_sub(first).saturating_add(PASS_GAP_NS)
}

/// Prepares `records` and starts the harness's VMs once, replays the records once to
/// warm up, then `iterations` times through the same VMs, and measures the timed passes.
pub fn bench(
    harness: &Harness,
    records: &[Record],
    iterations: usize,
) -> Result<BenchResult, HarnessError> {
    let period = pass_period_ns(records);
    let prepared = harness.prepare(records);
    let mut session = harness.session(first_time_ns(records))?;
    session.replay_prepared(&prepared, 0, &mut |_| {});
    let start = Instant::now();
    for pass in 1..=iterations as u64 {
        session.replay_prepared(&prepared, pass.saturating_mul(period), &mut |_| {});
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

/// The host calls of one pass over `records`, after a warm-up pass as [`bench`] runs it
/// (so what a worker sets up once, such as its tick, is not counted, and what it redoes
/// per window, such as a rate limit's reservation, is).
pub fn host_calls(harness: &Harness, records: &[Record]) -> Result<HostCalls, HarnessError> {
    let prepared = harness.prepare(records);
    let mut session = harness.session(first_time_ns(records))?;
    session.replay_prepared(&prepared, 0, &mut |_| {});
    session.count_host_calls();
    session.replay_prepared(&prepared, pass_period_ns(records), &mut |_| {});
    Ok(session.take_host_calls())
}

//! Host calls counted per callback and per kind: what a module asks of its host, which
//! in Envoy is where a Wasm filter's cost lies (each crossing costs about 1,000
//! instructions, and a call that hands data back re-enters the module to allocate the
//! copy, about 10,000; see BENCHMARKS.md).
//!
//! Counting is off unless a [`Session`](crate::replay::Session) turns it on: a VM's
//! [`HostState::calls`](super::state::HostState) is then `Some`, and each host function
//! adds itself with [`HostState::count_call`](super::state::HostState::count_call). Off,
//! a host call pays one branch on `None`; the detail text is built only when counting.
//! Every `proxy_*` import counts itself once its arguments are read (a call refused for
//! a pointer outside memory or an unknown map type is not counted); of WASI, the calls a
//! module makes while serving (`fd_write`, `clock_time_get`, `random_get`). This file
//! knows nothing of wasmtime: it is the tally and its table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One kind of host call, in one callback.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallKind {
    /// The callback that made it (`proxy_on_request_headers`, ...), or `start` for the
    /// VM's start functions (`_initialize`, `main`).
    pub callback: &'static str,
    /// The import (`proxy_get_property`, `fd_write`, ...).
    pub import: &'static str,
    /// What distinguishes calls of one import: the map or buffer, the property path
    /// (segments joined by `.`), the log level, the metric name, the reply status.
    pub detail: String,
}

/// What the calls of one kind did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// How many calls.
    pub calls: u64,
    /// Bytes the host read from guest memory (keys, values, paths, messages).
    pub bytes_in: u64,
    /// Bytes the host copied into guest allocations (values handed back).
    pub bytes_out: u64,
    /// Calls that allocated in the guest to hand a value back: in Envoy, a re-entry into
    /// the VM through `proxy_on_memory_allocate`.
    pub allocations: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.calls += other.calls;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.allocations += other.allocations;
    }
}

/// Host calls and callbacks counted in one VM, or summed over several.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostCalls {
    /// The callback running now.
    current: &'static str,
    /// How many times each callback ran.
    callbacks: BTreeMap<&'static str, u64>,
    /// Calls by kind.
    calls: BTreeMap<CallKind, Tally>,
}

/// The callback name calls made outside any callback are filed under.
const START: &str = "start";

impl HostCalls {
    /// Counting from now on, outside any callback.
    pub fn new() -> HostCalls {
        HostCalls {
            current: START,
            ..HostCalls::default()
        }
    }

    /// A callback starts: the calls that follow are its own.
    pub fn enter(&mut self, callback: &'static str) {
        self.current = callback;
        *self.callbacks.entry(callback).or_default() += 1;
    }

    /// A callback ended: calls outside one (the start functions) go under `start`.
    pub fn leave(&mut self) {
        self.current = START;
    }

    /// One call of `import` that read `bytes_in` bytes of guest memory and copied
    /// `bytes_out` bytes back into a guest allocation.
    pub fn count(
        &mut self,
        import: &'static str,
        detail: String,
        bytes_in: usize,
        bytes_out: usize,
    ) {
        let kind = CallKind {
            callback: self.current,
            import,
            detail,
        };
        self.calls.entry(kind).or_default().add(&Tally {
            calls: 1,
            bytes_in: bytes_in as u64,
            bytes_out: bytes_out as u64,
            allocations: u64::from(bytes_out > 0),
        });
    }

    /// Adds another VM's counts (the calls of every worker of a session).
    pub fn merge(&mut self, other: &HostCalls) {
        for (callback, n) in &other.callbacks {
            *self.callbacks.entry(callback).or_default() += n;
        }
        for (kind, tally) in &other.calls {
            self.calls.entry(kind.clone()).or_default().add(tally);
        }
    }

    /// How many times each callback ran.
    pub fn callbacks(&self) -> &BTreeMap<&'static str, u64> {
        &self.callbacks
    }

    /// The calls by kind, ordered by callback, import and detail.
    pub fn calls(&self) -> &BTreeMap<CallKind, Tally> {
        &self.calls
    }

    /// The calls of one callback as `(import, detail, calls)`, for assertions and reports
    /// that need no byte counts.
    pub fn of(&self, callback: &str) -> Vec<(&'static str, &str, u64)> {
        self.calls
            .iter()
            .filter(|(kind, _)| kind.callback == callback)
            .map(|(kind, tally)| (kind.import, kind.detail.as_str(), tally.calls))
            .collect()
    }

    /// The sum over every kind.
    pub fn total(&self) -> Tally {
        let mut total = Tally::default();
        for tally in self.calls.values() {
            total.add(tally);
        }
        total
    }

    /// A table of the calls per callback and kind, with each count also per request
    /// (`requests` streams were replayed; 0 leaves that column out), then the totals.
    pub fn table(&self, requests: usize) -> String {
        let per = |n: u64| {
            if requests == 0 {
                String::new()
            } else {
                format!("{:.2}", n as f64 / requests as f64)
            }
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<32} {:<36} {:>7} {:>9} {:>9} {:>9} {:>6}  detail",
            "callback (runs)", "host call", "calls", "/request", "bytes in", "bytes out", "allocs"
        );
        let mut last = "";
        for (kind, tally) in &self.calls {
            let callback = if kind.callback == last {
                String::new()
            } else {
                last = kind.callback;
                let runs = self.callbacks.get(kind.callback).copied().unwrap_or(0);
                format!("{} ({runs})", kind.callback)
            };
            let _ = writeln!(
                out,
                "{callback:<32} {:<36} {:>7} {:>9} {:>9} {:>9} {:>6}  {}",
                kind.import,
                tally.calls,
                per(tally.calls),
                tally.bytes_in,
                tally.bytes_out,
                tally.allocations,
                kind.detail
            );
        }
        let total = self.total();
        let _ = writeln!(
            out,
            "{:<32} {:<36} {:>7} {:>9} {:>9} {:>9} {:>6}",
            "total",
            "",
            total.calls,
            per(total.calls),
            total.bytes_in,
            total.bytes_out,
            total.allocations
        );
        out
    }
}

/// A property path as a module sends it (NUL-separated segments) in the dotted form
/// Envoy's documentation uses: `source\0address` is `source.address`.
pub fn property_path(path: &[u8]) -> String {
    String::from_utf8_lossy(path)
        .trim_end_matches('\0')
        .replace('\0', ".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_filed_under_the_running_callback() {
        let mut calls = HostCalls::new();
        calls.count("proxy_log", "info".into(), 5, 0);
        calls.enter("proxy_on_request_headers");
        calls.count(
            "proxy_get_header_map_pairs",
            "request_headers".into(),
            0,
            120,
        );
        calls.count(
            "proxy_get_header_map_pairs",
            "request_headers".into(),
            0,
            80,
        );
        calls.leave();
        assert_eq!(calls.of("start"), vec![("proxy_log", "info", 1)]);
        assert_eq!(
            calls.of("proxy_on_request_headers"),
            vec![("proxy_get_header_map_pairs", "request_headers", 2)]
        );
        assert_eq!(
            calls.total(),
            Tally {
                calls: 3,
                bytes_in: 5,
                bytes_out: 200,
                allocations: 2
            }
        );
        assert_eq!(calls.callbacks().get("proxy_on_request_headers"), Some(&1));
    }

    #[test]
    fn merged_counts_add_up() {
        let mut a = HostCalls::new();
        a.enter("proxy_on_log");
        a.count("proxy_increment_metric", "m".into(), 0, 0);
        let mut sum = HostCalls::new();
        sum.merge(&a);
        sum.merge(&a);
        assert_eq!(
            sum.of("proxy_on_log"),
            vec![("proxy_increment_metric", "m", 2)]
        );
        assert_eq!(sum.callbacks().get("proxy_on_log"), Some(&2));
        assert!(sum.table(4).contains("proxy_on_log (2)"));
    }

    #[test]
    fn property_paths_read_with_dots() {
        assert_eq!(property_path(b"source\0address"), "source.address");
        assert_eq!(property_path(b"wasm.x\0"), "wasm.x");
    }
}

//! The per-VM state every host function reaches through `Caller::data()`, and the state
//! shared by all VMs of one replay (shared data, queues, metric values).
//!
//! Each worker VM owns one [`HostState`] inside its wasmtime `Store`; nothing is global.
//! The replay driver fills stream state in before a callback (headers, body, the
//! clock) and reads back what the module did (header changes, actions such as
//! `continue_stream` or a local reply, callouts, log lines) after it.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use wasmtime::{Memory, StoreLimits, TypedFunc};

use super::calls::HostCalls;
use super::memory::{encode_pairs_into, pairs_size, text};
use crate::abi::{LogLevel, MetricType, StreamType};
use crate::callouts::CalloutConfig;
use crate::properties::StreamInfo;
use crate::report::Text;

/// The configuration every VM of a replay shares.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// `root_id` of the plugin.
    pub root_id: String,
    /// `vm_id` of the VM (shared data and queues are scoped by it).
    pub vm_id: String,
    /// The plugin's name (`plugin_name` property).
    pub plugin_name: String,
    /// The VM configuration, read in `proxy_on_vm_start`.
    pub vm_configuration: Vec<u8>,
    /// The plugin configuration, read in `proxy_on_configure`.
    pub plugin_configuration: Vec<u8>,
    /// The VM's environment variables (WASI `environ_*`).
    pub env: Vec<(String, String)>,
    /// The host log level `proxy_get_log_level` reports.
    pub log_level: LogLevel,
    /// Callout stubs by cluster.
    pub callouts: Arc<CalloutConfig>,
    /// Seed of the WASI random generator (each worker derives its own).
    pub seed: u64,
    /// `node.*` properties: node id and cluster.
    pub node_id: String,
    /// `node.cluster`.
    pub node_cluster: String,
}

/// A header or trailer map with Envoy's semantics: lowercase keys, insertion order,
/// repeated keys allowed.
///
/// The entries are shared copy-on-write: a replay hands one recorded map to the stream,
/// the module, the access-log phase and the report, and a clone is a reference count;
/// the first change the module makes copies them. Comparing two clones of one map is a
/// pointer comparison. Keys and values are shared text too, so a map the module writes
/// back whole ([`HeaderMap::set_pairs`]) keeps the previous map's strings for the
/// entries it did not change, and a report names a header without copying it.
///
/// A map also keeps its proxy-wasm encoding once a module has read it whole: a prepared
/// record's maps are read by every replay of the record, and copying one block into the
/// guest is cheaper than encoding each string again.
///
/// An empty map has no entries block at all: most trailers, and the maps a stream
/// starts with, cost neither an allocation nor a reference count.
#[derive(Debug, Clone, Default)]
pub struct HeaderMap {
    entries: Option<Arc<Entries>>,
}

/// The entries of a [`HeaderMap`] and, once asked for, their encoding.
#[derive(Debug, Default)]
struct Entries {
    pairs: Vec<(Text, Text)>,
    encoded: OnceLock<Box<[u8]>>,
}

/// A copy is made to be changed: it starts without an encoding.
impl Clone for Entries {
    fn clone(&self) -> Self {
        Entries {
            pairs: self.pairs.clone(),
            encoded: OnceLock::new(),
        }
    }
}

impl PartialEq for HeaderMap {
    fn eq(&self, other: &Self) -> bool {
        let shared = match (&self.entries, &other.entries) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        shared || self.entries() == other.entries()
    }
}

impl Eq for HeaderMap {}

/// How many entries of the old map [`HeaderMap::set_pairs`] looks at for each pair.
const REUSE_WINDOW: usize = 8;

impl HeaderMap {
    /// A map of these pairs (keys lowercased in place: recorded keys mostly are already).
    pub fn from_pairs<I: IntoIterator<Item = (String, String)>>(pairs: I) -> HeaderMap {
        HeaderMap::of(
            pairs
                .into_iter()
                .map(|(mut k, v)| {
                    k.make_ascii_lowercase();
                    (Text::from(k), Text::from(v))
                })
                .collect(),
        )
    }

    fn of(pairs: Vec<(Text, Text)>) -> HeaderMap {
        HeaderMap {
            entries: (!pairs.is_empty()).then(|| {
                Arc::new(Entries {
                    pairs,
                    encoded: OnceLock::new(),
                })
            }),
        }
    }

    /// Replaces the entries with `pairs` (raw bytes, read as lossy UTF-8, keys
    /// lowercased). An entry equal to one of the current map's shares its text: a module
    /// that rewrites a map mostly writes back what it read, in the order it read it, so
    /// each pair is looked for among the few entries after the previous match
    /// ([`REUSE_WINDOW`]); the cost stays linear whatever a module writes. A pair that is
    /// not there is looked for among the `recent` entries the module wrote before, and
    /// remembered there when it is new. (Stored keys are lowercase, so a key written in
    /// another case is a new entry, lowercased.)
    pub fn set_pairs<'p>(
        &mut self,
        pairs: impl ExactSizeIterator<Item = (&'p [u8], &'p [u8])>,
        recent: &mut RecentEntries,
    ) {
        let old = self.entries();
        let mut entries = Vec::with_capacity(pairs.len());
        let mut next = 0;
        for (key, value) in pairs {
            let kept = old
                .iter()
                .enumerate()
                .skip(next)
                .take(REUSE_WINDOW)
                .find(|(_, entry)| same_entry(entry, key, value));
            entries.push(match kept {
                Some((at, entry)) => {
                    next = at + 1;
                    entry.clone()
                }
                None => recent.get_or_make(key, value),
            });
        }
        *self = HeaderMap::of(entries);
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[(Text, Text)] {
        self.entries.as_deref().map_or(&[], |e| &e.pairs)
    }

    /// The entries in the proxy-wasm encoding (see [`encode_pairs_into`]), encoded at
    /// the first call.
    pub fn encoded(&self) -> &[u8] {
        let Some(entries) = &self.entries else {
            // No pairs: the count alone.
            return &[0; 4];
        };
        entries.encoded.get_or_init(|| {
            let pairs = &entries.pairs;
            let mut out = vec![0; pairs_size(pairs)].into_boxed_slice();
            encode_pairs_into(pairs, &mut out);
            out
        })
    }

    /// The entries to change: this map's own copy from now on.
    fn entries_mut(&mut self) -> &mut Vec<(Text, Text)> {
        let entries = Arc::make_mut(self.entries.get_or_insert_default());
        entries.encoded.take();
        &mut entries.pairs
    }

    /// The first value of `key` (stored keys are lowercase, so matching ignores case).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries()
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| &**v)
    }

    /// Appends an entry (`addCopy`).
    pub fn add(&mut self, key: &str, value: &str) {
        self.entries_mut()
            .push((lowercase_key(key), Text::from(value)));
    }

    /// Sets the first entry of `key` and drops the others, or appends (`setCopy`).
    pub fn replace(&mut self, key: &str, value: &str) {
        let mut seen = false;
        self.entries_mut().retain_mut(|(k, v)| {
            if !k.eq_ignore_ascii_case(key) {
                return true;
            }
            if seen {
                return false;
            }
            seen = true;
            *v = Text::from(value);
            true
        });
        if !seen {
            self.add(key, value);
        }
    }

    /// Removes every entry of `key` (a map without one stays shared).
    pub fn remove(&mut self, key: &str) {
        if self.get(key).is_some() {
            self.entries_mut()
                .retain(|(k, _)| !k.eq_ignore_ascii_case(key));
        }
    }

    /// Keys plus values in bytes (Envoy's `byteSize`).
    pub fn byte_size(&self) -> usize {
        self.entries().iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }
}

/// Whether a map's entry holds exactly the bytes a module wrote.
fn same_entry((k, v): &(Text, Text), key: &[u8], value: &[u8]) -> bool {
    k.as_bytes() == key && v.as_bytes() == value
}

/// How many entries [`RecentEntries`] keeps.
const RECENT_ENTRIES: usize = 16;

/// The last entries a module wrote into maps written whole that were not in the map
/// they replaced: a filter writes the same headers into every response (security
/// headers, say), and an entry found here shares its text instead of building it again.
/// Bounded, so a module writing ever new pairs costs a short scan per pair and no more.
#[derive(Debug, Default)]
pub struct RecentEntries(VecDeque<(Text, Text)>);

impl RecentEntries {
    /// The entry of `key` and `value`: a remembered one, or a new one, remembered.
    fn get_or_make(&mut self, key: &[u8], value: &[u8]) -> (Text, Text) {
        if let Some(entry) = self.0.iter().find(|entry| same_entry(entry, key, value)) {
            return entry.clone();
        }
        let entry = (lowercase_key(&text(key)), Text::from(&*text(value)));
        if self.0.len() == RECENT_ENTRIES {
            self.0.pop_front();
        }
        self.0.push_back(entry.clone());
        entry
    }
}

/// A key as a map stores it: lowercase (copied once when it already is).
fn lowercase_key(key: &str) -> Text {
    if key.bytes().any(|b| b.is_ascii_uppercase()) {
        Text::from(key.to_ascii_lowercase())
    } else {
        Text::from(key)
    }
}

/// A local reply the module asked for with `proxy_send_local_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// HTTP status.
    pub status: u32,
    /// `response.code_details`.
    pub details: String,
    /// The body.
    pub body: Vec<u8>,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
    /// The gRPC status (-1 for none).
    pub grpc_status: i32,
}

/// An effect the host carries out after the callback returns, as Envoy defers
/// `continueDecoding`, `sendLocalReply` and resets to after the VM call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `proxy_continue_stream` on a stream context.
    Continue {
        /// The stream context.
        context: u32,
        /// Which direction.
        stream: StreamType,
    },
    /// `proxy_close_stream` on a stream context.
    Close {
        /// The stream context.
        context: u32,
        /// Which direction.
        stream: StreamType,
    },
    /// `proxy_send_local_response` on a stream context.
    LocalReply {
        /// The stream context.
        context: u32,
        /// The reply.
        reply: LocalReply,
    },
}

/// Which callback is running, for the buffers and maps that exist only in one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// No callback, or one without special buffers.
    #[default]
    Other,
    /// `proxy_on_vm_start`.
    VmStart,
    /// `proxy_on_configure`.
    Configure,
    /// `proxy_on_http_call_response`.
    HttpCallResponse,
    /// One of the gRPC receive callbacks.
    GrpcReceive,
    /// `proxy_on_log`.
    Log,
}

/// The state of one HTTP stream context that host functions read and change.
#[derive(Debug, Clone, Default)]
pub struct StreamState {
    /// Request headers, `None` once the module let them go (Envoy drops the pointer when
    /// `on_request_headers` returns Continue).
    pub request_headers: Option<HeaderMap>,
    /// Request trailers, while available.
    pub request_trailers: Option<HeaderMap>,
    /// Response headers, while available.
    pub response_headers: Option<HeaderMap>,
    /// Response trailers, while available.
    pub response_trailers: Option<HeaderMap>,
    /// The request body the module sees in `on_request_body` (chunk plus buffered data).
    pub request_body: Option<Vec<u8>>,
    /// The response body the module sees in `on_response_body`.
    pub response_body: Option<Vec<u8>>,
    /// What the property model knows about this stream's record (shared by every
    /// replay of it).
    pub info: Arc<StreamInfo>,
    /// Request start, nanoseconds since the epoch (`request.time`).
    pub start_ns: i64,
    /// Downstream connection id.
    pub connection_id: u64,
    /// Final copies of the maps for `proxy_on_log` (the access-log phase).
    pub log_request_headers: HeaderMap,
    /// Final response headers for the access-log phase.
    pub log_response_headers: HeaderMap,
    /// Final response trailers for the access-log phase.
    pub log_response_trailers: HeaderMap,
    /// Response status once known.
    pub response_status: Option<u32>,
    /// `response.code_details` once known.
    pub response_details: Cow<'static, str>,
    /// Filter state written by `proxy_set_property`, by path (NUL-separated segments).
    pub filter_state: BTreeMap<Vec<u8>, Vec<u8>>,
    /// A local reply already went out on this stream (a second one is refused).
    pub local_reply_sent: bool,
    /// Total request body bytes seen so far.
    pub request_body_total: u64,
    /// Total response body bytes seen so far.
    pub response_body_total: u64,
}

/// A log line the module wrote (`proxy_log`, or stdout/stderr through WASI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The context whose call wrote it.
    pub context: u32,
    /// Its level.
    pub level: LogLevel,
    /// The message.
    pub message: String,
}

/// An http or gRPC callout the module started in the current callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalloutRequest {
    /// The token the module got.
    pub token: u32,
    /// The root context that owns the callout (Envoy starts callouts on the root).
    pub root_context: u32,
    /// The effective context when it was made (the stream, if any).
    pub from_context: u32,
    /// The cluster (upstream) name.
    pub cluster: String,
    /// http or grpc.
    pub kind: CalloutKind,
    /// The request headers (or gRPC initial metadata).
    pub headers: Vec<(String, String)>,
    /// The request body (or gRPC message).
    pub body: Vec<u8>,
    /// The request trailers.
    pub trailers: Vec<(String, String)>,
    /// The timeout the module asked for, in milliseconds (0: none).
    pub timeout_ms: u32,
}

/// What kind of callout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalloutKind {
    /// `proxy_http_call`.
    Http,
    /// `proxy_grpc_call` (service and method).
    GrpcCall {
        /// The gRPC service name.
        service: String,
        /// The method name.
        method: String,
    },
    /// `proxy_grpc_stream` (service and method).
    GrpcStream {
        /// The gRPC service name.
        service: String,
        /// The method name.
        method: String,
    },
}

/// The answer being delivered to `proxy_on_http_call_response` or a gRPC callback.
#[derive(Debug, Clone, Default)]
pub struct CalloutAnswerState {
    /// Response headers (or gRPC initial metadata).
    pub headers: HeaderMap,
    /// Response body (or gRPC message).
    pub body: Vec<u8>,
    /// Response trailers (or gRPC trailing metadata).
    pub trailers: HeaderMap,
}

/// A metric defined by one VM: the name it resolves to in the shared store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricDef {
    /// Its type.
    pub kind: MetricType,
    /// Its name.
    pub name: String,
}

/// A deterministic generator for WASI `random_get` (splitmix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Fills `out` with random bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            let n = chunk.len();
            chunk.copy_from_slice(bytes.get(..n).unwrap_or(&[]));
        }
    }
}

/// A shared queue.
#[derive(Debug, Clone, Default)]
pub struct Queue {
    /// The worker whose root context registered it last (Envoy notifies that one).
    pub worker: usize,
    /// That root context.
    pub context: u32,
    /// Queued items.
    pub items: VecDeque<Vec<u8>>,
}

/// A metric value in the shared store (Envoy's stats are per proxy, not per VM).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricValue {
    /// Its type.
    pub kind: Option<MetricType>,
    /// Counter or gauge value, or the last recorded histogram value.
    pub value: u64,
    /// For histograms: how many values were recorded.
    pub samples: u64,
    /// For histograms: their sum.
    pub sum: u64,
}

/// A queue notification: worker, root context, token.
pub type QueueReady = (usize, u32, u32);

/// Shared data of one vm_id: value and cas by key.
pub type SharedMap = BTreeMap<Vec<u8>, (Vec<u8>, u32)>;

/// State shared by every VM of one replay, as Envoy shares it between worker threads.
#[derive(Debug, Default)]
pub struct Shared {
    /// Shared data by vm_id then key: value and cas.
    pub data: BTreeMap<String, SharedMap>,
    /// The global cas counter.
    pub next_cas: u32,
    /// Queue tokens by (vm_id, name).
    pub queue_tokens: BTreeMap<(String, String), u32>,
    /// Queues by token.
    pub queues: BTreeMap<u32, Queue>,
    /// The next queue token.
    pub next_queue_token: u32,
    /// Queues that got an item and whose owner should run `proxy_on_queue_ready`.
    pub ready: Vec<QueueReady>,
    /// Metric values by name.
    pub metrics: BTreeMap<String, MetricValue>,
}

impl Shared {
    /// The next cas value (never 0, as Envoy skips it).
    pub fn next_cas(&mut self) -> u32 {
        self.next_cas = self.next_cas.wrapping_add(1);
        if self.next_cas == 0 {
            self.next_cas = 1;
        }
        self.next_cas
    }
}

/// Stream states by context id.
pub type ContextMap<V> = HashMap<u32, V, BuildHasherDefault<ContextIdHasher>>;

/// The hasher of [`ContextMap`]: context ids are small numbers the host hands out, so a
/// multiplicative hash spreads them well, for a fraction of SipHash's cost on every host
/// call that reaches its stream.
#[derive(Debug, Default)]
pub struct ContextIdHasher(u64);

impl Hasher for ContextIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(*b));
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.write_u64(u64::from(id));
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: the high bits, which the table probes by, mix all of `n`.
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A handle on the shared state.
pub type SharedHandle = Arc<Mutex<Shared>>;

/// Locks the shared state; a poisoned lock (a panic elsewhere) is still usable.
pub fn lock(shared: &SharedHandle) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Everything a VM's host functions can reach.
pub struct HostState {
    /// Configuration shared by the VMs.
    pub config: Arc<VmConfig>,
    /// State shared by the VMs.
    pub shared: SharedHandle,
    /// Which worker this VM is.
    pub worker: usize,
    /// Whether the module speaks ABI 0.2.0 (not 0.2.1).
    pub abi_0_2_0: bool,
    /// The virtual clock, in nanoseconds since the Unix epoch.
    pub now_ns: u64,
    /// The virtual monotonic clock origin.
    pub start_ns: u64,
    /// The module's memory.
    pub memory: Option<Memory>,
    /// The module's allocator, shared so a host function can hold it while it runs (a
    /// `TypedFunc` clone copies its type's reference counts on every allocation).
    pub allocator: Option<Arc<TypedFunc<u32, u32>>>,
    /// The root context of this VM.
    pub root_context: u32,
    /// The context the running callback was called for.
    pub current: u32,
    /// The context set by `proxy_set_effective_context` during this callback.
    pub effective: Option<u32>,
    /// Which callback runs.
    pub phase: Phase,
    /// Stream contexts alive in this VM.
    pub streams: ContextMap<StreamState>,
    /// The callout answer being delivered.
    pub callout_answer: Option<CalloutAnswerState>,
    /// Tick period asked for by the root context, in milliseconds (0: off).
    pub tick_period_ms: u32,
    /// Set when the module (re)set the tick period during the callback.
    pub tick_changed: bool,
    /// Effects to carry out after the callback.
    pub actions: Vec<Action>,
    /// Callouts started during the callback.
    pub new_callouts: Vec<CalloutRequest>,
    /// Callout tokens in flight, by token: the cluster.
    pub open_callouts: BTreeMap<u32, String>,
    /// gRPC calls and streams in flight, by token: the cluster.
    pub open_grpc: BTreeMap<u32, String>,
    /// gRPC tokens the module cancelled or closed during the callback.
    pub cancelled_grpc: Vec<u32>,
    /// What `proxy_get_status` returns: set when a callout fails or a gRPC call closes.
    pub call_status: (u32, String),
    /// The next http callout token.
    pub next_http_token: u32,
    /// The next gRPC token (odd: calls, even: streams).
    pub next_grpc_token: u32,
    /// Log lines written during the callback.
    pub logs: Vec<LogLine>,
    /// The module queued an item during the callback: [`Shared::ready`] has
    /// notifications to collect (without it, the driver leaves the shared lock alone).
    pub queued: bool,
    /// Metrics defined in this VM, by id.
    pub metric_ids: BTreeMap<u32, MetricDef>,
    /// The next metric id per type (Envoy increments by 4, the low bits hold the type).
    pub next_metric_id: [u32; 3],
    /// The WASI random generator.
    pub rng: Rng,
    /// Root contexts that returned false from `proxy_on_done` and may call `proxy_done`.
    pub pending_done: BTreeSet<u32>,
    /// Root contexts that called `proxy_done`.
    pub done_called: BTreeSet<u32>,
    /// Entries the module wrote lately into maps written whole, to share their text.
    pub recent_entries: RecentEntries,
    /// Where `proxy_get_property` serializes a value before copying it out (kept for
    /// its capacity).
    pub property_bytes: Vec<u8>,
    /// A trap the host itself raised (for example `proc_exit`), to explain it.
    pub host_trap: Option<String>,
    /// Memory limits of the store.
    pub limits: StoreLimits,
    /// Host calls counted per callback, when the session counts them (see
    /// [`HostState::count_call`]).
    pub calls: Option<Box<HostCalls>>,
}

impl HostState {
    /// The context host calls act on: the effective context if the module set one that
    /// still exists, the called context otherwise.
    pub fn context(&self) -> u32 {
        match self.effective {
            Some(id) if id == self.root_context || self.streams.contains_key(&id) => id,
            _ => self.current,
        }
    }

    /// The stream state of the acting context, if it is a stream.
    pub fn stream(&self) -> Option<&StreamState> {
        self.streams.get(&self.context())
    }

    /// The mutable stream state of the acting context, if it is a stream.
    pub fn stream_mut(&mut self) -> Option<&mut StreamState> {
        let id = self.context();
        self.streams.get_mut(&id)
    }

    /// Counts one call of `import` when counting is on: `bytes_in` read from the guest,
    /// `bytes_out` copied into a guest allocation; `detail` runs only when counting, so
    /// a replay that does not count pays one branch.
    #[inline]
    pub fn count_call(
        &mut self,
        import: &'static str,
        bytes_in: usize,
        bytes_out: usize,
        detail: impl FnOnce(&HostState) -> String,
    ) {
        if self.calls.is_none() {
            return;
        }
        let detail = detail(self);
        if let Some(calls) = self.calls.as_deref_mut() {
            calls.count(import, detail, bytes_in, bytes_out);
        }
    }

    /// Records a log line for the acting context.
    pub fn log(&mut self, level: LogLevel, message: String) {
        let context = self.context();
        self.logs.push(LogLine {
            context,
            level,
            message,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_keeps_the_first_entry_and_drops_the_rest() {
        let mut map = HeaderMap::from_pairs([
            ("A".to_string(), "1".to_string()),
            ("b".to_string(), "2".to_string()),
            ("a".to_string(), "3".to_string()),
        ]);
        map.replace("a", "x");
        assert_eq!(
            map.entries(),
            [
                (Text::from("a"), Text::from("x")),
                (Text::from("b"), Text::from("2"))
            ]
        );
        map.replace("c", "y");
        assert_eq!(map.get("C"), Some("y"));
        map.remove("a");
        assert_eq!(map.get("a"), None);
        assert_eq!(map.byte_size(), 4);
    }

    #[test]
    fn a_map_written_whole_shares_the_text_of_equal_entries() {
        let read = HeaderMap::from_pairs([
            ("server".to_string(), "x".to_string()),
            ("a".to_string(), "1".to_string()),
        ]);
        let mut written = read.clone();
        let pairs: [(&[u8], &[u8]); 2] = [(b"a", b"1"), (b"B", b"2")];
        written.set_pairs(pairs.into_iter(), &mut RecentEntries::default());
        assert_eq!(
            written.entries(),
            [
                (Text::from("a"), Text::from("1")),
                (Text::from("b"), Text::from("2"))
            ]
        );
        let (kept, old) = (&written.entries()[0], &read.entries()[1]);
        assert!(std::ptr::eq(kept.0.as_ptr(), old.0.as_ptr()));
        assert!(std::ptr::eq(kept.1.as_ptr(), old.1.as_ptr()));
    }

    #[test]
    fn a_pair_written_again_into_another_map_shares_its_text() {
        let mut recent = RecentEntries::default();
        let pairs: [(&[u8], &[u8]); 2] = [(b"X-New", b"1"), (b"b", b"2")];
        let mut first = HeaderMap::default();
        first.set_pairs(pairs.into_iter(), &mut recent);
        let mut second = HeaderMap::default();
        second.set_pairs(pairs.into_iter(), &mut recent);
        assert_eq!(
            second.entries(),
            [
                (Text::from("x-new"), Text::from("1")),
                (Text::from("b"), Text::from("2"))
            ]
        );
        let (kept, old) = (&second.entries()[1], &first.entries()[1]);
        assert!(std::ptr::eq(kept.1.as_ptr(), old.1.as_ptr()));
        // Written in another case, a key is a new entry (stored lowercase).
        assert!(!std::ptr::eq(
            second.entries()[0].0.as_ptr(),
            first.entries()[0].0.as_ptr()
        ));
        for i in 0..2 * RECENT_ENTRIES {
            let value = i.to_string();
            let mut map = HeaderMap::default();
            map.set_pairs([(&b"k"[..], value.as_bytes())].into_iter(), &mut recent);
        }
        assert_eq!(recent.0.len(), RECENT_ENTRIES);
    }

    #[test]
    fn a_map_written_out_of_order_keeps_every_entry() {
        let pairs: Vec<(String, String)> = (0..40)
            .map(|i| (format!("k{i}"), format!("v{i}")))
            .collect();
        let read = HeaderMap::from_pairs(pairs.clone());
        let reversed: Vec<(&[u8], &[u8])> = pairs
            .iter()
            .rev()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect();
        let mut written = read.clone();
        written.set_pairs(reversed.into_iter(), &mut RecentEntries::default());
        let expected: Vec<(Text, Text)> = pairs
            .iter()
            .rev()
            .map(|(k, v)| (Text::from(k.as_str()), Text::from(v.as_str())))
            .collect();
        assert_eq!(written.entries(), expected.as_slice());
    }

    #[test]
    fn the_generator_is_deterministic() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let mut x = [0u8; 13];
        let mut y = [0u8; 13];
        a.fill(&mut x);
        b.fill(&mut y);
        assert_eq!(x, y);
        assert_ne!(x, [0u8; 13]);
    }
}

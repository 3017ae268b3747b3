//! The probe: a filter that makes, on each request and response, exactly the host calls its
//! configuration names, so that `make bench` can price every kind of call stakeguard makes
//! in a real Envoy (the throughput with `time*10` against the empty filter's is ten clock
//! calls). The configuration is a list of `PHASE:CALL*COUNT` words, e.g.
//! `request:time*10 response:response_map*1`; an unknown word refuses the configuration.
//!
//! Calls go straight to the `proxy_*` imports, as stakeguard's own adapter makes them (the
//! SDK's helpers decode maps into `String`s, which would price the SDK, not the host).

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| Box::new(Root { plan: Rc::default() }));
}}

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_get_header_map_pairs(map: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_set_header_map_pairs(map: u32, data: *const u8, size: usize) -> u32;
    fn proxy_get_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_add_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path: *const u8,
        path_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
        cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
    fn proxy_log(level: u32, message: *const u8, size: usize) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

const REQUEST_HEADERS: u32 = 0;
const RESPONSE_HEADERS: u32 = 2;
const SHARED_KEY: &str = "stakeguard-probe/slot";
/// A counter slot's size in stakeguard's tables (two 32-byte entries).
const SHARED_VALUE: [u8; 64] = [7; 64];

/// One kind of host call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    /// The clock.
    Time,
    /// The whole request header map (and the guest allocation it comes in).
    RequestMap,
    /// One request header by name.
    RequestValue,
    /// `source.address`.
    SourceAddress,
    /// Shared data read (64 bytes).
    SharedGet,
    /// Shared data read and compare-and-swap write back: one counter update.
    SharedUpdate,
    /// A property written.
    SetProperty,
    /// A counter incremented.
    Metric,
    /// A log line below Envoy's level (the bare cost of crossing into the host).
    Trace,
    /// A log line at `info`, which Envoy writes: an event line's length.
    Info,
    /// The whole response header map read.
    ResponseMap,
    /// The response header map read and written back whole.
    ResponseRewrite,
    /// One response header replaced.
    ResponseReplace,
    /// One (absent) response header removed.
    ResponseRemove,
    /// One value added to a response header.
    ResponseAdd,
    /// The request answered locally, as stakeguard refuses one: a 429 with a JSON body
    /// and its `RateLimit-*` headers. It ends the phase (the stream is answered), so it
    /// is priced once per request against the router's `direct_response`.
    LocalReply,
}

impl Call {
    fn parse(name: &str) -> Option<Call> {
        Some(match name {
            "time" => Call::Time,
            "request_map" => Call::RequestMap,
            "request_value" => Call::RequestValue,
            "source_address" => Call::SourceAddress,
            "shared_get" => Call::SharedGet,
            "shared_update" => Call::SharedUpdate,
            "set_property" => Call::SetProperty,
            "metric" => Call::Metric,
            "trace" => Call::Trace,
            "info" => Call::Info,
            "response_map" => Call::ResponseMap,
            "response_rewrite" => Call::ResponseRewrite,
            "response_replace" => Call::ResponseReplace,
            "response_remove" => Call::ResponseRemove,
            "response_add" => Call::ResponseAdd,
            "local_reply" => Call::LocalReply,
            _ => return None,
        })
    }
}

/// What each phase calls, in order, with repetitions.
#[derive(Debug, Default)]
struct Plan {
    request: Vec<(Call, u32)>,
    response: Vec<(Call, u32)>,
    metric: u32,
}

impl Plan {
    fn parse(text: &str) -> Result<Plan, String> {
        let mut plan = Plan::default();
        for word in text.split_whitespace() {
            let (phase, rest) = word
                .split_once(':')
                .ok_or_else(|| format!("{word}: expected PHASE:CALL*COUNT"))?;
            let (name, count) = rest.split_once('*').unwrap_or((rest, "1"));
            let call = Call::parse(name).ok_or_else(|| format!("{word}: unknown call {name}"))?;
            let count = count
                .parse()
                .map_err(|_| format!("{word}: the count must be a whole number"))?;
            match phase {
                "request" => plan.request.push((call, count)),
                "response" => plan.response.push((call, count)),
                _ => return Err(format!("{word}: the phase must be request or response")),
            }
        }
        Ok(plan)
    }
}

/// Frees a buffer the host allocated in our memory (the SDK's allocator boxes slices).
fn free(data: *mut u8, size: usize) {
    if !data.is_null() {
        // SAFETY: the host got `data` from our allocator for `size` bytes and gave it to us.
        drop(unsafe { Vec::from_raw_parts(data, size, size) });
    }
}

/// The headers of the probe's local reply, in the ABI's map encoding: the count, each
/// pair's two lengths, then each name and value followed by a NUL.
fn reply_headers() -> Vec<u8> {
    let pairs: [(&str, &str); 5] = [
        ("content-type", "application/json"),
        ("retry-after", "42"),
        ("ratelimit-limit", "300"),
        ("ratelimit-remaining", "0"),
        ("ratelimit-reset", "42"),
    ];
    let mut map = (pairs.len() as u32).to_le_bytes().to_vec();
    for (name, value) in pairs {
        map.extend_from_slice(&(name.len() as u32).to_le_bytes());
        map.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (name, value) in pairs {
        for text in [name, value] {
            map.extend_from_slice(text.as_bytes());
            map.push(0);
        }
    }
    map
}

/// Makes one call; the statuses are ignored (the probe prices calls, it does not use them).
fn make(call: Call, metric: u32) {
    let mut data = std::ptr::null_mut();
    let mut size = 0;
    // SAFETY (every block): live buffers and valid out-pointers; returned buffers are
    // freed once.
    unsafe {
        match call {
            Call::Time => {
                let mut now = 0;
                proxy_get_current_time_nanoseconds(&mut now);
            }
            Call::RequestMap | Call::ResponseMap | Call::ResponseRewrite => {
                let map = if call == Call::RequestMap {
                    REQUEST_HEADERS
                } else {
                    RESPONSE_HEADERS
                };
                proxy_get_header_map_pairs(map, &mut data, &mut size);
                if call == Call::ResponseRewrite && !data.is_null() {
                    proxy_set_header_map_pairs(map, data, size);
                }
                free(data, size);
            }
            Call::RequestValue => {
                let name = "user-agent";
                proxy_get_header_map_value(
                    REQUEST_HEADERS,
                    name.as_ptr(),
                    name.len(),
                    &mut data,
                    &mut size,
                );
                free(data, size);
            }
            Call::SourceAddress => {
                let path = "source\0address";
                proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size);
                free(data, size);
            }
            Call::SharedGet | Call::SharedUpdate => {
                let mut cas = 0;
                proxy_get_shared_data(
                    SHARED_KEY.as_ptr(),
                    SHARED_KEY.len(),
                    &mut data,
                    &mut size,
                    &mut cas,
                );
                free(data, size);
                if call == Call::SharedUpdate {
                    proxy_set_shared_data(
                        SHARED_KEY.as_ptr(),
                        SHARED_KEY.len(),
                        SHARED_VALUE.as_ptr(),
                        SHARED_VALUE.len(),
                        cas,
                    );
                }
            }
            Call::SetProperty => {
                let (path, value) = ("stakeguard.probe", "allowed");
                proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len());
            }
            Call::Metric => {
                proxy_increment_metric(metric, 1);
            }
            Call::Trace => {
                let line = "probe";
                proxy_log(LogLevel::Trace as u32, line.as_ptr(), line.len());
            }
            Call::Info => {
                let line = EVENT_LINE;
                proxy_log(LogLevel::Info as u32, line.as_ptr(), line.len());
            }
            Call::ResponseReplace => {
                let (name, value) = ("x-content-type-options", "nosniff");
                proxy_replace_header_map_value(
                    RESPONSE_HEADERS,
                    name.as_ptr(),
                    name.len(),
                    value.as_ptr(),
                    value.len(),
                );
            }
            Call::ResponseAdd => {
                let (name, value) = ("set-cookie", "probe=1; Secure");
                proxy_add_header_map_value(
                    RESPONSE_HEADERS,
                    name.as_ptr(),
                    name.len(),
                    value.as_ptr(),
                    value.len(),
                );
            }
            Call::ResponseRemove => {
                let name = "x-powered-by";
                proxy_remove_header_map_value(RESPONSE_HEADERS, name.as_ptr(), name.len());
            }
            Call::LocalReply => {
                let details = "stakeguard_probe";
                let headers = reply_headers();
                proxy_send_local_response(
                    429,
                    details.as_ptr(),
                    details.len(),
                    REPLY_BODY.as_ptr(),
                    REPLY_BODY.len(),
                    headers.as_ptr(),
                    headers.len(),
                    -1,
                );
            }
        }
    }
}

/// Makes the phase's calls; `Pause` once a local reply has answered the stream.
fn run(calls: &[(Call, u32)], metric: u32) -> Action {
    for &(call, count) in calls {
        for _ in 0..count {
            make(call, metric);
            if call == Call::LocalReply {
                return Action::Pause;
            }
        }
    }
    Action::Continue
}

struct Root {
    plan: Rc<Plan>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let bytes = proxy_wasm::hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        match Plan::parse(&text) {
            Ok(mut plan) => {
                let name = "stakeguard_probe.calls";
                // SAFETY: a live `str` and a valid out-pointer.
                unsafe { proxy_define_metric(0, name.as_ptr(), name.len(), &mut plan.metric) };
                self.plan = Rc::new(plan);
                true
            }
            Err(message) => {
                proxy_wasm::hostcalls::log(LogLevel::Error, &format!("probe: {message}")).ok();
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            plan: Rc::clone(&self.plan),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    plan: Rc<Plan>,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        run(&self.plan.request, self.plan.metric)
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        run(&self.plan.response, self.plan.metric)
    }
}

/// A refusal's body as stakeguard writes it.
const REPLY_BODY: &str = r#"{"error":"rate_limited","message":"too many requests: retry later","reference":"8f0c1d2e-3a4b-4c5d-8e9f-0a1b2c3d4e5f"}"#;

/// A refusal's event line as stakeguard logs it (about 330 bytes).
const EVENT_LINE: &str = r#"{"event":"credentials_missing","control":"auth","mode":"enforce","outcome":"blocked","incident":false,"api":"accounts","version":"v2","owner":"team-accounts","tier":"critical","key":"3f2a9c0d11e4b7a2","reference":"8f0c1d2e-3a4b-4c5d-8e9f-0a1b2c3d4e5f","method":"GET","path":"/api/v2/accounts","revision":"bank-2026-11-29.1"}"#;

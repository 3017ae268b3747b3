//! The conformance module: in each callback it calls the host functions it can, on
//! their happy paths and their error paths (a missing header, an unknown property, a
//! shared-data CAS mismatch, a queue that does not exist, a callout to an unknown
//! cluster, bad buffer ranges, a metric defined twice, ...), and logs one line per call
//! with the status and the value it got.
//!
//! The transcript is only log lines and only values that do not depend on the host's
//! clock or addresses, so the same module run by Envoy and by the harness can be
//! compared line by line. Requests steer it by path: `/local` gets a local reply,
//! `/callout` makes an http callout to the cluster `conformance_upstream` and resumes
//! when it answers, anything else is forwarded.

mod raw;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use raw::{pair_count, pairs, returned, status_name};

/// Map and buffer types, by number (so error paths can pass bad ones).
const REQUEST_HEADERS: u32 = 0;
const RESPONSE_HEADERS: u32 = 2;
const HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
const REQUEST_BODY: u32 = 0;
const HTTP_CALL_RESPONSE_BODY: u32 = 4;
const VM_CONFIGURATION: u32 = 6;
const PLUGIN_CONFIGURATION: u32 = 7;

/// Writes one transcript line at info.
fn line(text: &str) {
    // SAFETY: the pointer and length describe `text`, which outlives the call.
    unsafe {
        raw::log(2, text.as_ptr(), text.len());
    }
}

fn show(at: &str, call: &str, status: u32, value: Option<String>) {
    match value {
        Some(v) => line(&format!("{at}: {call} -> {} = {v}", status_name(status))),
        None => line(&format!("{at}: {call} -> {}", status_name(status))),
    }
}

fn text(bytes: Option<Vec<u8>>) -> Option<String> {
    bytes.map(|b| format!("{:?}", String::from_utf8_lossy(&b)))
}

fn get_header(at: &str, map: u32, key: &str) {
    let (s, v) = returned(|p, n| unsafe { raw::get_header(map, key.as_ptr(), key.len(), p, n) });
    show(
        at,
        &format!("get_header_map_value({map}, {key:?})"),
        s,
        text(v),
    );
}

fn get_pairs(at: &str, map: u32) {
    let (s, v) = returned(|p, n| unsafe { raw::get_pairs(map, p, n) });
    let count = v.as_deref().map_or(0, pair_count);
    show(
        at,
        &format!("get_header_map_pairs({map})"),
        s,
        Some(format!("{count} pairs")),
    );
}

fn get_buffer(at: &str, t: u32, start: usize, max: usize) {
    let (s, v) = returned(|p, n| unsafe { raw::get_buffer(t, start, max, p, n) });
    show(
        at,
        &format!("get_buffer_bytes({t}, {start}, {max})"),
        s,
        text(v).or(Some("none".into())),
    );
}

fn set_buffer(at: &str, t: u32, start: usize, size: usize, value: &str) {
    let s = unsafe { raw::set_buffer(t, start, size, value.as_ptr(), value.len()) };
    show(
        at,
        &format!("set_buffer_bytes({t}, {start}, {size}, {value:?})"),
        s,
        None,
    );
}

fn get_property(at: &str, path: &[&str]) {
    let joined = path.join("\0");
    let (s, v) = returned(|p, n| unsafe { raw::get_property(joined.as_ptr(), joined.len(), p, n) });
    show(at, &format!("get_property({path:?})"), s, text(v));
}

fn set_property(at: &str, path: &str, value: &str) {
    let s = unsafe { raw::set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) };
    show(at, &format!("set_property({path:?}, {value:?})"), s, None);
}

fn get_shared(at: &str, key: &str) -> u32 {
    let mut cas = 0u32;
    let (s, v) =
        returned(|p, n| unsafe { raw::get_shared(key.as_ptr(), key.len(), p, n, &mut cas) });
    show(at, &format!("get_shared_data({key:?})"), s, text(v));
    cas
}

fn set_shared(at: &str, key: &str, value: &str, cas: u32, label: &str) {
    let s = unsafe { raw::set_shared(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) };
    show(
        at,
        &format!("set_shared_data({key:?}, {value:?}, cas={label})"),
        s,
        None,
    );
}

fn http_call(at: &str, cluster: &str, path: &str, with_headers: bool) -> u32 {
    let headers = if with_headers {
        pairs(&[
            (":method", "GET"),
            (":path", path),
            (":authority", "conformance"),
        ])
    } else {
        pairs(&[(":method", "GET")])
    };
    let mut token = 0u32;
    let s = unsafe {
        raw::http_call(
            cluster.as_ptr(),
            cluster.len(),
            headers.as_ptr(),
            headers.len(),
            [].as_ptr(),
            0,
            [].as_ptr(),
            0,
            1000,
            &mut token,
        )
    };
    show(
        at,
        &format!("http_call({cluster:?}, {path:?}, headers={with_headers})"),
        s,
        None,
    );
    if s == 0 { token } else { 0 }
}

struct Root {
    queue: u32,
    ticks: u32,
}

struct Stream {
    id: u32,
    path: String,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { queue: 0, ticks: 0 }) });
}}

impl Context for Root {
    fn on_done(&mut self) -> bool {
        line("root: on_done");
        true
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, size: usize) -> bool {
        let at = "on_vm_start";
        line(&format!("{at}: vm_configuration_size = {size}"));
        get_buffer(at, VM_CONFIGURATION, 0, usize::MAX);
        get_buffer(at, PLUGIN_CONFIGURATION, 0, 100);
        get_buffer(at, 99, 0, 1);
        let mut level = 0u32;
        let s = unsafe { raw::get_log_level(&mut level) };
        show(at, "get_log_level", s, None);
        let mut now = 0u64;
        let s = unsafe { raw::get_time(&mut now) };
        show(
            at,
            "get_current_time_nanoseconds",
            s,
            Some(format!("nonzero={}", now > 0)),
        );
        let s = unsafe { raw::log(9, "x".as_ptr(), 1) };
        show(at, "log(level 9)", s, None);
        // Metrics.
        let name = "conformance_requests";
        let (mut a, mut b) = (0u32, 0u32);
        let s1 = unsafe { raw::define_metric(0, name.as_ptr(), name.len(), &mut a) };
        let s2 = unsafe { raw::define_metric(0, name.as_ptr(), name.len(), &mut b) };
        show(
            at,
            "define_metric(counter) twice",
            s1.max(s2),
            Some(format!("same id={}", a == b)),
        );
        let mut bad = 0u32;
        let s = unsafe { raw::define_metric(7, name.as_ptr(), name.len(), &mut bad) };
        show(at, "define_metric(type 7)", s, None);
        show(
            at,
            "increment_metric(counter, 0)",
            unsafe { raw::increment_metric(a, 0) },
            None,
        );
        show(
            at,
            "increment_metric(counter, 2)",
            unsafe { raw::increment_metric(a, 2) },
            None,
        );
        let mut v = 0u64;
        let s = unsafe { raw::get_metric(b, &mut v) };
        show(at, "get_metric(second id)", s, Some(v.to_string()));
        let gauge = "conformance_gauge";
        let mut g = 0u32;
        unsafe { raw::define_metric(1, gauge.as_ptr(), gauge.len(), &mut g) };
        show(
            at,
            "record_metric(gauge, 7)",
            unsafe { raw::record_metric(g, 7) },
            None,
        );
        show(
            at,
            "increment_metric(gauge, -3)",
            unsafe { raw::increment_metric(g, -3) },
            None,
        );
        let s = unsafe { raw::get_metric(g, &mut v) };
        show(at, "get_metric(gauge)", s, Some(v.to_string()));
        let hist = "conformance_histogram";
        let mut h = 0u32;
        unsafe { raw::define_metric(2, hist.as_ptr(), hist.len(), &mut h) };
        show(
            at,
            "record_metric(histogram, 5)",
            unsafe { raw::record_metric(h, 5) },
            None,
        );
        show(
            at,
            "increment_metric(histogram, 1)",
            unsafe { raw::increment_metric(h, 1) },
            None,
        );
        show(
            at,
            "get_metric(histogram)",
            unsafe { raw::get_metric(h, &mut v) },
            None,
        );
        show(
            at,
            "record_metric(unknown id)",
            unsafe { raw::record_metric(4000, 1) },
            None,
        );
        // Shared data.
        get_shared(at, "conformance.missing");
        set_shared(at, "conformance.key", "v1", 0, "0");
        let cas = get_shared(at, "conformance.key");
        set_shared(at, "conformance.key", "v2", cas.wrapping_add(1000), "wrong");
        set_shared(at, "conformance.key", "v3", cas, "current");
        get_shared(at, "conformance.key");
        set_shared(at, "conformance.created", "v", 12345, "12345");
        get_shared(at, "conformance.created");
        // Queues.
        let mut token = 0u32;
        let (vm, name) = ("", "conformance.nosuch");
        let s =
            unsafe { raw::resolve_queue(vm.as_ptr(), 0, name.as_ptr(), name.len(), &mut token) };
        show(at, "resolve_shared_queue(missing)", s, None);
        let q = "conformance.queue";
        let s = unsafe { raw::register_queue(q.as_ptr(), q.len(), &mut self.queue) };
        show(at, "register_shared_queue", s, None);
        let s = unsafe { raw::resolve_queue(vm.as_ptr(), 0, q.as_ptr(), q.len(), &mut token) };
        show(
            at,
            "resolve_shared_queue(registered)",
            s,
            Some(format!("same token={}", token == self.queue)),
        );
        let (s, _) = returned(|p, n| unsafe { raw::dequeue(self.queue, p, n) });
        show(at, "dequeue_shared_queue(empty)", s, None);
        let (s, _) = returned(|p, n| unsafe { raw::dequeue(0xdead, p, n) });
        show(at, "dequeue_shared_queue(unknown)", s, None);
        show(
            at,
            "enqueue_shared_queue(unknown)",
            unsafe { raw::enqueue(0xdead, "x".as_ptr(), 1) },
            None,
        );
        // Callouts, context, misc.
        http_call(at, "no_such_cluster", "/", true);
        let mut gt = 0u32;
        let (c, svc, m) = ("no_such_cluster", "svc", "Method");
        let s = unsafe {
            raw::grpc_call(
                c.as_ptr(),
                c.len(),
                svc.as_ptr(),
                svc.len(),
                m.as_ptr(),
                m.len(),
                [].as_ptr(),
                0,
                [].as_ptr(),
                0,
                1000,
                &mut gt,
            )
        };
        show(at, "grpc_call(no_such_cluster)", s, None);
        show(
            at,
            "grpc_cancel(unknown)",
            unsafe { raw::grpc_cancel(0xdead) },
            None,
        );
        show(
            at,
            "set_effective_context(unknown)",
            unsafe { raw::set_effective_context(0xdead) },
            None,
        );
        show(at, "done", unsafe { raw::done() }, None);
        let f = "conformance_no_such_function";
        let (s, _) = returned(|p, n| unsafe {
            raw::call_foreign(f.as_ptr(), f.len(), [].as_ptr(), 0, p, n)
        });
        show(at, "call_foreign_function(unknown)", s, None);
        get_property(at, &["plugin_root_id"]);
        get_property(at, &["plugin_vm_id"]);
        get_property(at, &["conformance_no_such_property"]);
        get_property(at, &["request", "path"]);
        set_property(at, "conformance.root", "x");
        get_pairs(at, REQUEST_HEADERS);
        get_header(at, REQUEST_HEADERS, ":path");
        get_header(at, 42, ":path");
        show(
            at,
            "continue_stream(9)",
            unsafe { raw::continue_stream(9) },
            None,
        );
        true
    }

    fn on_configure(&mut self, size: usize) -> bool {
        let at = "on_configure";
        line(&format!("{at}: plugin_configuration_size = {size}"));
        get_buffer(at, PLUGIN_CONFIGURATION, 0, usize::MAX);
        get_buffer(at, PLUGIN_CONFIGURATION, 2, 3);
        get_buffer(at, PLUGIN_CONFIGURATION, 1000, 10);
        let mut len = 0usize;
        let mut flags = 0u32;
        let s = unsafe { raw::get_buffer_status(PLUGIN_CONFIGURATION, &mut len, &mut flags) };
        show(
            at,
            "get_buffer_status(plugin_configuration)",
            s,
            Some(len.to_string()),
        );
        set_buffer(at, PLUGIN_CONFIGURATION, 0, 0, "x");
        show(
            at,
            "set_tick_period_milliseconds(1000)",
            unsafe { raw::set_tick(1000) },
            None,
        );
        // The queue gets an item; proxy_on_queue_ready follows.
        show(
            at,
            "enqueue_shared_queue",
            unsafe { raw::enqueue(self.queue, "item".as_ptr(), 4) },
            None,
        );
        true
    }

    fn on_tick(&mut self) {
        self.ticks += 1;
        line(&format!("on_tick: tick {}", self.ticks));
        // A stream paused on `/pause` left its context id in shared data: resume it.
        let key = "conformance.paused";
        let (s, v) =
            returned(|p, n| unsafe { raw::get_shared(key.as_ptr(), key.len(), p, n, &mut 0) });
        if let (0, Some(id)) = (s, v) {
            let id = String::from_utf8_lossy(&id).parse::<u32>().unwrap_or(0);
            if id != 0 {
                unsafe { raw::set_shared(key.as_ptr(), key.len(), "0".as_ptr(), 1, 0) };
                show(
                    "on_tick",
                    "set_effective_context(paused stream)",
                    unsafe { raw::set_effective_context(id) },
                    None,
                );
                show(
                    "on_tick",
                    "continue_stream(request)",
                    unsafe { raw::continue_stream(0) },
                    None,
                );
            }
        }
        if self.ticks >= 2 {
            show(
                "on_tick",
                "set_tick_period_milliseconds(0)",
                unsafe { raw::set_tick(0) },
                None,
            );
        }
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        let at = "on_queue_ready";
        line(&format!("{at}: own queue={}", queue_id == self.queue));
        let (s, v) = returned(|p, n| unsafe { raw::dequeue(queue_id, p, n) });
        show(at, "dequeue_shared_queue", s, text(v));
        let (s, _) = returned(|p, n| unsafe { raw::dequeue(queue_id, p, n) });
        show(at, "dequeue_shared_queue(again)", s, None);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            id: context_id,
            path: String::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Context for Stream {
    fn on_http_call_response(&mut self, _token: u32, headers: usize, body: usize, trailers: usize) {
        let at = "on_http_call_response";
        line(&format!(
            "{at}: headers={headers} body={body} trailers={trailers}"
        ));
        get_header(at, HTTP_CALL_RESPONSE_HEADERS, ":status");
        get_buffer(at, HTTP_CALL_RESPONSE_BODY, 0, usize::MAX);
        let mut code = 0u32;
        let (s, _) = returned(|p, n| unsafe { raw::get_status(&mut code, p, n) });
        show(at, "get_status", s, Some(code.to_string()));
        show(
            at,
            "continue_stream(request)",
            unsafe { raw::continue_stream(0) },
            None,
        );
    }

    fn on_done(&mut self) -> bool {
        line(&format!("stream {}: on_done", self.path));
        true
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, headers: usize, eos: bool) -> Action {
        let at = "on_request_headers";
        let (_, path) =
            returned(|p, n| unsafe { raw::get_header(REQUEST_HEADERS, ":path".as_ptr(), 5, p, n) });
        self.path = path
            .map(|p| String::from_utf8_lossy(&p).into_owned())
            .unwrap_or_default();
        line(&format!(
            "{at}: path={} headers={headers} end_of_stream={eos}",
            self.path
        ));
        get_header(at, REQUEST_HEADERS, ":method");
        get_header(at, REQUEST_HEADERS, "x-conformance-missing");
        get_header(at, RESPONSE_HEADERS, ":status");
        get_header(at, 8, ":path");
        let (k, v) = ("x-conformance", "added");
        show(
            at,
            "add_header_map_value",
            unsafe { raw::add_header(REQUEST_HEADERS, k.as_ptr(), k.len(), v.as_ptr(), v.len()) },
            None,
        );
        let v2 = "replaced";
        show(
            at,
            "replace_header_map_value",
            unsafe {
                raw::replace_header(REQUEST_HEADERS, k.as_ptr(), k.len(), v2.as_ptr(), v2.len())
            },
            None,
        );
        get_header(at, REQUEST_HEADERS, k);
        let r = "x-conformance-remove-me";
        show(
            at,
            "remove_header_map_value",
            unsafe { raw::remove_header(REQUEST_HEADERS, r.as_ptr(), r.len()) },
            None,
        );
        get_header(at, REQUEST_HEADERS, r);
        show(
            at,
            "add_header_map_value(response headers)",
            unsafe { raw::add_header(RESPONSE_HEADERS, k.as_ptr(), k.len(), v.as_ptr(), v.len()) },
            None,
        );
        let mut size = 0u32;
        show(
            at,
            "get_header_map_size(request headers)",
            unsafe { raw::get_map_size(REQUEST_HEADERS, &mut size) },
            None,
        );
        get_pairs(at, RESPONSE_HEADERS);
        get_buffer(at, REQUEST_BODY, 0, 10);
        get_buffer(at, HTTP_CALL_RESPONSE_BODY, 0, 10);
        set_buffer(at, REQUEST_BODY, 0, 0, "x");
        get_property(at, &["request", "path"]);
        get_property(at, &["request", "url_path"]);
        get_property(at, &["request", "method"]);
        get_property(at, &["request", "headers", "x-conformance"]);
        get_property(at, &["request", "no_such_field"]);
        get_property(at, &["conformance_no_such_property"]);
        set_property(at, "conformance.result", "seen");
        get_property(at, &["conformance.result"]);
        get_shared(at, "conformance.key");
        show(
            at,
            "continue_stream(9)",
            unsafe { raw::continue_stream(9) },
            None,
        );
        match self.path.as_str() {
            "/local" => {
                let headers = pairs(&[("x-conformance-local", "yes")]);
                let (d, b) = ("conformance_local", "denied by conformance");
                let s = unsafe {
                    raw::send_local_response(
                        403,
                        d.as_ptr(),
                        d.len(),
                        b.as_ptr(),
                        b.len(),
                        headers.as_ptr(),
                        headers.len(),
                        -1,
                    )
                };
                show(at, "send_local_response(403)", s, None);
                Action::Pause
            }
            "/callout" => {
                http_call(at, "conformance_upstream", "/check", false);
                // Through the SDK, which must know the token to route the answer here.
                let r = self.dispatch_http_call(
                    "conformance_upstream",
                    vec![
                        (":method", "GET"),
                        (":path", "/check"),
                        (":authority", "conformance"),
                    ],
                    None,
                    vec![],
                    std::time::Duration::from_secs(5),
                );
                show(
                    at,
                    "dispatch_http_call(conformance_upstream)",
                    r.map_or_else(|s| s as u32, |_| 0),
                    None,
                );
                if r.is_ok() {
                    Action::Pause
                } else {
                    Action::Continue
                }
            }
            "/pause" => {
                let key = "conformance.paused";
                let id = self.id.to_string();
                let s =
                    unsafe { raw::set_shared(key.as_ptr(), key.len(), id.as_ptr(), id.len(), 0) };
                show(
                    at,
                    "set_shared_data(\"conformance.paused\", <context id>)",
                    s,
                    None,
                );
                line(&format!("{at}: paused, waiting for a tick"));
                Action::Pause
            }
            "/stall" => Action::Pause,
            _ => Action::Continue,
        }
    }

    fn on_http_request_body(&mut self, size: usize, eos: bool) -> Action {
        let at = "on_request_body";
        line(&format!("{at}: size={size} end_of_stream={eos}"));
        if !eos {
            return Action::Pause;
        }
        get_buffer(at, REQUEST_BODY, 0, usize::MAX);
        get_buffer(at, REQUEST_BODY, 1, 2);
        get_buffer(at, REQUEST_BODY, size + 5, 2);
        set_buffer(at, REQUEST_BODY, 1, 1, "x");
        set_buffer(at, REQUEST_BODY, 0, 0, "<");
        set_buffer(at, REQUEST_BODY, usize::MAX, 0, ">");
        get_buffer(at, REQUEST_BODY, 0, usize::MAX);
        get_header(at, REQUEST_HEADERS, ":path");
        Action::Continue
    }

    fn on_http_response_headers(&mut self, headers: usize, eos: bool) -> Action {
        let at = "on_response_headers";
        line(&format!("{at}: headers={headers} end_of_stream={eos}"));
        get_header(at, RESPONSE_HEADERS, ":status");
        get_header(at, RESPONSE_HEADERS, "x-conformance-local");
        get_header(at, REQUEST_HEADERS, ":path");
        get_property(at, &["response", "code"]);
        let (k, v) = ("x-conformance-response", "yes");
        show(
            at,
            "add_header_map_value",
            unsafe { raw::add_header(RESPONSE_HEADERS, k.as_ptr(), k.len(), v.as_ptr(), v.len()) },
            None,
        );
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, eos: bool) -> Action {
        let at = "on_response_body";
        line(&format!("{at}: size={size} end_of_stream={eos}"));
        get_buffer(at, 1, 0, usize::MAX);
        Action::Continue
    }

    fn on_log(&mut self) {
        let at = "on_log";
        get_header(at, REQUEST_HEADERS, ":path");
        get_header(at, RESPONSE_HEADERS, ":status");
        get_header(at, RESPONSE_HEADERS, "x-conformance-response");
        get_property(at, &["conformance.result"]);
    }
}

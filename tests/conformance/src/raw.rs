//! Raw proxy-wasm imports with plain integer types, so every status the host returns
//! reaches the transcript (the SDK's `hostcalls` panic on statuses they do not expect),
//! and small safe wrappers that read host-allocated results back.

use std::ptr::null_mut;

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    #[link_name = "proxy_log"]
    pub fn log(level: u32, ptr: *const u8, len: usize) -> u32;
    #[link_name = "proxy_get_log_level"]
    pub fn get_log_level(out: *mut u32) -> u32;
    #[link_name = "proxy_get_current_time_nanoseconds"]
    pub fn get_time(out: *mut u64) -> u32;
    #[link_name = "proxy_set_tick_period_milliseconds"]
    pub fn set_tick(ms: u32) -> u32;
    #[link_name = "proxy_get_buffer_bytes"]
    pub fn get_buffer(t: u32, start: usize, max: usize, p: *mut *mut u8, n: *mut usize) -> u32;
    #[link_name = "proxy_get_buffer_status"]
    pub fn get_buffer_status(t: u32, n: *mut usize, flags: *mut u32) -> u32;
    #[link_name = "proxy_set_buffer_bytes"]
    pub fn set_buffer(t: u32, start: usize, size: usize, p: *const u8, n: usize) -> u32;
    #[link_name = "proxy_get_header_map_value"]
    pub fn get_header(t: u32, k: *const u8, kn: usize, p: *mut *mut u8, n: *mut usize) -> u32;
    #[link_name = "proxy_get_header_map_pairs"]
    pub fn get_pairs(t: u32, p: *mut *mut u8, n: *mut usize) -> u32;
    #[link_name = "proxy_get_header_map_size"]
    pub fn get_map_size(t: u32, n: *mut u32) -> u32;
    #[link_name = "proxy_add_header_map_value"]
    pub fn add_header(t: u32, k: *const u8, kn: usize, v: *const u8, vn: usize) -> u32;
    #[link_name = "proxy_replace_header_map_value"]
    pub fn replace_header(t: u32, k: *const u8, kn: usize, v: *const u8, vn: usize) -> u32;
    #[link_name = "proxy_remove_header_map_value"]
    pub fn remove_header(t: u32, k: *const u8, kn: usize) -> u32;
    #[link_name = "proxy_get_property"]
    pub fn get_property(k: *const u8, kn: usize, p: *mut *mut u8, n: *mut usize) -> u32;
    #[link_name = "proxy_set_property"]
    pub fn set_property(k: *const u8, kn: usize, v: *const u8, vn: usize) -> u32;
    #[link_name = "proxy_get_shared_data"]
    pub fn get_shared(
        k: *const u8,
        kn: usize,
        p: *mut *mut u8,
        n: *mut usize,
        cas: *mut u32,
    ) -> u32;
    #[link_name = "proxy_set_shared_data"]
    pub fn set_shared(k: *const u8, kn: usize, v: *const u8, vn: usize, cas: u32) -> u32;
    #[link_name = "proxy_register_shared_queue"]
    pub fn register_queue(k: *const u8, kn: usize, token: *mut u32) -> u32;
    #[link_name = "proxy_resolve_shared_queue"]
    pub fn resolve_queue(vm: *const u8, vn: usize, k: *const u8, kn: usize, token: *mut u32)
    -> u32;
    #[link_name = "proxy_enqueue_shared_queue"]
    pub fn enqueue(token: u32, v: *const u8, vn: usize) -> u32;
    #[link_name = "proxy_dequeue_shared_queue"]
    pub fn dequeue(token: u32, p: *mut *mut u8, n: *mut usize) -> u32;
    #[link_name = "proxy_continue_stream"]
    pub fn continue_stream(t: u32) -> u32;
    #[link_name = "proxy_send_local_response"]
    pub fn send_local_response(
        status: u32,
        d: *const u8,
        dn: usize,
        b: *const u8,
        bn: usize,
        h: *const u8,
        hn: usize,
        grpc: i32,
    ) -> u32;
    #[link_name = "proxy_http_call"]
    pub fn http_call(
        c: *const u8,
        cn: usize,
        h: *const u8,
        hn: usize,
        b: *const u8,
        bn: usize,
        t: *const u8,
        tn: usize,
        timeout: u32,
        token: *mut u32,
    ) -> u32;
    #[link_name = "proxy_grpc_call"]
    pub fn grpc_call(
        c: *const u8,
        cn: usize,
        s: *const u8,
        sn: usize,
        m: *const u8,
        mn: usize,
        h: *const u8,
        hn: usize,
        b: *const u8,
        bn: usize,
        timeout: u32,
        token: *mut u32,
    ) -> u32;
    #[link_name = "proxy_grpc_cancel"]
    pub fn grpc_cancel(token: u32) -> u32;
    #[link_name = "proxy_get_status"]
    pub fn get_status(code: *mut u32, p: *mut *mut u8, n: *mut usize) -> u32;
    #[link_name = "proxy_set_effective_context"]
    pub fn set_effective_context(id: u32) -> u32;
    #[link_name = "proxy_done"]
    pub fn done() -> u32;
    #[link_name = "proxy_call_foreign_function"]
    pub fn call_foreign(
        f: *const u8,
        fnn: usize,
        a: *const u8,
        an: usize,
        p: *mut *mut u8,
        n: *mut usize,
    ) -> u32;
    #[link_name = "proxy_define_metric"]
    pub fn define_metric(t: u32, k: *const u8, kn: usize, id: *mut u32) -> u32;
    #[link_name = "proxy_increment_metric"]
    pub fn increment_metric(id: u32, offset: i64) -> u32;
    #[link_name = "proxy_record_metric"]
    pub fn record_metric(id: u32, value: u64) -> u32;
    #[link_name = "proxy_get_metric"]
    pub fn get_metric(id: u32, out: *mut u64) -> u32;
}

/// The name of a proxy-wasm status.
pub fn status_name(s: u32) -> &'static str {
    match s {
        0 => "Ok",
        1 => "NotFound",
        2 => "BadArgument",
        3 => "SerializationFailure",
        4 => "ParseFailure",
        6 => "InvalidMemoryAccess",
        7 => "Empty",
        8 => "CasMismatch",
        10 => "InternalFailure",
        11 => "BrokenConnection",
        12 => "Unimplemented",
        _ => "Unknown",
    }
}

/// Calls a host function that returns a host-allocated buffer; takes ownership of it.
pub fn returned(call: impl FnOnce(*mut *mut u8, *mut usize) -> u32) -> (u32, Option<Vec<u8>>) {
    let mut ptr: *mut u8 = null_mut();
    let mut len: usize = 0;
    let status = call(&mut ptr, &mut len);
    if status == 0 && !ptr.is_null() {
        // SAFETY: the host filled `ptr` with a block of `len` bytes it got from this
        // module's `proxy_on_memory_allocate`, which allocates a Vec<u8> of that capacity.
        let bytes = unsafe { Vec::from_raw_parts(ptr, len, len) };
        (status, Some(bytes))
    } else {
        (status, None)
    }
}

/// Encodes pairs in the proxy-wasm wire format.
pub fn pairs(list: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(list.len() as u32).to_le_bytes());
    for (k, v) in list {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in list {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// The number of pairs in an encoded map.
pub fn pair_count(bytes: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    if let Some(b) = bytes.get(..4) {
        word.copy_from_slice(b);
    }
    u32::from_le_bytes(word)
}

//! Every host call the filter makes, in one place, and the only `unsafe` in the crate.
//!
//! The SDK's `hostcalls` panic (and so trap the VM) on a status they did not expect, and
//! decode header maps into `String`s with `unwrap`, which traps on a header value that is
//! not UTF-8. Here each `proxy_*` import is declared with plain integers, every status is
//! returned as a [`HostError`], every buffer the host hands back is taken over by a `Vec`
//! exactly once, and header maps stay in that buffer, read with checked arithmetic
//! ([`crate::headers`]), values kept as bytes.
//! The one exception is `proxy_http_call`, which goes through the SDK so that its
//! dispatcher knows the token when the response arrives (see [`crate::alerts`]).

use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType, StreamType};

use crate::headers::{self, HeaderBytes};

/// A status other than `Ok` returned by the host, as its ABI number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub u32);

impl HostError {
    /// `NotFound`.
    pub const NOT_FOUND: HostError = HostError(1);
    /// `CasMismatch`: shared data was written by someone else since it was read.
    pub const CAS_MISMATCH: HostError = HostError(8);
    /// The host returned something we cannot decode.
    pub const MALFORMED: HostError = HostError(u32::MAX);
}

type Result<T> = std::result::Result<T, HostError>;

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_log_level(return_level: *mut u32) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_set_header_map_pairs(map_type: u32, map_data: *const u8, map_size: usize) -> u32;
    fn proxy_add_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        details_data: *const u8,
        details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
}

fn status(code: u32) -> Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(HostError(code))
    }
}

/// Takes over a buffer the host allocated through `proxy_on_memory_allocate` (which the
/// SDK exports as a boxed slice of exactly `size` bytes).
fn take_buffer(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        return None;
    }
    // SAFETY: the host returned a pointer it got from our allocator for `size` bytes and
    // hands its ownership to us; it is reclaimed here once, as the SDK does.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// Writes a log line at `level`; a failure to log is ignored (there is nowhere to say it).
pub fn log(level: LogLevel, message: &str) {
    // SAFETY: pointer and length of a live `str`.
    let _ = unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) };
}

/// Whether the host writes lines at `level` (Envoy's log level for Wasm can change at
/// run time, so it is asked, not remembered); a line nobody reads is not worth making.
pub fn logs(level: LogLevel) -> bool {
    let mut current: u32 = 0;
    // SAFETY: `current` is a valid out-pointer.
    let code = unsafe { proxy_get_log_level(&mut current) };
    code != 0 || current <= level as u32
}

/// The host's wall clock in milliseconds since the epoch (0 if the host refuses).
pub fn now_ms() -> u64 {
    let mut nanos: u64 = 0;
    // SAFETY: `nanos` is a valid out-pointer.
    let code = unsafe { proxy_get_current_time_nanoseconds(&mut nanos) };
    if code == 0 { nanos / 1_000_000 } else { 0 }
}

/// Sets the root context's tick period; 0 stops the tick.
pub fn set_tick_period_ms(period: u32) -> Result<()> {
    // SAFETY: no pointers.
    status(unsafe { proxy_set_tick_period_milliseconds(period) })
}

/// Up to `max` bytes of a buffer from `start`; empty when the buffer is absent.
pub fn get_buffer(buffer: BufferType, start: usize, max: usize) -> Result<Vec<u8>> {
    let mut data = std::ptr::null_mut();
    let mut size = 0;
    // SAFETY: valid out-pointers.
    let code = unsafe { proxy_get_buffer_bytes(buffer as u32, start, max, &mut data, &mut size) };
    match status(code) {
        Ok(()) => Ok(take_buffer(data, size).unwrap_or_default()),
        Err(HostError::NOT_FOUND) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// A whole header map in one call.
pub fn get_headers(map: MapType) -> Result<HeaderBytes> {
    let mut data = std::ptr::null_mut();
    let mut size = 0;
    // SAFETY: valid out-pointers.
    status(unsafe { proxy_get_header_map_pairs(map as u32, &mut data, &mut size) })?;
    Ok(HeaderBytes::from(
        take_buffer(data, size).unwrap_or_default(),
    ))
}

/// Replaces a whole header map in one call, with a map already encoded
/// ([`crate::headers::encode_into`]).
pub fn set_encoded_headers(map: MapType, encoded: &[u8]) -> Result<()> {
    // SAFETY: pointer and length of a live buffer.
    status(unsafe { proxy_set_header_map_pairs(map as u32, encoded.as_ptr(), encoded.len()) })
}

/// Adds one value to a header (other values stay).
pub fn add_header(map: MapType, name: &str, value: &[u8]) -> Result<()> {
    // SAFETY: live buffers.
    status(unsafe {
        proxy_add_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

/// Replaces every value of a header with one (adds it when absent).
pub fn replace_header(map: MapType, name: &str, value: &[u8]) -> Result<()> {
    // SAFETY: live buffers.
    status(unsafe {
        proxy_replace_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

/// Removes a header, present or not.
pub fn remove_header(map: MapType, name: &str) -> Result<()> {
    // SAFETY: a live `str`.
    status(unsafe { proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len()) })
}

/// A property path: its segments joined by NUL, as the ABI wants them (`"source\0address"`).
pub type PropertyPath = &'static str;

/// A property (`source.address`, ...), `None` when the host has none.
pub fn get_property(path: PropertyPath) -> Result<Option<Vec<u8>>> {
    let mut data = std::ptr::null_mut();
    let mut size = 0;
    // SAFETY: a live `str` and valid out-pointers.
    let code = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    match status(code) {
        Ok(()) => Ok(take_buffer(data, size)),
        Err(HostError::NOT_FOUND) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sets a property (Envoy keeps it in the stream's filter state as `wasm.<path>`).
pub fn set_property(path: PropertyPath, value: &[u8]) -> Result<()> {
    // SAFETY: live buffers.
    status(unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) })
}

/// A shared-data value and its CAS token; `None` when the key does not exist.
pub fn get_shared_data(key: &str) -> Result<Option<(Vec<u8>, u32)>> {
    let mut data = std::ptr::null_mut();
    let mut size = 0;
    let mut cas = 0;
    // SAFETY: a live `str` and valid out-pointers.
    let code =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match status(code) {
        Ok(()) => Ok(Some((take_buffer(data, size).unwrap_or_default(), cas))),
        Err(HostError::NOT_FOUND) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes shared data; `cas` 0 writes unconditionally.
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<()> {
    // SAFETY: live buffers.
    status(unsafe {
        proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    })
}

/// Resumes the request of the effective context.
pub fn resume_request() -> Result<()> {
    // SAFETY: no pointers.
    status(unsafe { proxy_continue_stream(StreamType::HttpRequest as u32) })
}

/// Resumes the response of the effective context.
pub fn resume_response() -> Result<()> {
    // SAFETY: no pointers.
    status(unsafe { proxy_continue_stream(StreamType::HttpResponse as u32) })
}

/// Answers the effective stream locally.
pub fn send_local_response(
    status_code: u16,
    details: &str,
    body: &[u8],
    headers: &[(&str, &[u8])],
) -> Result<()> {
    let headers = headers::encode_map(headers).ok_or(HostError::MALFORMED)?;
    // SAFETY: live buffers.
    status(unsafe {
        proxy_send_local_response(
            u32::from(status_code),
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    })
}

/// Makes `context_id` the context later host calls act on.
pub fn set_effective_context(context_id: u32) -> Result<()> {
    // SAFETY: no pointers.
    status(unsafe { proxy_set_effective_context(context_id) })
}

/// Defines (or finds) a metric.
pub fn define_metric(kind: MetricType, name: &str) -> Result<u32> {
    let mut id = 0;
    // SAFETY: a live `str` and a valid out-pointer.
    status(unsafe { proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

/// Adds to a counter.
pub fn increment_metric(id: u32, by: i64) -> Result<()> {
    // SAFETY: no pointers.
    status(unsafe { proxy_increment_metric(id, by) })
}

/// Sets a gauge.
pub fn record_metric(id: u32, value: u64) -> Result<()> {
    // SAFETY: no pointers.
    status(unsafe { proxy_record_metric(id, value) })
}

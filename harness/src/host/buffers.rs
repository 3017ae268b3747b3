//! Buffers: `proxy_get_buffer_bytes`, `proxy_get_buffer_status`, `proxy_set_buffer_bytes`.
//!
//! Envoy's rules: a buffer type past the last one is `BadArgument`; a buffer that does
//! not exist now (plugin configuration outside `on_configure`, a callout body outside
//! its callback) is `NotFound`; reads clamp to the buffer and a start past the end
//! gives an empty result. Only the HTTP bodies are writable, and only with Envoy's
//! three shapes: prepend (`start=0, size=0`), replace all (`start=0, size>=len`) and
//! append (`start>=len`); anything else is `BadArgument`.

use wasmtime::Caller;

use super::memory::{copy_out, read, write_u32};
use super::state::{HostState, Phase};
use super::{HostResult, LoadError, Registrar, mem, status};
use crate::abi::{BufferType, Status};

/// Registers this file's imports.
pub fn register(r: &mut Registrar<'_>) -> Result<(), LoadError> {
    r.proxy("proxy_get_buffer_bytes", proxy_get_buffer_bytes)?;
    r.proxy("proxy_get_buffer_status", proxy_get_buffer_status)?;
    r.proxy("proxy_set_buffer_bytes", proxy_set_buffer_bytes)?;
    Ok(())
}

/// The content of a buffer, `Err(NotFound)` when it does not exist now.
fn content(state: &HostState, t: BufferType) -> Result<Vec<u8>, Status> {
    let stream = state.stream();
    Ok(match t {
        BufferType::HttpRequestBody => stream
            .and_then(|s| s.request_body.clone())
            .unwrap_or_default(),
        BufferType::HttpResponseBody => stream
            .and_then(|s| s.response_body.clone())
            .unwrap_or_default(),
        BufferType::DownstreamData | BufferType::UpstreamData | BufferType::CallData => Vec::new(),
        BufferType::HttpCallResponseBody => match (&state.callout_answer, state.phase) {
            (Some(answer), Phase::HttpCallResponse) => answer.body.clone(),
            _ => return Err(Status::NotFound),
        },
        BufferType::GrpcReceiveBuffer => match (&state.callout_answer, state.phase) {
            (Some(answer), Phase::GrpcReceive) => answer.body.clone(),
            _ => Vec::new(),
        },
        BufferType::VmConfiguration => state.config.vm_configuration.clone(),
        BufferType::PluginConfiguration => {
            if state.phase == Phase::Configure {
                state.config.plugin_configuration.clone()
            } else {
                return Err(Status::NotFound);
            }
        }
    })
}

/// `proxy_get_buffer_bytes(buffer_type, start, max_size, ptr_ptr, size_ptr)`.
pub fn proxy_get_buffer_bytes(
    mut caller: Caller<'_, HostState>,
    buffer: u32,
    start: u32,
    max_size: u32,
    ptr_ptr: u32,
    size_ptr: u32,
) -> HostResult {
    let t = status!(BufferType::from_raw(buffer).ok_or(Status::BadArgument));
    let data = content(caller.data(), t);
    let slice = match &data {
        Ok(data) if (start as usize) < data.len() => {
            let start = start as usize;
            let end = start.saturating_add(max_size as usize).min(data.len());
            data.get(start..end).unwrap_or(&[])
        }
        _ => &[][..],
    };
    caller
        .data_mut()
        .count_call("proxy_get_buffer_bytes", 0, slice.len(), |_| {
            t.name().to_string()
        });
    status!(data.as_ref().map_err(|s| *s));
    mem!(copy_out(&mut caller, slice, ptr_ptr, size_ptr));
    Ok(Status::Ok.code())
}

/// `proxy_get_buffer_status(buffer_type, length_ptr, flags_ptr)`.
pub fn proxy_get_buffer_status(
    mut caller: Caller<'_, HostState>,
    buffer: u32,
    length_ptr: u32,
    flags_ptr: u32,
) -> HostResult {
    let t = status!(BufferType::from_raw(buffer).ok_or(Status::BadArgument));
    caller
        .data_mut()
        .count_call("proxy_get_buffer_status", 0, 0, |_| t.name().to_string());
    let data = status!(content(caller.data(), t));
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    mem!(write_u32(&mut caller, "return length", length_ptr, len));
    mem!(write_u32(&mut caller, "return flags", flags_ptr, 0));
    Ok(Status::Ok.code())
}

/// Applies Envoy's body edit rules to `body`.
pub fn edit_body(body: &mut Vec<u8>, start: usize, size: usize, value: &[u8]) -> Status {
    if start == 0 {
        if size == 0 {
            body.splice(0..0, value.iter().copied());
            Status::Ok
        } else if size >= body.len() {
            body.clear();
            body.extend_from_slice(value);
            Status::Ok
        } else {
            Status::BadArgument
        }
    } else if start >= body.len() {
        body.extend_from_slice(value);
        Status::Ok
    } else {
        Status::BadArgument
    }
}

/// `proxy_set_buffer_bytes(buffer_type, start, size, value, value_size)`.
pub fn proxy_set_buffer_bytes(
    mut caller: Caller<'_, HostState>,
    buffer: u32,
    start: u32,
    size: u32,
    value_ptr: u32,
    value_size: u32,
) -> HostResult {
    let t = status!(BufferType::from_raw(buffer).ok_or(Status::BadArgument));
    status!(content(caller.data(), t));
    let value = mem!(read(&mut caller, "buffer value", value_ptr, value_size));
    caller
        .data_mut()
        .count_call("proxy_set_buffer_bytes", value.len(), 0, |_| {
            t.name().to_string()
        });
    let body = caller.data_mut().stream_mut().and_then(|s| match t {
        BufferType::HttpRequestBody => s.request_body.as_mut(),
        BufferType::HttpResponseBody => s.response_body.as_mut(),
        _ => None,
    });
    match body {
        Some(body) => Ok(edit_body(body, start as usize, size as usize, &value).code()),
        None => Ok(Status::BadArgument.code()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_edits_follow_envoy_shapes() {
        let mut body = b"world".to_vec();
        assert_eq!(edit_body(&mut body, 0, 0, b"hello "), Status::Ok);
        assert_eq!(body, b"hello world");
        assert_eq!(edit_body(&mut body, 99, 0, b"!"), Status::Ok);
        assert_eq!(body, b"hello world!");
        assert_eq!(edit_body(&mut body, 0, 1000, b"x"), Status::Ok);
        assert_eq!(body, b"x");
        assert_eq!(
            edit_body(&mut b"abc".to_vec(), 1, 1, b"x"),
            Status::BadArgument
        );
        assert_eq!(
            edit_body(&mut b"abc".to_vec(), 0, 1, b"x"),
            Status::BadArgument
        );
    }
}

//! Stream control and context plumbing: `proxy_continue_stream`, `proxy_close_stream`,
//! `proxy_send_local_response`, `proxy_get_status`, `proxy_set_effective_context`,
//! `proxy_done`, `proxy_call_foreign_function`.
//!
//! As in Envoy, continuing, closing and local replies take effect after the callback
//! returns (they are queued as [`Action`]s for the replay driver); a local reply also
//! makes the callback's own return value count as "stop". From a root context these
//! calls have no stream to act on and succeed without effect, as in Envoy.

use wasmtime::Caller;

use super::memory::{copy_out, decode_pairs, read, read_string, write_u32};
use super::state::{Action, HostState, LocalReply};
use super::{HostResult, LoadError, Registrar, mem};
use crate::abi::{Status, StreamType};

/// Foreign functions Envoy registers; the harness implements only `clear_route_cache`.
const ENVOY_FOREIGN_FUNCTIONS: &[&str] = &[
    "compress",
    "uncompress",
    "declare_property",
    "set_envoy_filter_state",
    "expr_create",
    "expr_evaluate",
    "expr_delete",
];

/// Registers this file's imports.
pub fn register(r: &mut Registrar<'_>) -> Result<(), LoadError> {
    r.proxy("proxy_continue_stream", proxy_continue_stream)?;
    r.proxy("proxy_close_stream", proxy_close_stream)?;
    r.proxy("proxy_send_local_response", proxy_send_local_response)?;
    r.proxy("proxy_get_status", proxy_get_status)?;
    r.proxy("proxy_set_effective_context", proxy_set_effective_context)?;
    r.proxy("proxy_done", proxy_done)?;
    r.proxy("proxy_call_foreign_function", proxy_call_foreign_function)?;
    Ok(())
}

fn http_stream_type(raw: u32) -> Result<StreamType, Status> {
    match StreamType::from_raw(raw) {
        Some(t @ (StreamType::Request | StreamType::Response)) => Ok(t),
        Some(_) | None => Err(Status::BadArgument),
    }
}

/// `proxy_continue_stream(stream_type)`.
pub fn proxy_continue_stream(mut caller: Caller<'_, HostState>, stream: u32) -> HostResult {
    let stream = match http_stream_type(stream) {
        Ok(s) => s,
        Err(status) => return Ok(status.code()),
    };
    let state = caller.data_mut();
    state.count_call("proxy_continue_stream", 0, 0, |_| format!("{stream:?}"));
    let context = state.context();
    if state.streams.contains_key(&context) {
        state.actions.push(Action::Continue { context, stream });
    }
    Ok(Status::Ok.code())
}

/// `proxy_close_stream(stream_type)`: resets the stream.
pub fn proxy_close_stream(mut caller: Caller<'_, HostState>, stream: u32) -> HostResult {
    let stream = match http_stream_type(stream) {
        Ok(s) => s,
        Err(status) => return Ok(status.code()),
    };
    let state = caller.data_mut();
    state.count_call("proxy_close_stream", 0, 0, |_| format!("{stream:?}"));
    let context = state.context();
    if state.streams.contains_key(&context) {
        state.actions.push(Action::Close { context, stream });
    }
    Ok(Status::Ok.code())
}

/// `proxy_send_local_response(status, details, details_size, body, body_size, headers,
/// headers_size, grpc_status)`.
#[expect(clippy::too_many_arguments, reason = "the ABI's signature")]
pub fn proxy_send_local_response(
    mut caller: Caller<'_, HostState>,
    status: u32,
    details_ptr: u32,
    details_size: u32,
    body_ptr: u32,
    body_size: u32,
    headers_ptr: u32,
    headers_size: u32,
    grpc_status: i32,
) -> HostResult {
    let details = mem!(read_string(
        &mut caller,
        "response code details",
        details_ptr,
        details_size
    ));
    let body = mem!(read(&mut caller, "local reply body", body_ptr, body_size));
    let headers = mem!(read(
        &mut caller,
        "local reply headers",
        headers_ptr,
        headers_size
    ));
    let state = caller.data_mut();
    state.count_call(
        "proxy_send_local_response",
        details.len() + body.len() + headers.len(),
        0,
        |_| status.to_string(),
    );
    let context = state.context();
    if state.streams.contains_key(&context) {
        state.actions.push(Action::LocalReply {
            context,
            reply: LocalReply {
                status,
                details,
                body,
                headers: decode_pairs(&headers),
                grpc_status,
            },
        });
    }
    Ok(Status::Ok.code())
}

/// `proxy_get_status(code_ptr, message_ptr_ptr, message_size_ptr)`.
pub fn proxy_get_status(
    mut caller: Caller<'_, HostState>,
    code_ptr: u32,
    message_ptr_ptr: u32,
    message_size_ptr: u32,
) -> HostResult {
    let (code, message) = caller.data().call_status.clone();
    caller
        .data_mut()
        .count_call("proxy_get_status", 0, message.len(), |_| code.to_string());
    mem!(write_u32(&mut caller, "return status code", code_ptr, code));
    mem!(copy_out(
        &mut caller,
        message.as_bytes(),
        message_ptr_ptr,
        message_size_ptr
    ));
    Ok(Status::Ok.code())
}

/// `proxy_set_effective_context(context_id)`.
pub fn proxy_set_effective_context(mut caller: Caller<'_, HostState>, context: u32) -> HostResult {
    let state = caller.data_mut();
    state.count_call("proxy_set_effective_context", 0, 0, |_| String::new());
    if context == state.root_context || state.streams.contains_key(&context) {
        state.effective = Some(context);
        Ok(Status::Ok.code())
    } else {
        Ok(Status::BadArgument.code())
    }
}

/// `proxy_done()`: only a root context that returned false from `proxy_on_done` may.
pub fn proxy_done(mut caller: Caller<'_, HostState>) -> HostResult {
    let state = caller.data_mut();
    state.count_call("proxy_done", 0, 0, |_| String::new());
    let context = state.context();
    if state.pending_done.remove(&context) {
        state.done_called.insert(context);
        Ok(Status::Ok.code())
    } else {
        Ok(Status::NotFound.code())
    }
}

/// `proxy_call_foreign_function(name, name_size, args, args_size, results_ptr_ptr,
/// results_size_ptr)`.
pub fn proxy_call_foreign_function(
    mut caller: Caller<'_, HostState>,
    name_ptr: u32,
    name_size: u32,
    args_ptr: u32,
    args_size: u32,
    results_ptr_ptr: u32,
    results_size_ptr: u32,
) -> HostResult {
    let name = mem!(read_string(
        &mut caller,
        "foreign function name",
        name_ptr,
        name_size
    ));
    mem!(read(
        &mut caller,
        "foreign function arguments",
        args_ptr,
        args_size
    ));
    caller.data_mut().count_call(
        "proxy_call_foreign_function",
        name.len() + args_size as usize,
        0,
        |_| name.clone(),
    );
    if name == "clear_route_cache" {
        if results_ptr_ptr != 0 {
            mem!(write_u32(&mut caller, "return results", results_ptr_ptr, 0));
        }
        if results_size_ptr != 0 {
            mem!(write_u32(
                &mut caller,
                "return results size",
                results_size_ptr,
                0
            ));
        }
        return Ok(Status::Ok.code());
    }
    if ENVOY_FOREIGN_FUNCTIONS.contains(&name.as_str()) {
        return Ok(Status::Unimplemented.code());
    }
    Ok(Status::NotFound.code())
}

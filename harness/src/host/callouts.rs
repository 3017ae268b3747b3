//! Callouts: `proxy_http_call` and the gRPC calls (`proxy_grpc_call`,
//! `proxy_grpc_stream`, `proxy_grpc_send`, `proxy_grpc_cancel`, `proxy_grpc_close`).
//!
//! The host only records the request and hands out a token; the replay driver asks the
//! stub upstream ([`crate::callouts`]) for the answer and delivers it on the virtual
//! clock to the root context, as Envoy starts callouts on the root context. Envoy's
//! rules: an unknown cluster is `BadArgument` for an http call and `ParseFailure` for gRPC
//! (the service bytes are not a `GrpcService` proto, so Envoy takes them as a cluster name,
//! as the Rust SDK sends them, and fails the parse when no such cluster exists: Envoy's
//! `Context::grpcCall`/`grpcStream`); an http call needs `:method`, `:path`
//! and `:authority`; a negative timeout is `BadArgument`; the token slot is written (0)
//! before anything starts, so a bad token pointer fails first.

use wasmtime::Caller;

use super::memory::{decode_pairs, read, read_string, write_u32};
use super::state::{CalloutKind, CalloutRequest, HostState};
use super::{HostResult, LoadError, Registrar, mem};
use crate::abi::Status;

/// Registers this file's imports.
pub fn register(r: &mut Registrar<'_>) -> Result<(), LoadError> {
    r.proxy("proxy_http_call", proxy_http_call)?;
    r.proxy("proxy_grpc_call", proxy_grpc_call)?;
    r.proxy("proxy_grpc_stream", proxy_grpc_stream)?;
    r.proxy("proxy_grpc_send", proxy_grpc_send)?;
    r.proxy("proxy_grpc_cancel", proxy_grpc_cancel)?;
    r.proxy("proxy_grpc_close", proxy_grpc_close)?;
    Ok(())
}

/// `proxy_http_call(cluster, cluster_size, headers, headers_size, body, body_size,
/// trailers, trailers_size, timeout_ms, token_ptr)`.
#[expect(clippy::too_many_arguments, reason = "the ABI's signature")]
pub fn proxy_http_call(
    mut caller: Caller<'_, HostState>,
    cluster_ptr: u32,
    cluster_size: u32,
    headers_ptr: u32,
    headers_size: u32,
    body_ptr: u32,
    body_size: u32,
    trailers_ptr: u32,
    trailers_size: u32,
    timeout_ms: u32,
    token_ptr: u32,
) -> HostResult {
    let cluster = mem!(read_string(
        &mut caller,
        "cluster name",
        cluster_ptr,
        cluster_size
    ));
    let body = mem!(read(&mut caller, "callout body", body_ptr, body_size));
    let headers = mem!(read(
        &mut caller,
        "callout headers",
        headers_ptr,
        headers_size
    ));
    let trailers = mem!(read(
        &mut caller,
        "callout trailers",
        trailers_ptr,
        trailers_size
    ));
    mem!(write_u32(&mut caller, "return token", token_ptr, 0));
    caller.data_mut().count_call(
        "proxy_http_call",
        cluster.len() + headers.len() + body.len() + trailers.len(),
        0,
        |_| cluster.clone(),
    );
    let headers = decode_pairs(&headers);
    let trailers = decode_pairs(&trailers);
    if i32::try_from(timeout_ms).is_err() {
        return Ok(Status::BadArgument.code());
    }
    let state = caller.data_mut();
    if !state.config.callouts.knows(&cluster) {
        return Ok(Status::BadArgument.code());
    }
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if !(has(":path") && has(":method") && (has(":authority") || has("host"))) {
        return Ok(Status::BadArgument.code());
    }
    let mut token = state.next_http_token;
    while token == 0 || state.open_callouts.contains_key(&token) {
        token = token.wrapping_add(1);
    }
    state.next_http_token = token.wrapping_add(1);
    state.open_callouts.insert(token, cluster.clone());
    let request = CalloutRequest {
        token,
        root_context: state.root_context,
        from_context: state.context(),
        cluster,
        kind: CalloutKind::Http,
        headers,
        body,
        trailers,
        timeout_ms,
    };
    state.new_callouts.push(request);
    mem!(write_u32(&mut caller, "return token", token_ptr, token));
    Ok(Status::Ok.code())
}

/// The next free gRPC token of the given parity (odd: calls, even: streams).
fn next_grpc_token(state: &mut HostState, odd: bool) -> u32 {
    let mut token = state.next_grpc_token;
    loop {
        if token != 0 && (token % 2 == 1) == odd && !state.open_grpc.contains_key(&token) {
            break;
        }
        token = token.wrapping_add(1);
    }
    state.next_grpc_token = token.wrapping_add(1);
    token
}

struct GrpcTarget {
    cluster: String,
    service: String,
    method: String,
    metadata: Vec<(String, String)>,
}

/// Opens a gRPC call (odd token) or stream (even token) to a stub cluster and queues it
/// for the stub upstream; `None` for a cluster Envoy would not know: with no
/// `GrpcService` proto and no cluster of that name, Envoy answers `ParseFailure`.
fn open_grpc(
    state: &mut HostState,
    target: GrpcTarget,
    stream: bool,
    body: Vec<u8>,
    timeout_ms: u32,
) -> Option<u32> {
    if !state.config.callouts.knows(&target.cluster) {
        return None;
    }
    let token = next_grpc_token(state, !stream);
    state.open_grpc.insert(token, target.cluster.clone());
    let (service, method) = (target.service, target.method);
    let kind = if stream {
        CalloutKind::GrpcStream { service, method }
    } else {
        CalloutKind::GrpcCall { service, method }
    };
    let request = CalloutRequest {
        token,
        root_context: state.root_context,
        from_context: state.context(),
        cluster: target.cluster,
        kind,
        headers: target.metadata,
        body,
        trailers: Vec::new(),
        timeout_ms,
    };
    state.new_callouts.push(request);
    Some(token)
}

/// Reads the cluster, service, method and metadata of a gRPC call or stream.
#[expect(clippy::too_many_arguments, reason = "the ABI's signature")]
fn read_grpc_target(
    caller: &mut Caller<'_, HostState>,
    name: &'static str,
    cluster_ptr: u32,
    cluster_size: u32,
    service_ptr: u32,
    service_size: u32,
    method_ptr: u32,
    method_size: u32,
    metadata_ptr: u32,
    metadata_size: u32,
) -> Result<GrpcTarget, super::memory::MemoryError> {
    let cluster = read_string(caller, "grpc service", cluster_ptr, cluster_size)?;
    let service = read_string(caller, "grpc service name", service_ptr, service_size)?;
    let method = read_string(caller, "grpc method name", method_ptr, method_size)?;
    let metadata = read(caller, "grpc initial metadata", metadata_ptr, metadata_size)?;
    caller.data_mut().count_call(
        name,
        cluster.len() + service.len() + method.len() + metadata.len(),
        0,
        |_| format!("{cluster}: {service}/{method}"),
    );
    Ok(GrpcTarget {
        cluster,
        service,
        method,
        metadata: decode_pairs(&metadata),
    })
}

/// `proxy_grpc_call(service, .., service_name, .., method, .., metadata, .., message, ..,
/// timeout_ms, token_ptr)`.
#[expect(clippy::too_many_arguments, reason = "the ABI's signature")]
pub fn proxy_grpc_call(
    mut caller: Caller<'_, HostState>,
    cluster_ptr: u32,
    cluster_size: u32,
    service_ptr: u32,
    service_size: u32,
    method_ptr: u32,
    method_size: u32,
    metadata_ptr: u32,
    metadata_size: u32,
    message_ptr: u32,
    message_size: u32,
    timeout_ms: u32,
    token_ptr: u32,
) -> HostResult {
    let target = mem!(read_grpc_target(
        &mut caller,
        "proxy_grpc_call",
        cluster_ptr,
        cluster_size,
        service_ptr,
        service_size,
        method_ptr,
        method_size,
        metadata_ptr,
        metadata_size
    ));
    let message = mem!(read(&mut caller, "grpc message", message_ptr, message_size));
    let Some(token) = open_grpc(caller.data_mut(), target, false, message, timeout_ms) else {
        return Ok(Status::ParseFailure.code());
    };
    mem!(write_u32(&mut caller, "return token", token_ptr, token));
    Ok(Status::Ok.code())
}

/// `proxy_grpc_stream(service, .., service_name, .., method, .., metadata, .., token_ptr)`.
#[expect(clippy::too_many_arguments, reason = "the ABI's signature")]
pub fn proxy_grpc_stream(
    mut caller: Caller<'_, HostState>,
    cluster_ptr: u32,
    cluster_size: u32,
    service_ptr: u32,
    service_size: u32,
    method_ptr: u32,
    method_size: u32,
    metadata_ptr: u32,
    metadata_size: u32,
    token_ptr: u32,
) -> HostResult {
    let target = mem!(read_grpc_target(
        &mut caller,
        "proxy_grpc_stream",
        cluster_ptr,
        cluster_size,
        service_ptr,
        service_size,
        method_ptr,
        method_size,
        metadata_ptr,
        metadata_size
    ));
    let Some(token) = open_grpc(caller.data_mut(), target, true, Vec::new(), 0) else {
        return Ok(Status::ParseFailure.code());
    };
    mem!(write_u32(&mut caller, "return token", token_ptr, token));
    Ok(Status::Ok.code())
}

/// `proxy_grpc_send(token, message, message_size, end_of_stream)`: only streams (even
/// tokens) take messages; the stub ignores them.
pub fn proxy_grpc_send(
    mut caller: Caller<'_, HostState>,
    token: u32,
    message_ptr: u32,
    message_size: u32,
    _end_of_stream: u32,
) -> HostResult {
    mem!(read(&mut caller, "grpc message", message_ptr, message_size));
    caller
        .data_mut()
        .count_call("proxy_grpc_send", message_size as usize, 0, |_| {
            String::new()
        });
    if token % 2 == 1 {
        return Ok(Status::BadArgument.code());
    }
    if caller.data().open_grpc.contains_key(&token) {
        Ok(Status::Ok.code())
    } else {
        Ok(Status::NotFound.code())
    }
}

fn end_grpc(caller: &mut Caller<'_, HostState>, name: &'static str, token: u32) -> HostResult {
    let state = caller.data_mut();
    state.count_call(name, 0, 0, |_| String::new());
    if state.open_grpc.remove(&token).is_some() {
        state.cancelled_grpc.push(token);
        Ok(Status::Ok.code())
    } else {
        Ok(Status::NotFound.code())
    }
}

/// `proxy_grpc_cancel(token)`.
pub fn proxy_grpc_cancel(mut caller: Caller<'_, HostState>, token: u32) -> HostResult {
    end_grpc(&mut caller, "proxy_grpc_cancel", token)
}

/// `proxy_grpc_close(token)`.
pub fn proxy_grpc_close(mut caller: Caller<'_, HostState>, token: u32) -> HostResult {
    end_grpc(&mut caller, "proxy_grpc_close", token)
}

//! Header and trailer maps: `proxy_get_header_map_value`, `_pairs`, `_size`,
//! `proxy_add_/replace_/remove_header_map_value`, `proxy_set_header_map_pairs`.
//!
//! Envoy's rules: a map type past the last one is `BadArgument`; a map that does not
//! exist in this callback is `BadArgument` for reads of one value and for writes (and
//! `NotFound` in the access-log phase), but an empty list for `get_pairs`; a missing key
//! is `NotFound`. Stream maps are writable; callout answer maps are read-only.

use wasmtime::Caller;

use super::memory::{copy_out, guest_bytes, memory_and_state, pair_slices, slice, text, write_u32};
use super::state::{HeaderMap, HostState, Phase};
use super::{HostResult, LoadError, Registrar, mem, status};
use crate::abi::{MapType, Status};

/// Registers this file's imports.
pub fn register(r: &mut Registrar<'_>) -> Result<(), LoadError> {
    r.proxy("proxy_get_header_map_value", proxy_get_header_map_value)?;
    r.proxy("proxy_get_header_map_pairs", proxy_get_header_map_pairs)?;
    r.proxy("proxy_get_header_map_size", proxy_get_header_map_size)?;
    r.proxy("proxy_add_header_map_value", proxy_add_header_map_value)?;
    r.proxy(
        "proxy_replace_header_map_value",
        proxy_replace_header_map_value,
    )?;
    r.proxy(
        "proxy_remove_header_map_value",
        proxy_remove_header_map_value,
    )?;
    r.proxy("proxy_set_header_map_pairs", proxy_set_header_map_pairs)?;
    Ok(())
}

fn map_type(raw: u32) -> Result<MapType, Status> {
    MapType::from_raw(raw).ok_or(Status::BadArgument)
}

/// The map as the module may read it now.
fn const_map(state: &HostState, t: MapType) -> Option<&HeaderMap> {
    let log = state.phase == Phase::Log;
    match t {
        MapType::HttpCallResponseHeaders if state.phase == Phase::HttpCallResponse => {
            state.callout_answer.as_ref().map(|a| &a.headers)
        }
        MapType::HttpCallResponseTrailers if state.phase == Phase::HttpCallResponse => {
            state.callout_answer.as_ref().map(|a| &a.trailers)
        }
        MapType::GrpcReceiveInitialMetadata if state.phase == Phase::GrpcReceive => {
            state.callout_answer.as_ref().map(|a| &a.headers)
        }
        MapType::GrpcReceiveTrailingMetadata if state.phase == Phase::GrpcReceive => {
            state.callout_answer.as_ref().map(|a| &a.trailers)
        }
        MapType::RequestHeaders => {
            let s = state.stream()?;
            s.request_headers.as_ref().or(if log {
                Some(&s.log_request_headers)
            } else {
                None
            })
        }
        MapType::RequestTrailers => state.stream()?.request_trailers.as_ref(),
        MapType::ResponseHeaders => {
            let s = state.stream()?;
            s.response_headers.as_ref().or(if log {
                Some(&s.log_response_headers)
            } else {
                None
            })
        }
        MapType::ResponseTrailers => {
            let s = state.stream()?;
            s.response_trailers.as_ref().or(if log {
                Some(&s.log_response_trailers)
            } else {
                None
            })
        }
        _ => None,
    }
}

/// Applies `edit` to a writable map: `BadArgument` when the map does not exist or can
/// no longer be written, as in Envoy.
fn edit_map(state: &mut HostState, t: MapType, edit: impl FnOnce(&mut HeaderMap)) -> HostResult {
    match mut_map(state, t) {
        Some(m) => {
            edit(m);
            Ok(Status::Ok.code())
        }
        None => Ok(Status::BadArgument.code()),
    }
}

/// The map as the module may change it now (stream maps only).
fn mut_map(state: &mut HostState, t: MapType) -> Option<&mut HeaderMap> {
    let s = state.stream_mut()?;
    match t {
        MapType::RequestHeaders => s.request_headers.as_mut(),
        MapType::RequestTrailers => s.request_trailers.as_mut(),
        MapType::ResponseHeaders => s.response_headers.as_mut(),
        MapType::ResponseTrailers => s.response_trailers.as_mut(),
        _ => None,
    }
}

/// `proxy_get_header_map_value(map_type, key, key_size, value_ptr_ptr, value_size_ptr)`.
pub fn proxy_get_header_map_value(
    mut caller: Caller<'_, HostState>,
    map: u32,
    key_ptr: u32,
    key_size: u32,
    value_ptr_ptr: u32,
    value_size_ptr: u32,
) -> HostResult {
    let t = status!(map_type(map));
    let key = mem!(slice(&caller, "header key", key_ptr, key_size));
    let state = caller.data();
    let detail = state
        .calls
        .is_some()
        .then(|| format!("{}: {}", t.name(), text(key)));
    // A clone shares the entries, and holds the value while the guest allocates for it.
    let map = const_map(state, t).cloned();
    let value = map.as_ref().and_then(|m| m.get(&text(key)));
    let state = caller.data_mut();
    state.count_call(
        "proxy_get_header_map_value",
        key_size as usize,
        value.map_or(0, str::len),
        |_| detail.unwrap_or_default(),
    );
    let value = match (&map, value) {
        (None, _) if state.phase == Phase::Log => return Ok(Status::NotFound.code()),
        (None, _) => return Ok(Status::BadArgument.code()),
        (Some(_), None) => return Ok(Status::NotFound.code()),
        (Some(_), Some(value)) => value,
    };
    mem!(copy_out(
        &mut caller,
        value.as_bytes(),
        value_ptr_ptr,
        value_size_ptr
    ));
    Ok(Status::Ok.code())
}

/// `proxy_get_header_map_pairs(map_type, ptr_ptr, size_ptr)`: the map's encoding (none
/// for an empty map).
pub fn proxy_get_header_map_pairs(
    mut caller: Caller<'_, HostState>,
    map: u32,
    ptr_ptr: u32,
    size_ptr: u32,
) -> HostResult {
    let t = status!(map_type(map));
    // A clone shares the entries: the map stays as it is while the guest allocates.
    let map = const_map(caller.data(), t).cloned().unwrap_or_default();
    let bytes = if map.is_empty() {
        &[][..]
    } else {
        map.encoded()
    };
    caller
        .data_mut()
        .count_call("proxy_get_header_map_pairs", 0, bytes.len(), |_| {
            t.name().to_string()
        });
    mem!(copy_out(&mut caller, bytes, ptr_ptr, size_ptr));
    Ok(Status::Ok.code())
}

/// `proxy_get_header_map_size(map_type, size_ptr)`: the map's size in bytes.
pub fn proxy_get_header_map_size(
    mut caller: Caller<'_, HostState>,
    map: u32,
    size_ptr: u32,
) -> HostResult {
    let t = status!(map_type(map));
    caller
        .data_mut()
        .count_call("proxy_get_header_map_size", 0, 0, |_| t.name().to_string());
    let Some(size) = mut_map(caller.data_mut(), t).map(|m| m.byte_size()) else {
        return Ok(Status::BadArgument.code());
    };
    mem!(write_u32(
        &mut caller,
        "return size",
        size_ptr,
        u32::try_from(size).unwrap_or(u32::MAX)
    ));
    Ok(Status::Ok.code())
}

/// `proxy_add_header_map_value(map_type, key, key_size, value, value_size)`.
pub fn proxy_add_header_map_value(
    caller: Caller<'_, HostState>,
    map: u32,
    key_ptr: u32,
    key_size: u32,
    value_ptr: u32,
    value_size: u32,
) -> HostResult {
    write_value(
        caller,
        ("proxy_add_header_map_value", map),
        (key_ptr, key_size),
        (value_ptr, value_size),
        HeaderMap::add,
    )
}

/// `proxy_replace_header_map_value(map_type, key, key_size, value, value_size)`.
pub fn proxy_replace_header_map_value(
    caller: Caller<'_, HostState>,
    map: u32,
    key_ptr: u32,
    key_size: u32,
    value_ptr: u32,
    value_size: u32,
) -> HostResult {
    write_value(
        caller,
        ("proxy_replace_header_map_value", map),
        (key_ptr, key_size),
        (value_ptr, value_size),
        HeaderMap::replace,
    )
}

/// Reads a key and a value from the guest and writes them into a map with `op` (the
/// import `name`, for the host-call counts).
fn write_value(
    mut caller: Caller<'_, HostState>,
    (name, map): (&'static str, u32),
    (key_ptr, key_size): (u32, u32),
    (value_ptr, value_size): (u32, u32),
    op: fn(&mut HeaderMap, &str, &str),
) -> HostResult {
    let t = status!(map_type(map));
    let (memory, state) = mem!(memory_and_state(&mut caller));
    let key = mem!(guest_bytes(memory, "header key", key_ptr, key_size));
    let value = mem!(guest_bytes(memory, "header value", value_ptr, value_size));
    state.count_call(name, key.len() + value.len(), 0, |_| {
        format!("{}: {}", t.name(), text(key))
    });
    edit_map(state, t, |m| {
        op(m, &text(key), &text(value));
    })
}

/// `proxy_remove_header_map_value(map_type, key, key_size)`.
pub fn proxy_remove_header_map_value(
    mut caller: Caller<'_, HostState>,
    map: u32,
    key_ptr: u32,
    key_size: u32,
) -> HostResult {
    let t = status!(map_type(map));
    let (memory, state) = mem!(memory_and_state(&mut caller));
    let key = mem!(guest_bytes(memory, "header key", key_ptr, key_size));
    state.count_call("proxy_remove_header_map_value", key.len(), 0, |_| {
        format!("{}: {}", t.name(), text(key))
    });
    edit_map(state, t, |m| m.remove(&text(key)))
}

/// `proxy_set_header_map_pairs(map_type, pairs, pairs_size)`: replaces the whole map.
pub fn proxy_set_header_map_pairs(
    mut caller: Caller<'_, HostState>,
    map: u32,
    ptr: u32,
    size: u32,
) -> HostResult {
    let t = status!(map_type(map));
    let (memory, state) = mem!(memory_and_state(&mut caller));
    let bytes = mem!(guest_bytes(memory, "header pairs", ptr, size));
    state.count_call("proxy_set_header_map_pairs", bytes.len(), 0, |_| {
        t.name().to_string()
    });
    // Lent to the map for the write (it is part of the state the map is borrowed from).
    let mut recent = std::mem::take(&mut state.recent_entries);
    let status = edit_map(state, t, |m| m.set_pairs(pair_slices(bytes), &mut recent));
    state.recent_entries = recent;
    status
}

//! Properties: `proxy_get_property` and `proxy_set_property`.
//!
//! Reads go to the attribute model in [`crate::properties`]. Writes store filter state
//! on the stream (Envoy keeps it as `wasm.<path>`), where later reads of the same
//! one-segment path and the report find it; outside a stream there is no stream info
//! and Envoy answers `NotFound`.

use wasmtime::Caller;

use super::calls::property_path;
use super::memory::{copy_out, read, slice};
use super::state::HostState;
use super::{HostResult, LoadError, Registrar, mem};
use crate::abi::Status;

/// Registers this file's imports.
pub fn register(r: &mut Registrar<'_>) -> Result<(), LoadError> {
    r.proxy("proxy_get_property", proxy_get_property)?;
    r.proxy("proxy_set_property", proxy_set_property)?;
    Ok(())
}

/// `proxy_get_property(path, path_size, value_ptr_ptr, value_size_ptr)`.
pub fn proxy_get_property(
    mut caller: Caller<'_, HostState>,
    path_ptr: u32,
    path_size: u32,
    value_ptr_ptr: u32,
    value_size_ptr: u32,
) -> HostResult {
    // The value borrows host state, which the guest allocator's code could change: it
    // is serialized first, into a buffer the VM keeps for its capacity.
    let mut bytes = std::mem::take(&mut caller.data_mut().property_bytes);
    bytes.clear();
    let mut detail = None;
    let found = slice(&caller, "property path", path_ptr, path_size).map(|path| {
        let state = caller.data();
        if state.calls.is_some() {
            detail = Some(property_path(path));
        }
        crate::properties::get(&state.config, state.stream(), path)
            .map(|value| value.serialize_into(&mut bytes))
    });
    if found.is_ok() {
        let out = if matches!(found, Ok(Ok(()))) {
            bytes.len()
        } else {
            0
        };
        caller
            .data_mut()
            .count_call("proxy_get_property", path_size as usize, out, |_| {
                detail.unwrap_or_default()
            });
    }
    let copied = match found {
        Ok(Ok(())) => {
            copy_out(&mut caller, &bytes, value_ptr_ptr, value_size_ptr).map(|()| Status::Ok)
        }
        Ok(Err(status)) => Ok(status),
        Err(e) => Err(e),
    };
    caller.data_mut().property_bytes = bytes;
    Ok(mem!(copied).code())
}

/// `proxy_set_property(path, path_size, value, value_size)`.
pub fn proxy_set_property(
    mut caller: Caller<'_, HostState>,
    path_ptr: u32,
    path_size: u32,
    value_ptr: u32,
    value_size: u32,
) -> HostResult {
    let path = mem!(read(&mut caller, "property path", path_ptr, path_size));
    let value = mem!(read(&mut caller, "property value", value_ptr, value_size));
    caller
        .data_mut()
        .count_call("proxy_set_property", path.len() + value.len(), 0, |_| {
            property_path(&path)
        });
    match caller.data_mut().stream_mut() {
        Some(stream) => {
            stream.filter_state.insert(path, value);
            Ok(Status::Ok.code())
        }
        None => Ok(Status::NotFound.code()),
    }
}

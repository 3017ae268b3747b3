//! Shared data and shared queues: `proxy_get_shared_data`, `proxy_set_shared_data`,
//! `proxy_register_shared_queue`, `proxy_resolve_shared_queue`,
//! `proxy_enqueue_shared_queue`, `proxy_dequeue_shared_queue`.
//!
//! One store serves every worker VM of a replay, scoped by vm_id, as Envoy's process-wide
//! store does. Envoy's rules: a missing key is `NotFound`; a set with a non-zero cas that
//! differs from the current one is `CasMismatch`; a missing key is created whatever the
//! cas; every write takes the next value of one global cas counter. Queues are named per
//! vm_id; registering again returns the same token and moves notifications to the new
//! registrant's root context; enqueueing schedules `proxy_on_queue_ready` on it.

use wasmtime::Caller;

use super::memory::{copy_out, read, read_string, write_u32};
use super::state::{HostState, lock};
use super::{HostResult, LoadError, Registrar, mem, status};
use crate::abi::Status;

/// Registers this file's imports.
pub fn register(r: &mut Registrar<'_>) -> Result<(), LoadError> {
    r.proxy("proxy_get_shared_data", proxy_get_shared_data)?;
    r.proxy("proxy_set_shared_data", proxy_set_shared_data)?;
    r.proxy("proxy_register_shared_queue", proxy_register_shared_queue)?;
    r.proxy("proxy_resolve_shared_queue", proxy_resolve_shared_queue)?;
    r.proxy("proxy_enqueue_shared_queue", proxy_enqueue_shared_queue)?;
    r.proxy("proxy_dequeue_shared_queue", proxy_dequeue_shared_queue)?;
    Ok(())
}

/// `proxy_get_shared_data(key, key_size, value_ptr_ptr, value_size_ptr, cas_ptr)`.
pub fn proxy_get_shared_data(
    mut caller: Caller<'_, HostState>,
    key_ptr: u32,
    key_size: u32,
    value_ptr_ptr: u32,
    value_size_ptr: u32,
    cas_ptr: u32,
) -> HostResult {
    let key = mem!(read(&mut caller, "shared data key", key_ptr, key_size));
    let found = {
        let state = caller.data();
        let shared = lock(&state.shared);
        shared
            .data
            .get(&state.config.vm_id)
            .and_then(|m| m.get(&key))
            .cloned()
    };
    caller.data_mut().count_call(
        "proxy_get_shared_data",
        key.len(),
        found.as_ref().map_or(0, |(value, _)| value.len()),
        |_| if found.is_some() { "found" } else { "missing" }.to_string(),
    );
    let Some((value, cas)) = found else {
        return Ok(Status::NotFound.code());
    };
    mem!(copy_out(&mut caller, &value, value_ptr_ptr, value_size_ptr));
    mem!(write_u32(&mut caller, "return cas", cas_ptr, cas));
    Ok(Status::Ok.code())
}

/// `proxy_set_shared_data(key, key_size, value, value_size, cas)`.
pub fn proxy_set_shared_data(
    mut caller: Caller<'_, HostState>,
    key_ptr: u32,
    key_size: u32,
    value_ptr: u32,
    value_size: u32,
    cas: u32,
) -> HostResult {
    let key = mem!(read(&mut caller, "shared data key", key_ptr, key_size));
    let value = mem!(read(
        &mut caller,
        "shared data value",
        value_ptr,
        value_size
    ));
    caller
        .data_mut()
        .count_call("proxy_set_shared_data", key.len() + value.len(), 0, |_| {
            if cas == 0 {
                "unconditional"
            } else {
                "compare-and-swap"
            }
            .to_string()
        });
    let state = caller.data();
    let mut shared = lock(&state.shared);
    let current = shared
        .data
        .get(&state.config.vm_id)
        .and_then(|m| m.get(&key))
        .map(|(_, c)| *c);
    if let Some(current) = current
        && cas != 0
        && cas != current
    {
        return Ok(Status::CasMismatch.code());
    }
    let next = shared.next_cas();
    shared
        .data
        .entry(state.config.vm_id.clone())
        .or_default()
        .insert(key, (value, next));
    Ok(Status::Ok.code())
}

/// `proxy_register_shared_queue(name, name_size, token_ptr)`.
pub fn proxy_register_shared_queue(
    mut caller: Caller<'_, HostState>,
    name_ptr: u32,
    name_size: u32,
    token_ptr: u32,
) -> HostResult {
    let name = mem!(read_string(&mut caller, "queue name", name_ptr, name_size));
    caller
        .data_mut()
        .count_call("proxy_register_shared_queue", name.len(), 0, |_| {
            name.clone()
        });
    let token = {
        let state = caller.data();
        let mut shared = lock(&state.shared);
        let key = (state.config.vm_id.clone(), name);
        let token = match shared.queue_tokens.get(&key) {
            Some(t) => *t,
            None => {
                shared.next_queue_token = shared.next_queue_token.wrapping_add(1).max(1);
                let t = shared.next_queue_token;
                shared.queue_tokens.insert(key, t);
                t
            }
        };
        let queue = shared.queues.entry(token).or_default();
        queue.worker = state.worker;
        queue.context = state.root_context;
        token
    };
    mem!(write_u32(&mut caller, "return token", token_ptr, token));
    Ok(Status::Ok.code())
}

/// `proxy_resolve_shared_queue(vm_id, vm_id_size, name, name_size, token_ptr)`.
pub fn proxy_resolve_shared_queue(
    mut caller: Caller<'_, HostState>,
    vm_id_ptr: u32,
    vm_id_size: u32,
    name_ptr: u32,
    name_size: u32,
    token_ptr: u32,
) -> HostResult {
    let vm_id = mem!(read_string(&mut caller, "vm id", vm_id_ptr, vm_id_size));
    let name = mem!(read_string(&mut caller, "queue name", name_ptr, name_size));
    caller.data_mut().count_call(
        "proxy_resolve_shared_queue",
        vm_id.len() + name.len(),
        0,
        |_| name.clone(),
    );
    let token = {
        let state = caller.data();
        let vm_id = if vm_id.is_empty() {
            state.config.vm_id.clone()
        } else {
            vm_id
        };
        lock(&state.shared)
            .queue_tokens
            .get(&(vm_id, name))
            .copied()
    };
    let Some(token) = token else {
        return Ok(Status::NotFound.code());
    };
    mem!(write_u32(&mut caller, "return token", token_ptr, token));
    Ok(Status::Ok.code())
}

/// `proxy_enqueue_shared_queue(token, value, value_size)`.
pub fn proxy_enqueue_shared_queue(
    mut caller: Caller<'_, HostState>,
    token: u32,
    value_ptr: u32,
    value_size: u32,
) -> HostResult {
    let value = mem!(read(&mut caller, "queue item", value_ptr, value_size));
    let state = caller.data_mut();
    state.count_call("proxy_enqueue_shared_queue", value.len(), 0, |_| {
        String::new()
    });
    {
        let mut shared = lock(&state.shared);
        let Some(queue) = shared.queues.get_mut(&token) else {
            return Ok(Status::NotFound.code());
        };
        queue.items.push_back(value);
        let owner = (queue.worker, queue.context, token);
        shared.ready.push(owner);
    }
    state.queued = true;
    Ok(Status::Ok.code())
}

/// `proxy_dequeue_shared_queue(token, value_ptr_ptr, value_size_ptr)`.
pub fn proxy_dequeue_shared_queue(
    mut caller: Caller<'_, HostState>,
    token: u32,
    value_ptr_ptr: u32,
    value_size_ptr: u32,
) -> HostResult {
    let item = {
        let state = caller.data();
        let mut shared = lock(&state.shared);
        match shared.queues.get_mut(&token) {
            None => Err(Status::NotFound),
            Some(queue) => queue.items.pop_front().ok_or(Status::Empty),
        }
    };
    caller.data_mut().count_call(
        "proxy_dequeue_shared_queue",
        0,
        item.as_ref().map_or(0, Vec::len),
        |_| String::new(),
    );
    let item = status!(item);
    mem!(copy_out(&mut caller, &item, value_ptr_ptr, value_size_ptr));
    Ok(Status::Ok.code())
}

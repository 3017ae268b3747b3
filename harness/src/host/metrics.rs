//! Metrics: `proxy_define_metric`, `proxy_increment_metric`, `proxy_record_metric`,
//! `proxy_get_metric`.
//!
//! Envoy's ids: per VM, each type counts up by 4 from its tag (counter 0, gauge 1,
//! histogram 2), so `id & 3` is the type. Defining a name twice gives a new id for the
//! same stat; values live in the replay's shared store because Envoy's stats are per
//! proxy, not per worker. Counters only go up (a non-positive increment is
//! `BadArgument`); histograms cannot be incremented or read (`BadArgument`); an unknown
//! id is `NotFound`.

use wasmtime::Caller;

use super::memory::{read_string, write_u32, write_u64};
use super::state::{HostState, MetricDef, lock};
use super::{HostResult, LoadError, Registrar, mem};
use crate::abi::{MetricType, Status};

/// Registers this file's imports.
pub fn register(r: &mut Registrar<'_>) -> Result<(), LoadError> {
    r.proxy("proxy_define_metric", proxy_define_metric)?;
    r.proxy("proxy_increment_metric", proxy_increment_metric)?;
    r.proxy("proxy_record_metric", proxy_record_metric)?;
    r.proxy("proxy_get_metric", proxy_get_metric)?;
    Ok(())
}

/// `proxy_define_metric(type, name, name_size, id_ptr)`.
pub fn proxy_define_metric(
    mut caller: Caller<'_, HostState>,
    kind: u32,
    name_ptr: u32,
    name_size: u32,
    id_ptr: u32,
) -> HostResult {
    let Some(kind) = MetricType::from_raw(kind) else {
        return Ok(Status::BadArgument.code());
    };
    let name = mem!(read_string(&mut caller, "metric name", name_ptr, name_size));
    caller
        .data_mut()
        .count_call("proxy_define_metric", name.len(), 0, |_| name.clone());
    let id = {
        let state = caller.data_mut();
        let slot = state.next_metric_id.get_mut(kind.tag() as usize);
        let Some(slot) = slot else {
            return Ok(Status::BadArgument.code());
        };
        *slot = slot.wrapping_add(4);
        let id = *slot;
        state.metric_ids.insert(
            id,
            MetricDef {
                kind,
                name: name.clone(),
            },
        );
        let mut shared = lock(&state.shared);
        let entry = shared.metrics.entry(name).or_default();
        entry.kind.get_or_insert(kind);
        id
    };
    mem!(write_u32(&mut caller, "return metric id", id_ptr, id));
    Ok(Status::Ok.code())
}

fn metric(state: &HostState, id: u32) -> Option<MetricDef> {
    state.metric_ids.get(&id).cloned()
}

/// The name of metric `id` for the host-call counts (the id when it is not defined).
fn metric_name(state: &HostState, id: u32) -> String {
    state
        .metric_ids
        .get(&id)
        .map_or_else(|| format!("id {id}"), |m| m.name.clone())
}

/// `proxy_increment_metric(id, offset)`.
pub fn proxy_increment_metric(
    mut caller: Caller<'_, HostState>,
    id: u32,
    offset: i64,
) -> HostResult {
    caller
        .data_mut()
        .count_call("proxy_increment_metric", 0, 0, |s| metric_name(s, id));
    let state = caller.data();
    let kind = MetricType::from_raw(id & 3);
    let Some(kind) = kind.filter(|k| *k != MetricType::Histogram) else {
        return Ok(Status::BadArgument.code());
    };
    let Some(def) = metric(state, id) else {
        return Ok(Status::NotFound.code());
    };
    let mut shared = lock(&state.shared);
    let value = &mut shared.metrics.entry(def.name).or_default().value;
    match kind {
        MetricType::Counter if offset <= 0 => return Ok(Status::BadArgument.code()),
        _ if offset >= 0 => *value = value.saturating_add(offset.unsigned_abs()),
        _ => *value = value.saturating_sub(offset.unsigned_abs()),
    }
    Ok(Status::Ok.code())
}

/// `proxy_record_metric(id, value)`.
pub fn proxy_record_metric(mut caller: Caller<'_, HostState>, id: u32, value: u64) -> HostResult {
    caller
        .data_mut()
        .count_call("proxy_record_metric", 0, 0, |s| metric_name(s, id));
    let state = caller.data();
    let Some(def) = metric(state, id) else {
        return Ok(Status::NotFound.code());
    };
    let mut shared = lock(&state.shared);
    let entry = shared.metrics.entry(def.name).or_default();
    match def.kind {
        MetricType::Counter => entry.value = entry.value.saturating_add(value),
        MetricType::Gauge => entry.value = value,
        MetricType::Histogram => {
            entry.value = value;
            entry.samples = entry.samples.saturating_add(1);
            entry.sum = entry.sum.saturating_add(value);
        }
    }
    Ok(Status::Ok.code())
}

/// `proxy_get_metric(id, value_ptr)`.
pub fn proxy_get_metric(mut caller: Caller<'_, HostState>, id: u32, value_ptr: u32) -> HostResult {
    caller
        .data_mut()
        .count_call("proxy_get_metric", 0, 0, |s| metric_name(s, id));
    let value = {
        let state = caller.data();
        if MetricType::from_raw(id & 3).is_none_or(|k| k == MetricType::Histogram) {
            return Ok(Status::BadArgument.code());
        }
        let Some(def) = metric(state, id) else {
            return Ok(Status::NotFound.code());
        };
        lock(&state.shared)
            .metrics
            .get(&def.name)
            .map(|m| m.value)
            .unwrap_or(0)
    };
    mem!(write_u64(
        &mut caller,
        "return metric value",
        value_ptr,
        value
    ));
    Ok(Status::Ok.code())
}

//! Logging, clocks and timers: `proxy_log`, `proxy_get_log_level`,
//! `proxy_get_current_time_nanoseconds`, `proxy_set_tick_period_milliseconds`.
//!
//! Time is the replay's virtual clock, so the same recording gives the same answers;
//! the tick period belongs to the VM's root context and the driver fires
//! `proxy_on_tick` on the virtual clock.

use wasmtime::Caller;

use super::memory::{read_string, write_u32, write_u64};
use super::state::HostState;
use super::{HostResult, LoadError, Registrar, mem};
use crate::abi::{LogLevel, Status};

/// Registers this file's imports.
pub fn register(r: &mut Registrar<'_>) -> Result<(), LoadError> {
    r.proxy("proxy_log", proxy_log)?;
    r.proxy("proxy_get_log_level", proxy_get_log_level)?;
    r.proxy(
        "proxy_get_current_time_nanoseconds",
        proxy_get_current_time_nanoseconds,
    )?;
    r.proxy(
        "proxy_set_tick_period_milliseconds",
        proxy_set_tick_period_milliseconds,
    )?;
    Ok(())
}

/// `proxy_log(level, message, message_size)`.
pub fn proxy_log(mut caller: Caller<'_, HostState>, level: u32, ptr: u32, size: u32) -> HostResult {
    let Some(level) = LogLevel::from_raw(level) else {
        return Ok(Status::BadArgument.code());
    };
    let message = mem!(read_string(&mut caller, "log message", ptr, size));
    let state = caller.data_mut();
    state.count_call("proxy_log", message.len(), 0, |_| level.name().to_string());
    state.log(level, message);
    Ok(Status::Ok.code())
}

/// `proxy_get_log_level(level_ptr)` (ABI 0.2.1).
pub fn proxy_get_log_level(mut caller: Caller<'_, HostState>, level_ptr: u32) -> HostResult {
    let level = caller.data().config.log_level.raw();
    caller
        .data_mut()
        .count_call("proxy_get_log_level", 0, 0, |_| String::new());
    mem!(write_u32(&mut caller, "return log level", level_ptr, level));
    Ok(Status::Ok.code())
}

/// `proxy_get_current_time_nanoseconds(time_ptr)`.
pub fn proxy_get_current_time_nanoseconds(
    mut caller: Caller<'_, HostState>,
    time_ptr: u32,
) -> HostResult {
    let now = caller.data().now_ns;
    caller
        .data_mut()
        .count_call("proxy_get_current_time_nanoseconds", 0, 0, |_| {
            String::new()
        });
    mem!(write_u64(&mut caller, "return time", time_ptr, now));
    Ok(Status::Ok.code())
}

/// `proxy_set_tick_period_milliseconds(period)`: 0 stops the timer.
pub fn proxy_set_tick_period_milliseconds(
    mut caller: Caller<'_, HostState>,
    period: u32,
) -> HostResult {
    let state = caller.data_mut();
    state.count_call("proxy_set_tick_period_milliseconds", 0, 0, |_| {
        period.to_string()
    });
    state.tick_period_ms = period;
    state.tick_changed = true;
    Ok(Status::Ok.code())
}

//! The hang protection of callbacks: wasmtime epoch interruption driven by one
//! process-wide ticker thread, instead of fuel metering.
//!
//! Fuel counts every wasm block and costs the guest a large share of its speed; an
//! epoch check is a load and a compare at function entries and loop heads. The price is
//! that the budget is wall time rather than instructions: [`ticks_for`] turns the
//! configured fuel (about one unit per instruction, so ten million units per
//! 10 ms tick) into ticks of [`TICK`]. A budget never needed by a working callback
//! (2 s by default) keeps replays deterministic in practice.

use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use wasmtime::{Engine, EngineWeak};

use crate::error::LoadError;

/// How often the epoch of every live engine advances: coarse, since the budget only
/// has to stop hangs, and the ticker should cost nothing.
pub const TICK: Duration = Duration::from_millis(10);

/// Fuel units per tick (about one wasm instruction per nanosecond).
const FUEL_PER_TICK: u64 = 10_000_000;

/// The fewest ticks a callback gets: with one, a callback could be stopped by the tick
/// that happens to come right after it started.
const MIN_TICKS: u64 = 2;

/// Engines whose epoch the ticker advances (dropped engines fall out).
static ENGINES: Mutex<Vec<EngineWeak>> = Mutex::new(Vec::new());

/// Whether the ticker thread was started (or why it could not be).
static TICKER: OnceLock<Result<(), String>> = OnceLock::new();

/// The epoch deadline, in ticks, of a callback with this fuel budget.
pub fn ticks_for(fuel: u64) -> u64 {
    (fuel / FUEL_PER_TICK).max(MIN_TICKS)
}

/// Has the ticker advance `engine`'s epoch from now on.
pub fn register(engine: &Engine) -> Result<(), LoadError> {
    TICKER
        .get_or_init(|| {
            std::thread::Builder::new()
                .name("stakeguard-epoch".to_string())
                .spawn(tick_forever)
                .map(|_| ())
                .map_err(|e| format!("starting the epoch ticker: {e}"))
        })
        .clone()
        .map_err(LoadError::Engine)?;
    ENGINES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(engine.weak());
    Ok(())
}

fn tick_forever() {
    loop {
        std::thread::sleep(TICK);
        ENGINES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|weak| match weak.upgrade() {
                Some(engine) => {
                    engine.increment_epoch();
                    true
                }
                None => false,
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_a_tick_per_ten_million_units_and_never_below_two_ticks() {
        assert_eq!(ticks_for(2_000_000_000), 200);
        assert_eq!(ticks_for(1_000_000), 2);
        assert_eq!(ticks_for(0), 2);
    }
}

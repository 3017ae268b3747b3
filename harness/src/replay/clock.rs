//! The virtual clock: ticks and callout answers fire in time order as the recording's
//! timestamps move the clock forward, and work a callback deferred (a stream to resume,
//! a queue to notify) runs once that callback has returned, as Envoy posts it to the
//! worker's dispatcher.

use std::cmp::Reverse;

use super::callouts::Event;
use super::session::Session;

/// Work a callback left for after it returned.
pub(super) enum Work {
    /// Drive the stream (worker, context) forward again.
    Resume(usize, u32),
    /// `proxy_on_queue_ready` for (worker, root context, token).
    QueueReady(usize, u32, u32),
}

/// How many deferred items one burst may run before the host stops it (a module that
/// keeps resuming itself must not hang the replay).
const MAX_WORK_PER_BURST: u64 = 10_000_000;

impl Session<'_> {
    /// Schedules an event at virtual time `at`; events at one time fire in order.
    pub(super) fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.events.push(Reverse((at, self.seq, event)));
    }

    fn next_event(&self) -> Option<u64> {
        self.events.peek().map(|Reverse((t, _, _))| *t)
    }

    fn next_due(&self) -> Option<u64> {
        let tick = self.workers.iter().filter_map(|w| w.next_tick).min();
        match (tick, self.next_event()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires everything due up to `t` in time order, then sets the clock to `t`.
    pub(super) fn advance_to(&mut self, t: u64) {
        while let Some(due) = self.next_due() {
            if due > t {
                break;
            }
            self.fire_next(due);
        }
        self.now = self.now.max(t);
    }

    fn fire_next(&mut self, due: u64) {
        self.now = self.now.max(due);
        if self.next_event() == Some(due) {
            if let Some(Reverse((_, _, event))) = self.events.pop() {
                self.deliver(event);
            }
        } else if let Some(w) = self.workers.iter().position(|w| w.next_tick == Some(due)) {
            self.tick(w);
        }
        self.run_work();
    }

    /// After the last record: lets ticks and callouts resume paused streams up to the
    /// idle horizon past `last_record_ns`, delivers callout answers due by then, and
    /// reports what is still paused as stalled. Envoy keeps ticking after the last
    /// request, and what a module keeps for its next tick (metric batches, alerts to
    /// send) it flushes then: so each worker with a tick scheduled gets one more after
    /// the last thing that happened, and the summary counts what Envoy's stats would.
    pub(super) fn settle(&mut self, last_record_ns: u64) {
        let horizon = last_record_ns.saturating_add(self.h.config.idle_horizon_ms * 1_000_000);
        let mut owed = vec![true; self.workers.len()];
        loop {
            let due = if self.streams.any_waiting() {
                self.next_due()
            } else {
                self.next_event().or_else(|| self.owed_tick(&owed))
            };
            let Some(due) = due.filter(|d| *d <= horizon) else {
                break;
            };
            let ticked = match self.next_event() {
                Some(event) if event == due => None,
                _ => self.workers.iter().position(|w| w.next_tick == Some(due)),
            };
            self.fire_next(due);
            match ticked.and_then(|w| owed.get_mut(w)) {
                Some(flag) => *flag = false,
                None => owed.fill(true),
            }
        }
        self.stall_remaining();
    }

    /// The earliest scheduled tick of a worker still owed one.
    fn owed_tick(&self, owed: &[bool]) -> Option<u64> {
        self.workers
            .iter()
            .zip(owed)
            .filter(|(_, owed)| **owed)
            .filter_map(|(w, _)| w.next_tick)
            .min()
    }

    /// Shows the VM the current virtual time.
    pub(super) fn set_clock(&mut self, w: usize) {
        let now = self.now;
        if let Some(vm) = self.any_vm(w) {
            vm.state_mut().now_ns = now;
        }
    }

    /// The module set its tick period (0 stops the timer).
    pub(super) fn set_tick(&mut self, w: usize, period_ms: u32) {
        let now = self.now;
        if let Some(wk) = self.workers.get_mut(w) {
            wk.tick_period_ns = u64::from(period_ms) * 1_000_000;
            wk.next_tick = (period_ms != 0).then(|| now + wk.tick_period_ns);
        }
    }

    fn tick(&mut self, w: usize) {
        let Some(worker) = self.workers.get_mut(w) else {
            return;
        };
        worker.next_tick = worker.next_tick.map(|t| t + worker.tick_period_ns.max(1));
        self.summary.ticks += 1;
        self.set_clock(w);
        let result = match self.vm(w) {
            Some(vm) => vm.on_tick(),
            None => Ok(()),
        };
        self.after_call(w);
        if let Err(t) = result {
            self.trap(w, None, t);
        }
    }

    /// Runs deferred work until none is left.
    pub(super) fn run_work(&mut self) {
        let mut done = 0u64;
        while let Some(work) = self.work.pop_front() {
            done += 1;
            if done > MAX_WORK_PER_BURST {
                break;
            }
            match work {
                Work::Resume(w, ctx) => self.drive(w, ctx),
                Work::QueueReady(w, root, token) => {
                    self.set_clock(w);
                    let result = match self.vm(w) {
                        Some(vm) if vm.state().root_context == root => {
                            vm.on_queue_ready(root, token)
                        }
                        _ => Ok(()),
                    };
                    self.after_call(w);
                    if let Err(t) = result {
                        self.trap(w, None, t);
                    }
                }
            }
        }
    }
}

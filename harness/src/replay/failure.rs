//! When things go wrong: a trap fails the VM (every stream in flight on it follows the
//! failure policy, as Envoy's `failure_policy` says), a failed worker gets a fresh VM
//! for its next stream under `FailReload`, and streams still paused when the replay ends
//! are reported as stalled.

use super::session::{Session, StartError};
use super::stream::{Dir, status_of};
use crate::grpc;
use crate::report::{LocalReplyReport, Outcome};
use crate::vm::Trapped;

impl Session<'_> {
    /// Gives worker `w` a fresh VM after a trap (a new generation: answers to the old
    /// VM's callouts are dropped).
    pub(super) fn restart_worker(&mut self, w: usize) {
        if let Some(wk) = self.workers.get_mut(w) {
            wk.generation += 1;
        }
        self.summary.vm_restarts += 1;
        let why = match self.start_worker(w) {
            Ok(()) => return,
            Err(StartError::Plugin { reason, .. }) => reason,
            Err(StartError::Load(e)) => e.to_string(),
        };
        self.summary
            .root_traps
            .push(format!("worker {w}: restart failed: {why}"));
    }

    /// A callback trapped: report it on its stream (or the summary), then fail the VM.
    pub(super) fn trap(&mut self, w: usize, ctx: Option<u32>, t: Trapped) {
        let text = format!("{}: {}", t.callback, t.message);
        match ctx.and_then(|c| self.entry_mut(w, c)) {
            Some(entry) => entry.trap = Some(text.clone()),
            None => self.summary.root_traps.push(format!("worker {w}: {text}")),
        }
        self.fail_vm(w, ctx, &text);
    }

    /// The VM of worker `w` failed: it needs a restart, and every stream in flight on it
    /// follows the fail policy (those other than `ctx` say why).
    pub(super) fn fail_vm(&mut self, w: usize, ctx: Option<u32>, text: &str) {
        if let Some(wk) = self.workers.get_mut(w) {
            wk.needs_restart = true;
            wk.next_tick = None;
        }
        for c in self.streams.contexts_of(w) {
            if let Some(s) = self.streams.get_mut(&(w, c)) {
                s.failed = true;
                s.waiting = None;
            }
            if Some(c) != ctx
                && let Some(entry) = self.entry_mut(w, c)
                && entry.trap.is_none()
            {
                entry.trap = Some(format!("the VM failed in another callback: {text}"));
            }
            self.apply_fail_policy(w, c, Some(c) == ctx);
        }
    }

    /// Ends a stream whose VM failed: 503 (fail closed) or pass-through (fail open). The
    /// stream whose own callback trapped answers 503 under fail open too, as Envoy's does:
    /// fail open lets through the streams that meet a VM already failed.
    pub(super) fn apply_fail_policy(&mut self, w: usize, ctx: u32, trapped_here: bool) {
        let Some(s) = self.streams.remove(&(w, ctx)) else {
            return;
        };
        if let Some(vm) = self.any_vm(w) {
            vm.state_mut().streams.remove(&ctx);
        }
        let fail_open = self.h.config.failure_policy.fails_open() && !trapped_here;
        let Some(entry) = self.entry_at(s.index) else {
            return;
        };
        entry.outcome = Outcome::Trapped;
        if s.local_reply.is_some() || s.response.sent_headers.is_some() {
            // The client already has its answer.
            entry.status = status_of(s.response.final_headers());
        } else if fail_open {
            entry.status = status_of(&s.response.arrived.headers);
            entry
                .notes
                .push("fail open: the stream went on without the filter".to_string());
        } else {
            // Envoy's 503 is a local reply like any other: a gRPC client gets it as
            // `grpc-status: 14` on a 200.
            let reply = grpc::local_reply(503, b"", &[], -1, s.is_grpc());
            entry.status = if reply.grpc_status.is_some() {
                200
            } else {
                503
            };
            entry.local_reply = Some(LocalReplyReport {
                status: 503,
                details: "wasm_fail_stream".to_string(),
                body: String::new(),
                grpc_status: reply.grpc_status,
            });
        }
    }

    /// Streams still paused after the idle horizon: nothing left could continue them.
    pub(super) fn stall_remaining(&mut self) {
        while let Some((key, s)) = self.streams.pop_first() {
            self.summary.stalled += 1;
            if let Some(vm) = self.any_vm(key.0) {
                vm.state_mut().streams.remove(&key.1);
            }
            let Some(entry) = self.entry_at(s.index) else {
                continue;
            };
            entry.outcome = Outcome::Stalled;
            entry.status = 0;
            let what = match s.waiting {
                Some(Dir::Response) => "response",
                _ => "request",
            };
            entry.notes.push(format!(
                "paused in the {what} path and never resumed (nothing left that could continue it)"
            ));
        }
    }
}

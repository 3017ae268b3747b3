//! The header, body and trailer callbacks of both directions, one function each for
//! requests and responses alike: hand the module the data, call it, then forward,
//! buffer or pause as its return value says, and move the stream to its next step.

use std::borrow::Cow;

use super::session::Session;
use super::stream::{Dir, Step, StreamRun};
use crate::abi::{DATA_STOP_AND_BUFFER, FILTER_CONTINUE};
use crate::vm::Trapped;

/// The step after `from`: body chunks, trailers, then the other direction or the end.
pub(super) fn next_step(s: &StreamRun, from: Step) -> Step {
    let Some(dir) = from.dir() else {
        return Step::Finish;
    };
    let flow = s.flow(dir);
    let after_direction = match dir {
        Dir::Request => Step::Headers(Dir::Response),
        Dir::Response => Step::Finish,
    };
    match from {
        Step::Headers(_) if !flow.arrived.chunks.is_empty() => Step::Body(dir, 0),
        Step::Body(_, i) if i + 1 < flow.arrived.chunks.len() => Step::Body(dir, i + 1),
        Step::Headers(_) | Step::Body(..) if !flow.arrived.trailers.is_empty() => {
            Step::Trailers(dir)
        }
        _ => after_direction,
    }
}

impl Session<'_> {
    /// Moves the stream past `from`.
    pub(super) fn advance(&mut self, w: usize, ctx: u32, from: Step) {
        if let Some(s) = self.streams.get_mut(&(w, ctx)) {
            s.step = next_step(s, from);
        }
    }

    /// Marks the stream paused in `dir` unless a continue already came.
    fn pause(&mut self, w: usize, ctx: u32, dir: Dir) -> bool {
        let Some(s) = self.streams.get_mut(&(w, ctx)) else {
            return false;
        };
        if let Some(pending) = s.continue_pending.get_mut(dir.slot())
            && *pending
        {
            *pending = false;
            return false;
        }
        s.waiting = Some(dir);
        true
    }

    /// Whether something the callback did (local reply, reset, failure, a continue that
    /// already moved the stream) took the stream over, so the step's own result must be
    /// ignored.
    fn taken_over(&self, w: usize, ctx: u32, step: Step) -> bool {
        match self.streams.get(&(w, ctx)) {
            None => true,
            Some(s) => s.failed || s.reset || s.step != step || s.waiting.is_some(),
        }
    }

    /// `proxy_on_request_headers` / `proxy_on_response_headers`.
    pub(super) fn headers_step(&mut self, w: usize, ctx: u32, dir: Dir) -> Result<(), Trapped> {
        let Some(s) = self.streams.get(&(w, ctx)) else {
            return Ok(());
        };
        let flow = s.flow(dir);
        let headers = flow.arrived.headers.clone();
        let eos = flow.arrived.chunks.is_empty() && flow.arrived.trailers.is_empty();
        let n = headers.len() as u32;
        let response_info = (dir == Dir::Response).then(|| {
            let status = headers.get(":status").and_then(|v| v.parse().ok());
            let details = match &s.local_reply {
                Some(l) => Cow::Owned(l.details.clone()),
                None => Cow::Borrowed("via_upstream"),
            };
            (status, details)
        });
        if let Some(st) = self.stream_state(w, ctx) {
            *st.headers_mut(dir) = Some(headers);
            if let Some((status, details)) = response_info {
                st.response_status = status;
                st.response_details = details;
            }
        }
        let r = match (self.vm(w), dir) {
            (Some(vm), Dir::Request) => vm.on_request_headers(ctx, n, eos),
            (Some(vm), Dir::Response) => vm.on_response_headers(ctx, n, eos),
            (None, _) => return Ok(()),
        };
        self.after_call(w);
        let r = r?;
        let step = Step::Headers(dir);
        if self.taken_over(w, ctx, step) {
            return Ok(());
        }
        if r == FILTER_CONTINUE || !self.pause(w, ctx, dir) {
            self.forward_headers(w, ctx, dir);
            self.advance(w, ctx, step);
        }
        Ok(())
    }

    /// `proxy_on_request_body` / `proxy_on_response_body` for chunk `i`: the module sees
    /// the chunk plus what it asked to buffer before.
    pub(super) fn body_step(
        &mut self,
        w: usize,
        ctx: u32,
        dir: Dir,
        i: usize,
    ) -> Result<(), Trapped> {
        let Some(s) = self.streams.get_mut(&(w, ctx)) else {
            return Ok(());
        };
        let flow = s.flow_mut(dir);
        let chunk = flow.arrived.chunks.get(i).map_or(&[][..], Vec::as_slice);
        let eos = i + 1 >= flow.arrived.chunks.len() && flow.arrived.trailers.is_empty();
        let chunk_size = chunk.len() as u64;
        // The module's copy is the one that goes on (or is kept, when it buffers), so
        // the data is handed over, not copied.
        let mut buffer = std::mem::take(&mut flow.buffer);
        buffer.extend_from_slice(chunk);
        let size = buffer.len() as u32;
        if let Some(st) = self.stream_state(w, ctx) {
            *st.body_mut(dir) = Some(buffer);
            *st.body_total_mut(dir) += chunk_size;
        }
        let r = match (self.vm(w), dir) {
            (Some(vm), Dir::Request) => vm.on_request_body(ctx, size, eos),
            (Some(vm), Dir::Response) => vm.on_response_body(ctx, size, eos),
            (None, _) => return Ok(()),
        };
        self.after_call(w);
        let r = r?;
        let step = Step::Body(dir, i);
        if self.taken_over(w, ctx, step) {
            return Ok(());
        }
        if r == DATA_STOP_AND_BUFFER && !eos {
            // The next callback sees this data again, with whatever the module changed.
            let kept = self
                .stream_state(w, ctx)
                .and_then(|st| st.body_mut(dir).clone());
            if let Some(s) = self.streams.get_mut(&(w, ctx)) {
                s.flow_mut(dir).buffer = kept.unwrap_or_default();
            }
            self.advance(w, ctx, step);
        } else if r == FILTER_CONTINUE || !self.pause(w, ctx, dir) {
            self.forward_body(w, ctx, dir);
            self.advance(w, ctx, step);
        }
        Ok(())
    }

    /// `proxy_on_request_trailers` / `proxy_on_response_trailers`.
    pub(super) fn trailers_step(&mut self, w: usize, ctx: u32, dir: Dir) -> Result<(), Trapped> {
        let Some(s) = self.streams.get(&(w, ctx)) else {
            return Ok(());
        };
        let trailers = s.flow(dir).arrived.trailers.clone();
        let n = trailers.len() as u32;
        if let Some(st) = self.stream_state(w, ctx) {
            *st.trailers_mut(dir) = Some(trailers);
        }
        let r = match (self.vm(w), dir) {
            (Some(vm), Dir::Request) => vm.on_request_trailers(ctx, n),
            (Some(vm), Dir::Response) => vm.on_response_trailers(ctx, n),
            (None, _) => return Ok(()),
        };
        self.after_call(w);
        let r = r?;
        let step = Step::Trailers(dir);
        if self.taken_over(w, ctx, step) {
            return Ok(());
        }
        if r == FILTER_CONTINUE || !self.pause(w, ctx, dir) {
            self.forward_trailers(w, ctx, dir);
            self.advance(w, ctx, step);
        }
        Ok(())
    }

    /// The headers go on as the module left them (once).
    pub(super) fn forward_headers(&mut self, w: usize, ctx: u32, dir: Dir) {
        let headers = self
            .stream_state(w, ctx)
            .and_then(|st| st.headers_mut(dir).take());
        if let Some(s) = self.streams.get_mut(&(w, ctx)) {
            let flow = s.flow_mut(dir);
            if flow.sent_headers.is_none() {
                flow.sent_headers = headers.or_else(|| Some(flow.arrived.headers.clone()));
            }
        }
    }

    /// The body data the module saw goes on as it left it.
    pub(super) fn forward_body(&mut self, w: usize, ctx: u32, dir: Dir) {
        let body = self
            .stream_state(w, ctx)
            .and_then(|st| st.body_mut(dir).take());
        if let Some(s) = self.streams.get_mut(&(w, ctx)) {
            let flow = s.flow_mut(dir);
            match body {
                // The first data to go on is taken as it is.
                Some(body) if flow.sent_body.is_empty() => flow.sent_body = body,
                Some(body) => flow.sent_body.extend_from_slice(&body),
                None => flow.sent_body.extend_from_slice(&flow.buffer),
            }
            flow.buffer.clear();
        }
    }

    /// The trailers go on as the module left them.
    pub(super) fn forward_trailers(&mut self, w: usize, ctx: u32, dir: Dir) {
        let trailers = self
            .stream_state(w, ctx)
            .and_then(|st| st.trailers_mut(dir).take());
        if let Some(s) = self.streams.get_mut(&(w, ctx)) {
            let flow = s.flow_mut(dir);
            flow.sent_trailers = trailers.unwrap_or_else(|| flow.arrived.trailers.clone());
        }
    }
}

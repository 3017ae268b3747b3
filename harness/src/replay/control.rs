//! What a module asks of a stream during a callback, carried out once the callback has
//! returned (as Envoy defers them): `proxy_continue_stream`, `proxy_send_local_response`
//! and `proxy_close_stream`.

use super::clock::Work;
use super::session::Session;
use std::sync::Arc;

use super::stream::{Arrival, Dir, Step, chunks, lossy};
use crate::abi::StreamType;
use crate::grpc;
use crate::host::state::{HeaderMap, LocalReply};
use crate::report::{LocalReplyReport, Outcome};

impl Session<'_> {
    /// `proxy_continue_stream` took effect: forward what was held and drive on. A
    /// continue for the direction the stream is in, before it paused, releases that pause
    /// in advance.
    pub(super) fn resume(&mut self, w: usize, ctx: u32, stream: StreamType) {
        let Some(dir) = Dir::of(stream) else {
            return;
        };
        let Some(s) = self.streams.get_mut(&(w, ctx)) else {
            return;
        };
        if s.waiting != Some(dir) {
            if s.step.dir() == Some(dir)
                && let Some(pending) = s.continue_pending.get_mut(dir.slot())
            {
                *pending = true;
            }
            return;
        }
        s.waiting = None;
        let step = s.step;
        match step {
            Step::Headers(d) => self.forward_headers(w, ctx, d),
            Step::Body(d, _) => {
                self.forward_headers(w, ctx, d);
                self.forward_body(w, ctx, d);
            }
            Step::Trailers(d) => self.forward_trailers(w, ctx, d),
            Step::Finish => {}
        }
        self.advance(w, ctx, step);
        // Envoy drops the request maps on any continue.
        if let Some(st) = self.stream_state(w, ctx)
            && (dir == Dir::Request || st.request_headers.is_some())
        {
            st.request_headers = None;
            st.request_trailers = None;
        }
        self.work.push_back(Work::Resume(w, ctx));
    }

    /// `proxy_send_local_response`: the reply replaces the upstream response and runs
    /// through the response callbacks, unless the response already started (then it goes
    /// out as is). A second local reply is ignored.
    pub(super) fn local_reply(&mut self, w: usize, ctx: u32, reply: LocalReply) {
        let Some(s) = self.streams.get_mut(&(w, ctx)) else {
            return;
        };
        if s.local_reply.is_some() {
            if let Some(entry) = self.entry_mut(w, ctx) {
                entry.notes.push(format!(
                    "a second local reply ({}) was ignored",
                    reply.status
                ));
            }
            return;
        }
        let response_started =
            matches!(s.step, Step::Finish) || s.step.dir() == Some(Dir::Response);
        let sent = grpc::local_reply(
            reply.status,
            &reply.body,
            &reply.headers,
            reply.grpc_status,
            s.is_grpc(),
        );
        let headers = HeaderMap::from_pairs(sent.headers);
        s.response.arrived = Arc::new(Arrival {
            headers: headers.clone(),
            chunks: chunks(&sent.body, None),
            trailers: HeaderMap::default(),
        });
        s.response.buffer.clear();
        s.waiting = None;
        if response_started {
            // Envoy cannot run the local reply through this filter again: it goes out as is.
            s.response.sent_headers = Some(headers);
            s.response.sent_body = sent.body;
            s.step = Step::Finish;
        } else {
            s.step = Step::Headers(Dir::Response);
        }
        let report = LocalReplyReport {
            status: reply.status,
            details: reply.details.clone(),
            body: lossy(&reply.body, 256),
            grpc_status: sent.grpc_status,
        };
        s.local_reply = Some(Box::new(reply));
        if let Some(entry) = self.entry_mut(w, ctx) {
            entry.local_reply = Some(report);
        }
        if let Some(st) = self.stream_state(w, ctx) {
            // The request maps stay as they are: Envoy drops them only when the request
            // continues, so a filter that replied from its request callbacks can still
            // read them in the response callbacks.
            st.request_body = None;
            st.response_headers = None;
            st.response_body = None;
            st.local_reply_sent = true;
        }
        self.work.push_back(Work::Resume(w, ctx));
    }

    /// `proxy_close_stream`: the stream ends without an answer.
    pub(super) fn reset(&mut self, w: usize, ctx: u32) {
        if let Some(s) = self.streams.get_mut(&(w, ctx)) {
            s.reset = true;
            s.waiting = None;
            s.step = Step::Finish;
        }
        if let Some(entry) = self.entry_mut(w, ctx) {
            entry.outcome = Outcome::Reset;
        }
        self.work.push_back(Work::Resume(w, ctx));
    }
}

//! A stream in flight: what it carries in each direction, where it is, and the two
//! entry points that move it: [`Session::start_stream`] (context creation for a record)
//! and [`Session::drive`] (run callbacks until it pauses or ends).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::prepared::PreparedRecord;
use super::session::Session;
use crate::abi::StreamType;
use crate::grpc;
use crate::host::state::{HeaderMap, LocalReply, StreamState};
use crate::report::{Entry, Outcome, RewrittenBody, Time};

/// A direction of an HTTP stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dir {
    Request,
    Response,
}

impl Dir {
    /// The HTTP direction of a `proxy_continue_stream`/`proxy_close_stream` argument.
    pub(super) fn of(stream: StreamType) -> Option<Dir> {
        match stream {
            StreamType::Request => Some(Dir::Request),
            StreamType::Response => Some(Dir::Response),
            StreamType::Downstream | StreamType::Upstream => None,
        }
    }

    /// Index into per-direction arrays.
    pub(super) fn slot(self) -> usize {
        match self {
            Dir::Request => 0,
            Dir::Response => 1,
        }
    }
}

/// Where a stream is: the callback it runs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Headers(Dir),
    Body(Dir, usize),
    Trailers(Dir),
    Finish,
}

impl Step {
    /// The direction of the step (none once finishing).
    pub(super) fn dir(self) -> Option<Dir> {
        match self {
            Step::Headers(d) | Step::Body(d, _) | Step::Trailers(d) => Some(d),
            Step::Finish => None,
        }
    }
}

/// What arrives in one direction of a stream, from the client or upstream.
#[derive(Debug)]
pub(super) struct Arrival {
    /// Headers as they arrived (`:status` first for a response).
    pub(super) headers: HeaderMap,
    /// Body chunks as they arrive.
    pub(super) chunks: Vec<Vec<u8>>,
    /// Trailers as they arrived.
    pub(super) trailers: HeaderMap,
}

/// One direction of a stream: what arrives and what the filter let through. What
/// arrives is shared with the prepared record, so a stream takes it with one reference
/// count.
#[derive(Debug, Clone)]
pub(super) struct Flow {
    pub(super) arrived: Arc<Arrival>,
    /// Body data the filter asked to buffer.
    pub(super) buffer: Vec<u8>,
    /// The headers that went on, once they did.
    pub(super) sent_headers: Option<HeaderMap>,
    /// The body that went on.
    pub(super) sent_body: Vec<u8>,
    /// The trailers that went on.
    pub(super) sent_trailers: HeaderMap,
    /// Report a rewritten body's text, not only its length and digest.
    pub(super) show_bodies: bool,
}

impl Flow {
    pub(super) fn new(
        headers: HeaderMap,
        body: &[u8],
        trailers: HeaderMap,
        chunk_size: Option<usize>,
    ) -> Flow {
        Flow {
            arrived: Arc::new(Arrival {
                headers,
                chunks: chunks(body, chunk_size),
                trailers,
            }),
            buffer: Vec::new(),
            sent_headers: None,
            sent_body: Vec::new(),
            sent_trailers: HeaderMap::default(),
            show_bodies: false,
        }
    }

    /// The body that went on, when it differs from the one that arrived (compared chunk
    /// by chunk, without joining them).
    pub(super) fn body_changed(&self) -> Option<RewrittenBody> {
        let mut sent = self.sent_body.as_slice();
        let mut same = true;
        for chunk in &self.arrived.chunks {
            match sent.strip_prefix(chunk.as_slice()) {
                Some(rest) => sent = rest,
                None => {
                    same = false;
                    break;
                }
            }
        }
        (!same || !sent.is_empty()).then(|| RewrittenBody::of(&self.sent_body, self.show_bodies))
    }

    /// The headers as they went on, or as they arrived if they have not gone on yet.
    pub(super) fn final_headers(&self) -> &HeaderMap {
        self.sent_headers.as_ref().unwrap_or(&self.arrived.headers)
    }
}

/// A stream in flight. Its report entry waits in [`Session::entries`] from the start,
/// so the stream carries only what drives it (and moves cheaply in and out of
/// [`Streams`]).
pub(super) struct StreamRun {
    /// Index of its record.
    pub(super) index: usize,
    pub(super) step: Step,
    /// Paused in this direction, waiting for `proxy_continue_stream`.
    pub(super) waiting: Option<Dir>,
    /// A continue came before the pause it releases (by [`Dir::slot`]).
    pub(super) continue_pending: [bool; 2],
    pub(super) request: Flow,
    pub(super) response: Flow,
    /// Boxed: rare, and the stream moves in and out of [`Streams`].
    pub(super) local_reply: Option<Box<LocalReply>>,
    pub(super) reset: bool,
    pub(super) failed: bool,
}

impl StreamRun {
    pub(super) fn flow(&self, dir: Dir) -> &Flow {
        match dir {
            Dir::Request => &self.request,
            Dir::Response => &self.response,
        }
    }

    pub(super) fn flow_mut(&mut self, dir: Dir) -> &mut Flow {
        match dir {
            Dir::Request => &mut self.request,
            Dir::Response => &mut self.response,
        }
    }
    /// Whether Envoy would treat the request as gRPC (its local replies become
    /// trailers-only gRPC responses).
    pub(super) fn is_grpc(&self) -> bool {
        grpc::is_grpc_request(
            self.request
                .arrived
                .headers
                .entries()
                .iter()
                .map(|(k, v)| (&**k, &**v)),
        )
    }
}

/// `body` cut into chunks of `size` (one chunk without a size; none when empty).
pub(super) fn chunks(body: &[u8], size: Option<usize>) -> Vec<Vec<u8>> {
    if body.is_empty() {
        return Vec::new();
    }
    match size {
        Some(n) if n > 0 => body.chunks(n).map(<[u8]>::to_vec).collect(),
        _ => vec![body.to_vec()],
    }
}

/// At most `max` bytes of `bytes` as text, for reports.
pub(super) fn lossy(bytes: &[u8], max: usize) -> String {
    let cut = bytes.get(..bytes.len().min(max)).unwrap_or(&[]);
    String::from_utf8_lossy(cut).into_owned()
}

/// The `:status` of a header map (0: none).
pub(super) fn status_of(headers: &HeaderMap) -> u32 {
    headers
        .get(":status")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Streams in flight by (worker, context), in key order. A replay has few streams in
/// flight at once (one, unless streams pause), so a sorted vector serves better than a
/// map: no node or box to allocate per stream.
#[derive(Default)]
pub(super) struct Streams {
    runs: Vec<((usize, u32), StreamRun)>,
}

impl Streams {
    fn position(&self, key: (usize, u32)) -> Result<usize, usize> {
        self.runs.binary_search_by_key(&key, |(k, _)| *k)
    }

    pub(super) fn get(&self, key: &(usize, u32)) -> Option<&StreamRun> {
        let at = self.position(*key).ok()?;
        self.runs.get(at).map(|(_, s)| s)
    }

    pub(super) fn get_mut(&mut self, key: &(usize, u32)) -> Option<&mut StreamRun> {
        let at = self.position(*key).ok()?;
        self.runs.get_mut(at).map(|(_, s)| s)
    }

    /// Adds a stream (or replaces the one under `key`).
    pub(super) fn insert(&mut self, key: (usize, u32), run: StreamRun) {
        match self.position(key) {
            Ok(at) => {
                if let Some(slot) = self.runs.get_mut(at) {
                    slot.1 = run;
                }
            }
            Err(at) => self.runs.insert(at, (key, run)),
        }
    }

    pub(super) fn remove(&mut self, key: &(usize, u32)) -> Option<StreamRun> {
        let at = self.position(*key).ok()?;
        Some(self.runs.remove(at).1)
    }

    /// The contexts of worker `w`'s streams, in order.
    pub(super) fn contexts_of(&self, w: usize) -> Vec<u32> {
        self.runs
            .iter()
            .filter(|((sw, _), _)| *sw == w)
            .map(|((_, c), _)| *c)
            .collect()
    }

    /// Whether a stream is paused.
    pub(super) fn any_waiting(&self) -> bool {
        self.runs.iter().any(|(_, s)| s.waiting.is_some())
    }

    /// The first stream in key order, removed (the vector keeps its capacity for the
    /// next replay).
    pub(super) fn pop_first(&mut self) -> Option<((usize, u32), StreamRun)> {
        (!self.runs.is_empty()).then(|| self.runs.remove(0))
    }
}

impl Session<'_> {
    /// Opens a stream for record `index` on its worker and drives it as far as it goes.
    pub(super) fn start_stream(&mut self, index: usize, record: &PreparedRecord) {
        let (w, connection_id) = self.assign_worker(record.connection);
        let mut notes = Vec::new();
        let restart = self
            .workers
            .get(w)
            .is_some_and(|wk| wk.needs_restart && self.h.config.failure_policy.reloads());
        if restart {
            self.restart_worker(w);
            notes.push(format!("worker {w} got a fresh VM after a trap"));
        }
        if !record.response_recorded {
            notes.push("no recorded response; upstream answered 200 with no body".to_string());
        }
        let start_ns = i64::try_from(self.now).unwrap_or(i64::MAX);
        // Streams start in record order: the entry lands at `index`.
        self.entries.push(Entry {
            index,
            time: Time(start_ns),
            worker: w,
            method: record.method.clone(),
            authority: record.authority.clone(),
            path: record.path.clone(),
            outcome: Outcome::Forwarded,
            status: 0,
            request_header_changes: Vec::new(),
            response_header_changes: Vec::new(),
            request_body_changed: None,
            response_body_changed: None,
            local_reply: None,
            properties: BTreeMap::new(),
            decision: None,
            callouts: Vec::new(),
            logs: Vec::new(),
            trap: None,
            notes,
        });
        let mut stream = StreamRun {
            index,
            step: Step::Headers(Dir::Request),
            waiting: None,
            continue_pending: [false; 2],
            request: Flow {
                show_bodies: self.h.config.show_bodies,
                ..record.request.clone()
            },
            response: Flow {
                show_bodies: self.h.config.show_bodies,
                ..record.response.clone()
            },
            local_reply: None,
            reset: false,
            failed: false,
        };
        self.set_clock(w);
        let Some(vm) = self.vm(w) else {
            // The worker's VM is failed (and not restarted): the fail policy decides.
            if let Some(entry) = self.entry_at(index) {
                entry.notes.push(format!("worker {w} VM is failed"));
            }
            stream.failed = true;
            let key = (w, u32::MAX - index as u32);
            self.streams.insert(key, stream);
            self.apply_fail_policy(key.0, key.1, false);
            return;
        };
        let ctx = vm.alloc_context();
        let root = vm.state().root_context;
        vm.state_mut().streams.insert(
            ctx,
            StreamState {
                info: record.info.clone(),
                start_ns,
                connection_id,
                ..StreamState::default()
            },
        );
        self.streams.insert((w, ctx), stream);
        let result = self.vm(w).map(|vm| vm.on_context_create(ctx, root));
        self.after_call(w);
        if let Some(Err(t)) = result {
            self.trap(w, Some(ctx), t);
            return;
        }
        self.drive(w, ctx);
    }

    /// Runs a stream forward until it pauses or ends.
    pub(super) fn drive(&mut self, w: usize, ctx: u32) {
        loop {
            let Some(s) = self.streams.get(&(w, ctx)) else {
                return;
            };
            if s.waiting.is_some() {
                return;
            }
            if s.failed {
                self.apply_fail_policy(w, ctx, false);
                return;
            }
            let step = s.step;
            self.set_clock(w);
            let outcome = match step {
                Step::Headers(dir) => self.headers_step(w, ctx, dir),
                Step::Body(dir, i) => self.body_step(w, ctx, dir, i),
                Step::Trailers(dir) => self.trailers_step(w, ctx, dir),
                Step::Finish => {
                    self.finish(w, ctx);
                    return;
                }
            };
            if let Err(t) = outcome {
                self.trap(w, Some(ctx), t);
                return;
            }
        }
    }

    /// The report entry of record `index`, filled in as its stream runs.
    pub(super) fn entry_at(&mut self, index: usize) -> Option<&mut Entry> {
        self.entries.get_mut(index)
    }

    /// The report entry of a stream in flight.
    pub(super) fn entry_mut(&mut self, w: usize, ctx: u32) -> Option<&mut Entry> {
        let index = self.streams.get(&(w, ctx))?.index;
        self.entry_at(index)
    }

    /// The host-side state of a stream context, failed VM or not.
    pub(super) fn stream_state(&mut self, w: usize, ctx: u32) -> Option<&mut StreamState> {
        self.any_vm(w)?.state_mut().streams.get_mut(&ctx)
    }
}

/// The host-side slots of one direction, so the steps are written once for both.
impl StreamState {
    pub(super) fn headers_mut(&mut self, dir: Dir) -> &mut Option<HeaderMap> {
        match dir {
            Dir::Request => &mut self.request_headers,
            Dir::Response => &mut self.response_headers,
        }
    }

    pub(super) fn trailers_mut(&mut self, dir: Dir) -> &mut Option<HeaderMap> {
        match dir {
            Dir::Request => &mut self.request_trailers,
            Dir::Response => &mut self.response_trailers,
        }
    }

    pub(super) fn body_mut(&mut self, dir: Dir) -> &mut Option<Vec<u8>> {
        match dir {
            Dir::Request => &mut self.request_body,
            Dir::Response => &mut self.response_body,
        }
    }

    pub(super) fn body_total_mut(&mut self, dir: Dir) -> &mut u64 {
        match dir {
            Dir::Request => &mut self.request_body_total,
            Dir::Response => &mut self.response_body_total,
        }
    }
}

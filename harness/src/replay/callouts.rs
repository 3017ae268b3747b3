//! Callouts: each `proxy_http_call` or gRPC call the module makes is answered by the
//! configured stub after its virtual latency (or times out, or resets), scheduled on the
//! clock and delivered to the root context of the VM that made it, if that VM still
//! lives.

use super::session::Session;
use super::stream::lossy;
use crate::callouts::StubAnswer;
use crate::host::state::{CalloutAnswerState, CalloutKind, CalloutRequest, HeaderMap};
use crate::report::CalloutReport;
use crate::vm::{Trapped, Vm};

/// Something scheduled on the virtual clock.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Event {
    /// A callout answer for `token` of the VM `generation` of `worker`.
    Callout {
        worker: usize,
        generation: u64,
        token: u32,
        grpc: bool,
        stream: bool,
        answer: Answer,
    },
}

/// How a callout ends.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Answer {
    Response {
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        trailers: Vec<(String, String)>,
        grpc_status: u32,
    },
    Timeout,
    Reset,
}

impl Session<'_> {
    pub(super) fn schedule_callout(&mut self, w: usize, c: CalloutRequest) {
        self.summary.callouts += 1;
        let generation = self.workers.get(w).map_or(0, |wk| wk.generation);
        let stub = match (
            &c.kind,
            self.h.config.callouts.ratelimit_service(&c.cluster),
        ) {
            (CalloutKind::GrpcCall { .. }, Some(latency)) => {
                Some(self.ratelimit_answer(&c, latency))
            }
            _ => self.h.config.callouts.answer(&c.cluster),
        };
        let timeout_ms = u64::from(c.timeout_ms);
        let (answer, after_ms, label) = match stub {
            None => (None, 0, "none".to_string()),
            Some((StubAnswer::Timeout, _)) if timeout_ms > 0 => {
                (Some(Answer::Timeout), timeout_ms, "timeout".to_string())
            }
            Some((StubAnswer::Timeout, _)) => {
                (None, 0, "none (stub times out, no timeout set)".to_string())
            }
            Some((_, latency)) if timeout_ms > 0 && latency > timeout_ms => {
                (Some(Answer::Timeout), timeout_ms, "timeout".to_string())
            }
            Some((StubAnswer::Reset, latency)) => {
                (Some(Answer::Reset), latency, "reset".to_string())
            }
            Some((
                StubAnswer::Response {
                    status,
                    headers,
                    body,
                    trailers,
                    grpc_status,
                },
                latency,
            )) => (
                Some(Answer::Response {
                    headers,
                    body,
                    trailers,
                    grpc_status,
                }),
                latency,
                status.to_string(),
            ),
        };
        let stub_grpc_status = match &answer {
            Some(Answer::Response { grpc_status, .. }) => Some(*grpc_status),
            _ => None,
        };
        let (kind, method, path, grpc, stream) = match &c.kind {
            CalloutKind::Http => {
                let get = |n: &str| {
                    c.headers
                        .iter()
                        .find(|(k, _)| k == n)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                ("http", get(":method"), get(":path"), false, false)
            }
            CalloutKind::GrpcCall { service, method } => (
                "grpc",
                format!("{service}/{method}"),
                String::new(),
                true,
                false,
            ),
            CalloutKind::GrpcStream { service, method } => (
                "grpc_stream",
                format!("{service}/{method}"),
                String::new(),
                true,
                true,
            ),
        };
        let report = CalloutReport {
            cluster: c.cluster.clone(),
            kind: kind.to_string(),
            method,
            path,
            body_size: c.body.len(),
            body_preview: lossy(&c.body, 120),
            answer: label,
            // An http answer's status is the label; a gRPC one's code is what the module
            // acts on (the HTTP status of a gRPC answer is 200 whatever the code).
            grpc_status: stub_grpc_status.filter(|_| grpc),
            after_ms,
        };
        match self.entry_mut(w, c.from_context) {
            Some(entry) => entry.callouts.push(report),
            None => self.summary.root_logs.push(format!(
                "worker {w}: callout {} {} {} -> {}",
                report.cluster, report.method, report.path, report.answer
            )),
        }
        if let Some(answer) = answer {
            let at = self.now + after_ms * 1_000_000;
            self.schedule(
                at,
                Event::Callout {
                    worker: w,
                    generation,
                    token: c.token,
                    grpc,
                    stream,
                    answer,
                },
            );
        }
    }

    /// The in-memory rate limit service's answer to a call, counted at the time it
    /// arrives there: INVALID_ARGUMENT for a message that is no `RateLimitRequest`,
    /// UNIMPLEMENTED for another method.
    fn ratelimit_answer(&mut self, c: &CalloutRequest, latency: u64) -> (StubAnswer, u64) {
        let rls = match &c.kind {
            CalloutKind::GrpcCall { service, method } => {
                service == stakeguard_policies::rls::SERVICE
                    && method == stakeguard_policies::rls::METHOD
            }
            _ => false,
        };
        let now_ms = (self.now / 1_000_000).saturating_add(latency);
        let (body, grpc_status) = if !rls {
            (Vec::new(), 12)
        } else {
            match self.ratelimit.answer(&c.body, now_ms) {
                Ok(body) => (body, 0),
                Err(_) => (Vec::new(), 3),
            }
        };
        let answer = StubAnswer::Response {
            status: 200,
            headers: vec![(":status".to_string(), "200".to_string())],
            body,
            trailers: Vec::new(),
            grpc_status,
        };
        (answer, latency)
    }

    pub(super) fn deliver(&mut self, event: Event) {
        let Event::Callout {
            worker: w,
            generation,
            token,
            grpc,
            stream,
            answer,
        } = event;
        if self
            .workers
            .get(w)
            .is_none_or(|wk| wk.generation != generation)
        {
            return;
        }
        self.set_clock(w);
        let Some(vm) = self.vm(w) else { return };
        let root = vm.state().root_context;
        let result = if grpc {
            if vm.state_mut().open_grpc.remove(&token).is_none() {
                return;
            }
            deliver_grpc(vm, root, token, stream, answer)
        } else {
            if vm.state_mut().open_callouts.remove(&token).is_none() {
                return;
            }
            deliver_http(vm, root, token, answer)
        };
        self.after_call(w);
        if let Err(t) = result {
            self.trap(w, None, t);
        }
    }
}

fn deliver_http(vm: &mut Vm, root: u32, token: u32, answer: Answer) -> Result<(), Trapped> {
    let (headers, body, trailers) = match answer {
        Answer::Response {
            headers,
            body,
            trailers,
            ..
        } => (headers, body, trailers),
        Answer::Timeout => {
            // Envoy's async client answers a timeout with the router's local reply.
            let body = b"upstream request timeout".to_vec();
            (
                vec![
                    (":status".to_string(), "504".to_string()),
                    ("content-length".to_string(), body.len().to_string()),
                    ("content-type".to_string(), "text/plain".to_string()),
                ],
                body,
                Vec::new(),
            )
        }
        Answer::Reset => {
            let s = vm.state_mut();
            s.call_status = (11, "reset".to_string());
            s.callout_answer = None;
            let r = vm.on_http_call_response(root, token, 0, 0, 0);
            vm.state_mut().call_status.1.clear();
            return r;
        }
    };
    let (nh, nb, nt) = (
        headers.len() as u32,
        body.len() as u32,
        trailers.len() as u32,
    );
    vm.state_mut().callout_answer = Some(CalloutAnswerState {
        headers: HeaderMap::from_pairs(headers),
        body,
        trailers: HeaderMap::from_pairs(trailers),
    });
    let r = vm.on_http_call_response(root, token, nh, nb, nt);
    vm.state_mut().callout_answer = None;
    r
}

fn deliver_grpc(
    vm: &mut Vm,
    root: u32,
    token: u32,
    stream: bool,
    answer: Answer,
) -> Result<(), Trapped> {
    let close = |vm: &mut Vm, status: u32, message: &str| {
        vm.state_mut().call_status = (status, message.to_string());
        let r = vm.on_grpc_close(root, token, status);
        vm.state_mut().call_status.1.clear();
        r
    };
    // What Envoy 1.40's gRPC client closes with (`tests/tests/agreement.rs` checks it):
    // its router's local reply turned into gRPC (UNAVAILABLE) for a timeout and for a
    // reset before any answer, and a message followed by the response code details in
    // braces.
    match answer {
        Answer::Timeout => close(vm, 14, "upstream request timeout{response_timeout}"),
        Answer::Reset => close(
            vm,
            14,
            "upstream connect error or disconnect/reset before headers. reset reason: \
             remote reset{upstream_reset_before_response_started{remote_reset}}",
        ),
        Answer::Response {
            headers,
            body,
            trailers,
            grpc_status,
        } => {
            let headers: Vec<(String, String)> = headers
                .into_iter()
                .filter(|(k, _)| !k.starts_with(':'))
                .collect();
            vm.state_mut().callout_answer = Some(CalloutAnswerState {
                headers: HeaderMap::from_pairs(headers.clone()),
                body: body.clone(),
                trailers: HeaderMap::from_pairs(trailers.clone()),
            });
            let mut r = Ok(());
            if stream && !headers.is_empty() {
                r = vm.on_grpc_initial_metadata(root, token, headers.len() as u32);
            }
            if r.is_ok() && grpc_status == 0 {
                r = vm.on_grpc_receive(root, token, body.len() as u32);
            }
            if r.is_ok() && stream && !trailers.is_empty() {
                r = vm.on_grpc_trailing_metadata(root, token, trailers.len() as u32);
            }
            vm.state_mut().callout_answer = None;
            r?;
            if stream || grpc_status != 0 {
                close(
                    vm,
                    grpc_status,
                    &if grpc_status == 0 {
                        String::new()
                    } else {
                        format!("{}{{via_upstream}}", crate::callouts::STUB_GRPC_MESSAGE)
                    },
                )?;
            }
            Ok(())
        }
    }
}

//! The harness's callout stubs (`--callouts`) served to Envoy: one loopback HTTP/2
//! server per stub cluster ([`super::h2`], h2c with prior knowledge: Envoy's gRPC client
//! speaks nothing else, and HTTP/2 carries trailers), named as a static HTTP/2 cluster
//! in Envoy's bootstrap, so a module's callouts meet the same upstreams on both sides.
//! Each server answers a request as the harness's stub upstream answers the callout,
//! after the stub's latency, telling gRPC calls from HTTP ones by the request's
//! `content-type` (the harness by the host call; any stub answers both):
//!
//! - an HTTP call: the stub's status, headers (with `content-length`), body (none to
//!   `HEAD`, and none with 204 or 304) and trailers;
//! - a gRPC call: `content-type: application/grpc` (unless the stub's headers name one),
//!   the stub's headers, its body as **one** gRPC message (the 5-byte prefix added here:
//!   the stub's body is the message the module receives, as in the harness, so a body
//!   is never taken as already framed), then trailers with `grpc-status` (the stub's
//!   `grpc_status`, 0 without one), for a non-zero status `grpc-message` (the harness's
//!   [`crate::callouts::STUB_GRPC_MESSAGE`]), and the stub's trailers. A non-zero status
//!   without a body is a trailers-only answer (headers, `grpc-status` and trailers in one
//!   HEADERS frame that ends the stream), as gRPC servers and Envoy's own local replies
//!   send it; a zero status always carries a message (empty when the body is), since
//!   Envoy's unary gRPC client fails a call that ends without one;
//! - `reset`: RST_STREAM after the latency: before any answer to a gRPC call (Envoy's
//!   client closes it UNAVAILABLE, as the harness does), after the response headers of
//!   an HTTP call, so that Envoy's async client fails the call as the harness's stub
//!   does (a reset before them would make Envoy's router answer 503 instead);
//! - `timeout`: no answer, the stream is held until Envoy gives up on it.
//!
//! Latencies are real milliseconds in Envoy and virtual ones in the harness: the same
//! numbers, since the harness's records carry Envoy's own send times. They count from
//! the request's headers (Envoy sends a unary call's headers and message together).

use std::time::Duration;

use super::EnvoyError;
use super::h2::{Answer, Response, Server};
use crate::callouts::{CalloutConfig, STUB_GRPC_MESSAGE, StubAnswer};
use crate::grpc::{is_grpc_request, percent_encode};

/// The running stub servers.
pub struct StubClusters {
    servers: Vec<(String, Server)>,
}

/// Whether a header of `name` is among `headers`.
fn has(headers: &[(String, String)], name: &str) -> bool {
    headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
}

/// Drops the headers named `names` (the server writes its own).
fn without(headers: &[(String, String)], names: &[&str]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(n, _)| !names.iter().any(|x| n.eq_ignore_ascii_case(x)))
        .cloned()
        .collect()
}

/// A gRPC message: the 5-byte prefix (not compressed, big-endian length) and the bytes.
pub fn grpc_frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(0);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// How a stub answers one request: as gRPC when the request is a gRPC call, as HTTP
/// otherwise.
fn answer_of(stub: &(StubAnswer, u64), request: &[(String, String)]) -> Answer {
    let (answer, latency_ms) = stub;
    let latency = Duration::from_millis(*latency_ms);
    let grpc = is_grpc_request(request.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    match answer {
        StubAnswer::Response { .. } if grpc => Answer::After(latency, grpc_response(answer)),
        StubAnswer::Response { .. } => {
            let head = request.iter().any(|(n, v)| n == ":method" && v == "HEAD");
            Answer::After(latency, http_response(answer, head))
        }
        StubAnswer::Timeout => Answer::Never,
        StubAnswer::Reset if grpc => Answer::Reset(latency, Vec::new()),
        StubAnswer::Reset => Answer::Reset(latency, vec![(":status".to_owned(), "200".to_owned())]),
    }
}

/// An HTTP answer (`head`: to a `HEAD` request).
fn http_response(answer: &StubAnswer, head: bool) -> Response {
    let StubAnswer::Response {
        status,
        headers,
        body,
        trailers,
        ..
    } = answer
    else {
        return Response::default();
    };
    let mut headers = without(headers, &["content-length"]);
    let body = match status {
        204 | 304 => Vec::new(),
        _ => {
            headers.push(("content-length".to_owned(), body.len().to_string()));
            if head { Vec::new() } else { body.clone() }
        }
    };
    Response {
        headers,
        body,
        trailers: trailers.clone(),
    }
}

/// A gRPC answer.
fn grpc_response(answer: &StubAnswer) -> Response {
    let StubAnswer::Response {
        headers,
        body,
        trailers,
        grpc_status,
        ..
    } = answer
    else {
        return Response::default();
    };
    let mut headers = headers.clone();
    if !has(&headers, "content-type") {
        headers.push(("content-type".to_owned(), "application/grpc".to_owned()));
    }
    let mut status = vec![("grpc-status".to_owned(), grpc_status.to_string())];
    if *grpc_status != 0 {
        status.push((
            "grpc-message".to_owned(),
            percent_encode(STUB_GRPC_MESSAGE.as_bytes()),
        ));
    }
    status.extend(without(trailers, &["grpc-status", "grpc-message"]));
    if *grpc_status != 0 && body.is_empty() {
        headers.extend(status);
        return Response {
            headers,
            ..Response::default()
        };
    }
    Response {
        headers,
        body: grpc_frame(body),
        trailers: status,
    }
}

impl StubClusters {
    /// Starts one server per stub cluster of `config`.
    pub fn start(config: &CalloutConfig) -> Result<Self, EnvoyError> {
        let mut servers = Vec::new();
        for name in config.clusters.keys() {
            let Some(stub) = config.answer(name) else {
                continue;
            };
            let server = Server::start(Box::new(move |request| answer_of(&stub, request)))
                .map_err(|e| EnvoyError::io(&format!("callout stub `{name}`"), e))?;
            servers.push((name.clone(), server));
        }
        Ok(Self { servers })
    }

    /// The clusters Envoy gets (each speaking HTTP/2): name and port.
    pub fn clusters(&self) -> Vec<(String, u16)> {
        self.servers
            .iter()
            .map(|(name, server)| (name.clone(), server.port()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callouts::CalloutConfig;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// The answer of stub `name` to an HTTP request with `method`, or to a gRPC call.
    fn answer_to(config: &str, name: &str, method: &str, grpc: bool) -> Answer {
        let config = CalloutConfig::parse(config).unwrap();
        let mut request = pairs(&[(":method", method), (":path", "/x")]);
        if grpc {
            request.extend(pairs(&[
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ]));
        }
        answer_of(&config.answer(name).unwrap(), &request)
    }

    fn answer(config: &str, name: &str) -> Answer {
        answer_to(config, name, "GET", false)
    }

    fn grpc(config: &str, name: &str) -> Answer {
        answer_to(config, name, "POST", true)
    }

    #[test]
    fn http_stubs_answer_as_the_harness_stub_upstream_does() {
        let config = "[clusters.authz]\nstatus = 403\nbody = \"no\"\nlatency_ms = 5\n\
             headers = [[\"x-why\", \"policy\"], [\"content-length\", \"99\"]]\n\
             trailers = { \"x-checked\" = \"1\" }\n\
             [clusters.empty]\nstatus = 204\nbody = \"dropped\"\n\
             [clusters.slow]\ntimeout = true\n[clusters.flaky]\nreset = true\nlatency_ms = 2\n";
        let authz = Response {
            headers: pairs(&[
                (":status", "403"),
                ("x-why", "policy"),
                ("content-length", "2"),
            ]),
            body: b"no".to_vec(),
            trailers: pairs(&[("x-checked", "1")]),
        };
        assert_eq!(
            answer(config, "authz"),
            Answer::After(Duration::from_millis(5), authz.clone())
        );
        // HEAD: the same headers, no body.
        assert_eq!(
            answer_to(config, "authz", "HEAD", false),
            Answer::After(
                Duration::from_millis(5),
                Response {
                    body: Vec::new(),
                    ..authz
                }
            )
        );
        assert_eq!(
            answer(config, "empty"),
            Answer::After(
                Duration::ZERO,
                Response {
                    headers: pairs(&[(":status", "204")]),
                    body: Vec::new(),
                    trailers: Vec::new(),
                }
            )
        );
        assert_eq!(answer(config, "slow"), Answer::Never);
        // A reset after the headers, which Envoy's async client reports as a failure.
        assert_eq!(
            answer(config, "flaky"),
            Answer::Reset(Duration::from_millis(2), pairs(&[(":status", "200")]))
        );
        assert_eq!(
            grpc(config, "flaky"),
            Answer::Reset(Duration::from_millis(2), Vec::new())
        );
        assert_eq!(grpc(config, "slow"), Answer::Never);
        // Any stub answers a gRPC call as gRPC (status 0 without `grpc_status`), as in
        // the harness.
        let Answer::After(_, as_grpc) = grpc(config, "authz") else {
            panic!()
        };
        assert_eq!(as_grpc.body, grpc_frame(b"no"));
        assert_eq!(
            as_grpc.trailers,
            pairs(&[("grpc-status", "0"), ("x-checked", "1")])
        );
    }

    #[test]
    fn grpc_stubs_answer_one_framed_message_and_the_status_in_trailers() {
        let config = "[clusters.ok]\ngrpc_status = 0\nbody = \"hi\"\nlatency_ms = 3\n\
             trailers = [[\"x-t\", \"1\"], [\"grpc-status\", \"9\"]]\n\
             [clusters.empty]\ngrpc_status = 0\n\
             [clusters.denied]\ngrpc_status = 7\nheaders = { \"x-h\" = \"2\" }\n\
             [clusters.denied_with_body]\ngrpc_status = 7\nbody = \"why\"\n\
             [clusters.own_type]\ngrpc_status = 0\n\
             headers = { \"content-type\" = \"application/grpc+proto\" }\n";
        assert_eq!(
            grpc(config, "ok"),
            Answer::After(
                Duration::from_millis(3),
                Response {
                    headers: pairs(&[(":status", "200"), ("content-type", "application/grpc")]),
                    body: vec![0, 0, 0, 0, 2, b'h', b'i'],
                    trailers: pairs(&[("grpc-status", "0"), ("x-t", "1")]),
                }
            )
        );
        let Answer::After(_, empty) = grpc(config, "empty") else {
            panic!()
        };
        assert_eq!(empty.body, [0, 0, 0, 0, 0]);
        // Trailers-only: everything in the headers, which end the stream.
        assert_eq!(
            grpc(config, "denied"),
            Answer::After(
                Duration::ZERO,
                Response {
                    headers: pairs(&[
                        (":status", "200"),
                        ("x-h", "2"),
                        ("content-type", "application/grpc"),
                        ("grpc-status", "7"),
                        ("grpc-message", "stub status"),
                    ]),
                    body: Vec::new(),
                    trailers: Vec::new(),
                }
            )
        );
        let Answer::After(_, with_body) = grpc(config, "denied_with_body") else {
            panic!()
        };
        assert_eq!(with_body.body, grpc_frame(b"why"));
        assert_eq!(
            with_body.trailers,
            pairs(&[("grpc-status", "7"), ("grpc-message", "stub status")])
        );
        let Answer::After(_, own) = grpc(config, "own_type") else {
            panic!()
        };
        assert_eq!(
            own.headers,
            pairs(&[
                (":status", "200"),
                ("content-type", "application/grpc+proto")
            ])
        );
    }
}

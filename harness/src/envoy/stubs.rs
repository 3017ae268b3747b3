//! The harness's callout stubs (`--callouts`) served to Envoy: one loopback server per
//! stub cluster, answering as the harness's stub upstream does (status, headers and
//! body after the stub's latency, a hang-up for `reset`, no answer for `timeout`), and
//! named as a static cluster in Envoy's bootstrap, so a module's callouts meet the same
//! upstreams on both sides.
//!
//! Latencies are real milliseconds in Envoy and virtual ones in the harness: the same
//! numbers, since the harness's records carry Envoy's own send times. Stub trailers are
//! not sent (the stub speaks HTTP/1.1), and gRPC stubs are refused: Envoy would need an
//! HTTP/2 gRPC server for them.

use std::time::Duration;

use super::EnvoyError;
use super::upstream::{Answer, Reply, Server};
use crate::callouts::{CalloutConfig, StubAnswer};

/// The running stub servers.
pub struct StubClusters {
    servers: Vec<(String, Server)>,
}

/// How a stub answers every request to its cluster.
fn answer_of(stub: (StubAnswer, u64)) -> Answer {
    let (answer, latency_ms) = stub;
    let latency = Duration::from_millis(latency_ms);
    match answer {
        StubAnswer::Response {
            status,
            headers,
            body,
            ..
        } => Answer::After(
            latency,
            Reply {
                status,
                // `:status` is the status line; the server writes the framing.
                headers: headers
                    .into_iter()
                    .filter(|(n, _)| n != ":status")
                    .collect(),
                body,
            },
        ),
        StubAnswer::Reset => Answer::HangUp(latency),
        StubAnswer::Timeout => Answer::Never,
    }
}

impl StubClusters {
    /// Starts one server per stub cluster of `config`.
    pub fn start(config: &CalloutConfig) -> Result<Self, EnvoyError> {
        let mut servers = Vec::new();
        for (name, stub) in &config.clusters {
            if stub.grpc_status.is_some() {
                return Err(EnvoyError::Policy(format!(
                    "callout stub `{name}` answers gRPC (grpc_status); the Envoy comparison \
                     serves HTTP/1.1 stubs only, so compare this module without it"
                )));
            }
            let Some(stub) = config.answer(name) else {
                continue;
            };
            let answer = answer_of(stub);
            let server = Server::start_answering(Box::new(move |_| answer.clone()))
                .map_err(|e| EnvoyError::io(&format!("callout stub `{name}`"), e))?;
            servers.push((name.clone(), server));
        }
        Ok(Self { servers })
    }

    /// The clusters Envoy gets: name and port.
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

    #[test]
    fn stubs_answer_as_the_harness_stub_upstream_does() {
        let config = CalloutConfig::parse(
            "[clusters.authz]\nstatus = 403\nbody = \"no\"\nlatency_ms = 5\nheaders = { \"x-why\" = \"policy\" }\n\
             [clusters.slow]\ntimeout = true\n[clusters.flaky]\nreset = true\nlatency_ms = 2\n",
        )
        .unwrap();
        match answer_of(config.answer("authz").unwrap()) {
            Answer::After(delay, reply) => {
                assert_eq!(delay, Duration::from_millis(5));
                assert_eq!(reply.status, 403);
                assert_eq!(reply.headers, [("x-why".to_string(), "policy".to_string())]);
                assert_eq!(reply.body, b"no");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            answer_of(config.answer("slow").unwrap()),
            Answer::Never
        ));
        assert!(matches!(
            answer_of(config.answer("flaky").unwrap()),
            Answer::HangUp(d) if d == Duration::from_millis(2)
        ));
        let grpc = CalloutConfig::parse("[clusters.g]\ngrpc_status = 7\n").unwrap();
        let err = StubClusters::start(&grpc).err().unwrap().to_string();
        assert!(err.contains("`g` answers gRPC"), "{err}");
    }
}

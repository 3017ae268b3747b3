//! The peer's service over gRPC, from a tonic client, counting in a real redis-server
//! (Debian's, started here on a free loopback port): limits carried by the request
//! (`RateLimitDescriptor.limit`) and limits from limitador-server's limits file,
//! `hits_addend` at both levels (0 asks without counting), per-descriptor statuses with the
//! limit, what remains and when it resets, every descriptor counted on its own (over the
//! limit too, as envoyproxy/ratelimit counts), the API's errors, and `UNAVAILABLE` when
//! Redis is gone. The service runs in this process on the binary's own parts; the binary
//! itself, with Envoy, is tested in tests/tests/ratelimit_peer.rs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stakeguard_ratelimit_peer::counting::Counting;
use stakeguard_ratelimit_peer::limits_file;
use stakeguard_ratelimit_peer::rls::{
    Code, Entry, RateLimitDescriptor, RateLimitOverride, RateLimitRequest, RateLimitResponse,
    SHOULD_RATE_LIMIT, UInt64Value, Unit,
};
use stakeguard_ratelimit_peer::service::RateLimitService;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic_prost::ProstCodec;

/// A private redis-server on a free loopback port, killed on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--dir", "/tmp"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/ensure-redis.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !Self::pong(port) {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }

    fn pong(port: u16) -> bool {
        let mut reply = [0u8; 7];
        TcpStream::connect(("127.0.0.1", port))
            .and_then(|mut s| {
                s.write_all(b"PING\r\n")
                    .and_then(|()| s.read_exact(&mut reply))
            })
            .is_ok()
            && &reply == b"+PONG\r\n"
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The service on a loopback port of this process, counting in `redis`, and a blocking
/// client for it (one HTTP/2 connection, one call at a time).
struct Client {
    runtime: tokio::runtime::Runtime,
    grpc: tonic::client::Grpc<Channel>,
}

impl Client {
    fn serving(redis: &Redis, limits: Option<&str>) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let limits = limits
            .map(|l| limits_file::parse(l).unwrap())
            .unwrap_or_default();
        let url = format!("redis://127.0.0.1:{}", redis.port);
        let channel =
            runtime.block_on(async {
                let counting = Counting::connect(&url, limits).await.unwrap();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let port = listener.local_addr().unwrap().port();
                tokio::spawn(Server::builder().serve_with_incoming(
                    RateLimitService::new(counting),
                    TcpIncoming::from(listener),
                ));
                Channel::from_shared(format!("http://127.0.0.1:{port}"))
                    .unwrap()
                    .timeout(Duration::from_secs(5))
                    .connect()
                    .await
                    .unwrap()
            });
        Self {
            runtime,
            grpc: tonic::client::Grpc::new(channel),
        }
    }

    fn call(&mut self, request: RateLimitRequest) -> Result<RateLimitResponse, tonic::Status> {
        let grpc = &mut self.grpc;
        self.runtime.block_on(async {
            grpc.ready()
                .await
                .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            grpc.unary(
                tonic::Request::new(request),
                PathAndQuery::from_static(SHOULD_RATE_LIMIT),
                ProstCodec::<RateLimitRequest, RateLimitResponse>::default(),
            )
            .await
            .map(tonic::Response::into_inner)
        })
    }

    fn ok(&mut self, request: RateLimitRequest) -> RateLimitResponse {
        self.call(request)
            .unwrap_or_else(|s| panic!("call failed: {s:?}"))
    }
}

fn descriptor(entries: &[(&str, &str)]) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: entries
            .iter()
            .map(|(k, v)| Entry {
                key: (*k).to_owned(),
                value: (*v).to_owned(),
            })
            .collect(),
        limit: None,
        hits_addend: None,
    }
}

fn limited(entries: &[(&str, &str)], requests_per_unit: u32, unit: Unit) -> RateLimitDescriptor {
    RateLimitDescriptor {
        limit: Some(RateLimitOverride {
            requests_per_unit,
            unit: unit as i32,
        }),
        ..descriptor(entries)
    }
}

fn hits(mut d: RateLimitDescriptor, value: u64) -> RateLimitDescriptor {
    d.hits_addend = Some(UInt64Value { value });
    d
}

fn request(domain: &str, descriptors: Vec<RateLimitDescriptor>) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.to_owned(),
        descriptors,
        hits_addend: 0,
    }
}

fn code(response: &RateLimitResponse) -> Code {
    Code::try_from(response.overall_code).unwrap()
}

#[test]
fn a_limit_carried_by_the_request_allows_its_count_then_answers_over_limit() {
    let redis = Redis::start();
    let mut client = Client::serving(&redis, None);
    let ada = || limited(&[("api", "quotes"), ("key", "ada")], 3, Unit::Minute);
    for left in [2, 1, 0] {
        let response = client.ok(request("bank", vec![ada()]));
        assert_eq!(code(&response), Code::Ok);
        let status = &response.statuses[0];
        assert_eq!(Code::try_from(status.code).unwrap(), Code::Ok);
        assert_eq!(status.limit_remaining, left);
        let limit = status.current_limit.as_ref().unwrap();
        assert_eq!(
            (limit.requests_per_unit, limit.unit),
            (3, Unit::Minute as i32)
        );
        let reset = status.duration_until_reset.unwrap();
        assert!(
            (1..=60).contains(&reset.seconds) || reset.nanos > 0,
            "{reset:?}"
        );
    }
    let over = client.ok(request("bank", vec![ada()]));
    assert_eq!(code(&over), Code::OverLimit);
    assert_eq!(
        Code::try_from(over.statuses[0].code).unwrap(),
        Code::OverLimit
    );
    assert_eq!(over.statuses[0].limit_remaining, 0);

    // Another key, another domain and another limit each count on their own.
    let bea = limited(&[("api", "quotes"), ("key", "bea")], 3, Unit::Minute);
    assert_eq!(code(&client.ok(request("bank", vec![bea]))), Code::Ok);
    let elsewhere = limited(&[("api", "quotes"), ("key", "ada")], 3, Unit::Minute);
    assert_eq!(code(&client.ok(request("shop", vec![elsewhere]))), Code::Ok);
    let hourly = limited(&[("api", "quotes"), ("key", "ada")], 10, Unit::Hour);
    let response = client.ok(request("bank", vec![hourly]));
    assert_eq!(code(&response), Code::Ok);
    assert_eq!(response.statuses[0].limit_remaining, 9);
}

#[test]
fn hits_addend_counts_several_or_none_at_both_levels() {
    let redis = Redis::start();
    let mut client = Client::serving(&redis, None);
    let flow = || limited(&[("api", "payments"), ("key", "acct-1")], 10, Unit::Hour);

    // Request level: 4 hits for every descriptor without its own.
    let mut four = request("bank", vec![flow()]);
    four.hits_addend = 4;
    assert_eq!(client.ok(four).statuses[0].limit_remaining, 6);

    // Descriptor level 0: asks without counting, as often as it likes.
    for _ in 0..3 {
        let peek = client.ok(request("bank", vec![hits(flow(), 0)]));
        assert_eq!(code(&peek), Code::Ok);
        assert_eq!(peek.statuses[0].limit_remaining, 6);
    }

    // At the limit a query answers OK (nothing passed it yet) with 0 left.
    assert_eq!(
        client.ok(request("bank", vec![hits(flow(), 4)])).statuses[0].limit_remaining,
        2
    );
    assert_eq!(
        client.ok(request("bank", vec![hits(flow(), 2)])).statuses[0].limit_remaining,
        0
    );
    let at_limit = client.ok(request("bank", vec![hits(flow(), 0)]));
    assert_eq!(code(&at_limit), Code::Ok);
    assert_eq!(at_limit.statuses[0].limit_remaining, 0);

    // The descriptor's hits override the request's; a call past the limit is over and
    // still counted, so from then on a query is over too.
    let mut one = request("bank", vec![hits(flow(), 1)]);
    one.hits_addend = 3;
    assert_eq!(code(&client.ok(one)), Code::OverLimit);
    let past = client.ok(request("bank", vec![hits(flow(), 0)]));
    assert_eq!(code(&past), Code::OverLimit);
    assert_eq!(past.statuses[0].limit_remaining, 0);
}

#[test]
fn each_descriptor_of_a_call_counts_on_its_own() {
    let redis = Redis::start();
    let mut client = Client::serving(&redis, None);
    // A lockout as a proxy asks for one: failures counted against a limit one below the
    // threshold (2 failures lock), the request asking with 0 hits whether it is over.
    let user = |h| {
        hits(
            limited(&[("control", "login"), ("key", "u1")], 1, Unit::Day),
            h,
        )
    };
    let ip = || {
        limited(
            &[("control", "login_ip"), ("key", "10.1.1.1")],
            5,
            Unit::Day,
        )
    };

    let first = client.ok(request("bank", vec![user(1), ip()]));
    assert_eq!(code(&first), Code::Ok);
    let left = |r: &RateLimitResponse| {
        r.statuses
            .iter()
            .map(|s| s.limit_remaining)
            .collect::<Vec<_>>()
    };
    assert_eq!(left(&first), [0, 4]);
    assert_eq!(code(&client.ok(request("bank", vec![user(0)]))), Code::Ok);

    let second = client.ok(request("bank", vec![user(1), ip()]));
    assert_eq!(code(&second), Code::OverLimit);
    let codes: Vec<Code> = second
        .statuses
        .iter()
        .map(|s| Code::try_from(s.code).unwrap())
        .collect();
    assert_eq!(codes, [Code::OverLimit, Code::Ok]);
    // The address counted although the user was over; the user is now locked.
    assert_eq!(left(&second), [0, 3]);
    assert_eq!(
        code(&client.ok(request("bank", vec![user(0)]))),
        Code::OverLimit
    );
}

const LIMITS: &str = r#"
- namespace: bank
  max_value: 2
  seconds: 900
  conditions:
    - "descriptors[0].control == 'login'"
  variables:
    - descriptors[0].key
- namespace: bank
  max_value: 100
  seconds: 60
  conditions:
    - "descriptors[0].control == 'login'"
  variables: []
"#;

#[test]
fn limits_from_a_limitador_limits_file_apply_by_condition_and_variable() {
    let redis = Redis::start();
    let mut client = Client::serving(&redis, Some(LIMITS));
    let login = |key: &str| descriptor(&[("control", "login"), ("key", key)]);

    let first = client.ok(request("bank", vec![login("alice")]));
    assert_eq!(code(&first), Code::Ok);
    // The tightest of the two limits that apply is the one reported: 2 per 900 s.
    let status = &first.statuses[0];
    assert_eq!(status.limit_remaining, 1);
    let limit = status.current_limit.as_ref().unwrap();
    assert_eq!(
        (limit.requests_per_unit, limit.unit),
        (2, Unit::Unknown as i32)
    );
    assert_eq!(limit.name, "2 per 900s");
    assert_eq!(
        code(&client.ok(request("bank", vec![login("alice")]))),
        Code::Ok
    );
    assert_eq!(
        code(&client.ok(request("bank", vec![login("alice")]))),
        Code::OverLimit
    );
    // Another user has a counter of its own (the shared 100-a-minute one is at 4).
    let bob = client.ok(request("bank", vec![login("bob")]));
    assert_eq!(code(&bob), Code::Ok);
    assert_eq!(bob.statuses[0].limit_remaining, 1);

    // No condition holds: no limit applies, OK without a current limit.
    let other = client.ok(request(
        "bank",
        vec![descriptor(&[("control", "quota"), ("key", "x")])],
    ));
    assert_eq!(code(&other), Code::Ok);
    assert_eq!(other.statuses[0].current_limit, None);
    // Another domain is another namespace: none of these limits.
    let shop = client.ok(request("shop", vec![login("alice")]));
    assert_eq!(shop.statuses[0].current_limit, None);
}

#[test]
fn requests_that_break_the_api_are_refused_with_the_place() {
    let redis = Redis::start();
    let mut client = Client::serving(&redis, None);
    let cases = [
        (request("", vec![descriptor(&[("k", "v")])]), "domain"),
        (request("bank", vec![]), "descriptors"),
        (
            request("bank", vec![descriptor(&[])]),
            "descriptors[0].entries",
        ),
        (
            request(
                "bank",
                vec![descriptor(&[("k", "v")]), descriptor(&[("k", "")])],
            ),
            "descriptors[1].entries[0]",
        ),
        (
            request("bank", vec![limited(&[("k", "v")], 5, Unit::Unknown)]),
            "descriptors[0].limit.unit",
        ),
    ];
    for (call, place) in cases {
        let status = client.call(call).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().starts_with(place), "{place}: {status:?}");
    }
}

#[test]
fn without_redis_the_peer_answers_unavailable_so_a_proxy_applies_its_failure_mode() {
    let mut redis = Redis::start();
    let mut client = Client::serving(&redis, None);
    let d = || limited(&[("api", "quotes"), ("key", "dee")], 5, Unit::Minute);
    assert_eq!(code(&client.ok(request("bank", vec![d()]))), Code::Ok);
    redis.stop();
    let status = client.call(request("bank", vec![d()])).unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().starts_with("limitador"), "{status:?}");
}

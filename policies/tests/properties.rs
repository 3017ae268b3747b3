//! Properties that must hold for every input, checked on generated ones (proptest):
//! normalizing a path twice changes nothing; every request against every example policy
//! gets a decision, and an ambiguous path is refused with 400; the same requests in the
//! same order against the same state get the same decisions and response changes.
//!
//! Native only: proptest is not built for the wasm32 runner (see Cargo.toml).

#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::borrow::Cow;

use common::{Host, Req, example};
use proptest::prelude::*;
use stakeguard_policies::path::normalize;
use stakeguard_policies::{HeaderChange, RouteOf, Verdict};

/// Pieces paths are made of: the spellings normalization decides on, and plain text.
const PATH_PIECES: &[&str] = &[
    "/", "//", "a", "B", "api", "v2", "accounts", "1000", "login", ".", "..", "%2e", "%2E",
    "%2e%2e", "%25", "%252e", "%2f", "%5C", "\\", "%41", "%61", "%3a", "%3B", ";", "?", "#",
    "%c3%a9", "%C0%AE", "%00", "%7e", "~", "%", "%zz", "x=1", "é", "\t", "*",
];

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PATH_PIECES), 0..16)
        .prop_map(|pieces| format!("/{}", pieces.concat()))
}

/// A generated request, printable when a property fails.
#[derive(Debug, Clone)]
struct Spec {
    method: String,
    authority: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
    client: u8,
}

impl Spec {
    fn req(&self) -> Req {
        Req {
            method: self.method.clone(),
            authority: self.authority.clone(),
            path: self.path.clone(),
            headers: self.headers.clone(),
            source: format!("198.51.100.{}:4000", self.client),
            uri_san: None,
            body: self.body.as_bytes().to_vec(),
        }
    }
}

/// A request that may aim anywhere in the example policies, in any spelling.
fn request() -> impl Strategy<Value = Spec> {
    let method =
        prop::sample::select(&["GET", "POST", "PUT", "DELETE", "OPTIONS", "get", "PATCH"][..]);
    let host = prop::sample::select(
        &[
            "bank.example.com",
            "shop.example.com",
            "SHOP.example.com.",
            "www.shop.example.com:443",
            "",
            "[::1]:8080",
        ][..],
    );
    let target = prop_oneof![
        path(),
        prop::sample::select(
            &[
                "/api/v2/login",
                "/api/v2/accounts/1000",
                "/api/v2/transfers",
                "/api/v1/rates/eur",
                "/signin",
                "/api/v3/cart/items",
                "/api/v1/password-reset",
                "/api/v1/products/7",
            ][..]
        )
        .prop_map(str::to_owned),
    ];
    let header = prop::sample::select(
        &[
            ("authorization", "Bearer e30.eyJzdWIiOiJhbGljZSJ9.x"),
            ("authorization", ""),
            ("x-user-id", "alice"),
            ("cookie", "sid=s1; cart_session=c1; uid=u1"),
            ("cookie", "sid="),
            ("origin", "https://evil.example.net"),
            ("origin", "https://app.bank.example"),
            ("x-forwarded-for", "203.0.113.9, 10.0.0.1"),
            ("content-type", "application/json"),
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-partner-key", "pc-7f3a"),
            ("access-control-request-method", "POST"),
        ][..],
    );
    let body = prop::sample::select(
        &[
            "",
            r#"{"username":"alice","password":"x"}"#,
            r#"{"username":7}"#,
            "email=a%40b.c&password=x",
            r#"{"to":"acct-9","amount":5}"#,
            "{",
        ][..],
    );
    (
        method,
        host,
        target,
        prop::collection::vec(header, 0..5),
        body,
        0u8..4,
    )
        .prop_map(|(method, host, path, headers, body, client)| Spec {
            method: method.to_owned(),
            authority: host.to_owned(),
            path,
            headers: headers
                .into_iter()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect(),
            body: body.to_owned(),
            client,
        })
}

/// What a request ended as, comparable: the verdict and the response changes.
fn outcome(host: &Host, req: &Req, status: u16) -> (Verdict, Vec<HeaderChange>) {
    let response_headers = [
        ("set-cookie", "sid=s2; Path=/"),
        ("server", "nginx"),
        ("content-type", "application/json"),
    ];
    let (exchange, changes) = host.exchange(req, status, &response_headers);
    (exchange.verdict, changes)
}

const EXAMPLES: [&str; 3] = ["bank", "retailer", "minimal"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn normalizing_a_normal_path_changes_nothing(raw in path()) {
        if let Ok(once) = normalize(&raw) {
            let twice = normalize(&once);
            prop_assert_eq!(twice.as_deref(), Ok(once.as_ref()), "{:?}", raw);
            prop_assert!(matches!(twice, Ok(Cow::Borrowed(_))), "{:?} is not borrowed", once);
            // Nothing a second reader could resolve differently is left.
            prop_assert!(!once.contains("//") && !once.contains("/./") && !once.contains("/../"));
            prop_assert!(!once.ends_with("/.") && !once.ends_with("/.."));
        }
    }

}

// Each case compiles a policy and creates its state tables (20,480 keys for the bank),
// so these run fewer cases.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn every_request_gets_a_decision_and_an_ambiguous_path_a_400(
        example_index in 0..EXAMPLES.len(),
        spec in request(),
        status in prop::sample::select(&[200u16, 401, 403, 404, 500][..]),
    ) {
        let host = Host::new(&example(EXAMPLES[example_index]));
        let req = spec.req();
        let (verdict, _) = outcome(&host, &req, status);
        prop_assert!(verdict != Verdict::ReadBody, "a body was asked for after it was given");
        if let Verdict::Reply(reply) = &verdict {
            prop_assert!((100..=599).contains(&reply.status), "status {}", reply.status);
        }
        if host.policy.route_of(&req.authority, &req.path, &req.method) == RouteOf::Ambiguous {
            prop_assert!(
                matches!(&verdict, Verdict::Reply(reply) if reply.status == 400),
                "{} {} was ambiguous but got {:?}", req.method, req.path, verdict
            );
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn the_same_requests_against_the_same_state_get_the_same_decisions(
        example_index in 0..EXAMPLES.len(),
        requests in prop::collection::vec((request(), prop::sample::select(&[200u16, 401][..]), 0u64..120_000), 1..24),
    ) {
        let text = example(EXAMPLES[example_index]);
        let (first, second) = (Host::new(&text), Host::new(&text));
        for (spec, status, pause) in &requests {
            let req = &spec.req();
            first.advance(*pause);
            second.advance(*pause);
            prop_assert_eq!(
                outcome(&first, req, *status),
                outcome(&second, req, *status),
                "{} {}", req.method, req.path
            );
        }
    }
}

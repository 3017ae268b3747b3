//! Path normalization in a real Envoy: ambiguous paths (encoded slashes and
//! backslashes, NUL, bad escapes, `..` above the root) are refused with 400 and never
//! reach the upstream; paths that normalize cleanly reach their API's controls.

use stakeguard_tests::client::Request;
use stakeguard_tests::{start_filter, test_policy};

#[test]
fn ambiguous_paths_are_refused_and_clean_ones_routed() {
    let (upstream, envoy) = start_filter(&test_policy("e2e"));
    for (n, path) in [
        "/api/v2/accounts%2F1",
        "/api/v2/accounts/..%2F..%2Fadmin",
        "/api/v2/accounts%5C1",
        "/api/v2/accounts/1%00.json",
        "/api/v2/accounts/%zz",
        "/../api/v2/accounts/1",
    ]
    .iter()
    .enumerate()
    {
        let id = format!("ambiguous-{n}");
        let response = envoy.send(&Request::get(path).header("x-request-id", &id));
        assert_eq!(response.status, 400, "{path}: {}", response.text());
        assert_eq!(
            response.json().unwrap_or_default()["error"],
            "ambiguous_path",
            "{path}"
        );
        assert_eq!(
            response.json().unwrap_or_default()["reference"],
            id.as_str()
        );
    }
    assert_eq!(
        upstream.requests().len(),
        0,
        "no ambiguous path reached the upstream"
    );

    // Dot segments, repeated slashes and encoded unreserved characters normalize to the
    // accounts route, whose credentials check then answers.
    for path in [
        "/api/v2/./accounts/1",
        "/api//v2/accounts/1",
        "/api/v2/%61ccounts/1",
        "/api/v2/x/../accounts/1",
    ] {
        let response = envoy.send(&Request::get(path));
        assert_eq!(
            response.status,
            401,
            "{path} reaches the accounts API: {}",
            response.text()
        );
    }
}

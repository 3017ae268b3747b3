//! The test infrastructure itself (a plain Envoy in front of the test upstream) and the
//! shipped Envoy examples: they validate, and carry the policy the project documents.

use stakeguard_tests::client::Request;
use stakeguard_tests::envoy::{Envoy, EnvoyConfig};
use stakeguard_tests::upstream::{GOOD_PASSWORD, Reply, Upstream};

#[test]
fn a_plain_envoy_proxies_to_the_test_upstream_and_logs_the_request() {
    let upstream = Upstream::start().unwrap();
    let envoy = Envoy::start(&EnvoyConfig::new(upstream.port())).unwrap_or_else(|e| panic!("{e}"));

    let resp = envoy.send(
        &Request::get("/hello?x=1")
            .header("x-request-id", "smoke-1")
            .header("x-custom", "yes"),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let echo = resp.json().unwrap();
    assert_eq!(echo["path"], "/hello?x=1");
    let headers = echo["headers"].as_array().unwrap();
    assert!(
        headers.iter().any(|h| h[0] == "x-custom" && h[1] == "yes"),
        "{echo}"
    );
    assert_eq!(upstream.count("/hello"), 1);

    let entry = envoy
        .access_log_entry("smoke-1")
        .expect("access log entry for smoke-1");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["path"], "/hello?x=1");
    assert!(
        entry["decision"].is_null() || entry["decision"] == "-",
        "no filter, no decision: {entry}"
    );

    let samples = envoy.prometheus();
    assert!(
        stakeguard_tests::stats::sum(
            &samples,
            "envoy_cluster_upstream_rq_total",
            &[("envoy_cluster_name", "upstream")]
        ) >= 1.0,
        "upstream request counted in /stats/prometheus"
    );
}

#[test]
fn the_test_upstream_answers_logins_by_password_and_scripted_replies() {
    let upstream = Upstream::start().unwrap();
    let envoy = Envoy::start(&EnvoyConfig::new(upstream.port())).unwrap_or_else(|e| panic!("{e}"));

    let good = envoy.send(&Request::post_json(
        "/api/login",
        &format!(r#"{{"username":"ann","password":"{GOOD_PASSWORD}"}}"#),
    ));
    assert_eq!(good.status, 200);
    assert!(
        good.header("set-cookie")
            .is_some_and(|c| c.starts_with("sid=")),
        "{:?}",
        good.headers
    );
    let bad = envoy.send(&Request::post_json(
        "/api/login",
        r#"{"username":"ann","password":"nope"}"#,
    ));
    assert_eq!(bad.status, 401);

    upstream.respond(
        "/scripted",
        Reply::status(418)
            .header("x-teapot", "1")
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=2"),
    );
    let scripted = envoy.send(&Request::get("/scripted/x"));
    assert_eq!(scripted.status, 418);
    assert_eq!(scripted.header("x-teapot"), Some("1"));
    assert_eq!(scripted.header_all("set-cookie"), vec!["a=1", "b=2"]);

    let overridden = envoy.send(
        &Request::get("/other")
            .header("x-upstream-status", "503")
            .header("x-upstream-header", "server: upstream/1"),
    );
    assert_eq!(overridden.status, 503);
}

#[test]
fn the_standalone_example_validates_and_uses_the_tests_stats_tags() {
    let path = stakeguard_tests::repo_root().join("envoy-examples/standalone/envoy.yaml");
    let (ok, output) = stakeguard_tests::envoy::validate(&path).unwrap();
    assert!(ok, "envoy --mode validate failed:\n{output}");
    let yaml = std::fs::read_to_string(&path).unwrap();
    let tags = stakeguard_tests::envoy::stats_config();
    for tag in tags["stats_tags"].as_array().unwrap() {
        let regex = tag["regex"].as_str().unwrap();
        let name = tag["tag_name"].as_str().unwrap();
        assert!(
            yaml.contains(&format!("tag_name: {name}")),
            "tag {name} missing from the example"
        );
        assert!(
            yaml.contains(regex),
            "the example's regex for {name} differs from the tests' ({regex})"
        );
    }
}

/// The policy inside the standalone example is the bank example, so the example shows
/// what the rest of the project documents and tests.
#[test]
fn the_standalone_example_carries_the_bank_policy() {
    let root = stakeguard_tests::repo_root();
    let path = root.join("envoy-examples/standalone/envoy.yaml");
    let mut yaml = std::fs::read_to_string(&path).unwrap();
    let start = yaml.find("value: |\n").expect("an inline policy") + "value: |\n".len();
    let indent = " ".repeat(20);
    let block: Vec<&str> = yaml[start..]
        .lines()
        .take_while(|line| line.is_empty() || line.starts_with(&indent))
        .collect();
    if std::env::var_os("STAKEGUARD_UPDATE_EXAMPLES").is_some() {
        // `make examples`: embed the current bank policy.
        let old_len: usize = block.iter().map(|line| line.len() + 1).sum();
        let bank = std::fs::read_to_string(root.join("policies/examples/bank.json")).unwrap();
        let embedded: String = bank
            .lines()
            .map(|line| format!("{indent}{line}\n"))
            .collect();
        yaml.replace_range(start..start + old_len, &embedded);
        std::fs::write(&path, &yaml).unwrap();
        return;
    }
    let embedded: serde_json::Value = serde_json::from_str(&block.join("\n")).unwrap();
    let bank: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("policies/examples/bank.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        embedded, bank,
        "envoy-examples/standalone/envoy.yaml embeds an old bank policy"
    );
    let jwt = yaml
        .find("envoy.filters.http.jwt_authn")
        .expect("jwt_authn in the example");
    let wasm = yaml
        .find("envoy.filters.http.wasm")
        .expect("stakeguard in the example");
    assert!(
        jwt < wasm,
        "jwt_authn must verify tokens before stakeguard reads their claims"
    );
}

/// The hot-reload example passes `envoy --mode validate` too. Its ECDS file is written by
/// `swap-policy.sh` at run time, so the check points the config's watched directory at a
/// scratch one holding the resource the script would write for the bank policy.
#[test]
fn the_hot_reload_example_validates() {
    let root = stakeguard_tests::repo_root();
    let module = stakeguard_tests::filter_wasm().unwrap();
    let ecds = stakeguard_tests::ecds::Ecds::new(&module).unwrap();
    let bank = std::fs::read_to_string(root.join("policies/examples/bank.json")).unwrap();
    std::fs::write(ecds.resource_path(), ecds.resource(&bank).to_string()).unwrap();
    let shipped =
        std::fs::read_to_string(root.join("envoy-examples/hot-reload/envoy.yaml")).unwrap();
    assert!(
        shipped.contains("envoy-examples/hot-reload/ecds"),
        "the example watches its ecds/ directory"
    );
    let config = ecds.dir().join("envoy.yaml");
    let watched = ecds.dir().display().to_string();
    std::fs::write(
        &config,
        shipped.replace("envoy-examples/hot-reload/ecds", &watched),
    )
    .unwrap();
    let output = std::process::Command::new(stakeguard_tests::envoy_binary().unwrap())
        .args(["--mode", "validate", "-l", "warning", "-c"])
        .arg(&config)
        .args(stakeguard_tests::ecds::node_args())
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "envoy --mode validate failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

//! Every kind of validation error, with its exact path and message, and the promise that
//! all of them are reported at once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

mod common;

use common::example;
use serde_json::{Value, json};
use stakeguard_policies::{Policy, PolicyError};

fn errors(doc: &Value) -> Vec<PolicyError> {
    match Policy::from_json(&doc.to_string()) {
        Ok(_) => panic!("the policy was accepted:\n{doc:#}"),
        Err(e) => e.errors,
    }
}

/// The one error of a document, as `path: message; hint`.
fn only_error(doc: &Value) -> String {
    let errors = errors(doc);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    errors[0].to_string()
}

fn base() -> Value {
    json!({
        "revision": "t1",
        "tiers": {
            "critical": {
                "login": { "max_failures": 5, "window": "15m", "lockout": "30m" },
                "rate_limit": { "requests": 60, "per": "1m" }
            }
        },
        "apis": [
            { "name": "login", "version": "v1", "owner": "team-a", "tier": "critical",
              "routes": [ { "path": "/login", "methods": ["POST"] } ],
              "login": { "username": { "json_pointer": "/username" } } },
            { "name": "accounts", "version": "v1", "owner": "team-b", "tier": "critical",
              "routes": [ { "path": "/accounts/{id}" } ] }
        ]
    })
}

#[test]
fn the_examples_are_valid() {
    for name in ["bank", "retailer", "minimal"] {
        if let Err(e) = Policy::from_json(&example(name)) {
            panic!("{name}.json refused:\n{e}");
        }
    }
    assert!(Policy::from_json(&base().to_string()).is_ok());
}

#[test]
fn a_typo_in_a_field_name_is_reported_with_a_suggestion() {
    let mut doc = base();
    doc["tiers"]["critical"]["login"]["windw"] = json!("15m");
    assert_eq!(
        only_error(&doc),
        "tiers.critical.login.windw: unknown field `windw`; did you mean `window`?"
    );
}

#[test]
fn a_field_unlike_any_other_lists_the_fields_there_are() {
    let mut doc = base();
    doc["tiers"]["critical"]["login"]["zzz"] = json!(1);
    assert_eq!(
        only_error(&doc),
        "tiers.critical.login.zzz: unknown field `zzz`; expected one of `mode`, `max_failures`, `window`, `lockout`, `action`, `delay`, `max_delay`, `keys`, `failure_statuses`, `reset_on_success`, `username`, `client_ip`, `spraying`, `body_limit`"
    );
}

#[test]
fn a_mistyped_value_suggests_the_nearest_name() {
    let mut doc = base();
    doc["tiers"]["critical"]["login"]["action"] = json!("blok");
    doc["tiers"]["critical"]["incidents"] =
        json!({ "login_lockuot": "page", "rate_limited": "pager" });
    let errors: Vec<String> = errors(&doc).iter().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        vec![
            "tiers.critical.login.action: unknown value `blok`; did you mean `block`?",
            "tiers.critical.incidents.rate_limited: unknown value `pager`; did you mean `page`?",
            "tiers.critical.incidents.login_lockuot: unknown event `login_lockuot`; did you mean `login_lockout`?",
        ]
    );
}

#[test]
fn unknown_fields_on_apis_and_tiers_suggest_the_nearest_name() {
    let mut doc = base();
    doc["apis"][1]["ownr"] = json!("x");
    doc["tiers"]["critical"]["rate_limt"] = json!({});
    doc["revison"] = json!("x");
    let errors: Vec<String> = errors(&doc).iter().map(ToString::to_string).collect();
    assert!(
        errors.contains(&"apis[1].ownr: unknown field `ownr`; did you mean `owner`?".to_owned()),
        "{errors:#?}"
    );
    assert!(
        errors.contains(
            &"tiers.critical.rate_limt: unknown field `rate_limt`; did you mean `rate_limit`?"
                .to_owned()
        ),
        "{errors:#?}"
    );
    assert!(
        errors.contains(&"revison: unknown field `revison`; did you mean `revision`?".to_owned()),
        "{errors:#?}"
    );
}

#[test]
fn an_unknown_tier_names_the_tiers_there_are() {
    let mut doc = base();
    doc["apis"][1]["tier"] = json!("gold");
    assert_eq!(
        only_error(&doc),
        "apis[1].tier: unknown tier `gold`; expected one of `critical`"
    );
}

#[test]
fn a_duplicate_name_and_version_is_refused() {
    let mut doc = base();
    doc["apis"][1]["name"] = json!("login");
    assert_eq!(
        only_error(&doc),
        "apis[1]: duplicate API `login` version `v1`; it is also apis[0]; give each name and version one entry, with all its routes"
    );
}

#[test]
fn two_routes_that_match_the_same_requests_are_refused() {
    let mut doc = base();
    doc["apis"][1]["routes"] = json!([ { "path": "/accounts/{id}" }, { "path": "/accounts/{account}", "methods": ["GET"] } ]);
    assert_eq!(
        only_error(&doc),
        "apis[1].routes[1]: matches the same requests as apis[1].routes[0] (`/accounts/{account}`); make their hosts, paths or methods differ"
    );
}

#[test]
fn routes_that_differ_by_method_or_host_are_fine() {
    let mut doc = base();
    doc["apis"][1]["routes"] = json!([
        { "path": "/accounts/{id}", "methods": ["GET"] },
        { "path": "/accounts/{id}", "methods": ["DELETE"] },
        { "host": "admin.example.com", "path": "/accounts/{id}" }
    ]);
    assert!(Policy::from_json(&doc.to_string()).is_ok());
}

#[test]
fn zero_and_unreadable_durations_are_refused() {
    let mut doc = base();
    doc["tiers"]["critical"]["login"]["window"] = json!("0s");
    doc["tiers"]["critical"]["login"]["lockout"] = json!("30 minutes");
    let errors: Vec<String> = errors(&doc).iter().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        vec![
            "tiers.critical.login.window: `0s` is zero; a duration must be longer than zero",
            "tiers.critical.login.lockout: `30 minutes` is not a duration; write a whole number and a unit (ms, s, m, h, d), e.g. `30s`, `15m`, `1h30m`",
        ]
    );
}

#[test]
fn a_threshold_of_zero_is_refused() {
    let mut doc = base();
    doc["tiers"]["critical"]["rate_limit"]["requests"] = json!(0);
    assert_eq!(
        only_error(&doc),
        "tiers.critical.rate_limit.requests: is 0; a threshold of 0 would refuse everything; write at least 1"
    );
}

#[test]
fn an_override_is_blamed_on_the_api_that_wrote_it() {
    let mut doc = base();
    doc["apis"][1]["rate_limit"] = json!({ "per": "soon" });
    assert_eq!(
        only_error(&doc),
        "apis[1].rate_limit.per: `soon` is not a duration; write a whole number and a unit (ms, s, m, h, d), e.g. `30s`, `15m`, `1h30m`"
    );
}

#[test]
fn a_missing_field_is_blamed_on_the_block_that_lacks_it() {
    let mut doc = base();
    doc["apis"][1]["session"] = json!({ "idle_timeout": "10m" });
    assert_eq!(
        only_error(&doc),
        "apis[1].session.cookie: missing or not a cookie name; name the session cookie, e.g. `sid` (an API whose `auth` names one cookie credential uses that one)"
    );
}

#[test]
fn sunset_dates_must_be_rfc3339() {
    let mut doc = base();
    doc["apis"][1]["lifecycle"] = json!({ "status": "deprecated", "deprecated_at": "2026-01-01T00:00:00Z", "sunset": "2027-03-31" });
    assert_eq!(
        only_error(&doc),
        "apis[1].lifecycle.sunset: `2027-03-31` is not an RFC 3339 time; write a full date and time with an offset, e.g. `2027-03-31T00:00:00Z`"
    );
}

#[test]
fn a_deprecated_api_needs_its_deprecation_date() {
    let mut doc = base();
    doc["apis"][1]["lifecycle"] = json!({ "status": "deprecated" });
    assert!(
        only_error(&doc)
            .starts_with("apis[1].lifecycle.deprecated_at: missing; a deprecated API needs")
    );
}

#[test]
fn regex_like_paths_are_refused_with_a_hint() {
    let mut doc = base();
    doc["apis"][1]["routes"][0]["path"] = json!("/accounts/[0-9]+");
    let error = only_error(&doc);
    assert!(error.starts_with("apis[1].routes[0]: "), "{error}");
    assert!(error.contains("regex"), "{error}");
    assert!(error.contains("{id}"), "{error}");
}

#[test]
fn a_wrong_type_is_reported_at_its_path() {
    let mut doc = base();
    doc["apis"][1]["routes"][0]["methods"] = json!("GET");
    assert_eq!(
        only_error(&doc),
        "apis[1].routes[0].methods: expected a list, found a string"
    );
}

#[test]
fn a_login_api_must_say_where_the_username_is() {
    let mut doc = base();
    doc["apis"][0]["login"] = json!({});
    assert_eq!(
        only_error(&doc),
        "apis[0].login.username: missing; counting failures by username needs `username.json_pointer` or `username.form_field`; or set `keys` to [\"client_ip\"]"
    );
}

#[test]
fn partner_matches_need_exactly_one_way() {
    let mut doc = base();
    doc["partners"] = json!([
        { "name": "a", "match": { "header": "x-p", "equals": "a", "client_cidr": "10.0.0.0/8" } },
        { "name": "b", "match": { "client_cidr": "10.0.0.0/99" } }
    ]);
    let errors: Vec<String> = errors(&doc).iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].starts_with("partners[0].match: needs exactly one of"));
    assert!(
        errors[1].starts_with("partners[1].match.client_cidr: `10.0.0.0/99` is not a CIDR range")
    );
}

#[test]
fn every_mistake_is_reported_at_once() {
    let mut doc = base();
    doc["apis"][0]["tier"] = json!("nope");
    doc["apis"][1]["routes"][0]["path"] = json!("accounts");
    doc["tiers"]["critical"]["rate_limit"]["per"] = json!("0m");
    doc["apis"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "name": "x", "version": "v1", "tier": "critical", "routes": [] }));
    let paths: Vec<String> = errors(&doc).into_iter().map(|e| e.path).collect();
    assert_eq!(
        paths,
        vec![
            "tiers.critical.rate_limit.per",
            "apis[0].tier",
            "apis[1].routes[0]",
            "apis[2].owner"
        ],
    );
}

#[test]
fn text_that_is_not_json_is_refused_with_its_position() {
    let error = Policy::from_json("{ \"revision\": ").unwrap_err();
    assert_eq!(error.errors.len(), 1);
    assert_eq!(error.errors[0].path, "(document)");
    assert!(
        error.errors[0].message.contains("line 1"),
        "{}",
        error.errors[0].message
    );
}

#[test]
fn the_policy_in_the_readme_is_valid() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme
        .find("```json\n")
        .expect("a json block in the README")
        + "```json\n".len();
    let end = start + readme[start..].find("```").unwrap();
    if let Err(e) = Policy::from_json(&readme[start..end]) {
        panic!("the README's policy is refused:\n{e}");
    }
}

#[test]
fn client_ip_thresholds_are_checked_where_written() {
    let mut doc = base();
    doc["tiers"]["critical"]["login"]["client_ip"] =
        json!({ "max_failures": 0, "lockout": "soon" });
    let errors: Vec<String> = errors(&doc).iter().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        vec![
            "tiers.critical.login.client_ip.max_failures: is 0; a threshold of 0 would refuse everything; write at least 1",
            "tiers.critical.login.client_ip.lockout: `soon` is not a duration; write a whole number and a unit (ms, s, m, h, d), e.g. `30s`, `15m`, `1h30m`",
        ]
    );
}

// Settings that would do nothing are refused where they were written -----------------

#[test]
fn client_ip_thresholds_without_the_client_ip_key_are_refused() {
    let mut doc = base();
    doc["tiers"]["critical"]["login"]["client_ip"] = json!({ "max_failures": 10 });
    doc["tiers"]["critical"]["login"]["keys"] = json!(["username"]);
    assert_eq!(
        only_error(&doc),
        "tiers.critical.login.client_ip: sets thresholds for a key that is not counted; add \"client_ip\" to `login.keys`, or remove `login.client_ip`"
    );
    // Written by the API over a tier that counts both keys: blamed on the API.
    let mut doc = base();
    doc["apis"][0]["login"]["keys"] = json!(["username"]);
    doc["apis"][0]["login"]["client_ip"] = json!({ "action": "alert" });
    assert_eq!(
        only_error(&doc),
        "apis[0].login.client_ip: sets thresholds for a key that is not counted; add \"client_ip\" to `login.keys`, or remove `login.client_ip`"
    );
    // A tier's thresholds may serve its other APIs: one API counting only usernames is
    // no mistake of the tier's.
    let mut doc = base();
    doc["tiers"]["critical"]["login"]["client_ip"] = json!({ "max_failures": 10 });
    doc["apis"][0]["login"]["keys"] = json!(["username"]);
    assert!(Policy::from_json(&doc.to_string()).is_ok());
}

#[test]
fn delay_settings_without_a_delaying_key_are_refused() {
    let mut doc = base();
    doc["tiers"]["critical"]["login"]["delay"] = json!("1s");
    assert_eq!(
        only_error(&doc),
        "tiers.critical.login.delay: has no effect: no key of this login uses the `delay` action; set `action` (or `client_ip.action`) to `delay`, or remove it"
    );
    doc["tiers"]["critical"]["login"]["client_ip"] = json!({ "action": "delay" });
    assert!(Policy::from_json(&doc.to_string()).is_ok());
}

#[test]
fn a_spraying_lockout_with_the_alert_action_is_refused() {
    let mut doc = base();
    doc["tiers"]["critical"]["login"]["spraying"] =
        json!({ "max_usernames": 5, "window": "15m", "lockout": "1h" });
    assert_eq!(
        only_error(&doc),
        "tiers.critical.login.spraying.lockout: has no effect with the `alert` action; remove it, or set `action` to `block` or `delay`"
    );
    doc["tiers"]["critical"]["login"]["spraying"]["action"] = json!("block");
    assert!(Policy::from_json(&doc.to_string()).is_ok());
    doc["tiers"]["critical"]["login"]["spraying"]["max_usernames"] = json!(40);
    assert_eq!(
        only_error(&doc),
        "tiers.critical.login.spraying.max_usernames: 40 is out of range; write between 2 and 32 usernames"
    );
}

#[test]
fn the_cookie_header_is_not_a_credential_but_a_named_cookie_is() {
    let mut doc = base();
    doc["tiers"]["critical"]["auth"] = json!({ "required": ["cookie"] });
    assert_eq!(
        only_error(&doc),
        "tiers.critical.auth.required[0]: the `cookie` header passes with any cookie at all; name the cookie that is the credential, e.g. {\"cookie\": \"sid\"}"
    );
    doc["tiers"]["critical"]["auth"] = json!({ "any_of": ["authorization", { "cookie": "sid" }] });
    assert!(Policy::from_json(&doc.to_string()).is_ok());
    doc["tiers"]["critical"]["auth"] = json!({ "any_of": [{ "cookie": "sid", "header": "x" }] });
    let errors: Vec<String> = errors(&doc).iter().map(ToString::to_string).collect();
    assert_eq!(
        errors.first().map(String::as_str),
        Some(
            "tiers.critical.auth.any_of[0]: needs exactly one of `header` and `cookie`; e.g. {\"cookie\": \"sid\"} or {\"header\": \"authorization\"}"
        ),
        "{errors:#?}"
    );
    doc["tiers"]["critical"]["auth"] = json!({ "required": [] });
    assert_eq!(
        only_error(&doc),
        "tiers.critical.auth: names no credential; list what a request must carry in `required` (all of them) or `any_of` (one of them), e.g. [\"authorization\", {\"cookie\": \"sid\"}]"
    );
    doc["tiers"]["critical"]["auth"] = json!({ "any_of": ["authorization"] });
    assert_eq!(
        only_error(&doc),
        "tiers.critical.auth.any_of: has one alternative; list two or more, or move it to `required`"
    );
}

#[test]
fn a_session_takes_its_cookie_from_the_cookie_credential() {
    let mut doc = base();
    doc["tiers"]["critical"]["session"] = json!({ "idle_timeout": "10m" });
    assert_eq!(
        only_error(&doc),
        "tiers.critical.session.cookie: missing or not a cookie name; name the session cookie, e.g. `sid` (an API whose `auth` names one cookie credential uses that one)"
    );
    doc["tiers"]["critical"]["auth"] = json!({ "any_of": ["authorization", { "cookie": "sid" }] });
    assert!(Policy::from_json(&doc.to_string()).is_ok());
}

// Defaults under every tier --------------------------------------------------------------

#[test]
fn a_mistake_in_the_defaults_is_reported_once_at_the_defaults() {
    let mut doc = base();
    doc["defaults"] =
        json!({ "response": { "strip": ["server"], "headers": { "x-a": "b\u{1}" } } });
    doc["tiers"]["other"] = json!({ "mode": "monitor" });
    let errors: Vec<String> = errors(&doc).iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with("defaults.response.headers.x-a:"),
        "{errors:#?}"
    );
    doc["defaults"] = json!({ "respons": {} });
    assert!(
        only_error(&doc)
            .starts_with("defaults.respons: unknown field `respons`; did you mean `response`?"),
        "{}",
        only_error(&doc)
    );
}

#[test]
fn a_missing_field_under_the_defaults_is_blamed_on_the_tier_that_lacks_it() {
    let mut doc = base();
    doc["defaults"] = json!({ "rate_limit": { "per": "1m" } });
    doc["tiers"]["other"] = json!({ "mode": "monitor" });
    let errors: Vec<String> = errors(&doc).iter().map(ToString::to_string).collect();
    assert!(
        errors.contains(
            &"defaults.rate_limit.requests: missing; write a number of at least 1".to_owned()
        ),
        "{errors:#?}"
    );
}

#[test]
fn a_tier_login_that_no_api_takes_up_is_refused() {
    let mut doc = base();
    doc["apis"][0].as_object_mut().unwrap().remove("login");
    assert_eq!(
        only_error(&doc),
        "tiers.critical.login: applies to no API of this tier; login applies only to APIs with a `login` block of their own: add one (it may be `{}` with the username's place) to the sign-in APIs, or remove this"
    );
    let mut doc = base();
    doc["defaults"] = json!({ "login": { "max_failures": 3 } });
    doc["tiers"]["critical"]
        .as_object_mut()
        .unwrap()
        .remove("login");
    doc["tiers"]["critical"]["login"] = json!({ "window": "15m", "lockout": "30m" });
    assert!(Policy::from_json(&doc.to_string()).is_ok());
    doc["apis"][0].as_object_mut().unwrap().remove("login");
    let errors: Vec<String> = errors(&doc).iter().map(|e| e.path.clone()).collect();
    assert_eq!(errors, vec!["tiers.critical.login", "defaults.login"]);
}

#[test]
fn keys_no_request_can_have_are_refused() {
    // No `identity.user` in the base document, and no partners.
    let mut doc = base();
    doc["tiers"]["critical"]["rate_limit"]["key"] = json!("user");
    assert_eq!(
        only_error(&doc),
        "tiers.critical.rate_limit.key: counts by `user`, but `identity.user` names no source: every request would be counted by its client address; add a source under `identity.user` (a header your authenticating proxy sets, a cookie or a `jwt_claim`), or count by `client_ip`"
    );
    doc["identity"] = json!({ "user": [{ "header": "x-user-id" }] });
    assert!(Policy::from_json(&doc.to_string()).is_ok());
    doc["apis"][1]["rate_limit"] = json!({ "key": "partner" });
    assert_eq!(
        only_error(&doc),
        "apis[1].rate_limit.key: counts by `partner`, but the policy has no `partners`: every request would be counted by its client address; define the partners under `partners`, or count by `client_ip`"
    );
    let mut doc = base();
    doc["apis"][1]["ownership"] = json!({ "bind": [{ "param": "id", "to": "user" }] });
    assert!(only_error(&doc).starts_with("apis[1].ownership.bind: binds a parameter `to: user`"));
}

#[test]
fn a_quota_on_methods_no_route_accepts_and_an_unused_username_are_refused() {
    let mut doc = base();
    doc["apis"][0]["quotas"] =
        json!([{ "limit": 3, "per": "1d", "key": "client_ip", "methods": ["GET"] }]);
    assert_eq!(
        only_error(&doc),
        "apis[0].quotas[0].methods: names no method a route of this API accepts: the quota would never count; list methods of the API's routes, e.g. [\"POST\"]"
    );
    let mut doc = base();
    doc["apis"][0]["login"]["keys"] = json!(["client_ip"]);
    assert_eq!(
        only_error(&doc),
        "apis[0].login.username: has no effect: this login counts no username; add \"username\" to `login.keys` (or set up `login.spraying`), or remove it"
    );
}

#[test]
fn a_longest_delay_shorter_than_the_first_is_refused() {
    let mut doc = base();
    doc["tiers"]["critical"]["login"]["action"] = json!("delay");
    doc["tiers"]["critical"]["login"]["delay"] = json!("500ms");
    doc["tiers"]["critical"]["login"]["max_delay"] = json!("100ms");
    assert_eq!(
        only_error(&doc),
        "tiers.critical.login.max_delay: is shorter than `delay`; the longest delay caps the growing one: write at least the first delay"
    );
}

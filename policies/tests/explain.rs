//! `explain`: every API's effective controls in business words, with the blocks that
//! wrote them (the defaults, the tier, the API).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

mod common;

use common::example;
use stakeguard_policies::explain::explain;

/// The block of one API: from its heading to the next blank line.
fn block<'a>(text: &'a str, heading: &str) -> &'a str {
    let start = text
        .find(&format!("\n{heading}:"))
        .unwrap_or_else(|| panic!("no `{heading}` in\n{text}"));
    let rest = &text[start + 1..];
    &rest[..rest.find("\n\n").unwrap_or(rest.len())]
}

#[test]
fn the_bank_is_explained_api_by_api_in_business_words() {
    let text = explain(&example("bank")).unwrap();
    assert!(text.starts_with("policy bank-2026-11-29.1: 7 APIs; tiers critical, standard\n"));
    let login = block(&text, "login v2");
    assert!(
        login.contains("failed-login lockout (enforce) [tier critical + this API]: a username with 5 failures within 15m is locked out for 30m: block (429 with Retry-After); a client address with 10 failures within 15m is locked out for 1h: block"),
        "{login}"
    );
    assert!(
        login.contains("a success clears the username's count"),
        "{login}"
    );
    let transfers = block(&text, "transfers v2");
    assert!(
        transfers.contains("business-flow quota (enforce) [this API]: 5 per user per 1d, counting requests answered with 2xx, then block (429 with Retry-After)"),
        "{transfers}"
    );
    let old = block(&text, "accounts v1");
    assert!(
        old.contains("deprecated (enforce): answers carry Deprecation and Sunset headers pointing to /api/v2/accounts"),
        "{old}"
    );
}

#[test]
fn the_defaults_show_where_they_reach() {
    let mut doc: serde_json::Value = serde_json::from_str(&example("bank")).unwrap();
    doc["defaults"] = serde_json::json!({
        "response": { "headers": { "x-frame-options": "DENY" } },
        "incidents": { "password_spraying": "page" }
    });
    let text = explain(&doc.to_string()).unwrap();
    assert!(
        text.contains("tiers critical, standard, each over `defaults`"),
        "{text}"
    );
    let rates = block(&text, "rates v1");
    assert!(
        rates.contains("response hardening (enforce) [defaults + tier standard]: sets x-frame-options when missing; removes server, x-powered-by"),
        "{rates}"
    );
    assert!(
        rates.contains("incidents [defaults]: password_spraying → page"),
        "{rates}"
    );
    let accounts = block(&text, "accounts v2");
    assert!(
        accounts.contains("response hardening (enforce) [defaults + tier critical]: cookies get Secure, HttpOnly, SameSite=Strict; sets x-frame-options, cache-control, strict-transport-security, x-content-type-options when missing"),
        "{accounts}"
    );
}

#[test]
fn a_refused_policy_is_not_explained() {
    let errors = explain(r#"{"revision": "1", "tiers": {}, "apis": [{}]}"#).unwrap_err();
    assert!(
        errors.errors.iter().any(|e| e.path == "apis[0].name"),
        "{errors}"
    );
}

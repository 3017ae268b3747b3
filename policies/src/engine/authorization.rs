//! Who may do what: function-level authorization by bearer-token claims (OWASP API5)
//! and object ownership, route parameters bound to the caller (OWASP API1).
//!
//! Claims come from the bearer token's payload without a signature check: Envoy's
//! `jwt_authn` filter must run before stakeguard (see `envoy-examples/`), so that only
//! verified tokens reach these rules. The payload is decoded once per request, and only
//! for APIs that have such rules.

use crate::decision::{Control, EventKind, Mode, Verdict};
use crate::identity;
use crate::json::RawJson;
use crate::path::decode_segment;
use crate::policy::{BindingTarget, ClaimRule, ClaimTest};

use super::reply::error_reply;
use super::{Context, Stream};

/// Whether any value of a claim (each item of a list, or the claim itself) passes
/// `test`.
fn any_value(claim: RawJson<'_>, test: impl Fn(&str) -> bool) -> bool {
    if claim.is_array() {
        claim
            .items()
            .any(|item| item.as_text().is_some_and(|text| test(&text)))
    } else {
        claim.as_text().is_some_and(|text| test(&text))
    }
}

/// Whether the claims hold a rule.
fn holds(rule: &ClaimRule, claims: RawJson<'_>) -> bool {
    let Some(value) = claims.get(&rule.claim) else {
        return false;
    };
    match &rule.test {
        ClaimTest::OneOf(allowed) => any_value(value, |v| allowed.iter().any(|a| a == v)),
        // OAuth writes scopes as one space-separated string.
        ClaimTest::Contains(wanted) if value.is_string() => value
            .as_text()
            .is_some_and(|text| text.split_whitespace().any(|w| w == wanted)),
        ClaimTest::Contains(wanted) => any_value(value, |v| v == wanted),
        ClaimTest::Equals(wanted) => value.as_text().as_deref() == Some(wanted.as_str()),
    }
}

/// The API's and the route's claim rules: 401 without a token, 403 when one fails.
pub(super) fn check_claims(stream: &mut Stream, cx: &Context<'_, '_>) -> Option<Verdict> {
    let api_rules = cx.api.controls.claims.as_ref();
    let route_rules = cx
        .api
        .route_claims
        .get(cx.route)
        .map_or(&[][..], Vec::as_slice);
    if (api_rules.is_none() && route_rules.is_empty()) || cx.exempt(Control::Claims) {
        return None;
    }
    let mode = api_rules.map_or(cx.api.controls.default_mode, |c| c.mode);
    if mode == Mode::Off {
        return None;
    }
    let reference = cx.reference();
    let Some(claims) = cx.claims() else {
        return stream.block(
            cx.api,
            EventKind::TokenMissing,
            Control::Claims,
            mode,
            stream.client,
            || {
                error_reply(
                    401,
                    "token_missing",
                    "this function needs a bearer token",
                    reference,
                    vec![("www-authenticate".to_owned(), "Bearer".to_owned())],
                )
            },
        );
    };
    let rules = api_rules.map_or(&[][..], |c| c.require.as_slice());
    if rules
        .iter()
        .chain(route_rules)
        .all(|rule| holds(rule, claims))
    {
        return None;
    }
    stream.block(
        cx.api,
        EventKind::ClaimsInsufficient,
        Control::Claims,
        mode,
        stream.client,
        || {
            error_reply(
                403,
                "insufficient_claims",
                "the token does not allow this function",
                reference,
                vec![(
                    "www-authenticate".to_owned(),
                    "Bearer error=\"insufficient_scope\"".to_owned(),
                )],
            )
        },
    )
}

/// Route parameters bound to the caller: 403 when one names another caller's object.
pub(super) fn check_ownership(stream: &mut Stream, cx: &Context<'_, '_>) -> Option<Verdict> {
    let ownership = cx.api.controls.ownership.as_ref()?;
    let request = cx.request?;
    if cx.exempt(Control::Ownership) {
        return None;
    }
    let owned = ownership.bindings.iter().all(|binding| {
        // A route without the parameter has nothing to bind.
        let Some(raw) = cx.param(&binding.param) else {
            return true;
        };
        let Some(segment) = decode_segment(raw) else {
            return false;
        };
        match &binding.target {
            BindingTarget::User => {
                identity::user(request, &cx.policy.identity).is_some_and(|user| *user == *segment)
            }
            BindingTarget::Claim(claim) => cx
                .claims()
                .and_then(|c| c.get(claim))
                .is_some_and(|value| any_value(value, |v| v == segment)),
        }
    });
    // The bypass is looked at only when a binding fails: most routes of an API bind
    // nothing (`/accounts` beside `/accounts/{id}`) and then need no token read at all.
    let bypassed = || {
        ownership
            .bypass
            .as_ref()
            .is_some_and(|bypass| cx.claims().is_some_and(|claims| holds(bypass, claims)))
    };
    if owned || bypassed() {
        return None;
    }
    let reference = request.reference;
    stream.block(
        cx.api,
        EventKind::ObjectNotOwned,
        Control::Ownership,
        ownership.mode,
        stream.client,
        || {
            error_reply(
                403,
                "object_not_owned",
                "this object belongs to someone else",
                reference,
                Vec::new(),
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(claim: &str, test: ClaimTest) -> ClaimRule {
        ClaimRule {
            claim: claim.into(),
            test,
        }
    }

    #[test]
    fn claim_rules_read_strings_lists_and_scopes() {
        let claims = RawJson::parse_bytes(
            br#"{"role":"admin","roles":["a","support"],"scope":"read transfers:write","n":7}"#,
        )
        .unwrap();
        assert!(holds(
            &rule("role", ClaimTest::OneOf(vec!["admin".into()])),
            claims
        ));
        assert!(holds(
            &rule("roles", ClaimTest::OneOf(vec!["support".into()])),
            claims
        ));
        assert!(holds(
            &rule("scope", ClaimTest::Contains("transfers:write".into())),
            claims
        ));
        assert!(!holds(
            &rule("scope", ClaimTest::Contains("transfers".into())),
            claims
        ));
        assert!(holds(
            &rule("roles", ClaimTest::Contains("a".into())),
            claims
        ));
        assert!(holds(&rule("n", ClaimTest::Equals("7".into())), claims));
        assert!(!holds(
            &rule("missing", ClaimTest::Equals("7".into())),
            claims
        ));
    }
}

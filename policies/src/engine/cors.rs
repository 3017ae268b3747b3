//! Cross-origin requests (OWASP API8, security misconfiguration).
//!
//! Preflights (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) are answered
//! here, for the route the real request would take, without bothering the upstream.
//! Real cross-origin requests from allowed origins get the CORS response headers (set,
//! so an upstream that reflects any `Origin`, or says `*` with credentials, is
//! overruled); from other origins they are refused before the upstream sees them
//! (enforce) or reported (monitor).

use crate::decision::{Control, EventKind, HeaderChange, Mode, Verdict};
use crate::policy::{Api, Cors, OriginPattern};
use crate::request::Request;

use super::reply::error_reply;
use super::{Context, Stream};

/// Whether the policy lets this origin call the API.
fn allowed(cors: &Cors, origin: &str) -> bool {
    let origin = origin.to_ascii_lowercase();
    cors.any_origin
        || cors.origins.iter().any(|pattern| match pattern {
            OriginPattern::Exact(exact) => *exact == origin,
            OriginPattern::Subdomains { scheme, suffix } => origin
                .strip_prefix(scheme.as_str())
                .and_then(|rest| rest.strip_prefix("://"))
                .is_some_and(|host| {
                    let host = host.split(':').next().unwrap_or(host);
                    host.len() > suffix.len() && host.ends_with(suffix.as_str())
                }),
        })
}

/// The `Access-Control-Allow-Origin` value: the origin itself, or `*` for any origin
/// without credentials.
fn allow_origin(cors: &Cors, origin: &str) -> String {
    if cors.any_origin && !cors.credentials && cors.origins.is_empty() {
        "*".to_owned()
    } else {
        origin.to_owned()
    }
}

/// Whether a request is a CORS preflight.
pub(super) fn is_preflight(request: &Request<'_>) -> bool {
    request.method.eq_ignore_ascii_case("OPTIONS")
        && request.headers.get("origin").is_some()
        && request
            .headers
            .get("access-control-request-method")
            .is_some()
}

/// Answers a preflight for an API with a CORS policy; `None` when the API has none (the
/// preflight then goes its ordinary way).
pub(super) fn preflight(
    stream: &mut Stream,
    cx: &Context<'_, '_>,
    method_served: bool,
) -> Option<Verdict> {
    let cors = cx.api.controls.cors.as_ref()?;
    let request = cx.request?;
    let origin = request.headers.get("origin").unwrap_or("");
    let method = request
        .headers
        .get("access-control-request-method")
        .unwrap_or("");
    let method_allowed = method_served
        && cors
            .methods
            .as_deref()
            .is_none_or(|list| list.split(", ").any(|m| m.eq_ignore_ascii_case(method)));
    if cx.exempt(Control::Cors) || (allowed(cors, origin) && method_allowed) {
        let mut headers = allow_headers(cors, origin);
        let methods = cors.methods.clone().unwrap_or_else(|| method.to_owned());
        headers.push(("access-control-allow-methods".to_owned(), methods));
        if let Some(allow) = &cors.headers {
            headers.push(("access-control-allow-headers".to_owned(), allow.clone()));
        }
        if let Some(age) = &cors.max_age {
            headers.push(("access-control-max-age".to_owned(), age.clone()));
        }
        return Some(Verdict::Reply(crate::decision::LocalReply {
            status: 204,
            headers,
            body: String::new(),
        }));
    }
    // In monitor mode the preflight goes to the upstream as it would without stakeguard.
    Some(
        refuse(
            stream,
            cx,
            cors,
            "this origin or method may not call this API",
        )
        .unwrap_or(Verdict::Continue),
    )
}

/// Refuses a cross-origin request (enforce) or reports it (monitor).
fn refuse(
    stream: &mut Stream,
    cx: &Context<'_, '_>,
    cors: &Cors,
    message: &str,
) -> Option<Verdict> {
    let reference = cx.reference();
    stream.block(
        cx.api,
        EventKind::CorsOriginRefused,
        Control::Cors,
        cors.mode,
        stream.client,
        || error_reply(403, "cors_refused", message, reference, Vec::new()),
    )
}

/// A real request: remembers an allowed origin for the response, refuses another.
pub(super) fn check(stream: &mut Stream, cx: &Context<'_, '_>) -> Option<Verdict> {
    let cors = cx.api.controls.cors.as_ref()?;
    let request = cx.request?;
    let origin = request.headers.get("origin")?;
    if cx.exempt(Control::Cors) || allowed(cors, origin) {
        stream.wants_response = true;
        stream.cors_origin = Some(origin.to_owned());
        return None;
    }
    refuse(stream, cx, cors, "this origin may not call this API")
}

/// The headers every answer to an allowed origin carries, preflight or not.
fn allow_headers(cors: &Cors, origin: &str) -> Vec<(String, String)> {
    let mut headers = vec![
        (
            "access-control-allow-origin".to_owned(),
            allow_origin(cors, origin),
        ),
        ("vary".to_owned(), "Origin".to_owned()),
    ];
    if cors.credentials {
        headers.push((
            "access-control-allow-credentials".to_owned(),
            "true".to_owned(),
        ));
    }
    headers
}

/// The most headers [`respond`] sets: allow-origin, vary, allow-credentials and
/// expose-headers.
pub(super) const MOST_CHANGES: usize = 4;

/// On the response: the CORS headers for an allowed origin (set, overruling the
/// upstream's own).
pub(super) fn respond(stream: &Stream, api: &Api, changes: &mut Vec<HeaderChange>) {
    let (Some(cors), Some(origin)) = (api.controls.cors.as_ref(), stream.cors_origin.as_ref())
    else {
        return;
    };
    if cors.mode != Mode::Enforce {
        return;
    }
    let mut headers = allow_headers(cors, origin);
    if let Some(expose) = &cors.expose {
        headers.push(("access-control-expose-headers".to_owned(), expose.clone()));
    }
    changes.extend(
        headers
            .into_iter()
            .map(|(name, value)| HeaderChange::Set(name.into(), value.into())),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: Vec<OriginPattern>, any: bool) -> Cors {
        Cors {
            mode: Mode::Enforce,
            any_origin: any,
            origins,
            methods: None,
            headers: None,
            expose: None,
            credentials: false,
            max_age: None,
        }
    }

    #[test]
    fn origins_match_exactly_or_by_subdomain_never_by_suffix_alone() {
        let c = cors(
            vec![
                OriginPattern::Exact("https://app.bank.example".into()),
                OriginPattern::Subdomains {
                    scheme: "https".into(),
                    suffix: ".bank.example".into(),
                },
            ],
            false,
        );
        assert!(allowed(&c, "https://app.bank.example"));
        assert!(allowed(&c, "HTTPS://App.Bank.Example"));
        assert!(allowed(&c, "https://eu.bank.example:8443"));
        assert!(!allowed(&c, "https://evilbank.example"));
        assert!(!allowed(&c, "https://bank.example.evil.com"));
        assert!(!allowed(&c, "http://eu.bank.example"));
        assert!(!allowed(&c, "null"));
    }

    #[test]
    fn any_origin_without_credentials_answers_a_star() {
        let c = cors(vec![], true);
        assert_eq!(allow_origin(&c, "https://x.example"), "*");
    }
}

//! Controls counted in a rate limit service the fleet shares (`counters`), through
//! Envoy's RLS v3 API.
//!
//! While the controls walk a request, a service-counted one does not touch shared data:
//! it notes what it asks ([`Asked`]), and once the walk (and the body, when the login
//! username is in it) is done, the stream's questions go out in one `ShouldRateLimit`
//! call, whose answer the controls then act on. Each question is one descriptor:
//!
//! - `("api", "NAME@VERSION")`, `("control", CONTROL)`, `("key", DIGEST)`: the key is the
//!   hex of the 64-bit digest the local tables use, never a username, address or token;
//! - `limit`: the control's limit and window, when the service takes limits in the
//!   request (`counters.service.limits: request`);
//! - `hits_addend`: what the descriptor adds. A rate limit adds 1 on the request. Login
//!   failures and quotas counted on success are outcomes, known on the response: the
//!   request asks with 0 ("over already?") and the response adds 1 in a second call
//!   (the response is held for it, so a lockout's incident is raised on the failure
//!   that caused it). A service answers OVER_LIMIT when the count after the hits is over
//!   the limit, so an outcome's descriptor carries its threshold minus one: 5 failures
//!   lock out a username, the limit sent is 4, and the 5th failure is over.
//!
//! A timeout, an unreachable service or an answer that is no `RateLimitResponse` follow
//! the service's `failure_mode`: 503, or through with a `store_failure` incident.

use crate::decision::{ApiId, EventKind, HeaderChange, Mode, ServiceCall, Severity, Verdict};
use crate::policy::{Api, CounterService};
use crate::rls::{self, Code, Descriptor, Unit};

use super::reply::retry_after_seconds;
use super::{Context, Stream, login, quota, rate_limit};

/// A control counted in the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counted {
    RateLimit,
    LoginUsername,
    LoginClientIp,
    /// A quota, by index in the API's quotas.
    Quota(usize),
}

/// One question of a stream to the service: one descriptor of its call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Asked {
    pub(crate) control: Counted,
    pub(crate) key: u64,
    pub(crate) limit: u32,
    pub(crate) window_ms: u64,
    pub(crate) hits: u64,
}

/// The descriptor's `control` entry.
fn control_name(api: &Api, counted: Counted) -> &str {
    match counted {
        Counted::RateLimit => "rate_limit",
        Counted::LoginUsername => "login_username",
        Counted::LoginClientIp => "login_client_ip",
        Counted::Quota(i) => api
            .controls
            .quotas
            .get(i)
            .map_or("quota", |q| q.name.as_str()),
    }
}

/// The `api` entry of an API's descriptors.
pub(crate) fn api_entry(api: &Api) -> String {
    format!("{}@{}", api.info.name, api.info.version)
}

/// The `control` entry of a quota's descriptors.
pub(crate) fn quota_entry(name: &str) -> String {
    format!("quota.{name}")
}

/// Encodes the stream's questions as one call to the API's service.
#[cold]
pub(super) fn call(api: &Api, api_id: ApiId, asked: &[Asked]) -> Option<ServiceCall> {
    let service = api.controls.service.as_ref()?;
    if asked.is_empty() {
        return None;
    }
    let api_name = api_entry(api);
    let mut message = Vec::with_capacity(32 + 96 * asked.len());
    let mut scratch = Vec::new();
    rls::encode_domain(&service.domain, &mut message);
    for question in asked {
        let quota;
        let control = match question.control {
            Counted::Quota(_) => {
                quota = quota_entry(control_name(api, question.control));
                quota.as_str()
            }
            other => control_name(api, other),
        };
        let digits = hex(question.key);
        let key = std::str::from_utf8(&digits).unwrap_or_default();
        let entries = [
            ("api", api_name.as_str()),
            ("control", control),
            ("key", key),
        ];
        let descriptor = Descriptor {
            entries: &entries,
            limit: Unit::of_window(question.window_ms)
                .filter(|_| service.limits_in_request)
                .map(|unit| (question.limit, unit)),
            hits: question.hits,
        };
        rls::encode_descriptor(&descriptor, &mut message, &mut scratch);
    }
    Some(ServiceCall {
        api: api_id,
        message,
    })
}

/// A key digest as 16 lowercase hex digits.
fn hex(key: u64) -> [u8; 16] {
    let mut digits = [b'0'; 16];
    for (i, digit) in digits.iter_mut().enumerate() {
        let nibble = (key >> (60 - 4 * i)) & 0xf;
        *digit = b"0123456789abcdef"
            .get(usize::try_from(nibble).unwrap_or(0))
            .copied()
            .unwrap_or(b'0');
    }
    digits
}

/// The service failed (timeout, unreachable, nonsense): its `failure_mode` decides. On
/// the response (`late`) nothing can be refused any more.
#[cold]
fn failed(
    stream: &mut Stream,
    api: &Api,
    service: &CounterService,
    reference: &str,
    late: bool,
) -> Option<Verdict> {
    stream.service_errors += 1;
    let severity = api
        .controls
        .severity(EventKind::StoreFailure)
        .or(Some(Severity::Ticket));
    stream.counting_failed(
        service.fail_open || late,
        severity,
        "counter_service_unavailable",
        reference,
    )
}

/// Whether the service said the `i`-th descriptor is over, and how long until its window
/// resets. Without per-descriptor statuses the overall code stands for each.
fn over(answer: &rls::Answer, i: usize, asked: &Asked, now: u64) -> Option<u64> {
    let status = answer.statuses.get(i);
    let over = status.map_or(answer.overall == Code::OverLimit, |s| {
        s.code == Code::OverLimit
    });
    over.then(|| reset_ms(status, asked, now))
}

/// How long until the descriptor's window resets: as the service says, or else the end
/// of the control's own window.
fn reset_ms(status: Option<&rls::Status>, asked: &Asked, now: u64) -> u64 {
    status.and_then(|s| s.reset_ms).unwrap_or_else(|| {
        let window = asked.window_ms.max(1);
        window - now % window
    })
}

/// Acts on the service's answer to the questions of a request: the first control over
/// its limit acts as it would on a local count. `None` from the host is a failed call.
///
/// The answer's headers (`response_headers_to_add`) go on whatever the client gets: the
/// local reply, or the upstream's response, which also gets `RateLimit-Limit`,
/// `-Remaining` and `-Reset` from the rate limit's status when it is under its limit
/// (enforced only: monitor mode changes nothing a client sees).
#[cold]
pub(super) fn decide(
    stream: &mut Stream,
    cx: &Context<'_, '_>,
    answer: Option<&[u8]>,
    reference: &str,
) -> Option<Verdict> {
    let asked = std::mem::take(&mut stream.asked);
    let service = cx.api.controls.service.as_ref()?;
    let Some(mut answer) = answer
        .and_then(rls::decode_response)
        .filter(|a| a.overall != Code::Unknown)
    else {
        return failed(stream, cx.api, service, reference, false);
    };
    let mut verdict = None;
    let mut headers = Vec::new();
    for (i, question) in asked.iter().enumerate() {
        let Some(wait_ms) = over(&answer, i, question, cx.now) else {
            if question.control == Counted::RateLimit
                && let Some(status) = answer.statuses.get(i)
                && cx
                    .api
                    .controls
                    .rate_limit
                    .as_ref()
                    .is_some_and(|l| l.mode == Mode::Enforce)
            {
                let limit = status
                    .limit
                    .map_or(question.limit, |(requests, _)| requests);
                let reset = retry_after_seconds(reset_ms(Some(status), question, cx.now));
                headers = rate_limit::budget(limit, status.remaining, reset);
            }
            continue;
        };
        verdict = act(stream, cx, question, wait_ms, reference);
        if verdict.is_some() {
            break;
        }
    }
    headers.append(&mut answer.headers);
    match &mut verdict {
        Some(Verdict::Reply(reply)) => reply.headers.append(&mut headers),
        _ if !headers.is_empty() => {
            stream.wants_response = true;
            stream.service_headers = headers;
        }
        _ => {}
    }
    verdict
}

/// A control the service found over its limit, for `wait_ms` more: its action.
fn act(
    stream: &mut Stream,
    cx: &Context<'_, '_>,
    question: &Asked,
    wait_ms: u64,
    reference: &str,
) -> Option<Verdict> {
    match question.control {
        Counted::RateLimit => cx.api.controls.rate_limit.as_ref().and_then(|limit| {
            rate_limit::refuse(stream, cx, limit, question.key, wait_ms, reference)
        }),
        Counted::LoginUsername | Counted::LoginClientIp => {
            stream.login_locked = true;
            let by_ip = question.control == Counted::LoginClientIp;
            cx.api.controls.login.as_ref().and_then(|login| {
                let limits = if by_ip {
                    &login.client_limits
                } else {
                    &login.username_limits
                };
                let failures = u64::from(limits.max_failures);
                login::locked(
                    stream,
                    cx,
                    login,
                    limits,
                    (question.key, failures, wait_ms),
                    reference,
                )
            })
        }
        Counted::Quota(index) => {
            stream.quota_pending.retain(|(q, _)| *q != index);
            cx.api
                .controls
                .quotas
                .get(index)
                .and_then(|q| quota::exceeded(stream, cx, q, question.key, wait_ms, reference))
        }
    }
}

/// The headers the service's answer put on the upstream's response.
pub(super) fn respond(stream: &mut Stream, changes: &mut Vec<HeaderChange>) {
    for (name, value) in std::mem::take(&mut stream.service_headers) {
        changes.push(HeaderChange::Set(name.into(), value.into()));
    }
}

/// Acts on the service's answer to a response's counts: a login failure that took its
/// key over the threshold is the lockout (once: not when the request already found the
/// key locked).
#[cold]
pub(super) fn counted(stream: &mut Stream, cx: &Context<'_, '_>, answer: Option<&[u8]>) {
    let asked = std::mem::take(&mut stream.asked);
    let Some(service) = cx.api.controls.service.as_ref() else {
        return;
    };
    let Some(answer) = answer
        .and_then(rls::decode_response)
        .filter(|a| a.overall != Code::Unknown)
    else {
        failed(stream, cx.api, service, "", true);
        return;
    };
    for (i, question) in asked.iter().enumerate() {
        let is_login = matches!(
            question.control,
            Counted::LoginUsername | Counted::LoginClientIp
        );
        if is_login
            && !stream.login_locked
            && over(&answer, i, question, cx.now).is_some()
            && let Some(login) = cx.api.controls.login.as_ref()
        {
            let limits = if question.control == Counted::LoginClientIp {
                &login.client_limits
            } else {
                &login.username_limits
            };
            login::lockout_event(stream, cx, login, question.key, limits.action);
        }
    }
}

/// A limit the rate limit service applies to one control of one API: what
/// `stakeguard ratelimit-config` writes for services that read limits from their
/// configuration, and what the harness's service applies when a request carries none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceLimit {
    /// The service's Envoy cluster.
    pub cluster: String,
    /// The rate limit domain.
    pub domain: String,
    /// The descriptors' `api` entry (`NAME@VERSION`).
    pub api: String,
    /// The descriptors' `control` entry.
    pub control: String,
    /// The limit as the service sees it: hits allowed per window (an outcome's threshold
    /// minus one, see this module's documentation).
    pub requests: u32,
    /// The window.
    pub window_ms: u64,
    /// What is counted, in words, for the generated file's comments.
    pub counts: String,
}

impl crate::Policy {
    /// Every limit the policy's service-counted controls need in their service, API by
    /// API.
    pub fn service_limits(&self) -> Vec<ServiceLimit> {
        let mut out = Vec::new();
        for api in &self.apis {
            let Some(service) = &api.controls.service else {
                continue;
            };
            let mut add = |control: String, requests: u32, window_ms: u64, counts: String| {
                out.push(ServiceLimit {
                    cluster: service.cluster.clone(),
                    domain: service.domain.clone(),
                    api: api_entry(api),
                    control,
                    requests,
                    window_ms,
                    counts,
                });
            };
            if let Some(limit) = api.controls.rate_limit.as_ref().filter(|l| l.by_service) {
                let counts = format!("{} requests per {} ms", limit.requests, limit.per_ms);
                add(
                    "rate_limit".to_owned(),
                    limit.requests,
                    limit.per_ms,
                    counts,
                );
            }
            if let Some(login) = &api.controls.login {
                for (counted, limits, name) in [
                    (login.by_username, &login.username_limits, "login_username"),
                    (login.by_client_ip, &login.client_limits, "login_client_ip"),
                ] {
                    if counted && limits.by_service {
                        let counts = format!(
                            "{} failed logins per {} ms lock the key out",
                            limits.max_failures, limits.window_ms
                        );
                        add(
                            name.to_owned(),
                            limits.max_failures.saturating_sub(1),
                            limits.window_ms,
                            counts,
                        );
                    }
                }
            }
            for quota in api.controls.quotas.iter().filter(|q| q.by_service) {
                let counts = format!(
                    "quota {}: {} per {} ms",
                    quota.name, quota.limit, quota.per_ms
                );
                add(
                    quota_entry(&quota.name),
                    quota.limit.saturating_sub(1),
                    quota.per_ms,
                    counts,
                );
            }
        }
        out
    }
}

//! Quotas on sensitive business flows (OWASP API6): "at most 5 transfers per user per
//! day", keyed by user, client IP or a field of the JSON body.
//!
//! Each key's entry counts the flows of its current window (`count`, window start in
//! `stamp`). A request is refused when the quota is used up; it is counted when the
//! upstream answers it: with any status (`count: all`), or with 2xx (`count: success`,
//! so failed attempts do not burn a customer's quota). Either way a request that
//! another control refused never reached the flow and does not count. Counting on the
//! answer lets concurrent requests of one key pass together while the first is in
//! flight: a quota bounds a business flow over hours, not a burst (the rate limit does
//! that).

use crate::decision::{Control, EventKind, Verdict};
use crate::identity;
use crate::json::Json;
use crate::policy::{Quota, QuotaKey};
use crate::request::Response;
use crate::state::{Entry, Table, key_hash, salted};

use super::reply::{error_reply, retry_after_seconds};
use super::service::{Asked, Counted};
use super::{Context, Stream};

/// How much of a body is read to find a quota's key field.
pub(super) const BODY_LIMIT: usize = 65_536;

fn applies(quota: &Quota, method: &str) -> bool {
    quota.methods.is_empty() || quota.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
}

fn live(quota: &Quota, now: u64) -> impl Fn(&Entry) -> bool {
    let per = quota.per_ms;
    move |e: &Entry| e.stamp.saturating_add(per) > now
}

/// On the request headers: quotas keyed by user or client IP.
pub(super) fn check(stream: &mut Stream, cx: &Context<'_, '_>) -> Option<Verdict> {
    let request = cx.request?;
    if cx.api.controls.quotas.is_empty() || cx.exempt(Control::Quota) {
        return None;
    }
    for (index, quota) in cx.api.controls.quotas.iter().enumerate() {
        if !applies(quota, request.method) {
            continue;
        }
        let key = match &quota.key {
            QuotaKey::ClientIp => stream.client.unwrap_or(0),
            QuotaKey::User => identity::user(request, &cx.policy.identity)
                .map_or(stream.client.unwrap_or(0), |user| {
                    key_hash("user", user.as_bytes())
                }),
            QuotaKey::BodyPointer(_) => {
                stream.quota_body = true;
                stream.body_limit = stream.body_limit.max(BODY_LIMIT);
                continue;
            }
        };
        if let Some(verdict) = use_quota(stream, cx, index, quota, key, request.reference) {
            return Some(verdict);
        }
    }
    None
}

/// On the body: quotas keyed by a JSON body field (a body without the field counts
/// under one shared "unknown" key, so leaving it out does not escape the quota).
pub(super) fn check_body(
    stream: &mut Stream,
    cx: &Context<'_, '_>,
    reference: &str,
    body: &[u8],
) -> Option<Verdict> {
    if cx.api.controls.quotas.is_empty() || !stream.quota_body {
        return None;
    }
    let document = Json::parse_bytes(body);
    for (index, quota) in cx.api.controls.quotas.iter().enumerate() {
        let QuotaKey::BodyPointer(pointer) = &quota.key else {
            continue;
        };
        let field = document
            .as_ref()
            .and_then(|d| d.pointer(pointer))
            .and_then(Json::as_text)
            .unwrap_or("");
        let key = key_hash("quota-field", field.as_bytes());
        if let Some(verdict) = use_quota(stream, cx, index, quota, key, reference) {
            return Some(verdict);
        }
    }
    None
}

fn use_quota(
    stream: &mut Stream,
    cx: &Context<'_, '_>,
    index: usize,
    quota: &Quota,
    key: u64,
    reference: &str,
) -> Option<Verdict> {
    let key = salted(salted(key, cx.api_id), index);
    if quota.by_service {
        // Asked with 0 hits now, counted on the answer (the limit minus one: see
        // `service`).
        stream.asked.push(asked(index, quota, key, 0));
        stream.wants_response = true;
        stream.quota_pending.push((index, key));
        return None;
    }
    let now = cx.now;
    let entry = match cx.slots.read(Table::Quota, key, live(quota, now)) {
        Ok(entry) => entry,
        Err(error) => return stream.store_failed(cx, error),
    };
    let used = entry.map_or(0, |e| e.count);
    if used >= u64::from(quota.limit) {
        let wait = entry.map_or(quota.per_ms, |e| {
            e.stamp.saturating_add(quota.per_ms).saturating_sub(now)
        });
        return exceeded(stream, cx, quota, key, wait, reference);
    }
    stream.wants_response = true;
    stream.quota_pending.push((index, key));
    None
}

#[inline(never)]
fn asked(index: usize, quota: &Quota, key: u64, hits: u64) -> Asked {
    Asked {
        control: Counted::Quota(index),
        key,
        limit: quota.limit.saturating_sub(1),
        window_ms: quota.per_ms,
        hits,
    }
}

/// A flow whose quota is used up for `wait` more milliseconds: the quota's action.
#[inline(never)]
pub(super) fn exceeded(
    stream: &mut Stream,
    cx: &Context<'_, '_>,
    quota: &Quota,
    key: u64,
    wait: u64,
    reference: &str,
) -> Option<Verdict> {
    let seconds = retry_after_seconds(wait);
    stream.act(
        cx,
        EventKind::QuotaExceeded,
        Control::Quota,
        quota.mode,
        quota.action,
        Some(key),
        0,
        || {
            error_reply(
                429,
                "quota_exceeded",
                "this flow has reached its quota; retry later",
                reference,
                vec![("retry-after".to_owned(), seconds.to_string())],
            )
        },
    )
}

fn count(stream: &mut Stream, cx: &Context<'_, '_>, quota: &Quota, key: u64) {
    let now = cx.now;
    let result = cx
        .slots
        .update(Table::Quota, key, live(quota, now), |current| {
            let mut entry = current.unwrap_or(Entry {
                key,
                count: 0,
                stamp: now,
                until: 0,
            });
            entry.count += 1;
            entry
        });
    match result {
        Ok(updated) => stream.note(&updated),
        Err(error) => stream.store_failed_late(cx, error),
    }
}

/// On the upstream's response: the flows it answered are counted (only with 2xx for
/// `count: success`).
pub(super) fn count_answered(stream: &mut Stream, cx: &Context<'_, '_>, response: &Response<'_>) {
    let pending = std::mem::take(&mut stream.quota_pending);
    let success = (200..300).contains(&response.status);
    for (index, key) in pending {
        if let Some(quota) = cx.api.controls.quotas.get(index)
            && (success || !quota.success_only)
        {
            if quota.by_service {
                stream.asked.push(asked(index, quota, key, 1));
            } else {
                count(stream, cx, quota, key);
            }
        }
    }
}

//! Requests per key per window, with a sliding-window estimate.
//!
//! Each key keeps the count of the current fixed window (`count`, window start in
//! `stamp`) and the count of the previous one (`until`). The estimate weighs the previous
//! window by how much of it still overlaps the sliding window, which smooths the burst a
//! plain fixed window allows at its edges, in one 32-byte entry.

use std::cell::Cell;

use crate::decision::{Control, EventKind, Verdict};
use crate::identity;
use crate::model::RateKey;
use crate::state::{Entry, Table, key_hash, salted};

use super::reply::{error_reply, retry_after_seconds};
use super::{Context, Stream};

pub(super) fn check(stream: &mut Stream, cx: &Context<'_, '_>) -> Option<Verdict> {
    let limit = cx.api.controls.rate_limit.as_ref()?;
    let request = cx.request?;
    if cx.exempt(Control::RateLimit) {
        return None;
    }
    let by_client = || stream.client.unwrap_or(0);
    let key = match limit.key {
        RateKey::ClientIp => by_client(),
        RateKey::User => identity::user(request, &cx.policy.identity)
            .map_or_else(by_client, |user| key_hash("user", user.as_bytes())),
        RateKey::Partner => cx
            .partner
            .and_then(|p| cx.policy.partners.get(p))
            .map_or_else(by_client, |partner| {
                key_hash("partner", partner.name.as_bytes())
            }),
        RateKey::Api => key_hash("api", b""),
    };
    // Every API counts separately, even for the same client.
    let key = salted(key, cx.api_id);

    let per = limit.per_ms;
    let now = cx.now;
    let window_start = now - now % per;
    let requests = u64::from(limit.requests);
    let wait = Cell::new(None);
    let live = |e: &Entry| e.stamp.saturating_add(per.saturating_mul(2)) > now;
    let result = cx.slots.update(Table::Rate, key, live, |current| {
        let mut entry = current.unwrap_or_default();
        if entry.stamp != window_start {
            let previous = if entry.stamp.saturating_add(per) == window_start {
                entry.count
            } else {
                0
            };
            entry = Entry {
                key,
                count: 0,
                stamp: window_start,
                until: previous,
            };
        }
        let remaining_of_previous = per - (now - window_start);
        let estimate = entry.until.saturating_mul(remaining_of_previous) / per + entry.count;
        if estimate >= requests {
            wait.set(Some(window_start + per - now));
        } else {
            entry.count += 1;
            wait.set(None);
        }
        entry
    });
    match result {
        Ok(updated) => stream.note(&updated),
        Err(error) => return stream.store_failed(cx, error),
    }
    let wait_ms = wait.get()?;
    let reference = request.reference;
    let seconds = retry_after_seconds(wait_ms);
    stream.act(
        cx,
        EventKind::RateLimited,
        Control::RateLimit,
        limit.mode,
        limit.action,
        Some(key),
        wait_ms,
        || {
            error_reply(
                429,
                "rate_limited",
                "too many requests; retry later",
                reference,
                vec![
                    ("retry-after".to_owned(), seconds.to_string()),
                    ("ratelimit-limit".to_owned(), requests.to_string()),
                    ("ratelimit-remaining".to_owned(), "0".to_owned()),
                    ("ratelimit-reset".to_owned(), seconds.to_string()),
                ],
            )
        },
    )
}

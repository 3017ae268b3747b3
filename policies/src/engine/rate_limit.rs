//! Requests per key per window, with a sliding-window estimate.
//!
//! Each key keeps the count of the current fixed window (`count`, window start in
//! `stamp`) and the count of the previous one (`until`). The estimate weighs the previous
//! window by how much of it still overlaps the sliding window, which smooths the burst a
//! plain fixed window allows at its edges, in one 32-byte entry.
//!
//! Unless the limit asks for `exact` counting, a worker does not write the shared entry on
//! every request: it *reserves* hits (an eighth of what the window has left, 1 to 64,
//! [`crate::worker::reservation_size`]) in one compare-and-swap and hands them out
//! locally. Reserved hits count in the shared entry at once, so all workers together never
//! let through more than the limit. The price is early refusal, never overshoot: hits one
//! worker holds are refused to the others until it uses them, at most an eighth of the
//! remaining budget per worker; hits left unused when a key's entry is taken by another
//! key, or when the window ends, are given back. A key over its limit is refused locally
//! for a sixteenth of the window before the store is asked again, so the deny path costs
//! no store call either (and may refuse up to that long after the estimate has dropped).

use std::cell::Cell;

use crate::decision::{Control, EventKind, Verdict};
use crate::identity;
use crate::model::RateKey;
use crate::policy::RateLimit;
use crate::state::{Entry, Table, Updated, key_hash, salted};
use crate::worker::{Reservation, reservation_size};

use super::reply::{error_reply, retry_after_seconds};
use super::service::{Asked, Counted};
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
    if limit.by_service {
        stream.asked.push(Asked {
            control: Counted::RateLimit,
            key,
            limit: limit.requests,
            window_ms: limit.per_ms,
            hits: 1,
        });
        return None;
    }
    let window = Window::at(cx.now, limit.per_ms);
    let counted = if limit.exact {
        take(cx, limit, key, window, 1, None)
    } else {
        reserved(cx, limit, key, window)
    };
    let wait_ms = match counted {
        Ok(Taken {
            wait_ms, updated, ..
        }) => {
            if let Some(updated) = &updated {
                stream.note(updated);
            }
            wait_ms
        }
        Err(error) => return stream.store_failed(cx, error),
    };
    refuse(stream, cx, limit, key, wait_ms?, request.reference)
}

/// A key over its limit for `wait_ms` more: the limit's action.
#[inline(never)]
pub(super) fn refuse(
    stream: &mut Stream,
    cx: &Context<'_, '_>,
    limit: &RateLimit,
    key: u64,
    wait_ms: u64,
    reference: &str,
) -> Option<Verdict> {
    let requests = limit.requests;
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
                {
                    let mut headers = budget(requests, 0, seconds);
                    headers.push(("retry-after".to_owned(), seconds.to_string()));
                    headers
                },
            )
        },
    )
}

/// `RateLimit-Limit`, `-Remaining` and `-Reset` (seconds): what a client may still send
/// in the window, on a refusal and, counted in a service, on every answer.
pub(super) fn budget(limit: u32, remaining: u32, reset_s: u64) -> Vec<(String, String)> {
    vec![
        ("ratelimit-limit".to_owned(), limit.to_string()),
        ("ratelimit-remaining".to_owned(), remaining.to_string()),
        ("ratelimit-reset".to_owned(), reset_s.to_string()),
    ]
}

/// The fixed window a moment falls in.
#[derive(Debug, Clone, Copy)]
struct Window {
    now: u64,
    start: u64,
    per: u64,
}

impl Window {
    fn at(now: u64, per: u64) -> Self {
        let per = per.max(1);
        Self {
            now,
            start: now - now % per,
            per,
        }
    }

    /// How long until the window ends.
    fn left_ms(&self) -> u64 {
        (self.start + self.per).saturating_sub(self.now)
    }
}

/// What counting a request came to: `wait_ms` is set when the key is over its limit,
/// `granted` is how many hits were taken (this request's included), and `updated` is set
/// when the shared entry was written.
struct Taken {
    wait_ms: Option<u64>,
    granted: u64,
    updated: Option<Updated>,
}

impl Taken {
    fn local(wait_ms: Option<u64>) -> Self {
        Self {
            wait_ms,
            granted: 0,
            updated: None,
        }
    }
}

/// Counts a request from the worker's reservation when it has one for this window, and
/// reserves more from the shared entry when it has not.
fn reserved(
    cx: &Context<'_, '_>,
    limit: &RateLimit,
    key: u64,
    window: Window,
) -> Result<Taken, crate::host::StoreError> {
    let mut table = cx.policy.worker.reservations.borrow_mut();
    let Some(slot) = table.slot(key) else {
        return take(cx, limit, key, window, 1, None);
    };
    let mine = slot.key == key && slot.per_ms == window.per;
    if mine && slot.window_start == window.start && slot.left > 0 {
        slot.left -= 1;
        return Ok(Taken::local(None));
    }
    if mine && slot.refused_until > window.now {
        return Ok(Taken::local(Some(window.left_ms())));
    }
    // Unused hits go back where they were counted: another key's, before its entry is
    // reused (else flooding keys would drain a victim's budget), and this key's from an
    // earlier window, in the same write as the new reservation.
    let earlier = if mine && slot.left > 0 {
        Some((slot.window_start, slot.left))
    } else {
        None
    };
    if !mine && slot.key != 0 && slot.left > 0 {
        // A failure here only leaves the hits counted: early refusal, never overshoot.
        let _ = give_back(cx, *slot);
    }
    let taken = take(cx, limit, key, window, u64::MAX, earlier);
    let refused = matches!(&taken, Ok(t) if t.wait_ms.is_some());
    *slot = Reservation {
        key,
        window_start: window.start,
        per_ms: window.per,
        left: taken.as_ref().map_or(0, |t| t.granted.saturating_sub(1)),
        refused_until: if refused {
            window
                .now
                .saturating_add((window.per / 16).max(1))
                .min(window.start.saturating_add(window.per))
        } else {
            0
        },
    };
    taken
}

/// Counts up to `most` hits in the shared entry (a reservation's worth of what the window
/// has left, see [`reservation_size`]), first giving back `earlier`: hits reserved in an
/// earlier window and not used.
fn take(
    cx: &Context<'_, '_>,
    limit: &RateLimit,
    key: u64,
    window: Window,
    most: u64,
    earlier: Option<(u64, u64)>,
) -> Result<Taken, crate::host::StoreError> {
    let Window { now, start, per } = window;
    let requests = u64::from(limit.requests);
    let wait = Cell::new(None);
    let granted = Cell::new(0);
    let updated = cx
        .slots
        .update(Table::Rate, key, live(now, per), |current| {
            let mut entry = current.unwrap_or_default();
            if let Some((earlier_start, left)) = earlier {
                unreserve(&mut entry, earlier_start, per, left);
            }
            if entry.stamp != start {
                let previous = if entry.stamp.saturating_add(per) == start {
                    entry.count
                } else {
                    0
                };
                entry = Entry {
                    key,
                    count: 0,
                    stamp: start,
                    until: previous,
                };
            }
            let remaining_of_previous = per - (now - start);
            let estimate = entry.until.saturating_mul(remaining_of_previous) / per + entry.count;
            if estimate >= requests {
                wait.set(Some(window.left_ms()));
                granted.set(0);
            } else {
                let hits = reservation_size(requests - estimate).min(most);
                entry.count += hits;
                wait.set(None);
                granted.set(hits);
            }
            entry
        })?;
    Ok(Taken {
        wait_ms: wait.get(),
        granted: granted.get(),
        updated: Some(updated),
    })
}

/// Whether an entry still matters at `now`: it holds the current or the previous window.
fn live(now: u64, per: u64) -> impl Fn(&Entry) -> bool {
    move |e| e.stamp.saturating_add(per.saturating_mul(2)) > now
}

/// Takes `left` unused hits reserved in the window starting at `start` out of `entry`,
/// whether it still counts that window (`count`) or has moved on to the next (`until`).
fn unreserve(entry: &mut Entry, start: u64, per: u64, left: u64) {
    if entry.stamp == start {
        entry.count = entry.count.saturating_sub(left);
    } else if entry.stamp == start.saturating_add(per) {
        entry.until = entry.until.saturating_sub(left);
    }
}

/// Gives a reservation's unused hits back to the shared entry they were taken from.
fn give_back(cx: &Context<'_, '_>, old: Reservation) -> Result<(), crate::host::StoreError> {
    cx.slots
        .update(Table::Rate, old.key, live(cx.now, old.per_ms), |current| {
            let mut entry = current.unwrap_or_default();
            unreserve(&mut entry, old.window_start, old.per_ms, old.left);
            entry
        })
        .map(|_| ())
}

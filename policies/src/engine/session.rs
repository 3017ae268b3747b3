//! Session idle and absolute timeouts, kept at the gateway from the session cookie alone.
//!
//! A session is known by the digest of its cookie value. It starts when the upstream
//! sets the cookie (seen in the response) or, for a cookie issued before the gateway
//! saw it, at its first request. Each entry holds when the session started (`until`),
//! when it was last used (`stamp`) and the client it was first seen from (`count`).
//! Last-use is written only when it moved on by a sixteenth of the idle timeout, so a
//! busy session costs a store write now and then, not on every request; and a worker
//! remembers the sessions it has seen ([`crate::worker`]), so a busy session costs no
//! store read either. Both keep the checks as exact as they were: start and client are
//! fixed for a session's life, and last-use is never later than the truth.
//!
//! This complements, never replaces, session expiry in the application: an entry pushed
//! out of a full slot forgets its session, which then starts over when next seen.

use crate::decision::{Control, EventKind, Verdict};
use crate::identity::cookie;
use crate::request::Response;
use crate::state::{Entry, Table, key_hash};

use super::reply::error_reply;
use super::{Context, Stream};

/// Sessions never expire out of the table by age; a full slot evicts the least
/// recently used entry instead (see [`crate::state`]).
fn live(_: &Entry) -> bool {
    true
}

pub(super) fn check(stream: &mut Stream, cx: &Context<'_, '_>) -> Option<Verdict> {
    let session = cx.api.controls.session.as_ref()?;
    let request = cx.request?;
    if session.mode == crate::decision::Mode::Off || cx.exempt(Control::Session) {
        return None;
    }
    let value = cookie(request.headers, &session.cookie).filter(|v| !v.is_empty())?;
    let key = key_hash("session", value.as_bytes());
    let now = cx.now;
    let client = stream.client.unwrap_or(0);
    let mut views = cx.policy.worker.sessions.borrow_mut();
    let view = views.slot(key);
    // A session this worker has seen recently decides without the store: its start and
    // client never change, and a use within the idle timeout here means it is not idle
    // anywhere. Only a session unknown here, or quiet here for longer than the idle
    // timeout (it may have been used on another worker), is read from the store.
    let known = view.as_deref().copied().filter(|v| {
        v.key == key
            && session
                .idle_ms
                .is_none_or(|idle| now.saturating_sub(v.stamp) <= idle)
    });
    let entry = match known {
        Some(entry) => entry,
        None => match cx.slots.read(Table::Session, key, live) {
            Ok(Some(entry)) => entry,
            Ok(None) => {
                let started = Entry {
                    key,
                    count: client,
                    stamp: now,
                    until: now,
                };
                return record(stream, cx, key, view, started, |_| started);
            }
            Err(error) => return stream.store_failed(cx, error),
        },
    };
    let expired = if session
        .absolute_ms
        .is_some_and(|limit| now.saturating_sub(entry.until) > limit)
    {
        Some(EventKind::SessionAbsoluteTimeout)
    } else if session
        .idle_ms
        .is_some_and(|limit| now.saturating_sub(entry.stamp) > limit)
    {
        Some(EventKind::SessionIdleTimeout)
    } else if session.bind_client_ip && entry.count != 0 && client != 0 && entry.count != client {
        Some(EventKind::SessionHijackSuspected)
    } else {
        None
    };
    if let Some(kind) = expired {
        let reference = request.reference;
        let expire = format!("{}=; Max-Age=0; Path=/; Secure; HttpOnly", session.cookie);
        return stream.block(
            cx.api,
            kind,
            Control::Session,
            session.mode,
            Some(key),
            || {
                error_reply(
                    401,
                    kind.as_str(),
                    "the session has ended; sign in again",
                    reference,
                    vec![("set-cookie".to_owned(), expire)],
                )
            },
        );
    }
    let refresh = session
        .idle_ms
        .map_or(u64::MAX, |idle| (idle / 16).max(1_000));
    if now.saturating_sub(entry.stamp) >= refresh {
        let used = Entry {
            stamp: entry.stamp.max(now),
            ..entry
        };
        return record(stream, cx, key, view, used, |current| {
            let mut updated = current.unwrap_or(entry);
            updated.stamp = updated.stamp.max(now);
            updated
        });
    }
    if let Some(view) = view {
        *view = entry;
    }
    None
}

/// Writes the session's entry with `change` and, once written, remembers it in this
/// worker's `view` as `seen` (a failed write leaves the view alone, so the next request
/// asks the store again).
fn record(
    stream: &mut Stream,
    cx: &Context<'_, '_>,
    key: u64,
    view: Option<&mut Entry>,
    seen: Entry,
    change: impl FnMut(Option<Entry>) -> Entry,
) -> Option<Verdict> {
    match cx.slots.update(Table::Session, key, live, change) {
        Ok(updated) => {
            stream.note(&updated);
            if let Some(view) = view {
                *view = seen;
            }
            None
        }
        Err(error) => stream.store_failed(cx, error),
    }
}

/// A response that sets the session cookie starts a new session.
pub(super) fn observe_issued(stream: &mut Stream, cx: &Context<'_, '_>, response: &Response<'_>) {
    let Some(session) = cx.api.controls.session.as_ref() else {
        return;
    };
    let now = cx.now;
    let client = stream.client.unwrap_or(0);
    response.headers.all_values("set-cookie", &mut |line| {
        let Some((name, rest)) = line.split_once('=') else {
            return true;
        };
        if name.trim() != session.cookie {
            return true;
        }
        let value = rest
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"');
        let clears = rest.to_ascii_lowercase().contains("max-age=0");
        if value.is_empty() || clears {
            return true;
        }
        let key = key_hash("session", value.as_bytes());
        let started = Entry {
            key,
            count: client,
            stamp: now,
            until: now,
        };
        match cx.slots.update(Table::Session, key, live, |_| started) {
            Ok(updated) => {
                stream.note(&updated);
                if let Some(view) = cx.policy.worker.sessions.borrow_mut().slot(key) {
                    *view = started;
                }
            }
            Err(error) => stream.store_failed_late(cx, error),
        }
        true
    });
}

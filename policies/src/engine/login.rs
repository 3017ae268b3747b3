//! Failed-login lockout, keyed by username and by client IP, counted from responses.
//!
//! Whether an attempt failed is only known from the upstream's answer, so failures are
//! counted in [`count`] on the response, and a key is checked for a lockout on the next
//! attempt: the client IP on the request headers, the username once the body is read.
//! Each key's entry holds its failures in the current window (`count`), the window's
//! start (`stamp`) and the end of its lockout (`until`). Usernames are compared without
//! ASCII case and surrounding blanks, so `Alice ` cannot dodge the lockout of `alice`.
//!
//! Password spraying (few tries at each of many usernames from one client, below every
//! username's threshold) is counted per client in the `spray` table: `count` is a 64-bit
//! sketch where each failing username sets one bit, and the number of bits set says how
//! many distinct usernames failed in the window.

use std::borrow::Cow;

use crate::decision::{Action, Control, EventKind, Outcome, Severity, Verdict};
use crate::json::Json;
use crate::policy::{Login, LoginLimits, Spraying, UsernameSource};
use crate::request::Response;
use crate::state::{Entry, Table, key_hash};

use super::reply::{error_reply, retry_after_seconds};
use super::service::{Asked, Counted};
use super::{Context, Stream};

fn live(limits: &LoginLimits, now: u64) -> impl Fn(&Entry) -> bool {
    let window = limits.window_ms;
    move |e: &Entry| e.until > now || e.stamp.saturating_add(window) > now
}

/// On the request headers: refuses a locked-out client IP and asks for the body when
/// the username is counted.
pub(super) fn check(stream: &mut Stream, cx: &Context<'_, '_>) -> Option<Verdict> {
    let login = cx.api.controls.login.as_ref()?;
    if cx.exempt(Control::Login) {
        return None;
    }
    stream.login_attempt = true;
    stream.wants_response = true;
    if let Some(client) = stream.client {
        let spraying_refuses = login
            .spraying
            .is_some_and(|s| s.limits.action != Action::Alert);
        if login.by_client_ip && login.client_limits.by_service {
            ask(
                stream,
                Counted::LoginClientIp,
                &login.client_limits,
                client,
                0,
            );
        }
        for (table, counted) in [
            (
                Table::LoginIp,
                login.by_client_ip && !login.client_limits.by_service,
            ),
            (Table::Spray, spraying_refuses),
        ] {
            if counted
                && let Some(verdict) =
                    refuse_if_locked(stream, cx, login, table, client, cx.reference())
            {
                return Some(verdict);
            }
        }
    }
    if login.by_username && login.username.is_some() {
        stream.body_limit = stream.body_limit.max(login.body_limit);
    }
    None
}

/// On the login body: reads the username and refuses it when it is locked out.
pub(super) fn check_body(
    stream: &mut Stream,
    cx: &Context<'_, '_>,
    reference: &str,
    body: &[u8],
    complete: bool,
) -> Option<Verdict> {
    let login = cx.api.controls.login.as_ref()?;
    if !stream.login_attempt || !login.by_username {
        return None;
    }
    let source = login.username.as_ref()?;
    if !complete {
        stream.raise(
            EventKind::LoginBodyTooLarge,
            Control::Login,
            login.mode,
            Outcome::Logged,
            cx.api.controls.severity(EventKind::LoginBodyTooLarge),
            stream.client,
        );
        return None;
    }
    let username = username(source, body)?;
    let normalized = username.trim().to_ascii_lowercase();
    if normalized.is_empty() {
        return None;
    }
    let key = key_hash("username", normalized.as_bytes());
    stream.username = Some(key);
    if login.username_limits.by_service {
        ask(
            stream,
            Counted::LoginUsername,
            &login.username_limits,
            key,
            0,
        );
        return None;
    }
    refuse_if_locked(stream, cx, login, Table::LoginUser, key, reference)
}

fn refuse_if_locked(
    stream: &mut Stream,
    cx: &Context<'_, '_>,
    login: &Login,
    table: Table,
    key: u64,
    reference: &str,
) -> Option<Verdict> {
    let now = cx.now;
    let limits = login.limits(table);
    let entry = match cx.slots.read(table, key, live(limits, now)) {
        Ok(Some(entry)) if entry.until > now => entry,
        Ok(_) => return None,
        Err(error) => return stream.store_failed(cx, error),
    };
    let wait = entry.until - now;
    // The spray table counts distinct usernames as bits of a sketch.
    let failures = match table {
        Table::Spray => u64::from(entry.count.count_ones()),
        _ => entry.count,
    };
    locked(stream, cx, login, limits, (key, failures, wait), reference)
}

/// Asks the rate limit service about a login key (`hits` 0, on the request) or counts a
/// failure of it there (`hits` 1, on the response). The limit sent is the threshold
/// minus one: the service says over when the count after the hits exceeds the limit.
#[inline(never)]
fn ask(stream: &mut Stream, control: Counted, limits: &LoginLimits, key: u64, hits: u64) {
    stream.asked.push(Asked {
        control,
        key,
        limit: limits.max_failures.saturating_sub(1),
        window_ms: limits.window_ms,
        hits,
    });
}

/// A locked-out key, `(key, failures, wait_ms)`: the key's action, the delay growing
/// with the failures over the threshold.
#[inline(never)]
pub(super) fn locked(
    stream: &mut Stream,
    cx: &Context<'_, '_>,
    login: &Login,
    limits: &LoginLimits,
    (key, failures, wait): (u64, u64, u64),
    reference: &str,
) -> Option<Verdict> {
    let over =
        u32::try_from(failures.saturating_sub(u64::from(limits.max_failures))).unwrap_or(u32::MAX);
    let delay = login
        .delay_ms
        .saturating_mul(2u64.saturating_pow(over.min(32)))
        .min(login.max_delay_ms);
    let seconds = retry_after_seconds(wait);
    stream.act(
        cx,
        EventKind::LoginLocked,
        Control::Login,
        login.mode,
        limits.action,
        Some(key),
        delay,
        || {
            error_reply(
                429,
                "login_locked",
                "too many failed sign-in attempts; try again later",
                reference,
                vec![("retry-after".to_owned(), seconds.to_string())],
            )
        },
    )
}

/// The username from a login body, as the policy says where it is.
fn username<'b>(source: &UsernameSource, body: &'b [u8]) -> Option<Cow<'b, str>> {
    match source {
        UsernameSource::JsonPointer(pointer) => {
            let document = Json::parse_bytes(body)?;
            match document.pointer(pointer)? {
                Json::String(text) | Json::Number(text) => Some(text.clone()),
                _ => None,
            }
        }
        UsernameSource::FormField(field) => {
            let text = std::str::from_utf8(body).ok()?;
            text.split('&').find_map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (form_decode(name)? == *field)
                    .then(|| form_decode(value))
                    .flatten()
            })
        }
    }
}

/// Decodes one `application/x-www-form-urlencoded` component.
fn form_decode(text: &str) -> Option<Cow<'_, str>> {
    if !text.contains(['%', '+']) {
        return Some(Cow::Borrowed(text));
    }
    let mut bytes = Vec::with_capacity(text.len());
    let mut iter = text.bytes();
    while let Some(byte) = iter.next() {
        match byte {
            b'+' => bytes.push(b' '),
            b'%' => {
                let high = char::from(iter.next()?).to_digit(16)?;
                let low = char::from(iter.next()?).to_digit(16)?;
                bytes.push(u8::try_from(high * 16 + low).ok()?);
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).ok().map(Cow::Owned)
}

/// On the response: a failure status counts against the username and the client, a
/// success clears them (when the policy says so).
pub(super) fn count(stream: &mut Stream, cx: &Context<'_, '_>, response: &Response<'_>) {
    if !stream.login_attempt {
        return;
    }
    let Some(login) = cx.api.controls.login.as_ref() else {
        return;
    };
    let now = cx.now;
    let keys = [
        (
            Table::LoginUser,
            stream.username.filter(|_| login.by_username),
        ),
        (Table::LoginIp, stream.client.filter(|_| login.by_client_ip)),
    ];
    if login.failure_statuses.contains(&response.status) {
        let mut locked_now = None;
        for (table, key) in keys {
            let Some(key) = key else {
                continue;
            };
            let limits = login.limits(table);
            if limits.by_service {
                let control = if table == Table::LoginIp {
                    Counted::LoginClientIp
                } else {
                    Counted::LoginUsername
                };
                ask(stream, control, limits, key, 1);
                continue;
            }
            let result = cx.slots.update(table, key, live(limits, now), |current| {
                let mut entry = current.unwrap_or_default();
                if entry.stamp.saturating_add(limits.window_ms) <= now && entry.until <= now {
                    entry = Entry {
                        key,
                        count: 0,
                        stamp: now,
                        until: 0,
                    };
                }
                entry.count += 1;
                if entry.count >= u64::from(limits.max_failures) && entry.until <= now {
                    entry.until = now.saturating_add(limits.lockout_ms);
                }
                entry
            });
            match result {
                Ok(updated) => {
                    stream.note(&updated);
                    if updated.entry.count == u64::from(limits.max_failures) {
                        locked_now = Some((key, limits.action));
                    }
                }
                Err(error) => stream.store_failed_late(cx, error),
            }
        }
        if let (Some(spraying), Some(username), Some(client)) =
            (&login.spraying, stream.username, stream.client)
        {
            count_spraying(stream, cx, login, spraying, username, client);
        }
        let failure_key = stream.username.or(stream.client);
        let severity = cx.api.controls.severity(EventKind::LoginFailure);
        stream.raise(
            EventKind::LoginFailure,
            Control::Login,
            login.mode,
            Outcome::Logged,
            severity,
            failure_key,
        );
        if let Some((key, action)) = locked_now {
            lockout_event(stream, cx, login, key, action);
        }
    } else if (200..300).contains(&response.status) {
        for (table, key) in keys {
            let limits = login.limits(table);
            let Some(key) = key.filter(|_| limits.reset_on_success && !limits.by_service) else {
                continue;
            };
            match cx.slots.read(table, key, live(login.limits(table), now)) {
                Ok(Some(entry)) if entry.count > 0 && entry.until <= now => {
                    match cx
                        .slots
                        .update(table, key, live(login.limits(table), now), |_| Entry {
                            key,
                            count: 0,
                            stamp: now,
                            until: 0,
                        }) {
                        Ok(updated) => stream.note(&updated),
                        Err(error) => stream.store_failed_late(cx, error),
                    }
                }
                Ok(_) => {}
                Err(error) => stream.store_failed_late(cx, error),
            }
        }
    }
}

/// The `login_lockout` event of a key that just reached its threshold.
#[inline(never)]
pub(super) fn lockout_event(
    stream: &mut Stream,
    cx: &Context<'_, '_>,
    login: &Login,
    key: u64,
    action: Action,
) {
    let severity = cx
        .api
        .controls
        .severity(EventKind::LoginLockout)
        .or(match action {
            Action::Alert => Some(Severity::Ticket),
            _ => None,
        });
    let outcome = if severity.is_some() {
        Outcome::Alerted
    } else {
        Outcome::Logged
    };
    stream.raise(
        EventKind::LoginLockout,
        Control::Login,
        login.mode,
        outcome,
        severity,
        Some(key),
    );
}

/// A failed login of `username` from `client`: the username's bit in the client's
/// sketch, and `password_spraying` when the bits reach the threshold (once per window or
/// lockout: a client already over it is not reported again).
fn count_spraying(
    stream: &mut Stream,
    cx: &Context<'_, '_>,
    login: &Login,
    spraying: &Spraying,
    username: u64,
    client: u64,
) {
    let now = cx.now;
    let limits = &spraying.limits;
    let threshold = limits.max_failures;
    // The username's own bit: its digest's top bits, which the slot choice (the low
    // bits of the client's digest) does not correlate with.
    let bit = 1u64 << (username >> 58);
    let mut crossed = false;
    let result = cx
        .slots
        .update(Table::Spray, client, live(limits, now), |current| {
            let mut entry = current.unwrap_or_default();
            if entry.stamp.saturating_add(limits.window_ms) <= now && entry.until <= now {
                entry = Entry {
                    key: client,
                    count: 0,
                    stamp: now,
                    until: 0,
                };
            }
            let before = entry.count.count_ones();
            entry.count |= bit;
            crossed = before < threshold && entry.count.count_ones() >= threshold;
            if crossed {
                entry.until = now.saturating_add(limits.lockout_ms);
            }
            entry
        });
    match result {
        Ok(updated) => stream.note(&updated),
        Err(error) => return stream.store_failed_late(cx, error),
    }
    if crossed {
        let severity = cx
            .api
            .controls
            .severity(EventKind::PasswordSpraying)
            .or(Some(Severity::Ticket));
        stream.raise(
            EventKind::PasswordSpraying,
            Control::Login,
            login.mode,
            Outcome::Alerted,
            severity,
            Some(client),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_come_from_json_pointers_and_form_fields() {
        let json = UsernameSource::JsonPointer("/user/name".into());
        assert_eq!(
            username(&json, br#"{"user":{"name":"alice"}}"#).as_deref(),
            Some("alice")
        );
        assert_eq!(username(&json, b"not json"), None);
        let form = UsernameSource::FormField("user name".into());
        assert_eq!(
            username(&form, b"a=1&user+name=bob%40example.com").as_deref(),
            Some("bob@example.com")
        );
        assert_eq!(username(&form, b"a=1&other=x"), None);
        assert_eq!(username(&form, b"user+name=%zz"), None);
    }
}

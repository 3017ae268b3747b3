//! What the engine changes on the way back: deprecation notices and response hardening.
//!
//! Cookies get the attributes the tier asks for only where they lack them (an upstream
//! that already says `SameSite=Lax` keeps it); security headers are set only where the
//! upstream set none, so an upstream with a stricter policy wins; identifying headers are
//! removed. Monitor mode changes nothing and reports what it would have changed.

use crate::decision::{Control, EventKind, HeaderChange, Mode, Outcome};
use crate::model::SameSite;
use crate::policy::{Api, Hardening, Lifecycle};
use crate::request::Response;

use super::{Context, Stream};

/// The most header changes one answer of `api` can get (CORS, lifecycle, hardening), so
/// that the list of changes grows at most once.
pub(super) fn most_changes(api: &Api) -> usize {
    let cors = api
        .controls
        .cors
        .as_ref()
        .map_or(0, |_| super::cors::MOST_CHANGES);
    let notice = match &api.lifecycle {
        Lifecycle::Deprecated { notice, .. } => notice.len(),
        _ => 0,
    };
    let hardening = api
        .controls
        .response
        .as_ref()
        .map_or(0, |h| 1 + h.headers.len() + h.strip.len());
    cors + notice + hardening
}

/// `Deprecation`, `Sunset` and `Link` on every answer of a deprecated API.
pub(super) fn lifecycle_headers(cx: &Context<'_, '_>, changes: &mut Vec<HeaderChange>) {
    if let Lifecycle::Deprecated {
        mode: Mode::Enforce,
        notice,
        ..
    } = &cx.api.lifecycle
    {
        changes.extend_from_slice(notice);
    }
}

/// Whether hardening has to read the response: cookie attributes and security headers
/// depend on what the upstream sent, and monitor mode reports only real changes. Stripping
/// alone does not: removing a header that is not there changes nothing.
pub(super) fn reads_response(hardening: &Hardening) -> bool {
    hardening.secure
        || hardening.http_only
        || hardening.same_site.is_some()
        || !hardening.headers.is_empty()
        || hardening.mode != Mode::Enforce
}

/// Cookie attributes, security headers, stripped headers; with `response` unread (see
/// [`reads_response`]), the headers to strip, whether present or not.
pub(super) fn harden(
    stream: &mut Stream,
    cx: &Context<'_, '_>,
    response: Option<&Response<'_>>,
    changes: &mut Vec<HeaderChange>,
) {
    let Some(hardening) = cx.api.controls.response.as_ref() else {
        return;
    };
    let Some(response) = response else {
        if !reads_response(hardening) {
            changes.extend(hardening.strip.iter().cloned().map(HeaderChange::Remove));
        }
        return;
    };
    let before = changes.len();
    let mut cookies = Vec::new();
    response.headers.all_values("set-cookie", &mut |cookie| {
        cookies.push(cookie);
        true
    });
    let hardened: Vec<String> = cookies
        .iter()
        .map(|c| harden_cookie(c, hardening))
        .collect();
    if hardened.iter().zip(&cookies).any(|(h, c)| h != c) {
        changes.push(HeaderChange::ReplaceSetCookies(hardened));
    }
    for (name, value) in &hardening.headers {
        if response.headers.get(name).is_none() {
            changes.push(HeaderChange::Set(name.clone(), value.clone()));
        }
    }
    for name in &hardening.strip {
        if response.headers.get(name).is_some() {
            changes.push(HeaderChange::Remove(name.clone()));
        }
    }
    // Hardening every response is routine: enforced, it changes headers silently (no
    // event, no log line, nothing to publish); in monitor mode one event says what it
    // would have changed, which is what a team wants to see before switching it on.
    if hardening.mode != Mode::Enforce && changes.len() > before {
        changes.truncate(before);
        stream.raise(
            EventKind::ResponseHardened,
            Control::Response,
            hardening.mode,
            Outcome::Logged,
            None,
            None,
        );
    }
}

/// Adds the missing `Secure`, `HttpOnly` and `SameSite` attributes to one `Set-Cookie`.
fn harden_cookie(cookie: &str, hardening: &Hardening) -> String {
    let has = |attribute: &str| {
        cookie.split(';').skip(1).any(|part| {
            let name = part.split('=').next().unwrap_or("").trim();
            name.eq_ignore_ascii_case(attribute)
        })
    };
    let mut added = String::new();
    if hardening.secure && !has("secure") {
        added.push_str("; Secure");
    }
    if hardening.http_only && !has("httponly") {
        added.push_str("; HttpOnly");
    }
    if let Some(same_site) = hardening.same_site
        && !has("samesite")
    {
        added.push_str(match same_site {
            SameSite::Strict => "; SameSite=Strict",
            SameSite::Lax => "; SameSite=Lax",
            SameSite::None => "; SameSite=None",
        });
    }
    if added.is_empty() {
        cookie.to_owned()
    } else {
        format!("{}{added}", cookie.trim_end().trim_end_matches(';'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> Hardening {
        Hardening {
            mode: Mode::Enforce,
            secure: true,
            http_only: true,
            same_site: Some(SameSite::Strict),
            headers: vec![],
            strip: vec![],
        }
    }

    #[test]
    fn missing_cookie_attributes_are_added() {
        assert_eq!(
            harden_cookie("sid=abc; Path=/", &strict()),
            "sid=abc; Path=/; Secure; HttpOnly; SameSite=Strict"
        );
    }

    #[test]
    fn attributes_already_present_are_kept_as_written() {
        let cookie = "sid=abc; path=/; secure; HTTPONLY; SameSite=Lax";
        assert_eq!(harden_cookie(cookie, &strict()), cookie);
    }

    #[test]
    fn an_attribute_name_inside_a_value_does_not_count() {
        assert_eq!(
            harden_cookie("secure=1; Path=/", &strict()),
            "secure=1; Path=/; Secure; HttpOnly; SameSite=Strict"
        );
    }
}

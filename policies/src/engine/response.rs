//! What the engine changes on the way back: deprecation notices and response hardening.
//!
//! Cookies get the attributes the tier asks for only where they lack them (an upstream
//! that already says `SameSite=Lax` keeps it); security headers are set only where the
//! upstream set none, so an upstream with a stricter policy wins; identifying headers are
//! removed. Monitor mode changes nothing and reports what it would have changed.

use crate::decision::{Control, EventKind, HeaderChange, Mode, Outcome};
use crate::model::SameSite;
use crate::policy::{Hardening, Lifecycle};
use crate::request::Response;

use super::{Context, Stream};

/// `Deprecation`, `Sunset` and `Link` on every answer of a deprecated API.
pub(super) fn lifecycle_headers(cx: &Context<'_, '_>, changes: &mut Vec<HeaderChange>) {
    if let Lifecycle::Deprecated {
        mode: Mode::Enforce,
        deprecation,
        sunset,
        link,
        ..
    } = &cx.api.lifecycle
    {
        changes.push(HeaderChange::Set(
            "deprecation".to_owned(),
            deprecation.clone(),
        ));
        if let Some(sunset) = sunset {
            changes.push(HeaderChange::Set("sunset".to_owned(), sunset.clone()));
        }
        if let Some(link) = link {
            changes.push(HeaderChange::Set("link".to_owned(), link.clone()));
        }
    }
}

/// Cookie attributes, security headers, stripped headers.
pub(super) fn harden(
    stream: &mut Stream,
    cx: &Context<'_, '_>,
    response: &Response<'_>,
    changes: &mut Vec<HeaderChange>,
) {
    let Some(hardening) = cx.api.controls.response.as_ref() else {
        return;
    };
    let mut would_change = Vec::new();
    let cookies: Vec<&str> = response.headers.get_all("set-cookie").collect();
    let hardened: Vec<String> = cookies
        .iter()
        .map(|c| harden_cookie(c, hardening))
        .collect();
    if hardened.iter().zip(&cookies).any(|(h, c)| h != c) {
        would_change.push(HeaderChange::ReplaceSetCookies(hardened));
    }
    for (name, value) in &hardening.headers {
        if response.headers.get(name).is_none() {
            would_change.push(HeaderChange::Set(name.clone(), value.clone()));
        }
    }
    for name in &hardening.strip {
        if response.headers.get(name).is_some() {
            would_change.push(HeaderChange::Remove(name.clone()));
        }
    }
    if would_change.is_empty() {
        return;
    }
    // Hardening every response is routine: enforced, it changes headers silently (no
    // event, no log line, nothing to publish); in monitor mode one event says what it
    // would have changed, which is what a team wants to see before switching it on.
    if hardening.mode == Mode::Enforce {
        changes.append(&mut would_change);
    } else {
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

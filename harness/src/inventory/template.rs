//! The path-template heuristic of `discover`: which recorded path segments are values
//! (collapsed to a `{param}`), and how endpoints are named when they become APIs.
//!
//! A segment is a value when, after percent-decoding, it is
//!
//! - a **number**: ASCII digits only (`42`, `000123`);
//! - a **UUID**: 8-4-4-4-12 hexadecimal digits with dashes, any case;
//! - a **hex id**: at least 8 hexadecimal digits with at least one digit among them
//!   (object ids, hashes; the digit keeps words such as `deadbeef`... a word);
//! - a **token**: at least 16 characters of the base64 or base64url alphabet (letters,
//!   digits, `-`, `_`, `+`, `=`, and `.` for JWT-like tokens) with at least one letter and
//!   one digit (session ids, prefixed ids such as `cus_4QvTuX6e1oVvKm`, signed links);
//! - an **email**: one `@` with text before it and a dotted domain after it.
//!
//! Everything else stays literal, so words (`accounts`), versions (`v2`), dates
//! (`2010-04-01`, which some APIs use as their version) and short codes keep the
//! endpoint apart. Names (`/users/alice`) look like any word and are not collapsed; when a
//! policy is given, `discover` groups requests its routes match under the route's own
//! pattern, which names such parameters.

use std::borrow::Cow;

/// What a segment was recognized as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// ASCII digits.
    Number,
    /// 8-4-4-4-12 hex.
    Uuid,
    /// Eight or more hex digits.
    Hex,
    /// A base64-ish token.
    Token,
    /// An email address.
    Email,
}

/// Shortest hex run taken for an id.
const MIN_HEX: usize = 8;
/// Shortest text taken for a token.
const MIN_TOKEN: usize = 16;

/// Whether a raw (possibly percent-encoded) path segment is a value, and which kind.
pub fn classify(segment: &str) -> Option<Value> {
    let decoded =
        stakeguard_policies::path::decode_segment(segment).unwrap_or(Cow::Borrowed(segment));
    let text = decoded.as_ref();
    if text.is_empty() {
        return None;
    }
    let bytes = text.as_bytes();
    if bytes.iter().all(u8::is_ascii_digit) {
        return Some(Value::Number);
    }
    if is_uuid(bytes) {
        return Some(Value::Uuid);
    }
    if bytes.len() >= MIN_HEX
        && bytes.iter().all(u8::is_ascii_hexdigit)
        && bytes.iter().any(u8::is_ascii_digit)
    {
        return Some(Value::Hex);
    }
    if is_email(text) {
        return Some(Value::Email);
    }
    if bytes.len() >= MIN_TOKEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_+=.".contains(b))
        && bytes.iter().any(u8::is_ascii_digit)
        && bytes.iter().any(u8::is_ascii_alphabetic)
    {
        return Some(Value::Token);
    }
    None
}

fn is_uuid(bytes: &[u8]) -> bool {
    const DASHES: [usize; 4] = [8, 13, 18, 23];
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| {
            if DASHES.contains(&i) {
                *b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        })
}

fn is_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain
            .split_once('.')
            .is_some_and(|(name, tld)| !name.is_empty() && !tld.is_empty())
}

/// The template of a path (query and fragment already removed): value segments become
/// `{param}`, then `{param2}`, `{param3}`... so the template is a valid route pattern.
pub fn template(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut params = 0usize;
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if classify(segment).is_some() {
            params += 1;
            match params {
                1 => out.push_str("{param}"),
                n => {
                    out.push_str("{param");
                    out.push_str(&n.to_string());
                    out.push('}');
                }
            }
        } else {
            out.push_str(segment);
        }
    }
    out
}

/// Whether a segment names a version: `v` and digits, dot-separated (`v1`, `v2.1`).
pub fn is_version(segment: &str) -> bool {
    let Some(rest) = segment
        .strip_prefix('v')
        .or_else(|| segment.strip_prefix('V'))
    else {
        return false;
    };
    !rest.is_empty()
        && rest
            .split('.')
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The name and version an endpoint gets when it becomes an API of its own: the first
/// literal segment that is neither `api` nor a version (`root` for none), and the first
/// version segment (`None` when the path has none). `/api/v1/internal/debug` is
/// `internal` `v1`; `/admin/users/{param}` is `admin` without a version.
pub fn path_group(path: &str) -> (String, Option<String>) {
    let literals = path
        .split('/')
        .filter(|s| !s.is_empty() && !s.starts_with('{') && *s != "**");
    let version = literals.clone().find(|s| is_version(s)).map(str::to_owned);
    let name = literals
        .filter(|s| !is_version(s) && !s.eq_ignore_ascii_case("api"))
        .map(str::to_owned)
        .next()
        .unwrap_or_else(|| "root".to_owned());
    (name, version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_value_is_recognized() {
        assert_eq!(classify("42"), Some(Value::Number));
        assert_eq!(classify("000123"), Some(Value::Number));
        assert_eq!(
            classify("3F2504E0-4F89-41D3-9A0C-0305E82C3301"),
            Some(Value::Uuid)
        );
        assert_eq!(classify("507f1f77bcf86cd799439011"), Some(Value::Hex));
        assert_eq!(classify("a94a8fe5"), Some(Value::Hex));
        assert_eq!(classify("cus_4QvTuX6e1oVvKm"), Some(Value::Token));
        assert_eq!(
            classify("VA0123456789abcdef0123456789abcdeg"),
            Some(Value::Token)
        );
        assert_eq!(classify("alice@example.com"), Some(Value::Email));
        assert_eq!(classify("alice%40example.com"), Some(Value::Email));
    }

    #[test]
    fn words_versions_dates_and_short_codes_stay_literal() {
        for literal in [
            "accounts",
            "v2",
            "v10",
            "2010-04-01",
            "deadbeef",
            "facade",
            "abc123",
            "me",
            "authentication-providers",
            "index.html",
            "@home",
            "user@localhost",
            "",
        ] {
            assert_eq!(classify(literal), None, "{literal}");
        }
    }

    #[test]
    fn templates_number_their_parameters_and_keep_the_slashes() {
        assert_eq!(
            template("/api/v2/accounts/1002"),
            "/api/v2/accounts/{param}"
        );
        assert_eq!(
            template("/users/42/orders/507f1f77bcf86cd799439011/"),
            "/users/{param}/orders/{param2}/"
        );
        assert_eq!(template("/"), "/");
        assert_eq!(
            template("/api/v2/users/alice/profile"),
            "/api/v2/users/alice/profile"
        );
    }

    #[test]
    fn versions_are_v_and_dotted_numbers() {
        assert!(is_version("v1") && is_version("V2") && is_version("v2.1"));
        assert!(!is_version("v") && !is_version("vip") && !is_version("v1.") && !is_version("2"));
    }

    #[test]
    fn path_groups_skip_api_and_versions() {
        assert_eq!(
            path_group("/api/v1/internal/debug"),
            ("internal".into(), Some("v1".into()))
        );
        assert_eq!(path_group("/admin/users/{param}"), ("admin".into(), None));
        assert_eq!(path_group("/{param}/x"), ("x".into(), None));
        assert_eq!(path_group("/"), ("root".into(), None));
        assert_eq!(
            path_group("/api/v3/pet/**"),
            ("pet".into(), Some("v3".into()))
        );
    }
}

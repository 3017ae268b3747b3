//! Request path normalization: turns a raw `:path` into the one canonical text that
//! route matching sees, or refuses it.
//!
//! Policies are keyed on paths, so two spellings of one path must never reach two
//! different policies (or none). [`normalize`] does what Envoy does with
//! `normalize_path` and `merge_slashes` (RFC 3986 dot-segment removal, then merging of
//! repeated slashes), but where Envoy would guess, it refuses with a [`PathError`]:
//!
//! - an encoded `/` or `\` (`%2F`, `%5C`) or a literal `\`: upstreams disagree on whether
//!   they separate segments, which is how `/admin%2Fsecrets` slips past a `/admin/**`
//!   rule;
//! - `%00`, raw control characters and raw non-ASCII bytes (Envoy requires the latter to
//!   be percent-encoded; anything else is a parser differential waiting to happen);
//! - a `%` not followed by two hex digits;
//! - a `..` that would climb above `/` (RFC 3986 clamps it silently; a client that sends
//!   it is probing, not browsing);
//! - a `..` after an empty segment (`/a//..`): Envoy's canonicalizer lets it remove the
//!   empty segment, a backend that merges slashes first (nginx does by default) removes
//!   the segment before, so `/api//x//..//v3/cart` is `/api/x/v3/cart` to one and
//!   `/api/v3/cart` to the other;
//! - anything that does not start with `/` (`*`, absolute-form URLs);
//! - a `;`, raw or encoded: Tomcat and other Java servers strip `;parameters` from
//!   every segment before routing, so `/public/..;/admin` and `/admin;x/users` read as
//!   `/admin` there while every other reader sees a literal segment;
//! - double encoding, a `%25` followed by two hex digits once the rest is decoded
//!   (`%252e`, `%25%32%65`): a backend that decodes more than once reads
//!   `/public/%252e%252e/admin` as `/admin`, and no client has a reason to send it;
//! - escapes that do not decode to UTF-8, overlong forms above all (`%C0%AE` is `.` to
//!   decoders that accept it).
//!
//! What it rewrites:
//!
//! - the query (from the first `?`) and the fragment (from the first `#`) are dropped;
//! - percent-encoded characters that a route's literal segment may hold are decoded:
//!   unreserved ones (ALPHA DIGIT `-` `.` `_` `~`), so `%2e%2E` is `..` *before* dot
//!   segments are resolved (`/a/%2e%2e/b` is `/b`), and the sub-delimiters routes allow
//!   (`!&',=:@`), so `/a%3Ab` reaches the route `/a:b` that a decoding backend serves;
//! - every other escape is kept, with its hex uppercased (`%3f` becomes `%3F`). A lone
//!   `%25` (an encoded `%` not followed by hex) stays as it is;
//! - `.` segments are removed and `..` segments remove the segment before them, then runs
//!   of `/` become one;
//! - a trailing slash is kept (`/a/b/` stays `/a/b/`; `/a/.` and `/a/b/..` become `/a/`).
//!
//! The common case (an already normal path) costs one scan and no allocation: the result
//! borrows the input.

use std::borrow::Cow;
use std::fmt;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathError {
    /// The path does not start with `/` (empty, `*`, or an absolute-form URL).
    NotAbsolute,
    /// `%2F` or `%2f`: an encoded segment separator.
    EncodedSlash,
    /// `%5C` or `%5c`: an encoded backslash, which some upstreams treat as `/`.
    EncodedBackslash,
    /// A literal `\`, which some upstreams treat as `/`.
    Backslash,
    /// `%00`.
    Nul,
    /// A `%` not followed by two hex digits.
    BadPercentEncoding,
    /// A `..` segment that would go above the root.
    AboveRoot,
    /// A raw byte below 0x20, or 0x7f.
    ControlCharacter,
    /// A raw byte above 0x7f (it must be percent-encoded).
    NonAscii,
    /// A `;` or `%3B`: path parameters, which some upstreams strip before routing.
    PathParameter,
    /// `%25` followed by two hex digits: an escape encoded twice.
    DoubleEncoding,
    /// Escapes that decode to bytes that are not UTF-8 (overlong forms included).
    InvalidUtf8,
    /// A `..` right after an empty segment (`//..`), read differently by backends that
    /// merge slashes first.
    ParentOfEmptySegment,
}

impl PathError {
    /// A stable snake_case name, for metrics, logs and published decisions.
    pub fn as_str(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "not_absolute",
            PathError::EncodedSlash => "encoded_slash",
            PathError::EncodedBackslash => "encoded_backslash",
            PathError::Backslash => "backslash",
            PathError::Nul => "nul",
            PathError::BadPercentEncoding => "bad_percent_encoding",
            PathError::AboveRoot => "above_root",
            PathError::ControlCharacter => "control_character",
            PathError::NonAscii => "non_ascii",
            PathError::PathParameter => "path_parameter",
            PathError::DoubleEncoding => "double_encoding",
            PathError::InvalidUtf8 => "invalid_utf8",
            PathError::ParentOfEmptySegment => "parent_of_empty_segment",
        }
    }

    /// A human sentence, for error bodies and logs.
    pub fn describe(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "the request path does not start with `/`",
            PathError::EncodedSlash => "the request path contains an encoded slash (%2F)",
            PathError::EncodedBackslash => "the request path contains an encoded backslash (%5C)",
            PathError::Backslash => "the request path contains a backslash",
            PathError::Nul => "the request path contains an encoded NUL byte (%00)",
            PathError::BadPercentEncoding => {
                "the request path contains a `%` that is not followed by two hex digits"
            }
            PathError::AboveRoot => "the request path uses `..` to go above the root",
            PathError::ControlCharacter => "the request path contains a control character",
            PathError::NonAscii => {
                "the request path contains non-ASCII bytes that are not percent-encoded"
            }
            PathError::PathParameter => {
                "the request path contains `;`, which some upstreams strip with what follows"
            }
            PathError::DoubleEncoding => {
                "the request path contains a percent-escape encoded twice (%25 and two hex digits)"
            }
            PathError::InvalidUtf8 => {
                "the request path contains percent-escapes that do not decode to UTF-8"
            }
            PathError::ParentOfEmptySegment => {
                "the request path has a `..` after an empty segment (`//..`)"
            }
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

impl std::error::Error for PathError {}

/// The segments of a path between its slashes, as `split('/')` gives them (a trailing
/// slash ends with an empty segment), found by a plain byte scan: `split` with a char
/// pattern goes through a generic searcher that costs several times more in wasm, and
/// routing splits every request's path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Segments<'a> {
    rest: Option<&'a str>,
}

impl<'a> Segments<'a> {
    /// The segments of `text` (one empty segment for an empty text).
    pub(crate) fn of(text: &'a str) -> Self {
        Segments { rest: Some(text) }
    }
}

impl<'a> Iterator for Segments<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        match find_byte(rest.as_bytes(), b'/') {
            Some(slash) => {
                self.rest = rest.get(slash + 1..);
                rest.get(..slash)
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

/// The index of the first `byte` in `bytes`, eight bytes at a time: a plain loop costs
/// a bounds check and a branch per byte in wasm, which has no SIMD for memchr to use, and
/// every request's peer address and path segments go through here.
pub(crate) fn find_byte(bytes: &[u8], byte: u8) -> Option<usize> {
    const LOW: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    let pattern = LOW.wrapping_mul(u64::from(byte));
    let (words, rest) = bytes.as_chunks::<8>();
    for (n, word) in words.iter().enumerate() {
        // A byte equal to `byte` is a zero byte of `diff`; the lowest flagged byte is
        // always a true one (a borrow only flags bytes above a zero byte).
        let diff = u64::from_le_bytes(*word) ^ pattern;
        let zeros = diff.wrapping_sub(LOW) & !diff & HIGH;
        if zeros != 0 {
            return Some(n * 8 + (zeros.trailing_zeros() / 8) as usize);
        }
    }
    let done = words.len() * 8;
    for (i, &b) in rest.iter().enumerate() {
        if b == byte {
            return Some(done + i);
        }
    }
    None
}

/// Whether two byte strings are equal, eight bytes at a time: `==` on slices is a call to
/// the module's `memcmp`, a loop over single bytes in wasm, and every request compares its
/// peer's certificate name and its path segments.
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (a_words, a_rest) = a.as_chunks::<8>();
    let (b_words, b_rest) = b.as_chunks::<8>();
    a_words
        .iter()
        .zip(b_words)
        .all(|(x, y)| u64::from_ne_bytes(*x) == u64::from_ne_bytes(*y))
        && a_rest.iter().zip(b_rest).all(|(x, y)| x == y)
}

/// Up to eight bytes as a little-endian word, gathered in a register (a plain loop: the
/// iterator adapters of a reversed fold stay calls in the size-optimized wasm build).
pub(crate) fn little_endian(bytes: &[u8]) -> u64 {
    let mut word = 0u64;
    let mut shift = 0u32;
    for &byte in bytes {
        word |= u64::from(byte).wrapping_shl(shift);
        shift += 8;
    }
    word
}

/// `text` without its first byte if that is `byte` (ASCII): `strip_prefix` with a char
/// pattern encodes the char as UTF-8 on every call, which shows in wasm profiles.
pub(crate) fn strip_ascii_prefix(text: &str, byte: u8) -> Option<&str> {
    match text.as_bytes().first() {
        Some(&first) if first == byte => text.get(1..),
        _ => None,
    }
}

/// `text` without its last byte if that is `byte` (ASCII); see [`strip_ascii_prefix`].
pub(crate) fn strip_ascii_suffix(text: &str, byte: u8) -> Option<&str> {
    match text.as_bytes().last() {
        Some(&last) if last == byte => text.get(..text.len() - 1),
        _ => None,
    }
}

/// An unbracketed `host:port` without its port: the text before its only colon. A text
/// with more colons (a bare IPv6 address, no `host:port`) or none stays whole.
pub(crate) fn strip_lone_port(address: &str) -> &str {
    let bytes = address.as_bytes();
    match find_byte(bytes, b':') {
        Some(colon) if find_byte(bytes.get(colon + 1..).unwrap_or_default(), b':').is_none() => {
            address.get(..colon).unwrap_or(address)
        }
        _ => address,
    }
}

/// Strips query and fragment, decodes percent-encoded characters that routes may hold
/// (unreserved ones and `!&',=:@`), uppercases the hex of other percent-escapes, resolves
/// `.` and `..` segments, merges repeated slashes; refuses what the module documentation
/// lists.
///
/// Returns `Cow::Borrowed` when the path (without query) was already normal.
pub fn normalize(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if raw.as_bytes().first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // One pass finds where the query or fragment starts and judges the path before it.
    let (normal, end) = scan(raw)?;
    let path = raw.get(..end).unwrap_or(raw);
    if normal {
        Ok(Cow::Borrowed(path))
    } else {
        rebuild(path).map(Cow::Owned)
    }
}

/// Percent-decodes one path segment (for comparing template parameters with identities).
///
/// `None` when the segment's encoding is bad or it decodes to non-UTF-8. Every escape is
/// decoded, `%2F` included: the result is a value to compare, not a path to route.
pub fn decode_segment(segment: &str) -> Option<Cow<'_, str>> {
    if !segment.contains('%') {
        return Some(Cow::Borrowed(segment));
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let (value, _) = escape_at(bytes, i).ok()?;
            out.push(value);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// Validates every byte of `path` up to its query or fragment and tells whether that
/// much is already normal (nothing to decode, no hex to uppercase, no dot segment, no
/// repeated slash, no escape that only the decoded whole can judge), and where it ends. A byte loop: `split` with a set of chars decodes
/// every char, and `position` is a call per search, both of which cost in wasm.
fn scan(path: &str) -> Result<(bool, usize), PathError> {
    let bytes = path.as_bytes();
    let mut normal = true;
    let mut non_ascii_escapes = false;
    // The segment read so far: its length and how many of its bytes are raw dots, so
    // that `//`, `.` and `..` are seen in the same pass. (Encoded dots clear `normal`
    // as escapes to decode.)
    let (mut length, mut dots) = (0, 0);
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let width = match b {
            b'/' => {
                // An empty segment after the leading `/` is a repeated slash.
                if is_dot_segment(length, dots) || (length == 0 && i > 0) {
                    normal = false;
                }
                (length, dots) = (0, 0);
                i += 1;
                continue;
            }
            b'%' => {
                let (value, lowercase_hex) = escape_at(bytes, i)?;
                match value {
                    b'/' => return Err(PathError::EncodedSlash),
                    b'\\' => return Err(PathError::EncodedBackslash),
                    b';' => return Err(PathError::PathParameter),
                    b'%' if is_hex_pair(bytes.get(i + 3..i + 5)) => {
                        return Err(PathError::DoubleEncoding);
                    }
                    0 => return Err(PathError::Nul),
                    _ => {}
                }
                // A UTF-8 sequence spans escapes: judged once the whole path is read.
                non_ascii_escapes |= value >= 0x80;
                // A `%25` followed by encoded hex digits clears `normal` here (they
                // decode), and `rebuild` judges what they decode to.
                if lowercase_hex || decodes_for_routing(value) {
                    normal = false;
                }
                3
            }
            b'?' | b'#' => break,
            b'\\' => return Err(PathError::Backslash),
            b';' => return Err(PathError::PathParameter),
            0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
            0x80.. => return Err(PathError::NonAscii),
            b'.' => {
                dots += 1;
                1
            }
            _ => 1,
        };
        length += width;
        i += width;
    }
    let normal = normal && !is_dot_segment(length, dots);
    // A path `rebuild` will build is judged there, on what it builds.
    if normal && non_ascii_escapes && decode_segment(path.get(..i).unwrap_or(path)).is_none() {
        return Err(PathError::InvalidUtf8);
    }
    Ok((normal, i))
}

/// Whether `pair` is two hex digits.
fn is_hex_pair(pair: Option<&[u8]>) -> bool {
    matches!(pair, Some([high, low]) if high.is_ascii_hexdigit() && low.is_ascii_hexdigit())
}

/// Whether a segment of `length` bytes, `dots` of them raw dots, is `.` or `..`.
fn is_dot_segment(length: usize, dots: usize) -> bool {
    length == dots && (dots == 1 || dots == 2)
}

/// Builds the normal form of a path that `scan` accepted but found not normal.
fn rebuild(path: &str) -> Result<String, PathError> {
    let mut out = String::with_capacity(path.len());
    // Set when the last segment was `.` or `..`: the result then ends with `/`, as in
    // RFC 3986 (`/a/b/..` is `/a/`).
    let mut ends_in_directory = false;
    // `out` holds "/seg" per kept segment, empty ones included, so that a `..` can see
    // whether it would remove an empty one; slashes are merged afterwards.
    for raw_segment in path.strip_prefix('/').unwrap_or(path).split('/') {
        let start = out.len();
        out.push('/');
        push_decoded(&mut out, raw_segment)?;
        match out.get(start + 1..).unwrap_or_default() {
            "." => {
                out.truncate(start);
                ends_in_directory = true;
            }
            ".." => {
                out.truncate(start);
                let Some(parent) = out.rfind('/') else {
                    return Err(PathError::AboveRoot);
                };
                if parent + 1 == out.len() {
                    return Err(PathError::ParentOfEmptySegment);
                }
                out.truncate(parent);
                ends_in_directory = true;
            }
            _ => ends_in_directory = false,
        }
    }
    if ends_in_directory || out.is_empty() {
        out.push('/');
    }
    if has_double_encoding(out.as_bytes()) {
        return Err(PathError::DoubleEncoding);
    }
    // Every escape left is well formed, so `None` here means the bytes are not UTF-8.
    if decode_segment(&out).is_none() {
        return Err(PathError::InvalidUtf8);
    }
    let mut previous_was_slash = false;
    out.retain(|c| {
        let keep = !(c == '/' && previous_was_slash);
        previous_was_slash = c == '/';
        keep
    });
    Ok(out)
}

/// Whether a rebuilt path holds `%25` followed by two hex digits: what a second decoding
/// turns into an escape.
fn has_double_encoding(bytes: &[u8]) -> bool {
    bytes
        .windows(5)
        .any(|w| w.starts_with(b"%25") && is_hex_pair(w.get(3..)))
}

/// Appends one raw segment, decoding the escapes of characters routes may hold and
/// uppercasing the others.
fn push_decoded(out: &mut String, segment: &str) -> Result<(), PathError> {
    let bytes = segment.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let (value, _) = escape_at(bytes, i)?;
            if decodes_for_routing(value) {
                out.push(char::from(value));
            } else {
                out.push('%');
                out.push(hex_digit(value >> 4));
                out.push(hex_digit(value & 0x0f));
            }
            i += 3;
        } else {
            // `scan` already refused non-ASCII bytes, so each byte is one char.
            out.push(char::from(b));
            i += 1;
        }
    }
    Ok(())
}

/// Decodes the escape starting at `bytes[i]` (a `%`): its value, and whether either hex
/// digit was lowercase.
fn escape_at(bytes: &[u8], i: usize) -> Result<(u8, bool), PathError> {
    let digit = |offset: usize| {
        bytes
            .get(i + offset)
            .and_then(|&d| hex_value(d).map(|v| (v, d.is_ascii_lowercase())))
            .ok_or(PathError::BadPercentEncoding)
    };
    let (high, high_lower) = digit(1)?;
    let (low, low_lower) = digit(2)?;
    Ok(((high << 4) | low, high_lower || low_lower))
}

fn hex_value(d: u8) -> Option<u8> {
    match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        b'A'..=b'F' => Some(d - b'A' + 10),
        _ => None,
    }
}

fn hex_digit(nibble: u8) -> char {
    char::from_digit(u32::from(nibble), 16)
        .unwrap_or('0')
        .to_ascii_uppercase()
}

/// The characters a route's literal segment may hold (RFC 3986 unreserved ones and the
/// sub-delimiters `!&',=:@` that `routes` accepts): decoded before matching, so that an
/// escape cannot carry a request past the route a decoding backend would serve it from.
/// Unreserved characters carry no meaning encoded; for the others, reading the escape
/// as the character can only bring a request under a route, never take it out of one.
fn decodes_for_routing(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'_' | b'~' | b'!' | b'&' | b'\'' | b',' | b'=' | b':' | b'@'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_agrees_with_equality_at_every_length_and_difference() {
        let text: Vec<u8> = (0..30u8).map(|i| b'a' + i).collect();
        for len in 0..text.len() {
            let a = &text[..len];
            assert!(same_bytes(a, a));
            assert!(!same_bytes(a, &text[..len + 1]));
            for at in 0..len {
                let mut b = a.to_vec();
                b[at] ^= 0x20;
                assert!(!same_bytes(a, &b), "{len} {at}");
            }
        }
    }

    #[test]
    fn find_byte_agrees_with_a_plain_search_at_every_position() {
        let text: Vec<u8> = (0..40u8).map(|i| b'a' + i % 7).collect();
        for len in 0..text.len() {
            let hay = &text[..len];
            for byte in [b'a', b'c', b'g', b'z', 0x80, 0xff, 0] {
                assert_eq!(
                    find_byte(hay, byte),
                    hay.iter().position(|&b| b == byte),
                    "{byte} in {len}"
                );
            }
        }
        // Bytes just above the one sought, and high bytes, must not be mistaken for it.
        let tricky = [0x01, 0x02, 0x81, 0x00, 0x01, 0xff, 0x00, 0x7f, 0x80, 0x01];
        for byte in [0x00, 0x01, 0x7f, 0x80, 0x81, 0xff] {
            assert_eq!(
                find_byte(&tricky, byte),
                tricky.iter().position(|&b| b == byte)
            );
        }
    }

    /// `Ok(text)` or the error name, so one table covers both outcomes.
    fn outcome(raw: &str) -> Result<String, &'static str> {
        normalize(raw)
            .map(Cow::into_owned)
            .map_err(PathError::as_str)
    }

    #[test]
    fn table_of_paths_normalizes_or_refuses_as_documented() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            // Already normal.
            ("/", Ok("/")),
            ("/a/b", Ok("/a/b")),
            ("/a/b/", Ok("/a/b/")),
            ("/api/v2/login", Ok("/api/v2/login")),
            ("/a.b/c..d/...", Ok("/a.b/c..d/...")),
            // Query and fragment.
            ("/a/b?x=1", Ok("/a/b")),
            ("/a/b?x=/../..", Ok("/a/b")),
            ("/a#frag?x", Ok("/a")),
            ("/a?x#y", Ok("/a")),
            ("/?", Ok("/")),
            // An escape cut short by the query is bad, as it was at the end of the path.
            ("/a%4?x", Err("bad_percent_encoding")),
            ("/a?%zz", Ok("/a")),
            // Dot segments.
            ("/a/./b", Ok("/a/b")),
            ("/a/.", Ok("/a/")),
            ("/a/b/..", Ok("/a/")),
            ("/a/b/../c", Ok("/a/c")),
            ("/a/..", Ok("/")),
            ("/.", Ok("/")),
            ("/a/b/../../c/", Ok("/c/")),
            // A `..` after an empty segment: which segment it removes depends on whether
            // slashes are merged first.
            ("/a//..", Err("parent_of_empty_segment")),
            ("/api//x//..//v3/cart", Err("parent_of_empty_segment")),
            ("//..", Err("parent_of_empty_segment")),
            ("/a//%2e%2e/b", Err("parent_of_empty_segment")),
            ("/a/x//./../b", Err("parent_of_empty_segment")),
            ("/a//x/../b", Ok("/a/b")),
            ("/a//./b", Ok("/a/b")),
            // Repeated slashes.
            ("//a///b", Ok("/a/b")),
            ("//", Ok("/")),
            ("/a//b//", Ok("/a/b/")),
            // Encoded dots resolve before dot segments.
            ("/a/%2e%2e/b", Ok("/b")),
            ("/a/%2E%2e/b", Ok("/b")),
            ("/a/.%2E/b", Ok("/b")),
            ("/a/%2e/b", Ok("/a/b")),
            ("/%2e%2e/x", Err("above_root")),
            // Unreserved characters decode; others get uppercase hex.
            ("/%41%62c", Ok("/Abc")),
            ("/%7e%2D%5f", Ok("/~-_")),
            ("/a%3ab", Ok("/a:b")),
            ("/a%3Ab", Ok("/a:b")),
            ("/%21%26%27%2C%3D%40", Ok("/!&',=@")),
            ("/a%3fb", Ok("/a%3Fb")),
            ("/a%2Bb%24", Ok("/a%2Bb%24")),
            ("/caf%c3%a9", Ok("/caf%C3%A9")),
            ("/a%20b", Ok("/a%20b")),
            // Double encoding is refused, also when the hex after `%25` is encoded.
            ("/a/%252e%252e/", Err("double_encoding")),
            (
                "/api/v1/bills/%252e%252e/%252e%252e/v2/accounts/1",
                Err("double_encoding"),
            ),
            ("/a/%252f", Err("double_encoding")),
            ("/a/%2525%2e", Err("double_encoding")),
            ("/a/%25%32%65", Err("double_encoding")),
            ("/a/%252%65", Err("double_encoding")),
            ("/a/%25%32e", Err("double_encoding")),
            ("/a/%2525", Err("double_encoding")),
            // A lone encoded `%` is text.
            ("/a/%25", Ok("/a/%25")),
            ("/a/%25zz", Ok("/a/%25zz")),
            ("/a/%25%7e", Ok("/a/%25~")),
            // Path parameters, raw or encoded.
            ("/admin;x=1/users", Err("path_parameter")),
            ("/a;/../b", Err("path_parameter")),
            ("/a/..;/b", Err("path_parameter")),
            ("/a%3Bx", Err("path_parameter")),
            ("/a%3bx", Err("path_parameter")),
            ("/a?x=;", Ok("/a")),
            // Escapes must decode to UTF-8: overlong forms, lone continuation bytes,
            // truncated sequences and surrogates are refused.
            ("/a/%C0%AE%C0%AE/b", Err("invalid_utf8")),
            ("/a/%c0%ae", Err("invalid_utf8")),
            ("/a/%E0%80%AE", Err("invalid_utf8")),
            ("/a/%F0%80%80%AE", Err("invalid_utf8")),
            ("/a/%C0%AF", Err("invalid_utf8")),
            ("/a/%80", Err("invalid_utf8")),
            ("/a/%C3", Err("invalid_utf8")),
            ("/a/%C3/%A9", Err("invalid_utf8")),
            ("/a/%ED%A0%80", Err("invalid_utf8")),
            ("/a/%FF", Err("invalid_utf8")),
            ("/a/%C3%A9/%2e", Ok("/a/%C3%A9/")),
            // Above the root.
            ("/..", Err("above_root")),
            ("/./../", Err("above_root")),
            ("/a/../..", Err("above_root")),
            ("/../a", Err("above_root")),
            // Separators in disguise.
            ("/a%2Fb", Err("encoded_slash")),
            ("/a%2fb", Err("encoded_slash")),
            ("/users/%2F..%2Fadmin", Err("encoded_slash")),
            ("/a%5Cb", Err("encoded_backslash")),
            ("/a%5cb", Err("encoded_backslash")),
            ("/a\\b", Err("backslash")),
            ("/a/..\\..\\etc", Err("backslash")),
            // Bad bytes.
            ("/a%00b", Err("nul")),
            ("/a%", Err("bad_percent_encoding")),
            ("/a%2", Err("bad_percent_encoding")),
            ("/a%zz", Err("bad_percent_encoding")),
            ("/a%%41", Err("bad_percent_encoding")),
            ("/a\tb", Err("control_character")),
            ("/a\nb", Err("control_character")),
            ("/a\u{7f}", Err("control_character")),
            ("/café", Err("non_ascii")),
            ("/\u{2215}etc", Err("non_ascii")),
            // Not absolute.
            ("", Err("not_absolute")),
            ("?x=1", Err("not_absolute")),
            ("*", Err("not_absolute")),
            ("a/b", Err("not_absolute")),
            ("http://bank.example.com/a", Err("not_absolute")),
        ];
        for (raw, expected) in cases {
            let expected = expected.map(str::to_owned);
            assert_eq!(outcome(raw), expected, "normalize({raw:?})");
        }
    }

    #[test]
    fn normal_paths_are_borrowed_without_allocation() {
        for raw in [
            "/",
            "/a/b",
            "/a/b/",
            "/a%3Fb",
            "/a/b?x=%zz",
            "/a.b/...",
            "/a=1:b@c",
            "/caf%C3%A9",
            "/a/%25",
        ] {
            assert!(
                matches!(normalize(raw), Ok(Cow::Borrowed(_))),
                "{raw:?} should be borrowed"
            );
        }
    }

    #[test]
    fn paths_that_change_are_owned() {
        for raw in ["//a", "/a/./b", "/%41", "/a%3ab", "/a/.."] {
            assert!(
                matches!(normalize(raw), Ok(Cow::Owned(_))),
                "{raw:?} should be owned"
            );
        }
    }

    #[test]
    fn normalizing_twice_changes_nothing() {
        for raw in [
            "/a/%2e%2e/b/",
            "//x/./y/%7e",
            "/a%3ab/c/..",
            "/caf%c3%a9/%3f",
            "/a/%25%7e",
        ] {
            let once = normalize(raw).unwrap().into_owned();
            let twice = normalize(&once).unwrap();
            assert_eq!(twice, once);
            assert!(matches!(twice, Cow::Borrowed(_)));
        }
    }

    #[test]
    fn encoded_slash_in_a_template_parameter_is_rejected() {
        assert_eq!(
            normalize("/users/alice%2Fbob/accounts"),
            Err(PathError::EncodedSlash)
        );
    }

    #[test]
    fn error_names_are_stable_and_described() {
        let all = [
            (PathError::NotAbsolute, "not_absolute"),
            (PathError::EncodedSlash, "encoded_slash"),
            (PathError::EncodedBackslash, "encoded_backslash"),
            (PathError::Backslash, "backslash"),
            (PathError::Nul, "nul"),
            (PathError::BadPercentEncoding, "bad_percent_encoding"),
            (PathError::AboveRoot, "above_root"),
            (PathError::ControlCharacter, "control_character"),
            (PathError::NonAscii, "non_ascii"),
            (PathError::PathParameter, "path_parameter"),
            (PathError::DoubleEncoding, "double_encoding"),
            (PathError::InvalidUtf8, "invalid_utf8"),
            (PathError::ParentOfEmptySegment, "parent_of_empty_segment"),
        ];
        for (error, name) in all {
            assert_eq!(error.as_str(), name);
            assert!(error.describe().starts_with("the request path"));
            assert_eq!(error.to_string(), error.describe());
        }
    }

    #[test]
    fn decode_segment_decodes_every_escape() {
        assert_eq!(decode_segment("alice").unwrap(), "alice");
        assert!(matches!(decode_segment("alice"), Some(Cow::Borrowed(_))));
        assert_eq!(decode_segment("a%20b").unwrap(), "a b");
        assert_eq!(decode_segment("caf%C3%A9").unwrap(), "café");
        assert_eq!(decode_segment("caf%c3%a9").unwrap(), "café");
        assert_eq!(decode_segment("a%2Fb").unwrap(), "a/b");
        assert_eq!(decode_segment("%252e").unwrap(), "%2e");
    }

    #[test]
    fn decode_segment_refuses_bad_encoding_and_non_utf8() {
        assert_eq!(decode_segment("a%"), None);
        assert_eq!(decode_segment("a%g0"), None);
        assert_eq!(decode_segment("%C3"), None);
        assert_eq!(decode_segment("%FF"), None);
    }

    #[test]
    fn segments_split_like_str_split() {
        for text in ["", "a", "a/b", "a/b/", "/", "//", "a//b", "/a"] {
            assert_eq!(
                Segments::of(text).collect::<Vec<_>>(),
                text.split('/').collect::<Vec<_>>(),
                "{text:?}"
            );
        }
    }
}

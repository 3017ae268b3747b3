//! The view of a request (and later its response) that the engine decides on.
//!
//! The host fills a [`Request`] from what it already read in one go (Envoy hands the
//! whole header map over in a single host call); the engine borrows it and never asks
//! for more, so a decision costs no further trips across the Wasm boundary.

/// Header lookup, case-insensitive on names. Envoy already lowercases names; the
/// comparison is case-insensitive anyway so that recordings and tests can be sloppy.
///
/// Both lookups borrow and allocate nothing: they run several times on every request, and
/// in `stakeguard.wasm` each allocation goes through the module's allocator.
pub trait Headers {
    /// The first value of the header, if present.
    fn get(&self, name: &str) -> Option<&str>;

    /// Calls `visit` with every value of the header, in order (for `set-cookie` and
    /// repeated `cookie`), until it returns `false`; like [`Iterator::all`], the answer
    /// is whether every value was visited.
    fn all_values<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&'a str) -> bool) -> bool;
}

impl<N: AsRef<str>, V: AsRef<str>> Headers for [(N, V)] {
    fn get(&self, name: &str) -> Option<&str> {
        for (n, v) in self {
            if same_name(n.as_ref().as_bytes(), name.as_bytes()) {
                return Some(v.as_ref());
            }
        }
        None
    }

    fn all_values<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&'a str) -> bool) -> bool {
        for (n, v) in self {
            if same_name(n.as_ref().as_bytes(), name.as_bytes()) && !visit(v.as_ref()) {
                return false;
            }
        }
        true
    }
}

/// Header names compared without ASCII case, as bytes (a host may hand over a name that
/// is not UTF-8). Plain loops: the engine looks headers up several times per request,
/// and in wasm the iterator adapters behind `eq_ignore_ascii_case` and `find` are calls
/// per header; most names differ in length.
#[inline]
pub fn same_name(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (*x, *y);
        if x != y && lowercase(x) != lowercase(y) {
            return false;
        }
    }
    true
}

/// `u8::to_ascii_lowercase`, which the wasm build left as a call per byte.
#[inline]
fn lowercase(byte: u8) -> u8 {
    if byte.wrapping_sub(b'A') < 26 {
        byte | 0x20
    } else {
        byte
    }
}

impl<N: AsRef<str>, V: AsRef<str>> Headers for Vec<(N, V)> {
    fn get(&self, name: &str) -> Option<&str> {
        Headers::get(self.as_slice(), name)
    }

    fn all_values<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&'a str) -> bool) -> bool {
        Headers::all_values(self.as_slice(), name, visit)
    }
}

impl<N: AsRef<str>, V: AsRef<str>, const M: usize> Headers for [(N, V); M] {
    fn get(&self, name: &str) -> Option<&str> {
        Headers::get(self.as_slice(), name)
    }

    fn all_values<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&'a str) -> bool) -> bool {
        Headers::all_values(self.as_slice(), name, visit)
    }
}

impl<H: Headers + ?Sized> Headers for &H {
    fn get(&self, name: &str) -> Option<&str> {
        (**self).get(name)
    }

    fn all_values<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&'a str) -> bool) -> bool {
        (**self).all_values(name, visit)
    }
}

/// A request as the engine sees it.
pub struct Request<'a> {
    /// The `:method` pseudo-header.
    pub method: &'a str,
    /// The `:authority` pseudo-header (or `host`), port included as sent.
    pub authority: &'a str,
    /// The `:path` pseudo-header, query included, not yet normalized.
    pub path: &'a str,
    /// All request headers, pseudo-headers included or not.
    pub headers: &'a dyn Headers,
    /// The downstream peer's address (`source.address`, `ip:port` or bare ip).
    pub source_address: Option<&'a str>,
    /// The peer certificate's URI SAN (`connection.uri_san_peer_certificate`), for mTLS
    /// partners.
    pub peer_uri_san: Option<&'a str>,
    /// A reference the host chose for this request; the engine puts it in error bodies
    /// and the published decision so that a client's complaint leads to the log line.
    pub reference: &'a str,
}

/// The response as the engine sees it.
pub struct Response<'a> {
    /// The `:status` pseudo-header, parsed; 0 when missing or unparsable.
    pub status: u16,
    /// All response headers.
    pub headers: &'a dyn Headers,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_without_case_at_every_length_and_position() {
        let name = b"x-forwarded-client-cert-and-more";
        for len in 0..name.len() {
            let a = &name[..len];
            assert!(same_name(a, a));
            assert!(!same_name(a, &name[..len + 1]));
            for at in 0..len {
                let mut upper = a.to_vec();
                upper[at] = upper[at].to_ascii_uppercase();
                assert!(same_name(a, &upper), "{len} {at}");
                let mut other = a.to_vec();
                // '-' and '\r' differ only in the case bit, but are not letters.
                other[at] = if other[at] == b'-' { b'\r' } else { b'#' };
                assert!(!same_name(a, &other), "{len} {at}");
            }
        }
    }
}

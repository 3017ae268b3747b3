//! Who is asking: the client IP, the user, the partner, and the cookies and bearer-token
//! claims they come from.
//!
//! Nothing here verifies anything. The client IP is trusted only as far as the policy's
//! `trusted_hops` says; a JWT claim is read from the token's payload without checking the
//! signature, because verification is the job of Envoy's `jwt_authn` filter, which must
//! run before stakeguard so that only verified tokens reach it.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::json::RawJson;
use crate::path::{find_byte, same_bytes, strip_ascii_prefix, strip_lone_port};
use crate::policy::{Identity, Partner, PartnerMatch, UserSource};
use crate::request::{Headers, Request};

/// The client IP as text: the `trusted_hops`-th `X-Forwarded-For` entry from the right,
/// or the socket peer when there are fewer entries (or no trusted hops).
pub(crate) fn client_ip<'a>(request: &Request<'a>, identity: &Identity) -> Option<&'a str> {
    forwarded_client(request.headers, identity).or_else(|| request.source_address.map(strip_port))
}

/// The client IP the trusted proxies forwarded, when there are as many entries as hops.
pub(crate) fn forwarded_client<'a>(
    headers: &'a dyn Headers,
    identity: &Identity,
) -> Option<&'a str> {
    if identity.trusted_hops == 0 {
        return None;
    }
    let chain = headers.get(&identity.forwarded_header)?;
    let hop = usize::try_from(identity.trusted_hops - 1).unwrap_or(usize::MAX);
    chain
        .rsplit(',')
        .map(str::trim)
        .nth(hop)
        .filter(|entry| !entry.is_empty())
}

/// `1.2.3.4:80` → `1.2.3.4`, `[::1]:80` → `::1`; a bare address stays as it is.
fn strip_port(address: &str) -> &str {
    // Byte scans: every request strips its peer's port, and char-pattern searches cost
    // several times more in wasm.
    if let Some(rest) = strip_ascii_prefix(address, b'[') {
        return find_byte(rest.as_bytes(), b']')
            .and_then(|close| rest.get(..close))
            .unwrap_or(rest);
    }
    // One colon: IPv4 with a port. More than one: a bare IPv6 address.
    strip_lone_port(address)
}

/// The value of a cookie from the request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a dyn Headers, name: &str) -> Option<&'a str> {
    let mut found = None;
    headers.all_values("cookie", &mut |line| {
        found = line.split(';').find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key.trim() == name).then(|| value.trim().trim_matches('"'))
        });
        found.is_none()
    });
    found
}

/// The user identity: the first configured source that is present and non-empty.
pub(crate) fn user<'a>(request: &Request<'a>, identity: &Identity) -> Option<Cow<'a, str>> {
    identity.user.iter().find_map(|source| {
        let found = match source {
            UserSource::Header(name) => request.headers.get(name).map(Cow::Borrowed),
            UserSource::Cookie(name) => cookie(request.headers, name).map(Cow::Borrowed),
            UserSource::JwtClaim(claim) => bearer_claim(request.headers, claim).map(Cow::Owned),
        };
        found.filter(|value| !value.is_empty())
    })
}

/// Token payloads up to this many bytes are decoded on the stack: an ordinary token
/// carries a few hundred bytes of claims, and reading them then costs no allocation.
const INLINE_PAYLOAD: usize = 1024;

/// The decoded payload of a bearer token, checked to be a JSON object.
#[expect(
    clippy::large_enum_variant,
    reason = "the inline buffer is the point: it lives on the stack for one request"
)]
pub(crate) enum Claims {
    Inline {
        bytes: [u8; INLINE_PAYLOAD],
        len: usize,
    },
    Heap(Vec<u8>),
}

impl Claims {
    /// Decodes unpadded (or padded) base64url, as JWT segments are written, and keeps
    /// the result if it is a JSON object.
    fn decode(text: &str) -> Option<Claims> {
        let text = text.trim_end_matches('=');
        // Every character carries 6 bits; leftover bits at the end make no byte.
        let len = text.len() / 4 * 3 + text.len() % 4 * 3 / 4;
        let mut claims = if len <= INLINE_PAYLOAD {
            Claims::Inline {
                bytes: [0; INLINE_PAYLOAD],
                len,
            }
        } else {
            Claims::Heap(vec![0; len])
        };
        let out = match &mut claims {
            Claims::Inline { bytes, len } => bytes.get_mut(..*len)?,
            Claims::Heap(bytes) => bytes.as_mut_slice(),
        };
        base64url_decode(text, out)?;
        let is_object = RawJson::parse_bytes(out).is_some_and(RawJson::is_object);
        is_object.then_some(claims)
    }

    /// The claims, as a JSON object read in place.
    pub(crate) fn json(&self) -> RawJson<'_> {
        let bytes = match self {
            Claims::Inline { bytes, len } => bytes.get(..*len).unwrap_or_default(),
            Claims::Heap(bytes) => bytes,
        };
        // `decode` checked that these bytes are UTF-8 JSON.
        RawJson::checked(std::str::from_utf8(bytes).unwrap_or_default())
    }
}

/// The claims of the bearer token's payload. The signature is not checked: see the
/// module documentation.
pub(crate) fn bearer_claims(headers: &dyn Headers) -> Option<Claims> {
    let authorization = headers.get("authorization")?.trim();
    let (scheme, token) = authorization.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let payload = token.trim().split('.').nth(1)?;
    Claims::decode(payload)
}

/// A claim of the bearer token's payload, as text (strings as they are, numbers and
/// booleans as written).
pub(crate) fn bearer_claim(headers: &dyn Headers, claim: &str) -> Option<String> {
    bearer_claims(headers)?
        .json()
        .get(claim)?
        .as_text()
        .map(Cow::into_owned)
}

/// Decodes base64url (either alphabet, no padding) into `out`, which has room for
/// exactly the decoded bytes.
fn base64url_decode(text: &str, out: &mut [u8]) -> Option<()> {
    let mut buffer: u32 = 0;
    let mut bits = 0;
    let mut written = out.iter_mut();
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            *written.next()? = u8::try_from((buffer >> bits) & 0xff).ok()?;
        }
    }
    Some(())
}

/// The first partner whose match fits the request.
pub(crate) fn partner<'p>(
    partners: &'p [Partner],
    request: &Request<'_>,
    client_ip: Option<&str>,
) -> Option<(usize, &'p Partner)> {
    partners
        .iter()
        .enumerate()
        .find(|(_, partner)| match &partner.matcher {
            PartnerMatch::Header { name, value } => {
                request.headers.get(name) == Some(value.as_str())
            }
            PartnerMatch::Cidr { network, prefix } => client_ip
                .and_then(|ip| ip.parse::<IpAddr>().ok())
                .is_some_and(|ip| in_network(ip, *network, *prefix)),
            PartnerMatch::UriSan(san) => request
                .peer_uri_san
                .is_some_and(|peer| same_bytes(peer.as_bytes(), san.as_bytes())),
        })
}

fn in_network(ip: IpAddr, network: IpAddr, prefix: u8) -> bool {
    let mask = |bits: u32, width: u32| -> u128 {
        if bits == 0 {
            0
        } else {
            (u128::MAX << (width - bits.min(width))) & (u128::MAX >> (128 - width))
        }
    };
    match (ip, network) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let m = mask(u32::from(prefix), 32);
            u128::from(u32::from(a)) & m == u128::from(u32::from(b)) & m
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let m = mask(u32::from(prefix), 128);
            u128::from(a) & m == u128::from(b) & m
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(headers: &'a dyn Headers, source: Option<&'a str>) -> Request<'a> {
        Request {
            method: "GET",
            authority: "h",
            path: "/",
            headers,
            source_address: source,
            peer_uri_san: None,
            reference: "r",
        }
    }

    fn identity(hops: u32) -> Identity {
        Identity {
            trusted_hops: hops,
            forwarded_header: "x-forwarded-for".into(),
            user: vec![],
        }
    }

    #[test]
    fn the_socket_peer_is_the_client_without_trusted_hops() {
        let headers = [("x-forwarded-for", "6.6.6.6")];
        let r = request(&headers, Some("10.0.0.1:5555"));
        assert_eq!(client_ip(&r, &identity(0)), Some("10.0.0.1"));
    }

    #[test]
    fn trusted_hops_count_forwarded_entries_from_the_right() {
        let headers = [("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.9")];
        let r = request(&headers, Some("10.0.0.1:5555"));
        assert_eq!(client_ip(&r, &identity(1)), Some("10.0.0.9"));
        assert_eq!(client_ip(&r, &identity(2)), Some("1.2.3.4"));
        assert_eq!(
            client_ip(&r, &identity(5)),
            Some("10.0.0.1"),
            "too few entries: the peer"
        );
    }

    #[test]
    fn ports_are_stripped_from_ipv4_and_ipv6_peers() {
        assert_eq!(strip_port("[::1]:8080"), "::1");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(strip_port("1.2.3.4"), "1.2.3.4");
    }

    #[test]
    fn cookies_are_found_among_several_headers() {
        let headers = [("cookie", "a=1; theme=dark"), ("cookie", "sid=\"abc\"")];
        assert_eq!(cookie(&headers, "sid"), Some("abc"));
        assert_eq!(cookie(&headers, "theme"), Some("dark"));
        assert_eq!(cookie(&headers, "missing"), None);
    }

    #[test]
    fn a_bearer_claim_is_read_from_the_payload() {
        // {"sub":"alice","n":7} base64url without padding
        let token = "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSIsIm4iOjd9.sig";
        let headers = [("authorization", token)];
        assert_eq!(bearer_claim(&headers, "sub").as_deref(), Some("alice"));
        assert_eq!(bearer_claim(&headers, "n").as_deref(), Some("7"));
        assert_eq!(bearer_claim(&headers, "missing"), None);
    }

    #[test]
    fn malformed_tokens_give_no_claim() {
        for bad in [
            "Basic abc",
            "Bearer",
            "Bearer a.!!!.c",
            "Bearer a.bm90IGpzb24.c",
            "Bearer onlyone",
        ] {
            let headers = [("authorization", bad)];
            assert_eq!(bearer_claim(&headers, "sub"), None, "{bad}");
        }
    }

    #[test]
    fn networks_contain_their_addresses_only() {
        let net: IpAddr = "203.0.113.0".parse().unwrap();
        assert!(in_network("203.0.113.77".parse().unwrap(), net, 24));
        assert!(!in_network("203.0.114.1".parse().unwrap(), net, 24));
        assert!(in_network("1.1.1.1".parse().unwrap(), net, 0));
        let v6: IpAddr = "2001:db8::".parse().unwrap();
        assert!(in_network("2001:db8::5".parse().unwrap(), v6, 32));
        assert!(!in_network("2001:db9::5".parse().unwrap(), v6, 32));
        assert!(!in_network("203.0.113.1".parse().unwrap(), v6, 0));
    }
}

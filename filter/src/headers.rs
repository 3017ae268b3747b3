//! Header maps in the ABI's encoding: a count, then a (name length, value length) pair per
//! header, then each name and value followed by a NUL.
//!
//! [`HeaderMap`] is what the engine reads: a view of the one buffer the host handed over,
//! so a request costs no copy and no allocation per header. [`encode_into`] writes the
//! encoding; [`rewrite`] writes the response map with the engine's changes into a buffer
//! the worker reuses.

use std::borrow::Cow;
use std::ops::Range;

use stakeguard_policies::HeaderChange;
use stakeguard_policies::request::{Headers, same_name};

/// A header map as the host encoded it, owned (a stream keeps its request map to quote
/// the request later).
#[derive(Debug, Default)]
pub struct HeaderBytes(Vec<u8>);

impl From<Vec<u8>> for HeaderBytes {
    fn from(encoded: Vec<u8>) -> Self {
        Self(encoded)
    }
}

impl HeaderBytes {
    /// The map read in place; `None` when its lengths do not add up.
    pub fn read(&self) -> Option<HeaderMap<'_>> {
        HeaderMap::read(&self.0)
    }

    /// [`HeaderBytes::read`] into the allocation of a spare index.
    pub fn read_reusing(&self, spare: Vec<(&'static str, &'static str)>) -> Option<HeaderMap<'_>> {
        HeaderMap::read_reusing(&self.0, spare)
    }
}

/// A header value as the engine reads it (text, lossy where the bytes are not UTF-8) and
/// as it goes back to the host (its bytes, untouched).
#[derive(Debug)]
pub struct Value<'a> {
    bytes: &'a [u8],
    text: Cow<'a, str>,
}

impl<'a> Value<'a> {
    fn lossy(bytes: &'a [u8]) -> Self {
        Value {
            bytes,
            text: String::from_utf8_lossy(bytes),
        }
    }
}

impl AsRef<str> for Value<'_> {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

/// A header map read in place from its encoding: an index of slices of the host's buffer,
/// built once, which the engine's lookups scan.
#[derive(Debug)]
pub struct HeaderMap<'a> {
    pairs: Pairs<'a>,
    /// Bit `n % 64` is set when some name is `n` bytes long. Most lookups are for headers
    /// a map does not have (security headers, `origin`, `content-length`, ...), and most
    /// of those are answered here, without a scan.
    lengths: u64,
}

/// The bit of [`HeaderMap::lengths`] for a name of `len` bytes.
fn length_bit(len: usize) -> u64 {
    1 << (len % 64)
}

#[derive(Debug)]
enum Pairs<'a> {
    /// Every name and value is UTF-8 (almost every map): one validation for the whole
    /// map, then names and values are slices of it.
    Text(Vec<(&'a str, &'a str)>),
    /// Some name or value is not UTF-8: the engine reads those with replacement
    /// characters (a decision, never a trap); their bytes go back untouched.
    Lossy(Vec<(Value<'a>, Value<'a>)>),
}

/// What a map's names and values are cut from: its bytes, or its text once validated.
trait Data {
    fn cut(&self, range: Range<usize>) -> Option<&Self>;
    fn size(&self) -> usize;
}

impl Data for [u8] {
    fn cut(&self, range: Range<usize>) -> Option<&Self> {
        self.get(range)
    }

    fn size(&self) -> usize {
        self.len()
    }
}

impl Data for str {
    /// `None` also where the range would cut a character in two, which a host that
    /// encodes a map of text never makes it do.
    fn cut(&self, range: Range<usize>) -> Option<&Self> {
        self.get(range)
    }

    fn size(&self) -> usize {
        self.len()
    }
}

/// Calls `visit` with each header's name and value of an encoded map (count and length
/// table already split off), in order; false when a length runs past the data or cuts
/// it where it cannot be cut.
fn walk<'a, D: Data + ?Sized>(
    table: &[u8],
    data: &'a D,
    mut visit: impl FnMut(&'a D, &'a D),
) -> bool {
    let mut lengths = table;
    let mut at = 0usize;
    while let Some(([a, b, c, d, e, f, g, h], rest)) = lengths.split_first_chunk::<8>() {
        let entry = (|| {
            let name_len = usize::try_from(u32::from_le_bytes([*a, *b, *c, *d])).ok()?;
            let value_len = usize::try_from(u32::from_le_bytes([*e, *f, *g, *h])).ok()?;
            let name_end = at.checked_add(name_len)?;
            let value_start = name_end.checked_add(1)?;
            let value_end = value_start.checked_add(value_len)?;
            let name = data.cut(at..name_end)?;
            let value = data.cut(value_start..value_end)?;
            Some((name, value, value_end.checked_add(1)?))
        })();
        let Some((name, value, next)) = entry else {
            return false;
        };
        visit(name, value);
        at = next;
        lengths = rest;
    }
    // The NUL after the last value must be there too.
    at <= data.size()
}

/// The lists a worker keeps between streams, empty, for their allocations: the index of
/// a map ([`HeaderMap::read_reusing`]) and the headers of a rewrite ([`rewrite`]).
#[derive(Debug, Default)]
pub struct Spare {
    pub index: Vec<(&'static str, &'static str)>,
    pub pairs: Vec<(&'static [u8], &'static [u8])>,
}

/// An empty list with the allocation of `list`, for elements that borrow something else.
/// A vector's own iterator collected into elements of the same size and alignment keeps
/// its buffer (std collects in place); were it not to, this would allocate, nothing worse.
fn recycle<T, U>(mut list: Vec<T>) -> Vec<U> {
    list.clear();
    list.into_iter().filter_map(|_| None).collect()
}

impl<'a> HeaderMap<'a> {
    /// Reads an encoded map; `None` when its lengths do not add up.
    pub fn read(bytes: &'a [u8]) -> Option<HeaderMap<'a>> {
        Self::read_reusing(bytes, Vec::new())
    }

    /// [`HeaderMap::read`], indexing into the allocation of `spare` (see
    /// [`HeaderMap::into_spare`]).
    pub fn read_reusing(
        bytes: &'a [u8],
        spare: Vec<(&'static str, &'static str)>,
    ) -> Option<HeaderMap<'a>> {
        if bytes.is_empty() {
            return Some(HeaderMap {
                pairs: Pairs::Text(recycle(spare)),
                lengths: 0,
            });
        }
        let (count, rest) = bytes.split_first_chunk::<4>()?;
        let count = usize::try_from(u32::from_le_bytes(*count)).ok()?;
        let (table, data) = rest.split_at_checked(count.checked_mul(8)?)?;
        if let Ok(text) = std::str::from_utf8(data) {
            let mut pairs = recycle(spare);
            pairs.reserve(count);
            let mut lengths = 0;
            let whole = walk(table, text, |name: &'a str, value| {
                lengths |= length_bit(name.len());
                pairs.push((name, value));
            });
            if whole {
                return Some(HeaderMap {
                    pairs: Pairs::Text(pairs),
                    lengths,
                });
            }
        }
        // Not text, or cut where text cannot be cut (then read as bytes, which refuses
        // lengths that do not add up).
        let mut pairs = Vec::with_capacity(count);
        let mut lengths = 0;
        let whole = walk(table, data, |name, value| {
            let name = Value::lossy(name);
            lengths |= length_bit(name.text.len());
            pairs.push((name, Value::lossy(value)));
        });
        whole.then_some(HeaderMap {
            pairs: Pairs::Lossy(pairs),
            lengths,
        })
    }

    /// The map's index, emptied, for the next map to reuse.
    pub fn into_spare(self) -> Vec<(&'static str, &'static str)> {
        match self.pairs {
            Pairs::Text(pairs) => recycle(pairs),
            Pairs::Lossy(_) => Vec::new(),
        }
    }

    /// How many headers the map has.
    pub(crate) fn len(&self) -> usize {
        match &self.pairs {
            Pairs::Text(pairs) => pairs.len(),
            Pairs::Lossy(pairs) => pairs.len(),
        }
    }

    /// Calls `visit` with every header's name and value bytes, in order.
    pub fn for_each(&self, mut visit: impl FnMut(&'a [u8], &'a [u8])) {
        match &self.pairs {
            Pairs::Text(pairs) => {
                for (name, value) in pairs {
                    visit(name.as_bytes(), value.as_bytes());
                }
            }
            Pairs::Lossy(pairs) => {
                for (name, value) in pairs {
                    visit(name.bytes, value.bytes);
                }
            }
        }
    }
}

impl Headers for HeaderMap<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        if self.lengths & length_bit(name.len()) == 0 {
            return None;
        }
        match &self.pairs {
            Pairs::Text(pairs) => Headers::get(pairs.as_slice(), name),
            Pairs::Lossy(pairs) => Headers::get(pairs.as_slice(), name),
        }
    }

    fn all_values<'s>(&'s self, name: &str, visit: &mut dyn FnMut(&'s str) -> bool) -> bool {
        if self.lengths & length_bit(name.len()) == 0 {
            return true;
        }
        match &self.pairs {
            Pairs::Text(pairs) => pairs.as_slice().all_values(name, visit),
            Pairs::Lossy(pairs) => pairs.as_slice().all_values(name, visit),
        }
    }
}

/// Writes pairs in the ABI's map encoding into `out` (cleared first, its capacity kept):
/// sized once, then the length table, then the names and values. `None` past 4 GiB.
pub fn encode_into<N: AsRef<[u8]>>(out: &mut Vec<u8>, pairs: &[(N, &[u8])]) -> Option<()> {
    let mut size = pairs.len().checked_mul(8)?.checked_add(4)?;
    for (name, value) in pairs {
        size = size
            .checked_add(name.as_ref().len())?
            .checked_add(value.len())?
            .checked_add(2)?;
    }
    u32::try_from(size).ok()?;
    out.clear();
    out.reserve(size);
    // Every length fits in 32 bits: their sum does.
    let length = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    out.extend_from_slice(&length(pairs.len()));
    for (name, value) in pairs {
        out.extend_from_slice(&length(name.as_ref().len()));
        out.extend_from_slice(&length(value.len()));
    }
    for (name, value) in pairs {
        out.extend_from_slice(name.as_ref());
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
    Some(())
}

/// Encodes pairs in the ABI's map encoding; `None` past 4 GiB.
pub fn encode_map(pairs: &[(&str, &[u8])]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    encode_into(&mut out, pairs)?;
    Some(out)
}

/// The header a change sets, replaces or removes.
fn target(change: &HeaderChange) -> &[u8] {
    match change {
        HeaderChange::Set(name, _) | HeaderChange::Remove(name) => name.as_bytes(),
        HeaderChange::ReplaceSetCookies(_) => SET_COOKIE,
    }
}

/// Whether writing the response map back whole costs Envoy less than making `changes`
/// one call each. Measured in Envoy 1.40 (instructions per call, BENCHMARKS.md): writing
/// a map back about 8,200; replacing a header about 3,600; removing one about 2,000;
/// adding a value about 2,500.
pub fn whole_map_is_cheaper(changes: &[HeaderChange]) -> bool {
    const WHOLE: usize = 82;
    let one_by_one: usize = changes
        .iter()
        .map(|change| match change {
            HeaderChange::Set(..) => 36,
            HeaderChange::Remove(_) => 20,
            HeaderChange::ReplaceSetCookies(cookies) => 20 + 25 * cookies.len(),
        })
        .sum();
    one_by_one > WHOLE
}

/// Encodes `map` with `changes` applied in order into `out`: the headers no change
/// targets keep their place and their bytes; what the changes add goes last, unless a
/// later change targets the same name again. Names are compared without case and handed
/// over as the engine wrote them: the host lowercases names it stores (Envoy does).
/// `None` past 4 GiB.
pub fn rewrite(
    map: &HeaderMap<'_>,
    changes: &[HeaderChange],
    out: &mut Vec<u8>,
    spare: &mut Vec<(&'static [u8], &'static [u8])>,
) -> Option<()> {
    let mut pairs: Vec<(&[u8], &[u8])> = recycle(std::mem::take(spare));
    pairs.reserve(map.len() + changes.len());
    map.for_each(|name, value| {
        if !changes.iter().any(|c| same_name(target(c), name)) {
            pairs.push((name, value));
        }
    });
    for (i, change) in changes.iter().enumerate() {
        let name = target(change);
        let later = changes.get(i + 1..).unwrap_or_default();
        if later.iter().any(|c| same_name(target(c), name)) {
            continue;
        }
        match change {
            HeaderChange::Set(_, value) => pairs.push((name, value.as_bytes())),
            HeaderChange::ReplaceSetCookies(cookies) => {
                pairs.extend(cookies.iter().map(|c| (name, c.as_bytes())));
            }
            HeaderChange::Remove(_) => {}
        }
    }
    let encoded = encode_into(out, &pairs);
    *spare = recycle(pairs);
    encoded
}

const SET_COOKIE: &[u8] = b"set-cookie";

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs<'a>(map: &HeaderMap<'a>) -> Vec<(&'a [u8], &'a [u8])> {
        let mut out = Vec::new();
        map.for_each(|n, v| out.push((n, v)));
        out
    }

    #[test]
    fn a_map_reads_back_what_was_encoded() {
        let encoded =
            encode_map(&[(":path", b"/a"), ("x", b"1"), ("X-Two", b"2"), ("x", b"3")]).unwrap();
        let map = HeaderMap::read(&encoded).unwrap();
        assert!(matches!(map.pairs, Pairs::Text(_)));
        assert_eq!(map.get(":path"), Some("/a"));
        assert_eq!(map.get("x-two"), Some("2"));
        assert_eq!(map.get("missing"), None);
        let mut all = Vec::new();
        assert!(map.all_values("x", &mut |v| {
            all.push(v);
            true
        }));
        assert_eq!(all, ["1", "3"]);
        assert!(!map.all_values("x", &mut |_| false));
        assert_eq!(HeaderMap::read(&[]).map(|m| pairs(&m)), Some(Vec::new()));
    }

    #[test]
    fn lookups_skip_maps_without_a_name_of_that_length_and_only_those() {
        let long = "x".repeat(67);
        let encoded = encode_map(&[("abc", b"1"), (long.as_str(), b"2")]).unwrap();
        let map = HeaderMap::read(&encoded).unwrap();
        assert_eq!(map.get("ABC"), Some("1"));
        assert_eq!(map.get(&long), Some("2"));
        // 3 and 67 share a bit: the scan decides.
        assert_eq!(map.get("xyz"), None);
        assert_eq!(map.get(&"y".repeat(67)), None);
        assert_eq!(map.get("ab"), None);
        assert!(map.all_values("abcd", &mut |_| false));
    }

    #[test]
    fn a_spare_index_is_reused_not_reallocated() {
        let encoded = encode_map(&[(":path", b"/a"), ("x", b"1")]).unwrap();
        let spare = Vec::with_capacity(8);
        let buffer = spare.as_ptr() as usize;
        let map = HeaderMap::read_reusing(&encoded, spare).unwrap();
        assert_eq!(map.get("x"), Some("1"));
        let spare = map.into_spare();
        assert_eq!((spare.as_ptr() as usize, spare.capacity()), (buffer, 8));
        assert!(spare.is_empty());
    }

    #[test]
    fn values_that_are_not_utf8_are_read_lossily_and_kept_as_bytes() {
        let encoded = encode_map(&[(":path", b"/a"), ("x-bin", b"a\xffb")]).unwrap();
        let map = HeaderMap::read(&encoded).unwrap();
        assert!(matches!(map.pairs, Pairs::Lossy(_)));
        assert_eq!(map.get(":path"), Some("/a"));
        assert_eq!(map.get("x-bin"), Some("a\u{fffd}b"));
        assert_eq!(
            pairs(&map),
            [(&b":path"[..], &b"/a"[..]), (b"x-bin", b"a\xffb")]
        );
    }

    #[test]
    fn a_length_that_cuts_a_character_in_two_is_read_lossily() {
        // One header: name length 1, value length 0, over the data "é\0" (valid text).
        let mut encoded = vec![1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
        encoded.extend_from_slice("é\0".as_bytes());
        let map = HeaderMap::read(&encoded).unwrap();
        assert!(matches!(map.pairs, Pairs::Lossy(_)));
        assert_eq!(map.get("\u{fffd}"), Some(""));
        assert_eq!(pairs(&map), [(&b"\xc3"[..], &b""[..])]);
    }

    #[test]
    fn a_map_whose_lengths_do_not_add_up_is_refused_not_trapped_on() {
        let encoded = encode_map(&[("name", b"value")]).unwrap();
        for cut in 1..encoded.len() - 1 {
            assert!(HeaderMap::read(&encoded[..cut]).is_none(), "cut at {cut}");
        }
        let mut huge = encoded.clone();
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(HeaderMap::read(&huge).is_none());
        let mut long_name = encoded;
        long_name[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(HeaderMap::read(&long_name).is_none());
    }

    #[test]
    fn a_rewrite_applies_changes_in_order_and_keeps_untouched_bytes() {
        let encoded = encode_map(&[
            (":status", b"200"),
            ("server", b"x"),
            ("set-cookie", b"a=1"),
            ("cache-control", b"public"),
            ("set-cookie", b"b=2"),
            ("x-bin", b"\xff"),
            ("x-gone", b"1"),
        ])
        .unwrap();
        let map = HeaderMap::read(&encoded).unwrap();
        let changes = [
            HeaderChange::Remove("Server".into()),
            HeaderChange::Set("cache-control".into(), "no-store".into()),
            HeaderChange::ReplaceSetCookies(vec!["a=1; Secure".into(), "b=2; Secure".into()]),
            HeaderChange::Set("x-gone".into(), "set".into()),
            HeaderChange::Remove("X-Gone".into()),
        ];
        let mut out = vec![1, 2, 3];
        rewrite(&map, &changes, &mut out, &mut Vec::new()).unwrap();
        let expected: [(&str, &[u8]); 5] = [
            (":status", b"200"),
            ("x-bin", b"\xff"),
            ("cache-control", b"no-store"),
            ("set-cookie", b"a=1; Secure"),
            ("set-cookie", b"b=2; Secure"),
        ];
        assert_eq!(out, encode_map(&expected).unwrap());
    }

    #[test]
    fn encoding_reuses_the_buffer_and_refuses_nothing_that_fits() {
        let mut out = vec![9; 64];
        encode_into(&mut out, &[("a", &b"1"[..])]).unwrap();
        assert_eq!(out, [1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, b'a', 0, b'1', 0]);
        assert!(out.capacity() >= 64);
    }
}

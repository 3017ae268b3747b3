//! An HPACK decoder (RFC 7541) for the request header blocks the [`super::h2`] server
//! receives: the static table, the dynamic table (its size bounded by the 4,096 bytes
//! the server's SETTINGS leave in place, with eviction and size updates), integers,
//! and string literals plain or Huffman-coded. The server's own header blocks are
//! literals without indexing, so it needs no encoder beyond [`super::h2::hpack_int`].

use std::collections::{HashMap, VecDeque};
use std::sync::OnceLock;

/// Why a header block does not decode (a connection error: `COMPRESSION_ERROR`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    /// The block ends inside a representation.
    #[error("the header block is cut short")]
    Truncated,
    /// An integer does not fit.
    #[error("an integer overflows")]
    Overflow,
    /// An index names no entry (0, or beyond the tables).
    #[error("index {0} is in neither table")]
    BadIndex(usize),
    /// Huffman data with a bad code, the EOS symbol, or bad padding.
    #[error("bad Huffman coding")]
    Huffman,
    /// A dynamic table size update above the limit, or after the first field.
    #[error("bad dynamic table size update")]
    SizeUpdate,
}

/// The static table (RFC 7541 appendix A), index 1 first.
const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// The Huffman code (RFC 7541 appendix B): (code, length in bits) for each byte value,
/// then EOS (256).
#[rustfmt::skip]
const HUFFMAN: [(u32, u8); 257] = [
    (0x1ff8, 13), (0x7fffd8, 23), (0xfffffe2, 28), (0xfffffe3, 28), (0xfffffe4, 28), (0xfffffe5, 28),
    (0xfffffe6, 28), (0xfffffe7, 28), (0xfffffe8, 28), (0xffffea, 24), (0x3ffffffc, 30), (0xfffffe9, 28),
    (0xfffffea, 28), (0x3ffffffd, 30), (0xfffffeb, 28), (0xfffffec, 28), (0xfffffed, 28), (0xfffffee, 28),
    (0xfffffef, 28), (0xffffff0, 28), (0xffffff1, 28), (0xffffff2, 28), (0x3ffffffe, 30), (0xffffff3, 28),
    (0xffffff4, 28), (0xffffff5, 28), (0xffffff6, 28), (0xffffff7, 28), (0xffffff8, 28), (0xffffff9, 28),
    (0xffffffa, 28), (0xffffffb, 28), (0x14, 6), (0x3f8, 10), (0x3f9, 10), (0xffa, 12),
    (0x1ff9, 13), (0x15, 6), (0xf8, 8), (0x7fa, 11), (0x3fa, 10), (0x3fb, 10),
    (0xf9, 8), (0x7fb, 11), (0xfa, 8), (0x16, 6), (0x17, 6), (0x18, 6),
    (0x0, 5), (0x1, 5), (0x2, 5), (0x19, 6), (0x1a, 6), (0x1b, 6),
    (0x1c, 6), (0x1d, 6), (0x1e, 6), (0x1f, 6), (0x5c, 7), (0xfb, 8),
    (0x7ffc, 15), (0x20, 6), (0xffb, 12), (0x3fc, 10), (0x1ffa, 13), (0x21, 6),
    (0x5d, 7), (0x5e, 7), (0x5f, 7), (0x60, 7), (0x61, 7), (0x62, 7),
    (0x63, 7), (0x64, 7), (0x65, 7), (0x66, 7), (0x67, 7), (0x68, 7),
    (0x69, 7), (0x6a, 7), (0x6b, 7), (0x6c, 7), (0x6d, 7), (0x6e, 7),
    (0x6f, 7), (0x70, 7), (0x71, 7), (0x72, 7), (0xfc, 8), (0x73, 7),
    (0xfd, 8), (0x1ffb, 13), (0x7fff0, 19), (0x1ffc, 13), (0x3ffc, 14), (0x22, 6),
    (0x7ffd, 15), (0x3, 5), (0x23, 6), (0x4, 5), (0x24, 6), (0x5, 5),
    (0x25, 6), (0x26, 6), (0x27, 6), (0x6, 5), (0x74, 7), (0x75, 7),
    (0x28, 6), (0x29, 6), (0x2a, 6), (0x7, 5), (0x2b, 6), (0x76, 7),
    (0x2c, 6), (0x8, 5), (0x9, 5), (0x2d, 6), (0x77, 7), (0x78, 7),
    (0x79, 7), (0x7a, 7), (0x7b, 7), (0x7ffe, 15), (0x7fc, 11), (0x3ffd, 14),
    (0x1ffd, 13), (0xffffffc, 28), (0xfffe6, 20), (0x3fffd2, 22), (0xfffe7, 20), (0xfffe8, 20),
    (0x3fffd3, 22), (0x3fffd4, 22), (0x3fffd5, 22), (0x7fffd9, 23), (0x3fffd6, 22), (0x7fffda, 23),
    (0x7fffdb, 23), (0x7fffdc, 23), (0x7fffdd, 23), (0x7fffde, 23), (0xffffeb, 24), (0x7fffdf, 23),
    (0xffffec, 24), (0xffffed, 24), (0x3fffd7, 22), (0x7fffe0, 23), (0xffffee, 24), (0x7fffe1, 23),
    (0x7fffe2, 23), (0x7fffe3, 23), (0x7fffe4, 23), (0x1fffdc, 21), (0x3fffd8, 22), (0x7fffe5, 23),
    (0x3fffd9, 22), (0x7fffe6, 23), (0x7fffe7, 23), (0xffffef, 24), (0x3fffda, 22), (0x1fffdd, 21),
    (0xfffe9, 20), (0x3fffdb, 22), (0x3fffdc, 22), (0x7fffe8, 23), (0x7fffe9, 23), (0x1fffde, 21),
    (0x7fffea, 23), (0x3fffdd, 22), (0x3fffde, 22), (0xfffff0, 24), (0x1fffdf, 21), (0x3fffdf, 22),
    (0x7fffeb, 23), (0x7fffec, 23), (0x1fffe0, 21), (0x1fffe1, 21), (0x3fffe0, 22), (0x1fffe2, 21),
    (0x7fffed, 23), (0x3fffe1, 22), (0x7fffee, 23), (0x7fffef, 23), (0xfffea, 20), (0x3fffe2, 22),
    (0x3fffe3, 22), (0x3fffe4, 22), (0x7ffff0, 23), (0x3fffe5, 22), (0x3fffe6, 22), (0x7ffff1, 23),
    (0x3ffffe0, 26), (0x3ffffe1, 26), (0xfffeb, 20), (0x7fff1, 19), (0x3fffe7, 22), (0x7ffff2, 23),
    (0x3fffe8, 22), (0x1ffffec, 25), (0x3ffffe2, 26), (0x3ffffe3, 26), (0x3ffffe4, 26), (0x7ffffde, 27),
    (0x7ffffdf, 27), (0x3ffffe5, 26), (0xfffff1, 24), (0x1ffffed, 25), (0x7fff2, 19), (0x1fffe3, 21),
    (0x3ffffe6, 26), (0x7ffffe0, 27), (0x7ffffe1, 27), (0x3ffffe7, 26), (0x7ffffe2, 27), (0xfffff2, 24),
    (0x1fffe4, 21), (0x1fffe5, 21), (0x3ffffe8, 26), (0x3ffffe9, 26), (0xffffffd, 28), (0x7ffffe3, 27),
    (0x7ffffe4, 27), (0x7ffffe5, 27), (0xfffec, 20), (0xfffff3, 24), (0xfffed, 20), (0x1fffe6, 21),
    (0x3fffe9, 22), (0x1fffe7, 21), (0x1fffe8, 21), (0x7ffff3, 23), (0x3fffea, 22), (0x3fffeb, 22),
    (0x1ffffee, 25), (0x1ffffef, 25), (0xfffff4, 24), (0xfffff5, 24), (0x3ffffea, 26), (0x7ffff4, 23),
    (0x3ffffeb, 26), (0x7ffffe6, 27), (0x3ffffec, 26), (0x3ffffed, 26), (0x7ffffe7, 27), (0x7ffffe8, 27),
    (0x7ffffe9, 27), (0x7ffffea, 27), (0x7ffffeb, 27), (0xffffffe, 28), (0x7ffffec, 27), (0x7ffffed, 27),
    (0x7ffffee, 27), (0x7ffffef, 27), (0x7fffff0, 27), (0x3ffffee, 26), (0x3fffffff, 30),
];

/// The symbol of each (length, code) pair.
fn huffman_symbols() -> &'static HashMap<(u8, u32), u16> {
    static SYMBOLS: OnceLock<HashMap<(u8, u32), u16>> = OnceLock::new();
    SYMBOLS.get_or_init(|| {
        (0u16..)
            .zip(HUFFMAN)
            .map(|(sym, (code, len))| ((len, code), sym))
            .collect()
    })
}

/// Decodes Huffman-coded bytes: codes are 5 to 30 bits, and the last byte is padded with
/// the most significant bits of EOS (all ones), fewer than 8 of them.
pub fn huffman_decode(data: &[u8]) -> Result<Vec<u8>, HpackError> {
    let symbols = huffman_symbols();
    let mut out = Vec::with_capacity(data.len() * 8 / 5);
    // Bits not yet decoded, the oldest highest; never more than 30 + 8 of them.
    let (mut acc, mut bits) = (0u64, 0u8);
    for &byte in data {
        acc = (acc << 8) | u64::from(byte);
        bits += 8;
        'decode: while bits >= 5 {
            for len in 5..=bits.min(30) {
                let code = ((acc >> (bits - len)) & ((1 << len) - 1)) as u32;
                if let Some(&sym) = symbols.get(&(len, code)) {
                    let Ok(byte) = u8::try_from(sym) else {
                        return Err(HpackError::Huffman);
                    };
                    out.push(byte);
                    bits -= len;
                    acc &= (1 << bits) - 1;
                    continue 'decode;
                }
            }
            if bits >= 30 {
                return Err(HpackError::Huffman);
            }
            break;
        }
    }
    // What is left must be padding: fewer than 8 bits, all ones.
    if bits >= 8 || acc != (1 << bits) - 1 {
        return Err(HpackError::Huffman);
    }
    Ok(out)
}

/// The header table size this server's SETTINGS leave in place (the default).
pub const TABLE_LIMIT: usize = 4096;

/// One connection's decoding state.
#[derive(Debug)]
pub struct Decoder {
    /// Newest first (dynamic index 62 is the front).
    table: VecDeque<(String, String)>,
    /// The table's size (RFC 7541 section 4.1: each entry's bytes plus 32).
    size: usize,
    /// The size the peer's last update set.
    max_size: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self {
            table: VecDeque::new(),
            size: 0,
            max_size: TABLE_LIMIT,
        }
    }
}

/// Reads an integer with an `n`-bit prefix from the first byte of `input` (at most
/// four continuation bytes: 2^28 and more is no size or index a peer needs).
fn read_int(input: &mut &[u8], n: u32) -> Result<usize, HpackError> {
    let (&first, rest) = input.split_first().ok_or(HpackError::Truncated)?;
    *input = rest;
    let max = (1u64 << n) - 1;
    let mut value = u64::from(first) & max;
    if value < max {
        return usize::try_from(value).map_err(|_| HpackError::Overflow);
    }
    for shift in [0, 7, 14, 21] {
        let (&byte, rest) = input.split_first().ok_or(HpackError::Truncated)?;
        *input = rest;
        value += u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return usize::try_from(value).map_err(|_| HpackError::Overflow);
        }
    }
    Err(HpackError::Overflow)
}

/// Reads a string literal: an H bit and a 7-bit prefix length, then the bytes (lossy
/// UTF-8, as header values are read everywhere in the harness).
fn read_string(input: &mut &[u8]) -> Result<String, HpackError> {
    let huffman = input.first().is_some_and(|b| b & 0x80 != 0);
    let len = read_int(input, 7)?;
    if input.len() < len {
        return Err(HpackError::Truncated);
    }
    let (bytes, rest) = input.split_at(len);
    *input = rest;
    let bytes = match huffman {
        true => huffman_decode(bytes)?,
        false => bytes.to_vec(),
    };
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

impl Decoder {
    /// The entry at a (1-based) index of the static table followed by the dynamic one.
    fn entry(&self, index: usize) -> Result<(String, String), HpackError> {
        let found = match index {
            0 => None,
            1..=61 => STATIC
                .get(index - 1)
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
            _ => self.table.get(index - 62).cloned(),
        };
        found.ok_or(HpackError::BadIndex(index))
    }

    /// Evicts the oldest entries until the table fits in `max`.
    fn evict_to(&mut self, max: usize) {
        while self.size > max {
            let Some((n, v)) = self.table.pop_back() else {
                break;
            };
            self.size -= n.len() + v.len() + 32;
        }
    }

    /// Adds an entry (section 4.4: one larger than the table empties it).
    fn insert(&mut self, name: String, value: String) {
        let size = name.len() + value.len() + 32;
        self.evict_to(self.max_size.saturating_sub(size));
        if size <= self.max_size {
            self.size += size;
            self.table.push_front((name, value));
        }
    }

    /// Decodes one whole header block, updating the dynamic table.
    pub fn decode(&mut self, block: &[u8]) -> Result<Vec<(String, String)>, HpackError> {
        let mut input = block;
        let mut fields = Vec::new();
        while let Some(&first) = input.first() {
            if first & 0x80 != 0 {
                fields.push(self.entry(read_int(&mut input, 7)?)?);
            } else if first & 0xe0 == 0x20 {
                // Size updates come only before the first field.
                let size = read_int(&mut input, 5)?;
                if !fields.is_empty() || size > TABLE_LIMIT {
                    return Err(HpackError::SizeUpdate);
                }
                self.max_size = size;
                self.evict_to(size);
            } else {
                // Literals: with incremental indexing (01, 6-bit index), without
                // indexing (0000) or never indexed (0001, 4-bit index).
                let indexing = first & 0xc0 == 0x40;
                let index = read_int(&mut input, if indexing { 6 } else { 4 })?;
                let name = match index {
                    0 => read_string(&mut input)?,
                    i => self.entry(i)?.0,
                };
                let value = read_string(&mut input)?;
                if indexing {
                    self.insert(name.clone(), value.clone());
                }
                fields.push((name, value));
            }
        }
        Ok(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// RFC 7541 appendix C.3 (plain literals) and C.4 (the same requests Huffman-coded):
    /// three requests on one connection, the dynamic table carrying `:authority` and
    /// `cache-control` from one to the next.
    #[test]
    fn the_rfcs_request_examples_decode() {
        let first = [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ];
        let second = [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
            ("cache-control", "no-cache"),
        ];
        let third = [
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ];
        for blocks in [
            [
                "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
                "8286 84be 5808 6e6f 2d63 6163 6865",
                "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
            ],
            [
                "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
                "8286 84be 5886 a8eb 1064 9cbf",
                "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
            ],
        ] {
            let mut d = Decoder::default();
            let sizes: Vec<usize> = blocks
                .iter()
                .zip([&first[..], &second[..], &third[..]])
                .map(|(block, want)| {
                    assert_eq!(d.decode(&hex(block)).unwrap(), pairs(want));
                    d.size
                })
                .collect();
            assert_eq!(sizes, [57, 110, 164]);
            assert_eq!(d.table[0], ("custom-key".into(), "custom-value".into()));
        }
    }

    #[test]
    fn a_smaller_table_evicts_the_oldest_entries() {
        let mut d = Decoder::default();
        // Size update to 100 (31 + 69), then two literals with indexing of 73 bytes each
        // (40 + 1 + 32): the second evicts the first.
        let mut block = hex("3f45");
        for value in ["a", "b"] {
            block.push(0x40);
            block.push(40);
            block.extend_from_slice("x".repeat(40).as_bytes());
            block.push(1);
            block.extend_from_slice(value.as_bytes());
        }
        // Index 62 is the newest entry.
        block.push(0x80 | 62);
        let fields = d.decode(&block).unwrap();
        assert_eq!(fields[2], ("x".repeat(40), "b".into()));
        assert_eq!((d.table.len(), d.size), (1, 73));
        assert_eq!(d.decode(&[0x80 | 63]), Err(HpackError::BadIndex(63)));
        // An update above the limit, or after a field, is refused.
        assert_eq!(d.decode(&hex("3fe21f")), Err(HpackError::SizeUpdate));
        assert_eq!(d.decode(&hex("8220")), Err(HpackError::SizeUpdate));
        // An update to 0 empties the table.
        d.decode(&[0x20]).unwrap();
        assert_eq!((d.table.len(), d.size), (0, 0));
    }

    #[test]
    fn bad_blocks_are_errors_not_panics() {
        let mut d = Decoder::default();
        assert_eq!(d.decode(&[0x80]), Err(HpackError::BadIndex(0)));
        assert_eq!(d.decode(&[0x41, 0x05, b'a']), Err(HpackError::Truncated));
        assert_eq!(
            d.decode(&hex("7f ff ff ff ff 0f")),
            Err(HpackError::Overflow)
        );
        // Huffman: padding of 8 bits or more, padding that is not ones, EOS itself.
        assert_eq!(huffman_decode(&hex("1f ff")), Err(HpackError::Huffman));
        assert_eq!(huffman_decode(&hex("00")), Err(HpackError::Huffman));
        assert_eq!(
            huffman_decode(&hex("ff ff ff ff")),
            Err(HpackError::Huffman)
        );
        assert_eq!(
            huffman_decode(&hex("f1e3c2e5f23a6ba0ab90f4ff")).unwrap(),
            b"www.example.com"
        );
    }
}

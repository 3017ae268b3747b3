//! Envoy's rate limit service API (RLS v3), encoded and decoded by hand: the
//! `ShouldRateLimit` request the filter sends and the answer it reads.
//!
//! A protobuf library would cost the module more than the two messages need (the size
//! budget of `stakeguard.wasm` is tight), so the few fields used are written here from
//! `envoy/service/ratelimit/v3/rls.proto` and
//! `envoy/extensions/common/ratelimit/v3/ratelimit.proto`:
//!
//! ```text
//! RateLimitRequest { 1 domain: string, 2 descriptors: repeated RateLimitDescriptor,
//!                    3 hits_addend: uint32 }
//! RateLimitDescriptor { 1 entries: repeated Entry { 1 key, 2 value },
//!                       2 limit: RateLimitOverride { 1 requests_per_unit: uint32,
//!                                                    2 unit: RateLimitUnit },
//!                       3 hits_addend: google.protobuf.UInt64Value { 1 value } }
//! RateLimitResponse { 1 overall_code: Code, 2 statuses: repeated DescriptorStatus,
//!                     3 response_headers_to_add: repeated HeaderValue { 1 key, 2 value,
//!                                                                       3 raw_value }, ... }
//! DescriptorStatus { 1 code: Code, 2 current_limit: RateLimit { 1 requests_per_unit,
//!                    2 unit, 3 name }, 3 limit_remaining: uint32,
//!                    4 duration_until_reset: google.protobuf.Duration { 1 seconds,
//!                    2 nanos } }
//! ```
//!
//! The decoder reads whatever bytes the host hands over (the answer of a service we do
//! not control) without trapping: every length is checked, unknown fields are skipped,
//! and anything it cannot make sense of is `None`, which the engine treats as the
//! service failing.

/// The service and method the filter calls.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
/// See [`SERVICE`].
pub const METHOD: &str = "ShouldRateLimit";

/// The most descriptor statuses an answer may carry: a request sends at most a few.
pub const MAX_STATUSES: usize = 64;

/// The most `response_headers_to_add` an answer may carry (envoyproxy/ratelimit sends
/// three, the `RateLimit-*` ones); more and the answer is refused.
pub const MAX_HEADERS: usize = 16;

/// The longest header value kept from an answer, in bytes.
const MAX_HEADER_VALUE: usize = 1_024;

/// `envoy.type.v3.RateLimitUnit`: the windows a limit in the request can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// `SECOND` (1).
    Second = 1,
    /// `MINUTE` (2).
    Minute = 2,
    /// `HOUR` (3).
    Hour = 3,
    /// `DAY` (4).
    Day = 4,
}

impl Unit {
    /// The unit a window is, when it is exactly one of them.
    pub fn of_window(ms: u64) -> Option<Unit> {
        match ms {
            1_000 => Some(Unit::Second),
            60_000 => Some(Unit::Minute),
            3_600_000 => Some(Unit::Hour),
            86_400_000 => Some(Unit::Day),
            _ => None,
        }
    }

    /// The unit's protobuf number.
    pub fn number(self) -> u64 {
        self as u64
    }

    /// The unit's length; `None` for numbers no window of ours uses (months, years).
    pub fn from_number(n: u64) -> Option<Unit> {
        match n {
            1 => Some(Unit::Second),
            2 => Some(Unit::Minute),
            3 => Some(Unit::Hour),
            4 => Some(Unit::Day),
            _ => None,
        }
    }

    /// The window's length in milliseconds.
    pub fn ms(self) -> u64 {
        match self {
            Unit::Second => 1_000,
            Unit::Minute => 60_000,
            Unit::Hour => 3_600_000,
            Unit::Day => 86_400_000,
        }
    }

    /// The name envoyproxy/ratelimit's configuration uses.
    pub fn name(self) -> &'static str {
        match self {
            Unit::Second => "second",
            Unit::Minute => "minute",
            Unit::Hour => "hour",
            Unit::Day => "day",
        }
    }
}

/// One descriptor of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor<'a> {
    /// Key-value entries, in order.
    pub entries: &'a [(&'a str, &'a str)],
    /// The limit, when the request carries it (`RateLimitDescriptor.limit`).
    pub limit: Option<(u32, Unit)>,
    /// How many hits the descriptor adds; 0 asks without counting.
    pub hits: u64,
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn varint_field(out: &mut Vec<u8>, field: u32, value: u64) {
    tag(out, field, 0);
    varint(out, value);
}

fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    tag(out, field, 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends a `RateLimitRequest` to `out`. `scratch` holds each nested message while it
/// is measured.
pub fn encode_request(
    domain: &str,
    descriptors: &[Descriptor<'_>],
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) {
    encode_domain(domain, out);
    for descriptor in descriptors {
        encode_descriptor(descriptor, out, scratch);
    }
}

/// Appends the request's `domain` field (field order is free in protobuf: descriptors
/// may follow one by one).
pub fn encode_domain(domain: &str, out: &mut Vec<u8>) {
    bytes_field(out, 1, domain.as_bytes());
}

/// Appends one `descriptors` field of a request.
#[cold]
pub fn encode_descriptor(descriptor: &Descriptor<'_>, out: &mut Vec<u8>, scratch: &mut Vec<u8>) {
    scratch.clear();
    let mut entry = Vec::new();
    for (key, value) in descriptor.entries {
        entry.clear();
        bytes_field(&mut entry, 1, key.as_bytes());
        bytes_field(&mut entry, 2, value.as_bytes());
        bytes_field(scratch, 1, &entry);
    }
    if let Some((requests, unit)) = descriptor.limit {
        entry.clear();
        varint_field(&mut entry, 1, u64::from(requests));
        varint_field(&mut entry, 2, unit.number());
        bytes_field(scratch, 2, &entry);
    }
    // The wrapper is always written, a 0 included: unset would mean the request's
    // hits_addend (1), and 0 is the question "over the limit already?".
    entry.clear();
    if descriptor.hits > 0 {
        varint_field(&mut entry, 1, descriptor.hits);
    }
    bytes_field(scratch, 3, &entry);
    bytes_field(out, 2, scratch);
}

/// `RateLimitResponse.Code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// `UNKNOWN` (0).
    Unknown,
    /// `OK` (1).
    Ok,
    /// `OVER_LIMIT` (2).
    OverLimit,
}

impl Code {
    fn from_number(n: u64) -> Code {
        match n {
            1 => Code::Ok,
            2 => Code::OverLimit,
            _ => Code::Unknown,
        }
    }
}

/// What the service said of one descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Over the limit or not.
    pub code: Code,
    /// The limit the service applied, and its window.
    pub limit: Option<(u32, Option<Unit>)>,
    /// Hits left in the window.
    pub remaining: u32,
    /// How long until the window resets, in milliseconds.
    pub reset_ms: Option<u64>,
}

/// A decoded `RateLimitResponse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The overall code: over when any descriptor is.
    pub overall: Code,
    /// One status per descriptor of the request, in order (empty when the service sent
    /// none).
    pub statuses: Vec<Status>,
    /// Headers the service asks to add to the response (`response_headers_to_add`),
    /// names lowercased; entries that are no valid header are left out.
    pub headers: Vec<(String, String)>,
}

/// A protobuf field as read: its number and its value.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// Fixed-width values, skipped.
    Fixed,
}

/// Reads the fields of one message in order; `None` ends the message (at its end, or at
/// the first malformed byte, which [`Fields::failed`] then reports).
struct Fields<'a> {
    bytes: &'a [u8],
    failed: bool,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            failed: false,
        }
    }

    fn read_varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.bytes.split_first()?;
            self.bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn take(&mut self, n: u64) -> Option<&'a [u8]> {
        let n = usize::try_from(n).ok()?;
        if n > self.bytes.len() {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    fn field(&mut self) -> Option<(u64, Value<'a>)> {
        let key = self.read_varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.read_varint()?),
            1 => self.take(8).map(|_| Value::Fixed)?,
            2 => {
                let len = self.read_varint()?;
                Value::Bytes(self.take(len)?)
            }
            5 => self.take(4).map(|_| Value::Fixed)?,
            _ => return None,
        };
        Some((key >> 3, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (u64, Value<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.bytes.is_empty() || self.failed {
            return None;
        }
        let field = self.field();
        if field.is_none() {
            self.failed = true;
        }
        field
    }
}

fn decode_status(bytes: &[u8]) -> Option<Status> {
    let mut status = Status {
        code: Code::Unknown,
        limit: None,
        remaining: 0,
        reset_ms: None,
    };
    let mut fields = Fields::new(bytes);
    for (number, value) in fields.by_ref() {
        match (number, value) {
            (1, Value::Varint(n)) => status.code = Code::from_number(n),
            (2, Value::Bytes(limit)) => {
                let (mut requests, mut unit) = (0u32, None);
                let mut inner = Fields::new(limit);
                for (number, value) in inner.by_ref() {
                    match (number, value) {
                        (1, Value::Varint(n)) => requests = u32::try_from(n).unwrap_or(u32::MAX),
                        (2, Value::Varint(n)) => unit = Unit::from_number(n),
                        _ => {}
                    }
                }
                if inner.failed {
                    return None;
                }
                status.limit = Some((requests, unit));
            }
            (3, Value::Varint(n)) => status.remaining = u32::try_from(n).unwrap_or(u32::MAX),
            (4, Value::Bytes(duration)) => {
                let (mut seconds, mut nanos) = (0u64, 0u64);
                let mut inner = Fields::new(duration);
                for (number, value) in inner.by_ref() {
                    match (number, value) {
                        // Negative durations (int64 as a ten-byte varint) mean nothing
                        // here: read as "no time left".
                        (1, Value::Varint(n)) => seconds = if n >> 63 == 1 { 0 } else { n },
                        (2, Value::Varint(n)) => nanos = if n >> 63 == 1 { 0 } else { n },
                        _ => {}
                    }
                }
                if inner.failed {
                    return None;
                }
                status.reset_ms = Some(
                    seconds
                        .saturating_mul(1_000)
                        .saturating_add(nanos.min(999_999_999) / 1_000_000),
                );
            }
            _ => {}
        }
    }
    (!fields.failed).then_some(status)
}

/// A `HeaderValue` the filter can hand to the host: a token name (so no pseudo-header
/// and nothing that splits the header block) and a value without control characters.
/// `Some(None)` is well-formed protobuf carrying no such header; `None` is malformed.
fn decode_header(bytes: &[u8]) -> Option<Option<(String, String)>> {
    let (mut name, mut value): (&[u8], &[u8]) = (&[], &[]);
    let mut fields = Fields::new(bytes);
    for (number, field) in fields.by_ref() {
        if let (1, Value::Bytes(b)) = (number, &field) {
            name = b;
        }
        // `raw_value` (3) supersedes `value` (2) in newer Envoys: either carries it.
        if let (2 | 3, Value::Bytes(b)) = (number, &field) {
            value = b;
        }
    }
    if fields.failed {
        return None;
    }
    let plain = |c: &u8| *c == b'\t' || (b' '..=b'~').contains(c);
    let fits = !name.is_empty()
        && name.len() <= 128
        && name.iter().all(|b| crate::routes::is_token_byte(*b))
        && value.len() <= MAX_HEADER_VALUE
        && value.iter().all(plain);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Some(fits.then(|| (text(name).to_ascii_lowercase(), text(value.trim_ascii()))))
}

/// Decodes a `RateLimitResponse`; `None` for bytes that are not one, or that hold more
/// than [`MAX_STATUSES`] statuses or [`MAX_HEADERS`] headers.
#[cold]
pub fn decode_response(bytes: &[u8]) -> Option<Answer> {
    let mut answer = Answer {
        overall: Code::Unknown,
        statuses: Vec::new(),
        headers: Vec::new(),
    };
    let mut fields = Fields::new(bytes);
    for (number, value) in fields.by_ref() {
        match (number, value) {
            (1, Value::Varint(n)) => answer.overall = Code::from_number(n),
            (2, Value::Bytes(status)) => {
                if answer.statuses.len() >= MAX_STATUSES {
                    return None;
                }
                answer.statuses.push(decode_status(status)?);
            }
            (3, Value::Bytes(header)) => {
                if answer.headers.len() >= MAX_HEADERS {
                    return None;
                }
                answer.headers.extend(decode_header(header)?);
            }
            _ => {}
        }
    }
    (!fields.failed).then_some(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_encoded_field_by_field() {
        let entries = [("api", "a@v1")];
        let mut out = Vec::new();
        encode_request(
            "d",
            &[Descriptor {
                entries: &entries,
                limit: Some((300, Unit::Minute)),
                hits: 1,
            }],
            &mut out,
            &mut Vec::new(),
        );
        let expected: &[u8] = &[
            0x0a, 1, b'd', // domain
            0x12, 24, // descriptor
            0x0a, 11, 0x0a, 3, b'a', b'p', b'i', 0x12, 4, b'a', b'@', b'v', b'1', // entry
            0x12, 5, 0x08, 0xac, 0x02, 0x10, 2, // limit: 300 per minute
            0x1a, 2, 0x08, 1, // hits_addend 1
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn a_zero_hits_addend_is_sent_as_an_empty_wrapper() {
        let mut out = Vec::new();
        encode_request(
            "d",
            &[Descriptor {
                entries: &[],
                limit: None,
                hits: 0,
            }],
            &mut out,
            &mut Vec::new(),
        );
        assert_eq!(out, [0x0a, 1, b'd', 0x12, 2, 0x1a, 0]);
    }

    #[test]
    fn an_answer_is_decoded_with_its_statuses() {
        let bytes = [
            0x08, 2, // OVER_LIMIT
            0x12, 14, // status
            0x08, 2, 0x12, 4, 0x08, 25, 0x10, 2, 0x18, 0, // code, limit 25/min, remaining 0
            0x22, 2, 0x08, 42, // 42s to reset
            0x12, 2, 0x08, 1, // a second status: OK
            0x1a, 0, // a response header without a name (left out)
        ];
        let answer = decode_response(&bytes).unwrap();
        assert_eq!(answer.overall, Code::OverLimit);
        assert_eq!(
            answer.statuses,
            [
                Status {
                    code: Code::OverLimit,
                    limit: Some((25, Some(Unit::Minute))),
                    remaining: 0,
                    reset_ms: Some(42_000),
                },
                Status {
                    code: Code::Ok,
                    limit: None,
                    remaining: 0,
                    reset_ms: None,
                },
            ]
        );
    }

    #[test]
    fn truncated_or_malformed_answers_are_refused() {
        assert_eq!(decode_response(&[0x12, 5, 0x08]), None);
        assert_eq!(decode_response(&[0x08]), None);
        assert_eq!(decode_response(&[0x0b]), None); // a group: wire type 3
        assert_eq!(
            decode_response(&[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ]),
            None
        );
        assert_eq!(
            decode_response(&[]),
            Some(Answer {
                overall: Code::Unknown,
                statuses: Vec::new(),
                headers: Vec::new(),
            })
        );
    }

    fn header(name: &[u8], value: &[u8], field: u32) -> Vec<u8> {
        let mut inner = Vec::new();
        bytes_field(&mut inner, 1, name);
        bytes_field(&mut inner, field, value);
        let mut out = Vec::new();
        bytes_field(&mut out, 3, &inner);
        out
    }

    #[test]
    fn response_headers_to_add_are_kept_when_they_are_headers() {
        let bytes: Vec<u8> = [
            vec![0x08, 1],
            header(b"RateLimit-Remaining", b" 7 ", 2),
            header(b"x-raw", b"r", 3),
            header(b":status", b"200", 2),
            header(b"x-split", b"a\r\nset-cookie: b", 2),
            header(b"x-long", &[b'a'; MAX_HEADER_VALUE + 1], 2),
        ]
        .concat();
        let answer = decode_response(&bytes).unwrap();
        assert_eq!(
            answer.headers,
            [
                ("ratelimit-remaining".to_owned(), "7".to_owned()),
                ("x-raw".to_owned(), "r".to_owned()),
            ]
        );
        let many: Vec<u8> = (0..=MAX_HEADERS)
            .flat_map(|_| header(b"x", b"y", 2))
            .collect();
        assert_eq!(decode_response(&many), None);
        let mut truncated = header(b"x", b"y", 2);
        truncated[1] += 1;
        assert_eq!(decode_response(&truncated), None);
    }

    #[test]
    fn too_many_statuses_are_refused() {
        let bytes: Vec<u8> = (0..=MAX_STATUSES).flat_map(|_| [0x12, 0]).collect();
        assert_eq!(decode_response(&bytes), None);
    }

    #[test]
    fn any_bytes_decode_without_panicking() {
        // A cheap sweep; the fuzz corpus goes further.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = decode_response(&bytes);
        }
    }
}

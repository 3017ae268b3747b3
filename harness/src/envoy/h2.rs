//! A small HTTP/2 server over cleartext with prior knowledge (h2c, RFC 9113), on
//! `127.0.0.1:<free port>`, that answers each stream as a handler says from the
//! request's headers: headers, body and trailers after a delay, a reset, or no answer. It is what the callout stubs
//! need to answer Envoy's gRPC clients (which speak HTTP/2 only) and to send trailers,
//! and nothing more, so it has no HTTP dependency:
//!
//! - the connection preface, SETTINGS (each acknowledged; `INITIAL_WINDOW_SIZE` and
//!   `MAX_FRAME_SIZE` honoured), PING answered, PRIORITY and unknown frame types
//!   ignored, GOAWAY from the peer ends the connection once its streams are done;
//! - flow control both ways: what it sends waits for the connection's and the stream's
//!   send windows; what it receives is handed back at once (WINDOW_UPDATE per DATA);
//! - request HEADERS and CONTINUATION are read whole and decoded ([`super::hpack`]), and
//!   the request's headers choose the answer; response header blocks are HPACK literals
//!   without indexing, without Huffman coding, each block opened by a dynamic table size
//!   update to 0 (so whatever table size the peer's SETTINGS allow, this encoder uses
//!   none of it);
//! - a stream the peer resets (RST_STREAM) gets nothing more.
//!
//! One thread accepts, one reads each connection, and one answers each stream; frames are
//! written whole under one lock per connection.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::hpack::Decoder;
use super::upstream::{accept_in_background, lock};

/// What every client sends first (RFC 9113 section 3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types (RFC 9113 section 6).
pub mod frame {
    /// DATA
    pub const DATA: u8 = 0x0;
    /// HEADERS
    pub const HEADERS: u8 = 0x1;
    /// RST_STREAM
    pub const RST_STREAM: u8 = 0x3;
    /// SETTINGS
    pub const SETTINGS: u8 = 0x4;
    /// PUSH_PROMISE
    pub const PUSH_PROMISE: u8 = 0x5;
    /// PING
    pub const PING: u8 = 0x6;
    /// GOAWAY
    pub const GOAWAY: u8 = 0x7;
    /// WINDOW_UPDATE
    pub const WINDOW_UPDATE: u8 = 0x8;
    /// CONTINUATION
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags.
pub mod flag {
    /// END_STREAM (DATA, HEADERS)
    pub const END_STREAM: u8 = 0x1;
    /// ACK (SETTINGS, PING)
    pub const ACK: u8 = 0x1;
    /// END_HEADERS (HEADERS, CONTINUATION)
    pub const END_HEADERS: u8 = 0x4;
    /// PADDED (DATA, HEADERS)
    pub const PADDED: u8 = 0x8;
    /// PRIORITY (HEADERS: 5 bytes of priority before the header block)
    pub const PRIORITY: u8 = 0x20;
}

/// Error codes (RFC 9113 section 7).
pub mod code {
    /// PROTOCOL_ERROR
    pub const PROTOCOL_ERROR: u32 = 0x1;
    /// INTERNAL_ERROR
    pub const INTERNAL_ERROR: u32 = 0x2;
    /// FLOW_CONTROL_ERROR
    pub const FLOW_CONTROL_ERROR: u32 = 0x3;
    /// FRAME_SIZE_ERROR
    pub const FRAME_SIZE_ERROR: u32 = 0x6;
    /// COMPRESSION_ERROR
    pub const COMPRESSION_ERROR: u32 = 0x9;
}

const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;
/// The window every stream and the connection start with.
const DEFAULT_WINDOW: i64 = 65_535;
/// The largest frame payload either side may send until told otherwise; this server
/// never raises what it accepts.
const DEFAULT_MAX_FRAME: usize = 16_384;
/// The largest window flow control allows.
const MAX_WINDOW: i64 = (1 << 31) - 1;

/// One answer to a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// The response headers, `:status` among them (names are sent lowercased).
    pub headers: Vec<(String, String)>,
    /// The body (no DATA frame when empty).
    pub body: Vec<u8>,
    /// The trailers (no trailing HEADERS frame when empty: the stream then ends with the
    /// body, or with the headers when the body is empty too, as a gRPC trailers-only
    /// answer does).
    pub trailers: Vec<(String, String)>,
}

/// How the server answers a stream, timed from the stream's request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// This response after this long.
    After(Duration, Response),
    /// After this long, these response headers (none when empty), then RST_STREAM
    /// (`INTERNAL_ERROR`).
    Reset(Duration, Vec<(String, String)>),
    /// Never answer: the stream stays open until the peer resets it or the server
    /// stops.
    Never,
}

/// A frame's 9-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    /// Payload length.
    pub len: usize,
    /// Frame type.
    pub kind: u8,
    /// Flags.
    pub flags: u8,
    /// Stream identifier (the reserved bit cleared).
    pub stream: u32,
}

impl FrameHead {
    /// Parses the 9 bytes.
    pub fn parse(b: [u8; 9]) -> Self {
        let [l0, l1, l2, kind, flags, s0, s1, s2, s3] = b;
        Self {
            len: (usize::from(l0) << 16) | (usize::from(l1) << 8) | usize::from(l2),
            kind,
            flags,
            stream: u32::from_be_bytes([s0, s1, s2, s3]) & 0x7fff_ffff,
        }
    }
}

/// A whole frame: header and payload (which must fit in 24 bits).
pub fn encode_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len().to_be_bytes();
    let mut out = Vec::with_capacity(9 + payload.len());
    let [.., a, b, c] = len;
    out.extend_from_slice(&[a, b, c]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Appends an HPACK integer (RFC 7541 section 5.1) with an `n`-bit prefix whose upper
/// bits are `first`.
pub fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// An HPACK header block of literals without indexing, new names, no Huffman coding
/// (RFC 7541 section 6.2.2), opened by a dynamic table size update to 0 (section 6.3).
pub fn encode_header_block(headers: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    hpack_int(&mut out, 0x20, 5, 0);
    for (name, value) in headers {
        out.push(0x00);
        let name = name.to_ascii_lowercase();
        hpack_int(&mut out, 0x00, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, 0x00, 7, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// Header names HTTP/2 forbids (connection-specific, RFC 9113 section 8.2.2): a response
/// header or trailer of these names is not sent.
const NOT_SENT: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
];

/// The headers or trailers of `h` that may go on the wire.
pub fn sendable(h: &[(String, String)]) -> Vec<(String, String)> {
    h.iter()
        .filter(|(name, _)| !NOT_SENT.iter().any(|n| n.eq_ignore_ascii_case(name)))
        .cloned()
        .collect()
}

/// The send side of one stream.
struct StreamState {
    /// What may still be sent on it.
    window: i64,
    /// Reset by the peer (or by us): send nothing more.
    reset: bool,
    /// The peer ended its side (END_STREAM): its window needs no more updates.
    remote_done: bool,
}

/// What the reader and the stream answerers of one connection share.
struct ConnState {
    /// The connection's send window.
    window: i64,
    /// The peer's `SETTINGS_INITIAL_WINDOW_SIZE`.
    initial_window: i64,
    /// The peer's `SETTINGS_MAX_FRAME_SIZE`.
    max_frame: usize,
    /// Open streams.
    streams: HashMap<u32, StreamState>,
    /// The connection is gone: every answerer gives up.
    closed: bool,
}

struct Conn {
    writer: Mutex<TcpStream>,
    state: Mutex<ConnState>,
    changed: Condvar,
}

impl Conn {
    fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        lock(&self.writer).write_all(bytes)
    }

    fn send(&self, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> std::io::Result<()> {
        self.write(&encode_frame(kind, flags, stream, payload))
    }

    /// GOAWAY with this code, then the connection is done.
    fn go_away(&self, last_stream: u32, error: u32) {
        let mut payload = last_stream.to_be_bytes().to_vec();
        payload.extend_from_slice(&error.to_be_bytes());
        let _ = self.send(frame::GOAWAY, 0, 0, &payload);
        self.close();
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.changed.notify_all();
        let _ = lock(&self.writer).shutdown(Shutdown::Both);
    }

    /// Whether the stream can still be answered.
    fn live(&self, stream: u32) -> bool {
        let state = lock(&self.state);
        !state.closed && state.streams.get(&stream).is_some_and(|s| !s.reset)
    }

    /// A header block as HEADERS and as many CONTINUATION frames as the peer's frame size
    /// needs, written together.
    fn send_headers(&self, stream: u32, headers: &[(String, String)], end_stream: bool) -> bool {
        let block = encode_header_block(headers);
        let max = lock(&self.state).max_frame;
        // Never empty: a block opens with its table size update.
        let chunks: Vec<&[u8]> = block.chunks(max).collect();
        let mut bytes = Vec::new();
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let (kind, mut flags) = match i {
                0 => (
                    frame::HEADERS,
                    if end_stream { flag::END_STREAM } else { 0 },
                ),
                _ => (frame::CONTINUATION, 0),
            };
            if i == last {
                flags |= flag::END_HEADERS;
            }
            bytes.extend_from_slice(&encode_frame(kind, flags, stream, chunk));
        }
        self.write(&bytes).is_ok()
    }

    /// The body as DATA frames, each waiting for room in both send windows.
    fn send_data(&self, stream: u32, body: &[u8], end_stream: bool) -> bool {
        let mut rest = body;
        while !rest.is_empty() {
            let n = {
                let mut state = lock(&self.state);
                loop {
                    if state.closed {
                        return false;
                    }
                    let conn_window = state.window;
                    let max_frame = state.max_frame;
                    let Some(s) = state.streams.get_mut(&stream) else {
                        return false;
                    };
                    if s.reset {
                        return false;
                    }
                    let room = conn_window.min(s.window);
                    if room > 0 {
                        let n = rest.len().min(max_frame).min(room as usize);
                        s.window -= n as i64;
                        state.window -= n as i64;
                        break n;
                    }
                    state = self
                        .changed
                        .wait(state)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
            };
            let (chunk, after) = rest.split_at(n);
            rest = after;
            let flags = if end_stream && rest.is_empty() {
                flag::END_STREAM
            } else {
                0
            };
            if self.send(frame::DATA, flags, stream, chunk).is_err() {
                return false;
            }
        }
        true
    }

    /// Answers one stream, on its own thread.
    fn answer(&self, stream: u32, answer: &Answer, stop: &AtomicBool) {
        match answer {
            Answer::After(delay, response) => {
                std::thread::sleep(*delay);
                if self.live(stream) {
                    self.respond(stream, response);
                }
            }
            Answer::Reset(delay, headers) => {
                std::thread::sleep(*delay);
                let headers = sendable(headers);
                let sent = headers.is_empty()
                    || (self.live(stream) && self.send_headers(stream, &headers, false));
                if sent && self.live(stream) {
                    let _ = self.send(
                        frame::RST_STREAM,
                        0,
                        stream,
                        &code::INTERNAL_ERROR.to_be_bytes(),
                    );
                }
            }
            Answer::Never => {
                // Polling the stop flag, not waiting for a condition: only the peer's
                // reset or the server's end finish this stream.
                while !stop.load(Ordering::Relaxed) && self.live(stream) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        lock(&self.state).streams.remove(&stream);
    }

    fn respond(&self, stream: u32, r: &Response) {
        let (headers, trailers) = (sendable(&r.headers), sendable(&r.trailers));
        let headers_end = r.body.is_empty() && trailers.is_empty();
        if !self.send_headers(stream, &headers, headers_end) || headers_end {
            return;
        }
        if !r.body.is_empty() && !self.send_data(stream, &r.body, trailers.is_empty()) {
            return;
        }
        if !trailers.is_empty() && self.live(stream) {
            self.send_headers(stream, &trailers, true);
        }
    }
}

/// How a server answers: called once per stream with the request's headers (in order,
/// pseudo-headers first), from the connection's thread.
pub type Handler = dyn Fn(&[(String, String)]) -> Answer + Send + Sync;

struct Shared {
    handler: Box<Handler>,
    stop: AtomicBool,
}

/// A running HTTP/2 server; stops accepting on drop.
pub struct Server {
    port: u16,
    shared: Arc<Shared>,
}

impl Server {
    /// Starts a server on a free loopback port that answers each stream with `handler`.
    pub fn start(handler: Box<Handler>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            handler,
            stop: AtomicBool::new(false),
        });
        accept_in_background(listener, "h2", &shared, |s| &s.stop, serve)?;
        Ok(Self { port, shared })
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Reads one frame; `None` at the end of the connection or on a read error.
fn read_frame(r: &mut impl Read) -> Option<(FrameHead, Vec<u8>)> {
    let mut head = [0u8; 9];
    r.read_exact(&mut head).ok()?;
    let head = FrameHead::parse(head);
    // The payload is read only once its length is known to be within what we accept.
    if head.len > DEFAULT_MAX_FRAME {
        return Some((head, Vec::new()));
    }
    let mut payload = vec![0u8; head.len];
    r.read_exact(&mut payload).ok()?;
    Some((head, payload))
}

/// The payload without its padding (PADDED flag), or `None` when the padding is longer
/// than the frame.
fn unpadded(flags: u8, payload: &[u8]) -> Option<&[u8]> {
    if flags & flag::PADDED == 0 {
        return Some(payload);
    }
    let (&pad, rest) = payload.split_first()?;
    rest.len()
        .checked_sub(usize::from(pad))
        .and_then(|end| rest.get(..end))
}

fn serve(tcp: TcpStream, shared: &Arc<Shared>) {
    let Ok(writer) = tcp.try_clone() else {
        return;
    };
    let mut reader = std::io::BufReader::new(tcp);
    let mut preface = [0u8; 24];
    if reader.read_exact(&mut preface).is_err() || &preface != PREFACE {
        return;
    }
    let conn = Arc::new(Conn {
        writer: Mutex::new(writer),
        state: Mutex::new(ConnState {
            window: DEFAULT_WINDOW,
            initial_window: DEFAULT_WINDOW,
            max_frame: DEFAULT_MAX_FRAME,
            streams: HashMap::new(),
            closed: false,
        }),
        changed: Condvar::new(),
    });
    // Our SETTINGS: the defaults are all this server needs.
    if conn.send(frame::SETTINGS, 0, 0, &[]).is_err() {
        return;
    }
    let error = read_loop(&mut reader, &conn, shared);
    match error {
        Some((last, code)) => conn.go_away(last, code),
        None => conn.close(),
    }
}

/// What the reading side of a connection keeps between frames.
#[derive(Default)]
struct Reading {
    /// The highest stream the peer opened (for GOAWAY).
    last_stream: u32,
    /// The peer sent GOAWAY: it opens no more streams.
    going_away: bool,
    /// The request header blocks' decoding state.
    decoder: Decoder,
    /// A header block still open (CONTINUATION frames must follow at once): its stream,
    /// whether its HEADERS ended the stream, and the fragments so far.
    open: Option<(u32, bool)>,
    block: Vec<u8>,
}

/// Reads frames until the connection ends (`None`) or the peer breaks the protocol
/// (`Some((last stream, error code))` for the GOAWAY).
fn read_loop(reader: &mut impl Read, conn: &Arc<Conn>, shared: &Arc<Shared>) -> Option<(u32, u32)> {
    let mut r = Reading::default();
    loop {
        let (head, payload) = read_frame(reader)?;
        match on_frame(&mut r, head, &payload, conn, shared) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(code) => return Some((r.last_stream, code)),
        }
    }
}

/// Handles one frame: `Ok(false)` when the connection can no longer be written,
/// `Err(code)` for a connection error.
fn on_frame(
    r: &mut Reading,
    head: FrameHead,
    payload: &[u8],
    conn: &Arc<Conn>,
    shared: &Arc<Shared>,
) -> Result<bool, u32> {
    if head.len > DEFAULT_MAX_FRAME {
        return Err(code::FRAME_SIZE_ERROR);
    }
    if let Some((stream, _)) = r.open
        && (head.kind != frame::CONTINUATION || head.stream != stream)
    {
        return Err(code::PROTOCOL_ERROR);
    }
    let written = match head.kind {
        frame::SETTINGS if head.flags & flag::ACK == 0 => {
            if head.stream != 0 || !head.len.is_multiple_of(6) {
                return Err(code::FRAME_SIZE_ERROR);
            }
            apply_settings(conn, payload)?;
            conn.send(frame::SETTINGS, flag::ACK, 0, &[])
        }
        frame::PING if head.flags & flag::ACK == 0 => conn.send(frame::PING, flag::ACK, 0, payload),
        frame::WINDOW_UPDATE => {
            let bytes = <[u8; 4]>::try_from(payload).map_err(|_| code::FRAME_SIZE_ERROR)?;
            let increment = i64::from(u32::from_be_bytes(bytes) & 0x7fff_ffff);
            window_update(conn, head.stream, increment)?;
            Ok(())
        }
        frame::HEADERS => {
            let skip = if head.flags & flag::PRIORITY != 0 {
                5
            } else {
                0
            };
            let fragment = unpadded(head.flags, payload)
                .and_then(|p| p.get(skip..))
                .filter(|_| head.stream != 0)
                .ok_or(code::PROTOCOL_ERROR)?;
            r.block.clear();
            r.block.extend_from_slice(fragment);
            r.open = Some((head.stream, head.flags & flag::END_STREAM != 0));
            if head.flags & flag::END_HEADERS != 0 {
                on_block(r, conn, shared)?;
            }
            Ok(())
        }
        frame::CONTINUATION => {
            if r.open.is_none_or(|(stream, _)| stream != head.stream) {
                return Err(code::PROTOCOL_ERROR);
            }
            r.block.extend_from_slice(payload);
            if head.flags & flag::END_HEADERS != 0 {
                on_block(r, conn, shared)?;
            }
            Ok(())
        }
        frame::DATA => {
            if head.stream == 0 || unpadded(head.flags, payload).is_none() {
                return Err(code::PROTOCOL_ERROR);
            }
            on_data(conn, head)
        }
        frame::RST_STREAM => {
            if head.stream == 0 || head.len != 4 {
                return Err(code::PROTOCOL_ERROR);
            }
            if let Some(s) = lock(&conn.state).streams.get_mut(&head.stream) {
                s.reset = true;
            }
            conn.changed.notify_all();
            Ok(())
        }
        frame::GOAWAY => {
            // The peer opens no more streams; those it has go on until it closes.
            r.going_away = true;
            Ok(())
        }
        frame::PUSH_PROMISE => return Err(code::PROTOCOL_ERROR),
        // PRIORITY, acknowledgements and unknown types: nothing to do.
        _ => Ok(()),
    };
    Ok(written.is_ok())
}

/// A whole header block: a new stream's request headers (answered on a thread of its
/// own) or a request's trailers.
fn on_block(r: &mut Reading, conn: &Arc<Conn>, shared: &Arc<Shared>) -> Result<(), u32> {
    let Some((stream, ends)) = r.open.take() else {
        return Ok(());
    };
    // Every block is decoded, trailers too: the dynamic table depends on all of them.
    let headers = r
        .decoder
        .decode(&r.block)
        .map_err(|_| code::COMPRESSION_ERROR)?;
    let mut state = lock(&conn.state);
    if let Some(s) = state.streams.get_mut(&stream) {
        s.remote_done |= ends;
        return Ok(());
    }
    if stream <= r.last_stream {
        // Trailers of a stream already answered.
        return Ok(());
    }
    if stream.is_multiple_of(2) {
        return Err(code::PROTOCOL_ERROR);
    }
    r.last_stream = stream;
    if r.going_away {
        return Ok(());
    }
    let window = state.initial_window;
    state.streams.insert(
        stream,
        StreamState {
            window,
            reset: false,
            remote_done: ends,
        },
    );
    drop(state);
    let answer = (shared.handler)(&headers);
    let (conn, shared) = (Arc::clone(conn), Arc::clone(shared));
    std::thread::Builder::new()
        .name("h2-stream".to_owned())
        .spawn(move || conn.answer(stream, &answer, &shared.stop))
        .map(|_| ())
        .map_err(|_| code::INTERNAL_ERROR)
}

/// Received DATA is consumed at once (the request body is not needed): both windows get
/// it back, the stream's only while the peer may send more on it.
fn on_data(conn: &Conn, head: FrameHead) -> std::io::Result<()> {
    let ends = head.flags & flag::END_STREAM != 0;
    let n = (head.len as u32).to_be_bytes();
    let mut updates = Vec::new();
    if head.len > 0 {
        updates.extend(encode_frame(frame::WINDOW_UPDATE, 0, 0, &n));
    }
    if let Some(s) = lock(&conn.state).streams.get_mut(&head.stream) {
        if head.len > 0 && !s.remote_done && !ends {
            updates.extend(encode_frame(frame::WINDOW_UPDATE, 0, head.stream, &n));
        }
        s.remote_done |= ends;
    }
    match updates.is_empty() {
        true => Ok(()),
        false => conn.write(&updates),
    }
}

/// Applies the peer's SETTINGS: a new initial window moves every open stream's window by
/// the difference (RFC 9113 section 6.9.2).
fn apply_settings(conn: &Conn, payload: &[u8]) -> Result<(), u32> {
    let mut state = lock(&conn.state);
    for entry in payload.chunks_exact(6) {
        let [i0, i1, v0, v1, v2, v3] =
            <[u8; 6]>::try_from(entry).map_err(|_| code::FRAME_SIZE_ERROR)?;
        let value = u32::from_be_bytes([v0, v1, v2, v3]);
        match u16::from_be_bytes([i0, i1]) {
            SETTINGS_INITIAL_WINDOW_SIZE => {
                let value = i64::from(value);
                if value > MAX_WINDOW {
                    return Err(code::FLOW_CONTROL_ERROR);
                }
                let delta = value - state.initial_window;
                state.initial_window = value;
                for s in state.streams.values_mut() {
                    s.window += delta;
                    if s.window > MAX_WINDOW {
                        return Err(code::FLOW_CONTROL_ERROR);
                    }
                }
            }
            SETTINGS_MAX_FRAME_SIZE => {
                if !(16_384..=16_777_215).contains(&value) {
                    return Err(code::PROTOCOL_ERROR);
                }
                state.max_frame = value as usize;
            }
            // The header table size needs nothing (this encoder uses no table); the rest
            // limit what a server does not do (push, many streams of its own).
            _ => {}
        }
    }
    drop(state);
    conn.changed.notify_all();
    Ok(())
}

/// Adds a WINDOW_UPDATE's increment to the connection's window (stream 0) or a stream's.
fn window_update(conn: &Conn, stream: u32, increment: i64) -> Result<(), u32> {
    let mut state = lock(&conn.state);
    if stream == 0 {
        if increment == 0 {
            return Err(code::PROTOCOL_ERROR);
        }
        state.window += increment;
        if state.window > MAX_WINDOW {
            return Err(code::FLOW_CONTROL_ERROR);
        }
    } else if let Some(s) = state.streams.get_mut(&stream) {
        s.window += increment;
        // A stream-level error ends only that stream: it is answered no further.
        if increment == 0 || s.window > MAX_WINDOW {
            s.reset = true;
            let error = match increment {
                0 => code::PROTOCOL_ERROR,
                _ => code::FLOW_CONTROL_ERROR,
            };
            drop(state);
            conn.changed.notify_all();
            let _ = conn.send(frame::RST_STREAM, 0, stream, &error.to_be_bytes());
            return Ok(());
        }
    }
    drop(state);
    conn.changed.notify_all();
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A client speaking just enough HTTP/2 to drive the server frame by frame.
    struct Client {
        tcp: TcpStream,
    }

    impl Client {
        /// Connects, sends the preface and SETTINGS with these entries, and reads the
        /// server's SETTINGS and its acknowledgement of ours.
        fn connect(server: &Server, settings: &[(u16, u32)]) -> Self {
            let tcp = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut c = Self { tcp };
            let mut payload = Vec::new();
            for (id, value) in settings {
                payload.extend_from_slice(&id.to_be_bytes());
                payload.extend_from_slice(&value.to_be_bytes());
            }
            c.tcp.write_all(PREFACE).unwrap();
            c.send(frame::SETTINGS, 0, 0, &payload);
            let (head, _) = c.read();
            assert_eq!((head.kind, head.flags, head.len), (frame::SETTINGS, 0, 0));
            let (head, _) = c.read();
            assert_eq!((head.kind, head.flags), (frame::SETTINGS, flag::ACK));
            c
        }

        fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
            self.tcp
                .write_all(&encode_frame(kind, flags, stream, payload))
                .unwrap();
        }

        /// Opens a stream with a request header block (`:method GET`, indexed: the
        /// server does not decode it).
        fn request(&mut self, stream: u32, end_stream: bool) {
            let end = if end_stream { flag::END_STREAM } else { 0 };
            self.send(frame::HEADERS, flag::END_HEADERS | end, stream, &[0x82]);
        }

        fn read(&mut self) -> (FrameHead, Vec<u8>) {
            read_frame(&mut self.tcp).expect("a frame")
        }
    }

    /// Decodes a block this server encoded (a size update, then literals without
    /// indexing with short new names and values).
    fn decode(block: &[u8]) -> Vec<(String, String)> {
        let (first, mut rest) = block.split_first().unwrap();
        assert_eq!(*first, 0x20, "opens with a table size update to 0");
        let mut out = Vec::new();
        let string = |rest: &mut &[u8]| {
            let (len, tail) = rest.split_first().unwrap();
            assert!(*len < 0x7f, "a short string without Huffman coding");
            let (s, tail) = tail.split_at(usize::from(*len));
            *rest = tail;
            String::from_utf8(s.to_vec()).unwrap()
        };
        while let Some((0x00, tail)) = rest.split_first() {
            rest = tail;
            let name = string(&mut rest);
            out.push((name, string(&mut rest)));
        }
        assert!(rest.is_empty());
        out
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn always(answer: Answer) -> Server {
        Server::start(Box::new(move |_| answer.clone())).unwrap()
    }

    fn respond(headers: &[(&str, &str)], body: &[u8], trailers: &[(&str, &str)]) -> Server {
        always(Answer::After(
            Duration::ZERO,
            Response {
                headers: pairs(headers),
                body: body.to_vec(),
                trailers: pairs(trailers),
            },
        ))
    }

    #[test]
    fn hpack_integers_are_rfc_7541s_examples() {
        let int = |first, n, v| {
            let mut out = Vec::new();
            hpack_int(&mut out, first, n, v);
            out
        };
        assert_eq!(int(0, 5, 10), [10]);
        assert_eq!(int(0, 5, 1337), [31, 154, 10]);
        assert_eq!(int(0, 8, 42), [42]);
        assert_eq!(int(0x20, 5, 31), [0x3f, 0]);
        // A literal without indexing, new name (section 6.2.2 and example C.2.2's shape).
        assert_eq!(
            encode_header_block(&pairs(&[("X-A", "b")])),
            [0x20, 0x00, 3, b'x', b'-', b'a', 1, b'b']
        );
    }

    #[test]
    fn frame_headers_round_trip() {
        let bytes = encode_frame(frame::DATA, flag::END_STREAM, 0x8000_0003, &[1, 2, 3]);
        let head = FrameHead::parse(bytes[..9].try_into().unwrap());
        assert_eq!(
            head,
            FrameHead {
                len: 3,
                kind: frame::DATA,
                flags: flag::END_STREAM,
                stream: 3
            }
        );
        assert_eq!(&bytes[9..], [1, 2, 3]);
    }

    #[test]
    fn a_stream_gets_headers_data_and_trailers_and_pings_are_answered() {
        let server = respond(
            &[(":status", "200"), ("X-Up", "1"), ("connection", "close")],
            b"hello",
            &[("x-t", "2")],
        );
        let mut c = Client::connect(&server, &[]);
        c.send(frame::PING, 0, 0, b"12345678");
        c.request(1, true);
        let mut frames = Vec::new();
        // Until the trailers (a PING ACK has the same flag bit as END_STREAM).
        while !frames.iter().any(|(h, _): &(FrameHead, Vec<u8>)| {
            h.kind == frame::HEADERS && h.flags & flag::END_STREAM != 0
        }) {
            frames.push(c.read());
        }
        let ping = frames.iter().find(|(h, _)| h.kind == frame::PING).unwrap();
        assert_eq!(
            (ping.0.flags, ping.1.as_slice()),
            (flag::ACK, &b"12345678"[..])
        );
        let stream: Vec<_> = frames.iter().filter(|(h, _)| h.stream == 1).collect();
        let [(h1, block), (d, data), (h2, trailers)] = stream.as_slice() else {
            panic!("{stream:?}")
        };
        assert_eq!((h1.kind, h1.flags), (frame::HEADERS, flag::END_HEADERS));
        // Names lowercased, connection-specific headers left out.
        assert_eq!(decode(block), pairs(&[(":status", "200"), ("x-up", "1")]));
        assert_eq!(
            (d.kind, d.flags, data.as_slice()),
            (frame::DATA, 0, &b"hello"[..])
        );
        assert_eq!(
            (h2.kind, h2.flags),
            (frame::HEADERS, flag::END_HEADERS | flag::END_STREAM)
        );
        assert_eq!(decode(trailers), pairs(&[("x-t", "2")]));
    }

    #[test]
    fn the_handler_sees_each_requests_decoded_headers() {
        // Echoes the request's headers in a response header.
        let server = Server::start(Box::new(|request: &[(String, String)]| {
            let seen: Vec<String> = request.iter().map(|(n, v)| format!("{n}={v}")).collect();
            Answer::After(
                Duration::ZERO,
                Response {
                    headers: vec![("x-seen".to_owned(), seen.join(";"))],
                    body: Vec::new(),
                    trailers: Vec::new(),
                },
            )
        }))
        .unwrap();
        let mut c = Client::connect(&server, &[]);
        // RFC 7541 C.4.1 and C.4.2 (Huffman-coded; the second refers to the dynamic
        // table entry the first made), the first split over a CONTINUATION, with padding.
        let first = [
            0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b,
        ];
        let mut padded = vec![2];
        padded.extend_from_slice(&first);
        padded.extend_from_slice(&[0, 0]);
        c.send(frame::HEADERS, flag::PADDED | flag::END_STREAM, 1, &padded);
        c.send(
            frame::CONTINUATION,
            flag::END_HEADERS,
            1,
            &[0xa0, 0xab, 0x90, 0xf4, 0xff],
        );
        c.send(
            frame::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            3,
            &[
                0x82, 0x86, 0x84, 0xbe, 0x58, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf,
            ],
        );
        let mut seen = BTreeMap::new();
        while seen.len() < 2 {
            let (head, block) = c.read();
            assert_eq!(head.kind, frame::HEADERS);
            seen.insert(head.stream, decode(&block).remove(0).1);
        }
        let base = ":method=GET;:scheme=http;:path=/;:authority=www.example.com";
        assert_eq!(seen[&1], base);
        assert_eq!(seen[&3], format!("{base};cache-control=no-cache"));
        // A block that does not decode ends the connection.
        c.send(frame::HEADERS, flag::END_HEADERS, 5, &[0x80]);
        let (head, payload) = c.read();
        assert_eq!(head.kind, frame::GOAWAY);
        assert_eq!(
            payload,
            [0, 0, 0, 3, 0, 0, 0, code::COMPRESSION_ERROR as u8]
        );
    }

    #[test]
    fn headers_alone_end_the_stream_when_there_is_nothing_else() {
        let server = respond(&[(":status", "200"), ("grpc-status", "7")], b"", &[]);
        let mut c = Client::connect(&server, &[]);
        c.request(1, true);
        let (head, block) = c.read();
        assert_eq!(
            (head.kind, head.flags, head.stream),
            (frame::HEADERS, flag::END_HEADERS | flag::END_STREAM, 1)
        );
        assert_eq!(
            decode(&block),
            pairs(&[(":status", "200"), ("grpc-status", "7")])
        );
    }

    #[test]
    fn a_long_header_block_continues_in_continuation_frames() {
        let long = "v".repeat(20_000);
        let server = respond(&[(":status", "200"), ("x-long", &long)], b"", &[]);
        let mut c = Client::connect(&server, &[]);
        c.request(1, true);
        let (first, mut block) = c.read();
        assert_eq!(
            (first.kind, first.flags, first.len),
            (frame::HEADERS, flag::END_STREAM, 16_384)
        );
        let (next, rest) = c.read();
        assert_eq!(
            (next.kind, next.flags),
            (frame::CONTINUATION, flag::END_HEADERS)
        );
        block.extend(rest);
        // The value's length takes a multi-byte integer: 0x7f, then 20000 - 127.
        let mut expected = encode_header_block(&pairs(&[(":status", "200")]));
        expected.push(0x00);
        hpack_int(&mut expected, 0, 7, 6);
        expected.extend_from_slice(b"x-long");
        hpack_int(&mut expected, 0, 7, 20_000);
        expected.extend_from_slice(long.as_bytes());
        assert_eq!(block, expected);
    }

    #[test]
    fn data_waits_for_the_stream_window() {
        let server = respond(&[(":status", "200")], b"abcdefgh", &[]);
        let mut c = Client::connect(&server, &[(SETTINGS_INITIAL_WINDOW_SIZE, 3)]);
        c.request(1, true);
        assert_eq!(c.read().0.kind, frame::HEADERS);
        let (head, data) = c.read();
        assert_eq!(
            (head.kind, head.flags, data.as_slice()),
            (frame::DATA, 0, &b"abc"[..])
        );
        c.send(frame::WINDOW_UPDATE, 0, 1, &10u32.to_be_bytes());
        let (head, data) = c.read();
        assert_eq!(
            (head.kind, head.flags, data.as_slice()),
            (frame::DATA, flag::END_STREAM, &b"defgh"[..])
        );
    }

    #[test]
    fn data_waits_for_the_connection_window_in_frames_of_the_peers_size() {
        let body = vec![7u8; 70_000];
        let server = respond(&[(":status", "200")], &body, &[]);
        let mut c = Client::connect(&server, &[(SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20)]);
        c.request(1, true);
        assert_eq!(c.read().0.kind, frame::HEADERS);
        let mut got = 0;
        // The connection's window (65,535, never raised) is all that may be sent.
        while got < 65_535 {
            let (head, data) = c.read();
            assert_eq!((head.kind, head.flags), (frame::DATA, 0));
            assert!(data.len() <= 16_384);
            got += data.len();
        }
        assert_eq!(got, 65_535);
        c.send(frame::WINDOW_UPDATE, 0, 0, &10_000u32.to_be_bytes());
        let (head, data) = c.read();
        assert_eq!((head.kind, head.flags), (frame::DATA, flag::END_STREAM));
        assert_eq!(got + data.len(), body.len());
    }

    #[test]
    fn received_data_is_handed_back_at_once() {
        let server = always(Answer::Never);
        let mut c = Client::connect(&server, &[]);
        c.request(1, false);
        c.send(frame::DATA, 0, 1, &[0; 100]);
        for stream in [0, 1] {
            let (head, increment) = c.read();
            assert_eq!((head.kind, head.stream), (frame::WINDOW_UPDATE, stream));
            assert_eq!(increment, 100u32.to_be_bytes());
        }
        // The end of the request returns the connection's share only.
        c.send(frame::DATA, flag::END_STREAM, 1, &[0; 10]);
        c.send(frame::PING, 0, 0, &[0; 8]);
        let (head, increment) = c.read();
        assert_eq!((head.kind, head.stream), (frame::WINDOW_UPDATE, 0));
        assert_eq!(increment, 10u32.to_be_bytes());
        assert_eq!(c.read().0.kind, frame::PING);
    }

    #[test]
    fn a_reset_answer_is_rst_stream() {
        let server = always(Answer::Reset(Duration::ZERO, Vec::new()));
        let mut c = Client::connect(&server, &[]);
        c.request(1, true);
        let (head, error) = c.read();
        assert_eq!((head.kind, head.stream), (frame::RST_STREAM, 1));
        assert_eq!(error, code::INTERNAL_ERROR.to_be_bytes());
        // With headers first.
        let server = always(Answer::Reset(Duration::ZERO, pairs(&[(":status", "200")])));
        let mut c = Client::connect(&server, &[]);
        c.request(1, true);
        let (head, block) = c.read();
        assert_eq!((head.kind, head.flags), (frame::HEADERS, flag::END_HEADERS));
        assert_eq!(decode(&block), pairs(&[(":status", "200")]));
        assert_eq!(c.read().0.kind, frame::RST_STREAM);
    }

    #[test]
    fn protocol_errors_end_the_connection_with_goaway() {
        let server = always(Answer::Never);
        // A frame larger than the default maximum.
        let mut c = Client::connect(&server, &[]);
        c.request(1, false);
        c.send(frame::DATA, 0, 1, &vec![0; 16_385]);
        let (head, payload) = c.read();
        assert_eq!(head.kind, frame::GOAWAY);
        assert_eq!(payload, [0, 0, 0, 1, 0, 0, 0, code::FRAME_SIZE_ERROR as u8]);
        // Another frame inside a header block.
        let mut c = Client::connect(&server, &[]);
        c.send(frame::HEADERS, 0, 1, &[0x82]);
        c.send(frame::PING, 0, 0, &[0; 8]);
        let (head, payload) = c.read();
        assert_eq!(head.kind, frame::GOAWAY);
        // Stream 1's block never ended, so no stream was processed.
        assert_eq!(payload, [0, 0, 0, 0, 0, 0, 0, code::PROTOCOL_ERROR as u8]);
        // A bad preface gets no answer at all.
        let mut tcp = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        let mut rest = Vec::new();
        tcp.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }
}

//! A tiny HTTP/1.1 client and the message readers the upstreams share: one request per
//! connection (`connection: close`), the whole response read into memory. Enough to talk
//! to Envoy's listener (plain or, through [`send_on`], over TLS) and admin endpoint, with
//! no HTTP dependency. Header values may be any bytes a recording holds, so they are read
//! lossily rather than refused.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A request to send.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target, query included.
    pub path: String,
    /// The `host` header; `localhost` unless set.
    pub host: String,
    /// Further headers, in order (repeats allowed).
    pub headers: Vec<(String, String)>,
    /// The body; a `content-length` header is added when it is not empty or the method
    /// usually has one.
    pub body: Vec<u8>,
}

impl Request {
    /// A request without headers or body.
    pub fn new(method: &str, path: &str) -> Self {
        Self {
            method: method.to_owned(),
            path: path.to_owned(),
            host: "localhost".to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A GET request.
    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    /// A POST request with a JSON body.
    pub fn post_json(path: &str, body: &str) -> Self {
        Self::new("POST", path)
            .header("content-type", "application/json")
            .body(body.as_bytes())
    }

    /// Sets the `host` header.
    pub fn host(mut self, host: &str) -> Self {
        host.clone_into(&mut self.host);
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }

    /// Sends the request to `127.0.0.1:port`.
    pub fn send(&self, port: u16) -> std::io::Result<Response> {
        send(port, self)
    }
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers in order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_slice(&self.body)
            .map_err(|e| format!("response body is not JSON ({e}): {}", self.text()))
    }
}

/// Sends `req` to `127.0.0.1:port` on a new connection and reads the whole response.
pub fn send(port: u16, req: &Request) -> std::io::Result<Response> {
    let stream = connect(port)?;
    send_on(stream, req)
}

/// A connection to `127.0.0.1:port` with 30 s read and write timeouts, so a silent peer
/// fails the request instead of hanging the caller.
pub fn connect(port: u16) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    Ok(stream)
}

/// Sends `req` on an open connection (plain or TLS) and reads the whole response.
pub fn send_on(mut stream: impl Read + Write, req: &Request) -> std::io::Result<Response> {
    stream.write_all(&encode(req))?;
    stream.flush()?;
    read_response(&mut BufReader::new(stream), &req.method)
}

/// The request as bytes on the wire: start line, `host`, `connection: close`, the headers
/// in order, a `content-length` when needed, the body.
pub fn encode(req: &Request) -> Vec<u8> {
    encode_with(req, false)
}

/// [`encode`], asking the server to keep the connection open when `keep_alive` is set
/// (no `connection: close`).
pub fn encode_with(req: &Request, keep_alive: bool) -> Vec<u8> {
    let close = if keep_alive {
        ""
    } else {
        "connection: close\r\n"
    };
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: {}\r\n{close}",
        req.method, req.path, req.host
    );
    for (name, value) in &req.headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    let has_length = req.headers.iter().any(|(n, _)| {
        n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding")
    });
    if !has_length
        && (!req.body.is_empty() || matches!(req.method.as_str(), "POST" | "PUT" | "PATCH"))
    {
        head.push_str(&format!("content-length: {}\r\n", req.body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&req.body);
    bytes
}

/// Sends a GET to `127.0.0.1:port` and returns the body as text when the status is 200.
pub fn get_text(port: u16, path: &str) -> std::io::Result<String> {
    let resp = send(port, &Request::get(path))?;
    if resp.status == 200 {
        Ok(resp.text())
    } else {
        Err(std::io::Error::other(format!(
            "GET {path}: status {}: {}",
            resp.status,
            resp.text()
        )))
    }
}

fn invalid(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

/// A message's start line and its headers.
pub type Head = (String, Vec<(String, String)>);

/// Reads one HTTP/1.1 message head (start line + headers) from `reader`; `None` on a
/// clean EOF before the first byte.
pub fn read_head(reader: &mut impl BufRead) -> std::io::Result<Option<Head>> {
    let mut start = Vec::new();
    if reader.read_until(b'\n', &mut start)? == 0 {
        return Ok(None);
    }
    let start = String::from_utf8_lossy(&start).trim_end().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut raw = Vec::new();
        if reader.read_until(b'\n', &mut raw)? == 0 {
            return Err(invalid("eof inside headers"));
        }
        // Header values may carry obs-text (bytes >= 0x80): read lossily.
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok(Some((start, headers)))
}

/// Reads a message body framed by `content-length` or chunked encoding; with neither,
/// reads to EOF when `to_eof` (responses) or returns nothing (requests).
pub fn read_body(
    reader: &mut impl BufRead,
    headers: &[(String, String)],
    to_eof: bool,
) -> std::io::Result<Vec<u8>> {
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line)?;
            let size_hex = size_line.trim().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| invalid(format!("bad chunk size {size_line:?}")))?;
            if size == 0 {
                // Trailers, then the final empty line.
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                return Ok(body);
            }
            read_exactly(reader, size, &mut body)?;
            let mut crlf = String::new();
            reader.read_line(&mut crlf)?;
        }
    }
    if let Some(len) = find("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| invalid(format!("bad content-length {len:?}")))?;
        let mut body = Vec::new();
        read_exactly(reader, len, &mut body)?;
        return Ok(body);
    }
    let mut body = Vec::new();
    if to_eof {
        reader.read_to_end(&mut body)?;
    }
    Ok(body)
}

/// Appends exactly `len` bytes to `out`; reading through `take` rather than allocating
/// `len` up front, so a lying length costs nothing until the bytes really arrive.
fn read_exactly(reader: &mut impl BufRead, len: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
    let want = u64::try_from(len).map_err(|_| invalid("length out of range"))?;
    let got = reader.take(want).read_to_end(out)?;
    if got == len {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("body ended after {got} of {len} bytes"),
        ))
    }
}

/// Reads a whole response to a request with `method` (no body for `HEAD`, 204, 304).
pub fn read_response(reader: &mut impl BufRead, method: &str) -> std::io::Result<Response> {
    let (start, headers) =
        read_head(reader)?.ok_or_else(|| invalid("connection closed before a response"))?;
    let status = start
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line {start:?}")))?;
    let body = if method == "HEAD" || status == 204 || status == 304 {
        Vec::new()
    } else {
        read_body(reader, &headers, true)?
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

//! A small JSON reader and writer, written for the size of `stakeguard.wasm`.
//!
//! The module ships to every Envoy worker, and a general serialization framework with
//! derived deserializers costs hundreds of kilobytes there. What the engine needs is
//! less: parse a policy once (with line and column on a syntax error), read a few fields
//! of untrusted bodies and bearer-token payloads (with a nesting limit), and write small
//! objects (error bodies, log lines, alerts) with correct escaping. Numbers are kept as
//! their text and converted on request, so no floating-point code is linked in.

use std::borrow::Cow;
use std::fmt::Write as _;

/// A parsed JSON value. Objects keep their keys in document order.
///
/// Strings, keys and numbers borrow from the parsed text (`'t`) unless they hold an
/// escape: a 10,000-API policy has half a million of them, and allocating and freeing
/// each was a fifth of building its engine (675M against 545M instructions natively),
/// paid again by every Envoy VM on every swap. A value built in code, or kept beyond its
/// text, is a `Json<'static>` ([`Json::into_owned`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Json<'t> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as written.
    Number(Cow<'t, str>),
    /// A string, unescaped.
    String(Cow<'t, str>),
    /// An array.
    Array(Vec<Json<'t>>),
    /// An object, keys in document order (a key appears once).
    Object(Vec<(Cow<'t, str>, Json<'t>)>),
}

/// Why a text is not JSON, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What was wrong there.
    pub message: String,
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at line {} column {}",
            self.message, self.line, self.column
        )
    }
}

/// How deeply values may nest: enough for any policy, and a bound on the work an
/// attacker's body or token can cause.
const MAX_DEPTH: usize = 64;

impl<'t> Json<'t> {
    /// Parses a complete JSON text.
    pub fn parse(text: &'t str) -> Result<Json<'t>, SyntaxError> {
        let mut parser = Parser::at(text, 0);
        parser.skip_blanks();
        let value = parser.value(0)?;
        parser.skip_blanks();
        if parser.pos < parser.bytes.len() {
            return Err(parser.error("unexpected text after the value"));
        }
        Ok(value)
    }

    /// Parses bytes that should be UTF-8 JSON; `None` for anything else.
    pub fn parse_bytes(bytes: &'t [u8]) -> Option<Json<'t>> {
        Json::parse(std::str::from_utf8(bytes).ok()?).ok()
    }

    /// A string value, owned.
    pub fn string(text: impl Into<String>) -> Json<'static> {
        Json::String(Cow::Owned(text.into()))
    }

    /// The same value, owning its strings: for a value kept beyond its text.
    pub fn into_owned(self) -> Json<'static> {
        let owned = |text: Cow<'_, str>| Cow::Owned(text.into_owned());
        match self {
            Json::Null => Json::Null,
            Json::Bool(flag) => Json::Bool(flag),
            Json::Number(text) => Json::Number(owned(text)),
            Json::String(text) => Json::String(owned(text)),
            Json::Array(items) => Json::Array(items.into_iter().map(Json::into_owned).collect()),
            Json::Object(fields) => Json::Object(
                fields
                    .into_iter()
                    .map(|(key, value)| (owned(key), value.into_owned()))
                    .collect(),
            ),
        }
    }

    /// A field of an object.
    pub fn get(&self, key: &str) -> Option<&Json<'t>> {
        match self {
            Json::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value at an RFC 6901 JSON pointer (`""` is the value itself).
    pub fn pointer(&self, pointer: &str) -> Option<&Json<'t>> {
        if pointer.is_empty() {
            return Some(self);
        }
        let mut current = self;
        for token in pointer.strip_prefix('/')?.split('/') {
            let token = token.replace("~1", "/").replace("~0", "~");
            current = match current {
                Json::Object(_) => current.get(&token)?,
                Json::Array(items) => items.get(token.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(current)
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(text) => Some(text),
            _ => None,
        }
    }

    /// Strings as they are, numbers and booleans as written: how an identity or a claim
    /// compares with a path segment.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Json::String(text) | Json::Number(text) => Some(text),
            Json::Bool(true) => Some("true"),
            Json::Bool(false) => Some("false"),
            _ => None,
        }
    }

    /// What kind of value this is, for messages: "a string", "an object", ...
    pub fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "a list",
            Json::Object(_) => "an object",
        }
    }

    /// Lays `top` over this value: objects merge key by key, anything else replaces.
    pub fn overlay(&mut self, top: &Json<'t>) {
        match (self, top) {
            (Json::Object(base), Json::Object(fields)) => {
                for (key, value) in fields {
                    match base.iter_mut().find(|(k, _)| k == key) {
                        Some((_, existing)) => existing.overlay(value),
                        None => base.push((key.clone(), value.clone())),
                    }
                }
            }
            (base, top) => *base = top.clone(),
        }
    }

    /// Writes the value as compact JSON.
    pub fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
            Json::Number(text) => out.push_str(text),
            Json::String(text) => write_string(out, text),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(fields) => {
                out.push('{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(out, key);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }

    /// Writes the value as indented JSON (two spaces), for files people read.
    pub fn write_pretty(&self, out: &mut String, indent: usize) {
        let pad = |out: &mut String, n: usize| out.extend(std::iter::repeat_n(' ', n));
        match self {
            Json::Array(items) if !items.is_empty() => {
                out.push_str("[\n");
                for (i, item) in items.iter().enumerate() {
                    pad(out, indent + 2);
                    item.write_pretty(out, indent + 2);
                    out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                pad(out, indent);
                out.push(']');
            }
            Json::Object(fields) if !fields.is_empty() => {
                out.push_str("{\n");
                for (i, (key, value)) in fields.iter().enumerate() {
                    pad(out, indent + 2);
                    write_string(out, key);
                    out.push_str(": ");
                    value.write_pretty(out, indent + 2);
                    out.push_str(if i + 1 < fields.len() { ",\n" } else { "\n" });
                }
                pad(out, indent);
                out.push('}');
            }
            other => other.write(out),
        }
    }
}

impl std::fmt::Display for Json<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::new();
        self.write(&mut out);
        f.write_str(&out)
    }
}

/// Writes `text` as a JSON string, escaped.
pub fn write_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Builds a flat JSON object field by field, without an intermediate tree: for log lines
/// and error bodies on the request path.
#[derive(Debug)]
pub struct ObjectWriter {
    out: String,
    empty: bool,
}

impl Default for ObjectWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl ObjectWriter {
    /// An empty object.
    pub fn new() -> Self {
        ObjectWriter {
            out: String::from("{"),
            empty: true,
        }
    }

    fn key(&mut self, key: &str) {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        write_string(&mut self.out, key);
        self.out.push(':');
    }

    /// Adds a string field.
    pub fn string(mut self, key: &str, value: &str) -> Self {
        self.key(key);
        write_string(&mut self.out, value);
        self
    }

    /// Adds a string field when there is a value.
    pub fn string_opt(self, key: &str, value: Option<&str>) -> Self {
        match value {
            Some(value) => self.string(key, value),
            None => self,
        }
    }

    /// Adds a number field.
    pub fn number(mut self, key: &str, value: u64) -> Self {
        self.key(key);
        let _ = write!(self.out, "{value}");
        self
    }

    /// Adds a boolean field.
    pub fn boolean(mut self, key: &str, value: bool) -> Self {
        self.key(key);
        self.out.push_str(if value { "true" } else { "false" });
        self
    }

    /// Adds a field whose value is already JSON text (an object written by another
    /// `ObjectWriter`).
    pub fn raw(mut self, key: &str, json: &str) -> Self {
        self.key(key);
        self.out.push_str(json);
        self
    }

    /// The finished object.
    pub fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

struct Parser<'t> {
    text: &'t str,
    bytes: &'t [u8],
    pos: usize,
}

impl<'t> Parser<'t> {
    fn at(text: &'t str, pos: usize) -> Self {
        Parser {
            text,
            bytes: text.as_bytes(),
            pos,
        }
    }

    fn error(&self, message: &str) -> SyntaxError {
        let before = self.text.get(..self.pos).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        SyntaxError {
            line,
            column,
            message: message.to_owned(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Steps over `word` (`true`, `false`, `null`) if the text goes on with it.
    fn word(&mut self, word: &str) -> bool {
        let found = self.bytes.get(self.pos..self.pos + word.len()) == Some(word.as_bytes());
        if found {
            self.pos += word.len();
        }
        found
    }

    fn expect_word(&mut self, word: &str, value: Json<'t>) -> Result<Json<'t>, SyntaxError> {
        if self.word(word) {
            Ok(value)
        } else {
            Err(self.error("expected a value"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json<'t>, SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(self.error("values nest too deeply"));
        }
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(Json::String),
            Some(b't') => self.expect_word("true", Json::Bool(true)),
            Some(b'f') => self.expect_word("false", Json::Bool(false)),
            Some(b'n') => self.expect_word("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("expected a value")),
            None => Err(self.error("unexpected end of text")),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json<'t>, SyntaxError> {
        self.pos += 1;
        let mut fields: Vec<(Cow<'t, str>, Json<'t>)> = Vec::new();
        self.skip_blanks();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Json::Object(fields));
        }
        loop {
            self.skip_blanks();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a key in double quotes"));
            }
            let key_at = self.pos;
            let key = self.string()?;
            if fields.iter().any(|(k, _)| *k == key) {
                self.pos = key_at;
                return Err(self.error(&format!("duplicate key `{key}`")));
            }
            self.skip_blanks();
            if self.peek() != Some(b':') {
                return Err(self.error("expected `:` after the key"));
            }
            self.pos += 1;
            self.skip_blanks();
            let value = self.value(depth + 1)?;
            fields.push((key, value));
            self.skip_blanks();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Json::Object(fields));
                }
                _ => return Err(self.error("expected `,` or `}`")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json<'t>, SyntaxError> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_blanks();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Json::Array(items));
        }
        loop {
            self.skip_blanks();
            items.push(self.value(depth + 1)?);
            self.skip_blanks();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Json::Array(items));
                }
                _ => return Err(self.error("expected `,` or `]`")),
            }
        }
    }

    fn number(&mut self) -> Result<Json<'t>, SyntaxError> {
        let start = self.pos;
        self.lex_number().map_err(|message| self.error(message))?;
        let text = self.text.get(start..self.pos).unwrap_or_default();
        Ok(Json::Number(Cow::Borrowed(text)))
    }

    /// Steps over a number; on an error, `pos` is where it was found.
    fn lex_number(&mut self) -> Result<(), &'static str> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let digits = |p: &mut Self| {
            let from = p.pos;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.pos += 1;
            }
            p.pos > from
        };
        if self.peek() == Some(b'0') {
            self.pos += 1;
        } else if !digits(self) {
            return Err("expected a digit");
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !digits(self) {
                return Err("expected a digit after `.`");
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !digits(self) {
                return Err("expected a digit in the exponent");
            }
        }
        Ok(())
    }

    /// A string borrowed from the text, or unescaped into its own when it has an escape.
    fn string(&mut self) -> Result<Cow<'t, str>, SyntaxError> {
        let (start, end) = self.lex_string().map_err(|message| self.error(message))?;
        Ok(decoded(self.text.get(start..end).unwrap_or_default()))
    }

    /// Steps over a string and returns where its content (between the quotes) starts
    /// and ends. On an error, `pos` is where it was found.
    fn lex_string(&mut self) -> Result<(usize, usize), &'static str> {
        self.pos += 1;
        let start = self.pos;
        loop {
            while let Some(byte) = self.peek() {
                if byte == b'"' || byte == b'\\' || byte < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok((start, self.pos - 1));
                }
                Some(b'\\') => match escape(self.text, self.pos + 1) {
                    Ok((_, next)) => self.pos = next,
                    Err((at, message)) => {
                        self.pos = at;
                        return Err(message);
                    }
                },
                Some(_) => return Err("control character in a string"),
                None => return Err("unfinished string"),
            }
        }
    }
}

/// Decodes the escape whose backslash is just before `text[pos]`: the character and
/// where the text goes on, or where it went wrong and why.
fn escape(text: &str, pos: usize) -> Result<(char, usize), (usize, &'static str)> {
    let bytes = text.as_bytes();
    let hex4 = |at: usize| {
        text.get(at..at + 4)
            // `from_str_radix` alone would take a sign: `\u+123`.
            .filter(|digits| digits.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|digits| u32::from_str_radix(digits, 16).ok())
            .ok_or((at, "bad `\\u` escape"))
    };
    let Some(&escaped) = bytes.get(pos) else {
        return Err((pos, "unfinished escape"));
    };
    let pos = pos + 1;
    let simple = match escaped {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let first = hex4(pos)?;
            let mut next = pos + 4;
            let code = if (0xd800..0xdc00).contains(&first) {
                if bytes.get(next..next + 2) != Some(b"\\u") {
                    return Err((next, "lone surrogate in `\\u` escape"));
                }
                let second = hex4(next + 2)?;
                next += 6;
                if !(0xdc00..0xe000).contains(&second) {
                    return Err((next, "lone surrogate in `\\u` escape"));
                }
                0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00)
            } else {
                first
            };
            return char::from_u32(code)
                .map(|c| (c, next))
                .ok_or((next, "bad `\\u` escape"));
        }
        _ => return Err((pos, "unknown escape")),
    };
    Ok((simple, pos))
}

/// How many keys of the objects open at one point the checker remembers, to find
/// duplicates without allocating. A text that needs more is checked by [`Json::parse`].
const CHECKED_KEYS: usize = 32;

/// A JSON value read in place: its text, checked once, of which only what is asked for
/// is ever decoded. For bearer-token payloads, where the engine reads a claim or two
/// per request and building a [`Json`] tree would cost an allocation per value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawJson<'t> {
    /// One whole value, without surrounding blanks.
    text: &'t str,
}

impl<'t> RawJson<'t> {
    /// Checks UTF-8 JSON bytes: `Some` for exactly the texts [`Json::parse_bytes`]
    /// accepts (the nesting limit and the refusal of duplicate keys included).
    pub(crate) fn parse_bytes(bytes: &'t [u8]) -> Option<RawJson<'t>> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut checker = Checker {
            parser: Parser::at(text, 0),
            keys: [(0, 0); CHECKED_KEYS],
            open_keys: 0,
            unchecked_keys: false,
        };
        checker.parser.skip_blanks();
        let start = checker.parser.pos;
        checker.value(0)?;
        let end = checker.parser.pos;
        checker.parser.skip_blanks();
        if checker.parser.pos < bytes.len()
            || (checker.unchecked_keys && Json::parse(text).is_err())
        {
            return None;
        }
        Some(RawJson::checked(text.get(start..end)?))
    }

    /// A text that [`RawJson::parse_bytes`] accepted (surrounding blanks are dropped).
    pub(crate) fn checked(text: &'t str) -> RawJson<'t> {
        RawJson {
            text: text.trim_matches([' ', '\t', '\n', '\r']),
        }
    }

    /// Whether this is an object.
    pub(crate) fn is_object(self) -> bool {
        self.text.starts_with('{')
    }

    /// Whether this is an array.
    pub(crate) fn is_array(self) -> bool {
        self.text.starts_with('[')
    }

    /// Whether this is a string.
    pub(crate) fn is_string(self) -> bool {
        self.text.starts_with('"')
    }

    /// A field of an object.
    pub(crate) fn get(self, key: &str) -> Option<RawJson<'t>> {
        if !self.is_object() {
            return None;
        }
        self.elements()
            .find(|(name, _)| name.is_some_and(|name| same_text(name, key)))
            .map(|(_, value)| value)
    }

    /// The items of an array (none for anything else).
    pub(crate) fn items(self) -> impl Iterator<Item = RawJson<'t>> {
        let array = self.is_array();
        self.elements()
            .take_while(move |_| array)
            .map(|(_, item)| item)
    }

    /// As [`Json::as_text`]: strings unescaped (borrowed unless they hold an escape),
    /// numbers and booleans as written.
    pub(crate) fn as_text(self) -> Option<Cow<'t, str>> {
        match self.text.as_bytes().first()? {
            b'"' => {
                let content = self.text.strip_prefix('"')?.strip_suffix('"')?;
                Some(decoded(content))
            }
            b't' | b'f' | b'-' | b'0'..=b'9' => Some(Cow::Borrowed(self.text)),
            _ => None,
        }
    }

    /// The elements of an array or an object, with the raw content of each key for an
    /// object. Stepping over a value checks it again, which costs what skipping it
    /// would.
    fn elements(self) -> impl Iterator<Item = (Option<&'t str>, RawJson<'t>)> {
        let text = self.text;
        let object = self.is_object();
        let mut checker = Checker {
            // Past the bracket; a scalar has no elements.
            parser: Parser::at(
                text,
                if object || self.is_array() {
                    1
                } else {
                    text.len()
                },
            ),
            keys: [(0, 0); CHECKED_KEYS],
            open_keys: 0,
            unchecked_keys: false,
        };
        std::iter::from_fn(move || {
            let parser = &mut checker.parser;
            parser.skip_blanks();
            if matches!(parser.peek(), Some(b']' | b'}') | None) {
                return None;
            }
            let key = if object {
                let (start, end) = parser.lex_string().ok()?;
                parser.skip_blanks();
                parser.pos += 1; // the `:`
                parser.skip_blanks();
                Some(text.get(start..end)?)
            } else {
                None
            };
            let start = checker.parser.pos;
            checker.value(0)?;
            let value = RawJson {
                text: text.get(start..checker.parser.pos)?,
            };
            checker.parser.skip_blanks();
            if checker.parser.peek() == Some(b',') {
                checker.parser.pos += 1;
            }
            Some((key, value))
        })
    }
}

/// Whether the raw content of a checked string reads as `text`.
fn same_text(raw: &str, text: &str) -> bool {
    if raw.contains('\\') {
        unescaped(raw).eq(text.chars())
    } else {
        raw == text
    }
}

/// A checked string's content: itself when it has no escape, else decoded into a copy.
fn decoded(content: &str) -> Cow<'_, str> {
    if content.contains('\\') {
        Cow::Owned(unescaped(content).collect())
    } else {
        Cow::Borrowed(content)
    }
}

/// The characters of a checked string's content, escapes decoded.
fn unescaped(content: &str) -> impl Iterator<Item = char> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let c = content.get(pos..)?.chars().next()?;
        if c == '\\' {
            let (c, next) = escape(content, pos + 1).ok()?;
            pos = next;
            Some(c)
        } else {
            pos += c.len_utf8();
            Some(c)
        }
    })
}

/// [`Parser`]'s grammar without building values: checks a text and finds where each value
/// ends, allocating nothing.
struct Checker<'t> {
    parser: Parser<'t>,
    /// Where the keys of the objects open at this point are (their content, between the
    /// quotes), outermost object first.
    keys: [(usize, usize); CHECKED_KEYS],
    open_keys: usize,
    /// Set when an object's keys did not all fit in `keys`: duplicates were not all
    /// looked for.
    unchecked_keys: bool,
}

impl Checker<'_> {
    /// Steps over one value; `None` when the text is not JSON.
    fn value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        let p = &mut self.parser;
        let valid = match p.peek()? {
            b'{' => return self.object(depth),
            b'[' => return self.array(depth),
            b'"' => p.lex_string().is_ok(),
            b't' => p.word("true"),
            b'f' => p.word("false"),
            b'n' => p.word("null"),
            b'-' | b'0'..=b'9' => p.lex_number().is_ok(),
            _ => false,
        };
        valid.then_some(())
    }

    fn object(&mut self, depth: usize) -> Option<()> {
        let first_key = self.open_keys;
        self.parser.pos += 1;
        self.parser.skip_blanks();
        if self.parser.peek() == Some(b'}') {
            self.parser.pos += 1;
            return Some(());
        }
        loop {
            self.parser.skip_blanks();
            if self.parser.peek() != Some(b'"') {
                return None;
            }
            let key = self.parser.lex_string().ok()?;
            self.remember_key(first_key, key)?;
            self.parser.skip_blanks();
            if self.parser.peek() != Some(b':') {
                return None;
            }
            self.parser.pos += 1;
            self.parser.skip_blanks();
            self.value(depth + 1)?;
            self.parser.skip_blanks();
            match self.parser.peek()? {
                b',' => self.parser.pos += 1,
                b'}' => {
                    self.parser.pos += 1;
                    self.open_keys = first_key;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Refuses a key already seen in the object whose keys start at `first_key`.
    fn remember_key(&mut self, first_key: usize, key: (usize, usize)) -> Option<()> {
        let text = self.parser.text;
        let new = text.get(key.0..key.1)?;
        let earlier = self.keys.get(first_key..self.open_keys).unwrap_or_default();
        if earlier.iter().any(|&(start, end)| {
            text.get(start..end).is_some_and(|old| {
                old == new
                    || ((old.contains('\\') || new.contains('\\'))
                        && unescaped(old).eq(unescaped(new)))
            })
        }) {
            return None;
        }
        match self.keys.get_mut(self.open_keys) {
            Some(slot) => {
                *slot = key;
                self.open_keys += 1;
            }
            None => self.unchecked_keys = true,
        }
        Some(())
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        self.parser.pos += 1;
        self.parser.skip_blanks();
        if self.parser.peek() == Some(b']') {
            self.parser.pos += 1;
            return Some(());
        }
        loop {
            self.parser.skip_blanks();
            self.value(depth + 1)?;
            self.parser.skip_blanks();
            match self.parser.peek()? {
                b',' => self.parser.pos += 1,
                b']' => {
                    self.parser.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let text = r#"{"a":[1,-2.5e3,true,false,null],"b":{"c":"x\"y\\z\n\u00e9\ud83d\ude00"}}"#;
        let value = Json::parse(text).unwrap();
        assert_eq!(
            value.pointer("/b/c").unwrap().as_str(),
            Some("x\"y\\z\né😀")
        );
        assert_eq!(value.pointer("/a/1"), Some(&Json::Number("-2.5e3".into())));
        let written = value.to_string();
        assert_eq!(Json::parse(&written).unwrap(), value);
    }

    #[test]
    fn syntax_errors_say_where() {
        let error = Json::parse("{\n  \"a\": tru\n}").unwrap_err();
        assert_eq!((error.line, error.column), (2, 8));
        let error = Json::parse("{\"a\":1,\"a\":2}").unwrap_err();
        assert_eq!(error.message, "duplicate key `a`");
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\" 1}",
            "01",
            "1.",
            "\"\\x\"",
            "\"a\nb\"",
            "[1] 2",
            "\"\\ud800\"",
            "\"\\u+123\"",
        ] {
            assert!(Json::parse(bad).is_err(), "{bad:?}");
        }
    }

    /// `RawJson` must accept exactly what the tree parser accepts and read the same
    /// fields: the claims a policy checks depend on it. Texts near valid ones (each with
    /// one byte changed or cut short) probe the edges of the grammar.
    #[test]
    fn the_raw_reader_agrees_with_the_tree_parser() {
        let seeds = [
            r#"{"sub":"alice","accounts":["1000","1001"],"scope":"a b","n":-1.5e3,"ok":true,"x":null}"#,
            r#" {"a\u0041":"\ud83d\ude00\n","b":[{"c":[]},{}],"d":"\/"} "#,
            r#"{"k":1,"k\u0000":2,"K":3}"#,
            r#"[0,1e+2,-0.5,"\"",[[]],{"a":{"a":{"a":1}}}]"#,
            r#"{"a":1,"\u0061":2}"#,
            r#"{"a":{"b":1,"b":2}}"#,
            r#"{"a":{"b":1},"b":{"a":1}}"#,
            "\"\\u+123\"",
        ];
        let mut texts: Vec<Vec<u8>> = Vec::new();
        for seed in seeds {
            let bytes = seed.as_bytes();
            texts.push(bytes.to_vec());
            for i in 0..bytes.len() {
                texts.push(bytes[..i].to_vec());
                for replacement in [
                    b'"', b'\\', b'{', b'}', b',', b':', b'1', b'e', b' ', 0x01, 0xff,
                ] {
                    let mut changed = bytes.to_vec();
                    changed[i] = replacement;
                    texts.push(changed);
                }
            }
        }
        let deep = |n: usize| ("[".repeat(n) + &"]".repeat(n)).into_bytes();
        texts.extend([deep(65), deep(66), deep(100)]);
        let many: Vec<String> = (0..40).map(|i| format!("\"k{}\":{i}", i % 39)).collect();
        texts.push(format!("{{{}}}", many.join(",")).into_bytes());
        texts.push(format!("{{{}}}", many[..39].join(",")).into_bytes());
        for text in &texts {
            let tree = Json::parse_bytes(text);
            let raw = RawJson::parse_bytes(text);
            assert_eq!(
                raw.is_some(),
                tree.is_some(),
                "{:?}",
                String::from_utf8_lossy(text)
            );
            let (Some(Json::Object(fields)), Some(raw)) = (&tree, raw) else {
                continue;
            };
            for (key, value) in fields {
                let read = raw.get(key).unwrap();
                assert_eq!(read.as_text().as_deref(), value.as_text(), "{key}");
                if let Json::Array(items) = value {
                    let texts: Vec<_> = read.items().map(RawJson::as_text).collect();
                    let expected: Vec<_> = items
                        .iter()
                        .map(|i| i.as_text().map(Cow::Borrowed))
                        .collect();
                    assert_eq!(texts, expected);
                }
            }
            assert_eq!(raw.get("missing"), None);
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert_eq!(
            Json::parse(&deep).unwrap_err().message,
            "values nest too deeply"
        );
        let fine = "[".repeat(60) + &"]".repeat(60);
        assert!(Json::parse(&fine).is_ok());
    }

    #[test]
    fn pointers_follow_rfc_6901() {
        let value = Json::parse(r#"{"a/b":{"m~n":[10,20]}}"#).unwrap();
        assert_eq!(
            value.pointer("/a~1b/m~0n/1").and_then(Json::as_text),
            Some("20")
        );
        assert_eq!(value.pointer(""), Some(&value));
        assert_eq!(value.pointer("a"), None);
        assert_eq!(value.pointer("/a~1b/m~0n/9"), None);
    }

    #[test]
    fn overlay_merges_objects_and_replaces_the_rest() {
        let mut base = Json::parse(r#"{"a":{"x":1,"y":2},"b":[1]}"#).unwrap();
        base.overlay(&Json::parse(r#"{"a":{"y":3,"z":4},"b":[2]}"#).unwrap());
        assert_eq!(base.to_string(), r#"{"a":{"x":1,"y":3,"z":4},"b":[2]}"#);
    }

    #[test]
    fn the_object_writer_escapes() {
        let text = ObjectWriter::new()
            .string("k", "a\"b\u{1}")
            .number("n", 7)
            .boolean("t", true)
            .finish();
        assert_eq!(text, r#"{"k":"a\"b\u0001","n":7,"t":true}"#);
        assert_eq!(
            Json::parse(&text).unwrap().get("k").and_then(Json::as_str),
            Some("a\"b\u{1}")
        );
    }

    #[test]
    fn strings_borrow_from_the_text_unless_they_hold_an_escape() {
        let text = r#"{"plain":"abc","escaped":"a\u00e9\n","key\"q":1}"#;
        let value = Json::parse(text).unwrap();
        assert!(matches!(
            value.get("plain"),
            Some(Json::String(Cow::Borrowed("abc")))
        ));
        let Some(Json::String(Cow::Owned(escaped))) = value.get("escaped") else {
            panic!("an escaped string is unescaped into its own");
        };
        assert_eq!(escaped, "a\u{e9}\n");
        assert_eq!(value.get("key\"q").and_then(Json::as_text), Some("1"));
        let owned: Json<'static> = value.clone().into_owned();
        assert_eq!(owned, value);
    }
}

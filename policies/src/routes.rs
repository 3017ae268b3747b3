//! The route index: finds the route of a request in time that depends on the request
//! (its host's labels and its path's segments), never on how many APIs the policy lists.
//!
//! Routes are added through [`RouteIndexBuilder::add`], which refuses patterns that are
//! not plain normalized text ([`PatternError`], with a hint) and routes that would match
//! the same requests as an earlier one ([`AddError::Conflict`]). [`RouteIndex::lookup`]
//! then takes the authority and method as sent and a path already normalized by
//! [`crate::path::normalize`], and allocates nothing on the common path.
//!
//! # Patterns
//!
//! - host: none (any host), exact (`bank.example.com`) or wildcard (`*.example.com`,
//!   which matches `a.example.com` and `a.b.example.com` but not `example.com`); compared
//!   without case, and the request's port is ignored (`Bank.Example.com:8443`,
//!   `[::1]:8080`). One trailing dot of the request host is ignored too, so
//!   `bank.example.com.` cannot dodge the `bank.example.com` routes.
//! - path: literal segments, template parameters that fill a whole segment (`{id}`), and
//!   a trailing glob `/**` that matches its prefix itself (`/api/v1/bills`), the prefix
//!   with a slash, and everything under it. Literal segments are compared without ASCII
//!   case: many backends (IIS, case-insensitive file systems, lax routers) serve
//!   `/API/V2/Accounts` as `/api/v2/accounts`, and such a request must meet that route's
//!   policy rather than pass as an unknown one. Two routes that differ only in case
//!   therefore conflict. Template parameters keep the request's case.
//! - methods: a list of method names (stored uppercase), or none for any method. Request
//!   methods are compared without case so that `post` cannot reach an any-method route
//!   next to a `POST` route on an upstream that is lax about case.
//!
//! # Precedence
//!
//! 1. Host. The exact host's routes first, then wildcard hosts from the most specific
//!    suffix to the least (`*.b.example.com` before `*.example.com`), then the any-host
//!    routes. A host level is used only if one of its routes matches the *path* (whatever
//!    the method); otherwise the next level is tried. Once a level matches the path it
//!    decides, including a 405: a more general host never rescues a method.
//! 2. Path, within one host level. Candidates are compared segment by segment from the
//!    left; at the first segment where they differ, a literal beats a template parameter,
//!    which beats a glob. So a glob deeper in the tree wins over a shallower one
//!    (`/api/v1/**` over `/api/**`), `/api/v1/bills` beats `/api/v1/bills/**` for
//!    `/api/v1/bills`, and `/users/me/**` beats `/users/{id}/accounts` for
//!    `/users/me/accounts` (the literal `me` decides at the second segment).
//!    A parameter never matches an empty segment.
//! 3. Trailing slash. `/a/` and `/a` are different patterns and each matches its own
//!    spelling first; when only one of them exists it also matches the other spelling.
//!    Many upstreams serve both spellings alike, and a request must not leave its API's
//!    policy by adding or dropping a slash.
//! 4. Method. Among the routes of the winning path shape, a route listing the method beats
//!    an any-method route (a tie-break that [`AddError::Conflict`] keeps from arising
//!    within one host pattern today, since an any-method route overlaps with every
//!    other route of its shape). When none accepts the method the answer is
//!    [`Match::MethodNotAllowed`] with the shape's `Allow` list, even if a more general
//!    path (a glob) would accept it: the most specific path decides, so that
//!    `GET /api/v2/accounts/{id}` is not bypassed with `DELETE` through a catch-all
//!    `/api/**`.
//!
//! # Cost
//!
//! Each trie node keeps its literal children in a short list when it has few (compared by
//! length, then bytes) and in a hash map past that, so a lookup is one bounded search
//! per path segment per candidate branch. Backtracking (a literal branch that dead
//! ends, then the parameter branch) visits each trie node at most once, so the worst case
//! is bounded by the nodes along the request's segments, never by the number of routes.
//! Host selection costs one probe for the exact host plus one per label suffix.

use std::collections::HashMap as StdHashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use crate::path::{
    Segments, find_byte, little_endian, same_bytes, strip_ascii_prefix, strip_ascii_suffix,
    strip_lone_port,
};

/// The maps of the index, keyed by the policy's own hosts and segments.
type HashMap<K, V> = StdHashMap<K, V, BuildHasherDefault<KeyHasher>>;

/// A map keyed by the policy's own text, hashed as the index's maps are.
pub(crate) type TextMap<V> = HashMap<Box<str>, V>;

/// A fast hash for the index's keys, in place of the standard SipHash: a request costs a
/// probe per path segment, and SipHash's defence (against keys chosen to collide) buys
/// nothing here, since a request only looks keys up and the keys are the policy's.
/// Each 8-byte word is mixed in with one 64-bit multiply and a shift that brings its high
/// bits down to the low bits that pick a bucket. No 128-bit product: on wasm32 that is a
/// call to a multiply routine (`__multi3`), which profiles showed on every request.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct KeyHasher(u64);

impl KeyHasher {
    fn mix(&mut self, word: u64) {
        // An odd constant from the fractional digits of pi, as in wyhash.
        let mixed = (self.0 ^ word).wrapping_mul(0xe703_7ed1_a0b4_28db);
        self.0 = mixed ^ (mixed >> 29);
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for chunk in &mut words {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            // Gathered in a register: bytes stored one by one and read back as a word
            // stall on the way through memory.
            let word = little_endian(rest);
            // The length keeps `a` and `a\0` apart.
            self.mix(word ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.mix(u64::from(byte) | 0x100);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A route pattern (host, path or method) that cannot be used, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    /// What is wrong, in lowercase, quoting the pattern.
    pub message: String,
    /// What is expected instead.
    pub hint: String,
}

impl PatternError {
    fn new(message: String, hint: &str) -> Self {
        PatternError {
            message,
            hint: hint.to_owned(),
        }
    }
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.hint)
    }
}

impl std::error::Error for PatternError {}

/// Why [`RouteIndexBuilder::add`] refused a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddError<T> {
    /// The host, path or a method is not a valid pattern.
    Pattern(PatternError),
    /// A route added earlier matches the same requests: same host pattern, same path
    /// shape (parameter names aside) and overlapping methods.
    Conflict {
        /// The value of that earlier route.
        existing: T,
    },
}

impl<T> From<PatternError> for AddError<T> {
    fn from(error: PatternError) -> Self {
        AddError::Pattern(error)
    }
}

/// The routes of one path shape (one end of a trie path, or one glob).
#[derive(Debug, Clone)]
struct Terminal<T> {
    /// Few by construction: conflicts forbid overlapping methods, so at most one route
    /// per method plus one any-method route.
    entries: Vec<Entry<T>>,
    /// The union of the entries' methods, sorted, for the `Allow` header of a 405.
    allow: Box<str>,
}

#[derive(Debug, Clone)]
struct Entry<T> {
    /// Uppercase, sorted, deduplicated; empty means any method.
    methods: Box<[Box<str>]>,
    value: T,
    /// The path pattern as written, for [`Found::pattern`] and [`Found::param`].
    pattern: Box<str>,
}

/// Up to this many children are searched one by one rather than hashed: in wasm (no
/// SIMD probe, a call per hashing step) comparing a few lengths costs less than hashing
/// the key, and the bound keeps a lookup's cost independent of the policy's size.
const FEW_CHILDREN: usize = 8;

/// Children keyed by text (a trie node's literal segments, the roots of named hosts).
///
/// The builder fills `many`; [`Children::frozen`] moves a small map into `few`, so an
/// index has at most one of the two filled.
#[derive(Debug, Clone)]
struct Children<V> {
    few: Vec<(Box<str>, V)>,
    many: HashMap<Box<str>, V>,
}

// Written out because deriving would require `V: Default`.
impl<V> Default for Children<V> {
    fn default() -> Self {
        Children {
            few: Vec::new(),
            many: HashMap::default(),
        }
    }
}

impl<V> Children<V> {
    fn get(&self, key: &str) -> Option<&V> {
        if self.many.is_empty() {
            self.few
                .iter()
                .find(|(k, _)| same_bytes(k.as_bytes(), key.as_bytes()))
                .map(|(_, v)| v)
        } else {
            self.many.get(key)
        }
    }

    fn is_empty(&self) -> bool {
        self.few.is_empty() && self.many.is_empty()
    }

    /// The child for `key`, added if missing (building only: see [`Children::frozen`]).
    fn entry(&mut self, key: Box<str>) -> &mut V
    where
        V: Default,
    {
        self.many.entry(key).or_default()
    }

    /// The children for lookups, each child frozen by `freeze`.
    fn frozen(self, freeze: impl Fn(V) -> V) -> Self {
        let all: Vec<_> = (self.few.into_iter().chain(self.many))
            .map(|(key, child)| (key, freeze(child)))
            .collect();
        if all.len() <= FEW_CHILDREN {
            Children {
                few: all,
                many: HashMap::default(),
            }
        } else {
            Children {
                few: Vec::new(),
                many: all.into_iter().collect(),
            }
        }
    }
}

/// One segment position of a path trie.
#[derive(Debug, Clone)]
struct Node<T> {
    /// Children by literal segment text; the empty key is a trailing slash.
    literal: Children<Node<T>>,
    /// The child for a template parameter (its name is irrelevant to matching).
    param: Option<Box<Node<T>>>,
    /// Routes whose pattern ends at this node.
    end: Option<Terminal<T>>,
    /// Routes whose pattern is this node's path followed by `/**`.
    glob: Option<Terminal<T>>,
}

// Written out because deriving would require `T: Default`.
impl<T> Default for Node<T> {
    fn default() -> Self {
        Node {
            literal: Children::default(),
            param: None,
            end: None,
            glob: None,
        }
    }
}

/// The three host levels, each with its own path trie.
#[derive(Debug, Clone)]
struct Hosts<T> {
    /// Keyed by the lowercase host.
    exact: Children<Node<T>>,
    /// Keyed by the lowercase suffix after `*.`.
    wildcard: Children<Node<T>>,
    any: Node<T>,
    routes: usize,
}

/// Collects routes, refusing bad patterns and conflicts, then builds a [`RouteIndex`].
#[derive(Debug, Clone)]
pub struct RouteIndexBuilder<T> {
    hosts: Hosts<T>,
}

impl<T: Copy> Default for RouteIndexBuilder<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy> RouteIndexBuilder<T> {
    /// An empty builder.
    pub fn new() -> Self {
        RouteIndexBuilder {
            hosts: Hosts {
                exact: Children::default(),
                wildcard: Children::default(),
                any: Node::default(),
                routes: 0,
            },
        }
    }

    /// Adds a route.
    ///
    /// `Err(AddError::Pattern)` for a bad host, path or method; `Err(AddError::Conflict)`
    /// when a previously added route matches the same requests: same host pattern, same
    /// path shape (template parameter names do not matter: `/u/{a}` and `/u/{b}`
    /// conflict), and overlapping methods (an any-method route overlaps with everything).
    /// A refused route leaves the builder as it was for matching purposes.
    pub fn add(
        &mut self,
        host: Option<&str>,
        path: &str,
        methods: &[String],
        value: T,
    ) -> Result<(), AddError<T>> {
        let host = parse_host(host)?;
        let segments = parse_path(path)?;
        let methods = parse_methods(methods)?;

        let mut node = match host {
            HostPattern::Any => &mut self.hosts.any,
            HostPattern::Exact(name) => self.hosts.exact.entry(name),
            HostPattern::Wildcard(suffix) => self.hosts.wildcard.entry(suffix),
        };
        let mut glob = false;
        for segment in segments {
            node = match segment {
                Segment::Literal(text) => node.literal.entry(text.to_ascii_lowercase().into()),
                Segment::Param => node.param.get_or_insert_with(Box::default).as_mut(),
                Segment::Glob => {
                    glob = true;
                    break;
                }
            };
        }
        let slot = if glob { &mut node.glob } else { &mut node.end };
        let terminal = slot.get_or_insert_with(|| Terminal {
            entries: Vec::new(),
            allow: "".into(),
        });
        if let Some(existing) = terminal
            .entries
            .iter()
            .find(|e| methods_overlap(&e.methods, &methods))
        {
            return Err(AddError::Conflict {
                existing: existing.value,
            });
        }
        terminal.entries.push(Entry {
            methods,
            value,
            pattern: path.into(),
        });
        terminal.allow = allow_list(&terminal.entries).into();
        self.hosts.routes += 1;
        Ok(())
    }

    /// Freezes the routes into an index.
    pub fn build(self) -> RouteIndex<T> {
        let Hosts {
            exact,
            wildcard,
            any,
            routes,
        } = self.hosts;
        RouteIndex {
            hosts: Hosts {
                exact: exact.frozen(Node::frozen),
                wildcard: wildcard.frozen(Node::frozen),
                any: any.frozen(),
                routes,
            },
        }
    }
}

/// The frozen route index; see the module documentation for precedence.
#[derive(Debug, Clone)]
pub struct RouteIndex<T> {
    hosts: Hosts<T>,
}

/// The outcome of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match<'i, 'p, T> {
    /// A route matched path and method.
    Found(Found<'i, 'p, T>),
    /// The path matched but not with this method; `allow` is the comma-separated list for
    /// the `Allow` header, precomputed at build time.
    MethodNotAllowed {
        /// Sorted, comma-and-space separated, e.g. `GET, POST`.
        allow: &'i str,
        /// The value of the shape's first route, so the refusal can be told to the API
        /// that owns the path.
        value: T,
    },
    /// No route matches the path on this host.
    NotFound,
}

/// A matched route: its value, and what is needed to read its template parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found<'i, 'p, T> {
    /// The value given to [`RouteIndexBuilder::add`].
    pub value: T,
    pattern: &'i str,
    path: &'p str,
}

impl<'i, 'p, T> Found<'i, 'p, T> {
    /// The raw (still percent-encoded) segment text bound to the template parameter
    /// `name`, or `None` if the pattern has no such parameter. Computed from the pattern
    /// on demand, so a lookup that needs no parameter pays nothing for them.
    pub fn param(&self, name: &str) -> Option<&'p str> {
        // Most routes have no parameter: one byte scan of the pattern, not a walk of
        // both texts segment by segment.
        find_byte(self.pattern.as_bytes(), b'{')?;
        self.params()
            .find_map(|(param, value)| (param == name).then_some(value))
    }

    /// Every template parameter of the pattern with its raw segment text, in order.
    pub fn params(&self) -> impl Iterator<Item = (&'i str, &'p str)> + use<'i, 'p, T> {
        Segments::of(self.pattern)
            .zip(Segments::of(self.path))
            .filter_map(|(pattern, value)| Some((param_name(pattern)?, value)))
    }

    /// The route's path pattern as written.
    pub fn pattern(&self) -> &'i str {
        self.pattern
    }
}

/// Longest host (in bytes) lowercased on the stack; DNS names stop at 253.
const HOST_BUFFER: usize = 256;

/// Longest path (in bytes) lowercased on the stack for matching; longer ones with
/// capitals are lowercased on the heap.
const PATH_BUFFER: usize = 512;

impl<T: Copy> RouteIndex<T> {
    /// Finds the route for a request.
    ///
    /// `authority` as sent (port and case as they come); `path` already normalized by
    /// [`crate::path::normalize`] (a path not starting with `/` finds nothing); `method`
    /// as sent.
    pub fn lookup<'p>(&self, authority: &str, path: &'p str, method: &str) -> Match<'_, 'p, T> {
        let Some(rest) = strip_ascii_prefix(path, b'/') else {
            return Match::NotFound;
        };
        // Filled only for a text with capitals: zeroing them on every lookup showed in
        // profiles (a `memory.fill` call in wasm).
        let (mut host_buffer, mut path_buffer);
        let (host_owned, path_owned): (String, String);
        let host = host_of(authority);
        let host = if !has_uppercase(host) {
            host
        } else if let Some(lowered) = {
            host_buffer = [0u8; HOST_BUFFER];
            lowercase_into(host, &mut host_buffer)
        } {
            lowered
        } else {
            // Only for hosts longer than any DNS name: not the common path.
            host_owned = host.to_ascii_lowercase();
            &host_owned
        };
        // Lowercasing keeps every byte where it was, so the terminal's `Found` reads
        // parameters from the path as sent.
        let rest = if !has_uppercase(rest) {
            rest
        } else if let Some(lowered) = {
            path_buffer = [0u8; PATH_BUFFER];
            lowercase_into(rest, &mut path_buffer)
        } {
            lowered
        } else {
            path_owned = rest.to_ascii_lowercase();
            &path_owned
        };
        match self.find_terminal(host, rest) {
            Some(terminal) => terminal.select(method, path),
            None => Match::NotFound,
        }
    }

    /// How many routes the index holds.
    pub fn len(&self) -> usize {
        self.hosts.routes
    }

    /// Whether the index holds no route.
    pub fn is_empty(&self) -> bool {
        self.hosts.routes == 0
    }

    fn find_terminal(&self, host: &str, rest: &str) -> Option<&Terminal<T>> {
        let hosts = &self.hosts;
        if !host.is_empty() {
            if let Some(root) = hosts.exact.get(host)
                && let Some(terminal) = root.find(Segments::of(rest))
            {
                return Some(terminal);
            }
            // IP literals have no labels to walk.
            if !hosts.wildcard.is_empty() && !host.starts_with('[') {
                // Leftmost dot first: the longest suffix is the most specific wildcard.
                for (dot, _) in host.match_indices('.') {
                    if let Some(suffix) = host.get(dot + 1..)
                        && let Some(root) = hosts.wildcard.get(suffix)
                        && let Some(terminal) = root.find(Segments::of(rest))
                    {
                        return Some(terminal);
                    }
                }
            }
        }
        hosts.any.find(Segments::of(rest))
    }
}

impl<T> Node<T> {
    /// The node and everything below it, ready for lookups.
    fn frozen(self) -> Self {
        Node {
            literal: self.literal.frozen(Node::frozen),
            param: self.param.map(|child| Box::new(child.frozen())),
            ..self
        }
    }

    /// The best terminal for the remaining segments, per the module's precedence.
    fn find(&self, mut rest: Segments<'_>) -> Option<&Terminal<T>> {
        let Some(segment) = rest.next() else {
            // The path ends here: a route ending here, else the same route written with
            // a trailing slash, else a glob (which matches its own prefix).
            return self
                .end
                .as_ref()
                .or_else(|| self.literal.get("").and_then(|slash| slash.end.as_ref()))
                .or(self.glob.as_ref());
        };
        if let Some(child) = self.literal.get(segment)
            && let Some(terminal) = child.find(rest)
        {
            return Some(terminal);
        }
        if segment.is_empty() {
            // A trailing slash (a normalized path has no other empty segment) with no
            // route written with one: the route written without it.
            if rest.next().is_none()
                && let Some(terminal) = &self.end
            {
                return Some(terminal);
            }
        } else if let Some(child) = &self.param
            && let Some(terminal) = child.find(rest)
        {
            return Some(terminal);
        }
        self.glob.as_ref()
    }
}

impl<T: Copy> Terminal<T> {
    fn select<'p>(&self, method: &str, path: &'p str) -> Match<'_, 'p, T> {
        let mut any_method = None;
        for entry in &self.entries {
            if entry.methods.is_empty() {
                any_method = Some(entry);
            } else if entry.methods.iter().any(|m| m.eq_ignore_ascii_case(method)) {
                return Match::Found(entry.found(path));
            }
        }
        match any_method {
            Some(entry) => Match::Found(entry.found(path)),
            None => match self.entries.first() {
                Some(entry) => Match::MethodNotAllowed {
                    allow: &self.allow,
                    value: entry.value,
                },
                None => Match::NotFound,
            },
        }
    }
}

impl<T: Copy> Entry<T> {
    fn found<'p>(&self, path: &'p str) -> Found<'_, 'p, T> {
        Found {
            value: self.value,
            pattern: &self.pattern,
            path,
        }
    }
}

fn methods_overlap(a: &[Box<str>], b: &[Box<str>]) -> bool {
    a.is_empty() || b.is_empty() || a.iter().any(|m| b.contains(m))
}

fn allow_list<T>(entries: &[Entry<T>]) -> String {
    let mut methods: Vec<&str> = entries
        .iter()
        .flat_map(|e| e.methods.iter().map(|m| &**m))
        .collect();
    methods.sort_unstable();
    methods.dedup();
    methods.join(", ")
}

/// The host part of an authority: port removed, IPv6 brackets kept, one trailing dot
/// removed.
fn host_of(authority: &str) -> &str {
    let bytes = authority.as_bytes();
    let host = if bytes.first() == Some(&b'[') {
        match find_byte(bytes, b']') {
            Some(close) => authority.get(..=close).unwrap_or(authority),
            None => authority,
        }
    } else {
        // More than one colon without brackets is no `host:port`; it stays whole so it
        // matches no named host.
        strip_lone_port(authority)
    };
    strip_ascii_suffix(host, b'.').unwrap_or(host)
}

fn has_uppercase(text: &str) -> bool {
    text.bytes().any(|b| b.is_ascii_uppercase())
}

/// `text` lowercased into `buffer`, or `None` when it does not fit.
fn lowercase_into<'b>(text: &str, buffer: &'b mut [u8]) -> Option<&'b str> {
    let target = buffer.get_mut(..text.len())?;
    for (to, from) in target.iter_mut().zip(text.bytes()) {
        *to = from.to_ascii_lowercase();
    }
    // ASCII lowercasing keeps UTF-8 valid, so this cannot fail on a `&str` input.
    std::str::from_utf8(target).ok()
}

/// `{name}` → `name`, for a pattern segment.
fn param_name(segment: &str) -> Option<&str> {
    strip_ascii_suffix(strip_ascii_prefix(segment, b'{')?, b'}')
}

enum HostPattern {
    Any,
    Exact(Box<str>),
    Wildcard(Box<str>),
}

fn parse_host(host: Option<&str>) -> Result<HostPattern, PatternError> {
    let Some(host) = host else {
        return Ok(HostPattern::Any);
    };
    let quoted = Quoted(host);
    if host.is_empty() {
        return Err(PatternError::new(
            "the host pattern is empty".to_owned(),
            "omit `host` to match any host",
        ));
    }
    if host == "*" {
        return Err(PatternError::new(
            "`*` alone is not a host pattern".to_owned(),
            "omit `host` to match any host, or write a wildcard such as `*.example.com`",
        ));
    }
    let lower = host.to_ascii_lowercase();
    if let Some(suffix) = lower.strip_prefix("*.") {
        check_host_name(host, suffix)?;
        return Ok(HostPattern::Wildcard(suffix.into()));
    }
    if host.contains('*') {
        return Err(PatternError::new(
            format!("{quoted} uses `*` other than as a whole first label"),
            "write a wildcard host as `*.example.com`, which matches any subdomain but not `example.com` itself",
        ));
    }
    if let Some(inside) = lower.strip_prefix('[') {
        let valid = inside.strip_suffix(']').is_some_and(|address| {
            !address.is_empty()
                && address
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        });
        if !valid {
            return Err(PatternError::new(
                format!("{quoted} is not a valid IPv6 literal"),
                "write an IPv6 host in brackets without a port, such as `[2001:db8::1]`",
            ));
        }
        return Ok(HostPattern::Exact(lower.into()));
    }
    check_host_name(host, &lower)?;
    Ok(HostPattern::Exact(lower.into()))
}

/// Checks a dotted host name (`name` is `written`, lowercased, minus any `*.`).
fn check_host_name(written: &str, name: &str) -> Result<(), PatternError> {
    let quoted = Quoted(written);
    if name.contains(':') {
        return Err(PatternError::new(
            format!("{quoted} includes a port"),
            "write the host without a port, such as `bank.example.com`; the request's port is ignored",
        ));
    }
    if name.split('.').any(str::is_empty) {
        return Err(PatternError::new(
            format!("{quoted} has an empty label"),
            "write a host name such as `bank.example.com`, without leading, trailing or repeated dots",
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(PatternError::new(
            format!("{quoted} is not a host name"),
            "use letters, digits, `-` and `.` as in `bank.example.com`, or `*.example.com` for subdomains",
        ));
    }
    Ok(())
}

enum Segment<'a> {
    Literal(&'a str),
    Param,
    Glob,
}

const REGEX_CHARACTERS: &[char] = &['(', ')', '[', ']', '^', '$', '+', '|', '\\'];

fn parse_path(path: &str) -> Result<Vec<Segment<'_>>, PatternError> {
    let quoted = Quoted(path);
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PatternError::new(
            if path.is_empty() {
                "the path pattern is empty".to_owned()
            } else {
                format!("{quoted} does not start with `/`")
            },
            "write an absolute path such as `/api/v1/items`; the host goes in `host`",
        ));
    };
    if path.contains(REGEX_CHARACTERS) {
        return Err(PatternError::new(
            format!("{quoted} uses regex syntax, which is not supported"),
            "use a template segment such as `/users/{id}`, or end the pattern with `/**` to match everything below a prefix",
        ));
    }
    if path.contains(['?', '#']) {
        return Err(PatternError::new(
            format!("{quoted} contains a query or fragment"),
            "write the path only: routes match the path without its query",
        ));
    }
    if path.contains('%') {
        return Err(PatternError::new(
            format!("{quoted} contains a percent-escape"),
            "write the decoded text: request paths are normalized, so `%41` arrives as `A`",
        ));
    }
    let mut segments = Vec::new();
    let mut params: Vec<&str> = Vec::new();
    let mut pieces = Segments::of(rest).peekable();
    while let Some(segment) = pieces.next() {
        let last = pieces.peek().is_none();
        let parsed = match segment {
            "" if last => Segment::Literal(""),
            "" => {
                return Err(PatternError::new(
                    format!("{quoted} has an empty segment"),
                    "use single slashes: request paths are normalized, so `//` never reaches a route",
                ));
            }
            "." | ".." => {
                return Err(PatternError::new(
                    format!("{quoted} has a `.` or `..` segment"),
                    "write the resolved path: request paths are normalized, so dot segments never reach a route",
                ));
            }
            "**" if last => Segment::Glob,
            "**" => {
                return Err(PatternError::new(
                    format!("{quoted} uses `**` before the end"),
                    "`**` is only allowed as the whole last segment, as in `/api/v1/bills/**`",
                ));
            }
            _ if segment.contains('*') => {
                return Err(PatternError::new(
                    format!("{quoted} uses `*` inside a segment"),
                    "use a template segment such as `/users/{id}` for one segment, or end the pattern with `/**`",
                ));
            }
            _ if segment.contains(['{', '}']) => {
                let Some(name) = param_name(segment).filter(|n| !n.contains(['{', '}'])) else {
                    return Err(PatternError::new(
                        format!("{quoted} has a template parameter that is not a whole segment"),
                        "a parameter fills a whole segment, as in `/users/{id}`",
                    ));
                };
                if !is_param_name(name) {
                    return Err(PatternError::new(
                        format!("{quoted} has an invalid parameter name {}", Quoted(name)),
                        "parameter names are a letter or `_` followed by letters, digits or `_`, as in `{account_id}`",
                    ));
                }
                if params.contains(&name) {
                    return Err(PatternError::new(
                        format!("{quoted} uses the parameter `{name}` twice"),
                        "give each parameter of a pattern its own name",
                    ));
                }
                params.push(name);
                Segment::Param
            }
            _ => {
                if let Some(bad) = segment.chars().find(|&c| !is_pattern_char(c)) {
                    return Err(PatternError::new(
                        format!(
                            "{quoted} contains {}, which a normalized path never contains",
                            Quoted(bad.encode_utf8(&mut [0; 4]))
                        ),
                        "use letters, digits and `-._~!&',=:@` in literal segments (request paths with `;` are refused as ambiguous)",
                    ));
                }
                Segment::Literal(segment)
            }
        };
        segments.push(parsed);
    }
    Ok(segments)
}

/// Characters of a literal pattern segment: RFC 3986 `pchar` minus `%` (escapes are
/// refused), `*` (refused with its own message), the ones refused as regex syntax and
/// `;` (request paths holding one are refused as ambiguous, so it could never match).
/// `path::normalize` decodes the escapes of exactly these characters.
fn is_pattern_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '-' | '.' | '_' | '~' | '!' | '&' | '\'' | ',' | '=' | ':' | '@'
        )
}

fn is_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_methods(methods: &[String]) -> Result<Box<[Box<str>]>, PatternError> {
    let mut parsed: Vec<Box<str>> = Vec::with_capacity(methods.len());
    for method in methods {
        if method.is_empty() {
            return Err(PatternError::new(
                "a method name is empty".to_owned(),
                "write method names such as `GET` or `POST`, or list no methods to allow any",
            ));
        }
        if !method.bytes().all(is_token_byte) {
            return Err(PatternError::new(
                format!("{} is not a method name", Quoted(method)),
                "write method names such as `GET` or `POST` (letters, digits and `!#$%&'*+-.^_|~`)",
            ));
        }
        parsed.push(method.to_ascii_uppercase().into());
    }
    parsed.sort_unstable();
    parsed.dedup();
    Ok(parsed.into())
}

/// RFC 9110 `tchar`.
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A pattern quoted for a message, with control characters escaped (and only those:
/// `str::escape_debug` would bring Unicode's printable tables into the module). Written
/// out only into the message of a refused pattern, not for each of the thousands that
/// pass.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("`")?;
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_str(c.encode_utf8(&mut [0; 4]))?;
            }
        }
        f.write_str("`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn methods(list: &[&str]) -> Vec<String> {
        list.iter().map(|m| (*m).to_owned()).collect()
    }

    /// The expected outcome of a lookup, comparable in tables.
    #[derive(Debug, PartialEq, Eq)]
    enum Outcome<'a> {
        Found(u32),
        NotAllowed(&'a str),
        NotFound,
    }

    fn outcome<'i>(
        index: &'i RouteIndex<u32>,
        authority: &str,
        path: &str,
        method: &str,
    ) -> Outcome<'i> {
        match index.lookup(authority, path, method) {
            Match::Found(found) => Outcome::Found(found.value),
            Match::MethodNotAllowed { allow, .. } => Outcome::NotAllowed(allow),
            Match::NotFound => Outcome::NotFound,
        }
    }

    fn index(routes: &[(Option<&str>, &str, &[&str], u32)]) -> RouteIndex<u32> {
        let mut builder = RouteIndexBuilder::new();
        for (host, path, list, value) in routes {
            builder.add(*host, path, &methods(list), *value).unwrap();
        }
        builder.build()
    }

    fn pattern_error(host: Option<&str>, path: &str, list: &[&str]) -> PatternError {
        let mut builder = RouteIndexBuilder::<u32>::new();
        match builder.add(host, path, &methods(list), 0) {
            Err(AddError::Pattern(error)) => error,
            other => {
                panic!("expected a pattern error for {host:?} {path:?} {list:?}, got {other:?}")
            }
        }
    }

    #[test]
    fn precedence_table_matches_the_documented_rules() {
        let index = index(&[
            (None, "/api/**", &[], 1),
            (None, "/api/v1/**", &[], 2),
            (None, "/api/v1/bills", &["GET"], 3),
            (None, "/api/v1/bills/{id}", &["GET"], 4),
            (None, "/api/v1/bills/latest", &["GET"], 5),
            (None, "/api/v1/bills/{id}", &["DELETE"], 6),
            (None, "/api/v2/accounts/{id}", &["GET"], 7),
            (None, "/users/me/**", &[], 8),
            (None, "/users/{id}/accounts", &[], 9),
            (
                None,
                "/users/{id}/accounts/{account_id}",
                &["GET", "PUT"],
                10,
            ),
            (None, "/dir/", &["GET"], 12),
            (None, "/file", &["GET"], 13),
            (None, "/both", &["GET"], 14),
            (None, "/both/", &["GET"], 15),
            (None, "/", &["GET"], 16),
            (None, "/api/v2/login", &["POST"], 17),
        ]);
        use Outcome::{Found, NotAllowed, NotFound};
        let cases: &[(&str, &str, Outcome)] = &[
            // Literal over parameter over glob.
            ("/api/v1/bills/latest", "GET", Found(5)),
            ("/api/v1/bills/42", "GET", Found(4)),
            ("/api/v1/bills/42", "DELETE", Found(6)),
            ("/api/v1/bills", "GET", Found(3)),
            ("/api/v1/bills/42/pdf", "GET", Found(2)),
            // Deeper glob over shallower glob.
            ("/api/v1/other", "GET", Found(2)),
            ("/api/v1", "GET", Found(2)),
            ("/api/v1/", "GET", Found(2)),
            ("/api/v3/x", "GET", Found(1)),
            ("/api", "GET", Found(1)),
            ("/api/", "GET", Found(1)),
            ("/apis", "GET", NotFound),
            // The most specific path decides the method: no escape through `/api/**`.
            ("/api/v2/accounts/7", "DELETE", NotAllowed("GET")),
            ("/api/v1/bills/latest", "POST", NotAllowed("GET")),
            ("/api/v1/bills/42", "POST", NotAllowed("DELETE, GET")),
            ("/api/v2/login", "GET", NotAllowed("POST")),
            ("/api/v2/login", "post", Found(17)),
            // The first differing segment decides.
            ("/users/me/accounts", "GET", Found(8)),
            ("/users/42/accounts", "GET", Found(9)),
            ("/users/42/accounts/", "GET", Found(9)),
            // Methods of one shape; the request method is compared without case.
            ("/users/42/accounts/9", "GET", Found(10)),
            ("/users/42/accounts/9", "put", Found(10)),
            ("/users/42/accounts/9", "DELETE", NotAllowed("GET, PUT")),
            ("/users/42/other", "GET", NotFound),
            // Parameters never match an empty segment.
            ("/users//accounts", "GET", NotFound),
            // Trailing slash: own spelling first, the other spelling as a fallback.
            ("/dir/", "GET", Found(12)),
            ("/dir", "GET", Found(12)),
            ("/file", "GET", Found(13)),
            ("/file/", "GET", Found(13)),
            ("/both", "GET", Found(14)),
            ("/both/", "GET", Found(15)),
            ("/", "GET", Found(16)),
            ("/", "POST", NotAllowed("GET")),
            ("/nothing", "GET", NotFound),
            ("not-a-path", "GET", NotFound),
        ];
        for (path, method, expected) in cases {
            assert_eq!(
                &outcome(&index, "any.example.com", path, method),
                expected,
                "{method} {path}"
            );
        }
    }

    #[test]
    fn a_root_glob_catches_everything_else() {
        let index = index(&[(None, "/**", &[], 1), (None, "/a", &["GET"], 2)]);
        assert_eq!(outcome(&index, "h", "/", "GET"), Outcome::Found(1));
        assert_eq!(outcome(&index, "h", "/x/y/z", "GET"), Outcome::Found(1));
        assert_eq!(outcome(&index, "h", "/a", "GET"), Outcome::Found(2));
        assert_eq!(
            outcome(&index, "h", "/a", "POST"),
            Outcome::NotAllowed("GET")
        );
        assert_eq!(outcome(&index, "h", "/a/b", "POST"), Outcome::Found(1));
    }

    #[test]
    fn hosts_are_tried_exact_then_wildcard_then_any() {
        let index = index(&[
            (Some("bank.example.com"), "/accounts/{id}", &["GET"], 1),
            (Some("*.example.com"), "/accounts/{id}", &[], 2),
            (Some("*.eu.example.com"), "/accounts/{id}", &[], 3),
            (None, "/accounts/{id}", &[], 4),
            (None, "/health", &[], 5),
            (Some("bank.example.com"), "/only-bank", &[], 6),
        ]);
        let cases: &[(&str, &str, &str, Outcome)] = &[
            ("bank.example.com", "/accounts/1", "GET", Outcome::Found(1)),
            // The exact host matched the path, so it decides the method.
            (
                "bank.example.com",
                "/accounts/1",
                "DELETE",
                Outcome::NotAllowed("GET"),
            ),
            // The exact host has no route for the path: wildcard, then any.
            ("bank.example.com", "/health", "GET", Outcome::Found(5)),
            ("shop.example.com", "/accounts/1", "GET", Outcome::Found(2)),
            ("a.b.example.com", "/accounts/1", "GET", Outcome::Found(2)),
            (
                "shop.eu.example.com",
                "/accounts/1",
                "GET",
                Outcome::Found(3),
            ),
            (
                "x.shop.eu.example.com",
                "/accounts/1",
                "GET",
                Outcome::Found(3),
            ),
            ("eu.example.com", "/accounts/1", "GET", Outcome::Found(2)),
            ("example.com", "/accounts/1", "GET", Outcome::Found(4)),
            ("other.org", "/accounts/1", "GET", Outcome::Found(4)),
            ("", "/accounts/1", "GET", Outcome::Found(4)),
            ("shop.example.com", "/only-bank", "GET", Outcome::NotFound),
            ("bank.example.com", "/only-bank", "GET", Outcome::Found(6)),
        ];
        for (authority, path, method, expected) in cases {
            assert_eq!(
                &outcome(&index, authority, path, method),
                expected,
                "{method} {authority}{path}"
            );
        }
    }

    #[test]
    fn host_case_port_and_trailing_dot_are_ignored() {
        let index = index(&[
            (Some("Bank.Example.COM"), "/a", &[], 1),
            (Some("*.Example.com"), "/a", &[], 2),
            (None, "/a", &[], 3),
        ]);
        for authority in [
            "bank.example.com",
            "Bank.Example.com:8443",
            "BANK.EXAMPLE.COM",
            "bank.example.com.",
            "bank.example.com.:443",
        ] {
            assert_eq!(
                outcome(&index, authority, "/a", "GET"),
                Outcome::Found(1),
                "{authority}"
            );
        }
        for authority in ["Shop.EXAMPLE.com:80", "x.y.example.com"] {
            assert_eq!(
                outcome(&index, authority, "/a", "GET"),
                Outcome::Found(2),
                "{authority}"
            );
        }
        let long = format!("{}.EXAMPLE.com", "A".repeat(400));
        assert_eq!(outcome(&index, &long, "/a", "GET"), Outcome::Found(2));
    }

    #[test]
    fn ipv6_authorities_match_bracketed_hosts() {
        let index = index(&[
            (Some("[::1]"), "/a", &[], 1),
            (Some("[2001:DB8::1]"), "/a", &[], 2),
            (None, "/a", &[], 3),
        ]);
        assert_eq!(
            outcome(&index, "[::1]:8080", "/a", "GET"),
            Outcome::Found(1)
        );
        assert_eq!(outcome(&index, "[::1]", "/a", "GET"), Outcome::Found(1));
        assert_eq!(
            outcome(&index, "[2001:db8::1]:443", "/a", "GET"),
            Outcome::Found(2)
        );
        assert_eq!(outcome(&index, "::1", "/a", "GET"), Outcome::Found(3));
        assert_eq!(
            outcome(&index, "127.0.0.1:80", "/a", "GET"),
            Outcome::Found(3)
        );
    }

    #[test]
    fn host_of_strips_ports_and_keeps_brackets() {
        assert_eq!(host_of("a.example.com:8443"), "a.example.com");
        assert_eq!(host_of("a.example.com"), "a.example.com");
        assert_eq!(host_of("[::1]:8080"), "[::1]");
        assert_eq!(host_of("[::1"), "[::1");
        assert_eq!(host_of("::1"), "::1");
        assert_eq!(host_of("a.example.com."), "a.example.com");
        assert_eq!(host_of(""), "");
    }

    #[test]
    fn parameters_are_read_from_the_pattern_lazily() {
        let index = index(&[
            (None, "/users/{id}/accounts/{account_id}", &["GET"], 1),
            (None, "/users/{user}/accounts/{account_id}", &["POST"], 2),
            (None, "/files/{name}/**", &[], 3),
        ]);
        let Match::Found(found) = index.lookup("h", "/users/alice%40x/accounts/42", "GET") else {
            panic!("expected a match");
        };
        assert_eq!(found.value, 1);
        assert_eq!(found.pattern(), "/users/{id}/accounts/{account_id}");
        assert_eq!(found.param("id"), Some("alice%40x"));
        assert_eq!(found.param("account_id"), Some("42"));
        assert_eq!(found.param("user"), None);
        assert_eq!(
            found.params().collect::<Vec<_>>(),
            [("id", "alice%40x"), ("account_id", "42")]
        );

        // Same shape, other names: each route reads its own names.
        let Match::Found(found) = index.lookup("h", "/users/bob/accounts/7/", "POST") else {
            panic!("expected a match");
        };
        assert_eq!(found.value, 2);
        assert_eq!(found.param("user"), Some("bob"));
        assert_eq!(found.param("id"), None);
        assert_eq!(found.param("account_id"), Some("7"));

        let Match::Found(found) = index.lookup("h", "/files/report/2024/q1.pdf", "GET") else {
            panic!("expected a match");
        };
        assert_eq!(found.param("name"), Some("report"));
    }

    #[test]
    fn conflicts_are_detected() {
        let mut builder = RouteIndexBuilder::new();
        builder.add(None, "/u/{a}", &methods(&["GET"]), 1).unwrap();
        builder.add(None, "/all", &[], 2).unwrap();
        builder
            .add(Some("*.example.com"), "/w/**", &methods(&["PUT"]), 3)
            .unwrap();
        let conflicts: &[(Option<&str>, &str, &[&str], u32)] = &[
            (None, "/u/{b}", &["get"], 1),
            (None, "/u/{b}", &[], 1),
            (None, "/u/{a}", &["POST", "GET"], 1),
            (None, "/all", &["DELETE"], 2),
            (None, "/all", &[], 2),
            (Some("*.EXAMPLE.com"), "/w/**", &["PUT"], 3),
            // Literal segments compare without case.
            (None, "/ALL", &["GET"], 2),
        ];
        for (host, path, list, existing) in conflicts {
            assert_eq!(
                builder.add(*host, path, &methods(list), 99),
                Err(AddError::Conflict {
                    existing: *existing
                }),
                "{host:?} {path} {list:?}"
            );
        }
    }

    #[test]
    fn routes_that_differ_are_not_conflicts() {
        let mut builder = RouteIndexBuilder::new();
        let fine: &[(Option<&str>, &str, &[&str])] = &[
            (None, "/u/{a}", &["GET"]),
            (None, "/u/{b}", &["POST"]),
            (None, "/u/me", &["GET"]),
            (None, "/u/{a}/", &["GET"]),
            (None, "/u/**", &["GET"]),
            (None, "/u", &["GET"]),
            (Some("example.com"), "/u/{a}", &["GET"]),
            (Some("*.example.com"), "/u/{a}", &["GET"]),
            (Some("other.example.com"), "/u/{a}", &["GET"]),
        ];
        for (value, (host, path, list)) in (0u32..).zip(fine) {
            assert_eq!(
                builder.add(*host, path, &methods(list), value),
                Ok(()),
                "{path}"
            );
        }
        assert_eq!(builder.build().len(), fine.len());
    }

    #[test]
    fn allow_lists_are_the_sorted_union_of_the_shape() {
        let index = index(&[
            (None, "/r/{a}", &["PUT", "get", "GET"], 1),
            (None, "/r/{b}", &["DELETE"], 2),
            (None, "/r/{c}", &["PATCH"], 3),
        ]);
        assert_eq!(
            outcome(&index, "h", "/r/1", "POST"),
            Outcome::NotAllowed("DELETE, GET, PATCH, PUT")
        );
        assert_eq!(outcome(&index, "h", "/r/1", "PATCH"), Outcome::Found(3));
    }

    #[test]
    fn bad_path_patterns_are_refused_with_a_hint() {
        let error = pattern_error(None, "/users/[0-9]+", &[]);
        assert_eq!(
            error.message,
            "`/users/[0-9]+` uses regex syntax, which is not supported"
        );
        assert!(error.hint.contains("`/users/{id}`"), "{}", error.hint);

        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("users", "does not start with `/`"),
            ("/users/(\\d+)", "regex"),
            ("/a|b", "regex"),
            ("/^a$", "regex"),
            ("/a?x=1", "query"),
            ("/a#x", "query"),
            ("/a%20b", "percent"),
            ("/a//b", "empty segment"),
            ("//", "empty segment"),
            ("/a/./b", "`.` or `..`"),
            ("/a/..", "`.` or `..`"),
            ("/**/a", "`**` before the end"),
            ("/a/**/", "`**` before the end"),
            ("/a/*", "`*` inside"),
            ("/a*/b", "`*` inside"),
            ("/a/***", "`*` inside"),
            ("/u/x{id}", "not a whole segment"),
            ("/u/{id}x", "not a whole segment"),
            ("/u/{{id}}", "not a whole segment"),
            ("/u/{id", "not a whole segment"),
            ("/u/{}", "invalid parameter name"),
            ("/u/{1id}", "invalid parameter name"),
            ("/u/{a-b}", "invalid parameter name"),
            ("/u/{id}/x/{id}", "twice"),
            ("/a b", "contains ` `"),
            ("/a\tb", "contains `\\t`"),
            ("/café", "contains `é`"),
            ("/a\"b", "contains `\"`"),
        ];
        for (path, needle) in cases {
            let error = pattern_error(None, path, &[]);
            assert!(
                error.message.contains(needle),
                "{path:?}: {:?} should mention {needle:?}",
                error.message
            );
            assert!(
                !error.message.starts_with(char::is_uppercase),
                "{path:?}: {}",
                error.message
            );
            assert!(!error.hint.is_empty());
        }
    }

    #[test]
    fn bad_hosts_and_methods_are_refused_with_a_hint() {
        let hosts: &[(&str, &str)] = &[
            ("", "empty"),
            ("*", "`*` alone"),
            ("a.*.example.com", "whole first label"),
            ("*example.com", "whole first label"),
            ("bank.example.com:8443", "port"),
            ("bank.example.com.", "empty label"),
            ("bank..example.com", "empty label"),
            ("*.", "empty label"),
            ("bank/example", "not a host name"),
            ("[::1", "IPv6"),
            ("[::1]:80", "IPv6"),
            ("[]", "IPv6"),
        ];
        for (host, needle) in hosts {
            let error = pattern_error(Some(host), "/a", &[]);
            assert!(
                error.message.contains(needle),
                "{host:?}: {:?} should mention {needle:?}",
                error.message
            );
        }
        for list in [&[""][..], &["GE T"], &["GET", "P(OST"], &["GÉT"]] {
            let error = pattern_error(None, "/a", list);
            assert!(
                error.message.contains("method"),
                "{list:?}: {}",
                error.message
            );
        }
    }

    #[test]
    fn accepted_patterns_cover_the_documented_forms() {
        let mut builder = RouteIndexBuilder::new();
        let good: &[(Option<&str>, &str, &[&str])] = &[
            (None, "/", &[]),
            (None, "/**", &["GET"]),
            (None, "/api/v2/login", &["POST", "post"]),
            (None, "/users/{id}/accounts/{account_id}", &["GET"]),
            (None, "/_x/{_private9}/", &[]),
            (None, "/a,v=1/b:c/@d/~e,f=g!h&i'j", &[]),
            (Some("bank.example.com"), "/a", &[]),
            (Some("*.example.com"), "/a", &[]),
            (Some("[::1]"), "/a", &[]),
            (Some("127.0.0.1"), "/a", &[]),
            (None, "/custom", &["PROPFIND", "M-SEARCH"]),
        ];
        for (value, (host, path, list)) in (0u32..).zip(good) {
            assert_eq!(
                builder.add(*host, path, &methods(list), value),
                Ok(()),
                "{path}"
            );
        }
    }

    #[test]
    fn pattern_errors_display_message_and_hint() {
        let error = pattern_error(None, "/a//b", &[]);
        assert_eq!(
            error.to_string(),
            format!("{} ({})", error.message, error.hint)
        );
    }

    #[test]
    fn ten_thousand_routes_are_found_exactly() {
        let mut builder = RouteIndexBuilder::new();
        let route = |n: u32| -> (Option<String>, String, Vec<String>) {
            let host = match n % 4 {
                0 => None,
                1 => Some(format!("svc{}.example.com", n % 97)),
                2 => Some(format!("*.zone{}.example.com", n % 13)),
                _ => Some(format!("tenant{n}.example.org")),
            };
            let path = match n % 3 {
                0 => format!("/api/v{}/svc{n}/items/{{id}}", n % 5),
                1 => format!("/api/v{}/svc{n}/exact", n % 5),
                _ => format!("/api/v{}/svc{n}/**", n % 5),
            };
            let list = if n.is_multiple_of(2) {
                vec!["GET".to_owned()]
            } else {
                Vec::new()
            };
            (host, path, list)
        };
        for n in 0..10_000u32 {
            let (host, path, list) = route(n);
            builder.add(host.as_deref(), &path, &list, n).unwrap();
        }
        let index = builder.build();
        assert_eq!(index.len(), 10_000);
        for n in 0..10_000u32 {
            let (host, path, _) = route(n);
            let authority = match &host {
                None => "anything.example.net".to_owned(),
                Some(h) => match h.strip_prefix("*.") {
                    Some(suffix) => format!("x.{suffix}:443"),
                    None => h.to_uppercase(),
                },
            };
            let request = path.replace("{id}", "item-7").replace("**", "deep/er");
            let Match::Found(found) = index.lookup(&authority, &request, "GET") else {
                panic!("route {n}: {authority} {request} not found");
            };
            assert_eq!(found.value, n, "{authority} {request}");
            if n.is_multiple_of(3) {
                assert_eq!(found.param("id"), Some("item-7"));
            }
            let post = index.lookup(&authority, &request, "POST");
            if n.is_multiple_of(2) {
                assert!(
                    matches!(post, Match::MethodNotAllowed { allow: "GET", value } if value == n),
                    "route {n}"
                );
            } else {
                assert!(matches!(post, Match::Found(f) if f.value == n), "route {n}");
            }
        }
        assert_eq!(
            index.lookup("nobody.example.net", "/api/v0/svc1/exact", "GET"),
            Match::NotFound
        );
    }

    #[test]
    fn literal_segments_match_without_case_and_parameters_keep_theirs() {
        let index = index(&[
            (Some("Shop.Example.com"), "/API/v3/Cart/**", &[], 1),
            (None, "/api/v2/accounts/{account_id}", &["GET"], 2),
            (None, "/api/**", &[], 3),
            (None, "/api/admin", &["GET"], 4),
        ]);
        assert_eq!(
            outcome(&index, "SHOP.example.COM.", "/api/V3/cart/x", "GET"),
            Outcome::Found(1)
        );
        // A glob cannot catch a spelling of a more specific route in other capitals.
        assert_eq!(outcome(&index, "h", "/api/ADMIN", "GET"), Outcome::Found(4));
        assert_eq!(
            outcome(&index, "h", "/API/Admin", "POST"),
            Outcome::NotAllowed("GET")
        );
        let path = "/API/V2/Accounts/AbC-1";
        let Match::Found(found) = index.lookup("h", path, "GET") else {
            panic!("{path} not found");
        };
        assert_eq!(found.value, 2);
        assert_eq!(found.param("account_id"), Some("AbC-1"));
        // Longer than the stack buffer: lowercased on the heap, same answer.
        let long = format!("/API/V2/ACCOUNTS/{}", "X".repeat(PATH_BUFFER));
        let Match::Found(found) = index.lookup("h", &long, "GET") else {
            panic!("long path not found");
        };
        assert_eq!(found.param("account_id").map(str::len), Some(PATH_BUFFER));
    }

    #[test]
    fn routes_that_differ_only_in_case_conflict() {
        let mut builder = RouteIndexBuilder::new();
        builder.add(None, "/api/Admin", &[], 1).unwrap();
        assert!(matches!(
            builder.add(None, "/API/admin", &[], 2),
            Err(AddError::Conflict { existing: 1 })
        ));
    }

    #[test]
    fn a_semicolon_in_a_pattern_is_refused() {
        let error = pattern_error(None, "/a;b", &[]);
        assert!(error.to_string().contains("`;`"), "{error}");
    }

    #[test]
    fn normalization_decodes_the_escape_of_every_pattern_character_and_no_other() {
        for byte in 0x20u8..0x7f {
            let c = char::from(byte);
            // Between letters, so that `.` stays a character rather than a segment.
            let raw = format!("/a%{byte:02X}b");
            let decoded = crate::path::normalize(&raw).ok().as_deref() == Some(&*format!("/a{c}b"));
            assert_eq!(decoded, is_pattern_char(c), "{c:?}");
        }
    }
}

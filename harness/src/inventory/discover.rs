//! Endpoints from recorded traffic: requests grouped by host, method and path template,
//! with what each endpoint's traffic looked like and, given a policy, which API covers
//! it.
//!
//! The template is the matched route's own pattern when a policy route with no glob
//! matches (so `/users/alice/profile` and `/users/bob/profile` are one endpoint of the
//! `/users/{user_id}/profile` route), and the [`template`] heuristic otherwise. Coverage
//! is asked of the engine's route index ([`Policy::route_of`]), so it is what the filter
//! would route; an endpoint whose requests were routed differently lists each outcome.
//!
//! A CORS preflight is routed by the method it announces, as the engine routes it.
//!
//! Counted per endpoint: requests; distinct clients (the recorded peer address without
//! its port, else the first `X-Forwarded-For` entry); response statuses; first and last
//! seen; requests carrying credentials (`authorization`, `x-api-key` or `cookie`);
//! responses setting cookies; login-like failures (401 or 403 answering a POST).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use stakeguard_policies::model::LifecycleStatus;
use stakeguard_policies::{Policy, RouteOf};

use super::template;
use crate::traffic::Record;
use crate::traffic::time::format_rfc3339;

/// Request headers that carry credentials.
const CREDENTIALS: [&str; 3] = ["authorization", "x-api-key", "cookie"];

/// What the policy makes of an endpoint's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// An active API serves them.
    Covered,
    /// A deprecated or retired API serves them.
    Zombie,
    /// An API owns the path but not the method (405).
    MethodNotAllowed,
    /// No API: a shadow endpoint.
    Shadow,
    /// The path is ambiguous after normalization (400).
    Ambiguous,
}

impl Status {
    /// The name used in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Covered => "covered",
            Status::Zombie => "zombie",
            Status::MethodNotAllowed => "method_not_allowed",
            Status::Shadow => "shadow",
            Status::Ambiguous => "ambiguous",
        }
    }
}

/// One coverage outcome and how many requests had it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Coverage {
    /// The outcome.
    pub status: Status,
    /// The API, when one owns the path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// Its version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `deprecated` or `retired`, for zombies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<&'static str>,
    /// Requests with this outcome.
    pub requests: u64,
}

/// One endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// The host, lowercase, without port.
    pub host: String,
    /// The method as sent.
    pub method: String,
    /// The path template.
    pub path: String,
    /// Requests.
    pub requests: u64,
    /// Distinct clients.
    pub clients: u64,
    /// Requests per response status (`none` when no response was recorded).
    pub statuses: BTreeMap<String, u64>,
    /// The first request's time (RFC 3339), when recorded.
    pub first_seen: Option<String>,
    /// The last request's time.
    pub last_seen: Option<String>,
    /// Requests carrying credentials.
    pub with_credentials: u64,
    /// Responses setting cookies.
    pub set_cookie: u64,
    /// 401 or 403 answers to POST.
    pub login_failures: u64,
    /// Coverage, when a policy was given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub coverage: Vec<Coverage>,
}

impl Endpoint {
    /// Whether any of its requests reached no API.
    pub fn is_shadow(&self) -> bool {
        self.coverage.iter().any(|c| c.status == Status::Shadow)
    }
}

/// Endpoints and their totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inventory {
    /// Requests read.
    pub requests: u64,
    /// The policy's revision, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Endpoints by host, path and method.
    pub endpoints: Vec<Endpoint>,
    /// Endpoints per coverage status (an endpoint counts once per status it met).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub summary: BTreeMap<&'static str, u64>,
}

/// What is gathered per endpoint while reading.
#[derive(Default)]
struct Tally {
    requests: u64,
    clients: HashSet<String>,
    statuses: BTreeMap<String, u64>,
    first_ns: Option<i64>,
    last_ns: Option<i64>,
    with_credentials: u64,
    set_cookie: u64,
    login_failures: u64,
    coverage: Vec<(Status, Option<usize>, u64)>,
}

/// Groups `records` into endpoints, with coverage when `policy` is given.
pub fn discover(records: &[Record], policy: Option<&Policy>) -> Inventory {
    let mut tallies: HashMap<(String, String, String), Tally> = HashMap::new();
    for record in records {
        let request = &record.request;
        let host = host_of(&request.authority);
        let routed =
            policy.map(|p| p.route_of(&request.authority, &request.path, routed_method(request)));
        let path = match routed {
            Some(RouteOf::Api { pattern, .. }) if !pattern.ends_with("/**") => pattern.to_owned(),
            _ => match stakeguard_policies::path::normalize(&request.path) {
                Ok(normal) => template::template(&normal),
                Err(_) => template::template(without_query(&request.path)),
            },
        };
        let tally = tallies
            .entry((host, path, request.method.clone()))
            .or_default();
        tally.requests += 1;
        if let Some(client) = client_of(record)
            && !tally.clients.contains(client)
        {
            tally.clients.insert(client.to_owned());
        }
        let status = record.response.as_ref().map(|r| r.status);
        *tally
            .statuses
            .entry(status.map_or_else(|| "none".to_owned(), |s| s.to_string()))
            .or_default() += 1;
        if let Some(ns) = record.time_ns {
            tally.first_ns = Some(tally.first_ns.map_or(ns, |f| f.min(ns)));
            tally.last_ns = Some(tally.last_ns.map_or(ns, |l| l.max(ns)));
        }
        if request
            .headers
            .iter()
            .any(|(name, _)| CREDENTIALS.contains(&name.as_str()))
        {
            tally.with_credentials += 1;
        }
        if let Some(response) = &record.response
            && response
                .headers
                .iter()
                .any(|(name, _)| name == "set-cookie")
        {
            tally.set_cookie += 1;
        }
        if request.method.eq_ignore_ascii_case("POST") && matches!(status, Some(401 | 403)) {
            tally.login_failures += 1;
        }
        if let (Some(policy), Some(routed)) = (policy, routed) {
            let now_ms = record
                .time_ns
                .map_or(i64::MIN, |ns| ns.div_euclid(1_000_000));
            let (status, api) = coverage_of(policy, routed, now_ms);
            match tally
                .coverage
                .iter_mut()
                .find(|(s, a, _)| *s == status && *a == api)
            {
                Some((_, _, n)) => *n += 1,
                None => tally.coverage.push((status, api, 1)),
            }
        }
    }
    let mut endpoints: Vec<Endpoint> = tallies
        .into_iter()
        .map(|((host, path, method), tally)| endpoint(host, path, method, tally, policy))
        .collect();
    endpoints.sort_by(|a, b| (&a.host, &a.path, &a.method).cmp(&(&b.host, &b.path, &b.method)));
    let mut summary = BTreeMap::new();
    for endpoint in &endpoints {
        let mut seen: Vec<Status> = endpoint.coverage.iter().map(|c| c.status).collect();
        seen.dedup();
        for status in seen {
            *summary.entry(status.as_str()).or_default() += 1;
        }
    }
    Inventory {
        requests: records.len() as u64,
        policy: policy.map(|p| p.revision().to_owned()),
        endpoints,
        summary,
    }
}

fn coverage_of(policy: &Policy, routed: RouteOf<'_>, now_ms: i64) -> (Status, Option<usize>) {
    match routed {
        RouteOf::Api { api, .. } => match policy.lifecycle_at(api, now_ms) {
            Some(LifecycleStatus::Deprecated | LifecycleStatus::Retired) => {
                (Status::Zombie, Some(api))
            }
            _ => (Status::Covered, Some(api)),
        },
        RouteOf::MethodNotAllowed(api) => (Status::MethodNotAllowed, Some(api)),
        RouteOf::Unknown => (Status::Shadow, None),
        RouteOf::Ambiguous => (Status::Ambiguous, None),
    }
}

fn endpoint(
    host: String,
    path: String,
    method: String,
    tally: Tally,
    policy: Option<&Policy>,
) -> Endpoint {
    let mut coverage: Vec<Coverage> = tally
        .coverage
        .into_iter()
        .map(|(status, api, requests)| {
            let info = api.and_then(|id| policy.and_then(|p| p.api(id)));
            // The lifecycle a zombie's requests met; the first request's time decides
            // for a deprecation that passed its sunset during the recording.
            let lifecycle = match (status, api, policy) {
                (Status::Zombie, Some(id), Some(p)) => p
                    .lifecycle_at(id, tally.first_ns.map_or(i64::MIN, |ns| ns / 1_000_000))
                    .map(|l| match l {
                        LifecycleStatus::Retired => "retired",
                        _ => "deprecated",
                    }),
                _ => None,
            };
            Coverage {
                status,
                api: info.map(|i| i.name.clone()),
                version: info.map(|i| i.version.clone()),
                lifecycle,
                requests,
            }
        })
        .collect();
    coverage.sort_by(|a, b| (a.status, &a.api, &a.version).cmp(&(b.status, &b.api, &b.version)));
    Endpoint {
        host,
        method,
        path,
        requests: tally.requests,
        clients: tally.clients.len() as u64,
        statuses: tally.statuses,
        first_seen: tally.first_ns.map(format_rfc3339),
        last_seen: tally.last_ns.map(format_rfc3339),
        with_credentials: tally.with_credentials,
        set_cookie: tally.set_cookie,
        login_failures: tally.login_failures,
        coverage,
    }
}

/// The host of an authority, lowercase, without port (`[::1]` keeps its brackets).
fn host_of(authority: &str) -> String {
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest
            .find(']')
            .and_then(|end| authority.get(..end + 2))
            .unwrap_or(authority),
        None => authority
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(authority, |(host, _)| host),
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// The client's address without port, or the first forwarded address.
fn client_of(record: &Record) -> Option<&str> {
    if let Some(source) = record.source.as_deref() {
        return Some(match source.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or(rest),
            None => source.rsplit_once(':').map_or(source, |(ip, _)| ip),
        });
    }
    record
        .request
        .headers
        .iter()
        .find(|(name, _)| name == "x-forwarded-for")
        .and_then(|(_, value)| value.split(',').next())
        .map(str::trim)
}

/// The method the engine routes a request by: a CORS preflight (`OPTIONS` with an
/// `origin` and an `access-control-request-method`) is routed as the request it
/// announces.
fn routed_method(request: &crate::traffic::RecordRequest) -> &str {
    let header = |wanted: &str| {
        request
            .headers
            .iter()
            .find(|(name, _)| name == wanted)
            .map(|(_, value)| value.as_str())
    };
    match header("access-control-request-method") {
        Some(method)
            if request.method.eq_ignore_ascii_case("OPTIONS") && header("origin").is_some() =>
        {
            method
        }
        _ => &request.method,
    }
}

fn without_query(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or(path)
}

/// The inventory as a table for people, one endpoint a line, then the totals.
pub fn render_table(inventory: &Inventory) -> String {
    let mut rows: Vec<[String; 11]> = vec![
        [
            "METHOD",
            "HOST",
            "PATH",
            "REQS",
            "CLIENTS",
            "STATUSES",
            "CRED",
            "SETCOOKIE",
            "LOGIN4XX",
            "SEEN",
            "COVERAGE",
        ]
        .map(str::to_owned),
    ];
    for e in &inventory.endpoints {
        let statuses: Vec<String> = e.statuses.iter().map(|(s, n)| format!("{s}:{n}")).collect();
        let seen = match (&e.first_seen, &e.last_seen) {
            (Some(first), Some(last)) if first == last => first.clone(),
            (Some(first), Some(last)) => format!("{first}..{last}"),
            _ => "-".to_owned(),
        };
        let coverage: Vec<String> = e.coverage.iter().map(coverage_text).collect();
        rows.push([
            e.method.clone(),
            e.host.clone(),
            e.path.clone(),
            e.requests.to_string(),
            e.clients.to_string(),
            statuses.join(" "),
            e.with_credentials.to_string(),
            e.set_cookie.to_string(),
            e.login_failures.to_string(),
            seen,
            if coverage.is_empty() {
                "-".to_owned()
            } else {
                coverage.join("; ")
            },
        ]);
    }
    let mut widths = [0usize; 11];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str(&format!(
        "{} requests, {} endpoints",
        inventory.requests,
        inventory.endpoints.len()
    ));
    for (status, n) in &inventory.summary {
        out.push_str(&format!(", {status} {n}"));
    }
    out.push('\n');
    out
}

fn coverage_text(c: &Coverage) -> String {
    let api = match (&c.api, &c.version) {
        (Some(name), Some(version)) => format!(" {name} {version}"),
        _ => String::new(),
    };
    let lifecycle = c.lifecycle.map(|l| format!(" ({l})")).unwrap_or_default();
    format!("{}{api}{lifecycle}", c.status.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::{RecordRequest, RecordResponse};

    fn record(method: &str, authority: &str, path: &str, status: u16, source: &str) -> Record {
        Record {
            time_ns: Some(1_000_000_000),
            source: Some(source.to_owned()),
            request: RecordRequest {
                method: method.to_owned(),
                authority: authority.to_owned(),
                path: path.to_owned(),
                ..Default::default()
            },
            response: Some(RecordResponse {
                status,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn hosts_lose_port_case_and_trailing_dot() {
        assert_eq!(host_of("Bank.Example.com:8443"), "bank.example.com");
        assert_eq!(host_of("bank.example.com."), "bank.example.com");
        assert_eq!(host_of("[::1]:8080"), "[::1]");
    }

    #[test]
    fn requests_group_by_host_method_and_template() {
        let records = [
            record("GET", "a.example.com", "/items/1?x=1", 200, "10.0.0.1:1"),
            record("GET", "A.example.com:443", "/items/2", 404, "10.0.0.2:2"),
            record("POST", "a.example.com", "/items/2", 401, "10.0.0.2:3"),
        ];
        let inventory = discover(&records, None);
        assert_eq!(inventory.endpoints.len(), 2);
        let get = &inventory.endpoints[0];
        assert_eq!(
            (get.method.as_str(), get.path.as_str()),
            ("GET", "/items/{param}")
        );
        assert_eq!((get.requests, get.clients), (2, 2));
        assert_eq!(get.statuses.get("404"), Some(&1));
        assert_eq!(inventory.endpoints[1].login_failures, 1);
        assert!(inventory.summary.is_empty());
    }

    #[test]
    fn coverage_follows_the_engines_routes_and_lifecycles() {
        let policy = Policy::from_json(
            r#"{"revision":"t","tiers":{"low":{}},"apis":[
                {"name":"users","version":"v2","owner":"o","tier":"low",
                 "routes":[{"path":"/v2/users/{user}","methods":["GET"]}]},
                {"name":"users","version":"v1","owner":"o","tier":"low",
                 "lifecycle":{"status":"deprecated","deprecated_at":"1970-01-01T00:00:00Z"},
                 "routes":[{"path":"/v1/users/**"}]}]}"#,
        )
        .unwrap();
        let records = [
            record("GET", "h", "/v2/users/alice", 200, "10.0.0.1:1"),
            record("GET", "h", "/v2/users/bob", 200, "10.0.0.1:1"),
            record("DELETE", "h", "/v2/users/bob", 200, "10.0.0.1:1"),
            record("GET", "h", "/v1/users/7", 200, "10.0.0.1:1"),
            record("GET", "h", "/debug/vars", 200, "10.0.0.1:1"),
            record("GET", "h", "/a/%2e%2e/%2e%2e/etc", 400, "10.0.0.1:1"),
        ];
        let inventory = discover(&records, Some(&policy));
        let find = |method: &str, path: &str| {
            inventory
                .endpoints
                .iter()
                .find(|e| e.method == method && e.path == path)
                .unwrap_or_else(|| panic!("{method} {path} in {:#?}", inventory.endpoints))
        };
        let users = find("GET", "/v2/users/{user}");
        assert_eq!(users.requests, 2);
        assert_eq!(users.coverage[0].status, Status::Covered);
        assert_eq!(users.coverage[0].version.as_deref(), Some("v2"));
        assert_eq!(
            find("DELETE", "/v2/users/bob").coverage[0].status,
            Status::MethodNotAllowed
        );
        let v1 = &find("GET", "/v1/users/{param}").coverage[0];
        assert_eq!(
            (v1.status, v1.lifecycle),
            (Status::Zombie, Some("deprecated"))
        );
        assert!(find("GET", "/debug/vars").is_shadow());
        assert_eq!(
            find("GET", "/a/%2e%2e/%2e%2e/etc").coverage[0].status,
            Status::Ambiguous
        );
        assert_eq!(inventory.summary.get("shadow"), Some(&1));
        assert_eq!(inventory.summary.get("covered"), Some(&1));
    }
}

//! What one `ShouldRateLimit` call does to Limitador's counters: each descriptor is matched
//! on its own against the limits of the request's domain (Limitador's namespace), or
//! against the limit it carries, and each descriptor's hits are counted in Redis.
//!
//! How a descriptor meets a limit:
//!
//! - **From the limits file** (limitador-server's format): the limit's `conditions` and
//!   `variables` are CEL over `descriptors`, a list holding this one descriptor's entries
//!   as a map, so a limit names them as `descriptors[0]['api']` or `descriptors[0].api`.
//!   Each descriptor is its own context, as envoyproxy/ratelimit treats descriptors, so a
//!   descriptor's status says which of its limits held it.
//! - **From the request** (`RateLimitDescriptor.limit`): the override replaces the
//!   configured limits for that descriptor. It becomes a Limitador limit whose variables
//!   are all of the descriptor's entries (one counter per distinct set of values), in a
//!   namespace of its own made from the domain, the limit and the entry keys, so two
//!   descriptors with different limits never share a counter or meet each other's limit.
//!
//! Hits: the descriptor's `hits_addend` if present (0 asks without counting), else the
//! request's (where 0, proto3's "unset", means 1).
//!
//! Counting follows envoyproxy/ratelimit (and the harness's in-memory service, so a replay
//! and a run through this peer agree): every descriptor's hits are added, over the limit
//! too, and a descriptor is over when its count after the hits exceeds the limit. So a
//! call with 0 hits is over once earlier calls went past the limit, which is how a proxy
//! asks "is this key locked out?" after counting failures with a limit one below the
//! threshold. (limitador-server differs: it counts nothing of a call that is over.)
//!
//! Exactness: Limitador's Redis storage reads a counter and then increments it, two round
//! trips, so two concurrent calls could both see the last free hit. The peer makes each
//! call's check-and-count one critical section, so all the proxies counting through one
//! peer are counted exactly; several replicas sharing one Redis keep Limitador's own
//! trade-off (a little over the limit under contention).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex as SyncMutex;
use std::time::Duration;

use limitador::AsyncRateLimiter;
use limitador::counter::Counter;
use limitador::limit::{Context, Expression, Limit, Namespace};
use limitador::storage::redis::AsyncRedisStorage;
use tokio::sync::Mutex;

use crate::rls::{
    Code, DescriptorStatus, RateLimit, RateLimitDescriptor, RateLimitOverride, RateLimitRequest,
    RateLimitResponse, Unit,
};

/// Distinct request-carried limits the peer keeps (each is a Limitador limit held in
/// memory); past this a call with a new one is refused rather than growing without bound.
pub const MAX_REQUEST_LIMITS: usize = 10_000;

/// A call the peer refuses (gRPC `INVALID_ARGUMENT` or `RESOURCE_EXHAUSTED`).
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The request breaks the API's rules (no domain, no descriptors, an empty entry, an
    /// override without a unit); the message names the place.
    Invalid(String),
    /// [`MAX_REQUEST_LIMITS`] distinct request-carried limits are already held.
    TooManyLimits,
}

/// The limiter and what serializes the calls into it.
pub struct Counting {
    limiter: AsyncRateLimiter,
    /// Held across one call's check and count (see the module doc).
    call: Mutex<()>,
    /// Namespaces of the request-carried limits added so far.
    request_limits: SyncMutex<HashSet<String>>,
}

/// One descriptor of a call, resolved: where its limits live, its CEL context, its hits.
struct Planned {
    namespace: Namespace,
    context: Context<'static>,
    hits: u64,
}

impl Counting {
    /// Counts in the Redis at `redis_url`, with `limits` (a limits file's) configured.
    pub async fn connect(redis_url: &str, limits: Vec<Limit>) -> Result<Self, String> {
        let storage = AsyncRedisStorage::new(redis_url)
            .await
            .map_err(|e| format!("redis {redis_url}: {e}; is redis-server running there?"))?;
        let limiter = AsyncRateLimiter::new_with_storage(Box::new(storage));
        for limit in limits {
            limiter.add_limit(limit);
        }
        Ok(Self {
            limiter,
            call: Mutex::new(()),
            request_limits: SyncMutex::new(HashSet::new()),
        })
    }

    /// Answers one `ShouldRateLimit`. `Err(Ok(refusal))` is the caller's fault,
    /// `Err(Err(message))` Limitador's or Redis's (the caller answers `UNAVAILABLE`, so a
    /// proxy applies its failure mode).
    pub async fn should_rate_limit(
        &self,
        request: &RateLimitRequest,
    ) -> Result<RateLimitResponse, Result<Refusal, String>> {
        let plans = self.plan(request).map_err(Ok)?;
        let _call = self.call.lock().await;
        let mut statuses = Vec::with_capacity(plans.len());
        for plan in &plans {
            let check = self
                .limiter
                .is_rate_limited(&plan.namespace, &plan.context, plan.hits)
                .await
                .map_err(|e| Err(format!("limitador: {e}")))?;
            if plan.hits > 0 {
                self.limiter
                    .update_counters(&plan.namespace, &plan.context, plan.hits)
                    .await
                    .map_err(|e| Err(format!("limitador: {e}")))?;
            }
            statuses.push(status(check.limited, &check.counters, plan.hits));
        }
        let over = statuses.iter().any(|s| s.code == Code::OverLimit as i32);
        Ok(RateLimitResponse {
            overall_code: if over { Code::OverLimit } else { Code::Ok } as i32,
            statuses,
        })
    }

    fn plan(&self, request: &RateLimitRequest) -> Result<Vec<Planned>, Refusal> {
        if request.domain.is_empty() {
            return Err(Refusal::Invalid(
                "domain: empty; every request names one".into(),
            ));
        }
        if request.descriptors.is_empty() {
            return Err(Refusal::Invalid(
                "descriptors: none; a request carries at least one".into(),
            ));
        }
        let request_hits = if request.hits_addend == 0 {
            1
        } else {
            u64::from(request.hits_addend)
        };
        request
            .descriptors
            .iter()
            .enumerate()
            .map(|(i, descriptor)| {
                let entries = entries(i, descriptor)?;
                let namespace = match &descriptor.limit {
                    None => Namespace::from(request.domain.as_str()),
                    Some(limit) => self.request_limit(i, &request.domain, limit, &entries)?,
                };
                let mut context = Context::default();
                context.list_binding("descriptors".to_owned(), vec![entries]);
                Ok(Planned {
                    namespace,
                    context,
                    hits: descriptor.hits_addend.map_or(request_hits, |h| h.value),
                })
            })
            .collect()
    }

    /// The namespace of descriptor `i`'s own limit, added to the limiter on first use.
    fn request_limit(
        &self,
        i: usize,
        domain: &str,
        limit: &RateLimitOverride,
        entries: &HashMap<String, String>,
    ) -> Result<Namespace, Refusal> {
        let seconds = Unit::try_from(limit.unit)
            .ok()
            .filter(|u| *u != Unit::Week)
            .and_then(Unit::seconds)
            .ok_or_else(|| {
                Refusal::Invalid(format!(
                    "descriptors[{i}].limit.unit: {} is not a unit (SECOND=1 .. YEAR=6)",
                    limit.unit
                ))
            })?;
        let mut keys: Vec<&str> = entries.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let namespace = format!("{domain}#{}/{seconds}s#{keys:?}", limit.requests_per_unit);
        let mut known = self
            .request_limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !known.contains(&namespace) {
            if known.len() >= MAX_REQUEST_LIMITS {
                return Err(Refusal::TooManyLimits);
            }
            let variables = keys
                .iter()
                .map(|k| Expression::parse(format!("descriptors[0][{}]", cel_string(k))))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    Refusal::Invalid(format!(
                        "descriptors[{i}].entries: a key CEL cannot name: {e}"
                    ))
                })?;
            self.limiter.add_limit(Limit::new(
                namespace.as_str(),
                u64::from(limit.requests_per_unit),
                seconds,
                [],
                variables,
            ));
            known.insert(namespace.clone());
        }
        Ok(Namespace::from(namespace))
    }
}

/// Descriptor `i`'s entries as the map its CEL context holds.
fn entries(i: usize, descriptor: &RateLimitDescriptor) -> Result<HashMap<String, String>, Refusal> {
    if descriptor.entries.is_empty() {
        return Err(Refusal::Invalid(format!(
            "descriptors[{i}].entries: none; a descriptor has at least one"
        )));
    }
    let mut map = HashMap::with_capacity(descriptor.entries.len());
    for (j, entry) in descriptor.entries.iter().enumerate() {
        if entry.key.is_empty() || entry.value.is_empty() {
            return Err(Refusal::Invalid(format!(
                "descriptors[{i}].entries[{j}]: empty key or value"
            )));
        }
        map.insert(entry.key.clone(), entry.value.clone());
    }
    Ok(map)
}

/// `s` as a CEL single-quoted string literal.
fn cel_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\\' || c == '\'' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// A descriptor's status from the counters that applied to it (with the values Redis had
/// before this call) and the hits this call counted on them.
fn status(limited: bool, counters: &[Counter], counted: u64) -> DescriptorStatus {
    let tightest = counters.iter().min_by_key(|c| remaining(c));
    DescriptorStatus {
        code: if limited { Code::OverLimit } else { Code::Ok } as i32,
        current_limit: tightest.map(current_limit),
        limit_remaining: tightest
            .map(|c| u32::try_from(remaining(c).saturating_sub(counted)).unwrap_or(u32::MAX))
            .unwrap_or(0),
        duration_until_reset: tightest
            .map(|c| c.expires_in().unwrap_or_else(|| c.window()))
            .map(|d: Duration| d.into()),
    }
}

fn remaining(counter: &Counter) -> u64 {
    counter.remaining().unwrap_or_else(|| counter.max_value())
}

/// The limit as RLS states one: requests per unit when its window is a whole unit, else
/// the bare count with `UNKNOWN` and the window in the name.
fn current_limit(counter: &Counter) -> RateLimit {
    let seconds = counter.window().as_secs();
    let unit = Unit::of_seconds(seconds);
    let name = match (counter.limit().name(), unit) {
        (Some(name), _) => name.to_owned(),
        (None, Some(_)) => String::new(),
        (None, None) => format!("{} per {seconds}s", counter.max_value()),
    };
    RateLimit {
        requests_per_unit: u32::try_from(counter.max_value()).unwrap_or(u32::MAX),
        unit: unit.unwrap_or(Unit::Unknown) as i32,
        name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cel_string_escapes_quotes_and_backslashes() {
        assert_eq!(cel_string("a'b\\c"), r"'a\'b\\c'");
    }

    #[test]
    fn units_map_to_their_windows_and_back() {
        assert_eq!(Unit::Day.seconds(), Some(86_400));
        assert_eq!(Unit::of_seconds(3_600), Some(Unit::Hour));
        assert_eq!(Unit::of_seconds(90), None);
    }
}

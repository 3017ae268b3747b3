//! The root context (one per worker VM): the configuration lifecycle, the tick, and the
//! worker state the streams share ([`Worker`]: metric batch, alert queue, paused streams).
//!
//! A configuration is parsed and validated by the engine; on any error every message is
//! logged (one line each, with its JSON path) and `on_configure` returns false, so Envoy
//! refuses it and keeps the previous one: there is no allow-all fallback. An accepted
//! policy replaces the old one for new streams (an `Rc` swap: streams already running keep
//! the `Rc` they were created with).

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel};
use stakeguard_policies::{HeaderChange, Policy};

use crate::alerts::Alerts;
use crate::events::IncidentLines;
use crate::headers::Spare;
use crate::host;
use crate::http::{Refusal, Stream};
use crate::metrics::{self, Batch};
use crate::store;

/// Tick period while streams are paused.
const TICK_PAUSED_MS: u32 = 50;
/// Tick period while only metrics or alerts wait.
const TICK_FLUSH_MS: u32 = 100;
/// Empty ticks before the tick stops: a worker seeing a request every few hundred
/// milliseconds would otherwise start and stop it around each one (two host calls per
/// request); an idle worker pays this many empty ticks once.
const IDLE_TICKS: u32 = 10;

/// State shared by the root context and the streams of one worker.
#[derive(Debug, Default)]
pub struct Worker {
    /// Pending metric increments and the metric id cache.
    pub metrics: Batch,
    /// Alert dedupe, queue and calls in flight.
    pub alerts: Alerts,
    /// Streams to resume: (context id, time to resume).
    paused: Vec<(u32, u64)>,
    /// The tick period in force (0: stopped).
    tick_ms: u32,
    /// Ticks in a row that found nothing to do.
    idle_ticks: u32,
    /// Counter for generated references.
    pub references: u64,
    /// Incident log lines of this tick.
    pub incident_lines: IncidentLines,
    /// Whether Envoy logs at debug, asked once per tick (a host call each time).
    debug_logs: Option<bool>,
    /// The engine's changes to a response, then the response map rewritten with them,
    /// and the lists header maps are read into: kept from stream to stream, empty, for
    /// their allocations.
    pub changes: Vec<HeaderChange>,
    pub encoded: Vec<u8>,
    pub spare: Spare,
}

impl Worker {
    /// Holds a stream until `until_ms`; false when `cap` streams are held already (the
    /// policy's `state.max_delayed`).
    pub fn pause(&mut self, context_id: u32, until_ms: u64, cap: usize) -> bool {
        if self.paused.len() >= cap {
            self.metrics.add(metrics::PAUSED_CAP_HITS, 1);
            return false;
        }
        self.paused.push((context_id, until_ms));
        true
    }

    /// Forgets a stream (it ended while paused).
    pub fn forget(&mut self, context_id: u32) {
        self.paused.retain(|(id, _)| *id != context_id);
    }

    fn take_due(&mut self, now_ms: u64) -> Vec<u32> {
        let mut due = Vec::new();
        self.paused.retain(|(id, until)| {
            if *until <= now_ms {
                due.push(*id);
                false
            } else {
                true
            }
        });
        due
    }

    /// Whether Envoy logs at debug: asked at most once per tick, so a change of Envoy's
    /// log level shows within one.
    pub fn logs_debug(&mut self) -> bool {
        *self
            .debug_logs
            .get_or_insert_with(|| host::logs(LogLevel::Debug))
    }

    /// Ends the incident lines' tick under `policy` (the one their API numbers are of),
    /// logging what it held back.
    fn end_incident_tick(&mut self, policy: &Policy) {
        if let Some(line) = self.incident_lines.end_tick(policy) {
            host::log(LogLevel::Warn, &line);
        }
    }

    /// Whether anything waits for the tick.
    fn is_pending(&self) -> bool {
        !self.paused.is_empty()
            || self.metrics.is_dirty()
            || self.alerts.is_pending()
            || self.incident_lines.is_pending()
    }

    fn wanted_tick(&self) -> u32 {
        if !self.paused.is_empty() {
            TICK_PAUSED_MS
        } else if self.is_pending() || (self.tick_ms > 0 && self.idle_ticks < IDLE_TICKS) {
            TICK_FLUSH_MS
        } else {
            0
        }
    }

    /// Starts, changes or stops the tick to match the pending work (one host call, only
    /// when the period changes).
    pub fn schedule_tick(&mut self) {
        let wanted = self.wanted_tick();
        if wanted != self.tick_ms && host::set_tick_period_ms(wanted).is_ok() {
            self.tick_ms = wanted;
        }
    }
}

/// The root context.
pub struct Root {
    id: u32,
    policy: Option<Rc<Policy>>,
    worker: Rc<RefCell<Worker>>,
}

impl Root {
    /// A root context without a policy yet.
    pub fn new(id: u32) -> Self {
        Self {
            id,
            policy: None,
            worker: Rc::default(),
        }
    }

    fn reject(&self, messages: &[String]) -> bool {
        for message in messages {
            host::log(
                LogLevel::Error,
                &format!("stakeguard: policy rejected: {message}"),
            );
        }
        host::log(
            LogLevel::Error,
            &format!(
                "stakeguard: configuration refused ({} error(s)); {}",
                messages.len(),
                if self.policy.is_some() {
                    "the previous policy stays in use"
                } else {
                    // Under ECDS a new configuration gets a new root context: Envoy keeps
                    // the previous one serving, which this context cannot see.
                    "Envoy keeps the previous configuration, if there was one"
                }
            ),
        );
        self.worker
            .borrow_mut()
            .metrics
            .increment_now(metrics::CONFIG_REJECTED);
        false
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        _body_size: usize,
        _num_trailers: usize,
    ) {
        let mut worker = self.worker.borrow_mut();
        let Worker {
            alerts, metrics, ..
        } = &mut *worker;
        alerts.on_response(token_id, num_headers, metrics);
        worker.schedule_tick();
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let bytes = match host::get_buffer(
            BufferType::PluginConfiguration,
            0,
            plugin_configuration_size,
        ) {
            Ok(bytes) => bytes,
            Err(e) => {
                return self.reject(&[format!(
                    "cannot read the plugin configuration: status {}",
                    e.0
                )]);
            }
        };
        let Ok(text) = std::str::from_utf8(&bytes) else {
            return self.reject(&[
                "the plugin configuration is not UTF-8; it must be the policy JSON".to_owned(),
            ]);
        };
        // How long the build took goes in the log: under ECDS a worker serves nothing
        // while it builds, so an operator sizing an inventory needs the figure.
        let started_ms = host::now_ms();
        let policy = match Policy::from_json(text) {
            Ok(policy) => policy,
            Err(errors) => {
                let messages: Vec<String> = errors.errors.iter().map(ToString::to_string).collect();
                return self.reject(&messages);
            }
        };
        let built_ms = host::now_ms().saturating_sub(started_ms);
        let (created, failed) = store::create_state_keys(&policy);
        if failed > 0 {
            host::log(
                LogLevel::Error,
                &format!("stakeguard: {failed} state key(s) could not be created in shared data"),
            );
        }
        // The revision in use is remembered in shared data, not in this root context:
        // under ECDS every new configuration gets a new root context, and the previous
        // revision's gauge must still drop to 0.
        let revision_key = policy.revision_key();
        let previous = match host::get_shared_data(&revision_key) {
            Ok(Some((bytes, _))) => String::from_utf8(bytes).ok(),
            _ => None,
        };
        if let Err(e) = host::set_shared_data(&revision_key, policy.revision().as_bytes(), 0) {
            host::log(
                LogLevel::Warn,
                &format!(
                    "stakeguard: cannot record the revision in use: status {}",
                    e.0
                ),
            );
        }
        let mut worker = self.worker.borrow_mut();
        // Held lines name APIs by the old policy's numbering: said before it goes.
        if let Some(old) = &self.policy {
            worker.end_incident_tick(old);
        }
        self.policy = Some(Rc::new(policy));
        if let Some(previous) =
            previous.filter(|p| Some(p.as_str()) != self.policy.as_deref().map(Policy::revision))
        {
            worker
                .metrics
                .gauge_now(&metrics::revision_name(&previous), 0);
        }
        if let Some(policy) = &self.policy {
            worker
                .metrics
                .gauge_now(&metrics::revision_name(policy.revision()), 1);
            worker.metrics.increment_now(metrics::CONFIG_ACCEPTED);
            host::log(
                LogLevel::Info,
                &format!(
                    "stakeguard: policy revision {} in use ({} APIs, built in {built_ms} ms, {created} state keys created)",
                    policy.revision(),
                    policy.api_count()
                ),
            );
        }
        true
    }

    fn on_tick(&mut self) {
        {
            let mut worker = self.worker.borrow_mut();
            worker.debug_logs = None;
            if !worker.is_pending() {
                // An empty tick (see `IDLE_TICKS`): no host call, unless it is the last.
                worker.idle_ticks = worker.idle_ticks.saturating_add(1);
                worker.schedule_tick();
                return;
            }
            worker.idle_ticks = 0;
        }
        let now = host::now_ms();
        let due = {
            let mut worker = self.worker.borrow_mut();
            let Worker {
                alerts, metrics, ..
            } = &mut *worker;
            alerts.dispatch(metrics);
            metrics.flush();
            if let Some(policy) = &self.policy {
                worker.end_incident_tick(policy);
            }
            worker.take_due(now)
        };
        if !due.is_empty() {
            for id in due {
                let resumed = host::set_effective_context(id).and_then(|()| host::resume_request());
                if let Err(e) = resumed {
                    host::log(
                        LogLevel::Debug,
                        &format!(
                            "stakeguard: stream {id} not resumed (gone?): status {}",
                            e.0
                        ),
                    );
                }
            }
            let _ = host::set_effective_context(self.id);
        }
        self.worker.borrow_mut().schedule_tick();
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let worker = Rc::clone(&self.worker);
        Some(match &self.policy {
            Some(policy) => Box::new(Stream::new(context_id, Rc::clone(policy), worker)),
            None => Box::new(Refusal),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

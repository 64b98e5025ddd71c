//! What a running poller tells monitoring (`poll --metrics ADDR`): Prometheus metrics at
//! `/metrics` and its health at `/healthz`, served by a small HTTP server on its own thread.
//!
//! Labels hold object names, verbs, connector ids, step names and outcomes only: never a URL,
//! a key value or anything read from a row, so no secret can reach a scraper.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::store::ReadyBacklog;

/// One event's outcome for one connector (or for none, when it reached none).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub object: String,
    pub verb: String,
    /// Empty for events that reached no connector (unsubscribed, error, not-found).
    pub connector: String,
    /// `sent`, `failed`, `retry`, `unsubscribed`, `error` or `not-found`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectorLabel {
    connector: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabel {
    step: &'static str,
}

/// The steps of a batch whose durations are measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Claim,
    Fetch,
    Deliver,
    Finish,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Claim => "claim",
            Step::Fetch => "fetch",
            Step::Deliver => "deliver",
            Step::Finish => "finish",
        }
    }
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Durations from half a millisecond to about half a minute.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The poller's metrics; shared between the poller's threads and the HTTP server.
pub struct Metrics {
    registry: Registry,
    events: Family<EventLabels, Counter>,
    delivery: Histograms<ConnectorLabel>,
    steps: Histograms<StepLabel>,
    ready: Gauge,
    oldest_ready_age: Gauge<f64, AtomicU64>,
    retry_backlog: Gauge,
    healthy: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("trigpoll");
        let events = Family::<EventLabels, Counter>::default();
        registry.register(
            "events",
            "Events processed, by object, verb, connector and outcome (retry: put back for \
             another attempt)",
            events.clone(),
        );
        let delivery: Histograms<ConnectorLabel> = Family::new_with_constructor(seconds);
        registry.register(
            "delivery_duration_seconds",
            "Time a connector took to deliver one batch's events",
            delivery.clone(),
        );
        let steps: Histograms<StepLabel> = Family::new_with_constructor(seconds);
        registry.register(
            "step_duration_seconds",
            "Time each step of a batch took: claim, fetch, deliver, finish",
            steps.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready_events",
            "Events ready to be claimed (refreshed when idle and every few seconds)",
            ready.clone(),
        );
        let oldest_ready_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "oldest_ready_event_age_seconds",
            "Age of the oldest ready event, 0 when none is ready",
            oldest_ready_age.clone(),
        );
        let retry_backlog = Gauge::default();
        registry.register(
            "retry_waiting_events",
            "Events waiting for a retry, or held behind an earlier event of their key that waits",
            retry_backlog.clone(),
        );
        let healthy = Gauge::default();
        registry.register(
            "healthy",
            "1 while the database answers (or has not answered for less than about ten poll \
             intervals), 0 after: what /healthz says",
            healthy.clone(),
        );
        Metrics {
            registry,
            events,
            delivery,
            steps,
            ready,
            oldest_ready_age,
            retry_backlog,
            healthy,
        }
    }

    /// Counts a batch's outcomes.
    pub fn events(&self, counts: &HashMap<EventLabels, u64>) {
        for (labels, &n) in counts {
            self.events.get_or_create(labels).inc_by(n);
        }
    }

    pub fn delivery(&self, connector: &str, took: Duration) {
        let labels = ConnectorLabel {
            connector: connector.to_string(),
        };
        self.delivery
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    pub fn step(&self, step: Step, took: Duration) {
        let labels = StepLabel { step: step.name() };
        self.steps
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    pub fn ready_backlog(&self, backlog: ReadyBacklog) {
        self.ready.set(backlog.events as i64);
        self.oldest_ready_age
            .set(backlog.oldest_age_seconds.unwrap_or(0.0).max(0.0));
    }

    pub fn retry_backlog(&self, events: u64) {
        self.retry_backlog.set(events as i64);
    }

    /// The Prometheus text exposition (OpenMetrics flavour) of every metric, with the health as
    /// it is now.
    pub fn render(&self, health: &Health) -> String {
        self.healthy.set(i64::from(health.healthy()));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// Whether the poller can reach its database: unhealthy once it has been unreachable for
/// `limit` (about ten poll intervals). A poller asleep waiting for events is healthy.
pub struct Health {
    started: Instant,
    /// Milliseconds after `started` when the database became unreachable, plus one; 0 while
    /// it is reachable.
    unreachable_since: AtomicU64,
    limit: Duration,
}

impl Health {
    pub fn new(limit: Duration) -> Self {
        Health {
            started: Instant::now(),
            unreachable_since: AtomicU64::new(0),
            limit,
        }
    }

    /// The database answered.
    pub fn reachable(&self) {
        self.unreachable_since.store(0, Ordering::Relaxed);
    }

    /// The database did not answer; the first of a run of failures starts the clock.
    pub fn unreachable(&self) {
        let now = self.started.elapsed().as_millis() as u64 + 1;
        let _ =
            self.unreachable_since
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// How long the database has been unreachable, if it is.
    pub fn unreachable_for(&self) -> Option<Duration> {
        match self.unreachable_since.load(Ordering::Relaxed) {
            0 => None,
            since => Some(
                self.started
                    .elapsed()
                    .saturating_sub(Duration::from_millis(since - 1)),
            ),
        }
    }

    pub fn healthy(&self) -> bool {
        self.unreachable_for().is_none_or(|d| d < self.limit)
    }
}

/// The HTTP server could not start.
#[derive(Debug, thiserror::Error)]
#[error("--metrics {addr}: cannot listen: {reason}")]
pub struct ServeError {
    pub addr: String,
    pub reason: String,
}

/// Serves `/metrics` and `/healthz` on `addr` (`HOST:PORT`, the host a name or an IP address)
/// from a thread of its own, for the life of the process: on the first of the host's addresses
/// it can listen on, in the resolver's order. Returns that address (with the port chosen when
/// `addr` asked for 0).
pub fn serve(
    addr: &str,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> Result<SocketAddr, ServeError> {
    let failed = |reason: String| ServeError {
        addr: addr.to_string(),
        reason,
    };
    let resolved: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(addr)
        .map_err(|e| failed(format!("cannot resolve the host: {e}")))?
        .collect();
    let server = tiny_http::Server::http(&resolved[..]).map_err(|e| failed(e.to_string()))?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| failed("not an IP address".into()))?;
    let spawned = std::thread::Builder::new()
        .name("trigpoll-metrics".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let response = respond(request.url(), &metrics, &health);
                if let Err(e) = request.respond(response) {
                    tracing::debug!(error = %e, "could not answer a metrics request");
                }
            }
        });
    spawned.map_err(|e| failed(e.to_string()))?;
    Ok(bound)
}

fn respond(
    url: &str,
    metrics: &Metrics,
    health: &Health,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    let path = url.split('?').next().unwrap_or(url);
    let (status, body, content_type) = match path {
        "/metrics" => (
            200,
            metrics.render(health),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        "/healthz" if health.healthy() => (200, "ok\n".to_string(), TEXT),
        "/healthz" => (
            503,
            format!(
                "unhealthy: the database has been unreachable for {}\n",
                humantime::format_duration(Duration::from_secs(
                    health.unreachable_for().unwrap_or_default().as_secs()
                ))
            ),
            TEXT,
        ),
        _ => (
            404,
            "not found: try /metrics or /healthz\n".to_string(),
            TEXT,
        ),
    };
    let header =
        tiny_http::Header::from_bytes("Content-Type", content_type).expect("a valid header");
    tiny_http::Response::from_string(body)
        .with_status_code(status)
        .with_header(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_turns_bad_only_after_the_limit_and_recovers() {
        // A limit far longer than a loaded machine's pause between two statements.
        let health = Health::new(Duration::from_secs(2));
        assert!(health.healthy());
        health.unreachable();
        assert!(health.healthy(), "within the limit");
        std::thread::sleep(Duration::from_millis(2100));
        health.unreachable();
        assert!(!health.healthy(), "the first failure starts the clock");
        health.reachable();
        assert!(health.healthy());
    }
}

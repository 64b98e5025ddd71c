//! Connectors deliver business objects to other systems.
//!
//! Every connector works in batches: it is handed the deliveries of one poll batch and answers
//! with one [`Outcome`] per delivery, in the same order. Delivery is at-least-once, so receivers
//! must tolerate duplicates; `object_event_id` lets them drop them.
//!
//! One module per sink kind ([`StdoutSink`], [`FileSink`], [`HttpSink`], and the brokers
//! [`NatsSink`], [`AmqpSink`], [`RedisSink`]), each implementing [`Deliver`] and saying in its
//! docs what [`Outcome::Sent`] means for it; [`Sink`] dispatches between them and
//! [`Connector`] adds the connector's identity and retry policy.

mod amqp;
mod broker;
mod file;
mod http;
mod nats;
pub mod probe;
mod redis;
mod stdout;
mod tls;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use crate::config::{ConnectorConfig, SinkConfig};

pub use amqp::AmqpSink;
pub use file::FileSink;
pub(crate) use http::parse_retry_after;
pub(crate) use http::webhook_key;
pub use http::{sign, HttpSink};
pub(crate) use nats::subject_problem as nats_subject_problem;
pub use nats::NatsSink;
pub use redis::RedisSink;
pub use stdout::StdoutSink;

/// One business object on its way to one connector.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The event this delivery belongs to.
    pub event_id: i64,
    /// The object key this delivery is for, as a number unique within the batch: deliveries
    /// with the same `key` are one key's events, in event-id order.
    pub key: usize,
    /// The business object's name, e.g. `Employee`.
    pub object: String,
    /// `Create`, `Update`, `Delete` or an application's own verb.
    pub verb: String,
    /// `<connector>_<event_id>`, the receiver's idempotency key.
    pub object_event_id: String,
    /// The serialized JSON payload (docs/payload.md), one line, no trailing newline.
    pub body: String,
}

/// What happened to one delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The receiver has it (for files: written and flushed to disk).
    Sent,
    /// A transient failure: try again later, no earlier than `after` when the receiver said so.
    Retry {
        reason: String,
        after: Option<std::time::Duration>,
    },
    /// A permanent failure: retrying will not help.
    Reject { reason: String },
    /// Not attempted: an earlier delivery of the same key in the batch must be retried first,
    /// and this one follows it then.
    Held,
}

impl Outcome {
    fn retry(reason: impl Into<String>) -> Self {
        Outcome::Retry {
            reason: reason.into(),
            after: None,
        }
    }
}

/// The contract every sink keeps.
///
/// - `deliver` returns exactly one [`Outcome`] per delivery, in the order of `batch`.
/// - [`Outcome::Sent`] only once the receiver durably has the object (acknowledged by the HTTP
///   receiver or the broker, flushed to disk for files, written to the pipe for stdout). When in
///   doubt a sink answers [`Outcome::Retry`]: delivery is at-least-once, and a duplicate is
///   better than a loss.
/// - [`Outcome::Reject`] only when the receiver made clear that resending will not help.
/// - A batch may hold many deliveries of one key (the same [`Delivery::key`]), in event-id
///   order. A sink delivers them one after another, each only once the one before it has an
///   outcome as far as the receiver can observe order, so that the receiver gets them in that
///   order; deliveries of different keys may go at the same time (HTTP with `concurrency` > 1
///   spreads across keys, never within one; an HTTP request with `batch_size` > 1 carries a
///   key's deliveries in order; a broker sink pipelines on one connection, whose publishes the
///   broker applies in order).
/// - Once a delivery of a key comes out [`Outcome::Retry`], the sink attempts none of the later
///   ones of that key in the batch: they come out [`Outcome::Held`] and wait behind it.
///   [`Outcome::Reject`] does not hold the key.
pub trait Deliver {
    fn deliver(&mut self, batch: &[Delivery]) -> Vec<Outcome>;
}

/// A connector configuration that cannot be built into a sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("file sink: `path` is empty")]
    EmptyPath,
    #[error("file sink: `path` {} is a directory", .0.display())]
    PathIsDirectory(PathBuf),
    /// The reason never repeats the URL: it may carry credentials.
    #[error("{sink} sink: invalid `url`: {reason}")]
    InvalidUrl { sink: &'static str, reason: String },
    #[error("http sink: `client_id` is empty")]
    EmptyClientId,
    #[error("http sink: `secret` is empty")]
    EmptySecret,
    #[error("http sink: `secret`: {0}")]
    InvalidSecret(String),
    #[error("{0} sink: `timeout` must be greater than zero")]
    ZeroTimeout(&'static str),
    #[error("http sink: `concurrency` must be at least 1")]
    ZeroConcurrency,
    #[error("http sink: `batch_size` must be at least 1")]
    ZeroBatchSize,
    #[error("invalid `{key}`: {reason}")]
    InvalidTemplate { key: &'static str, reason: String },
    #[error("{sink} sink: `ca_file`: {reason}")]
    CaFile { sink: &'static str, reason: String },
}

/// A connector that could not be built, naming it and the file it came from.
#[derive(Debug, thiserror::Error)]
#[error("connector {id:?} ({}): {error}", .file.display())]
pub struct ConnectorError {
    pub id: String,
    pub file: PathBuf,
    pub error: SinkError,
}

/// The sink kinds, dispatched by enum rather than trait object: there are only a few.
#[derive(Debug)]
pub enum Sink {
    Stdout(StdoutSink),
    File(FileSink),
    Http(HttpSink),
    Nats(NatsSink),
    Amqp(AmqpSink),
    Redis(RedisSink),
}

impl Sink {
    /// Checks the configuration of connector `id`, then builds the sink. Nothing is opened or
    /// connected here: the file is opened on the first delivery, receivers and brokers are
    /// first contacted then too.
    pub fn from_config(id: &str, config: &SinkConfig) -> Result<Sink, SinkError> {
        Ok(match config {
            SinkConfig::Stdout => Sink::Stdout(StdoutSink::new()),
            SinkConfig::File { path } => Sink::File(FileSink::from_config(path)?),
            SinkConfig::Http(http) => Sink::Http(HttpSink::from_config(http)?),
            SinkConfig::Nats(nats) => Sink::Nats(NatsSink::from_config(id, nats)?),
            SinkConfig::Amqp(amqp) => Sink::Amqp(AmqpSink::from_config(id, amqp)?),
            SinkConfig::Redis(redis) => Sink::Redis(RedisSink::from_config(id, redis)?),
        })
    }

    /// Delivers a batch; see [`Deliver`] for the contract.
    pub fn deliver(&mut self, batch: &[Delivery]) -> Vec<Outcome> {
        if batch.is_empty() {
            return Vec::new();
        }
        let mut outcomes = match self {
            Sink::Stdout(sink) => sink.deliver(batch),
            Sink::File(sink) => sink.deliver(batch),
            Sink::Http(sink) => sink.deliver(batch),
            Sink::Nats(sink) => sink.deliver(batch),
            Sink::Amqp(sink) => sink.deliver(batch),
            Sink::Redis(sink) => sink.deliver(batch),
        };
        debug_assert_eq!(outcomes.len(), batch.len());
        hold_after_retry(batch, &mut outcomes);
        outcomes
    }
}

/// Marks every delivery after a key's first [`Outcome::Retry`] as [`Outcome::Held`]. Sinks that
/// write a batch as a whole (file, stdout, an HTTP request of several payloads) fail the rest of
/// it together: the first failure of each key is the one to retry, and what follows it waits,
/// its attempt not counted. A broker may confirm a later message of the key that was already on
/// its way: it is held too, and published again after the failed one (`broker`'s module docs).
fn hold_after_retry(batch: &[Delivery], outcomes: &mut [Outcome]) {
    let mut retrying = std::collections::HashSet::new();
    for (delivery, outcome) in batch.iter().zip(outcomes.iter_mut()) {
        if retrying.contains(&delivery.key) {
            if matches!(outcome, Outcome::Sent | Outcome::Retry { .. }) {
                *outcome = Outcome::Held;
            }
        } else if matches!(outcome, Outcome::Retry { .. }) {
            retrying.insert(delivery.key);
        }
    }
}

/// The first retry delay doubles with every attempt up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// A receiver's `Retry-After` is honoured up to this, so a bogus value cannot park an event
/// for days.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60 * 60);

/// One configured connector: its sink plus its retry policy.
///
/// Delivery is at-least-once: an event is reported [`Outcome::Sent`] only once the receiver
/// durably has it, and anything uncertain is retried. Outcomes come back one per delivery, in
/// batch order.
#[derive(Debug)]
pub struct Connector {
    pub config: ConnectorConfig,
    sink: Sink,
}

impl Connector {
    /// Validates the connector's sink configuration and builds the sink, without touching the
    /// network or the file system.
    pub fn new(config: ConnectorConfig) -> Result<Self, ConnectorError> {
        let sink = Sink::from_config(&config.id, &config.sink).map_err(|error| ConnectorError {
            id: config.id.clone(),
            file: config.source.clone(),
            error,
        })?;
        Ok(Connector { config, sink })
    }

    pub fn id(&self) -> &str {
        &self.config.id
    }

    /// Once `abandon` is set, deliveries still waiting for a receiver are given up (answered
    /// [`Outcome::Retry`]) instead of waited for: what a stopping poller needs, so that a slow
    /// receiver cannot hold it.
    pub fn abandon_on(&mut self, abandon: Arc<AtomicBool>) {
        match &mut self.sink {
            Sink::Stdout(_) | Sink::File(_) => {}
            Sink::Http(sink) => sink.abandon_on(abandon),
            Sink::Nats(sink) => sink.abandon_on(abandon),
            Sink::Amqp(sink) => sink.abandon_on(abandon),
            Sink::Redis(sink) => sink.abandon_on(abandon),
        }
    }

    /// Delivers a batch: one [`Outcome`] per delivery, in batch order (see [`Deliver`]).
    pub fn deliver(&mut self, batch: &[Delivery]) -> Vec<Outcome> {
        let outcomes = self.sink.deliver(batch);
        for (delivery, outcome) in batch.iter().zip(&outcomes) {
            match outcome {
                Outcome::Sent => tracing::trace!(
                    connector = %self.config.id,
                    event_id = delivery.event_id,
                    object = %delivery.object,
                    verb = %delivery.verb,
                    object_event_id = %delivery.object_event_id,
                    "delivered"
                ),
                Outcome::Held => tracing::trace!(
                    connector = %self.config.id,
                    event_id = delivery.event_id,
                    "held behind an earlier event of its key"
                ),
                Outcome::Retry { reason, after } => tracing::debug!(
                    connector = %self.config.id,
                    event_id = delivery.event_id,
                    reason = %reason,
                    retry_after = ?after,
                    "delivery will be retried"
                ),
                Outcome::Reject { reason } => tracing::debug!(
                    connector = %self.config.id,
                    event_id = delivery.event_id,
                    reason = %reason,
                    "delivery rejected"
                ),
            }
        }
        outcomes
    }

    /// How long to wait before the next try after failed attempt number `attempt` (1-based).
    ///
    /// Exponential backoff with "equal jitter": `d = backoff × 2^(attempt-1)`, capped at
    /// 15 minutes, then a uniform pick in `[d/2, d]` so that many events failing together do not
    /// come back together. A receiver's `Retry-After` is a floor, itself capped at one hour.
    pub fn backoff_delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        backoff_delay(
            self.config.backoff,
            attempt,
            retry_after,
            &mut rand::thread_rng(),
        )
    }
}

fn backoff_delay(
    base: Duration,
    attempt: u32,
    retry_after: Option<Duration>,
    rng: &mut impl Rng,
) -> Duration {
    let doublings = attempt.saturating_sub(1).min(31);
    let full = base.saturating_mul(1 << doublings).min(MAX_BACKOFF);
    let jittered = if full.is_zero() {
        full
    } else {
        rng.gen_range(full / 2..=full)
    };
    match retry_after {
        Some(after) => jittered.max(after.min(MAX_RETRY_AFTER)),
        None => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use rand::rngs::mock::StepRng;

    fn connector(backoff: Duration) -> Connector {
        Connector::new(ConnectorConfig {
            id: "test".into(),
            subscribe: vec!["*".parse().unwrap()],
            sink: SinkConfig::Stdout,
            max_attempts: 10,
            backoff,
            source: PathBuf::from("connectors/test.toml"),
        })
        .unwrap()
    }

    #[test]
    fn backoff_doubles_within_equal_jitter_bounds() {
        let c = connector(Duration::from_secs(1));
        for attempt in 1..=8u32 {
            let full = Duration::from_secs(1 << (attempt - 1));
            for _ in 0..200 {
                let d = c.backoff_delay(attempt, None);
                assert!(
                    d >= full / 2 && d <= full,
                    "attempt {attempt}: {d:?} not in [{:?}, {full:?}]",
                    full / 2
                );
            }
        }
    }

    #[test]
    fn backoff_jitter_actually_varies() {
        let c = connector(Duration::from_secs(10));
        let picks: std::collections::HashSet<Duration> =
            (0..50).map(|_| c.backoff_delay(3, None)).collect();
        assert!(picks.len() > 1, "no jitter: {picks:?}");
    }

    #[test]
    fn backoff_extremes_hit_the_bounds() {
        // StepRng(0, 0) yields the lowest value of every range, u64::MAX the highest.
        let base = Duration::from_secs(4);
        assert_eq!(
            backoff_delay(base, 1, None, &mut StepRng::new(0, 0)),
            Duration::from_secs(2)
        );
        assert_eq!(
            backoff_delay(base, 3, None, &mut StepRng::new(u64::MAX, 0)),
            Duration::from_secs(16)
        );
    }

    #[test]
    fn backoff_is_capped_at_fifteen_minutes_and_never_overflows() {
        let c = connector(Duration::from_secs(1));
        for attempt in [11, 12, 31, 32, 33, 64, u32::MAX] {
            let d = c.backoff_delay(attempt, None);
            assert!(
                d >= MAX_BACKOFF / 2 && d <= MAX_BACKOFF,
                "attempt {attempt}: {d:?}"
            );
        }
        let huge = connector(Duration::from_secs(u64::MAX / 2));
        assert!(huge.backoff_delay(40, None) <= MAX_BACKOFF);
    }

    #[test]
    fn attempt_zero_is_treated_as_the_first() {
        let c = connector(Duration::from_secs(2));
        let d = c.backoff_delay(0, None);
        assert!(
            d >= Duration::from_secs(1) && d <= Duration::from_secs(2),
            "{d:?}"
        );
    }

    #[test]
    fn zero_backoff_stays_zero() {
        let c = connector(Duration::ZERO);
        assert_eq!(c.backoff_delay(5, None), Duration::ZERO);
    }

    #[test]
    fn retry_after_is_a_floor_capped_at_one_hour() {
        let c = connector(Duration::from_secs(1));
        // Longer than the backoff: wins.
        assert_eq!(
            c.backoff_delay(1, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        // Shorter than the backoff: the backoff wins.
        let d = c.backoff_delay(8, Some(Duration::from_secs(1)));
        assert!(d >= Duration::from_secs(64), "{d:?}");
        // Absurd: capped.
        assert_eq!(
            c.backoff_delay(1, Some(Duration::from_secs(7 * 24 * 3600))),
            MAX_RETRY_AFTER
        );
    }

    fn http_config(url: &str) -> crate::config::HttpSinkConfig {
        crate::config::HttpSinkConfig {
            url: url.into(),
            client_id: "trigpoll".into(),
            secrets: vec![Secret::new("hunter2")],
            signature: crate::config::Signature::Trigpoll,
            timeout: Duration::from_secs(1),
            concurrency: 2,
            batch_size: 1,
            ca_file: None,
        }
    }

    #[test]
    fn invalid_http_config_names_the_connector_the_file_and_the_key() {
        let mut config = connector(Duration::from_secs(1)).config;
        config.sink = SinkConfig::Http(http_config("not a url"));
        let err = Connector::new(config.clone()).unwrap_err().to_string();
        assert!(err.contains("\"test\""), "{err}");
        assert!(err.contains("connectors/test.toml"), "{err}");
        assert!(err.contains("`url`"), "{err}");

        let SinkConfig::Http(http) = &mut config.sink else {
            unreachable!()
        };
        http.url = "ftp://example.com/".into();
        let err = Connector::new(config.clone()).unwrap_err().to_string();
        assert!(err.contains("`url`") && err.contains("ftp"), "{err}");

        let SinkConfig::Http(http) = &mut config.sink else {
            unreachable!()
        };
        http.url = "http://127.0.0.1:1/".into();
        http.concurrency = 0;
        let err = Connector::new(config.clone()).unwrap_err().to_string();
        assert!(err.contains("`concurrency`"), "{err}");
    }

    #[test]
    fn sink_debug_never_shows_the_secret() {
        let sink =
            Sink::from_config("c", &SinkConfig::Http(http_config("http://127.0.0.1:1/"))).unwrap();
        let shown = format!("{sink:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("trigpoll"), "{shown}");

        let mut webhooks = http_config("http://127.0.0.1:1/");
        webhooks.signature = crate::config::Signature::StandardWebhooks;
        webhooks.secrets = vec![Secret::new("whsec_aHVudGVyMg==")];
        let shown = format!(
            "{:?}",
            Sink::from_config("c", &SinkConfig::Http(webhooks)).unwrap()
        );
        assert!(!shown.contains("aHVudGVyMg"), "{shown}");
        assert!(!shown.contains("104, 117"), "the decoded key: {shown}");
    }

    #[test]
    fn broker_sinks_mask_their_credentials() {
        let template = |t: &str| crate::config::Template::parse(t).unwrap();
        let configs = [
            SinkConfig::Nats(crate::config::NatsSinkConfig {
                url: Secret::new("nats://app:hunter2@127.0.0.1:4222"),
                subject: template("trigpoll.{object}.{verb}"),
                stream: Some("TRIGPOLL".into()),
                duplicate_window: Duration::from_secs(3600),
                timeout: Duration::from_secs(1),
                ca_file: None,
            }),
            SinkConfig::Amqp(crate::config::AmqpSinkConfig {
                url: Secret::new("amqp://app:hunter2@127.0.0.1:5672/%2f"),
                exchange: "trigpoll".into(),
                routing_key: template("{object}.{verb}"),
                timeout: Duration::from_secs(1),
                ca_file: None,
            }),
            SinkConfig::Redis(crate::config::RedisSinkConfig {
                url: Secret::new("redis://app:hunter2@127.0.0.1:6379/0"),
                stream: template("trigpoll:{object}"),
                maxlen: Some(1000),
                timeout: Duration::from_secs(1),
                ca_file: None,
            }),
        ];
        for config in configs {
            let shown = format!("{:?}", Sink::from_config("c", &config).unwrap());
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(!shown.contains("app:"), "{shown}");
            assert!(shown.contains("***@127.0.0.1"), "{shown}");
        }
    }

    #[test]
    fn invalid_broker_urls_are_refused_without_echoing_them() {
        let mut config = connector(Duration::from_secs(1)).config;
        config.sink = SinkConfig::Amqp(crate::config::AmqpSinkConfig {
            url: Secret::new("amqp://app:hunter2@127.0.0.1:notaport/%2f"),
            exchange: "trigpoll".into(),
            routing_key: crate::config::Template::parse("{object}").unwrap(),
            timeout: Duration::from_secs(1),
            ca_file: None,
        });
        let err = Connector::new(config.clone()).unwrap_err().to_string();
        assert!(err.contains("amqp sink: invalid `url`"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");

        config.sink = SinkConfig::Redis(crate::config::RedisSinkConfig {
            url: Secret::new("http://app:hunter2@127.0.0.1/"),
            stream: crate::config::Template::parse("s").unwrap(),
            maxlen: None,
            timeout: Duration::from_secs(1),
            ca_file: None,
        });
        let err = Connector::new(config).unwrap_err().to_string();
        assert!(err.contains("redis sink: invalid `url`"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn a_keys_deliveries_after_its_first_retry_are_held() {
        let batch: Vec<Delivery> = [(1, 0), (2, 1), (3, 0), (4, 0), (5, 1)]
            .iter()
            .map(|&(event_id, key)| Delivery {
                event_id,
                key,
                object: "Employee".into(),
                verb: "Update".into(),
                object_event_id: format!("c_{event_id}"),
                body: String::new(),
            })
            .collect();
        let mut outcomes = vec![
            Outcome::retry("down"),
            Outcome::Sent,
            Outcome::retry("down"),
            Outcome::retry("down"),
            Outcome::Reject {
                reason: "no".into(),
            },
        ];
        hold_after_retry(&batch, &mut outcomes);
        assert_eq!(
            outcomes,
            [
                Outcome::retry("down"),
                Outcome::Sent,
                Outcome::Held,
                Outcome::Held,
                Outcome::Reject {
                    reason: "no".into()
                }
            ]
        );
    }

    #[test]
    fn empty_batch_gives_no_outcomes() {
        let mut c = connector(Duration::from_secs(1));
        assert!(c.deliver(&[]).is_empty());
    }
}

//! The NATS JetStream sink.
//!
//! **Sent** means the JetStream server acknowledged the message (a PubAck): the stream has
//! stored it (on its replicas, as the stream is configured). A plain NATS publish without a
//! stream listening would be lost silently, so no acknowledgement, no `sent`.
//!
//! Each message carries `Nats-Msg-Id: <object_event_id>`: JetStream drops a message whose id it
//! already stored within the stream's duplicate window, so an event published again (after a
//! crash, once its claim expired, or after a retry whose first attempt did arrive) is stored
//! once. A stream trigpoll creates gets a window of 1 hour, or twice `poll.claim_timeout` when
//! that is longer; a stream made by someone else keeps its own (trigpoll warns when it is
//! shorter). Headers `object`, `verb` and `event_id` let consumers filter without parsing.
//!
//! Publishing is pipelined and a failure holds the rest of its key: see [`super::broker`].

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::{ContextBuilder, GetStreamErrorKind, PublishErrorKind};
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use async_nats::jetstream::Context;
use async_nats::jetstream::ErrorCode;

use super::broker::{self, masked_url, redact, BrokerRuntime, Confirm, Publisher};
use super::tls::Roots;
use super::{Deliver, Delivery, Outcome, SinkError};
use crate::config::{NatsSinkConfig, Secret, Template};

/// Publishes each business object to JetStream and waits for its acknowledgement.
#[derive(Debug)]
pub struct NatsSink {
    runtime: BrokerRuntime,
    nats: Nats,
    /// Made on the first batch, and again after a batch that broke it.
    context: Option<Context>,
}

/// The sink's settings, apart from its runtime and connection so that a batch can borrow all
/// three.
struct Nats {
    connector: String,
    url: Secret,
    subject: Template,
    stream: Option<String>,
    duplicate_window: Duration,
    timeout: Duration,
    /// The certificate authorities to trust when the server speaks TLS.
    ca_file: Option<PathBuf>,
}

impl fmt::Debug for Nats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nats")
            .field("connector", &self.connector)
            .field("url", &masked_url(self.url.expose()))
            .field("subject", &self.subject.to_string())
            .field("stream", &self.stream)
            .field("duplicate_window", &self.duplicate_window)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl NatsSink {
    /// Checks the configuration; nothing is contacted yet.
    pub fn from_config(connector: &str, config: &NatsSinkConfig) -> Result<Self, SinkError> {
        if config.timeout.is_zero() {
            return Err(SinkError::ZeroTimeout("nats"));
        }
        let url = config.url.expose();
        let address: async_nats::ServerAddr =
            url.parse()
                .map_err(|e: std::io::Error| SinkError::InvalidUrl {
                    sink: "nats",
                    reason: redact(&e.to_string(), url),
                })?;
        if !matches!(address.into_inner().scheme(), "nats" | "tls") {
            return Err(SinkError::InvalidUrl {
                sink: "nats",
                reason: "the scheme must be nats:// or tls://".into(),
            });
        }
        if let Some(problem) = subject_problem(&config.subject.fill("x")) {
            return Err(SinkError::InvalidTemplate {
                key: "subject",
                reason: problem.into(),
            });
        }
        if let Some(path) = &config.ca_file {
            Roots::load(Some(path)).map_err(|reason| SinkError::CaFile {
                sink: "nats",
                reason,
            })?;
        }
        Ok(NatsSink {
            runtime: BrokerRuntime::new("trigpoll-nats"),
            nats: Nats {
                connector: connector.to_string(),
                url: config.url.clone(),
                subject: config.subject.clone(),
                stream: config.stream.clone(),
                duplicate_window: config.duplicate_window,
                timeout: config.timeout,
                ca_file: config.ca_file.clone(),
            },
            context: None,
        })
    }

    /// Gives up on unconfirmed messages once `abandon` is set.
    pub fn abandon_on(&mut self, abandon: Arc<AtomicBool>) {
        self.runtime.abandon_on(abandon);
    }

    /// For `check --database`: a warning when the named stream exists with a duplicate window
    /// shorter than the connector's. Nothing is created or changed; a stream that does not
    /// exist yet is made with the right window on the first publish.
    pub fn stream_warning(&mut self) -> Result<Option<String>, String> {
        let Some(name) = self.nats.stream.clone() else {
            return Ok(None);
        };
        let nats = &self.nats;
        let found = self.runtime.run(async {
            let context = nats.context().await?;
            match context.get_stream(&name).await {
                Ok(stream) => Ok(nats.short_window(stream.cached_info().config.duplicate_window)),
                Err(e) => match e.kind() {
                    GetStreamErrorKind::JetStream(e)
                        if e.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                    {
                        Ok(None)
                    }
                    _ => Err(format!("cannot read stream {name}: {}", nats.describe(&e))),
                },
            }
        })?;
        Ok(found
            .transpose()?
            .flatten()
            .map(|warning| format!("stream {name}: {warning}")))
    }
}

impl Nats {
    fn describe(&self, e: &dyn fmt::Display) -> String {
        redact(&e.to_string(), self.url.expose())
    }

    /// A JetStream context on a new connection.
    async fn context(&self) -> Result<Context, String> {
        // A nats:// server may ask for TLS too: the roots are there for whichever URL.
        let roots = Roots::load(self.ca_file.as_deref())
            .map_err(|reason| format!("cannot connect: `ca_file`: {reason}"))?;
        let client = async_nats::ConnectOptions::new()
            .tls_client_config((*roots.client_config()).clone())
            .name("trigpoll")
            .connection_timeout(self.timeout)
            .request_timeout(Some(self.timeout))
            .connect(self.url.expose())
            .await
            .map_err(|e| format!("cannot connect: {}", self.describe(&e)))?;
        Ok(ContextBuilder::new().timeout(self.timeout).build(client))
    }

    /// A context for publishing: the stream, when one is named, found or created.
    async fn connect(&self) -> Result<Context, String> {
        let context = self.context().await?;
        if let Some(name) = &self.stream {
            let wanted = StreamConfig {
                name: name.clone(),
                subjects: vec![self.subject.fill("*")],
                storage: StorageType::File,
                duplicate_window: self.duplicate_window,
                ..Default::default()
            };
            let stream = context.get_or_create_stream(wanted).await.map_err(|e| {
                format!("cannot find or create stream {name}: {}", self.describe(&e))
            })?;
            if let Some(warning) = self.short_window(stream.cached_info().config.duplicate_window) {
                tracing::warn!(connector = %self.connector, stream = %name, "{warning}");
            }
        }
        Ok(context)
    }

    /// The warning for a stream whose duplicate window is shorter than the connector's.
    fn short_window(&self, window: Duration) -> Option<String> {
        (window < self.duplicate_window).then(|| {
            format!(
                "the stream's duplicate window ({window:?}) is shorter than {:?}: an event published again after a crash or a retry may be stored twice",
                self.duplicate_window
            )
        })
    }
}

/// What is wrong with a subject to publish to, if anything: NATS subjects are dot-separated
/// tokens, none empty, without whitespace, and a publish cannot go to a wildcard.
pub(crate) fn subject_problem(subject: &str) -> Option<&'static str> {
    if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("a subject must not contain whitespace");
    }
    subject.split('.').find_map(|token| match token {
        "" => Some("a token between dots is empty"),
        "*" | ">" => Some("wildcards cannot be published to"),
        _ => None,
    })
}

/// One batch's publisher on the connection.
struct JetStream<'a> {
    sink: &'a Nats,
    context: &'a Context,
    /// Set when a message found no stream: with `stream` configured, the stream was deleted
    /// since it was made, and the next batch connects anew to make it again.
    no_stream: Arc<AtomicBool>,
}

impl Publisher for JetStream<'_> {
    async fn publish(&mut self, delivery: &Delivery) -> Result<Confirm, Outcome> {
        let subject =
            self.sink
                .subject
                .render(&delivery.object, &delivery.verb, &self.sink.connector);
        if let Some(problem) = subject_problem(&subject) {
            return Err(Outcome::Reject {
                reason: format!("subject {subject:?}: {problem}"),
            });
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", delivery.object_event_id.as_str());
        headers.insert("object", delivery.object.as_str());
        headers.insert("verb", delivery.verb.as_str());
        headers.insert("event_id", delivery.event_id.to_string().as_str());
        let payload = bytes::Bytes::from(delivery.body.clone());
        let url = self.sink.url.expose();
        match self
            .context
            .publish_with_headers(subject.clone(), headers, payload)
            .await
        {
            Ok(ack) => {
                let url = url.to_string();
                let no_stream = Arc::clone(&self.no_stream);
                Ok(Box::pin(async move {
                    match ack.await {
                        Ok(_) => Outcome::Sent,
                        Err(e) if e.kind() == PublishErrorKind::StreamNotFound => {
                            no_stream.store(true, Ordering::Relaxed);
                            Outcome::retry(format!("no stream captures subject {subject:?}"))
                        }
                        Err(e) => Outcome::retry(redact(&e.to_string(), &url)),
                    }
                }))
            }
            Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => Err(Outcome::Reject {
                reason: redact(&e.to_string(), url),
            }),
            Err(e) => Err(Outcome::retry(redact(&e.to_string(), url))),
        }
    }
}

impl Deliver for NatsSink {
    fn deliver(&mut self, batch: &[Delivery]) -> Vec<Outcome> {
        let NatsSink {
            runtime,
            nats,
            context,
        } = self;
        let mut outcomes = vec![None; batch.len()];
        let no_stream = Arc::new(AtomicBool::new(false));
        let ran = runtime.run(async {
            if context.is_none() {
                *context = Some(broker::within(nats.timeout, nats.connect()).await?);
            }
            let context = context.as_ref().expect("connected above");
            let mut publisher = JetStream {
                sink: nats,
                context,
                no_stream: Arc::clone(&no_stream),
            };
            Ok(broker::publish_pipelined(&mut publisher, batch, nats.timeout, &mut outcomes).await)
        });
        let healthy = broker::finish(ran, &mut outcomes);
        if !healthy || (nats.stream.is_some() && no_stream.load(Ordering::Relaxed)) {
            *context = None;
        }
        broker::settle(outcomes)
    }
}

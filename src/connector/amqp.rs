//! The AMQP 0-9-1 sink (RabbitMQ and other brokers of that protocol).
//!
//! **Sent** means the broker confirmed the message (publisher confirms) and did not return it:
//! every message is published `mandatory` and persistent (delivery mode 2) to a topic exchange,
//! so a confirmed message was routed to at least one queue, and a durable queue has written it
//! to disk. A message no queue takes comes back (basic.return) and is retried like a transient
//! failure, as is a negative acknowledgement: binding a queue later lets it through.
//!
//! The exchange is declared durable and of type topic when the sink connects; that is a no-op
//! when it exists as such. Names starting with `amq.` are the broker's own and are never
//! declared. Each message carries `message_id = object_event_id` (consumers drop duplicates by
//! it), `content_type = application/json` and the headers `object`, `verb` and `event_id`.
//!
//! Publishing is pipelined and a failure holds the rest of its key: see [`super::broker`].

use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::tcp::{AMQPUriTcpExt, RustlsConnector};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};

use super::broker::{self, masked_url, redact, BrokerRuntime, Confirm, Publisher};
use super::tls::Roots;
use super::{Deliver, Delivery, Outcome, SinkError};
use crate::config::{AmqpSinkConfig, Secret, Template};

/// The longest routing key AMQP carries (a short string).
const MAX_ROUTING_KEY: usize = 255;

/// Publishes each business object to an exchange, with publisher confirms.
#[derive(Debug)]
pub struct AmqpSink {
    runtime: BrokerRuntime,
    /// Shared with a connection attempt running as a task of its own.
    amqp: Arc<Amqp>,
    /// Made on the first batch, and again after a batch that broke it.
    link: Option<Link>,
    /// A connection attempt that outlasted a batch's `timeout`, taken up again by the next
    /// batch. lapin runs each connection on a thread of its own that a handshake with a broker
    /// that never answers keeps alive, so a new attempt per batch would pile them up.
    connecting: Option<tokio::task::JoinHandle<Result<Link, String>>>,
}

/// The sink's settings, apart from its runtime and connection so that a batch can borrow all
/// three.
struct Amqp {
    connector: String,
    url: Secret,
    uri: AMQPUri,
    exchange: String,
    routing_key: Template,
    timeout: Duration,
    /// For `amqps://`: TLS with trigpoll's roots ([`super::tls`]).
    tls: Option<Arc<RustlsConnector>>,
}

impl fmt::Debug for Amqp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Amqp")
            .field("connector", &self.connector)
            .field("url", &masked_url(self.url.expose()))
            .field("exchange", &self.exchange)
            .field("routing_key", &self.routing_key.to_string())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A connection and its channel in confirm mode. The connection is kept with the channel: it
/// closes when dropped.
struct Link {
    _connection: Connection,
    channel: Channel,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("channel", &self.channel.id())
            .finish()
    }
}

impl AmqpSink {
    /// Checks the configuration; nothing is contacted yet.
    pub fn from_config(connector: &str, config: &AmqpSinkConfig) -> Result<Self, SinkError> {
        if config.timeout.is_zero() {
            return Err(SinkError::ZeroTimeout("amqp"));
        }
        let url = config.url.expose();
        if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
            return Err(SinkError::InvalidUrl {
                sink: "amqp",
                reason: "the scheme must be amqp:// or amqps://".into(),
            });
        }
        let uri: AMQPUri = url.parse().map_err(|e: String| SinkError::InvalidUrl {
            sink: "amqp",
            reason: redact(&e, url),
        })?;
        let tls = match uri.scheme {
            AMQPScheme::AMQP => None,
            AMQPScheme::AMQPS => {
                let roots =
                    Roots::load(config.ca_file.as_deref()).map_err(|reason| SinkError::CaFile {
                        sink: "amqp",
                        reason,
                    })?;
                Some(Arc::new(RustlsConnector::from(roots.client_config())))
            }
        };
        Ok(AmqpSink {
            runtime: BrokerRuntime::new("trigpoll-amqp"),
            amqp: Arc::new(Amqp {
                connector: connector.to_string(),
                url: config.url.clone(),
                uri,
                exchange: config.exchange.clone(),
                routing_key: config.routing_key.clone(),
                timeout: config.timeout,
                tls,
            }),
            link: None,
            connecting: None,
        })
    }

    /// Gives up on unconfirmed messages once `abandon` is set.
    pub fn abandon_on(&mut self, abandon: Arc<AtomicBool>) {
        self.runtime.abandon_on(abandon);
    }
}

/// Connects to an `amqps://` broker with `tls`: lapin chooses its roots when it is built, so the
/// TLS handshake is made here, on the TCP connection lapin opens, as lapin makes it (also when
/// it reconnects).
async fn connect_tls(
    uri: AMQPUri,
    tls: Arc<RustlsConnector>,
    properties: ConnectionProperties,
) -> lapin::Result<Connection> {
    let runtime = lapin::runtime::default_runtime()?;
    let handshake = async move |uri: AMQPUri, runtime| {
        let host = uri.authority.host.clone();
        let mut tcp = uri;
        tcp.scheme = AMQPScheme::AMQP;
        let stream = tcp.connect_async(&runtime).await?;
        Ok(stream.into_rustls(&tls, &host).await?)
    };
    Connection::connector(uri, runtime, handshake, properties).await
}

impl Amqp {
    fn describe(&self, error: &lapin::Error) -> String {
        redact(&error.to_string(), self.url.expose())
    }

    /// Connects, opens a channel, declares the exchange and turns confirms on. Owns its
    /// settings: it runs as a task of its own (see [`AmqpSink::connecting`]).
    async fn connect(self: Arc<Self>) -> Result<Link, String> {
        let properties = ConnectionProperties::default();
        let connected = match &self.tls {
            None => Connection::connect_uri(self.uri.clone(), properties).await,
            Some(tls) => connect_tls(self.uri.clone(), Arc::clone(tls), properties).await,
        };
        let connection = connected.map_err(|e| format!("cannot connect: {}", self.describe(&e)))?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| format!("cannot open a channel: {}", self.describe(&e)))?;
        if !self.exchange.starts_with("amq.") {
            let options = ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            };
            channel
                .exchange_declare(
                    self.exchange.as_str().into(),
                    ExchangeKind::Topic,
                    options,
                    FieldTable::default(),
                )
                .await
                .map_err(|e| {
                    format!(
                        "cannot declare exchange {:?} (durable, topic): {}",
                        self.exchange,
                        self.describe(&e)
                    )
                })?;
        }
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| format!("cannot turn publisher confirms on: {}", self.describe(&e)))?;
        Ok(Link {
            _connection: connection,
            channel,
        })
    }
}

/// One batch's publisher on the channel.
struct Publishing<'a> {
    amqp: &'a Amqp,
    channel: &'a Channel,
}

impl Publisher for Publishing<'_> {
    async fn publish(&mut self, delivery: &Delivery) -> Result<Confirm, Outcome> {
        let amqp = self.amqp;
        let routing_key =
            amqp.routing_key
                .render(&delivery.object, &delivery.verb, &amqp.connector);
        if routing_key.len() > MAX_ROUTING_KEY {
            return Err(Outcome::Reject {
                reason: format!(
                    "routing key {routing_key:?} is longer than {MAX_ROUTING_KEY} bytes"
                ),
            });
        }
        let mut headers = FieldTable::default();
        headers.insert(
            "object".into(),
            AMQPValue::LongString(LongString::from(delivery.object.as_str())),
        );
        headers.insert(
            "verb".into(),
            AMQPValue::LongString(LongString::from(delivery.verb.as_str())),
        );
        headers.insert("event_id".into(), AMQPValue::LongLongInt(delivery.event_id));
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(ShortString::from(delivery.object_event_id.as_str()))
            .with_headers(headers);
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let confirm = self
            .channel
            .basic_publish(
                amqp.exchange.as_str().into(),
                routing_key.as_str().into(),
                options,
                delivery.body.as_bytes(),
                properties,
            )
            .await
            .map_err(|e| Outcome::retry(amqp.describe(&e)))?;
        let url = amqp.url.expose().to_string();
        let exchange = amqp.exchange.clone();
        Ok(Box::pin(async move {
            match confirm.await {
                Ok(Confirmation::Ack(None)) => Outcome::Sent,
                Ok(Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned))) => {
                    Outcome::retry(format!(
                        "returned by the broker ({} {}): no queue is bound to exchange {exchange:?} \
                         for routing key {routing_key:?}",
                        returned.reply_code,
                        returned.reply_text.as_str()
                    ))
                }
                Ok(Confirmation::Nack(None)) => {
                    Outcome::retry("refused by the broker (negative acknowledgement)")
                }
                Ok(Confirmation::NotRequested) => {
                    Outcome::retry("not confirmed: the channel is not in confirm mode")
                }
                Err(e) => Outcome::retry(redact(&e.to_string(), &url)),
            }
        }))
    }
}

impl Deliver for AmqpSink {
    fn deliver(&mut self, batch: &[Delivery]) -> Vec<Outcome> {
        let AmqpSink {
            runtime,
            amqp,
            link,
            connecting,
        } = self;
        // A connection the broker closed between batches (a restart, say) is made anew at once.
        if link
            .as_ref()
            .is_some_and(|l| !l.channel.status().connected())
        {
            *link = None;
        }
        let mut outcomes = vec![None; batch.len()];
        let ran = runtime.run(async {
            if link.is_none() {
                let attempt =
                    connecting.get_or_insert_with(|| tokio::spawn(Arc::clone(amqp).connect()));
                let joined = tokio::time::timeout(amqp.timeout, attempt)
                    .await
                    .map_err(|_| format!("cannot connect: no answer within {:?}", amqp.timeout))?;
                *connecting = None;
                let connected = joined.map_err(|e| format!("cannot connect: {e}"))?;
                *link = Some(connected?);
            }
            let channel = &link.as_ref().expect("connected above").channel;
            let mut publisher = Publishing { amqp, channel };
            Ok(broker::publish_pipelined(&mut publisher, batch, amqp.timeout, &mut outcomes).await)
        });
        if !broker::finish(ran, &mut outcomes) {
            *link = None;
        }
        broker::settle(outcomes)
    }
}

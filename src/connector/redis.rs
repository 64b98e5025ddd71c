//! The Redis Streams sink.
//!
//! **Sent** means Redis answered the `XADD` with the new entry's id: the entry is in the stream
//! (in memory, and on disk as the server's persistence settings say: with `appendfsync always`
//! before the answer, by default within a second). Each entry has the fields
//! `object_event_id` (consumers drop duplicates by it: Redis has no duplicate detection),
//! `object`, `verb`, `event_id` and `payload` (the business object's JSON). With `maxlen` set
//! each `XADD` trims the stream to about that many entries (`MAXLEN ~`).
//!
//! A batch goes out as pipelines of up to [`WINDOW`] commands: one round trip each, the
//! commands run in order. An error answer to one command (out of memory, a key that is not a
//! stream, no permission) retries that event and holds the rest of its key: see
//! [`super::broker`]. The sink talks to one server (or a proxy); Redis Cluster is not supported.

use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, RedisResult, Value};

use super::broker::{self, masked_url, redact, BrokerRuntime, WINDOW};
use super::tls::Roots;
use super::{Deliver, Delivery, Outcome, SinkError};
use crate::config::{RedisSinkConfig, Secret, Template};

/// Appends each business object to a stream with `XADD`.
#[derive(Debug)]
pub struct RedisSink {
    runtime: BrokerRuntime,
    redis: Redis,
    /// Made on the first batch, and again after a batch that broke it.
    connection: Option<MultiplexedConnection>,
}

/// The sink's settings, apart from its runtime and connection so that a batch can borrow all
/// three.
struct Redis {
    connector: String,
    url: Secret,
    client: Client,
    stream: Template,
    maxlen: Option<u64>,
    timeout: Duration,
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redis")
            .field("connector", &self.connector)
            .field("url", &masked_url(self.url.expose()))
            .field("stream", &self.stream.to_string())
            .field("maxlen", &self.maxlen)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl RedisSink {
    /// Checks the configuration; nothing is contacted yet.
    pub fn from_config(connector: &str, config: &RedisSinkConfig) -> Result<Self, SinkError> {
        if config.timeout.is_zero() {
            return Err(SinkError::ZeroTimeout("redis"));
        }
        let url = config.url.expose();
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(SinkError::InvalidUrl {
                sink: "redis",
                reason: "the scheme must be redis:// or rediss://".into(),
            });
        }
        let client = match url.starts_with("rediss://") {
            true => {
                let roots =
                    Roots::load(config.ca_file.as_deref()).map_err(|reason| SinkError::CaFile {
                        sink: "redis",
                        reason,
                    })?;
                let certificates = ::redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(roots.pem()),
                };
                Client::build_with_tls(url, certificates)
            }
            false => Client::open(url),
        };
        let client = client.map_err(|e| SinkError::InvalidUrl {
            sink: "redis",
            reason: redact(&e.to_string(), url),
        })?;
        Ok(RedisSink {
            runtime: BrokerRuntime::new("trigpoll-redis"),
            redis: Redis {
                connector: connector.to_string(),
                url: config.url.clone(),
                client,
                stream: config.stream.clone(),
                maxlen: config.maxlen,
                timeout: config.timeout,
            },
            connection: None,
        })
    }

    /// Gives up on unanswered pipelines once `abandon` is set.
    pub fn abandon_on(&mut self, abandon: Arc<AtomicBool>) {
        self.runtime.abandon_on(abandon);
    }
}

impl Redis {
    fn describe(&self, error: &::redis::RedisError) -> String {
        redact(&error.to_string(), self.url.expose())
    }

    async fn connect(&self) -> Result<MultiplexedConnection, String> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| format!("cannot connect: {}", self.describe(&e)))
    }

    /// Sends the batch as pipelines, skipping the keys that already failed, and fills
    /// `outcomes`. Returns whether the connection is still good.
    async fn publish(
        &self,
        connection: &mut MultiplexedConnection,
        batch: &[Delivery],
        outcomes: &mut [Option<Outcome>],
    ) -> bool {
        let mut failed_keys = std::collections::HashSet::new();
        let mut next = 0;
        while next < batch.len() {
            let mut chunk = Vec::with_capacity(WINDOW.min(batch.len() - next));
            let mut pipe = ::redis::pipe();
            pipe.ignore_errors();
            while next < batch.len() && chunk.len() < WINDOW {
                let delivery = &batch[next];
                if failed_keys.contains(&delivery.key) {
                    outcomes[next] = Some(Outcome::Held);
                } else {
                    self.xadd(&mut pipe, delivery);
                    chunk.push(next);
                }
                next += 1;
            }
            if chunk.is_empty() {
                continue;
            }
            let answers = tokio::time::timeout(
                self.timeout,
                pipe.query_async::<Vec<RedisResult<Value>>>(connection),
            )
            .await;
            let answers = match answers {
                Ok(Ok(answers)) if answers.len() == chunk.len() => answers,
                failed => {
                    let reason = match failed {
                        Ok(Ok(answers)) => {
                            format!("{} answers to {} commands", answers.len(), chunk.len())
                        }
                        Ok(Err(e)) => self.describe(&e),
                        Err(_) => format!("no answer within {:?}", self.timeout),
                    };
                    for i in chunk {
                        outcomes[i] = Some(Outcome::retry(reason.clone()));
                    }
                    for slot in outcomes[next..].iter_mut() {
                        *slot = Some(Outcome::retry(format!("not published: {reason}")));
                    }
                    return false;
                }
            };
            for (i, answer) in chunk.into_iter().zip(answers) {
                let outcome = match answer {
                    Ok(_) => Outcome::Sent,
                    Err(e) => {
                        failed_keys.insert(batch[i].key);
                        Outcome::retry(self.describe(&e))
                    }
                };
                outcomes[i] = Some(outcome);
            }
        }
        true
    }

    fn xadd(&self, pipe: &mut ::redis::Pipeline, delivery: &Delivery) {
        let stream = self
            .stream
            .render(&delivery.object, &delivery.verb, &self.connector);
        pipe.cmd("XADD").arg(stream);
        if let Some(maxlen) = self.maxlen {
            pipe.arg("MAXLEN").arg("~").arg(maxlen);
        }
        pipe.arg("*")
            .arg("object_event_id")
            .arg(&delivery.object_event_id)
            .arg("object")
            .arg(&delivery.object)
            .arg("verb")
            .arg(&delivery.verb)
            .arg("event_id")
            .arg(delivery.event_id)
            .arg("payload")
            .arg(&delivery.body);
    }
}

impl Deliver for RedisSink {
    fn deliver(&mut self, batch: &[Delivery]) -> Vec<Outcome> {
        let RedisSink {
            runtime,
            redis,
            connection,
        } = self;
        let mut outcomes = vec![None; batch.len()];
        let ran = runtime.run(async {
            if connection.is_none() {
                *connection = Some(broker::within(redis.timeout, redis.connect()).await?);
            }
            let connection = connection.as_mut().expect("connected above");
            Ok(redis.publish(connection, batch, &mut outcomes).await)
        });
        if !broker::finish(ran, &mut outcomes) {
            *connection = None;
        }
        broker::settle(outcomes)
    }
}

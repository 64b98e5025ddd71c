//! Figure 9: the drain through NATS JetStream, RabbitMQ, Redis Streams and batched HTTP, against
//! the file connector in the same run (target in docs/performance.md: each ≥ 50% of the file connector).
//!
//! Each broker gets names of its own, after the throwaway database (a stream, an exchange with
//! one durable queue bound to every routing key, a stream key), emptied after every run and
//! deleted at the end. A broker that does not answer leaves its row saying so.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::Duration;

use std::sync::atomic::Ordering;

use super::{fmt, median, rotation, runs_text, say, verdict, Bench, ARCHIVE};

/// The section figure 9 writes, also the heading `--only fig9` looks for.
pub(super) const BROKERS_HEADING: &str = "## Brokers and batched HTTP";

/// Payloads per request of the batched HTTP connector.
const HTTP_BATCH: usize = 100;

/// The ready events of the HTTP request count, and its connector's `concurrency`.
const REQUEST_EVENTS: i64 = 1000;
const HTTP_CONCURRENCY: usize = 8;

/// The size of a payload of the drain's `item` rows, for the brokers' own rate.
const BODY_BYTES: usize = 330;

/// (config and result name, label) of each variant, the reference first.
const VARIANTS: [(&str, &str); 6] = [
    ("file", "file connector (reference)"),
    ("http", "HTTP, one payload per request"),
    ("httpbatch", "HTTP, `batch_size = 100`"),
    ("nats", "NATS JetStream"),
    ("amqp", "RabbitMQ (AMQP 0-9-1)"),
    ("redis", "Redis Streams"),
];

/// The broker URLs of figure 9.
pub(super) struct BrokerUrls {
    pub(super) nats: String,
    pub(super) amqp: String,
    pub(super) redis: String,
}

impl BrokerUrls {
    pub(super) fn from_env() -> BrokerUrls {
        let var =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
        BrokerUrls {
            nats: var("TRIGPOLL_BENCH_NATS_URL", "nats://127.0.0.1:4222"),
            amqp: var(
                "TRIGPOLL_BENCH_AMQP_URL",
                "amqp://guest:guest@127.0.0.1:5672/%2f",
            ),
            redis: var("TRIGPOLL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
        }
    }
}

/// The brokers that answered, with what the bench made on them.
struct Brokers {
    runtime: tokio::runtime::Runtime,
    /// The JetStream context and the stream trigpoll creates.
    nats: Option<(async_nats::jetstream::Context, String)>,
    /// The channel (its connection kept open), the exchange and the bound queue.
    amqp: Option<(lapin::Connection, lapin::Channel, String, String)>,
    /// The connection and the stream key.
    redis: Option<(redis::Connection, String)>,
}

impl Brokers {
    /// Connects to each broker; one that does not answer is left out, with the reason in
    /// `missing`. `tag` names what the bench makes (the throwaway database's name).
    fn connect(urls: &BrokerUrls, tag: &str, missing: &mut Vec<String>) -> Brokers {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let timeout = Duration::from_secs(5);
        let nats = runtime.block_on(async {
            let connect = async_nats::ConnectOptions::new()
                .connection_timeout(timeout)
                .connect(urls.nats.as_str());
            match tokio::time::timeout(timeout, connect).await {
                Ok(Ok(client)) => Some(async_nats::jetstream::new(client)),
                Ok(Err(e)) => {
                    missing.push(format!("NATS did not answer at {}: {e}", urls.nats));
                    None
                }
                Err(_) => {
                    missing.push(format!("NATS did not answer at {} within 5 s", urls.nats));
                    None
                }
            }
        });
        let amqp = runtime.block_on(async {
            let exchange = tag.to_string();
            let queue = format!("{tag}_q");
            let made = async {
                let connect =
                    lapin::Connection::connect(&urls.amqp, lapin::ConnectionProperties::default());
                let connection = tokio::time::timeout(timeout, connect)
                    .await
                    .map_err(|_| "no answer within 5 s".to_string())?
                    .map_err(|e| e.to_string())?;
                let channel = connection
                    .create_channel()
                    .await
                    .map_err(|e| e.to_string())?;
                // As trigpoll declares it, so that its own declare agrees.
                let durable = lapin::options::ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                };
                channel
                    .exchange_declare(
                        exchange.as_str().into(),
                        lapin::ExchangeKind::Topic,
                        durable,
                        Default::default(),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let durable = lapin::options::QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                };
                channel
                    .queue_declare(queue.as_str().into(), durable, Default::default())
                    .await
                    .map_err(|e| e.to_string())?;
                channel
                    .queue_bind(
                        queue.as_str().into(),
                        exchange.as_str().into(),
                        "#".into(),
                        Default::default(),
                        Default::default(),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>((connection, channel))
            };
            match made.await {
                Ok((connection, channel)) => Some((connection, channel, exchange, queue)),
                Err(e) => {
                    missing.push(format!("RabbitMQ did not answer at its URL: {e}"));
                    None
                }
            }
        });
        let redis = redis::Client::open(urls.redis.as_str())
            .and_then(|client| client.get_connection_with_timeout(timeout));
        let redis = match redis {
            Ok(connection) => Some((connection, format!("{tag}:Item"))),
            Err(e) => {
                missing.push(format!("Redis did not answer at {}: {e}", urls.redis));
                None
            }
        };
        Brokers {
            runtime,
            nats: nats.map(|js| (js, tag.to_uppercase())),
            amqp,
            redis,
        }
    }

    /// Whether the variant's broker answered (the file and HTTP variants need none).
    fn has(&self, variant: &str) -> bool {
        match variant {
            "nats" => self.nats.is_some(),
            "amqp" => self.amqp.is_some(),
            "redis" => self.redis.is_some(),
            _ => true,
        }
    }

    /// Empties what a run of `variant` filled, so that every run starts alike.
    fn empty(&mut self, variant: &str) {
        match variant {
            "nats" => {
                if let Some((js, stream)) = &self.nats {
                    self.runtime.block_on(async {
                        if let Ok(s) = js.get_stream(stream.as_str()).await {
                            if let Err(e) = s.purge().await {
                                say(&format!("could not purge the NATS stream: {e}"));
                            }
                        }
                    });
                }
            }
            "amqp" => {
                if let Some((_, channel, _, queue)) = &self.amqp {
                    let purged = self
                        .runtime
                        .block_on(channel.queue_purge(queue.as_str().into(), Default::default()));
                    if let Err(e) = purged {
                        say(&format!("could not purge the AMQP queue: {e}"));
                    }
                }
            }
            "redis" => {
                if let Some((connection, key)) = &mut self.redis {
                    let _: Result<(), _> = redis::cmd("DEL").arg(key.as_str()).query(connection);
                }
            }
            _ => {}
        }
    }

    /// The broker's own rate here: `n` messages the size of a payload published straight from
    /// this process with the same client library, 1000 waiting for their acknowledgement at
    /// once, as the connector does, but with no database and no poller. Messages/s.
    fn bound(&mut self, variant: &str, n: usize) -> Option<f64> {
        const WINDOW: usize = 1000;
        let body = vec![b'x'; BODY_BYTES];
        let start = std::time::Instant::now();
        match variant {
            "nats" => {
                let (js, stream) = self.nats.as_ref()?;
                let subject = format!("{}.Item.Update", stream.to_lowercase());
                self.runtime.block_on(async {
                    let mut waiting: VecDeque<async_nats::jetstream::context::PublishAckFuture> =
                        VecDeque::new();
                    for _ in 0..n {
                        if waiting.len() >= WINDOW {
                            waiting.pop_front()?.await.ok()?;
                        }
                        waiting.push_back(
                            js.publish(subject.clone(), body.clone().into())
                                .await
                                .ok()?,
                        );
                    }
                    for ack in waiting {
                        ack.await.ok()?;
                    }
                    Some(())
                })?;
            }
            "amqp" => {
                let (_, channel, exchange, _) = self.amqp.as_ref()?;
                self.runtime.block_on(async {
                    channel.confirm_select(Default::default()).await.ok()?;
                    let options = lapin::options::BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    };
                    let mut waiting: VecDeque<lapin::PublisherConfirm> = VecDeque::new();
                    for _ in 0..n {
                        if waiting.len() >= WINDOW {
                            waiting.pop_front()?.await.ok()?;
                        }
                        let properties = lapin::BasicProperties::default().with_delivery_mode(2);
                        let confirm = channel
                            .basic_publish(
                                exchange.as_str().into(),
                                "Item.Update".into(),
                                options,
                                &body,
                                properties,
                            )
                            .await
                            .ok()?;
                        waiting.push_back(confirm);
                    }
                    for confirm in waiting {
                        confirm.await.ok()?;
                    }
                    Some(())
                })?;
            }
            "redis" => {
                let (connection, key) = self.redis.as_mut()?;
                for _ in 0..n.div_ceil(WINDOW) {
                    let mut pipe = redis::pipe();
                    for _ in 0..WINDOW {
                        pipe.cmd("XADD")
                            .arg(key.as_str())
                            .arg("*")
                            .arg("payload")
                            .arg(&body);
                    }
                    let _: Vec<String> = pipe.query(connection).ok()?;
                }
            }
            _ => return None,
        }
        let rate = n as f64 / start.elapsed().as_secs_f64();
        self.empty(variant);
        Some(rate)
    }

    /// How many messages the broker holds for the variant (what the drain delivered).
    fn held(&mut self, variant: &str) -> Option<u64> {
        match variant {
            "nats" => {
                let (js, stream) = self.nats.as_ref()?;
                self.runtime.block_on(async {
                    let mut s = js.get_stream(stream.as_str()).await.ok()?;
                    Some(s.info().await.ok()?.state.messages)
                })
            }
            "amqp" => {
                let (_, channel, _, queue) = self.amqp.as_ref()?;
                let passive = lapin::options::QueueDeclareOptions {
                    passive: true,
                    durable: true,
                    ..Default::default()
                };
                let q = self
                    .runtime
                    .block_on(channel.queue_declare(
                        queue.as_str().into(),
                        passive,
                        Default::default(),
                    ))
                    .ok()?;
                Some(u64::from(q.message_count()))
            }
            "redis" => {
                let (connection, key) = self.redis.as_mut()?;
                redis::cmd("XLEN").arg(key.as_str()).query(connection).ok()
            }
            _ => None,
        }
    }
}

impl Drop for Brokers {
    fn drop(&mut self) {
        if let Some((js, stream)) = &self.nats {
            let _ = self.runtime.block_on(js.delete_stream(stream.as_str()));
        }
        if let Some((_, channel, exchange, queue)) = &self.amqp {
            self.runtime.block_on(async {
                let _ = channel
                    .queue_delete(queue.as_str().into(), Default::default())
                    .await;
                let _ = channel
                    .exchange_delete(exchange.as_str().into(), Default::default())
                    .await;
            });
        }
        if let Some((connection, key)) = &mut self.redis {
            let _: Result<(), _> = redis::cmd("DEL").arg(key.as_str()).query(connection);
        }
    }
}

impl Bench {
    /// Figure 9: the same backlog drained through each broker and batched HTTP, interleaved with
    /// the file connector run by run.
    pub(super) fn fig9(&mut self) {
        say("figure 9: brokers and batched HTTP");
        let n = self.sizes.drain_events;
        let tag = self.db.name.clone();
        let mut brokers = Brokers::connect(&self.opts.brokers, &tag, &mut self.brokers_missing);
        let urls = &self.opts.brokers;
        let connectors = [
            (
                "httpbatch",
                format!(
                    "[sink]\ntype = \"http\"\nurl = \"{}\"\nsecret = \"bench\"\nbatch_size = {HTTP_BATCH}\n",
                    self.receiver.url
                ),
            ),
            (
                "nats",
                format!(
                    "[sink]\ntype = \"nats\"\nurl = \"{}\"\nsubject = \"{tag}.{{object}}.{{verb}}\"\nstream = \"{}\"\n",
                    urls.nats,
                    tag.to_uppercase()
                ),
            ),
            (
                "amqp",
                format!(
                    "[sink]\ntype = \"amqp\"\nurl = \"{}\"\nexchange = \"{tag}\"\n",
                    urls.amqp
                ),
            ),
            (
                "redis",
                format!(
                    "[sink]\ntype = \"redis\"\nurl = \"{}\"\nstream = \"{tag}:{{object}}\"\n",
                    urls.redis
                ),
            ),
        ];
        let connectors = connectors.into_iter().chain([(
            "httpcount",
            format!(
                "[sink]\ntype = \"http\"\nurl = \"{}\"\nsecret = \"bench\"\nbatch_size = {HTTP_BATCH}\nconcurrency = {HTTP_CONCURRENCY}\n",
                self.receiver.url
            ),
        )]);
        for (name, sink) in connectors {
            let folder = format!("conn-{name}");
            self.write_connector(
                &folder,
                &format!("id = \"out\"\nsubscribe = [\"*.*\"]\n{sink}"),
            );
            self.write_config(name, &folder, "trigpoll_archive", false);
        }
        // The receiver's first connections are slow to be served: see figure 1.
        self.queue_events(2000, true);
        self.drain("http", 2000);
        let variants: Vec<&str> = VARIANTS
            .iter()
            .map(|(v, _)| *v)
            .filter(|v| brokers.has(v))
            .collect();
        for run in 0..self.opts.runs {
            for v in rotation(&variants, run) {
                brokers.empty(v);
                self.queue_events(n, true);
                let r = self.drain(v, n);
                self.record(&format!("brokers.drain.{v}"), r);
                if let Some(held) = brokers.held(v) {
                    if held != n as u64 {
                        say(&format!("{v} holds {held} messages after a drain of {n}"));
                    }
                }
                brokers.empty(v);
                if let Some(rate) = brokers.bound(v, n as usize) {
                    self.record(&format!("brokers.bound.{v}"), rate);
                }
            }
            // The requests the receiver gets for a small backlog, all of it ready at once.
            self.queue_events(REQUEST_EVENTS, true);
            let before = self.receiver.count.load(Ordering::Relaxed);
            self.drain("httpcount", REQUEST_EVENTS);
            let requests = self.receiver.count.load(Ordering::Relaxed) - before;
            self.record("brokers.http_requests", requests as f64);
        }
        self.exec(&format!("TRUNCATE {ARCHIVE}"));
    }

    /// The section of figure 9, complete in itself so that `--only fig9` can splice it.
    pub(super) fn brokers_section(&self, started: &str) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "{BROKERS_HEADING}\n");
        let _ =
            writeln!(
            md,
            "Measured on {started} ({}), median of {} runs, interleaved run by run: {} `Update` \
             events drained (`batch_size = 1000`) through each connector, against the file \
             connector on tmpfs in the same run; target: each ≥ 0.50 of the file connector. \
             Every broker runs on this machine with its packaged settings; each run starts with \
             the stream, queue or stream key empty.\n",
            if self.opts.quick { "`--quick`" } else { "default size" },
            self.opts.runs,
            fmt(self.sizes.drain_events as f64, 0)
        );
        let _ = writeln!(
            md,
            "| connector | events/s | runs | / file | target | | the broker alone, messages/s |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|");
        let file = self.median_of("brokers.drain.file");
        for (v, label) in VARIANTS {
            let key = format!("brokers.drain.{v}");
            let runs = self.results.get(&key);
            let value = runs.map_or(f64::NAN, |r| median(r));
            let (target, met) = match v {
                "file" | "http" => ("(reference)", ""),
                _ if runs.is_none() => ("≥ 0.50", "not run"),
                _ => ("≥ 0.50", verdict(value / file >= 0.5)),
            };
            let bound = self.results.get(&format!("brokers.bound.{v}"));
            let bound = bound.map_or("".into(), |b| fmt(median(b), 0));
            let _ = writeln!(
                md,
                "| {label} | {} | {} | {:.2} | {target} | {met} | {bound} |",
                fmt(value, 0),
                runs_text(runs.map(Vec::as_slice), 0),
                value / file
            );
        }
        let _ = writeln!(md);
        if let Some(runs) = self.results.get("brokers.http_requests") {
            let requests = median(runs);
            let ideal = REQUEST_EVENTS as f64 / HTTP_BATCH as f64;
            let _ = writeln!(
                md,
                "| figure | measured | runs | reference | target | |\n|---|---|---|---|---|---|\n\
                 | HTTP `batch_size = {HTTP_BATCH}`, `concurrency = {HTTP_CONCURRENCY}`: requests the receiver got for {} ready events | {} | {} | {} (one per {HTTP_BATCH} events) | ≤ {} | {} |\n",
                fmt(REQUEST_EVENTS as f64, 0),
                fmt(requests, 0),
                runs_text(Some(runs), 0),
                fmt(ideal, 0),
                fmt(ideal, 0),
                verdict(requests <= ideal)
            );
        }
        for why in &self.brokers_missing {
            let _ = writeln!(md, "- Not run: {why}.");
        }
        if !self.brokers_missing.is_empty() {
            let _ = writeln!(md);
        }
        let _ = writeln!(
            md,
            "What \"sent\" waits for: NATS, the stream's PubAck (file storage, created by trigpoll \
             with its duplicate window); RabbitMQ, the publisher confirm of a persistent, \
             mandatory message routed to one durable queue; Redis, the XADD reply (no `maxlen`, \
             the server's default persistence); HTTP, the receiver's 200 (an in-process \
             tiny_http server that only counts). Each broker connector pipelines up to 1000 \
             messages waiting for their acknowledgement; batched HTTP posts {HTTP_BATCH} payloads \
             per request, 8 requests at once; its request count drains {} events queued at once \
             (one per key) with `concurrency = {HTTP_CONCURRENCY}` set, and counts the requests \
             the receiver answered during the drain. \"The broker alone\" publishes as many messages of \
             {BODY_BYTES} bytes (a payload's size) straight from the bench, with the same client \
             library and the same window of 1000, and no database: what the broker itself takes \
             on this machine.\n",
            fmt(REQUEST_EVENTS as f64, 0)
        );
        md
    }
}

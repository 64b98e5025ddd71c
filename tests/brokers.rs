//! The broker sinks against real servers: NATS with JetStream, RabbitMQ, Redis, reached at
//! `TRIGPOLL_TEST_NATS_URL`, `TRIGPOLL_TEST_AMQP_URL` and `TRIGPOLL_TEST_REDIS_URL` (defaults:
//! the local servers on their usual ports). Events come from SQLite through the real binary.
//!
//! Every test uses streams, exchanges, queues and keys of its own (a random suffix) and removes
//! them at the end. A test that cannot reach its server fails under `CI=true` and is skipped
//! otherwise.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{lines, stderr, stdout, unreachable, Backend, ClosedPort, Env};

const OBJECTS: &str = "[[object]]\nname = \"Item\"\ntable = \"item\"\n";

/// An SQLite database with the table `item` bound to the object `Item`, triggers installed.
fn env(poll: &str) -> Option<Env> {
    let env = Env::new(Backend::Sqlite)?;
    env.db
        .execute("CREATE TABLE item (id int PRIMARY KEY, name {text} NOT NULL)");
    env.config(poll, OBJECTS);
    env.run_ok(&["install-triggers"], 0);
    Some(env)
}

/// `keys` rows, then `updates` rounds updating every row: many events of few keys,
/// interleaved. Returns the number of events.
fn changes(env: &Env, first_key: usize, keys: usize, updates: usize) -> usize {
    let values: Vec<String> = (first_key..first_key + keys)
        .map(|k| format!("({k}, 'v0')"))
        .collect();
    env.db
        .execute(&format!("INSERT INTO item VALUES {}", values.join(", ")));
    for round in 1..=updates {
        env.db.execute(&format!(
            "UPDATE item SET name = 'v{round}' WHERE id >= {first_key} AND id < {}",
            first_key + keys
        ));
    }
    keys * (1 + updates)
}

fn suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Checks what a broker holds, in its order, as (idempotency key, payload) pairs: every event
/// exactly once, keyed `<connector>_<event_id>`, each key's events in event-id order.
fn assert_once_in_key_order(connector: &str, received: &[(String, Value)], total: usize) {
    assert_eq!(received.len(), total, "one message per event");
    let mut ids = HashSet::new();
    let mut last_of_key: BTreeMap<i64, i64> = BTreeMap::new();
    for (id, payload) in received {
        let event_id = payload["event_id"].as_i64().unwrap();
        assert_eq!(id, &format!("{connector}_{event_id}"));
        assert_eq!(payload["object_event_id"], Value::String(id.clone()));
        assert!(ids.insert(id.clone()), "{id} twice");
        let key = payload["attributes"]["id"].as_i64().unwrap();
        if let Some(before) = last_of_key.insert(key, event_id) {
            assert!(
                before < event_id,
                "key {key}: event {event_id} arrived after {before}"
            );
        }
    }
}

fn archive_statuses(env: &Env, connector: &str) -> Vec<(i64, String)> {
    env.db
        .query(&format!(
            "SELECT event_status, event_description FROM {{archive}} \
             WHERE connector_id = '{connector}' ORDER BY event_id"
        ))
        .into_iter()
        .map(|r| {
            (
                r[0].as_deref().unwrap().parse().unwrap(),
                r[1].clone().unwrap_or_default(),
            )
        })
        .collect()
}

// -------------------------------------------------------------------------------------------
// NATS JetStream

struct Nats {
    url: String,
    runtime: tokio::runtime::Runtime,
    jetstream: async_nats::jetstream::Context,
    /// Streams to delete at the end.
    streams: Vec<String>,
}

impl Nats {
    fn connect() -> Option<Nats> {
        let url = std::env::var("TRIGPOLL_TEST_NATS_URL")
            .unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
        let runtime = runtime();
        let jetstream = runtime.block_on(async {
            async_nats::ConnectOptions::new()
                .connection_timeout(Duration::from_secs(3))
                .connect(url.as_str())
                .await
                .map(async_nats::jetstream::new)
        });
        let jetstream = match jetstream {
            Ok(jetstream) => jetstream,
            Err(e) => return unreachable("NATS at TRIGPOLL_TEST_NATS_URL", e),
        };
        Some(Nats {
            url,
            runtime,
            jetstream,
            streams: Vec::new(),
        })
    }

    fn stream(&mut self, name: &str) -> async_nats::jetstream::stream::Stream {
        if !self.streams.iter().any(|s| s == name) {
            self.streams.push(name.to_string());
        }
        self.runtime
            .block_on(self.jetstream.get_stream(name))
            .unwrap_or_else(|e| panic!("stream {name}: {e}"))
    }

    /// The messages in a stream; 0 while it does not exist.
    fn count(&mut self, name: &str) -> u64 {
        if !self.streams.iter().any(|s| s == name) {
            self.streams.push(name.to_string());
        }
        self.runtime
            .block_on(self.jetstream.get_stream(name))
            .map_or(0, |s| s.cached_info().state.messages)
    }

    /// Every message of a stream, in stream order: (Nats-Msg-Id, headers, subject, payload).
    fn messages(&mut self, name: &str) -> Vec<(String, async_nats::HeaderMap, String, Value)> {
        let stream = self.stream(name);
        let last = self.count(name);
        (1..=last)
            .map(|seq| {
                let m = self.runtime.block_on(stream.get_raw_message(seq)).unwrap();
                let headers = m.headers;
                let id = headers.get("Nats-Msg-Id").unwrap().as_str().to_string();
                (
                    id,
                    headers,
                    m.subject.to_string(),
                    serde_json::from_slice(&m.payload).unwrap(),
                )
            })
            .collect()
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        for name in &self.streams {
            let _ = self.runtime.block_on(self.jetstream.delete_stream(name));
        }
    }
}

fn nats_connector(env: &Env, id: &str, url: &str, subject: &str, extra: &str) {
    env.connector(
        id,
        &format!(
            "subscribe = [\"*.*\"]\n[sink]\ntype = \"nats\"\nurl = \"{url}\"\nsubject = \"{subject}\"\n{extra}"
        ),
    );
}

#[test]
fn nats_stores_each_event_once_with_its_message_id_in_key_order() {
    let Some(mut nats) = Nats::connect() else {
        return;
    };
    let Some(env) = env("batch_size = 50") else {
        return;
    };
    let s = suffix();
    let stream = format!("TRIGPOLL_{s}");
    nats_connector(
        &env,
        "js",
        &nats.url,
        &format!("tp{s}.{{object}}.{{verb}}"),
        &format!("stream = \"{stream}\""),
    );
    let total = changes(&env, 0, 5, 60);
    let run = env.run_ok(&["drain"], 0);
    assert!(
        stderr(&run).contains(&format!("{total} sent")),
        "{}",
        stderr(&run)
    );

    // The stream trigpoll created: file storage, the subject with wildcards, an hour's window.
    let info = nats.stream(&stream).cached_info().config.clone();
    assert_eq!(info.subjects, [format!("tp{s}.*.*")]);
    assert_eq!(
        info.storage,
        async_nats::jetstream::stream::StorageType::File
    );
    assert_eq!(info.duplicate_window, Duration::from_secs(3600));

    let messages = nats.messages(&stream);
    for (id, headers, subject, payload) in &messages {
        let header = |name: &str| headers.get(name).map(|v| v.as_str().to_string());
        assert_eq!(header("object").as_deref(), Some("Item"));
        assert_eq!(header("verb"), payload["verb"].as_str().map(str::to_string));
        assert_eq!(header("event_id"), Some(payload["event_id"].to_string()));
        assert_eq!(
            subject,
            &format!("tp{s}.Item.{}", payload["verb"].as_str().unwrap())
        );
        assert_eq!(id, payload["object_event_id"].as_str().unwrap());
    }
    let received: Vec<_> = messages.into_iter().map(|(id, _, _, p)| (id, p)).collect();
    assert_once_in_key_order("js", &received, total);
    assert!(archive_statuses(&env, "js").iter().all(|(s, _)| *s == 1));
}

/// The sink through the library: the same batch delivered twice (what a redelivery after a
/// crash does) is stored once, by its `Nats-Msg-Id`.
#[test]
fn nats_a_batch_delivered_again_is_stored_once() {
    use trigpoll::config::{ConnectorConfig, NatsSinkConfig, Secret, SinkConfig, Template};
    use trigpoll::connector::{Connector, Delivery, Outcome};
    let Some(mut nats) = Nats::connect() else {
        return;
    };
    let s = suffix();
    let stream = format!("TRIGPOLL_{s}");
    let mut connector = Connector::new(ConnectorConfig {
        id: "js".into(),
        subscribe: vec!["*.*".parse().unwrap()],
        sink: SinkConfig::Nats(NatsSinkConfig {
            url: Secret::new(nats.url.clone()),
            subject: Template::parse(&format!("tp{s}.{{object}}.{{verb}}")).unwrap(),
            stream: Some(stream.clone()),
            duplicate_window: Duration::from_secs(3600),
            timeout: Duration::from_secs(10),
            ca_file: None,
        }),
        max_attempts: 3,
        backoff: Duration::from_secs(1),
        source: "connectors/js.toml".into(),
    })
    .unwrap();
    let batch: Vec<Delivery> = (1..=300)
        .map(|event_id| Delivery {
            event_id,
            key: (event_id % 7) as usize,
            object: "Item".into(),
            verb: "Update".into(),
            object_event_id: format!("js_{event_id}"),
            body: format!(r#"{{"event_id":{event_id}}}"#),
        })
        .collect();
    assert!(connector
        .deliver(&batch)
        .iter()
        .all(|o| *o == Outcome::Sent));
    assert_eq!(nats.count(&stream), 300);
    assert!(connector
        .deliver(&batch)
        .iter()
        .all(|o| *o == Outcome::Sent));
    assert_eq!(nats.count(&stream), 300, "the second copies were dropped");
}

#[test]
fn nats_kill_9_mid_drain_then_drain_again_stores_each_event_once() {
    let Some(mut nats) = Nats::connect() else {
        return;
    };
    let Some(env) = env("batch_size = 100\nclaim_timeout = \"1s\"") else {
        return;
    };
    let s = suffix();
    let stream = format!("TRIGPOLL_{s}");
    nats_connector(
        &env,
        "js",
        &nats.url,
        &format!("tp{s}.{{object}}.{{verb}}"),
        &format!("stream = \"{stream}\""),
    );
    let total = changes(&env, 0, 100, 99);
    let mut drain = env.spawn(&["drain"]);
    let signal = |name: &str, pid: u32| {
        std::process::Command::new("kill")
            .args([name, &pid.to_string()])
            .status()
            .unwrap();
    };
    // Kill it mid-drain, at a moment when some events are in the stream and not archived yet:
    // frozen (SIGSTOP), what it published and what it archived hold still to be compared.
    let started = Instant::now();
    loop {
        assert!(
            drain.try_wait().unwrap().is_none(),
            "the drain finished before the kill"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no moment to kill"
        );
        if nats.count(&stream) >= 1_000 {
            signal("-STOP", drain.id());
            let stored = nats.count(&stream);
            let archived = env.db.count("SELECT count(*) FROM {archive}") as u64;
            if stored > archived {
                drain.kill().unwrap(); // SIGKILL
                drain.wait().unwrap();
                eprintln!("killed with {stored} events stored and {archived} archived");
                break;
            }
            signal("-CONT", drain.id());
        }
        std::thread::sleep(Duration::from_millis(3));
    }
    // What was published and not archived goes out again and must not be stored twice.
    std::thread::sleep(Duration::from_millis(1200)); // claims expire
    env.run_ok(&["drain"], 0);
    assert_eq!(env.db.count("SELECT count(*) FROM {events}"), 0);
    assert_eq!(nats.count(&stream), total as u64, "each event stored once");
    let ids: HashSet<String> = nats
        .messages(&stream)
        .into_iter()
        .map(|(id, ..)| id)
        .collect();
    assert_eq!(ids.len(), total);
}

#[test]
fn nats_makes_its_stream_again_when_it_was_deleted() {
    let Some(mut nats) = Nats::connect() else {
        return;
    };
    let Some(env) = env("") else {
        return;
    };
    let s = suffix();
    let stream = format!("TRIGPOLL_{s}");
    nats_connector(
        &env,
        "js",
        &nats.url,
        &format!("tp{s}.{{object}}"),
        &format!("stream = \"{stream}\"\nbackoff = \"10ms\""),
    );
    changes(&env, 0, 2, 0);
    // `poll` keeps its connection between batches, as the stream goes away.
    let mut poller = env.spawn(&["poll", "--interval", "100ms"]);
    let started = Instant::now();
    while nats.count(&stream) < 2 {
        assert!(started.elapsed() < Duration::from_secs(20), "not delivered");
        std::thread::sleep(Duration::from_millis(50));
    }
    nats.runtime
        .block_on(nats.jetstream.delete_stream(&stream))
        .unwrap();
    changes(&env, 10, 3, 0);
    while nats.count(&stream) < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not made again"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::process::Command::new("kill")
        .args(["-TERM", &poller.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(poller.wait().unwrap().code(), Some(0));
    assert_eq!(
        env.db
            .count("SELECT count(*) FROM {archive} WHERE event_status = 1"),
        5
    );
}

/// `check --database` warns (exit 0: deliveries work) when a connector's stream exists with a
/// duplicate window shorter than the connector's, and creates nothing for one that does not
/// exist.
#[test]
fn check_warns_about_a_stream_whose_duplicate_window_is_too_short() {
    let Some(mut nats) = Nats::connect() else {
        return;
    };
    let Some(env) = env("") else {
        return;
    };
    let s = suffix();
    let (short, absent) = (format!("TRIGPOLL_SHORT_{s}"), format!("TRIGPOLL_NONE_{s}"));
    nats.streams.extend([short.clone(), absent.clone()]);
    nats.runtime
        .block_on(
            nats.jetstream
                .create_stream(async_nats::jetstream::stream::Config {
                    name: short.clone(),
                    subjects: vec![format!("short{s}.>")],
                    duplicate_window: Duration::from_secs(1),
                    ..Default::default()
                }),
        )
        .unwrap();
    nats_connector(
        &env,
        "short",
        &nats.url,
        &format!("short{s}.{{object}}"),
        &format!("stream = \"{short}\""),
    );
    nats_connector(
        &env,
        "absent",
        &nats.url,
        &format!("none{s}.{{object}}"),
        &format!("stream = \"{absent}\""),
    );
    let out = env.run_ok(&["check", "--database"], 0);
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "connector      short: warning: stream {short}: the stream's duplicate window (1s) is shorter than 3600s"
        )),
        "{text}"
    );
    assert!(!text.contains("absent: warning"), "{text}");
    let exists = nats.runtime.block_on(nats.jetstream.get_stream(&absent));
    assert!(exists.is_err(), "check created stream {absent}");
}

#[test]
fn nats_without_a_stream_for_the_subject_retries_then_fails() {
    let Some(nats) = Nats::connect() else {
        return;
    };
    let Some(env) = env("") else {
        return;
    };
    let s = suffix();
    nats_connector(
        &env,
        "js",
        &nats.url,
        &format!("nostream{s}.{{object}}"),
        "max_attempts = 2\nbackoff = \"10ms\"",
    );
    let out = env.file_connector("out");
    changes(&env, 0, 3, 0);
    let run = env.run_ok(&["drain", "--wait"], 3);
    assert!(stderr(&run).contains("3 failed"), "{}", stderr(&run));
    let rows = archive_statuses(&env, "js");
    assert_eq!(rows.len(), 3);
    for (status, reason) in rows {
        assert_eq!(status, -2);
        assert!(reason.contains("no stream captures subject"), "{reason}");
    }
    assert_eq!(lines(&out).len(), 3);
}

// -------------------------------------------------------------------------------------------
// AMQP (RabbitMQ)

struct Amqp {
    url: String,
    runtime: tokio::runtime::Runtime,
    channel: lapin::Channel,
    _connection: lapin::Connection,
    exchanges: Vec<String>,
    queues: Vec<String>,
}

impl Amqp {
    fn connect() -> Option<Amqp> {
        let url = std::env::var("TRIGPOLL_TEST_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
        let runtime = runtime();
        let connected = runtime.block_on(async {
            let connect = lapin::Connection::connect(&url, lapin::ConnectionProperties::default());
            let connection = tokio::time::timeout(Duration::from_secs(5), connect)
                .await
                .map_err(|_| "no answer within 5s".to_string())?
                .map_err(|e| e.to_string())?;
            let channel = connection
                .create_channel()
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((connection, channel))
        });
        let (connection, channel) = match connected {
            Ok(c) => c,
            Err(e) => return unreachable("RabbitMQ at TRIGPOLL_TEST_AMQP_URL", e),
        };
        Some(Amqp {
            url,
            runtime,
            channel,
            _connection: connection,
            exchanges: Vec::new(),
            queues: Vec::new(),
        })
    }

    /// Whether the exchange exists (a passive declare, on a channel of its own: a failed one
    /// closes it).
    fn exchange_exists(&self, name: &str) -> bool {
        self.runtime.block_on(async {
            let channel = self._connection.create_channel().await.unwrap();
            let options = lapin::options::ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            };
            channel
                .exchange_declare(
                    name.into(),
                    lapin::ExchangeKind::Topic,
                    options,
                    Default::default(),
                )
                .await
                .is_ok()
        })
    }

    /// A queue bound to the exchange for every routing key.
    fn bind_queue(&mut self, exchange: &str) -> String {
        let queue = format!("{exchange}_q");
        self.queues.push(queue.clone());
        self.runtime.block_on(async {
            self.channel
                .queue_declare(
                    queue.as_str().into(),
                    Default::default(),
                    Default::default(),
                )
                .await
                .unwrap();
            self.channel
                .queue_bind(
                    queue.as_str().into(),
                    exchange.into(),
                    "#".into(),
                    Default::default(),
                    Default::default(),
                )
                .await
                .unwrap();
        });
        queue
    }

    /// Every message of a queue, in queue order, taken off it.
    fn take_all(&self, queue: &str) -> Vec<lapin::message::BasicGetMessage> {
        let mut messages = Vec::new();
        self.runtime.block_on(async {
            let options = lapin::options::BasicGetOptions { no_ack: true };
            while let Some(m) = self.channel.basic_get(queue.into(), options).await.unwrap() {
                messages.push(m);
            }
        });
        messages
    }
}

impl Drop for Amqp {
    fn drop(&mut self) {
        self.runtime.block_on(async {
            for queue in &self.queues {
                let _ = self
                    .channel
                    .queue_delete(queue.as_str().into(), Default::default())
                    .await;
            }
            for exchange in &self.exchanges {
                let _ = self
                    .channel
                    .exchange_delete(exchange.as_str().into(), Default::default())
                    .await;
            }
        });
    }
}

#[test]
fn amqp_declares_its_exchange_retries_unroutable_messages_then_delivers_once_in_key_order() {
    let Some(mut amqp) = Amqp::connect() else {
        return;
    };
    let Some(env) = env("batch_size = 40") else {
        return;
    };
    let exchange = format!("trigpoll_{}", suffix());
    amqp.exchanges.push(exchange.clone());
    assert!(!amqp.exchange_exists(&exchange));
    env.connector(
        "mq",
        &format!(
            "subscribe = [\"*.*\"]\n[sink]\ntype = \"amqp\"\nurl = \"{}\"\nexchange = \"{exchange}\"\n\
             routing_key = \"trigpoll.{{object}}.{{verb}}\"\nbackoff = \"10ms\"",
            amqp.url
        ),
    );
    let total = changes(&env, 0, 4, 30);

    // No queue is bound yet: the broker returns every message, which is retried, not sent.
    let first = env.run_ok(&["drain"], 0);
    assert!(stderr(&first).contains("0 sent"), "{}", stderr(&first));
    assert!(amqp.exchange_exists(&exchange), "declared when missing");
    let waiting = env
        .db
        .query("SELECT event_description FROM {events} WHERE attempts > 0 ORDER BY event_id");
    assert_eq!(waiting.len(), 4, "one event per key was tried: {waiting:?}");
    for row in &waiting {
        let reason = row[0].as_deref().unwrap_or_default();
        assert!(reason.contains("no queue is bound"), "{reason}");
        assert!(reason.contains("NO_ROUTE"), "{reason}");
    }

    let queue = amqp.bind_queue(&exchange);
    let run = env.run_ok(&["drain", "--wait"], 0);
    assert!(
        stderr(&run).contains(&format!("{total} sent")),
        "{}",
        stderr(&run)
    );
    let messages = amqp.take_all(&queue);
    let mut received = Vec::new();
    for m in &messages {
        let p = &m.delivery.properties;
        let payload: Value = serde_json::from_slice(&m.delivery.data).unwrap();
        assert_eq!(p.delivery_mode(), &Some(2), "persistent");
        assert_eq!(
            p.content_type().as_ref().map(|c| c.as_str()),
            Some("application/json")
        );
        let headers = p.headers().as_ref().unwrap().inner();
        let text = |name: &str| match headers.get(name) {
            Some(lapin::types::AMQPValue::LongString(s)) => s.to_string(),
            other => panic!("header {name}: {other:?}"),
        };
        assert_eq!(text("object"), "Item");
        assert_eq!(text("verb"), payload["verb"].as_str().unwrap());
        assert_eq!(
            headers.get("event_id"),
            Some(&lapin::types::AMQPValue::LongLongInt(
                payload["event_id"].as_i64().unwrap()
            ))
        );
        assert_eq!(
            m.delivery.routing_key.as_str(),
            format!("trigpoll.Item.{}", payload["verb"].as_str().unwrap())
        );
        let id = p.message_id().as_ref().unwrap().to_string();
        received.push((id, payload));
    }
    assert_once_in_key_order("mq", &received, total);
}

// -------------------------------------------------------------------------------------------
// Redis Streams

struct Redis {
    url: String,
    connection: redis::Connection,
    keys: Vec<String>,
}

impl Redis {
    fn connect() -> Option<Redis> {
        let url = std::env::var("TRIGPOLL_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
        let connected = redis::Client::open(url.as_str())
            .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(3)));
        match connected {
            Ok(connection) => Some(Redis {
                url,
                connection,
                keys: Vec::new(),
            }),
            Err(e) => unreachable("Redis at TRIGPOLL_TEST_REDIS_URL", e),
        }
    }

    /// The entries of a stream, in stream order, as field maps.
    fn entries(&mut self, key: &str) -> Vec<BTreeMap<String, String>> {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(key)
            .arg("-")
            .arg("+")
            .query(&mut self.connection)
            .unwrap();
        reply
            .ids
            .into_iter()
            .map(|entry| {
                entry
                    .map
                    .into_iter()
                    .map(|(k, v)| (k, redis::from_redis_value(v).unwrap()))
                    .collect()
            })
            .collect()
    }

    fn len(&mut self, key: &str) -> usize {
        redis::cmd("XLEN")
            .arg(key)
            .query(&mut self.connection)
            .unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        for key in &self.keys {
            let _: Result<(), _> = redis::cmd("DEL").arg(key).query(&mut self.connection);
        }
    }
}

fn redis_connector(env: &Env, id: &str, url: &str, stream: &str, extra: &str) {
    env.connector(
        id,
        &format!(
            "subscribe = [\"*.*\"]\n[sink]\ntype = \"redis\"\nurl = \"{url}\"\nstream = \"{stream}\"\n{extra}"
        ),
    );
}

#[test]
fn redis_appends_each_event_once_in_key_order_and_trims() {
    let Some(mut redis) = Redis::connect() else {
        return;
    };
    let Some(env) = env("batch_size = 70") else {
        return;
    };
    let s = suffix();
    let key = format!("trigpoll:{s}:Item");
    let trimmed = format!("trigpoll:{s}:trimmed:Item");
    redis.keys.extend([key.clone(), trimmed.clone()]);
    redis_connector(
        &env,
        "rs",
        &redis.url,
        &format!("trigpoll:{s}:{{object}}"),
        "",
    );
    redis_connector(
        &env,
        "short",
        &redis.url,
        &format!("trigpoll:{s}:trimmed:{{object}}"),
        "maxlen = 10",
    );
    let total = changes(&env, 0, 6, 80);
    let run = env.run_ok(&["drain"], 0);
    assert!(
        stderr(&run).contains(&format!("{} sent", total * 2)),
        "{}",
        stderr(&run)
    );
    let entries = redis.entries(&key);
    let mut received = Vec::new();
    for fields in entries {
        let payload: Value = serde_json::from_str(&fields["payload"]).unwrap();
        assert_eq!(fields["object"], "Item");
        assert_eq!(fields["verb"], payload["verb"].as_str().unwrap());
        assert_eq!(fields["event_id"], payload["event_id"].to_string());
        received.push((fields["object_event_id"].clone(), payload));
    }
    assert_once_in_key_order("rs", &received, total);
    // Approximate trimming keeps whole nodes: fewer entries than written, at least `maxlen`.
    let kept = redis.len(&trimmed);
    assert!((10..total).contains(&kept), "{kept} of {total} kept");
}

/// A command Redis refuses (the key holds a string, not a stream) retries that key's event;
/// the other stream is written.
#[test]
fn redis_an_error_answer_retries_its_key_and_not_the_others() {
    let Some(mut redis) = Redis::connect() else {
        return;
    };
    let Some(env) = env("") else {
        return;
    };
    env.db.execute("CREATE TABLE other (id int PRIMARY KEY);");
    env.config(
        "",
        &format!("{OBJECTS}\n[[object]]\nname = \"Other\"\ntable = \"other\"\n"),
    );
    env.run_ok(&["install-triggers"], 0);
    let s = suffix();
    let (item, other) = (format!("tp:{s}:Item"), format!("tp:{s}:Other"));
    redis.keys.extend([item.clone(), other.clone()]);
    let _: () = redis::cmd("SET")
        .arg(&item)
        .arg("not a stream")
        .query(&mut redis.connection)
        .unwrap();
    redis_connector(
        &env,
        "rs",
        &redis.url,
        &format!("tp:{s}:{{object}}"),
        "max_attempts = 2\nbackoff = \"10ms\"",
    );
    changes(&env, 0, 1, 2);
    env.db.execute("INSERT INTO other VALUES (1), (2)");
    let run = env.run_ok(&["drain", "--wait"], 3);
    assert!(stderr(&run).contains("2 sent"), "{}", stderr(&run));
    let rows = archive_statuses(&env, "rs");
    let failed: Vec<_> = rows.iter().filter(|(s, _)| *s == -2).collect();
    assert_eq!(failed.len(), 3, "{rows:?}");
    assert!(failed[0].1.contains("WRONGTYPE"), "{}", failed[0].1);
    assert_eq!(redis.len(&other), 2);
}

// -------------------------------------------------------------------------------------------
// All of them

/// Brokers that are down: every event fails after its retries, the file connector beside them
/// gets everything, and the credentials in the URLs show nowhere.
#[test]
fn brokers_that_are_down_fail_after_retries_while_a_file_connector_gets_everything() {
    let Some(env) = env("") else {
        return;
    };
    let retries = "max_attempts = 3\nbackoff = \"10ms\"\ntimeout = \"2s\"";
    let password = "pw-8c1e5a";
    let (nats, amqp, redis) = (ClosedPort::new(), ClosedPort::new(), ClosedPort::new());
    nats_connector(
        &env,
        "js",
        &format!("nats://app:{password}@127.0.0.1:{}", nats.port()),
        "tp.{object}",
        &format!("stream = \"TP\"\n{retries}"),
    );
    env.connector(
        "mq",
        &format!(
            "subscribe = [\"*.*\"]\n[sink]\ntype = \"amqp\"\n\
             url = \"amqp://app:{password}@127.0.0.1:{}/%2f\"\nexchange = \"x\"\n{retries}",
            amqp.port()
        ),
    );
    redis_connector(
        &env,
        "rs",
        &format!("redis://app:{password}@127.0.0.1:{}/0", redis.port()),
        "tp:{object}",
        retries,
    );
    let out = env.file_connector("out");
    let total = changes(&env, 0, 3, 4);
    // The most verbose logging trigpoll has, without RUST_LOG narrowing it.
    let run = env
        .command(&["-vv", "drain", "--wait"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(3), "{}", stderr(&run));
    let log = stderr(&run);
    assert!(log.contains(&format!("{total} sent")), "{log}");
    assert!(!log.contains(password), "{log}");
    assert_eq!(lines(&out).len(), total);
    for connector in ["js", "mq", "rs"] {
        let rows = archive_statuses(&env, connector);
        assert_eq!(rows.len(), total, "{connector}");
        for (status, reason) in rows {
            assert_eq!(status, -2, "{connector}: {reason}");
            assert!(!reason.contains(password), "{reason}");
        }
    }
    // Each key's first event was tried max_attempts times; the rest waited behind it.
    let attempts = env
        .db
        .query("SELECT max(attempts) FROM {archive} WHERE connector_id = 'mq'");
    assert_eq!(attempts[0][0].as_deref(), Some("3"));
    let reasons = env.db.query(
        "SELECT event_description FROM {archive} WHERE connector_id = 'rs' AND attempts = 3",
    );
    assert!(
        reasons.iter().all(|r| r[0]
            .as_deref()
            .unwrap_or_default()
            .contains("cannot connect")),
        "{reasons:?}"
    );
}

/// A poller told to stop gives up brokers that accept a connection and never answer.
#[test]
fn sigterm_gives_up_brokers_that_never_answer() {
    let Some(env) = env("") else {
        return;
    };
    // Servers that accept connections and say nothing.
    let silent: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let port = |i: usize| silent[i].local_addr().unwrap().port();
    let slow = "timeout = \"5m\"";
    nats_connector(
        &env,
        "js",
        &format!("nats://127.0.0.1:{}", port(0)),
        "tp.{object}",
        slow,
    );
    env.connector(
        "mq",
        &format!(
            "subscribe = [\"*.*\"]\n[sink]\ntype = \"amqp\"\nurl = \"amqp://127.0.0.1:{}/%2f\"\n\
             exchange = \"x\"\n{slow}",
            port(1)
        ),
    );
    redis_connector(
        &env,
        "rs",
        &format!("redis://127.0.0.1:{}/0", port(2)),
        "tp:{object}",
        slow,
    );
    changes(&env, 0, 1, 0);
    let mut drain = env.spawn(&["drain"]);
    silent[0].set_nonblocking(false).unwrap();
    let _held = silent[0].accept().unwrap();
    let signalled = Instant::now();
    std::process::Command::new("kill")
        .args(["-TERM", &drain.id().to_string()])
        .status()
        .unwrap();
    while drain.try_wait().unwrap().is_none() {
        assert!(
            signalled.elapsed() < Duration::from_secs(20),
            "drain did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(drain.wait().unwrap().code(), Some(0));
    assert!(
        signalled.elapsed() < Duration::from_secs(15),
        "{:?}",
        signalled.elapsed()
    );
    // Given back, not failed: the event waits for the next run with no attempt counted.
    assert_eq!(env.db.count("SELECT count(*) FROM {archive}"), 0);
    assert_eq!(
        env.db
            .query("SELECT event_status, attempts, claimed_by FROM {events}"),
        [vec![Some("0".to_string()), Some("0".to_string()), None]]
    );
}

/// Configuration mistakes stop trigpoll before anything is contacted: exit 2, naming the file,
/// line and key, and never the credentials.
#[test]
fn broker_configuration_errors_exit_2_naming_file_line_and_key() {
    let Some(env) = env("") else {
        return;
    };
    let cases = [
        (
            "subject = \"trigpoll.{object}.{action}\"\nurl = \"nats://app:pw-3f1@127.0.0.1:1\"",
            "nats",
            "connectors/c.toml:5:11: sink.subject: unknown placeholder {action}",
        ),
        (
            "url = \"http://app:pw-3f1@127.0.0.1:1\"\nexchange = \"x\"",
            "amqp",
            "connectors/c.toml:5:7: sink.url: must start with amqp:// or amqps://",
        ),
        (
            "url = \"\"\nstream = \"s\"",
            "redis",
            "connectors/c.toml:5:7: sink.url: must not be empty",
        ),
    ];
    for (keys, kind, expected) in cases {
        env.connector(
            "c",
            &format!("subscribe = [\"*.*\"]\n[sink]\ntype = \"{kind}\"\n{keys}"),
        );
        let run = env.run_ok(&["drain"], 2);
        let message = stderr(&run);
        assert!(message.contains(expected), "{message}");
        assert!(!message.contains("pw-3f1"), "{message}");
    }
}

/// A verb a rule chose travels as any other through every broker and stdout: in NATS subjects
/// and headers, AMQP routing keys and headers, Redis stream keys and fields, each connector
/// getting what it subscribes to, with the rule's comment and the delete's image.
#[test]
fn a_rules_verb_and_comment_reach_every_broker() {
    let (Some(mut nats), Some(mut amqp), Some(mut redis)) =
        (Nats::connect(), Amqp::connect(), Redis::connect())
    else {
        return;
    };
    let Some(env) = Env::new(Backend::Sqlite) else {
        return;
    };
    env.db
        .execute("CREATE TABLE item (id int PRIMARY KEY, name {text} NOT NULL)");
    env.config(
        "",
        &format!(
            "{OBJECTS}[[object.rule]]\non = \"delete\"\nwhen = \"OLD.name = 'old'\"\nverb = \"Retire\"\ncomment = \"retired\"\n"
        ),
    );
    env.run_ok(&["install-triggers"], 0);
    let s = suffix();
    let stream = format!("TRIGPOLL_{s}");
    env.connector(
        "js",
        &format!(
            "subscribe = [\"Item.Retire\"]\n[sink]\ntype = \"nats\"\nurl = \"{}\"\n\
             subject = \"tp{s}.{{object}}.{{verb}}\"\nstream = \"{stream}\"",
            nats.url
        ),
    );
    let exchange = format!("trigpoll_{s}");
    amqp.exchanges.push(exchange.clone());
    env.connector(
        "mq",
        &format!(
            "subscribe = [\"*.Retire\"]\n[sink]\ntype = \"amqp\"\nurl = \"{}\"\nexchange = \"{exchange}\"\n\
             routing_key = \"trigpoll.{{object}}.{{verb}}\"",
            amqp.url
        ),
    );
    redis_connector(
        &env,
        "rs",
        &redis.url,
        &format!("trigpoll:{s}:{{verb}}"),
        "",
    );
    redis
        .keys
        .extend(["Create", "Update", "Retire"].map(|v| format!("trigpoll:{s}:{v}")));
    env.connector(
        "out",
        "subscribe = [\"Item.Retire\"]\n[sink]\ntype = \"stdout\"",
    );
    // The exchange as trigpoll declares it, with a queue bound for every routing key.
    amqp.runtime.block_on(async {
        let options = lapin::options::ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        amqp.channel
            .exchange_declare(
                exchange.as_str().into(),
                lapin::ExchangeKind::Topic,
                options,
                Default::default(),
            )
            .await
            .unwrap();
    });
    let queue = amqp.bind_queue(&exchange);
    env.db
        .execute("INSERT INTO item VALUES (1, 'old'), (2, 'new')");
    env.run_ok(&["drain"], 0);
    env.db.execute(
        "DELETE FROM item WHERE id = 1;
         UPDATE item SET name = 'newer' WHERE id = 2",
    );
    let run = env.run_ok(&["drain"], 0);
    let retired = |payload: &Value| {
        assert_eq!(payload["verb"], "Retire");
        assert_eq!(payload["comment"], "retired");
        assert_eq!(
            payload["attributes"],
            serde_json::json!({"id": 1, "name": "old"})
        );
    };
    let printed: Vec<Value> = stdout(&run)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(printed.len(), 1, "{printed:?}");
    retired(&printed[0]);

    let messages = nats.messages(&stream);
    assert_eq!(messages.len(), 1);
    let (_, headers, subject, payload) = &messages[0];
    assert_eq!(subject, &format!("tp{s}.Item.Retire"));
    assert_eq!(headers.get("verb").map(|v| v.as_str()), Some("Retire"));
    retired(payload);

    let messages = amqp.take_all(&queue);
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].delivery.routing_key.as_str(),
        "trigpoll.Item.Retire"
    );
    let headers = messages[0]
        .delivery
        .properties
        .headers()
        .as_ref()
        .unwrap()
        .inner();
    assert!(
        matches!(headers.get("verb"), Some(lapin::types::AMQPValue::LongString(v)) if v.to_string() == "Retire")
    );
    retired(&serde_json::from_slice(&messages[0].delivery.data).unwrap());

    let counts: Vec<usize> = ["Create", "Update", "Retire"]
        .iter()
        .map(|v| redis.len(&format!("trigpoll:{s}:{v}")))
        .collect();
    assert_eq!(counts, [2, 1, 1]);
    let entry = redis.entries(&format!("trigpoll:{s}:Retire")).remove(0);
    assert_eq!(entry["verb"], "Retire");
    retired(&serde_json::from_str(&entry["payload"]).unwrap());
}

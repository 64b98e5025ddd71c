//! TLS to receivers and brokers: an `https://` webhook, `amqps://` RabbitMQ, `rediss://` Redis
//! and NATS over TLS trust the system's certificate store (pointed at a throwaway certificate
//! authority here with `SSL_CERT_FILE`, as the system's TLS libraries read it), or only the
//! authorities of their `ca_file`. The webhook receiver, RabbitMQ and Redis are the real ones of
//! the other tests behind a TLS front; NATS is a `nats-server` with TLS started by the test.
//!
//! Events come from SQLite through the real binary. A test that cannot reach its broker fails
//! under `CI=true` and is skipped otherwise.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::receiver::Receiver;
use common::tls::{TestCa, TlsFront};
use common::{stderr, unreachable, Backend, Env};

/// An SQLite database with the table `item` bound to the object `Item`, triggers installed.
fn env() -> Option<Env> {
    let env = Env::new(Backend::Sqlite)?;
    env.db
        .execute("CREATE TABLE item (id int PRIMARY KEY, name text NOT NULL)");
    env.config("", "[[object]]\nname = \"Item\"\ntable = \"item\"\n");
    env.run_ok(&["install-triggers"], 0);
    Some(env)
}

/// The connector `out`, subscribed to everything and tried once; `sink` is its `[sink]` table.
fn connector(env: &Env, sink: &str) {
    env.connector(
        "out",
        &format!("subscribe = [\"*.*\"]\n[sink]\nmax_attempts = 1\n{sink}"),
    );
}

/// A `ca_file` line naming `ca`.
fn ca_file(ca: &Path) -> String {
    format!("ca_file = \"{}\"", ca.display())
}

/// Makes one event and drains it with the system's certificate store replaced by the
/// authorities of `system`: whether it was sent, and what drain said.
fn deliver_one(env: &Env, system: &Path) -> (bool, String) {
    let id = env.db.count("SELECT coalesce(max(id), 0) + 1 FROM item");
    env.db
        .execute(&format!("INSERT INTO item VALUES ({id}, 'x')"));
    let out: Output = env
        .command(&["drain"])
        .env("SSL_CERT_FILE", system)
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    let said = stderr(&out);
    match out.status.code() {
        Some(0) => {
            assert!(said.contains(": 1 sent,"), "{said}");
            (true, said)
        }
        Some(3) => {
            let reason = env
                .db
                .scalar(
                    "SELECT event_description FROM {archive} WHERE event_id = \
                     (SELECT max(event_id) FROM {archive})",
                )
                .unwrap_or_default();
            (false, format!("{said}\narchived: {reason}"))
        }
        code => panic!("drain exited {code:?}: {said}"),
    }
}

/// The four cases: trusted through the system's store, refused when neither the store nor a
/// `ca_file` vouches for the server, trusted through `ca_file`, and `ca_file` in place of the
/// store, not beside it. The server's certificate is signed by `ca`.
fn trusts_the_system_store_or_its_ca_file(env: &Env, sink: &str, ca: &TestCa) {
    let other = TestCa::new();
    connector(env, sink);
    let (sent, said) = deliver_one(env, &ca.ca);
    assert!(sent, "the system's store vouches for the server: {said}");
    let (sent, said) = deliver_one(env, &other.ca);
    assert!(!sent, "nobody vouches for the server");
    assert!(
        said.contains("invalid peer certificate: UnknownIssuer"),
        "{said}"
    );
    connector(env, &format!("{sink}\n{}", ca_file(&ca.ca)));
    let (sent, said) = deliver_one(env, &other.ca);
    assert!(sent, "ca_file vouches for the server: {said}");
    connector(env, &format!("{sink}\n{}", ca_file(&other.ca)));
    let (sent, _) = deliver_one(env, &ca.ca);
    assert!(!sent, "ca_file replaces the system's store");
}

#[test]
fn https_webhooks_trust_the_system_store_or_their_ca_file() {
    let Some(env) = env() else {
        return;
    };
    let receiver = Receiver::start(|_| (200, None));
    let ca = TestCa::new();
    let front = TlsFront::start(receiver.addr(), &ca);
    let sink = format!(
        "type = \"http\"\nurl = \"https://localhost:{}/events\"\nsecret = \"k\"",
        front.port
    );
    trusts_the_system_store_or_its_ca_file(&env, &sink, &ca);
    // Delivered in the two cases that trusted the receiver; a refused handshake never reached it.
    assert_eq!(receiver.requests().len(), 2);
}

/// A broker URL with another scheme, reached at `localhost:port` (the name in the test
/// certificate), credentials and path kept.
fn through(url: &str, scheme: &str, port: u16) -> String {
    let mut parsed = url::Url::parse(url).unwrap();
    parsed.set_host(Some("localhost")).unwrap();
    parsed.set_port(Some(port)).unwrap();
    let rest = parsed.as_str().split_once("://").unwrap().1.to_string();
    format!("{scheme}://{rest}")
}

/// Where a broker URL's server listens.
fn upstream(url: &str) -> SocketAddr {
    url::Url::parse(url).unwrap().socket_addrs(|| None).unwrap()[0]
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

#[test]
fn amqps_brokers_trust_the_system_store_or_their_ca_file() {
    let url = std::env::var("TRIGPOLL_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let runtime = runtime();
    let exchange = format!("trigpoll_tls_{}", suffix());
    let queue = format!("{exchange}_q");
    // An exchange and a bound queue, so that a published message is routed (and confirmed).
    let prepared = runtime.block_on(async {
        let connection = lapin::Connection::connect(&url, Default::default())
            .await
            .map_err(|e| e.to_string())?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| e.to_string())?;
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
        channel
            .queue_declare(
                queue.as_str().into(),
                Default::default(),
                Default::default(),
            )
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
    });
    let (_connection, channel) = match prepared {
        Ok(c) => c,
        Err(e) => {
            unreachable::<()>("RabbitMQ at TRIGPOLL_TEST_AMQP_URL", e);
            return;
        }
    };
    let Some(env) = env() else {
        return;
    };
    let ca = TestCa::new();
    let front = TlsFront::start(upstream(&url), &ca);
    let sink = format!(
        "type = \"amqp\"\nurl = \"{}\"\nexchange = \"{exchange}\"",
        through(&url, "amqps", front.port)
    );
    trusts_the_system_store_or_its_ca_file(&env, &sink, &ca);
    let count = runtime.block_on(async {
        let options = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let declared = channel
            .queue_declare(queue.as_str().into(), options, Default::default())
            .await
            .unwrap();
        let _ = channel
            .queue_delete(queue.as_str().into(), Default::default())
            .await;
        let _ = channel
            .exchange_delete(exchange.as_str().into(), Default::default())
            .await;
        declared.message_count()
    });
    assert_eq!(count, 2);
}

#[test]
fn rediss_servers_trust_the_system_store_or_their_ca_file() {
    let url = std::env::var("TRIGPOLL_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let connected = redis::Client::open(url.as_str())
        .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(3)));
    let mut redis = match connected {
        Ok(connection) => connection,
        Err(e) => {
            unreachable::<()>("Redis at TRIGPOLL_TEST_REDIS_URL", e);
            return;
        }
    };
    let Some(env) = env() else {
        return;
    };
    let ca = TestCa::new();
    let front = TlsFront::start(upstream(&url), &ca);
    let stream = format!("trigpoll:tls:{}", suffix());
    let sink = format!(
        "type = \"redis\"\nurl = \"{}\"\nstream = \"{stream}\"",
        through(&url, "rediss", front.port)
    );
    trusts_the_system_store_or_its_ca_file(&env, &sink, &ca);
    let entries: usize = redis::cmd("XLEN").arg(&stream).query(&mut redis).unwrap();
    let _: Result<(), _> = redis::cmd("DEL").arg(&stream).query(&mut redis);
    assert_eq!(entries, 2);
}

/// A `nats-server` with TLS and JetStream on a port of its own, killed when the test ends.
struct NatsServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    fn start(ca: &TestCa) -> Option<NatsServer> {
        let dir = tempfile::tempdir().unwrap();
        let port = common::free_port();
        let spawned = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.path())
            .arg("--tls")
            .arg("--tlscert")
            .arg(&ca.cert)
            .arg("--tlskey")
            .arg(&ca.key)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) => return unreachable("nats-server (from the nats-server package)", e),
        };
        let server = NatsServer {
            child,
            port,
            _dir: dir,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn nats_over_tls_trusts_the_system_store_or_its_ca_file() {
    let Some(env) = env() else {
        return;
    };
    let ca = TestCa::new();
    let Some(server) = NatsServer::start(&ca) else {
        return;
    };
    let sink = format!(
        "type = \"nats\"\nurl = \"tls://localhost:{}\"\nsubject = \"tls.{{object}}\"\nstream = \"TLS\"",
        server.port
    );
    trusts_the_system_store_or_its_ca_file(&env, &sink, &ca);
}

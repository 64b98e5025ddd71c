//! The HTTP connector against a real HTTP server (tiny_http on 127.0.0.1).

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tiny_http::{Header, Response, ResponseBox, Server};
use trigpoll::config::{ConnectorConfig, HttpSinkConfig, Secret, Signature, SinkConfig};
use trigpoll::connector::{sign, Connector, Delivery, Outcome};

const SECRET: &str = "test-secret-Ω";

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Handler = dyn Fn(&Received) -> ResponseBox + Send + Sync;

/// A real HTTP server on an ephemeral port, answering with `handler` on `threads` threads.
struct TestServer {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl TestServer {
    fn start(
        threads: usize,
        handler: impl Fn(&Received) -> ResponseBox + Send + Sync + 'static,
    ) -> Self {
        let server = Arc::new(Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let handler: Arc<Handler> = Arc::new(handler);
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let (server, handler, received, stop) = (
                    server.clone(),
                    handler.clone(),
                    received.clone(),
                    stop.clone(),
                );
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let Ok(Some(mut request)) = server.recv_timeout(Duration::from_millis(20))
                        else {
                            continue;
                        };
                        let mut body = String::new();
                        request.as_reader().read_to_string(&mut body).unwrap();
                        let seen = Received {
                            method: request.method().to_string(),
                            headers: request
                                .headers()
                                .iter()
                                .map(|h| (h.field.to_string(), h.value.to_string()))
                                .collect(),
                            body,
                        };
                        let response = handler(&seen);
                        received.lock().unwrap().push(seen);
                        // The client may have given up already (timeout test).
                        let _ = request.respond(response);
                    }
                })
            })
            .collect();
        TestServer {
            url: format!("http://127.0.0.1:{port}/events"),
            received,
            stop,
            threads,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn respond(status: u16, body: &str) -> ResponseBox {
    Response::from_string(body).with_status_code(status).boxed()
}

fn connector(url: &str, timeout: Duration, concurrency: usize) -> Connector {
    Connector::new(ConnectorConfig {
        id: "hook".into(),
        subscribe: vec!["*".parse().unwrap()],
        sink: SinkConfig::Http(HttpSinkConfig {
            url: url.into(),
            client_id: "trigpoll-test".into(),
            secrets: vec![Secret::new(SECRET)],
            signature: Signature::Trigpoll,
            timeout,
            concurrency,
            batch_size: 1,
            ca_file: None,
        }),
        max_attempts: 3,
        backoff: Duration::from_secs(1),
        source: "connectors/hook.toml".into(),
    })
    .unwrap()
}

fn delivery(event_id: i64) -> Delivery {
    Delivery {
        event_id,
        key: event_id as usize,
        object: "Employee".into(),
        verb: "Update".into(),
        object_event_id: format!("hook_{event_id}"),
        body: format!(
            r#"{{"object_event_id":"hook_{event_id}","event_id":{event_id},"object":"Employee","verb":"Update","attributes":{{"name":"Zoë"}}}}"#
        ),
    }
}

fn expect_retry(outcome: &Outcome) -> (&str, Option<Duration>) {
    match outcome {
        Outcome::Retry { reason, after } => (reason, *after),
        other => panic!("expected a retry, got {other:?}"),
    }
}

fn expect_reject(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Reject { reason } => reason,
        other => panic!("expected a reject, got {other:?}"),
    }
}

#[test]
fn ok_is_sent_signed_with_all_headers() {
    let server = TestServer::start(1, |_| respond(200, "thanks"));
    let mut c = connector(&server.url, Duration::from_secs(5), 1);
    let batch = [delivery(7)];

    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(c.deliver(&batch), vec![Outcome::Sent]);
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();

    let received = server.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.body, batch[0].body);
    assert_eq!(request.header("Content-Type"), Some("application/json"));
    assert_eq!(
        request.header("X-Trigpoll-Client-Id"),
        Some("trigpoll-test")
    );
    assert_eq!(request.header("X-Trigpoll-Event-Id"), Some("hook_7"));

    let timestamp = request.header("X-Trigpoll-Timestamp").unwrap();
    let seconds: u64 = timestamp.parse().unwrap();
    assert!(
        (before..=after).contains(&seconds),
        "{seconds} not in {before}..={after}"
    );

    // Verify the way a receiver would, without the crate's own `sign`.
    let signature = request.header("X-Trigpoll-Signature").unwrap();
    let hex_mac = signature.strip_prefix("v1=").expect("v1= prefix");
    assert_eq!(hex_mac, hex_mac.to_lowercase());
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{}", request.body).as_bytes());
    mac.verify_slice(&hex::decode(hex_mac).unwrap())
        .expect("signature verifies");
    assert_eq!(signature, sign(SECRET, timestamp, &request.body));

    // The secret travels nowhere in the clear.
    for (name, value) in &request.headers {
        assert!(!value.contains(SECRET), "secret in header {name}");
    }
}

#[test]
fn statuses_are_classified() {
    let server = TestServer::start(1, |r| {
        let status: u16 = r.header("X-Trigpoll-Event-Id").unwrap()["hook_".len()..]
            .parse()
            .unwrap();
        let mut response =
            Response::from_string(format!("status {status}")).with_status_code(status);
        if status == 301 {
            response.add_header(
                Header::from_bytes(&b"Location"[..], &b"http://127.0.0.1:1/elsewhere"[..]).unwrap(),
            );
        }
        response.boxed()
    });
    let mut c = connector(&server.url, Duration::from_secs(5), 1);
    let statuses = [
        200, 201, 204, 301, 400, 401, 404, 408, 422, 429, 500, 502, 503,
    ];
    let batch: Vec<_> = statuses.iter().map(|&s| delivery(s)).collect();
    let outcomes = c.deliver(&batch);
    assert_eq!(outcomes.len(), statuses.len());
    for (status, outcome) in statuses.iter().zip(&outcomes) {
        match status {
            200..=299 => assert_eq!(outcome, &Outcome::Sent, "{status}"),
            408 | 429 | 500..=599 => {
                let (reason, _) = expect_retry(outcome);
                assert!(reason.starts_with(&format!("HTTP {status} ")), "{reason}");
            }
            _ => {
                let reason = expect_reject(outcome);
                assert!(reason.starts_with(&format!("HTTP {status} ")), "{reason}");
            }
        }
    }
    // The redirect was not followed.
    assert_eq!(server.received().len(), statuses.len());
    assert!(expect_reject(&outcomes[3]).contains("http://127.0.0.1:1/elsewhere"));
}

#[test]
fn server_error_is_retried_with_status_and_body_excerpt() {
    let long = format!("database\nis down {}", "x".repeat(500));
    let body = long.clone();
    let server = TestServer::start(1, move |_| respond(500, &body));
    let mut c = connector(&server.url, Duration::from_secs(5), 1);
    let outcomes = c.deliver(&[delivery(1)]);
    let (reason, after) = expect_retry(&outcomes[0]);
    assert_eq!(after, None);
    let prefix = "HTTP 500 Internal Server Error: database is down xxx";
    assert!(reason.starts_with(prefix), "{reason}");
    assert_eq!(
        reason.chars().count(),
        "HTTP 500 Internal Server Error: ".len() + 200,
        "{reason}"
    );
}

#[test]
fn too_many_requests_honours_retry_after() {
    let server = TestServer::start(1, |_| {
        Response::from_string("slow down")
            .with_status_code(429)
            .with_header(Header::from_bytes(&b"Retry-After"[..], &b"2"[..]).unwrap())
            .boxed()
    });
    let mut c = connector(&server.url, Duration::from_secs(5), 1);
    let outcomes = c.deliver(&[delivery(1)]);
    let (reason, after) = expect_retry(&outcomes[0]);
    assert_eq!(after, Some(Duration::from_secs(2)));
    assert_eq!(reason, "HTTP 429 Too Many Requests: slow down");
    assert!(c.backoff_delay(1, after) >= Duration::from_secs(2));
}

#[test]
fn service_unavailable_honours_an_http_date_retry_after() {
    let server = TestServer::start(1, |_| {
        let in_a_minute = SystemTime::now() + Duration::from_secs(60);
        let date = httpdate_fmt(in_a_minute);
        Response::from_string("")
            .with_status_code(503)
            .with_header(Header::from_bytes(&b"Retry-After"[..], date.as_bytes()).unwrap())
            .boxed()
    });
    let mut c = connector(&server.url, Duration::from_secs(5), 1);
    let outcomes = c.deliver(&[delivery(1)]);
    let (reason, after) = expect_retry(&outcomes[0]);
    assert_eq!(reason, "HTTP 503 Service Unavailable");
    let after = after.expect("Retry-After date understood");
    assert!(
        after > Duration::from_secs(55) && after <= Duration::from_secs(60),
        "{after:?}"
    );
}

/// IMF-fixdate, written here independently of the crate's parser.
fn httpdate_fmt(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    // Civil date from days since the epoch (Howard Hinnant's civil_from_days).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{weekday}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        months[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[test]
fn bad_request_is_rejected_with_the_body() {
    let server = TestServer::start(1, |_| respond(400, "missing field `verb`"));
    let mut c = connector(&server.url, Duration::from_secs(5), 1);
    let outcomes = c.deliver(&[delivery(1)]);
    assert_eq!(
        expect_reject(&outcomes[0]),
        "HTTP 400 Bad Request: missing field `verb`"
    );
}

#[test]
fn unreachable_receiver_is_retried() {
    let closed = common::ClosedPort::new();
    let port = closed.port();
    let mut c = connector(
        &format!("http://127.0.0.1:{port}/events"),
        Duration::from_secs(5),
        2,
    );
    let outcomes = c.deliver(&[delivery(1), delivery(2)]);
    for outcome in &outcomes {
        let (reason, after) = expect_retry(outcome);
        assert_eq!(reason, "connection refused");
        assert_eq!(after, None);
    }
}

#[test]
fn slow_receiver_times_out_and_is_retried() {
    let server = TestServer::start(1, |_| {
        std::thread::sleep(Duration::from_millis(1500));
        respond(200, "too late")
    });
    let mut c = connector(&server.url, Duration::from_millis(300), 1);
    let started = Instant::now();
    let outcomes = c.deliver(&[delivery(1)]);
    let elapsed = started.elapsed();
    let (reason, _) = expect_retry(&outcomes[0]);
    assert!(reason.contains("timed out"), "{reason}");
    // Well before the receiver's answer at 1.5 s.
    assert!(elapsed < Duration::from_millis(1400), "took {elapsed:?}");
}

#[test]
fn concurrency_is_bounded_and_outcomes_keep_input_order() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let (now, max) = (in_flight.clone(), max_in_flight.clone());
    let server = TestServer::start(8, move |r| {
        let current = now.fetch_add(1, Ordering::SeqCst) + 1;
        max.fetch_max(current, Ordering::SeqCst);
        let id: u64 = r.header("X-Trigpoll-Event-Id").unwrap()["hook_".len()..]
            .parse()
            .unwrap();
        // Early events take longest, so completion order differs from input order.
        std::thread::sleep(Duration::from_millis(10 + (20 - id) * 4));
        now.fetch_sub(1, Ordering::SeqCst);
        if id.is_multiple_of(3) {
            respond(422, &format!("event {id} refused"))
        } else {
            respond(200, "ok")
        }
    });
    let mut c = connector(&server.url, Duration::from_secs(5), 4);
    let batch: Vec<_> = (1..=20).map(delivery).collect();
    let outcomes = c.deliver(&batch);

    let max = max_in_flight.load(Ordering::SeqCst);
    assert!(max <= 4, "{max} requests in flight with concurrency 4");
    assert!(max > 1, "requests were not concurrent");

    assert_eq!(outcomes.len(), 20);
    for (delivery, outcome) in batch.iter().zip(&outcomes) {
        let id = delivery.event_id;
        if id % 3 == 0 {
            assert_eq!(
                expect_reject(outcome),
                format!("HTTP 422 Unprocessable Entity: event {id} refused")
            );
        } else {
            assert_eq!(outcome, &Outcome::Sent, "event {id}");
        }
    }
    let mut seen: Vec<_> = server
        .received()
        .iter()
        .map(|r| r.header("X-Trigpoll-Event-Id").unwrap().to_string())
        .collect();
    seen.sort();
    let mut expected: Vec<_> = batch.iter().map(|d| d.object_event_id.clone()).collect();
    expected.sort();
    assert_eq!(seen, expected, "every delivery sent exactly once");
}

#[test]
fn large_body_arrives_intact() {
    let server = TestServer::start(1, |_| respond(204, ""));
    let mut c = connector(&server.url, Duration::from_secs(10), 1);
    let mut big = delivery(1);
    big.body = format!(
        r#"{{"event_id":1,"attributes":{{"notes":"{}"}}}}"#,
        "ü".repeat(1_500_000)
    );
    assert_eq!(c.deliver(std::slice::from_ref(&big)), vec![Outcome::Sent]);
    let received = server.received();
    assert_eq!(received[0].body, big.body);
    let timestamp = received[0].header("X-Trigpoll-Timestamp").unwrap();
    assert_eq!(
        received[0].header("X-Trigpoll-Signature").unwrap(),
        sign(SECRET, timestamp, &big.body)
    );
}

fn connector_with(
    url: &str,
    signature: Signature,
    secrets: &[&str],
    concurrency: usize,
    batch_size: usize,
) -> Connector {
    Connector::new(ConnectorConfig {
        id: "hook".into(),
        subscribe: vec!["*".parse().unwrap()],
        sink: SinkConfig::Http(HttpSinkConfig {
            url: url.into(),
            client_id: "trigpoll-test".into(),
            secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
            signature,
            timeout: Duration::from_secs(5),
            concurrency,
            batch_size,
            ca_file: None,
        }),
        max_attempts: 3,
        backoff: Duration::from_secs(1),
        source: "connectors/hook.toml".into(),
    })
    .unwrap()
}

fn keyed(event_id: i64, key: usize) -> Delivery {
    Delivery {
        key,
        ..delivery(event_id)
    }
}

/// A Standard Webhooks verifier written from the specification, independent of trigpoll's
/// signing code: the key is the base64 after `whsec_`; the signed content is
/// `id.timestamp.body`; the header lists `v1,<base64 HMAC-SHA256>` signatures separated by
/// spaces. Returns the index of the secret each signature verifies with.
fn verify_standard_webhook(request: &Received, secrets: &[&str]) -> Vec<usize> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let id = request.header("webhook-id").expect("webhook-id");
    let timestamp = request
        .header("webhook-timestamp")
        .expect("webhook-timestamp");
    let content = format!("{id}.{timestamp}.{}", request.body);
    request
        .header("webhook-signature")
        .expect("webhook-signature")
        .split(' ')
        .map(|signature| {
            let (version, encoded) = signature.split_once(',').expect("v1,<signature>");
            assert_eq!(version, "v1");
            let signature = b64.decode(encoded).expect("base64");
            secrets
                .iter()
                .position(|secret| {
                    let key = b64.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
                    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
                    mac.update(content.as_bytes());
                    mac.verify_slice(&signature).is_ok()
                })
                .unwrap_or_else(|| panic!("{signature:?} verifies with no secret"))
        })
        .collect()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn standard_webhooks_verify_with_every_rotated_secret_and_keep_their_id_across_retries() {
    const OLD: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const NEW: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let answers = Arc::new(AtomicUsize::new(0));
    let counter = answers.clone();
    let server = TestServer::start(1, move |_| match counter.fetch_add(1, Ordering::SeqCst) {
        0 => respond(503, "busy"),
        _ => respond(204, ""),
    });
    let mut c = connector_with(&server.url, Signature::StandardWebhooks, &[OLD, NEW], 1, 1);
    let batch = [delivery(7)];
    let before = now();
    expect_retry(&c.deliver(&batch)[0]);
    // The next attempt falls in another second, so its timestamp differs.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(c.deliver(&batch), [Outcome::Sent]);
    let after = now();

    let requests = server.received();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(request.body, batch[0].body);
        assert_eq!(request.header("webhook-id"), Some("hook_7"), "stable id");
        let timestamp: u64 = request
            .header("webhook-timestamp")
            .unwrap()
            .parse()
            .unwrap();
        assert!((before..=after).contains(&timestamp), "{timestamp}");
        assert_eq!(verify_standard_webhook(request, &[OLD, NEW]), [0, 1]);
        assert_eq!(request.header("X-Trigpoll-Signature"), None);
        for (name, value) in &request.headers {
            assert!(
                !value.contains(&OLD[6..]) && !value.contains(&NEW[6..]),
                "{name}"
            );
        }
    }
    assert_ne!(
        requests[0].header("webhook-timestamp"),
        requests[1].header("webhook-timestamp"),
        "each attempt has its own timestamp"
    );
}

#[test]
fn trigpoll_signatures_list_one_per_rotated_secret() {
    let server = TestServer::start(1, |_| respond(200, "ok"));
    let mut c = connector_with(&server.url, Signature::Trigpoll, &["old", "new"], 1, 1);
    assert_eq!(c.deliver(&[delivery(1)]), [Outcome::Sent]);
    let request = &server.received()[0];
    let timestamp = request.header("X-Trigpoll-Timestamp").unwrap();
    let signatures: Vec<&str> = request
        .header("X-Trigpoll-Signature")
        .unwrap()
        .split(' ')
        .collect();
    assert_eq!(
        signatures,
        [
            sign("old", timestamp, &request.body),
            sign("new", timestamp, &request.body)
        ]
    );
}

#[test]
fn batches_carry_data_in_event_order_and_a_retryable_answer_retries_the_whole_batch() {
    let answers = Arc::new(AtomicUsize::new(0));
    let counter = answers.clone();
    let server = TestServer::start(1, move |_| match counter.fetch_add(1, Ordering::SeqCst) {
        0 => respond(503, "busy"),
        _ => respond(200, "ok"),
    });
    let mut c = connector_with(&server.url, Signature::Trigpoll, &[SECRET], 1, 4);
    // Six keys: the first request takes four of them, the second the other two.
    let batch: Vec<_> = (1..=6).map(delivery).collect();
    let outcomes = c.deliver(&batch);
    for outcome in &outcomes[..4] {
        expect_retry(outcome);
    }
    assert_eq!(outcomes[4..], [Outcome::Sent, Outcome::Sent]);
    // The four again, as the poller retries them: the same request, the same id.
    assert_eq!(c.deliver(&batch[..4]), vec![Outcome::Sent; 4]);

    let requests = server.received();
    assert_eq!(requests.len(), 3);
    let data = |r: &Received| -> Vec<serde_json::Value> {
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        body["data"].as_array().unwrap().clone()
    };
    let ids = |r: &Received| -> Vec<i64> {
        data(r)
            .iter()
            .map(|p| p["event_id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(ids(&requests[0]), [1, 2, 3, 4]);
    assert_eq!(ids(&requests[1]), [5, 6]);
    assert_eq!(requests[2].body, requests[0].body, "the whole batch again");
    // Each payload as delivered alone.
    let first: serde_json::Value = serde_json::from_str(&batch[0].body).unwrap();
    assert_eq!(data(&requests[0])[0], first);
    let id = requests[0].header("X-Trigpoll-Event-Id").unwrap();
    assert!(id.starts_with("batch_"), "{id}");
    assert_eq!(requests[2].header("X-Trigpoll-Event-Id"), Some(id));
    assert_ne!(requests[1].header("X-Trigpoll-Event-Id"), Some(id));
    let timestamp = requests[0].header("X-Trigpoll-Timestamp").unwrap();
    assert_eq!(
        requests[0].header("X-Trigpoll-Signature").unwrap(),
        sign(SECRET, timestamp, &requests[0].body)
    );
}

#[test]
fn a_batch_retry_holds_the_rest_of_its_keys() {
    let answers = Arc::new(AtomicUsize::new(0));
    let counter = answers.clone();
    let server = TestServer::start(1, move |_| match counter.fetch_add(1, Ordering::SeqCst) {
        1 => respond(500, "oops"),
        _ => respond(200, "ok"),
    });
    let mut c = connector_with(&server.url, Signature::Trigpoll, &[SECRET], 1, 2);
    // Five events of one key: requests of two, in order, each after the one before.
    let batch: Vec<_> = (1..=5).map(|id| keyed(id, 0)).collect();
    let outcomes = c.deliver(&batch);
    assert_eq!(outcomes[..2], [Outcome::Sent, Outcome::Sent]);
    expect_retry(&outcomes[2]);
    assert_eq!(outcomes[3..], [Outcome::Held, Outcome::Held]);
    let requests = server.received();
    assert_eq!(requests.len(), 2, "nothing after the failed request");
}

/// 1,000 deliveries of distinct keys with `batch_size = 100`: ten full requests, several on the
/// way at once (workers that raced for keys one by one used to send about 37 half-full ones with
/// `concurrency = 8`). Four, as the test server serves four connections at once.
#[test]
fn batches_fill_whole_requests_and_still_go_out_at_once() {
    let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (inflight, highest) = (Arc::clone(&now), Arc::clone(&most));
    let server = TestServer::start(4, move |_| {
        highest.fetch_max(
            inflight.fetch_add(1, Ordering::SeqCst) + 1,
            Ordering::SeqCst,
        );
        std::thread::sleep(Duration::from_millis(100));
        inflight.fetch_sub(1, Ordering::SeqCst);
        respond(200, "ok")
    });
    let mut c = connector_with(&server.url, Signature::Trigpoll, &[SECRET], 4, 100);
    let batch: Vec<_> = (1..=1000).map(delivery).collect();
    assert!(c.deliver(&batch).iter().all(|o| *o == Outcome::Sent));
    let sizes: Vec<usize> = server
        .received()
        .iter()
        .map(|r| {
            let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            body["data"].as_array().unwrap().len()
        })
        .collect();
    assert_eq!(sizes, [100; 10], "request sizes");
    assert!(
        most.load(Ordering::SeqCst) > 1,
        "one request at a time: {}",
        most.load(Ordering::SeqCst)
    );
}

#[test]
fn batches_keep_each_keys_order_across_concurrent_requests() {
    let server = TestServer::start(4, |_| {
        std::thread::sleep(Duration::from_millis(2));
        respond(200, "ok")
    });
    let mut c = connector_with(
        &server.url,
        Signature::StandardWebhooks,
        &["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"],
        4,
        10,
    );
    // 400 events of 7 keys, interleaved.
    let batch: Vec<_> = (1..=400).map(|id| keyed(id, (id % 7) as usize)).collect();
    assert!(c.deliver(&batch).iter().all(|o| *o == Outcome::Sent));
    let requests = server.received();
    assert!(requests.len() >= 40, "{} requests", requests.len());
    let mut last_of_key = std::collections::HashMap::new();
    let mut seen = 0;
    for request in &requests {
        let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
        let payloads = body["data"].as_array().unwrap();
        assert!(payloads.len() <= 10);
        for payload in payloads {
            let id = payload["event_id"].as_i64().unwrap();
            if let Some(before) = last_of_key.insert(id % 7, id) {
                assert!(before < id, "key {}: {id} after {before}", id % 7);
            }
            seen += 1;
        }
    }
    assert_eq!(seen, 400, "each event once");
}

/// A verb a rule chose, with its comment, through a webhook end to end: subscribed by name,
/// signed, single and batched.
#[test]
fn a_rules_verb_and_comment_are_posted() {
    let Some(env) = common::Env::new(common::Backend::Sqlite) else {
        return;
    };
    env.db
        .execute("CREATE TABLE item (id int PRIMARY KEY, name text NOT NULL)");
    env.config(
        "",
        "[[object]]\nname = \"Item\"\ntable = \"item\"\n\
         [[object.rule]]\non = \"delete\"\nwhen = \"OLD.name = 'old'\"\nverb = \"Retire\"\ncomment = \"retired\"\n",
    );
    env.run_ok(&["install-triggers"], 0);
    let server = TestServer::start(2, |_| respond(200, "ok"));
    for (id, batch) in [("single", 1), ("batched", 10)] {
        env.connector(
            id,
            &format!(
                "subscribe = [\"Item.Retire\"]\n[sink]\ntype = \"http\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\nbatch_size = {batch}",
                server.url
            ),
        );
    }
    env.db.execute(
        "INSERT INTO item VALUES (1, 'old'), (2, 'old'), (3, 'new');
         DELETE FROM item",
    );
    env.run_ok(&["drain"], 0);
    let received = server.received();
    assert_eq!(
        received.len(),
        3,
        "two single posts, one batch: {received:?}"
    );
    let mut retired = Vec::new();
    for request in &received {
        let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
        match body.get("data") {
            Some(data) => retired.extend(data.as_array().unwrap().iter().cloned()),
            None => retired.push(body),
        }
        assert!(request.header("X-Trigpoll-Signature").is_some());
    }
    assert_eq!(retired.len(), 4);
    for payload in retired {
        assert_eq!(payload["verb"], "Retire");
        assert_eq!(payload["comment"], "retired");
        assert_eq!(payload["attributes"]["name"], "old");
    }
}

//! The HTTP webhook sink: POSTs business objects, signed (docs/payload.md), one per request or
//! `batch_size` per request.
//!
//! **Sent** means the receiver answered 2xx. Two signature schemes:
//!
//! - `trigpoll` (the default): `X-Trigpoll-Timestamp`, `X-Trigpoll-Event-Id`,
//!   `X-Trigpoll-Client-Id` and `X-Trigpoll-Signature: v1=<hex HMAC-SHA256>` (see [`sign`]).
//! - `standard-webhooks` ([Standard Webhooks](https://www.standardwebhooks.com/)):
//!   `webhook-id`, `webhook-timestamp` (Unix seconds of the attempt) and
//!   `webhook-signature: v1,<base64 HMAC-SHA256(key, id.timestamp.body)>`, the key being the
//!   base64-decoded part of a `whsec_` secret.
//!
//! With several secrets (key rotation) the signature header carries one signature per secret,
//! separated by spaces; a receiver accepts a request when any of them verifies.
//!
//! With `batch_size` above 1 every request carries `{"data": [payload, …]}`, in event order,
//! and its outcome is every payload's outcome. Its id (`webhook-id`, `X-Trigpoll-Event-Id`) is
//! `batch_` and the first 32 hex digits of the SHA-256 of the contained `object_event_id`s
//! joined by newlines: the same batch sent again has the same id. Events that failed may come
//! back in other company, so a receiver still drops duplicates per payload, by its
//! `object_event_id`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::tls::Roots;
use super::{Deliver, Delivery, Outcome, SinkError};
use crate::config::{HttpSinkConfig, Secret, Signature};

/// How much of an error response's body is quoted in the reason.
const EXCERPT_CHARS: usize = 200;
/// How much of a response body is read at most; the rest is left unread.
const MAX_BODY_READ: u64 = 64 * 1024;

/// The value of `X-Trigpoll-Signature`: `v1=` and the lowercase hex HMAC-SHA256 of
/// `timestamp + "." + body` keyed with the connector's secret.
///
/// A receiver verifies a request by recomputing this from the `X-Trigpoll-Timestamp` header and
/// the raw body, comparing in constant time, and rejecting timestamps too far from its clock.
pub fn sign(secret: &str, timestamp: &str, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any size");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The signing key of a Standard Webhooks secret: the base64 after the `whsec_` prefix (the
/// prefix is optional, as in the reference libraries). The message never repeats the secret.
pub(crate) fn webhook_key(secret: &Secret) -> Result<Vec<u8>, String> {
    let encoded = secret.expose();
    let encoded = encoded.strip_prefix("whsec_").unwrap_or(encoded);
    match base64::engine::general_purpose::STANDARD.decode(encoded) {
        Ok(key) if !key.is_empty() => Ok(key),
        _ => Err(
            "not a Standard Webhooks secret: expected `whsec_` followed by the key in base64"
                .into(),
        ),
    }
}

/// One Standard Webhooks signature: `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`.
fn sign_standard_webhooks(key: &[u8], id: &str, timestamp: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any size");
    for part in [id, ".", timestamp, ".", body] {
        mac.update(part.as_bytes());
    }
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    format!("v1,{signature}")
}

/// The id of a request carrying several payloads: derived from their ids, so that the same
/// batch sent again has the same id.
fn batch_id(deliveries: &[&Delivery]) -> String {
    let mut hash = Sha256::new();
    for (i, delivery) in deliveries.iter().enumerate() {
        if i > 0 {
            hash.update(b"\n");
        }
        hash.update(delivery.object_event_id.as_bytes());
    }
    format!("batch_{}", &hex::encode(hash.finalize())[..32])
}

/// POSTs the bodies as `application/json`, at most `concurrency` requests at once, each
/// carrying one payload or, with `batch_size` above 1, `{"data": [...]}`.
///
/// Classification (docs/faults.md): 2xx is [`Outcome::Sent`]; 408, 429, 5xx, timeouts and
/// connection errors are [`Outcome::Retry`], with the receiver's `Retry-After` as `after`; other
/// 4xx and 3xx (redirects are not followed: a POST must not silently turn into a GET elsewhere)
/// are [`Outcome::Reject`]. A request's outcome is that of every payload in it.
#[derive(Debug)]
pub struct HttpSink {
    poster: Arc<Poster>,
    concurrency: usize,
    batch_size: usize,
    /// Set when the poller is told to stop and the batch in hand has had its time: requests
    /// not yet answered are given up (they are sent again later) instead of waited for.
    abandon: Arc<AtomicBool>,
}

/// What sends one request: shared by the threads of a batch.
#[derive(Debug)]
struct Poster {
    agent: ureq::Agent,
    url: String,
    client_id: String,
    signer: Signer,
    timeout: Duration,
    /// Requests carry `{"data": [...]}`.
    batched: bool,
}

/// The signature scheme with its keys.
enum Signer {
    Trigpoll(Vec<Secret>),
    /// The decoded keys.
    StandardWebhooks(Vec<Vec<u8>>),
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (scheme, keys) = match self {
            Signer::Trigpoll(secrets) => ("Trigpoll", secrets.len()),
            Signer::StandardWebhooks(keys) => ("StandardWebhooks", keys.len()),
        };
        write!(f, "{scheme}({keys} secrets, ***)")
    }
}

impl HttpSink {
    /// Checks the configuration and builds the HTTP client; nothing is contacted yet.
    pub fn from_config(config: &HttpSinkConfig) -> Result<Self, SinkError> {
        if config.client_id.is_empty() {
            return Err(SinkError::EmptyClientId);
        }
        if config.secrets.is_empty() || config.secrets.iter().any(|s| s.expose().is_empty()) {
            return Err(SinkError::EmptySecret);
        }
        if config.timeout.is_zero() {
            return Err(SinkError::ZeroTimeout("http"));
        }
        if config.concurrency == 0 {
            return Err(SinkError::ZeroConcurrency);
        }
        if config.batch_size == 0 {
            return Err(SinkError::ZeroBatchSize);
        }
        let signer = match config.signature {
            Signature::Trigpoll => Signer::Trigpoll(config.secrets.clone()),
            Signature::StandardWebhooks => Signer::StandardWebhooks(
                config
                    .secrets
                    .iter()
                    .map(webhook_key)
                    .collect::<Result<_, _>>()
                    .map_err(SinkError::InvalidSecret)?,
            ),
        };
        let mut agent = ureq::AgentBuilder::new()
            .timeout(config.timeout)
            .redirects(0)
            .max_idle_connections_per_host(config.concurrency)
            .user_agent(concat!("trigpoll/", env!("CARGO_PKG_VERSION")));
        // Redirects are not followed: only an https URL ever makes a TLS connection.
        if config.url.starts_with("https://") {
            let roots =
                Roots::load(config.ca_file.as_deref()).map_err(|reason| SinkError::CaFile {
                    sink: "http",
                    reason,
                })?;
            agent = agent.tls_config(roots.client_config());
        }
        let agent = agent.build();
        let invalid = |reason: String| SinkError::InvalidUrl {
            sink: "http",
            reason,
        };
        let url = agent
            .post(&config.url)
            .request_url()
            .map_err(|e| invalid(describe_transport_error(&e)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "scheme {:?} is not http or https",
                url.scheme()
            )));
        }
        Ok(HttpSink {
            poster: Arc::new(Poster {
                agent,
                url: config.url.clone(),
                client_id: config.client_id.clone(),
                signer,
                timeout: config.timeout,
                batched: config.batch_size > 1,
            }),
            concurrency: config.concurrency,
            batch_size: config.batch_size,
            abandon: Arc::default(),
        })
    }

    /// Gives up on unanswered requests once `abandon` is set.
    pub fn abandon_on(&mut self, abandon: Arc<AtomicBool>) {
        self.abandon = abandon;
    }
}

impl Poster {
    /// POSTs one request carrying `deliveries` (one, unless batched).
    fn send(&self, deliveries: &[&Delivery]) -> Outcome {
        let (id, body) = match self.batched {
            false => (
                deliveries[0].object_event_id.clone(),
                deliveries[0].body.clone(),
            ),
            true => {
                let payloads: Vec<&str> = deliveries.iter().map(|d| d.body.as_str()).collect();
                (
                    batch_id(deliveries),
                    format!("{{\"data\":[{}]}}", payloads.join(",")),
                )
            }
        };
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .to_string();
        let request = self
            .agent
            .post(&self.url)
            .set("Content-Type", "application/json")
            .set("X-Trigpoll-Client-Id", &self.client_id);
        let request = match &self.signer {
            Signer::Trigpoll(secrets) => {
                let signatures: Vec<String> = secrets
                    .iter()
                    .map(|secret| sign(secret.expose(), &timestamp, &body))
                    .collect();
                request
                    .set("X-Trigpoll-Timestamp", &timestamp)
                    .set("X-Trigpoll-Signature", &signatures.join(" "))
                    .set("X-Trigpoll-Event-Id", &id)
            }
            Signer::StandardWebhooks(keys) => {
                let signatures: Vec<String> = keys
                    .iter()
                    .map(|key| sign_standard_webhooks(key, &id, &timestamp, &body))
                    .collect();
                request
                    .set("webhook-id", &id)
                    .set("webhook-timestamp", &timestamp)
                    .set("webhook-signature", &signatures.join(" "))
            }
        };
        match request.send_bytes(body.as_bytes()) {
            Ok(response) | Err(ureq::Error::Status(_, response)) => classify_response(response),
            Err(ureq::Error::Transport(error)) => classify_transport(&error, self.timeout),
        }
    }
}

/// How long the batch's caller waits between looks at the abandon flag.
const ABANDON_CHECK: Duration = Duration::from_millis(50);

impl Deliver for HttpSink {
    /// Up to `concurrency` requests at once, never two of one key: the batch is cut into lanes
    /// of whole keys (all of a key's deliveries in the batch) that fill whole requests
    /// ([`lanes`]); a worker takes a lane and sends it in batch order, `batch_size` per request,
    /// each request once the one before it has an answer. After a retry the rest of the keys in
    /// that request are held.
    fn deliver(&mut self, batch: &[Delivery]) -> Vec<Outcome> {
        let mut runs: Vec<Vec<usize>> = Vec::new();
        let mut run_of: HashMap<usize, usize> = HashMap::new();
        for (i, delivery) in batch.iter().enumerate() {
            let run = *run_of.entry(delivery.key).or_insert_with(|| {
                runs.push(Vec::new());
                runs.len() - 1
            });
            runs[run].push(i);
        }
        let lanes = lanes(runs, self.batch_size);
        let workers = self.concurrency.min(lanes.len());
        let work = Arc::new((batch.to_vec(), lanes, AtomicUsize::new(0)));
        let (sent, answers) = mpsc::channel::<(usize, Outcome)>();
        for _ in 0..workers {
            let (work, sent) = (Arc::clone(&work), sent.clone());
            let (poster, abandon) = (Arc::clone(&self.poster), Arc::clone(&self.abandon));
            let batch_size = self.batch_size;
            // Not scoped: a request stuck on a slow receiver must not keep the poller from
            // stopping; the thread ends with its request, or with the process.
            std::thread::spawn(move || {
                let (batch, lanes, next) = &*work;
                while let Some(lane) = lanes.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if !send_lane(&poster, batch, lane, batch_size, &abandon, &sent) {
                        return;
                    }
                }
            });
        }
        drop(sent);
        let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.len()];
        let mut missing = batch.len();
        while missing > 0 {
            match answers.recv_timeout(ABANDON_CHECK) {
                Ok((i, outcome)) => {
                    outcomes[i] = Some(outcome);
                    missing -= 1;
                }
                Err(mpsc::RecvTimeoutError::Timeout) if !self.abandon.load(Ordering::Relaxed) => {}
                Err(_) => break,
            }
        }
        // Unanswered: given up on a stop, or a worker that panicked. They may or may not have
        // arrived, so they are retried.
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::retry("no answer: the delivery was given up")))
            .collect()
    }
}

/// Cuts a batch's runs (the deliveries of one key each, in batch order) into lanes of whole
/// runs that fill whole requests of `batch_size`: a lane takes the runs that follow its first
/// while they fit in the requests the first needs, so that with short runs every request but
/// the last is full (1,000 deliveries of distinct keys are 10 requests of 100).
fn lanes(runs: Vec<Vec<usize>>, batch_size: usize) -> Vec<Vec<usize>> {
    let mut lanes: Vec<Vec<usize>> = Vec::new();
    let mut room = 0;
    for run in runs {
        match lanes.last_mut() {
            Some(lane) if run.len() <= room => {
                room -= run.len();
                lane.extend(run);
            }
            _ => {
                room = run.len().div_ceil(batch_size) * batch_size - run.len();
                lanes.push(run);
            }
        }
    }
    lanes
}

/// Sends one worker's share of the batch (`lane`: the indices of whole keys) in batch order,
/// `batch_size` deliveries per request, one request after the other, answering every
/// delivery on `sent`. Returns false when the worker must stop (given up, or nobody listens).
fn send_lane(
    poster: &Poster,
    batch: &[Delivery],
    lane: &[usize],
    batch_size: usize,
    abandon: &AtomicBool,
    sent: &mpsc::Sender<(usize, Outcome)>,
) -> bool {
    let mut lane = lane.to_vec();
    lane.sort_unstable();
    let mut held_keys: HashSet<usize> = HashSet::new();
    let mut pending = lane.into_iter().peekable();
    while pending.peek().is_some() {
        if abandon.load(Ordering::Relaxed) {
            return false;
        }
        let mut request: Vec<usize> = Vec::with_capacity(batch_size);
        while request.len() < batch_size {
            let Some(i) = pending.next() else { break };
            if held_keys.contains(&batch[i].key) {
                if sent.send((i, Outcome::Held)).is_err() {
                    return false;
                }
            } else {
                request.push(i);
            }
        }
        if request.is_empty() {
            continue;
        }
        let deliveries: Vec<&Delivery> = request.iter().map(|&i| &batch[i]).collect();
        let outcome = poster.send(&deliveries);
        if matches!(outcome, Outcome::Retry { .. }) {
            held_keys.extend(deliveries.iter().map(|d| d.key));
        }
        for i in request {
            if sent.send((i, outcome.clone())).is_err() {
                return false;
            }
        }
    }
    true
}

fn classify_response(response: ureq::Response) -> Outcome {
    let status = response.status();
    if (200..300).contains(&status) {
        // Reading the body to its end lets the connection go back to the pool.
        let _ = io::copy(
            &mut response.into_reader().take(MAX_BODY_READ),
            &mut io::sink(),
        );
        return Outcome::Sent;
    }
    let mut reason = format!("HTTP {status}");
    if !response.status_text().is_empty() {
        reason.push(' ');
        reason.push_str(response.status_text());
    }
    if (300..400).contains(&status) {
        let location = response.header("Location").unwrap_or("nowhere");
        reason.push_str(&format!(": redirect to {location} not followed"));
        return Outcome::Reject { reason };
    }
    let retry_after = response
        .header("Retry-After")
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let excerpt = body_excerpt(response);
    if !excerpt.is_empty() {
        reason.push_str(": ");
        reason.push_str(&excerpt);
    }
    if status == 408 || status == 429 || status >= 500 {
        Outcome::Retry {
            reason,
            after: retry_after,
        }
    } else {
        Outcome::Reject { reason }
    }
}

/// The first characters of the body on one line, for the archived reason.
fn body_excerpt(response: ureq::Response) -> String {
    let mut bytes = Vec::new();
    let _ = response
        .into_reader()
        .take(MAX_BODY_READ)
        .read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(EXCERPT_CHARS).collect()
}

fn classify_transport(error: &ureq::Transport, timeout: Duration) -> Outcome {
    use ureq::ErrorKind as K;
    let io_kind = io_error(error).map(io::Error::kind);
    let timed_out = matches!(
        io_kind,
        Some(io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock)
    );
    match error.kind() {
        // Configuration problems: sending again cannot help.
        K::InvalidUrl
        | K::UnknownScheme
        | K::InsecureRequestHttpsOnly
        | K::InvalidProxyUrl
        | K::ProxyUnauthorized => Outcome::Reject {
            reason: describe_transport(error),
        },
        _ if timed_out => Outcome::retry(format!("timed out after {timeout:?}")),
        K::ConnectionFailed if io_kind == Some(io::ErrorKind::ConnectionRefused) => {
            Outcome::retry("connection refused")
        }
        _ => Outcome::retry(describe_transport(error)),
    }
}

fn io_error(error: &ureq::Transport) -> Option<&io::Error> {
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io);
        }
        source = e.source();
    }
    None
}

/// Like ureq's own message, without the URL: it may carry credentials, and it is in the
/// configuration anyway.
fn describe_transport(error: &ureq::Transport) -> String {
    let mut text = error.kind().to_string().to_lowercase();
    if let Some(message) = error.message() {
        text.push_str(": ");
        text.push_str(message);
    }
    if let Some(source) = std::error::Error::source(error) {
        text.push_str(": ");
        text.push_str(&source.to_string());
    }
    text
}

fn describe_transport_error(error: &ureq::Error) -> String {
    match error {
        ureq::Error::Transport(t) => describe_transport(t),
        ureq::Error::Status(code, _) => format!("HTTP {code}"),
    }
}

/// A `Retry-After` value: delta-seconds, or an HTTP-date measured from `now`, in any of the three
/// formats RFC 9110 has recipients accept (IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`, RFC 850
/// `Sunday, 06-Nov-94 08:49:37 GMT`, asctime `Sun Nov  6 08:49:37 1994`). A date in the past means
/// "now"; an unparsable value is ignored.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_fill_whole_requests_with_whole_keys() {
        let runs = |lens: &[usize]| -> Vec<Vec<usize>> {
            let mut next = 0;
            lens.iter()
                .map(|&len| {
                    next += len;
                    (next - len..next).collect()
                })
                .collect()
        };
        let sizes = |lanes: Vec<Vec<usize>>| -> Vec<usize> { lanes.iter().map(Vec::len).collect() };
        assert_eq!(sizes(lanes(runs(&[1; 250]), 100)), [100, 100, 50]);
        // A run longer than a request takes the requests it needs, and shorter runs fill the
        // room left in its last one; a run that does not fit starts a lane of its own.
        assert_eq!(
            sizes(lanes(runs(&[150, 30, 20, 5, 100]), 100)),
            [200, 5, 100]
        );
        let cut = lanes(runs(&[3, 98, 2]), 100);
        assert_eq!(cut, [(0..3).collect::<Vec<_>>(), (3..103).collect()]);
        assert!(lanes(Vec::new(), 100).is_empty());
    }

    #[test]
    fn signature_matches_an_independent_computation() {
        // python3 -c 'import hmac,hashlib; print(hmac.new(b"s3cret",
        //   b"1700000000.{\"event_id\":1}", hashlib.sha256).hexdigest())'
        assert_eq!(
            sign("s3cret", "1700000000", "{\"event_id\":1}"),
            "v1=6e51422cd0618dbc4c0d1d129a9228744066de05b2397384f013a68fbb5c1575"
        );
        assert_eq!(
            sign("key", "1", ""),
            "v1=53123bc365c2fe4bee48bc5cc6cd6c19699147d43513154ed34277c7c063e80f"
        );
    }

    #[test]
    fn signature_covers_timestamp_and_body() {
        let base = sign("s", "100", "{}");
        assert_ne!(base, sign("s", "101", "{}"));
        assert_ne!(base, sign("s", "100", "{ }"));
        assert_ne!(base, sign("t", "100", "{}"));
        // The dot separates: "10" + "0{}" must not sign like "100" + "{}".
        assert_ne!(base, sign("s", "10", "0{}"));
    }

    #[test]
    fn standard_webhooks_test_vector_verifies() {
        // The example of the Standard Webhooks specification.
        let key = webhook_key(&Secret::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")).unwrap();
        assert_eq!(
            sign_standard_webhooks(
                &key,
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                "1649367553",
                r#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
        // The prefix is optional, as in the reference libraries.
        assert_eq!(
            webhook_key(&Secret::new("C2FVsBQIhrscChlQIMV+b5sSYspob7oD")).unwrap(),
            key
        );
    }

    #[test]
    fn standard_webhooks_secrets_must_decode_and_are_not_echoed() {
        for bad in ["whsec_", "whsec_!!!", "whsec_abc", "plain text"] {
            let message = webhook_key(&Secret::new(bad)).unwrap_err();
            assert!(message.contains("whsec_"), "{message}");
            assert!(
                !message.contains("!!!") && !message.contains("plain"),
                "{message}"
            );
        }
    }

    #[test]
    fn batch_ids_follow_the_contained_events() {
        let delivery = |id: &str| Delivery {
            event_id: 1,
            key: 0,
            object: "Employee".into(),
            verb: "Update".into(),
            object_event_id: id.into(),
            body: "{}".into(),
        };
        let (a, b, c) = (delivery("hook_1"), delivery("hook_2"), delivery("hook_12"));
        let ab = batch_id(&[&a, &b]);
        assert_eq!(ab, batch_id(&[&a, &b]), "stable");
        assert!(
            ab.starts_with("batch_") && ab.len() == "batch_".len() + 32,
            "{ab}"
        );
        assert_ne!(ab, batch_id(&[&b, &a]));
        assert_ne!(ab, batch_id(&[&a]));
        // The separator keeps "hook_1" + "2…" apart from "hook_12".
        assert_ne!(batch_id(&[&a, &b]), batch_id(&[&c]));
    }

    #[test]
    fn retry_after_delta_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn retry_after_http_date() {
        // python3: calendar.timegm(email.utils.parsedate("Wed, 21 Oct 2015 07:28:00 GMT"))
        let date = UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        let now = date - Duration::from_secs(90);
        // The three formats of RFC 9110, section 5.6.7.
        for value in [
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "Wednesday, 21-Oct-15 07:28:00 GMT",
            "Wed Oct 21 07:28:00 2015",
        ] {
            assert_eq!(
                parse_retry_after(value, now),
                Some(Duration::from_secs(90)),
                "{value}"
            );
        }
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:49:37 1994", UNIX_EPOCH),
            Some(Duration::from_secs(784_111_777))
        );
        // Already past: retry now.
        assert_eq!(
            parse_retry_after(
                "Wed, 21 Oct 2015 07:28:00 GMT",
                date + Duration::from_secs(5)
            ),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Thu, 29 Feb 2024 23:59:59 GMT", UNIX_EPOCH),
            Some(Duration::from_secs(1_709_251_199))
        );
    }

    #[test]
    fn retry_after_garbage_is_ignored() {
        let now = SystemTime::now();
        for value in [
            "",
            "soon",
            "-5",
            "1.5",
            "Wed, 21 Oct 2015 07:28:00 UTC",
            "Wed, 30 Feb 2015 07:28:00 GMT",
            "Wed, 21 Foo 2015 07:28:00 GMT",
            "Wed, 21 Oct 2015 25:28:00 GMT",
            "Wednesday, 21-Oct-15 07:28:00 UTC",
            "Wed Oct 21 07:28:00 2015 GMT",
        ] {
            assert_eq!(parse_retry_after(value, now), None, "{value:?}");
        }
    }

    #[test]
    fn config_is_validated_without_network() {
        let good = HttpSinkConfig {
            url: "https://receiver.invalid/events".into(),
            client_id: "trigpoll".into(),
            secrets: vec![Secret::new("s")],
            signature: Signature::Trigpoll,
            timeout: Duration::from_secs(1),
            concurrency: 4,
            batch_size: 1,
            ca_file: None,
        };
        assert!(HttpSink::from_config(&good).is_ok());
        let bad = |f: fn(&mut HttpSinkConfig)| {
            let mut c = good.clone();
            f(&mut c);
            HttpSink::from_config(&c).unwrap_err()
        };
        assert!(matches!(
            bad(|c| c.url = "/relative".into()),
            SinkError::InvalidUrl { sink: "http", .. }
        ));
        assert!(matches!(
            bad(|c| c.url = "file:///tmp/x".into()),
            SinkError::InvalidUrl { sink: "http", .. }
        ));
        assert!(matches!(
            bad(|c| c.client_id.clear()),
            SinkError::EmptyClientId
        ));
        assert!(matches!(
            bad(|c| c.secrets = vec![Secret::new("")]),
            SinkError::EmptySecret
        ));
        assert!(matches!(bad(|c| c.secrets.clear()), SinkError::EmptySecret));
        assert!(matches!(
            bad(|c| c.timeout = Duration::ZERO),
            SinkError::ZeroTimeout("http")
        ));
        assert!(matches!(
            bad(|c| c.batch_size = 0),
            SinkError::ZeroBatchSize
        ));
        assert!(matches!(
            bad(|c| {
                c.signature = Signature::StandardWebhooks;
                c.secrets = vec![Secret::new("whsec_not base64!")];
            }),
            SinkError::InvalidSecret(_)
        ));
        assert!(matches!(
            bad(|c| c.concurrency = 0),
            SinkError::ZeroConcurrency
        ));
    }
}

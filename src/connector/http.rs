//! The HTTP webhook sink: POSTs each business object, signed (docs/payload.md).

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{Deliver, Delivery, Outcome, SinkError};
use crate::config::{HttpSinkConfig, Secret};

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

/// POSTs each body as `application/json`, at most `concurrency` requests at once.
///
/// Classification (docs/faults.md): 2xx is [`Outcome::Sent`]; 408, 429, 5xx, timeouts and
/// connection errors are [`Outcome::Retry`], with the receiver's `Retry-After` as `after`; other
/// 4xx and 3xx (redirects are not followed: a POST must not silently turn into a GET elsewhere)
/// are [`Outcome::Reject`].
#[derive(Debug)]
pub struct HttpSink {
    poster: Arc<Poster>,
    concurrency: usize,
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
    secret: Secret,
    timeout: Duration,
}

impl HttpSink {
    /// Checks the configuration and builds the HTTP client; nothing is contacted yet.
    pub fn from_config(config: &HttpSinkConfig) -> Result<Self, SinkError> {
        if config.client_id.is_empty() {
            return Err(SinkError::EmptyClientId);
        }
        if config.secret.expose().is_empty() {
            return Err(SinkError::EmptySecret);
        }
        if config.timeout.is_zero() {
            return Err(SinkError::ZeroTimeout);
        }
        if config.concurrency == 0 {
            return Err(SinkError::ZeroConcurrency);
        }
        let agent = ureq::AgentBuilder::new()
            .timeout(config.timeout)
            .redirects(0)
            .max_idle_connections_per_host(config.concurrency)
            .user_agent(concat!("trigpoll/", env!("CARGO_PKG_VERSION")))
            .build();
        let url = agent
            .post(&config.url)
            .request_url()
            .map_err(|e| SinkError::InvalidUrl(describe_transport_error(&e)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(SinkError::InvalidUrl(format!(
                "scheme {:?} is not http or https",
                url.scheme()
            )));
        }
        Ok(HttpSink {
            poster: Arc::new(Poster {
                agent,
                url: config.url.clone(),
                client_id: config.client_id.clone(),
                secret: config.secret.clone(),
                timeout: config.timeout,
            }),
            concurrency: config.concurrency,
            abandon: Arc::default(),
        })
    }

    /// Gives up on unanswered requests once `abandon` is set.
    pub fn abandon_on(&mut self, abandon: Arc<AtomicBool>) {
        self.abandon = abandon;
    }
}

impl Poster {
    fn send(&self, delivery: &Delivery) -> Outcome {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .to_string();
        let signature = sign(self.secret.expose(), &timestamp, &delivery.body);
        let result = self
            .agent
            .post(&self.url)
            .set("Content-Type", "application/json")
            .set("X-Trigpoll-Timestamp", &timestamp)
            .set("X-Trigpoll-Signature", &signature)
            .set("X-Trigpoll-Client-Id", &self.client_id)
            .set("X-Trigpoll-Event-Id", &delivery.object_event_id)
            .send_bytes(delivery.body.as_bytes());
        match result {
            Ok(response) | Err(ureq::Error::Status(_, response)) => classify_response(response),
            Err(ureq::Error::Transport(error)) => classify_transport(&error, self.timeout),
        }
    }
}

/// How long the batch's caller waits between looks at the abandon flag.
const ABANDON_CHECK: Duration = Duration::from_millis(50);

impl Deliver for HttpSink {
    /// Up to `concurrency` keys at once; each key's deliveries one after another, in order,
    /// stopping at its first retry (the rest of the key is held).
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
        let workers = self.concurrency.min(runs.len());
        let work = Arc::new((batch.to_vec(), runs, AtomicUsize::new(0)));
        let (sent, answers) = mpsc::channel::<(usize, Outcome)>();
        for _ in 0..workers {
            let (work, sent) = (Arc::clone(&work), sent.clone());
            let (poster, abandon) = (Arc::clone(&self.poster), Arc::clone(&self.abandon));
            // Not scoped: a request stuck on a slow receiver must not keep the poller from
            // stopping; the thread ends with its request, or with the process.
            std::thread::spawn(move || {
                let (batch, runs, next) = &*work;
                while let Some(run) = runs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let mut held = false;
                    for &i in run {
                        if abandon.load(Ordering::Relaxed) {
                            return;
                        }
                        let outcome = match held {
                            true => Outcome::Held,
                            false => poster.send(&batch[i]),
                        };
                        held |= matches!(outcome, Outcome::Retry { .. });
                        if sent.send((i, outcome)).is_err() {
                            return;
                        }
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

/// A `Retry-After` value: delta-seconds, or an HTTP-date (IMF-fixdate) measured from `now`.
/// A date in the past means "now"; an unparsable value is ignored.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = parse_http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`, the only HTTP-date form senders may generate (RFC 9110).
fn parse_http_date(value: &str) -> Option<SystemTime> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let parts: [&str; 6] = value
        .split_ascii_whitespace()
        .collect::<Vec<_>>()
        .try_into()
        .ok()?;
    let [weekday, day, month, year, time, "GMT"] = parts else {
        return None;
    };
    if weekday.len() != 4 || !weekday.ends_with(',') {
        return None;
    }
    let number = |s: &str, len: usize| -> Option<i64> {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let day = number(day, 2)?;
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let year = number(year, 4)?;
    let [h, m, s] = time.split(':').collect::<Vec<_>>().try_into().ok()?;
    let (h, m, s) = (number(h, 2)?, number(m, 2)?, number(s, 2)?);
    if day < 1 || day > days_in_month(year, month) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or(0)))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(90))
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
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(UNIX_EPOCH + Duration::from_secs(784_111_777))
        );
        assert_eq!(
            parse_http_date("Thu, 29 Feb 2024 23:59:59 GMT"),
            Some(UNIX_EPOCH + Duration::from_secs(1_709_251_199))
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
            "Wednesday, 21-Oct-15 07:28:00 GMT",
        ] {
            assert_eq!(parse_retry_after(value, now), None, "{value:?}");
        }
    }

    #[test]
    fn config_is_validated_without_network() {
        let good = HttpSinkConfig {
            url: "https://receiver.invalid/events".into(),
            client_id: "trigpoll".into(),
            secret: Secret::new("s"),
            timeout: Duration::from_secs(1),
            concurrency: 4,
        };
        assert!(HttpSink::from_config(&good).is_ok());
        let bad = |f: fn(&mut HttpSinkConfig)| {
            let mut c = good.clone();
            f(&mut c);
            HttpSink::from_config(&c).unwrap_err()
        };
        assert!(matches!(
            bad(|c| c.url = "/relative".into()),
            SinkError::InvalidUrl(_)
        ));
        assert!(matches!(
            bad(|c| c.url = "file:///tmp/x".into()),
            SinkError::InvalidUrl(_)
        ));
        assert!(matches!(
            bad(|c| c.client_id.clear()),
            SinkError::EmptyClientId
        ));
        assert!(matches!(
            bad(|c| c.secret = Secret::new("")),
            SinkError::EmptySecret
        ));
        assert!(matches!(
            bad(|c| c.timeout = Duration::ZERO),
            SinkError::ZeroTimeout
        ));
        assert!(matches!(
            bad(|c| c.concurrency = 0),
            SinkError::ZeroConcurrency
        ));
    }
}

//! What the broker sinks ([`NatsSink`](super::NatsSink), [`AmqpSink`](super::AmqpSink),
//! [`RedisSink`](super::RedisSink)) share: a runtime of their own, pipelined publishing, and
//! the per-key bookkeeping that keeps order when part of a batch fails.
//!
//! **Pipelining.** A batch goes out on one connection without waiting between messages: up to
//! [`WINDOW`] messages are unconfirmed at once, and the sink waits only when the window is full
//! and at the end of the batch, never one round trip per event. A broker applies one
//! connection's publishes in the order they were sent, so each key's messages arrive in event
//! order, interleaved with the other keys' as the batch has them.
//!
//! **Partial failure.** A message may fail while a later one of its key, already on its way, is
//! accepted (a negative acknowledgement, a message no queue takes, a full stream, a reconnection
//! between the two). The failed message comes out [`Outcome::Retry`]; the later ones of its key
//! come out [`Outcome::Held`] *even when the broker confirmed them*, so that they are published
//! again after the failed one has gone through. At-least-once holds, and the last copy a
//! consumer gets of each event comes after the events before it; the broker does hold the later
//! message for a while before the earlier one, and a consumer that must never go back to an
//! older state keeps the highest `event_id` it applied per key (event ids grow within a key).
//! Once a failure of a key is known (its answer came back while the batch was still being
//! published), the rest of the key is not published at all.
//!
//! **Waiting.** Confirmations are awaited oldest first. When the oldest message waiting is not
//! confirmed within the sink's `timeout`, every message still waiting is answered
//! [`Outcome::Retry`] and the connection is made anew for the next batch; the same happens when
//! the poller stops and gives the batch up ([`BrokerRuntime::run`]).

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{Delivery, Outcome};

/// Messages published and not yet confirmed, at most. Enough to keep a broker busy; bounded so
/// that a batch of 100,000 events does not hold 100,000 pending confirmations.
pub(super) const WINDOW: usize = 1000;

/// How often a wait looks at the abandon flag.
const ABANDON_CHECK: Duration = Duration::from_millis(50);

/// The broker's answer for one message, still to come.
pub(super) type Confirm = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// One connection that publishes messages one after another.
pub(super) trait Publisher {
    /// Hands one message to the connection, in order. `Ok` is what waits for the broker's
    /// answer. `Err` is the outcome when there will be none: a [`Outcome::Reject`] for this
    /// message alone (it cannot be published as it is), or a [`Outcome::Retry`] when the
    /// connection takes no more messages, which ends the batch.
    async fn publish(&mut self, delivery: &Delivery) -> Result<Confirm, Outcome>;
}

/// Publishes `batch` in order, filling `outcomes` (one slot per delivery) as answers come in.
/// Returns whether the connection can be used for the next batch.
///
/// A slot left `None` is a message without an answer yet: that happens only when the caller
/// stops this future (the poller gave the batch up), and [`settle`] retries it.
pub(super) async fn publish_pipelined(
    publisher: &mut impl Publisher,
    batch: &[Delivery],
    timeout: Duration,
    outcomes: &mut [Option<Outcome>],
) -> bool {
    let mut failed_keys: HashSet<usize> = HashSet::new();
    let mut record = |i: usize, outcome: Outcome, failed_keys: &mut HashSet<usize>| {
        if matches!(outcome, Outcome::Retry { .. }) {
            failed_keys.insert(batch[i].key);
        }
        outcomes[i] = Some(outcome);
    };
    let not_confirmed = || format!("not confirmed within {timeout:?}");
    let mut waiting: VecDeque<(usize, Confirm)> = VecDeque::new();
    // Why the rest of the batch is not published: the connection failed, or the broker stalled.
    let mut broken: Option<String> = None;
    let mut timed_out = false;
    for (i, delivery) in batch.iter().enumerate() {
        if broken.is_none() && waiting.len() >= WINDOW {
            let (j, confirm) = waiting.pop_front().expect("the window is full");
            match tokio::time::timeout(timeout, confirm).await {
                Ok(outcome) => record(j, outcome, &mut failed_keys),
                Err(_) => {
                    record(j, Outcome::retry(not_confirmed()), &mut failed_keys);
                    broken = Some(not_confirmed());
                    timed_out = true;
                }
            }
        }
        if let Some(reason) = &broken {
            let outcome = Outcome::retry(format!("not published: {reason}"));
            record(i, outcome, &mut failed_keys);
        } else if failed_keys.contains(&delivery.key) {
            record(i, Outcome::Held, &mut failed_keys);
        } else {
            match publisher.publish(delivery).await {
                Ok(confirm) => waiting.push_back((i, confirm)),
                Err(outcome) => {
                    if let Outcome::Retry { reason, .. } = &outcome {
                        broken = Some(reason.clone());
                    }
                    record(i, outcome, &mut failed_keys);
                }
            }
        }
    }
    // What was published before a connection failed may still be confirmed (or refused at
    // once); after a stall nothing more is waited for.
    while let Some((j, confirm)) = waiting.pop_front() {
        let outcome = match timed_out {
            true => Outcome::retry(not_confirmed()),
            false => tokio::time::timeout(timeout, confirm)
                .await
                .unwrap_or_else(|_| {
                    timed_out = true;
                    Outcome::retry(not_confirmed())
                }),
        };
        record(j, outcome, &mut failed_keys);
    }
    broken.is_none() && !timed_out
}

/// `work` (making a connection), given at most `timeout`.
pub(super) async fn within<T>(
    timeout: Duration,
    work: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| Err(format!("cannot connect: no answer within {timeout:?}")))
}

/// Takes stock after [`BrokerRuntime::run`] of a batch whose work connects (`Err`: the reason
/// it could not) and then publishes (`Ok`: whether the connection is still good). Deliveries
/// left without an outcome because no connection could be made get that reason. Returns
/// whether the connection can be kept.
pub(super) fn finish(
    ran: Result<Option<Result<bool, String>>, String>,
    outcomes: &mut [Option<Outcome>],
) -> bool {
    match ran {
        Ok(Some(Ok(healthy))) => healthy,
        // Given up: what is unanswered is settled as such.
        Ok(None) => false,
        Ok(Some(Err(reason))) | Err(reason) => {
            for outcome in outcomes.iter_mut().filter(|o| o.is_none()) {
                *outcome = Some(Outcome::retry(reason.clone()));
            }
            false
        }
    }
}

/// The outcomes of a pipelined batch: an unanswered message is retried. The later messages of
/// a key after its first [`Outcome::Retry`] are held by [`Sink::deliver`](super::Sink), confirmed
/// or not (see the module docs).
pub(super) fn settle(outcomes: Vec<Option<Outcome>>) -> Vec<Outcome> {
    outcomes
        .into_iter()
        .map(|outcome| {
            outcome.unwrap_or_else(|| {
                Outcome::retry("no answer from the broker: the delivery was given up")
            })
        })
        .collect()
}

/// The tokio runtime a broker sink owns, built on first use: one worker thread that keeps the
/// connection alive between batches (heartbeats, pings), and the poller's thread driving each
/// batch.
#[derive(Debug)]
pub(super) struct BrokerRuntime {
    runtime: Option<tokio::runtime::Runtime>,
    thread_name: &'static str,
    /// Set when the poller stops and the batch in hand has had its time.
    abandon: Arc<AtomicBool>,
}

impl BrokerRuntime {
    pub(super) fn new(thread_name: &'static str) -> Self {
        BrokerRuntime {
            runtime: None,
            thread_name,
            abandon: Arc::default(),
        }
    }

    pub(super) fn abandon_on(&mut self, abandon: Arc<AtomicBool>) {
        self.abandon = abandon;
    }

    /// Runs `work` to its end, or until the abandon flag is set (`Ok(None)`: `work` is dropped
    /// where it waits). `Err` when no runtime can be started (out of threads, say).
    pub(super) fn run<F: Future>(&mut self, work: F) -> Result<Option<F::Output>, String> {
        if self.runtime.is_none() {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name(self.thread_name)
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the sink's runtime: {e}"))?;
            self.runtime = Some(runtime);
        }
        let runtime = self.runtime.as_ref().expect("built above");
        let abandon = Arc::clone(&self.abandon);
        Ok(runtime.block_on(async move {
            tokio::select! {
                output = work => Some(output),
                () = abandoned(&abandon) => None,
            }
        }))
    }
}

impl Drop for BrokerRuntime {
    /// A stopping poller must not wait here for a DNS lookup or a connection attempt still
    /// running on the runtime.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn abandoned(flag: &AtomicBool) {
    while !flag.load(Ordering::Relaxed) {
        tokio::time::sleep(ABANDON_CHECK).await;
    }
}

/// A broker URL for messages and `Debug`: the user information (user name, password or token)
/// replaced by `***`.
pub(super) fn masked_url(url: &str) -> String {
    match userinfo(url) {
        Some(range) => format!("{}***{}", &url[..range.start], &url[range.end..]),
        None => url.to_string(),
    }
}

/// `text` (a library's error message) with every trace of the URL's credentials replaced by
/// `***`: the user information as written, its password or token part, and their
/// percent-decoded forms.
pub(super) fn redact(text: &str, url: &str) -> String {
    let Some(range) = userinfo(url) else {
        return text.to_string();
    };
    let info = &url[range];
    let secret = info.split_once(':').map_or(info, |(_, password)| password);
    let mut out = text.to_string();
    for needle in [info, secret] {
        for form in [needle.to_string(), percent_decode(needle)] {
            if !form.is_empty() {
                out = out.replace(&form, "***");
            }
        }
    }
    out
}

/// Where the user information of `scheme://userinfo@host…` is, if it has one.
fn userinfo(url: &str) -> Option<std::ops::Range<usize>> {
    let start = url.find("://")? + 3;
    let authority_end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    let at = url[start..authority_end].rfind('@')? + start;
    Some(start..at)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::hold_after_retry;

    fn delivery(event_id: i64, key: usize) -> Delivery {
        Delivery {
            event_id,
            key,
            object: "Employee".into(),
            verb: "Update".into(),
            object_event_id: format!("c_{event_id}"),
            body: "{}".into(),
        }
    }

    /// Answers from a script: `Ok(outcome)` is confirmed later with it, `Err` fails at once.
    struct Scripted {
        answers: Vec<Result<Outcome, Outcome>>,
        published: Vec<i64>,
    }

    impl Publisher for Scripted {
        async fn publish(&mut self, delivery: &Delivery) -> Result<Confirm, Outcome> {
            self.published.push(delivery.event_id);
            match self.answers.remove(0) {
                Ok(outcome) => Ok(Box::pin(async move { outcome })),
                Err(outcome) => Err(outcome),
            }
        }
    }

    fn run(
        answers: Vec<Result<Outcome, Outcome>>,
        batch: &[Delivery],
    ) -> (Vec<Outcome>, Vec<i64>, bool) {
        let mut publisher = Scripted {
            answers,
            published: Vec::new(),
        };
        let mut outcomes = vec![None; batch.len()];
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let healthy = runtime.block_on(publish_pipelined(
            &mut publisher,
            batch,
            Duration::from_secs(5),
            &mut outcomes,
        ));
        let mut outcomes = settle(outcomes);
        hold_after_retry(batch, &mut outcomes);
        (outcomes, publisher.published, healthy)
    }

    #[test]
    fn a_confirmed_message_behind_a_failed_one_of_its_key_is_held() {
        // Keys: 0 0 1 0 1. Event 1 (key 0) fails; 2 and 4 of key 0 were confirmed anyway.
        let batch: Vec<_> = [(1, 0), (2, 0), (3, 1), (4, 0), (5, 1)]
            .iter()
            .map(|&(e, k)| delivery(e, k))
            .collect();
        let answers = vec![
            Ok(Outcome::retry("nack")),
            Ok(Outcome::Sent),
            Ok(Outcome::Sent),
            Ok(Outcome::Sent),
            Ok(Outcome::Sent),
        ];
        let (outcomes, published, healthy) = run(answers, &batch);
        assert_eq!(
            outcomes,
            [
                Outcome::retry("nack"),
                Outcome::Held,
                Outcome::Sent,
                Outcome::Held,
                Outcome::Sent
            ]
        );
        assert_eq!(
            published,
            [1, 2, 3, 4, 5],
            "pipelined: all were on their way"
        );
        assert!(healthy);
    }

    #[test]
    fn a_rejected_message_does_not_hold_its_key() {
        let batch: Vec<_> = [(1, 0), (2, 0)]
            .iter()
            .map(|&(e, k)| delivery(e, k))
            .collect();
        let reject = Outcome::Reject {
            reason: "too big".into(),
        };
        let (outcomes, _, healthy) = run(vec![Err(reject.clone()), Ok(Outcome::Sent)], &batch);
        assert_eq!(outcomes, [reject, Outcome::Sent]);
        assert!(healthy);
    }

    #[test]
    fn a_broken_connection_ends_the_batch() {
        let batch: Vec<_> = [(1, 0), (2, 1), (3, 0), (4, 2)]
            .iter()
            .map(|&(e, k)| delivery(e, k))
            .collect();
        let (outcomes, published, healthy) = run(
            vec![Ok(Outcome::Sent), Err(Outcome::retry("connection reset"))],
            &batch,
        );
        assert_eq!(published, [1, 2], "nothing after the broken connection");
        assert_eq!(outcomes[0], Outcome::Sent);
        assert_eq!(outcomes[1], Outcome::retry("connection reset"));
        assert_eq!(
            outcomes[2],
            Outcome::retry("not published: connection reset")
        );
        assert_eq!(
            outcomes[3],
            Outcome::retry("not published: connection reset")
        );
        assert!(!healthy);
    }

    #[test]
    fn unanswered_messages_are_retried_and_hold_their_keys() {
        let batch: Vec<_> = [(1, 0), (2, 0), (3, 1)]
            .iter()
            .map(|&(e, k)| delivery(e, k))
            .collect();
        let mut outcomes = settle(vec![None, Some(Outcome::Sent), Some(Outcome::Sent)]);
        hold_after_retry(&batch, &mut outcomes);
        assert!(matches!(outcomes[0], Outcome::Retry { .. }));
        assert_eq!(outcomes[1..], [Outcome::Held, Outcome::Sent]);
    }

    #[test]
    fn credentials_never_show() {
        let url = "amqp://guest:s3cr%40t@127.0.0.1:5672/%2f";
        assert_eq!(masked_url(url), "amqp://***@127.0.0.1:5672/%2f");
        assert_eq!(
            redact(
                "auth failed for guest:s3cr@t and s3cr%40t at 127.0.0.1",
                url
            ),
            "auth failed for *** and *** at 127.0.0.1"
        );
        assert_eq!(masked_url("nats://token@h:4222"), "nats://***@h:4222");
        assert_eq!(
            redact("bad token token", "nats://token@h:4222"),
            "bad *** ***"
        );
        assert_eq!(masked_url("redis://127.0.0.1/0"), "redis://127.0.0.1/0");
        assert_eq!(redact("refused", "redis://127.0.0.1/0"), "refused");
        // An `@` after the host is not user information.
        assert_eq!(masked_url("redis://h/0?x=a@b"), "redis://h/0?x=a@b");
    }
}

//! The stdout sink: one NDJSON line per business object.

use std::io::{self, Write};

use super::{Deliver, Delivery, Outcome};

/// Lines are handed to stdout in chunks of about this size, so that a failing pipe costs a
/// retry of one chunk and the deliveries before it count as sent.
const CHUNK: usize = 64 * 1024;

/// Writes each body and a newline to stdout.
///
/// A delivery is [`Outcome::Sent`] once its line has been written and stdout flushed; when a
/// write fails (a closed pipe, a full disk behind a redirect) it and every later delivery of the
/// batch are retried.
#[derive(Debug, Default)]
pub struct StdoutSink {}

impl StdoutSink {
    pub fn new() -> Self {
        StdoutSink {}
    }
}

impl Deliver for StdoutSink {
    fn deliver(&mut self, batch: &[Delivery]) -> Vec<Outcome> {
        let stdout = io::stdout();
        let mut out = stdout.lock();
        write_lines(&mut out, batch)
    }
}

/// Writes the batch as lines to `out`, flushing per chunk: the chunks that made it are sent,
/// the rest retried.
pub(super) fn write_lines(out: &mut impl Write, batch: &[Delivery]) -> Vec<Outcome> {
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut buf = Vec::with_capacity(CHUNK);
    let mut pending = 0;
    for (i, delivery) in batch.iter().enumerate() {
        buf.extend_from_slice(delivery.body.as_bytes());
        buf.push(b'\n');
        pending += 1;
        if buf.len() >= CHUNK || i + 1 == batch.len() {
            if let Err(e) = out.write_all(&buf).and_then(|()| out.flush()) {
                tracing::warn!(error = %e, "writing to stdout failed");
                let reason = format!("writing to stdout failed: {e}");
                outcomes.resize(batch.len(), Outcome::retry(reason));
                return outcomes;
            }
            outcomes.resize(outcomes.len() + pending, Outcome::Sent);
            buf.clear();
            pending = 0;
        }
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    fn delivery(event_id: i64, body: String) -> Delivery {
        Delivery {
            event_id,
            key: event_id as usize,
            object: "Employee".into(),
            verb: "Create".into(),
            object_event_id: format!("test_{event_id}"),
            body,
        }
    }

    #[test]
    fn writes_one_line_per_delivery() {
        let batch: Vec<_> = (1..=3)
            .map(|i| delivery(i, format!("{{\"event_id\":{i}}}")))
            .collect();
        let mut out = Vec::new();
        assert_eq!(write_lines(&mut out, &batch), vec![Outcome::Sent; 3]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"event_id\":1}\n{\"event_id\":2}\n{\"event_id\":3}\n"
        );
    }

    #[test]
    fn a_failing_output_retries_the_batch_with_the_reason() {
        // /dev/full accepts the open and fails every write with ENOSPC, like a full disk.
        let mut full = OpenOptions::new().write(true).open("/dev/full").unwrap();
        let batch: Vec<_> = (1..=3).map(|i| delivery(i, "{}".into())).collect();
        let outcomes = write_lines(&mut full, &batch);
        assert_eq!(outcomes.len(), 3);
        for outcome in outcomes {
            match outcome {
                Outcome::Retry {
                    reason,
                    after: None,
                } => {
                    assert!(reason.contains("stdout"), "{reason}")
                }
                other => panic!("expected a retry, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_closed_pipe_retries_the_batch() {
        // The reader of the pipe is gone, as when the consumer of stdout exits: EPIPE.
        let mut child = std::process::Command::new("true")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut pipe = child.stdin.take().unwrap();
        child.wait().unwrap();
        let batch: Vec<_> = (1..=2).map(|i| delivery(i, "{}".into())).collect();
        let outcomes = write_lines(&mut pipe, &batch);
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, Outcome::Retry { reason, .. } if reason.contains("pipe"))),
            "{outcomes:?}"
        );
    }

    #[test]
    fn chunks_written_before_a_failure_count_as_sent() {
        // An output that takes the first chunk and then fails, as a pipe whose reader exits.
        struct BreaksAfter(usize, Vec<u8>);
        impl Write for BreaksAfter {
            fn write(&mut self, data: &[u8]) -> io::Result<usize> {
                if self.1.len() + data.len() > self.0 {
                    return Err(io::Error::from(io::ErrorKind::BrokenPipe));
                }
                self.1.extend_from_slice(data);
                Ok(data.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let big = "x".repeat(CHUNK);
        let batch = vec![
            delivery(1, big.clone()),
            delivery(2, big.clone()),
            delivery(3, "{}".into()),
        ];
        let mut out = BreaksAfter(CHUNK + 1, Vec::new());
        let outcomes = write_lines(&mut out, &batch);
        assert_eq!(outcomes[0], Outcome::Sent);
        assert!(matches!(outcomes[1], Outcome::Retry { .. }), "{outcomes:?}");
        assert!(matches!(outcomes[2], Outcome::Retry { .. }), "{outcomes:?}");
        assert_eq!(out.1.len(), CHUNK + 1);
    }
}

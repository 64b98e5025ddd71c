//! One module per subcommand; this one holds what they share.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use trigpoll::config::{Config, ConfigError};
use trigpoll::install::{DriftState, InstallError, Layout};
use trigpoll::poller::StartError;
use trigpoll::store::{self, EventStore, StoreError};

pub mod check;
pub mod drain;
pub mod install;
pub mod notify;
pub mod poll;
pub mod prune;
pub mod reload;
pub mod replay;
pub mod status;

pub struct Context {
    pub config_path: PathBuf,
    /// `-q`: say nothing unless something needs attention.
    pub quiet: bool,
    /// `--log-format json`: what a command reports on stderr is a JSON log line too.
    pub json: bool,
}

impl Context {
    pub fn config(&self) -> Result<Config> {
        Ok(Config::load(&self.config_path)?)
    }
}

/// A mistake in how trigpoll was called: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// 2 for anything the user must fix in the call or the configuration, 1 for the rest.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    let invalid = |s: &StoreError| matches!(s, StoreError::Invalid(_));
    let usage = e.chain().any(|cause| {
        cause.is::<ConfigError>()
            || cause.is::<UsageError>()
            || cause.downcast_ref::<StoreError>().is_some_and(invalid)
            || match cause.downcast_ref::<InstallError>() {
                Some(InstallError::Refused(_)) => true,
                Some(InstallError::Store(s)) => invalid(s),
                None => false,
            }
            || match cause.downcast_ref::<StartError>() {
                Some(StartError::Config(_)) => true,
                Some(StartError::Store(s)) => invalid(s),
                Some(StartError::Thread(_)) | None => false,
            }
    });
    if usage {
        2
    } else {
        1
    }
}

/// Writes data to stdout; a reader that went away (`trigpoll ... | head`) is not an error.
pub fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Opens the configured database.
pub fn open_store(config: &Config) -> Result<Box<dyn EventStore>> {
    Ok(store::open(config)?)
}

/// Opens the configured database and checks that install-triggers has created trigpoll's tables.
pub fn open_installed_store(config: &Config) -> Result<Box<dyn EventStore>> {
    let mut store = open_store(config)?;
    let layout = trigpoll::install::layout(store.as_mut(), config)?;
    usable(layout, config, store.backend())?;
    Ok(store)
}

/// Opens the store a run delivers from ([`open_installed_store`]) and warns of every table whose
/// capture trigger is not as configured (missing, stale, left over from an object no longer
/// configured, invalid, broken): its changes are not captured as configured, and nothing else
/// would say so while the run works.
pub fn open_store_for_delivery(config: &Config) -> Result<Box<dyn EventStore>> {
    let mut store = open_installed_store(config)?;
    let report = match trigpoll::install::drift(store.as_mut(), config) {
        Ok(report) => report,
        Err(e) => {
            tracing::warn!(error = %e, "could not compare the capture triggers with the configuration");
            return Ok(store);
        }
    };
    // A poller's account has no use for seeing the triggers (MySQL shows them only to accounts
    // with the TRIGGER privilege): one line says so, as status and check do.
    let hidden = report
        .iter()
        .find(|d| matches!(d.state, DriftState::NotVisible(_)));
    if let Some(d) = hidden {
        tracing::info!("capture triggers: {}", d.state);
    }
    for d in report.iter().filter(|d| d.state.needs_attention()) {
        let object = (!d.object.is_empty()).then_some(d.object.as_str());
        tracing::warn!(object, table = %d.table, state = %d.state, "capture trigger not as configured");
    }
    Ok(store)
}

/// `1 event`, `2 events`: a count with its noun.
pub fn counted(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Whether trigpoll's tables can be used as they are, or what to run first.
pub fn usable(layout: Layout, config: &Config, backend: &str) -> Result<(), UsageError> {
    let (events, archive) = trigpoll::install::own_table_names(backend, config);
    match layout {
        Layout::Missing => Err(UsageError(format!(
            "the event table {events} or the archive table {archive} does not exist: run `trigpoll install-triggers`"
        ))),
        Layout::Old => Err(UsageError(format!(
            "the event table {events} was made by an earlier trigpoll: run `trigpoll install-triggers` to upgrade it (its events stay)"
        ))),
        Layout::Current => Ok(()),
    }
}

/// Set by the first SIGINT or SIGTERM (or by the command itself, at `drain --max-time`); a
/// second signal ends the process at once.
pub fn shutdown_flag() -> Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::flag;
    let stop = Arc::new(AtomicBool::new(false));
    // Apart from `stop`: a stop the command made itself does not make the first signal the
    // second one.
    let signalled = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        flag::register_conditional_shutdown(signal, 130, Arc::clone(&signalled))?;
        flag::register(signal, Arc::clone(&signalled))?;
        flag::register(signal, Arc::clone(&stop))?;
    }
    Ok(stop)
}

pub fn stopping(stop: &AtomicBool) -> bool {
    stop.load(Ordering::Relaxed)
}

/// Sleeps up to `total`, waking early when asked to stop.
pub fn sleep_unless_stopped(stop: &AtomicBool, total: Duration) {
    let deadline = std::time::Instant::now() + total;
    while !stopping(stop) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// After a stop signal, the batch in hand has this long to finish before what it waits on is
/// given up (see [`give_up_after_grace`]).
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Once `stop` is set, calls `stopping_now` at once, then gives the batch in hand [`STOP_GRACE`] to
/// finish before calling `give_up`, which makes the poller give it up: its statement in flight
/// is cancelled (a claim or a fetch waiting for a lock, a slow server), its deliveries still
/// waiting for a receiver are abandoned, and its claims go back to the queue, so that the
/// process exits in a bounded time whatever it waits on.
pub fn give_up_after_grace(
    stop: &Arc<AtomicBool>,
    stopping_now: impl FnOnce() + Send + 'static,
    give_up: impl FnOnce() + Send + 'static,
) {
    let stop = Arc::clone(stop);
    std::thread::spawn(move || {
        while !stopping(&stop) {
            std::thread::sleep(Duration::from_millis(50));
        }
        stopping_now();
        std::thread::sleep(STOP_GRACE);
        tracing::warn!(grace = ?STOP_GRACE, "the batch in hand did not finish in time: giving it up");
        give_up();
    });
}

/// The waits between attempts to reach the database, for a lost connection and for `poll`'s
/// start alike: 0.5 s, doubling up to 30 s (docs/faults.md).
pub struct Backoff(Duration);

impl Backoff {
    pub fn new() -> Backoff {
        Backoff(Duration::from_millis(500))
    }

    /// The wait before the next attempt; the one after it is longer.
    pub fn next(&mut self) -> Duration {
        let delay = self.0;
        self.0 = (delay * 2).min(Duration::from_secs(30));
        delay
    }
}

/// Runs one batch, riding out a lost database connection: reconnects with backoff (for at most
/// `patience`), gives back the claims of the interrupted batch so they are redelivered, and
/// tries again. `health`, when given, learns whether the database answers; `service`, under
/// systemd, that the loop is alive while it reconnects, and why.
pub fn batch_with_reconnect(
    poller: &mut trigpoll::poller::Poller,
    stop: &AtomicBool,
    patience: Duration,
    health: Option<&trigpoll::metrics::Health>,
    mut service: Option<&mut notify::Service>,
) -> Result<trigpoll::poller::Tally> {
    let started = std::time::Instant::now();
    let mut backoff = Backoff::new();
    loop {
        match poller.run_batch() {
            // Given up on a stop (`give_up_after_grace`): its claims are back in the queue.
            Err(e) if stopping(stop) => {
                tracing::info!(reason = %e, "stopping: the batch in hand goes back to the queue");
                return Ok(trigpoll::poller::Tally::default());
            }
            Err(StoreError::Connection(reason)) if !stopping(stop) => {
                if let Some(h) = health {
                    h.unreachable();
                }
                if started.elapsed() >= patience {
                    anyhow::bail!("database connection lost: {reason}");
                }
                let delay = backoff.next();
                tracing::warn!(%reason, retry_in = ?delay, "database connection lost; reconnecting");
                if let Some(s) = service.as_deref_mut() {
                    s.status(format!("database connection lost, reconnecting: {reason}"));
                    s.alive();
                }
                sleep_unless_stopped(stop, delay);
                if let Some(s) = service.as_deref_mut() {
                    s.alive();
                }
                match poller.reconnect() {
                    Ok(()) => tracing::info!("reconnected"),
                    Err(e) => tracing::warn!(error = %e, "reconnect failed"),
                }
            }
            Ok(tally) => {
                if let Some(h) = health {
                    h.reachable();
                }
                return Ok(tally);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The progress bar on screen, if any: log lines are written around it.
static PROGRESS: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);

pub fn show_progress(bar: Option<indicatif::ProgressBar>) {
    *PROGRESS.lock().unwrap_or_else(|e| e.into_inner()) = bar;
}

/// One log line, written to stderr when complete (above the progress bar, if one is shown).
#[derive(Default)]
pub struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let write = || {
            let _ = std::io::stderr().write_all(&self.0);
        };
        match &*PROGRESS.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Backoff;
    use std::time::Duration;

    /// docs/faults.md: 0.5 s doubling to 30 s, then 30 s for as long as it takes.
    #[test]
    fn backoff_doubles_from_half_a_second_to_thirty() {
        let mut backoff = Backoff::new();
        let waits: Vec<Duration> = (0..9).map(|_| backoff.next()).collect();
        let ms = |m| Duration::from_millis(m);
        assert_eq!(
            waits,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000].map(ms)
        );
    }
}

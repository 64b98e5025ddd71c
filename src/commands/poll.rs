//! `poll`: run until SIGINT/SIGTERM; SIGHUP reloads the configuration ([`reload`]); under
//! systemd it speaks the notify protocol ([`super::notify`]).

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use tracing::{debug, error, info, warn};
use trigpoll::metrics::{Health, Metrics};
use trigpoll::poller::{Poller, StartError};
use trigpoll::store::{EventStore, ReadyBacklog, RetryBacklog, StoreError};

use super::notify::Service;
use super::prune::Pruner;
use super::reload;
use super::{
    batch_with_reconnect, open_store_for_delivery, shutdown_flag, sleep_unless_stopped, stopping,
    Backoff, Context,
};

#[derive(Args)]
pub struct PollArgs {
    /// How long to sleep when idle (overrides poll.interval); new events wake the poller
    /// earlier where the database can say so (PostgreSQL).
    #[arg(long, value_parser = humantime::parse_duration)]
    interval: Option<Duration>,
    /// Serve Prometheus metrics at http://ADDR/metrics and the health at /healthz
    /// (HOST:PORT, e.g. 127.0.0.1:9464 or localhost:9464).
    #[arg(long, value_name = "ADDR", value_parser = listen_address)]
    metrics: Option<String>,
}

/// `HOST:PORT`, the host a name or an IP address (`[::1]:9464`): its form is checked here, the
/// host resolved when the server starts.
fn listen_address(text: &str) -> Result<String, String> {
    let expected = "expected HOST:PORT, e.g. 127.0.0.1:9464";
    let (host, port) = text.rsplit_once(':').ok_or(expected)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(expected.into());
    }
    Ok(text.to_string())
}

/// How often the backlog is counted while the poller is busy: counting the ready events reads
/// the event table, too much to do for every batch.
const BUSY_REFRESH: Duration = Duration::from_secs(5);
/// ... and at most this often while it is idle.
const IDLE_REFRESH: Duration = Duration::from_secs(1);

/// What a running poll tells the world: the metrics (`--metrics`) and, under systemd, its
/// status line and watchdog pings.
struct Report {
    metrics: Option<(Arc<Metrics>, Arc<Health>)>,
    service: Service,
    refreshed: Option<Instant>,
    /// The last count of the backlog.
    counted: Option<(ReadyBacklog, RetryBacklog)>,
    /// Events processed since the start, each counted once.
    processed: u64,
    /// Why the last reload was refused, until one succeeds.
    refused: Option<String>,
}

impl Report {
    fn health(&self) -> Option<&Health> {
        self.metrics.as_ref().map(|(_, h)| h.as_ref())
    }

    /// Counts the backlog if the last count is older than `every` (and anyone is told of it):
    /// the metrics' gauges and the status line. The retry backlog, when it was counted now.
    fn refresh(&mut self, store: &mut dyn EventStore, every: Duration) -> Option<RetryBacklog> {
        if self.metrics.is_none() && !self.service.enabled() {
            return None;
        }
        if self.refreshed.is_some_and(|r| r.elapsed() < every) {
            return None;
        }
        self.refreshed = Some(Instant::now());
        let counted = store
            .ready_backlog()
            .and_then(|ready| Ok((ready, store.retry_backlog()?)));
        match counted {
            Ok((ready, retry)) => {
                if let Some((metrics, _)) = &self.metrics {
                    metrics.ready_backlog(ready);
                    metrics.retry_backlog(retry.events);
                }
                self.counted = Some((ready, retry));
                self.tell();
                Some(retry)
            }
            Err(e) => {
                debug!(error = %e, "could not count the backlog");
                None
            }
        }
    }

    /// Updates `systemctl status`'s line: `12 ready (oldest 3s), 0 waiting for a retry; 1520
    /// processed`, and why the last reload was refused, if it was.
    fn tell(&mut self) {
        let mut status = match self.counted {
            Some((ready, retry)) => {
                let oldest = match ready.oldest_age_seconds {
                    Some(age) if ready.events > 0 => format!(
                        " (oldest {})",
                        humantime::format_duration(Duration::from_secs(age as u64))
                    ),
                    _ => String::new(),
                };
                format!(
                    "{} ready{oldest}, {} waiting for a retry; {} processed",
                    ready.events, retry.events, self.processed
                )
            }
            None => format!("polling; {} processed", self.processed),
        };
        if let Some(reason) = &self.refused {
            status += &format!("; configuration not reloaded: {reason}");
        }
        self.service.status(status);
    }
}

pub fn run(ctx: &Context, args: PollArgs) -> Result<ExitCode> {
    let mut config = ctx.config()?;
    let stop = shutdown_flag()?;
    let reload = reload::reload_flag()?;
    let mut service = Service::from_env();
    let Some(mut poller) = start_when_reachable(&config, &stop, &mut service)? else {
        service.notifier().stopping();
        info!("stopped before the database could be reached");
        return Ok(ExitCode::SUCCESS);
    };
    // The poller a stop gives up on: the one running then, also after a reload.
    let stopper = Arc::new(Mutex::new(poller.stopper()));
    {
        let notifier = service.notifier();
        let stopper = Arc::clone(&stopper);
        super::give_up_after_grace(
            &stop,
            move || notifier.stopping(),
            move || lock(&stopper).give_up(),
        );
    }
    let mut interval = args.interval.unwrap_or(config.poll.interval);
    let metrics = match args.metrics {
        Some(addr) => {
            let metrics = Arc::new(Metrics::new());
            // Unhealthy once the database has been unreachable for about ten intervals.
            let health = Arc::new(Health::new((interval * 10).max(Duration::from_secs(1))));
            let bound = trigpoll::metrics::serve(&addr, Arc::clone(&metrics), Arc::clone(&health))?;
            info!(address = %bound, "serving /metrics and /healthz");
            poller.set_metrics(Arc::clone(&metrics));
            Some((metrics, health))
        }
        None => None,
    };
    let mut report = Report {
        metrics,
        service,
        refreshed: None,
        counted: None,
        processed: 0,
        refused: None,
    };
    let mut pruner = config.archive.retention.map(Pruner::new);
    report.refresh(poller.store(), IDLE_REFRESH);
    report.service.ready();
    info!(?interval, "polling");
    while !stopping(&stop) {
        if reload.swap(false, Ordering::Relaxed) {
            report.service.reloading();
            match reload::reload(ctx, &config) {
                Ok((new, mut next)) => {
                    if let Some((metrics, _)) = &report.metrics {
                        next.set_metrics(Arc::clone(metrics));
                    }
                    *lock(&stopper) = next.stopper();
                    // The batch in hand is finished; the old poller gives back the one it
                    // claimed ahead, to be delivered by the new connectors.
                    drop(std::mem::replace(&mut poller, next));
                    let (added, removed) = reload::connector_changes(&config, &new);
                    info!(
                        objects = new.objects.len(),
                        connectors = new.connectors.len(),
                        ?added,
                        ?removed,
                        "configuration reloaded"
                    );
                    if new.archive.retention != config.archive.retention {
                        pruner = new.archive.retention.map(Pruner::new);
                    }
                    interval = args.interval.unwrap_or(new.poll.interval);
                    config = new;
                    report.refused = None;
                }
                Err(reason) => {
                    error!("configuration not reloaded, the running one stays: {reason}");
                    report.refused = Some(reason);
                }
            }
            report.refreshed = None;
            report.tell();
            report.refresh(poller.store(), IDLE_REFRESH);
            report.service.ready();
        }
        report.service.alive();
        // A connection that stays lost is worth retrying forever in a long-running poller.
        let tally = match batch_with_reconnect(
            &mut poller,
            &stop,
            Duration::MAX,
            report.metrics.as_ref().map(|(_, h)| h.as_ref()),
            Some(&mut report.service),
        ) {
            Ok(t) => t,
            Err(e) => {
                error!(error = %format!("{e:#}"), "batch failed; trying again after the interval");
                sleep_unless_stopped(&stop, interval);
                continue;
            }
        };
        report.processed += tally.distinct_events();
        if let Some(p) = &mut pruner {
            if let Err(e) = p.step(poller.store()) {
                warn!(error = %e, "pruning the archive failed; trying again later");
            }
        }
        let pruning = pruner.as_ref().is_some_and(Pruner::busy);
        if tally.claimed_any() || pruning {
            report.refresh(poller.store(), BUSY_REFRESH);
            continue;
        }
        // Idle: sleep until the interval passes, a retry is due, the database says new events
        // arrived or a reload is asked for. Errors here are noticed (and reconnected) by the
        // next batch.
        let due = match report.refresh(poller.store(), IDLE_REFRESH) {
            Some(backlog) => backlog.next_due,
            None => poller.store().retry_backlog().ok().and_then(|b| b.next_due),
        };
        let idle = due.map_or(interval, |d| d.min(interval));
        let until = Instant::now() + idle;
        while !stopping(&stop) && !reload.load(Ordering::Relaxed) {
            report.service.alive();
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let woken = poller
                .store()
                .wait_for_events(left.min(Duration::from_millis(250)));
            match &woken {
                Err(StoreError::Connection(_)) => {
                    if let Some(h) = report.health() {
                        h.unreachable();
                    }
                }
                Err(_) => {}
                Ok(_) => {
                    if let Some(h) = report.health() {
                        h.reachable();
                    }
                    report.refresh(poller.store(), BUSY_REFRESH);
                }
            }
            match woken {
                Ok(false) => {}
                Ok(true) => break,
                Err(e) => {
                    debug!(error = %e, "waiting for events failed");
                    sleep_unless_stopped(&stop, left);
                    break;
                }
            }
        }
    }
    report.service.notifier().stopping();
    info!(events = report.processed, "stopped");
    Ok(ExitCode::SUCCESS)
}

/// Opens the store as [`open_store_for_delivery`] does and starts the poller on it, waiting for
/// a database that cannot be reached yet (starting after trigpoll at boot, or restarting,
/// also between connecting and starting) as a running poller waits for a lost one: it tries
/// again with backoff, logging why, until it answers or a stop comes (then `None`). Anything
/// else, such as missing tables, ends the run at once.
fn start_when_reachable(
    config: &trigpoll::config::Config,
    stop: &std::sync::atomic::AtomicBool,
    service: &mut Service,
) -> Result<Option<Poller>> {
    let mut backoff = Backoff::new();
    loop {
        let started =
            open_store_for_delivery(config).and_then(|store| Ok(Poller::new(config, store)?));
        let reason = match started {
            Ok(poller) => return Ok(Some(poller)),
            Err(e) => match connection_lost(&e) {
                Some(reason) => reason.to_string(),
                None => return Err(e),
            },
        };
        let delay = backoff.next();
        warn!(%reason, retry_in = ?delay, "database not reachable; poll waits for it");
        service.starting(format!("waiting for the database: {reason}"));
        service.alive();
        sleep_unless_stopped(stop, delay);
        if stopping(stop) {
            return Ok(None);
        }
    }
}

/// The reason, when `e` is a database connection that could not be made or was lost.
fn connection_lost(e: &anyhow::Error) -> Option<&str> {
    let store = match e.downcast_ref::<StartError>() {
        Some(StartError::Store(store)) => Some(store),
        _ => e.downcast_ref::<StoreError>(),
    };
    match store {
        Some(StoreError::Connection(reason)) => Some(reason),
        _ => None,
    }
}

/// The stopper stays usable whatever panicked while holding it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::connection_lost;
    use trigpoll::poller::StartError;
    use trigpoll::store::StoreError;

    /// A connection lost while the poller starts (its catalogue reads, its second connection) is
    /// waited for like one that could not be made; nothing else is.
    #[test]
    fn only_connection_errors_are_waited_for() {
        let lost = || StoreError::Connection("connection closed".into());
        let starting = anyhow::Error::from(StartError::Store(lost()));
        assert_eq!(connection_lost(&starting), Some("connection closed"));
        let opening = anyhow::Error::from(lost()).context("opening the store");
        assert_eq!(connection_lost(&opening), Some("connection closed"));
        for other in [
            anyhow::Error::from(StartError::Store(StoreError::Database("denied".into()))),
            anyhow::Error::from(StartError::Config("no such column".into())),
            anyhow::Error::from(StoreError::Invalid("bad".into())),
            anyhow::anyhow!("the event table does not exist"),
        ] {
            assert_eq!(connection_lost(&other), None, "{other:#}");
        }
    }
}

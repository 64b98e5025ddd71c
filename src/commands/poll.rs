//! `poll`: run until SIGINT/SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use tracing::{debug, error, info, warn};
use trigpoll::metrics::{Health, Metrics};
use trigpoll::poller::Poller;
use trigpoll::store::{EventStore, RetryBacklog, StoreError};

use super::prune::Pruner;
use super::{
    batch_with_reconnect, open_store_for_delivery, shutdown_flag, sleep_unless_stopped, stopping,
    Context,
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

/// How often the backlog gauges are refreshed while the poller is busy: counting the ready
/// events reads the event table, too much to do for every batch.
const BUSY_REFRESH: Duration = Duration::from_secs(5);
/// ... and at most this often while it is idle.
const IDLE_REFRESH: Duration = Duration::from_secs(1);

/// The metrics of a poll with `--metrics`.
struct Observed {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    refreshed: Option<Instant>,
}

impl Observed {
    /// Refreshes the backlog gauges if they are older than `every`.
    /// The retry backlog, when it was counted now.
    fn refresh(&mut self, store: &mut dyn EventStore, every: Duration) -> Option<RetryBacklog> {
        if self.refreshed.is_some_and(|r| r.elapsed() < every) {
            return None;
        }
        self.refreshed = Some(Instant::now());
        let counted = store.ready_backlog().and_then(|ready| {
            self.metrics.ready_backlog(ready);
            store.retry_backlog()
        });
        match counted {
            Ok(retry) => {
                self.metrics.retry_backlog(retry.events);
                Some(retry)
            }
            Err(e) => {
                debug!(error = %e, "could not count the backlog");
                None
            }
        }
    }
}

pub fn run(ctx: &Context, args: PollArgs) -> Result<ExitCode> {
    let config = ctx.config()?;
    let interval = args.interval.unwrap_or(config.poll.interval);
    let stop = shutdown_flag()?;
    let mut poller = Poller::new(&config, open_store_for_delivery(&config)?)?;
    super::give_up_after_grace(&stop, poller.stopper());
    let mut observed = match args.metrics {
        Some(addr) => {
            let metrics = Arc::new(Metrics::new());
            // Unhealthy once the database has been unreachable for about ten intervals.
            let health = Arc::new(Health::new((interval * 10).max(Duration::from_secs(1))));
            let bound = trigpoll::metrics::serve(&addr, Arc::clone(&metrics), Arc::clone(&health))?;
            info!(address = %bound, "serving /metrics and /healthz");
            poller.set_metrics(Arc::clone(&metrics));
            Some(Observed {
                metrics,
                health,
                refreshed: None,
            })
        }
        None => None,
    };
    let mut pruner = config.archive.retention.map(Pruner::new);
    info!(?interval, "polling");
    let mut processed = 0u64;
    while !stopping(&stop) {
        let health = observed.as_ref().map(|o| o.health.as_ref());
        // A connection that stays lost is worth retrying forever in a long-running poller.
        let tally = match batch_with_reconnect(&mut poller, &stop, Duration::MAX, health) {
            Ok(t) => t,
            Err(e) => {
                error!(error = %format!("{e:#}"), "batch failed; trying again after the interval");
                sleep_unless_stopped(&stop, interval);
                continue;
            }
        };
        processed += tally.distinct_events();
        if let Some(p) = &mut pruner {
            if let Err(e) = p.step(poller.store()) {
                warn!(error = %e, "pruning the archive failed; trying again later");
            }
        }
        let pruning = pruner.as_ref().is_some_and(Pruner::busy);
        if tally.claimed_any() || pruning {
            if let Some(o) = &mut observed {
                o.refresh(poller.store(), BUSY_REFRESH);
            }
            continue;
        }
        // Idle: sleep until the interval passes, a retry is due or the database says new
        // events arrived. Errors here are noticed (and reconnected) by the next batch.
        let counted = observed
            .as_mut()
            .and_then(|o| o.refresh(poller.store(), IDLE_REFRESH));
        let due = match counted {
            Some(backlog) => backlog.next_due,
            None => poller.store().retry_backlog().ok().and_then(|b| b.next_due),
        };
        let idle = due.map_or(interval, |d| d.min(interval));
        let until = Instant::now() + idle;
        while !stopping(&stop) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let woken = poller
                .store()
                .wait_for_events(left.min(Duration::from_millis(250)));
            if let Some(o) = &mut observed {
                match &woken {
                    Err(StoreError::Connection(_)) => o.health.unreachable(),
                    Err(_) => {}
                    Ok(_) => {
                        o.health.reachable();
                        o.refresh(poller.store(), BUSY_REFRESH);
                    }
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
    info!(events = processed, "stopped");
    Ok(ExitCode::SUCCESS)
}

//! `poll`: run until SIGINT/SIGTERM.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use tracing::{debug, error, info};
use trigpoll::poller::Poller;

use super::{
    batch_with_reconnect, open_installed_store, shutdown_flag, sleep_unless_stopped, stopping,
    Context,
};

#[derive(Args)]
pub struct PollArgs {
    /// How long to sleep when idle (overrides poll.interval); new events wake the poller
    /// earlier where the database can say so (PostgreSQL).
    #[arg(long, value_parser = humantime::parse_duration)]
    interval: Option<Duration>,
}

pub fn run(ctx: &Context, args: PollArgs) -> Result<ExitCode> {
    let config = ctx.config()?;
    let interval = args.interval.unwrap_or(config.poll.interval);
    let stop = shutdown_flag()?;
    let mut poller = Poller::new(&config, open_installed_store(&config)?)?;
    super::give_up_after_grace(&stop, poller.stopper());
    info!(?interval, "polling");
    let mut processed = 0u64;
    while !stopping(&stop) {
        // A connection that stays lost is worth retrying forever in a long-running poller.
        let tally = match batch_with_reconnect(&mut poller, &stop, Duration::MAX) {
            Ok(t) => t,
            Err(e) => {
                error!(error = %format!("{e:#}"), "batch failed; trying again after the interval");
                sleep_unless_stopped(&stop, interval);
                continue;
            }
        };
        processed += tally.events;
        if tally.claimed_any() {
            continue;
        }
        // Idle: sleep until the interval passes, a retry is due or the database says new
        // events arrived. Errors here are noticed (and reconnected) by the next batch.
        let due = poller.store().retry_backlog().ok().and_then(|b| b.next_due);
        let idle = due.map_or(interval, |d| d.min(interval));
        let until = Instant::now() + idle;
        while !stopping(&stop) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match poller
                .store()
                .wait_for_events(left.min(Duration::from_millis(250)))
            {
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

//! `drain`: process until no event is ready, then exit with one summary line.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use trigpoll::poller::{Poller, Tally};

use super::{
    batch_with_reconnect, open_store_for_delivery, shutdown_flag, sleep_unless_stopped, stopping,
    Context,
};

#[derive(Args)]
pub struct DrainArgs {
    /// Claim at most this many events (an event retried within the run counts again).
    #[arg(long)]
    max_events: Option<u64>,
    /// Stop after this long (e.g. 4m): no new batch is claimed, and the batch in hand gets 5
    /// seconds to finish before it is given back, as on SIGTERM.
    #[arg(long, value_parser = humantime::parse_duration)]
    max_time: Option<Duration>,
    /// Wait for events held back for a retry instead of leaving them for the next run.
    #[arg(long)]
    wait: bool,
}

pub fn run(ctx: &Context, args: DrainArgs) -> Result<ExitCode> {
    let mut config = ctx.config()?;
    // A drain works through what is ready as fast as it can; lingering is for a running poll.
    config.poll.linger = Duration::ZERO;
    let stop = shutdown_flag()?;
    let mut poller = Poller::new(&config, open_store_for_delivery(&config)?)?;
    let stopper = poller.stopper();
    super::give_up_after_grace(&stop, || {}, move || stopper.give_up());
    let started = Instant::now();
    if let Some(limit) = args.max_time {
        stop_at_time_limit(&stop, limit);
    }
    if let Some(events) = args.max_events {
        poller.limit_claims(events);
    }
    let bar = if ctx.quiet || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        // Only for the bar: counting the backlog costs a scan of the event table.
        let ready: u64 = poller
            .store()
            .status()?
            .backlog
            .iter()
            .map(|b| b.ready)
            .sum();
        progress_bar(ready)
    };
    super::show_progress(Some(bar.clone()));
    let mut tally = Tally::default();
    while !stopping(&stop) {
        let batch = batch_with_reconnect(&mut poller, &stop, Duration::from_secs(30), None, None)?;
        tally.add(batch);
        let done = tally.distinct_events();
        if bar.length().is_some_and(|len| done > len) {
            bar.set_length(done);
        }
        bar.set_position(done);
        if stopping(&stop) {
            break;
        }
        if !batch.claimed_any() {
            if poller.claim_limit_reached() {
                break;
            }
            let backlog = poller.store().retry_backlog()?;
            match backlog.next_due {
                Some(due) if args.wait => {
                    sleep_unless_stopped(&stop, due.max(Duration::from_millis(50)))
                }
                _ => break,
            }
        }
    }
    bar.finish_and_clear();
    super::show_progress(None);
    let waiting = match poller.store().retry_backlog() {
        Ok(backlog) => backlog.events,
        // A stop may have cancelled the question; the summary line comes anyway.
        Err(_) if stopping(&stop) => 0,
        Err(e) => return Err(e.into()),
    };
    let secs = started.elapsed().as_secs_f64();
    let events = tally.distinct_events();
    let line = format!(
        "drained {} in {:.1}s ({} events/s): {} sent, {} unsubscribed, {} failed, {} error, {} not found, {} waiting for retry",
        super::counted(events, "event", "events"),
        secs,
        rate(events as f64 / secs.max(1e-9)),
        tally.sent,
        tally.unsubscribed,
        tally.failed,
        tally.errors,
        tally.not_found,
        waiting
    );
    // What exit code 3 reports: under -q the summary is only for a run that ended with it.
    let attention = tally.failed > 0 || tally.errors > 0;
    if ctx.json {
        macro_rules! summary {
            ($level:ident) => {
                tracing::$level!(
                    events,
                    seconds = secs,
                    sent = tally.sent,
                    unsubscribed = tally.unsubscribed,
                    failed = tally.failed,
                    error = tally.errors,
                    not_found = tally.not_found,
                    waiting_for_retry = waiting,
                    "{line}"
                )
            };
        }
        // A warning when it needs attention: -q (warnings only) shows it then.
        match attention {
            true => summary!(warn),
            false => summary!(info),
        }
    } else if attention || !ctx.quiet {
        eprintln!("{line}");
    }
    Ok(if attention {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// At the time limit, stops the run as the first SIGTERM does: no new batch, and the batch in
/// hand has [`super::STOP_GRACE`] before it is given up (`give_up_after_grace`), so the run ends
/// a few seconds after the limit whatever its receivers do.
fn stop_at_time_limit(stop: &Arc<AtomicBool>, limit: Duration) {
    let stop = Arc::clone(stop);
    std::thread::spawn(move || {
        sleep_unless_stopped(&stop, limit);
        if !stopping(&stop) {
            tracing::info!(limit = ?limit, "time limit reached: stopping");
            stop.store(true, Ordering::Relaxed);
        }
    });
}

/// A rate with two significant digits below 10 (`0.52`, `3.4`), whole above: a drain of a few
/// events over retries should not read "0 events/s".
fn rate(per_second: f64) -> String {
    if per_second >= 10.0 || per_second == 0.0 {
        format!("{per_second:.0}")
    } else {
        let decimals = (1.0 - per_second.log10().floor()).max(1.0) as usize;
        format!("{per_second:.decimals$}")
    }
}

fn progress_bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events, {elapsed} elapsed, eta {eta}")
            .expect("the template is valid"),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::rate;

    #[test]
    fn rates_keep_two_significant_digits_below_ten() {
        assert_eq!(rate(3000.4), "3000");
        assert_eq!(rate(12.6), "13");
        assert_eq!(rate(3.44), "3.4");
        assert_eq!(rate(0.52), "0.52");
        assert_eq!(rate(0.0123), "0.012");
        assert_eq!(rate(0.0), "0");
    }
}

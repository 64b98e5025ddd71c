//! `prune`: delete archive rows older than the retention, in small batches.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use tracing::info;
use trigpoll::event::Status;
use trigpoll::store::{EventStore, StoreError};

use super::{open_installed_store, print, shutdown_flag, stopping, Context, UsageError};

/// Rows deleted per statement: each batch is its own short transaction, so neither the
/// application's writers nor the poller wait long for the locks it takes.
pub const BATCH: usize = 1000;

/// What `prune` deletes unless told otherwise: failures stay until someone names them.
pub const DEFAULT_STATUSES: [Status; 2] = [Status::Sent, Status::Unsubscribed];

#[derive(Args)]
pub struct PruneArgs {
    /// Delete rows processed longer ago than this (e.g. 30d, 12h); default: archive.retention.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    older_than: Option<Duration>,
    /// Only rows with this archive status: sent, unsubscribed, error, failed, not-found or a
    /// code (repeatable; default sent and unsubscribed).
    #[arg(long, value_name = "NAME", allow_negative_numbers = true)]
    status: Vec<String>,
    /// Print how many rows would be deleted and delete nothing.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(ctx: &Context, args: PruneArgs) -> Result<ExitCode> {
    let config = ctx.config()?;
    let older_than = args
        .older_than
        .or(config.archive.retention)
        .ok_or_else(|| {
            UsageError(
                "prune needs --older-than (e.g. --older-than 30d) or `retention` under \
                 [archive] in the configuration"
                    .into(),
            )
        })?;
    let statuses = statuses(&args.status)?;
    let names: Vec<&str> = statuses.iter().map(|s| s.name()).collect();
    let age = age(older_than);
    let mut store = open_installed_store(&config)?;
    if args.dry_run {
        let count = store.count_prunable(older_than, &statuses)?;
        print(&format!(
            "would prune {} ({}) processed more than {age} ago\n",
            super::counted(count, "archive row", "archive rows"),
            names.join(", ")
        ))?;
        return Ok(ExitCode::SUCCESS);
    }
    let stop = shutdown_flag()?;
    let started = Instant::now();
    let mut deleted = 0;
    while !stopping(&stop) {
        let batch = store.prune(older_than, &statuses, BATCH)?;
        deleted += batch;
        if batch < BATCH as u64 {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let line = format!(
        "pruned {} ({}) processed more than {age} ago, in {seconds:.1}s",
        super::counted(deleted, "archive row", "archive rows"),
        names.join(", "),
    );
    if ctx.json {
        info!(rows = deleted, statuses = %names.join(","), older_than = %age, seconds, "{line}");
    } else if !ctx.quiet {
        eprintln!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// A duration as people write it: `30 days`, `12h`, `1 day 6h` (humantime writes `30days`).
fn age(duration: Duration) -> String {
    humantime::format_duration(duration)
        .to_string()
        .split(' ')
        .map(|part| {
            let unit = part.trim_start_matches(|c: char| c.is_ascii_digit());
            match unit.len() > 2 {
                true => format!("{} {unit}", &part[..part.len() - unit.len()]),
                false => part.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `--status` values: archive statuses only.
fn statuses(given: &[String]) -> Result<Vec<Status>, UsageError> {
    if given.is_empty() {
        return Ok(DEFAULT_STATUSES.to_vec());
    }
    let mut statuses = Vec::new();
    for text in given {
        let status = Status::parse(text)
            .filter(|s| !matches!(s, Status::Ready | Status::InProgress))
            .ok_or_else(|| {
                UsageError(format!(
                    "--status {text:?}: expected sent, unsubscribed, error, failed or not-found"
                ))
            })?;
        if !statuses.contains(&status) {
            statuses.push(status);
        }
    }
    Ok(statuses)
}

/// The pruning a running `poll` does with `archive.retention`: a pass when it starts and then
/// every hour, one batch at a time between event batches, so that delivery never waits for
/// more than one short statement.
pub struct Pruner {
    retention: Duration,
    next_pass: Instant,
    in_pass: bool,
    deleted: u64,
}

/// How often `poll` prunes.
pub const EVERY: Duration = Duration::from_secs(3600);

impl Pruner {
    pub fn new(retention: Duration) -> Self {
        Pruner {
            retention,
            next_pass: Instant::now(),
            in_pass: false,
            deleted: 0,
        }
    }

    /// Deletes one batch when a pass is due or under way.
    pub fn step(&mut self, store: &mut dyn EventStore) -> Result<(), StoreError> {
        if !self.in_pass {
            if Instant::now() < self.next_pass {
                return Ok(());
            }
            self.in_pass = true;
            self.deleted = 0;
        }
        let batch = store.prune(self.retention, &DEFAULT_STATUSES, BATCH)?;
        self.deleted += batch;
        if batch < BATCH as u64 {
            self.in_pass = false;
            self.next_pass = Instant::now() + EVERY;
            if self.deleted > 0 {
                info!(
                    rows = self.deleted,
                    retention = %age(self.retention),
                    "pruned the archive"
                );
            }
        }
        Ok(())
    }

    /// Whether a pass is under way: the poller should not sleep before it is done.
    pub fn busy(&self) -> bool {
        self.in_pass
    }
}

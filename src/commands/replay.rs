//! `replay`: re-enqueue archived events.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use clap::Args;
use tracing::info;
use trigpoll::config::Config;
use trigpoll::event::Status;
use trigpoll::store::{ReplayFilter, Replayed};

use super::{open_installed_store, print, Context, UsageError};

#[derive(Args)]
pub struct ReplayArgs {
    /// Event ids: `A..B` (inclusive) or one id.
    #[arg(long, value_name = "A..B")]
    event_id: Option<String>,
    /// Only this object (repeatable).
    #[arg(long)]
    object: Vec<String>,
    /// Only this verb (repeatable).
    #[arg(long)]
    verb: Vec<String>,
    /// Only this archive status: sent, unsubscribed, error, failed, not-found or a code
    /// (repeatable).
    #[arg(long, allow_negative_numbers = true)]
    status: Vec<String>,
    /// Processed at or after: RFC 3339 (`2026-11-22T10:00:00Z`) or a duration ago (`2h`).
    #[arg(long)]
    since: Option<String>,
    /// Processed before: RFC 3339 or a duration ago.
    #[arg(long)]
    until: Option<String>,
    /// At most this many events.
    #[arg(long)]
    limit: Option<u64>,
    /// Send to this connector only: replays its archive rows and those of events that never
    /// reached a connector (unsubscribed, error, not-found).
    #[arg(long, value_name = "ID")]
    connector: Option<String>,
    /// List what would be replayed and change nothing.
    #[arg(long)]
    dry_run: bool,
}

fn event_ids(text: &str) -> Result<(i64, i64), UsageError> {
    let bad = || {
        UsageError(format!(
            "--event-id {text:?}: expected A..B or one event id"
        ))
    };
    let (a, b) = text.split_once("..").unwrap_or((text, text));
    let a: i64 = a.trim().parse().map_err(|_| bad())?;
    let b: i64 = b.trim().parse().map_err(|_| bad())?;
    if a > b {
        return Err(bad());
    }
    Ok((a, b))
}

/// An RFC 3339 time, or a duration before now.
fn instant(flag: &str, text: &str) -> Result<String, UsageError> {
    if humantime::parse_rfc3339_weak(text).is_ok() {
        return Ok(text.to_string());
    }
    let ago: Duration = humantime::parse_duration(text).map_err(|_| {
        UsageError(format!(
            "{flag} {text:?}: expected an RFC 3339 time (2026-11-22T10:00:00Z) or a duration ago (2h)"
        ))
    })?;
    // Nothing was processed before 1970: a duration reaching further back means since then
    // (and RFC 3339 times before it cannot be written).
    let at = SystemTime::now()
        .checked_sub(ago)
        .filter(|at| *at >= SystemTime::UNIX_EPOCH)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Ok(humantime::format_rfc3339_micros(at).to_string())
}

pub fn run(ctx: &Context, args: ReplayArgs) -> Result<ExitCode> {
    let config = ctx.config()?;
    if let Some(id) = &args.connector {
        if !config.connectors.iter().any(|c| &c.id == id) {
            return Err(UsageError(format!("--connector {id}: no connector has this id")).into());
        }
    }
    let statuses = args
        .status
        .iter()
        .map(|s| {
            Status::parse(s)
                .filter(|s| !matches!(s, Status::Ready | Status::InProgress))
                .ok_or_else(|| {
                    UsageError(format!(
                        "--status {s:?}: expected sent, unsubscribed, error, failed or not-found"
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let filter = ReplayFilter {
        event_ids: args.event_id.as_deref().map(event_ids).transpose()?,
        objects: args.object,
        verbs: args.verb,
        statuses,
        connector: args.connector,
        since: args
            .since
            .as_deref()
            .map(|t| instant("--since", t))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(|t| instant("--until", t))
            .transpose()?,
        limit: args.limit,
    };
    let mut store = open_installed_store(&config)?;
    if filter.connector.is_none() {
        // Each row goes back to its own connector: one that is no longer configured would only
        // fail it again as an error. Look first, enqueue nothing if so.
        let chosen = store.replay(&filter, true)?;
        refuse_unconfigured(&chosen, &config)?;
    }
    let replayed = store.replay(&filter, args.dry_run)?;
    let mut text = String::new();
    for r in &replayed {
        text.push_str(&serde_json::to_string(r)?);
        text.push('\n');
    }
    print(&text)?;
    // An archived event has an archive row per connector, and each row becomes a new event.
    let events = replayed
        .iter()
        .map(|r| r.replay_of)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let rows = replayed.len();
    let what = format!(
        "{}: {}, one new event each",
        super::counted(events as u64, "archived event", "archived events"),
        super::counted(rows as u64, "archive row", "archive rows")
    );
    match args.dry_run {
        true => info!(events, archive_rows = rows, "dry run: would replay {what}"),
        false => info!(events, archive_rows = rows, "replayed {what}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuses a replay whose archive rows belong to connectors that are not configured.
fn refuse_unconfigured(chosen: &[Replayed], config: &Config) -> Result<(), UsageError> {
    let mut unknown: Vec<&str> = chosen
        .iter()
        .filter_map(|r| r.connector.as_deref())
        .filter(|id| !config.connectors.iter().any(|c| c.id == *id))
        .collect();
    unknown.sort_unstable();
    unknown.dedup();
    match unknown.as_slice() {
        [] => Ok(()),
        ids => Err(UsageError(format!(
            "replay refused, nothing was enqueued: archive rows of connector{} {} match, which {} \
             not configured; narrow the filters, or send them to a configured connector with \
             --connector ID",
            if ids.len() > 1 { "s" } else { "" },
            ids.join(", "),
            if ids.len() > 1 { "are" } else { "is" },
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_id_ranges() {
        assert_eq!(event_ids("5..9").unwrap(), (5, 9));
        assert_eq!(event_ids("7").unwrap(), (7, 7));
        assert!(event_ids("9..5").is_err());
        assert!(event_ids("a..b").is_err());
    }

    #[test]
    fn instants_take_rfc3339_or_a_duration_ago() {
        assert_eq!(
            instant("--since", "2026-11-22T10:00:00Z").unwrap(),
            "2026-11-22T10:00:00Z"
        );
        assert!(instant("--since", "2h").unwrap().ends_with('Z'));
        assert!(instant("--since", "yesterday-ish").is_err());
    }

    #[test]
    fn durations_reaching_before_1970_mean_since_1970() {
        // These panicked: a time before the epoch, and one SystemTime cannot hold.
        for ago in ["60y", "300000000000y"] {
            assert_eq!(
                instant("--until", ago).unwrap(),
                "1970-01-01T00:00:00.000000Z",
                "{ago}"
            );
        }
    }
}

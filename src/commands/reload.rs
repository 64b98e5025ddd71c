//! SIGHUP in `poll`: trigpoll.toml and the connector files are read again, and between two
//! batches a new poller takes over with them (README, *Under systemd*). A configuration that
//! `check` refuses, one that names another database or other tables, or one the poller cannot
//! start with (a new object's table missing) is refused, and the running one stays.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use trigpoll::config::{Config, DatabaseConfig};
use trigpoll::poller::Poller;

use super::{open_store_for_delivery, Context};

/// Set by SIGHUP, taken by the poll loop.
pub fn reload_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&flag))?;
    Ok(flag)
}

/// The configuration read again and a poller built on it, on a connection of its own; or why
/// not, in the words `check` (or `poll` starting) would use.
pub fn reload(ctx: &Context, running: &Config) -> Result<(Config, Poller), String> {
    let config = ctx.config().map_err(|e| format!("{e:#}"))?;
    let changed = database_changes(&running.database, &config.database);
    if !changed.is_empty() {
        return Err(format!(
            "{} changed: restart trigpoll to use another database or other tables",
            changed.join(" and ")
        ));
    }
    let store = open_store_for_delivery(&config).map_err(|e| format!("{e:#}"))?;
    let poller = Poller::new(&config, store).map_err(|e| e.to_string())?;
    Ok((config, poller))
}

/// The `[database]` keys whose value differs. The claims of the running poller, and the events
/// it tracks, are in the tables these name: a poller elsewhere is another process.
fn database_changes(running: &DatabaseConfig, new: &DatabaseConfig) -> Vec<&'static str> {
    [
        ("database.url", running.url != new.url),
        ("database.schema", running.schema != new.schema),
        (
            "database.event_table",
            running.event_table != new.event_table,
        ),
        (
            "database.archive_table",
            running.archive_table != new.archive_table,
        ),
    ]
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect()
}

/// The ids of the connectors `new` has and `running` has not, and of those it no longer has.
pub fn connector_changes(running: &Config, new: &Config) -> (Vec<String>, Vec<String>) {
    let ids = |c: &Config| -> Vec<String> { c.connectors.iter().map(|c| c.id.clone()).collect() };
    let (before, after) = (ids(running), ids(new));
    let added = after.iter().filter(|id| !before.contains(id)).cloned();
    let removed = before.iter().filter(|id| !after.contains(id)).cloned();
    (added.collect(), removed.collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use trigpoll::config::Secret;

    fn database(url: &str, schema: &str) -> DatabaseConfig {
        DatabaseConfig {
            url: Secret::new(url),
            schema: schema.to_string(),
            event_table: "trigpoll_event".to_string(),
            archive_table: "trigpoll_archive".to_string(),
            capture_role: None,
        }
    }

    #[test]
    fn another_database_or_schema_is_named() {
        let running = database("postgres://a/app", "trigpoll");
        assert!(database_changes(&running, &database("postgres://a/app", "trigpoll")).is_empty());
        assert_eq!(
            database_changes(&running, &database("postgres://b/app", "trigpoll")),
            ["database.url"]
        );
        assert_eq!(
            database_changes(&running, &database("postgres://b/app", "events")),
            ["database.url", "database.schema"]
        );
        let mut tables = database("postgres://a/app", "trigpoll");
        tables.archive_table = "old_events".to_string();
        assert_eq!(
            database_changes(&running, &tables),
            ["database.archive_table"]
        );
    }
}

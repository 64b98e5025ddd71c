//! Event stores: one module per backend behind the [`EventStore`] trait.
//!
//! A store owns one database connection. Every method is one short transaction (or none), so a
//! crash at any instant leaves the event table consistent: an event leaves it only in the
//! transaction that writes its archive rows.

use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::config::{Config, TableName, Verb};
use crate::event::{Event, Settlement, Status};
use crate::table::{Column, InstalledTrigger, TableInfo};

pub mod claim;
pub mod mysql;
pub mod postgres;
pub mod sqlite;
pub mod tls;

/// What went wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The connection is gone or could not be made; reconnecting may help.
    #[error("database connection: {0}")]
    Connection(String),
    /// Anything else the database refused.
    #[error("{0}")]
    Database(String),
    /// The configuration asks for something this database cannot do.
    #[error("{0}")]
    Invalid(String),
    /// The poller was told to stop and gave up what it was doing (its claims go back).
    #[error("stopped on request")]
    Stopped,
    /// The claim of the batch in hand (this many events) may have run out before it could be
    /// renewed: the batch was given up, and goes back.
    #[error("the claim of a batch of {0} events ran out")]
    LeaseLost(usize),
}

impl StoreError {
    /// This error, from making a connection, with its reason said by `cannot`. It stays a
    /// [`StoreError::Connection`] only when waiting may help (a server down or starting, `poll`
    /// waits for it); a refused password, a missing database or a certificate that does not
    /// verify becomes a [`StoreError::Database`] error: it needs a person.
    pub(crate) fn connecting(self, cannot: impl Fn(&str) -> String) -> StoreError {
        match self {
            StoreError::Connection(m) => StoreError::Connection(cannot(&m)),
            StoreError::Database(m) | StoreError::Invalid(m) => StoreError::Database(cannot(&m)),
            other => StoreError::Database(cannot(&other.to_string())),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A JSON object, as parsed.
pub type JsonObject = serde_json::Map<String, serde_json::Value>;

/// One child row: its attributes, and the columns its own children refer to, as text.
#[derive(Debug, Clone)]
pub struct ChildRow {
    pub attributes: Box<RawValue>,
    pub carry: Vec<Option<String>>,
}

/// The row fetched for one key.
#[derive(Debug, Clone)]
pub enum Fetched {
    /// The row's columns as a JSON object, with JSON types.
    Row(Box<RawValue>),
    /// No row has this key any more.
    Missing,
    /// The key's values do not fit the key columns (e.g. `emp_id=abc` for an integer).
    Invalid(String),
}

impl PartialEq for Fetched {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Fetched::Row(a), Fetched::Row(b)) => a.get() == b.get(),
            (Fetched::Missing, Fetched::Missing) => true,
            (Fetched::Invalid(a), Fetched::Invalid(b)) => a == b,
            _ => false,
        }
    }
}

/// Replay filters (docs/guarantees.md). Every set filter must match.
#[derive(Debug, Clone, Default)]
pub struct ReplayFilter {
    pub event_ids: Option<(i64, i64)>,
    pub objects: Vec<String>,
    pub verbs: Vec<String>,
    pub statuses: Vec<Status>,
    /// Only rows of this connector or of none (events that never reached a connector), and
    /// every replayed event goes to this connector. Unset: each row goes to its own connector.
    pub connector: Option<String>,
    /// RFC 3339 bounds on `event_processed`.
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<u64>,
}

/// One event a replay re-enqueues (or would, in a dry run).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Replayed {
    pub replay_of: i64,
    pub object: String,
    pub verb: String,
    pub key: String,
    pub connector: Option<String>,
    pub new_event_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BacklogRow {
    pub object: String,
    pub verb: String,
    pub priority: i32,
    pub ready: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StoreStatus {
    pub backlog: Vec<BacklogRow>,
    pub oldest_ready_age_seconds: Option<f64>,
    pub in_progress: u64,
    pub retrying: u64,
    /// Events held behind an earlier event of their key that waits for its retry.
    pub held: u64,
    pub archived_failed: u64,
    pub archived_error: u64,
    pub archived_not_found: u64,
}

/// Events held back for a later attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RetryBacklog {
    pub events: u64,
    /// How long until the first of them is due.
    pub next_due: Option<Duration>,
}

/// The events ready to be claimed now, for the metrics gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReadyBacklog {
    pub events: u64,
    /// Age of the oldest of them, in seconds.
    pub oldest_age_seconds: Option<f64>,
}

/// Cancels the statement a store's connection is running, from another thread: what a poller
/// told to stop does with a statement that keeps it waiting (a lock, a slow server).
pub trait Interrupt: Send + Sync {
    fn interrupt(&self);
}

/// The operations trigpoll needs from a database.
pub trait EventStore: Send {
    /// The backend's name for messages: `postgresql`, `mysql`, `sqlite`.
    fn backend(&self) -> &'static str;

    /// Describes a table, or `None` when it does not exist.
    fn describe_table(&mut self, table: &TableName) -> Result<Option<TableInfo>>;

    /// The triggers trigpoll installed (found by their naming convention).
    fn installed_triggers(&mut self) -> Result<Vec<InstalledTrigger>>;

    /// Why this account cannot see the capture triggers of `table`, when it cannot (MySQL shows
    /// triggers only to accounts with the TRIGGER privilege on their table); `None` when it can.
    fn triggers_hidden(&mut self, _table: &TableName) -> Result<Option<String>> {
        Ok(None)
    }

    /// What `install-triggers` should change in trigpoll's own tables made by an earlier version
    /// that still work as they are: each step's description and its statements.
    fn table_upgrades(&mut self) -> Result<Vec<(String, Vec<String>)>> {
        Ok(Vec::new())
    }

    /// The functions `condition` (a `when` of `verb` on `table`) calls that a role other than
    /// the one the condition runs as may replace, each with that role: whoever may replace one
    /// may run code with the capture's rights. Changes nothing.
    fn replaceable_functions(
        &mut self,
        _table: &TableInfo,
        _verb: Verb,
        _condition: &str,
    ) -> Result<Vec<(String, String)>> {
        Ok(Vec::new())
    }

    /// Capture routines of trigpoll's that no trigger runs any more (PostgreSQL: left by an
    /// object renamed or removed), qualified and quoted.
    fn leftover_routines(&mut self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// What removes trigpoll's own schema objects besides its tables and capture routines
    /// (helper functions), and the schema itself (PostgreSQL) or database (MySQL) when nothing
    /// else is left in it: run after the tables are dropped. Never the application's database,
    /// nor PostgreSQL's `public`.
    fn drop_own_schema(&mut self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// Runs DDL statements, in one transaction where the database allows it.
    fn execute_ddl(&mut self, statements: &[String]) -> Result<()>;

    /// Whether the database takes `condition` (a `when` of `verb`, over `NEW.`/`OLD.`) in a
    /// trigger on `table`: `Some(its message)` when it refuses it. Changes nothing.
    fn check_condition(
        &mut self,
        table: &TableInfo,
        verb: Verb,
        condition: &str,
    ) -> Result<Option<String>>;

    /// Claims up to `limit` ready events, highest priority first, then oldest, keeping each
    /// key's order ([`claim`]): an event only with every earlier event of its key, unless
    /// those are already in progress under this store's claim token. A batch may hold many
    /// events of one key, and the earlier events of lower priority that an urgent one takes
    /// along: [`EventStore::claim_capped`] bounds those.
    fn claim(&mut self, limit: usize) -> Result<Vec<Event>> {
        self.claim_capped(limit, usize::MAX)
    }

    /// [`EventStore::claim`], taking no more than `cap` events in all, the inherited ones too.
    fn claim_capped(&mut self, limit: usize, cap: usize) -> Result<Vec<Event>>;

    /// Fetches the current rows for the given key values (in the order of `key_columns`), in
    /// bulk: one answer per key, in the order of `keys`, with the row's `columns`.
    fn fetch_rows(
        &mut self,
        table: &TableInfo,
        key_columns: &[&Column],
        keys: &[Vec<Option<String>>],
        columns: &[Column],
    ) -> Result<Vec<Fetched>>;

    /// Fetches the rows of a child table for many parents in one query: for each parent (its
    /// key values in `keys`, matched against the child's `parent_keys`), its rows in `order_by`
    /// order, each with its `columns` (JSON types) and its `carry` columns as text.
    fn fetch_children(
        &mut self,
        table: &TableInfo,
        parent_keys: &[&Column],
        keys: &[Vec<Option<String>>],
        columns: &[Column],
        order_by: &[Column],
        carry: &[Column],
    ) -> Result<Vec<Vec<ChildRow>>>;

    /// Turns a captured row image (JSON text written by the trigger) into attributes.
    fn row_image(&self, table: &TableInfo, image: &str) -> Result<Box<RawValue>>;

    /// Adjusts values of `table`'s columns, as the database writes them in JSON, to the
    /// payload's JSON types (README, *The payload*).
    fn json_types(&self, table: &TableInfo, row: JsonObject) -> JsonObject;

    /// Writes the outcome of a batch in one transaction: archive rows, removal of the completed
    /// events (and release of the events held behind them), the retry state of the retried
    /// ones, and the held ones put back behind the event they wait for. Only events this store
    /// still holds a claim on are touched.
    fn finish(&mut self, settlement: &Settlement) -> Result<()>;

    /// Gives back every claim this store holds.
    fn release_claims(&mut self) -> Result<()>;

    /// Renews this store's claims on `ids` (a batch in hand: its claim is a lease of
    /// `claim_timeout`, README *Guarantees*); returns how many it still held. Fewer than asked:
    /// another poller took over some, after they had expired.
    fn renew_claims(&mut self, ids: &[i64]) -> Result<u64>;

    /// Another connection to the same database with the same claim token.
    fn another_connection(&self) -> Result<Box<dyn EventStore>>;

    /// Releases events held behind events that are gone from the event table (deleted by
    /// hand); returns how many.
    fn release_orphans(&mut self) -> Result<u64>;

    /// Events waiting for a retry or held behind one, and when the first retry is due.
    fn retry_backlog(&mut self) -> Result<RetryBacklog>;

    /// Re-enqueues archived events with `replay_of` set (or lists them, when `dry_run`), in
    /// event-id order so that per-key order holds.
    fn replay(&mut self, filter: &ReplayFilter, dry_run: bool) -> Result<Vec<Replayed>>;

    fn status(&mut self) -> Result<StoreStatus>;

    /// Blocks until new events may be ready or `timeout` passes, whichever is first; true when
    /// the database said new events arrived.
    fn wait_for_events(&mut self, timeout: Duration) -> Result<bool>;

    /// Replaces a lost connection, keeping this store's claim token.
    fn reconnect(&mut self) -> Result<()>;

    /// What cancels this store's statement in flight, whichever connection it has then.
    fn interrupter(&self) -> Box<dyn Interrupt>;

    /// A second connection to the same database with the same claim token, so that the next
    /// batch can be claimed and fetched while this one is delivered and finished. `None` where
    /// two connections gain nothing (SQLite lets one writer in at a time).
    fn sibling(&self) -> Option<Result<Box<dyn EventStore>>>;

    /// Deletes at most `limit` archive rows whose status is one of `statuses` and that were
    /// processed more than `older_than` ago (by the database's clock), in one short
    /// transaction; returns how many went. Called again until it returns less than `limit`.
    fn prune(&mut self, older_than: Duration, statuses: &[Status], limit: usize) -> Result<u64>;

    /// How many archive rows [`EventStore::prune`] would delete, all batches together.
    fn count_prunable(&mut self, older_than: Duration, statuses: &[Status]) -> Result<u64>;

    /// The ready backlog: one pass over the event table.
    fn ready_backlog(&mut self) -> Result<ReadyBacklog>;
}

/// Captured `changes` as the payload carries them, `{"col": {"old": …, "new": …}}` for each
/// changed column, with each value adjusted to the payload's JSON types: the old values, then
/// the new ones, each as one row through [`EventStore::json_types`].
///
/// The event table holds them in one of two forms (docs/tables.md): the changed columns in
/// that same shape (the MySQL and SQLite triggers, an application's own events), or the tracked
/// columns' values before and after, `[{"col": old, …}, {"col": new, …}]` (the PostgreSQL
/// trigger), of which the columns whose values differ, as text, are kept.
pub fn changes(store: &dyn EventStore, table: &TableInfo, text: &str) -> Result<Box<RawValue>> {
    changes_typed(|row| store.json_types(table, row), text)
}

/// [`changes`] with the backend's [`EventStore::json_types`] given as a function.
pub(crate) fn changes_typed(
    json_types: impl Fn(JsonObject) -> JsonObject,
    text: &str,
) -> Result<Box<RawValue>> {
    use serde_json::Value;
    const SIDES: [&str; 2] = ["old", "new"];
    let malformed = |why: &str| {
        StoreError::Database(format!(
            "captured changes are neither changed columns nor two row images: {why}"
        ))
    };
    // Each column in order, with the sides it has and what else its change holds (kept as it
    // was written, as is a change that is not an object).
    let mut columns: Vec<(String, [bool; 2], Value)> = Vec::new();
    let mut rows = [JsonObject::new(), JsonObject::new()];
    match serde_json::from_str::<Value>(text).map_err(|e| malformed(&e.to_string()))? {
        Value::Object(changes) => {
            for (column, change) in changes {
                let Value::Object(mut change) = change else {
                    columns.push((column, [false; 2], change));
                    continue;
                };
                let mut has = [false; 2];
                for (side, row) in rows.iter_mut().enumerate() {
                    if let Some(value) = change.remove(SIDES[side]) {
                        row.insert(column.clone(), value);
                        has[side] = true;
                    }
                }
                columns.push((column, has, Value::Object(change)));
            }
        }
        Value::Array(images) => {
            let Ok([Value::Object(mut old), Value::Object(new)]) = <[Value; 2]>::try_from(images)
            else {
                return Err(malformed("an array that is not two JSON objects"));
            };
            // A value differs when its text does, as the trigger's image comparison has it:
            // `1.0` is not `1.00`, and a `json` value rewritten with other spacing changed.
            type Raw = std::collections::BTreeMap<String, Box<RawValue>>;
            let raw: [Raw; 2] =
                serde_json::from_str(text).map_err(|e| malformed(&e.to_string()))?;
            let text_of = |side: usize, column: &str| raw[side].get(column).map(|v| v.get());
            for (column, after) in new {
                let before = old.remove(&column).unwrap_or(Value::Null);
                if text_of(0, &column) != text_of(1, &column) {
                    rows[0].insert(column.clone(), before);
                    rows[1].insert(column.clone(), after);
                    columns.push((column, [true; 2], Value::Object(JsonObject::new())));
                }
            }
        }
        _ => return Err(malformed("not a JSON object or array")),
    }
    let mut rows = rows.map(json_types);
    let mut changes = JsonObject::new();
    for (column, has, rest) in columns {
        let change = match rest {
            Value::Object(rest) => {
                let mut change = JsonObject::new();
                for side in (0..2).filter(|&side| has[side]) {
                    let value = rows[side].remove(&column).unwrap_or(Value::Null);
                    change.insert(SIDES[side].to_string(), value);
                }
                change.extend(rest);
                Value::Object(change)
            }
            written => written,
        };
        changes.insert(column, change);
    }
    Ok(attributes(&changes))
}

/// Parses a row as the database rendered it in JSON (a fetched row or a captured image).
pub(crate) fn json_object(text: &str) -> Result<serde_json::Map<String, serde_json::Value>> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Database(format!("row image is not a JSON object: {e}")))
}

/// A row's attributes as they go into the payload.
pub(crate) fn attributes(row: &serde_json::Map<String, serde_json::Value>) -> Box<RawValue> {
    serde_json::value::to_raw_value(row).expect("a JSON object serializes")
}

/// Opens the store named by the configuration's database URL.
pub fn open(config: &Config) -> Result<Box<dyn EventStore>> {
    let url = config.database.url.expose();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Box::new(postgres::PgStore::connect(config)?))
    } else if url.starts_with("mysql://") {
        Ok(Box::new(mysql::MysqlStore::connect(config)?))
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(Box::new(sqlite::SqliteStore::connect(config, path)?))
    } else {
        // Refused with the configuration already; the URL is never echoed (its password).
        Err(StoreError::Invalid(
            "database.url must start with postgres://, postgresql://, mysql:// or sqlite://"
                .to_string(),
        ))
    }
}

//! The SQLite event store: the embedded default.
//!
//! `database.url = "sqlite://path/to/file.db"` names the application's database file, as written
//! (relative to the current directory; `sqlite:///srv/app.db` is absolute). It must exist:
//! trigpoll captures an application's tables and never creates an empty database by mistake.
//! SQLite has no schemas: `database.schema` and the schema part of an object's `table` are
//! ignored, and every table is looked up in the main database (see [`crate::dialect::sqlite`]).
//!
//! Every connection puts the database in WAL mode (it stays so: WAL is a property of the file)
//! and waits up to [`BUSY_TIMEOUT`] for a lock. In WAL mode readers and the one writer do not
//! block each other, so the application keeps writing while a batch is fetched and delivered;
//! trigpoll's writes (claim, finish, replay) are short transactions that take the write lock up
//! front (`BEGIN IMMEDIATE`), so they queue behind the application's instead of failing halfway.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::types::Value as SqlValue;
use rusqlite::{
    params, params_from_iter, Connection, ErrorCode, InterruptHandle, OpenFlags,
    TransactionBehavior,
};
use serde_json::{Map, Value};

use crate::config::{Config, TableName, Verb};
use crate::dialect::sqlite::{self as sql, Affinity, Names, ValueRule};
use crate::event::{Event, Settlement, Status};
use crate::store::claim::{self, Keys, Neighbour};
use crate::store::{
    BacklogRow, ChildRow, EventStore, Fetched, Interrupt, JsonObject, ReadyBacklog, ReplayFilter,
    Replayed, Result, RetryBacklog, StoreError, StoreStatus,
};
use crate::table::{Column, ColumnKind, InstalledTrigger, TableInfo};

/// How long a statement waits for a lock another connection holds before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How often [`EventStore::wait_for_events`] looks for changes.
const WAIT_STEP: Duration = Duration::from_millis(50);

pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    names: Names,
    token: String,
    /// `'-300.000 seconds'`: the claim timeout as a time modifier.
    claim_timeout: String,
    /// `PRAGMA data_version` when events were last claimed; a change means another connection
    /// committed since.
    data_version: Option<i64>,
    /// Interrupts the statement the connection runs (see [`EventStore::interrupter`]).
    interrupt: Arc<Mutex<InterruptHandle>>,
}

struct SqliteInterrupt(Arc<Mutex<InterruptHandle>>);

impl Interrupt for SqliteInterrupt {
    fn interrupt(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).interrupt();
    }
}

fn err(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        // A lock held past the busy timeout, or a file that went away: trying again may help.
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure,
        ) => StoreError::Connection(e.to_string()),
        _ => StoreError::Database(e.to_string()),
    }
}

fn open_connection(path: &Path) -> Result<Connection> {
    // A relative path is taken from the current directory (not the configuration's folder):
    // say which file that was.
    let shown = match (path.is_relative(), std::env::current_dir()) {
        (true, Ok(dir)) => format!("{} ({})", path.display(), dir.join(path).display()),
        _ => path.display().to_string(),
    };
    // Waiting helps only with a lock held by another connection (`poll` waits for a database
    // it cannot reach yet); a missing file or one it may not open needs a person.
    let cannot =
        |reason: String| format!("cannot connect to the SQLite database {shown}: {reason}");
    match path.try_exists() {
        Ok(true) => {}
        Ok(false) => {
            return Err(StoreError::Database(cannot(
                "the file does not exist (trigpoll never creates the application's database)"
                    .to_string(),
            )))
        }
        Err(e) => return Err(StoreError::Database(cannot(e.to_string()))),
    }
    let cannot = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Connection(cannot(e.to_string()))
        }
        _ => StoreError::Database(cannot(e.to_string())),
    };
    // No SQLITE_OPEN_CREATE: a mistyped path must not become a new, empty database.
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(cannot)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(cannot)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(
            journal_mode = %mode,
            "the SQLite database cannot use WAL mode; the application's writes wait while trigpoll reads"
        );
    } else {
        // In WAL mode, NORMAL keeps every commit atomic and skips its fsync; a power cut may
        // undo trigpoll's last commits (never the application's), which only redelivers events:
        // an event still leaves the table in the same transaction as its archive rows.
        conn.execute_batch("PRAGMA synchronous = NORMAL")
            .map_err(err)?;
    }
    // A claim's and a batch's lookups of many keys build temporary tables: in memory, not in a
    // file of /var/tmp opened for every batch.
    conn.execute_batch("PRAGMA temp_store = MEMORY")
        .map_err(err)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens the database file at `path` (the URL without `sqlite://`).
    pub fn connect(config: &Config, path: &str) -> Result<Self> {
        if path.is_empty() {
            return Err(StoreError::Invalid(
                "database.url: sqlite:// needs the path of the database file, e.g. sqlite://app.db"
                    .into(),
            ));
        }
        let db = &config.database;
        let path = PathBuf::from(path);
        let conn = open_connection(&path)?;
        Ok(SqliteStore {
            interrupt: Arc::new(Mutex::new(conn.get_interrupt_handle())),
            conn,
            path,
            names: Names::new(&db.event_table, &db.archive_table),
            token: format!("{}-{:016x}", std::process::id(), rand::random::<u64>()),
            claim_timeout: format!("-{:.3} seconds", config.poll.claim_timeout.as_secs_f64()),
            data_version: None,
        })
    }

    fn data_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(err)
    }
}

/// A transaction holding the write lock from its start: it waits for the application's writes to
/// end (up to the busy timeout) instead of failing when it first writes.
impl SqliteStore {
    /// One claim (see the store's `claim` module): the events claimed and how many were held.
    fn claim_once(&mut self, limit: usize, cap: usize) -> Result<(Vec<Event>, usize)> {
        let names = self.names.clone();
        let (token, timeout) = (self.token.clone(), self.claim_timeout.clone());
        let tx = immediate(&mut self.conn)?;
        let events: Vec<Event> = {
            let mut stmt = tx
                .prepare_cached(&sql::claim_candidates(&names))
                .map_err(err)?;
            let rows = stmt
                .query_map(params![limit as i64, timeout], event_from_row)
                .map_err(err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(err)?
        };
        if events.is_empty() {
            return Ok((events, 0));
        }
        let mut lookups = Lookups {
            tx: &tx,
            names: &names,
            token: &token,
            timeout: &timeout,
        };
        let (events, plan) = claim::decide(&mut lookups, events, cap)?;
        let claimed: Vec<i64> = plan.claim.iter().map(|&i| events[i].event_id).collect();
        if !claimed.is_empty() {
            tx.prepare_cached(&sql::mark_claimed(&names))
                .map_err(err)?
                .execute(params![token, to_json(&claimed)])
                .map_err(err)?;
        }
        let mut hold = tx.prepare_cached(&sql::hold(&names)).map_err(err)?;
        for (id, behind) in &plan.hold {
            hold.execute(params![id, behind]).map_err(err)?;
        }
        drop(hold);
        tx.commit().map_err(err)?;
        Ok((claim::take(events, &plan), plan.hold.len()))
    }
}

/// A claim's lookups (see the store's `claim` module) in the claim's transaction: SQLite lets
/// one writer in at a time, so nothing needs locking.
struct Lookups<'a> {
    tx: &'a rusqlite::Transaction<'a>,
    names: &'a Names,
    token: &'a str,
    timeout: &'a str,
}

impl claim::Lookups for Lookups<'_> {
    type Error = StoreError;

    fn neighbours(&mut self, keys: &Keys, ids: &[i64]) -> Result<claim::Found> {
        let ranges: Vec<(&str, &str, i64)> = keys
            .ranges
            .iter()
            .map(|k| (k.object_name, k.object_key, k.last))
            .collect();
        let mut found = Vec::new();
        let mut waiters = Vec::new();
        let mut stmt = self
            .tx
            .prepare_cached(&sql::claim_neighbours(self.names))
            .map_err(err)?;
        let mut rows = stmt
            .query(params![
                to_json(&ranges),
                self.token,
                self.timeout,
                to_json(&ids)
            ])
            .map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let (a, b): (i64, i64) = (row.get(1).map_err(err)?, row.get(2).map_err(err)?);
            match row.get::<_, i64>(0).map_err(err)? {
                0 => found.push(Neighbour {
                    key: a as usize,
                    event_id: b,
                    priority: row.get(4).map_err(err)?,
                    waiting: row.get::<_, Option<bool>>(3).map_err(err)?.unwrap_or(false),
                }),
                _ => waiters.push((a, b)),
            }
        }
        Ok((found, waiters))
    }

    fn before(&mut self, barriers: &[(&str, i64)]) -> Result<Vec<(i64, i64)>> {
        let mut stmt = self
            .tx
            .prepare_cached(&sql::claim_before(self.names))
            .map_err(err)?;
        let rows = stmt
            .query_map(params![to_json(&barriers), self.token, self.timeout], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?))
            })
            .map_err(err)?;
        let mut out = Vec::new();
        for row in rows {
            if let (id, Some(earlier)) = row.map_err(err)? {
                out.push((id, earlier));
            }
        }
        Ok(out)
    }

    fn inherit(&mut self, runs: &[claim::Inherit]) -> Result<Vec<Event>> {
        let runs: Vec<(&str, &str, i64, i64)> = runs
            .iter()
            .map(|r| {
                (
                    r.object_name.as_str(),
                    r.object_key.as_str(),
                    r.from,
                    r.last,
                )
            })
            .collect();
        let mut stmt = self
            .tx
            .prepare_cached(&sql::claim_inherit(self.names))
            .map_err(err)?;
        let rows = stmt
            .query_map(params![to_json(&runs), self.timeout], event_from_row)
            .map_err(err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(err)
    }
}

/// Parameters that SQLite reads with `json_each`.
fn to_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("ids and keys serialize")
}

fn immediate(conn: &mut Connection) -> Result<rusqlite::Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)
}

fn event_from_row(row: &rusqlite::Row) -> rusqlite::Result<Event> {
    let done: Option<String> = row.get(11)?;
    let raw_time: String = row.get(5)?;
    Ok(Event {
        event_id: row.get(0)?,
        object_name: row.get(1)?,
        object_verb: row.get(2)?,
        object_key: row.get(3)?,
        priority: row.get(4)?,
        event_time: event_time(&raw_time, row.get(6)?),
        connector_id: row.get(7)?,
        attempts: row.get(8)?,
        payload: row.get(9)?,
        replay_of: row.get(10)?,
        done_connectors: done
            .map(|d| d.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
        action: row.get(12)?,
        comment: row.get(13)?,
    })
}

/// An event time in the payload's form, `2026-11-22T10:00:00.123456Z`, from the stored text and
/// its UTC seconds as SQLite reads them (`None` when it cannot, and the text is sent as it is).
/// The fraction is taken from the text, since SQLite's own functions keep only milliseconds.
fn event_time(raw: &str, utc_seconds: Option<String>) -> String {
    let Some(seconds) = utc_seconds else {
        return raw.to_string();
    };
    let fraction: String = raw
        .get(19..)
        .and_then(|rest| rest.strip_prefix('.'))
        .map(|f| f.chars().take_while(char::is_ascii_digit).take(6).collect())
        .unwrap_or_default();
    format!("{seconds}.{fraction:0<6}Z")
}

/// A timestamp column's text as RFC 3339: `2026-11-22 10:00:00.5` becomes
/// `2026-11-22T10:00:00.5Z` (no offset is taken as UTC), an offset is kept. `None` when the text
/// is not a date and time.
fn rfc3339(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range)
            .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
    };
    let shape = digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && matches!(b.get(10), Some(b' ' | b'T'))
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16);
    if !shape {
        return None;
    }
    let mut out = format!("{}T{}", &text[..10], &text[11..16]);
    let mut rest = &text[16..];
    if rest.starts_with(':') && digits(17..19) {
        out.push_str(&rest[..3]);
        rest = &rest[3..];
        if let Some(f) = rest.strip_prefix('.') {
            let n = f.bytes().take_while(u8::is_ascii_digit).count();
            if n > 0 {
                out.push_str(&rest[..=n]);
                rest = &rest[n + 1..];
            }
        }
    } else {
        out.push_str(":00");
    }
    let offset = rest.as_bytes();
    match rest {
        "" | "Z" | "z" => out.push('Z'),
        _ if offset.len() == 6
            && matches!(offset[0], b'+' | b'-')
            && offset[3] == b':'
            && [1, 2, 4, 5].iter().all(|&i| offset[i].is_ascii_digit()) =>
        {
            out.push_str(rest)
        }
        _ => return None,
    }
    Some(out)
}

/// A number with at least `scale` decimals (`1234.5` → `1234.50`), or `None` when it already
/// has them or is written with an exponent.
fn with_scale(number: &str, scale: usize) -> Option<String> {
    if scale == 0 || number.contains(['e', 'E']) {
        return None;
    }
    let decimals = number.split_once('.').map_or(0, |(_, f)| f.len());
    if decimals >= scale {
        return None;
    }
    let point = if decimals == 0 { "." } else { "" };
    Some(format!("{number}{point}{}", "0".repeat(scale - decimals)))
}

/// Turns a row image (see [`crate::dialect::sqlite`]) into attributes with the payload's types
/// (docs/payload.md): bytes as base64, and the declared type decides booleans, decimals and
/// timestamps, which SQLite stores as integers, reals and text.
pub(crate) fn normalize(table: &TableInfo, mut row: Map<String, Value>) -> Map<String, Value> {
    use base64::Engine;
    for col in &table.columns {
        let Some(value) = row.get_mut(&col.name) else {
            continue;
        };
        if let Value::Array(items) = value {
            if let [Value::String(digits)] = items.as_slice() {
                if let Ok(bytes) = hex::decode(digits) {
                    *value = Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
                }
            }
            continue;
        }
        match (ValueRule::of(&col.sql_type), &*value) {
            (ValueRule::Boolean, Value::Number(n)) => match n.as_i64() {
                Some(0) => *value = Value::Bool(false),
                Some(1) => *value = Value::Bool(true),
                _ => {}
            },
            (ValueRule::Decimal { scale }, Value::Number(n)) => {
                if let Some(number) = with_scale(&n.to_string(), scale)
                    .and_then(|text| text.parse::<serde_json::Number>().ok())
                {
                    *value = Value::Number(number);
                }
            }
            (ValueRule::Timestamp, Value::String(text)) => {
                if let Some(time) = rfc3339(text) {
                    *value = Value::String(time);
                }
            }
            _ => {}
        }
    }
    row
}

pub(crate) fn parse_image(
    table: &TableInfo,
    image: &str,
) -> Result<Box<serde_json::value::RawValue>> {
    // SQLite's rendering is the payload's when no column has a rule and no value is bytes
    // (the only arrays in an image): checked, not parsed into values and written again, which
    // was a tenth of a drain's CPU.
    let as_stored = table
        .columns
        .iter()
        .all(|c| ValueRule::of(&c.sql_type) == ValueRule::AsStored);
    if as_stored && image.starts_with('{') && !image.contains('[') {
        return serde_json::value::RawValue::from_string(image.to_string())
            .map_err(|e| StoreError::Database(format!("row image is not JSON: {e}")));
    }
    Ok(super::attributes(&normalize(
        table,
        super::json_object(image)?,
    )))
}

/// Why no row could have had this key: a value its column cannot convert (text that is not a
/// number, for a numeric column). Asked only of keys no row has, since a numeric column of
/// SQLite may still hold such text.
fn misfit(columns: &[&Column], key: &[Option<String>]) -> Option<String> {
    columns.iter().zip(key).find_map(|(col, value)| {
        let value = value.as_deref()?;
        (!Affinity::of(&col.sql_type).converts(value)).then(|| {
            format!(
                "invalid value for column {} of type {}: {value:?}",
                col.name, col.sql_type
            )
        })
    })
}

impl EventStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    /// Looks in the main database whatever the schema in `name` (`public.employee` is
    /// `employee`): SQLite has no schemas, and a trigger can only capture tables of the database
    /// that holds the event table.
    fn describe_table(&mut self, name: &TableName) -> Result<Option<TableInfo>> {
        // Table names are case-insensitive in SQLite: take the name as it was created.
        let found: Option<(String, bool)> = self
            .conn
            .query_row(
                "SELECT name, wr FROM pragma_table_list
                 WHERE schema = 'main' AND type = 'table' AND name = ?1 COLLATE NOCASE",
                [&name.name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(err(e)),
            })?;
        let Some((canonical, without_rowid)) = found else {
            return Ok(None);
        };
        let mut stmt = self
            .conn
            .prepare(
                "SELECT name, type, \"notnull\", pk FROM pragma_table_xinfo(?1, 'main')
                 WHERE hidden <> 1 ORDER BY cid",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map([&canonical], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .map_err(err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(err)?;
        let mut primary_key: Vec<(i64, String)> = rows
            .iter()
            .filter(|r| r.3 > 0)
            .map(|r| (r.3, r.0.clone()))
            .collect();
        primary_key.sort();
        // SQLite lets primary key columns hold NULL, except the rowid (`INTEGER PRIMARY KEY`)
        // and the key of a WITHOUT ROWID table.
        let rowid_alias = primary_key.len() == 1;
        let columns = rows
            .into_iter()
            .map(|(name, sql_type, not_null, pk)| {
                let never_null = pk > 0
                    && (without_rowid || (rowid_alias && sql_type.eq_ignore_ascii_case("INTEGER")));
                let kind = match (Affinity::of(&sql_type), ValueRule::of(&sql_type)) {
                    (_, ValueRule::Timestamp) => ColumnKind::NaiveTimestamp,
                    (Affinity::Blob, _) if !sql_type.trim().is_empty() => ColumnKind::Bytes,
                    _ => ColumnKind::Plain,
                };
                Column {
                    name,
                    sql_type,
                    nullable: !not_null && !never_null,
                    kind,
                }
            })
            .collect();
        Ok(Some(TableInfo {
            name: TableName {
                schema: None,
                name: canonical,
            },
            columns,
            primary_key: primary_key.into_iter().map(|(_, name)| name).collect(),
            partitioning: Default::default(),
        }))
    }

    /// One entry per captured table, naming all its capture triggers; its fingerprint is set
    /// only when all of them carry the same one and none is missing.
    fn installed_triggers(&mut self) -> Result<Vec<InstalledTrigger>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT tbl_name, name, sql FROM sqlite_master
                 WHERE type = 'trigger' AND name GLOB ?1 ORDER BY tbl_name, name",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map([format!("{}*", sql::TRIGGER_PREFIX)], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(err)?;
        // A capture trigger's INSERT fails, and the application's write with it, when the
        // event table is gone.
        let event_table: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [&self.names.event_raw],
                |r| r.get(0),
            )
            .map_err(err)?;
        let failure = (event_table == 0)
            .then(|| format!("the event table {} does not exist", self.names.event_raw));
        let mut installed = Vec::new();
        for group in rows.chunk_by(|a, b| a.0 == b.0) {
            let names: Vec<String> = group.iter().map(|t| t.1.clone()).collect();
            let marks: Vec<Option<(String, usize)>> = group
                .iter()
                .map(|t| crate::dialect::parse_fingerprint(&t.2))
                .collect();
            let fingerprint = match marks.first() {
                Some(Some((fp, count)))
                    if *count == group.len()
                        && marks.iter().all(|m| m.as_ref().is_some_and(|m| &m.0 == fp)) =>
                {
                    Some(fp.clone())
                }
                _ => None,
            };
            installed.push(InstalledTrigger {
                table: TableName {
                    schema: None,
                    name: group[0].0.clone(),
                },
                name: sql::join_trigger_names(&names),
                fingerprint,
                columns: crate::dialect::parse_table_note(&group[0].2),
                routine: None,
                failure: failure.clone(),
                runs_as: None,
            });
        }
        Ok(installed)
    }

    fn check_condition(
        &mut self,
        t: &TableInfo,
        verb: Verb,
        condition: &str,
    ) -> Result<Option<String>> {
        let check = crate::dialect::condition_check(
            &sql::ident(&t.name.name),
            verb,
            condition,
            crate::dialect::Quoting::Sqlite,
        );
        match self.conn.prepare(&check) {
            Ok(_) => Ok(None),
            Err(rusqlite::Error::SqliteFailure(_, Some(message)))
            | Err(rusqlite::Error::SqlInputError { msg: message, .. }) => Ok(Some(message)),
            Err(e) => Err(err(e)),
        }
    }

    fn execute_ddl(&mut self, statements: &[String]) -> Result<()> {
        let tx = immediate(&mut self.conn)?;
        for statement in statements {
            tx.execute_batch(statement).map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    fn claim_capped(&mut self, limit: usize, cap: usize) -> Result<Vec<Event>> {
        self.data_version = Some(self.data_version()?);
        loop {
            // A claim that only held events (behind a key's retry) has room for others now.
            let (events, held) = self.claim_once(limit, cap)?;
            if !events.is_empty() || held == 0 {
                return Ok(events);
            }
        }
    }

    fn fetch_rows(
        &mut self,
        table: &TableInfo,
        key_columns: &[&Column],
        keys: &[Vec<Option<String>>],
        columns: &[Column],
    ) -> Result<Vec<Fetched>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values = serde_json::to_string(keys).expect("key values serialize");
        let mut out = vec![Fetched::Missing; keys.len()];
        let mut stmt = self
            .conn
            .prepare_cached(&sql::fetch(table, key_columns, columns))
            .map_err(err)?;
        let mut rows = stmt.query([values]).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let i: usize = row.get(0).map_err(err)?;
            let image = row.get_ref(1).map_err(err)?;
            if let Some(image) = image
                .as_str_or_null()
                .map_err(|e| StoreError::Database(format!("row image of {}: {e}", table.name)))?
            {
                out[i] = Fetched::Row(parse_image(table, image)?);
            }
        }
        for (fetched, key) in out.iter_mut().zip(keys) {
            if *fetched == Fetched::Missing {
                if let Some(reason) = misfit(key_columns, key) {
                    *fetched = Fetched::Invalid(reason);
                }
            }
        }
        Ok(out)
    }

    fn fetch_children(
        &mut self,
        table: &TableInfo,
        parent_keys: &[&Column],
        keys: &[Vec<Option<String>>],
        columns: &[Column],
        order_by: &[Column],
        carry: &[Column],
    ) -> Result<Vec<Vec<ChildRow>>> {
        let mut out = vec![Vec::new(); keys.len()];
        if keys.is_empty() {
            return Ok(out);
        }
        let values = serde_json::to_string(keys).expect("key values serialize");
        let mut stmt = self
            .conn
            .prepare_cached(&sql::fetch_children(
                table,
                parent_keys,
                columns,
                order_by,
                carry,
            ))
            .map_err(err)?;
        let mut rows = stmt.query([values]).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let i: usize = row.get(0).map_err(err)?;
            let image: String = row.get(1).map_err(err)?;
            let attributes = parse_image(table, &image)?;
            let carry = (2..2 + carry.len())
                .map(|c| row.get(c).map_err(err))
                .collect::<Result<Vec<Option<String>>>>()?;
            out[i].push(ChildRow { attributes, carry });
        }
        Ok(out)
    }

    fn json_types(&self, table: &TableInfo, row: JsonObject) -> JsonObject {
        normalize(table, row)
    }

    fn row_image(
        &self,
        table: &TableInfo,
        image: &str,
    ) -> Result<Box<serde_json::value::RawValue>> {
        parse_image(table, image)
    }

    fn finish(&mut self, settlement: &Settlement) -> Result<()> {
        let (ev, token) = (&self.names.event, &self.token);
        let tx = immediate(&mut self.conn)?;
        // A batch's archive rows and deletes are one statement each, whatever its size.
        if !settlement.archive.is_empty() {
            let rows: Vec<serde_json::Value> = settlement
                .archive
                .iter()
                .map(|a| {
                    serde_json::json!([
                        a.event_id,
                        a.status.code(),
                        a.description,
                        a.connector_id,
                        a.attempts
                    ])
                })
                .collect();
            tx.prepare_cached(&sql::archive(&self.names))
                .map_err(err)?
                .execute(params![to_json(&rows), token])
                .map_err(err)?;
        }
        if !settlement.complete.is_empty() {
            let deleted: Vec<i64> = tx
                .prepare_cached(&sql::delete_claimed(&self.names))
                .map_err(err)?
                .query_map(params![to_json(&settlement.complete), token], |r| r.get(0))
                .map_err(err)?
                .collect::<rusqlite::Result<_>>()
                .map_err(err)?;
            if !deleted.is_empty() {
                tx.prepare_cached(&sql::release(&self.names))
                    .map_err(err)?
                    .execute([to_json(&deleted)])
                    .map_err(err)?;
            }
        }
        if !settlement.retry.is_empty() {
            let mut update = tx
                .prepare_cached(&format!(
                    "UPDATE {ev} SET event_status = 0, claimed_by = NULL, claimed_at = NULL,
                        attempts = ?2, next_attempt_at = {}, event_description = ?4,
                        done_connectors = ?5
                     WHERE event_id = ?1 AND claimed_by = ?6",
                    sql::now_plus("?3")
                ))
                .map_err(err)?;
            for r in &settlement.retry {
                let done = (!r.done_connectors.is_empty()).then(|| r.done_connectors.join(","));
                update
                    .execute(params![
                        r.event_id,
                        r.attempts,
                        format!("+{:.3} seconds", r.delay.as_secs_f64()),
                        r.description,
                        done,
                        token
                    ])
                    .map_err(err)?;
            }
        }
        if !settlement.hold.is_empty() {
            let mut put_back = tx
                .prepare_cached(&format!(
                    "UPDATE {ev} SET event_status = 0, claimed_by = NULL, claimed_at = NULL,
                        done_connectors = ?2
                     WHERE event_id = ?1 AND claimed_by = ?3"
                ))
                .map_err(err)?;
            let mut hold = tx.prepare_cached(&sql::hold(&self.names)).map_err(err)?;
            for h in &settlement.hold {
                let done = (!h.done_connectors.is_empty()).then(|| h.done_connectors.join(","));
                let put = put_back
                    .execute(params![h.event_id, done, token])
                    .map_err(err)?;
                if let (1, Some(behind)) = (put, h.behind) {
                    hold.execute(params![h.event_id, behind]).map_err(err)?;
                }
            }
        }
        tx.commit().map_err(err)
    }

    fn release_orphans(&mut self) -> Result<u64> {
        let released = self
            .conn
            .execute(&sql::release_orphans(&self.names), [])
            .map_err(err)?;
        Ok(released as u64)
    }

    fn release_claims(&mut self) -> Result<()> {
        self.conn
            .execute(
                &format!(
                    "UPDATE {} SET event_status = 0, claimed_by = NULL, claimed_at = NULL
                     WHERE claimed_by = ?1 AND event_status = 3",
                    self.names.event
                ),
                [&self.token],
            )
            .map_err(err)?;
        Ok(())
    }

    fn retry_backlog(&mut self) -> Result<RetryBacklog> {
        let (events, due): (i64, Option<f64>) = self
            .conn
            .query_row(
                &format!(
                    "SELECT count(*),
                        (julianday(min(next_attempt_at) FILTER (WHERE next_attempt_at > {now}))
                            - julianday('now')) * 86400.0
                     FROM {} WHERE event_status = 0
                       AND (next_attempt_at > {now} OR waiting_for IS NOT NULL)",
                    self.names.event,
                    now = sql::NOW
                ),
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(err)?;
        Ok(RetryBacklog {
            events: events as u64,
            next_due: due.map(|s| Duration::from_secs_f64(s.max(0.0))),
        })
    }

    fn replay(&mut self, filter: &ReplayFilter, dry_run: bool) -> Result<Vec<Replayed>> {
        let mut conditions = Vec::new();
        let mut params: Vec<SqlValue> = Vec::new();
        let mut bind = |value: SqlValue| {
            params.push(value);
            format!("?{}", params.len())
        };
        if let Some((from, to)) = filter.event_ids {
            let (a, b) = (bind(from.into()), bind(to.into()));
            conditions.push(format!("a.event_id BETWEEN {a} AND {b}"));
        }
        let text = |items: &[String]| items.iter().map(|i| Value::from(i.as_str())).collect();
        let lists: [(&str, Vec<Value>); 3] = [
            ("a.object_name", text(&filter.objects)),
            ("a.object_verb", text(&filter.verbs)),
            (
                "a.event_status",
                filter.statuses.iter().map(|s| s.code().into()).collect(),
            ),
        ];
        for (column, items) in lists {
            if !items.is_empty() {
                let p = bind(SqlValue::Text(Value::Array(items).to_string()));
                conditions.push(format!("{column} IN (SELECT value FROM json_each({p}))"));
            }
        }
        if let Some(connector) = &filter.connector {
            let p = bind(connector.clone().into());
            conditions.push(format!("(a.connector_id = {p} OR a.connector_id IS NULL)"));
        }
        for (bound, op, flag) in [
            (&filter.since, ">=", "--since"),
            (&filter.until, "<", "--until"),
        ] {
            let Some(time) = bound else { continue };
            let readable: Option<f64> = self
                .conn
                .query_row("SELECT julianday(?1)", [time], |r| r.get(0))
                .map_err(err)?;
            if readable.is_none() {
                return Err(StoreError::Invalid(format!(
                    "{flag} {time:?}: SQLite cannot read this time; write it like 2026-11-22T10:00:00Z"
                )));
            }
            let p = bind(time.clone().into());
            conditions.push(format!("julianday(a.event_processed) {op} julianday({p})"));
        }
        let target = bind(
            filter
                .connector
                .clone()
                .map_or(SqlValue::Null, SqlValue::Text),
        );
        let limit = filter
            .limit
            .map(|l| format!("LIMIT {}", bind((l.min(i64::MAX as u64) as i64).into())))
            .unwrap_or_default();
        let chosen = format!(
            "SELECT a.object_name, a.object_verb, a.object_key, a.event_priority, a.event_time,
                COALESCE({target}, a.connector_id) AS connector_id, a.payload, a.event_id,
                a.event_action, a.event_comment
             FROM {archive} a {where_} ORDER BY a.event_id, a.connector_id {limit}",
            archive = self.names.archive,
            where_ = if conditions.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", conditions.join(" AND "))
            },
        );
        let query = if dry_run {
            format!(
                "SELECT c.event_id, c.object_name, c.object_verb, c.object_key, c.connector_id, NULL
                 FROM ({chosen}) c"
            )
        } else {
            // Inserted in event-id order, so that the replayed events keep each key's order.
            format!(
                "INSERT INTO {} (object_name, object_verb, object_key, event_priority, event_time,
                    connector_id, payload, replay_of, event_action, event_comment)
                 SELECT c.object_name, c.object_verb, c.object_key, c.event_priority, c.event_time,
                    c.connector_id, c.payload, c.event_id, c.event_action, c.event_comment
                 FROM ({chosen}) c ORDER BY c.event_id, c.connector_id
                 RETURNING replay_of, object_name, object_verb, object_key, connector_id, event_id",
                self.names.event
            )
        };
        let mut stmt = self.conn.prepare(&query).map_err(err)?;
        let mut replayed = stmt
            .query_map(params_from_iter(params), |r| {
                Ok(Replayed {
                    replay_of: r.get(0)?,
                    object: r.get(1)?,
                    verb: r.get(2)?,
                    key: r.get(3)?,
                    connector: r.get(4)?,
                    new_event_id: r.get(5)?,
                })
            })
            .map_err(err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(err)?;
        replayed.sort_by_key(|r| (r.replay_of, r.new_event_id));
        Ok(replayed)
    }

    fn status(&mut self) -> Result<StoreStatus> {
        let n = &self.names;
        let ready = format!(
            "event_status = 0 AND (next_attempt_at IS NULL OR next_attempt_at <= {})
             AND waiting_for IS NULL",
            sql::NOW
        );
        let backlog = self
            .conn
            .prepare(&format!(
                "SELECT object_name, object_verb, event_priority, count(*) FROM {} WHERE {ready}
                 GROUP BY 1, 2, 3 ORDER BY 3, 1, 2",
                n.event
            ))
            .map_err(err)?
            .query_map([], |r| {
                Ok(BacklogRow {
                    object: r.get(0)?,
                    verb: r.get(1)?,
                    priority: r.get(2)?,
                    ready: r.get::<_, i64>(3)? as u64,
                })
            })
            .map_err(err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(err)?;
        let (oldest, in_progress, retrying, held): (Option<f64>, i64, i64, i64) = self
            .conn
            .query_row(
                &format!(
                    "SELECT (julianday('now') - min(julianday(event_time)) FILTER (WHERE {ready}))
                            * 86400.0,
                        count(*) FILTER (WHERE event_status = 3),
                        count(*) FILTER (WHERE event_status = 0 AND next_attempt_at > {}),
                        count(*) FILTER (WHERE waiting_for IS NOT NULL)
                     FROM {}",
                    sql::NOW,
                    n.event
                ),
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .map_err(err)?;
        let archived: Vec<(i16, i64)> = self
            .conn
            .prepare(&format!(
                "SELECT event_status, count(*) FROM {} WHERE event_status < 0 GROUP BY 1",
                n.archive
            ))
            .map_err(err)?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(err)?;
        let archived_count = |status: Status| {
            archived
                .iter()
                .find(|(code, _)| *code == status.code())
                .map_or(0, |(_, count)| *count as u64)
        };
        Ok(StoreStatus {
            backlog,
            oldest_ready_age_seconds: oldest,
            in_progress: in_progress as u64,
            retrying: retrying as u64,
            held: held as u64,
            archived_failed: archived_count(Status::Failed),
            archived_error: archived_count(Status::Error),
            archived_not_found: archived_count(Status::NotFound),
        })
    }

    /// SQLite cannot notify: this looks at `PRAGMA data_version` every 50 ms, which changes when
    /// another connection commits (any table; a wake-up for nothing costs one empty claim).
    /// Reading it is cheap, and a commit is seen within 50 ms; one made since the last claim
    /// wakes the poller at once.
    fn wait_for_events(&mut self, timeout: Duration) -> Result<bool> {
        let seen = match self.data_version {
            Some(v) => v,
            None => {
                let v = self.data_version()?;
                self.data_version = Some(v);
                v
            }
        };
        let deadline = Instant::now() + timeout;
        loop {
            if self.data_version()? != seen {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            std::thread::sleep(left.min(WAIT_STEP));
        }
    }

    fn reconnect(&mut self) -> Result<()> {
        self.conn = open_connection(&self.path)?;
        *self.interrupt.lock().unwrap_or_else(|e| e.into_inner()) =
            self.conn.get_interrupt_handle();
        // data_version is per connection: the new one starts its own count.
        self.data_version = None;
        Ok(())
    }

    fn interrupter(&self) -> Box<dyn Interrupt> {
        Box::new(SqliteInterrupt(Arc::clone(&self.interrupt)))
    }

    fn sibling(&self) -> Option<Result<Box<dyn EventStore>>> {
        None
    }

    fn renew_claims(&mut self, ids: &[i64]) -> Result<u64> {
        let renewed = self
            .conn
            .execute(
                &format!(
                    "UPDATE {} SET claimed_at = {}
                     WHERE claimed_by = ?1 AND event_status = 3
                       AND event_id IN (SELECT value FROM json_each(?2))",
                    self.names.event,
                    sql::NOW
                ),
                params![self.token, to_json(&ids)],
            )
            .map_err(err)?;
        Ok(renewed as u64)
    }

    fn another_connection(&self) -> Result<Box<dyn EventStore>> {
        let conn = open_connection(&self.path)?;
        Ok(Box::new(SqliteStore {
            interrupt: Arc::new(Mutex::new(conn.get_interrupt_handle())),
            conn,
            path: self.path.clone(),
            names: self.names.clone(),
            token: self.token.clone(),
            claim_timeout: self.claim_timeout.clone(),
            data_version: None,
        }))
    }

    fn prune(&mut self, older_than: Duration, statuses: &[Status], limit: usize) -> Result<u64> {
        // By rowid, a few rows per transaction: the application's writers wait only that long.
        let (condition, mut params) = prunable(older_than, statuses);
        params.push(SqlValue::Integer(limit as i64));
        let deleted = self
            .conn
            .execute(
                &format!(
                    "DELETE FROM {archive} WHERE rowid IN (
                        SELECT rowid FROM {archive} WHERE {condition} LIMIT ?)",
                    archive = self.names.archive
                ),
                params_from_iter(params),
            )
            .map_err(err)?;
        Ok(deleted as u64)
    }

    fn count_prunable(&mut self, older_than: Duration, statuses: &[Status]) -> Result<u64> {
        let (condition, params) = prunable(older_than, statuses);
        let count: i64 = self
            .conn
            .query_row(
                &format!(
                    "SELECT count(*) FROM {} WHERE {condition}",
                    self.names.archive
                ),
                params_from_iter(params),
                |r| r.get(0),
            )
            .map_err(err)?;
        Ok(count as u64)
    }

    fn ready_backlog(&mut self) -> Result<ReadyBacklog> {
        let (events, oldest): (i64, Option<f64>) = self
            .conn
            .query_row(
                &format!(
                    "SELECT count(*), (julianday('now') - min(julianday(event_time))) * 86400.0
                     FROM {} WHERE event_status = 0
                       AND (next_attempt_at IS NULL OR next_attempt_at <= {now})
                       AND waiting_for IS NULL",
                    self.names.event,
                    now = sql::NOW
                ),
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(err)?;
        Ok(ReadyBacklog {
            events: events as u64,
            oldest_age_seconds: oldest,
        })
    }
}

/// The archive rows `prune` takes: processed before the cut-off (compared as text, which the
/// fixed-width timestamps allow) with one of the statuses.
fn prunable(older_than: Duration, statuses: &[Status]) -> (String, Vec<SqlValue>) {
    let placeholders = vec!["?"; statuses.len()].join(", ");
    let condition = format!(
        "event_processed < strftime('%Y-%m-%dT%H:%M:%f000Z', 'now', ?)
         AND event_status IN ({placeholders})"
    );
    let mut params = vec![SqlValue::Text(format!(
        "-{:.3} seconds",
        older_than.as_secs_f64()
    ))];
    params.extend(
        statuses
            .iter()
            .map(|s| SqlValue::Integer(i64::from(s.code()))),
    );
    (condition, params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An application database with `schema`, then trigpoll's tables and triggers for `objects`.
    fn installed(schema: &str, objects: &str) -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(schema)
            .unwrap();
        let text = format!(
            "[database]\nurl = \"sqlite://{}\"\n\n{objects}",
            path.display()
        );
        let config = Config::from_str(&text, &dir.path().join("trigpoll.toml")).unwrap();
        let mut store = SqliteStore::connect(&config, &path.display().to_string()).unwrap();
        let plan = crate::install::plan_install(&mut store, &config, &[]).unwrap();
        store.execute_ddl(&plan.statements).unwrap();
        (dir, store)
    }

    /// The application's own connection.
    fn app(dir: &tempfile::TempDir) -> Connection {
        let c = Connection::open(dir.path().join("app.db")).unwrap();
        c.busy_timeout(BUSY_TIMEOUT).unwrap();
        c
    }

    fn table(store: &mut SqliteStore, name: &str) -> TableInfo {
        let name = TableName {
            schema: None,
            name: name.into(),
        };
        store.describe_table(&name).unwrap().unwrap()
    }

    /// Every event, one claim after another (a key's next event waits for the one before).
    fn claim_all(store: &mut SqliteStore) -> Vec<Event> {
        let mut all = Vec::new();
        loop {
            let events = store.claim(100).unwrap();
            if events.is_empty() {
                return all;
            }
            let ids: Vec<i64> = events.iter().map(|e| e.event_id).collect();
            let settlement = Settlement {
                complete: ids,
                ..Settlement::default()
            };
            store.finish(&settlement).unwrap();
            all.extend(events);
        }
    }

    fn key_values(event: &Event) -> Vec<Option<String>> {
        crate::key::decode(&event.object_key, ":")
            .unwrap()
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    }

    const ITEM: &str = "CREATE TABLE item (id int PRIMARY KEY, name text, price real,
        amount numeric(10,2), photo blob, seen datetime, ok boolean, note text)";
    const ITEM_OBJECT: &str = "[[object]]\nname = \"Item\"\ntable = \"item\"\n";

    #[test]
    fn fetched_rows_and_delete_images_have_the_payload_types() {
        let (dir, mut store) = installed(ITEM, ITEM_OBJECT);
        app(&dir)
            .execute_batch(
                "INSERT INTO item VALUES (1, 'a', 2.5, 12.5, X'0102ff',
                     '2026-11-22 10:00:00.123456', true, X'00');
                 DELETE FROM item",
            )
            .unwrap();
        let t = table(&mut store, "item");
        let expected: Value = serde_json::from_str(
            r#"{"id": 1, "name": "a", "price": 2.5, "amount": 12.50, "photo": "AQL/",
                "seen": "2026-11-22T10:00:00.123456Z", "ok": true, "note": "AA=="}"#,
        )
        .unwrap();
        let events = claim_all(&mut store);
        let image = events[1]
            .payload
            .as_deref()
            .expect("a delete carries the row");
        let attributes = store.row_image(&t, image).unwrap();
        // Compared as text: a decimal's digits matter, not only its value.
        assert_eq!(
            serde_json::to_string(&attributes).unwrap(),
            expected.to_string()
        );
        app(&dir)
            .execute_batch(
                "INSERT INTO item VALUES (1, 'a', 2.5, 12.5, X'0102ff',
                     '2026-11-22 10:00:00.123456', true, X'00')",
            )
            .unwrap();
        let id = t.column("id").unwrap();
        let fetched = store
            .fetch_rows(&t, &[id], &[key_values(&events[0])], &t.columns)
            .unwrap();
        assert_eq!(fetched, [Fetched::Row(attributes)]);
    }

    /// The images the fast path passes through are the ones parsing and writing would make:
    /// escapes, numbers and text as SQLite renders them, byte for byte.
    #[test]
    fn images_passed_through_are_those_parsing_would_make() {
        let (dir, mut store) = installed(
            "CREATE TABLE note (id integer PRIMARY KEY, body text, n numeric, r real, x)",
            "[[object]]\nname = \"Note\"\ntable = \"note\"\n",
        );
        app(&dir)
            .execute_batch(
                "INSERT INTO note VALUES
                     (1, 'quote \" backslash \\ slash / tab ' || char(9) || ' nl ' || char(10)
                         || ' cr ' || char(13) || ' bell ' || char(7) || ' unit ' || char(31)
                         || ' del ' || char(127) || ' é ☃ 𝄞 ' || char(8232), 12.50, 1e300, 'text'),
                     (2, '', -0.0, 0.1, 9223372036854775807),
                     (3, NULL, 1e-7, -1.5e-300, 2.5),
                     (4, '{\"a\": [1]}', 10, 9e999, -9e999)",
            )
            .unwrap();
        let t = table(&mut store, "note");
        let id = t.column("id").unwrap();
        let keys: Vec<Vec<Option<String>>> = (1..=4).map(|i| vec![Some(i.to_string())]).collect();
        let fetched = store.fetch_rows(&t, &[id], &keys, &t.columns).unwrap();
        let mut passed = 0;
        for f in fetched {
            let Fetched::Row(image) = f else {
                panic!("every row is there: {f:?}")
            };
            let written = super::super::attributes(&normalize(
                &t,
                super::super::json_object(image.get()).unwrap(),
            ));
            assert_eq!(image.get(), written.get());
            passed += usize::from(!image.get().contains('['));
        }
        // Row 4's body holds a bracket: it took the parsing path, the others did not.
        assert_eq!(passed, 3);
    }

    #[test]
    fn wide_tables_have_whole_images() {
        let columns: Vec<String> = (0..150).map(|i| format!("c{i} int")).collect();
        let schema = format!(
            "CREATE TABLE wide ({}, PRIMARY KEY (c0))",
            columns.join(", ")
        );
        let objects = "[[object]]\nname = \"Wide\"\ntable = \"wide\"\n";
        let (dir, mut store) = installed(&schema, objects);
        // Bytes at the end of the first two spliced objects, which end in `]}`.
        let values: Vec<String> = (0..150)
            .map(|i| match i {
                62 | 125 => "X'ab'".to_string(),
                i => i.to_string(),
            })
            .collect();
        app(&dir)
            .execute_batch(&format!(
                "INSERT INTO wide VALUES ({}); DELETE FROM wide",
                values.join(", ")
            ))
            .unwrap();
        let t = table(&mut store, "wide");
        let events = claim_all(&mut store);
        let image = store
            .row_image(&t, events[1].payload.as_deref().unwrap())
            .unwrap();
        let image = super::super::json_object(image.get()).unwrap();
        assert_eq!(image.len(), 150);
        for (i, (name, value)) in image.iter().enumerate() {
            assert_eq!(name, &format!("c{i}"));
            match i {
                62 | 125 => assert_eq!(value, "qw=="),
                i => assert_eq!(value, &json!(i)),
            }
        }
    }

    #[test]
    fn real_keys_find_their_rows() {
        let (dir, mut store) = installed(
            "CREATE TABLE reading (at real PRIMARY KEY, v text)",
            "[[object]]\nname = \"Reading\"\ntable = \"reading\"\n",
        );
        app(&dir)
            .execute_batch("INSERT INTO reading VALUES (0.1 + 0.2, 'a'), (0.5, 'b')")
            .unwrap();
        let t = table(&mut store, "reading");
        let events = store.claim(10).unwrap();
        let keys: Vec<&str> = events.iter().map(|e| e.object_key.as_str()).collect();
        assert_eq!(keys, ["at=0.30000000000000004", "at=0.5"]);
        let at = t.column("at").unwrap();
        let keys: Vec<_> = events.iter().map(key_values).collect();
        let fetched = store.fetch_rows(&t, &[at], &keys, &t.columns).unwrap();
        assert!(
            fetched.iter().all(|f| matches!(f, Fetched::Row(_))),
            "{fetched:?}"
        );
    }

    #[test]
    fn key_values_are_compared_with_the_column_affinity() {
        let (dir, mut store) = installed(ITEM, ITEM_OBJECT);
        app(&dir)
            .execute_batch("INSERT INTO item (id, name) VALUES (101, 'int'), ('abc', 'text')")
            .unwrap();
        let t = table(&mut store, "item");
        let id = t.column("id").unwrap();
        let keys = [" 101 ", "abc", "zz", "7"].map(|k| vec![Some(k.to_string())]);
        let fetched = store.fetch_rows(&t, &[id], &keys, &t.columns).unwrap();
        let name = |f: &Fetched| match f {
            Fetched::Row(r) => super::super::json_object(r.get()).unwrap()["name"].clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(name(&fetched[0]), "int");
        assert_eq!(
            name(&fetched[1]),
            "text",
            "text stored in an integer column is found by its text"
        );
        assert_eq!(
            fetched[2],
            Fetched::Invalid("invalid value for column id of type INT: \"zz\"".into())
        );
        assert_eq!(fetched[3], Fetched::Missing);
    }

    #[test]
    fn claim_and_fetch_use_indexes() {
        let (dir, mut store) = installed(ITEM, ITEM_OBJECT);
        // The statistics of a backlog on one key, which once turned the per-key read into a
        // scan of the whole key index.
        app(&dir)
            .execute_batch(
                "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < 2000)
                 INSERT INTO trigpoll_event (object_name, object_verb, object_key)
                 SELECT 'Item', 'Update', 'id=1' FROM s;
                 ANALYZE;",
            )
            .unwrap();
        let t = table(&mut store, "item");
        let plan = |store: &SqliteStore, query: &str, params: &[&dyn rusqlite::ToSql]| {
            store
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {query}"))
                .unwrap()
                .query_map(params, |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<rusqlite::Result<Vec<_>>>()
                .unwrap()
                .join("\n")
        };
        let candidates = plan(
            &store,
            &sql::claim_candidates(&store.names),
            &[&1, &"-1 seconds"],
        );
        assert!(
            candidates.contains("SCAN e USING INDEX trigpoll_event_ready"),
            "{candidates}"
        );
        assert!(!candidates.contains("TEMP B-TREE"), "{candidates}");
        let neighbours = plan(
            &store,
            &sql::claim_neighbours(&store.names),
            &[&"[]", &"t", &"-1 seconds", &"[]"],
        );
        assert!(
            neighbours.contains("SEARCH p USING INDEX trigpoll_event_key_run"),
            "{neighbours}"
        );
        assert!(
            neighbours.contains("INDEX trigpoll_event_waiting (waiting_for=?)"),
            "{neighbours}"
        );
        let fetch = plan(
            &store,
            &sql::fetch(&t, &[&t.columns[0]], &t.columns),
            &[&"[]"],
        );
        assert!(
            fetch.contains("SEARCH t USING INDEX sqlite_autoindex_item_1 (id=?)"),
            "{fetch}"
        );
    }

    #[test]
    fn another_connections_commit_ends_the_wait() {
        let (dir, mut store) = installed(ITEM, ITEM_OBJECT);
        assert!(store.claim(10).unwrap().is_empty());
        assert!(!store.wait_for_events(Duration::from_millis(120)).unwrap());
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            app(&dir)
                .execute("INSERT INTO item (id) VALUES (1)", [])
                .unwrap();
            dir
        });
        let started = Instant::now();
        assert!(store.wait_for_events(Duration::from_secs(5)).unwrap());
        // Woken by the commit, not by the end of the wait.
        assert!(started.elapsed() < Duration::from_secs(4));
        writer.join().unwrap();
        assert_eq!(store.claim(10).unwrap().len(), 1);
    }

    #[test]
    fn a_missing_trigger_is_drift() {
        let (dir, mut store) = installed(ITEM, ITEM_OBJECT);
        let found = store.installed_triggers().unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].table.name, "item");
        assert!(found[0].fingerprint.is_some());
        assert_eq!(
            sql::trigger_names(&found[0].name),
            [
                "trigpoll_capture_item_delete",
                "trigpoll_capture_item_insert",
                "trigpoll_capture_item_update"
            ]
        );
        app(&dir)
            .execute_batch("DROP TRIGGER trigpoll_capture_item_update")
            .unwrap();
        assert_eq!(store.installed_triggers().unwrap()[0].fingerprint, None);
    }

    #[test]
    fn only_keys_sqlite_keeps_from_null_are_not_nullable() {
        let (_dir, mut store) = installed(
            "CREATE TABLE a (id INTEGER PRIMARY KEY, v text NOT NULL);
             CREATE TABLE b (id int PRIMARY KEY);
             CREATE TABLE c (x text, y int, PRIMARY KEY (x, y)) WITHOUT ROWID",
            "",
        );
        let nullable = |store: &mut SqliteStore, t: &str| -> Vec<bool> {
            table(store, t).columns.iter().map(|c| c.nullable).collect()
        };
        assert_eq!(nullable(&mut store, "a"), [false, false]);
        assert_eq!(nullable(&mut store, "b"), [true], "SQLite lets it be NULL");
        assert_eq!(nullable(&mut store, "c"), [false, false]);
    }

    #[test]
    fn the_event_table_refuses_rows_the_poller_could_not_read() {
        let (dir, mut store) = installed(ITEM, ITEM_OBJECT);
        let app = app(&dir);
        let insert = |priority: &str, payload: &str| {
            app.execute(
                &format!(
                    "INSERT INTO trigpoll_event (object_name, object_verb, object_key,
                        event_priority, payload) VALUES ('Item', 'Create', 'id=1', {priority},
                        {payload})"
                ),
                [],
            )
        };
        assert!(insert("'high'", "NULL").is_err());
        assert!(insert("1", "'{not json'").is_err());
        insert("'5'", "'{}'").expect("text that is a number is a number");
        let events = store.claim(10).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].priority, 5);
        assert_eq!(events[0].event_time.len(), 27, "{}", events[0].event_time);
    }

    #[test]
    fn tables_live_in_the_main_database() {
        let (_dir, mut store) = installed(ITEM, ITEM_OBJECT);
        let named = |schema: &str| TableName {
            schema: Some(schema.into()),
            name: "ITEM".into(),
        };
        for schema in ["main", "trigpoll", "public"] {
            let item = store.describe_table(&named(schema)).unwrap().unwrap();
            assert_eq!(
                item.name,
                TableName {
                    schema: None,
                    name: "item".into()
                },
                "the name as created, in the main database"
            );
        }
        let events = TableName {
            schema: Some("trigpoll".into()),
            name: "trigpoll_event".into(),
        };
        assert!(store.describe_table(&events).unwrap().is_some());
    }

    #[test]
    fn event_times_have_microseconds() {
        let utc = |s: &str| Some(s.to_string());
        assert_eq!(
            event_time("2026-11-22T10:00:00.123000Z", utc("2026-11-22T10:00:00")),
            "2026-11-22T10:00:00.123000Z"
        );
        assert_eq!(
            event_time(
                "2026-11-22 12:00:00.1234567+02:00",
                utc("2026-11-22T10:00:00")
            ),
            "2026-11-22T10:00:00.123456Z"
        );
        assert_eq!(
            event_time("2026-11-22 10:00", utc("2026-11-22T10:00:00")),
            "2026-11-22T10:00:00.000000Z"
        );
        assert_eq!(event_time("soon", None), "soon");
    }

    #[test]
    fn timestamps_become_rfc3339() {
        assert_eq!(
            rfc3339("2026-11-22 10:00:00.123456").as_deref(),
            Some("2026-11-22T10:00:00.123456Z")
        );
        assert_eq!(
            rfc3339("2026-11-22T10:00").as_deref(),
            Some("2026-11-22T10:00:00Z")
        );
        assert_eq!(
            rfc3339("2026-11-22 10:00:00+02:00").as_deref(),
            Some("2026-11-22T10:00:00+02:00")
        );
        assert_eq!(rfc3339("2026-11-22"), None);
        assert_eq!(rfc3339("2026-11-22 10:00:00 PST"), None);
        assert_eq!(rfc3339("yesterday"), None);
    }

    #[test]
    fn changes_in_either_stored_form_give_the_changed_columns_with_their_types() {
        let (_dir, mut store) = installed(ITEM, ITEM_OBJECT);
        let t = table(&mut store, "item");
        let expected = r#"{"amount":{"old":12.50,"new":null},"ok":{"old":true,"new":false}}"#;
        // The changed columns, as the MySQL and SQLite triggers write them.
        let columns = r#"{"amount": {"old": 12.5, "new": null}, "ok": {"old": 1, "new": 0}}"#;
        let got = crate::store::changes(&store, &t, columns).unwrap();
        assert_eq!(got.get(), expected);
        // What else an application's own event says of a change goes with it.
        let noted = r#"{"ok": {"old": 1, "new": 0, "why": "x"}, "name": "as written"}"#;
        let got = crate::store::changes(&store, &t, noted).unwrap();
        assert_eq!(
            got.get(),
            r#"{"ok":{"old":true,"new":false,"why":"x"},"name":"as written"}"#
        );
        // Two images, as the PostgreSQL trigger writes them: only what differs is kept, and a
        // number's digits are part of its value (as the trigger's image comparison has it).
        let images = r#"[{"name": "a", "amount": 12.5, "ok": 1, "price": 2.50},
                         {"name": "a", "amount": null, "ok": 0, "price": 2.50}]"#;
        let got = crate::store::changes(&store, &t, images).unwrap();
        assert_eq!(got.get(), expected);
        let scale = r#"[{"price": 2.5}, {"price": 2.50}]"#;
        let got = crate::store::changes(&store, &t, scale).unwrap();
        assert_eq!(got.get(), r#"{"price":{"old":2.5,"new":2.50}}"#);
        // A JSON document rewritten with its keys in another order changed, as its stored
        // image did.
        let json = r#"[{"note": {"a": 1, "b": 2}}, {"note": {"b": 2, "a": 1}}]"#;
        let got = crate::store::changes(&store, &t, json).unwrap();
        assert_eq!(
            got.get(),
            r#"{"note":{"old":{"a":1,"b":2},"new":{"b":2,"a":1}}}"#
        );
        for wrong in [r#"[{"a": 1}]"#, r#"[{"a": 1}, 2]"#, "7", "not json"] {
            let e = crate::store::changes(&store, &t, wrong).unwrap_err();
            assert!(
                e.to_string()
                    .contains("neither changed columns nor two row images"),
                "{e}"
            );
        }
    }

    #[test]
    fn decimals_get_their_scale() {
        assert_eq!(with_scale("1234.5", 2).as_deref(), Some("1234.50"));
        assert_eq!(with_scale("-7", 2).as_deref(), Some("-7.00"));
        assert_eq!(with_scale("1.234", 2), None);
        assert_eq!(with_scale("1.0e+20", 2), None);
        assert_eq!(with_scale("5", 0), None);
    }
}

//! The MySQL (≥ 8.0) and MariaDB (≥ 10.6) event store.
//!
//! `database.url = "mysql://user:pass@host:3306/dbname"`; configured tables are `db.table`, or
//! `table` in the URL's database. The SQL, the triggers and the privileges they need are
//! described in [`crate::dialect::mysql`].
//!
//! Every session runs at `READ COMMITTED` with `time_zone = '+00:00'`: the claim's
//! `SELECT … FOR UPDATE SKIP LOCKED` then takes no gap locks that could deadlock with the
//! application's inserts (which fire the triggers), and times are read in UTC. Binary logging,
//! when on, must use `ROW` or `MIXED` format (`STATEMENT` refuses `READ COMMITTED` writes).
//!
//! MySQL has no LISTEN/NOTIFY: [`EventStore::wait_for_events`] polls `MAX(event_id)` (an index
//! lookup) every 100 ms, so new events are seen within about 100 ms; an event whose id is lower
//! than one already seen (a transaction that took its id early and committed late) waits for
//! the poll interval instead.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use mysql::prelude::{AsStatement, FromRow, Queryable};
use mysql::{Conn, Opts, OptsBuilder, Params, Row, TxOpts, Value};
use serde_json::json;

use crate::config::{Config, Secret, TableName, Verb};
use crate::dialect::mysql::{self as sql, base_type, KeyType, Names};
use crate::event::{Event, Settlement, Status};
use crate::store::claim::{self, Keys, Neighbour};
use crate::store::{
    BacklogRow, ChildRow, EventStore, Fetched, Interrupt, JsonObject, ReadyBacklog, ReplayFilter,
    Replayed, Result, RetryBacklog, StoreError, StoreStatus,
};
use crate::table::{Column, ColumnKind, InstalledTrigger, TableInfo};

/// Rows per statement where a batch is sent as parameters, well below MySQL's 65535
/// placeholders per statement.
const CHUNK: usize = 1000;

/// Prepared statements a connection keeps. A batch's statements take one of a few texts each
/// ([`id_list`]); with the mysql crate's default of 32, a poller's own statements pushed each
/// other out of the cache, to be prepared again.
const STATEMENT_CACHE: usize = 128;

/// Event ids as the parameters of an `IN (…)`, filled up with the last id to the next power of
/// two from 8 (at most [`CHUNK`]). A statement's text depends on the length of its list: with a
/// text per batch size, the server prepared, and the client closed, every such statement of
/// every batch of a poller keeping up with its application (a few hundred events a batch, each
/// batch another size; BENCHMARKS.md, round 8). With eight lengths, each text is prepared once
/// per connection and kept. A repeated id changes nothing an `IN` finds.
fn id_list(ids: &[i64]) -> Vec<Value> {
    let Some(&last) = ids.last() else {
        return Vec::new();
    };
    let len = ids.len().next_power_of_two().clamp(8, CHUNK).max(ids.len());
    ids.iter()
        .copied()
        .chain(std::iter::repeat(last))
        .take(len)
        .map(Value::from)
        .collect()
}

/// How often a deadlock or lock wait timeout is retried before it is reported.
const LOCK_RETRIES: usize = 3;

pub struct MysqlStore {
    conn: Conn,
    url: Secret,
    names: Names,
    /// The URL's database: where `table` without a database part lives.
    database: Option<String>,
    token: String,
    claim_timeout_us: u64,
    /// The highest event id `wait_for_events` has seen.
    seen_max: Option<i64>,
    /// The server's id of the connection, for `KILL QUERY` (see [`EventStore::interrupter`]).
    connection_id: Arc<Mutex<u32>>,
}

struct MysqlInterrupt {
    url: Secret,
    connection_id: Arc<Mutex<u32>>,
}

impl Interrupt for MysqlInterrupt {
    fn interrupt(&self) {
        let id = *self.connection_id.lock().unwrap_or_else(|e| e.into_inner());
        let killed = open_conn(self.url.expose())
            .and_then(|mut conn| conn.query_drop(format!("KILL QUERY {id}")).map_err(err));
        if let Err(e) = killed {
            tracing::debug!(error = %e, "could not cancel the statement in flight");
        }
    }
}

/// Server error codes that mean the connection is gone, or could not be made for now (1040: too
/// many connections).
const CONNECTION_LOST: [u16; 6] = [1040, 1053, 1927, 2006, 2013, 4031];
/// Deadlock found, lock wait timeout.
const LOCK_CONFLICT: [u16; 2] = [1213, 1205];

fn err(e: mysql::Error) -> StoreError {
    use mysql::{DriverError, Error};
    match e {
        Error::MySqlError(m) if CONNECTION_LOST.contains(&m.code) => {
            StoreError::Connection(m.message)
        }
        Error::MySqlError(m) => StoreError::Database(format!("{} (error {})", m.message, m.code)),
        Error::IoError(_) | Error::CodecError(_) => StoreError::Connection(message(&e)),
        Error::DriverError(
            DriverError::ConnectTimeout
            | DriverError::CouldNotConnect(_)
            | DriverError::PacketOutOfSync
            | DriverError::UnexpectedPacket
            | DriverError::Timeout,
        ) => StoreError::Connection(message(&e)),
        Error::FromRowError(row) => StoreError::Database(unreadable(row)),
        other => StoreError::Database(message(&other)),
    }
}

/// The driver's message without the wrapping its `Display` adds (`DriverError { … }`).
fn message(e: &mysql::Error) -> String {
    use mysql::Error;
    match e {
        Error::IoError(e) => e.to_string(),
        Error::CodecError(e) => e.to_string(),
        Error::MySqlError(e) => e.to_string(),
        Error::DriverError(e) => e.to_string(),
        Error::UrlError(e) => e.to_string(),
        Error::TlsError(e) => e.to_string(),
        other => other.to_string(),
    }
}

/// Typed results, converted without panicking. The driver's typed `query`/`exec` panic on a row
/// that does not fit the type asked for, and catalogs do return such rows: MariaDB lists
/// triggers with NULL bodies and definers to accounts without the TRIGGER privilege. Here such
/// a row is an error with a message.
trait TypedRows: Queryable {
    fn query_rows<T: FromRow>(&mut self, query: impl AsRef<str>) -> Result<Vec<T>, mysql::Error> {
        let rows: Vec<Row> = self.query(query)?;
        rows.into_iter().map(converted).collect()
    }

    fn exec_rows<T: FromRow>(
        &mut self,
        statement: impl AsStatement,
        params: impl Into<Params>,
    ) -> Result<Vec<T>, mysql::Error> {
        let rows: Vec<Row> = self.exec(statement, params)?;
        rows.into_iter().map(converted).collect()
    }

    fn query_one<T: FromRow>(&mut self, query: impl AsRef<str>) -> Result<Option<T>, mysql::Error> {
        Ok(self.query_rows(query)?.into_iter().next())
    }

    fn exec_one<T: FromRow>(
        &mut self,
        statement: impl AsStatement,
        params: impl Into<Params>,
    ) -> Result<Option<T>, mysql::Error> {
        Ok(self.exec_rows(statement, params)?.into_iter().next())
    }
}

impl<Q: Queryable> TypedRows for Q {}

fn converted<T: FromRow>(row: Row) -> Result<T, mysql::Error> {
    T::from_row_opt(row).map_err(mysql::Error::from)
}

/// A row that did not convert, named by its columns and which of them were NULL (its values
/// may be anything, a secret too).
fn unreadable(row: Row) -> String {
    let names: Vec<String> = row
        .columns_ref()
        .iter()
        .map(|c| c.name_str().into_owned())
        .collect();
    let nulls: Vec<&str> = names
        .iter()
        .zip(row.unwrap_raw())
        .filter(|(_, v)| matches!(v, None | Some(Value::NULL)))
        .map(|(n, _)| n.as_str())
        .collect();
    format!(
        "the database returned a row trigpoll cannot read (columns {}; NULL: {})",
        names.join(", "),
        if nulls.is_empty() {
            "none".to_string()
        } else {
            nulls.join(", ")
        }
    )
}

fn is_lock_conflict(e: &mysql::Error) -> bool {
    matches!(e, mysql::Error::MySqlError(m) if LOCK_CONFLICT.contains(&m.code))
}

/// Runs `work` (one transaction) again when it lost a deadlock or a lock wait: the database
/// rolled it back whole, so trying again is safe.
fn retrying<T>(mut work: impl FnMut() -> Result<T, mysql::Error>) -> Result<T> {
    let mut tries = 0;
    loop {
        match work() {
            Err(e) if is_lock_conflict(&e) && tries + 1 < LOCK_RETRIES => {
                tries += 1;
                tracing::debug!(error = %e, "lock conflict; trying again");
                std::thread::sleep(Duration::from_millis(10 * tries as u64));
            }
            other => return other.map_err(err),
        }
    }
}

/// What fails a claim's lookups: the database (a lock conflict is worth trying again), or a
/// row that does not read.
enum LookupError {
    Mysql(mysql::Error),
    Store(StoreError),
}

impl From<mysql::Error> for LookupError {
    fn from(e: mysql::Error) -> Self {
        LookupError::Mysql(e)
    }
}

/// A claim's lookups (see the store's `claim` module) in the claim's transaction.
struct Lookups<'a, 'c> {
    tx: &'a mut mysql::Transaction<'c>,
    names: &'a Names,
    token: &'a str,
    timeout_us: u64,
}

impl claim::Lookups for Lookups<'_, '_> {
    type Error = LookupError;

    fn neighbours(&mut self, keys: &Keys, ids: &[i64]) -> Result<claim::Found, LookupError> {
        let mut rows = JsonRows::default();
        for (i, k) in keys.ranges.iter().enumerate() {
            rows.push(&[
                ("i", json!(i)),
                ("name", json!(k.object_name)),
                ("okey", json!(k.object_key)),
                ("last", json!(k.last)),
            ]);
        }
        let ids = id_list(ids);
        let query = sql::claim_neighbours(self.names, ids.len());
        let mut params: Vec<Value> = Vec::with_capacity(ids.len() + 3);
        params.extend([rows.param(), self.token.into(), self.timeout_us.into()]);
        params.extend(ids);
        let rows: Vec<(i64, i64, i64, Option<i64>, i32)> = self.tx.exec_rows(query, params)?;
        let mut found = Vec::new();
        let mut waiters = Vec::new();
        for (kind, a, b, waiting, priority) in rows {
            match kind {
                0 => found.push(Neighbour {
                    key: a as usize,
                    event_id: b,
                    priority,
                    waiting: waiting == Some(1),
                }),
                _ => waiters.push((a, b)),
            }
        }
        Ok((found, waiters))
    }

    fn before(&mut self, barriers: &[(&str, i64)]) -> Result<Vec<(i64, i64)>, LookupError> {
        let mut rows = JsonRows::default();
        for (name, id) in barriers {
            rows.push(&[("name", json!(name)), ("id", json!(id))]);
        }
        let params = (rows.param(), self.token, self.timeout_us);
        let rows: Vec<(i64, Option<i64>)> =
            self.tx.exec_rows(sql::claim_before(self.names), params)?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, earlier)| Some((id, earlier?)))
            .collect())
    }

    fn inherit(&mut self, runs: &[claim::Inherit]) -> Result<Vec<Event>, LookupError> {
        let mut rows = JsonRows::default();
        for r in runs {
            rows.push(&[
                ("name", json!(r.object_name)),
                ("okey", json!(r.object_key)),
                ("first", json!(r.from)),
                ("last", json!(r.last)),
            ]);
        }
        let params = (rows.param(), self.timeout_us);
        let rows: Vec<Row> = self.tx.exec(sql::claim_inherit(self.names), params)?;
        rows.into_iter()
            .map(event_from_row)
            .collect::<Result<_>>()
            .map_err(LookupError::Store)
    }
}

/// Holds events behind the events they wait for, each only while that one is still there
/// ([`sql::lock_blockers`]).
fn hold(
    tx: &mut mysql::Transaction,
    names: &Names,
    token: &str,
    holds: &[(i64, i64)],
) -> Result<(), mysql::Error> {
    if holds.is_empty() {
        return Ok(());
    }
    let mut blockers: Vec<i64> = holds.iter().map(|h| h.1).collect();
    blockers.sort_unstable();
    blockers.dedup();
    let mut params = id_list(&blockers);
    let query = sql::lock_blockers(names, params.len());
    params.push(token.into());
    let there: Vec<i64> = tx.exec_rows(query, params)?;
    let holds: Vec<&(i64, i64)> = holds.iter().filter(|h| there.contains(&h.1)).collect();
    for chunk in holds.chunks(CHUNK) {
        let mut rows = JsonRows::default();
        for (id, behind) in chunk {
            rows.push(&[("event_id", json!(id)), ("behind", json!(behind))]);
        }
        tx.exec_drop(sql::hold(names), (rows.param(),))?;
    }
    Ok(())
}

/// Archives, deletes, retries and puts back a batch's events, each statement only for those
/// still claimed under `token`. Without `locked` (the events' claims not locked beforehand),
/// stops and returns false as soon as a statement finds fewer events than it was given: some
/// claim was taken over, and the transaction must be rolled back.
fn settle(
    tx: &mut mysql::Transaction,
    n: &Names,
    token: &str,
    settlement: &Settlement,
    locked: Option<()>,
) -> Result<bool, mysql::Error> {
    let all = |tx: &mysql::Transaction, expected: usize| {
        locked.is_some() || tx.affected_rows() == expected as u64
    };
    for chunk in settlement.archive.chunks(CHUNK) {
        let mut rows = JsonRows::default();
        for a in chunk {
            rows.push(&[
                ("event_id", json!(a.event_id)),
                ("connector_id", json!(a.connector_id)),
                ("status", json!(a.status.code())),
                ("description", json!(a.description)),
                ("attempts", json!(a.attempts)),
            ]);
        }
        tx.exec_drop(sql::archive(n), (rows.param(), token))?;
        if !all(tx, chunk.len()) {
            return Ok(false);
        }
    }
    for chunk in settlement.complete.chunks(CHUNK) {
        let mut params = id_list(chunk);
        let count = params.len();
        params.push(token.into());
        tx.exec_drop(sql::delete_claimed(n, count), params.clone())?;
        if !all(tx, chunk.len()) {
            return Ok(false);
        }
        params.pop();
        tx.exec_drop(sql::release(n, count), params)?;
    }
    for chunk in settlement.retry.chunks(CHUNK) {
        let mut rows = JsonRows::default();
        for r in chunk {
            rows.push(&[
                ("event_id", json!(r.event_id)),
                ("attempts", json!(r.attempts)),
                ("delay_us", json!(r.delay.as_micros() as u64)),
                ("description", json!(r.description)),
                ("done", connectors(&r.done_connectors)),
            ]);
        }
        tx.exec_drop(sql::retry_later(n), (rows.param(), token))?;
        if !all(tx, chunk.len()) {
            return Ok(false);
        }
    }
    for chunk in settlement.hold.chunks(CHUNK) {
        let mut rows = JsonRows::default();
        for h in chunk {
            rows.push(&[
                ("event_id", json!(h.event_id)),
                ("done", connectors(&h.done_connectors)),
            ]);
        }
        tx.exec_drop(sql::put_back(n), (rows.param(), token))?;
        if !all(tx, chunk.len()) {
            return Ok(false);
        }
    }
    let behind: Vec<(i64, i64)> = settlement
        .hold
        .iter()
        .filter_map(|h| Some((h.event_id, h.behind?)))
        .collect();
    hold(tx, n, token, &behind)?;
    Ok(true)
}

/// The server's version from `SELECT VERSION()`, or why trigpoll cannot use it.
pub fn check_version(version: &str) -> Result<(), String> {
    let numbers: Vec<u32> = version
        .split(|c: char| !c.is_ascii_digit())
        .take(2)
        .filter_map(|n| n.parse().ok())
        .collect();
    let (major, minor) = match numbers[..] {
        [major, minor] => (major, minor),
        _ => return Err(format!("cannot read the server version {version:?}")),
    };
    let (name, needed) = if version.contains("MariaDB") {
        ("MariaDB", (10, 6))
    } else {
        ("MySQL", (8, 0))
    };
    if (major, minor) < needed {
        return Err(format!(
            "{name} {major}.{minor} is too old: trigpoll needs {name} {}.{} or later (for SKIP LOCKED)",
            needed.0, needed.1
        ));
    }
    Ok(())
}

fn open_conn(url: &str) -> Result<Conn> {
    let tls = super::tls::TlsUrl::mysql(url)?;
    if tls.verifies() {
        // Checks the `ssl-ca` file, so that a bad one is a configuration error.
        tls.connector()?;
    }
    let url = tls.url.as_str();
    let opts = Opts::from_url(url)
        .map_err(|e| StoreError::Invalid(format!("database.url is not a MySQL URL: {e}")))?;
    // The mysql crate reconnects through the server's Unix socket when the host is a loopback
    // address; that is another account (`user@localhost`) than the URL names, unless asked for.
    let prefer_socket = opts.get_prefer_socket() && url.contains("prefer_socket=");
    let opts = OptsBuilder::from_opts(opts)
        .prefer_socket(prefer_socket)
        .tcp_connect_timeout(Some(Duration::from_secs(10)))
        .stmt_cache_size(STATEMENT_CACHE)
        .init(vec![
            "SET NAMES utf8mb4",
            "SET time_zone = '+00:00'",
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
            // Known settings for the statements and for the triggers, which keep the sql_mode
            // they were created with: strict, and backslashes in strings are escapes.
            "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'",
        ]);
    let connected = match Conn::new(opts.clone().ssl_opts(tls.mysql_ssl_opts())) {
        // PREFERRED: plaintext when the server has no TLS.
        Err(mysql::Error::DriverError(mysql::DriverError::TlsNotSupported))
            if tls.mode == super::tls::Mode::Prefer =>
        {
            Conn::new(opts)
        }
        other => other,
    };
    let mut conn = connected.map_err(|e| {
        err(e).connecting(|reason| format!("cannot connect to MySQL: {}", tls.hint(reason)))
    })?;
    let version: Option<String> = conn.query_one("SELECT VERSION()").map_err(err)?;
    check_version(version.as_deref().unwrap_or_default()).map_err(StoreError::Invalid)?;
    Ok(conn)
}

/// Takes column `i` of a row, converted.
fn take<T: mysql::prelude::FromValue>(row: &mut Row, i: usize) -> Result<T> {
    match row.take_opt::<T, usize>(i) {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(StoreError::Database(format!(
            "unexpected value in column {i}: {e}"
        ))),
        None => Err(StoreError::Database(format!("no column {i} in the result"))),
    }
}

fn event_from_row(mut row: Row) -> Result<Event> {
    let done: Option<String> = take(&mut row, 10)?;
    Ok(Event {
        event_id: take(&mut row, 0)?,
        object_name: take(&mut row, 1)?,
        object_verb: take(&mut row, 2)?,
        object_key: take(&mut row, 3)?,
        priority: take(&mut row, 4)?,
        event_time: take(&mut row, 5)?,
        connector_id: take(&mut row, 6)?,
        attempts: take(&mut row, 7)?,
        payload: take(&mut row, 8)?,
        replay_of: take(&mut row, 9)?,
        done_connectors: done
            .map(|d| d.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
        action: take(&mut row, 11)?,
        comment: take(&mut row, 12)?,
    })
}

/// Connector ids as the event table keeps them: comma-separated, NULL for none.
/// A `done_connectors` value: the ids separated by commas, NULL for none.
fn connectors(ids: &[String]) -> serde_json::Value {
    match ids {
        [] => serde_json::Value::Null,
        _ => ids.join(",").into(),
    }
}

/// Rows for one `JSON_TABLE` parameter ([`sql::json_rows`]): an array of objects whose members
/// are the columns; a NULL is left out, which `JSON_TABLE` reads as NULL on MySQL and MariaDB
/// alike (a JSON `null` is not read the same by every version).
#[derive(Default)]
struct JsonRows(String);

impl JsonRows {
    fn push(&mut self, cells: &[(&str, serde_json::Value)]) {
        self.0.push(if self.0.is_empty() { '[' } else { ',' });
        self.0.push('{');
        let mut first = true;
        for (name, value) in cells.iter().filter(|(_, v)| !v.is_null()) {
            if !first {
                self.0.push(',');
            }
            first = false;
            self.0.push('"');
            self.0.push_str(name);
            self.0.push_str("\":");
            self.0.push_str(&value.to_string());
        }
        self.0.push('}');
    }

    fn param(&self) -> Value {
        match self.0.is_empty() {
            true => Value::from("[]"),
            false => Value::from(format!("{}]", self.0)),
        }
    }
}

fn text(v: Option<&str>) -> Value {
    v.map_or(Value::NULL, Value::from)
}

/// An RFC 3339 instant as a `DATETIME(6)` literal in UTC, the session's time zone.
fn utc_datetime(rfc3339: &str) -> Result<String> {
    let t = humantime::parse_rfc3339_weak(rfc3339)
        .map_err(|e| StoreError::Invalid(format!("{rfc3339:?} is not an RFC 3339 time: {e}")))?;
    Ok(humantime::format_rfc3339_micros(t)
        .to_string()
        .trim_end_matches('Z')
        .replace('T', " "))
}

/// Unix seconds (as `UNIX_TIMESTAMP()` writes them) as RFC 3339 UTC, with the value's precision;
/// `None` from the year 10000, which RFC 3339 cannot write (only an application's own payload
/// holds such a number).
fn unix_to_rfc3339(seconds: &str) -> Option<String> {
    const YEAR_10000: u64 = 253_402_300_800;
    let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
    let whole: u64 = whole.parse().ok().filter(|&s| s < YEAR_10000)?;
    let digits = fraction.len();
    if digits > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: u32 = format!("{fraction:0<9}").parse().ok()?;
    let t = SystemTime::UNIX_EPOCH + Duration::new(whole, nanos);
    Some(match digits {
        0 => humantime::format_rfc3339_seconds(t).to_string(),
        1..=3 => humantime::format_rfc3339_millis(t).to_string(),
        _ => humantime::format_rfc3339_micros(t).to_string(),
    })
}

/// A row image (MySQL's JSON rendering of a row) as the payload's attributes.
pub(crate) fn row_image(
    table: &TableInfo,
    image: &str,
) -> Result<Box<serde_json::value::RawValue>> {
    Ok(super::attributes(&normalize(
        table,
        super::json_object(image)?,
    )))
}

/// Adjusts MySQL's JSON rendering of a row (see [`sql::row_json`]) to the payload's types
/// (docs/payload.md).
pub(crate) fn normalize(
    table: &TableInfo,
    mut row: serde_json::Map<String, serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    use base64::Engine;
    use serde_json::Value as J;
    for col in &table.columns {
        let Some(value) = row.get_mut(&col.name) else {
            continue;
        };
        let base = base_type(&col.sql_type);
        match value {
            J::String(hex) if col.kind == ColumnKind::Bytes => {
                if let Ok(bytes) = hex::decode(&*hex) {
                    *hex = base64::engine::general_purpose::STANDARD.encode(bytes);
                }
            }
            J::String(text)
                if col.kind == ColumnKind::NaiveTimestamp
                    && text.as_bytes().first().is_some_and(u8::is_ascii_digit) =>
            {
                *text = format!("{}Z", text.replacen(' ', "T", 1));
            }
            J::Number(n) if base == "timestamp" => {
                if let Some(t) = unix_to_rfc3339(&n.to_string()) {
                    *value = J::String(t);
                }
            }
            J::Number(n) if col.sql_type.to_ascii_lowercase().starts_with("tinyint(1)") => {
                match n.as_i64() {
                    Some(0) => *value = J::Bool(false),
                    Some(1) => *value = J::Bool(true),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    row
}

fn is_character_type(base: &str) -> bool {
    matches!(
        base,
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set"
    )
}

impl MysqlStore {
    pub fn connect(config: &Config) -> Result<Self> {
        let db = &config.database;
        let database = super::tls::TlsUrl::mysql(db.url.expose())
            .ok()
            .and_then(|tls| Opts::from_url(&tls.url).ok())
            .and_then(|o| o.get_db_name().map(str::to_string))
            .filter(|d| !d.is_empty());
        let conn = open_conn(db.url.expose())?;
        Ok(MysqlStore {
            connection_id: Arc::new(Mutex::new(conn.connection_id())),
            conn,
            url: db.url.clone(),
            names: sql::names(&db.schema, &db.event_table, &db.archive_table),
            database,
            token: format!("{}-{:016x}", std::process::id(), rand::random::<u64>()),
            claim_timeout_us: config.poll.claim_timeout.as_micros() as u64,
            seen_max: None,
        })
    }

    /// The catalog's spelling of a table's database and name: exact when it exists so, else the
    /// one case-insensitive match (servers with `lower_case_table_names` store lower case).
    fn resolve(&mut self, name: &TableName) -> Result<Option<(String, String)>> {
        let schema = match name.schema.clone().or_else(|| self.database.clone()) {
            Some(s) => s,
            None => {
                return Err(StoreError::Invalid(format!(
                    "table {name}: write it as database.table, or put a database in database.url"
                )))
            }
        };
        let found: Vec<(String, String)> = self
            .conn
            .exec_rows(
                "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (&schema, &name.name),
            )
            .map_err(err)?;
        let exact = found
            .iter()
            .find(|(s, t)| *s == schema && *t == name.name)
            .cloned();
        Ok(exact.or_else(|| (found.len() == 1).then(|| found[0].clone())))
    }
}

impl MysqlStore {
    /// One claim (see the store's `claim` module): the events claimed and how many were held.
    fn claim_once(&mut self, limit: usize, cap: usize) -> Result<(Vec<Event>, usize)> {
        let (conn, names, token, timeout) = (
            &mut self.conn,
            &self.names,
            self.token.as_str(),
            self.claim_timeout_us,
        );
        retrying(|| {
            let mut tx = conn.start_transaction(TxOpts::default())?;
            let rows: Vec<Row> = tx.exec(sql::claim_candidates(names), (timeout, limit as u64))?;
            let events: Vec<Event> = match rows.into_iter().map(event_from_row).collect() {
                Ok(events) => events,
                Err(e) => return Ok(Err(e)),
            };
            if events.is_empty() {
                return Ok(Ok((events, 0)));
            }
            let mut lookups = Lookups {
                tx: &mut tx,
                names,
                token,
                timeout_us: timeout,
            };
            let (events, plan) = match claim::decide(&mut lookups, events, cap) {
                Ok(decided) => decided,
                Err(LookupError::Mysql(e)) => return Err(e),
                Err(LookupError::Store(e)) => return Ok(Err(e)),
            };
            let claimed = claim::take(events, &plan);
            if !claimed.is_empty() {
                let ids: Vec<i64> = claimed.iter().map(|e| e.event_id).collect();
                let ids = id_list(&ids);
                let query = sql::mark_claimed(names, ids.len());
                let mut params: Vec<Value> = vec![token.into()];
                params.extend(ids);
                tx.exec_drop(query, params)?;
            }
            hold(&mut tx, names, token, &plan.hold)?;
            tx.commit()?;
            Ok(Ok((claimed, plan.hold.len())))
        })?
    }

    /// Whether the account a trigger runs as (`user@host`, as `information_schema` writes it)
    /// exists; `None` when this session may not look (no `SELECT` on `mysql.user`).
    fn definer_exists(&mut self, definer: &str) -> Result<Option<bool>> {
        let (user, host) = definer.rsplit_once('@').unwrap_or((definer, "%"));
        let current: Option<String> = self.conn.query_one("SELECT CURRENT_USER()").map_err(err)?;
        if current.as_deref() == Some(definer) {
            return Ok(Some(true));
        }
        match self.conn.exec_one::<i64>(
            "SELECT count(*) FROM mysql.user WHERE User = ? AND Host = ?",
            (user, host),
        ) {
            Ok(count) => Ok(Some(count.unwrap_or(0) > 0)),
            // Access denied to the table or the database.
            Err(mysql::Error::MySqlError(e)) if [1142, 1044].contains(&e.code) => {
                tracing::debug!(definer, "cannot check whether the trigger definer exists");
                Ok(None)
            }
            Err(e) => Err(err(e)),
        }
    }
}

impl EventStore for MysqlStore {
    fn backend(&self) -> &'static str {
        "mysql"
    }

    fn describe_table(&mut self, name: &TableName) -> Result<Option<TableInfo>> {
        let Some((schema, table)) = self.resolve(name)? else {
            return Ok(None);
        };
        let same = |s: &String, t: &String| *s == schema && *t == table;
        let rows: Vec<Row> = self
            .conn
            .exec_rows(
                "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE,
                        CHARACTER_SET_NAME, COLLATION_NAME
                 FROM information_schema.COLUMNS
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (&schema, &table),
            )
            .map_err(err)?;
        let mut columns = Vec::new();
        for mut r in rows {
            let (s, t): (String, String) = (take(&mut r, 0)?, take(&mut r, 1)?);
            if !same(&s, &t) {
                continue;
            }
            let name: String = take(&mut r, 2)?;
            let column_type: String = take(&mut r, 3)?;
            let nullable: String = take(&mut r, 4)?;
            let charset: Option<String> = take(&mut r, 5)?;
            let collation: Option<String> = take(&mut r, 6)?;
            let base = base_type(&column_type);
            let sql_type = match (charset, collation) {
                (Some(cs), Some(co)) if is_character_type(&base) => {
                    format!("{column_type} CHARACTER SET {cs} COLLATE {co}")
                }
                _ => column_type,
            };
            columns.push(Column {
                name,
                kind: match base.as_str() {
                    "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
                        ColumnKind::Bytes
                    }
                    "datetime" => ColumnKind::NaiveTimestamp,
                    "tinyint" | "smallint" | "mediumint" | "int" | "bigint" => ColumnKind::Integer,
                    _ => ColumnKind::Plain,
                },
                sql_type,
                nullable: nullable == "YES",
            });
        }
        let keys: Vec<(String, String, String)> = self
            .conn
            .exec_rows(
                "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME FROM information_schema.STATISTICS
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY'
                 ORDER BY SEQ_IN_INDEX",
                (&schema, &table),
            )
            .map_err(err)?;
        let primary_key = keys
            .into_iter()
            .filter(|(s, t, _)| same(s, t))
            .map(|(_, _, c)| c)
            .collect();
        Ok(Some(TableInfo {
            name: TableName {
                schema: Some(schema),
                name: table,
            },
            columns,
            primary_key,
            partitioning: Default::default(),
        }))
    }

    fn installed_triggers(&mut self) -> Result<Vec<InstalledTrigger>> {
        // An account without the TRIGGER privilege on a table sees its triggers with NULL bodies
        // and definers (MariaDB) or not at all (MySQL): those are left to `triggers_hidden`.
        type Listed = (String, String, String, Option<String>, Option<String>);
        let rows: Vec<Listed> = self
            .conn
            .query_rows(format!(
                "SELECT TRIGGER_SCHEMA, EVENT_OBJECT_TABLE, TRIGGER_NAME, ACTION_STATEMENT, DEFINER
                 FROM information_schema.TRIGGERS
                 WHERE TRIGGER_NAME LIKE '{}%' ESCAPE '!'
                 ORDER BY TRIGGER_SCHEMA, EVENT_OBJECT_TABLE, TRIGGER_NAME",
                sql::TRIGGER_PREFIX.replace('_', "!_")
            ))
            .map_err(err)?;
        // Ours are the ones that write into this event table; other installations may share
        // the server.
        let writes_here = format!("INSERT INTO {} (", self.names.event);
        // (schema, table) -> (trigger name, body, definer)
        type Found = (String, String, String);
        let mut tables: BTreeMap<(String, String), Vec<Found>> = BTreeMap::new();
        for (schema, table, name, body, definer) in rows {
            let (Some(body), Some(definer)) = (body, definer) else {
                continue;
            };
            if body.contains(&writes_here) {
                tables
                    .entry((schema, table))
                    .or_default()
                    .push((name, body, definer));
            }
        }
        let event_table_exists = self
            .resolve(&TableName {
                schema: Some(self.names.schema_raw.clone()),
                name: self.names.event_raw.clone(),
            })?
            .is_some();
        let mut definers = BTreeMap::new();
        let mut installed = Vec::new();
        for ((schema, table), triggers) in tables {
            let prints: Vec<Option<(String, usize)>> = triggers
                .iter()
                .map(|(_, body, _)| crate::dialect::parse_fingerprint(body))
                .collect();
            // One fingerprint for the table only when every trigger of the set is there.
            let fingerprint = match &prints[0] {
                Some((fp, count))
                    if *count == prints.len()
                        && prints
                            .iter()
                            .all(|p| p.as_ref().is_some_and(|(f, _)| f == fp)) =>
                {
                    Some(fp.clone())
                }
                _ => None,
            };
            let mut failure = (!event_table_exists)
                .then(|| format!("the event table {} does not exist", self.names.event));
            for (_, _, definer) in &triggers {
                if failure.is_some() {
                    break;
                }
                if !definers.contains_key(definer) {
                    let found = self.definer_exists(definer)?;
                    definers.insert(definer.clone(), found);
                }
                if definers[definer] == Some(false) {
                    failure = Some(format!(
                        "the triggers' definer {definer} does not exist (MySQL error 1449)"
                    ));
                }
            }
            let runs_as = triggers.first().map(|(_, _, definer)| definer.clone());
            let columns = crate::dialect::parse_table_note(&triggers[0].1);
            let names: Vec<String> = triggers.into_iter().map(|(n, _, _)| n).collect();
            installed.push(InstalledTrigger {
                table: TableName {
                    schema: Some(schema),
                    name: table,
                },
                name: sql::installed_name(&names),
                fingerprint,
                columns,
                routine: None,
                failure,
                runs_as,
            });
        }
        Ok(installed)
    }

    fn triggers_hidden(&mut self, table: &TableName) -> Result<Option<String>> {
        let Some((schema, name)) = self.resolve(table)? else {
            return Ok(None);
        };
        // The account's own grants and those of its roles, as the privilege views name them:
        // `'user'@'host'`, a role `'role'` (MariaDB) or `'role'@'host'` (MySQL). A schema
        // grant's name may hold LIKE wildcards.
        let granted = self.conn.exec_one::<i64>(
            r#"SELECT count(*) FROM (
                   SELECT GRANTEE, TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLE_PRIVILEGES
                   WHERE PRIVILEGE_TYPE = 'TRIGGER'
                   UNION ALL SELECT GRANTEE, TABLE_SCHEMA, NULL FROM information_schema.SCHEMA_PRIVILEGES
                   WHERE PRIVILEGE_TYPE = 'TRIGGER'
                   UNION ALL SELECT GRANTEE, NULL, NULL FROM information_schema.USER_PRIVILEGES
                   WHERE PRIVILEGE_TYPE = 'TRIGGER'
               ) g
               WHERE (g.TABLE_SCHEMA IS NULL OR ? LIKE g.TABLE_SCHEMA)
                 AND (g.TABLE_NAME IS NULL OR g.TABLE_NAME = ?)
                 AND (g.GRANTEE = CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''',
                                         SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')
                      OR EXISTS (SELECT 1 FROM information_schema.APPLICABLE_ROLES r
                                 WHERE g.GRANTEE = CONCAT('''', r.ROLE_NAME, '''')
                                    OR g.GRANTEE LIKE CONCAT('''', r.ROLE_NAME, '''@%')))"#,
            (&schema, &name),
        );
        match granted {
            Ok(Some(0)) => Ok(Some(format!(
                "it lacks the TRIGGER privilege on {schema}.{name}, and MySQL shows triggers only to accounts with it"
            ))),
            Ok(_) => Ok(None),
            // A server without one of these views: nothing to say.
            Err(mysql::Error::MySqlError(e)) => {
                tracing::debug!(error = %e.message, "cannot read the account's privileges");
                Ok(None)
            }
            Err(e) => Err(err(e)),
        }
    }

    fn drop_own_schema(&mut self) -> Result<Vec<String>> {
        let schema = self.names.schema_raw.clone();
        let functions: Vec<String> = self
            .conn
            .exec_rows(
                "SELECT ROUTINE_NAME FROM information_schema.ROUTINES
                 WHERE ROUTINE_SCHEMA = ? AND ROUTINE_NAME LIKE 'key\\_value\\_%'",
                (&schema,),
            )
            .map_err(err)?;
        let mut statements: Vec<String> = functions
            .iter()
            .map(|f| {
                format!(
                    "DROP FUNCTION IF EXISTS {}.{}",
                    self.names.schema,
                    sql::ident(f)
                )
            })
            .collect();
        // What else the database holds once the tables and functions are gone.
        let others: Option<i64> = self
            .conn
            .exec_one(
                "SELECT (SELECT count(*) FROM information_schema.TABLES
                         WHERE TABLE_SCHEMA = ? AND TABLE_NAME NOT IN (?, ?))
                      + (SELECT count(*) FROM information_schema.ROUTINES
                         WHERE ROUTINE_SCHEMA = ? AND ROUTINE_NAME NOT LIKE 'key\\_value\\_%')
                      + (SELECT count(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ?)",
                (
                    &schema,
                    &self.names.event_raw,
                    &self.names.archive_raw,
                    &schema,
                    &schema,
                ),
            )
            .map_err(err)?;
        if others == Some(0) && self.database.as_deref() != Some(schema.as_str()) {
            statements.push(format!("DROP DATABASE IF EXISTS {}", self.names.schema));
        }
        Ok(statements)
    }

    fn check_condition(
        &mut self,
        t: &TableInfo,
        verb: Verb,
        condition: &str,
    ) -> Result<Option<String>> {
        let check = crate::dialect::condition_check(
            &sql::table(&t.name),
            verb,
            condition,
            crate::dialect::Quoting::Mysql,
        );
        match self.conn.query_drop(check) {
            Ok(()) => Ok(None),
            Err(mysql::Error::MySqlError(e)) => Ok(Some(e.message)),
            Err(e) => Err(err(e)),
        }
    }

    /// MySQL commits DDL statement by statement: they run one by one, and a failure says which
    /// ones took effect. The installer's statements are idempotent, so running it again
    /// completes the work.
    fn execute_ddl(&mut self, statements: &[String]) -> Result<()> {
        for (i, statement) in statements.iter().enumerate() {
            if let Err(e) = self.conn.query_drop(statement) {
                // A failure inside LOCK TABLES … UNLOCK TABLES must not keep the tables locked.
                let _ = self.conn.query_drop("UNLOCK TABLES");
                let first_line = |s: &String| s.lines().next().unwrap_or_default().to_string();
                let done: Vec<String> = statements[..i].iter().map(first_line).collect();
                return Err(StoreError::Database(format!(
                    "statement {} of {} failed: {}\n  failed: {}\n  already done (MySQL cannot roll back DDL): {}\n  \
                     fix the cause and run the command again: it completes what is missing",
                    i + 1,
                    statements.len(),
                    err(e),
                    first_line(statement),
                    if done.is_empty() {
                        "nothing".to_string()
                    } else {
                        format!("\n    {}", done.join("\n    "))
                    }
                )));
            }
            tracing::debug!(statement = %statement.lines().next().unwrap_or_default(), "done");
        }
        Ok(())
    }

    fn claim_capped(&mut self, limit: usize, cap: usize) -> Result<Vec<Event>> {
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
        let types: Vec<KeyType> = key_columns.iter().map(|c| KeyType::of(c)).collect();
        let mut out = vec![Fetched::Missing; keys.len()];
        // MySQL would turn `abc` into 0 for an integer column: such keys never reach the query.
        let mut valid = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            let problem =
                key.iter()
                    .zip(key_columns.iter().zip(&types))
                    .find_map(|(value, (col, t))| {
                        let reason = t.check(value.as_deref()?).err()?;
                        Some(format!("column {} ({}): {reason}", col.name, col.sql_type))
                    });
            match problem {
                Some(reason) => out[i] = Fetched::Invalid(reason),
                None => valid.push(i),
            }
        }
        for chunk in valid.chunks(CHUNK) {
            let query = sql::fetch(table, key_columns, columns, chunk.len());
            let params: Vec<Value> = chunk
                .iter()
                .flat_map(|&i| keys[i].iter().map(|v| text(v.as_deref())))
                .collect();
            let rows: Vec<(u64, Option<String>)> =
                self.conn.exec_rows(query, params).map_err(err)?;
            for (position, image) in rows {
                let i = chunk[position as usize];
                match image {
                    Some(image) => out[i] = Fetched::Row(self.row_image(table, &image)?),
                    // JSON_OBJECT is NULL when the row is larger than max_allowed_packet: the
                    // event is archived as an error, to replay once the limit is raised.
                    None => {
                        out[i] = Fetched::Invalid(
                            "the row is larger than the server's max_allowed_packet".into(),
                        )
                    }
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
        let positions: Vec<usize> = (0..keys.len()).collect();
        for chunk in positions.chunks(CHUNK) {
            let query =
                sql::fetch_children(table, parent_keys, columns, chunk.len(), order_by, carry);
            let params: Vec<Value> = chunk
                .iter()
                .flat_map(|&i| keys[i].iter().map(|v| text(v.as_deref())))
                .collect();
            let rows: Vec<Row> = self.conn.exec(query, params).map_err(err)?;
            for mut row in rows {
                let position: u64 = take(&mut row, 0)?;
                let image: String = take(&mut row, 1)?;
                let attributes = row_image(table, &image)?;
                let carry = (2..2 + carry.len())
                    .map(|c| take(&mut row, c))
                    .collect::<Result<Vec<Option<String>>>>()?;
                out[chunk[position as usize]].push(ChildRow { attributes, carry });
            }
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
        row_image(table, image)
    }

    fn finish(&mut self, settlement: &Settlement) -> Result<()> {
        let Settlement {
            archive,
            complete,
            retry,
            hold: holds,
        } = settlement;
        let mut ids: Vec<i64> = archive
            .iter()
            .map(|a| a.event_id)
            .chain(complete.iter().copied())
            .chain(retry.iter().map(|r| r.event_id))
            .chain(holds.iter().map(|h| h.event_id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Ok(());
        }
        let (conn, n, token) = (&mut self.conn, &self.names, self.token.as_str());
        retrying(|| {
            // Every statement touches only the events this store still claims. When each finds
            // all of its events, the batch was this store's to the end (the deletes and updates
            // lock them, and a claim never passes back to a token): commit. When one does not,
            // another poller took over an expired claim: start again, and settle what is still
            // this store's, leaving the rest to their new owner.
            let mut tx = conn.start_transaction(TxOpts::default())?;
            if settle(&mut tx, n, token, settlement, None)? {
                return tx.commit();
            }
            tx.rollback()?;
            let mut tx = conn.start_transaction(TxOpts::default())?;
            // By primary key, whatever the statistics of a table just filled say: a scan would
            // lock its way through rows the claiming connection is scanning at the same time.
            let mut held: Vec<i64> = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(CHUNK) {
                let ids = id_list(chunk);
                let query = format!(
                    "SELECT event_id FROM {} FORCE INDEX (PRIMARY)
                     WHERE claimed_by = ? AND event_id IN ({}) FOR UPDATE",
                    n.event,
                    sql::placeholders(ids.len())
                );
                let mut params: Vec<Value> = vec![token.into()];
                params.extend(ids);
                let found: Vec<i64> = tx.exec_rows(query, params)?;
                held.extend(found);
            }
            held.sort_unstable();
            let still = |id: &i64| held.binary_search(id).is_ok();
            let settlement = Settlement {
                archive: archive
                    .iter()
                    .filter(|a| still(&a.event_id))
                    .cloned()
                    .collect(),
                complete: complete.iter().copied().filter(still).collect(),
                retry: retry
                    .iter()
                    .filter(|r| still(&r.event_id))
                    .cloned()
                    .collect(),
                hold: holds
                    .iter()
                    .filter(|h| still(&h.event_id))
                    .cloned()
                    .collect(),
            };
            settle(&mut tx, n, token, &settlement, Some(()))?;
            tx.commit()
        })
    }

    fn release_orphans(&mut self) -> Result<u64> {
        self.conn
            .query_drop(sql::release_orphans(&self.names))
            .map_err(err)?;
        Ok(self.conn.affected_rows())
    }

    fn release_claims(&mut self) -> Result<()> {
        self.conn
            .exec_drop(
                format!(
                    "UPDATE {} SET event_status = 0, claimed_by = NULL, claimed_at = NULL
                     WHERE claimed_by = ? AND event_status = 3",
                    self.names.event
                ),
                (&self.token,),
            )
            .map_err(err)
    }

    fn renew_claims(&mut self, ids: &[i64]) -> Result<u64> {
        let mut renewed = 0;
        for chunk in ids.chunks(CHUNK) {
            let ids = id_list(chunk);
            let query = format!(
                "UPDATE {} FORCE INDEX (PRIMARY) SET claimed_at = NOW(6)
                 WHERE claimed_by = ? AND event_status = 3 AND event_id IN ({})",
                self.names.event,
                sql::placeholders(ids.len())
            );
            let mut params: Vec<Value> = vec![self.token.as_str().into()];
            params.extend(ids);
            self.conn.exec_drop(query, params).map_err(err)?;
            renewed += self.conn.affected_rows();
        }
        Ok(renewed)
    }

    fn another_connection(&self) -> Result<Box<dyn EventStore>> {
        let conn = open_conn(self.url.expose())?;
        Ok(Box::new(MysqlStore {
            connection_id: Arc::new(Mutex::new(conn.connection_id())),
            conn,
            url: self.url.clone(),
            names: self.names.clone(),
            database: self.database.clone(),
            token: self.token.clone(),
            claim_timeout_us: self.claim_timeout_us,
            seen_max: None,
        }))
    }

    fn retry_backlog(&mut self) -> Result<RetryBacklog> {
        let row: Option<(i64, Option<i64>)> = self
            .conn
            .query_one(format!(
                "SELECT COUNT(*), TIMESTAMPDIFF(MICROSECOND, NOW(6),
                        MIN(CASE WHEN next_attempt_at > NOW(6) THEN next_attempt_at END))
                 FROM {} WHERE event_status = 0
                   AND (next_attempt_at > NOW(6) OR waiting_for IS NOT NULL)",
                self.names.event
            ))
            .map_err(err)?;
        let (events, due) = row.unwrap_or((0, None));
        Ok(RetryBacklog {
            events: events as u64,
            next_due: due.map(|us| Duration::from_micros(us.max(0) as u64)),
        })
    }

    fn replay(&mut self, filter: &ReplayFilter, dry_run: bool) -> Result<Vec<Replayed>> {
        let mut conditions = Vec::new();
        let mut params: Vec<Value> = Vec::new();
        let mut any_of = |column: &str, values: Vec<Value>, params: &mut Vec<Value>| {
            conditions.push(format!(
                "a.{column} IN ({})",
                sql::placeholders(values.len())
            ));
            params.extend(values);
        };
        if !filter.objects.is_empty() {
            let values = filter.objects.iter().map(|o| o.as_str().into()).collect();
            any_of("object_name", values, &mut params);
        }
        if !filter.verbs.is_empty() {
            let values = filter.verbs.iter().map(|v| v.as_str().into()).collect();
            any_of("object_verb", values, &mut params);
        }
        if !filter.statuses.is_empty() {
            let values = filter.statuses.iter().map(|s| s.code().into()).collect();
            any_of("event_status", values, &mut params);
        }
        if let Some((from, to)) = filter.event_ids {
            conditions.push("a.event_id BETWEEN ? AND ?".into());
            params.extend([from.into(), to.into()]);
        }
        if let Some(connector) = &filter.connector {
            conditions.push("(a.connector_id = ? OR a.connector_id IS NULL)".into());
            params.push(connector.as_str().into());
        }
        if let Some(since) = &filter.since {
            conditions.push("a.event_processed >= ?".into());
            params.push(utc_datetime(since)?.into());
        }
        if let Some(until) = &filter.until {
            conditions.push("a.event_processed < ?".into());
            params.push(utc_datetime(until)?.into());
        }
        let limit = match filter.limit {
            Some(l) => {
                params.push(l.into());
                "LIMIT ?"
            }
            None => "",
        };
        let query = format!(
            "SELECT a.event_id, a.object_name, a.object_verb, a.object_key, a.connector_id
             FROM {} a {} ORDER BY a.event_id, a.connector_id IS NULL, a.connector_id {limit}",
            self.names.archive,
            if conditions.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", conditions.join(" AND "))
            },
        );
        let chosen: Vec<(i64, String, String, String, Option<String>)> =
            self.conn.exec_rows(query, params).map_err(err)?;
        let archived_connectors: Vec<Option<String>> = chosen.iter().map(|c| c.4.clone()).collect();
        let mut replayed: Vec<Replayed> = chosen
            .into_iter()
            .map(|(id, object, verb, key, connector)| Replayed {
                replay_of: id,
                object,
                verb,
                key,
                connector: filter.connector.clone().or(connector),
                new_event_id: None,
            })
            .collect();
        if dry_run || replayed.is_empty() {
            return Ok(replayed);
        }
        let insert = format!(
            "INSERT INTO {} (object_name, object_verb, object_key, event_priority, event_time,
                connector_id, payload, replay_of, event_action, event_comment)
             SELECT a.object_name, a.object_verb, a.object_key, a.event_priority, a.event_time,
                ?, a.payload, a.event_id, a.event_action, a.event_comment
             FROM {} a WHERE a.event_id = ? AND a.connector_id <=> ?",
            self.names.event, self.names.archive
        );
        // One insert per event, in event-id order, so that per-key order holds and each new
        // event id is known.
        let mut tx = self
            .conn
            .start_transaction(TxOpts::default())
            .map_err(err)?;
        for (r, archived) in replayed.iter_mut().zip(archived_connectors) {
            let params: Vec<Value> = vec![
                text(r.connector.as_deref()),
                r.replay_of.into(),
                text(archived.as_deref()),
            ];
            tx.exec_drop(&insert, params).map_err(err)?;
            r.new_event_id = tx.last_insert_id().map(|id| id as i64);
        }
        tx.commit().map_err(err)?;
        replayed.sort_by_key(|r| (r.replay_of, r.new_event_id));
        Ok(replayed)
    }

    fn status(&mut self) -> Result<StoreStatus> {
        let n = &self.names;
        let ready = "event_status = 0 AND (next_attempt_at IS NULL OR next_attempt_at <= NOW(6))
            AND waiting_for IS NULL";
        let backlog = self
            .conn
            .query::<(String, String, i32, i64), _>(format!(
                "SELECT object_name, object_verb, event_priority, COUNT(*) FROM {} WHERE {ready}
                 GROUP BY object_name, object_verb, event_priority
                 ORDER BY event_priority, object_name, object_verb",
                n.event
            ))
            .map_err(err)?
            .into_iter()
            .map(|(object, verb, priority, ready)| BacklogRow {
                object,
                verb,
                priority,
                ready: ready as u64,
            })
            .collect();
        let counts: Option<(Option<i64>, i64, i64, i64)> = self
            .conn
            .query_one(format!(
                "SELECT TIMESTAMPDIFF(MICROSECOND, MIN(CASE WHEN {ready} THEN event_time END), NOW(6)),
                    CAST(COALESCE(SUM(event_status = 3), 0) AS SIGNED),
                    CAST(COALESCE(SUM(event_status = 0 AND next_attempt_at > NOW(6)), 0) AS SIGNED),
                    CAST(COALESCE(SUM(waiting_for IS NOT NULL), 0) AS SIGNED)
                 FROM {}",
                n.event
            ))
            .map_err(err)?;
        let (age_us, in_progress, retrying, held) = counts.unwrap_or((None, 0, 0, 0));
        let archived: Vec<(i16, i64)> = self
            .conn
            .query_rows(format!(
                "SELECT event_status, COUNT(*) FROM {} WHERE event_status < 0 GROUP BY event_status",
                n.archive
            ))
            .map_err(err)?;
        let archived_count = |status: Status| {
            archived
                .iter()
                .find(|(code, _)| *code == status.code())
                .map_or(0, |(_, count)| *count as u64)
        };
        Ok(StoreStatus {
            backlog,
            oldest_ready_age_seconds: age_us.map(|us| us as f64 / 1e6),
            in_progress: in_progress as u64,
            retrying: retrying as u64,
            held: held as u64,
            archived_failed: archived_count(Status::Failed),
            archived_error: archived_count(Status::Error),
            archived_not_found: archived_count(Status::NotFound),
        })
    }

    fn wait_for_events(&mut self, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        let query = format!("SELECT MAX(event_id) FROM {}", self.names.event);
        loop {
            let max: Option<Option<i64>> = self.conn.query_one(&query).map_err(err)?;
            let max = max.flatten().unwrap_or(0);
            // The first look has nothing to compare with: say yes once, a claim is cheap.
            if self.seen_max.is_none_or(|seen| max > seen) {
                self.seen_max = Some(max);
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }

    fn reconnect(&mut self) -> Result<()> {
        self.conn = open_conn(self.url.expose())?;
        *self.connection_id.lock().unwrap_or_else(|e| e.into_inner()) = self.conn.connection_id();
        self.seen_max = None;
        Ok(())
    }

    fn interrupter(&self) -> Box<dyn Interrupt> {
        Box::new(MysqlInterrupt {
            url: self.url.clone(),
            connection_id: Arc::clone(&self.connection_id),
        })
    }

    fn sibling(&self) -> Option<Result<Box<dyn EventStore>>> {
        Some(self.another_connection())
    }

    fn prune(&mut self, older_than: Duration, statuses: &[Status], limit: usize) -> Result<u64> {
        // Oldest first by the primary key, a few rows per statement: no long locks.
        let mut params: Vec<Value> = vec![(older_than.as_micros() as u64).into()];
        params.extend(statuses.iter().map(|s| Value::from(s.code())));
        params.push((limit as u64).into());
        self.conn
            .exec_drop(
                format!(
                    "DELETE FROM {} WHERE event_processed < NOW(6) - INTERVAL ? MICROSECOND
                       AND event_status IN ({}) ORDER BY archive_id LIMIT ?",
                    self.names.archive,
                    sql::placeholders(statuses.len())
                ),
                params,
            )
            .map_err(err)?;
        Ok(self.conn.affected_rows())
    }

    fn count_prunable(&mut self, older_than: Duration, statuses: &[Status]) -> Result<u64> {
        let mut params: Vec<Value> = vec![(older_than.as_micros() as u64).into()];
        params.extend(statuses.iter().map(|s| Value::from(s.code())));
        let count: Option<i64> = self
            .conn
            .exec_one(
                format!(
                    "SELECT COUNT(*) FROM {} WHERE event_processed < NOW(6) - INTERVAL ? MICROSECOND
                       AND event_status IN ({})",
                    self.names.archive,
                    sql::placeholders(statuses.len())
                ),
                params,
            )
            .map_err(err)?;
        Ok(count.unwrap_or(0) as u64)
    }

    fn ready_backlog(&mut self) -> Result<ReadyBacklog> {
        let row: Option<(i64, Option<i64>)> = self
            .conn
            .query_one(format!(
                "SELECT COUNT(*), TIMESTAMPDIFF(MICROSECOND, MIN(event_time), NOW(6)) FROM {}
                 WHERE event_status = 0 AND (next_attempt_at IS NULL OR next_attempt_at <= NOW(6))
                   AND waiting_for IS NULL",
                self.names.event
            ))
            .map_err(err)?;
        let (events, age_us) = row.unwrap_or((0, None));
        Ok(ReadyBacklog {
            events: events as u64,
            oldest_age_seconds: age_us.map(|us| us as f64 / 1e6),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_lists_take_a_few_lengths_filled_with_their_last_id() {
        let ids = |n: i64| (1..=n).collect::<Vec<i64>>();
        let lengths: Vec<usize> = [1, 8, 9, 200, 513, 1000]
            .iter()
            .map(|&n| id_list(&ids(n)).len())
            .collect();
        assert_eq!(lengths, [8, 8, 16, 256, 1000, 1000]);
        assert_eq!(
            id_list(&[5, 3, 9]),
            [5, 3, 9, 9, 9, 9, 9, 9].map(Value::from).to_vec()
        );
        assert!(id_list(&[]).is_empty());
    }

    #[test]
    fn server_versions() {
        assert!(check_version("8.0.36").is_ok());
        assert!(check_version("8.4.0-commercial").is_ok());
        assert!(check_version("10.11.19-MariaDB-0+deb12u1").is_ok());
        assert!(check_version("11.4.2-MariaDB").is_ok());
        let old = check_version("10.5.23-MariaDB").unwrap_err();
        assert!(old.contains("MariaDB 10.5 is too old"), "{old}");
        assert!(old.contains("10.6 or later"), "{old}");
        let old = check_version("5.7.44-log").unwrap_err();
        assert!(old.contains("MySQL 5.7 is too old"), "{old}");
        assert!(check_version("garbage").is_err());
    }

    #[test]
    fn unix_seconds_become_rfc3339() {
        assert_eq!(
            unix_to_rfc3339("1767243600.500000").as_deref(),
            Some("2026-01-01T05:00:00.500000Z")
        );
        assert_eq!(
            unix_to_rfc3339("1767243600").as_deref(),
            Some("2026-01-01T05:00:00Z")
        );
        assert_eq!(
            unix_to_rfc3339("1767243600.120").as_deref(),
            Some("2026-01-01T05:00:00.120Z")
        );
        assert_eq!(unix_to_rfc3339("-1"), None);
        // Found by fuzzing: these panicked (a year RFC 3339 cannot write, a time out of range).
        assert_eq!(
            unix_to_rfc3339("253402300799").as_deref(),
            Some("9999-12-31T23:59:59Z")
        );
        assert_eq!(unix_to_rfc3339("253402300800"), None);
        assert_eq!(unix_to_rfc3339("18446744073709551615.5"), None);
    }

    #[test]
    fn replay_bounds_are_utc_datetimes() {
        assert_eq!(
            utc_datetime("2026-11-22T10:00:00Z").unwrap(),
            "2026-11-22 10:00:00.000000"
        );
        assert!(utc_datetime("yesterday").is_err());
    }

    #[test]
    fn rows_are_normalized_by_column_type() {
        let col = |name: &str, sql_type: &str, kind| Column {
            name: name.into(),
            sql_type: sql_type.into(),
            nullable: true,
            kind,
        };
        let table = TableInfo {
            name: TableName {
                schema: None,
                name: "t".into(),
            },
            columns: vec![
                col("photo", "blob", ColumnKind::Bytes),
                col("hired", "datetime(6)", ColumnKind::NaiveTimestamp),
                col("stamp", "timestamp(6)", ColumnKind::Plain),
                col("active", "tinyint(1)", ColumnKind::Plain),
                col("level", "tinyint(1)", ColumnKind::Plain),
                col("small", "tinyint(4)", ColumnKind::Plain),
                col("salary", "decimal(12,2)", ColumnKind::Plain),
                col("doc", "json", ColumnKind::Plain),
                col("gone", "datetime", ColumnKind::NaiveTimestamp),
            ],
            primary_key: vec![],
            partitioning: Default::default(),
        };
        let row = serde_json::from_str(
            r#"{"photo": "0102FF", "hired": "2026-11-22 10:00:00.123456",
                "stamp": 1767243600.500000, "active": 1, "level": 7, "small": 1,
                "salary": 1234.50, "doc": {"a": [1, 2.50]}, "gone": null}"#,
        )
        .unwrap();
        let row = serde_json::Value::Object(normalize(&table, row));
        assert_eq!(
            row.to_string(),
            r#"{"photo":"AQL/","hired":"2026-11-22T10:00:00.123456Z","stamp":"2026-01-01T05:00:00.500000Z","active":true,"level":7,"small":1,"salary":1234.50,"doc":{"a":[1,2.50]},"gone":null}"#
        );
    }
}

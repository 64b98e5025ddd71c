//! The PostgreSQL event store.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fallible_iterator::FallibleIterator;
use postgres::types::{Json, ToSql};
use postgres::{CancelToken, Client, Row, Statement};
use postgres_native_tls::MakeTlsConnector;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::config::{Config, Secret, TableName, Verb};
use crate::dialect::parse_fingerprint;
use crate::dialect::postgres::{self as sql, Names};
use crate::event::{Event, Settlement, Status};
use crate::store::claim::{self, Keys, Neighbour};
use crate::store::{
    BacklogRow, ChildRow, EventStore, Fetched, Interrupt, JsonObject, ReadyBacklog, ReplayFilter,
    Replayed, Result, RetryBacklog, StoreError, StoreStatus,
};
use crate::table::{Column, ColumnKind, InstalledTrigger, Partitioning, TableInfo};

pub struct PgStore {
    client: Client,
    url: Secret,
    names: Names,
    token: String,
    claim_timeout_secs: f64,
    /// Commits without waiting for the WAL flush: set on the sibling, which only claims.
    async_commit: bool,
    listening: bool,
    /// This session holds the wake gate (`sql::wake_gate`): it sleeps, and writers notify.
    gate_held: bool,
    /// The statements of the batch loop, prepared once per connection: parsing and planning
    /// them anew cost a round trip and about a millisecond per batch.
    prepared: HashMap<String, Statement>,
    /// Cancels the statement the connection runs (see [`EventStore::interrupter`]).
    cancel: Arc<Mutex<CancelToken>>,
    /// TLS as the URL asks for it (`sslmode`, `sslrootcert`): connections and cancels use it.
    tls: MakeTlsConnector,
    /// When this store vacuums the event table next ([`PgStore::vacuum_if_due`]).
    vacuum: Vacuum,
}

/// When this store vacuums the event table. Every event a poller archives leaves a dead row,
/// and an entry in each of the table's indexes, until a vacuum. A poller that keeps up with its
/// application reads past them in every claim and finish, and PostgreSQL cannot mark the index
/// entries dead while the application's new events keep changing their pages: under pgbench
/// TPC-B with autovacuum off, a claim's lookup took 1.8 ms in the first 5 s and 13 ms after
/// 25 s, and the load ran at two thirds of the pace it kept with the event table vacuumed every
/// second (BENCHMARKS.md, round 8). Autovacuum, where it is on, looks at a table once a minute
/// at most. So a store vacuums the event table itself, as PgQ's ticker does its queues, while
/// it keeps up: when its last two batches were smaller than `batch_size`, it deleted at least
/// [`VACUUM_AFTER`] events since its last vacuum, and [`VACUUM_EVERY`] has passed. A backlog
/// drained in full batches is left to autovacuum, as is the table of a role that may not
/// vacuum it (only its owner, the database's owner or a superuser may).
struct Vacuum {
    batch_size: usize,
    /// Events deleted since the last vacuum.
    deleted: u64,
    /// How many batches in a row were smaller than `batch_size`.
    partial_batches: u32,
    /// The last vacuum, or when the store was opened.
    last: std::time::Instant,
    /// Whether this session may vacuum the event table; `None` until asked.
    allowed: Option<bool>,
}

/// The fewest deletions between two vacuums of the event table, and the shortest time.
const VACUUM_AFTER: u64 = 1_000;
const VACUUM_EVERY: Duration = Duration::from_secs(1);

impl Vacuum {
    fn new(batch_size: usize) -> Self {
        Vacuum {
            batch_size,
            deleted: 0,
            partial_batches: 0,
            last: std::time::Instant::now(),
            allowed: None,
        }
    }

    /// A batch of `events` was finished, `deleted` of them deleted.
    fn finished(&mut self, events: usize, deleted: usize) {
        self.deleted += deleted as u64;
        self.partial_batches = match events < self.batch_size {
            true => self.partial_batches.saturating_add(1),
            false => 0,
        };
    }

    fn due(&self) -> bool {
        self.allowed != Some(false)
            && self.partial_batches >= 2
            && self.deleted >= VACUUM_AFTER
            && self.last.elapsed() >= VACUUM_EVERY
    }

    /// A vacuum ran, or was tried.
    fn done(&mut self) {
        self.deleted = 0;
        self.last = std::time::Instant::now();
    }
}

struct PgInterrupt(Arc<Mutex<CancelToken>>, MakeTlsConnector);

impl Interrupt for PgInterrupt {
    fn interrupt(&self) {
        let token = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Err(e) = token.cancel_query(self.1.clone()) {
            tracing::debug!(error = %e, "could not cancel the statement in flight");
        }
    }
}

/// One archive row of an event, as `sql::finish` reads it.
#[derive(Debug, Serialize)]
struct Outcome<'a> {
    connector_id: Option<&'a str>,
    status: i16,
    description: Option<&'a str>,
    attempts: i32,
}

/// What an event put back for a retry keeps, as `sql::finish` reads it.
#[derive(Debug, Serialize)]
struct RetryState<'a> {
    attempts: i32,
    delay_ms: i64,
    description: &'a str,
    done: Option<String>,
}

/// How many candidates a poller about to sleep looks at to tell whether anything is ready.
const LOOK_AHEAD: usize = 500;

/// A claim's statements read the event table by its indexes, whatever the planner estimates:
/// - the candidates in the claim index's order, never a sort of every ready event. An event
///   table that was never analyzed (a backlog queued faster than autovacuum looks) has
///   estimates of a few hundred rows, and with them the planner sorted a million: 1.8 s for the
///   first claim instead of 10 ms;
/// - each candidate key's events by the key index, never a hash or merge join over the whole
///   table. The planner's estimate of that index's probes is far too high, and it joined the
///   batch's keys to a scan of every event: 600 ms a claim over 1,000,000 events, 12 ms by the
///   index.
const BY_INDEX: &str =
    "SET LOCAL enable_sort = off; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off";

/// A claim's lookups (see the store's `claim` module) on `client` (the claim's transaction, or
/// a connection for a look that claims nothing).
struct Lookups<'a, C: postgres::GenericClient> {
    client: &'a mut C,
    neighbours: Statement,
    before: Statement,
    inherit: Statement,
    token: &'a str,
}

impl<C: postgres::GenericClient> claim::Lookups for Lookups<'_, C> {
    type Error = StoreError;

    fn neighbours(&mut self, keys: &Keys, ids: &[i64]) -> Result<claim::Found> {
        let names: Vec<&str> = keys.ranges.iter().map(|k| k.object_name).collect();
        let object_keys: Vec<&str> = keys.ranges.iter().map(|k| k.object_key).collect();
        let lasts: Vec<i64> = keys.ranges.iter().map(|k| k.last).collect();
        let rows = self
            .client
            .query(
                &self.neighbours,
                &[&names, &object_keys, &lasts, &self.token, &ids],
            )
            .map_err(err)?;
        let mut found = Vec::new();
        let mut waiters = Vec::new();
        for row in rows {
            let (a, b): (i64, i64) = (row.get(1), row.get(2));
            match row.get::<_, i32>(0) {
                0 => found.push(Neighbour {
                    key: a as usize - 1,
                    event_id: b,
                    priority: row.get(4),
                    waiting: row.get::<_, Option<bool>>(3).unwrap_or(false),
                }),
                _ => waiters.push((a, b)),
            }
        }
        Ok((found, waiters))
    }

    fn before(&mut self, barriers: &[(&str, i64)]) -> Result<Vec<(i64, i64)>> {
        let names: Vec<&str> = barriers.iter().map(|b| b.0).collect();
        let ids: Vec<i64> = barriers.iter().map(|b| b.1).collect();
        let rows = self
            .client
            .query(&self.before, &[&names, &ids, &self.token])
            .map_err(err)?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((r.get(0), r.get::<_, Option<i64>>(1)?)))
            .collect())
    }

    fn inherit(&mut self, runs: &[claim::Inherit]) -> Result<Vec<Event>> {
        let names: Vec<&str> = runs.iter().map(|r| r.object_name.as_str()).collect();
        let keys: Vec<&str> = runs.iter().map(|r| r.object_key.as_str()).collect();
        let froms: Vec<i64> = runs.iter().map(|r| r.from).collect();
        let lasts: Vec<i64> = runs.iter().map(|r| r.last).collect();
        let rows = self
            .client
            .query(&self.inherit, &[&names, &keys, &froms, &lasts])
            .map_err(err)?;
        Ok(rows.iter().map(PgStore::event_from_row).collect())
    }
}

/// Key values as the fetch statements take them: one text array per key column.
fn by_column(width: usize, keys: &[Vec<Option<String>>]) -> Vec<Vec<Option<String>>> {
    (0..width)
        .map(|i| keys.iter().map(|k| k[i].clone()).collect())
        .collect()
}

/// Connector ids as the event table keeps them: comma-separated, NULL for none.
fn joined(connectors: &[String]) -> Option<String> {
    (!connectors.is_empty()).then(|| connectors.join(","))
}

/// How long a poller about to sleep waits for writers to leave the wake gate.
const GATE_WAIT: Duration = Duration::from_millis(50);

/// How often a claim or a finish that the server cancelled to break a deadlock runs again
/// before the error is reported. Two pollers that hold events behind blockers (a claim's
/// `hold`, a finish's held events) can lock rows in opposite orders; each statement is whole or
/// nothing and touches only what its poller claims, so running it again is safe.
const DEADLOCK_RETRIES: usize = 3;

fn is_deadlock(e: &postgres::Error) -> bool {
    e.code() == Some(&postgres::error::SqlState::T_R_DEADLOCK_DETECTED)
}

/// Waits a little before the `tries`-th run after a deadlock, so that the other side commits.
fn after_deadlock(e: &postgres::Error, tries: usize) {
    tracing::debug!(error = %e, tries, "deadlock with another poller; trying again");
    std::thread::sleep(Duration::from_millis(10 * tries as u64));
}

fn err(e: postgres::Error) -> StoreError {
    // Class 08 is a connection exception, 57 an operator intervention such as
    // pg_terminate_backend or a shutdown (or a server still starting), 53300 a server with no
    // connection left: a new connection may well work.
    let lost = e.is_closed()
        || source_is_io(&e)
        || e.code().is_some_and(|c| {
            c.code().starts_with("08") || c.code().starts_with("57") || c.code() == "53300"
        });
    match e.as_db_error() {
        _ if lost => StoreError::Connection(described(&e)),
        Some(db) => {
            let mut msg = db.message().to_string();
            if let Some(detail) = db.detail() {
                msg.push_str(&format!(" ({detail})"));
            }
            if let Some(hint) = db.hint() {
                msg.push_str(&format!("; {hint}"));
            }
            StoreError::Database(msg)
        }
        None => StoreError::Database(described(&e)),
    }
}

/// The driver's message with its causes: alone it says only, say, that the TLS handshake
/// failed; the causes say why (a certificate that does not verify, a refused connection).
fn described(e: &postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let said = c.to_string();
        // TLS errors repeat their own cause in their message.
        if !text.contains(&said) {
            text = format!("{text}: {said}");
        }
        cause = c.source();
    }
    text
}

fn source_is_io(e: &postgres::Error) -> bool {
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// SQLSTATE class 22: a value that does not fit its type, e.g. a malformed key value.
fn is_data_exception(e: &postgres::Error) -> bool {
    e.code().is_some_and(|c| c.code().starts_with("22"))
}

/// The poller's session: rows are written as JSON and keys as text the way the capture routines
/// write them whatever the writer's session (`dialect::postgres::support_functions`).
///
/// No JIT compilation: trigpoll's statements read and write a batch's rows by index, but the
/// planner's cost of a claim's key lookups grows with the event table, and past `jit_above_cost`
/// compiling the statement took 210 ms of a 220 ms claim over 1,000,000 events (BENCHMARKS.md,
/// round 7).
const SESSION: &str = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; \
    SET IntervalStyle = 'postgres'; SET extra_float_digits = 1; SET bytea_output = 'hex'; \
    SET application_name = 'trigpoll'; SET client_min_messages = warning; SET jit = off";

fn open_client(url: &str, tls: &MakeTlsConnector, async_commit: bool) -> Result<Client> {
    let settings = super::tls::TlsUrl::postgres(url)?;
    let mut client = settings
        .postgres_config()?
        .connect(tls.clone())
        .map_err(|e| {
            err(e).connecting(|reason| {
                format!("cannot connect to PostgreSQL: {}", settings.hint(reason))
            })
        })?;
    client.batch_execute(SESSION).map_err(err)?;
    if async_commit {
        client
            .batch_execute("SET synchronous_commit = off")
            .map_err(err)?;
    }
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .map_err(err)?
        .get(0);
    if version < 120000 {
        return Err(StoreError::Invalid(format!(
            "PostgreSQL {} is too old: trigpoll needs 12 or later",
            version / 10000
        )));
    }
    if version >= 140000 {
        // A poller killed in the middle of a statement: the server ends the statement within a
        // second instead of running it to its end for nobody.
        client
            .batch_execute("SET client_connection_check_interval = '1s'")
            .map_err(err)?;
    }
    Ok(client)
}

impl PgStore {
    /// Vacuums the event table when it is due (see [`Vacuum`]). The batch is finished whatever
    /// happens here: a vacuum that fails is logged, and a lost connection is found by the next
    /// statement.
    fn vacuum_if_due(&mut self) {
        if !self.vacuum.due() {
            return;
        }
        let event = self.names.event.clone();
        if self.vacuum.allowed.is_none() {
            let allowed = self
                .client
                .query_one(
                    "SELECT r.rolsuper OR pg_has_role(c.relowner, 'USAGE')
                         OR pg_has_role(d.datdba, 'USAGE')
                     FROM pg_class c, pg_roles r, pg_database d
                     WHERE c.oid = $1::text::regclass AND r.rolname = current_user
                       AND d.datname = current_database()",
                    &[&event],
                )
                .map(|row| row.get::<_, bool>(0));
            match allowed {
                Ok(true) => self.vacuum.allowed = Some(true),
                Ok(false) => {
                    tracing::warn!(
                        "this role may not vacuum the event table {event}: that is left to \
                         autovacuum (README, Backends and privileges)"
                    );
                    self.vacuum.allowed = Some(false);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot tell whether this role may vacuum {event}");
                    self.vacuum.done();
                    return;
                }
            }
        }
        let started = std::time::Instant::now();
        match self
            .client
            .batch_execute(&format!("VACUUM (SKIP_LOCKED, TRUNCATE false) {event}"))
        {
            Ok(()) => tracing::debug!(took = ?started.elapsed(), "vacuumed the event table"),
            Err(e) if e.code() == Some(&postgres::error::SqlState::QUERY_CANCELED) => {}
            Err(e) => tracing::warn!(error = %e, "could not vacuum the event table {event}"),
        }
        self.vacuum.done();
    }

    pub fn connect(config: &Config) -> Result<Self> {
        let db = &config.database;
        PgStore::open(
            db.url.clone(),
            sql::names(
                &db.schema,
                &db.event_table,
                &db.archive_table,
                &db.capture_role(),
            ),
            format!("{}-{:016x}", std::process::id(), rand::random::<u64>()),
            config.poll.claim_timeout.as_secs_f64(),
            config.poll.batch_size,
            false,
        )
    }

    fn open(
        url: Secret,
        names: Names,
        token: String,
        claim_timeout_secs: f64,
        batch_size: usize,
        async_commit: bool,
    ) -> Result<Self> {
        let settings = super::tls::TlsUrl::postgres(url.expose())?;
        let tls = MakeTlsConnector::new(settings.connector()?);
        let client = open_client(url.expose(), &tls, async_commit)?;
        Ok(PgStore {
            cancel: Arc::new(Mutex::new(client.cancel_token())),
            tls,
            client,
            url,
            names,
            token,
            claim_timeout_secs,
            async_commit,
            listening: false,
            gate_held: false,
            prepared: HashMap::new(),
            vacuum: Vacuum::new(batch_size),
        })
    }

    /// Takes the wake gate (`sql::wake_gate`) for this session, waiting at most [`GATE_WAIT`]
    /// for the writers inside it; false when it could not be had in that time.
    fn hold_wake_gate(&mut self) -> Result<bool> {
        let (a, b) = sql::wake_gate(&self.names);
        let mut tx = self.client.transaction().map_err(err)?;
        tx.batch_execute(&format!(
            "SET LOCAL lock_timeout = {}",
            GATE_WAIT.as_millis()
        ))
        .map_err(err)?;
        match tx.execute("SELECT pg_advisory_lock($1, $2)", &[&a, &b]) {
            Ok(_) => tx.commit().map(|()| true).map_err(err),
            Err(e) if e.code() == Some(&postgres::error::SqlState::LOCK_NOT_AVAILABLE) => Ok(false),
            Err(e) => Err(err(e)),
        }
    }

    /// Busy again: writers need not notify. The gate is the only advisory lock this session
    /// takes.
    fn release_wake_gate(&mut self) -> Result<()> {
        self.query_prepared("SELECT pg_advisory_unlock_all()", &[])
            .map_err(err)?;
        self.gate_held = false;
        Ok(())
    }

    /// Waits up to `timeout` for a notification on the channel this session listens to.
    fn notified(&mut self, timeout: Duration) -> Result<bool> {
        let mut notifications = self.client.notifications();
        let woken = notifications
            .timeout_iter(timeout)
            .next()
            .map_err(err)?
            .is_some();
        // Many inserts may have notified; one claim answers all of them.
        while notifications.iter().next().map_err(err)?.is_some() {}
        Ok(woken)
    }

    /// `query` prepared, once per connection.
    fn statement(&mut self, query: &str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.prepared.get(query) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(query)?;
        self.prepared.insert(query.to_string(), statement.clone());
        Ok(statement)
    }

    /// Runs `query` as a statement prepared once per connection.
    fn query_prepared(
        &mut self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        let statement = self.statement(query)?;
        self.client.query(&statement, params)
    }

    /// One claim (see the store's `claim` module): the events claimed and how many were held;
    /// the deadlock when the server cancelled its hold to break one (the claim is rolled back).
    fn claim_once(
        &mut self,
        limit: usize,
        cap: usize,
    ) -> Result<Result<(Vec<Event>, usize), postgres::Error>> {
        let (timeout, token) = (self.claim_timeout_secs, self.token.clone());
        let candidates = self
            .statement(&sql::claim_candidates(&self.names, limit, timeout, true))
            .map_err(err)?;
        let [neighbours, before, inherit] = self.lookup_statements(true)?;
        let mark = self
            .statement(&sql::mark_claimed(&self.names))
            .map_err(err)?;
        let hold = self.statement(&sql::hold(&self.names)).map_err(err)?;
        let mut tx = self.client.transaction().map_err(err)?;
        tx.batch_execute(BY_INDEX).map_err(err)?;
        let events: Vec<Event> = tx
            .query(&candidates, &[])
            .map_err(err)?
            .iter()
            .map(Self::event_from_row)
            .collect();
        if events.is_empty() {
            return Ok(Ok((events, 0)));
        }
        let mut lookups = Lookups {
            client: &mut tx,
            neighbours,
            before,
            inherit,
            token: &token,
        };
        let (events, plan) = claim::decide(&mut lookups, events, cap)?;
        let ids: Vec<i64> = plan.claim.iter().map(|&i| events[i].event_id).collect();
        if !ids.is_empty() {
            tx.execute(&mark, &[&ids, &token]).map_err(err)?;
        }
        if !plan.hold.is_empty() {
            let (held, behind): (Vec<i64>, Vec<i64>) = plan.hold.iter().copied().unzip();
            match tx.execute(&hold, &[&held, &behind, &token]) {
                Err(e) if is_deadlock(&e) => return Ok(Err(e)),
                done => done.map_err(err)?,
            };
        }
        tx.commit().map_err(err)?;
        let held = plan.hold.len();
        Ok(Ok((claim::take(events, &plan), held)))
    }

    /// The statements of a claim's lookups: neighbours, earlier events of an object, inherited
    /// events (locked when `lock`).
    fn lookup_statements(&mut self, lock: bool) -> Result<[Statement; 3]> {
        let timeout = self.claim_timeout_secs;
        Ok([
            sql::claim_neighbours(&self.names, timeout),
            sql::claim_before(&self.names, timeout),
            sql::claim_inherit(&self.names, timeout, lock),
        ]
        .map(|query| self.statement(&query))
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?
        .try_into()
        .expect("three statements"))
    }

    /// Whether a claim would take anything now, without claiming (or holding) it.
    fn claim_would_find(&mut self) -> Result<bool> {
        let timeout = self.claim_timeout_secs;
        let candidates = self
            .statement(&sql::claim_candidates(
                &self.names,
                LOOK_AHEAD,
                timeout,
                false,
            ))
            .map_err(err)?;
        let [neighbours, before, inherit] = self.lookup_statements(false)?;
        let token = self.token.clone();
        let mut tx = self.client.transaction().map_err(err)?;
        tx.batch_execute(BY_INDEX).map_err(err)?;
        let events: Vec<Event> = tx
            .query(&candidates, &[])
            .map_err(err)?
            .iter()
            .map(Self::event_from_row)
            .collect();
        if events.is_empty() {
            return Ok(false);
        }
        let mut lookups = Lookups {
            client: &mut tx,
            neighbours,
            before,
            inherit,
            token: &token,
        };
        let (_, plan) = claim::decide(&mut lookups, events, LOOK_AHEAD)?;
        tx.commit().map_err(err)?;
        Ok(!plan.claim.is_empty())
    }

    fn event_from_row(row: &postgres::Row) -> Event {
        let done: Option<String> = row.get(10);
        Event {
            event_id: row.get(0),
            object_name: row.get(1),
            object_verb: row.get(2),
            object_key: row.get(3),
            priority: row.get(4),
            event_time: row.get(5),
            connector_id: row.get(6),
            attempts: row.get(7),
            payload: row.get(8),
            replay_of: row.get(9),
            done_connectors: done
                .map(|d| d.split(',').map(str::to_string).collect())
                .unwrap_or_default(),
            action: row.get(11),
            comment: row.get(12),
        }
    }

    /// Where the table `oid` stands in a partition tree: a partition (of its root), the root
    /// of one (with every column that chooses a row's partition at any level), or neither.
    fn partitioning(&mut self, oid: u32) -> Result<Partitioning> {
        let row = self
            .client
            .query_one(
                "SELECT c.relkind = 'p', c.relispartition, rn.nspname::text, r.relname::text
                 FROM pg_class c
                 LEFT JOIN pg_class r ON c.relispartition AND r.oid = pg_partition_root(c.oid)
                 LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace
                 WHERE c.oid = $1",
                &[&oid],
            )
            .map_err(err)?;
        let (partitioned, partition): (bool, bool) = (row.get(0), row.get(1));
        if partition {
            return Ok(Partitioning::PartitionOf(TableName {
                schema: row.get(2),
                name: row.get::<_, Option<String>>(3).unwrap_or_default(),
            }));
        }
        if !partitioned {
            return Ok(Partitioning::None);
        }
        // A column number 0 is an expression.
        let row = self
            .client
            .query_one(
                "SELECT coalesce(bool_or(k.attnum = 0), false),
                        coalesce(array_agg(DISTINCT a.attname::text)
                                 FILTER (WHERE a.attname IS NOT NULL), '{}')
                 FROM pg_partition_tree($1::oid::regclass) t
                 JOIN pg_partitioned_table p ON p.partrelid = t.relid
                 CROSS JOIN LATERAL unnest(p.partattrs::int2[]) AS k(attnum)
                 LEFT JOIN pg_attribute a ON a.attrelid = t.relid AND a.attnum = k.attnum",
                &[&oid],
            )
            .map_err(err)?;
        let by_expression: bool = row.get(0);
        Ok(Partitioning::Partitioned {
            columns: (!by_expression).then(|| row.get(1)),
        })
    }

    fn fetch_one(
        &mut self,
        query: &str,
        values: &[Option<String>],
        table: &TableInfo,
    ) -> Result<Fetched> {
        let arrays: Vec<Vec<Option<String>>> = values.iter().map(|v| vec![v.clone()]).collect();
        let params: Vec<&(dyn ToSql + Sync)> =
            arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        match self.query_prepared(query, &params) {
            Ok(rows) => match rows.first().and_then(|r| r.get::<_, Option<&str>>(1)) {
                Some(image) => Ok(Fetched::Row(self.row_image(table, image)?)),
                None => Ok(Fetched::Missing),
            },
            Err(e) if is_data_exception(&e) => Ok(Fetched::Invalid(err(e).to_string())),
            Err(e) => Err(err(e)),
        }
    }
}

/// A captured row image as the payload's attributes.
pub(crate) fn row_image(table: &TableInfo, image: &str) -> Result<Box<RawValue>> {
    let as_rendered = table
        .columns
        .iter()
        .all(|c| matches!(c.kind, ColumnKind::Plain | ColumnKind::Integer));
    if as_rendered && image.starts_with('{') {
        // PostgreSQL's rendering is the payload's: checked, not parsed and written again.
        return RawValue::from_string(image.to_string())
            .map_err(|e| StoreError::Database(format!("row image is not JSON: {e}")));
    }
    Ok(super::attributes(&normalize(
        table,
        super::json_object(image)?,
    )))
}

/// Adjusts PostgreSQL's JSON rendering of a row to the payload's types (docs/payload.md).
pub(crate) fn normalize(
    table: &TableInfo,
    mut row: serde_json::Map<String, serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    use base64::Engine;
    for col in &table.columns {
        let Some(serde_json::Value::String(text)) = row.get_mut(&col.name) else {
            continue;
        };
        match col.kind {
            ColumnKind::Bytes => {
                if let Some(bytes) = text.strip_prefix("\\x").and_then(|h| hex::decode(h).ok()) {
                    *text = base64::engine::general_purpose::STANDARD.encode(bytes);
                }
            }
            ColumnKind::NaiveTimestamp => {
                if text.as_bytes().first().is_some_and(u8::is_ascii_digit) {
                    text.push('Z');
                }
            }
            ColumnKind::Plain | ColumnKind::Integer => {}
        }
    }
    row
}

impl EventStore for PgStore {
    fn backend(&self) -> &'static str {
        "postgresql"
    }

    /// The table's name comes back with its schema: capture routines run on a pinned search
    /// path, so every table they read is named in full.
    fn describe_table(&mut self, name: &TableName) -> Result<Option<TableInfo>> {
        let found = self
            .client
            .query_opt(
                "SELECT c.oid, n.nspname::text, c.relname::text FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)",
                &[&sql::table(name)],
            )
            .map_err(err)?;
        let Some(found) = found else { return Ok(None) };
        let oid: u32 = found.get(0);
        let resolved = TableName {
            schema: Some(found.get(1)),
            name: found.get(2),
        };
        let columns = self
            .client
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, NULL), NOT a.attnotnull,
                        t.typname::text
                 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
                 ORDER BY a.attnum",
                &[&oid],
            )
            .map_err(err)?
            .iter()
            .map(|r| {
                let typname: String = r.get(3);
                Column {
                    name: r.get(0),
                    sql_type: r.get(1),
                    nullable: r.get(2),
                    kind: match typname.as_str() {
                        "bytea" => ColumnKind::Bytes,
                        "timestamp" => ColumnKind::NaiveTimestamp,
                        "int2" | "int4" | "int8" => ColumnKind::Integer,
                        _ => ColumnKind::Plain,
                    },
                }
            })
            .collect();
        let primary_key = self
            .client
            .query(
                "SELECT a.attname::text
                 FROM pg_index i
                 CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                 WHERE i.indrelid = $1 AND i.indisprimary
                 ORDER BY k.ord",
                &[&oid],
            )
            .map_err(err)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let partitioning = self.partitioning(oid)?;
        Ok(Some(TableInfo {
            name: resolved,
            columns,
            primary_key,
            partitioning,
        }))
    }

    fn installed_triggers(&mut self) -> Result<Vec<InstalledTrigger>> {
        // One entry per table: its capture triggers share one routine, whose fingerprint counts
        // for the table only while every one of them is there and the routine still runs with
        // its owner's rights on the pinned search path.
        let rows = self
            .client
            .query(
                "SELECT n.nspname::text, c.relname::text, p.proname::text, p.prosrc, count(*),
                        p.prosecdef AND p.proconfig = ARRAY['search_path=' || $3]
                            AND pg_get_userbyid(p.proowner) = $6,
                        CASE
                            WHEN to_regclass($4) IS NULL THEN
                                'the event table ' || $4 || ' does not exist'
                            WHEN NOT has_schema_privilege(p.proowner, pn.oid, 'USAGE')
                                 OR NOT has_table_privilege(p.proowner, to_regclass($4), 'INSERT') THEN
                                'the trigger function''s owner ' || quote_ident(pg_get_userbyid(p.proowner))
                                || ' may not insert into ' || $4
                            WHEN NOT p.prosecdef THEN
                                'the trigger function runs with the writer''s rights: roles without '
                                || 'INSERT on ' || $4 || ' cannot write to this table'
                            WHEN p.prosrc LIKE '%' || $5 || '%' AND to_regprocedure($5 || '(anyelement)') IS NULL THEN
                                'the function ' || $5 || ' it calls does not exist'
                        END,
                        pg_get_userbyid(p.proowner)::text
                 FROM pg_trigger t
                 JOIN pg_class c ON c.oid = t.tgrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_proc p ON p.oid = t.tgfoid
                 JOIN pg_namespace pn ON pn.oid = p.pronamespace
                 WHERE NOT t.tgisinternal AND pn.nspname = $1 AND t.tgname = ANY($2)
                   -- a partition's clone of its partitioned table's trigger (PostgreSQL 13 and
                   -- later; 12 marks clones internal)
                   AND coalesce((to_jsonb(t) ->> 'tgparentid')::oid, 0) = 0
                 GROUP BY n.nspname, c.relname, p.oid, pn.oid
                 ORDER BY 1, 2, 3",
                &[
                    &self.names.schema_raw,
                    &&sql::TRIGGER_NAMES[..],
                    &sql::PINNED_SEARCH_PATH,
                    &self.names.event,
                    &format!("{}.{}", self.names.schema, sql::ident(sql::PINNED_TEXT)),
                    &self.names.capture_role,
                ],
            )
            .map_err(err)?;
        let mut installed: Vec<InstalledTrigger> = Vec::new();
        for r in &rows {
            let table = TableName {
                schema: Some(r.get(0)),
                name: r.get(1),
            };
            let routine: String = r.get(2);
            let found = r.get::<_, i64>(4) as usize;
            let hardened: bool = r.get(5);
            let trigger = InstalledTrigger {
                table,
                name: sql::TRIGGER_NAME.to_string(),
                columns: crate::dialect::parse_table_note(r.get(3)),
                fingerprint: parse_fingerprint(r.get(3))
                    .filter(|(_, expected)| *expected == found && hardened)
                    .map(|(fp, _)| fp),
                routine: Some(format!("{}.{}", self.names.schema, sql::ident(&routine))),
                failure: r.get(6),
                runs_as: Some(r.get(7)),
            };
            match installed.last_mut() {
                // Triggers of one table running different routines: not what install made.
                Some(last) if last.table == trigger.table => {
                    last.fingerprint = None;
                    last.failure = last.failure.take().or(trigger.failure);
                }
                _ => installed.push(trigger),
            }
        }
        Ok(installed)
    }

    fn table_upgrades(&mut self) -> Result<Vec<(String, Vec<String>)>> {
        let old = self
            .client
            .query_opt(
                "SELECT 1 FROM pg_indexes WHERE schemaname = $1 AND indexname = $2",
                &[
                    &self.names.schema_raw,
                    &format!("{}_{}", self.names.event_raw, sql::TEXT_KEY_INDEX),
                ],
            )
            .map_err(err)?;
        Ok(match old {
            None => Vec::new(),
            Some(_) => vec![(
                format!(
                    "index the keys of {} by their hash: an index of their text fails the writes of keys longer than about 2.7 kB",
                    self.names.event
                ),
                sql::upgrade_key_index(&self.names),
            )],
        })
    }

    fn leftover_routines(&mut self) -> Result<Vec<String>> {
        let rows = self
            .client
            .query(
                "SELECT p.proname::text FROM pg_proc p
                 JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE n.nspname = $1 AND p.proname LIKE $2
                   AND p.prorettype = 'trigger'::regtype
                   AND NOT EXISTS (SELECT FROM pg_trigger t WHERE t.tgfoid = p.oid)
                 ORDER BY 1",
                &[
                    &self.names.schema_raw,
                    &format!("{}%", sql::ROUTINE_PREFIX.replace('_', "\\_")),
                ],
            )
            .map_err(err)?;
        Ok(rows
            .iter()
            .map(|r| format!("{}.{}", self.names.schema, sql::ident(r.get(0))))
            .collect())
    }

    fn drop_own_schema(&mut self) -> Result<Vec<String>> {
        Ok(sql::drop_own_schema(&self.names))
    }

    /// Checked on the search path the capture routines run with: the condition is part of one.
    fn check_condition(
        &mut self,
        t: &TableInfo,
        verb: Verb,
        condition: &str,
    ) -> Result<Option<String>> {
        let qualified: Option<String> = self
            .client
            .query_one(
                "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)",
                &[&sql::table(&t.name)],
            )
            .map_err(err)?
            .get(0);
        let Some(qualified) = qualified else {
            return Ok(Some(format!("table {} does not exist", t.name)));
        };
        // As the capture routine runs it: with the capture role's rights (over an empty copy
        // of the table's columns, since the routine reads no table for NEW and OLD), on the
        // pinned search path. Everything is rolled back, the role too if it was made here.
        let role = sql::ident(&self.names.capture_role);
        let check = crate::dialect::condition_check(
            "pg_temp.trigpoll_check",
            verb,
            condition,
            crate::dialect::Quoting::Postgres,
        );
        let mut tx = self.client.transaction().map_err(err)?;
        let prepared = sql::capture_role(&self.names)[0].clone()
            + &format!(
                "; CREATE TEMP TABLE trigpoll_check (LIKE {qualified}) ON COMMIT DROP;
                 GRANT SELECT ON pg_temp.trigpoll_check TO {role};
                 SET LOCAL ROLE {role}; SET LOCAL search_path = {}",
                sql::PINNED_SEARCH_PATH
            );
        let checked = tx
            .batch_execute(&prepared)
            .map_err(|e| (e, "cannot take the capture role to check it: "))
            .and_then(|()| tx.batch_execute(&check).map_err(|e| (e, "")));
        tx.rollback().map_err(err)?;
        match checked {
            Ok(()) => Ok(None),
            Err((e, context)) => match e.as_db_error() {
                Some(db) if db.code() == &postgres::error::SqlState::INSUFFICIENT_PRIVILEGE => {
                    Ok(Some(format!(
                        "{context}{} (a condition runs with the rights of the capture role {}: \
                         grant it what the condition uses, see README, Backends and privileges)",
                        db.message(),
                        self.names.capture_role
                    )))
                }
                Some(db) => Ok(Some(format!("{context}{}", db.message()))),
                None => Err(err(e)),
            },
        }
    }

    /// Read from what the condition depends on, as a view over the table's columns would (in a
    /// transaction rolled back): functions and operators' functions outside `pg_catalog`, owned
    /// by a role that is neither the capture role nor a superuser.
    fn replaceable_functions(
        &mut self,
        t: &TableInfo,
        verb: Verb,
        condition: &str,
    ) -> Result<Vec<(String, String)>> {
        let view = crate::dialect::condition_check(
            &sql::table(&t.name),
            verb,
            condition,
            crate::dialect::Quoting::Postgres,
        );
        let mut tx = self.client.transaction().map_err(err)?;
        let made = tx.batch_execute(&format!(
            "SET LOCAL search_path = {}; CREATE TEMP VIEW trigpoll_condition AS {view}",
            sql::PINNED_SEARCH_PATH
        ));
        if made.is_err() {
            // A condition the database refuses: install-triggers says why.
            tx.rollback().map_err(err)?;
            return Ok(Vec::new());
        }
        let rows = tx
            .query(
                "SELECT DISTINCT p.oid::regprocedure::text, pg_get_userbyid(p.proowner)::text
                 FROM pg_depend d
                 JOIN pg_rewrite r ON r.oid = d.objid AND d.classid = 'pg_rewrite'::regclass
                 LEFT JOIN pg_operator o ON d.refclassid = 'pg_operator'::regclass
                     AND o.oid = d.refobjid
                 JOIN pg_proc p ON p.oid = CASE
                     WHEN d.refclassid = 'pg_proc'::regclass THEN d.refobjid
                     ELSE o.oprcode::oid END
                 JOIN pg_roles owner ON owner.oid = p.proowner
                 WHERE r.ev_class = 'pg_temp.trigpoll_condition'::regclass
                   AND p.pronamespace <> 'pg_catalog'::regnamespace
                   AND owner.rolname <> $1 AND NOT owner.rolsuper
                 ORDER BY 1",
                &[&self.names.capture_role],
            )
            .map_err(err);
        tx.rollback().map_err(err)?;
        Ok(rows?.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn execute_ddl(&mut self, statements: &[String]) -> Result<()> {
        let mut tx = self.client.transaction().map_err(err)?;
        for statement in statements {
            tx.batch_execute(statement).map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    fn claim_capped(&mut self, limit: usize, cap: usize) -> Result<Vec<Event>> {
        let mut deadlocks = 0;
        loop {
            let (events, held) = match self.claim_once(limit, cap)? {
                Ok(claimed) => claimed,
                Err(e) if deadlocks + 1 < DEADLOCK_RETRIES => {
                    deadlocks += 1;
                    after_deadlock(&e, deadlocks);
                    continue;
                }
                Err(e) => return Err(err(e)),
            };
            // A claim that only held events (behind a key's retry) has room for others now.
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
        let query = sql::fetch(table, key_columns, columns);
        let arrays = by_column(key_columns.len(), keys);
        let params: Vec<&(dyn ToSql + Sync)> =
            arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        match self.query_prepared(&query, &params) {
            Ok(rows) => {
                let mut out = vec![Fetched::Missing; keys.len()];
                for row in rows {
                    let i: i64 = row.get(0);
                    if let Some(image) = row.get::<_, Option<&str>>(1) {
                        out[i as usize - 1] = Fetched::Row(self.row_image(table, image)?);
                    }
                }
                Ok(out)
            }
            // One bad key value fails the whole statement: find it key by key.
            Err(e) if is_data_exception(&e) => keys
                .iter()
                .map(|k| self.fetch_one(&query, k, table))
                .collect(),
            Err(e) => Err(err(e)),
        }
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
        let query = sql::fetch_children(table, parent_keys, columns, order_by, carry);
        let arrays = by_column(parent_keys.len(), keys);
        let params: Vec<&(dyn ToSql + Sync)> =
            arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        let carried = 2 + parent_keys.len();
        for row in self.query_prepared(&query, &params).map_err(err)? {
            let i: i64 = row.get(0);
            let attributes = row_image(table, row.get::<_, &str>(1))?;
            let carry = (carried..carried + carry.len())
                .map(|c| row.get(c))
                .collect();
            out[i as usize - 1].push(ChildRow { attributes, carry });
        }
        Ok(out)
    }

    fn json_types(&self, table: &TableInfo, row: JsonObject) -> JsonObject {
        normalize(table, row)
    }

    fn row_image(&self, table: &TableInfo, image: &str) -> Result<Box<RawValue>> {
        row_image(table, image)
    }

    fn finish(&mut self, settlement: &Settlement) -> Result<()> {
        if settlement.is_empty() {
            return Ok(());
        }
        // By event id: jsonb objects, looked up by key in the statement (see `sql::finish`).
        let mut outcomes: BTreeMap<i64, Vec<Outcome>> = BTreeMap::new();
        for a in &settlement.archive {
            outcomes.entry(a.event_id).or_default().push(Outcome {
                connector_id: a.connector_id.as_deref(),
                status: a.status.code(),
                description: a.description.as_deref(),
                attempts: a.attempts,
            });
        }
        let retried: Vec<i64> = settlement.retry.iter().map(|r| r.event_id).collect();
        let retry_state: BTreeMap<i64, RetryState> = settlement
            .retry
            .iter()
            .map(|r| {
                let state = RetryState {
                    attempts: r.attempts,
                    delay_ms: r.delay.as_millis() as i64,
                    description: &r.description,
                    done: joined(&r.done_connectors),
                };
                (r.event_id, state)
            })
            .collect();
        let held: Vec<i64> = settlement.hold.iter().map(|h| h.event_id).collect();
        let behind: Vec<Option<i64>> = settlement.hold.iter().map(|h| h.behind).collect();
        let held_done: Vec<Option<String>> = settlement
            .hold
            .iter()
            .map(|h| joined(&h.done_connectors))
            .collect();
        let query = sql::finish(&self.names);
        let token = self.token.clone();
        let blockers = settlement.outside_blockers();
        let params: [&(dyn ToSql + Sync); 9] = [
            &settlement.complete,
            &Json(&outcomes),
            &token,
            &retried,
            &Json(&retry_state),
            &held,
            &behind,
            &held_done,
            &blockers,
        ];
        let mut deadlocks = 0;
        loop {
            match self.query_prepared(&query, &params) {
                Err(e) if is_deadlock(&e) && deadlocks + 1 < DEADLOCK_RETRIES => {
                    deadlocks += 1;
                    after_deadlock(&e, deadlocks);
                }
                done => {
                    done.map_err(err)?;
                    break;
                }
            }
        }
        let events = settlement.complete.len() + settlement.retry.len() + settlement.hold.len();
        self.vacuum.finished(events, settlement.complete.len());
        self.vacuum_if_due();
        Ok(())
    }

    fn release_orphans(&mut self) -> Result<u64> {
        self.client
            .execute(&sql::release_orphans(&self.names), &[])
            .map_err(err)
    }

    fn release_claims(&mut self) -> Result<()> {
        self.client
            .execute(
                &format!(
                    "UPDATE {} SET event_status = 0, claimed_by = NULL, claimed_at = NULL
                     WHERE claimed_by = $1 AND event_status = 3",
                    self.names.event
                ),
                &[&self.token],
            )
            .map_err(err)?;
        Ok(())
    }

    fn renew_claims(&mut self, ids: &[i64]) -> Result<u64> {
        let query = format!(
            "UPDATE {} SET claimed_at = now()
             WHERE event_id = ANY($1::bigint[]) AND claimed_by = $2 AND event_status = 3",
            self.names.event
        );
        let token = self.token.clone();
        let statement = self.statement(&query).map_err(err)?;
        self.client
            .execute(&statement, &[&ids, &token])
            .map_err(err)
    }

    fn another_connection(&self) -> Result<Box<dyn EventStore>> {
        let store = PgStore::open(
            self.url.clone(),
            self.names.clone(),
            self.token.clone(),
            self.claim_timeout_secs,
            self.vacuum.batch_size,
            false,
        )?;
        Ok(Box::new(store))
    }

    fn retry_backlog(&mut self) -> Result<RetryBacklog> {
        let row = self
            .client
            .query_one(
                &format!(
                    "SELECT count(*),
                        extract(epoch FROM min(next_attempt_at) FILTER (WHERE next_attempt_at > now())
                            - now())::float8
                     FROM {} WHERE event_status = 0
                       AND (next_attempt_at > now() OR waiting_for IS NOT NULL)",
                    self.names.event
                ),
                &[],
            )
            .map_err(err)?;
        let events: i64 = row.get(0);
        let due: Option<f64> = row.get(1);
        Ok(RetryBacklog {
            events: events as u64,
            next_due: due.map(|s| Duration::from_secs_f64(s.max(0.0))),
        })
    }

    fn replay(&mut self, filter: &ReplayFilter, dry_run: bool) -> Result<Vec<Replayed>> {
        let mut conditions = Vec::new();
        let mut params: Vec<Box<dyn ToSql + Sync>> = Vec::new();
        let bind = |value: Box<dyn ToSql + Sync>, params: &mut Vec<Box<dyn ToSql + Sync>>| {
            params.push(value);
            format!("${}", params.len())
        };
        if let Some((from, to)) = filter.event_ids {
            let (a, b) = (
                bind(Box::new(from), &mut params),
                bind(Box::new(to), &mut params),
            );
            conditions.push(format!("a.event_id BETWEEN {a} AND {b}"));
        }
        if !filter.objects.is_empty() {
            let p = bind(Box::new(filter.objects.clone()), &mut params);
            conditions.push(format!("a.object_name = ANY({p})"));
        }
        if !filter.verbs.is_empty() {
            let p = bind(Box::new(filter.verbs.clone()), &mut params);
            conditions.push(format!("a.object_verb = ANY({p})"));
        }
        if !filter.statuses.is_empty() {
            let codes: Vec<i16> = filter.statuses.iter().map(|s| s.code()).collect();
            let p = bind(Box::new(codes), &mut params);
            conditions.push(format!("a.event_status = ANY({p})"));
        }
        if let Some(connector) = &filter.connector {
            let p = bind(Box::new(connector.clone()), &mut params);
            conditions.push(format!("(a.connector_id = {p} OR a.connector_id IS NULL)"));
        }
        if let Some(since) = &filter.since {
            let p = bind(Box::new(since.clone()), &mut params);
            conditions.push(format!("a.event_processed >= {p}::text::timestamptz"));
        }
        if let Some(until) = &filter.until {
            let p = bind(Box::new(until.clone()), &mut params);
            conditions.push(format!("a.event_processed < {p}::text::timestamptz"));
        }
        let target_param = bind(Box::new(filter.connector.clone()), &mut params);
        let limit = filter
            .limit
            .map(|l| format!("LIMIT {}", bind(Box::new(l as i64), &mut params)))
            .unwrap_or_default();
        let chosen = format!(
            "SELECT a.object_name, a.object_verb, a.object_key, a.event_priority,
                a.event_time, COALESCE({target_param}::text, a.connector_id) AS connector_id,
                a.payload, a.event_id, a.event_action, a.event_comment
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
                "SELECT event_id, object_name, object_verb, object_key, connector_id, NULL::bigint
                 FROM ({chosen}) c"
            )
        } else {
            format!(
                "INSERT INTO {} (object_name, object_verb, object_key, event_priority, event_time,
                    connector_id, payload, replay_of, event_action, event_comment)
                 SELECT * FROM ({chosen}) c
                 RETURNING replay_of, object_name, object_verb, object_key, connector_id, event_id",
                self.names.event
            )
        };
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
        let rows = self.client.query(&query, &refs).map_err(err)?;
        if !dry_run && !rows.is_empty() {
            // Wake a waiting poller, as a capture trigger does.
            self.client
                .execute("SELECT pg_notify($1, '')", &[&sql::channel(&self.names)])
                .map_err(err)?;
        }
        let mut replayed: Vec<Replayed> = rows
            .iter()
            .map(|r| Replayed {
                replay_of: r.get(0),
                object: r.get(1),
                verb: r.get(2),
                key: r.get(3),
                connector: r.get(4),
                new_event_id: r.get(5),
            })
            .collect();
        replayed.sort_by_key(|r| (r.replay_of, r.new_event_id));
        Ok(replayed)
    }

    fn status(&mut self) -> Result<StoreStatus> {
        let n = &self.names;
        let ready = "event_status = 0 AND (next_attempt_at IS NULL OR next_attempt_at <= now())
            AND waiting_for IS NULL";
        let backlog = self
            .client
            .query(
                &format!(
                    "SELECT object_name, object_verb, event_priority, count(*) FROM {} WHERE {ready}
                     GROUP BY 1, 2, 3 ORDER BY 3, 1, 2",
                    n.event
                ),
                &[],
            )
            .map_err(err)?
            .iter()
            .map(|r| BacklogRow {
                object: r.get(0),
                verb: r.get(1),
                priority: r.get(2),
                ready: r.get::<_, i64>(3) as u64,
            })
            .collect();
        let counts = self
            .client
            .query_one(
                &format!(
                    "SELECT extract(epoch FROM now() - min(event_time) FILTER (WHERE {ready}))::float8,
                        count(*) FILTER (WHERE event_status = 3),
                        count(*) FILTER (WHERE event_status = 0 AND next_attempt_at > now()),
                        count(*) FILTER (WHERE waiting_for IS NOT NULL)
                     FROM {}",
                    n.event
                ),
                &[],
            )
            .map_err(err)?;
        let archived = self
            .client
            .query(
                &format!(
                    "SELECT event_status, count(*) FROM {} WHERE event_status < 0 GROUP BY 1",
                    n.archive
                ),
                &[],
            )
            .map_err(err)?;
        let archived_count = |status: Status| {
            archived
                .iter()
                .find(|r| r.get::<_, i16>(0) == status.code())
                .map_or(0, |r| r.get::<_, i64>(1) as u64)
        };
        Ok(StoreStatus {
            backlog,
            oldest_ready_age_seconds: counts.get(0),
            in_progress: counts.get::<_, i64>(1) as u64,
            retrying: counts.get::<_, i64>(2) as u64,
            held: counts.get::<_, i64>(3) as u64,
            archived_failed: archived_count(Status::Failed),
            archived_error: archived_count(Status::Error),
            archived_not_found: archived_count(Status::NotFound),
        })
    }

    fn wait_for_events(&mut self, timeout: Duration) -> Result<bool> {
        if !self.listening {
            self.client
                .batch_execute(&format!(
                    "LISTEN {}",
                    sql::ident(&sql::channel(&self.names))
                ))
                .map_err(err)?;
            self.listening = true;
        }
        if !self.gate_held {
            if !self.hold_wake_gate()? {
                // Another poller holds the gate and the notifications reach this one too, or a
                // writer is still inside: look again shortly.
                return self.notified(timeout.min(GATE_WAIT));
            }
            self.gate_held = true;
            // Whatever was written before the gate was taken is committed now; what is
            // written after it notifies.
            if self.claim_would_find()? {
                self.release_wake_gate()?;
                return Ok(true);
            }
        }
        if self.notified(timeout)? {
            self.release_wake_gate()?;
            return Ok(true);
        }
        Ok(false)
    }

    fn reconnect(&mut self) -> Result<()> {
        self.client = open_client(self.url.expose(), &self.tls, self.async_commit)?;
        *self.cancel.lock().unwrap_or_else(|e| e.into_inner()) = self.client.cancel_token();
        self.listening = false;
        self.gate_held = false;
        self.prepared.clear();
        Ok(())
    }

    fn interrupter(&self) -> Box<dyn Interrupt> {
        Box::new(PgInterrupt(Arc::clone(&self.cancel), self.tls.clone()))
    }

    fn sibling(&self) -> Option<Result<Box<dyn EventStore>>> {
        // The sibling claims. A claim is soft state: one that a server crash loses leaves its
        // events ready, to be claimed and delivered again, so its commits need not wait for the
        // WAL flush.
        let sibling = PgStore::open(
            self.url.clone(),
            self.names.clone(),
            self.token.clone(),
            self.claim_timeout_secs,
            self.vacuum.batch_size,
            true,
        );
        Some(sibling.map(|s| Box::new(s) as Box<dyn EventStore>))
    }

    fn prune(&mut self, older_than: Duration, statuses: &[Status], limit: usize) -> Result<u64> {
        // By ctid: a batch locks only the rows it deletes, for one short statement.
        let codes: Vec<i16> = statuses.iter().map(|s| s.code()).collect();
        self.client
            .execute(
                &format!(
                    "DELETE FROM {archive} WHERE ctid = ANY(ARRAY(
                        SELECT ctid FROM {archive}
                        WHERE event_processed < now() - make_interval(secs => $1)
                          AND event_status = ANY($2)
                        LIMIT $3))",
                    archive = self.names.archive
                ),
                &[&older_than.as_secs_f64(), &codes, &(limit as i64)],
            )
            .map_err(err)
    }

    fn count_prunable(&mut self, older_than: Duration, statuses: &[Status]) -> Result<u64> {
        let codes: Vec<i16> = statuses.iter().map(|s| s.code()).collect();
        let count: i64 = self
            .client
            .query_one(
                &format!(
                    "SELECT count(*) FROM {} WHERE event_processed < now() - make_interval(secs => $1)
                       AND event_status = ANY($2)",
                    self.names.archive
                ),
                &[&older_than.as_secs_f64(), &codes],
            )
            .map_err(err)?
            .get(0);
        Ok(count as u64)
    }

    fn ready_backlog(&mut self) -> Result<ReadyBacklog> {
        let row = self
            .client
            .query_one(
                &format!(
                    "SELECT count(*), extract(epoch FROM now() - min(event_time))::float8 FROM {}
                     WHERE event_status = 0 AND (next_attempt_at IS NULL OR next_attempt_at <= now())
                       AND waiting_for IS NULL",
                    self.names.event
                ),
                &[],
            )
            .map_err(err)?;
        Ok(ReadyBacklog {
            events: row.get::<_, i64>(0) as u64,
            oldest_age_seconds: row.get(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A poller working off a backlog in full batches does not vacuum; one that keeps up does,
    /// once it deleted enough events, and not more than once a second.
    #[test]
    fn vacuums_come_while_a_poller_keeps_up() {
        let mut v = Vacuum::new(500);
        v.last -= VACUUM_EVERY;
        for _ in 0..10 {
            v.finished(500, 500);
        }
        assert!(!v.due(), "a backlog drained in full batches");
        v.finished(120, 120);
        assert!(!v.due(), "the last batch of a drain");
        v.finished(300, 300);
        assert!(
            v.due(),
            "two smaller batches in a row after 5,420 deletions"
        );
        v.allowed = Some(true);
        v.done();
        for _ in 0..20 {
            v.finished(100, 100);
        }
        assert!(!v.due(), "within a second of the last vacuum");
        v.last -= VACUUM_EVERY;
        assert!(v.due());
        v.allowed = Some(false);
        assert!(!v.due(), "a role that may not vacuum");
    }
}

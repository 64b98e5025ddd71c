//! SQLite (the bundled library, ≥ 3.38 for the poller; the triggers need only JSON1, ≥ 3.9, so
//! applications on older libraries can write through them) SQL: event and archive tables,
//! capture triggers, claim and fetch queries.
//!
//! SQLite has no schemas: the event and archive tables live in the main database of the file,
//! under the configured `event_table` and `archive_table` names, and `database.schema` is
//! ignored. They must live there, since a trigger may only write to tables of its own database.
//!
//! Timestamps are TEXT in one fixed-width form, `2026-11-22T10:00:00.123000Z` (SQLite's clock
//! has milliseconds; the microseconds are padded so every backend sends the same shape), so that
//! comparing them as text compares them as times.
//!
//! A row image is the JSON object of every column of the table, listed by name (SQLite has no
//! `to_json(row)`). Values keep SQLite's types: integers and reals are numbers, text is a string,
//! and a BLOB becomes a one-element array holding its hex digits (`["0102FF"]`), since JSON
//! cannot hold bytes and SQL has no base64; a stored value never is a JSON array, so the store
//! can tell bytes from text and turn them into base64. Because the triggers name every column,
//! a column added later makes them stale (`status` says so; `install-triggers` updates them),
//! and SQLite refuses `ALTER TABLE … DROP COLUMN` on a captured column until they are replaced.

use crate::config::Verb;
use crate::dialect::{
    by_rules, concat_pipes, fingerprint, root_key, Capture, ChildCapture, KeySyntax, ParentEvent,
    TriggerDdl, FINGERPRINT_MARKER, RULE_COLUMNS,
};
use crate::table::{Column, TableInfo};

/// The prefix of every capture trigger's name. Trigger names are global to an SQLite database,
/// so each is `trigpoll_capture_<table>_<insert|update|delete>`.
pub const TRIGGER_PREFIX: &str = "trigpoll_capture_";

/// The current time in the form of every trigpoll timestamp.
pub const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')";

/// At most this many name/value pairs go into one `json_object` call: SQLite functions take at
/// most 127 arguments unless the application's library was built with a higher limit.
const PAIRS_PER_OBJECT: usize = 63;

pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A time `modifier` away from now (`'-300 seconds'`), in the form of every trigpoll timestamp.
pub fn now_plus(modifier: &str) -> String {
    format!("strftime('%Y-%m-%dT%H:%M:%f000Z', 'now', {modifier})")
}

/// trigpoll's own tables, quoted.
#[derive(Debug, Clone)]
pub struct Names {
    pub event: String,
    pub archive: String,
    /// Unquoted, for catalog lookups.
    pub event_raw: String,
    pub archive_raw: String,
}

impl Names {
    pub fn new(event: &str, archive: &str) -> Self {
        Names {
            event: ident(event),
            archive: ident(archive),
            event_raw: event.to_string(),
            archive_raw: archive.to_string(),
        }
    }
}

/// Creates the event and archive tables and their indexes.
pub fn create_tables(n: &Names) -> Vec<String> {
    let aidx = |suffix: &str| ident(&format!("{}_{suffix}", n.archive_raw));
    let mut statements = vec![
        // AUTOINCREMENT: an event id is never used twice, even after the newest event left.
        // Other applications write to this table: the checks refuse what PostgreSQL's types
        // would, so that no row can stop the poller.
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
    event_id          INTEGER PRIMARY KEY AUTOINCREMENT,
    object_name       TEXT NOT NULL,
    object_verb       TEXT NOT NULL,
    object_key        TEXT NOT NULL,
    event_priority    INTEGER NOT NULL DEFAULT 0 CHECK (typeof(event_priority) = 'integer'),
    event_time        TEXT NOT NULL DEFAULT ({NOW}),
    event_status      INTEGER NOT NULL DEFAULT 0 CHECK (typeof(event_status) = 'integer'),
    event_description TEXT,
    connector_id      TEXT,
    attempts          INTEGER NOT NULL DEFAULT 0 CHECK (typeof(attempts) = 'integer'),
    next_attempt_at   TEXT,
    payload           TEXT CHECK (payload IS NULL OR json_valid(payload)),
    replay_of         INTEGER CHECK (replay_of IS NULL OR typeof(replay_of) = 'integer'),
    claimed_by        TEXT,
    claimed_at        TEXT,
    done_connectors   TEXT,
    waiting_for       INTEGER,
    event_action      TEXT,
    event_comment     TEXT
)",
            n.event
        ),
    ];
    statements.extend(event_indexes(n));
    statements.extend([
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
    event_id          INTEGER NOT NULL,
    object_name       TEXT NOT NULL,
    object_verb       TEXT NOT NULL,
    object_key        TEXT NOT NULL,
    event_priority    INTEGER NOT NULL,
    event_time        TEXT NOT NULL,
    event_status      INTEGER NOT NULL,
    event_description TEXT,
    connector_id      TEXT,
    attempts          INTEGER NOT NULL,
    payload           TEXT,
    replay_of         INTEGER,
    event_processed   TEXT NOT NULL DEFAULT ({NOW}),
    event_action      TEXT,
    event_comment     TEXT
)",
            n.archive
        ),
        format!(
            "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} (event_id, connector_id)",
            aidx("event"),
            n.archive
        ),
    ]);
    statements
}

/// The event table's indexes. Every index ends with the rowid, which is event_id: these are the
/// (priority, id) claim order and the (object, key, id) order of each key, both without the
/// events held behind a retry, which claims never read; and the events held behind each event.
fn event_indexes(n: &Names) -> Vec<String> {
    let idx = |suffix: &str| ident(&format!("{}_{suffix}", n.event_raw));
    vec![
        format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} (event_priority) WHERE waiting_for IS NULL",
            idx("ready"),
            n.event
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} (object_name, object_key) WHERE waiting_for IS NULL",
            key_run_index(n),
            n.event
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} (waiting_for) WHERE waiting_for IS NOT NULL",
            idx("waiting"),
            n.event
        ),
    ]
}

/// The index of each key's events in event-id order, without the held ones.
fn key_run_index(n: &Names) -> String {
    ident(&format!("{}_key_run", n.event_raw))
}

/// Brings an event table made by trigpoll 0.1 (no `waiting_for`) to the current layout, in
/// place: its events stay.
pub fn upgrade_tables(n: &Names) -> Vec<String> {
    let old = |suffix: &str| ident(&format!("{}_{suffix}", n.event_raw));
    let mut statements = vec![
        format!("ALTER TABLE {} ADD COLUMN waiting_for INTEGER", n.event),
        format!("DROP INDEX IF EXISTS {}", old("claim")),
        format!("DROP INDEX IF EXISTS {}", old("key_order")),
    ];
    statements.extend(event_indexes(n));
    statements
}

/// Adds [`super::ADDED_COLUMNS`] that the event table (or, with `archive`, the archive table)
/// lacks, in place: its rows stay, with the columns `NULL`.
pub fn add_columns(n: &Names, archive: bool, columns: &[&str]) -> Vec<String> {
    let table = if archive { &n.archive } else { &n.event };
    columns
        .iter()
        .map(|c| format!("ALTER TABLE {table} ADD COLUMN {c} TEXT"))
        .collect()
}

pub fn drop_tables(n: &Names) -> Vec<String> {
    vec![
        format!("DROP TABLE IF EXISTS {}", n.event),
        format!("DROP TABLE IF EXISTS {}", n.archive),
    ]
}

/// The row events a trigger fires on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Insert,
    Update,
    Delete,
}

impl Op {
    pub const ALL: [Op; 3] = [Op::Insert, Op::Update, Op::Delete];

    fn sql(self) -> &'static str {
        match self {
            Op::Insert => "INSERT",
            Op::Update => "UPDATE",
            Op::Delete => "DELETE",
        }
    }
}

/// The name of the capture trigger of `table` for `op`. Unique per database: the operation is
/// the last word and has no `_`, so two tables never share a name.
pub fn trigger_name(table: &str, op: Op) -> String {
    format!("{TRIGGER_PREFIX}{table}_{}", op.sql().to_ascii_lowercase())
}

/// How SQLite spells an object key's parts.
const KEY_SYNTAX: KeySyntax<'static> = KeySyntax {
    ident,
    literal,
    concat: concat_pipes,
    text: &key_text,
    replace: "replace",
    long_values: None,
};

/// A key column's value as text. SQLite writes a real with 15 digits, which may not read back
/// as the same number: such a key would find no row, so those get 17.
fn key_text(col: &Column, row: &str) -> String {
    let v = format!("{row}.{}", ident(&col.name));
    match Affinity::of(&col.sql_type) {
        Affinity::Real | Affinity::Numeric => format!(
            "CASE WHEN typeof({v}) = 'real' AND CAST(CAST({v} AS TEXT) AS REAL) <> {v} \
             THEN printf('%!.17g', {v}) ELSE CAST({v} AS TEXT) END"
        ),
        _ => format!("CAST({v} AS TEXT)"),
    }
}

/// The JSON text of a row (`NEW`, `OLD` or a table alias): every column by name (see the module
/// documentation for BLOBs). Wide tables are built from several objects spliced together.
pub fn row_image(columns: &[Column], row: &str) -> String {
    let pairs: Vec<String> = columns
        .iter()
        .map(|c| {
            let v = format!("{row}.{}", ident(&c.name));
            format!(
                "{}, CASE typeof({v}) WHEN 'blob' THEN json_array(hex({v})) ELSE {v} END",
                literal(&c.name)
            )
        })
        .collect();
    let objects: Vec<String> = pairs
        .chunks(PAIRS_PER_OBJECT)
        .map(|chunk| format!("json_object({})", chunk.join(", ")))
        .collect();
    let last = objects.len() - 1;
    if last == 0 {
        return objects[0].clone();
    }
    // `{"a":1}` and `{"b":2}` make `{"a":1` || ',' || `"b":2}`. Exactly one brace goes: an
    // object starts with `{"` and ends with a value (`"`, a digit, `l` or `]`) and `}`.
    objects
        .iter()
        .enumerate()
        .map(|(i, o)| match i {
            0 => format!("rtrim({o}, '}}')"),
            i if i == last => format!("ltrim({o}, '{{')"),
            _ => format!("ltrim(rtrim({o}, '}}'), '{{')"),
        })
        .collect::<Vec<_>>()
        .join(" || ',' || ")
}

/// True when the given columns are the same in `NEW` and `OLD` (`IS`: NULL-safe; text in the
/// column's collation, BINARY unless declared otherwise).
fn same(columns: &[Column]) -> String {
    columns
        .iter()
        .map(|c| format!("NEW.{0} IS OLD.{0}", ident(&c.name)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// One table's triggers: (operation, condition for the trigger's WHEN clause, body), all
/// carrying the same fingerprint and how many there are, so that a missing one shows as drift.
fn table_ddl(table: &str, about: &str, triggers: Vec<(Op, Option<String>, String)>) -> TriggerDdl {
    let heads: Vec<String> = triggers
        .iter()
        .map(|(op, when, _)| {
            format!(
                "CREATE TRIGGER {} AFTER {} ON {} FOR EACH ROW{}",
                ident(&trigger_name(table, *op)),
                op.sql(),
                ident(table),
                when.as_ref()
                    .map(|w| format!("\nWHEN {w}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    let fp = fingerprint(
        &heads
            .iter()
            .zip(&triggers)
            .map(|(head, (_, _, body))| format!("{head}\n{body}\n"))
            .collect::<String>(),
    );
    // Comments between the head and BEGIN stay in sqlite_master.sql, where drift checks read them.
    let mut statements: Vec<String> = Op::ALL
        .iter()
        .map(|op| {
            format!(
                "DROP TRIGGER IF EXISTS {}",
                ident(&trigger_name(table, *op))
            )
        })
        .collect();
    statements.extend(heads.iter().zip(&triggers).map(|(head, (_, _, body))| {
        format!(
            "{head}
-- {FINGERPRINT_MARKER}{fp} ({} triggers on this table)
-- captures {} for trigpoll; generated by `trigpoll install-triggers`, do not edit
BEGIN
{body}
END",
            triggers.len(),
            about.replace('\n', " ")
        )
    }));
    TriggerDdl {
        table: crate::config::TableName {
            schema: None,
            name: table.to_string(),
        },
        fingerprint: fp,
        statements,
    }
}

/// The capture of an object's table and of each of its child tables.
pub fn capture_trigger(n: &Names, c: &Capture) -> Vec<TriggerDdl> {
    let mut ddl = vec![object_trigger(n, c)];
    ddl.extend(
        c.descendants()
            .iter()
            .map(|chain| child_trigger(n, c, chain)),
    );
    ddl
}

fn object_trigger(n: &Names, c: &Capture) -> TriggerDdl {
    let columns = "(object_name, object_verb, object_key, event_priority, payload)";
    let insert = format!("INSERT INTO {} {columns}", n.event);
    let object = literal(&c.object.name);
    let priority = c.object.priority;
    let image = |row: &str| row_image(&c.attributes, row);
    let key = |row: &str| c.key_sql(&KEY_SYNTAX, row);
    let when = |verb: Verb| c.object.when.get(verb).map(|w| format!("({w})"));
    // One event of `action` for `row` and its payload where `condition` holds: as it is, or
    // as the action's rules choose it (they may make none). Conditions are over the trigger's
    // own NEW and OLD.
    let select = |action: Verb, row: &str, payload: &str, condition: Option<String>| {
        match by_rules(&c.object.rules, action, priority, literal, &str::to_string) {
            None => match condition {
                None => format!(
                    "    {insert}\n    VALUES ({object}, {}, {}, {priority}, {payload});",
                    literal(action.as_str()),
                    key(row)
                ),
                Some(condition) => format!(
                    "    {insert}\n    SELECT {object}, {}, {}, {priority}, {payload} WHERE {condition};",
                    literal(action.as_str()),
                    key(row)
                ),
            },
            Some(r) => {
                let filter: Vec<String> = condition.into_iter().chain(r.filter).collect();
                format!(
                    "    INSERT INTO {} {RULE_COLUMNS}
    SELECT {object}, {}, {}, {}, {payload}, {}, {}
    FROM {}{};",
                    n.event,
                    r.verb,
                    key(row),
                    r.priority,
                    literal(action.action()),
                    r.comment,
                    r.from,
                    match filter.is_empty() {
                        true => String::new(),
                        false => format!(" WHERE {}", filter.join(" AND ")),
                    }
                )
            }
        }
    };
    let mut triggers: Vec<(Op, Option<String>, String)> = Vec::new();
    if c.captures(Verb::Create) {
        triggers.push((
            Op::Insert,
            when(Verb::Create),
            select(Verb::Create, "NEW", "NULL", None),
        ));
    }
    if c.captures(Verb::Update) {
        let same_key = same(&c.keys);
        let detect = c.detect.as_deref().unwrap_or(&c.table.columns);
        let changes = match c.changes.is_empty() {
            true => "NULL".to_string(),
            false => {
                let value = |col: &Column, row: &str| {
                    let v = format!("{row}.{}", ident(&col.name));
                    format!("CASE typeof({v}) WHEN 'blob' THEN json_array(hex({v})) ELSE {v} END")
                };
                let members: Vec<String> = c
                    .changes
                    .iter()
                    .map(|col| {
                        format!(
                            "SELECT {} AS k, json_object('old', {}, 'new', {}) AS v WHERE NOT ({})",
                            literal(&col.name),
                            value(col, "OLD"),
                            value(col, "NEW"),
                            same(std::slice::from_ref(col))
                        )
                    })
                    .collect();
                format!(
                    "(SELECT json_group_object(k, json(v)) FROM ({}))",
                    members.join(" UNION ALL ")
                )
            }
        };
        triggers.push((
            Op::Update,
            when(Verb::Update),
            [
                select(
                    Verb::Update,
                    "NEW",
                    &changes,
                    Some(format!("{same_key} AND NOT ({})", same(detect))),
                ),
                "    -- the key changed: the old object is gone and a new one exists".into(),
                select(
                    Verb::Delete,
                    "OLD",
                    &image("OLD"),
                    Some(format!("NOT ({same_key})")),
                ),
                select(
                    Verb::Create,
                    "NEW",
                    "NULL",
                    Some(format!("NOT ({same_key})")),
                ),
            ]
            .join("\n"),
        ));
    }
    if c.captures(Verb::Delete) {
        triggers.push((
            Op::Delete,
            when(Verb::Delete),
            select(Verb::Delete, "OLD", &image("OLD"), None),
        ));
    }
    table_ddl(&c.table.name.name, &c.object.name, triggers)
}

/// A child table's capture: each inserted, updated or deleted child row makes an `Update` of
/// its parent object (of both when its parent changes).
fn child_trigger(n: &Names, c: &Capture, chain: &[&ChildCapture]) -> TriggerDdl {
    let child = chain.last().expect("a child has a chain");
    let object = literal(&c.object.name);
    let priority = c.object.priority;
    // The parents of the rows whose keys are given, each once.
    let insert = |action: Verb, keys: &[String]| {
        ParentEvent::new(
            &child.config.rules,
            action,
            priority,
            literal,
            &str::to_string,
        )
        .insert_distinct(&n.event, &object, keys, ("    ", "    "))
    };
    let triggers = vec![
        (
            Op::Insert,
            None,
            insert(
                Verb::Create,
                &[root_key(c, chain, "NEW", &KEY_SYNTAX, sqlite_table)],
            ),
        ),
        (
            Op::Update,
            Some(format!("NOT ({})", same(&child.attributes))),
            insert(
                Verb::Update,
                &[
                    root_key(c, chain, "OLD", &KEY_SYNTAX, sqlite_table),
                    root_key(c, chain, "NEW", &KEY_SYNTAX, sqlite_table),
                ],
            ),
        ),
        (
            Op::Delete,
            None,
            insert(
                Verb::Delete,
                &[root_key(c, chain, "OLD", &KEY_SYNTAX, sqlite_table)],
            ),
        ),
    ];
    let about = format!("{} (its child {})", c.object.name, child.path);
    table_ddl(&child.table.name.name, &about, triggers)
}

/// A table of the main database, as SQLite names it (it has no schemas).
fn sqlite_table(name: &crate::config::TableName) -> String {
    ident(&name.name)
}

/// The capture triggers of one table as one name for `InstalledTrigger::name`: each quoted,
/// joined by `, `, so that [`trigger_names`] gets them back exactly.
pub fn join_trigger_names(names: &[String]) -> String {
    names
        .iter()
        .map(|n| ident(n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The names [`join_trigger_names`] joined.
pub fn trigger_names(joined: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = joined.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut name = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    name.push('"');
                }
                '"' => break,
                c => name.push(c),
            }
        }
        names.push(name);
    }
    names
}

/// Drops the named triggers.
pub fn drop_triggers(names: &[String]) -> Vec<String> {
    names
        .iter()
        .map(|name| format!("DROP TRIGGER IF EXISTS {}", ident(name)))
        .collect()
}

/// The event columns a claim reads, in the order `event_from_row` takes them: `event_time` raw
/// and as UTC seconds.
const EVENT_COLUMNS: &str = "e.event_id, e.object_name, e.object_verb, e.object_key, \
e.event_priority, e.event_time, strftime('%Y-%m-%dT%H:%M:%S', e.event_time), e.connector_id, \
e.attempts, e.payload, e.replay_of, e.done_connectors, e.event_action, e.event_comment";

/// A claim's first step (see the store's `claim` module): `?1` limit, `?2` the time modifier of
/// the claim timeout (`'-300 seconds'`). SQLite lets one writer in at a time, so the claim's
/// transaction (`BEGIN IMMEDIATE`) is all the locking it needs.
pub fn claim_candidates(n: &Names) -> String {
    format!(
        "SELECT {EVENT_COLUMNS} FROM {ev} e
WHERE e.waiting_for IS NULL
  AND ((e.event_status <> 3 AND (e.next_attempt_at IS NULL OR e.next_attempt_at <= {NOW}))
       OR (e.event_status = 3 AND (e.claimed_at IS NULL OR e.claimed_at < {timeout})))
ORDER BY e.event_priority, e.event_id
LIMIT ?1",
        ev = n.event,
        timeout = now_plus("?2"),
    )
}

/// A claim's second step: `?1` a JSON array of `[object name, key, last candidate's id]` per
/// candidate key, `?2` the claim token, `?3` the claim timeout's time modifier, `?4` a JSON array
/// of the candidates' ids. Returns (0, key position from 0, event id, waiting for a retry) for
/// each event of those keys up to that id that is not held and not in progress under the
/// token (one in progress under it that events are held behind counts: they are the key's next,
/// and the claim must not pass them), and (1, candidate, first event held behind it, 0) for
/// candidates with held events.
///
/// `CROSS JOIN` keeps the keys as the outer loop and `INDEXED BY` the per-key index: with the
/// statistics of a backlog on one key, SQLite would otherwise scan the whole key index, or every
/// event up to the last candidate, once per claim.
pub fn claim_neighbours(n: &Names) -> String {
    format!(
        "SELECT 0, k.key, p.event_id, p.event_status = 0 AND p.next_attempt_at > {NOW}, p.event_priority
FROM json_each(?1) AS k
CROSS JOIN {ev} AS p INDEXED BY {key_run} ON p.object_name = k.value ->> 0 AND p.object_key = k.value ->> 1
    AND p.event_id <= k.value ->> 2 AND p.waiting_for IS NULL
WHERE NOT (p.event_status = 3 AND p.claimed_by = ?2 AND p.claimed_at >= {timeout}
           AND NOT ({any_held} AND EXISTS (SELECT 1 FROM {ev} w WHERE w.waiting_for = p.event_id)))
UNION ALL
SELECT 1, w.waiting_for, min(w.event_id), 0, 0 FROM {ev} w
WHERE w.waiting_for IN (SELECT value FROM json_each(?4)) AND {any_held}
GROUP BY w.waiting_for",
        ev = n.event,
        any_held = super::any_held(&n.event, ""),
        key_run = key_run_index(n),
        timeout = now_plus("?3"),
    )
}

/// For each candidate with an empty key (`?1` a JSON array of `[object, id]`): the first event
/// of its object before it that is not in progress under the claim token `?2` (see the store's
/// `claim` module), or NULL; `?3` the claim timeout's time modifier.
pub fn claim_before(n: &Names) -> String {
    format!(
        "SELECT b.value ->> 1, (SELECT min(p.event_id) FROM {ev} p
    WHERE p.event_id < b.value ->> 1 AND p.object_name = b.value ->> 0
      AND NOT (p.event_status = 3 AND p.claimed_by = ?2 AND p.claimed_at >= {timeout}))
FROM json_each(?1) AS b",
        ev = n.event,
        timeout = now_plus("?3"),
    )
}

/// The claimable events of keys (`?1` a JSON array of `[object, key, first id, last id]`, both
/// ids included), in event-id order: what a claim inherits for a candidate behind events of a
/// lower priority; `?2` the claim timeout's time modifier.
pub fn claim_inherit(n: &Names) -> String {
    format!(
        "SELECT {EVENT_COLUMNS} FROM json_each(?1) AS r
CROSS JOIN {ev} AS e INDEXED BY {key_run} ON e.object_name = r.value ->> 0
    AND e.object_key = r.value ->> 1 AND e.waiting_for IS NULL
    AND e.event_id BETWEEN r.value ->> 2 AND r.value ->> 3
WHERE (e.event_status <> 3 AND (e.next_attempt_at IS NULL OR e.next_attempt_at <= {NOW}))
   OR (e.event_status = 3 AND (e.claimed_at IS NULL OR e.claimed_at < {timeout}))
ORDER BY e.event_id",
        ev = n.event,
        key_run = key_run_index(n),
        timeout = now_plus("?2"),
    )
}

/// Marks the claimed events (`?2`, a JSON array of ids) as in progress under the token `?1`.
pub fn mark_claimed(n: &Names) -> String {
    format!(
        "UPDATE {} SET event_status = 3, claimed_by = ?1, claimed_at = {NOW}
WHERE event_id IN (SELECT value FROM json_each(?2))",
        n.event
    )
}

/// Holds event `?1` behind event `?2`, if that one is still there and not itself held.
pub fn hold(n: &Names) -> String {
    format!(
        "UPDATE {ev} SET waiting_for = ?2
WHERE event_id = ?1
  AND EXISTS (SELECT 1 FROM {ev} b WHERE b.event_id = ?2 AND b.waiting_for IS NULL)",
        ev = n.event
    )
}

/// Releases the events held behind the events of `?1`, a JSON array of ids.
pub fn release(n: &Names) -> String {
    format!(
        "UPDATE {} SET waiting_for = NULL
WHERE waiting_for IN (SELECT value FROM json_each(?1)) AND {}",
        n.event,
        super::any_held(&n.event, "")
    )
}

/// Deletes the events of `?1`, a JSON array of ids, that are still claimed under the token `?2`;
/// returns the ids deleted.
pub fn delete_claimed(n: &Names) -> String {
    format!(
        "DELETE FROM {} WHERE event_id IN (SELECT value FROM json_each(?1)) AND claimed_by = ?2
RETURNING event_id",
        n.event
    )
}

/// Archives claimed events: `?1` a JSON array of `[event id, status, description, connector
/// id, attempts]`, `?2` the claim token; only events still claimed under it, in the array's
/// order.
pub fn archive(n: &Names) -> String {
    format!(
        "INSERT INTO {ar} (event_id, object_name, object_verb, object_key, event_priority,
    event_time, event_status, event_description, connector_id, attempts, payload, replay_of,
    event_action, event_comment)
SELECT e.event_id, e.object_name, e.object_verb, e.object_key, e.event_priority, e.event_time,
    a.value ->> 1, a.value ->> 2, a.value ->> 3, a.value ->> 4, e.payload, e.replay_of,
    e.event_action, e.event_comment
FROM json_each(?1) AS a
CROSS JOIN {ev} AS e ON e.event_id = a.value ->> 0 AND e.claimed_by = ?2",
        ar = n.archive,
        ev = n.event,
    )
}

/// Releases the events held behind events that are no longer in the table (deleted by hand).
pub fn release_orphans(n: &Names) -> String {
    format!(
        "UPDATE {ev} SET waiting_for = NULL
WHERE waiting_for IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM {ev} b WHERE b.event_id = {ev}.waiting_for)",
        ev = n.event
    )
}

/// Fetches rows by key: `?1` is a JSON array holding, per key, the array of its values (text or
/// null) in key-column order. Returns each key's position and its row image, NULL when no row
/// has it. Key values are compared as they are, so the column's affinity converts them (text
/// `101` finds the integer 101) and a value that cannot convert finds nothing.
pub fn fetch(t: &TableInfo, keys: &[&Column], columns: &[Column]) -> String {
    format!(
        "SELECT k.key, (SELECT {} FROM {} AS t WHERE {} LIMIT 1)
FROM json_each(?1) AS k",
        row_image(columns, "t"),
        ident(&t.name.name),
        key_conditions(keys).join(" AND ")
    )
}

/// Fetches the child rows of many parents at once: `?1` as for [`fetch`], matched against
/// `parent_keys`. Returns, for each child row, its parent's position, its `columns` as JSON
/// text and its `carry` columns as text, in the order of the parents, then of `order_by`.
pub fn fetch_children(
    t: &TableInfo,
    parent_keys: &[&Column],
    columns: &[Column],
    order_by: &[Column],
    carry: &[Column],
) -> String {
    let mut select = vec!["k.key".to_string(), row_image(columns, "t")];
    select.extend(carry.iter().map(|c| key_text(c, "t")));
    let mut order = vec!["k.key".to_string()];
    order.extend(order_by.iter().map(|c| format!("t.{}", ident(&c.name))));
    format!(
        "SELECT {}
FROM json_each(?1) AS k
CROSS JOIN {} AS t ON {}
ORDER BY {}",
        select.join(", "),
        ident(&t.name.name),
        key_conditions(parent_keys).join(" AND "),
        order.join(", ")
    )
}

/// `t.<key column> = k.value ->> i` for each key column (`IS` where it may be NULL).
fn key_conditions(keys: &[&Column]) -> Vec<String> {
    keys.iter()
        .enumerate()
        .map(|(i, col)| {
            let op = if col.nullable { "IS" } else { "=" };
            format!("t.{} {op} (k.value ->> {i})", ident(&col.name))
        })
        .collect()
}

/// How SQLite stores and compares a column's values, from its declared type (the rules of
/// "Determination Of Column Affinity" in SQLite's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Affinity {
    Integer,
    Text,
    Blob,
    Real,
    Numeric,
}

impl Affinity {
    pub fn of(declared: &str) -> Affinity {
        let t = declared.to_ascii_uppercase();
        if t.contains("INT") {
            Affinity::Integer
        } else if ["CHAR", "CLOB", "TEXT"].iter().any(|s| t.contains(s)) {
            Affinity::Text
        } else if t.contains("BLOB") || t.trim().is_empty() {
            Affinity::Blob
        } else if ["REAL", "FLOA", "DOUB"].iter().any(|s| t.contains(s)) {
            Affinity::Real
        } else {
            Affinity::Numeric
        }
    }

    /// Whether a key value written as `text` can equal a value of such a column: a numeric
    /// column converts text that looks like a number and compares anything else as text.
    pub fn converts(self, text: &str) -> bool {
        match self {
            Affinity::Text | Affinity::Blob => true,
            Affinity::Integer | Affinity::Real | Affinity::Numeric => is_number(text.trim()),
        }
    }
}

/// SQLite's numeric literal: digits with an optional sign, point and exponent.
fn is_number(text: &str) -> bool {
    let s = text.strip_prefix(['+', '-']).unwrap_or(text);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(at) => (&s[..at], Some(&s[at + 1..])),
        None => (s, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = (!int.is_empty() || !frac.is_empty()) && digits(int) && digits(frac);
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

/// How a column's JSON value is adjusted to the payload's types, from the declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueRule {
    AsStored,
    /// `BOOLEAN`: 0 and 1 become false and true.
    Boolean,
    /// `DECIMAL(p, s)` / `NUMERIC(p, s)`: a number gets at least `s` decimals, since SQLite
    /// stores 1234.50 as the real 1234.5.
    Decimal {
        scale: usize,
    },
    /// `DATETIME` / `TIMESTAMP` text: RFC 3339, UTC when it has no offset.
    Timestamp,
}

impl ValueRule {
    /// Asked for every value of every row read, so it compares in place, without an
    /// upper-case copy of the type.
    pub fn of(declared: &str) -> ValueRule {
        let t = declared.as_bytes();
        let contains = |word: &str| {
            t.windows(word.len())
                .any(|w| w.eq_ignore_ascii_case(word.as_bytes()))
        };
        let starts_with = |word: &str| {
            t.get(..word.len())
                .is_some_and(|w| w.eq_ignore_ascii_case(word.as_bytes()))
        };
        if contains("BOOL") {
            ValueRule::Boolean
        } else if contains("DATETIME") || contains("TIMESTAMP") {
            ValueRule::Timestamp
        } else if starts_with("DECIMAL") || starts_with("NUMERIC") {
            let scale = declared
                .split_once('(')
                .and_then(|(_, args)| args.split_once(','))
                .and_then(|(_, s)| s.trim_end_matches(')').trim().parse().ok());
            match scale {
                Some(scale) => ValueRule::Decimal { scale },
                None => ValueRule::AsStored,
            }
        } else {
            ValueRule::AsStored
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ObjectConfig, TableName};
    use crate::dialect::{parse_fingerprint, test_capture};
    use crate::table::ColumnKind;

    fn column(name: &str, sql_type: &str, nullable: bool) -> Column {
        Column {
            name: name.into(),
            sql_type: sql_type.into(),
            nullable,
            kind: ColumnKind::Plain,
        }
    }

    fn department() -> TableInfo {
        TableInfo {
            name: TableName {
                schema: None,
                name: "department".into(),
            },
            columns: vec![
                column("dept_id", "INTEGER", false),
                column("name", "TEXT", true),
            ],
            primary_key: vec!["dept_id".into()],
            partitioning: Default::default(),
        }
    }

    fn object(verbs: Vec<Verb>) -> ObjectConfig {
        let mut object = ObjectConfig::new(
            "Department",
            TableName {
                schema: None,
                name: "department".into(),
            },
        );
        object.verbs = verbs;
        object.priority = 2;
        object
    }

    #[test]
    fn capture_triggers_of_a_small_table() {
        let table = department();
        let object = object(vec![Verb::Create, Verb::Update, Verb::Delete]);
        let capture = test_capture(&object, &table, ":");
        let [ddl] =
            &capture_trigger(&Names::new("trigpoll_event", "trigpoll_archive"), &capture)[..]
        else {
            panic!("one table, one set of triggers")
        };
        assert_eq!(ddl.fingerprint.len(), 16);
        let sql = ddl.statements.join(";\n\n").replace(&ddl.fingerprint, "FP");
        let key = |row: &str| {
            format!("'dept_id=' || replace(replace(replace(CAST({row}.\"dept_id\" AS TEXT), '%', '%25'), '=', '%3D'), ':', '%3A')")
        };
        assert!(sql.contains(&format!(
            "CREATE TRIGGER \"trigpoll_capture_department_insert\" AFTER INSERT ON \"department\" FOR EACH ROW
-- trigpoll fingerprint: FP (3 triggers on this table)
-- captures Department for trigpoll; generated by `trigpoll install-triggers`, do not edit
BEGIN
    INSERT INTO \"trigpoll_event\" (object_name, object_verb, object_key, event_priority, payload)
    VALUES ('Department', 'Create', {}, 2, NULL);
END",
            key("NEW")
        )), "{sql}");
        // An update that changes no column makes no event; a key change is a delete and a create.
        assert!(sql.contains(&format!(
            "SELECT 'Department', 'Update', {}, 2, NULL WHERE NEW.\"dept_id\" IS OLD.\"dept_id\" AND NOT (NEW.\"dept_id\" IS OLD.\"dept_id\" AND NEW.\"name\" IS OLD.\"name\");",
            key("NEW")
        )), "{sql}");
        assert!(
            sql.contains("WHERE NOT (NEW.\"dept_id\" IS OLD.\"dept_id\");"),
            "{sql}"
        );
        assert!(sql.contains(&format!(
            "VALUES ('Department', 'Delete', {}, 2, json_object('dept_id', CASE typeof(OLD.\"dept_id\") WHEN 'blob' THEN json_array(hex(OLD.\"dept_id\")) ELSE OLD.\"dept_id\" END, 'name', CASE typeof(OLD.\"name\") WHEN 'blob' THEN json_array(hex(OLD.\"name\")) ELSE OLD.\"name\" END));",
            key("OLD")
        )), "{sql}");
    }

    #[test]
    fn only_configured_operations_get_a_trigger() {
        let table = department();
        let object = object(vec![Verb::Delete]);
        let capture = test_capture(&object, &table, ":");
        let ddl = &capture_trigger(&Names::new("ev", "ar"), &capture)[0];
        let creates: Vec<&String> = ddl
            .statements
            .iter()
            .filter(|s| s.starts_with("CREATE TRIGGER"))
            .collect();
        assert_eq!(creates.len(), 1);
        assert!(creates[0]
            .starts_with("CREATE TRIGGER \"trigpoll_capture_department_delete\" AFTER DELETE"));
        assert_eq!(
            parse_fingerprint(creates[0]),
            Some((ddl.fingerprint.clone(), 1))
        );
        // Triggers of verbs no longer configured go.
        assert_eq!(
            ddl.statements
                .iter()
                .filter(|s| s.starts_with("DROP TRIGGER IF EXISTS"))
                .count(),
            3
        );
    }

    #[test]
    fn fetch_by_a_composite_key() {
        let table = TableInfo {
            name: TableName {
                schema: None,
                name: "order line".into(),
            },
            columns: vec![
                column("contract_id", "INT", false),
                column("header_id", "TEXT", true),
            ],
            primary_key: vec!["contract_id".into(), "header_id".into()],
            partitioning: Default::default(),
        };
        let keys: Vec<&Column> = table.columns.iter().collect();
        insta::assert_snapshot!(fetch(&table, &keys, &table.columns), @r#"
        SELECT k.key, (SELECT json_object('contract_id', CASE typeof(t."contract_id") WHEN 'blob' THEN json_array(hex(t."contract_id")) ELSE t."contract_id" END, 'header_id', CASE typeof(t."header_id") WHEN 'blob' THEN json_array(hex(t."header_id")) ELSE t."header_id" END) FROM "order line" AS t WHERE t."contract_id" = (k.value ->> 0) AND t."header_id" IS (k.value ->> 1) LIMIT 1)
        FROM json_each(?1) AS k
        "#);
    }

    #[test]
    fn wide_rows_are_spliced_from_several_objects() {
        let columns: Vec<Column> = (0..130)
            .map(|i| column(&format!("c{i}"), "INT", true))
            .collect();
        let image = row_image(&columns, "OLD");
        assert!(image.starts_with("rtrim(json_object('c0', "), "{image}");
        assert_eq!(image.matches("json_object(").count(), 3);
        assert_eq!(image.matches("|| ',' ||").count(), 2);
        assert!(image.contains("ltrim(rtrim(json_object('c63', "), "{image}");
        assert!(image.contains("ltrim(json_object('c126', "), "{image}");
    }

    #[test]
    fn trigger_names_come_back_exactly() {
        let names = vec![
            "trigpoll_capture_a, \"b\"_insert".to_string(),
            "trigpoll_capture_x_delete".to_string(),
        ];
        let joined = join_trigger_names(&names);
        assert_eq!(
            joined,
            r#""trigpoll_capture_a, ""b""_insert", "trigpoll_capture_x_delete""#
        );
        assert_eq!(trigger_names(&joined), names);
        assert_eq!(
            drop_triggers(&names[1..]),
            [r#"DROP TRIGGER IF EXISTS "trigpoll_capture_x_delete""#]
        );
    }

    #[test]
    fn affinity_follows_the_declared_type() {
        let cases = [
            ("INT", Affinity::Integer),
            ("unsigned big int", Affinity::Integer),
            ("varchar(100)", Affinity::Text),
            ("CLOB", Affinity::Text),
            ("blob", Affinity::Blob),
            ("", Affinity::Blob),
            ("double precision", Affinity::Real),
            ("FLOAT", Affinity::Real),
            ("numeric(12,2)", Affinity::Numeric),
            ("datetime", Affinity::Numeric),
            ("boolean", Affinity::Numeric),
        ];
        for (declared, affinity) in cases {
            assert_eq!(Affinity::of(declared), affinity, "{declared}");
        }
        for number in ["1", "-1", "+1.5", " 7 ", ".5", "5.", "1e10", "1.5E-3"] {
            assert!(Affinity::Integer.converts(number), "{number:?}");
        }
        for text in [
            "abc", "", "1x", "e5", "1e", "0x10", "inf", "NaN", "1.2.3", "--1",
        ] {
            assert!(!Affinity::Real.converts(text), "{text:?}");
            assert!(Affinity::Text.converts(text), "{text:?}");
        }
    }

    #[test]
    fn value_rules_come_from_the_declared_type() {
        let cases = [
            ("BOOLEAN", ValueRule::Boolean),
            ("bool", ValueRule::Boolean),
            ("datetime", ValueRule::Timestamp),
            ("timestamp(6)", ValueRule::Timestamp),
            ("date", ValueRule::AsStored),
            ("numeric(12,2)", ValueRule::Decimal { scale: 2 }),
            ("DECIMAL(10, 4)", ValueRule::Decimal { scale: 4 }),
            ("numeric", ValueRule::AsStored),
            ("real", ValueRule::AsStored),
        ];
        for (declared, rule) in cases {
            assert_eq!(ValueRule::of(declared), rule, "{declared}");
        }
    }
}

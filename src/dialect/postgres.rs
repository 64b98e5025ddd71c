//! PostgreSQL (≥ 12) SQL: event and archive tables, capture triggers, claim and fetch queries.

use crate::config::Rule;
use crate::config::{TableName, Verb};
use crate::dialect::{
    by_rules, concat_pipes, fingerprint, object_tag, rewrite_rows, root_key, Capture, ChildCapture,
    Chosen, KeySyntax, ParentEvent, Quoting, SchemaNames, TriggerDdl, FINGERPRINT_MARKER,
    RULE_COLUMNS,
};
use crate::table::{Column, Partitioning, TableInfo};

/// The name of the capture trigger on its table: the row trigger of updates.
pub const TRIGGER_NAME: &str = "trigpoll_capture";
/// Inserts and deletes are captured by statement triggers with transition tables: one set-based
/// INSERT per statement instead of one per row (a 200k-row INSERT … SELECT costs about a third).
/// PostgreSQL allows one event per trigger with transition tables, hence one trigger per verb.
pub const INSERT_TRIGGER_NAME: &str = "trigpoll_capture_insert";
pub const DELETE_TRIGGER_NAME: &str = "trigpoll_capture_delete";
pub const TRUNCATE_TRIGGER_NAME: &str = "trigpoll_capture_truncate";
/// Every name a capture trigger may have, for catalog lookups and removal.
pub const TRIGGER_NAMES: [&str; 4] = [
    TRIGGER_NAME,
    INSERT_TRIGGER_NAME,
    DELETE_TRIGGER_NAME,
    TRUNCATE_TRIGGER_NAME,
];
/// Prefix of the capture routines in trigpoll's schema.
pub const ROUTINE_PREFIX: &str = "capture_";
/// The search path every capture routine runs with: the system catalog, and temporary objects
/// last, so that no role's own functions, operators or tables can stand in for what the routine
/// calls. Everything else it names is schema-qualified.
pub const PINNED_SEARCH_PATH: &str = "pg_catalog, pg_temp";

/// A capture routine runs with the rights of its owner (the installer), not of the role whose
/// write fired it: application roles need no privilege on trigpoll's schema or tables.
fn function_options() -> String {
    format!("SECURITY DEFINER SET search_path = {PINNED_SEARCH_PATH}")
}

pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

pub fn table(name: &TableName) -> String {
    super::qualified(name, ident)
}

/// Where trigpoll's own tables live.
#[derive(Debug, Clone)]
pub struct Names {
    pub tables: SchemaNames,
    /// The role that owns the capture routines: they run with its rights, whatever condition
    /// they evaluate (README, *Backends and privileges*).
    pub capture_role: String,
}

impl std::ops::Deref for Names {
    type Target = SchemaNames;
    fn deref(&self) -> &SchemaNames {
        &self.tables
    }
}

pub fn names(schema: &str, event: &str, archive: &str, capture_role: &str) -> Names {
    Names {
        tables: SchemaNames::new(schema, event, archive, ident),
        capture_role: capture_role.to_string(),
    }
}

/// Creates the capture role when it does not exist (a role of no rights of its own: no login,
/// no inheritance), makes the installing role a member of it (to give it routines), and grants
/// it what every capture routine needs: to write events, and to call [`support_functions`].
/// Everything a routine does runs with these rights only, `when` conditions included.
pub fn capture_role(n: &Names) -> Vec<String> {
    let role = ident(&n.capture_role);
    let name = literal(&n.capture_role);
    vec![
        format!(
            "DO $trigpoll$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {name}) THEN
        BEGIN
            CREATE ROLE {role} NOLOGIN NOINHERIT;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN
                -- made by an install running at the same time
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'the capture role % does not exist, and % may not create roles', {name}, current_user
                    USING HINT = pg_catalog.format('as a superuser: CREATE ROLE %I NOLOGIN NOINHERIT; GRANT %I TO %I', {name}, {name}, current_user);
        END;
    END IF;
    IF NOT pg_catalog.pg_has_role(current_user, {name}, 'MEMBER') THEN
        BEGIN
            EXECUTE pg_catalog.format('GRANT %I TO %I', {name}, current_user);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION '% is no member of the capture role %, and may not make itself one', current_user, {name}
                USING HINT = pg_catalog.format('as a superuser: GRANT %I TO %I', {name}, current_user);
        END;
    END IF;
END $trigpoll$"
        ),
        format!("GRANT USAGE ON SCHEMA {} TO {role}", n.schema),
        format!("GRANT INSERT ON {} TO {role}", n.event),
        format!(
            "GRANT EXECUTE ON FUNCTION {}(anyelement), {}(anyelement) TO {role}",
            routine(n, PINNED_JSON),
            routine(n, PINNED_TEXT)
        ),
    ]
}

/// The LISTEN/NOTIFY channel of an event table.
pub fn channel(n: &Names) -> String {
    format!("trigpoll_{}", table_fingerprint(n))
}

fn table_fingerprint(n: &Names) -> String {
    fingerprint(&format!("{}.{}", n.schema_raw, n.event_raw))
}

/// The advisory lock (two-key form) that gates notifications: a poller about to sleep holds it
/// exclusively, and a capture trigger notifies only when it cannot take it shared. A busy or
/// absent poller costs writers no NOTIFY, whose commit-time queue lock serializes every
/// notifying transaction on the server.
pub fn wake_gate(n: &Names) -> (i32, i32) {
    // "tpol" in ASCII, so that the first key says whose lock this is in pg_locks.
    const TRIGPOLL: i32 = 0x7470_6f6c;
    let table = u32::from_str_radix(&table_fingerprint(n)[..8], 16).expect("hex digits");
    (TRIGPOLL, table as i32)
}

/// The notification a capture trigger sends when a poller waits for one (see [`wake_gate`]).
fn notify_if_waited(n: &Names) -> String {
    let (a, b) = wake_gate(n);
    format!(
        "IF NOT pg_try_advisory_xact_lock_shared({a}, {b}) THEN\n        PERFORM pg_notify({}, '');\n    END IF;",
        literal(&channel(n))
    )
}

fn routine(n: &Names, name: &str) -> String {
    format!("{}.{}", n.schema, ident(name))
}

/// Creates the schema, the event and archive tables and their indexes. The event table leaves
/// half of each page free: an event is updated once when it is claimed, and with room on its
/// page that update is HOT (no new index entries), which makes a claim about a quarter cheaper.
/// Its vacuums never truncate it: truncating takes a lock that stops every insert, so every
/// captured write of the application, while it lasts, and the emptied pages are soon filled
/// again (README, "Vacuuming").
/// Object names and keys compare bytewise (`COLLATE "C"`): only equality matters for them.
pub fn create_tables(n: &Names) -> Vec<String> {
    let aidx = |suffix: &str| ident(&format!("{}_{suffix}", n.archive_raw));
    let mut statements = vec![
        format!("CREATE SCHEMA IF NOT EXISTS {}", n.schema),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
    event_id          bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    object_name       text COLLATE \"C\" NOT NULL,
    object_verb       text NOT NULL,
    object_key        text COLLATE \"C\" NOT NULL,
    event_priority    integer NOT NULL DEFAULT 0,
    event_time        timestamptz(6) NOT NULL DEFAULT now(),
    event_status      smallint NOT NULL DEFAULT 0,
    event_description text,
    connector_id      text,
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz(6),
    payload           json,
    replay_of         bigint,
    claimed_by        text,
    claimed_at        timestamptz(6),
    done_connectors   text,
    waiting_for       bigint,
    event_action      text,
    event_comment     text
) WITH (fillfactor = 50, vacuum_truncate = false)",
            n.event
        ),
    ];
    statements.extend(event_indexes(n));
    statements.extend([
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
    event_id          bigint NOT NULL,
    object_name       text NOT NULL,
    object_verb       text NOT NULL,
    object_key        text NOT NULL,
    event_priority    integer NOT NULL,
    event_time        timestamptz(6) NOT NULL,
    event_status      smallint NOT NULL,
    event_description text,
    connector_id      text,
    attempts          integer NOT NULL,
    payload           json,
    replay_of         bigint,
    event_processed   timestamptz(6) NOT NULL DEFAULT now(),
    event_action      text,
    event_comment     text
)",
            n.archive
        ),
        format!(
            "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} (event_id, connector_id)",
            aidx("event"),
            n.archive
        ),
        // `status` counts the failures without reading an archive that only grows.
        format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} (event_status) WHERE event_status < 0",
            aidx("failures"),
            n.archive
        ),
    ]);
    statements
}

/// The event table's indexes besides its primary key. Events held behind a retry
/// (`waiting_for` set) are in neither of the first two, so that claims never read them:
/// - the claim order, (priority, event id);
/// - each key's order, (object, hash of the key, event id): a claim reads a key's events from
///   its first one and stops at the first it cannot take (a B-tree, so that the read is ordered
///   and stops, whatever the number of events behind). The key's hash, not the key: a B-tree
///   entry holds at most about 2.7 kB, and a key may be as long as the application's values
///   (its percent-encoding up to three times longer);
/// - the events held behind each event, to release them when it is done.
fn event_indexes(n: &Names) -> Vec<String> {
    let idx = |suffix: &str| ident(&format!("{}_{suffix}", n.event_raw));
    vec![
        format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} (event_priority, event_id) WHERE waiting_for IS NULL",
            idx("ready"),
            n.event
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} (object_name, hashtextextended(object_key, 0), event_id) WHERE waiting_for IS NULL",
            idx(KEY_INDEX),
            n.event
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} (waiting_for) WHERE waiting_for IS NOT NULL",
            idx("waiting"),
            n.event
        ),
    ]
}

/// The suffix of the event table's index of each key's events.
pub const KEY_INDEX: &str = "key_hash";
/// The suffix of that index before it was on the key's hash.
pub const TEXT_KEY_INDEX: &str = "key_run";

/// Replaces the index of each key's events on the key's text (which fails the application's
/// write of a key longer than an index entry may be) with the one on its hash.
pub fn upgrade_key_index(n: &Names) -> Vec<String> {
    let mut statements = event_indexes(n);
    statements.push(format!(
        "DROP INDEX IF EXISTS {}.{}",
        n.schema,
        ident(&format!("{}_{TEXT_KEY_INDEX}", n.event_raw))
    ));
    statements
}

/// Brings an event table made by trigpoll 0.1 (no `waiting_for`, a claim index over every
/// event, a hash index on keys) to the current layout, in place: its events stay.
pub fn upgrade_tables(n: &Names) -> Vec<String> {
    let old = |suffix: &str| {
        format!(
            "{}.{}",
            n.schema,
            ident(&format!("{}_{suffix}", n.event_raw))
        )
    };
    let mut statements = vec![
        format!(
            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS waiting_for bigint",
            n.event
        ),
        format!("DROP INDEX IF EXISTS {}", old("claim")),
        format!("DROP INDEX IF EXISTS {}", old("key_order")),
        format!("DROP INDEX IF EXISTS {}", old(TEXT_KEY_INDEX)),
    ];
    statements.extend(event_indexes(n));
    statements
}

/// Adds [`super::ADDED_COLUMNS`] that the event table (or, with `archive`, the archive table)
/// lacks, in place: its rows stay, with the columns `NULL`.
pub fn add_columns(n: &Names, archive: bool, columns: &[&str]) -> Vec<String> {
    let table = if archive { &n.archive } else { &n.event };
    let added: Vec<String> = columns
        .iter()
        .map(|c| format!("ADD COLUMN IF NOT EXISTS {c} text"))
        .collect();
    vec![format!("ALTER TABLE {table} {}", added.join(", "))]
}

pub fn drop_tables(n: &Names) -> Vec<String> {
    vec![
        format!("DROP TABLE IF EXISTS {}", n.event),
        format!("DROP TABLE IF EXISTS {}", n.archive),
    ]
}

/// The session settings that change how a value of the type (as `format_type` names it, without
/// modifiers) is written as JSON (`json`) or as text, each as the condition that it is as the
/// poller's own session has it: the text trigpoll builds in a trigger must not depend on the
/// writer's session (docs/payload.md). Types it does not know may depend on any of them.
fn session_dependent(sql_type: &str, json: bool) -> &'static [&'static str] {
    const TIME_ZONE: &str = "current_setting('TimeZone') IN ('UTC', 'Etc/UTC')";
    const DATE_STYLE: &str = "current_setting('DateStyle') LIKE 'ISO,%'";
    const INTERVAL_STYLE: &str = "current_setting('IntervalStyle') = 'postgres'";
    const FLOAT_DIGITS: &str = "current_setting('extra_float_digits') IN ('1', '2', '3')";
    const BYTEA_OUTPUT: &str = "current_setting('bytea_output') = 'hex'";
    const ALL: &[&str] = &[
        TIME_ZONE,
        DATE_STYLE,
        INTERVAL_STYLE,
        FLOAT_DIGITS,
        BYTEA_OUTPUT,
    ];
    let base = sql_type.trim_end_matches("[]");
    match base {
        "smallint" | "integer" | "bigint" | "numeric" | "text" | "character varying"
        | "character" | "\"char\"" | "name" | "boolean" | "uuid" | "json" | "jsonb" | "inet"
        | "cidr" | "macaddr" | "macaddr8" | "oid" | "bit" | "bit varying" | "xml" | "money"
        | "int4range" | "int8range" | "numrange" | "tsvector" | "tsquery" => &[],
        // JSON writes dates and timestamps in ISO 8601 whatever the DateStyle.
        "date" | "timestamp without time zone" | "daterange" | "tsrange" if json => &[],
        "date" | "timestamp without time zone" | "daterange" | "tsrange" => &[DATE_STYLE],
        "timestamp with time zone" | "tstzrange" if json => &[TIME_ZONE],
        "timestamp with time zone" | "tstzrange" => &[TIME_ZONE, DATE_STYLE],
        "time without time zone" | "time with time zone" => &[DATE_STYLE],
        "interval" => &[INTERVAL_STYLE],
        "real" | "double precision" | "point" | "line" | "lseg" | "box" | "path" | "polygon"
        | "circle" => &[FLOAT_DIGITS],
        "bytea" => &[BYTEA_OUTPUT],
        _ => ALL,
    }
}

/// The condition that the session writes `columns` as the poller's session does, or `None` when
/// no setting matters for them.
fn as_poller_writes(columns: &[&Column], json: bool) -> Option<String> {
    let mut conditions: Vec<&str> = Vec::new();
    for c in columns {
        for &condition in session_dependent(&c.sql_type, json) {
            if !conditions.contains(&condition) {
                conditions.push(condition);
            }
        }
    }
    (!conditions.is_empty()).then(|| conditions.join(" AND "))
}

/// The functions that write a value as JSON or text with the poller's session settings, for the
/// capture routines of writers whose session has others.
pub fn support_functions(n: &Names) -> Vec<String> {
    let options = format!(
        "SET search_path = {PINNED_SEARCH_PATH} SET TimeZone = 'UTC' SET DateStyle = 'ISO, MDY' \
         SET IntervalStyle = 'postgres' SET extra_float_digits = 1 SET bytea_output = 'hex'"
    );
    let (json, text) = (routine(n, PINNED_JSON), routine(n, PINNED_TEXT));
    vec![
        format!(
            "CREATE OR REPLACE FUNCTION {json}(anyelement) RETURNS json LANGUAGE sql STABLE
    {options} AS 'SELECT pg_catalog.to_json($1)'"
        ),
        format!(
            "CREATE OR REPLACE FUNCTION {text}(anyelement) RETURNS text LANGUAGE sql STABLE
    {options} AS 'SELECT $1::pg_catalog.text'"
        ),
        // Only the capture routines call them, as their owner.
        format!("REVOKE ALL ON FUNCTION {json}(anyelement), {text}(anyelement) FROM PUBLIC"),
    ]
}

/// The names of [`support_functions`].
pub const PINNED_JSON: &str = "pinned_json";
pub const PINNED_TEXT: &str = "pinned_text";

/// `ROW(<row>.a, <row>.b)` over the given columns.
fn row_of(columns: &[Column], row: &str) -> String {
    let list: Vec<String> = columns
        .iter()
        .map(|c| format!("{row}.{}", ident(&c.name)))
        .collect();
    format!("ROW({})", list.join(", "))
}

/// The parts of a capture routine that depend on where trigpoll's tables live and on the table:
/// how a key is written, and how rows are written as JSON.
struct Writer<'a> {
    names: &'a Names,
    table: &'a TableInfo,
}

impl Writer<'_> {
    /// A key column's value in `row` as text, as the poller's session writes it.
    fn key_text(&self, col: &Column, row: &str) -> String {
        let cell = format!("{row}.{}", ident(&col.name));
        match as_poller_writes(&[col], false) {
            None => format!("{cell}::text"),
            Some(condition) => format!(
                "CASE WHEN {condition} THEN {cell}::text ELSE {}({cell}) END",
                routine(self.names, PINNED_TEXT)
            ),
        }
    }

    /// The object key of `row` for `c`, as SQL.
    fn key(&self, c: &Capture, row: &str) -> String {
        self.with_syntax(|s| c.key_sql(s, row))
    }

    /// The parent object's key of a child row, as SQL ([`root_key`]).
    fn root_key(&self, c: &Capture, chain: &[&ChildCapture], row: &str) -> String {
        self.with_syntax(|s| root_key(c, chain, row, s, table))
    }

    fn with_syntax<R>(&self, f: impl FnOnce(&KeySyntax) -> R) -> R {
        let text = |col: &Column, row: &str| self.key_text(col, row);
        f(&KeySyntax {
            ident,
            literal,
            concat: concat_pipes,
            text: &text,
            replace: "replace",
            long_values: None,
        })
    }

    /// True when `columns` (or, for `None`, the whole row) are the same in `new` and `old`, byte
    /// for byte: the record image comparison (`*=`) needs no equality operator, so it also works
    /// for `json`, geometric and other types without one. The rows of two partitions may differ
    /// in column order: theirs are compared column by column.
    fn unchanged(&self, columns: Option<&[Column]>, new: &str, old: &str) -> String {
        match columns {
            None if !self.partitioned() => format!("{new} *= {old}"),
            None => self.unchanged(Some(&self.table.columns), new, old),
            Some(columns) => format!(
                "({})::record *= ({})::record",
                row_of(columns, new),
                row_of(columns, old)
            ),
        }
    }

    fn partitioned(&self) -> bool {
        matches!(self.table.partitioning, Partitioning::Partitioned { .. })
    }

    /// A row's attributes as JSON, as the poller's session writes them: the whole row, or the
    /// chosen columns in table order (always by name on a partitioned table, whose partitions
    /// may order their columns otherwise).
    fn image(&self, attributes: &[Column], row: &str) -> String {
        let chosen: Vec<&Column> = attributes.iter().collect();
        let json = |record: &str| match as_poller_writes(&chosen, true) {
            None => format!("to_json({record})"),
            Some(condition) => format!(
                "CASE WHEN {condition} THEN to_json({record}) ELSE {}({record}) END",
                routine(self.names, PINNED_JSON)
            ),
        };
        if attributes.len() == self.table.columns.len() && !self.partitioned() {
            json(&format!("{row}.*"))
        } else {
            let cells: Vec<String> = attributes
                .iter()
                .map(|c| format!("{row}.{}", ident(&c.name)))
                .collect();
            format!(
                "(SELECT {} FROM (SELECT {}) trigpoll_row)",
                json("trigpoll_row.*"),
                cells.join(", ")
            )
        }
    }

    /// An `Update`'s `changes` as the trigger stores them: the columns' values before and after,
    /// `[{"col": old, …}, {"col": new, …}]`, two JSON objects built in one expression. A column
    /// of a type that may be large is `null` on both sides unless it changed (compared by image,
    /// `*=`). The poller keeps the columns whose values differ ([`crate::store::changes`]):
    /// comparing every column one by one in PL/pgSQL cost the writer about twice as much, and
    /// writing every large value twice far more (BENCHMARKS.md, round 4).
    fn changes(&self, columns: &[Column], new: &str, old: &str) -> String {
        let cells = |row: &str| -> Vec<(String, String)> {
            columns
                .iter()
                .map(|c| {
                    let cell = format!("{row}.{}", ident(&c.name));
                    let value = match is_small(&c.sql_type) {
                        true => cell,
                        false => format!(
                            "CASE WHEN {} THEN NULL ELSE {cell} END",
                            self.unchanged(Some(std::slice::from_ref(c)), new, old)
                        ),
                    };
                    (c.name.clone(), value)
                })
                .collect()
        };
        let named = |row: &str| -> String {
            cells(row)
                .iter()
                .map(|(name, value)| format!("{value} AS {}", ident(name)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // json_build_object takes at most 100 arguments (a name and a value per column).
        let object = |row: &str| {
            let cells = cells(row);
            if cells.len() <= 50 {
                let pairs: Vec<String> = cells
                    .iter()
                    .map(|(name, value)| format!("{}, {value}", literal(name)))
                    .collect();
                format!("json_build_object({})", pairs.join(", "))
            } else {
                format!(
                    "(SELECT to_json(trigpoll_row.*) FROM (SELECT {}) trigpoll_row)",
                    named(row)
                )
            }
        };
        let built = format!("json_build_array({}, {})", object(old), object(new));
        let chosen: Vec<&Column> = columns.iter().collect();
        match as_poller_writes(&chosen, true) {
            None => built,
            Some(condition) => format!(
                "CASE WHEN {condition} THEN {built} ELSE (SELECT json_build_array({pinned}(trigpoll_before.*), {pinned}(trigpoll_after.*)) \
                 FROM (SELECT {}) trigpoll_before, (SELECT {}) trigpoll_after) END",
                named(old),
                named(new),
                pinned = routine(self.names, PINNED_JSON),
            ),
        }
    }
}

/// Types whose values are a few bytes (as `format_type` names them without modifiers): cheaper
/// to write into an image than to compare first. Any other value (text, bytea, json, arrays…)
/// may be large, and goes into the `changes` images only when it changed.
fn is_small(sql_type: &str) -> bool {
    matches!(
        sql_type,
        "smallint"
            | "integer"
            | "bigint"
            | "real"
            | "double precision"
            | "numeric"
            | "boolean"
            | "date"
            | "time without time zone"
            | "time with time zone"
            | "timestamp without time zone"
            | "timestamp with time zone"
            | "interval"
            | "uuid"
            | "money"
            | "oid"
    )
}

/// The first statement of every capture routine: changes made by the sessions that switched
/// capture off (`SET trigpoll.capture = 'off'`) or by the ignored users make no event.
fn guard(ignore_users: &[String]) -> String {
    let mut skip = vec!["current_setting('trigpoll.capture', true) = 'off'".to_string()];
    if !ignore_users.is_empty() {
        let users: Vec<String> = ignore_users.iter().map(|u| literal(u)).collect();
        skip.push(format!(
            "session_user::text = ANY(ARRAY[{}])",
            users.join(", ")
        ));
    }
    format!(
        "IF {} THEN\n        RETURN NULL;\n    END IF;",
        skip.join(" OR ")
    )
}

/// The routine and its triggers on one table, with the fingerprint of both. The routine
/// belongs to the capture role, which may read the tables it reads (`reads`).
fn table_ddl(
    n: &Names,
    on: &TableName,
    routine: &str,
    about: &str,
    body: String,
    triggers: Vec<String>,
    reads: &[&TableName],
) -> TriggerDdl {
    let table_name = table(on);
    let options = function_options();
    let fp = fingerprint(&format!("{options}{body}{}", triggers.join("\n")));
    let mut statements = vec![
        format!(
            "CREATE OR REPLACE FUNCTION {routine}() RETURNS trigger LANGUAGE plpgsql
    {options} AS $trigpoll$
-- {FINGERPRINT_MARKER}{fp} ({} triggers on this table)
-- captures {} for trigpoll; generated by `trigpoll install-triggers`, do not edit{body}$trigpoll$",
            triggers.len(),
            about.replace('\n', " ")
        ),
        // Only the triggers call it; nobody else has a use for it.
        format!("REVOKE ALL ON FUNCTION {routine}() FROM PUBLIC"),
        // A new owner needs CREATE on the routine's schema, for that moment only.
        format!(
            "GRANT CREATE ON SCHEMA {} TO {}",
            n.schema,
            ident(&n.capture_role)
        ),
        format!(
            "ALTER FUNCTION {routine}() OWNER TO {}",
            ident(&n.capture_role)
        ),
        format!(
            "REVOKE CREATE ON SCHEMA {} FROM {}",
            n.schema,
            ident(&n.capture_role)
        ),
    ];
    for t in reads {
        let role = ident(&n.capture_role);
        if let Some(schema) = &t.schema {
            statements.push(format!("GRANT USAGE ON SCHEMA {} TO {role}", ident(schema)));
        }
        statements.push(format!("GRANT SELECT ON {} TO {role}", table(t)));
    }
    statements.extend(
        TRIGGER_NAMES
            .iter()
            .map(|name| format!("DROP TRIGGER IF EXISTS {name} ON {table_name}")),
    );
    statements.extend(triggers);
    TriggerDdl {
        table: on.clone(),
        fingerprint: fp,
        statements,
    }
}

/// Which triggers a table gets, and how they fire.
#[derive(Debug, Clone, Copy, Default)]
struct Firing {
    insert: bool,
    update: bool,
    delete: bool,
    truncate: bool,
    /// Inserts and deletes by row: on a partitioned table, whose row triggers PostgreSQL clones
    /// onto every partition, also those attached later, and fires for rows written to a
    /// partition directly and for rows an UPDATE moves to another partition (as the delete and
    /// insert it runs). Its statement triggers fire only for statements on the table itself.
    by_row: bool,
}

/// The triggers of a table, for the verbs given: inserts and deletes by statement, with
/// transition tables (one set-based INSERT per statement: a 200k-row INSERT … SELECT costs about
/// a third), or by row on a partitioned table ([`Firing::by_row`]); updates by row (it pairs each
/// old row with its new one, and for the common single-row UPDATE it costs no more than a
/// statement trigger would); TRUNCATE by statement.
fn triggers(on: &TableName, routine: &str, firing: Firing) -> Vec<String> {
    let table_name = table(on);
    let mut triggers = Vec::new();
    let by_statement = |event: &str, transition: &str| match firing.by_row {
        true => format!("AFTER {event} ON {table_name} FOR EACH ROW"),
        false => {
            format!("AFTER {event} ON {table_name} REFERENCING {transition} FOR EACH STATEMENT")
        }
    };
    if firing.insert {
        triggers.push(format!(
            "CREATE TRIGGER {INSERT_TRIGGER_NAME} {} EXECUTE FUNCTION {routine}()",
            by_statement("INSERT", "NEW TABLE AS trigpoll_new")
        ));
    }
    if firing.update {
        triggers.push(format!(
            "CREATE TRIGGER {TRIGGER_NAME} AFTER UPDATE ON {table_name} FOR EACH ROW EXECUTE FUNCTION {routine}()"
        ));
    }
    if firing.delete {
        triggers.push(format!(
            "CREATE TRIGGER {DELETE_TRIGGER_NAME} {} EXECUTE FUNCTION {routine}()",
            by_statement("DELETE", "OLD TABLE AS trigpoll_old")
        ));
    }
    if firing.truncate {
        triggers.push(format!(
            "CREATE TRIGGER {TRUNCATE_TRIGGER_NAME} AFTER TRUNCATE ON {table_name} FOR EACH STATEMENT EXECUTE FUNCTION {routine}()"
        ));
    }
    triggers
}

/// The routine body: its variables, the guard, one branch per captured operation (`TG_OP` and
/// its statements), the wake-up notification.
fn routine_body(n: &Names, declare: &str, guard: &str, branches: &[(&str, String)]) -> String {
    let declare = match declare {
        "" => String::new(),
        d => format!("DECLARE\n    {d}\n"),
    };
    let branches: Vec<String> = branches
        .iter()
        .map(|(op, statements)| {
            format!(
                "IF TG_OP = '{op}' THEN\n        {}",
                block("        ", std::slice::from_ref(statements))
            )
        })
        .collect();
    format!(
        "
{declare}BEGIN
    {guard}
    {}
    END IF;
    {}
    RETURN NULL;
END
",
        branches.join("\n    ELS"),
        notify_if_waited(n)
    )
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

/// Whether a row an UPDATE moves to another partition may keep its object key: then the delete
/// PostgreSQL runs for it must be told from a real one (by the row that has the key now).
fn moves_keep_keys(c: &Capture) -> bool {
    match &c.table.partitioning {
        Partitioning::Partitioned {
            columns: Some(columns),
        } => !columns.iter().all(|p| c.keys.iter().any(|k| &k.name == p)),
        Partitioning::Partitioned { columns: None } => true,
        _ => false,
    }
}

/// The rules of `action` among `rules`, their conditions over the rows `new_row` and `old_row`.
fn chosen(
    rules: &[Rule],
    action: Verb,
    priority: i32,
    new_row: &str,
    old_row: &str,
) -> Option<Chosen> {
    by_rules(rules, action, priority, literal, &|condition| {
        rewrite_rows(condition, new_row, old_row, Quoting::Postgres)
    })
}

/// Statements one under the other, each line indented by `indent` but the first; empty ones
/// left out.
fn block(indent: &str, parts: &[String]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| p.lines())
        .collect::<Vec<_>>()
        .join(&format!("\n{indent}"))
}

fn object_trigger(n: &Names, c: &Capture) -> TriggerDdl {
    let tag = object_tag(&c.object.name);
    let routine = routine(n, &format!("{ROUTINE_PREFIX}{tag}"));
    let w = Writer {
        names: n,
        table: &c.table,
    };
    let by_row = w.partitioned();
    let columns = "(object_name, object_verb, object_key, event_priority, payload)";
    let target = format!("INSERT INTO {} {columns} VALUES", n.event);
    let object = literal(&c.object.name);
    let priority = c.object.priority;
    let values = |verb: Verb, row: &str, payload: &str| {
        format!(
            "{object}, {}, {}, {priority}, {payload}",
            literal(verb.as_str()),
            w.key(c, row),
        )
    };
    let event = |verb: Verb, row: &str, payload: &str| format!("({})", values(verb, row, payload));
    let rules = |action: Verb, new_row: &str, old_row: &str| {
        chosen(&c.object.rules, action, priority, new_row, old_row)
    };
    // One event of `action` for `row`, its key and its payload: as it is, or as the action's
    // rules choose it (they may make none).
    let insert = |action: Verb, row: &str, payload: &str, new_row: &str, old_row: &str| {
        match rules(action, new_row, old_row) {
            None => format!("{target} {};", event(action, row, payload)),
            Some(r) => format!(
                "INSERT INTO {} {RULE_COLUMNS}\nSELECT {object}, {}, {}, {}, {payload}, {}, {}\nFROM {}{};",
                n.event,
                r.verb,
                w.key(c, row),
                r.priority,
                literal(action.action()),
                r.comment,
                r.from,
                r.filter.map(|f| format!("\nWHERE {f}")).unwrap_or_default(),
            ),
        }
    };
    let condition = |verb: Verb, new_row: &str, old_row: &str| {
        c.object
            .when
            .get(verb)
            .map(|w| rewrite_rows(w, new_row, old_row, Quoting::Postgres))
    };
    // Returns from the routine unless the `when` condition of `verb` holds.
    let unless_when = |verb: Verb, new_row: &str, old_row: &str| {
        condition(verb, new_row, old_row)
            .map(|w| format!("IF NOT COALESCE(({w}), false) THEN\n    RETURN NULL;\nEND IF;"))
            .unwrap_or_default()
    };
    // Transition tables keep the order in which rows were changed, so event ids follow it.
    let from_transition = |verb: Verb, alias: &str, transition: &str, payload: &str| {
        let when = condition(verb, alias, alias).map(|w| format!("({w})"));
        match rules(verb, alias, alias) {
            None => format!(
                "INSERT INTO {} {columns}\nSELECT {}\nFROM {transition} {alias}{};",
                n.event,
                values(verb, alias, payload),
                when.map(|w| format!("\nWHERE {w}")).unwrap_or_default()
            ),
            Some(r) => {
                let filter: Vec<String> = when.into_iter().chain(r.filter).collect();
                format!(
                    "INSERT INTO {} {RULE_COLUMNS}\nSELECT {object}, {}, {}, {}, {payload}, {}, {}\nFROM {transition} {alias} CROSS JOIN LATERAL {}{};",
                    n.event,
                    r.verb,
                    w.key(c, alias),
                    r.priority,
                    literal(verb.action()),
                    r.comment,
                    r.from,
                    match filter.is_empty() {
                        true => String::new(),
                        false => format!("\nWHERE {}", filter.join(" AND ")),
                    },
                )
            }
        }
    };
    // An Update of `new` over `old`, whose keys are the same.
    let update = |new: &str, old: &str| {
        let payload = match c.changes.is_empty() {
            true => "NULL".to_string(),
            false => w.changes(&c.changes, new, old),
        };
        block(
            "",
            &[
                format!(
                    "IF {} THEN\n    RETURN NULL;\nEND IF;",
                    w.unchanged(c.detect.as_deref(), new, old)
                ),
                unless_when(Verb::Update, new, old),
                insert(Verb::Update, new, &payload, new, old),
            ],
        )
    };
    // A moved row's delete, seen by the row that has its key now, is an Update of it
    // ([`moves_keep_keys`]); the insert that follows for the same row makes no event.
    let moved = moves_keep_keys(c) && (c.captures(Verb::Update) || c.captures(Verb::Delete));
    let marker = literal(&format!("trigpoll.moved_{}", tag.to_ascii_lowercase()));
    let mut branches = Vec::new();
    if c.captures(Verb::Create) {
        let insert = match by_row {
            false => from_transition(Verb::Create, "n", "trigpoll_new", "NULL"),
            true => block(
                "",
                &[
                    match moved {
                        false => String::new(),
                        true => format!(
                            "IF current_setting({marker}, true) = {} THEN
    PERFORM set_config({marker}, '', true);
    RETURN NULL;
END IF;",
                            w.key(c, "NEW")
                        ),
                    },
                    unless_when(Verb::Create, "NEW", "OLD"),
                    insert(Verb::Create, "NEW", "NULL", "NEW", "OLD"),
                ],
            ),
        };
        branches.push(("INSERT", insert));
    }
    if c.captures(Verb::Update) {
        let keys = |row: &str| row_of(&c.keys, row);
        let old_image = w.image(&c.attributes, "OLD");
        // The two events in one statement, unless rules choose them.
        let chosen = |r: &Rule| r.applies_to(Verb::Delete) || r.applies_to(Verb::Create);
        let rekeyed = match !c.object.rules.iter().any(chosen) {
            true => format!(
                "{target} {}, {};",
                event(Verb::Delete, "OLD", &old_image),
                event(Verb::Create, "NEW", "NULL")
            ),
            false => block(
                "",
                &[
                    insert(Verb::Delete, "OLD", &old_image, "NEW", "OLD"),
                    insert(Verb::Create, "NEW", "NULL", "NEW", "OLD"),
                ],
            ),
        };
        branches.push((
            "UPDATE",
            format!(
                "IF {} IS NOT DISTINCT FROM {} THEN
    {}
ELSE
    {}
END IF;",
                keys("NEW"),
                keys("OLD"),
                block("    ", &[update("NEW", "OLD")]),
                block(
                    "    ",
                    &[
                        unless_when(Verb::Update, "NEW", "OLD"),
                        "-- the key changed: the old object is gone and a new one exists".into(),
                        rekeyed,
                    ]
                ),
            ),
        ));
    }
    let mut declare = String::new();
    if c.captures(Verb::Delete) || moved {
        let mut delete = Vec::new();
        if !by_row {
            delete.push(from_transition(
                Verb::Delete,
                "o",
                "trigpoll_old",
                &w.image(&c.attributes, "o"),
            ));
        }
        if moved {
            declare = "trigpoll_moved record;".to_string();
            let matches: Vec<String> = c
                .keys
                .iter()
                .map(|k| {
                    let op = if k.nullable {
                        "IS NOT DISTINCT FROM"
                    } else {
                        "="
                    };
                    format!("t.{col} {op} OLD.{col}", col = ident(&k.name))
                })
                .collect();
            let as_update = match c.captures(Verb::Update) {
                true => update("trigpoll_moved", "OLD"),
                false => String::new(),
            };
            delete.push(format!(
                "SELECT t.* INTO trigpoll_moved FROM {} t WHERE {} LIMIT 1;
IF FOUND THEN
    -- the row moved to another partition, its key kept
    {}
END IF;",
                table(&c.table.name),
                matches.join(" AND "),
                block(
                    "    ",
                    &[
                        format!("PERFORM set_config({marker}, {}, true);", w.key(c, "OLD")),
                        as_update,
                        "RETURN NULL;".into(),
                    ]
                ),
            ));
        }
        if by_row && c.captures(Verb::Delete) {
            delete.push(unless_when(Verb::Delete, "NEW", "OLD"));
            delete.push(insert(
                Verb::Delete,
                "OLD",
                &w.image(&c.attributes, "OLD"),
                "NEW",
                "OLD",
            ));
        }
        branches.push(("DELETE", block("", &delete)));
    }
    if c.captures(Verb::Truncate) {
        branches.push((
            "TRUNCATE",
            format!(
                "INSERT INTO {} (object_name, object_verb, object_key, event_priority)\nVALUES ({object}, 'Truncate', '', {priority});",
                n.event
            ),
        ));
    }
    let body = routine_body(n, &declare, &guard(&c.object.ignore_users), &branches);
    let firing = Firing {
        insert: c.captures(Verb::Create),
        update: c.captures(Verb::Update),
        delete: c.captures(Verb::Delete) || moved,
        truncate: c.captures(Verb::Truncate),
        by_row,
    };
    let triggers = triggers(&c.table.name, &routine, firing);
    let reads: &[&TableName] = match moved {
        true => &[&c.table.name],
        false => &[],
    };
    table_ddl(
        n,
        &c.table.name,
        &routine,
        &c.object.name,
        body,
        triggers,
        reads,
    )
}

/// A child table's capture: each inserted, updated or deleted child row makes an `Update` of
/// its parent object (of both when its parent changes).
fn child_trigger(n: &Names, c: &Capture, chain: &[&ChildCapture]) -> TriggerDdl {
    let child = chain.last().expect("a child has a chain");
    let routine = routine(
        n,
        &format!(
            "{ROUTINE_PREFIX}{}",
            object_tag(&format!("{}.{}", c.object.name, child.path))
        ),
    );
    let w = Writer {
        names: n,
        table: &child.table,
    };
    let object = literal(&c.object.name);
    let priority = c.object.priority;
    let event = |action: Verb, new_row: &str, old_row: &str| {
        ParentEvent::new(
            &child.config.rules,
            action,
            priority,
            literal,
            &|condition| rewrite_rows(condition, new_row, old_row, Quoting::Postgres),
        )
    };
    let from_transition = |action: Verb, alias: &str, transition: &str| {
        let key = w.root_key(c, chain, alias);
        let e = event(action, alias, alias);
        format!(
            "INSERT INTO {ev} {}\nSELECT {object}, {}, {key}, {}\nFROM {transition} {alias}{}\nWHERE {key} IS NOT NULL{};",
            e.columns,
            e.verb,
            e.rest,
            e.rules.map(|r| format!(" CROSS JOIN LATERAL {r}")).unwrap_or_default(),
            e.filter.map(|f| format!(" AND {f}")).unwrap_or_default(),
            ev = n.event,
        )
    };
    // The parents of the rows given, each once.
    let parents = |action: Verb, rows: &[&str]| {
        let keys: Vec<String> = rows
            .iter()
            .map(|row| format!("({})", w.root_key(c, chain, row)))
            .collect();
        let e = event(action, "NEW", "OLD");
        format!(
            "INSERT INTO {ev} {}
SELECT DISTINCT {object}, {}, k, {}
FROM (VALUES {}) AS parents(k){}
WHERE k IS NOT NULL{};",
            e.columns,
            e.verb,
            e.rest,
            keys.join(", "),
            e.rules
                .map(|r| format!(" CROSS JOIN {r}"))
                .unwrap_or_default(),
            e.filter.map(|f| format!(" AND {f}")).unwrap_or_default(),
            ev = n.event,
        )
    };
    // A child row's change counts when its attributes or the columns that place it changed.
    let watched: Vec<Column> = if child.attributes.len() == child.table.columns.len() {
        Vec::new()
    } else {
        child.attributes.clone()
    };
    let detect = (!watched.is_empty()).then_some(watched.as_slice());
    let by_row = w.partitioned();
    let branches = vec![
        (
            "INSERT",
            match by_row {
                false => from_transition(Verb::Create, "n", "trigpoll_new"),
                true => parents(Verb::Create, &["NEW"]),
            },
        ),
        (
            "UPDATE",
            format!(
                "IF {} THEN\n    RETURN NULL;\nEND IF;\n{}",
                w.unchanged(detect, "NEW", "OLD"),
                parents(Verb::Update, &["OLD", "NEW"]),
            ),
        ),
        (
            "DELETE",
            match by_row {
                false => from_transition(Verb::Delete, "o", "trigpoll_old"),
                true => parents(Verb::Delete, &["OLD"]),
            },
        ),
    ];
    let body = routine_body(n, "", &guard(&c.object.ignore_users), &branches);
    let firing = Firing {
        insert: true,
        update: true,
        delete: true,
        truncate: false,
        by_row,
    };
    let triggers = triggers(&child.table.name, &routine, firing);
    let about = format!("{} (its child {})", c.object.name, child.path);
    // A child below the object's own children finds its object's key through its ancestors.
    let reads: Vec<&TableName> = chain[..chain.len() - 1]
        .iter()
        .map(|ancestor| &ancestor.table.name)
        .collect();
    table_ddl(
        n,
        &child.table.name,
        &routine,
        &about,
        body,
        triggers,
        &reads,
    )
}

/// Drops the helper functions, then trigpoll's schema when nothing is left in it (a schema of
/// the DBA's with other objects stays; `public` always does).
pub fn drop_own_schema(n: &Names) -> Vec<String> {
    let mut sql = vec![
        format!(
            "DROP FUNCTION IF EXISTS {}(anyelement)",
            routine(n, PINNED_JSON)
        ),
        format!(
            "DROP FUNCTION IF EXISTS {}(anyelement)",
            routine(n, PINNED_TEXT)
        ),
    ];
    if n.schema_raw != "public" {
        sql.push(format!(
            "DO $trigpoll$ BEGIN
    DROP SCHEMA IF EXISTS {};
EXCEPTION WHEN dependent_objects_still_exist THEN
    RAISE NOTICE 'schema % kept: it holds more than trigpoll''s tables', {};
END $trigpoll$",
            n.schema,
            literal(&n.schema_raw)
        ));
    }
    sql
}

/// Drops a capture routine that no trigger runs.
pub fn drop_routine(routine: &str) -> String {
    format!("DROP FUNCTION IF EXISTS {routine}()")
}

pub fn drop_trigger(on: &TableName, routine: Option<&str>) -> Vec<String> {
    let mut sql: Vec<String> = TRIGGER_NAMES
        .iter()
        .map(|name| format!("DROP TRIGGER IF EXISTS {name} ON {}", table(on)))
        .collect();
    if let Some(r) = routine {
        sql.push(format!("DROP FUNCTION IF EXISTS {r}()"));
    }
    sql
}

/// The condition for an event `e` to be a claim's candidate: ready (and due; a status other
/// than in progress is taken for ready, as an application may write any), or claimed by a
/// poller longer ago than the claim timeout, or written as in progress without a claim time
/// (by an application: no poller claims so).
fn claimable(timeout_secs: f64) -> String {
    format!(
        "e.waiting_for IS NULL
      AND ((e.event_status <> 3 AND (e.next_attempt_at IS NULL OR e.next_attempt_at <= now()))
           OR (e.event_status = 3 AND (e.claimed_at IS NULL OR e.claimed_at < now() - {timeout_secs}::float8 * interval '1 second')))"
    )
}

/// The event columns a claim returns, in the order of [`crate::event::Event`]'s fields.
const EVENT_COLUMNS: &str = "e.event_id, e.object_name, e.object_verb, e.object_key, \
e.event_priority, to_char(e.event_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
e.connector_id, e.attempts, e.payload::text, e.replay_of, e.done_connectors, e.event_action, \
e.event_comment";

/// A claim's first step (see the store's `claim` module): up to `limit` candidates in claim order,
/// locked (`FOR UPDATE SKIP LOCKED`) unless `lock` is false (a look that claims nothing). The
/// values are literals, not parameters: the statement is prepared once per connection, and a
/// generic plan for `LIMIT $1` sorts the whole backlog instead of reading the claim index.
pub fn claim_candidates(n: &Names, limit: usize, timeout_secs: f64, lock: bool) -> String {
    format!(
        "SELECT {EVENT_COLUMNS} FROM {ev} e
WHERE {claimable}
ORDER BY e.event_priority, e.event_id
LIMIT {limit}{locking}",
        ev = n.event,
        claimable = claimable(timeout_secs),
        locking = if lock { "\nFOR UPDATE SKIP LOCKED" } else { "" },
    )
}

/// A claim's second step: for each candidate key (`$1` names, `$2` keys, `$3` the last
/// candidate's event id), its events up to that id that are not held and not in progress under
/// the claim token `$4` (one in progress under it that events are held behind counts: they are
/// the key's next, and the claim must not pass them), as (0, key position from 1, event id,
/// waiting for a retry); and for each candidate among `$5` with events held behind it, (1,
/// candidate, first of them, false).
pub fn claim_neighbours(n: &Names, timeout_secs: f64) -> String {
    format!(
        "SELECT 0, k.i, p.event_id, p.event_status = 0 AND p.next_attempt_at > now(), p.event_priority
FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS k(name, key, last, i)
JOIN {ev} p ON p.object_name = k.name COLLATE \"C\"
    AND hashtextextended(p.object_key, 0) = hashtextextended(k.key, 0)
    AND p.object_key = k.key COLLATE \"C\"
    AND p.event_id <= k.last AND p.waiting_for IS NULL
WHERE NOT (p.event_status = 3 AND p.claimed_by = $4
           AND p.claimed_at >= now() - {timeout_secs}::float8 * interval '1 second'
           AND NOT ({any_held} AND EXISTS (SELECT 1 FROM {ev} w WHERE w.waiting_for = p.event_id)))
UNION ALL
SELECT 1, w.waiting_for, min(w.event_id), false, 0 FROM {ev} w
WHERE w.waiting_for = ANY($5::bigint[]) AND {any_held}
GROUP BY w.waiting_for",
        ev = n.event,
        any_held = super::any_held(&n.event, ""),
    )
}

/// For each candidate with an empty key (`$1` its object, `$2` its id): the first event of its
/// object before it that is not in progress under the claim token `$3` (see the store's `claim`
/// module), or NULL. By the primary key: the events before a candidate are few.
pub fn claim_before(n: &Names, timeout_secs: f64) -> String {
    format!(
        "SELECT b.id, (SELECT min(p.event_id) FROM {ev} p
    WHERE p.event_id < b.id AND p.object_name = b.name
      AND NOT (p.event_status = 3 AND p.claimed_by = $3
               AND p.claimed_at >= now() - {timeout_secs}::float8 * interval '1 second'))
FROM unnest($1::text[], $2::bigint[]) AS b(name, id)",
        ev = n.event,
    )
}

/// The claimable events of keys (`$1` names, `$2` keys) from `$3` up to `$4` (ids, both
/// included), in event-id order, locked as a claim's candidates are unless `lock` is false:
/// what a claim inherits for a candidate behind events of a lower priority.
pub fn claim_inherit(n: &Names, timeout_secs: f64, lock: bool) -> String {
    format!(
        "SELECT {EVENT_COLUMNS} FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])
    AS r(name, key, first, last)
JOIN {ev} e ON e.object_name = r.name COLLATE \"C\"
    AND hashtextextended(e.object_key, 0) = hashtextextended(r.key, 0)
    AND e.object_key = r.key COLLATE \"C\" AND e.event_id BETWEEN r.first AND r.last
WHERE {claimable}
ORDER BY e.event_id{locking}",
        ev = n.event,
        claimable = claimable(timeout_secs),
        locking = if lock {
            "\nFOR UPDATE OF e SKIP LOCKED"
        } else {
            ""
        },
    )
}

/// Marks the claimed events (`$1`) as in progress under the claim token `$2`.
pub fn mark_claimed(n: &Names) -> String {
    format!(
        "UPDATE {} SET event_status = 3, claimed_by = $2, claimed_at = now()
WHERE event_id = ANY($1::bigint[])",
        n.event
    )
}

/// Holds events (`$1`) behind the events they wait for (`$2`, pairwise), each only while the
/// one it waits for is still there and not itself held: ready, or in progress under the claim
/// token `$3`. The share lock on it keeps a poller from claiming it (and, after delivering it,
/// releasing the events behind it) before this hold is committed; one that was already claimed
/// elsewhere is skipped, and its events stay ready, behind it in the key's order.
pub fn hold(n: &Names) -> String {
    format!(
        "WITH blockers AS (
    SELECT event_id FROM {ev}
    WHERE event_id = ANY($2::bigint[]) AND waiting_for IS NULL
      AND (event_status = 0 OR claimed_by = $3)
    FOR SHARE
)
UPDATE {ev} e SET waiting_for = h.behind
FROM unnest($1::bigint[], $2::bigint[]) AS h(id, behind)
WHERE e.event_id = h.id AND h.behind IN (SELECT event_id FROM blockers)",
        ev = n.event
    )
}

/// Writes the outcome of a batch in one statement, so in one transaction and one round trip,
/// touching only events still claimed by `$3`:
/// - deletes the completed events (`$1` ids) and releases the events held behind them;
/// - puts the retried ones back (`$4` ids, `$5` their retry state by event id);
/// - puts back the ones held behind an event of their key (`$6` ids, `$7` the event each waits
///   for, or NULL when it is gone, `$8` their connectors already done), attempts unchanged;
///   an event waited for that is not of this batch (`$9`) is locked as in [`hold`], and one a
///   poller claimed meanwhile is not waited for;
/// - archives the outcomes (`$2`: by event id, a list of archive rows) of all of them.
///
/// The outcomes are looked up by event id in a jsonb object rather than joined: every plan
/// stays one primary-key lookup per event, whatever the statistics say (a join was once planned
/// as a nested loop that rescanned the whole batch for every event).
pub fn finish(n: &Names) -> String {
    format!(
        "WITH moved AS (
    DELETE FROM {ev} e WHERE e.event_id = ANY($1::bigint[]) AND e.claimed_by = $3
    RETURNING e.event_id, e.object_name, e.object_verb, e.object_key, e.event_priority,
        e.event_time, e.payload, e.replay_of, e.event_action, e.event_comment
), released AS (
    UPDATE {ev} e SET waiting_for = NULL
    WHERE e.waiting_for = ANY($1::bigint[]) AND {any_held}
), retried AS (
    UPDATE {ev} e SET event_status = 0, claimed_by = NULL, claimed_at = NULL,
        attempts = ($5::jsonb -> e.event_id::text ->> 'attempts')::int,
        next_attempt_at = now()
            + ($5::jsonb -> e.event_id::text ->> 'delay_ms')::bigint * interval '1 millisecond',
        event_description = $5::jsonb -> e.event_id::text ->> 'description',
        done_connectors = $5::jsonb -> e.event_id::text ->> 'done'
    WHERE e.event_id = ANY($4::bigint[]) AND e.claimed_by = $3
    RETURNING e.event_id, e.object_name, e.object_verb, e.object_key, e.event_priority,
        e.event_time, e.payload, e.replay_of, e.event_action, e.event_comment
), blockers AS (
    SELECT event_id FROM {ev}
    WHERE event_id = ANY($9::bigint[]) AND waiting_for IS NULL
      AND (event_status = 0 OR claimed_by = $3)
    FOR SHARE
), held AS (
    UPDATE {ev} e SET event_status = 0, claimed_by = NULL, claimed_at = NULL,
        waiting_for = CASE
            WHEN NOT h.behind = ANY($9::bigint[]) OR h.behind IN (SELECT event_id FROM blockers)
            THEN h.behind END,
        done_connectors = h.done
    FROM unnest($6::bigint[], $7::bigint[], $8::text[]) AS h(id, behind, done)
    WHERE e.event_id = h.id AND e.claimed_by = $3
    RETURNING e.event_id, e.object_name, e.object_verb, e.object_key, e.event_priority,
        e.event_time, e.payload, e.replay_of, e.event_action, e.event_comment
)
INSERT INTO {ar} (event_id, object_name, object_verb, object_key, event_priority, event_time,
    event_status, event_description, connector_id, attempts, payload, replay_of, event_action,
    event_comment)
SELECT s.event_id, s.object_name, s.object_verb, s.object_key, s.event_priority, s.event_time,
    o.status, o.description, o.connector_id, o.attempts, s.payload, s.replay_of, s.event_action,
    s.event_comment
FROM (SELECT * FROM moved UNION ALL SELECT * FROM retried UNION ALL SELECT * FROM held) s
CROSS JOIN LATERAL jsonb_to_recordset($2::jsonb -> s.event_id::text)
    AS o(connector_id text, status smallint, description text, attempts int)",
        ev = n.event,
        ar = n.archive,
        any_held = super::any_held(&n.event, ""),
    )
}

/// Releases the events held behind events that are no longer in the table (deleted by hand):
/// run when a poller starts, since nothing else would ever release them.
pub fn release_orphans(n: &Names) -> String {
    format!(
        "UPDATE {ev} e SET waiting_for = NULL
WHERE e.waiting_for IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM {ev} b WHERE b.event_id = e.waiting_for)",
        ev = n.event
    )
}

/// Fetches rows by key: `$1…$n` are text arrays of the key values, one per key column. Returns
/// the 1-based position of each key and its row's `columns` as JSON text, NULL when there is
/// none. Every key value is cast to its column's type and returned, so that a value that does
/// not fit fails the statement (SQLSTATE class 22) even where no row could match.
pub fn fetch(t: &TableInfo, keys: &[&Column], columns: &[Column]) -> String {
    fetch_sql(t, keys, columns, "LEFT JOIN", &[], &[])
}

/// Fetches the child rows of many parents at once: `$1…$n` are text arrays of the parents' key
/// values, matched against `parent_keys`. Returns, for each child row, its parent's 1-based
/// position, its `columns` as JSON text and its `carry` columns as text, in the order of the
/// parents, then of `order_by`.
pub fn fetch_children(
    t: &TableInfo,
    parent_keys: &[&Column],
    columns: &[Column],
    order_by: &[Column],
    carry: &[Column],
) -> String {
    fetch_sql(t, parent_keys, columns, "JOIN", order_by, carry)
}

fn fetch_sql(
    t: &TableInfo,
    keys: &[&Column],
    columns: &[Column],
    join: &str,
    order_by: &[Column],
    carry: &[Column],
) -> String {
    let arrays: Vec<String> = (1..=keys.len()).map(|i| format!("${i}::text[]")).collect();
    let aliases: Vec<String> = (0..keys.len()).map(|i| format!("k{i}")).collect();
    let casts: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, col)| format!("k{i}::{} AS k{i}", col.sql_type))
        .collect();
    let conditions: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, col)| {
            let op = if col.nullable {
                "IS NOT DISTINCT FROM"
            } else {
                "="
            };
            format!("t.{} {op} u.k{i}", ident(&col.name))
        })
        .collect();
    // A key with no row gets NULL: `to_json(t.*)` is NULL there by itself, an image of chosen
    // columns is an object of NULLs unless asked whether the row is there.
    // The poller's session writes JSON as the capture routines do (see `Writer::image`).
    let found = match columns.len() == t.columns.len() {
        true => "to_json(t.*)".to_string(),
        false => {
            let cells: Vec<String> = columns
                .iter()
                .map(|c| format!("t.{}", ident(&c.name)))
                .collect();
            format!(
                "CASE WHEN t.ctid IS NULL THEN NULL ELSE (SELECT to_json(trigpoll_row.*) FROM (SELECT {}) trigpoll_row) END",
                cells.join(", ")
            )
        }
    };
    let mut select = vec!["u.i".to_string(), format!("{found}::text")];
    select.extend(aliases.iter().map(|a| format!("u.{a}")));
    select.extend(carry.iter().map(|c| format!("t.{}::text", ident(&c.name))));
    let order = match order_by.is_empty() {
        true => String::new(),
        false => {
            let mut list = vec!["u.i".to_string()];
            list.extend(order_by.iter().map(|c| format!("t.{}", ident(&c.name))));
            format!("\nORDER BY {}", list.join(", "))
        }
    };
    format!(
        "SELECT {}
FROM (SELECT {}, i FROM unnest({}) WITH ORDINALITY AS x({}, i)) AS u
{join} {} AS t ON {}{order}",
        select.join(", "),
        casts.join(", "),
        arrays.join(", "),
        aliases.join(", "),
        table(&t.name),
        conditions.join(" AND ")
    )
}

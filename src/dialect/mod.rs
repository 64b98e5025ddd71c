//! SQL text per backend: pure functions from configuration and table descriptions to DDL and
//! queries. Nothing here touches a database, so all of it is snapshot-tested.

use sha2::{Digest, Sha256};

pub mod capture;
pub mod mysql;
pub mod postgres;
pub mod sqlite;

pub use capture::{
    by_rules, key_sql, rewrite_rows, root_key, Capture, ChildCapture, Chosen, KeySyntax,
    ParentEvent, Quoting, RULE_COLUMNS,
};

/// The marker trigpoll writes into every trigger body it installs, followed by a fingerprint of
/// the body, so that a second install can tell that nothing changed and `status` can see drift.
pub const FINGERPRINT_MARKER: &str = "trigpoll fingerprint: ";

/// Written after a trigger's fingerprint note, with the fingerprint of the table's columns
/// (names and types) the trigger was made for.
pub const TABLE_NOTE: &str = "columns ";

/// The fingerprint of a table's columns: their names and types, in order.
pub fn table_fingerprint(table: &crate::table::TableInfo) -> String {
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| format!("{} {}", c.name, c.sql_type))
        .collect();
    fingerprint(&columns.join("\n"))
}

/// Puts `note` at the end of the fingerprint comment line of `statement`, if it has one.
fn note_after_fingerprint(statement: &mut String, note: &str) {
    let Some(at) = statement.find(FINGERPRINT_MARKER) else {
        return;
    };
    let end = statement[at..]
        .find('\n')
        .map_or(statement.len(), |i| at + i);
    statement.insert_str(end, note);
}

/// The column fingerprint noted after a trigger's fingerprint ([`TABLE_NOTE`]), if any.
pub fn parse_table_note(text: &str) -> Option<String> {
    let line = text.split_once(FINGERPRINT_MARKER)?.1.lines().next()?;
    let rest = line.split_once(&format!(") {TABLE_NOTE}"))?.1;
    let fp: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
    (!fp.is_empty()).then_some(fp)
}

/// Reads a fingerprint comment: the fingerprint, and how many capture triggers its table should
/// have, written after it as `(N triggers …)` or `(i of N triggers)`. A table with fewer triggers
/// than that has drifted even though the fingerprint matches.
pub fn parse_fingerprint(text: &str) -> Option<(String, usize)> {
    let rest = text.split_once(FINGERPRINT_MARKER)?.1;
    let fp: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
    let note = rest[fp.len()..].strip_prefix(" (")?;
    let count = note.split(" triggers").next()?.rsplit(' ').next()?;
    Some((fp, count.parse().ok()?))
}

/// A statement that fails, with the database's own message, where a `when` condition for
/// `verb` would fail in a trigger on `table` (an SQL table reference): unknown columns or
/// functions, a type that is not boolean. It reads no row.
pub fn condition_check(
    table: &str,
    verb: crate::config::Verb,
    condition: &str,
    quoting: Quoting,
) -> String {
    use crate::config::Verb;
    // Aliased `new` and `old`, so that the database's message names the rows as the condition
    // does (`column new.stauts does not exist`, `missing FROM-clause entry for table "old"`).
    let rows = match verb {
        Verb::Create | Verb::Truncate => format!("{table} AS new"),
        Verb::Update => format!("{table} AS new, {table} AS old"),
        Verb::Delete => format!("{table} AS old"),
    };
    format!(
        "SELECT 1 FROM {rows} WHERE ({}) LIMIT 0",
        rewrite_rows(condition, "new", "old", quoting)
    )
}

/// `schema.table` or `table`, each part quoted with the dialect's `ident`.
pub fn qualified(name: &crate::config::TableName, ident: fn(&str) -> String) -> String {
    match &name.schema {
        Some(schema) => format!("{}.{}", ident(schema), ident(&name.name)),
        None => ident(&name.name),
    }
}

/// `a || b || c`, the SQL standard's concatenation.
pub fn concat_pipes(parts: &[String]) -> String {
    parts.join(" || ")
}

/// The first 16 hex digits of the SHA-256 of `text`.
pub fn fingerprint(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

/// Whether any event of the event table `event` is held behind another, read with `from` after
/// the table's alias (an index hint where the backend needs one): a condition on none of a
/// statement's rows, which the database tests once (one probe of the index of held events)
/// and which spares the statement one probe per event of a batch when nothing is held, as is
/// usual. PostgreSQL runs it as a one-time filter, MariaDB finds the statement impossible
/// before it reads anything, SQLite tests it before its loops. It asks for the smallest
/// `waiting_for`, which only the index of held events can answer, rather than `EXISTS`: for an
/// event table analyzed while empty or never analyzed, PostgreSQL guesses that most events are
/// held and answered `EXISTS` by reading the whole table, dead rows and all, in every claim and
/// finish (BENCHMARKS.md, round 8). MariaDB and SQLite plan both forms alike.
pub fn any_held(event: &str, hint: &str) -> String {
    format!(
        "(SELECT min(h.waiting_for) FROM {event} AS h{hint} WHERE h.waiting_for IS NOT NULL) \
         IS NOT NULL"
    )
}

/// A short, identifier-safe stand-in for an object name in routine and trigger names, unique
/// per object name.
pub fn object_tag(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(24)
        .collect();
    format!("{clean}_{}", &fingerprint(name)[..6])
}

/// Where trigpoll's own tables live on a backend with schemas (PostgreSQL schemas, MySQL
/// databases): quoted for SQL, raw for catalog lookups.
#[derive(Debug, Clone)]
pub struct SchemaNames {
    pub schema: String,
    pub event: String,
    pub archive: String,
    pub schema_raw: String,
    pub event_raw: String,
    pub archive_raw: String,
}

impl SchemaNames {
    pub fn new(schema: &str, event: &str, archive: &str, ident: fn(&str) -> String) -> Self {
        SchemaNames {
            schema: ident(schema),
            event: format!("{}.{}", ident(schema), ident(event)),
            archive: format!("{}.{}", ident(schema), ident(archive)),
            schema_raw: schema.to_string(),
            event_raw: event.to_string(),
            archive_raw: archive.to_string(),
        }
    }
}

/// The columns both the event and the archive table gained after trigpoll 0.1's layout:
/// `install-triggers` adds those a table lacks, in place.
pub const ADDED_COLUMNS: [&str; 2] = ["event_action", "event_comment"];

/// One backend's SQL, chosen by the store in use.
#[derive(Debug, Clone)]
pub enum Dialect {
    Postgres(postgres::Names),
    /// `database.schema` is the MySQL database that holds trigpoll's tables.
    Mysql(mysql::Names),
    /// SQLite has no schemas: `database.schema` is ignored and trigpoll's tables live in the
    /// main database.
    Sqlite(sqlite::Names),
}

/// The statements that install the capture of one table (an object's own, or one of its
/// child tables), and the fingerprint they carry.
#[derive(Debug, Clone)]
pub struct TriggerDdl {
    pub table: crate::config::TableName,
    pub fingerprint: String,
    pub statements: Vec<String>,
}

impl TriggerDdl {
    /// Whether the statements name `routine` (a qualified, quoted name): it is theirs.
    pub fn statements_mention(&self, routine: &str) -> bool {
        self.statements.iter().any(|s| s.contains(routine))
    }
}

impl Dialect {
    /// The dialect of a backend (`EventStore::backend`), for the configured table names.
    pub fn new(backend: &str, config: &crate::config::Config) -> Dialect {
        let db = &config.database;
        match backend {
            "mysql" => Dialect::Mysql(mysql::names(&db.schema, &db.event_table, &db.archive_table)),
            "sqlite" => Dialect::Sqlite(sqlite::Names::new(&db.event_table, &db.archive_table)),
            _ => Dialect::Postgres(postgres::names(
                &db.schema,
                &db.event_table,
                &db.archive_table,
                &db.capture_role(),
            )),
        }
    }

    pub fn create_tables(&self) -> Vec<String> {
        match self {
            Dialect::Postgres(n) => postgres::create_tables(n),
            Dialect::Mysql(n) => mysql::create_tables(n),
            Dialect::Sqlite(n) => sqlite::create_tables(n),
        }
    }

    pub fn upgrade_tables(&self) -> Vec<String> {
        match self {
            Dialect::Postgres(n) => postgres::upgrade_tables(n),
            Dialect::Mysql(n) => mysql::upgrade_tables(n),
            Dialect::Sqlite(n) => sqlite::upgrade_tables(n),
        }
    }

    /// Adds the given [`ADDED_COLUMNS`] to the event table, or with `archive` to the archive
    /// table.
    pub fn add_columns(&self, archive: bool, columns: &[&str]) -> Vec<String> {
        match self {
            Dialect::Postgres(n) => postgres::add_columns(n, archive, columns),
            Dialect::Mysql(n) => mysql::add_columns(n, archive, columns),
            Dialect::Sqlite(n) => sqlite::add_columns(n, archive, columns),
        }
    }

    pub fn drop_tables(&self) -> Vec<String> {
        match self {
            Dialect::Postgres(n) => postgres::drop_tables(n),
            Dialect::Mysql(n) => mysql::drop_tables(n),
            Dialect::Sqlite(n) => sqlite::drop_tables(n),
        }
    }

    /// What capture routines call besides the event table, created before them, for keys
    /// joined by `delimiter`.
    pub fn support_functions(&self, delimiter: &str) -> Vec<String> {
        match self {
            Dialect::Postgres(n) => {
                let mut statements = postgres::support_functions(n);
                statements.extend(postgres::capture_role(n));
                statements
            }
            Dialect::Mysql(n) => mysql::support_functions(n, delimiter),
            Dialect::Sqlite(_) => Vec::new(),
        }
    }

    /// The capture of an object's table and of each of its child tables.
    pub fn capture(&self, capture: &Capture) -> Vec<TriggerDdl> {
        let mut ddl = match self {
            Dialect::Postgres(n) => postgres::capture_trigger(n, capture),
            Dialect::Mysql(n) => mysql::capture_trigger(n, capture),
            Dialect::Sqlite(n) => sqlite::capture_trigger(n, capture),
        };
        // Each trigger also notes the columns it was made for: a trigger that differs from the
        // configuration then tells whether the table changed under it (see `parse_table_note`).
        for d in &mut ddl {
            let table = std::iter::once(&capture.table)
                .chain(
                    capture
                        .descendants()
                        .into_iter()
                        .map(|c| &c.last().expect("a chain").table),
                )
                .find(|t| t.name == d.table);
            if let Some(table) = table {
                let note = format!(" {TABLE_NOTE}{}", table_fingerprint(table));
                for statement in &mut d.statements {
                    note_after_fingerprint(statement, &note);
                }
            }
        }
        ddl
    }

    /// Drops a capture routine that no trigger runs (PostgreSQL; the other backends have none).
    pub fn drop_routine(&self, routine: &str) -> Vec<String> {
        match self {
            Dialect::Postgres(_) => vec![postgres::drop_routine(routine)],
            Dialect::Mysql(_) | Dialect::Sqlite(_) => Vec::new(),
        }
    }

    pub fn drop_capture(&self, trigger: &crate::table::InstalledTrigger) -> Vec<String> {
        match self {
            Dialect::Postgres(_) => {
                postgres::drop_trigger(&trigger.table, trigger.routine.as_deref())
            }
            Dialect::Mysql(_) => {
                mysql::drop_triggers(&trigger.table, &mysql::installed_names(&trigger.name))
            }
            Dialect::Sqlite(_) => sqlite::drop_triggers(&sqlite::trigger_names(&trigger.name)),
        }
    }
}

impl Dialect {
    /// Statements as a script the database's own client runs as it is: `;` after each, and for
    /// MySQL a `DELIMITER` around them, since trigger bodies contain `;`.
    pub fn script(&self, statements: &[String]) -> String {
        let body: String = statements
            .iter()
            .map(|s| match self {
                Dialect::Mysql(_) => format!("{s} //\n\n"),
                _ => format!("{s};\n\n"),
            })
            .collect();
        match self {
            Dialect::Mysql(_) => format!(
                "-- run with `mysql --comments`: the trigger bodies' fingerprint comments must stay\n\
                 DELIMITER //\n\n{body}DELIMITER ;\n"
            ),
            _ => body,
        }
    }
}

/// A capture of `object` on `table` alone, for the dialects' tests.
#[cfg(test)]
pub(crate) fn test_capture(
    object: &crate::config::ObjectConfig,
    table: &crate::table::TableInfo,
    delimiter: &str,
) -> Capture {
    let tables = std::collections::HashMap::from([(
        object.table.clone().expect("an object on a table"),
        table.clone(),
    )]);
    Capture::new(object, &tables, delimiter).expect("the object fits its table")
}

#[cfg(test)]
mod script_tests {
    use super::*;
    use crate::table::ColumnKind;

    fn key_of(kind: ColumnKind, delimiter: &str) -> String {
        let column = crate::table::Column {
            name: "id".into(),
            sql_type: "bigint".into(),
            nullable: false,
            kind,
        };
        key_sql(
            &KeySyntax {
                ident: postgres::ident,
                literal: postgres::literal,
                concat: concat_pipes,
                text: &|col, row| format!("{row}.{}::text", postgres::ident(&col.name)),
                replace: "replace",
                long_values: None,
            },
            delimiter,
            &[("id", &column)],
            "NEW",
        )
    }

    #[test]
    fn integer_keys_escape_only_what_an_integer_can_hold() {
        assert_eq!(
            key_of(ColumnKind::Integer, ":"),
            "'id=' || NEW.\"id\"::text"
        );
        // A delimiter that an integer's text can hold is still escaped.
        assert_eq!(
            key_of(ColumnKind::Integer, "-"),
            "'id=' || replace(NEW.\"id\"::text, '-', '%2D')"
        );
        assert_eq!(
            key_of(ColumnKind::Plain, ":"),
            "'id=' || replace(replace(replace(NEW.\"id\"::text, '%', '%25'), '=', '%3D'), ':', '%3A')"
        );
    }

    #[test]
    fn fingerprint_notes_of_every_dialect_parse() {
        let line = |note: &str| format!("-- {FINGERPRINT_MARKER}0123abcd {note}\nBEGIN");
        assert_eq!(
            parse_fingerprint(&line("(2 of 3 triggers)")),
            Some(("0123abcd".into(), 3))
        );
        assert_eq!(
            parse_fingerprint(&line("(3 triggers on this table)")),
            Some(("0123abcd".into(), 3))
        );
        assert_eq!(parse_fingerprint(&line("")), None);
        assert_eq!(parse_fingerprint("no marker"), None);
    }

    #[test]
    fn scripts_end_statements_for_each_client() {
        let statements = vec![
            "CREATE TABLE a (x int)".to_string(),
            "BEGIN x; END".to_string(),
        ];
        let pg = Dialect::Postgres(postgres::names("s", "e", "a", "c"));
        assert_eq!(
            pg.script(&statements),
            "CREATE TABLE a (x int);\n\nBEGIN x; END;\n\n"
        );
        let my = Dialect::Mysql(mysql::names("s", "e", "a"));
        assert_eq!(
            my.script(&statements),
            "-- run with `mysql --comments`: the trigger bodies' fingerprint comments must stay\n\
             DELIMITER //\n\nCREATE TABLE a (x int) //\n\nBEGIN x; END //\n\nDELIMITER ;\n"
        );
    }
}

//! SQL text per backend: pure functions from configuration and table descriptions to DDL and
//! queries. Nothing here touches a database, so all of it is snapshot-tested.

use sha2::{Digest, Sha256};

use crate::config::{ObjectConfig, Verb};
use crate::key;
use crate::table::{ColumnKind, TableInfo};

pub mod mysql;
pub mod postgres;
pub mod sqlite;

/// The marker trigpoll writes into every trigger body it installs, followed by a fingerprint of
/// the body, so that a second install can tell that nothing changed and `status` can see drift.
pub const FINGERPRINT_MARKER: &str = "trigpoll fingerprint: ";

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

/// What the triggers of one object are generated from.
#[derive(Debug, Clone)]
pub struct Capture<'a> {
    pub object: &'a ObjectConfig,
    pub table: &'a TableInfo,
    /// Key columns, in key order.
    pub keys: Vec<&'a crate::table::Column>,
    pub delimiter: &'a str,
}

impl<'a> Capture<'a> {
    /// Resolves the key columns of an object against its table, or says why it can't.
    pub fn new(
        object: &'a ObjectConfig,
        table: &'a TableInfo,
        delimiter: &'a str,
    ) -> Result<Self, String> {
        let names: Vec<String> = match &object.keys {
            Some(keys) => keys.clone(),
            None if table.primary_key.is_empty() => {
                return Err(format!(
                    "object {}: table {} has no primary key; set `keys` to the columns that identify a row",
                    object.name, object.table
                ))
            }
            None => table.primary_key.clone(),
        };
        let keys = names
            .iter()
            .map(|n| {
                table.column(n).ok_or_else(|| {
                    format!(
                        "object {}: key column {n:?} does not exist in table {}",
                        object.name, object.table
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Capture {
            object,
            table,
            keys,
            delimiter,
        })
    }

    pub fn captures(&self, verb: Verb) -> bool {
        self.object.verbs.contains(&verb)
    }

    /// Each key column's name, already percent-encoded, then `=`.
    pub fn encoded_names(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|c| key::encode_part(&c.name, self.delimiter))
            .collect()
    }

    /// The replacements that percent-encode a value, in the order they must be applied.
    pub fn escapes(&self) -> Vec<(char, String)> {
        key::reserved_chars(self.delimiter)
            .into_iter()
            .map(|c| (c, key::percent(c)))
            .collect()
    }
}

/// How a dialect spells the parts of the object-key expression.
pub struct KeySyntax {
    pub ident: fn(&str) -> String,
    pub literal: fn(&str) -> String,
    /// Joins text expressions (`a || b`, `CONCAT(a, b)`); a single one stays as it is.
    pub concat: fn(&[String]) -> String,
    /// A key column's value in a row, as text.
    pub text: fn(&crate::table::Column, &str) -> String,
    /// The string replace function's name.
    pub replace: &'static str,
}

impl Capture<'_> {
    /// The object key of `row` (`NEW`, `OLD` or a transition-table alias) as a SQL expression:
    /// docs/payload.md computed inside the trigger, with the same escapes as [`key::encode`].
    pub fn key_sql(&self, s: &KeySyntax, row: &str) -> String {
        let lit = s.literal;
        let escapes = self.escapes();
        let mut parts = Vec::new();
        for (i, (col, name)) in self.keys.iter().zip(self.encoded_names()).enumerate() {
            if i > 0 {
                parts.push(lit(self.delimiter));
            }
            // An integer's text is a sign and digits: only those reserved characters can be in
            // it. Each replace() left out is a function call less in every captured change.
            let value = escapes
                .iter()
                .filter(|(ch, _)| {
                    col.kind != ColumnKind::Integer || ch.is_ascii_digit() || *ch == '-'
                })
                .fold((s.text)(col, row), |v, (ch, esc)| {
                    format!("{}({v}, {}, {})", s.replace, lit(&ch.to_string()), lit(esc))
                });
            let pair = (s.concat)(&[lit(&format!("{name}=")), value]);
            parts.push(if col.nullable {
                format!(
                    "CASE WHEN {row}.{} IS NULL THEN {} ELSE {pair} END",
                    (s.ident)(&col.name),
                    lit(&name)
                )
            } else {
                pair
            });
        }
        (s.concat)(&parts)
    }
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

/// The statements that install one object's capture, and the fingerprint they carry.
#[derive(Debug, Clone)]
pub struct TriggerDdl {
    pub fingerprint: String,
    pub statements: Vec<String>,
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

    pub fn drop_tables(&self) -> Vec<String> {
        match self {
            Dialect::Postgres(n) => postgres::drop_tables(n),
            Dialect::Mysql(n) => mysql::drop_tables(n),
            Dialect::Sqlite(n) => sqlite::drop_tables(n),
        }
    }

    pub fn capture(&self, capture: &Capture) -> TriggerDdl {
        match self {
            Dialect::Postgres(n) => postgres::capture_trigger(n, capture),
            Dialect::Mysql(n) => mysql::capture_trigger(n, capture),
            Dialect::Sqlite(n) => sqlite::capture_trigger(n, capture),
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

#[cfg(test)]
mod script_tests {
    use super::*;

    fn key_of(kind: ColumnKind, delimiter: &str) -> String {
        let object = ObjectConfig {
            name: "Thing".into(),
            table: crate::config::TableName {
                schema: None,
                name: "thing".into(),
            },
            keys: None,
            verbs: vec![Verb::Update],
            priority: 0,
            coalesce: false,
        };
        let table = TableInfo {
            name: object.table.clone(),
            columns: vec![crate::table::Column {
                name: "id".into(),
                sql_type: "bigint".into(),
                nullable: false,
                kind,
            }],
            primary_key: vec!["id".into()],
        };
        let capture = Capture::new(&object, &table, delimiter).unwrap();
        capture.key_sql(
            &KeySyntax {
                ident: postgres::ident,
                literal: postgres::literal,
                concat: concat_pipes,
                text: |col, row| format!("{row}.{}::text", postgres::ident(&col.name)),
                replace: "replace",
            },
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
        let pg = Dialect::Postgres(postgres::names("s", "e", "a"));
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

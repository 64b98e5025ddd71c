//! Tables as the database describes them, and trigpoll's triggers as found on them: what the
//! stores read from the catalogs and the dialects generate SQL from.

use crate::config::TableName;

/// How a column's values must be adjusted to reach their JSON types (README, *The payload*), and what
/// its values can look like as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// The database's JSON form is already right.
    Plain,
    /// An integer type that holds nothing else (not SQLite's dynamic types): as text, a sign
    /// and digits. Its JSON form is right.
    Integer,
    /// Bytes: sent as base64.
    Bytes,
    /// A timestamp without time zone: taken as UTC.
    NaiveTimestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// The database's name of the type, as used in casts.
    pub sql_type: String,
    pub nullable: bool,
    pub kind: ColumnKind,
}

/// A table as the database describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub name: TableName,
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
    pub partitioning: Partitioning,
}

/// How a table takes part in PostgreSQL's declarative partitioning (MySQL's partitions are not
/// tables of their own, SQLite has none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Partitioning {
    #[default]
    None,
    /// Its rows live in its partitions. `columns`: every column that chooses a row's partition,
    /// at any level of sub-partitioning; `None` when an expression takes part in choosing.
    Partitioned { columns: Option<Vec<String>> },
    /// A partition (at any depth) of this partitioned table.
    PartitionOf(TableName),
}

impl TableInfo {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// A trigger as found in the database, for drift checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledTrigger {
    pub table: TableName,
    pub name: String,
    /// The fingerprint trigpoll wrote into it, if it is one of ours and has one.
    pub fingerprint: Option<String>,
    /// The routine the trigger runs, qualified and quoted, where the backend has one.
    pub routine: Option<String>,
    /// Why the application's writes to this table fail while the trigger is there (the event
    /// table is gone, the trigger's owner or definer lost its rights or no longer exists).
    pub failure: Option<String>,
    /// The fingerprint of the columns the trigger was made for ([`crate::dialect::TABLE_NOTE`]),
    /// when it notes them.
    pub columns: Option<String>,
    /// Whose rights the capture runs with: the routine's owner (PostgreSQL), the triggers'
    /// definer (MySQL); `None` where there is no such thing (SQLite).
    pub runs_as: Option<String>,
}

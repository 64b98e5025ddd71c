//! The parsers the fuzz targets (`fuzz/`) call that are not public otherwise: captured row
//! images and changes of each backend without a database, and `Retry-After` values.
//!
//! Not a stable interface: it exists so that `fuzz/` and its corpus check in `tests/` reach
//! exactly the functions the poller and the connectors use.

use std::time::{Duration, SystemTime};

use serde_json::value::RawValue;

use crate::store::{self, Result};
use crate::table::TableInfo;

/// The backend whose rendering of rows is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Mysql,
    Sqlite,
}

impl Backend {
    pub const ALL: [Backend; 3] = [Backend::Postgres, Backend::Mysql, Backend::Sqlite];
}

/// What the backend's `EventStore::row_image` makes of a captured row image.
pub fn row_image(backend: Backend, table: &TableInfo, image: &str) -> Result<Box<RawValue>> {
    match backend {
        Backend::Postgres => store::postgres::row_image(table, image),
        Backend::Mysql => store::mysql::row_image(table, image),
        Backend::Sqlite => store::sqlite::parse_image(table, image),
    }
}

/// What [`store::changes`] makes of captured changes on the backend.
pub fn changes(backend: Backend, table: &TableInfo, text: &str) -> Result<Box<RawValue>> {
    store::changes_typed(
        |row| match backend {
            Backend::Postgres => store::postgres::normalize(table, row),
            Backend::Mysql => store::mysql::normalize(table, row),
            Backend::Sqlite => store::sqlite::normalize(table, row),
        },
        text,
    )
}

/// A receiver's `Retry-After` value as the HTTP connector reads it, measured from `now`.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    crate::connector::parse_retry_after(value, now)
}

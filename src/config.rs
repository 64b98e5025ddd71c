//! Configuration: `trigpoll.toml` plus one TOML file per connector (DESIGN.md §3).

use std::path::PathBuf;
use std::time::Duration;

use crate::subscription::Subscription;

/// The whole configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    pub database: DatabaseConfig,
    pub poll: PollConfig,
    pub objects: Vec<ObjectConfig>,
    pub connectors: Vec<ConnectorConfig>,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// `postgres://…`, `mysql://…` or `sqlite://path`.
    pub url: Secret,
    pub schema: String,
    pub event_table: String,
    pub archive_table: String,
}

#[derive(Debug, Clone)]
pub struct PollConfig {
    pub interval: Duration,
    pub batch_size: usize,
    pub key_delimiter: String,
    pub archive: bool,
    pub claim_timeout: Duration,
    /// Resolved against the configuration file's folder.
    pub connectors_dir: PathBuf,
}

/// The three verbs the triggers emit. Applications may write other verbs into the event table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    Create,
    Update,
    Delete,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Create => "Create",
            Verb::Update => "Update",
            Verb::Delete => "Delete",
        }
    }
}

/// A table name as written in the configuration: `schema.table` or `table`, exact spelling.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableName {
    pub schema: Option<String>,
    pub name: String,
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// A business object bound to a table.
#[derive(Debug, Clone)]
pub struct ObjectConfig {
    pub name: String,
    pub table: TableName,
    /// Key columns in key order; `None` means the table's primary key.
    pub keys: Option<Vec<String>>,
    pub verbs: Vec<Verb>,
    pub priority: i32,
}

/// One connector, read from its own file in `connectors_dir`.
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    pub id: String,
    pub subscribe: Vec<Subscription>,
    pub sink: SinkConfig,
    pub max_attempts: u32,
    /// The first retry delay; it doubles with every attempt (with jitter).
    pub backoff: Duration,
    /// The file it was read from, for messages.
    pub source: PathBuf,
}

#[derive(Debug, Clone)]
pub enum SinkConfig {
    Stdout,
    File { path: PathBuf },
    Http(HttpSinkConfig),
}

#[derive(Debug, Clone)]
pub struct HttpSinkConfig {
    pub url: String,
    pub client_id: String,
    pub secret: Secret,
    pub timeout: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
}

/// A value that must never reach a log: its Debug form is masked.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

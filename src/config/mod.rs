//! Configuration: `trigpoll.toml` plus one TOML file per connector (README, *Configuration*;
//! every key in `config.example.toml`).
//!
//! The public types here are what the program runs on. Loading goes in steps, one file each:
//! [`expand`] replaces `${VAR}`, [`raw`] is the files' shape as serde reads it, [`objects`] and
//! [`connectors`] validate into these types, and [`source`] points every error back at its
//! file, line, column and key.

mod connectors;
mod expand;
mod objects;
mod raw;
mod source;
mod template;
#[cfg(test)]
mod tests;

pub use connectors::read_ca_file;
pub use template::Template;

use connectors::connectors;
use objects::objects;
use raw::RawConfig;
use source::Source;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{MapAccess, SeqAccess};
use serde::Deserialize;
use toml::Spanned;

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
    pub archive: ArchiveConfig,
}

/// `[archive]`: how long processed events are kept.
#[derive(Debug, Clone, Default)]
pub struct ArchiveConfig {
    /// Archive rows processed longer ago than this are pruned (by `prune`, and by `poll` when it
    /// starts and every hour); `None` keeps them until `prune --older-than` removes them.
    pub retention: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// `postgres://…`, `mysql://…` or `sqlite://path`.
    pub url: Secret,
    pub schema: String,
    pub event_table: String,
    pub archive_table: String,
    /// PostgreSQL: the role that owns the capture functions, whose rights the triggers (and
    /// their `when` conditions) run with; `None`: `<schema>_capture`.
    pub capture_role: Option<String>,
}

impl DatabaseConfig {
    /// The role the capture functions belong to (PostgreSQL; README, *Backends and privileges*).
    pub fn capture_role(&self) -> String {
        self.capture_role
            .clone()
            .unwrap_or_else(|| format!("{}_capture", self.schema))
    }
}

#[derive(Debug, Clone)]
pub struct PollConfig {
    pub interval: Duration,
    pub batch_size: usize,
    pub key_delimiter: String,
    pub archive: bool,
    pub claim_timeout: Duration,
    /// How long after a claim that found fewer events than a batch the next claim waits
    /// (`poll` only; `drain` claims at once).
    pub linger: Duration,
    /// Resolved against the configuration file's folder.
    pub connectors_dir: PathBuf,
}

/// The verbs the triggers emit. Applications may write other verbs into the event table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
pub enum Verb {
    Create,
    Update,
    Delete,
    /// A TRUNCATE of the object's table (PostgreSQL): one event with an empty key.
    Truncate,
}

impl Verb {
    /// The verbs of a row's changes, in this order: what an object captures by default.
    pub const ALL: [Verb; 3] = [Verb::Create, Verb::Update, Verb::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Create => "Create",
            Verb::Update => "Update",
            Verb::Delete => "Delete",
            Verb::Truncate => "Truncate",
        }
    }

    /// The row action a verb stands for, as the configuration (`on`) and the event table
    /// (`event_action`) write it: `create`, `update`, `delete`, `truncate`.
    pub fn action(self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Delete => "delete",
            Verb::Truncate => "truncate",
        }
    }

    /// The verb of a row action written as [`Verb::action`] does.
    pub fn from_action(action: &str) -> Option<Verb> {
        [Verb::Create, Verb::Update, Verb::Delete, Verb::Truncate]
            .into_iter()
            .find(|v| v.action() == action)
    }
}

/// `[[object.rule]]` and `[[object.child.rule]]`: Infranet's event_code.txt lines. For each
/// captured change the rules of its row action are tried in file order, and the first whose
/// condition holds decides the event's verb, priority and comment, or that the change makes no
/// event; a change no rule matches makes the event it makes without rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    /// The row actions it is tried for (`on`): Create, Update, Delete.
    pub on: Vec<Verb>,
    /// SQL over `NEW.<column>`/`OLD.<column>`, as `[object.when]`; `None`: every change of
    /// those actions.
    pub when: Option<String>,
    /// The change makes no event.
    pub skip: bool,
    /// The event's verb; `None`: the action's own.
    pub verb: Option<String>,
    /// `None`: the object's priority.
    pub priority: Option<i32>,
    /// Stored with the event (`event_comment`) and delivered as `comment`.
    pub comment: Option<String>,
}

impl Rule {
    /// Whether it is tried for changes of `action`.
    pub fn applies_to(&self, action: Verb) -> bool {
        self.on.contains(&action)
    }
}

/// A table name as written in the configuration: `schema.table` or `table`, each part as
/// spelled, or in double quotes (MySQL: backticks too) taken verbatim as SQL takes quoted
/// identifiers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableName {
    pub schema: Option<String>,
    pub name: String,
}

impl TableName {
    /// Reads `schema.table` or `table`: a part in double quotes (or backticks) is taken verbatim,
    /// its quote doubled inside it; an unquoted part as spelled. `None` when it is not of that
    /// form (an empty part, an unclosed quote, three parts).
    pub fn parse(written: &str) -> Option<TableName> {
        let mut parts: Vec<String> = Vec::new();
        let mut chars = written.chars().peekable();
        loop {
            let mut part = String::new();
            match chars.peek().copied() {
                Some(quote @ ('"' | '`')) => {
                    chars.next();
                    loop {
                        match chars.next()? {
                            c if c == quote && chars.peek() == Some(&quote) => {
                                chars.next();
                                part.push(quote);
                            }
                            c if c == quote => break,
                            c => part.push(c),
                        }
                    }
                    if part.is_empty() {
                        return None;
                    }
                }
                _ => {
                    while let Some(&c) = chars.peek() {
                        if c == '.' {
                            break;
                        }
                        part.push(c);
                        chars.next();
                    }
                    if part.trim().is_empty() {
                        return None;
                    }
                }
            }
            parts.push(part);
            match chars.next() {
                None => break,
                Some('.') => {}
                Some(_) => return None,
            }
        }
        match <[String; 2]>::try_from(parts) {
            Ok([schema, name]) => Some(TableName {
                schema: Some(schema),
                name,
            }),
            Err(parts) => match <[String; 1]>::try_from(parts) {
                Ok([name]) => Some(TableName { schema: None, name }),
                Err(_) => None,
            },
        }
    }
}

impl std::fmt::Display for TableName {
    /// As it could be written in the configuration: a part that holds a dot or a quote, or
    /// starts or ends with a space, in double quotes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let part = |p: &str| {
            if p.contains(['.', '"', '`']) || p.trim() != p {
                format!("\"{}\"", p.replace('"', "\"\""))
            } else {
                p.to_string()
            }
        };
        match &self.schema {
            Some(s) => write!(f, "{}.{}", part(s), part(&self.name)),
            None => f.write_str(&part(&self.name)),
        }
    }
}

/// Columns of a table chosen by a setting: every one, the listed ones, or all but the listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Columns {
    #[default]
    All,
    Only(Vec<String>),
    Except(Vec<String>),
}

impl Columns {
    /// Whether `column` is chosen.
    pub fn contains(&self, column: &str) -> bool {
        match self {
            Columns::All => true,
            Columns::Only(list) => list.iter().any(|c| c == column),
            Columns::Except(list) => !list.iter().any(|c| c == column),
        }
    }

    /// The columns this setting names, to check that they exist.
    pub fn named(&self) -> &[String] {
        match self {
            Columns::All => &[],
            Columns::Only(list) | Columns::Except(list) => list,
        }
    }
}

/// `[object.when]`: a capture condition per verb, SQL over `NEW.<column>`/`OLD.<column>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct When {
    pub create: Option<String>,
    pub update: Option<String>,
    pub delete: Option<String>,
}

impl When {
    pub fn get(&self, verb: Verb) -> Option<&str> {
        match verb {
            Verb::Create => self.create.as_deref(),
            Verb::Update => self.update.as_deref(),
            Verb::Delete => self.delete.as_deref(),
            Verb::Truncate => None,
        }
    }
}

/// A business object: bound to a table, or an outbox object (no table) whose events
/// applications write with their payload.
#[derive(Debug, Clone)]
pub struct ObjectConfig {
    pub name: String,
    /// `None` for an outbox object.
    pub table: Option<TableName>,
    /// Key columns in key order; `None` means the table's primary key.
    pub keys: Option<Vec<String>>,
    pub verbs: Vec<Verb>,
    pub priority: i32,
    /// Consecutive `Update` events of one key claimed in one batch are delivered once, as the
    /// last of them.
    pub coalesce: bool,
    /// The columns whose change makes an `Update` an event (`track`, or every column but
    /// `ignore`); columns that are not attributes count only when `track` names them.
    pub track: Columns,
    /// The columns the business object carries (`attributes`, or every column but
    /// `exclude_attributes`); the key columns always are.
    pub attributes: Columns,
    /// `Update` events carry the old and new value of each changed tracked attribute.
    pub changes: bool,
    /// Changes made by these database users make no event.
    pub ignore_users: Vec<String>,
    pub when: When,
    /// `[[object.rule]]`, in file order.
    pub rules: Vec<Rule>,
    pub children: Vec<ChildConfig>,
}

impl ObjectConfig {
    /// An object on `table` with every setting at its default.
    pub fn new(name: &str, table: TableName) -> ObjectConfig {
        ObjectConfig {
            table: Some(table),
            verbs: Verb::ALL.to_vec(),
            ..ObjectConfig::outbox(name)
        }
    }

    /// An object without a table: its events are written by the application (an outbox), and
    /// no capture setting applies to it.
    pub fn outbox(name: &str) -> ObjectConfig {
        ObjectConfig {
            name: name.to_string(),
            table: None,
            keys: None,
            verbs: Vec::new(),
            priority: 0,
            coalesce: false,
            track: Columns::All,
            attributes: Columns::All,
            changes: false,
            ignore_users: Vec::new(),
            when: When::default(),
            rules: Vec::new(),
            children: Vec::new(),
        }
    }
}

/// `[[object.child]]`: rows of another table that belong to the object, delivered as an array
/// attribute named `name`.
#[derive(Debug, Clone)]
pub struct ChildConfig {
    pub name: String,
    pub table: TableName,
    /// The child's columns holding its parent's key, in the parent's key order.
    pub parent_keys: Vec<String>,
    /// `None`: the child table's primary key.
    pub order_by: Option<Vec<String>>,
    pub attributes: Columns,
    /// `[[object.child.rule]]`: for this table's changes, the verb, priority and comment of
    /// the parent's event, in file order.
    pub rules: Vec<Rule>,
    pub children: Vec<ChildConfig>,
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
    Nats(NatsSinkConfig),
    Amqp(AmqpSinkConfig),
    Redis(RedisSinkConfig),
}

#[derive(Debug, Clone)]
pub struct HttpSinkConfig {
    pub url: String,
    pub client_id: String,
    /// At least one. Every request carries one signature per secret, so that a receiver can
    /// move from an old secret to a new one without losing requests (rotation).
    pub secrets: Vec<Secret>,
    pub signature: Signature,
    pub timeout: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Business objects per request; above 1 every request carries `{"data": [...]}`.
    pub batch_size: usize,
    /// Certificate authorities (PEM) to trust instead of the system's, for TLS.
    pub ca_file: Option<PathBuf>,
}

/// How HTTP requests are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// `X-Trigpoll-Signature: v1=<hex HMAC-SHA256(secret, timestamp.body)>`.
    Trigpoll,
    /// The Standard Webhooks headers `webhook-id`, `webhook-timestamp`, `webhook-signature`;
    /// each secret is `whsec_` and the base64 of the key.
    StandardWebhooks,
}

/// NATS JetStream.
#[derive(Debug, Clone)]
pub struct NatsSinkConfig {
    /// `nats://` or `tls://`, credentials included.
    pub url: Secret,
    pub subject: Template,
    /// A stream to create, capturing the subjects, when it is missing.
    pub stream: Option<String>,
    /// The duplicate window of a stream trigpoll creates: 1 hour, or twice
    /// `poll.claim_timeout` when that is longer, so that an event published again after a
    /// crash (once its claim expired) or after a retry is still recognised.
    pub duplicate_window: Duration,
    /// Time allowed to connect, and for the server to acknowledge the oldest message waiting.
    pub timeout: Duration,
    /// Certificate authorities (PEM) to trust instead of the system's, for TLS.
    pub ca_file: Option<PathBuf>,
}

/// RabbitMQ or another AMQP 0-9-1 broker.
#[derive(Debug, Clone)]
pub struct AmqpSinkConfig {
    /// `amqp://` or `amqps://`, credentials included.
    pub url: Secret,
    /// Declared as a durable topic exchange when missing.
    pub exchange: String,
    pub routing_key: Template,
    /// Time allowed to connect, and for the broker to confirm the oldest message waiting.
    pub timeout: Duration,
    /// Certificate authorities (PEM) to trust instead of the system's, for TLS.
    pub ca_file: Option<PathBuf>,
}

/// Redis Streams.
#[derive(Debug, Clone)]
pub struct RedisSinkConfig {
    /// `redis://` or `rediss://`, credentials included.
    pub url: Secret,
    /// The stream key.
    pub stream: Template,
    /// Trim each stream to about this many entries (`MAXLEN ~`).
    pub maxlen: Option<u64>,
    /// Time allowed to connect, and for the server to answer a pipeline.
    pub timeout: Duration,
    /// Certificate authorities (PEM) to trust instead of the system's, for TLS.
    pub ca_file: Option<PathBuf>,
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

/// The connectors folder used when `poll.connectors_dir` is not set; unlike a configured one, it
/// may be absent (no connectors).
const DEFAULT_CONNECTORS_DIR: &str = "connectors";

/// A configuration error, located in its file: `file:line:column: key: message`.
///
/// `line`, `column` and `key` are `None` only where they do not exist (a file that cannot be
/// read, a TOML syntax error outside any key). Messages never contain secret values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}", self.location(), self.message)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based.
    pub line: Option<usize>,
    /// 1-based, in characters.
    pub column: Option<usize>,
    /// The key path, e.g. `poll.batch_size`, `object[1].keys[0]`, `sink.url`.
    pub key: Option<String>,
    pub message: String,
}

impl ConfigError {
    fn location(&self) -> String {
        let mut s = self.file.display().to_string();
        if let Some(line) = self.line {
            s += &format!(":{line}");
            if let Some(column) = self.column {
                s += &format!(":{column}");
            }
        }
        s += ": ";
        if let Some(key) = &self.key {
            s += key;
            s += ": ";
        }
        s
    }

    fn unreadable(file: &Path, error: &std::io::Error) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            line: None,
            column: None,
            key: None,
            message: format!("cannot read: {}", io_message(error)),
        }
    }
}

/// `No such file or directory` rather than `No such file or directory (os error 2)`.
fn io_message(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_string(),
        _ => text,
    }
}

impl Config {
    /// Reads `path` and every connector file in its `connectors_dir`, and validates them.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::unreadable(path, &e))?;
        Config::from_str(&text, path)
    }

    /// Like [`Config::load`] with the main file's text given; `path` names it in messages and
    /// anchors `connectors_dir`, whose connector files are still read from disk.
    pub fn from_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let source = Source::expand(path, text)?;
        let raw: RawConfig = source.parse()?;
        let base = path.parent().unwrap_or_else(|| Path::new(""));

        let postgres = !["sqlite://", "mysql://"]
            .iter()
            .any(|s| raw.database.url.0.expose().starts_with(s));
        let capture_role =
            match raw.database.capture_role {
                Some(role) if !postgres => return Err(source.error(
                    Some(role.span()),
                    Some("database.capture_role".to_string()),
                    "is a PostgreSQL role: MySQL triggers run as their definer (the installing \
                     account), SQLite has no users",
                )),
                role => role.map(|r| r.into_inner().0),
            };
        let database = DatabaseConfig {
            url: raw.database.url.0,
            schema: raw.database.schema.0,
            event_table: raw.database.event_table.0,
            archive_table: raw.database.archive_table.0,
            capture_role,
        };
        let connectors_dir = match &raw.poll.connectors_dir {
            Some(dir) => base.join(&dir.get_ref().0),
            None => base.join(DEFAULT_CONNECTORS_DIR),
        };
        let poll = PollConfig {
            interval: raw.poll.interval.0,
            batch_size: raw.poll.batch_size.get(),
            key_delimiter: raw.poll.key_delimiter.0,
            archive: raw.poll.archive,
            claim_timeout: raw.poll.claim_timeout.0,
            linger: raw.poll.linger.0,
            connectors_dir,
        };
        let url = database.url.expose();
        let backend = match () {
            _ if url.starts_with("sqlite://") => objects::Backend::Sqlite,
            _ if url.starts_with("mysql://") => objects::Backend::Mysql,
            _ => objects::Backend::Postgres,
        };
        let objects = objects(&source, raw.object, backend)?;
        let dir_span = raw.poll.connectors_dir.as_ref().map(Spanned::span);
        let connectors = connectors(&source, &poll, dir_span)?;
        Ok(Config {
            path: path.to_path_buf(),
            database,
            poll,
            objects,
            connectors,
            archive: ArchiveConfig {
                retention: raw.archive.retention.map(|r| r.0),
            },
        })
    }
}

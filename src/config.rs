//! Configuration: `trigpoll.toml` plus one TOML file per connector (DESIGN.md §3).

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, DeserializeOwned, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
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
    /// Consecutive `Update` events of one key claimed in one batch are delivered once, as the
    /// last of them.
    pub coalesce: bool,
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

        let database = DatabaseConfig {
            url: raw.database.url.0,
            schema: raw.database.schema.0,
            event_table: raw.database.event_table.0,
            archive_table: raw.database.archive_table.0,
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
            connectors_dir,
        };
        let objects = objects(&source, raw.object)?;
        let dir_span = raw.poll.connectors_dir.as_ref().map(Spanned::span);
        let connectors = connectors(&source, &poll.connectors_dir, dir_span)?;
        Ok(Config {
            path: path.to_path_buf(),
            database,
            poll,
            objects,
            connectors,
        })
    }
}

/// A list that must not be empty nor name an item twice; `key` names it in errors.
fn distinct<T: PartialEq>(
    source: &Source,
    list: Spanned<Vec<Spanned<T>>>,
    key: &str,
    when_empty: &str,
    describe: impl Fn(&T) -> String,
) -> Result<Vec<T>, ConfigError> {
    let span = list.span();
    let list = list.into_inner();
    if list.is_empty() {
        return Err(source.error(Some(span), Some(key.to_string()), when_empty));
    }
    let mut items: Vec<T> = Vec::with_capacity(list.len());
    for (i, item) in list.into_iter().enumerate() {
        if items.contains(item.get_ref()) {
            return Err(source.error(
                Some(item.span()),
                Some(format!("{key}[{i}]")),
                format!("{} is listed twice", describe(item.get_ref())),
            ));
        }
        items.push(item.into_inner());
    }
    Ok(items)
}

fn objects(source: &Source, raw: Vec<RawObject>) -> Result<Vec<ObjectConfig>, ConfigError> {
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut tables: HashMap<TableName, usize> = HashMap::new();
    let mut objects = Vec::with_capacity(raw.len());
    for (i, object) in raw.into_iter().enumerate() {
        let at = |field: &str| format!("object[{i}].{field}");

        let name = object.name.get_ref().0.clone();
        if let Some(first) = names.insert(name.clone(), i) {
            return Err(source.error(
                Some(object.name.span()),
                Some(at("name")),
                format!("object {name:?} is already defined by object[{first}]"),
            ));
        }

        let written = &object.table.get_ref().0;
        let table = match written.split_once('.') {
            None => TableName {
                schema: None,
                name: written.clone(),
            },
            Some((schema, table)) if !schema.trim().is_empty() && !table.trim().is_empty() => {
                TableName {
                    schema: Some(schema.to_string()),
                    name: table.to_string(),
                }
            }
            Some(_) => {
                return Err(source.error(
                    Some(object.table.span()),
                    Some(at("table")),
                    format!("{written:?} is not of the form schema.table or table"),
                ))
            }
        };
        if let Some(first) = tables.insert(table.clone(), i) {
            return Err(source.error(
                Some(object.table.span()),
                Some(at("table")),
                format!("table {table} is already bound to object[{first}]"),
            ));
        }

        let keys = match object.keys {
            None => None,
            Some(list) => Some(distinct(
                source,
                list,
                &at("keys"),
                "must list at least one column; leave it out to use the primary key",
                |key: &NonBlank| format!("column {:?}", key.0),
            )?),
        }
        .map(|keys| keys.into_iter().map(|k| k.0).collect());

        let verbs = match object.verbs {
            None => vec![Verb::Create, Verb::Update, Verb::Delete],
            Some(list) => distinct(
                source,
                list,
                &at("verbs"),
                "must list at least one verb; leave it out for all three",
                |verb: &Verb| format!("verb {}", verb.as_str()),
            )?,
        };

        objects.push(ObjectConfig {
            name,
            table,
            keys,
            verbs,
            priority: object.priority.get(),
            coalesce: object.coalesce,
        });
    }
    Ok(objects)
}

/// Loads every `*.toml` file of `dir`, sorted by file name. `dir_span` is where the main file
/// sets `connectors_dir`; without it the folder is the default one and may be absent.
fn connectors(
    main: &Source,
    dir: &Path,
    dir_span: Option<Range<usize>>,
) -> Result<Vec<ConnectorConfig>, ConfigError> {
    let dir_error = |message: String| {
        main.error(
            dir_span.clone(),
            Some("poll.connectors_dir".into()),
            message,
        )
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir_span.is_none() => {
            return Ok(Vec::new())
        }
        Err(e) => {
            return Err(dir_error(format!(
                "cannot read folder {}: {}",
                dir.display(),
                io_message(&e)
            )))
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| {
            dir_error(format!(
                "cannot read folder {}: {}",
                dir.display(),
                io_message(&e)
            ))
        })?;
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == "toml") && path.is_file() {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));

    let mut ids: HashMap<String, PathBuf> = HashMap::new();
    let mut connectors = Vec::with_capacity(files.len());
    for file in files {
        let text =
            std::fs::read_to_string(&file).map_err(|e| ConfigError::unreadable(&file, &e))?;
        let source = Source::expand(&file, &text)?;
        let (connector, id_span) = connector(&source, &file)?;
        if let Some(first) = ids.insert(connector.id.clone(), file.clone()) {
            return Err(source.error(
                Some(id_span),
                Some("id".into()),
                format!(
                    "connector id {:?} is already used by {}",
                    connector.id,
                    first.display()
                ),
            ));
        }
        connectors.push(connector);
    }
    Ok(connectors)
}

/// One connector file; also returns the span of its `id` for the duplicate check.
fn connector(source: &Source, file: &Path) -> Result<(ConnectorConfig, Range<usize>), ConfigError> {
    let raw: RawConnector = source.parse()?;

    let patterns = raw.subscribe;
    if patterns.get_ref().is_empty() {
        return Err(source.error(
            Some(patterns.span()),
            Some("subscribe".into()),
            "must list at least one pattern, e.g. \"Employee.*\"",
        ));
    }
    let mut subscribe = Vec::with_capacity(patterns.get_ref().len());
    for (i, pattern) in patterns.into_inner().into_iter().enumerate() {
        let parsed = pattern
            .get_ref()
            .parse::<Subscription>()
            .map_err(|message| {
                source.error(
                    Some(pattern.span()),
                    Some(format!("subscribe[{i}]")),
                    message,
                )
            })?;
        subscribe.push(parsed);
    }

    let sink = raw.sink;
    let kind = *sink.kind.get_ref();
    let present = [
        ("path", sink.path.as_ref().map(Spanned::span)),
        ("url", sink.url.as_ref().map(Spanned::span)),
        ("client_id", sink.client_id.as_ref().map(Spanned::span)),
        ("secret", sink.secret.as_ref().map(Spanned::span)),
        ("timeout", sink.timeout.as_ref().map(Spanned::span)),
        ("concurrency", sink.concurrency.as_ref().map(Spanned::span)),
    ];
    let foreign = present
        .into_iter()
        .filter_map(|(key, span)| Some((key, span?)))
        .filter(|(key, _)| !kind.keys().contains(key))
        .min_by_key(|(_, span)| span.start);
    if let Some((key, span)) = foreign {
        let mut keys = vec!["type"];
        keys.extend(kind.keys());
        keys.extend(["max_attempts", "backoff"]);
        return Err(source.error(
            Some(span),
            Some(format!("sink.{key}")),
            format!(
                "`{key}` is not a key of {kind} sinks (their keys: {})",
                keys.join(", ")
            ),
        ));
    }
    let missing = |key: &str| {
        source.error(
            Some(sink.kind.span()),
            Some(format!("sink.{key}")),
            format!("missing field `{key}`, required by {kind} sinks"),
        )
    };

    let sink_config = match kind {
        SinkKind::Stdout => SinkConfig::Stdout,
        SinkKind::File => {
            let path = PathBuf::from(sink.path.ok_or_else(|| missing("path"))?.into_inner().0);
            let dir = file.parent().unwrap_or_else(|| Path::new(""));
            SinkConfig::File {
                path: dir.join(path),
            }
        }
        SinkKind::Http => {
            let url = sink.url.ok_or_else(|| missing("url"))?;
            // The URL is not echoed: it may carry credentials.
            let scheme = url.get_ref().0.split_once("://").map(|(s, _)| s);
            if !matches!(scheme, Some("http" | "https")) {
                return Err(source.error(
                    Some(url.span()),
                    Some("sink.url".into()),
                    "must start with http:// or https://",
                ));
            }
            let secret = sink.secret.ok_or_else(|| missing("secret"))?;
            SinkConfig::Http(HttpSinkConfig {
                url: url.into_inner().0,
                client_id: sink
                    .client_id
                    .map_or_else(|| "trigpoll".to_string(), |c| c.into_inner().0),
                secret: secret.into_inner().0,
                timeout: sink
                    .timeout
                    .map_or(Duration::from_secs(10), |t| t.into_inner().0),
                concurrency: sink.concurrency.map_or(8, |c| c.into_inner().get()),
            })
        }
    };

    let id_span = raw.id.span();
    let connector = ConnectorConfig {
        id: raw.id.into_inner().0,
        subscribe,
        sink: sink_config,
        max_attempts: sink.max_attempts.get(),
        backoff: sink.backoff.0,
        source: file.to_path_buf(),
    };
    Ok((connector, id_span))
}

// ---------------------------------------------------------------------------------------------
// Raw file shapes. Checks that concern one value live in the value's `Deserialize` impl, so that
// toml and serde_path_to_error locate them; checks across values use `Spanned`.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    database: RawDatabase,
    #[serde(default)]
    poll: RawPoll,
    #[serde(default)]
    object: Vec<RawObject>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: RawSecret,
    #[serde(default = "default_schema")]
    schema: NonBlank,
    #[serde(default = "default_event_table")]
    event_table: NonBlank,
    #[serde(default = "default_archive_table")]
    archive_table: NonBlank,
}

fn default_schema() -> NonBlank {
    NonBlank("trigpoll".into())
}
fn default_event_table() -> NonBlank {
    NonBlank("trigpoll_event".into())
}
fn default_archive_table() -> NonBlank {
    NonBlank("trigpoll_archive".into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawPoll {
    interval: HumanDuration,
    batch_size: Ranged<1, 100_000>,
    key_delimiter: KeyDelimiter,
    archive: bool,
    claim_timeout: PositiveDuration,
    connectors_dir: Option<Spanned<NonBlank>>,
}

impl Default for RawPoll {
    fn default() -> Self {
        RawPoll {
            interval: HumanDuration(Duration::from_secs(5)),
            batch_size: Ranged(500),
            key_delimiter: KeyDelimiter(":".into()),
            archive: true,
            claim_timeout: PositiveDuration(Duration::from_secs(300)),
            connectors_dir: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObject {
    name: Spanned<NonBlank>,
    table: Spanned<NonBlank>,
    keys: Option<Spanned<Vec<Spanned<NonBlank>>>>,
    verbs: Option<Spanned<Vec<Spanned<Verb>>>>,
    #[serde(default)]
    priority: Ranged<0, { i32::MAX as i64 }>,
    #[serde(default)]
    coalesce: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnector {
    id: Spanned<ConnectorId>,
    subscribe: Spanned<Vec<Spanned<String>>>,
    sink: RawSink,
}

/// Every key of every sink type; [`connector`] refuses the ones foreign to the chosen type.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    #[serde(rename = "type")]
    kind: Spanned<SinkKind>,
    path: Option<Spanned<NonBlank>>,
    url: Option<Spanned<NonBlank>>,
    client_id: Option<Spanned<NonBlank>>,
    secret: Option<Spanned<RawSecret>>,
    timeout: Option<Spanned<PositiveDuration>>,
    concurrency: Option<Spanned<Ranged<1, 256>>>,
    #[serde(default = "default_max_attempts")]
    max_attempts: Ranged<1, { u32::MAX as i64 }>,
    #[serde(default = "default_backoff")]
    backoff: HumanDuration,
}

fn default_max_attempts() -> Ranged<1, { u32::MAX as i64 }> {
    Ranged(10)
}
fn default_backoff() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum SinkKind {
    Stdout,
    File,
    Http,
}

impl SinkKind {
    /// The keys of this type besides `type`, `max_attempts` and `backoff`.
    fn keys(self) -> &'static [&'static str] {
        match self {
            SinkKind::Stdout => &[],
            SinkKind::File => &["path"],
            SinkKind::Http => &["url", "client_id", "secret", "timeout", "concurrency"],
        }
    }
}

impl fmt::Display for SinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SinkKind::Stdout => "stdout",
            SinkKind::File => "file",
            SinkKind::Http => "http",
        })
    }
}

/// Visits a string and hands it to `check`, which refuses it with a message.
struct StrVisitor<F>(&'static str, F);

impl<T, F: FnOnce(&str) -> Result<T, String>> Visitor<'_> for StrVisitor<F> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.1)(v).map_err(E::custom)
    }
}

/// A string that is not empty or only whitespace.
#[derive(PartialEq)]
struct NonBlank(String);

impl<'de> Deserialize<'de> for NonBlank {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor("a non-empty string", |v: &str| {
            if v.trim().is_empty() {
                Err("must not be empty".to_string())
            } else {
                Ok(NonBlank(v.to_string()))
            }
        }))
    }
}

struct ConnectorId(String);

impl<'de> Deserialize<'de> for ConnectorId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor("a connector id", |v: &str| {
            let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
            if !v.is_empty() && v.chars().all(valid) {
                Ok(ConnectorId(v.to_string()))
            } else {
                Err(format!(
                    "connector id {v:?} must be made of letters, digits, `_`, `.` and `-`"
                ))
            }
        }))
    }
}

struct KeyDelimiter(String);

impl<'de> Deserialize<'de> for KeyDelimiter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // `=` separates a name from its value and `%` starts an escape (DESIGN.md §5).
        d.deserialize_str(StrVisitor("a key delimiter", |v: &str| {
            if v.is_empty() {
                Err("must not be empty".to_string())
            } else if v.contains(['=', '%']) {
                Err(format!("{v:?} must not contain `=` or `%`"))
            } else {
                Ok(KeyDelimiter(v.to_string()))
            }
        }))
    }
}

/// A non-empty secret. Type errors do not echo the value.
struct RawSecret(Secret);

impl<'de> Deserialize<'de> for RawSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl V {
            fn hidden<T, E: de::Error>(self) -> Result<T, E> {
                Err(E::custom("invalid type: expected a string (value hidden)"))
            }
        }
        impl<'de> Visitor<'de> for V {
            type Value = RawSecret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSecret, E> {
                if v.is_empty() {
                    return Err(E::custom("must not be empty"));
                }
                Ok(RawSecret(Secret::new(v)))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<RawSecret, E> {
                self.hidden()
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<RawSecret, E> {
                self.hidden()
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<RawSecret, E> {
                self.hidden()
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawSecret, E> {
                self.hidden()
            }
            fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<RawSecret, A::Error> {
                self.hidden()
            }
            fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<RawSecret, A::Error> {
                self.hidden()
            }
        }
        d.deserialize_str(V)
    }
}

/// A humantime duration: `"5s"`, `"250ms"`, `"1h 30m"`.
struct HumanDuration(Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor(
            "a duration such as \"5s\" or \"250ms\"",
            |v: &str| {
                humantime::parse_duration(v)
                    .map(HumanDuration)
                    .map_err(|e| format!("invalid duration {v:?}: {e}"))
            },
        ))
    }
}

struct PositiveDuration(Duration);

impl<'de> Deserialize<'de> for PositiveDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let HumanDuration(duration) = HumanDuration::deserialize(d)?;
        if duration.is_zero() {
            return Err(de::Error::custom("must be greater than zero"));
        }
        Ok(PositiveDuration(duration))
    }
}

/// An integer within `MIN..=MAX`.
struct Ranged<const MIN: i64, const MAX: i64>(i64);

impl<const MIN: i64, const MAX: i64> Ranged<MIN, MAX> {
    /// Converts to a type that holds the whole range.
    fn get<T: TryFrom<i64>>(&self) -> T {
        T::try_from(self.0).unwrap_or_else(|_| unreachable!("{} is within {MIN}..={MAX}", self.0))
    }
}

impl<const MIN: i64, const MAX: i64> Default for Ranged<MIN, MAX> {
    fn default() -> Self {
        Ranged(MIN)
    }
}

impl<'de, const MIN: i64, const MAX: i64> Deserialize<'de> for Ranged<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const MIN: i64, const MAX: i64>;
        impl<const MIN: i64, const MAX: i64> Visitor<'_> for V<MIN, MAX> {
            type Value = Ranged<MIN, MAX>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                if (MIN..=MAX).contains(&v) {
                    Ok(Ranged(v))
                } else if v < MIN && MAX >= i64::from(i32::MAX) {
                    // Stating a bound of billions would only distract from the one at fault.
                    Err(E::custom(format!(
                        "{v} is out of range: must be at least {MIN}"
                    )))
                } else {
                    Err(E::custom(format!(
                        "{v} is out of range: must be between {MIN} and {MAX}"
                    )))
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                match i64::try_from(v) {
                    Ok(v) => self.visit_i64(v),
                    Err(_) => Err(E::custom(format!("{v} is out of range"))),
                }
            }
        }
        d.deserialize_i64(V::<MIN, MAX>)
    }
}

// ---------------------------------------------------------------------------------------------
// Locating errors.

/// A file's text after `${VAR}` expansion, with what is needed to point back into the original.
struct Source<'a> {
    path: &'a Path,
    original: &'a str,
    expanded: String,
    substitutions: Vec<Substitution>,
}

/// One `${…}` or `$$` replaced: its range in the original text and in the expanded one.
#[derive(Debug, Clone, PartialEq)]
struct Substitution {
    original: Range<usize>,
    expanded: Range<usize>,
}

impl<'a> Source<'a> {
    fn expand(path: &'a Path, original: &'a str) -> Result<Self, ConfigError> {
        let expansion = expand(original, |name| match std::env::var(name) {
            Ok(value) => Ok(Some(value)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(format!("environment variable {name} is not valid UTF-8"))
            }
        });
        let source = Source {
            path,
            original,
            expanded: expansion.text,
            substitutions: expansion.substitutions,
        };
        match expansion.problems.into_iter().next() {
            None => Ok(source),
            Some(problem) => {
                let key = key_at(&source.expanded, problem.expanded_offset);
                Err(source.error(
                    Some(problem.expanded_offset..problem.expanded_offset),
                    key,
                    problem.message,
                ))
            }
        }
    }

    fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        serde_path_to_error::deserialize(toml::Deserializer::new(&self.expanded)).map_err(|e| {
            let mut key: Vec<String> = Vec::new();
            for segment in e.path().iter() {
                match segment {
                    serde_path_to_error::Segment::Seq { index } => match key.last_mut() {
                        Some(last) => *last += &format!("[{index}]"),
                        None => key.push(format!("[{index}]")),
                    },
                    serde_path_to_error::Segment::Map { key: k }
                    | serde_path_to_error::Segment::Enum { variant: k } => {
                        // Spanned's and toml's datetime's private fields are not user keys.
                        if !k.starts_with("$__") {
                            key.push(k.clone());
                        }
                    }
                    serde_path_to_error::Segment::Unknown => key.push("?".into()),
                }
            }
            let inner = e.into_inner();
            let message = inner.message().trim().replace('\n', "; ");
            // A missing field is reported at its table; name the field itself.
            if let Some(field) = message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
            {
                key.push(field.to_string());
            }
            let key = (!key.is_empty()).then(|| key.join("."));
            self.error(inner.span(), key, message)
        })
    }

    /// An error at `span` of the expanded text.
    fn error(
        &self,
        span: Option<Range<usize>>,
        key: Option<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = match span {
            Some(span) => {
                let (line, column) = self.line_column(span.start);
                (Some(line), Some(column))
            }
            None => (None, None),
        };
        ConfigError {
            file: self.path.to_path_buf(),
            line,
            column,
            key,
            message: message.into(),
        }
    }

    /// 1-based line and column in the original text of an offset in the expanded one.
    fn line_column(&self, expanded: usize) -> (usize, usize) {
        let mut offset = expanded;
        for s in &self.substitutions {
            if expanded < s.expanded.start {
                break;
            }
            if expanded < s.expanded.end || expanded == s.expanded.start {
                offset = s.original.start;
                break;
            }
            offset = s.original.end + (expanded - s.expanded.end);
        }
        let mut offset = offset.min(self.original.len());
        while !self.original.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.original[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (
            before.matches('\n').count() + 1,
            before[line_start..].chars().count() + 1,
        )
    }
}

/// The key path of the value at `offset` of a TOML text, if it parses.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let root: Node = toml::from_str(text).ok()?;
    root.key_at(offset, "")
}

/// A TOML document reduced to its keys and the spans of their values.
enum Node {
    Table(Vec<(String, Spanned<Node>)>),
    Array(Vec<Spanned<Node>>),
    Scalar,
}

impl Node {
    fn key_at(&self, offset: usize, path: &str) -> Option<String> {
        let children: Vec<(String, &Spanned<Node>)> = match self {
            Node::Scalar => return None,
            Node::Table(entries) => entries
                .iter()
                .map(|(k, v)| {
                    let key = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    (key, v)
                })
                .collect(),
            Node::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("{path}[{i}]"), v))
                .collect(),
        };
        children.into_iter().find_map(|(key, child)| {
            let found = child.get_ref().key_at(offset, &key);
            let here = matches!(child.get_ref(), Node::Scalar) && child.span().contains(&offset);
            found.or(here.then_some(key))
        })
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any TOML value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_str<E>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if key.starts_with("$__") {
                        // A datetime, seen by serde as a map with one private key.
                        map.next_value::<IgnoredAny>()?;
                        return Ok(Node::Scalar);
                    }
                    entries.push((key, map.next_value()?));
                }
                Ok(Node::Table(entries))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------
// `${VAR}` expansion.

struct Expansion {
    text: String,
    substitutions: Vec<Substitution>,
    problems: Vec<Problem>,
}

struct Problem {
    expanded_offset: usize,
    message: String,
}

/// Where in a TOML text a `${…}` sits; it decides how the value is written.
#[derive(Clone, Copy, PartialEq)]
enum Context {
    Bare,
    Comment,
    Basic,
    MultiBasic,
    Literal,
    MultiLiteral,
}

/// Expands `${VAR}`, `${VAR:-default}` (default when VAR is unset or empty) and `$$` (a `$`).
///
/// Comments are left alone, so a commented-out line never needs its variables. Values almost
/// always sit inside `"…"` strings, so they are escaped for a TOML basic string (backslash,
/// double quote, control characters); outside strings the same escaping applies (a number or a
/// boolean is unchanged by it). Inside a `'…'` literal string, where nothing can be escaped, a
/// value holding a `'` or a control character is refused. Either way a value never adds a line,
/// so line numbers of the expanded text are those of the file. Problems (an unset variable, a
/// malformed reference) are collected; the text is still expanded, with empty values, so that
/// the key holding the reference can be named.
fn expand(text: &str, lookup: impl Fn(&str) -> Result<Option<String>, String>) -> Expansion {
    let mut out = String::with_capacity(text.len());
    let mut substitutions = Vec::new();
    let mut problems = Vec::new();
    let mut context = Context::Bare;
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        let c = rest.chars().next().expect("i < text.len()");

        if c == '$' && context != Context::Comment {
            let replaced = if rest.starts_with("$$") {
                Some((2, "$".to_string()))
            } else if rest.starts_with("${") {
                reference(rest, context, &lookup, &mut |message| {
                    problems.push(Problem {
                        expanded_offset: out.len(),
                        message,
                    })
                })
            } else {
                None
            };
            if let Some((len, value)) = replaced {
                let start = out.len();
                out += &value;
                substitutions.push(Substitution {
                    original: i..i + len,
                    expanded: start..out.len(),
                });
                i += len;
                continue;
            }
        }

        // Copy one token and track whether it opens or closes a string or a comment.
        let mut len = c.len_utf8();
        let three = |q: &str| rest.starts_with(q);
        context = match (context, c) {
            (Context::Bare, '#') => Context::Comment,
            (Context::Bare, '"') if three("\"\"\"") => {
                len = 3;
                Context::MultiBasic
            }
            (Context::Bare, '"') => Context::Basic,
            (Context::Bare, '\'') if three("'''") => {
                len = 3;
                Context::MultiLiteral
            }
            (Context::Bare, '\'') => Context::Literal,
            (Context::Basic | Context::MultiBasic, '\\') => {
                len += rest[1..].chars().next().map_or(0, char::len_utf8);
                context
            }
            (Context::Basic, '"') | (Context::Literal, '\'') => Context::Bare,
            (Context::Comment | Context::Basic | Context::Literal, '\n') => Context::Bare,
            (Context::MultiBasic, '"') if three("\"\"\"") => {
                // A closing delimiter may be preceded by up to two quotes of the content.
                len = rest.bytes().take(5).take_while(|&b| b == b'"').count();
                Context::Bare
            }
            (Context::MultiLiteral, '\'') if three("'''") => {
                len = rest.bytes().take(5).take_while(|&b| b == b'\'').count();
                Context::Bare
            }
            (context, _) => context,
        };
        out += &rest[..len];
        i += len;
    }
    Expansion {
        text: out,
        substitutions,
        problems,
    }
}

/// Replaces the `${…}` at the start of `rest`: returns its length and the text to write, or
/// `None` (and a problem) when it is malformed so that it is copied as is.
fn reference(
    rest: &str,
    context: Context,
    lookup: &impl Fn(&str) -> Result<Option<String>, String>,
    problem: &mut impl FnMut(String),
) -> Option<(usize, String)> {
    let Some(end) = rest
        .find(['}', '\n'])
        .filter(|&end| rest[end..].starts_with('}'))
    else {
        problem("unterminated ${ (no closing } on this line; write $$ for a literal $)".into());
        return None;
    };
    let inner = &rest[2..end];
    let (name, default) = match inner.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (inner, None),
    };
    let valid_name = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        problem(format!(
            "invalid variable reference ${{{inner}}}: expected ${{NAME}} or ${{NAME:-default}}"
        ));
        return None;
    }
    let value = match (lookup(name), default) {
        (Err(message), _) => {
            problem(message);
            String::new()
        }
        (Ok(Some(value)), None) => value,
        (Ok(Some(value)), Some(_)) if !value.is_empty() => value,
        (Ok(_), Some(default)) => default.to_string(),
        (Ok(None), None) => {
            problem(format!("environment variable {name} is not set"));
            // Outside a string, an empty string keeps the text parseable to name the key.
            let placeholder = if context == Context::Bare { "\"\"" } else { "" };
            return Some((end + 1, placeholder.to_string()));
        }
    };
    let written = match context {
        Context::Literal | Context::MultiLiteral => {
            if value.contains(|c: char| c == '\'' || (c.is_control() && c != '\t')) {
                problem(format!(
                    "the value of {name} holds a ' or a control character and cannot be put in \
                     a '…' literal string; use a \"…\" string"
                ));
                String::new()
            } else {
                value
            }
        }
        _ => escape_basic(&value),
    };
    Some((end + 1, written))
}

/// Escapes a value for the inside of a TOML basic string.
fn escape_basic(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out += "\\\\",
            '"' => out += "\\\"",
            '\n' => out += "\\n",
            '\r' => out += "\\r",
            '\t' => out += "\\t",
            '\u{8}' => out += "\\b",
            '\u{c}' => out += "\\f",
            c if c.is_control() => out += &format!("\\u{:04X}", u32::from(c)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: &str = "[database]\nurl = \"sqlite://x.db\"\n";

    /// The message for a main file that must be refused.
    fn err(text: &str) -> String {
        Config::from_str(text, Path::new("trigpoll.toml"))
            .expect_err("the configuration was accepted")
            .to_string()
    }

    /// A folder with `trigpoll.toml` and `connectors/<name>` files.
    fn folder(main: &str, connectors: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("trigpoll.toml"), main).unwrap();
        if !connectors.is_empty() {
            std::fs::create_dir(dir.path().join("connectors")).unwrap();
        }
        for (name, text) in connectors {
            std::fs::write(dir.path().join("connectors").join(name), text).unwrap();
        }
        dir
    }

    fn load(dir: &tempfile::TempDir) -> Result<Config, ConfigError> {
        Config::load(&dir.path().join("trigpoll.toml"))
    }

    /// Loads one connector file; the message has the folder replaced by `DIR`.
    fn connector_err(text: &str) -> String {
        let dir = folder(MAIN, &[("c.toml", text)]);
        let message = load(&dir)
            .expect_err("the connector was accepted")
            .to_string();
        message.replace(&dir.path().display().to_string(), "DIR")
    }

    fn connector_ok(text: &str) -> ConnectorConfig {
        let dir = folder(MAIN, &[("c.toml", text)]);
        let mut config = load(&dir).unwrap();
        assert_eq!(config.connectors.len(), 1);
        config.connectors.remove(0)
    }

    fn expand_with(text: &str, vars: &[(&str, &str)]) -> Expansion {
        expand(text, |name| {
            Ok(vars
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string()))
        })
    }

    #[test]
    fn defaults_apply_to_keys_left_out() {
        let dir = folder(MAIN, &[]);
        let config = load(&dir).unwrap();
        assert_eq!(config.path, dir.path().join("trigpoll.toml"));
        assert_eq!(config.database.url.expose(), "sqlite://x.db");
        assert_eq!(config.database.schema, "trigpoll");
        assert_eq!(config.database.event_table, "trigpoll_event");
        assert_eq!(config.database.archive_table, "trigpoll_archive");
        assert_eq!(config.poll.interval, Duration::from_secs(5));
        assert_eq!(config.poll.batch_size, 500);
        assert_eq!(config.poll.key_delimiter, ":");
        assert!(config.poll.archive);
        assert_eq!(config.poll.claim_timeout, Duration::from_secs(300));
        assert_eq!(config.poll.connectors_dir, dir.path().join("connectors"));
        assert!(config.objects.is_empty());
        assert!(config.connectors.is_empty(), "the default folder is absent");
    }

    #[test]
    fn every_key_is_read() {
        let text = r#"
[database]
url = "postgres://u:p@h/db"
schema = "Events Here"
event_table = "ev"
archive_table = "ar"

[poll]
interval = "1h 30m"
batch_size = 100000
key_delimiter = "||"
archive = false
claim_timeout = "250ms"
connectors_dir = "conn.d"

[[object]]
name = "Employee"
table = "public.employee"
keys = ["emp_id", "dept_id"]
verbs = ["Delete", "Create"]
priority = 3

[[object]]
name = "Order Line"
table = "My Schema.Order.Lines"
"#;
        let dir = folder(text, &[]);
        std::fs::create_dir(dir.path().join("conn.d")).unwrap();
        let config = load(&dir).unwrap();
        assert_eq!(config.database.url.expose(), "postgres://u:p@h/db");
        assert_eq!(config.database.schema, "Events Here");
        assert_eq!(config.database.event_table, "ev");
        assert_eq!(config.database.archive_table, "ar");
        assert_eq!(config.poll.interval, Duration::from_secs(5400));
        assert_eq!(config.poll.batch_size, 100_000);
        assert_eq!(config.poll.key_delimiter, "||");
        assert!(!config.poll.archive);
        assert_eq!(config.poll.claim_timeout, Duration::from_millis(250));
        assert_eq!(config.poll.connectors_dir, dir.path().join("conn.d"));

        let [employee, line] = &config.objects[..] else {
            panic!("two objects expected: {:?}", config.objects)
        };
        assert_eq!(employee.name, "Employee");
        assert_eq!(
            employee.table,
            TableName {
                schema: Some("public".into()),
                name: "employee".into()
            }
        );
        assert_eq!(
            employee.keys,
            Some(vec!["emp_id".to_string(), "dept_id".to_string()])
        );
        assert_eq!(employee.verbs, [Verb::Delete, Verb::Create]);
        assert_eq!(employee.priority, 3);

        assert_eq!(line.name, "Order Line");
        assert_eq!(line.table.schema.as_deref(), Some("My Schema"));
        assert_eq!(
            line.table.name, "Order.Lines",
            "split at the first dot only"
        );
        assert_eq!(line.keys, None);
        assert_eq!(line.verbs, [Verb::Create, Verb::Update, Verb::Delete]);
        assert_eq!(line.priority, 0);
    }

    #[test]
    fn a_table_without_schema_has_none() {
        let text = format!("{MAIN}[[object]]\nname = \"A\"\ntable = \"Employee\"\n");
        let dir = folder(&text, &[]);
        let config = load(&dir).unwrap();
        assert_eq!(
            config.objects[0].table,
            TableName {
                schema: None,
                name: "Employee".into()
            }
        );
    }

    #[test]
    fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trigpoll.toml");
        let message = Config::load(&path).unwrap_err().to_string();
        assert_eq!(
            message,
            format!("{}: cannot read: No such file or directory", path.display())
        );
    }

    #[test]
    fn main_file_errors_name_file_line_and_key() {
        let object = |body: &str| format!("{MAIN}[[object]]\n{body}");
        let cases: Vec<(String, &str)> = vec![
            (
                format!("{MAIN}[poll]\nbatch_size = \"x\"\n"),
                "trigpoll.toml:4:14: poll.batch_size: invalid type: string \"x\", expected an integer",
            ),
            (
                format!("{MAIN}[poll]\nbatch_size = 0\n"),
                "trigpoll.toml:4:14: poll.batch_size: 0 is out of range: must be between 1 and 100000",
            ),
            (
                format!("{MAIN}[poll]\nbatch_size = 100001\n"),
                "trigpoll.toml:4:14: poll.batch_size: 100001 is out of range: must be between 1 and 100000",
            ),
            (
                format!("{MAIN}[poll]\ninterval = \"5x\"\n"),
                "trigpoll.toml:4:12: poll.interval: invalid duration \"5x\": unknown time unit \"x\", \
                 supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)",
            ),
            (
                format!("{MAIN}[poll]\ninterval = 5\n"),
                "trigpoll.toml:4:12: poll.interval: invalid type: integer `5`, expected a duration such as \"5s\" or \"250ms\"",
            ),
            (
                format!("{MAIN}[poll]\nclaim_timeout = \"0s\"\n"),
                "trigpoll.toml:4:17: poll.claim_timeout: must be greater than zero",
            ),
            (
                format!("{MAIN}[poll]\nkey_delimiter = \"\"\n"),
                "trigpoll.toml:4:17: poll.key_delimiter: must not be empty",
            ),
            (
                format!("{MAIN}[poll]\nkey_delimiter = \"=\"\n"),
                "trigpoll.toml:4:17: poll.key_delimiter: \"=\" must not contain `=` or `%`",
            ),
            (
                format!("{MAIN}[poll]\nkey_delimiter = \"a%\"\n"),
                "trigpoll.toml:4:17: poll.key_delimiter: \"a%\" must not contain `=` or `%`",
            ),
            (
                format!("{MAIN}[poll]\narchive = \"yes\"\n"),
                "trigpoll.toml:4:11: poll.archive: invalid type: string \"yes\", expected a boolean",
            ),
            (
                format!("{MAIN}[poll]\nbatchsize = 5\n"),
                "trigpoll.toml:4:1: poll.batchsize: unknown field `batchsize`, expected one of \
                 `interval`, `batch_size`, `key_delimiter`, `archive`, `claim_timeout`, `connectors_dir`",
            ),
            (
                format!("{MAIN}schemas = \"x\"\n"),
                "trigpoll.toml:3:1: database.schemas: unknown field `schemas`, expected one of \
                 `url`, `schema`, `event_table`, `archive_table`",
            ),
            (
                format!("{MAIN}[polling]\n"),
                "trigpoll.toml:3:2: polling: unknown field `polling`, expected one of `database`, `poll`, `object`",
            ),
            (
                format!("{MAIN}schema = \" \"\n"),
                "trigpoll.toml:3:10: database.schema: must not be empty",
            ),
            (
                "[poll]\nbatch_size = 5\n".to_string(),
                "trigpoll.toml:1:1: database: missing field `database`",
            ),
            (
                "\n[database]\nschema = \"x\"\n".to_string(),
                "trigpoll.toml:2:1: database.url: missing field `url`",
            ),
            (
                "[database]\nurl = \"\"\n".to_string(),
                "trigpoll.toml:2:7: database.url: must not be empty",
            ),
            (
                "[database]\nurl = 12345\n".to_string(),
                "trigpoll.toml:2:7: database.url: invalid type: expected a string (value hidden)",
            ),
            (
                format!("{MAIN}[poll]\nbatch_size = 5 5\n"),
                "trigpoll.toml:4:16: expected newline, `#`",
            ),
            (
                object("name = \"A\"\n"),
                "trigpoll.toml:3:1: object[0].table: missing field `table`",
            ),
            (
                object("table = \"t\"\n"),
                "trigpoll.toml:3:1: object[0].name: missing field `name`",
            ),
            (
                object("name = \"  \"\ntable = \"t\"\n"),
                "trigpoll.toml:4:8: object[0].name: must not be empty",
            ),
            (
                object("name = \"A\"\ntable = \"t\"\ncolumns = [\"a\"]\n"),
                "trigpoll.toml:6:1: object[0].columns: unknown field `columns`, expected one of \
                 `name`, `table`, `keys`, `verbs`, `priority`, `coalesce`",
            ),
            (
                object("name = \"A\"\ntable = \"public.\"\n"),
                "trigpoll.toml:5:9: object[0].table: \"public.\" is not of the form schema.table or table",
            ),
            (
                object("name = \"A\"\ntable = \".emp\"\n"),
                "trigpoll.toml:5:9: object[0].table: \".emp\" is not of the form schema.table or table",
            ),
            (
                object("name = \"A\"\ntable = \"t\"\nkeys = []\n"),
                "trigpoll.toml:6:8: object[0].keys: must list at least one column; leave it out to use the primary key",
            ),
            (
                object("name = \"A\"\ntable = \"t\"\nkeys = [\"a\",\n  \"\"]\n"),
                "trigpoll.toml:7:3: object[0].keys[1]: must not be empty",
            ),
            (
                object("name = \"A\"\ntable = \"t\"\nkeys = [\"a\", \"b\", \"a\"]\n"),
                "trigpoll.toml:6:19: object[0].keys[2]: column \"a\" is listed twice",
            ),
            (
                object("name = \"A\"\ntable = \"t\"\nverbs = []\n"),
                "trigpoll.toml:6:9: object[0].verbs: must list at least one verb; leave it out for all three",
            ),
            (
                object("name = \"A\"\ntable = \"t\"\nverbs = [\"Create\",\n  \"create\"]\n"),
                "trigpoll.toml:7:3: object[0].verbs[1]: unknown variant `create`, expected one of \
                 `Create`, `Update`, `Delete`",
            ),
            (
                object("name = \"A\"\ntable = \"t\"\nverbs = [\"Delete\", \"Delete\"]\n"),
                "trigpoll.toml:6:20: object[0].verbs[1]: verb Delete is listed twice",
            ),
            (
                object("name = \"A\"\ntable = \"t\"\npriority = -1\n"),
                "trigpoll.toml:6:12: object[0].priority: -1 is out of range: must be at least 0",
            ),
            (
                object("name = \"A\"\ntable = \"t\"\npriority = \"high\"\n"),
                "trigpoll.toml:6:12: object[0].priority: invalid type: string \"high\", expected an integer",
            ),
            (
                object("name = \"A\"\ntable = \"a\"\n[[object]]\nname = \"A\"\ntable = \"b\"\n"),
                "trigpoll.toml:7:8: object[1].name: object \"A\" is already defined by object[0]",
            ),
            (
                object("name = \"A\"\ntable = \"s.t\"\n[[object]]\nname = \"B\"\ntable = \"s.t\"\n"),
                "trigpoll.toml:8:9: object[1].table: table s.t is already bound to object[0]",
            ),
            (
                format!("{MAIN}[poll]\nconnectors_dir = \"trigpoll-no-such-dir\"\n"),
                "trigpoll.toml:4:18: poll.connectors_dir: cannot read folder trigpoll-no-such-dir: \
                 No such file or directory",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(err(&text), expected, "for:\n{text}");
        }
    }

    #[test]
    fn variables_defaults_and_dollars_expand() {
        let vars = [("T_HOST", "db.example"), ("T_EMPTY", ""), ("T_NUM", "42")];
        let cases = [
            ("a = \"${T_HOST}\"", "a = \"db.example\""),
            ("a = \"${T_HOST:-other}\"", "a = \"db.example\""),
            ("a = \"${T_UNSET:-other}\"", "a = \"other\""),
            ("a = \"${T_EMPTY:-other}\"", "a = \"other\""),
            ("a = \"${T_EMPTY}\"", "a = \"\""),
            ("a = \"${T_UNSET:-}\"", "a = \"\""),
            ("a = \"$${T_HOST} $5 $\"", "a = \"${T_HOST} $5 $\""),
            ("a = 'x${T_HOST}'", "a = 'xdb.example'"),
            (
                "a = \"\"\"\n${T_HOST}\"\"\"",
                "a = \"\"\"\ndb.example\"\"\"",
            ),
            ("a = 1 # ${T_UNSET} $$", "a = 1 # ${T_UNSET} $$"),
            (
                "a = \"#\" # ${T_UNSET}\nb = \"${T_HOST}\"",
                "a = \"#\" # ${T_UNSET}\nb = \"db.example\"",
            ),
            ("a = \"\\\"${T_HOST}\"", "a = \"\\\"db.example\""),
            ("n = ${T_NUM}", "n = 42"),
        ];
        for (text, expected) in cases {
            let expansion = expand_with(text, &vars);
            assert!(
                expansion.problems.is_empty(),
                "{text}: {}",
                expansion.problems[0].message
            );
            assert_eq!(expansion.text, expected, "for {text}");
        }
    }

    #[test]
    fn malformed_references_are_refused() {
        let cases = [
            (
                "a = \"${T_X\"",
                "unterminated ${ (no closing } on this line; write $$ for a literal $)",
            ),
            (
                "a = \"${1X}\"",
                "invalid variable reference ${1X}: expected ${NAME} or ${NAME:-default}",
            ),
            (
                "a = \"${}\"",
                "invalid variable reference ${}: expected ${NAME} or ${NAME:-default}",
            ),
            (
                "a = \"${T_X-d}\"",
                "invalid variable reference ${T_X-d}: expected ${NAME} or ${NAME:-default}",
            ),
            (
                "a = \"${T_UNSET}\"",
                "environment variable T_UNSET is not set",
            ),
        ];
        for (text, expected) in cases {
            let expansion = expand_with(text, &[]);
            let messages: Vec<_> = expansion.problems.iter().map(|p| &p.message).collect();
            assert_eq!(messages, [expected], "for {text}");
        }
    }

    #[test]
    fn values_are_escaped_for_basic_strings() {
        let value = "p\"a\\ss\nword\t\u{1}";
        std::env::set_var("TRIGPOLL_TEST_ESCAPED_URL", value);
        let text = "[database]\nurl = \"${TRIGPOLL_TEST_ESCAPED_URL}\"\n[poll]\nbatch_size = 0\n";
        let message = err(text);
        assert_eq!(
            message,
            "trigpoll.toml:4:14: poll.batch_size: 0 is out of range: must be between 1 and 100000",
            "the value must not add lines"
        );
        let dir = folder(&text.replace("batch_size = 0", ""), &[]);
        assert_eq!(load(&dir).unwrap().database.url.expose(), value);
    }

    #[test]
    fn literal_strings_take_values_verbatim_or_refuse_them() {
        let expansion = expand_with("a = 'C:${T_DIR}'", &[("T_DIR", "\\temp")]);
        assert!(expansion.problems.is_empty());
        assert_eq!(expansion.text, "a = 'C:\\temp'");
        let expansion = expand_with("a = 'x'\nb = '${T_Q}'", &[("T_Q", "it's")]);
        let messages: Vec<_> = expansion.problems.iter().map(|p| &p.message).collect();
        assert_eq!(
            messages,
            [
                "the value of T_Q holds a ' or a control character and cannot be put in a '…' \
              literal string; use a \"…\" string"
            ]
        );
    }

    #[test]
    fn an_unset_variable_names_file_line_and_key() {
        assert_eq!(
            err("[database]\nurl = \"${TRIGPOLL_TEST_UNSET_URL}\"\n"),
            "trigpoll.toml:2:8: database.url: environment variable TRIGPOLL_TEST_UNSET_URL is not set"
        );
        assert_eq!(
            err(&format!("{MAIN}[poll]\nbatch_size = ${{TRIGPOLL_TEST_UNSET_BATCH}}\n")),
            "trigpoll.toml:4:14: poll.batch_size: environment variable TRIGPOLL_TEST_UNSET_BATCH is not set"
        );
        assert_eq!(
            connector_err("id = \"a\"\nsubscribe = [\"*.*\",\n \"${TRIGPOLL_TEST_UNSET_SUB}\"]\n[sink]\ntype = \"stdout\"\n"),
            "DIR/connectors/c.toml:3:3: subscribe[1]: environment variable TRIGPOLL_TEST_UNSET_SUB is not set"
        );
    }

    #[test]
    fn a_set_variable_is_used_and_columns_count_in_the_file() {
        std::env::set_var("TRIGPOLL_TEST_SET_DELIM", "|");
        assert_eq!(
            err("poll = { key_delimiter = \"${TRIGPOLL_TEST_SET_DELIM}\", batch_size = 0 }\n"),
            "trigpoll.toml:1:69: poll.batch_size: 0 is out of range: must be between 1 and 100000"
        );
        let dir = folder(
            &format!("{MAIN}[poll]\nkey_delimiter = \"${{TRIGPOLL_TEST_SET_DELIM}}\"\n"),
            &[],
        );
        assert_eq!(load(&dir).unwrap().poll.key_delimiter, "|");
    }

    #[test]
    fn connectors_load_in_file_name_order() {
        let dir = folder(
            MAIN,
            &[
                ("b.toml", "id = \"second\"\nsubscribe = [\"*.*\"]\n[sink]\ntype = \"stdout\"\n"),
                ("a.toml", "id = \"first\"\nsubscribe = [\"Employee.*\", \"*.Delete\"]\n[sink]\ntype = \"stdout\"\nmax_attempts = 3\nbackoff = \"250ms\"\n"),
                ("notes.txt", "not a connector"),
            ],
        );
        let config = load(&dir).unwrap();
        let ids: Vec<_> = config.connectors.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["first", "second"]);
        let first = &config.connectors[0];
        assert_eq!(first.source, dir.path().join("connectors").join("a.toml"));
        let patterns: Vec<_> = first.subscribe.iter().map(ToString::to_string).collect();
        assert_eq!(patterns, ["Employee.*", "*.Delete"]);
        assert!(matches!(first.sink, SinkConfig::Stdout));
        assert_eq!(first.max_attempts, 3);
        assert_eq!(first.backoff, Duration::from_millis(250));
        let second = &config.connectors[1];
        assert_eq!(second.max_attempts, 10);
        assert_eq!(second.backoff, Duration::from_secs(1));
    }

    #[test]
    fn a_configured_connectors_dir_is_relative_to_the_config_file() {
        let dir = folder(&format!("{MAIN}[poll]\nconnectors_dir = \"conn.d\"\n"), &[]);
        std::fs::create_dir(dir.path().join("conn.d")).unwrap();
        std::fs::write(
            dir.path().join("conn.d/x.toml"),
            "id = \"x\"\nsubscribe = [\"*\"]\n[sink]\ntype = \"stdout\"\n",
        )
        .unwrap();
        let config = load(&dir).unwrap();
        assert_eq!(config.connectors[0].id, "x");
    }

    #[test]
    fn file_sink_paths_are_relative_to_the_connector_file() {
        let dir = folder(
            MAIN,
            &[(
                "f.toml",
                "id = \"f\"\nsubscribe = [\"*.*\"]\n[sink]\ntype = \"file\"\npath = \"../out.ndjson\"\n",
            )],
        );
        let config = load(&dir).unwrap();
        let SinkConfig::File { path } = &config.connectors[0].sink else {
            panic!("a file sink expected")
        };
        assert_eq!(path, &dir.path().join("connectors").join("../out.ndjson"));

        let absolute = std::env::temp_dir().join("trigpoll-abs.ndjson");
        let connector = connector_ok(&format!(
            "id = \"f\"\nsubscribe = [\"*.*\"]\n[sink]\ntype = \"file\"\npath = {:?}\n",
            absolute.display().to_string()
        ));
        let SinkConfig::File { path } = connector.sink else {
            panic!("a file sink expected")
        };
        assert_eq!(path, absolute);
    }

    #[test]
    fn http_sinks_have_defaults() {
        let connector = connector_ok(
            "id = \"hr\"\nsubscribe = [\"*.*\"]\n[sink]\ntype = \"http\"\nurl = \"https://h/e\"\nsecret = \"s3cr3t\"\n",
        );
        let SinkConfig::Http(http) = connector.sink else {
            panic!("an http sink expected")
        };
        assert_eq!(http.url, "https://h/e");
        assert_eq!(http.client_id, "trigpoll");
        assert_eq!(http.secret.expose(), "s3cr3t");
        assert_eq!(http.timeout, Duration::from_secs(10));
        assert_eq!(http.concurrency, 8);
        assert_eq!(connector.max_attempts, 10);
        assert_eq!(connector.backoff, Duration::from_secs(1));

        let connector = connector_ok(
            "id = \"hr\"\nsubscribe = [\"*.*\"]\n[sink]\ntype = \"http\"\nurl = \"http://h/e\"\n\
             secret = \"s\"\nclient_id = \"me\"\ntimeout = \"2s\"\nconcurrency = 256\n",
        );
        let SinkConfig::Http(http) = connector.sink else {
            panic!("an http sink expected")
        };
        assert_eq!(http.client_id, "me");
        assert_eq!(http.timeout, Duration::from_secs(2));
        assert_eq!(http.concurrency, 256);
    }

    #[test]
    fn duplicate_connector_ids_name_both_files() {
        let connector = "id = \"same\"\nsubscribe = [\"*.*\"]\n[sink]\ntype = \"stdout\"\n";
        let dir = folder(MAIN, &[("a.toml", connector), ("b.toml", connector)]);
        let message = load(&dir).unwrap_err().to_string();
        let connectors = dir.path().join("connectors");
        assert_eq!(
            message,
            format!(
                "{}:1:6: id: connector id \"same\" is already used by {}",
                connectors.join("b.toml").display(),
                connectors.join("a.toml").display()
            )
        );
    }

    #[test]
    fn connector_errors_name_file_line_and_key() {
        let head = "id = \"c\"\nsubscribe = [\"*.*\"]\n[sink]\n";
        let http = format!("{head}type = \"http\"\nurl = \"http://h\"\nsecret = \"s\"\n");
        let cases: Vec<(String, &str)> = vec![
            (
                "id = \"a b\"\nsubscribe = [\"*.*\"]\n[sink]\ntype = \"stdout\"\n".into(),
                "DIR/connectors/c.toml:1:6: id: connector id \"a b\" must be made of letters, digits, `_`, `.` and `-`",
            ),
            (
                "subscribe = [\"*.*\"]\n[sink]\ntype = \"stdout\"\n".into(),
                "DIR/connectors/c.toml:1:1: id: missing field `id`",
            ),
            (
                "id = \"c\"\nsubscribe = []\n[sink]\ntype = \"stdout\"\n".into(),
                "DIR/connectors/c.toml:2:13: subscribe: must list at least one pattern, e.g. \"Employee.*\"",
            ),
            (
                "id = \"c\"\nsubscribe = [\n  \"Employee.*\",\n  \"Employee\",\n]\n[sink]\ntype = \"stdout\"\n".into(),
                "DIR/connectors/c.toml:4:3: subscribe[1]: subscription \"Employee\" is not of the form Object.Verb",
            ),
            (
                "id = \"c\"\nsubscribe = [\"*.*\"]\n".into(),
                "DIR/connectors/c.toml:1:1: sink: missing field `sink`",
            ),
            (
                "id = \"c\"\nsubscribe = [\"*.*\"]\nname = \"x\"\n[sink]\ntype = \"stdout\"\n".into(),
                "DIR/connectors/c.toml:3:1: name: unknown field `name`, expected one of `id`, `subscribe`, `sink`",
            ),
            (
                format!("{head}type = \"kafka\"\n"),
                "DIR/connectors/c.toml:4:8: sink.type: unknown variant `kafka`, expected one of `stdout`, `file`, `http`",
            ),
            (
                format!("{head}path = \"x\"\n"),
                "DIR/connectors/c.toml:3:1: sink.type: missing field `type`",
            ),
            (
                format!("{head}type = \"stdout\"\nretries = 3\n"),
                "DIR/connectors/c.toml:5:1: sink.retries: unknown field `retries`, expected one of `type`, \
                 `path`, `url`, `client_id`, `secret`, `timeout`, `concurrency`, `max_attempts`, `backoff`",
            ),
            (
                format!("{http}path = \"out.ndjson\"\n"),
                "DIR/connectors/c.toml:7:8: sink.path: `path` is not a key of http sinks (their keys: \
                 type, url, client_id, secret, timeout, concurrency, max_attempts, backoff)",
            ),
            (
                format!("{head}type = \"file\"\npath = \"x\"\nurl = \"http://h\"\n"),
                "DIR/connectors/c.toml:6:7: sink.url: `url` is not a key of file sinks (their keys: \
                 type, path, max_attempts, backoff)",
            ),
            (
                format!("{head}type = \"stdout\"\ntimeout = \"1s\"\n"),
                "DIR/connectors/c.toml:5:11: sink.timeout: `timeout` is not a key of stdout sinks \
                 (their keys: type, max_attempts, backoff)",
            ),
            (
                format!("{head}type = \"file\"\n"),
                "DIR/connectors/c.toml:4:8: sink.path: missing field `path`, required by file sinks",
            ),
            (
                format!("{head}type = \"http\"\nsecret = \"s\"\n"),
                "DIR/connectors/c.toml:4:8: sink.url: missing field `url`, required by http sinks",
            ),
            (
                format!("{head}type = \"http\"\nurl = \"http://h\"\n"),
                "DIR/connectors/c.toml:4:8: sink.secret: missing field `secret`, required by http sinks",
            ),
            (
                format!("{head}type = \"http\"\nurl = \"ftp://u:pw@h\"\nsecret = \"s\"\n"),
                "DIR/connectors/c.toml:5:7: sink.url: must start with http:// or https://",
            ),
            (
                format!("{http}concurrency = 0\n"),
                "DIR/connectors/c.toml:7:15: sink.concurrency: 0 is out of range: must be between 1 and 256",
            ),
            (
                format!("{http}concurrency = 257\n"),
                "DIR/connectors/c.toml:7:15: sink.concurrency: 257 is out of range: must be between 1 and 256",
            ),
            (
                format!("{http}timeout = \"0s\"\n"),
                "DIR/connectors/c.toml:7:11: sink.timeout: must be greater than zero",
            ),
            (
                format!("{http}client_id = \"\"\n"),
                "DIR/connectors/c.toml:7:13: sink.client_id: must not be empty",
            ),
            (
                format!("{head}type = \"stdout\"\nmax_attempts = 0\n"),
                "DIR/connectors/c.toml:5:16: sink.max_attempts: 0 is out of range: must be at least 1",
            ),
            (
                format!("{head}type = \"stdout\"\nbackoff = \"soon\"\n"),
                "DIR/connectors/c.toml:5:11: sink.backoff: invalid duration \"soon\": expected number at 0",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(connector_err(&text), expected, "for:\n{text}");
        }
    }

    #[test]
    fn secrets_stay_out_of_messages_and_debug_output() {
        let message = connector_err(
            "id = \"c\"\nsubscribe = [\"*.*\"]\n[sink]\ntype = \"http\"\nurl = \"http://h\"\nsecret = 987654321\n",
        );
        assert_eq!(
            message,
            "DIR/connectors/c.toml:6:10: sink.secret: invalid type: expected a string (value hidden)"
        );

        let main = "[database]\nurl = \"postgres://u:db-password@h/db\"\n";
        let dir = folder(
            main,
            &[(
                "c.toml",
                "id = \"c\"\nsubscribe = [\"*.*\"]\n[sink]\ntype = \"http\"\nurl = \"http://h\"\nsecret = \"hmac-key\"\n",
            )],
        );
        let debug = format!("{:?}", load(&dir).unwrap());
        assert!(!debug.contains("db-password"), "{debug}");
        assert!(!debug.contains("hmac-key"), "{debug}");
    }

    #[test]
    fn the_example_configuration_loads() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let config = Config::load(&root.join("config.example.toml")).unwrap();
        let objects: Vec<_> = config
            .objects
            .iter()
            .map(|o| (o.name.as_str(), o.table.to_string(), o.keys.clone()))
            .collect();
        assert_eq!(
            objects,
            [
                (
                    "Employee",
                    "public.employee".to_string(),
                    Some(vec!["emp_id".to_string()])
                ),
                ("Department", "public.department".to_string(), None),
            ]
        );
        let connectors: Vec<_> = config.connectors.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(connectors, ["audit-file", "hr-sync", "console"]);
        assert!(matches!(
            &config.connectors[0].sink,
            SinkConfig::File { path } if *path == root.join("connectors/../trigpoll-events.ndjson")
        ));
        assert!(matches!(config.connectors[1].sink, SinkConfig::Http(_)));
        assert!(matches!(config.connectors[2].sink, SinkConfig::Stdout));
    }
}

//! The properties the fuzz targets check, one function per target: each takes the fuzzer's
//! bytes and panics when a property does not hold. `tests/fuzz_corpus.rs` in the main crate
//! runs the committed corpora through these same functions on stable Rust.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use trigpoll::config::{Config, TableName, Template};
use trigpoll::fuzzing::{self, Backend};
use trigpoll::key;
use trigpoll::subscription::Subscription;
use trigpoll::table::{Column, ColumnKind, Partitioning, TableInfo};

type JsonObject = serde_json::Map<String, serde_json::Value>;

/// The smallest configuration that is accepted.
const MAIN: &str = "[database]\nurl = \"sqlite://fuzz.db\"\n";

/// Delimiters people configure; the first input byte picks one, or takes the delimiter from the
/// input.
const DELIMITERS: [&str; 6] = [":", "|", "::", "§", ", ", "\t"];

/// A TOML basic string holding `text` exactly.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            c if c.is_control() => out += &format!("\\u{:04X}", u32::from(c)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn config_path() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("trigpoll-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("connectors")).expect("a temporary folder");
        // What `${…}` references in the seeds expand to: quotes, a backslash and a newline
        // that must stay inside their string, and an empty value that takes a default.
        std::env::set_var("TRIGPOLL_FUZZ_TEXT", "a\"b'c\\d\ne");
        std::env::set_var("TRIGPOLL_FUZZ_EMPTY", "");
        std::env::set_var("TRIGPOLL_FUZZ_NUMBER", "42");
        dir.join("trigpoll.toml")
    })
}

/// The main file of a configuration with `poll` added, parsed.
fn with_poll(poll: &str) -> Result<Config, trigpoll::config::ConfigError> {
    Config::from_str(&format!("{MAIN}[poll]\n{poll}\n"), config_path())
}

/// Whether the configuration accepts `delimiter` as `poll.key_delimiter`.
fn accepted_delimiter(delimiter: &str) -> bool {
    with_poll(&format!("key_delimiter = {}", toml_string(delimiter))).is_ok()
}

/// Object keys: every string either parses or is refused with a reason; what parses was written
/// with well-formed escapes and parses again from its encoding; any pairs encode to a key that
/// parses back to them, for every delimiter the configuration accepts.
pub fn key(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let (delimiter, text) = match DELIMITERS.get(usize::from(mode % 8)) {
        Some(d) => (d.to_string(), text.as_ref()),
        None => match text.split_once('\u{0}') {
            Some((d, text)) if accepted_delimiter(d) => (d.to_string(), text),
            _ => return,
        },
    };

    match key::decode(text, &delimiter) {
        Ok(pairs) => {
            let b = text.as_bytes();
            for (i, _) in text.match_indices('%') {
                assert!(
                    b.get(i + 1..i + 3)
                        .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)),
                    "{text:?} parsed although its escape at byte {i} is not two hex digits"
                );
            }
            let encoded = key::encode(&pairs, &delimiter);
            assert_eq!(
                key::decode(&encoded, &delimiter).as_ref(),
                Ok(&pairs),
                "{text:?} parsed, its encoding {encoded:?} does not parse to the same"
            );
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }

    // The same text as pairs: \u{1} separates pairs, \u{2} a name from its value.
    let pairs: Vec<key::KeyPair> = text
        .split('\u{1}')
        .map(|part| match part.split_once('\u{2}') {
            Some((name, value)) => (name.to_string(), Some(value.to_string())),
            None => (part.to_string(), None),
        })
        .filter(|(name, _)| !name.is_empty())
        .collect();
    if pairs.is_empty() {
        return;
    }
    let encoded = key::encode(&pairs, &delimiter);
    assert_eq!(
        key::decode(&encoded, &delimiter),
        Ok(pairs),
        "pairs encoded with delimiter {delimiter:?} as {encoded:?} do not parse back"
    );
}

/// The configuration: the main file's text, then after a NUL byte a connector file's. Never a
/// panic; a refusal of either file names that file, its line and column and, for a file that
/// is valid TOML, the key.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (main, connector) = match text.split_once('\u{0}') {
        Some((main, connector)) => (main, Some(connector)),
        None => (text.as_ref(), None),
    };
    let path = config_path();
    let connector_path = path.with_file_name("connectors").join("fuzz.toml");
    match connector {
        Some(connector) => std::fs::write(&connector_path, connector).expect("written"),
        None => {
            let _ = std::fs::remove_file(&connector_path);
        }
    }
    let Err(e) = Config::from_str(main, path) else {
        return;
    };
    assert!(!e.message.is_empty(), "{e:?}");
    let (written, file_text) = if e.file == path {
        (true, main)
    } else if e.file == connector_path {
        (true, connector.unwrap_or_default())
    } else {
        // A `connectors_dir` of the input elsewhere: files not the fuzzer's.
        (false, "")
    };
    if !written {
        return;
    }
    let (Some(line), Some(_)) = (e.line, e.column) else {
        panic!("a refusal without a line and column: {e}");
    };
    assert!(
        line <= file_text.lines().count().max(1) + 1,
        "line {line} of a file of fewer lines: {e}"
    );
    let located = format!("{}:{line}:", e.file.display());
    assert!(e.to_string().starts_with(&located), "{e}");
    let plain_toml = !file_text.contains('$') && file_text.parse::<toml::Table>().is_ok();
    assert!(
        e.key.is_some() || !plain_toml,
        "a refusal of valid TOML names no key: {e}"
    );
}

/// Subscription patterns, broker name templates and configured table names: each parses or is
/// refused with a reason, and what parses is written back as text that parses to the same.
pub fn names(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();

    match text.parse::<Subscription>() {
        Ok(sub) => {
            let again = sub.to_string();
            assert_eq!(again.parse::<Subscription>().as_ref(), Ok(&sub), "{text:?}");
            let object = sub.object().unwrap_or("AnyObject");
            let verb = sub.verb().unwrap_or("AnyVerb");
            assert!(
                sub.matches(object, verb),
                "{text:?} does not match its own names"
            );
        }
        Err(message) => assert!(!message.is_empty()),
    }

    match Template::parse(text) {
        Ok(template) => {
            let again = template.to_string();
            assert_eq!(Template::parse(&again).as_ref(), Ok(&template), "{text:?}");
            let name = template.render("Employee", "Create", "out");
            if !text.contains(['{', '}']) {
                assert_eq!(name, text);
            }
            template.placeholders_are_tokens('.');
            template.fill("*");
        }
        Err(message) => assert!(!message.is_empty()),
    }

    if let Some(table) = TableName::parse(text) {
        assert!(!table.name.is_empty() && table.schema.as_ref().is_none_or(|s| !s.is_empty()));
        let again = table.to_string();
        assert_eq!(
            TableName::parse(&again).as_ref(),
            Some(&table),
            "{text:?} as {again:?}"
        );
    }
}

fn column(name: &str, sql_type: &str, kind: ColumnKind) -> Column {
    Column {
        name: name.to_string(),
        sql_type: sql_type.to_string(),
        nullable: true,
        kind,
    }
}

/// A table with a column of each kind the backend's images adjust, typed as the backend
/// describes them; `rendered`: only columns whose JSON form PostgreSQL already renders right.
fn table(backend: Backend, rendered: bool) -> TableInfo {
    use ColumnKind::*;
    let types: [(&str, &str, ColumnKind); 7] = match backend {
        Backend::Postgres => [
            ("id", "integer", Integer),
            ("name", "text", Plain),
            ("salary", "numeric(10,2)", Plain),
            ("active", "boolean", Plain),
            ("doc", "jsonb", Plain),
            ("photo", "bytea", Bytes),
            ("hired", "timestamp without time zone", NaiveTimestamp),
        ],
        Backend::Mysql => [
            ("id", "int(11)", Integer),
            ("name", "varchar(40)", Plain),
            ("salary", "decimal(10,2)", Plain),
            ("active", "tinyint(1)", Plain),
            ("doc", "json", Plain),
            ("photo", "blob", Bytes),
            ("hired", "timestamp(6)", NaiveTimestamp),
        ],
        Backend::Sqlite => [
            ("id", "INTEGER", Plain),
            ("name", "TEXT", Plain),
            ("salary", "DECIMAL(10,2)", Plain),
            ("active", "BOOLEAN", Plain),
            ("doc", "JSON", Plain),
            ("photo", "BLOB", Bytes),
            ("hired", "TIMESTAMP", NaiveTimestamp),
        ],
    };
    let count = if rendered { 5 } else { types.len() };
    TableInfo {
        name: TableName {
            schema: None,
            name: "employee".into(),
        },
        columns: types[..count]
            .iter()
            .map(|(name, sql_type, kind)| column(name, sql_type, *kind))
            .collect(),
        primary_key: vec!["id".into()],
        partitioning: Partitioning::None,
    }
}

/// Captured row images and `changes` of each backend: never a panic; an image becomes an object
/// with the image's columns, changes become an object of changed columns.
pub fn rows(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let backend = Backend::ALL[usize::from(mode % 3)];
    let table = table(backend, mode & 0x10 != 0);
    let text = String::from_utf8_lossy(rest);
    if mode & 0x20 == 0 {
        let Ok(image) = fuzzing::row_image(backend, &table, &text) else {
            return;
        };
        let got: JsonObject =
            serde_json::from_str(image.get()).expect("an image becomes a JSON object");
        let written: JsonObject = serde_json::from_str(&text).expect("the image was an object");
        assert!(
            got.keys().eq(written.keys()),
            "{backend:?}: {text:?} became {image}"
        );
    } else if let Ok(changes) = fuzzing::changes(backend, &table, &text) {
        let got: JsonObject =
            serde_json::from_str(changes.get()).expect("changes become a JSON object");
        for (column, change) in &got {
            if let serde_json::Value::Object(change) = change {
                let sides = change.keys().filter(|k| *k == "old" || *k == "new").count();
                assert!(
                    sides > 0 || !text.trim_start().starts_with('['),
                    "{backend:?}: {column} of two images has neither side: {changes}"
                );
            }
        }
    }
}

/// `Retry-After` values and the configuration's durations: never a panic; delta-seconds and
/// HTTP dates are read, a duration the configuration accepts is the one humantime reads and is
/// written back as text that reads the same; a refused one names its key.
pub fn durations(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();

    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let after = fuzzing::retry_after(text, now);
    let trimmed = text.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        assert!(after.is_some(), "delta-seconds {text:?} ignored");
    }
    if let Ok(at) = httpdate::parse_http_date(trimmed) {
        let expected = at.duration_since(now).unwrap_or(Duration::ZERO);
        assert_eq!(after, Some(expected), "HTTP date {text:?}");
    }
    if let Some(after) = after {
        // What a connector waits: the backoff with this floor, never beyond its cap.
        assert!(SystemTime::now()
            .checked_add(after.min(Duration::from_secs(3600)))
            .is_some());
    }

    let parsed = humantime::parse_duration(text);
    if let Ok(duration) = parsed {
        let written = humantime::format_duration(duration).to_string();
        assert_eq!(
            humantime::parse_duration(&written),
            Ok(duration),
            "{text:?} written as {written:?}"
        );
    }
    for key in ["interval", "claim_timeout"] {
        match with_poll(&format!("{key} = {}", toml_string(text))) {
            Ok(config) => {
                let got = match key {
                    "interval" => config.poll.interval,
                    _ => config.poll.claim_timeout,
                };
                // A `${…}` in the value is expanded first: then the text read is another.
                if !text.contains('$') {
                    assert_eq!(parsed.as_ref().ok(), Some(&got), "{key} = {text:?}");
                }
            }
            Err(e) => assert_eq!(
                e.key.as_deref(),
                Some(format!("poll.{key}").as_str()),
                "{e}"
            ),
        }
    }
}

//! Connector files: one TOML file per connector in `connectors_dir`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::raw::*;
use super::source::Source;
use super::*;
use crate::subscription::Subscription;

/// Loads every `*.toml` file of `dir`, sorted by file name. `dir_span` is where the main file
/// sets `connectors_dir`; without it the folder is the default one and may be absent.
pub(super) fn connectors(
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
pub(super) fn connector(
    source: &Source,
    file: &Path,
) -> Result<(ConnectorConfig, Range<usize>), ConfigError> {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConnector {
    pub(super) id: Spanned<ConnectorId>,
    pub(super) subscribe: Spanned<Vec<Spanned<String>>>,
    pub(super) sink: RawSink,
}

/// Every key of every sink type; [`connector`] refuses the ones foreign to the chosen type.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSink {
    #[serde(rename = "type")]
    pub(super) kind: Spanned<SinkKind>,
    pub(super) path: Option<Spanned<NonBlank>>,
    pub(super) url: Option<Spanned<NonBlank>>,
    pub(super) client_id: Option<Spanned<NonBlank>>,
    pub(super) secret: Option<Spanned<RawSecret>>,
    pub(super) timeout: Option<Spanned<PositiveDuration>>,
    pub(super) concurrency: Option<Spanned<Ranged<1, 256>>>,
    #[serde(default = "default_max_attempts")]
    pub(super) max_attempts: Ranged<1, { u32::MAX as i64 }>,
    #[serde(default = "default_backoff")]
    pub(super) backoff: HumanDuration,
}

pub(super) fn default_max_attempts() -> Ranged<1, { u32::MAX as i64 }> {
    Ranged(10)
}
pub(super) fn default_backoff() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum SinkKind {
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

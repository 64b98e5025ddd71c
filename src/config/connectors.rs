//! Connector files: one TOML file per connector in `connectors_dir`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
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
    poll: &PollConfig,
    dir_span: Option<Range<usize>>,
) -> Result<Vec<ConnectorConfig>, ConfigError> {
    let dir = poll.connectors_dir.as_path();
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
        let (connector, id_span) = connector(&source, &file, poll)?;
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
    poll: &PollConfig,
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
        ("signature", sink.signature.as_ref().map(Spanned::span)),
        ("timeout", sink.timeout.as_ref().map(Spanned::span)),
        ("concurrency", sink.concurrency.as_ref().map(Spanned::span)),
        ("batch_size", sink.batch_size.as_ref().map(Spanned::span)),
        ("subject", sink.subject.as_ref().map(Spanned::span)),
        ("stream", sink.stream.as_ref().map(Spanned::span)),
        ("exchange", sink.exchange.as_ref().map(Spanned::span)),
        ("routing_key", sink.routing_key.as_ref().map(Spanned::span)),
        ("maxlen", sink.maxlen.as_ref().map(Spanned::span)),
        ("ca_file", sink.ca_file.as_ref().map(Spanned::span)),
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

    let timeout = |t: Option<Spanned<PositiveDuration>>| {
        t.map_or(Duration::from_secs(10), |t| t.into_inner().0)
    };
    let dir = file.parent().unwrap_or_else(|| Path::new(""));
    // Read now, so that `check` and every command refuse a CA file that cannot be used.
    let ca_file = match sink.ca_file {
        Some(ca_file) => {
            let path = dir.join(&ca_file.get_ref().0);
            if let Err(problem) = read_ca_file(&path) {
                return Err(source.error(
                    Some(ca_file.span()),
                    Some("sink.ca_file".into()),
                    problem,
                ));
            }
            Some(path)
        }
        None => None,
    };
    let sink_config = match kind {
        SinkKind::Stdout => SinkConfig::Stdout,
        SinkKind::File => {
            let path = PathBuf::from(sink.path.ok_or_else(|| missing("path"))?.into_inner().0);
            SinkConfig::File {
                path: dir.join(path),
            }
        }
        SinkKind::Http => {
            let url = sink.url.ok_or_else(|| missing("url"))?;
            check_scheme(source, &url, &["http", "https"])?;
            let signature = sink
                .signature
                .map_or(Signature::Trigpoll, |s| match s.into_inner() {
                    RawSignature::Trigpoll => Signature::Trigpoll,
                    RawSignature::StandardWebhooks => Signature::StandardWebhooks,
                });
            let secret = sink.secret.ok_or_else(|| missing("secret"))?;
            let secrets = secrets(source, secret, signature)?;
            SinkConfig::Http(HttpSinkConfig {
                url: url.into_inner().0,
                client_id: sink
                    .client_id
                    .map_or_else(|| "trigpoll".to_string(), |c| c.into_inner().0),
                secrets,
                signature,
                timeout: timeout(sink.timeout),
                concurrency: sink.concurrency.map_or(8, |c| c.into_inner().get()),
                batch_size: sink.batch_size.map_or(1, |b| b.into_inner().get()),
                ca_file,
            })
        }
        SinkKind::Nats => {
            let url = sink.url.ok_or_else(|| missing("url"))?;
            check_scheme(source, &url, &["nats", "tls"])?;
            let subject = sink.subject.ok_or_else(|| missing("subject"))?;
            let span = subject.span();
            let subject = template(source, "subject", subject)?;
            let subject_error = |message: String| {
                source.error(Some(span.clone()), Some("sink.subject".into()), message)
            };
            if let Some(problem) = crate::connector::nats_subject_problem(&subject.fill("x")) {
                return Err(subject_error(format!(
                    "`{subject}` is not a NATS subject: {problem}"
                )));
            }
            let stream = match sink.stream {
                Some(stream) => {
                    let name = &stream.get_ref().0;
                    let refused = [' ', '\t', '.', '*', '>', '/', '\\'];
                    if name.contains(refused) || name.chars().any(char::is_control) {
                        return Err(source.error(
                            Some(stream.span()),
                            Some("sink.stream".into()),
                            format!(
                                "stream name {name:?} must not contain spaces, `.`, `*`, `>`, \
                                 `/` or `\\`"
                            ),
                        ));
                    }
                    if !subject.placeholders_are_tokens('.') {
                        return Err(subject_error(format!(
                            "with `stream` set, every placeholder of `{subject}` must be a whole \
                             token between dots: the stream captures `{}`, and NATS wildcards \
                             stand for whole tokens",
                            subject.fill("*")
                        )));
                    }
                    Some(stream.into_inner().0)
                }
                None => None,
            };
            SinkConfig::Nats(NatsSinkConfig {
                url: Secret::new(url.into_inner().0),
                subject,
                stream,
                duplicate_window: poll
                    .claim_timeout
                    .saturating_mul(2)
                    .max(Duration::from_secs(3600)),
                timeout: timeout(sink.timeout),
                ca_file,
            })
        }
        SinkKind::Amqp => {
            let url = sink.url.ok_or_else(|| missing("url"))?;
            check_scheme(source, &url, &["amqp", "amqps"])?;
            let exchange = sink.exchange.ok_or_else(|| missing("exchange"))?;
            let name = &exchange.get_ref().0;
            let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
            if name.len() > 255 || !name.chars().all(allowed) {
                return Err(source.error(
                    Some(exchange.span()),
                    Some("sink.exchange".into()),
                    format!(
                        "exchange name {name:?} must be at most 255 letters, digits, `-`, `_`, \
                         `.` and `:`"
                    ),
                ));
            }
            let routing_key = match sink.routing_key {
                Some(key) => template(source, "routing_key", key)?,
                None => Template::parse("{object}.{verb}").expect("the default template is valid"),
            };
            SinkConfig::Amqp(AmqpSinkConfig {
                url: Secret::new(url.into_inner().0),
                exchange: exchange.into_inner().0,
                routing_key,
                timeout: timeout(sink.timeout),
                ca_file,
            })
        }
        SinkKind::Redis => {
            let url = sink.url.ok_or_else(|| missing("url"))?;
            check_scheme(source, &url, &["redis", "rediss"])?;
            let stream = sink.stream.ok_or_else(|| missing("stream"))?;
            SinkConfig::Redis(RedisSinkConfig {
                url: Secret::new(url.into_inner().0),
                stream: template(source, "stream", stream)?,
                maxlen: sink.maxlen.map(|m| m.into_inner().get()),
                timeout: timeout(sink.timeout),
                ca_file,
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

/// The certificates of a PEM file of certificate authorities (a `ca_file`), or why it cannot be
/// used. The message names the file, never its content.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls_pki_types::pem::PemObject;
    let shown = path.display();
    let pem =
        std::fs::read(path).map_err(|e| format!("cannot read {shown}: {}", io_message(&e)))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{shown} is not PEM certificates: {e}"))?;
    match certs.is_empty() {
        true => Err(format!("{shown} holds no PEM certificate")),
        false => Ok(certs),
    }
}

/// Refuses a URL whose scheme is not one of `schemes`. The URL is not echoed: it may carry
/// credentials.
fn check_scheme(
    source: &Source,
    url: &Spanned<NonBlank>,
    schemes: &[&str],
) -> Result<(), ConfigError> {
    let scheme = url.get_ref().0.split_once("://").map(|(s, _)| s);
    if scheme.is_some_and(|s| schemes.contains(&s)) {
        return Ok(());
    }
    let expected: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
    Err(source.error(
        Some(url.span()),
        Some("sink.url".into()),
        format!("must start with {}", expected.join(" or ")),
    ))
}

fn template(source: &Source, key: &str, text: Spanned<NonBlank>) -> Result<Template, ConfigError> {
    Template::parse(&text.get_ref().0)
        .map_err(|message| source.error(Some(text.span()), Some(format!("sink.{key}")), message))
}

/// The HTTP secrets: one string or a list. Standard Webhooks secrets must decode.
fn secrets(
    source: &Source,
    secret: Spanned<RawSecrets>,
    signature: Signature,
) -> Result<Vec<Secret>, ConfigError> {
    let outer = secret.span();
    let list = match secret.into_inner() {
        RawSecrets::One(RawSecret(s)) => vec![(s, outer, "sink.secret".to_string())],
        RawSecrets::Many(list) => {
            if list.is_empty() {
                return Err(source.error(
                    Some(outer),
                    Some("sink.secret".into()),
                    "must list at least one secret",
                ));
            }
            list.into_iter()
                .enumerate()
                .map(|(i, s)| {
                    let span = s.span();
                    (s.into_inner().0, span, format!("sink.secret[{i}]"))
                })
                .collect()
        }
    };
    let mut secrets = Vec::with_capacity(list.len());
    for (secret, span, key) in list {
        if signature == Signature::StandardWebhooks {
            if let Err(problem) = crate::connector::webhook_key(&secret) {
                return Err(source.error(Some(span), Some(key), problem));
            }
        }
        secrets.push(secret);
    }
    Ok(secrets)
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
    pub(super) secret: Option<Spanned<RawSecrets>>,
    pub(super) signature: Option<Spanned<RawSignature>>,
    pub(super) timeout: Option<Spanned<PositiveDuration>>,
    pub(super) concurrency: Option<Spanned<Ranged<1, 256>>>,
    pub(super) batch_size: Option<Spanned<Ranged<1, 1000>>>,
    pub(super) subject: Option<Spanned<NonBlank>>,
    pub(super) stream: Option<Spanned<NonBlank>>,
    pub(super) exchange: Option<Spanned<NonBlank>>,
    pub(super) routing_key: Option<Spanned<NonBlank>>,
    pub(super) maxlen: Option<Spanned<Ranged<1, { i64::MAX }>>>,
    pub(super) ca_file: Option<Spanned<NonBlank>>,
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
    Nats,
    Amqp,
    Redis,
}

impl SinkKind {
    /// The keys of this type besides `type`, `max_attempts` and `backoff`.
    fn keys(self) -> &'static [&'static str] {
        match self {
            SinkKind::Stdout => &[],
            SinkKind::File => &["path"],
            SinkKind::Http => &[
                "url",
                "client_id",
                "secret",
                "signature",
                "timeout",
                "concurrency",
                "batch_size",
                "ca_file",
            ],
            SinkKind::Nats => &["url", "subject", "stream", "timeout", "ca_file"],
            SinkKind::Amqp => &["url", "exchange", "routing_key", "timeout", "ca_file"],
            SinkKind::Redis => &["url", "stream", "maxlen", "timeout", "ca_file"],
        }
    }
}

impl fmt::Display for SinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SinkKind::Stdout => "stdout",
            SinkKind::File => "file",
            SinkKind::Http => "http",
            SinkKind::Nats => "nats",
            SinkKind::Amqp => "amqp",
            SinkKind::Redis => "redis",
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum RawSignature {
    Trigpoll,
    StandardWebhooks,
}

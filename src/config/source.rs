//! Locating errors: from a position in the expanded text back to the file's line, column and
//! key.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use serde::de::{DeserializeOwned, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::expand::*;
use super::ConfigError;

// ---------------------------------------------------------------------------------------------
// Locating errors.

/// A file's text after `${VAR}` expansion, with what is needed to point back into the original.
pub(super) struct Source<'a> {
    pub(super) path: &'a Path,
    pub(super) original: &'a str,
    pub(super) expanded: String,
    pub(super) substitutions: Vec<Substitution>,
}

impl<'a> Source<'a> {
    pub(super) fn expand(path: &'a Path, original: &'a str) -> Result<Self, ConfigError> {
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

    pub(super) fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
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
            let mut message = inner.message().trim().replace('\n', "; ");
            if message.is_empty() {
                // toml gives no message for some characters it refuses (a DEL in a comment).
                let found = inner
                    .span()
                    .and_then(|span| self.expanded.get(span.start..)?.chars().next());
                message = match found {
                    Some(c) => format!("invalid TOML: unexpected character {c:?}"),
                    None => "invalid TOML".to_string(),
                };
            }
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
    pub(super) fn error(
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
    pub(super) fn line_column(&self, expanded: usize) -> (usize, usize) {
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
pub(super) fn key_at(text: &str, offset: usize) -> Option<String> {
    let root: Node = toml::from_str(text).ok()?;
    root.key_at(offset, "")
}

/// A TOML document reduced to its keys and the spans of their values.
pub(super) enum Node {
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

//! Name templates of the broker sinks: a NATS subject, an AMQP routing key, a Redis stream key.

use std::fmt;

/// A name made for each event: literal text with `{object}`, `{verb}` and `{connector}`
/// replaced by the event's object name, its verb and the connector id. `{{` and `}}` stand for
/// literal braces (a Redis hash tag, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Object,
    Verb,
    Connector,
}

/// The placeholders, for messages.
const PLACEHOLDERS: &str = "{object}, {verb}, {connector}";

impl Template {
    /// Reads a template; the error says what is wrong without repeating the whole text.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(i) = rest.find(['{', '}']) {
            literal.push_str(&rest[..i]);
            let tail = &rest[i..];
            if let Some(after) = tail.strip_prefix("{{") {
                literal.push('{');
                rest = after;
                continue;
            }
            if let Some(after) = tail.strip_prefix("}}") {
                literal.push('}');
                rest = after;
                continue;
            }
            if tail.starts_with('}') {
                return Err(format!(
                    "unmatched `}}` (write `}}}}` for a literal brace; placeholders: {PLACEHOLDERS})"
                ));
            }
            let Some(end) = tail.find('}') else {
                return Err(format!(
                    "unclosed `{{` (write `{{{{` for a literal brace; placeholders: {PLACEHOLDERS})"
                ));
            };
            let part = match &tail[1..end] {
                "object" => Part::Object,
                "verb" => Part::Verb,
                "connector" => Part::Connector,
                other => {
                    return Err(format!(
                        "unknown placeholder {{{other}}} (placeholders: {PLACEHOLDERS})"
                    ))
                }
            };
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(part);
            rest = &tail[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        if parts.is_empty() {
            return Err("must not be empty".into());
        }
        Ok(Template { parts })
    }

    /// The name for one event.
    pub fn render(&self, object: &str, verb: &str, connector: &str) -> String {
        let mut out = String::new();
        for part in &self.parts {
            out.push_str(match part {
                Part::Text(text) => text,
                Part::Object => object,
                Part::Verb => verb,
                Part::Connector => connector,
            });
        }
        out
    }

    /// The template with every placeholder replaced by `with`: `trigpoll.{object}.{verb}` is
    /// `trigpoll.*.*` with `*`.
    pub fn fill(&self, with: &str) -> String {
        self.render(with, with, with)
    }

    /// Whether every placeholder is a whole `separator`-delimited token, as NATS wildcards
    /// must be: `a.{object}.b` is, `a.x{object}` is not.
    pub fn placeholders_are_tokens(&self, separator: char) -> bool {
        self.parts.iter().enumerate().all(|(i, part)| {
            if matches!(part, Part::Text(_)) {
                return true;
            }
            let before = match i.checked_sub(1).map(|j| &self.parts[j]) {
                None => true,
                Some(Part::Text(text)) => text.ends_with(separator),
                Some(_) => false,
            };
            let after = match self.parts.get(i + 1) {
                None => true,
                Some(Part::Text(text)) => text.starts_with(separator),
                Some(_) => false,
            };
            before && after
        })
    }
}

impl fmt::Display for Template {
    /// The template as written (braces of literal text doubled).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Text(text) => f.write_str(&text.replace('{', "{{").replace('}', "}}"))?,
                Part::Object => f.write_str("{object}")?,
                Part::Verb => f.write_str("{verb}")?,
                Part::Connector => f.write_str("{connector}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced() {
        let t = Template::parse("trigpoll.{connector}.{object}.{verb}").unwrap();
        assert_eq!(
            t.render("Employee", "Update", "hr"),
            "trigpoll.hr.Employee.Update"
        );
        assert_eq!(t.fill("*"), "trigpoll.*.*.*");
        assert_eq!(t.to_string(), "trigpoll.{connector}.{object}.{verb}");
        let literal = Template::parse("events").unwrap();
        assert_eq!(literal.render("A", "B", "c"), "events");
    }

    #[test]
    fn doubled_braces_are_literal() {
        let t = Template::parse("trigpoll:{{{object}}}:x}}").unwrap();
        assert_eq!(t.render("Order", "Create", "c"), "trigpoll:{Order}:x}");
        assert_eq!(t.to_string(), "trigpoll:{{{object}}}:x}}");
        assert_eq!(Template::parse(&t.to_string()).unwrap(), t);
    }

    #[test]
    fn mistakes_are_named() {
        let err = |s: &str| Template::parse(s).unwrap_err();
        assert_eq!(
            err("a.{objet}"),
            "unknown placeholder {objet} (placeholders: {object}, {verb}, {connector})"
        );
        assert!(
            err("a.{object").starts_with("unclosed `{`"),
            "{}",
            err("a.{object")
        );
        assert!(err("a}").starts_with("unmatched `}`"), "{}", err("a}"));
        assert_eq!(err(""), "must not be empty");
    }

    #[test]
    fn placeholders_as_whole_tokens() {
        let ok = |s: &str| Template::parse(s).unwrap().placeholders_are_tokens('.');
        assert!(ok("trigpoll.{object}.{verb}"));
        assert!(ok("{object}"));
        assert!(ok("{object}.x"));
        assert!(ok("plain"));
        assert!(!ok("trigpoll.obj-{object}"));
        assert!(!ok("trigpoll.{object}{verb}"));
        assert!(!ok("{verb}s.x"));
    }
}

//! `${VAR}` and `${VAR:-default}` expansion, before the TOML is parsed.

use std::ops::Range;

/// One `${…}` or `$$` replaced: its range in the original text and in the expanded one.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Substitution {
    pub(super) original: Range<usize>,
    pub(super) expanded: Range<usize>,
}

// ---------------------------------------------------------------------------------------------
// `${VAR}` expansion.

pub(super) struct Expansion {
    pub(super) text: String,
    pub(super) substitutions: Vec<Substitution>,
    pub(super) problems: Vec<Problem>,
}

pub(super) struct Problem {
    pub(super) expanded_offset: usize,
    pub(super) message: String,
}

/// Where in a TOML text a `${…}` sits; it decides how the value is written.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Context {
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
pub(super) fn expand(
    text: &str,
    lookup: impl Fn(&str) -> Result<Option<String>, String>,
) -> Expansion {
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
pub(super) fn reference(
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
pub(super) fn escape_basic(value: &str) -> String {
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

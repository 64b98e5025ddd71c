//! Object keys: `name=value` pairs joined by a delimiter (docs/payload.md).
//!
//! In names and values `%`, `=` and every character of the delimiter are percent-encoded as the
//! upper-case hex of their UTF-8 bytes; a NULL value is the bare name. The triggers encode keys
//! in SQL with the same rules (see the dialects), so the two must change together.

/// One key column and its value as text; `None` is SQL NULL.
pub type KeyPair = (String, Option<String>);

/// Why an object key could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("object key is empty")]
    Empty,
    #[error("object key part {index} has an empty column name")]
    EmptyName { index: usize },
    #[error("object key part {index} has more than one '='")]
    ExtraEquals { index: usize },
    #[error("object key part {index} has a bad percent escape at byte {at}")]
    BadEscape { index: usize, at: usize },
    #[error("object key part {index} does not decode to UTF-8")]
    NotUtf8 { index: usize },
}

/// The characters that must be escaped for a delimiter, without repeats, `%` first.
pub fn reserved_chars(delimiter: &str) -> Vec<char> {
    let mut chars = vec!['%', '='];
    for c in delimiter.chars() {
        if !chars.contains(&c) {
            chars.push(c);
        }
    }
    chars
}

/// Percent-encodes one name or value.
pub fn encode_part(text: &str, delimiter: &str) -> String {
    let reserved = reserved_chars(delimiter);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if reserved.contains(&c) {
            out.push_str(&percent(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// The escape sequence of one character: `%XX` per UTF-8 byte.
pub fn percent(c: char) -> String {
    let mut buf = [0u8; 4];
    c.encode_utf8(&mut buf)
        .bytes()
        .map(|b| format!("%{b:02X}"))
        .collect()
}

/// Encodes ordered pairs into an object key.
pub fn encode(pairs: &[KeyPair], delimiter: &str) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .map(|(name, value)| match value {
            Some(v) => format!(
                "{}={}",
                encode_part(name, delimiter),
                encode_part(v, delimiter)
            ),
            None => encode_part(name, delimiter),
        })
        .collect();
    parts.join(delimiter)
}

/// Parses an object key into ordered pairs.
pub fn decode(key: &str, delimiter: &str) -> Result<Vec<KeyPair>, KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    key.split(delimiter)
        .enumerate()
        .map(|(i, part)| {
            let index = i + 1;
            let mut halves = part.splitn(3, '=');
            let name = halves.next().unwrap_or_default();
            let value = halves.next();
            if halves.next().is_some() {
                return Err(KeyError::ExtraEquals { index });
            }
            let name = unescape(name, index)?;
            if name.is_empty() {
                return Err(KeyError::EmptyName { index });
            }
            let value = value.map(|v| unescape(v, index)).transpose()?;
            Ok((name, value))
        })
        .collect()
}

fn unescape(text: &str, index: usize) -> Result<String, KeyError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // Two hex digits exactly: `from_str_radix` alone would take a sign (`%+1`).
            let hex = bytes
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(KeyError::BadEscape { index, at: i })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| KeyError::NotUtf8 { index })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pair(n: &str, v: &str) -> KeyPair {
        (n.to_string(), Some(v.to_string()))
    }

    #[test]
    fn encodes_the_documented_examples() {
        assert_eq!(encode(&[pair("emp_id", "101961")], ":"), "emp_id=101961");
        assert_eq!(
            encode(&[pair("ContractId", "45381"), pair("HeaderId", "321")], ":"),
            "ContractId=45381:HeaderId=321"
        );
        assert_eq!(
            encode(&[pair("a", "x:y=z%")], ":"),
            "a=x%3Ay%3Dz%25",
            "%, = and the delimiter are escaped"
        );
        assert_eq!(encode(&[("a".into(), None), pair("b", "")], ":"), "a:b=");
    }

    #[test]
    fn multi_character_and_unicode_delimiters_escape_each_character() {
        assert_eq!(
            encode(&[pair("a", "x|y"), pair("b", "~")], "|~"),
            "a=x%7Cy|~b=%7E"
        );
        assert_eq!(encode(&[pair("a", "x§y")], "§"), "a=x%C2%A7y");
        assert_eq!(
            decode("a=x%C2%A7y§b=1", "§").unwrap(),
            vec![pair("a", "x§y"), pair("b", "1")]
        );
    }

    #[test]
    fn malformed_keys_are_precise_errors() {
        assert_eq!(decode("", ":"), Err(KeyError::Empty));
        assert_eq!(decode("=1", ":"), Err(KeyError::EmptyName { index: 1 }));
        assert_eq!(decode("a=1:", ":"), Err(KeyError::EmptyName { index: 2 }));
        assert_eq!(
            decode("a=1=2", ":"),
            Err(KeyError::ExtraEquals { index: 1 })
        );
        assert_eq!(
            decode("a=%4", ":"),
            Err(KeyError::BadEscape { index: 1, at: 0 })
        );
        assert_eq!(
            decode("a=%zz", ":"),
            Err(KeyError::BadEscape { index: 1, at: 0 })
        );
        assert_eq!(decode("a=%FF", ":"), Err(KeyError::NotUtf8 { index: 1 }));
    }

    #[test]
    fn an_escape_is_two_hex_digits_without_a_sign() {
        for key in ["a=%+1", "a=%-1", "a=% 1", "a=x%+F"] {
            assert!(
                matches!(decode(key, ":"), Err(KeyError::BadEscape { index: 1, .. })),
                "{key}"
            );
        }
        assert_eq!(decode("a=%2b", ":").unwrap(), vec![pair("a", "+")]);
    }

    #[test]
    fn null_values_are_bare_names() {
        assert_eq!(
            decode("a:b=", ":").unwrap(),
            vec![("a".into(), None), pair("b", "")]
        );
    }

    fn delimiter() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(":".to_string()),
            Just("|".to_string()),
            Just("::".to_string()),
            Just("§".to_string()),
            Just(", ".to_string()),
        ]
    }

    proptest! {
        #[test]
        fn any_pairs_round_trip(
            pairs in prop::collection::vec(
                ("[^\u{0}]{1,12}", prop::option::of("\\PC{0,12}|[%=:\n\r\t ]{0,6}")),
                1..5,
            ),
            delim in delimiter(),
        ) {
            let key = encode(&pairs, &delim);
            prop_assert_eq!(decode(&key, &delim).unwrap(), pairs);
        }
    }
}

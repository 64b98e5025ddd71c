//! The raw shapes of the files, as serde reads them. Checks that concern one value live in
//! the value's `Deserialize` impl, so that toml and serde_path_to_error locate them; checks
//! across values use `Spanned`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::*;

// ---------------------------------------------------------------------------------------------
// Raw file shapes. Checks that concern one value live in the value's `Deserialize` impl, so that
// toml and serde_path_to_error locate them; checks across values use `Spanned`.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) database: RawDatabase,
    #[serde(default)]
    pub(super) poll: RawPoll,
    #[serde(default)]
    pub(super) object: Vec<RawObject>,
    #[serde(default)]
    pub(super) archive: RawArchive,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawArchive {
    pub(super) retention: Option<PositiveDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    pub(super) url: RawDatabaseUrl,
    #[serde(default = "default_schema")]
    pub(super) schema: NonBlank,
    #[serde(default = "default_event_table")]
    pub(super) event_table: NonBlank,
    #[serde(default = "default_archive_table")]
    pub(super) archive_table: NonBlank,
    pub(super) capture_role: Option<Spanned<NonBlank>>,
}

pub(super) fn default_schema() -> NonBlank {
    NonBlank("trigpoll".into())
}
pub(super) fn default_event_table() -> NonBlank {
    NonBlank("trigpoll_event".into())
}
pub(super) fn default_archive_table() -> NonBlank {
    NonBlank("trigpoll_archive".into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawPoll {
    pub(super) interval: HumanDuration,
    pub(super) batch_size: Ranged<1, 100_000>,
    pub(super) key_delimiter: KeyDelimiter,
    pub(super) archive: bool,
    pub(super) claim_timeout: PositiveDuration,
    pub(super) linger: Linger,
    pub(super) connectors_dir: Option<Spanned<NonBlank>>,
}

impl Default for RawPoll {
    fn default() -> Self {
        RawPoll {
            interval: HumanDuration(Duration::from_secs(5)),
            batch_size: Ranged(500),
            key_delimiter: KeyDelimiter(":".into()),
            archive: true,
            claim_timeout: PositiveDuration(Duration::from_secs(300)),
            linger: Linger(Duration::from_millis(20)),
            connectors_dir: None,
        }
    }
}

/// A list of names as written: its span, and each name's.
pub(super) type Names = Spanned<Vec<Spanned<NonBlank>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawObject {
    pub(super) name: Spanned<NonBlank>,
    pub(super) table: Option<Spanned<NonBlank>>,
    pub(super) keys: Option<Names>,
    pub(super) verbs: Option<Spanned<Vec<Spanned<Verb>>>>,
    pub(super) priority: Option<Spanned<Ranged<0, { i32::MAX as i64 }>>>,
    pub(super) coalesce: Option<Spanned<bool>>,
    pub(super) track: Option<Names>,
    pub(super) ignore: Option<Names>,
    pub(super) attributes: Option<Names>,
    pub(super) exclude_attributes: Option<Names>,
    pub(super) changes: Option<Spanned<bool>>,
    pub(super) ignore_users: Option<Names>,
    pub(super) when: Option<Spanned<RawWhen>>,
    pub(super) rule: Option<Spanned<Vec<Spanned<RawRule>>>>,
    pub(super) child: Option<Spanned<Vec<RawChild>>>,
}

/// `[[object.rule]]` and `[[object.child.rule]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) on: Spanned<RawActions>,
    pub(super) when: Option<Spanned<NonBlank>>,
    pub(super) skip: Option<Spanned<bool>>,
    pub(super) verb: Option<Spanned<VerbName>>,
    pub(super) priority: Option<Spanned<Ranged<0, { i32::MAX as i64 }>>>,
    pub(super) comment: Option<Spanned<NonBlank>>,
}

/// A rule's `on`: one row action, or a list of them.
pub(super) enum RawActions {
    One(Verb),
    Many(Vec<Spanned<RawAction>>),
}

impl<'de> Deserialize<'de> for RawActions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawActions;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a row action (create, update, delete) or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawActions, E> {
                action(v).map(RawActions::One).map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawActions, A::Error> {
                let mut list = Vec::new();
                while let Some(action) = seq.next_element()? {
                    list.push(action);
                }
                Ok(RawActions::Many(list))
            }
        }
        d.deserialize_any(V)
    }
}

/// One row action of a rule's `on`, written as `[object.when]` names them.
#[derive(PartialEq)]
pub(super) struct RawAction(pub(super) Verb);

impl<'de> Deserialize<'de> for RawAction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor("a row action", |v: &str| {
            action(v).map(RawAction)
        }))
    }
}

fn action(v: &str) -> Result<Verb, String> {
    match Verb::from_action(v) {
        Some(verb) if verb != Verb::Truncate => Ok(verb),
        _ => Err(format!(
            "{v:?} is not a row action: write create, update or delete"
        )),
    }
}

/// The verb a rule gives its events: subscriptions match it as the part after the dot of
/// `Object.Verb`, and broker subjects and routing keys may carry it (`{verb}`), so it is a
/// plain name. The event tables hold up to 255 characters of it.
pub(super) struct VerbName(pub(super) String);

impl<'de> Deserialize<'de> for VerbName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor("a verb", |v: &str| {
            let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-');
            if v.is_empty() || !v.chars().all(valid) {
                Err(format!(
                    "verb {v:?} must be made of letters, digits, `_` and `-`: subscriptions \
                     (Object.Verb) and broker subjects name it"
                ))
            } else if v.len() > 255 {
                Err(format!("verb {v:?} is longer than 255 characters"))
            } else {
                Ok(VerbName(v.to_string()))
            }
        }))
    }
}

/// `[object.when]`: a capture condition per verb.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWhen {
    pub(super) create: Option<Spanned<NonBlank>>,
    pub(super) update: Option<Spanned<NonBlank>>,
    pub(super) delete: Option<Spanned<NonBlank>>,
}

/// `[[object.child]]`, and `[[object.child.child]]` below it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChild {
    pub(super) name: Spanned<NonBlank>,
    pub(super) table: Spanned<NonBlank>,
    pub(super) parent_keys: Names,
    pub(super) order_by: Option<Names>,
    pub(super) attributes: Option<Names>,
    pub(super) exclude_attributes: Option<Names>,
    pub(super) rule: Option<Spanned<Vec<Spanned<RawRule>>>>,
    pub(super) child: Option<Spanned<Vec<RawChild>>>,
}

/// Visits a string and hands it to `check`, which refuses it with a message.
pub(super) struct StrVisitor<F>(pub(super) &'static str, pub(super) F);

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
pub(super) struct NonBlank(pub(super) String);

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

pub(super) struct ConnectorId(pub(super) String);

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

pub(super) struct KeyDelimiter(pub(super) String);

impl<'de> Deserialize<'de> for KeyDelimiter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // `=` separates a name from its value and `%` starts an escape (docs/payload.md). An
        // escape's hex digits must not be taken for a delimiter either: with `8`, the value `8`
        // is written `%38`, which would split in two.
        d.deserialize_str(StrVisitor("a key delimiter", |v: &str| {
            if v.is_empty() {
                Err("must not be empty".to_string())
            } else if v.contains(['=', '%']) {
                Err(format!("{v:?} must not contain `=` or `%`"))
            } else if v.contains(|c: char| c.is_ascii_digit() || ('A'..='F').contains(&c)) {
                Err(format!(
                    "{v:?} must not contain a digit or A-F: they are the hex digits of an escape"
                ))
            } else {
                Ok(KeyDelimiter(v.to_string()))
            }
        }))
    }
}

/// A non-empty secret. Type errors do not echo the value.
pub(super) struct RawSecret(pub(super) Secret);

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

/// One secret, or a list of them (key rotation). Type errors do not echo the values.
pub(super) enum RawSecrets {
    One(RawSecret),
    Many(Vec<Spanned<RawSecret>>),
}

impl<'de> Deserialize<'de> for RawSecrets {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawSecrets;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSecrets, E> {
                RawSecret::deserialize(de::value::StrDeserializer::<E>::new(v)).map(RawSecrets::One)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawSecrets, A::Error> {
                let mut list = Vec::new();
                while let Some(secret) = seq.next_element()? {
                    list.push(secret);
                }
                Ok(RawSecrets::Many(list))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<RawSecrets, E> {
                Err(hidden())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<RawSecrets, E> {
                Err(hidden())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<RawSecrets, E> {
                Err(hidden())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawSecrets, E> {
                Err(hidden())
            }
            fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<RawSecrets, A::Error> {
                Err(hidden())
            }
        }
        fn hidden<E: de::Error>() -> E {
            E::custom("invalid type: expected a string or a list of strings (value hidden)")
        }
        d.deserialize_any(V)
    }
}

/// A humantime duration: `"5s"`, `"250ms"`, `"1h 30m"`.
pub(super) struct HumanDuration(pub(super) Duration);

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

pub(super) struct PositiveDuration(pub(super) Duration);

impl<'de> Deserialize<'de> for PositiveDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let HumanDuration(duration) = HumanDuration::deserialize(d)?;
        if duration.is_zero() {
            return Err(de::Error::custom("must be greater than zero"));
        }
        Ok(PositiveDuration(duration))
    }
}

/// `poll.linger`: from zero (claim at once) to a second, which bounds what it adds to a
/// delivery's latency and to a stop.
pub(super) struct Linger(pub(super) Duration);

impl<'de> Deserialize<'de> for Linger {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let HumanDuration(duration) = HumanDuration::deserialize(d)?;
        if duration > Duration::from_secs(1) {
            return Err(de::Error::custom("must be at most 1s"));
        }
        Ok(Linger(duration))
    }
}

/// An integer within `MIN..=MAX`.
pub(super) struct Ranged<const MIN: i64, const MAX: i64>(pub(super) i64);

impl<const MIN: i64, const MAX: i64> Ranged<MIN, MAX> {
    /// Converts to a type that holds the whole range.
    pub(super) fn get<T: TryFrom<i64>>(&self) -> T {
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

/// `database.url`: a secret whose scheme names the backend, checked with the rest of the file
/// (by `check` too) and never echoed: a typo in the scheme must not print the password.
pub(super) struct RawDatabaseUrl(pub(super) Secret);

impl<'de> Deserialize<'de> for RawDatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const SCHEMES: [&str; 4] = ["postgres://", "postgresql://", "mysql://", "sqlite://"];
        let RawSecret(url) = RawSecret::deserialize(d)?;
        match SCHEMES.iter().any(|s| url.expose().starts_with(s)) {
            true => Ok(RawDatabaseUrl(url)),
            false => Err(de::Error::custom(
                "must start with postgres://, postgresql://, mysql:// or sqlite:// (value hidden)",
            )),
        }
    }
}

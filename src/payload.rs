//! The business object payload, version 1 (README, *The payload*).

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::event::Event;
use crate::key::KeyPair;

/// The object key as a JSON object, in key order; NULL values are `null`.
struct KeyObject<'a>(&'a [KeyPair]);

impl Serialize for KeyObject<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct Payload<'a> {
    object_event_id: &'a str,
    event_id: i64,
    connector: &'a str,
    object: &'a str,
    verb: &'a str,
    key: KeyObject<'a>,
    priority: i32,
    comment: Option<&'a str>,
    event_time: &'a str,
    attempt: i32,
    replay_of: Option<i64>,
    attributes: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    changes: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    partial: &'a [String],
}

/// What an event delivers besides its identity.
#[derive(Debug, Clone, Copy)]
pub struct Content<'a> {
    /// The business object: a JSON object already serialized, shared by every connector.
    pub attributes: &'a RawValue,
    /// For an `Update` of an object with `changes = true`: `{"col": {"old": …, "new": …}}`.
    pub changes: Option<&'a RawValue>,
    /// The attributes a captured image lacks: the table has columns its trigger did not know
    /// (added since install-triggers).
    pub partial: &'a [String],
}

/// `<connector>_<event_id>`: what receivers use to drop duplicates.
pub fn object_event_id(connector: &str, event_id: i64) -> String {
    format!("{connector}_{event_id}")
}

/// The JSON text of one event for one connector.
pub fn render(
    event: &Event,
    key: &[KeyPair],
    connector: &str,
    object_event_id: &str,
    content: Content,
) -> String {
    let payload = Payload {
        object_event_id,
        event_id: event.event_id,
        connector,
        object: &event.object_name,
        verb: &event.object_verb,
        key: KeyObject(key),
        priority: event.priority,
        comment: event.comment.as_deref(),
        event_time: &event.event_time,
        attempt: event.attempts + 1,
        replay_of: event.replay_of,
        attributes: content.attributes,
        changes: content.changes,
        partial: content.partial,
    };
    serde_json::to_string(&payload).expect("a payload of strings and numbers serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_documented_shape() {
        let event = Event {
            event_id: 123,
            object_name: "Employee".into(),
            object_verb: "Update".into(),
            object_key: "emp_id=101961".into(),
            priority: 1,
            event_time: "2026-11-22T10:00:00.123456Z".into(),
            connector_id: None,
            attempts: 0,
            payload: None,
            replay_of: None,
            done_connectors: vec![],
            action: None,
            comment: None,
        };
        let attributes = RawValue::from_string(
            r#"{"emp_id":101961,"last_name":"como","dept_id":4,"salary":1234.50}"#.into(),
        )
        .unwrap();
        let key = vec![("emp_id".to_string(), Some("101961".to_string()))];
        let content = Content {
            attributes: &attributes,
            changes: None,
            partial: &[],
        };
        let text = render(&event, &key, "hr-sync", "hr-sync_123", content);
        assert_eq!(
            text,
            r#"{"object_event_id":"hr-sync_123","event_id":123,"connector":"hr-sync","object":"Employee","verb":"Update","key":{"emp_id":"101961"},"priority":1,"comment":null,"event_time":"2026-11-22T10:00:00.123456Z","attempt":1,"replay_of":null,"attributes":{"emp_id":101961,"last_name":"como","dept_id":4,"salary":1234.50}}"#
        );
    }
}

//! Event records and their status codes (docs/tables.md).

use std::fmt;

/// An event record as claimed from the event table.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event_id: i64,
    pub object_name: String,
    pub object_verb: String,
    pub object_key: String,
    pub priority: i32,
    /// RFC 3339, UTC, microseconds.
    pub event_time: String,
    /// Set: only this connector gets the event.
    pub connector_id: Option<String>,
    /// Processing attempts made before this one.
    pub attempts: i32,
    /// The old row image of a delete, as JSON text.
    pub payload: Option<String>,
    pub replay_of: Option<i64>,
    /// Connectors whose outcome for this event is already final (archived), from earlier attempts.
    pub done_connectors: Vec<String>,
    /// `event_action`: the row action that made the event (`create`, `update`, `delete`,
    /// `truncate`), as the triggers write it for the actions that have rules; `None` where the
    /// verb says it (events of actions without rules, and those applications write).
    pub action: Option<String>,
    /// `event_comment`: a rule's comment, or an application's.
    pub comment: Option<String>,
}

/// The status codes of the event and archive tables (IBM WBI JDBC adapter values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    Ready,
    InProgress,
    Sent,
    Unsubscribed,
    Error,
    Failed,
    NotFound,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Ready,
        Status::InProgress,
        Status::Sent,
        Status::Unsubscribed,
        Status::Error,
        Status::Failed,
        Status::NotFound,
    ];

    pub fn code(self) -> i16 {
        match self {
            Status::Ready => 0,
            Status::InProgress => 3,
            Status::Sent => 1,
            Status::Unsubscribed => 2,
            Status::Error => -1,
            Status::Failed => -2,
            Status::NotFound => -3,
        }
    }

    pub fn from_code(code: i16) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.code() == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            Status::Ready => "ready",
            Status::InProgress => "in-progress",
            Status::Sent => "sent",
            Status::Unsubscribed => "unsubscribed",
            Status::Error => "error",
            Status::Failed => "failed",
            Status::NotFound => "not-found",
        }
    }

    /// Accepts a name (`failed`) or a code (`-2`).
    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL
            .into_iter()
            .find(|s| s.name() == text)
            .or_else(|| text.parse().ok().and_then(Status::from_code))
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One archive row to write: the final outcome of an event for one connector (or for no
/// connector, when it never reached one).
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveRow {
    pub event_id: i64,
    pub connector_id: Option<String>,
    pub status: Status,
    pub description: Option<String>,
    pub attempts: i32,
}

/// An event that stays in the event table for another attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryLater {
    pub event_id: i64,
    pub attempts: i32,
    pub delay: std::time::Duration,
    pub description: String,
    pub done_connectors: Vec<String>,
}

/// An event put back untried because an earlier event of its key must be retried first: it waits
/// behind that one, out of the claims' way, with its attempt count unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct Hold {
    pub event_id: i64,
    /// The event it waits for; `None` when that one is done in this same batch (the event is
    /// then simply ready again).
    pub behind: Option<i64>,
    pub done_connectors: Vec<String>,
}

/// What a batch came to, written in one transaction by `EventStore::finish`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settlement {
    /// Archive rows of every outcome that is final, for completed, retried and held events.
    pub archive: Vec<ArchiveRow>,
    /// Events that leave the event table.
    pub complete: Vec<i64>,
    pub retry: Vec<RetryLater>,
    pub hold: Vec<Hold>,
}

impl Settlement {
    pub fn is_empty(&self) -> bool {
        self.archive.is_empty()
            && self.complete.is_empty()
            && self.retry.is_empty()
            && self.hold.is_empty()
    }

    /// The events waited for that this settlement does not itself touch: another poller may
    /// claim them meanwhile, so a store locks them while it holds events behind them.
    pub fn outside_blockers(&self) -> Vec<i64> {
        let ours: std::collections::HashSet<i64> = self
            .complete
            .iter()
            .copied()
            .chain(self.retry.iter().map(|r| r.event_id))
            .chain(self.hold.iter().map(|h| h.event_id))
            .collect();
        let mut outside: Vec<i64> = self
            .hold
            .iter()
            .filter_map(|h| h.behind)
            .filter(|b| !ours.contains(b))
            .collect();
        outside.sort_unstable();
        outside.dedup();
        outside
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_are_the_ibm_values() {
        let codes: Vec<(i16, &str)> = Status::ALL.iter().map(|s| (s.code(), s.name())).collect();
        assert_eq!(
            codes,
            [
                (0, "ready"),
                (3, "in-progress"),
                (1, "sent"),
                (2, "unsubscribed"),
                (-1, "error"),
                (-2, "failed"),
                (-3, "not-found")
            ]
        );
        assert_eq!(Status::parse("failed"), Some(Status::Failed));
        assert_eq!(Status::parse("-3"), Some(Status::NotFound));
        assert_eq!(Status::parse("nope"), None);
    }
}

//! Connectors deliver business objects to other systems.
//!
//! Every connector works in batches: it is handed the deliveries of one poll batch and answers
//! with one [`Outcome`] per delivery, in the same order. Delivery is at-least-once, so receivers
//! must tolerate duplicates; `object_event_id` lets them drop them.

/// One business object on its way to one connector.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The event this delivery belongs to.
    pub event_id: i64,
    /// `<connector>_<event_id>`, the receiver's idempotency key.
    pub object_event_id: String,
    /// The serialized JSON payload (DESIGN.md §7), one line, no trailing newline.
    pub body: String,
}

/// What happened to one delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The receiver has it (for files: written and flushed to disk).
    Sent,
    /// A transient failure: try again later, no earlier than `after` when the receiver said so.
    Retry {
        reason: String,
        after: Option<std::time::Duration>,
    },
    /// A permanent failure: retrying will not help.
    Reject { reason: String },
}

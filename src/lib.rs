//! trigpoll: capture row changes with database triggers and deliver them as business objects.
//!
//! The library holds everything but the command line: configuration, the object-key codec,
//! subscriptions, the event stores of each backend, the connectors and the poller.

pub mod config;
pub mod connector;
pub mod dialect;
pub mod event;
#[doc(hidden)]
pub mod fuzzing;
pub mod install;
pub mod key;
pub mod lease;
pub mod metrics;
pub mod payload;
pub mod poller;
pub mod store;
pub mod subscription;
pub mod table;

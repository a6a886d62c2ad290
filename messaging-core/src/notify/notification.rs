//! A received notification, as endpoints and filters see it.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::context::Context;
use crate::error::Result;
use crate::priority::Priority;

/// A notification's `message_id` and `timestamp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationMetadata {
    /// The sender's message id.
    pub message_id: String,
    /// When it was sent (`YYYY-MM-DD HH:MM:SS.ffffff`, UTC).
    pub timestamp: String,
}

impl NotificationMetadata {
    pub(crate) fn to_map(&self) -> Map<String, Value> {
        let mut map = Map::with_capacity(2);
        map.insert("message_id".into(), Value::String(self.message_id.clone()));
        map.insert("timestamp".into(), Value::String(self.timestamp.clone()));
        map
    }
}

/// A received notification, as endpoints see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Its priority.
    pub priority: Priority,
    /// Who sent it.
    pub publisher_id: String,
    /// What happened.
    pub event_type: String,
    /// The payload.
    pub payload: Value,
    /// The sender's context.
    pub context: Context,
    /// Message id and timestamp.
    pub metadata: NotificationMetadata,
}

impl Notification {
    /// The payload as a typed value.
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_value(self.payload.clone())?)
    }
}

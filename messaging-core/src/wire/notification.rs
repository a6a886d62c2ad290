//! Notification messages (oslo-wire.md §6, §8).

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use super::{
    envelope, flatten_context, json, take_string, unflatten_context, CONTEXT_PREFIX, SIGNATURE_KEY,
};
use crate::error::{MessagingError, Result};
use crate::priority::Priority;

/// Body format, chosen by the notifier's driver name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotificationFormat {
    /// `messagingv2` (oslo's default): the `2.0` envelope.
    #[default]
    V2,
    /// `messaging`: the bare message dict.
    V1,
}

/// How the context travels inside a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextStyle {
    /// `_context_<key>` entries (rabbit).
    Flattened,
    /// One object under `_context` (kafka).
    Nested,
}

/// A notification as it travels: oslo's message dict.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationMessage {
    /// `str(uuid4())`, with dashes.
    pub message_id: String,
    /// Who sent it, e.g. `compute.host1`.
    pub publisher_id: String,
    /// What happened, e.g. `compute.instance.create.end`.
    pub event_type: String,
    /// Its priority (uppercase on the wire).
    pub priority: Priority,
    /// Any JSON value.
    pub payload: Value,
    /// `YYYY-MM-DD HH:MM:SS.ffffff`, naive UTC.
    pub timestamp: String,
    /// The sender's context.
    pub context: Map<String, Value>,
    /// `_signature`, when the notifier signs (see [`crate::signing`]); drivers carry it as is.
    pub signature: Option<String>,
}

impl NotificationMessage {
    /// The message dict, keys in oslo's order (`_signature`, when signed, before the context).
    pub fn to_map(&self, style: ContextStyle, unique_id: Option<&str>) -> Map<String, Value> {
        let mut msg = Map::with_capacity(8);
        msg.insert("message_id".into(), Value::String(self.message_id.clone()));
        msg.insert(
            "publisher_id".into(),
            Value::String(self.publisher_id.clone()),
        );
        msg.insert("event_type".into(), Value::String(self.event_type.clone()));
        msg.insert(
            "priority".into(),
            Value::String(self.priority.as_upper_str().into()),
        );
        msg.insert("payload".into(), self.payload.clone());
        msg.insert("timestamp".into(), Value::String(self.timestamp.clone()));
        if let Some(unique_id) = unique_id {
            msg.insert("_unique_id".into(), Value::String(unique_id.into()));
        }
        if let Some(signature) = &self.signature {
            msg.insert(SIGNATURE_KEY.into(), Value::String(signature.clone()));
        }
        match style {
            ContextStyle::Flattened => flatten_context(&mut msg, &self.context),
            ContextStyle::Nested => {
                msg.insert("_context".into(), Value::Object(self.context.clone()));
            }
        }
        msg
    }

    /// Encode as a message body in `format`: the message dict of [`to_map`](Self::to_map),
    /// serialized from the borrowed fields (no copy of payload and context).
    pub fn encode(
        &self,
        format: NotificationFormat,
        style: ContextStyle,
        unique_id: Option<&str>,
    ) -> Result<Vec<u8>> {
        let inner = json::to_vec(&Dict {
            message: self,
            style,
            unique_id,
        })?;
        Ok(match format {
            NotificationFormat::V2 => envelope(&inner)?,
            NotificationFormat::V1 => inner,
        })
    }

    /// Decode a body in either format and either context style; also returns the
    /// `_unique_id`, if any.
    pub fn decode(body: &[u8]) -> Result<(Self, Option<String>)> {
        Self::from_map(super::decode_body(body)?)
    }

    /// Read a decoded message dict.
    pub fn from_map(mut msg: Map<String, Value>) -> Result<(Self, Option<String>)> {
        let priority = take_string(&mut msg, "priority")?
            .ok_or_else(|| {
                MessagingError::MalformedMessage("notification has no `priority`".into())
            })?
            .parse()?;
        let context = match msg.shift_remove("_context") {
            Some(Value::Object(context)) => context,
            Some(Value::Null) | None => unflatten_context(&mut msg),
            Some(other) => {
                return Err(MessagingError::MalformedMessage(format!(
                    "`_context` should be an object, got {other}"
                )))
            }
        };
        let message = Self {
            message_id: take_string(&mut msg, "message_id")?.unwrap_or_default(),
            publisher_id: take_string(&mut msg, "publisher_id")?.unwrap_or_default(),
            event_type: take_string(&mut msg, "event_type")?.unwrap_or_default(),
            priority,
            payload: msg.shift_remove("payload").unwrap_or(Value::Null),
            timestamp: take_string(&mut msg, "timestamp")?.unwrap_or_default(),
            context,
            signature: take_string(&mut msg, SIGNATURE_KEY)?,
        };
        Ok((message, take_string(&mut msg, "_unique_id")?))
    }
}

/// The message dict of [`NotificationMessage::to_map`], keys in the same order, serialized
/// straight from the message.
struct Dict<'a> {
    message: &'a NotificationMessage,
    style: ContextStyle,
    unique_id: Option<&'a str>,
}

impl Serialize for Dict<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let m = self.message;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("message_id", &m.message_id)?;
        map.serialize_entry("publisher_id", &m.publisher_id)?;
        map.serialize_entry("event_type", &m.event_type)?;
        map.serialize_entry("priority", m.priority.as_upper_str())?;
        map.serialize_entry("payload", &m.payload)?;
        map.serialize_entry("timestamp", &m.timestamp)?;
        if let Some(unique_id) = self.unique_id {
            map.serialize_entry("_unique_id", unique_id)?;
        }
        if let Some(signature) = &m.signature {
            map.serialize_entry(SIGNATURE_KEY, signature)?;
        }
        match self.style {
            ContextStyle::Flattened => {
                for (key, value) in &m.context {
                    map.serialize_entry(&format!("{CONTEXT_PREFIX}{key}"), value)?;
                }
            }
            ContextStyle::Nested => map.serialize_entry("_context", &m.context)?,
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_writes_the_message_dict() {
        let mut context = Map::new();
        context.insert("user".into(), Value::String("u\u{e9}".into()));
        context.insert("roles".into(), serde_json::json!(["admin"]));
        let mut message = NotificationMessage {
            message_id: "m-1".into(),
            publisher_id: "compute.host1".into(),
            event_type: "compute.instance.create.end".into(),
            priority: Priority::Info,
            payload: serde_json::json!({"id": 1, "name": "\"x\"", "nested": {"a": [1.5, null]}}),
            timestamp: "2026-11-21 14:53:02.359881".into(),
            context,
            signature: None,
        };
        for signature in [None, Some("sig".to_owned())] {
            message.signature = signature;
            for style in [ContextStyle::Flattened, ContextStyle::Nested] {
                for unique_id in [None, Some("u-1")] {
                    let dict = json::to_vec(&message.to_map(style, unique_id)).unwrap();
                    for format in [NotificationFormat::V1, NotificationFormat::V2] {
                        let expected = match format {
                            NotificationFormat::V1 => dict.clone(),
                            NotificationFormat::V2 => envelope(&dict).unwrap(),
                        };
                        let body = message.encode(format, style, unique_id).unwrap();
                        assert_eq!(
                            String::from_utf8(body).unwrap(),
                            String::from_utf8(expected).unwrap(),
                            "{style:?} {unique_id:?} {format:?} {:?}",
                            message.signature
                        );
                    }
                }
            }
        }
    }
}

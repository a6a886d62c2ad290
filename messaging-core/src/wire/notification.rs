//! Notification messages (oslo-wire.md §6, §8).

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use super::{
    decode_entries, json, serialize_flattened_context, string_entry, Entries, CONTEXT_PREFIX,
    ENVELOPE_CAPACITY, ENVELOPE_HEAD, ENVELOPE_TAIL, SIGNATURE_KEY,
};
use crate::error::{MessagingError, Result};
use crate::priority::Priority;

/// The message dict of a [`NotificationMessage`] (see [`NotificationMessage::dict`]).
#[derive(Debug, Clone, Copy)]
pub struct NotificationDict<'a> {
    message: &'a NotificationMessage,
    context: Option<ContextStyle>,
    unique_id: Option<&'a str>,
}

impl Serialize for NotificationDict<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let message = self.message;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("message_id", &message.message_id)?;
        map.serialize_entry("publisher_id", &message.publisher_id)?;
        map.serialize_entry("event_type", &message.event_type)?;
        map.serialize_entry("priority", message.priority.as_upper_str())?;
        map.serialize_entry("payload", &message.payload)?;
        map.serialize_entry("timestamp", &message.timestamp)?;
        if let Some(unique_id) = self.unique_id {
            map.serialize_entry("_unique_id", unique_id)?;
        }
        if let Some(signature) = &message.signature {
            map.serialize_entry(SIGNATURE_KEY, signature)?;
        }
        match self.context {
            Some(ContextStyle::Flattened) => {
                serialize_flattened_context(&mut map, &message.context)?
            }
            Some(ContextStyle::Nested) => map.serialize_entry("_context", &message.context)?,
            None => {}
        }
        map.end()
    }
}

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
    /// The message dict to serialize (borrowing, not copying), keys in oslo's order
    /// (`_signature`, when signed, before the context); the context in `context` style, or
    /// left out with `None` (the AMQP 1.0 driver sends it beside the message).
    pub fn dict<'a>(
        &'a self,
        context: Option<ContextStyle>,
        unique_id: Option<&'a str>,
    ) -> NotificationDict<'a> {
        NotificationDict {
            message: self,
            context,
            unique_id,
        }
    }

    /// Encode as a message body in `format`: the message dict of [`dict`](Self::dict),
    /// serialized from the borrowed fields (no copy of payload and context).
    pub fn encode(
        &self,
        format: NotificationFormat,
        style: ContextStyle,
        unique_id: Option<&str>,
    ) -> Result<Vec<u8>> {
        Ok(match format {
            NotificationFormat::V2 => self.envelope(Some(style), unique_id),
            NotificationFormat::V1 => json::to_vec(&self.dict(Some(style), unique_id))?,
        })
    }

    /// The `2.0` envelope of the message dict of [`dict`](Self::dict): the bytes of
    /// [`to_envelope`](super::to_envelope)`(&self.dict(context, unique_id))`, written directly (the inner JSON of
    /// a notification is mostly plain strings, which this copies without serde_json's escaping
    /// byte by byte).
    pub fn envelope(&self, context: Option<ContextStyle>, unique_id: Option<&str>) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENVELOPE_CAPACITY);
        out.extend_from_slice(ENVELOPE_HEAD);
        let mut writer = json::InsideStringWriter(&mut out);
        let mut dict = writer.object();
        dict.key("message_id").string(&self.message_id);
        dict.key("publisher_id").string(&self.publisher_id);
        dict.key("event_type").string(&self.event_type);
        dict.key("priority").string(self.priority.as_upper_str());
        dict.key("payload").value(&self.payload);
        dict.key("timestamp").string(&self.timestamp);
        if let Some(unique_id) = unique_id {
            dict.key("_unique_id").string(unique_id);
        }
        if let Some(signature) = &self.signature {
            dict.key(SIGNATURE_KEY).string(signature);
        }
        match context {
            Some(ContextStyle::Flattened) => {
                for (key, value) in &self.context {
                    dict.prefixed_key(CONTEXT_PREFIX, key).value(value);
                }
            }
            Some(ContextStyle::Nested) => dict.key("_context").map(&self.context),
            None => {}
        }
        dict.end();
        out.extend_from_slice(ENVELOPE_TAIL);
        out
    }

    /// Decode a body in either format and either context style; also returns the
    /// `_unique_id`, if any.
    pub fn decode(body: &[u8]) -> Result<(Self, Option<String>)> {
        decode_entries::<NotificationEntries>(body)?.into_message()
    }

    /// Read a decoded message dict.
    pub fn from_map(msg: Map<String, Value>) -> Result<(Self, Option<String>)> {
        NotificationEntries::of(msg).into_message()
    }
}

/// The entries of a notification's message dict, before they are checked.
#[derive(Debug, Default)]
struct NotificationEntries {
    message_id: Option<Value>,
    publisher_id: Option<Value>,
    event_type: Option<Value>,
    priority: Option<Value>,
    payload: Option<Value>,
    timestamp: Option<Value>,
    signature: Option<Value>,
    unique_id: Option<Value>,
    /// `_context` (kafka).
    nested_context: Option<Value>,
    /// From the `_context_<key>` entries (rabbit).
    context: Map<String, Value>,
}

impl Entries for NotificationEntries {
    fn set(&mut self, key: &str, value: Value) {
        let slot = match key {
            "message_id" => &mut self.message_id,
            "publisher_id" => &mut self.publisher_id,
            "event_type" => &mut self.event_type,
            "priority" => &mut self.priority,
            "payload" => &mut self.payload,
            "timestamp" => &mut self.timestamp,
            SIGNATURE_KEY => &mut self.signature,
            "_unique_id" => &mut self.unique_id,
            "_context" => &mut self.nested_context,
            _ => {
                if let Some(name) = key.strip_prefix(CONTEXT_PREFIX) {
                    self.context.insert(name.to_owned(), value);
                }
                return;
            }
        };
        *slot = Some(value);
    }
}

impl NotificationEntries {
    fn into_message(self) -> Result<(NotificationMessage, Option<String>)> {
        let priority = string_entry("priority", self.priority)?
            .ok_or_else(|| {
                MessagingError::MalformedMessage("notification has no `priority`".into())
            })?
            .parse()?;
        let context = match self.nested_context {
            Some(Value::Object(context)) => context,
            Some(Value::Null) | None => self.context,
            Some(other) => {
                return Err(MessagingError::MalformedMessage(format!(
                    "`_context` should be an object, got {other}"
                )))
            }
        };
        let text = |key, value| string_entry(key, value).map(Option::unwrap_or_default);
        let message = NotificationMessage {
            message_id: text("message_id", self.message_id)?,
            publisher_id: text("publisher_id", self.publisher_id)?,
            event_type: text("event_type", self.event_type)?,
            priority,
            payload: self.payload.unwrap_or(Value::Null),
            timestamp: text("timestamp", self.timestamp)?,
            context,
            signature: string_entry(SIGNATURE_KEY, self.signature)?,
        };
        Ok((message, string_entry("_unique_id", self.unique_id)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message dict as a map, built independently of [`NotificationMessage::dict`]: keys
    /// in oslo's order.
    fn reference_map(
        m: &NotificationMessage,
        style: ContextStyle,
        unique_id: Option<&str>,
    ) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("message_id".into(), m.message_id.clone().into());
        map.insert("publisher_id".into(), m.publisher_id.clone().into());
        map.insert("event_type".into(), m.event_type.clone().into());
        map.insert("priority".into(), m.priority.as_upper_str().into());
        map.insert("payload".into(), m.payload.clone());
        map.insert("timestamp".into(), m.timestamp.clone().into());
        if let Some(unique_id) = unique_id {
            map.insert("_unique_id".into(), unique_id.into());
        }
        if let Some(signature) = &m.signature {
            map.insert(SIGNATURE_KEY.into(), signature.clone().into());
        }
        match style {
            ContextStyle::Flattened => {
                for (key, value) in &m.context {
                    map.insert(format!("{CONTEXT_PREFIX}{key}"), value.clone());
                }
            }
            ContextStyle::Nested => {
                map.insert("_context".into(), Value::Object(m.context.clone()));
            }
        }
        map
    }

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
                    let dict = json::to_vec(&reference_map(&message, style, unique_id)).unwrap();
                    for format in [NotificationFormat::V1, NotificationFormat::V2] {
                        let expected = match format {
                            NotificationFormat::V1 => dict.clone(),
                            NotificationFormat::V2 => super::super::envelope(&dict).unwrap(),
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

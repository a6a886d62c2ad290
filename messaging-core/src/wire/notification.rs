//! Notification messages (oslo-wire.md §6, §8).

use serde_json::{Map, Value};

use super::{envelope, flatten_context, json, take_string, unflatten_context, SIGNATURE_KEY};
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

    /// Encode as a message body in `format`.
    pub fn encode(
        &self,
        format: NotificationFormat,
        style: ContextStyle,
        unique_id: Option<&str>,
    ) -> Result<Vec<u8>> {
        let inner = json::to_vec(&self.to_map(style, unique_id))?;
        Ok(match format {
            NotificationFormat::V2 => envelope(&inner),
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

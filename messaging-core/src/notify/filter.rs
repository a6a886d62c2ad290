//! Notification filters: regular expressions on the fields of a notification (oslo's
//! `NotificationFilter`).

use regex::Regex;
use serde_json::{Map, Value};

use super::notification::Notification;
use crate::error::{MessagingError, Result};

/// Passes a notification only when every rule matches. Patterns match at the start of the
/// value, as Python's `re.match`; a missing field does not match. Non-string values are
/// matched against their JSON text.
///
/// ```
/// use messaging_core::NotificationFilter;
///
/// let filter = NotificationFilter::new()
///     .event_type(r"compute\.instance\..*")?
///     .payload("/state", "active|error")?;
/// # Ok::<(), messaging_core::MessagingError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct NotificationFilter {
    publisher_id: Option<Regex>,
    event_type: Option<Regex>,
    context: Vec<(String, Regex)>,
    metadata: Vec<(String, Regex)>,
    payload: Vec<(String, Regex)>,
}

fn compile(field: &str, pattern: &str) -> Result<Regex> {
    Regex::new(&format!("^(?:{pattern})")).map_err(|e| MessagingError::InvalidOption {
        option: format!("filter.{field}"),
        value: pattern.to_owned(),
        reason: e.to_string(),
    })
}

fn matches(regex: &Regex, value: Option<&Value>) -> bool {
    match value {
        Some(Value::String(s)) => regex.is_match(s),
        Some(Value::Null) | None => false,
        Some(other) => regex.is_match(&other.to_string()),
    }
}

fn all_match(rules: &[(String, Regex)], map: &Map<String, Value>) -> bool {
    rules
        .iter()
        .all(|(key, regex)| matches(regex, map.get(key)))
}

impl NotificationFilter {
    /// A filter that passes everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Match the publisher id.
    pub fn publisher_id(mut self, pattern: &str) -> Result<Self> {
        self.publisher_id = Some(compile("publisher_id", pattern)?);
        Ok(self)
    }

    /// Match the event type.
    pub fn event_type(mut self, pattern: &str) -> Result<Self> {
        self.event_type = Some(compile("event_type", pattern)?);
        Ok(self)
    }

    /// Match a context key.
    pub fn context(mut self, key: &str, pattern: &str) -> Result<Self> {
        self.context
            .push((key.to_owned(), compile("context", pattern)?));
        Ok(self)
    }

    /// Match a metadata key (`message_id`, `timestamp`).
    pub fn metadata(mut self, key: &str, pattern: &str) -> Result<Self> {
        self.metadata
            .push((key.to_owned(), compile("metadata", pattern)?));
        Ok(self)
    }

    /// Match a payload value: a top-level key, or a JSON pointer such as `/instance/state`.
    pub fn payload(mut self, key_or_pointer: &str, pattern: &str) -> Result<Self> {
        let pointer = if key_or_pointer.starts_with('/') {
            key_or_pointer.to_owned()
        } else {
            format!("/{}", key_or_pointer.replace('~', "~0").replace('/', "~1"))
        };
        self.payload.push((pointer, compile("payload", pattern)?));
        Ok(self)
    }

    /// True if `notification` passes.
    pub fn accepts(&self, notification: &Notification) -> bool {
        let text = |s: &str| Value::String(s.to_owned());
        self.publisher_id
            .as_ref()
            .is_none_or(|re| matches(re, Some(&text(&notification.publisher_id))))
            && self
                .event_type
                .as_ref()
                .is_none_or(|re| matches(re, Some(&text(&notification.event_type))))
            && all_match(&self.context, notification.context.as_map())
            && all_match(&self.metadata, &notification.metadata.to_map())
            && self
                .payload
                .iter()
                .all(|(pointer, re)| matches(re, notification.payload.pointer(pointer)))
    }
}

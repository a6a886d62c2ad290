//! The oslo.messaging wire codec, shared by every driver: the `2.0` envelope, RPC requests and
//! replies, notifications, failures, ids, timestamps and duplicate suppression.
//!
//! Formats follow `oslo-wire.md` (captured from Python oslo.messaging 18.x). Drivers choose the
//! framing that their protocol uses (AMQP 0-9-1 body, Kafka record, AMQP 1.0 body) and call into
//! this module for the content, so that a format fix lands once.

pub mod json;
mod notification;
mod rpc;

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::error::{MessagingError, Result};

pub use notification::{ContextStyle, NotificationFormat, NotificationMessage};
pub use rpc::{
    decode_failure, encode_failure, CallInfo, Reply, ReplyEvent, ReplyMessage, RequestMessage,
    RpcRequest,
};

/// Key of the envelope version.
pub const VERSION_KEY: &str = "oslo.version";
/// Key of the JSON-encoded inner message.
pub const MESSAGE_KEY: &str = "oslo.message";
/// The envelope version this library writes and reads.
pub const ENVELOPE_VERSION: &str = "2.0";
/// The `content_type` every AMQP 0-9-1 message carries (oslo drops messages without it).
pub const CONTENT_TYPE: &str = "application/json";
/// The `content_encoding` every AMQP 0-9-1 message carries.
pub const CONTENT_ENCODING: &str = "utf-8";
/// Key of a message's signature (see [`crate::signing`]). Python oslo.messaging ignores unknown
/// top-level keys of requests, replies and notifications, so signed messages still decode there.
pub const SIGNATURE_KEY: &str = "_signature";
/// Prefix of the flattened context keys in RPC requests and rabbit notifications.
pub const CONTEXT_PREFIX: &str = "_context_";

/// Wrap an already encoded inner message in the `2.0` envelope:
/// `{"oslo.version": "2.0", "oslo.message": "<inner JSON as a string>"}`.
pub fn envelope(inner: &[u8]) -> Vec<u8> {
    // The inner JSON is ASCII (Python style), so it can be embedded as a string directly.
    let inner = std::str::from_utf8(inner).expect("wire::json writes ASCII");
    let mut out = Vec::with_capacity(inner.len() + inner.len() / 4 + 48);
    out.extend_from_slice(b"{\"oslo.version\": \"2.0\", \"oslo.message\": ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, json::PythonFormatter);
    serde::Serialize::serialize(inner, &mut ser).expect("writing to a Vec cannot fail");
    out.push(b'}');
    out
}

/// Decode a message body into the inner message dict.
///
/// Accepts the `2.0` envelope (checking its version, as oslo does) and, like oslo, any other
/// JSON object as an un-enveloped `1.0` message. Everything else is a
/// [`MessagingError::MalformedMessage`].
pub fn decode_body(body: &[u8]) -> Result<Map<String, Value>> {
    let outer: Value = serde_json::from_slice(body)
        .map_err(|e| MessagingError::MalformedMessage(format!("body is not JSON: {e}")))?;
    let Value::Object(mut outer) = outer else {
        return Err(MessagingError::MalformedMessage(
            "body is not a JSON object".into(),
        ));
    };
    if !(outer.contains_key(VERSION_KEY) && outer.contains_key(MESSAGE_KEY)) {
        return Ok(outer);
    }
    let version = outer
        .get(VERSION_KEY)
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !envelope_version_supported(version) {
        return Err(MessagingError::MalformedMessage(format!(
            "unsupported envelope version `{version}`"
        )));
    }
    match outer.remove(MESSAGE_KEY) {
        Some(Value::String(inner)) => match serde_json::from_str(&inner) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(MessagingError::MalformedMessage(
                "inner message is not an object".into(),
            )),
            Err(e) => Err(MessagingError::MalformedMessage(format!(
                "inner message is not JSON: {e}"
            ))),
        },
        _ => Err(MessagingError::MalformedMessage(
            "`oslo.message` is not a string".into(),
        )),
    }
}

/// oslo accepts envelope versions with major 2 and minor ≤ 0.
fn envelope_version_supported(version: &str) -> bool {
    version.parse::<crate::Version>().is_ok_and(|v| {
        crate::Version {
            major: 2,
            minor: 0,
            revision: 0,
        }
        .can_serve(&v)
    })
}

/// A new `_msg_id` / `_unique_id`: uuid4 as 32 lowercase hex digits.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A new notification `message_id`: uuid4 with dashes (36 characters).
pub fn new_message_id() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string()
}

/// A new reply queue name, `reply_<uuid4 hex>`.
pub fn new_reply_queue_name() -> String {
    format!("reply_{}", new_id())
}

/// The current UTC time as Python's `str(datetime.utcnow())`: `YYYY-MM-DD HH:MM:SS.ffffff`,
/// without the fraction when the microseconds are zero.
pub fn timestamp_now() -> String {
    format_timestamp(time::OffsetDateTime::now_utc())
}

fn format_timestamp(t: time::OffsetDateTime) -> String {
    let micros = t.microsecond();
    let base = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if micros == 0 {
        base
    } else {
        format!("{base}.{micros:06}")
    }
}

/// Flatten a context into `_context_<key>` entries of `msg`.
pub(crate) fn flatten_context(msg: &mut Map<String, Value>, ctx: &Map<String, Value>) {
    for (key, value) in ctx {
        msg.insert(format!("{CONTEXT_PREFIX}{key}"), value.clone());
    }
}

/// Take the `_context_<key>` entries out of `msg`, as a context map.
pub(crate) fn unflatten_context(msg: &mut Map<String, Value>) -> Map<String, Value> {
    let keys: Vec<String> = msg
        .keys()
        .filter(|k| k.starts_with(CONTEXT_PREFIX))
        .cloned()
        .collect();
    keys.into_iter()
        .filter_map(|key| {
            let value = msg.shift_remove(&key)?;
            Some((key[CONTEXT_PREFIX.len()..].to_owned(), value))
        })
        .collect()
}

/// Drops messages whose `_unique_id` was seen recently, as oslo's rabbit driver does (a
/// redelivery after a reconnect must not run a request twice, nor a notification).
///
/// oslo remembers the last 16 ids; with many concurrent senders a redelivery after a broker
/// failover comes thousands of messages after the original, so the window here is the last
/// `count` ids seen within `age` (by default [`DuplicateFilter::DEFAULT_COUNT`] ids and
/// [`DuplicateFilter::DEFAULT_AGE`]).
#[derive(Debug, Clone)]
pub struct DuplicateFilter {
    /// Remembered ids, oldest first, with when they were remembered.
    order: VecDeque<(Arc<str>, Instant)>,
    seen: HashSet<Arc<str>>,
    count: usize,
    age: Duration,
}

impl Default for DuplicateFilter {
    fn default() -> Self {
        Self::new(Self::DEFAULT_COUNT, Self::DEFAULT_AGE)
    }
}

impl DuplicateFilter {
    /// How many ids are remembered by default (about 1 MiB).
    pub const DEFAULT_COUNT: usize = 10_000;
    /// How long ids are remembered by default.
    pub const DEFAULT_AGE: Duration = Duration::from_secs(600);

    /// Remember the last `count` ids (at least 1), each for at most `age`.
    pub fn new(count: usize, age: Duration) -> Self {
        Self {
            order: VecDeque::new(),
            seen: HashSet::new(),
            count: count.max(1),
            age,
        }
    }

    /// Remember the last `capacity` ids, however old (oslo remembers 16).
    pub fn with_capacity(capacity: usize) -> Self {
        Self::new(capacity, Duration::MAX)
    }

    /// True if `id` was remembered recently.
    pub fn contains(&self, id: &str) -> bool {
        self.seen.contains(id)
    }

    /// Remember `id` (once its message has been acknowledged: a requeued message must come
    /// back, as in oslo).
    pub fn remember(&mut self, id: &str) {
        let now = Instant::now();
        while let Some((oldest, at)) = self.order.front() {
            if self.order.len() < self.count && now.duration_since(*at) < self.age {
                break;
            }
            self.seen.remove(oldest);
            self.order.pop_front();
        }
        if self.contains(id) {
            return;
        }
        let id: Arc<str> = id.into();
        self.seen.insert(id.clone());
        self.order.push_back((id, now));
    }

    /// True if `id` was seen recently; otherwise remembers it and returns false.
    pub fn is_duplicate(&mut self, id: &str) -> bool {
        let seen = self.contains(id);
        self.remember(id);
        seen
    }
}

/// Read a string field of a decoded message.
pub(crate) fn take_string(msg: &mut Map<String, Value>, key: &str) -> Result<Option<String>> {
    match msg.shift_remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(MessagingError::MalformedMessage(format!(
            "`{key}` should be a string, got {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_embeds_the_inner_json_as_a_string() {
        let body = envelope(br#"{"a": "\u00fc"}"#);
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"oslo.version": "2.0", "oslo.message": "{\"a\": \"\\u00fc\"}"}"#
        );
        assert_eq!(decode_body(&body).unwrap()["a"], "ü");
    }

    #[test]
    fn decode_accepts_unenveloped_objects_and_rejects_the_rest() {
        assert_eq!(decode_body(br#"{"method": "x"}"#).unwrap()["method"], "x");
        for bad in [
            &b"not json"[..],
            b"[1]",
            b"\xff\xfe",
            br#"{"oslo.version": "3.0", "oslo.message": "{}"}"#,
            br#"{"oslo.version": "2.1", "oslo.message": "{}"}"#,
            br#"{"oslo.version": "2.0", "oslo.message": 5}"#,
            br#"{"oslo.version": "2.0", "oslo.message": "[]"}"#,
            br#"{"oslo.version": "2.0", "oslo.message": "{"}"#,
        ] {
            let err = decode_body(bad).unwrap_err();
            assert!(matches!(err, MessagingError::MalformedMessage(_)), "{err}");
        }
    }

    #[test]
    fn ids_have_oslo_formats() {
        let id = new_id();
        assert_eq!(id.len(), 32);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(new_message_id().len(), 36);
        assert!(new_reply_queue_name().starts_with("reply_"));
    }

    #[test]
    fn timestamps_have_python_format() {
        use time::macros::datetime;
        assert_eq!(
            format_timestamp(datetime!(2026-11-21 14:51:51.964350 UTC)),
            "2026-11-21 14:51:51.964350"
        );
        assert_eq!(
            format_timestamp(datetime!(2026-01-02 03:04:05 UTC)),
            "2026-01-02 03:04:05"
        );
        let now = timestamp_now();
        assert!(now.len() == 19 || now.len() == 26, "{now}");
        assert_eq!(&now[10..11], " ");
    }

    #[test]
    fn duplicate_filter_remembers_the_last_ids() {
        let mut filter = DuplicateFilter::with_capacity(2);
        assert!(!filter.is_duplicate("a"));
        assert!(filter.is_duplicate("a"));
        assert!(!filter.is_duplicate("b"));
        assert!(!filter.is_duplicate("c"));
        assert!(!filter.is_duplicate("a"), "a fell out of the window");
    }

    #[test]
    fn duplicate_filter_forgets_ids_older_than_its_age() {
        let mut filter = DuplicateFilter::new(100, Duration::from_millis(50));
        filter.remember("a");
        assert!(filter.contains("a"));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!filter.is_duplicate("b"));
        assert!(!filter.contains("a"), "a is older than the window");
        assert!(filter.is_duplicate("b"));
        let mut filter = DuplicateFilter::default();
        for i in 0..DuplicateFilter::DEFAULT_COUNT {
            filter.remember(&i.to_string());
        }
        assert!(filter.contains("0"), "the default window holds 10,000 ids");
        filter.remember("one more");
        assert!(!filter.contains("0") && filter.contains("1"));
    }
}

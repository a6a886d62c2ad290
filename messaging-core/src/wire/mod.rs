//! The oslo.messaging wire codec, shared by every driver: the `2.0` envelope, RPC requests and
//! replies, notifications, failures, ids, timestamps and duplicate suppression.
//!
//! Formats follow `oslo-wire.md` (captured from Python oslo.messaging 18.x). Drivers choose the
//! framing that their protocol uses (AMQP 0-9-1 body, Kafka record, AMQP 1.0 body) and call into
//! this module for the content, so that a format fix lands once.

pub mod json;
mod notification;
mod rpc;

use std::borrow::Cow;
use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::error::{MessagingError, Result};

pub use notification::{ContextStyle, NotificationDict, NotificationFormat, NotificationMessage};
pub use rpc::{
    decode_failure, encode_failure, CallInfo, OutgoingReply, OutgoingRequest, Reply, ReplyEvent,
    ReplyMessage, RequestDict, RequestMessage, RpcRequest,
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

/// The envelope's bytes up to the opening quote of the inner message string.
const ENVELOPE_HEAD: &[u8] = b"{\"oslo.version\": \"2.0\", \"oslo.message\": \"";
/// The envelope's bytes after the inner message string.
const ENVELOPE_TAIL: &[u8] = b"\"}";
/// What an envelope is given room for at first: a small message's.
const ENVELOPE_CAPACITY: usize = 512;

/// Encode `inner` as Python's `json.dumps` would and wrap it in the `2.0` envelope, in one
/// pass: the same bytes as `envelope(&json::to_vec(inner)?)`, without the intermediate copy.
pub fn to_envelope<T: Serialize + ?Sized>(inner: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(ENVELOPE_CAPACITY);
    out.extend_from_slice(ENVELOPE_HEAD);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, json::InsideString);
    inner.serialize(&mut ser)?;
    out.extend_from_slice(ENVELOPE_TAIL);
    Ok(out)
}

/// Wrap an already encoded inner message in the `2.0` envelope:
/// `{"oslo.version": "2.0", "oslo.message": "<inner JSON as a string>"}`. `inner` that is not
/// UTF-8 cannot be a JSON string: [`MessagingError::MalformedMessage`].
pub fn envelope(inner: &[u8]) -> Result<Vec<u8>> {
    // The inner JSON is ASCII (Python style), so it can be embedded as a string directly.
    let inner = std::str::from_utf8(inner).map_err(|e| {
        MessagingError::MalformedMessage(format!("the inner message is not UTF-8: {e}"))
    })?;
    let mut out = Vec::with_capacity(inner.len() + inner.len() / 4 + 48);
    out.extend_from_slice(b"{\"oslo.version\": \"2.0\", \"oslo.message\": ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, json::PythonFormatter);
    serde::Serialize::serialize(inner, &mut ser).expect("writing to a Vec cannot fail");
    out.push(b'}');
    Ok(out)
}

/// Decode a message body into the inner message dict.
///
/// Accepts the `2.0` envelope (checking its version, as oslo does) and, like oslo, any other
/// JSON object as an un-enveloped `1.0` message. Everything else is a
/// [`MessagingError::MalformedMessage`].
pub fn decode_body(body: &[u8]) -> Result<Map<String, Value>> {
    let outer: Value = serde_json::from_slice(body)
        .map_err(|e| MessagingError::MalformedMessage(format!("body is not JSON: {e}")))?;
    let Value::Object(outer) = outer else {
        return Err(MessagingError::MalformedMessage(
            "body is not a JSON object".into(),
        ));
    };
    open_envelope(outer)
}

/// The inner message dict of a decoded body: the `2.0` envelope's, after checking its version,
/// or the body itself when it is not an envelope (un-enveloped `1.0`).
pub fn open_envelope(mut outer: Map<String, Value>) -> Result<Map<String, Value>> {
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
    // Digit by digit: every notification carries one, and `format!` costs ten times more.
    let mut out = String::with_capacity(26);
    let mut digits = |value: u32, width: u32, then: Option<char>| {
        for place in (0..width).rev() {
            let digit = value / 10u32.pow(place) % 10;
            out.push(char::from(b'0' + digit as u8));
        }
        out.extend(then);
    };
    digits(t.year().unsigned_abs(), 4, Some('-'));
    digits(u8::from(t.month()).into(), 2, Some('-'));
    digits(t.day().into(), 2, Some(' '));
    digits(t.hour().into(), 2, Some(':'));
    digits(t.minute().into(), 2, Some(':'));
    let micros = t.microsecond();
    digits(t.second().into(), 2, (micros != 0).then_some('.'));
    if micros != 0 {
        digits(micros, 6, None);
    }
    out
}

/// Write a context as `_context_<key>` entries of the map being serialized.
pub(crate) fn serialize_flattened_context<M: SerializeMap>(
    map: &mut M,
    ctx: &Map<String, Value>,
) -> std::result::Result<(), M::Error> {
    for (key, value) in ctx {
        map.serialize_entry(&ContextKey(key), value)?;
    }
    Ok(())
}

/// `_context_<key>`, written as a map key without building the string.
struct ContextKey<'a>(&'a str);

impl Serialize for ContextKey<'_> {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{CONTEXT_PREFIX}{}", self.0))
    }
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
    /// Hashed with rapidhash, seeded per process as the standard hasher is: every received
    /// request and notification is looked up here, and SipHash cost more than the rest of the
    /// filter.
    seen: HashSet<Arc<str>, rapidhash::fast::RandomState>,
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
            seen: HashSet::default(),
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
        self.forget_old(now);
        if !self.contains(id) {
            self.insert(id, now);
        }
    }

    /// True if `id` was seen recently; otherwise remembers it and returns false.
    pub fn is_duplicate(&mut self, id: &str) -> bool {
        let now = Instant::now();
        self.forget_old(now);
        if self.contains(id) {
            return true;
        }
        self.insert(id, now);
        false
    }

    /// Forget the ids beyond the window: the oldest past `count`, and those older than `age`.
    fn forget_old(&mut self, now: Instant) {
        while let Some((oldest, at)) = self.order.front() {
            if self.order.len() < self.count && now.duration_since(*at) < self.age {
                break;
            }
            self.seen.remove(oldest);
            self.order.pop_front();
        }
    }

    fn insert(&mut self, id: &str, now: Instant) {
        let id: Arc<str> = id.into();
        self.seen.insert(id.clone());
        self.order.push_back((id, now));
    }
}

/// A string entry of a decoded message (`null` counts as absent).
pub(crate) fn string_entry(key: &str, value: Option<Value>) -> Result<Option<String>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(MessagingError::MalformedMessage(format!(
            "`{key}` should be a string, got {other}"
        ))),
    }
}

/// Collects the entries of an inner message dict that a decoder reads, as they are parsed, so
/// that no map of them is built (see [`decode_entries`]).
pub(crate) trait Entries: Default {
    /// Take one entry; a later one with the same key wins, as in a map.
    fn set(&mut self, key: &str, value: Value);

    /// The entries of a decoded map.
    fn of(map: Map<String, Value>) -> Self {
        let mut entries = Self::default();
        for (key, value) in map {
            entries.set(&key, value);
        }
        entries
    }
}

/// Decode a body's inner message into `E`: a `2.0` envelope laid out as Python and this library
/// write it straight into the entries; anything else (another layout, an un-enveloped `1.0`
/// message, a malformed body, with its error) through [`decode_body`].
pub(crate) fn decode_entries<E: Entries>(body: &[u8]) -> Result<E> {
    // Checked as UTF-8 once, in bulk: parsed from bytes, serde_json would check each string.
    let collected = python_envelope_inner(body)
        .and_then(|inner| String::from_utf8(inner).ok())
        .and_then(|inner| serde_json::from_str::<Collected<E>>(&inner).ok());
    match collected {
        Some(Collected(entries)) => Ok(entries),
        None => decode_body(body).map(E::of),
    }
}

/// The inner message of an envelope in exactly the layout [`to_envelope`] writes (and Python's
/// `json.dumps`): the bytes between its head and `"}`, in which the inner JSON text has only
/// `"` and `\` escaped. `None` for anything else, including any other escape.
///
/// Eight bytes at a time: each word is stored whole and the output advances past the bytes
/// before its first special one (`"`, `\` or a control character). An inner message has an
/// escaped quote every ten bytes or so: a copy call per run between escapes cost three times
/// as much (4.2k instructions for a benchmark notification, against 1.3k).
fn python_envelope_inner(body: &[u8]) -> Option<Vec<u8>> {
    let text = body
        .strip_prefix(ENVELOPE_HEAD)?
        .strip_suffix(ENVELOPE_TAIL)?;
    // Room for a whole word stored at the last position.
    let mut inner = vec![0; text.len() + 8];
    let (mut from, mut to) = (0, 0);
    while let Some(word) = text.get(from..from + 8) {
        inner[to..to + 8].copy_from_slice(word);
        let found = special_bytes(u64::from_le_bytes(word.try_into().ok()?));
        if found == 0 {
            from += 8;
            to += 8;
            continue;
        }
        // The lowest flagged byte is always a true one (see `special_bytes`).
        let clean = found.trailing_zeros() as usize / 8;
        inner[to + clean] = escaped_at(text, from + clean)?;
        from += clean + 2;
        to += clean + 1;
    }
    while let Some(&byte) = text.get(from) {
        if byte == b'"' || byte == b'\\' || byte < b' ' {
            inner[to] = escaped_at(text, from)?;
            from += 2;
        } else {
            inner[to] = byte;
            from += 1;
        }
        to += 1;
    }
    inner.truncate(to);
    Some(inner)
}

/// The character escaped at `text[at..]`: `Some` only for `\"` and `\\`.
fn escaped_at(text: &[u8], at: usize) -> Option<u8> {
    match text.get(at..at + 2) {
        Some([b'\\', escaped @ (b'"' | b'\\')]) => Some(*escaped),
        // A `"` not escaped, a control character or another escape.
        _ => None,
    }
}

/// The high bit of each byte of `word` that is `"`, `\` or below a space (the zero-byte test
/// of Mycroft, as serde_json's string scanner does it). A borrow can also flag a byte above a
/// true one, never one below it: the lowest flag is exact.
fn special_bytes(word: u64) -> u64 {
    const ONES: u64 = u64::MAX / 255;
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word;
    let equal = |byte: u8| below(word ^ (ONES * u64::from(byte)), 1);
    (below(word, b' ') | equal(b'"') | equal(b'\\')) & (ONES << 7)
}

/// A map key, borrowed from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, key: &'de str) -> std::result::Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }

            fn visit_str<E>(self, key: &str) -> std::result::Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }
        }

        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A JSON object's entries, collected by `E`.
struct Collected<E>(E);

impl<'de, E: Entries> Deserialize<'de> for Collected<E> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct Collect<E>(PhantomData<E>);

        impl<'de, E: Entries> Visitor<'de> for Collect<E> {
            type Value = Collected<E>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut entries = E::default();
                while let Some((Key(key), value)) = map.next_entry::<Key, Value>()? {
                    entries.set(&key, value);
                }
                Ok(Collected(entries))
            }
        }

        deserializer.deserialize_map(Collect(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_embeds_the_inner_json_as_a_string() {
        let body = envelope(br#"{"a": "\u00fc"}"#).unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"oslo.version": "2.0", "oslo.message": "{\"a\": \"\\u00fc\"}"}"#
        );
        assert_eq!(decode_body(&body).unwrap()["a"], "ü");
    }

    /// Encoding straight into the envelope escapes what the two passes escape.
    #[test]
    fn to_envelope_writes_what_envelope_of_the_encoded_message_writes() {
        let inner = serde_json::json!({
            "quote\"key": "a \"quoted\" \\ back\\slash",
            "unicode": "ü\u{1F600}\u{7f}\u{1}\n\t/",
            "nested": {"list": [1, 2.5, null, true, "\\\""]},
        });
        let two_passes = envelope(&json::to_vec(&inner).unwrap()).unwrap();
        assert_eq!(to_envelope(&inner).unwrap(), two_passes);
        assert_eq!(
            decode_body(&two_passes).unwrap(),
            *inner.as_object().unwrap()
        );
    }

    /// Un-escaping word by word gives what reading byte by byte gives, wherever the escapes
    /// and the refused bytes sit in a word, next to bytes one away from each special one.
    #[test]
    fn envelope_inner_is_what_a_byte_by_byte_reading_gives() {
        fn byte_by_byte(text: &[u8]) -> Option<Vec<u8>> {
            let mut inner = Vec::new();
            let mut bytes = text.iter();
            while let Some(&byte) = bytes.next() {
                match byte {
                    b'\\' => match bytes.next() {
                        Some(&escaped @ (b'"' | b'\\')) => inner.push(escaped),
                        _ => return None,
                    },
                    b'"' | 0..=0x1f => return None,
                    _ => inner.push(byte),
                }
            }
            Some(inner)
        }
        let filler = [b'a', b' ', b'!', b'#', b'[', b']', b'~', 0x7f, 0x80, 0xff];
        let specials: [&[u8]; 8] = [
            b"\\\"",
            b"\\\\",
            b"\\\"\\\"",
            b"\"",
            b"\\n",
            b"\\",
            b"\x00",
            b"\x1f",
        ];
        for special in specials {
            for len in 0..24 {
                for at in 0..=len {
                    let mut text: Vec<u8> = (0..len).map(|i| filler[(i + at) % 10]).collect();
                    text.splice(at..at, special.iter().copied());
                    let body = [ENVELOPE_HEAD, &text, b"\"}"].concat();
                    assert_eq!(
                        python_envelope_inner(&body),
                        byte_by_byte(&text),
                        "{text:?}"
                    );
                }
            }
        }
    }

    /// Envelopes in other layouts or with other escapes take the general path, with its
    /// verdict: valid JSON is read, invalid JSON refused.
    #[test]
    fn envelopes_in_other_layouts_decode_as_before() {
        let escaped_newline =
            br#"{"oslo.version": "2.0", "oslo.message": "{\"method\": \"m\",\n\"args\": {}}"}"#;
        assert_eq!(python_envelope_inner(escaped_newline), None);
        let request = RequestMessage::decode(escaped_newline).unwrap();
        assert_eq!(request.request.method, "m");
        let raw_newline =
            b"{\"oslo.version\": \"2.0\", \"oslo.message\": \"{\\\"method\\\": \\\"m\\\",\n}\"}";
        assert!(RequestMessage::decode(raw_newline).is_err());
        // A `"` not escaped ends the string early: another layout (here: one more key).
        let more_keys =
            br#"{"oslo.version": "2.0", "oslo.message": "{\"method\": \"m\"}", "x": "y"}"#;
        assert_eq!(python_envelope_inner(more_keys), None);
        assert_eq!(
            RequestMessage::decode(more_keys).unwrap().request.method,
            "m"
        );
        let python = envelope(br#"{"method": "m", "args": {"a": "q\"uote\\"}}"#).unwrap();
        assert_eq!(
            python_envelope_inner(&python).as_deref(),
            Some(&br#"{"method": "m", "args": {"a": "q\"uote\\"}}"#[..])
        );
    }

    #[test]
    fn envelope_refuses_an_inner_message_that_is_not_utf8() {
        let refused = envelope(b"{\"a\": \"\xff\"}");
        assert!(
            matches!(&refused, Err(MessagingError::MalformedMessage(why)) if why.contains("UTF-8")),
            "{refused:?}"
        );
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

    /// An id seen longer ago than the window's age counts as new, and is remembered again.
    #[test]
    fn an_id_older_than_the_age_is_no_duplicate() {
        let mut filter = DuplicateFilter::new(100, Duration::from_millis(50));
        assert!(!filter.is_duplicate("a"));
        assert!(filter.is_duplicate("a"));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!filter.is_duplicate("a"), "a is older than the window");
        assert!(filter.is_duplicate("a"), "and remembered again");
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

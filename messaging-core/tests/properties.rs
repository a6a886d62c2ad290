//! Property tests: encode/decode round trips of the wire codec and the URL grammar, and
//! decoders that never panic on arbitrary input.

use messaging_core::wire::{
    CallInfo, ContextStyle, NotificationFormat, NotificationMessage, ReplyEvent, ReplyMessage,
    RequestMessage, RpcRequest,
};
use messaging_core::{Priority, RemoteError, TransportHost, TransportUrl};
use proptest::prelude::*;
use serde_json::{Map, Value};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        ".*".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((".*", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn json_map() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec(("[a-z_]{1,8}", json_value()), 0..4)
        .prop_map(|kv| kv.into_iter().collect())
}

/// Entries serialized as one JSON object, repeated keys and all.
struct Dict<'a>(&'a [(String, Value)]);

impl serde::Serialize for Dict<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(key, value)| (key, value)))
    }
}

/// Inner message dicts built from the keys the decoders read (some repeated), context keys and
/// unknown keys, each with a well-typed or an arbitrary value.
fn wire_entries() -> impl Strategy<Value = Vec<(String, Value)>> {
    let key = prop::sample::select(vec![
        "method",
        "args",
        "namespace",
        "version",
        "_signature",
        "_msg_id",
        "_reply_q",
        "_timeout",
        "_unique_id",
        "result",
        "failure",
        "ending",
        "message_id",
        "publisher_id",
        "event_type",
        "priority",
        "payload",
        "timestamp",
        "_context",
        "_context_user",
        "_context_x",
        "other",
    ]);
    let value = prop_oneof![
        "[a-z0-9.]{0,6}".prop_map(Value::String),
        Just(Value::String("INFO".into())),
        Just(Value::String(
            "{\"class\": \"E\", \"message\": \"m\"}".into()
        )),
        any::<bool>().prop_map(Value::Bool),
        json_value(),
    ];
    prop::collection::vec((key.prop_map(String::from), value), 0..12)
}

fn priority() -> impl Strategy<Value = Priority> {
    prop::sample::select(Priority::ALL.to_vec())
}

proptest! {
    /// Encoding straight into the envelope gives the bytes of the two-pass encoding.
    #[test]
    fn one_pass_envelopes_equal_two_pass_envelopes(value in json_value()) {
        let two_passes = messaging_core::wire::envelope(&messaging_core::wire::json::to_vec(&value).unwrap()).unwrap();
        prop_assert_eq!(messaging_core::wire::to_envelope(&value).unwrap(), two_passes);
    }

    /// A notification's envelope, written directly, has the bytes that serializing its dict
    /// with serde_json and enveloping that gives (keys and strings of any text).
    #[test]
    fn notification_envelopes_equal_serialized_envelopes(
        payload in json_value(),
        context in prop::collection::vec((".*", json_value()), 0..4),
        event_type in ".*",
        publisher_id in ".*",
        signature in proptest::option::of("[ -~]{0,80}"),
        unique_id in proptest::option::of(".*"),
        style in prop::sample::select(vec![None, Some(ContextStyle::Flattened), Some(ContextStyle::Nested)]),
        priority in priority(),
    ) {
        let message = NotificationMessage {
            message_id: messaging_core::wire::new_message_id(),
            publisher_id,
            event_type,
            priority,
            payload,
            timestamp: messaging_core::wire::timestamp_now(),
            context: context.into_iter().collect(),
            signature,
        };
        let dict = messaging_core::wire::json::to_vec(&message.dict(style, unique_id.as_deref())).unwrap();
        let expected = messaging_core::wire::envelope(&dict).unwrap();
        prop_assert_eq!(message.envelope(style, unique_id.as_deref()), expected);
    }

    #[test]
    fn requests_round_trip(
        method in "[a-z_]{1,12}",
        args in json_map(),
        namespace in proptest::option::of("[a-z]{1,6}"),
        version in proptest::option::of("[0-9]\\.[0-9]"),
        context in json_map(),
        call in proptest::option::of(("[0-9a-f]{32}", proptest::option::of(1u32..100))),
        signature in proptest::option::of("[ -~]{0,80}"),
    ) {
        let message = RequestMessage {
            request: RpcRequest { method, args, namespace, version, context, signature },
            call: call.map(|(id, t)| CallInfo { msg_id: id.clone(), reply_q: format!("reply_{id}"), monitor_timeout: t.map(f64::from) }),
            unique_id: Some(messaging_core::wire::new_id()),
        };
        let decoded = RequestMessage::decode(&message.encode().unwrap()).unwrap();
        prop_assert_eq!(decoded, message);
    }

    #[test]
    fn replies_round_trip(value in json_value(), ending in any::<bool>(), class in "[A-Za-z]{1,10}", text in ".*", signature in proptest::option::of("[ -~]{0,80}")) {
        for event in [
            ReplyEvent::Result { value: value.clone(), ending: ending || value.is_null() },
            ReplyEvent::Failure(RemoteError::new(class.clone(), text.clone())),
            ReplyEvent::Heartbeat,
        ] {
            let message = ReplyMessage { msg_id: "m".into(), event, unique_id: Some("u".into()), signature: signature.clone() };
            prop_assert_eq!(ReplyMessage::decode(&message.encode().unwrap()).unwrap(), message);
        }
    }

    #[test]
    fn notifications_round_trip(
        payload in json_value(),
        context in json_map(),
        priority in priority(),
        event_type in ".*",
        nested in any::<bool>(),
        v1 in any::<bool>(),
        signature in proptest::option::of("[ -~]{0,80}"),
    ) {
        let message = NotificationMessage {
            message_id: messaging_core::wire::new_message_id(),
            publisher_id: "p".into(),
            event_type,
            priority,
            payload,
            timestamp: messaging_core::wire::timestamp_now(),
            context,
            signature,
        };
        let style = if nested { ContextStyle::Nested } else { ContextStyle::Flattened };
        let format = if v1 { NotificationFormat::V1 } else { NotificationFormat::V2 };
        let (decoded, _) = NotificationMessage::decode(&message.encode(format, style, None).unwrap()).unwrap();
        prop_assert_eq!(decoded, message);
    }

    /// Decoding an envelope straight into a message reads what decoding it to a map first
    /// reads, and fails where that fails, with the same error.
    #[test]
    fn decoding_in_one_pass_equals_decoding_a_map(inner in wire_entries(), layout in 0..3) {
        let text = messaging_core::wire::json::to_vec(&Dict(&inner)).unwrap();
        let body = match layout {
            0 => messaging_core::wire::envelope(&text).unwrap(),
            // Another envelope layout: compact, keys the other way round.
            1 => serde_json::to_vec(&serde_json::json!({
                "oslo.message": String::from_utf8(text).unwrap(), "oslo.version": "2.0",
            })).unwrap(),
            _ => text,
        };
        let map = || messaging_core::wire::decode_body(&body).unwrap();
        let shown = |r: Result<String, messaging_core::MessagingError>| r.map_err(|e| e.to_string());
        prop_assert_eq!(
            shown(RequestMessage::decode(&body).map(|m| format!("{m:?}"))),
            shown(RequestMessage::from_map(map()).map(|m| format!("{m:?}")))
        );
        prop_assert_eq!(
            shown(ReplyMessage::decode(&body).map(|m| format!("{m:?}"))),
            shown(ReplyMessage::from_map(map()).map(|m| format!("{m:?}")))
        );
        prop_assert_eq!(
            shown(NotificationMessage::decode(&body).map(|m| format!("{m:?}"))),
            shown(NotificationMessage::from_map(map()).map(|m| format!("{m:?}")))
        );
    }

    #[test]
    fn decoders_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = RequestMessage::decode(&body);
        let _ = ReplyMessage::decode(&body);
        let _ = NotificationMessage::decode(&body);
    }

    #[test]
    fn url_display_round_trips(
        driver in "[a-z][a-z0-9]{0,7}",
        hosts in prop::collection::vec(("[a-z0-9.-]{1,12}", proptest::option::of(1u16..), proptest::option::of("[^\u{0}]{1,8}")), 1..4),
        vhost in proptest::option::of("[^\u{0}]{1,10}"),
        query in prop::collection::vec(("[a-z_]{1,8}", "[^\u{0}]{0,8}"), 0..3),
    ) {
        let mut query: Vec<(String, String)> = query;
        query.sort();
        query.dedup_by(|a, b| a.0 == b.0);
        let url = TransportUrl {
            driver,
            variant: None,
            hosts: hosts.into_iter().map(|(hostname, port, username)| TransportHost { hostname, port, username, password: None }).collect(),
            virtual_host: vhost,
            query,
        };
        prop_assert_eq!(TransportUrl::parse(&url.to_string()).unwrap(), url);
    }

    #[test]
    fn url_parser_never_panics(input in ".*") {
        let _ = TransportUrl::parse(&input);
        let _ = TransportUrl::parse(&format!("rabbit://{input}"));
    }
}

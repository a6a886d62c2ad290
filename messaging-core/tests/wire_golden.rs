//! Golden tests: every message body captured from Python oslo.messaging (see
//! `tests/golden/rabbit_captures.txt`, taken from oslo-wire.md) decodes, and re-encodes to the
//! same bytes.

use messaging_core::wire::{
    ContextStyle, NotificationFormat, NotificationMessage, ReplyEvent, ReplyMessage, RequestMessage,
};
use messaging_core::Priority;
use serde_json::json;

fn captures() -> Vec<(String, String)> {
    let text = include_str!("golden/rabbit_captures.txt");
    let mut lines = text.lines().filter(|l| !l.starts_with("# "));
    let mut out = Vec::new();
    while let Some(title) = lines.next() {
        let title = title.strip_prefix("## ").expect("a title line").to_owned();
        out.push((title, lines.next().expect("a body line").to_owned()));
    }
    out
}

fn capture(prefix: &str) -> String {
    captures()
        .into_iter()
        .find(|(title, _)| title.starts_with(prefix))
        .unwrap_or_else(|| panic!("no capture `{prefix}`"))
        .1
}

#[test]
fn every_capture_round_trips_byte_exactly() {
    let all = captures();
    assert_eq!(all.len(), 19);
    for (title, body) in all {
        let encoded = if title.contains("eply") {
            ReplyMessage::decode(body.as_bytes())
                .unwrap()
                .encode()
                .unwrap()
        } else if title.contains("otification")
            || title.contains("notifier")
            || title.starts_with("basic_get")
        {
            let (message, unique_id) = NotificationMessage::decode(body.as_bytes()).unwrap();
            let format = if title.contains("v1notif") {
                NotificationFormat::V1
            } else {
                NotificationFormat::V2
            };
            let style = if title.starts_with("Kafka") {
                ContextStyle::Nested
            } else {
                ContextStyle::Flattened
            };
            message.encode(format, style, unique_id.as_deref()).unwrap()
        } else {
            RequestMessage::decode(body.as_bytes())
                .unwrap()
                .encode()
                .unwrap()
        };
        assert_eq!(String::from_utf8(encoded).unwrap(), body, "{title}");
    }
}

#[test]
fn call_request_fields() {
    let message = RequestMessage::decode(capture("RPC call (topic)").as_bytes()).unwrap();
    assert_eq!(message.request.method, "echo");
    assert_eq!(message.request.args["value"]["c"]["nested"], "ü");
    assert_eq!(message.request.version.as_deref(), Some("1.0"));
    assert_eq!(message.request.context["user_id"], "u-1");
    assert_eq!(message.request.context.len(), 3);
    let call = message.call.unwrap();
    assert_eq!(call.msg_id, "e31af22fdcb74d33b86087c3218cc8e0");
    assert_eq!(call.reply_q, "reply_141daca4e2bb41a6bb52898ea029e344");
    assert_eq!(call.monitor_timeout, None);
    assert_eq!(
        message.unique_id.as_deref(),
        Some("efddd702792548e9820ff537d975833a")
    );

    let message =
        RequestMessage::decode(capture("RPC call with call_monitor_timeout=2").as_bytes()).unwrap();
    assert_eq!(message.call.unwrap().monitor_timeout, Some(2.0));

    let message = RequestMessage::decode(capture("RPC call with namespace").as_bytes()).unwrap();
    assert_eq!(message.request.namespace.as_deref(), Some("otherns"));
    assert_eq!(message.request.version.as_deref(), Some("2.1"));

    let message =
        RequestMessage::decode(capture("RPC call with an oslo.context").as_bytes()).unwrap();
    assert_eq!(message.request.context.len(), 17);
    assert_eq!(message.request.context["roles"], json!(["admin"]));
}

#[test]
fn casts_have_no_reply_fields() {
    for title in ["RPC cast", "RPC fanout cast"] {
        let message = RequestMessage::decode(capture(title).as_bytes()).unwrap();
        assert!(message.call.is_none(), "{title}");
        assert!(message.unique_id.is_some(), "{title}");
    }
}

#[test]
fn replies_decode_to_events() {
    let reply = ReplyMessage::decode(capture("Reply to it").as_bytes()).unwrap();
    assert_eq!(reply.msg_id, "e31af22fdcb74d33b86087c3218cc8e0");
    assert!(
        matches!(reply.event, ReplyEvent::Result { ending: true, ref value } if value["e"] == 1.5)
    );

    let heartbeat = ReplyMessage::decode(capture("Call-monitor heartbeat").as_bytes()).unwrap();
    assert_eq!(heartbeat.event, ReplyEvent::Heartbeat);

    let last = ReplyMessage::decode(capture("Final reply after heartbeats").as_bytes()).unwrap();
    assert_eq!(
        last.event,
        ReplyEvent::Result {
            value: json!(3.5),
            ending: true
        }
    );
}

#[test]
fn failures_decode_with_class_module_and_traceback() {
    let reply =
        ReplyMessage::decode(capture("Failure reply (endpoint raised ValueError)").as_bytes())
            .unwrap();
    let ReplyEvent::Failure(failure) = reply.event else {
        panic!("not a failure")
    };
    assert_eq!(failure.class, "ValueError");
    assert_eq!(failure.module, "builtins");
    assert_eq!(
        failure.message,
        "fail() was called: this is the remote ValueError"
    );
    assert_eq!(failure.traceback.len(), 6);
    let error = failure.into_error("fail", None);
    assert!(
        matches!(error, messaging_core::MessagingError::Remote(ref r) if r.class == "ValueError")
    );

    let reply = ReplyMessage::decode(capture("Failure reply (NoSuchMethod").as_bytes()).unwrap();
    let ReplyEvent::Failure(failure) = reply.event else {
        panic!("not a failure")
    };
    assert!(matches!(
        failure.into_error("no_such_method", None),
        messaging_core::MessagingError::NoSuchMethod { ref method, .. } if method == "no_such_method"
    ));
}

#[test]
fn notifications_decode() {
    let (message, unique_id) =
        NotificationMessage::decode(capture("Notification (messagingv2").as_bytes()).unwrap();
    assert_eq!(message.priority, Priority::Info);
    assert_eq!(message.publisher_id, "compute.host1");
    assert_eq!(message.event_type, "compute.instance.create.end");
    assert_eq!(message.payload["instance_id"], "inst-0");
    assert_eq!(message.timestamp, "2026-11-21 14:51:51.964350");
    assert_eq!(message.message_id.len(), 36);
    assert!(message.context.is_empty());
    assert_eq!(
        unique_id.as_deref(),
        Some("523d0ce3a3db4572b3161fcec219bd85")
    );

    let (audit, _) =
        NotificationMessage::decode(capture("Notification (RequestContext").as_bytes()).unwrap();
    assert_eq!(audit.priority, Priority::Audit);
    assert_eq!(audit.context["auth_token"], serde_json::Value::Null);
    assert_eq!(audit.context.len(), 17);

    let (warn, _) = NotificationMessage::decode(capture("notifier.warning").as_bytes()).unwrap();
    assert_eq!(warn.priority, Priority::Warn);

    let (v1, _) = NotificationMessage::decode(capture("basic_get v1notif").as_bytes()).unwrap();
    assert_eq!(v1.event_type, "compute.instance.create.end");

    let (kafka, unique_id) = NotificationMessage::decode(capture("Kafka").as_bytes()).unwrap();
    assert!(unique_id.is_none());
    assert!(kafka.context.is_empty());
}

#[test]
fn equivalent_messages_encode_like_python() {
    // Built from scratch (not decoded), with the captured ids: the bytes are Python's.
    let mut context = serde_json::Map::new();
    context.insert("user_id".into(), json!("u-1"));
    context.insert("project_id".into(), json!("p-1"));
    context.insert("request_id".into(), json!("req-123"));
    let message = RequestMessage {
        request: messaging_core::wire::RpcRequest {
            method: "echo".into(),
            args: json!({"value": "cast-value"}).as_object().unwrap().clone(),
            namespace: None,
            version: Some("1.0".into()),
            context,
            signature: None,
        },
        call: None,
        unique_id: Some("72a505e7091341ef818e906428b6b6e7".into()),
    };
    assert_eq!(
        String::from_utf8(message.encode().unwrap()).unwrap(),
        capture("RPC cast")
    );

    let notification = NotificationMessage {
        message_id: "405f0fe5-6dfe-4ef6-b6cc-faca17a3baeb".into(),
        publisher_id: "compute.host1".into(),
        event_type: "compute.instance.create.end".into(),
        priority: Priority::Info,
        payload: json!({"instance_id": "inst-0", "seq": 0, "ok": true}),
        timestamp: "2026-11-21 14:51:51.964350".into(),
        context: serde_json::Map::new(),
        signature: None,
    };
    let body = notification
        .encode(
            NotificationFormat::V2,
            ContextStyle::Flattened,
            Some("523d0ce3a3db4572b3161fcec219bd85"),
        )
        .unwrap();
    assert_eq!(
        String::from_utf8(body).unwrap(),
        capture("Notification (messagingv2")
    );
}

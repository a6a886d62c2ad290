//! The bytes a signature covers: the decoded message as the application sees it, independent of
//! how a driver frames it (flattened or nested context, AMQP 1.0 body layout, reply addresses
//! and ids that drivers generate or rewrite in transit).
//!
//! Each form is one JSON object with keys sorted at every depth, written in Python's
//! `json.dumps(obj, sort_keys=True)` style by [`crate::wire::json`]. The `kind` key separates
//! requests, replies and notifications, so that a signature of one cannot pass for another.

use std::collections::BTreeMap;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::wire::{json, NotificationMessage, ReplyEvent, RpcRequest};

/// A value of a canonical form, borrowed from the message (nothing is copied).
enum Node<'a> {
    Str(&'a str),
    OptStr(Option<&'a str>),
    Bool(bool),
    Json(&'a Value),
    Object(&'a Map<String, Value>),
}

impl Serialize for Node<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Str(s) => serializer.serialize_str(s),
            Node::OptStr(s) => s.serialize(serializer),
            Node::Bool(b) => serializer.serialize_bool(*b),
            Node::Object(map) => sorted_map(map, serializer),
            Node::Json(Value::Object(map)) => sorted_map(map, serializer),
            Node::Json(Value::Array(items)) => serializer.collect_seq(items.iter().map(Node::Json)),
            Node::Json(scalar) => scalar.serialize(serializer),
        }
    }
}

fn sorted_map<S: Serializer>(map: &Map<String, Value>, serializer: S) -> Result<S::Ok, S::Error> {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut out = serializer.serialize_map(Some(entries.len()))?;
    for (key, value) in entries {
        out.serialize_entry(key, &Node::Json(value))?;
    }
    out.end()
}

fn encode(form: &BTreeMap<&str, Node<'_>>) -> Vec<u8> {
    json::to_vec(form).expect("JSON values and strings always serialize")
}

/// An RPC request to `topic` (`call`: whether it expects a reply).
pub(super) fn request(nonce: &str, topic: &str, call: bool, request: &RpcRequest) -> Vec<u8> {
    encode(&BTreeMap::from([
        ("kind", Node::Str("rpc-request")),
        ("nonce", Node::Str(nonce)),
        ("topic", Node::Str(topic)),
        ("call", Node::Bool(call)),
        ("method", Node::Str(&request.method)),
        ("args", Node::Object(&request.args)),
        ("namespace", Node::OptStr(request.namespace.as_deref())),
        ("version", Node::OptStr(request.version.as_deref())),
        ("context", Node::Object(&request.context)),
    ]))
}

/// A reply to the request whose signature had nonce `in_reply_to`; `None` for heartbeats, which
/// carry nothing to sign (and AMQP 1.0 sends them without a body).
pub(super) fn reply(nonce: &str, in_reply_to: Option<&str>, event: &ReplyEvent) -> Option<Vec<u8>> {
    let null = Value::Null;
    let failure;
    let (result, failure, ending) = match event {
        ReplyEvent::Heartbeat => return None,
        ReplyEvent::Result { value, ending } => (value, &null, *ending),
        ReplyEvent::Failure(error) => {
            failure = serde_json::to_value(error).expect("a RemoteError always serializes");
            (&null, &failure, true)
        }
    };
    Some(encode(&BTreeMap::from([
        ("kind", Node::Str("rpc-reply")),
        ("nonce", Node::Str(nonce)),
        ("in_reply_to", Node::OptStr(in_reply_to)),
        ("result", Node::Json(result)),
        ("failure", Node::Json(failure)),
        ("ending", Node::Bool(ending)),
    ])))
}

/// A notification.
pub(super) fn notification(nonce: &str, message: &NotificationMessage) -> Vec<u8> {
    encode(&BTreeMap::from([
        ("kind", Node::Str("notification")),
        ("nonce", Node::Str(nonce)),
        ("message_id", Node::Str(&message.message_id)),
        ("publisher_id", Node::Str(&message.publisher_id)),
        ("event_type", Node::Str(&message.event_type)),
        ("priority", Node::Str(message.priority.as_upper_str())),
        ("payload", Node::Json(&message.payload)),
        ("timestamp", Node::Str(&message.timestamp)),
        ("context", Node::Object(&message.context)),
    ]))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keys_are_sorted_at_every_depth_in_python_style() {
        let args = json!({"z": 1, "a": {"y": [{"b": 2, "a": "\u{fc}"}], "x": null}});
        let request = RpcRequest {
            method: "m".into(),
            args: args.as_object().unwrap().clone(),
            namespace: None,
            version: Some("1.0".into()),
            context: json!({"user_id": "u"}).as_object().unwrap().clone(),
            signature: Some("ignored".into()),
        };
        assert_eq!(
            String::from_utf8(super::request("n1", "t", true, &request)).unwrap(),
            r#"{"args": {"a": {"x": null, "y": [{"a": "\u00fc", "b": 2}]}, "z": 1}, "call": true, "context": {"user_id": "u"}, "kind": "rpc-request", "method": "m", "namespace": null, "nonce": "n1", "topic": "t", "version": "1.0"}"#
        );
    }

    #[test]
    fn field_order_of_the_wire_does_not_matter() {
        let mut one = Map::new();
        one.insert("a".into(), json!(1));
        one.insert("b".into(), json!(2));
        let mut two = Map::new();
        two.insert("b".into(), json!(2));
        two.insert("a".into(), json!(1));
        let n = |context| NotificationMessage {
            message_id: "m".into(),
            publisher_id: "p".into(),
            event_type: "e".into(),
            priority: crate::Priority::Info,
            payload: Value::Null,
            timestamp: "t".into(),
            context,
            signature: None,
        };
        assert_eq!(notification("n", &n(one)), notification("n", &n(two)));
    }

    #[test]
    fn heartbeats_have_no_form() {
        assert!(reply("n", Some("r"), &ReplyEvent::Heartbeat).is_none());
    }
}

//! AMQP 1.0 messages ⇄ the oslo wire formats, laid out as oslo's AMQP 1.0 driver does
//! (oslo-wire.md §9.2):
//!
//! * request: header `ttl` (calls), properties `message-id`, `to`, `reply-to` (calls),
//!   amqp-value string body `{"request": <request dict>, "context": <ctxt>[,
//!   "call_monitor_timeout": N]}`;
//! * reply: properties `to`, `correlation-id`, body `{"response": r}` or
//!   `{"failure": "<failure JSON string>"}`, plus `"_signature"` when signed (requests and
//!   notifications carry theirs inside the dicts [`messaging_core::wire`] writes);
//! * heartbeat: header `ttl` = call-monitor timeout, `correlation-id`, **no body section**;
//! * notification: properties `to`, body `{"request": <envelope object>, "context": <ctxt>}`.
//!
//! The JSON content comes from [`messaging_core::wire`]; this module only frames it.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fe2o3_amqp::types::messaging::{AmqpValue, Body, Header, Message, MessageId, Properties};
use fe2o3_amqp::types::primitives::{Timestamp, Value};
use messaging_core::wire::{
    self, json, NotificationFormat, NotificationMessage, Reply, ReplyEvent, RpcRequest,
    SIGNATURE_KEY,
};
use messaging_core::{MessagingError, Result};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_amqp::lazy::LazyValue;
use serde_json::value::RawValue;
use serde_json::{Map, Value as Json};

/// The one message type the driver sends and reads.
pub type AmqpMessage = Message<Body<Value>>;

/// A message as the driver receives it: an amqp-value body stays encoded until [`received`]
/// looked at it.
pub type ReceivedMessage = Message<Body<LazyValue>>;

/// What a call adds to its request message: where its replies go, and its ttl.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingCall {
    /// `message-id`: the replies' `correlation-id`.
    pub msg_id: String,
    /// `reply-to`: where the replies go.
    pub reply_to: String,
    /// The call's timeout: the message's `ttl`.
    pub timeout: Option<Duration>,
}

/// Where the replies to a received call go.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplyTarget {
    /// The call's `message-id`: the replies' `correlation-id`.
    pub msg_id: String,
    /// The call's `reply-to` address.
    pub reply_to: String,
}

/// A request message as a server decodes it.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedRequest {
    /// The request.
    pub request: RpcRequest,
    /// For calls: where to answer.
    pub call: Option<ReplyTarget>,
    /// The caller's call-monitor timeout.
    pub call_monitor_timeout: Option<Duration>,
}

fn string_body(text: String) -> Body<Value> {
    Body::Value(AmqpValue(Value::String(text)))
}

fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

fn seconds_json(duration: Duration) -> Json {
    let secs = duration.as_secs_f64();
    if secs.fract() == 0.0 {
        Json::from(duration.as_secs())
    } else {
        Json::from(secs)
    }
}

fn now_plus(duration: Duration) -> Timestamp {
    let at = SystemTime::now()
        .checked_add(duration)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    Timestamp::from_milliseconds(i64::try_from(at.as_millis()).unwrap_or(i64::MAX))
}

/// A call, cast or fanout cast to `to`.
pub fn request(
    to: &str,
    request: &RpcRequest,
    call: Option<&OutgoingCall>,
    call_monitor_timeout: Option<Duration>,
) -> Result<AmqpMessage> {
    let text = json::to_string(&RequestBody {
        request,
        call_monitor_timeout: call.and(call_monitor_timeout),
    })?;
    messaging_core::telemetry::record_body_size(text.len());
    let mut properties = Properties::builder().to(to);
    let mut header = None;
    if let Some(call) = call {
        properties = properties
            .message_id(MessageId::String(call.msg_id.clone()))
            .reply_to(call.reply_to.clone());
        if let Some(timeout) = call.timeout {
            header = Some(Header::builder().ttl(Some(millis(timeout))).build());
            properties = properties.absolute_expiry_time(Some(now_plus(timeout)));
        }
    }
    Ok(Message::builder()
        .header(header)
        .properties(properties.build())
        .body(string_body(text))
        .build())
}

/// A reply to the call `correlation_id`, sent to `to`.
pub fn reply(
    to: &str,
    correlation_id: &str,
    reply: &Reply,
    call_monitor_timeout: Option<Duration>,
) -> Result<AmqpMessage> {
    let properties = Properties::builder()
        .to(to)
        .correlation_id(MessageId::String(correlation_id.to_owned()))
        .build();
    let builder = Message::builder().properties(properties);
    let signature = reply.signature.as_deref();
    let message = match &reply.event {
        ReplyEvent::Heartbeat => builder
            .header(call_monitor_timeout.map(|t| Header::builder().ttl(Some(millis(t))).build()))
            .body(Body::Empty)
            .build(),
        ReplyEvent::Result { value, .. } => builder
            .body(ReplyBody::text("response", value, signature)?)
            .build(),
        ReplyEvent::Failure(failure) => {
            let failure = wire::encode_failure(failure)?;
            builder
                .body(ReplyBody::text("failure", &failure, signature)?)
                .build()
        }
    };
    Ok(message)
}

/// A notification to `to`: `{"request": <envelope>, "context": <ctxt>}`: the message dict (in
/// the `2.0` envelope with `messagingv2`) under `request`, the context beside it, not inside
/// (and no `_unique_id`), as oslo's AMQP 1.0 driver sends it.
pub fn notification(
    to: &str,
    message: &NotificationMessage,
    format: NotificationFormat,
) -> Result<AmqpMessage> {
    let request = match format {
        NotificationFormat::V2 => message.envelope(None, None),
        NotificationFormat::V1 => json::to_vec(&message.dict(None, None))?,
    };
    // The request goes in as it was encoded (one pass), not as a string encoded again.
    let mut body = Vec::with_capacity(request.len() + 64);
    body.extend_from_slice(b"{\"request\": ");
    body.extend_from_slice(&request);
    body.extend_from_slice(b", \"context\": ");
    body.extend_from_slice(&json::to_vec(&message.context)?);
    body.push(b'}');
    let text = String::from_utf8(body).expect("wire::json writes ASCII");
    messaging_core::telemetry::record_body_size(text.len());
    Ok(Message::builder()
        .properties(Properties::builder().to(to).build())
        .body(string_body(text))
        .build())
}

/// A request's body, `{"request": <request dict>, "context": <ctxt>[, "call_monitor_timeout":
/// N]}`, serialized from the request's own fields.
struct RequestBody<'a> {
    request: &'a RpcRequest,
    call_monitor_timeout: Option<Duration>,
}

impl Serialize for RequestBody<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("request", &self.request.request_dict())?;
        map.serialize_entry("context", &self.request.context)?;
        if let Some(monitor) = self.call_monitor_timeout {
            map.serialize_entry("call_monitor_timeout", &seconds_json(monitor))?;
        }
        map.end()
    }
}

/// A reply's body: `{"response": r}` or `{"failure": "<failure JSON>"}`, and its signature.
struct ReplyBody<'a, T> {
    key: &'static str,
    value: &'a T,
    signature: Option<&'a str>,
}

impl<'a, T: Serialize> ReplyBody<'a, T> {
    /// The body as an amqp-value string.
    fn text(key: &'static str, value: &'a T, signature: Option<&'a str>) -> Result<Body<Value>> {
        let body = Self {
            key,
            value,
            signature,
        };
        Ok(string_body(json::to_string(&body)?))
    }
}

impl<T: Serialize> Serialize for ReplyBody<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry(self.key, self.value)?;
        if let Some(signature) = self.signature {
            map.serialize_entry(SIGNATURE_KEY, signature)?;
        }
        map.end()
    }
}

/// The body as bytes, for decoding and for logging: an amqp-value string or binary, or the
/// data sections (copied only when there are several); `None` when there is no body (or a null
/// value).
pub fn body_bytes(body: &Body<Value>) -> Result<Option<Cow<'_, [u8]>>> {
    match body {
        Body::Empty => Ok(None),
        Body::Value(AmqpValue(Value::Null)) => Ok(None),
        Body::Value(AmqpValue(Value::String(s))) => Ok(Some(Cow::Borrowed(s.as_bytes()))),
        Body::Value(AmqpValue(Value::Binary(b))) => Ok(Some(Cow::Borrowed(b))),
        Body::Data(sections) => Ok(Some(match sections.as_slice() {
            [one] => Cow::Borrowed(&one.0),
            several => Cow::Owned(several.iter().flat_map(|d| d.0.iter().copied()).collect()),
        })),
        Body::Value(AmqpValue(other)) => Err(MessagingError::MalformedMessage(format!(
            "amqp-value body is not a string: {other:?}"
        ))),
        Body::Sequence(_) => Err(MessagingError::MalformedMessage(
            "amqp-sequence bodies are not oslo messages".into(),
        )),
    }
}

/// A received message as the driver reads it, or why it cannot be an oslo message. Only an
/// amqp-value that can be one (null, binary, string) is decoded; any other value and any
/// amqp-sequence is refused undecoded: serde_amqp decodes nested values recursively with no
/// depth limit, so a peer's value nested deep enough would overflow the stack (and abort the
/// process).
pub fn received(message: ReceivedMessage) -> std::result::Result<AmqpMessage, String> {
    let body = match message.body {
        Body::Empty => Body::Empty,
        Body::Data(sections) => Body::Data(sections),
        Body::Value(AmqpValue(value)) => match value.as_slice().first() {
            // null, vbin8, vbin32, str8-utf8, str32-utf8: nothing nested.
            Some(0x40 | 0xa0 | 0xb0 | 0xa1 | 0xb1) => Body::Value(AmqpValue(
                serde_amqp::from_slice(value.as_slice())
                    .map_err(|e| format!("undecodable amqp-value body: {e}"))?,
            )),
            Some(code) => {
                return Err(format!(
                    "amqp-value body is not a string (format code {code:#04x})"
                ))
            }
            None => return Err("empty amqp-value body".into()),
        },
        Body::Sequence(_) => return Err("amqp-sequence bodies are not oslo messages".into()),
    };
    Ok(Message {
        header: message.header,
        delivery_annotations: message.delivery_annotations,
        message_annotations: message.message_annotations,
        properties: message.properties,
        application_properties: message.application_properties,
        body,
        footer: message.footer,
    })
}

fn message_id_string(id: &MessageId) -> String {
    match id {
        MessageId::String(s) => s.clone(),
        MessageId::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        MessageId::Ulong(n) => n.to_string(),
        MessageId::Uuid(u) => u.as_inner().iter().map(|b| format!("{b:02x}")).collect(),
    }
}

fn json_object(bytes: &[u8]) -> Result<Map<String, Json>> {
    match serde_json::from_slice(bytes) {
        Ok(Json::Object(map)) => Ok(map),
        Ok(_) => Err(MessagingError::MalformedMessage(
            "body is not a JSON object".into(),
        )),
        Err(e) => Err(MessagingError::MalformedMessage(format!(
            "body is not JSON: {e}"
        ))),
    }
}

/// A request's or notification's body as it is read: the `request` object left as JSON text
/// for the shared decoder, the rest beside it.
#[derive(Deserialize)]
struct Framed<'a> {
    #[serde(borrow)]
    request: Option<&'a RawValue>,
    #[serde(default)]
    context: Json,
    #[serde(default)]
    call_monitor_timeout: Json,
}

impl<'a> Framed<'a> {
    fn read(bytes: &'a [u8]) -> Result<Self> {
        // Checked as UTF-8 once, in bulk (from bytes, serde_json would check each string).
        let read = match std::str::from_utf8(bytes) {
            Ok(text) => serde_json::from_str(text),
            Err(_) => serde_json::from_slice(bytes),
        };
        read.map_err(|e| {
            MessagingError::MalformedMessage(format!("body is not a JSON object: {e}"))
        })
    }

    /// The `request` object's JSON text.
    fn request(&self) -> Result<&'a [u8]> {
        match self.request.map(RawValue::get) {
            Some(text) if text.starts_with('{') => Ok(text.as_bytes()),
            _ => Err(MessagingError::MalformedMessage(
                "body has no `request` object".into(),
            )),
        }
    }

    /// The context (none when absent or null).
    fn context(&mut self) -> Result<Map<String, Json>> {
        match self.context.take() {
            Json::Object(context) => Ok(context),
            Json::Null => Ok(Map::new()),
            other => Err(MessagingError::MalformedMessage(format!(
                "`context` should be an object, got {other}"
            ))),
        }
    }
}

/// Decode a request received by a server.
pub fn decode_request(message: &AmqpMessage) -> Result<DecodedRequest> {
    let bytes = body_bytes(&message.body)?
        .ok_or_else(|| MessagingError::MalformedMessage("request without a body".into()))?;
    let mut body = Framed::read(&bytes)?;
    let request = RpcRequest::decode_request_dict(body.request()?, body.context()?)?;
    let call_monitor_timeout = body
        .call_monitor_timeout
        .as_f64()
        .filter(|s| *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok());
    let properties = message.properties.as_ref();
    let msg_id = properties
        .and_then(|p| p.message_id.as_ref())
        .map(message_id_string);
    let reply_to = properties.and_then(|p| p.reply_to.clone());
    let call = match (msg_id, reply_to) {
        (Some(msg_id), Some(reply_to)) => Some(ReplyTarget { msg_id, reply_to }),
        _ => None,
    };
    Ok(DecodedRequest {
        request,
        call,
        call_monitor_timeout,
    })
}

/// Decode a reply: the call it answers and the reply.
pub fn decode_reply(message: &AmqpMessage) -> Result<(String, Reply)> {
    let correlation_id = message
        .properties
        .as_ref()
        .and_then(|p| p.correlation_id.as_ref())
        .map(message_id_string)
        .ok_or_else(|| MessagingError::MalformedMessage("reply without correlation-id".into()))?;
    let Some(bytes) = body_bytes(&message.body)? else {
        return Ok((correlation_id, ReplyEvent::Heartbeat.into()));
    };
    let mut body = json_object(&bytes)?;
    let signature = match body.shift_remove(SIGNATURE_KEY) {
        None | Some(Json::Null) => None,
        Some(Json::String(signature)) => Some(signature),
        Some(other) => {
            return Err(MessagingError::MalformedMessage(format!(
                "`{SIGNATURE_KEY}` should be a string, got {other}"
            )))
        }
    };
    let event = match body.shift_remove("failure") {
        Some(Json::String(failure)) => ReplyEvent::Failure(wire::decode_failure(&failure)?),
        Some(Json::Null) | None => ReplyEvent::Result {
            value: body.shift_remove("response").unwrap_or(Json::Null),
            ending: true,
        },
        Some(other) => {
            return Err(MessagingError::MalformedMessage(format!(
                "`failure` should be a string, got {other}"
            )))
        }
    };
    Ok((correlation_id, Reply { event, signature }))
}

/// Decode a notification (either envelope format inside `request`).
pub fn decode_notification(message: &AmqpMessage) -> Result<NotificationMessage> {
    let bytes = body_bytes(&message.body)?
        .ok_or_else(|| MessagingError::MalformedMessage("notification without a body".into()))?;
    let mut body = Framed::read(&bytes)?;
    // Either the `2.0` envelope or a bare (v1) dict: the shared decoder reads both.
    let (mut notification, _) = NotificationMessage::decode(body.request()?)?;
    let context = body.context()?;
    if notification.context.is_empty() {
        notification.context = context;
    }
    Ok(notification)
}

#[cfg(test)]
mod tests {
    use messaging_core::{Priority, RemoteError};
    use serde_json::json;

    use super::*;

    fn text(message: &AmqpMessage) -> String {
        String::from_utf8(body_bytes(&message.body).unwrap().unwrap().into_owned()).unwrap()
    }

    fn sample_request() -> RpcRequest {
        let context = json!({"user_id": "u-1", "project_id": "p-1", "request_id": "req-123"});
        let args = json!({"value": {"a": 1, "b": [1, 2, 3], "c": {"nested": "ü"}, "d": null, "e": 1.5, "f": true}});
        RpcRequest {
            method: "echo".into(),
            args: args.as_object().unwrap().clone(),
            namespace: None,
            version: Some("1.0".into()),
            context: context.as_object().unwrap().clone(),
            signature: None,
        }
    }

    /// The body of oslo's captured call (§9.4), byte for byte.
    #[test]
    fn call_layout_matches_oslo() {
        let call = OutgoingCall {
            msg_id: "d8bfea73187944318f7dbd6f6f6ec04c".into(),
            reply_to: "dynamic-reply/ee98".into(),
            timeout: Some(Duration::from_secs(10)),
        };
        let m = request(
            "unicast.openstack.testtopic",
            &sample_request(),
            Some(&call),
            None,
        )
        .unwrap();
        assert_eq!(
            text(&m),
            r#"{"request": {"method": "echo", "args": {"value": {"a": 1, "b": [1, 2, 3], "c": {"nested": "\u00fc"}, "d": null, "e": 1.5, "f": true}}, "version": "1.0"}, "context": {"user_id": "u-1", "project_id": "p-1", "request_id": "req-123"}}"#
        );
        assert_eq!(m.header.as_ref().unwrap().ttl, Some(10_000));
        let p = m.properties.as_ref().unwrap();
        assert_eq!(p.to.as_deref(), Some("unicast.openstack.testtopic"));
        assert_eq!(p.reply_to.as_deref(), Some("dynamic-reply/ee98"));
        assert_eq!(
            p.message_id,
            Some(MessageId::String("d8bfea73187944318f7dbd6f6f6ec04c".into()))
        );
        let back = decode_request(&m).unwrap();
        assert_eq!(back.request, sample_request());
        assert_eq!(
            back.call,
            Some(ReplyTarget {
                msg_id: "d8bfea73187944318f7dbd6f6f6ec04c".into(),
                reply_to: "dynamic-reply/ee98".into()
            })
        );
        assert_eq!(back.call_monitor_timeout, None);
    }

    #[test]
    fn cast_has_no_ids_and_monitor_only_on_calls() {
        let m = request("t", &sample_request(), None, Some(Duration::from_secs(2))).unwrap();
        assert!(m.header.is_none());
        let p = m.properties.as_ref().unwrap();
        assert!(p.message_id.is_none() && p.reply_to.is_none());
        assert!(!text(&m).contains("call_monitor_timeout"));
        let call = OutgoingCall {
            msg_id: "x".into(),
            reply_to: "r".into(),
            timeout: None,
        };
        let m = request(
            "t",
            &sample_request(),
            Some(&call),
            Some(Duration::from_secs(2)),
        )
        .unwrap();
        assert!(
            text(&m).ends_with(r#", "call_monitor_timeout": 2}"#),
            "{}",
            text(&m)
        );
        assert_eq!(
            decode_request(&m).unwrap().call_monitor_timeout,
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn replies_and_heartbeats() {
        let value = json!({"a": 1, "c": {"nested": "ü"}});
        let m = reply(
            "r",
            "id1",
            &ReplyEvent::Result {
                value: value.clone(),
                ending: true,
            }
            .into(),
            None,
        )
        .unwrap();
        assert_eq!(
            text(&m),
            r#"{"response": {"a": 1, "c": {"nested": "\u00fc"}}}"#
        );
        assert_eq!(
            decode_reply(&m).unwrap(),
            (
                "id1".into(),
                ReplyEvent::Result {
                    value,
                    ending: true
                }
                .into()
            )
        );

        let failure = RemoteError::value_error("boom");
        let m = reply(
            "r",
            "id2",
            &ReplyEvent::Failure(failure.clone()).into(),
            None,
        )
        .unwrap();
        assert!(
            text(&m).starts_with(r#"{"failure": "{\"class\": \"ValueError\""#),
            "{}",
            text(&m)
        );
        match decode_reply(&m).unwrap() {
            (
                id,
                Reply {
                    event: ReplyEvent::Failure(back),
                    signature: None,
                },
            ) => {
                assert_eq!(id, "id2");
                assert_eq!(back.class, "ValueError");
                assert_eq!(back.message, "boom");
            }
            other => panic!("{other:?}"),
        }

        let m = reply(
            "r",
            "id3",
            &ReplyEvent::Heartbeat.into(),
            Some(Duration::from_secs(2)),
        )
        .unwrap();
        assert!(matches!(m.body, Body::Empty));
        assert_eq!(m.header.as_ref().unwrap().ttl, Some(2000));
        assert_eq!(
            decode_reply(&m).unwrap(),
            ("id3".into(), ReplyEvent::Heartbeat.into())
        );
    }

    #[test]
    fn notification_layout_matches_oslo() {
        let n = NotificationMessage {
            message_id: "4910a37d-ff34-4f9f-84b2-0b879acd0b15".into(),
            publisher_id: "compute.host1".into(),
            event_type: "compute.instance.create.end".into(),
            priority: Priority::Info,
            payload: json!({"instance_id": "inst-0", "seq": 0, "ok": true}),
            timestamp: "2026-11-21 14:57:52.732854".into(),
            context: Map::new(),
            signature: None,
        };
        let m = notification(
            "unicast.openstack.notifications.info",
            &n,
            NotificationFormat::V2,
        )
        .unwrap();
        assert_eq!(
            text(&m),
            r#"{"request": {"oslo.version": "2.0", "oslo.message": "{\"message_id\": \"4910a37d-ff34-4f9f-84b2-0b879acd0b15\", \"publisher_id\": \"compute.host1\", \"event_type\": \"compute.instance.create.end\", \"priority\": \"INFO\", \"payload\": {\"instance_id\": \"inst-0\", \"seq\": 0, \"ok\": true}, \"timestamp\": \"2026-11-21 14:57:52.732854\"}"}, "context": {}}"#
        );
        assert_eq!(decode_notification(&m).unwrap(), n);

        let with_ctx = NotificationMessage {
            context: json!({"user_id": "u-1"}).as_object().unwrap().clone(),
            ..n.clone()
        };
        for format in [NotificationFormat::V2, NotificationFormat::V1] {
            let m = notification("x", &with_ctx, format).unwrap();
            assert!(!text(&m).contains("_context_"), "{}", text(&m));
            assert_eq!(decode_notification(&m).unwrap(), with_ctx);
        }
    }

    /// Signatures ride inside the `request` dict, beside `response`/`failure`, and inside the
    /// notification's message dict; nothing is added without one.
    #[test]
    fn signatures_travel_in_every_body() {
        let signed = RpcRequest {
            signature: Some("hmac-sha256:k1:n:00".into()),
            ..sample_request()
        };
        let m = request("t", &signed, None, None).unwrap();
        assert!(
            text(&m).contains(r#", "_signature": "hmac-sha256:k1:n:00"}, "context""#),
            "{}",
            text(&m)
        );
        assert_eq!(decode_request(&m).unwrap().request, signed);

        let result = Reply {
            event: ReplyEvent::Result {
                value: json!(1),
                ending: true,
            },
            signature: Some("s1".into()),
        };
        let m = reply("r", "id", &result, None).unwrap();
        assert_eq!(text(&m), r#"{"response": 1, "_signature": "s1"}"#);
        assert_eq!(decode_reply(&m).unwrap(), ("id".into(), result));
        let failure = Reply {
            event: ReplyEvent::Failure(RemoteError::value_error("boom")),
            signature: Some("s2".into()),
        };
        let m = reply("r", "id", &failure, None).unwrap();
        assert_eq!(decode_reply(&m).unwrap().1.signature.as_deref(), Some("s2"));

        let n = NotificationMessage {
            message_id: "m".into(),
            publisher_id: "p".into(),
            event_type: "e".into(),
            priority: Priority::Info,
            payload: json!(null),
            timestamp: "t".into(),
            context: json!({"user_id": "u"}).as_object().unwrap().clone(),
            signature: Some("s3".into()),
        };
        for format in [NotificationFormat::V2, NotificationFormat::V1] {
            let m = notification("x", &n, format).unwrap();
            assert_eq!(decode_notification(&m).unwrap(), n);
        }
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let bad = |body: Body<Value>| Message::builder().body(body).build();
        for m in [
            bad(Body::Empty),
            bad(string_body("not json".into())),
            bad(string_body("[1]".into())),
            bad(string_body(r#"{"context": {}}"#.into())),
            bad(Body::Value(AmqpValue(Value::Int(5)))),
        ] {
            assert!(decode_request(&m).is_err());
            assert!(decode_notification(&m).is_err());
        }
        assert!(
            decode_reply(&bad(string_body("{}".into()))).is_err(),
            "no correlation id"
        );
    }

    fn lazy(encoded: &[u8]) -> ReceivedMessage {
        let value: LazyValue = serde_amqp::from_slice(encoded).unwrap();
        Message::builder()
            .body(Body::Value(AmqpValue(value)))
            .build()
    }

    #[test]
    fn received_bodies_are_decoded_only_when_they_can_be_oslo_messages() {
        let text = received(lazy(&[0xa1, 2, b'{', b'}'])).unwrap();
        assert_eq!(body_bytes(&text.body).unwrap().as_deref(), Some(&b"{}"[..]));
        let binary = received(lazy(&[0xa0, 1, b'x'])).unwrap();
        assert_eq!(
            body_bytes(&binary.body).unwrap().as_deref(),
            Some(&b"x"[..])
        );
        assert_eq!(
            body_bytes(&received(lazy(&[0x40])).unwrap().body).unwrap(),
            None
        );
        // Invalid UTF-8 in a string, an int, a list.
        for refused in [&[0xa1, 2, 0xff, 0xfe][..], &[0x54, 5], &[0x45]] {
            assert!(received(lazy(refused)).is_err(), "{refused:?}");
        }
        // Nested far deeper than any stack: refused, not decoded.
        let depth = 1_000_000;
        let mut nested = Vec::with_capacity(depth * 9 + 1);
        for level in (1..=depth).rev() {
            nested.push(0xd0);
            nested.extend_from_slice(&u32::try_from(5 + (level - 1) * 9).unwrap().to_be_bytes());
            nested.extend_from_slice(&1u32.to_be_bytes());
        }
        nested.push(0x45);
        assert!(received(lazy(&nested)).is_err());
    }
}

//! `--envelope oslo` for the raw-client baselines: the raw client sends what this library's
//! driver sends for the same workload (the message dict oslo.messaging builds, JSON-encoded
//! again inside its 2.0 envelope), and the raw server decodes it, so that "ours ÷ raw"
//! compares the same bytes on the wire and the same decoding. With `--envelope bare` (the
//! default) the raw client sends only the `{"value", "sent_ns"}` body, which on a broker
//! whose cost grows with record size (nisshi) is far less work than any oslo-compatible
//! sender does. Included with `#[path]` by `driver-rabbit/examples/raw_lapin_bench.rs` and
//! `driver-kafka/examples/raw_rdkafka_bench.rs` (AMQP 1.0 has no envelope).
//!
//! The dicts follow `../shared/reference/oslo-wire.md` (§3, §5, §6) with an empty context.
//! Raw lapin also routes and flags them as oslo does (§1): see its `--envelope`.
//! serde_json writes them compactly, where oslo (and this library) put a space after `,` and
//! `:`: the raw record is a few dozen bytes shorter than ours.

use serde_json::{json, Value};

/// What a raw client wraps its body in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Envelope {
    /// The body alone.
    Bare,
    /// The body inside the message dict and 2.0 envelope that oslo.messaging sends.
    Oslo,
}

impl Envelope {
    /// `bare` or `oslo` (the `--envelope` flag).
    pub fn parse(text: &str) -> Envelope {
        match text {
            "bare" => Envelope::Bare,
            "oslo" => Envelope::Oslo,
            other => panic!("--envelope bare|oslo, not {other}"),
        }
    }
}

/// The message a raw client sends.
pub enum Request<'a> {
    /// A messagingv2 notification (`unique_id`: with oslo's `_unique_id`, as on RabbitMQ;
    /// Kafka records carry none).
    Notification { unique_id: bool },
    /// An RPC cast.
    Cast,
    /// An RPC call answered on `reply_q`.
    Call { msg_id: &'a str, reply_q: &'a str },
}

/// The body a raw client sends: `body` bare, or inside `request`'s dict and envelope.
pub fn request_body(envelope: Envelope, request: Request<'_>, body: Value) -> Vec<u8> {
    let message = match (envelope, request) {
        (Envelope::Bare, _) => return serde_json::to_vec(&body).expect("JSON"),
        (Envelope::Oslo, Request::Notification { unique_id }) => {
            let mut message = json!({
                "message_id": uuid::Uuid::new_v4().to_string(),
                "publisher_id": "raw.bench", "event_type": "raw.bench", "priority": "INFO",
                "payload": body, "timestamp": timestamp(), "_context": {},
            });
            if unique_id {
                message["_unique_id"] = unique_hex().into();
            }
            message
        }
        (Envelope::Oslo, Request::Cast) => json!({
            "method": "echo", "args": body, "version": "1.0", "_unique_id": unique_hex(),
        }),
        (Envelope::Oslo, Request::Call { msg_id, reply_q }) => json!({
            "method": "echo", "args": body, "version": "1.0", "_msg_id": msg_id,
            "_reply_q": reply_q, "_timeout": null, "_unique_id": unique_hex(),
        }),
    };
    envelope_of(&message)
}

/// The `sent_ns` that a received request carries (0 when it has none).
pub fn sent_ns(envelope: Envelope, received: &[u8]) -> u64 {
    let message = decode(envelope, received);
    let body = match envelope {
        Envelope::Bare => &message,
        Envelope::Oslo if message.get("payload").is_some() => &message["payload"],
        Envelope::Oslo => &message["args"],
    };
    body["sent_ns"].as_u64().unwrap_or(0)
}

/// The reply to a received bare call: its `value`.
pub fn bare_reply(received: &[u8]) -> Vec<u8> {
    let request = decode(Envelope::Bare, received);
    serde_json::to_vec(&request["value"]).expect("JSON")
}

/// An oslo call's reply queue (`_reply_q`) and its reply, from one decoding of the request.
pub fn oslo_call_reply(received: &[u8]) -> (String, Vec<u8>) {
    let request = decode(Envelope::Oslo, received);
    let reply_q = request["_reply_q"].as_str().expect("a call's `_reply_q`");
    (reply_q.to_owned(), oslo_reply(&request))
}

/// The `_msg_id` of an oslo reply, read as oslo's client reads it: the whole reply decoded.
pub fn oslo_reply_msg_id(received: &[u8]) -> Option<String> {
    let reply = decode(Envelope::Oslo, received);
    reply["_msg_id"].as_str().map(str::to_owned)
}

fn oslo_reply(request: &Value) -> Vec<u8> {
    envelope_of(&json!({
        "result": request["args"]["value"], "failure": null, "ending": true,
        "_msg_id": request["_msg_id"], "_unique_id": unique_hex(),
    }))
}

/// A received body, or the message dict inside its envelope.
fn decode(envelope: Envelope, received: &[u8]) -> Value {
    let outer: Value = serde_json::from_slice(received).expect("JSON");
    match envelope {
        Envelope::Bare => outer,
        Envelope::Oslo => {
            let inner = outer["oslo.message"]
                .as_str()
                .expect("an oslo 2.0 envelope");
            serde_json::from_str(inner).expect("JSON message")
        }
    }
}

fn envelope_of(message: &Value) -> Vec<u8> {
    let inner = serde_json::to_string(message).expect("JSON");
    serde_json::to_vec(&json!({"oslo.version": "2.0", "oslo.message": inner})).expect("JSON")
}

/// `uuid4().hex`, as oslo's `_unique_id` and `_msg_id`.
pub fn unique_hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Now as oslo's notifier writes it: `2026-12-05 12:54:49.097532` (UTC).
fn timestamp() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:6]"
    );
    time::OffsetDateTime::now_utc()
        .format(format)
        .expect("a timestamp")
}

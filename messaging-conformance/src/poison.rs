//! Malformed message bodies, for drivers' poison-input tests: every kind of damage a server or
//! listener meets on a real bus (not JSON, wrong envelope version, missing or mistyped fields,
//! invalid UTF-8, runaway nesting, huge payloads, truncation). A driver test publishes them raw
//! onto the queues its server or listener consumes and checks that the next good message is
//! still served and that nothing stays queued.

use serde_json::{json, Map, Value};

/// One malformed body and what is wrong with it.
#[derive(Debug, Clone)]
pub struct Malformed {
    /// What is wrong, for test output.
    pub kind: &'static str,
    /// The body as published.
    pub body: Vec<u8>,
}

/// `n` malformed RPC requests (casts to method `echo`), cycling through every kind.
pub fn malformed_requests(n: usize) -> impl Iterator<Item = Malformed> {
    let good = json!({"method": "echo", "args": {"value": 1}});
    (0..n).map(move |i| malformed(i, &good, "method", "args"))
}

/// `n` malformed notifications of priority `INFO`, cycling through every kind.
pub fn malformed_notifications(n: usize) -> impl Iterator<Item = Malformed> {
    let good = json!({
        "message_id": "5c329c20-d435-444c-8fa2-e1b54592219c",
        "publisher_id": "compute.host1",
        "event_type": "malformed",
        "priority": "INFO",
        "payload": {},
        "timestamp": "2026-11-21 10:00:00.000000",
    });
    (0..n).map(move |i| malformed(i, &good, "priority", "event_type"))
}

/// An oslo `2.0` envelope around `inner` (any text, even text that is not JSON).
fn enveloped(inner: &str) -> Vec<u8> {
    json!({"oslo.version": "2.0", "oslo.message": inner})
        .to_string()
        .into_bytes()
}

/// The `i`th malformed body: `good` is a valid inner message, `required` a field it cannot do
/// without and `typed` one whose type the decoder checks.
fn malformed(i: usize, good: &Value, required: &str, typed: &str) -> Malformed {
    let altered = |change: &dyn Fn(&mut Map<String, Value>)| {
        let mut inner = good.as_object().cloned().unwrap_or_default();
        change(&mut inner);
        enveloped(&Value::Object(inner).to_string())
    };
    let (kind, body) = match i % 13 {
        0 => ("not JSON", b"this is not json".to_vec()),
        1 => ("a JSON array", b"[1, 2, 3]".to_vec()),
        2 => (
            "envelope version 3.0",
            json!({"oslo.version": "3.0", "oslo.message": good.to_string()})
                .to_string()
                .into_bytes(),
        ),
        3 => ("inner message not JSON", enveloped("{not json")),
        4 => (
            "oslo.message not a string",
            json!({"oslo.version": "2.0", "oslo.message": good})
                .to_string()
                .into_bytes(),
        ),
        5 => (
            "a required field missing",
            altered(&|m| {
                m.remove(required);
            }),
        ),
        6 => (
            "a field of the wrong type",
            altered(&|m| {
                m.insert(typed.to_owned(), json!(42));
            }),
        ),
        7 => (
            "a context of the wrong type",
            altered(&|m| {
                m.insert("_context".to_owned(), json!("not an object"));
                m.insert(required.to_owned(), json!(["not", "a", "string"]));
            }),
        ),
        8 => (
            "invalid UTF-8",
            b"{\"method\": \"echo\xff\xfe\", \"priority\": \"INFO\xc3\x28\"}".to_vec(),
        ),
        9 => ("deeply nested JSON", deeply_nested(100_000)),
        10 => ("empty body", Vec::new()),
        // A few huge ones: 4 MiB of garbage inside a valid envelope.
        11 if i % 100 == 11 => ("huge payload", enveloped(&"x".repeat(4 << 20))),
        _ => (
            "truncated envelope",
            enveloped(&good.to_string())[..20].to_vec(),
        ),
    };
    Malformed { kind, body }
}

/// JSON nested `depth` arrays deep: deeper than any decoder should recurse.
fn deeply_nested(depth: usize) -> Vec<u8> {
    let mut body = "[".repeat(depth).into_bytes();
    body.extend(std::iter::repeat_n(b']', depth));
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_core::wire::{NotificationMessage, RequestMessage};

    #[test]
    fn every_body_is_refused_by_the_decoder() {
        for m in malformed_requests(200) {
            assert!(RequestMessage::decode(&m.body).is_err(), "{}", m.kind);
        }
        for m in malformed_notifications(200) {
            assert!(NotificationMessage::decode(&m.body).is_err(), "{}", m.kind);
        }
    }

    #[test]
    fn every_kind_occurs_in_a_flood() {
        let kinds: std::collections::BTreeSet<_> =
            malformed_requests(1000).map(|m| m.kind).collect();
        assert_eq!(kinds.len(), 13, "{kinds:?}");
    }
}

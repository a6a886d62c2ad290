use serde_json::{json, Map, Value};

use super::*;
use crate::wire::{ContextStyle, NotificationFormat, ReplyMessage, RequestMessage};
use crate::{Priority, RemoteError};

/// A named way to alter a message.
type Tamper<T> = (&'static str, Box<dyn Fn(&mut T)>);

fn key(id: &str, secret: &str) -> SigningKey {
    SigningKey::new(id, secret).unwrap()
}

fn k1() -> SigningKey {
    key("k1", "first secret, 16+ bytes")
}

fn k2() -> SigningKey {
    key("k2", "second secret, 16+ bytes")
}

fn object(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn request() -> RpcRequest {
    RpcRequest {
        method: "echo".into(),
        args: object(json!({"value": {"a": 1, "b": [1.5, "ü"], "c": null}})),
        namespace: Some("ns".into()),
        version: Some("1.3".into()),
        context: object(json!({"user_id": "u-1", "roles": ["admin"]})),
        signature: None,
    }
}

fn notification() -> NotificationMessage {
    NotificationMessage {
        message_id: wire::new_message_id(),
        publisher_id: "compute.host1".into(),
        event_type: "compute.instance.create.end".into(),
        priority: Priority::Info,
        payload: json!({"instance_id": "inst-0", "ok": true}),
        timestamp: wire::timestamp_now(),
        context: object(json!({"user_id": "u-1"})),
        signature: None,
    }
}

#[test]
fn signed_requests_verify_after_a_trip_through_the_wire() {
    let signing = Signing::new([k1()]).unwrap();
    let mut sent = request();
    signing.sign_request("compute", true, &mut sent);
    let message = RequestMessage::call(sent.clone(), "reply_x".into(), None);
    let body = message.encode().unwrap();
    let received = RequestMessage::decode(&body).unwrap().request;
    assert_eq!(received.signature, sent.signature);
    assert_eq!(signing.verify_request("compute", true, &received), Ok(()));
}

#[test]
fn tampering_with_any_request_field_is_detected() {
    let signing = Signing::new([k1()]).unwrap();
    let mut signed = request();
    signing.sign_request("compute", false, &mut signed);
    let tampered: Vec<Tamper<RpcRequest>> = vec![
        ("method", Box::new(|r| r.method = "delete".into())),
        (
            "args",
            Box::new(|r| {
                r.args.insert("value".into(), json!(2));
            }),
        ),
        (
            "nested args",
            Box::new(|r| r.args["value"]["b"][0] = json!(2.5)),
        ),
        ("namespace", Box::new(|r| r.namespace = None)),
        ("version", Box::new(|r| r.version = Some("1.4".into()))),
        (
            "context",
            Box::new(|r| {
                r.context.insert("roles".into(), json!(["member"]));
            }),
        ),
        (
            "added context",
            Box::new(|r| {
                r.context.insert("is_admin".into(), json!(true));
            }),
        ),
    ];
    for (what, tamper) in tampered {
        let mut forged = signed.clone();
        tamper(&mut forged);
        assert!(
            matches!(signing.verify_request("compute", false, &forged), Err(SignatureError::BadSignature(id)) if id == "k1"),
            "{what}"
        );
    }
    assert!(
        signing
            .verify_request("other-topic", false, &signed)
            .is_err(),
        "topic"
    );
    assert!(
        signing.verify_request("compute", true, &signed).is_err(),
        "cast made a call"
    );
    assert_eq!(signing.verify_request("compute", false, &signed), Ok(()));
}

#[test]
fn unsigned_malformed_and_foreign_signatures_fail() {
    let signing = Signing::new([k1()]).unwrap();
    assert_eq!(
        signing.verify_request("t", false, &request()),
        Err(SignatureError::Unsigned)
    );
    let mut signed = request();
    signing.sign_request("t", false, &mut signed);
    let token = signed.signature.clone().unwrap();
    for bad in [
        "garbage".to_owned(),
        token.replacen(ALGORITHM, "hmac-md5", 1),
        format!("{token}:extra"),
        token[..token.len() - 2].to_owned(),
        token.replacen(":k1:", "::", 1),
    ] {
        let mut forged = signed.clone();
        forged.signature = Some(bad.clone());
        assert!(
            matches!(
                signing.verify_request("t", false, &forged),
                Err(SignatureError::Malformed(_))
            ),
            "{bad}"
        );
    }
    // The same message signed by a key of the same id but another secret (a replay from a
    // deployment with another key), and by a key this side does not hold.
    let impostor = Signing::new([key("k1", "not the real secret!!")]).unwrap();
    impostor.sign_request("t", false, &mut signed);
    assert_eq!(
        signing.verify_request("t", false, &signed),
        Err(SignatureError::BadSignature("k1".into()))
    );
    Signing::new([k2()])
        .unwrap()
        .sign_request("t", false, &mut signed);
    assert_eq!(
        signing.verify_request("t", false, &signed),
        Err(SignatureError::UnknownKey("k2".into()))
    );
    assert!(!SignatureError::BadSignature("k1".into())
        .to_string()
        .contains("secret"));
}

#[test]
fn rotation_signs_with_the_first_key_and_accepts_all() {
    let before = Signing::new([k1()]).unwrap();
    let during = Signing::new([k2(), k1()]).unwrap();
    let after = Signing::new([k2()]).unwrap();

    let mut old = request();
    before.sign_request("t", false, &mut old);
    let mut new = request();
    during.sign_request("t", false, &mut new);
    assert!(new
        .signature
        .as_deref()
        .unwrap()
        .starts_with("hmac-sha256:k2:"));

    assert_eq!(
        during.verify_request("t", false, &old),
        Ok(()),
        "old key still accepted"
    );
    assert_eq!(during.verify_request("t", false, &new), Ok(()));
    assert_eq!(after.verify_request("t", false, &new), Ok(()));
    assert_eq!(
        after.verify_request("t", false, &old),
        Err(SignatureError::UnknownKey("k1".into())),
        "old key removed"
    );
}

#[test]
fn replies_are_bound_to_their_request() {
    let signing = Signing::new([k1()]).unwrap();
    let mut call = request();
    signing.sign_request("t", true, &mut call);
    let mut other_call = request();
    signing.sign_request("t", true, &mut other_call);
    let ours = call.signature.as_deref();

    let events = [
        ReplyEvent::Result {
            value: json!({"x": [1, 2]}),
            ending: true,
        },
        ReplyEvent::Result {
            value: Value::Null,
            ending: true,
        },
        ReplyEvent::Failure(RemoteError::value_error("boom")),
    ];
    for event in events {
        let reply = signing.sign_reply(ours, event);
        // Through the rabbit/memory reply codec and back.
        let body = ReplyMessage::new("m".into(), reply.clone())
            .encode()
            .unwrap();
        let received = ReplyMessage::decode(&body).unwrap().into_reply();
        assert_eq!(received, reply);
        assert_eq!(signing.verify_reply(ours, &received), Ok(()));
        assert!(
            matches!(
                signing.verify_reply(other_call.signature.as_deref(), &received),
                Err(SignatureError::BadSignature(_))
            ),
            "a reply to another call"
        );
        assert_eq!(
            signing.verify_reply(ours, &Reply::from(received.event.clone())),
            Err(SignatureError::Unsigned)
        );
    }

    let mut forged = signing.sign_reply(
        ours,
        ReplyEvent::Result {
            value: json!(1),
            ending: true,
        },
    );
    forged.event = ReplyEvent::Result {
        value: json!(2),
        ending: true,
    };
    assert!(
        signing.verify_reply(ours, &forged).is_err(),
        "forged result"
    );
    let mut flipped = signing.sign_reply(
        ours,
        ReplyEvent::Result {
            value: json!(1),
            ending: true,
        },
    );
    flipped.event = ReplyEvent::Result {
        value: json!(1),
        ending: false,
    };
    assert!(
        signing.verify_reply(ours, &flipped).is_err(),
        "forged ending"
    );

    let heartbeat = signing.sign_reply(ours, ReplyEvent::Heartbeat);
    assert_eq!(heartbeat.signature, None);
    assert_eq!(signing.verify_reply(ours, &heartbeat), Ok(()));
}

#[test]
fn notifications_verify_in_every_framing_and_detect_tampering() {
    let signing = Signing::new([k1()]).unwrap();
    let mut sent = notification();
    signing.sign_notification(&mut sent);
    for style in [ContextStyle::Flattened, ContextStyle::Nested] {
        for format in [NotificationFormat::V2, NotificationFormat::V1] {
            let (received, _) =
                NotificationMessage::decode(&sent.encode(format, style, None).unwrap()).unwrap();
            assert_eq!(
                signing.verify_notification(&received),
                Ok(()),
                "{style:?} {format:?}"
            );
        }
    }
    let tampered: Vec<Tamper<NotificationMessage>> = vec![
        ("payload", Box::new(|n| n.payload["ok"] = json!(false))),
        (
            "context",
            Box::new(|n| {
                n.context.insert("user_id".into(), json!("admin"));
            }),
        ),
        (
            "event_type",
            Box::new(|n| n.event_type = "compute.instance.delete.end".into()),
        ),
        ("priority", Box::new(|n| n.priority = Priority::Critical)),
        ("publisher_id", Box::new(|n| n.publisher_id = "evil".into())),
        (
            "message_id",
            Box::new(|n| n.message_id = wire::new_message_id()),
        ),
        (
            "timestamp",
            Box::new(|n| n.timestamp = "2000-01-01 00:00:00".into()),
        ),
    ];
    for (what, tamper) in tampered {
        let mut forged = sent.clone();
        tamper(&mut forged);
        assert!(signing.verify_notification(&forged).is_err(), "{what}");
    }
}

#[test]
fn a_signature_of_one_kind_does_not_pass_for_another() {
    let signing = Signing::new([k1()]).unwrap();
    let mut n = notification();
    signing.sign_notification(&mut n);
    let mut r = request();
    r.signature = n.signature.clone();
    assert!(signing.verify_request("t", false, &r).is_err());
}

#[test]
fn settings_parse_and_validate() {
    let signing =
        Signing::parse("k2:second secret 16+ bytes\n k1:first secret: 16+ bytes").unwrap();
    assert_eq!(
        signing
            .keys()
            .iter()
            .map(SigningKey::id)
            .collect::<Vec<_>>(),
        ["k2", "k1"]
    );
    assert_eq!(signing.mode(), SignatureMode::Reject);
    for bad in [
        "",
        " , ",
        "k1:0123456789abcdef,k1:0123456789abcdef",
        "k1:short",
    ] {
        let err = Signing::parse(bad).unwrap_err();
        assert!(
            matches!(err, MessagingError::InvalidConfig { .. }),
            "{bad:?}: {err}"
        );
    }
    assert_eq!(
        "warn".parse::<SignatureMode>().unwrap(),
        SignatureMode::Warn
    );
    assert!("drop".parse::<SignatureMode>().is_err());

    let parsed: Signing = serde_json::from_str(
        r#"{"keys": [{"id": "k1", "secret": "first secret, 16+ bytes"}], "mode": "warn"}"#,
    )
    .unwrap();
    assert_eq!(
        parsed,
        Signing::new([k1()]).unwrap().with_mode(SignatureMode::Warn)
    );
    let shown = serde_json::to_string(&parsed).unwrap();
    assert_eq!(shown, r#"{"keys":[{"id":"k1"}],"mode":"warn"}"#);
    assert!(!format!("{parsed:?}").contains("first secret"));
    assert!(serde_json::from_str::<Signing>(r#"{"keys": []}"#).is_err());
}

#[test]
fn the_guard_applies_the_mode_and_counts() {
    let reject = Guard::new(Signing::new([k1()]).unwrap(), "test");
    assert!(reject.admit(Ok(()), "test", "m"));
    assert!(!reject.admit(Err(SignatureError::Unsigned), "test", "m"));
    assert_eq!(reject.failures(), 1);
    let warn = Guard::new(
        Signing::new([k1()]).unwrap().with_mode(SignatureMode::Warn),
        "test",
    );
    assert!(warn.admit(Err(SignatureError::Unsigned), "test", "m"));
    assert_eq!(warn.failures(), 1);
}

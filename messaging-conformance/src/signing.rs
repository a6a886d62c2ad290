//! Signing cases ([`messaging_core::signing`]): signed messages cross every driver and verify
//! on the other side, and forged ones, sent through the driver contract directly as an attacker
//! on the bus would, are rejected without reaching an endpoint.

use std::time::Duration;

use messaging_core::driver::{NotifyAddress, RpcAddress, SendOptions, ServerAddress};
use messaging_core::signing::{SignatureMode, Signing, SigningKey};
use messaging_core::wire::{self, NotificationFormat, NotificationMessage, ReplyEvent, RpcRequest};
use messaging_core::{
    MessagingError, NoArgs, Notification, NotificationListener, NotificationTransport, Notifier,
    Priority, RpcClient, RpcServer, RpcTransport, ServiceHandle, Target, TransportOptions,
    DEFAULT_EXCHANGE,
};
use serde_json::{json, Value};

use crate::support::{
    ctx, recording_endpoint, start_server, test_endpoint, Recorded, CALL_TIMEOUT,
};
use crate::{unique, Backend, Recorder};

fn key(id: &str) -> SigningKey {
    SigningKey::new(id, format!("conformance secret of {id}")).expect("a valid key")
}

/// A key with the id `k1` but another secret: what a replay from another deployment carries.
fn impostor_k1() -> Signing {
    Signing::new([SigningKey::new("k1", "not the secret of k1 at all").expect("a valid key")])
        .expect("valid signing")
}

fn signing(ids: &[&str]) -> Signing {
    Signing::new(ids.iter().map(|id| key(id))).expect("valid signing")
}

fn options(signing: Option<Signing>) -> TransportOptions {
    TransportOptions {
        signing,
        ..TransportOptions::default()
    }
}

async fn rpc(b: &Backend, signing: Option<Signing>) -> RpcTransport {
    b.rpc_with(&options(signing)).await
}

async fn notifications(b: &Backend, signing: Option<Signing>) -> NotificationTransport {
    b.notifications_with(&options(signing)).await
}

async fn serve(
    b: &Backend,
    transport: RpcTransport,
    topic: &str,
    recorder: std::sync::Arc<Recorder<Recorded>>,
) -> ServiceHandle {
    let handle = RpcServer::new(transport, Target::topic(topic).server("srv1"))
        .endpoint(test_endpoint("srv1", recorder))
        .start()
        .await
        .expect("server starts");
    b.settled().await;
    handle
}

/// Wait until `failures()` reaches `count`: the receiver has checked (and dropped) that many.
async fn wait_for_failures(failures: impl Fn() -> u64, count: u64, within: Duration, what: &str) {
    let deadline = tokio::time::Instant::now() + within;
    while failures() < count {
        if tokio::time::Instant::now() > deadline {
            panic!(
                "{what}: {} of {count} signature failures within {within:?}",
                failures()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(failures(), count, "{what}");
}

/// A `record` request as a client would build it.
fn record_request(value: &str) -> RpcRequest {
    RpcRequest {
        method: "record".into(),
        args: json!({ "value": value })
            .as_object()
            .cloned()
            .unwrap_or_default(),
        namespace: None,
        version: None,
        context: ctx().0,
        signature: None,
    }
}

fn to_topic(topic: &str) -> RpcAddress {
    RpcAddress {
        exchange: DEFAULT_EXCHANGE.into(),
        topic: topic.into(),
        server: None,
        fanout: false,
    }
}

/// Signed calls and casts cross the driver and verify, replies too; nothing fails its check.
pub async fn signing_rpc_round_trip(b: Backend) {
    let topic = unique("signed");
    let recorder = Recorder::new();
    let server_transport = rpc(&b, Some(signing(&["k1"]))).await;
    let server = serve(&b, server_transport.clone(), &topic, recorder.clone()).await;
    let transport = rpc(&b, Some(signing(&["k1"]))).await;
    let client = RpcClient::new(transport.clone(), Target::topic(&topic)).timeout(CALL_TIMEOUT);

    let value = json!({"a": 1, "b": [1.5, "ü", null], "c": {"nested": true}});
    let echoed: Value = client
        .call(&ctx(), "echo", &json!({ "value": value }))
        .await
        .expect("signed call");
    assert_eq!(echoed, value);
    let who: Value = client
        .prepare()
        .version("1.3")
        .call(&ctx(), "whoami", &NoArgs {})
        .await
        .expect("signed call with a version");
    assert_eq!(who["ctxt"]["user_id"], "u-1");
    let failure = client.call::<Value>(&ctx(), "fail", &NoArgs {}).await;
    assert!(
        matches!(failure, Err(MessagingError::Remote(_))),
        "a signed failure reply: {failure:?}"
    );
    client
        .cast(&ctx(), "record", &json!({"value": "signed cast"}))
        .await
        .expect("signed cast");
    let got = recorder.wait_for(1, b.wait(), "signed cast").await;
    assert_eq!(got[0].value, "signed cast");
    assert_eq!(server_transport.signature_failures(), 0);
    assert_eq!(transport.signature_failures(), 0);
    server.shutdown().await;
}

/// Forged requests (altered args, altered context, a wrong key, an unknown key, unsigned) are
/// dropped before dispatch; the server keeps serving genuine ones.
pub async fn signing_rejects_forged_requests(b: Backend) {
    let topic = unique("forged");
    let recorder = Recorder::new();
    let server_transport = rpc(&b, Some(signing(&["k1"]))).await;
    let server = serve(&b, server_transport.clone(), &topic, recorder.clone()).await;
    let attacker = rpc(&b, None).await;
    let to = to_topic(&topic);
    let genuine = signing(&["k1"]);

    let mut forged_body = record_request("genuine body");
    genuine.sign_request(&topic, false, &mut forged_body);
    forged_body
        .args
        .insert("value".into(), json!("forged body"));

    let mut forged_context = record_request("forged context");
    genuine.sign_request(&topic, false, &mut forged_context);
    forged_context
        .context
        .insert("user_id".into(), json!("admin"));

    let mut wrong_key = record_request("wrong key");
    impostor_k1().sign_request(&topic, false, &mut wrong_key);

    let mut unknown_key = record_request("unknown key");
    signing(&["k9"]).sign_request(&topic, false, &mut unknown_key);

    let unsigned = record_request("unsigned");

    let forgeries = [
        forged_body,
        forged_context,
        wrong_key,
        unknown_key,
        unsigned,
    ];
    for request in &forgeries {
        attacker
            .driver()
            .cast(&to, request, &SendOptions::default())
            .await
            .expect("the bus takes anything");
    }
    wait_for_failures(
        || server_transport.signature_failures(),
        forgeries.len() as u64,
        b.wait(),
        "forged requests",
    )
    .await;

    let client = RpcClient::new(rpc(&b, Some(signing(&["k1"]))).await, Target::topic(&topic))
        .timeout(CALL_TIMEOUT);
    client
        .cast(&ctx(), "record", &json!({"value": "genuine"}))
        .await
        .expect("genuine cast");
    let got = recorder.wait_for(1, b.wait(), "the genuine cast").await;
    assert_eq!(got[0].value, "genuine");
    let who: Value = client
        .call(&ctx(), "whoami", &NoArgs {})
        .await
        .expect("the server still answers");
    assert_eq!(who["ctxt"]["user_id"], "u-1");
    server.shutdown().await;
    let seen: Vec<Value> = recorder.items().into_iter().map(|r| r.value).collect();
    assert_eq!(seen, [json!("genuine")], "no forged request was dispatched");
    assert_eq!(
        server_transport.signature_failures(),
        forgeries.len() as u64
    );
}

/// Forged replies (altered result, wrong key, a genuine reply to another call, unsigned) are
/// ignored and the caller gets the genuine reply that follows them.
pub async fn signing_rejects_forged_replies(b: Backend) {
    let topic = unique("forgedreply");
    let genuine = signing(&["k1"]);
    // A bare server on the driver contract: it answers every call with forgeries first.
    let server_transport = rpc(&b, None).await;
    let mut listener = server_transport
        .driver()
        .listen(&ServerAddress {
            exchange: DEFAULT_EXCHANGE.into(),
            topic: topic.clone(),
            server: "srv1".into(),
        })
        .await
        .expect("listen");
    b.settled().await;
    let transport = rpc(&b, Some(genuine.clone())).await;
    let client = RpcClient::new(transport.clone(), Target::topic(&topic)).timeout(CALL_TIMEOUT);
    let call = tokio::spawn(async move {
        client
            .call::<Value>(&ctx(), "echo", &json!({"value": "x"}))
            .await
    });

    let incoming = listener.next().await.expect("the call arrives");
    assert_eq!(
        genuine.verify_request(&topic, true, &incoming.request),
        Ok(()),
        "the client signed its call"
    );
    let ours = incoming.request.signature.as_deref();
    let replier = incoming.reply.expect("a call has a replier");
    let result = |value: &str| ReplyEvent::Result {
        value: json!(value),
        ending: true,
    };

    let mut altered = genuine.sign_reply(ours, result("genuine"));
    altered.event = result("altered result");
    let wrong_key = impostor_k1().sign_reply(ours, result("wrong key"));
    let mut other_call = record_request("other");
    genuine.sign_request(&topic, true, &mut other_call);
    let replayed = genuine.sign_reply(other_call.signature.as_deref(), result("other call"));
    let unsigned = result("unsigned").into();
    let forgeries = [altered, wrong_key, replayed, unsigned];
    for reply in forgeries.iter().cloned() {
        replier.send(reply).await.expect("reply sent");
    }
    replier
        .send(genuine.sign_reply(ours, result("genuine")))
        .await
        .expect("reply sent");

    let answer = call.await.expect("the call task").expect("the call");
    assert_eq!(answer, "genuine");
    // Replies arrive in order, so the forgeries were checked before the genuine reply.
    assert_eq!(transport.signature_failures(), forgeries.len() as u64);
    listener.close().await;
}

/// During a rotation the server accepts [k2, k1]: clients still signing with k1 and clients
/// already signing with k2 are both served (and verify its k2-signed replies). Once k1 is
/// removed, messages signed with it are rejected.
pub async fn signing_rotation(b: Backend) {
    let topic = unique("rotation");
    let server = start_rotating_server(&b, &topic, &["k2", "k1"], Recorder::new()).await;
    for keys in [["k1", "k2"], ["k2", "k1"]] {
        let transport = rpc(&b, Some(signing(&keys))).await;
        let client = RpcClient::new(transport.clone(), Target::topic(&topic)).timeout(CALL_TIMEOUT);
        let echoed: Value = client
            .call(&ctx(), "echo", &json!({"value": keys[0]}))
            .await
            .unwrap_or_else(|e| panic!("a client signing with {}: {e}", keys[0]));
        assert_eq!(echoed, keys[0]);
        assert_eq!(transport.signature_failures(), 0);
    }
    assert_eq!(server.1.signature_failures(), 0);
    server.0.shutdown().await;

    let topic = unique("rotated");
    let recorder = Recorder::new();
    let (server, server_transport) =
        start_rotating_server(&b, &topic, &["k2"], recorder.clone()).await;
    let old = RpcClient::new(rpc(&b, Some(signing(&["k1"]))).await, Target::topic(&topic));
    old.cast(&ctx(), "record", &json!({"value": "old key"}))
        .await
        .expect("cast");
    wait_for_failures(
        || server_transport.signature_failures(),
        1,
        b.wait(),
        "a cast signed with a removed key",
    )
    .await;
    let new = RpcClient::new(rpc(&b, Some(signing(&["k2"]))).await, Target::topic(&topic));
    new.cast(&ctx(), "record", &json!({"value": "new key"}))
        .await
        .expect("cast");
    recorder.wait_for(1, b.wait(), "the new key's cast").await;
    server.shutdown().await;
    let seen: Vec<Value> = recorder.items().into_iter().map(|r| r.value).collect();
    assert_eq!(seen, [json!("new key")]);
}

async fn start_rotating_server(
    b: &Backend,
    topic: &str,
    keys: &[&str],
    recorder: std::sync::Arc<Recorder<Recorded>>,
) -> (ServiceHandle, RpcTransport) {
    let transport = rpc(b, Some(signing(keys))).await;
    (
        serve(b, transport.clone(), topic, recorder).await,
        transport,
    )
}

/// In warn mode, unsigned requests are served and unsigned replies accepted, and counted.
pub async fn signing_warn_mode_processes_unsigned_rpc(b: Backend) {
    let warn = signing(&["k1"]).with_mode(SignatureMode::Warn);

    let topic = unique("warnsrv");
    let server_transport = rpc(&b, Some(warn.clone())).await;
    let server = serve(&b, server_transport.clone(), &topic, Recorder::new()).await;
    let unsigned = RpcClient::new(rpc(&b, None).await, Target::topic(&topic)).timeout(CALL_TIMEOUT);
    let echoed: Value = unsigned
        .call(&ctx(), "echo", &json!({"value": "unsigned call"}))
        .await
        .expect("an unsigned call to a warn-mode server");
    assert_eq!(echoed, "unsigned call");
    assert_eq!(server_transport.signature_failures(), 1);
    server.shutdown().await;

    let topic = unique("warncli");
    let server = start_server(&b, Target::topic(&topic).server("srv1"), Recorder::new()).await;
    let transport = rpc(&b, Some(warn)).await;
    let client = RpcClient::new(transport.clone(), Target::topic(&topic)).timeout(CALL_TIMEOUT);
    let echoed: Value = client
        .call(&ctx(), "echo", &json!({"value": "unsigned reply"}))
        .await
        .expect("a warn-mode client accepts an unsigned reply");
    assert_eq!(echoed, "unsigned reply");
    assert_eq!(transport.signature_failures(), 1);
    server.shutdown().await;
}

async fn start_listener(
    b: &Backend,
    transport: NotificationTransport,
    topic: &str,
    recorder: std::sync::Arc<Recorder<Notification>>,
) -> ServiceHandle {
    let handle = NotificationListener::new(transport)
        .target(Target::topic(topic))
        .endpoint(recording_endpoint(recorder))
        .start()
        .await
        .expect("listener starts");
    b.settled().await;
    handle
}

fn notification(event_type: &str, payload: Value) -> NotificationMessage {
    NotificationMessage {
        message_id: wire::new_message_id(),
        publisher_id: "compute.host1".into(),
        event_type: event_type.into(),
        priority: Priority::Info,
        payload,
        timestamp: wire::timestamp_now(),
        context: ctx().0,
        signature: None,
    }
}

/// Signed notifications arrive; forged ones (altered payload, altered context, a wrong key,
/// unsigned) are acknowledged and dropped before any endpoint sees them.
pub async fn signing_notifications_round_trip_and_forgeries_rejected(b: Backend) {
    let topic = unique("signednotif");
    let genuine = signing(&["k1"]);
    let recorder = Recorder::new();
    let listener_transport = notifications(&b, Some(genuine.clone())).await;
    let listener = start_listener(&b, listener_transport.clone(), &topic, recorder.clone()).await;

    let attacker = notifications(&b, None).await;
    let to = NotifyAddress {
        exchange: DEFAULT_EXCHANGE.into(),
        topic: topic.clone(),
        priority: Priority::Info,
    };
    let mut forged_payload = notification("test.forged", json!({"amount": 1}));
    genuine.sign_notification(&mut forged_payload);
    forged_payload.payload = json!({"amount": 1000});
    let mut forged_context = notification("test.forged", json!({"amount": 1}));
    genuine.sign_notification(&mut forged_context);
    forged_context
        .context
        .insert("user_id".into(), json!("admin"));
    let mut wrong_key = notification("test.forged", json!({"amount": 1}));
    impostor_k1().sign_notification(&mut wrong_key);
    let unsigned = notification("test.forged", json!({"amount": 1}));
    let forgeries = [forged_payload, forged_context, wrong_key, unsigned];
    for message in &forgeries {
        attacker
            .driver()
            .notify(
                &to,
                message,
                NotificationFormat::V2,
                &SendOptions::default(),
            )
            .await
            .expect("the bus takes anything");
    }
    wait_for_failures(
        || listener_transport.signature_failures(),
        forgeries.len() as u64,
        b.wait(),
        "forged notifications",
    )
    .await;

    let notifier_transport = notifications(&b, Some(genuine)).await;
    Notifier::new(notifier_transport, "compute.host1")
        .topics([&topic])
        .info(&ctx(), "test.genuine", &json!({"amount": 1, "ü": [1, 2]}))
        .await
        .expect("notify");
    let got = recorder
        .wait_for(1, b.wait(), "the genuine notification")
        .await;
    assert_eq!(got[0].event_type, "test.genuine");
    assert_eq!(got[0].payload, json!({"amount": 1, "ü": [1, 2]}));
    assert_eq!(got[0].context.get_str("user_id"), Some("u-1"));
    listener.shutdown().await;
    assert_eq!(recorder.len(), 1, "no forged notification was dispatched");
    assert_eq!(
        listener_transport.signature_failures(),
        forgeries.len() as u64
    );
}

/// A warn-mode listener handles unsigned notifications, and counts them.
pub async fn signing_warn_mode_processes_unsigned_notifications(b: Backend) {
    let topic = unique("warnnotif");
    let recorder = Recorder::new();
    let warn = signing(&["k1"]).with_mode(SignatureMode::Warn);
    let listener_transport = notifications(&b, Some(warn)).await;
    let listener = start_listener(&b, listener_transport.clone(), &topic, recorder.clone()).await;
    Notifier::new(notifications(&b, None).await, "p")
        .topics([&topic])
        .info(&ctx(), "test.unsigned", &json!({"n": 1}))
        .await
        .expect("notify");
    let got = recorder
        .wait_for(1, b.wait(), "the unsigned notification")
        .await;
    assert_eq!(got[0].event_type, "test.unsigned");
    listener.shutdown().await;
    assert_eq!(listener_transport.signature_failures(), 1);
}

//! Poison input against RabbitMQ's AMQP 1.0 endpoint (broker mode), at `AMQP1_URL`: floods of
//! malformed messages sent raw (a plain fe2o3-amqp sender) onto the queues a server and a
//! listener consume. Nothing takes the process down, nothing stays in a queue (ready or
//! unsettled), the endpoint never sees a malformed message, the next good one is served.
//! Skipped with a visible message when unset, unless `MESSAGING_REQUIRE_BROKERS=1`.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{broker_url, echo, plain, topic, wait_for_empty};
use fe2o3_amqp::types::messaging::{AmqpSequence, AmqpValue, Batch, Body, Data, Message, Outcome};
use fe2o3_amqp::types::primitives::{Array, Binary, OrderedMap, Symbol, Value};
use fe2o3_amqp::{Connection, Sender, Session};
use messaging_conformance::poison::{malformed_notifications, malformed_requests, Malformed};
use messaging_core::{
    get_notification_transport, get_rpc_transport, Context, Endpoint, NotificationEndpoint,
    NotificationListener, NotificationResult, Notifier, RemoteError, RpcClient, RpcServer, Target,
};
use serde_amqp::described::Described;
use serde_amqp::descriptor::Descriptor;
use serde_amqp::lazy::LazyValue;
use serde_json::{json, Value as Json};
use tokio::sync::mpsc;

const FLOOD: usize = 1_000;

/// One malformed AMQP message.
struct Poison {
    kind: &'static str,
    body: Raw,
}

enum Raw {
    /// A body the way any encoder writes it.
    Body(Body<Value>),
    /// The encoded value of an amqp-value section, sent byte for byte: damage no well-behaved
    /// encoder produces (and a decoder must survive).
    Encoded(Vec<u8>),
}

/// The core's body as the amqp-value string the driver reads (binary when it is not UTF-8).
fn as_value(body: Vec<u8>) -> Body<Value> {
    match String::from_utf8(body) {
        Ok(text) => Body::Value(AmqpValue(Value::String(text))),
        Err(e) => Body::Value(AmqpValue(Value::Binary(Binary::from(e.into_bytes())))),
    }
}

fn data(sections: &[&[u8]]) -> Body<Value> {
    Body::Data(Batch::new(
        sections
            .iter()
            .map(|s| Data(Binary::from(s.to_vec())))
            .collect::<Vec<_>>(),
    ))
}

/// An amqp-value list nested `depth` deep (list32 around list32 … around an empty list),
/// built without recursion.
fn nested_list(depth: usize) -> Vec<u8> {
    const HEADER: usize = 9; // format code, size, count
    let mut bytes = Vec::with_capacity(depth * HEADER + 1);
    for level in (1..=depth).rev() {
        // size: the count field and everything nested inside this level.
        let size = u32::try_from(4 + (level - 1) * HEADER + 1).expect("fits");
        bytes.push(0xd0);
        bytes.extend_from_slice(&size.to_be_bytes());
        bytes.extend_from_slice(&1u32.to_be_bytes());
    }
    bytes.push(0x45);
    bytes
}

/// Damage only AMQP 1.0 can carry: the right text in the wrong type or section, bodies of
/// other types, undecodable encodings. `valid` is a body the driver would accept as an
/// amqp-value string.
fn amqp_damage(i: usize, valid: &str) -> Poison {
    let value = |v: Value| Raw::Body(Body::Value(AmqpValue(v)));
    let (kind, body) = match i % 13 {
        0 => ("amqp-value int", value(Value::Int(42))),
        1 => ("amqp-value bool", value(Value::Bool(true))),
        2 => (
            "amqp-value list of the text",
            value(Value::List(vec![Value::String(valid.into())])),
        ),
        3 => ("amqp-value map", {
            let mut map = OrderedMap::new();
            map.insert(Value::String("request".into()), Value::String(valid.into()));
            value(Value::Map(map))
        }),
        4 => (
            "amqp-value symbol of the text",
            value(Value::Symbol(Symbol::from(valid))),
        ),
        5 => (
            "amqp-value described string",
            value(Value::Described(Box::new(Described {
                descriptor: Descriptor::Code(0x0000_1234_0000_0001),
                value: Value::String(valid.into()),
            }))),
        ),
        6 => ("amqp-value null", value(Value::Null)),
        7 => (
            "amqp-value array of the text",
            value(Value::Array(Array::from(vec![Value::String(valid.into())]))),
        ),
        8 => (
            "amqp-sequence of the text",
            Raw::Body(Body::Sequence(Batch::new(vec![AmqpSequence(vec![
                Value::String(valid.into()),
            ])]))),
        ),
        9 => (
            "data sections that join into a body without a request object",
            Raw::Body(data(&[b"{\"request\": ", b"[1, 2]", b", \"context\": {}}"])),
        ),
        10 => ("an empty data section", Raw::Body(data(&[b""]))),
        11 => (
            "amqp-value string of invalid UTF-8",
            Raw::Encoded(vec![0xa1, 4, b'{', 0xff, 0xfe, b'}']),
        ),
        _ => (
            "amqp-value list nested 100,000 deep",
            Raw::Encoded(nested_list(100_000)),
        ),
    };
    Poison { kind, body }
}

/// `FLOOD` malformed messages: the core's bodies as amqp-value strings, the core's bodies
/// inside the driver's `{"request": …}` frame as a data section (so that they reach the
/// decoder's inner layers), and every fourth one AMQP 1.0 damage.
fn flood(core: impl Iterator<Item = Malformed>, valid: &str) -> Vec<Poison> {
    core.enumerate()
        .map(|(i, m)| match i % 4 {
            0 => {
                let mut framed = b"{\"request\": ".to_vec();
                framed.extend_from_slice(&m.body);
                framed.extend_from_slice(b", \"context\": {}}");
                Poison {
                    kind: m.kind,
                    body: Raw::Body(data(&[&framed])),
                }
            }
            2 => amqp_damage(i / 4, valid),
            _ => Poison {
                kind: m.kind,
                body: Raw::Body(as_value(m.body)),
            },
        })
        .collect()
}

/// Send `flood` to `address` through a raw fe2o3-amqp link, each awaiting the broker's
/// `accepted`: every message is on the queue when this returns. The count of each kind.
async fn raw_send(url: &str, address: &str, flood: Vec<Poison>) -> BTreeMap<&'static str, usize> {
    let mut connection = Connection::open("poison-sender", url)
        .await
        .expect("raw connection");
    let mut session = Session::begin(&mut connection).await.expect("raw session");
    let mut sender = Sender::attach(&mut session, "poison-sender", address)
        .await
        .expect("raw sender");
    let mut kinds = BTreeMap::new();
    for poison in flood {
        let outcome = match poison.body {
            Raw::Body(body) => sender.send(Message::builder().body(body).build()).await,
            Raw::Encoded(bytes) => {
                let value: LazyValue = serde_amqp::from_slice(&bytes).expect("framed value");
                sender
                    .send(Message::builder().body(AmqpValue(value)).build())
                    .await
            }
        };
        match outcome {
            Ok(Outcome::Accepted(_)) => *kinds.entry(poison.kind).or_insert(0) += 1,
            other => panic!("the broker did not take {}: {other:?}", poison.kind),
        }
    }
    let _ = sender.close().await;
    let _ = session.end().await;
    let _ = connection.close().await;
    kinds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_malformed_requests_do_not_stop_the_server() {
    let Some(url) = broker_url("a_thousand_malformed_requests_do_not_stop_the_server") else {
        return;
    };
    let url = plain(&url);
    let topic = topic("poison_rpc");
    let served = Arc::new(Mutex::new(Vec::new()));
    let seen = served.clone();
    let server = RpcServer::new(
        get_rpc_transport(&url).await.unwrap(),
        Target::topic(&topic).server("srv1"),
    )
    .endpoint(Endpoint::new().method(
        "echo",
        move |_ctx: Context, args: serde_json::Map<String, Json>| {
            let value = args.get("value").cloned().unwrap_or(Json::Null);
            seen.lock().unwrap().push(value.clone());
            async move { Ok::<_, RemoteError>(value) }
        },
    ))
    .start()
    .await
    .unwrap();
    // What the wrong-type damage carries: a cast the server would serve were it well sent.
    let valid = json!({"request": {"method": "echo", "args": {"value": "poison"}}, "context": {}})
        .to_string();
    let queue = format!("unicast.openstack.{topic}");
    let kinds = raw_send(
        &url,
        &format!("/amq/queue/{queue}"),
        flood(malformed_requests(FLOOD), &valid),
    )
    .await;
    println!(
        "sent {} malformed requests of {} kinds: {kinds:?}",
        kinds.values().sum::<usize>(),
        kinds.len()
    );
    assert_eq!(kinds.values().sum::<usize>(), FLOOD);

    let client = RpcClient::new(
        get_rpc_transport(&url).await.unwrap(),
        Target::topic(&topic),
    )
    .timeout(Duration::from_secs(60));
    assert_eq!(
        echo(&client, "still serving").await.unwrap(),
        "still serving"
    );
    // Every malformed request was settled: none waits in the queue, none is held unsettled.
    wait_for_empty(&queue).await;
    assert_eq!(echo(&client, "and again").await.unwrap(), "and again");
    assert_eq!(
        *served.lock().unwrap(),
        vec![json!("still serving"), json!("and again")],
        "a malformed request reached the endpoint"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_malformed_notifications_do_not_stop_the_listener() {
    let Some(url) = broker_url("a_thousand_malformed_notifications_do_not_stop_the_listener")
    else {
        return;
    };
    let url = plain(&url);
    let topic = topic("poison_notify");
    let transport = get_notification_transport(&url).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let listener = NotificationListener::new(transport.clone())
        .target(Target::topic(&topic))
        .endpoint(NotificationEndpoint::new().on_all(move |n| {
            let tx = tx.clone();
            async move {
                tx.send(n.event_type).unwrap();
                NotificationResult::Handled
            }
        }))
        .start()
        .await
        .unwrap();
    let inner = json!({
        "message_id": "5c329c20-d435-444c-8fa2-e1b54592219c",
        "publisher_id": "compute.host1",
        "event_type": "poison",
        "priority": "INFO",
        "payload": {},
        "timestamp": "2026-11-21 10:00:00.000000",
    });
    let valid = json!({
        "request": {"oslo.version": "2.0", "oslo.message": inner.to_string()},
        "context": {},
    })
    .to_string();
    let queue = format!("unicast.openstack.{topic}.info");
    let kinds = raw_send(
        &url,
        &format!("/queue/{queue}"),
        flood(malformed_notifications(FLOOD), &valid),
    )
    .await;
    println!(
        "sent {} malformed notifications of {} kinds: {kinds:?}",
        kinds.values().sum::<usize>(),
        kinds.len()
    );
    assert_eq!(kinds.values().sum::<usize>(), FLOOD);

    Notifier::new(transport.clone(), "compute.host1")
        .topics([&topic])
        .info(&Context::new(), "good", &json!({}))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .expect("the good notification within 60 s")
        .unwrap();
    assert_eq!(got, "good", "a malformed notification reached the endpoint");
    wait_for_empty(&queue).await;
    assert!(
        rx.try_recv().is_err(),
        "a malformed notification reached the endpoint"
    );
    listener.shutdown().await;
    transport.close().await;
}

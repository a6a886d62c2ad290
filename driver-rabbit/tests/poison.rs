//! Poison input: floods of malformed messages on the queues of a server and a listener, and a
//! notification that keeps failing on a quorum queue with a delivery limit. Nothing takes the
//! process down, nothing stays in a queue, the next good message is served.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use lapin::BasicProperties;
use messaging_conformance::poison::{malformed_notifications, malformed_requests, Malformed};
use messaging_core::*;
use serde_json::{json, Value};
use tokio::sync::mpsc;

const FLOOD: usize = 1_000;

/// A flood: the core's malformed bodies, and every tenth one published without the
/// `content_type` that kombu requires.
fn flood(bodies: impl Iterator<Item = Malformed>) -> Vec<(&'static str, Vec<u8>, BasicProperties)> {
    bodies
        .enumerate()
        .map(|(n, m)| {
            if n % 10 == 9 {
                ("no content type", m.body, BasicProperties::default())
            } else {
                (m.kind, m.body, json_properties())
            }
        })
        .collect()
}

fn ctx() -> Context {
    Context::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_malformed_requests_do_not_stop_the_server() {
    let Some(url) = rabbit_url("a_thousand_malformed_requests_do_not_stop_the_server") else {
        return;
    };
    let vhost = Vhost::new();
    let url = in_vhost(&url, &vhost, "");
    let rpc = get_rpc_transport(&url).await.unwrap();
    let server = RpcServer::new(rpc.clone(), Target::topic("compute").server("host1"))
        .endpoint(
            Endpoint::new().method("echo", |_ctx: Context, args: Value| async move {
                Ok::<_, RemoteError>(args["value"].clone())
            }),
        )
        .start()
        .await
        .unwrap();
    let (connection, channel) = raw(&url).await;
    let mut kinds = std::collections::BTreeSet::new();
    for (kind, body, properties) in flood(malformed_requests(FLOOD)) {
        kinds.insert(kind);
        raw_publish(&channel, "openstack", "compute", &body, properties).await;
    }
    println!(
        "published {FLOOD} malformed requests of {} kinds: {kinds:?}",
        kinds.len()
    );

    let client =
        RpcClient::new(rpc.clone(), Target::topic("compute")).timeout(Duration::from_secs(60));
    let answer: String = client
        .call(&ctx(), "echo", &json!({"value": "still serving"}))
        .await
        .unwrap();
    assert_eq!(answer, "still serving");
    // Every malformed message was dropped (rejected without requeue): none waits in the queue.
    wait_for_empty(&vhost, "compute").await;
    let answer: String = client
        .call(&ctx(), "echo", &json!({"value": "and again"}))
        .await
        .unwrap();
    assert_eq!(answer, "and again");

    server.shutdown().await;
    rpc.close().await;
    let _ = connection.close(200, "OK".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_malformed_notifications_do_not_stop_the_listener() {
    let Some(url) = rabbit_url("a_thousand_malformed_notifications_do_not_stop_the_listener")
    else {
        return;
    };
    let vhost = Vhost::new();
    let url = in_vhost(&url, &vhost, "");
    let transport = get_notification_transport(&url).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let listener = NotificationListener::new(transport.clone())
        .target(Target::topic("notifications"))
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
    let (connection, channel) = raw(&url).await;
    for (_, body, properties) in flood(malformed_notifications(FLOOD)) {
        raw_publish(
            &channel,
            "openstack",
            "notifications.info",
            &body,
            properties,
        )
        .await;
    }
    Notifier::new(transport.clone(), "compute.host1")
        .info(&ctx(), "good", &json!({}))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, "good", "a malformed notification reached the endpoint");
    wait_for_empty(&vhost, "notifications.info").await;
    assert!(
        rx.try_recv().is_err(),
        "a malformed notification reached the endpoint"
    );

    listener.shutdown().await;
    transport.close().await;
    let _ = connection.close(200, "OK".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_that_keeps_failing_is_dead_lettered_after_the_delivery_limit() {
    let Some(url) =
        rabbit_url("a_notification_that_keeps_failing_is_dead_lettered_after_the_delivery_limit")
    else {
        return;
    };
    const LIMIT: usize = 3;
    let vhost = Vhost::new();
    // Where the broker moves what exceeds the limit: a policy, as an operator would set it.
    ctl(&[
        "set_policy",
        "-p",
        &vhost.0,
        "--apply-to",
        "queues",
        "poison-dlx",
        r"^billing\.",
        r#"{"dead-letter-exchange": "billing.dlx"}"#,
    ]);
    let url = in_vhost(
        &url,
        &vhost,
        &format!("rabbit_quorum_queue=true&rabbit_quorum_delivery_limit={LIMIT}"),
    );
    let (connection, channel) = raw(&url).await;
    channel
        .exchange_declare(
            "billing.dlx".into(),
            lapin::ExchangeKind::Fanout,
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    raw_queue(&channel, "billing.dead", "billing.dlx", "").await;

    let transport = get_notification_transport(&url).await.unwrap();
    let attempts = Arc::new(AtomicUsize::new(0));
    let (handled_tx, mut handled) = mpsc::unbounded_channel();
    let tries = attempts.clone();
    let listener = NotificationListener::new(transport.clone())
        .target(Target::topic("billing"))
        .allow_requeue(true)
        .endpoint(NotificationEndpoint::new().on(Priority::Info, move |n| {
            let tries = tries.clone();
            let handled_tx = handled_tx.clone();
            async move {
                if n.event_type == "poison" {
                    tries.fetch_add(1, Ordering::SeqCst);
                    NotificationResult::Requeue
                } else {
                    handled_tx.send(n.event_type).unwrap();
                    NotificationResult::Handled
                }
            }
        }))
        .start()
        .await
        .unwrap();
    let notifier = Notifier::new(transport.clone(), "billing.host1").topics(["billing"]);
    notifier
        .info(&ctx(), "poison", &json!({"n": 1}))
        .await
        .unwrap();
    notifier
        .info(&ctx(), "good", &json!({"n": 2}))
        .await
        .unwrap();

    let got = tokio::time::timeout(Duration::from_secs(60), handled.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, "good");
    let dead = raw_get(&channel, "billing.dead", Duration::from_secs(60))
        .await
        .expect("the poison notification was not dead-lettered");
    let (_, inner) = envelope(&dead.delivery.data);
    assert_eq!(inner["event_type"], "poison");
    // It left the queue for good: the attempts stop growing, the queue is empty.
    let settled = attempts.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(attempts.load(Ordering::SeqCst), settled);
    println!("the poison notification was tried {settled} times with a delivery limit of {LIMIT}");
    assert!(
        (2..=LIMIT + 1).contains(&settled),
        "tried {settled} times with a delivery limit of {LIMIT}"
    );
    wait_for_empty(&vhost, "billing.info").await;

    listener.shutdown().await;
    transport.close().await;
    let _ = connection.close(200, "OK".into()).await;
}

/// Wait until `queue` of `vhost` holds no message, ready or unacknowledged.
async fn wait_for_empty(vhost: &Vhost, queue: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = rabbitmqctl(&["list_queues", "-p", &vhost.0, "name", "messages"]);
        let messages = rows
            .iter()
            .find(|q| q["name"] == queue)
            .and_then(|q| q["messages"].as_u64())
            .expect("the queue exists");
        if messages == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{messages} messages still in {queue}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

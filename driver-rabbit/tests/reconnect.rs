//! Connection loss: the broker closes every connection of a virtual host; servers, listeners
//! and clients reconnect, declare their topology again and go on without the application
//! doing anything.

mod common;

use std::time::{Duration, Instant};

use common::*;
use messaging_core::*;
use serde_json::{json, Value};
use tokio::sync::mpsc;

fn connections(vhost: &str) -> usize {
    rabbitmqctl(&["list_connections", "vhost"])
        .iter()
        .filter(|c| c["vhost"] == vhost)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_resumes_after_the_broker_closes_the_connections() {
    let Some(url) = rabbit_url("everything_resumes_after_the_broker_closes_the_connections") else {
        return;
    };
    let vhost = Vhost::new();
    let url = in_vhost(
        &url,
        &vhost,
        "rabbit_retry_interval=0.2&rabbit_retry_backoff=0.2&rabbit_interval_max=1",
    );
    let topic = unique("drv_reco");
    let rpc = get_rpc_transport(&url).await.unwrap();
    let (casts_tx, mut casts) = mpsc::unbounded_channel();
    let server = RpcServer::new(rpc.clone(), Target::topic(&topic).server("srv1"))
        .endpoint(
            Endpoint::new()
                .method("echo", |_ctx: Context, args: Value| async move {
                    Ok::<_, RemoteError>(args["value"].clone())
                })
                .method("record", move |_ctx: Context, args: Value| {
                    let casts_tx = casts_tx.clone();
                    async move {
                        casts_tx.send(args["value"].clone()).unwrap();
                        Ok::<_, RemoteError>(())
                    }
                }),
        )
        .start()
        .await
        .unwrap();
    let notifications = get_notification_transport(&url).await.unwrap();
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    let listener = NotificationListener::new(notifications.clone())
        .target(Target::topic(&topic))
        .endpoint(NotificationEndpoint::new().on(Priority::Info, move |n| {
            let notes_tx = notes_tx.clone();
            async move {
                notes_tx.send(n.event_type).unwrap();
                NotificationResult::Handled
            }
        }))
        .start()
        .await
        .unwrap();
    let client =
        RpcClient::new(rpc.clone(), Target::topic(&topic)).timeout(Duration::from_secs(30));
    let notifier = Notifier::new(notifications.clone(), "p").topics([topic.clone()]);
    let ctx = Context::new();
    let wait = Duration::from_secs(30);

    for round in 0..2 {
        let answer: String = client
            .call(&ctx, "echo", &json!({"value": format!("round {round}")}))
            .await
            .unwrap();
        assert_eq!(answer, format!("round {round}"));
        client
            .prepare()
            .fanout(true)
            .cast(&ctx, "record", &json!({"value": round}))
            .await
            .unwrap();
        assert_eq!(
            tokio::time::timeout(wait, casts.recv())
                .await
                .unwrap()
                .unwrap(),
            json!(round)
        );
        notifier
            .info(&ctx, &format!("note {round}"), &json!(round))
            .await
            .unwrap();
        assert_eq!(
            tokio::time::timeout(wait, notes.recv())
                .await
                .unwrap()
                .unwrap(),
            format!("note {round}")
        );
        if round == 0 {
            // server listener, reply consumer, client sender, notify sender, notify listener
            assert_eq!(connections(&vhost.0), 5);
            let lost = Instant::now();
            vhost.close_connections();
            // Wait until the listeners are back (the senders reconnect on their next send).
            while connections(&vhost.0) < 3 {
                assert!(lost.elapsed() < wait, "the listeners did not reconnect");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            println!("listeners reconnected after {:?}", lost.elapsed());
        }
    }

    server.shutdown().await;
    listener.shutdown().await;
    rpc.close().await;
    notifications.close().await;
}

//! An RPC server and client over RabbitMQ, wire-compatible with Python oslo.messaging.
//!
//! ```text
//! RABBIT_URL=rabbit://guest:guest@127.0.0.1:5672/ cargo run -p driver-rabbit --example rabbit_rpc
//! ```
//!
//! A Python client can call the same server while it runs:
//! `oslo_peer.py call --url $RABBIT_URL --topic example --method echo --args '{"value": "hi"}'`.

use std::sync::Arc;
use std::time::Duration;

use messaging_core::{
    get_notification_transport, get_rpc_transport, Context, Endpoint, NotificationEndpoint,
    NotificationListener, NotificationResult, Notifier, Priority, RemoteError, RpcClient,
    RpcServer, Target,
};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), messaging_core::MessagingError> {
    messaging_core::install_driver(Arc::new(driver_rabbit::RabbitDriver));
    let url = std::env::var("RABBIT_URL")
        .unwrap_or_else(|_| "rabbit://guest:guest@127.0.0.1:5672/".to_owned());

    // RPC: a server for topic `example`, and a client calling it.
    let rpc = get_rpc_transport(&url).await?;
    let server = RpcServer::new(rpc.clone(), Target::topic("example").server("example-1"))
        .endpoint(
            Endpoint::new().method("echo", |_ctx: Context, args: Value| async move {
                Ok::<_, RemoteError>(args["value"].clone())
            }),
        )
        .start()
        .await?;
    let client =
        RpcClient::new(rpc.clone(), Target::topic("example")).timeout(Duration::from_secs(10));
    let ctx = Context::new().with("request_id", "req-example");
    let answer: Value = client
        .call(&ctx, "echo", &json!({"value": "hello über rabbit"}))
        .await?;
    println!("echo answered {answer}");

    // Notifications: a listener and a notifier on topic `example_notifications`.
    let notifications = get_notification_transport(&url).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = NotificationListener::new(notifications.clone())
        .target(Target::topic("example_notifications"))
        .endpoint(NotificationEndpoint::new().on(Priority::Info, move |n| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(format!("{} from {}", n.event_type, n.publisher_id));
                NotificationResult::Handled
            }
        }))
        .start()
        .await?;
    Notifier::new(notifications.clone(), "example.host1")
        .topics(["example_notifications"])
        .info(&ctx, "example.started", &json!({"ok": true}))
        .await?;
    if let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
        println!("listener got {line}");
    }

    listener.shutdown().await;
    server.shutdown().await;
    rpc.close().await;
    notifications.close().await;
    Ok(())
}

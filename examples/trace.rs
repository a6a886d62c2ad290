//! One traced request, printed by `tracing-subscriber`: a call from a client to a server whose
//! method sends a notification that a listener handles. Each span prints when it closes, with
//! its `trace_id`, its `span_id` and its parent's (`parent_id`), which crossed the transport
//! as W3C trace context.
//!
//! ```sh
//! cargo run --example trace                      # memory://
//! cargo run --example trace -- rabbit://guest:guest@127.0.0.1:5672/
//! ```

use std::time::Duration;

use messaging::*;
use tracing_subscriber::fmt::format::FmtSpan;

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_span_events(FmtSpan::CLOSE)
        .with_target(false)
        .without_time()
        .init();
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "memory:///trace-example".into());
    let rpc = get_rpc_transport(&url).await?;
    let notifications = get_notification_transport(&url).await?;

    let (heard_tx, mut heard) = tokio::sync::mpsc::unbounded_channel();
    let listener = NotificationListener::new(notifications.clone())
        .target(Target::topic("example_events"))
        .endpoint(NotificationEndpoint::new().on(Priority::Info, move |n| {
            let heard = heard_tx.clone();
            async move {
                tracing::info!(event_type = %n.event_type, "billing the boot");
                heard.send(()).ok();
                NotificationResult::Handled
            }
        }))
        .start()
        .await?;
    let notifier = Notifier::new(notifications.clone(), "compute.host1").topics(["example_events"]);
    let endpoint = Endpoint::new().method("boot", move |ctx: Context, _: NoArgs| {
        let notifier = notifier.clone();
        async move {
            notifier
                .info(&ctx, "compute.instance.boot", &serde_json::json!({"id": 7}))
                .await
                .map_err(|e| RemoteError::new("RuntimeError", e.to_string()))?;
            Ok::<_, RemoteError>("booted")
        }
    });
    let server = RpcServer::new(
        rpc.clone(),
        Target::topic("example_compute").server("host1"),
    )
    .endpoint(endpoint)
    .start()
    .await?;

    let client = RpcClient::new(rpc.clone(), Target::topic("example_compute"));
    let booted: String = client.call(&Context::new(), "boot", &NoArgs {}).await?;
    tracing::info!(%booted, "the call returned");
    tokio::time::timeout(Duration::from_secs(30), heard.recv())
        .await
        .map_err(|_| MessagingError::Closed("listener"))?;
    server.shutdown().await;
    listener.shutdown().await;
    rpc.close().await;
    notifications.close().await;
    Ok(())
}

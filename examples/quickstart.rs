//! The tour: an RPC server, a client (call, cast, fanout, a remote error, a timeout) and a
//! notifier with a listener in a pool.
//!
//! ```text
//! cargo quickstart                     # in-process memory://, builds no broker driver
//! cargo run --example quickstart -- rabbit://guest:guest@127.0.0.1:5672/
//! cargo run --example quickstart -- RPC_URL NOTIFY_URL                # hybrid
//! ```

use std::time::Duration;

use messaging::{
    get_notification_transport, get_rpc_transport, Context, Endpoint, MessagingError, NoArgs,
    NotificationEndpoint, NotificationListener, NotificationResult, Notifier, Priority,
    RemoteError, RpcClient, RpcServer, Target,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

#[derive(Debug, Serialize, Deserialize)]
struct EchoArgs {
    value: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct EchoReply {
    value: String,
    served_by: String,
}

/// The compute service's RPC endpoint, as `host` serves it.
fn compute_endpoint(host: &'static str, casts: mpsc::UnboundedSender<String>) -> Endpoint {
    Endpoint::new()
        .version("1.1")
        .method("echo", move |_ctx: Context, args: EchoArgs| async move {
            Ok::<_, RemoteError>(EchoReply {
                value: args.value,
                served_by: host.into(),
            })
        })
        .method("reboot", move |ctx: Context, _: NoArgs| {
            let casts = casts.clone();
            async move {
                let request = ctx.get_str("request_id").unwrap_or("?").to_owned();
                casts
                    .send(format!("{host} reboots (request {request})"))
                    .ok();
                Ok::<_, RemoteError>(())
            }
        })
        .method(
            "resize",
            |_ctx: Context, args: serde_json::Value| async move {
                Err::<(), _>(RemoteError::value_error(format!(
                    "flavor {} does not exist",
                    args["flavor"]
                )))
            },
        )
        .method(
            "sleep",
            |_ctx: Context, args: serde_json::Value| async move {
                tokio::time::sleep(Duration::from_secs_f64(
                    args["seconds"].as_f64().unwrap_or(1.0),
                ))
                .await;
                Ok::<_, RemoteError>(())
            },
        )
}

#[tokio::main]
async fn main() -> Result<(), MessagingError> {
    let mut urls = std::env::args().skip(1);
    let rpc_url = urls.next().unwrap_or_else(|| "memory://".into());
    let notify_url = urls.next().unwrap_or_else(|| rpc_url.clone());
    let rpc = get_rpc_transport(&rpc_url).await?;
    let notify = get_notification_transport(&notify_url).await?;
    println!(
        "RPC over {}, notifications over {}",
        rpc.url(),
        notify.url()
    );

    // Two servers of the "compute" topic.
    let (casts_tx, mut casts) = mpsc::unbounded_channel();
    let mut servers = Vec::new();
    for host in ["host1", "host2"] {
        let server = RpcServer::new(rpc.clone(), Target::topic("compute").server(host))
            .endpoint(compute_endpoint(host, casts_tx.clone()))
            .start()
            .await?;
        servers.push(server);
    }

    let ctx = Context::new()
        .with("user_id", "demo")
        .with("request_id", "req-1");
    let client =
        RpcClient::new(rpc.clone(), Target::topic("compute")).timeout(Duration::from_secs(10));

    let reply: EchoReply = client
        .call(
            &ctx,
            "echo",
            &EchoArgs {
                value: "hello".into(),
            },
        )
        .await?;
    println!("call echo            -> {reply:?}");

    let reply: EchoReply = client
        .prepare()
        .server("host2")
        .call(
            &ctx,
            "echo",
            &EchoArgs {
                value: "to host2".into(),
            },
        )
        .await?;
    println!("call echo on host2   -> {reply:?}");

    client
        .prepare()
        .server("host1")
        .cast(&ctx, "reboot", &NoArgs {})
        .await?;
    println!(
        "cast reboot to host1 -> {}",
        casts.recv().await.unwrap_or_default()
    );

    client
        .prepare()
        .fanout(true)
        .cast(&ctx, "reboot", &NoArgs {})
        .await?;
    let (first, second) = (
        casts.recv().await.unwrap_or_default(),
        casts.recv().await.unwrap_or_default(),
    );
    println!("fanout reboot        -> {first}; {second}");

    match client
        .call::<()>(&ctx, "resize", &serde_json::json!({"flavor": "m1.huge"}))
        .await
    {
        Err(MessagingError::Remote(error)) => println!(
            "call resize          -> remote {}: {}",
            error.class, error.message
        ),
        other => println!("call resize          -> unexpected {other:?}"),
    }

    match client
        .prepare()
        .version("2.0")
        .call::<EchoReply>(&ctx, "echo", &EchoArgs { value: "v2".into() })
        .await
    {
        Err(error @ MessagingError::UnsupportedVersion { .. }) => {
            println!("call echo v2.0       -> {error}")
        }
        other => println!("call echo v2.0       -> unexpected {other:?}"),
    }

    let started = std::time::Instant::now();
    let slow = client.prepare().timeout(Duration::from_millis(500));
    match slow
        .call::<()>(&ctx, "sleep", &serde_json::json!({"seconds": 2}))
        .await
    {
        Err(MessagingError::Timeout { .. }) => println!(
            "call sleep(2s), 0.5s timeout -> timed out after {:?}",
            started.elapsed()
        ),
        other => println!("call sleep           -> unexpected {other:?}"),
    }

    // Notifications: a listener in the "billing" pool gets every compute.* event.
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let listener = NotificationListener::new(notify.clone())
        .target(Target::topic("notifications"))
        .pool("billing")
        .endpoint(NotificationEndpoint::new().on_all(move |n| {
            let events = events_tx.clone();
            async move {
                events
                    .send(format!(
                        "{} {} from {}: {}",
                        n.priority, n.event_type, n.publisher_id, n.payload
                    ))
                    .ok();
                NotificationResult::Handled
            }
        }))
        .start()
        .await?;
    let notifier = Notifier::new(notify, "compute.host1");
    notifier
        .info(
            &ctx,
            "compute.instance.create.end",
            &serde_json::json!({"instance_id": "i-1"}),
        )
        .await?;
    notifier
        .notify(
            &ctx,
            Priority::Error,
            "compute.instance.delete.error",
            &serde_json::json!({"why": "disk"}),
        )
        .await?;
    for _ in 0..2 {
        println!(
            "notification         -> {}",
            events.recv().await.unwrap_or_default()
        );
    }

    listener.shutdown().await;
    for server in servers {
        server.shutdown().await;
    }
    println!("done: servers and listener stopped cleanly");
    Ok(())
}

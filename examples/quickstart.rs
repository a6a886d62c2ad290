//! The tour: a typed service (one trait gives the client and the server), a typed remote
//! error, a cast, a fanout, a version cap, a timeout and a typed notification; then the
//! dynamic string API underneath, which services defined elsewhere (Python) and `omsg` use.
//!
//! ```text
//! cargo quickstart                                   # in-process memory://, builds no broker driver
//! cargo run --example quickstart -- rabbit://guest:guest@127.0.0.1:5672/
//! cargo run --example quickstart -- RPC_URL NOTIFY_URL                # hybrid
//! cargo quickstart -- --asyncapi > compute.json      # the service described
//! ```

use std::time::Duration;

use messaging::typed::AsyncApi;
use messaging::{
    get_notification_transport, get_rpc_transport, CallError, Context, MessagingError,
    NotificationEndpoint, NotificationListener, Notifier, RpcClient, RpcServer, Target,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// The compute service. Parameter names are the keyword arguments on the wire.
#[messaging::service(version = "1.1")]
pub trait Compute {
    /// Boot an instance of `flavor`, in `zone` if given.
    async fn boot(
        &self,
        ctx: Context,
        flavor: String,
        zone: Option<String>,
    ) -> Result<Instance, NoSuchFlavor>;

    /// Reboot every instance of the host (added in 1.1).
    #[since = "1.1"]
    async fn reboot_all(&self, ctx: Context);

    /// Take a while.
    async fn sleep(&self, ctx: Context, seconds: f64);
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Instance {
    id: String,
    zone: String,
    host: String,
}

/// Sent as an oslo remote exception (Python sees `NoSuchFlavor`), received as this type.
#[derive(Debug, thiserror::Error, messaging::RemoteException)]
#[error("flavor {flavor} does not exist")]
pub struct NoSuchFlavor {
    flavor: String,
}

/// A notification whose event type and priority are declared once.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema, messaging::Event)]
#[event(type = "compute.instance.boot.end", priority = "info")]
pub struct BootEnd {
    instance: String,
    host: String,
}

/// One compute host's implementation.
struct ComputeHost {
    host: &'static str,
    notifier: Notifier,
    reboots: mpsc::UnboundedSender<String>,
}

impl Compute for ComputeHost {
    async fn boot(
        &self,
        ctx: Context,
        flavor: String,
        zone: Option<String>,
    ) -> Result<Instance, NoSuchFlavor> {
        if !flavor.starts_with("m1.") {
            return Err(NoSuchFlavor { flavor });
        }
        let zone = zone.unwrap_or_else(|| "nova".into());
        let id = format!("{zone}-{}-{flavor}", self.host);
        let event = BootEnd {
            instance: id.clone(),
            host: self.host.into(),
        };
        if let Err(error) = self.notifier.emit(&ctx, &event).await {
            eprintln!("could not notify {event:?}: {error}");
        }
        let host = self.host.into();
        Ok(Instance { id, zone, host })
    }

    async fn reboot_all(&self, ctx: Context) {
        let request = ctx.get_str("request_id").unwrap_or("?");
        let line = format!("{} reboots (request {request})", self.host);
        self.reboots.send(line).ok();
    }

    async fn sleep(&self, _ctx: Context, seconds: f64) {
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut urls = std::env::args().skip(1);
    let rpc_url = urls.next().unwrap_or_else(|| "memory://".into());
    if rpc_url == "--asyncapi" {
        let document = AsyncApi::new("compute", "1.0")
            .service(ComputeClient::SERVICE, "compute")
            .event::<BootEnd>("notifications")
            .to_json();
        println!("{}", serde_json::to_string_pretty(&document)?);
        return Ok(());
    }
    let notify_url = urls.next().unwrap_or_else(|| rpc_url.clone());
    let rpc = get_rpc_transport(&rpc_url).await?;
    let notify = get_notification_transport(&notify_url).await?;
    println!(
        "RPC over {}, notifications over {}",
        rpc.url(),
        notify.url()
    );

    // The billing service hears of every boot (a listener in the "billing" pool).
    let (billed_tx, mut billed) = mpsc::unbounded_channel();
    let listener = NotificationListener::new(notify.clone())
        .target(Target::topic("notifications"))
        .pool("billing")
        .endpoint(
            NotificationEndpoint::new().on_event(move |_ctx, event: BootEnd| {
                let billed = billed_tx.clone();
                async move {
                    billed.send(event).ok();
                }
            }),
        )
        .start()
        .await?;

    // Two servers of the "compute" topic.
    let (reboots_tx, mut reboots) = mpsc::unbounded_channel();
    let mut servers = Vec::new();
    for host in ["host1", "host2"] {
        let notifier = Notifier::new(notify.clone(), format!("compute.{host}"));
        let reboots = reboots_tx.clone();
        let service = ComputeHost {
            host,
            notifier,
            reboots,
        };
        let server = RpcServer::new(rpc.clone(), Target::topic("compute").server(host))
            .endpoint(ComputeServer::new(service))
            .start()
            .await?;
        servers.push(server);
    }

    let ctx = Context::new()
        .with("user_id", "demo")
        .with("request_id", "req-1");
    let compute =
        ComputeClient::new(rpc.clone(), Target::topic("compute")).timeout(Duration::from_secs(10));

    let instance = compute.boot(&ctx, "m1.small".into(), None).await?;
    println!("boot m1.small          -> {instance:?}");
    println!("billing heard          -> {:?}", billed.recv().await);
    let on_host2 = compute.prepare().server("host2");
    let instance = on_host2
        .boot(&ctx, "m1.tiny".into(), Some("az1".into()))
        .await?;
    println!("boot m1.tiny on host2  -> {instance:?}");
    billed.recv().await;

    match compute.boot(&ctx, "huge".into(), None).await {
        Err(CallError::Service(NoSuchFlavor { flavor })) => {
            println!("boot huge              -> NoSuchFlavor {{ flavor: {flavor:?} }}")
        }
        other => println!("boot huge              -> unexpected {other:?}"),
    }

    compute
        .prepare()
        .server("host1")
        .cast()
        .reboot_all(&ctx)
        .await?;
    println!(
        "cast reboot_all host1  -> {}",
        reboots.recv().await.unwrap_or_default()
    );
    compute.fanout().reboot_all(&ctx).await?;
    let (first, second) = (reboots.recv().await, reboots.recv().await);
    println!("fanout reboot_all      -> {first:?}; {second:?}");

    match compute
        .prepare()
        .version_cap("1.0")
        .cast()
        .reboot_all(&ctx)
        .await
    {
        Err(error @ MessagingError::VersionCap { .. }) => {
            println!("reboot_all, cap 1.0    -> {error}")
        }
        other => println!("reboot_all, cap 1.0    -> unexpected {other:?}"),
    }

    let started = std::time::Instant::now();
    let impatient = compute.prepare().timeout(Duration::from_millis(500));
    match impatient.sleep(&ctx, 2.0).await {
        Err(MessagingError::Timeout { .. }) => {
            println!(
                "sleep(2), 0.5 s timeout -> timed out after {:?}",
                started.elapsed()
            )
        }
        other => println!("sleep                  -> unexpected {other:?}"),
    }

    // Beneath: the dynamic API, method and argument names as strings (for services whose API
    // is defined elsewhere). The typed server checks keyword arguments as Python does.
    let dynamic = RpcClient::new(rpc.clone(), Target::topic("compute"));
    let args = serde_json::json!({"flavor": "m1.small", "zone_name": "az1"});
    match dynamic.call::<Instance>(&ctx, "boot", &args).await {
        Err(MessagingError::Remote(error)) => {
            println!(
                "dynamic boot           -> remote {}: {}",
                error.class, error.message
            )
        }
        other => println!("dynamic boot           -> unexpected {other:?}"),
    }

    listener.shutdown().await;
    for server in servers {
        server.shutdown().await;
    }
    println!("done: servers and listener stopped cleanly");
    Ok(())
}

//! One RPC + notification scenario over every pair of transports whose brokers are configured:
//! a typed compute service serves calls and, while handling each, emits a typed notification
//! that a billing service's listener (in a pool) receives; a fanout cast reaches every server;
//! the service's declared error crosses back as its type; a method above the client's version
//! cap is refused before sending.
//!
//! Pairs (each skipped with a visible line unless its URL variables are set; under
//! `MESSAGING_REQUIRE_BROKERS=1` a pair whose variables are missing fails, except the router
//! pairs, which are opt-in): memory/memory, rabbit/rabbit, rabbit/kafka, amqp1/rabbit,
//! amqp1/kafka, router/rabbit, router/kafka.

use std::time::Duration;

use messaging::{
    get_notification_transport, get_rpc_transport, CallError, Context, MessagingError,
    NotificationEndpoint, NotificationListener, Notifier, RpcServer, Target,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// How long to wait for each expected notification.
const PATIENCE: Duration = Duration::from_secs(60);

/// The compute service of the scenario.
#[messaging::service(namespace = "scenario", version = "1.1")]
trait Compute {
    /// Boot `instance`, announcing it with a `Booted` notification.
    async fn boot(&self, ctx: Context, instance: u32) -> Result<Booted, FlavorMissing>;
    /// Record that this server was reached (fanout).
    #[since = "1.1"]
    async fn refresh(&self, ctx: Context);
    /// Always fails with the declared error.
    async fn resize(&self, ctx: Context, flavor: String) -> Result<(), FlavorMissing>;
}

#[derive(Debug, PartialEq, thiserror::Error, messaging::RemoteException)]
#[error("flavor {flavor} does not exist")]
struct FlavorMissing {
    flavor: String,
}

#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, messaging::Event,
)]
#[event(type = "compute.instance.boot")]
struct Booted {
    instance: u32,
    host: String,
}

struct ComputeHost {
    host: &'static str,
    notifier: Notifier,
    fanout: mpsc::UnboundedSender<&'static str>,
}

impl Compute for ComputeHost {
    async fn boot(&self, ctx: Context, instance: u32) -> Result<Booted, FlavorMissing> {
        let booted = Booted {
            instance,
            host: self.host.into(),
        };
        self.notifier
            .emit(&ctx, &booted)
            .await
            .map_err(|e| FlavorMissing {
                flavor: format!("(notification failed: {e})"),
            })?;
        Ok(booted)
    }

    async fn refresh(&self, _ctx: Context) {
        self.fanout.send(self.host).ok();
    }

    async fn resize(&self, _ctx: Context, flavor: String) -> Result<(), FlavorMissing> {
        Err(FlavorMissing { flavor })
    }
}

/// The URL of `var`, or `None` (with a `skipped:` line) when it is unset and not required.
fn url(var: &str, required: bool) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if required && std::env::var("MESSAGING_REQUIRE_BROKERS").as_deref() == Ok("1") => {
            panic!("{var} is not set but MESSAGING_REQUIRE_BROKERS=1")
        }
        _ => None,
    }
}

async fn scenario(pair: &str, rpc_url: &str, notify_url: &str, settle: Duration) {
    let id = &messaging::wire::new_id()[..8];
    let (topic, events, pool) = (
        format!("test_compute_{id}"),
        format!("test_events_{id}"),
        format!("test_billing_{id}"),
    );
    let rpc = get_rpc_transport(rpc_url)
        .await
        .unwrap_or_else(|e| panic!("{pair}: {e}"));
    let notify = get_notification_transport(notify_url)
        .await
        .unwrap_or_else(|e| panic!("{pair}: {e}"));

    // The billing service listens in a pool, for `Booted` events only.
    let (billed_tx, mut billed) = mpsc::unbounded_channel();
    let listener = NotificationListener::new(notify.clone())
        .target(Target::topic(&events))
        .pool(&pool)
        .endpoint(
            NotificationEndpoint::new().on_event(move |ctx: Context, booted: Booted| {
                let billed = billed_tx.clone();
                async move {
                    billed.send((booted, ctx)).ok();
                }
            }),
        )
        .start()
        .await
        .unwrap_or_else(|e| panic!("{pair}: listener: {e}"));

    // Two compute servers; each call emits a notification while it is being handled.
    let (fanout_tx, mut fanout) = mpsc::unbounded_channel();
    let mut servers = Vec::new();
    for host in ["compute1", "compute2"] {
        let service = ComputeHost {
            host,
            notifier: Notifier::new(notify.clone(), format!("compute.{host}")).topics([&events]),
            fanout: fanout_tx.clone(),
        };
        let server = RpcServer::new(rpc.clone(), Target::topic(&topic).server(host))
            .endpoint(ComputeServer::new(service))
            .start()
            .await
            .unwrap_or_else(|e| panic!("{pair}: server: {e}"));
        servers.push(server);
    }
    tokio::time::sleep(settle).await;

    let compute =
        ComputeClient::new(rpc.clone(), Target::topic(&topic)).timeout(Duration::from_secs(30));
    let ctx = Context::new().with("request_id", format!("req-{id}"));
    for instance in 0..5 {
        let booted = compute
            .boot(&ctx, instance)
            .await
            .unwrap_or_else(|e| panic!("{pair}: boot: {e}"));
        assert_eq!(booted.instance, instance, "{pair}");
    }
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let (booted, context) = tokio::time::timeout(PATIENCE, billed.recv())
            .await
            .unwrap_or_else(|_| {
                panic!("{pair}: billing got only {} of 5 notifications", seen.len())
            })
            .expect("listener alive");
        assert!(booted.host.starts_with("compute"), "{pair}: {booted:?}");
        assert_eq!(
            context.get_str("request_id"),
            Some(format!("req-{id}").as_str()),
            "{pair}"
        );
        seen.push(booted.instance);
    }
    seen.sort();
    assert_eq!(
        seen,
        [0, 1, 2, 3, 4],
        "{pair}: every call's notification, once"
    );

    compute
        .fanout()
        .refresh(&ctx)
        .await
        .unwrap_or_else(|e| panic!("{pair}: fanout: {e}"));
    let mut reached = Vec::new();
    for _ in 0..2 {
        let host = tokio::time::timeout(PATIENCE, fanout.recv())
            .await
            .unwrap_or_else(|_| panic!("{pair}: fanout reached {reached:?}"));
        reached.push(host.expect("servers alive"));
    }
    reached.sort();
    assert_eq!(reached, ["compute1", "compute2"], "{pair}");

    match compute.resize(&ctx, "m1.huge".into()).await {
        Err(CallError::Service(error)) => assert_eq!(
            error,
            FlavorMissing {
                flavor: "m1.huge".into()
            },
            "{pair}"
        ),
        other => panic!("{pair}: expected FlavorMissing, got {other:?}"),
    }
    match compute
        .prepare()
        .version_cap("1.0")
        .fanout()
        .refresh(&ctx)
        .await
    {
        Err(MessagingError::VersionCap { version, .. }) => assert_eq!(version, "1.1", "{pair}"),
        other => panic!("{pair}: expected a VersionCap refusal, got {other:?}"),
    }

    for server in servers {
        server.shutdown().await;
    }
    listener.shutdown().await;
    rpc.close().await;
    notify.close().await;
}

/// Run the scenario when both URLs are known and their drivers are in this build.
async fn pair(name: &str, rpc_url: Option<String>, notify_url: Option<String>, settle: Duration) {
    let (Some(rpc_url), Some(notify_url)) = (rpc_url, notify_url) else {
        println!("skipped: scenario {name}: its broker URLs are not set");
        return;
    };
    let schemes = messaging::available_schemes();
    for url in [&rpc_url, &notify_url] {
        let scheme = url.split("://").next().unwrap_or_default();
        if !schemes.iter().any(|s| s == scheme) {
            println!(
                "skipped: scenario {name}: this build has no `{scheme}` driver (cargo features)"
            );
            return;
        }
    }
    scenario(name, &rpc_url, &notify_url, settle).await;
}

const NO_SETTLE: Duration = Duration::ZERO;
/// A Kafka consumer group needs a few seconds to form.
const KAFKA_SETTLE: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_memory() {
    let url = format!("memory:///scenario-{}", &messaging::wire::new_id()[..8]);
    pair("memory_memory", Some(url.clone()), Some(url), NO_SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbit_rabbit() {
    let rabbit = url("RABBIT_URL", true);
    pair("rabbit_rabbit", rabbit.clone(), rabbit, NO_SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbit_kafka() {
    pair(
        "rabbit_kafka",
        url("RABBIT_URL", true),
        url("KAFKA_URL", true),
        KAFKA_SETTLE,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp1_rabbit() {
    pair(
        "amqp1_rabbit",
        url("AMQP1_URL", true),
        url("RABBIT_URL", true),
        NO_SETTLE,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp1_kafka() {
    pair(
        "amqp1_kafka",
        url("AMQP1_URL", true),
        url("KAFKA_URL", true),
        KAFKA_SETTLE,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_rabbit() {
    pair(
        "router_rabbit",
        url("AMQP1_ROUTER_URL", false),
        url("RABBIT_URL", false),
        NO_SETTLE,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_kafka() {
    pair(
        "router_kafka",
        url("AMQP1_ROUTER_URL", false),
        url("KAFKA_URL", false),
        KAFKA_SETTLE,
    )
    .await;
}

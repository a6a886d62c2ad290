//! Typed services end to end over `memory://`: the generated client and server, typed remote
//! errors, versions, keyword-argument checks, typed events and the AsyncAPI document.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use messaging_core::typed::{AsyncApi, CallError, RemoteException};
use messaging_core::*;
use messaging_macros::{service, Event, RemoteException};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A host chosen by the scheduler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Host {
    name: String,
    free_ram_mb: u64,
}

#[derive(Debug, PartialEq, thiserror::Error, RemoteException)]
#[remote(crate = "messaging_core", module = "nova.exception")]
#[error("no valid host: {reason}")]
pub struct NoValidHost {
    reason: String,
}

#[derive(Debug, PartialEq, thiserror::Error, RemoteException)]
#[remote(crate = "messaging_core")]
pub enum QuotaError {
    #[error("quota exceeded for {resource}: {requested} > {limit}")]
    QuotaExceeded {
        resource: String,
        requested: u32,
        limit: u32,
        hint: Option<String>,
    },
    #[error("forbidden")]
    #[remote(class = "Forbidden")]
    NotAllowed,
}

/// Places instances on hosts.
#[service(crate = "messaging_core", namespace = "sched", version = "1.2")]
pub trait Scheduler {
    /// Pick `count` hosts for `flavor`, in `zone` if given.
    async fn select_hosts(
        &self,
        ctx: Context,
        flavor: String,
        count: u32,
        zone: Option<String>,
    ) -> Result<Vec<Host>, NoValidHost>;

    /// Reserve quota.
    #[since = "1.1"]
    async fn reserve(&self, ctx: Context, resource: String, amount: u32) -> Result<(), QuotaError>;

    /// Liveness, recorded by the server.
    #[since = "1.2"]
    async fn ping(&self, ctx: Context);

    /// Who the caller is, as the server sees the context; `type` is a keyword in Rust only.
    async fn whoami(&self, ctx: Context, r#type: Option<String>) -> Value;
}

#[derive(Clone, Default)]
struct MyScheduler {
    host: &'static str,
    pings: Arc<Mutex<Vec<&'static str>>>,
}

impl Scheduler for MyScheduler {
    async fn select_hosts(
        &self,
        _ctx: Context,
        flavor: String,
        count: u32,
        zone: Option<String>,
    ) -> Result<Vec<Host>, NoValidHost> {
        if flavor == "m1.huge" {
            return Err(NoValidHost {
                reason: format!("no host has room for {flavor}"),
            });
        }
        let zone = zone.unwrap_or_else(|| "nova".into());
        Ok((0..count)
            .map(|i| Host {
                name: format!("{zone}-{}-{i}", self.host),
                free_ram_mb: 1024,
            })
            .collect())
    }

    async fn reserve(
        &self,
        _ctx: Context,
        resource: String,
        amount: u32,
    ) -> Result<(), QuotaError> {
        match amount {
            0 => Err(QuotaError::NotAllowed),
            1..=10 => Ok(()),
            _ => Err(QuotaError::QuotaExceeded {
                resource,
                requested: amount,
                limit: 10,
                hint: None,
            }),
        }
    }

    async fn ping(&self, _ctx: Context) {
        self.pings.lock().unwrap().push(self.host);
    }

    async fn whoami(&self, ctx: Context, r#type: Option<String>) -> Value {
        json!({"host": self.host, "user": ctx.get_str("user_id"), "type": r#type})
    }
}

struct Fixture {
    rpc: RpcTransport,
    topic: String,
    pings: Arc<Mutex<Vec<&'static str>>>,
    servers: Vec<ServiceHandle>,
}

impl Fixture {
    /// Two servers (`host1`, `host2`) of a fresh topic on a fresh memory bus.
    async fn start() -> Self {
        let id = &wire::new_id()[..8];
        let rpc = get_rpc_transport(&format!("memory:///typed-{id}"))
            .await
            .unwrap();
        let topic = format!("scheduler-{id}");
        let pings = Arc::new(Mutex::new(Vec::new()));
        let mut servers = Vec::new();
        for host in ["host1", "host2"] {
            let service = MyScheduler {
                host,
                pings: pings.clone(),
            };
            servers.push(
                RpcServer::new(rpc.clone(), Target::topic(&topic).server(host))
                    .endpoint(SchedulerServer::new(service))
                    .start()
                    .await
                    .unwrap(),
            );
        }
        Fixture {
            rpc,
            topic,
            pings,
            servers,
        }
    }

    fn client(&self) -> SchedulerClient {
        SchedulerClient::new(self.rpc.clone(), Target::topic(&self.topic))
            .timeout(Duration::from_secs(10))
    }

    fn dynamic(&self) -> RpcClient {
        RpcClient::new(
            self.rpc.clone(),
            Target::topic(&self.topic).namespace("sched"),
        )
        .timeout(Duration::from_secs(10))
    }

    async fn stop(self) {
        for server in self.servers {
            server.shutdown().await;
        }
    }
}

fn ctx() -> Context {
    Context::new().with("user_id", "u-1")
}

#[tokio::test]
async fn typed_calls_return_declared_results_and_errors() {
    let fixture = Fixture::start().await;
    let sched = fixture.client();

    let hosts = sched
        .prepare()
        .server("host2")
        .select_hosts(&ctx(), "m1.small".into(), 2, None)
        .await
        .unwrap();
    assert_eq!(
        hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
        ["nova-host2-0", "nova-host2-1"]
    );
    let zoned = sched
        .select_hosts(&ctx(), "m1.small".into(), 1, Some("az1".into()))
        .await
        .unwrap();
    assert!(zoned[0].name.starts_with("az1-"), "{zoned:?}");

    match sched.select_hosts(&ctx(), "m1.huge".into(), 1, None).await {
        Err(CallError::Service(error)) => {
            assert_eq!(
                error,
                NoValidHost {
                    reason: "no host has room for m1.huge".into()
                }
            )
        }
        other => panic!("expected NoValidHost, got {other:?}"),
    }
    match sched.reserve(&ctx(), "cores".into(), 11).await {
        Err(CallError::Service(QuotaError::QuotaExceeded {
            requested,
            limit,
            hint,
            ..
        })) => {
            assert_eq!((requested, limit, hint), (11, 10, None))
        }
        other => panic!("expected QuotaExceeded, got {other:?}"),
    }
    assert!(matches!(
        sched.reserve(&ctx(), "cores".into(), 0).await,
        Err(CallError::Service(QuotaError::NotAllowed))
    ));
    sched.reserve(&ctx(), "cores".into(), 2).await.unwrap();
    assert_eq!(sched.whoami(&ctx(), None).await.unwrap()["user"], "u-1");

    // Transport errors stay apart from the declared error.
    let nobody = sched
        .prepare()
        .server("host9")
        .timeout(Duration::from_millis(200));
    match nobody
        .select_hosts(&ctx(), "m1.small".into(), 1, None)
        .await
    {
        Err(CallError::Messaging(MessagingError::Timeout { .. })) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    fixture.stop().await;
}

#[tokio::test]
async fn casts_reach_one_server_the_named_one_or_all() {
    let fixture = Fixture::start().await;
    let sched = fixture.client();
    sched
        .prepare()
        .server("host1")
        .cast()
        .ping(&ctx())
        .await
        .unwrap();
    sched.fanout().ping(&ctx()).await.unwrap();
    sched.cast().ping(&ctx()).await.unwrap();
    // A call after the casts: the servers took the casts from their queues before it.
    sched
        .prepare()
        .server("host1")
        .whoami(&ctx(), None)
        .await
        .unwrap();
    sched
        .prepare()
        .server("host2")
        .whoami(&ctx(), None)
        .await
        .unwrap();
    let mut pings = wait_for(&fixture.pings, 4).await;
    pings.sort();
    assert!(
        pings == ["host1", "host1", "host1", "host2"]
            || pings == ["host1", "host1", "host2", "host2"],
        "{pings:?}"
    );
    fixture.stop().await;
}

async fn wait_for(pings: &Mutex<Vec<&'static str>>, count: usize) -> Vec<&'static str> {
    for _ in 0..100 {
        if pings.lock().unwrap().len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pings.lock().unwrap().clone()
}

#[tokio::test]
async fn versions_follow_since_and_the_cap_refuses_before_sending() {
    let fixture = Fixture::start().await;
    let capped = fixture.client().version_cap("1.1");
    // `reserve` is since 1.1: allowed; `ping` is since 1.2: refused without sending.
    capped.reserve(&ctx(), "cores".into(), 1).await.unwrap();
    match capped.cast().ping(&ctx()).await {
        Err(MessagingError::VersionCap { version, cap }) => {
            assert_eq!((version.as_str(), cap.as_str()), ("1.2", "1.1"))
        }
        other => panic!("expected VersionCap, got {other:?}"),
    }
    match capped.whoami(&ctx(), None).await {
        Ok(who) => assert_eq!(who["user"], "u-1"),
        other => panic!("{other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        fixture.pings.lock().unwrap().is_empty(),
        "the refused cast was sent"
    );

    // The server advertises 1.2: a 1.3 request is refused by the server.
    let dynamic = fixture.dynamic();
    match dynamic
        .prepare()
        .version("1.3")
        .call::<Value>(&ctx(), "whoami", &json!({}))
        .await
    {
        Err(MessagingError::UnsupportedVersion { version, .. }) => assert_eq!(version, "1.3"),
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
    // The namespace comes from the attribute: requests without it find nothing.
    let no_namespace = RpcClient::new(fixture.rpc.clone(), Target::topic(&fixture.topic));
    assert!(matches!(
        no_namespace
            .call::<Value>(&ctx(), "whoami", &json!({}))
            .await,
        Err(MessagingError::UnsupportedVersion { .. })
    ));
    fixture.stop().await;
}

#[tokio::test]
async fn the_server_rejects_bad_keyword_arguments_as_python_does() {
    let fixture = Fixture::start().await;
    let dynamic = fixture.dynamic();
    let type_error = |result: Result<Value>| match result {
        Err(MessagingError::Remote(remote)) if remote.class == "TypeError" => remote.message,
        other => panic!("expected a TypeError, got {other:?}"),
    };
    let extra = dynamic
        .call(
            &ctx(),
            "select_hosts",
            &json!({"flavor": "m1.small", "count": 1, "zonee": "az1"}),
        )
        .await;
    assert_eq!(
        type_error(extra),
        "Scheduler.select_hosts() got an unexpected keyword argument 'zonee'"
    );
    let missing = dynamic
        .call(&ctx(), "select_hosts", &json!({"flavor": "m1.small"}))
        .await;
    assert_eq!(
        type_error(missing),
        "Scheduler.select_hosts() missing 1 required positional argument: 'count'"
    );
    let wrong = dynamic
        .call(
            &ctx(),
            "select_hosts",
            &json!({"flavor": "m1.small", "count": "two"}),
        )
        .await;
    assert!(
        type_error(wrong).starts_with("Scheduler.select_hosts() argument 'count': invalid type")
    );
    let who: Value = dynamic
        .call(&ctx(), "whoami", &json!({"type": "admin"}))
        .await
        .unwrap();
    assert_eq!(
        who["type"], "admin",
        "raw identifiers are keywords without `r#`"
    );
    // Optional keywords may be left out; the dynamic API reaches typed servers unchanged.
    let hosts: Vec<Host> = dynamic
        .call(&ctx(), "select_hosts", &json!({"flavor": "m1", "count": 1}))
        .await
        .unwrap();
    assert_eq!(hosts.len(), 1);
    match dynamic
        .call::<Value>(&ctx(), "select_hots", &json!({}))
        .await
    {
        Err(MessagingError::NoSuchMethod { method, .. }) => assert_eq!(method, "select_hots"),
        other => panic!("expected NoSuchMethod, got {other:?}"),
    }
    fixture.stop().await;
}

#[test]
fn remote_exceptions_cross_as_oslo_failures() {
    let remote = NoValidHost {
        reason: "full".into(),
    }
    .to_remote();
    assert_eq!(
        (
            remote.class.as_str(),
            remote.module.as_str(),
            remote.message.as_str()
        ),
        ("NoValidHost", "nova.exception", "no valid host: full")
    );
    assert_eq!(
        Value::Object(remote.kwargs.clone()),
        json!({"reason": "full"})
    );
    assert!(remote.expected, "declared errors are expected exceptions");
    // The failure as a Python server sends it: same class name, any module, kwargs.
    let mut python =
        RemoteError::with_module("NoValidHost", "scheduler.exceptions_Remote", "whatever");
    python.kwargs = json!({"reason": "from python"})
        .as_object()
        .unwrap()
        .clone();
    assert_eq!(
        NoValidHost::from_remote(&python),
        Some(NoValidHost {
            reason: "from python".into()
        })
    );
    // A class of that name whose kwargs do not fit is not this type.
    python.kwargs.clear();
    assert_eq!(NoValidHost::from_remote(&python), None);
    assert_eq!(
        NoValidHost::from_remote(&RemoteError::value_error("x")),
        None
    );

    let forbidden = QuotaError::NotAllowed.to_remote();
    assert_eq!(
        (forbidden.class.as_str(), forbidden.module.as_str()),
        ("Forbidden", "typed")
    );
    assert_eq!(
        QuotaError::from_remote(&forbidden),
        Some(QuotaError::NotAllowed)
    );
    let classes: Vec<&str> = QuotaError::EXCEPTIONS.iter().map(|e| e.class).collect();
    assert_eq!(classes, ["QuotaExceeded", "Forbidden"]);
}

/// The scheduler selected hosts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Event)]
#[event(crate = "messaging_core", type = "scheduler.select.end")]
pub struct SelectEnd {
    hosts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Event)]
#[event(
    crate = "messaging_core",
    type = "scheduler.select.error",
    priority = "error"
)]
pub struct SelectError {
    reason: String,
}

#[tokio::test]
async fn typed_events_reach_only_their_handlers() {
    let notify = get_notification_transport(&format!("memory:///events-{}", &wire::new_id()[..8]))
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (ends, errors, others) = (tx.clone(), tx.clone(), tx);
    let listener = NotificationListener::new(notify.clone())
        .target(Target::topic("notifications"))
        .endpoint(
            NotificationEndpoint::new()
                .on_event(move |ctx: Context, end: SelectEnd| {
                    let ends = ends.clone();
                    async move {
                        ends.send(format!(
                            "end {:?} for {:?}",
                            end.hosts,
                            ctx.get_str("user_id")
                        ))
                        .ok();
                    }
                })
                // Registered after a typed handler of its priority: both keep their share.
                .on(Priority::Info, move |n| {
                    let others = others.clone();
                    async move {
                        others.send(format!("other {}", n.event_type)).ok();
                        NotificationResult::Handled
                    }
                })
                .on_event(move |_ctx, error: SelectError| {
                    let errors = errors.clone();
                    async move {
                        errors.send(format!("error {}", error.reason)).ok();
                        NotificationResult::Handled
                    }
                }),
        )
        .start()
        .await
        .unwrap();
    let notifier = Notifier::new(notify.clone(), "scheduler.host1");
    notifier
        .emit(
            &ctx(),
            &SelectEnd {
                hosts: vec!["h1".into()],
            },
        )
        .await
        .unwrap();
    notifier
        .info(&ctx(), "scheduler.select.end", &json!({"hosts": 42}))
        .await
        .unwrap();
    notifier
        .info(&ctx(), "compute.boot", &json!({}))
        .await
        .unwrap();
    notifier
        .emit(
            &ctx(),
            &SelectError {
                reason: "full".into(),
            },
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    got.sort();
    assert_eq!(
        got,
        [
            "end [\"h1\"] for Some(\"u-1\")",
            "error full",
            "other compute.boot"
        ]
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), rx.recv())
            .await
            .is_err(),
        "the undecodable payload reached a handler"
    );
    listener.shutdown().await;
}

#[test]
fn the_asyncapi_document_describes_methods_versions_errors_and_events() {
    let document = AsyncApi::new("scheduler", "1.0")
        .service(SchedulerClient::SERVICE, "scheduler")
        .event::<SelectEnd>("notifications")
        .to_json();
    assert_eq!(document["asyncapi"], "3.0.0");
    let operation = &document["operations"]["Scheduler.select_hosts"];
    assert_eq!(operation["action"], "receive");
    assert_eq!(operation["x-oslo-since"], "1.0");
    assert_eq!(operation["x-oslo-namespace"], "sched");
    assert_eq!(operation["x-oslo-exceptions"][0]["class"], "NoValidHost");
    assert_eq!(
        operation["x-oslo-exceptions"][0]["module"],
        "nova.exception"
    );
    assert_eq!(
        document["operations"]["Scheduler.ping"]["x-oslo-since"],
        "1.2"
    );
    let request = resolve(&document, &operation["messages"][0]);
    let args = &request["payload"]["properties"]["args"];
    assert_eq!(args["required"], json!(["flavor", "count"]));
    assert_eq!(args["properties"]["count"]["type"], "integer");
    let reply = resolve(&document, &operation["reply"]["messages"][0]);
    let host = resolve(
        &document,
        &reply["payload"]["properties"]["result"]["items"],
    );
    assert_eq!(host["properties"]["free_ram_mb"]["type"], "integer");
    let event = &document["operations"]["scheduler.select.end"];
    assert_eq!(event["action"], "send");
    assert_eq!(
        resolve(&document, &event["channel"])["address"],
        "notifications.info"
    );
    assert_refs_resolve(&document, &document);
}

/// Follow a local `$ref` (or return the value itself).
fn resolve<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(pointer) => {
            let pointer = pointer.strip_prefix('#').unwrap();
            resolve(
                document,
                document
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling {pointer}")),
            )
        }
        None => value,
    }
}

fn assert_refs_resolve(document: &Value, value: &Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(pointer)) = map.get("$ref") {
                assert!(
                    document.pointer(pointer.trim_start_matches('#')).is_some(),
                    "dangling {pointer}"
                );
            }
            map.values().for_each(|v| assert_refs_resolve(document, v));
        }
        Value::Array(items) => items.iter().for_each(|v| assert_refs_resolve(document, v)),
        _ => {}
    }
}

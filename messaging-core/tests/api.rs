//! API behaviour beyond the conformance suite: typed errors for bad input, the executor
//! limit, panics in endpoints, serializers, notifier drivers, ping, configuration.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use messaging_core::driver::{Capabilities, Driver, Feature, NotifyDriver};
use messaging_core::*;
use serde_json::{json, Value};

fn vhost(name: &str) -> String {
    format!("memory:///{name}-{}", &wire::new_id()[..8])
}

#[tokio::test]
async fn bad_urls_and_options_are_typed_errors() {
    match get_rpc_transport("nosuch://h").await {
        Err(MessagingError::UnknownScheme { scheme, available }) => {
            assert_eq!(scheme, "nosuch");
            assert!(
                available.contains(&"memory".to_owned()) && available.contains(&"fake".to_owned())
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        get_rpc_transport("not a url").await,
        Err(MessagingError::InvalidUrl { .. })
    ));
    match get_notification_transport("memory://?durable=true").await {
        Err(MessagingError::UnknownOption { option, driver, .. }) => {
            assert_eq!((option.as_str(), driver.as_str()), ("durable", "memory"));
        }
        other => panic!("{other:?}"),
    }
    let transport = get_rpc_transport("fake://")
        .await
        .expect("fake:// is memory://");
    assert_eq!(transport.driver_name(), "memory");
}

/// A driver that only does notifications, like Kafka.
struct NotificationsOnly;

#[async_trait]
impl Driver for NotificationsOnly {
    fn name(&self) -> &'static str {
        "notifyonly"
    }
    fn schemes(&self) -> &'static [&'static str] {
        &["notifyonly"]
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::full()
            .without(Feature::Rpc, "notifications only")
            .without(Feature::Requeue, "no requeue")
    }
    async fn notifications(&self, url: &TransportUrl) -> Result<Arc<dyn NotifyDriver>> {
        MemoryDriver.notifications(url).await
    }
}

#[tokio::test]
async fn unsupported_patterns_fail_at_creation() {
    install_driver(Arc::new(NotificationsOnly));
    match get_rpc_transport("notifyonly://").await {
        Err(MessagingError::Unsupported { driver, what }) => {
            assert_eq!((driver.as_str(), what.as_str()), ("notifyonly", "RPC"))
        }
        other => panic!("{other:?}"),
    }
    let transport = get_notification_transport("notifyonly://")
        .await
        .expect("notifications work");
    let listener = NotificationListener::new(transport)
        .target(Target::topic("t"))
        .allow_requeue(true)
        .endpoint(
            NotificationEndpoint::new()
                .on(Priority::Info, |_| async { NotificationResult::Handled }),
        )
        .start()
        .await;
    assert!(
        matches!(listener, Err(MessagingError::Unsupported { .. })),
        "{listener:?}"
    );
}

#[tokio::test]
async fn invalid_targets_are_refused() {
    let transport = get_rpc_transport(&vhost("targets")).await.unwrap();
    let no_server = RpcServer::new(transport.clone(), Target::topic("t"))
        .start()
        .await;
    assert!(matches!(no_server, Err(MessagingError::InvalidTarget(_))));
    let no_topic = RpcClient::new(transport.clone(), Target::default())
        .cast(&Context::new(), "m", &NoArgs {})
        .await;
    assert!(matches!(no_topic, Err(MessagingError::InvalidTarget(_))));
    let not_kwargs = RpcClient::new(transport, Target::topic("t"))
        .cast(&Context::new(), "m", &[1, 2])
        .await;
    assert!(matches!(not_kwargs, Err(MessagingError::InvalidTarget(_))));
}

#[tokio::test]
async fn executor_limit_bounds_concurrency() {
    let transport = get_rpc_transport(&vhost("limit")).await.unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (r, p) = (running.clone(), peak.clone());
    let endpoint = Endpoint::new().method("work", move |_ctx: Context, _: NoArgs| {
        let (running, peak) = (r.clone(), p.clone());
        async move {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            running.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, RemoteError>(())
        }
    });
    let server = RpcServer::new(transport.clone(), Target::topic("work").server("s"))
        .endpoint(endpoint)
        .max_concurrency(2)
        .start()
        .await
        .unwrap();
    let client = RpcClient::new(transport, Target::topic("work"));
    let ctx = Context::new();
    let calls = (0..6).map(|_| client.call::<()>(&ctx, "work", &NoArgs {}));
    for result in futures_util::future::join_all(calls).await {
        result.unwrap();
    }
    assert_eq!(peak.load(Ordering::SeqCst), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn a_panicking_endpoint_does_not_kill_the_server() {
    let transport = get_rpc_transport(&vhost("panic")).await.unwrap();
    let endpoint = Endpoint::new()
        .method("boom", |_ctx: Context, _: NoArgs| async move {
            if true {
                panic!("kaboom");
            }
            Ok::<_, RemoteError>(())
        })
        .method("ok", |_ctx: Context, _: NoArgs| async {
            Ok::<_, RemoteError>("fine")
        });
    let server = RpcServer::new(transport.clone(), Target::topic("p").server("s"))
        .endpoint(endpoint)
        .enable_ping(true)
        .start()
        .await
        .unwrap();
    let client = RpcClient::new(transport, Target::topic("p"));
    match client.call::<()>(&Context::new(), "boom", &NoArgs {}).await {
        Err(MessagingError::Remote(remote)) => {
            assert_eq!(remote.class, "RuntimeError");
            assert!(remote.message.contains("kaboom"), "{}", remote.message);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        client
            .call::<String>(&Context::new(), "ok", &NoArgs {})
            .await
            .unwrap(),
        "fine"
    );
    assert_eq!(
        client
            .call::<String>(&Context::new(), PING_METHOD, &NoArgs {})
            .await
            .unwrap(),
        "pong"
    );
    server.shutdown().await;
}

/// Wraps every entity as `{"wrapped": value}` and tags contexts.
struct Wrapping;

impl Serializer for Wrapping {
    fn serialize_entity(&self, _ctx: &Context, entity: Value) -> Result<Value> {
        Ok(json!({ "wrapped": entity }))
    }
    fn deserialize_entity(&self, _ctx: &Context, entity: Value) -> Result<Value> {
        Ok(entity.get("wrapped").cloned().unwrap_or(Value::Null))
    }
    fn serialize_context(&self, ctx: &Context) -> Result<Context> {
        Ok(ctx.clone().with("serialized", true))
    }
}

#[tokio::test]
async fn serializers_apply_on_both_sides() {
    let transport = get_rpc_transport(&vhost("serializer")).await.unwrap();
    let endpoint = Endpoint::new().method("inspect", |ctx: Context, args: Value| async move {
        Ok::<_, RemoteError>(json!({"args": args, "serialized": ctx.get("serialized")}))
    });
    let server = RpcServer::new(transport.clone(), Target::topic("s").server("s"))
        .endpoint(endpoint)
        .serializer(Arc::new(Wrapping))
        .start()
        .await
        .unwrap();
    let client = RpcClient::new(transport, Target::topic("s")).serializer(Arc::new(Wrapping));
    let seen: Value = client
        .call(&Context::new(), "inspect", &json!({"n": 1}))
        .await
        .unwrap();
    assert_eq!(seen, json!({"args": {"n": 1}, "serialized": true}));
    server.shutdown().await;
}

#[tokio::test]
async fn notifier_drivers_and_redaction() {
    let url = vhost("drivers");
    let transport = get_notification_transport(&url).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = NotificationListener::new(transport.clone())
        .target(Target::topic("notifications"))
        .endpoint(NotificationEndpoint::new().on_all(move |n| {
            let tx = tx.clone();
            async move {
                tx.send(n).ok();
                NotificationResult::Handled
            }
        }))
        .start()
        .await
        .unwrap();
    let ctx = Context::new()
        .with("auth_token", "secret")
        .with("user_id", "u");
    let noop = Notifier::new(transport.clone(), "p").driver(NotifierDriver::Noop);
    assert!(!noop.is_enabled());
    noop.info(&ctx, "noop.event", &1).await.unwrap();
    let logged = Notifier::new(transport.clone(), "p")
        .drivers([NotifierDriver::Log, NotifierDriver::Messaging]);
    logged.warning(&ctx, "v1.event", &2).await.unwrap();
    let received = rx.recv().await.unwrap();
    assert_eq!(
        received.event_type, "v1.event",
        "noop sent nothing; messaging (v1) arrived"
    );
    assert_eq!(received.priority, Priority::Warn);
    assert_eq!(
        received.context.get("auth_token"),
        Some(&Value::Null),
        "auth_token is redacted"
    );
    assert_eq!(received.context.get_str("user_id"), Some("u"));
    assert_eq!(received.payload_as::<i32>().unwrap(), 2);
    assert_eq!(
        "messagingv2".parse::<NotifierDriver>().unwrap(),
        NotifierDriver::MessagingV2
    );
    assert!("routing".parse::<NotifierDriver>().is_err());
    listener.shutdown().await;
}

#[tokio::test]
async fn config_falls_back_to_the_rpc_url_and_sets_the_exchange() {
    let config: MessagingConfig = serde_json::from_value(
        json!({"transport_url": vhost("config"), "control_exchange": "nova"}),
    )
    .unwrap();
    assert_eq!(config.notification_url(), config.transport_url);
    let rpc = get_rpc_transport_with(&config.transport_url, &config.transport_options())
        .await
        .unwrap();
    assert_eq!(rpc.control_exchange(), "nova");
    let unknown = serde_json::from_value::<MessagingConfig>(json!({"transport_urll": "x"}));
    assert!(unknown.is_err(), "unknown keys are refused");

    // A server and a client on the "nova" control exchange talk; one on "openstack" does not.
    let server = RpcServer::new(rpc.clone(), Target::topic("cfg").server("s"))
        .endpoint(
            Endpoint::new().method("hi", |_c: Context, _: NoArgs| async {
                Ok::<_, RemoteError>(1)
            }),
        )
        .start()
        .await
        .unwrap();
    let client = RpcClient::new(rpc, Target::topic("cfg")).timeout(Duration::from_millis(300));
    assert_eq!(
        client
            .call::<i32>(&Context::new(), "hi", &NoArgs {})
            .await
            .unwrap(),
        1
    );
    let other = client
        .prepare()
        .exchange(DEFAULT_EXCHANGE)
        .call::<i32>(&Context::new(), "hi", &NoArgs {})
        .await;
    assert!(
        matches!(other, Err(MessagingError::Timeout { .. })),
        "{other:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn closed_transport_refuses_sends() {
    let transport = get_rpc_transport(&vhost("closed")).await.unwrap();
    transport.close().await;
    let result = RpcClient::new(transport, Target::topic("t"))
        .cast(&Context::new(), "m", &NoArgs {})
        .await;
    assert!(
        matches!(result, Err(MessagingError::Closed(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_listener_outlives_its_transport() {
    let url = vhost("outlive");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = NotificationListener::new(get_notification_transport(&url).await.unwrap())
        .target(Target::topic("t"))
        .endpoint(NotificationEndpoint::new().on(Priority::Info, move |n| {
            let tx = tx.clone();
            async move {
                tx.send(n.event_type).ok();
                NotificationResult::Handled
            }
        }))
        .start()
        .await
        .unwrap();
    // The listener's transport is gone; a new transport on the same URL still reaches it.
    let notifier =
        Notifier::new(get_notification_transport(&url).await.unwrap(), "p").topics(["t"]);
    notifier.info(&Context::new(), "reached", &1).await.unwrap();
    assert_eq!(rx.recv().await.as_deref(), Some("reached"));
    listener.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sequential_calls() {
    let url = vhost("sequential");
    let server = RpcServer::new(
        get_rpc_transport(&url).await.unwrap(),
        Target::topic("seq").server("s"),
    )
    .endpoint(Endpoint::new().method(
        "echo",
        |_c: Context, args: serde_json::Map<String, Value>| async move {
            Ok::<_, RemoteError>(args.get("value").cloned().unwrap_or(Value::Null))
        },
    ))
    .start()
    .await
    .unwrap();
    let client = RpcClient::new(get_rpc_transport(&url).await.unwrap(), Target::topic("seq"))
        .timeout(Duration::from_secs(5));
    for i in 0..2000 {
        let v: Value = client
            .call(&Context::new(), "echo", &json!({"value": i}))
            .await
            .unwrap_or_else(|e| panic!("call {i}: {e}"));
        assert_eq!(v, i);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_malformed_endpoint_version_is_a_typed_error_at_start() {
    let transport = get_rpc_transport("memory://").await.expect("memory://");
    let started = RpcServer::new(transport, Target::topic("versions").server("s1"))
        .endpoint(Endpoint::new().version("one.two"))
        .start()
        .await;
    match started {
        Err(MessagingError::InvalidTarget(why)) => {
            assert!(why.contains("`one.two`"), "{why}");
            assert!(!why.starts_with("invalid target"), "said twice: {why}");
        }
        other => panic!("expected InvalidTarget, got {:?}", other.map(|_| ())),
    }
    // A later valid version replaces a refused one.
    let transport = get_rpc_transport("memory://").await.expect("memory://");
    let server = RpcServer::new(transport, Target::topic("versions").server("s1"))
        .endpoint(Endpoint::new().version("x").version("1.2"))
        .start()
        .await
        .expect("a valid version");
    server.shutdown().await;
}

/// With no `tracing` subscriber and no current trace, messages carry no trace context (a
/// server sees none); inside [`telemetry::TraceContext::scope`] the trace passes unchanged
/// through a server that records no spans, to the notification it sends.
#[tokio::test]
async fn trace_context_only_when_there_is_a_trace() {
    use messaging_core::telemetry::TraceContext;
    let url = vhost("trace-passthrough");
    let rpc = get_rpc_transport(&url).await.unwrap();
    let notifications = get_notification_transport(&url).await.unwrap();
    let notifier = Notifier::new(notifications.clone(), "p").topics(["passthrough"]);
    let endpoint = Endpoint::new().method("trace", move |ctx: Context, _: NoArgs| {
        let notifier = notifier.clone();
        async move {
            notifier.info(&ctx, "traced", &()).await.unwrap();
            Ok::<_, RemoteError>(TraceContext::current().map(|t| t.traceparent()))
        }
    });
    let server = RpcServer::new(rpc.clone(), Target::topic("traced").server("s"))
        .endpoint(endpoint)
        .start()
        .await
        .unwrap();
    let (tx, mut heard) = tokio::sync::mpsc::unbounded_channel();
    let listener = NotificationListener::new(notifications)
        .target(Target::topic("passthrough"))
        .endpoint(NotificationEndpoint::new().on(Priority::Info, move |n| {
            let tx = tx.clone();
            async move {
                tx.send((n.context, TraceContext::current())).unwrap();
                NotificationResult::Handled
            }
        }))
        .start()
        .await
        .unwrap();
    let client = RpcClient::new(rpc, Target::topic("traced"));
    let ctx = Context::new().with("user", "u1");
    let seen: Option<String> = client.call(&ctx, "trace", &NoArgs {}).await.unwrap();
    assert_eq!(seen, None);
    assert_eq!(heard.recv().await.unwrap(), (ctx.clone(), None));

    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let outer = TraceContext::parse(incoming, Some("vendor=1")).unwrap();
    let call = client.call::<Option<String>>(&ctx, "trace", &NoArgs {});
    let seen = outer.clone().scope(call).await.unwrap();
    assert_eq!(seen.as_deref(), Some(incoming));
    // The trace keys are taken out of the context endpoints see.
    assert_eq!(heard.recv().await.unwrap(), (ctx, Some(outer)));
    server.shutdown().await;
    listener.shutdown().await;
}

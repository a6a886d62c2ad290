//! The conformance cases. Each one takes a [`Backend`] and panics on a failure.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::support::{distinct_and_duplicates, recording_endpoint, test_endpoint, Recorded};
use super::{unique, Backend, Recorder};
use crate::driver::{Delivery, Feature};
use crate::error::MessagingError;
use crate::notify::{
    Notification, NotificationEndpoint, NotificationFilter, NotificationListener,
    NotificationResult, Notifier,
};
use crate::priority::Priority;
use crate::rpc::{Endpoint, NoArgs, RpcClient, RpcServer};
use crate::service::ServiceHandle;
use crate::target::Target;
use crate::transport::RpcTransport;
use crate::Context;

mod signing;

pub use signing::*;

const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn ctx() -> Context {
    Context::new()
        .with("user_id", "u-1")
        .with("project_id", "p-1")
        .with("request_id", "req-123")
}

pub(super) async fn start_server(
    b: &Backend,
    target: Target,
    recorder: Arc<Recorder<Recorded>>,
) -> ServiceHandle {
    let server_name = target.server.clone().expect("test servers have names");
    let handle = RpcServer::new(b.rpc().await, target)
        .endpoint(test_endpoint(&server_name, recorder))
        .start()
        .await
        .expect("server starts");
    b.settled().await;
    handle
}

async fn client(b: &Backend, topic: &str) -> (RpcTransport, RpcClient) {
    let transport = b.rpc().await;
    let client = RpcClient::new(transport.clone(), Target::topic(topic)).timeout(CALL_TIMEOUT);
    (transport, client)
}

/// A call to a topic reaches a server and returns its result; the context travels.
pub async fn rpc_call_to_topic(b: Backend) {
    if !b.supports("rpc_call_to_topic", &[Feature::Rpc]) {
        return;
    }
    let topic = unique("call");
    let server = start_server(&b, Target::topic(&topic).server("srv1"), Recorder::new()).await;
    let (_t, client) = client(&b, &topic).await;
    let value =
        json!({"a": 1, "b": [1, 2, 3], "c": {"nested": "ü"}, "d": null, "e": 1.5, "f": true});
    let echoed: Value = client
        .call(&ctx(), "echo", &json!({"value": value}))
        .await
        .expect("echo");
    assert_eq!(echoed, value);
    let who: Value = client
        .call(&ctx(), "whoami", &NoArgs {})
        .await
        .expect("whoami");
    assert_eq!(who["server"], "srv1");
    assert_eq!(who["ctxt"]["user_id"], "u-1");
    assert_eq!(who["ctxt"]["request_id"], "req-123");
    server.shutdown().await;
}

/// A cast to a topic reaches one server.
pub async fn rpc_cast_to_topic(b: Backend) {
    if !b.supports("rpc_cast_to_topic", &[Feature::Rpc]) {
        return;
    }
    let topic = unique("cast");
    let recorder = Recorder::new();
    let server = start_server(&b, Target::topic(&topic).server("srv1"), recorder.clone()).await;
    let (_t, client) = client(&b, &topic).await;
    client
        .cast(&ctx(), "record", &json!({"value": "cast-value"}))
        .await
        .expect("cast");
    let got = recorder.wait_for(1, b.wait(), "cast").await;
    assert_eq!(got[0].value, "cast-value");
    server.shutdown().await;
    assert_eq!(recorder.len(), 1, "one cast, one delivery");
}

/// Calls directed to a server reach only that server.
pub async fn rpc_call_to_specific_server(b: Backend) {
    if !b.supports(
        "rpc_call_to_specific_server",
        &[Feature::Rpc, Feature::ServerDirected],
    ) {
        return;
    }
    let topic = unique("direct");
    let one = start_server(&b, Target::topic(&topic).server("srv1"), Recorder::new()).await;
    let two = start_server(&b, Target::topic(&topic).server("srv2"), Recorder::new()).await;
    let (_t, client) = client(&b, &topic).await;
    for server in ["srv2", "srv1", "srv2", "srv2", "srv1", "srv1"] {
        let who: Value = client
            .prepare()
            .server(server)
            .call(&ctx(), "whoami", &NoArgs {})
            .await
            .expect("whoami");
        assert_eq!(who["server"], server, "a call directed to {server}");
    }
    one.shutdown().await;
    two.shutdown().await;
}

/// Casts directed to a server reach only that server.
pub async fn rpc_cast_to_specific_server(b: Backend) {
    if !b.supports(
        "rpc_cast_to_specific_server",
        &[Feature::Rpc, Feature::ServerDirected],
    ) {
        return;
    }
    let topic = unique("directcast");
    let recorder = Recorder::new();
    let one = start_server(&b, Target::topic(&topic).server("srv1"), recorder.clone()).await;
    let two = start_server(&b, Target::topic(&topic).server("srv2"), recorder.clone()).await;
    let (_t, client) = client(&b, &topic).await;
    for i in 0..5 {
        client
            .prepare()
            .server("srv2")
            .cast(&ctx(), "record", &json!({"value": i}))
            .await
            .expect("cast");
    }
    let got = recorder.wait_for(5, b.wait(), "directed casts").await;
    assert!(
        got.iter().all(|r| r.server == "srv2"),
        "casts to srv2 reached {got:?}"
    );
    one.shutdown().await;
    two.shutdown().await;
    assert_eq!(recorder.len(), 5);
}

/// A fanout cast reaches every server of the topic exactly once.
pub async fn rpc_fanout_reaches_every_server(b: Backend) {
    if !b.supports(
        "rpc_fanout_reaches_every_server",
        &[Feature::Rpc, Feature::Fanout],
    ) {
        return;
    }
    let topic = unique("fanout");
    let recorder = Recorder::new();
    let mut servers = Vec::new();
    for name in ["srv1", "srv2", "srv3"] {
        servers.push(start_server(&b, Target::topic(&topic).server(name), recorder.clone()).await);
    }
    let (_t, client) = client(&b, &topic).await;
    client
        .prepare()
        .fanout(true)
        .cast(&ctx(), "record", &json!({"value": "fanout-value"}))
        .await
        .expect("fanout");
    let got = recorder.wait_for(3, b.wait(), "fanout").await;
    let mut reached: Vec<&str> = got.iter().map(|r| r.server.as_str()).collect();
    reached.sort();
    assert_eq!(reached, ["srv1", "srv2", "srv3"]);
    for server in servers {
        server.shutdown().await;
    }
    assert_eq!(recorder.len(), 3, "each server got the fanout once");
    let refused = client
        .prepare()
        .fanout(true)
        .call::<Value>(&ctx(), "echo", &json!({"value": 1}))
        .await;
    assert!(
        matches!(refused, Err(MessagingError::InvalidTarget(_))),
        "a fanout call is refused: {refused:?}"
    );
}

/// Requests to a topic are spread over its servers.
pub async fn rpc_load_spreads_across_servers(b: Backend) {
    if !b.supports(
        "rpc_load_spreads_across_servers",
        &[Feature::Rpc, Feature::LoadBalancing],
    ) {
        return;
    }
    let topic = unique("spread");
    let started = Recorder::new();
    let mut servers = Vec::new();
    for name in ["srv1", "srv2"] {
        let handle = RpcServer::new(b.rpc().await, Target::topic(&topic).server(name))
            .endpoint(test_endpoint(name, started.clone()))
            .max_concurrency(1)
            .start()
            .await
            .expect("server starts");
        servers.push(handle);
    }
    b.settled().await;
    let (_t, client) = client(&b, &topic).await;
    let calls = (0..20).map(|_| {
        let client = client.clone();
        async move {
            client
                .call::<f64>(&ctx(), "sleep", &json!({"seconds": 0.05}))
                .await
                .expect("sleep")
        }
    });
    futures_util::future::join_all(calls).await;
    let served: Vec<String> = started.items().into_iter().map(|r| r.server).collect();
    assert_eq!(served.len(), 20);
    for name in ["srv1", "srv2"] {
        assert!(
            served.iter().any(|s| s == name),
            "{name} served none of {served:?}"
        );
    }
    for server in servers {
        server.shutdown().await;
    }
}

/// A server in one exchange does not get requests sent to another exchange.
pub async fn rpc_exchanges_are_isolated(b: Backend) {
    if !b.supports(
        "rpc_exchanges_are_isolated",
        &[Feature::Rpc, Feature::Exchanges],
    ) {
        return;
    }
    let topic = unique("exch");
    let exchange_a = unique("exa");
    let exchange_b = unique("exb");
    let server = start_server(
        &b,
        Target::topic(&topic).server("srv1").exchange(&exchange_a),
        Recorder::new(),
    )
    .await;
    let (_t, client) = client(&b, &topic).await;
    let who: Value = client
        .prepare()
        .exchange(&exchange_a)
        .call(&ctx(), "whoami", &NoArgs {})
        .await
        .expect("same exchange");
    assert_eq!(who["server"], "srv1");
    let other = client
        .prepare()
        .exchange(&exchange_b)
        .timeout(Duration::from_secs(2))
        .call::<Value>(&ctx(), "whoami", &NoArgs {})
        .await;
    assert!(
        matches!(other, Err(MessagingError::Timeout { .. })),
        "other exchange: {other:?}"
    );
    server.shutdown().await;
}

/// A call nobody serves fails with a timeout, within its timeout (plus slack).
pub async fn rpc_call_times_out_without_server(b: Backend) {
    if !b.supports("rpc_call_times_out_without_server", &[Feature::Rpc]) {
        return;
    }
    let (_t, client) = client(&b, &unique("nobody")).await;
    let timeout = Duration::from_secs(2);
    let started = Instant::now();
    let result = client
        .prepare()
        .timeout(timeout)
        .call::<Value>(&ctx(), "echo", &json!({"value": 1}))
        .await;
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Err(MessagingError::Timeout { .. })),
        "got {result:?}"
    );
    assert!(elapsed >= timeout, "gave up early, after {elapsed:?}");
    assert!(
        elapsed < timeout + Duration::from_secs(10),
        "took {elapsed:?}"
    );
    let directed = client
        .prepare()
        .server("no-such-server")
        .timeout(timeout)
        .call::<Value>(&ctx(), "echo", &json!({"value": 1}))
        .await;
    assert!(
        matches!(directed, Err(MessagingError::Timeout { .. })),
        "got {directed:?}"
    );
}

/// Fail fast: a call or cast that nobody can take ends early with `NoServer`, not after its
/// timeout; a served one is not cut short.
pub async fn rpc_fail_fast_without_server(b: Backend) {
    if !b.supports(
        "rpc_fail_fast_without_server",
        &[Feature::Rpc, Feature::FailFast],
    ) {
        return;
    }
    let topic = unique("failfast");
    let (_t, client) = client(&b, &topic).await;
    let window = Duration::from_secs(1);
    let fast = client.prepare().fail_fast(window);
    let no_server = |result: Result<(), MessagingError>, server: Option<&str>, started: Instant| {
        match result {
            Err(MessagingError::NoServer {
                topic: t,
                server: s,
                waited,
            }) => {
                assert_eq!((t.as_str(), s.as_deref()), (topic.as_str(), server));
                assert!(waited >= window, "gave up before the window: {waited:?}");
            }
            other => panic!("expected NoServer, got {other:?}"),
        }
        let elapsed = started.elapsed();
        assert!(elapsed < window * 10, "not fast: {elapsed:?}");
    };
    let started = Instant::now();
    let call = fast
        .call::<Value>(&ctx(), "echo", &json!({"value": 1}))
        .await;
    no_server(call.map(drop), None, started);
    let started = Instant::now();
    no_server(fast.cast(&ctx(), "echo", &json!({})).await, None, started);
    let server = start_server(&b, Target::topic(&topic).server("srv1"), Recorder::new()).await;
    let echoed: Value = fast
        .call(&ctx(), "echo", &json!({"value": 2}))
        .await
        .expect("a call that a server takes is not cut short");
    assert_eq!(echoed, 2);
    fast.cast(&ctx(), "echo", &json!({"value": 3}))
        .await
        .expect("a cast that a server takes");
    let started = Instant::now();
    let directed = fast
        .prepare()
        .server("no-such-server")
        .call::<Value>(&ctx(), "echo", &json!({}))
        .await;
    no_server(directed.map(drop), Some("no-such-server"), started);
    server.shutdown().await;
}

/// An error raised by the endpoint arrives as a remote error with class and message.
pub async fn rpc_remote_error_is_mapped(b: Backend) {
    if !b.supports("rpc_remote_error_is_mapped", &[Feature::Rpc]) {
        return;
    }
    let topic = unique("fail");
    let server = start_server(&b, Target::topic(&topic).server("srv1"), Recorder::new()).await;
    let (_t, client) = client(&b, &topic).await;
    match client.call::<Value>(&ctx(), "fail", &NoArgs {}).await {
        Err(MessagingError::Remote(remote)) => {
            assert_eq!(remote.class, "ValueError");
            assert_eq!(remote.module, "builtins");
            assert_eq!(
                remote.message,
                "fail() was called: this is the remote ValueError"
            );
        }
        other => panic!("expected a remote ValueError, got {other:?}"),
    }
    let still: Value = client
        .call(&ctx(), "echo", &json!({"value": "after"}))
        .await
        .expect("server alive");
    assert_eq!(still, "after");
    server.shutdown().await;
}

/// An unknown method (or a private one) is `NoSuchMethod`.
pub async fn rpc_unknown_method_is_no_such_method(b: Backend) {
    if !b.supports("rpc_unknown_method_is_no_such_method", &[Feature::Rpc]) {
        return;
    }
    let topic = unique("nosuch");
    let server = start_server(&b, Target::topic(&topic).server("srv1"), Recorder::new()).await;
    let (_t, client) = client(&b, &topic).await;
    for method in ["no_such_method", "_private"] {
        match client.call::<Value>(&ctx(), method, &NoArgs {}).await {
            Err(MessagingError::NoSuchMethod {
                method: m,
                remote,
                call,
            }) => {
                assert_eq!(m, method);
                assert_eq!(remote.class, "NoSuchMethod");
                let call = call.expect("the error names the call");
                assert_eq!(call.target.topic.as_deref(), Some(topic.as_str()));
            }
            other => panic!("{method}: expected NoSuchMethod, got {other:?}"),
        }
    }
    server.shutdown().await;
}

/// Arguments that do not fit the method are a remote `TypeError`, and the server goes on.
pub async fn rpc_bad_arguments_are_a_remote_type_error(b: Backend) {
    if !b.supports("rpc_bad_arguments_are_a_remote_type_error", &[Feature::Rpc]) {
        return;
    }
    let topic = unique("badargs");
    let server = start_server(&b, Target::topic(&topic).server("srv1"), Recorder::new()).await;
    let (_t, client) = client(&b, &topic).await;
    let result = client
        .call::<Value>(&ctx(), "sleep", &json!({"seconds": "not a number"}))
        .await;
    assert!(
        matches!(&result, Err(MessagingError::Remote(r)) if r.class == "TypeError"),
        "got {result:?}"
    );
    let still: Value = client
        .call(&ctx(), "echo", &json!({"value": 2}))
        .await
        .expect("server alive");
    assert_eq!(still, 2);
    server.shutdown().await;
}

/// oslo's version and namespace rules, end to end.
pub async fn rpc_version_and_namespace_negotiation(b: Backend) {
    if !b.supports("rpc_version_and_namespace_negotiation", &[Feature::Rpc]) {
        return;
    }
    let topic = unique("versions");
    let server = RpcServer::new(b.rpc().await, Target::topic(&topic).server("srv1"))
        .endpoint(test_endpoint("srv1", Recorder::new()))
        .endpoint(Endpoint::new().namespace("otherns").version("2.1").method(
            "whoami",
            |_ctx: Context, _: NoArgs| async {
                Ok::<_, crate::RemoteError>(json!({"namespace": "otherns"}))
            },
        ))
        .start()
        .await
        .expect("server starts");
    b.settled().await;
    let (_t, client) = client(&b, &topic).await;
    let echo = |version: &'static str| {
        let client = client.prepare().version(version);
        async move {
            client
                .call::<Value>(&ctx(), "echo", &json!({"value": version}))
                .await
        }
    };
    assert_eq!(echo("1.0").await.expect("1.0 <= 1.3"), "1.0");
    assert_eq!(echo("1.3").await.expect("1.3 <= 1.3"), "1.3");
    assert!(matches!(
        echo("1.4").await,
        Err(MessagingError::UnsupportedVersion { .. })
    ));
    assert!(matches!(
        echo("2.0").await,
        Err(MessagingError::UnsupportedVersion { .. })
    ));
    let ns = client.prepare().namespace("otherns");
    let missing = ns
        .prepare()
        .version("2.0")
        .call::<Value>(&ctx(), "echo", &json!({"value": 1}))
        .await;
    assert!(
        matches!(missing, Err(MessagingError::NoSuchMethod { .. })),
        "otherns 2.x has no echo: {missing:?}"
    );
    let who: Value = ns
        .prepare()
        .version("2.1")
        .call(&ctx(), "whoami", &NoArgs {})
        .await
        .expect("otherns 2.1");
    assert_eq!(who["namespace"], "otherns");
    let who: Value = ns
        .prepare()
        .version("2.0")
        .call(&ctx(), "whoami", &NoArgs {})
        .await
        .expect("otherns 2.0");
    assert_eq!(who["namespace"], "otherns");
    let too_new = ns
        .prepare()
        .version("2.2")
        .call::<Value>(&ctx(), "whoami", &NoArgs {})
        .await;
    assert!(
        matches!(too_new, Err(MessagingError::UnsupportedVersion { .. })),
        "{too_new:?}"
    );
    let capped = client
        .prepare()
        .version_cap("1.2")
        .version("1.3")
        .call::<Value>(&ctx(), "echo", &json!({"value": 1}))
        .await;
    assert!(
        matches!(capped, Err(MessagingError::VersionCap { .. })),
        "{capped:?}"
    );
    server.shutdown().await;
}

/// Heartbeats keep a call alive past its call-monitor timeout; the overall timeout still holds.
pub async fn rpc_call_monitor_keeps_long_call_alive(b: Backend) {
    if !b.supports(
        "rpc_call_monitor_keeps_long_call_alive",
        &[Feature::Rpc, Feature::CallMonitor],
    ) {
        return;
    }
    let topic = unique("monitor");
    let server = start_server(&b, Target::topic(&topic).server("srv1"), Recorder::new()).await;
    let (_t, client) = client(&b, &topic).await;
    let monitored = client
        .prepare()
        .call_monitor_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(20));
    let slept: f64 = monitored
        .call(&ctx(), "sleep", &json!({"seconds": 3.5}))
        .await
        .expect("kept alive by heartbeats");
    assert_eq!(slept, 3.5);
    let overall = monitored.prepare().timeout(Duration::from_secs(2));
    let started = Instant::now();
    let result = overall
        .call::<f64>(&ctx(), "sleep", &json!({"seconds": 4.0}))
        .await;
    assert!(
        matches!(result, Err(MessagingError::Timeout { .. })),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the overall timeout applies"
    );
    server.shutdown().await;
}

/// Many concurrent calls each get their own result.
pub async fn rpc_concurrent_calls(b: Backend) {
    if !b.supports("rpc_concurrent_calls", &[Feature::Rpc]) {
        return;
    }
    let topic = unique("concall");
    let server = start_server(&b, Target::topic(&topic).server("srv1"), Recorder::new()).await;
    let (_t, client) = client(&b, &topic).await;
    let tasks = (0..50).map(|task| {
        let client = client.clone();
        tokio::spawn(async move {
            for i in 0..10 {
                let value = format!("{task}-{i}");
                let echoed: String = client
                    .call(&ctx(), "echo", &json!({"value": value}))
                    .await
                    .expect("echo");
                assert_eq!(echoed, value);
            }
        })
    });
    for task in futures_util::future::join_all(tasks).await {
        task.expect("caller task");
    }
    server.shutdown().await;
}

/// 1,000 casts from 20 concurrent senders all arrive, none twice.
pub async fn rpc_concurrent_casts_none_lost(b: Backend) {
    if !b.supports("rpc_concurrent_casts_none_lost", &[Feature::Rpc]) {
        return;
    }
    let topic = unique("concast");
    let recorder = Recorder::new();
    let server = start_server(&b, Target::topic(&topic).server("srv1"), recorder.clone()).await;
    let (_t, client) = client(&b, &topic).await;
    let tasks = (0..20).map(|task| {
        let client = client.clone();
        tokio::spawn(async move {
            for i in 0..50 {
                client
                    .cast(&ctx(), "record", &json!({"value": format!("{task}-{i}")}))
                    .await
                    .expect("cast");
            }
        })
    });
    for task in futures_util::future::join_all(tasks).await {
        task.expect("sender task");
    }
    let got = recorder.wait_for(1000, b.wait(), "casts").await;
    let (distinct, duplicates) = distinct_and_duplicates(got.iter().map(|r| r.value.to_string()));
    assert_eq!(distinct, 1000);
    assert_eq!(duplicates, 0, "RPC is at most once");
    server.shutdown().await;
}

/// Stopping a server lets running calls finish and reply; later calls are not taken.
pub async fn rpc_graceful_stop_finishes_in_flight_calls(b: Backend) {
    if !b.supports(
        "rpc_graceful_stop_finishes_in_flight_calls",
        &[Feature::Rpc],
    ) {
        return;
    }
    let topic = unique("stop");
    let started = Recorder::new();
    let server = start_server(&b, Target::topic(&topic).server("srv1"), started.clone()).await;
    let (_t, client) = client(&b, &topic).await;
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .call::<f64>(&ctx(), "sleep", &json!({"seconds": 1.0}))
                    .await
            })
        })
        .collect();
    started.wait_for(5, b.wait(), "calls started").await;
    server.stop();
    server.wait().await;
    for call in calls {
        assert_eq!(
            call.await.expect("task").expect("in-flight call replied"),
            1.0
        );
    }
    let after = client
        .prepare()
        .timeout(Duration::from_secs(2))
        .call::<Value>(&ctx(), "echo", &json!({"value": 1}))
        .await;
    assert!(
        matches!(after, Err(MessagingError::Timeout { .. })),
        "a stopped server took a call: {after:?}"
    );
}

async fn start_listener(
    b: &Backend,
    targets: &[&str],
    pool: Option<&str>,
    endpoint: NotificationEndpoint,
    configure: impl FnOnce(NotificationListener) -> NotificationListener,
) -> ServiceHandle {
    let mut listener = NotificationListener::new(b.notifications().await).endpoint(endpoint);
    for topic in targets {
        listener = listener.target(Target::topic(*topic));
    }
    if let Some(pool) = pool {
        listener = listener.pool(pool);
    }
    let handle = configure(listener).start().await.expect("listener starts");
    b.settled().await;
    handle
}

/// A notification of each of the seven priorities arrives with its fields and context.
pub async fn notify_every_priority(b: Backend) {
    if !b.supports("notify_every_priority", &[Feature::Notifications]) {
        return;
    }
    let topic = unique("prio");
    let recorder = Recorder::new();
    let listener = start_listener(
        &b,
        &[&topic],
        None,
        recording_endpoint(recorder.clone()),
        |l| l,
    )
    .await;
    let notifier = Notifier::new(b.notifications().await, "compute.host1").topics([&topic]);
    for priority in Priority::ALL {
        let payload = json!({"prio": priority.as_str(), "nested": {"ü": [1, 2]}});
        notifier
            .notify(&ctx(), priority, &format!("test.{priority}"), &payload)
            .await
            .expect("notify");
    }
    let got = recorder.wait_for(7, b.wait(), "one per priority").await;
    for priority in Priority::ALL {
        let n = got
            .iter()
            .find(|n| n.priority == priority)
            .unwrap_or_else(|| panic!("no {priority}"));
        assert_eq!(n.event_type, format!("test.{priority}"));
        assert_eq!(n.publisher_id, "compute.host1");
        assert_eq!(n.payload["prio"], priority.as_str());
        assert_eq!(n.payload["nested"]["ü"], json!([1, 2]));
        assert_eq!(n.context.get_str("request_id"), Some("req-123"));
        assert_eq!(n.metadata.message_id.len(), 36);
        assert!(n.metadata.timestamp.len() >= 19, "{}", n.metadata.timestamp);
    }
    listener.shutdown().await;
    assert_eq!(recorder.len(), 7);
}

/// A notifier with two topics sends a copy to each; a listener may listen to several topics.
pub async fn notify_multiple_topics(b: Backend) {
    if !b.supports("notify_multiple_topics", &[Feature::Notifications]) {
        return;
    }
    let (one, two) = (unique("topic1"), unique("topic2"));
    let recorder = Recorder::new();
    let listener = start_listener(
        &b,
        &[&one, &two],
        None,
        recording_endpoint(recorder.clone()),
        |l| l,
    )
    .await;
    let transport = b.notifications().await;
    Notifier::new(transport.clone(), "p")
        .topics([&one, &two])
        .info(&ctx(), "both", &1)
        .await
        .expect("notify");
    Notifier::new(transport, "p")
        .topics([&two])
        .info(&ctx(), "second", &2)
        .await
        .expect("notify");
    let got = recorder.wait_for(3, b.wait(), "copies").await;
    let both = got.iter().filter(|n| n.event_type == "both").count();
    assert_eq!(both, 2, "one copy per topic");
    listener.shutdown().await;
    assert_eq!(recorder.len(), 3);
}

/// Each pool gets its own copy of every notification.
pub async fn notify_pools_each_get_a_copy(b: Backend) {
    if !b.supports(
        "notify_pools_each_get_a_copy",
        &[Feature::Notifications, Feature::Pools],
    ) {
        return;
    }
    let topic = unique("pools");
    let (pool_a, pool_b) = (unique("poola"), unique("poolb"));
    let (a, bb) = (Recorder::new(), Recorder::new());
    let la = start_listener(
        &b,
        &[&topic],
        Some(&pool_a),
        recording_endpoint(a.clone()),
        |l| l,
    )
    .await;
    let lb = start_listener(
        &b,
        &[&topic],
        Some(&pool_b),
        recording_endpoint(bb.clone()),
        |l| l,
    )
    .await;
    let notifier = Notifier::new(b.notifications().await, "p").topics([&topic]);
    for i in 0..20 {
        notifier.info(&ctx(), "pooled", &i).await.expect("notify");
    }
    a.wait_for(20, b.wait(), "pool a").await;
    bb.wait_for(20, b.wait(), "pool b").await;
    la.shutdown().await;
    lb.shutdown().await;
    for pool in [&a, &bb] {
        let (distinct, _) =
            distinct_and_duplicates(pool.items().iter().map(|n| n.metadata.message_id.clone()));
        assert_eq!(distinct, 20);
    }
}

/// Members of one pool share its notifications: together they get each one.
pub async fn notify_pool_members_share_load(b: Backend) {
    if !b.supports(
        "notify_pool_members_share_load",
        &[
            Feature::Notifications,
            Feature::Pools,
            Feature::LoadBalancing,
        ],
    ) {
        return;
    }
    let topic = unique("share");
    let pool = unique("pool");
    let (m1, m2) = (Recorder::new(), Recorder::new());
    let slow = |recorder: Arc<Recorder<Notification>>| {
        NotificationEndpoint::new().on(Priority::Info, move |n| {
            let recorder = recorder.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                recorder.push(n);
                NotificationResult::Handled
            }
        })
    };
    let one = |l: NotificationListener| l.max_concurrency(1);
    let l1 = start_listener(&b, &[&topic], Some(&pool), slow(m1.clone()), one).await;
    let l2 = start_listener(&b, &[&topic], Some(&pool), slow(m2.clone()), one).await;
    let notifier = Notifier::new(b.notifications().await, "p").topics([&topic]);
    for i in 0..40 {
        notifier.info(&ctx(), "shared", &i).await.expect("notify");
    }
    let deadline = tokio::time::Instant::now() + b.wait();
    while m1.len() + m2.len() < 40 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    l1.shutdown().await;
    l2.shutdown().await;
    let ids = m1
        .items()
        .into_iter()
        .chain(m2.items())
        .map(|n| n.metadata.message_id);
    let (distinct, _) = distinct_and_duplicates(ids);
    assert_eq!(distinct, 40, "the pool got every notification");
    assert!(
        !m1.is_empty() && !m2.is_empty(),
        "shared: {} and {}",
        m1.len(),
        m2.len()
    );
}

/// A notification the endpoint requeues is delivered again.
pub async fn notify_requeue_redelivers(b: Backend) {
    if !b.supports(
        "notify_requeue_redelivers",
        &[Feature::Notifications, Feature::Requeue],
    ) {
        return;
    }
    let topic = unique("requeue");
    let seen = Recorder::<String>::new();
    let recorder = seen.clone();
    let endpoint = NotificationEndpoint::new().on(Priority::Info, move |n: Notification| {
        let recorder = recorder.clone();
        async move {
            let first_time = !recorder.items().contains(&n.metadata.message_id);
            recorder.push(n.metadata.message_id);
            if first_time {
                NotificationResult::Requeue
            } else {
                NotificationResult::Handled
            }
        }
    });
    let listener = start_listener(&b, &[&topic], None, endpoint, |l| l.allow_requeue(true)).await;
    let notifier = Notifier::new(b.notifications().await, "p").topics([&topic]);
    notifier
        .info(&ctx(), "again", &json!({"n": 1}))
        .await
        .expect("notify");
    let got = seen.wait_for(2, b.wait(), "redelivery").await;
    assert_eq!(got[0], got[1], "the same notification came back");
    listener.shutdown().await;
}

/// Without `allow_requeue`, a requeue request is acknowledged instead.
pub async fn notify_requeue_refused_when_not_allowed(b: Backend) {
    if !b.supports(
        "notify_requeue_refused_when_not_allowed",
        &[Feature::Notifications],
    ) {
        return;
    }
    let topic = unique("norequeue");
    let seen = Recorder::<String>::new();
    let recorder = seen.clone();
    let endpoint = NotificationEndpoint::new().on(Priority::Info, move |n: Notification| {
        let recorder = recorder.clone();
        async move {
            recorder.push(n.event_type);
            NotificationResult::Requeue
        }
    });
    let listener = start_listener(&b, &[&topic], None, endpoint, |l| l).await;
    let notifier = Notifier::new(b.notifications().await, "p").topics([&topic]);
    notifier.info(&ctx(), "first", &1).await.expect("notify");
    seen.wait_for(1, b.wait(), "first").await;
    notifier.info(&ctx(), "marker", &2).await.expect("notify");
    seen.wait_for(2, b.wait(), "marker").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    listener.shutdown().await;
    assert_eq!(seen.items(), ["first", "marker"], "no redelivery");
}

/// Batch listening hands endpoints batches of at most the batch size.
pub async fn notify_batches(b: Backend) {
    if !b.supports("notify_batches", &[Feature::Notifications]) {
        return;
    }
    let topic = unique("batch");
    let batches = Recorder::<usize>::new();
    let total = Recorder::<String>::new();
    let (batches_in, total_in) = (batches.clone(), total.clone());
    let endpoint =
        NotificationEndpoint::new().on_batch(Priority::Info, move |batch: Vec<Notification>| {
            let (batches, total) = (batches_in.clone(), total_in.clone());
            async move {
                batches.push(batch.len());
                for n in batch {
                    total.push(n.metadata.message_id);
                }
                NotificationResult::Handled
            }
        });
    let notifier = Notifier::new(b.notifications().await, "p").topics([&topic]);
    let listener = start_listener(&b, &[&topic], None, endpoint, |l| {
        l.batch(10, Duration::from_millis(500))
    })
    .await;
    for i in 0..25 {
        notifier.info(&ctx(), "batched", &i).await.expect("notify");
    }
    total.wait_for(25, b.wait(), "batched notifications").await;
    listener.shutdown().await;
    let sizes = batches.items();
    assert!(
        sizes.iter().all(|s| (1..=10).contains(s)),
        "batch sizes {sizes:?}"
    );
    assert!(
        sizes.iter().any(|s| *s > 1),
        "some batching happened: {sizes:?}"
    );
    assert_eq!(sizes.iter().sum::<usize>(), 25);
}

/// Filters on event type, publisher, context and payload pass only what matches.
pub async fn notify_filters(b: Backend) {
    if !b.supports("notify_filters", &[Feature::Notifications]) {
        return;
    }
    let topic = unique("filter");
    let (all, filtered) = (Recorder::new(), Recorder::new());
    let filter = NotificationFilter::new()
        .event_type(r"compute\.instance\.")
        .and_then(|f| f.publisher_id("compute\\..*"))
        .and_then(|f| f.context("user_id", "u-1$"))
        .and_then(|f| f.payload("/state", "active$"))
        .expect("valid filter");
    let listener = NotificationListener::new(b.notifications().await)
        .target(Target::topic(&topic))
        .endpoint(recording_endpoint(all.clone()))
        .endpoint(recording_endpoint(filtered.clone()).filter(filter))
        .start()
        .await
        .expect("listener");
    b.settled().await;
    let transport = b.notifications().await;
    let compute = Notifier::new(transport.clone(), "compute.host1").topics([&topic]);
    let network = Notifier::new(transport, "network.host1").topics([&topic]);
    compute
        .info(
            &ctx(),
            "compute.instance.update",
            &json!({"state": "active"}),
        )
        .await
        .expect("match");
    compute
        .info(
            &ctx(),
            "compute.instance.update",
            &json!({"state": "inactive"}),
        )
        .await
        .expect("payload");
    compute
        .info(&ctx(), "compute.volume.update", &json!({"state": "active"}))
        .await
        .expect("event");
    network
        .info(
            &ctx(),
            "compute.instance.update",
            &json!({"state": "active"}),
        )
        .await
        .expect("publisher");
    compute
        .info(
            &Context::new(),
            "compute.instance.update",
            &json!({"state": "active"}),
        )
        .await
        .expect("ctx");
    all.wait_for(5, b.wait(), "every notification").await;
    listener.shutdown().await;
    let passed = filtered.items();
    assert_eq!(passed.len(), 1, "only one matches: {passed:?}");
    assert_eq!(passed[0].payload["state"], "active");
    assert_eq!(passed[0].publisher_id, "compute.host1");
}

/// 100 concurrent publishers × 100 notifications: none lost; duplicates only if the driver
/// is at-least-once.
pub async fn notify_concurrent_publishers_none_lost(b: Backend) {
    if !b.supports(
        "notify_concurrent_publishers_none_lost",
        &[Feature::Notifications],
    ) {
        return;
    }
    const PUBLISHERS: usize = 100;
    const EACH: usize = 100;
    let topic = unique("load");
    let recorder = Recorder::new();
    let listener = start_listener(
        &b,
        &[&topic],
        None,
        recording_endpoint(recorder.clone()),
        |l| l,
    )
    .await;
    let notifier = Notifier::new(b.notifications().await, "load").topics([&topic]);
    let tasks = (0..PUBLISHERS).map(|p| {
        let notifier = notifier.clone();
        tokio::spawn(async move {
            for i in 0..EACH {
                notifier
                    .info(&ctx(), "load", &json!({"p": p, "i": i}))
                    .await
                    .expect("notify");
            }
        })
    });
    for task in futures_util::future::join_all(tasks).await {
        task.expect("publisher task");
    }
    let got = recorder
        .wait_for(PUBLISHERS * EACH, b.wait() * 2, "every notification")
        .await;
    listener.shutdown().await;
    let keys = got
        .iter()
        .map(|n| format!("{}-{}", n.payload["p"], n.payload["i"]));
    let (distinct, duplicates) = distinct_and_duplicates(keys);
    assert_eq!(distinct, PUBLISHERS * EACH, "none lost");
    if b.capabilities().notify_delivery == Delivery::AtMostOnce || duplicates > 0 {
        println!("{}: {duplicates} duplicate notifications", b.name());
    }
    assert!(
        duplicates == 0 || b.capabilities().notify_delivery == Delivery::AtLeastOnce,
        "{duplicates} duplicates from an at-most-once driver"
    );
}

/// Notifications sent before any listener subscribed wait for the first one.
pub async fn notify_sent_before_listener_is_kept(b: Backend) {
    if !b.supports(
        "notify_sent_before_listener_is_kept",
        &[Feature::Notifications, Feature::StoreBeforeListen],
    ) {
        return;
    }
    let topic = unique("early");
    let notifier = Notifier::new(b.notifications().await, "p").topics([&topic]);
    for i in 0..5 {
        notifier.info(&ctx(), "early", &i).await.expect("notify");
    }
    let recorder = Recorder::new();
    let listener = start_listener(
        &b,
        &[&topic],
        None,
        recording_endpoint(recorder.clone()),
        |l| l,
    )
    .await;
    recorder.wait_for(5, b.wait(), "early notifications").await;
    listener.shutdown().await;
}

/// A listener stopped mid-stream finishes what it took; a successor gets all the rest.
pub async fn notify_clean_shutdown_loses_nothing(b: Backend) {
    if !b.supports(
        "notify_clean_shutdown_loses_nothing",
        &[Feature::Notifications, Feature::Pools],
    ) {
        return;
    }
    const TOTAL: usize = 200;
    let topic = unique("handover");
    let pool = unique("pool");
    let handled = Recorder::<i64>::new();
    let slow = |handled: Arc<Recorder<i64>>| {
        NotificationEndpoint::new().on(Priority::Info, move |n: Notification| {
            let handled = handled.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                handled.push(n.payload.as_i64().unwrap_or(-1));
                NotificationResult::Handled
            }
        })
    };
    let first = start_listener(&b, &[&topic], Some(&pool), slow(handled.clone()), |l| {
        l.max_concurrency(4)
    })
    .await;
    let notifier = Notifier::new(b.notifications().await, "p").topics([&topic]);
    for i in 0..TOTAL {
        notifier.info(&ctx(), "handover", &i).await.expect("notify");
    }
    handled
        .wait_for(TOTAL / 4, b.wait(), "first listener progress")
        .await;
    first.shutdown().await;
    let by_first = handled.len();
    let second = start_listener(&b, &[&topic], Some(&pool), slow(handled.clone()), |l| l).await;
    // Duplicates are allowed (at-least-once): wait for every distinct notification.
    let distinct = |items: &[i64]| items.iter().copied().collect::<HashSet<i64>>().len();
    let got = handled
        .wait_until(
            |items| distinct(items) >= TOTAL,
            b.wait(),
            "every notification across both listeners",
        )
        .await;
    second.shutdown().await;
    assert_eq!(
        distinct(&got),
        TOTAL,
        "nothing lost (first listener handled {by_first})"
    );
}

//! RPC cases: calls and casts to topics and servers, fanout, load spreading, exchanges,
//! timeouts, fail fast, remote errors, version negotiation, heartbeats, concurrency and a
//! graceful stop.

use std::time::{Duration, Instant};

use messaging_core::{Context, Endpoint, MessagingError, NoArgs, RemoteError, RpcServer, Target};
use serde_json::{json, Value};

use crate::support::{client, ctx, distinct_and_duplicates, start_server, test_endpoint};
use crate::{unique, Backend, Recorder};

/// A call to a topic reaches a server and returns its result; the context travels.
pub async fn rpc_call_to_topic(b: Backend) {
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
    let topic = unique("versions");
    let server = RpcServer::new(b.rpc().await, Target::topic(&topic).server("srv1"))
        .endpoint(test_endpoint("srv1", Recorder::new()))
        .endpoint(Endpoint::new().namespace("otherns").version("2.1").method(
            "whoami",
            |_ctx: Context, _: NoArgs| async {
                Ok::<_, RemoteError>(json!({"namespace": "otherns"}))
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

//! Failover, reconnection with re-attached links, credentials and timeouts against the broker
//! at `AMQP1_URL` (RabbitMQ's AMQP 1.0 endpoint). Connection loss is simulated with a local
//! TCP proxy that cuts its connections; the broker itself is never disturbed.

mod common;

use std::time::{Duration, Instant};

use common::{broker_url, credentials, echo, echo_server, eventually, topic, upstream, Proxy};
use messaging_core::{
    get_notification_transport, get_rpc_transport, Context, MessagingError, Notifier, RpcClient,
    Target,
};
use serde_json::json;

/// Fast reconnects for the tests.
const FAST: &str = "connection_retry_interval=0.1&connection_retry_backoff=0.1&\
                    connection_retry_interval_max=0.5&link_retry_delay=0.5";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_to_the_next_host() {
    let Some(url) = broker_url("fails_over_to_the_next_host") else {
        return;
    };
    // Port 1 on loopback refuses: the driver must move on to the broker.
    let creds = credentials(&url);
    let failover = format!(
        "amqp://{creds}127.0.0.1:1,{creds}{}/?{FAST}",
        upstream(&url)
    );
    let topic = topic("failover");
    let server = echo_server(&failover, &topic).await;
    let client = RpcClient::new(
        get_rpc_transport(&failover).await.unwrap(),
        Target::topic(&topic),
    )
    .timeout(Duration::from_secs(20));
    assert_eq!(
        echo(&client, "via the second host").await.unwrap(),
        "via the second host"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_and_reattaches_links_after_connection_loss() {
    let Some(url) = broker_url("reconnects_and_reattaches_links_after_connection_loss") else {
        return;
    };
    let proxy = Proxy::start(upstream(&url), None).await;
    let via = format!(
        "amqp://{}127.0.0.1:{}/?{FAST}",
        credentials(&url),
        proxy.port
    );
    let topic = topic("reconnect");
    let server = echo_server(&via, &topic).await;
    let transport = get_rpc_transport(&via).await.unwrap();
    let client =
        RpcClient::new(transport.clone(), Target::topic(&topic)).timeout(Duration::from_secs(5));
    assert_eq!(echo(&client, "before").await.unwrap(), "before");

    for round in 0..2 {
        proxy.cut();
        // A call in flight during the cut may be lost (RPC is at most once): give the driver
        // a moment to notice, as a caller would retry.
        tokio::time::sleep(Duration::from_millis(500)).await;
        // The server's links, the client's reply link and its sender link all come back.
        let value = format!("after cut {round}");
        let started = Instant::now();
        let echoed = eventually(Duration::from_secs(30), || echo(&client, &value))
            .await
            .unwrap_or_else(|e| panic!("no answer after reconnecting: {e}"));
        assert_eq!(echoed, value.as_str());
        println!(
            "round {round}: answered {:?} after the cut",
            started.elapsed()
        );
    }

    // Notifications too.
    let notify_via = format!(
        "amqp://{}127.0.0.1:{}/?{FAST}",
        credentials(&url),
        proxy.port
    );
    let notifications = get_notification_transport(&notify_via).await.unwrap();
    let notifier = Notifier::new(notifications, "test.resilience").topics([topic.as_str()]);
    notifier
        .info(&Context::new(), "before.cut", &json!({}))
        .await
        .unwrap();
    proxy.cut();
    let (ctx, payload) = (Context::new(), json!({}));
    eventually(Duration::from_secs(30), || {
        notifier.info(&ctx, "after.cut", &payload)
    })
    .await
    .expect("a notification after the cut");

    server.shutdown().await;
    transport.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_an_authentication_failure() {
    let Some(url) = broker_url("wrong_password_is_an_authentication_failure") else {
        return;
    };
    let user = url.hosts[0]
        .username
        .clone()
        .unwrap_or_else(|| "guest".into());
    let bad = format!("amqp://{user}:not-the-password@{}/", upstream(&url));
    let client = RpcClient::new(get_rpc_transport(&bad).await.unwrap(), Target::topic("t"))
        .timeout(Duration::from_secs(10));
    let started = Instant::now();
    let result = echo(&client, "x").await;
    assert!(
        matches!(result, Err(MessagingError::AuthenticationFailure(_))),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "fails fast, no retries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_broker_fails_within_the_timeout() {
    let Some(_) = broker_url("unreachable_broker_fails_within_the_timeout") else {
        return;
    };
    let dead = format!("amqp://guest:guest@127.0.0.1:1/?{FAST}");
    let client = RpcClient::new(get_rpc_transport(&dead).await.unwrap(), Target::topic("t"))
        .timeout(Duration::from_secs(2));
    let started = Instant::now();
    let call = echo(&client, "x").await;
    assert!(
        matches!(
            call,
            Err(MessagingError::Timeout { .. } | MessagingError::ConnectionFailure(_))
        ),
        "{call:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let cast = client
        .prepare()
        .retry(messaging_core::Retry::Never)
        .cast(&Context::new(), "echo", &json!({"value": 1}))
        .await;
    assert!(
        matches!(cast, Err(MessagingError::ConnectionFailure(_))),
        "{cast:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_without_server_times_out_in_broker_mode() {
    let Some(_) = broker_url("call_without_server_times_out_in_broker_mode") else {
        return;
    };
    let url = std::env::var("AMQP1_URL").unwrap();
    let client = RpcClient::new(
        get_rpc_transport(&url).await.unwrap(),
        Target::topic(topic("nobody")),
    )
    .timeout(Duration::from_secs(2));
    let started = Instant::now();
    let result = echo(&client, "x").await;
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Err(MessagingError::Timeout { .. })),
        "{result:?}"
    );
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_heartbeats_keep_an_idle_connection() {
    let Some(url) = broker_url("idle_timeout_heartbeats_keep_an_idle_connection") else {
        return;
    };
    let proxy = Proxy::start(upstream(&url), None).await;
    // A 4 s idle timeout: the broker must heartbeat within it, or the driver drops the
    // connection as dead.
    let via = format!(
        "amqp://{}127.0.0.1:{}/?idle_timeout=4",
        credentials(&url),
        proxy.port
    );
    let topic = topic("idle");
    let server = echo_server(&via, &topic).await;
    let client = RpcClient::new(
        get_rpc_transport(&via).await.unwrap(),
        Target::topic(&topic),
    )
    .timeout(Duration::from_secs(5))
    .retry(messaging_core::Retry::Never);
    assert_eq!(echo(&client, "first").await.unwrap(), "first");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(echo(&client, "after idling").await.unwrap(), "after idling");
    server.shutdown().await;
}

/// Router mode forced against RabbitMQ: what RabbitMQ refuses (routable addresses, dynamic
/// reply nodes) fails at once with a clear error instead of hanging or reconnecting forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_links_fail_clearly() {
    let Some(url) = broker_url("refused_links_fail_clearly") else {
        return;
    };
    let base = format!("amqp://{}{}/", credentials(&url), upstream(&url));
    let routable = format!("{base}?addressing_mode=routable");
    let client = RpcClient::new(
        get_rpc_transport(&routable).await.unwrap(),
        Target::topic("t"),
    )
    .timeout(Duration::from_secs(10));
    let started = Instant::now();
    let cast = client
        .cast(&Context::new(), "echo", &json!({"value": 1}))
        .await;
    assert!(
        matches!(&cast, Err(MessagingError::DeliveryFailure(e)) if e.contains("refused")),
        "{cast:?}"
    );
    let legacy = format!("{base}?addressing_mode=legacy");
    let client = RpcClient::new(
        get_rpc_transport(&legacy).await.unwrap(),
        Target::topic("t"),
    )
    .timeout(Duration::from_secs(10));
    let call = echo(&client, "x").await;
    assert!(
        matches!(&call, Err(MessagingError::DeliveryFailure(e)) if e.contains("rpc-response")),
        "{call:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// No credentials in the URL: SASL ANONYMOUS (RabbitMQ maps it to its AMQP 1.0 default user).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_login_without_credentials() {
    let Some(url) = broker_url("anonymous_login_without_credentials") else {
        return;
    };
    let anonymous = format!("amqp://{}/", upstream(&url));
    let topic = topic("anon");
    let server = echo_server(&anonymous, &topic).await;
    let client = RpcClient::new(
        get_rpc_transport(&anonymous).await.unwrap(),
        Target::topic(&topic),
    )
    .timeout(Duration::from_secs(10));
    assert_eq!(echo(&client, "anonymous").await.unwrap(), "anonymous");
    server.shutdown().await;
}

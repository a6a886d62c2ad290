//! Failover, reconnection with re-attached links, credentials and timeouts against the broker
//! at `AMQP1_URL` (RabbitMQ's AMQP 1.0 endpoint). Connection loss is simulated with a local
//! TCP proxy that cuts its connections; the broker itself is never disturbed.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{broker_url, credentials, echo, echo_server, eventually, topic, upstream, Proxy};
use messaging_core::{
    get_notification_transport, get_rpc_transport, Context, Endpoint, MessagingError, Notification,
    NotificationEndpoint, NotificationListener, NotificationResult, Notifier, Priority,
    RemoteError, RpcClient, RpcServer, Target,
};
use serde_json::{json, Value};

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

/// Wait (polling) until `done`; panic with `what` after `within`, so a stall cannot hang.
async fn wait_until(within: Duration, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "stalled: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// `(publisher, seq)` of a test payload.
fn key_of(payload: &Value) -> (u64, u64) {
    let field = |name: &str| {
        payload[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{payload}"))
    };
    (field("publisher"), field("seq"))
}

const PUBLISHERS: u64 = 10;
const PER_PUBLISHER: u64 = 200;
const SHARED_TRANSPORTS: u64 = 2;

/// Publishers and a listener stream through the proxy while it cuts every connection twice,
/// with sends awaiting their outcome and deliveries being handled (unsettled) at each cut.
/// Notifications are at least once: none may be lost, duplicates are allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_in_flight_survive_connection_drops() {
    let Some(url) = broker_url("notifications_in_flight_survive_connection_drops") else {
        return;
    };
    let proxy = Proxy::start(upstream(&url), None).await;
    let via = format!(
        "amqp://{}127.0.0.1:{}/?{FAST}",
        credentials(&url),
        proxy.port
    );
    let topic = topic("inflight");
    let t0 = Instant::now();

    // Every receipt of each (publisher, seq), as time since t0.
    type Receipts = HashMap<(u64, u64), Vec<Duration>>;
    let received: Arc<Mutex<Receipts>> = Arc::default();
    let handling = Arc::new(AtomicUsize::new(0));
    let listener_transport = get_notification_transport(&via).await.unwrap();
    let endpoint = NotificationEndpoint::new().on(Priority::Info, {
        let (received, handling) = (received.clone(), handling.clone());
        move |n: Notification| {
            let (received, handling) = (received.clone(), handling.clone());
            async move {
                handling.fetch_add(1, Ordering::SeqCst);
                // Some work, so that deliveries are still unsettled when a cut comes.
                tokio::time::sleep(Duration::from_millis(2)).await;
                let key = key_of(&n.payload);
                received
                    .lock()
                    .unwrap()
                    .entry(key)
                    .or_default()
                    .push(t0.elapsed());
                handling.fetch_sub(1, Ordering::SeqCst);
                NotificationResult::Handled
            }
        }
    });
    let listener = NotificationListener::new(listener_transport.clone())
        .target(Target::topic(&topic))
        .endpoint(endpoint)
        .start()
        .await
        .unwrap();

    // (publisher, seq) -> (send started, send returned Ok), as time since t0.
    type Sends = HashMap<(u64, u64), (Duration, Duration)>;
    let sends: Arc<Mutex<Sends>> = Arc::default();
    let sending = Arc::new(AtomicUsize::new(0));
    let mut publishers = Vec::new();
    // Publishers share transports, as a service's threads do: several sends are pipelined on
    // one sender link when it is cut.
    let mut transports = vec![listener_transport];
    for _ in 0..SHARED_TRANSPORTS {
        transports.push(get_notification_transport(&via).await.unwrap());
    }
    for publisher in 0..PUBLISHERS {
        let transport = transports[1 + (publisher % SHARED_TRANSPORTS) as usize].clone();
        // Oslo's defaults: retry forever, the driver's default_notify_timeout.
        let notifier =
            Notifier::new(transport, format!("publisher.{publisher}")).topics([topic.as_str()]);
        let (sends, sending) = (sends.clone(), sending.clone());
        publishers.push(tokio::spawn(async move {
            for seq in 0..PER_PUBLISHER {
                let payload = json!({"publisher": publisher, "seq": seq});
                let started = t0.elapsed();
                sending.fetch_add(1, Ordering::SeqCst);
                let sent = notifier.info(&Context::new(), "inflight", &payload).await;
                sending.fetch_sub(1, Ordering::SeqCst);
                sent.map_err(|e| format!("publisher {publisher} seq {seq}: {e}"))?;
                sends
                    .lock()
                    .unwrap()
                    .insert((publisher, seq), (started, t0.elapsed()));
            }
            Ok::<_, String>(())
        }));
    }

    let total = (PUBLISHERS * PER_PUBLISHER) as usize;
    let mut cuts = Vec::new();
    for at in [total / 3, 2 * total / 3] {
        let count = || sends.lock().unwrap().len();
        wait_until(Duration::from_secs(120), &format!("{at} sends"), || {
            count() >= at
        })
        .await;
        proxy.cut();
        cuts.push(t0.elapsed());
        println!(
            "cut {} at {:?}: {} of {total} sent, {} sends awaiting their outcome, {} deliveries \
             being handled",
            cuts.len(),
            t0.elapsed(),
            count(),
            sending.load(Ordering::SeqCst),
            handling.load(Ordering::SeqCst),
        );
    }

    // Every send must succeed: the notifier retries until the broker accepted it.
    for publisher in publishers {
        let done = tokio::time::timeout(Duration::from_secs(300), publisher)
            .await
            .expect("publishers finish")
            .expect("publisher task");
        done.unwrap_or_else(|e| panic!("a notification was not sent: {e}"));
    }
    let sends = std::mem::take(&mut *sends.lock().unwrap());
    assert_eq!(sends.len(), total);
    println!("all {total} sent at {:?}", t0.elapsed());

    // The listener gets everything without being restarted; a generous deadline only bounds
    // the wait, then a quiet second lets late redeliveries show up as duplicates.
    let have_all = || {
        let received = received.lock().unwrap();
        sends.keys().all(|k| received.contains_key(k))
    };
    let all_in = tokio::time::timeout(Duration::from_secs(60), async {
        while !have_all() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .is_ok();
    tokio::time::sleep(Duration::from_secs(1)).await;
    listener.shutdown().await;
    for transport in &transports {
        transport.close().await;
    }

    let received = std::mem::take(&mut *received.lock().unwrap());
    let lost: BTreeSet<(u64, u64)> = sends
        .keys()
        .filter(|k| !received.contains_key(k))
        .copied()
        .collect();
    let duplicated: BTreeSet<(u64, u64)> = received
        .iter()
        .filter(|(_, at)| at.len() > 1)
        .map(|(k, _)| *k)
        .collect();
    let duplicates: usize = received.values().map(|at| at.len() - 1).sum();
    let unknown = received.keys().filter(|k| !sends.contains_key(k)).count();
    println!(
        "sent {total}, received {} distinct ({} deliveries), lost {}, duplicates {duplicates} \
         (of {} notifications), unknown {unknown}",
        received.len(),
        received.values().map(Vec::len).sum::<usize>(),
        lost.len(),
        duplicated.len(),
    );
    if !lost.is_empty() {
        println!("lost: {:?}", lost.iter().take(20).collect::<Vec<_>>());
    }
    if !duplicated.is_empty() {
        println!(
            "duplicated: {:?}",
            duplicated.iter().take(20).collect::<Vec<_>>()
        );
    }

    for (i, &cut) in cuts.iter().enumerate() {
        // Sends started after the cut can only go through new connections, and reach the
        // listener only over its re-attached link.
        let after: Vec<_> = sends.iter().filter(|(_, (s, _))| *s > cut).collect();
        let resent = after.iter().map(|(_, (_, ok))| *ok - cut).min();
        let redelivered = after
            .iter()
            .filter_map(|(k, _)| received.get(k).map(|at| at[0] - cut))
            .min();
        let stuck = sends
            .values()
            .filter(|(s, ok)| *s < cut && *ok > cut)
            .map(|(s, ok)| *ok - *s)
            .max();
        let delivered_after = after
            .iter()
            .filter(|(k, _)| received.contains_key(k))
            .count();
        println!(
            "cut {}: first send accepted {resent:?} after it, first such notification received \
             {redelivered:?} after it; longest send across it {stuck:?}; {delivered_after} of {} \
             sent after it received",
            i + 1,
            after.len(),
        );
        assert!(!after.is_empty(), "nothing was sent after cut {}", i + 1);
        assert_eq!(
            delivered_after,
            after.len(),
            "the listener did not get everything sent after cut {}",
            i + 1
        );
    }
    assert!(
        lost.is_empty() && all_in,
        "{} notifications lost, e.g. {:?}",
        lost.len(),
        lost.iter().take(20).collect::<Vec<_>>()
    );
}

const CASTERS: u64 = 4;
const CASTS_EACH: u64 = 300;

/// Casts are at most once, so some may be lost at a cut; the server must keep serving on its
/// own, and calls made after each cut must be answered within their timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_server_keeps_serving_casts_and_calls_across_connection_drops() {
    let Some(url) = broker_url("rpc_server_keeps_serving_casts_and_calls_across_connection_drops")
    else {
        return;
    };
    let proxy = Proxy::start(upstream(&url), None).await;
    let via = format!(
        "amqp://{}127.0.0.1:{}/?{FAST}",
        credentials(&url),
        proxy.port
    );
    let topic = topic("inflight_rpc");
    let t0 = Instant::now();

    // Each cast received: (caster, seq) -> first receipt, as time since t0.
    let received: Arc<Mutex<HashMap<(u64, u64), Duration>>> = Arc::default();
    let server_transport = get_rpc_transport(&via).await.unwrap();
    let server = RpcServer::new(server_transport, Target::topic(&topic).server("srv1"))
        .endpoint(
            Endpoint::new()
                .method(
                    "echo",
                    |_ctx: Context, args: serde_json::Map<String, Value>| async move {
                        Ok::<_, RemoteError>(args.get("value").cloned().unwrap_or(Value::Null))
                    },
                )
                .method("count", {
                    let received = received.clone();
                    move |_ctx: Context, args: serde_json::Map<String, Value>| {
                        let received = received.clone();
                        async move {
                            let key = (
                                args["caster"].as_u64().unwrap_or(u64::MAX),
                                args["seq"].as_u64().unwrap_or(u64::MAX),
                            );
                            received.lock().unwrap().entry(key).or_insert(t0.elapsed());
                            Ok::<_, RemoteError>(Value::Null)
                        }
                    }
                }),
        )
        .start()
        .await
        .expect("server starts");

    // (caster, seq) -> when the cast was started, for those that returned Ok.
    let casts: Arc<Mutex<HashMap<(u64, u64), Duration>>> = Arc::default();
    let failed = Arc::new(AtomicUsize::new(0));
    let mut casters = Vec::new();
    let mut transports = Vec::new();
    for caster in 0..CASTERS {
        let transport = get_rpc_transport(&via).await.unwrap();
        transports.push(transport.clone());
        let client =
            RpcClient::new(transport, Target::topic(&topic)).timeout(Duration::from_secs(20));
        let (casts, failed) = (casts.clone(), failed.clone());
        casters.push(tokio::spawn(async move {
            for seq in 0..CASTS_EACH {
                let started = t0.elapsed();
                let args = json!({"caster": caster, "seq": seq});
                match client.cast(&Context::new(), "count", &args).await {
                    Ok(()) => {
                        casts.lock().unwrap().insert((caster, seq), started);
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
                // Paced, so that casting still goes on at both cuts: unpaced, the casters
                // can finish before the last cut.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    let transport = get_rpc_transport(&via).await.unwrap();
    transports.push(transport.clone());
    let client = RpcClient::new(transport, Target::topic(&topic)).timeout(Duration::from_secs(20));

    let total = (CASTERS * CASTS_EACH) as usize;
    let mut cuts = Vec::new();
    for at in [total / 3, 2 * total / 3] {
        let attempted = || casts.lock().unwrap().len() + failed.load(Ordering::SeqCst);
        wait_until(Duration::from_secs(120), &format!("{at} casts"), || {
            attempted() >= at
        })
        .await;
        proxy.cut();
        let cut = t0.elapsed();
        let attempted_at_cut = attempted();
        cuts.push(cut);
        // Sent right after the cut, while the casts go on: answered within the call timeout
        // once the client's and the server's links are back.
        let value = format!("after cut {}", cuts.len());
        let answer = echo(&client, &value).await;
        assert_eq!(
            answer.as_ref().ok(),
            Some(&Value::from(value.as_str())),
            "call after cut {}: {answer:?}",
            cuts.len()
        );
        println!(
            "cut {} after {attempted_at_cut} of {total} casts: a call right after it answered in \
             {:?}",
            cuts.len(),
            t0.elapsed() - cut
        );
    }
    for caster in casters {
        tokio::time::timeout(Duration::from_secs(300), caster)
            .await
            .expect("casters finish")
            .expect("caster task");
    }
    assert_eq!(echo(&client, "at the end").await.unwrap(), "at the end");
    let last_cut = *cuts.last().unwrap();
    // The server consumes casts sent after the last cut: its links came back by themselves.
    let casts = std::mem::take(&mut *casts.lock().unwrap());
    let after = casts.iter().filter(|(_, s)| **s > last_cut).count();
    let received_after = || {
        let received = received.lock().unwrap();
        casts
            .iter()
            .filter(|(k, s)| **s > last_cut && received.contains_key(*k))
            .count()
    };
    // Casts still queued reach the server soon; wait until no more come (bounded).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = usize::MAX;
    while seen != received.lock().unwrap().len() && Instant::now() < deadline {
        seen = received.lock().unwrap().len();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let received_after = received_after();
    server.shutdown().await;
    for transport in &transports {
        transport.close().await;
    }
    let received = received.lock().unwrap();
    let lost = casts.keys().filter(|k| !received.contains_key(*k)).count();
    println!(
        "casts: {total} attempted, {} returned Ok, {} failed, {} received, {lost} lost (at most \
         once); {received_after} of {after} sent after the last cut received",
        casts.len(),
        failed.load(Ordering::SeqCst),
        received.len(),
    );
    assert!(
        received_after > 0,
        "the server took no cast sent after the last cut"
    );
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
        matches!(&result, Err(MessagingError::AuthenticationFailure(reason))
            if reason.contains(&format!("login refused for user `{user}` (SASL PLAIN)"))),
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

/// A cast to a topic nobody consumes, while the peer has stopped answering (no answer to the
/// new link's Begin or Attach): it fails after the send timeout (`default_send_timeout`, or
/// the caller's), not after the call timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn casts_honour_the_send_timeout() {
    let Some(url) = broker_url("casts_honour_the_send_timeout") else {
        return;
    };
    let proxy = Proxy::start(upstream(&url), None).await;
    let via = format!(
        "amqp://{}127.0.0.1:{}/?default_send_timeout=2",
        credentials(&url),
        proxy.port
    );
    // The default call timeout (60 s) must not bound casts.
    let client = RpcClient::new(get_rpc_transport(&via).await.unwrap(), Target::topic("t"));
    let cast = |topic: String, client: RpcClient| async move {
        let started = Instant::now();
        let result = client
            .topic(topic)
            .cast(&Context::new(), "echo", &json!({"value": 1}))
            .await;
        (result, started.elapsed())
    };
    // RabbitMQ takes (and drops) a cast to a topic nobody consumes at once.
    let (result, elapsed) = cast(topic("nobody"), client.clone()).await;
    result.expect("taken by the broker");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    proxy.stall();
    // A new address needs a new link, whose attach is never answered now.
    let (result, elapsed) = cast(topic("nobody"), client.clone()).await;
    assert!(
        matches!(
            result,
            Err(MessagingError::SendTimeout { .. } | MessagingError::ConnectionFailure(_))
        ),
        "{result:?}"
    );
    let default = Duration::from_secs(2);
    assert!(elapsed >= default && elapsed < default * 2, "{elapsed:?}");
    let (result, elapsed) = cast(
        topic("nobody"),
        client.prepare().send_timeout(Duration::from_secs(1)),
    )
    .await;
    assert!(
        matches!(
            result,
            Err(MessagingError::SendTimeout { .. } | MessagingError::ConnectionFailure(_))
        ),
        "{result:?}"
    );
    assert!(elapsed < default, "the caller's send timeout: {elapsed:?}");
    proxy.cut();
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

/// Accepts connections and closes them at once (a broker that is "there" but never talks),
/// telling when each came in.
async fn refusing_listener() -> (u16, Arc<Mutex<Vec<Instant>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let seen = arrivals.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            seen.lock().unwrap().push(Instant::now());
            drop(stream);
        }
    });
    (port, arrivals)
}

/// One notification with one retry to a peer that drops every connection; the connection
/// attempts' arrival times and how long the send took.
async fn notify_with_interval(interval: f64) -> (Vec<Instant>, Duration) {
    messaging_core::install_driver(Arc::new(driver_amqp1::Amqp1Driver));
    let (port, arrivals) = refusing_listener().await;
    // A fixed addressing mode: the send itself connects (no mode detection first).
    let url = format!(
        "amqp://127.0.0.1:{port}/?addressing_mode=routable&connection_retry_interval={interval}\
         &connection_retry_backoff=0&connection_retry_interval_max={interval}"
    );
    let notifier = Notifier::new(get_notification_transport(&url).await.unwrap(), "t")
        .retry(messaging_core::Retry::Times(1))
        .timeout(Duration::from_secs(20));
    let started = Instant::now();
    let sent = notifier
        .notify(&Context::new(), Priority::Info, "e", &json!({}))
        .await;
    let took = started.elapsed();
    assert!(
        matches!(sent, Err(MessagingError::ConnectionFailure(_))),
        "{sent:?}"
    );
    let arrivals = arrivals.lock().unwrap().clone();
    (arrivals, took)
}

/// A send retries with the configured back-off (`connection_retry_*`), like the connect
/// under it: with one retry, two connects of two attempts each, every pause between them at
/// least half the interval (the back-off's jitter takes up to half off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_retry_with_the_configured_backoff() {
    let (arrivals, took) = notify_with_interval(0.4).await;
    assert_eq!(arrivals.len(), 4, "two sends of two connects: {arrivals:?}");
    for pair in arrivals.windows(2) {
        let pause = pair[1] - pair[0];
        assert!(pause >= Duration::from_millis(190), "paused {pause:?}");
    }
    assert!(took >= Duration::from_millis(600), "{took:?}");
    let (arrivals, took) = notify_with_interval(0.01).await;
    assert_eq!(arrivals.len(), 4, "{arrivals:?}");
    assert!(took < Duration::from_millis(500), "{took:?}");
}

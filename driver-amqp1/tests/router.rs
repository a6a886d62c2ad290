//! The conformance suite, and what only a router shows, against an AMQP 1.0 router (router
//! mode) at `AMQP1_ROUTER_URL`
//! (e.g. `amqp://127.0.0.1:5673`). Opt-in: when the variable is unset every case is skipped
//! with a visible `skipped:` line, even in CI (`MESSAGING_REQUIRE_BROKERS=1`), because no router
//! package exists in the reachable registries.
//!
//! The router must define oslo's address prefixes (see the README):
//! `openstack.org/om/rpc/multicast` multicast, `openstack.org/om/rpc/unicast` closest,
//! `openstack.org/om/rpc/anycast` balanced, and `openstack.org/om/notify` balanced.

use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use messaging_core::driver::Feature;
use messaging_core::{
    get_notification_transport, get_rpc_transport, Context, MessagingError, Notification,
    NotificationEndpoint, NotificationListener, NotificationResult, Notifier, Priority, RpcClient,
    Target,
};
use serde_json::{json, Value};

fn backend() -> messaging_conformance::Backend {
    static OPT_IN: Once = Once::new();
    OPT_IN.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        // This test binary holds only router cases: with no router configured they skip
        // rather than fail, whatever MESSAGING_REQUIRE_BROKERS says.
        if std::env::var("AMQP1_ROUTER_URL").map_or(true, |u| u.is_empty()) {
            std::env::remove_var("MESSAGING_REQUIRE_BROKERS");
        }
    });
    messaging_core::install_driver(std::sync::Arc::new(driver_amqp1::Amqp1Driver));
    messaging_conformance::Backend::from_env("amqp1-router", "AMQP1_ROUTER_URL")
        .without(Feature::StoreBeforeListen, driver_amqp1::ROUTER_NO_STORE)
}

messaging_conformance::conformance_suite!(backend());

/// The router's URL with `query` added, or `None` (a visible skip) when no router is set.
fn router_url(test: &str, query: &str) -> Option<String> {
    let _ = backend();
    match std::env::var("AMQP1_ROUTER_URL") {
        Ok(url) if !url.is_empty() => {
            let joiner = if url.contains('?') { '&' } else { '?' };
            Some(format!("{url}{joiner}{query}"))
        }
        _ => {
            println!("skipped: {test}: AMQP1_ROUTER_URL is not set");
            None
        }
    }
}

fn unique(what: &str) -> String {
    messaging_conformance::unique(what)
}

/// Through a router a cast to a topic nobody consumes gets no credit: it fails after the
/// send timeout (`default_send_timeout`, or the caller's), not after the call timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn casts_honour_the_send_timeout() {
    let Some(url) = router_url("casts_honour_the_send_timeout", "default_send_timeout=2") else {
        return;
    };
    let transport = get_rpc_transport(&url).await.unwrap();
    let client = RpcClient::new(transport.clone(), Target::topic(unique("nobody")));
    for (client, expected) in [
        (client.clone(), Duration::from_secs(2)),
        (
            client.send_timeout(Duration::from_secs(1)),
            Duration::from_secs(1),
        ),
    ] {
        let started = Instant::now();
        let cast = client.cast(&Context::new(), "echo", &json!({})).await;
        let elapsed = started.elapsed();
        assert!(
            matches!(cast, Err(MessagingError::SendTimeout { after, .. }) if after >= expected),
            "{cast:?}"
        );
        assert!(elapsed < expected * 2, "{elapsed:?}");
    }
    transport.close().await;
}

/// A call's timeout counts from its start, connecting and attaching included: a fresh
/// transport that times out reports at least the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_reports_the_time_since_the_call_started() {
    let Some(url) = router_url("a_timeout_reports_the_time_since_the_call_started", "") else {
        return;
    };
    let transport = get_rpc_transport(&url).await.unwrap();
    let timeout = Duration::from_secs(1);
    let client =
        RpcClient::new(transport.clone(), Target::topic(unique("nobody"))).timeout(timeout);
    let started = Instant::now();
    let call = client
        .call::<Value>(&Context::new(), "echo", &json!({}))
        .await;
    match call {
        Err(MessagingError::Timeout { after, .. }) => {
            assert!(after >= timeout && after <= started.elapsed(), "{after:?}")
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    transport.close().await;
}

/// A batch listener accepts what joins a batch at once (the notifier goes on), and a requeue
/// of it is a new send that comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requeue_from_a_batch_comes_back() {
    let Some(url) = router_url("a_requeue_from_a_batch_comes_back", "") else {
        return;
    };
    let topic = unique("batch_requeue");
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let recorded = seen.clone();
    let endpoint =
        NotificationEndpoint::new().on_batch(Priority::Info, move |batch: Vec<Notification>| {
            let seen = recorded.clone();
            async move {
                let mut seen = seen.lock().unwrap();
                let first_time = batch.iter().any(|n| !seen.contains(&n.event_type));
                seen.extend(batch.iter().map(|n| n.event_type.clone()));
                if first_time && batch.iter().any(|n| n.event_type == "again") {
                    NotificationResult::Requeue
                } else {
                    NotificationResult::Handled
                }
            }
        });
    let listener = NotificationListener::new(get_notification_transport(&url).await.unwrap())
        .target(Target::topic(&topic))
        .endpoint(endpoint)
        .allow_requeue(true)
        .batch(10, Duration::from_millis(500))
        .start()
        .await
        .unwrap();
    let transport = get_notification_transport(&url).await.unwrap();
    let notifier = Notifier::new(transport.clone(), "p").topics([&topic]);
    let started = Instant::now();
    for event in ["once", "again", "also once"] {
        notifier
            .info(&Context::new(), event, &json!({}))
            .await
            .unwrap();
    }
    let sending = started.elapsed();
    assert!(
        sending < Duration::from_millis(500),
        "the notifier waited for the batch: {sending:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen
        .lock()
        .unwrap()
        .iter()
        .filter(|e| *e == "again")
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "not redelivered: {:?}",
            seen.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    listener.shutdown().await;
    transport.close().await;
}

//! Real broker restarts: the RabbitMQ process is stopped and started again
//! (`.ci/brokers stop|start rabbit`) while traffic flows. Every test here takes the one broker
//! away, so they run one at a time, and each leaves it running even when it fails. Stopping a
//! shared broker would break other tests running against it, so these run only in CI
//! (`MESSAGING_REQUIRE_BROKERS=1`) or when asked with `MESSAGING_OUTAGE_TESTS=1`.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use messaging_core::*;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Serializes the tests of this binary: each one stops the broker.
static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Reconnect quickly so that the tests spend their time on the outage, not on backoff.
const FAST_RECONNECT: &str =
    "rabbit_retry_interval=0.2&rabbit_retry_backoff=0.2&rabbit_interval_max=1";

/// The broker URL, if outage tests may run here.
fn outage_url(test: &str) -> Option<String> {
    let url = rabbit_url(test)?;
    let opted_in = ["MESSAGING_REQUIRE_BROKERS", "MESSAGING_OUTAGE_TESTS"]
        .iter()
        .any(|var| std::env::var(var).as_deref() == Ok("1"));
    if !opted_in {
        println!("skipped: {test}: it stops the broker; set MESSAGING_OUTAGE_TESTS=1");
        return None;
    }
    Some(url)
}

/// Starts the broker again if a test panics while it is stopped.
struct KeepBrokerRunning;

impl Drop for KeepBrokerRunning {
    fn drop(&mut self) {
        rabbit_broker("start");
    }
}

async fn broker(action: &'static str) {
    tokio::task::spawn_blocking(move || rabbit_broker(action))
        .await
        .unwrap();
}

/// Stop and start RabbitMQ; returns how long it was away.
async fn restart_broker() -> Duration {
    let began = Instant::now();
    broker("stop").await;
    broker("start").await;
    began.elapsed()
}

/// `step`, failing the test with its name if it takes longer than `limit`: a hang here is a
/// bug to see in CI's log, not a run killed at CI's time limit without a word.
async fn bounded<T>(
    step: &str,
    limit: Duration,
    future: impl std::future::Future<Output = T>,
) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("{step} did not finish within {limit:?}"))
}

/// Prints `progress()` every 20 s until dropped, so that a stalled run shows where it stopped.
struct Progress(tokio::task::JoinHandle<()>);

impl Progress {
    fn every_20s(progress: impl Fn() -> String + Send + 'static) -> Self {
        let began = Instant::now();
        Self(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(20)).await;
                println!("[{:>5.0?}] {}", began.elapsed(), progress());
            }
        }))
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const PUBLISHERS: usize = 100;
const PER_PUBLISHER: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn durable_notifications_survive_two_broker_restarts() {
    let Some(url) = outage_url("durable_notifications_survive_two_broker_restarts") else {
        return;
    };
    let _serial = BROKER.lock().await;
    let vhost = Vhost::new();
    // Declared after the vhost so that it runs first: deleting the vhost needs the broker.
    let _guard = KeepBrokerRunning;
    let url = in_vhost(
        &url,
        &vhost,
        &format!("amqp_durable_queues=true&rabbit_quorum_queue=true&{FAST_RECONNECT}"),
    );
    let transport = bounded("connecting", STEP, get_notification_transport(&url))
        .await
        .unwrap();

    // (publisher, seq) → how many times the endpoint saw it.
    let received: Arc<Mutex<HashMap<(u64, u64), u32>>> = Arc::default();
    let seen = received.clone();
    let listener = NotificationListener::new(transport.clone())
        .target(Target::topic("billing"))
        .endpoint(NotificationEndpoint::new().on(Priority::Info, move |n| {
            let seen = seen.clone();
            async move {
                let key = (n.payload["publisher"].as_u64(), n.payload["seq"].as_u64());
                if let (Some(p), Some(s)) = key {
                    *seen.lock().unwrap().entry((p, s)).or_default() += 1;
                }
                NotificationResult::Handled
            }
        }))
        .start();
    let listener = bounded("starting the listener", STEP, listener)
        .await
        .unwrap();

    let sent = Arc::new(AtomicUsize::new(0));
    let _progress = {
        let (sent, received) = (sent.clone(), received.clone());
        Progress::every_20s(move || {
            format!(
                "{} confirmed sends, {} distinct received",
                sent.load(Ordering::Relaxed),
                received.lock().unwrap().len()
            )
        })
    };
    let mut publishers = tokio::task::JoinSet::new();
    for p in 0..PUBLISHERS {
        let notifier = Notifier::new(transport.clone(), format!("billing.{p}")).topics(["billing"]);
        let sent = sent.clone();
        publishers.spawn(async move {
            for seq in 0..PER_PUBLISHER {
                // Retry forever (the notifier's default): the send waits out the outage.
                notifier
                    .info(
                        &Context::new(),
                        "billing.usage",
                        &json!({"publisher": p, "seq": seq}),
                    )
                    .await
                    .unwrap();
                sent.fetch_add(1, Ordering::Relaxed);
                // Paced so that the run spans both restarts.
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        });
    }

    let total = PUBLISHERS * PER_PUBLISHER;
    let mut outages = Vec::new();
    for threshold in [total / 3, total / 2] {
        wait_until("the publishers", Duration::from_secs(120), || {
            sent.load(Ordering::Relaxed) >= threshold
        })
        .await;
        let at = sent.load(Ordering::Relaxed);
        let away = bounded("restarting the broker", STEP * 3, restart_broker()).await;
        outages.push((at, away));
    }
    let publishing = tokio::time::timeout(Duration::from_secs(300), async {
        while let Some(done) = publishers.join_next().await {
            done.unwrap();
        }
    });
    publishing
        .await
        .expect("publishers still blocked 300 s after the restarts");
    // Everything is confirmed by the broker: wait for the listener to drain the queue.
    let distinct = || received.lock().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(120);
    while distinct() < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Duplicates that arrive after the last original are counted too.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let received = received.lock().unwrap().clone();
    let duplicates: u32 = received.values().map(|n| n - 1).sum();
    let lost = total - received.len();
    for (at, away) in &outages {
        println!("broker restarted after {at} confirmed sends, away for {away:.1?}");
    }
    println!(
        "{total} notifications from {PUBLISHERS} publishers: {} received, {lost} lost, \
         {duplicates} duplicates",
        received.len()
    );
    assert_eq!(lost, 0, "notifications lost across broker restarts");
    assert!(received
        .keys()
        .all(|(p, s)| (*p as usize) < PUBLISHERS && (*s as usize) < PER_PUBLISHER));

    bounded("listener.shutdown()", STEP, listener.shutdown()).await;
    bounded("transport.close()", STEP, transport.close()).await;
}

/// How long one step that is not the point of a test may take before it counts as a hang.
const STEP: Duration = Duration::from_secs(60);

fn echo_endpoint() -> Endpoint {
    Endpoint::new().method("echo", |_ctx: Context, args: Value| async move {
        Ok::<_, RemoteError>(args["value"].clone())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rpc_during_an_outage_ends_within_its_timeout_and_services_resume() {
    let Some(url) = outage_url("rpc_during_an_outage_ends_within_its_timeout_and_services_resume")
    else {
        return;
    };
    let _serial = BROKER.lock().await;
    let vhost = Vhost::new();
    // Declared after the vhost so that it runs first: deleting the vhost needs the broker.
    let _guard = KeepBrokerRunning;
    let url = in_vhost(&url, &vhost, FAST_RECONNECT);
    let rpc = get_rpc_transport(&url).await.unwrap();
    let server = RpcServer::new(rpc.clone(), Target::topic("compute").server("host1"))
        .endpoint(echo_endpoint())
        .start()
        .await
        .unwrap();
    let notifications = get_notification_transport(&url).await.unwrap();
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    let listener = NotificationListener::new(notifications.clone())
        .target(Target::topic("notifications"))
        .endpoint(NotificationEndpoint::new().on(Priority::Info, move |n| {
            let notes_tx = notes_tx.clone();
            async move {
                notes_tx.send(n.event_type).unwrap();
                NotificationResult::Handled
            }
        }))
        .start()
        .await
        .unwrap();
    let client = RpcClient::new(rpc.clone(), Target::topic("compute"));
    let ctx = Context::new();
    let answer: String = client
        .clone()
        .timeout(Duration::from_secs(10))
        .call(&ctx, "echo", &json!({"value": "before"}))
        .await
        .unwrap();
    assert_eq!(answer, "before");

    broker("stop").await;
    // Patient calls outlive the outage; impatient ones end during it.
    let mut calls = tokio::task::JoinSet::new();
    for (i, timeout) in (0..20).map(|i| (i, Duration::from_secs(if i < 10 { 45 } else { 2 }))) {
        let client = client.clone().timeout(timeout);
        let ctx = ctx.clone();
        calls.spawn(async move {
            let began = Instant::now();
            let args = json!({"value": i});
            let call = client.call::<Value>(&ctx, "echo", &args);
            // A call that outlives its own timeout by this much hangs.
            let ended = tokio::time::timeout(timeout + Duration::from_secs(15), call).await;
            (i, timeout, began.elapsed(), ended)
        });
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker("start").await;

    let mut outcomes = Vec::new();
    while let Some(done) = calls.join_next().await {
        let (i, timeout, took, ended) = done.unwrap();
        let outcome = match ended {
            Err(_) => panic!("call {i} (timeout {timeout:?}) hung for {took:?}"),
            Ok(Ok(answer)) => {
                assert_eq!(answer, json!(i));
                "answered"
            }
            Ok(Err(MessagingError::Timeout { .. })) => "Timeout",
            Ok(Err(MessagingError::ConnectionFailure(_))) => "ConnectionFailure",
            Ok(Err(MessagingError::SendTimeout { .. })) => "SendTimeout",
            Ok(Err(other)) => panic!("call {i}: unexpected error {other:?}"),
        };
        println!("call {i}: timeout {timeout:?}, ended after {took:.1?}: {outcome:?}");
        outcomes.push((timeout, outcome));
    }
    let mut summary: HashMap<(Duration, &str), usize> = HashMap::new();
    for outcome in &outcomes {
        *summary.entry(*outcome).or_default() += 1;
    }
    println!("calls during the outage (timeout, outcome) → count: {summary:?}");
    let impatient_answered = summary
        .get(&(Duration::from_secs(2), "answered"))
        .copied()
        .unwrap_or_default();
    // The broker was away longer than 2 s: those calls cannot have been answered.
    assert_eq!(impatient_answered, 0, "{outcomes:?}");
    // It was back well within 45 s: requests held by the client while it was away, and
    // re-published while the servers' queues were not declared yet, all reach the server.
    let patient_answered = summary
        .get(&(Duration::from_secs(45), "answered"))
        .copied()
        .unwrap_or_default();
    assert_eq!(patient_answered, 10, "{outcomes:?}");

    // Nobody restarted the server or the listener: they consume again on their own.
    wait_until(
        "the server and listener to consume again",
        Duration::from_secs(60),
        || {
            let queues = consumers(&vhost);
            ["compute", "compute.host1", "notifications.info"]
                .iter()
                .all(|q| queues.get(*q).copied().unwrap_or_default() > 0)
        },
    )
    .await;
    let answer: String = client
        .clone()
        .timeout(Duration::from_secs(30))
        .call(&ctx, "echo", &json!({"value": "after"}))
        .await
        .unwrap();
    assert_eq!(answer, "after");
    Notifier::new(notifications.clone(), "p")
        .topics(["notifications"])
        .info(&ctx, "after the outage", &json!({}))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(30), notes.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, "after the outage");

    bounded("server.shutdown()", STEP, server.shutdown()).await;
    bounded("listener.shutdown()", STEP, listener.shutdown()).await;
    bounded("rpc.close()", STEP, rpc.close()).await;
    bounded("notifications.close()", STEP, notifications.close()).await;
}

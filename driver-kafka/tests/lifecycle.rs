//! A listener's life with the broker: it leaves its consumer group when it shuts down, fails
//! its start when no broker answers, starts when only some bootstrap servers answer, and
//! `enable_auto_commit` commits on delivery. Needs `KAFKA_URL` (except where noted); skipped
//! when unset, unless `MESSAGING_REQUIRE_BROKERS=1`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use messaging_conformance::Recorder;
use messaging_core::{
    get_notification_transport, Context, MessagingError, Notification, NotificationEndpoint,
    NotificationListener, NotificationResult, Notifier, Priority, ServiceHandle, Target,
};

const WAIT: Duration = Duration::from_secs(60);

/// A port nothing listens on (bound once by the OS, then released).
fn unused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Start a listener of `pool` on `topic`; `handle` decides what its endpoint does.
async fn start_listener<F, Fut>(
    url: &str,
    topic: &str,
    pool: &str,
    handle: F,
) -> messaging_core::Result<ServiceHandle>
where
    F: Fn(Notification) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = NotificationResult> + Send + 'static,
{
    NotificationListener::new(get_notification_transport(url).await?)
        .target(Target::topic(topic))
        .pool(pool)
        .endpoint(NotificationEndpoint::new().on(Priority::Info, handle))
        .start()
        .await
}

/// A listener that records what it gets.
async fn recording(url: &str, topic: &str, pool: &str) -> (ServiceHandle, Arc<Recorder<i64>>) {
    let recorder = Recorder::new();
    let record = recorder.clone();
    let listener = start_listener(url, topic, pool, move |n| {
        record.push(n.payload.as_i64().unwrap_or(-1));
        async { NotificationResult::Handled }
    })
    .await
    .expect("listener");
    (listener, recorder)
}

async fn send(url: &str, topic: &str, numbers: std::ops::Range<i64>) {
    let transport = get_notification_transport(url).await.unwrap();
    let notifier = Notifier::new(transport.clone(), "p").topics([topic]);
    for n in numbers {
        notifier.info(&Context::new(), "e", &n).await.unwrap();
    }
    transport.close().await;
}

/// Set (to `<url> <topic> <pool>`) in the child process of the shutdown test.
const CHILD_VAR: &str = "KAFKA_LEAVE_CHILD";

/// The child of `shutdown_leaves_the_group_and_the_next_listener_starts_at_once`: a service
/// that starts a listener, gets one notification, shuts the listener down and exits at once,
/// without closing its transport.
#[test]
fn leave_child() {
    let Some(([url, topic, pool], runtime)) = common::child(CHILD_VAR) else {
        return; // only runs as the child
    };
    runtime.block_on(async {
        let (listener, got) = recording(&url, &topic, &pool).await;
        send(&url, &topic, 0..1).await;
        got.wait_for(1, WAIT, "the child's notification").await;
        listener.shutdown().await;
    });
    // As a process that is done: no transport close, no destructors.
    std::process::exit(0);
}

/// Shutting a listener down leaves its consumer group (it used to leave only when the
/// transport was closed: a service that exited right after its listener's shutdown left a
/// member behind, and the next listener of the group waited ~40 s in `start()` for the
/// broker to expire it). The first listener runs in a child process that exits right after
/// `shutdown()`; the broker keeps librdkafka's default 45 s session timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_the_group_and_the_next_listener_starts_at_once() {
    let Some(url) = common::kafka_url("shutdown_leaves_the_group") else {
        return;
    };
    let (topic, pool) = (common::unique("leave"), common::unique("pool"));
    let child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "leave_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, format!("{url} {topic} {pool}"))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let child = tokio::time::timeout(WAIT * 2, child)
        .await
        .expect("the child ends")
        .unwrap();
    assert!(child.status.success(), "the child failed: {child:?}");
    let exited = Instant::now();
    let (second, got) = recording(&url, &topic, &pool).await;
    let restart = exited.elapsed();
    send(&url, &topic, 1..2).await;
    assert_eq!(got.wait_for(1, WAIT, "the second listener's").await, [1]);
    second.shutdown().await;
    println!(
        "a listener of the same group started {restart:?} after the first one's process exited"
    );
    assert!(restart < Duration::from_secs(5), "{restart:?}");
}

/// No broker needed: with no bootstrap server answering, starting a listener fails with a
/// `ConnectionFailure` that names the servers and the cause, within the connect bound (10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_start_fails_when_no_broker_answers() {
    messaging_core::install_driver(Arc::new(driver_kafka::KafkaDriver));
    let url = format!("kafka://127.0.0.1:{}/", unused_port());
    let started = Instant::now();
    let result = start_listener(&url, &common::unique("down"), "p", |_| async {
        NotificationResult::Handled
    })
    .await;
    let elapsed = started.elapsed();
    let Err(MessagingError::ConnectionFailure(message)) = result else {
        panic!("expected a ConnectionFailure, got {result:?}");
    };
    println!("listener start failed after {elapsed:?}: {message}");
    assert!(
        message.contains("no kafka broker of 127.0.0.1:"),
        "{message}"
    );
    assert!(message.contains("Connection refused"), "{message}");
    assert!(
        elapsed >= Duration::from_secs(9) && elapsed < Duration::from_secs(20),
        "{elapsed:?}"
    );
}

/// A dead bootstrap server next to a live one: the listener starts and consumes, the notifier
/// sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_dead_bootstrap_server_does_not_stop_the_listener() {
    let Some(url) = common::kafka_url("one_dead_bootstrap_server") else {
        return;
    };
    let live = common::bootstrap(&url);
    let url = format!(
        "kafka://127.0.0.1:{},{live}/?{}",
        unused_port(),
        common::TEST_OPTIONS
    );
    let topic = common::unique("deadhost");
    let started = Instant::now();
    let (listener, got) = recording(&url, &topic, &common::unique("pool")).await;
    let start = started.elapsed();
    send(&url, &topic, 0..20).await;
    let mut numbers = got.wait_for(20, WAIT, "all 20").await;
    listener.shutdown().await;
    numbers.sort();
    assert_eq!(numbers, (0..20).collect::<Vec<_>>());
    println!("with a dead bootstrap server: started in {start:?}, 20 of 20 received");
}

/// `enable_auto_commit=true` commits a record once delivered, before its endpoint finished
/// (oslo's behaviour): a listener stuck on a notification has committed past it already.
/// By default nothing is committed until the endpoint is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_auto_commit_commits_on_delivery() {
    let Some(url) = common::kafka_url("enable_auto_commit_commits_on_delivery") else {
        return;
    };
    for auto_commit in [true, false] {
        let url = common::with_options(
            &url,
            &format!("{}&enable_auto_commit={auto_commit}", common::TEST_OPTIONS),
        );
        let (topic, pool) = (common::unique("autocommit"), common::unique("pool"));
        let (entered, mut inside) = tokio::sync::mpsc::unbounded_channel();
        let release = Arc::new(tokio::sync::Notify::new());
        let gate = release.clone();
        let listener = start_listener(&url, &topic, &pool, move |_| {
            let (entered, gate) = (entered.clone(), gate.clone());
            async move {
                entered.send(()).ok();
                gate.notified().await;
                NotificationResult::Handled
            }
        })
        .await
        .unwrap();
        let committed = || {
            let (url, pool, topic) = (url.clone(), pool.clone(), format!("{topic}.info"));
            tokio::task::spawn_blocking(move || common::committed_total(&url, &pool, &topic))
        };
        let before = committed().await.unwrap();
        send(&url, &topic, 0..1).await;
        tokio::time::timeout(WAIT, inside.recv()).await.unwrap();
        // Commits go out every 0.1 s.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let during = committed().await.unwrap() - before;
        release.notify_one();
        listener.shutdown().await;
        let after = committed().await.unwrap() - before;
        println!(
            "enable_auto_commit={auto_commit}: committed {during} while handling, {after} after"
        );
        assert_eq!(during, i64::from(auto_commit), "auto commit {auto_commit}");
        assert_eq!(after, 1, "committed once handled");
    }
}

//! A configuration file is applied whole: one file setting every supported key, read with
//! `messaging::parse_ini`, builds transports, clients, servers, notifiers and listeners whose
//! behaviour shows each key, on memory:// and (when `RABBIT_URL` is set) on rabbit://. Keys
//! whose effect needs a broker that fails (`retry`, `outbox_overflow`) are checked against a
//! RabbitMQ URL whose port nobody listens on.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use messaging::{
    get_rpc_transport, parse_ini, Context, Endpoint, MessagingConfig, MessagingError, NoArgs,
    NotificationEndpoint, NotificationResult, NotificationTransport, RemoteError, RpcTransport,
    Target, TransportOptions, PING_METHOD,
};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// A RabbitMQ URL that refuses connections at once.
const NOBODY: &str = "rabbit://guest:guest@127.0.0.1:1/";

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", &messaging::wire::new_id()[..8])
}

/// A file setting every key we read (and one of another library's). One control exchange
/// for every run: RabbitMQ keeps exchanges, and the test policy expires only queues.
fn every_key(rpc_url: &str, notify_url: &str, id: &str, spool: &std::path::Path) -> String {
    format!(
        "[DEFAULT]\n\
         debug = true\n\
         transport_url = {rpc_url}\n\
         control_exchange = test_cfg\n\
         rpc_response_timeout = 1.5\n\
         executor_thread_pool_size = 2\n\
         rpc_ping_enabled = true\n\
         [oslo_messaging_notifications]\n\
         transport_url = {notify_url}\n\
         driver = messagingv2\n\
         driver = log\n\
         topics = test_cfg_a_{id}, test_cfg_b_{id}\n\
         retry = 3\n\
         outbox_dir = {}\n\
         outbox_capacity = 100\n\
         outbox_overflow = error\n\
         [oslo_messaging_signing]\n\
         keys = k1:0123456789abcdef\n\
         mode = reject\n\
         [oslo_messaging_rabbit]\n\
         rabbit_qos_prefetch_count = 7\n",
        spool.display()
    )
}

/// An endpoint whose `work` takes 200 ms and records how many ran at once.
fn work_endpoint(busy: Arc<AtomicUsize>, most: Arc<AtomicUsize>) -> Endpoint {
    Endpoint::new().method("work", move |_ctx: Context, _: NoArgs| {
        let (busy, most) = (busy.clone(), most.clone());
        async move {
            let now = busy.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
            busy.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, RemoteError>(())
        }
    })
}

/// Listen to `topic` on `transport`; the receiver gets each notification's event type.
async fn listen(
    config: &MessagingConfig,
    transport: NotificationTransport,
    topic: &str,
) -> (messaging::ServiceHandle, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let listener = config
        .notification_listener(transport)
        .target(Target::topic(topic))
        .endpoint(NotificationEndpoint::new().on_all(move |n| {
            let tx = tx.clone();
            async move {
                tx.send(n.event_type).ok();
                NotificationResult::Handled
            }
        }))
        .start()
        .await
        .unwrap();
    (listener, rx)
}

async fn nothing_arrives(rx: &mut mpsc::UnboundedReceiver<String>, what: &str) {
    let late = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await;
    assert!(late.is_err(), "{what}: {late:?}");
}

/// The RPC side: `rpc_ping_enabled`, `executor_thread_pool_size`, `rpc_response_timeout`,
/// `control_exchange`, `[oslo_messaging_signing]`.
async fn check_rpc(config: &MessagingConfig, rpc: &RpcTransport, id: &str) {
    let topic = format!("test_cfg_rpc_{id}");
    let (busy, most) = (Arc::default(), Arc::<AtomicUsize>::default());
    let server = config
        .rpc_server(rpc.clone(), Target::topic(&topic).server("s1"))
        .endpoint(work_endpoint(busy, most.clone()))
        .start()
        .await
        .unwrap();
    let client = config.rpc_client(rpc.clone(), Target::topic(&topic));
    let ctx = Context::new();
    let pong: String = client.call(&ctx, PING_METHOD, &NoArgs {}).await.unwrap();
    assert_eq!(pong, "pong", "rpc_ping_enabled");

    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let client = client.clone();
        calls.spawn(async move { client.call::<()>(&Context::new(), "work", &NoArgs {}).await });
    }
    while let Some(result) = calls.join_next().await {
        result.unwrap().unwrap();
    }
    assert_eq!(most.load(Ordering::SeqCst), 2, "executor_thread_pool_size");

    let started = Instant::now();
    let nobody = config.rpc_client(rpc.clone(), Target::topic(format!("test_cfg_none_{id}")));
    let error = nobody
        .call::<()>(&ctx, "work", &NoArgs {})
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(
        matches!(error, MessagingError::Timeout { .. }) && waited >= Duration::from_millis(1500),
        "rpc_response_timeout: {error} after {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(4),
        "rpc_response_timeout: {waited:?}"
    );
    let text = error.to_string();
    assert!(text.contains("exchange `test_cfg`"), "{text}");

    check_exchange_and_signing(config, rpc, &topic).await;
    server.shutdown().await;
}

/// `control_exchange` and `[oslo_messaging_signing]`: a client on a transport opened without
/// one of them misses the server of `topic`.
async fn check_exchange_and_signing(config: &MessagingConfig, rpc: &RpcTransport, topic: &str) {
    let keys_only = TransportOptions {
        signing: config.signing.clone(),
        ..TransportOptions::default()
    };
    let missed = call_work(config, &keys_only, Target::topic(topic)).await;
    assert!(
        matches!(missed, Err(MessagingError::Timeout { .. })),
        "control_exchange: {missed:?}"
    );
    let named = Target::topic(topic).exchange(&config.control_exchange);
    let reached = call_work(config, &keys_only, named).await;
    assert!(reached.is_ok(), "control_exchange named: {reached:?}");

    // The server of a signing file (mode = reject) drops unsigned requests.
    let exchange_only = TransportOptions {
        control_exchange: config.control_exchange.clone(),
        ..TransportOptions::default()
    };
    let failures_before = rpc.signature_failures();
    let refused = call_work(config, &exchange_only, Target::topic(topic)).await;
    assert!(
        matches!(refused, Err(MessagingError::Timeout { .. })),
        "signing: {refused:?}"
    );
    assert!(
        rpc.signature_failures() > failures_before,
        "signing: counted"
    );
}

/// Call `work` at `target` through a transport to the file's URL opened with `options`.
async fn call_work(
    config: &MessagingConfig,
    options: &TransportOptions,
    target: Target,
) -> Result<(), MessagingError> {
    let transport = messaging::get_rpc_transport_with(&config.transport_url, options).await?;
    messaging::RpcClient::new(transport, target)
        .timeout(Duration::from_millis(700))
        .call(&Context::new(), "work", &NoArgs {})
        .await
}

/// The notification side: its own `transport_url`, `topics`, `driver`, the outbox settings.
async fn check_notifications(config: &MessagingConfig, id: &str, spool: &std::path::Path) {
    let notify = config.notification_transport().await.unwrap();
    let expected = messaging::TransportUrl::parse(config.notification_url()).unwrap();
    let opened = notify.url();
    assert_eq!(
        (&opened.hosts, &opened.virtual_host),
        (&expected.hosts, &expected.virtual_host),
        "[oslo_messaging_notifications] transport_url"
    );
    let (topic_a, topic_b) = (format!("test_cfg_a_{id}"), format!("test_cfg_b_{id}"));
    let (listener_a, mut a) = listen(config, notify.clone(), &topic_a).await;
    let (listener_b, mut b) = listen(config, notify.clone(), &topic_b).await;
    let notifier = config.notifier(notify, "cfg.host1").await.unwrap();
    assert!(
        notifier.outbox_stats().is_some(),
        "outbox_capacity / outbox_dir"
    );
    assert!(
        std::fs::read_dir(spool).unwrap().next().is_some(),
        "outbox_dir holds the spool"
    );
    notifier
        .info(&Context::new(), "cfg.event", &json!({"n": 1}))
        .await
        .unwrap();
    notifier.flush(Duration::from_secs(30)).await.unwrap();
    let patience = Duration::from_secs(30);
    for (name, rx) in [("a", &mut a), ("b", &mut b)] {
        let got = tokio::time::timeout(patience, rx.recv()).await;
        assert_eq!(got, Ok(Some("cfg.event".to_owned())), "topics: {name}");
    }
    // Two topics, one sending driver (`log` only logs): two sends.
    assert_eq!(
        notifier.outbox_stats().unwrap().sent,
        2,
        "driver = messagingv2 + log"
    );
    nothing_arrives(&mut a, "one copy per topic").await;
    listener_a.shutdown().await;
    listener_b.shutdown().await;
}

async fn round_trip(rpc_url: &str, notify_url: &str) {
    let id = &messaging::wire::new_id()[..8];
    let spool = tempfile::tempdir().unwrap();
    let config = parse_ini(&every_key(rpc_url, notify_url, id, spool.path())).unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let rpc = config.rpc_transport().await.unwrap();
    assert_eq!(rpc.control_exchange(), "test_cfg");
    assert!(rpc.signing().is_some(), "[oslo_messaging_signing]");
    if rpc.driver_name() == "rabbit" {
        let prefetch = ("rabbit_qos_prefetch_count".to_owned(), "7".to_owned());
        assert!(
            rpc.url().query.contains(&prefetch),
            "[oslo_messaging_rabbit]"
        );
    }
    check_rpc(&config, &rpc, id).await;
    check_notifications(&config, id, spool.path()).await;
    rpc.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_applies_on_memory() {
    // Notifications on their own bus: a listener on the RPC bus would see nothing.
    round_trip(
        &unique("memory:///cfg_rpc"),
        &unique("memory:///cfg_notify"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_applies_on_rabbit() {
    let Some(url) = std::env::var("RABBIT_URL").ok().filter(|u| !u.is_empty()) else {
        println!("skipped: every_key_applies_on_rabbit: RABBIT_URL is not set");
        return;
    };
    round_trip(&url, &url).await;
}

#[tokio::test]
async fn notifications_follow_their_own_transport_url() {
    let (rpc_url, notify_url) = (unique("memory:///own_rpc"), unique("memory:///own_notify"));
    let config = parse_ini(&format!(
        "[DEFAULT]\ntransport_url = {rpc_url}\n\
         [oslo_messaging_notifications]\ntransport_url = {notify_url}\ntopics = t\n"
    ))
    .unwrap();
    let on_rpc_bus = messaging::get_notification_transport(&rpc_url)
        .await
        .unwrap();
    let (stray, mut nothing) = listen(&config, on_rpc_bus, "t").await;
    let (listener, mut events) =
        listen(&config, config.notification_transport().await.unwrap(), "t").await;
    let notifier = config
        .notifier(config.notification_transport().await.unwrap(), "p")
        .await
        .unwrap();
    notifier.info(&Context::new(), "sent", &1).await.unwrap();
    assert_eq!(events.recv().await.as_deref(), Some("sent"));
    nothing_arrives(&mut nothing, "the RPC bus got a notification").await;
    stray.shutdown().await;
    listener.shutdown().await;
}

#[tokio::test]
async fn driver_noop_sends_nothing() {
    let url = unique("memory:///noop");
    let config = parse_ini(&format!(
        "[DEFAULT]\ntransport_url = {url}\n[oslo_messaging_notifications]\ndriver = noop\n"
    ))
    .unwrap();
    let (listener, mut events) = listen(
        &config,
        config.notification_transport().await.unwrap(),
        "notifications",
    )
    .await;
    let notifier = config
        .notifier(config.notification_transport().await.unwrap(), "p")
        .await
        .unwrap();
    assert!(!notifier.is_enabled());
    notifier.info(&Context::new(), "dropped", &1).await.unwrap();
    nothing_arrives(&mut events, "driver = noop delivered").await;
    listener.shutdown().await;
}

#[tokio::test]
async fn retry_bounds_a_notification_to_an_unreachable_broker() {
    let file = |retry: i64| {
        format!("[DEFAULT]\ntransport_url = {NOBODY}\n[oslo_messaging_notifications]\nretry = {retry}\n")
    };
    let never = parse_ini(&file(0)).unwrap();
    let notifier = never
        .notifier(never.notification_transport().await.unwrap(), "p")
        .await
        .unwrap();
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        notifier.info(&Context::new(), "e", &1),
    )
    .await
    .expect("retry = 0 gives up");
    assert!(
        matches!(result, Err(MessagingError::ConnectionFailure(_))),
        "{result:?}"
    );
    let once = started.elapsed();

    let forever = parse_ini(&file(-1)).unwrap();
    let notifier = forever
        .notifier(forever.notification_transport().await.unwrap(), "p")
        .await
        .unwrap();
    let still_trying = tokio::time::timeout(
        once + Duration::from_secs(3),
        notifier.info(&Context::new(), "e", &1),
    )
    .await;
    assert!(
        still_trying.is_err(),
        "retry = -1 keeps trying: {still_trying:?}"
    );
}

#[tokio::test]
async fn outbox_overflow_decides_what_a_full_outbox_does() {
    let file = |overflow: &str| {
        format!(
            "[DEFAULT]\ntransport_url = {NOBODY}\n[oslo_messaging_notifications]\n\
             outbox_capacity = 2\noutbox_overflow = {overflow}\n"
        )
    };
    for (overflow, third_fails) in [("error", true), ("drop_oldest", false)] {
        let config = parse_ini(&file(overflow)).unwrap();
        let notifier = config
            .notifier(config.notification_transport().await.unwrap(), "p")
            .await
            .unwrap();
        let mut results = Vec::new();
        for n in 0..3 {
            results.push(notifier.info(&Context::new(), "e", &n).await);
        }
        assert!(
            results[..2].iter().all(Result::is_ok),
            "{overflow}: {results:?}"
        );
        match (third_fails, &results[2]) {
            (true, Err(MessagingError::OutboxFull { capacity: 2 })) => {}
            (false, Ok(())) => assert_eq!(notifier.outbox_stats().unwrap().dropped, 1),
            (_, other) => panic!("outbox_overflow = {overflow}: {other:?}"),
        }
    }
    // `wait`: the third call waits for room (none comes: nobody takes the notifications).
    let config = parse_ini(&file("wait")).unwrap();
    let notifier = config
        .notifier(config.notification_transport().await.unwrap(), "p")
        .await
        .unwrap();
    for n in 0..2 {
        notifier.info(&Context::new(), "e", &n).await.unwrap();
    }
    let third = tokio::time::timeout(
        std::time::Duration::from_millis(200),
        notifier.info(&Context::new(), "e", &2),
    )
    .await;
    assert!(third.is_err(), "outbox_overflow = wait: {third:?}");
    assert_eq!(notifier.outbox_stats().unwrap().pending, 2);
}

#[tokio::test]
async fn signing_mode_warn_processes_unsigned_requests() {
    let url = unique("memory:///warn");
    let config = parse_ini(&format!(
        "[DEFAULT]\ntransport_url = {url}\n\
         [oslo_messaging_signing]\nkeys = k1:0123456789abcdef\nmode = warn\n"
    ))
    .unwrap();
    let rpc = config.rpc_transport().await.unwrap();
    let server = config
        .rpc_server(rpc.clone(), Target::topic("t").server("s"))
        .endpoint(
            Endpoint::new().method("hi", |_c: Context, _: NoArgs| async {
                Ok::<_, RemoteError>(1)
            }),
        )
        .start()
        .await
        .unwrap();
    let unsigned = config.rpc_client(get_rpc_transport(&url).await.unwrap(), Target::topic("t"));
    let answer: Value = unsigned
        .call(&Context::new(), "hi", &NoArgs {})
        .await
        .unwrap();
    assert_eq!(answer, 1);
    assert_eq!(rpc.signature_failures(), 1, "counted, processed anyway");
    server.shutdown().await;
}

#[tokio::test]
async fn misspelled_driver_options_suggest_the_right_one() {
    let err = parse_ini("[oslo_messaging_rabbit]\namqp_durable_queue = true\n").unwrap_err();
    assert!(
        matches!(err, MessagingError::InvalidConfig { line: Some(2), .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("did you mean `amqp_durable_queues`?"),
        "{err}"
    );
    let err = get_rpc_transport(&format!("{NOBODY}?amqp_durable_queue=true"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("did you mean `amqp_durable_queues`?"),
        "{err}"
    );
}

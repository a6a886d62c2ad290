//! Behaviour of the Kafka driver beyond the conformance suite: errors and their bounds, record
//! layout, malformed records, virtual hosts, flow control. Needs `KAFKA_URL` (except where
//! noted); skipped when unset, unless `MESSAGING_REQUIRE_BROKERS=1`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use messaging_conformance::poison::{malformed_notifications, Malformed};
use messaging_conformance::Recorder;
use messaging_core::driver::{NotifyAddress, Retry, SendOptions};
use messaging_core::wire::{self, NotificationFormat, NotificationMessage};
use messaging_core::{
    get_notification_transport, get_rpc_transport, Context, MessagingError, Notification,
    NotificationEndpoint, NotificationListener, NotificationResult, Notifier, Priority, Target,
};
use rdkafka::error::RDKafkaErrorCode;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn message(payload: serde_json::Value) -> NotificationMessage {
    NotificationMessage {
        message_id: wire::new_message_id(),
        publisher_id: "p".into(),
        event_type: "e".into(),
        priority: Priority::Info,
        payload,
        timestamp: wire::timestamp_now(),
        context: serde_json::Map::new(),
        signature: None,
    }
}

fn address(topic: &str) -> NotifyAddress {
    NotifyAddress {
        exchange: "openstack".into(),
        topic: topic.into(),
        priority: Priority::Info,
    }
}

async fn recording_listener(
    url: &str,
    topic: &str,
    pool: &str,
    delay: Duration,
) -> (messaging_core::ServiceHandle, Arc<Recorder<Notification>>) {
    let recorder = Recorder::new();
    let record = recorder.clone();
    let listener = NotificationListener::new(get_notification_transport(url).await.unwrap())
        .target(Target::topic(topic))
        .pool(pool)
        .max_concurrency(2)
        .endpoint(NotificationEndpoint::new().on(Priority::Info, move |n| {
            let record = record.clone();
            async move {
                tokio::time::sleep(delay).await;
                record.push(n);
                NotificationResult::Handled
            }
        }))
        .start()
        .await
        .expect("listener");
    (listener, recorder)
}

/// No broker needed: RPC over Kafka is refused as oslo refuses it.
#[tokio::test]
async fn rpc_transport_is_unsupported() {
    messaging_core::install_driver(Arc::new(driver_kafka::KafkaDriver));
    match get_rpc_transport("kafka://127.0.0.1:9092/").await {
        Err(MessagingError::Unsupported { driver, what }) => {
            assert_eq!((driver.as_str(), what.as_str()), ("kafka", "RPC"));
        }
        Err(other) => panic!("unexpected {other}"),
        Ok(_) => panic!("RPC over kafka must be unsupported"),
    }
}

/// No broker needed: an unreachable broker is a `ConnectionFailure` within the bound the
/// caller gave (attempts of `producer_delivery_timeout` as the retry policy allows, or the
/// send's timeout), and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_broker_is_a_connection_failure_within_the_bound() {
    messaging_core::install_driver(Arc::new(driver_kafka::KafkaDriver));
    let transport = get_notification_transport("kafka://127.0.0.1:1/?producer_delivery_timeout=2")
        .await
        .expect("transport (the producer connects lazily)");

    let started = Instant::now();
    let result = Notifier::new(transport.clone(), "p")
        .retry(Retry::Never)
        .info(&Context::new(), "e", &1)
        .await;
    let elapsed = started.elapsed();
    let Err(MessagingError::ConnectionFailure(reason)) = result else {
        panic!("expected a ConnectionFailure, got {result:?}");
    };
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(8),
        "{elapsed:?}"
    );
    // Says why: librdkafka's connection error, not only "message timed out".
    assert!(reason.contains("Connection refused"), "{reason}");

    // A bounded retry policy: two attempts of 2 s (and a back-off of at most 0.25 s), then
    // an error that says so.
    let started = Instant::now();
    let result = Notifier::new(transport.clone(), "p")
        .retry(Retry::Times(1))
        .info(&Context::new(), "e", &1)
        .await;
    let elapsed = started.elapsed();
    let Err(MessagingError::ConnectionFailure(reason)) = result else {
        panic!("expected a ConnectionFailure, got {result:?}");
    };
    assert!(reason.contains("gave up after 2 attempt(s)"), "{reason}");
    assert!(
        elapsed >= Duration::from_secs(4) && elapsed < Duration::from_secs(10),
        "{elapsed:?}"
    );

    let started = Instant::now();
    let options = SendOptions {
        timeout: Some(Duration::from_millis(1500)),
        retry: Retry::Forever,
        ..SendOptions::default()
    };
    let result = transport
        .driver()
        .notify(
            &address("t"),
            &message(json!(1)),
            NotificationFormat::V2,
            &options,
        )
        .await;
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Err(MessagingError::ConnectionFailure(_))),
        "{result:?}"
    );
    assert!(
        elapsed < Duration::from_secs(4),
        "bounded by the send's timeout: {elapsed:?}"
    );
    println!(
        "unreachable broker: gave up after {elapsed:?}: {}",
        result.unwrap_err()
    );
}

/// `kafka_retry_interval` sets the pause between attempts of a send: two attempts of 0.5 s
/// against a closed port with a 3 s back-off (1.5 to 3 s with jitter) take at least 2.5 s; with
/// the default 0.25 s they would take about 1.2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_interval_option_paces_send_retries() {
    messaging_core::install_driver(Arc::new(driver_kafka::KafkaDriver));
    let transport = get_notification_transport(
        "kafka://127.0.0.1:1/?producer_delivery_timeout=0.5&kafka_retry_interval=3\
         &kafka_retry_interval_max=3",
    )
    .await
    .expect("transport (the producer connects lazily)");
    let started = Instant::now();
    let result = Notifier::new(transport, "p")
        .retry(Retry::Times(1))
        .info(&Context::new(), "e", &1)
        .await;
    let elapsed = started.elapsed();
    assert!(
        matches!(&result, Err(MessagingError::ConnectionFailure(r)) if r.contains("gave up after 2 attempt(s)")),
        "{result:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(2400) && elapsed < Duration::from_secs(8),
        "{elapsed:?}"
    );
    println!("two attempts with a 3 s back-off took {elapsed:?}");
}

/// A record the broker (here: librdkafka's `message.max.bytes`) refuses is a
/// `DeliveryFailure`, at once, and later sends still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_record_is_payload_too_large() {
    let Some(url) = common::kafka_url("oversized_record_is_payload_too_large") else {
        return;
    };
    let transport = get_notification_transport(&url).await.unwrap();
    let notifier = Notifier::new(transport.clone(), "p").topics([common::unique("big")]);
    let started = Instant::now();
    let result = notifier
        .info(&Context::new(), "big", &"x".repeat(2_000_000))
        .await;
    assert!(
        matches!(result, Err(MessagingError::PayloadTooLarge { size, limit }) if size > limit),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "not retried");
    notifier
        .info(&Context::new(), "small", &1)
        .await
        .expect("the next send works");
    transport.close().await;
}

/// A flood of undecodable records (the core's 1,000 malformed notifications, every kind of
/// damage) is logged and skipped, and their offsets committed: the next valid notification is
/// handled, the endpoint sees only it, and the group's committed offsets cover every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_malformed_records_are_skipped_and_committed() {
    const FLOOD: usize = 1_000;
    // Above the core's 4 MiB bodies (plus envelope): the raw producer must not refuse them.
    const MAX_BYTES: usize = 8 << 20;
    let Some(url) = common::kafka_url("a_thousand_malformed_records_are_skipped_and_committed")
    else {
        return;
    };
    let url = common::with_options(&url, common::TEST_OPTIONS);
    let topic = common::unique("malformed");
    let pool = common::unique("pool");
    let (listener, recorder) = recording_listener(&url, &topic, &pool, Duration::ZERO).await;
    let kafka_topic = format!("{topic}.info");
    let flood: Vec<Malformed> = malformed_notifications(FLOOD).collect();
    let values: Vec<Vec<u8>> = flood.iter().map(|m| m.body.clone()).collect();
    let outcomes = common::raw_produce_many(&url, &kafka_topic, &values, MAX_BYTES).await;
    let mut refused = Vec::new();
    for (m, outcome) in flood.iter().zip(&outcomes) {
        if let Err(error) = outcome {
            // Only a body over the broker's size limit may be refused, and only for its size.
            assert_eq!(m.kind, "huge payload", "{error}");
            assert_eq!(
                error.rdkafka_error_code(),
                Some(RDKafkaErrorCode::MessageSizeTooLarge),
                "{error}"
            );
            refused.push(format!("{} bytes: {error}", m.body.len()));
        }
    }
    let kinds: std::collections::BTreeSet<_> = flood.iter().map(|m| m.kind).collect();
    // Skipped explicitly: the broker's own limit (below 4 MiB) cannot be raised by a client.
    let produced = FLOOD - refused.len();
    println!(
        "produced {produced} malformed records of {} kinds; {} refused as too large: {refused:?}",
        kinds.len(),
        refused.len()
    );
    assert!(produced > 0);

    let transport = get_notification_transport(&url).await.unwrap();
    Notifier::new(transport.clone(), "p")
        .topics([&topic])
        .info(&Context::new(), "valid", &1)
        .await
        .unwrap();
    let got = recorder.wait_for(1, WAIT, "the valid notification").await;
    assert_eq!(got[0].event_type, "valid");
    // Every record is committed, the undecodable ones too: wait until the group is past all.
    let expected = i64::try_from(produced + 1).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let (url, pool, kafka_topic) = (url.clone(), pool.clone(), kafka_topic.clone());
        let committed =
            tokio::task::spawn_blocking(move || common::committed_total(&url, &pool, &kafka_topic))
                .await
                .unwrap();
        if committed >= expected {
            assert_eq!(committed, expected, "committed past the records produced");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{committed} of {expected} records committed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    listener.shutdown().await;
    transport.close().await;
    let got = recorder.items();
    assert_eq!(got.len(), 1, "only the valid one reached the endpoint");
    assert_eq!(got[0].event_type, "valid");
}

/// With a virtual host, notifier and listener both use `<topic>.<priority>.<vhost>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_host_is_part_of_both_topics() {
    let Some(url) = common::kafka_url("virtual_host_is_part_of_both_topics") else {
        return;
    };
    let vhost = common::unique("vh");
    let url = format!(
        "{}/{vhost}?{}",
        url.trim_end_matches('/'),
        common::TEST_OPTIONS
    );
    let topic = common::unique("vhost");
    let (listener, recorder) =
        recording_listener(&url, &topic, &common::unique("pool"), Duration::ZERO).await;
    let transport = get_notification_transport(&url).await.unwrap();
    Notifier::new(transport.clone(), "p")
        .topics([&topic])
        .info(&Context::new(), "with-vhost", &1)
        .await
        .unwrap();
    recorder.wait_for(1, WAIT, "notification").await;
    listener.shutdown().await;
    transport.close().await;
    let records = tokio::task::spawn_blocking({
        let topic = format!("{topic}.info.{vhost}");
        move || common::raw_records(&url, &topic, 1, WAIT)
    })
    .await
    .unwrap();
    assert_eq!(records.len(), 1, "the record is in <topic>.info.<vhost>");
}

/// A listener takes no more while `max_poll_records` notifications wait to be handled, and
/// goes on once they are: everything arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_control_holds_back_and_goes_on() {
    let Some(url) = common::kafka_url("flow_control_holds_back_and_goes_on") else {
        return;
    };
    let url = common::with_options(
        &url,
        &format!("{}&max_poll_records=20", common::TEST_OPTIONS),
    );
    let topic = common::unique("flow");
    let (listener, recorder) = recording_listener(
        &url,
        &topic,
        &common::unique("pool"),
        Duration::from_millis(5),
    )
    .await;
    let transport = get_notification_transport(&url).await.unwrap();
    let notifier = Notifier::new(transport.clone(), "p").topics([&topic]);
    let sends = (0..200).map(|i| {
        let notifier = notifier.clone();
        async move { notifier.info(&Context::new(), "flow", &i).await.unwrap() }
    });
    futures_util::future::join_all(sends).await;
    let got = recorder.wait_for(200, WAIT, "every notification").await;
    listener.shutdown().await;
    transport.close().await;
    let mut ids: Vec<i64> = got.iter().map(|n| n.payload.as_i64().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200);
}

/// Sends never wait for the linger when no more are expected. With a 500 ms linger: five sends
/// one after the other, and 16 senders sending ten each (every round gathered while the last
/// is in flight, and handed over as soon as its senders sent again), take far less than one
/// linger per round: with librdkafka's linger they took at least 500 ms per round, 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_skip_the_linger_when_no_more_are_expected() {
    let Some(url) = common::kafka_url("sends_skip_the_linger") else {
        return;
    };
    const LINGER: Duration = Duration::from_millis(500);
    let url = common::with_options(&url, "producer_batch_timeout=0.5");
    let transport = get_notification_transport(&url).await.unwrap();
    let notifier = Notifier::new(transport.clone(), "p").topics([common::unique("pipe")]);
    notifier.info(&Context::new(), "warmup", &0).await.unwrap();
    let started = Instant::now();
    for i in 0..5 {
        notifier.info(&Context::new(), "seq", &i).await.unwrap();
    }
    let sequential = started.elapsed();
    let started = Instant::now();
    let senders = (0..16).map(|sender| {
        let notifier = notifier.clone();
        async move {
            for i in 0..10 {
                notifier
                    .info(&Context::new(), "round", &(sender, i))
                    .await
                    .unwrap();
            }
        }
    });
    futures_util::future::join_all(senders).await;
    let rounds = started.elapsed();
    transport.close().await;
    println!("5 sends one at a time: {sequential:?}; 16 senders × 10 sends: {rounds:?}");
    assert!(sequential < LINGER, "a lone send waited for the linger");
    // A burst's senders do not finish together: those done first are waited for in vain, up to
    // a linger, at its start and end (measured: two or three such waits).
    assert!(rounds < LINGER * 6, "10 rounds took {rounds:?}");
}

/// A gathered batch waits for the senders released by the last delivery reports, but never
/// longer than the linger: after ten concurrent sends, one more send (the nine others sending
/// nothing more) leaves when the linger is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_leaves_after_the_linger_when_released_senders_stay_away() {
    let Some(url) = common::kafka_url("a_batch_leaves_after_the_linger") else {
        return;
    };
    const LINGER: Duration = Duration::from_millis(300);
    let url = common::with_options(&url, "producer_batch_timeout=0.3");
    let transport = get_notification_transport(&url).await.unwrap();
    let notifier = Notifier::new(transport.clone(), "p").topics([common::unique("stay")]);
    notifier.info(&Context::new(), "warmup", &0).await.unwrap();
    let sends = (0..10).map(|i| {
        let notifier = notifier.clone();
        async move { notifier.info(&Context::new(), "par", &i).await.unwrap() }
    });
    futures_util::future::join_all(sends).await;
    let started = Instant::now();
    notifier.info(&Context::new(), "after", &0).await.unwrap();
    let after = started.elapsed();
    transport.close().await;
    println!("a send after ten concurrent ones: {after:?}");
    assert!(
        after >= LINGER / 2,
        "released senders were not waited for: {after:?}"
    );
    assert!(
        after < LINGER * 3,
        "the batch outlived its linger: {after:?}"
    );
}

/// The thread serving a producer's delivery reports sleeps while nothing is in flight (so an
/// idle process uses no CPU) and checks for events once a second: a send must wake it, not
/// wait for that check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_after_an_idle_spell_is_reported_at_once() {
    let Some(url) = common::kafka_url("a_send_after_an_idle_spell_is_reported_at_once") else {
        return;
    };
    const IDLE_CHECK: Duration = Duration::from_secs(1);
    let transport = get_notification_transport(&url).await.unwrap();
    let notifier = Notifier::new(transport.clone(), "p").topics([common::unique("idle")]);
    notifier.info(&Context::new(), "warmup", &0).await.unwrap();
    let mut slowest = Duration::ZERO;
    for i in 0..3 {
        // Long enough for the serving thread to be asleep again.
        tokio::time::sleep(IDLE_CHECK + Duration::from_millis(300)).await;
        let started = Instant::now();
        notifier
            .info(&Context::new(), "after idle", &i)
            .await
            .unwrap();
        slowest = slowest.max(started.elapsed());
    }
    transport.close().await;
    println!("slowest send after an idle spell: {slowest:?}");
    assert!(
        slowest < IDLE_CHECK / 2,
        "a send after an idle spell took {slowest:?}: it waited for the idle check"
    );
}

//! Helpers shared by the integration tests: the broker URL (and the skip rule), unique names.
#![allow(dead_code)]

use std::sync::Arc;

/// Options every test URL gets: short consumer-group timeouts (the broker's group joins take
/// about 3 s; failure detection should not take 45 s).
pub const TEST_OPTIONS: &str = "session_timeout_ms=6000&heartbeat_interval_ms=1000";

/// The broker URL from `KAFKA_URL`, after installing the driver. `None` (with a visible
/// `skipped:` line) when it is unset, unless `MESSAGING_REQUIRE_BROKERS=1`: then the test fails.
pub fn kafka_url(test: &str) -> Option<String> {
    match std::env::var("KAFKA_URL") {
        Ok(url) if !url.is_empty() => {
            init_logging();
            messaging_core::install_driver(Arc::new(driver_kafka::KafkaDriver));
            Some(url)
        }
        _ => {
            if std::env::var("MESSAGING_REQUIRE_BROKERS").as_deref() == Ok("1") {
                panic!("{test}: KAFKA_URL is not set but MESSAGING_REQUIRE_BROKERS=1");
            }
            println!("skipped: {test}: KAFKA_URL not set");
            None
        }
    }
}

/// In a test's child process (this test binary run again with `var` set by its parent): the
/// `<url> <topic> <pool>` the parent gave, after installing the driver, and a runtime to run
/// the child on. `None` in the parent.
pub fn child(var: &str) -> Option<([String; 3], tokio::runtime::Runtime)> {
    let spec = std::env::var(var).ok()?;
    let parts: Vec<String> = spec.split(' ').map(str::to_owned).collect();
    let Ok(parts) = <[String; 3]>::try_from(parts) else {
        panic!("{var}={spec}: expected `<url> <topic> <pool>`");
    };
    init_logging();
    messaging_core::install_driver(Arc::new(driver_kafka::KafkaDriver));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    Some((parts, runtime))
}

/// `url` with query options added.
pub fn with_options(url: &str, options: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{options}")
}

/// A name no other test or run uses: `<prefix>_<8 hex digits>`.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", &messaging_core::wire::new_id()[..8])
}

/// Log to stderr when `RUST_LOG` is set (e.g. `RUST_LOG=driver_kafka=debug,librdkafka=info`).
pub fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// Every record of `topic` from the beginning, read behind the driver's back (no consumer
/// group), until `count` arrived or `within` passed.
pub fn raw_records(
    url: &str,
    topic: &str,
    count: usize,
    within: std::time::Duration,
) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap(url))
        .set("group.id", unique("raw"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("raw consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), std::time::Duration::from_secs(10))
        .expect("metadata");
    let partitions = metadata.topics()[0].partitions().len() as i32;
    assert!(partitions > 0, "topic {topic} has no partitions");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = std::time::Instant::now() + within;
    let mut records = Vec::new();
    while records.len() < count && std::time::Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(std::time::Duration::from_millis(200)) {
            records.push(message.detach());
        }
    }
    records
}

/// Produce a raw record (no key, no headers) behind the driver's back.
pub fn raw_produce(url: &str, topic: &str, value: &[u8]) {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

    let producer: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap(url))
        .create()
        .expect("raw producer");
    producer
        .send(BaseRecord::<(), [u8]>::to(topic).payload(value))
        .map_err(|(e, _)| e)
        .expect("raw produce");
    producer
        .flush(std::time::Duration::from_secs(10))
        .expect("raw flush");
}

/// `host:port,…` of a `kafka://` URL.
pub fn bootstrap(url: &str) -> String {
    let url = messaging_core::TransportUrl::parse(url).expect("KAFKA_URL");
    url.hosts
        .iter()
        .map(|h| format!("{}:{}", h.hostname, h.port_or(driver_kafka::DEFAULT_PORT)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Produce every one of `values` as a raw record (no key, no headers) through ONE producer
/// whose `message.max.bytes` is `max_bytes`; each record's outcome, in order. Enqueued all at
/// once, so a flood takes seconds, not one producer round trip per record.
pub async fn raw_produce_many(
    url: &str,
    topic: &str,
    values: &[Vec<u8>],
    max_bytes: usize,
) -> Vec<Result<(), rdkafka::error::KafkaError>> {
    use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap(url))
        .set("message.max.bytes", max_bytes.to_string())
        .create()
        .expect("raw producer");
    let mut pending = Vec::with_capacity(values.len());
    for value in values {
        // The payload is copied on enqueue; the future only reports the outcome.
        pending.push(
            producer
                .send_result(FutureRecord::<(), [u8]>::to(topic).payload(value))
                .map_err(|(e, _)| e),
        );
    }
    let mut outcomes = Vec::with_capacity(pending.len());
    for enqueued in pending {
        outcomes.push(match enqueued {
            Err(e) => Err(e),
            Ok(delivery) => match delivery.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((e, _))) => Err(e),
                Err(_) => Err(rdkafka::error::KafkaError::Canceled),
            },
        });
    }
    producer
        .flush(std::time::Duration::from_secs(30))
        .expect("raw flush");
    outcomes
}

/// The sum over every partition of `topic` of `group`'s committed offset: how many records
/// the group is past (unset offsets count 0).
pub fn committed_total(url: &str, group: &str, topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap(url))
        .set("group.id", group)
        .create()
        .expect("offsets consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), std::time::Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for partition in metadata.topics()[0].partitions() {
        tpl.add_partition(topic, partition.id());
    }
    consumer
        .committed_offsets(tpl, std::time::Duration::from_secs(10))
        .expect("committed offsets")
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(n) => n,
            _ => 0,
        })
        .sum()
}

//! The notification workload of `omsg bench notify` written directly on rdkafka, without this
//! library: the baseline that shows the Kafka driver's own overhead (`bench/compare.py` runs
//! both on the same broker).
//!
//! ```text
//! raw_rdkafka_bench --bootstrap 127.0.0.1:9092 --role server --topic T --count 10000
//! raw_rdkafka_bench --bootstrap 127.0.0.1:9092 --role client --topic T --count 10000 \
//!     --clients 16 --window 1 --size 100
//! ```
//!
//! Same guarantee as the driver's notifier: `acks=all`, and a record counts as sent once its
//! delivery report arrived. Each of `--clients` senders keeps up to `--window` records in
//! flight (1: it waits for each report, as a notifier's caller does; more: as the outbox
//! does). Everything else is librdkafka's defaults (linger 5 ms) unless `--set key=value`
//! (repeatable) changes it, for the producer and the consumer. The server is one member of a
//! fresh consumer group reading the fresh topic from its start, with librdkafka's automatic
//! commits. `--envelope oslo` sends each body as the driver does, a notification inside
//! oslo's 2.0 envelope (see `bench/raw_oslo.rs`); the default, `bare`, sends the body alone.
//! Output: the JSON lines of `omsg bench --role … --json`.

#[path = "../../bench/raw_oslo.rs"]
#[allow(dead_code)] // the RPC messages are raw lapin's
mod raw_oslo;
#[path = "../../bench/raw_support.rs"]
mod raw_support;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use raw_oslo::{request_body, sent_ns, Envelope, Request};
use raw_support::{parse_flags, percentile_ms, unix_ns, usage};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::json;

struct Args {
    bootstrap: String,
    role: String,
    topic: String,
    count: u64,
    clients: u64,
    window: usize,
    size: usize,
    envelope: Envelope,
    /// librdkafka settings.
    settings: Vec<(String, String)>,
}

impl Args {
    /// A client config for the brokers: `defaults`, then the `--set` settings.
    fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.settings {
            config.set(key, value);
        }
        config
    }
}

fn parse_args() -> Args {
    let mut args = Args {
        bootstrap: "127.0.0.1:9092".into(),
        role: "server".into(),
        topic: "raw_bench".into(),
        count: 10_000,
        clients: 1,
        window: 1,
        size: 100,
        envelope: Envelope::Bare,
        settings: Vec::new(),
    };
    parse_flags(|flag, value| match flag {
        "--bootstrap" => args.bootstrap = value,
        "--role" => args.role = value,
        "--topic" => args.topic = value,
        "--count" => args.count = value.parse().expect("--count N"),
        "--clients" => args.clients = value.parse().expect("--clients N"),
        "--window" => args.window = value.parse().expect("--window N"),
        "--size" => args.size = value.parse().expect("--size BYTES"),
        "--envelope" => args.envelope = Envelope::parse(&value),
        "--set" => {
            let (key, value) = value.split_once('=').expect("--set key=value");
            args.settings.push((key.into(), value.into()));
        }
        other => panic!("unknown flag {other}"),
    });
    args
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    match args.role.as_str() {
        "server" => tokio::task::block_in_place(|| server(&args)),
        "client" => client(&args).await,
        other => panic!("unknown role {other}"),
    }
}

/// Wait until `topic` exists with partitions (a metadata request lets the broker create it).
fn ensure_topic(consumer: &BaseConsumer, topic: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5));
        let ready = metadata.is_ok_and(|m| {
            m.topics()
                .iter()
                .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        });
        if ready {
            return;
        }
        assert!(Instant::now() < deadline, "topic {topic} not available");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Send to receipt, from the `sent_ns` the record carries.
fn latency(envelope: Envelope, payload: Option<&[u8]>) -> Duration {
    let sent = sent_ns(envelope, payload.unwrap_or_default());
    Duration::from_nanos(unix_ns().saturating_sub(sent))
}

fn server(args: &Args) {
    let group = format!("{}_group", args.topic);
    // A fresh topic: from its start is exactly what the client sends.
    let consumer: BaseConsumer = args
        .client_config(&[
            ("group.id", &group),
            ("auto.offset.reset", "earliest"),
            ("allow.auto.create.topics", "true"),
        ])
        .create()
        .expect("consumer");
    ensure_topic(&consumer, &args.topic);
    consumer.subscribe(&[&args.topic]).expect("subscribe");
    let mut latencies = Vec::with_capacity(args.count as usize);
    // Ready once the group assigned the partitions (records polled meanwhile count too).
    while consumer.assignment().map_or(0, |a| a.count()) == 0 {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            latencies.push(latency(args.envelope, message.payload()));
        }
    }
    println!("{}", json!({"event": "ready", "topic": args.topic}));
    let (_, cpu_before) = usage();
    let started = Instant::now();
    let mut last_receipt = Instant::now();
    while (latencies.len() as u64) < args.count && last_receipt.elapsed() < Duration::from_secs(60)
    {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            latencies.push(latency(args.envelope, message.payload()));
            last_receipt = Instant::now();
        }
    }
    let (rss, cpu) = usage();
    latencies.sort_unstable();
    println!(
        "{}",
        json!({
            "role": "server", "received": latencies.len(), "seconds": started.elapsed().as_secs_f64(),
            "last_receipt_unix_ns": unix_ns(),
            "p50_ms": percentile_ms(&latencies, 50.0), "p99_ms": percentile_ms(&latencies, 99.0),
            "max_ms": percentile_ms(&latencies, 100.0),
            "cpu_ms_per_msg": (cpu - cpu_before) * 1e3 / latencies.len().max(1) as f64,
            "peak_rss_mib": rss,
        })
    );
}

/// Wait for a delivery report; a failed delivery ends the benchmark.
async fn delivered(report: DeliveryFuture) {
    match report.await {
        Ok(Ok(_)) => {}
        Ok(Err((error, _))) => panic!("delivery failed: {error}"),
        Err(_) => panic!("the producer went away"),
    }
}

/// One sender: `share` records, at most `window` of them in flight.
async fn send_share(
    producer: FutureProducer,
    topic: String,
    share: u64,
    window: usize,
    size: usize,
    envelope: Envelope,
) {
    let mut in_flight = VecDeque::with_capacity(window);
    for _ in 0..share {
        let body = request_body(
            envelope,
            Request::Notification { unique_id: false },
            json!({"value": "x".repeat(size), "sent_ns": unix_ns()}),
        );
        let report = producer
            .send_result(FutureRecord::<(), [u8]>::to(&topic).payload(&body))
            .map_err(|(error, _)| error)
            .expect("produce");
        in_flight.push_back(report);
        if in_flight.len() >= window {
            delivered(in_flight.pop_front().expect("one in flight")).await;
        }
    }
    for report in in_flight {
        delivered(report).await;
    }
}

async fn client(args: &Args) {
    let producer: FutureProducer = args
        .client_config(&[("acks", "all")])
        .create()
        .expect("producer");
    let (_, cpu_before) = usage();
    let (started, start_unix_ns) = (Instant::now(), unix_ns());
    let clients = args.clients.max(1);
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let share = args.count / clients + u64::from(i < args.count % clients);
            tokio::spawn(send_share(
                producer.clone(),
                args.topic.clone(),
                share,
                args.window.max(1),
                args.size,
                args.envelope,
            ))
        })
        .collect();
    for task in tasks {
        task.await.expect("sender task");
    }
    let seconds = started.elapsed().as_secs_f64();
    let (rss, cpu) = usage();
    println!(
        "{}",
        json!({
            "mode": "notify", "role": "client", "clients": clients, "window": args.window,
            "size": args.size, "envelope": format!("{:?}", args.envelope),
            "count": args.count, "seconds": seconds,
            "msgs_per_s": args.count as f64 / seconds, "start_unix_ns": start_unix_ns,
            "cpu_ms_per_msg": (cpu - cpu_before) * 1e3 / args.count.max(1) as f64,
            "peak_rss_mib": rss,
        })
    );
}

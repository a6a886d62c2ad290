//! The benchmark workloads of `omsg bench` written directly on lapin, without this library: the
//! baseline that shows the library's own overhead (`bench/compare.py` runs both).
//!
//! ```text
//! raw_lapin_bench --url amqp://guest:guest@127.0.0.1:5672/%2f --role server --mode rpc-call --topic T
//! raw_lapin_bench --url … --role client --mode rpc-call --topic T --count 10000 --clients 16 --size 100
//! ```
//!
//! Same semantics as the library's rabbit driver: every publish waits for its publisher
//! confirm (many in flight with several clients), consumers acknowledge each message, calls
//! are correlated through one reply queue per client process. `--mode notify` is a confirmed
//! publish as `rpc-cast` is; with `--envelope oslo` each body goes as the driver sends it, a
//! notification, cast, call or reply inside oslo's 2.0 envelope (see `bench/raw_oslo.rs`),
//! sent as Python oslo.messaging sends it (oslo-wire.md §1): requests and notifications
//! through the `openstack` topic exchange, replies `mandatory` through the default exchange,
//! oslo's properties (a call's `expiration` among them), calls and replies correlated by the
//! `_reply_q` and `_msg_id` inside them. The default, `bare`, sends the body alone through
//! the default exchange, correlated by `reply_to` and `correlation_id`. Output: the JSON lines
//! of `omsg bench --role …`.

#[path = "../../bench/raw_oslo.rs"]
mod raw_oslo;
#[path = "../../bench/raw_support.rs"]
mod raw_support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use raw_oslo::{
    bare_reply, oslo_call_reply, oslo_reply_msg_id, request_body, sent_ns, unique_hex, Envelope,
    Request,
};
use raw_support::{parse_flags, percentile_ms, unix_ns, usage};
use serde_json::json;
use tokio::sync::oneshot;

struct Args {
    url: String,
    role: String,
    mode: String,
    topic: String,
    count: u64,
    clients: u64,
    size: usize,
    envelope: Envelope,
}

fn parse_args() -> Args {
    let mut args = Args {
        url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
        role: "server".into(),
        mode: "rpc-call".into(),
        topic: "raw_bench".into(),
        count: 10_000,
        clients: 1,
        size: 100,
        envelope: Envelope::Bare,
    };
    parse_flags(|flag, value| match flag {
        "--url" => args.url = value,
        "--role" => args.role = value,
        "--mode" => args.mode = value,
        "--topic" => args.topic = value,
        "--count" => args.count = value.parse().expect("--count N"),
        "--clients" => args.clients = value.parse().expect("--clients N"),
        "--size" => args.size = value.parse().expect("--size BYTES"),
        "--envelope" => args.envelope = Envelope::parse(&value),
        other => panic!("unknown flag {other}"),
    });
    args
}

/// A message's properties: content type and persistence (bare), or oslo's whole set
/// (oslo-wire.md §1.4), with `expiration` on call requests.
fn properties(envelope: Envelope, expiration: Option<&str>) -> BasicProperties {
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2);
    match (envelope, expiration) {
        (Envelope::Bare, _) => properties,
        (Envelope::Oslo, expiration) => {
            let properties = properties
                .with_content_encoding("utf-8".into())
                .with_priority(0)
                .with_headers(FieldTable::default());
            match expiration {
                Some(expiration) => properties.with_expiration(expiration.into()),
                None => properties,
            }
        }
    }
}

/// The `expiration` of an oslo call request: its timeout, oslo's default 60 s (as the
/// library's client sends it).
const CALL_EXPIRATION: &str = "60000";

/// oslo's control exchange: requests and notifications go through it (oslo-wire.md §1.1).
const OSLO_EXCHANGE: &str = "openstack";

/// The exchange a client publishes requests and notifications to: the topic exchange that
/// any peer of oslo.messaging routes through, or the default exchange straight to the queue.
fn request_exchange(envelope: Envelope) -> &'static str {
    match envelope {
        Envelope::Oslo => OSLO_EXCHANGE,
        Envelope::Bare => "",
    }
}

/// Bind `queue` to oslo's topic exchange with its own name as the key, as an oslo server
/// binds `<topic>` (the exchange declared as oslo declares it: topic, not durable).
async fn bind_to_oslo_exchange(channel: &Channel, queue: &str) {
    channel
        .exchange_declare(
            OSLO_EXCHANGE.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("declare the exchange");
    channel
        .queue_bind(
            queue.into(),
            OSLO_EXCHANGE.into(),
            queue.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
}

async fn channel(url: &str) -> (Connection, Channel) {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    (connection, channel)
}

/// Publish and wait for the broker's confirm (oslo publishes replies `mandatory`).
async fn publish(
    channel: &Channel,
    exchange: &str,
    key: &str,
    body: &[u8],
    mandatory: bool,
    properties: BasicProperties,
) {
    channel
        .basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions {
                mandatory,
                ..BasicPublishOptions::default()
            },
            body,
            properties,
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    match args.role.as_str() {
        "server" => server(&args).await,
        "client" => client(&args).await,
        other => panic!("unknown role {other}"),
    }
}

async fn server(args: &Args) {
    let (_connection, channel) = channel(&args.url).await;
    channel
        .queue_declare(
            args.topic.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("declare");
    if args.envelope == Envelope::Oslo {
        bind_to_oslo_exchange(&channel, &args.topic).await;
    }
    let mut consumer = channel
        .basic_consume(
            args.topic.as_str().into(),
            "1".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    println!("{}", json!({"event": "ready", "topic": args.topic}));
    let (_, cpu_before) = usage();
    let started = Instant::now();
    let served = Arc::new(AtomicU64::new(0));
    let mut latencies = Vec::new();
    let expected = if args.mode == "rpc-call" {
        u64::MAX
    } else {
        args.count
    };
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    while (latencies.len() as u64) < expected {
        let delivery = tokio::select! {
            _ = &mut stop => break,
            delivery = consumer.next() => match delivery { Some(Ok(d)) => d, _ => break },
        };
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
        if args.mode == "rpc-call" {
            let Some((reply_to, body, properties)) = call_reply(args.envelope, &delivery) else {
                continue;
            };
            let (channel, served) = (channel.clone(), served.clone());
            let mandatory = args.envelope == Envelope::Oslo;
            // Replies pipeline their confirms.
            tokio::spawn(async move {
                publish(&channel, "", &reply_to, &body, mandatory, properties).await;
                served.fetch_add(1, Ordering::Relaxed);
            });
        } else {
            let sent = sent_ns(args.envelope, &delivery.data);
            latencies.push(Duration::from_nanos(unix_ns().saturating_sub(sent)));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let (rss, cpu) = usage();
    latencies.sort_unstable();
    let count = if args.mode == "rpc-call" {
        served.load(Ordering::Relaxed)
    } else {
        latencies.len() as u64
    };
    println!(
        "{}",
        json!({
            "role": "server", "received": latencies.len(), "served": served.load(Ordering::Relaxed),
            "seconds": seconds, "last_receipt_unix_ns": unix_ns(),
            "p50_ms": percentile_ms(&latencies, 50.0), "p99_ms": percentile_ms(&latencies, 99.0),
            "max_ms": percentile_ms(&latencies, 100.0),
            "cpu_ms_per_msg": (cpu - cpu_before) * 1e3 / count.max(1) as f64, "peak_rss_mib": rss,
        })
    );
}

/// Where the reply to a call goes, what it says and its properties: correlated through the
/// request's properties (bare), or, as oslo does, through the `_reply_q` and `_msg_id` in it.
fn call_reply(
    envelope: Envelope,
    delivery: &Delivery,
) -> Option<(String, Vec<u8>, BasicProperties)> {
    match envelope {
        Envelope::Bare => {
            let reply_to = delivery.properties.reply_to().as_ref()?.as_str().to_owned();
            let id = delivery.properties.correlation_id().clone()?;
            let properties = properties(envelope, None).with_correlation_id(id);
            Some((reply_to, bare_reply(&delivery.data), properties))
        }
        Envelope::Oslo => {
            let (reply_to, body) = oslo_call_reply(&delivery.data);
            Some((reply_to, body, properties(envelope, None)))
        }
    }
}

type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>>;

async fn client(args: &Args) {
    let (_connection, channel) = channel(&args.url).await;
    let waiting: Waiting = Arc::default();
    let mut reply_queue = String::new();
    if args.mode == "rpc-call" {
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("reply queue");
        reply_queue = queue.name().as_str().to_owned();
        let mut replies = channel
            .basic_consume(
                queue.name().clone(),
                "replies".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume replies");
        let (waiting, envelope) = (waiting.clone(), args.envelope);
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = replies.next().await {
                delivery.ack(BasicAckOptions::default()).await.ok();
                let id = match envelope {
                    Envelope::Bare => delivery
                        .properties
                        .correlation_id()
                        .as_ref()
                        .map(|s| s.as_str().to_owned()),
                    Envelope::Oslo => oslo_reply_msg_id(&delivery.data),
                };
                if let Some(tx) = id.and_then(|id| waiting.lock().expect("lock").remove(&id)) {
                    tx.send(delivery.data).ok();
                }
            }
        });
    }
    let (_, cpu_before) = usage();
    let (started, start_unix_ns) = (Instant::now(), unix_ns());
    let clients = args.clients.max(1);
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let share = args.count / clients + u64::from(i < args.count % clients);
            let (channel, waiting, reply_queue) =
                (channel.clone(), waiting.clone(), reply_queue.clone());
            let (mode, topic, size) = (args.mode.clone(), args.topic.clone(), args.size);
            let envelope = args.envelope;
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for n in 0..share {
                    let body = json!({"value": "x".repeat(size), "sent_ns": unix_ns()});
                    if mode == "rpc-call" {
                        let msg_id = unique_hex();
                        let call = Request::Call {
                            msg_id: &msg_id,
                            reply_q: &reply_queue,
                        };
                        let body = request_body(envelope, call, body);
                        let (id, props) = match envelope {
                            Envelope::Bare => {
                                let id = format!("{i}-{n}");
                                let props = properties(envelope, None)
                                    .with_reply_to(reply_queue.as_str().into())
                                    .with_correlation_id(id.as_str().into());
                                (id, props)
                            }
                            Envelope::Oslo => (msg_id, properties(envelope, Some(CALL_EXPIRATION))),
                        };
                        let (tx, rx) = oneshot::channel();
                        waiting.lock().expect("lock").insert(id, tx);
                        let sent = Instant::now();
                        let exchange = request_exchange(envelope);
                        publish(&channel, exchange, &topic, &body, false, props).await;
                        rx.await.expect("reply");
                        latencies.push(sent.elapsed());
                    } else {
                        let request = if mode == "notify" {
                            Request::Notification { unique_id: true }
                        } else {
                            Request::Cast
                        };
                        let body = request_body(envelope, request, body);
                        let (exchange, props) =
                            (request_exchange(envelope), properties(envelope, None));
                        publish(&channel, exchange, &topic, &body, false, props).await;
                    }
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("client task"));
    }
    let seconds = started.elapsed().as_secs_f64();
    let (rss, cpu) = usage();
    latencies.sort_unstable();
    println!(
        "{}",
        json!({
            "mode": args.mode, "role": "client", "clients": clients, "size": args.size,
            "envelope": format!("{:?}", args.envelope),
            "count": args.count, "seconds": seconds, "msgs_per_s": args.count as f64 / seconds,
            "start_unix_ns": start_unix_ns,
            "p50_ms": percentile_ms(&latencies, 50.0), "p99_ms": percentile_ms(&latencies, 99.0),
            "max_ms": percentile_ms(&latencies, 100.0),
            "cpu_ms_per_msg": (cpu - cpu_before) * 1e3 / args.count.max(1) as f64, "peak_rss_mib": rss,
        })
    );
}

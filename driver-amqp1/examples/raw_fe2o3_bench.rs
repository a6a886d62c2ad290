//! The cast and notification workloads of `omsg bench` written directly on fe2o3-amqp, without
//! this library: the baseline that shows the AMQP 1.0 driver's own overhead (`bench/compare.py`
//! runs both on the same broker).
//!
//! ```text
//! raw_fe2o3_bench --host 127.0.0.1:5672 --role server --topic T --count 10000
//! raw_fe2o3_bench --host 127.0.0.1:5672 --role client --topic T --count 10000 --clients 16 --size 100
//! ```
//!
//! Same semantics as the driver's casts and notifications on RabbitMQ's AMQP 1.0 endpoint: one
//! connection per process (TCP_NODELAY, SASL PLAIN), a session per link, one sender link to
//! `/queue/<topic>` shared by the `--clients` senders, each send unsettled and awaited until
//! the broker's `accepted` (many in flight with several senders); the server's receiver link
//! grants 100 credits at a time (as the driver's `notify_server_credit`) and accepts each
//! message. Bodies are bare JSON in an amqp-value string (~130 bytes against ~400 for oslo's
//! format). Output: the JSON lines of `omsg bench --role … --json`.

#[path = "../../bench/raw_support.rs"]
mod raw_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fe2o3_amqp::link::receiver::CreditMode;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::messaging::Outcome;
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use raw_support::{parse_flags, percentile_ms, unix_ns, usage};

/// The driver's default `notify_server_credit`.
const CREDIT: u32 = 100;

struct Args {
    host: String,
    user: String,
    password: String,
    role: String,
    topic: String,
    count: u64,
    clients: u64,
    size: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        host: "127.0.0.1:5672".into(),
        user: "guest".into(),
        password: "guest".into(),
        role: "server".into(),
        topic: "raw_bench".into(),
        count: 10_000,
        clients: 1,
        size: 100,
    };
    parse_flags(|flag, value| match flag {
        "--host" => args.host = value,
        "--user" => args.user = value,
        "--password" => args.password = value,
        "--role" => args.role = value,
        // Casts and notifications are the same workload here: a confirmed send to a queue.
        "--mode" => assert!(
            value == "rpc-cast" || value == "notify",
            "--mode rpc-cast or notify"
        ),
        "--topic" => args.topic = value,
        "--count" => args.count = value.parse().expect("--count N"),
        "--clients" => args.clients = value.parse().expect("--clients N"),
        "--size" => args.size = value.parse().expect("--size BYTES"),
        other => panic!("unknown flag {other}"),
    });
    args
}

/// A connection and a session on it.
async fn session(
    args: &Args,
) -> (
    fe2o3_amqp::connection::ConnectionHandle<()>,
    SessionHandle<()>,
) {
    let tcp = TcpStream::connect(&args.host).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let mut connection = Connection::builder()
        .container_id(format!("raw-fe2o3-bench-{}", std::process::id()))
        .hostname("localhost")
        .sasl_profile(SaslProfile::Plain {
            username: args.user.clone(),
            password: args.password.clone(),
        })
        .open_with_stream(tcp)
        .await
        .expect("open");
    let session = Session::begin(&mut connection).await.expect("begin");
    (connection, session)
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
    let (_connection, mut session) = session(args).await;
    let mut receiver = Receiver::builder()
        .name("raw-bench-receiver")
        .source(format!("/queue/{}", args.topic))
        .credit_mode(CreditMode::Manual)
        .auto_accept(false)
        .attach(&mut session)
        .await
        .expect("attach a receiver");
    receiver.set_credit(CREDIT).await.expect("credit");
    println!("{}", json!({"event": "ready", "topic": args.topic}));
    let (_, cpu_before) = usage();
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(args.count as usize);
    while (latencies.len() as u64) < args.count {
        let delivery = receiver.recv::<String>().await.expect("receive");
        if receiver.credit() == 0 {
            receiver.set_credit(CREDIT).await.expect("credit");
        }
        receiver.accept(&delivery).await.expect("accept");
        let body: Value = serde_json::from_str(delivery.body()).expect("JSON");
        let sent = body["sent_ns"].as_u64().unwrap_or(0);
        latencies.push(Duration::from_nanos(unix_ns().saturating_sub(sent)));
    }
    let seconds = started.elapsed().as_secs_f64();
    let (rss, cpu) = usage();
    latencies.sort_unstable();
    println!(
        "{}",
        json!({
            "role": "server", "received": latencies.len(), "seconds": seconds,
            "last_receipt_unix_ns": unix_ns(),
            "p50_ms": percentile_ms(&latencies, 50.0), "p99_ms": percentile_ms(&latencies, 99.0),
            "max_ms": percentile_ms(&latencies, 100.0),
            "cpu_ms_per_msg": (cpu - cpu_before) * 1e3 / latencies.len().max(1) as f64,
            "peak_rss_mib": rss,
        })
    );
}

async fn client(args: &Args) {
    let (_connection, mut session) = session(args).await;
    let sender = Sender::attach(
        &mut session,
        "raw-bench-sender",
        format!("/queue/{}", args.topic),
    )
    .await
    .expect("attach a sender");
    let sender = Arc::new(Mutex::new(sender));
    let (_, cpu_before) = usage();
    let (started, start_unix_ns) = (Instant::now(), unix_ns());
    let clients = args.clients.max(1);
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let share = args.count / clients + u64::from(i < args.count % clients);
            let (sender, size) = (sender.clone(), args.size);
            tokio::spawn(async move {
                for _ in 0..share {
                    let body = json!({"value": "x".repeat(size), "sent_ns": unix_ns()}).to_string();
                    // The link is held while the transfer is queued, not while its outcome comes.
                    let outcome = sender
                        .lock()
                        .await
                        .send_batchable(body)
                        .await
                        .expect("send");
                    match outcome.await.expect("outcome") {
                        Outcome::Accepted(_) => {}
                        other => panic!("not accepted: {other:?}"),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client task");
    }
    let seconds = started.elapsed().as_secs_f64();
    let (rss, cpu) = usage();
    println!(
        "{}",
        json!({
            "mode": "rpc-cast", "role": "client", "clients": clients, "size": args.size,
            "count": args.count, "seconds": seconds, "msgs_per_s": args.count as f64 / seconds,
            "start_unix_ns": start_unix_ns,
            "cpu_ms_per_msg": (cpu - cpu_before) * 1e3 / args.count.max(1) as f64, "peak_rss_mib": rss,
        })
    );
}

//! `omsg bench`: an ombt-style load generator and reporter.
//!
//! Servers, listeners and clients run as tasks of this process, so end-to-end latency of a
//! cast or notification is measured from send to receipt on one clock.

use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use messaging::{
    Context, Endpoint, NotificationEndpoint, NotificationListener, NotificationResult, Notifier,
    RemoteError, RpcClient, RpcServer, ServiceHandle, Target,
};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use crate::stats::{cpu_time, peak_rss_mib, Latencies};
use crate::{print_json, Endpoints, Failure, Outcome};

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Calls, each waiting for its reply.
    RpcCall,
    /// Casts to the topic, counted when a server received them.
    RpcCast,
    /// Fanout casts, counted once per server that received them.
    RpcFanout,
    /// Notifications, counted when the listener received them.
    Notify,
}

/// `omsg bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// rpc-call, rpc-cast, rpc-fanout or notify.
    #[arg(value_enum)]
    mode: Mode,
    /// Messages to send in all.
    #[arg(long, default_value_t = 10_000)]
    count: u64,
    /// Concurrent senders.
    #[arg(long, default_value_t = 1)]
    clients: u64,
    /// Servers (RPC modes).
    #[arg(long, default_value_t = 1)]
    servers: u64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Print one JSON object instead of a report.
    #[arg(long)]
    json: bool,
}

/// Marks warm-up messages, which are not counted.
const WARM_UP: u64 = u64::MAX;

/// Everything sent carries its send time, in nanoseconds since the bench started.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX - 1)
    }

    fn since(&self, sent_ns: u64) -> Duration {
        Duration::from_nanos(self.now_ns().saturating_sub(sent_ns))
    }
}

fn payload(size: usize, sent_ns: u64) -> Value {
    json!({"value": "x".repeat(size), "sent_ns": sent_ns})
}

/// A receiving endpoint that reports each message's end-to-end latency.
fn receipts_endpoint(clock: Clock, receipts: mpsc::UnboundedSender<Option<Duration>>) -> Endpoint {
    Endpoint::new()
        .method(
            "echo",
            |_ctx: Context, args: Map<String, Value>| async move {
                Ok::<_, RemoteError>(args.get("value").cloned().unwrap_or(Value::Null))
            },
        )
        .method("record", move |_ctx: Context, args: Map<String, Value>| {
            let receipts = receipts.clone();
            async move {
                receipts.send(latency(clock, &args)).ok();
                Ok::<_, RemoteError>(())
            }
        })
}

/// The latency of a received message; `None` for warm-ups.
fn latency(clock: Clock, args: &Map<String, Value>) -> Option<Duration> {
    match args.get("sent_ns").and_then(Value::as_u64) {
        Some(WARM_UP) | None => None,
        Some(sent) => Some(clock.since(sent)),
    }
}

/// Split `count` messages over `clients` senders.
fn shares(count: u64, clients: u64) -> Vec<u64> {
    let clients = clients.max(1);
    (0..clients)
        .map(|i| count / clients + u64::from(i < count % clients))
        .collect()
}

fn progress(total: u64, hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {pos}/{len} {per_sec} [{elapsed_precise}] {wide_bar}",
        )
        .expect("a valid template"),
    );
    bar
}

/// Run the bench and print the report.
pub async fn run(endpoints: &Endpoints, args: BenchArgs) -> Outcome {
    let clock = Clock(Instant::now());
    let topic = format!("omsg_bench_{}", &messaging::wire::new_id()[..8]);
    let (receipts_tx, mut receipts) = mpsc::unbounded_channel();
    let services = start_receivers(endpoints, &args, &topic, clock, receipts_tx).await?;
    let expected = match args.mode {
        Mode::RpcFanout => args.count * args.servers.max(1),
        _ => args.count,
    };
    let sender = Sender::new(endpoints, &args, &topic, clock).await?;
    sender
        .warm_up(&mut receipts, args.mode, args.servers.max(1))
        .await?;

    let bar = progress(expected, args.json);
    let (cpu_before, started) = (cpu_time(), Instant::now());
    let mut latencies = Latencies::default();
    let senders: Vec<_> = shares(args.count, args.clients)
        .into_iter()
        .map(|share| {
            let sender = sender.clone();
            tokio::spawn(async move { sender.send_many(share).await })
        })
        .collect();
    if args.mode == Mode::RpcCall {
        for task in senders {
            let samples = task
                .await
                .map_err(|e| Failure::Usage(format!("sender task: {e}")))??;
            bar.inc(samples.len() as u64);
            samples.into_iter().for_each(|s| latencies.push(s));
        }
    } else {
        for task in senders {
            task.await
                .map_err(|e| Failure::Usage(format!("sender task: {e}")))??;
        }
        while (latencies.len() as u64) < expected {
            match tokio::time::timeout(Duration::from_secs(60), receipts.recv()).await {
                Ok(Some(Some(sample))) => {
                    latencies.push(sample);
                    bar.inc(1);
                }
                Ok(Some(None)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_time().saturating_sub(cpu_before);
    bar.finish_and_clear();
    for service in services {
        service.shutdown().await;
    }
    report(&args, expected, latencies, seconds, cpu)
}

async fn start_receivers(
    endpoints: &Endpoints,
    args: &BenchArgs,
    topic: &str,
    clock: Clock,
    receipts: mpsc::UnboundedSender<Option<Duration>>,
) -> Result<Vec<ServiceHandle>, Failure> {
    let mut services = Vec::new();
    if args.mode == Mode::Notify {
        let endpoint = NotificationEndpoint::new().on_all(move |n| {
            let receipts = receipts.clone();
            async move {
                if let Value::Object(args) = &n.payload {
                    receipts.send(latency(clock, args)).ok();
                }
                NotificationResult::Handled
            }
        });
        let listener = NotificationListener::new(endpoints.notifications().await?)
            .target(Target::topic(topic).exchange(&endpoints.exchange))
            .endpoint(endpoint)
            .start()
            .await?;
        services.push(listener);
        return Ok(services);
    }
    let transport = endpoints.rpc().await?;
    for i in 0..args.servers.max(1) {
        let server = RpcServer::new(
            transport.clone(),
            Target::topic(topic).server(format!("bench-{i}")),
        )
        .endpoint(receipts_endpoint(clock, receipts.clone()))
        .start()
        .await?;
        services.push(server);
    }
    Ok(services)
}

/// Sends the bench's messages of one mode.
#[derive(Clone)]
struct Sender {
    mode: Mode,
    client: Option<RpcClient>,
    notifier: Option<Notifier>,
    clock: Clock,
    size: usize,
}

impl Sender {
    async fn new(
        endpoints: &Endpoints,
        args: &BenchArgs,
        topic: &str,
        clock: Clock,
    ) -> Result<Self, Failure> {
        let (client, notifier) = if args.mode == Mode::Notify {
            let notifier = Notifier::new(endpoints.notifications().await?, "omsg.bench")
                .topics([topic])
                .exchange(&endpoints.exchange);
            (None, Some(notifier))
        } else {
            let client = RpcClient::new(endpoints.rpc().await?, Target::topic(topic))
                .fanout(args.mode == Mode::RpcFanout);
            (Some(client), None)
        };
        Ok(Self {
            mode: args.mode,
            client,
            notifier,
            clock,
            size: args.size,
        })
    }

    /// Send one message; for calls, return the round trip.
    async fn send_one(&self, sent_ns: u64) -> Result<Option<Duration>, Failure> {
        let ctx = Context::new();
        let body = payload(self.size, sent_ns);
        match (self.mode, &self.client, &self.notifier) {
            (Mode::RpcCall, Some(client), _) => {
                let started = Instant::now();
                let _: Value = client.call(&ctx, "echo", &body).await?;
                Ok(Some(started.elapsed()))
            }
            (Mode::RpcCast | Mode::RpcFanout, Some(client), _) => {
                client.cast(&ctx, "record", &body).await?;
                Ok(None)
            }
            (Mode::Notify, _, Some(notifier)) => {
                notifier.info(&ctx, "omsg.bench", &body).await?;
                Ok(None)
            }
            _ => unreachable!("Sender::new builds the client or the notifier the mode needs"),
        }
    }

    async fn send_many(self, count: u64) -> Result<Vec<Duration>, Failure> {
        let mut samples = Vec::new();
        for _ in 0..count {
            if let Some(sample) = self.send_one(self.clock.now_ns()).await? {
                samples.push(sample);
            }
        }
        Ok(samples)
    }

    /// Send uncounted messages until one arrives (for notifications) or `servers` arrive (for
    /// fanout), so that subscriptions are in place before timing starts.
    async fn warm_up(
        &self,
        receipts: &mut mpsc::UnboundedReceiver<Option<Duration>>,
        mode: Mode,
        servers: u64,
    ) -> Outcome {
        if mode == Mode::RpcCall {
            self.send_one(WARM_UP).await?;
            return Ok(());
        }
        let wanted = if mode == Mode::RpcFanout { servers } else { 1 };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            self.send_one(WARM_UP).await?;
            let mut arrived = 0;
            while let Ok(Some(None)) =
                tokio::time::timeout(Duration::from_secs(1), receipts.recv()).await
            {
                arrived += 1;
                if arrived >= wanted {
                    return Ok(());
                }
            }
        }
        Err(Failure::Messaging(messaging::MessagingError::Timeout {
            msg_id: "(bench warm-up)".into(),
            after: Duration::from_secs(60),
        }))
    }
}

fn report(
    args: &BenchArgs,
    expected: u64,
    mut latencies: Latencies,
    seconds: f64,
    cpu: Duration,
) -> Outcome {
    let received = latencies.len() as u64;
    let rate = received as f64 / seconds.max(f64::EPSILON);
    let result = json!({
        "mode": args.mode.to_possible_value().map(|v| v.get_name().to_owned()),
        "count": received,
        "expected": expected,
        "clients": args.clients,
        "servers": args.servers,
        "size": args.size,
        "seconds": round(seconds),
        "msgs_per_s": round(rate),
        "p50_ms": round(latencies.percentile_ms(50.0)),
        "p90_ms": round(latencies.percentile_ms(90.0)),
        "p99_ms": round(latencies.percentile_ms(99.0)),
        "max_ms": round(latencies.percentile_ms(100.0)),
        "cpu_ms_per_msg": round(cpu.as_secs_f64() * 1e3 / received.max(1) as f64),
        "peak_rss_mib": peak_rss_mib().map(round),
    });
    if args.json {
        print_json(&result);
    } else {
        println!(
            "{mode}: {received}/{expected} messages in {seconds:.2} s = {rate:.0} msg/s; latency ms p50 {p50} p90 {p90} p99 {p99} max {max}; CPU {cpu} ms/msg; peak RSS {rss} MiB",
            mode = result["mode"].as_str().unwrap_or("?"),
            p50 = result["p50_ms"],
            p90 = result["p90_ms"],
            p99 = result["p99_ms"],
            max = result["max_ms"],
            cpu = result["cpu_ms_per_msg"],
            rss = result["peak_rss_mib"],
        );
    }
    if received < expected {
        return Err(Failure::Messaging(
            messaging::MessagingError::DeliveryFailure(format!(
                "only {received} of {expected} messages arrived"
            )),
        ));
    }
    Ok(())
}

fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

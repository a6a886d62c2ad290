//! `omsg bench`: an ombt-style load generator and reporter.
//!
//! With `--role both` (the default) servers/listeners and clients are tasks of one process.
//! With `--role server` and `--role client` they are separate processes sharing a `--topic`:
//! the server process prints `{"event":"ready"}` once its subscriptions work, and a JSON
//! summary when it has received `--count` messages (casts, notifications) or when stopped
//! (calls). Casts and notifications carry their send time (wall clock), so end-to-end latency
//! is measured from send to receipt across processes.
//!
//! A failed send does not stop the run (a broker failover is read from the report): the
//! summary counts messages sent, confirmed (the send returned) and failed, and received, lost
//! (confirmed, never received) and duplicated (received more than once; every message carries
//! an id).

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use messaging::{
    Context, Endpoint, NotificationEndpoint, NotificationListener, NotificationResult, Notifier,
    OutboxConfig, Overflow, Priority, RemoteError, RpcClient, RpcServer, ServiceHandle, Target,
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

/// Which side(s) this process plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Servers and clients in this process.
    Both,
    /// Only the servers or the listener.
    Server,
    /// Only the senders.
    Client,
}

/// `omsg bench`.
#[derive(Debug, Clone, Args)]
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
    /// both, server or client.
    #[arg(long, value_enum, default_value = "both")]
    role: Role,
    /// Topic shared by the server and client processes (default: a fresh one).
    #[arg(long)]
    topic: Option<String>,
    /// Print one JSON object instead of a report.
    #[arg(long)]
    json: bool,
    /// Notify through an outbox: `memory`, or `spool:DIR` (durable, written ahead to DIR).
    /// Sending ends once the outbox has sent everything.
    #[arg(long, value_parser = parse_outbox)]
    outbox: Option<OutboxArg>,
    /// With `--outbox`: end once everything is queued, without waiting for the outbox to
    /// send it (what a broker outage costs: peak RSS, and the spool left on disk).
    #[arg(long, requires = "outbox")]
    queue_only: bool,
    /// With `--outbox`: keep at most this many sends in flight [default: the transport's].
    #[arg(long, requires = "outbox")]
    outbox_window: Option<usize>,
    /// With `--outbox`: hold at most this many notifications, a notify call waiting for room
    /// (`Overflow::Wait`) [default: room for the whole run, so that no call waits].
    #[arg(long, requires = "outbox", conflicts_with = "queue_only")]
    outbox_capacity: Option<usize>,
}

/// Where `--outbox` keeps the notifications it has not sent yet.
#[derive(Debug, Clone)]
pub enum OutboxArg {
    /// In memory.
    Memory,
    /// Written ahead to a spool in this directory.
    Spool(std::path::PathBuf),
}

fn parse_outbox(text: &str) -> Result<OutboxArg, String> {
    if text == "memory" {
        return Ok(OutboxArg::Memory);
    }
    match text.strip_prefix("spool:") {
        Some(dir) if !dir.is_empty() => Ok(OutboxArg::Spool(dir.into())),
        _ => Err(format!("expected `memory` or `spool:DIR`, not `{text}`")),
    }
}

/// How long the sender waits for its outbox to send everything.
const OUTBOX_FLUSH: Duration = Duration::from_secs(600);

impl BenchArgs {
    /// Receipts per message sent: every server gets a fanout, anything else arrives once.
    fn receipts_per_message(&self) -> u64 {
        if self.mode == Mode::RpcFanout {
            self.servers.max(1)
        } else {
            1
        }
    }
}

/// Marks warm-up messages, which are not counted.
const WARM_UP: u64 = 0;
/// How long to wait for the next message before giving up on the rest.
const STALL: Duration = Duration::from_secs(60);
/// Most receipts taken at once.
const RECEIPT_BATCH: usize = 1024;

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn payload(size: usize, id: u64, sent_ns: u64) -> Value {
    json!({"value": "x".repeat(size), "id": id, "sent_ns": sent_ns})
}

/// A received message: its id and latency; `None` for warm-ups.
type Receipt = Option<(u64, Duration)>;

fn receipt(args: &Map<String, Value>) -> Receipt {
    let id = args.get("id").and_then(Value::as_u64)?;
    match args.get("sent_ns").and_then(Value::as_u64) {
        Some(WARM_UP) | None => None,
        Some(sent) => Some((id, Duration::from_nanos(unix_ns().saturating_sub(sent)))),
    }
}

/// Split the ids of `count` messages over `clients` senders.
fn shares(count: u64, clients: u64) -> Vec<Range<u64>> {
    let clients = clients.max(1);
    let mut next = 0;
    (0..clients)
        .map(|i| {
            let share = count / clients + u64::from(i < count % clients);
            next += share;
            next - share..next
        })
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

/// Run the bench in the chosen role and print its report.
pub async fn run(endpoints: &Endpoints, args: BenchArgs) -> Outcome {
    if args.outbox.is_some() && args.mode != Mode::Notify {
        return Err(Failure::Usage("--outbox works with `notify` only".into()));
    }
    if args.queue_only && args.role != Role::Client {
        return Err(Failure::Usage(
            "--queue-only works with `--role client` only".into(),
        ));
    }
    let topic = args
        .topic
        .clone()
        .unwrap_or_else(|| format!("omsg_bench_{}", &messaging::wire::new_id()[..8]));
    match args.role {
        Role::Both => {
            let Receivers {
                services,
                mut receipts,
                ..
            } = Receivers::start(endpoints, &args, &topic).await?;
            let sender = Sender::new(endpoints, &args, &topic).await?;
            sender
                .warm_up(&mut receipts, args.receipts_per_message())
                .await?;
            let cpu_before = cpu_time();
            let mut sent = sender.send_all(&args).await?;
            let expected = sent.confirmed.len() as u64 * args.receipts_per_message();
            let received = match args.mode {
                Mode::RpcCall => None,
                _ => Some(collect_on_a_worker(receipts, &args, expected, sent.started).await),
            };
            // This process played both sides: charge all of its CPU to the messages.
            sent.cpu = cpu_time() - cpu_before;
            for service in services {
                service.shutdown().await;
            }
            report(&args, sent, received)
        }
        Role::Server => serve(endpoints, &args, &topic).await,
        Role::Client => {
            let sender = Sender::new(endpoints, &args, &topic).await?;
            if args.mode == Mode::RpcCall {
                sender.send_one(0, WARM_UP).await?;
            }
            let sent = sender.send_all(&args).await?;
            report(&args, sent, None)
        }
    }
}

/// Servers (or the listener) of the bench, feeding receipts.
struct Receivers {
    services: Vec<ServiceHandle>,
    receipts: mpsc::UnboundedReceiver<Receipt>,
    calls_served: Arc<AtomicU64>,
}

impl Receivers {
    async fn start(endpoints: &Endpoints, args: &BenchArgs, topic: &str) -> Result<Self, Failure> {
        let (tx, receipts) = mpsc::unbounded_channel();
        let calls_served = Arc::new(AtomicU64::new(0));
        let mut services = Vec::new();
        if args.mode == Mode::Notify {
            // Senders emit `info` only: like oslo_bench.py's endpoint, listen to that priority's
            // topic alone (an endpoint for every priority subscribes to all seven).
            let endpoint = NotificationEndpoint::new().on(Priority::Info, move |n| {
                let tx = tx.clone();
                async move {
                    if let Value::Object(args) = &n.payload {
                        tx.send(receipt(args)).ok();
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
        } else {
            let transport = endpoints.rpc().await?;
            for i in 0..args.servers.max(1) {
                let server = RpcServer::new(
                    transport.clone(),
                    Target::topic(topic).server(format!("bench-{i}")),
                )
                .endpoint(bench_endpoint(tx.clone(), calls_served.clone()))
                .start()
                .await?;
                services.push(server);
            }
        }
        Ok(Self {
            services,
            receipts,
            calls_served,
        })
    }
}

/// The bench servers' endpoint: `echo` answers, `record` reports its latency.
fn bench_endpoint(receipts: mpsc::UnboundedSender<Receipt>, calls: Arc<AtomicU64>) -> Endpoint {
    Endpoint::new()
        .method("echo", move |_ctx: Context, args: Map<String, Value>| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::Relaxed);
                Ok::<_, RemoteError>(args.get("value").cloned().unwrap_or(Value::Null))
            }
        })
        .method("record", move |_ctx: Context, args: Map<String, Value>| {
            let receipts = receipts.clone();
            async move {
                receipts.send(receipt(&args)).ok();
                Ok::<_, RemoteError>(())
            }
        })
}

/// The `--role server` process.
async fn serve(endpoints: &Endpoints, args: &BenchArgs, topic: &str) -> Outcome {
    let Receivers {
        services,
        mut receipts,
        calls_served,
    } = Receivers::start(endpoints, args, topic).await?;
    if args.mode != Mode::RpcCall {
        // Check the path end to end with our own uncounted messages before saying ready.
        let sender = Sender::new(endpoints, args, topic).await?;
        sender
            .warm_up(&mut receipts, args.receipts_per_message())
            .await?;
    }
    // Call servers run until a signal; the others until their count (or a stall).
    let stop = (args.mode == Mode::RpcCall)
        .then(crate::shutdown_signal)
        .transpose()?;
    print_json(&json!({"event": "ready", "topic": topic}));
    let (cpu_before, started) = (cpu_time(), Instant::now());
    let mut summary = if let Some(stop) = stop {
        stop.await;
        let served = calls_served.load(Ordering::Relaxed);
        json!({"served": served, "cpu_ms_per_msg": per_message_ms(cpu_time() - cpu_before, served)})
    } else {
        let expected = args.count * args.receipts_per_message();
        let mut received = collect_on_a_worker(receipts, args, expected, started).await;
        let count = received.latencies.len() as u64;
        let mut summary = received.summary();
        summary["cpu_ms_per_msg"] = json!(per_message_ms(cpu_time() - cpu_before, count));
        summary
    };
    for service in services {
        service.shutdown().await;
    }
    summary["role"] = json!("server");
    summary["peak_rss_mib"] = json!(peak_rss_mib().map(round));
    print_json(&summary);
    Ok(())
}

/// What the senders measured.
struct Sent {
    started: Instant,
    start_unix_ns: u64,
    seconds: f64,
    count: u64,
    /// Ids of the messages whose send returned (calls: answered).
    confirmed: HashSet<u64>,
    failed: u64,
    first_error: Option<String>,
    call_latencies: Latencies,
    cpu: Duration,
}

/// What one sender measured.
#[derive(Default)]
struct Tally {
    confirmed: Vec<u64>,
    failed: u64,
    first_error: Option<String>,
    latencies: Latencies,
}

/// What arrived at the servers or listener.
struct Received {
    /// One per expected receipt (a fanout is expected once per server).
    latencies: Latencies,
    /// Receipts per message id.
    ids: HashMap<u64, u64>,
    /// Receipts beyond the expected ones.
    duplicated: u64,
    /// From the first message sent to the last receipt.
    seconds: f64,
    last_unix_ns: u64,
}

impl Received {
    /// The server process's summary; latency percentiles are end to end.
    fn summary(&mut self) -> Value {
        json!({
            "received": self.latencies.len(),
            "duplicated": self.duplicated,
            "seconds": round(self.seconds),
            "last_receipt_unix_ns": self.last_unix_ns,
            "p50_ms": round(self.latencies.percentile_ms(50.0)),
            "p99_ms": round(self.latencies.percentile_ms(99.0)),
            "max_ms": round(self.latencies.percentile_ms(100.0)),
        })
    }
}

/// [`collect`] in a task of the runtime's workers, where the handlers run: a receipt wakes it
/// there, not across threads as it would wake `main`'s `block_on` (a context switch per
/// receipt at times, charged to the listener's CPU).
async fn collect_on_a_worker(
    mut receipts: mpsc::UnboundedReceiver<Receipt>,
    args: &BenchArgs,
    expected: u64,
    started: Instant,
) -> Received {
    let args = args.clone();
    let collecting =
        tokio::spawn(async move { collect(&mut receipts, &args, expected, started).await });
    collecting.await.expect("collecting receipts panicked")
}

/// Wait for `expected` receipts (or [`STALL`] without one); copies of a message beyond
/// [`BenchArgs::receipts_per_message`] count as duplicates.
async fn collect(
    receipts: &mut mpsc::UnboundedReceiver<Receipt>,
    args: &BenchArgs,
    expected: u64,
    started: Instant,
) -> Received {
    let per_message = args.receipts_per_message();
    let bar = progress(expected, args.json || args.role != Role::Both);
    let (mut latencies, mut ids, mut duplicated) = (Latencies::default(), HashMap::new(), 0);
    // Taken in batches: a timer per receipt would be a good part of the bench's own cost.
    let mut batch = Vec::with_capacity(RECEIPT_BATCH);
    'receiving: while (latencies.len() as u64) < expected {
        match tokio::time::timeout(STALL, receipts.recv_many(&mut batch, RECEIPT_BATCH)).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        // The bar moves once per batch: `inc` reads the clock, a cost per receipt otherwise.
        let before = latencies.len();
        for (id, sample) in batch.drain(..).flatten() {
            let copies = ids.entry(id).or_insert(0);
            *copies += 1;
            if *copies > per_message {
                duplicated += 1;
                continue;
            }
            latencies.push(sample);
            if latencies.len() as u64 == expected {
                break;
            }
        }
        bar.inc((latencies.len() - before) as u64);
        if latencies.len() as u64 == expected {
            break 'receiving;
        }
    }
    bar.finish_and_clear();
    Received {
        latencies,
        ids,
        duplicated,
        seconds: started.elapsed().as_secs_f64(),
        last_unix_ns: unix_ns(),
    }
}

/// Sends the bench's messages of one mode.
#[derive(Clone)]
struct Sender {
    mode: Mode,
    client: Option<RpcClient>,
    notifier: Option<Notifier>,
    size: usize,
}

impl Sender {
    async fn new(endpoints: &Endpoints, args: &BenchArgs, topic: &str) -> Result<Self, Failure> {
        let (client, notifier) = if args.mode == Mode::Notify {
            let mut notifier = Notifier::new(endpoints.notifications().await?, "omsg.bench")
                .topics([topic])
                .exchange(&endpoints.exchange);
            // A server process's warm-up sends directly (the client process owns the spool).
            if let (Some(outbox), false) = (&args.outbox, args.role == Role::Server) {
                let mut config = match args.outbox_capacity {
                    Some(capacity) => OutboxConfig::new(capacity).overflow(Overflow::Wait),
                    // Room for the whole run and the warm-ups: the outbox never refuses.
                    None => OutboxConfig::new(
                        usize::try_from(args.count.saturating_add(1000)).unwrap_or(usize::MAX),
                    ),
                };
                if let Some(window) = args.outbox_window {
                    config = config.max_in_flight(window);
                }
                let config = match outbox {
                    OutboxArg::Memory => config,
                    OutboxArg::Spool(dir) => config.spool_dir(dir),
                };
                notifier = notifier.with_outbox(config).await?;
            }
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
            size: args.size,
        })
    }

    /// Send one message; for calls, return the round trip.
    async fn send_one(&self, id: u64, sent_ns: u64) -> Result<Option<Duration>, Failure> {
        let ctx = Context::new();
        let body = payload(self.size, id, sent_ns);
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

    /// Send the messages `ids`, counting failures and going on.
    async fn send_many(self, ids: Range<u64>, bar: ProgressBar) -> Tally {
        let mut tally = Tally::default();
        for id in ids {
            match self.send_one(id, unix_ns()).await {
                Ok(sample) => {
                    if let Some(sample) = sample {
                        tally.latencies.push(sample);
                    }
                    tally.confirmed.push(id);
                }
                Err(error) => {
                    tally.failed += 1;
                    tally.first_error.get_or_insert_with(|| match error {
                        Failure::Messaging(error) => error.to_string(),
                        Failure::Usage(reason) | Failure::TimedOut(reason) => reason,
                    });
                }
            }
            // A hidden bar still reads the clock on `inc`.
            if !bar.is_hidden() {
                bar.inc(1);
            }
        }
        tally
    }

    /// Send `args.count` messages from `args.clients` concurrent senders.
    async fn send_all(&self, args: &BenchArgs) -> Result<Sent, Failure> {
        // In one process, the progress of casts and notifications is shown on receipt.
        let hidden = args.json || (args.mode != Mode::RpcCall && args.role == Role::Both);
        let bar = progress(args.count, hidden);
        let (cpu_before, started, start_unix_ns) = (cpu_time(), Instant::now(), unix_ns());
        let tasks: Vec<_> = shares(args.count, args.clients)
            .into_iter()
            .map(|share| tokio::spawn(self.clone().send_many(share, bar.clone())))
            .collect();
        let mut all = Tally::default();
        for task in tasks {
            let tally = task
                .await
                .map_err(|e| Failure::Usage(format!("sender task: {e}")))?;
            all.confirmed.extend(tally.confirmed);
            all.failed += tally.failed;
            all.first_error = all.first_error.or(tally.first_error);
            all.latencies.extend(tally.latencies);
        }
        if let (Some(notifier), false) = (&self.notifier, args.queue_only) {
            notifier.flush(OUTBOX_FLUSH).await?;
        }
        bar.finish_and_clear();
        Ok(Sent {
            started,
            start_unix_ns,
            seconds: started.elapsed().as_secs_f64(),
            count: args.count,
            confirmed: all.confirmed.into_iter().collect(),
            failed: all.failed,
            first_error: all.first_error,
            call_latencies: all.latencies,
            cpu: cpu_time() - cpu_before,
        })
    }

    /// Send uncounted messages until `wanted` receipts of one arrive, so that subscriptions
    /// are in place before timing starts.
    async fn warm_up(
        &self,
        receipts: &mut mpsc::UnboundedReceiver<Receipt>,
        wanted: u64,
    ) -> Outcome {
        if self.mode == Mode::RpcCall {
            self.send_one(0, WARM_UP).await?;
            return Ok(());
        }
        let deadline = Instant::now() + STALL;
        while Instant::now() < deadline {
            self.send_one(0, WARM_UP).await?;
            let mut arrived = 0;
            while let Ok(Some(None)) =
                tokio::time::timeout(Duration::from_secs(1), receipts.recv()).await
            {
                arrived += 1;
                if arrived >= wanted {
                    // Drain late copies of earlier warm-ups before counting starts.
                    while let Ok(Some(None)) =
                        tokio::time::timeout(Duration::from_millis(200), receipts.recv()).await
                    {
                    }
                    return Ok(());
                }
            }
        }
        Err(Failure::TimedOut(format!(
            "bench warm-up: the warm-up messages did not all arrive within {STALL:?}"
        )))
    }
}

/// CPU per message in ms, to a tenth of a microsecond (a few microseconds is typical).
fn per_message_ms(cpu: Duration, count: u64) -> f64 {
    (cpu.as_secs_f64() * 1e7 / count.max(1) as f64).round() / 1e4
}

fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// Sent, confirmed, failed, received, lost and duplicated, as the report shows them.
fn delivery_counts(args: &BenchArgs, sent: &Sent, received: Option<&Received>) -> Value {
    let mut counts = json!({
        "sent": sent.count,
        "confirmed": sent.confirmed.len(),
        "failed": sent.failed,
    });
    if let Some(received) = received {
        let per_message = args.receipts_per_message();
        let lost: u64 = sent
            .confirmed
            .iter()
            .map(|id| per_message.saturating_sub(received.ids.get(id).copied().unwrap_or(0)))
            .sum();
        counts["received"] = json!(received.latencies.len());
        counts["lost"] = json!(lost);
        counts["duplicated"] = json!(received.duplicated);
    }
    counts
}

/// Print the result: calls are timed by the sender; casts and notifications end to end when
/// this process also received them. Fails when a send failed or a message did not arrive.
fn report(args: &BenchArgs, sent: Sent, received: Option<Received>) -> Outcome {
    let mode = args
        .mode
        .to_possible_value()
        .map(|v| v.get_name().to_owned());
    let role = args
        .role
        .to_possible_value()
        .map(|v| v.get_name().to_owned());
    let counts = delivery_counts(args, &sent, received.as_ref());
    let (count, expected, seconds, mut latencies) = match received {
        Some(received) => (
            received.latencies.len() as u64,
            args.count * args.receipts_per_message(),
            received.seconds,
            received.latencies,
        ),
        None => (
            sent.confirmed.len() as u64,
            sent.count,
            sent.seconds,
            sent.call_latencies,
        ),
    };
    let rate = count as f64 / seconds.max(f64::EPSILON);
    let mut result = json!({
        "mode": mode, "role": role, "clients": args.clients, "servers": args.servers, "size": args.size,
        "count": count, "seconds": round(seconds), "msgs_per_s": round(rate),
        "cpu_ms_per_msg": per_message_ms(sent.cpu, count),
        "start_unix_ns": sent.start_unix_ns,
        "peak_rss_mib": peak_rss_mib().map(round),
    });
    for (key, value) in counts.as_object().into_iter().flatten() {
        result[key] = value.clone();
    }
    if !latencies.is_empty() {
        for (key, p) in [
            ("p50_ms", 50.0),
            ("p90_ms", 90.0),
            ("p99_ms", 99.0),
            ("max_ms", 100.0),
        ] {
            result[key] = json!(round(latencies.percentile_ms(p)));
        }
    }
    if args.json {
        print_json(&result);
    } else {
        println!(
            "{mode}: {count} messages in {seconds:.2} s = {rate:.0} msg/s; latency ms p50 {p50} p90 {p90} p99 {p99} max {max}; CPU {cpu} ms/msg; peak RSS {rss} MiB",
            mode = result["mode"].as_str().unwrap_or("?"),
            p50 = result["p50_ms"],
            p90 = result["p90_ms"],
            p99 = result["p99_ms"],
            max = result["max_ms"],
            cpu = result["cpu_ms_per_msg"],
            rss = result["peak_rss_mib"],
        );
        let counts: Vec<String> = counts
            .as_object()
            .into_iter()
            .flatten()
            .map(|(key, value)| format!("{key} {value}"))
            .collect();
        println!("{}", counts.join(", "));
    }
    if sent.failed > 0 || count < expected {
        return Err(Failure::Messaging(
            messaging::MessagingError::DeliveryFailure(format!(
                "{} sends failed (the first: {}); {count} of {expected} messages arrived",
                sent.failed,
                sent.first_error.as_deref().unwrap_or("none"),
            )),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(mode: Mode, count: u64, servers: u64) -> BenchArgs {
        BenchArgs {
            mode,
            count,
            clients: 1,
            servers,
            size: 1,
            role: Role::Both,
            topic: None,
            json: true,
            outbox: None,
            queue_only: false,
            outbox_window: None,
            outbox_capacity: None,
        }
    }

    #[tokio::test]
    async fn senders_count_failures_and_go_on() {
        messaging::install_default_drivers();
        let transport = messaging::get_rpc_transport("memory://").await.unwrap();
        let client = RpcClient::new(transport, Target::topic("nobody_serves"))
            .timeout(Duration::from_millis(20));
        let sender = Sender {
            mode: Mode::RpcCall,
            client: Some(client),
            notifier: None,
            size: 1,
        };
        let tally = sender.send_many(0..3, ProgressBar::hidden()).await;
        assert_eq!((tally.confirmed.len(), tally.failed), (0, 3));
        assert!(tally.first_error.is_some());
    }

    #[tokio::test]
    async fn receipts_are_counted_as_received_lost_and_duplicated() {
        let args = args(Mode::RpcFanout, 3, 2);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let ms = Duration::from_millis(1);
        // Message 0 reaches both servers, and one of them twice; 1 reaches one; 2 was never
        // confirmed; 3 was confirmed and never arrived.
        for id in [0, 0, 0, 1] {
            tx.send(Some((id, ms))).unwrap();
        }
        tx.send(None).unwrap();
        drop(tx);
        let received = collect(&mut rx, &args, 6, Instant::now()).await;
        let sent = Sent {
            started: Instant::now(),
            start_unix_ns: 0,
            seconds: 1.0,
            count: 4,
            confirmed: [0, 1, 3].into_iter().collect(),
            failed: 1,
            first_error: Some("refused".into()),
            call_latencies: Latencies::default(),
            cpu: Duration::ZERO,
        };
        let counts = delivery_counts(&args, &sent, Some(&received));
        assert_eq!(
            counts,
            json!({"sent": 4, "confirmed": 3, "failed": 1, "received": 3, "lost": 3, "duplicated": 1})
        );
    }

    #[test]
    fn outbox_argument() {
        assert!(matches!(parse_outbox("memory"), Ok(OutboxArg::Memory)));
        assert!(
            matches!(parse_outbox("spool:/var/spool/x"), Ok(OutboxArg::Spool(dir)) if dir == std::path::Path::new("/var/spool/x"))
        );
        for bad in ["spool:", "disk", "Memory", ""] {
            assert!(parse_outbox(bad).is_err(), "{bad}");
        }
    }
}

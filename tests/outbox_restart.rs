//! The notifier's durable outbox across a broker outage and a client crash, with real brokers
//! and real processes: stop the broker; a client process sends 1,000 notifications through an
//! outbox with a spool directory (all accepted while the broker is down); the client is
//! SIGKILLed; a second client process opens the same spool; the broker starts again; a
//! listener must receive all 1,000 (duplicates, allowed by at-least-once, are reported).
//!
//! The client processes are this test binary run again with `OUTBOX_TEST_ROLE` set. The
//! broker is stopped and started with `.ci/brokers` (a guard restarts it even when the test
//! fails), so this runs only in CI (`MESSAGING_REQUIRE_BROKERS=1`) or when asked with
//! `MESSAGING_OUTAGE_TESTS=1`: stopping a shared broker under other running tests would break
//! them. Every broker-stopping case lives in this one binary and runs one after another.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use messaging::driver::NotifyAddress;
use messaging::{get_notification_transport, Context, Notifier, OutboxConfig, Priority};

const ROLE: &str = "OUTBOX_TEST_ROLE";
const COUNT: u32 = 1000;
/// Only to avoid hanging: nothing here asserts on time.
const PATIENCE: Duration = Duration::from_secs(300);
const TEST_NAME: &str = "outbox_survives_a_broker_outage_and_a_client_crash";

#[test]
fn outbox_survives_a_broker_outage_and_a_client_crash() {
    if let Ok(role) = std::env::var(ROLE) {
        return client(&role);
    }
    let opted_in = ["MESSAGING_REQUIRE_BROKERS", "MESSAGING_OUTAGE_TESTS"]
        .iter()
        .any(|var| std::env::var(var).as_deref() == Ok("1"));
    if !opted_in {
        println!(
            "skipped: outbox restart test: it stops the brokers; set MESSAGING_OUTAGE_TESTS=1"
        );
        return;
    }
    let cases = [
        // The broker starts again before anything is declared: plain queues are enough.
        ("rabbit", "RABBIT_URL", ""),
        ("kafka", "KAFKA_URL", "?auto_offset_reset=earliest"),
    ];
    for (broker, var, listen_options) in cases {
        match std::env::var(var) {
            Ok(url) if !url.is_empty() => case(broker, &url, listen_options),
            _ if std::env::var("MESSAGING_REQUIRE_BROKERS").as_deref() == Ok("1") => {
                panic!("{var} is not set but MESSAGING_REQUIRE_BROKERS=1")
            }
            _ => println!("skipped: outbox restart test on {broker}: {var} is not set"),
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("the client needs {name}"))
}

/// The client process: `send` sends COUNT notifications and waits to be killed; `resume`
/// opens the same spool and exits once everything was sent.
fn client(role: &str) {
    let (url, dir, topic) = (env("OUTBOX_URL"), env("OUTBOX_DIR"), env("OUTBOX_TOPIC"));
    runtime().block_on(async {
        let started = Instant::now();
        let transport = get_notification_transport(&url).await.unwrap();
        let config = OutboxConfig::new(2 * COUNT as usize)
            .spool_dir(&dir)
            .retry_backoff(
                Duration::from_millis(100),
                Duration::from_millis(100),
                Duration::from_secs(1),
            );
        let notifier = Notifier::new(transport, "test.outbox")
            .topics([topic.as_str()])
            .with_outbox(config)
            .await
            .unwrap();
        match role {
            "send" => {
                for n in 0..COUNT {
                    let payload = serde_json::json!({ "n": n });
                    notifier
                        .info(&Context::new(), "test.outbox.event", &payload)
                        .await
                        .unwrap();
                }
                let stats = notifier.outbox_stats().unwrap();
                println!("OUTBOX-ACCEPTED {:?} {stats:?}", started.elapsed());
                std::future::pending::<()>().await;
            }
            "resume" => {
                let recovered = notifier.outbox_stats().unwrap().pending;
                notifier.flush(PATIENCE).await.unwrap();
                let stats = notifier.outbox_stats().unwrap();
                println!(
                    "OUTBOX-FLUSHED recovered={recovered} {stats:?} in {:?}",
                    started.elapsed()
                );
            }
            other => panic!("unknown role {other}"),
        }
    });
}

/// A client process, killed (SIGKILL) when dropped.
struct Client {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Client {
    fn start(role: &str, url: &str, dir: &Path, topic: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env("OUTBOX_URL", url)
            .env("OUTBOX_DIR", dir)
            .env("OUTBOX_TOPIC", topic)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// The first output line starting with `marker`.
    fn wait_for(&mut self, marker: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                // libtest may print `test … … ` before the test's own output on that line.
                Ok(line) if line.contains(marker) => {
                    return line[line.find(marker).unwrap()..].to_owned()
                }
                Ok(_) => {}
                Err(e) => panic!(
                    "the client never printed {marker} ({e}); exit status: {:?}",
                    self.child.try_wait()
                ),
            }
        }
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn succeeds(mut self) {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the client failed: {status}");
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn brokers_script() -> PathBuf {
    std::env::var_os("MESSAGING_BROKERS_SCRIPT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/brokers"))
}

fn brokers(action: &str, broker: &str) {
    let status = Command::new(brokers_script())
        .args([action, broker])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), ".ci/brokers {action} {broker}: {status}");
}

/// A stopped broker, started again when dropped (also when the test fails).
struct Outage {
    broker: &'static str,
    started: Instant,
    over: bool,
}

impl Outage {
    fn begin(broker: &'static str) -> Self {
        brokers("stop", broker);
        Self {
            broker,
            started: Instant::now(),
            over: false,
        }
    }

    /// Start the broker; returns how long it was down.
    fn end(mut self) -> Duration {
        self.over = true;
        brokers("start", self.broker);
        self.started.elapsed()
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if !self.over {
            brokers("start", self.broker);
        }
    }
}

fn case(broker: &'static str, url: &str, listen_options: &str) {
    let started = Instant::now();
    let topic = format!("test_outbox_{}", &messaging::wire::new_id()[..8]);
    let spool = tempfile::tempdir().unwrap();

    let outage = Outage::begin(broker);
    let mut sender = Client::start("send", url, spool.path(), &topic);
    let accepted = sender.wait_for("OUTBOX-ACCEPTED");
    sender.kill();
    let resumer = Client::start("resume", url, spool.path(), &topic);
    let downtime = outage.end();

    // Kafka: a new group reads the topic from its start, whenever it joins.
    let listen_url = format!("{url}{listen_options}");
    let (received, resumed) = runtime().block_on(async {
        let transport = get_notification_transport(&listen_url).await.unwrap();
        let pool = format!("{topic}_pool");
        let mut source = transport
            .driver()
            .listen(
                &[NotifyAddress {
                    exchange: transport.control_exchange().to_owned(),
                    topic: topic.clone(),
                    priority: Priority::Info,
                }],
                (broker == "kafka").then_some(pool.as_str()),
            )
            .await
            .unwrap();
        // n → message ids received for it.
        let mut received: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while received.len() < COUNT as usize {
            let Ok(Some(incoming)) = tokio::time::timeout_at(deadline, source.next()).await else {
                break;
            };
            let n = incoming.message.payload["n"].as_u64().unwrap();
            received
                .entry(n)
                .or_default()
                .push(incoming.message.message_id.clone());
            incoming.acker.ack().await.unwrap();
        }
        let resumed = tokio::task::spawn_blocking(move || {
            let mut resumer = resumer;
            let line = resumer.wait_for("OUTBOX-FLUSHED");
            resumer.succeeds();
            line
        })
        .await
        .unwrap();
        // Everything is with the broker now: collect late duplicates until it is quiet.
        while let Ok(Some(incoming)) =
            tokio::time::timeout(Duration::from_secs(2), source.next()).await
        {
            let n = incoming.message.payload["n"].as_u64().unwrap();
            received
                .entry(n)
                .or_default()
                .push(incoming.message.message_id.clone());
            incoming.acker.ack().await.unwrap();
        }
        source.close().await;
        (received, resumed)
    });

    let missing: Vec<u64> = (0..u64::from(COUNT))
        .filter(|n| !received.contains_key(n))
        .collect();
    let duplicates: Vec<(&u64, &Vec<String>)> =
        received.iter().filter(|(_, ids)| ids.len() > 1).collect();
    println!(
        "outbox restart on {broker}: {} of {COUNT} received, {} duplicated, broker down {downtime:.1?}, \
         total {:.1?}\n  sender: {accepted}\n  resumer: {resumed}",
        received.len(),
        duplicates.len(),
        started.elapsed()
    );
    assert!(
        missing.is_empty(),
        "{broker}: missing notifications {missing:?}"
    );
    assert!(
        received.keys().all(|n| *n < u64::from(COUNT)),
        "{broker}: unexpected notifications"
    );
    for (n, ids) in duplicates {
        // At-least-once resends the stored message: the same id, never a new one.
        assert!(
            ids.iter().all(|id| *id == ids[0]),
            "{broker}: notification {n} arrived as different messages {ids:?}"
        );
    }
}

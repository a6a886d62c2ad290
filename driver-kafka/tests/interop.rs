//! Interoperability with Python oslo.messaging's kafka driver (18.3.1, confluent-kafka), through
//! `tests/interop/oslo_peer.py` run by `$OSLO_PYTHON` (default: the CI venv). Needs `KAFKA_URL`
//! and the venv; skipped when either is missing, unless `MESSAGING_REQUIRE_BROKERS=1`.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use messaging_conformance::Recorder;
use messaging_core::telemetry::TraceContext;
use messaging_core::{
    get_notification_transport, Context, Notification, NotificationEndpoint, NotificationListener,
    NotificationResult, Notifier, NotifierDriver, Priority, Target,
};
use rdkafka::message::Message;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(60);

/// The Python interpreter and the peer script.
struct Python {
    python: PathBuf,
    peer: PathBuf,
}

fn setup(test: &str) -> Option<(String, Python)> {
    let url = common::kafka_url(test)?;
    let python = std::env::var_os("OSLO_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/oslo-venv/bin/python"
            ))
        });
    let peer = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/interop/oslo_peer.py"
    ));
    if !python.exists() || !peer.exists() {
        if std::env::var("MESSAGING_REQUIRE_BROKERS").as_deref() == Ok("1") {
            panic!("{test}: no Python peer ({python:?}, {peer:?}) but MESSAGING_REQUIRE_BROKERS=1");
        }
        println!("skipped: {test}: no Python oslo.messaging at {python:?}");
        return None;
    }
    Some((url, Python { python, peer }))
}

impl Python {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.python);
        command
            .arg(&self.peer)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// `oslo_peer.py notify …`, to completion.
    async fn notify(&self, url: &str, topic: &str, priority: &str, driver: &str, count: usize) {
        let count = count.to_string();
        let output = self
            .command(&[
                "notify",
                "--url",
                url,
                "--topic",
                topic,
                "--publisher-id",
                "python.host1",
                "--event-type",
                &format!("python.{priority}"),
                "--payload",
                r#"{"from": "python", "nested": {"ü": [1, 2.5, null, true]}}"#,
                "--priority",
                priority,
                "--ctxt",
                r#"{"user_id": "u-py", "request_id": "req-py"}"#,
                "--ctxt-kind",
                "object",
                "--driver",
                driver,
                "--count",
                &count,
            ])
            .output()
            .await
            .expect("run the Python notifier");
        assert!(
            output.status.success(),
            "python notify failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `oslo_peer.py listen …`, once it printed `ready` (its partitions are assigned).
    async fn listen(&self, url: &str, topic: &str, pool: &str, count: usize) -> PythonListener {
        let count = count.to_string();
        let mut child = self
            .command(&[
                "listen",
                "--url",
                url,
                "--topic",
                topic,
                "--pool",
                pool,
                "--count",
                &count,
                "--timeout",
                "90",
            ])
            .spawn()
            .expect("start the Python listener");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("ERROR") || line.contains("Traceback") {
                    eprintln!("python listener: {line}");
                }
            }
        });
        let (tx, mut lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                match serde_json::from_str::<Value>(&line) {
                    Ok(value) => {
                        if tx.send(value).is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("python listener said: {line}"),
                }
            }
        });
        let ready = tokio::time::timeout(WAIT, lines.recv())
            .await
            .expect("the Python listener got ready")
            .expect("the Python listener said something");
        assert_eq!(ready["event"], "ready", "{ready}");
        PythonListener {
            child,
            lines,
            ready,
        }
    }
}

struct PythonListener {
    child: Child,
    lines: mpsc::UnboundedReceiver<Value>,
    ready: Value,
}

impl PythonListener {
    async fn received(&mut self, count: usize) -> Vec<Value> {
        let mut got = Vec::new();
        while got.len() < count {
            match tokio::time::timeout(WAIT, self.lines.recv()).await {
                Ok(Some(line)) if line.get("event").is_none() => got.push(line),
                Ok(Some(line)) => panic!("python listener: {line} after {got:?}"),
                Ok(None) | Err(_) => panic!("python listener: expected {count}, got {got:?}"),
            }
        }
        let _ = self.child.kill().await;
        got
    }
}

fn rust_ctx() -> Context {
    Context::new()
        .with("user_id", "u-rust")
        .with("request_id", "req-rust")
}

fn rust_payload(priority: Priority) -> Value {
    json!({"from": "rust", "prio": priority.as_str(), "nested": {"ü": [1, 2.5, null, true]}})
}

/// Send one notification of every priority so that the topics exist before a Python listener
/// subscribes (it ignores topics created after its subscription).
async fn create_topics(notifier: &Notifier) {
    for priority in Priority::ALL {
        notifier
            .notify(&rust_ctx(), priority, "warmup", &json!(null))
            .await
            .expect("warm-up notification");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_notifier_to_python_listener_every_priority() {
    let Some((url, python)) = setup("rust_notifier_to_python_listener_every_priority") else {
        return;
    };
    let topic = common::unique("interop_r2p");
    let transport = get_notification_transport(&url).await.expect("transport");
    let notifier = Notifier::new(transport.clone(), "rust.host1").topics([&topic]);
    create_topics(&notifier).await;
    let mut listener = python
        .listen(&url, &topic, &common::unique("pypool"), 7)
        .await;
    let assigned = listener.ready["assigned"]
        .as_array()
        .expect("assigned")
        .len();
    assert_eq!(assigned, 7, "python got every topic: {}", listener.ready);
    // The Python consumer resolves its starting offsets (`latest`) after the assignment.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The `info` one is sent in a W3C trace: its context carries `traceparent` through.
    let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    for priority in Priority::ALL {
        let ctx = rust_ctx();
        let payload = rust_payload(priority);
        let event_type = format!("rust.{priority}");
        let send = notifier.notify(&ctx, priority, &event_type, &payload);
        match priority {
            Priority::Info => TraceContext::parse(parent, None).unwrap().scope(send).await,
            _ => send.await,
        }
        .expect("notify");
    }
    let got = listener.received(7).await;
    for priority in Priority::ALL {
        let line = got
            .iter()
            .find(|l| l["priority"] == priority.as_str())
            .unwrap_or_else(|| panic!("python got no {priority}: {got:?}"));
        assert_eq!(line["publisher_id"], "rust.host1");
        assert_eq!(line["event_type"], format!("rust.{priority}"));
        assert_eq!(line["payload"], rust_payload(priority));
        assert_eq!(line["ctxt"]["user_id"], "u-rust");
        assert_eq!(line["ctxt"]["request_id"], "req-rust");
        assert_eq!(line["metadata"]["message_id"].as_str().unwrap().len(), 36);
        let traced = (priority == Priority::Info).then_some(parent);
        assert_eq!(line["ctxt"]["traceparent"].as_str(), traced, "{line}");
    }
    transport.close().await;
}

async fn python_to_rust(
    test: &str,
    driver: &str,
    priorities: &[(&str, Priority)],
    vhost: Option<&str>,
) {
    let Some((url, python)) = setup(test) else {
        return;
    };
    let url = match vhost {
        Some(vhost) => url.trim_end_matches('/').to_owned() + "/" + vhost,
        None => url,
    };
    let topic = common::unique("interop_p2r");
    let recorder = Recorder::<Notification>::new();
    let record = recorder.clone();
    let transport = get_notification_transport(&url).await.expect("transport");
    let listener = NotificationListener::new(transport.clone())
        .target(Target::topic(&topic))
        .pool(common::unique("rustpool"))
        .endpoint(NotificationEndpoint::new().on_all(move |n| {
            let record = record.clone();
            async move {
                record.push(n);
                NotificationResult::Handled
            }
        }))
        .start()
        .await
        .expect("listener");
    for (name, _) in priorities {
        python.notify(&url, &topic, name, driver, 2).await;
    }
    let got = recorder
        .wait_for(priorities.len() * 2, WAIT, "python notifications")
        .await;
    listener.shutdown().await;
    for (name, priority) in priorities {
        let of_priority: Vec<&Notification> =
            got.iter().filter(|n| n.priority == *priority).collect();
        assert_eq!(of_priority.len(), 2, "{name}: {got:?}");
        for n in of_priority {
            assert_eq!(n.publisher_id, "python.host1");
            assert_eq!(n.event_type, format!("python.{name}"));
            assert_eq!(
                n.payload,
                json!({"from": "python", "nested": {"ü": [1, 2.5, null, true]}})
            );
            assert_eq!(n.context.get_str("user_id"), Some("u-py"));
            assert_eq!(n.context.get_str("request_id"), Some("req-py"));
            assert_eq!(n.metadata.message_id.len(), 36);
            assert!(n.metadata.timestamp.len() >= 19);
        }
    }
    transport.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_notifier_to_rust_listener_messagingv2() {
    python_to_rust(
        "python_notifier_to_rust_listener_messagingv2",
        "messagingv2",
        &[
            ("info", Priority::Info),
            ("error", Priority::Error),
            ("warning", Priority::Warn),
            ("sample", Priority::Sample),
        ],
        None,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_notifier_to_rust_listener_messaging() {
    python_to_rust(
        "python_notifier_to_rust_listener_messaging",
        "messaging",
        &[("info", Priority::Info), ("audit", Priority::Audit)],
        None,
    )
    .await;
}

/// With a virtual host, both sides use `<topic>.<priority>.<vhost>`, where Python's notifier
/// publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_notifier_with_vhost_to_rust_listener_with_vhost() {
    python_to_rust(
        "python_notifier_with_vhost_to_rust_listener_with_vhost",
        "messagingv2",
        &[("info", Priority::Info)],
        Some(&common::unique("vhost")),
    )
    .await;
}

/// The same notification sent by Python and by Rust is the same record: no key, no headers,
/// and the same value byte for byte once the message id and timestamp are swapped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_match_pythons_byte_for_byte() {
    let Some((url, python)) = setup("records_match_pythons_byte_for_byte") else {
        return;
    };
    for (driver, notifier_driver) in [
        ("messagingv2", NotifierDriver::MessagingV2),
        ("messaging", NotifierDriver::Messaging),
    ] {
        let topic = common::unique("interop_bytes");
        python.notify(&url, &topic, "info", driver, 1).await;
        let transport = get_notification_transport(&url).await.expect("transport");
        let ctx = Context::new()
            .with("user_id", "u-py")
            .with("request_id", "req-py");
        Notifier::new(transport.clone(), "python.host1")
            .topics([&topic])
            .driver(notifier_driver)
            .info(
                &ctx,
                "python.info",
                &json!({"from": "python", "nested": {"ü": [1, 2.5, null, true]}}),
            )
            .await
            .expect("notify");
        transport.close().await;
        let records = tokio::task::spawn_blocking({
            let (url, topic) = (url.clone(), format!("{topic}.info"));
            move || common::raw_records(&url, &topic, 2, WAIT)
        })
        .await
        .unwrap();
        assert_eq!(records.len(), 2, "{driver}: both records");
        let mut values = Vec::new();
        for record in &records {
            assert_eq!(record.key(), None, "{driver}: no key");
            assert!(record.headers().is_none(), "{driver}: no headers");
            values.push(String::from_utf8(record.payload().unwrap().to_vec()).unwrap());
        }
        let inner = |value: &str| -> Value {
            let outer: Value = serde_json::from_str(value).unwrap();
            serde_json::from_str(outer["oslo.message"].as_str().unwrap()).unwrap()
        };
        // Which one is Python's: the one sent first has the smaller timestamp; use the ids.
        let (a, b) = (inner(&values[0]), inner(&values[1]));
        let mut normalized = values[1].clone();
        for key in ["message_id", "timestamp"] {
            normalized = normalized.replace(b[key].as_str().unwrap(), a[key].as_str().unwrap());
        }
        assert_eq!(
            normalized, values[0],
            "{driver}: Rust and Python records differ:\n{}\n{}",
            values[0], values[1]
        );
        assert!(values[0].starts_with(r#"{"oslo.version": "2.0", "oslo.message": "#));
        assert!(a.get("_unique_id").is_none(), "no _unique_id on kafka");
        assert_eq!(a["_context"]["user_id"], "u-py", "nested context");
    }
}

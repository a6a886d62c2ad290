//! Interoperability with the real Python oslo.messaging through RabbitMQ, using
//! `tests/interop/oslo_peer.py` (python: `$OSLO_PYTHON`, default `target/oslo-venv/bin/python`
//! in the workspace). Skipped when `RABBIT_URL` or the python is missing, unless
//! `MESSAGING_REQUIRE_BROKERS=1`.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use messaging_core::*;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// How long a Python peer may take to answer.
const WAIT: Duration = Duration::from_secs(30);

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// `(RABBIT_URL, python)`, or `None` (with a `skipped:` line) when either is missing.
fn setup(test: &str) -> Option<(String, PathBuf)> {
    let url = rabbit_url(test)?;
    let python = std::env::var_os("OSLO_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/oslo-venv/bin/python"));
    if python.exists() {
        return Some((url, python));
    }
    if std::env::var("MESSAGING_REQUIRE_BROKERS").as_deref() == Ok("1") {
        panic!("{test}: no oslo.messaging python at {}", python.display());
    }
    println!(
        "skipped: {test}: no oslo.messaging python at {} (set OSLO_PYTHON)",
        python.display()
    );
    None
}

fn peer_command(python: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(python);
    command
        .arg(workspace().join("tests/interop/oslo_peer.py"))
        .args(args)
        .env("PYTHONWARNINGS", "ignore");
    command
}

/// A long-running Python peer (`server`, `listen`): its JSON lines, killed on drop.
struct Peer {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<Value>,
    stderr: Arc<Mutex<String>>,
}

impl Peer {
    fn spawn(python: &Path, name: &str, args: &[&str]) -> Self {
        let mut child = peer_command(python, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting oslo_peer.py");
        let (tx, lines) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match serde_json::from_str::<Value>(&line) {
                    Ok(value) => {
                        let _ = tx.send(value);
                    }
                    Err(_) => eprintln!("oslo_peer.py printed a non-JSON line: {line}"),
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Peer {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
        }
    }

    /// The next JSON line, failing (with the peer's stderr) after `WAIT`.
    async fn next(&mut self) -> Value {
        match tokio::time::timeout(WAIT, self.lines.recv()).await {
            Ok(Some(line)) => line,
            _ => panic!(
                "{}: no output within {WAIT:?}; stderr:\n{}",
                self.name,
                self.stderr.lock().unwrap()
            ),
        }
    }

    /// Wait for `{"event": "ready"}`.
    async fn ready(mut self) -> Self {
        let line = self.next().await;
        assert_eq!(line["event"], "ready", "{}: {line}", self.name);
        self
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // A server stops cleanly when its stdin closes (deleting its fanout queue); kill it
        // if it takes too long.
        self.stdin.take();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A ready Python RPC server `s1` of `topic`.
async fn python_server(python: &Path, url: &str, topic: &str) -> Peer {
    let args = ["server", "--url", url, "--topic", topic, "--server", "s1"];
    Peer::spawn(python, "python server", &args).ready().await
}

/// Run `oslo_peer.py call …` and return its one JSON line.
async fn py_call(python: &Path, args: Vec<String>) -> Value {
    let python = python.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = peer_command(&python, &args)
            .stdin(Stdio::null())
            .output()
            .expect("running oslo_peer.py");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .rfind(|l| l.starts_with('{'))
            .unwrap_or_else(|| {
                panic!(
                    "oslo_peer.py {args:?} printed nothing; stderr:\n{}",
                    String::from_utf8_lossy(&output.stderr)
                )
            });
        serde_json::from_str(line).unwrap()
    })
    .await
    .unwrap()
}

/// Assert that a Python call failed with oslo's `RemoteError` naming `exc_type`: the class of a
/// module the client does not allow (`allowed_remote_exmods`).
fn assert_python_remote_error(answer: &Value, exc_type: &str) {
    let error = &answer["error"];
    assert_eq!(
        (error["class"].as_str(), error["exc_type"].as_str()),
        (Some("RemoteError"), Some(exc_type)),
        "{answer}"
    );
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

fn ctx() -> Context {
    Context::new()
        .with("user_id", "u-1")
        .with("project_id", "p-1")
        .with("request_id", "req-123")
}

fn nested() -> Value {
    json!({"a": 1, "b": [1, 2, 3], "c": {"nested": "\u{fc}\u{1F600}"}, "d": null, "e": 1.5, "f": true})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_python_server() {
    let Some((url, python)) = setup("rust_client_python_server") else {
        return;
    };
    let topic = unique("interop_rc");
    let mut server = python_server(&python, &url, &topic).await;
    let transport = get_rpc_transport(&url).await.unwrap();
    let client =
        RpcClient::new(transport.clone(), Target::topic(&topic)).timeout(Duration::from_secs(20));

    // Echo a nested value with non-ASCII text.
    let echoed: Value = client
        .call(&ctx(), "echo", &json!({"value": nested()}))
        .await
        .unwrap();
    assert_eq!(echoed, nested());

    // Cast: the server records it, with our context.
    client
        .cast(&ctx(), "record", &json!({"value": "cast-value"}))
        .await
        .unwrap();
    let line = server.next().await;
    assert_eq!(line["event"], "cast");
    assert_eq!(line["value"], "cast-value");
    assert_eq!(line["ctxt"]["user_id"], "u-1");
    assert_eq!(line["ctxt"]["request_id"], "req-123");

    // Server-directed call; the endpoint sees our context plus oslo's client_timeout.
    let who: Value = client
        .prepare()
        .server("s1")
        .call(&ctx(), "whoami", &json!({}))
        .await
        .unwrap();
    assert_eq!(who["server"], "s1");
    assert_eq!(who["ctxt"]["project_id"], "p-1");
    assert!(
        who["ctxt"]
            .as_object()
            .unwrap()
            .contains_key("client_timeout"),
        "{who}"
    );

    // Namespace and version.
    let other: Value = client
        .prepare()
        .namespace("otherns")
        .version("2.1")
        .call(&ctx(), "whoami", &json!({}))
        .await
        .unwrap();
    assert_eq!(other, json!({"server": "s1", "namespace": "otherns"}));

    // A remote ValueError.
    match client.call::<Value>(&ctx(), "fail", &json!({})).await {
        Err(MessagingError::Remote(remote)) => {
            assert_eq!(
                (remote.class.as_str(), remote.module.as_str()),
                ("ValueError", "builtins")
            );
            assert_eq!(
                remote.message,
                "fail() was called: this is the remote ValueError"
            );
            assert!(remote.traceback.len() > 1, "{remote:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
    // Unknown method, unsupported version.
    match client
        .call::<Value>(&ctx(), "no_such_method", &json!({}))
        .await
    {
        Err(MessagingError::NoSuchMethod { method, .. }) => assert_eq!(method, "no_such_method"),
        other => panic!("unexpected {other:?}"),
    }
    match client
        .prepare()
        .version("1.9")
        .call::<Value>(&ctx(), "echo", &json!({"value": 1}))
        .await
    {
        Err(MessagingError::UnsupportedVersion { version, .. }) => assert_eq!(version, "1.9"),
        other => panic!("unexpected {other:?}"),
    }
    // A server that does not exist: the call times out.
    let started = std::time::Instant::now();
    match client
        .prepare()
        .server("nosuchserver")
        .timeout(Duration::from_secs(2))
        .call::<Value>(&ctx(), "echo", &json!({"value": 1}))
        .await
    {
        Err(MessagingError::Timeout { .. }) => assert!(started.elapsed() >= Duration::from_secs(2)),
        other => panic!("unexpected {other:?}"),
    }
    // A long call kept alive by call-monitor heartbeats.
    let slept: f64 = client
        .prepare()
        .timeout(Duration::from_secs(10))
        .call_monitor_timeout(Duration::from_secs(2))
        .call(&ctx(), "sleep", &json!({"seconds": 3.5}))
        .await
        .unwrap();
    assert_eq!(slept, 3.5);

    transport.close().await;
    drop(server);
    delete_queues(&url, &[topic.clone(), format!("{topic}.s1")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_fanout_reaches_every_python_server() {
    let Some((url, python)) = setup("rust_fanout_reaches_every_python_server") else {
        return;
    };
    let topic = unique("interop_rf");
    let servers = [
        Peer::spawn(
            &python,
            "python server 1",
            &["server", "--url", &url, "--topic", &topic, "--server", "s1"],
        ),
        Peer::spawn(
            &python,
            "python server 2",
            &["server", "--url", &url, "--topic", &topic, "--server", "s2"],
        ),
    ];
    let mut ready = Vec::new();
    for server in servers {
        ready.push(server.ready().await);
    }
    let transport = get_rpc_transport(&url).await.unwrap();
    let client = RpcClient::new(transport.clone(), Target::topic(&topic));
    client
        .prepare()
        .fanout(true)
        .cast(&ctx(), "record", &json!({"value": "fanout"}))
        .await
        .unwrap();
    for server in &mut ready {
        let line = server.next().await;
        assert_eq!(
            (line["event"].clone(), line["value"].clone()),
            (json!("cast"), json!("fanout"))
        );
    }
    transport.close().await;
    drop(ready);
    delete_queues(
        &url,
        &[topic.clone(), format!("{topic}.s1"), format!("{topic}.s2")],
    )
    .await;
}

/// A Rust server with the same endpoints as the Python peer's.
async fn rust_server(
    url: &str,
    topic: &str,
    server: &str,
    casts: mpsc::UnboundedSender<(Value, Value)>,
) -> ServiceHandle {
    let transport = get_rpc_transport(url).await.unwrap();
    let name = server.to_owned();
    let other_name = server.to_owned();
    let default = Endpoint::new()
        .version("1.3")
        .method("echo", |_ctx: Context, args: Value| async move {
            Ok::<_, RemoteError>(args["value"].clone())
        })
        .method("fail", |_ctx: Context, _args: Value| async move {
            Err::<Value, _>(RemoteError::value_error(
                "fail() was called: this is the remote ValueError",
            ))
        })
        .method("sleep", |_ctx: Context, args: Value| async move {
            let seconds = args["seconds"].as_f64().unwrap_or(0.0);
            tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
            Ok::<_, RemoteError>(seconds)
        })
        .method("whoami", move |ctx: Context, _args: Value| {
            let name = name.clone();
            async move { Ok::<_, RemoteError>(json!({"server": name, "ctxt": ctx.0})) }
        })
        .method("record", move |ctx: Context, args: Value| {
            let casts = casts.clone();
            async move {
                casts
                    .send((args["value"].clone(), Value::Object(ctx.0)))
                    .unwrap();
                Ok::<_, RemoteError>(Value::Null)
            }
        });
    let other = Endpoint::new().namespace("otherns").version("2.1").method(
        "whoami",
        move |_ctx: Context, _args: Value| {
            let name = other_name.clone();
            async move { Ok::<_, RemoteError>(json!({"server": name, "namespace": "otherns"})) }
        },
    );
    RpcServer::new(transport, Target::topic(topic).server(server))
        .endpoint(default)
        .endpoint(other)
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_rust_server() {
    let Some((url, python)) = setup("python_client_rust_server") else {
        return;
    };
    let topic = unique("interop_pc");
    let (casts_tx, mut casts) = mpsc::unbounded_channel();
    let (fanout_tx, mut fanout_casts) = mpsc::unbounded_channel();
    let s1 = rust_server(&url, &topic, "s1", casts_tx).await;
    let s2 = rust_server(&url, &topic, "s2", fanout_tx).await;
    let base = |extra: &[&str]| {
        let mut args = strings(&["call", "--url", &url, "--topic", &topic, "--timeout", "20"]);
        args.extend(strings(extra));
        args
    };
    let ctxt = r#"{"user_id": "u-1", "request_id": "req-py"}"#;
    let echo_args = format!(r#"{{"value": {}}}"#, nested());
    // Every call at once: each Python process takes a second to start.
    let calls = vec![
        base(&["--server", "s1", "--method", "echo", "--args", &echo_args]),
        base(&["--server", "s1", "--method", "whoami", "--ctxt", ctxt]),
        base(&[
            "--method",
            "whoami",
            "--namespace",
            "otherns",
            "--version",
            "2.1",
        ]),
        base(&["--method", "fail"]),
        base(&["--method", "no_such_method"]),
        base(&[
            "--method",
            "echo",
            "--version",
            "1.9",
            "--args",
            r#"{"value": 1}"#,
        ]),
        {
            let mut args = strings(&[
                "call",
                "--url",
                &url,
                "--topic",
                &topic,
                "--server",
                "nosuchserver",
            ]);
            args.extend(strings(&[
                "--timeout",
                "2",
                "--method",
                "echo",
                "--args",
                r#"{"value": 1}"#,
            ]));
            args
        },
        base(&[
            "--method",
            "sleep",
            "--args",
            r#"{"seconds": 3.5}"#,
            "--call-monitor-timeout",
            "2",
            "--timeout",
            "10",
        ]),
        base(&[
            "--server",
            "s1",
            "--method",
            "record",
            "--args",
            r#"{"value": "cast-value"}"#,
            "--cast",
            "--ctxt",
            ctxt,
        ]),
        base(&[
            "--method",
            "record",
            "--args",
            r#"{"value": "fanout-value"}"#,
            "--fanout",
        ]),
    ];
    let results =
        futures_util::future::join_all(calls.into_iter().map(|args| py_call(&python, args))).await;
    let [echo, whoami, otherns, fail, no_such, bad_version, missing, monitored, cast, fanout]: [Value; 10] =
        results.try_into().unwrap();

    assert_eq!(echo["result"], nested(), "{echo}");
    assert_eq!(whoami["result"]["server"], "s1", "{whoami}");
    let seen_ctxt = &whoami["result"]["ctxt"];
    assert_eq!(
        (
            seen_ctxt["user_id"].clone(),
            seen_ctxt["request_id"].clone()
        ),
        (json!("u-1"), json!("req-py"))
    );
    assert!(
        ["s1", "s2"].contains(&otherns["result"]["server"].as_str().unwrap()),
        "{otherns}"
    );
    assert_eq!(otherns["result"]["namespace"], "otherns");
    // builtins come back as the same class, with the remote traceback appended.
    assert_eq!(fail["error"]["class"], "ValueError", "{fail}");
    assert!(
        fail["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("fail() was called"),
        "{fail}"
    );
    // oslo_messaging.rpc.dispatcher is not an allowed module: RemoteError(exc_type=...).
    assert_python_remote_error(&no_such, "NoSuchMethod");
    assert_python_remote_error(&bad_version, "UnsupportedVersion");
    assert_eq!(missing["error"]["class"], "MessagingTimeout", "{missing}");
    assert_eq!(monitored["result"], 3.5, "{monitored}");
    assert_eq!(cast, json!({"result": null}));
    assert_eq!(fanout, json!({"result": null}));
    // s1 got the directed cast and the fanout cast (in either order), s2 the fanout cast.
    let mut at_s1 = Vec::new();
    for _ in 0..2 {
        at_s1.push(
            tokio::time::timeout(WAIT, casts.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    at_s1.sort_by_key(|(value, _)| value.to_string());
    assert_eq!(
        (at_s1[0].0.clone(), at_s1[1].0.clone()),
        (json!("cast-value"), json!("fanout-value"))
    );
    assert_eq!(at_s1[0].1["user_id"], "u-1");
    let (value, _) = tokio::time::timeout(WAIT, fanout_casts.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(value, "fanout-value");

    s1.shutdown().await;
    s2.shutdown().await;
    delete_queues(
        &url,
        &[topic.clone(), format!("{topic}.s1"), format!("{topic}.s2")],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_notifier_python_listener() {
    let Some((url, python)) = setup("rust_notifier_python_listener") else {
        return;
    };
    let topic = unique("interop_rn");
    let pool_topic = unique("interop_rnp");
    let pool = unique("interop_pool");
    let count = Priority::ALL.len().to_string();
    let listeners = [
        Peer::spawn(
            &python,
            "python listener",
            &[
                "listen", "--url", &url, "--topic", &topic, "--count", &count,
            ],
        ),
        Peer::spawn(
            &python,
            "python pool listener",
            &[
                "listen",
                "--url",
                &url,
                "--topic",
                &pool_topic,
                "--pool",
                &pool,
                "--count",
                "2",
            ],
        ),
    ];
    let mut ready = Vec::new();
    for listener in listeners {
        ready.push(listener.ready().await);
    }
    let [mut listener, mut pooled]: [Peer; 2] = ready.try_into().ok().unwrap();
    let transport = get_notification_transport(&url).await.unwrap();
    let notifier = Notifier::new(transport.clone(), "compute.host1").topics([topic.clone()]);
    for priority in Priority::ALL {
        notifier
            .notify(
                &ctx(),
                priority,
                &format!("test.{}", priority.as_str()),
                &json!({"prio": priority.as_str(), "v": nested()}),
            )
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    for _ in Priority::ALL {
        let line = listener.next().await;
        let priority = line["priority"].as_str().unwrap().to_owned();
        assert_eq!(line["publisher_id"], "compute.host1");
        assert_eq!(line["event_type"], format!("test.{priority}"));
        assert_eq!(line["payload"], json!({"prio": priority, "v": nested()}));
        assert_eq!(line["ctxt"]["user_id"], "u-1", "{line}");
        assert_eq!(line["metadata"]["message_id"].as_str().unwrap().len(), 36);
        seen.push(priority);
    }
    seen.sort();
    let mut expected: Vec<String> = Priority::ALL
        .iter()
        .map(|p| p.as_str().to_owned())
        .collect();
    expected.sort();
    assert_eq!(seen, expected);

    let pool_notifier = Notifier::new(transport.clone(), "p").topics([pool_topic.clone()]);
    pool_notifier.info(&ctx(), "pool.one", &1).await.unwrap();
    pool_notifier.error(&ctx(), "pool.two", &2).await.unwrap();
    let mut events = vec![
        pooled.next().await["event_type"].clone(),
        pooled.next().await["event_type"].clone(),
    ];
    events.sort_by_key(|e| e.to_string());
    assert_eq!(events, [json!("pool.one"), json!("pool.two")]);

    transport.close().await;
    drop((listener, pooled));
    let mut queues: Vec<String> = Priority::ALL
        .iter()
        .flat_map(|p| {
            [
                format!("{topic}.{}", p.as_str()),
                format!("{pool_topic}.{}", p.as_str()),
            ]
        })
        .collect();
    queues.push(pool);
    delete_queues(&url, &queues).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_notifier_rust_listener() {
    let Some((url, python)) = setup("python_notifier_rust_listener") else {
        return;
    };
    let topic = unique("interop_pn");
    let transport = get_notification_transport(&url).await.unwrap();
    let (listener, mut rx) = forwarding_listener(&transport, &topic).await;
    let payload = nested().to_string();
    let common_args = |driver: &str, priority: &str, event: &str| {
        strings(&[
            "notify",
            "--url",
            &url,
            "--topic",
            &topic,
            "--publisher-id",
            "compute.host1",
            "--event-type",
            event,
            "--payload",
            &payload,
            "--priority",
            priority,
            "--driver",
            driver,
            "--ctxt-kind",
            "object",
            "--ctxt",
            r#"{"user_id": "u-py", "request_id": "req-py"}"#,
        ])
    };
    let sends = [
        common_args("messagingv2", "info", "v2.info"),
        common_args("messaging", "warning", "v1.warning"),
        common_args("messagingv2", "sample", "v2.sample"),
    ];
    for result in
        futures_util::future::join_all(sends.into_iter().map(|args| py_call(&python, args))).await
    {
        assert_eq!(result, json!({"sent": 1}));
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(
            tokio::time::timeout(WAIT, rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    got.sort_by(|a, b| a.event_type.cmp(&b.event_type));
    let summary: Vec<(&str, Priority)> = got
        .iter()
        .map(|n| (n.event_type.as_str(), n.priority))
        .collect();
    assert_eq!(
        summary,
        [
            ("v1.warning", Priority::Warn),
            ("v2.info", Priority::Info),
            ("v2.sample", Priority::Sample)
        ]
    );
    for n in &got {
        assert_eq!(n.publisher_id, "compute.host1");
        assert_eq!(n.payload, nested());
        assert_eq!(n.context.get_str("user_id"), Some("u-py"), "{n:?}");
        assert_eq!(n.metadata.message_id.len(), 36);
        assert!(n.metadata.timestamp.len() >= 19);
    }
    listener.shutdown().await;
    transport.close().await;
    let queues: Vec<String> = Priority::ALL
        .iter()
        .map(|p| format!("{topic}.{}", p.as_str()))
        .collect();
    delete_queues(&url, &queues).await;
}

/// Signed messages still work with Python peers, which ignore the `_signature` key of
/// requests, replies and notifications: with signing in warn mode, a Rust client calls a
/// Python server, a Python client calls a Rust server, and a Python listener gets a signed
/// notification. The Rust side counts the unsigned Python messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_messages_interoperate_with_python_in_warn_mode() {
    let Some((url, python)) = setup("signed_messages_interoperate_with_python_in_warn_mode") else {
        return;
    };
    let options = TransportOptions {
        signing: Some(
            signing::Signing::parse("k1:interop secret 0123456789")
                .unwrap()
                .with_mode(signing::SignatureMode::Warn),
        ),
        ..TransportOptions::default()
    };

    // Rust (signing) → Python server: the request carries `_signature`, the reply has none.
    let topic = unique("interop_sig_rc");
    let mut server = python_server(&python, &url, &topic).await;
    let transport = get_rpc_transport_with(&url, &options).await.unwrap();
    let client =
        RpcClient::new(transport.clone(), Target::topic(&topic)).timeout(Duration::from_secs(20));
    let echoed: Value = client
        .call(&ctx(), "echo", &json!({"value": nested()}))
        .await
        .unwrap();
    assert_eq!(echoed, nested());
    assert_eq!(
        transport.signature_failures(),
        1,
        "the unsigned Python reply"
    );
    client
        .cast(&ctx(), "record", &json!({"value": "signed cast"}))
        .await
        .unwrap();
    let line = server.next().await;
    assert_eq!(
        (line["event"].clone(), line["value"].clone()),
        (json!("cast"), json!("signed cast"))
    );
    assert_eq!(line["ctxt"]["user_id"], "u-1", "{line}");
    transport.close().await;
    drop(server);

    // Python → Rust server (signing): the unsigned request is served, the reply is signed.
    let topic = unique("interop_sig_pc");
    let server_transport = get_rpc_transport_with(&url, &options).await.unwrap();
    let server = RpcServer::new(server_transport.clone(), Target::topic(&topic).server("s1"))
        .endpoint(
            Endpoint::new().method("echo", |_ctx: Context, args: Value| async move {
                Ok::<_, RemoteError>(args["value"].clone())
            }),
        )
        .start()
        .await
        .unwrap();
    let echo_args = format!(r#"{{"value": {}}}"#, nested());
    let answer = py_call(
        &python,
        strings(&[
            "call",
            "--url",
            &url,
            "--topic",
            &topic,
            "--timeout",
            "20",
            "--method",
            "echo",
            "--args",
            &echo_args,
        ]),
    )
    .await;
    assert_eq!(answer["result"], nested(), "{answer}");
    assert_eq!(
        server_transport.signature_failures(),
        1,
        "the unsigned Python request"
    );
    server.shutdown().await;

    // Rust notifier (signing) → Python listener.
    let notify_topic = unique("interop_sig_rn");
    let mut listener = Peer::spawn(
        &python,
        "python listener",
        &[
            "listen",
            "--url",
            &url,
            "--topic",
            &notify_topic,
            "--count",
            "1",
        ],
    )
    .ready()
    .await;
    let notify = get_notification_transport_with(&url, &options)
        .await
        .unwrap();
    Notifier::new(notify.clone(), "compute.host1")
        .topics([notify_topic.clone()])
        .info(&ctx(), "test.signed", &json!({"v": nested()}))
        .await
        .unwrap();
    let line = listener.next().await;
    assert_eq!(line["event_type"], "test.signed", "{line}");
    assert_eq!(line["payload"], json!({"v": nested()}));
    assert_eq!(line["ctxt"]["user_id"], "u-1", "{line}");
    notify.close().await;
    drop(listener);
    let queues: Vec<String> = Priority::ALL
        .iter()
        .map(|p| format!("{notify_topic}.{}", p.as_str()))
        .collect();
    delete_queues(&url, &queues).await;
}

/// The typed service the Python peer's `SchedulerEndpoint` implements.
#[messaging_macros::service(crate = "messaging_core", namespace = "sched", version = "1.2")]
trait Scheduler {
    async fn select_hosts(
        &self,
        ctx: Context,
        flavor: String,
        count: u32,
        zone: Option<String>,
    ) -> std::result::Result<Vec<String>, NoValidHost>;
    #[since = "1.2"]
    async fn ping(&self, ctx: Context);
}

/// The peer's `peer_exceptions.NoValidHost`.
#[derive(Debug, PartialEq, thiserror::Error, messaging_macros::RemoteException)]
#[remote(crate = "messaging_core", module = "peer_exceptions")]
#[error("no valid host: {reason}")]
struct NoValidHost {
    reason: String,
}

/// A typed Rust client calls the Python server: keyword arguments (an `Option` left out takes
/// Python's default), the Python exception as the Rust type, a version-cap refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_rust_client_python_server() {
    let Some((url, python)) = setup("typed_rust_client_python_server") else {
        return;
    };
    let topic = unique("interop_trc");
    let mut server = python_server(&python, &url, &topic).await;
    let transport = get_rpc_transport(&url).await.unwrap();
    let sched = SchedulerClient::new(transport.clone(), Target::topic(&topic))
        .timeout(Duration::from_secs(20));

    let hosts = sched
        .select_hosts(&ctx(), "m1.small".into(), 2, None)
        .await
        .unwrap();
    assert_eq!(hosts, ["nova-s1-0", "nova-s1-1"]);
    let zoned = sched
        .select_hosts(&ctx(), "m1.small".into(), 1, Some("az1".into()))
        .await
        .unwrap();
    assert_eq!(zoned, ["az1-s1-0"]);
    match sched.select_hosts(&ctx(), "m1.huge".into(), 1, None).await {
        Err(typed::CallError::Service(error)) => assert_eq!(
            error,
            NoValidHost {
                reason: "no host has room for m1.huge".into()
            }
        ),
        other => panic!("expected NoValidHost from Python, got {other:?}"),
    }

    // `ping` is since 1.2: sent under no cap, refused (not sent) under a 1.1 cap.
    sched.cast().ping(&ctx()).await.unwrap();
    assert_eq!(server.next().await["event"], "ping");
    match sched.prepare().version_cap("1.1").cast().ping(&ctx()).await {
        Err(MessagingError::VersionCap { version, cap }) => {
            assert_eq!((version.as_str(), cap.as_str()), ("1.2", "1.1"))
        }
        other => panic!("expected VersionCap, got {other:?}"),
    }
    RpcClient::new(transport.clone(), Target::topic(&topic))
        .cast(&ctx(), "record", &json!({"value": "after the refusal"}))
        .await
        .unwrap();
    let line = server.next().await;
    assert_eq!(
        (line["event"].clone(), line["value"].clone()),
        (json!("cast"), json!("after the refusal")),
        "the refused ping reached the server"
    );

    transport.close().await;
    drop(server);
    delete_queues(&url, &[topic.clone(), format!("{topic}.s1")]).await;
}

/// The Rust implementation of `Scheduler` that Python clients call.
struct RustScheduler {
    pings: mpsc::UnboundedSender<Value>,
}

impl Scheduler for RustScheduler {
    async fn select_hosts(
        &self,
        _ctx: Context,
        flavor: String,
        count: u32,
        zone: Option<String>,
    ) -> std::result::Result<Vec<String>, NoValidHost> {
        if flavor == "m1.huge" {
            return Err(NoValidHost {
                reason: format!("no host has room for {flavor}"),
            });
        }
        let zone = zone.unwrap_or_else(|| "nova".into());
        Ok((0..count).map(|i| format!("{zone}-rust-{i}")).collect())
    }

    async fn ping(&self, ctx: Context) {
        self.pings.send(Value::Object(ctx.0)).ok();
    }
}

/// Python clients call a typed Rust server: results, the declared error as a Python remote
/// exception (rebuilt as its class, kwargs included, when the module is allowed), Python's
/// TypeError for unknown or missing keyword arguments, and the advertised version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_typed_rust_server() {
    let Some((url, python)) = setup("python_client_typed_rust_server") else {
        return;
    };
    let topic = unique("interop_tpc");
    let transport = get_rpc_transport(&url).await.unwrap();
    let (pings_tx, mut pings) = mpsc::unbounded_channel();
    let server = RpcServer::new(transport.clone(), Target::topic(&topic).server("s1"))
        .endpoint(SchedulerServer::new(RustScheduler { pings: pings_tx }))
        .start()
        .await
        .unwrap();
    let call = |method: &str, args: &str, extra: &[&str]| {
        let mut all = strings(&[
            "call",
            "--url",
            &url,
            "--topic",
            &topic,
            "--timeout",
            "20",
            "--namespace",
            "sched",
            "--method",
            method,
            "--args",
            args,
        ]);
        all.extend(strings(extra));
        all
    };
    let calls = vec![
        call("select_hosts", r#"{"flavor": "m1.small", "count": 2}"#, &[]),
        call("select_hosts", r#"{"flavor": "m1.huge", "count": 1}"#, &[]),
        call(
            "select_hosts",
            r#"{"flavor": "m1.huge", "count": 1}"#,
            &["--allowed-remote-exmods", "peer_exceptions"],
        ),
        call(
            "select_hosts",
            r#"{"flavor": "m1", "count": 1, "zonee": "az1"}"#,
            &[],
        ),
        call("select_hosts", r#"{"flavor": "m1"}"#, &[]),
        call("ping", "{}", &["--version", "1.3"]),
        call(
            "ping",
            "{}",
            &[
                "--version",
                "1.2",
                "--cast",
                "--ctxt",
                r#"{"user_id": "u-py"}"#,
            ],
        ),
    ];
    let results =
        futures_util::future::join_all(calls.into_iter().map(|args| py_call(&python, args))).await;
    let [hosts, remote, rebuilt, unknown, missing, too_new, pinged]: [Value; 7] =
        results.try_into().unwrap();

    assert_eq!(
        hosts["result"],
        json!(["nova-rust-0", "nova-rust-1"]),
        "{hosts}"
    );
    // Module not allowed: oslo's RemoteError naming the class.
    assert_python_remote_error(&remote, "NoValidHost");
    // Module allowed: Python rebuilds its own class from the class name, module and kwargs.
    assert_eq!(rebuilt["error"]["class"], "NoValidHost_Remote", "{rebuilt}");
    assert_eq!(
        rebuilt["error"]["kwargs"],
        json!({"reason": "no host has room for m1.huge"}),
        "{rebuilt}"
    );
    assert!(
        rebuilt["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("no valid host: no host has room for m1.huge"),
        "{rebuilt}"
    );
    for (answer, expected) in [
        (
            &unknown,
            "Scheduler.select_hosts() got an unexpected keyword argument 'zonee'",
        ),
        (
            &missing,
            "Scheduler.select_hosts() missing 1 required positional argument: 'count'",
        ),
    ] {
        assert_eq!(answer["error"]["class"], "TypeError", "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(expected),
            "{answer}"
        );
    }
    assert_python_remote_error(&too_new, "UnsupportedVersion");
    assert_eq!(pinged, json!({"result": null}));
    let ctxt = tokio::time::timeout(WAIT, pings.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ctxt["user_id"], "u-py");

    server.shutdown().await;
    transport.close().await;
    delete_queues(&url, &[topic.clone(), format!("{topic}.s1")]).await;
}

/// `kombu_compression`: a notification Python compresses (gzip) is read here, and one this
/// driver compresses (gzip, bzip2) is read by Python.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_notifications_interoperate_with_python() {
    let Some((url, python)) = setup("compressed_notifications_interoperate_with_python") else {
        return;
    };
    let topic = unique("interop_zip");
    let payload = json!({"text": "compressible ".repeat(1_000)}).to_string();
    let sent = py_call(
        &python,
        strings(&[
            "notify",
            "--url",
            &url,
            "--topic",
            &topic,
            "--publisher-id",
            "compute.host1",
            "--event-type",
            "from.python.gzip",
            "--payload",
            &payload,
            "--rabbit-option",
            "kombu_compression=gzip",
        ]),
    )
    .await;
    assert!(sent.get("error").is_none(), "{sent}");
    // oslo declared `<topic>.info`: take Python's message from it, check that it is
    // compressed, and put it back for the listener.
    let (connection, channel) = raw(&url).await;
    let message = raw_get(&channel, &format!("{topic}.info"), WAIT)
        .await
        .expect("Python's notification");
    let headers = message.properties.headers().clone().unwrap_or_default();
    assert_eq!(
        headers.inner().get("compression"),
        Some(&lapin::types::AMQPValue::LongString(
            "application/x-gzip".into()
        )),
        "{headers:?}"
    );
    assert!(message.delivery.data.len() < 1_000, "compressed");
    raw_publish(
        &channel,
        "openstack",
        &format!("{topic}.info"),
        &message.delivery.data,
        message.properties.clone(),
    )
    .await;
    let _ = connection.close(200, "OK".into()).await;
    let transport = get_notification_transport(&url).await.unwrap();
    let (listener, mut rx) = forwarding_listener(&transport, &topic).await;
    let got = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.event_type, "from.python.gzip");
    assert_eq!(got.payload.to_string(), payload);
    listener.shutdown().await;
    transport.close().await;

    for codec in ["gzip", "bzip2"] {
        let topic = unique("interop_zip_rust");
        let mut python_listener = Peer::spawn(
            &python,
            "python listener",
            &["listen", "--url", &url, "--topic", &topic],
        )
        .ready()
        .await;
        let compressed = with_options(&url, &format!("kombu_compression={codec}"));
        let transport = get_notification_transport(&compressed).await.unwrap();
        Notifier::new(transport.clone(), "compute.host1")
            .topics([topic.clone()])
            .info(&ctx(), &format!("from.rust.{codec}"), &payload)
            .await
            .unwrap();
        let line = python_listener.next().await;
        assert_eq!(line["event_type"], format!("from.rust.{codec}"), "{line}");
        assert_eq!(line["payload"], json!(payload));
        transport.close().await;
        delete_queues(&url, &[format!("{topic}.info")]).await;
    }
    delete_queues(&url, &[format!("{topic}.info")]).await;
}

/// `rabbit_stream_fanout`: a Python server and a Rust server read the same `<topic>_fanout`
/// stream (declared alike by both), and a fanout cast from Rust reaches both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_rust_servers_share_a_fanout_stream() {
    let Some((url, python)) = setup("python_and_rust_servers_share_a_fanout_stream") else {
        return;
    };
    let topic = unique("interop_stream");
    let options = [
        ("rabbit_stream_fanout", "true"),
        ("rabbit_transient_quorum_queue", "true"),
        ("rabbit_qos_prefetch_count", "10"),
        ("rabbit_transient_queues_ttl", "600"),
    ];
    let mut args = vec!["server", "--url", &url, "--topic", &topic, "--server", "py"];
    let python_options: Vec<String> = options.iter().map(|(k, v)| format!("{k}={v}")).collect();
    for option in &python_options {
        args.extend(["--rabbit-option", option]);
    }
    let mut python_server = Peer::spawn(&python, "python stream server", &args)
        .ready()
        .await;
    let query: Vec<String> = python_options.clone();
    let streamed = with_options(&url, &query.join("&"));
    let (casts_tx, mut casts) = mpsc::unbounded_channel();
    let rust = rust_server(&streamed, &topic, "rs", casts_tx).await;
    // One stream, both servers consuming it; no fanout queue of either server.
    let fanouts = queues(&format!("{topic}_fanout"));
    let names: Vec<&Value> = fanouts.iter().map(|q| &q["name"]).collect();
    assert_eq!(names, [&json!(format!("{topic}_fanout"))]);
    assert_eq!(fanouts[0]["consumers"], 2, "{fanouts:?}");
    let transport = get_rpc_transport(&streamed).await.unwrap();
    RpcClient::new(transport.clone(), Target::topic(&topic))
        .prepare()
        .fanout(true)
        .cast(&ctx(), "record", &json!({"value": "streamed"}))
        .await
        .unwrap();
    let line = python_server.next().await;
    assert_eq!(
        (line["event"].clone(), line["value"].clone()),
        (json!("cast"), json!("streamed"))
    );
    let (value, _) = tokio::time::timeout(WAIT, casts.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(value, "streamed");
    rust.shutdown().await;
    transport.close().await;
    drop(python_server);
    delete_queues(
        &url,
        &[
            topic.clone(),
            format!("{topic}.py"),
            format!("{topic}.rs"),
            format!("{topic}_fanout"),
        ],
    )
    .await;
}

/// W3C trace context crosses Python peers: it travels as the context keys `traceparent` and
/// `tracestate`, which a Python server and a Python listener accept and hand to their
/// endpoints as they are; a Python client's `traceparent` reaches a Rust method as its trace.
/// Without a trace nothing is added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_crosses_python_peers() {
    use messaging_core::telemetry::TraceContext;
    let Some((url, python)) = setup("trace_context_crosses_python_peers") else {
        return;
    };
    let (topic, events) = (unique("interop_trace"), unique("interop_trace_events"));
    let _server = python_server(&python, &url, &topic).await;
    let listen = ["listen", "--url", &url, "--topic", &events, "--count", "1"];
    let mut listener = Peer::spawn(&python, "python listener", &listen)
        .ready()
        .await;
    let transport = get_rpc_transport(&url).await.unwrap();
    let client = RpcClient::new(transport.clone(), Target::topic(&topic)).timeout(WAIT);
    let who: Value = client.call(&ctx(), "whoami", &json!({})).await.unwrap();
    assert_eq!(who["ctxt"]["user_id"], "u-1");
    assert!(who["ctxt"].get("traceparent").is_none(), "{who}");

    let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let trace = TraceContext::parse(parent, Some("congo=t61rcWkgMzE")).unwrap();
    let traced = trace.clone().scope(async {
        let who: Value = client.call(&ctx(), "whoami", &json!({})).await.unwrap();
        let notifications = get_notification_transport(&url).await.unwrap();
        let notifier = Notifier::new(notifications.clone(), "trace.test").topics([&events]);
        notifier.info(&ctx(), "trace.event", &1).await.unwrap();
        notifications.close().await;
        who
    });
    let who = traced.await;
    assert_eq!(who["ctxt"]["traceparent"], parent, "{who}");
    assert_eq!(who["ctxt"]["tracestate"], "congo=t61rcWkgMzE");
    let heard = listener.next().await;
    assert_eq!(heard["event_type"], "trace.event");
    assert_eq!(heard["ctxt"]["traceparent"], parent, "{heard}");
    assert_eq!(heard["ctxt"]["user_id"], "u-1");

    // A Python client's trace context, as a Rust method sees it.
    let rust_topic = unique("interop_trace_rs");
    let method = Endpoint::new().method("trace", |_ctx: Context, _: NoArgs| async {
        Ok::<_, RemoteError>(TraceContext::current().map(|t| t.traceparent()))
    });
    let server = RpcServer::new(transport.clone(), Target::topic(&rust_topic).server("s1"))
        .endpoint(method)
        .start()
        .await
        .unwrap();
    let ctxt = format!(r#"{{"traceparent": "{parent}", "user_id": "u-py"}}"#);
    let args = [
        "call",
        "--url",
        &url,
        "--topic",
        &rust_topic,
        "--method",
        "trace",
    ];
    let mut args = strings(&args);
    args.extend(strings(&["--timeout", "20", "--ctxt", &ctxt]));
    let answer = py_call(&python, args).await;
    assert_eq!(answer, json!({"result": parent}));

    server.shutdown().await;
    transport.close().await;
    let mut queues: Vec<String> = Priority::ALL
        .iter()
        .map(|p| format!("{events}.{}", p.as_str()))
        .collect();
    queues.extend([topic.clone(), format!("{topic}.s1")]);
    queues.extend([rust_topic.clone(), format!("{rust_topic}.s1")]);
    delete_queues(&url, &queues).await;
}

//! Helpers shared by the integration tests: the broker URL (and the skip rule), unique names,
//! raw AMQP access and `rabbitmqctl`.
#![allow(dead_code)]

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use messaging_core::TransportUrl;
use serde_json::Value;

/// The broker URL from `RABBIT_URL`, after installing the driver. `None` (with a visible
/// `skipped:` line) when it is unset, unless `MESSAGING_REQUIRE_BROKERS=1`: then the test fails.
pub fn rabbit_url(test: &str) -> Option<String> {
    match std::env::var("RABBIT_URL") {
        Ok(url) if !url.is_empty() => {
            init_logs();
            messaging_core::install_driver(Arc::new(driver_rabbit::RabbitDriver));
            Some(url)
        }
        _ => {
            if std::env::var("MESSAGING_REQUIRE_BROKERS").as_deref() == Ok("1") {
                panic!("{test}: RABBIT_URL is not set but MESSAGING_REQUIRE_BROKERS=1");
            }
            println!("skipped: {test}: RABBIT_URL not set");
            None
        }
    }
}

/// Logs on the test output, filtered by `RUST_LOG` (e.g. `RUST_LOG=driver_rabbit=debug`).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
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

/// A raw AMQP connection and channel to the broker of `url`, for checks behind the driver's back.
pub async fn raw(url: &str) -> (Connection, Channel) {
    let url = TransportUrl::parse(url).unwrap();
    let host = &url.hosts[0];
    let vhost = url
        .virtual_host
        .as_deref()
        .unwrap_or("/")
        .replace('/', "%2f");
    let uri = format!(
        "amqp://{}:{}@{}:{}/{vhost}",
        host.username.as_deref().unwrap_or("guest"),
        host.password.as_deref().unwrap_or("guest"),
        host.hostname,
        host.port_or(5672)
    );
    let connection = Connection::connect(&uri, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    (connection, channel)
}

/// Declare a plain queue (no arguments) and bind it.
pub async fn raw_queue(channel: &Channel, queue: &str, exchange: &str, key: &str) {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    if !exchange.is_empty() {
        channel
            .queue_bind(
                queue.into(),
                exchange.into(),
                key.into(),
                Default::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }
}

/// Publish raw bytes.
pub async fn raw_publish(
    channel: &Channel,
    exchange: &str,
    key: &str,
    body: &[u8],
    properties: BasicProperties,
) {
    channel
        .basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

/// The properties oslo sets.
pub fn json_properties() -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("utf-8".into())
        .with_delivery_mode(2)
        .with_priority(0)
        .with_headers(FieldTable::default())
}

/// Wait up to `within` for a message in `queue` (basic.get, acknowledged).
pub async fn raw_get(
    channel: &Channel,
    queue: &str,
    within: Duration,
) -> Option<lapin::message::BasicGetMessage> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let got = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap();
        if got.is_some() || tokio::time::Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Decode an oslo envelope body: (outer JSON, inner message dict).
pub fn envelope(body: &[u8]) -> (Value, serde_json::Map<String, Value>) {
    let outer: Value = serde_json::from_slice(body).unwrap();
    let inner = outer["oslo.message"]
        .as_str()
        .expect("an oslo.message string");
    let Value::Object(inner) = serde_json::from_str(inner).unwrap() else {
        panic!("inner message is not an object")
    };
    (outer, inner)
}

/// `rabbitmqctl <args> --formatter json -q`, parsed (a list of objects).
pub fn rabbitmqctl(args: &[&str]) -> Vec<Value> {
    let run = || {
        Command::new("rabbitmqctl")
            .args(args)
            .args(["--formatter", "json", "-q"])
            .output()
            .expect("running rabbitmqctl")
    };
    let mut output = run();
    // A listing fails as a whole (`badrpc`) when a queue it visits is deleted meanwhile, as
    // the queues of tests running beside this one are: such a listing is asked again.
    for _ in 0..5 {
        if output.status.success() || !String::from_utf8_lossy(&output.stderr).contains("badrpc") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        output = run();
    }
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    match serde_json::from_slice(&output.stdout) {
        Ok(Value::Array(rows)) => rows,
        other => panic!("rabbitmqctl {args:?}: unexpected output {other:?}"),
    }
}

/// Queues whose name starts with `prefix`: name → row (name, durable, auto_delete,
/// exclusive, arguments, messages, consumers).
pub fn queues(prefix: &str) -> Vec<Value> {
    rabbitmqctl(&[
        "list_queues",
        "name",
        "durable",
        "auto_delete",
        "exclusive",
        "arguments",
        "messages",
        "consumers",
    ])
    .into_iter()
    .filter(|q| q["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
    .collect()
}

/// The row of one queue, if it exists.
pub fn queue(name: &str) -> Option<Value> {
    queues(name).into_iter().find(|q| q["name"] == name)
}

/// Exchanges whose name starts with `prefix`.
pub fn exchanges(prefix: &str) -> Vec<Value> {
    rabbitmqctl(&["list_exchanges", "name", "type", "durable", "auto_delete"])
        .into_iter()
        .filter(|q| q["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
        .collect()
}

/// Bindings `(source, destination, routing key)` whose destination starts with `prefix`.
pub fn bindings(prefix: &str) -> Vec<(String, String, String)> {
    rabbitmqctl(&[
        "list_bindings",
        "source_name",
        "destination_name",
        "routing_key",
    ])
    .into_iter()
    .filter(|b| {
        b["destination_name"]
            .as_str()
            .is_some_and(|n| n.starts_with(prefix))
    })
    .map(|b| {
        let s = |k: &str| b[k].as_str().unwrap_or_default().to_owned();
        (s("source_name"), s("destination_name"), s("routing_key"))
    })
    .collect()
}

/// Delete the queues a test leaves behind on purpose (oslo keeps topic queues).
pub async fn delete_queues(url: &str, names: &[String]) {
    let (connection, channel) = raw(url).await;
    for name in names {
        let _ = channel
            .queue_delete(name.as_str().into(), Default::default())
            .await;
    }
    let _ = connection.close(200, "OK".into()).await;
}

/// `rabbitmqctl <args> -q`, which must succeed.
pub fn ctl(args: &[&str]) {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .arg("-q")
        .output()
        .expect("running rabbitmqctl");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A virtual host of the test's own, deleted on drop.
pub struct Vhost(pub String);

impl Vhost {
    /// Create it, with all permissions for guest.
    pub fn new() -> Self {
        let name = unique("drv_vhost");
        ctl(&["add_vhost", &name]);
        ctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        Vhost(name)
    }

    /// Close every client connection of the virtual host.
    pub fn close_connections(&self) {
        ctl(&[
            "close_all_connections",
            "--vhost",
            &self.0,
            "test: connection loss",
        ]);
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.0, "-q"])
            .output();
    }
}

/// `url` moved to virtual host `vhost`, with `options` added to its query.
pub fn in_vhost(url: &str, vhost: &Vhost, options: &str) -> String {
    let parsed = TransportUrl::parse(url).unwrap();
    let host = &parsed.hosts[0];
    format!(
        "rabbit://{}:{}@{}:{}/{}?{options}",
        host.username.as_deref().unwrap_or("guest"),
        host.password.as_deref().unwrap_or("guest"),
        host.hostname,
        host.port_or(5672),
        vhost.0
    )
}

/// `.ci/brokers <action> rabbit` (`stop` or `start`): the real broker process goes away or
/// comes back. Blocking; panics if the script fails.
pub fn rabbit_broker(action: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../.ci/brokers");
    let output = Command::new(script)
        .args([action, "rabbit"])
        .output()
        .expect("running .ci/brokers");
    assert!(
        output.status.success(),
        ".ci/brokers {action} rabbit: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Queues of virtual host `vhost`: name → number of consumers.
pub fn consumers(vhost: &Vhost) -> std::collections::HashMap<String, u64> {
    rabbitmqctl(&["list_queues", "-p", &vhost.0, "name", "consumers"])
        .into_iter()
        .map(|q| {
            (
                q["name"].as_str().unwrap_or_default().to_owned(),
                q["consumers"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

/// A notification listener of `topic` that hands every notification to the receiver.
pub async fn forwarding_listener(
    transport: &messaging_core::NotificationTransport,
    topic: &str,
) -> (
    messaging_core::ServiceHandle,
    tokio::sync::mpsc::UnboundedReceiver<messaging_core::Notification>,
) {
    use messaging_core::{Notification, NotificationEndpoint, NotificationResult};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = messaging_core::NotificationListener::new(transport.clone())
        .target(messaging_core::Target::topic(topic))
        .endpoint(NotificationEndpoint::new().on_all(move |n: Notification| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(n);
                NotificationResult::Handled
            }
        }))
        .start()
        .await
        .unwrap();
    (listener, rx)
}

/// A server `server` of `topic` on `transport` whose `record` method hands
/// `(server, its value)` to `casts`, and whose `echo` returns its value.
pub async fn recording_server_on(
    transport: &messaging_core::RpcTransport,
    topic: &str,
    server: &str,
    casts: tokio::sync::mpsc::UnboundedSender<(String, String)>,
) -> messaging_core::ServiceHandle {
    use messaging_core::{Context, Endpoint, RemoteError, RpcServer, Target};
    let name = server.to_owned();
    let endpoint = Endpoint::new()
        .method("echo", |_ctx: Context, args: Value| async move {
            Ok::<_, RemoteError>(args["value"].clone())
        })
        .method("record", move |_ctx: Context, args: Value| {
            let (casts, name) = (casts.clone(), name.clone());
            async move {
                let value = args["value"].as_str().unwrap_or_default().to_owned();
                let _ = casts.send((name, value));
                Ok::<_, RemoteError>(Value::Null)
            }
        });
    RpcServer::new(transport.clone(), Target::topic(topic).server(server))
        .endpoint(endpoint)
        .start()
        .await
        .unwrap()
}

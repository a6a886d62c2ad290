//! Helpers of the integration tests: the broker URL, an RPC echo server, a TCP proxy that can
//! cut every connection (optionally terminating TLS).

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use messaging_core::{
    get_rpc_transport, Context, Endpoint, RemoteError, RpcClient, RpcServer, ServiceHandle, Target,
    TransportUrl,
};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// `AMQP1_URL`, or `None` (and a visible skip line) when unset; with
/// `MESSAGING_REQUIRE_BROKERS=1` an unset variable fails the test.
pub fn broker_url(test: &str) -> Option<TransportUrl> {
    messaging_core::install_driver(Arc::new(driver_amqp1::Amqp1Driver));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    match std::env::var("AMQP1_URL") {
        Ok(url) if !url.is_empty() => Some(TransportUrl::parse(&url).expect("AMQP1_URL parses")),
        _ => {
            if std::env::var("MESSAGING_REQUIRE_BROKERS").as_deref() == Ok("1") {
                panic!("AMQP1_URL is not set but MESSAGING_REQUIRE_BROKERS=1");
            }
            println!("skipped: {test}: AMQP1_URL is not set");
            None
        }
    }
}

/// `user:pass@` of the broker URL's first host.
pub fn credentials(url: &TransportUrl) -> String {
    let host = &url.hosts[0];
    match (&host.username, &host.password) {
        (Some(u), Some(p)) => format!("{u}:{p}@"),
        (Some(u), None) => format!("{u}@"),
        _ => String::new(),
    }
}

/// `host:port` of the broker URL's first host.
pub fn upstream(url: &TransportUrl) -> String {
    let host = &url.hosts[0];
    format!(
        "{}:{}",
        host.hostname,
        host.port_or(driver_amqp1::AMQP_PORT)
    )
}

/// `amqp://[user:pass@]host:port/` of the broker URL's first host, without options.
pub fn plain(url: &TransportUrl) -> String {
    format!("amqp://{}{}/", credentials(url), upstream(url))
}

/// Run `rabbitmqctl` (same host as the broker) with JSON output: its rows.
pub fn rabbitmqctl(args: &[&str]) -> Vec<Value> {
    let output = std::process::Command::new("rabbitmqctl")
        .args(args)
        .args(["--formatter", "json", "-q"])
        .output()
        .expect("running rabbitmqctl");
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

/// Wait until RabbitMQ queue `queue` (default vhost) holds no message, ready or unsettled.
pub async fn wait_for_empty(queue: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let rows = rabbitmqctl(&["list_queues", "name", "messages"]);
        let messages = rows
            .iter()
            .find(|q| q["name"] == queue)
            .and_then(|q| q["messages"].as_u64())
            .unwrap_or_else(|| panic!("queue {queue} exists"));
        if messages == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{messages} messages still in {queue}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A unique topic.
pub fn topic(what: &str) -> String {
    format!("test_{what}_{}", &messaging_core::wire::new_id()[..8])
}

/// Start an RPC server answering `echo(value)` on `topic` at `url`.
pub async fn echo_server(url: &str, topic: &str) -> ServiceHandle {
    let transport = get_rpc_transport(url).await.expect("server transport");
    RpcServer::new(transport, Target::topic(topic).server("srv1"))
        .endpoint(Endpoint::new().method(
            "echo",
            |_ctx: Context, args: serde_json::Map<String, Value>| async move {
                Ok::<_, RemoteError>(args.get("value").cloned().unwrap_or(Value::Null))
            },
        ))
        .start()
        .await
        .expect("server starts")
}

/// Call `echo(value)` on `topic` through `client`.
pub async fn echo(client: &RpcClient, value: &str) -> messaging_core::Result<Value> {
    client
        .call::<Value>(&Context::new(), "echo", &json!({"value": value}))
        .await
}

/// A TCP proxy to `upstream` on 127.0.0.1, optionally terminating TLS. `cut()` drops every
/// connection it carries at that moment; `stall()` stops forwarding on them but keeps them
/// open (a peer that no longer answers).
pub struct Proxy {
    pub port: u16,
    cut: watch::Sender<u64>,
    stall: watch::Sender<bool>,
}

impl Proxy {
    pub async fn start(upstream: String, tls: Option<TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (cut, _) = watch::channel(0u64);
        let (stall, _) = watch::channel(false);
        let (cuts, stalls) = (cut.clone(), stall.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let tls = tls.clone();
                let cut = (cuts.subscribe(), stalls.subscribe());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = server.set_nodelay(true);
                    let _ = client.set_nodelay(true);
                    match tls {
                        None => relay(client, server, cut).await,
                        Some(acceptor) => {
                            if let Ok(client) = acceptor.accept(client).await {
                                relay(client, server, cut).await;
                            }
                        }
                    }
                });
            }
        });
        Self { port, cut, stall }
    }

    /// Drop every connection now.
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// Stop forwarding on every connection, keeping them open until `cut()`.
    pub fn stall(&self) {
        self.stall.send_replace(true);
    }
}

async fn relay<C>(
    mut client: C,
    mut server: TcpStream,
    (mut cut, mut stall): (watch::Receiver<u64>, watch::Receiver<bool>),
) where
    C: AsyncRead + AsyncWrite + Unpin,
{
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cut.changed() => return,
        _ = stall.wait_for(|stalled| *stalled) => {}
    }
    let _ = cut.changed().await;
}

/// Poll `what` until it is `Ok` or `within` passes.
pub async fn eventually<T, F, Fut>(within: Duration, mut what: F) -> messaging_core::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = messaging_core::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match what().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

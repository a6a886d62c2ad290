//! `--metrics-addr`: the library's metrics in Prometheus text format over HTTP
//! (`GET /metrics`), served by a few lines on a plain TCP listener rather than an HTTP stack.

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::Failure;

/// Histogram buckets of the `*_seconds` metrics: 0.5 ms to 1 min.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
/// Longest request head read.
const MAX_HEAD: usize = 8192;
/// How long a scraper may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Install the Prometheus recorder (before any transport is opened, so that every metric is
/// recorded) and serve it on `addr`; returns the address bound (for port 0).
pub async fn serve(addr: &str) -> Result<SocketAddr, Failure> {
    let usage = |e: &dyn std::fmt::Display| Failure::Usage(format!("--metrics-addr {addr}: {e}"));
    let listener = TcpListener::bind(addr).await.map_err(|e| usage(&e))?;
    let bound = listener.local_addr().map_err(|e| usage(&e))?;
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
        .map_err(|e| usage(&e))?
        .install_recorder()
        .map_err(|e| usage(&e))?;
    messaging::telemetry::describe();
    tokio::spawn(upkeep(handle.clone()));
    tokio::spawn(accept(listener, handle));
    Ok(bound)
}

/// Drain the histograms now and then, even when nobody scrapes.
async fn upkeep(handle: PrometheusHandle) {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    loop {
        every.tick().await;
        handle.run_upkeep();
    }
}

async fn accept(listener: TcpListener, handle: PrometheusHandle) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let handle = handle.clone();
                tokio::spawn(async move {
                    if let Err(error) = respond(stream, &handle).await {
                        tracing::debug!(%error, "a metrics scrape failed");
                    }
                });
            }
            Err(error) => tracing::warn!(%error, "cannot accept a metrics scrape"),
        }
    }
}

/// Answer one request: the metrics for `GET /metrics` (or `/`), 404 for anything else.
async fn respond(mut stream: TcpStream, handle: &PrometheusHandle) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        let read = tokio::time::timeout(READ_TIMEOUT, stream.read(&mut buffer)).await??;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let request_line = String::from_utf8_lossy(&head);
    let mut parts = request_line.split_whitespace();
    let (status, body) = match (parts.next(), parts.next()) {
        (Some("GET"), Some("/metrics" | "/")) => ("200 OK", handle.render()),
        _ => ("404 Not Found", "not found: try GET /metrics\n".to_owned()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

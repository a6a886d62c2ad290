//! How much a notifier's outbox costs while the broker is away: queue `COUNT` notifications
//! (default 100,000) into an outbox whose broker does not answer, then print the process's
//! resident memory and, for a spooled outbox, the spool's size on disk, as one JSON line.
//!
//! ```sh
//! cargo run --release --example outbox_backlog -- memory
//! cargo run --release --example outbox_backlog -- spool 100000
//! ```
//!
//! The default URL points at port 1 of 127.0.0.1, where nothing listens: every notification
//! stays queued. `bench/scale.py` runs both modes and prints them in its table.

use std::path::Path;
use std::time::Instant;

use messaging::{get_notification_transport, Context, Notifier, OutboxConfig};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "memory".into());
    let count: usize = args.next().map_or(Ok(100_000), |n| n.parse())?;
    let url = args
        .next()
        .unwrap_or_else(|| "rabbit://guest:guest@127.0.0.1:1/".into());

    let spool = tempfile::tempdir()?;
    let config = OutboxConfig::new(count + 1);
    let config = match mode.as_str() {
        "memory" => config,
        "spool" => config.spool_dir(spool.path()),
        other => return Err(format!("mode `{other}`: expected memory or spool").into()),
    };
    let transport = get_notification_transport(&url).await?;
    let notifier = Notifier::new(transport, "backlog.host1")
        .topics(["notifications"])
        .with_outbox(config)
        .await?;
    let rss_before = status_kib("VmRSS");

    let ctx = Context::new();
    let began = Instant::now();
    for seq in 0..count {
        let payload = json!({"instance_id": format!("{seq:032x}"), "state": "active", "seq": seq});
        notifier
            .info(&ctx, "compute.instance.update", &payload)
            .await?;
    }
    let queued_in = began.elapsed();

    let report = json!({
        "mode": mode,
        "queued": count,
        "queue_per_s": (count as f64 / queued_in.as_secs_f64()).round(),
        "rss_before_kib": rss_before,
        "rss_after_kib": status_kib("VmRSS"),
        "peak_rss_kib": status_kib("VmHWM"),
        "spool_bytes": (mode == "spool").then(|| dir_bytes(spool.path())),
    });
    println!("{report}");
    // The outbox still holds everything: leave without waiting for a broker that is not there.
    std::process::exit(0);
}

/// A `kB` line of /proc/self/status (`VmRSS`, `VmHWM`), or 0 where there is none.
fn status_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The size of the files under `dir`, in bytes.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

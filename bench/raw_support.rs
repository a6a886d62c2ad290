//! What the raw-client baselines of `bench/compare.py` share: the clock, resource usage,
//! percentiles and the `--flag value` command line. Included with `#[path]` by
//! `driver-rabbit/examples/raw_lapin_bench.rs`, `driver-kafka/examples/raw_rdkafka_bench.rs` and
//! `driver-amqp1/examples/raw_fe2o3_bench.rs`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in nanoseconds since the Unix epoch (the `sent_ns` a message carries).
pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

/// Peak RSS in MiB and CPU seconds of this process, from /proc.
pub fn usage() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<f64> = stat
        .rsplit_once(')')
        .map_or("", |(_, r)| r)
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    let ticks = fields.get(11).unwrap_or(&0.0) + fields.get(12).unwrap_or(&0.0);
    (rss_kib / 1024.0, ticks / 100.0)
}

/// The `p`-th percentile of `sorted`, in ms (0 when empty).
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return 0.0;
    };
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.saturating_sub(1).min(last)].as_secs_f64() * 1e3
}

/// Hand each `--flag value` pair of the command line to `set`.
pub fn parse_flags(mut set: impl FnMut(&str, String)) {
    let mut args = std::env::args().skip(1);
    while let (Some(flag), Some(value)) = (args.next(), args.next()) {
        set(&flag, value);
    }
}

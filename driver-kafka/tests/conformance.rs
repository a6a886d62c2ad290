//! The core conformance suite against a Kafka-protocol broker (`KAFKA_URL`; skipped when
//! unset, unless `MESSAGING_REQUIRE_BROKERS=1`). The RPC cases skip themselves: the driver
//! declares no RPC.
//!
//! Every case gets its own `consumer_group` for listeners without a pool, so that the cases,
//! which run in parallel, do not rebalance each other's consumer groups.

mod common;

use std::time::Duration;

use messaging_conformance::{self as conformance, Backend, Feature};

fn url(extra: &str) -> Option<String> {
    let base = std::env::var("KAFKA_URL").ok().filter(|u| !u.is_empty())?;
    let options = format!(
        "{}&consumer_group={}{extra}",
        common::TEST_OPTIONS,
        common::unique("conf_group")
    );
    Some(common::with_options(&base, &options))
}

fn backend_with(extra: &str) -> Backend {
    common::init_logging();
    messaging_core::install_driver(std::sync::Arc::new(driver_kafka::KafkaDriver));
    let backend = match url(extra) {
        Some(url) => Backend::new("kafka", &url),
        // Skips every case (or fails them under MESSAGING_REQUIRE_BROKERS=1).
        None => Backend::from_env("kafka", "KAFKA_URL"),
    };
    // No settle time: `listen()` returns only once the consumer group assigned partitions to
    // the new member and their starting offsets are committed, so whatever a case sends next
    // reaches the pool, even while other members of the pool are still rebalancing.
    backend
        .settle(Duration::ZERO)
        .patience(Duration::from_secs(90))
}

/// oslo's defaults: `auto_offset_reset=latest`, so the driver declares that a new group does
/// not get what was sent before it existed (see the `earliest` case below).
fn backend() -> Backend {
    backend_with("")
}

messaging_conformance::conformance_suite!(backend());

/// With `auto_offset_reset=earliest`, a new pool gets what was sent before it existed.
#[test]
fn notify_sent_before_listener_is_kept_with_earliest() {
    conformance::run(
        "notify_sent_before_listener_is_kept_with_earliest",
        &[Feature::Notifications, Feature::StoreBeforeListen],
        || backend_with("&auto_offset_reset=earliest"),
        conformance::cases::notify_sent_before_listener_is_kept,
    );
}

//! The Kafka driver (`kafka://`): notifications over [rdkafka] (librdkafka), with the records
//! of Python oslo.messaging's kafka driver, so that Rust and Python notifiers and listeners
//! share topics. RPC over Kafka is not supported, as in oslo: use `rabbit://` for RPC and
//! `kafka://` as the notification transport.
//!
//! ```no_run
//! # async fn demo() -> messaging_core::Result<()> {
//! messaging_core::install_driver(std::sync::Arc::new(driver_kafka::KafkaDriver));
//! let transport = messaging_core::get_notification_transport("kafka://k1:9092,k2:9092/").await?;
//! messaging_core::Notifier::new(transport, "compute.host1")
//!     .info(&messaging_core::Context::new(), "compute.instance.create.end", &1)
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # Records (oslo-wire.md §8)
//! Topic `<topic>.<priority>` (e.g. `notifications.info`), no key (librdkafka's partitioner
//! spreads records), no headers, value = the `2.0` envelope of the message dict with the
//! context nested under `_context` and no `_unique_id`. oslo uses the envelope on Kafka even for
//! its `messaging` (v1) notifier driver, and so does this driver. The exchange of a target
//! plays no part (as in oslo). Bootstrap servers are all the URL's hosts; with
//! `security_protocol=SASL_*` the first host's user and password are the SASL credentials.
//!
//! # Virtual host
//! oslo publishes to `<topic>.<priority>.<vhost>` when the URL has a virtual host, but its
//! listener subscribes to `<topic>.<priority>`, so an oslo listener never sees its own
//! notifier's notifications. This driver uses `<topic>.<priority>.<vhost>` on both sides:
//! a Rust notifier reaches Rust listeners and interoperates with Python notifiers (their
//! records land in the same topics), and a Rust listener receives Python's notifications. A
//! Python *listener* with a virtual host sees nothing, neither Python's notifications nor
//! ours: give Python listeners a URL without virtual host (and then ours too).
//!
//! # Delivery: at least once
//! * **Notifier**: every send awaits the broker's delivery report (`acks=all` by default: every
//!   in-sync replica has the record); many sends are in flight at once. A send with no other
//!   in flight leaves at once; sends made alongside others are gathered and leave together in
//!   one produce request as soon as no more are expected, after `producer_batch_timeout`
//!   (1 ms) at the latest (see the `batches` module).
//!   A failed delivery is a [`MessagingError::DeliveryFailure`](messaging_core::MessagingError::DeliveryFailure), an unreachable broker a
//!   [`MessagingError::ConnectionFailure`](messaging_core::MessagingError::ConnectionFailure). Each attempt is bounded by
//!   `producer_delivery_timeout` (default 30 s); failed attempts are retried as the send's
//!   [`Retry`](messaging_core::Retry) allows, within its timeout if it has one (so the default
//!   `Retry::Forever` without timeout keeps retrying while the broker is down, as oslo's
//!   `retry=-1` means).
//! * **Listener**: an offset is committed only once the endpoints handled every record up to
//!   it, whatever the order they finish in (see the `offsets` module); a crash or rebalance
//!   redelivers what was not committed, never skips it. (oslo commits each polled batch
//!   before dispatching it, and can lose notifications.) Undecodable records are logged and
//!   skipped.
//! * **Requeue** produces the record's value again to its topic and, once that copy is
//!   acknowledged by the broker, counts the original as handled: the copy goes to whichever
//!   pool member owns its partition.
//! * **Pools** are consumer groups: `group.id` = the pool, else `consumer_group` (default
//!   `oslo_messaging_consumer`, as oslo). Members of a group share the partitions (4 per topic
//!   on a broker with default settings, so at most 4 members of a pool get work per topic).
//! * `listen()` returns once the group assigned partitions to the new member, with their
//!   starting offsets fixed and committed: whatever is sent afterwards reaches the pool. A
//!   group that had never committed anything starts at the end of the log (oslo's
//!   `auto.offset.reset=latest`), so notifications sent before a pool's first listener
//!   existed are not delivered to it, unless `auto_offset_reset=earliest` is set. When no
//!   bootstrap server answers within 10 s, `listen()` fails with
//!   [`MessagingError::ConnectionFailure`](messaging_core::MessagingError::ConnectionFailure).
//! * Closing a listener's source (the listener's shutdown) commits what was handled and
//!   leaves the consumer group before it returns, so that the pool's other or next members
//!   get its partitions at once (not after the session timeout).
//! * `enable_auto_commit=true` (oslo's option) commits records once delivered to the
//!   listener, before they are handled, as oslo does: at most once for what was in progress
//!   when a listener died.
//!
//! # Options
//! See [`OPTIONS`] and [`KafkaConfig`] (`kafka_consumer_timeout` is accepted but a listener
//! polls at least every 0.1 s, to commit handled offsets promptly). librdkafka is the rdkafka
//! crate's default bundled build (2.12): gzip, snappy, lz4 and SASL PLAIN are in; TLS
//! (`security_protocol=SSL`/`SASL_SSL`), SCRAM, GSSAPI and zstd need rdkafka's `ssl`,
//! `gssapi` and `zstd` features, which this crate does not enable: such URLs are refused
//! when the transport is opened, with a [`MessagingError::InvalidUrl`](messaging_core::MessagingError::InvalidUrl)
//! that gives librdkafka's reason (e.g. "OpenSSL not available at build time").

#![warn(missing_docs)]

mod batches;
mod config;
mod consumer;
mod logging;
mod notify;
mod offsets;
mod producer;

use std::sync::Arc;

use async_trait::async_trait;
use messaging_core::driver::{Capabilities, Driver, Feature, NotifyAddress, NotifyDriver};
use messaging_core::options::OptionSpec;
use messaging_core::{Result, TransportUrl};

pub use config::{
    Acks, CompressionCodec, KafkaConfig, OffsetReset, SecurityProtocol, DEFAULT_CONSUMER_GROUP,
    DEFAULT_PORT, OPTIONS,
};

/// The Kafka driver. Install it with `messaging_core::install_driver`.
#[derive(Debug, Clone, Copy, Default)]
pub struct KafkaDriver;

impl KafkaDriver {
    /// The notification side for `url` with settings built in code; the URL's query options
    /// override them.
    pub async fn notifications_with_config(
        url: &TransportUrl,
        config: KafkaConfig,
    ) -> Result<Arc<dyn NotifyDriver>> {
        let config = config.with_url_options(url)?;
        Ok(Arc::new(notify::KafkaNotify::new(url, config)?))
    }
}

/// The driver's name, also its `messaging.system`.
pub(crate) const NAME: &str = "kafka";

#[async_trait]
impl Driver for KafkaDriver {
    fn name(&self) -> &'static str {
        NAME
    }

    fn schemes(&self) -> &'static [&'static str] {
        &["kafka"]
    }

    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }

    fn option_defaults(&self) -> Vec<(&'static str, Option<String>)> {
        messaging_core::options::DriverConfig::option_values(&KafkaConfig::default())
    }

    fn capabilities(&self) -> Capabilities {
        const NO_RPC: &str = "RPC over Kafka is not implemented (as in oslo.messaging)";
        Capabilities::full()
            .without(Feature::Rpc, NO_RPC)
            .without(Feature::Fanout, NO_RPC)
            .without(Feature::ServerDirected, NO_RPC)
            .without(Feature::CallMonitor, NO_RPC)
            .without(
                Feature::Exchanges,
                "Kafka topics are `<topic>.<priority>`: the exchange plays no part (as in oslo)",
            )
    }

    /// With oslo's `auto_offset_reset=latest` a new consumer group starts at the end of the
    /// log, so notifications sent before a listener existed are not kept for it; with
    /// `earliest` they are.
    fn capabilities_for(&self, url: &TransportUrl) -> Capabilities {
        let capabilities = self.capabilities();
        if url.options().get("auto_offset_reset") == Some("earliest") {
            capabilities
        } else {
            capabilities.without(
                Feature::StoreBeforeListen,
                "auto_offset_reset=latest (oslo's default): a new consumer group starts at the end of the log",
            )
        }
    }

    // `rpc()` keeps the default: `Unsupported { driver: "kafka", what: "RPC" }`.

    async fn notifications(&self, url: &TransportUrl) -> Result<Arc<dyn NotifyDriver>> {
        Self::notifications_with_config(url, KafkaConfig::default()).await
    }
}

/// The Kafka topic of notifications to `address`: `<topic>.<priority>`, plus `.<vhost>` when
/// the transport URL has a virtual host (on both the notifier and the listener side; see the
/// crate docs).
pub fn topic_name(address: &NotifyAddress, virtual_host: Option<&str>) -> String {
    match virtual_host.filter(|v| !v.is_empty()) {
        Some(vhost) => format!("{}.{vhost}", address.routing_key()),
        None => address.routing_key(),
    }
}

/// Kafka's rule for topic names: 1 to 249 of `[A-Za-z0-9._-]`.
fn check_topic_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name.len() > 249 {
        return Err(format!("`{name}` is not 1 to 249 characters long"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "`{name}` contains `{bad}`; Kafka topic names use only letters, digits, `.`, `_` and `-`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_core::{MessagingError, Priority};

    fn address(topic: &str, priority: Priority) -> NotifyAddress {
        NotifyAddress {
            exchange: "openstack".into(),
            topic: topic.into(),
            priority,
        }
    }

    #[test]
    fn topics_are_oslos() {
        assert_eq!(
            topic_name(&address("notifications", Priority::Info), None),
            "notifications.info"
        );
        assert_eq!(
            topic_name(&address("notifications", Priority::Warn), Some("myvhost")),
            "notifications.warn.myvhost"
        );
        assert_eq!(
            topic_name(&address("notifications", Priority::Audit), Some("")),
            "notifications.audit"
        );
    }

    #[test]
    fn topic_names_are_checked() {
        assert!(check_topic_name("notifications.info").is_ok());
        assert!(check_topic_name("a-b_c.D9").is_ok());
        assert!(check_topic_name("").is_err());
        assert!(check_topic_name("notifications.info./").is_err());
        assert!(check_topic_name("ü").is_err());
        assert!(check_topic_name(&"x".repeat(250)).is_err());
    }

    #[test]
    fn capabilities_declare_no_rpc() {
        let caps = KafkaDriver.capabilities();
        assert!(!caps.supports(Feature::Rpc));
        assert!(caps.supports(Feature::Notifications));
        assert!(caps.supports(Feature::Requeue));
        assert!(caps.supports(Feature::Pools));
        assert_eq!(
            caps.notify_delivery,
            messaging_core::driver::Delivery::AtLeastOnce
        );
    }

    #[tokio::test]
    async fn rpc_is_unsupported() {
        let url = TransportUrl::parse("kafka://127.0.0.1:9092/").unwrap();
        match KafkaDriver.rpc(&url).await {
            Err(MessagingError::Unsupported { driver, what }) => {
                assert_eq!(driver, "kafka");
                assert_eq!(what, "RPC");
            }
            Err(other) => panic!("unexpected {other}"),
            Ok(_) => panic!("kafka RPC must be unsupported"),
        }
    }
}

//! The RabbitMQ driver (`rabbit://`, `kombu://`): AMQP 0-9-1 over [lapin], with the topology,
//! message properties and envelope of Python oslo.messaging's rabbit driver, so that Rust and
//! Python services talk to each other through one broker.
//!
//! ```no_run
//! # async fn demo() -> messaging_core::Result<()> {
//! messaging_core::install_driver(std::sync::Arc::new(driver_rabbit::RabbitDriver));
//! let transport = messaging_core::get_rpc_transport("rabbit://guest:guest@127.0.0.1:5672/").await?;
//! # Ok(()) }
//! ```
//!
//! * Topology (oslo-wire.md §1): a topic exchange per control exchange, queues `<topic>` and
//!   `<topic>.<server>`, a `<topic>_fanout` exchange with one `<topic>_fanout_<uuid>` queue per
//!   server (deleted when the server stops), one `reply_<uuid>` queue per transport (declared on
//!   the first call, expiring 30 min after its last use), `<topic>.<priority>` notification
//!   queues (declared by notifiers and listeners) and `<pool>` queues.
//! * Every publish waits for its publisher confirm; publishes are pipelined on one channel.
//!   Replies are `mandatory` and retried every 0.25 s while their queue is missing.
//! * RPC requests are acknowledged when handed to the server (at most once); notifications
//!   after the endpoint returns (at least once).
//! * Sending and listening use separate connections; each reconnects with back-off over the
//!   URL's hosts, and listeners declare their topology again and resume by themselves.
//!
//! Options are oslo's `[oslo_messaging_rabbit]` names, given as URL query options (see
//! [`OPTIONS`]) or in code with [`RabbitConfig`] and [`RabbitDriver::rpc_with_config`].

#![warn(missing_docs)]

mod acks;
mod compression;
mod config;
mod connection;
mod notify;
mod publisher;
mod queue_manager;
mod rpc;
mod subscriber;
mod topology;
mod transport;

use std::sync::Arc;

use async_trait::async_trait;
use messaging_core::driver::{Capabilities, Driver, NotifyDriver, RpcDriver};
use messaging_core::options::OptionSpec;
use messaging_core::{Result, TransportUrl};

pub use config::{Compression, FailoverStrategy, LoginMethod, RabbitConfig, OPTIONS};

use connection::Connector;

/// The default AMQP port.
pub const DEFAULT_PORT: u16 = connection::DEFAULT_PORT;

/// The RabbitMQ driver. Install it with `messaging_core::install_driver`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RabbitDriver;

impl RabbitDriver {
    /// The RPC side for `url` with settings built in code; the URL's query options override
    /// them.
    pub async fn rpc_with_config(
        url: &TransportUrl,
        config: RabbitConfig,
    ) -> Result<Arc<dyn RpcDriver>> {
        let connector = Arc::new(Connector::new(
            url,
            Arc::new(config.with_url_options(url)?),
        )?);
        Ok(Arc::new(rpc::RabbitRpc::new(connector)))
    }

    /// The notification side for `url` with settings built in code; the URL's query options
    /// override them.
    pub async fn notifications_with_config(
        url: &TransportUrl,
        config: RabbitConfig,
    ) -> Result<Arc<dyn NotifyDriver>> {
        let connector = Arc::new(Connector::new(
            url,
            Arc::new(config.with_url_options(url)?),
        )?);
        Ok(Arc::new(notify::RabbitNotify::new(connector)))
    }
}

/// The driver's name.
pub(crate) const NAME: &str = "rabbit";
/// Its `messaging.system` (OpenTelemetry's name for the broker).
pub(crate) const SYSTEM: &str = "rabbitmq";

#[async_trait]
impl Driver for RabbitDriver {
    fn name(&self) -> &'static str {
        NAME
    }

    fn messaging_system(&self) -> &'static str {
        SYSTEM
    }

    fn schemes(&self) -> &'static [&'static str] {
        &["rabbit", "kombu"]
    }

    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }

    fn option_defaults(&self) -> Vec<(&'static str, Option<String>)> {
        messaging_core::options::DriverConfig::option_values(&RabbitConfig::default())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::full()
    }

    async fn rpc(&self, url: &TransportUrl) -> Result<Arc<dyn RpcDriver>> {
        Self::rpc_with_config(url, RabbitConfig::default()).await
    }

    async fn notifications(&self, url: &TransportUrl) -> Result<Arc<dyn NotifyDriver>> {
        Self::notifications_with_config(url, RabbitConfig::default()).await
    }
}

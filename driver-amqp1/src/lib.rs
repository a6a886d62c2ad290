//! The AMQP 1.0 driver (`amqp://`, `amqps://`), built on fe2o3-amqp, wire-compatible with
//! oslo.messaging's (removed) `amqp` driver.
//!
//! It talks to two kinds of peer, detected from the peer's Open `product` (or forced with
//! `addressing_mode`):
//!
//! * **Router mode** (Qpid Dispatch Router / skupper-router and any non-RabbitMQ peer): oslo's
//!   `routable` or `legacy` addresses ([`addressing`]), replies on one dynamic receiver link per
//!   transport, end-to-end settlement (a call or notification waits for the consumer's
//!   outcome; `released`/`modified` are retried, `rejected` fails; a batch listener accepts a
//!   notification as it joins a batch), and a send to an address that nobody consumes (the
//!   router grants no credit) fails after the send timeout, or with `NoServer` after the
//!   `fail_fast` window when asked to.
//! * **Broker mode** (RabbitMQ 3.x's AMQP 1.0 plugin): the same message bodies over the
//!   addresses RabbitMQ accepts; see [`mode`] for the mapping table.
//!
//! ```no_run
//! # async fn demo() -> Result<(), messaging_core::MessagingError> {
//! messaging_core::install_driver(std::sync::Arc::new(driver_amqp1::Amqp1Driver));
//! let rpc = messaging_core::get_rpc_transport("amqp://guest:guest@127.0.0.1:5672/").await?;
//! # Ok(()) }
//! ```
//!
//! Options are oslo's `[oslo_messaging_amqp]` names, given in the URL query; see
//! [`Amqp1Config`].

#![warn(missing_docs)]

pub mod addressing;
pub mod config;
mod connection;
mod link;
pub mod message;
pub mod mode;
mod notify;
mod rpc;
mod settle;
mod tls;

use std::sync::Arc;

use async_trait::async_trait;
use messaging_core::driver::{Capabilities, Driver, Feature, NotifyDriver, RpcDriver};
use messaging_core::options::OptionSpec;
use messaging_core::{Result, TransportUrl};

pub use config::{AddressingMode, Amqp1Config, PreSettled};
pub use connection::{PeerInfo, AMQPS_PORT, AMQP_PORT};
pub use mode::{Endpoints, PeerMode};

/// Why listener pools are not offered, in either mode.
pub const NO_POOLS: &str = "a pool needs its own shared copy of every notification: oslo's \
     AMQP 1.0 addressing has no pool address (routers), and RabbitMQ's AMQP 1.0 endpoint cannot \
     bind a named queue to an exchange (only server-named amq.gen-* queues)";

/// Why fail fast is not offered against RabbitMQ's AMQP 1.0 endpoint.
pub const BROKER_NO_FAIL_FAST: &str = "RabbitMQ's AMQP 1.0 endpoint grants credit to every \
     sender and settles every message `accepted` as soon as it is enqueued, even one that no \
     queue took (`/amq/queue/<missing>` is accepted and dropped): a sender cannot tell that \
     nobody consumes its address";

/// Why notifications sent before any listener are lost in router mode.
pub const ROUTER_NO_STORE: &str = "a router stores nothing: with no listener it grants no \
     credit and the notification fails after default_notify_timeout";

/// The AMQP 1.0 driver. Install it with [`messaging_core::install_driver`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Amqp1Driver;

impl Amqp1Driver {
    /// What the driver can do against a peer of `mode`. [`Driver::capabilities`] declares the
    /// gaps of both modes (the mode is detected on connecting); router mode also lacks
    /// [`Feature::StoreBeforeListen`], broker mode [`Feature::FailFast`].
    pub fn capabilities_for(mode: PeerMode) -> Capabilities {
        let capabilities = Capabilities::full().without(Feature::Pools, NO_POOLS);
        match mode {
            PeerMode::Broker => capabilities.without(Feature::FailFast, BROKER_NO_FAIL_FAST),
            PeerMode::Router(_) => {
                capabilities.without(Feature::StoreBeforeListen, ROUTER_NO_STORE)
            }
        }
    }
}

/// The driver's name.
pub(crate) const NAME: &str = "amqp1";
/// Its `messaging.system`: the protocol, as the peer may be a router or any broker.
pub(crate) const SYSTEM: &str = "amqp";

#[async_trait]
impl Driver for Amqp1Driver {
    fn name(&self) -> &'static str {
        NAME
    }

    fn messaging_system(&self) -> &'static str {
        SYSTEM
    }

    fn schemes(&self) -> &'static [&'static str] {
        &["amqp", "amqps"]
    }

    fn options(&self) -> &'static [OptionSpec] {
        config::OPTIONS
    }

    fn option_defaults(&self) -> Vec<(&'static str, Option<String>)> {
        messaging_core::options::DriverConfig::option_values(&Amqp1Config::default())
    }

    /// The gaps common to both modes (pools). Against a router, notifications sent while no
    /// listener exists are also lost; against RabbitMQ, fail fast is refused with
    /// `Unsupported` when a request is sent ([`Amqp1Driver::capabilities_for`]).
    fn capabilities(&self) -> Capabilities {
        Capabilities::full().without(Feature::Pools, NO_POOLS)
    }

    /// With `addressing_mode` forced, the capabilities of that mode.
    fn capabilities_for(&self, url: &TransportUrl) -> Capabilities {
        match Amqp1Config::from_url(url).map(|c| c.addressing_mode) {
            Ok(AddressingMode::Dynamic) | Err(_) => self.capabilities(),
            Ok(mode) => Amqp1Driver::capabilities_for(PeerMode::decide(mode, None)),
        }
    }

    async fn rpc(&self, url: &TransportUrl) -> Result<Arc<dyn RpcDriver>> {
        let config = Arc::new(Amqp1Config::from_url(url)?);
        let links = link::LinkManager::new(url, config)?;
        Ok(Arc::new(rpc::Amqp1Rpc::new(links)))
    }

    async fn notifications(&self, url: &TransportUrl) -> Result<Arc<dyn NotifyDriver>> {
        let config = Arc::new(Amqp1Config::from_url(url)?);
        let links = link::LinkManager::new(url, config)?;
        Ok(Arc::new(notify::Amqp1Notify::new(links)))
    }
}

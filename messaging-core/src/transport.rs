//! Transports: a driver bound to a URL, as the API types hold it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::driver::{Capabilities, Driver, NotifyDriver, RpcDriver};
use crate::error::Result;
use crate::options;
use crate::registry::driver_for_scheme;
use crate::signing::{Guard, Signing};
use crate::telemetry::Telemetry;
use crate::url::TransportUrl;

/// oslo's default `control_exchange`.
pub const DEFAULT_EXCHANGE: &str = "openstack";

/// Settings of a transport that are not part of its URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TransportOptions {
    /// Exchange of targets that name none (oslo's `control_exchange`).
    pub control_exchange: String,
    /// Driver options by driver name (`rabbit`, `kafka`, …), as a config file's driver section
    /// gives them: defaults that the URL's query options override.
    pub driver_options: BTreeMap<String, Vec<(String, String)>>,
    /// Sign every message sent and check every message received (see [`crate::signing`]);
    /// `None` (the default) sends messages exactly as Python oslo.messaging does and checks
    /// nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing: Option<Signing>,
}

impl Default for TransportOptions {
    fn default() -> Self {
        Self {
            control_exchange: DEFAULT_EXCHANGE.to_owned(),
            driver_options: BTreeMap::new(),
            signing: None,
        }
    }
}

struct Info {
    url: TransportUrl,
    driver: &'static str,
    capabilities: Capabilities,
    options: TransportOptions,
    guard: Option<Guard>,
    telemetry: Arc<Telemetry>,
    /// Notifications dropped by listeners as duplicates.
    duplicates: AtomicU64,
}

/// Parse `url`, find its driver, add the driver's configured option defaults that the URL does
/// not override, and check every option against what the driver declares.
async fn resolve(url: &str, options: &TransportOptions) -> Result<(TransportUrl, Arc<dyn Driver>)> {
    let mut url = TransportUrl::parse(url)?;
    let driver = driver_for_scheme(&url.driver)?;
    for (key, value) in options
        .driver_options
        .get(driver.name())
        .into_iter()
        .flatten()
    {
        if !url.query.iter().any(|(k, _)| k == key) {
            url.query.push((key.clone(), value.clone()));
        }
    }
    options::validate(
        driver.name(),
        driver.options(),
        url.query.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )?;
    Ok((url, driver))
}

/// One side of a transport, a driver bound to a URL: cheap to clone, shared by the API types
/// that use it. `D` is the driver side, [`RpcDriver`] or [`NotifyDriver`].
pub struct Transport<D: ?Sized> {
    driver: Arc<D>,
    info: Arc<Info>,
}

/// The RPC side of a transport, shared by clients and servers.
pub type RpcTransport = Transport<dyn RpcDriver>;

/// The notification side of a transport, shared by notifiers and listeners.
pub type NotificationTransport = Transport<dyn NotifyDriver>;

/// Open the RPC side of the transport named by `url`, with default [`TransportOptions`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), messaging_core::MessagingError> {
/// let transport = messaging_core::get_rpc_transport("memory://").await?;
/// assert_eq!(transport.driver_name(), "memory");
/// # Ok(()) }
/// ```
pub async fn get_rpc_transport(url: &str) -> Result<RpcTransport> {
    get_rpc_transport_with(url, &TransportOptions::default()).await
}

/// Open the notification side of the transport named by `url`, with default
/// [`TransportOptions`].
pub async fn get_notification_transport(url: &str) -> Result<NotificationTransport> {
    get_notification_transport_with(url, &TransportOptions::default()).await
}

/// Open the RPC side of the transport named by `url`.
pub async fn get_rpc_transport_with(url: &str, options: &TransportOptions) -> Result<RpcTransport> {
    let (url, driver) = resolve(url, options).await?;
    Ok(RpcTransport {
        driver: driver.rpc(&url).await?,
        info: Info::new(url, driver.as_ref(), options),
    })
}

/// Open the notification side of the transport named by `url`.
pub async fn get_notification_transport_with(
    url: &str,
    options: &TransportOptions,
) -> Result<NotificationTransport> {
    let (url, driver) = resolve(url, options).await?;
    Ok(NotificationTransport {
        driver: driver.notifications(&url).await?,
        info: Info::new(url, driver.as_ref(), options),
    })
}

impl Info {
    fn new(url: TransportUrl, driver: &dyn Driver, options: &TransportOptions) -> Arc<Self> {
        Arc::new(Self {
            driver: driver.name(),
            capabilities: driver.capabilities_for(&url),
            url,
            options: options.clone(),
            guard: options
                .signing
                .clone()
                .map(|signing| Guard::new(signing, driver.name())),
            telemetry: Arc::new(Telemetry::new(driver.name(), driver.messaging_system())),
            duplicates: AtomicU64::new(0),
        })
    }
}

impl<D: ?Sized> Clone for Transport<D> {
    fn clone(&self) -> Self {
        Self {
            driver: self.driver.clone(),
            info: self.info.clone(),
        }
    }
}

impl<D: ?Sized> Transport<D> {
    /// The signing settings, if the transport signs and checks messages.
    pub fn signing(&self) -> Option<&Signing> {
        self.info.guard.as_ref().map(Guard::signing)
    }

    /// How many received messages failed their signature check since the transport was
    /// opened (rejected, or processed anyway in [`SignatureMode::Warn`](crate::signing::SignatureMode::Warn)).
    pub fn signature_failures(&self) -> u64 {
        self.info.guard.as_ref().map_or(0, Guard::failures)
    }

    pub(crate) fn guard(&self) -> Option<&Guard> {
        self.info.guard.as_ref()
    }

    pub(crate) fn telemetry(&self) -> &Arc<Telemetry> {
        &self.info.telemetry
    }

    /// The driver side, for the API types.
    pub fn driver(&self) -> &Arc<D> {
        &self.driver
    }

    /// The URL (its `Display` masks passwords).
    pub fn url(&self) -> &TransportUrl {
        &self.info.url
    }

    /// The driver's name.
    pub fn driver_name(&self) -> &'static str {
        self.info.driver
    }

    /// What the driver supports.
    pub fn capabilities(&self) -> &Capabilities {
        &self.info.capabilities
    }

    /// The exchange of targets that name none.
    pub fn control_exchange(&self) -> &str {
        &self.info.options.control_exchange
    }
}

impl RpcTransport {
    /// Release the transport's connections. Clients and servers using it stop working.
    pub async fn close(&self) {
        self.driver.close().await;
    }
}

impl NotificationTransport {
    /// How many notifications this transport's listeners dropped (acknowledged unhandled)
    /// because their `_unique_id` was handled recently: redeliveries, and sends retried after
    /// a lost confirm (see [`NotificationListener::duplicate_window`](crate::NotificationListener::duplicate_window)).
    pub fn duplicates_suppressed(&self) -> u64 {
        self.info.duplicates.load(Ordering::Relaxed)
    }

    pub(crate) fn count_duplicate(&self) {
        self.info.duplicates.fetch_add(1, Ordering::Relaxed);
        crate::telemetry::count_duplicate(self.info.driver, "notification");
    }

    /// Release the transport's connections.
    pub async fn close(&self) {
        self.driver.close().await;
    }
}

impl fmt::Debug for RpcTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RpcTransport({})", self.info.url)
    }
}

impl fmt::Debug for NotificationTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NotificationTransport({})", self.info.url)
    }
}

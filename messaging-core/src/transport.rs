//! Transports: a driver bound to a URL, as the API types hold it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::driver::{Capabilities, Driver, NotifyDriver, RpcDriver};
use crate::error::Result;
use crate::options;
use crate::registry::driver_for_scheme;
use crate::url::TransportUrl;

/// oslo's default `control_exchange`.
pub const DEFAULT_EXCHANGE: &str = "openstack";

/// Settings of a transport that are not part of its URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TransportOptions {
    /// Exchange of targets that name none (oslo's `control_exchange`).
    pub control_exchange: String,
}

impl Default for TransportOptions {
    fn default() -> Self {
        Self {
            control_exchange: DEFAULT_EXCHANGE.to_owned(),
        }
    }
}

struct Info {
    url: TransportUrl,
    driver: &'static str,
    capabilities: Capabilities,
    options: TransportOptions,
}

async fn resolve(url: &str) -> Result<(TransportUrl, Arc<dyn Driver>)> {
    let url = TransportUrl::parse(url)?;
    let driver = driver_for_scheme(&url.driver)?;
    options::validate(
        driver.name(),
        driver.options(),
        url.query.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )?;
    Ok((url, driver))
}

/// The RPC side of a transport: cheap to clone, shared by clients and servers.
#[derive(Clone)]
pub struct RpcTransport {
    driver: Arc<dyn RpcDriver>,
    info: Arc<Info>,
}

/// The notification side of a transport: cheap to clone, shared by notifiers and listeners.
#[derive(Clone)]
pub struct NotificationTransport {
    driver: Arc<dyn NotifyDriver>,
    info: Arc<Info>,
}

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
    let (url, driver) = resolve(url).await?;
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
    let (url, driver) = resolve(url).await?;
    Ok(NotificationTransport {
        driver: driver.notifications(&url).await?,
        info: Info::new(url, driver.as_ref(), options),
    })
}

impl Info {
    fn new(url: TransportUrl, driver: &dyn Driver, options: &TransportOptions) -> Arc<Self> {
        Arc::new(Self {
            driver: driver.name(),
            capabilities: driver.capabilities(),
            url,
            options: options.clone(),
        })
    }
}

impl RpcTransport {
    /// The driver side, for the API types.
    pub fn driver(&self) -> &Arc<dyn RpcDriver> {
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

    /// Release the transport's connections. Clients and servers using it stop working.
    pub async fn close(&self) {
        self.driver.close().await;
    }
}

impl NotificationTransport {
    /// The driver side, for the API types.
    pub fn driver(&self) -> &Arc<dyn NotifyDriver> {
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

/// Typed messaging configuration, for services that load settings with serde. Open the
/// transports with [`get_rpc_transport_with`] and [`get_notification_transport_with`]:
///
/// ```
/// let config: messaging_core::MessagingConfig = serde_json::from_str(
///     r#"{"transport_url": "rabbit://h1/", "notifications": {"transport_url": "kafka://k1:9092/"}}"#,
/// ).unwrap();
/// assert_eq!(config.notification_url(), "kafka://k1:9092/");
/// assert_eq!(config.control_exchange, "openstack");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MessagingConfig {
    /// `[DEFAULT] transport_url`: the RPC transport.
    pub transport_url: String,
    /// `[DEFAULT] control_exchange`.
    pub control_exchange: String,
    /// `[DEFAULT] rpc_response_timeout`, in seconds: the default call timeout.
    pub rpc_response_timeout: f64,
    /// `[oslo_messaging_notifications]`.
    pub notifications: NotificationsConfig,
}

/// `[oslo_messaging_notifications]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationsConfig {
    /// Notification transport; `transport_url` when absent.
    pub transport_url: Option<String>,
    /// Notifier drivers (`messagingv2`, `messaging`, `log`, `noop`).
    pub driver: Vec<String>,
    /// Topics to publish to.
    pub topics: Vec<String>,
    /// Send retries: negative for forever.
    pub retry: i64,
}

impl Default for MessagingConfig {
    fn default() -> Self {
        Self {
            transport_url: "memory://".to_owned(),
            control_exchange: DEFAULT_EXCHANGE.to_owned(),
            rpc_response_timeout: 60.0,
            notifications: NotificationsConfig::default(),
        }
    }
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            transport_url: None,
            driver: vec!["messagingv2".to_owned()],
            topics: vec!["notifications".to_owned()],
            retry: -1,
        }
    }
}

impl MessagingConfig {
    /// The notification URL, falling back to the RPC URL as oslo does.
    pub fn notification_url(&self) -> &str {
        self.notifications
            .transport_url
            .as_deref()
            .unwrap_or(&self.transport_url)
    }

    /// The default call timeout.
    pub fn rpc_timeout(&self) -> Duration {
        Duration::try_from_secs_f64(self.rpc_response_timeout).unwrap_or(Duration::from_secs(60))
    }

    /// The options both transports are opened with.
    pub fn transport_options(&self) -> TransportOptions {
        TransportOptions {
            control_exchange: self.control_exchange.clone(),
        }
    }
}

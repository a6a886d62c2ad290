//! One messaging API, RPC and notifications, over transports chosen by URL, wire-compatible
//! with Python's oslo.messaging.
//!
//! This facade re-exports [`messaging_core`] and installs the drivers it was built with
//! (cargo features `rabbit`, …) the first time a transport is opened, so applications never
//! register drivers themselves:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), messaging::MessagingError> {
//! let rpc = messaging::get_rpc_transport("memory://").await?;            // or "rabbit://…"
//! let notify = messaging::get_notification_transport("memory://").await?; // or "kafka://…"
//! # let _ = (rpc, notify);
//! match messaging::get_rpc_transport("nosuch://host").await {
//!     Err(messaging::MessagingError::UnknownScheme { available, .. }) => assert!(available.contains(&"memory".into())),
//!     other => panic!("{other:?}"),
//! }
//! # Ok(()) }
//! ```
//!
//! Typed services (feature `macros`, on by default): see [`service`](macro@service).
//!
//! Services configured the OpenStack way build everything from their INI file, so that every
//! key applies (see [`MessagingConfig`]):
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), messaging::MessagingError> {
//! let config = messaging::parse_ini(
//!     "[DEFAULT]\ntransport_url = memory://\nrpc_response_timeout = 10\n\
//!      [oslo_messaging_notifications]\ntopics = notifications, billing\n",
//! )?; // or messaging::load_ini(path)
//! let client = config.rpc_client(config.rpc_transport().await?, messaging::Target::topic("compute"));
//! let notifier = config.notifier(config.notification_transport().await?, "compute.host1").await?;
//! # let _ = (client, notifier);
//! # Ok(()) }
//! ```
//!
//! The library logs through `tracing`; install a subscriber to see its warnings (README,
//! "Logs").
//!
//! See the `messaging-core` documentation for the API: [`RpcClient`], [`RpcServer`],
//! [`Notifier`], [`NotificationListener`], and [`typed`] for what typed services do on the
//! wire.

use std::sync::Once;

pub use messaging_core::*;

/// The traits typed services implement, and the error of a typed call (feature `macros`).
#[cfg(feature = "macros")]
pub use messaging_core::typed::{CallError, Event, RemoteException};
#[cfg(feature = "macros")]
pub use messaging_macros::{Event, RemoteException};

/// A typed service (feature `macros`, on by default) is one trait; the macro generates its
/// client and server adapter, and the declared error comes back as its type:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use messaging::{CallError, Context, RpcServer, Target};
///
/// #[messaging::service(version = "1.1")]
/// pub trait Greeter {
///     async fn greet(&self, ctx: Context, name: String) -> Result<String, Unknown>;
/// }
///
/// #[derive(Debug, thiserror::Error, messaging::RemoteException)]
/// #[error("who is {name}?")]
/// pub struct Unknown { name: String }
///
/// struct English;
/// impl Greeter for English {
///     async fn greet(&self, _ctx: Context, name: String) -> Result<String, Unknown> {
///         if name.is_empty() { Err(Unknown { name }) } else { Ok(format!("hello, {name}")) }
///     }
/// }
///
/// let rpc = messaging::get_rpc_transport("memory://").await?;
/// let server = RpcServer::new(rpc.clone(), Target::topic("greeter").server("g1"))
///     .endpoint(GreeterServer::new(English))
///     .start()
///     .await?;
/// let greeter = GreeterClient::new(rpc, Target::topic("greeter"));
/// assert_eq!(greeter.greet(&Context::new(), "ada".into()).await?, "hello, ada");
/// assert!(matches!(greeter.greet(&Context::new(), "".into()).await, Err(CallError::Service(Unknown { .. }))));
/// server.shutdown().await;
/// # Ok(()) }
/// ```
#[cfg(feature = "macros")]
pub use messaging_macros::service;

/// Install every driver this crate was built with. Idempotent; the `get_*` functions of this
/// crate call it, so applications only need it when they use `messaging_core` functions
/// directly.
pub fn install_default_drivers() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        #[cfg(feature = "rabbit")]
        install_driver(std::sync::Arc::new(driver_rabbit::RabbitDriver));
        #[cfg(feature = "amqp1")]
        install_driver(std::sync::Arc::new(driver_amqp1::Amqp1Driver));
        #[cfg(feature = "kafka")]
        install_driver(std::sync::Arc::new(driver_kafka::KafkaDriver));
    });
}

/// Open the RPC side of the transport named by `url` (see [`messaging_core::get_rpc_transport`]).
pub async fn get_rpc_transport(url: &str) -> Result<RpcTransport> {
    install_default_drivers();
    messaging_core::get_rpc_transport(url).await
}

/// Open the notification side of the transport named by `url`.
pub async fn get_notification_transport(url: &str) -> Result<NotificationTransport> {
    install_default_drivers();
    messaging_core::get_notification_transport(url).await
}

/// Open the RPC side of a transport with explicit options.
pub async fn get_rpc_transport_with(url: &str, options: &TransportOptions) -> Result<RpcTransport> {
    install_default_drivers();
    messaging_core::get_rpc_transport_with(url, options).await
}

/// Open the notification side of a transport with explicit options.
pub async fn get_notification_transport_with(
    url: &str,
    options: &TransportOptions,
) -> Result<NotificationTransport> {
    install_default_drivers();
    messaging_core::get_notification_transport_with(url, options).await
}

/// Read an oslo-style INI configuration (see [`messaging_core::config::parse_ini`]), checking
/// driver sections against this build's drivers.
pub fn parse_ini(text: &str) -> Result<MessagingConfig> {
    install_default_drivers();
    messaging_core::config::parse_ini(text)
}

/// Read an oslo-style INI file and environment overrides (see
/// [`messaging_core::config::load_ini`]).
pub fn load_ini(path: impl AsRef<std::path::Path>) -> Result<MessagingConfig> {
    install_default_drivers();
    messaging_core::config::load_ini(path)
}

/// The URL schemes this build can open.
pub fn available_schemes() -> Vec<String> {
    install_default_drivers();
    messaging_core::available_schemes()
}

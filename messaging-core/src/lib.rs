//! One messaging API, RPC and notifications, over transports chosen by URL, wire-compatible
//! with Python's oslo.messaging.
//!
//! This crate holds the API, the driver contract, the oslo wire codec, the in-process
//! `memory://` driver. The conformance suite every driver runs is the `messaging-conformance`
//! crate.
//! Applications usually depend on the `messaging` facade crate, which re-exports all of this
//! and installs the broker drivers it was built with.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), messaging_core::MessagingError> {
//! use std::time::Duration;
//! use messaging_core::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct EchoArgs { value: String }
//!
//! let rpc = get_rpc_transport("memory://").await?;
//! let server = RpcServer::new(rpc.clone(), Target::topic("compute").server("host1"))
//!     .endpoint(Endpoint::new().method("echo", |_ctx: Context, args: EchoArgs| async move {
//!         Ok::<_, RemoteError>(args.value)
//!     }))
//!     .start()
//!     .await?;
//!
//! let client = RpcClient::new(rpc, Target::topic("compute")).timeout(Duration::from_secs(10));
//! let ctx = Context::new().with("request_id", "req-1");
//! let reply: String = client.call(&ctx, "echo", &EchoArgs { value: "hi".into() }).await?;
//! assert_eq!(reply, "hi");
//!
//! match client.call::<String>(&ctx, "no_such", &NoArgs {}).await {
//!     Err(MessagingError::NoSuchMethod { method, .. }) => assert_eq!(method, "no_such"),
//!     other => panic!("unexpected {other:?}"),
//! }
//! server.shutdown().await;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]
// `RemoteError` is what endpoints return on their error path; boxing it would burden every
// endpoint signature for no gain on the success path.
#![allow(clippy::result_large_err)]

pub mod config;
mod context;
pub mod driver;
mod error;
mod memory;
mod notify;
pub mod options;
mod priority;
mod registry;
mod rpc;
mod service;
pub mod signing;
mod suggest;
mod target;
pub mod telemetry;
mod transport;
pub mod typed;
mod url;
pub mod wire;

pub use config::{MessagingConfig, NotificationsConfig};
pub use context::{Context, NoOpSerializer, Serializer, SharedSerializer};
pub use driver::Retry;
pub use error::{MessagingError, RemoteError, Result, RpcCall};
pub use memory::MemoryDriver;
pub use notify::{
    Notification, NotificationEndpoint, NotificationFilter, NotificationListener,
    NotificationMetadata, NotificationResult, Notifier, NotifierDriver, OutboxConfig, OutboxStats,
    Overflow,
};
pub use priority::Priority;
pub use registry::{available_schemes, driver_for_scheme, driver_named, install_driver};
pub use rpc::{
    Endpoint, NoArgs, RpcClient, RpcEndpoint, RpcServer, DEFAULT_MAX_CONCURRENCY, DEFAULT_TIMEOUT,
    PING_IDENTIFY_ARG, PING_METHOD,
};
pub use service::ServiceHandle;
pub use target::{Target, Version};
pub use transport::{
    get_notification_transport, get_notification_transport_with, get_rpc_transport,
    get_rpc_transport_with, NotificationTransport, RpcTransport, Transport, TransportOptions,
    DEFAULT_EXCHANGE,
};
pub use url::{TransportHost, TransportUrl};

//! What a configuration builds: transports, clients, servers, notifiers and listeners with
//! every setting of the file applied.

use super::MessagingConfig;
use crate::driver::Retry;
use crate::error::{MessagingError, Result};
use crate::notify::{NotificationListener, Notifier, NotifierDriver};
use crate::rpc::{RpcClient, RpcServer};
use crate::target::Target;
use crate::transport::{
    get_notification_transport_with, get_rpc_transport_with, NotificationTransport, RpcTransport,
};

/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), messaging_core::MessagingError> {
/// use messaging_core::{config::parse_ini, Context, Endpoint, RemoteError, Target};
///
/// let config = parse_ini(
///     "[DEFAULT]\ntransport_url = memory:///doc\ncontrol_exchange = nova\nrpc_response_timeout = 5\n\
///      [oslo_messaging_notifications]\ndriver = log\n",
/// )?;
/// let rpc = config.rpc_transport().await?;
/// let server = config
///     .rpc_server(rpc.clone(), Target::topic("compute").server("host1"))
///     .endpoint(Endpoint::new().method("echo", |_ctx: Context, n: serde_json::Value| async move {
///         Ok::<_, RemoteError>(n)
///     }))
///     .start()
///     .await?;
/// let client = config.rpc_client(rpc, Target::topic("compute")); // 5 s timeout, exchange nova
/// let echoed: serde_json::Value = client.call(&Context::new(), "echo", &serde_json::json!({"n": 1})).await?;
/// assert_eq!(echoed["n"], 1);
///
/// let notifier = config.notifier(config.notification_transport().await?, "compute.host1").await?;
/// notifier.info(&Context::new(), "compute.instance.create.end", &serde_json::json!({})).await?; // logged
/// server.shutdown().await;
/// # Ok(()) }
/// ```
impl MessagingConfig {
    /// Open the RPC transport of `transport_url`, with `control_exchange`, the driver sections
    /// and `[oslo_messaging_signing]`.
    ///
    /// Through the `messaging` facade, drivers are installed by its `load_ini`/`parse_ini`;
    /// call `messaging::install_default_drivers()` first for a config built another way.
    pub async fn rpc_transport(&self) -> Result<RpcTransport> {
        get_rpc_transport_with(&self.transport_url, &self.transport_options()).await
    }

    /// Open the notification transport: `[oslo_messaging_notifications] transport_url`, else
    /// `transport_url`, with the same options as [`rpc_transport`](Self::rpc_transport).
    pub async fn notification_transport(&self) -> Result<NotificationTransport> {
        get_notification_transport_with(self.notification_url(), &self.transport_options()).await
    }

    /// A client for `target` whose calls wait `rpc_response_timeout`.
    pub fn rpc_client(&self, transport: RpcTransport, target: Target) -> RpcClient {
        RpcClient::new(transport, target).timeout(self.rpc_timeout())
    }

    /// A server for `target` (a topic and a server name) handling `executor_thread_pool_size`
    /// requests at once and answering pings when `rpc_ping_enabled`; add endpoints, then start.
    pub fn rpc_server(&self, transport: RpcTransport, target: Target) -> RpcServer {
        RpcServer::new(transport, target)
            .max_concurrency(self.executor_thread_pool_size)
            .enable_ping(self.rpc_ping_enabled)
    }

    /// A notifier for `publisher_id` with `[oslo_messaging_notifications]` applied: `topics`,
    /// `driver`, `retry` and the outbox settings (opening the outbox spool, if any).
    pub async fn notifier(
        &self,
        transport: NotificationTransport,
        publisher_id: impl Into<String>,
    ) -> Result<Notifier> {
        let settings = &self.notifications;
        if settings.topics.is_empty() || settings.driver.is_empty() {
            // Possible from serde, not from a file: it would send nowhere without a word.
            return Err(MessagingError::InvalidConfig {
                line: None,
                reason: "[oslo_messaging_notifications] `topics` and `driver` must not be empty \
                         (driver = noop sends nothing on purpose)"
                    .into(),
            });
        }
        let drivers = settings
            .driver
            .iter()
            .map(|name| name.parse::<NotifierDriver>())
            .collect::<Result<Vec<_>>>()?;
        let notifier = Notifier::new(transport, publisher_id)
            .topics(&settings.topics)
            .drivers(drivers)
            .retry(Retry::from_oslo(Some(settings.retry)));
        match settings.outbox()? {
            Some(outbox) => notifier.with_outbox(outbox).await,
            None => Ok(notifier),
        }
    }

    /// A listener handling `executor_thread_pool_size` notifications at once; add targets and
    /// endpoints, then start.
    pub fn notification_listener(&self, transport: NotificationTransport) -> NotificationListener {
        NotificationListener::new(transport).max_concurrency(self.executor_thread_pool_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_notifier_that_would_send_nowhere_is_refused() {
        let config: MessagingConfig = serde_json::from_value(serde_json::json!({
            "transport_url": "memory://",
            "notifications": {"topics": []},
        }))
        .unwrap();
        let transport = config.notification_transport().await.unwrap();
        let refused = config.notifier(transport, "p").await;
        assert!(
            matches!(refused, Err(MessagingError::InvalidConfig { .. })),
            "{:?}",
            refused.err()
        );
    }
}

//! Typed notifications: a payload type that names its event type and default priority.

use std::future::Future;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::JsonSchema;
use crate::context::Context;
use crate::error::Result;
use crate::notify::{Notification, NotificationEndpoint, NotificationResult, Notifier};
use crate::priority::Priority;

/// A notification payload type: its event type and priority are declared once, with
/// `#[derive(Event)]` and `#[event(type = "scheduler.select.end", priority = "info")]`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), messaging_core::MessagingError> {
/// use messaging_core::typed::Event;
/// use messaging_core::*;
///
/// #[derive(Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
/// struct SelectEnd { hosts: Vec<String> }
///
/// impl Event for SelectEnd {
///     const EVENT_TYPE: &'static str = "scheduler.select.end";
///     const PRIORITY: Priority = Priority::Info;
/// }
///
/// let transport = get_notification_transport("memory://").await?;
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// let listener = NotificationListener::new(transport.clone())
///     .target(Target::topic("notifications"))
///     .endpoint(NotificationEndpoint::new().on_event(move |_ctx, event: SelectEnd| {
///         let tx = tx.clone();
///         async move { tx.send(event.hosts).ok(); }
///     }))
///     .start()
///     .await?;
/// let notifier = Notifier::new(transport, "scheduler.host1");
/// notifier.emit(&Context::new(), &SelectEnd { hosts: vec!["host1".into()] }).await?;
/// assert_eq!(rx.recv().await, Some(vec!["host1".to_owned()]));
/// listener.shutdown().await;
/// # Ok(()) }
/// ```
pub trait Event: Serialize + DeserializeOwned + JsonSchema + Send + 'static {
    /// The event type, e.g. `scheduler.select.end`.
    const EVENT_TYPE: &'static str;
    /// The priority it is sent at, and listened for.
    const PRIORITY: Priority;
}

impl Notifier {
    /// Send `event` at its priority, under its event type.
    pub async fn emit<E: Event>(&self, ctx: &Context, event: &E) -> Result<()> {
        self.notify(ctx, E::PRIORITY, E::EVENT_TYPE, event).await
    }
}

impl NotificationEndpoint {
    /// Handle notifications of event type `E::EVENT_TYPE` at `E::PRIORITY`, decoded into `E`.
    /// A payload that does not decode is logged and acknowledged (it would never decode).
    /// Other event types of that priority go to the handlers registered before.
    pub fn on_event<E, F, Fut>(self, handler: F) -> Self
    where
        E: Event,
        F: Fn(Context, E) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: Into<NotificationResult>,
    {
        let handler = Arc::new(handler);
        self.route_event(
            E::PRIORITY,
            E::EVENT_TYPE,
            Arc::new(move |notification: Notification| {
                let handler = handler.clone();
                Box::pin(async move {
                    match serde_json::from_value::<E>(notification.payload) {
                        Ok(event) => handler(notification.context, event).await.into(),
                        Err(error) => {
                            tracing::warn!(
                                event_type = E::EVENT_TYPE,
                                publisher_id = %notification.publisher_id,
                                message_id = %notification.metadata.message_id,
                                %error,
                                "dropping a notification whose payload does not decode"
                            );
                            NotificationResult::Handled
                        }
                    }
                })
            }),
        )
    }
}

/// A handler that returns nothing has handled the notification.
impl From<()> for NotificationResult {
    fn from((): ()) -> Self {
        NotificationResult::Handled
    }
}

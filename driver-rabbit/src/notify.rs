//! The notification side: the notifier (which declares the `<topic>.<priority>` queues it
//! publishes to, as oslo's does) and listeners, acknowledged after the endpoint returns.

use std::sync::Arc;

use async_trait::async_trait;
use messaging_core::driver::retry::Describe;
use messaging_core::driver::{
    decode_or_drop, Acknowledger, IncomingNotification, NotificationSource, NotifyAddress,
    NotifyDriver, PerAddress, SendOptions,
};
use messaging_core::wire::{self, ContextStyle, NotificationFormat, NotificationMessage};
use messaging_core::{MessagingError, Result};

use crate::acks::Kind;
use crate::connection::Connector;
use crate::publisher::{Outgoing, Publisher};
use crate::rpc::{body, failure_error, origin};
use crate::subscriber::{Guard, Plan, Settler, StreamCursor, Subscriber, Unsettled};
use crate::topology;

/// The notification side of a rabbit transport.
pub(crate) struct RabbitNotify {
    connector: Arc<Connector>,
    publisher: Publisher,
    destinations: PerAddress<NotifyAddress, Arc<topology::Destination>>,
}

impl RabbitNotify {
    pub(crate) fn new(connector: Arc<Connector>) -> Self {
        Self {
            publisher: Publisher::new(connector.clone(), "notify-send"),
            connector,
            destinations: PerAddress::default(),
        }
    }
}

#[async_trait]
impl NotifyDriver for RabbitNotify {
    async fn notify(
        &self,
        to: &NotifyAddress,
        message: &NotificationMessage,
        format: NotificationFormat,
        options: &SendOptions,
    ) -> Result<()> {
        let body = message.encode(format, ContextStyle::Flattened, Some(&wire::new_id()))?;
        let config = self.connector.config();
        let destination = self
            .destinations
            .get(to, |to| Arc::new(topology::notify_destination(config, to)));
        let (exchange, routing_key) = (&destination.exchange, &destination.routing_key);
        let outgoing = Outgoing {
            exchange,
            routing_key,
            body: &body,
            expiration: None,
            declarations: &destination.declarations,
            compression: None,
        };
        let what = Describe::new(|f| write!(f, "notifying {exchange}/{routing_key}"));
        self.publisher.publish(&what, outgoing, options).await
    }

    async fn listen(
        &self,
        subscriptions: &[NotifyAddress],
        pool: Option<&str>,
    ) -> Result<Box<dyn NotificationSource>> {
        if subscriptions.is_empty() {
            return Err(MessagingError::InvalidTarget(
                "a notification listener needs a subscription".into(),
            ));
        }
        let (declarations, queues) =
            topology::notify_listener(self.connector.config(), subscriptions, pool);
        let subscriber = Subscriber::start(Plan {
            connector: self.connector.clone(),
            role: "notify-listener",
            declarations,
            queues,
            delete_on_close: Vec::new(),
            stream: None,
            cursor: StreamCursor::default(),
        })
        .await
        .map_err(failure_error)?;
        Ok(Box::new(RabbitNotificationSource { subscriber }))
    }

    async fn close(&self) {
        self.publisher.close().await;
    }
}

/// A listener's stream of notifications.
struct RabbitNotificationSource {
    subscriber: Subscriber,
}

#[async_trait]
impl NotificationSource for RabbitNotificationSource {
    async fn next(&mut self) -> Option<IncomingNotification> {
        loop {
            let incoming = self.subscriber.recv().await?;
            let delivery = &incoming.delivery;
            // Everything below is synchronous: dropping this future loses nothing.
            if !delivery.acker.usable() {
                continue;
            }
            let decoded = body(delivery).and_then(|body| NotificationMessage::decode(&body));
            let Some((message, unique_id)) =
                decode_or_drop(decoded, "rabbit", || origin(delivery), || &delivery.data)
            else {
                self.subscriber.reject(incoming, false);
                continue;
            };
            return Some(IncomingNotification {
                message: Box::new(message),
                unique_id,
                acker: Box::new(RabbitAcker {
                    delivery: incoming.into_unsettled(),
                    settler: self.subscriber.settler(),
                    _guard: self.subscriber.guard(),
                }),
            });
        }
    }

    async fn close(&mut self) {
        self.subscriber.close().await;
    }
}

/// Settles one notification: `basic.ack`, or `basic.reject` with requeue, sent by the
/// subscriber's task with the settlements gathered meanwhile. The listener's connection stays
/// open until it is used or dropped.
struct RabbitAcker {
    delivery: Unsettled,
    settler: Settler,
    _guard: Guard,
}

impl RabbitAcker {
    fn settle(self, kind: Kind) -> Result<()> {
        if self.settler.settle(self.delivery, kind) {
            Ok(())
        } else {
            Err(MessagingError::DeliveryFailure(
                "the listener's connection is closed; the broker delivers the notification again"
                    .into(),
            ))
        }
    }
}

#[async_trait]
impl Acknowledger for RabbitAcker {
    async fn ack(self: Box<Self>) -> Result<()> {
        self.settle(Kind::Ack)
    }

    async fn requeue(self: Box<Self>) -> Result<()> {
        self.settle(Kind::Reject { requeue: true })
    }
}

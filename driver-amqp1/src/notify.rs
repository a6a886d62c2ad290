//! The notification side: unsettled sends awaited for their outcome, one receiver link per
//! subscribed address, acknowledged (`accepted`) or requeued (`released`) by the listener.
//!
//! Through a router the notifier's outcome is the listener's own disposition (end to end). A
//! batch listener would give it only once the whole batch is handled, so that a notifier
//! sending one at a time would wait out the batch window for each: in router mode a
//! notification that joins a batch is accepted at once, and a requeue of it is a new send.

use std::sync::Arc;

use async_trait::async_trait;
use messaging_core::driver::{
    decode_or_drop, Acknowledger, InFlight, InFlightGuard, IncomingNotification,
    NotificationSource, NotifyAddress, NotifyDriver, PerAddress, SendOptions,
};
use messaging_core::wire::{NotificationFormat, NotificationMessage};
use messaging_core::{MessagingError, Result, Retry};
use tokio::time::Instant;

use crate::config::Amqp1Config;
use crate::link::{Inbox, LinkManager, Received, SendSpec};
use crate::message;
use crate::rpc::shown_body;

const DRIVER: &str = "amqp1";

/// The notification side of one transport.
pub(crate) struct Amqp1Notify {
    links: Arc<LinkManager>,
    /// Each address's sender target.
    targets: PerAddress<NotifyAddress, Arc<str>>,
}

impl Amqp1Notify {
    pub fn new(links: Arc<LinkManager>) -> Self {
        Self {
            links,
            targets: PerAddress::default(),
        }
    }
}

#[async_trait]
impl NotifyDriver for Amqp1Notify {
    async fn notify(
        &self,
        to: &NotifyAddress,
        message: &NotificationMessage,
        format: NotificationFormat,
        options: &SendOptions,
    ) -> Result<()> {
        let config = self.links.config();
        let timeout = options
            .timeout
            .unwrap_or_else(|| Amqp1Config::secs(config.default_notify_timeout));
        let spec = SendSpec::within(
            timeout,
            config.pre_settled.notify,
            options.retry,
            "notification",
        );
        let endpoints = self
            .links
            .endpoints(options.retry, Some(spec.deadline))
            .await?;
        let target = self
            .targets
            .get(to, |to| endpoints.notify_target(to).into());
        let amqp = message::notification(&target, message, format)?;
        self.links.send(&target, amqp, &spec).await
    }

    async fn listen(
        &self,
        subscriptions: &[NotifyAddress],
        pool: Option<&str>,
    ) -> Result<Box<dyn NotificationSource>> {
        if pool.is_some() {
            return Err(MessagingError::unsupported(DRIVER, "listener pools"));
        }
        let config = self.links.config();
        let deadline = Instant::now() + config.connect_timeout() * 2;
        let endpoints = self.links.endpoints(Retry::Never, Some(deadline)).await?;
        let mut sources: Vec<String> = subscriptions
            .iter()
            .map(|s| endpoints.notify_source(s))
            .collect();
        sources.dedup();
        let credit = config.notify_server_credit;
        let in_flight = InFlight::default();
        let router = (!endpoints.mode().is_broker()).then(|| self.links.clone());
        let inbox = self
            .links
            .open_inbox(sources, credit, credit as usize, Some(in_flight.clone()))
            .await?;
        Ok(Box::new(Amqp1NotificationSource {
            inbox,
            in_flight,
            router,
        }))
    }

    async fn close(&self) {
        self.links.close().await;
    }
}

struct Amqp1NotificationSource {
    inbox: Inbox,
    in_flight: InFlight,
    /// Router mode: the transport, to send again what was settled early and then requeued.
    router: Option<Arc<LinkManager>>,
}

#[async_trait]
impl NotificationSource for Amqp1NotificationSource {
    async fn next(&mut self) -> Option<IncomingNotification> {
        loop {
            let received = self.inbox.recv().await?;
            let decoded = message::decode_notification(&received.message);
            let origin = || "notification listener";
            let Some(notification) =
                decode_or_drop(decoded, DRIVER, origin, || shown_body(&received))
            else {
                received.accept();
                continue;
            };
            return Some(IncomingNotification {
                message: Box::new(notification),
                unique_id: None,
                acker: Box::new(Amqp1Acker {
                    received: Some(received),
                    _in_flight: self.in_flight.track(),
                    router: self.router.clone(),
                    settled_early: false,
                }),
            });
        }
    }

    async fn close(&mut self) {
        self.inbox.close().await;
    }
}

/// Settles one notification; dropping it unsettled counts as done (the peer redelivers it
/// when the link goes).
struct Amqp1Acker {
    received: Option<Received>,
    _in_flight: InFlightGuard,
    router: Option<Arc<LinkManager>>,
    /// Accepted when it joined a batch (router mode).
    settled_early: bool,
}

impl Amqp1Acker {
    fn failed(what: &str) -> MessagingError {
        MessagingError::DeliveryFailure(format!(
            "cannot {what} a notification: its link is gone (it will be redelivered)"
        ))
    }
}

/// Send a notification that was accepted early (router mode) again, for a requeue. In the
/// background: through a router the send waits for a listener's disposition, possibly this
/// listener's, which takes it only once the current batch is done.
fn send_again(links: Arc<LinkManager>, received: Received) -> Result<()> {
    let address = received
        .message
        .properties
        .as_ref()
        .and_then(|p| p.to.clone())
        .ok_or_else(|| {
            MessagingError::DeliveryFailure(
                "cannot requeue a notification that names no `to` address: it was already \
                 accepted when it joined its batch"
                    .into(),
            )
        })?;
    // Without the router's annotations (its trace would make it drop the copy as a loop).
    let message = message::AmqpMessage {
        header: None,
        delivery_annotations: None,
        message_annotations: None,
        ..received.message
    };
    let config = links.config();
    let spec = SendSpec::within(
        Amqp1Config::secs(config.default_notify_timeout),
        config.pre_settled.notify,
        Retry::Forever,
        "requeued notification",
    );
    tokio::spawn(async move {
        if let Err(error) = links.send(&address, message, &spec).await {
            tracing::error!(%error, address, "a requeued notification could not be sent again: it is lost");
        }
    });
    Ok(())
}

#[async_trait]
impl Acknowledger for Amqp1Acker {
    async fn ack(mut self: Box<Self>) -> Result<()> {
        let received = self.received.take().expect("settled once");
        if self.settled_early || received.accept() {
            Ok(())
        } else {
            Err(Self::failed("acknowledge"))
        }
    }

    async fn requeue(mut self: Box<Self>) -> Result<()> {
        let received = self.received.take().expect("settled once");
        match &self.router {
            Some(links) if self.settled_early => send_again(links.clone(), received),
            _ if received.release() => Ok(()),
            _ => Err(Self::failed("requeue")),
        }
    }

    /// Router mode: accept now, so that the notifier, waiting for this disposition, need not
    /// wait for the batch to be handled.
    async fn batched(&mut self) {
        if let (Some(_), Some(received)) = (&self.router, &self.received) {
            self.settled_early = received.accept();
        }
    }
}

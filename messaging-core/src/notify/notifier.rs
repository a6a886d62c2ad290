//! The notifier: publishes notifications of the seven priorities.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;
use tracing::Instrument;

use crate::context::{default_serializer, Context, SharedSerializer};
use crate::driver::{NotifyAddress, Retry, SendOptions};
use crate::error::{MessagingError, Result};
use crate::notify::outbox::{Item, Outbox, OutboxConfig, OutboxStats};
use crate::priority::Priority;
use crate::telemetry;
use crate::transport::NotificationTransport;
use crate::wire::{self, NotificationFormat, NotificationMessage};

/// How a notifier emits: oslo's notification driver names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifierDriver {
    /// `messagingv2`: to the transport, in the `2.0` envelope (the default).
    MessagingV2,
    /// `messaging`: to the transport, as the bare message dict.
    Messaging,
    /// `log`: as a `tracing` event (target `messaging::notification`).
    Log,
    /// `noop`: nowhere.
    Noop,
}

impl FromStr for NotifierDriver {
    type Err = MessagingError;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "messagingv2" => Ok(Self::MessagingV2),
            "messaging" => Ok(Self::Messaging),
            "log" => Ok(Self::Log),
            "noop" => Ok(Self::Noop),
            other => Err(MessagingError::InvalidOption {
                option: "driver".into(),
                value: other.into(),
                reason: "expected one of: messagingv2, messaging, log, noop".into(),
            }),
        }
    }
}

/// Context keys never sent with notifications (oslo sends a redacted copy of the context).
const REDACTED_CONTEXT_KEYS: &[&str] = &["auth_token"];

/// Sends notifications. Cheap to clone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), messaging_core::MessagingError> {
/// use messaging_core::{get_notification_transport, Context, Notifier};
///
/// let transport = get_notification_transport("memory://").await?;
/// let notifier = Notifier::new(transport, "compute.host1");
/// notifier.info(&Context::new(), "compute.instance.create.end", &serde_json::json!({"id": 1})).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Notifier {
    transport: NotificationTransport,
    publisher_id: String,
    topics: Vec<String>,
    drivers: Vec<NotifierDriver>,
    retry: Retry,
    timeout: Option<std::time::Duration>,
    exchange: Option<String>,
    /// Per topic, per priority: where a notification goes, worked out when the topics or
    /// the exchange are set, and shared by the deliveries queued in the outbox.
    addresses: Arc<[[Arc<NotifyAddress>; Priority::ALL.len()]]>,
    serializer: SharedSerializer,
    /// Shared by clones and `prepare`d copies.
    pub(super) outbox: Option<Arc<Outbox>>,
}

impl Notifier {
    /// A notifier for `publisher_id` with oslo's defaults: topic `notifications`, driver
    /// `messagingv2`, retry forever.
    pub fn new(transport: NotificationTransport, publisher_id: impl Into<String>) -> Self {
        Self {
            transport,
            publisher_id: publisher_id.into(),
            topics: vec!["notifications".to_owned()],
            drivers: vec![NotifierDriver::MessagingV2],
            retry: Retry::Forever,
            timeout: None,
            exchange: None,
            addresses: Arc::new([]),
            serializer: default_serializer(),
            outbox: None,
        }
        .with_addresses()
    }

    /// Work out the addresses of the topics and exchange set.
    fn with_addresses(mut self) -> Self {
        let exchange = self
            .exchange
            .as_deref()
            .unwrap_or_else(|| self.transport.control_exchange());
        self.addresses = self
            .topics
            .iter()
            .map(|topic| {
                Priority::ALL.map(|priority| {
                    Arc::new(NotifyAddress {
                        exchange: exchange.to_owned(),
                        topic: topic.clone(),
                        priority,
                    })
                })
            })
            .collect();
        self
    }

    /// Send through a local outbox: notify calls return once the notification is queued
    /// (and, with [`OutboxConfig::spool_dir`], on disk), and a background task sends the queue,
    /// keeping notifications the broker cannot take now and sending them once it is back.
    /// Opens (and locks) the spool, queueing what an earlier process left unsent.
    ///
    /// * **Pipelining**: the sender keeps up to [`OutboxConfig::max_in_flight`] sends going
    ///   (a sliding window: a new send starts as soon as one is confirmed), so one notifier
    ///   in a loop gets the broker's throughput rather than one confirm round trip per
    ///   notification.
    /// * **Bounded**: the outbox holds [`OutboxConfig::capacity`] notifications; when it is
    ///   full, [`OutboxConfig::overflow`] decides: refuse ([`Overflow::Error`](crate::Overflow::Error),
    ///   the default), drop the oldest, or wait for room ([`Overflow::Wait`](crate::Overflow::Wait):
    ///   backpressure, a sender faster than the broker slowed to its pace).
    /// * **At least once**: a notification leaves the outbox (and its spool) only once the
    ///   driver confirmed it; one whose confirm was received but not yet recorded when the
    ///   process died is sent again, with the same `message_id`. A send is retried while the
    ///   error is transient (connection, delivery, timeouts, authentication); other errors
    ///   drop that notification with an error log ([`OutboxStats::failed`]).
    /// * **Order**: sends start in the order the notifications were queued (one queue per
    ///   outbox, shared by the notifier's clones and [`prepare`](Self::prepare)d copies).
    ///   While nothing fails, drivers that publish in call order on one connection deliver
    ///   them in that order (`memory://`, RabbitMQ, AMQP 1.0); Kafka spreads records without
    ///   a key over a topic's partitions, so Kafka listeners see no total order in any case.
    ///   After a failure the failed notifications go back to the front of the queue in their
    ///   order, but those in flight with them that were confirmed arrive first.
    ///   [`OutboxConfig::max_in_flight`]`(1)` keeps the order strict even across failures,
    ///   at one round trip per notification.
    ///
    /// The notifier's [`retry`](Self::retry) and [`timeout`](Self::timeout) do not apply (see
    /// [`OutboxConfig::send_timeout`]). Without a spool, what is pending is lost when the
    /// process exits: call [`flush`](Self::flush) before. The sender task stops when the
    /// notifier and all its clones are dropped.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), messaging_core::MessagingError> {
    /// use std::time::Duration;
    /// use messaging_core::{get_notification_transport, Context, Notifier, OutboxConfig, Overflow};
    ///
    /// let spool = tempfile::tempdir().unwrap();
    /// let transport = get_notification_transport("memory://").await?;
    /// let notifier = Notifier::new(transport, "compute.host1")
    ///     .with_outbox(
    ///         OutboxConfig::new(10_000)
    ///             .spool_dir(spool.path())
    ///             .overflow(Overflow::DropOldest),
    ///     )
    ///     .await?;
    /// notifier.info(&Context::new(), "compute.instance.create.end", &serde_json::json!({"id": 1})).await?;
    /// notifier.flush(Duration::from_secs(10)).await?;
    /// assert_eq!(notifier.outbox_stats().unwrap().sent, 1);
    /// # Ok(()) }
    /// ```
    pub async fn with_outbox(mut self, config: OutboxConfig) -> Result<Self> {
        // Let the previous outbox (if any) release its spool first.
        self.outbox = None;
        let driver = self.transport.driver().clone();
        let telemetry = self.transport.telemetry().clone();
        let outbox = Outbox::open(driver, config, telemetry).await?;
        self.outbox = Some(Arc::new(outbox));
        Ok(self)
    }

    /// The outbox's counters, if this notifier has an outbox.
    pub fn outbox_stats(&self) -> Option<OutboxStats> {
        self.outbox.as_ref().map(|o| o.stats())
    }

    /// Wait until the outbox has sent everything it holds (and recorded so in its spool), or
    /// fail with [`MessagingError::SendTimeout`] after `timeout`. Returns at once without an
    /// outbox.
    pub async fn flush(&self, timeout: Duration) -> Result<()> {
        match &self.outbox {
            Some(outbox) => outbox.flush(timeout).await,
            None => Ok(()),
        }
    }

    /// A copy with another publisher id (oslo's `prepare(publisher_id=…)`).
    pub fn prepare(&self, publisher_id: impl Into<String>) -> Self {
        Self {
            publisher_id: publisher_id.into(),
            ..self.clone()
        }
    }

    /// Publish to these topics (each gets a copy).
    pub fn topics<I: IntoIterator<Item = S>, S: Into<String>>(mut self, topics: I) -> Self {
        self.topics = topics.into_iter().map(Into::into).collect();
        self.with_addresses()
    }

    /// Emit through this driver only.
    pub fn driver(self, driver: NotifierDriver) -> Self {
        self.drivers([driver])
    }

    /// Emit through each of these drivers.
    pub fn drivers(mut self, drivers: impl IntoIterator<Item = NotifierDriver>) -> Self {
        self.drivers = drivers.into_iter().collect();
        self
    }

    /// How often to retry when the broker is unreachable.
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Give up sending a notification after this long (with the retries allowed), instead of
    /// waiting as long as the retry policy does.
    pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Publish to this exchange instead of the transport's control exchange.
    pub fn exchange(mut self, exchange: impl Into<String>) -> Self {
        self.exchange = Some(exchange.into());
        self.with_addresses()
    }

    /// Convert payloads and contexts with `serializer`.
    pub fn serializer(mut self, serializer: SharedSerializer) -> Self {
        self.serializer = serializer;
        self
    }

    /// The publisher id.
    pub fn publisher_id(&self) -> &str {
        &self.publisher_id
    }

    /// False when every driver is `noop`: callers may skip building payloads.
    pub fn is_enabled(&self) -> bool {
        self.drivers.iter().any(|d| *d != NotifierDriver::Noop)
    }

    /// Send a notification of `priority`. With an outbox, returns once it is queued (a full
    /// outbox is [`MessagingError::OutboxFull`] with [`Overflow::Error`](crate::Overflow::Error);
    /// [`Overflow::Wait`](crate::Overflow::Wait) waits for room instead).
    pub async fn notify(
        &self,
        ctx: &Context,
        priority: Priority,
        event_type: &str,
        payload: &(impl Serialize + ?Sized),
    ) -> Result<()> {
        if !self.is_enabled() {
            return Ok(());
        }
        let payload = self
            .serializer
            .serialize_entity(ctx, serde_json::to_value(payload)?)?;
        let mut context = self.serializer.serialize_context(ctx)?.0;
        for key in REDACTED_CONTEXT_KEYS {
            if let Some(value) = context.get_mut(*key) {
                *value = Value::Null;
            }
        }
        let mut message = NotificationMessage {
            message_id: wire::new_message_id(),
            publisher_id: self.publisher_id.clone(),
            event_type: event_type.to_owned(),
            priority,
            payload,
            timestamp: wire::timestamp_now(),
            context,
            signature: None,
        };
        let system = self.transport.telemetry().system;
        let span = telemetry::notify(system, &self.topics, &message, self.outbox.is_some());
        if let Some(trace) = telemetry::outgoing(&span) {
            trace.inject(&mut message.context);
        }
        if let Some(signing) = self.transport.signing() {
            signing.sign_notification(&mut message);
        }
        let sent = self.deliver(message).instrument(span.clone()).await;
        telemetry::finish(&span, &sent);
        sent
    }

    /// Send `message` through each driver to each topic (or queue it in the outbox).
    async fn deliver(&self, message: NotificationMessage) -> Result<()> {
        let priority = Priority::ALL
            .iter()
            .position(|p| *p == message.priority)
            .expect("every priority is in Priority::ALL");
        // Shared by the outbox's deliveries (one per driver and topic), not copied.
        let message = Arc::new(message);
        let options = SendOptions {
            retry: self.retry,
            timeout: self.timeout,
            ..SendOptions::default()
        };
        let mut queued = Vec::new();
        for driver in &self.drivers {
            let format = match driver {
                NotifierDriver::MessagingV2 => NotificationFormat::V2,
                NotifierDriver::Messaging => NotificationFormat::V1,
                NotifierDriver::Log => {
                    log_notification(&message);
                    continue;
                }
                NotifierDriver::Noop => continue,
            };
            for addresses in self.addresses.iter() {
                let to = &addresses[priority];
                if self.outbox.is_some() {
                    queued.push(Arc::new(Item {
                        to: to.clone(),
                        message: message.clone(),
                        format,
                    }));
                    continue;
                }
                let started = Instant::now();
                self.transport
                    .driver()
                    .notify(to, &message, format, &options)
                    .await?;
                let meters = &self.transport.telemetry().meters;
                let meters = meters.notify(&to.topic, &message.event_type);
                meters.sent.increment(1);
                meters.confirm.record(telemetry::seconds(started.elapsed()));
            }
        }
        match &self.outbox {
            Some(outbox) => outbox.enqueue(queued).await,
            None => Ok(()),
        }
    }
}

macro_rules! priority_methods {
    ($($name:ident => $priority:ident),* $(,)?) => {
        impl Notifier {
            $(
                #[doc = concat!("Send a notification of priority `", stringify!($name), "`.")]
                pub async fn $name(&self, ctx: &Context, event_type: &str, payload: &(impl Serialize + ?Sized)) -> Result<()> {
                    self.notify(ctx, Priority::$priority, event_type, payload).await
                }
            )*
        }
    };
}

priority_methods! {
    audit => Audit,
    debug => Debug,
    info => Info,
    warn => Warn,
    warning => Warn,
    error => Error,
    critical => Critical,
    sample => Sample,
}

fn log_notification(message: &NotificationMessage) {
    let payload = message.payload.to_string();
    macro_rules! emit {
        ($level:ident) => {
            tracing::$level!(
                target: "messaging::notification",
                event_type = %message.event_type,
                publisher_id = %message.publisher_id,
                priority = %message.priority,
                message_id = %message.message_id,
                %payload,
                "notification"
            )
        };
    }
    match message.priority {
        Priority::Debug | Priority::Sample => emit!(debug),
        Priority::Info | Priority::Audit => emit!(info),
        Priority::Warn => emit!(warn),
        Priority::Error | Priority::Critical => emit!(error),
    }
}

//! The contract between the API and a transport driver.
//!
//! A driver is a factory ([`Driver`]) registered for one or more URL schemes. For a URL it
//! builds an [`RpcDriver`] and/or a [`NotifyDriver`]: small object-safe traits that move
//! messages and know nothing of endpoints, versions, timeouts or retries of the API above them.
//! The API does dispatch, version negotiation, call timeouts, call-monitor heartbeats,
//! duplicate suppression, batching and filtering, once for every driver.
//!
//! To write a driver: implement these traits, use [`crate::wire`] for the oslo formats and
//! [`ReplyRouter`] to correlate replies, declare what you cannot do in [`Capabilities`], and run
//! the conformance suite (the `messaging-conformance` crate) against your real broker.
//!
//! Message signing ([`crate::signing`]) happens above the drivers: a driver only carries the
//! `signature` of [`RpcRequest`], [`Reply`] and [`NotificationMessage`] unchanged (the
//! [`crate::wire`] codec does it as the `_signature` key), and never checks it.

mod address;
mod capabilities;
mod in_flight;
mod pace;
mod reply;
pub mod retry;
#[cfg(feature = "tls")]
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{MessagingError, Result};
use crate::options::OptionSpec;
use crate::url::TransportUrl;
use crate::wire::{NotificationFormat, NotificationMessage, Reply, RpcRequest};

pub use address::{NotifyAddress, PerAddress, RpcAddress, ServerAddress};
pub use capabilities::{Capabilities, Delivery, Feature};
pub use in_flight::{InFlight, InFlightGuard};
pub use pace::Pace;
pub use reply::{PendingReply, ReplyRouter};

/// A hash map for lookups made on every message (per-address state, reply waiters, Kafka
/// offsets): rapidhash, several times cheaper than the standard SipHash on short keys, and
/// still randomly seeded, since keys can come from senders.
pub type FastHashMap<K, V> = std::collections::HashMap<K, V, rapidhash::fast::RandomState>;

/// How often a send is retried when the broker is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retry {
    /// Try once.
    Never,
    /// Retry up to this many times.
    Times(u32),
    /// Retry until it works (a call's timeout still bounds it). oslo's default.
    #[default]
    Forever,
}

impl Retry {
    /// oslo's convention: `None` or a negative number means forever, `0` never, `n` n times.
    pub fn from_oslo(retry: Option<i64>) -> Self {
        match retry {
            None => Retry::Forever,
            Some(n) if n < 0 => Retry::Forever,
            Some(0) => Retry::Never,
            Some(n) => Retry::Times(u32::try_from(n).unwrap_or(u32::MAX)),
        }
    }

    /// True if attempt number `attempt` (1 for the first retry) is allowed.
    pub fn allows(&self, attempt: u32) -> bool {
        match self {
            Retry::Never => false,
            Retry::Times(n) => attempt <= *n,
            Retry::Forever => true,
        }
    }
}

/// Per-send parameters a driver honours.
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    /// For calls: the caller's timeout (oslo sets it as the message's expiration). For casts
    /// and notifications: the caller's send timeout, how long the driver may spend handing the
    /// message over; `None`: the driver's own default (e.g. `default_send_timeout` of AMQP 1.0).
    pub timeout: Option<Duration>,
    /// For calls: the caller's call-monitor timeout (servers heartbeat every half of it).
    pub call_monitor_timeout: Option<Duration>,
    /// How often to retry when the broker is unreachable.
    pub retry: Retry,
    /// Calls and casts: end with [`MessagingError::NoServer`] once the transport has seen for
    /// this long that nobody consumes the address ([`Feature::FailFast`]). `None`: the
    /// transport's `fail_fast` option; [`Duration::ZERO`]: off.
    pub fail_fast: Option<Duration>,
}

impl SendOptions {
    /// The fail-fast window in effect: the caller's, else `configured` (the transport's
    /// `fail_fast` option); `None` when it is off.
    pub fn fail_fast_window(&self, configured: Duration) -> Option<Duration> {
        Some(self.fail_fast.unwrap_or(configured)).filter(|window| !window.is_zero())
    }
}

/// The option `fail_fast` (seconds; 0, the default, is off), for drivers that can tell that
/// nobody consumes an RPC address ([`Feature::FailFast`]) to declare in their option list.
pub const FAIL_FAST_OPTION: OptionSpec = OptionSpec::new(
    "fail_fast",
    crate::options::OptionKind::Float,
    "seconds after which a call or cast that nobody can take ends with NoServer (0: wait for \
     the timeout)",
);

/// A transport driver: a factory for the RPC and notification sides of one URL scheme.
#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// Short name, used in errors (`rabbit`, `kafka`, …).
    fn name(&self) -> &'static str;

    /// The `messaging.system` its spans report (OpenTelemetry's name for the broker, e.g.
    /// `rabbitmq`, `kafka`). Defaults to [`name`](Self::name).
    fn messaging_system(&self) -> &'static str {
        self.name()
    }

    /// URL schemes (the part before `+`) this driver serves.
    fn schemes(&self) -> &'static [&'static str];

    /// The URL query options this driver understands.
    fn options(&self) -> &'static [OptionSpec] {
        &[]
    }

    /// The default value of each option, as text (`None`: unset), for tools that list the
    /// options (`omsg options`): [`DriverConfig::option_values`](crate::options::DriverConfig::option_values)
    /// of the default settings. Options missing here have no default of their own.
    fn option_defaults(&self) -> Vec<(&'static str, Option<String>)> {
        Vec::new()
    }

    /// What this driver can and cannot do.
    fn capabilities(&self) -> Capabilities;

    /// What this driver can do with the options of `url` (some features depend on them, e.g.
    /// where a new Kafka consumer group starts reading). Defaults to [`capabilities`](Self::capabilities).
    fn capabilities_for(&self, url: &TransportUrl) -> Capabilities {
        let _ = url;
        self.capabilities()
    }

    /// Build the RPC side for `url` (options already validated).
    async fn rpc(&self, url: &TransportUrl) -> Result<Arc<dyn RpcDriver>> {
        let _ = url;
        Err(MessagingError::unsupported(self.name(), "RPC"))
    }

    /// Build the notification side for `url` (options already validated).
    async fn notifications(&self, url: &TransportUrl) -> Result<Arc<dyn NotifyDriver>> {
        let _ = url;
        Err(MessagingError::unsupported(self.name(), "notifications"))
    }
}

/// Moves RPC requests and replies.
#[async_trait]
pub trait RpcDriver: Send + Sync + 'static {
    /// Send a request that expects no reply (to one server of the topic, one named server, or
    /// every server if `to.fanout`).
    async fn cast(
        &self,
        to: &RpcAddress,
        request: &RpcRequest,
        options: &SendOptions,
    ) -> Result<()>;

    /// Send a request and return where its replies will arrive. The caller applies timeouts.
    async fn call(
        &self,
        to: &RpcAddress,
        request: &RpcRequest,
        options: &SendOptions,
    ) -> Result<PendingReply>;

    /// Start consuming requests addressed to a server: its topic, its own server address and
    /// the topic's fanout.
    async fn listen(&self, on: &ServerAddress) -> Result<Box<dyn RpcListener>>;

    /// Release connections. Pending calls fail or time out.
    async fn close(&self) {}
}

/// A server's stream of requests.
#[async_trait]
pub trait RpcListener: Send + 'static {
    /// The next request, or `None` once closed. Must be cancel-safe: dropping the future loses
    /// nothing. A driver handles undecodable messages itself (logs and drops them) and never
    /// returns them here.
    async fn next(&mut self) -> Option<IncomingRequest>;

    /// Stop consuming. Requests not yet returned by `next` stay with the broker for others.
    async fn close(&mut self);
}

/// A request delivered to a server.
pub struct IncomingRequest {
    /// The request.
    pub request: RpcRequest,
    /// `_unique_id`, when the transport carries one (for duplicate suppression).
    pub unique_id: Option<String>,
    /// The caller's call-monitor timeout: the server heartbeats every half of it.
    pub call_monitor_timeout: Option<Duration>,
    /// Where to answer; `None` for casts.
    pub reply: Option<Box<dyn Replier>>,
}

impl IncomingRequest {
    /// The request a driver decoded as `message` (rabbit and memory framing), answered by the
    /// replier `replier` builds from the call's reply address and message id.
    pub fn from_message(
        message: crate::wire::RequestMessage,
        replier: impl FnOnce(crate::wire::CallInfo) -> Box<dyn Replier>,
    ) -> Self {
        Self {
            call_monitor_timeout: message.call_monitor_timeout(),
            reply: message.call.map(replier),
            request: message.request,
            unique_id: message.unique_id,
        }
    }
}

/// Sends the answers to one call.
#[async_trait]
pub trait Replier: Send + Sync + 'static {
    /// Send a heartbeat, the result or the failure, with its signature if it has one.
    async fn send(&self, reply: Reply) -> Result<()>;
}

/// Moves notifications.
#[async_trait]
pub trait NotifyDriver: Send + Sync + 'static {
    /// Publish one notification; returns once the transport has taken responsibility for it.
    async fn notify(
        &self,
        to: &NotifyAddress,
        message: &NotificationMessage,
        format: NotificationFormat,
        options: &SendOptions,
    ) -> Result<()>;

    /// Subscribe to notifications. Listeners with the same `pool` (or no pool) on the same
    /// address share the messages; each pool gets its own copy.
    async fn listen(
        &self,
        subscriptions: &[NotifyAddress],
        pool: Option<&str>,
    ) -> Result<Box<dyn NotificationSource>>;

    /// How many sends a notifier's outbox keeps in flight on this transport unless its
    /// [`OutboxConfig::max_in_flight`](crate::OutboxConfig::max_in_flight) says otherwise.
    /// A broker that confirms each message is kept busy by a few hundred; a transport that
    /// batches sends into requests (Kafka) fills its requests only with many more.
    fn outbox_window(&self) -> usize {
        DEFAULT_OUTBOX_WINDOW
    }

    /// Release connections.
    async fn close(&self) {}
}

/// [`NotifyDriver::outbox_window`] unless a driver says otherwise.
pub const DEFAULT_OUTBOX_WINDOW: usize = 256;

/// A listener's stream of notifications.
#[async_trait]
pub trait NotificationSource: Send + 'static {
    /// The next notification, or `None` once closed. Must be cancel-safe. Undecodable
    /// messages are handled by the driver (logged, dropped) and never returned here.
    async fn next(&mut self) -> Option<IncomingNotification>;

    /// Stop consuming. Unacknowledged notifications go back to the broker.
    async fn close(&mut self);
}

/// A notification delivered to a listener, to be acknowledged once handled.
pub struct IncomingNotification {
    /// The notification (boxed: an incoming notification is moved through channels, tasks
    /// and the listener's stages, a pointer's worth instead of its 200-odd bytes).
    pub message: Box<NotificationMessage>,
    /// `_unique_id`, when the transport carries one.
    pub unique_id: Option<String>,
    /// Settles the delivery.
    pub acker: Box<dyn Acknowledger>,
}

/// Settles one delivered notification.
#[async_trait]
pub trait Acknowledger: Send + 'static {
    /// The notification was handled: the broker may forget it.
    async fn ack(self: Box<Self>) -> Result<()>;

    /// Deliver the notification again (to this or another listener of the pool).
    async fn requeue(self: Box<Self>) -> Result<()>;

    /// The notification joined a batch that waits for more before it is handled. A driver
    /// whose notifier waits for this very acknowledgement (through an AMQP 1.0 router it is
    /// end to end) may settle the delivery now, so that a notifier does not wait out the batch
    /// window for each notification, and carry out a later `requeue` by sending it again.
    /// The default does nothing.
    async fn batched(&mut self) {}
}

/// This program's name (`argv[0]` without its directory), as oslo puts it in connection names.
pub fn program_name() -> String {
    std::env::args()
        .next()
        .and_then(|arg0| {
            std::path::Path::new(&arg0)
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "rust".into())
}

/// The decoded message, or `None` once the failure is logged with [`log_malformed`]. On `None`
/// the source settles the delivery as dropped (never requeued: it would only come back as bad)
/// and takes the next one, so one bad message never stops a consumer. `origin` and `body` are
/// only evaluated on failure.
///
/// ```
/// use messaging_core::driver::decode_or_drop;
/// use messaging_core::wire::RequestMessage;
/// let body = b"not json";
/// let decoded = decode_or_drop(RequestMessage::decode(body), "mine", || "queue `q`", || body);
/// assert!(decoded.is_none());
/// ```
pub fn decode_or_drop<T, O, B>(
    decoded: Result<T>,
    driver: &str,
    origin: impl FnOnce() -> O,
    body: impl FnOnce() -> B,
) -> Option<T>
where
    O: std::fmt::Display,
    B: AsRef<[u8]>,
{
    match decoded {
        Ok(message) => Some(message),
        Err(error) => {
            log_malformed(driver, &origin().to_string(), &error, body().as_ref());
            None
        }
    }
}

/// Log a message the driver could not decode. Every driver reports bad input the same way.
pub fn log_malformed(driver: &str, origin: &str, error: &MessagingError, body: &[u8]) {
    const SHOWN: usize = 200;
    crate::telemetry::count_malformed(driver);
    let shown = String::from_utf8_lossy(&body[..body.len().min(SHOWN)]);
    tracing::warn!(
        driver,
        origin,
        %error,
        bytes = body.len(),
        body = %shown,
        "dropping a message that cannot be decoded"
    );
}

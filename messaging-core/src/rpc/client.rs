//! The RPC client: typed calls and casts to a target.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::time::{sleep_until, Instant};
use tracing::{Instrument, Span};

use crate::context::{default_serializer, Context, SharedSerializer};
use crate::driver::{Feature, Retry, RpcAddress, SendOptions};
use crate::error::{MessagingError, Result, RpcCall};
use crate::target::{Target, Version};
use crate::telemetry::{self, Busy, CallMeters};
use crate::transport::RpcTransport;
use crate::wire::{ReplyEvent, RpcRequest};

/// oslo's default `rpc_response_timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Invokes methods on RPC servers. Cheap to clone; [`RpcClient::prepare`] returns a copy whose
/// target and settings can be overridden for a few calls, like oslo's `prepare()`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), messaging_core::MessagingError> {
/// use std::time::Duration;
/// use messaging_core::{get_rpc_transport, Context, RpcClient, Target};
///
/// let transport = get_rpc_transport("memory://").await?;
/// let client = RpcClient::new(transport, Target::topic("compute")).timeout(Duration::from_secs(10));
/// // Nobody serves "compute" here, so a cast is dropped and a call would time out.
/// client.prepare().server("host1").cast(&Context::new(), "reboot", &serde_json::json!({"id": 1})).await?;
/// assert!(!client.clone().version_cap("1.2").can_send_version("1.3"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RpcClient {
    transport: RpcTransport,
    target: Target,
    timeout: Option<Duration>,
    send_timeout: Option<Duration>,
    fail_fast: Option<Duration>,
    call_monitor_timeout: Option<Duration>,
    version_cap: Option<String>,
    retry: Retry,
    serializer: SharedSerializer,
}

impl RpcClient {
    /// A client for `target` with oslo's defaults: 60 s timeout, no call monitor, retry forever.
    pub fn new(transport: RpcTransport, target: Target) -> Self {
        Self {
            transport,
            target,
            timeout: Some(DEFAULT_TIMEOUT),
            send_timeout: None,
            fail_fast: None,
            call_monitor_timeout: None,
            version_cap: None,
            retry: Retry::Forever,
            serializer: default_serializer(),
        }
    }

    /// A copy to override settings on, for one or a few calls.
    pub fn prepare(&self) -> Self {
        self.clone()
    }

    /// How long a call waits for its reply.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Wait for replies without a time limit (only the call monitor, if set, bounds it).
    pub fn no_timeout(mut self) -> Self {
        self.timeout = None;
        self
    }

    /// How long a cast may take to be handed over; a cast that cannot be fails with
    /// [`MessagingError::SendTimeout`] (or [`MessagingError::ConnectionFailure`]). Unset, the
    /// driver's default applies (AMQP 1.0: `default_send_timeout`; RabbitMQ: the retry policy
    /// alone, as oslo). Calls are bounded by their [`timeout`](Self::timeout) instead.
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = Some(timeout);
        self
    }

    /// Fail fast: end a call or cast with [`MessagingError::NoServer`] once the transport has
    /// seen for `window` that nobody consumes its address (a router grants no credit, RabbitMQ
    /// returns the message as unroutable), instead of waiting out the timeout.
    /// [`Duration::ZERO`] turns it off even when the URL's `fail_fast` option turns it on.
    /// Transports that cannot tell refuse it with [`MessagingError::Unsupported`] (see
    /// [`Feature::FailFast`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), messaging_core::MessagingError> {
    /// use std::time::Duration;
    /// use messaging_core::{get_rpc_transport, Context, MessagingError, RpcClient, Target};
    ///
    /// let transport = get_rpc_transport("memory:///fail-fast-doc").await?;
    /// let client = RpcClient::new(transport, Target::topic("nobody"))
    ///     .fail_fast(Duration::from_millis(100));
    /// let answer = client.call::<serde_json::Value>(&Context::new(), "ping", &()).await;
    /// assert!(matches!(answer, Err(MessagingError::NoServer { .. })));
    /// # Ok(()) }
    /// ```
    pub fn fail_fast(mut self, window: Duration) -> Self {
        self.fail_fast = Some(window);
        self
    }

    /// Ask servers for heartbeats every half of `timeout`, and fail the call when none comes
    /// for that long. Use at least 2 s with Python servers (they ignore shorter values).
    pub fn call_monitor_timeout(mut self, timeout: Duration) -> Self {
        self.call_monitor_timeout = Some(timeout);
        self
    }

    /// Refuse to send versions above `cap`.
    pub fn version_cap(mut self, cap: impl Into<String>) -> Self {
        self.version_cap = Some(cap.into());
        self
    }

    /// How often to retry sending when the broker is unreachable.
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Convert arguments, results and contexts with `serializer`.
    pub fn serializer(mut self, serializer: SharedSerializer) -> Self {
        self.serializer = serializer;
        self
    }

    /// Target another topic.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.target.topic = Some(topic.into());
        self
    }

    /// Target one server of the topic.
    pub fn server(mut self, server: impl Into<String>) -> Self {
        self.target.server = Some(server.into());
        self
    }

    /// Target another exchange.
    pub fn exchange(mut self, exchange: impl Into<String>) -> Self {
        self.target.exchange = Some(exchange.into());
        self
    }

    /// Call methods of this namespace.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.target.namespace = Some(namespace.into());
        self
    }

    /// Request this API version.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.target.version = Some(version.into());
        self
    }

    /// Cast to every server of the topic (calls refuse fanout).
    pub fn fanout(mut self, fanout: bool) -> Self {
        self.target.fanout = fanout;
        self
    }

    /// The current target.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// True if `version` may be sent under the version cap (always, without a cap).
    pub fn can_send_version(&self, version: &str) -> bool {
        self.check_version_cap(Some(version)).is_ok()
    }

    fn check_version_cap(&self, version: Option<&str>) -> Result<()> {
        let (Some(cap), Some(version)) = (&self.version_cap, version) else {
            return Ok(());
        };
        let cap_version: Version = cap.parse()?;
        if cap_version.can_serve(&version.parse()?) {
            Ok(())
        } else {
            Err(MessagingError::VersionCap {
                version: version.to_owned(),
                cap: cap.clone(),
            })
        }
    }

    fn build(
        &self,
        ctx: &Context,
        method: &str,
        args: &(impl Serialize + ?Sized),
    ) -> Result<(RpcAddress, RpcRequest)> {
        let topic = self.target.require_topic("send an RPC request")?;
        self.check_version_cap(self.target.version.as_deref())?;
        let mut args = match serde_json::to_value(args)? {
            Value::Object(args) => args,
            Value::Null => Map::new(),
            other => {
                return Err(MessagingError::InvalidTarget(format!(
                "RPC arguments must serialize to a JSON object of keyword arguments, got {other}"
            )))
            }
        };
        // Each value converted in place: the map is not rebuilt (nor its keys hashed again).
        for value in args.values_mut() {
            *value = self.serializer.serialize_entity(ctx, value.take())?;
        }
        let address = RpcAddress {
            exchange: self
                .target
                .exchange
                .clone()
                .unwrap_or_else(|| self.transport.control_exchange().to_owned()),
            topic: topic.to_owned(),
            server: self.target.server.clone(),
            fanout: self.target.fanout,
        };
        let request = RpcRequest {
            method: method.to_owned(),
            args,
            namespace: self.target.namespace.clone(),
            version: self.target.version.clone(),
            context: self.serializer.serialize_context(ctx)?.0,
            signature: None,
        };
        Ok((address, request))
    }

    /// Build a request, its span and its trace context, and sign it when the transport signs.
    fn build_signed(
        &self,
        ctx: &Context,
        method: &str,
        args: &(impl Serialize + ?Sized),
        call: bool,
    ) -> Result<(RpcAddress, RpcRequest, Span)> {
        let (address, mut request) = self.build(ctx, method, args)?;
        let system = self.transport.telemetry().system;
        let span = super::spans::rpc_send(call, system, &address, &request);
        if let Some(trace) = telemetry::outgoing(&span) {
            trace.inject(&mut request.context);
        }
        if let Some(signing) = self.transport.signing() {
            signing.sign_request(&address.topic, call, &mut request);
        }
        Ok((address, request, span))
    }

    /// A call's options carry its timeout, a cast's its send timeout.
    fn send_options(&self, call: bool) -> Result<SendOptions> {
        let opted_in = self.fail_fast.is_some_and(|window| !window.is_zero());
        if let Some(why) = opted_in
            .then(|| self.transport.capabilities().why_not(Feature::FailFast))
            .flatten()
        {
            return Err(MessagingError::unsupported(
                self.transport.driver_name(),
                format!("fail fast: {why}"),
            ));
        }
        Ok(SendOptions {
            timeout: if call {
                self.timeout
            } else {
                self.send_timeout
            },
            call_monitor_timeout: self.call_monitor_timeout,
            retry: self.retry,
            fail_fast: self.fail_fast,
        })
    }

    /// Send a request without waiting for a result: to one server of the topic, the named
    /// server, or every server with [`fanout`](Self::fanout).
    pub async fn cast(
        &self,
        ctx: &Context,
        method: &str,
        args: &(impl Serialize + ?Sized),
    ) -> Result<()> {
        let (address, request, span) = self.build_signed(ctx, method, args, false)?;
        let options = self.send_options(false)?;
        let sent = self
            .transport
            .driver()
            .cast(&address, &request, &options)
            .instrument(span.clone())
            .await;
        telemetry::finish(&span, &sent);
        if sent.is_ok() {
            let meters = &self.transport.telemetry().meters;
            meters.cast(&address.topic, method).increment(1);
        }
        sent
    }

    /// Invoke `method` with keyword arguments `args` and wait for its result.
    ///
    /// Fails with [`MessagingError::Timeout`] when no reply comes within the timeout (or no
    /// heartbeat within the call-monitor timeout), [`MessagingError::Remote`] when the method
    /// raised, [`MessagingError::NoSuchMethod`] / [`MessagingError::UnsupportedVersion`] when
    /// no endpoint matched.
    pub async fn call<R: DeserializeOwned>(
        &self,
        ctx: &Context,
        method: &str,
        args: &(impl Serialize + ?Sized),
    ) -> Result<R> {
        if self.target.fanout {
            return Err(MessagingError::InvalidTarget(
                "a call cannot be sent with fanout".into(),
            ));
        }
        let (address, request, span) = self.build_signed(ctx, method, args, true)?;
        let meters = self
            .transport
            .telemetry()
            .meters
            .call(&address.topic, method);
        let _in_flight = Busy::on(&meters.in_flight);
        let started = Instant::now();
        let reply = self
            .send_and_wait(ctx, method, &address, &request, &meters, started)
            .instrument(span.clone())
            .await;
        meters
            .duration
            .record(telemetry::seconds(started.elapsed()));
        telemetry::finish(&span, &reply);
        reply
    }

    /// Send a call's request (counted as sent once the transport took it), then wait for its
    /// result.
    async fn send_and_wait<R: DeserializeOwned>(
        &self,
        ctx: &Context,
        method: &str,
        address: &RpcAddress,
        request: &RpcRequest,
        meters: &CallMeters,
        started: Instant,
    ) -> Result<R> {
        // Errors name the call as it was sent, with the exchange it used (built only for one).
        let called = || {
            RpcCall::new(
                method,
                Target {
                    exchange: Some(address.exchange.clone()),
                    ..self.target.clone()
                },
            )
        };
        let deadline = self.timeout.map(|t| started + t);
        // One timer for the whole call: sending counts against the timeout too (the broker
        // may be down and retried), then it bounds the wait, moved earlier by the call monitor.
        let timer = sleep_until(deadline.unwrap_or_else(far_future));
        tokio::pin!(timer);
        let options = self.send_options(true)?;
        let send = self.transport.driver().call(address, request, &options);
        let sent = tokio::select! {
            biased;
            sent = send => sent,
            () = &mut timer, if deadline.is_some() => {
                Err(MessagingError::not_taken("(not sent)", started.elapsed()))
            }
        };
        let mut pending = sent.map_err(|e| e.for_call(&called()))?;
        meters.sent.increment(1);
        Span::current().record("messaging.message.id", pending.msg_id());
        let timed_out = |msg_id: &str| MessagingError::Timeout {
            msg_id: msg_id.to_owned(),
            after: started.elapsed(),
            call: Some(Box::new(called())),
            delivered: true,
        };
        let mut monitor_deadline = self.call_monitor_timeout.map(|t| Instant::now() + t);
        let mut partial = Value::Null;
        loop {
            let wake = match (deadline, monitor_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if let Some(wake) = wake.filter(|&wake| wake != timer.deadline()) {
                timer.as_mut().reset(wake);
            }
            let event = tokio::select! {
                event = pending.next() => event,
                () = &mut timer, if wake.is_some() => {
                    return Err(timed_out(pending.msg_id()));
                }
            };
            let reply = event.ok_or(MessagingError::Closed("transport"))?;
            if let Some(guard) = self.transport.guard() {
                let check = guard
                    .signing()
                    .verify_reply(request.signature.as_deref(), &reply);
                if !guard.admit(check, "rpc reply", method) {
                    // A forged reply: keep waiting for the genuine one (or time out).
                    continue;
                }
            }
            if let Some(monitor) = self.call_monitor_timeout {
                monitor_deadline = Some(Instant::now() + monitor);
            }
            match reply.event {
                ReplyEvent::Heartbeat => continue,
                ReplyEvent::Result {
                    value,
                    ending: false,
                } => {
                    if !value.is_null() {
                        partial = value;
                    }
                }
                ReplyEvent::Result {
                    value,
                    ending: true,
                } => {
                    let value = if value.is_null() { partial } else { value };
                    let value = self.serializer.deserialize_entity(ctx, value)?;
                    return Ok(serde_json::from_value(value)?);
                }
                ReplyEvent::Failure(failure) => {
                    let error = failure.into_error(method, self.target.version.as_deref());
                    return Err(error.for_call(&called()));
                }
            }
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call is bounded by its timeout; a cast by its own send timeout, unset by default (the
    /// driver's then), never by the call timeout.
    #[tokio::test]
    async fn casts_get_the_send_timeout() {
        let transport = crate::get_rpc_transport("memory://").await.unwrap();
        let client = RpcClient::new(transport, Target::topic("t"));
        let timeouts = |client: &RpcClient| {
            (
                client.send_options(true).unwrap().timeout,
                client.send_options(false).unwrap().timeout,
            )
        };
        assert_eq!(timeouts(&client), (Some(DEFAULT_TIMEOUT), None));
        let second = Duration::from_secs(1);
        let set = client.prepare().send_timeout(second).timeout(second * 5);
        assert_eq!(timeouts(&set), (Some(second * 5), Some(second)));
        assert_eq!(set.send_options(false).unwrap().fail_fast, None);
        let fast = set.fail_fast(second);
        assert_eq!(fast.send_options(true).unwrap().fail_fast, Some(second));
    }
}

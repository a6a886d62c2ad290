//! Confirmed publishing over a send connection that reconnects on demand.
//!
//! Every publish waits for its own publisher confirm, and many publishes are in flight on one
//! channel at once (each caller awaits its own confirm; nothing is held across it).
//!
//! Mandatory publishes (replies) use a second channel whose confirms are all awaited by one
//! collector task: lapin hands a `basic.return` to whichever pending confirm it completes
//! first, which with pipelined publishes and the broker's multiple-acks is not necessarily the
//! returned message's own. The collector gathers every confirm completed together and gives
//! each returned message back to the publish with the same body (bodies are unique: each
//! carries its own `_unique_id`).

use std::collections::HashSet;
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use messaging_core::driver::SendOptions;
use messaging_core::telemetry;
use messaging_core::wire::{CONTENT_ENCODING, CONTENT_TYPE};
use messaging_core::{MessagingError, Result};
use tokio::sync::{mpsc, oneshot, OnceCell};
use tokio::time::Instant;

use crate::compression;
use crate::config::Compression;
use crate::connection::{lapin_failure, with_retry, within, Connector, Failure};
use crate::topology::{self, Declaration};

/// A message to publish.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outgoing<'a> {
    pub(crate) exchange: &'a str,
    pub(crate) routing_key: &'a str,
    pub(crate) body: &'a [u8],
    /// The AMQP `expiration` (RPC calls only).
    pub(crate) expiration: Option<Duration>,
    /// Declared once per channel before the first publish that needs them.
    pub(crate) declarations: &'a [Declaration],
    /// How `body` is compressed (set by the [`Publisher`], from `kombu_compression`).
    pub(crate) compression: Option<Compression>,
}

impl Outgoing<'_> {
    fn properties(&self) -> BasicProperties {
        let properties = properties(self.expiration);
        match self.compression {
            Some(codec) => {
                let mut headers = FieldTable::default();
                headers.insert(
                    compression::HEADER.into(),
                    AMQPValue::LongString(codec.content_type().into()),
                );
                properties.with_headers(headers)
            }
            None => properties,
        }
    }
}

/// How often [`Publisher::publish_until_routed`] publishes a returned message again (kombu's
/// 0.25 s for replies).
const ROUTE_RETRY_INTERVAL: Duration = Duration::from_millis(250);

/// What became of a mandatory publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Routed {
    /// A queue took it.
    Delivered,
    /// No queue was bound: the broker returned it.
    Returned,
}

/// oslo's properties, identical for every message kind; `expiration` only on calls.
pub(crate) fn properties(expiration: Option<Duration>) -> BasicProperties {
    let properties = BasicProperties::default()
        .with_content_type(CONTENT_TYPE.into())
        .with_content_encoding(CONTENT_ENCODING.into())
        .with_delivery_mode(2)
        .with_priority(0)
        .with_headers(FieldTable::default());
    match expiration {
        Some(ttl) => properties.with_expiration(ttl.as_millis().to_string().into()),
        None => properties,
    }
}

/// Publishes with confirms on one send connection, reconnected when it breaks.
pub(crate) struct Publisher {
    connector: Arc<Connector>,
    role: &'static str,
    current: tokio::sync::Mutex<Option<Arc<Session>>>,
    closed: AtomicBool,
    /// A connection was opened before: the next one is a reconnection.
    connected: AtomicBool,
}

/// One live connection and its confirm-mode channels.
struct Session {
    connection: Arc<Connection>,
    channel: Channel,
    /// What was declared on `channel`.
    declared: Mutex<HashSet<Declaration>>,
    mandatory: OnceCell<Mandatory>,
    /// A publish on these channels was nacked. RabbitMQ 3.10 can go on nacking every publish
    /// of a channel that began publishing to a quorum queue while the queue elected a leader,
    /// where a new channel's publishes are taken: the next publish opens new channels.
    nacked: AtomicBool,
}

/// The channel of mandatory publishes and its confirm collector.
struct Mandatory {
    channel: Channel,
    submit: mpsc::UnboundedSender<Submission>,
}

impl Session {
    fn alive(&self) -> bool {
        !self.nacked.load(Ordering::Acquire)
            && self.connection.status().connected()
            && self.channel.status().connected()
            && self
                .mandatory
                .get()
                .is_none_or(|m| m.channel.status().connected())
    }

    async fn declare(&self, declarations: &[Declaration]) -> std::result::Result<(), Failure> {
        for declaration in declarations {
            if self
                .declared
                .lock()
                .expect("declared poisoned")
                .contains(declaration)
            {
                continue;
            }
            topology::declare(&self.channel, declaration).await?;
            self.declared
                .lock()
                .expect("declared poisoned")
                .insert(declaration.clone());
        }
        Ok(())
    }

    async fn mandatory(&self) -> std::result::Result<&Mandatory, Failure> {
        self.mandatory
            .get_or_try_init(|| async {
                let channel = confirm_channel(&self.connection).await?;
                let (submit, submissions) = mpsc::unbounded_channel();
                tokio::spawn(collect(submissions, CLOSE_WITHIN));
                Ok(Mandatory { channel, submit })
            })
            .await
    }
}

async fn confirm_channel(connection: &Connection) -> std::result::Result<Channel, Failure> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| lapin_failure("opening a channel", &e))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| lapin_failure("enabling publisher confirms", &e))?;
    Ok(channel)
}

impl Publisher {
    /// A publisher that connects on first use; `role` names its connection.
    pub(crate) fn new(connector: Arc<Connector>, role: &'static str) -> Self {
        Self {
            connector,
            role,
            current: tokio::sync::Mutex::new(None),
            closed: AtomicBool::new(false),
            connected: AtomicBool::new(false),
        }
    }

    /// The live session, after (re)connecting if needed: one pass over the hosts.
    async fn session(&self) -> std::result::Result<Arc<Session>, Failure> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Failure::Fatal(MessagingError::Closed("transport")));
        }
        let current = self.current.lock().await;
        if let Some(session) = current.as_ref().filter(|session| session.alive()) {
            return Ok(session.clone());
        }
        // Boxed: the connect's future is large (12 KiB with TLS), and every publish future
        // that awaits this one would otherwise carry it and copy it on each call.
        Box::pin(self.renew(current)).await
    }

    /// A new session in place of `current` (gone or never opened): a new channel when only
    /// the channel is gone, else a new connection.
    async fn renew(
        &self,
        mut current: tokio::sync::MutexGuard<'_, Option<Arc<Session>>>,
    ) -> std::result::Result<Arc<Session>, Failure> {
        if let Some(session) = current.as_ref() {
            if session.connection.status().connected() {
                // Only the channel is gone (the broker closes a channel that made a bad
                // declaration) or was nacked: open another one on the same connection.
                let connection = session.connection.clone();
                if session.nacked.load(Ordering::Acquire) {
                    session.retire();
                }
                *current = None;
                if let Ok(channel) = confirm_channel(&connection).await {
                    let session = Arc::new(Session::new(connection, channel));
                    *current = Some(session.clone());
                    return Ok(session);
                }
            } else {
                tracing::info!(
                    role = self.role,
                    "the connection to RabbitMQ was lost; reconnecting"
                );
                *current = None;
            }
        }
        let open = async {
            let connection = Arc::new(self.connector.connect(self.role).await?);
            let channel = confirm_channel(&connection).await?;
            Ok(Arc::new(Session::new(connection, channel)))
        };
        let session = match self.connected.load(Ordering::Acquire) {
            true => telemetry::reconnect(crate::NAME, crate::SYSTEM, self.role, open).await?,
            false => open.await?,
        };
        self.connected.store(true, Ordering::Release);
        *current = Some(session.clone());
        Ok(session)
    }

    /// Forget `session` if it is still the live one, and close its connection in the
    /// background (closing a connection stuck on a node may hang too).
    async fn discard(&self, session: &Arc<Session>) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, session)) {
            *current = None;
        }
        let connection = session.connection.clone();
        tokio::spawn(async move {
            let close = connection.close(200, "OK".into());
            let _ = tokio::time::timeout(CLOSE_WITHIN, close).await;
        });
    }

    /// One attempt of `op` on the live session, until `until`. An attempt cut there leaves
    /// its connection behind (stuck on a node that changes state), so that the next one
    /// reconnects, to the next host; the publishes still waiting on it are retried too.
    async fn attempt<T, Fut>(
        &self,
        what: &(dyn Display + Sync),
        until: Instant,
        op: impl FnOnce(Arc<Session>) -> Fut,
    ) -> std::result::Result<T, Failure>
    where
        Fut: Future<Output = std::result::Result<T, Failure>>,
    {
        let mut used = None;
        let attempt = async {
            let session = self.session().await?;
            used = Some(session.clone());
            op(session).await
        };
        let outcome = within(until, what, attempt).await;
        if let (Err(Failure::Retry(_)), Some(session)) = (&outcome, used) {
            if Instant::now() >= until {
                tracing::info!(role = self.role, what = %what, "giving up a stalled connection");
                self.discard(&session).await;
            }
        }
        outcome
    }

    /// Publish and wait for the broker's confirm, retrying connection failures and nacks as
    /// `options` allow. A nack is a [`MessagingError::DeliveryFailure`].
    pub(crate) async fn publish(
        &self,
        what: &(dyn Display + Sync),
        message: Outgoing<'_>,
        options: &SendOptions,
    ) -> Result<()> {
        let mut buffer = Vec::new();
        let message = self.compressed(message, &mut buffer);
        telemetry::record_body_size(message.body.len());
        with_retry(&self.connector, what, options, |until| {
            self.attempt(what, until, |session| publish_once(session, message))
        })
        .await
    }

    /// Publish with `mandatory=true` and report whether a queue took the message.
    pub(crate) async fn publish_mandatory(
        &self,
        what: &(dyn Display + Sync),
        message: Outgoing<'_>,
        options: &SendOptions,
    ) -> Result<Routed> {
        with_retry(&self.connector, what, options, |until| {
            self.attempt(what, until, |session| {
                publish_mandatory_once(session, message)
            })
        })
        .await
    }

    /// Publish with `mandatory=true`, and again every 0.25 s while the broker returns the
    /// message for want of a queue (its consumer is not there yet), for up to `patience`.
    /// Each attempt follows `options`, within what is left of `patience`; with `expire`, the
    /// message's `expiration` is what is left too (the whole `patience` on the first attempt,
    /// as oslo sets a call's timeout). [`Routed::Returned`] when no queue took it in time, or,
    /// with `options.fail_fast`, once the broker has returned it for that long.
    pub(crate) async fn publish_until_routed(
        &self,
        what: &(dyn Display + Sync),
        message: Outgoing<'_>,
        options: &SendOptions,
        patience: Option<Duration>,
        expire: bool,
    ) -> Result<Routed> {
        let mut buffer = Vec::new();
        let mut message = self.compressed(message, &mut buffer);
        telemetry::record_body_size(message.body.len());
        let deadline = patience.map(|patience| Instant::now() + patience);
        let mut remaining = patience;
        let fail_fast = options.fail_fast.filter(|window| !window.is_zero());
        let mut returned_since = None;
        loop {
            if expire {
                message.expiration = remaining;
            }
            let attempt = SendOptions {
                timeout: remaining.map(|r| r.max(ROUTE_RETRY_INTERVAL)),
                ..options.clone()
            };
            let routed = self.publish_mandatory(what, message, &attempt).await?;
            if routed == Routed::Returned
                && fail_fast.is_some_and(|window| {
                    returned_since.get_or_insert_with(Instant::now).elapsed() >= window
                })
            {
                return Ok(Routed::Returned);
            }
            match routed {
                Routed::Returned
                    if deadline.is_none_or(|d| Instant::now() + ROUTE_RETRY_INTERVAL <= d) =>
                {
                    tracing::debug!(what = %what, "returned (no queue bound yet); publishing again");
                    tokio::time::sleep(ROUTE_RETRY_INTERVAL).await;
                    remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                }
                routed => return Ok(routed),
            }
        }
    }

    /// `message` with its body compressed into `buffer`, as `kombu_compression` says.
    fn compressed<'a>(&self, message: Outgoing<'a>, buffer: &'a mut Vec<u8>) -> Outgoing<'a> {
        let Some(codec) = self.connector.config().kombu_compression else {
            return message;
        };
        *buffer = codec.compress(message.body);
        Outgoing {
            body: buffer,
            compression: Some(codec),
            ..message
        }
    }

    /// Close the connection. Later publishes fail with [`MessagingError::Closed`].
    pub(crate) async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Some(session) = self.current.lock().await.take() {
            if session.connection.status().connected() {
                let close = session.connection.close(200, "OK".into());
                if tokio::time::timeout(CLOSE_WITHIN, close).await.is_err() {
                    tracing::warn!(
                        role = self.role,
                        "RabbitMQ did not answer the close within {CLOSE_WITHIN:?}; dropped"
                    );
                }
            }
        }
    }
}

impl Session {
    fn new(connection: Arc<Connection>, channel: Channel) -> Self {
        Self {
            connection,
            channel,
            declared: Mutex::new(HashSet::new()),
            mandatory: OnceCell::new(),
            nacked: AtomicBool::new(false),
        }
    }

    /// Close the channels of a replaced session once the publishes still in flight on them
    /// have had their confirms.
    fn retire(&self) {
        let mut channels = vec![self.channel.clone()];
        channels.extend(self.mandatory.get().map(|m| m.channel.clone()));
        tokio::spawn(async move {
            tokio::time::sleep(RETIRE_AFTER).await;
            for channel in channels {
                let _ = channel.close(200, "OK".into()).await;
            }
        });
    }
}

/// How long closing waits for the broker's answer: a connection stuck on a node that went
/// away may never get one, and `close()` must not hang the caller's shutdown.
pub(crate) const CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// How long the channels of a replaced session stay open for the confirms still due on them.
const RETIRE_AFTER: Duration = Duration::from_secs(30);

/// A nack: RabbitMQ refuses a message for a reason of the moment (a quorum queue without a
/// leader or quorum, a classic queue whose node died, a queue full with `reject-publish`):
/// published again within the caller's retry policy and timeout.
fn nacked(exchange: &str, routing_key: &str) -> Failure {
    Failure::Retry(MessagingError::DeliveryFailure(format!(
        "the broker refused (nacked) a message to exchange `{exchange}` with routing key \
     `{routing_key}` (a queue without a leader or whose node is down?)"
    )))
}

/// Publish on `session` and wait for the confirm.
async fn publish_once(
    session: Arc<Session>,
    message: Outgoing<'_>,
) -> std::result::Result<(), Failure> {
    session.declare(message.declarations).await?;
    let confirm = session
        .channel
        .basic_publish(
            message.exchange.into(),
            message.routing_key.into(),
            BasicPublishOptions::default(),
            message.body,
            message.properties(),
        )
        .await
        .map_err(|e| lapin_failure("publishing", &e))?;
    match confirm
        .await
        .map_err(|e| lapin_failure("waiting for the publisher confirm", &e))?
    {
        Confirmation::Nack(_) => {
            session.nacked.store(true, Ordering::Release);
            Err(nacked(message.exchange, message.routing_key))
        }
        Confirmation::Ack(_) | Confirmation::NotRequested => Ok(()),
    }
}

/// Publish on `session` with `mandatory=true` and wait for the confirm or the return.
async fn publish_mandatory_once(
    session: Arc<Session>,
    message: Outgoing<'_>,
) -> std::result::Result<Routed, Failure> {
    // Declared on the session's main channel: exchanges are per broker, not per channel.
    session.declare(message.declarations).await?;
    let mandatory = session.mandatory().await?;
    let channel = mandatory.channel.clone();
    let body: Arc<[u8]> = message.body.into();
    let (exchange, routing_key) = (message.exchange.to_owned(), message.routing_key.to_owned());
    let properties = message.properties();
    let payload = body.clone();
    let publish = async move {
        channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &payload,
                properties,
            )
            .await?
            .await
    };
    let (done, outcome) = oneshot::channel();
    let lost = || {
        Failure::Retry(MessagingError::ConnectionFailure(
            "the send channel closed".into(),
        ))
    };
    mandatory
        .submit
        .send(Submission {
            body,
            publish: Box::pin(publish),
            done,
        })
        .map_err(|_| lost())?;
    match outcome.await.map_err(|_| lost())? {
        Ok(Outcome::Delivered) => Ok(Routed::Delivered),
        Ok(Outcome::Returned) => Ok(Routed::Returned),
        Ok(Outcome::Nacked) => {
            session.nacked.store(true, Ordering::Release);
            Err(nacked(message.exchange, message.routing_key))
        }
        Err(error) => Err(lapin_failure("publishing", &error)),
    }
}

type PublishFuture = Pin<Box<dyn Future<Output = lapin::Result<Confirmation>> + Send>>;

/// A mandatory publish handed to the collector before its first poll, so that the collector
/// holds every confirm of the channel.
struct Submission {
    body: Arc<[u8]>,
    publish: PublishFuture,
    done: oneshot::Sender<lapin::Result<Outcome>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    Returned,
    Nacked,
}

/// A completed publish: its body, whether it was acked, the returned message it carried.
type Completed = (
    Arc<[u8]>,
    lapin::Result<bool>,
    Option<Vec<u8>>,
    oneshot::Sender<lapin::Result<Outcome>>,
);

/// How long a returned message whose publish was not found is kept, waiting for it.
const UNCLAIMED_GRACE: Duration = Duration::from_secs(5);

/// Drive the mandatory publishes of one channel and match returned messages to them.
///
/// Once the session is gone, the publishes still unconfirmed get `grace` ([`CLOSE_WITHIN`]),
/// then are dropped (their callers have given up on them by then): lapin can leave the confirm of a
/// publish queued as its connection failed pending forever (see
/// [`SETTLE_WITHIN`](crate::subscriber::SETTLE_WITHIN)), which would keep this task, and the
/// connection it holds, alive.
async fn collect(mut submissions: mpsc::UnboundedReceiver<Submission>, grace: Duration) {
    let mut in_flight = FuturesUnordered::new();
    let mut unclaimed: Vec<(Vec<u8>, Instant)> = Vec::new();
    loop {
        tokio::select! {
            submission = submissions.recv() => match submission {
                Some(submission) => in_flight.push(confirmation(submission)),
                None => break,
            },
            Some(first) = in_flight.next(), if !in_flight.is_empty() => {
                take_completed(first, &mut in_flight, &mut unclaimed).await;
            }
        }
    }
    let drain = async {
        while let Some(first) = in_flight.next().await {
            take_completed(first, &mut in_flight, &mut unclaimed).await;
        }
    };
    if tokio::time::timeout(grace, drain).await.is_err() {
        tracing::debug!("dropping the confirms of a closed session");
    }
}

/// A submitted publish, completed once the broker confirmed it.
async fn confirmation(submission: Submission) -> Completed {
    let Submission {
        body,
        publish,
        done,
    } = submission;
    let (acked, returned) = match publish.await {
        Ok(Confirmation::Ack(returned)) => (Ok(true), returned),
        Ok(Confirmation::Nack(returned)) => (Ok(false), returned),
        Ok(Confirmation::NotRequested) => (Ok(true), None),
        Err(error) => (Err(error), None),
    };
    (body, acked, returned.map(|r| r.delivery.data), done)
}

/// Settle `first` with every other publish already completed: confirms completed by one
/// (multiple) ack complete together.
async fn take_completed<F: Future<Output = Completed>>(
    first: Completed,
    in_flight: &mut FuturesUnordered<F>,
    unclaimed: &mut Vec<(Vec<u8>, Instant)>,
) {
    tokio::task::yield_now().await;
    let mut batch: Vec<Completed> = vec![first];
    while let Some(Some(more)) = in_flight.next().now_or_never() {
        batch.push(more);
    }
    settle(batch, unclaimed);
}

fn settle(batch: Vec<Completed>, unclaimed: &mut Vec<(Vec<u8>, Instant)>) {
    let now = Instant::now();
    let mut batch: Vec<_> = batch
        .into_iter()
        .map(|(body, acked, returned, done)| {
            if let Some(returned) = returned {
                if *returned != *body {
                    tracing::trace!("a returned message came with another publish's confirm");
                }
                unclaimed.push((returned, now));
            }
            (body, acked, done)
        })
        .collect();
    for (body, acked, done) in batch.drain(..) {
        let outcome = match unclaimed
            .iter()
            .position(|(returned, _)| **returned == *body)
        {
            Some(index) => {
                unclaimed.swap_remove(index);
                Ok(Outcome::Returned)
            }
            None => acked.map(|acked| {
                if acked {
                    Outcome::Delivered
                } else {
                    Outcome::Nacked
                }
            }),
        };
        let _ = done.send(outcome);
    }
    unclaimed.retain(|(body, at)| {
        let keep = now.duration_since(*at) < UNCLAIMED_GRACE;
        if !keep {
            tracing::warn!(
                body = %String::from_utf8_lossy(&body[..body.len().min(200)]),
                "the broker returned a message whose publish was already reported delivered"
            );
        }
        keep
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_are_oslos() {
        let p = properties(Some(Duration::from_secs(10)));
        assert_eq!(
            p.content_type().as_ref().map(|s| s.as_str()),
            Some("application/json")
        );
        assert_eq!(
            p.content_encoding().as_ref().map(|s| s.as_str()),
            Some("utf-8")
        );
        assert_eq!(*p.delivery_mode(), Some(2));
        assert_eq!(*p.priority(), Some(0));
        assert_eq!(p.headers().as_ref().map(|h| h.inner().len()), Some(0));
        assert_eq!(p.expiration().as_ref().map(|s| s.as_str()), Some("10000"));
        assert!(properties(None).expiration().is_none());
    }

    #[test]
    fn returned_messages_go_to_the_publish_with_the_same_body() {
        let (a_tx, mut a_rx) = oneshot::channel();
        let (b_tx, mut b_rx) = oneshot::channel();
        let a: Arc<[u8]> = b"a".as_slice().into();
        let b: Arc<[u8]> = b"b".as_slice().into();
        let mut unclaimed = Vec::new();
        // b's return was handed to a's confirm.
        settle(
            vec![
                (a, Ok(true), Some(b"b".to_vec()), a_tx),
                (b, Ok(true), None, b_tx),
            ],
            &mut unclaimed,
        );
        assert_eq!(a_rx.try_recv().unwrap().unwrap(), Outcome::Delivered);
        assert_eq!(b_rx.try_recv().unwrap().unwrap(), Outcome::Returned);
        assert!(unclaimed.is_empty());
    }

    #[tokio::test]
    async fn the_collector_of_a_closed_session_gives_up_a_confirm_that_never_comes() {
        let (submit, submissions) = mpsc::unbounded_channel();
        let collector = tokio::spawn(collect(submissions, Duration::from_millis(50)));
        let (done, mut outcome) = oneshot::channel();
        submit
            .send(Submission {
                body: b"a".as_slice().into(),
                publish: Box::pin(std::future::pending()),
                done,
            })
            .unwrap_or_else(|_| panic!("the collector is running"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!collector.is_finished(), "the session is still open");
        drop(submit);
        tokio::time::timeout(Duration::from_secs(5), collector)
            .await
            .expect("the collector ended after its grace")
            .unwrap();
        assert!(outcome.try_recv().is_err(), "the publish was given up");
    }
}

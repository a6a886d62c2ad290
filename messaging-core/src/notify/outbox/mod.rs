//! The notifier's outbox: store-and-forward for notifications the broker cannot take now.
//!
//! With an outbox, [`Notifier::notify`](crate::Notifier::notify) encodes the notification
//! (its message id and timestamp fixed once), enqueues it and returns; a background task sends
//! the queue through the driver, waits and tries again while the broker is unreachable, and
//! removes an entry only after the driver confirmed it. With a spool directory the queue is
//! also written ahead to disk ([`spool`]) and survives a crash or restart.
//!
//! The sender keeps many sends in flight; delivery and ordering rules are documented on
//! [`Notifier::with_outbox`](crate::Notifier::with_outbox).

mod spool;

use std::borrow::Cow;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;
use tracing::Instrument;

use crate::driver::retry::Backoff;
use crate::driver::{NotifyAddress, NotifyDriver, Retry, SendOptions};
use crate::error::{MessagingError, Result};
use crate::priority::Priority;
use crate::telemetry::{self, OutboxMeters, Telemetry, TraceContext};
use crate::wire::{NotificationFormat, NotificationMessage};

use spool::{Spool, Unacked};

/// What a full outbox does with another notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Refuse it: the notify call fails with [`MessagingError::OutboxFull`] (the default).
    #[default]
    Error,
    /// Take it, dropping the oldest notification not being sent right now (logged and counted
    /// in [`OutboxStats::dropped`]).
    DropOldest,
    /// Wait for room: the notify call returns once the notification fits, so a sender faster
    /// than the broker is slowed to the broker's pace (backpressure) and the outbox's memory
    /// stays bounded. A notification larger than the whole capacity (more deliveries than
    /// places) is refused with [`MessagingError::OutboxFull`]; once the transport is closed,
    /// waiting calls fail with [`MessagingError::Closed`]. Cancel the call (for example with
    /// `tokio::time::timeout`) to stop waiting: nothing is queued then.
    Wait,
}

/// Settings of a notifier's outbox (see [`Notifier::with_outbox`](crate::Notifier::with_outbox)).
///
/// The capacity counts deliveries: a notification sent to two topics takes two places.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    capacity: usize,
    spool_dir: Option<PathBuf>,
    overflow: Overflow,
    /// `None`: the transport's [`NotifyDriver::outbox_window`].
    max_in_flight: Option<usize>,
    send_timeout: Duration,
    retry_interval: Duration,
    retry_backoff: Duration,
    retry_max: Duration,
    segment_bytes: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            capacity: OutboxConfig::DEFAULT_CAPACITY,
            spool_dir: None,
            overflow: Overflow::Error,
            max_in_flight: None,
            send_timeout: Duration::from_secs(30),
            retry_interval: Duration::from_millis(500),
            retry_backoff: Duration::from_secs(1),
            retry_max: Duration::from_secs(15),
            segment_bytes: 8 << 20,
        }
    }
}

impl OutboxConfig {
    /// The capacity when none is given.
    pub const DEFAULT_CAPACITY: usize = 10_000;

    /// An in-memory outbox of `capacity` notifications: what it holds is lost when the
    /// process exits. Add [`spool_dir`](Self::spool_dir) to keep it across restarts.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            ..Self::default()
        }
    }

    /// Write the outbox ahead to this directory (created if needed): a notify call returns
    /// once its notification is on disk (fsynced), and notifications not yet confirmed by the
    /// broker are sent after a restart. One process at a time may use a directory.
    pub fn spool_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.spool_dir = Some(dir.into());
        self
    }

    /// What to do when the outbox is full.
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// Keep up to this many sends in flight (see
    /// [`Notifier::with_outbox`](crate::Notifier::with_outbox)); by default, what the transport
    /// prefers ([`NotifyDriver::outbox_window`]: 256 for RabbitMQ and AMQP 1.0, 4,096 for
    /// Kafka, whose sends share produce requests). With more than one, a send that fails while
    /// later ones succeed is sent again after them; `1` keeps the order strict even across
    /// broker failures, at one round trip per notification.
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = Some(max.max(1));
        self
    }

    /// Give up one attempt to send after this long and try again later (default 30 s). A send
    /// that timed out may still have arrived: it is sent again (at-least-once).
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = timeout;
        self
    }

    /// While the broker is unreachable, wait `interval + step × (2ⁿ − 1)` (at most `max`,
    /// with jitter) before the n-th next attempt. Defaults: 0.5 s, 1 s, 15 s.
    pub fn retry_backoff(mut self, interval: Duration, step: Duration, max: Duration) -> Self {
        self.retry_interval = interval;
        self.retry_backoff = step;
        self.retry_max = max;
        self
    }

    /// Start a new spool segment file after this many bytes (default 8 MiB). Segments are
    /// deleted once everything in them was sent.
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes.max(1);
        self
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The spool directory, if the outbox is durable.
    pub fn spool(&self) -> Option<&Path> {
        self.spool_dir.as_deref()
    }
}

/// Counters of an outbox since it was opened (see
/// [`Notifier::outbox_stats`](crate::Notifier::outbox_stats)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxStats {
    /// Notifications waiting or being sent (including those recovered from the spool).
    pub pending: usize,
    /// Notifications the broker confirmed.
    pub sent: u64,
    /// Notifications dropped to make room ([`Overflow::DropOldest`]).
    pub dropped: u64,
    /// Notifications dropped because the transport refused them for good (too large, not
    /// encodable, an unsupported destination, an unreadable spool record); each is logged.
    pub failed: u64,
}

/// One delivery: a notification and where it goes.
#[derive(Debug)]
pub(crate) struct Item {
    /// Shared by the deliveries to the same address.
    pub(crate) to: Arc<NotifyAddress>,
    /// Shared by the deliveries of one notify call.
    pub(crate) message: Arc<NotificationMessage>,
    pub(crate) format: NotificationFormat,
}

/// An [`Item`] as a spool record holds it (JSON): borrowed from the item when written,
/// owned when read back.
#[derive(Serialize, Deserialize)]
struct StoredItem<'a> {
    exchange: Cow<'a, str>,
    topic: Cow<'a, str>,
    priority: Priority,
    /// `messagingv2` or `messaging`.
    format: Cow<'a, str>,
    message_id: Cow<'a, str>,
    publisher_id: Cow<'a, str>,
    event_type: Cow<'a, str>,
    payload: Cow<'a, Value>,
    timestamp: Cow<'a, str>,
    context: Cow<'a, Map<String, Value>>,
    /// Signed when queued (with the transport's signing key), so kept as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<Cow<'a, str>>,
}

impl Item {
    fn encode(&self) -> Result<Vec<u8>> {
        let m = &self.message;
        let stored = StoredItem {
            exchange: Cow::Borrowed(&self.to.exchange),
            topic: Cow::Borrowed(&self.to.topic),
            priority: self.to.priority,
            format: Cow::Borrowed(match self.format {
                NotificationFormat::V2 => "messagingv2",
                NotificationFormat::V1 => "messaging",
            }),
            message_id: Cow::Borrowed(&m.message_id),
            publisher_id: Cow::Borrowed(&m.publisher_id),
            event_type: Cow::Borrowed(&m.event_type),
            payload: Cow::Borrowed(&m.payload),
            timestamp: Cow::Borrowed(&m.timestamp),
            context: Cow::Borrowed(&m.context),
            signature: m.signature.as_deref().map(Cow::Borrowed),
        };
        Ok(serde_json::to_vec(&stored)?)
    }

    fn decode(body: &[u8]) -> Result<Self> {
        let s: StoredItem = serde_json::from_slice(body)?;
        let format = match &*s.format {
            "messagingv2" => NotificationFormat::V2,
            "messaging" => NotificationFormat::V1,
            other => {
                return Err(MessagingError::MalformedMessage(format!(
                    "unknown notification format `{other}` in the outbox spool"
                )))
            }
        };
        Ok(Self {
            to: Arc::new(NotifyAddress {
                exchange: s.exchange.into_owned(),
                topic: s.topic.into_owned(),
                priority: s.priority,
            }),
            message: Arc::new(NotificationMessage {
                message_id: s.message_id.into_owned(),
                publisher_id: s.publisher_id.into_owned(),
                event_type: s.event_type.into_owned(),
                priority: s.priority,
                payload: s.payload.into_owned(),
                timestamp: s.timestamp.into_owned(),
                context: s.context.into_owned(),
                signature: s.signature.map(Cow::into_owned),
            }),
            format,
        })
    }
}

#[derive(Debug, Clone)]
struct Entry {
    seq: u64,
    item: Arc<Item>,
}

#[derive(Debug, Default)]
struct State {
    /// Waiting to be sent, oldest first.
    queue: VecDeque<Entry>,
    in_flight: usize,
    /// Accepted, being written to the spool.
    reserved: usize,
    /// Sequence numbers of the in-memory outbox (the spool numbers its own).
    next_seq: u64,
    sent: u64,
    dropped: u64,
    failed: u64,
}

impl State {
    fn pending(&self) -> usize {
        self.queue.len() + self.in_flight + self.reserved
    }
}

/// What the notify calls, the sender task and the spool writer share.
struct Shared {
    state: Mutex<State>,
    capacity: usize,
    overflow: Overflow,
    /// Something was queued.
    wake: Notify,
    /// The pending count, for `flush`.
    pending: watch::Sender<usize>,
    /// Set when the notifier (every clone) is gone.
    closed: watch::Sender<bool>,
    /// Set when the sender task stopped for good (the transport was closed).
    stopped: AtomicBool,
    meters: OutboxMeters,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Update the pending count's watch, if anyone waits on it (see [`Self::watch_pending`]):
    /// an update wakes the watch's waiters, and takes its locks even when there are none.
    fn publish(&self, state: &State) {
        if self.pending.receiver_count() > 0 {
            self.pending.send_replace(state.pending());
        }
        self.meters.pending.set(state.pending() as f64);
    }

    /// Watch the pending count. Publishers update the watch only while it has receivers, so
    /// the count is brought up to date after subscribing; both happen under the state's lock,
    /// so no update falls in between.
    fn watch_pending(&self) -> watch::Receiver<usize> {
        let receiver = self.pending.subscribe();
        let state = self.lock();
        self.pending.send_replace(state.pending());
        receiver
    }

    /// Make room for `n` deliveries, waiting for it with [`Overflow::Wait`]; returns the
    /// sequence numbers of entries dropped for them.
    async fn admit(&self, n: usize) -> Result<Vec<u64>> {
        loop {
            match self.reserve(n) {
                Err(MessagingError::OutboxFull { .. })
                    if self.overflow == Overflow::Wait && n <= self.capacity => {}
                reserved => return reserved,
            }
            // The watch starts from the current count and `wait_for` checks it first: a settle
            // between the failed reserve and here is not missed.
            let mut pending = self.watch_pending();
            let room = |pending: &usize| {
                *pending + n <= self.capacity || self.stopped.load(Ordering::Acquire)
            };
            let _ = pending.wait_for(room).await;
        }
    }

    /// Make room for `n` deliveries now; returns the sequence numbers of entries dropped for
    /// them.
    fn reserve(&self, n: usize) -> Result<Vec<u64>> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(MessagingError::Closed("the outbox's transport"));
        }
        let mut state = self.lock();
        let full = MessagingError::OutboxFull {
            capacity: self.capacity,
        };
        let excess = (state.pending() + n).saturating_sub(self.capacity);
        let mut dropped = Vec::new();
        if excess > 0 {
            if self.overflow != Overflow::DropOldest
                || n > self.capacity
                || excess > state.queue.len()
            {
                return Err(full);
            }
            for entry in state.queue.drain(..excess) {
                tracing::warn!(
                    message_id = %entry.item.message.message_id,
                    event_type = %entry.item.message.event_type,
                    capacity = self.capacity,
                    "outbox full: dropping the oldest notification"
                );
                dropped.push(entry.seq);
            }
            state.dropped += excess as u64;
            self.meters.dropped.increment(excess as u64);
        }
        state.reserved += n;
        self.publish(&state);
        Ok(dropped)
    }

    /// Reserved deliveries that were not written after all.
    fn release(&self, n: usize) {
        let mut state = self.lock();
        state.reserved -= n;
        self.publish(&state);
    }

    /// Reserved deliveries, now ready to send.
    fn push(&self, entries: impl IntoIterator<Item = Entry>, reserved: usize) {
        let mut state = self.lock();
        state.reserved -= reserved;
        state.queue.extend(entries);
        self.publish(&state);
        drop(state);
        self.wake.notify_one();
    }

    /// Memory-only: number and queue deliveries.
    fn push_items(&self, items: Vec<Arc<Item>>) {
        let reserved = items.len();
        let mut state = self.lock();
        let first = state.next_seq;
        state.next_seq += items.len() as u64;
        drop(state);
        let entries = items.into_iter().enumerate().map(|(i, item)| Entry {
            seq: first + i as u64,
            item,
        });
        self.push(entries, reserved);
    }

    fn take(&self, max: usize) -> Vec<Entry> {
        let mut state = self.lock();
        let n = max.min(state.queue.len());
        state.in_flight += n;
        state.queue.drain(..n).collect()
    }

    /// The end of a round of sends: `again` go back to the front, in order.
    fn settle(&self, sent: usize, sent_ok: u64, failed: u64, again: Vec<Entry>) {
        let mut state = self.lock();
        state.in_flight -= sent;
        state.sent += sent_ok;
        state.failed += failed;
        self.meters.failed.increment(failed);
        for entry in again.into_iter().rev() {
            state.queue.push_front(entry);
        }
        self.publish(&state);
    }

    fn stats(&self) -> OutboxStats {
        let state = self.lock();
        OutboxStats {
            pending: state.pending(),
            sent: state.sent,
            dropped: state.dropped,
            failed: state.failed,
        }
    }
}

/// Work for the spool's writer thread.
enum Request {
    Append {
        items: Vec<Arc<Item>>,
        bodies: Vec<Vec<u8>>,
        reply: oneshot::Sender<Result<()>>,
    },
    Ack(Vec<u64>),
    /// Answer once everything before it is durable.
    Sync(oneshot::Sender<Result<()>>),
}

/// Records appended to the spool, waiting for their batch's sync: their seqs, their items and
/// who to tell.
type Appended = (Vec<u64>, Vec<Arc<Item>>, oneshot::Sender<Result<()>>);

/// A notifier's outbox; the sender task stops when it is dropped.
pub(crate) struct Outbox {
    shared: Arc<Shared>,
    spool: Option<mpsc::UnboundedSender<Request>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("stats", &self.shared.stats())
            .finish()
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.shared.closed.send_replace(true);
    }
}

impl Outbox {
    /// Open the outbox (recovering its spool, if any) and start sending through `driver`,
    /// reporting with the transport's `telemetry`.
    pub(crate) async fn open(
        driver: Arc<dyn NotifyDriver>,
        config: OutboxConfig,
        telemetry: Arc<Telemetry>,
    ) -> Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            capacity: config.capacity,
            overflow: config.overflow,
            wake: Notify::new(),
            pending: watch::channel(0).0,
            closed: watch::channel(false).0,
            stopped: AtomicBool::new(false),
            meters: telemetry.meters.outbox(),
        });
        let spool = match &config.spool_dir {
            None => None,
            Some(dir) => Some(open_spool(dir, config.segment_bytes, &shared).await?),
        };
        let window = config
            .max_in_flight
            .unwrap_or_else(|| driver.outbox_window().max(1));
        let sender = Arc::new(Sender { driver, telemetry });
        let recovery = Recovery::new(&config, window);
        tokio::spawn(send_loop(
            shared.clone(),
            sender,
            spool.clone(),
            config,
            recovery,
        ));
        Ok(Self { shared, spool })
    }

    /// Accept deliveries: queued (and on disk, with a spool) when this returns.
    pub(crate) async fn enqueue(&self, items: Vec<Arc<Item>>) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let n = items.len();
        let Some(spool) = &self.spool else {
            self.shared.admit(n).await?;
            self.shared.push_items(items);
            return Ok(());
        };
        let bodies = items
            .iter()
            .map(|item| item.encode())
            .collect::<Result<Vec<_>>>()?;
        let dropped = self.shared.admit(n).await?;
        if !dropped.is_empty() {
            let _ = spool.send(Request::Ack(dropped));
        }
        let (reply, done) = oneshot::channel();
        let request = Request::Append {
            items,
            bodies,
            reply,
        };
        if spool.send(request).is_err() {
            self.shared.release(n);
            return Err(MessagingError::Closed("outbox spool"));
        }
        // The writer releases the reservation itself, even if this call is cancelled.
        done.await
            .unwrap_or(Err(MessagingError::Closed("outbox spool")))
    }

    pub(crate) fn stats(&self) -> OutboxStats {
        self.shared.stats()
    }

    /// Wait until nothing is pending and (with a spool) the acks are on disk.
    pub(crate) async fn flush(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut pending = self.shared.watch_pending();
        let drained = tokio::time::timeout_at(deadline, pending.wait_for(|n| *n == 0)).await;
        if !matches!(drained, Ok(Ok(_))) {
            return Err(MessagingError::SendTimeout {
                what: format!(
                    "the {} notification(s) left in the outbox",
                    self.shared.stats().pending
                ),
                after: timeout,
            });
        }
        if let Some(spool) = &self.spool {
            let (reply, done) = oneshot::channel();
            spool
                .send(Request::Sync(reply))
                .map_err(|_| MessagingError::Closed("outbox spool"))?;
            return done
                .await
                .unwrap_or(Err(MessagingError::Closed("outbox spool")));
        }
        Ok(())
    }
}

/// What the outbox does after a failed send.
enum Verdict {
    /// The broker may take it later.
    Retry,
    /// It will never be taken: drop it.
    Drop,
    /// The transport was closed: stop sending (the spool keeps what is left).
    Stop,
}

fn verdict(error: &MessagingError) -> Verdict {
    match error {
        MessagingError::Closed(_) => Verdict::Stop,
        // Credentials are often fixed by the operator while the outbox waits.
        MessagingError::AuthenticationFailure(_) => Verdict::Retry,
        e if e.is_transient() => Verdict::Retry,
        _ => Verdict::Drop,
    }
}

/// One finished send: its entry and what the driver said.
type Finished = (Entry, Result<()>);

/// Sends the entries for the sender task, reporting each.
struct Sender {
    driver: Arc<dyn NotifyDriver>,
    telemetry: Arc<Telemetry>,
}

impl Sender {
    /// Send `entry` in its `outbox.send` span (the child of the notify span that queued it);
    /// a confirmed send is counted as sent.
    async fn send(self: Arc<Self>, options: Arc<SendOptions>, entry: Entry) -> Finished {
        let Item {
            to,
            message,
            format,
        } = &*entry.item;
        let span = telemetry::outbox_send(self.telemetry.system, &to.topic, message);
        telemetry::incoming(&span, TraceContext::from_context(&message.context));
        let started = Instant::now();
        let notify = self.driver.notify(to, message, *format, &options);
        let sent = notify.instrument(span.clone()).await;
        telemetry::finish(&span, &sent);
        if sent.is_ok() {
            let meters = self.telemetry.meters.notify(&to.topic, &message.event_type);
            meters.sent.increment(1);
            meters.confirm.record(telemetry::seconds(started.elapsed()));
        }
        (entry, sent)
    }
}

/// What became of the sends that finished together.
#[derive(Default)]
struct Outcomes {
    finished: usize,
    /// Confirmed by the broker.
    sent: u64,
    /// Refused for good: dropped.
    failed: u64,
    /// Sequence numbers of the confirmed and dropped entries (acknowledged in the spool).
    done: Vec<u64>,
    /// To send again.
    again: Vec<Entry>,
    /// The error of the last send to retry.
    retry: Option<MessagingError>,
    /// The transport was closed.
    stop: bool,
}

impl Outcomes {
    fn add(&mut self, (entry, result): Finished) {
        self.finished += 1;
        let Err(error) = result else {
            self.sent += 1;
            self.done.push(entry.seq);
            return;
        };
        match verdict(&error) {
            Verdict::Retry => {
                self.again.push(entry);
                self.retry = Some(error);
            }
            Verdict::Stop => {
                self.again.push(entry);
                self.stop = true;
            }
            Verdict::Drop => {
                tracing::error!(
                    message_id = %entry.item.message.message_id,
                    event_type = %entry.item.message.event_type,
                    %error,
                    "outbox: dropping a notification the transport refuses"
                );
                self.failed += 1;
                self.done.push(entry.seq);
            }
        }
    }

    /// Record the outcomes: what is to be sent again goes back to the front of the queue, in
    /// queue order.
    fn settle(mut self, shared: &Shared, spool: Option<&mpsc::UnboundedSender<Request>>) -> Self {
        // Acks go to the writer before `flush` can see the entries gone.
        if let (Some(spool), false) = (spool, self.done.is_empty()) {
            let _ = spool.send(Request::Ack(std::mem::take(&mut self.done)));
        }
        self.again.sort_unstable_by_key(|entry| entry.seq);
        let again = std::mem::take(&mut self.again);
        shared.settle(self.finished, self.sent, self.failed, again);
        self
    }
}

/// How the sender recovers from failed sends: while the broker cannot take notifications it
/// backs off and probes with one send at a time, then opens the full window again.
struct Recovery {
    backoff: Backoff,
    /// Since when sends fail, if they do.
    outage: Option<Instant>,
    /// Sends in flight at most now.
    window: usize,
    max_in_flight: usize,
}

impl Recovery {
    fn new(config: &OutboxConfig, max_in_flight: usize) -> Self {
        Self {
            backoff: Backoff::new(
                config.retry_interval,
                config.retry_backoff,
                config.retry_max,
            ),
            outage: None,
            window: max_in_flight,
            max_in_flight,
        }
    }

    /// After a round of sends: how long to wait before the next, if `retry` (the error of a
    /// send to retry) says the broker did not take them.
    fn after(&mut self, retry: Option<MessagingError>, shared: &Shared) -> Option<Duration> {
        let Some(error) = retry else {
            if let Some(since) = self.outage.take() {
                tracing::info!(after = ?since.elapsed(), "outbox: the broker takes notifications again");
            }
            self.backoff.reset();
            self.window = self.max_in_flight;
            return None;
        };
        let delay = self.backoff.next_delay();
        if self.outage.is_none() {
            self.outage = Some(Instant::now());
            tracing::warn!(%error, pending = shared.stats().pending,
                "outbox: cannot send notifications; keeping them and retrying");
        } else {
            tracing::debug!(%error, ?delay, "outbox: still cannot send");
        }
        self.window = 1;
        Some(delay)
    }
}

/// The sender task: keeps up to `max_in_flight` sends going, started in queue order, and backs
/// off while the broker is unreachable.
///
/// Open the spool in `dir`, queue what it kept (recovered entries may exceed the capacity:
/// they are kept all the same) and start its writer thread: the writer's request channel.
async fn open_spool(
    dir: &Path,
    segment_bytes: u64,
    shared: &Arc<Shared>,
) -> Result<mpsc::UnboundedSender<Request>> {
    let spool_error = |source| MessagingError::OutboxSpool {
        path: dir.to_owned(),
        source,
    };
    let opening = dir.to_owned();
    let (spool, unacked) =
        tokio::task::spawn_blocking(move || Spool::open(&opening, segment_bytes))
            .await
            .map_err(|e| spool_error(std::io::Error::other(e)))??;
    let (entries, unreadable) = recovered_entries(unacked, spool.dir());
    shared.lock().failed += unreadable.len() as u64;
    shared.meters.failed.increment(unreadable.len() as u64);
    shared.push(entries, 0);
    let (tx, rx) = mpsc::unbounded_channel();
    if !unreadable.is_empty() {
        let _ = tx.send(Request::Ack(unreadable));
    }
    let writer_shared = shared.clone();
    std::thread::Builder::new()
        .name("outbox-spool".into())
        .spawn(move || write_spool(spool, rx, writer_shared))
        .map_err(spool_error)?;
    Ok(tx)
}

/// The entries of the records a spool kept, and the seqs of those that cannot be read (they
/// are dropped, and logged).
fn recovered_entries(unacked: Vec<Unacked>, dir: &Path) -> (Vec<Entry>, Vec<u64>) {
    let mut entries = Vec::with_capacity(unacked.len());
    let mut unreadable = Vec::new();
    for record in unacked {
        match Item::decode(&record.body) {
            Ok(item) => entries.push(Entry {
                seq: record.seq,
                item: Arc::new(item),
            }),
            Err(error) => {
                tracing::error!(seq = record.seq, %error, dir = %dir.display(),
                    "outbox: dropping a spool record that cannot be read");
                unreadable.push(record.seq);
            }
        }
    }
    if !entries.is_empty() {
        tracing::info!(
            count = entries.len(),
            dir = %dir.display(),
            "outbox: sending notifications recovered from the spool"
        );
    }
    (entries, unreadable)
}

/// A send that fails stops new ones; once those in flight finished, every failed entry goes
/// back to the front of the queue in order and, after a back-off, one entry at a time probes
/// the broker until one is confirmed.
async fn send_loop(
    shared: Arc<Shared>,
    sender: Arc<Sender>,
    spool: Option<mpsc::UnboundedSender<Request>>,
    config: OutboxConfig,
    mut recovery: Recovery,
) {
    let mut closed = shared.closed.subscribe();
    let options = Arc::new(SendOptions {
        timeout: Some(config.send_timeout),
        // The outbox retries itself, so that nothing else waits behind a failing send.
        retry: Retry::Never,
        ..SendOptions::default()
    });
    let mut sending = FuturesUnordered::new();
    loop {
        let window = recovery.window;
        for entry in shared.take(window.saturating_sub(sending.len())) {
            sending.push(sender.clone().send(options.clone(), entry));
        }
        let mut outcomes = Outcomes::default();
        tokio::select! {
            biased;
            _ = closed.wait_for(|c| *c) => return,
            Some(first) = sending.next() => {
                outcomes.add(first);
                while let Some(Some(next)) = sending.next().now_or_never() {
                    outcomes.add(next);
                }
            }
            // More to send and room for it.
            _ = shared.wake.notified(), if sending.len() < window => continue,
        }
        if outcomes.retry.is_some() || outcomes.stop {
            // Let the sends in flight finish, so that every failed one goes back in order.
            while !sending.is_empty() {
                tokio::select! {
                    biased;
                    _ = closed.wait_for(|c| *c) => return,
                    Some(next) = sending.next() => outcomes.add(next),
                }
            }
        }
        if outcomes.stop {
            // Before settling: the settle's update of the pending count wakes the notify
            // calls waiting for room, and they must find sending stopped.
            shared.stopped.store(true, Ordering::Release);
        }
        let outcomes = outcomes.settle(&shared, spool.as_ref());
        if outcomes.stop {
            tracing::warn!(
                pending = shared.stats().pending,
                "outbox: the transport is closed; sending stops"
            );
            return;
        }
        let Some(delay) = recovery.after(outcomes.retry, &shared) else {
            continue;
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = closed.wait_for(|c| *c) => return,
        }
    }
}

/// The spool's writer thread: appends and acks in batches, one fsync per batch.
fn write_spool(
    mut spool: Spool,
    mut requests: mpsc::UnboundedReceiver<Request>,
    shared: Arc<Shared>,
) {
    const MAX_BATCH: usize = 4096;
    while let Some(first) = requests.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let mut appended = Vec::new();
        let mut syncs = Vec::new();
        for request in batch {
            match request {
                Request::Append {
                    items,
                    bodies,
                    reply,
                } => match spool.append(&bodies) {
                    Ok(seqs) => appended.push((seqs, items, reply)),
                    Err(error) => {
                        shared.release(items.len());
                        let _ = reply.send(Err(error));
                    }
                },
                Request::Ack(seqs) => {
                    if let Err(error) = spool.ack(&seqs) {
                        // Those notifications are sent again after a restart.
                        tracing::error!(%error, "outbox: cannot record sent notifications");
                    }
                }
                Request::Sync(reply) => syncs.push(reply),
            }
        }
        let synced = spool.sync();
        confirm_appends(appended, &synced, &shared);
        if let Err(error) = &synced {
            tracing::error!(%error, "outbox: spool fsync failed");
        }
        for reply in syncs {
            let _ = reply.send(synced.as_ref().map(|_| ()).map_err(copy_error));
        }
    }
}

/// Once their batch is synced, queue the appended entries and tell their callers; if the
/// sync failed, give their room back and pass the error on.
fn confirm_appends(appended: Vec<Appended>, synced: &Result<()>, shared: &Shared) {
    for (seqs, items, reply) in appended {
        let n = items.len();
        match synced {
            Ok(()) => {
                let entries = seqs
                    .into_iter()
                    .zip(items)
                    .map(|(seq, item)| Entry { seq, item });
                shared.push(entries, n);
                let _ = reply.send(Ok(()));
            }
            Err(error) => {
                shared.release(n);
                let _ = reply.send(Err(copy_error(error)));
            }
        }
    }
}

/// A spool error for each caller of a failed batch.
fn copy_error(error: &MessagingError) -> MessagingError {
    match error {
        MessagingError::OutboxSpool { path, source } => MessagingError::OutboxSpool {
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        other => MessagingError::OutboxSpool {
            path: PathBuf::new(),
            source: std::io::Error::other(other.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::driver::NotificationSource;
    use crate::{get_notification_transport, Context, Notifier};

    const PATIENCE: Duration = Duration::from_secs(30);

    /// A broker that is up or down (or closed for good: `gone`), and refuses event type
    /// `too.big` for good. It fails the
    /// numbers in `fail_once` once each, and holds event type `slow` until a `release`
    /// permit is added for it.
    #[derive(Default)]
    struct Broker {
        up: AtomicBool,
        gone: AtomicBool,
        attempts: AtomicUsize,
        received: Mutex<Vec<String>>,
        fail_once: Mutex<std::collections::HashSet<String>>,
        release: Release,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
        /// The driver's preferred outbox window, if not the default.
        window: Option<usize>,
    }

    /// Permits for held sends, none at first.
    struct Release(tokio::sync::Semaphore);

    impl Default for Release {
        fn default() -> Self {
            Self(tokio::sync::Semaphore::new(0))
        }
    }

    struct FakeDriver(Arc<Broker>);

    #[async_trait]
    impl NotifyDriver for FakeDriver {
        fn outbox_window(&self) -> usize {
            self.0
                .window
                .unwrap_or(crate::driver::DEFAULT_OUTBOX_WINDOW)
        }

        async fn notify(
            &self,
            _to: &NotifyAddress,
            message: &NotificationMessage,
            _format: NotificationFormat,
            _options: &SendOptions,
        ) -> Result<()> {
            self.0.attempts.fetch_add(1, Ordering::SeqCst);
            if self.0.gone.load(Ordering::SeqCst) {
                return Err(MessagingError::Closed("the fake transport"));
            }
            if message.event_type == "too.big" {
                return Err(MessagingError::PayloadTooLarge { size: 2, limit: 1 });
            }
            if !self.0.up.load(Ordering::SeqCst) {
                return Err(MessagingError::ConnectionFailure("refused".into()));
            }
            let number = message.payload["n"].to_string();
            if self.0.fail_once.lock().unwrap().remove(&number) {
                return Err(MessagingError::ConnectionFailure("flaky".into()));
            }
            if message.event_type == "slow" {
                let now = self.0.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.0.max_in_flight.fetch_max(now, Ordering::SeqCst);
                self.0.release.0.acquire().await.unwrap().forget();
                self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
            self.0.received.lock().unwrap().push(number);
            Ok(())
        }

        async fn listen(
            &self,
            _subscriptions: &[NotifyAddress],
            _pool: Option<&str>,
        ) -> Result<Box<dyn NotificationSource>> {
            Err(MessagingError::unsupported("fake", "listening"))
        }
    }

    fn fast(config: OutboxConfig) -> OutboxConfig {
        config.retry_backoff(
            Duration::from_millis(5),
            Duration::from_millis(5),
            Duration::from_millis(20),
        )
    }

    /// A notifier whose outbox sends to `broker`.
    async fn notifier(broker: &Arc<Broker>, config: OutboxConfig) -> Result<Notifier> {
        let transport = get_notification_transport("memory://").await.unwrap();
        let mut notifier = Notifier::new(transport, "test.outbox");
        let telemetry = Arc::new(Telemetry::new("fake", "fake"));
        let driver = Arc::new(FakeDriver(broker.clone()));
        let outbox = Outbox::open(driver, fast(config), telemetry).await?;
        notifier.outbox = Some(Arc::new(outbox));
        Ok(notifier)
    }

    async fn send(notifier: &Notifier, numbers: std::ops::Range<u32>) -> Result<()> {
        send_as(notifier, "test.event", numbers).await
    }

    async fn send_as(
        notifier: &Notifier,
        event_type: &str,
        numbers: std::ops::Range<u32>,
    ) -> Result<()> {
        for n in numbers {
            let payload = serde_json::json!({ "n": n });
            notifier.info(&Context::new(), event_type, &payload).await?;
        }
        Ok(())
    }

    fn numbers(range: std::ops::Range<u32>) -> Vec<String> {
        range.map(|n| n.to_string()).collect()
    }

    async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn keeps_notifications_while_down_and_sends_them_in_order() {
        let broker = Arc::new(Broker::default());
        let notifier = notifier(&broker, OutboxConfig::new(100)).await.unwrap();
        send(&notifier, 0..20).await.unwrap();
        eventually("failed attempts", || {
            broker.attempts.load(Ordering::SeqCst) >= 3
        })
        .await;
        let stats = notifier.outbox_stats().unwrap();
        assert_eq!((stats.pending, stats.sent), (20, 0));
        broker.up.store(true, Ordering::SeqCst);
        notifier.flush(PATIENCE).await.unwrap();
        assert_eq!(*broker.received.lock().unwrap(), numbers(0..20));
        let stats = notifier.outbox_stats().unwrap();
        assert_eq!(
            stats,
            OutboxStats {
                pending: 0,
                sent: 20,
                dropped: 0,
                failed: 0
            }
        );
    }

    #[tokio::test]
    async fn keeps_a_full_window_of_sends_in_flight() {
        let broker = Arc::new(Broker::default());
        broker.up.store(true, Ordering::SeqCst);
        let config = OutboxConfig::new(100).max_in_flight(4);
        let notifier = notifier(&broker, config).await.unwrap();
        send_as(&notifier, "slow", 0..10).await.unwrap();
        eventually("4 sends in flight", || {
            broker.in_flight.load(Ordering::SeqCst) == 4
        })
        .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(broker.max_in_flight.load(Ordering::SeqCst), 4, "bounded");
        assert!(broker.received.lock().unwrap().is_empty());
        broker.release.0.add_permits(10);
        notifier.flush(PATIENCE).await.unwrap();
        assert_eq!(*broker.received.lock().unwrap(), numbers(0..10));
        assert_eq!(broker.max_in_flight.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn the_window_is_the_drivers_unless_configured() {
        for (configured, expected) in [(None, 3), (Some(5), 5)] {
            let broker = Arc::new(Broker {
                window: Some(3),
                ..Broker::default()
            });
            broker.up.store(true, Ordering::SeqCst);
            let config = OutboxConfig::new(100);
            let config = match configured {
                Some(max) => config.max_in_flight(max),
                None => config,
            };
            let notifier = notifier(&broker, config).await.unwrap();
            send_as(&notifier, "slow", 0..10).await.unwrap();
            eventually("a full window in flight", || {
                broker.in_flight.load(Ordering::SeqCst) == expected
            })
            .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(broker.max_in_flight.load(Ordering::SeqCst), expected);
            broker.release.0.add_permits(10);
            notifier.flush(PATIENCE).await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_slow_send_does_not_hold_back_the_ones_after_it() {
        let broker = Arc::new(Broker::default());
        broker.up.store(true, Ordering::SeqCst);
        let notifier = notifier(&broker, OutboxConfig::new(100).max_in_flight(4))
            .await
            .unwrap();
        send_as(&notifier, "slow", 0..1).await.unwrap();
        send(&notifier, 1..50).await.unwrap();
        // A window that waited for its slowest send would stop after the first four.
        eventually("the 49 sends behind the slow one", || {
            broker.received.lock().unwrap().len() == 49
        })
        .await;
        assert_eq!(notifier.outbox_stats().unwrap().pending, 1);
        broker.release.0.add_permits(1);
        notifier.flush(PATIENCE).await.unwrap();
        let mut expected = numbers(1..50);
        expected.push("0".into());
        assert_eq!(*broker.received.lock().unwrap(), expected);
    }

    #[tokio::test]
    async fn failed_sends_go_back_in_order_after_the_confirmed_ones() {
        let broker = Arc::new(Broker::default());
        broker.up.store(true, Ordering::SeqCst);
        broker
            .fail_once
            .lock()
            .unwrap()
            .extend(["3".to_owned(), "5".to_owned()]);
        let notifier = notifier(&broker, OutboxConfig::new(100).max_in_flight(8))
            .await
            .unwrap();
        // The current-thread runtime queues all ten before the sender takes eight.
        send(&notifier, 0..10).await.unwrap();
        notifier.flush(PATIENCE).await.unwrap();
        let expected: Vec<String> = [0, 1, 2, 4, 6, 7, 3, 5, 8, 9]
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(*broker.received.lock().unwrap(), expected);
        let stats = notifier.outbox_stats().unwrap();
        assert_eq!((stats.sent, stats.pending), (10, 0));
    }

    #[tokio::test]
    async fn a_full_outbox_refuses_with_a_typed_error() {
        let broker = Arc::new(Broker::default());
        let notifier = notifier(&broker, OutboxConfig::new(3)).await.unwrap();
        send(&notifier, 0..3).await.unwrap();
        let err = send(&notifier, 3..4).await.unwrap_err();
        assert!(
            matches!(err, MessagingError::OutboxFull { capacity: 3 }),
            "{err}"
        );
        assert_eq!(notifier.outbox_stats().unwrap().pending, 3);
        broker.up.store(true, Ordering::SeqCst);
        notifier.flush(PATIENCE).await.unwrap();
        assert_eq!(*broker.received.lock().unwrap(), numbers(0..3));
    }

    /// A notifier whose outbox of `capacity` waits for room, filled with `0..capacity`.
    async fn full_waiting_outbox(broker: &Arc<Broker>, capacity: u32) -> Notifier {
        let config = OutboxConfig::new(capacity as usize).overflow(Overflow::Wait);
        let notifier = notifier(broker, config).await.unwrap();
        send(&notifier, 0..capacity).await.unwrap();
        notifier
    }

    /// Send `numbers` on a task of their own, to see the sends wait.
    fn send_on_a_task(
        notifier: &Notifier,
        numbers: std::ops::Range<u32>,
    ) -> tokio::task::JoinHandle<Result<()>> {
        let notifier = notifier.clone();
        tokio::spawn(async move { send(&notifier, numbers).await })
    }

    #[tokio::test]
    async fn wait_holds_the_notify_call_until_there_is_room() {
        let broker = Arc::new(Broker::default());
        let notifier = full_waiting_outbox(&broker, 3).await;
        let waiting = send_on_a_task(&notifier, 3..6);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the fourth notify waits for room");
        assert_eq!(notifier.outbox_stats().unwrap().pending, 3);
        broker.up.store(true, Ordering::SeqCst);
        waiting.await.unwrap().unwrap();
        notifier.flush(PATIENCE).await.unwrap();
        assert_eq!(*broker.received.lock().unwrap(), numbers(0..6));
        assert_eq!(notifier.outbox_stats().unwrap().dropped, 0);
    }

    #[tokio::test]
    async fn a_cancelled_wait_queues_nothing() {
        let broker = Arc::new(Broker::default());
        let notifier = full_waiting_outbox(&broker, 2).await;
        let third = tokio::time::timeout(Duration::from_millis(30), send(&notifier, 2..3)).await;
        assert!(third.is_err(), "still waiting: {third:?}");
        broker.up.store(true, Ordering::SeqCst);
        notifier.flush(PATIENCE).await.unwrap();
        assert_eq!(*broker.received.lock().unwrap(), numbers(0..2));
    }

    #[tokio::test]
    async fn waiting_notify_calls_fail_once_the_transport_is_closed() {
        let broker = Arc::new(Broker::default());
        let notifier = full_waiting_outbox(&broker, 2).await;
        let waiting = send_on_a_task(&notifier, 2..3);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        broker.gone.store(true, Ordering::SeqCst);
        let err = tokio::time::timeout(PATIENCE, waiting)
            .await
            .expect("woken when sending stops")
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, MessagingError::Closed(_)), "{err}");
        let later = send(&notifier, 3..4).await.unwrap_err();
        assert!(matches!(later, MessagingError::Closed(_)), "{later}");
    }

    #[tokio::test]
    async fn drop_oldest_makes_room_and_counts() {
        let broker = Arc::new(Broker::default());
        let config = OutboxConfig::new(3)
            .overflow(Overflow::DropOldest)
            .max_in_flight(1);
        let notifier = notifier(&broker, config).await.unwrap();
        // Wait for a failed attempt: the sender then sleeps with its entry back in the queue.
        send(&notifier, 0..1).await.unwrap();
        eventually("a failed attempt", || {
            broker.attempts.load(Ordering::SeqCst) >= 1
        })
        .await;
        // The current-thread runtime does not run the sender between these sends.
        send(&notifier, 1..5).await.unwrap();
        let stats = notifier.outbox_stats().unwrap();
        assert_eq!((stats.pending, stats.dropped), (3, 2));
        broker.up.store(true, Ordering::SeqCst);
        notifier.flush(PATIENCE).await.unwrap();
        assert_eq!(*broker.received.lock().unwrap(), numbers(2..5));
        assert_eq!(notifier.outbox_stats().unwrap().sent, 3);
    }

    #[tokio::test]
    async fn refused_notifications_are_dropped_not_retried() {
        let broker = Arc::new(Broker::default());
        broker.up.store(true, Ordering::SeqCst);
        let notifier = notifier(&broker, OutboxConfig::new(10)).await.unwrap();
        send(&notifier, 0..1).await.unwrap();
        notifier
            .info(&Context::new(), "too.big", &serde_json::json!({"n": 99}))
            .await
            .unwrap();
        send(&notifier, 1..2).await.unwrap();
        notifier.flush(PATIENCE).await.unwrap();
        assert_eq!(*broker.received.lock().unwrap(), numbers(0..2));
        let stats = notifier.outbox_stats().unwrap();
        assert_eq!((stats.sent, stats.failed, stats.pending), (2, 1, 0));
    }

    /// Open the spool again once the previous owner's threads let go of it.
    async fn reopen(broker: &Arc<Broker>, config: OutboxConfig) -> Notifier {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match notifier(broker, config.clone()).await {
                Err(MessagingError::OutboxLocked { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await
                }
                other => return other.unwrap(),
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_spool_keeps_what_was_not_sent_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let config = OutboxConfig::new(100)
            .spool_dir(dir.path())
            .segment_bytes(2048);
        let broker = Arc::new(Broker::default());
        let first = notifier(&broker, config.clone()).await.unwrap();
        send(&first, 0..50).await.unwrap();
        let Err(err) = notifier(&broker, config.clone()).await else {
            panic!("a second outbox opened a locked spool");
        };
        assert!(matches!(err, MessagingError::OutboxLocked { .. }), "{err}");
        drop(first);

        broker.up.store(true, Ordering::SeqCst);
        let second = reopen(&broker, config.clone()).await;
        send(&second, 50..60).await.unwrap();
        second.flush(PATIENCE).await.unwrap();
        assert_eq!(*broker.received.lock().unwrap(), numbers(0..60));
        let segments = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension() == Some("seg".as_ref()))
            .count();
        assert_eq!(
            segments, 1,
            "sent segments are deleted; only the active one is left"
        );
        drop(second);

        // Everything was recorded as sent: nothing comes back.
        let third = reopen(&broker, config).await;
        assert_eq!(third.outbox_stats().unwrap().pending, 0);
        assert_eq!(broker.received.lock().unwrap().len(), 60);
    }
}

//! A listener's consumer: one thread per listener polls its consumer-group member, hands
//! decoded notifications to the listener, and commits the offsets of what was handled.
//!
//! * Starting points: when the group assigns partitions, each one starts at the group's
//!   committed offset or, when the group has none, at the end (or start, with
//!   `auto_offset_reset=earliest`) of the log, and that starting point is committed at once.
//!   So whatever is produced after a listener's `listen()` returned reaches its pool even
//!   across later rebalances (with plain `auto.offset.reset=latest`, a partition that moves
//!   to another member before anything was committed would skip what arrived meanwhile).
//! * Commits: see [`crate::offsets`]. Commit points are committed asynchronously every
//!   100 ms while they move, synchronously when partitions are revoked and when the listener
//!   closes.
//! * Flow control: while `max_poll_records` notifications are delivered but not handled, the
//!   thread takes nothing more from librdkafka (it keeps committing), and librdkafka stops
//!   fetching once it holds `max_poll_records` per partition (`queued.min.messages`). Not
//!   `pause()`/`resume()`: pausing drops what was fetched ahead, and librdkafka (2.12) does not
//!   wake the broker thread on resume, so fetching started again only at its next periodic
//!   wake-up, up to a second later (0.45–1 s measured; confluent-kafka-go issue 630 shows the
//!   same). A backlog held longer than `max.poll.interval.ms` (5 minutes) makes the member
//!   leave its group, as in every Kafka client: its partitions move to the other members, and
//!   what it had not committed is delivered again there.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use messaging_core::driver::{
    decode_or_drop, Acknowledger, InFlight, InFlightGuard, IncomingNotification,
    NotificationSource, Retry, SendOptions,
};
use messaging_core::wire::NotificationMessage;
use messaging_core::{MessagingError, Result};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;
use tokio::sync::{mpsc, watch};

use crate::config::OffsetReset;
use crate::logging::{forward_error, forward_log};
use crate::offsets::{Offsets, RecordId, TopicPartition};
use crate::producer::Publisher;

/// How often moving commit points are committed while consuming.
pub(crate) const COMMIT_INTERVAL: Duration = Duration::from_millis(100);
/// Bound of each broker request made while (re)assigning partitions.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing listener waits for notifications in progress to be settled.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a backlogged listener looks whether its endpoints caught up: a few hundred
/// notifications of the `max_poll_records` held at most are handled meanwhile.
const BACKLOG_CHECK: Duration = Duration::from_millis(5);
/// How long closing a listener waits for its consumer to commit and leave the group (after
/// the notifications in progress were settled).
const LEAVE_TIMEOUT: Duration = Duration::from_secs(DRAIN_TIMEOUT.as_secs() + 15);

/// State shared by the polling thread, the rebalance callbacks, the source and the ackers.
pub(crate) struct Shared {
    offsets: Mutex<Offsets>,
    /// Stop delivering; commit and leave the group once nothing is in progress.
    closing: AtomicBool,
    /// Notifications handed out and not yet settled or dropped.
    in_flight: InFlight,
    /// Set once the group assigned partitions (possibly none) for the first time.
    ready: watch::Sender<bool>,
    /// Set once the polling thread committed, left the group and ended.
    finished: watch::Sender<bool>,
}

impl Shared {
    /// State for a new listener; `commit_on_delivery` is `enable_auto_commit` (see
    /// [`Offsets::new`]).
    pub fn new(commit_on_delivery: bool) -> Arc<Self> {
        Arc::new(Self {
            offsets: Mutex::new(Offsets::new(commit_on_delivery)),
            closing: AtomicBool::new(false),
            in_flight: InFlight::default(),
            ready: watch::channel(false).0,
            finished: watch::channel(false).0,
        })
    }

    fn offsets(&self) -> MutexGuard<'_, Offsets> {
        self.offsets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ask the listener to stop: its thread commits and leaves the group.
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    /// Wait until the group assigned partitions to this member, at most `within`.
    pub async fn wait_ready(&self, within: Duration) -> bool {
        let mut ready = self.ready.subscribe();
        tokio::time::timeout(within, ready.wait_for(|r| *r))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Wait until the polling thread left the group and ended, at most `within`.
    pub async fn wait_finished(&self, within: Duration) -> bool {
        let mut finished = self.finished.subscribe();
        tokio::time::timeout(within, finished.wait_for(|f| *f))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// The consumer's context: logs, rebalances and commit results.
pub(crate) struct ListenerContext {
    shared: Arc<Shared>,
    reset: OffsetReset,
}

impl ListenerContext {
    pub fn new(shared: Arc<Shared>, reset: OffsetReset) -> Self {
        Self { shared, reset }
    }
}

impl ClientContext for ListenerContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        forward_log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        forward_error(&error, reason);
    }
}

type Consumer_ = BaseConsumer<ListenerContext>;

impl ConsumerContext for ListenerContext {
    fn rebalance(&self, consumer: &Consumer_, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.revoke(consumer, tpl),
            other => {
                tracing::error!(error = ?other, "kafka rebalance failed; dropping the assignment");
                self.revoke(consumer, tpl);
            }
        }
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        let mut tracker = self.shared.offsets();
        for elem in offsets.elements() {
            let failed = result.is_err() || elem.error().is_err();
            if let (true, Offset::Offset(offset)) = (failed, elem.offset()) {
                tracker.commit_failed(elem.topic(), elem.partition(), offset);
            }
        }
        if let Err(error) = result {
            tracing::warn!(%error, "kafka offset commit failed; will retry");
        }
    }
}

impl ListenerContext {
    /// Partitions were assigned: fix each one's starting point, then take them.
    fn assign(&self, consumer: &Consumer_, tpl: &mut TopicPartitionList) {
        let starts = self.starting_points(consumer, tpl);
        for (topic, partition, start, _) in &starts {
            if let Some(start) = start {
                if let Err(error) =
                    tpl.set_partition_offset(topic, *partition, Offset::Offset(*start))
                {
                    tracing::warn!(%error, topic, partition, "cannot set a starting offset");
                }
            }
        }
        let assigned = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_assign(tpl),
            _ => consumer.assign(tpl),
        };
        if let Err(error) = assigned {
            tracing::error!(%error, "kafka assign failed");
        }
        let commits = {
            let mut offsets = self.shared.offsets();
            for (topic, partition, start, committed) in &starts {
                offsets.assign(topic, *partition, *start, *committed);
            }
            // Starting points the group had no commit for.
            offsets.take_commits()
        };
        commit(consumer, &commits, CommitMode::Sync);
        tracing::debug!(partitions = tpl.count(), "kafka partitions assigned");
        self.shared.ready.send_replace(true);
    }

    /// Where each assigned partition starts: the group's committed offset, else the end (or
    /// start) of the log. `(topic, partition, start, committed)`; `None` when unknown, in
    /// which case librdkafka's own `auto.offset.reset` applies.
    fn starting_points(
        &self,
        consumer: &Consumer_,
        tpl: &TopicPartitionList,
    ) -> Vec<(String, i32, Option<i64>, Option<i64>)> {
        let committed = match consumer.committed_offsets(tpl.clone(), REQUEST_TIMEOUT) {
            Ok(committed) => committed,
            Err(error) => {
                tracing::warn!(%error, "cannot read the group's committed offsets");
                return tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition(), None, None))
                    .collect();
            }
        };
        committed
            .elements()
            .iter()
            .map(|elem| {
                let (topic, partition) = (elem.topic().to_owned(), elem.partition());
                if let Offset::Offset(offset) = elem.offset() {
                    return (topic, partition, Some(offset), Some(offset));
                }
                let start = match consumer.fetch_watermarks(&topic, partition, REQUEST_TIMEOUT) {
                    Ok((low, high)) => Some(match self.reset {
                        OffsetReset::Latest => high,
                        OffsetReset::Earliest => low,
                    }),
                    Err(error) => {
                        tracing::warn!(%error, topic, partition, "cannot read the log's bounds");
                        None
                    }
                };
                (topic, partition, start, None)
            })
            .collect()
    }

    /// Partitions are taken away: commit what was handled, forget the rest (their next
    /// owner reads it again).
    fn revoke(&self, consumer: &Consumer_, tpl: &TopicPartitionList) {
        let revoked: HashSet<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        let commits = self
            .shared
            .offsets()
            .take_commits_where(|topic, partition| {
                revoked.contains(&(topic.to_owned(), partition))
            });
        if !consumer.assignment_lost() {
            commit(consumer, &commits, CommitMode::Sync);
        }
        {
            let mut offsets = self.shared.offsets();
            for (topic, partition) in &revoked {
                offsets.revoke(topic, *partition);
            }
        }
        let unassigned = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_unassign(tpl),
            _ => consumer.unassign(),
        };
        if let Err(error) = unassigned {
            tracing::error!(%error, "kafka unassign failed");
        }
        tracing::debug!(partitions = revoked.len(), "kafka partitions revoked");
    }
}

fn commit(consumer: &Consumer_, commits: &[(TopicPartition, i64)], mode: CommitMode) {
    if commits.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::with_capacity(commits.len());
    for ((topic, partition), offset) in commits {
        if let Err(error) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
            tracing::warn!(%error, "cannot build a commit");
        }
    }
    if let Err(error) = consumer.commit(&tpl, mode) {
        tracing::warn!(%error, ?mode, "kafka offset commit failed");
        if matches!(mode, CommitMode::Sync) {
            // An async failure arrives through the commit callback instead.
            let mut offsets = consumer.context().shared.offsets();
            for ((topic, partition), offset) in commits {
                offsets.commit_failed(topic, *partition, *offset);
            }
        }
    }
}

/// A decoded notification on its way to the listener, with the record it came from.
pub(crate) struct Delivered {
    record: RecordId,
    notification: IncomingNotification,
}

/// What the polling thread needs.
pub(crate) struct Poller {
    pub consumer: Consumer_,
    pub shared: Arc<Shared>,
    pub publisher: Arc<Publisher>,
    pub to_listener: mpsc::UnboundedSender<Delivered>,
    pub poll_timeout: Duration,
    pub max_unhandled: usize,
}

impl Poller {
    /// Start polling on a thread of its own.
    pub fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("kafka-listener".into())
            .spawn(move || self.run())
    }

    fn run(self) {
        // Whatever way this ends (a panic too), the listener's close stops waiting.
        let _finished = Finished(self.shared.clone());
        let mut last_commit = Instant::now();
        let mut drain_until: Option<Instant> = None;
        let mut errors_logged = 0u32;
        let mut holding_back = false;
        loop {
            let closing = self.shared.closing.load(Ordering::SeqCst);
            if closing {
                let until = *drain_until.get_or_insert_with(|| Instant::now() + DRAIN_TIMEOUT);
                let in_progress = self.shared.in_flight.count();
                if in_progress == 0 {
                    break;
                }
                if Instant::now() >= until {
                    tracing::warn!(in_progress, "closing a kafka listener with notifications still in progress; they will be delivered again");
                    break;
                }
            }
            let backlogged = !closing && self.backlogged();
            if backlogged != holding_back {
                tracing::debug!(holding_back = backlogged, "kafka flow control");
                holding_back = backlogged;
            }
            if backlogged {
                // Flow control (see the module's doc): nothing more until the endpoints catch up.
                std::thread::sleep(BACKLOG_CHECK);
            } else {
                self.poll_once(closing, &mut errors_logged);
            }
            if last_commit.elapsed() >= COMMIT_INTERVAL {
                let commits = self.shared.offsets().take_commits();
                commit(&self.consumer, &commits, CommitMode::Async);
                last_commit = Instant::now();
            }
        }
        let commits = self.shared.offsets().take_commits();
        commit(&self.consumer, &commits, CommitMode::Sync);
        tracing::debug!("kafka listener leaves its group");
        // Dropping the consumer closes it: it revokes (committing again, if anything moved)
        // and leaves the group, so that the partitions move to the other members at once.
        drop(self.consumer);
    }

    fn deliver(&self, message: &BorrowedMessage<'_>) {
        let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
        let Some(record) = self.shared.offsets().delivered(topic, partition, offset) else {
            tracing::debug!(
                topic,
                partition,
                offset,
                "dropping a record of a revoked partition"
            );
            return;
        };
        let payload = message.payload().unwrap_or_default();
        let decoded = match message.payload() {
            Some(payload) => NotificationMessage::decode(payload),
            None => Err(MessagingError::MalformedMessage(
                "the record has no value".into(),
            )),
        };
        let Some((notification, unique_id)) =
            decode_or_drop(decoded, "kafka", || topic, || payload)
        else {
            self.shared.offsets().handled(&record);
            return;
        };
        // The value is kept for a requeue, which produces it again as it was.
        let acker = KafkaAcker::new(
            self.shared.clone(),
            self.publisher.clone(),
            record.clone(),
            payload.to_vec(),
        );
        let delivered = Delivered {
            record,
            notification: IncomingNotification {
                message: Box::new(notification),
                unique_id,
                acker: Box::new(acker),
            },
        };
        if self.to_listener.send(delivered).is_err() {
            // The source is gone: stop.
            self.shared.close();
        }
    }

    /// Whether `max_unhandled` notifications wait to be handled.
    fn backlogged(&self) -> bool {
        self.shared.offsets().unhandled() >= self.max_unhandled
    }

    /// Poll once and deliver what came. A closing listener takes nothing more: what it does
    /// not deliver is not tracked, hence not committed; it polls often, to see its in-progress
    /// notifications end.
    fn poll_once(&self, closing: bool, errors_logged: &mut u32) {
        let timeout = if closing {
            Duration::from_millis(20)
        } else {
            self.poll_timeout
        };
        match self.consumer.poll(timeout) {
            Some(Ok(message)) if !closing => self.deliver(&message),
            Some(Ok(_)) | None => {}
            Some(Err(error)) => {
                *errors_logged += 1;
                if *errors_logged <= 10 || errors_logged.is_power_of_two() {
                    tracing::warn!(%error, "kafka consumer error");
                }
            }
        }
    }
}

/// Marks the polling thread finished when it ends: the consumer was dropped before (it
/// committed and left the group).
struct Finished(Arc<Shared>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.finished.send_replace(true);
    }
}

/// Settles one delivered notification: marks its offset handled, or produces it again.
struct KafkaAcker {
    shared: Arc<Shared>,
    publisher: Arc<Publisher>,
    record: RecordId,
    value: Vec<u8>,
    /// Counted in flight until settled or dropped.
    _in_flight: InFlightGuard,
}

impl KafkaAcker {
    fn new(
        shared: Arc<Shared>,
        publisher: Arc<Publisher>,
        record: RecordId,
        value: Vec<u8>,
    ) -> Self {
        Self {
            _in_flight: shared.in_flight.track(),
            shared,
            publisher,
            record,
            value,
        }
    }
}

#[async_trait]
impl Acknowledger for KafkaAcker {
    async fn ack(self: Box<Self>) -> Result<()> {
        self.shared.offsets().handled(&self.record);
        Ok(())
    }

    /// Produce the same record value to the same topic; once the broker acknowledged the
    /// copy, the original counts as handled. If the copy cannot be produced, the original
    /// stays unhandled: its offset is not committed, so it is delivered again after a
    /// restart or rebalance.
    async fn requeue(self: Box<Self>) -> Result<()> {
        let options = SendOptions {
            retry: Retry::Times(3),
            ..SendOptions::default()
        };
        self.publisher
            .publish(&self.record.topic, Arc::new(self.value), &options)
            .await?;
        self.shared.offsets().handled(&self.record);
        Ok(())
    }
}

/// A listener's stream of notifications.
pub(crate) struct KafkaNotificationSource {
    from_poller: mpsc::UnboundedReceiver<Delivered>,
    shared: Arc<Shared>,
    closed: bool,
}

impl KafkaNotificationSource {
    pub fn new(from_poller: mpsc::UnboundedReceiver<Delivered>, shared: Arc<Shared>) -> Self {
        Self {
            from_poller,
            shared,
            closed: false,
        }
    }
}

#[async_trait]
impl NotificationSource for KafkaNotificationSource {
    async fn next(&mut self) -> Option<IncomingNotification> {
        if self.closed {
            return None;
        }
        loop {
            let delivered = self.from_poller.recv().await?;
            // Its partition moved to another member meanwhile: that member delivers it.
            if self.shared.offsets().is_current(&delivered.record) {
                return Some(delivered.notification);
            }
        }
    }

    /// Stop, and return once the consumer committed what was handled and left its group, so
    /// that the group's other (or next) members get its partitions at once rather than after
    /// the session timeout (bounded: a broker that does not answer cannot hold it forever).
    async fn close(&mut self) {
        self.closed = true;
        self.shared.close();
        // Undelivered notifications are dropped unhandled: not committed, so the group's
        // next owner of their partitions gets them.
        self.from_poller.close();
        while self.from_poller.try_recv().is_ok() {}
        if !self.shared.wait_finished(LEAVE_TIMEOUT).await {
            tracing::warn!(
                "a kafka listener did not leave its consumer group within {LEAVE_TIMEOUT:?}; \
                 its partitions move to other members after the session timeout"
            );
        }
    }
}

impl Drop for KafkaNotificationSource {
    fn drop(&mut self) {
        self.shared.close();
    }
}

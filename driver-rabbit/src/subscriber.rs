//! Consuming: a listen connection that declares its topology, consumes its queues and, when
//! the connection breaks, reconnects with back-off, declares everything again and resumes,
//! without its user noticing.
//!
//! One task owns the connection. It forwards deliveries to the user through a channel (so
//! that receiving is cancel-safe) and performs the acks and rejects the user asks for, in
//! order, so that on close every settlement asked for reaches the broker before the
//! connection closes. The settlements that gathered meanwhile go out together: a run of acks
//! of consecutive deliveries as one `multiple` ack ([`crate::acks`]).
//!
//! Closing is graceful: consumers are cancelled, deliveries not handed out are requeued at
//! once (for other consumers), and the connection stays open until every delivery handed
//! out with a [`Guard`] has been settled, so that handlers still running can acknowledge
//! what they took.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{self, BoxStream, StreamExt};
use futures_util::FutureExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Acker, Channel, Connection};
use messaging_core::driver::{InFlight, InFlightGuard, Pace};
use messaging_core::telemetry;
use messaging_core::MessagingError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::acks::{self, Kind, Settled};
use crate::connection::{backoff, lapin_failure, Connector, Failure};
use crate::publisher::CLOSE_WITHIN;
use crate::topology::{declare_all, Declaration};

/// How long declaring and consuming may take on a new connection.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a subscriber declares and consumes.
pub(crate) struct Plan {
    pub(crate) connector: Arc<Connector>,
    /// Names the connection (`rpc-server`, `notify-listener`, `rpc-replies`).
    pub(crate) role: &'static str,
    pub(crate) declarations: Vec<Declaration>,
    pub(crate) queues: Vec<String>,
    /// Queues of this subscriber alone, deleted when it closes (fanout queues).
    pub(crate) delete_on_close: Vec<String>,
    /// The queue among `queues` that is a stream (`rabbit_stream_fanout`), read from `cursor`.
    pub(crate) stream: Option<String>,
    pub(crate) cursor: StreamCursor,
}

/// Where reading a stream resumes: after the last message handed out, so that what a lost
/// connection had delivered but not handed out is read again (a stream does not redeliver).
#[derive(Clone, Default)]
pub(crate) struct StreamCursor(Arc<Mutex<StreamOffset>>);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum StreamOffset {
    /// What is published from now on, as a new fanout queue would get (oslo starts at
    /// `last`, the stream's last chunk, which may hold casts sent before the server started).
    #[default]
    Next,
    /// From the start of the last chunk: after the broker cancelled the consumer (the stream
    /// may have been deleted and declared again, its offsets starting over), as oslo does.
    Last,
    /// After this offset.
    After(i64),
}

impl StreamCursor {
    /// The `x-stream-offset` consumer argument.
    fn argument(&self) -> AMQPValue {
        match *self.0.lock().expect("cursor poisoned") {
            StreamOffset::Next => AMQPValue::LongString("next".into()),
            StreamOffset::Last => AMQPValue::LongString("last".into()),
            StreamOffset::After(offset) => AMQPValue::LongLongInt(offset.saturating_add(1)),
        }
    }

    /// Note a delivery handed out (its `x-stream-offset` header, if it came from a stream).
    pub(crate) fn handed_out(&self, delivery: &Delivery) {
        let offset = delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|headers| headers.inner().get("x-stream-offset").cloned());
        let offset = match offset {
            Some(AMQPValue::LongLongInt(offset)) => offset,
            Some(AMQPValue::LongInt(offset)) => offset.into(),
            _ => return,
        };
        *self.0.lock().expect("cursor poisoned") = StreamOffset::After(offset);
    }

    fn restart_at_last_chunk(&self) {
        *self.0.lock().expect("cursor poisoned") = StreamOffset::Last;
    }
}

/// One frame settling deliveries.
enum Settle {
    Ack(Acker),
    /// Ack this delivery and every earlier one of its channel not settled yet.
    AckThrough(Acker),
    Reject {
        acker: Acker,
        requeue: bool,
    },
}

/// How long sending one settlement may take.
///
/// lapin (4.12) can leave a settlement pending forever: when a connection fails it first drops
/// the frames queued so far and only then marks its channels failed, so an ack queued in
/// between is neither sent nor failed (`Channels::set_connection_error`). A handler awaiting
/// it would never finish, and neither would the shutdown waiting for that handler. Giving up
/// loses nothing: the broker delivers again what a failed connection had not settled.
pub(crate) const SETTLE_WITHIN: Duration = Duration::from_secs(5);

impl Settle {
    fn new(acker: Acker, kind: Kind) -> Self {
        match kind {
            Kind::Ack => Settle::Ack(acker),
            Kind::Reject { requeue } => Settle::Reject { acker, requeue },
        }
    }

    /// Send the settlement: `Ok(true)` once sent, `Ok(false)` when the delivery's connection
    /// is gone (the broker delivers it again) or the send did not finish within
    /// [`SETTLE_WITHIN`].
    async fn send(self) -> lapin::Result<bool> {
        bounded(SETTLE_WITHIN, async move {
            match self {
                Settle::Ack(acker) => acker.ack(BasicAckOptions::default()).await,
                Settle::AckThrough(acker) => acker.ack(BasicAckOptions { multiple: true }).await,
                Settle::Reject { acker, requeue } => {
                    acker.reject(BasicRejectOptions { requeue }).await
                }
            }
        })
        .await
    }
}

async fn bounded(
    limit: Duration,
    send: impl std::future::Future<Output = lapin::Result<bool>>,
) -> lapin::Result<bool> {
    timeout(limit, send).await.unwrap_or_else(|_| {
        tracing::warn!(
            "a settlement was not sent within {limit:?}; if its connection failed, the broker \
             delivers the message again"
        );
        Ok(false)
    })
}

/// What the user tells the task, beyond settlements.
enum Control {
    /// Cancel the consumers (and requeue what they had buffered); answer when done.
    Stop(oneshot::Sender<()>),
    /// The user gave back what it had not handed out: finish and close.
    Finish,
}

/// Held with a delivery handed out until it is settled: the connection stays open meanwhile.
pub(crate) type Guard = InFlightGuard;

/// A delivery handed out, and the connection it came on.
pub(crate) struct Incoming {
    pub(crate) delivery: Delivery,
    connection: u64,
}

impl Incoming {
    /// What settles the delivery, without its body.
    pub(crate) fn into_unsettled(self) -> Unsettled {
        Unsettled {
            connection: self.connection,
            tag: self.delivery.delivery_tag,
            acker: self.delivery.acker,
        }
    }
}

/// A delivery handed out and not settled yet.
pub(crate) struct Unsettled {
    connection: u64,
    tag: u64,
    acker: Acker,
}

/// A settlement of a delivery handed out, for the subscriber's task.
struct Settlement {
    delivery: Unsettled,
    kind: Kind,
}

/// Settles deliveries a subscriber handed out, from any task: each settlement goes to the
/// subscriber's task, which sends it with the others gathered meanwhile.
#[derive(Clone)]
pub(crate) struct Settler(mpsc::UnboundedSender<Settlement>);

impl Settler {
    /// Hand a settlement over; false once the subscriber has closed (the broker delivers the
    /// message again).
    pub(crate) fn settle(&self, delivery: Unsettled, kind: Kind) -> bool {
        self.0.send(Settlement { delivery, kind }).is_ok()
    }
}

/// Numbers every subscriber connection, so that a settlement of a delivery from a lost one
/// is never taken for one of its successor's (delivery tags start again at 1).
static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// The most settlements sent in one go.
const SETTLE_BATCH: usize = 256;

/// The least time between two sends of settlements while consuming.
const SETTLE_PACE: Duration = Duration::from_millis(1);

/// How many gathered settlements are sent without waiting for the pace: with a prefetch
/// window, half of it, so that the broker is never left waiting for acks being held back
/// (with a window of 1, every ack goes at once).
fn flush_at(prefetch: u16) -> usize {
    match prefetch {
        0 => SETTLE_BATCH,
        window => usize::from(window).div_ceil(2).min(SETTLE_BATCH),
    }
}

/// A running subscription.
pub(crate) struct Subscriber {
    deliveries: mpsc::UnboundedReceiver<Incoming>,
    settle: Settler,
    control: Option<mpsc::UnboundedSender<Control>>,
    outstanding: InFlight,
    task: Option<JoinHandle<()>>,
    cursor: StreamCursor,
}

/// Deliveries of merged consumers; `None` items mark a consumer's end.
type Deliveries = BoxStream<'static, Option<lapin::Result<Delivery>>>;

/// One connection's channel and its consumers.
struct Live {
    /// This connection's number (from [`CONNECTIONS`]).
    number: u64,
    connection: Connection,
    channel: Channel,
    deliveries: Deliveries,
    /// Which of the channel's deliveries are settled.
    settled: Settled,
    /// Settlements not sent yet, and when they may go.
    gathered: Vec<Settlement>,
    pace: Pace,
    /// How many gathered settlements go at once, without waiting for the pace.
    flush_at: usize,
}

impl Plan {
    /// Connect, declare and consume. Declaring and consuming may take [`SUBSCRIBE_TIMEOUT`]:
    /// a quorum queue still electing its leader after a cluster outage can leave them
    /// unanswered, and then a new connection is tried.
    async fn setup(&self) -> Result<Live, Failure> {
        let connection = self.connector.connect(self.role).await?;
        match timeout(SUBSCRIBE_TIMEOUT, self.subscribe(&connection)).await {
            Ok(Ok((channel, deliveries))) => Ok(Live {
                number: CONNECTIONS.fetch_add(1, Ordering::Relaxed),
                connection,
                channel,
                deliveries,
                settled: Settled::default(),
                gathered: Vec::new(),
                pace: Pace::new(SETTLE_PACE),
                flush_at: flush_at(self.connector.config().rabbit_qos_prefetch_count),
            }),
            Ok(Err(failure)) => {
                close_connection(&connection).await;
                Err(failure)
            }
            Err(_) => {
                // Closing a connection stuck on a node may hang too.
                tokio::spawn(async move {
                    let _ = timeout(SUBSCRIBE_TIMEOUT, close_connection(&connection)).await;
                });
                Err(Failure::Retry(MessagingError::ConnectionFailure(format!(
                    "declaring and consuming {:?}: no answer within {SUBSCRIBE_TIMEOUT:?}",
                    self.queues
                ))))
            }
        }
    }

    /// Declare the topology on a new channel of `connection` and consume the queues.
    async fn subscribe(&self, connection: &Connection) -> Result<(Channel, Deliveries), Failure> {
        let lapin_failure = |what: &str| {
            let what = what.to_owned();
            move |e: lapin::Error| lapin_failure(&what, &e)
        };
        let channel = connection
            .create_channel()
            .await
            .map_err(lapin_failure("opening a channel"))?;
        let prefetch = self.connector.config().rabbit_qos_prefetch_count;
        if prefetch > 0 {
            channel
                .basic_qos(prefetch, BasicQosOptions::default())
                .await
                .map_err(lapin_failure("setting the prefetch count"))?;
        }
        declare_all(&channel, &self.declarations).await?;
        let mut arguments = FieldTable::default();
        if self.connector.config().enable_cancel_on_failover {
            // The broker cancels the consumer when a mirrored queue fails over; the run loop
            // then declares and consumes again.
            arguments.insert("x-cancel-on-ha-failover".into(), AMQPValue::Boolean(true));
        }
        let mut consumers = Vec::with_capacity(self.queues.len());
        for (index, queue) in self.queues.iter().enumerate() {
            let mut arguments = arguments.clone();
            if self.stream.as_ref() == Some(queue) {
                // oslo sets only this one on a stream consumer.
                arguments = FieldTable::default();
                arguments.insert("x-stream-offset".into(), self.cursor.argument());
            }
            // Consumer tags are per-connection counters, as oslo's.
            let consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    (index + 1).to_string().into(),
                    BasicConsumeOptions::default(),
                    arguments,
                )
                .await
                .map_err(lapin_failure(&format!("consuming `{queue}`")))?;
            consumers.push(
                consumer
                    .map(Some)
                    .chain(stream::once(async { None }))
                    .boxed(),
            );
        }
        Ok((channel, stream::select_all(consumers).boxed()))
    }
}

impl Subscriber {
    /// Connect, declare and consume (one pass over the hosts), then keep consuming in the
    /// background.
    pub(crate) async fn start(plan: Plan) -> Result<Self, Failure> {
        let live = plan.setup().await?;
        let (deliveries_tx, deliveries) = mpsc::unbounded_channel();
        let (settle, settle_rx) = mpsc::unbounded_channel();
        let (control, control_rx) = mpsc::unbounded_channel();
        let outstanding = InFlight::default();
        let cursor = plan.cursor.clone();
        let task = tokio::spawn(run(
            plan,
            live,
            deliveries_tx,
            settle_rx,
            control_rx,
            outstanding.clone(),
        ));
        Ok(Self {
            deliveries,
            settle: Settler(settle),
            control: Some(control),
            outstanding,
            task: Some(task),
            cursor,
        })
    }

    /// Note that `delivery` was handed out to the user: a stream is read again after the last
    /// one when consuming resumes on a new connection.
    pub(crate) fn handed_out(&self, delivery: &Delivery) {
        self.cursor.handed_out(delivery);
    }

    /// The next delivery; `None` once closed. Cancel-safe.
    pub(crate) async fn recv(&mut self) -> Option<Incoming> {
        self.control.as_ref()?;
        self.deliveries.recv().await
    }

    /// Keep the connection open until the returned guard is dropped (after settling).
    pub(crate) fn guard(&self) -> Guard {
        self.outstanding.track()
    }

    /// What settles this subscriber's deliveries from other tasks.
    pub(crate) fn settler(&self) -> Settler {
        self.settle.clone()
    }

    /// Acknowledge a delivery (sent before the connection closes).
    pub(crate) fn ack(&self, incoming: Incoming) {
        self.settle.settle(incoming.into_unsettled(), Kind::Ack);
    }

    /// Reject a delivery: dropped, or requeued.
    pub(crate) fn reject(&self, incoming: Incoming, requeue: bool) {
        let requeue = Kind::Reject { requeue };
        self.settle.settle(incoming.into_unsettled(), requeue);
    }

    /// Stop consuming: deliveries not handed out go back to the broker at once, pending
    /// settlements are sent, guarded deliveries are waited for, this subscriber's own queues
    /// deleted and the connection closed.
    pub(crate) async fn close(&mut self) {
        let Some(control) = self.control.take() else {
            return;
        };
        let (stopped, stopped_rx) = oneshot::channel();
        if control.send(Control::Stop(stopped)).is_ok() {
            let _ = stopped_rx.await;
        }
        self.deliveries.close();
        while let Ok(incoming) = self.deliveries.try_recv() {
            self.reject(incoming, true);
        }
        let _ = control.send(Control::Finish);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

async fn apply(settle: Settle) {
    match settle.send().await {
        Ok(true) => {}
        // The delivery's channel is gone: the broker redelivers it.
        Ok(false) => tracing::debug!("settling a delivery of a closed channel"),
        Err(error) => tracing::debug!(%error, "settling a delivery failed"),
    }
}

/// Why consuming ended: a stop to answer, or `None` when the user went away.
type Ended = Option<oneshot::Sender<()>>;

fn ended(command: Option<Control>) -> Ended {
    match command {
        Some(Control::Stop(stopped)) => Some(stopped),
        Some(Control::Finish) | None => None,
    }
}

async fn run(
    plan: Plan,
    live: Live,
    deliveries: mpsc::UnboundedSender<Incoming>,
    mut settle: mpsc::UnboundedReceiver<Settlement>,
    mut control: mpsc::UnboundedReceiver<Control>,
    outstanding: InFlight,
) {
    let mut live = Some(live);
    let stopped = consume(&plan, &mut live, deliveries, &mut settle, &mut control).await;
    if let Some(live) = live.as_mut() {
        live.send_gathered().await;
        // A broker that does not answer the cancels must not hold up the shutdown.
        if timeout(CLOSE_WITHIN, give_back_buffered(&plan, live))
            .await
            .is_err()
        {
            tracing::warn!(
                role = plan.role,
                "RabbitMQ did not answer the consumer cancels within {CLOSE_WITHIN:?}"
            );
        }
    }
    if let Some(stopped) = stopped {
        let _ = stopped.send(());
        wait_for_finish(&mut settle, &mut control, live.as_mut()).await;
    }
    settle_outstanding(live.as_mut(), &mut settle, &outstanding).await;
    if let Some(live) = live {
        if timeout(CLOSE_WITHIN, delete_own_queues(&plan, &live.channel))
            .await
            .is_err()
        {
            tracing::warn!(
                role = plan.role,
                "RabbitMQ did not delete this subscriber's queues within {CLOSE_WITHIN:?}"
            );
        }
        close_connection(&live.connection).await;
    }
}

/// Delete the queues that live only as long as this subscriber (its reply or fanout queues).
async fn delete_own_queues(plan: &Plan, channel: &Channel) {
    for queue in &plan.delete_on_close {
        let delete = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default());
        if let Err(error) = delete.await {
            tracing::debug!(%error, queue, "could not delete the queue");
        }
    }
}

/// Hand deliveries over and apply settlements, subscribing again whenever the subscription is
/// lost, until told to end.
async fn consume(
    plan: &Plan,
    live: &mut Option<Live>,
    deliveries: mpsc::UnboundedSender<Incoming>,
    settle: &mut mpsc::UnboundedReceiver<Settlement>,
    control: &mut mpsc::UnboundedReceiver<Control>,
) -> Ended {
    let mut backoff = backoff(plan.connector.config());
    // oslo's `kombu_reconnect_delay`, added after the broker cancelled a consumer.
    let mut cancel_delay = Duration::ZERO;
    loop {
        let Some(current) = live.as_mut() else {
            let delay = backoff.next_delay() + std::mem::take(&mut cancel_delay);
            if let Err(ended) = resubscribe(plan, live, delay, settle, control).await {
                return ended;
            }
            if live.is_some() {
                backoff.reset();
            }
            continue;
        };
        tokio::select! {
            biased;
            () = current.pace.ready(), if !current.gathered.is_empty() => {
                current.send_gathered().await;
            }
            command = settle.recv() => match command {
                Some(first) => {
                    current.gather(first, settle);
                    if current.gathered.len() >= current.flush_at {
                        current.send_gathered().await;
                    }
                }
                None => return None,
            },
            command = control.recv() => return ended(command),
            item = current.deliveries.next() => match item {
                Some(Some(Ok(delivery))) => {
                    let incoming = Incoming { delivery, connection: current.number };
                    if deliveries.send(incoming).is_err() {
                        return None;
                    }
                }
                other => {
                    let why = match other {
                        Some(Some(Err(error))) => error.to_string(),
                        _ => {
                            plan.cursor.restart_at_last_chunk();
                            cancel_delay = plan.connector.config().reconnect_delay();
                            "the broker cancelled a consumer".into()
                        }
                    };
                    tracing::warn!(role = plan.role, %why, "lost the RabbitMQ subscription; reconnecting");
                    if let Some(mut lost) = live.take() {
                        // After a consumer cancel the connection still takes settlements.
                        lost.send_gathered().await;
                        close_connection(&lost.connection).await;
                    }
                }
            },
        }
    }
}

/// After `delay` (unless told to end first), connect and subscribe again: `live` on success.
async fn resubscribe(
    plan: &Plan,
    live: &mut Option<Live>,
    delay: Duration,
    settle: &mut mpsc::UnboundedReceiver<Settlement>,
    control: &mut mpsc::UnboundedReceiver<Control>,
) -> Result<(), Ended> {
    tokio::select! {
        command = control.recv() => return Err(ended(command)),
        _ = plan.connector.pause(delay) => {}
    }
    // Settlements of deliveries from the lost connection cannot be sent any more.
    while settle.try_recv().is_ok() {}
    let setup = plan.setup();
    match telemetry::reconnect(crate::NAME, crate::SYSTEM, plan.role, setup).await {
        Ok(new) => {
            tracing::info!(role = plan.role, queues = ?plan.queues, "reconnected to RabbitMQ and resumed consuming");
            *live = Some(new);
        }
        Err(Failure::Retry(error) | Failure::Fatal(error)) => {
            tracing::warn!(role = plan.role, %error, "cannot resume consuming yet; retrying");
        }
    }
    Ok(())
}

/// No more deliveries: cancel the consumers and give what they had buffered back to the
/// broker now.
async fn give_back_buffered(plan: &Plan, live: &mut Live) {
    for tag in 1..=plan.queues.len() {
        let _ = live
            .channel
            .basic_cancel(
                tag.to_string().as_str().into(),
                BasicCancelOptions::default(),
            )
            .await;
    }
    loop {
        match live.deliveries.next().now_or_never() {
            Some(Some(Some(Ok(delivery)))) => {
                apply(Settle::Reject {
                    acker: delivery.acker,
                    requeue: true,
                })
                .await
            }
            Some(Some(_)) => continue,
            Some(None) | None => break,
        }
    }
}

/// Wait for the user to give back what it had not handed out.
async fn wait_for_finish(
    settle: &mut mpsc::UnboundedReceiver<Settlement>,
    control: &mut mpsc::UnboundedReceiver<Control>,
    mut live: Option<&mut Live>,
) {
    loop {
        tokio::select! {
            command = settle.recv() => match command {
                Some(first) => settle_gathered(first, settle, live.as_deref_mut()).await,
                None => break,
            },
            command = control.recv() => match command {
                Some(Control::Stop(_)) => continue,
                Some(Control::Finish) | None => break,
            },
        }
    }
}

/// Every settlement asked for goes out, and handlers still running may settle what they
/// took, before the connection closes. A guard drops after its settlement is queued.
async fn settle_outstanding(
    mut live: Option<&mut Live>,
    settle: &mut mpsc::UnboundedReceiver<Settlement>,
    outstanding: &InFlight,
) {
    while live
        .as_ref()
        .is_some_and(|live| live.connection.status().connected())
    {
        tokio::select! {
            biased;
            command = settle.recv() => match command {
                Some(first) => settle_gathered(first, settle, live.as_deref_mut()).await,
                None => break,
            },
            () = outstanding.wait_idle() => break,
        }
    }
    while let Ok(first) = settle.try_recv() {
        settle_gathered(first, settle, live.as_deref_mut()).await;
    }
}

/// Send `first` and the settlements queued behind it, now (the consuming loop paces them
/// instead). Without a connection there is nothing to send them on: the broker delivers those
/// messages again.
async fn settle_gathered(
    first: Settlement,
    queued: &mut mpsc::UnboundedReceiver<Settlement>,
    live: Option<&mut Live>,
) {
    match live {
        Some(live) => {
            live.gather(first, queued);
            live.send_gathered().await;
        }
        None => tracing::debug!("a settlement after the connection was lost"),
    }
}

impl Live {
    /// Take `first` and the settlements queued behind it, to send with [`Self::send_gathered`].
    fn gather(&mut self, first: Settlement, queued: &mut mpsc::UnboundedReceiver<Settlement>) {
        self.gathered.push(first);
        while self.gathered.len() < SETTLE_BATCH {
            match queued.try_recv() {
                Ok(settlement) => self.gathered.push(settlement),
                Err(_) => break,
            }
        }
    }

    /// Send what gathered, as [`acks`] plans it. Settlements of a lost connection's deliveries
    /// are dropped: there is nothing to send them on, and the broker delivers those again.
    async fn send_gathered(&mut self) {
        let number = self.number;
        let current = std::mem::take(&mut self.gathered)
            .into_iter()
            .filter(|s| s.delivery.connection == number)
            .map(|s| (s.delivery.tag, s.kind, s.delivery.acker));
        let plan = self.settled.plan(current);
        for send in plan {
            apply(match send {
                acks::Send::Multiple(acker) => Settle::AckThrough(acker),
                acks::Send::One(acker, kind) => Settle::new(acker, kind),
            })
            .await;
        }
        self.pace.sent();
    }
}

async fn close_connection(connection: &Connection) {
    if connection.status().connected() {
        let close = connection.close(200, "OK".into());
        if timeout(CLOSE_WITHIN, close).await.is_err() {
            tracing::warn!("RabbitMQ did not answer the close within {CLOSE_WITHIN:?}; dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[tokio::test]
    async fn a_settlement_lapin_never_finishes_is_given_up_after_its_bound() {
        let began = Instant::now();
        let sent = bounded(Duration::from_millis(50), std::future::pending()).await;
        assert!(matches!(sent, Ok(false)), "{sent:?}");
        assert!(began.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn settlements_wait_for_the_pace_only_within_half_the_prefetch_window() {
        assert_eq!(flush_at(0), SETTLE_BATCH);
        assert_eq!(flush_at(1), 1);
        assert_eq!(flush_at(2), 1);
        assert_eq!(flush_at(5), 3);
        assert_eq!(flush_at(100), 50);
        assert_eq!(flush_at(u16::MAX), SETTLE_BATCH);
    }

    #[tokio::test]
    async fn a_settlement_sent_in_time_is_reported_as_sent() {
        let sent = bounded(Duration::from_millis(50), async { Ok(true) }).await;
        assert!(matches!(sent, Ok(true)), "{sent:?}");
    }
}

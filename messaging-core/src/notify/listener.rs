//! The notification listener: endpoints per priority, pools, filters, requeue, batches.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::time::{sleep_until, Instant};
use tracing::{Instrument, Span};

use super::filter::NotificationFilter;
use super::notification::{Notification, NotificationMetadata};
use crate::context::{default_serializer, Context, SharedSerializer};
use crate::driver::{
    Acknowledger, FastHashMap, Feature, IncomingNotification, NotificationSource, NotifyAddress,
};
use crate::error::{MessagingError, Result};
use crate::priority::Priority;
use crate::service::{self, Gate, Running, ServiceHandle};
use crate::target::Target;
use crate::telemetry::{self, Busy, ListenerMeters};
use crate::transport::NotificationTransport;
use crate::wire::{DuplicateFilter, NotificationMessage};

/// The `event_type` label of the dispatch duration of a batch.
const BATCH_EVENT_TYPE: &str = "_batch";

/// What an endpoint did with a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationResult {
    /// Done: acknowledge it.
    Handled,
    /// Deliver it again later (only if the listener allows requeue).
    Requeue,
}

type BatchHandler =
    Arc<dyn Fn(Vec<Notification>) -> BoxFuture<'static, NotificationResult> + Send + Sync>;

pub(crate) type EventHandler =
    Arc<dyn Fn(Notification) -> BoxFuture<'static, NotificationResult> + Send + Sync>;

/// Handlers for some priorities, and an optional filter.
///
/// ```
/// use messaging_core::{NotificationEndpoint, NotificationResult, Priority};
///
/// let endpoint = NotificationEndpoint::new()
///     .on(Priority::Info, |n| async move {
///         println!("{} from {}", n.event_type, n.publisher_id);
///         NotificationResult::Handled
///     })
///     .on_batch(Priority::Sample, |batch| async move {
///         println!("{} samples", batch.len());
///         NotificationResult::Handled
///     });
/// ```
#[derive(Clone, Default)]
pub struct NotificationEndpoint {
    handlers: FastHashMap<Priority, BatchHandler>,
    /// Handlers of one event type at one priority (typed events).
    events: Vec<(Priority, &'static str, EventHandler)>,
    filter: Option<NotificationFilter>,
}

impl NotificationEndpoint {
    /// An endpoint with no handlers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Handle notifications of `priority` one at a time.
    pub fn on<F, Fut>(mut self, priority: Priority, handler: F) -> Self
    where
        F: Fn(Notification) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = NotificationResult> + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.handlers.insert(
            priority,
            Arc::new(move |batch: Vec<Notification>| {
                let handler = handler.clone();
                Box::pin(async move {
                    let mut result = NotificationResult::Handled;
                    for notification in batch {
                        if handler(notification).await == NotificationResult::Requeue {
                            result = NotificationResult::Requeue;
                        }
                    }
                    result
                })
            }),
        );
        self
    }

    /// Handle notifications of every priority one at a time.
    pub fn on_all<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Notification) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = NotificationResult> + Send + 'static,
    {
        for priority in Priority::ALL {
            self = self.on(priority, handler.clone());
        }
        self
    }

    /// Handle notifications of `priority` in batches (see
    /// [`NotificationListener::batch`]); outside batch mode the batches have one element.
    pub fn on_batch<F, Fut>(mut self, priority: Priority, handler: F) -> Self
    where
        F: Fn(Vec<Notification>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = NotificationResult> + Send + 'static,
    {
        self.handlers
            .insert(priority, Arc::new(move |batch| Box::pin(handler(batch))));
        self
    }

    /// Hand notifications of `priority` and `event_type` to `handler`, one at a time, before
    /// (and instead of) the priority's handler (for typed events, see
    /// [`on_event`](Self::on_event)).
    pub(crate) fn route_event(
        mut self,
        priority: Priority,
        event_type: &'static str,
        handler: EventHandler,
    ) -> Self {
        self.events.retain(|e| (e.0, e.1) != (priority, event_type));
        self.events.push((priority, event_type, handler));
        self
    }

    /// Only pass notifications that `filter` accepts to this endpoint.
    pub fn filter(mut self, filter: NotificationFilter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// The priorities this endpoint has handlers for.
    fn priorities(&self) -> impl Iterator<Item = Priority> + '_ {
        let typed = self.events.iter().map(|(priority, ..)| *priority);
        self.handlers.keys().copied().chain(typed)
    }

    /// Run this endpoint's handlers for the notifications it accepts: each of an event type
    /// with its own handler goes there, the rest to the priority's handler. `None` if no
    /// handler took any.
    async fn handle(
        &self,
        priority: Priority,
        mut batch: Vec<Notification>,
    ) -> Option<NotificationResult> {
        if let Some(filter) = &self.filter {
            batch.retain(|n| filter.accepts(n));
        }
        let mut result = None;
        if !self.events.is_empty() {
            let mut rest = Vec::with_capacity(batch.len());
            for notification in batch {
                match self.event_handler(priority, &notification.event_type) {
                    Some(handler) => result = merged(result, handler(notification).await),
                    None => rest.push(notification),
                }
            }
            batch = rest;
        }
        match self.handlers.get(&priority) {
            Some(handler) if !batch.is_empty() => result = merged(result, handler(batch).await),
            _ => batch.iter().for_each(
                |n| tracing::debug!(event_type = %n.event_type, "no handler for this event type"),
            ),
        }
        result
    }

    fn event_handler(&self, priority: Priority, event_type: &str) -> Option<&EventHandler> {
        self.events
            .iter()
            .find(|(p, e, _)| *p == priority && *e == event_type)
            .map(|(.., handler)| handler)
    }
}

/// The result of a batch whose handlers returned `earlier` and then `next`: requeued if any
/// handler asked for it.
fn merged(
    earlier: Option<NotificationResult>,
    next: NotificationResult,
) -> Option<NotificationResult> {
    Some(match earlier {
        Some(NotificationResult::Requeue) => NotificationResult::Requeue,
        _ => next,
    })
}

/// Builds and starts a notification listener.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), messaging_core::MessagingError> {
/// use messaging_core::*;
///
/// let transport = get_notification_transport("memory://").await?;
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// let listener = NotificationListener::new(transport.clone())
///     .target(Target::topic("notifications"))
///     .pool("billing")
///     .endpoint(NotificationEndpoint::new().on(Priority::Info, move |n| {
///         let tx = tx.clone();
///         async move { tx.send(n.event_type).unwrap(); NotificationResult::Handled }
///     }))
///     .start()
///     .await?;
/// Notifier::new(transport, "compute.host1").info(&Context::new(), "instance.boot", &1).await?;
/// assert_eq!(rx.recv().await.as_deref(), Some("instance.boot"));
/// listener.shutdown().await;
/// # Ok(()) }
/// ```
pub struct NotificationListener {
    transport: NotificationTransport,
    targets: Vec<Target>,
    endpoints: Vec<NotificationEndpoint>,
    pool: Option<String>,
    allow_requeue: bool,
    batch: Option<(usize, Duration)>,
    max_concurrency: usize,
    serializer: SharedSerializer,
    duplicates: DuplicateFilter,
}

impl NotificationListener {
    /// A listener with no targets or endpoints yet.
    pub fn new(transport: NotificationTransport) -> Self {
        Self {
            transport,
            targets: Vec::new(),
            endpoints: Vec::new(),
            pool: None,
            allow_requeue: false,
            batch: None,
            max_concurrency: crate::rpc::DEFAULT_MAX_CONCURRENCY,
            serializer: default_serializer(),
            duplicates: DuplicateFilter::default(),
        }
    }

    /// Listen to a topic (and exchange). May be called several times.
    pub fn target(mut self, target: Target) -> Self {
        self.targets.push(target);
        self
    }

    /// Add an endpoint. Every endpoint with a handler for the priority gets the notification.
    pub fn endpoint(mut self, endpoint: NotificationEndpoint) -> Self {
        self.endpoints.push(endpoint);
        self
    }

    /// Join a pool: each pool gets one copy of every notification, its members share them.
    pub fn pool(mut self, pool: impl Into<String>) -> Self {
        self.pool = Some(pool.into());
        self
    }

    /// Let endpoints return [`NotificationResult::Requeue`]; otherwise such notifications are
    /// acknowledged with a warning.
    pub fn allow_requeue(mut self, allow: bool) -> Self {
        self.allow_requeue = allow;
        self
    }

    /// Deliver notifications in batches of up to `size`, waiting at most `timeout` for a batch
    /// to fill.
    pub fn batch(mut self, size: usize, timeout: Duration) -> Self {
        self.batch = Some((size.max(1), timeout));
        self
    }

    /// How many notifications (or batches) are handled at once.
    ///
    /// A handler runs on the listener's own task until it first waits, then in a task of its
    /// own, so one that finishes without waiting costs no task. Long computations belong in
    /// `tokio::task::spawn_blocking`: a handler that held the listener's task for more than
    /// 0.1 ms sends the next hundred straight to tasks of their own, where they run in
    /// parallel on the runtime's workers.
    pub fn max_concurrency(mut self, limit: usize) -> Self {
        self.max_concurrency = limit.max(1);
        self
    }

    /// Drop a notification whose `_unique_id` is among the last `count` handled within `age`
    /// (a redelivery, or a send retried after a lost confirm); by default the last
    /// [`DuplicateFilter::DEFAULT_COUNT`] within [`DuplicateFilter::DEFAULT_AGE`]. Dropped
    /// duplicates are counted by [`NotificationTransport::duplicates_suppressed`].
    pub fn duplicate_window(mut self, count: usize, age: Duration) -> Self {
        self.duplicates = DuplicateFilter::new(count, age);
        self
    }

    /// Convert payloads and contexts with `serializer`.
    pub fn serializer(mut self, serializer: SharedSerializer) -> Self {
        self.serializer = serializer;
        self
    }

    /// Subscribe and start handling.
    pub async fn start(self) -> Result<ServiceHandle> {
        let capabilities = self.transport.capabilities();
        let driver = self.transport.driver_name();
        if self.allow_requeue && !capabilities.supports(Feature::Requeue) {
            return Err(MessagingError::unsupported(driver, "requeue"));
        }
        if self.pool.is_some() && !capabilities.supports(Feature::Pools) {
            return Err(MessagingError::unsupported(driver, "listener pools"));
        }
        if self.targets.is_empty() {
            return Err(MessagingError::InvalidTarget(
                "a listener needs at least one target".into(),
            ));
        }
        let mut priorities: Vec<Priority> = self
            .endpoints
            .iter()
            .flat_map(NotificationEndpoint::priorities)
            .collect();
        priorities.sort();
        priorities.dedup();
        if priorities.is_empty() {
            return Err(MessagingError::InvalidTarget(
                "a listener needs an endpoint with a handler".into(),
            ));
        }
        let mut subscriptions = Vec::new();
        let mut topics = Vec::new();
        for target in &self.targets {
            let topic = target.require_topic("listen to notifications")?;
            topics.push(topic);
            let exchange = target
                .exchange
                .clone()
                .unwrap_or_else(|| self.transport.control_exchange().to_owned());
            subscriptions.extend(priorities.iter().map(|&priority| NotifyAddress {
                exchange: exchange.clone(),
                topic: topic.to_owned(),
                priority,
            }));
        }
        let source = self
            .transport
            .driver()
            .listen(&subscriptions, self.pool.as_deref())
            .await?;
        let topics = topics.join(",");
        let batch = self.batch.filter(|(size, _)| *size > 1);
        let dispatcher = Arc::new(Dispatcher {
            endpoints: self.endpoints,
            allow_requeue: self.allow_requeue,
            serializer: self.serializer,
            unacked: self.transport.telemetry().meters.unacked(&topics),
            transport: self.transport,
            topics,
            pool: self.pool,
            batched: batch.is_some(),
        });
        let duplicates = Arc::new(Mutex::new(self.duplicates));
        Ok(service::spawn(self.max_concurrency, move |gate| {
            consume(source, dispatcher, gate, batch, duplicates)
        }))
    }
}

async fn consume(
    mut source: Box<dyn NotificationSource>,
    dispatcher: Arc<Dispatcher>,
    mut gate: Gate,
    batch: Option<(usize, Duration)>,
    duplicates: Arc<Mutex<DuplicateFilter>>,
) {
    let mut running = Running::run_here_first();
    while let Some((first, slot)) = gate.admit(|| source.next()).await {
        let mut taken = vec![dispatcher.take(first)];
        if let Some((size, timeout)) = batch {
            taken[0].incoming.acker.batched().await;
            let deadline = Instant::now() + timeout;
            while taken.len() < size {
                let next = async {
                    tokio::select! {
                        incoming = source.next() => incoming,
                        _ = sleep_until(deadline) => None,
                    }
                };
                match gate.until_stopped(next).await.flatten() {
                    Some(mut incoming) => {
                        incoming.acker.batched().await;
                        taken.push(dispatcher.take(incoming));
                    }
                    None => break,
                }
            }
        }
        // Rejected and duplicate notifications are settled here and taken out (rare: a
        // `remove` each); the rest go to the handlers.
        let mut index = 0;
        while let Some(next) = taken.get(index) {
            let incoming = &next.incoming;
            if !dispatcher.admits(incoming) {
                // Acknowledged so that it is not redelivered forever, and not remembered as
                // seen: a forged message must not shadow a genuine one with the same id.
                if let Err(error) = taken.remove(index).incoming.acker.ack().await {
                    tracing::warn!(%error, "could not acknowledge a rejected notification");
                }
                continue;
            }
            let duplicate = incoming.unique_id.as_deref().is_some_and(|id| {
                duplicates
                    .lock()
                    .expect("duplicate filter poisoned")
                    .contains(id)
            });
            if duplicate {
                tracing::debug!(unique_id = ?incoming.unique_id, "acknowledging a duplicate notification");
                dispatcher.transport.count_duplicate();
                taken
                    .remove(index)
                    .split()
                    .1
                    .settle(NotificationResult::Handled, &duplicates)
                    .await;
                continue;
            }
            index += 1;
        }
        let dispatcher = dispatcher.clone();
        let duplicates = duplicates.clone();
        running
            .start(Box::pin(async move {
                dispatcher.handle(taken, &duplicates).await;
                drop(slot);
            }))
            .await;
    }
    // Handlers still running acknowledge through the source: let them finish first.
    running.finish().await;
    source.close().await;
}

/// A notification taken from the source: counted as unacknowledged until it is settled.
struct Taken {
    incoming: IncomingNotification,
    meters: Arc<ListenerMeters>,
    unacked: Busy,
}

impl Taken {
    /// The message, and what settles its delivery.
    fn split(self) -> (NotificationMessage, Settlement) {
        let settlement = Settlement {
            acker: self.incoming.acker,
            unique_id: self.incoming.unique_id,
            meters: self.meters,
            _unacked: self.unacked,
        };
        (*self.incoming.message, settlement)
    }
}

/// What settles one delivered notification once its message has been handed to endpoints.
struct Settlement {
    acker: Box<dyn Acknowledger>,
    unique_id: Option<String>,
    meters: Arc<ListenerMeters>,
    _unacked: Busy,
}

impl Settlement {
    /// Acknowledge or requeue; an acknowledged id is remembered, so a redelivery of it is
    /// dropped.
    async fn settle(self, result: NotificationResult, duplicates: &Mutex<DuplicateFilter>) {
        let outcome = match result {
            NotificationResult::Handled => {
                if let Some(id) = &self.unique_id {
                    duplicates
                        .lock()
                        .expect("duplicate filter poisoned")
                        .remember(id);
                }
                self.acker.ack().await
            }
            NotificationResult::Requeue => self.acker.requeue().await,
        };
        match (outcome, result) {
            (Ok(()), NotificationResult::Handled) => self.meters.acked.increment(1),
            (Ok(()), NotificationResult::Requeue) => self.meters.requeued.increment(1),
            (Err(error), _) => tracing::warn!(%error, "could not settle a notification"),
        }
    }
}

struct Dispatcher {
    endpoints: Vec<NotificationEndpoint>,
    allow_requeue: bool,
    serializer: SharedSerializer,
    /// For its signing settings and its telemetry.
    transport: NotificationTransport,
    /// The targets' topics, comma-separated (spans and metric labels).
    topics: String,
    pool: Option<String>,
    /// Whether notifications come in batches.
    batched: bool,
    unacked: metrics::Gauge,
}

impl Dispatcher {
    /// Count a notification just taken from the source.
    fn take(&self, incoming: IncomingNotification) -> Taken {
        let meters = &self.transport.telemetry().meters;
        let meters = meters.listened(&self.topics, &incoming.message.event_type);
        meters.received.increment(1);
        Taken {
            incoming,
            meters,
            unacked: Busy::on(&self.unacked),
        }
    }

    /// False if the notification fails its signature check and the transport rejects such
    /// notifications.
    fn admits(&self, incoming: &IncomingNotification) -> bool {
        let Some(guard) = self.transport.guard() else {
            return true;
        };
        let check = guard.signing().verify_notification(&incoming.message);
        guard.admit(check, "notification", &incoming.message.event_type)
    }

    /// The notification endpoints see (moved out of the message, not copied).
    fn convert(&self, message: NotificationMessage) -> Result<Notification> {
        let context = self
            .serializer
            .deserialize_context(Context(message.context))?;
        Ok(Notification {
            priority: message.priority,
            publisher_id: message.publisher_id,
            event_type: message.event_type,
            payload: self
                .serializer
                .deserialize_entity(&context, message.payload)?,
            context,
            metadata: NotificationMetadata {
                message_id: message.message_id,
                timestamp: message.timestamp,
            },
        })
    }

    /// Handle what was taken in a dispatch span: for one notification the child of its
    /// sender's span, for a batch a span linked to each sender's.
    async fn handle(&self, mut taken: Vec<Taken>, duplicates: &Mutex<DuplicateFilter>) {
        let Some(first) = taken.first() else {
            return;
        };
        let started = Instant::now();
        let duration = match self.batched {
            false => first.meters.clone(),
            true => {
                let meters = &self.transport.telemetry().meters;
                meters.listened(&self.topics, BATCH_EVENT_TYPE)
            }
        };
        let (span, trace) = self.span(&mut taken);
        let dispatch = self.dispatch(taken, duplicates).instrument(span);
        telemetry::scope(trace, dispatch).await;
        duration
            .duration
            .record(telemetry::seconds(started.elapsed()));
    }

    /// The dispatch span of what was taken (its trace context keys taken out of the
    /// messages), and the trace context its handlers run in.
    fn span(&self, taken: &mut [Taken]) -> (Span, Option<telemetry::TraceContext>) {
        let system = self.transport.telemetry().system;
        let pool = self.pool.as_deref();
        if let [one] = taken {
            if !self.batched {
                let message = &mut one.incoming.message;
                let remote = telemetry::extract(&mut message.context);
                let span = telemetry::notification_dispatch(system, &self.topics, pool, message);
                let trace = telemetry::incoming(&span, remote);
                return (span, trace);
            }
        }
        let span = telemetry::batch_dispatch(system, &self.topics, pool, taken.len());
        for one in taken.iter_mut() {
            if let Some(remote) = telemetry::extract(&mut one.incoming.message.context) {
                telemetry::link(&span, &remote);
            }
        }
        let trace = telemetry::incoming(&span, None);
        (span, trace)
    }

    /// Handle a batch: per priority, every endpoint gets what it accepts; the group is
    /// requeued if any endpoint asked for it, else acknowledged.
    async fn dispatch(&self, mut batch: Vec<Taken>, duplicates: &Mutex<DuplicateFilter>) {
        // One notification (no batching): no groups to build.
        if batch.len() == 1 {
            let taken = batch.pop().expect("one notification");
            if let Some((notification, settlement)) =
                self.convert_or_settle(taken, duplicates).await
            {
                let result = self
                    .run_endpoints(notification.priority, vec![notification])
                    .await;
                settlement.settle(result, duplicates).await;
            }
            return;
        }
        let mut groups: Vec<(Priority, Vec<Settlement>, Vec<Notification>)> = Vec::new();
        for taken in batch {
            let Some((notification, settlement)) = self.convert_or_settle(taken, duplicates).await
            else {
                continue;
            };
            let priority = notification.priority;
            match groups.iter_mut().find(|(p, ..)| *p == priority) {
                Some((_, settlements, notifications)) => {
                    settlements.push(settlement);
                    notifications.push(notification);
                }
                None => groups.push((priority, vec![settlement], vec![notification])),
            }
        }
        for (priority, settlements, notifications) in groups {
            let result = self.run_endpoints(priority, notifications).await;
            for settlement in settlements {
                settlement.settle(result, duplicates).await;
            }
        }
    }

    /// The notification of `taken` as endpoints see it, and what settles it; `None` once it is
    /// settled because the serializer rejected it.
    async fn convert_or_settle(
        &self,
        taken: Taken,
        duplicates: &Mutex<DuplicateFilter>,
    ) -> Option<(Notification, Settlement)> {
        let (message, settlement) = taken.split();
        match self.convert(message) {
            Ok(notification) => Some((notification, settlement)),
            Err(error) => {
                tracing::warn!(%error, "dropping a notification the serializer rejected");
                settlement
                    .settle(NotificationResult::Handled, duplicates)
                    .await;
                None
            }
        }
    }

    /// Hand notifications of one priority to every endpoint: requeued if any asked for it
    /// (and requeueing is allowed), else handled.
    async fn run_endpoints(
        &self,
        priority: Priority,
        mut notifications: Vec<Notification>,
    ) -> NotificationResult {
        let mut result = NotificationResult::Handled;
        for (index, endpoint) in self.endpoints.iter().enumerate() {
            // The last endpoint takes the notifications, the others get copies.
            let batch = if index + 1 == self.endpoints.len() {
                std::mem::take(&mut notifications)
            } else {
                notifications.clone()
            };
            let handled = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
                endpoint.handle(priority, batch),
            ))
            .await;
            match handled {
                Ok(Some(NotificationResult::Requeue)) => result = NotificationResult::Requeue,
                Ok(_) => {}
                Err(_) => {
                    tracing::error!(%priority, "a notification endpoint panicked; acknowledging")
                }
            }
        }
        if result == NotificationResult::Requeue && !self.allow_requeue {
            tracing::warn!(%priority, "an endpoint asked for requeue, which this listener does not allow");
            result = NotificationResult::Handled;
        }
        result
    }
}

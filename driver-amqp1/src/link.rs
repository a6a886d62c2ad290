//! One AMQP 1.0 connection per transport, and the links on it.
//!
//! * The connection is opened on first use and re-opened (failover, backoff) when it died.
//! * Every link gets its own session: on RabbitMQ an attach error ends the whole session, so a
//!   refused link never takes others down with it.
//! * Sender links are cached per address, re-attached after a reconnect and detached once idle
//!   for `default_sender_link_timeout`. Sends are pipelined: the link is held only while the
//!   transfer is queued (which waits for credit); the outcome is awaited without it.
//! * Receiver links run in tasks that re-attach them after any failure and feed a channel.
//! * Every detach and close runs under `close_timeout`; sessions are never awaited on `end()`
//!   (RabbitMQ 3.10 sometimes never answers it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use fe2o3_amqp::link::delivery::{Delivery, DeliveryFut, DeliveryInfo};
use fe2o3_amqp::link::receiver::CreditMode;
use fe2o3_amqp::link::{IllegalLinkStateError, RecvError, SendError};
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::definitions::SenderSettleMode;
use fe2o3_amqp::types::messaging::{Body, Outcome, Source};
use fe2o3_amqp::types::primitives::Value;
use fe2o3_amqp::{Receiver, Sendable, Sender, Session};
use messaging_core::driver::retry::{with_retry, Describe, Failure};
use messaging_core::driver::{InFlight, RpcAddress, SendOptions};
use messaging_core::telemetry;
use messaging_core::{MessagingError, Result, Retry, TransportUrl};
use serde_amqp::lazy::LazyValue;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::config::{AddressingMode, Amqp1Config};
use crate::connection::{Connector, PeerInfo};
use crate::message::{self, AmqpMessage};
use crate::mode::{Endpoints, PeerMode};
use crate::settle::{Disposal, Settlements, Settler};

/// A received message and what settles it.
pub(crate) struct Received {
    pub info: DeliveryInfo,
    pub message: AmqpMessage,
    pub settler: Settler,
}

impl Received {
    /// Accept (settle) the delivery; false if the link is gone (the peer will redeliver it).
    pub fn accept(&self) -> bool {
        self.settler.settle(self.info.clone(), Disposal::Accept)
    }

    /// Release the delivery: the peer may deliver it again. (Never `modified`: it ends the
    /// session on RabbitMQ 3.x.)
    pub fn release(&self) -> bool {
        self.settler.settle(self.info.clone(), Disposal::Release)
    }
}

/// Told the source address after every attach.
pub(crate) type OnAttach = Box<dyn Fn(&str) + Send + Sync>;

/// What a receiver link consumes.
pub(crate) struct ReceiverSpec {
    /// The source address; `None` asks the peer for a dynamic node.
    pub source: Option<String>,
    /// Link credit (refilled as deliveries are settled).
    pub credit: u32,
    /// Ask the peer to send pre-settled (for replies: nothing to acknowledge).
    pub presettled: bool,
    /// Told the source address after every attach (a dynamic one changes on reconnect).
    pub on_attach: Option<OnAttach>,
    /// Deliveries still to be settled before the link may detach.
    pub in_flight: Option<InFlight>,
}

/// Failing fast: how long to wait for credit before telling that nobody consumes `to`.
#[derive(Debug, Clone)]
pub(crate) struct FailFast {
    pub window: Duration,
    pub to: RpcAddress,
}

/// How a message is sent.
#[derive(Debug, Clone)]
pub(crate) struct SendSpec {
    /// Pre-settled (fire and forget once transferred) or wait for the outcome.
    pub settled: bool,
    /// When the operation began (a call's start, before connecting): errors count from it.
    pub started: Instant,
    /// Give up then.
    pub deadline: Instant,
    /// End with `NoServer` when no credit comes within a window.
    pub fail_fast: Option<FailFast>,
    /// How often to try again after a connection failure or a `released`/`modified` outcome.
    pub retry: Retry,
    /// For calls: the message id (a send that times out is a call timeout).
    pub call_id: Option<String>,
    /// What is sent, for errors (`cast`, `notification`, …).
    pub what: &'static str,
}

impl SendSpec {
    /// A send (not a call) that starts now and may take `timeout`.
    pub fn within(timeout: Duration, settled: bool, retry: Retry, what: &'static str) -> Self {
        let started = Instant::now();
        Self {
            settled,
            started,
            deadline: started + timeout,
            fail_fast: None,
            retry,
            call_id: None,
            what,
        }
    }
}

struct LiveSender {
    id: u64,
    generation: u64,
    sender: Sender,
    session: SessionHandle<()>,
}

#[derive(Default)]
struct SenderSlot {
    link: tokio::sync::Mutex<Option<LiveSender>>,
    last_used: Mutex<Option<std::time::Instant>>,
}

struct Live {
    handle: fe2o3_amqp::connection::ConnectionHandle<()>,
}

/// One connection, its sessions and links.
pub(crate) struct LinkManager {
    config: Arc<Amqp1Config>,
    connector: Connector,
    vhost: Option<String>,
    conn: tokio::sync::Mutex<Option<Live>>,
    generation: AtomicU64,
    endpoints: OnceLock<Arc<Endpoints>>,
    peer: Mutex<Option<PeerInfo>>,
    senders: Mutex<HashMap<String, Arc<SenderSlot>>>,
    next_link: AtomicU64,
    closed: AtomicBool,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for LinkManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkManager")
            .field("connector", &self.connector)
            .field("generation", &self.generation)
            .field("peer", &self.peer)
            .field("mode", &self.endpoints.get().map(|e| e.mode()))
            .finish()
    }
}

fn attach_name(kind: &str, address: &str) -> String {
    format!(
        "openstack.org/om/{kind}/[{address}]/{}",
        messaging_core::wire::new_id()
    )
}

impl LinkManager {
    /// A manager for `url`; nothing is connected yet.
    pub fn new(url: &TransportUrl, config: Arc<Amqp1Config>) -> Result<Arc<Self>> {
        let connector = Connector::new(url, config.clone())?;
        let manager = Arc::new(Self {
            vhost: url.virtual_host.clone(),
            connector,
            conn: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            endpoints: OnceLock::new(),
            peer: Mutex::new(None),
            senders: Mutex::new(HashMap::new()),
            next_link: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            shutdown: watch::channel(false).0,
            config,
        });
        let explicit = match manager.config.addressing_mode {
            AddressingMode::Dynamic => None,
            mode => Some(PeerMode::decide(mode, None)),
        };
        if let Some(mode) = explicit {
            let _ = manager.endpoints.set(Arc::new(Endpoints::new(
                mode,
                &manager.config,
                manager.vhost.as_deref(),
            )));
        }
        tokio::spawn(purge_idle_senders(Arc::downgrade(&manager)));
        Ok(manager)
    }

    /// The options.
    pub fn config(&self) -> &Amqp1Config {
        &self.config
    }

    /// True once closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            Err(MessagingError::Closed("transport"))
        } else {
            Ok(())
        }
    }

    /// The endpoints of the peer's mode; connects first when the mode must be detected.
    pub async fn endpoints(
        &self,
        retry: Retry,
        deadline: Option<Instant>,
    ) -> Result<Arc<Endpoints>> {
        if let Some(endpoints) = self.endpoints.get() {
            return Ok(endpoints.clone());
        }
        // Boxed: connecting is a large future that every send would carry (and copy).
        drop(Box::pin(self.connected(retry, deadline)).await?);
        Ok(self
            .endpoints
            .get()
            .expect("the mode is decided on connecting")
            .clone())
    }

    /// The live connection (opened or re-opened as needed), locked.
    async fn connected(
        &self,
        retry: Retry,
        deadline: Option<Instant>,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<Live>>> {
        self.check_open()?;
        let mut guard = match deadline {
            Some(d) => tokio::time::timeout_at(d, self.conn.lock())
                .await
                .map_err(|_| {
                    MessagingError::ConnectionFailure("timed out waiting for the connection".into())
                })?,
            None => self.conn.lock().await,
        };
        self.check_open()?;
        if guard.as_ref().is_some_and(|live| !live.handle.is_closed()) {
            return Ok(guard);
        }
        let reconnecting = guard.take().is_some();
        if reconnecting {
            tracing::warn!("AMQP 1.0 connection lost; reconnecting");
        }
        let mut shutdown = self.shutdown.subscribe();
        let connect = self.connector.connect(retry, deadline);
        let connect = async {
            match reconnecting {
                true => {
                    telemetry::reconnect(crate::NAME, crate::SYSTEM, "connection", connect).await
                }
                false => connect.await,
            }
        };
        let opened = tokio::select! {
            opened = connect => opened?,
            _ = shutdown.wait_for(|s| *s) => return Err(MessagingError::Closed("transport")),
        };
        let mode = PeerMode::decide(self.config.addressing_mode, opened.peer.product.as_deref());
        let endpoints = self
            .endpoints
            .get_or_init(|| Arc::new(Endpoints::new(mode, &self.config, self.vhost.as_deref())));
        if endpoints.mode() != mode {
            tracing::warn!(
                host = %opened.host,
                decided = ?endpoints.mode(),
                peer = ?mode,
                "this peer would need another mode than the first one; keeping the first"
            );
        }
        tracing::info!(host = %opened.host, product = ?opened.peer.product, mode = ?endpoints.mode(), "connected");
        *self.peer.lock().expect("peer poisoned") = Some(opened.peer);
        self.generation.fetch_add(1, Ordering::AcqRel);
        *guard = Some(Live {
            handle: opened.handle,
        });
        Ok(guard)
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A new session on the live connection, and the connection's generation.
    async fn session(
        &self,
        retry: Retry,
        deadline: Option<Instant>,
    ) -> Result<(SessionHandle<()>, u64)> {
        let mut guard = self.connected(retry, deadline).await?;
        let live = guard.as_mut().expect("connected");
        let limit = Instant::now() + self.config.connect_timeout();
        let limit = deadline.map_or(limit, |deadline| deadline.min(limit));
        let session = tokio::time::timeout_at(limit, Session::begin(&mut live.handle))
            .await
            .map_err(|_| MessagingError::ConnectionFailure("no answer to Begin".into()))?
            .map_err(|e| {
                MessagingError::ConnectionFailure(format!("cannot begin a session: {e}"))
            })?;
        Ok((session, self.generation()))
    }

    /// True if the connection of `generation` is still the live one.
    async fn connection_alive(&self, generation: u64) -> bool {
        if self.generation() != generation {
            return false;
        }
        match self.conn.try_lock() {
            Ok(guard) => guard.as_ref().is_some_and(|live| !live.handle.is_closed()),
            Err(_) => true,
        }
    }

    fn slot(&self, address: &str) -> Arc<SenderSlot> {
        self.senders
            .lock()
            .expect("senders poisoned")
            .entry(address.to_owned())
            .or_default()
            .clone()
    }

    /// Send `message` to `address` as `spec` says: pre-settled, or awaiting `accepted`
    /// (`released`/`modified` are retried within the budget, `rejected` fails).
    pub async fn send(&self, address: &str, message: AmqpMessage, spec: &SendSpec) -> Result<()> {
        // Built once and sent by reference: a retry sends it again without a copy.
        let sendable = Sendable::builder()
            .message(message)
            .settled(spec.settled)
            .build();
        // The core loop, paced by the configured back-off, ends by `spec.deadline`; each
        // attempt also bounds itself by it, so a send that runs out of time ends with its own
        // timeout error rather than the loop's.
        let options = SendOptions {
            retry: spec.retry,
            timeout: Some(spec.deadline.saturating_duration_since(Instant::now())),
            ..SendOptions::default()
        };
        let what = Describe::new(|f| write!(f, "{} to `{address}`", spec.what));
        with_retry(&what, &options, self.config.backoff(), || async {
            self.check_open().map_err(Failure::Fatal)?;
            self.try_send(address, &sendable, spec).await
        })
        .await
    }

    fn timed_out(address: &str, spec: &SendSpec, waiting: &str) -> MessagingError {
        match &spec.call_id {
            Some(msg_id) => MessagingError::not_taken(msg_id, spec.started.elapsed()),
            None => MessagingError::SendTimeout {
                what: format!("{} to `{address}` ({waiting})", spec.what),
                after: spec.started.elapsed(),
            },
        }
    }

    /// Wait for `credit` (the link's turn, then the peer's credit) until the send's deadline,
    /// or, failing fast, until the window from now ends: then nobody consumes the address.
    async fn until_credit<F: std::future::Future>(
        address: &str,
        spec: &SendSpec,
        credit: F,
    ) -> std::result::Result<F::Output, Failure> {
        let window_ends = spec
            .fail_fast
            .as_ref()
            .map(|fail_fast| Instant::now() + fail_fast.window)
            .filter(|ends| *ends < spec.deadline);
        tokio::time::timeout_at(window_ends.unwrap_or(spec.deadline), credit)
            .await
            .map_err(|_| {
                Failure::Fatal(match (&spec.fail_fast, window_ends) {
                    (Some(fail_fast), Some(_)) => fail_fast.to.no_server(spec.started.elapsed()),
                    _ => Self::timed_out(
                        address,
                        spec,
                        "no credit from the peer (no consumer attached?)",
                    ),
                })
            })
    }

    /// One attempt: queue the transfer, then judge its outcome.
    async fn try_send(
        &self,
        address: &str,
        sendable: &Sendable<Body<Value>>,
        spec: &SendSpec,
    ) -> std::result::Result<(), Failure> {
        let slot = self.slot(address);
        let (outcome, link_id) = self.queue_transfer(address, &slot, sendable, spec).await?;
        match self
            .await_outcome(address, &slot, link_id, outcome, spec)
            .await?
        {
            Ok(outcome) => judge_outcome(address, spec, outcome),
            Err(error) => {
                let mut guard = slot.link.lock().await;
                if guard.as_ref().is_some_and(|l| l.id == link_id) {
                    if let Some(broken) = guard.take() {
                        self.detach_sender_later(broken);
                    }
                }
                Err(Failure::Retry(send_error(address, &error)))
            }
        }
    }

    /// Queue the transfer on the link of `slot`, attaching one first when there is none or it
    /// belongs to a lost connection: the outcome to come, and the link's id.
    async fn queue_transfer(
        &self,
        address: &str,
        slot: &SenderSlot,
        sendable: &Sendable<Body<Value>>,
        spec: &SendSpec,
    ) -> std::result::Result<(PendingOutcome, u64), Failure> {
        let mut guard = Self::until_credit(address, spec, slot.link.lock()).await?;
        let current = self.generation();
        if guard
            .as_ref()
            .is_some_and(|l| l.generation != current || l.session.is_ended())
        {
            if let Some(stale) = guard.take() {
                self.detach_sender_later(stale);
            }
        }
        if guard.is_none() {
            // Boxed: attaching may connect first, a large future that every send would
            // otherwise carry (and copy) while it is rarely needed.
            *guard = Some(Box::pin(self.attach_sender(address, spec)).await?);
        }
        let live = guard.as_mut().expect("attached");
        let queued =
            Self::until_credit(address, spec, live.sender.send_batchable_ref(sendable)).await;
        *slot.last_used.lock().expect("slot poisoned") = Some(std::time::Instant::now());
        match queued? {
            Err(error) => {
                let broken = guard.take().expect("attached");
                self.detach_sender_later(broken);
                Err(Failure::Retry(send_error(address, &error)))
            }
            Ok(outcome) => Ok((outcome, live.id)),
        }
    }

    /// Wait for the outcome of a transfer on link `link_id` until the send's deadline.
    async fn await_outcome(
        &self,
        address: &str,
        slot: &SenderSlot,
        link_id: u64,
        outcome: PendingOutcome,
        spec: &SendSpec,
    ) -> std::result::Result<std::result::Result<Outcome, SendError>, Failure> {
        // fe2o3 keeps the outcome's sender in the link's unsettled map, which outlives a dead
        // connection: watch the link's session while waiting, or the wait would last until the
        // deadline. The first look is one period from now: an interval's immediate first tick
        // still goes through the timer wheel, which costs about 1 ms per send.
        let mut outcome = std::pin::pin!(outcome);
        let period = Duration::from_millis(250);
        let mut watch = tokio::time::interval_at(Instant::now() + period, period);
        loop {
            tokio::select! {
                outcome = &mut outcome => return Ok(outcome),
                _ = tokio::time::sleep_until(spec.deadline) => {
                    return Err(Failure::Fatal(Self::timed_out(address, spec, "no outcome from the peer")));
                }
                _ = watch.tick() => {
                    if self.link_lost(slot, link_id) {
                        return Err(Failure::Retry(MessagingError::ConnectionFailure(format!(
                            "the connection was lost before the outcome of a {} to `{address}`",
                            spec.what
                        ))));
                    }
                }
            }
        }
    }

    /// True if the sender link `link_id` of `slot` is gone or its session ended (then it is
    /// dropped, so the next send attaches a new one).
    fn link_lost(&self, slot: &SenderSlot, link_id: u64) -> bool {
        let Ok(mut guard) = slot.link.try_lock() else {
            return false;
        };
        match guard.as_ref() {
            Some(live) if live.id == link_id => {
                if live.session.is_ended() {
                    if let Some(dead) = guard.take() {
                        self.detach_sender_later(dead);
                    }
                    true
                } else {
                    false
                }
            }
            _ => true,
        }
    }

    async fn attach_sender(
        &self,
        address: &str,
        spec: &SendSpec,
    ) -> std::result::Result<LiveSender, Failure> {
        let (mut session, generation) = self
            .session(spec.retry, Some(spec.deadline))
            .await
            .map_err(|e| match e {
                MessagingError::Closed(_) | MessagingError::AuthenticationFailure(_) => {
                    Failure::Fatal(e)
                }
                e if crate::tls::is_rejection(&e) => Failure::Fatal(e),
                e => Failure::Retry(e),
            })?;
        let attach = Sender::builder()
            .name(attach_name("sender", address))
            .target(address)
            .sender_settle_mode(SenderSettleMode::Mixed)
            .attach(&mut session);
        match tokio::time::timeout_at(spec.deadline, attach).await {
            Err(_) => Err(Failure::Fatal(Self::timed_out(
                address,
                spec,
                "no answer to the attach of a sender",
            ))),
            Ok(Ok(sender)) => Ok(LiveSender {
                id: self.next_link.fetch_add(1, Ordering::Relaxed),
                generation,
                sender,
                session,
            }),
            Ok(Err(error)) => {
                if self.connection_alive(generation).await {
                    Err(Failure::Fatal(MessagingError::DeliveryFailure(format!(
                        "the peer refused a sender to `{address}`: {error}"
                    ))))
                } else {
                    Err(Failure::Retry(MessagingError::ConnectionFailure(format!(
                        "connection lost attaching a sender to `{address}`: {error}"
                    ))))
                }
            }
        }
    }

    fn detach_sender_later(&self, live: LiveSender) {
        let limit = self.config.close_timeout();
        tokio::spawn(async move {
            let LiveSender {
                sender, session, ..
            } = live;
            let _ = tokio::time::timeout(limit, sender.detach()).await;
            drop(session);
        });
    }

    /// Attach one receiver link: a session of its own, the link, its source address.
    async fn attach_receiver(
        &self,
        spec: &ReceiverSpec,
        retry: Retry,
        deadline: Option<Instant>,
    ) -> Result<(Receiver, SessionHandle<()>, String)> {
        let (mut session, generation) = self.session(retry, deadline).await?;
        let source = match &spec.source {
            Some(address) => Source::builder().address(address.clone()).build(),
            None => Source::builder().dynamic(true).build(),
        };
        let shown = spec.source.clone().unwrap_or_else(|| "rpc-response".into());
        let builder = Receiver::builder()
            .name(attach_name("receiver", &shown))
            .source(source)
            // Credit is granted again only once the window is used up: RabbitMQ 3.x computes
            // the new credit without the transfers it has in flight internally, so a top-up
            // while deliveries are under way lets it overshoot, which fe2o3 treats as fatal.
            .credit_mode(CreditMode::Manual)
            .auto_accept(false);
        let builder = if spec.presettled {
            builder.sender_settle_mode(SenderSettleMode::Settled)
        } else {
            builder.sender_settle_mode(SenderSettleMode::Unsettled)
        };
        let attach = builder.attach(&mut session);
        let mut receiver = tokio::time::timeout(self.config.connect_timeout(), attach)
            .await
            .map_err(|_| {
                MessagingError::ConnectionFailure(format!("no answer to the attach of `{shown}`"))
            })?
            .map_err(|e| {
                let reason = format!("cannot attach a receiver to `{shown}`: {e}");
                if self.generation() == generation {
                    MessagingError::DeliveryFailure(reason)
                } else {
                    MessagingError::ConnectionFailure(reason)
                }
            })?;
        receiver.set_credit(spec.credit).await.map_err(|e| {
            MessagingError::ConnectionFailure(format!("cannot grant credit on `{shown}`: {e}"))
        })?;
        let address = receiver
            .source()
            .as_ref()
            .and_then(|s| s.address.clone())
            .or_else(|| spec.source.clone())
            .ok_or_else(|| {
                MessagingError::DeliveryFailure(
                    "the peer assigned no address to a dynamic receiver".into(),
                )
            })?;
        Ok((receiver, session, address))
    }

    /// Keep a receiver link attached (re-attaching after failures) and feed `sink` until
    /// `stop` turns true, the sink closes, or the transport closes. The first attach's
    /// result (the source address) is returned; a failure there ends the task.
    pub async fn spawn_receiver(
        self: &Arc<Self>,
        spec: ReceiverSpec,
        sink: mpsc::Sender<Received>,
        stop: watch::Receiver<bool>,
    ) -> Result<String> {
        let (ready_tx, ready_rx) = oneshot::channel();
        tokio::spawn(receiver_task(self.clone(), spec, sink, stop, ready_tx));
        ready_rx
            .await
            .unwrap_or(Err(MessagingError::Closed("transport")))
    }

    /// Close every link and the connection, each under `close_timeout`.
    pub async fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.shutdown.send_replace(true);
        let limit = self.config.close_timeout();
        let slots: Vec<Arc<SenderSlot>> = self
            .senders
            .lock()
            .expect("senders poisoned")
            .drain()
            .map(|(_, slot)| slot)
            .collect();
        let detaches = slots.into_iter().map(|slot| async move {
            if let Ok(mut guard) = tokio::time::timeout(limit, slot.link.lock()).await {
                if let Some(live) = guard.take() {
                    let LiveSender {
                        sender, session, ..
                    } = live;
                    let _ = tokio::time::timeout(limit, sender.detach()).await;
                    drop(session);
                }
            }
        });
        futures_util::future::join_all(detaches).await;
        if let Ok(mut guard) = tokio::time::timeout(limit, self.conn.lock()).await {
            if let Some(mut live) = guard.take() {
                let _ = tokio::time::timeout(limit, live.handle.close()).await;
            }
        }
    }

    fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}

impl Drop for LinkManager {
    /// Dropped without `close()` (e.g. an RPC server's transport once its last reply went
    /// out): close gracefully in the background. Detaching each sender link first makes sure
    /// its pre-settled transfers (replies) reached the peer: the detach travels behind them
    /// and the peer answers it only after them. Dropping the connection handle at once could
    /// let its Close overtake them.
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let senders: Vec<LiveSender> = self
            .senders
            .get_mut()
            .map(|senders| senders.drain().collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(_, slot)| slot.link.try_lock().ok().and_then(|mut l| l.take()))
            .collect();
        let conn = self.conn.get_mut().take();
        let limit = self.config.close_timeout();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let detaches = senders.into_iter().map(|live| async move {
                let LiveSender {
                    sender, session, ..
                } = live;
                let _ = tokio::time::timeout(limit, sender.detach()).await;
                drop(session);
            });
            futures_util::future::join_all(detaches).await;
            if let Some(mut live) = conn {
                let _ = tokio::time::timeout(limit, live.handle.close()).await;
            }
        });
    }
}

/// The outcome of a transfer, queued but not yet settled by the peer.
type PendingOutcome = DeliveryFut<std::result::Result<Outcome, SendError>>;

/// What the peer's outcome means: `accepted` is done, `released`/`modified` are worth another
/// attempt, `rejected` is final.
fn judge_outcome(
    address: &str,
    spec: &SendSpec,
    outcome: Outcome,
) -> std::result::Result<(), Failure> {
    match outcome {
        Outcome::Accepted(_) => Ok(()),
        Outcome::Released(_) => Err(Failure::Retry(MessagingError::DeliveryFailure(format!(
            "{} to `{address}` was released by the peer",
            spec.what
        )))),
        Outcome::Modified(m) => Err(Failure::Retry(MessagingError::DeliveryFailure(format!(
            "{} to `{address}` was not delivered (modified, delivery-failed: {:?})",
            spec.what, m.delivery_failed
        )))),
        Outcome::Rejected(r) => Err(Failure::Fatal(MessagingError::DeliveryFailure(format!(
            "{} to `{address}` was rejected: {}",
            spec.what,
            r.error
                .as_ref()
                .map(|e| format!(
                    "{:?} {}",
                    e.condition,
                    e.description.clone().unwrap_or_default()
                ))
                .unwrap_or_else(|| "no reason given".into())
        )))),
        #[allow(unreachable_patterns)]
        other => Err(Failure::Fatal(MessagingError::DeliveryFailure(format!(
            "{} to `{address}`: unexpected outcome {other:?}",
            spec.what
        )))),
    }
}

fn send_error(address: &str, error: &SendError) -> MessagingError {
    MessagingError::ConnectionFailure(format!("sending to `{address}`: {error}"))
}

/// Detach sender links unused for `default_sender_link_timeout`.
async fn purge_idle_senders(manager: Weak<LinkManager>) {
    let (idle, mut shutdown) = match manager.upgrade() {
        Some(m) => (
            Amqp1Config::secs(m.config.default_sender_link_timeout),
            m.shutdown_signal(),
        ),
        None => return,
    };
    if idle.is_zero() {
        return;
    }
    let tick = (idle / 2).clamp(Duration::from_millis(100), Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let Some(manager) = manager.upgrade() else {
            return;
        };
        let now = std::time::Instant::now();
        let idle_slots: Vec<(String, Arc<SenderSlot>)> = manager
            .senders
            .lock()
            .expect("senders poisoned")
            .iter()
            .filter(|(_, slot)| {
                slot.last_used
                    .lock()
                    .expect("slot poisoned")
                    .is_some_and(|t| now.duration_since(t) >= idle)
            })
            .map(|(a, s)| (a.clone(), s.clone()))
            .collect();
        for (address, slot) in idle_slots {
            let Ok(mut guard) = slot.link.try_lock() else {
                continue;
            };
            let still_idle = slot
                .last_used
                .lock()
                .expect("slot poisoned")
                .is_some_and(|t| now.duration_since(t) >= idle);
            if !still_idle {
                continue;
            }
            if let Some(live) = guard.take() {
                tracing::debug!(address, "detaching an idle sender link");
                manager.detach_sender_later(live);
            }
            drop(guard);
            let mut senders = manager.senders.lock().expect("senders poisoned");
            if senders.get(&address).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                senders.remove(&address);
            }
        }
    }
}

/// What the pump waits for next. (Lives on the pump's stack only: boxing the delivery would
/// cost an allocation per message.)
#[allow(clippy::large_enum_variant)]
enum Step {
    Stopped,
    Settle,
    Delivery(std::result::Result<Delivery<Body<LazyValue>>, RecvError>),
}

/// How pumping ended: stopped (`Err(None)`), or the link failed (it is attached again).
type Pumped<T = ()> = std::result::Result<T, Option<RecvError>>;

fn failed(error: IllegalLinkStateError) -> Option<RecvError> {
    Some(error.into())
}

/// An attached receiver link's work: deliveries go to `sink`, settlements come back.
struct Pump<'a> {
    receiver: &'a mut Receiver,
    credit: u32,
    sink: &'a mpsc::Sender<Received>,
    settlements: &'a mut Settlements,
    stop: &'a mut watch::Receiver<bool>,
    shutdown: &'a mut watch::Receiver<bool>,
}

impl Pump<'_> {
    /// Until stopped or the link fails.
    async fn run(&mut self) -> Pumped {
        loop {
            let (info, message) = self.next_transfer().await?;
            // Every transfer used credit, decodable or not.
            if self.receiver.credit() == 0 {
                self.receiver
                    .set_credit(self.credit)
                    .await
                    .map_err(failed)?;
            }
            let Some(message) = message else {
                // Settled as malformed messages are (accepted: dropped). Left unsettled, the
                // peer would hold it until the link goes, then deliver it again, forever.
                let _ = self.receiver.accept(info).await;
                continue;
            };
            let settler = self.settlements.settler();
            self.hand_over(Received {
                info,
                message,
                settler,
            })
            .await?;
        }
    }

    /// The next transfer, and its message if it can be an oslo message; the settlements that
    /// gather meanwhile are sent.
    async fn next_transfer(&mut self) -> Pumped<(DeliveryInfo, Option<AmqpMessage>)> {
        loop {
            let step = tokio::select! {
                biased;
                _ = self.stop.wait_for(|s| *s) => Step::Stopped,
                _ = self.shutdown.wait_for(|s| *s) => Step::Stopped,
                _ = self.settlements.gather() => Step::Settle,
                received = self.receiver.recv::<Body<LazyValue>>() => Step::Delivery(received),
            };
            match step {
                Step::Stopped => return Err(None),
                Step::Settle => self.settlements.send(self.receiver).await.map_err(failed)?,
                Step::Delivery(Ok(delivery)) => return Ok(opened(delivery)),
                Step::Delivery(Err(RecvError::MessageDecode(error))) => {
                    tracing::warn!(%error, "dropping an undecodable AMQP message");
                    return Ok((error.info, None));
                }
                Step::Delivery(Err(error)) => return Err(Some(error)),
            }
        }
    }

    /// Give `item` to the sink, sending settlements while it is full (the handlers that free
    /// it settle).
    async fn hand_over(&mut self, item: Received) -> Pumped {
        loop {
            let step = tokio::select! {
                biased;
                _ = self.stop.wait_for(|s| *s) => None,
                _ = self.shutdown.wait_for(|s| *s) => None,
                _ = self.settlements.gather() => Some(None),
                permit = self.sink.reserve() => Some(Some(permit)),
            };
            match step {
                Some(None) => self.settlements.send(self.receiver).await.map_err(failed)?,
                Some(Some(Ok(permit))) => {
                    permit.send(item);
                    return Ok(());
                }
                Some(Some(Err(_))) | None => {
                    // Nobody takes it: the peer gives it to another consumer.
                    item.release();
                    return Err(None);
                }
            }
        }
    }
}

/// A delivery's parts, the message `None` when it cannot be an oslo message.
fn opened(delivery: Delivery<Body<LazyValue>>) -> (DeliveryInfo, Option<AmqpMessage>) {
    let (info, message) = delivery.into_parts();
    match message::received(message) {
        Ok(message) => (info, Some(message)),
        Err(error) => {
            tracing::warn!(%error, "dropping an AMQP message that cannot be an oslo message");
            (info, None)
        }
    }
}

async fn receiver_task(
    manager: Arc<LinkManager>,
    spec: ReceiverSpec,
    sink: mpsc::Sender<Received>,
    mut stop: watch::Receiver<bool>,
    ready: oneshot::Sender<Result<String>>,
) {
    let mut ready = Some(ready);
    let mut shutdown = manager.shutdown_signal();
    let mut backoff = manager.config.link_backoff();
    loop {
        if *stop.borrow() || *shutdown.borrow() || sink.is_closed() {
            return;
        }
        let (retry, deadline) = if ready.is_some() {
            (
                Retry::Never,
                Some(Instant::now() + manager.config.connect_timeout() * 2),
            )
        } else {
            (Retry::Forever, None)
        };
        let attached = tokio::select! {
            attached = manager.attach_receiver(&spec, retry, deadline) => attached,
            _ = stop.wait_for(|s| *s) => return,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        match attached {
            Ok((mut receiver, session, address)) => {
                backoff.reset();
                if let Some(on_attach) = &spec.on_attach {
                    on_attach(&address);
                }
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Ok(address.clone()));
                }
                let mut settlements = Settlements::new();
                let pumped = Pump {
                    receiver: &mut receiver,
                    credit: spec.credit,
                    sink: &sink,
                    settlements: &mut settlements,
                    stop: &mut stop,
                    shutdown: &mut shutdown,
                }
                .run()
                .await;
                match pumped {
                    Err(None) | Ok(()) => {
                        teardown(receiver, session, settlements, &spec, &manager).await;
                        return;
                    }
                    Err(Some(error)) => {
                        tracing::warn!(%error, source = %address, "receiver link failed; re-attaching");
                        drop(receiver);
                        drop(session);
                    }
                }
            }
            Err(error) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(error));
                    return;
                }
                tracing::warn!(%error, "cannot attach a receiver link");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = stop.wait_for(|s| *s) => return,
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// Stop the flow, wait (bounded) for deliveries still being handled while sending their
/// settlements, then detach.
async fn teardown(
    mut receiver: Receiver,
    session: SessionHandle<()>,
    mut settlements: Settlements,
    spec: &ReceiverSpec,
    manager: &LinkManager,
) {
    let limit = manager.config.close_timeout();
    settlements.stop_handing_out();
    if let Some(in_flight) = &spec.in_flight {
        let _ = tokio::time::timeout(limit, receiver.set_credit(0)).await;
        let mut shutdown = manager.shutdown_signal();
        // Handlers of taken deliveries finish and settle them on this link.
        let idle = tokio::time::timeout(Duration::from_secs(60), in_flight.wait_idle());
        tokio::pin!(idle);
        loop {
            let more = tokio::select! {
                _ = &mut idle => false,
                _ = shutdown.wait_for(|s| *s) => false,
                more = settlements.gather() => more,
            };
            let sent = tokio::time::timeout(limit, settlements.send(&receiver)).await;
            if !more || !matches!(sent, Ok(Ok(()))) {
                break;
            }
        }
    }
    settlements.close();
    let _ = tokio::time::timeout(limit, settlements.send(&receiver)).await;
    let _ = tokio::time::timeout(limit, receiver.detach()).await;
    drop(session);
}

/// What a listener's receiver links deliver, and the switch that detaches them.
pub(crate) struct Inbox {
    rx: mpsc::Receiver<Received>,
    stop: watch::Sender<bool>,
    closed: bool,
}

impl LinkManager {
    /// Attach a receiver link to each of `sources`, all delivering to one inbox holding up to
    /// `capacity` deliveries. If one cannot attach, those attached detach again.
    pub async fn open_inbox(
        self: &Arc<Self>,
        sources: impl IntoIterator<Item = String>,
        credit: u32,
        capacity: usize,
        in_flight: Option<InFlight>,
    ) -> Result<Inbox> {
        let (tx, rx) = mpsc::channel(capacity);
        let (stop, _) = watch::channel(false);
        for source in sources {
            let spec = ReceiverSpec {
                source: Some(source),
                credit,
                presettled: false,
                on_attach: None,
                in_flight: in_flight.clone(),
            };
            if let Err(error) = self
                .spawn_receiver(spec, tx.clone(), stop.subscribe())
                .await
            {
                stop.send_replace(true);
                return Err(error);
            }
        }
        Ok(Inbox {
            rx,
            stop,
            closed: false,
        })
    }
}

impl Inbox {
    /// The next delivery; `None` once closed. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Received> {
        if self.closed {
            return None;
        }
        self.rx.recv().await
    }

    /// Detach the links and release what they delivered that was not taken (the peer gives
    /// it to another consumer). Closing again does nothing.
    pub async fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.stop.send_replace(true);
        while let Ok(received) = self.rx.try_recv() {
            received.release();
        }
        self.rx.close();
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(started: Instant, timeout: Duration, fail_fast: Option<Duration>) -> SendSpec {
        SendSpec {
            settled: false,
            started,
            deadline: started + timeout,
            fail_fast: fail_fast.map(|window| FailFast {
                window,
                to: RpcAddress {
                    exchange: "openstack".into(),
                    topic: "t".into(),
                    server: Some("s".into()),
                    fanout: false,
                },
            }),
            retry: Retry::Never,
            call_id: Some("m1".into()),
            what: "call",
        }
    }

    /// A router grants no credit to an address nobody consumes: failing fast, the window ends
    /// the wait with `NoServer`, long before the deadline.
    #[tokio::test]
    async fn no_credit_within_the_window_is_no_server() {
        let window = Duration::from_millis(50);
        let spec = spec(Instant::now(), Duration::from_secs(30), Some(window));
        let waited = LinkManager::until_credit("a", &spec, std::future::pending::<()>()).await;
        match waited {
            Err(Failure::Fatal(MessagingError::NoServer {
                topic,
                server,
                waited,
            })) => {
                assert_eq!((topic.as_str(), server.as_deref()), ("t", Some("s")));
                assert!(
                    waited >= window && waited < Duration::from_secs(5),
                    "{waited:?}"
                );
            }
            other => panic!("expected NoServer, got {other:?}"),
        }
        // Credit in time: the send goes on.
        let granted = LinkManager::until_credit("a", &spec, async { 7 }).await;
        assert!(matches!(granted, Ok(7)));
    }

    /// The deadline and the reported time count from the call's start (connecting and
    /// attaching took 400 ms of a 500 ms timeout here), and a window that would end after the
    /// deadline does not turn a timeout into `NoServer`.
    #[tokio::test]
    async fn a_timeout_counts_from_the_call_start() {
        let timeout = Duration::from_millis(500);
        let started = Instant::now() - Duration::from_millis(400);
        let spec = spec(started, timeout, Some(Duration::from_secs(1)));
        let waiting = Instant::now();
        let waited = LinkManager::until_credit("a", &spec, std::future::pending::<()>()).await;
        match waited {
            Err(Failure::Fatal(MessagingError::Timeout { msg_id, after, .. })) => {
                assert_eq!(msg_id, "m1");
                assert!(after >= timeout, "reported {after:?}");
            }
            other => panic!("expected a call timeout, got {other:?}"),
        }
        assert!(waiting.elapsed() < Duration::from_millis(400));
    }
}

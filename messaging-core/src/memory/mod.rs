//! The `memory://` driver (also `fake://`): an in-process transport with the full semantics
//! of a broker (topic, server-directed and fanout routing, competing servers, listener pools,
//! requeue, call expiry, call-monitor heartbeats), for applications' own tests and examples.
//!
//! Transports with the same virtual host (`memory://` or `memory:///name`) in one process
//! share one bus; different virtual hosts are isolated.

mod bus;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::future::select_all;
use tokio::sync::OnceCell;

use crate::driver::{
    Acknowledger, Capabilities, Driver, IncomingNotification, IncomingRequest, NotificationSource,
    NotifyAddress, NotifyDriver, PendingReply, Replier, ReplyRouter, RpcAddress, RpcDriver,
    RpcListener, SendOptions, ServerAddress, FAIL_FAST_OPTION,
};
use crate::error::{MessagingError, Result};
use crate::options::OptionSpec;
use crate::url::TransportUrl;
use crate::wire::{
    self, NotificationFormat, NotificationMessage, Reply, ReplyMessage, RequestMessage, RpcRequest,
};

use bus::{Bus, Delivery, QueueReceiver, QueueSender};

/// The in-process driver. Always installed.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryDriver;

#[async_trait]
impl Driver for MemoryDriver {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn schemes(&self) -> &'static [&'static str] {
        &["memory", "fake"]
    }

    fn options(&self) -> &'static [OptionSpec] {
        &[FAIL_FAST_OPTION]
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::full()
    }

    async fn rpc(&self, url: &TransportUrl) -> Result<Arc<dyn RpcDriver>> {
        Ok(Arc::new(MemoryRpc {
            bus: bus_of(url),
            fail_fast: url.options().seconds("fail_fast", Duration::ZERO)?,
            replies: ReplyRouter::new(),
            reply_queue: OnceCell::new(),
            closed: AtomicBool::new(false),
        }))
    }

    async fn notifications(&self, url: &TransportUrl) -> Result<Arc<dyn NotifyDriver>> {
        Ok(Arc::new(MemoryNotify { bus: bus_of(url) }))
    }
}

fn bus_of(url: &TransportUrl) -> Arc<Bus> {
    Bus::for_vhost(url.virtual_host.as_deref().unwrap_or(""))
}

/// Wait for the first delivery on any of `receivers`, with the index of its queue; `None`
/// once all are closed. Cancel-safe: a receive that did not complete takes nothing.
async fn recv_any(receivers: &[QueueReceiver]) -> Option<(usize, Delivery)> {
    let mut open: Vec<usize> = (0..receivers.len())
        .filter(|&i| !receivers[i].is_closed())
        .collect();
    while !open.is_empty() {
        let (result, position, _) =
            select_all(open.iter().map(|&i| Box::pin(receivers[i].recv()))).await;
        match result {
            Ok(delivery) => return Some((open[position], delivery)),
            Err(_) => {
                open.remove(position);
            }
        }
    }
    None
}

struct MemoryRpc {
    bus: Arc<Bus>,
    /// The URL's `fail_fast` window (zero: off).
    fail_fast: Duration,
    replies: ReplyRouter,
    /// The transport's reply queue, declared on the first call.
    reply_queue: OnceCell<String>,
    closed: AtomicBool,
}

impl MemoryRpc {
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(MessagingError::Closed("transport"))
        } else {
            Ok(())
        }
    }

    async fn reply_queue(&self) -> &str {
        self.reply_queue
            .get_or_init(|| async {
                let name = wire::new_reply_queue_name();
                let (_, rx) = self.bus.declare_queue(&name);
                let replies = self.replies.clone();
                tokio::spawn(async move {
                    while let Ok(delivery) = rx.recv().await {
                        if let Delivery::Reply(reply) = delivery {
                            let msg_id = reply.msg_id.clone();
                            replies.deliver(&msg_id, reply.into_reply());
                        }
                    }
                });
                name
            })
            .await
    }

    /// Publish a request: dropped if no queue is bound, as a broker would; true if a queue
    /// took it. With fail fast, published again every 50 ms (as a returned mandatory message
    /// would be) until the window ends, then [`MessagingError::NoServer`].
    async fn publish_request(
        &self,
        to: &RpcAddress,
        delivery: Delivery,
        options: &SendOptions,
    ) -> Result<bool> {
        let Some(window) = options.fail_fast_window(self.fail_fast) else {
            return Ok(self.publish_once(to, delivery) > 0);
        };
        let started = tokio::time::Instant::now();
        while self.publish_once(to, delivery.clone()) == 0 {
            if started.elapsed() >= window {
                return Err(to.no_server(started.elapsed()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(true)
    }

    /// Publish once; how many queues took it.
    fn publish_once(&self, to: &RpcAddress, delivery: Delivery) -> usize {
        if to.fanout {
            self.bus.publish_fanout(&to.fanout_exchange(), delivery)
        } else {
            self.bus.publish(&to.exchange, &to.routing_key(), delivery)
        }
    }
}

#[async_trait]
impl RpcDriver for MemoryRpc {
    async fn cast(
        &self,
        to: &RpcAddress,
        request: &RpcRequest,
        options: &SendOptions,
    ) -> Result<()> {
        self.check_open()?;
        let message = RequestMessage::cast(request.clone());
        let delivery = Delivery::Request {
            message,
            expires: None,
        };
        if !self.publish_request(to, delivery, options).await? {
            tracing::debug!(
                ?to,
                "no queue bound: the cast is dropped, as a broker would"
            );
        }
        Ok(())
    }

    async fn call(
        &self,
        to: &RpcAddress,
        request: &RpcRequest,
        options: &SendOptions,
    ) -> Result<PendingReply> {
        self.check_open()?;
        let reply_q = self.reply_queue().await.to_owned();
        let message = RequestMessage::call(request.clone(), reply_q, options.call_monitor_timeout);
        let msg_id = message.msg_id().expect("a call").to_owned();
        let pending = self.replies.register(msg_id.clone());
        let expires = options.timeout.map(|t| Instant::now() + t);
        let taken = self
            .publish_request(to, Delivery::Request { message, expires }, options)
            .await?;
        match options.timeout {
            // Nobody serves the topic: say so at the caller's timeout, as a broker that
            // returns the call unroutable does.
            Some(timeout) if !taken => {
                tokio::time::sleep(timeout).await;
                Err(MessagingError::not_taken(msg_id, timeout))
            }
            _ => Ok(pending),
        }
    }

    async fn listen(&self, on: &ServerAddress) -> Result<Box<dyn RpcListener>> {
        self.check_open()?;
        let topic = on.topic_address();
        let server = on.server_address();
        let mut receivers = Vec::with_capacity(3);
        for address in [&topic, &server] {
            let queue = address.routing_key();
            receivers.push(self.bus.declare_queue(&queue).1);
            self.bus.bind(&queue, &address.exchange, &queue);
        }
        let fanout_queue = format!("{}_fanout_{}", on.topic, wire::new_id());
        receivers.push(self.bus.declare_queue(&fanout_queue).1);
        self.bus
            .bind_fanout(&fanout_queue, &topic.fanout_exchange());
        Ok(Box::new(MemoryRpcListener {
            bus: self.bus.clone(),
            receivers,
            fanout_queue,
            closed: false,
        }))
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Some(queue) = self.reply_queue.get() {
            self.bus.delete_queue(queue);
        }
        self.replies.clear();
    }
}

impl Drop for MemoryRpc {
    fn drop(&mut self) {
        if let Some(queue) = self.reply_queue.get() {
            self.bus.delete_queue(queue);
        }
    }
}

struct MemoryRpcListener {
    bus: Arc<Bus>,
    receivers: Vec<QueueReceiver>,
    fanout_queue: String,
    closed: bool,
}

#[async_trait]
impl RpcListener for MemoryRpcListener {
    async fn next(&mut self) -> Option<IncomingRequest> {
        if self.closed {
            return None;
        }
        loop {
            let (_, Delivery::Request { message, expires }) = recv_any(&self.receivers).await?
            else {
                continue;
            };
            if expires.is_some_and(|at| at <= Instant::now()) {
                tracing::debug!(method = %message.request.method, "dropping an expired call");
                continue;
            }
            let bus = self.bus.clone();
            return Some(IncomingRequest::from_message(message, move |call| {
                Box::new(MemoryReplier {
                    bus,
                    reply_q: call.reply_q,
                    msg_id: call.msg_id,
                })
            }));
        }
    }

    async fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.bus.delete_queue(&self.fanout_queue);
        }
    }
}

impl Drop for MemoryRpcListener {
    fn drop(&mut self) {
        self.bus.delete_queue(&self.fanout_queue);
    }
}

struct MemoryReplier {
    bus: Arc<Bus>,
    reply_q: String,
    msg_id: String,
}

#[async_trait]
impl Replier for MemoryReplier {
    async fn send(&self, reply: Reply) -> Result<()> {
        let reply = ReplyMessage::new(self.msg_id.clone(), reply);
        match self.bus.publish("", &self.reply_q, Delivery::Reply(reply)) {
            0 => Err(MessagingError::DeliveryFailure(format!(
                "reply queue {} no longer exists",
                self.reply_q
            ))),
            _ => Ok(()),
        }
    }
}

struct MemoryNotify {
    bus: Arc<Bus>,
}

#[async_trait]
impl NotifyDriver for MemoryNotify {
    async fn notify(
        &self,
        to: &NotifyAddress,
        message: &NotificationMessage,
        _format: NotificationFormat,
        _options: &SendOptions,
    ) -> Result<()> {
        // As oslo's rabbit notifier: declare the `<topic>.<priority>` queue so that nothing is
        // lost before a listener exists.
        let key = to.routing_key();
        self.bus.declare_queue(&key);
        self.bus.bind(&key, &to.exchange, &key);
        let delivery = Delivery::Notification {
            message: message.clone(),
            unique_id: wire::new_id(),
        };
        self.bus.publish(&to.exchange, &key, delivery);
        Ok(())
    }

    async fn listen(
        &self,
        subscriptions: &[NotifyAddress],
        pool: Option<&str>,
    ) -> Result<Box<dyn NotificationSource>> {
        let mut queues: Vec<(String, (QueueSender, QueueReceiver))> = Vec::new();
        for subscription in subscriptions {
            let key = subscription.routing_key();
            let queue = pool.map_or_else(|| key.clone(), str::to_owned);
            self.bus.bind(&queue, &subscription.exchange, &key);
            if !queues.iter().any(|(name, _)| *name == queue) {
                queues.push((queue.clone(), self.bus.declare_queue(&queue)));
            }
        }
        let (senders, receivers) = queues.into_iter().map(|(_, ends)| ends).unzip();
        Ok(Box::new(MemoryNotificationSource {
            _bus: self.bus.clone(),
            senders,
            receivers,
            closed: false,
        }))
    }
}

struct MemoryNotificationSource {
    /// Keeps the bus alive while the listener runs, even if its transport was dropped.
    _bus: Arc<Bus>,
    senders: Vec<QueueSender>,
    receivers: Vec<QueueReceiver>,
    closed: bool,
}

#[async_trait]
impl NotificationSource for MemoryNotificationSource {
    async fn next(&mut self) -> Option<IncomingNotification> {
        if self.closed {
            return None;
        }
        loop {
            let (queue, delivery) = recv_any(&self.receivers).await?;
            let Delivery::Notification { message, unique_id } = &delivery else {
                continue;
            };
            // A requeued notification goes back to the queue it came from.
            let requeue_to = self.senders[queue].clone();
            return Some(IncomingNotification {
                message: Box::new(message.clone()),
                unique_id: Some(unique_id.clone()),
                acker: Box::new(MemoryAcker {
                    requeue_to,
                    delivery,
                }),
            });
        }
    }

    async fn close(&mut self) {
        self.closed = true;
    }
}

struct MemoryAcker {
    requeue_to: QueueSender,
    delivery: Delivery,
}

#[async_trait]
impl Acknowledger for MemoryAcker {
    async fn ack(self: Box<Self>) -> Result<()> {
        Ok(())
    }

    async fn requeue(self: Box<Self>) -> Result<()> {
        self.requeue_to
            .try_send(self.delivery)
            .map_err(|_| MessagingError::DeliveryFailure("the queue was deleted".into()))
    }
}

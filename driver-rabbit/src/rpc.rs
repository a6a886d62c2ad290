//! The RPC side: casts and calls, the reply queue, server listeners and repliers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use lapin::message::Delivery;
use messaging_core::driver::{
    log_malformed, IncomingRequest, PendingReply, Replier, ReplyRouter, Retry, RpcAddress,
    RpcDriver, RpcListener, SendOptions, ServerAddress,
};
use messaging_core::wire::{self, Reply, ReplyMessage, RequestMessage, RpcRequest, CONTENT_TYPE};
use messaging_core::{MessagingError, Result};
use tokio::sync::{oneshot, OnceCell};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::RabbitConfig;
use crate::connection::{with_retry, within, Connector, Failure};
use crate::publisher::{Outgoing, Publisher, Routed};
use crate::subscriber::{Plan, Subscriber};
use crate::topology;

/// The driver's name in logs.
const DRIVER: &str = "rabbit";
/// How long a reply queue found missing is remembered as gone.
const GONE_FOR: Duration = Duration::from_secs(60);

/// What the transport, its listeners and repliers share.
pub(crate) struct RpcShared {
    connector: Arc<Connector>,
    publisher: Publisher,
    /// Reply queues found missing, and when.
    gone: Mutex<HashMap<String, Instant>>,
}

impl RpcShared {
    fn config(&self) -> &RabbitConfig {
        self.connector.config()
    }

    fn is_gone(&self, queue: &str) -> bool {
        let mut gone = self.gone.lock().expect("gone poisoned");
        gone.retain(|_, at| at.elapsed() < GONE_FOR);
        gone.contains_key(queue)
    }

    fn mark_gone(&self, queue: &str) {
        self.gone
            .lock()
            .expect("gone poisoned")
            .insert(queue.to_owned(), Instant::now());
    }
}

/// The RPC side of a rabbit transport.
pub(crate) struct RabbitRpc {
    shared: Arc<RpcShared>,
    replies: ReplyRouter,
    /// The transport's `reply_<uuid>` queue, declared on the first call.
    reply_queue: OnceCell<ReplyQueue>,
    closed: AtomicBool,
}

impl RabbitRpc {
    pub(crate) fn new(connector: Arc<Connector>) -> Self {
        Self {
            shared: Arc::new(RpcShared {
                publisher: Publisher::new(connector.clone(), "rpc-send"),
                connector,
                gone: Mutex::new(HashMap::new()),
            }),
            replies: ReplyRouter::new(),
            reply_queue: OnceCell::new(),
            closed: AtomicBool::new(false),
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(MessagingError::Closed("transport"))
        } else {
            Ok(())
        }
    }

    /// Publish a request. A cast is published once (at most once, as oslo: with no server
    /// bound it is dropped). A call is published `mandatory` and again every 0.25 s while the
    /// broker returns it for want of a queue (servers restarting, or reconnecting after a
    /// broker restart, have not declared their queues yet), until the call's timeout: a call
    /// that no server could take ends as a timeout, and one made during an outage reaches the
    /// servers as soon as they are back. Failing fast, casts are published `mandatory` too,
    /// and a request returned for the whole fail-fast window ends with `NoServer`.
    async fn publish_request(
        &self,
        to: &RpcAddress,
        message: &RequestMessage,
        options: &SendOptions,
    ) -> Result<()> {
        let body = message.encode()?;
        let (exchange, routing_key, declarations) =
            topology::rpc_destination(self.shared.config(), to);
        let what = format!(
            "sending `{}` to {exchange}/{routing_key}",
            message.request.method
        );
        let outgoing = Outgoing {
            exchange: &exchange,
            routing_key: &routing_key,
            body: &body,
            expiration: None,
            declarations: &declarations,
        };
        let fail_fast = options.fail_fast_window(self.shared.config().fail_fast());
        let options = &SendOptions {
            fail_fast,
            ..options.clone()
        };
        let publisher = &self.shared.publisher;
        let msg_id = message.msg_id();
        if msg_id.is_none() && fail_fast.is_none() {
            return publisher.publish(&what, outgoing, options).await;
        }
        let began = Instant::now();
        let routed = publisher
            .publish_until_routed(&what, outgoing, options, options.timeout, msg_id.is_some())
            .await?;
        match (routed, msg_id) {
            (Routed::Delivered, _) => Ok(()),
            (Routed::Returned, Some(msg_id)) if fail_fast.is_none() => {
                // No server within the caller's whole timeout, like a call left unanswered.
                if let Some(timeout) = options.timeout {
                    tokio::time::sleep_until(began + timeout).await;
                }
                Err(MessagingError::not_taken(msg_id, began.elapsed()))
            }
            (Routed::Returned, _) => Err(to.no_server(began.elapsed())),
        }
    }

    /// The reply queue's name, declaring and consuming it on the first call.
    async fn reply_queue(&self, options: &SendOptions) -> Result<String> {
        let what = "declaring the reply queue";
        let queue = with_retry(&self.shared.connector, what, options, |until| {
            let start = self.reply_queue.get_or_try_init(|| {
                ReplyQueue::start(self.shared.connector.clone(), self.replies.clone())
            });
            within(until, what, start)
        })
        .await?;
        Ok(queue.name.clone())
    }
}

#[async_trait]
impl RpcDriver for RabbitRpc {
    async fn cast(
        &self,
        to: &RpcAddress,
        request: &RpcRequest,
        options: &SendOptions,
    ) -> Result<()> {
        self.check_open()?;
        let message = RequestMessage::cast(request.clone());
        self.publish_request(to, &message, options).await
    }

    async fn call(
        &self,
        to: &RpcAddress,
        request: &RpcRequest,
        options: &SendOptions,
    ) -> Result<PendingReply> {
        self.check_open()?;
        let reply_q = self.reply_queue(options).await?;
        let message = RequestMessage::call(request.clone(), reply_q, options.call_monitor_timeout);
        let pending = self
            .replies
            .register(message.msg_id().expect("a call").to_owned());
        self.publish_request(to, &message, options).await?;
        Ok(pending)
    }

    async fn listen(&self, on: &ServerAddress) -> Result<Box<dyn RpcListener>> {
        self.check_open()?;
        let fanout_queue = format!("{}_fanout_{}", on.topic, wire::new_id());
        let (declarations, queues) = topology::rpc_server(self.shared.config(), on, &fanout_queue);
        let subscriber = Subscriber::start(Plan {
            connector: self.shared.connector.clone(),
            role: "rpc-server",
            declarations,
            queues,
            delete_on_close: vec![fanout_queue],
        })
        .await
        .map_err(failure_error)?;
        Ok(Box::new(RabbitRpcListener {
            subscriber,
            shared: self.shared.clone(),
        }))
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Some(queue) = self.reply_queue.get() {
            queue.stop().await;
        }
        self.shared.publisher.close().await;
        self.replies.clear();
    }
}

/// The error a caller sees for a failure.
pub(crate) fn failure_error(failure: Failure) -> MessagingError {
    match failure {
        Failure::Retry(error) | Failure::Fatal(error) => error,
    }
}

/// Check the content type, as kombu does before oslo sees a message.
pub(crate) fn check_content_type(delivery: &Delivery) -> Result<()> {
    match delivery.properties.content_type() {
        Some(content_type) if content_type.as_str() == CONTENT_TYPE => Ok(()),
        other => Err(MessagingError::MalformedMessage(format!(
            "content_type is {:?}, not `{CONTENT_TYPE}`",
            other.as_ref().map(|c| c.as_str())
        ))),
    }
}

/// Where a delivery came from, for logs.
pub(crate) fn origin(delivery: &Delivery) -> String {
    format!(
        "exchange `{}`, routing key `{}`",
        delivery.exchange, delivery.routing_key
    )
}

/// The transport's reply queue: a subscriber whose deliveries feed the [`ReplyRouter`].
struct ReplyQueue {
    name: String,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl ReplyQueue {
    async fn start(
        connector: Arc<Connector>,
        replies: ReplyRouter,
    ) -> std::result::Result<Self, Failure> {
        let name = wire::new_reply_queue_name();
        let declarations = vec![topology::Declaration::Queue(topology::transient_queue(
            connector.config(),
            &name,
        ))];
        let mut subscriber = Subscriber::start(Plan {
            connector,
            role: "rpc-replies",
            declarations,
            queues: vec![name.clone()],
            // oslo keeps the reply queue: late replies expire with it (x-expires).
            delete_on_close: Vec::new(),
        })
        .await?;
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            loop {
                let delivery = tokio::select! {
                    _ = &mut stopped => break,
                    delivery = subscriber.recv() => match delivery {
                        Some(delivery) => delivery,
                        None => break,
                    },
                };
                let decoded = check_content_type(&delivery)
                    .and_then(|()| ReplyMessage::decode(&delivery.data));
                match decoded {
                    Ok(reply) => {
                        let msg_id = reply.msg_id.clone();
                        replies.deliver(&msg_id, reply.into_reply());
                        subscriber.ack(delivery.acker);
                    }
                    Err(error) => {
                        log_malformed(DRIVER, &origin(&delivery), &error, &delivery.data);
                        subscriber.reject(delivery.acker, false);
                    }
                }
            }
            subscriber.close().await;
        });
        tracing::debug!(queue = %name, "reply queue declared");
        Ok(Self {
            name,
            stop: Mutex::new(Some(stop)),
            task: Mutex::new(Some(task)),
        })
    }

    async fn stop(&self) {
        if let Some(stop) = self.stop.lock().expect("stop poisoned").take() {
            let _ = stop.send(());
        }
        let task = self.task.lock().expect("task poisoned").take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// A server's stream of requests: acknowledged as they are handed out (oslo acks before
/// dispatching), so that the ones never handed out go back to the broker for others.
struct RabbitRpcListener {
    subscriber: Subscriber,
    shared: Arc<RpcShared>,
}

#[async_trait]
impl RpcListener for RabbitRpcListener {
    async fn next(&mut self) -> Option<IncomingRequest> {
        loop {
            let delivery = self.subscriber.recv().await?;
            // Everything below is synchronous: dropping this future loses nothing.
            if !delivery.acker.usable() {
                // From a connection that is gone: the broker delivers it again.
                continue;
            }
            let message = match check_content_type(&delivery)
                .and_then(|()| RequestMessage::decode(&delivery.data))
            {
                Ok(message) => message,
                Err(error) => {
                    log_malformed(DRIVER, &origin(&delivery), &error, &delivery.data);
                    self.subscriber.reject(delivery.acker, false);
                    continue;
                }
            };
            self.subscriber.ack(delivery.acker);
            let shared = self.shared.clone();
            return Some(IncomingRequest::from_message(message, move |call| {
                Box::new(RabbitReplier {
                    shared,
                    reply_q: call.reply_q,
                    msg_id: call.msg_id,
                })
            }));
        }
    }

    async fn close(&mut self) {
        self.subscriber.close().await;
    }
}

/// Sends the answers to one call: to the default exchange, routing key `_reply_q`,
/// `mandatory` so that a vanished reply queue is noticed.
struct RabbitReplier {
    shared: Arc<RpcShared>,
    reply_q: String,
    msg_id: String,
}

#[async_trait]
impl Replier for RabbitReplier {
    async fn send(&self, reply: Reply) -> Result<()> {
        let gone = || {
            MessagingError::DeliveryFailure(format!(
                "reply queue {} does not exist (the caller is gone); reply to {} dropped",
                self.reply_q, self.msg_id
            ))
        };
        if self.shared.is_gone(&self.reply_q) {
            return Err(gone());
        }
        let body = ReplyMessage::new(self.msg_id.clone(), reply).encode()?;
        let outgoing = Outgoing {
            exchange: "",
            routing_key: &self.reply_q,
            body: &body,
            expiration: None,
            declarations: &[],
        };
        let patience = self.shared.config().missing_consumer_timeout();
        let options = SendOptions {
            retry: Retry::Forever,
            ..SendOptions::default()
        };
        let what = format!("replying to {}", self.reply_q);
        let publisher = &self.shared.publisher;
        match publisher
            .publish_until_routed(&what, outgoing, &options, Some(patience), false)
            .await?
        {
            Routed::Delivered => Ok(()),
            Routed::Returned => {
                self.shared.mark_gone(&self.reply_q);
                tracing::warn!(
                    queue = %self.reply_q,
                    msg_id = %self.msg_id,
                    ?patience,
                    "the reply queue does not exist; dropping the reply"
                );
                Err(gone())
            }
        }
    }
}

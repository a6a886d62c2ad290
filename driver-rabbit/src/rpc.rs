//! The RPC side: casts and calls, the reply queue, server listeners and repliers.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use lapin::message::Delivery;
use messaging_core::driver::retry::Describe;
use messaging_core::driver::{
    decode_or_drop, IncomingRequest, PendingReply, PerAddress, Replier, ReplyRouter, Retry,
    RpcAddress, RpcDriver, RpcListener, SendOptions, ServerAddress,
};
use messaging_core::wire::{
    self, CallInfo, OutgoingReply, OutgoingRequest, Reply, ReplyMessage, RequestMessage,
    RpcRequest, CONTENT_TYPE,
};
use messaging_core::{MessagingError, Result};
use tokio::sync::{oneshot, OnceCell};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::compression;
use crate::config::RabbitConfig;
use crate::connection::{with_retry, within, Connector, Failure};
use crate::publisher::{Outgoing, Publisher, Routed};
use crate::queue_manager::QueueManager;
use crate::subscriber::{Plan, StreamCursor, Subscriber};
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
    /// Its name, chosen once.
    reply_queue_name: OnceCell<String>,
    /// Stable queue names (`use_queue_manager`).
    queue_manager: Option<QueueManager>,
    /// Each target's exchange, routing key and declarations, worked out on its first call.
    destinations: PerAddress<RpcAddress, Arc<topology::Destination>>,
    closed: AtomicBool,
}

impl RabbitRpc {
    pub(crate) fn new(connector: Arc<Connector>) -> Self {
        let config = connector.config();
        let queue_manager = config.use_queue_manager.then(|| QueueManager::new(config));
        Self {
            reply_queue_name: OnceCell::new(),
            queue_manager,
            shared: Arc::new(RpcShared {
                publisher: Publisher::new(connector.clone(), "rpc-send"),
                connector,
                gone: Mutex::new(HashMap::new()),
            }),
            replies: ReplyRouter::new(),
            reply_queue: OnceCell::new(),
            destinations: PerAddress::default(),
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
        message: OutgoingRequest<'_>,
        options: &SendOptions,
    ) -> Result<()> {
        let body = message.encode()?;
        let config = self.shared.config();
        let destination = self
            .destinations
            .get(to, |to| Arc::new(topology::rpc_destination(config, to)));
        let (exchange, routing_key) = (&destination.exchange, &destination.routing_key);
        let method = &message.request.method;
        let what = Describe::new(|f| write!(f, "sending `{method}` to {exchange}/{routing_key}"));
        let outgoing = Outgoing {
            exchange,
            routing_key,
            body: &body,
            expiration: None,
            declarations: &destination.declarations,
            compression: None,
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
        if let Some(queue) = self.reply_queue.get() {
            return Ok(queue.name.clone());
        }
        // Boxed: the first call's future is large (the subscriber's connect), and every call
        // would otherwise carry it.
        Box::pin(self.start_reply_queue(options)).await
    }

    async fn start_reply_queue(&self, options: &SendOptions) -> Result<String> {
        let what = "declaring the reply queue";
        let name = self
            .reply_queue_name
            .get_or_try_init(|| async {
                Ok::<_, MessagingError>(match &self.queue_manager {
                    Some(manager) => format!("reply_{}", manager.next_name()?),
                    None => wire::new_reply_queue_name(),
                })
            })
            .await?;
        let queue = with_retry(&self.shared.connector, &what, options, |until| {
            let start = self.reply_queue.get_or_try_init(|| {
                ReplyQueue::start(
                    self.shared.connector.clone(),
                    self.replies.clone(),
                    name.clone(),
                )
            });
            within(until, &what, start)
        })
        .await?;
        Ok(queue.name.clone())
    }

    /// The fanout queue of a server of `topic`, and whether it is that server's alone, to be
    /// deleted when it stops: not the topic's stream (`rabbit_stream_fanout`), which every
    /// server reads, nor a queue manager's, which the next run of the service uses again (or
    /// which expires).
    fn fanout_queue(&self, topic: &str) -> Result<(String, bool)> {
        if self.shared.config().rabbit_stream_fanout {
            return Ok((format!("{topic}_fanout"), false));
        }
        Ok(match &self.queue_manager {
            Some(manager) => (format!("{topic}_fanout_{}", manager.next_name()?), false),
            None => (format!("{topic}_fanout_{}", wire::new_id()), true),
        })
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
        let unique_id = wire::new_id();
        let message = OutgoingRequest {
            request,
            call: None,
            unique_id: Some(&unique_id),
        };
        self.publish_request(to, message, options).await
    }

    async fn call(
        &self,
        to: &RpcAddress,
        request: &RpcRequest,
        options: &SendOptions,
    ) -> Result<PendingReply> {
        self.check_open()?;
        let reply_q = self.reply_queue(options).await?;
        let call = CallInfo::new(reply_q, options.call_monitor_timeout);
        let pending = self.replies.register(call.msg_id.clone());
        let unique_id = wire::new_id();
        let message = OutgoingRequest {
            request,
            call: Some(&call),
            unique_id: Some(&unique_id),
        };
        self.publish_request(to, message, options).await?;
        Ok(pending)
    }

    async fn listen(&self, on: &ServerAddress) -> Result<Box<dyn RpcListener>> {
        self.check_open()?;
        let (fanout_queue, own) = self.fanout_queue(&on.topic)?;
        let (declarations, queues) = topology::rpc_server(self.shared.config(), on, &fanout_queue);
        let stream = self.shared.config().rabbit_stream_fanout;
        let subscriber = Subscriber::start(Plan {
            connector: self.shared.connector.clone(),
            role: "rpc-server",
            declarations,
            queues,
            delete_on_close: own.then(|| fanout_queue.clone()).into_iter().collect(),
            stream: stream.then_some(fanout_queue),
            cursor: StreamCursor::default(),
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

/// A delivery's body for oslo's decoders: its content type checked, as kombu does before
/// oslo sees a message, and decompressed as its `compression` header says.
pub(crate) fn body(delivery: &Delivery) -> Result<Cow<'_, [u8]>> {
    check_content_type(delivery)?;
    compression::decompress(&delivery.properties, &delivery.data)
}

/// Check the content type, as kombu does before oslo sees a message.
fn check_content_type(delivery: &Delivery) -> Result<()> {
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
        name: String,
    ) -> std::result::Result<Self, Failure> {
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
            stream: None,
            cursor: StreamCursor::default(),
        })
        .await?;
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            loop {
                let incoming = tokio::select! {
                    _ = &mut stopped => break,
                    incoming = subscriber.recv() => match incoming {
                        Some(incoming) => incoming,
                        None => break,
                    },
                };
                let delivery = &incoming.delivery;
                let decoded = body(delivery).and_then(|body| ReplyMessage::decode(&body));
                match decode_or_drop(decoded, DRIVER, || origin(delivery), || &delivery.data) {
                    Some(reply) => {
                        let msg_id = reply.msg_id.clone();
                        replies.deliver(&msg_id, reply.into_reply());
                        subscriber.ack(incoming);
                    }
                    None => subscriber.reject(incoming, false),
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
            let incoming = self.subscriber.recv().await?;
            let delivery = &incoming.delivery;
            // Everything below is synchronous: dropping this future loses nothing.
            if !delivery.acker.usable() {
                // From a connection that is gone: the broker delivers it again.
                continue;
            }
            let decoded = body(delivery).and_then(|body| RequestMessage::decode(&body));
            self.subscriber.handed_out(delivery);
            let Some(message) =
                decode_or_drop(decoded, DRIVER, || origin(delivery), || &delivery.data)
            else {
                self.subscriber.reject(incoming, false);
                continue;
            };
            self.subscriber.ack(incoming);
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
        let unique_id = wire::new_id();
        let body = OutgoingReply {
            msg_id: &self.msg_id,
            event: &reply.event,
            unique_id: Some(&unique_id),
            signature: reply.signature.as_deref(),
        }
        .encode()?;
        let outgoing = Outgoing {
            exchange: "",
            routing_key: &self.reply_q,
            body: &body,
            expiration: None,
            declarations: &[],
            compression: None,
        };
        let patience = self.shared.config().missing_consumer_timeout();
        let options = SendOptions {
            retry: Retry::Forever,
            ..SendOptions::default()
        };
        let what = Describe::new(|f| write!(f, "replying to {}", self.reply_q));
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

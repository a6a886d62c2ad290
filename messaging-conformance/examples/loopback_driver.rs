//! A minimal driver, for driver authors: `loopback://`, an in-process broker that carries
//! bytes, the way a network driver would. It shows what a driver writes itself (broker I/O:
//! here, byte queues and bindings) and what it gets from the core (the oslo wire codec, reply
//! correlation, decode-or-drop, in-flight accounting). See docs/writing-a-driver.md.
//!
//! `cargo run -p messaging-conformance --example loopback_driver` makes one call through it;
//! `messaging-conformance/tests/loopback_driver.rs` runs the conformance suite against it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use messaging_core::driver::{
    decode_or_drop, Acknowledger, Capabilities, Driver, Feature, InFlight, InFlightGuard,
    IncomingNotification, IncomingRequest, NotificationSource, NotifyAddress, NotifyDriver,
    PendingReply, Replier, ReplyRouter, RpcAddress, RpcDriver, RpcListener, SendOptions,
    ServerAddress,
};
use messaging_core::wire::{
    self, ContextStyle, NotificationFormat, NotificationMessage, Reply, ReplyMessage,
    RequestMessage, RpcRequest,
};
use messaging_core::{MessagingError, Result, TransportUrl};

type Sender = async_channel::Sender<Vec<u8>>;
type Receiver = async_channel::Receiver<Vec<u8>>;

/// The broker: named queues (competing consumers share one), and routing keys bound to queues.
#[derive(Default)]
struct Broker {
    queues: HashMap<String, (Sender, Receiver)>,
    bindings: HashMap<String, Vec<String>>,
}

fn broker() -> std::sync::MutexGuard<'static, Broker> {
    static BROKER: OnceLock<Mutex<Broker>> = OnceLock::new();
    BROKER.get_or_init(Default::default).lock().expect("broker")
}

/// Declare `queue` (if new) bound to `key`; a receiver of it.
fn declare(queue: &str, key: &str) -> Receiver {
    let mut broker = broker();
    let bound = broker.bindings.entry(key.to_owned()).or_default();
    if !bound.iter().any(|q| q == queue) {
        bound.push(queue.to_owned());
    }
    let (_, rx) = broker
        .queues
        .entry(queue.to_owned())
        .or_insert_with(async_channel::unbounded);
    rx.clone()
}

/// Put `body` on every queue bound to `key`; how many took it (none: dropped, as a broker
/// drops an unroutable message).
fn publish(key: &str, body: &[u8]) -> usize {
    let broker = broker();
    let queues = broker.bindings.get(key).into_iter().flatten();
    let senders = queues.filter_map(|q| broker.queues.get(q).map(|(tx, _)| tx));
    senders
        .filter(|tx| tx.try_send(body.to_vec()).is_ok())
        .count()
}

/// Forget `queue`: its unread messages are gone (a server's own fanout queue).
fn delete(queue: &str) {
    let mut broker = broker();
    broker.queues.remove(queue);
    broker
        .bindings
        .values_mut()
        .for_each(|b| b.retain(|q| q != queue));
}

fn rpc_key(to: &RpcAddress) -> String {
    match (to.fanout, &to.server) {
        (true, _) => format!("fanout/{}/{}", to.exchange, to.topic),
        (false, Some(server)) => format!("{}/{}.{server}", to.exchange, to.topic),
        (false, None) => format!("{}/{}", to.exchange, to.topic),
    }
}

/// The driver: everything the core needs to know about `loopback://`.
pub struct LoopbackDriver;

#[async_trait]
impl Driver for LoopbackDriver {
    fn name(&self) -> &'static str {
        "loopback"
    }

    fn schemes(&self) -> &'static [&'static str] {
        &["loopback"]
    }

    fn capabilities(&self) -> Capabilities {
        // Said plainly, with the reason, so the conformance suite skips those cases visibly.
        Capabilities::full().without(Feature::FailFast, "unroutable calls are not reported")
    }

    async fn rpc(&self, _url: &TransportUrl) -> Result<Arc<dyn RpcDriver>> {
        let reply_q = format!("reply/{}", wire::new_id());
        let replies = ReplyRouter::new();
        let rx = declare(&reply_q, &reply_q);
        let router = replies.clone();
        tokio::spawn(async move {
            while let Ok(body) = rx.recv().await {
                let decoded = ReplyMessage::decode(&body);
                if let Some(reply) = decode_or_drop(decoded, "loopback", || "replies", || &body) {
                    router.deliver(&reply.msg_id.clone(), reply.into_reply());
                }
            }
        });
        Ok(Arc::new(LoopbackRpc { reply_q, replies }))
    }

    async fn notifications(&self, _url: &TransportUrl) -> Result<Arc<dyn NotifyDriver>> {
        Ok(Arc::new(LoopbackNotify))
    }
}

struct LoopbackRpc {
    reply_q: String,
    replies: ReplyRouter,
}

#[async_trait]
impl RpcDriver for LoopbackRpc {
    async fn cast(&self, to: &RpcAddress, request: &RpcRequest, _: &SendOptions) -> Result<()> {
        publish(
            &rpc_key(to),
            &RequestMessage::cast(request.clone()).encode()?,
        );
        Ok(())
    }

    async fn call(
        &self,
        to: &RpcAddress,
        request: &RpcRequest,
        options: &SendOptions,
    ) -> Result<PendingReply> {
        let reply_q = self.reply_q.clone();
        let message = RequestMessage::call(request.clone(), reply_q, options.call_monitor_timeout);
        let pending = self
            .replies
            .register(message.msg_id().expect("a call").to_owned());
        // Unserved, the call times out in the core (the pending reply never hears back).
        publish(&rpc_key(to), &message.encode()?);
        Ok(pending)
    }

    async fn listen(&self, on: &ServerAddress) -> Result<Box<dyn RpcListener>> {
        let (topic, server) = (rpc_key(&on.topic_address()), rpc_key(&on.server_address()));
        let fanout = rpc_key(&RpcAddress {
            fanout: true,
            ..on.topic_address()
        });
        let fanout_queue = format!("fanout/{}", wire::new_id());
        let queues = vec![
            (topic.clone(), declare(&topic, &topic)),
            (server.clone(), declare(&server, &server)),
            (fanout_queue.clone(), declare(&fanout_queue, &fanout)),
        ];
        Ok(Box::new(LoopbackListener {
            queues,
            fanout_queue,
        }))
    }
}

impl Drop for LoopbackRpc {
    fn drop(&mut self) {
        delete(&self.reply_q); // Ends the reply task: its queue has no sender left.
    }
}

/// The next message of any of `queues`, with its queue's name; `None` once all are closed.
/// Cancel-safe: a receive that did not complete takes nothing.
async fn recv_any(queues: &[(String, Receiver)]) -> Option<(String, Vec<u8>)> {
    let open = queues.iter().filter(|(_, rx)| !rx.is_closed());
    let receives: Vec<_> = open
        .map(|(name, rx)| Box::pin(async move { (name, rx.recv().await) }))
        .collect();
    if receives.is_empty() {
        return None;
    }
    match futures_util::future::select_all(receives).await.0 {
        (name, Ok(body)) => Some((name.clone(), body)),
        (_, Err(_)) => None,
    }
}

struct LoopbackListener {
    queues: Vec<(String, Receiver)>,
    fanout_queue: String,
}

#[async_trait]
impl RpcListener for LoopbackListener {
    async fn next(&mut self) -> Option<IncomingRequest> {
        loop {
            let (_, body) = recv_any(&self.queues).await?;
            let decoded = RequestMessage::decode(&body);
            let Some(message) = decode_or_drop(decoded, "loopback", || "rpc server", || &body)
            else {
                continue;
            };
            return Some(IncomingRequest::from_message(message, |call| {
                Box::new(LoopbackReplier {
                    reply_q: call.reply_q,
                    msg_id: call.msg_id,
                })
            }));
        }
    }

    async fn close(&mut self) {
        self.queues.clear();
        delete(&self.fanout_queue);
    }
}

struct LoopbackReplier {
    reply_q: String,
    msg_id: String,
}

#[async_trait]
impl Replier for LoopbackReplier {
    async fn send(&self, reply: Reply) -> Result<()> {
        let body = ReplyMessage::new(self.msg_id.clone(), reply).encode()?;
        match publish(&self.reply_q, &body) {
            0 => Err(MessagingError::DeliveryFailure(
                "the caller's reply queue is gone".into(),
            )),
            _ => Ok(()),
        }
    }
}

struct LoopbackNotify;

#[async_trait]
impl NotifyDriver for LoopbackNotify {
    async fn notify(
        &self,
        to: &NotifyAddress,
        message: &NotificationMessage,
        format: NotificationFormat,
        _: &SendOptions,
    ) -> Result<()> {
        // The default pool's queue exists from the first send on: kept until a listener comes.
        let key = format!("{}/{}", to.exchange, to.routing_key());
        declare(&key, &key);
        let unique_id = wire::new_id();
        publish(
            &key,
            &message.encode(format, ContextStyle::Flattened, Some(&unique_id))?,
        );
        Ok(())
    }

    async fn listen(
        &self,
        subscriptions: &[NotifyAddress],
        pool: Option<&str>,
    ) -> Result<Box<dyn NotificationSource>> {
        let mut queues: Vec<(String, Receiver)> = Vec::new();
        for to in subscriptions {
            let key = format!("{}/{}", to.exchange, to.routing_key());
            let queue = pool.map_or_else(|| key.clone(), |pool| format!("pool/{pool}/{key}"));
            let rx = declare(&queue, &key);
            if !queues.iter().any(|(name, _)| *name == queue) {
                queues.push((queue, rx));
            }
        }
        Ok(Box::new(LoopbackSource {
            queues,
            in_flight: InFlight::default(),
        }))
    }
}

struct LoopbackSource {
    queues: Vec<(String, Receiver)>,
    in_flight: InFlight,
}

#[async_trait]
impl NotificationSource for LoopbackSource {
    async fn next(&mut self) -> Option<IncomingNotification> {
        loop {
            let (queue, body) = recv_any(&self.queues).await?;
            let decoded = NotificationMessage::decode(&body);
            let Some((message, unique_id)) =
                decode_or_drop(decoded, "loopback", || &queue, || &body)
            else {
                continue;
            };
            let acker = LoopbackAcker {
                queue,
                body,
                _in_flight: self.in_flight.track(),
            };
            return Some(IncomingNotification {
                message: Box::new(message),
                unique_id,
                acker: Box::new(acker),
            });
        }
    }

    async fn close(&mut self) {
        self.queues.clear();
        // A broker connection would stay open until the handlers settled what they took.
        self.in_flight.wait_idle().await;
    }
}

/// Settles one notification: an ack forgets it, a requeue puts it back on its queue.
struct LoopbackAcker {
    queue: String,
    body: Vec<u8>,
    _in_flight: InFlightGuard,
}

#[async_trait]
impl Acknowledger for LoopbackAcker {
    async fn ack(self: Box<Self>) -> Result<()> {
        Ok(())
    }

    async fn requeue(self: Box<Self>) -> Result<()> {
        let sender = broker().queues.get(&self.queue).map(|(tx, _)| tx.clone());
        match sender.map(|tx| tx.try_send(self.body)) {
            Some(Ok(())) => Ok(()),
            _ => Err(MessagingError::DeliveryFailure("the queue is gone".into())),
        }
    }
}

#[allow(dead_code)] // The suite's test includes this file for the driver alone.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    use messaging_core::{Context, Endpoint, NoArgs, RemoteError, RpcClient, RpcServer, Target};
    messaging_core::install_driver(Arc::new(LoopbackDriver));
    let transport = messaging_core::get_rpc_transport("loopback://").await?;
    let server = RpcServer::new(transport.clone(), Target::topic("demo").server("s1"))
        .endpoint(
            Endpoint::new().method("hello", |_: Context, _: NoArgs| async {
                Ok::<_, RemoteError>("hello through loopback://")
            }),
        )
        .start()
        .await?;
    let client = RpcClient::new(transport, Target::topic("demo"));
    let answer: String = client.call(&Context::new(), "hello", &NoArgs {}).await?;
    println!("{answer}");
    server.shutdown().await;
    Ok(())
}

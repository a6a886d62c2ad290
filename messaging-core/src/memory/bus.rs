//! An in-process broker with oslo's rabbit topology: named queues shared by competing
//! consumers, bound to `(exchange, routing key)` or to a fanout exchange.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

use crate::wire::{NotificationMessage, ReplyMessage, RequestMessage};

/// What travels on the bus: structured messages, no bytes.
#[derive(Debug, Clone)]
pub(crate) enum Delivery {
    Request {
        message: RequestMessage,
        /// A call's expiry (oslo sets the AMQP expiration to the call timeout).
        expires: Option<Instant>,
    },
    Reply(ReplyMessage),
    Notification {
        message: NotificationMessage,
        unique_id: String,
    },
}

pub(crate) type QueueSender = async_channel::Sender<Delivery>;
pub(crate) type QueueReceiver = async_channel::Receiver<Delivery>;

#[derive(Default)]
struct State {
    queues: HashMap<String, (QueueSender, QueueReceiver)>,
    /// exchange → routing key → queue names.
    bindings: HashMap<String, HashMap<String, Vec<String>>>,
    /// fanout exchange → queue names.
    fanouts: HashMap<String, Vec<String>>,
}

/// One virtual host's broker.
#[derive(Default)]
pub(crate) struct Bus {
    state: Mutex<State>,
}

impl Bus {
    /// The bus of `vhost`, shared by every transport of this process that names it. It lives
    /// as long as one transport uses it.
    pub(crate) fn for_vhost(vhost: &str) -> Arc<Bus> {
        static BUSES: OnceLock<Mutex<HashMap<String, Weak<Bus>>>> = OnceLock::new();
        let mut buses = BUSES
            .get_or_init(Default::default)
            .lock()
            .expect("bus map poisoned");
        buses.retain(|_, bus| bus.strong_count() > 0);
        if let Some(bus) = buses.get(vhost).and_then(Weak::upgrade) {
            return bus;
        }
        let bus = Arc::new(Bus::default());
        buses.insert(vhost.to_owned(), Arc::downgrade(&bus));
        bus
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("bus state poisoned")
    }

    /// Declare a queue (idempotent) and return its ends.
    pub(crate) fn declare_queue(&self, name: &str) -> (QueueSender, QueueReceiver) {
        self.state()
            .queues
            .entry(name.to_owned())
            .or_insert_with(async_channel::unbounded)
            .clone()
    }

    /// Bind a queue to `(exchange, key)` (idempotent).
    pub(crate) fn bind(&self, queue: &str, exchange: &str, key: &str) {
        let mut state = self.state();
        let queues = state
            .bindings
            .entry(exchange.to_owned())
            .or_default()
            .entry(key.to_owned())
            .or_default();
        if !queues.iter().any(|q| q == queue) {
            queues.push(queue.to_owned());
        }
    }

    /// Bind a queue to a fanout exchange (idempotent).
    pub(crate) fn bind_fanout(&self, queue: &str, exchange: &str) {
        let mut state = self.state();
        let queues = state.fanouts.entry(exchange.to_owned()).or_default();
        if !queues.iter().any(|q| q == queue) {
            queues.push(queue.to_owned());
        }
    }

    /// Delete a queue and its bindings; its messages are gone.
    pub(crate) fn delete_queue(&self, name: &str) {
        let mut state = self.state();
        if let Some((tx, _)) = state.queues.remove(name) {
            tx.close();
        }
        for keys in state.bindings.values_mut() {
            for queues in keys.values_mut() {
                queues.retain(|q| q != name);
            }
        }
        for queues in state.fanouts.values_mut() {
            queues.retain(|q| q != name);
        }
    }

    /// Publish to the queues bound to `(exchange, key)`; returns how many got it. The empty
    /// exchange routes directly to the queue named `key`, as AMQP's default exchange.
    pub(crate) fn publish(&self, exchange: &str, key: &str, delivery: Delivery) -> usize {
        let senders: Vec<QueueSender> = {
            let state = self.state();
            if exchange.is_empty() {
                state
                    .queues
                    .get(key)
                    .map(|(tx, _)| tx.clone())
                    .into_iter()
                    .collect()
            } else {
                state
                    .bindings
                    .get(exchange)
                    .and_then(|keys| keys.get(key))
                    .into_iter()
                    .flatten()
                    .filter_map(|q| state.queues.get(q).map(|(tx, _)| tx.clone()))
                    .collect()
            }
        };
        deliver(senders, delivery)
    }

    /// Publish a copy to every queue bound to a fanout exchange.
    pub(crate) fn publish_fanout(&self, exchange: &str, delivery: Delivery) -> usize {
        let senders: Vec<QueueSender> = {
            let state = self.state();
            state
                .fanouts
                .get(exchange)
                .into_iter()
                .flatten()
                .filter_map(|q| state.queues.get(q).map(|(tx, _)| tx.clone()))
                .collect()
        };
        deliver(senders, delivery)
    }
}

fn deliver(senders: Vec<QueueSender>, delivery: Delivery) -> usize {
    senders
        .iter()
        .filter(|tx| tx.try_send(delivery.clone()).is_ok())
        .count()
}

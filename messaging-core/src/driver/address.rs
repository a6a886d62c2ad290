//! Resolved destinations: a [`crate::Target`] with its exchange filled in.

use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use super::FastHashMap;
use crate::error::MessagingError;
use crate::priority::Priority;

/// Where an RPC request goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RpcAddress {
    /// The exchange (the target's, else the transport's control exchange).
    pub exchange: String,
    /// The topic.
    pub topic: String,
    /// One server of the topic, if directed.
    pub server: Option<String>,
    /// To every server of the topic (casts only).
    pub fanout: bool,
}

impl RpcAddress {
    /// oslo's routing key: `topic` or `topic.server`.
    pub fn routing_key(&self) -> String {
        match &self.server {
            Some(server) => format!("{}.{server}", self.topic),
            None => self.topic.clone(),
        }
    }

    /// oslo's fanout exchange name: `<topic>_fanout` (the exchange is not part of it).
    pub fn fanout_exchange(&self) -> String {
        format!("{}_fanout", self.topic)
    }

    /// The fail-fast error for a request to this address: nobody took it within `waited`.
    pub fn no_server(&self, waited: Duration) -> MessagingError {
        MessagingError::NoServer {
            topic: self.topic.clone(),
            server: self.server.clone(),
            waited,
        }
    }
}

/// What an RPC server consumes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerAddress {
    /// The exchange.
    pub exchange: String,
    /// The topic the server serves.
    pub topic: String,
    /// The server's own name.
    pub server: String,
}

impl ServerAddress {
    /// The address of requests to any server of the topic.
    pub fn topic_address(&self) -> RpcAddress {
        RpcAddress {
            exchange: self.exchange.clone(),
            topic: self.topic.clone(),
            server: None,
            fanout: false,
        }
    }

    /// The address of requests to this server.
    pub fn server_address(&self) -> RpcAddress {
        RpcAddress {
            server: Some(self.server.clone()),
            ..self.topic_address()
        }
    }

    /// The address of fanout casts to the topic.
    pub fn fanout_address(&self) -> RpcAddress {
        RpcAddress {
            fanout: true,
            ..self.topic_address()
        }
    }
}

/// Where a notification goes, or what a listener subscribes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NotifyAddress {
    /// The exchange.
    pub exchange: String,
    /// The topic, e.g. `notifications`.
    pub topic: String,
    /// The priority.
    pub priority: Priority,
}

impl NotifyAddress {
    /// oslo's routing key, queue name and Kafka topic: `<topic>.<priority>`.
    pub fn routing_key(&self) -> String {
        format!("{}.{}", self.topic, self.priority.as_str())
    }
}

/// What a driver works out for each address it sends to (a broker destination, an AMQP 1.0
/// target), worked out once instead of on every send. Bounded: past
/// [`PerAddress::LIMIT`] addresses (casts to very many servers) it starts over.
///
/// ```
/// use messaging_core::driver::{PerAddress, RpcAddress};
///
/// let targets: PerAddress<RpcAddress, String> = PerAddress::default();
/// let to = RpcAddress { exchange: "openstack".into(), topic: "compute".into(), server: None, fanout: false };
/// let target = targets.get(&to, |to| format!("/amq/queue/{}", to.routing_key()));
/// assert_eq!(target, "/amq/queue/compute");
/// assert_eq!(targets.get(&to, |_| unreachable!("worked out once")), target);
/// ```
#[derive(Debug)]
pub struct PerAddress<A, V> {
    known: Mutex<FastHashMap<A, V>>,
}

impl<A, V> Default for PerAddress<A, V> {
    fn default() -> Self {
        Self {
            known: Mutex::default(),
        }
    }
}

impl<A: Clone + Eq + Hash, V: Clone> PerAddress<A, V> {
    /// How many addresses are remembered.
    pub const LIMIT: usize = 1024;

    /// The value of `address`, worked out by `work_out` the first time.
    pub fn get(&self, address: &A, work_out: impl FnOnce(&A) -> V) -> V {
        let mut known = self.known.lock().expect("per-address values poisoned");
        if let Some(value) = known.get(address) {
            return value.clone();
        }
        if known.len() >= Self::LIMIT {
            known.clear();
        }
        let value = work_out(address);
        known.insert(address.clone(), value.clone());
        value
    }

    /// How many addresses are remembered now.
    pub fn len(&self) -> usize {
        self.known
            .lock()
            .expect("per-address values poisoned")
            .len()
    }

    /// True when none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod per_address_tests {
    use super::*;

    /// Each address is worked out once, and what is remembered stays bounded.
    #[test]
    fn values_are_worked_out_once_and_bounded() {
        let values: PerAddress<String, usize> = PerAddress::default();
        let worked_out = std::cell::Cell::new(0);
        let get = |address: &str| {
            values.get(&address.to_owned(), |address| {
                worked_out.set(worked_out.get() + 1);
                address.len()
            })
        };
        assert_eq!((get("abc"), get("abc"), get("de")), (3, 3, 2));
        assert_eq!(worked_out.get(), 2);
        for i in 0..PerAddress::<String, usize>::LIMIT + 1 {
            get(&i.to_string());
        }
        assert!(values.len() <= PerAddress::<String, usize>::LIMIT);
    }
}

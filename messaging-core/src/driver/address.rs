//! Resolved destinations: a [`crate::Target`] with its exchange filled in.

use std::time::Duration;

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

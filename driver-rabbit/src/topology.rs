//! oslo's broker topology (oslo-wire.md §1): exchange, queue and binding names, their flags
//! and arguments, and declaring them on a channel.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};
use messaging_core::driver::{NotifyAddress, RpcAddress, ServerAddress};

use crate::config::RabbitConfig;
use crate::connection::{lapin_failure, Failure};

/// An exchange to declare.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ExchangeSpec {
    pub(crate) name: String,
    pub(crate) fanout: bool,
    pub(crate) durable: bool,
    pub(crate) auto_delete: bool,
}

/// A queue to declare.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct QueueSpec {
    pub(crate) name: String,
    pub(crate) durable: bool,
    pub(crate) auto_delete: bool,
    /// `x-expires`; a stream's retention (`x-max-age`).
    pub(crate) expires: Option<Duration>,
    /// `x-queue-type: quorum`.
    pub(crate) quorum: bool,
    /// `x-delivery-limit` (quorum queues).
    pub(crate) delivery_limit: Option<u64>,
    /// `x-max-in-memory-length` (quorum queues).
    pub(crate) max_in_memory_length: Option<u64>,
    /// `x-max-in-memory-bytes` (quorum queues).
    pub(crate) max_in_memory_bytes: Option<u64>,
    /// `x-ha-policy: all`.
    pub(crate) ha_all: bool,
    /// `x-queue-type: stream`, with no other argument than `x-max-age`.
    pub(crate) stream: bool,
}

/// One step of a topology.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Declaration {
    Exchange(ExchangeSpec),
    Queue(QueueSpec),
    Bind {
        queue: String,
        exchange: String,
        key: String,
    },
}

/// Where messages to one address are published, and what to declare before.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Destination {
    pub(crate) exchange: String,
    pub(crate) routing_key: String,
    pub(crate) declarations: Vec<Declaration>,
}

/// The control (or target) exchange: a topic exchange.
pub(crate) fn topic_exchange(config: &RabbitConfig, name: &str) -> ExchangeSpec {
    ExchangeSpec {
        name: name.to_owned(),
        fanout: false,
        durable: config.amqp_durable_queues,
        auto_delete: config.amqp_auto_delete,
    }
}

/// `<topic>_fanout`: auto-delete, durable only with transient quorum queues.
pub(crate) fn fanout_exchange(config: &RabbitConfig, address: &RpcAddress) -> ExchangeSpec {
    ExchangeSpec {
        name: address.fanout_exchange(),
        fanout: true,
        durable: config.rabbit_transient_quorum_queue,
        auto_delete: true,
    }
}

/// A queue with oslo's arguments for its type (quorum or not), not durable, not auto-delete,
/// with no `x-expires`.
fn queue(config: &RabbitConfig, name: &str, quorum: bool) -> QueueSpec {
    let limit = |value: u64| (quorum && value > 0).then_some(value);
    QueueSpec {
        name: name.to_owned(),
        durable: false,
        auto_delete: false,
        expires: None,
        quorum,
        delivery_limit: limit(config.rabbit_quorum_delivery_limit),
        max_in_memory_length: limit(config.rabbit_quorum_max_memory_length),
        max_in_memory_bytes: limit(config.rabbit_quorum_max_memory_bytes),
        ha_all: config.rabbit_ha_queues,
        stream: false,
    }
}

/// A long-lived queue: `<topic>`, `<topic>.<server>`, `<topic>.<priority>`, `<pool>`.
pub(crate) fn topic_queue(config: &RabbitConfig, name: &str) -> QueueSpec {
    let quorum = config.rabbit_quorum_queue;
    QueueSpec {
        durable: config.amqp_durable_queues || quorum,
        auto_delete: config.amqp_auto_delete && !quorum,
        ..queue(config, name, quorum)
    }
}

/// A queue of one process: `reply_<uuid>` or `<topic>_fanout_<uuid>`, with `x-expires`.
pub(crate) fn transient_queue(config: &RabbitConfig, name: &str) -> QueueSpec {
    let quorum = config.rabbit_transient_quorum_queue;
    QueueSpec {
        durable: quorum,
        expires: config.transient_ttl(),
        ..queue(config, name, quorum)
    }
}

/// The fanout queue of a server: its own transient queue, or with `rabbit_stream_fanout`
/// the topic's stream, durable, kept `rabbit_transient_queues_ttl` (`x-max-age`).
pub(crate) fn fanout_queue(config: &RabbitConfig, name: &str) -> QueueSpec {
    if !config.rabbit_stream_fanout {
        return transient_queue(config, name);
    }
    QueueSpec {
        name: name.to_owned(),
        durable: true,
        auto_delete: false,
        expires: config.transient_ttl(),
        quorum: false,
        delivery_limit: None,
        max_in_memory_length: None,
        max_in_memory_bytes: None,
        ha_all: false,
        stream: true,
    }
}

/// Where an RPC request is published, and what to declare first (the exchange, as oslo's
/// publisher does).
pub(crate) fn rpc_destination(config: &RabbitConfig, to: &RpcAddress) -> Destination {
    let (exchange, routing_key) = if to.fanout {
        (fanout_exchange(config, to), String::new())
    } else {
        (topic_exchange(config, &to.exchange), to.routing_key())
    };
    Destination {
        exchange: exchange.name.clone(),
        routing_key,
        declarations: vec![Declaration::Exchange(exchange)],
    }
}

/// What an RPC server declares and consumes: `<topic>`, `<topic>.<server>` (bound to the
/// exchange with their own names) and `<topic>_fanout_<uuid>` (bound to `<topic>_fanout`).
pub(crate) fn rpc_server(
    config: &RabbitConfig,
    on: &ServerAddress,
    fanout_queue: &str,
) -> (Vec<Declaration>, Vec<String>) {
    let exchange = topic_exchange(config, &on.exchange);
    let mut declarations = vec![Declaration::Exchange(exchange.clone())];
    let mut queues = Vec::with_capacity(3);
    for address in [on.topic_address(), on.server_address()] {
        let name = address.routing_key();
        declarations.push(Declaration::Queue(topic_queue(config, &name)));
        declarations.push(Declaration::Bind {
            queue: name.clone(),
            exchange: exchange.name.clone(),
            key: name.clone(),
        });
        queues.push(name);
    }
    let fanout = fanout_exchange(config, &on.fanout_address());
    declarations.push(Declaration::Exchange(fanout.clone()));
    declarations.push(Declaration::Queue(self::fanout_queue(config, fanout_queue)));
    declarations.push(Declaration::Bind {
        queue: fanout_queue.to_owned(),
        exchange: fanout.name,
        key: on.topic.clone(),
    });
    queues.push(fanout_queue.to_owned());
    (declarations, queues)
}

/// What a notifier declares before publishing to `to` (once per channel): the exchange and
/// the `<topic>.<priority>` queue bound to it, so that nothing is lost before a listener exists.
pub(crate) fn notify_destination(config: &RabbitConfig, to: &NotifyAddress) -> Destination {
    let key = to.routing_key();
    let exchange = topic_exchange(config, &to.exchange);
    let declarations = vec![
        Declaration::Exchange(exchange.clone()),
        Declaration::Queue(topic_queue(config, &key)),
        Declaration::Bind {
            queue: key.clone(),
            exchange: exchange.name.clone(),
            key: key.clone(),
        },
    ];
    Destination {
        exchange: exchange.name,
        routing_key: key,
        declarations,
    }
}

/// What a notification listener declares and consumes: one `<topic>.<priority>` queue per
/// subscription, or one `<pool>` queue bound once per subscription.
pub(crate) fn notify_listener(
    config: &RabbitConfig,
    subscriptions: &[NotifyAddress],
    pool: Option<&str>,
) -> (Vec<Declaration>, Vec<String>) {
    let mut declarations: Vec<Declaration> = Vec::new();
    let mut queues: Vec<String> = Vec::new();
    let mut add = |declaration: Declaration| {
        if !declarations.contains(&declaration) {
            declarations.push(declaration);
        }
    };
    for subscription in subscriptions {
        let key = subscription.routing_key();
        let queue = pool.map_or_else(|| key.clone(), str::to_owned);
        let exchange = topic_exchange(config, &subscription.exchange);
        add(Declaration::Exchange(exchange.clone()));
        add(Declaration::Queue(topic_queue(config, &queue)));
        add(Declaration::Bind {
            queue: queue.clone(),
            exchange: exchange.name,
            key,
        });
        if !queues.contains(&queue) {
            queues.push(queue);
        }
    }
    (declarations, queues)
}

/// The queue arguments oslo sets.
fn queue_arguments(queue: &QueueSpec) -> FieldTable {
    let mut args = FieldTable::default();
    let string = |value: &str| AMQPValue::LongString(LongString::from(value));
    if queue.stream {
        args.insert("x-queue-type".into(), string("stream"));
        if let Some(age) = queue.expires {
            args.insert("x-max-age".into(), string(&format!("{}s", age.as_secs())));
        }
        return args;
    }
    let int = |value: u64| match i32::try_from(value) {
        Ok(value) => AMQPValue::LongInt(value),
        Err(_) => AMQPValue::LongLongInt(i64::try_from(value).unwrap_or(i64::MAX)),
    };
    if queue.ha_all {
        args.insert("x-ha-policy".into(), string("all"));
    }
    if queue.quorum {
        args.insert("x-queue-type".into(), string("quorum"));
    }
    for (name, value) in [
        ("x-delivery-limit", queue.delivery_limit),
        ("x-max-in-memory-length", queue.max_in_memory_length),
        ("x-max-in-memory-bytes", queue.max_in_memory_bytes),
    ] {
        if let Some(value) = value {
            args.insert(name.into(), int(value));
        }
    }
    if let Some(expires) = queue.expires {
        args.insert("x-expires".into(), int(expires.as_millis() as u64));
    }
    args
}

/// Declare one step on `channel`.
pub(crate) async fn declare(channel: &Channel, declaration: &Declaration) -> Result<(), Failure> {
    let result = match declaration {
        Declaration::Exchange(exchange) => {
            channel
                .exchange_declare(
                    exchange.name.as_str().into(),
                    if exchange.fanout {
                        ExchangeKind::Fanout
                    } else {
                        ExchangeKind::Topic
                    },
                    ExchangeDeclareOptions {
                        durable: exchange.durable,
                        auto_delete: exchange.auto_delete,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
        }
        Declaration::Queue(queue) => channel
            .queue_declare(
                queue.name.as_str().into(),
                QueueDeclareOptions {
                    durable: queue.durable,
                    auto_delete: queue.auto_delete,
                    ..QueueDeclareOptions::default()
                },
                queue_arguments(queue),
            )
            .await
            .map(drop),
        Declaration::Bind {
            queue,
            exchange,
            key,
        } => {
            channel
                .queue_bind(
                    queue.as_str().into(),
                    exchange.as_str().into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
        }
    };
    result.map_err(|e| lapin_failure(&format!("declaring {declaration:?}"), &e))
}

/// Declare every step, in order.
pub(crate) async fn declare_all(
    channel: &Channel,
    declarations: &[Declaration],
) -> Result<(), Failure> {
    for declaration in declarations {
        declare(channel, declaration).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_core::Priority;

    fn server() -> ServerAddress {
        ServerAddress {
            exchange: "openstack".into(),
            topic: "testtopic".into(),
            server: "srv1".into(),
        }
    }

    #[test]
    fn rpc_server_topology_is_oslos() {
        let config = RabbitConfig::default();
        let (declarations, queues) = rpc_server(&config, &server(), "testtopic_fanout_abc");
        assert_eq!(
            queues,
            ["testtopic", "testtopic.srv1", "testtopic_fanout_abc"]
        );
        assert_eq!(
            declarations[0],
            Declaration::Exchange(ExchangeSpec {
                name: "openstack".into(),
                fanout: false,
                durable: false,
                auto_delete: false
            })
        );
        assert!(declarations.contains(&Declaration::Bind {
            queue: "testtopic.srv1".into(),
            exchange: "openstack".into(),
            key: "testtopic.srv1".into()
        }));
        assert!(declarations.contains(&Declaration::Exchange(ExchangeSpec {
            name: "testtopic_fanout".into(),
            fanout: true,
            durable: false,
            auto_delete: true
        })));
        let Some(Declaration::Queue(fanout)) = declarations
            .iter()
            .find(|d| matches!(d, Declaration::Queue(q) if q.name == "testtopic_fanout_abc"))
        else {
            panic!("no fanout queue")
        };
        assert_eq!(fanout.expires, Some(Duration::from_secs(1800)));
        assert!(!fanout.durable && !fanout.auto_delete);
        assert!(declarations.contains(&Declaration::Bind {
            queue: "testtopic_fanout_abc".into(),
            exchange: "testtopic_fanout".into(),
            key: "testtopic".into()
        }));
    }

    #[test]
    fn fanout_casts_go_to_the_fanout_exchange_with_an_empty_key() {
        let config = RabbitConfig::default();
        let fanout = rpc_destination(&config, &server().fanout_address());
        assert_eq!(
            (fanout.exchange.as_str(), fanout.routing_key.as_str()),
            ("testtopic_fanout", "")
        );
        let direct = rpc_destination(&config, &server().server_address());
        assert_eq!(
            (direct.exchange.as_str(), direct.routing_key.as_str()),
            ("openstack", "testtopic.srv1")
        );
    }

    #[test]
    fn pools_bind_one_queue_per_key() {
        let config = RabbitConfig::default();
        let subs: Vec<NotifyAddress> = [Priority::Info, Priority::Audit]
            .into_iter()
            .map(|priority| NotifyAddress {
                exchange: "openstack".into(),
                topic: "pooltopic".into(),
                priority,
            })
            .collect();
        let (declarations, queues) = notify_listener(&config, &subs, Some("billing"));
        assert_eq!(queues, ["billing"]);
        let binds: Vec<_> = declarations
            .iter()
            .filter_map(|d| match d {
                Declaration::Bind { queue, key, .. } => Some((queue.as_str(), key.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(
            binds,
            [
                ("billing", "pooltopic.info"),
                ("billing", "pooltopic.audit")
            ]
        );
        let (_, queues) = notify_listener(&config, &subs, None);
        assert_eq!(queues, ["pooltopic.info", "pooltopic.audit"]);
    }

    #[test]
    fn quorum_queues_are_durable_with_arguments() {
        let config = RabbitConfig {
            rabbit_quorum_queue: true,
            rabbit_quorum_delivery_limit: 5,
            ..RabbitConfig::default()
        };
        let queue = topic_queue(&config, "t");
        assert!(queue.durable && !queue.auto_delete);
        let args = queue_arguments(&queue);
        assert!(args.contains_key("x-queue-type") && args.contains_key("x-delivery-limit"));
        assert!(queue_arguments(&topic_queue(&RabbitConfig::default(), "t"))
            .inner()
            .is_empty());
    }

    #[test]
    fn quorum_memory_limits_apply_to_quorum_queues_only() {
        let config = RabbitConfig {
            rabbit_quorum_queue: true,
            rabbit_quorum_max_memory_length: 10,
            rabbit_quorum_max_memory_bytes: 1 << 33,
            ..RabbitConfig::default()
        };
        let args = queue_arguments(&topic_queue(&config, "t"));
        assert_eq!(
            args.inner().get("x-max-in-memory-length"),
            Some(&AMQPValue::LongInt(10))
        );
        assert_eq!(
            args.inner().get("x-max-in-memory-bytes"),
            Some(&AMQPValue::LongLongInt(1 << 33))
        );
        // Transient queues are classic here: no quorum arguments.
        let args = queue_arguments(&transient_queue(&config, "reply_x"));
        assert!(!args.contains_key("x-max-in-memory-length"), "{args:?}");
    }

    #[test]
    fn stream_fanout_is_one_stream_with_a_max_age() {
        let config = RabbitConfig {
            rabbit_stream_fanout: true,
            rabbit_transient_quorum_queue: true,
            rabbit_qos_prefetch_count: 10,
            rabbit_transient_queues_ttl: 600,
            rabbit_ha_queues: true,
            ..RabbitConfig::default()
        };
        let queue = fanout_queue(&config, "t_fanout");
        assert!(queue.durable && !queue.auto_delete);
        let args = queue_arguments(&queue);
        let mut names: Vec<&str> = args.inner().keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["x-max-age", "x-queue-type"]);
        assert_eq!(
            args.inner().get("x-max-age"),
            Some(&AMQPValue::LongString("600s".into()))
        );
    }
}

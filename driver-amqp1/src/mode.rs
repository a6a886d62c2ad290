//! Router mode versus broker mode: which node each messaging pattern uses.
//!
//! * **Router mode** (qdrouterd / skupper-router, or any peer that is not RabbitMQ): oslo's
//!   legacy or routable addresses (see [`crate::addressing`]); the router's per-prefix
//!   distribution (balanced / closest / multicast) does the routing; replies come back on one
//!   dynamic receiver link per transport.
//! * **Broker mode** (RabbitMQ 3.x's AMQP 1.0 endpoint, which accepts only `/queue/Q`,
//!   `/amq/queue/Q`, `/exchange/X/RK` and `/topic/RK`, and has no dynamic nodes): oslo's legacy
//!   address strings become queue names and routing keys:
//!
//! | pattern | sender target | receiver source |
//! | --- | --- | --- |
//! | call/cast to a topic | `/amq/queue/unicast.<exchange>.<topic>` (no declare: dropped if no server ever declared it, as with oslo's rabbit driver) | `/queue/unicast.<exchange>.<topic>` (declares; servers share it) |
//! | call/cast to a server | `/amq/queue/exclusive.<exchange>.<topic>.<server>` | `/queue/exclusive.<exchange>.<topic>.<server>` |
//! | fanout cast | `/topic/broadcast.<exchange>.<topic>.all` (via `amq.topic`) | `/topic/broadcast.<exchange>.<topic>.all`: RabbitMQ gives each server link its own `amq.gen-*` queue bound to `amq.topic` |
//! | reply | `/amq/queue/reply_<uuid>` (the request's `reply-to`) | `/queue/reply_<uuid>`, one per RPC transport |
//! | notification | `/queue/unicast.<exchange>.<topic>.<priority>` (declares: kept until a listener comes) | the same (listeners share it) |
//!
//! A virtual host is inserted after the prefix with `pseudo_vhost`, as in the legacy scheme.

use messaging_core::driver::{NotifyAddress, RpcAddress, ServerAddress};

use crate::addressing::{Addresser, Scheme};
use crate::config::{AddressingMode, Amqp1Config};

/// The kind of peer the driver talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerMode {
    /// A message router, with oslo's addresses of this scheme.
    Router(Scheme),
    /// RabbitMQ's AMQP 1.0 endpoint.
    Broker,
}

impl PeerMode {
    /// Decide the mode from the configured addressing mode and the peer's Open `product`.
    pub fn decide(configured: AddressingMode, product: Option<&str>) -> Self {
        match configured {
            AddressingMode::Routable => PeerMode::Router(Scheme::Routable),
            AddressingMode::Legacy => PeerMode::Router(Scheme::Legacy),
            AddressingMode::Broker => PeerMode::Broker,
            AddressingMode::Dynamic => match product {
                Some(p) if p.to_ascii_lowercase().contains("rabbitmq") => PeerMode::Broker,
                other => PeerMode::Router(Scheme::for_product(other)),
            },
        }
    }

    /// True for broker mode.
    pub fn is_broker(self) -> bool {
        self == PeerMode::Broker
    }
}

/// Where requests, replies and notifications go in one mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    mode: PeerMode,
    addresser: Addresser,
}

/// Escape a queue name or routing key for RabbitMQ's `/queue/<name>` syntax (a `/` in a name
/// must be written `%2F`).
fn escape(name: &str) -> String {
    name.replace('%', "%25").replace('/', "%2F")
}

impl Endpoints {
    /// The endpoints of `mode` with the prefixes of `config` and, with `pseudo_vhost`, the
    /// virtual host `vhost`.
    pub fn new(mode: PeerMode, config: &Amqp1Config, vhost: Option<&str>) -> Self {
        let vhost = if config.pseudo_vhost { vhost } else { None };
        let scheme = match mode {
            PeerMode::Router(scheme) => scheme,
            PeerMode::Broker => Scheme::Legacy,
        };
        Self {
            mode,
            addresser: Addresser::new(scheme, config, vhost),
        }
    }

    /// The mode.
    pub fn mode(&self) -> PeerMode {
        self.mode
    }

    /// The sender target of a request to `to`.
    pub fn request_target(&self, to: &RpcAddress) -> String {
        let address = self.addresser.rpc(to);
        match self.mode {
            PeerMode::Router(_) => address,
            PeerMode::Broker if to.fanout => format!("/topic/{}", escape(&address)),
            PeerMode::Broker => format!("/amq/queue/{}", escape(&address)),
        }
    }

    /// The receiver sources of a server: its topic, its own address, the topic's fanout.
    pub fn server_sources(&self, on: &ServerAddress) -> [String; 3] {
        let topic = self.addresser.anycast(&on.exchange, &on.topic);
        let server = self.addresser.unicast(&on.exchange, &on.topic, &on.server);
        let fanout = self.addresser.multicast(&on.exchange, &on.topic);
        match self.mode {
            PeerMode::Router(_) => [topic, server, fanout],
            PeerMode::Broker => [
                format!("/queue/{}", escape(&topic)),
                format!("/queue/{}", escape(&server)),
                format!("/topic/{}", escape(&fanout)),
            ],
        }
    }

    /// The sender target of a notification to `to`.
    pub fn notify_target(&self, to: &NotifyAddress) -> String {
        self.notify_source(to)
    }

    /// The receiver source of a listener of `to`.
    pub fn notify_source(&self, to: &NotifyAddress) -> String {
        let address = self.addresser.notify(to);
        match self.mode {
            PeerMode::Router(_) => address,
            PeerMode::Broker => format!("/queue/{}", escape(&address)),
        }
    }

    /// Broker mode: the reply queue's receiver source and the `reply-to` that servers send
    /// to, for a queue named `queue`.
    pub fn reply_queue(queue: &str) -> (String, String) {
        (
            format!("/queue/{}", escape(queue)),
            format!("/amq/queue/{}", escape(queue)),
        )
    }
}

#[cfg(test)]
mod tests {
    use messaging_core::Priority;

    use super::*;

    fn to(server: Option<&str>, fanout: bool) -> RpcAddress {
        RpcAddress {
            exchange: "openstack".into(),
            topic: "testtopic".into(),
            server: server.map(Into::into),
            fanout,
        }
    }

    #[test]
    fn decide_modes() {
        use AddressingMode::*;
        assert_eq!(
            PeerMode::decide(Dynamic, Some("RabbitMQ")),
            PeerMode::Broker
        );
        assert_eq!(
            PeerMode::decide(Dynamic, Some("qpid-dispatch-router")),
            PeerMode::Router(Scheme::Routable)
        );
        assert_eq!(
            PeerMode::decide(Dynamic, None),
            PeerMode::Router(Scheme::Legacy)
        );
        assert_eq!(
            PeerMode::decide(Dynamic, Some("qpid-cpp")),
            PeerMode::Router(Scheme::Legacy)
        );
        assert_eq!(PeerMode::decide(Broker, None), PeerMode::Broker);
        assert_eq!(
            PeerMode::decide(Legacy, Some("RabbitMQ")),
            PeerMode::Router(Scheme::Legacy)
        );
        assert_eq!(
            PeerMode::decide(Routable, Some("RabbitMQ")),
            PeerMode::Router(Scheme::Routable)
        );
    }

    /// The broker-mode mapping table of the module docs.
    #[test]
    fn broker_mapping() {
        let config = Amqp1Config::default();
        let e = Endpoints::new(PeerMode::Broker, &config, None);
        assert_eq!(
            e.request_target(&to(None, false)),
            "/amq/queue/unicast.openstack.testtopic"
        );
        assert_eq!(
            e.request_target(&to(Some("srv1"), false)),
            "/amq/queue/exclusive.openstack.testtopic.srv1"
        );
        assert_eq!(
            e.request_target(&to(None, true)),
            "/topic/broadcast.openstack.testtopic.all"
        );
        let server = ServerAddress {
            exchange: "openstack".into(),
            topic: "testtopic".into(),
            server: "srv1".into(),
        };
        assert_eq!(
            e.server_sources(&server),
            [
                "/queue/unicast.openstack.testtopic",
                "/queue/exclusive.openstack.testtopic.srv1",
                "/topic/broadcast.openstack.testtopic.all",
            ]
        );
        let info = NotifyAddress {
            exchange: "openstack".into(),
            topic: "notifications".into(),
            priority: Priority::Info,
        };
        assert_eq!(
            e.notify_target(&info),
            "/queue/unicast.openstack.notifications.info"
        );
        assert_eq!(e.notify_source(&info), e.notify_target(&info));
        assert_eq!(
            Endpoints::reply_queue("reply_abc"),
            (
                "/queue/reply_abc".to_owned(),
                "/amq/queue/reply_abc".to_owned()
            )
        );
        let v1 = Endpoints::new(PeerMode::Broker, &config, Some("v1"));
        assert_eq!(
            v1.request_target(&to(None, false)),
            "/amq/queue/unicast.v1.openstack.testtopic"
        );
        let no_pseudo = Amqp1Config {
            pseudo_vhost: false,
            ..Amqp1Config::default()
        };
        let plain = Endpoints::new(PeerMode::Broker, &no_pseudo, Some("v1"));
        assert_eq!(
            plain.request_target(&to(None, false)),
            "/amq/queue/unicast.openstack.testtopic"
        );
        let odd = RpcAddress {
            topic: "a/b%c".into(),
            ..to(None, false)
        };
        assert_eq!(
            e.request_target(&odd),
            "/amq/queue/unicast.openstack.a%2Fb%25c"
        );
    }

    #[test]
    fn router_mode_uses_oslo_addresses() {
        let config = Amqp1Config::default();
        let e = Endpoints::new(PeerMode::Router(Scheme::Routable), &config, Some("v1"));
        assert_eq!(
            e.request_target(&to(Some("srv1"), false)),
            "openstack.org/om/rpc/unicast/v1/openstack/testtopic/srv1"
        );
        let e = Endpoints::new(PeerMode::Router(Scheme::Legacy), &config, None);
        assert_eq!(
            e.request_target(&to(None, true)),
            "broadcast.openstack.testtopic.all"
        );
    }
}

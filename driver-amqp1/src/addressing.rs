//! oslo's two AMQP 1.0 address schemes (oslo-wire.md §9.1), as pure functions.
//!
//! * legacy: `$prefix[.$vhost].$exchange.$topic[.$server|.all]`
//!   (`unicast.` = any server of a topic and notifications, `exclusive.` = one server,
//!   `broadcast.….all` = fanout);
//! * routable: `$prefix/$cast[/$vhost]/$exchange/$topic[/$server]` under
//!   `openstack.org/om/rpc` and `openstack.org/om/notify`.
//!
//! Every prefix is configurable ([`Amqp1Config`]). The virtual host is inserted only with
//! `pseudo_vhost` (the caller passes `None` otherwise).

use messaging_core::driver::{NotifyAddress, RpcAddress};

use crate::config::Amqp1Config;

/// Which of oslo's schemes to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `unicast.…`, `exclusive.…`, `broadcast.….all`.
    Legacy,
    /// `openstack.org/om/{rpc,notify}/{anycast,unicast,multicast}/…`.
    Routable,
}

impl Scheme {
    /// oslo's `dynamic` rule: a peer announcing `qpid-cpp`, or no product at all, gets legacy
    /// addresses; anything else routable ones.
    pub fn for_product(product: Option<&str>) -> Self {
        match product {
            None => Scheme::Legacy,
            Some(p) if p.eq_ignore_ascii_case("qpid-cpp") => Scheme::Legacy,
            Some(_) => Scheme::Routable,
        }
    }
}

/// Builds the addresses of one scheme with the configured prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addresser {
    scheme: Scheme,
    vhost: Option<String>,
    server_request_prefix: String,
    broadcast_prefix: String,
    group_request_prefix: String,
    rpc_address_prefix: String,
    notify_address_prefix: String,
    multicast_address: String,
    unicast_address: String,
    anycast_address: String,
}

impl Addresser {
    /// An addresser for `scheme` with the prefixes of `config`. `vhost` is inserted into every
    /// address when given (pass it only with `pseudo_vhost`; `/` and empty mean none).
    pub fn new(scheme: Scheme, config: &Amqp1Config, vhost: Option<&str>) -> Self {
        Self {
            scheme,
            vhost: vhost
                .filter(|v| !v.is_empty() && *v != "/")
                .map(str::to_owned),
            server_request_prefix: config.server_request_prefix.clone(),
            broadcast_prefix: config.broadcast_prefix.clone(),
            group_request_prefix: config.group_request_prefix.clone(),
            rpc_address_prefix: config.rpc_address_prefix.clone(),
            notify_address_prefix: config.notify_address_prefix.clone(),
            multicast_address: config.multicast_address.clone(),
            unicast_address: config.unicast_address.clone(),
            anycast_address: config.anycast_address.clone(),
        }
    }

    /// The scheme built.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    fn legacy(&self, prefix: &str, rest: &[&str]) -> String {
        let mut parts: Vec<&str> = vec![prefix];
        if let Some(vhost) = &self.vhost {
            parts.push(vhost);
        }
        parts.extend_from_slice(rest);
        parts.join(".")
    }

    fn routable(&self, prefix: &str, cast: &str, rest: &[&str]) -> String {
        let mut parts: Vec<&str> = vec![prefix, cast];
        if let Some(vhost) = &self.vhost {
            parts.push(vhost);
        }
        parts.extend_from_slice(rest);
        parts.join("/")
    }

    /// Requests to any server of `topic`.
    pub fn anycast(&self, exchange: &str, topic: &str) -> String {
        match self.scheme {
            Scheme::Legacy => self.legacy(&self.group_request_prefix, &[exchange, topic]),
            Scheme::Routable => self.routable(
                &self.rpc_address_prefix,
                &self.anycast_address,
                &[exchange, topic],
            ),
        }
    }

    /// Requests to `server` of `topic`.
    pub fn unicast(&self, exchange: &str, topic: &str, server: &str) -> String {
        match self.scheme {
            Scheme::Legacy => self.legacy(&self.server_request_prefix, &[exchange, topic, server]),
            Scheme::Routable => self.routable(
                &self.rpc_address_prefix,
                &self.unicast_address,
                &[exchange, topic, server],
            ),
        }
    }

    /// Fanout casts to every server of `topic`.
    pub fn multicast(&self, exchange: &str, topic: &str) -> String {
        match self.scheme {
            Scheme::Legacy => self.legacy(&self.broadcast_prefix, &[exchange, topic, "all"]),
            Scheme::Routable => self.routable(
                &self.rpc_address_prefix,
                &self.multicast_address,
                &[exchange, topic],
            ),
        }
    }

    /// Where an RPC request to `to` goes.
    pub fn rpc(&self, to: &RpcAddress) -> String {
        if to.fanout {
            self.multicast(&to.exchange, &to.topic)
        } else if let Some(server) = &to.server {
            self.unicast(&to.exchange, &to.topic, server)
        } else {
            self.anycast(&to.exchange, &to.topic)
        }
    }

    /// Where a notification to `to` goes (and what a listener of it consumes).
    pub fn notify(&self, to: &NotifyAddress) -> String {
        let topic = to.routing_key();
        match self.scheme {
            Scheme::Legacy => self.legacy(&self.group_request_prefix, &[&to.exchange, &topic]),
            Scheme::Routable => self.routable(
                &self.notify_address_prefix,
                &self.anycast_address,
                &[&to.exchange, &topic],
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use messaging_core::Priority;

    use super::*;

    fn rpc(exchange: &str, server: Option<&str>, fanout: bool) -> RpcAddress {
        RpcAddress {
            exchange: exchange.into(),
            topic: "testtopic".into(),
            server: server.map(Into::into),
            fanout,
        }
    }

    fn info() -> NotifyAddress {
        NotifyAddress {
            exchange: "openstack".into(),
            topic: "notifications".into(),
            priority: Priority::Info,
        }
    }

    /// Every row of oslo-wire.md §9.1, both schemes, with and without a virtual host.
    #[test]
    fn oslo_table() {
        let config = Amqp1Config::default();
        let rows: &[(Scheme, Option<&str>, [&str; 5])] = &[
            (
                Scheme::Legacy,
                None,
                [
                    "unicast.openstack.testtopic",
                    "exclusive.openstack.testtopic.srv1",
                    "broadcast.openstack.testtopic.all",
                    "unicast.openstack.notifications.info",
                    "unicast.nova.testtopic",
                ],
            ),
            (
                Scheme::Routable,
                None,
                [
                    "openstack.org/om/rpc/anycast/openstack/testtopic",
                    "openstack.org/om/rpc/unicast/openstack/testtopic/srv1",
                    "openstack.org/om/rpc/multicast/openstack/testtopic",
                    "openstack.org/om/notify/anycast/openstack/notifications.info",
                    "openstack.org/om/rpc/anycast/nova/testtopic",
                ],
            ),
            (
                Scheme::Legacy,
                Some("v1"),
                [
                    "unicast.v1.openstack.testtopic",
                    "exclusive.v1.openstack.testtopic.srv1",
                    "broadcast.v1.openstack.testtopic.all",
                    "unicast.v1.openstack.notifications.info",
                    "unicast.v1.nova.testtopic",
                ],
            ),
            (
                Scheme::Routable,
                Some("v1"),
                [
                    "openstack.org/om/rpc/anycast/v1/openstack/testtopic",
                    "openstack.org/om/rpc/unicast/v1/openstack/testtopic/srv1",
                    "openstack.org/om/rpc/multicast/v1/openstack/testtopic",
                    "openstack.org/om/notify/anycast/v1/openstack/notifications.info",
                    "openstack.org/om/rpc/anycast/v1/nova/testtopic",
                ],
            ),
        ];
        for (scheme, vhost, [anycast, unicast, multicast, notify, nova]) in rows {
            let a = Addresser::new(*scheme, &config, *vhost);
            let what = format!("{scheme:?} vhost={vhost:?}");
            assert_eq!(a.rpc(&rpc("openstack", None, false)), *anycast, "{what}");
            assert_eq!(
                a.rpc(&rpc("openstack", Some("srv1"), false)),
                *unicast,
                "{what}"
            );
            assert_eq!(a.rpc(&rpc("openstack", None, true)), *multicast, "{what}");
            // A fanout to a named server is still a fanout.
            assert_eq!(
                a.rpc(&rpc("openstack", Some("srv1"), true)),
                *multicast,
                "{what}"
            );
            assert_eq!(a.notify(&info()), *notify, "{what}");
            assert_eq!(a.rpc(&rpc("nova", None, false)), *nova, "{what}");
        }
    }

    #[test]
    fn default_vhost_is_no_vhost() {
        let config = Amqp1Config::default();
        for vhost in [Some("/"), Some(""), None] {
            let a = Addresser::new(Scheme::Legacy, &config, vhost);
            assert_eq!(a.anycast("openstack", "t"), "unicast.openstack.t");
        }
    }

    #[test]
    fn prefixes_are_configurable() {
        let config = Amqp1Config {
            server_request_prefix: "srv".into(),
            broadcast_prefix: "bcast".into(),
            group_request_prefix: "grp".into(),
            rpc_address_prefix: "x/rpc".into(),
            notify_address_prefix: "x/notify".into(),
            multicast_address: "mc".into(),
            unicast_address: "uc".into(),
            anycast_address: "ac".into(),
            ..Amqp1Config::default()
        };
        let legacy = Addresser::new(Scheme::Legacy, &config, None);
        assert_eq!(legacy.anycast("e", "t"), "grp.e.t");
        assert_eq!(legacy.unicast("e", "t", "s"), "srv.e.t.s");
        assert_eq!(legacy.multicast("e", "t"), "bcast.e.t.all");
        let routable = Addresser::new(Scheme::Routable, &config, Some("vh"));
        assert_eq!(routable.anycast("e", "t"), "x/rpc/ac/vh/e/t");
        assert_eq!(routable.unicast("e", "t", "s"), "x/rpc/uc/vh/e/t/s");
        assert_eq!(routable.multicast("e", "t"), "x/rpc/mc/vh/e/t");
        assert_eq!(
            routable.notify(&info()),
            "x/notify/ac/vh/openstack/notifications.info"
        );
    }

    #[test]
    fn dynamic_rule() {
        assert_eq!(Scheme::for_product(None), Scheme::Legacy);
        assert_eq!(Scheme::for_product(Some("qpid-cpp")), Scheme::Legacy);
        assert_eq!(
            Scheme::for_product(Some("qpid-dispatch-router")),
            Scheme::Routable
        );
        assert_eq!(
            Scheme::for_product(Some("skupper-router")),
            Scheme::Routable
        );
    }
}

//! The driver's options (oslo's `[oslo_messaging_amqp]` names where oslo has one), declared
//! once for validation and parsed once into [`Amqp1Config`].

use std::time::Duration;

use messaging_core::options::{OptionKind, OptionSpec};
use messaging_core::{MessagingError, Result, TransportUrl};
use serde::{Deserialize, Serialize};

/// Which address scheme (and which kind of peer) the driver assumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressingMode {
    /// oslo's `dynamic`: read the peer's Open `product`: RabbitMQ → broker mode, `qpid-cpp` or
    /// none → legacy, anything else → routable.
    #[default]
    Dynamic,
    /// Router mode with `openstack.org/om/...` addresses.
    Routable,
    /// Router mode with `unicast.` / `exclusive.` / `broadcast.` addresses.
    Legacy,
    /// RabbitMQ's AMQP 1.0 endpoint (`/queue/…`, `/amq/queue/…`, `/topic/…`).
    Broker,
}

impl AddressingMode {
    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "dynamic" => Self::Dynamic,
            "routable" => Self::Routable,
            "legacy" => Self::Legacy,
            "broker" => Self::Broker,
            _ => return None,
        })
    }
}

/// Which kinds of message are sent pre-settled (oslo's `pre_settled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreSettled {
    /// `rpc-call`: calls are not awaited for their disposition.
    pub rpc_call: bool,
    /// `rpc-reply`: replies and heartbeats (oslo's default: yes).
    pub rpc_reply: bool,
    /// `rpc-cast`: casts and fanout casts (oslo's default: yes).
    pub rpc_cast: bool,
    /// `notify`: notifications.
    pub notify: bool,
}

impl Default for PreSettled {
    fn default() -> Self {
        Self {
            rpc_call: false,
            rpc_reply: true,
            rpc_cast: true,
            notify: false,
        }
    }
}

impl PreSettled {
    fn parse(value: &str) -> Result<Self> {
        let mut settled = Self {
            rpc_call: false,
            rpc_reply: false,
            rpc_cast: false,
            notify: false,
        };
        for item in value.split([',', ' ']).filter(|s| !s.is_empty()) {
            match item {
                "rpc-call" => settled.rpc_call = true,
                "rpc-reply" => settled.rpc_reply = true,
                "rpc-cast" => settled.rpc_cast = true,
                "notify" => settled.notify = true,
                other => {
                    return Err(MessagingError::InvalidOption {
                        option: "pre_settled".into(),
                        value: value.into(),
                        reason: format!(
                            "unknown kind `{other}`; expected rpc-call, rpc-reply, rpc-cast, notify"
                        ),
                    })
                }
            }
        }
        Ok(settled)
    }
}

/// Everything the driver reads from a URL's query, with oslo's defaults.
///
/// Durations are in seconds, as in oslo's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Amqp1Config {
    /// Address scheme / peer kind.
    pub addressing_mode: AddressingMode,
    /// Put the URL's virtual host into every address (else into the Open `hostname`).
    pub pseudo_vhost: bool,
    /// Legacy: prefix of requests to one server.
    pub server_request_prefix: String,
    /// Legacy: prefix of fanout casts.
    pub broadcast_prefix: String,
    /// Legacy: prefix of requests to any server of a topic (and of notifications).
    pub group_request_prefix: String,
    /// Routable: prefix of RPC addresses.
    pub rpc_address_prefix: String,
    /// Routable: prefix of notification addresses.
    pub notify_address_prefix: String,
    /// Routable: the multicast (fanout) segment.
    pub multicast_address: String,
    /// Routable: the unicast (one server) segment.
    pub unicast_address: String,
    /// Routable: the anycast (any server) segment.
    pub anycast_address: String,
    /// AMQP container id; a unique one is generated when empty.
    pub container_name: String,
    /// Connection idle timeout announced to the peer (heartbeats); 0 disables.
    pub idle_timeout: u64,
    /// Use TLS even with `amqp://`.
    pub ssl: bool,
    /// PEM file of the CA certificates that sign the peer's certificate.
    pub ssl_ca_file: String,
    /// PEM file of the client certificate (chain), for mutual TLS.
    pub ssl_cert_file: String,
    /// PEM file of the client private key.
    pub ssl_key_file: String,
    /// Password of an encrypted private key (unsupported: use an unencrypted key).
    pub ssl_key_password: String,
    /// Check the peer's certificate against the virtual host instead of the host name.
    pub ssl_verify_vhost: bool,
    /// Check that the peer's certificate names the host at all (only turn off for tests).
    pub ssl_verify_hostname: bool,
    /// Allowed SASL mechanisms, space separated (PLAIN, ANONYMOUS); empty: by credentials.
    pub sasl_mechanisms: String,
    /// Seconds before the first reconnect attempt.
    pub connection_retry_interval: f64,
    /// Added to the reconnect delay after each failed attempt.
    pub connection_retry_backoff: f64,
    /// Longest delay between reconnect attempts.
    pub connection_retry_interval_max: f64,
    /// Seconds before a failed link is attached again.
    pub link_retry_delay: f64,
    /// How long one TCP/TLS/AMQP connection attempt may take.
    pub connect_timeout: f64,
    /// How long a detach or close may take before it is abandoned.
    pub close_timeout: f64,
    /// Seconds a reply may take to be sent.
    pub default_reply_timeout: f64,
    /// Seconds a cast may take to be sent (credit and disposition), unless the caller set a
    /// send timeout. A call's send is bounded by the call's timeout.
    pub default_send_timeout: f64,
    /// Fail fast (router mode): seconds without credit after which a call or cast ends with
    /// `NoServer`; 0 (the default) waits for the timeout.
    pub fail_fast: f64,
    /// Seconds a notification may take to be sent.
    pub default_notify_timeout: f64,
    /// Idle sender links are detached after this many seconds.
    pub default_sender_link_timeout: f64,
    /// How often a reply is retried (0: never).
    pub default_reply_retry: u64,
    /// Credit of the reply link.
    pub reply_link_credit: u32,
    /// Credit of each RPC server link.
    pub rpc_server_credit: u32,
    /// Credit of each notification listener link.
    pub notify_server_credit: u32,
    /// Kinds of message sent pre-settled.
    pub pre_settled: PreSettled,
}

impl Default for Amqp1Config {
    fn default() -> Self {
        Self {
            addressing_mode: AddressingMode::Dynamic,
            pseudo_vhost: true,
            server_request_prefix: "exclusive".into(),
            broadcast_prefix: "broadcast".into(),
            group_request_prefix: "unicast".into(),
            rpc_address_prefix: "openstack.org/om/rpc".into(),
            notify_address_prefix: "openstack.org/om/notify".into(),
            multicast_address: "multicast".into(),
            unicast_address: "unicast".into(),
            anycast_address: "anycast".into(),
            container_name: String::new(),
            idle_timeout: 0,
            ssl: false,
            ssl_ca_file: String::new(),
            ssl_cert_file: String::new(),
            ssl_key_file: String::new(),
            ssl_key_password: String::new(),
            ssl_verify_vhost: false,
            ssl_verify_hostname: true,
            sasl_mechanisms: String::new(),
            connection_retry_interval: 1.0,
            connection_retry_backoff: 2.0,
            connection_retry_interval_max: 30.0,
            link_retry_delay: 10.0,
            connect_timeout: 10.0,
            close_timeout: 2.0,
            default_reply_timeout: 30.0,
            default_send_timeout: 30.0,
            fail_fast: 0.0,
            default_notify_timeout: 30.0,
            default_sender_link_timeout: 600.0,
            default_reply_retry: 0,
            reply_link_credit: 200,
            rpc_server_credit: 100,
            notify_server_credit: 100,
            pre_settled: PreSettled::default(),
        }
    }
}

const MODES: &[&str] = &["dynamic", "routable", "legacy", "broker"];

/// The options of the `amqp` driver, as declared to the core.
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec::new(
        "addressing_mode",
        OptionKind::Choice(MODES),
        "dynamic (detect), routable, legacy or broker (RabbitMQ)",
    ),
    OptionSpec::new(
        "pseudo_vhost",
        OptionKind::Bool,
        "put the virtual host into addresses (else into the Open hostname)",
    ),
    OptionSpec::new(
        "server_request_prefix",
        OptionKind::String,
        "legacy prefix of requests to one server",
    ),
    OptionSpec::new(
        "broadcast_prefix",
        OptionKind::String,
        "legacy prefix of fanout casts",
    ),
    OptionSpec::new(
        "group_request_prefix",
        OptionKind::String,
        "legacy prefix of requests to any server and of notifications",
    ),
    OptionSpec::new(
        "rpc_address_prefix",
        OptionKind::String,
        "routable prefix of RPC addresses",
    ),
    OptionSpec::new(
        "notify_address_prefix",
        OptionKind::String,
        "routable prefix of notification addresses",
    ),
    OptionSpec::new(
        "multicast_address",
        OptionKind::String,
        "routable fanout segment",
    ),
    OptionSpec::new(
        "unicast_address",
        OptionKind::String,
        "routable one-server segment",
    ),
    OptionSpec::new(
        "anycast_address",
        OptionKind::String,
        "routable any-server segment",
    ),
    OptionSpec::new(
        "container_name",
        OptionKind::String,
        "AMQP container id (default: unique)",
    ),
    OptionSpec::new(
        "idle_timeout",
        OptionKind::Integer,
        "connection idle timeout in seconds (heartbeats); 0 disables",
    ),
    OptionSpec::new("ssl", OptionKind::Bool, "use TLS even with amqp://"),
    OptionSpec::new(
        "ssl_ca_file",
        OptionKind::String,
        "PEM CA certificates to verify the peer",
    ),
    OptionSpec::new(
        "ssl_cert_file",
        OptionKind::String,
        "PEM client certificate (mutual TLS)",
    ),
    OptionSpec::new(
        "ssl_key_file",
        OptionKind::String,
        "PEM client private key (mutual TLS)",
    ),
    OptionSpec::new(
        "ssl_key_password",
        OptionKind::String,
        "password of an encrypted key (unsupported)",
    ),
    OptionSpec::new(
        "ssl_verify_vhost",
        OptionKind::Bool,
        "verify the peer's certificate against the virtual host",
    ),
    OptionSpec::new(
        "ssl_verify_hostname",
        OptionKind::Bool,
        "verify that the peer's certificate names the host",
    ),
    OptionSpec::new(
        "sasl_mechanisms",
        OptionKind::String,
        "allowed SASL mechanisms, space separated (PLAIN, ANONYMOUS)",
    ),
    OptionSpec::new(
        "connection_retry_interval",
        OptionKind::Float,
        "seconds before the first reconnect",
    ),
    OptionSpec::new(
        "connection_retry_backoff",
        OptionKind::Float,
        "seconds added to the reconnect delay per failure",
    ),
    OptionSpec::new(
        "connection_retry_interval_max",
        OptionKind::Float,
        "longest reconnect delay in seconds",
    ),
    OptionSpec::new(
        "link_retry_delay",
        OptionKind::Float,
        "seconds before a failed link is attached again",
    ),
    OptionSpec::new(
        "connect_timeout",
        OptionKind::Float,
        "seconds one connection attempt may take",
    ),
    OptionSpec::new(
        "close_timeout",
        OptionKind::Float,
        "seconds a detach or close may take",
    ),
    OptionSpec::new(
        "default_reply_timeout",
        OptionKind::Float,
        "seconds a reply may take to be sent",
    ),
    OptionSpec::new(
        "default_send_timeout",
        OptionKind::Float,
        "seconds a cast may take to be sent",
    ),
    messaging_core::driver::FAIL_FAST_OPTION,
    OptionSpec::new(
        "default_notify_timeout",
        OptionKind::Float,
        "seconds a notification may take to be sent",
    ),
    OptionSpec::new(
        "default_sender_link_timeout",
        OptionKind::Float,
        "seconds before an idle sender link is detached",
    ),
    OptionSpec::new(
        "default_reply_retry",
        OptionKind::Integer,
        "how often a failed reply is retried",
    ),
    OptionSpec::new(
        "reply_link_credit",
        OptionKind::Integer,
        "credit of the reply link",
    ),
    OptionSpec::new(
        "rpc_server_credit",
        OptionKind::Integer,
        "credit of each RPC server link",
    ),
    OptionSpec::new(
        "notify_server_credit",
        OptionKind::Integer,
        "credit of each notification listener link",
    ),
    OptionSpec::new(
        "pre_settled",
        OptionKind::String,
        "comma-separated kinds sent pre-settled: rpc-call, rpc-reply, rpc-cast, notify",
    ),
];

fn credit(value: u64, name: &str) -> Result<u32> {
    match u32::try_from(value) {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(MessagingError::InvalidOption {
            option: name.into(),
            value: value.to_string(),
            reason: "expected a credit between 1 and 4294967295".into(),
        }),
    }
}

impl Amqp1Config {
    /// The reconnection back-off of the oslo options `connection_retry_interval`,
    /// `connection_retry_backoff` and `connection_retry_interval_max` (exponential with
    /// jitter, the same for every driver; oslo's AMQP 1.0 driver grew it linearly).
    pub fn backoff(&self) -> messaging_core::driver::retry::Backoff {
        messaging_core::driver::retry::Backoff::new(
            Self::secs(self.connection_retry_interval),
            Self::secs(self.connection_retry_backoff),
            Self::secs(self.connection_retry_interval_max),
        )
    }

    /// The back-off of a receiver link re-attaching after a recoverable failure: as
    /// [`backoff`](Self::backoff), up to `link_retry_delay` when that is longer.
    pub fn link_backoff(&self) -> messaging_core::driver::retry::Backoff {
        messaging_core::driver::retry::Backoff::new(
            Self::secs(self.connection_retry_interval),
            Self::secs(self.connection_retry_backoff),
            Self::secs(
                self.connection_retry_interval_max
                    .max(self.link_retry_delay),
            ),
        )
    }

    /// Read the options of `url` (already validated against [`OPTIONS`]).
    pub fn from_url(url: &TransportUrl) -> Result<Self> {
        let o = url.options();
        let d = Self::default();
        let mode = o
            .get("addressing_mode")
            .map_or(Ok(d.addressing_mode), |v| {
                AddressingMode::parse(v).ok_or_else(|| MessagingError::InvalidOption {
                    option: "addressing_mode".into(),
                    value: v.into(),
                    reason: format!("expected one of {}", MODES.join(", ")),
                })
            })?;
        let config = Self {
            addressing_mode: mode,
            pseudo_vhost: o.bool("pseudo_vhost", d.pseudo_vhost)?,
            server_request_prefix: o.string("server_request_prefix", &d.server_request_prefix),
            broadcast_prefix: o.string("broadcast_prefix", &d.broadcast_prefix),
            group_request_prefix: o.string("group_request_prefix", &d.group_request_prefix),
            rpc_address_prefix: o.string("rpc_address_prefix", &d.rpc_address_prefix),
            notify_address_prefix: o.string("notify_address_prefix", &d.notify_address_prefix),
            multicast_address: o.string("multicast_address", &d.multicast_address),
            unicast_address: o.string("unicast_address", &d.unicast_address),
            anycast_address: o.string("anycast_address", &d.anycast_address),
            container_name: o.string("container_name", &d.container_name),
            idle_timeout: o.u64("idle_timeout", d.idle_timeout)?,
            ssl: o.bool("ssl", d.ssl)?,
            ssl_ca_file: o.string("ssl_ca_file", ""),
            ssl_cert_file: o.string("ssl_cert_file", ""),
            ssl_key_file: o.string("ssl_key_file", ""),
            ssl_key_password: o.string("ssl_key_password", ""),
            ssl_verify_vhost: o.bool("ssl_verify_vhost", d.ssl_verify_vhost)?,
            ssl_verify_hostname: o.bool("ssl_verify_hostname", d.ssl_verify_hostname)?,
            sasl_mechanisms: o.string("sasl_mechanisms", ""),
            connection_retry_interval: o
                .f64("connection_retry_interval", d.connection_retry_interval)?,
            connection_retry_backoff: o
                .f64("connection_retry_backoff", d.connection_retry_backoff)?,
            connection_retry_interval_max: o.f64(
                "connection_retry_interval_max",
                d.connection_retry_interval_max,
            )?,
            link_retry_delay: o.f64("link_retry_delay", d.link_retry_delay)?,
            connect_timeout: o.f64("connect_timeout", d.connect_timeout)?,
            close_timeout: o.f64("close_timeout", d.close_timeout)?,
            default_reply_timeout: o.f64("default_reply_timeout", d.default_reply_timeout)?,
            default_send_timeout: o.f64("default_send_timeout", d.default_send_timeout)?,
            fail_fast: o.f64("fail_fast", d.fail_fast)?,
            default_notify_timeout: o.f64("default_notify_timeout", d.default_notify_timeout)?,
            default_sender_link_timeout: o
                .f64("default_sender_link_timeout", d.default_sender_link_timeout)?,
            default_reply_retry: o.u64("default_reply_retry", d.default_reply_retry)?,
            reply_link_credit: credit(
                o.u64("reply_link_credit", d.reply_link_credit.into())?,
                "reply_link_credit",
            )?,
            rpc_server_credit: credit(
                o.u64("rpc_server_credit", d.rpc_server_credit.into())?,
                "rpc_server_credit",
            )?,
            notify_server_credit: credit(
                o.u64("notify_server_credit", d.notify_server_credit.into())?,
                "notify_server_credit",
            )?,
            pre_settled: match o.get("pre_settled") {
                Some(v) => PreSettled::parse(v)?,
                None => d.pre_settled,
            },
        };
        if !config.ssl_key_password.is_empty() {
            return Err(MessagingError::InvalidOption {
                option: "ssl_key_password".into(),
                value: "***".into(),
                reason: "encrypted private keys are not supported; decrypt the key \
                         (e.g. `openssl pkey -in enc.pem -out key.pem`)"
                    .into(),
            });
        }
        for mechanism in config.sasl_mechanisms.split_whitespace() {
            if !matches!(
                mechanism.to_ascii_uppercase().as_str(),
                "PLAIN" | "ANONYMOUS"
            ) {
                return Err(MessagingError::InvalidOption {
                    option: "sasl_mechanisms".into(),
                    value: config.sasl_mechanisms.clone(),
                    reason: format!("unsupported mechanism `{mechanism}`: PLAIN or ANONYMOUS"),
                });
            }
        }
        Ok(config)
    }

    /// A duration option (seconds) as a [`Duration`]; negative or invalid values become zero.
    pub(crate) fn secs(value: f64) -> Duration {
        Duration::try_from_secs_f64(value).unwrap_or(Duration::ZERO)
    }

    /// How long one connection attempt may take.
    pub(crate) fn connect_timeout(&self) -> Duration {
        Self::secs(self.connect_timeout).max(Duration::from_millis(100))
    }

    /// How long a detach or close may take.
    pub(crate) fn close_timeout(&self) -> Duration {
        Self::secs(self.close_timeout).max(Duration::from_millis(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<Amqp1Config> {
        let url = TransportUrl::parse(url)?;
        messaging_core::options::validate(
            "amqp1",
            OPTIONS,
            url.query.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )?;
        Amqp1Config::from_url(&url)
    }

    #[test]
    fn defaults_are_oslos() {
        let c = parse("amqp://h").unwrap();
        assert_eq!(c, Amqp1Config::default());
        assert_eq!(c.rpc_server_credit, 100);
        assert_eq!(c.reply_link_credit, 200);
        assert!(c.pre_settled.rpc_cast && c.pre_settled.rpc_reply);
        assert!(!c.pre_settled.rpc_call && !c.pre_settled.notify);
    }

    #[test]
    fn options_are_read() {
        let c = parse(
            "amqp://h/?addressing_mode=legacy&pre_settled=notify,rpc-call&rpc_server_credit=5\
             &default_send_timeout=2.5&pseudo_vhost=false&fail_fast=0.5",
        )
        .unwrap();
        assert_eq!(c.fail_fast, 0.5);
        assert_eq!(c.addressing_mode, AddressingMode::Legacy);
        assert!(c.pre_settled.notify && c.pre_settled.rpc_call && !c.pre_settled.rpc_cast);
        assert_eq!(c.rpc_server_credit, 5);
        assert_eq!(c.default_send_timeout, 2.5);
        assert!(!c.pseudo_vhost);
    }

    #[test]
    fn bad_values_are_refused() {
        for url in [
            "amqp://h/?addressing_mode=nope",
            "amqp://h/?pre_settled=rpc-everything",
            "amqp://h/?rpc_server_credit=0",
            "amqp://h/?ssl_key_password=x",
            "amqp://h/?sasl_mechanisms=GSSAPI",
            "amqp://h/?no_such_option=1",
            "amqp://h/?fail_fast=-1",
        ] {
            assert!(parse(url).is_err(), "{url}");
        }
    }

    #[test]
    fn serde_round_trip() {
        let c = Amqp1Config::default();
        let json = serde_json::to_string(&c).unwrap();
        let back: Amqp1Config = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        let partial: Amqp1Config = serde_json::from_str(r#"{"addressing_mode":"broker"}"#).unwrap();
        assert_eq!(partial.addressing_mode, AddressingMode::Broker);
    }
}

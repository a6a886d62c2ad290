//! The driver's settings: oslo's `[oslo_messaging_rabbit]` options, read from URL query
//! options (validated by the core against [`OPTIONS`]) or built in code.

use std::time::Duration;

use messaging_core::options::{OptionKind, OptionSpec};
use messaging_core::{MessagingError, Result, TransportUrl};
use serde::{Deserialize, Serialize};

/// How the next broker host is chosen after a connection failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum FailoverStrategy {
    /// Hosts in the order given, starting after the last one used (oslo's default).
    #[default]
    #[serde(rename = "round-robin")]
    RoundRobin,
    /// A random order on every pass over the hosts.
    #[serde(rename = "shuffle")]
    Shuffle,
}

/// The SASL mechanism used to log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LoginMethod {
    /// User name and password (the default).
    #[default]
    #[serde(rename = "PLAIN")]
    Plain,
    /// RabbitMQ's legacy user name and password mechanism.
    #[serde(rename = "AMQPLAIN")]
    AmqPlain,
    /// The TLS client certificate identifies the user.
    #[serde(rename = "EXTERNAL")]
    External,
}

/// Settings of the rabbit driver, with oslo's names and defaults. Durations are in seconds,
/// as in oslo's configuration files.
///
/// ```
/// let config: driver_rabbit::RabbitConfig =
///     serde_json::from_str(r#"{"rabbit_qos_prefetch_count": 10, "kombu_failover_strategy": "shuffle"}"#).unwrap();
/// assert_eq!(config.rabbit_qos_prefetch_count, 10);
/// assert_eq!(config.rabbit_transient_queues_ttl, 1800);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RabbitConfig {
    /// Declare the control exchange and the topic queues durable.
    pub amqp_durable_queues: bool,
    /// Declare the control exchange and the topic queues auto-delete.
    pub amqp_auto_delete: bool,
    /// `x-expires` of reply and fanout queues, in seconds (0: none).
    pub rabbit_transient_queues_ttl: u64,
    /// `basic.qos` prefetch count of consumers (0: no `basic.qos`, unlimited).
    pub rabbit_qos_prefetch_count: u16,
    /// Declare topic and notification queues as quorum queues (durable).
    pub rabbit_quorum_queue: bool,
    /// `x-delivery-limit` of quorum queues (0: none).
    pub rabbit_quorum_delivery_limit: u64,
    /// Declare reply and fanout queues as quorum queues (durable).
    pub rabbit_transient_quorum_queue: bool,
    /// AMQP heartbeat timeout in seconds, negotiated with the broker (the broker's value is
    /// used when it is lower, or when this is 0).
    pub heartbeat_timeout_threshold: u64,
    /// Largest AMQP frame in bytes, negotiated with the broker (larger messages travel in
    /// several frames). lapin keeps two buffers of 32 frames per connection, so RabbitMQ's
    /// default of 128 KiB would cost 8 MiB per connection; 32 KiB costs 2 MiB.
    pub frame_max: u32,
    /// oslo's heartbeat checks per timeout. The client checks twice per timeout whatever the
    /// value; accepted for compatibility.
    pub heartbeat_rate: u64,
    /// Connect with TLS (`amqps`, default port 5671).
    pub ssl: bool,
    /// PEM file of the certificate authorities to trust (default: the system's).
    pub ssl_ca_file: Option<String>,
    /// PEM file of the client certificate.
    pub ssl_cert_file: Option<String>,
    /// PEM file (PKCS#8) of the client certificate's key.
    pub ssl_key_file: Option<String>,
    /// Check that the broker's certificate matches its host name. Only `true` is supported.
    pub ssl_verify_hostname: bool,
    /// The SASL login mechanism.
    pub rabbit_login_method: LoginMethod,
    /// First reconnection delay, in seconds.
    pub rabbit_retry_interval: f64,
    /// Reconnection back-off step, in seconds: the n-th delay is
    /// `interval + backoff * (2^n - 1)`, with jitter, up to `rabbit_interval_max`.
    pub rabbit_retry_backoff: f64,
    /// Longest reconnection delay, in seconds.
    pub rabbit_interval_max: f64,
    /// How the next host is chosen when one fails.
    pub kombu_failover_strategy: FailoverStrategy,
    /// How long a reply to a missing reply queue is retried (every 0.25 s), in seconds.
    pub kombu_missing_consumer_retry_timeout: f64,
    /// Fail fast: seconds of the broker returning a call or cast as unroutable after which it
    /// ends with `NoServer`; 0 (the default) waits for the timeout.
    pub fail_fast: f64,
    /// Up to this many seconds, at random, added to every reconnection delay, so that many
    /// clients do not reconnect at the same moment (oslo's `kombu_reconnect_splay`).
    pub kombu_reconnect_splay: f64,
    /// Consume with `x-cancel-on-ha-failover`: the broker cancels consumers of a mirrored queue
    /// when its leader fails over, and the listener re-declares and consumes again.
    pub enable_cancel_on_failover: bool,
}

impl Default for RabbitConfig {
    fn default() -> Self {
        Self {
            amqp_durable_queues: false,
            amqp_auto_delete: false,
            rabbit_transient_queues_ttl: 1800,
            rabbit_qos_prefetch_count: 0,
            rabbit_quorum_queue: false,
            rabbit_quorum_delivery_limit: 0,
            rabbit_transient_quorum_queue: false,
            heartbeat_timeout_threshold: 60,
            frame_max: DEFAULT_FRAME_MAX,
            heartbeat_rate: 3,
            ssl: false,
            ssl_ca_file: None,
            ssl_cert_file: None,
            ssl_key_file: None,
            ssl_verify_hostname: true,
            rabbit_login_method: LoginMethod::Plain,
            rabbit_retry_interval: 1.0,
            rabbit_retry_backoff: 2.0,
            rabbit_interval_max: 30.0,
            kombu_failover_strategy: FailoverStrategy::RoundRobin,
            kombu_missing_consumer_retry_timeout: 60.0,
            fail_fast: 0.0,
            kombu_reconnect_splay: 0.0,
            enable_cancel_on_failover: false,
        }
    }
}

/// The default `frame_max`: 32 KiB.
pub const DEFAULT_FRAME_MAX: u32 = 32_768;

const B: OptionKind = OptionKind::Bool;
const I: OptionKind = OptionKind::Integer;
const F: OptionKind = OptionKind::Float;
const S: OptionKind = OptionKind::String;

/// The URL query options of the rabbit driver (oslo's names).
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec::new(
        "amqp_durable_queues",
        B,
        "declare the control exchange and topic queues durable",
    ),
    OptionSpec::new(
        "amqp_auto_delete",
        B,
        "declare the control exchange and topic queues auto-delete",
    ),
    OptionSpec::new(
        "rabbit_transient_queues_ttl",
        I,
        "x-expires of reply and fanout queues, in seconds (0: none)",
    ),
    OptionSpec::new(
        "rabbit_qos_prefetch_count",
        I,
        "consumer prefetch count (0: unlimited, no basic.qos)",
    ),
    OptionSpec::new(
        "rabbit_quorum_queue",
        B,
        "declare topic and notification queues as quorum queues",
    ),
    OptionSpec::new(
        "rabbit_quorum_delivery_limit",
        I,
        "x-delivery-limit of quorum queues (0: none)",
    ),
    OptionSpec::new(
        "rabbit_transient_quorum_queue",
        B,
        "declare reply and fanout queues as quorum queues",
    ),
    OptionSpec::new(
        "heartbeat_timeout_threshold",
        I,
        "AMQP heartbeat timeout in seconds",
    ),
    OptionSpec::new(
        "frame_max",
        I,
        "largest AMQP frame in bytes (4096 to 131072; default 32768)",
    ),
    OptionSpec::new(
        "heartbeat_rate",
        I,
        "heartbeat checks per timeout (the client always checks twice)",
    ),
    OptionSpec::new("ssl", B, "connect with TLS (amqps, default port 5671)"),
    OptionSpec::new(
        "ssl_ca_file",
        S,
        "PEM file of the certificate authorities to trust",
    ),
    OptionSpec::new("ssl_cert_file", S, "PEM file of the client certificate"),
    OptionSpec::new(
        "ssl_key_file",
        S,
        "PEM (PKCS#8) file of the client certificate's key",
    ),
    OptionSpec::new(
        "ssl_verify_hostname",
        B,
        "check the broker certificate's host name (only true is supported)",
    ),
    OptionSpec::new(
        "rabbit_login_method",
        OptionKind::Choice(&["PLAIN", "AMQPLAIN", "EXTERNAL"]),
        "SASL login mechanism",
    ),
    OptionSpec::new(
        "rabbit_retry_interval",
        F,
        "first reconnection delay, in seconds",
    ),
    OptionSpec::new(
        "rabbit_retry_backoff",
        F,
        "reconnection back-off step, in seconds",
    ),
    OptionSpec::new(
        "rabbit_interval_max",
        F,
        "longest reconnection delay, in seconds",
    ),
    OptionSpec::new(
        "kombu_failover_strategy",
        OptionKind::Choice(&["round-robin", "shuffle"]),
        "how the next broker host is chosen",
    ),
    OptionSpec::new(
        "kombu_missing_consumer_retry_timeout",
        F,
        "how long a reply to a missing reply queue is retried, in seconds",
    ),
    messaging_core::driver::FAIL_FAST_OPTION,
    OptionSpec::new(
        "kombu_reconnect_splay",
        F,
        "up to this many seconds added at random to every reconnection delay",
    ),
    OptionSpec::new(
        "enable_cancel_on_failover",
        B,
        "consume with x-cancel-on-ha-failover (consumers re-subscribe on failover)",
    ),
];

impl RabbitConfig {
    /// The defaults, overridden by the URL's query options.
    pub fn from_url(url: &TransportUrl) -> Result<Self> {
        Self::default().with_url_options(url)
    }

    /// This configuration, overridden by the URL's query options.
    pub fn with_url_options(mut self, url: &TransportUrl) -> Result<Self> {
        let o = url.options();
        let c = &mut self;
        c.amqp_durable_queues = o.bool("amqp_durable_queues", c.amqp_durable_queues)?;
        c.amqp_auto_delete = o.bool("amqp_auto_delete", c.amqp_auto_delete)?;
        c.rabbit_transient_queues_ttl =
            o.u64("rabbit_transient_queues_ttl", c.rabbit_transient_queues_ttl)?;
        let prefetch = o.u64(
            "rabbit_qos_prefetch_count",
            u64::from(c.rabbit_qos_prefetch_count),
        )?;
        c.rabbit_qos_prefetch_count =
            u16::try_from(prefetch).map_err(|_| MessagingError::InvalidOption {
                option: "rabbit_qos_prefetch_count".into(),
                value: prefetch.to_string(),
                reason: "at most 65535".into(),
            })?;
        c.rabbit_quorum_queue = o.bool("rabbit_quorum_queue", c.rabbit_quorum_queue)?;
        c.rabbit_quorum_delivery_limit = o.u64(
            "rabbit_quorum_delivery_limit",
            c.rabbit_quorum_delivery_limit,
        )?;
        c.rabbit_transient_quorum_queue = o.bool(
            "rabbit_transient_quorum_queue",
            c.rabbit_transient_quorum_queue,
        )?;
        c.heartbeat_timeout_threshold =
            o.u64("heartbeat_timeout_threshold", c.heartbeat_timeout_threshold)?;
        let frame_max = o.u64("frame_max", u64::from(c.frame_max))?;
        c.frame_max = u32::try_from(frame_max)
            .ok()
            .filter(|f| (4096..=131_072).contains(f))
            .ok_or_else(|| MessagingError::InvalidOption {
                option: "frame_max".into(),
                value: frame_max.to_string(),
                reason: "must be between 4096 and 131072 bytes".into(),
            })?;
        c.heartbeat_rate = o.u64("heartbeat_rate", c.heartbeat_rate)?;
        c.ssl = o.bool("ssl", c.ssl)?;
        for (name, field) in [
            ("ssl_ca_file", &mut c.ssl_ca_file),
            ("ssl_cert_file", &mut c.ssl_cert_file),
            ("ssl_key_file", &mut c.ssl_key_file),
        ] {
            if let Some(value) = o.get(name) {
                *field = Some(value.to_owned()).filter(|v| !v.is_empty());
            }
        }
        c.ssl_verify_hostname = o.bool("ssl_verify_hostname", c.ssl_verify_hostname)?;
        if let Some(method) = o.get("rabbit_login_method") {
            c.rabbit_login_method = match method {
                "AMQPLAIN" => LoginMethod::AmqPlain,
                "EXTERNAL" => LoginMethod::External,
                _ => LoginMethod::Plain,
            };
        }
        c.rabbit_retry_interval = o.f64("rabbit_retry_interval", c.rabbit_retry_interval)?;
        c.rabbit_retry_backoff = o.f64("rabbit_retry_backoff", c.rabbit_retry_backoff)?;
        c.rabbit_interval_max = o.f64("rabbit_interval_max", c.rabbit_interval_max)?;
        if let Some(strategy) = o.get("kombu_failover_strategy") {
            c.kombu_failover_strategy = match strategy {
                "shuffle" => FailoverStrategy::Shuffle,
                _ => FailoverStrategy::RoundRobin,
            };
        }
        c.kombu_missing_consumer_retry_timeout = o.f64(
            "kombu_missing_consumer_retry_timeout",
            c.kombu_missing_consumer_retry_timeout,
        )?;
        c.fail_fast = o.f64("fail_fast", c.fail_fast)?;
        c.kombu_reconnect_splay = o.f64("kombu_reconnect_splay", c.kombu_reconnect_splay)?;
        c.enable_cancel_on_failover =
            o.bool("enable_cancel_on_failover", c.enable_cancel_on_failover)?;
        self.validate()?;
        Ok(self)
    }

    /// Check settings that cannot work together.
    pub fn validate(&self) -> Result<()> {
        let invalid = |option: &str, value: String, reason: &str| MessagingError::InvalidOption {
            option: option.into(),
            value,
            reason: reason.into(),
        };
        for (name, value) in [
            ("rabbit_retry_interval", self.rabbit_retry_interval),
            ("rabbit_retry_backoff", self.rabbit_retry_backoff),
            ("rabbit_interval_max", self.rabbit_interval_max),
            (
                "kombu_missing_consumer_retry_timeout",
                self.kombu_missing_consumer_retry_timeout,
            ),
            ("fail_fast", self.fail_fast),
            ("kombu_reconnect_splay", self.kombu_reconnect_splay),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(invalid(
                    name,
                    value.to_string(),
                    "expected a non-negative number of seconds",
                ));
            }
        }
        if self.heartbeat_timeout_threshold > u64::from(u16::MAX) {
            return Err(invalid(
                "heartbeat_timeout_threshold",
                self.heartbeat_timeout_threshold.to_string(),
                "at most 65535 seconds",
            ));
        }
        if self.ssl_cert_file.is_some() != self.ssl_key_file.is_some() {
            return Err(invalid(
                "ssl_cert_file",
                self.ssl_cert_file.clone().unwrap_or_default(),
                "ssl_cert_file and ssl_key_file go together",
            ));
        }
        if self.ssl && !self.ssl_verify_hostname {
            return Err(MessagingError::unsupported(
                "rabbit",
                "ssl_verify_hostname=false (TLS without host name verification); trust the broker's CA with ssl_ca_file instead",
            ));
        }
        if self.rabbit_login_method == LoginMethod::External && !self.ssl {
            return Err(invalid(
                "rabbit_login_method",
                "EXTERNAL".into(),
                "EXTERNAL needs ssl=true and a client certificate",
            ));
        }
        Ok(())
    }

    /// `x-expires` of reply and fanout queues, if any.
    pub(crate) fn transient_ttl(&self) -> Option<Duration> {
        (self.rabbit_transient_queues_ttl > 0)
            .then(|| Duration::from_secs(self.rabbit_transient_queues_ttl))
    }

    /// How long a reply to a missing queue is retried.
    pub(crate) fn missing_consumer_timeout(&self) -> Duration {
        secs(self.kombu_missing_consumer_retry_timeout)
    }

    /// The `fail_fast` window (zero: off).
    pub(crate) fn fail_fast(&self) -> Duration {
        secs(self.fail_fast)
    }

    /// A random extra reconnection delay, up to `kombu_reconnect_splay`.
    pub(crate) fn reconnect_splay(&self) -> Duration {
        secs(self.kombu_reconnect_splay * fastrand::f64())
    }
}

/// Seconds as a duration (invalid values were refused by [`RabbitConfig::validate`]).
pub(crate) fn secs(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(query: &str) -> TransportUrl {
        TransportUrl::parse(&format!("rabbit://h1/?{query}")).unwrap()
    }

    #[test]
    fn defaults_are_oslo_defaults() {
        let c = RabbitConfig::from_url(&url("")).unwrap();
        assert_eq!(c, RabbitConfig::default());
        assert_eq!(c.transient_ttl(), Some(Duration::from_secs(1800)));
        assert_eq!(c.missing_consumer_timeout(), Duration::from_secs(60));
    }

    #[test]
    fn url_options_override() {
        let c = RabbitConfig::from_url(&url(
            "amqp_durable_queues=true&rabbit_qos_prefetch_count=7&rabbit_login_method=AMQPLAIN\
             &kombu_failover_strategy=shuffle&rabbit_retry_interval=0.5&rabbit_transient_queues_ttl=0\
             &kombu_reconnect_splay=2&enable_cancel_on_failover=true",
        ))
        .unwrap();
        assert!(c.amqp_durable_queues);
        assert_eq!(c.rabbit_qos_prefetch_count, 7);
        assert_eq!(c.rabbit_login_method, LoginMethod::AmqPlain);
        assert_eq!(c.kombu_failover_strategy, FailoverStrategy::Shuffle);
        assert_eq!(c.rabbit_retry_interval, 0.5);
        assert_eq!(c.transient_ttl(), None);
        assert!(c.enable_cancel_on_failover);
        assert!(c.reconnect_splay() <= Duration::from_secs(2));
    }

    #[test]
    fn every_field_has_an_option() {
        let json = serde_json::to_value(RabbitConfig::default()).unwrap();
        let fields: Vec<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(fields.len(), OPTIONS.len());
        for field in fields {
            assert!(
                OPTIONS.iter().any(|o| o.name == field),
                "{field} has no URL option"
            );
        }
    }

    #[test]
    fn inconsistent_settings_are_refused() {
        assert!(RabbitConfig::from_url(&url("ssl=true&ssl_verify_hostname=false")).is_err());
        assert!(RabbitConfig::from_url(&url("ssl_cert_file=/c.pem")).is_err());
        assert!(RabbitConfig::from_url(&url("rabbit_login_method=EXTERNAL")).is_err());
        assert!(RabbitConfig::from_url(&url("rabbit_qos_prefetch_count=70000")).is_err());
        assert!(RabbitConfig::from_url(&url("kombu_reconnect_splay=-1")).is_err());
    }
}

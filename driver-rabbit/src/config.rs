//! The driver's settings: oslo's `[oslo_messaging_rabbit]` options, each declared once below
//! (name, type, default, doc, help), read from URL query options or a config file's section
//! (validated by the core against [`OPTIONS`]) or built in code.

use std::time::Duration;

use messaging_core::options::{DriverConfig, OptionKind, OptionSpec, OptionValue};
use messaging_core::{MessagingError, Result, TransportUrl};
use serde::{Deserialize, Serialize};

messaging_core::option_enum! {
    /// How the next broker host is chosen after a connection failure.
    #[derive(Default)]
    pub enum FailoverStrategy {
        /// Hosts in the order given, starting after the last one used (oslo's default).
        #[default]
        RoundRobin = "round-robin",
        /// A random order on every pass over the hosts.
        Shuffle = "shuffle",
    }
}

messaging_core::option_enum! {
    /// The SASL mechanism used to log in.
    #[derive(Default)]
    pub enum LoginMethod {
        /// User name and password.
        Plain = "PLAIN",
        /// User name and password in an AMQP table: RabbitMQ's own mechanism, oslo's default.
        #[default]
        AmqPlain = "AMQPLAIN",
        /// The TLS client certificate identifies the user.
        External = "EXTERNAL",
        /// RabbitMQ's challenge-response demonstration mechanism (the broker offers it only with
        /// `rabbit_auth_mechanism_cr_demo` enabled).
        RabbitCrDemo = "RABBIT-CR-DEMO",
    }
}

/// How message bodies are compressed (oslo's `kombu_compression`), as kombu does it: the
/// body is compressed and the `compression` header names the codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compression {
    /// zlib (kombu's `gzip`, header `application/x-gzip`).
    #[serde(rename = "gzip")]
    Gzip,
    /// bzip2 (kombu's `bzip2`, header `application/x-bz2`).
    #[serde(rename = "bzip2")]
    Bzip2,
}

/// kombu's names of the codecs it has without extra Python packages (and oslo's documented
/// `bz2`); an empty value (through `Option`) is none.
impl OptionValue for Compression {
    const KIND: OptionKind = OptionKind::String;

    fn parse_option(option: &str, raw: &str) -> Result<Self> {
        match raw {
            "gzip" | "zlib" | "application/x-gzip" => Ok(Self::Gzip),
            "bzip2" | "bzip" | "bz2" | "application/x-bz2" => Ok(Self::Bzip2),
            "lzma" | "xz" | "brotli" | "zstd" => Err(MessagingError::unsupported(
                "rabbit",
                format!("{option}={raw}: only gzip and bzip2 are implemented"),
            )),
            _ => Err(messaging_core::options::invalid_value(
                option,
                raw,
                "expected gzip or bzip2",
            )),
        }
    }

    fn format_option(&self) -> Option<String> {
        Some(match self {
            Self::Gzip => "gzip".into(),
            Self::Bzip2 => "bzip2".into(),
        })
    }
}

/// "Accepted, no effect": the help of oslo's connection pool options.
const ONE_CONNECTION: &str = "accepted, no effect: one connection per transport carries every send";

messaging_core::driver_options! {
    section = "oslo_messaging_rabbit";
    /// Settings of the rabbit driver, with oslo's names and defaults. Durations are in seconds,
    /// as in oslo's configuration files.
    ///
    /// ```
    /// let config: driver_rabbit::RabbitConfig =
    ///     serde_json::from_str(r#"{"rabbit_qos_prefetch_count": 10, "kombu_failover_strategy": "shuffle"}"#).unwrap();
    /// assert_eq!(config.rabbit_qos_prefetch_count, 10);
    /// assert_eq!(config.rabbit_transient_queues_ttl, 1800);
    /// ```
    pub struct RabbitConfig {
        /// Declare the control exchange and the topic queues durable.
        amqp_durable_queues: bool = false,
            "declare the control exchange and topic queues durable";
        /// Declare the control exchange and the topic queues auto-delete.
        amqp_auto_delete: bool = false,
            "declare the control exchange and topic queues auto-delete";
        /// `x-expires` of reply and fanout queues, in seconds (0: none).
        rabbit_transient_queues_ttl: u64 = 1800,
            "x-expires of reply and fanout queues, in seconds (0: none)";
        /// `basic.qos` prefetch count of consumers (0: no `basic.qos`, unlimited).
        rabbit_qos_prefetch_count: u16 = 0,
            "consumer prefetch count (0: unlimited, no basic.qos)";
        /// Declare topic and notification queues as quorum queues (durable).
        rabbit_quorum_queue: bool = false,
            "declare topic and notification queues as quorum queues";
        /// `x-delivery-limit` of quorum queues (0: none).
        rabbit_quorum_delivery_limit: u64 = 0, "x-delivery-limit of quorum queues (0: none)";
        /// Declare reply and fanout queues as quorum queues (durable).
        rabbit_transient_quorum_queue: bool = false,
            "declare reply and fanout queues as quorum queues";
        /// AMQP heartbeat timeout in seconds, negotiated with the broker (the broker's value is
        /// used when it is lower, or when this is 0).
        heartbeat_timeout_threshold: u64 = 60, "AMQP heartbeat timeout in seconds";
        /// Largest AMQP frame in bytes, negotiated with the broker (larger messages travel in
        /// several frames). lapin keeps two buffers of 32 frames per connection, so RabbitMQ's
        /// default of 128 KiB would cost 8 MiB per connection; 32 KiB costs 2 MiB.
        frame_max: u32 = DEFAULT_FRAME_MAX, "largest AMQP frame in bytes (4096 to 131072)";
        /// How many times per `heartbeat_timeout_threshold` the connection is checked: every
        /// `threshold / rate / 2` seconds, a connection from which nothing (not even a heartbeat)
        /// came for `2 × threshold` is given up, and its users reconnect.
        heartbeat_rate: u64 = 3,
            "heartbeat checks per timeout (the client always checks twice)";
        /// Connect with TLS (`amqps`, default port 5671).
        ssl: bool = false, "connect with TLS (amqps, default port 5671)";
        /// PEM file of the certificate authorities to trust (default: the system's).
        ssl_ca_file: Option<String> = None, "PEM file of the certificate authorities to trust";
        /// PEM file of the client certificate.
        ssl_cert_file: Option<String> = None, "PEM file of the client certificate";
        /// PEM file (PKCS#8) of the client certificate's key.
        ssl_key_file: Option<String> = None, "PEM (PKCS#8) file of the client certificate's key";
        /// Check that the broker's certificate names the host connected to. With `false`, the
        /// certificate chain is still verified (against `ssl_ca_file` or the system's CAs), not
        /// the name.
        ssl_enforce_hostname_verification: bool = true,
            "check that the broker's certificate names its host (false: the chain only)";
        /// The TLS version: empty or `SSLv23` (the highest both sides speak: TLS 1.3 or 1.2) or
        /// `TLSv1_2` (TLS 1.2 only). Older versions are refused (the TLS library has none).
        ssl_version: String = String::new(),
            "TLS version: empty or SSLv23 (TLS 1.3 or 1.2), or TLSv1_2";
        /// Accepted, no effect (as in oslo 18: OpenSSL 3 removed the switch).
        ssl_enforce_fips_mode: bool = false,
            "accepted, no effect (as in oslo 18: OpenSSL 3 removed the switch)";
        /// The SASL login mechanism.
        rabbit_login_method: LoginMethod = LoginMethod::AmqPlain, "SASL login mechanism";
        /// First reconnection delay, in seconds.
        rabbit_retry_interval: f64 = 1.0, "first reconnection delay, in seconds";
        /// Reconnection back-off step, in seconds: the n-th delay is
        /// `interval + backoff * (2^n - 1)`, with jitter, up to `rabbit_interval_max`.
        rabbit_retry_backoff: f64 = 2.0, "reconnection back-off step, in seconds";
        /// Longest reconnection delay, in seconds.
        rabbit_interval_max: f64 = 30.0, "longest reconnection delay, in seconds";
        /// How the next host is chosen when one fails.
        kombu_failover_strategy: FailoverStrategy = FailoverStrategy::RoundRobin,
            "how the next broker host is chosen";
        /// How long a reply to a missing reply queue is retried (every 0.25 s), in seconds.
        kombu_missing_consumer_retry_timeout: f64 = 60.0,
            "how long a reply to a missing reply queue is retried, in seconds";
        /// Fail fast: seconds of the broker returning a call or cast as unroutable after which it
        /// ends with `NoServer`; 0 (the default) waits for the timeout.
        fail_fast: f64 = 0.0, messaging_core::driver::FAIL_FAST_OPTION.help;
        /// Up to this many seconds, at random, added to every reconnection delay, so that many
        /// clients do not reconnect at the same moment (oslo's `kombu_reconnect_splay`).
        kombu_reconnect_splay: f64 = 0.0,
            "up to this many seconds added at random to every reconnection delay";
        /// Consume with `x-cancel-on-ha-failover`: the broker cancels consumers of a mirrored queue
        /// when its leader fails over, and the listener re-declares and consumes again.
        enable_cancel_on_failover: bool = false,
            "consume with x-cancel-on-ha-failover (consumers re-subscribe on failover)";
        /// Seconds waited, on top of the back-off, before consuming again after the broker
        /// cancelled a consumer (a queue deleted or failed over).
        kombu_reconnect_delay: f64 = 1.0,
            "seconds waited before consuming again after a consumer cancel notification";
        /// `x-max-in-memory-length` of quorum queues (0: none).
        rabbit_quorum_max_memory_length: u64 = 0,
            "x-max-in-memory-length of quorum queues (0: none)";
        /// `x-max-in-memory-bytes` of quorum queues (0: none).
        rabbit_quorum_max_memory_bytes: u64 = 0, "x-max-in-memory-bytes of quorum queues (0: none)";
        /// Declare queues with `x-ha-policy: all` (mirrored queues of RabbitMQ before 3.0; later
        /// versions ignore the argument and mirror by policy).
        rabbit_ha_queues: bool = false,
            "declare queues with x-ha-policy: all (not with quorum queues)";
        /// Fanout through one stream per topic, `<topic>_fanout` (`x-queue-type: stream`), that
        /// every server of the topic reads from its own offset, instead of one queue per server.
        /// `rabbit_transient_queues_ttl` is then the stream's retention (`x-max-age`). Needs
        /// `rabbit_transient_quorum_queue` and `rabbit_qos_prefetch_count`, as oslo's does.
        rabbit_stream_fanout: bool = false,
            "fanout through one stream per topic (needs rabbit_transient_quorum_queue and a prefetch count)";
        /// Stable reply and fanout queue names (oslo's queue manager):
        /// `reply_<hostname>:<processname>:<n>` and `<topic>_fanout_<hostname>:<processname>:<n>`,
        /// `n` counting the queues of this service since it started, so that a restarted service
        /// uses the same queues again. Fanout queues are then left to expire, not deleted.
        use_queue_manager: bool = false,
            "stable reply and fanout queue names from hostname and processname";
        /// The host name in queue manager names (default: the machine's).
        hostname: Option<String> = None,
            "host name in queue manager names (default: the machine's)";
        /// The process name in queue manager names (default: the program's file name).
        processname: Option<String> = None,
            "process name in queue manager names (default: the program's)";
        /// Compress the bodies of sent messages as kombu does (`gzip` or `bzip2`; received
        /// messages are decompressed whatever this says).
        kombu_compression: Option<Compression> = None,
            "compress sent bodies as kombu does: gzip (or zlib), bzip2 (or bzip, bz2)";
        /// Accepted, as oslo's: replies are always published mandatory, so that a reply to a
        /// vanished queue is retried and then reported (`false` is logged and ignored).
        direct_mandatory_flag: bool = true,
            "accepted: replies are always published mandatory (oslo deprecated false)";
        /// Accepted (and checked as oslo does), no effect: one connection per transport carries
        /// every send.
        rpc_conn_pool_size: u64 = 30, ONE_CONNECTION;
        /// Accepted (and checked as oslo does), no effect.
        conn_pool_min_size: u64 = 2, ONE_CONNECTION;
        /// Accepted, no effect.
        conn_pool_ttl: u64 = 1200, ONE_CONNECTION;
    }
    aliases {
        ssl_verify_hostname: bool => ssl_enforce_hostname_verification,
            "the same as ssl_enforce_hostname_verification (this driver's former name)";
    }
}

/// The default `frame_max`: 32 KiB.
pub const DEFAULT_FRAME_MAX: u32 = 32_768;

/// The URL query options of the rabbit driver (oslo's names).
pub const OPTIONS: &[OptionSpec] = RabbitConfig::OPTIONS;

impl RabbitConfig {
    /// The defaults, overridden by the URL's query options.
    pub fn from_url(url: &TransportUrl) -> Result<Self> {
        Self::default().with_url_options(url)
    }

    /// This configuration, overridden by the URL's query options.
    pub fn with_url_options(mut self, url: &TransportUrl) -> Result<Self> {
        self.apply_options(&url.options())?;
        self.validate()?;
        if !self.direct_mandatory_flag {
            tracing::warn!(
                "direct_mandatory_flag=false is ignored: replies are always published mandatory, \
                 so that a reply to a vanished queue is retried and then reported, not dropped"
            );
        }
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
            ("kombu_reconnect_delay", self.kombu_reconnect_delay),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(invalid(
                    name,
                    value.to_string(),
                    "expected a non-negative number of seconds",
                ));
            }
        }
        if !(4096..=131_072).contains(&self.frame_max) {
            return Err(invalid(
                "frame_max",
                self.frame_max.to_string(),
                "must be between 4096 and 131072 bytes",
            ));
        }
        if self.rpc_conn_pool_size == 0 || self.rpc_conn_pool_size < self.conn_pool_min_size {
            return Err(invalid(
                "rpc_conn_pool_size",
                self.rpc_conn_pool_size.to_string(),
                &format!(
                    "must be at least 1 and at least conn_pool_min_size ({})",
                    self.conn_pool_min_size
                ),
            ));
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
        if self.heartbeat_rate == 0 {
            return Err(invalid(
                "heartbeat_rate",
                "0".into(),
                "at least 1 check per heartbeat timeout",
            ));
        }
        if self.rabbit_ha_queues && (self.rabbit_quorum_queue || self.rabbit_transient_quorum_queue)
        {
            return Err(invalid(
                "rabbit_ha_queues",
                "true".into(),
                "queues are quorum (rabbit_quorum_queue, rabbit_transient_quorum_queue) or \
                 mirrored (rabbit_ha_queues), not both",
            ));
        }
        self.validate_stream_fanout()?;
        self.tls_versions()?;
        if self.rabbit_login_method == LoginMethod::External && !self.ssl {
            return Err(invalid(
                "rabbit_login_method",
                "EXTERNAL".into(),
                "EXTERNAL needs ssl=true and a client certificate",
            ));
        }
        Ok(())
    }

    /// oslo's conditions for streams: fanout streams are replicated like transient quorum
    /// queues, and a stream consumer needs a prefetch count.
    fn validate_stream_fanout(&self) -> Result<()> {
        if !self.rabbit_stream_fanout {
            return Ok(());
        }
        let needs = |option: &str, value: String, reason: &str| {
            Err(MessagingError::InvalidOption {
                option: option.into(),
                value,
                reason: format!("rabbit_stream_fanout needs {reason}"),
            })
        };
        if self.rabbit_qos_prefetch_count == 0 {
            return needs(
                "rabbit_qos_prefetch_count",
                "0".into(),
                "a prefetch count greater than 0",
            );
        }
        if !self.rabbit_transient_quorum_queue {
            return needs(
                "rabbit_transient_quorum_queue",
                "false".into(),
                "rabbit_transient_quorum_queue=true",
            );
        }
        Ok(())
    }

    /// The TLS versions `ssl_version` allows: all the TLS library has (1.3 and 1.2), or 1.2.
    pub(crate) fn tls_versions(&self) -> Result<TlsVersions> {
        match self.ssl_version.to_ascii_lowercase().as_str() {
            "" | "sslv23" => Ok(TlsVersions::Any),
            "tlsv1_2" => Ok(TlsVersions::Tls12),
            old @ ("tlsv1" | "tlsv1_1" | "sslv2" | "sslv3") => Err(MessagingError::unsupported(
                "rabbit",
                format!("ssl_version={old}: only TLS 1.2 and 1.3 are spoken (TLSv1_2 or SSLv23)"),
            )),
            _ => Err(MessagingError::InvalidOption {
                option: "ssl_version".into(),
                value: self.ssl_version.clone(),
                reason: "expected SSLv23 or TLSv1_2".into(),
            }),
        }
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

    /// The extra delay before consuming again after a consumer cancel notification.
    pub(crate) fn reconnect_delay(&self) -> Duration {
        secs(self.kombu_reconnect_delay)
    }

    /// A random extra reconnection delay, up to `kombu_reconnect_splay`.
    pub(crate) fn reconnect_splay(&self) -> Duration {
        secs(self.kombu_reconnect_splay * fastrand::f64())
    }
}

/// The TLS versions a connection may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsVersions {
    /// TLS 1.3 or 1.2, the highest both sides speak.
    Any,
    /// TLS 1.2 only.
    Tls12,
}

/// Seconds as a duration (invalid values were refused by [`RabbitConfig::validate`]).
pub(crate) fn secs(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The options that are not [`RabbitConfig`] fields: another name of one, or oslo options
    /// accepted (and checked) for compatibility that change nothing here.
    const NOT_FIELDS: &[&str] = &[
        "ssl_verify_hostname",
        "ssl_enforce_fips_mode",
        "direct_mandatory_flag",
        "rpc_conn_pool_size",
        "conn_pool_min_size",
        "conn_pool_ttl",
    ];

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
    fn every_field_has_an_option_and_every_option_a_field_or_a_reason() {
        let json = serde_json::to_value(RabbitConfig::default()).unwrap();
        let fields: Vec<&String> = json.as_object().unwrap().keys().collect();
        for field in &fields {
            assert!(
                OPTIONS.iter().any(|o| o.name == *field),
                "{field} has no URL option"
            );
        }
        for option in OPTIONS {
            assert!(
                fields.iter().any(|f| *f == option.name) || NOT_FIELDS.contains(&option.name),
                "{} is neither a field nor accepted on purpose",
                option.name
            );
        }
    }

    #[test]
    fn oslo_18_options_are_read() {
        let c = RabbitConfig::from_url(&url(
            "rabbit_quorum_queue=true&rabbit_quorum_max_memory_length=100\
             &rabbit_quorum_max_memory_bytes=4096&rabbit_stream_fanout=true\
             &rabbit_transient_quorum_queue=true&rabbit_qos_prefetch_count=10\
             &use_queue_manager=true&hostname=h1&processname=nova-api&kombu_compression=zlib\
             &ssl_enforce_hostname_verification=false&ssl_version=TLSv1_2&heartbeat_rate=5\
             &kombu_reconnect_delay=0.5&direct_mandatory_flag=false&rpc_conn_pool_size=10\
             &ssl_enforce_fips_mode=false",
        ))
        .unwrap();
        assert_eq!(
            (
                c.rabbit_quorum_max_memory_length,
                c.rabbit_quorum_max_memory_bytes
            ),
            (100, 4096)
        );
        assert!(c.rabbit_stream_fanout && c.use_queue_manager);
        assert_eq!(
            (c.hostname.as_deref(), c.processname.as_deref()),
            (Some("h1"), Some("nova-api"))
        );
        assert_eq!(c.kombu_compression, Some(Compression::Gzip));
        assert!(!c.ssl_enforce_hostname_verification);
        assert_eq!(c.tls_versions().unwrap(), TlsVersions::Tls12);
        assert_eq!((c.heartbeat_rate, c.kombu_reconnect_delay), (5, 0.5));
        // This driver's former name of the host name check still works.
        let c = RabbitConfig::from_url(&url("ssl_verify_hostname=false")).unwrap();
        assert!(!c.ssl_enforce_hostname_verification);
        assert_eq!(
            RabbitConfig::default().rabbit_login_method,
            LoginMethod::AmqPlain
        );
    }

    #[test]
    fn display_reads_back_through_an_ini_section() {
        let config = RabbitConfig {
            amqp_durable_queues: true,
            rabbit_qos_prefetch_count: 10,
            frame_max: 4096,
            ssl_ca_file: Some("/etc/ca.pem".into()),
            rabbit_login_method: LoginMethod::Plain,
            rabbit_retry_interval: 0.25,
            kombu_failover_strategy: FailoverStrategy::Shuffle,
            hostname: Some("h1".into()),
            kombu_compression: Some(Compression::Bzip2),
            ..RabbitConfig::default()
        };
        for config in [RabbitConfig::default(), config] {
            let text = config.to_string();
            assert!(text.starts_with("[oslo_messaging_rabbit]\n"), "{text}");
            let ini = messaging_core::config::parse_ini(&text).unwrap();
            let mut url = url("");
            url.query = ini.transport_options().driver_options["rabbit"].clone();
            messaging_core::options::validate(
                "rabbit",
                OPTIONS,
                url.query.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .unwrap();
            assert_eq!(RabbitConfig::from_url(&url).unwrap(), config, "{text}");
        }
    }

    #[test]
    fn inconsistent_settings_are_refused() {
        for query in [
            "ssl_cert_file=/c.pem",
            "rabbit_login_method=EXTERNAL",
            "rabbit_qos_prefetch_count=70000",
            "kombu_reconnect_splay=-1",
            "heartbeat_rate=0",
            "rabbit_quorum_queue=true&rabbit_ha_queues=true",
            "rabbit_stream_fanout=true&rabbit_transient_quorum_queue=true",
            "rabbit_stream_fanout=true&rabbit_qos_prefetch_count=1",
            "ssl_version=TLSv1_9",
            "kombu_compression=snappy",
            "rpc_conn_pool_size=1&conn_pool_min_size=2",
        ] {
            assert!(
                matches!(
                    RabbitConfig::from_url(&url(query)),
                    Err(MessagingError::InvalidOption { .. })
                ),
                "{query}"
            );
        }
        for query in ["ssl_version=TLSv1_1", "kombu_compression=xz"] {
            assert!(
                matches!(
                    RabbitConfig::from_url(&url(query)),
                    Err(MessagingError::Unsupported { .. })
                ),
                "{query}"
            );
        }
    }
}

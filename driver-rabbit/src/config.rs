//! The driver's settings: oslo's `[oslo_messaging_rabbit]` options, read from URL query
//! options (validated by the core against [`OPTIONS`]) or built in code.

use std::time::Duration;

use messaging_core::options::{OptionKind, OptionSpec, Options};
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
    /// User name and password.
    #[serde(rename = "PLAIN")]
    Plain,
    /// User name and password in an AMQP table: RabbitMQ's own mechanism, oslo's default.
    #[default]
    #[serde(rename = "AMQPLAIN")]
    AmqPlain,
    /// The TLS client certificate identifies the user.
    #[serde(rename = "EXTERNAL")]
    External,
    /// RabbitMQ's challenge-response demonstration mechanism (the broker offers it only with
    /// `rabbit_auth_mechanism_cr_demo` enabled).
    #[serde(rename = "RABBIT-CR-DEMO")]
    RabbitCrDemo,
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
    /// How many times per `heartbeat_timeout_threshold` the connection is checked: every
    /// `threshold / rate / 2` seconds, a connection from which nothing (not even a heartbeat)
    /// came for `2 × threshold` is given up, and its users reconnect.
    pub heartbeat_rate: u64,
    /// Connect with TLS (`amqps`, default port 5671).
    pub ssl: bool,
    /// PEM file of the certificate authorities to trust (default: the system's).
    pub ssl_ca_file: Option<String>,
    /// PEM file of the client certificate.
    pub ssl_cert_file: Option<String>,
    /// PEM file (PKCS#8) of the client certificate's key.
    pub ssl_key_file: Option<String>,
    /// Check that the broker's certificate names the host connected to. With `false`, the
    /// certificate chain is still verified (against `ssl_ca_file` or the system's CAs), not
    /// the name.
    pub ssl_enforce_hostname_verification: bool,
    /// The TLS version: empty or `SSLv23` (the highest both sides speak: TLS 1.3 or 1.2) or
    /// `TLSv1_2` (TLS 1.2 only). Older versions are refused (the TLS library has none).
    pub ssl_version: String,
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
    /// Seconds waited, on top of the back-off, before consuming again after the broker
    /// cancelled a consumer (a queue deleted or failed over).
    pub kombu_reconnect_delay: f64,
    /// `x-max-in-memory-length` of quorum queues (0: none).
    pub rabbit_quorum_max_memory_length: u64,
    /// `x-max-in-memory-bytes` of quorum queues (0: none).
    pub rabbit_quorum_max_memory_bytes: u64,
    /// Declare queues with `x-ha-policy: all` (mirrored queues of RabbitMQ before 3.0; later
    /// versions ignore the argument and mirror by policy).
    pub rabbit_ha_queues: bool,
    /// Fanout through one stream per topic, `<topic>_fanout` (`x-queue-type: stream`), that
    /// every server of the topic reads from its own offset, instead of one queue per server.
    /// `rabbit_transient_queues_ttl` is then the stream's retention (`x-max-age`). Needs
    /// `rabbit_transient_quorum_queue` and `rabbit_qos_prefetch_count`, as oslo's does.
    pub rabbit_stream_fanout: bool,
    /// Stable reply and fanout queue names (oslo's queue manager):
    /// `reply_<hostname>:<processname>:<n>` and `<topic>_fanout_<hostname>:<processname>:<n>`,
    /// `n` counting the queues of this service since it started, so that a restarted service
    /// uses the same queues again. Fanout queues are then left to expire, not deleted.
    pub use_queue_manager: bool,
    /// The host name in queue manager names (default: the machine's).
    pub hostname: Option<String>,
    /// The process name in queue manager names (default: the program's file name).
    pub processname: Option<String>,
    /// Compress the bodies of sent messages as kombu does (`gzip` or `bzip2`; received
    /// messages are decompressed whatever this says).
    pub kombu_compression: Option<Compression>,
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
            ssl_enforce_hostname_verification: true,
            ssl_version: String::new(),
            rabbit_login_method: LoginMethod::AmqPlain,
            rabbit_retry_interval: 1.0,
            rabbit_retry_backoff: 2.0,
            rabbit_interval_max: 30.0,
            kombu_failover_strategy: FailoverStrategy::RoundRobin,
            kombu_missing_consumer_retry_timeout: 60.0,
            fail_fast: 0.0,
            kombu_reconnect_splay: 0.0,
            enable_cancel_on_failover: false,
            kombu_reconnect_delay: 1.0,
            rabbit_quorum_max_memory_length: 0,
            rabbit_quorum_max_memory_bytes: 0,
            rabbit_ha_queues: false,
            rabbit_stream_fanout: false,
            use_queue_manager: false,
            hostname: None,
            processname: None,
            kombu_compression: None,
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
        "ssl_enforce_hostname_verification",
        B,
        "check that the broker's certificate names its host (false: the chain only)",
    ),
    OptionSpec::new(
        "ssl_verify_hostname",
        B,
        "the same as ssl_enforce_hostname_verification (this driver's former name)",
    ),
    OptionSpec::new(
        "ssl_version",
        S,
        "TLS version: empty or SSLv23 (TLS 1.3 or 1.2), or TLSv1_2",
    ),
    OptionSpec::new(
        "ssl_enforce_fips_mode",
        B,
        "accepted, no effect (as in oslo 18: OpenSSL 3 removed the switch)",
    ),
    OptionSpec::new(
        "rabbit_login_method",
        OptionKind::Choice(&["PLAIN", "AMQPLAIN", "EXTERNAL", "RABBIT-CR-DEMO"]),
        "SASL login mechanism (default AMQPLAIN)",
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
    OptionSpec::new(
        "kombu_reconnect_delay",
        F,
        "seconds waited before consuming again after a consumer cancel notification",
    ),
    OptionSpec::new(
        "rabbit_quorum_max_memory_length",
        I,
        "x-max-in-memory-length of quorum queues (0: none)",
    ),
    OptionSpec::new(
        "rabbit_quorum_max_memory_bytes",
        I,
        "x-max-in-memory-bytes of quorum queues (0: none)",
    ),
    OptionSpec::new(
        "rabbit_ha_queues",
        B,
        "declare queues with x-ha-policy: all (not with quorum queues)",
    ),
    OptionSpec::new(
        "rabbit_stream_fanout",
        B,
        "fanout through one stream per topic (needs rabbit_transient_quorum_queue and a prefetch count)",
    ),
    OptionSpec::new(
        "use_queue_manager",
        B,
        "stable reply and fanout queue names from hostname and processname",
    ),
    OptionSpec::new(
        "hostname",
        S,
        "host name in queue manager names (default: the machine's)",
    ),
    OptionSpec::new(
        "processname",
        S,
        "process name in queue manager names (default: the program's)",
    ),
    OptionSpec::new(
        "kombu_compression",
        S,
        "compress sent bodies as kombu does: gzip (or zlib), bzip2 (or bzip, bz2)",
    ),
    OptionSpec::new(
        "direct_mandatory_flag",
        B,
        "accepted: replies are always published mandatory (oslo deprecated false)",
    ),
    OptionSpec::new(
        "rpc_conn_pool_size",
        I,
        "accepted, no effect: one connection per transport carries every send",
    ),
    OptionSpec::new(
        "conn_pool_min_size",
        I,
        "accepted, no effect: one connection per transport carries every send",
    ),
    OptionSpec::new(
        "conn_pool_ttl",
        I,
        "accepted, no effect: one connection per transport carries every send",
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
        self.read_queue_options(&o)?;
        self.read_connection_options(&o)?;
        self.read_tls_options(&o)?;
        check_accepted_options(&o)?;
        self.validate()?;
        Ok(self)
    }

    /// What queues are declared and how they are consumed.
    fn read_queue_options(&mut self, o: &Options<'_>) -> Result<()> {
        let c = self;
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
        c.rabbit_quorum_max_memory_length = o.u64(
            "rabbit_quorum_max_memory_length",
            c.rabbit_quorum_max_memory_length,
        )?;
        c.rabbit_quorum_max_memory_bytes = o.u64(
            "rabbit_quorum_max_memory_bytes",
            c.rabbit_quorum_max_memory_bytes,
        )?;
        c.rabbit_transient_quorum_queue = o.bool(
            "rabbit_transient_quorum_queue",
            c.rabbit_transient_quorum_queue,
        )?;
        c.rabbit_ha_queues = o.bool("rabbit_ha_queues", c.rabbit_ha_queues)?;
        c.rabbit_stream_fanout = o.bool("rabbit_stream_fanout", c.rabbit_stream_fanout)?;
        c.use_queue_manager = o.bool("use_queue_manager", c.use_queue_manager)?;
        for (name, field) in [
            ("hostname", &mut c.hostname),
            ("processname", &mut c.processname),
        ] {
            if let Some(value) = o.get(name) {
                *field = Some(value.to_owned()).filter(|v| !v.is_empty());
            }
        }
        c.enable_cancel_on_failover =
            o.bool("enable_cancel_on_failover", c.enable_cancel_on_failover)?;
        c.kombu_reconnect_delay = o.f64("kombu_reconnect_delay", c.kombu_reconnect_delay)?;
        if let Some(name) = o.get("kombu_compression") {
            c.kombu_compression = compression(name)?;
        }
        Ok(())
    }

    /// Connecting, reconnecting and sending.
    fn read_connection_options(&mut self, o: &Options<'_>) -> Result<()> {
        let c = self;
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
        if let Some(method) = o.get("rabbit_login_method") {
            c.rabbit_login_method = match method {
                "PLAIN" => LoginMethod::Plain,
                "EXTERNAL" => LoginMethod::External,
                "RABBIT-CR-DEMO" => LoginMethod::RabbitCrDemo,
                _ => LoginMethod::AmqPlain,
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
        Ok(())
    }

    fn read_tls_options(&mut self, o: &Options<'_>) -> Result<()> {
        let c = self;
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
        // oslo's name wins over this driver's former one.
        for name in ["ssl_verify_hostname", "ssl_enforce_hostname_verification"] {
            c.ssl_enforce_hostname_verification =
                o.bool(name, c.ssl_enforce_hostname_verification)?;
        }
        c.ssl_version = o.string("ssl_version", &c.ssl_version);
        Ok(())
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

/// `kombu_compression`: kombu's names of the codecs it has without extra Python packages
/// (and oslo's documented `bz2`), or none.
fn compression(name: &str) -> Result<Option<Compression>> {
    match name {
        "" => Ok(None),
        "gzip" | "zlib" | "application/x-gzip" => Ok(Some(Compression::Gzip)),
        "bzip2" | "bzip" | "bz2" | "application/x-bz2" => Ok(Some(Compression::Bzip2)),
        "lzma" | "xz" | "brotli" | "zstd" => Err(MessagingError::unsupported(
            "rabbit",
            format!("kombu_compression={name}: only gzip and bzip2 are implemented"),
        )),
        _ => Err(MessagingError::InvalidOption {
            option: "kombu_compression".into(),
            value: name.into(),
            reason: "expected gzip or bzip2".into(),
        }),
    }
}

/// The oslo options accepted without a field here: their values are checked as oslo does,
/// and a setting that would mean something else here is logged.
fn check_accepted_options(o: &Options<'_>) -> Result<()> {
    let pool_size = o.u64("rpc_conn_pool_size", 30)?;
    let pool_min = o.u64("conn_pool_min_size", 2)?;
    o.u64("conn_pool_ttl", 1200)?;
    o.bool("ssl_enforce_fips_mode", false)?;
    if pool_size == 0 || pool_size < pool_min {
        return Err(MessagingError::InvalidOption {
            option: "rpc_conn_pool_size".into(),
            value: pool_size.to_string(),
            reason: format!("must be at least 1 and at least conn_pool_min_size ({pool_min})"),
        });
    }
    if !o.bool("direct_mandatory_flag", true)? {
        tracing::warn!(
            "direct_mandatory_flag=false is ignored: replies are always published mandatory, \
             so that a reply to a vanished queue is retried and then reported, not dropped"
        );
    }
    Ok(())
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

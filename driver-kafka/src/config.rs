//! Settings of the Kafka driver: oslo's `[oslo_messaging_kafka]` names where they exist, read
//! once from the URL query into a [`KafkaConfig`], and turned into librdkafka client configs.

use std::time::Duration;

use messaging_core::options::{OptionKind, OptionSpec};
use messaging_core::{MessagingError, Result, TransportUrl};
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

/// The default Kafka port.
pub const DEFAULT_PORT: u16 = 9092;

/// oslo's default consumer group of listeners without a pool.
pub const DEFAULT_CONSUMER_GROUP: &str = "oslo_messaging_consumer";

/// The URL query options of the `kafka://` driver.
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec::new(
        "compression_codec",
        OptionKind::Choice(&["none", "gzip", "snappy", "lz4", "zstd"]),
        "producer compression (oslo's compression_codec); zstd needs rdkafka's `zstd` feature",
    ),
    OptionSpec::new(
        "producer_batch_size",
        OptionKind::Integer,
        "most records per produce batch (librdkafka batch.num.messages); default 16384",
    ),
    OptionSpec::new(
        "producer_batch_timeout",
        OptionKind::Float,
        "how long a send made while others are in flight waits for more to share its request, in s (linger); a send alone never waits; default 0.001",
    ),
    OptionSpec::new(
        "producer_max_in_flight",
        OptionKind::Integer,
        "most produce requests awaiting the broker's answer per connection (librdkafka max.in.flight); default 1: what queues meanwhile goes in the next request",
    ),
    OptionSpec::new(
        "producer_delivery_timeout",
        OptionKind::Float,
        "longest one produce attempt waits for its delivery report, in s; default 30",
    ),
    OptionSpec::new(
        "acks",
        OptionKind::Choice(&["all", "1", "0"]),
        "broker acknowledgement a delivery waits for; default all (every in-sync replica)",
    ),
    OptionSpec::new(
        "kafka_consumer_timeout",
        OptionKind::Float,
        "longest one consumer poll waits, in s (capped at 0.1: handled offsets are committed every 0.1 s); default 1.0",
    ),
    OptionSpec::new(
        "kafka_max_fetch_bytes",
        OptionKind::Integer,
        "most bytes fetched per partition (max.partition.fetch.bytes); default 1048576",
    ),
    OptionSpec::new(
        "fetch_wait_max_ms",
        OptionKind::Integer,
        "longest the broker holds a listener's fetch while it has no new record, in ms (librdkafka fetch.wait.max.ms); default 20",
    ),
    OptionSpec::new(
        "enable_auto_commit",
        OptionKind::Bool,
        "commit records once delivered to the listener, before they are handled (oslo's option: at most once); default false: once handled (at least once)",
    ),
    OptionSpec::new(
        "max_poll_records",
        OptionKind::Integer,
        "most notifications a listener holds unhandled before it pauses fetching; default 5000",
    ),
    OptionSpec::new(
        "consumer_group",
        OptionKind::String,
        "consumer group of listeners without a pool; default oslo_messaging_consumer",
    ),
    OptionSpec::new(
        "auto_offset_reset",
        OptionKind::Choice(&["latest", "earliest"]),
        "where a consumer group without a committed offset starts; default latest (as oslo)",
    ),
    OptionSpec::new(
        "session_timeout_ms",
        OptionKind::Integer,
        "consumer group session timeout, in ms (librdkafka default 45000)",
    ),
    OptionSpec::new(
        "heartbeat_interval_ms",
        OptionKind::Integer,
        "consumer group heartbeat interval, in ms (librdkafka default 3000)",
    ),
    OptionSpec::new(
        "security_protocol",
        OptionKind::Choice(&["PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL"]),
        "protocol to talk to brokers; SSL needs rdkafka's `ssl` feature",
    ),
    OptionSpec::new(
        "sasl_mechanism",
        OptionKind::String,
        "SASL mechanism (PLAIN, SCRAM-SHA-256, …); user and password come from the URL",
    ),
    OptionSpec::new(
        "ssl_cafile",
        OptionKind::String,
        "CA certificate file to verify brokers",
    ),
    OptionSpec::new(
        "ssl_client_cert_file",
        OptionKind::String,
        "client certificate file",
    ),
    OptionSpec::new("ssl_client_key_file", OptionKind::String, "client key file"),
    OptionSpec::new(
        "ssl_client_key_password",
        OptionKind::String,
        "password of the client key file",
    ),
];

/// Producer compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionCodec {
    /// No compression (oslo's default).
    #[default]
    None,
    /// gzip.
    Gzip,
    /// snappy.
    Snappy,
    /// lz4.
    Lz4,
    /// zstd (needs librdkafka built with zstd).
    Zstd,
}

impl CompressionCodec {
    fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

/// What a delivery report waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Acks {
    /// Every in-sync replica has the record (the default).
    #[default]
    #[serde(rename = "all")]
    All,
    /// The partition leader has it.
    #[serde(rename = "1")]
    Leader,
    /// Nothing: a delivery report only says the record was sent.
    #[serde(rename = "0")]
    None,
}

impl Acks {
    fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Leader => "1",
            Self::None => "0",
        }
    }
}

/// Where a consumer group without a committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OffsetReset {
    /// At the end of the log: only records produced later (oslo's behaviour).
    #[default]
    Latest,
    /// At the start of the log: everything the broker still retains.
    Earliest,
}

impl OffsetReset {
    fn as_str(self) -> &'static str {
        match self {
            Self::Latest => "latest",
            Self::Earliest => "earliest",
        }
    }
}

/// How clients talk to brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SecurityProtocol {
    /// Plain TCP (oslo's default).
    #[default]
    #[serde(rename = "PLAINTEXT")]
    Plaintext,
    /// SASL over plain TCP.
    #[serde(rename = "SASL_PLAINTEXT")]
    SaslPlaintext,
    /// TLS.
    #[serde(rename = "SSL")]
    Ssl,
    /// SASL over TLS.
    #[serde(rename = "SASL_SSL")]
    SaslSsl,
}

impl SecurityProtocol {
    fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }

    fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
}

/// Every setting of the Kafka driver. Build one in code (serde, `Default`) or from a URL's
/// query options with [`KafkaConfig::with_url_options`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Producer compression.
    pub compression_codec: CompressionCodec,
    /// Most records per produce batch (`batch.num.messages`).
    pub producer_batch_size: u64,
    /// How long a send made while other sends of the transport are in flight waits for more
    /// records to share its produce request, in seconds (`linger.ms`). A send with nothing
    /// else in flight never waits: it goes through a second producer without linger. 1 ms by
    /// default (oslo: 0, without waiting for delivery reports): 16 senders each awaiting their
    /// report share one request per round, which brokers that pay per request (nisshi) need;
    /// longer only delays them. 0 sends everything at once through one producer.
    pub producer_batch_timeout: f64,
    /// Most produce requests awaiting the broker's answer on one connection
    /// (`max.in.flight.requests.per.connection`). 1 by default: while one request is in
    /// flight, whatever is sent meanwhile waits and leaves in the next request, so batches
    /// grow with the load without any linger (16 senders each awaiting their delivery report
    /// share one request per round trip instead of sending 16 requests), and a retried
    /// request cannot overtake the one after it. More helps when the broker is far away.
    pub producer_max_in_flight: u64,
    /// Longest one produce attempt waits for its delivery report, in seconds
    /// (`message.timeout.ms`). A send's own timeout and retry policy bound the whole send.
    pub producer_delivery_timeout: f64,
    /// What a delivery report waits for.
    pub acks: Acks,
    /// Longest one consumer poll waits, in seconds. The listener polls at least every 0.1 s
    /// anyway, to commit handled offsets promptly; accepted for oslo compatibility.
    pub kafka_consumer_timeout: f64,
    /// Most bytes fetched per partition (`max.partition.fetch.bytes`).
    pub kafka_max_fetch_bytes: u64,
    /// Longest the broker may hold a listener's fetch request while there is no new record,
    /// in ms (`fetch.wait.max.ms`; librdkafka's default is 500). A broker that answers a fetch
    /// as soon as a record arrives (Apache Kafka) only uses it to bound how often an idle
    /// listener asks; a broker that looks for new records now and then while it holds a fetch
    /// (nisshi checks again after half the time left, a quarter, …) delivers up to about
    /// half of it late. 20 ms keeps light traffic under 10 ms end to end for ≈ 50 requests/s
    /// per idle listener.
    pub fetch_wait_max_ms: u64,
    /// oslo's `enable_auto_commit`. `false` (the default): a record's offset is committed once
    /// the endpoints handled it and every record before it (at least once: a crash or
    /// rebalance delivers again what was not handled). `true`: once the record was delivered
    /// to the listener, before the endpoints ran, as oslo's kafka driver commits: a crash or
    /// rebalance does not deliver again what was being handled (at most once for it). Either
    /// way commits are asynchronous, every 0.1 s while offsets move, and synchronous when
    /// partitions are revoked and when the listener stops.
    pub enable_auto_commit: bool,
    /// Most notifications a listener holds unhandled before it pauses fetching; it resumes
    /// at half. 5,000 by default (oslo's 500 is its batch size per poll): pausing drops what
    /// librdkafka fetched ahead (it is fetched again on resume), so a threshold below what one
    /// fetch brings (`kafka_max_fetch_bytes` per partition) makes a backlog cost a fetch per
    /// few hundred notifications (4,100/s instead of 22,500/s from one outbox on nisshi).
    pub max_poll_records: u64,
    /// Consumer group of listeners without a pool.
    pub consumer_group: String,
    /// Where a consumer group without a committed offset starts.
    pub auto_offset_reset: OffsetReset,
    /// Consumer group session timeout in ms (librdkafka's default when `None`).
    pub session_timeout_ms: Option<u64>,
    /// Consumer group heartbeat interval in ms (librdkafka's default when `None`).
    pub heartbeat_interval_ms: Option<u64>,
    /// How clients talk to brokers.
    pub security_protocol: SecurityProtocol,
    /// SASL mechanism; user name and password come from the URL's first host.
    pub sasl_mechanism: String,
    /// CA certificate file.
    pub ssl_cafile: Option<String>,
    /// Client certificate file.
    pub ssl_client_cert_file: Option<String>,
    /// Client key file.
    pub ssl_client_key_file: Option<String>,
    /// Password of the client key file.
    pub ssl_client_key_password: Option<String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            compression_codec: CompressionCodec::None,
            producer_batch_size: 16384,
            producer_batch_timeout: 0.001,
            producer_max_in_flight: 1,
            producer_delivery_timeout: 30.0,
            acks: Acks::All,
            kafka_consumer_timeout: 1.0,
            kafka_max_fetch_bytes: 1_048_576,
            fetch_wait_max_ms: 20,
            enable_auto_commit: false,
            max_poll_records: 5000,
            consumer_group: DEFAULT_CONSUMER_GROUP.to_owned(),
            auto_offset_reset: OffsetReset::Latest,
            session_timeout_ms: None,
            heartbeat_interval_ms: None,
            security_protocol: SecurityProtocol::Plaintext,
            sasl_mechanism: "PLAIN".to_owned(),
            ssl_cafile: None,
            ssl_client_cert_file: None,
            ssl_client_key_file: None,
            ssl_client_key_password: None,
        }
    }
}

/// Parse a choice-valued option through serde, so names stay in one place.
fn choice<T: for<'de> Deserialize<'de>>(option: &str, value: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(value.to_owned())).map_err(|e| {
        MessagingError::InvalidOption {
            option: option.to_owned(),
            value: value.to_owned(),
            reason: e.to_string(),
        }
    })
}

fn non_empty(value: Option<&str>) -> Option<String> {
    value.filter(|v| !v.is_empty()).map(str::to_owned)
}

fn millis(seconds: f64) -> String {
    Duration::try_from_secs_f64(seconds)
        .unwrap_or_default()
        .as_millis()
        .to_string()
}

impl KafkaConfig {
    /// This config with the URL's query options applied on top (options were validated
    /// against [`OPTIONS`] already).
    pub fn with_url_options(mut self, url: &TransportUrl) -> Result<Self> {
        let o = url.options();
        if let Some(v) = o.get("compression_codec") {
            self.compression_codec = choice("compression_codec", v)?;
        }
        self.producer_batch_size = o.u64("producer_batch_size", self.producer_batch_size)?;
        self.producer_batch_timeout =
            o.f64("producer_batch_timeout", self.producer_batch_timeout)?;
        self.producer_max_in_flight =
            o.u64("producer_max_in_flight", self.producer_max_in_flight)?;
        self.producer_delivery_timeout =
            o.f64("producer_delivery_timeout", self.producer_delivery_timeout)?;
        if let Some(v) = o.get("acks") {
            self.acks = choice("acks", v)?;
        }
        self.kafka_consumer_timeout =
            o.f64("kafka_consumer_timeout", self.kafka_consumer_timeout)?;
        self.kafka_max_fetch_bytes = o.u64("kafka_max_fetch_bytes", self.kafka_max_fetch_bytes)?;
        self.fetch_wait_max_ms = o.u64("fetch_wait_max_ms", self.fetch_wait_max_ms)?;
        self.enable_auto_commit = o.bool("enable_auto_commit", self.enable_auto_commit)?;
        self.max_poll_records = o.u64("max_poll_records", self.max_poll_records)?;
        if let Some(v) = o.get("consumer_group") {
            self.consumer_group = v.to_owned();
        }
        if let Some(v) = o.get("auto_offset_reset") {
            self.auto_offset_reset = choice("auto_offset_reset", v)?;
        }
        if o.get("session_timeout_ms").is_some() {
            self.session_timeout_ms = Some(o.u64("session_timeout_ms", 0)?);
        }
        if o.get("heartbeat_interval_ms").is_some() {
            self.heartbeat_interval_ms = Some(o.u64("heartbeat_interval_ms", 0)?);
        }
        if let Some(v) = o.get("security_protocol") {
            self.security_protocol = choice("security_protocol", v)?;
        }
        if let Some(v) = o.get("sasl_mechanism") {
            self.sasl_mechanism = v.to_owned();
        }
        for (name, field) in [
            ("ssl_cafile", &mut self.ssl_cafile),
            ("ssl_client_cert_file", &mut self.ssl_client_cert_file),
            ("ssl_client_key_file", &mut self.ssl_client_key_file),
            ("ssl_client_key_password", &mut self.ssl_client_key_password),
        ] {
            if let Some(v) = o.get(name) {
                *field = non_empty(Some(v));
            }
        }
        self.validate()?;
        Ok(self)
    }

    /// Check values that serde or the URL cannot rule out.
    pub fn validate(&self) -> Result<()> {
        let invalid = |option: &str, value: String, reason: &str| MessagingError::InvalidOption {
            option: option.to_owned(),
            value,
            reason: reason.to_owned(),
        };
        for (name, value) in [
            ("producer_batch_timeout", self.producer_batch_timeout),
            ("producer_delivery_timeout", self.producer_delivery_timeout),
            ("kafka_consumer_timeout", self.kafka_consumer_timeout),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(invalid(name, value.to_string(), "expected seconds ≥ 0"));
            }
        }
        if self.producer_delivery_timeout < 0.001 {
            return Err(invalid(
                "producer_delivery_timeout",
                self.producer_delivery_timeout.to_string(),
                "must be at least 1 ms",
            ));
        }
        if self.max_poll_records == 0 {
            return Err(invalid(
                "max_poll_records",
                "0".into(),
                "must be at least 1",
            ));
        }
        if self.consumer_group.is_empty() {
            return Err(invalid(
                "consumer_group",
                String::new(),
                "must not be empty",
            ));
        }
        Ok(())
    }

    /// How long one consumer poll waits: `kafka_consumer_timeout`, at most `cap`.
    pub(crate) fn poll_timeout(&self, cap: Duration) -> Duration {
        Duration::try_from_secs_f64(self.kafka_consumer_timeout)
            .unwrap_or(cap)
            .clamp(Duration::from_millis(10), cap)
    }

    /// Longest one produce attempt waits for its delivery report.
    pub(crate) fn delivery_timeout(&self) -> Duration {
        Duration::try_from_secs_f64(self.producer_delivery_timeout)
            .unwrap_or(Duration::from_secs(30))
    }

    /// Settings shared by producers and consumers: brokers, security, logging.
    fn client_config(&self, url: &TransportUrl) -> Result<ClientConfig> {
        if url.hosts.is_empty() {
            return Err(MessagingError::InvalidUrl {
                url: url.to_string(),
                reason: "the kafka driver needs at least one broker host".into(),
            });
        }
        let servers: Vec<String> = url
            .hosts
            .iter()
            .map(|h| {
                let port = h.port_or(DEFAULT_PORT);
                if h.hostname.contains(':') {
                    format!("[{}]:{port}", h.hostname)
                } else {
                    format!("{}:{port}", h.hostname)
                }
            })
            .collect();
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", servers.join(","))
            .set("security.protocol", self.security_protocol.as_str());
        if self.security_protocol.uses_sasl() {
            config.set("sasl.mechanism", &self.sasl_mechanism);
            let first = &url.hosts[0];
            if let Some(user) = &first.username {
                config.set("sasl.username", user);
            }
            if let Some(password) = &first.password {
                config.set("sasl.password", password);
            }
        }
        if self.security_protocol.uses_tls() {
            for (key, value) in [
                ("ssl.ca.location", &self.ssl_cafile),
                ("ssl.certificate.location", &self.ssl_client_cert_file),
                ("ssl.key.location", &self.ssl_client_key_file),
                ("ssl.key.password", &self.ssl_client_key_password),
            ] {
                if let Some(value) = value {
                    config.set(key, value);
                }
            }
        }
        Ok(config)
    }

    /// The producer's librdkafka config (oslo's, plus delivery reports and `acks`).
    pub(crate) fn producer_config(&self, url: &TransportUrl) -> Result<ClientConfig> {
        let mut config = self.client_config(url)?;
        config
            .set("linger.ms", millis(self.producer_batch_timeout))
            .set(
                "max.in.flight.requests.per.connection",
                self.producer_max_in_flight.clamp(1, 1_000_000).to_string(),
            )
            .set(
                "batch.num.messages",
                self.producer_batch_size.clamp(1, 1_000_000).to_string(),
            )
            .set("compression.codec", self.compression_codec.as_str())
            .set("acks", self.acks.as_str())
            .set("message.timeout.ms", millis(self.producer_delivery_timeout));
        Ok(config)
    }

    /// A consumer's librdkafka config for `group` (oslo's, with commits left to the driver).
    pub(crate) fn consumer_config(&self, url: &TransportUrl, group: &str) -> Result<ClientConfig> {
        let mut config = self.client_config(url)?;
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", self.auto_offset_reset.as_str())
            .set(
                "max.partition.fetch.bytes",
                self.kafka_max_fetch_bytes.to_string(),
            )
            .set(
                "fetch.wait.max.ms",
                self.fetch_wait_max_ms.clamp(1, 300_000).to_string(),
            )
            .set("allow.auto.create.topics", "true");
        if let Some(ms) = self.session_timeout_ms {
            config.set("session.timeout.ms", ms.to_string());
        }
        if let Some(ms) = self.heartbeat_interval_ms {
            config.set("heartbeat.interval.ms", ms.to_string());
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<KafkaConfig> {
        let url = TransportUrl::parse(url).unwrap();
        messaging_core::options::validate(
            "kafka",
            OPTIONS,
            url.query.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )?;
        KafkaConfig::default().with_url_options(&url)
    }

    fn get(config: &ClientConfig, key: &str) -> Option<String> {
        config.get(key).map(str::to_owned)
    }

    #[test]
    fn defaults_are_oslos() {
        let url = TransportUrl::parse("kafka://h1,h2:9093/").unwrap();
        let config = KafkaConfig::default();
        let producer = config.producer_config(&url).unwrap();
        assert_eq!(
            get(&producer, "bootstrap.servers").as_deref(),
            Some("h1:9092,h2:9093")
        );
        assert_eq!(get(&producer, "linger.ms").as_deref(), Some("1"));
        assert_eq!(
            get(&producer, "max.in.flight.requests.per.connection").as_deref(),
            Some("1")
        );
        assert_eq!(
            get(&producer, "batch.num.messages").as_deref(),
            Some("16384")
        );
        assert_eq!(get(&producer, "compression.codec").as_deref(), Some("none"));
        assert_eq!(get(&producer, "acks").as_deref(), Some("all"));
        assert_eq!(
            get(&producer, "security.protocol").as_deref(),
            Some("PLAINTEXT")
        );
        assert_eq!(get(&producer, "sasl.username"), None);
        let consumer = config.consumer_config(&url, "g").unwrap();
        assert_eq!(get(&consumer, "group.id").as_deref(), Some("g"));
        assert_eq!(
            get(&consumer, "auto.offset.reset").as_deref(),
            Some("latest")
        );
        assert_eq!(
            get(&consumer, "enable.auto.commit").as_deref(),
            Some("false")
        );
        assert_eq!(
            get(&consumer, "max.partition.fetch.bytes").as_deref(),
            Some("1048576")
        );
        assert_eq!(get(&consumer, "fetch.wait.max.ms").as_deref(), Some("20"));
        assert_eq!(config.consumer_group, "oslo_messaging_consumer");
        assert!(!config.enable_auto_commit);
    }

    #[test]
    fn url_options_override_defaults() {
        let config = parse(
            "kafka://u:p%40ss@h1:9092,u2:x@h2/?compression_codec=lz4&producer_batch_size=10\
             &producer_batch_timeout=0.25&acks=1&auto_offset_reset=earliest&producer_max_in_flight=5\
             &security_protocol=SASL_PLAINTEXT&sasl_mechanism=SCRAM-SHA-256\
             &session_timeout_ms=6000&heartbeat_interval_ms=1000&max_poll_records=7\
             &consumer_group=grp&kafka_consumer_timeout=0.5&kafka_max_fetch_bytes=2048\
             &fetch_wait_max_ms=7&enable_auto_commit=true",
        )
        .unwrap();
        assert_eq!(config.compression_codec, CompressionCodec::Lz4);
        assert_eq!(config.acks, Acks::Leader);
        assert_eq!(config.auto_offset_reset, OffsetReset::Earliest);
        assert_eq!(config.max_poll_records, 7);
        assert_eq!(config.consumer_group, "grp");
        assert!(config.enable_auto_commit);
        assert_eq!(
            config.poll_timeout(Duration::from_secs(1)),
            Duration::from_millis(500)
        );
        assert_eq!(
            config.poll_timeout(Duration::from_millis(100)),
            Duration::from_millis(100)
        );
        let url = TransportUrl::parse("kafka://u:p%40ss@h1:9092,u2:x@h2/").unwrap();
        let producer = config.producer_config(&url).unwrap();
        assert_eq!(get(&producer, "linger.ms").as_deref(), Some("250"));
        assert_eq!(
            get(&producer, "max.in.flight.requests.per.connection").as_deref(),
            Some("5")
        );
        assert_eq!(get(&producer, "acks").as_deref(), Some("1"));
        assert_eq!(
            get(&producer, "sasl.mechanism").as_deref(),
            Some("SCRAM-SHA-256")
        );
        assert_eq!(get(&producer, "sasl.username").as_deref(), Some("u"));
        assert_eq!(get(&producer, "sasl.password").as_deref(), Some("p@ss"));
        let consumer = config.consumer_config(&url, "g").unwrap();
        assert_eq!(
            get(&consumer, "session.timeout.ms").as_deref(),
            Some("6000")
        );
        assert_eq!(
            get(&consumer, "heartbeat.interval.ms").as_deref(),
            Some("1000")
        );
        assert_eq!(
            get(&consumer, "max.partition.fetch.bytes").as_deref(),
            Some("2048")
        );
        assert_eq!(get(&consumer, "fetch.wait.max.ms").as_deref(), Some("7"));
        assert_eq!(
            get(&consumer, "enable.auto.commit").as_deref(),
            Some("false"),
            "the driver commits itself, also with enable_auto_commit"
        );
    }

    #[test]
    fn bad_values_are_rejected() {
        for url in [
            "kafka://h/?compression_codec=brotli",
            "kafka://h/?acks=2",
            "kafka://h/?max_poll_records=0",
            "kafka://h/?consumer_group=",
            "kafka://h/?no_such_option=1",
            "kafka://h/?producer_delivery_timeout=0",
            "kafka://h/?enable_auto_commit=maybe",
        ] {
            assert!(parse(url).is_err(), "{url}");
        }
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        let url = TransportUrl::parse("kafka://[::1]:9092/").unwrap();
        let producer = KafkaConfig::default().producer_config(&url).unwrap();
        assert_eq!(
            get(&producer, "bootstrap.servers").as_deref(),
            Some("[::1]:9092")
        );
    }

    #[test]
    fn serde_round_trip() {
        let config: KafkaConfig = serde_json::from_str(
            r#"{"acks": "0", "compression_codec": "gzip", "security_protocol": "SASL_SSL"}"#,
        )
        .unwrap();
        assert_eq!(config.acks, Acks::None);
        assert_eq!(config.security_protocol, SecurityProtocol::SaslSsl);
        let back: KafkaConfig =
            serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
        assert_eq!(back, config);
    }
}

//! Settings of the Kafka driver: oslo's `[oslo_messaging_kafka]` names where they exist, each
//! declared once below (name, type, default, doc, help), read from the URL query (or a config
//! file's section) into a [`KafkaConfig`], and turned into librdkafka client configs.

use std::time::Duration;

use messaging_core::driver::retry::Backoff;
use messaging_core::options::{DriverConfig, OptionSpec};
use messaging_core::{MessagingError, Result, TransportUrl};
use rdkafka::ClientConfig;

/// The default Kafka port.
pub const DEFAULT_PORT: u16 = 9092;

/// oslo's default consumer group of listeners without a pool.
pub const DEFAULT_CONSUMER_GROUP: &str = "oslo_messaging_consumer";

/// How long librdkafka waits before fetching for a partition whose fetched-ahead queue was
/// full (`fetch.queue.backoff.ms`; its default is 1,000).
const FETCH_QUEUE_BACKOFF_MS: u32 = 10;

/// The URL query options of the `kafka://` driver.
pub const OPTIONS: &[OptionSpec] = KafkaConfig::OPTIONS;

messaging_core::option_enum! {
    /// Producer compression.
    #[derive(Default)]
    pub enum CompressionCodec {
        /// No compression (oslo's default).
        #[default]
        None = "none",
        /// gzip.
        Gzip = "gzip",
        /// snappy.
        Snappy = "snappy",
        /// lz4.
        Lz4 = "lz4",
        /// zstd (needs librdkafka built with zstd).
        Zstd = "zstd",
    }
}

messaging_core::option_enum! {
    /// What a delivery report waits for.
    #[derive(Default)]
    pub enum Acks {
        /// Every in-sync replica has the record (the default).
        #[default]
        All = "all",
        /// The partition leader has it.
        Leader = "1",
        /// Nothing: a delivery report only says the record was sent.
        None = "0",
    }
}

messaging_core::option_enum! {
    /// Where a consumer group without a committed offset starts.
    #[derive(Default)]
    pub enum OffsetReset {
        /// At the end of the log: only records produced later (oslo's behaviour).
        #[default]
        Latest = "latest",
        /// At the start of the log: everything the broker still retains.
        Earliest = "earliest",
    }
}

messaging_core::option_enum! {
    /// How clients talk to brokers.
    #[derive(Default)]
    pub enum SecurityProtocol {
        /// Plain TCP (oslo's default).
        #[default]
        Plaintext = "PLAINTEXT",
        /// SASL over plain TCP.
        SaslPlaintext = "SASL_PLAINTEXT",
        /// TLS.
        Ssl = "SSL",
        /// SASL over TLS.
        SaslSsl = "SASL_SSL",
    }
}

impl SecurityProtocol {
    fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }

    fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
}

messaging_core::driver_options! {
    section = "oslo_messaging_kafka";
    /// Every setting of the Kafka driver. Build one in code (serde, `Default`) or from a URL's
    /// query options with [`KafkaConfig::with_url_options`].
    pub struct KafkaConfig {
        /// Producer compression.
        compression_codec: CompressionCodec = CompressionCodec::None,
            "producer compression (oslo's compression_codec); zstd needs rdkafka's `zstd` feature";
        /// Most records per produce batch (`batch.num.messages`).
        producer_batch_size: u64 = 16384,
            "most records per produce batch (librdkafka batch.num.messages)";
        /// Longest a send made while other sends of the transport are in flight waits for more
        /// records to share its produce request, in seconds. The driver gathers such sends and
        /// hands them to librdkafka together as soon as nothing more is expected (no request in
        /// flight, and every sender released by the last delivery reports sent again), so 16
        /// senders each awaiting their report share one request per round trip without waiting
        /// for this; it bounds the wait when a released sender does not come back. A send with
        /// nothing in flight and nobody about to send leaves at once. 1 ms by default (oslo: 0,
        /// without waiting for delivery reports); 0 hands every send over at once.
        producer_batch_timeout: f64 = 0.001,
            "longest a send made while others are in flight waits for more to share its request, in s; sends go together as soon as no more are expected";
        /// Most produce requests awaiting the broker's answer on one connection
        /// (`max.in.flight.requests.per.connection`). 1 by default: a retried request cannot
        /// overtake the one after it. More helps when the broker is far away.
        producer_max_in_flight: u64 = 1,
            "most produce requests awaiting the broker's answer per connection (librdkafka max.in.flight)";
        /// Longest one produce attempt waits for its delivery report, in seconds
        /// (`message.timeout.ms`). A send's own timeout and retry policy bound the whole send.
        producer_delivery_timeout: f64 = 30.0,
            "longest one produce attempt waits for its delivery report, in s";
        /// Delay before a failed produce attempt is retried, in seconds (no oslo equivalent; as
        /// rabbit's `rabbit_retry_interval`).
        kafka_retry_interval: f64 = 0.25, "first delay before a failed send is retried, in s";
        /// Back-off step of send retries, in seconds: the n-th delay is
        /// `interval + backoff × (2ⁿ − 1)`, with jitter, up to `kafka_retry_interval_max`.
        kafka_retry_backoff: f64 = 0.25, "send retry back-off step, in s";
        /// Longest delay between send retries, in seconds.
        kafka_retry_interval_max: f64 = 5.0, "longest delay between send retries, in s";
        /// What a delivery report waits for.
        acks: Acks = Acks::All,
            "broker acknowledgement a delivery waits for (all: every in-sync replica)";
        /// Longest one consumer poll waits, in seconds. The listener polls at least every 0.1 s
        /// anyway, to commit handled offsets promptly; accepted for oslo compatibility.
        kafka_consumer_timeout: f64 = 1.0,
            "longest one consumer poll waits, in s (capped at 0.1: handled offsets are committed every 0.1 s)";
        /// Most bytes fetched per partition (`max.partition.fetch.bytes`).
        kafka_max_fetch_bytes: u64 = 1_048_576,
            "most bytes fetched per partition (max.partition.fetch.bytes)";
        /// Longest the broker may hold a listener's fetch request while there is no new record,
        /// in ms (`fetch.wait.max.ms`; librdkafka's default is 500). A broker that answers a fetch
        /// as soon as a record arrives (Apache Kafka) only uses it to bound how often an idle
        /// listener asks; a broker that looks for new records now and then while it holds a fetch
        /// (nisshi checks again after half the time left, a quarter, …) delivers up to about
        /// half of it late. 20 ms keeps light traffic under 10 ms end to end for ≈ 50 requests/s
        /// per idle listener.
        fetch_wait_max_ms: u64 = 20,
            "longest the broker holds a listener's fetch while it has no new record, in ms (librdkafka fetch.wait.max.ms)";
        /// oslo's `enable_auto_commit`. `false` (the default): a record's offset is committed once
        /// the endpoints handled it and every record before it (at least once: a crash or
        /// rebalance delivers again what was not handled). `true`: once the record was delivered
        /// to the listener, before the endpoints ran, as oslo's kafka driver commits: a crash or
        /// rebalance does not deliver again what was being handled (at most once for it). Either
        /// way commits are asynchronous, every 0.1 s while offsets move, and synchronous when
        /// partitions are revoked and when the listener stops.
        enable_auto_commit: bool = false,
            "commit records once delivered to the listener, before they are handled (oslo's option: at most once); false: once handled (at least once)";
        /// Most notifications a listener holds unhandled: it takes no more from librdkafka
        /// until its endpoints catch up, and librdkafka fetches ahead at most this many per
        /// partition (`queued.min.messages`). 5,000 by default (oslo's 500 is its batch size per
        /// poll).
        max_poll_records: u64 = 5000,
            "most notifications a listener holds unhandled before it stops taking more";
        /// Consumer group of listeners without a pool.
        consumer_group: String = DEFAULT_CONSUMER_GROUP.to_owned(),
            "consumer group of listeners without a pool";
        /// Where a consumer group without a committed offset starts.
        auto_offset_reset: OffsetReset = OffsetReset::Latest,
            "where a consumer group without a committed offset starts (latest: as oslo)";
        /// Consumer group session timeout in ms (librdkafka's default when `None`).
        session_timeout_ms: Option<u64> = None,
            "consumer group session timeout, in ms (librdkafka default 45000)";
        /// Consumer group heartbeat interval in ms (librdkafka's default when `None`).
        heartbeat_interval_ms: Option<u64> = None,
            "consumer group heartbeat interval, in ms (librdkafka default 3000)";
        /// How clients talk to brokers.
        security_protocol: SecurityProtocol = SecurityProtocol::Plaintext,
            "protocol to talk to brokers; SSL needs rdkafka's `ssl` feature";
        /// SASL mechanism; user name and password come from the URL's first host.
        sasl_mechanism: String = "PLAIN".to_owned(),
            "SASL mechanism (PLAIN, SCRAM-SHA-256, …); user and password come from the URL";
        /// CA certificate file.
        ssl_cafile: Option<String> = None, "CA certificate file to verify brokers";
        /// Client certificate file.
        ssl_client_cert_file: Option<String> = None, "client certificate file";
        /// Client key file.
        ssl_client_key_file: Option<String> = None, "client key file";
        /// Password of the client key file.
        ssl_client_key_password: Option<String> = None, "password of the client key file";
    }
}

fn millis(seconds: f64) -> String {
    Duration::try_from_secs_f64(seconds)
        .unwrap_or_default()
        .as_millis()
        .to_string()
}

/// Seconds as milliseconds to the microsecond, for librdkafka's settings of type float.
fn fractional_millis(seconds: f64) -> String {
    (secs(seconds).as_micros() as f64 / 1000.0).to_string()
}

/// Seconds as a duration (invalid values were refused by [`KafkaConfig::validate`]).
fn secs(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds).unwrap_or_default()
}

impl KafkaConfig {
    /// This config with the URL's query options applied on top (options were validated
    /// against [`OPTIONS`] already).
    pub fn with_url_options(mut self, url: &TransportUrl) -> Result<Self> {
        self.apply_options(&url.options())?;
        self.validate()?;
        Ok(self)
    }

    /// The back-off between attempts of a send: `kafka_retry_interval`,
    /// `kafka_retry_backoff`, `kafka_retry_interval_max`.
    pub fn backoff(&self) -> Backoff {
        Backoff::new(
            secs(self.kafka_retry_interval),
            secs(self.kafka_retry_backoff),
            secs(self.kafka_retry_interval_max),
        )
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
            ("kafka_retry_interval", self.kafka_retry_interval),
            ("kafka_retry_backoff", self.kafka_retry_backoff),
            ("kafka_retry_interval_max", self.kafka_retry_interval_max),
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

    /// Longest a record sent alongside others waits for more to share its produce request.
    pub(crate) fn linger(&self) -> Duration {
        secs(self.producer_batch_timeout)
    }

    /// Most records handed to the producer together.
    pub(crate) fn batch_size(&self) -> usize {
        usize::try_from(self.producer_batch_size.clamp(1, 1_000_000)).unwrap_or(1_000_000)
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
            // The driver gathers records itself and has what it hands over sent at once (see
            // the `batches` module); librdkafka's own linger only keeps a batch together.
            .set("linger.ms", fractional_millis(self.producer_batch_timeout))
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
            .set("allow.auto.create.topics", "true")
            // Fetch ahead no more than the listener may hold, and fetch again soon once it
            // took some (librdkafka's default waits a second: a backlog drained in a few
            // milliseconds would then stall the listener).
            .set(
                "queued.min.messages",
                self.max_poll_records.clamp(1, 10_000_000).to_string(),
            )
            .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS.to_string());
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
        assert_eq!(
            get(&consumer, "queued.min.messages").as_deref(),
            Some("5000")
        );
        assert_eq!(
            get(&consumer, "fetch.queue.backoff.ms").as_deref(),
            Some("10")
        );
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
        assert_eq!(get(&consumer, "queued.min.messages").as_deref(), Some("7"));
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
    fn retry_options_reach_the_backoff() {
        let first_delay = |config: &KafkaConfig| config.backoff().next_delay().as_secs_f64();
        let default = first_delay(&KafkaConfig::default());
        assert!((0.125..=0.25).contains(&default), "{default}");
        let config = parse("kafka://h/?kafka_retry_interval=2&kafka_retry_interval_max=3").unwrap();
        let slow = first_delay(&config);
        assert!((1.0..=2.0).contains(&slow), "{slow}");
        let mut backoff = config.backoff();
        let capped = (0..5).map(|_| backoff.next_delay()).max().unwrap();
        assert!(capped <= Duration::from_secs(3), "{capped:?}");
        assert!(parse("kafka://h/?kafka_retry_backoff=-1").is_err());
    }

    #[test]
    fn display_reads_back_through_an_ini_section() {
        let config = KafkaConfig {
            compression_codec: CompressionCodec::Lz4,
            producer_batch_timeout: 0.25,
            kafka_retry_interval_max: 7.5,
            acks: Acks::Leader,
            session_timeout_ms: Some(6000),
            consumer_group: "grp".into(),
            ssl_cafile: Some("/etc/ca.pem".into()),
            ..KafkaConfig::default()
        };
        for config in [KafkaConfig::default(), config] {
            let text = config.to_string();
            assert!(text.starts_with("[oslo_messaging_kafka]\n"), "{text}");
            let ini = messaging_core::config::parse_ini(&text).unwrap();
            let mut url = TransportUrl::parse("kafka://h/").unwrap();
            url.query = ini.transport_options().driver_options["kafka"].clone();
            messaging_core::options::validate(
                "kafka",
                OPTIONS,
                url.query.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .unwrap();
            assert_eq!(
                KafkaConfig::default().with_url_options(&url).unwrap(),
                config,
                "{text}"
            );
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

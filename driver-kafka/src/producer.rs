//! The producer shared by a transport's notifiers and listeners (for requeues): one
//! librdkafka producer, many records in flight, each send awaiting its own delivery report.

use std::time::Duration;

use messaging_core::driver::retry::{with_retry, Backoff, Failure};
use messaging_core::driver::SendOptions;
use messaging_core::{MessagingError, Result, TransportUrl};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::time::sleep;

use crate::config::KafkaConfig;
use crate::logging::TracingContext;

/// The transport's producer.
pub(crate) struct Publisher {
    producer: FutureProducer<TracingContext>,
    delivery_timeout: Duration,
}

impl Publisher {
    /// A producer for the URL's brokers. It connects in the background.
    pub fn new(config: &KafkaConfig, url: &TransportUrl) -> Result<Self> {
        let producer = config
            .producer_config(url)?
            .create_with_context(TracingContext)
            .map_err(|e| refused_config(url, e))?;
        Ok(Self {
            producer,
            delivery_timeout: config.delivery_timeout(),
        })
    }

    /// Produce `payload` (no key, no headers) to `topic` and wait for the broker's delivery
    /// report. Failed attempts are retried as `options.retry` allows, the whole send bounded by
    /// `options.timeout`; each attempt is bounded by `producer_delivery_timeout`.
    pub async fn publish(&self, topic: &str, payload: &[u8], options: &SendOptions) -> Result<()> {
        // 0.25 s, 0.5 s, 1 s, 2 s, 4 s, then 5 s between attempts (with jitter).
        let backoff = Backoff::new(
            Duration::from_millis(250),
            Duration::from_millis(250),
            Duration::from_secs(5),
        );
        messaging_core::telemetry::record_body_size(payload.len());
        let what = format!("delivery of a record to `{topic}`");
        with_retry(&what, options, backoff, || self.attempt(topic, payload)).await
    }

    async fn attempt(&self, topic: &str, payload: &[u8]) -> Result<(), Failure> {
        let mut record = FutureRecord::<(), [u8]>::to(topic).payload(payload);
        let delivery = loop {
            match self.producer.send_result(record) {
                Ok(delivery) => break delivery,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // librdkafka's local queue is full: wait for deliveries to drain it.
                    record = back;
                    sleep(Duration::from_millis(10)).await;
                }
                Err((error, _)) => return Err(classify(topic, payload.len(), error)),
            }
        };
        // The delivery report is bounded by `message.timeout.ms`.
        match tokio::time::timeout(self.delivery_timeout + Duration::from_secs(5), delivery).await {
            Ok(Ok(Ok(_))) => Ok(()),
            Ok(Ok(Err((error, _)))) => Err(classify(topic, payload.len(), error)),
            Ok(Err(_canceled)) => Err(Failure::Fatal(MessagingError::ConnectionFailure(
                "the kafka producer was closed".into(),
            ))),
            Err(_) => Err(Failure::Retry(MessagingError::ConnectionFailure(format!(
                "no delivery report for a record to `{topic}` within {:?}",
                self.delivery_timeout
            )))),
        }
    }

    /// Make sure the topics exist before a consumer subscribes to them (a subscription
    /// ignores a missing topic until its next metadata refresh). A metadata request for a
    /// topic lets the broker create it (`auto.create.topics.enable`); nothing is produced.
    pub async fn ensure_topics(&self, topics: &[String], within: Duration) -> Result<()> {
        let producer = self.producer.clone();
        let topics = topics.to_vec();
        tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + within;
            for topic in &topics {
                loop {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    let found = producer
                        .client()
                        .fetch_metadata(Some(topic), left.max(Duration::from_millis(100)));
                    let ready = match &found {
                        Ok(metadata) => metadata.topics().iter().any(|t| {
                            t.name() == topic && t.error().is_none() && !t.partitions().is_empty()
                        }),
                        Err(_) => false,
                    };
                    if ready {
                        break;
                    }
                    if std::time::Instant::now() >= deadline {
                        return Err(MessagingError::ConnectionFailure(format!(
                            "kafka topic `{topic}` is not available: {}",
                            match found {
                                Ok(m) =>
                                    format!("{:?}", m.topics().first().and_then(|t| t.error())),
                                Err(e) => e.to_string(),
                            }
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| MessagingError::ConnectionFailure(format!("topic check failed: {e}")))?
    }

    /// Wait (blocking) until the records in flight are delivered or `timeout` passes.
    pub fn flush(&self, timeout: Duration) {
        if let Err(error) = self.producer.flush(timeout) {
            tracing::warn!(%error, "kafka producer flush");
        }
    }
}

/// librdkafka refused a client config (e.g. SSL in a build without OpenSSL).
pub(crate) fn refused_config(url: &TransportUrl, error: KafkaError) -> MessagingError {
    MessagingError::InvalidUrl {
        url: url.to_string(),
        reason: format!("librdkafka refused the configuration: {error}"),
    }
}

/// librdkafka's default `message.max.bytes`, the limit it reports records against.
const MESSAGE_MAX_BYTES: usize = 1_000_000;

fn classify(topic: &str, size: usize, error: KafkaError) -> Failure {
    use RDKafkaErrorCode as C;
    let Some(code) = error.rdkafka_error_code() else {
        return Failure::Fatal(MessagingError::DeliveryFailure(format!(
            "record to `{topic}`: {error}"
        )));
    };
    let text = format!("record to `{topic}` not delivered: {error}");
    match code {
        C::MessageTimedOut
        | C::AllBrokersDown
        | C::BrokerTransportFailure
        | C::Resolve
        | C::OperationTimedOut
        | C::RequestTimedOut
        | C::NetworkException
        | C::BrokerNotAvailable => Failure::Retry(MessagingError::ConnectionFailure(text)),
        C::LeaderNotAvailable
        | C::NotLeaderForPartition
        | C::NotEnoughReplicas
        | C::NotEnoughReplicasAfterAppend
        | C::UnknownTopicOrPartition
        | C::UnknownPartition
        | C::UnknownTopic
        | C::ReplicaNotAvailable => Failure::Retry(MessagingError::DeliveryFailure(text)),
        C::MessageSizeTooLarge => Failure::Fatal(MessagingError::PayloadTooLarge {
            size,
            limit: MESSAGE_MAX_BYTES,
        }),
        C::Authentication | C::SaslAuthenticationFailed => {
            Failure::Fatal(MessagingError::AuthenticationFailure(text))
        }
        _ => Failure::Fatal(MessagingError::DeliveryFailure(text)),
    }
}

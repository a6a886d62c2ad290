//! The producer shared by a transport's notifiers and listeners (for requeues): many
//! records in flight, each send awaiting its own delivery report.
//!
//! Linger is only paid when it can help: a send with no other send of the transport in
//! flight goes through a librdkafka producer without linger and leaves at once (one round
//! trip), while sends made alongside others go through a second producer that waits up to
//! `producer_batch_timeout` for more records to share the request (with 16 senders each
//! awaiting their report, one request per round instead of many small ones, which a broker
//! pays for per request). Kafka gives records without a key no order across partitions, so
//! two producers change no guarantee.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use messaging_core::driver::retry::{with_retry, Backoff, Describe, Failure};
use messaging_core::driver::SendOptions;
use messaging_core::{MessagingError, Result, TransportUrl};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::ClientConfig;
use tokio::time::sleep;

use crate::config::KafkaConfig;
use crate::logging::TracingContext;

/// The transport's producer.
pub(crate) struct Publisher {
    /// For a send with nothing else in flight: no linger.
    immediate: Served,
    /// For sends alongside others, with the configured linger (`None` when it is 0).
    batching: Option<Served>,
    /// Sends of this transport in progress.
    sending: AtomicUsize,
    delivery_timeout: Duration,
    /// Between attempts of a send (`kafka_retry_interval`, …).
    backoff: Backoff,
    /// `host:port,…`, for errors.
    bootstrap: String,
    /// The producer's context (shared), for the last client error.
    context: TracingContext,
}

/// Whether the topics a listener subscribes to exist (see [`Publisher::ensure_topics`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Topics {
    /// Every topic exists and has partitions.
    Ready,
    /// A broker answers, but some topic was not available in time.
    NotYet,
}

impl Publisher {
    /// The producers for the URL's brokers. They connect in the background.
    pub fn new(config: &KafkaConfig, url: &TransportUrl) -> Result<Self> {
        let batching_config = config.producer_config(url)?;
        let bootstrap = batching_config
            .get("bootstrap.servers")
            .unwrap_or_default()
            .to_owned();
        let context = TracingContext::default();
        let create = |config: &ClientConfig| Served::new(config, context.clone(), url);
        let mut immediate_config = batching_config.clone();
        immediate_config.set("linger.ms", "0");
        let lingers = batching_config.get("linger.ms").is_some_and(|ms| ms != "0");
        Ok(Self {
            immediate: create(&immediate_config)?,
            batching: lingers.then(|| create(&batching_config)).transpose()?,
            sending: AtomicUsize::new(0),
            delivery_timeout: config.delivery_timeout(),
            backoff: config.backoff(),
            bootstrap,
            context,
        })
    }

    /// Produce `payload` (no key, no headers) to `topic` and wait for the broker's delivery
    /// report. Failed attempts are retried as `options.retry` allows, the whole send bounded by
    /// `options.timeout`; each attempt is bounded by `producer_delivery_timeout`.
    pub async fn publish(&self, topic: &str, payload: &[u8], options: &SendOptions) -> Result<()> {
        messaging_core::telemetry::record_body_size(payload.len());
        let what = Describe::new(|f| write!(f, "delivery of a record to `{topic}`"));
        let backoff = self.backoff.clone();
        with_retry(&what, options, backoff, || self.attempt(topic, payload)).await
    }

    async fn attempt(&self, topic: &str, payload: &[u8]) -> Result<(), Failure> {
        // Held until the delivery report arrived.
        let sending = Sending::start(&self.sending);
        let producer = match &self.batching {
            Some(batching) if sending.alongside_others => batching,
            _ => &self.immediate,
        };
        let (report, delivered) = oneshot::channel();
        let mut record = Record::with_opaque_to(topic, Box::new(report)).payload(payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // librdkafka's local queue is full: wait for deliveries to drain it.
                    record = back;
                    sleep(Duration::from_millis(10)).await;
                }
                Err((error, _)) => return Err(classify(topic, payload.len(), error)),
            }
        }
        // The delivery report is bounded by `message.timeout.ms`.
        match tokio::time::timeout(self.delivery_timeout + Duration::from_secs(5), delivered).await
        {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(error))) => Err(self.explain(classify(topic, payload.len(), error))),
            Ok(Err(_dropped)) => Err(Failure::Fatal(MessagingError::ConnectionFailure(
                "the kafka producer was closed".into(),
            ))),
            Err(_) => Err(Failure::Retry(MessagingError::ConnectionFailure(format!(
                "no delivery report for a record to `{topic}` within {:?}",
                self.delivery_timeout
            )))),
        }
    }

    /// A transient failure with the last client error added when it explains it (e.g. a
    /// delivery that timed out because no broker accepts connections).
    fn explain(&self, failure: Failure) -> Failure {
        let Failure::Retry(MessagingError::ConnectionFailure(text)) = failure else {
            return failure;
        };
        // Within twice the attempt: librdkafka reports a connection error once, not every retry.
        let text = match self.context.last_error(2 * self.delivery_timeout) {
            Some(cause) => format!("{text} (last client error: {cause})"),
            None => text,
        };
        Failure::Retry(MessagingError::ConnectionFailure(text))
    }

    /// Make sure the topics exist before a consumer subscribes to them (a subscription
    /// ignores a missing topic until its next metadata refresh). A metadata request for a
    /// topic lets the broker create it (`auto.create.topics.enable`); nothing is produced.
    ///
    /// A [`MessagingError::ConnectionFailure`] when no bootstrap server answered within
    /// `connect`; [`Topics::NotYet`] when one answered but a topic was not available within
    /// `within`.
    pub async fn ensure_topics(
        &self,
        topics: &[String],
        connect: Duration,
        within: Duration,
    ) -> Result<Topics> {
        let producer = self.immediate.producer.clone();
        let topics = topics.to_vec();
        let found = tokio::task::spawn_blocking(move || {
            wait_for_topics(&producer, &topics, connect, within)
        })
        .await
        .map_err(|e| MessagingError::ConnectionFailure(format!("topic check failed: {e}")))?;
        found.map_err(|error| {
            let cause = self
                .context
                .last_error(2 * connect)
                .map(|cause| format!("; last client error: {cause}"))
                .unwrap_or_default();
            MessagingError::ConnectionFailure(format!(
                "no kafka broker of {} answered within {connect:?} ({error}{cause})",
                self.bootstrap
            ))
        })
    }

    /// Wait (blocking) until the records in flight are delivered or `timeout` passes.
    pub fn flush(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for served in std::iter::once(&self.immediate).chain(&self.batching) {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Err(error) = served.producer.flush(left) {
                tracing::warn!(%error, "kafka producer flush");
            }
        }
    }
}

/// Ask for each topic's metadata (blocking) until it has partitions: the broker's error if no
/// broker answered within `connect`, [`Topics::NotYet`] if a topic was not there within
/// `within`.
fn wait_for_topics(
    producer: &BaseProducer<TracingContext>,
    topics: &[String],
    connect: Duration,
    within: Duration,
) -> std::result::Result<Topics, KafkaError> {
    let started = Instant::now();
    let mut answered = false;
    for topic in topics {
        loop {
            let limit = if answered { within } else { connect };
            let left = limit.saturating_sub(started.elapsed());
            let found = producer
                .client()
                .fetch_metadata(Some(topic), left.max(Duration::from_millis(100)));
            answered |= found.is_ok();
            let ready = found.as_ref().is_ok_and(|metadata| {
                metadata
                    .topics()
                    .iter()
                    .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
            });
            if ready {
                break;
            }
            if started.elapsed() >= limit {
                return match found {
                    Err(error) if !answered => Err(error),
                    _ => Ok(Topics::NotYet),
                };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(Topics::Ready)
}

/// A record's delivery report, sent by librdkafka's callback to the send awaiting it. Not
/// tokio's oneshot: that one counts against the task's cooperative budget, and an outbox
/// polling thousands of sends in one task then polled each of them several times per report
/// (+15 % instructions per notification under callgrind).
type Report = oneshot::Sender<KafkaResult<()>>;

/// A record without key or headers, carrying the sender of its delivery report.
type Record<'a> = BaseRecord<'a, (), [u8], Box<Report>>;

impl ProducerContext for TracingContext {
    type DeliveryOpaque = Box<Report>;

    fn delivery(&self, result: &DeliveryResult<'_>, report: Box<Report>) {
        // The send may have given up waiting: then nobody hears it.
        let _ = report.send(result.as_ref().map(|_| ()).map_err(|(e, _)| e.clone()));
    }
}

/// How long one round of serving a producer's events lasts while records are in flight.
const SERVE_ROUND: Duration = Duration::from_millis(100);
/// How often a producer with nothing in flight looks for events (a broker going down).
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// A librdkafka producer whose events (delivery reports, errors, logs) a thread of its own
/// serves while anything is in flight, and which sleeps otherwise.
///
/// rdkafka's `ThreadedProducer` (under its `FutureProducer`) serves events in 100 ms rounds
/// forever, and spins through the last millisecond of each, where the time left rounds down
/// to a 0 ms wait: 0.75 % of a core for each producer of an idle process, measured per thread.
struct Served {
    producer: Arc<BaseProducer<TracingContext>>,
    server: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Served {
    fn new(config: &ClientConfig, context: TracingContext, url: &TransportUrl) -> Result<Self> {
        let producer: Arc<BaseProducer<TracingContext>> = Arc::new(
            config
                .create_with_context(context)
                .map_err(|e| refused_config(url, e))?,
        );
        let stop = Arc::new(AtomicBool::new(false));
        let server = std::thread::Builder::new()
            .name("kafka-producer".into())
            .spawn({
                let (producer, stop) = (producer.clone(), stop.clone());
                move || serve(&producer, &stop)
            })
            .map_err(|e| {
                MessagingError::ConnectionFailure(format!("cannot start a thread: {e}"))
            })?;
        Ok(Self {
            producer,
            server: Some(server),
            stop,
        })
    }

    /// Hand `record` to librdkafka and wake the thread that serves its delivery report. A
    /// refused record comes back with the error, as from rdkafka, to be sent again.
    #[allow(clippy::result_large_err)]
    fn send<'a>(&self, record: Record<'a>) -> std::result::Result<(), (KafkaError, Record<'a>)> {
        self.producer.send(record)?;
        if let Some(server) = &self.server {
            server.thread().unpark();
        }
        Ok(())
    }
}

/// Serve `producer`'s events while anything is in flight (records, or events waiting to be
/// served), else sleep until a send wakes the thread or [`IDLE_CHECK`] passes.
fn serve(producer: &BaseProducer<TracingContext>, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        if producer.in_flight_count() > 0 {
            producer.poll(SERVE_ROUND);
        } else {
            // A send between the count and here leaves its wake-up for `park` to return at once.
            std::thread::park_timeout(IDLE_CHECK);
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(server) = self.server.take() {
            server.thread().unpark();
            let _ = server.join();
        }
        // The producer, dropped last, purges what is left; the sends waiting on it fail.
    }
}

/// Counts a send in progress for as long as it lives.
struct Sending<'a> {
    count: &'a AtomicUsize,
    /// Other sends were in progress when this one started.
    alongside_others: bool,
}

impl<'a> Sending<'a> {
    fn start(count: &'a AtomicUsize) -> Self {
        let before = count.fetch_add(1, Ordering::SeqCst);
        Self {
            count,
            alongside_others: before > 0,
        }
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
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

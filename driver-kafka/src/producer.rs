//! The producer shared by a transport's notifiers and listeners (for requeues): many
//! records in flight, each send awaiting its own delivery report.
//!
//! Records sent alongside others are gathered by the driver and handed to librdkafka together
//! (see the `batches` module); librdkafka then sends them at once, in one request. Kafka gives
//! records without a key no order across partitions.

use std::sync::atomic::{AtomicBool, Ordering};
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

use crate::batches::{Batches, Held, Place};
use crate::config::KafkaConfig;
use crate::logging::TracingContext;

/// The transport's producer.
pub(crate) struct Publisher {
    producer: Served,
    /// Records waiting to be handed to the producer together.
    batches: Batches<Box<Report>>,
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
    /// The producer for the URL's brokers. It connects in the background.
    pub fn new(config: &KafkaConfig, url: &TransportUrl) -> Result<Self> {
        let producer_config = config.producer_config(url)?;
        let bootstrap = producer_config
            .get("bootstrap.servers")
            .unwrap_or_default()
            .to_owned();
        let context = TracingContext::default();
        Ok(Self {
            producer: Served::new(&producer_config, context.clone(), url)?,
            batches: Batches::new(config.linger(), config.batch_size()),
            delivery_timeout: config.delivery_timeout(),
            backoff: config.backoff(),
            bootstrap,
            context,
        })
    }

    /// Produce `payload` (no key, no headers) to `topic` and wait for the broker's delivery
    /// report. Failed attempts are retried as `options.retry` allows, the whole send bounded by
    /// `options.timeout`; each attempt is bounded by `producer_delivery_timeout`.
    pub async fn publish(
        &self,
        topic: &Arc<str>,
        payload: Arc<Vec<u8>>,
        options: &SendOptions,
    ) -> Result<()> {
        messaging_core::telemetry::record_body_size(payload.len());
        let what = Describe::new(|f| write!(f, "delivery of a record to `{topic}`"));
        let backoff = self.backoff.clone();
        with_retry(&what, options, backoff, || self.attempt(topic, &payload)).await
    }

    async fn attempt(&self, topic: &Arc<str>, payload: &Arc<Vec<u8>>) -> Result<(), Failure> {
        loop {
            match self.produce(topic, payload).await? {
                Ok(()) => return Ok(()),
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    // librdkafka's local queue was full: wait for deliveries to drain it.
                    sleep(Duration::from_millis(10)).await;
                }
                Err(error) => return Err(self.explain(classify(topic, payload.len(), error))),
            }
        }
    }

    /// Offer the record to the batches and wait for its delivery report.
    async fn produce(
        &self,
        topic: &Arc<str>,
        payload: &Arc<Vec<u8>>,
    ) -> Result<KafkaResult<()>, Failure> {
        let (report, delivered) = oneshot::channel();
        let held = Held {
            // Shared, not copied: the batch may be handed over by another sender's task.
            topic: topic.clone(),
            payload: payload.clone(),
            report: Box::new(report),
        };
        let (place, now) = self.batches.offer(held);
        self.hand_over(now);
        let mut sent = Sent {
            place,
            publisher: self,
        };
        // The delivery report is bounded by `message.timeout.ms`.
        let limit = self.delivery_timeout + Duration::from_secs(5);
        match sent.report(delivered, limit).await {
            Some(Ok(result)) => Ok(result),
            Some(Err(_dropped)) => Err(Failure::Fatal(MessagingError::ConnectionFailure(
                "the kafka producer was closed".into(),
            ))),
            None => Err(Failure::Retry(MessagingError::ConnectionFailure(format!(
                "no delivery report for a record to `{topic}` within {:?}",
                self.delivery_timeout
            )))),
        }
    }

    /// Give `records` to librdkafka, and have them sent at once (see [`expedite`]): they leave
    /// in one request. A record it refuses hears the error as its report.
    fn hand_over(&self, records: Vec<Held<Box<Report>>>) {
        if records.is_empty() {
            return;
        }
        for held in records {
            let record =
                Record::with_opaque_to(&held.topic, held.report).payload(held.payload.as_slice());
            if let Err((error, record)) = self.producer.producer.send(record) {
                let _ = record.delivery_opaque.send(Err(error));
            }
        }
        self.producer.wake();
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
        let producer = self.producer.producer.clone();
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

    /// Wait (blocking) until the records gathered or in flight are delivered or `timeout`
    /// passes.
    pub fn flush(&self, timeout: Duration) {
        self.hand_over(self.batches.take_all());
        if let Err(error) = self.producer.producer.flush(timeout) {
            tracing::warn!(%error, "kafka producer flush");
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
/// serves while anything is in flight, and which sleeps otherwise; a second thread has what
/// the driver hands over sent at once.
///
/// rdkafka's `ThreadedProducer` (under its `FutureProducer`) serves events in 100 ms rounds
/// forever, and spins through the last millisecond of each, where the time left rounds down
/// to a 0 ms wait: 0.75 % of a core for each producer of an idle process, measured per thread.
struct Served {
    producer: Arc<BaseProducer<TracingContext>>,
    server: Option<JoinHandle<()>>,
    /// Sends what was handed over at once, without librdkafka's linger.
    expediter: Option<JoinHandle<()>>,
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
        let start = |name: &str, run: fn(&BaseProducer<TracingContext>, &AtomicBool)| {
            let (producer, stop) = (producer.clone(), stop.clone());
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || run(&producer, &stop))
                .map_err(|e| {
                    MessagingError::ConnectionFailure(format!("cannot start a thread: {e}"))
                })
        };
        Ok(Self {
            server: Some(start("kafka-producer", serve)?),
            expediter: Some(start("kafka-expedite", expedite)?),
            producer,
            stop,
        })
    }

    /// Records were handed over: have them sent now, and wake the thread that serves their
    /// delivery reports.
    fn wake(&self) {
        for thread in [&self.expediter, &self.server].into_iter().flatten() {
            thread.thread().unpark();
        }
    }
}

/// Longest the expediter keeps librdkafka sending without linger after a hand-over, in ms.
const EXPEDITE_MS: i32 = 1;

/// Each time records were handed over, make librdkafka send what it holds at once.
///
/// librdkafka sends a partial batch before its linger only while `rd_kafka_flush` runs:
/// records handed to a producer without linger left in several requests instead (a broker
/// thread woken by the first record takes what arrived so far: 3 records per request on
/// average, measured with strace), and no call enqueues several records at once. The flush
/// waits until nothing is in flight, at most [`EXPEDITE_MS`]; the driver hands nothing more
/// over meanwhile unless a batch is complete (see the `batches` module).
fn expedite(producer: &BaseProducer<TracingContext>, stop: &AtomicBool) {
    let client = producer.client().native_ptr();
    loop {
        std::thread::park();
        if stop.load(Ordering::Acquire) {
            break;
        }
        // SAFETY: `client` belongs to `producer`, which this thread keeps alive. Flushing is
        // thread-safe in librdkafka and, with delivery reports as events (rdkafka's
        // `BaseProducer`), only waits: the serving thread goes on serving them.
        unsafe { rdkafka::bindings::rd_kafka_flush(client, EXPEDITE_MS) };
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
        for thread in [self.server.take(), self.expediter.take()]
            .into_iter()
            .flatten()
        {
            thread.thread().unpark();
            let _ = thread.join();
        }
        // The producer, dropped last, purges what is left; the sends waiting on it fail.
    }
}

/// A send's record from the moment it was offered until its sender heard the report; a send
/// dropped before then abandons its place, so that its batch is not held back for it.
struct Sent<'a> {
    place: Place<'a, Box<Report>>,
    publisher: &'a Publisher,
}

impl Sent<'_> {
    /// Wait for the record's delivery report, at most `limit` (`None` after that), handing its
    /// batch over when the batch's time is up if this record keeps it. One timer serves both
    /// deadlines: a timer per send is a good part of a send's cost.
    async fn report(
        &mut self,
        mut delivered: oneshot::Receiver<KafkaResult<()>>,
        limit: Duration,
    ) -> Option<std::result::Result<KafkaResult<()>, oneshot::Canceled>> {
        let give_up = tokio::time::Instant::now() + limit;
        let mut batch_due = self.place.deadline().map(tokio::time::Instant::from_std);
        let timer = tokio::time::sleep_until(batch_due.map_or(give_up, |due| due.min(give_up)));
        tokio::pin!(timer);
        loop {
            tokio::select! {
                biased;
                heard = &mut delivered => return Some(self.heard(heard)),
                () = &mut timer => match batch_due.take() {
                    Some(_) => {
                        self.publisher.hand_over(self.place.expired());
                        timer.as_mut().reset(give_up);
                    }
                    None => return None,
                },
            }
        }
    }

    fn heard<T>(&mut self, heard: T) -> T {
        self.publisher.hand_over(self.place.reported());
        heard
    }
}

impl Drop for Sent<'_> {
    fn drop(&mut self) {
        self.publisher.hand_over(self.place.abandon());
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

//! The notification side of a `kafka://` transport: notifiers produce, listeners consume in
//! consumer groups.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use messaging_core::driver::{
    NotificationSource, NotifyAddress, NotifyDriver, PerAddress, SendOptions,
};
use messaging_core::wire::{ContextStyle, NotificationFormat, NotificationMessage};
use messaging_core::{MessagingError, Result, TransportUrl};
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::mpsc;

use crate::config::KafkaConfig;
use crate::consumer::{KafkaNotificationSource, ListenerContext, Poller, Shared};
use crate::producer::{refused_config, Publisher, Topics};
use crate::topic_name;

/// How long `listen()` waits for a bootstrap server to answer before it fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `listen()` waits for the broker to create missing topics.
const TOPIC_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `listen()` waits for the consumer group to assign partitions.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A listener started by this transport.
struct Started {
    shared: Arc<Shared>,
    thread: JoinHandle<()>,
}

/// Notifications over Kafka.
pub(crate) struct KafkaNotify {
    url: TransportUrl,
    config: Arc<KafkaConfig>,
    publisher: Arc<Publisher>,
    listeners: Mutex<Vec<Started>>,
    /// Each address's topic name, or why it is not a valid one.
    topics: PerAddress<NotifyAddress, std::result::Result<Arc<str>, String>>,
}

impl KafkaNotify {
    pub fn new(url: &TransportUrl, config: KafkaConfig) -> Result<Self> {
        if let Some(vhost) = &url.virtual_host {
            crate::check_topic_name(vhost).map_err(|reason| MessagingError::InvalidUrl {
                url: url.to_string(),
                reason: format!("the virtual host becomes part of Kafka topic names: {reason}"),
            })?;
        }
        Ok(Self {
            publisher: Arc::new(Publisher::new(&config, url)?),
            url: url.clone(),
            config: Arc::new(config),
            listeners: Mutex::new(Vec::new()),
            topics: PerAddress::default(),
        })
    }

    fn topic(&self, address: &NotifyAddress) -> Result<Arc<str>> {
        self.topics
            .get(address, |address| {
                let topic = topic_name(address, self.url.virtual_host.as_deref());
                crate::check_topic_name(&topic).map(|()| topic.into())
            })
            .map_err(MessagingError::InvalidTarget)
    }

    fn started(&self) -> std::sync::MutexGuard<'_, Vec<Started>> {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How many sends an outbox keeps in flight on Kafka: librdkafka packs what is waiting into
/// one produce request per partition, so a deeper window makes fuller requests (with 256, one
/// outbox sent 50,000 notifications/s to a release nisshi; with 4,096, about 80,000).
const OUTBOX_WINDOW: usize = 4096;

#[async_trait]
impl NotifyDriver for KafkaNotify {
    fn outbox_window(&self) -> usize {
        OUTBOX_WINDOW
    }

    async fn notify(
        &self,
        to: &NotifyAddress,
        message: &NotificationMessage,
        _format: NotificationFormat,
        options: &SendOptions,
    ) -> Result<()> {
        let topic = self.topic(to)?;
        // oslo's kafka driver always sends the 2.0 envelope (even for the `messaging` notifier
        // driver), with the context nested under `_context` and no `_unique_id`.
        let value = message.encode(NotificationFormat::V2, ContextStyle::Nested, None)?;
        self.publisher
            .publish(&topic, Arc::new(value), options)
            .await
    }

    async fn listen(
        &self,
        subscriptions: &[NotifyAddress],
        pool: Option<&str>,
    ) -> Result<Box<dyn NotificationSource>> {
        let mut topics: Vec<String> = Vec::new();
        for subscription in subscriptions {
            let topic = self.topic(subscription)?.to_string();
            if !topics.contains(&topic) {
                topics.push(topic);
            }
        }
        if topics.is_empty() {
            return Err(MessagingError::InvalidTarget(
                "a listener needs at least one subscription".into(),
            ));
        }
        let group = pool.unwrap_or(&self.config.consumer_group).to_owned();
        // No broker answering fails the start, as with the other drivers; a topic that is
        // not there yet is picked up by the subscription later, once it exists.
        let topics_ready = self
            .publisher
            .ensure_topics(&topics, CONNECT_TIMEOUT, TOPIC_TIMEOUT)
            .await?
            == Topics::Ready;
        if !topics_ready {
            tracing::warn!(
                ?topics,
                "kafka listener subscribes to topics that are not available yet"
            );
        }
        let shared = Shared::new(self.config.enable_auto_commit);
        let consumer: BaseConsumer<ListenerContext> = self
            .config
            .consumer_config(&self.url, &group)?
            .create_with_context(ListenerContext::new(
                shared.clone(),
                self.config.auto_offset_reset,
            ))
            .map_err(|e| refused_config(&self.url, e))?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names).map_err(|e| {
            MessagingError::InvalidTarget(format!("cannot subscribe to {topics:?}: {e}"))
        })?;
        let (to_listener, from_poller) = mpsc::unbounded_channel();
        let thread = Poller {
            consumer,
            shared: shared.clone(),
            publisher: self.publisher.clone(),
            to_listener,
            poll_timeout: self.config.poll_timeout(crate::consumer::COMMIT_INTERVAL),
            max_unhandled: usize::try_from(self.config.max_poll_records).unwrap_or(usize::MAX),
        }
        .spawn()
        .map_err(|e| MessagingError::ConnectionFailure(format!("cannot start a thread: {e}")))?;
        {
            let mut started = self.started();
            started.retain(|s| !s.thread.is_finished());
            started.push(Started {
                shared: shared.clone(),
                thread,
            });
        }
        // Built before waiting, so that dropping this future stops the thread too.
        let source = Box::new(KafkaNotificationSource::new(from_poller, shared.clone()));
        if topics_ready && !shared.wait_ready(READY_TIMEOUT).await {
            tracing::warn!(
                group,
                ?topics,
                "the kafka consumer group assigned no partitions within {READY_TIMEOUT:?}; \
                 listening anyway (notifications sent before the assignment may be missed)"
            );
        }
        tracing::debug!(group, ?topics, "kafka listener ready");
        Ok(source)
    }

    /// Stop every listener of this transport (each commits what was handled and leaves its
    /// group) and deliver the records still in flight.
    async fn close(&self) {
        let started: Vec<Started> = std::mem::take(&mut *self.started());
        for listener in &started {
            listener.shared.close();
        }
        let publisher = self.publisher.clone();
        let joined = tokio::task::spawn_blocking(move || {
            publisher.flush(Duration::from_secs(10));
            for listener in started {
                let _ = listener.thread.join();
            }
        });
        if let Err(error) = joined.await {
            tracing::warn!(%error, "closing the kafka transport");
        }
    }
}

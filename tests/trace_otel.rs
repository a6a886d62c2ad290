//! Feature `otel`: one OpenTelemetry trace, recorded by the SDK's in-memory exporter, for a
//! call from a client to a server whose method sends a notification to a listener: the three
//! hops cross the transports as W3C trace context, and every span is the child of the one
//! before. On memory://, on RabbitMQ, and on RabbitMQ RPC with Kafka notifications (each
//! broker pair skipped with a visible line unless its URL variables are set; required under
//! `MESSAGING_REQUIRE_BROKERS=1`).

use std::sync::OnceLock;
use std::time::Duration;

use messaging::*;
use opentelemetry::trace::{SpanId, SpanKind, TraceId, TracerProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tokio::sync::mpsc;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

const PATIENCE: Duration = Duration::from_secs(60);

/// The spans this test binary exported (one global subscriber for every test).
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<(InMemorySpanExporter, SdkTracerProvider)> = OnceLock::new();
    &EXPORTER
        .get_or_init(|| {
            let exporter = InMemorySpanExporter::default();
            let provider = SdkTracerProvider::builder()
                .with_simple_exporter(exporter.clone())
                .build();
            let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("tests"));
            let subscriber = tracing_subscriber::registry().with(layer);
            tracing::subscriber::set_global_default(subscriber).unwrap();
            (exporter, provider)
        })
        .0
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

/// Wait until the span named `name` with `key` = `value` was exported.
async fn exported(name: &str, key: &str, value: &str) -> SpanData {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let spans = exporter().get_finished_spans().unwrap();
        let mut found = spans
            .into_iter()
            .filter(|s| s.name == name && attribute(s, key).as_deref() == Some(value));
        if let Some(span) = found.next() {
            assert!(
                found.next().is_none(),
                "two {name} spans with {key}={value}"
            );
            return span;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {name} span with {key}={value} was exported"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Client → server → notification → listener over `rpc_url` and `notify_url`; returns the
/// spans of the request, in order: the caller's own span, `rpc.call`, `rpc.dispatch`,
/// `notification.send`, `notification.dispatch`.
async fn traced_request(
    pair: &str,
    rpc_url: &str,
    notify_url: &str,
    settle: Duration,
) -> Vec<SpanData> {
    exporter();
    let id = &wire::new_id()[..8];
    let (topic, events) = (
        format!("test_traced_{id}"),
        format!("test_traced_events_{id}"),
    );
    let rpc = get_rpc_transport(rpc_url).await.unwrap();
    let notifications = get_notification_transport(notify_url).await.unwrap();
    let (tx, mut heard) = mpsc::unbounded_channel();
    let listener = NotificationListener::new(notifications.clone())
        .target(Target::topic(&events))
        .endpoint(NotificationEndpoint::new().on(Priority::Info, move |n| {
            let tx = tx.clone();
            async move {
                tx.send(n.event_type).unwrap();
                NotificationResult::Handled
            }
        }))
        .start()
        .await
        .unwrap();
    let notifier = Notifier::new(notifications.clone(), "compute.host1").topics([&events]);
    let endpoint = Endpoint::new().method("boot", move |ctx: Context, _: NoArgs| {
        let notifier = notifier.clone();
        async move {
            notifier.info(&ctx, "compute.boot", &()).await.unwrap();
            Ok::<_, RemoteError>(())
        }
    });
    let server = RpcServer::new(rpc.clone(), Target::topic(&topic).server("host1"))
        .endpoint(endpoint)
        .start()
        .await
        .unwrap();
    tokio::time::sleep(settle).await;

    let client = RpcClient::new(rpc.clone(), Target::topic(&topic)).timeout(PATIENCE);
    let request = tracing::info_span!("test.request", test.pair = pair);
    let ctx = Context::new();
    let call = client.call::<()>(&ctx, "boot", &NoArgs {});
    call.instrument(request).await.unwrap();
    let heard = tokio::time::timeout(PATIENCE, heard.recv()).await;
    assert_eq!(heard.unwrap().as_deref(), Some("compute.boot"), "{pair}");

    let spans = vec![
        exported("test.request", "test.pair", pair).await,
        exported("rpc.call", "oslo.topic", &topic).await,
        exported("rpc.dispatch", "oslo.topic", &topic).await,
        exported(
            "notification.send",
            "messaging.destination.name",
            &format!("{events}.info"),
        )
        .await,
        exported(
            "notification.dispatch",
            "messaging.destination.name",
            &events,
        )
        .await,
    ];
    server.shutdown().await;
    listener.shutdown().await;
    rpc.close().await;
    notifications.close().await;
    spans
}

/// One trace; each span the child of the one before; the hops across transports are remote.
fn assert_one_chain(pair: &str, spans: &[SpanData]) {
    let trace_id = spans[0].span_context.trace_id();
    assert_ne!(trace_id, TraceId::INVALID);
    assert_eq!(
        spans[0].parent_span_id,
        SpanId::INVALID,
        "{pair}: the request is the root"
    );
    for pair_of_spans in spans.windows(2) {
        let (parent, child) = (&pair_of_spans[0], &pair_of_spans[1]);
        assert_eq!(
            child.span_context.trace_id(),
            trace_id,
            "{pair}: {}",
            child.name
        );
        assert_eq!(
            child.parent_span_id,
            parent.span_context.span_id(),
            "{pair}: {} is the child of {}",
            child.name,
            parent.name
        );
    }
    let remote: Vec<bool> = spans.iter().map(|s| s.parent_span_is_remote).collect();
    assert_eq!(
        remote,
        [false, false, true, false, true],
        "{pair}: hops across the transport"
    );
    let kinds: Vec<&SpanKind> = spans[1..].iter().map(|s| &s.span_kind).collect();
    assert_eq!(
        kinds,
        [
            &SpanKind::Client,
            &SpanKind::Server,
            &SpanKind::Producer,
            &SpanKind::Consumer
        ],
        "{pair}"
    );
}

/// The URL in `var`, or `None` with a visible line (a failure under
/// `MESSAGING_REQUIRE_BROKERS=1`).
fn broker(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("MESSAGING_REQUIRE_BROKERS").as_deref() == Ok("1") => {
            panic!("{var} is not set but MESSAGING_REQUIRE_BROKERS=1")
        }
        _ => {
            println!("skipped: {test}: {var} is not set");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_memory() {
    let url = format!("memory:///traced-{}", &wire::new_id()[..8]);
    let spans = traced_request("memory", &url, &url, Duration::ZERO).await;
    assert_one_chain("memory", &spans);
    assert_eq!(
        attribute(&spans[1], "messaging.system").as_deref(),
        Some("memory")
    );
}

#[cfg(feature = "rabbit")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbit_rabbit() {
    let Some(url) = broker("RABBIT_URL", "rabbit_rabbit") else {
        return;
    };
    let spans = traced_request("rabbit", &url, &url, Duration::ZERO).await;
    assert_one_chain("rabbit", &spans);
    assert_eq!(
        attribute(&spans[2], "messaging.system").as_deref(),
        Some("rabbitmq")
    );
    let size = attribute(&spans[1], "messaging.message.body.size");
    assert!(
        size.is_some_and(|s| s.parse::<u64>().unwrap() > 100),
        "{:?}",
        spans[1]
    );
}

#[cfg(all(feature = "rabbit", feature = "kafka"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbit_rpc_kafka_notifications() {
    let (Some(rabbit), Some(kafka)) = (
        broker("RABBIT_URL", "rabbit_kafka"),
        broker("KAFKA_URL", "rabbit_kafka"),
    ) else {
        return;
    };
    // A Kafka consumer group needs a few seconds to form.
    let spans = traced_request("rabbit+kafka", &rabbit, &kafka, Duration::from_secs(5)).await;
    assert_one_chain("rabbit+kafka", &spans);
    let systems: Vec<Option<String>> = spans[1..]
        .iter()
        .map(|s| attribute(s, "messaging.system"))
        .collect();
    let expected = ["rabbitmq", "rabbitmq", "kafka", "kafka"].map(|s| Some(s.to_owned()));
    assert_eq!(systems, expected);
}

/// A batch's span is linked to the span of each notification's sender.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_links_to_every_sender() {
    exporter();
    let url = format!("memory:///traced-batch-{}", &wire::new_id()[..8]);
    let transport = get_notification_transport(&url).await.unwrap();
    let (tx, mut heard) = mpsc::unbounded_channel();
    let listener = NotificationListener::new(transport.clone())
        .target(Target::topic("batched"))
        .batch(3, Duration::from_secs(5))
        .endpoint(
            NotificationEndpoint::new().on_batch(Priority::Info, move |batch| {
                let tx = tx.clone();
                async move {
                    tx.send(batch.len()).unwrap();
                    NotificationResult::Handled
                }
            }),
        )
        .start()
        .await
        .unwrap();
    let notifier = Notifier::new(transport, "batcher").topics(["batched"]);
    let ctx = Context::new();
    for n in 0..3 {
        let send = notifier.info(&ctx, "batched.event", &n);
        send.instrument(tracing::info_span!("test.sender", test.batch = n))
            .await
            .unwrap();
    }
    assert_eq!(
        tokio::time::timeout(PATIENCE, heard.recv()).await.unwrap(),
        Some(3)
    );
    let batch = exported(
        "notification.batch_dispatch",
        "messaging.destination.name",
        "batched",
    )
    .await;
    listener.shutdown().await;
    let mut linked: Vec<SpanId> = batch
        .links
        .iter()
        .map(|l| l.span_context.span_id())
        .collect();
    let mut sends = Vec::new();
    for span in exporter().get_finished_spans().unwrap() {
        if span.name == "notification.send"
            && attribute(&span, "oslo.event_type").as_deref() == Some("batched.event")
        {
            sends.push(span.span_context.span_id());
        }
    }
    linked.sort_by_key(|id| id.to_bytes());
    sends.sort_by_key(|id| id.to_bytes());
    assert_eq!((linked.len(), linked), (3, sends));
}

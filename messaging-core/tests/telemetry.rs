//! Telemetry on memory://: spans and their attributes, the built-in W3C trace context from a
//! call to a server to a notification to a listener, that no secret is recorded, and that the
//! metrics count what was sent.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use messaging_core::signing::Signing;
use messaging_core::telemetry::{self, TraceContext};
use messaging_core::*;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

const PATIENCE: Duration = Duration::from_secs(10);

fn vhost(name: &str) -> String {
    format!("memory:///{name}-{}", &wire::new_id()[..8])
}

/// A span as it was when it closed, or an event: its name and its fields as text.
#[derive(Debug, Clone)]
struct Recorded {
    name: &'static str,
    fields: BTreeMap<String, String>,
}

impl Recorded {
    fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }
}

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

/// A `tracing` layer that keeps every closed span and every event.
#[derive(Clone, Default)]
struct Capture {
    spans: Arc<Mutex<Vec<Recorded>>>,
    events: Arc<Mutex<Vec<Recorded>>>,
}

impl Capture {
    fn spans(&self, name: &str) -> Vec<Recorded> {
        let spans = self.spans.lock().unwrap_or_else(PoisonError::into_inner);
        spans.iter().filter(|s| s.name == name).cloned().collect()
    }

    /// The one span named `name` with these field values.
    fn span(&self, name: &str, fields: &[(&str, &str)]) -> Recorded {
        let found: Vec<Recorded> = self
            .spans(name)
            .into_iter()
            .filter(|s| fields.iter().all(|(field, value)| s.field(field) == *value))
            .collect();
        assert_eq!(found.len(), 1, "{name} spans with {fields:?}: {found:#?}");
        found[0].clone()
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        ctx.span(id).unwrap().extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: LayerContext<'_, S>) {
        if let Some(fields) = ctx.span(id).unwrap().extensions_mut().get_mut::<Fields>() {
            values.record(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, _ctx: LayerContext<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Recorded {
                name: event.metadata().name(),
                fields: fields.0,
            });
    }

    fn on_close(&self, id: Id, ctx: LayerContext<'_, S>) {
        let span = ctx.span(&id).unwrap();
        let fields = span.extensions_mut().remove::<Fields>().unwrap_or_default();
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Recorded {
                name: span.name(),
                fields: fields.0,
            });
    }
}

/// The spans and events of this test binary (one global subscriber: per-thread ones race
/// on `tracing`'s callsite cache). Tests tell theirs apart by their topics.
fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::registry().with(capture.clone());
        tracing::subscriber::set_global_default(subscriber).unwrap();
        capture
    })
}

/// A server on `topic` whose `boot` method announces the boot on `events`, and a listener
/// of `events` that forwards what it gets (with the trace it ran in).
struct Scenario {
    rpc: RpcTransport,
    server: ServiceHandle,
    listener: ServiceHandle,
    heard: mpsc::UnboundedReceiver<(Notification, Option<TraceContext>)>,
}

async fn scenario(url: &str, options: &TransportOptions, topic: &str, events: &str) -> Scenario {
    let rpc = get_rpc_transport_with(url, options).await.unwrap();
    let notifications = get_notification_transport_with(url, options).await.unwrap();
    let notifier = Notifier::new(notifications.clone(), "compute.host1").topics([events]);
    let endpoint = Endpoint::new()
        .method("boot", move |ctx: Context, args: serde_json::Value| {
            let notifier = notifier.clone();
            async move {
                let payload = json!({"instance": args["instance"], "secret": args["secret"]});
                notifier.info(&ctx, "compute.boot", &payload).await.unwrap();
                Ok::<_, RemoteError>("booted")
            }
        })
        .method("record", |_ctx: Context, _: serde_json::Value| async {
            Ok::<_, RemoteError>(())
        });
    let server = RpcServer::new(rpc.clone(), Target::topic(topic).server("host1"))
        .endpoint(endpoint)
        .start()
        .await
        .unwrap();
    let (tx, heard) = mpsc::unbounded_channel();
    let listener = NotificationListener::new(notifications)
        .target(Target::topic(events))
        .endpoint(NotificationEndpoint::new().on_all(move |n| {
            let tx = tx.clone();
            async move {
                tx.send((n, TraceContext::current())).unwrap();
                NotificationResult::Handled
            }
        }))
        .start()
        .await
        .unwrap();
    Scenario {
        rpc,
        server,
        listener,
        heard,
    }
}

impl Scenario {
    async fn next(&mut self) -> (Notification, Option<TraceContext>) {
        tokio::time::timeout(PATIENCE, self.heard.recv())
            .await
            .expect("a notification")
            .unwrap()
    }

    async fn stop(self) {
        self.server.shutdown().await;
        self.listener.shutdown().await;
    }
}

#[tokio::test]
async fn one_trace_from_a_call_to_a_server_to_a_notification_to_a_listener() {
    let capture = capture();
    let (topic, events) = ("trace_compute", "trace_events");
    let mut scenario = scenario(&vhost("trace"), &TransportOptions::default(), topic, events).await;
    let client = RpcClient::new(scenario.rpc.clone(), Target::topic(topic));
    let ctx = Context::new().with("request_id", "req-1");
    let booted: String = client
        .call(&ctx, "boot", &json!({"instance": 7}))
        .await
        .unwrap();
    assert_eq!(booted, "booted");
    let (notification, listener_trace) = scenario.next().await;
    // The trace keys are taken out of the context endpoints see.
    assert_eq!(notification.context, ctx);
    scenario.stop().await;

    let call = capture.span("rpc.call", &[("oslo.topic", topic)]);
    let dispatch = capture.span("rpc.dispatch", &[("oslo.topic", topic)]);
    let notify = capture.span(
        "notification.send",
        &[("messaging.destination.name", "trace_events.info")],
    );
    let listen = capture.span(
        "notification.dispatch",
        &[("messaging.destination.name", events)],
    );
    let trace_id = call.field("trace_id");
    assert_eq!(trace_id.len(), 32, "{call:#?}");
    for span in [&dispatch, &notify, &listen] {
        assert_eq!(span.field("trace_id"), trace_id, "{span:#?}");
        assert_eq!(span.field("messaging.system"), "memory");
    }
    assert_eq!(call.field("parent_id"), "", "the call starts the trace");
    assert_eq!(dispatch.field("parent_id"), call.field("span_id"));
    assert_eq!(notify.field("parent_id"), dispatch.field("span_id"));
    assert_eq!(listen.field("parent_id"), notify.field("span_id"));
    let listener_trace = listener_trace.expect("the listener runs in the trace");
    assert_eq!(listener_trace.span_id(), listen.field("span_id"));

    // OpenTelemetry messaging attributes and oslo's.
    assert_eq!(call.field("otel.kind"), "client");
    assert_eq!(call.field("messaging.operation.type"), "send");
    assert_eq!(call.field("messaging.destination.name"), topic);
    assert_eq!(call.field("oslo.method"), "boot");
    assert_eq!(call.field("messaging.message.id").len(), 32);
    assert_eq!(dispatch.field("otel.kind"), "server");
    assert_eq!(dispatch.field("messaging.operation.type"), "process");
    assert_eq!(dispatch.field("oslo.server"), "host1");
    assert_eq!(
        notify.field("messaging.destination.name"),
        "trace_events.info"
    );
    assert_eq!(notify.field("oslo.publisher_id"), "compute.host1");
    assert_eq!(
        listen.field("messaging.message.id"),
        notification.metadata.message_id
    );
    assert_eq!(listen.field("oslo.priority"), "info");
}

#[tokio::test]
async fn failures_mark_their_spans_and_a_cast_has_its_own() {
    let capture = capture();
    let topic = "failing_compute";
    let scenario = scenario(
        &vhost("fail"),
        &TransportOptions::default(),
        topic,
        "fail_events",
    )
    .await;
    let client = RpcClient::new(scenario.rpc.clone(), Target::topic(topic));
    let missing = client
        .call::<()>(&Context::new(), "no_such", &json!({}))
        .await;
    assert!(matches!(missing, Err(MessagingError::NoSuchMethod { .. })));
    client
        .cast(&Context::new(), "record", &json!({}))
        .await
        .unwrap();
    let served = [("oslo.topic", topic), ("oslo.method", "record")];
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let is_served = |s: &Recorded| served.iter().all(|(field, value)| s.field(field) == *value);
    while !capture.spans("rpc.dispatch").iter().any(is_served)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    scenario.stop().await;
    let call = capture.span("rpc.call", &[("oslo.method", "no_such")]);
    assert_eq!(call.field("otel.status_code"), "ERROR");
    assert_eq!(call.field("error.type"), "NoSuchMethod");
    let dispatch = capture.span("rpc.dispatch", &[("oslo.method", "no_such")]);
    assert_eq!(dispatch.field("error.type"), "NoSuchMethod");
    let cast = capture.span("rpc.cast", &[("oslo.topic", topic)]);
    assert_eq!(cast.field("otel.kind"), "producer");
    let served = capture.span("rpc.dispatch", &served);
    assert_eq!(
        (served.field("oslo.call"), served.field("otel.kind")),
        ("false", "consumer")
    );
    assert_eq!(served.field("parent_id"), cast.field("span_id"));
}

#[tokio::test]
async fn no_secret_is_recorded_in_spans_or_events() {
    let capture = capture();
    let secret_key = "SECRET-key-0123456789abcdef";
    let options = TransportOptions {
        signing: Some(Signing::parse(&format!("k1:{secret_key}")).unwrap()),
        ..TransportOptions::default()
    };
    let url = format!(
        "memory://admin:SECRET-password@localhost/{}",
        &wire::new_id()[..8]
    );
    let (topic, events) = ("secret_compute", "secret_events");
    let mut scenario = scenario(&url, &options, topic, events).await;
    let client = RpcClient::new(scenario.rpc.clone(), Target::topic(topic));
    let ctx = Context::new()
        .with("auth_token", "SECRET-token")
        .with("password", "SECRET-context");
    let args = json!({"instance": 1, "secret": "SECRET-argument"});
    let _: String = client.call(&ctx, "boot", &args).await.unwrap();
    let (notification, _) = scenario.next().await;
    assert_eq!(notification.payload["secret"], "SECRET-argument");
    // An unsigned request is refused and logged: without its content either.
    let unsigned = get_rpc_transport(&url).await.unwrap();
    RpcClient::new(unsigned, Target::topic(topic))
        .cast(&ctx, "secret_record", &args)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    scenario.stop().await;
    assert_eq!(
        signature_failures(capture, "secret_record"),
        1,
        "the unsigned cast was checked"
    );

    let spans = capture.spans.lock().unwrap_or_else(PoisonError::into_inner);
    let events = capture
        .events
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let ours = |s: &&Recorded| s.field("messaging.destination.name").starts_with("secret_");
    assert!(spans.iter().filter(ours).count() >= 4, "{spans:#?}");
    for recorded in spans.iter().chain(events.iter()) {
        for (field, value) in &recorded.fields {
            assert!(
                !value.contains("SECRET"),
                "{} records a secret in `{field}`: {value}",
                recorded.name
            );
        }
    }
}

/// How many signature failures were logged about `subject`.
fn signature_failures(capture: &Capture, subject: &str) -> usize {
    let events = capture
        .events
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let failed = |e: &&Recorded| e.field("message").contains("failed its signature check");
    events
        .iter()
        .filter(failed)
        .filter(|e| e.field("subject") == subject)
        .count()
}

/// The Prometheus recorder of this test binary, installed before any transport is opened.
fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new().install_recorder().unwrap();
        telemetry::describe();
        handle
    })
}

/// The value of the sample `name{labels…}` (labels in any order), if any.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, rest) = series.split_once('{').unwrap_or((series, "}"));
        let found = parse_labels(rest.strip_suffix('}')?);
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        (series_name == name && found == wanted).then(|| value.parse().unwrap())
    })
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let end = after.find('"').expect("a closed label value");
        labels.insert(
            key.trim_start_matches(',').to_owned(),
            after[..end].to_owned(),
        );
        rest = &after[end + 1..];
    }
    labels
}

#[tokio::test]
async fn metrics_count_what_was_sent_received_and_settled() {
    let handle = prometheus();
    let url = vhost("metrics");
    let (topic, events) = ("metrics_compute", "metrics_events");
    let mut scenario = scenario(&url, &TransportOptions::default(), topic, events).await;
    let client = RpcClient::new(scenario.rpc.clone(), Target::topic(topic));
    for instance in 0..5 {
        let _: String = client
            .call(&Context::new(), "boot", &json!({"instance": instance}))
            .await
            .unwrap();
    }
    for _ in 0..3 {
        client
            .cast(&Context::new(), "record", &json!({}))
            .await
            .unwrap();
    }
    let missing = client
        .call::<()>(&Context::new(), "x-no-such", &json!({}))
        .await;
    assert!(missing.is_err());
    for _ in 0..5 {
        scenario.next().await;
    }
    scenario.stop().await;

    let text = handle.render();
    let value = |name: &str, labels: &[(&str, &str)]| {
        sample(&text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
    };
    let rpc = |method, kind| {
        [
            ("transport", "memory"),
            ("topic", topic),
            ("method", method),
            ("kind", kind),
        ]
    };
    assert_eq!(value("messaging_rpc_sent_total", &rpc("boot", "call")), 5.0);
    assert_eq!(
        value("messaging_rpc_sent_total", &rpc("record", "cast")),
        3.0
    );
    assert_eq!(
        value("messaging_rpc_sent_total", &rpc("x-no-such", "call")),
        1.0
    );
    assert_eq!(
        value("messaging_rpc_received_total", &rpc("boot", "call")),
        5.0
    );
    assert_eq!(
        value("messaging_rpc_received_total", &rpc("record", "cast")),
        3.0
    );
    // A method no endpoint has is not a label value of the server's.
    assert_eq!(
        value("messaging_rpc_received_total", &rpc("_unknown", "call")),
        1.0
    );
    let by_method = [
        ("transport", "memory"),
        ("topic", topic),
        ("method", "boot"),
    ];
    assert_eq!(
        value("messaging_rpc_call_duration_seconds_count", &by_method),
        5.0
    );
    assert_eq!(
        value("messaging_rpc_dispatch_duration_seconds_count", &by_method),
        5.0
    );
    let by_topic = [("transport", "memory"), ("topic", topic)];
    assert_eq!(value("messaging_rpc_calls_in_flight", &by_topic), 0.0);
    let event = [
        ("transport", "memory"),
        ("topic", events),
        ("event_type", "compute.boot"),
    ];
    assert_eq!(value("messaging_notifications_sent_total", &event), 5.0);
    assert_eq!(
        value("messaging_notify_confirm_duration_seconds_count", &event),
        5.0
    );
    assert_eq!(value("messaging_notifications_received_total", &event), 5.0);
    assert_eq!(value("messaging_notifications_acked_total", &event), 5.0);
    assert_eq!(value("messaging_notifications_requeued_total", &event), 0.0);
    let listened = [("transport", "memory"), ("topic", events)];
    assert_eq!(value("messaging_notifications_unacked", &listened), 0.0);
    assert!(text.contains("# HELP messaging_rpc_sent_total"), "{text}");
}

#[tokio::test]
async fn signature_failures_and_the_outbox_feed_the_same_metrics() {
    let handle = prometheus();
    let url = vhost("signing-metrics");
    let options = TransportOptions {
        signing: Some(Signing::parse("k1:a secret of sixteen bytes").unwrap()),
        ..TransportOptions::default()
    };
    let topic = "signed_compute";
    let scenario = scenario(&url, &options, topic, "signed_events").await;
    let failures = || {
        let labels = [("transport", "memory"), ("kind", "rpc request")];
        sample(
            &handle.render(),
            "messaging_signature_failures_total",
            &labels,
        )
        .unwrap_or(0.0)
    };
    let before = failures();
    let unsigned = get_rpc_transport(&url).await.unwrap();
    let client = RpcClient::new(unsigned, Target::topic(topic));
    for _ in 0..2 {
        client
            .cast(&Context::new(), "record", &json!({}))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(scenario.rpc.signature_failures(), 2);
    // Other tests of this binary may count failures at the same time: at least these two.
    let after = failures();
    assert!(after >= before + 2.0, "{before} -> {after}");
    scenario.stop().await;

    let transport = get_notification_transport(&vhost("outbox-metrics"))
        .await
        .unwrap();
    let notifier = Notifier::new(transport, "outbox.test")
        .topics(["outbox_metrics_events"])
        .with_outbox(OutboxConfig::new(10))
        .await
        .unwrap();
    for n in 0..4 {
        notifier
            .info(&Context::new(), "outbox.event", &n)
            .await
            .unwrap();
    }
    notifier.flush(PATIENCE).await.unwrap();
    let text = handle.render();
    let event = [
        ("transport", "memory"),
        ("topic", "outbox_metrics_events"),
        ("event_type", "outbox.event"),
    ];
    assert_eq!(
        sample(&text, "messaging_notifications_sent_total", &event),
        Some(4.0)
    );
    assert_eq!(
        sample(
            &text,
            "messaging_outbox_pending",
            &[("transport", "memory")]
        ),
        Some(0.0)
    );
    assert_eq!(notifier.outbox_stats().unwrap().sent, 4);
}

//! Observability: `tracing` spans, W3C trace context carried across services (and languages),
//! and metrics through the `metrics` facade.
//!
//! * **Spans** ([`names`]: `rpc.call`, `rpc.cast`, `rpc.dispatch`, `notification.send`,
//!   `notification.dispatch`, `notification.batch_dispatch`, `outbox.send`,
//!   `transport.reconnect`) carry OpenTelemetry's messaging attributes (`messaging.system`,
//!   `messaging.destination.name`, `messaging.operation.type`, `messaging.message.id`,
//!   `messaging.message.body.size`) and oslo's (`oslo.topic`, `oslo.server`, `oslo.method`,
//!   `oslo.event_type`…), never a context, argument, payload, URL or key. They cost nothing when
//!   no subscriber wants them.
//! * **Trace context** ([`TraceContext`]) travels with every call, cast and notification as the
//!   context keys `traceparent` and `tracestate`, only when there is a trace: a span recorded
//!   by a subscriber, or a trace the current task handles or [`TraceContext::scope`] sets. The
//!   receiving dispatch span is the child of the sending span: its `parent_id` field is the
//!   sender's `span_id`, and with the `otel` feature and a `tracing-opentelemetry` layer it is
//!   the OpenTelemetry parent.
//! * **Metrics** ([`names`], e.g. `messaging_rpc_sent_total`) go to whatever recorder the
//!   application installed (Prometheus, StatsD, OTLP…); [`describe`] adds help texts. Labels
//!   are bounded: see [`MAX_NAMES_PER_TOPIC`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), messaging_core::MessagingError> {
//! use messaging_core::telemetry::TraceContext;
//! use messaging_core::*;
//!
//! let transport = get_rpc_transport("memory:///telemetry-doc").await?;
//! let server = RpcServer::new(transport.clone(), Target::topic("t").server("s"))
//!     .endpoint(Endpoint::new().method("trace_id", |_ctx: Context, _: NoArgs| async {
//!         // The request's trace continues in the method.
//!         Ok::<_, RemoteError>(TraceContext::current().map(|t| t.trace_id()))
//!     }))
//!     .start()
//!     .await?;
//! let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
//! let client = RpcClient::new(transport, Target::topic("t"));
//! let seen: Option<String> = TraceContext::parse(incoming, None)
//!     .unwrap()
//!     .scope(client.call(&Context::new(), "trace_id", &NoArgs {}))
//!     .await?;
//! assert_eq!(seen.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
//! server.shutdown().await;
//! # Ok(()) }
//! ```

mod metrics;
pub mod names;
#[cfg(feature = "otel")]
mod otel;
mod spans;
mod trace;

pub use self::metrics::{
    count_reconnect, describe, MAX_NAMES_PER_TOPIC, OTHER_NAME, UNKNOWN_METHOD,
};
pub use spans::{reconnect, reconnect_span, record_body_size};
pub use trace::{TraceContext, TRACEPARENT_KEY, TRACESTATE_KEY};

pub(crate) use self::metrics::{
    count_duplicate, count_malformed, count_signature_failure, seconds, Busy, CallMeters,
    ListenerMeters, Meters, OutboxMeters, ServedMeters,
};
pub(crate) use spans::{
    batch_dispatch, finish, messaging_span, notification_dispatch, notify, outbox_send,
};
pub(crate) use trace::{extract, incoming, outgoing, scope};

/// What a transport reports with: its `messaging.system` and its metric handles.
pub(crate) struct Telemetry {
    pub(crate) system: &'static str,
    pub(crate) meters: Meters,
}

impl Telemetry {
    pub(crate) fn new(transport: &'static str, system: &'static str) -> Self {
        Self {
            system,
            meters: Meters::new(transport),
        }
    }
}

/// Link a batch's span to the sender of one of its messages (OpenTelemetry only: the
/// built-in ids have no links).
pub(crate) fn link(span: &tracing::Span, remote: &TraceContext) {
    #[cfg(feature = "otel")]
    otel::add_link(span, remote);
    #[cfg(not(feature = "otel"))]
    let _ = (span, remote);
}

//! Feature `otel`: trace context from and to OpenTelemetry, through the `tracing-opentelemetry`
//! layer. Without that layer installed, spans have no OpenTelemetry context and the built-in
//! ids of [`super::trace`] are used instead.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::TraceContext;

/// The OpenTelemetry span context of `span`, when the layer records it.
pub(super) fn context_of(span: &Span) -> Option<TraceContext> {
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    let otel = context.span();
    let span_context = otel.span_context();
    if !span_context.is_valid() {
        return None;
    }
    let state = span_context.trace_state().header();
    Some(TraceContext::from_ids(
        u128::from_be_bytes(span_context.trace_id().to_bytes()),
        u64::from_be_bytes(span_context.span_id().to_bytes()),
        span_context.trace_flags().to_u8(),
        Some(state).filter(|s| !s.is_empty()),
    ))
}

/// Make the sender's span, `remote`, the OpenTelemetry parent of `span` (a no-op without the
/// layer). Must come before anything starts `span`.
pub(super) fn set_parent(span: &Span, remote: &TraceContext) {
    let parent = remote_context(remote);
    if let Err(error) =
        span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent))
    {
        tracing::trace!(%error, "no OpenTelemetry parent for a dispatch span");
    }
}

/// Link `span` (a batch) to the sender of one of its messages.
pub(super) fn add_link(span: &Span, remote: &TraceContext) {
    span.add_link(remote_context(remote));
}

fn remote_context(remote: &TraceContext) -> SpanContext {
    let (trace_id, span_id, flags) = remote.ids();
    let state = remote
        .tracestate()
        .and_then(|header| header.parse::<TraceState>().ok())
        .unwrap_or_default();
    SpanContext::new(
        TraceId::from_bytes(trace_id.to_be_bytes()),
        SpanId::from_bytes(span_id.to_be_bytes()),
        TraceFlags::new(flags),
        true,
        state,
    )
}

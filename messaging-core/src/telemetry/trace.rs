//! W3C trace context (`traceparent`, `tracestate`) and how it travels with messages.
//!
//! The context rides in the message's context map under the keys [`TRACEPARENT_KEY`] and
//! [`TRACESTATE_KEY`] (on RabbitMQ `_context_traceparent`, on Kafka inside `_context`), the way
//! osprofiler carries its `trace_info`: Python oslo.messaging hands unknown context keys to its
//! endpoints untouched and sends them on with the notifications built from that context. The
//! keys are added only when there is a trace to carry, and a receiver takes them out before its
//! endpoints see the context.

use std::fmt;
use std::future::Future;

use serde_json::{Map, Value};
use tracing::field::display;
use tracing::Span;

/// Context key of the W3C `traceparent` (`00-<trace id>-<span id>-<flags>`).
pub const TRACEPARENT_KEY: &str = "traceparent";
/// Context key of the W3C `tracestate` (vendor data, carried as is).
pub const TRACESTATE_KEY: &str = "tracestate";

/// Longest `tracestate` carried on (W3C: 512 characters at least are kept).
const MAX_TRACESTATE: usize = 512;

tokio::task_local! {
    /// The trace of the message being handled: messages sent while handling it continue it.
    static CURRENT: Option<TraceContext>;
}

/// A W3C trace context: the trace a message belongs to and the span that sent it.
///
/// ```
/// use messaging_core::telemetry::TraceContext;
///
/// let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// let trace = TraceContext::parse(parent, Some("congo=t61rcWkgMzE")).unwrap();
/// assert_eq!(trace.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(trace.traceparent(), parent);
/// assert!(TraceContext::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None).is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: u128,
    span_id: u64,
    flags: u8,
    state: Option<String>,
}

impl TraceContext {
    /// A new sampled trace with a random trace id and span id.
    pub fn new_root() -> Self {
        Self {
            trace_id: fastrand::u128(1..),
            span_id: fastrand::u64(1..),
            flags: 1,
            state: None,
        }
    }

    /// Parse a `traceparent` header (and its `tracestate`); `None` if it is not valid W3C
    /// trace context (bad length or hex, zero ids, version `ff`).
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let text = traceparent.trim();
        if !text.is_ascii() {
            return None;
        }
        let version = text.get(0..2)?;
        // Later versions may append fields after the ones version 00 defines.
        let valid_length = match version {
            "00" => text.len() == 55,
            "ff" => false,
            _ => text.len() == 55 || text.as_bytes().get(55) == Some(&b'-'),
        };
        if !valid_length || !is_lower_hex(version) {
            return None;
        }
        if [2, 35, 52].iter().any(|&i| text.as_bytes()[i] != b'-') {
            return None;
        }
        let trace_id = hex_field(&text[3..35])?;
        let span_id = hex_field(&text[36..52]).and_then(|id| u64::try_from(id).ok())?;
        let flags = hex_field(&text[53..55]).and_then(|f| u8::try_from(f).ok())?;
        if trace_id == 0 || span_id == 0 {
            return None;
        }
        let state = tracestate
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= MAX_TRACESTATE)
            .map(str::to_owned);
        Some(Self {
            trace_id,
            span_id,
            flags,
            state,
        })
    }

    /// The `traceparent` value: `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }

    /// The `tracestate` value, if any.
    pub fn tracestate(&self) -> Option<&str> {
        self.state.as_deref()
    }

    /// The trace id, 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The id of the span that sent the message, 16 lowercase hex digits.
    pub fn span_id(&self) -> String {
        format!("{:016x}", self.span_id)
    }

    /// True if the sender records this trace (the `sampled` flag).
    pub fn is_sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The trace context the context map `context` carries, if any (left in place).
    pub fn from_context(context: &Map<String, Value>) -> Option<Self> {
        let traceparent = context.get(TRACEPARENT_KEY)?.as_str()?;
        let tracestate = context.get(TRACESTATE_KEY).and_then(Value::as_str);
        Self::parse(traceparent, tracestate)
    }

    /// The trace of the message the current task is handling (inside an RPC method or a
    /// notification handler, or inside [`scope`](Self::scope)).
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Clone::clone).ok().flatten()
    }

    /// Run `future` inside this trace: the calls, casts and notifications it sends carry it
    /// (for instance the `traceparent` of an incoming HTTP request), whether or not a
    /// `tracing` subscriber records spans.
    pub fn scope<F: Future>(self, future: F) -> impl Future<Output = F::Output> {
        scope(Some(self), future)
    }

    /// A context of the same trace for a new span.
    pub(crate) fn child(&self) -> Self {
        Self {
            span_id: fastrand::u64(1..),
            ..self.clone()
        }
    }

    #[cfg(feature = "otel")]
    pub(crate) fn from_ids(trace_id: u128, span_id: u64, flags: u8, state: Option<String>) -> Self {
        Self {
            trace_id,
            span_id,
            flags,
            state,
        }
    }

    #[cfg(feature = "otel")]
    pub(crate) fn ids(&self) -> (u128, u64, u8) {
        (self.trace_id, self.span_id, self.flags)
    }

    /// Write this context into a message's context map.
    pub(crate) fn inject(&self, context: &mut Map<String, Value>) {
        context.insert(TRACEPARENT_KEY.into(), Value::String(self.traceparent()));
        match &self.state {
            Some(state) => context.insert(TRACESTATE_KEY.into(), Value::String(state.clone())),
            None => context.shift_remove(TRACESTATE_KEY),
        };
    }

    /// Record this span's ids on `span`, and its parent's (`parent_id`) when it has one.
    fn record_on(&self, span: &Span, parent: Option<&TraceContext>) {
        span.record("trace_id", display(Hex32(self.trace_id)));
        span.record("span_id", display(Hex16(self.span_id)));
        if let Some(parent) = parent {
            span.record("parent_id", display(Hex16(parent.span_id)));
        }
    }
}

/// Take the trace context out of a received message's context map (a malformed one is
/// dropped with a debug log: it only costs the link to the sender).
pub(crate) fn extract(context: &mut Map<String, Value>) -> Option<TraceContext> {
    // Most messages carry none: do not touch the map then.
    if !context.contains_key(TRACEPARENT_KEY) {
        return None;
    }
    let traceparent = context.shift_remove(TRACEPARENT_KEY);
    let tracestate = context.shift_remove(TRACESTATE_KEY);
    let parsed = traceparent
        .as_ref()
        .and_then(Value::as_str)
        .and_then(|parent| {
            TraceContext::parse(parent, tracestate.as_ref().and_then(Value::as_str))
        });
    if parsed.is_none() {
        tracing::debug!(?traceparent, "ignoring a malformed traceparent");
    }
    parsed
}

/// The trace context a message sent inside `span` carries: the span's own when spans are
/// recorded (its ids are then recorded on it), else the current task's trace passed through
/// unchanged; `None` when there is neither (nothing is added to the message then).
pub(crate) fn outgoing(span: &Span) -> Option<TraceContext> {
    #[cfg(feature = "otel")]
    if let Some(own) = super::otel::context_of(span) {
        own.record_on(span, None);
        return Some(own);
    }
    continue_trace(span, TraceContext::current())
}

/// Make `span` (a dispatch span) the child of the sender's `remote` span, and return the trace
/// context the handler runs in (see [`scope`]).
pub(crate) fn incoming(span: &Span, remote: Option<TraceContext>) -> Option<TraceContext> {
    #[cfg(feature = "otel")]
    {
        if let Some(remote) = &remote {
            super::otel::set_parent(span, remote);
        }
        if let Some(own) = super::otel::context_of(span) {
            own.record_on(span, remote.as_ref());
            return Some(own);
        }
    }
    continue_trace(span, remote)
}

/// With the built-in ids: `span`'s own context, the child of `parent` (or a new trace), once
/// recorded on it; `parent` unchanged when nobody records `span`.
fn continue_trace(span: &Span, parent: Option<TraceContext>) -> Option<TraceContext> {
    if span.is_disabled() {
        return parent;
    }
    let own = parent
        .as_ref()
        .map_or_else(TraceContext::new_root, TraceContext::child);
    own.record_on(span, parent.as_ref());
    Some(own)
}

/// Run a handler in the trace context `trace` (or in none). Not an `async fn`: that would
/// hold `future` twice, and servers spawn (copy) these futures for every message.
pub(crate) fn scope<F: Future>(
    trace: Option<TraceContext>,
    future: F,
) -> impl Future<Output = F::Output> {
    CURRENT.scope(trace, future)
}

fn is_lower_hex(text: &str) -> bool {
    text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn hex_field(text: &str) -> Option<u128> {
    is_lower_hex(text)
        .then(|| u128::from_str_radix(text, 16).ok())
        .flatten()
}

struct Hex32(u128);
struct Hex16(u64);

impl fmt::Display for Hex32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Display for Hex16 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_formats_w3c_traceparent() {
        let trace = TraceContext::parse(PARENT, Some(" rojo=00f067aa0ba902b7 ")).unwrap();
        assert_eq!(trace.traceparent(), PARENT);
        assert_eq!(trace.span_id(), "00f067aa0ba902b7");
        assert_eq!(trace.tracestate(), Some("rojo=00f067aa0ba902b7"));
        assert!(trace.is_sampled());
        let child = trace.child();
        assert_eq!(child.trace_id(), trace.trace_id());
        assert_ne!(child.span_id(), trace.span_id());
        // A later version may add fields.
        let future = format!("cc{}-what-ever", &PARENT[2..]);
        assert_eq!(
            TraceContext::parse(&future, None).unwrap().trace_id,
            trace.trace_id
        );
    }

    #[test]
    fn rejects_what_is_not_w3c_traceparent() {
        for bad in [
            "",
            "00",
            "garbage",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad, None), None, "{bad}");
        }
    }

    #[test]
    fn extract_takes_the_keys_out_and_drops_malformed_ones() {
        let mut context = Map::new();
        context.insert("user".into(), "u".into());
        assert_eq!(extract(&mut context), None);
        TraceContext::parse(PARENT, Some("a=b"))
            .unwrap()
            .inject(&mut context);
        assert_eq!(context[TRACEPARENT_KEY], PARENT);
        let trace = extract(&mut context).unwrap();
        assert_eq!(
            (trace.traceparent().as_str(), trace.tracestate()),
            (PARENT, Some("a=b"))
        );
        assert_eq!(context.keys().collect::<Vec<_>>(), ["user"]);
        context.insert(TRACEPARENT_KEY.into(), 5.into());
        context.insert(TRACESTATE_KEY.into(), "a=b".into());
        assert_eq!(extract(&mut context), None);
        assert_eq!(context.len(), 1, "malformed keys are removed too");
    }

    #[tokio::test]
    async fn without_spans_the_current_trace_passes_through() {
        assert_eq!(outgoing(&Span::none()), None);
        let trace = TraceContext::parse(PARENT, None).unwrap();
        let seen = trace.clone().scope(async { outgoing(&Span::none()) }).await;
        assert_eq!(seen, Some(trace));
    }
}

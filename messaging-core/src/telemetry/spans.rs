//! The `tracing` spans of the API, with OpenTelemetry messaging attributes and oslo's.
//!
//! Span macros evaluate their fields only when a subscriber wants the span, so building them
//! costs nothing when nobody listens. No span records a context, an argument, a payload, a
//! URL or a signature: those may hold secrets (`auth_token`, passwords, keys).

use std::fmt;
use std::future::Future;

use tracing::field::Empty;
use tracing::{info_span, Span};

use super::names::*;
use crate::error::MessagingError;
use crate::priority::Priority;
use crate::wire::NotificationMessage;

/// An `info` span named `$name` with the fields of every messaging span (OpenTelemetry's
/// kind, status and error, the system and the operation, the trace ids), and `$field`s.
macro_rules! messaging_span {
    ($name:expr, $kind:expr, $system:expr, ($type:literal, $operation:literal), $($field:tt)*) => {
        info_span!(
            $name,
            otel.kind = $kind,
            otel.status_code = Empty,
            error.type = Empty,
            messaging.system = $system,
            messaging.operation.type = $type,
            messaging.operation.name = $operation,
            $($field)*
            trace_id = Empty,
            span_id = Empty,
            parent_id = Empty,
        )
    };
}
pub(crate) use messaging_span;

/// The span of a notify call sending `message` to `topics`.
pub(crate) fn notify(
    system: &'static str,
    topics: &[String],
    message: &NotificationMessage,
    outbox: bool,
) -> Span {
    messaging_span!(
        SPAN_NOTIFY,
        "producer",
        system,
        ("send", "notify"),
        messaging.destination.name = %NotifyDestination(topics, message.priority),
        messaging.message.id = %message.message_id,
        messaging.message.body.size = Empty,
        oslo.publisher_id = %message.publisher_id,
        oslo.event_type = %message.event_type,
        oslo.priority = %message.priority,
        oslo.outbox = outbox,
    )
}

/// The span of the outbox sending one queued notification to `topic`.
pub(crate) fn outbox_send(
    system: &'static str,
    topic: &str,
    message: &NotificationMessage,
) -> Span {
    let topics = std::slice::from_ref(&topic);
    messaging_span!(
        SPAN_OUTBOX_SEND,
        "producer",
        system,
        ("send", "outbox_send"),
        messaging.destination.name = %NotifyDestination(topics, message.priority),
        messaging.message.id = %message.message_id,
        messaging.message.body.size = Empty,
        oslo.event_type = %message.event_type,
        oslo.priority = %message.priority,
    )
}

/// The span of a listener's handling of `message`; `topics` are its targets' topics.
pub(crate) fn notification_dispatch(
    system: &'static str,
    topics: &str,
    pool: Option<&str>,
    message: &NotificationMessage,
) -> Span {
    messaging_span!(
        SPAN_NOTIFICATION_DISPATCH,
        "consumer",
        system,
        ("process", "dispatch"),
        messaging.destination.name = %topics,
        messaging.message.id = %message.message_id,
        oslo.publisher_id = %message.publisher_id,
        oslo.event_type = %message.event_type,
        oslo.priority = %message.priority,
        oslo.pool = pool,
    )
}

/// The span of a listener's handling of a batch of `count` notifications.
pub(crate) fn batch_dispatch(
    system: &'static str,
    topics: &str,
    pool: Option<&str>,
    count: usize,
) -> Span {
    messaging_span!(
        SPAN_NOTIFICATION_BATCH,
        "consumer",
        system,
        ("process", "batch_dispatch"),
        messaging.destination.name = %topics,
        messaging.batch.message_count = count,
        oslo.pool = pool,
    )
}

/// Run `reconnect` (a driver's reconnection to its broker) in a [`SPAN_RECONNECT`] span,
/// and count it in [`RECONNECTS`] once it succeeded. `transport` is the driver's name,
/// `system` its `messaging.system`, `role` what the connection is for.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use messaging_core::telemetry;
///
/// let connected = telemetry::reconnect("rabbit", "rabbitmq", "listener", async {
///     Ok::<_, std::io::Error>("connection")
/// })
/// .await;
/// assert!(connected.is_ok());
/// # }
/// ```
pub async fn reconnect<T, E, F>(
    transport: &'static str,
    system: &'static str,
    role: &str,
    reconnect: F,
) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
{
    let span = reconnect_span(system, role);
    let outcome = tracing::Instrument::instrument(reconnect, span.clone()).await;
    match &outcome {
        Ok(_) => super::metrics::count_reconnect(transport),
        Err(_) => {
            span.record("otel.status_code", "ERROR");
        }
    }
    outcome
}

/// The [`SPAN_RECONNECT`] span of a reconnection of the `system` connection for `role`, for
/// drivers whose client library reconnects by itself (use [`reconnect`] otherwise).
pub fn reconnect_span(system: &'static str, role: &str) -> Span {
    info_span!(
        SPAN_RECONNECT,
        otel.status_code = Empty,
        messaging.system = system,
        oslo.role = role,
    )
}

/// Record the size in bytes of the message body being sent on the current span (drivers
/// call it once they encoded a request or a notification).
pub fn record_body_size(bytes: usize) {
    Span::current().record("messaging.message.body.size", bytes);
}

/// Mark `span` failed when `outcome` is an error (`error.type`: the error's variant).
pub(crate) fn finish<T>(span: &Span, outcome: &Result<T, MessagingError>) {
    if let (Err(error), false) = (outcome, span.is_disabled()) {
        span.record("otel.status_code", "ERROR");
        span.record("error.type", error_type(error));
    }
}

/// The variant name of `error`, e.g. `Timeout`.
fn error_type(error: &MessagingError) -> String {
    let debug = format!("{error:?}");
    let end = debug
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(debug.len());
    debug[..end].to_owned()
}

/// `topic.priority`, as oslo routes notifications, for each topic.
struct NotifyDestination<'a, S>(&'a [S], Priority);

impl<S: AsRef<str>> fmt::Display for NotifyDestination<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, topic) in self.0.iter().enumerate() {
            let separator = if i == 0 { "" } else { "," };
            write!(f, "{separator}{}.{}", topic.as_ref(), self.1)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_and_error_types() {
        let topics = ["notifications".to_owned(), "audit".to_owned()];
        assert_eq!(
            NotifyDestination(&topics, Priority::Info).to_string(),
            "notifications.info,audit.info"
        );
        let timeout = MessagingError::not_taken("m", std::time::Duration::ZERO);
        assert_eq!(error_type(&timeout), "Timeout");
        assert_eq!(
            error_type(&MessagingError::InvalidTarget("x".into())),
            "InvalidTarget"
        );
    }
}

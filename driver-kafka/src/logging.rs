//! librdkafka's logs and client errors, as `tracing` events (target `librdkafka`).

use messaging_core::telemetry;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientContext;

/// A client context that forwards librdkafka's log lines and errors to `tracing`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TracingContext;

impl ClientContext for TracingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        forward_log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        forward_error(&error, reason);
    }
}

pub(crate) fn forward_log(level: RDKafkaLogLevel, fac: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", fac, "{message}"),
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", fac, "{message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
    }
}

pub(crate) fn forward_error(error: &KafkaError, reason: &str) {
    // Broker connection errors repeat while a broker is down; the send or the listener that
    // suffers from them reports them too.
    if error.rdkafka_error_code() != Some(RDKafkaErrorCode::BrokerTransportFailure) {
        tracing::warn!(target: "librdkafka", %error, "{reason}");
        return;
    }
    // A lost broker connection, which librdkafka reconnects by itself: marked and counted.
    telemetry::count_reconnect(crate::NAME);
    telemetry::reconnect_span(crate::NAME, "librdkafka")
        .in_scope(|| tracing::warn!(target: "librdkafka", %error, "{reason}"));
}

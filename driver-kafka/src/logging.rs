//! librdkafka's logs and client errors, as `tracing` events (target `librdkafka`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use messaging_core::telemetry;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientContext;

/// A client context that forwards librdkafka's log lines and errors to `tracing`, and keeps
/// the last client error (e.g. "Connect to ipv4#127.0.0.1:1 failed: Connection refused") to
/// explain a send or a start that gives up.
#[derive(Debug, Clone, Default)]
pub(crate) struct TracingContext {
    last_error: Arc<Mutex<Option<(Instant, String)>>>,
}

impl TracingContext {
    /// The last client error, if it happened within `recent`.
    pub fn last_error(&self, recent: Duration) -> Option<String> {
        let last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref()
            .filter(|(at, _)| at.elapsed() <= recent)
            .map(|(_, error)| error.clone())
    }
}

impl ClientContext for TracingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        forward_log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        forward_error(&error, reason);
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        // "1/1 brokers are down" follows the error that says why: keep that one.
        let summary = error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown);
        if !(summary && last.is_some()) {
            *last = Some((Instant::now(), reason.to_owned()));
        }
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

//! Metrics through the `metrics` facade: the handles each part of the API updates.
//!
//! Handles are registered once per label set and kept (the per-message cost is one map
//! look-up), so a recorder must be installed before the transport is opened. Label values
//! that come from senders (method names, event types) are bounded: a server labels a method
//! none of its endpoints has as `_unknown`, and past [`MAX_NAMES_PER_TOPIC`] names a topic's
//! further ones share the label `_other`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram, Label};
use rapidhash::fast::RandomState;

use super::names::*;

/// Distinct method names or event types labelled per topic; further ones are `_other`.
pub const MAX_NAMES_PER_TOPIC: usize = 256;
/// The label of names past [`MAX_NAMES_PER_TOPIC`].
pub const OTHER_NAME: &str = "_other";
/// The `method` label of requests for a method no endpoint of the server has.
pub const UNKNOWN_METHOD: &str = "_unknown";

/// A map with a hasher cheaper than SipHash on short keys (still randomly seeded: names come
/// from senders).
type Map<V> = HashMap<String, V, RandomState>;

/// Handles of one kind of metric set, per topic and name.
struct Family<T> {
    by_topic: Mutex<Map<Map<Arc<T>>>>,
}

impl<T> Default for Family<T> {
    fn default() -> Self {
        Self {
            by_topic: Mutex::default(),
        }
    }
}

impl<T> Family<T> {
    fn get(&self, topic: &str, name: &str, register: impl FnOnce(&str) -> T) -> Arc<T> {
        let mut by_topic = self.by_topic.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = by_topic.get(topic).and_then(|names| names.get(name)) {
            return found.clone();
        }
        let names = by_topic.entry(topic.to_owned()).or_default();
        let name = if names.len() >= MAX_NAMES_PER_TOPIC {
            OTHER_NAME
        } else {
            name
        };
        names
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(register(name)))
            .clone()
    }
}

/// A client's calls of one method.
pub(crate) struct CallMeters {
    pub(crate) sent: Counter,
    pub(crate) duration: Histogram,
    pub(crate) in_flight: Gauge,
}

/// A server's requests of one method (calls or casts).
pub(crate) struct ServedMeters {
    pub(crate) received: Counter,
    pub(crate) duration: Histogram,
}

/// A notifier's notifications of one event type.
pub(crate) struct NotifyMeters {
    pub(crate) sent: Counter,
    pub(crate) confirm: Histogram,
}

/// A listener's notifications of one event type.
pub(crate) struct ListenerMeters {
    pub(crate) received: Counter,
    pub(crate) acked: Counter,
    pub(crate) requeued: Counter,
    pub(crate) duration: Histogram,
}

/// An outbox's gauges and counters.
pub(crate) struct OutboxMeters {
    pub(crate) pending: Gauge,
    pub(crate) dropped: Counter,
    pub(crate) failed: Counter,
}

/// One transport's metric handles, labelled with its driver's name.
pub(crate) struct Meters {
    transport: &'static str,
    calls: Family<CallMeters>,
    casts: Family<Counter>,
    served_calls: Family<ServedMeters>,
    served_casts: Family<ServedMeters>,
    notifications: Family<NotifyMeters>,
    received: Family<ListenerMeters>,
}

fn labels(transport: &'static str, topic: &str, extra: &[(&'static str, &str)]) -> Vec<Label> {
    let mut labels = Vec::with_capacity(2 + extra.len());
    labels.push(Label::new(LABEL_TRANSPORT, transport));
    labels.push(Label::new(LABEL_TOPIC, topic.to_owned()));
    labels.extend(
        extra
            .iter()
            .map(|(key, value)| Label::new(*key, (*value).to_owned())),
    );
    labels
}

impl Meters {
    pub(crate) fn new(transport: &'static str) -> Self {
        Self {
            transport,
            calls: Family::default(),
            casts: Family::default(),
            served_calls: Family::default(),
            served_casts: Family::default(),
            notifications: Family::default(),
            received: Family::default(),
        }
    }

    pub(crate) fn transport(&self) -> &'static str {
        self.transport
    }

    pub(crate) fn call(&self, topic: &str, method: &str) -> Arc<CallMeters> {
        let t = self.transport;
        self.calls.get(topic, method, |method| {
            let with_method = [(LABEL_METHOD, method)];
            CallMeters {
                sent: counter!(
                    RPC_SENT,
                    labels(t, topic, &[(LABEL_METHOD, method), (LABEL_KIND, "call")])
                ),
                duration: histogram!(RPC_CALL_DURATION, labels(t, topic, &with_method)),
                in_flight: gauge!(RPC_CALLS_IN_FLIGHT, labels(t, topic, &[])),
            }
        })
    }

    pub(crate) fn cast(&self, topic: &str, method: &str) -> Arc<Counter> {
        let t = self.transport;
        self.casts.get(topic, method, |method| {
            counter!(
                RPC_SENT,
                labels(t, topic, &[(LABEL_METHOD, method), (LABEL_KIND, "cast")])
            )
        })
    }

    /// A server's meters for `method` (already bounded by the caller).
    pub(crate) fn served(&self, call: bool, topic: &str, method: &str) -> Arc<ServedMeters> {
        let (t, family, kind) = match call {
            true => (self.transport, &self.served_calls, "call"),
            false => (self.transport, &self.served_casts, "cast"),
        };
        family.get(topic, method, |method| ServedMeters {
            received: counter!(
                RPC_RECEIVED,
                labels(t, topic, &[(LABEL_METHOD, method), (LABEL_KIND, kind)])
            ),
            duration: histogram!(
                RPC_DISPATCH_DURATION,
                labels(t, topic, &[(LABEL_METHOD, method)])
            ),
        })
    }

    pub(crate) fn notify(&self, topic: &str, event_type: &str) -> Arc<NotifyMeters> {
        let t = self.transport;
        self.notifications.get(topic, event_type, |event_type| {
            let with_event = [(LABEL_EVENT_TYPE, event_type)];
            NotifyMeters {
                sent: counter!(NOTIFICATIONS_SENT, labels(t, topic, &with_event)),
                confirm: histogram!(NOTIFY_CONFIRM_DURATION, labels(t, topic, &with_event)),
            }
        })
    }

    /// A listener's meters; `topic` is its targets' topics, comma-separated.
    pub(crate) fn listened(&self, topic: &str, event_type: &str) -> Arc<ListenerMeters> {
        let t = self.transport;
        self.received.get(topic, event_type, |event_type| {
            let with_event = [(LABEL_EVENT_TYPE, event_type)];
            ListenerMeters {
                received: counter!(NOTIFICATIONS_RECEIVED, labels(t, topic, &with_event)),
                acked: counter!(NOTIFICATIONS_ACKED, labels(t, topic, &with_event)),
                requeued: counter!(NOTIFICATIONS_REQUEUED, labels(t, topic, &with_event)),
                duration: histogram!(
                    NOTIFICATION_DISPATCH_DURATION,
                    labels(t, topic, &with_event)
                ),
            }
        })
    }

    /// A listener's gauge of notifications taken and not yet settled.
    pub(crate) fn unacked(&self, topic: &str) -> Gauge {
        gauge!(NOTIFICATIONS_UNACKED, labels(self.transport, topic, &[]))
    }

    pub(crate) fn outbox(&self) -> OutboxMeters {
        let transport = [(LABEL_TRANSPORT, self.transport)];
        OutboxMeters {
            pending: gauge!(OUTBOX_PENDING, &transport),
            dropped: counter!(OUTBOX_DROPPED, &transport),
            failed: counter!(OUTBOX_FAILED, &transport),
        }
    }
}

/// Count a received message that failed its signature check.
pub(crate) fn count_signature_failure(transport: &'static str, kind: &'static str) {
    counter!(SIGNATURE_FAILURES, LABEL_TRANSPORT => transport, LABEL_KIND => kind).increment(1);
}

/// Count a redelivered duplicate that was dropped.
pub(crate) fn count_duplicate(transport: &'static str, kind: &'static str) {
    counter!(DUPLICATES, LABEL_TRANSPORT => transport, LABEL_KIND => kind).increment(1);
}

/// Count a message a driver could not decode.
pub(crate) fn count_malformed(transport: &str) {
    counter!(MALFORMED, LABEL_TRANSPORT => transport.to_owned()).increment(1);
}

/// Count a reconnection of a driver.
pub fn count_reconnect(transport: &'static str) {
    counter!(RECONNECTS, LABEL_TRANSPORT => transport).increment(1);
}

/// Counts one more of something in progress on a gauge, one less when dropped.
pub(crate) struct Busy(Gauge);

impl Busy {
    pub(crate) fn on(gauge: &Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Seconds, as histograms of durations take them.
pub(crate) fn seconds(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64()
}

/// Describe every metric (help text and unit) to the installed recorder, e.g. so that a
/// Prometheus scrape shows `# HELP` lines. Call it once after installing the recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    for (name, help) in COUNTERS {
        describe_counter!(*name, Unit::Count, *help);
    }
    for (name, help) in HISTOGRAMS {
        describe_histogram!(*name, Unit::Seconds, *help);
    }
    for (name, help) in GAUGES {
        describe_gauge!(*name, Unit::Count, *help);
    }
}

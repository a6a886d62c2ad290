//! The names of the spans, metrics and labels this crate emits.

/// Span of a call, from sending the request to its reply (or failure).
pub const SPAN_RPC_CALL: &str = "rpc.call";
/// Span of a cast, until the transport confirmed it.
pub const SPAN_RPC_CAST: &str = "rpc.cast";
/// Span of a server's handling of one request, from its receipt to its reply sent.
pub const SPAN_RPC_DISPATCH: &str = "rpc.dispatch";
/// Span of a notify call, until every copy was confirmed (or the outbox took them).
pub const SPAN_NOTIFY: &str = "notification.send";
/// Span of a listener's handling of one notification, until it was settled.
pub const SPAN_NOTIFICATION_DISPATCH: &str = "notification.dispatch";
/// Span of a listener's handling of a batch of notifications, until they were settled.
pub const SPAN_NOTIFICATION_BATCH: &str = "notification.batch_dispatch";
/// Span of the outbox's sending of one queued notification.
pub const SPAN_OUTBOX_SEND: &str = "outbox.send";
/// Span of a driver's reconnection to its broker.
pub const SPAN_RECONNECT: &str = "transport.reconnect";

/// Label: the driver's name (`rabbit`, `amqp1`, `kafka`, `memory`).
pub const LABEL_TRANSPORT: &str = "transport";
/// Label: the topic (for a listener, its targets' topics, comma-separated).
pub const LABEL_TOPIC: &str = "topic";
/// Label: the RPC method.
pub const LABEL_METHOD: &str = "method";
/// Label: the notification's event type.
pub const LABEL_EVENT_TYPE: &str = "event_type";
/// Label: `call` or `cast` (RPC); `rpc request`, `rpc reply` or `notification` (checks).
pub const LABEL_KIND: &str = "kind";

/// Counter: requests handed to the transport (`transport`, `topic`, `method`, `kind`).
pub const RPC_SENT: &str = "messaging_rpc_sent_total";
/// Counter: requests a server received (`transport`, `topic`, `method`, `kind`).
pub const RPC_RECEIVED: &str = "messaging_rpc_received_total";
/// Histogram: seconds from sending a call to its reply or failure (`transport`, `topic`,
/// `method`).
pub const RPC_CALL_DURATION: &str = "messaging_rpc_call_duration_seconds";
/// Histogram: seconds a server took from a request's receipt to its reply sent (`transport`,
/// `topic`, `method`).
pub const RPC_DISPATCH_DURATION: &str = "messaging_rpc_dispatch_duration_seconds";
/// Gauge: calls waiting for their reply (`transport`, `topic`).
pub const RPC_CALLS_IN_FLIGHT: &str = "messaging_rpc_calls_in_flight";
/// Counter: notifications the transport confirmed (`transport`, `topic`, `event_type`).
pub const NOTIFICATIONS_SENT: &str = "messaging_notifications_sent_total";
/// Histogram: seconds from sending a notification to the transport's confirm (`transport`,
/// `topic`, `event_type`).
pub const NOTIFY_CONFIRM_DURATION: &str = "messaging_notify_confirm_duration_seconds";
/// Counter: notifications a listener received (`transport`, `topic`, `event_type`).
pub const NOTIFICATIONS_RECEIVED: &str = "messaging_notifications_received_total";
/// Counter: notifications a listener acknowledged (`transport`, `topic`, `event_type`).
pub const NOTIFICATIONS_ACKED: &str = "messaging_notifications_acked_total";
/// Counter: notifications a listener requeued (`transport`, `topic`, `event_type`).
pub const NOTIFICATIONS_REQUEUED: &str = "messaging_notifications_requeued_total";
/// Histogram: seconds a listener took to handle and settle a notification (`transport`,
/// `topic`, `event_type`; `_batch` for a batch).
pub const NOTIFICATION_DISPATCH_DURATION: &str = "messaging_notification_dispatch_duration_seconds";
/// Gauge: notifications a listener took and has not settled yet (`transport`, `topic`).
pub const NOTIFICATIONS_UNACKED: &str = "messaging_notifications_unacked";
/// Counter: messages a driver dropped because it could not decode them (`transport`).
pub const MALFORMED: &str = "messaging_malformed_total";
/// Counter: received messages that failed their signature check (`transport`, `kind`).
pub const SIGNATURE_FAILURES: &str = "messaging_signature_failures_total";
/// Counter: redelivered duplicates dropped (`transport`, `kind`: `rpc request` or
/// `notification`).
pub const DUPLICATES: &str = "messaging_redelivered_duplicates_total";
/// Counter: reconnections to the broker (`transport`).
pub const RECONNECTS: &str = "messaging_reconnects_total";
/// Gauge: notifications an outbox holds (`transport`).
pub const OUTBOX_PENDING: &str = "messaging_outbox_pending";
/// Counter: notifications an outbox dropped to make room (`transport`).
pub const OUTBOX_DROPPED: &str = "messaging_outbox_dropped_total";
/// Counter: notifications an outbox dropped because the transport refused them for good
/// (`transport`).
pub const OUTBOX_FAILED: &str = "messaging_outbox_failed_total";

/// Every counter, with its help text.
pub const COUNTERS: &[(&str, &str)] = &[
    (RPC_SENT, "RPC requests handed to the transport"),
    (RPC_RECEIVED, "RPC requests received by servers"),
    (
        NOTIFICATIONS_SENT,
        "notifications confirmed by the transport",
    ),
    (
        NOTIFICATIONS_RECEIVED,
        "notifications received by listeners",
    ),
    (
        NOTIFICATIONS_ACKED,
        "notifications acknowledged by listeners",
    ),
    (
        NOTIFICATIONS_REQUEUED,
        "notifications requeued by listeners",
    ),
    (MALFORMED, "undecodable messages dropped"),
    (
        SIGNATURE_FAILURES,
        "received messages that failed their signature check",
    ),
    (DUPLICATES, "redelivered duplicate messages dropped"),
    (RECONNECTS, "reconnections to the broker"),
    (OUTBOX_DROPPED, "notifications dropped by a full outbox"),
    (
        OUTBOX_FAILED,
        "notifications an outbox dropped because the transport refused them",
    ),
];

/// Every histogram (in seconds), with its help text.
pub const HISTOGRAMS: &[(&str, &str)] = &[
    (RPC_CALL_DURATION, "call latency, from sending to the reply"),
    (
        RPC_DISPATCH_DURATION,
        "server time from a request's receipt to its reply sent",
    ),
    (
        NOTIFY_CONFIRM_DURATION,
        "time from sending a notification to the transport's confirm",
    ),
    (
        NOTIFICATION_DISPATCH_DURATION,
        "listener time to handle and settle notifications",
    ),
];

/// Every gauge, with its help text.
pub const GAUGES: &[(&str, &str)] = &[
    (RPC_CALLS_IN_FLIGHT, "calls waiting for their reply"),
    (
        NOTIFICATIONS_UNACKED,
        "notifications taken by listeners and not settled yet",
    ),
    (OUTBOX_PENDING, "notifications held by outboxes"),
];

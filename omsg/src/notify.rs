//! `notify` and `listen`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use messaging::driver::Feature;
use messaging::{
    NotificationEndpoint, NotificationFilter, NotificationListener, NotificationResult, Notifier,
    NotifierDriver, Priority, Target,
};
use serde_json::json;
use tokio::sync::mpsc;

use crate::{
    parse_context, parse_json, parse_priority, parse_seconds, print_json, shutdown_signal,
    Endpoints, Failure, Outcome,
};

/// `omsg notify`.
#[derive(Debug, Args)]
pub struct NotifyArgs {
    /// The notification topic.
    topic: String,
    /// The event type, e.g. compute.instance.create.end.
    event_type: String,
    /// The payload as JSON.
    payload: String,
    /// One of audit, debug, info, warn, error, critical, sample.
    #[arg(long, default_value = "info", value_parser = parse_priority)]
    priority: Priority,
    /// The publisher id.
    #[arg(long, default_value = "omsg")]
    publisher_id: String,
    /// The context as a JSON object.
    #[arg(long)]
    context: Option<String>,
    /// Notifier driver: messagingv2 (enveloped) or messaging (bare).
    #[arg(long, default_value = "messagingv2")]
    driver: String,
}

/// `omsg listen`.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// The notification topic.
    topic: String,
    /// Join this pool (each pool gets its own copy).
    #[arg(long)]
    pool: Option<String>,
    /// Exit after this many notifications.
    #[arg(long)]
    count: Option<u64>,
    /// Exit (code 2) when nothing arrives for this many seconds.
    #[arg(long, value_parser = parse_seconds)]
    idle_timeout: Option<Duration>,
    /// Only print notifications whose event type matches this regular expression.
    #[arg(long)]
    event_type: Option<String>,
    /// Only print notifications whose publisher id matches this regular expression.
    #[arg(long)]
    publisher_id: Option<String>,
    /// Pretty-print each notification over several lines.
    #[arg(long)]
    pretty: bool,
}

/// `omsg notify`.
pub async fn notify(endpoints: &Endpoints, args: NotifyArgs) -> Outcome {
    let payload = parse_json("PAYLOAD_JSON", &args.payload)?;
    let ctx = parse_context(args.context.as_deref())?;
    let driver: NotifierDriver = args.driver.parse()?;
    Notifier::new(endpoints.notifications().await?, args.publisher_id)
        .topics([args.topic])
        .exchange(&endpoints.exchange)
        .driver(driver)
        .notify(&ctx, args.priority, &args.event_type, &payload)
        .await?;
    Ok(())
}

/// `omsg listen`: one JSON object per notification on stdout.
pub async fn listen(endpoints: &Endpoints, args: ListenArgs) -> Outcome {
    let mut filter = NotificationFilter::new();
    if let Some(pattern) = &args.event_type {
        filter = filter.event_type(pattern)?;
    }
    if let Some(pattern) = &args.publisher_id {
        filter = filter.publisher_id(pattern)?;
    }
    let transport = endpoints.notifications().await?;
    let url = transport.url().to_string();
    // Past --count, hand notifications back instead of consuming them unseen.
    let can_requeue = transport.capabilities().supports(Feature::Requeue);
    let limit = args.count.unwrap_or(u64::MAX);
    let taken = Arc::new(AtomicU64::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let endpoint = NotificationEndpoint::new()
        .on_all(move |n| {
            let tx = tx.clone();
            let taken = taken.clone();
            async move {
                if taken.fetch_add(1, Ordering::SeqCst) >= limit && can_requeue {
                    return NotificationResult::Requeue;
                }
                let line = json!({
                    "priority": n.priority,
                    "publisher_id": n.publisher_id,
                    "event_type": n.event_type,
                    "payload": n.payload,
                    "context": n.context,
                    "metadata": {"message_id": n.metadata.message_id, "timestamp": n.metadata.timestamp},
                });
                tx.send(line).ok();
                NotificationResult::Handled
            }
        })
        .filter(filter);
    let mut listener = NotificationListener::new(transport)
        .target(Target::topic(&args.topic).exchange(&endpoints.exchange))
        .endpoint(endpoint)
        .allow_requeue(can_requeue)
        .max_concurrency(1);
    if let Some(pool) = &args.pool {
        listener = listener.pool(pool);
    }
    let stop = shutdown_signal()?;
    tokio::pin!(stop);
    let listener = listener.start().await?;
    // Once started, the listener is consuming (Kafka: its group assigned partitions), so
    // scripts may wait for this line before sending.
    eprintln!(
        "omsg: listening on topic {} (exchange {}) at {} (Ctrl-C or SIGTERM to stop)",
        args.topic, endpoints.exchange, url
    );
    let mut printed = 0u64;
    let outcome = loop {
        if args.count.is_some_and(|count| printed >= count) {
            break Ok(());
        }
        let received = async {
            match args.idle_timeout {
                Some(idle) => tokio::time::timeout(idle, rx.recv())
                    .await
                    .map_err(|_| idle),
                None => Ok(rx.recv().await),
            }
        };
        let next = tokio::select! {
            received = received => match received {
                Ok(next) => next,
                Err(idle) => {
                    break Err(Failure::TimedOut(format!(
                        "no notification on topic `{}` for {} s (--idle-timeout)",
                        args.topic,
                        idle.as_secs_f64()
                    )))
                }
            },
            () = &mut stop => break Ok(()),
        };
        let Some(line) = next else { break Ok(()) };
        if args.pretty {
            println!(
                "{}",
                serde_json::to_string_pretty(&line).unwrap_or_default()
            );
        } else {
            print_json(&line);
        }
        printed += 1;
    };
    listener.shutdown().await;
    outcome
}

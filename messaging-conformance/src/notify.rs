//! Notification cases: priorities, topics, pools, requeue, batches, filters, load, messages
//! kept for a late listener, a clean hand-over between listeners and nothing handled twice
//! after a clean stop.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use messaging_core::driver::Delivery;
use messaging_core::{
    Context, Notification, NotificationEndpoint, NotificationFilter, NotificationListener,
    NotificationResult, Notifier, Priority, Target,
};
use serde_json::json;

use crate::support::{ctx, distinct_and_duplicates, recording_endpoint, start_listener};
use crate::{unique, Backend, Recorder};

/// A notification of each of the seven priorities arrives with its fields and context.
pub async fn notify_every_priority(b: Backend) {
    let topic = unique("prio");
    let recorder = Recorder::new();
    let listener = start_listener(
        &b,
        &[&topic],
        None,
        recording_endpoint(recorder.clone()),
        |l| l,
    )
    .await;
    let notifier = Notifier::new(b.notifications().await, "compute.host1").topics([&topic]);
    for priority in Priority::ALL {
        let payload = json!({"prio": priority.as_str(), "nested": {"ü": [1, 2]}});
        notifier
            .notify(&ctx(), priority, &format!("test.{priority}"), &payload)
            .await
            .expect("notify");
    }
    let got = recorder.wait_for(7, b.wait(), "one per priority").await;
    for priority in Priority::ALL {
        let n = got
            .iter()
            .find(|n| n.priority == priority)
            .unwrap_or_else(|| panic!("no {priority}"));
        assert_eq!(n.event_type, format!("test.{priority}"));
        assert_eq!(n.publisher_id, "compute.host1");
        assert_eq!(n.payload["prio"], priority.as_str());
        assert_eq!(n.payload["nested"]["ü"], json!([1, 2]));
        assert_eq!(n.context.get_str("request_id"), Some("req-123"));
        assert_eq!(n.metadata.message_id.len(), 36);
        assert!(n.metadata.timestamp.len() >= 19, "{}", n.metadata.timestamp);
    }
    listener.shutdown().await;
    assert_eq!(recorder.len(), 7);
}

/// A notifier with two topics sends a copy to each; a listener may listen to several topics.
pub async fn notify_multiple_topics(b: Backend) {
    let (one, two) = (unique("topic1"), unique("topic2"));
    let recorder = Recorder::new();
    let listener = start_listener(
        &b,
        &[&one, &two],
        None,
        recording_endpoint(recorder.clone()),
        |l| l,
    )
    .await;
    let transport = b.notifications().await;
    Notifier::new(transport.clone(), "p")
        .topics([&one, &two])
        .info(&ctx(), "both", &1)
        .await
        .expect("notify");
    Notifier::new(transport, "p")
        .topics([&two])
        .info(&ctx(), "second", &2)
        .await
        .expect("notify");
    let got = recorder.wait_for(3, b.wait(), "copies").await;
    let both = got.iter().filter(|n| n.event_type == "both").count();
    assert_eq!(both, 2, "one copy per topic");
    listener.shutdown().await;
    assert_eq!(recorder.len(), 3);
}

/// Each pool gets its own copy of every notification.
pub async fn notify_pools_each_get_a_copy(b: Backend) {
    let topic = unique("pools");
    let (pool_a, pool_b) = (unique("poola"), unique("poolb"));
    let (a, bb) = (Recorder::new(), Recorder::new());
    let la = start_listener(
        &b,
        &[&topic],
        Some(&pool_a),
        recording_endpoint(a.clone()),
        |l| l,
    )
    .await;
    let lb = start_listener(
        &b,
        &[&topic],
        Some(&pool_b),
        recording_endpoint(bb.clone()),
        |l| l,
    )
    .await;
    let notifier = Notifier::new(b.notifications().await, "p").topics([&topic]);
    for i in 0..20 {
        notifier.info(&ctx(), "pooled", &i).await.expect("notify");
    }
    a.wait_for(20, b.wait(), "pool a").await;
    bb.wait_for(20, b.wait(), "pool b").await;
    la.shutdown().await;
    lb.shutdown().await;
    for pool in [&a, &bb] {
        let (distinct, _) =
            distinct_and_duplicates(pool.items().iter().map(|n| n.metadata.message_id.clone()));
        assert_eq!(distinct, 20);
    }
}

/// Members of one pool share its notifications: together they get each one.
pub async fn notify_pool_members_share_load(b: Backend) {
    let topic = unique("share");
    let pool = unique("pool");
    let (m1, m2) = (Recorder::new(), Recorder::new());
    let slow = |recorder: Arc<Recorder<Notification>>| {
        NotificationEndpoint::new().on(Priority::Info, move |n| {
            let recorder = recorder.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                recorder.push(n);
                NotificationResult::Handled
            }
        })
    };
    let one = |l: NotificationListener| l.max_concurrency(1);
    let l1 = start_listener(&b, &[&topic], Some(&pool), slow(m1.clone()), one).await;
    let l2 = start_listener(&b, &[&topic], Some(&pool), slow(m2.clone()), one).await;
    let notifier = Notifier::new(b.notifications().await, "p").topics([&topic]);
    for i in 0..40 {
        notifier.info(&ctx(), "shared", &i).await.expect("notify");
    }
    let deadline = tokio::time::Instant::now() + b.wait();
    while m1.len() + m2.len() < 40 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    l1.shutdown().await;
    l2.shutdown().await;
    let ids = m1
        .items()
        .into_iter()
        .chain(m2.items())
        .map(|n| n.metadata.message_id);
    let (distinct, _) = distinct_and_duplicates(ids);
    assert_eq!(distinct, 40, "the pool got every notification");
    assert!(
        !m1.is_empty() && !m2.is_empty(),
        "shared: {} and {}",
        m1.len(),
        m2.len()
    );
}

/// A notification the endpoint requeues is delivered again.
pub async fn notify_requeue_redelivers(b: Backend) {
    let topic = unique("requeue");
    let seen = Recorder::<String>::new();
    let recorder = seen.clone();
    let endpoint = NotificationEndpoint::new().on(Priority::Info, move |n: Notification| {
        let recorder = recorder.clone();
        async move {
            let first_time = !recorder.items().contains(&n.metadata.message_id);
            recorder.push(n.metadata.message_id);
            if first_time {
                NotificationResult::Requeue
            } else {
                NotificationResult::Handled
            }
        }
    });
    let listener = start_listener(&b, &[&topic], None, endpoint, |l| l.allow_requeue(true)).await;
    let notifier = Notifier::new(b.notifications().await, "p").topics([&topic]);
    notifier
        .info(&ctx(), "again", &json!({"n": 1}))
        .await
        .expect("notify");
    let got = seen.wait_for(2, b.wait(), "redelivery").await;
    assert_eq!(got[0], got[1], "the same notification came back");
    listener.shutdown().await;
}

/// Without `allow_requeue`, a requeue request is acknowledged instead.
pub async fn notify_requeue_refused_when_not_allowed(b: Backend) {
    let topic = unique("norequeue");
    let seen = Recorder::<String>::new();
    let recorder = seen.clone();
    let endpoint = NotificationEndpoint::new().on(Priority::Info, move |n: Notification| {
        let recorder = recorder.clone();
        async move {
            recorder.push(n.event_type);
            NotificationResult::Requeue
        }
    });
    let listener = start_listener(&b, &[&topic], None, endpoint, |l| l).await;
    let notifier = Notifier::new(b.notifications().await, "p").topics([&topic]);
    notifier.info(&ctx(), "first", &1).await.expect("notify");
    seen.wait_for(1, b.wait(), "first").await;
    notifier.info(&ctx(), "marker", &2).await.expect("notify");
    seen.wait_for(2, b.wait(), "marker").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    listener.shutdown().await;
    assert_eq!(seen.items(), ["first", "marker"], "no redelivery");
}

/// Batch listening hands endpoints batches of at most the batch size.
pub async fn notify_batches(b: Backend) {
    let topic = unique("batch");
    let batches = Recorder::<usize>::new();
    let total = Recorder::<String>::new();
    let (batches_in, total_in) = (batches.clone(), total.clone());
    let endpoint =
        NotificationEndpoint::new().on_batch(Priority::Info, move |batch: Vec<Notification>| {
            let (batches, total) = (batches_in.clone(), total_in.clone());
            async move {
                batches.push(batch.len());
                for n in batch {
                    total.push(n.metadata.message_id);
                }
                NotificationResult::Handled
            }
        });
    let notifier = Notifier::new(b.notifications().await, "p").topics([&topic]);
    let listener = start_listener(&b, &[&topic], None, endpoint, |l| {
        l.batch(10, Duration::from_millis(500))
    })
    .await;
    for i in 0..25 {
        notifier.info(&ctx(), "batched", &i).await.expect("notify");
    }
    total.wait_for(25, b.wait(), "batched notifications").await;
    listener.shutdown().await;
    let sizes = batches.items();
    assert!(
        sizes.iter().all(|s| (1..=10).contains(s)),
        "batch sizes {sizes:?}"
    );
    assert!(
        sizes.iter().any(|s| *s > 1),
        "some batching happened: {sizes:?}"
    );
    assert_eq!(sizes.iter().sum::<usize>(), 25);
}

/// Filters on event type, publisher, context and payload pass only what matches.
pub async fn notify_filters(b: Backend) {
    let topic = unique("filter");
    let (all, filtered) = (Recorder::new(), Recorder::new());
    let filter = NotificationFilter::new()
        .event_type(r"compute\.instance\.")
        .and_then(|f| f.publisher_id("compute\\..*"))
        .and_then(|f| f.context("user_id", "u-1$"))
        .and_then(|f| f.payload("/state", "active$"))
        .expect("valid filter");
    let listener = NotificationListener::new(b.notifications().await)
        .target(Target::topic(&topic))
        .endpoint(recording_endpoint(all.clone()))
        .endpoint(recording_endpoint(filtered.clone()).filter(filter))
        .start()
        .await
        .expect("listener");
    b.settled().await;
    let transport = b.notifications().await;
    let compute = Notifier::new(transport.clone(), "compute.host1").topics([&topic]);
    let network = Notifier::new(transport, "network.host1").topics([&topic]);
    compute
        .info(
            &ctx(),
            "compute.instance.update",
            &json!({"state": "active"}),
        )
        .await
        .expect("match");
    compute
        .info(
            &ctx(),
            "compute.instance.update",
            &json!({"state": "inactive"}),
        )
        .await
        .expect("payload");
    compute
        .info(&ctx(), "compute.volume.update", &json!({"state": "active"}))
        .await
        .expect("event");
    network
        .info(
            &ctx(),
            "compute.instance.update",
            &json!({"state": "active"}),
        )
        .await
        .expect("publisher");
    compute
        .info(
            &Context::new(),
            "compute.instance.update",
            &json!({"state": "active"}),
        )
        .await
        .expect("ctx");
    all.wait_for(5, b.wait(), "every notification").await;
    listener.shutdown().await;
    let passed = filtered.items();
    assert_eq!(passed.len(), 1, "only one matches: {passed:?}");
    assert_eq!(passed[0].payload["state"], "active");
    assert_eq!(passed[0].publisher_id, "compute.host1");
}

/// 100 concurrent publishers × 100 notifications: none lost; duplicates only if the driver
/// is at-least-once.
pub async fn notify_concurrent_publishers_none_lost(b: Backend) {
    const PUBLISHERS: usize = 100;
    const EACH: usize = 100;
    let topic = unique("load");
    let recorder = Recorder::new();
    let listener = start_listener(
        &b,
        &[&topic],
        None,
        recording_endpoint(recorder.clone()),
        |l| l,
    )
    .await;
    let notifier = Notifier::new(b.notifications().await, "load").topics([&topic]);
    let tasks = (0..PUBLISHERS).map(|p| {
        let notifier = notifier.clone();
        tokio::spawn(async move {
            for i in 0..EACH {
                notifier
                    .info(&ctx(), "load", &json!({"p": p, "i": i}))
                    .await
                    .expect("notify");
            }
        })
    });
    for task in futures_util::future::join_all(tasks).await {
        task.expect("publisher task");
    }
    let got = recorder
        .wait_for(PUBLISHERS * EACH, b.wait() * 2, "every notification")
        .await;
    listener.shutdown().await;
    let keys = got
        .iter()
        .map(|n| format!("{}-{}", n.payload["p"], n.payload["i"]));
    let (distinct, duplicates) = distinct_and_duplicates(keys);
    assert_eq!(distinct, PUBLISHERS * EACH, "none lost");
    if b.capabilities().notify_delivery == Delivery::AtMostOnce || duplicates > 0 {
        println!("{}: {duplicates} duplicate notifications", b.name());
    }
    assert!(
        duplicates == 0 || b.capabilities().notify_delivery == Delivery::AtLeastOnce,
        "{duplicates} duplicates from an at-most-once driver"
    );
}

/// Notifications sent before any listener subscribed wait for the first one.
pub async fn notify_sent_before_listener_is_kept(b: Backend) {
    let topic = unique("early");
    let notifier = Notifier::new(b.notifications().await, "p").topics([&topic]);
    for i in 0..5 {
        notifier.info(&ctx(), "early", &i).await.expect("notify");
    }
    let recorder = Recorder::new();
    let listener = start_listener(
        &b,
        &[&topic],
        None,
        recording_endpoint(recorder.clone()),
        |l| l,
    )
    .await;
    recorder.wait_for(5, b.wait(), "early notifications").await;
    listener.shutdown().await;
}

/// A listener stopped mid-stream finishes what it took; a successor gets all the rest.
pub async fn notify_clean_shutdown_loses_nothing(b: Backend) {
    const TOTAL: usize = 200;
    let topic = unique("handover");
    let pool = unique("pool");
    let handled = Recorder::<i64>::new();
    let slow = |handled: Arc<Recorder<i64>>| {
        NotificationEndpoint::new().on(Priority::Info, move |n: Notification| {
            let handled = handled.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                handled.push(n.payload.as_i64().unwrap_or(-1));
                NotificationResult::Handled
            }
        })
    };
    let first = start_listener(&b, &[&topic], Some(&pool), slow(handled.clone()), |l| {
        l.max_concurrency(4)
    })
    .await;
    let notifier = Notifier::new(b.notifications().await, "p").topics([&topic]);
    for i in 0..TOTAL {
        notifier.info(&ctx(), "handover", &i).await.expect("notify");
    }
    handled
        .wait_for(TOTAL / 4, b.wait(), "first listener progress")
        .await;
    first.shutdown().await;
    let by_first = handled.len();
    let second = start_listener(&b, &[&topic], Some(&pool), slow(handled.clone()), |l| l).await;
    // Duplicates are allowed (at-least-once): wait for every distinct notification.
    let distinct = |items: &[i64]| items.iter().copied().collect::<HashSet<i64>>().len();
    let got = handled
        .wait_until(
            |items| distinct(items) >= TOTAL,
            b.wait(),
            "every notification across both listeners",
        )
        .await;
    second.shutdown().await;
    assert_eq!(
        distinct(&got),
        TOTAL,
        "nothing lost (first listener handled {by_first})"
    );
}

/// Notifications a listener handled before a clean stop are settled with the broker: its
/// successor gets only what was sent afterwards.
pub async fn notify_handled_are_not_delivered_again(b: Backend) {
    const TOTAL: usize = 300;
    let topic = unique("settled");
    let handled = Recorder::new();
    let endpoint = recording_endpoint(handled.clone());
    let first = start_listener(&b, &[&topic], None, endpoint, |l| l.max_concurrency(8)).await;
    let notifier = Notifier::new(b.notifications().await, "p").topics([&topic]);
    for i in 0..TOTAL {
        notifier.info(&ctx(), "before", &i).await.expect("notify");
    }
    handled
        .wait_for(TOTAL, b.wait(), "the first listener")
        .await;
    first.shutdown().await;
    let after = Recorder::new();
    let second = start_listener(
        &b,
        &[&topic],
        None,
        recording_endpoint(after.clone()),
        |l| l,
    )
    .await;
    notifier
        .info(&ctx(), "after", &TOTAL)
        .await
        .expect("notify");
    after
        .wait_for(1, b.wait(), "the notification sent after")
        .await;
    // Anything delivered again would come before or shortly after it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    second.shutdown().await;
    let payloads: Vec<_> = after.items().into_iter().map(|n| n.payload).collect();
    assert_eq!(
        payloads,
        vec![json!(TOTAL)],
        "only the notification sent after"
    );
}

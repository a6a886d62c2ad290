//! A listener killed mid-stream (SIGKILL: no clean close, no final commit) and restarted in
//! the same consumer group receives every notification it had not handled. Needs `KAFKA_URL`.
//!
//! The listener runs as a child process: this test binary re-executed with
//! `KAFKA_CRASH_CHILD=<url> <topic> <pool>`, which prints one JSON line per handled
//! notification (before acknowledging it) and handles slowly, eight at a time, finishing out of
//! order.

mod common;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use messaging_core::{
    get_notification_transport, Context, NotificationEndpoint, NotificationListener,
    NotificationResult, Notifier, Priority, Target,
};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const CHILD_VAR: &str = "KAFKA_CRASH_CHILD";
const TOTAL: i64 = 300;
const WAIT: Duration = Duration::from_secs(90);

/// The child: a slow listener that reports each notification it handled.
#[test]
fn crash_child() {
    let Some(([url, topic, pool], runtime)) = common::child(CHILD_VAR) else {
        return; // only runs as the child of `killed_listener_loses_nothing`
    };
    runtime.block_on(async {
        let transport = get_notification_transport(&url).await.expect("transport");
        let endpoint = NotificationEndpoint::new().on(Priority::Info, |n| async move {
            let id = n.payload["id"].as_i64().unwrap_or(-1);
            // 5 to 40 ms, varying so that notifications finish out of order.
            let delay = 5 + (id * 37 % 36) as u64;
            tokio::time::sleep(Duration::from_millis(delay)).await;
            println!("{}", json!({"handled": id}));
            NotificationResult::Handled
        });
        let _listener = NotificationListener::new(transport)
            .target(Target::topic(&topic))
            .pool(&pool)
            .max_concurrency(8)
            .endpoint(endpoint)
            .start()
            .await
            .expect("listener");
        println!("{}", json!({"event": "ready"}));
        // Run until killed.
        std::future::pending::<()>().await;
    });
}

struct ChildListener {
    child: Child,
    lines: mpsc::UnboundedReceiver<Value>,
}

async fn start_child(url: &str, topic: &str, pool: &str) -> ChildListener {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, format!("{url} {topic} {pool}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the child listener");
    let stdout = child.stdout.take().unwrap();
    let (tx, mut lines) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut reader = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            // The test harness prints `test crash_child ... ` before the first line.
            let json = line.find('{').map_or("", |start| &line[start..]);
            if let Ok(value) = serde_json::from_str::<Value>(json) {
                if tx.send(value).is_err() {
                    break;
                }
            }
        }
    });
    let ready = tokio::time::timeout(WAIT, lines.recv())
        .await
        .expect("the child listener got ready")
        .expect("the child listener said something");
    assert_eq!(ready["event"], "ready", "{ready}");
    ChildListener { child, lines }
}

impl ChildListener {
    /// Collect handled ids until `until(ids)` holds; panics after `WAIT`.
    async fn collect(&mut self, ids: &mut Vec<i64>, until: impl Fn(&[i64]) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !until(ids) {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    if let Some(id) = line["handled"].as_i64() {
                        ids.push(id);
                    }
                }
                Ok(None) => panic!("the child listener exited after {} handled", ids.len()),
                Err(_) => panic!("timed out after {} handled", ids.len()),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_listener_loses_nothing() {
    let Some(url) = common::kafka_url("killed_listener_loses_nothing") else {
        return;
    };
    let url = common::with_options(&url, common::TEST_OPTIONS);
    let topic = common::unique("crash");
    let pool = common::unique("crashpool");

    let mut first = start_child(&url, &topic, &pool).await;
    let transport = get_notification_transport(&url).await.expect("transport");
    let notifier = Notifier::new(transport.clone(), "crash").topics([&topic]);
    let sends = (0..TOTAL).map(|id| {
        let notifier = notifier.clone();
        async move {
            notifier
                .info(&Context::new(), "crash.test", &json!({"id": id}))
                .await
                .expect("notify")
        }
    });
    futures_util::future::join_all(sends).await;

    let mut by_first = Vec::new();
    first
        .collect(&mut by_first, |ids| ids.len() >= (TOTAL / 3) as usize)
        .await;
    // SIGKILL: no clean close, no last commit, no leaving the group.
    first
        .child
        .kill()
        .await
        .expect("kill -9 the first listener");
    // Lines already written before the kill were handled too.
    while let Ok(Some(line)) =
        tokio::time::timeout(Duration::from_millis(200), first.lines.recv()).await
    {
        if let Some(id) = line["handled"].as_i64() {
            by_first.push(id);
        }
    }

    let mut second = start_child(&url, &topic, &pool).await;
    let handled_first: BTreeSet<i64> = by_first.iter().copied().collect();
    let mut by_second = Vec::new();
    second
        .collect(&mut by_second, |ids| {
            let all: BTreeSet<i64> = handled_first.iter().chain(ids).copied().collect();
            all.len() == TOTAL as usize
        })
        .await;
    // Anything else redelivered shortly after is a duplicate; give it a moment to show.
    while let Ok(Some(line)) =
        tokio::time::timeout(Duration::from_millis(1500), second.lines.recv()).await
    {
        if let Some(id) = line["handled"].as_i64() {
            by_second.push(id);
        }
    }
    second.child.kill().await.expect("stop the second listener");
    transport.close().await;

    let union: BTreeSet<i64> = by_first.iter().chain(&by_second).copied().collect();
    assert_eq!(union, (0..TOTAL).collect::<BTreeSet<i64>>(), "nothing lost");
    let duplicates = by_first.len() + by_second.len() - union.len();
    let redelivered: BTreeSet<i64> = by_second
        .iter()
        .filter(|id| handled_first.contains(id))
        .copied()
        .collect();
    assert!(
        redelivered.len() < by_first.len(),
        "the first listener committed some of what it handled before the kill"
    );
    println!(
        "crash: first listener handled {} before SIGKILL, second handled {}; {} duplicates \
         ({} ids handled by both: handled but not yet committed when killed)",
        by_first.len(),
        by_second.len(),
        duplicates,
        redelivered.len()
    );
}

//! Helpers of the conformance cases: unique names, recorders, the test endpoint, and starting
//! servers, clients and listeners on a backend.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use messaging_core::{
    Context, Endpoint, NoArgs, Notification, NotificationEndpoint, NotificationListener,
    NotificationResult, RemoteError, RpcClient, RpcServer, RpcTransport, ServiceHandle, Target,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::Backend;

/// How long a case waits for expected messages before failing.
pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// A name no other case or run uses: `conf_<what>_<8 hex digits>`.
pub fn unique(what: &str) -> String {
    format!("conf_{what}_{}", &messaging_core::wire::new_id()[..8])
}

/// Collects what servers and listeners received, and lets a case wait for it.
#[derive(Debug)]
pub struct Recorder<T> {
    items: Mutex<Vec<T>>,
    changed: Notify,
}

impl<T> Default for Recorder<T> {
    fn default() -> Self {
        Self {
            items: Mutex::new(Vec::new()),
            changed: Notify::new(),
        }
    }
}

impl<T: Clone> Recorder<T> {
    /// A new, shared recorder.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Record an item.
    pub fn push(&self, item: T) {
        self.items.lock().expect("recorder poisoned").push(item);
        self.changed.notify_waiters();
    }

    /// Everything recorded so far.
    pub fn items(&self) -> Vec<T> {
        self.items.lock().expect("recorder poisoned").clone()
    }

    /// How many items were recorded.
    pub fn len(&self) -> usize {
        self.items.lock().expect("recorder poisoned").len()
    }

    /// True if nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wait until at least `count` items were recorded; panics after `within`.
    pub async fn wait_for(&self, count: usize, within: Duration, what: &str) -> Vec<T> {
        let what = format!("{what}: expected {count}");
        self.wait_until(|items| items.len() >= count, within, &what)
            .await
    }

    /// Wait until `done(items)` holds; panics after `within`.
    pub async fn wait_until(
        &self,
        done: impl Fn(&[T]) -> bool,
        within: Duration,
        what: &str,
    ) -> Vec<T> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let changed = self.changed.notified();
            let items = self.items();
            if done(&items) {
                return items;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!(
                    "{what}: not reached within {within:?}, got {} items",
                    items.len()
                );
            }
        }
    }
}

/// What the test endpoint's `record` method saw.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Recorded {
    pub server: String,
    pub value: Value,
}

#[derive(Deserialize)]
struct ValueArgs {
    value: Value,
}

#[derive(Deserialize)]
struct SleepArgs {
    seconds: f64,
}

/// The endpoint every RPC case serves (version 1.3, no namespace), as the Python peer does:
/// `echo(value)`, `whoami()`, `fail()`, `sleep(seconds)`, `record(value)`.
pub(crate) fn test_endpoint(server: &str, recorder: Arc<Recorder<Recorded>>) -> Endpoint {
    let whoami_server = server.to_owned();
    let record_server = server.to_owned();
    let started_server = server.to_owned();
    let started = recorder.clone();
    Endpoint::new()
        .version("1.3")
        .method("echo", |_ctx: Context, args: ValueArgs| async move {
            Ok::<_, RemoteError>(args.value)
        })
        .method("whoami", move |ctx: Context, _: NoArgs| {
            let server = whoami_server.clone();
            async move { Ok::<_, RemoteError>(json!({"server": server, "ctxt": ctx.0})) }
        })
        .method("fail", |_ctx: Context, _: NoArgs| async move {
            Err::<(), _>(RemoteError::value_error(
                "fail() was called: this is the remote ValueError",
            ))
        })
        .method("sleep", move |_ctx: Context, args: SleepArgs| {
            let started = started.clone();
            let server = started_server.clone();
            async move {
                started.push(Recorded {
                    server,
                    value: json!({"sleep_started": args.seconds}),
                });
                tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
                Ok::<_, RemoteError>(args.seconds)
            }
        })
        .method("record", move |_ctx: Context, args: ValueArgs| {
            let recorder = recorder.clone();
            let server = record_server.clone();
            async move {
                recorder.push(Recorded {
                    server,
                    value: args.value,
                });
                Ok::<_, RemoteError>(())
            }
        })
}

/// A notification endpoint that records everything of every priority and answers `result`.
pub(crate) fn recording_endpoint(recorder: Arc<Recorder<Notification>>) -> NotificationEndpoint {
    NotificationEndpoint::new().on_all(move |notification| {
        let recorder = recorder.clone();
        async move {
            recorder.push(notification);
            NotificationResult::Handled
        }
    })
}

/// Count the distinct values and the duplicates of `ids`.
pub(crate) fn distinct_and_duplicates<I: IntoIterator<Item = String>>(ids: I) -> (usize, usize) {
    let mut all: Vec<String> = ids.into_iter().collect();
    let total = all.len();
    all.sort();
    all.dedup();
    (all.len(), total - all.len())
}

/// How long a case's calls may take.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The context every case sends.
pub(crate) fn ctx() -> Context {
    Context::new()
        .with("user_id", "u-1")
        .with("project_id", "p-1")
        .with("request_id", "req-123")
}

/// Start a server of the test endpoint at `target` (which names the server).
pub(crate) async fn start_server(
    b: &Backend,
    target: Target,
    recorder: Arc<Recorder<Recorded>>,
) -> ServiceHandle {
    let server_name = target.server.clone().expect("test servers have names");
    let handle = RpcServer::new(b.rpc().await, target)
        .endpoint(test_endpoint(&server_name, recorder))
        .start()
        .await
        .expect("server starts");
    b.settled().await;
    handle
}

/// A transport and a client of `topic` on it.
pub(crate) async fn client(b: &Backend, topic: &str) -> (RpcTransport, RpcClient) {
    let transport = b.rpc().await;
    let client = RpcClient::new(transport.clone(), Target::topic(topic)).timeout(CALL_TIMEOUT);
    (transport, client)
}

/// Start a listener of `targets` (in `pool`) with `endpoint`, configured by `configure`.
pub(crate) async fn start_listener(
    b: &Backend,
    targets: &[&str],
    pool: Option<&str>,
    endpoint: NotificationEndpoint,
    configure: impl FnOnce(NotificationListener) -> NotificationListener,
) -> ServiceHandle {
    let mut listener = NotificationListener::new(b.notifications().await).endpoint(endpoint);
    for topic in targets {
        listener = listener.target(Target::topic(*topic));
    }
    if let Some(pool) = pool {
        listener = listener.pool(pool);
    }
    let handle = configure(listener).start().await.expect("listener starts");
    b.settled().await;
    handle
}

//! What RPC servers and notification listeners share: a bounded number of messages in
//! progress (a listener's handlers run on its task until they wait, an RPC server's in tasks
//! of their own), and a graceful stop.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::task::{JoinHandle, JoinSet};

/// A started RPC server or notification listener.
///
/// Dropping it does not stop it: call [`stop`](Self::stop) then [`wait`](Self::wait), or
/// [`shutdown`](Self::shutdown).
#[derive(Debug)]
pub struct ServiceHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ServiceHandle {
    /// Stop taking new messages. Messages already taken are processed to the end (replied
    /// to, acknowledged); the rest stay with the broker.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Wait until every message taken has been processed.
    pub async fn wait(self) {
        if let Err(error) = self.task.await {
            tracing::error!(%error, "service task failed");
        }
    }

    /// [`stop`](Self::stop), then [`wait`](Self::wait).
    pub async fn shutdown(self) {
        self.stop();
        self.wait().await;
    }
}

/// Admits messages one at a time, while fewer than the limit are in progress and no stop was
/// asked for.
pub(crate) struct Gate {
    slots: Arc<Semaphore>,
    stopped: watch::Receiver<bool>,
}

/// Spawn `run(gate)` as a service with at most `limit` messages in progress.
pub(crate) fn spawn<F, Fut>(limit: usize, run: F) -> ServiceHandle
where
    F: FnOnce(Gate) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (stop, stopped) = watch::channel(false);
    let gate = Gate {
        slots: Arc::new(Semaphore::new(limit.max(1))),
        stopped,
    };
    ServiceHandle {
        stop,
        task: tokio::spawn(run(gate)),
    }
}

impl Gate {
    /// Wait for a free slot, then for the next message from `next`; `None` on stop or when
    /// the source ends. The slot is released when the returned permit drops.
    pub(crate) async fn admit<T, Fut>(
        &mut self,
        next: impl FnOnce() -> Fut,
    ) -> Option<(T, OwnedSemaphorePermit)>
    where
        Fut: Future<Output = Option<T>>,
    {
        // A free slot is the common case: taken without a wait that watches for the stop.
        let slot = match self.slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(TryAcquireError::NoPermits) => self
                .until_stopped(self.slots.clone().acquire_owned())
                .await?
                .ok()?,
            Err(TryAcquireError::Closed) => return None,
        };
        let item = self.until_stopped(next()).await??;
        Some((item, slot))
    }

    /// Run `future` unless a stop comes first.
    pub(crate) async fn until_stopped<F: Future>(&mut self, future: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            _ = self.stopped.wait_for(|stop| *stop) => None,
            output = future => Some(output),
        }
    }
}

/// The messages a service is handling.
///
/// With [`run_here_first`](Self::run_here_first), each is run on the service's own task first:
/// one that finishes without waiting (a notification handler that counts or logs, the common
/// case) then costs no task of its own, no spawn and no other worker woken, about a
/// microsecond per message. One that waits goes on in a task of its own while the service
/// takes the next message. A handler that computes for long without waiting would hold up the
/// next message, and keep handlers from running in parallel on other workers: after such a
/// run, the next messages get their own task at once.
pub(crate) struct Running {
    tasks: JoinSet<()>,
    /// How many more messages go straight to a task of their own.
    spawn_next: u32,
    run_here: bool,
}

/// An inline run longer than this (20 to 50 times a handler that only counts or logs) sends
/// the next [`SPAWN_AFTER_LONG_RUN`] messages straight to tasks of their own. The process
/// being descheduled also counts; it costs no more than spawning those messages.
const LONG_RUN: Duration = Duration::from_micros(100);
const SPAWN_AFTER_LONG_RUN: u32 = 100;

impl Running {
    /// Each message's handler runs here until it first waits.
    pub(crate) fn run_here_first() -> Self {
        Running {
            tasks: JoinSet::new(),
            spawn_next: 0,
            run_here: true,
        }
    }

    /// Each message's handler runs in a task of its own from the start.
    pub(crate) fn in_tasks() -> Self {
        Running {
            run_here: false,
            ..Running::run_here_first()
        }
    }

    /// Start handling a message: run `handling` here until it waits, then in its own task.
    ///
    /// Boxed by the caller, so that neither this call nor tokio moves the handler's state
    /// (kilobytes) again: only a pointer.
    pub(crate) async fn start<F>(&mut self, mut handling: Pin<Box<F>>)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        while self.tasks.try_join_next().is_some() {}
        if !self.run_here {
            self.tasks.spawn(handling);
            return;
        }
        if self.spawn_next > 0 {
            self.spawn_next -= 1;
            self.tasks.spawn(handling);
            return;
        }
        let started = Instant::now();
        let first = futures_util::poll!(AssertUnwindSafe(&mut handling).catch_unwind());
        if started.elapsed() > LONG_RUN {
            self.spawn_next = SPAWN_AFTER_LONG_RUN;
        }
        match first {
            std::task::Poll::Pending => {
                self.tasks.spawn(handling);
            }
            std::task::Poll::Ready(Ok(())) => {}
            // As a handler's own task would end: the service goes on with the next message.
            std::task::Poll::Ready(Err(_)) => tracing::error!("a message handler panicked"),
        }
    }

    /// Wait until every message started is handled.
    pub(crate) async fn finish(&mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A handler that counts its run in `ran` without waiting.
    fn counting(ran: &Arc<AtomicUsize>) -> Pin<Box<impl Future<Output = ()> + Send + 'static>> {
        let ran = ran.clone();
        Box::pin(async move {
            ran.fetch_add(1, Ordering::SeqCst);
        })
    }

    #[tokio::test]
    async fn a_handler_that_does_not_wait_runs_without_a_task() {
        let mut running = Running::run_here_first();
        let ran = Arc::new(AtomicUsize::new(0));
        running.start(counting(&ran)).await;
        assert_eq!(ran.load(Ordering::SeqCst), 1, "ran before start returned");
        assert!(running.tasks.is_empty());
    }

    #[tokio::test]
    async fn a_handler_that_waits_goes_on_in_its_own_task() {
        let mut running = Running::run_here_first();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let done = Arc::new(AtomicUsize::new(0));
        let counter = done.clone();
        running
            .start(Box::pin(async move {
                released.await.ok();
                counter.fetch_add(1, Ordering::SeqCst);
            }))
            .await;
        assert_eq!(running.tasks.len(), 1);
        assert_eq!(done.load(Ordering::SeqCst), 0);
        release.send(()).unwrap();
        running.finish().await;
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn after_a_long_run_the_next_handlers_get_their_own_task_at_once() {
        let mut running = Running::run_here_first();
        running
            .start(Box::pin(async { std::thread::sleep(LONG_RUN * 2) }))
            .await;
        assert_eq!(running.spawn_next, SPAWN_AFTER_LONG_RUN);
        running.start(Box::pin(async {})).await;
        assert_eq!(running.tasks.len(), 1, "spawned, not run here");
        assert_eq!(running.spawn_next, SPAWN_AFTER_LONG_RUN - 1);
        running.finish().await;
    }

    #[tokio::test]
    async fn in_tasks_every_handler_gets_its_own_task() {
        let mut running = Running::in_tasks();
        running.start(Box::pin(async {})).await;
        assert_eq!(running.tasks.len(), 1);
        running.finish().await;
    }

    #[tokio::test]
    async fn a_handler_that_panics_here_does_not_end_the_service() {
        let mut running = Running::run_here_first();
        running
            .start(Box::pin(async { panic!("handler bug") }))
            .await;
        let ran = Arc::new(AtomicUsize::new(0));
        running.start(counting(&ran)).await;
        // Here or in a task (a panic's report can take long enough to count as a long run).
        running.finish().await;
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }
}

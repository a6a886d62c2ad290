//! What RPC servers and notification listeners share: a bounded number of messages in
//! progress, and a graceful stop.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::task::JoinHandle;

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

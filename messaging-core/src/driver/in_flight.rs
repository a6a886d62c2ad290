//! In-flight accounting: how many deliveries a source handed out and the application has not
//! settled yet, so that a closing source keeps its connection or link until they are.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Counts the deliveries handed out and not yet settled. Clones share one count.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use messaging_core::driver::InFlight;
/// let in_flight = InFlight::default();
/// let guard = in_flight.track(); // with a delivery handed out
/// assert_eq!(in_flight.count(), 1);
/// drop(guard); // settled (or given up)
/// in_flight.wait_idle().await;
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct InFlight(Arc<Counter>);

#[derive(Debug, Default)]
struct Counter {
    count: AtomicUsize,
    idle: Notify,
}

/// Held with one delivery until it is settled; dropping it ends the delivery's count.
#[derive(Debug)]
#[must_use = "the delivery counts as in flight only while its guard lives"]
pub struct InFlightGuard(Arc<Counter>);

impl InFlight {
    /// Count one more delivery until the returned guard is dropped.
    pub fn track(&self) -> InFlightGuard {
        self.0.count.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.0.clone())
    }

    /// How many deliveries are in flight now.
    pub fn count(&self) -> usize {
        self.0.count.load(Ordering::Acquire)
    }

    /// Wait until no delivery is in flight (at once if none is).
    pub async fn wait_idle(&self) {
        loop {
            let idle = self.0.idle.notified();
            if self.count() == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn wait_idle_returns_when_the_last_guard_drops() {
        let in_flight = InFlight::default();
        let (one, two) = (in_flight.track(), in_flight.track());
        let waiter = tokio::spawn({
            let in_flight = in_flight.clone();
            async move { in_flight.wait_idle().await }
        });
        drop(one);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "one delivery is still in flight");
        drop(two);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("idle once both are settled")
            .expect("waiter task");
        assert_eq!(in_flight.count(), 0);
    }
}

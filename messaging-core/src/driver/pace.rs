//! Pacing a driver's batched sends (settlements, mostly).

use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Lets a batch go at most once per period: the first send after a quiet spell goes at once,
/// and under load what gathered during the period goes together.
///
/// Drivers settle deliveries this way: one frame acknowledging a run of deliveries costs the
/// client and the broker about what one acknowledging a single delivery does.
///
/// ```
/// use std::time::Duration;
/// use messaging_core::driver::Pace;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut pace = Pace::new(Duration::from_millis(1));
/// let mut gathered = vec![1, 2];
/// pace.ready().await; // at once: nothing was sent yet
/// let batch = std::mem::take(&mut gathered);
/// pace.sent();
/// gathered.push(3);
/// pace.ready().await; // a millisecond after the last send
/// # assert_eq!(batch, [1, 2]);
/// # }
/// ```
#[derive(Debug)]
pub struct Pace {
    period: Duration,
    /// When the next send may go.
    next: Instant,
    /// Armed only while a send waits: a timer reset on every send would wake the task once
    /// more a period later, for nothing.
    timer: Pin<Box<Sleep>>,
}

impl Pace {
    /// At most one send per `period`.
    pub fn new(period: Duration) -> Self {
        let now = Instant::now();
        Self {
            period,
            next: now,
            timer: Box::pin(tokio::time::sleep_until(now)),
        }
    }

    /// Wait until the next send may go. Cancel-safe.
    pub async fn ready(&mut self) {
        if Instant::now() >= self.next {
            return;
        }
        if self.timer.deadline() != self.next {
            self.timer.as_mut().reset(self.next);
        }
        self.timer.as_mut().await;
    }

    /// A send went: the next waits for the period.
    pub fn sent(&mut self) {
        self.next = Instant::now() + self.period;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_goes_at_once_the_next_after_the_period() {
        let period = Duration::from_millis(20);
        let mut pace = Pace::new(period);
        let began = Instant::now();
        pace.ready().await;
        assert!(began.elapsed() < period, "the first waited");
        pace.sent();
        let sent = Instant::now();
        pace.ready().await;
        assert!(sent.elapsed() >= period);
        // A wait cut short keeps the same deadline.
        pace.sent();
        let sent = Instant::now();
        let cut = tokio::time::timeout(Duration::from_millis(1), pace.ready()).await;
        assert!(cut.is_err());
        pace.ready().await;
        assert!(sent.elapsed() >= period);
    }
}

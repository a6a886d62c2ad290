//! Settling a receiver link's deliveries in batches.
//!
//! Handlers settle deliveries one at a time, from many tasks. Sent as they come, each would be
//! a disposition frame of its own, which fe2o3 encodes and the peer parses: with 16 senders on
//! RabbitMQ that was about 40 % of a raw fe2o3 listener's CPU (0.022 ms per notification
//! settling each, 0.013 settling in runs). Instead each settlement is handed to the task that
//! owns the link, which sends whatever has gathered when it gets to them as one disposition per
//! run of consecutive delivery ids. Sends are paced: one at most every [`PACE`], so at light
//! load a settlement goes out at once, and under load those of the last millisecond go out
//! together.

use std::time::Duration;

use fe2o3_amqp::link::delivery::DeliveryInfo;
use fe2o3_amqp::link::DispositionError;
use fe2o3_amqp::Receiver;
use messaging_core::driver::Pace;
use tokio::sync::mpsc;

/// The most settlements sent in one go.
const BATCH: usize = 256;

/// The least time between two sends of settlements.
pub(crate) const PACE: Duration = Duration::from_millis(1);

/// How a delivery is settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Disposal {
    /// `accepted`: done with.
    Accept,
    /// `released`: the peer may deliver it again.
    Release,
}

/// Settles deliveries (`I`: what names one) of one attached link. Cheap to clone; fails once
/// that link's task has let go of it (the link is gone, and the peer delivers again what was
/// not settled).
#[derive(Debug)]
pub(crate) struct Settler<I = DeliveryInfo>(mpsc::UnboundedSender<(I, Disposal)>);

impl<I> Clone for Settler<I> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<I> Settler<I> {
    /// Hand a settlement to the link's task; false if the link is gone.
    pub fn settle(&self, delivery: I, disposal: Disposal) -> bool {
        self.0.send((delivery, disposal)).is_ok()
    }
}

/// The link task's end: gathers settlements and sends them on the link.
pub(crate) struct Settlements<I = DeliveryInfo> {
    rx: mpsc::UnboundedReceiver<(I, Disposal)>,
    /// Kept to hand out while the link delivers; dropped once it stops delivering, so that
    /// the queue ends when the last delivery is settled or dropped.
    tx: Option<mpsc::UnboundedSender<(I, Disposal)>>,
    gathered: Vec<(I, Disposal)>,
    pace: Pace,
}

impl<I> Settlements<I> {
    /// An empty queue, handing out settlers.
    pub fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            rx,
            tx: Some(tx),
            gathered: Vec::new(),
            pace: Pace::new(PACE),
        }
    }

    /// What settles the link's deliveries. Once [`Self::stop_handing_out`] was called, one
    /// whose settlements fail at once.
    pub fn settler(&self) -> Settler<I> {
        Settler(match &self.tx {
            Some(tx) => tx.clone(),
            None => mpsc::unbounded_channel().0,
        })
    }

    /// No more deliveries come: the queue ends once every settler handed out is gone.
    pub fn stop_handing_out(&mut self) {
        self.tx = None;
    }

    /// Wait for settlements, and for the pace; false once the queue ended (nothing gathered).
    /// Cancel-safe: what was gathered stays for the next call or [`Self::send`].
    pub async fn gather(&mut self) -> bool {
        if self.gathered.is_empty() && self.rx.recv_many(&mut self.gathered, BATCH).await == 0 {
            return false;
        }
        self.pace.ready().await;
        while self.gathered.len() < BATCH {
            match self.rx.try_recv() {
                Ok(settlement) => self.gathered.push(settlement),
                Err(_) => break,
            }
        }
        true
    }

    /// Take what is queued now without waiting, and stop taking more: settlements handed
    /// over later fail.
    pub fn close(&mut self) {
        self.rx.close();
        while let Ok(settlement) = self.rx.try_recv() {
            self.gathered.push(settlement);
        }
    }

    /// Take what was gathered, split into the deliveries to accept and those to release; the
    /// next send waits for the pace.
    fn take(&mut self) -> (Vec<I>, Vec<I>) {
        self.pace.sent();
        let mut accepted = Vec::with_capacity(self.gathered.len());
        let mut released = Vec::new();
        for (delivery, disposal) in self.gathered.drain(..) {
            match disposal {
                Disposal::Accept => accepted.push(delivery),
                Disposal::Release => released.push(delivery),
            }
        }
        (accepted, released)
    }
}

impl Settlements {
    /// Send what was gathered: one disposition per outcome and run of consecutive ids.
    pub async fn send(&mut self, receiver: &Receiver) -> Result<(), DispositionError> {
        let (accepted, released) = self.take();
        if !accepted.is_empty() {
            receiver.accept_all(accepted).await?;
        }
        if !released.is_empty() {
            receiver.release_all(released).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;

    #[tokio::test]
    async fn settlements_gathered_meanwhile_go_out_together() {
        let mut settlements = Settlements::<u32>::new();
        let settler = settlements.settler();
        for id in 0..5 {
            let disposal = if id == 3 {
                Disposal::Release
            } else {
                Disposal::Accept
            };
            assert!(settler.settle(id, disposal));
        }
        assert!(settlements.gather().await);
        assert_eq!(settlements.take(), (vec![0, 1, 2, 4], vec![3]));
        assert_eq!(settlements.take(), (vec![], vec![]));
    }

    #[tokio::test]
    async fn a_send_waits_for_the_pace_after_the_last_one() {
        let mut settlements = Settlements::<u32>::new();
        let settler = settlements.settler();
        settler.settle(1, Disposal::Accept);
        assert!(settlements.gather().await);
        settlements.take();
        let taken = Instant::now();
        settler.settle(2, Disposal::Accept);
        assert!(settlements.gather().await);
        assert!(taken.elapsed() >= PACE);
        // A cancelled gather keeps what it took, and the next one goes on from there.
        settlements.take();
        let taken = Instant::now();
        settler.settle(3, Disposal::Accept);
        let cancelled = tokio::time::timeout(Duration::ZERO, settlements.gather()).await;
        assert!(cancelled.is_err());
        settler.settle(4, Disposal::Accept);
        assert!(settlements.gather().await);
        assert!(taken.elapsed() >= PACE);
        assert_eq!(settlements.take(), (vec![3, 4], vec![]));
    }

    #[tokio::test]
    async fn the_queue_ends_when_the_last_settler_is_gone_after_handing_out_stopped() {
        let mut settlements = Settlements::<u32>::new();
        let settler = settlements.settler();
        settlements.stop_handing_out();
        assert!(!settlements.settler().settle(9, Disposal::Accept));
        assert!(settler.settle(1, Disposal::Accept));
        drop(settler);
        assert!(settlements.gather().await);
        assert_eq!(settlements.take(), (vec![1], vec![]));
        assert!(!settlements.gather().await);
    }

    #[tokio::test]
    async fn after_close_what_was_queued_is_kept_and_later_settlements_fail() {
        let mut settlements = Settlements::<u32>::new();
        let settler = settlements.settler();
        assert!(settler.settle(1, Disposal::Release));
        settlements.close();
        assert!(!settler.settle(2, Disposal::Accept));
        assert_eq!(settlements.take(), (vec![], vec![1]));
    }
}

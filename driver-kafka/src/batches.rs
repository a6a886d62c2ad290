//! Records sent at about the same time, gathered by the driver and handed to librdkafka
//! together so that they share one produce request.
//!
//! A broker pays for every produce request (nisshi: about 200 µs of CPU each, measured against
//! 40 µs per record when records share requests), so records sent together should travel
//! together. librdkafka's linger waits a fixed time for that. With 16 senders each awaiting
//! its delivery report, every round then paid the whole linger (1 ms) although all 16 records
//! were there 0.2 ms after the last reports: 9,600 notifications/s, where handing the batch
//! over as soon as the 16th arrived gave 24,000/s in the same minute.
//!
//! So the driver gathers, and hands a batch over as soon as nothing more is expected for it:
//! - nothing handed over is in flight, and every sender released by the last reports has sent
//!   again (a sender that got its report is the one likely to send next: a loop, or a service's
//!   handlers each emitting one notification per request);
//! - or the batch holds `most` records;
//! - or its first record has waited `linger`: a released sender that sends no more, or a new
//!   sender arriving, never waits longer than that.
//!
//! A send with nothing in flight and nothing gathered therefore goes at once. Released senders
//! that are done (the end of a burst) cost the batch after them one linger at most, as a fixed
//! linger did every time.
//!
//! librdkafka sends a batch handed over at once, in one request: see `producer::expedite`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Where a gathered record waits, and what it needs to be produced later.
pub(crate) struct Held<R> {
    /// The record's topic.
    pub topic: Arc<str>,
    /// The record's value.
    pub payload: Arc<Vec<u8>>,
    /// Hears the record's delivery report.
    pub report: R,
}

/// Records gathering for the next produce request, and the state that decides when it goes.
pub(crate) struct Batches<R> {
    state: Mutex<State<R>>,
    /// Longest a gathered record waits.
    linger: Duration,
    /// A batch of this many goes at once.
    most: usize,
}

struct State<R> {
    /// The batch being gathered.
    held: Vec<Held<R>>,
    /// Number of the batch being gathered (each hand-over starts the next).
    batch: u64,
    /// Records handed over whose senders have not heard their report yet.
    in_flight: usize,
    /// Senders that heard their report since the last hand-over: they may send again.
    released: usize,
}

impl<R> State<R> {
    /// Whether the batch should go now.
    fn complete(&self, most: usize) -> bool {
        let expected = self.in_flight == 0 && self.held.len() >= self.released;
        !self.held.is_empty() && (expected || self.held.len() >= most)
    }

    /// Take the batch for a hand-over, and start the next.
    fn take(&mut self) -> Vec<Held<R>> {
        self.batch += 1;
        self.released = 0;
        self.in_flight += self.held.len();
        std::mem::take(&mut self.held)
    }
}

impl<R> Batches<R> {
    /// Batches of at most `most` records, none waiting longer than `linger`.
    pub fn new(linger: Duration, most: usize) -> Self {
        Self {
            state: Mutex::new(State {
                held: Vec::new(),
                batch: 0,
                in_flight: 0,
                released: 0,
            }),
            linger,
            most: most.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<R>> {
        // Nothing panics while holding it; a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gather `held`. Returns its place and the records to hand over now (its own among them)
    /// if this completed the batch.
    pub fn offer(&self, held: Held<R>) -> (Place<'_, R>, Vec<Held<R>>) {
        let mut state = self.lock();
        let first = state.held.is_empty();
        state.held.push(held);
        let place = Place {
            batches: self,
            batch: state.batch,
            deadline: first.then(|| Instant::now() + self.linger),
            reported: false,
        };
        let now = if state.complete(self.most) {
            state.take()
        } else {
            Vec::new()
        };
        (place, now)
    }

    /// Everything gathered, to hand over before the producer flushes.
    pub fn take_all(&self) -> Vec<Held<R>> {
        self.lock().take()
    }
}

/// A sender's record in [`Batches`], from gathering until its sender heard the report.
pub(crate) struct Place<'a, R> {
    batches: &'a Batches<R>,
    /// The batch it was gathered in.
    batch: u64,
    /// When its batch must go: set for the record that started the batch, which keeps time for
    /// all of it.
    deadline: Option<Instant>,
    reported: bool,
}

impl<R> Place<'_, R> {
    /// When this record's batch must be handed over at the latest, if it keeps its time.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The batch's time is up: the records to hand over, unless it went already.
    pub fn expired(&mut self) -> Vec<Held<R>> {
        self.deadline = None;
        let mut state = self.batches.lock();
        if state.batch == self.batch {
            state.take()
        } else {
            Vec::new()
        }
    }

    /// The sender heard its report and may send again: the records to hand over, if the
    /// gathered batch was waiting only for this.
    pub fn reported(&mut self) -> Vec<Held<R>> {
        self.reported = true;
        let mut state = self.batches.lock();
        state.in_flight -= 1;
        state.released += 1;
        if state.complete(self.batches.most) {
            state.take()
        } else {
            Vec::new()
        }
    }

    /// The sender gives up without hearing its report (a cancelled send): the records to hand
    /// over, its own among them if it was still gathered. A record offered may be sent even
    /// if its sender went away, as with any client; it is never kept back.
    pub fn abandon(&mut self) -> Vec<Held<R>> {
        if self.reported {
            return Vec::new();
        }
        self.reported = true;
        let mut state = self.batches.lock();
        let now = if state.batch == self.batch {
            state.take()
        } else {
            Vec::new()
        };
        // Counted in flight by the hand-over, but nobody will hear its report.
        state.in_flight -= 1;
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(n: u32) -> Held<u32> {
        Held {
            topic: "t".into(),
            payload: Arc::default(),
            report: n,
        }
    }

    fn reports(records: &[Held<u32>]) -> Vec<u32> {
        records.iter().map(|h| h.report).collect()
    }

    #[test]
    fn a_send_alone_goes_at_once() {
        let batches = Batches::new(Duration::from_millis(1), 100);
        let (mut place, now) = batches.offer(held(1));
        assert_eq!(reports(&now), [1]);
        assert!(place.reported().is_empty());
        let (_, now) = batches.offer(held(2));
        assert_eq!(reports(&now), [2], "a sender alone is never held back");
    }

    #[test]
    fn sends_meanwhile_go_together_once_the_released_senders_are_back() {
        let batches = Batches::new(Duration::from_millis(1), 100);
        let (mut a, now) = batches.offer(held(1));
        assert_eq!(reports(&now), [1]);
        // Two more while the first is in flight: they wait.
        let (mut b, now) = batches.offer(held(2));
        assert!(now.is_empty());
        assert!(
            b.deadline().is_some(),
            "the first of a batch keeps its time"
        );
        let (mut c, now) = batches.offer(held(3));
        assert!(now.is_empty());
        assert!(c.deadline().is_none());
        // The first's report releases one sender, and two are gathered: they go.
        assert_eq!(reports(&a.reported()), [2, 3]);
        // Both reports back: two released senders; the batch waits for the second.
        let (_, now) = batches.offer(held(1));
        assert!(now.is_empty(), "still one in flight");
        assert!(b.reported().is_empty());
        assert!(
            c.reported().is_empty(),
            "one released sender has not sent again yet"
        );
        let (_, now) = batches.offer(held(4));
        assert_eq!(reports(&now), [1, 4]);
    }

    #[test]
    fn a_full_batch_goes_at_once() {
        let batches = Batches::new(Duration::from_secs(60), 2);
        let (_a, now) = batches.offer(held(1));
        assert_eq!(now.len(), 1);
        let (_b, now) = batches.offer(held(2));
        assert!(now.is_empty());
        let (_c, now) = batches.offer(held(3));
        assert_eq!(reports(&now), [2, 3]);
    }

    #[test]
    fn a_batch_goes_when_its_time_is_up() {
        let batches = Batches::new(Duration::from_millis(1), 100);
        let (_a, _) = batches.offer(held(1));
        let (mut b, now) = batches.offer(held(2));
        assert!(now.is_empty());
        let (mut c, _) = batches.offer(held(3));
        assert_eq!(reports(&b.expired()), [2, 3]);
        assert!(b.expired().is_empty(), "it went already");
        let (_d, now) = batches.offer(held(4));
        assert!(now.is_empty());
        assert!(c.expired().is_empty(), "a later batch keeps its own time");
    }

    #[test]
    fn an_abandoned_record_is_not_kept_back_and_not_counted() {
        let batches = Batches::new(Duration::from_secs(60), 100);
        let (mut a, _) = batches.offer(held(1));
        let (mut b, now) = batches.offer(held(2));
        assert!(now.is_empty());
        assert_eq!(
            reports(&b.abandon()),
            [2],
            "a gathered record leaves with its sender"
        );
        // a is still in flight, b's report will not be heard: one report completes the round.
        let (_c, now) = batches.offer(held(3));
        assert!(now.is_empty());
        assert_eq!(reports(&a.reported()), [3]);
        assert!(
            a.abandon().is_empty(),
            "a heard its report: nothing to give up"
        );
    }
}

//! Which offsets a listener may commit: per partition, the contiguous low-water mark of the
//! records its endpoints have handled.
//!
//! Records of a partition are delivered in offset order but may be handled in any order
//! (endpoints run concurrently, requeues take a round trip). A partition's commit point is the
//! offset of its first delivered record that is not handled yet, or the offset after the last
//! delivered one when all are handled: committing it never skips an unhandled record, so a
//! restarted or rebalanced consumer resumes exactly there. With `enable_auto_commit=true`
//! (oslo's option) the commit point is the offset after the last *delivered* record instead:
//! what was delivered but not handled is not delivered again (at most once for it).
//!
//! Every assignment of a partition gets a new generation: settlements of records delivered
//! under an older assignment (the partition was revoked meanwhile) are ignored, since the new
//! owner reads those records again from the last commit.
//!
//! Topic names are shared (`Arc<str>`) and looked up by `&str`: tracking a record allocates
//! nothing but its entry in the partition's outstanding map.

use std::collections::BTreeMap;
use std::sync::Arc;

use messaging_core::driver::FastHashMap as FastMap;

/// A topic and partition.
pub(crate) type TopicPartition = (Arc<str>, i32);

/// Identifies one delivered record for its settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordId {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub generation: u64,
}

/// Progress of one partition within one assignment.
#[derive(Debug)]
struct PartitionProgress {
    /// The topic's name, shared with the records delivered from it.
    topic: Arc<str>,
    generation: u64,
    /// The offset to commit when nothing is outstanding: where consumption started, then
    /// the offset after the last delivered record. `None` until known.
    next: Option<i64>,
    /// Delivered records not yet committable, with whether they were handled. The first
    /// entry, if any, is always unhandled.
    outstanding: BTreeMap<i64, bool>,
    /// The last offset committed (or being committed) for this partition.
    committed: Option<i64>,
}

impl PartitionProgress {
    fn commit_point(&self, on_delivery: bool) -> Option<i64> {
        match on_delivery {
            true => self.next,
            false => self.outstanding.keys().next().copied().or(self.next),
        }
    }

    fn unhandled(&self) -> usize {
        self.outstanding
            .values()
            .filter(|handled| !**handled)
            .count()
    }
}

/// The handled offsets of every assigned partition.
#[derive(Debug, Default)]
pub(crate) struct Offsets {
    generations: u64,
    /// Partitions by topic, then partition number.
    topics: FastMap<Arc<str>, FastMap<i32, PartitionProgress>>,
    unhandled: usize,
    /// Commit records once delivered, handled or not (`enable_auto_commit=true`).
    commit_on_delivery: bool,
}

impl Offsets {
    /// Tracking that commits records once handled (`on_delivery = false`, at least once) or
    /// once delivered (`true`, oslo's `enable_auto_commit`).
    pub fn new(commit_on_delivery: bool) -> Self {
        Self {
            commit_on_delivery,
            ..Self::default()
        }
    }

    fn progress(&mut self, topic: &str, partition: i32) -> Option<&mut PartitionProgress> {
        self.topics.get_mut(topic)?.get_mut(&partition)
    }

    /// A partition was assigned; consumption starts at `start` (if known) and `committed` is
    /// what the group has committed for it (if known).
    pub fn assign(
        &mut self,
        topic: &str,
        partition: i32,
        start: Option<i64>,
        committed: Option<i64>,
    ) {
        self.generations += 1;
        let generation = self.generations;
        let topic: Arc<str> = match self.topics.get_key_value(topic) {
            Some((shared, _)) => shared.clone(),
            None => topic.into(),
        };
        let progress = PartitionProgress {
            topic: topic.clone(),
            generation,
            next: start,
            outstanding: BTreeMap::new(),
            committed,
        };
        let partitions = self.topics.entry(topic).or_default();
        if let Some(old) = partitions.insert(partition, progress) {
            self.unhandled -= old.unhandled();
        }
    }

    /// A partition was revoked: what was delivered under its assignment no longer counts.
    pub fn revoke(&mut self, topic: &str, partition: i32) {
        let Some(partitions) = self.topics.get_mut(topic) else {
            return;
        };
        if let Some(old) = partitions.remove(&partition) {
            self.unhandled -= old.unhandled();
        }
        if partitions.is_empty() {
            self.topics.remove(topic);
        }
    }

    /// A record was delivered to the listener. `None` if its partition is not assigned (a
    /// stale record: drop it, the partition's owner gets it).
    pub fn delivered(&mut self, topic: &str, partition: i32, offset: i64) -> Option<RecordId> {
        let progress = self.progress(topic, partition)?;
        let fresh = match progress.outstanding.entry(offset) {
            std::collections::btree_map::Entry::Occupied(_) => {
                tracing::debug!(topic, partition, offset, "record delivered twice");
                false
            }
            std::collections::btree_map::Entry::Vacant(entry) => {
                entry.insert(false);
                true
            }
        };
        if progress.next.is_none_or(|next| next <= offset) {
            progress.next = Some(offset + 1);
        }
        let record = RecordId {
            topic: progress.topic.clone(),
            partition,
            offset,
            generation: progress.generation,
        };
        self.unhandled += usize::from(fresh);
        Some(record)
    }

    /// True if `record`'s partition is still assigned under the same assignment.
    pub fn is_current(&self, record: &RecordId) -> bool {
        self.topics
            .get(&*record.topic)
            .and_then(|partitions| partitions.get(&record.partition))
            .is_some_and(|p| p.generation == record.generation)
    }

    /// The endpoints are done with `record`. Returns false if it was ignored (revoked
    /// partition, or already handled).
    pub fn handled(&mut self, record: &RecordId) -> bool {
        let Some(progress) = self
            .progress(&record.topic, record.partition)
            .filter(|p| p.generation == record.generation)
        else {
            return false;
        };
        match progress.outstanding.get_mut(&record.offset) {
            Some(handled) if !*handled => *handled = true,
            _ => return false,
        }
        while let Some(entry) = progress.outstanding.first_entry() {
            if !*entry.get() {
                break;
            }
            entry.remove();
        }
        self.unhandled -= 1;
        true
    }

    /// How many delivered records are not handled yet.
    pub fn unhandled(&self) -> usize {
        self.unhandled
    }

    /// The commit point of every partition that moved past its last commit; they are
    /// recorded as committed.
    pub fn take_commits(&mut self) -> Vec<(TopicPartition, i64)> {
        self.take_commits_where(|_, _| true)
    }

    /// As [`take_commits`](Self::take_commits), for the partitions `filter` accepts.
    pub fn take_commits_where(
        &mut self,
        mut filter: impl FnMut(&str, i32) -> bool,
    ) -> Vec<(TopicPartition, i64)> {
        let mut commits = Vec::new();
        for (topic, partitions) in &mut self.topics {
            for (&partition, progress) in partitions.iter_mut() {
                if !filter(topic, partition) {
                    continue;
                }
                if let Some(point) = progress.commit_point(self.commit_on_delivery) {
                    if progress.committed.is_none_or(|c| c < point) {
                        progress.committed = Some(point);
                        commits.push(((topic.clone(), partition), point));
                    }
                }
            }
        }
        commits.sort();
        commits
    }

    /// A commit of `offset` for a partition failed: commit it again next time.
    pub fn commit_failed(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(progress) = self.progress(topic, partition) {
            if progress.committed == Some(offset) {
                progress.committed = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(start: i64) -> Offsets {
        let mut offsets = Offsets::new(false);
        offsets.assign("t", 0, Some(start), Some(start));
        offsets
    }

    fn deliver(offsets: &mut Offsets, range: std::ops::Range<i64>) -> Vec<RecordId> {
        range
            .map(|o| offsets.delivered("t", 0, o).expect("assigned"))
            .collect()
    }

    #[test]
    fn nothing_to_commit_until_something_is_handled() {
        let mut offsets = tracker(10);
        let records = deliver(&mut offsets, 10..13);
        assert_eq!(offsets.take_commits(), []);
        assert_eq!(offsets.unhandled(), 3);
        assert!(offsets.handled(&records[0]));
        assert_eq!(offsets.take_commits(), [(("t".into(), 0), 11)]);
        assert_eq!(offsets.take_commits(), [], "committed once");
    }

    #[test]
    fn out_of_order_acks_never_commit_past_an_unhandled_record() {
        let mut offsets = tracker(0);
        let r = deliver(&mut offsets, 0..5);
        for i in [4, 2, 3] {
            assert!(offsets.handled(&r[i]));
            assert_eq!(offsets.take_commits(), [], "offset 0 is still unhandled");
        }
        assert!(offsets.handled(&r[1]));
        assert_eq!(offsets.take_commits(), []);
        assert!(offsets.handled(&r[0]));
        assert_eq!(
            offsets.take_commits(),
            [(("t".into(), 0), 5)],
            "all five at once"
        );
        assert_eq!(offsets.unhandled(), 0);
    }

    #[test]
    fn the_watermark_stops_at_the_first_gap_in_handling() {
        let mut offsets = tracker(100);
        let r = deliver(&mut offsets, 100..110);
        for i in [0, 1, 2, 5, 6, 9] {
            offsets.handled(&r[i]);
        }
        assert_eq!(offsets.take_commits(), [(("t".into(), 0), 103)]);
        offsets.handled(&r[3]);
        assert_eq!(offsets.take_commits(), [(("t".into(), 0), 104)]);
        offsets.handled(&r[4]);
        assert_eq!(offsets.take_commits(), [(("t".into(), 0), 107)]);
        for i in [7, 8] {
            offsets.handled(&r[i]);
        }
        assert_eq!(offsets.take_commits(), [(("t".into(), 0), 110)]);
    }

    #[test]
    fn offset_gaps_in_the_log_are_skipped() {
        // Compacted logs and transaction markers leave holes between delivered offsets.
        let mut offsets = tracker(0);
        let a = offsets.delivered("t", 0, 0).unwrap();
        let b = offsets.delivered("t", 0, 5).unwrap();
        offsets.handled(&a);
        assert_eq!(offsets.take_commits(), [(("t".into(), 0), 5)]);
        offsets.handled(&b);
        assert_eq!(offsets.take_commits(), [(("t".into(), 0), 6)]);
    }

    #[test]
    fn double_acks_are_ignored() {
        let mut offsets = tracker(0);
        let r = deliver(&mut offsets, 0..2);
        assert!(offsets.handled(&r[1]));
        assert!(!offsets.handled(&r[1]));
        assert_eq!(offsets.unhandled(), 1);
    }

    #[test]
    fn a_new_assignment_ignores_settlements_of_the_old_one() {
        let mut offsets = tracker(0);
        let old = deliver(&mut offsets, 0..3);
        offsets.revoke("t", 0);
        assert!(!offsets.is_current(&old[0]));
        assert!(!offsets.handled(&old[0]), "revoked");
        assert_eq!(offsets.delivered("t", 0, 3), None, "not assigned");
        offsets.assign("t", 0, Some(0), Some(0));
        assert!(!offsets.handled(&old[1]), "an older generation");
        let new = deliver(&mut offsets, 0..3);
        assert!(offsets.is_current(&new[0]));
        assert!(offsets.handled(&new[0]));
        assert_eq!(offsets.take_commits(), [(("t".into(), 0), 1)]);
    }

    #[test]
    fn partitions_are_independent() {
        let mut offsets = Offsets::new(false);
        offsets.assign("a", 0, Some(0), None);
        offsets.assign("a", 1, Some(7), Some(7));
        offsets.assign("b", 0, None, None);
        // A start nobody committed yet is committed right away; an unknown one is not.
        assert_eq!(offsets.take_commits(), [(("a".into(), 0), 0)]);
        let a1 = offsets.delivered("a", 1, 7).unwrap();
        let b0 = offsets.delivered("b", 0, 42).unwrap();
        offsets.handled(&b0);
        assert_eq!(offsets.take_commits(), [(("b".into(), 0), 43)]);
        offsets.handled(&a1);
        assert_eq!(
            offsets.take_commits_where(|topic, _| topic == "a"),
            [(("a".into(), 1), 8)]
        );
    }

    #[test]
    fn failed_commits_are_retried() {
        let mut offsets = tracker(0);
        let r = deliver(&mut offsets, 0..1);
        offsets.handled(&r[0]);
        assert_eq!(offsets.take_commits(), [(("t".into(), 0), 1)]);
        offsets.commit_failed("t", 0, 1);
        assert_eq!(offsets.take_commits(), [(("t".into(), 0), 1)]);
    }

    #[test]
    fn unhandled_counts_follow_revocations() {
        let mut offsets = tracker(0);
        deliver(&mut offsets, 0..4);
        assert_eq!(offsets.unhandled(), 4);
        offsets.revoke("t", 0);
        assert_eq!(offsets.unhandled(), 0);
    }

    #[test]
    fn auto_commit_commits_what_was_delivered() {
        let mut offsets = Offsets::new(true);
        offsets.assign("t", 0, Some(0), Some(0));
        let r = deliver(&mut offsets, 0..3);
        assert_eq!(offsets.unhandled(), 3, "flow control still counts them");
        assert_eq!(
            offsets.take_commits(),
            [(("t".into(), 0), 3)],
            "delivered, not handled"
        );
        offsets.handled(&r[1]);
        assert_eq!(offsets.unhandled(), 2);
        assert_eq!(offsets.take_commits(), []);
    }

    #[test]
    fn records_share_their_topic_name() {
        let mut offsets = tracker(0);
        let r = deliver(&mut offsets, 0..2);
        assert!(Arc::ptr_eq(&r[0].topic, &r[1].topic));
    }
}

//! Reading the feeds into the dirty set, and committing their cursors
//! only past what was handled.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use diffsync::Chain;
use diffsync::feed::Position;

use super::dirty::Dirty;
use super::{TICK, Worker};
use crate::events::{LoopEvent, Subject};
use crate::reconciler::Reconciler;

impl<R: Reconciler> Worker<R> {
    /// Reads the feeds into the dirty set; true when one reported a gap.
    pub(super) fn poll_feeds(&mut self, wait: Duration) -> bool {
        let room = self.cfg.max_pending.saturating_sub(self.dirty.len());
        if room == 0 || self.cfg.feeds.is_empty() {
            std::thread::sleep(wait);
            return false;
        }
        let slice = wait / self.cfg.feeds.len() as u32;
        self.polls += 1;
        let poll = self.polls;
        self.marks.resize_with(self.cfg.feeds.len(), VecDeque::new);
        let mut gap = false;
        let mut failures = Vec::new();
        let mut gaps = Vec::new();
        for (i, feed) in self.cfg.feeds.iter_mut().enumerate() {
            let room = self.cfg.max_pending.saturating_sub(self.dirty.len());
            if room == 0 {
                break;
            }
            let batch = match feed.poll(room.min(self.cfg.max_batch), slice) {
                Ok(b) => b,
                Err(e) => {
                    failures.push((i, Chain(&*e).to_string()));
                    continue;
                }
            };
            if batch.gap {
                gap = true;
                gaps.push(i);
            }
            let now = Instant::now();
            for e in batch.events {
                if e.origin.as_deref() == Some(self.cfg.origin.as_str()) {
                    continue;
                }
                let debounce = self.cfg.debounce;
                self.dirty
                    .entry(e.key.clone())
                    .and_modify(|d| {
                        d.event = e.clone();
                        d.first_poll.get_or_insert(poll);
                    })
                    .or_insert_with(|| Dirty {
                        event: e,
                        since: now,
                        due: now + debounce,
                        backoff: None,
                        first_poll: Some(poll),
                    });
            }
            if let Some(p) = feed.position() {
                let marks = &mut self.marks[i];
                if marks.back().is_none_or(|(_, last)| *last != p) {
                    marks.push_back((poll, p));
                }
            }
        }
        for feed in gaps {
            self.emit(LoopEvent::Gap { feed });
        }
        for (i, error) in failures {
            self.emit(LoopEvent::Failed {
                subject: Subject::Feed(i),
                error,
                retry_in: TICK,
            });
        }
        gap
    }

    /// Persists each feed's cursor at the last position before the oldest
    /// unhandled event of a dirty key (a key that keeps failing holds its
    /// feed's cursor back, so a restart still sees its event). At most
    /// every [`ReconcileLoop::commit_every`], unless `now`.
    pub(super) fn commit_feeds(&mut self, now: bool) {
        if (!now && self.last_commit.elapsed() < self.cfg.commit_every) || self.marks.iter().all(VecDeque::is_empty) {
            return;
        }
        self.last_commit = Instant::now();
        let mut firsts: Vec<u64> = self.dirty.values().filter_map(|d| d.first_poll).collect();
        firsts.sort_unstable();
        firsts.dedup();
        let safe = firsts.first().copied().unwrap_or(u64::MAX);
        let mut failures = Vec::new();
        for (i, marks) in self.marks.iter_mut().enumerate() {
            let Some(upto) = marks.iter().rposition(|(poll, _)| *poll < safe) else {
                compact(marks, &firsts);
                continue;
            };
            match self.cfg.feeds[i].commit_at(&marks[upto].1) {
                Ok(()) => drop(marks.drain(..=upto)),
                Err(e) => failures.push((i, Chain(&*e).to_string())),
            }
            compact(marks, &firsts);
        }
        for (i, error) in failures {
            self.emit(LoopEvent::Failed {
                subject: Subject::Feed(i),
                error,
                retry_in: self.cfg.commit_every,
            });
        }
    }
}
/// Drops the positions a later one makes useless: a position can be
/// committed before the next one only if a dirty key's first poll lies
/// between them (`firsts`: those polls, sorted). What stays is at most one
/// position per dirty key, however long a key keeps failing.
fn compact(marks: &mut VecDeque<(u64, Position)>, firsts: &[u64]) {
    let mut next_poll: Option<u64> = None;
    let mut kept = VecDeque::with_capacity(marks.len());
    while let Some((poll, p)) = marks.pop_back() {
        let needed = next_poll.is_none_or(|next| {
            let i = firsts.partition_point(|&f| f <= poll);
            firsts.get(i).is_some_and(|&f| f <= next)
        });
        if needed {
            next_poll = Some(poll);
            kept.push_front((poll, p));
        }
    }
    *marks = kept;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_keeps_the_last_position_before_each_dirty_keys_first_poll() {
        let mut marks: VecDeque<(u64, Position)> = (1..=10).map(|p| (p, Position::new(p.to_string()))).collect();
        compact(&mut marks, &[3, 7]);
        let kept: Vec<u64> = marks.iter().map(|(p, _)| *p).collect();
        // 2 is committed once the key first seen at poll 3 is handled, 6
        // once the one at 7 is; 10 is the latest. The others add nothing.
        assert_eq!(kept, [2, 6, 10]);
        compact(&mut marks, &[]);
        assert_eq!(marks.len(), 1);
    }
}

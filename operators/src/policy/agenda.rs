//! The policies' agenda: inputs and decisions waiting for their instant, taken in
//! [`Order`].
//!
//! A worker sends its facts in event-time order and its actions in `fired_at` order
//! (but for the odd late one), so each (worker, rank) stream has a queue of its own,
//! appended at the back, and the next entry is the least of the queues' heads: no tree
//! to rebalance for every input. Windows to close come in order too (a window is opened
//! by its first action, and actions come in order), so they have a queue of their own
//! while they do; held actions, which the policies schedule at any instant ahead, and a
//! window out of order are kept in a sorted map.

use std::collections::{BTreeMap, VecDeque};

use super::{CLOSE, Entry, Order};

/// Entries by [`Order`].
#[derive(Default)]
pub(super) struct Agenda {
    /// Per (worker, rank), in order: index `worker * 4 + rank`.
    queues: Vec<VecDeque<(Order, Entry)>>,
    /// Windows to close, scheduled in order (worker `u32::MAX`).
    closes: VecDeque<(Order, Entry)>,
    /// The rest of what the policies scheduled themselves (worker `u32::MAX`).
    scheduled: BTreeMap<Order, Entry>,
}

impl Agenda {
    /// Adds `entry` at `order` (unique: a worker's sequence numbers are).
    pub fn insert(&mut self, order: Order, entry: Entry) {
        let (_, rank, from, _) = order;
        if from == u32::MAX {
            if rank == CLOSE && self.closes.back().is_none_or(|(o, _)| *o < order) {
                self.closes.push_back((order, entry));
            } else {
                self.scheduled.insert(order, entry);
            }
            return;
        }
        let i = from as usize * 4 + usize::from(rank);
        if self.queues.len() <= i {
            self.queues.resize_with(i + 1, VecDeque::new);
        }
        let q = &mut self.queues[i];
        // Nearly always at the back; otherwise after the last entry before it.
        let at = q.iter().rposition(|(o, _)| *o < order).map_or(0, |p| p + 1);
        q.insert(at, (order, entry));
    }

    /// Removes and returns the first entry, if `due` says its order is due.
    pub fn pop_if(&mut self, due: impl FnOnce(&Order) -> bool) -> Option<(Order, Entry)> {
        let mut first = self.scheduled.first_key_value().map(|(o, _)| (*o, None));
        let queues = self.queues.iter().chain(std::iter::once(&self.closes));
        for (i, q) in queues.enumerate() {
            if let Some((o, _)) = q.front()
                && first.is_none_or(|(f, _)| *o < f)
            {
                first = Some((*o, Some(i)));
            }
        }
        let (order, queue) = first?;
        if !due(&order) {
            return None;
        }
        let q = match queue {
            Some(i) if i == self.queues.len() => &mut self.closes,
            Some(i) => &mut self.queues[i],
            None => return self.scheduled.pop_first(),
        };
        let popped = q.pop_front();
        if q.is_empty() {
            // Back to the start of its buffer. A queue's buffer keeps the room of its
            // largest backlog (thousands of entries), and a ring goes round all of it:
            // by the time an entry's slot comes round again it is out of cache. From
            // the start, the next entries reuse the slots just emptied.
            q.clear();
        }
        popped
    }

    /// Visits entries `due` says are due, in no particular order: up to `limit` from
    /// the head of each queue (and of the scheduled ones).
    pub fn visit_due(&self, due: impl Fn(&Order) -> bool, limit: usize, mut f: impl FnMut(&Entry)) {
        let queued = self.queues.iter().chain(std::iter::once(&self.closes));
        for q in queued {
            for (_, e) in q.iter().take(limit).take_while(|(o, _)| due(o)) {
                f(e);
            }
        }
        for (_, e) in self
            .scheduled
            .iter()
            .take(limit)
            .take_while(|(o, _)| due(o))
        {
            f(e);
        }
    }

    /// Keeps only the entries `keep` says to.
    pub fn retain(&mut self, mut keep: impl FnMut(&Entry) -> bool) {
        for q in self
            .queues
            .iter_mut()
            .chain(std::iter::once(&mut self.closes))
        {
            q.retain(|(_, e)| keep(e));
        }
        self.scheduled.retain(|_, e| keep(e));
    }

    /// Every entry, in no particular order (for checkpoints).
    pub fn iter(&self) -> impl Iterator<Item = (&Order, &Entry)> {
        let queued = self.queues.iter().chain(std::iter::once(&self.closes));
        let queued = queued.flatten().map(|(o, e)| (o, e));
        queued.chain(&self.scheduled)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ACTION, FACT, RELEASE};
    use super::*;
    use crate::event::Str;
    use crate::time::Timestamp;

    fn close(n: i64) -> Entry {
        Entry::Close {
            customer: Str::from("m-1"),
            window: n,
        }
    }

    #[test]
    fn entries_come_out_in_order_whatever_queue_and_arrival() {
        let t = |s: i64| Timestamp::from_nanos(s * 1_000_000_000);
        let mut orders = vec![
            (t(5), FACT, 0, 0),
            (t(7), FACT, 0, 1),
            (t(3), ACTION, 0, 2),
            (t(6), ACTION, 0, 3),
            (t(4), FACT, 0, 4), // late within its queue
            (t(5), ACTION, 1, 0),
            (t(5), FACT, 1, 1),
            (t(5), CLOSE, u32::MAX, 1),
            (t(9), RELEASE, u32::MAX, 2),
            (t(2), CLOSE, u32::MAX, 3), // before the last close: out of order
            (t(6), CLOSE, u32::MAX, 4),
            (t(8), CLOSE, u32::MAX, 5),
        ];
        let mut agenda = Agenda::default();
        for (n, o) in orders.iter().enumerate() {
            agenda.insert(*o, close(n as i64));
        }
        assert_eq!(agenda.iter().count(), orders.len());
        // Nothing is due before its instant; then every entry, in order.
        assert!(agenda.pop_if(|o| o.0 < t(2)).is_none());
        let mut out = Vec::new();
        while let Some((o, _)) = agenda.pop_if(|_| true) {
            out.push(o);
        }
        orders.sort();
        assert_eq!(out, orders);
    }

    #[test]
    fn visit_due_sees_the_due_heads_of_every_queue_and_nothing_later() {
        let t = |s: i64| Timestamp::from_nanos(s * 1_000_000_000);
        let mut agenda = Agenda::default();
        let orders = [
            (t(1), FACT, 0, 0),
            (t(2), FACT, 0, 1),
            (t(9), FACT, 0, 2),
            (t(3), FACT, 0, 3), // late: goes before t(9) in its queue
            (t(4), ACTION, 1, 0),
            (t(2), CLOSE, u32::MAX, 0),
            (t(5), RELEASE, u32::MAX, 1),
            (t(8), RELEASE, u32::MAX, 2),
        ];
        for (n, o) in orders.iter().enumerate() {
            agenda.insert(*o, close(n as i64));
        }
        let visited = |limit| {
            let mut seen = Vec::new();
            agenda.visit_due(
                |o| o.0 <= t(5),
                limit,
                |e| {
                    if let Entry::Close { window, .. } = e {
                        seen.push(*window);
                    }
                },
            );
            seen.sort();
            seen
        };
        // Not t(8), nor t(9), which is after t(5); with a limit, only each queue's head.
        assert_eq!(visited(64), vec![0, 1, 3, 4, 5, 6]);
        assert_eq!(visited(1), vec![0, 4, 5, 6]);
    }

    #[test]
    fn retain_drops_entries_from_every_queue() {
        let t = Timestamp::from_nanos(1);
        let mut agenda = Agenda::default();
        agenda.insert((t, FACT, 2, 0), close(1));
        agenda.insert((t, ACTION, 0, 0), close(2));
        agenda.insert((t, CLOSE, u32::MAX, 0), close(1));
        agenda.retain(|e| !matches!(e, Entry::Close { window: 1, .. }));
        let left: Vec<_> = agenda.iter().map(|(o, _)| *o).collect();
        assert_eq!(left, vec![(t, ACTION, 0, 0)]);
    }
}

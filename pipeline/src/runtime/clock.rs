//! The pipeline clock: per-partition watermarks, idleness, live vs replay.
//!
//! A partition's watermark is the largest event time read from it minus the allowed
//! lateness. The clock is the minimum over the partitions that hold it back, and never
//! goes backwards.
//! - Replay: every partition holds the clock until its input is exhausted; no wall time
//!   is consulted, so a replay is deterministic.
//! - Live: a partition that has caught up with its input and read nothing for the idle
//!   timeout stops holding the clock (one that never had a record, at once); when every
//!   partition is idle the clock follows wall time minus the allowed lateness, so timers
//!   still fire on a quiet night.

use std::time::{Duration, Instant};

use footfall_operators::time::{Span, Timestamp};

/// Replay (event time only) or live (wall time too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `footfall replay`.
    Replay,
    /// `footfall run`.
    Live,
}

#[derive(Clone, Debug)]
struct Part {
    max_ts: Option<Timestamp>,
    last_record: Instant,
    caught_up: bool,
    finished: bool,
}

/// Watermarks of every input partition and the clock they make.
#[derive(Clone, Debug)]
pub struct Clock {
    mode: Mode,
    lateness: Span,
    idle_timeout: Duration,
    parts: Vec<Part>,
    clock: Timestamp,
}

impl Clock {
    /// A clock over `partitions` input partitions.
    pub fn new(
        mode: Mode,
        partitions: usize,
        lateness: Span,
        idle_timeout: Duration,
        now: Instant,
    ) -> Self {
        Clock {
            mode,
            lateness,
            idle_timeout,
            parts: vec![
                Part {
                    max_ts: None,
                    last_record: now,
                    caught_up: false,
                    finished: false,
                };
                partitions
            ],
            clock: Timestamp::MIN,
        }
    }

    /// The clock and each partition's largest event time (for checkpoints).
    pub fn export(&self) -> (Timestamp, Vec<Option<Timestamp>>) {
        (self.clock, self.parts.iter().map(|p| p.max_ts).collect())
    }

    /// Restores what [`export`](Self::export) wrote.
    pub fn restore(&mut self, clock: Timestamp, max_ts: &[Option<Timestamp>]) {
        self.clock = clock;
        for (p, m) in self.parts.iter_mut().zip(max_ts) {
            p.max_ts = *m;
        }
    }

    /// The clock.
    pub fn now(&self) -> Timestamp {
        self.clock
    }

    /// A record with event time `ts` was read from partition `p`.
    pub fn observe(&mut self, p: usize, ts: Timestamp, at: Instant) {
        let part = &mut self.parts[p];
        part.max_ts = Some(part.max_ts.map_or(ts, |m| m.max(ts)));
        part.last_record = at;
    }

    /// Partition `p` has read everything there is for now (live) or for good (replay).
    pub fn caught_up(&mut self, p: usize, caught_up: bool) {
        self.parts[p].caught_up = caught_up;
    }

    /// Partition `p`'s input is exhausted (replay).
    pub fn finish(&mut self, p: usize) {
        self.parts[p].finished = true;
    }

    /// Whether every partition's input is exhausted.
    pub fn all_finished(&self) -> bool {
        self.parts.iter().all(|p| p.finished)
    }

    /// Partition `p`'s watermark (`MIN` before any record).
    pub fn watermark(&self, p: usize) -> Timestamp {
        self.parts[p]
            .max_ts
            .map_or(Timestamp::MIN, |m| m.minus(self.lateness))
    }

    /// The largest event time read anywhere.
    pub fn max_event_time(&self) -> Option<Timestamp> {
        self.parts.iter().filter_map(|p| p.max_ts).max()
    }

    /// The replay partition that holds the clock back most: the one to read next.
    pub fn laggard(&self) -> Option<usize> {
        (0..self.parts.len())
            .filter(|&p| !self.parts[p].finished)
            .min_by_key(|&p| self.watermark(p))
    }

    /// Recomputes the clock; returns it.
    pub fn update(&mut self, now: Instant, wall: Timestamp) -> Timestamp {
        let holding = self
            .parts
            .iter()
            .enumerate()
            .filter(|(_, p)| match self.mode {
                Mode::Replay => !p.finished,
                // A caught-up partition that never had a record has nothing in flight.
                Mode::Live => {
                    !p.finished
                        && !(p.caught_up
                            && (p.max_ts.is_none()
                                || now.duration_since(p.last_record) >= self.idle_timeout))
                }
            });
        let min = holding.map(|(i, _)| self.watermark(i)).min();
        let next = match (min, self.mode) {
            (Some(m), _) => m,
            (None, Mode::Live) if !self.all_finished() => wall.minus(self.lateness),
            (None, Mode::Live) => self.clock,
            (None, Mode::Replay) => self.clock,
        };
        self.clock = self.clock.max(next);
        self.clock
    }

    /// Moves the clock to at least `to` (the end of a replay).
    pub fn advance_to(&mut self, to: Timestamp) -> Timestamp {
        self.clock = self.clock.max(to);
        self.clock
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_secs(1_000_000 + s)
    }

    #[test]
    fn replay_clock_is_min_watermark_until_exhausted() {
        let now = Instant::now();
        let mut c = Clock::new(
            Mode::Replay,
            2,
            Span::from_secs(5),
            Duration::from_secs(10),
            now,
        );
        c.observe(0, t(100), now);
        assert_eq!(c.update(now, t(0)), Timestamp::MIN);
        assert_eq!(c.laggard(), Some(1));
        c.observe(1, t(50), now);
        assert_eq!(c.update(now, t(0)), t(45));
        c.finish(1);
        assert_eq!(c.update(now, t(0)), t(95));
        // Never backwards.
        c.observe(0, t(10), now);
        assert_eq!(c.update(now, t(0)), t(95));
        c.finish(0);
        assert!(c.all_finished());
        assert_eq!(c.advance_to(t(200)), t(200));
    }

    #[test]
    fn live_partition_without_records_does_not_hold_once_caught_up() {
        let start = Instant::now();
        let mut c = Clock::new(
            Mode::Live,
            2,
            Span::from_secs(5),
            Duration::from_secs(10),
            start,
        );
        c.observe(0, t(100), start);
        assert_eq!(c.update(start, t(0)), Timestamp::MIN);
        c.caught_up(1, true);
        assert_eq!(c.update(start, t(0)), t(95));
    }

    #[test]
    fn live_idle_partitions_stop_holding_and_wall_time_takes_over() {
        let start = Instant::now();
        let mut c = Clock::new(
            Mode::Live,
            2,
            Span::from_secs(5),
            Duration::from_secs(10),
            start,
        );
        c.observe(0, t(100), start);
        c.observe(1, t(50), start);
        // Partition 1 has caught up, but only counts as idle after the timeout.
        c.caught_up(1, true);
        assert_eq!(c.update(start, t(0)), t(45));
        let later = start + Duration::from_secs(11);
        assert_eq!(c.update(later, t(0)), t(95));
        c.caught_up(0, true);
        let much_later = start + Duration::from_secs(30);
        assert_eq!(c.update(much_later, t(500)), t(495));
    }
}

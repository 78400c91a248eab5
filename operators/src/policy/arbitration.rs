//! Step 4, arbitration: windows are tumbling and aligned to the Unix epoch
//! (`floor(fired_at / arbitration_window)`). Of one customer's actions in one window only
//! the one of highest priority goes on (ties: earliest `fired_at`, then `action_id`); the
//! others are suppressed (`arbitration`). A window is decided when the clock passes its
//! end.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use smallvec::SmallVec;

use super::Packed;
use crate::time::{Span, Timestamp};

/// The window of `at`: its number since the epoch.
pub fn window(at: Timestamp, size: Span) -> i64 {
    at.as_nanos().div_euclid(size.as_nanos().max(1))
}

/// The instant window `w` ends (exclusive).
pub fn end(w: i64, size: Span) -> Timestamp {
    Timestamp::from_nanos(w.saturating_add(1).saturating_mul(size.as_nanos().max(1)))
}

/// The priority of `trigger` (unconfigured triggers: 0).
pub fn priority(priorities: &BTreeMap<String, i32>, trigger: &str) -> i32 {
    priorities.get(trigger).copied().unwrap_or(0)
}

/// One customer's actions in one window. Nearly always one: it is held in the window's
/// entry, with no allocation of its own.
pub type Held = SmallVec<[Packed; 1]>;

/// Picks the winner of one window's actions; returns it and the others.
pub fn decide(mut actions: Held, priorities: &BTreeMap<String, i32>) -> Option<(Packed, Held)> {
    actions.sort_by(|a, b| {
        (
            Reverse(priority(priorities, a.trigger())),
            a.fired_at,
            a.action_id(),
        )
            .cmp(&(
                Reverse(priority(priorities, b.trigger())),
                b.fired_at,
                b.action_id(),
            ))
    });
    let mut rest = actions.into_iter();
    let winner = rest.next()?;
    Some((winner, rest.collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::{Action, OutputTopic};

    fn action(trigger: &str, secs: i64) -> Packed {
        let at = Timestamp::from_secs(secs);
        Packed::new(&Action::new(
            trigger,
            "1",
            "m-1",
            at,
            OutputTopic::Notifications,
        ))
    }

    #[test]
    fn windows_are_epoch_aligned() {
        let m = Span::from_secs(60);
        assert_eq!(window(Timestamp::from_secs(119), m), 1);
        assert_eq!(window(Timestamp::from_secs(120), m), 2);
        assert_eq!(end(1, m), Timestamp::from_secs(120));
        assert_eq!(window(Timestamp::from_secs(-1), m), -1);
    }

    #[test]
    fn highest_priority_wins_then_earliest_then_action_id() {
        let p: BTreeMap<String, i32> = [("abandoned_cart".into(), 50), ("birthday".into(), 40)]
            .into_iter()
            .collect();
        let (w, rest) = decide(
            vec![action("birthday", 60), action("abandoned_cart", 100)].into(),
            &p,
        )
        .unwrap();
        assert_eq!((w.trigger(), rest.len()), ("abandoned_cart", 1));
        let (w, _) = decide(
            vec![action("birthday", 70), action("birthday", 61)].into(),
            &p,
        )
        .unwrap();
        assert_eq!(w.fired_at, Timestamp::from_secs(61));
        let (a, b) = (action("x", 61), action("y", 61));
        let first = a.action_id().min(b.action_id()).to_owned();
        let (w, _) = decide(vec![a, b].into(), &p).unwrap();
        assert_eq!(w.action_id(), first, "unconfigured triggers tie at 0");
    }
}

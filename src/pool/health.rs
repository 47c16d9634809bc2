//! The health of one target, as a state machine. Passive: `--down-after` failed connects in a
//! row mark a target down for `--down-for`, after which one connection retries it. Active: a
//! failed probe (`--health-interval`, driven from the serving layer) marks a target down
//! until a probe succeeds.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The health of one target. A short-lived lock, never held across a connect.
#[derive(Debug, Default)]
pub struct Health(Mutex<State>);

#[derive(Debug, Default)]
struct State {
    /// Failed connects in a row.
    fails: u32,
    /// Marked down (logged once when it happens, and once when it ends).
    down: bool,
    /// While down: when a connection may try it again (passive); `None` = only a
    /// successful probe brings it back (active).
    retry_at: Option<Instant>,
}

/// What a report changed: the pool logs each change once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing to log.
    None,
    /// It was up and is now down.
    Down,
    /// It was down and is now up.
    Up,
}

impl Health {
    fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock still holds a valid state.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Up: not marked down. A target whose down period has passed is still down until a
    /// connect to it succeeds.
    pub fn is_up(&self) -> bool {
        !self.state().down
    }

    /// Whether a connection may choose it now: up, or down with its retry time reached.
    pub fn usable(&self, now: Instant) -> bool {
        let state = self.state();
        !state.down || state.retry_at.is_some_and(|t| now >= t)
    }

    /// Called just before a connect: true if it may be tried. A down target whose retry time
    /// has come is claimed by this connection alone (the next retry is pushed `down_for`
    /// ahead), so a crowd of clients does not all wait on a target that is probably dead.
    pub fn claim(&self, now: Instant, down_for: Duration) -> bool {
        let mut state = self.state();
        if !state.down {
            return true;
        }
        match state.retry_at {
            Some(t) if now >= t => {
                state.retry_at = Some(now + down_for);
                true
            }
            _ => false,
        }
    }

    /// A client's connect failed: after `down_after` in a row it is down for `down_for`.
    pub fn connect_failed(&self, now: Instant, down_after: u32, down_for: Duration) -> Change {
        let mut state = self.state();
        state.fails = state.fails.saturating_add(1);
        if state.fails < down_after.max(1) {
            return Change::None;
        }
        if state.down && state.retry_at.is_none() {
            // Down by a probe: only a probe brings it back.
            return Change::None;
        }
        state.retry_at = Some(now + down_for);
        mark_down(&mut state)
    }

    /// A probe failed: down until a probe (or a connect) succeeds.
    pub fn probe_failed(&self) -> Change {
        let mut state = self.state();
        state.retry_at = None;
        mark_down(&mut state)
    }

    /// A connect or a probe succeeded: up.
    pub fn succeeded(&self) -> Change {
        let mut state = self.state();
        state.fails = 0;
        state.retry_at = None;
        if state.down {
            state.down = false;
            Change::Up
        } else {
            Change::None
        }
    }
}

fn mark_down(state: &mut State) -> Change {
    if state.down {
        Change::None
    } else {
        state.down = true;
        Change::Down
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FOR: Duration = Duration::from_secs(10);

    #[test]
    fn down_after_counts_failures_in_a_row() {
        let h = Health::default();
        let now = Instant::now();
        assert_eq!(h.connect_failed(now, 3, FOR), Change::None);
        assert_eq!(h.connect_failed(now, 3, FOR), Change::None);
        assert_eq!(h.succeeded(), Change::None);
        assert_eq!(h.connect_failed(now, 3, FOR), Change::None);
        assert_eq!(h.connect_failed(now, 3, FOR), Change::None);
        assert!(h.is_up());
        assert_eq!(h.connect_failed(now, 3, FOR), Change::Down);
        assert!(!h.is_up());
        // Logged once: further failures change nothing.
        assert_eq!(h.connect_failed(now, 3, FOR), Change::None);
    }

    #[test]
    fn down_for_skips_then_one_connection_retries() {
        let h = Health::default();
        let now = Instant::now();
        assert_eq!(h.connect_failed(now, 1, FOR), Change::Down);
        assert!(!h.usable(now));
        assert!(!h.claim(now, FOR));
        let later = now + FOR;
        assert!(h.usable(later));
        assert!(h.claim(later, FOR));
        // Claimed: the next connection does not retry it too.
        assert!(!h.usable(later));
        assert!(!h.claim(later, FOR));
        assert_eq!(h.succeeded(), Change::Up);
        assert!(h.usable(later) && h.is_up());
    }

    #[test]
    fn a_failed_retry_keeps_it_down_without_a_new_log() {
        let h = Health::default();
        let now = Instant::now();
        assert_eq!(h.connect_failed(now, 2, FOR), Change::None);
        assert_eq!(h.connect_failed(now, 2, FOR), Change::Down);
        let later = now + FOR;
        assert!(h.claim(later, FOR));
        assert_eq!(h.connect_failed(later, 2, FOR), Change::None);
        assert!(!h.usable(later + FOR / 2));
        assert!(h.usable(later + FOR));
    }

    #[test]
    fn a_failed_probe_holds_it_down_until_a_success() {
        let h = Health::default();
        let now = Instant::now();
        assert_eq!(h.probe_failed(), Change::Down);
        assert_eq!(h.probe_failed(), Change::None);
        assert!(!h.usable(now + FOR * 100));
        // A passive failure does not turn it into a timed retry.
        assert_eq!(h.connect_failed(now, 1, FOR), Change::None);
        assert!(!h.usable(now + FOR * 100));
        assert_eq!(h.succeeded(), Change::Up);
        assert!(h.usable(now));
    }

    #[test]
    fn up_is_always_claimable() {
        let h = Health::default();
        assert!(h.claim(Instant::now(), FOR));
        assert!(h.is_up());
    }
}

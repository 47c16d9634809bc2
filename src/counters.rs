//! Counters kept per rule, for the log and for `--stats`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::end::End;

/// A 64-bit counter that works on 32-bit targets without 64-bit atomics.
#[derive(Default)]
pub struct Counter(Mutex<u64>);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        // A poisoned lock still holds a valid number: keep counting.
        let mut value = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *value = value.wrapping_add(n);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Client connections open now in the whole process, every rule's (removed ones' too), each
/// until its log line is written: what a graceful stop waits for.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Client connections open now in the whole process (their lines not yet written).
pub fn in_flight() -> usize {
    IN_FLIGHT.load(Ordering::Acquire)
}

/// A connection's line is written (or it ended without one): it is no longer in flight.
pub fn landed() {
    IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
}

/// Everything counted for one rule.
#[derive(Default)]
pub struct RuleCounters {
    /// Client connections open now.
    pub active: AtomicUsize,
    /// Finished connections, by `end=` (indexed like [`End::ALL`]).
    pub ends: [Counter; End::ALL.len()],
    /// Bytes client → target.
    pub up: Counter,
    /// Bytes target → client.
    pub down: Counter,
    /// Times the listener stopped accepting because `--max-conns` was reached.
    pub accept_paused: Counter,
    /// Failed `accept()` calls.
    pub accept_errors: Counter,
}

impl RuleCounters {
    /// Counts a finished connection.
    pub fn finished(&self, end: End, up: u64, down: u64) {
        self.ends[end.index()].add(1);
        self.up.add(up);
        self.down.add(down);
    }

    /// Finished connections that ended with `end`.
    pub fn ended(&self, end: End) -> u64 {
        self.ends[end.index()].get()
    }

    /// A connection started.
    pub fn opened(&self) {
        self.active.fetch_add(1, Ordering::Relaxed);
        IN_FLIGHT.fetch_add(1, Ordering::AcqRel);
    }

    /// A connection ended (it is still in flight until [`landed`]).
    pub fn closed(&self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
    }
}

//! What one rule's threads share: the rule, its targets, its `--max-conns` places, its
//! counters, and how a finished connection is logged and counted. A reload gives a rule a
//! new [`RuleState`] in its [`Current`] cell; connections keep the one they started with,
//! and the places, counters and target health go on from one state to the next.

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crate::addr::Endpoint;
use crate::config::rule::{Mode, Rule};
use crate::counters::{self, RuleCounters};
use crate::log::{self, Burst, Record};
use crate::pool::dial::Dialer;
use crate::pool::Pool;
use crate::relay::{Armed, Outcome, Settings, Timeouts};

/// What one rule's threads share.
pub struct RuleState {
    /// The rule.
    pub rule: Rule,
    /// The listen address as written: `listen=` in logs, `rule` in metrics.
    pub label: String,
    /// The targets, in forwarding mode.
    pub pool: Option<Arc<Pool>>,
    /// How sockets to targets (CONNECT destinations) are made.
    pub dialer: Dialer,
    /// Every address this process listens on (CONNECT refuses to tunnel to them).
    pub own_addrs: Arc<Vec<SocketAddr>>,
    /// Open connections against `--max-conns` (shared with the rule's states before and
    /// after a reload).
    slots: Arc<Slots>,
    /// Counters (shared like the places).
    pub counters: Arc<RuleCounters>,
    /// Once-per-burst logging of resource trouble.
    pub troubles: Troubles,
}

/// One [`Burst`] per kind of recurring trouble.
#[derive(Default)]
pub struct Troubles {
    /// `accept()` failing.
    pub accept: Burst,
    /// Threads that cannot be started.
    pub spawn: Burst,
    /// `--max-conns` reached.
    pub full: Burst,
}

impl RuleState {
    /// The shared state of a rule whose listeners are open.
    pub fn new(rule: Rule, own_addrs: Arc<Vec<SocketAddr>>) -> RuleState {
        let pool = match &rule.mode {
            Mode::Forward(fw) => Some(Arc::new(
                Pool::new(fw, rule.options.connect_timeout).dialing(Dialer::new(&rule.options)),
            )),
            Mode::Connect(_) => None,
        };
        RuleState::assemble(rule, pool, own_addrs, Arc::default(), Arc::default())
    }

    /// The state after a reload that kept the rule's listen address: the new rule's options
    /// and targets, the same places and counters; an unchanged rule keeps its pool, a changed
    /// one gets a new pool that keeps the health of each target still in it.
    pub fn renewed(rule: Rule, old: &RuleState, own_addrs: Arc<Vec<SocketAddr>>) -> RuleState {
        let pool = match (&rule.mode, &old.pool) {
            (Mode::Forward(_), Some(pool)) if rule == old.rule => Some(Arc::clone(pool)),
            (Mode::Forward(fw), previous) => Some(Arc::new(
                Pool::after(fw, rule.options.connect_timeout, previous.as_deref())
                    .dialing(Dialer::new(&rule.options)),
            )),
            (Mode::Connect(_), _) => None,
        };
        let (slots, counters) = (Arc::clone(&old.slots), Arc::clone(&old.counters));
        RuleState::assemble(rule, pool, own_addrs, slots, counters)
    }

    /// A rule's state from its parts: the dialer and the label come from the rule.
    fn assemble(
        rule: Rule,
        pool: Option<Arc<Pool>>,
        own_addrs: Arc<Vec<SocketAddr>>,
        slots: Arc<Slots>,
        counters: Arc<RuleCounters>,
    ) -> RuleState {
        RuleState {
            label: rule.listen.to_string(),
            dialer: Dialer::new(&rule.options),
            rule,
            pool,
            own_addrs,
            slots,
            counters,
            troubles: Troubles::default(),
        }
    }

    /// How the relay copies for this rule.
    pub fn relay_settings(&self) -> Settings {
        let o = &self.rule.options;
        Settings {
            buffer_size: o.buffer_size,
            segment_size: o.segment_size,
            timeouts: timeouts(&self.rule),
            client: Armed::NONE,
            target: Armed::NONE,
        }
    }
}

/// A rule's state as it is now: what its accept loop hands each new connection. Swapped by a
/// reload under a short lock.
pub struct Current(Mutex<Arc<RuleState>>);

impl Current {
    /// A cell holding `state`.
    pub fn new(state: Arc<RuleState>) -> Current {
        Current(Mutex::new(state))
    }

    /// The state now.
    pub fn get(&self) -> Arc<RuleState> {
        Arc::clone(&self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts `state` in; returns the one it replaces.
    pub fn replace(&self, state: Arc<RuleState>) -> Arc<RuleState> {
        std::mem::replace(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()), state)
    }
}

/// Counts the rule's open client connections against `--max-conns`.
#[derive(Default)]
struct Slots {
    count: Mutex<Count>,
    freed: Condvar,
}

#[derive(Default)]
struct Count {
    /// Places taken.
    used: usize,
    /// Acceptors waiting for a place (only while the rule is full).
    waiting: usize,
}

/// One of the rule's `--max-conns` places, given back when dropped.
pub struct Slot {
    state: Arc<RuleState>,
    counted: bool,
}

impl Slot {
    /// Waits until the rule has a free place and takes it. Waiting at `--max-conns` is a
    /// burst of trouble: one line when it starts, one when the rule has room again (how long,
    /// how many clients had to wait), and at most one per [`log::REPEAT`] in between.
    pub fn acquire(state: &Arc<RuleState>) -> Slot {
        let slots = &state.slots;
        let max = state.rule.options.max_conns;
        let mut count = slots.count.lock().unwrap_or_else(|e| e.into_inner());
        if count.used >= max {
            // The listener pauses when its first acceptor finds the rule full.
            if count.waiting == 0 {
                state.counters.accept_paused.add(1);
            }
            state.troubles.full.problem(format_args!(
                "{} has {max} connections (--max-conns): not accepting until one ends",
                state.label
            ));
            count.waiting += 1;
            while count.used >= max {
                count = slots.freed.wait(count).unwrap_or_else(|e| e.into_inner());
            }
            count.waiting -= 1;
        } else if let Some(ended) = state.troubles.full.clear() {
            // A place was free without waiting, and none was missing for a while.
            log::problem(format_args!(
                "{} accepting again after {ended} ({} clients waited)",
                state.label, ended.count
            ));
        }
        count.used += 1;
        Slot {
            state: Arc::clone(state),
            counted: false,
        }
    }

    /// Takes a free place without waiting; `None` while the rule is full (counted as a pause
    /// and logged as [`Slot::acquire`] does). For a listener polled with others, whose thread
    /// must not wait for one rule; it leaves the listener out of its poll until
    /// [`Slot::available`].
    #[cfg(unix)]
    pub fn try_acquire(state: &Arc<RuleState>) -> Option<Slot> {
        let slots = &state.slots;
        let max = state.rule.options.max_conns;
        let mut count = slots.count.lock().unwrap_or_else(|e| e.into_inner());
        if count.used >= max {
            state.counters.accept_paused.add(1);
            state.troubles.full.problem(format_args!(
                "{} has {max} connections (--max-conns): not accepting until one ends",
                state.label
            ));
            return None;
        }
        if let Some(ended) = state.troubles.full.clear() {
            log::problem(format_args!(
                "{} accepting again after {ended} ({} clients waited)",
                state.label, ended.count
            ));
        }
        count.used += 1;
        Some(Slot {
            state: Arc::clone(state),
            counted: false,
        })
    }

    /// Whether the rule has a free place now.
    #[cfg(unix)]
    pub fn available(state: &RuleState) -> bool {
        let count = state.slots.count.lock().unwrap_or_else(|e| e.into_inner());
        count.used < state.rule.options.max_conns
    }

    /// A client was accepted into this place: it counts as an open connection.
    pub fn count(&mut self) {
        self.state.counters.opened();
        self.counted = true;
    }

    /// Moves this place to `state`, the rule's state now (after a reload while the accept
    /// loop waited): the same places when the state is a renewal, else a place of its own.
    pub fn rebind(&mut self, state: &Arc<RuleState>) {
        if Arc::ptr_eq(&self.state, state) {
            return;
        }
        if Arc::ptr_eq(&self.state.slots, &state.slots) {
            self.state = Arc::clone(state);
        } else {
            *self = Slot::acquire(state);
        }
    }

    /// The connection in this place has ended: it is counted, its place is given back,
    /// then its one log line is written. In that order, so that whoever reads the line (or
    /// scrapes the metrics after it) sees the connection gone from every count; and only
    /// after the line it is no longer in flight, so a graceful stop that waits for none in
    /// flight never exits before a line.
    pub fn finish(
        mut self,
        client: &Endpoint,
        target: Option<&Endpoint>,
        outcome: Outcome,
        accepted: Instant,
        user: Option<&str>,
    ) {
        let state = Arc::clone(&self.state);
        state
            .counters
            .finished(outcome.end, outcome.up, outcome.down);
        let counted = std::mem::replace(&mut self.counted, false);
        if counted {
            state.counters.closed();
        }
        drop(self);
        log::connection(&Record {
            client,
            listen: &state.label,
            target,
            up: outcome.up,
            down: outcome.down,
            duration: accepted.elapsed(),
            end: outcome.end,
            user,
        });
        if counted {
            counters::landed();
        }
    }

    /// The rule this place belongs to.
    pub fn state(&self) -> &Arc<RuleState> {
        &self.state
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let slots = &self.state.slots;
        let mut count = slots.count.lock().unwrap_or_else(|e| e.into_inner());
        count.used = count.used.saturating_sub(1);
        // A wake-up call only when an acceptor waits for a place (the rule was full): one
        // per place given back, so every free place has an acceptor on its way.
        let wake = count.waiting > 0;
        if self.counted {
            self.state.counters.closed();
            counters::landed();
        }
        drop(count);
        if wake {
            slots.freed.notify_one();
        }
    }
}

/// The relay's timeouts for `rule`'s connections.
pub fn timeouts(rule: &Rule) -> Timeouts {
    Timeouts {
        idle: rule.options.idle_timeout,
        fin: rule.options.fin_timeout,
    }
}

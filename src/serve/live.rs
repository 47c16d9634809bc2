//! What the process serves now: each rule's listeners and its [`Current`] state, and the
//! metrics listener. A reload swaps states and adds or stops rules; a graceful stop or a
//! hand-over stops every listener.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::addr::HostPort;
use crate::counters::Counter;
use crate::log;
use crate::serve::accept::{serve_rule, Listener, LoopGuard};
use crate::serve::probe;
use crate::serve::state::{Current, RuleState};
use crate::threads;

/// One rule being served: a listen address as written, its sockets, its state now.
pub struct Entry {
    /// The listen address as written: what identifies the rule across reloads.
    pub label: String,
    /// The state each new connection gets.
    pub current: Arc<Current>,
    /// Its listening sockets (one, or one per family for `:PORT`).
    pub listeners: Vec<Arc<Listener>>,
}

impl Entry {
    /// A rule whose sockets are open, not yet served.
    pub fn new(state: RuleState, listeners: Vec<Arc<Listener>>) -> Arc<Entry> {
        Arc::new(Entry {
            label: state.label.clone(),
            current: Arc::new(Current::new(Arc::new(state))),
            listeners,
        })
    }

    /// Starts an accept loop per socket and the rule's health probes; logs `listening on`.
    pub fn start(&self) -> io::Result<()> {
        let state = self.current.get();
        if let Some(pool) = &state.pool {
            if let Some(interval) = pool.health_interval() {
                probe::start_probes(pool, interval)?;
            }
        }
        for listener in &self.listeners {
            let local = listener.socket().local_addr();
            let (listener, current) = (Arc::clone(listener), Arc::clone(&self.current));
            let running = LoopGuard::new();
            threads::spawn(move || serve_rule(listener, current, running))?;
            if let Ok(local) = local {
                log::info(format_args!("listening on {local} (rule {})", self.label));
            }
        }
        Ok(())
    }

    /// Stops accepting (the connections go on); its probes stop.
    pub fn stop(&self) {
        for listener in &self.listeners {
            listener.stop();
        }
        if let Some(pool) = &self.current.get().pool {
            pool.retire();
        }
    }
}

/// The metrics listener and the address it was opened for.
#[derive(Clone)]
pub struct Stats {
    /// `--stats` as written.
    pub addr: HostPort,
    /// Its socket.
    pub listener: Arc<Listener>,
}

/// How many reloads worked and failed (`tcpfwd_reloads_total`).
#[derive(Default)]
pub struct Reloads {
    /// Reloads that took effect.
    pub ok: Counter,
    /// Reloads that changed nothing because of an error.
    pub failed: Counter,
}

/// Everything being served now.
#[derive(Default)]
pub struct Live {
    rules: Mutex<Vec<Arc<Entry>>>,
    stats: Mutex<Option<Stats>>,
    /// Reloads so far.
    pub reloads: Reloads,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Live {
    /// The rules, in the order of the command line or file.
    pub fn entries(&self) -> Vec<Arc<Entry>> {
        locked(&self.rules).clone()
    }

    /// Replaces the list of rules (a reload).
    pub fn set_entries(&self, entries: Vec<Arc<Entry>>) {
        *locked(&self.rules) = entries;
    }

    /// Every rule's state now, for metrics.
    pub fn states(&self) -> Vec<Arc<RuleState>> {
        self.entries().iter().map(|e| e.current.get()).collect()
    }

    /// The metrics listener.
    pub fn stats(&self) -> Option<Stats> {
        locked(&self.stats).clone()
    }

    /// Replaces the metrics listener (start-up, or a reload that changed `--stats`).
    pub fn set_stats(&self, stats: Option<Stats>) {
        *locked(&self.stats) = stats;
    }

    /// Stops every listener, the metrics one too; connections go on.
    pub fn stop_all(&self) {
        for entry in self.entries() {
            entry.stop();
        }
        if let Some(stats) = self.stats() {
            stats.listener.stop();
        }
    }
}

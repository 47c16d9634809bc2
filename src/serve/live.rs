//! What the process serves now: each rule's listeners and its [`Current`] state, and the
//! metrics listener. A reload swaps states and adds or stops rules; a graceful stop or a
//! hand-over stops every listener.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::addr::HostPort;
use crate::counters::Counter;
use crate::log;
#[cfg(unix)]
use crate::serve::accept::serve_many;
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
        self.start_probes()?;
        for listener in &self.listeners {
            let (listener, current) = (Arc::clone(listener), Arc::clone(&self.current));
            let running = LoopGuard::new();
            let line = self.listening(&listener);
            threads::start(move || serve_rule(listener, current, running))?;
            log::info(format_args!("{line}"));
        }
        Ok(())
    }

    /// Starts the rule's health probes, if it has any.
    fn start_probes(&self) -> io::Result<()> {
        let state = self.current.get();
        if let Some(pool) = &state.pool {
            if let Some(interval) = pool.health_interval() {
                probe::start_probes(pool, interval)?;
            }
        }
        Ok(())
    }

    /// `listening on ADDR (rule LABEL)`: the address bound (a Unix socket's: as written).
    fn listening(&self, listener: &Listener) -> String {
        match listener.socket().local_addr() {
            Ok(local) => format!("listening on {local} (rule {})", self.label),
            Err(_) => format!("listening on {} (rule {})", self.label, self.label),
        }
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

/// Up to this many listening sockets get an accept thread each at start-up: the simplest
/// path, with the fewest system calls per connection. More (port ranges, thousands of rules)
/// are polled in groups of [`POLL_GROUP`] (Unix): a thread blocked in `accept()` costs about
/// 10 KiB of memory and, on Linux, a reserved file descriptor per listener (README "Thousands
/// of rules"). Rules a reload adds get a thread each.
#[cfg(unix)]
pub const THREAD_PER_LISTENER_UP_TO: usize = 64;

/// Listeners one polling thread serves: each `poll()` takes time in proportion to them.
#[cfg(unix)]
pub const POLL_GROUP: usize = 1024;

/// Starts serving every rule of the start-up (see [`THREAD_PER_LISTENER_UP_TO`]).
pub fn start_all(entries: &[Arc<Entry>]) -> io::Result<()> {
    #[cfg(unix)]
    {
        let sockets: usize = entries.iter().map(|e| e.listeners.len()).sum();
        if sockets > THREAD_PER_LISTENER_UP_TO {
            return start_polled(entries);
        }
    }
    entries.iter().try_for_each(|entry| entry.start())
}

/// Starts the rules' probes and one polling thread per [`POLL_GROUP`] listeners.
#[cfg(unix)]
fn start_polled(entries: &[Arc<Entry>]) -> io::Result<()> {
    let mut all = Vec::new();
    for entry in entries {
        entry.start_probes()?;
        for listener in &entry.listeners {
            listener.socket().set_nonblocking(true)?;
            all.push((entry, listener));
        }
    }
    for chunk in all.chunks(POLL_GROUP) {
        let lines: Vec<String> = chunk.iter().map(|(e, l)| e.listening(l)).collect();
        let group: Vec<_> = chunk
            .iter()
            .map(|(e, l)| (Arc::clone(l), Arc::clone(&e.current)))
            .collect();
        let running: Vec<LoopGuard> = chunk.iter().map(|_| LoopGuard::new()).collect();
        threads::start(move || serve_many(group, running))?;
        for line in lines {
            log::info(format_args!("{line}"));
        }
    }
    Ok(())
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

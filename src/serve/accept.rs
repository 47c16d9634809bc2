//! Accept loops: a rule's (limits, back-off, the threads that accept and serve), one for the
//! listeners of many rules at once (Unix), and the metrics one's. None spins: a failing
//! `accept()` backs off and is logged as a burst (start, end, at most one line per few
//! seconds between). A loop ends only when its [`Listener`] is stopped (graceful stop,
//! hand-over, a reload that removed the rule); a loop over many ends when all of them are.
//!
//! A rule's listener is served by *acceptors*: threads that each wait in `accept()` on it and
//! serve the client they get themselves, as the connection's first thread. The kernel wakes
//! exactly one waiting thread per client, so no connection is handed from an accept thread
//! to another (a wake-up and a wait fewer per connection). Before the last waiting acceptor
//! goes off to serve, it recruits another, so one always waits; up to [`MAX_ACCEPTORS`] wait
//! at once, and the extra ones leave after [`ACCEPT_WAIT`] without a client.

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::addr::Endpoint;
use crate::config::rule::Rule;
use crate::log::{self, Burst};
use crate::relay::Armed;
use crate::serve::listen::Socket;
use crate::serve::session;
use crate::serve::state::{self, Current, Slot};
use crate::stream::Stream;
use crate::sys::{self, reason, Preset};
use crate::threads;

/// At most this many acceptors wait on one listener at once. More would not accept any
/// faster (the kernel gives each client to one of them); each costs a thread and, on Linux,
/// a file descriptor (accept() reserves the new socket's number before it waits). Eight
/// absorb a burst of clients arriving together without a recruitment each (the hand-off this
/// design avoids), and when idle they are gone after [`ACCEPT_WAIT`]: eight threads and
/// eight descriptors at most per listener beyond the connections.
pub const MAX_ACCEPTORS: usize = 8;

/// How long an acceptor waits in `accept()` before it looks again: an extra one leaves then
/// (its thread ends: an idle thread is gone within 3 s, SPEC §3), and every one sees a stop
/// of a listener shared with another process (a hand-over) within this time. It is the
/// listener's receive timeout, which Linux applies to accept(); where it cannot be set, one
/// acceptor waits at a time.
pub const ACCEPT_WAIT: Duration = Duration::from_secs(2);

/// The timeouts a rule's own listening socket is given before it listens, so that every
/// client it accepts starts with them (`sys::listen_tcp`) and the relay sets neither on
/// connections that need no other (`relay::Armed`: two system calls fewer per connection):
/// [`ACCEPT_WAIT`] as the read timeout, which accept() itself needs, and the relay's check
/// interval for `rule`'s timeouts as the write timeout. A reload that changes the interval
/// leaves the listener's as it is; the relay then sets what differs.
pub fn preset(rule: &Rule) -> Preset {
    Preset {
        read: Some(ACCEPT_WAIT),
        write: state::timeouts(rule).tick(),
    }
}

/// Accept loops running now (a stop waits for them to end): each acceptor counts.
static LOOPS: AtomicUsize = AtomicUsize::new(0);

/// The accept loops still running.
pub fn loops_running() -> usize {
    LOOPS.load(Ordering::Acquire)
}

/// Counts one accept loop as running from before its thread starts until it ends.
pub struct LoopGuard(());

impl LoopGuard {
    /// Counts a loop about to start.
    pub fn new() -> LoopGuard {
        LOOPS.fetch_add(1, Ordering::AcqRel);
        LoopGuard(())
    }
}

impl Drop for LoopGuard {
    fn drop(&mut self) {
        LOOPS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A listening socket and whether its accept loop should go on.
pub struct Listener {
    socket: Socket,
    /// Another process holds the same socket (systemd's socket activation, or the process
    /// it is being handed to): stopping must not shut it down for that process too.
    shared: AtomicBool,
    stopped: AtomicBool,
    /// The socket timeouts every TCP client accepted here starts with (a Unix-domain client
    /// inherits nothing): set before the socket listened ([`preset`]), or none.
    inherited: Armed,
}

impl Listener {
    /// A listener for `socket`, whose clients inherit nothing known; `shared` if another
    /// process holds it too (handed over, or from systemd: anyone may have set it up).
    pub fn new(socket: impl Into<Socket>, shared: bool) -> Arc<Listener> {
        Listener::prepared(socket, Preset::default(), shared)
    }

    /// A listener for `socket`, whose TCP clients all start with the timeouts `inherited`.
    pub fn prepared(socket: impl Into<Socket>, inherited: Preset, shared: bool) -> Arc<Listener> {
        Arc::new(Listener {
            socket: socket.into(),
            shared: AtomicBool::new(shared),
            stopped: AtomicBool::new(false),
            inherited,
        })
    }

    /// The socket.
    pub fn socket(&self) -> &Socket {
        &self.socket
    }

    /// Whether another process holds it too.
    pub fn is_shared(&self) -> bool {
        self.shared.load(Ordering::Acquire)
    }

    /// Another process holds it from now on (it was handed over).
    pub fn share(&self) {
        self.shared.store(true, Ordering::Release);
    }

    /// Stops the accept loop. A socket of this process's own is shut down: new and queued
    /// clients are refused at once, and every acceptor wakes. A shared one is left listening
    /// for the other process, untouched (its accept timeout is that process's too): each
    /// acceptor sees the stop within [`ACCEPT_WAIT`] and leaves.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        if !self.is_shared() {
            let _ = sys::stop_listening(&self.socket);
        }
    }

    /// Whether it was stopped.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
}

/// A rule's listener and its acceptors.
struct Listening {
    acceptor: Acceptor,
    /// The rule's state now (a reload swaps it).
    current: Arc<Current>,
    /// Acceptors waiting for a client now, or about to (for a free place, then in accept()).
    waiting: AtomicUsize,
    /// [`MAX_ACCEPTORS`], or 1 where accept() cannot time out (an extra one could not leave).
    most: usize,
}

/// Serves the clients of one rule's listener until it is stopped, handing each the rule's
/// state current at the accept: on the calling thread and the acceptors it recruits (none
/// of which anybody waits for; `running` counts the first).
pub fn serve_rule(listener: Arc<Listener>, current: Arc<Current>, running: LoopGuard) {
    let acceptor = Acceptor::new(listener);
    let most = if acceptor.wakes { MAX_ACCEPTORS } else { 1 };
    let listening = Arc::new(Listening {
        acceptor,
        current,
        waiting: AtomicUsize::new(1),
        most,
    });
    accept_and_serve(&listening, running);
}

/// One acceptor's life: take a place, accept, serve the client on this thread, again, until
/// the listener is stopped. While the rule is at `--max-conns` it does not accept (clients
/// wait in the backlog).
fn accept_and_serve(listening: &Arc<Listening>, running: LoopGuard) {
    let listener = &listening.acceptor.listener;
    while !listener.is_stopped() {
        let state = listening.current.get();
        let mut slot = Slot::acquire(&state);
        let accepted = listening
            .acceptor
            .next(&state.troubles.accept, &state.label, || {
                state.counters.accept_errors.add(1)
            });
        let Some((client, peer)) = accepted else {
            // Stopped, nobody came for ACCEPT_WAIT, or descriptors ran short.
            drop(slot);
            if listener.is_stopped() || listening.leave_if_extra() {
                threads::retire();
                break;
            }
            continue;
        };
        if listening.waiting.fetch_sub(1, Ordering::AcqRel) == 1 {
            recruit(listening);
        }
        // A reload while this thread waited in accept() applies to this client already.
        slot.rebind(&listening.current.get());
        // What the listener had before it listened, the relay need not set again.
        let inherited = match client {
            Stream::Tcp(_) => listener.inherited,
            #[cfg(unix)]
            Stream::Unix(_) => Armed::NONE,
        };
        // A panic (a bug) ends this connection only; its slot is given back as it unwinds.
        let _ = panic::catch_unwind(AssertUnwindSafe(|| {
            session::serve(client, peer, slot, inherited)
        }));
        if !listening.wait_again() {
            // Enough acceptors wait: this thread becomes a spare (threads.rs).
            break;
        }
    }
    drop(running);
}

impl Listening {
    /// After serving a client: waits for the next one unless [`Listening::most`] already do.
    fn wait_again(&self) -> bool {
        self.waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.most).then_some(n + 1)
            })
            .is_ok()
    }

    /// After an accept wait without a client: whether this acceptor leaves (never the last).
    fn leave_if_extra(&self) -> bool {
        self.waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n > 1).then_some(n - 1)
            })
            .is_ok()
    }
}

/// Starts one more acceptor, counted as waiting (and running) from now. If no thread can be
/// started, the calling one accepts again after serving (clients wait in the backlog).
fn recruit(listening: &Arc<Listening>) {
    let state = listening.current.get();
    listening.waiting.fetch_add(1, Ordering::AcqRel);
    let (next, running) = (Arc::clone(listening), LoopGuard::new());
    match threads::start(move || accept_and_serve(&next, running)) {
        Ok(()) => {
            if let Some(ended) = state.troubles.spawn.clear() {
                log::problem(format_args!(
                    "accept threads start again on {} after {ended} ({} clients waited)",
                    state.label, ended.count
                ));
            }
        }
        Err(e) => {
            listening.waiting.fetch_sub(1, Ordering::AcqRel);
            state.troubles.spawn.problem(format_args!(
                "cannot start an accept thread on {}: {} (accepting again after this connection)",
                state.label,
                reason(&e)
            ));
        }
    }
}

/// A listener and its back-off, shared by the threads that accept on it.
pub struct Acceptor {
    listener: Arc<Listener>,
    backoff: Backoff,
    /// accept() gives up after [`ACCEPT_WAIT`] (where the OS allows it).
    wakes: bool,
}

impl Acceptor {
    /// An acceptor for `listener`, whose accept() is made to give up after [`ACCEPT_WAIT`]
    /// (Linux), so that a thread waiting in it sees a stop.
    pub fn new(listener: Arc<Listener>) -> Acceptor {
        let wakes = sys::set_accept_timeout(listener.socket(), Some(ACCEPT_WAIT)).is_ok();
        Acceptor {
            listener,
            backoff: Backoff::default(),
            wakes,
        }
    }

    /// Whether its listener was stopped.
    pub fn is_stopped(&self) -> bool {
        self.listener.is_stopped()
    }

    /// The next client; `None` once the listener is stopped, when its accept timeout ran out
    /// first, or after a pause for a shortage of descriptors or memory. A failed `accept()` is
    /// counted (`failed`), logged once per burst in `trouble` naming `label`, and retried after
    /// a growing pause.
    pub fn next(
        &self,
        trouble: &Burst,
        label: &str,
        mut failed: impl FnMut(),
    ) -> Option<(Stream, Endpoint)> {
        loop {
            let result = self.listener.socket.accept();
            if self.listener.is_stopped() {
                // Accepted before the stop took effect: still a client to serve.
                return result.ok();
            }
            match result {
                Ok(client) => {
                    if let Some(ended) = trouble.clear() {
                        log::problem(format_args!(
                            "accepting on {label} again after {ended} ({} failed accepts)",
                            ended.count
                        ));
                    }
                    self.backoff.reset();
                    return Some(client);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if sys::is_timeout(&e) => return None,
                Err(e) => {
                    failed();
                    trouble.problem(format_args!(
                        "accept failed on {label}: {} (backing off)",
                        reason(&e)
                    ));
                    self.backoff.wait();
                    // Out of descriptors: an extra acceptor leaves (each waiting one holds a
                    // descriptor that a connect to a target needs more).
                    if sys::is_local_shortage(&e) {
                        return None;
                    }
                }
            }
        }
    }
}

/// How often a poller looks again at a full rule's listener (left out of its poll meanwhile).
#[cfg(unix)]
const POLL_TICK: Duration = Duration::from_millis(10);

/// How long a poller waits at most while no rule is full: a stop of a socket of its own wakes
/// it at once (shut down, it is readable), the stop of a shared one (a hand-over) is seen
/// within this time; and each wake-up looks at all its listeners (10,000 idle rules cost
/// about 0.5 % of a core so, README "Thousands of rules").
#[cfg(unix)]
const POLL_IDLE: Duration = Duration::from_secs(2);

/// Clients a poller takes from one listener per round, so a busy rule cannot starve the rest.
#[cfg(unix)]
const BATCH: usize = 16;

/// Accepts for the listeners of many rules from one thread (Unix): a `poll()` over every
/// listener whose rule has a free place, then non-blocking accepts on the ready ones. One
/// thread blocked in `accept()` per listener would cost a thread each and, on Linux, a file
/// descriptor each (the kernel reserves the new connection's descriptor before it waits):
/// 10,000 rules would need 20,000 of each. A full rule's listener is left out of the poll
/// (its clients wait in the backlog) and looked at again every [`POLL_TICK`]. A stopped
/// listener leaves the group; the loop ends with the last one. The sockets must be
/// non-blocking; `running` counts each listener's loop.
#[cfg(unix)]
pub fn serve_many(mut group: Vec<(Arc<Listener>, Arc<Current>)>, mut running: Vec<LoopGuard>) {
    let trouble = Burst::default();
    let backoff = Backoff::default();
    loop {
        group.retain(|(listener, _)| {
            if !listener.is_stopped() {
                return true;
            }
            running.pop();
            false
        });
        if group.is_empty() {
            return;
        }
        let open: Vec<(&Arc<Listener>, &Arc<Current>)> = group
            .iter()
            .filter(|(_, current)| Slot::available(&current.get()))
            .map(|(l, c)| (l, c))
            .collect();
        let wait = if open.len() < group.len() {
            POLL_TICK
        } else {
            POLL_IDLE
        };
        let sockets: Vec<&Socket> = open.iter().map(|(l, _)| l.socket()).collect();
        let ready = match sys::readable(&sockets, Some(wait)) {
            Ok(ready) => {
                if let Some(ended) = trouble.clear() {
                    log::problem(format_args!(
                        "waiting for clients works again after {ended} ({} failures)",
                        ended.count
                    ));
                }
                ready
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                trouble.problem(format_args!(
                    "cannot wait for clients: {} (backing off)",
                    reason(&e)
                ));
                backoff.wait();
                continue;
            }
        };
        for (listener, current) in ready.into_iter().filter_map(|i| open.get(i)) {
            accept_ready(listener, current, &backoff);
        }
    }
}

/// Accepts what waits on one ready listener: at most [`BATCH`] clients, while the rule has
/// places.
#[cfg(unix)]
fn accept_ready(listener: &Listener, current: &Current, backoff: &Backoff) {
    for _ in 0..BATCH {
        let state = current.get();
        let Some(slot) = Slot::try_acquire(&state) else {
            return;
        };
        let (stream, peer) = match listener.socket().accept() {
            Ok(client) => client,
            Err(_) if listener.is_stopped() => return,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                state.counters.accept_errors.add(1);
                state.troubles.accept.problem(format_args!(
                    "accept failed on {}: {} (backing off)",
                    state.label,
                    reason(&e)
                ));
                backoff.wait();
                return;
            }
        };
        if let Some(ended) = state.troubles.accept.clear() {
            log::problem(format_args!(
                "accepting on {} again after {ended} ({} failed accepts)",
                state.label, ended.count
            ));
        }
        #[cfg(not(target_os = "linux"))]
        let _ = stream.set_nonblocking(false);
        start_session(stream, peer, slot, &state, backoff);
    }
}

/// Hands a client to a session thread of its own (a poller serves many listeners, so it
/// cannot serve the client itself); a thread that cannot start is logged once per burst and
/// backed off from.
#[cfg(unix)]
fn start_session(
    stream: Stream,
    peer: Endpoint,
    slot: Slot,
    state: &Arc<crate::serve::state::RuleState>,
    backoff: &Backoff,
) {
    if let Err(e) = session::start(stream, peer, slot) {
        state.troubles.spawn.problem(format_args!(
            "cannot start a connection thread on {}: {} (dropping clients until it works again)",
            state.label,
            reason(&e)
        ));
        backoff.wait();
    } else {
        if let Some(ended) = state.troubles.spawn.clear() {
            log::problem(format_args!(
                "connection threads start again on {} after {ended} ({} clients dropped)",
                state.label, ended.count
            ));
        }
        backoff.reset();
    }
}

/// Sleeps 10 ms after the first failure, doubling up to 1 s while failures go on (shared by
/// a listener's acceptors: a failure seen by one slows them all).
#[derive(Default)]
struct Backoff(AtomicUsize);

impl Backoff {
    fn wait(&self) {
        // Acceptors that fail at once may each double it: only a pause's length is at stake.
        let ms = (self.0.load(Ordering::Relaxed) * 2).clamp(10, 1000);
        self.0.store(ms, Ordering::Relaxed);
        thread::sleep(Duration::from_millis(ms as u64));
    }

    fn reset(&self) {
        if self.0.load(Ordering::Relaxed) != 0 {
            self.0.store(0, Ordering::Relaxed);
        }
    }
}

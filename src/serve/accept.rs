//! Accept loops: a rule's (limits, back-off, handing each client on), one for the listeners of
//! many rules at once (Unix), and the metrics one's. None spins: a failing `accept()` backs
//! off and is logged as a burst (start, end, at most one line per few seconds between). A
//! loop ends only when its [`Listener`] is stopped (graceful stop, hand-over, a reload that
//! removed the rule); a loop over many ends when all of them are.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::addr::Endpoint;
use crate::log::{self, Burst};
use crate::serve::listen::Socket;
use crate::serve::session;
use crate::serve::state::{Current, Slot};
use crate::stream::Stream;
use crate::sys::{self, reason};

/// How soon an accept loop on a socket another process shares sees that it was stopped.
const SHARED_WAKE: Duration = Duration::from_millis(100);

/// Accept loops running now (a stop waits for them to end).
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
    /// The thread running the accept loop, while it runs (a stop wakes it).
    thread: Mutex<Option<sys::ThreadId>>,
}

impl Listener {
    /// A listener for `socket`; `shared` if another process holds it too.
    pub fn new(socket: impl Into<Socket>, shared: bool) -> Arc<Listener> {
        Arc::new(Listener {
            socket: socket.into(),
            shared: AtomicBool::new(shared),
            stopped: AtomicBool::new(false),
            thread: Mutex::new(None),
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
    /// clients are refused at once, and the loop wakes. A shared one is left listening for
    /// the other process; the loop wakes within [`SHARED_WAKE`] (a receive timeout, which
    /// Linux applies to accept()) and closes this process's copy.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        if self.is_shared() || sys::stop_listening(&self.socket).is_err() {
            let _ = sys::set_accept_timeout(&self.socket, Some(SHARED_WAKE));
            // An accept() already waiting read the timeout before it was set: interrupted,
            // it starts again and reads it. The lock keeps the thread in its loop meanwhile.
            let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(thread) = *thread {
                sys::wake(thread);
            }
        }
    }

    /// The calling thread runs this listener's loop (`true`) or has left it (`false`): a stop
    /// wakes it.
    fn running_here(&self, yes: bool) {
        *self.thread.lock().unwrap_or_else(|e| e.into_inner()) = yes.then(sys::current_thread);
    }

    /// Whether it was stopped.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
}

/// Accepts clients of one rule until its listener is stopped, handing each the rule's state
/// current at the accept. While the rule is at `--max-conns` it does not accept (clients
/// wait in the backlog); a failing thread start backs off and is logged once per burst.
pub fn serve_rule(listener: Arc<Listener>, current: Arc<Current>, running: LoopGuard) {
    let mut acceptor = Acceptor::new(Arc::clone(&listener));
    while !listener.is_stopped() {
        let state = current.get();
        let mut slot = Slot::acquire(&state);
        let accepted = acceptor.next(&state.troubles.accept, &state.label, || {
            state.counters.accept_errors.add(1)
        });
        let Some((stream, peer)) = accepted else {
            break;
        };
        // A reload while this thread waited in accept() applies to this client already.
        let state = current.get();
        slot.rebind(&state);
        if let Err(e) = session::start(stream, peer, slot, &state) {
            state.troubles.spawn.problem(format_args!(
                "cannot start a connection thread on {}: {} (dropping clients until it works again)",
                state.label,
                reason(&e)
            ));
            acceptor.backoff.wait();
        } else {
            if let Some(ended) = state.troubles.spawn.clear() {
                log::problem(format_args!(
                    "connection threads start again on {} after {ended} ({} clients dropped)",
                    state.label, ended.count
                ));
            }
            acceptor.backoff.reset();
        }
    }
    drop(acceptor);
    drop(running);
}

/// A listener and its back-off, used by the one thread that runs the listener's loop.
pub struct Acceptor {
    listener: Arc<Listener>,
    backoff: Backoff,
}

impl Acceptor {
    /// An acceptor for `listener`, on the thread that will run its loop.
    pub fn new(listener: Arc<Listener>) -> Acceptor {
        listener.running_here(true);
        Acceptor {
            listener,
            backoff: Backoff::default(),
        }
    }

    /// The next client, or `None` once the listener is stopped. A failed `accept()` is
    /// counted (`failed`), logged once per burst in `trouble` naming `label`, and retried
    /// after a growing pause.
    pub fn next(
        &mut self,
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
                    return Some(client);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The receive timeout another process set to stop its own loop on a socket
                // this one shares (a hand-over): nothing failed.
                Err(e) if sys::is_timeout(&e) => {}
                Err(e) => {
                    failed();
                    trouble.problem(format_args!(
                        "accept failed on {label}: {} (backing off)",
                        reason(&e)
                    ));
                    self.backoff.wait();
                }
            }
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.listener.running_here(false);
        if self.listener.is_shared() {
            // The other process's accept() waits for ever again (after at most one more
            // timeout).
            let _ = sys::set_accept_timeout(self.listener.socket(), None);
        }
    }
}

/// How often a poller looks again at a full rule's listener (left out of its poll meanwhile).
#[cfg(unix)]
const POLL_TICK: Duration = Duration::from_millis(10);

/// How long a poller waits at most while no rule is full: a stop wakes it at once but for a
/// wake-up that came just before it began to wait (the hand-over's stop of a shared socket,
/// which is not shut down); and each wake-up looks at all its listeners (10,000 idle rules
/// cost about 0.5 % of a core so, README "Thousands of rules").
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
    for (listener, _) in &group {
        listener.running_here(true);
    }
    let trouble = Burst::default();
    let mut backoff = Backoff::default();
    loop {
        group.retain(|(listener, _)| {
            if !listener.is_stopped() {
                return true;
            }
            leave(listener);
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
            accept_ready(listener, current, &mut backoff);
        }
    }
}

/// A poller lets go of a stopped listener, as [`Acceptor`]'s drop does.
#[cfg(unix)]
fn leave(listener: &Listener) {
    listener.running_here(false);
    if listener.is_shared() {
        let _ = sys::set_accept_timeout(listener.socket(), None);
    }
}

/// Accepts what waits on one ready listener: at most [`BATCH`] clients, while the rule has
/// places.
#[cfg(unix)]
fn accept_ready(listener: &Listener, current: &Current, backoff: &mut Backoff) {
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

/// Hands a client to a session thread; a thread that cannot start is logged once per burst
/// and backed off from.
#[cfg(unix)]
fn start_session(
    stream: Stream,
    peer: Endpoint,
    slot: Slot,
    state: &Arc<crate::serve::state::RuleState>,
    backoff: &mut Backoff,
) {
    if let Err(e) = session::start(stream, peer, slot, state) {
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

/// Sleeps 10 ms after the first failure, doubling up to 1 s while failures go on.
#[derive(Default)]
struct Backoff(Duration);

impl Backoff {
    fn wait(&mut self) {
        self.0 = (self.0 * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
        thread::sleep(self.0);
    }

    fn reset(&mut self) {
        self.0 = Duration::ZERO;
    }
}

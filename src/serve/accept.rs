//! Accept loops: a rule's (limits, back-off, handing each client on), one for the listeners of
//! many rules at once, and the metrics one's. None ever exits or spins: a failing `accept()`
//! backs off and is logged as a burst (start, end, at most one line per few seconds between).

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::addr::Endpoint;
use crate::log::{self, Burst};
use crate::serve::listen::Listener;
use crate::serve::session;
use crate::serve::state::{RuleState, Slot};
use crate::stream::Stream;
use crate::sys::reason;

/// Accepts clients of one rule forever. While the rule is at `--max-conns` it does not accept
/// (clients wait in the backlog); a failing thread start backs off and is logged once per
/// burst.
pub fn serve_rule(socket: Listener, state: Arc<RuleState>) {
    let mut acceptor = Acceptor::new(socket);
    loop {
        let slot = Slot::acquire(&state);
        let (stream, peer) = acceptor.next(&state.troubles.accept, &state.label, || {
            state.counters.accept_errors.add(1)
        });
        start_session(stream, peer, slot, &state, &mut acceptor.backoff);
    }
}

/// Hands a client to a session thread; a thread that cannot start is logged once per burst
/// and backed off from.
fn start_session(
    stream: Stream,
    peer: Endpoint,
    slot: Slot,
    state: &Arc<RuleState>,
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

/// How often a poller looks again at a rule that was full (its listener is left out of the
/// poll meanwhile).
#[cfg(unix)]
const FULL_RECHECK: Duration = Duration::from_millis(10);

/// Clients a poller takes from one listener per round, so a busy rule cannot starve the rest.
#[cfg(unix)]
const BATCH: usize = 16;

/// Accepts for the listeners of many rules from one thread (Unix): a `poll()` over every
/// listener whose rule has a free place, then non-blocking accepts on the ready ones. One
/// thread blocked in `accept()` per listener would cost a thread each and, on Linux, a file
/// descriptor each (the kernel reserves the new connection's descriptor before it waits):
/// 10,000 rules would need 20,000 of each. A full rule's listener is left out of the poll
/// (its clients wait in the backlog), and the poll wakes every [`FULL_RECHECK`] to look again.
/// The listeners must be non-blocking.
#[cfg(unix)]
pub fn serve_many(group: Vec<(Listener, Arc<RuleState>)>) {
    let trouble = Burst::default();
    let mut backoff = Backoff::default();
    loop {
        let open: Vec<&(Listener, Arc<RuleState>)> =
            group.iter().filter(|(_, s)| Slot::available(s)).collect();
        let timeout = (open.len() < group.len()).then_some(FULL_RECHECK);
        let sockets: Vec<&Listener> = open.iter().map(|(l, _)| l).collect();
        let ready = match crate::sys::readable(&sockets, timeout) {
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
        for (listener, state) in ready.into_iter().filter_map(|i| open.get(i)) {
            accept_ready(listener, state, &mut backoff);
        }
    }
}

/// Accepts what waits on one ready listener, at most [`BATCH`] clients and while the rule
/// has places.
#[cfg(unix)]
fn accept_ready(listener: &Listener, state: &Arc<RuleState>, backoff: &mut Backoff) {
    for _ in 0..BATCH {
        let Some(slot) = Slot::try_acquire(state) else {
            return;
        };
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Some(ended) = state.troubles.accept.clear() {
                    log::problem(format_args!(
                        "accepting on {} again after {ended} ({} failed accepts)",
                        state.label, ended.count
                    ));
                }
                #[cfg(not(target_os = "linux"))]
                let _ = stream.set_nonblocking(false);
                start_session(stream, peer, slot, state, backoff);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
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
        }
    }
}

/// A listening socket: a rule's of either kind, or the metrics one.
pub trait Accept {
    /// What one `accept()` gives: the client's socket and address.
    type Client;
    /// Waits for the next client.
    fn accept_client(&self) -> io::Result<Self::Client>;
}

impl Accept for TcpListener {
    type Client = (TcpStream, SocketAddr);
    fn accept_client(&self) -> io::Result<Self::Client> {
        self.accept()
    }
}

impl Accept for Listener {
    type Client = (Stream, Endpoint);
    fn accept_client(&self) -> io::Result<Self::Client> {
        self.accept()
    }
}

/// A listening socket and its back-off.
pub struct Acceptor<L> {
    socket: L,
    backoff: Backoff,
}

impl<L: Accept> Acceptor<L> {
    /// An acceptor for `socket`.
    pub fn new(socket: L) -> Acceptor<L> {
        Acceptor {
            socket,
            backoff: Backoff::default(),
        }
    }

    /// The next client. A failed `accept()` is counted (`failed`), logged once per burst in
    /// `trouble` naming `label`, and retried after a growing pause.
    pub fn next(&mut self, trouble: &Burst, label: &str, mut failed: impl FnMut()) -> L::Client {
        loop {
            match self.socket.accept_client() {
                Ok(client) => {
                    if let Some(ended) = trouble.clear() {
                        log::problem(format_args!(
                            "accepting on {label} again after {ended} ({} failed accepts)",
                            ended.count
                        ));
                    }
                    return client;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
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

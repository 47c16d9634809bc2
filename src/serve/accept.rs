//! Accept loops: a rule's (limits, back-off, handing each client on) and the metrics one's.
//! Neither ever exits or spins: a failing `accept()` backs off and is logged once per burst.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::addr::Endpoint;
use crate::log::Burst;
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
        if let Err(e) = session::start(stream, peer, slot, &state) {
            state.troubles.spawn.problem(format_args!(
                "cannot start a connection thread on {}: {} (dropping clients until it works again)",
                state.label,
                reason(&e)
            ));
            acceptor.backoff.wait();
        } else {
            state.troubles.spawn.clear();
            acceptor.backoff.reset();
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
                    trouble.clear();
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

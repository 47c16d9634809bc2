//! Listening sockets and the accept loop: limits, back-off, and handing each client on.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use crate::addr::{self, Host, ListenAddr};
use crate::server::RuleState;
use crate::session;
use crate::sys;

/// A listener could not be opened: exit status 1.
#[derive(Debug)]
pub struct ListenError {
    /// The address as tried.
    pub addr: String,
    /// The OS reason.
    pub reason: String,
}

impl fmt::Display for ListenError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "cannot listen on {}: {}", self.addr, self.reason)
    }
}

/// Opens the sockets of a listen address: one, or for `:PORT` on a system without dual-stack
/// sockets, one per family.
pub fn open(listen: &ListenAddr, mss: Option<u32>) -> Result<Vec<TcpListener>, ListenError> {
    let sockets = match listen {
        ListenAddr::AnyHost(port) => open_any(*port)?,
        ListenAddr::Host(hp) => {
            let addr = match &hp.host {
                Host::Ip(ip) => SocketAddr::new(*ip, hp.port),
                Host::Name(_) => first_address(hp)?,
            };
            vec![bind(addr)?]
        }
    };
    if let Some(mss) = mss {
        for socket in &sockets {
            sys::set_mss(socket, mss).map_err(|e| failed(&listen.to_string(), &e))?;
        }
    }
    Ok(sockets)
}

fn first_address(hp: &addr::HostPort) -> Result<SocketAddr, ListenError> {
    let resolved = hp.resolve().map_err(|e| failed(&hp.to_string(), &e))?;
    resolved.first().copied().ok_or_else(|| ListenError {
        addr: hp.to_string(),
        reason: "the name resolves to no address".into(),
    })
}

/// `:PORT`: IPv6 `[::]` serves IPv4 too where the OS makes it dual-stack (Linux by default);
/// elsewhere, or without IPv6, `0.0.0.0` gets a socket of its own.
fn open_any(port: u16) -> Result<Vec<TcpListener>, ListenError> {
    let v6 = SocketAddr::new(addr::unspecified(true), port);
    let v4 = SocketAddr::new(addr::unspecified(false), port);
    match bind(v6) {
        Ok(socket) if sys::v6only(&socket) == Some(false) => Ok(vec![socket]),
        Ok(socket) => {
            // Same port for IPv4, even when the OS picked it for port 0.
            let port = socket.local_addr().map(|a| a.port()).unwrap_or(port);
            Ok(vec![socket, bind(SocketAddr::new(v4.ip(), port))?])
        }
        Err(_) => Ok(vec![bind(v4)?]),
    }
}

fn bind(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr).map_err(|e| failed(&addr.to_string(), &e))
}

fn failed(addr: &str, e: &io::Error) -> ListenError {
    ListenError {
        addr: addr.to_string(),
        reason: crate::reason(e),
    }
}

/// Accepts clients forever. It never exits and never spins: while the rule is at
/// `--max-conns` it does not accept (clients wait in the backlog); a failing `accept()` or
/// thread start backs off and is logged once per burst.
pub fn accept_loop(socket: TcpListener, state: Arc<RuleState>) {
    let mut backoff = Backoff::default();
    loop {
        let slot = Slot::acquire(&state);
        match socket.accept() {
            Ok((stream, peer)) => {
                backoff.reset();
                state.troubles.accept.clear();
                if let Err(e) = session::start(stream, peer, slot, &state) {
                    state.troubles.spawn.problem(format_args!(
                        "cannot start a connection thread on {}: {} (dropping clients until it works again)",
                        state.label,
                        crate::reason(&e)
                    ));
                    backoff.wait();
                } else {
                    state.troubles.spawn.clear();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                state.stats.accept_errors.add(1);
                state.troubles.accept.problem(format_args!(
                    "accept failed on {}: {} (backing off)",
                    state.label,
                    crate::reason(&e)
                ));
                backoff.wait();
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

/// Counts the rule's open client connections against `--max-conns`.
#[derive(Default)]
pub struct Slots {
    used: Mutex<usize>,
    freed: Condvar,
}

/// One of the rule's `--max-conns` places, given back when dropped.
pub struct Slot {
    state: Arc<RuleState>,
    counted: bool,
}

impl Slot {
    /// Waits until the rule has a free place and takes it.
    fn acquire(state: &Arc<RuleState>) -> Slot {
        let slots = &state.slots;
        let max = state.rule.options.max_conns;
        let mut used = slots.used.lock().unwrap_or_else(|e| e.into_inner());
        if *used >= max {
            state.stats.accept_paused.add(1);
            state.troubles.full.problem(format_args!(
                "{} has {max} connections (--max-conns): not accepting until one ends",
                state.label
            ));
            while *used >= max {
                used = slots.freed.wait(used).unwrap_or_else(|e| e.into_inner());
            }
            state.troubles.full.clear();
        }
        *used += 1;
        Slot {
            state: Arc::clone(state),
            counted: false,
        }
    }

    /// A client was accepted into this place: it counts as an open connection.
    pub fn count(&mut self) {
        self.state.stats.opened();
        self.counted = true;
    }

    /// The rule this place belongs to.
    pub fn state(&self) -> &Arc<RuleState> {
        &self.state
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let slots = &self.state.slots;
        let mut used = slots.used.lock().unwrap_or_else(|e| e.into_inner());
        *used = used.saturating_sub(1);
        if self.counted {
            self.state.stats.closed();
        }
        slots.freed.notify_one();
    }
}

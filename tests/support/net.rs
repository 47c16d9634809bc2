//! Plain TCP from the test's side: connecting (with timeouts, or from a chosen source
//! address), reading to EOF, test bytes, and addresses that are free, closed or never answer.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use super::sys;
use super::wait::PATIENCE;

/// Connects with read and write timeouts of [`PATIENCE`], so no test hangs forever.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, PATIENCE).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_write_timeout(Some(PATIENCE)).unwrap();
    s
}

/// Connects from a chosen loopback source address (127.0.0.2, ...), with the timeouts of
/// [`connect`] (Linux only: see `sys`).
pub fn connect_from(source: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = sys::connect_from(source.parse().unwrap(), addr)?;
    s.set_read_timeout(Some(PATIENCE))?;
    s.set_write_timeout(Some(PATIENCE))?;
    Ok(s)
}

/// Reads until EOF; panics on error or after [`PATIENCE`].
pub fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read to EOF");
    out
}

/// Deterministic test bytes.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A port on 127.0.0.1 that was free a moment ago, below the ephemeral range (see
/// [`LOW_PORTS`]): a port the OS picked for a port-0 bind and then closed could be handed to
/// another test's port-0 bind or outgoing connection before tcpfwd binds it (the 3,000-client
/// loads of `lifecycle` walk through thousands of ephemeral ports).
pub fn free_port() -> u16 {
    free_port_block(1)
}

/// The first of `count` consecutive ports that 127.0.0.1 could bind a moment ago (see
/// [`free_port_block_on`]).
pub fn free_port_block(count: u16) -> u16 {
    free_port_block_on("127.0.0.1", count)
}

/// Ports below the ephemeral range (32768 and up on Linux) that tests pick on purpose, so that
/// no test's port-0 bind or outgoing connection takes one meanwhile.
const LOW_PORTS: std::ops::Range<u32> = 10_000..32_000;

/// Ports this process has handed out, by host: never handed out again, so that tests running
/// at once in one test binary cannot be given the same port (one binding it between another's
/// check and its own bind). By host, as they bind: the 10,000-rule test's on 127.0.0.2 do not
/// use up 127.0.0.1's.
fn handed_out() -> std::sync::MutexGuard<'static, std::collections::HashSet<(String, u16)>> {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static GIVEN: OnceLock<Mutex<HashSet<(String, u16)>>> = OnceLock::new();
    let given = GIVEN.get_or_init(|| Mutex::new(HashSet::new()));
    given.lock().unwrap_or_else(|e| e.into_inner())
}

/// The first of `count` consecutive ports that `host` could bind a moment ago, in
/// [`LOW_PORTS`], none of them handed out before by this process. Each call of a process
/// starts further on.
pub fn free_port_block_on(host: &str, count: u16) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (low, span) = (LOW_PORTS.start, LOW_PORTS.len() as u32 - u32::from(count));
    let start = std::process::id() * 7919 + NEXT.fetch_add(4099, Ordering::SeqCst);
    let mut base = low + start % span;
    let mut given = handed_out();
    // Each try moves on by at least one port: enough tries to go once round the range.
    for _ in 0..LOW_PORTS.len() {
        let taken = |port: u16| {
            given.contains(&(host.to_string(), port)) || TcpListener::bind((host, port)).is_err()
        };
        match (0..count).find(|k| taken(base as u16 + k)) {
            None => {
                given.extend((0..count).map(|k| (host.to_string(), base as u16 + k)));
                return base as u16;
            }
            // Start again after the busy port.
            Some(k) => base = low + (base - low + u32::from(k) + 1) % span,
        }
    }
    panic!("no {count} free consecutive ports on {host} in {LOW_PORTS:?}");
}

/// `count` ports in [`LOW_PORTS`] outside `besides` that `host` could bind a moment ago, none
/// handed out before by this process.
pub fn free_ports_on(host: &str, count: usize, besides: std::ops::Range<u16>) -> Vec<u16> {
    let mut given = handed_out();
    let free: Vec<u16> = LOW_PORTS
        .filter_map(|p| u16::try_from(p).ok())
        .filter(|p| !besides.contains(p) && !given.contains(&(host.to_string(), *p)))
        .filter(|p| TcpListener::bind((host, *p)).is_ok())
        .take(count)
        .collect();
    assert_eq!(
        free.len(),
        count,
        "not {count} free ports on {host} ({} handed out before)",
        given.len()
    );
    given.extend(free.iter().map(|p| (host.to_string(), *p)));
    free
}

/// A loopback address nothing listens on (it could be bound a moment ago): connects to it are
/// refused. Below the ephemeral range like [`free_port`], so no other test's port-0 bind (a
/// backend, a tcpfwd on `127.0.0.1:0`) takes it meanwhile and answers in its place.
pub fn closed_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port_block(1)))
}

/// Whether this machine has an IPv6 loopback (tests that need it skip without).
pub fn ipv6_loopback() -> Option<TcpListener> {
    TcpListener::bind("[::1]:0").ok()
}

/// A loopback listener that never accepts and whose backlog is full, so a connect to it times
/// out (SYNs are dropped) instead of being refused. Keep both values alive while it is used.
/// Fills the backlog in a bounded loop: std listens with a backlog of 128 (129 connections
/// fit), and the loop stops at the first connect that times out. That timeout is 1 s, not
/// less: on a loaded machine the loopback handshake can wait for the kernel's softirq thread,
/// and a connect that is only slow would be taken for a full backlog (which then accepts).
pub fn full_backlog() -> (TcpListener, Vec<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    for _ in 0..5000 {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(s) => queued.push(s),
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                return (listener, queued)
            }
            Err(e) => panic!("filling the backlog: {e}"),
        }
    }
    panic!("the backlog never filled ({} connections)", queued.len());
}

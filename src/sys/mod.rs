//! The OS below std: Linux socket options and limits that std lacks (the only `unsafe` in
//! tcpfwd, in [`linux`], [`sigstack`], [`signals`] and `unix`), signals and inherited
//! descriptors, and what an I/O error means on this OS. Elsewhere than Linux these are
//! portable no-ops or clear "unsupported" errors.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

#[cfg(target_os = "linux")]
mod linux;
mod reason;
#[cfg(target_os = "linux")]
pub mod signals;
#[cfg(target_os = "linux")]
mod sigstack;
#[cfg(unix)]
mod unix;

pub use reason::reason;
#[cfg(target_os = "linux")]
pub use signals::Signals;
#[cfg(unix)]
pub use unix::{peek, readable};

/// A signal tcpfwd acts on (SPEC §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // only Linux's handlers make them
pub enum Signal {
    /// SIGHUP: reload the config file.
    Hup,
    /// SIGTERM or SIGINT: stop gracefully.
    Stop,
    /// SIGUSR2: hand the listeners over to a new process.
    Usr2,
}

/// Signals as messages to the main thread: not available here.
#[cfg(not(target_os = "linux"))]
pub struct Signals(());

#[cfg(not(target_os = "linux"))]
impl Signals {
    /// Always an error: signals keep their default action here.
    pub fn install() -> io::Result<Signals> {
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Never a signal.
    pub fn next(&mut self, limit: Option<Duration>) -> Option<Signal> {
        let _ = limit;
        None
    }
}

/// A stream inherited from the process that started this one (the hand-over's readiness
/// pipe).
#[cfg(target_os = "linux")]
pub type Pipe = std::os::unix::net::UnixStream;
/// A stream inherited from the process that started this one (none here).
#[cfg(not(target_os = "linux"))]
pub type Pipe = io::Sink;

/// A socket these calls can be made on: anything with a file descriptor on Unix (a TCP or a
/// Unix-domain listener); elsewhere the calls do nothing and anything will do.
#[cfg(unix)]
pub trait SocketFd: std::os::fd::AsRawFd {}
#[cfg(unix)]
impl<T: std::os::fd::AsRawFd> SocketFd for T {}
/// A socket these calls can be made on (here they do nothing).
#[cfg(not(unix))]
pub trait SocketFd {}
#[cfg(not(unix))]
impl<T> SocketFd for T {}

/// Whether `e` is the expiry of a timeout set with `set_read_timeout`/`set_write_timeout`:
/// `WouldBlock` on Unix (std reports SO_RCVTIMEO's EAGAIN so), `TimedOut` on Windows. On Unix
/// `TimedOut` is ETIMEDOUT, the kernel giving up on the peer (keepalive or retransmissions):
/// a failure of the connection, never a timeout of tcpfwd's.
pub fn is_timeout(e: &io::Error) -> bool {
    match e.kind() {
        io::ErrorKind::WouldBlock => true,
        io::ErrorKind::TimedOut => cfg!(windows),
        _ => false,
    }
}

/// Whether a socket whose read just returned 0 was closed by a failure (a reset, or the
/// kernel giving up: the error itself went to another thread's call) rather than by the
/// peer's FIN. Only meaningful while this side has not sent its own FIN. Linux reads the
/// TCP state; elsewhere `false`.
pub fn closed_by_failure(stream: &TcpStream) -> bool {
    #[cfg(target_os = "linux")]
    {
        linux::tcp_state(stream).is_ok_and(|s| s == linux::TCP_CLOSE)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = stream;
        false
    }
}

/// Turns TCP keepalive on with the first probe after `idle` (then every 10 s, 6 probes: a dead
/// peer is found about a minute later), or off with `None`. Outside Linux: a no-op.
pub fn set_keepalive(stream: &TcpStream, idle: Option<Duration>) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use linux::*;
        let Some(idle) = idle else { return Ok(()) };
        let secs = std::ffi::c_int::try_from(idle.as_secs().max(1)).unwrap_or(std::ffi::c_int::MAX);
        set_int(stream, SOL_SOCKET, SO_KEEPALIVE, 1)?;
        set_int(stream, IPPROTO_TCP, TCP_KEEPIDLE, secs)?;
        set_int(stream, IPPROTO_TCP, TCP_KEEPINTVL, 10)?;
        set_int(stream, IPPROTO_TCP, TCP_KEEPCNT, 6)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (stream, idle);
        Ok(())
    }
}

/// Sets TCP_MAXSEG on a listening socket: connections accepted later advertise and use it.
pub fn set_mss(listener: &TcpListener, mss: u32) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let value = std::ffi::c_int::try_from(mss).map_err(|_| io::ErrorKind::InvalidInput)?;
        linux::set_int(listener, linux::IPPROTO_TCP, linux::TCP_MAXSEG, value)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (listener, mss);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "--mss is supported on Linux only",
        ))
    }
}

/// Sets the listen backlog of a listening socket (std's `bind` listens with 128): Linux
/// takes a second `listen()` and caps the value at `net.core.somaxconn`. Elsewhere a no-op:
/// std's 128 stays.
pub fn set_backlog(listener: &impl SocketFd, backlog: u32) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let value = std::ffi::c_int::try_from(backlog).unwrap_or(std::ffi::c_int::MAX);
        linux::listen_again(listener, value)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (listener, backlog);
        Ok(())
    }
}

/// Whether an IPv6 listener refuses IPv4 clients (`None` where it cannot be read).
pub fn v6only(listener: &TcpListener) -> Option<bool> {
    #[cfg(target_os = "linux")]
    {
        linux::get_int(listener, linux::IPPROTO_IPV6, linux::IPV6_V6ONLY)
            .ok()
            .map(|v| v != 0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = listener;
        None
    }
}

/// Whether `e` says that tcpfwd (or the system) ran out of file descriptors (EMFILE,
/// ENFILE) or memory, rather than that the peer failed. Not EADDRNOTAVAIL: it also means
/// "no route from any local address" (`::1` on a host without IPv6), and even when it
/// means "no free local port" that is per destination, so another target may still work.
pub fn is_local_shortage(e: &io::Error) -> bool {
    // ENFILE and EMFILE are 23 and 24 on Linux (every architecture), macOS and the BSDs;
    // WSAEMFILE on Windows. ENOBUFS differs per architecture even on Linux: left out.
    #[cfg(unix)]
    const OUT_OF_DESCRIPTORS: &[i32] = &[23, 24];
    #[cfg(windows)]
    const OUT_OF_DESCRIPTORS: &[i32] = &[10024];
    #[cfg(not(any(unix, windows)))]
    const OUT_OF_DESCRIPTORS: &[i32] = &[];
    e.kind() == io::ErrorKind::OutOfMemory
        || e.raw_os_error()
            .is_some_and(|code| OUT_OF_DESCRIPTORS.contains(&code))
}

/// Keeps malloc from giving every busy thread an arena of its own (glibc makes up to eight
/// per core, each keeping what its threads freed): two arenas hold the relay's few
/// allocations (a copy buffer per direction, once) without contention worth measuring, and
/// RSS after a burst of 5,000 connections is 2 MB lower (README "Memory after a burst").
/// Elsewhere a no-op.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    linux::limit_arenas(2);
}

/// Gives memory that malloc keeps after a burst of connections back to the system (glibc
/// keeps freed arenas' memory otherwise: RSS stayed at the burst's peak). Elsewhere a no-op:
/// musl returns freed memory by itself.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    linux::trim_heap();
}

/// Raises the soft open-file limit to the hard one; returns the limit now in force.
pub fn raise_fd_limit() -> io::Result<u64> {
    #[cfg(target_os = "linux")]
    {
        let mut limit = linux::nofile_limit()?;
        if limit.cur < limit.max {
            limit.cur = limit.max;
            linux::set_nofile_limit(&limit)?;
        }
        #[allow(clippy::useless_conversion)] // rlim_t is 32 bits on some targets
        Ok(u64::from(limit.cur))
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// Undoes what tcpfwd's ELF constructor did before `main` (Linux): SIGSEGV and SIGBUS are
/// set to be ignored before std's start-up, so that std gives no thread a signal alternate
/// stack (two memory mappings per thread: with two threads per connection, `vm.max_map_count`
/// would otherwise cap the process near 8,000 connections). Called first thing in `main`. The
/// price: a stack overflow kills the process with SIGSEGV, without std's message.
pub fn fault_signals_to_default() {
    #[cfg(target_os = "linux")]
    sigstack::fault_signals_to_default();
}

/// Stops a listening socket for every process that holds it: queued and new connects are
/// refused, and a thread blocked in `accept()` on it wakes (Linux: shutdown(SHUT_RD)).
pub fn stop_listening(listener: &impl SocketFd) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        linux::shutdown_read(listener)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = listener;
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// Makes `accept()` on `listener` give up after `limit` (`None`: wait for ever), so an accept
/// loop sees a stop without touching a socket another process shares (Linux: SO_RCVTIMEO).
pub fn set_accept_timeout(listener: &impl SocketFd, limit: Option<Duration>) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let micros = limit.map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        linux::set_receive_timeout(listener, micros.max(u64::from(limit.is_some())))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (listener, limit);
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// Cuts a connection: the peer gets an RST (not a FIN), and threads blocked on the socket
/// wake with an error; the socket stays open for its owner (Linux: connect to AF_UNSPEC).
/// Elsewhere: shut down both directions.
pub fn reset(stream: &TcpStream) {
    #[cfg(target_os = "linux")]
    let _ = linux::disconnect(stream);
    #[cfg(not(target_os = "linux"))]
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Lets a descriptor be inherited by a program started next (`true`), or not (`false`).
#[cfg(target_os = "linux")]
pub fn set_inherited(fd: std::os::fd::RawFd, inherited: bool) -> io::Result<()> {
    linux::set_cloexec(fd, !inherited)
}

/// Takes ownership of an inherited listening TCP socket, `fd` (named by systemd's LISTEN_FDS
/// or by the process that handed it over); it is closed on exec from now on. An error if
/// `fd` is not open or not a listening TCP socket; then it is left alone. Linux only.
pub fn adopt_listener(fd: i32) -> io::Result<TcpListener> {
    #[cfg(target_os = "linux")]
    {
        linux::adopt_listener(fd)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = fd;
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// [`adopt_listener`] for a Unix-domain listening socket. Linux only.
#[cfg(unix)]
pub fn adopt_unix_listener(fd: i32) -> io::Result<std::os::unix::net::UnixListener> {
    #[cfg(target_os = "linux")]
    {
        linux::adopt_unix_listener(fd)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = fd;
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// Takes ownership of an inherited stream socket `fd` (the hand-over's readiness pipe).
/// Linux only.
pub fn adopt_pipe(fd: i32) -> io::Result<Pipe> {
    #[cfg(target_os = "linux")]
    {
        linux::adopt_stream(fd)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = fd;
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// A thread that [`wake`] can interrupt.
#[cfg(target_os = "linux")]
pub use signals::ThreadId;
/// A thread that [`wake`] can interrupt (nothing to interrupt here).
#[cfg(not(target_os = "linux"))]
#[derive(Clone, Copy, Debug)]
pub struct ThreadId;

/// The calling thread.
pub fn current_thread() -> ThreadId {
    #[cfg(target_os = "linux")]
    {
        signals::current_thread()
    }
    #[cfg(not(target_os = "linux"))]
    {
        ThreadId
    }
}

/// Interrupts the blocking call `thread` is in, which then starts again (and an accept()
/// reads its receive timeout anew). `thread` must not have exited.
pub fn wake(thread: ThreadId) {
    #[cfg(target_os = "linux")]
    signals::wake(thread);
    #[cfg(not(target_os = "linux"))]
    let _ = thread;
}

//! The OS below std: Linux socket options and limits that std lacks (the only `unsafe` in
//! tcpfwd, in [`linux`], [`sigstack`], [`signals`] and `unix`), signals and inherited
//! descriptors, and what an I/O error means on this OS. Elsewhere than Linux these are
//! portable no-ops or clear "unsupported" errors.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

#[cfg(target_os = "linux")]
mod linux;
mod reason;
mod signal;
#[cfg(target_os = "linux")]
pub mod signals;
#[cfg(target_os = "linux")]
mod signo;
#[cfg(target_os = "linux")]
mod sigstack;
#[cfg(unix)]
mod unix;

pub use reason::reason;
pub use signal::Signal;
#[cfg(target_os = "linux")]
pub use signals::Signals;
#[cfg(unix)]
pub use unix::{peek, readable};

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

/// TCP keepalive timing: the first probe after `idle` without traffic, then one every
/// `interval`; after `count` unanswered probes the connection is given up (ETIMEDOUT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Quiet time before the first probe (whole seconds, 1 to 32767: Linux's range).
    pub idle: Duration,
    /// Between probes (whole seconds, 1 to 32767).
    pub interval: Duration,
    /// Unanswered probes before giving up (1 to 127).
    pub count: u32,
}

impl Keepalive {
    /// The probe interval when none is given: a dead peer is found about a minute after the
    /// first probe.
    pub const INTERVAL: Duration = Duration::from_secs(10);
    /// The probe count when none is given.
    pub const COUNT: u32 = 6;
    /// The largest idle time and interval Linux accepts (TCP_MAX_KEEPIDLE, TCP_MAX_KEEPINTVL).
    pub const MAX_SECS: u64 = 32_767;
    /// The largest probe count Linux accepts (TCP_MAX_KEEPCNT).
    pub const MAX_COUNT: u32 = 127;
}

/// The TCP options of one leg: the listening socket (whose accepted sockets inherit them) or
/// a socket to a target (set before it connects).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    /// TCP_NODELAY: no added delay of Nagle's algorithm.
    pub nodelay: bool,
    /// SO_KEEPALIVE and its timing; `None` = off.
    pub keepalive: Option<Keepalive>,
    /// TCP_MAXSEG: the largest segment this socket advertises and sends (Linux).
    pub mss: Option<u32>,
    /// TCP_CONGESTION: the congestion control by name; `None` = the system's (Linux).
    pub congestion: Option<String>,
    /// TCP_USER_TIMEOUT: how long sent data may stay unacknowledged before the kernel gives
    /// the connection up; `None` = the kernel's own rule (Linux).
    pub user_timeout: Option<Duration>,
}

/// Why [`connect`] failed.
#[derive(Debug)]
pub enum ConnectError {
    /// The socket could not be made ready here (`what` names the step): tcpfwd's own
    /// problem, the same for every target. (Elsewhere than Linux std makes the socket.)
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    Local {
        /// The step, as a user reads it: `bind to --source 192.0.2.1`.
        what: String,
        /// The OS error.
        error: io::Error,
    },
    /// connect() failed: the target's problem.
    Failed(io::Error),
    /// The budget ran out before the target answered.
    TimedOut,
}

/// Opens a TCP connection to `addr` within `budget`, its options set before it connects
/// (TCP_MAXSEG and TCP_CONGESTION must precede the SYN), leaving from `source` when it is of
/// `addr`'s family (port chosen by the OS).
///
/// Linux: socket(), the options, bind() for `source`, then one blocking connect() bounded by
/// SO_SNDTIMEO (the kernel honours it for connect and fails with EINPROGRESS when it
/// expires): three or four system calls where std's `connect_timeout` makes six
/// (FIONBIO on, connect, poll, SO_ERROR, FIONBIO off). SO_SNDTIMEO is cleared afterwards
/// unless `keep_send_timeout` says the caller sets its own before it writes.
/// Elsewhere: std's `connect_timeout`, then TCP_NODELAY (the Linux-only options are refused
/// when the rule is parsed).
pub fn connect(
    addr: SocketAddr,
    options: &TcpOptions,
    source: Option<IpAddr>,
    budget: Duration,
    keep_send_timeout: bool,
) -> Result<TcpStream, ConnectError> {
    #[cfg(target_os = "linux")]
    {
        linux_connect(addr, options, source, budget, keep_send_timeout)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (source, keep_send_timeout);
        let stream = TcpStream::connect_timeout(&addr, budget).map_err(|e| {
            if matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ) {
                ConnectError::TimedOut
            } else {
                ConnectError::Failed(e)
            }
        })?;
        let _ = stream.set_nodelay(options.nodelay);
        Ok(stream)
    }
}

#[cfg(target_os = "linux")]
fn linux_connect(
    addr: SocketAddr,
    options: &TcpOptions,
    source: Option<IpAddr>,
    budget: Duration,
    keep_send_timeout: bool,
) -> Result<TcpStream, ConnectError> {
    use linux::*;
    let deadline = std::time::Instant::now() + budget;
    let local = |what: String| move |error| ConnectError::Local { what, error };
    let stream = tcp_socket(&addr).map_err(local("open a socket".into()))?;
    apply(&stream, options, true).map_err(|(what, e)| local(what)(e))?;
    if let Some(ip) = source.filter(|ip| ip.is_ipv4() == addr.is_ipv4()) {
        // The port is chosen at connect(), per destination, not at bind() from one pool for
        // every destination (Linux 4.2+; older kernels refuse the option: bind picks it).
        let _ = set_int(&stream, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1);
        bind_to(&stream, &SocketAddr::new(ip, 0))
            .map_err(local(format!("bind to --source {ip}")))?;
    }
    stream
        .set_write_timeout(Some(budget.max(Duration::from_micros(1))))
        .map_err(local("set SO_SNDTIMEO".into()))?;
    let mut result = connect_to(&stream, &addr);
    loop {
        match result {
            Ok(()) => break,
            // A signal arrived: the handshake goes on in the kernel; a second connect()
            // waits for it again (EALREADY if it still has not finished in time).
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() || stream.set_write_timeout(Some(left)).is_err() {
                    return Err(ConnectError::TimedOut);
                }
                result = connect_to(&stream, &addr);
            }
            Err(e) if matches!(e.raw_os_error(), Some(EINPROGRESS | EALREADY)) => {
                return Err(ConnectError::TimedOut)
            }
            Err(e) => return Err(ConnectError::Failed(e)),
        }
    }
    if !keep_send_timeout {
        stream
            .set_write_timeout(None)
            .map_err(local("clear SO_SNDTIMEO".into()))?;
    }
    Ok(stream)
}

/// Sets `options` on a socket. A `fresh` socket has the kernel's defaults, so only what
/// differs is set; otherwise (a listener kept over a reload) every option is set, the
/// defaults back included. The error names the option.
#[cfg(target_os = "linux")]
fn apply(
    sock: &impl std::os::fd::AsRawFd,
    o: &TcpOptions,
    fresh: bool,
) -> Result<(), (String, io::Error)> {
    use linux::*;
    let named = |what: &str| {
        let what = what.to_string();
        move |e| (what, e)
    };
    if o.nodelay || !fresh {
        set_int(sock, IPPROTO_TCP, TCP_NODELAY, c_int::from(o.nodelay))
            .map_err(named("set TCP_NODELAY"))?;
    }
    if o.keepalive.is_some() || !fresh {
        set_keepalive(sock, o.keepalive).map_err(named("set keepalive"))?;
    }
    if o.mss.is_some() || !fresh {
        // 0 takes a clamp away.
        let mss = c_int::try_from(o.mss.unwrap_or(0)).map_err(|_| io::ErrorKind::InvalidInput);
        mss.map_err(io::Error::from)
            .and_then(|mss| set_int(sock, IPPROTO_TCP, TCP_MAXSEG, mss))
            .map_err(named("set TCP_MAXSEG (--mss)"))?;
    }
    if o.user_timeout.is_some() || !fresh {
        set_int(
            sock,
            IPPROTO_TCP,
            TCP_USER_TIMEOUT,
            user_timeout_ms(o.user_timeout),
        )
        .map_err(named("set TCP_USER_TIMEOUT (--user-timeout)"))?;
    }
    let congestion = match &o.congestion {
        Some(name) => Some(name.clone()),
        // Back to the system's: its name as it is now.
        None if !fresh => std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
            .ok()
            .map(|s| s.trim().to_string()),
        None => None,
    };
    if let Some(name) = congestion {
        set_bytes(sock, IPPROTO_TCP, TCP_CONGESTION, name.as_bytes())
            .map_err(named(&format!("set TCP_CONGESTION {name} (--congestion)")))?;
    }
    Ok(())
}

/// TCP_USER_TIMEOUT in milliseconds, 0 = the kernel's rule.
#[cfg(target_os = "linux")]
fn user_timeout_ms(timeout: Option<Duration>) -> std::ffi::c_int {
    let ms = timeout.map_or(0, |d| d.as_millis().max(1));
    std::ffi::c_int::try_from(ms).unwrap_or(std::ffi::c_int::MAX)
}

/// SO_KEEPALIVE with its timing, or off.
#[cfg(target_os = "linux")]
fn set_keepalive(sock: &impl std::os::fd::AsRawFd, keepalive: Option<Keepalive>) -> io::Result<()> {
    use linux::*;
    let Some(k) = keepalive else {
        return set_int(sock, SOL_SOCKET, SO_KEEPALIVE, 0);
    };
    let secs = |d: Duration| c_int::try_from(d.as_secs().max(1)).unwrap_or(c_int::MAX);
    let count = c_int::try_from(k.count).unwrap_or(c_int::MAX);
    set_int(sock, SOL_SOCKET, SO_KEEPALIVE, 1)?;
    set_int(sock, IPPROTO_TCP, TCP_KEEPIDLE, secs(k.idle))?;
    set_int(sock, IPPROTO_TCP, TCP_KEEPINTVL, secs(k.interval))?;
    set_int(sock, IPPROTO_TCP, TCP_KEEPCNT, count)
}

/// Sets a rule's client-leg options on its listening socket (`fresh`: just opened, so only
/// what differs from the kernel's defaults; else every option, for a listener kept over a
/// reload). On Linux an accepted socket inherits them all from the listener — TCP_NODELAY,
/// SO_KEEPALIVE with TCP_KEEPIDLE/INTVL/CNT, TCP_MAXSEG, TCP_CONGESTION and
/// TCP_USER_TIMEOUT, each read back with getsockopt on an accepted socket (kernel 6.18,
/// `tests/acceleration.rs`) — so nothing is set per accepted client. Elsewhere: nothing
/// here; [`configure_accepted`] sets TCP_NODELAY on each client.
pub fn set_listener_options(
    listener: &TcpListener,
    options: &TcpOptions,
    fresh: bool,
) -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        apply(listener, options, fresh)
            .map_err(|(what, e)| format!("cannot {what}: {}", reason(&e)))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (listener, options, fresh);
        Ok(())
    }
}

/// A socket's read and write timeouts (`None` = none): those a listener is given before it
/// listens (Linux), which every client it accepts starts with, and those the relay finds on
/// a socket (`relay::Armed`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Preset {
    /// The read timeout (SO_RCVTIMEO, which Linux also applies to accept()).
    pub read: Option<Duration>,
    /// The write timeout (SO_SNDTIMEO).
    pub write: Option<Duration>,
}

impl Preset {
    /// No timeouts: a socket as created, or after a header was read with a deadline.
    pub const NONE: Preset = Preset {
        read: None,
        write: None,
    };
}

/// Opens a TCP listener on `addr` with `backlog` (std's 128 when `None`) whose client-leg
/// `options` and `preset` timeouts are set *before* it listens (Linux), so that every client
/// it accepts, the first one too, inherits them: set after listen(), a client whose
/// handshake completed in between would have none. std's `bind` listens at once, so on Linux
/// the socket is made here as std makes it (close-on-exec, SO_REUSEADDR). `Ok(true)`: the
/// preset is inherited. Elsewhere std's bind, the options where they apply, and `false`.
/// The error is the reason, for "cannot listen on ADDR: ...".
pub fn listen_tcp(
    addr: SocketAddr,
    options: &TcpOptions,
    preset: Preset,
    backlog: Option<u32>,
) -> Result<(TcpListener, bool), String> {
    #[cfg(target_os = "linux")]
    {
        use linux::*;
        let socket = tcp_socket(&addr).map_err(|e| reason(&e))?;
        set_int(&socket, SOL_SOCKET, SO_REUSEADDR, 1)
            .map_err(|e| format!("cannot set SO_REUSEADDR: {}", reason(&e)))?;
        apply(&socket, options, true)
            .map_err(|(what, e)| format!("cannot {what}: {}", reason(&e)))?;
        for (name, limit) in [(SO_RCVTIMEO, preset.read), (SO_SNDTIMEO, preset.write)] {
            if limit.is_some() {
                set_timeout(&socket, name, limit)
                    .map_err(|e| format!("cannot set a socket timeout: {}", reason(&e)))?;
            }
        }
        bind_to(&socket, &addr).map_err(|e| reason(&e))?;
        let backlog = std::ffi::c_int::try_from(backlog.unwrap_or(128)).unwrap_or(c_int::MAX);
        listen_again(&socket, backlog).map_err(|e| reason(&e))?;
        let fd = std::os::fd::OwnedFd::from(socket);
        Ok((TcpListener::from(fd), true))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (options, preset);
        let listener = TcpListener::bind(addr).map_err(|e| reason(&e))?;
        if let Some(backlog) = backlog {
            set_backlog(&listener, backlog).map_err(|e| reason(&e))?;
        }
        Ok((listener, false))
    }
}

/// Options on an accepted client socket that it did not inherit from its listener: nothing
/// on Linux (see [`set_listener_options`]), TCP_NODELAY elsewhere.
pub fn configure_accepted(stream: &TcpStream, nodelay: bool) {
    #[cfg(target_os = "linux")]
    let _ = (stream, nodelay);
    #[cfg(not(target_os = "linux"))]
    let _ = stream.set_nodelay(nodelay);
}

/// Whether this kernel lets tcpfwd use the congestion control `name`: `Err` is the sentence
/// for the user, naming what is available (and allowed, when that is the reason). Tried on
/// a socket of its own, as the kernel would judge a real one. Elsewhere than Linux: `Err`.
pub fn check_congestion(name: &str) -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        let any: SocketAddr = (std::net::Ipv4Addr::UNSPECIFIED, 0).into();
        let probe = linux::tcp_socket(&any).map_err(|e| reason(&e))?;
        let list = |file: &str| {
            std::fs::read_to_string(format!("/proc/sys/net/ipv4/{file}"))
                .map(|s| s.split_whitespace().collect::<Vec<_>>().join(", "))
                .unwrap_or_else(|_| "unknown".into())
        };
        match linux::set_bytes(
            &probe,
            linux::IPPROTO_TCP,
            linux::TCP_CONGESTION,
            name.as_bytes(),
        ) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(format!(
                "'{name}' is not offered by this kernel (available: {})",
                list("tcp_available_congestion_control")
            )),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(format!(
                "'{name}' is not allowed: tcpfwd is not root (no CAP_NET_ADMIN) and \
                 net.ipv4.tcp_allowed_congestion_control does not list it (allowed: {})",
                list("tcp_allowed_congestion_control")
            )),
            Err(e) => Err(format!("'{name}': {}", reason(&e))),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = name;
        Err("supported on Linux only".into())
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

/// Makes `accept()` on `listener` give up after `limit` (`None`: wait for ever): Linux
/// applies SO_RCVTIMEO to accept() (EAGAIN, a [`is_timeout`] error, when it runs out), and the
/// sockets it accepts start with it as their read timeout. Elsewhere unsupported.
pub fn set_accept_timeout(listener: &impl SocketFd, limit: Option<Duration>) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        linux::set_timeout(listener, linux::SO_RCVTIMEO, limit)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (listener, limit);
        Err(io::ErrorKind::Unsupported.into())
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

/// Runs the calling thread, and every thread it starts from now on (they inherit it), under
/// Linux's `SCHED_BATCH` policy, unless whoever started tcpfwd chose a policy other than the
/// default. A batch thread that wakes (data arrived) does not preempt the thread running on
/// its CPU; it runs when that one blocks or its time slice ends. A connection wakes its two
/// threads about five times, and each preemption is a switch more: README "Scheduling".
/// Called before any thread starts; elsewhere, or if it fails, nothing changes.
pub fn batch_scheduling() {
    #[cfg(target_os = "linux")]
    let _ = linux::batch_scheduling();
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn only_an_expired_socket_timeout_is_a_timeout() {
        // SO_RCVTIMEO/SO_SNDTIMEO expiring is EAGAIN (WouldBlock); ETIMEDOUT (TimedOut) is
        // the kernel giving up on the peer, a failure.
        assert!(is_timeout(&io::Error::from(io::ErrorKind::WouldBlock)));
        assert!(!is_timeout(&io::Error::from(io::ErrorKind::TimedOut)));
        let etimedout = if cfg!(any(target_arch = "mips", target_arch = "mips64")) {
            145
        } else {
            110
        };
        assert!(!is_timeout(&io::Error::from_raw_os_error(etimedout)));
        assert!(!is_timeout(&io::Error::from(
            io::ErrorKind::ConnectionReset
        )));
    }

    #[test]
    fn a_listener_made_here_passes_its_options_and_preset_to_every_client() {
        let options = TcpOptions {
            nodelay: true,
            ..TcpOptions::default()
        };
        let preset = Preset {
            read: Some(Duration::from_secs(2)),
            write: Some(Duration::from_secs(7)),
        };
        let any: SocketAddr = (std::net::Ipv4Addr::LOCALHOST, 0).into();
        let (listener, inherited) = listen_tcp(any, &options, preset, Some(16)).unwrap();
        assert!(inherited);
        // As std's bind: the address reused (a restart binds over TIME_WAIT), never the port.
        let reuse_port = if cfg!(any(target_arch = "mips", target_arch = "mips64")) {
            0x200
        } else {
            15
        };
        let get = |name| linux::get_int(&listener, linux::SOL_SOCKET, name).unwrap();
        assert_eq!((get(linux::SO_REUSEADDR), get(reuse_port)), (1, 0));
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert_eq!(accepted.read_timeout().unwrap(), preset.read);
        assert_eq!(accepted.write_timeout().unwrap(), preset.write);
        assert!(accepted.nodelay().unwrap());
    }
}

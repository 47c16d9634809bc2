//! The only module with `unsafe`: Linux socket and resource calls that std lacks.
//! Everywhere else these are portable no-ops or clear "unsupported" errors.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

#[cfg(target_os = "linux")]
mod linux {
    #![allow(unsafe_code)]
    use std::ffi::{c_int, c_void};
    use std::io;
    use std::net::{IpAddr, SocketAddr, TcpStream};
    use std::os::fd::{AsRawFd, FromRawFd};

    // Linux socket constants. MIPS numbers SOL_SOCKET and its options differently.
    #[cfg(any(target_arch = "mips", target_arch = "mips64"))]
    pub const SOL_SOCKET: c_int = 0xffff;
    #[cfg(any(target_arch = "mips", target_arch = "mips64"))]
    pub const SO_KEEPALIVE: c_int = 8;
    #[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
    pub const SOL_SOCKET: c_int = 1;
    #[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
    pub const SO_KEEPALIVE: c_int = 9;
    pub const IPPROTO_TCP: c_int = 6;
    pub const TCP_MAXSEG: c_int = 2;
    pub const TCP_KEEPIDLE: c_int = 4;
    pub const TCP_KEEPINTVL: c_int = 5;
    pub const TCP_KEEPCNT: c_int = 6;
    pub const IPPROTO_IPV6: c_int = 41;
    pub const IPV6_V6ONLY: c_int = 26;
    #[cfg(any(target_arch = "mips", target_arch = "mips64"))]
    pub const RLIMIT_NOFILE: c_int = 5;
    #[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
    pub const RLIMIT_NOFILE: c_int = 7;

    // glibc's plain getrlimit uses `unsigned long`; musl's rlim_t is always 64 bits.
    #[cfg(any(target_env = "musl", target_pointer_width = "64"))]
    pub type RlimT = u64;
    #[cfg(not(any(target_env = "musl", target_pointer_width = "64")))]
    pub type RlimT = std::ffi::c_ulong;

    #[repr(C)]
    pub struct Rlimit {
        pub cur: RlimT,
        pub max: RlimT,
    }

    #[cfg(any(target_arch = "mips", target_arch = "mips64"))]
    pub const SOCK_STREAM: c_int = 2;
    #[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
    pub const SOCK_STREAM: c_int = 1;
    pub const SOCK_CLOEXEC: c_int = 0o2_000_000;
    pub const AF_INET: u16 = 2;
    pub const AF_INET6: u16 = 10;

    extern "C" {
        fn socket(domain: c_int, kind: c_int, protocol: c_int) -> c_int;
        fn bind(fd: c_int, addr: *const c_void, len: u32) -> c_int;
        fn connect(fd: c_int, addr: *const c_void, len: u32) -> c_int;
        fn setsockopt(
            fd: c_int,
            level: c_int,
            name: c_int,
            value: *const c_void,
            len: u32,
        ) -> c_int;
        fn getsockopt(
            fd: c_int,
            level: c_int,
            name: c_int,
            value: *mut c_void,
            len: *mut u32,
        ) -> c_int;
        fn getrlimit(resource: c_int, limit: *mut Rlimit) -> c_int;
        fn setrlimit(resource: c_int, limit: *const Rlimit) -> c_int;
    }

    pub fn set_int(sock: &impl AsRawFd, level: c_int, name: c_int, value: c_int) -> io::Result<()> {
        let len = std::mem::size_of::<c_int>() as u32;
        // SAFETY: the fd is open (borrowed), the pointer and length describe a live c_int.
        let rc = unsafe {
            setsockopt(
                sock.as_raw_fd(),
                level,
                name,
                (&value as *const c_int).cast(),
                len,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub fn get_int(sock: &impl AsRawFd, level: c_int, name: c_int) -> io::Result<c_int> {
        let mut value: c_int = 0;
        let mut len = std::mem::size_of::<c_int>() as u32;
        // SAFETY: the fd is open (borrowed), the pointers describe a live c_int and its length.
        let rc = unsafe {
            getsockopt(
                sock.as_raw_fd(),
                level,
                name,
                (&mut value as *mut c_int).cast(),
                &mut len,
            )
        };
        if rc == 0 {
            Ok(value)
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// A `struct sockaddr_in` or `sockaddr_in6` (Linux layout) as bytes.
    fn sockaddr(addr: SocketAddr) -> Vec<u8> {
        let port = addr.port().to_be_bytes();
        match addr {
            SocketAddr::V4(a) => {
                let mut sa = AF_INET.to_ne_bytes().to_vec();
                sa.extend(port);
                sa.extend(a.ip().octets());
                sa.extend([0; 8]);
                sa
            }
            SocketAddr::V6(a) => {
                let mut sa = AF_INET6.to_ne_bytes().to_vec();
                sa.extend(port);
                sa.extend(a.flowinfo().to_be_bytes());
                sa.extend(a.ip().octets());
                sa.extend(a.scope_id().to_ne_bytes());
                sa
            }
        }
    }

    /// A TCP connection to `dest` from the local address `source`.
    pub fn connect_from(source: IpAddr, dest: SocketAddr) -> io::Result<TcpStream> {
        let family = if source.is_ipv4() { AF_INET } else { AF_INET6 };
        // SAFETY: plain system call; the result is checked.
        let fd = unsafe { socket(c_int::from(family), SOCK_STREAM | SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a socket we own; the TcpStream takes ownership and closes it.
        let stream = unsafe { TcpStream::from_raw_fd(fd) };
        let local = sockaddr(SocketAddr::new(source, 0));
        // SAFETY: `local` is a live sockaddr of the length given; the fd is open.
        if unsafe { bind(fd, local.as_ptr().cast(), local.len() as u32) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let remote = sockaddr(dest);
        // SAFETY: `remote` is a live sockaddr of the length given; the fd is open.
        if unsafe { connect(fd, remote.as_ptr().cast(), remote.len() as u32) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stream)
    }

    pub fn nofile_limit() -> io::Result<Rlimit> {
        let mut limit = Rlimit { cur: 0, max: 0 };
        // SAFETY: `limit` is a live, correctly laid out struct rlimit.
        if unsafe { getrlimit(RLIMIT_NOFILE, &mut limit) } == 0 {
            Ok(limit)
        } else {
            Err(io::Error::last_os_error())
        }
    }

    // Signal numbers: SIGSEGV is 11 everywhere; SIGBUS is 10 on MIPS and SPARC, 7 elsewhere.
    const SIGSEGV: c_int = 11;
    #[cfg(any(
        target_arch = "mips",
        target_arch = "mips64",
        target_arch = "sparc",
        target_arch = "sparc64"
    ))]
    const SIGBUS: c_int = 10;
    #[cfg(not(any(
        target_arch = "mips",
        target_arch = "mips64",
        target_arch = "sparc",
        target_arch = "sparc64"
    )))]
    const SIGBUS: c_int = 7;
    const SIG_DFL: usize = 0;
    const SIG_IGN: usize = 1;

    extern "C" {
        fn signal(signum: c_int, handler: usize) -> usize;
    }

    /// Runs before `main`, before std's runtime start-up (an ELF constructor). std gives every
    /// thread a signal alternate stack, two more memory mappings per thread, only when it finds
    /// SIGSEGV and SIGBUS at their default action at start-up; finding them ignored, it leaves
    /// both alone. `main` puts the default back at once (see [`fault_signals_to_default`]).
    /// A real fault is never ignored meanwhile: the kernel resets an ignored SIGSEGV or SIGBUS
    /// raised by a fault to the default action (the process dies, as it should).
    extern "C" fn before_main() {
        // SAFETY: only signal dispositions change; no handler function is installed, and
        // this runs single-threaded before any Rust code.
        unsafe {
            signal(SIGSEGV, SIG_IGN);
            signal(SIGBUS, SIG_IGN);
        }
    }

    #[used]
    #[link_section = ".init_array"]
    static BEFORE_MAIN: extern "C" fn() = before_main;

    /// Puts SIGSEGV and SIGBUS back to their default action (the process dies on a fault).
    pub fn fault_signals_to_default() {
        // SAFETY: only signal dispositions change; no handler function is installed.
        unsafe {
            signal(SIGSEGV, SIG_DFL);
            signal(SIGBUS, SIG_DFL);
        }
    }

    pub fn set_nofile_limit(limit: &Rlimit) -> io::Result<()> {
        // SAFETY: `limit` is a live, correctly laid out struct rlimit.
        if unsafe { setrlimit(RLIMIT_NOFILE, limit) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
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

/// Reads a connected socket's TCP_MAXSEG (its current send MSS).
pub fn mss(stream: &TcpStream) -> io::Result<u32> {
    #[cfg(target_os = "linux")]
    {
        let value = linux::get_int(stream, linux::IPPROTO_TCP, linux::TCP_MAXSEG)?;
        u32::try_from(value).map_err(|_| io::ErrorKind::InvalidData.into())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = stream;
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

/// Connects to `dest` from the local address `source` (tests use it to act as clients from
/// 127.0.0.2, 127.0.0.3, ...); `timeout` bounds reads and writes afterwards. Linux only.
pub fn connect_from(source: IpAddr, dest: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    #[cfg(target_os = "linux")]
    {
        let stream = linux::connect_from(source, dest)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(stream)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (source, dest, timeout);
        Err(io::ErrorKind::Unsupported.into())
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
    linux::fault_signals_to_default();
}

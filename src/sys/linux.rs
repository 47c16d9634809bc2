//! Linux socket and resource calls that std lacks, declared by hand (no libc crate).
#![allow(unsafe_code)]

pub use std::ffi::c_int;
use std::ffi::c_void;
use std::io;
use std::net::{SocketAddr, TcpStream};
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
// SO_RCVTIMEO_OLD / SO_SNDTIMEO_OLD: a `struct timeval` of two `long`s on every
// architecture and C library (the kernel's own layout; musl's 64-bit `time_t` on 32-bit
// targets goes with the _NEW numbers, which these are not).
#[cfg(any(target_arch = "mips", target_arch = "mips64"))]
pub const SO_RCVTIMEO: c_int = 0x1006;
#[cfg(any(target_arch = "powerpc", target_arch = "powerpc64"))]
pub const SO_RCVTIMEO: c_int = 18;
#[cfg(not(any(
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "powerpc",
    target_arch = "powerpc64"
)))]
pub const SO_RCVTIMEO: c_int = 20;
#[cfg(any(target_arch = "mips", target_arch = "mips64"))]
pub const SO_SNDTIMEO: c_int = 0x1005;
#[cfg(any(target_arch = "powerpc", target_arch = "powerpc64"))]
pub const SO_SNDTIMEO: c_int = 19;
#[cfg(not(any(
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "powerpc",
    target_arch = "powerpc64"
)))]
pub const SO_SNDTIMEO: c_int = 21;
#[cfg(any(target_arch = "mips", target_arch = "mips64"))]
pub const SO_REUSEADDR: c_int = 4;
#[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
pub const SO_REUSEADDR: c_int = 2;
#[cfg(any(target_arch = "mips", target_arch = "mips64"))]
pub const SO_ACCEPTCONN: c_int = 0x1009;
#[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
pub const SO_ACCEPTCONN: c_int = 30;
#[cfg(any(target_arch = "mips", target_arch = "mips64"))]
const SOCK_STREAM: c_int = 2;
#[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
const SOCK_STREAM: c_int = 1;
const SOCK_CLOEXEC: c_int = 0o2_000_000;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
pub const IPPROTO_IP: c_int = 0;
pub const IP_BIND_ADDRESS_NO_PORT: c_int = 24;
pub const IPPROTO_TCP: c_int = 6;
pub const TCP_NODELAY: c_int = 1;
pub const TCP_MAXSEG: c_int = 2;
pub const TCP_KEEPIDLE: c_int = 4;
pub const TCP_KEEPINTVL: c_int = 5;
pub const TCP_KEEPCNT: c_int = 6;
pub const TCP_CONGESTION: c_int = 13;
pub const TCP_USER_TIMEOUT: c_int = 18;
// errno numbers std has no stable kind for (Rust 1.78); MIPS numbers them differently.
#[cfg(any(target_arch = "mips", target_arch = "mips64"))]
pub const EALREADY: i32 = 149;
#[cfg(any(target_arch = "mips", target_arch = "mips64"))]
pub const EINPROGRESS: i32 = 150;
#[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
pub const EALREADY: i32 = 114;
#[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
pub const EINPROGRESS: i32 = 115;
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

const F_GETFD: c_int = 1;
const F_SETFD: c_int = 2;
const FD_CLOEXEC: c_int = 1;
const SHUT_RD: c_int = 0;

/// `struct sockaddr` with family AF_UNSPEC (0).
#[repr(C)]
struct SockAddrUnspec {
    family: u16,
    data: [u8; 14],
}

extern "C" {
    fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
    fn shutdown(fd: c_int, how: c_int) -> c_int;
    fn setsockopt(fd: c_int, level: c_int, name: c_int, value: *const c_void, len: u32) -> c_int;
    fn getsockopt(fd: c_int, level: c_int, name: c_int, value: *mut c_void, len: *mut u32)
        -> c_int;
    fn socket(domain: c_int, kind: c_int, protocol: c_int) -> c_int;
    fn bind(fd: c_int, addr: *const c_void, len: u32) -> c_int;
    fn connect(fd: c_int, addr: *const c_void, len: u32) -> c_int;
    fn getrlimit(resource: c_int, limit: *mut Rlimit) -> c_int;
    fn listen(fd: c_int, backlog: c_int) -> c_int;
    #[cfg(target_env = "gnu")]
    fn malloc_trim(pad: usize) -> c_int;
    #[cfg(target_env = "gnu")]
    fn mallopt(param: c_int, value: c_int) -> c_int;
    fn setrlimit(resource: c_int, limit: *const Rlimit) -> c_int;
    // pthread_t is an integer (glibc) or a pointer (musl): pointer-sized either way.
    fn pthread_self() -> usize;
    fn pthread_getschedparam(thread: usize, policy: *mut c_int, param: *mut SchedParam) -> c_int;
    fn pthread_setschedparam(thread: usize, policy: c_int, param: *const SchedParam) -> c_int;
}

/// `struct sched_param`: the kernel reads and writes only the first `int` (the priority, 0
/// for the policies used here); musl's struct is larger (reserved fields), which the spare
/// room covers.
#[repr(C)]
struct SchedParam {
    priority: c_int,
    reserved: [c_int; 15],
}

/// The kernel's default policy (`SCHED_OTHER`) and the one for throughput (`SCHED_BATCH`).
const SCHED_OTHER: c_int = 0;
const SCHED_BATCH: c_int = 3;

/// A C call's `0` as `Ok`, anything else as the OS error it left in errno.
fn check(rc: c_int) -> io::Result<()> {
    match rc {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// A new TCP socket of `addr`'s family, not yet bound or connected, close-on-exec. std's
/// `TcpStream` owns it from the start (it closes it on every path), so that std's own calls
/// (timeouts, NODELAY) work on it before it connects.
pub fn tcp_socket(addr: &SocketAddr) -> io::Result<TcpStream> {
    let family = if addr.is_ipv4() { AF_INET } else { AF_INET6 };
    // SAFETY: a plain system call; the result is checked.
    let fd = unsafe { socket(c_int::from(family), SOCK_STREAM | SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket nothing else owns; the stream takes it and closes it.
    Ok(unsafe { TcpStream::from_raw_fd(fd) })
}

/// bind(2) to `addr` (port 0: the kernel's choice).
pub fn bind_to(sock: &TcpStream, addr: &SocketAddr) -> io::Result<()> {
    let raw = sockaddr(addr);
    // SAFETY: `raw` is a live sockaddr of the length given; the fd is open (borrowed).
    check(unsafe { bind(sock.as_raw_fd(), raw.as_ptr().cast(), raw.len() as u32) })
}

/// connect(2) to `addr`, blocking as the socket's SO_SNDTIMEO says.
pub fn connect_to(sock: &TcpStream, addr: &SocketAddr) -> io::Result<()> {
    let raw = sockaddr(addr);
    // SAFETY: `raw` is a live sockaddr of the length given; the fd is open (borrowed).
    check(unsafe { connect(sock.as_raw_fd(), raw.as_ptr().cast(), raw.len() as u32) })
}

/// A `struct sockaddr_in` or `sockaddr_in6` (Linux layout) as bytes.
fn sockaddr(addr: &SocketAddr) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(28);
    match addr {
        SocketAddr::V4(a) => {
            bytes.extend(AF_INET.to_ne_bytes());
            bytes.extend(a.port().to_be_bytes());
            bytes.extend(a.ip().octets());
            bytes.extend([0; 8]);
        }
        SocketAddr::V6(a) => {
            bytes.extend(AF_INET6.to_ne_bytes());
            bytes.extend(a.port().to_be_bytes());
            bytes.extend(a.flowinfo().to_be_bytes());
            bytes.extend(a.ip().octets());
            bytes.extend(a.scope_id().to_ne_bytes());
        }
    }
    bytes
}

/// setsockopt(2) with a byte string (TCP_CONGESTION takes a name).
pub fn set_bytes(sock: &impl AsRawFd, level: c_int, name: c_int, value: &[u8]) -> io::Result<()> {
    let len = u32::try_from(value.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: the fd is open (borrowed), the pointer and length describe a live slice.
    check(unsafe { setsockopt(sock.as_raw_fd(), level, name, value.as_ptr().cast(), len) })
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

/// SO_RCVTIMEO or SO_SNDTIMEO (`name`): `None` = none (block for ever). A duration below a
/// microsecond is one microsecond (zero would mean none).
pub fn set_timeout(
    sock: &impl AsRawFd,
    name: c_int,
    limit: Option<std::time::Duration>,
) -> io::Result<()> {
    use std::ffi::c_long;
    let d = limit.unwrap_or_default();
    let mut value: [c_long; 2] = [
        c_long::try_from(d.as_secs()).unwrap_or(c_long::MAX),
        // Below 1,000,000: fits a 32-bit long.
        d.subsec_micros() as c_long,
    ];
    if limit.is_some() && value == [0, 0] {
        value[1] = 1;
    }
    let len = std::mem::size_of_val(&value) as u32;
    // SAFETY: the fd is open (borrowed), the pointer and length describe a live timeval.
    let rc = unsafe {
        setsockopt(
            sock.as_raw_fd(),
            SOL_SOCKET,
            name,
            value.as_ptr().cast(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// listen(2): on a socket that listens already, Linux takes the new backlog.
pub fn listen_again(sock: &impl AsRawFd, backlog: c_int) -> io::Result<()> {
    // SAFETY: the fd is open (borrowed); listen takes no pointers.
    if unsafe { listen(sock.as_raw_fd(), backlog) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub const TCP_INFO: c_int = 11;
/// `tcpi_state` of a socket that is closed: reset, timed out, or done with both FINs.
pub const TCP_CLOSE: u8 = 7;

/// The TCP state of a socket (the first byte of `struct tcp_info`).
pub fn tcp_state(sock: &impl AsRawFd) -> io::Result<u8> {
    let mut info = [0u8; 8];
    let mut len = info.len() as u32;
    // SAFETY: the fd is open (borrowed); the pointers describe a live buffer and its length,
    // and the kernel writes at most `len` bytes.
    let rc = unsafe {
        getsockopt(
            sock.as_raw_fd(),
            IPPROTO_TCP,
            TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc == 0 && len >= 1 {
        Ok(info[0])
    } else {
        Err(io::Error::last_os_error())
    }
}

/// glibc's M_ARENA_MAX.
#[cfg(target_env = "gnu")]
const M_ARENA_MAX: c_int = -8;

/// glibc: at most `arenas` malloc arenas, however many threads allocate.
#[cfg(target_env = "gnu")]
pub fn limit_arenas(arenas: c_int) {
    // SAFETY: mallopt takes two integers and changes only malloc's own settings.
    unsafe { mallopt(M_ARENA_MAX, arenas) };
}

/// glibc: gives the free memory of every malloc arena back to the system.
#[cfg(target_env = "gnu")]
pub fn trim_heap() {
    // SAFETY: malloc_trim takes a size and touches only malloc's own state, under its locks.
    unsafe { malloc_trim(0) };
}

/// Puts the calling thread under `SCHED_BATCH` if it is under the default policy. Any other
/// policy was chosen by whoever started tcpfwd and is kept. Through pthreads because musl's
/// `sched_setscheduler` is a stub that always fails.
pub fn batch_scheduling() -> io::Result<()> {
    let mut param = SchedParam {
        priority: 0,
        reserved: [0; 15],
    };
    let mut policy: c_int = -1;
    // SAFETY: both calls take the calling thread's own handle and a pointer to a live,
    // large enough `SchedParam` (and `policy`); they return an error number, not -1.
    unsafe {
        let me = pthread_self();
        check_pthread(pthread_getschedparam(me, &mut policy, &mut param))?;
        if policy != SCHED_OTHER {
            return Ok(());
        }
        param.priority = 0;
        check_pthread(pthread_setschedparam(me, SCHED_BATCH, &param))
    }
}

/// A pthread call's result: `0`, or the error number itself (pthreads leave errno alone,
/// unlike the calls [`check`] is for).
fn check_pthread(rc: c_int) -> io::Result<()> {
    match rc {
        0 => Ok(()),
        code => Err(io::Error::from_raw_os_error(code)),
    }
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

pub fn set_nofile_limit(limit: &Rlimit) -> io::Result<()> {
    // SAFETY: `limit` is a live, correctly laid out struct rlimit.
    if unsafe { setrlimit(RLIMIT_NOFILE, limit) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets or clears close-on-exec on `fd`. An error if `fd` is not open.
pub fn set_cloexec(fd: c_int, on: bool) -> io::Result<()> {
    // SAFETY: fcntl with F_GETFD/F_SETFD reads and sets the descriptor's flags only; an fd
    // that is not open is EBADF.
    let flags = unsafe { fcntl(fd, F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if on {
        flags | FD_CLOEXEC
    } else {
        flags & !FD_CLOEXEC
    };
    // SAFETY: as above.
    if unsafe { fcntl(fd, F_SETFD, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// shutdown(SHUT_RD): on a listening socket, stops listening (queued and new connects are
/// refused) and wakes a thread blocked in accept().
pub fn shutdown_read(sock: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: the fd is open (borrowed); shutdown touches no memory.
    if unsafe { shutdown(sock.as_raw_fd(), SHUT_RD) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// connect() to AF_UNSPEC: the kernel drops the connection at once, sending an RST, and wakes
/// every thread blocked on the socket with an error; the fd stays open for its owner.
pub fn disconnect(sock: &impl AsRawFd) -> io::Result<()> {
    let addr = SockAddrUnspec {
        family: 0,
        data: [0; 14],
    };
    let len = std::mem::size_of::<SockAddrUnspec>() as u32;
    // SAFETY: the fd is open (borrowed); the pointer and length describe a live sockaddr.
    if unsafe {
        connect(
            sock.as_raw_fd(),
            (&addr as *const SockAddrUnspec).cast(),
            len,
        )
    } == 0
    {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// See `sys::adopt_listener`.
pub fn adopt_listener(fd: c_int) -> io::Result<std::net::TcpListener> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    set_cloexec(fd, true)?;
    if get_int(&fd, SOL_SOCKET, SO_ACCEPTCONN)? != 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a listening socket",
        ));
    }
    // SAFETY: the fd is open (fcntl succeeded) and, named to this process as handed over
    // to it, owned by nothing else in it.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    match listener.local_addr() {
        Ok(_) => Ok(listener),
        Err(e) => {
            // Not a TCP socket: give the fd back untouched rather than close it.
            let _ = listener.into_raw_fd();
            Err(e)
        }
    }
}

/// See `sys::adopt_unix_listener`.
pub fn adopt_unix_listener(fd: c_int) -> io::Result<std::os::unix::net::UnixListener> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    set_cloexec(fd, true)?;
    if get_int(&fd, SOL_SOCKET, SO_ACCEPTCONN)? != 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a listening socket",
        ));
    }
    // SAFETY: as in `adopt_listener`: open, and owned by nothing else in this process.
    let listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
    match listener.local_addr() {
        Ok(_) => Ok(listener),
        Err(e) => {
            // Not a Unix-domain socket: give the fd back untouched rather than close it.
            let _ = listener.into_raw_fd();
            Err(e)
        }
    }
}

/// See `sys::adopt_stream`.
pub fn adopt_stream(fd: c_int) -> io::Result<std::os::unix::net::UnixStream> {
    use std::os::fd::FromRawFd;
    set_cloexec(fd, true)?;
    // SAFETY: the fd is open (fcntl succeeded) and named to this process as its own.
    Ok(unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SO_REUSEADDR (2 on Linux, 4 on MIPS) is set by std's bind on Unix, so a restarted
    /// tcpfwd binds over connections in TIME_WAIT; SO_REUSEPORT (15, MIPS 0x200) never is:
    /// a second process on the same port would split the accept queue.
    #[test]
    fn listeners_reuse_the_address_never_the_port() {
        let (reuse_addr, reuse_port) = if cfg!(any(target_arch = "mips", target_arch = "mips64")) {
            (4, 0x200)
        } else {
            (2, 15)
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(get_int(&listener, SOL_SOCKET, reuse_addr).unwrap(), 1);
        assert_eq!(get_int(&listener, SOL_SOCKET, reuse_port).unwrap(), 0);
    }
}

//! The tests' own FFI, the only `unsafe` of the tests: what std lacks and the tests need —
//! a connection from a chosen local address, a connection's MSS, the open-file limit
//! raised to the hard one, and a descriptor placed at a chosen number for a program started
//! next (socket activation). Linux only; elsewhere each returns an "unsupported" error.
//!
//! The library has calls like these in its own `sys` module, but they are not its job to
//! export: the tests keep theirs here.

#[cfg(not(target_os = "linux"))]
pub use elsewhere::{connect_from, mss, place_fd, raise_fd_limit};
#[cfg(target_os = "linux")]
pub use linux::{connect_from, mss, place_fd, raise_fd_limit};

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::{c_int, c_void};
    use std::io;
    use std::net::{IpAddr, SocketAddr, TcpStream};
    use std::os::fd::{AsRawFd, FromRawFd};

    // Linux's numbers; MIPS numbers SOCK_STREAM and RLIMIT_NOFILE differently.
    #[cfg(any(target_arch = "mips", target_arch = "mips64"))]
    const SOCK_STREAM: c_int = 2;
    #[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
    const SOCK_STREAM: c_int = 1;
    #[cfg(any(target_arch = "mips", target_arch = "mips64"))]
    const RLIMIT_NOFILE: c_int = 5;
    #[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
    const RLIMIT_NOFILE: c_int = 7;
    const SOCK_CLOEXEC: c_int = 0o2_000_000;
    const AF_INET: u16 = 2;
    const AF_INET6: u16 = 10;
    const IPPROTO_TCP: c_int = 6;
    const TCP_MAXSEG: c_int = 2;

    // glibc's plain getrlimit uses `unsigned long`; musl's rlim_t is always 64 bits.
    #[cfg(target_env = "musl")]
    type RlimT = u64;
    #[cfg(not(target_env = "musl"))]
    type RlimT = std::ffi::c_ulong;

    #[repr(C)]
    struct Rlimit {
        cur: RlimT,
        max: RlimT,
    }

    extern "C" {
        fn socket(domain: c_int, kind: c_int, protocol: c_int) -> c_int;
        fn bind(fd: c_int, addr: *const c_void, len: u32) -> c_int;
        fn connect(fd: c_int, addr: *const c_void, len: u32) -> c_int;
        fn getsockopt(
            fd: c_int,
            level: c_int,
            name: c_int,
            value: *mut c_void,
            len: *mut u32,
        ) -> c_int;
        fn getrlimit(resource: c_int, limit: *mut Rlimit) -> c_int;
        fn setrlimit(resource: c_int, limit: *const Rlimit) -> c_int;
        fn dup2(old: c_int, new: c_int) -> c_int;
        fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
    }

    /// Makes `number` a copy of `fd` that a program started next inherits (dup2 clears
    /// close-on-exec on the copy), as systemd places sockets 3, 4, ... for socket activation.
    pub fn place_fd(fd: &impl AsRawFd, number: c_int) -> io::Result<()> {
        const F_SETFD: c_int = 2;
        if fd.as_raw_fd() == number {
            // dup2 onto itself changes nothing: clear close-on-exec by hand.
            // SAFETY: F_SETFD on an open fd (borrowed) sets its flags only.
            return check(unsafe { fcntl(number, F_SETFD, 0) });
        }
        // SAFETY: dup2 on an open fd (borrowed); `number` is closed first if it was open, which
        // the caller (a launcher about to exec) wants.
        if unsafe { dup2(fd.as_raw_fd(), number) } == number {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// A C call's `0` as `Ok`, anything else as the OS error it left in errno.
    fn check(rc: c_int) -> io::Result<()> {
        match rc {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// A TCP connection to `dest` from the local address `source`, any port (std cannot
    /// bind a socket before connecting it).
    pub fn connect_from(source: IpAddr, dest: SocketAddr) -> io::Result<TcpStream> {
        let family = if source.is_ipv4() { AF_INET } else { AF_INET6 };
        // SAFETY: a plain system call; the result is checked.
        let fd = unsafe { socket(c_int::from(family), SOCK_STREAM | SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh socket nothing else owns; the stream takes it and closes it.
        let stream = unsafe { TcpStream::from_raw_fd(fd) };
        let local = sockaddr(SocketAddr::new(source, 0));
        // SAFETY: `local` is a live sockaddr of the length given; the fd is open.
        check(unsafe { bind(fd, local.as_ptr().cast(), local.len() as u32) })?;
        let remote = sockaddr(dest);
        // SAFETY: `remote` is a live sockaddr of the length given; the fd is open.
        check(unsafe { connect(fd, remote.as_ptr().cast(), remote.len() as u32) })?;
        Ok(stream)
    }

    /// A `struct sockaddr_in` or `sockaddr_in6` (Linux layout) as bytes.
    fn sockaddr(addr: SocketAddr) -> Vec<u8> {
        let mut bytes = Vec::new();
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

    /// A connected socket's TCP_MAXSEG: the segment size it sends with.
    pub fn mss(stream: &TcpStream) -> io::Result<u32> {
        let mut value: c_int = 0;
        let mut len = std::mem::size_of::<c_int>() as u32;
        // SAFETY: the fd is open (borrowed); the pointers describe a live c_int and its length.
        check(unsafe {
            getsockopt(
                stream.as_raw_fd(),
                IPPROTO_TCP,
                TCP_MAXSEG,
                (&mut value as *mut c_int).cast(),
                &mut len,
            )
        })?;
        u32::try_from(value).map_err(|_| io::ErrorKind::InvalidData.into())
    }

    /// Raises this process's soft open-file limit to the hard one; returns the limit now in
    /// force (tests that hold thousands of sockets call it first).
    pub fn raise_fd_limit() -> io::Result<u64> {
        let mut limit = Rlimit { cur: 0, max: 0 };
        // SAFETY: `limit` is a live struct rlimit, laid out as the C library's.
        check(unsafe { getrlimit(RLIMIT_NOFILE, &mut limit) })?;
        if limit.cur < limit.max {
            limit.cur = limit.max;
            // SAFETY: `limit` is a live struct rlimit, laid out as the C library's.
            check(unsafe { setrlimit(RLIMIT_NOFILE, &limit) })?;
        }
        #[allow(clippy::useless_conversion)] // rlim_t is 32 bits on some targets
        Ok(u64::from(limit.cur))
    }
}

/// Outside Linux (the Windows and macOS check builds): the same calls, each unsupported.
#[cfg(not(target_os = "linux"))]
mod elsewhere {
    use std::io;
    use std::net::{IpAddr, SocketAddr, TcpStream};

    fn unsupported() -> io::Error {
        io::Error::new(
            io::ErrorKind::Unsupported,
            "Linux only (tests/support/sys.rs)",
        )
    }

    pub fn connect_from(_source: IpAddr, _dest: SocketAddr) -> io::Result<TcpStream> {
        Err(unsupported())
    }

    pub fn mss(_stream: &TcpStream) -> io::Result<u32> {
        Err(unsupported())
    }

    pub fn raise_fd_limit() -> io::Result<u64> {
        Err(unsupported())
    }

    pub fn place_fd<T>(_fd: &T, _number: i32) -> io::Result<()> {
        Err(unsupported())
    }
}

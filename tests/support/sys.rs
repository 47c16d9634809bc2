//! The tests' own FFI, the only `unsafe` of the tests: what std lacks and the tests need —
//! a connection from a chosen local address, a connection's MSS and other TCP options read
//! back (congestion control, user timeout, keepalive), a copy of another process's socket
//! (pidfd_getfd) to read them on tcpfwd's own sockets, the open-file limit raised to the
//! hard one, a descriptor placed at a chosen number for a program started next (socket
//! activation), and a TCP_USER_TIMEOUT set on a socket of tcpfwd's from outside. Linux only;
//! elsewhere each returns an "unsupported" error.
//!
//! The library has calls like these in its own `sys` module, but they are not its job to
//! export: the tests keep theirs here.

#[cfg(not(target_os = "linux"))]
pub use elsewhere::{
    connect_from, mss, place_fd, raise_fd_limit, set_user_timeout_in, socket_of, tcp_info, TcpInfo,
};
#[cfg(target_os = "linux")]
pub use linux::{
    connect_from, mss, place_fd, raise_fd_limit, set_user_timeout_in, socket_of, tcp_info, TcpInfo,
};

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
    const TCP_NODELAY: c_int = 1;
    const TCP_MAXSEG: c_int = 2;
    const TCP_KEEPIDLE: c_int = 4;
    const TCP_KEEPINTVL: c_int = 5;
    const TCP_KEEPCNT: c_int = 6;
    const TCP_CONGESTION: c_int = 13;
    const TCP_USER_TIMEOUT: c_int = 18;
    #[cfg(any(target_arch = "mips", target_arch = "mips64"))]
    const SOL_SOCKET: c_int = 0xffff;
    #[cfg(any(target_arch = "mips", target_arch = "mips64"))]
    const SO_KEEPALIVE: c_int = 8;
    #[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
    const SOL_SOCKET: c_int = 1;
    #[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
    const SO_KEEPALIVE: c_int = 9;

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
        fn setsockopt(
            fd: c_int,
            level: c_int,
            name: c_int,
            value: *const c_void,
            len: u32,
        ) -> c_int;
        fn syscall(number: std::ffi::c_long, ...) -> std::ffi::c_long;
        fn close(fd: c_int) -> c_int;
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

    // pidfd_open and pidfd_getfd (Linux 5.6): one number on every architecture that numbers
    // its system calls the common way; MIPS o32 adds 4000.
    #[cfg(any(target_arch = "mips", target_arch = "mips32r6"))]
    const SYS_PIDFD_OPEN: std::ffi::c_long = 4434;
    #[cfg(any(target_arch = "mips", target_arch = "mips32r6"))]
    const SYS_PIDFD_GETFD: std::ffi::c_long = 4438;
    #[cfg(not(any(target_arch = "mips", target_arch = "mips32r6")))]
    const SYS_PIDFD_OPEN: std::ffi::c_long = 434;
    #[cfg(not(any(target_arch = "mips", target_arch = "mips32r6")))]
    const SYS_PIDFD_GETFD: std::ffi::c_long = 438;

    /// Sets TCP_USER_TIMEOUT (`millis`) on the TCP socket of process `pid` that is connected
    /// to `peer_port` on loopback: the test reaches into tcpfwd's own socket from outside
    /// (pidfd_getfd duplicates it; needs ptrace rights over the process: a child of ours).
    pub fn set_user_timeout_in(pid: u32, peer_port: u16, millis: u32) -> io::Result<()> {
        let fd = socket_fd_to(pid, peer_port)?;
        let pid = c_int::try_from(pid).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: plain system calls on integers; the results are checked.
        let pidfd = unsafe { syscall(SYS_PIDFD_OPEN, pid, 0 as c_int) };
        if pidfd < 0 {
            return Err(io::Error::last_os_error());
        }
        let pidfd = pidfd as c_int;
        // SAFETY: as above; `pidfd` is ours.
        let ours = unsafe { syscall(SYS_PIDFD_GETFD, pidfd, fd, 0 as c_int) };
        let got = if ours < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(ours as c_int)
        };
        // SAFETY: `pidfd` is ours, closed once.
        unsafe { close(pidfd) };
        let ours = got?;
        let value = c_int::try_from(millis).unwrap_or(c_int::MAX);
        // SAFETY: `ours` is an open socket of ours; the pointer and length describe a c_int.
        let rc = unsafe {
            setsockopt(
                ours,
                IPPROTO_TCP,
                TCP_USER_TIMEOUT,
                (&value as *const c_int).cast(),
                std::mem::size_of::<c_int>() as u32,
            )
        };
        let set = check(rc);
        // SAFETY: `ours` is ours (a duplicate: the process keeps its own), closed once.
        unsafe { close(ours) };
        set
    }

    /// The descriptor in process `pid` of its TCP socket whose remote port is `peer_port`
    /// (from /proc: the socket's inode in /proc/PID/net/tcp, then in /proc/PID/fd).
    fn socket_fd_to(pid: u32, peer_port: u16) -> io::Result<c_int> {
        // The tables list every socket of the network namespace; the process's own
        // descriptors tell which of those sockets are its.
        let want = format!(":{peer_port:04X}");
        let mut links = Vec::new();
        for table in ["tcp", "tcp6"] {
            let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}"))?;
            for line in text.lines().skip(1) {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if fields.get(2).is_some_and(|remote| remote.ends_with(&want)) {
                    links.extend(fields.get(9).map(|inode| format!("socket:[{inode}]")));
                }
            }
        }
        for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))?.flatten() {
            let Ok(link) = std::fs::read_link(entry.path()) else {
                continue;
            };
            if links.iter().any(|l| *l == link.to_string_lossy()) {
                let name = entry.file_name();
                return name
                    .to_string_lossy()
                    .parse()
                    .map_err(|_| io::ErrorKind::InvalidData.into());
            }
        }
        Err(io::ErrorKind::NotFound.into())
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
        let value = get_int(stream, IPPROTO_TCP, TCP_MAXSEG)?;
        u32::try_from(value).map_err(|_| io::ErrorKind::InvalidData.into())
    }

    fn get_int(stream: &TcpStream, level: c_int, name: c_int) -> io::Result<c_int> {
        let mut value: c_int = 0;
        let mut len = std::mem::size_of::<c_int>() as u32;
        // SAFETY: the fd is open (borrowed); the pointers describe a live c_int and its length.
        check(unsafe {
            getsockopt(
                stream.as_raw_fd(),
                level,
                name,
                (&mut value as *mut c_int).cast(),
                &mut len,
            )
        })?;
        Ok(value)
    }

    /// The TCP options of one socket, read back with getsockopt.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct TcpInfo {
        /// TCP_CONGESTION.
        pub congestion: String,
        /// TCP_USER_TIMEOUT, milliseconds (0: the kernel's).
        pub user_timeout_ms: i32,
        /// SO_KEEPALIVE.
        pub keepalive: bool,
        /// TCP_KEEPIDLE, TCP_KEEPINTVL (seconds), TCP_KEEPCNT.
        pub keep_idle: i32,
        pub keep_interval: i32,
        pub keep_count: i32,
        /// TCP_NODELAY.
        pub nodelay: bool,
        /// TCP_MAXSEG.
        pub mss: i32,
    }

    /// Reads the TCP options of `stream`.
    pub fn tcp_info(stream: &TcpStream) -> io::Result<TcpInfo> {
        let mut name = [0u8; 16];
        let mut len = name.len() as u32;
        // SAFETY: the fd is open (borrowed); the pointers describe a live buffer and its length.
        check(unsafe {
            getsockopt(
                stream.as_raw_fd(),
                IPPROTO_TCP,
                TCP_CONGESTION,
                name.as_mut_ptr().cast(),
                &mut len,
            )
        })?;
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        Ok(TcpInfo {
            congestion: String::from_utf8_lossy(&name[..end]).into_owned(),
            user_timeout_ms: get_int(stream, IPPROTO_TCP, TCP_USER_TIMEOUT)?,
            keepalive: get_int(stream, SOL_SOCKET, SO_KEEPALIVE)? != 0,
            keep_idle: get_int(stream, IPPROTO_TCP, TCP_KEEPIDLE)?,
            keep_interval: get_int(stream, IPPROTO_TCP, TCP_KEEPINTVL)?,
            keep_count: get_int(stream, IPPROTO_TCP, TCP_KEEPCNT)?,
            nodelay: get_int(stream, IPPROTO_TCP, TCP_NODELAY)? != 0,
            mss: get_int(stream, IPPROTO_TCP, TCP_MAXSEG)?,
        })
    }

    /// A copy (pidfd_getfd, Linux 5.6+) of the TCP socket of process `pid` for which `matches`
    /// holds, given its local and peer address: the test reads tcpfwd's own socket options
    /// on it. `None` when no socket matches; `Err` when the kernel or an emulator cannot copy.
    pub fn socket_of(
        pid: u32,
        matches: impl Fn(SocketAddr, SocketAddr) -> bool,
    ) -> io::Result<Option<TcpStream>> {
        // SAFETY: a plain system call (pidfd_open(pid, 0)); the result is checked.
        let pidfd = unsafe { syscall(SYS_PIDFD_OPEN, pid as c_int, 0 as c_int) };
        if pidfd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pidfd is a fresh descriptor nothing else owns; the File closes it.
        let pidfd = unsafe { std::fs::File::from_raw_fd(pidfd as c_int) };
        for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))?.flatten() {
            let link = std::fs::read_link(entry.path()).unwrap_or_default();
            if !link.to_string_lossy().starts_with("socket:") {
                continue;
            }
            let Some(target) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<c_int>().ok())
            else {
                continue;
            };
            // SAFETY: a plain system call (pidfd_getfd(pidfd, fd, 0)); the result is checked.
            let fd = unsafe { syscall(SYS_PIDFD_GETFD, pidfd.as_raw_fd(), target, 0 as c_int) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: fd is a fresh copy nothing else owns; the stream closes it (the socket
            // stays open in `pid`).
            let stream = unsafe { TcpStream::from_raw_fd(fd as c_int) };
            if let (Ok(local), Ok(peer)) = (stream.local_addr(), stream.peer_addr()) {
                if matches(local, peer) {
                    return Ok(Some(stream));
                }
            }
        }
        Ok(None)
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

    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct TcpInfo;

    pub fn tcp_info(_stream: &TcpStream) -> io::Result<TcpInfo> {
        Err(unsupported())
    }

    pub fn socket_of(
        _pid: u32,
        _matches: impl Fn(SocketAddr, SocketAddr) -> bool,
    ) -> io::Result<Option<TcpStream>> {
        Err(unsupported())
    }

    pub fn place_fd<T>(_fd: &T, _number: i32) -> io::Result<()> {
        Err(unsupported())
    }

    pub fn set_user_timeout_in(_pid: u32, _peer_port: u16, _millis: u32) -> io::Result<()> {
        Err(unsupported())
    }
}

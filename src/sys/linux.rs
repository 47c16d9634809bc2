//! Linux socket and resource calls that std lacks, declared by hand (no libc crate).
#![allow(unsafe_code)]

use std::ffi::{c_int, c_void};
use std::io;
use std::os::fd::AsRawFd;

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

extern "C" {
    fn setsockopt(fd: c_int, level: c_int, name: c_int, value: *const c_void, len: u32) -> c_int;
    fn getsockopt(fd: c_int, level: c_int, name: c_int, value: *mut c_void, len: *mut u32)
        -> c_int;
    fn getrlimit(resource: c_int, limit: *mut Rlimit) -> c_int;
    fn listen(fd: c_int, backlog: c_int) -> c_int;
    #[cfg(target_env = "gnu")]
    fn malloc_trim(pad: usize) -> c_int;
    #[cfg(target_env = "gnu")]
    fn mallopt(param: c_int, value: c_int) -> c_int;
    fn connect(fd: c_int, addr: *const c_void, len: u32) -> c_int;
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

/// `listen()` again on a listening socket: Linux takes the new backlog.
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

/// Dissolves a TCP connection at once: `connect()` with AF_UNSPEC makes Linux send a reset,
/// drop what is queued, and wake every thread blocked on the socket (reads and writes fail).
pub fn disconnect(sock: &impl AsRawFd) -> io::Result<()> {
    // A `struct sockaddr` of family AF_UNSPEC (0): 16 bytes, the family first.
    let unspec = [0u8; 16];
    // SAFETY: the fd is open (borrowed); the pointer and length describe a live buffer.
    let rc = unsafe {
        connect(
            sock.as_raw_fd(),
            unspec.as_ptr().cast(),
            unspec.len() as u32,
        )
    };
    if rc == 0 {
        Ok(())
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

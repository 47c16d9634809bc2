//! Calls every Unix has that std does not expose yet, declared by hand (no libc crate).
#![allow(unsafe_code)]

use std::ffi::{c_int, c_void};
use std::io;
use std::os::fd::AsRawFd;

/// MSG_PEEK: 2 on Linux (every architecture), macOS and the BSDs.
const MSG_PEEK: c_int = 2;

extern "C" {
    fn recv(fd: c_int, buf: *mut c_void, len: usize, flags: c_int) -> isize;
}

/// Reads what has arrived on a socket without taking it off (`recv` with MSG_PEEK): std's
/// `UnixStream::peek` is not stable yet.
pub fn peek(sock: &impl AsRawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the fd is open (borrowed); the pointer and length describe `buf`, which the
    // kernel writes at most `buf.len()` bytes into.
    let n = unsafe {
        recv(
            sock.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            MSG_PEEK,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// `struct pollfd`, the same layout on every Unix.
#[repr(C)]
struct PollFd {
    fd: c_int,
    events: i16,
    revents: i16,
}

/// POLLIN: 1 on Linux, macOS and the BSDs.
const POLLIN: i16 = 1;

// `nfds_t`: unsigned long on Linux (glibc and musl), unsigned int on macOS and the BSDs.
#[cfg(target_os = "linux")]
type Nfds = std::ffi::c_ulong;
#[cfg(not(target_os = "linux"))]
type Nfds = std::ffi::c_uint;

extern "C" {
    fn poll(fds: *mut PollFd, nfds: Nfds, timeout: c_int) -> c_int;
}

/// Waits until one of `socks` is readable (a listener: a client is waiting), at most
/// `timeout` (`None`: without limit); returns the indexes of the readable ones (none when the
/// time ran out).
pub fn readable<S: AsRawFd>(
    socks: &[&S],
    timeout: Option<std::time::Duration>,
) -> io::Result<Vec<usize>> {
    let mut fds: Vec<PollFd> = socks
        .iter()
        .map(|s| PollFd {
            fd: s.as_raw_fd(),
            events: POLLIN,
            revents: 0,
        })
        .collect();
    let timeout = match timeout {
        None => -1,
        Some(t) => c_int::try_from(t.as_millis()).unwrap_or(c_int::MAX).max(1),
    };
    let count = Nfds::try_from(fds.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `fds` is a live, writable array of `count` pollfd structs, each naming an open
    // fd borrowed from `socks`; the kernel writes only their `revents`.
    let rc = unsafe { poll(fds.as_mut_ptr(), count, timeout) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // Anything but "nothing happened" is worth an accept(): a listener's error shows there.
    Ok(fds
        .iter()
        .enumerate()
        .filter(|(_, p)| p.revents != 0)
        .map(|(i, _)| i)
        .collect())
}

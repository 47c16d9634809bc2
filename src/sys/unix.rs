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

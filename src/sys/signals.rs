//! SIGHUP, SIGTERM, SIGINT and SIGUSR2 as messages to the main thread (Linux).
//!
//! The handler does the one thing that is safe in a signal handler: it writes the signal's
//! number, one byte, to the write end of a socket pair (the self-pipe; non-blocking, so a
//! full pipe never blocks the handler), keeping `errno` as it found it. The main thread reads
//! the other end. Installed with `sigaction` and SA_RESTART, so no other thread's system
//! call fails with EINTR; installed whatever disposition the process inherited (a background
//! job started by a shell inherits SIGINT ignored), and the four signals are unblocked.
#![allow(unsafe_code)]

use std::ffi::{c_int, c_ulong, c_void};
use std::io::{self, Read};
use std::os::fd::IntoRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use super::signal::Signal;

use super::signo::{SIGHUP, SIGINT, SIGTERM, SIGUSR2, SIG_UNBLOCK};

const SA_RESTART: c_int = 0x1000_0000;

/// The C library's `sigset_t`: 1,024 bits in glibc and musl (the kernel reads the first 64).
#[repr(C)]
struct SigSet([c_ulong; 1024 / (8 * std::mem::size_of::<c_ulong>())]);

impl SigSet {
    /// The set of `signals` (all below 32: they sit in the first word on every target).
    fn of(signals: &[c_int]) -> SigSet {
        let mut set = SigSet([0; 1024 / (8 * std::mem::size_of::<c_ulong>())]);
        for &s in signals {
            set.0[0] |= 1 << (s - 1);
        }
        set
    }
}

/// The C library's `struct sigaction`. glibc on MIPS puts the flags first; elsewhere (glibc
/// and musl) the handler comes first. The tail pads for fields some ABIs add after the mask.
#[cfg(all(any(target_arch = "mips", target_arch = "mips64"), target_env = "gnu"))]
#[repr(C)]
struct SigAction {
    flags: c_int,
    handler: usize,
    mask: SigSet,
    tail: [usize; 4],
}

#[cfg(not(all(any(target_arch = "mips", target_arch = "mips64"), target_env = "gnu")))]
#[repr(C)]
struct SigAction {
    handler: usize,
    mask: SigSet,
    flags: c_int,
    tail: [usize; 4],
}

extern "C" {
    fn sigaction(signum: c_int, act: *const SigAction, old: *mut SigAction) -> c_int;
    fn sigprocmask(how: c_int, set: *const SigSet, old: *mut SigSet) -> c_int;
    fn write(fd: c_int, buf: *const c_void, count: usize) -> isize;
    fn __errno_location() -> *mut c_int;
}

/// The write end of the self-pipe, for the handler (-1 until installed).
static WRITE_END: AtomicI32 = AtomicI32::new(-1);

/// The handler: one byte, the signal's number, into the self-pipe; `errno` kept.
extern "C" fn on_signal(signum: c_int) {
    let fd = WRITE_END.load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
    let byte = signum as u8;
    // SAFETY: write(2) and reading/writing errno are async-signal-safe; the buffer is a live
    // byte on this stack; the fd stays open for the life of the process (never closed).
    unsafe {
        let errno = __errno_location();
        let saved = *errno;
        let _ = write(fd, (&byte as *const u8).cast(), 1);
        *errno = saved;
    }
}

/// The read end of the self-pipe: signals as they arrive.
pub struct Signals {
    pipe: UnixStream,
}

impl Signals {
    /// Installs the handlers (once per process).
    pub fn install() -> io::Result<Signals> {
        let (read, write_end) = UnixStream::pair()?;
        write_end.set_nonblocking(true)?;
        // The write end lives as long as the process: the handler may run at any time.
        WRITE_END.store(write_end.into_raw_fd(), Ordering::Relaxed);
        let action = SigAction {
            handler: on_signal as extern "C" fn(c_int) as usize,
            mask: SigSet::of(&[]),
            flags: SA_RESTART,
            tail: [0; 4],
        };
        let ours = [SIGHUP, SIGINT, SIGTERM, SIGUSR2];
        for signum in ours {
            // SAFETY: `action` is a live, correctly laid out struct sigaction whose handler
            // only does async-signal-safe work; the old action is not asked for.
            if unsafe { sigaction(signum, &action, std::ptr::null_mut()) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let set = SigSet::of(&ours);
        // SAFETY: `set` is a live sigset_t; the old mask is not asked for.
        if unsafe { sigprocmask(SIG_UNBLOCK, &set, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Signals { pipe: read })
    }

    /// The next signal, waiting at most `limit` (`None`: for ever). `None` when the time ran
    /// out first.
    pub fn next(&mut self, limit: Option<Duration>) -> Option<Signal> {
        let limit = limit.map(|d| d.max(Duration::from_millis(1)));
        if self.pipe.set_read_timeout(limit).is_err() {
            return None;
        }
        let mut byte = [0u8; 1];
        loop {
            match self.pipe.read(&mut byte) {
                Ok(1) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A timeout, or (never) a closed pipe.
                _ => return None,
            }
            match c_int::from(byte[0]) {
                SIGHUP => return Some(Signal::Hup),
                SIGINT | SIGTERM => return Some(Signal::Stop),
                SIGUSR2 => return Some(Signal::Usr2),
                _ => {}
            }
        }
    }
}

//! Connecting to a target: every resolved address in turn, within one shared time budget.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::addr::HostPort;
use crate::log::End;

/// Why a connect failed.
#[derive(Debug)]
pub enum DialError {
    /// The name did not resolve (or resolved to nothing).
    Unresolved(io::Error),
    /// Every address refused (or was unreachable).
    Refused(io::Error),
    /// The budget ran out.
    TimedOut,
}

impl DialError {
    /// The `end=` a client sees when this was the last attempt.
    pub fn end(&self) -> End {
        match self {
            DialError::TimedOut => End::ConnectTimeout,
            // A name that does not resolve counts as a failed connect (SPEC §1).
            DialError::Unresolved(_) | DialError::Refused(_) => End::ConnectRefused,
        }
    }
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            DialError::Unresolved(e) => write!(f, "name does not resolve: {}", crate::reason(e)),
            DialError::Refused(e) => write!(f, "{}", crate::reason(e)),
            DialError::TimedOut => write!(f, "connect timed out"),
        }
    }
}

/// Resolves `target` now and connects to its addresses in order; a refused address moves on
/// at once, and all of them share `budget`.
pub fn dial(target: &HostPort, budget: Duration) -> Result<(TcpStream, SocketAddr), DialError> {
    let deadline = Instant::now() + budget;
    let addrs = target.resolve().map_err(DialError::Unresolved)?;
    if addrs.is_empty() {
        return Err(DialError::Unresolved(io::ErrorKind::NotFound.into()));
    }
    dial_addrs(&addrs, deadline)
}

/// Connects to the first of `addrs` that accepts before `deadline`.
pub fn dial_addrs(
    addrs: &[SocketAddr],
    deadline: Instant,
) -> Result<(TcpStream, SocketAddr), DialError> {
    let mut last = DialError::TimedOut;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(DialError::TimedOut);
        }
        match TcpStream::connect_timeout(addr, left) {
            Ok(stream) => return Ok((stream, *addr)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                last = DialError::TimedOut
            }
            Err(e) => last = DialError::Refused(e),
        }
    }
    Err(last)
}

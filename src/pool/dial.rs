//! Connecting to a target: every resolved address in turn, within one shared time budget,
//! each socket made with the rule's target-leg options and `--source`; or a Unix-domain
//! socket (no TCP options, no source).

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::addr::{Endpoint, HostPort, TargetAddr};
use crate::config::rule::Options;
use crate::deadline::Deadline;
use crate::end::End;
use crate::relay::Armed;
use crate::stream::Stream;
use crate::sys::{self, reason, ConnectError, TcpOptions};

/// How a rule's sockets to targets are made: the target leg's TCP options (set before
/// connect) and the local address they leave from.
#[derive(Clone, Debug, Default)]
pub struct Dialer {
    socket: TcpOptions,
    source: Option<IpAddr>,
    /// The relay sets SO_SNDTIMEO itself before it writes (a rule with an idle or fin
    /// timeout), so the connect's need not be cleared.
    keep_send_timeout: bool,
}

impl Dialer {
    /// The dialer of a rule with these options.
    pub fn new(options: &Options) -> Dialer {
        Dialer {
            socket: options.target_leg(),
            source: options.source,
            keep_send_timeout: options.idle_timeout.is_some() || options.fin_timeout.is_some(),
        }
    }

    /// The timeouts a TCP socket it connected within `budget` has (`relay::Armed`): on Linux
    /// the connect's send timeout, at most `budget`, when it is kept for the relay.
    pub fn armed(&self, budget: Duration) -> Armed {
        let kept = cfg!(target_os = "linux") && self.keep_send_timeout;
        Armed {
            read: None,
            write: kept.then_some(budget),
        }
    }

    /// The same, for health probes: their sockets are closed at once.
    pub fn for_probes(&self) -> Dialer {
        Dialer {
            keep_send_timeout: true,
            ..self.clone()
        }
    }
}

/// Why a connect failed.
#[derive(Debug)]
pub enum DialError {
    /// The name did not resolve (or resolved to nothing).
    Unresolved(io::Error),
    /// Every address refused (or was unreachable).
    Refused(io::Error),
    /// The budget ran out.
    TimedOut,
    /// tcpfwd ran short itself (no file descriptor or memory): not the target's fault, and
    /// every other target would fail the same way.
    Local(io::Error),
    /// The socket could not be made ready here (`what`: bind to `--source`, an option): as
    /// [`DialError::Local`], tcpfwd's own problem.
    Socket {
        /// The step that failed, as a user reads it.
        what: String,
        /// The OS error.
        error: io::Error,
    },
}

impl DialError {
    /// The `end=` a client sees when this was the last attempt.
    pub fn end(&self) -> End {
        match self {
            DialError::TimedOut => End::ConnectTimeout,
            // A name that does not resolve counts as a failed connect (SPEC §1).
            DialError::Unresolved(_) | DialError::Refused(_) => End::ConnectRefused,
            DialError::Local(_) | DialError::Socket { .. } => End::Error,
        }
    }

    /// Whether tcpfwd itself failed (ran short, or cannot make the socket), rather than the
    /// target.
    pub fn is_local(&self) -> bool {
        matches!(self, DialError::Local(_) | DialError::Socket { .. })
    }

    /// `e` as a local shortage if it is one, else as `otherwise`.
    pub fn from_io(e: io::Error, otherwise: fn(io::Error) -> DialError) -> DialError {
        if sys::is_local_shortage(&e) {
            DialError::Local(e)
        } else {
            otherwise(e)
        }
    }
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            DialError::Unresolved(e) => write!(f, "name does not resolve: {}", reason(e)),
            DialError::Refused(e) => write!(f, "{}", reason(e)),
            DialError::TimedOut => write!(f, "connect timed out"),
            DialError::Local(e) => write!(f, "{} here", reason(e)),
            DialError::Socket { what, error } => write!(f, "cannot {what}: {}", reason(error)),
        }
    }
}

/// Connects to a target of either kind: a `HOST:PORT` as [`dial`] does, a Unix-domain socket
/// directly (a missing socket file or nobody listening is a refused connect).
pub fn dial_target(
    target: &TargetAddr,
    budget: Duration,
    how: &Dialer,
) -> Result<(Stream, Endpoint), DialError> {
    match target {
        TargetAddr::Net(hp) => {
            dial(hp, budget, how).map(|(s, a)| (Stream::Tcp(s), Endpoint::Ip(a)))
        }
        #[cfg(unix)]
        TargetAddr::Unix(addr) => crate::stream::connect_unix(addr)
            .map(|s| (s, Endpoint::Unix(Some(addr.clone()))))
            .map_err(|e| DialError::from_io(e, DialError::Refused)),
        // The parser refuses `unix:` where there are no Unix-domain sockets.
        #[cfg(not(unix))]
        TargetAddr::Unix(_) => Err(DialError::Refused(io::ErrorKind::Unsupported.into())),
    }
}

/// Resolves `target` now and connects to its addresses in order; a refused address moves on
/// at once, and all of them share `budget`.
pub fn dial(
    target: &HostPort,
    budget: Duration,
    how: &Dialer,
) -> Result<(TcpStream, SocketAddr), DialError> {
    let deadline = Deadline::after(budget);
    let addrs = target
        .resolve()
        .map_err(|e| DialError::from_io(e, DialError::Unresolved))?;
    if addrs.is_empty() {
        return Err(DialError::Unresolved(io::ErrorKind::NotFound.into()));
    }
    dial_addrs(&addrs, deadline, how)
}

/// Connects to the first of `addrs` that accepts before `deadline`; a local shortage ends
/// the attempt at once. Each address gets a fair share of the time left, `left / addresses
/// left` (as Go's serial dialer does), so a black-holed first address cannot eat the whole
/// budget; one that refuses hands the rest of its share on at once.
pub fn dial_addrs(
    addrs: &[SocketAddr],
    deadline: Deadline,
    how: &Dialer,
) -> Result<(TcpStream, SocketAddr), DialError> {
    let mut last = DialError::TimedOut;
    for (tried, addr) in addrs.iter().enumerate() {
        let Some(left) = deadline.left() else {
            return Err(DialError::TimedOut);
        };
        let share = fair_share(left, addrs.len() - tried);
        match sys::connect(*addr, &how.socket, how.source, share, how.keep_send_timeout) {
            Ok(stream) => return Ok((stream, *addr)),
            Err(ConnectError::TimedOut) => last = DialError::TimedOut,
            // ETIMEDOUT: the SYN retries, or --user-timeout, ran out first.
            Err(ConnectError::Failed(e)) if e.kind() == io::ErrorKind::TimedOut => {
                last = DialError::TimedOut
            }
            Err(ConnectError::Failed(e)) => match DialError::from_io(e, DialError::Refused) {
                local @ DialError::Local(_) => return Err(local),
                refused => last = refused,
            },
            Err(ConnectError::Local { what, error }) => {
                return Err(if sys::is_local_shortage(&error) {
                    DialError::Local(error)
                } else {
                    DialError::Socket { what, error }
                });
            }
        }
    }
    Err(last)
}

/// `left` split evenly over `addresses` (at least 1), never zero: `connect_timeout` refuses
/// a zero timeout.
fn fair_share(left: Duration, addresses: usize) -> Duration {
    let n = u32::try_from(addresses.max(1)).unwrap_or(u32::MAX);
    (left / n).max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_a_fair_share_of_what_is_left() {
        let s = Duration::from_secs;
        assert_eq!(fair_share(s(5), 2), Duration::from_millis(2_500));
        assert_eq!(fair_share(s(5), 1), s(5));
        assert_eq!(fair_share(s(6), 3), s(2));
        assert_eq!(fair_share(s(5), 0), s(5));
        assert_eq!(
            fair_share(Duration::from_nanos(10), 4),
            Duration::from_millis(1)
        );
    }

    fn local(e: io::Error) -> bool {
        DialError::from_io(e, DialError::Refused).is_local()
    }

    #[test]
    fn a_shortage_of_its_own_is_told_apart_from_a_failed_target() {
        assert!(local(io::ErrorKind::OutOfMemory.into()));
        // `::1` without IPv6, or no free port to this one destination: try the next target.
        assert!(!local(io::ErrorKind::AddrNotAvailable.into()));
        assert!(!local(io::ErrorKind::ConnectionRefused.into()));
        assert!(!local(io::ErrorKind::TimedOut.into()));
        #[cfg(unix)]
        for (code, shortage) in [(24, true), (23, true), (111, false), (113, false)] {
            // EMFILE, ENFILE; ECONNREFUSED, EHOSTUNREACH on Linux (x86, ARM).
            assert_eq!(
                local(io::Error::from_raw_os_error(code)),
                shortage,
                "errno {code}"
            );
        }
        let bind = DialError::Socket {
            what: "bind to --source 192.0.2.1".into(),
            error: io::ErrorKind::AddrNotAvailable.into(),
        };
        assert!(bind.is_local());
        assert_eq!(bind.end(), End::Error);
        assert_eq!(
            bind.to_string(),
            "cannot bind to --source 192.0.2.1: cannot assign requested address"
        );
        let emfile = DialError::Local(io::Error::from_raw_os_error(24));
        assert_eq!(emfile.end(), End::Error);
        #[cfg(target_os = "linux")]
        assert_eq!(emfile.to_string(), "too many open files here");
    }
}

//! The CONNECT session: one client of a `--connect` rule, from its head to the log line.
//!
//! The checks run in SPEC §4's order: the head (400, 431, 408, 405), credentials (407), the
//! port (403), the name (502), the destination filter and proxy loops on every resolved address
//! (403), the connect (502, 504; 503 when tcpfwd itself is out of file descriptors or
//! memory). Then `200`, the bytes the client sent after its head, and the same relay as
//! forwarding.
//!
//! Each refusal is logged with the `end=` word of SPEC §5 that fits it:
//!
//! | status | `end=` |
//! |---|---|
//! | 400, 405, 408, 431 | `bad-request` |
//! | 407 | `auth-failed` (with `user=` when a user name was sent) |
//! | 403 | `denied` |
//! | 502 | `connect-refused` |
//! | 504 | `connect-timeout` |
//! | 503 | `error` |

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use crate::addr::{self, Endpoint, HostPort};
use crate::config::rule::{ConnectPolicy, Mode, Rule};
use crate::deadline::Deadline;
use crate::end::End;
use crate::log;
use crate::pool::dial::{self, DialError};
use crate::relay::{self, Armed, Done, Outcome, Settings};
use crate::serve::client::{send_proxy_header, Origin};
use crate::serve::state::{RuleState, Slot};
use crate::stream::Stream;
use crate::wire::connect_head::{self, Request, Status, ESTABLISHED, HEAD_DEADLINE};

/// How long writing the `200` to the client, or the early bytes to the target, may take.
/// Both fit in an empty socket buffer, so this only bounds a peer that vanished.
const HANDOVER_TIME: Duration = Duration::from_secs(10);

/// A tunnel the client may have: the connected target and what to send it first.
struct Tunnel {
    target: TcpStream,
    addr: SocketAddr,
    early: Vec<u8>,
}

/// Why a client gets no tunnel: the status it is answered with and the `end=` it is logged with.
struct Refusal {
    status: Status,
    end: End,
    why: String,
}

impl Refusal {
    /// A refusal by the checks before any connect.
    fn new(status: Status, why: impl Into<String>) -> Refusal {
        let end = match status {
            Status::ProxyAuthRequired => End::AuthFailed,
            Status::Forbidden => End::Denied,
            // A name that resolves to no address counts as a failed connect, as in forwarding.
            Status::BadGateway => End::ConnectRefused,
            _ => End::BadRequest,
        };
        Refusal {
            status,
            end,
            why: why.into(),
        }
    }

    /// A failed connect: the status that answers it, and the `end=` forwarding logs for it.
    fn dial(e: &DialError, destination: &HostPort) -> Refusal {
        let status = match e {
            DialError::TimedOut => Status::GatewayTimeout,
            DialError::Unresolved(_) | DialError::Refused(_) => Status::BadGateway,
            // tcpfwd itself ran short (no file descriptor or memory).
            DialError::Local(_) | DialError::Socket { .. } => Status::ServiceUnavailable,
        };
        Refusal {
            status,
            end: e.end(),
            why: format!("{destination}: {e}"),
        }
    }
}

/// Serves one CONNECT client (already through the client filter) until its tunnel ends, and
/// records it: one log line, whatever happened; then its place (`slot`) is given back.
/// `state` is the rule's, which `slot` holds too: the last copier gives `slot` back.
pub fn serve(
    client: TcpStream,
    origin: &Origin,
    state: &RuleState,
    policy: &ConnectPolicy,
    slot: Slot,
    accepted: Instant,
) {
    let peer = &origin.source;
    let mut user = None;
    let tunnel = open_tunnel(&client, state, policy, accepted, &mut user);
    // The user name is logged only where it means something: when credentials are required.
    let user = user.filter(|_| !policy.users.is_empty());
    match tunnel {
        Ok(tunnel) => {
            let (peer, addr) = (peer.clone(), Endpoint::Ip(tunnel.addr));
            let done = move |outcome| {
                slot.finish(&peer, Some(&addr), outcome, accepted, user.as_deref());
            };
            hand_over(client, tunnel, state, origin, Box::new(done));
        }
        Err(refusal) => {
            // Not `client=...`: that prefix is for the one line per connection, logged below.
            log::detail(format_args!(
                "CONNECT from {peer} on {} answered {}: {}",
                state.label,
                refusal.status.code(),
                refusal.why
            ));
            connect_head::reject(&client, refusal.status);
            let outcome = Outcome::nothing_relayed(refusal.end);
            slot.finish(peer, None, outcome, accepted, user.as_deref());
        }
    }
}

/// Reads the head and runs every check; connects when they pass. `user` is set to the user
/// name the client sent, as soon as it is known.
fn open_tunnel(
    client: &TcpStream,
    state: &RuleState,
    policy: &ConnectPolicy,
    accepted: Instant,
    user: &mut Option<String>,
) -> Result<Tunnel, Refusal> {
    let deadline = Deadline::from(accepted, HEAD_DEADLINE);
    let (request, early) =
        connect_head::read_request(client, deadline).map_err(|r| Refusal::new(r.status, r.why))?;
    let Request {
        host,
        port,
        credentials,
    } = request;
    *user = credentials.as_ref().map(|c| c.user.clone());
    if !policy.users.is_empty() && !connect_head::authorized(credentials.as_ref(), &policy.users) {
        let why = match credentials {
            Some(_) => "wrong credentials",
            None => "no credentials",
        };
        return Err(Refusal::new(Status::ProxyAuthRequired, why));
    }
    if !policy.ports.allows(port) {
        return Err(Refusal::new(Status::Forbidden, format!("port {port}")));
    }
    let destination = HostPort { host, port };
    // One budget for resolving and connecting, as in forwarding.
    let deadline = Deadline::after(state.rule.options.connect_timeout);
    let resolved = destination
        .resolve()
        .map_err(|e| Refusal::dial(&DialError::from_io(e, DialError::Unresolved), &destination))?;
    if resolved.is_empty() {
        let why = format!("{destination}: resolves to no address");
        return Err(Refusal::new(Status::BadGateway, why));
    }
    let permitted = permitted(&resolved, policy, &state.own_addrs);
    if permitted.is_empty() {
        let why = format!("{destination}: destination refused (--connect-deny/-allow or loop)");
        return Err(Refusal::new(Status::Forbidden, why));
    }
    let (target, addr) = dial::dial_addrs(&permitted, deadline, &state.dialer)
        .map_err(|e| Refusal::dial(&e, &destination))?;
    Ok(Tunnel {
        target,
        addr,
        early,
    })
}

/// The resolved addresses a tunnel may go to, in resolver order: those the destination filter
/// lets through and that are not one of tcpfwd's own listeners.
fn permitted(
    resolved: &[SocketAddr],
    policy: &ConnectPolicy,
    own: &[SocketAddr],
) -> Vec<SocketAddr> {
    resolved
        .iter()
        .filter(|a| policy.destinations.permits(a.ip()) && !is_own(own, **a))
        .copied()
        .collect()
}

/// Sends the target its PROXY header (`--proxy-protocol`), answers `200`, sends the target what
/// the client sent after its head, then relays; the outcome goes to `done`. Up and down count
/// tunnel bytes only: the early bytes, not the head or the `200`.
fn hand_over(client: TcpStream, tunnel: Tunnel, state: &RuleState, origin: &Origin, done: Done) {
    let Tunnel {
        target,
        addr: _,
        early,
    } = tunnel;
    let (client, target) = (Stream::Tcp(client), Stream::Tcp(target));
    let ready = send_proxy_header(&target, origin, state)
        .and_then(|()| write_within(&client, ESTABLISHED).map_err(|_| End::ClientReset))
        .and_then(|()| write_within(&target, &early).map_err(|_| End::TargetReset));
    if let Err(end) = ready {
        return done(Outcome::nothing_relayed(end));
    }
    // Writing the early bytes left the target without a send timeout; else it has its
    // connect's.
    let settings = Settings {
        target: if early.is_empty() {
            state.dialer.armed(state.rule.options.connect_timeout)
        } else {
            Armed::NONE
        },
        ..state.relay_settings()
    };
    let early = early.len() as u64;
    let counted = move |mut outcome: Outcome| {
        outcome.up += early;
        done(outcome)
    };
    relay::relay(client, target, settings, Box::new(counted));
}

/// Writes all of `data`, giving up after [`HANDOVER_TIME`]; then the stream blocks without
/// a timeout again, as the relay expects.
fn write_within(mut stream: &Stream, data: &[u8]) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    stream.set_write_timeout(Some(HANDOVER_TIME))?;
    stream.write_all(data)?;
    stream.set_write_timeout(None)
}

/// Whether connecting to `dest` would reach one of `own` (tcpfwd's listening sockets): a proxy
/// loop. A listener on an unspecified address (`:PORT`, `0.0.0.0:PORT`) is reached through any
/// local address with its port; connecting to an unspecified address reaches this host.
pub fn is_own(own: &[SocketAddr], dest: SocketAddr) -> bool {
    let ip = addr::normalize(dest.ip());
    own.iter().any(|listener| {
        let bound = addr::normalize(listener.ip());
        listener.port() == dest.port()
            && (bound == ip || ip.is_unspecified() || (bound.is_unspecified() && is_local(ip)))
    })
}

/// Whether `ip` is an address of this host: loopback, or one a socket can be bound to.
fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified() || UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// The start-up warning for an open proxy: a CONNECT rule on a non-loopback address with
/// neither `--auth` nor `--allow`, so anyone who reaches it can tunnel through it.
pub fn open_proxy_warning(rule: &Rule, bound: &[SocketAddr]) -> Option<String> {
    let Mode::Connect(policy) = &rule.mode else {
        return None;
    };
    let exposed = bound.iter().any(|a| !addr::normalize(a.ip()).is_loopback());
    let open = policy.users.is_empty() && rule.options.clients.allow.is_empty();
    (exposed && open).then(|| {
        format!(
            "warning: --connect {} is an open proxy: anyone who can reach it can tunnel \
             through it (add --auth USER:PASS or --allow CIDR)",
            rule.listen
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn a_failed_connect_gets_the_status_and_end_of_its_cause() {
        let cases = [
            (DialError::TimedOut, 504, End::ConnectTimeout),
            (
                DialError::Refused(io::ErrorKind::ConnectionRefused.into()),
                502,
                End::ConnectRefused,
            ),
            (
                DialError::Unresolved(io::ErrorKind::NotFound.into()),
                502,
                End::ConnectRefused,
            ),
            (
                DialError::Local(io::ErrorKind::OutOfMemory.into()),
                503,
                End::Error,
            ),
        ];
        for (e, code, end) in cases {
            let refusal = Refusal::dial(&e, &HostPort::parse("a:443", false).unwrap());
            assert_eq!((refusal.status.code(), refusal.end), (code, end), "{e}");
        }
    }

    #[test]
    fn loops_to_own_listeners_are_found() {
        let own = addrs(&["127.0.0.1:3128", "[::]:8080"]);
        let own_of = |dest: &str| is_own(&own, dest.parse().unwrap());
        assert!(own_of("127.0.0.1:3128"));
        assert!(own_of("[::ffff:127.0.0.1]:3128"));
        assert!(own_of("0.0.0.0:3128"));
        assert!(own_of("[::]:3128"));
        assert!(!own_of("127.0.0.1:3129"));
        assert!(!own_of("127.0.0.2:3128")); // nothing listens there
        assert!(!own_of("192.0.2.1:3128"));
        // `:8080`: any local address with that port.
        assert!(own_of("127.0.0.1:8080") && own_of("127.0.0.5:8080") && own_of("[::1]:8080"));
        assert!(own_of("0.0.0.0:8080"));
        assert!(!own_of("192.0.2.1:8080"));
        assert!(!own_of("127.0.0.1:80"));
    }
}

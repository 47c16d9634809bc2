//! What forwarding and CONNECT do alike for one client: who it is (the socket's peer, or a
//! PROXY header's source), the socket options on both sides, and the PROXY header sent on.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::addr::normalize_addr;
use crate::deadline::Deadline;
use crate::end::End;
use crate::log;
use crate::serve::state::RuleState;
use crate::sys::{self, reason};
use crate::wire::proxy_header::{self, Received};

/// Where a client comes from and the address it connected to, as the rest of the connection
/// sees them: the socket's own, or those a PROXY header carried (`--accept-proxy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The client: ACL, `source-hash`, `client=` in the log, the source of a header sent on.
    pub source: SocketAddr,
    /// The address the client connected to: the destination of a header sent on.
    pub destination: SocketAddr,
}

/// How long a client has, from the accept, to send its whole PROXY header (SPEC §1).
pub const PROXY_HEADER_DEADLINE: Duration = Duration::from_secs(5);

/// Who the client is. Without `--accept-proxy`: the socket's peer (the client filter was
/// checked at accept). With it: the header is read within [`PROXY_HEADER_DEADLINE`] of the
/// accept, then its source goes through the client filter. The error is the address to log
/// and the `end=`: `bad-request` for a missing, invalid or late header, `denied` for the filter.
pub fn client_address(
    client: &TcpStream,
    peer: SocketAddr,
    state: &RuleState,
    accepted: Instant,
) -> Result<Origin, (SocketAddr, End)> {
    let local = match client.local_addr() {
        Ok(local) => normalize_addr(local),
        Err(_) => return Err((peer, End::Error)),
    };
    let mut origin = Origin {
        source: peer,
        destination: local,
    };
    if !state.rule.options.accept_proxy {
        return Ok(origin);
    }
    match proxy_header::read(client, Deadline::from(accepted, PROXY_HEADER_DEADLINE)) {
        Ok(Received::Proxied {
            source,
            destination,
        }) => {
            origin = Origin {
                source,
                destination,
            }
        }
        // LOCAL / UNKNOWN: a health check of the load balancer in front; keep the real peer.
        Ok(Received::Local) => {}
        Err(e) => {
            log::detail(format_args!("client {peer} on {}: {e}", state.label));
            return Err((peer, End::BadRequest));
        }
    }
    if !state.rule.options.clients.permits(origin.source.ip()) {
        return Err((origin.source, End::Denied));
    }
    Ok(origin)
}

/// With `--proxy-protocol`, writes the header to a freshly connected target, before any
/// client byte. An error is the `end=` to log (the target went away).
pub fn send_proxy_header(
    target: &TcpStream,
    origin: &Origin,
    state: &RuleState,
) -> Result<(), End> {
    let Some(version) = state.rule.options.proxy_protocol else {
        return Ok(());
    };
    let header = proxy_header::encode(version, origin.source, origin.destination);
    // At most 107 bytes into an empty send buffer: this does not block.
    let mut target = target;
    target.write_all(&header).map_err(|e| {
        log::detail(format_args!(
            "cannot send the PROXY header on {}: {}",
            state.label,
            reason(&e)
        ));
        End::TargetReset
    })
}

/// Socket options on an accepted client that it did not inherit from the listener: none on
/// Linux (see `sys::set_listener_options`), TCP_NODELAY elsewhere. The target's socket got
/// its own before it connected (`pool::dial`).
pub fn configure(stream: &TcpStream, state: &RuleState) {
    sys::configure_accepted(stream, state.rule.options.nodelay());
}

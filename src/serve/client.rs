//! What forwarding and CONNECT do alike for one client: who it is (the socket's peer, or a
//! PROXY header's source), the socket options on both sides, and the PROXY header sent on.
//! A Unix-domain side has no address (`client=unix`), no client filter and no TCP options.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::addr::{normalize_addr, Endpoint};
use crate::deadline::Deadline;
use crate::end::End;
use crate::log;
use crate::serve::state::RuleState;
use crate::stream::Stream;
use crate::sys::{self, reason};
use crate::wire::proxy_header::{self, Received};

/// Where a client comes from and the address it connected to, as the rest of the connection
/// sees them: the socket's own, or those a PROXY header carried (`--accept-proxy`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The client: ACL, `source-hash`, `client=` in the log, the source of a header sent on.
    pub source: Endpoint,
    /// The address the client connected to: the destination of a header sent on. Without
    /// `--proxy-protocol` nothing reads it, and it is not looked up: the source stands in.
    pub destination: Endpoint,
}

/// How long a client has, from the accept, to send its whole PROXY header (SPEC §1).
pub const PROXY_HEADER_DEADLINE: Duration = Duration::from_secs(5);

/// Who the client is. Without `--accept-proxy`: the socket's peer (the client filter was
/// checked at accept). With it: the header is read within [`PROXY_HEADER_DEADLINE`] of the
/// accept, then its source goes through the client filter (a Unix client that sends `LOCAL`
/// stays `unix`, which no filter applies to). The error is the address to log and the
/// `end=`: `bad-request` for a missing, invalid or late header, `denied` for the filter.
// Not inlined: reading a PROXY header takes a buffer on the stack, which would otherwise stay
// in the frame below the relay for the whole connection (a page more per connection).
#[inline(never)]
pub fn client_address(
    client: &Stream,
    peer: Endpoint,
    state: &RuleState,
    accepted: Instant,
) -> Result<Origin, (Endpoint, End)> {
    // The address the client connected to is a system call away (getsockname), and only a
    // PROXY header sent on carries it (forwarding or CONNECT); without one the peer stands in.
    let local = if state.rule.options.proxy_protocol.is_none() {
        peer.clone()
    } else {
        match client.as_tcp().map(|s| s.local_addr()) {
            Some(Ok(local)) => Endpoint::Ip(normalize_addr(local)),
            Some(Err(_)) => return Err((peer, End::Error)),
            None => Endpoint::Unix(None),
        }
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
                source: Endpoint::Ip(source),
                destination: Endpoint::Ip(destination),
            }
        }
        // LOCAL / UNKNOWN: a health check of the load balancer in front; keep the real peer.
        Ok(Received::Local) => {}
        Err(e) => {
            let peer = origin.source;
            log::detail(format_args!("client {peer} on {}: {e}", state.label));
            return Err((peer, End::BadRequest));
        }
    }
    if !permitted(&origin.source, state) {
        return Err((origin.source, End::Denied));
    }
    Ok(origin)
}

/// Whether the client filter lets `client` in; it does not apply to a Unix client (the
/// socket file's permissions do).
pub fn permitted(client: &Endpoint, state: &RuleState) -> bool {
    client
        .ip()
        .is_none_or(|ip| state.rule.options.clients.permits(ip))
}

/// With `--proxy-protocol`, writes the header to a freshly connected target, before any
/// client byte: the client's addresses, or for a Unix client (no address to carry) v1
/// `UNKNOWN` / v2 `LOCAL`. An error is the `end=` to log (the target went away).
pub fn send_proxy_header(target: &Stream, origin: &Origin, state: &RuleState) -> Result<(), End> {
    let Some(version) = state.rule.options.proxy_protocol else {
        return Ok(());
    };
    let header = match (&origin.source, &origin.destination) {
        (Endpoint::Ip(source), Endpoint::Ip(destination)) => {
            proxy_header::encode(version, *source, *destination)
        }
        _ => proxy_header::encode_local(version),
    };
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
/// its own before it connected (`pool::dial`). A Unix socket has none: skipped.
pub fn configure(stream: &Stream, state: &RuleState) {
    if let Some(stream) = stream.as_tcp() {
        sys::configure_accepted(stream, state.rule.options.nodelay());
    }
}

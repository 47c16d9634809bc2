//! One accepted client, from accept to log line: client filter, target, relay, record.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::addr::normalize_addr;
use crate::listener::Slot;
use crate::log::{self, End, Record};
use crate::pool::Connected;
use crate::proxy_header::{self, Received, Version};
use crate::relay::{self, Outcome};
use crate::rule::{Mode, ProxyVersion};
use crate::server::RuleState;
use crate::sys;
use crate::threads;
use crate::tunnel;

/// Takes over a freshly accepted client: refuses it at once if the client filter says so
/// (with `--accept-proxy` the filter waits for the header, on the client's thread), else
/// serves it on a thread of its own. An error means the thread could not be started
/// (the client has been dropped).
pub fn start(
    client: TcpStream,
    peer: SocketAddr,
    mut slot: Slot,
    state: &Arc<RuleState>,
) -> io::Result<()> {
    let accepted = Instant::now();
    let peer = normalize_addr(peer);
    slot.count();
    if !state.rule.options.accept_proxy && !state.rule.options.clients.permits(peer.ip()) {
        // Closed without a byte read or sent.
        drop(client);
        state.record(peer, None, refused(End::Denied), accepted, None);
        return Ok(());
    }
    threads::spawn(move || serve(client, peer, slot, accepted)).map(drop)
}

/// Serves one client on its own thread; the slot is given back when this returns.
fn serve(client: TcpStream, peer: SocketAddr, slot: Slot, accepted: Instant) {
    let state = slot.state();
    configure(&client, state);
    let origin = match client_address(&client, peer, state, accepted) {
        Ok(origin) => origin,
        Err((who, end)) => {
            state.record(who, None, refused(end), accepted, None);
            return;
        }
    };
    if let Mode::Connect(policy) = &state.rule.mode {
        tunnel::serve(client, &origin, state, policy, accepted);
        return;
    }
    let peer = origin.source;
    let Some(pool) = &state.pool else {
        state.record(peer, None, refused(End::Error), accepted, None);
        return;
    };
    let connected = match pool.connect(peer.ip()) {
        Ok(connected) => connected,
        Err(end) => {
            state.record(peer, None, refused(end), accepted, None);
            return;
        }
    };
    let Connected {
        stream,
        addr,
        lease,
    } = connected;
    configure(&stream, state);
    if let Err(end) = send_proxy_header(&stream, &origin, state) {
        state.record(peer, Some(addr), refused(end), accepted, None);
        return;
    }
    let settings = state.relay_settings();
    let outcome = relay::relay(client, stream, settings);
    // The target's count drops before the log line, so whoever reads the line sees it.
    drop(lease);
    state.record(peer, Some(addr), outcome, accepted, None);
}

/// The outcome of a connection that ended before any byte was relayed.
fn refused(end: End) -> Outcome {
    Outcome {
        up: 0,
        down: 0,
        end,
    }
}

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
    match proxy_header::read(client, accepted + PROXY_HEADER_DEADLINE) {
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
    let version = match state.rule.options.proxy_protocol {
        None => return Ok(()),
        Some(ProxyVersion::V1) => Version::V1,
        Some(ProxyVersion::V2) => Version::V2,
    };
    let header = proxy_header::encode(version, origin.source, origin.destination);
    // At most 107 bytes into an empty send buffer: this does not block.
    let mut target = target;
    target.write_all(&header).map_err(|e| {
        log::detail(format_args!(
            "cannot send the PROXY header on {}: {}",
            state.label,
            crate::reason(&e)
        ));
        End::TargetReset
    })
}

/// Socket options on both sides: no added delay (unless `--nagle`), keepalive.
pub fn configure(stream: &TcpStream, state: &RuleState) {
    let options = &state.rule.options;
    let _ = stream.set_nodelay(!options.nagle || options.segment_size.is_some());
    if let Err(e) = sys::set_keepalive(stream, options.keepalive) {
        log::detail(format_args!("cannot set keepalive: {}", crate::reason(&e)));
    }
}

impl RuleState {
    /// Logs and counts a finished connection.
    pub fn record(
        &self,
        client: SocketAddr,
        target: Option<SocketAddr>,
        outcome: Outcome,
        accepted: Instant,
        user: Option<&str>,
    ) {
        self.stats.finished(outcome.end, outcome.up, outcome.down);
        log::connection(&Record {
            client,
            listen: &self.label,
            target,
            up: outcome.up,
            down: outcome.down,
            duration: accepted.elapsed(),
            end: outcome.end,
            user,
        });
    }
}

//! Forwarding one client: a target from the pool (with failover), the PROXY header, the relay.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use crate::end::End;
use crate::pool::Connected;
use crate::relay::{self, Outcome};
use crate::serve::client::{send_proxy_header, Origin};
use crate::serve::state::RuleState;
use crate::stream::Stream;

/// Connects the client to a target and relays until both directions end; logs the line.
pub fn serve(client: Stream, origin: &Origin, state: &RuleState, accepted: Instant) {
    let peer = &origin.source;
    let refused = |target, end| {
        let outcome = Outcome::nothing_relayed(end);
        state.log_connection(peer, target, outcome, accepted, None);
    };
    // A Unix client has no address to hash: `source-hash` sends every one to the same target.
    let hashed = peer.ip().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let Some(pool) = &state.pool else {
        return refused(None, End::Error);
    };
    let Connected {
        stream,
        addr,
        lease,
    } = match pool.connect(hashed) {
        Ok(connected) => connected,
        Err(end) => return refused(None, end),
    };
    if let Err(end) = send_proxy_header(&stream, origin, state) {
        return refused(Some(&addr), end);
    }
    let outcome = relay::relay(client, stream, state.relay_settings());
    // The target's count drops before the log line, so whoever reads the line sees it.
    drop(lease);
    state.log_connection(peer, Some(&addr), outcome, accepted, None);
}

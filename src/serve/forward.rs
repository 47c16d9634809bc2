//! Forwarding one client: a target from the pool (with failover), the PROXY header, the relay.

use std::net::TcpStream;
use std::time::Instant;

use crate::end::End;
use crate::pool::Connected;
use crate::relay::{self, Outcome};
use crate::serve::client::{send_proxy_header, Origin};
use crate::serve::state::RuleState;

/// Connects the client to a target and relays until both directions end; logs the line.
pub fn serve(client: TcpStream, origin: &Origin, state: &RuleState, accepted: Instant) {
    let peer = origin.source;
    let refused = |target, end| {
        let outcome = Outcome::nothing_relayed(end);
        state.log_connection(peer, target, outcome, accepted, None);
    };
    let Some(pool) = &state.pool else {
        return refused(None, End::Error);
    };
    let Connected {
        stream,
        addr,
        lease,
    } = match pool.connect(peer.ip()) {
        Ok(connected) => connected,
        Err(end) => return refused(None, end),
    };
    if let Err(end) = send_proxy_header(&stream, origin, state) {
        return refused(Some(addr), end);
    }
    let outcome = relay::relay(client, stream, state.relay_settings());
    // The target's count drops before the log line, so whoever reads the line sees it.
    drop(lease);
    state.log_connection(peer, Some(addr), outcome, accepted, None);
}

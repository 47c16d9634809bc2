//! Forwarding one client: a target from the pool (with failover), the PROXY header, the relay.

use std::net::TcpStream;
use std::time::Instant;

use crate::end::End;
use crate::pool::Connected;
use crate::relay::{self, Armed, Outcome, Settings};
use crate::serve::client::{configure, send_proxy_header, Origin};
use crate::serve::state::Slot;

/// Connects the client to a target and relays until both directions end; logs the line and
/// gives the client's place (`slot`) back. `armed`: the timeouts the client socket has now.
pub fn serve(client: TcpStream, origin: &Origin, slot: Slot, accepted: Instant, armed: Armed) {
    let state = slot.state();
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
    configure(&stream, state);
    if let Err(end) = send_proxy_header(&stream, origin, state) {
        return refused(Some(addr), end);
    }
    let settings = Settings {
        client: armed,
        ..state.relay_settings()
    };
    let done = move |outcome| {
        // The target's count drops before the log line, so whoever reads the line sees it.
        drop(lease);
        slot.state()
            .log_connection(peer, Some(addr), outcome, accepted, None);
    };
    relay::relay(client, stream, settings, Box::new(done));
}

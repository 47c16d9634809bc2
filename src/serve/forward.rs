//! Forwarding one client: a target from the pool (with failover), the PROXY header, the relay.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use crate::end::End;
use crate::pool::Connected;
use crate::relay::{self, Armed, Outcome, Settings};
use crate::serve::client::{send_proxy_header, Origin};
use crate::serve::state::Slot;
use crate::stream::Stream;

/// Connects the client to a target and relays until both directions end; logs the line and
/// gives the client's place (`slot`) back. `armed`: the timeouts the client socket has now.
pub fn serve(client: Stream, origin: &Origin, slot: Slot, accepted: Instant, armed: Armed) {
    let state = Arc::clone(slot.state());
    let peer = &origin.source;
    let refused = |slot: Slot, target, end| {
        let outcome = Outcome::nothing_relayed(end);
        slot.finish(peer, target, outcome, accepted, None);
    };
    // A Unix client has no address to hash: `source-hash` sends every one to the same target.
    let hashed = peer.ip().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let Some(pool) = &state.pool else {
        return refused(slot, None, End::Error);
    };
    let Connected {
        stream,
        addr,
        lease,
    } = match pool.connect(hashed) {
        Ok(connected) => connected,
        Err(end) => return refused(slot, None, end),
    };
    if let Err(end) = send_proxy_header(&stream, origin, &state) {
        return refused(slot, Some(&addr), end);
    }
    let budget = state.rule.options.connect_timeout;
    let settings = Settings {
        client: armed,
        target: (stream
            .as_tcp()
            .map_or(Armed::NONE, |_| state.dialer.armed(budget))),
        ..state.relay_settings()
    };
    let peer = peer.clone();
    let done = move |outcome| {
        // The target's count drops before the log line, so whoever reads the line sees it.
        drop(lease);
        slot.finish(&peer, Some(&addr), outcome, accepted, None);
    };
    relay::relay(client, stream, settings, Box::new(done));
}

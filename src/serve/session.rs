//! One accepted client, from accept to log line, on the thread that accepted it: the client
//! filter, then forwarding or the CONNECT tunnel.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use crate::addr::normalize_addr;
use crate::config::rule::Mode;
use crate::end::End;
use crate::relay::{Armed, Outcome};
use crate::serve::client::{client_address, configure};
use crate::serve::state::Slot;
use crate::serve::{forward, tunnel};

/// Serves a freshly accepted client until its log line: refuses it at once if the client
/// filter says so (with `--accept-proxy` the filter waits for the header), else forwards or
/// tunnels it. `inherited`: the socket timeouts it got from its listener. The slot is given
/// back when this returns.
pub fn serve(client: TcpStream, peer: SocketAddr, mut slot: Slot, inherited: Armed) {
    let accepted = Instant::now();
    let peer = normalize_addr(peer);
    slot.count();
    // The rule's own handle: `slot` moves on to the relay, whose last copier gives it back.
    let state = Arc::clone(slot.state());
    if !state.rule.options.accept_proxy && !state.rule.options.clients.permits(peer.ip()) {
        // Closed without a byte read or sent.
        drop(client);
        let outcome = Outcome::nothing_relayed(End::Denied);
        state.log_connection(peer, None, outcome, accepted, None);
        return;
    }
    configure(&client, &state);
    let origin = match client_address(&client, peer, &state, accepted) {
        Ok(origin) => origin,
        Err((who, end)) => {
            let outcome = Outcome::nothing_relayed(end);
            state.log_connection(who, None, outcome, accepted, None);
            return;
        }
    };
    // Reading a PROXY header left the client without timeouts.
    let armed = if state.rule.options.accept_proxy {
        Armed::NONE
    } else {
        inherited
    };
    match &state.rule.mode {
        Mode::Connect(policy) => tunnel::serve(client, &origin, &state, policy, slot, accepted),
        Mode::Forward(_) => forward::serve(client, &origin, slot, accepted, armed),
    }
}

//! One accepted client, from accept to log line: the client filter, then forwarding or the
//! CONNECT tunnel on a thread of its own.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use crate::addr::normalize_addr;
use crate::config::rule::Mode;
use crate::end::End;
use crate::relay::Outcome;
use crate::serve::client::{client_address, configure};
use crate::serve::state::{RuleState, Slot};
use crate::serve::{forward, tunnel};
use crate::threads;

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
        let outcome = Outcome::nothing_relayed(End::Denied);
        state.log_connection(peer, None, outcome, accepted, None);
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
            let outcome = Outcome::nothing_relayed(end);
            state.log_connection(who, None, outcome, accepted, None);
            return;
        }
    };
    match &state.rule.mode {
        Mode::Connect(policy) => tunnel::serve(client, &origin, state, policy, accepted),
        Mode::Forward(_) => forward::serve(client, &origin, state, accepted),
    }
}

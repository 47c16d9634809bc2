//! One accepted client, from accept to log line: the client filter, then forwarding or the
//! CONNECT tunnel on a thread of its own.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use crate::addr::{normalize_addr, Endpoint};
use crate::config::rule::Mode;
use crate::end::End;
use crate::relay::Outcome;
use crate::serve::client::{client_address, configure, permitted};
use crate::serve::state::{RuleState, Slot};
use crate::serve::{forward, tunnel};
use crate::stream::Stream;
use crate::threads;

/// Takes over a freshly accepted client: refuses it at once if the client filter says so
/// (with `--accept-proxy` the filter waits for the header, on the client's thread), else
/// serves it on a thread of its own. An error means the thread could not be started
/// (the client has been dropped).
pub fn start(
    client: Stream,
    peer: Endpoint,
    mut slot: Slot,
    state: &Arc<RuleState>,
) -> io::Result<()> {
    let accepted = Instant::now();
    let peer = match peer {
        Endpoint::Ip(addr) => Endpoint::Ip(normalize_addr(addr)),
        unix => unix,
    };
    slot.count();
    if !state.rule.options.accept_proxy && !permitted(&peer, state) {
        // Closed without a byte read or sent.
        drop(client);
        let outcome = Outcome::nothing_relayed(End::Denied);
        state.log_connection(&peer, None, outcome, accepted, None);
        return Ok(());
    }
    threads::spawn(move || serve(client, peer, slot, accepted)).map(drop)
}

/// Serves one client on its own thread; the slot is given back when this returns.
fn serve(client: Stream, peer: Endpoint, slot: Slot, accepted: Instant) {
    let state = slot.state();
    configure(&client, state);
    let origin = match client_address(&client, peer, state, accepted) {
        Ok(origin) => origin,
        Err((who, end)) => {
            let outcome = Outcome::nothing_relayed(end);
            state.log_connection(&who, None, outcome, accepted, None);
            return;
        }
    };
    match (&state.rule.mode, client) {
        (Mode::Connect(policy), Stream::Tcp(client)) => {
            tunnel::serve(client, &origin, state, policy, accepted)
        }
        // The parser gives a CONNECT proxy a TCP listener only.
        #[cfg(unix)]
        (Mode::Connect(_), Stream::Unix(_)) => {
            let outcome = Outcome::nothing_relayed(End::Error);
            state.log_connection(&origin.source, None, outcome, accepted, None);
        }
        (Mode::Forward(_), client) => forward::serve(client, &origin, state, accepted),
    }
}

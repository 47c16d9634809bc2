//! One accepted client, from accept to log line: the client filter, then forwarding or the
//! CONNECT tunnel. An acceptor serves it on its own thread ([`serve`]); a poller of many
//! listeners hands it to a thread of its own ([`start`]).

use std::io;
use std::sync::Arc;
use std::time::Instant;

use crate::addr::{normalize_addr, Endpoint};
use crate::config::rule::Mode;
use crate::end::End;
use crate::relay::{Armed, Outcome};
use crate::serve::client::{client_address, configure, permitted};
use crate::serve::state::Slot;
use crate::serve::{forward, tunnel};
use crate::stream::Stream;
use crate::threads;

/// Serves a freshly accepted client on a thread of its own; an error means the thread could
/// not be started (the client has been dropped).
#[cfg_attr(not(unix), allow(dead_code))] // only the pollers of many listeners (Unix)
pub fn start(client: Stream, peer: Endpoint, slot: Slot) -> io::Result<()> {
    threads::start(move || serve(client, peer, slot, Armed::NONE))
}

/// Serves a freshly accepted client until its log line: refuses it at once if the client
/// filter says so (with `--accept-proxy` the filter waits for the header), else forwards or
/// tunnels it. `inherited`: the socket timeouts it got from its listener. The slot is given
/// back with the log line.
pub fn serve(client: Stream, peer: Endpoint, mut slot: Slot, inherited: Armed) {
    let accepted = Instant::now();
    let peer = match peer {
        Endpoint::Ip(addr) => Endpoint::Ip(normalize_addr(addr)),
        unix => unix,
    };
    slot.count();
    // The rule's own handle: `slot` moves on to the relay, whose last copier gives it back.
    let state = Arc::clone(slot.state());
    if !state.rule.options.accept_proxy && !permitted(&peer, &state) {
        // Closed without a byte read or sent.
        drop(client);
        let outcome = Outcome::nothing_relayed(End::Denied);
        slot.finish(&peer, None, outcome, accepted, None);
        return;
    }
    configure(&client, &state);
    let origin = match client_address(&client, peer, &state, accepted) {
        Ok(origin) => origin,
        Err((who, end)) => {
            let outcome = Outcome::nothing_relayed(end);
            slot.finish(&who, None, outcome, accepted, None);
            return;
        }
    };
    // Reading a PROXY header left the client without timeouts.
    let armed = if state.rule.options.accept_proxy {
        Armed::NONE
    } else {
        inherited
    };
    match (&state.rule.mode, client) {
        (Mode::Connect(policy), Stream::Tcp(client)) => {
            tunnel::serve(client, &origin, &state, policy, slot, accepted)
        }
        // The parser gives a CONNECT proxy a TCP listener only.
        #[cfg(unix)]
        (Mode::Connect(_), Stream::Unix(_)) => {
            let outcome = Outcome::nothing_relayed(End::Error);
            slot.finish(&origin.source, None, outcome, accepted, None);
        }
        (Mode::Forward(_), client) => forward::serve(client, &origin, slot, accepted, armed),
    }
}

//! One accepted client, from accept to log line: client filter, target, relay, record.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use crate::addr::normalize_addr;
use crate::listener::Slot;
use crate::log::{self, End, Record};
use crate::relay::{self, Outcome};
use crate::rule::Mode;
use crate::server::RuleState;
use crate::sys;
use crate::threads;
use crate::tunnel;

/// Takes over a freshly accepted client: refuses it at once if the client filter says so,
/// else serves it on a thread of its own. An error means the thread could not be started
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
        state.record(
            peer,
            None,
            Outcome {
                up: 0,
                down: 0,
                end: End::Denied,
            },
            accepted,
            None,
        );
        return Ok(());
    }
    threads::spawn(move || serve(client, peer, slot, accepted)).map(drop)
}

/// Serves one client on its own thread; the slot is given back when this returns.
fn serve(client: TcpStream, peer: SocketAddr, slot: Slot, accepted: Instant) {
    let state = slot.state();
    let options = &state.rule.options;
    configure(&client, state);
    if let Mode::Connect(policy) = &state.rule.mode {
        tunnel::serve(client, peer, state, policy, accepted);
        return;
    }
    let Some(pool) = &state.pool else {
        state.record(
            peer,
            None,
            Outcome {
                up: 0,
                down: 0,
                end: End::Error,
            },
            accepted,
            None,
        );
        return;
    };
    let connected = match pool.connect(peer.ip()) {
        Ok(connected) => connected,
        Err(end) => {
            state.record(
                peer,
                None,
                Outcome {
                    up: 0,
                    down: 0,
                    end,
                },
                accepted,
                None,
            );
            return;
        }
    };
    configure(&connected.stream, state);
    let settings = state.relay_settings();
    let _ = options;
    let outcome = relay::relay(client, connected.stream, settings);
    state.record(peer, Some(connected.addr), outcome, accepted, None);
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

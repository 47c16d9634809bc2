//! Tuning, black-box: `--mss` clamps the segments a client may send, `--segment-size` still
//! relays byte-exact, and every thread runs under `SCHED_BATCH` unless tcpfwd was started
//! under a policy of someone's choosing (Linux).

mod support;

#[cfg(target_os = "linux")]
use std::io::{Read, Write};
#[cfg(target_os = "linux")]
use std::net::SocketAddr;

use support::*;

#[cfg(target_os = "linux")]
#[test]
fn mss_clamps_the_segments_a_client_may_send() {
    let backend = Backend::echo();
    let target = backend.addr.to_string();
    let plain = Tcpfwd::start(&["127.0.0.1:0", &target]);
    let clamped = Tcpfwd::start(&["127.0.0.1:0", &target, "--mss", "1000"]);
    let mss_of = |addr: SocketAddr| {
        let mut client = connect(addr);
        // The client's own TCP_MAXSEG: the smaller of its MTU's and what the peer advertised.
        let mss = mss(&client).unwrap();
        client.write_all(b"ping").unwrap();
        let mut echoed = [0; 4];
        client.read_exact(&mut echoed).unwrap();
        assert_eq!(&echoed, b"ping");
        mss
    };
    let (unclamped, with_mss) = (mss_of(plain.addr()), mss_of(clamped.addr()));
    assert!(with_mss <= 1000, "client MSS {with_mss} with --mss 1000");
    assert!(unclamped > 1000, "client MSS {unclamped} without --mss");
}

#[test]
fn segment_size_still_relays_a_large_transfer_byte_exact() {
    let backend = Backend::echo();
    let fwd = Tcpfwd::start(&[
        "127.0.0.1:0",
        &backend.addr.to_string(),
        "--segment-size",
        "1000",
    ]);
    let size = 3 << 20;
    echo_through(fwd.addr(), size);
    let line = fwd.wait_line("end=client-eof");
    assert!(line.contains(&format!("up={size} down={size} ")), "{line}");
}

/// Linux's scheduling policies as `/proc` shows them.
#[cfg(target_os = "linux")]
const SCHED_BATCH: u32 = 3;
#[cfg(target_os = "linux")]
const SCHED_IDLE: u32 = 5;

/// Starts `fwd`'s connection threads (three held connections, one round trip each) and
/// returns the policy of each of its threads then.
#[cfg(target_os = "linux")]
fn policies_while_serving(fwd: &Tcpfwd) -> Vec<u32> {
    let held: Vec<_> = (0..3)
        .map(|_| {
            let mut client = connect(fwd.addr());
            assert_eq!(echo_once(&mut client, b"ping"), b"ping");
            client
        })
        .collect();
    // Main, signals, acceptor(s) and two threads per held connection.
    let policies = policies_of(fwd.pid()).unwrap();
    assert!(policies.len() >= 7, "{} threads", policies.len());
    drop(held);
    policies
}

#[cfg(target_os = "linux")]
#[test]
fn every_thread_runs_under_sched_batch() {
    let backend = Backend::echo();
    let fwd = Tcpfwd::start(&["127.0.0.1:0", &backend.addr.to_string()]);
    let policies = policies_while_serving(&fwd);
    assert!(
        all_but_the_emulators(&policies, SCHED_BATCH),
        "policies {policies:?}"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_policy_chosen_by_whoever_started_tcpfwd_is_kept() {
    let chrt = std::process::Command::new("chrt").arg("--help").output();
    if !chrt.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: no chrt (util-linux)");
        return;
    }
    let backend = Backend::echo();
    let fwd = Tcpfwd::start_wrapped(
        &["chrt", "--idle", "0"],
        &["127.0.0.1:0", &backend.addr.to_string()],
    );
    let policies = policies_while_serving(&fwd);
    assert!(
        all_but_the_emulators(&policies, SCHED_IDLE),
        "policies {policies:?}"
    );
}

/// Whether every thread has `policy`, but for qemu-user's own thread (its RCU thread starts
/// before tcpfwd's `main`, under the policy tcpfwd was started with).
#[cfg(target_os = "linux")]
fn all_but_the_emulators(policies: &[u32], policy: u32) -> bool {
    let others = policies.iter().filter(|&&p| p != policy).count();
    others <= usize::from(under_emulation())
}

//! Tuning the TCP segments, black-box: `--mss` clamps the segments a client may send, and
//! `--segment-size` still relays byte-exact.

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

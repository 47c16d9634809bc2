//! What routers need: a 32-bit address space that holds many connections.
//!
//! Run by `make cross-test` (under qemu-user) and by hand with
//! `cargo test --test routers -- --ignored --nocapture`.

mod support;

use std::io::Read;
use std::time::{Duration, Instant};

use support::*;

const CONNECTIONS: usize = 1000;

/// Address space and resident memory of a process, where they can be told (see support).
fn memory(pid: u32) -> Option<(u64, u64)> {
    Some((address_space_of(pid)?, resident_of(pid)?))
}

#[test]
#[ignore = "1,000 connections: run by make cross-test, or with --ignored"]
fn a_thousand_connections_fit_well_inside_a_32_bit_address_space() {
    let _ = raise_fd_limit(); // this test holds 2,000 sockets itself
    let (backend, held_by_backend) = greeting_holder();
    let fwd = Tcpfwd::start(&["127.0.0.1:0", &backend.addr.to_string()]);
    let pid = fwd.pid();
    let idle = memory(pid);
    let started = Instant::now();
    let mut clients = Vec::with_capacity(CONNECTIONS);
    for i in 0..CONNECTIONS {
        let mut client = connect(fwd.addr());
        let mut greeting = [0; 2];
        client.read_exact(&mut greeting).unwrap();
        assert_eq!(&greeting, b"ok", "connection {i}");
        clients.push(client);
    }
    let setup = started.elapsed();
    let threads = threads_of(pid).expect("threads of tcpfwd");
    // Two threads per connection: all of them are being forwarded at once.
    assert!(
        threads >= 2 * CONNECTIONS,
        "{threads} threads for {CONNECTIONS} connections"
    );
    let held = memory(pid);
    let how = if under_emulation() { ", qemu-user" } else { "" };
    eprintln!(
        "{CONNECTIONS} connections ({} bits{how}): {threads} threads, set up in {:.1} s",
        usize::BITS,
        setup.as_secs_f64()
    );
    match (idle, held) {
        (Some((idle_size, idle_resident)), Some((size, resident))) => {
            let per = |now: u64, before: u64| now.saturating_sub(before) / CONNECTIONS as u64;
            eprintln!(
                "address space {} KiB idle, {} KiB held ({} KiB per connection); \
                 resident {} KiB idle, {} KiB held ({} KiB per connection)",
                idle_size >> 10,
                size >> 10,
                per(size, idle_size) >> 10,
                idle_resident >> 10,
                resident >> 10,
                per(resident, idle_resident) >> 10,
            );
            if cfg!(target_pointer_width = "32") {
                // A 32-bit process has 2-3 GiB of user address space; std's default 2 MiB
                // stacks would need 4 GiB here.
                assert!(
                    size < 512 << 20,
                    "{} MiB of address space for {CONNECTIONS} connections",
                    size >> 20
                );
            }
        }
        _ => {
            // Only a 64-bit guest under qemu, whose mappings mix with qemu's own.
            assert!(cfg!(target_pointer_width = "64") && under_emulation());
            eprintln!("memory not measured: a 64-bit guest's mappings lie among qemu's");
        }
    }
    // Both sides close: every connection ends cleanly and is logged.
    drop(clients);
    held_by_backend.lock().unwrap().clear();
    // Under qemu-user each connection's two threads end at once, 2,000 emulated threads: a
    // bound of its own, still bounded. (With zig 0.17's malloc, which spins, this took up to
    // 90 s and more on mipsel, 1 run in 5; with musl's, 0.2-0.3 s: README, zig.)
    let limit = if under_emulation() {
        4 * PATIENCE
    } else {
        PATIENCE
    };
    let ending = Instant::now();
    let ends = fwd.wait_lines_within("end=", CONNECTIONS, limit);
    eprintln!(
        "{CONNECTIONS} connections ended and logged in {:.1} s",
        ending.elapsed().as_secs_f64()
    );
    let unclean: Vec<&String> = ends
        .iter()
        .filter(|l| !l.ends_with("end=client-eof") && !l.ends_with("end=target-eof"))
        .collect();
    assert!(unclean.is_empty(), "{unclean:?}");
    // Idle threads exit within 3 s (SPEC §3); what the C library then gives back differs
    // (glibc keeps a cache of thread stacks, musl unmaps them).
    let idle_again = wait_until(Duration::from_secs(10), || {
        threads_of(pid).is_some_and(|t| t < CONNECTIONS / 10)
    });
    if let (true, Some((_, resident))) = (idle_again, memory(pid)) {
        eprintln!("resident {} KiB once the connections ended", resident >> 10);
    }
}

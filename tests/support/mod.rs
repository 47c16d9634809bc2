//! Shared pieces of the black-box tests: run the real binary, real backends on loopback.
//!
//! One file per job, each using only those listed above it:
//!
//! - `sys`: the tests' own FFI (Linux): connect from a chosen address, TCP options read back
//!   (also on tcpfwd's own sockets), open-file limit.
//! - `wait`: how long a test may wait ([`PATIENCE`]), polling, the tests' own threads.
//! - `emulation`: running under qemu-user, and skipping what it cannot emulate.
//! - `net`: plain TCP from the test's side, and addresses free, closed or never answering.
//! - `backend`: real backends on loopback, and which one served a connection.
//! - `process`: the tcpfwd binary under test ([`Tcpfwd`], [`run`]) and files handed to it.
//! - `http`: just enough HTTP for the metrics endpoint.
//! - `procfs`: what a running tcpfwd holds, read from `/proc` (Linux).
//! - `checks`: assertions several test files share.
//!
//! Every test file compiles all of it (`mod support;`) and uses a part.
#![allow(dead_code)]

mod backend;
mod checks;
mod emulation;
mod http;
mod net;
mod process;
mod procfs;
mod sys;
mod wait;

// Each test file uses a part of these: the rest is not an unused import.
#[allow(unused_imports)]
pub use backend::{greeting_holder, hold, served_by, served_from, Backend, Held};
#[allow(unused_imports)]
pub use checks::{
    assert_closed_without_data, assert_denied, echo_both_ways_at_once, echo_once, echo_through,
    Duplex,
};
#[allow(unused_imports)]
pub use emulation::{
    runner, skip_if_socket_errors_untranslated, skip_under_emulation, under_emulation,
};
#[allow(unused_imports)]
pub use http::{http, http_get, metric, Response};
#[allow(unused_imports)]
pub use net::{
    closed_port, connect, connect_from, free_port, free_port_block, free_port_block_on,
    free_ports_on, full_backlog, ipv6_loopback, pattern, read_all,
};
#[allow(unused_imports)]
pub use process::{run, signal, tcpfwd_command, temp_file, Tcpfwd};
#[allow(unused_imports)]
pub use procfs::{
    address_space_of, close_wait_of, cpu_ticks, cpu_ticks_with_children, fds_of, guest_memory_of,
    policies_of, resident_of, threads_of, GuestMemory,
};
#[allow(unused_imports)]
pub use sys::{mss, place_fd, raise_fd_limit, set_user_timeout_in, socket_of, tcp_info, TcpInfo};
#[allow(unused_imports)]
pub use wait::{spawn, wait_until, PATIENCE};

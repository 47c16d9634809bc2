//! tcpfwd: a small, dependency-free TCP forwarder, load balancer and HTTP CONNECT proxy.
//!
//! A client travels config → serve → pool → wire → relay → sys. The map, in import order
//! (each layer imports only from the layers below it); it differs from that path in one
//! place: `config/` defines the typed `Rule` that `serve/` and `pool/` read (and a reload
//! parses the file again), so it sits below them.
//!
//! | folder | job |
//! |---|---|
//! | `serve/` | listen, accept, one session per client: forward or CONNECT tunnel; metrics endpoint; start-up limits; reload, stop, hand-over |
//! | `pool/` | the targets of a rule: balance, health, failover, dial |
//! | `config/` | command line and config file → typed `Rule`s; `--check`, `--help` |
//! | `wire/` | formats on the wire: the CONNECT head and its answers, the PROXY header |
//! | `relay/` | the heart: two threads copy the bytes, half-close at EOF |
//! | `threads.rs` | threads with small stacks; finished ones take the next work |
//! | `sys/` | the OS: Linux socket options std lacks, error words, the only `unsafe` |
//!
//! Small shared leaves: `addr` (addresses and CIDRs), `end` (the `end=` words), `log`,
//! `counters` (32-bit-safe counters per rule), `deadline` (a total time budget), `stream`
//! (a connected TCP or Unix-domain socket: one relay for both).
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod addr;
mod config;
mod counters;
mod deadline;
mod end;
mod log;
mod pool;
mod relay;
mod serve;
mod stream;
mod sys;
mod threads;
mod wire;

use std::ffi::OsString;

use config::Command;

/// Runs tcpfwd with the arguments after the program name; returns the exit status.
pub fn main(args: Vec<OsString>) -> i32 {
    sys::fault_signals_to_default();
    std::panic::set_hook(Box::new(|info| {
        // A bug in one connection ends that connection only; say so on one line.
        log::problem(format_args!("internal error (please report): {info}"));
    }));
    match config::parse_args(args.clone()) {
        Err(e) => {
            eprintln!("tcpfwd: {e}");
            2
        }
        Ok(Command::Help) => {
            print!("{}", config::HELP);
            0
        }
        Ok(Command::Version) => {
            println!("tcpfwd {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Ok(Command::Check(setup)) => {
            let process = setup.process.to_string();
            if !process.is_empty() {
                println!("{process}");
            }
            print!("{}", config::Listing(&setup.rules));
            0
        }
        Ok(Command::Run(setup)) => match serve::run(setup, args) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("tcpfwd: {e}");
                1
            }
        },
    }
}

//! tcpfwd: a small, dependency-free TCP forwarder, load balancer and HTTP CONNECT proxy.
//!
//! The layers, from the outside in: [`cli`] and [`config`] turn words into a typed
//! [`rule::Rule`]; [`server`] opens every listener; [`listener`] accepts; [`session`] takes one
//! client through the client filter and the target [`pool`]; [`relay`] copies the bytes.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod addr;
pub mod balance;
pub mod cli;
pub(crate) mod config;
pub mod connect_head;
pub mod dial;
pub mod health;
pub mod limits;
pub mod listener;
pub mod log;
pub mod metrics;
pub mod pool;
pub mod proxy_header;
pub mod relay;
pub mod rule;
pub mod server;
pub mod session;
pub mod stats;
pub mod sys;
pub mod threads;
pub mod tunnel;
pub mod units;
pub mod watch;

use std::ffi::OsString;
use std::io;

use cli::Command;

/// Runs tcpfwd with the arguments after the program name; returns the exit status.
pub fn main(args: Vec<OsString>) -> i32 {
    sys::fault_signals_to_default();
    std::panic::set_hook(Box::new(|info| {
        // A bug in one connection ends that connection only; say so on one line.
        log::problem(format_args!("internal error (please report): {info}"));
    }));
    match cli::parse_args(args) {
        Err(e) => {
            eprintln!("tcpfwd: {e}");
            2
        }
        Ok(Command::Help) => {
            print!("{}", cli::HELP);
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
            for rule in &setup.rules {
                println!("{rule}");
            }
            0
        }
        Ok(Command::Run(setup)) => match server::run(setup) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("tcpfwd: {e}");
                1
            }
        },
    }
}

/// The OS reason of an I/O error as a user reads it: `address in use`, `permission denied`.
pub fn reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => return "address in use".into(),
        io::ErrorKind::PermissionDenied => return "permission denied".into(),
        io::ErrorKind::ConnectionRefused => return "connection refused".into(),
        _ => {}
    }
    let text = e.to_string();
    // "Address already in use (os error 98)" -> "address already in use"
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => format!("{:?}", e.kind()),
    }
}

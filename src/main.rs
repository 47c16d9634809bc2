//! The `tcpfwd` command: everything lives in the library; this only hands over the arguments.

fn main() {
    std::process::exit(tcpfwd::main(std::env::args_os().skip(1).collect()));
}

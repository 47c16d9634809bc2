//! Kernel limits that cap how many connections can be held, checked once at start-up.

use crate::log;
use crate::rule::Rule;
use crate::sys;

/// Raises the soft open-file limit to the hard one and warns when it is still too low for
/// every rule's `--max-conns` (two sockets per connection).
pub fn check(rules: &[Rule]) {
    let conns: usize = rules.iter().map(|r| r.options.max_conns).sum();
    let needed = (conns as u64).saturating_mul(2) + 16 * rules.len() as u64;
    match sys::raise_fd_limit() {
        Ok(limit) if limit < needed => log::problem(format_args!(
            "warning: the open-file limit is {limit}, too low for {conns} connections \
             (the sum of --max-conns; two sockets each): raise it (ulimit -n) or lower --max-conns"
        )),
        _ => {}
    }
}

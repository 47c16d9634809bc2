//! Kernel limits that cap how many connections can be held, checked once at start-up.
//!
//! Each connection costs two sockets, two threads, and (Linux) about four memory mappings
//! (each thread's stack and guard page). When the sum of every rule's `--max-conns` is more
//! than the tightest limit allows, every rule's `--max-conns` is lowered in proportion and one
//! warning names the limit: the listeners then stop accepting at the cap (clients wait in
//! the backlog) instead of failing at the limit, or the process being aborted by it.

use crate::config::rule::Rule;
use crate::log;
use crate::sys;

/// File descriptors kept for listeners, logs, health checks and the like.
const SPARE_FDS: u64 = 32;
/// Memory mappings kept for the program, its libraries and malloc arenas.
const SPARE_MAPS: u64 = 1_000;
/// Memory mappings per connection: two threads, each a stack and its guard page, and one
/// more for margin (malloc arenas grow with the number of threads).
const MAPS_PER_CONN: u64 = 5;
/// Threads kept for the rest of the process and of the system.
const SPARE_THREADS: u64 = 200;

/// A limit and how many connections it allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cap {
    /// How many connections the limit allows.
    pub conns: u64,
    /// The limit as a user finds it: `the open-file limit (ulimit -n) of 20000`.
    pub limit: String,
}

/// Raises the soft open-file limit to the hard one; if the kernel limits allow fewer
/// connections than the sum of every rule's `--max-conns`, lowers each rule's in proportion
/// and warns once, naming the limit.
pub fn check(rules: &mut [Rule]) {
    let wanted: u64 = rules.iter().map(|r| r.options.max_conns as u64).sum();
    let Some(cap) = tightest(&read_limits(rules.len() as u64)) else {
        return;
    };
    if cap.conns >= wanted {
        return;
    }
    for rule in rules.iter_mut() {
        rule.options.max_conns = share(rule.options.max_conns, cap.conns, wanted);
    }
    let now: Vec<String> = rules
        .iter()
        .map(|r| format!("{} on {}", r.options.max_conns, r.listen))
        .collect();
    log::problem(format_args!(
        "warning: {} allows about {} connections, fewer than {wanted} (the sum of --max-conns): \
         --max-conns is now {} (clients beyond it wait in the backlog)",
        cap.limit,
        cap.conns,
        now.join(", ")
    ));
}

/// `max` scaled by `cap / wanted`, at least 1.
fn share(max: usize, cap: u64, wanted: u64) -> usize {
    let scaled = (max as u64).saturating_mul(cap) / wanted.max(1);
    usize::try_from(scaled).unwrap_or(usize::MAX).max(1)
}

/// The limit that allows the fewest connections.
pub fn tightest(caps: &[Cap]) -> Option<Cap> {
    caps.iter().min_by_key(|c| c.conns).cloned()
}

/// Every limit this system lets us read, with the connections each allows.
fn read_limits(rules: u64) -> Vec<Cap> {
    let mut caps = Vec::new();
    if let Ok(files) = sys::raise_fd_limit() {
        caps.push(Cap {
            conns: files.saturating_sub(SPARE_FDS + 16 * rules) / 2,
            limit: format!("the open-file limit (ulimit -n) of {files}"),
        });
    }
    if let Some(maps) = read_number("/proc/sys/vm/max_map_count") {
        caps.push(Cap {
            conns: maps.saturating_sub(SPARE_MAPS) / MAPS_PER_CONN,
            limit: format!("vm.max_map_count of {maps}"),
        });
    }
    let tasks_now = running_tasks().unwrap_or(0);
    for (path, name) in [
        ("/proc/sys/kernel/threads-max", "kernel.threads-max"),
        ("/proc/sys/kernel/pid_max", "kernel.pid_max"),
    ] {
        if let Some(max) = read_number(path) {
            caps.push(Cap {
                conns: max.saturating_sub(tasks_now + SPARE_THREADS) / 2,
                limit: format!("{name} of {max} ({tasks_now} in use)"),
            });
        }
    }
    if let Some(procs) = max_processes() {
        caps.push(Cap {
            conns: procs.saturating_sub(SPARE_THREADS) / 2,
            limit: format!("the process limit (ulimit -u) of {procs}"),
        });
    }
    caps
}

fn read_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Threads and processes on the whole system now (Linux: the 4th field of /proc/loadavg,
/// `running/total`).
fn running_tasks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    parse_tasks(&text)
}

fn parse_tasks(loadavg: &str) -> Option<u64> {
    loadavg
        .split_whitespace()
        .nth(3)?
        .split_once('/')?
        .1
        .parse()
        .ok()
}

/// The soft RLIMIT_NPROC (threads count against it), from /proc/self/limits; `None` when
/// unlimited or unreadable.
fn max_processes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_max_processes(&text)
}

fn parse_max_processes(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max processes"))?;
    line.strip_prefix("Max processes")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_kernel_formats() {
        assert_eq!(parse_tasks("0.52 0.58 0.59 4/125 21433\n"), Some(125));
        assert_eq!(parse_tasks("garbage"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max processes             96365                96365                processes \n";
        assert_eq!(parse_max_processes(limits), Some(96365));
        let unlimited =
            "Max processes             unlimited            unlimited            processes \n";
        assert_eq!(parse_max_processes(unlimited), None);
    }

    #[test]
    fn the_tightest_limit_wins_and_shares_are_proportional() {
        let caps = [
            Cap {
                conns: 9_984,
                limit: "files".into(),
            },
            Cap {
                conns: 12_906,
                limit: "maps".into(),
            },
        ];
        assert_eq!(tightest(&caps).map(|c| c.limit), Some("files".into()));
        assert_eq!(tightest(&[]), None);
        assert_eq!(share(1024, 500, 2048), 250);
        assert_eq!(share(1, 1, 1_000_000), 1);
    }
}

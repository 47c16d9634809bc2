//! Kernel limits that cap how many connections can be held, checked once at start-up.
//!
//! Each connection costs two sockets, two threads, and (Linux) about four memory mappings
//! (each thread's stack and guard page). A listening socket with an accept thread of its own
//! costs two descriptors (its own, and the one a blocked `accept()` holds while it waits:
//! Linux reserves it first) and the thread; polled ones (many rules) one descriptor each and
//! a thread per group. When the sum of every rule's `--max-conns` is more than the tightest
//! limit allows, every rule's `--max-conns` is lowered in proportion and one warning names
//! the limit: the listeners then stop accepting at the cap (clients wait in the backlog)
//! instead of failing at the limit, or the process being aborted by it. When not even one
//! connection fits, start-up fails naming the limit.

use crate::config::rule::{Mode, Rule};
use crate::log;
#[cfg(unix)]
use crate::serve::live;
use crate::sys;

/// File descriptors kept for standard streams, logs, metrics scrapes, name resolution and
/// the like: 32, or a quarter of a smaller limit.
const SPARE_FDS: u64 = 32;
/// Memory mappings kept for the program, its libraries and malloc arenas.
const SPARE_MAPS: u64 = 1_000;
/// Memory mappings per connection: two threads, each a stack and its guard page, and one
/// more for margin (malloc arenas grow with the number of threads).
const MAPS_PER_CONN: u64 = 5;
/// Threads kept for the rest of the system (system-wide limits only).
const SPARE_THREADS: u64 = 200;
/// Threads of this process besides connections and listeners (main, metrics, spare margin).
const OWN_THREADS: u64 = 4;
/// A rule's targets probed at `--health-interval`: a thread, and a descriptor per probe.
const PER_PROBED_RULE: u64 = 1;

/// A limit and how many connections it allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cap {
    /// How many connections the limit allows.
    pub conns: u64,
    /// The limit as a user finds it: `the open-file limit (ulimit -n) of 20000`.
    pub limit: String,
    /// What the rest of the process takes of it, said when nothing is left for connections.
    pub taken: String,
}

/// What the process holds besides connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fixed {
    /// Listening sockets (the rules' and the metrics one).
    pub listeners: u64,
    /// Rules with active health probes.
    pub probed: u64,
}

/// Raises the soft open-file limit to the hard one; if the kernel limits allow fewer
/// connections than the sum of every rule's `--max-conns`, lowers each rule's in proportion
/// and warns once, naming the limit. `Err` (start-up fails) when no connection fits at all.
pub fn check(rules: &mut [Rule], listeners: u64) -> Result<(), String> {
    let probed = rules
        .iter()
        .filter(|r| matches!(&r.mode, Mode::Forward(fw) if fw.health.interval.is_some()))
        .count() as u64;
    let fixed = Fixed { listeners, probed };
    // Each --max-conns is at most 1,000,000 (checked when read); the sum saturates anyway.
    let wanted = rules.iter().fold(0u64, |sum, r| {
        sum.saturating_add(r.options.max_conns as u64)
    });
    let Some(cap) = tightest(&read_limits(fixed)) else {
        return Ok(());
    };
    if cap.conns >= wanted {
        return Ok(());
    }
    if cap.conns == 0 {
        return Err(format!(
            "{} leaves no room for a single connection ({}): raise it",
            cap.limit, cap.taken
        ));
    }
    for rule in rules.iter_mut() {
        rule.options.max_conns = share(rule.options.max_conns, cap.conns, wanted);
    }
    let now = if rules.len() <= 8 {
        let each: Vec<String> = rules
            .iter()
            .map(|r| format!("{} on {}", r.options.max_conns, r.listen))
            .collect();
        each.join(", ")
    } else {
        let least = rules.iter().map(|r| r.options.max_conns).min().unwrap_or(1);
        let most = rules.iter().map(|r| r.options.max_conns).max().unwrap_or(1);
        format!("{least} to {most} on each of {} rules", rules.len())
    };
    let over = if cap.conns < rules.len() as u64 {
        " (at least 1 per rule: more than fit, raise the limit)"
    } else {
        ""
    };
    log::problem(format_args!(
        "warning: {} allows about {} connections, fewer than {wanted} (the sum of --max-conns): \
         --max-conns is now {now}{over} (clients beyond it wait in the backlog)",
        cap.limit, cap.conns,
    ));
    Ok(())
}

/// Descriptors and threads `listeners` listening sockets hold (see `live::start_all`): up to
/// [`live::THREAD_PER_LISTENER_UP_TO`], an accept thread each, blocked in `accept()` with a
/// descriptor reserved (two each); more are polled (Unix): one each, a thread per group.
fn listener_cost(listeners: u64) -> (u64, u64) {
    #[cfg(unix)]
    if listeners > live::THREAD_PER_LISTENER_UP_TO as u64 {
        return (listeners, listeners.div_ceil(live::POLL_GROUP as u64));
    }
    (2 * listeners, listeners)
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
fn read_limits(fixed: Fixed) -> Vec<Cap> {
    let mut caps = Vec::new();
    let own_threads =
        listener_cost(fixed.listeners).1 + fixed.probed * PER_PROBED_RULE + OWN_THREADS;
    if let Ok(files) = sys::raise_fd_limit() {
        let (listening, _) = listener_cost(fixed.listeners);
        let spare = SPARE_FDS.min(files / 4);
        let taken = listening + fixed.probed * PER_PROBED_RULE + spare;
        caps.push(Cap {
            conns: files.saturating_sub(taken) / 2,
            limit: format!("the open-file limit (ulimit -n) of {files}"),
            taken: format!(
                "{} listeners take {listening} ({}); {spare} are kept spare",
                fixed.listeners,
                if listening > fixed.listeners {
                    "two each: a socket and the one a waiting accept holds"
                } else {
                    "one each: they are polled"
                }
            ),
        });
    }
    if let Some(maps) = read_number("/proc/sys/vm/max_map_count") {
        caps.push(Cap {
            conns: maps.saturating_sub(SPARE_MAPS + 2 * own_threads) / MAPS_PER_CONN,
            limit: format!("vm.max_map_count of {maps}"),
            taken: format!("{SPARE_MAPS} are kept for the program and its libraries"),
        });
    }
    let tasks_now = running_tasks().unwrap_or(0);
    for (path, name) in [
        ("/proc/sys/kernel/threads-max", "kernel.threads-max"),
        ("/proc/sys/kernel/pid_max", "kernel.pid_max"),
    ] {
        if let Some(max) = read_number(path) {
            caps.push(Cap {
                conns: max.saturating_sub(tasks_now + own_threads + SPARE_THREADS) / 2,
                limit: format!("{name} of {max} ({tasks_now} in use)"),
                taken: format!("{SPARE_THREADS} are kept for the rest of the system"),
            });
        }
    }
    if let Some(procs) = max_processes().filter(|_| !nproc_exempt()) {
        // RLIMIT_NPROC counts every thread of every process of the real user: those that
        // run now are not ours to take.
        let user_tasks = user_tasks().unwrap_or(0);
        caps.push(Cap {
            conns: procs.saturating_sub(user_tasks + own_threads) / 2,
            limit: format!(
                "the process limit (ulimit -u) of {procs} ({user_tasks} in use by this user)"
            ),
            taken: format!("{own_threads} threads for listeners and the process itself"),
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

/// Whether the kernel lets this process past RLIMIT_NPROC: its real user is root, or it
/// has CAP_SYS_RESOURCE or CAP_SYS_ADMIN (Linux: /proc/self/status).
fn nproc_exempt() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| parse_exempt(&s))
}

fn parse_exempt(status: &str) -> bool {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let root = field("Uid:").and_then(|v| v.split_whitespace().next()) == Some("0");
    // CAP_SYS_ADMIN is bit 21, CAP_SYS_RESOURCE bit 24.
    let caps = field("CapEff:").and_then(|v| u64::from_str_radix(v, 16).ok());
    root || caps.is_some_and(|c| c & (1 << 21 | 1 << 24) != 0)
}

/// Threads of every process whose real user is ours (what RLIMIT_NPROC counts), from /proc.
fn user_tasks() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = real_uid(&own)?;
    let mut tasks = 0;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        if !name
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        if real_uid(&status) == Some(uid) {
            tasks += status
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(1);
        }
    }
    Some(tasks)
}

fn real_uid(status: &str) -> Option<&str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()
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
        let status = |uid: &str, caps: &str| {
            format!("Name:\tx\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nCapEff:\t{caps}\n")
        };
        assert!(parse_exempt(&status("0", "0000000000000000")));
        assert!(!parse_exempt(&status("1000", "0000000000000000")));
        assert!(
            parse_exempt(&status("1000", "0000000001000000")),
            "CAP_SYS_RESOURCE"
        );
        assert!(
            parse_exempt(&status("1000", "0000000000200000")),
            "CAP_SYS_ADMIN"
        );
        assert!(!parse_exempt(&status("1000", "0000000000001000")));
        assert_eq!(real_uid(&status("65534", "0")), Some("65534"));
    }

    #[test]
    fn the_tightest_limit_wins_and_shares_are_proportional() {
        let caps = [
            Cap {
                conns: 9_984,
                limit: "files".into(),
                taken: String::new(),
            },
            Cap {
                conns: 12_906,
                limit: "maps".into(),
                taken: String::new(),
            },
        ];
        assert_eq!(tightest(&caps).map(|c| c.limit), Some("files".into()));
        assert_eq!(tightest(&[]), None);
        assert_eq!(share(1024, 500, 2048), 250);
        assert_eq!(share(1, 1, 1_000_000), 1);
    }

    #[test]
    fn a_listener_costs_what_its_accept_path_holds() {
        // An accept thread each: the socket and the descriptor a waiting accept() holds.
        assert_eq!(listener_cost(10), (20, 10));
        // 10,000 rules are polled: one descriptor each, a thread per 1,024, so a 20,000
        // descriptor limit leaves room for 4,984 connections (it once left none).
        #[cfg(unix)]
        assert_eq!(listener_cost(10_000), (10_000, 10));
    }
}

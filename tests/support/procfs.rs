//! What a running tcpfwd holds, read from Linux's `/proc`: threads, descriptors, sockets in
//! CLOSE_WAIT, CPU time and memory (the guest's own under qemu-user).

use super::emulation::under_emulation;

/// Number of threads of a process (Linux).
pub fn threads_of(pid: u32) -> Option<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Threads:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The scheduling policy of each thread of a process (Linux: 0 the default, 3 batch, 5
/// idle), from field 41 of each `/proc/PID/task/TID/stat`.
pub fn policies_of(pid: u32) -> Option<Vec<u32>> {
    let mut policies = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        // A thread that ended since the listing has no stat left to read: not counted.
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // The name (field 2) is in parentheses and may hold spaces: count after it.
        let after_name = &stat[stat.rfind(')')? + 1..];
        policies.push(after_name.split_whitespace().nth(41 - 3)?.parse().ok()?);
    }
    Some(policies)
}

/// Number of open file descriptors of a process (Linux).
pub fn fds_of(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Sockets of a process in CLOSE_WAIT (Linux): any is a leak.
pub fn close_wait_of(pid: u32) -> Option<usize> {
    let mut inodes = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        let target = std::fs::read_link(entry.path()).ok()?;
        let text = target.to_string_lossy().into_owned();
        if let Some(inode) = text
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
        {
            inodes.push(inode.to_string());
        }
    }
    let mut count = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        // The table holds every socket of the machine (tens of thousands in TIME_WAIT when
        // other tests ran): look at each line's state without allocating, which keeps a
        // poll short even in an unoptimised build under qemu.
        for line in text.lines().skip(1) {
            let mut fields = line.split_ascii_whitespace();
            // State 08 is CLOSE_WAIT (field 3); the inode is field 9.
            if fields.nth(3) == Some("08")
                && fields.nth(5).is_some_and(|i| inodes.iter().any(|x| x == i))
            {
                count += 1;
            }
        }
    }
    Some(count)
}

/// User + system CPU time of a process in clock ticks (Linux).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// As [`cpu_ticks`], plus the CPU time of the children it waited for (a server that forks
/// one per connection, as socat does).
pub fn cpu_ticks_with_children(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime, stime, cutime, cstime.
    (11..15).map(|i| fields.get(i)?.parse::<u64>().ok()).sum()
}

/// Virtual size of a process in bytes, as its own kernel would report it (Linux): `VmSize`
/// natively; under qemu-user the sum of the guest's mappings (see [`guest_memory_of`]),
/// because `VmSize` there is the host qemu process's (4 GiB of reserved guest space plus
/// qemu's own per-thread host stacks) and says nothing about the guest.
pub fn address_space_of(pid: u32) -> Option<u64> {
    if under_emulation() {
        return Some(guest_memory_of(pid)?.size);
    }
    status_bytes(pid, "VmSize:")
}

/// Resident user memory of a process in bytes (Linux): `VmRSS` natively; under qemu-user
/// the resident part of the guest's mappings (qemu's own memory left out).
pub fn resident_of(pid: u32) -> Option<u64> {
    if under_emulation() {
        return Some(guest_memory_of(pid)?.resident);
    }
    status_bytes(pid, "VmRSS:")
}

/// A `KEY:  N kB` line of `/proc/PID/status`, in bytes.
fn status_bytes(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix(key))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

/// The memory of a qemu-user guest, in bytes.
pub struct GuestMemory {
    /// Address space the guest has mapped.
    pub size: u64,
    /// The resident part of it.
    pub resident: u64,
}

/// One mapping of `/proc/PID/smaps`.
struct Mapping {
    start: u64,
    end: u64,
    /// A free-space placeholder: `---p` with MAP_NORESERVE.
    placeholder: bool,
    executable_file: bool,
    resident: u64,
}

/// The guest memory of a process run by qemu-user, read from the host's `/proc/PID/smaps`
/// (qemu fakes `/proc/self/maps` only for the guest itself, not for other processes).
///
/// A 32-bit guest lives in one window of host address space that qemu reserves whole: an
/// unbroken run of mappings around the guest's executable. Free guest space in it is a
/// `PROT_NONE` placeholder mapped with MAP_NORESERVE (flag `nr`); everything else in the window
/// is a guest mapping (code, data, heap, stacks, guard pages). The sum misses only guest
/// `PROT_NONE` mappings that also asked for MAP_NORESERVE: the unused tail of glibc's malloc
/// arenas (at most 1 MiB each on 32-bit). `None` for a 64-bit guest.
pub fn guest_memory_of(pid: u32) -> Option<GuestMemory> {
    // A 64-bit guest has no reserved window: its mappings lie among qemu's own.
    if cfg!(target_pointer_width = "64") {
        return None;
    }
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_tcpfwd")).ok()?;
    let exe = exe.to_str()?;
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let mut maps: Vec<Mapping> = Vec::new();
    let mut current: Option<Mapping> = None;
    for line in smaps.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            let mut map = current.take()?;
            map.placeholder &= flags.split_whitespace().any(|f| f == "nr");
            maps.push(map);
            continue;
        }
        if let Some(kib) = line.strip_prefix("Rss:") {
            let kib: u64 = kib.trim().strip_suffix("kB")?.trim().parse().ok()?;
            current.as_mut()?.resident = kib * 1024;
            continue;
        }
        let mut fields = line.split_whitespace();
        let Some((start, end)) = fields.next().and_then(|r| r.split_once('-')) else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        else {
            continue; // another "Key: value" line
        };
        current = Some(Mapping {
            start,
            end,
            placeholder: fields.next() == Some("---p"),
            executable_file: line.ends_with(exe),
            resident: 0,
        });
    }
    let at = maps.iter().position(|m| m.executable_file)?;
    // Widen from the executable's mapping while the mappings touch each other.
    let (mut first, mut last) = (at, at);
    while first > 0 && maps[first - 1].end == maps[first].start {
        first -= 1;
    }
    while last + 1 < maps.len() && maps[last].end == maps[last + 1].start {
        last += 1;
    }
    let guest = maps[first..=last].iter().filter(|m| !m.placeholder);
    Some(GuestMemory {
        size: guest.clone().map(|m| m.end - m.start).sum(),
        resident: guest.map(|m| m.resident).sum(),
    })
}

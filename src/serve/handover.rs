//! SIGUSR2: start the same program again with the same arguments, hand it every listening
//! socket (the same sockets: one accept queue each, so nothing queued is lost), and wait
//! until it says it serves, at most 10 s (see [`inherit`](super::inherit) for the variables).

use std::ffi::OsString;

use crate::serve::live::Live;

/// Starts the new process and waits until it serves; returns its pid. On an error the new
/// process is gone (it exited, or was killed after 10 s) and nothing changed. Linux only.
pub fn hand_over(live: &Live, args: &[OsString]) -> Result<u32, String> {
    #[cfg(target_os = "linux")]
    {
        linux::hand_over(live, args)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (live, args);
        Err("not available on this system (Linux only)".into())
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use super::*;
    use std::io::{self, Read};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::process::{Child, Command};
    use std::time::Duration;

    use crate::serve::inherit::{stats_label, HANDOVER_FDS, READY_FD, SHARED_FDS};
    use crate::sys::{self, reason};

    /// How long the new process has to say it serves.
    const READY_WITHIN: Duration = Duration::from_secs(10);

    pub fn hand_over(live: &Live, args: &[OsString]) -> Result<u32, String> {
        let program = program()?;
        let mut handed = Vec::new();
        let mut shared = Vec::new();
        for entry in live.entries() {
            for listener in &entry.listeners {
                let fd = listener.socket().as_raw_fd();
                handed.push(format!("{fd}={}", entry.label));
                if listener.is_shared() {
                    shared.push(fd.to_string());
                }
            }
        }
        let stats = live.stats();
        if let Some(stats) = &stats {
            let fd = stats.listener.socket().as_raw_fd();
            handed.push(format!("{fd}={}", stats_label(&stats.addr)));
        }
        let fds: Vec<i32> = handed
            .iter()
            .filter_map(|h| h.split('=').next()?.parse().ok())
            .collect();
        let (mut ours, theirs) =
            UnixStream::pair().map_err(|e| format!("no readiness pipe: {}", reason(&e)))?;
        let mut command = Command::new(&program);
        command
            .args(args)
            .env(HANDOVER_FDS, handed.join(";"))
            .env(SHARED_FDS, shared.join(","))
            .env(READY_FD, theirs.as_raw_fd().to_string());
        // Only these descriptors are inherited: close-on-exec is cleared just for the spawn
        // (tcpfwd starts no other program meanwhile).
        let inheritable = |on: bool| {
            for &fd in fds.iter().chain([theirs.as_raw_fd()].iter()) {
                sys::set_inherited(fd, on)?;
            }
            Ok::<(), io::Error>(())
        };
        let spawned = inheritable(true).and_then(|()| command.spawn());
        let _ = inheritable(false);
        let mut child =
            spawned.map_err(|e| format!("cannot start {}: {}", program.display(), reason(&e)))?;
        drop(theirs);
        match wait_ready(&mut ours) {
            Ok(()) => Ok(child.id()),
            Err((why, kill)) => Err(format!("{why}{}", ended(&mut child, kill))),
        }
    }

    /// This program's file. An upgrade replaces it while the process runs: Linux then names
    /// the old, deleted file `PATH (deleted)`, and the new file is at PATH.
    fn program() -> Result<std::path::PathBuf, String> {
        let path = std::env::current_exe()
            .map_err(|e| format!("cannot find this program's file: {}", reason(&e)))?;
        let text = path.to_string_lossy();
        Ok(match text.strip_suffix(" (deleted)") {
            Some(replaced) => replaced.into(),
            None => path,
        })
    }

    /// Reads `ready` from the pipe within [`READY_WITHIN`]. The error says why, and whether
    /// the new process may still run (it must then be killed).
    fn wait_ready(pipe: &mut UnixStream) -> Result<(), (&'static str, bool)> {
        pipe.set_read_timeout(Some(READY_WITHIN))
            .map_err(|_| ("no readiness pipe", true))?;
        let mut said = [0u8; 6];
        match pipe.read_exact(&mut said) {
            Ok(()) if &said == b"ready\n" => Ok(()),
            Ok(()) => Err(("the new process said something else than ready", true)),
            Err(e) if sys::is_timeout(&e) => {
                Err(("the new process was not ready within 10s", true))
            }
            // The pipe closed: the new process exited (or is exiting).
            Err(_) => Err(("the new process exited before it was ready", false)),
        }
    }

    /// Makes sure the new process is gone (killed, if `kill`: it must not share the sockets
    /// with this one); says how it ended.
    fn ended(child: &mut Child, kill: bool) -> String {
        if kill {
            let _ = child.kill();
        }
        match child.wait() {
            Ok(status) => match status.code() {
                Some(code) => format!(" (exit status {code})"),
                None => " (killed)".to_string(),
            },
            Err(_) => String::new(),
        }
    }
}

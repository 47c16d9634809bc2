//! Running under qemu-user (`make cross-test`): telling that it is so, starting the foreign
//! binary through the emulator, and skipping what qemu-user cannot emulate.

/// The words to put before the binary's path to run it: empty natively.
///
/// Under qemu-user the test harness is emulated, but a program it starts is run by the host
/// kernel, which cannot run a foreign binary unless binfmt_misc hands it to qemu (it is not
/// registered in containers and CI). So the runner is, in order: `TCPFWD_TEST_RUNNER`
/// (whitespace-separated words), else, under emulation, the `CARGO_TARGET_<TRIPLE>_RUNNER`
/// that cargo itself used to start this test (cross-test sets exactly one).
pub fn runner() -> Vec<String> {
    let words = |text: String| text.split_whitespace().map(String::from).collect();
    if let Ok(text) = std::env::var("TCPFWD_TEST_RUNNER") {
        return words(text);
    }
    if !under_emulation() {
        return Vec::new();
    }
    std::env::vars()
        .find(|(key, _)| key.starts_with("CARGO_TARGET_") && key.ends_with("_RUNNER"))
        .map(|(_, text)| words(text))
        .unwrap_or_default()
}

/// Whether this test runs under user-mode emulation (qemu-user). `make cross-test` says so
/// with `TCPFWD_UNDER_QEMU=1`; otherwise it is detected: qemu-user fakes `/proc/self/exe`,
/// `maps`, `stat` and `cmdline` for the guest but not `status`, whose `Name:` stays that of
/// the host's qemu process.
pub fn under_emulation() -> bool {
    if let Some(value) = std::env::var_os("TCPFWD_UNDER_QEMU") {
        return value != "0" && !value.is_empty();
    }
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let name = s.lines().find_map(|l| l.strip_prefix("Name:"))?;
            Some(name.trim().starts_with("qemu-"))
        })
        .unwrap_or(false)
}

/// Skips the calling test under emulation, printing why: returns true when the test must
/// return at once. Only for what qemu-user cannot emulate, never for slowness.
pub fn skip_under_emulation(reason: &str) -> bool {
    let skip = under_emulation();
    if skip {
        eprintln!("skipped under emulation (qemu-user): {reason}");
    }
    skip
}

/// Skips the calling test where qemu-user hands socket errors over untranslated, printing
/// why: qemu before 8.0 (Debian 12 has 7.2) returns the host's errno from
/// getsockopt(SO_ERROR), which std's `connect_timeout` reads (QEMU issue #872). On MIPS,
/// whose errno numbers differ from x86's, a refused connect then reads as "unknown error
/// 111" instead of ECONNREFUSED (146). Only for tests that check such a message.
pub fn skip_if_socket_errors_untranslated() -> bool {
    cfg!(any(target_arch = "mips", target_arch = "mips64"))
        && skip_under_emulation(
            "qemu-user < 8.0 does not translate errno values from getsockopt(SO_ERROR) \
             (QEMU issue #872): on MIPS a refused connect reads as errno 111, not 146",
        )
}

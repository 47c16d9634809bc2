//! The OpenWrt package (`make ipk`) and its procd init script, as opkg and procd see them.
//!
//! The package is built by the Makefile's own recipe around the binary under test, then taken
//! apart here: the ar layer by hand, the tarballs with `tar`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{run, temp_file};

const DIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/dist/openwrt");
const ARCH: &str = "mipsel_24kc";

/// Whether every program exists (each answers `--version`); otherwise says which is missing.
fn have_tools(tools: &[&str]) -> bool {
    for tool in tools {
        let found = Command::new(tool).arg("--version").output().is_ok();
        if !found {
            eprintln!("skipped: `{tool}` is not installed (the package is made and read with it)");
            return false;
        }
    }
    true
}

/// A fresh, empty directory under Cargo's temporary directory for tests.
fn temp_dir(name: &str) -> PathBuf {
    let marker = temp_file(name, "");
    let dir = marker.with_extension("d");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs a command that must succeed; returns its stdout.
fn output(command: &mut Command) -> String {
    let out = command.output().expect("start command");
    assert!(
        out.status.success(),
        "{command:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The members of an ar archive, in order: name (without GNU ar's trailing `/`) and data.
fn ar_members(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut rest = archive
        .strip_prefix(b"!<arch>\n".as_slice())
        .expect("ar magic");
    let mut members = Vec::new();
    while !rest.is_empty() {
        let (header, body) = rest.split_at(60);
        assert_eq!(&header[58..], b"`\n", "ar member header");
        let text = |range: std::ops::Range<usize>| {
            String::from_utf8(header[range].to_vec())
                .unwrap()
                .trim_end()
                .to_string()
        };
        let name = text(0..16).trim_end_matches('/').to_string();
        let size: usize = text(48..58).parse().expect("ar member size");
        members.push((name, body[..size].to_vec()));
        // Members start at even offsets.
        rest = &body[(size + size % 2).min(body.len())..];
    }
    members
}

/// `tar -tvzf`: (mode string, owner/group, path) of each entry.
fn tar_listing(tarball: &Path) -> Vec<(String, String, String)> {
    output(Command::new("tar").arg("-tvzf").arg(tarball))
        .lines()
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let path = words.last().unwrap().to_string();
            (words[0].to_string(), words[1].to_string(), path)
        })
        .collect()
}

#[test]
fn the_ipk_is_what_opkg_installs() {
    if !have_tools(&["make", "ar", "tar", "gzip"]) {
        return;
    }
    let dir = temp_dir("ipk");
    let binary = env!("CARGO_BIN_EXE_tcpfwd");
    output(
        Command::new("make")
            .args([
                "--no-print-directory",
                "-C",
                env!("CARGO_MANIFEST_DIR"),
                "ipk",
            ])
            .arg(format!("IPK_BIN={binary}"))
            .arg(format!("IPK_ARCH={ARCH}"))
            .arg(format!("IPK_DIR={}", dir.display())),
    );
    let version = env!("CARGO_PKG_VERSION");
    let ipk = dir.join(format!("tcpfwd_{version}_{ARCH}.ipk"));
    let members = ar_members(&std::fs::read(&ipk).expect("the .ipk"));
    let names: Vec<&str> = members.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["debian-binary", "control.tar.gz", "data.tar.gz"]);
    assert_eq!(members[0].1, b"2.0\n");
    for (name, data) in &members[1..] {
        assert_eq!(&data[..2], [0x1f, 0x8b], "{name} is gzip");
        std::fs::write(dir.join(name), data).unwrap();
    }

    // control.tar.gz: the fields opkg reads, the conffile, OpenWrt's usual scripts.
    let control = tar_listing(&dir.join("control.tar.gz"));
    let paths: Vec<&str> = control.iter().map(|(_, _, p)| p.as_str()).collect();
    assert_eq!(
        paths,
        ["./", "./conffiles", "./control", "./postinst", "./prerm"]
    );
    let unpacked = dir.join("control");
    std::fs::create_dir_all(&unpacked).unwrap();
    output(
        Command::new("tar")
            .arg("-xzf")
            .arg(dir.join("control.tar.gz"))
            .arg("-C")
            .arg(&unpacked),
    );
    let fields = std::fs::read_to_string(unpacked.join("control")).unwrap();
    let field = |name: &str| {
        let prefix = format!("{name}:");
        let values: Vec<&str> = fields
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .collect();
        assert!(values.len() <= 1, "{name} given twice:\n{fields}");
        values.first().map(|v| v.trim().to_string())
    };
    assert_eq!(field("Package").as_deref(), Some("tcpfwd"));
    assert_eq!(field("Version").as_deref(), Some(version));
    assert_eq!(field("Architecture").as_deref(), Some(ARCH));
    assert!(
        !field("Maintainer").unwrap_or_default().is_empty(),
        "{fields}"
    );
    assert!(
        !field("Description").unwrap_or_default().is_empty(),
        "{fields}"
    );
    // A static binary needs nothing, not even OpenWrt's libc package.
    assert_eq!(field("Depends").unwrap_or_default(), "", "{fields}");
    assert!(
        fields.ends_with('\n') && !fields.contains("\n\n"),
        "{fields:?}"
    );
    assert_eq!(
        std::fs::read_to_string(unpacked.join("conffiles")).unwrap(),
        "/etc/tcpfwd.conf\n"
    );
    for script in ["postinst", "prerm"] {
        output(Command::new("sh").arg("-n").arg(unpacked.join(script)));
    }

    // data.tar.gz: root's files, executables executable, the binary unchanged.
    let data = tar_listing(&dir.join("data.tar.gz"));
    let entry = |path: &str| {
        let found = data.iter().find(|(_, _, p)| p == path);
        let (mode, owner, _) = found.unwrap_or_else(|| panic!("{path} missing: {data:?}"));
        assert_eq!(owner, "0/0", "{path}");
        mode.clone()
    };
    assert_eq!(entry("./usr/bin/tcpfwd"), "-rwxr-xr-x");
    assert_eq!(entry("./etc/init.d/tcpfwd"), "-rwxr-xr-x");
    assert_eq!(entry("./etc/tcpfwd.conf"), "-rw-r--r--");
    let files = data.iter().filter(|(mode, _, _)| !mode.starts_with('d'));
    assert_eq!(files.count(), 3, "{data:?}");
    let root = dir.join("data");
    std::fs::create_dir_all(&root).unwrap();
    output(
        Command::new("tar")
            .arg("-xzf")
            .arg(dir.join("data.tar.gz"))
            .arg("-C")
            .arg(&root),
    );
    assert!(std::fs::read(root.join("usr/bin/tcpfwd")).unwrap() == std::fs::read(binary).unwrap());
    assert_eq!(
        std::fs::read(root.join("etc/init.d/tcpfwd")).unwrap(),
        std::fs::read(Path::new(DIST).join("tcpfwd.init")).unwrap()
    );
}

#[test]
fn the_init_script_reloads_with_sighup_only_after_a_good_check() {
    let path = Path::new(DIST).join("tcpfwd.init");
    output(Command::new("sh").arg("-n").arg(&path));
    let script = std::fs::read_to_string(&path).unwrap();
    assert!(script.starts_with("#!/bin/sh /etc/rc.common\n"));
    for needed in [
        "USE_PROCD=1",
        "procd_set_param command \"$PROG\" --config \"$CONF\"",
        "procd_set_param file \"$CONF\"",
        "procd_set_param reload_signal HUP",
        "procd_set_param respawn",
        "procd_set_param stderr 1",
        "\"$PROG\" --check --config \"$CONF\"",
    ] {
        assert!(script.contains(needed), "no `{needed}` in {path:?}");
    }
    // reload_service checks before it hands procd the new definition.
    let reload = &script[script.find("reload_service() {").expect("reload_service")..];
    let check = reload
        .find("config_ok || return 1")
        .expect("check in reload_service");
    assert!(check < reload.find("start").unwrap());
    // The README shows this same script, once.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert_eq!(readme.matches("#!/bin/sh /etc/rc.common").count(), 1);
    assert!(
        readme.contains(&script),
        "README's init script differs from {path:?}"
    );
}

#[test]
fn the_default_config_runs_nothing_and_its_examples_pass_the_check() {
    let path = Path::new(DIST).join("tcpfwd.conf");
    let text = std::fs::read_to_string(&path).unwrap();
    // As shipped, every line is a comment: a new install opens no port until edited.
    let (code, _, err) = run(&["--check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no rule"), "{err}");
    // The examples, once uncommented, are valid.
    let examples: String = text
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter(|l| l.starts_with(':') || l.starts_with("--"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(examples.lines().count() >= 2, "{text}");
    let uncommented = temp_file("tcpfwd.conf", &examples);
    let (code, out, err) = run(&["--check", "--config", uncommented.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(":2222"), "{out}");
}

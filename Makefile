# tcpfwd — `make test` runs every test; `make check` is what CI runs.
CARGO   ?= cargo
PREFIX  ?= /usr/local
DESTDIR ?=

# Cross builds (Debian 12 with the shared tools; a rustup machine: see README "On routers").
SHARED  ?= ../shared
TARGET  ?= armv7-unknown-linux-gnueabihf
CROSS_TARGETS    ?= armv7-unknown-linux-gnueabihf mipsel-unknown-linux-gnu \
	armv7-unknown-linux-musleabihf mipsel-unknown-linux-musl
PORTABLE_TARGETS ?= x86_64-pc-windows-msvc x86_64-apple-darwin
STD_SOURCE = /usr/lib/rustlib/src/rust/library/Cargo.lock

.PHONY: build release small test check bench netlab install clean
.PHONY: cross cross-test cross-setup cross-ci portable-check ipk

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# Size-optimised build for routers (stripped, opt-level z).
small:
	$(CARGO) build --profile small

test:
	$(CARGO) test

# Also the Windows and macOS check builds, where Debian's std source is installed
# (make cross-setup); skipped with a note elsewhere.
check:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test
	@if [ -x /usr/bin/rustc ] && [ -f $(STD_SOURCE) ]; then $(MAKE) --no-print-directory portable-check; \
	else echo "portable-check: skipped (needs Debian's rustc-web and rust-web-src: make cross-setup)"; fi

# cross-test builds a release of TARGET with -Zbuild-std (std optimised for size) and runs
# `cargo test` under qemu-user. CROSS_ENV makes that release the `small` profile of
# Cargo.toml (opt-level z, stripped; lto, codegen-units 1, unwind come from release) and
# builds the tests (and their std) at opt-level 1: unoptimised code under qemu is ~10x
# slower; debug assertions and overflow checks stay on. TCPFWD_UNDER_QEMU=1 tells the
# tests (tests/support: under_emulation, runner).
# 32-bit MIPS: binutils lays MIPS binaries out for 64 KiB pages, which with RELRO adds up to
# 60 KiB of zero padding; every 32-bit MIPS router kernel uses 4 KiB pages. And the code is
# position-dependent (not PIE): MIPS position-independent code calls every function through
# the GOT and sets up $gp in each one, 15 % of the binary (53 KB). The price: tcpfwd's own
# code is not at a random address (libraries, stack and heap still are). MIPS_PIE=1 keeps PIE.
MIPS_FLAGS = -C link-arg=-Wl,-z,max-page-size=4096 \
	$(if $(MIPS_PIE),,-C relocation-model=static -C link-arg=-no-pie)
# std's own build gives compiler_builtins one codegen unit per intrinsic, so the linker takes
# only those called; -Zbuild-std builds it with our profile's single unit instead, and GNU ld
# then keeps every libm/soft-float routine in it (37 KB on mipsel). This rustc wrapper,
# written by the Makefile, gives that one crate its many units back.
RUSTC_WRAPPER_FILE = target/cross-rustc-wrapper
CROSS_ENV = CARGO_PROFILE_RELEASE_OPT_LEVEL=z CARGO_PROFILE_RELEASE_STRIP=true \
	CARGO_PROFILE_DEV_OPT_LEVEL=1 TCPFWD_UNDER_QEMU=1 \
	RUSTC_WRAPPER=$(CURDIR)/$(RUSTC_WRAPPER_FILE) \
	CARGO_TARGET_MIPSEL_UNKNOWN_LINUX_GNU_RUSTFLAGS="$(MIPS_FLAGS)" \
	CARGO_TARGET_MIPS_UNKNOWN_LINUX_GNU_RUSTFLAGS="$(MIPS_FLAGS)"

# Static 32-bit MIPS musl (OpenWrt's mipsel_24kc, mips_24kc). Debian has no soft-float MIPS
# musl nor a linker driver for one: its mipsel/mips gcc and musl are hard-float, and
# OpenWrt's MIPS ABI (and Rust's mips*-musl targets) is soft-float. zig (PyPI package
# ziglang) ships musl, libunwind and lld for every target: it is the C library and linker
# here, through target/zig-cc-ARCH (written below). Its first link builds musl (~2 min,
# cached in ~/.cache/zig). lld keeps the MIPS .pdr sections (procedure descriptors, read by
# no one, 16 % of the file); binutils' objcopy takes them out.
# zig 0.15.2, not newer: from 0.16 zig's libc replaces musl's malloc with Zig's SmpAllocator,
# whose locks spin without ever sleeping. With more threads than CPUs (tcpfwd runs two per
# connection) a thread preempted while holding one leaves every other allocating thread
# spinning through its time slice: the 1,000-connection test under qemu (tests/routers.rs)
# took 4-6 s with musl's malloc, and 15-90+ s in 1 run of 5 with zig 0.17.1's (README, zig).
ZIG_TARGETS = mipsel-unknown-linux-musl mips-unknown-linux-musl
ZIG_VERSION = 0.15.2
ZIGLANG    ?= ziglang==$(ZIG_VERSION)
ZIG_ARCH    = $(firstword $(subst -, ,$(TARGET)))
ZIG_CC      = target/zig-cc-$(ZIG_ARCH)
ZIG_TV      = $(shell echo $(TARGET) | tr a-z- A-Z_)
ZIG_FLAGS   = $(MIPS_FLAGS) -C target-feature=+crt-static -C link-self-contained=no
ZIG_ENV = RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 \
	CARGO_TARGET_$(ZIG_TV)_LINKER=$(CURDIR)/$(ZIG_CC) \
	CARGO_TARGET_$(ZIG_TV)_RUNNER=qemu-$(ZIG_ARCH)-static \
	CARGO_TARGET_$(ZIG_TV)_RUSTFLAGS="$(ZIG_FLAGS)" RUSTDOCFLAGS="$(ZIG_FLAGS)"
ZIG_BUILD = -Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size
# The tests unwind (the harness needs it), as cross-test does.
ZIG_TEST_ENV = CARGO_PROFILE_DEV_PANIC=unwind CARGO_PROFILE_RELEASE_PANIC=unwind

target/zig-cc-%: Makefile
	@mkdir -p $(@D)
	@printf '%s\n' '#!/bin/sh' \
		'# -Os: zig builds its musl, libunwind and compiler-rt for size (and strips).' \
		'exec python3 -m ziglang cc -target $*-linux-musleabi -mcpu=mips32r2 -Os "$$@"' >$@
	@chmod +x $@

$(RUSTC_WRAPPER_FILE): Makefile
	@mkdir -p $(@D)
	@printf '%s\n' '#!/bin/sh' \
		'case " $$* " in *" --crate-name compiler_builtins "*) exec "$$@" -C codegen-units=10000 ;; esac' \
		'exec "$$@"' >$@
	@chmod +x $@

ifneq ($(filter $(TARGET),$(ZIG_TARGETS)),)
# Size-optimised release for TARGET: target/$(TARGET)/release/tcpfwd.
cross: $(RUSTC_WRAPPER_FILE) $(ZIG_CC)
	@v=$$(python3 -m ziglang version 2>/dev/null); [ "$$v" = "$(ZIG_VERSION)" ] || { \
		echo "cross: zig $${v:-missing}, not $(ZIG_VERSION) (see ZIG_VERSION in the Makefile);" \
			"make cross-setup installs it"; exit 1; }
	$(CROSS_ENV) $(ZIG_ENV) timeout 1800 $(CARGO) build --release --target $(TARGET) $(ZIG_BUILD)
	$(ZIG_ARCH)-linux-gnu-objcopy -R .pdr target/$(TARGET)/release/tcpfwd
	@ls -l target/$(TARGET)/release/tcpfwd

# Every test under qemu-user, then the 1,000-connection address-space test. TEST_ARGS: more
# arguments for the first cargo test (e.g. --no-fail-fast).
cross-test: cross
	$(CROSS_ENV) $(ZIG_ENV) $(ZIG_TEST_ENV) timeout 1800 $(CARGO) test --target $(TARGET) -Zbuild-std $(TEST_ARGS)
	$(CROSS_ENV) $(ZIG_ENV) $(ZIG_TEST_ENV) timeout 1800 $(CARGO) test --target $(TARGET) -Zbuild-std \
		--test routers -- --ignored --nocapture
else
# Size-optimised release for TARGET: target/$(TARGET)/release/tcpfwd.
cross: $(RUSTC_WRAPPER_FILE)
	$(CROSS_ENV) CROSS_SKIP_TEST=1 $(SHARED)/tools/cross-test $(TARGET)

# Every test under qemu-user, then the 1,000-connection address-space test.
cross-test: $(RUSTC_WRAPPER_FILE)
	$(CROSS_ENV) $(SHARED)/tools/cross-test $(TARGET) $(if $(TEST_ARGS),-- $(TEST_ARGS))
	$(CROSS_ENV) CROSS_SKIP_BUILD=1 $(SHARED)/tools/cross-test $(TARGET) \
		-- --test routers -- --ignored --nocapture
endif

# Installs the compilers, std source, cross linkers and qemu for CROSS_TARGETS (root).
# A zig target asks the shared tool for its -gnu twin (Debian's rustc and std source,
# qemu, and binutils for objcopy; its gcc goes unused), and pip for zig.
cross-setup:
	$(SHARED)/tools/cross-setup $(filter-out $(ZIG_TARGETS),$(CROSS_TARGETS)) \
		$(patsubst %-musl,%-gnu,$(filter $(ZIG_TARGETS),$(CROSS_TARGETS)))
	@if [ -n "$(filter $(ZIG_TARGETS),$(CROSS_TARGETS))" ]; then \
		[ "$$(python3 -m ziglang version 2>/dev/null)" = "$(ZIG_VERSION)" ] || \
			python3 -m pip install -q "$(ZIGLANG)"; \
		echo "cross-setup: zig $$(python3 -m ziglang version)"; fi

# What CI runs after `make check`.
cross-ci: cross-setup
	for t in $(CROSS_TARGETS); do $(MAKE) cross-test TARGET=$$t || exit 1; done

# The non-Linux cfg branches compile: `cargo check` (no linking, so no SDK or linker needed)
# with std rebuilt from Debian's rust-web-src (installed by cross-setup). Warnings fail it.
portable-check:
	@mkdir -p target
	@for t in $(PORTABLE_TARGETS); do \
		echo "portable-check: $$t"; \
		RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 $(CARGO) check -Zbuild-std=std,panic_unwind \
			--target $$t --all-targets >target/portable-check.log 2>&1; rc=$$?; \
		grep -v '^ *\(Compiling\|Checking\)' target/portable-check.log; \
		[ $$rc = 0 ] || exit 1; \
		if grep -q '^warning' target/portable-check.log; then echo "portable-check: warnings on $$t"; exit 1; fi; \
	done

# OpenWrt package: $(IPK_DIR)/tcpfwd_VERSION_ARCH.ipk, for opkg (OpenWrt up to 24.10). An ar
# archive of debian-binary, control.tar.gz and data.tar.gz, made with ar, tar and gzip.
# IPK_ARCH is OpenWrt's package architecture (opkg print-architecture on the router): these
# are the usual ones for each target; give another with IPK_ARCH= (e.g. the armv7 build
# runs on any ARMv7 with VFPv3-D16: arm_cortex-a9_vfpv3-d16, arm_cortex-a15_neon-vfpv4).
# IPK_BIN= packages that binary instead of building TARGET (tests/package.rs does).
IPK_ARCH_armv7-unknown-linux-musleabihf = arm_cortex-a7_neon-vfpv4
IPK_ARCH_mipsel-unknown-linux-musl      = mipsel_24kc
IPK_ARCH_mips-unknown-linux-musl        = mips_24kc
IPK_ARCH_aarch64-unknown-linux-musl     = aarch64_cortex-a53
IPK_ARCH_x86_64-unknown-linux-musl      = x86_64
IPK_ARCH ?= $(IPK_ARCH_$(TARGET))
IPK_BIN  ?= target/$(TARGET)/release/tcpfwd
IPK_DIR  ?= target/ipk
IPK_MAINTAINER ?= tcpfwd maintainers
VERSION  := $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
DESCRIPTION := $(shell sed -n 's/^description *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
DIST = src/dist/openwrt
IPK  = $(IPK_DIR)/tcpfwd_$(VERSION)_$(IPK_ARCH).ipk
IPK_WORK = $(IPK_DIR)/work-$(IPK_ARCH)
# Owner root, fixed order and times: the same input gives the same package.
IPK_TAR = tar --format=gnu --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0

ipk: $(if $(filter file,$(origin IPK_BIN)),cross)
	@[ -n "$(IPK_ARCH)" ] || { echo "ipk: no OpenWrt architecture known for $(TARGET): give IPK_ARCH=..." >&2; exit 2; }
	rm -rf $(IPK_WORK) $(IPK)
	install -d $(IPK_WORK)/control $(IPK_WORK)/data/usr/bin $(IPK_WORK)/data/etc/init.d
	install -m 755 $(IPK_BIN) $(IPK_WORK)/data/usr/bin/tcpfwd
	install -m 755 $(DIST)/tcpfwd.init $(IPK_WORK)/data/etc/init.d/tcpfwd
	install -m 644 $(DIST)/tcpfwd.conf $(IPK_WORK)/data/etc/tcpfwd.conf
	install -m 755 $(DIST)/postinst $(DIST)/prerm $(IPK_WORK)/control/
	echo /etc/tcpfwd.conf >$(IPK_WORK)/control/conffiles
	printf '%s\n' 'Package: tcpfwd' 'Version: $(VERSION)' 'Depends:' 'Source: tcpfwd' \
		'License: MIT' 'Section: net' 'Architecture: $(IPK_ARCH)' \
		"Installed-Size: $$(find $(IPK_WORK)/data -type f -exec cat {} + | wc -c)" \
		'Maintainer: $(IPK_MAINTAINER)' 'Description: $(DESCRIPTION)' >$(IPK_WORK)/control/control
	echo 2.0 >$(IPK_WORK)/debian-binary
	cd $(IPK_WORK)/control && $(IPK_TAR) -cf - . | gzip -9n >../control.tar.gz
	cd $(IPK_WORK)/data && $(IPK_TAR) -cf - . | gzip -9n >../data.tar.gz
	cd $(IPK_WORK) && ar rcD ../$(notdir $(IPK)) debian-binary control.tar.gz data.tar.gz
	rm -rf $(IPK_WORK)
	@ls -l $(IPK)

bench: release
	$(CARGO) test --release --test bench -- --ignored --nocapture --test-threads=1

# Data acceleration measured in network namespaces with ../shared/netlab (root; about 11
# minutes; not part of `make test`): tests/netlab/accel.py. NETLAB_PARTS picks parts
# (accel window blackhole dead relays buffers, or all). Skipped with the reason elsewhere.
NETLAB_PARTS ?=
netlab:
	@if [ "$$(id -u)" != 0 ]; then echo "netlab: skipped (needs root: network namespaces)"; \
	elif [ ! -f $(SHARED)/netlab/netlab ]; then echo "netlab: skipped (no $(SHARED)/netlab)"; \
	else $(CARGO) build --release && SHARED=$(SHARED) python3 tests/netlab/accel.py $(NETLAB_PARTS); fi

install: release
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 target/release/tcpfwd $(DESTDIR)$(PREFIX)/bin/tcpfwd

clean:
	$(CARGO) clean

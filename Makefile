# tcpfwd — `make test` runs every test; `make check` is what CI runs.
CARGO   ?= cargo
PREFIX  ?= /usr/local
DESTDIR ?=

# Cross builds (Debian 12 with the shared tools; a rustup machine: see README "On routers").
SHARED  ?= ../shared
TARGET  ?= armv7-unknown-linux-gnueabihf
CROSS_TARGETS    ?= armv7-unknown-linux-gnueabihf mipsel-unknown-linux-gnu
PORTABLE_TARGETS ?= x86_64-pc-windows-msvc x86_64-apple-darwin
STD_SOURCE = /usr/lib/rustlib/src/rust/library/Cargo.lock

.PHONY: build release small test check bench netlab install clean
.PHONY: cross cross-test cross-setup cross-ci portable-check

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

$(RUSTC_WRAPPER_FILE): Makefile
	@mkdir -p $(@D)
	@printf '%s\n' '#!/bin/sh' \
		'case " $$* " in *" --crate-name compiler_builtins "*) exec "$$@" -C codegen-units=10000 ;; esac' \
		'exec "$$@"' >$@
	@chmod +x $@

# Size-optimised release for TARGET: target/$(TARGET)/release/tcpfwd.
cross: $(RUSTC_WRAPPER_FILE)
	$(CROSS_ENV) CROSS_SKIP_TEST=1 $(SHARED)/tools/cross-test $(TARGET)

# Every test under qemu-user, then the 1,000-connection address-space test.
cross-test: $(RUSTC_WRAPPER_FILE)
	$(CROSS_ENV) $(SHARED)/tools/cross-test $(TARGET)
	$(CROSS_ENV) CROSS_SKIP_BUILD=1 $(SHARED)/tools/cross-test $(TARGET) \
		-- --test routers -- --ignored --nocapture

# Installs the compilers, std source, cross linkers and qemu for CROSS_TARGETS (root).
cross-setup:
	$(SHARED)/tools/cross-setup $(CROSS_TARGETS)

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

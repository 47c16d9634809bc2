# tcpfwd — `make test` runs every test; `make check` is what CI runs.
CARGO   ?= cargo
PREFIX  ?= /usr/local
DESTDIR ?=

.PHONY: build release small test check bench install clean

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# Size-optimised build for routers (stripped, opt-level z).
small:
	$(CARGO) build --profile small

test:
	$(CARGO) test

check:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test

bench: release
	$(CARGO) test --release --test bench -- --ignored --nocapture --test-threads=1

install: release
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 target/release/tcpfwd $(DESTDIR)$(PREFIX)/bin/tcpfwd

clean:
	$(CARGO) clean

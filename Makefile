# SPDX-License-Identifier: GPL-2.0-or-later
# Tesseract for QEMU: top-level build.  QEMU's own build lives in build/.

BUILD      := build
NINJA      ?= ninja
QEMU_BINS  := qemu-system-x86_64 qemu-img qemu-io qemu-nbd \
              storage-daemon/qemu-storage-daemon
UNIT_TESTS := $(patsubst tests/unit/%.c,tests/unit/tesseract/%,\
                $(wildcard tests/unit/test-*.c))
# make install PREFIX=... [DESTDIR=...]: the binaries and the docs
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
DOCDIR     ?= $(PREFIX)/share/doc/tesseract-qemu
DOC_FILES  := README.md $(wildcard docs/*.md docs/*/*.rst) bench/README.md
# the unit tests again, under ASan and UBSan
UNIT_TESTS_SAN := $(UNIT_TESTS:%=%-san)
TEST_BINS  := $(UNIT_TESTS) $(UNIT_TESTS_SAN) tests/qtest/tesseract-test \
              tests/qtest/tesseract-swapper-test \
              tests/qtest/tesseract-migrate-test tests/qtest/tesseract-crash

.PHONY: configure-now all check check-unit check-qtest check-iotests check-guest \
        check-crash check-fuzz check-long demo install \
        bench bench-io bench-open bench-migrate bench-access check-sanitizers \
        clean distclean help

all: $(BUILD)/.tesseract-configured
	$(NINJA) -C $(BUILD) $(QEMU_BINS)

# Re-run configure when it or the patch series changes.  It is
# idempotent: fetched source is cached, the overlay only adds symlinks.
$(BUILD)/.tesseract-configured: configure $(wildcard patches/*.patch)
	./configure

configure-now:
	./configure

check: all
	$(NINJA) -C $(BUILD) $(TEST_BINS)
	tests/run-tests.sh

check-unit check-qtest check-iotests check-guest check-crash check-fuzz: all
	$(NINJA) -C $(BUILD) $(TEST_BINS)
	tests/run-tests.sh $(patsubst check-%,%,$@)

# Long campaigns (power-loss states, kill torture, fuzzing, soaks): tens
# of minutes each; run by developers, not by CI.
check-long: all
	$(NINJA) -C $(BUILD) $(TEST_BINS)
	TESSERACT_LONG=1 tests/run-tests.sh long

# A full sanitizer build of QEMU (ASan + UBSan, build-san/, configured
# like build/) and the project's qtest and iotest against it.  An hour or
# more of build on 2 cores; not run by CI.  The sanitizers write to
# build-san/sanitizer-logs/ (on stderr, ASan's warnings about QEMU's
# coroutines would change the outputs the tests compare; world-writable:
# a qtest runs QEMU as nobody); any report there fails the target.
SAN_BUILD := build-san
SAN_LOGS   = $(CURDIR)/$(SAN_BUILD)/sanitizer-logs
SAN_ENV    = TESSERACT_BUILD=$(CURDIR)/$(SAN_BUILD) \
             ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0:log_path=$(SAN_LOGS)/asan \
             LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
             UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:log_path=$(SAN_LOGS)/ubsan
check-sanitizers:
	./configure --sanitizers
	$(NINJA) -C $(SAN_BUILD) $(QEMU_BINS) tests/qtest/tesseract-test \
	    tests/qtest/tesseract-swapper-test tests/qtest/tesseract-migrate-test
	rm -rf $(SAN_LOGS) && mkdir -p -m 1777 $(SAN_LOGS)
	$(SAN_ENV) tests/run-tests.sh qtest iotests; st=$$?; \
	reports=$$(grep -lE 'ERROR: (Address|Leak)Sanitizer|runtime error' \
	           $(SAN_LOGS)/* 2>/dev/null); \
	for f in $$reports; do echo "== $$f"; head -60 "$$f"; done; \
	echo "sanitizer reports: $$(echo $$reports | wc -w) (logs in $(SAN_LOGS))"; \
	[ $$st -eq 0 ] && [ -z "$$reports" ]

demo: all
	tests/guest/demo.sh

bench-io: all
	$(NINJA) -C $(BUILD) tests/unit/tesseract/bench-bsst-map
	bench/bench-io.sh

# Open a BSST of 1M indirections (checkpoint + log replay) 5 times
bench-open: all
	$(NINJA) -C $(BUILD) tests/unit/tesseract/bench-bsst-open
	$(BUILD)/tests/unit/tesseract/bench-bsst-open $(BUILD)/bench-open.img

bench: all
	bench/run.sh

# Live migration with half of guest RAM swapped out: stock QEMU over host
# swap against the tesseract-swapper (needs root, cgroup v1 memory, swapon)
bench-migrate: all
	bench/migrate.sh

# policy=access on a 4 GiB guest: its CPU per GiB against random, then
# the faults its hot set takes at a 3 GiB limit against random's
bench-access: all
	bench/access-scan.py
	bench/access-scan.py --limit 3072

# Installs what 'make' built (it does not build: run 'make' first), the
# binaries under their own names (qemu-storage-daemon without its
# directory) and the docs with their tree, so that their links still work.
install:
	@for b in $(QEMU_BINS); do \
	    [ -x "$(BUILD)/$$b" ] || { echo "make install: $(BUILD)/$$b is missing: run 'make' first" >&2; exit 1; }; \
	done
	install -d "$(DESTDIR)$(BINDIR)"
	for b in $(QEMU_BINS); do \
	    install -m 0755 "$(BUILD)/$$b" "$(DESTDIR)$(BINDIR)/$$(basename $$b)" || exit 1; \
	done
	for f in $(DOC_FILES); do \
	    install -D -m 0644 "$$f" "$(DESTDIR)$(DOCDIR)/$$f" || exit 1; \
	done

clean:
	$(NINJA) -C $(BUILD) clean

distclean:
	rm -rf $(BUILD) $(SAN_BUILD) qemu

help:
	@echo "make            configure if needed, then build QEMU with tesseract"
	@echo "make check      build and run the project's tests"
	@echo "make check-long the long campaigns (fuzzing, crash states, soaks)"
	@echo "make check-sanitizers  qtest and iotest on an ASan+UBSan QEMU (build-san/)"
	@echo "make demo       a disk check, then double paging: baseline beside Tesseract"
	@echo "make install    install the binaries and docs (PREFIX=/usr/local, DESTDIR)"
	@echo "make bench-io   qemu-img bench: tesseract node vs plain qcow2"
	@echo "make bench-open time opening a BSST of 1M indirections"
	@echo "make bench-migrate  live migration: stock over host swap vs the swapper"
	@echo "make bench-access   policy=access's CPU per GiB of guest RAM (4 GiB)"
	@echo "make distclean  remove build/ and qemu/ (the download cache stays)"

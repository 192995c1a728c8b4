# SPDX-License-Identifier: GPL-2.0-or-later
# Tesseract for QEMU: top-level build.  QEMU's own build lives in build/.

BUILD      := build
NINJA      ?= ninja
QEMU_BINS  := qemu-system-x86_64 qemu-img qemu-io qemu-nbd \
              storage-daemon/qemu-storage-daemon
UNIT_TESTS := $(patsubst tests/unit/%.c,tests/unit/tesseract/%,\
                $(wildcard tests/unit/test-*.c))
TEST_BINS  := $(UNIT_TESTS) tests/qtest/tesseract-test tests/qtest/tesseract-crash

.PHONY: configure-now all check check-unit check-qtest check-iotests check-guest \
        check-crash check-fuzz check-long demo \
        bench bench-io clean distclean help

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

demo: all
	tests/guest/demo.sh

bench-io: all
	$(NINJA) -C $(BUILD) tests/unit/tesseract/bench-bsst-map
	bench/bench-io.sh

bench: all
	bench/run.sh

clean:
	$(NINJA) -C $(BUILD) clean

distclean:
	rm -rf $(BUILD) qemu

help:
	@echo "make            configure if needed, then build QEMU with tesseract"
	@echo "make check      build and run the project's tests"
	@echo "make check-long the long campaigns (fuzzing, crash states, soaks)"
	@echo "make demo       boot a small guest through a tesseract node"
	@echo "make bench-io   qemu-img bench: tesseract node vs plain qcow2"
	@echo "make distclean  remove build/ and qemu/ (the download cache stays)"

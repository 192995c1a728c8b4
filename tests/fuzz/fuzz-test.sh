#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Fuzzing in 'make check' (TAP): build the libFuzzer targets of the BSST
# decoders (tests/fuzz/Makefile), replay their seeds and the committed
# regression corpus (tests/fuzz/corpus/TARGET/), then fuzz each target
# for TESSERACT_FUZZ_SECONDS (default 12) from those, in a scratch corpus.
# 'make check-long' runs tests/long/fuzz-long-test.sh instead.
set -uo pipefail

. "$(dirname "$0")/fuzz-lib.sh"
SECS=${TESSERACT_FUZZ_SECONDS:-12}

echo "1..9"
if ! fz_build; then
    for i in 2 3 4 5 6 7 8 9; do
        echo "not ok $i - not built"
    done
    exit 1
fi
for t in $FZ_TARGETS; do
    fz_replay "$t"
done
work=$(mktemp -d "$FZ_OUT/check-corpus.XXXXXX")
for t in $FZ_TARGETS; do
    fz_run "$t" "$SECS" "$work/$t"
done
rm -rf "$work"

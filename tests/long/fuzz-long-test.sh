#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Long fuzzing campaign ('make check-long', TAP): every libFuzzer target of
# the BSST decoders for TESSERACT_FUZZ_LONG_SECONDS (default 1800) each,
# TESSERACT_FUZZ_JOBS (default 2) targets at a time.  The corpus grows in
# build/tests/fuzz/corpus-long/TARGET/ from one campaign to the next; an
# input that finds something is left in build/tests/fuzz/artifacts/ (fix
# the bug, then commit the input to tests/fuzz/corpus/TARGET/).
set -uo pipefail

. "$(dirname "$0")/../fuzz/fuzz-lib.sh"
SECS=${TESSERACT_FUZZ_LONG_SECONDS:-1800}
JOBS=${TESSERACT_FUZZ_JOBS:-2}

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

# Each target's TAP line goes to a file; printed in order at the end
tmp=$(mktemp -d)
i=0
for t in $FZ_TARGETS; do
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do
        wait -n
    done
    i=$((i + 1))
    ( FZ_N=$((5 + i - 1)); fz_run "$t" "$SECS" "$FZ_OUT/corpus-long/$t" ) \
        > "$tmp/$i" &
done
wait
cat "$tmp"/*
rm -rf "$tmp"

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Run the project's own tests (not QEMU's whole suite) and end with one
# line "N passed, N failed[, N skipped]".  Exit status is non-zero when
# anything failed.
#
#   tests/run-tests.sh [SUITE ...]
#
# Suites: foundation unit qtest iotests guest (the default set, with the
# script suites below), and script suites: every executable
# tests/SUITE/*-test.sh prints TAP.  'docs', 'crash' and 'fuzz' run in
# 'make check'; 'long' holds the campaigns of 'make check-long' (tens of
# minutes each), which CI does not run.
set -uo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
# TESSERACT_BUILD: another build directory (make check-sanitizers)
BUILD="${TESSERACT_BUILD:-$TOP/build}"
SUITES=${*:-foundation docs unit qtest iotests guest crash fuzz}
LOG_DIR="$BUILD/tesseract-test-logs"
mkdir -p "$LOG_DIR"

PASS=0 FAIL=0 SKIP=0
FAILED_NAMES=()

result() {  # status name
    case "$1" in
    ok) PASS=$((PASS + 1)); echo "PASS  $2" ;;
    skip) SKIP=$((SKIP + 1)); echo "SKIP  $2" ;;
    *) FAIL=$((FAIL + 1)); FAILED_NAMES+=("$2"); echo "FAIL  $2" ;;
    esac
}

# Count the TAP lines of one test program's output.  A program that
# exits non-zero without a failing TAP line still counts as a failure.
run_tap() {  # label log command...
    local label=$1 log=$2 rc n_ok n_bad n_skip
    shift 2
    "$@" > "$log" 2>&1
    rc=$?
    n_skip=$(grep -cE '^ok( [0-9]+)? .*# SKIP' "$log")
    n_ok=$(( $(grep -cE '^ok( [0-9]+)? ' "$log") - n_skip ))
    n_bad=$(grep -cE '^not ok( [0-9]+)? ' "$log")
    PASS=$((PASS + n_ok)); SKIP=$((SKIP + n_skip)); FAIL=$((FAIL + n_bad))
    grep -E '^(not )?ok( [0-9]+)? ' "$log" | \
        sed -E -e 's/^ok( [0-9]+)?( -)? /PASS  /' \
        -e 's/^not ok( [0-9]+)?( -)? /FAIL  /'
    if [ "$n_bad" -gt 0 ]; then
        FAILED_NAMES+=("$label")
    elif [ "$rc" -ne 0 ] || [ $((n_ok + n_skip)) -eq 0 ]; then
        result fail "$label (exit status $rc, see $log)"
    fi
    if [ "$n_bad" -gt 0 ] || [ "$rc" -ne 0 ]; then
        tail -20 "$log" | sed 's/^/    | /'
    fi
}

# make was just run by 'make check': a second one must have nothing to do.
# Another tree's build (TESSERACT_BUILD) is not this tree's make.
foundation_second_make() {
    local n t0 t1 out

    if [ "$BUILD" != "$TOP/build" ]; then
        result skip "second make: TESSERACT_BUILD is not this tree's build/"
        return
    fi
    t0=$(date +%s%N)
    out=$(make -C "$TOP" 2>&1)
    t1=$(date +%s%N)
    n=$(echo "$out" | grep -cE 'Compiling|Linking')
    if [ "$n" -eq 0 ]; then
        result ok "second make: no compile or link work"
    else
        result fail "second make: $n compile/link steps with nothing changed"
    fi
    if [ $(( (t1 - t0) / 1000000 )) -lt 30000 ]; then
        result ok "second make returns in $(( (t1 - t0) / 1000000 )) ms (< 30 s)"
    else
        result fail "second make took $(( (t1 - t0) / 1000000 )) ms"
    fi
}

# The foundation's promises: nothing to rebuild after a build, no QEMU
# source in git, a missing bsst named in the error, a repository that
# speaks of the software only.
suite_foundation() {
    local out

    foundation_second_make
    if [ "$(git -C "$TOP" ls-files qemu | wc -l)" -eq 0 ] && \
       [ "$(git -C "$TOP" ls-files | grep -vE '^(hw/mem/tesseract|block/tesseract|tests|bench|docs|patches|qapi/tesseract|\.ci|\.gitignore|configure|Makefile|README)' | wc -l)" -eq 0 ]; then
        result ok "git holds only the project's own files (no QEMU source)"
    else
        result fail "git tracks files outside the project's directories"
    fi
    out=$("$BUILD/qemu-system-x86_64" -M none -display none \
          -blockdev driver=file,node-name=f,filename=/dev/null \
          -blockdev driver=tesseract,node-name=t,file=f 2>&1)
    if [ $? -ne 0 ] && echo "$out" | grep -q "Parameter 'bsst' is missing"; then
        result ok "missing bsst is refused naming the option"
    else
        result fail "missing bsst: unexpected result: $out"
    fi
    # no development history, no nickname for the paper, no paths of one
    # machine's directories (tests/docs/check-text.py says what it matches)
    if out=$(/usr/bin/python3 "$TOP/tests/docs/check-text.py" "$TOP" 2>&1); then
        result ok "tracked text speaks of the software only"
    else
        result fail "tracked text: $(echo "$out" | wc -l) lines name history, the paper's nickname or outside paths"
        sed 's/^/    | /' <<< "$out"
    fi
}

suite_unit() {
    local t
    for t in "$BUILD"/tests/unit/tesseract/test-*; do
        [ -f "$t" ] && [ -x "$t" ] || continue
        run_tap "$(basename "$t")" "$LOG_DIR/$(basename "$t").log" "$t" --tap
    done
    # the benchmark's analysis, on made-up runs
    for t in "$TOP"/tests/unit/test-*.py; do
        [ -f "$t" ] || continue
        run_tap "$(basename "$t")" "$LOG_DIR/$(basename "$t").log" /usr/bin/python3 "$t"
    done
}

suite_qtest() {
    export QTEST_QEMU_BINARY="$BUILD/qemu-system-x86_64"
    export QTEST_QEMU_IMG="$BUILD/qemu-img"
    export QTEST_QEMU_STORAGE_DAEMON_BINARY="$BUILD/storage-daemon/qemu-storage-daemon"
    run_tap "tesseract-test" "$LOG_DIR/qtest.log" \
        "$BUILD/tests/qtest/tesseract-test" --tap -k
    run_tap "tesseract-swapper-test" "$LOG_DIR/qtest-swapper.log" \
        "$BUILD/tests/qtest/tesseract-swapper-test" --tap -k
    run_tap "tesseract-migrate-test" "$LOG_DIR/qtest-migrate.log" \
        "$BUILD/tests/qtest/tesseract-migrate-test" --tap -k
}

suite_iotests() {
    local t name log
    for t in "$TOP"/tests/qemu-iotests/tesseract*; do
        case "$t" in *.out) continue ;; esac
        name=$(basename "$t")
        log="$LOG_DIR/iotest-$name.log"
        if (cd "$BUILD/tests/qemu-iotests" && ./check -qcow2 "$name") > "$log" 2>&1; then
            if grep -q "Not run: $name" "$log"; then
                result skip "iotest $name ($(grep -A1 'Not run' "$log" | tail -1))"
            else
                result ok "iotest $name"
            fi
        else
            result fail "iotest $name"
            tail -30 "$log" | sed 's/^/    | /'
        fi
    done
}

suite_guest() {
    local t name log
    for t in "$TOP"/tests/guest/*-test.sh; do
        [ -x "$t" ] || continue
        name=$(basename "$t" .sh)
        log="$LOG_DIR/guest-$name.log"
        run_tap "guest $name" "$log" "$t"
    done
}

# A script suite: tests/SUITE/*-test.sh, each printing TAP
suite_scripts() {  # suite
    local t name log
    for t in "$TOP/tests/$1"/*-test.sh; do
        [ -x "$t" ] || continue
        name=$(basename "$t" .sh)
        log="$LOG_DIR/$1-$name.log"
        run_tap "$1 $name" "$log" "$t"
    done
}

for s in $SUITES; do
    case "$s" in
    foundation|unit|qtest|iotests|guest) echo "== $s"; "suite_$s" ;;
    docs|crash|fuzz|long) echo "== $s"; suite_scripts "$s" ;;
    *) echo "run-tests: unknown suite '$s' (foundation, docs, unit, qtest, iotests, guest, crash, fuzz, long)" >&2; exit 2 ;;
    esac
done

echo
[ ${#FAILED_NAMES[@]} -gt 0 ] && printf 'failed: %s\n' "${FAILED_NAMES[@]}"
if [ "$SKIP" -gt 0 ]; then
    echo "$PASS passed, $FAIL failed, $SKIP skipped"
else
    echo "$PASS passed, $FAIL failed"
fi
[ "$FAIL" -eq 0 ]

# SPDX-License-Identifier: GPL-2.0-or-later
#
# Shared set-up of the crash tests (sourced by *-test.sh here and in
# tests/long/): paths, the recorder library, a scratch directory on a
# tmpfs, TAP helpers.

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD="$TOP/build"
CRASH="$TOP/tests/crash"
DRIVER="$BUILD/tests/qtest/tesseract-crash"
RECORDER="$BUILD/tests/crash/tsr-recorder.so"
LOGS="$BUILD/tesseract-test-logs"
export QTEST_QEMU_BINARY="$BUILD/qemu-system-x86_64"
export QTEST_QEMU_IMG="$BUILD/qemu-img"

# Long mode (make check-long): tens of minutes instead of a few
LONG=${TESSERACT_LONG:-0}
# Base seed of the workloads; vary it to explore other interleavings
SEED=${TESSERACT_CRASH_SEED:-1}

TAP_N=0
tap() {  # ok|not-ok description
    TAP_N=$((TAP_N + 1))
    if [ "$1" = ok ]; then
        echo "ok $TAP_N - $2"
    else
        echo "not ok $TAP_N - $2"
    fi
}

bail() {
    echo "Bail out! $*"
    exit 1
}

# The recorder is built here (QEMU's build does not know it)
build_recorder() {
    mkdir -p "$(dirname "$RECORDER")"
    if [ ! -f "$RECORDER" ] || [ "$CRASH/tsr-recorder.c" -nt "$RECORDER" ] || \
       [ "$CRASH/crash-log.h" -nt "$RECORDER" ]; then
        cc -O2 -g -Wall -shared -fPIC -o "$RECORDER.tmp" \
            "$CRASH/tsr-recorder.c" -ldl -lpthread || return 1
        mv "$RECORDER.tmp" "$RECORDER"
    fi
}

check_prereqs() {
    [ -x "$DRIVER" ] || bail "$DRIVER is missing: run 'make check' (or ninja -C build tests/qtest/tesseract-crash)"
    [ -x "$QTEST_QEMU_BINARY" ] && [ -x "$QTEST_QEMU_IMG" ] || bail "QEMU is not built"
    /usr/bin/python3 -c 'import numpy' 2>/dev/null || bail "python3-numpy is missing (./configure installs it)"
}

# A scratch directory on a tmpfs: I/O there costs no disk
scratch() {  # name
    local base=/dev/shm
    [ -d "$base" ] && [ -w "$base" ] || base=${TMPDIR:-/tmp}
    mktemp -d "$base/tesseract-$1.XXXXXX"
}

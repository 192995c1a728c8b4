#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Power-loss replay (TAP).  Each run records a random workload of two
# tesseract disks on one BSST (tsr-recorder.so under QEMU, the
# tesseract-crash driver logging the guest's requests), then replay.py
# builds crash states from it and checks every sector of each.  Some
# runs kill QEMU and restart it in the middle, some suffer a power
# failure in the middle (the files become a crash state, QEMU goes on
# from it).  A run passes when no state violates the model and the
# driver's own checks (every sector read back live, after each restart
# and after each power failure) found nothing.
#
# make check: 6 runs, >= 2,000 states.  TESSERACT_LONG=1 (make
# check-long): 30 runs, >= 20,000 states.  TESSERACT_CRASH_SEED picks
# other workloads.  A failing run's logs stay in
# build/tesseract-test-logs/powerloss-seed<S>/, where
#   tests/crash/replay.py --run DIR --state T:V --keep OUT
# rebuilds one state (its files in OUT) and checks it again.

source "$(dirname "$0")/crash-lib.sh"

if [ "$LONG" = 1 ]; then
    RUNS=30 STATES=700 BATCHES=80
else
    RUNS=6 STATES=360 BATCHES=60
fi

check_prereqs
build_recorder || bail "cannot build $RECORDER"
echo "1..$RUNS"

dir=
trap '[ -n "$dir" ] && rm -rf "$dir"' EXIT
total=0
t_start=$(date +%s)
for ((k = 0; k < RUNS; k++)); do
    s=$((SEED * 1000 + k))
    swapper=$((k % 2))              # odd runs: the real tesseract-swapper
    # runs 2, 3: a SIGKILL and a restart; 4, 5: a power failure and a
    # restart on the crash state (and so on)
    restarts=$(( (k / 2) % 3 == 1 ))
    powerfails=$(( (k / 2) % 3 == 2 ))
    logb=$((3 + (k + k / 2) % 2))   # a log of 3 or 4 blocks: checkpoints
    desc="powerloss seed=$s ($([ $swapper = 1 ] && echo tesseract-swapper || echo test page source), $restarts restarts, $powerfails power failures, $logb log blocks)"
    dir=$(scratch powerloss)
    "$DRIVER" record "$dir" seed=$s batches=$BATCHES restarts=$restarts \
        powerfails=$powerfails swapper=$swapper log-blocks=$logb \
        recorder="$RECORDER" delay=1000 mkfs="$CRASH/bsst-mkfs.py" \
        replay="$CRASH/replay.py" > "$dir/driver.log" 2>&1
    drc=$?
    grep -E '^# (VIOLATION|record:|store:|.*violate)' "$dir/driver.log" | head -20
    /usr/bin/python3 "$CRASH/replay.py" --run "$dir" --states "$STATES" \
        --seed "$s" --jobs 2 --qemu-img "$QTEST_QEMU_IMG" \
        > "$dir/replay.log" 2>&1
    rrc=$?
    cat "$dir/replay.log"
    n=$(sed -n 's/^# replay .*: \([0-9]*\) states in.*/\1/p' "$dir/replay.log")
    total=$((total + ${n:-0}))
    if [ $drc -eq 0 ] && [ $rrc -eq 0 ]; then
        tap ok "$desc: ${n:-0} states, none violating"
        rm -rf "$dir"
        dir=
    else
        keep="$LOGS/powerloss-seed$s"
        rm -rf "$keep"
        mkdir -p "$LOGS"
        mv "$dir" "$keep"
        dir=
        tap not-ok "$desc: driver exit $drc, replay exit $rrc (logs: $keep)"
        echo "# replay one state: tests/crash/replay.py --run $keep --state T:V --qemu-img build/qemu-img [--keep OUT]"
    fi
done
echo "# $total power-loss states checked in $(( $(date +%s) - t_start )) s"

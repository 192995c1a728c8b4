#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Kill torture (TAP).  Two tesseract-crash drivers run side by side, one
# with the test page source and one with the real tesseract-swapper,
# each SIGKILLing QEMU at random instants (a timer, right after a guest
# flush is submitted, during a defrag job, during a swap-out), running
# 'qemu-img check' on the images, reopening (sometimes killing the first
# reopen too) and reading every sector back against the model of what
# the guest wrote and saw flushed.  After a process kill everything QEMU
# handed to the kernel survives, so what this finds is ordering inside
# QEMU (e.g. qcow2 metadata still in QEMU's cache when the store logged
# a record depending on it).  tsr-recorder.so, preloaded without a log,
# makes the images' flushes slow, as a disk's are, so that requests race
# with them.
#
# make check: >= 100 kills.  TESSERACT_LONG=1: >= 2,000.

source "$(dirname "$0")/crash-lib.sh"

if [ "$LONG" = 1 ]; then
    KILLS=(1000 1000)
else
    KILLS=(55 50)
fi

check_prereqs
build_recorder || bail "cannot build $RECORDER"
echo "1..2"
dirs=()
trap 'for d in "${dirs[@]}"; do rm -rf "$d"; done' EXIT
t_start=$(date +%s)
pids=()
for i in 0 1; do
    d=$(scratch kill)
    dirs+=("$d")
    "$DRIVER" kill "$d" seed=$((SEED * 1000 + 500 + i)) kills="${KILLS[$i]}" \
        swapper=$i fresh=25 recorder="$RECORDER" delay=2000 \
        mkfs="$CRASH/bsst-mkfs.py" > "$d/driver.log" 2>&1 &
    pids+=($!)
done
total=0
for i in 0 1; do
    wait "${pids[$i]}"
    rc=$?
    d=${dirs[$i]}
    grep -E '^# ' "$d/driver.log" | grep -v '^# starting QEMU' | head -40
    n=$(sed -n 's/^# kill: \([0-9]*\) kills.*/\1/p' "$d/driver.log")
    total=$((total + ${n:-0}))
    desc="kill torture seed=$((SEED * 1000 + 500 + i)) ($([ $i = 1 ] && echo tesseract-swapper || echo test page source)): ${n:-0} kills"
    if [ $rc -eq 0 ]; then
        tap ok "$desc, no lost or stale sector"
    else
        mkdir -p "$LOGS"
        cp "$d/driver.log" "$LOGS/kill-$i.log"
        grep -v "starting QEMU" "$d/driver.log" | tail -5 | sed "s/^/# /"
        tap not-ok "$desc, exit status $rc (log: $LOGS/kill-$i.log)"
    fi
done
echo "# $total kills in $(( $(date +%s) - t_start )) s"

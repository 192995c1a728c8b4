#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# 'make demo', in two steps:
#  1. boot a small Linux guest whose virtio disk sits behind a tesseract
#     block node, let it write and verify 16 MiB, and show what the node
#     saw (query-tesseract);
#  2. double paging, side by side: two such guests at once, each under a
#     tesseract-swapper limit below its RAM and paging to its own swap
#     disk behind a tesseract node, the baseline (indirect=off: a guest
#     write of a page the swapper holds swaps it in first) beside
#     Tesseract (indirect=on: the write becomes an indirection to the
#     BSST).  bench/run.sh --quick runs them; this prints what differs.
#
#   tests/guest/demo.sh [--accel kvm] [--secs N] [--disk ssd|hdd]
#
# DEMO_SECS (default 15) is the measured time of step 2's workload;
# DEMO_DISK bench/run.sh's disk model: hdd (the default where it can run:
# root and cgroup v1 blkio), all images on one slow spindle, where the
# baseline's swap-ins before guest writes queue behind everything else;
# ssd (the default elsewhere), this machine's disk.  The guest's memhog
# inflates as the measurement starts (BENCH_MEMHOG_START=0), so the
# measured time holds the double paging.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
KIT=${GUEST_KIT:-$HERE/out}
ACCEL=()
SECS=${DEMO_SECS:-15}
DISK=${DEMO_DISK:-}
# the paper's two phases: the host has swapped, then the guest pages
export BENCH_MEMHOG_START=${BENCH_MEMHOG_START:-0}
while [ $# -gt 0 ]; do
    case "$1" in
    --accel) ACCEL=(--accel "$2"); shift ;;
    --secs) SECS=$2; shift ;;
    --disk) DISK=$2; shift ;;
    *) echo "demo: unknown option '$1' (--accel NAME, --secs N, --disk ssd|hdd)" >&2; exit 2 ;;
    esac
    shift
done
if [ -z "$DISK" ]; then
    if [ "$(id -u)" = 0 ] &&
       [ -f /sys/fs/cgroup/blkio/blkio.throttle.read_iops_device ]; then
        DISK=hdd
    else
        DISK=ssd
        disk_why=" (the hdd model needs root and cgroup v1 blkio)"
    fi
fi
T0=$(date +%s.%N)
since() { echo "$1 $(date +%s.%N)" | awk '{ printf "%.1f", $2 - $1 }'; }

WD=$(mktemp -d "${TMPDIR:-/tmp}/tesseract-demo.XXXXXX")
trap 'rm -rf "$WD"' EXIT

echo "== Tesseract for QEMU: demo =="

# 1. The guest kit (Debian cloud kernel + busybox initramfs + diskcheck)
if ! "$HERE/build-kit.sh" "$KIT" > "$WD/kit.log" 2>&1; then
    cat "$WD/kit.log" >&2
    echo "demo: building the guest kit failed" >&2
    exit 1
fi
if grep -q 'up to date' "$WD/kit.log"; then kit_state="up to date"
else kit_state="built in $(since "$T0") s"; fi
printf 'guest kit: Linux %s + busybox initramfs (%s KiB), %s\n' \
    "$(cat "$KIT/kernel-release")" "$(du -k "$KIT/initramfs.cpio.gz" | cut -f1)" "$kit_state"

echo
echo "== 1. A disk behind a tesseract node =="
# 2. Boot it: the guest runs diskcheck on /dev/vda and powers off
T1=$(date +%s.%N)
rc=0
"$HERE/run-guest.sh" --kit "$KIT" --quiet --workdir "$WD/run" \
    --workload diskcheck "${ACCEL[@]}" 2> "$WD/run-guest.err" || rc=$?
run_s=$(since "$T1")

if [ -f "$WD/run/cmdline.short" ]; then
    echo "QEMU command (short form):"
    sed -E 's/ (-blockdev|-device|-append|-kernel) /\n      \1 /g; s/^/  /' "$WD/run/cmdline.short"
fi
if [ "$rc" != 0 ]; then
    cat "$WD/run-guest.err" >&2
    echo "demo: FAILED (see above); total wall time $(since "$T0") s" >&2
    exit 1
fi
tr -d '\r' < "$WD/run/console.log" | grep -E '^(diskcheck: wrote|GUEST-RESULT:)' \
    | sed 's/^/guest: /'

# 3. What the tesseract node saw
/usr/bin/python3 - "$WD/run/stats.json" <<'EOF'
import json
import sys

for d in json.load(open(sys.argv[1]))["disks"]:
    mib = lambda b: "%.1f MiB" % (b / 1048576)
    print("query-tesseract: node %s (bsst %s, indirect %s, defrag %s)"
          % (d["node-name"], d["bsst"], "on" if d["indirect"] else "off",
             d["defrag"]))
    print("  %d reads (%s), %d writes (%s), %d flushes, %d indirections"
          % (d["reads"], mib(d["bytes-read"]), d["writes"],
             mib(d["bytes-written"]), d["flushes"], d["indirections"]))
    print("  %-18s %7s %10s %10s" % ("latency", "count", "mean µs", "p99 µs"))
    for k in ("write-prepare", "write-completion", "read-prepare",
              "read-completion"):
        lat = d[k]
        print("  %-18s %7d %10.2f %10.2f"
              % (k.replace("-", " "), lat["count"], lat["mean"], lat["p99"]))
EOF
echo "step 1: guest boot, run and QMP in $run_s s"

# 4. Double paging, side by side
echo
echo "== 2. Double paging: the baseline beside Tesseract, at the same time =="
cat <<TXT
Two guests of 256 MiB at once, one host CPU each. The tesseract-swapper
holds each to 230 MiB of host RAM: it writes cold guest pages to the BSST.
Inside, the guest itself is short of memory (a 160 MiB transaction heap
and 96 MiB of memhog) and pages to its own swap disk, a virtio disk
behind a tesseract node on the same BSST: the guest swaps out pages the
host has already swapped out (double paging). Measured: ${SECS} s of the
guest's transactions, its every object checked, while memhog inflates.
Disk model: ${DISK}${disk_why:-}.
TXT
T2=$(date +%s.%N)
rc=0
"$TOP/bench/run.sh" --quick --disks "$DISK" --scenarios "baseline tesseract" \
    --together "baseline tesseract" --rounds 1 --secs "$SECS" \
    --out "$WD/bench" "${ACCEL[@]}" > "$WD/bench.log" 2>&1 || rc=$?
pair_s=$(since "$T2")
if [ ! -f "$WD/bench/summary.json" ]; then
    cat "$WD/bench.log" >&2
    echo "demo: the side-by-side runs failed (see above)" >&2
    exit 1
fi
/usr/bin/python3 "$HERE/demo-report.py" "$WD/bench" "$DISK" || rc=1
echo "step 2: both guests booted, measured and checked in $pair_s s"
echo "total wall time: $(since "$T0") s"
if [ "$rc" != 0 ]; then
    sed -n '/^bench: /p' "$WD/bench.log" >&2
    echo "demo: FAILED (a run did not finish, or a page came back corrupt)" >&2
    exit 1
fi

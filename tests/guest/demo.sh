#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# 'make demo': boot a small Linux guest whose virtio disk sits behind a
# tesseract block node, let it write and verify 16 MiB, and show what the
# node saw (query-tesseract).
#
#   tests/guest/demo.sh [run-guest.sh options, e.g. --accel kvm]
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
KIT=${GUEST_KIT:-$HERE/out}
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

# 2. Boot it: the guest runs diskcheck on /dev/vda and powers off
T1=$(date +%s.%N)
rc=0
"$HERE/run-guest.sh" --kit "$KIT" --quiet --workdir "$WD/run" \
    --workload diskcheck "$@" 2> "$WD/run-guest.err" || rc=$?
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
echo "total wall time: $(since "$T0") s (guest boot, run and QMP: $run_s s)"

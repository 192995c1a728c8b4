#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# 'make check' end-to-end test of silent swap writes: a Linux guest under
# a tesseract-swapper whose limit is below what its page cache grows to.
# The pagecache workload writes a pattern to its disk (O_DIRECT), reads it
# through the page cache, idles while the host swaps guest RAM out, and
# reads it again, verifying every block each time.  Run twice, with
# silent-swap=on and off.
#
# Passes if both runs verify every block (0 corrupt), the run with
# silent-swap=on swapped pages out silently and read some back from the
# disk, and it wrote at most half the BSST bytes of the run with it off.
# Prints one TAP line, then the figures as '# ' lines; exit 0 or 1.
#
#   tests/guest/silent-test.sh [run-guest.sh options, e.g. --accel kvm]
#
# Environment: SILENT_TEST_MIB (page cache filled, default 128),
# SILENT_TEST_LIMIT (swapper limit, default 64M), SILENT_TEST_POLICY
# (default random), SILENT_TEST_MEM (guest RAM, default 384M: no guest
# reclaim of its page cache), SILENT_TEST_KEEP=DIR
# (keep the runs' files in DIR).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
MIB=${SILENT_TEST_MIB:-128}
LIMIT=${SILENT_TEST_LIMIT:-64M}
POLICY=${SILENT_TEST_POLICY:-random}
MEM=${SILENT_TEST_MEM:-384M}
NAME="guest page cache under the tesseract-swapper: silent swap writes"

# shellcheck source=tests/guest/test-lib.sh
. "$HERE/test-lib.sh"
gt_workdir "${SILENT_TEST_KEEP:-}"
gt_kit

for mode in on off; do
    "$HERE/run-guest.sh" --quiet --workdir "$WD/$mode" -m "$MEM" --timeout 240 \
        --workload pagecache --append "pagecache_mib=$MIB pagecache_idle=3 pagecache_rereads=3" \
        --disk-size "$((MIB + 32))M" --bsst-format raw --bsst-size 512M \
        --swapper "limit=$LIMIT,policy=$POLICY,silent-swap=$mode" "$@" \
        > /dev/null 2> "$WD/err" \
        || not_ok "silent-swap=$mode: $(grep -m1 -E 'FAIL|error' "$WD/err" | sed -E 's/^run-guest: (FAIL|error): //')"
    tr -d '\r' < "$WD/$mode/console.log" > "$WD/console-$mode.txt"
    grep -q '^pagecache: all reads verified' "$WD/console-$mode.txt" || {
        grep -E '^diskcheck: (block|wrote)' "$WD/console-$mode.txt" | head -8 > "$WD/err" || true
        not_ok "silent-swap=$mode: the guest's reads did not verify"
    }
    n=$(grep -c -E '^diskcheck: wrote 0 MiB, read [0-9]+ MiB, 0 corrupt blocks' "$WD/console-$mode.txt" || true)
    [ "$n" = 4 ] || not_ok "silent-swap=$mode: $n of 4 page-cache reads verified clean"
done

/usr/bin/python3 - "$WD/on/stats.json" "$WD/off/stats.json" \
    > "$WD/figures" 2> "$WD/err" <<'PY' || not_ok "$(tail -1 "$WD/err")"
import json
import sys

def swapper(path):
    sw = [s for s in json.load(open(path)).get("swappers", [])
          if s["id"] == "swapper0"]
    if not sw:
        sys.exit("query-tesseract shows no swapper 'swapper0' in " + path)
    return sw[0]

on, off = swapper(sys.argv[1]), swapper(sys.argv[2])
for name, s in (("on", on), ("off", off)):
    print("silent-swap=%s: swap-outs %d (silent %d), swap-ins %d (from the "
          "disk %d), bsst-bytes-written %d, silent-hints %d, compares %d, "
          "mismatches %d, preserved %d" % (
              name, s["swap-outs"], s["silent-swapouts"], s["swap-ins"],
              s["silent-swapins"], s["bsst-bytes-written"],
              s["silent-hints"], s["silent-compares"],
              s["silent-mismatches"], s["silent-preserved"]))
ratio = on["bsst-bytes-written"] / max(off["bsst-bytes-written"], 1)
print("BSST bytes written, on / off: %.2f (at most 0.50 to pass)" % ratio)
assert off["swap-outs"] > 0, "nothing was swapped out: raise the page cache"
assert off["silent-swapouts"] == 0 and off["silent-hints"] == 0, \
    "silent-swap=off made silent swap-outs"
assert on["silent-swapouts"] > 0, "no silent swap-out"
assert on["silent-swapins"] > 0, "no page was read back from the disk"
assert ratio <= 0.5, "BSST bytes written fell by less than half"
PY
gt_ok

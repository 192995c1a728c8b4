#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# 'make check' end-to-end test of double paging (issue 4's guest
# acceptance): a 256 MiB Linux guest under a tesseract-swapper whose limit
# is well below that (the host swaps guest RAM into the BSST), with the
# guest's own swap on a second virtio disk behind a tesseract node that
# shares the swapper's BSST (the guest swaps too).  memverify writes a
# verifiable pattern to a working set larger than the guest's free memory,
# re-reads and verifies every page in several passes (rewriting a quarter
# of the pages in each pass) and counts corrupt pages.
#
# Passes if memverify reports 0 corrupt pages and query-tesseract shows
# swapper swap-outs > 0 and swap-ins > 0 and, on the swap disk,
# indirections > 0 or indirect-pages > 0 (guest swap writes of pages the
# host had swapped out became indirections: no swap-in).  Prints one TAP
# line, then the figures as '# ' lines; exit 0 or 1.
#
#   tests/guest/swap-test.sh [run-guest.sh options, e.g. --accel kvm]
#
# Environment: SWAP_TEST_MIB (working set, default 320), SWAP_TEST_LIMIT
# (swapper limit, default 160M), SWAP_TEST_PASSES (default 2, plus a final
# verify-only pass), SWAP_TEST_POLICY (random or wp-age, default random),
# SWAP_TEST_BSST_FORMAT (raw or qcow2, default raw), SWAP_TEST_TIMEOUT (s,
# default 240), SWAP_TEST_SEED (pattern seed, default 7),
# SWAP_TEST_KEEP=DIR (keep the run's files in DIR).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
MIB=${SWAP_TEST_MIB:-320}
LIMIT=${SWAP_TEST_LIMIT:-160M}
PASSES=${SWAP_TEST_PASSES:-2}
POLICY=${SWAP_TEST_POLICY:-random}
# raw here; swap-qcow2-test.sh runs this test with a qcow2 BSST.  (Before
# the swapper read faulted pages with a plain pread() of the BSST's host
# file, a qcow2 BSST deadlocked QEMU in 2 of 4 runs: a vCPU holding the
# BQL faulted, and the fault's read through the IOThread waited for
# qcow2's lock, held by a main-loop request that needed the BQL.)
BSST_FORMAT=${SWAP_TEST_BSST_FORMAT:-raw}
NAME="guest swap under the tesseract-swapper ($BSST_FORMAT BSST): double paging becomes indirections"

# shellcheck source=tests/guest/test-lib.sh
. "$HERE/test-lib.sh"
gt_workdir "${SWAP_TEST_KEEP:-}"
gt_kit

T0=$(date +%s)
gt_run -m 256M --timeout "${SWAP_TEST_TIMEOUT:-240}" --workload memverify \
    --append "memverify_mib=$MIB memverify_passes=$PASSES memverify_seed=${SWAP_TEST_SEED:-7}" \
    --swap-disk 512M --bsst-size 2G --bsst-format "$BSST_FORMAT" \
    --swapper "limit=$LIMIT,policy=$POLICY" "$@"
ELAPSED=$(( $(date +%s) - T0 ))

# memverify's own verdict
tr -d '\r' < "$WD/run/console.log" > "$WD/console.txt"
line=$(grep -m1 -E '^memverify: [0-9]+ MiB, ' "$WD/console.txt" || true)
case "$line" in
*", 0 corrupt pages,"*) ;;
*) grep '^memverify: CORRUPT' "$WD/console.txt" > "$WD/err" || true
   not_ok "memverify: ${line:-no summary line}" ;;
esac

# the host's view: swapper and swap disk
/usr/bin/python3 - "$WD/run/stats.json" "$WD/console.txt" "$ELAPSED" \
    > "$WD/figures" 2> "$WD/err" <<'EOF' || not_ok "$(tail -1 "$WD/err")"
import json
import re
import sys

st = json.load(open(sys.argv[1]))
con = open(sys.argv[2]).read()
sw = [s for s in st.get("swappers", []) if s["id"] == "swapper0"]
dk = [d for d in st["disks"] if d["node-name"] == "swapdisk"]
if not sw:
    sys.exit("query-tesseract shows no swapper 'swapper0'")
if not dk:
    sys.exit("query-tesseract shows no disk 'swapdisk'")
sw, dk = sw[0], dk[0]
m = re.search(r"^memverify: guest pswpin (\d+) pswpout (\d+)", con, re.M)
pin, pout = (int(m.group(1)), int(m.group(2))) if m else (-1, -1)
summ = re.search(r"^memverify: .*", con, re.M).group(0)
lat = lambda h: "mean %.1f p50 %.1f p99 %.1f max %.0f µs (n=%d)" % (
    h["mean"], h["p50"], h["p99"], h["max"], h["count"])
print(summ)
print("run time %s s (guest boot, workload, QMP)" % sys.argv[3])
print("guest: pswpin %d pswpout %d" % (pin, pout))
print("swapper: limit %d MiB, swap-outs %d, swap-ins %d, swapins-avoided %d, "
      "swapins-cancelled %d, swapouts-abandoned %d, resident %d, swapped %d"
      % (sw["limit"] >> 20, sw["swap-outs"], sw["swap-ins"],
         sw["swapins-avoided"], sw["swapins-cancelled"],
         sw["swapouts-abandoned"], sw["resident-pages"], sw["swapped-pages"]))
print("swapper: fault service %s" % lat(sw["fault-service"]))
print("swapper: bsst read     %s" % lat(sw["bsst-read"]))
print("swapdisk: writes %d, reads %d, indirections %d, indirect-pages %d, "
      "swapin-bytes-avoided %d, bsst-bytes-read %d"
      % (dk["writes"], dk["reads"], dk["indirections"], dk["indirect-pages"],
         dk["swapin-bytes-avoided"], dk["bsst-bytes-read"]))
for k in ("write-prepare", "write-completion", "read-prepare",
          "read-completion"):
    print("swapdisk: %-16s %s" % (k, lat(dk[k])))
errs = []
if pout <= 0:
    errs.append("the guest did not swap (pswpout %d)" % pout)
if sw["swap-outs"] <= 0:
    errs.append("swapper swap-outs = 0")
if sw["swap-ins"] <= 0:
    errs.append("swapper swap-ins = 0")
if dk["indirections"] <= 0 and dk["indirect-pages"] <= 0:
    errs.append("no indirections on the swap disk")
sys.exit("; ".join(errs) or None)
EOF

gt_ok

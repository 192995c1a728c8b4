#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# 'make check': a Linux guest gives memory back through virtio-balloon's
# free page reporting while the tesseract-swapper holds it.  A 256 MiB
# guest under a 128 MiB limit runs memhog (128 MiB, held, verified, freed)
# and then idles, so that its kernel reports the freed 2 MiB blocks.
# Pages the swapper held and the guest gave back stop counting against
# the limit, and those it had swapped out lose their BSST copy unread.
#
# Passes if memhog reports 0 corrupt pages and query-tesseract shows the
# swapper swapped out, discarded-pages >= 8192 (32 MiB of memhog's
# 128 MiB came back), discarded-swapped-pages > 0, and resident pages
# below the limit by at least those 32 MiB.  One TAP line, then the
# figures as '# ' lines; exit 0 or 1.
#
#   tests/guest/balloon-test.sh [run-guest.sh options, e.g. --accel kvm]
#
# Environment: BALLOON_TEST_KEEP=DIR (keep the run's files in DIR).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
NAME="guest free page reporting under the tesseract-swapper: pages given back are dropped"

# shellcheck source=tests/guest/test-lib.sh
. "$HERE/test-lib.sh"
gt_workdir "${BALLOON_TEST_KEEP:-}"
gt_kit
gt_run -m 256M --timeout 240 --workload memhog --balloon \
    --append "memhog_mib=128 memhog_hold_secs=1 idle_after=8" \
    --bsst-format raw --bsst-size 512M \
    --swapper "limit=128M,policy=random" "$@"

tr -d '\r' < "$WD/run/console.log" > "$WD/console.txt"
line=$(grep -m1 -E '^memhog: held ' "$WD/console.txt" || true)
case "$line" in
*", 0 corrupt pages"*) ;;
*) not_ok "memhog: ${line:-no summary line}" ;;
esac

/usr/bin/python3 - "$WD/run/stats.json" "$line" \
    > "$WD/figures" 2> "$WD/err" <<'EOF' || not_ok "$(tail -1 "$WD/err")"
import json
import sys

st = json.load(open(sys.argv[1]))
sw = [s for s in st.get("swappers", []) if s["id"] == "swapper0"]
if not sw:
    sys.exit("query-tesseract shows no swapper 'swapper0'")
sw = sw[0]
limit = sw["limit"] // 4096
print(sys.argv[2])
print("swapper: limit %d pages, resident %d, swapped %d, swap-outs %d, "
      "swap-ins %d, zero-fills %d" % (
          limit, sw["resident-pages"], sw["swapped-pages"], sw["swap-outs"],
          sw["swap-ins"], sw["zero-fills"]))
print("given back by the guest: %d pages, %d of them swapped out" % (
    sw["discarded-pages"], sw["discarded-swapped-pages"]))
errs = []
if sw["swap-outs"] <= 0:
    errs.append("the swapper did not swap out")
if sw["discarded-pages"] < 8192:
    errs.append("discarded-pages %d < 8192" % sw["discarded-pages"])
if sw["discarded-swapped-pages"] <= 0:
    errs.append("no swapped-out page was given back")
if sw["resident-pages"] > limit - 8192:
    errs.append("resident-pages %d not below the limit %d by 8192" % (
        sw["resident-pages"], limit))
sys.exit("; ".join(errs) or None)
EOF

gt_ok

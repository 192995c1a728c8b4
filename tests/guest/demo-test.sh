#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# 'make check' runs 'make demo' (tests/guest/demo.sh) so that it cannot
# rot: it must finish, both steps must print, the side-by-side table must
# show the baseline making no indirection and Tesseract making some (guest
# writes of pages the swapper held, with no swap-in), and no page may come
# back corrupt.  One TAP line; the demo's output as '# ' lines.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
NAME="make demo: the disk check, then double paging side by side"
OUT=$(mktemp "${TMPDIR:-/tmp}/tesseract-demo-test.XXXXXX")
trap 'rm -f "$OUT"' EXIT

echo "1..1"
T0=$(date +%s)
DEMO_SECS=${DEMO_SECS:-10} "$HERE/demo.sh" "$@" > "$OUT" 2>&1
rc=$?
secs=$(( $(date +%s) - T0 ))
why=$(/usr/bin/python3 - "$OUT" "$rc" <<'PY'
import re
import sys

text = open(sys.argv[1]).read()
bad = []
if sys.argv[2] != "0":
    bad.append("demo.sh exited %s" % sys.argv[2])
for need in ("== 1. A disk behind a tesseract node ==",
             "GUEST-RESULT: ok",
             "== 2. Double paging",
             "QEMU command, baseline", "QEMU command, tesseract"):
    if need not in text:
        bad.append("no '%s' in the output" % need)


def cells(label):
    m = re.search(r"^ +%s +(\d+) +(\d+)" % re.escape(label), text, re.M)
    return (int(m.group(1)), int(m.group(2))) if m else None


ind = cells("... made indirections (no swap-in)")
if ind is None:
    bad.append("no indirection row")
elif ind[0] != 0 or ind[1] == 0:
    bad.append("indirections baseline %d, Tesseract %d (want 0 and > 0)"
               % ind)
bad_pages = cells("corrupt pages (checked by the guest)")
if bad_pages != (0, 0):
    bad.append("corrupt pages %s" % (bad_pages,))
print("; ".join(bad))
PY
)
if [ -z "$why" ]; then
    echo "ok 1 - $NAME ($secs s)"
else
    echo "not ok 1 - $NAME: $why"
fi
sed 's/^/# /' "$OUT"
[ -z "$why" ]

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# 'make check' end-to-end test: boot the guest kit, run diskcheck on a disk
# behind a tesseract node, and check that the guest verified every block
# and that the node saw all of that I/O (query-tesseract).  Prints one TAP
# line (diagnostics as '# ' lines after it on failure); exit 0 or 1.
#
#   tests/guest/guest-test.sh [run-guest.sh options]
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
NAME="guest diskcheck through tesseract"
MIB=16

WD=$(mktemp -d "${TMPDIR:-/tmp}/tesseract-guest-test.XXXXXX")
trap 'rm -rf "$WD"' EXIT

not_ok() {
    echo "not ok - $NAME: $1"
    [ -s "$WD/err" ] && sed 's/^/# /' "$WD/err"
    exit 1
}

# build the kit first so that its output does not count as a failure
"$HERE/build-kit.sh" > "$WD/err" 2>&1 || not_ok "cannot build the guest kit"

"$HERE/run-guest.sh" --quiet --workdir "$WD/run" --workload diskcheck \
    --append "diskcheck_mib=$MIB" "$@" > /dev/null 2> "$WD/err" \
    || not_ok "$(grep -m1 -E 'FAIL|error' "$WD/err" | sed -E 's/^run-guest: (FAIL|error): //')"

# diskcheck's own verdict, then the node's view of the same I/O
line=$(tr -d '\r' < "$WD/run/console.log" | grep -m1 '^diskcheck: wrote' || true)
case "$line" in
"diskcheck: wrote $MIB MiB, read $MIB MiB, 0 corrupt blocks,"*) ;;
*) not_ok "unexpected diskcheck result: ${line:-none}" ;;
esac
/usr/bin/python3 - "$WD/run/stats.json" "$MIB" > "$WD/err" 2>&1 <<'EOF' \
    || not_ok "query-tesseract does not show the guest's I/O"
import json
import sys

disks = json.load(open(sys.argv[1]))["disks"]
want = int(sys.argv[2]) << 20
d = [d for d in disks if d["node-name"] == "disk0"][0]
print("disk0: bytes-written %d, bytes-read %d, want >= %d"
      % (d["bytes-written"], d["bytes-read"], want))
assert d["bytes-written"] >= want and d["bytes-read"] >= want
assert d["writes"] > 0 and d["reads"] > 0
# no swapper: every request took the direct path, or was planned and timed
assert d["writes"] == d["direct-writes"] + d["write-prepare"]["count"]
assert d["reads"] == d["direct-reads"] + d["read-prepare"]["count"]
EOF

echo "ok - $NAME"

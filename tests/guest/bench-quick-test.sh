#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# 'make check' runs the evaluation harness in quick mode (issue 6): every
# scenario on both disk models, short runs; passes if every run finished and
# no scenario saw a corrupt page (bench/run.sh --quick asserts it).  One TAP
# line, then the per-scenario figures as '# ' lines.  Results go to
# bench/results/quick-check/ (overwritten each time; 'latest' is left alone).
#
#   tests/guest/bench-quick-test.sh [bench/run.sh options]
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
NAME="bench quick: all scenarios finish with 0 corrupt pages"
OUT=$TOP/bench/results/quick-check

rm -rf "$OUT"
mkdir -p "$(dirname "$OUT")"
T0=$(date +%s)
"$TOP/bench/run.sh" --quick --out "$OUT" "$@" > "$OUT.log" 2>&1
rc=$?
T1=$(date +%s)
if [ "$rc" = 0 ]; then
    echo "ok - $NAME ($((T1 - T0)) s)"
else
    echo "not ok - $NAME (exit $rc after $((T1 - T0)) s; see $OUT/report.md)"
fi
grep -vE '^bench: .*: running' "$OUT.log" | sed 's/^/# /'
exit "$rc"

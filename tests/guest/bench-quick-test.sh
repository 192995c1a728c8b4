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

# every run with a swapper has its counters sampled while the workload
# measured (run.sh --series: qmp.py --series into series.jsonl)
NAME2="bench quick: the swapper's counters were sampled during each run"
why=$(/usr/bin/python3 - "$OUT/runs" <<'PY'
import json, os, sys
top = sys.argv[1]
bad = []
runs = sorted(os.listdir(top)) if os.path.isdir(top) else []
for run in runs:
    if "-stock" in run:
        continue                        # stock QEMU: no swapper
    n = 0
    try:
        with open(os.path.join(top, run, "series.jsonl")) as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                ret = rec.get("return")
                if (rec.get("score_ms") is not None and isinstance(ret, dict)
                        and ret.get("swappers")):
                    n += 1
    except OSError as e:
        bad.append("%s: %s" % (run, e.strerror))
        continue
    if n < 2:
        bad.append("%s: %d samples during the measurement" % (run, n))
if not runs:
    bad.append("no runs in " + top)
print("; ".join(bad))
PY
)
if [ -z "$why" ]; then
    echo "ok - $NAME2"
else
    echo "not ok - $NAME2 ($why)"
    rc=1
fi
exit "$rc"

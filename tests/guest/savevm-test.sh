#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# 'make check' end-to-end test of savevm and loadvm under the
# tesseract-swapper: a 256 MiB Linux guest runs memverify (a verifiable
# pattern in every page of its working set, re-read and verified in
# several passes, 1 page in MEMVERIFY_REWRITE rewritten per pass) under
# a swapper whose limit (32M) is far below what it touches; memverify
# idles 1.5 s after each pass, when the swapper swaps the working set out
# (most of it: without the pause, a pass faults pages back in as fast as
# the swapper swaps them out under TCG).  Once a few passes ran, HMP 'savevm s1' saves the VM into its qcow2 guest disk
# (--plain-disk: a tesseract node blocks savevm), its swapped-out pages
# read from the BSST; the guest goes on rewriting pages, and a few passes
# later 'loadvm s1' brings back the state of the snapshot, memverify's
# own with it, over pages swapped out since.  memverify then runs to its
# end.
#
# Passes if memverify reports 0 corrupt pages, at least 30% of guest RAM
# was swapped out when savevm began, savevm sent swapped-out pages from
# the BSST (migration-pages-sent > 0) with few faults (migration-faults
# at most 15% of it + 100: RAM's section reads what it sends when it
# flushes, and a page swapped out in between faults back in), the guest
# disk holds snapshot s1 and the BSST holds none, and the guest ran the
# passes after the snapshot again.  Prints one TAP line,
# then the figures as '# ' lines; exit 0 or 1.
#
#   tests/guest/savevm-test.sh [run-guest.sh options]
#
# Environment: SAVEVM_TEST_MIB (working set, default 160),
# SAVEVM_TEST_PASSES (default 12), SAVEVM_TEST_SAVE (the pass after which
# savevm runs, default 3), SAVEVM_TEST_LOAD (loadvm, default 6),
# SAVEVM_TEST_TIMEOUT (s, default 240), SAVEVM_TEST_KEEP=DIR (keep the
# run's files in DIR).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
QEMU_IMG=${QEMU_IMG:-$TOP/build/qemu-img}
MIB=${SAVEVM_TEST_MIB:-160}
PASSES=${SAVEVM_TEST_PASSES:-12}
SAVE=${SAVEVM_TEST_SAVE:-3}
LOAD=${SAVEVM_TEST_LOAD:-6}
TIMEOUT=${SAVEVM_TEST_TIMEOUT:-240}
NAME="savevm and loadvm of a guest under the tesseract-swapper: swapped-out pages saved from the BSST, the BSST left out of the snapshot"

# shellcheck source=tests/guest/test-lib.sh
. "$HERE/test-lib.sh"
gt_workdir "${SAVEVM_TEST_KEEP:-}"
rm -rf "$WD/run"
rm -f "$WD"/{err,figures,guest.qcow2}
gt_kit

"$QEMU_IMG" create -q -f qcow2 "$WD/guest.qcow2" 64M 2> "$WD/err" || \
    not_ok "cannot create the guest disk"
gt_run -m 256M --workload memverify \
    --append "memverify_mib=$MIB memverify_passes=$PASSES memverify_rewrite=32 memverify_seed=11 memverify_pause_ms=1500" \
    --plain-disk --disk-image "$WD/guest.qcow2" --bsst-format qcow2 \
    --bsst-size 1G --swapper "limit=32M" --timeout "$TIMEOUT" \
    --hmp-on "memverify: pass $SAVE verified=savevm s1" \
    --hmp-on "memverify: pass $LOAD verified=loadvm s1" "$@"

# the snapshot is in the guest disk, none in the BSST
"$QEMU_IMG" snapshot -l "$WD/guest.qcow2" > "$WD/snap-disk.txt" 2> "$WD/err" || \
    not_ok "qemu-img snapshot -l of the guest disk failed"
"$QEMU_IMG" snapshot -l "$WD/run/bsst.qcow2" > "$WD/snap-bsst.txt" 2> "$WD/err" || \
    not_ok "qemu-img snapshot -l of the BSST failed"
tr -d '\r' < "$WD/run/console.log" > "$WD/console.txt"

/usr/bin/python3 - "$WD" > "$WD/figures" 2> "$WD/err" <<'PY' || \
    not_ok "$(tail -1 "$WD/err")"
import json
import re
import sys

wd = sys.argv[1]
hmp = json.load(open(wd + "/run/hmp.json"))
stats = json.load(open(wd + "/run/stats.json"))
con = open(wd + "/console.txt").read()


def swapper(st):
    sw = [s for s in (st or {}).get("swappers", []) if s["id"] == "swapper0"]
    if not sw:
        sys.exit("query-tesseract shows no swapper 'swapper0'")
    return sw[0]


save = [h for h in hmp if h["command"] == "savevm s1"]
load = [h for h in hmp if h["command"] == "loadvm s1"]
if not save or not load:
    sys.exit("savevm or loadvm did not run: %s" % hmp)
pre = swapper(save[0]["query-tesseract-before"])
mid = swapper(load[0]["query-tesseract-before"])
end = swapper(stats)
summ = re.search(r"^memverify: \d+ MiB, .*", con, re.M)
passes = re.findall(r"^memverify: pass (\d+) verified", con, re.M)
print(summ.group(0) if summ else "memverify: no summary line")
print("memverify pass lines: %s (loadvm went back to pass %s)"
      % (",".join(passes), save[0]["pattern"].split()[2]))
print("savevm at %.1f s took %.1f s, loadvm at %.1f s took %.1f s"
      % (save[0]["t"], save[0]["seconds"], load[0]["t"], load[0]["seconds"]))
sent = mid["migration-pages-sent"] - pre["migration-pages-sent"]
faults = mid["migration-faults"] - pre["migration-faults"]
max_faults = sent * 15 // 100 + 100
print("at savevm: %d pages swapped out (%.0f%% of guest RAM); savevm sent "
      "%d from the BSST, %d zero pages, %d faults (at most %d)"
      % (pre["swapped-pages"], 100.0 * pre["swapped-pages"] / pre["ram-pages"],
         sent, mid["migration-zero-pages-sent"]
         - pre["migration-zero-pages-sent"], faults, max_faults))
print("at loadvm: %d pages swapped out; at the end: %d, swap-ins %d"
      % (mid["swapped-pages"], end["swapped-pages"], end["swap-ins"]))
disk = open(wd + "/snap-disk.txt").read()
bsst = open(wd + "/snap-bsst.txt").read()
print("guest disk snapshots: %s; BSST snapshots: %s"
      % (" ".join(re.findall(r"^\s*\d+\s+(\S+)", disk, re.M)) or "none",
         " ".join(re.findall(r"^\s*\d+\s+(\S+)", bsst, re.M)) or "none"))

errs = []
if not summ or ", 0 corrupt pages," not in summ.group(0):
    errs.append("memverify: %s" % (summ.group(0) if summ else
                                   "no summary line"))
if pre["swapped-pages"] * 10 < pre["ram-pages"] * 3:
    errs.append("only %.0f%% of guest RAM was swapped out at savevm, not 30%%"
                % (100.0 * pre["swapped-pages"] / pre["ram-pages"]))
again = save[0]["pattern"].split()[2]
if passes.count(load[0]["pattern"].split()[2]) < 2:
    errs.append("the guest did not go back to pass %s after loadvm" % again)
if sent <= 0:
    errs.append("savevm sent no page from the BSST")
if faults > max_faults:
    errs.append("savevm faulted %d swapped-out pages back in (more than "
                "15%% of %d + 100)" % (faults, sent))
if not re.search(r"^\s*\d+\s+s1\s", disk, re.M):
    errs.append("the guest disk has no snapshot s1")
if re.search(r"^\s*\d+\s+\S+\s", bsst, re.M):
    errs.append("the BSST has a snapshot")
if errs:
    sys.exit("; ".join(errs))
PY
gt_ok

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# 'make check': does policy=access see what a KVM vCPU touches?  The
# policy learns which pages the guest uses by unmapping all guest RAM
# every scan-interval and reading /proc/self/pagemap for the pages mapped
# back since.  Under KVM the guest's accesses go through the KVM MMU, not
# QEMU's page tables: the unmapping must reach KVM (MMU notifiers) and
# KVM's faults must map the pages back in QEMU's page tables, or every
# page looks idle and the policy is as blind as a random one.
#
# tests/guest/kvm-access.S fills a hot region (64 pages) and a cold one
# (1024 pages), then reads the hot one in a loop.  After 15 scans the test
# lowers the limit by 768 pages, fewer than the cold region holds, and
# lets the loop run on: with policy=access the swapper must take cold
# pages only, so the hot loop must not fault.  The same run with
# policy=random (anonymous RAM) is the control: it must fault, or the
# test could not tell a blind policy from a good one.  Then the guest
# checks every dword of both regions.
#
# Passes if, with policy=access, at most 2 of the hot pages faulted
# after the limit dropped; with policy=random at least 8 did; and both
# guests read every dword back intact.  Skipped if /dev/kvm is missing or
# QEMU cannot use it.  One TAP line, then the figures as '# ' lines; exit
# 0 or 1.
#
#   tests/guest/kvm-access-test.sh
#
# Environment: QEMU, QEMU_IMG (default build/...), KVM_TEST_KEEP=DIR.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
NAME="policy=access keeps the pages a KVM vCPU uses resident and swaps out the idle ones"
QEMU=${QEMU:-$TOP/build/qemu-system-x86_64}
QEMU_IMG=${QEMU_IMG:-$TOP/build/qemu-img}

# shellcheck source=tests/guest/test-lib.sh
. "$HERE/test-lib.sh"
gt_workdir "${KVM_TEST_KEEP:-}"

gt_kvm
gt_boot_sector "$HERE/kvm-access.S"

# run_case LABEL 'QEMU RAM OPTIONS' 'SWAPPER OPTIONS' MIN MAX: one boot;
# the hot loop's faults after the limit drops must be in [MIN, MAX]
run_case() {
    local label=$1 ram=$2 swopts=$3 min=$4 max=$5
    rm -f "$WD/res.out" "$WD/bsst.qcow2" "$WD/qmp.sock" "$WD/ser.sock"
    "$QEMU_IMG" create -q -f qcow2 "$WD/bsst.qcow2" 64M
    # shellcheck disable=SC2086
    "$QEMU" -accel kvm -machine pc -m 64 -display none -nodefaults $ram \
        -drive file="$WD/disk.img",format=raw,if=ide \
        -blockdev driver=qcow2,node-name=bsst0,file.driver=file,file.filename="$WD/bsst.qcow2" \
        -object tesseract-swapper,id=swap0,bsst=bsst0,limit=1G$swopts \
        -chardev file,id=res,path="$WD/res.out" \
        -device isa-debugcon,iobase=0x404,chardev=res \
        -chardev socket,id=ser,path="$WD/ser.sock",server=on,wait=off \
        -device isa-serial,chardev=ser \
        -qmp unix:"$WD/qmp.sock",server=on,wait=off 2> "$WD/qemu.err" &
    QPID=$!
    /usr/bin/python3 - "$HERE" "$WD" "$QPID" "$label" "$min" "$max" \
        >> "$WD/figures" 2> "$WD/err" <<'PY' || \
        { kill $QPID 2>/dev/null || true; not_ok "$label: $(tail -1 "$WD/err")"; }
import os, socket, sys, time
here, wd, pid, label = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
lo, hi = int(sys.argv[5]), int(sys.argv[6])
sys.path.insert(0, here)
import qmp

HOT, DROP = 64, 768           # kvm-access.S: 64 hot pages, 1024 cold

def res():
    try:
        return open(wd + "/res.out", "rb").read()
    except OSError:
        return b""

def wait_for(cond, secs, what):
    end = time.monotonic() + secs
    while not cond():
        if not qmp.alive(pid):
            err = open(wd + "/qemu.err").read().strip().splitlines()
            raise SystemExit("QEMU exited: %s" % (err[-1] if err else "?"))
        if time.monotonic() > end:
            raise SystemExit("%s within %d s" % (what, secs))
        time.sleep(0.05)

wait_for(lambda: res()[:1] == b"R", 30, "the boot sector did not start")
q = qmp.QMP(wd + "/qmp.sock", pid=pid)

def sw():
    r = q.execute("query-tesseract")
    if "return" not in r:
        raise SystemExit("query-tesseract: %s" % r)
    return r["return"]["swappers"][0]

# let the scans age the cold region while the hot loop runs
time.sleep(1.6)
s0 = sw()
limit = s0["resident-pages"] - DROP
if limit < HOT + 16:
    raise SystemExit("only %d pages resident" % s0["resident-pages"])
r = q.execute("qom-set", {"path": "/objects/swap0", "property": "limit",
                          "value": limit * 4096})
if "return" not in r:
    raise SystemExit("qom-set limit: %s" % r)
wait_for(lambda: sw()["resident-pages"] <= limit, 20,
         "resident pages did not drop to the limit")
s1 = sw()
time.sleep(1.0)                 # the hot loop runs on under the new limit
s2 = sw()
ser = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
ser.connect(wd + "/ser.sock")
ser.sendall(b"G")
wait_for(lambda: len(res()) >= 6, 60, "the guest did not report")
s3 = sw()
try:
    q.execute("quit")
except qmp.QMPGone:
    pass                        # QEMU may close before its answer is read
out = res()
bad = int.from_bytes(out[1:5], "little")
hot_faults = s2["fault-service"]["count"] - s0["fault-service"]["count"]
print("%s: %d pages resident after %d access scans, limit lowered by %d: "
      "%d swapped out, then %d faults while only the hot region (%d pages) "
      "was read (%d in the 1 s after the drop); the check faulted %d pages "
      "back in, %d dwords wrong"
      % (label, s0["resident-pages"], s0["access-scans"], DROP,
         s1["swap-outs"] - s0["swap-outs"], hot_faults, HOT,
         s2["fault-service"]["count"] - s1["fault-service"]["count"],
         s3["swap-ins"] - s2["swap-ins"], bad))
if out[5:6] != b"D":
    raise SystemExit("the guest's report is malformed: %r" % out)
if bad:
    raise SystemExit("the guest read %d dwords wrong" % bad)
if s1["swap-outs"] - s0["swap-outs"] < DROP:
    raise SystemExit("the swapper swapped out fewer than %d pages" % DROP)
if s3["swap-ins"] == s2["swap-ins"]:
    raise SystemExit("the check swapped nothing back in")
if not lo <= hot_faults <= hi:
    raise SystemExit("%d faults while the hot loop ran, want %d to %d"
                     % (hot_faults, lo, hi))
PY
    wait $QPID || true
    QPID=
}

QPID=
trap 'if [ -n "$QPID" ]; then kill $QPID 2>/dev/null || true; fi; [ -n "${KVM_TEST_KEEP:-}" ] || rm -rf "$WD"' EXIT
: > "$WD/figures"
run_case "memfd RAM, policy=access" \
    "-object memory-backend-memfd,id=mem0,size=64M,share=on -machine memory-backend=mem0" \
    ",policy=access,scan-interval=100" 0 2
# the control: a policy blind to accesses takes hot pages too
run_case "anonymous RAM, policy=random" "" "" 8 1000000
gt_ok

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# 'make check': a guest vCPU faults on swapped-out RAM while the BSST
# cannot be read.  The boot sector of kvm-test.sh (tests/guest/kvm-boot.S)
# fills 64 KiB, the test swaps it out and makes the swapper's BSST reads
# fail (x-fail-reads), and the boot sector then touches the pages.  The
# vCPU must wait, never see wrong data, and QEMU must neither abort nor
# hang its monitor: the swapper reports TESSERACT_SWAPIN_FAILED.
#
# Under KVM the VM is stopped with run state io-error, as for a disk with
# rerror=stop (KVM interrupts the vCPU's fault for the pause); the pages
# come back once the BSST reads again, but the guest runs only after
# 'cont'.  Under TCG a vCPU blocked in a fault cannot pause, so the VM is
# not stopped: the vCPU waits until the swapper's retry succeeds.  Either
# way the guest's sum must be right.  The KVM case is skipped where
# /dev/kvm is missing or unusable.  One TAP line, then the figures as '# '
# lines; exit 0 or 1.
#
# Environment: QEMU, QEMU_IMG (default build/...), SWAPIN_ERROR_TEST_KEEP=DIR.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
NAME="a vCPU faulting while the BSST fails waits, is reported, and gets the right data"
QEMU=${QEMU:-$TOP/build/qemu-system-x86_64}
QEMU_IMG=${QEMU_IMG:-$TOP/build/qemu-img}

# shellcheck source=tests/guest/test-lib.sh
. "$HERE/test-lib.sh"
gt_workdir "${SWAPIN_ERROR_TEST_KEEP:-}"
gt_boot_sector "$HERE/kvm-boot.S"

kvm_usable() {
    [ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ] &&
        printf '%s\n' '{"execute":"qmp_capabilities"}' '{"execute":"quit"}' |
        timeout 30 "$QEMU" -accel kvm -machine none -nodefaults \
            -display none -qmp stdio > /dev/null 2>&1
}

# run_case ACCEL: one boot; its figures appended to $WD/figures
run_case() {
    local accel=$1 qpid
    rm -f "$WD/res.out" "$WD/bsst.qcow2" "$WD/qmp.sock"
    "$QEMU_IMG" create -q -f qcow2 "$WD/bsst.qcow2" 64M
    "$QEMU" -accel "$accel" -machine pc -m 128 -display none -nodefaults \
        -drive file="$WD/disk.img",format=raw,if=ide \
        -blockdev driver=qcow2,node-name=bsst0,file.driver=file,file.filename="$WD/bsst.qcow2" \
        -object tesseract-swapper,id=swap0,bsst=bsst0,limit=1G \
        -chardev file,id=res,path="$WD/res.out" \
        -device isa-debugcon,iobase=0x404,chardev=res \
        -qmp unix:"$WD/qmp.sock",server=on,wait=off 2> "$WD/qemu-$accel.err" &
    qpid=$!
    QPID=$qpid
    /usr/bin/python3 - "$HERE" "$WD" "$accel" "$qpid" >> "$WD/figures" \
        2> "$WD/err" <<'PY' || not_ok "$accel: $(tail -1 "$WD/err")"
import os, sys, time
sys.path.insert(0, sys.argv[1])
from qmp import QMP
wd, accel, pid = sys.argv[2], sys.argv[3], int(sys.argv[4])
res = wd + "/res.out"

def size():
    try:
        return os.path.getsize(res)
    except OSError:
        return 0

def until(cond, secs, what):
    end = time.monotonic() + secs
    while not cond():
        if time.monotonic() > end:
            raise SystemExit("%s: %s within %d s" % (accel, what, secs))
        time.sleep(0.1)

def status():
    return q.execute("query-status")["return"]["status"]

def event(name):
    q.execute("query-status")
    return [e for e in q.events if e["event"] == name]

def ok(resp, what):
    if "return" not in resp:
        raise SystemExit("%s: %s: %s" % (accel, what, resp))

until(lambda: size() >= 1, 60, "the boot sector did not start")
q = QMP(wd + "/qmp.sock", pid=pid)
ok(q.execute("x-tesseract-swap-out",
             {"id": "swap0", "addr": 0x20000, "size": 0x10000}),
   "x-tesseract-swap-out")
ok(q.execute("qom-set", {"path": "/objects/swap0",
                         "property": "x-fail-reads", "value": True}),
   "qom-set x-fail-reads")
t0 = time.monotonic()
until(lambda: event("TESSERACT_SWAPIN_FAILED"), 30,
      "no TESSERACT_SWAPIN_FAILED")
reason = event("TESSERACT_SWAPIN_FAILED")[0]["data"]["reason"]
if accel == "kvm":
    until(lambda: status() == "io-error", 10, "the VM did not stop")
else:
    time.sleep(1)
    if status() != "running":
        raise SystemExit("tcg: run state %s, not running" % status())
if size() != 1:
    raise SystemExit("%s: the guest went on while its pages were missing"
                     % accel)
ok(q.execute("qom-set", {"path": "/objects/swap0",
                         "property": "x-fail-reads", "value": False}),
   "qom-set x-fail-reads")
t1 = time.monotonic()
if accel == "kvm":
    # the pages come back meanwhile; the guest waits for 'cont'
    until(lambda: "swapin-error" not in
          q.execute("query-tesseract")["return"]["swappers"][0], 10,
          "the swapper did not read again")
    time.sleep(0.5)
    if status() != "io-error" or size() != 1:
        raise SystemExit("kvm: the VM ran on before 'cont'")
    ok(q.execute("cont"), "cont")
until(lambda: size() >= 3, 60, "no sum from the guest")
t2 = time.monotonic()
sw = q.execute("query-tesseract")["return"]["swappers"][0]
data = open(res, "rb").read()
pat = bytes((((i & 255) & (i >> 8)) + 0x11) & 255 for i in range(65536))
want = (sum(pat[:0x8000]) + sum((b + 1) & 255 for b in pat[0x8000:])) & 0xffff
got = int.from_bytes(data[1:3], "little")
print("%s: reported \"%s\" %.1f s after the failure began; guest sum "
      "0x%04x (want 0x%04x) %.1f s after the BSST read again; swap-ins %d"
      % (accel, reason, t1 - t0, got, want, t2 - t1, sw["swap-ins"]))
if got != want:
    raise SystemExit("%s: the guest read wrong data" % accel)
if sw["swap-ins"] < 16:
    raise SystemExit("%s: %d swap-ins, not 16" % (accel, sw["swap-ins"]))
try:
    q.execute("quit")
except Exception:
    pass
PY
    wait "$qpid" || true
    QPID=
    if grep -q 'Aborted\|core dumped\|assertion' "$WD/qemu-$accel.err"; then
        cp "$WD/qemu-$accel.err" "$WD/err"
        not_ok "$accel: QEMU aborted"
    fi
}

QPID=
trap 'if [ -n "$QPID" ]; then kill $QPID 2>/dev/null || true; fi; [ -n "${SWAPIN_ERROR_TEST_KEEP:-}" ] || rm -rf "$WD"' EXIT
: > "$WD/figures"
run_case tcg
if kvm_usable; then
    run_case kvm
else
    echo "kvm: skipped (no usable /dev/kvm)" >> "$WD/figures"
fi
gt_ok

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# 'make check': the tesseract-swapper under -accel kvm.  A KVM vCPU's
# access to a swapped-out page is a fault in the kernel's KVM MMU, not a
# userspace fault: it reaches the swapper through userfaultfd from the
# kernel (get_user_pages).  Where KVM is nested (e.g. kvm_pvm) it may boot
# no Linux guest, but it runs SeaBIOS and
# a boot sector: tests/guest/kvm-boot.S fills 64 KiB of guest RAM, the
# test swaps that out (x-tesseract-swap-out), and the boot sector then
# writes half of it and sums all of it.
#
# Twice: anonymous RAM with policy=random, and a shared memfd with
# policy=access (whose scans unmap all RAM every 100 ms, so KVM's
# mappings must go too).  Passes if the sum is the one the pattern gives,
# the swapper swapped out the 16 pages and swapped them back in on 16
# faults (and made access scans, with policy=access).  Skipped if /dev/kvm
# is missing or QEMU cannot use it.  One TAP line, then the figures as
# '# ' lines; exit 0 or 1.
#
#   tests/guest/kvm-test.sh
#
# Environment: QEMU, QEMU_IMG (default build/...), KVM_TEST_KEEP=DIR.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
NAME="KVM vCPU faults on swapped-out guest RAM are served by the tesseract-swapper"
QEMU=${QEMU:-$TOP/build/qemu-system-x86_64}
QEMU_IMG=${QEMU_IMG:-$TOP/build/qemu-img}

# shellcheck source=tests/guest/test-lib.sh
. "$HERE/test-lib.sh"
gt_workdir "${KVM_TEST_KEEP:-}"

gt_kvm
gt_boot_sector "$HERE/kvm-boot.S"

# run_case LABEL 'QEMU RAM OPTIONS' 'SWAPPER OPTIONS': one boot, its
# figures appended to $WD/figures
run_case() {
    local label=$1 ram=$2 swopts=$3 qpid
    rm -f "$WD/res.out" "$WD/bsst.qcow2"
    "$QEMU_IMG" create -q -f qcow2 "$WD/bsst.qcow2" 64M
    # shellcheck disable=SC2086
    "$QEMU" -accel kvm -machine pc -m 128 -display none -nodefaults $ram \
        -drive file="$WD/disk.img",format=raw,if=ide \
        -blockdev driver=qcow2,node-name=bsst0,file.driver=file,file.filename="$WD/bsst.qcow2" \
        -object tesseract-swapper,id=swap0,bsst=bsst0,limit=1G$swopts \
        -chardev file,id=res,path="$WD/res.out" \
        -device isa-debugcon,iobase=0x404,chardev=res \
        -qmp unix:"$WD/qmp.sock",server=on,wait=off 2> "$WD/qemu.err" &
    qpid=$!
    QPID=$qpid

    # the boot sector says 'R' once the pattern is in place
    for _ in $(seq 1 150); do
        [ -s "$WD/res.out" ] && break
        kill -0 $qpid 2>/dev/null || { cp "$WD/qemu.err" "$WD/err"; not_ok "$label: QEMU exited"; }
        sleep 0.2
    done
    [ -s "$WD/res.out" ] || not_ok "$label: the boot sector did not start within 30 s"
    "$HERE/qmp.py" "$WD/qmp.sock" --pid $qpid \
        'x-tesseract-swap-out={"id": "swap0", "addr": 131072, "size": 65536}' \
        query-tesseract > "$WD/before.json" 2> "$WD/err" || \
        not_ok "$label: x-tesseract-swap-out failed"
    for _ in $(seq 1 60); do
        [ "$(stat -c %s "$WD/res.out")" -ge 3 ] && break
        sleep 0.5
    done
    "$HERE/qmp.py" "$WD/qmp.sock" --pid $qpid query-tesseract quit \
        > "$WD/after.json" 2> "$WD/err" || not_ok "$label: query-tesseract failed"
    wait $qpid || true

    /usr/bin/python3 - "$WD" "$label" >> "$WD/figures" 2> "$WD/err" <<'PY' || not_ok "$label: $(tail -1 "$WD/err")"
import json, sys
wd, label = sys.argv[1], sys.argv[2]
res = open(wd + "/res.out", "rb").read()
pat = bytes((((i & 255) & (i >> 8)) + 0x11) & 255 for i in range(65536))
want = (sum(pat[:0x8000]) + sum((b + 1) & 255 for b in pat[0x8000:])) & 0xffff
def swapper(f):
    for line in open(wd + "/" + f):
        r = json.loads(line).get("return")
        if isinstance(r, dict) and "swappers" in r:
            return r["swappers"][0]
    raise SystemExit("no query-tesseract result in " + f)
b, a = swapper("before.json"), swapper("after.json")
print("%s: guest sum 0x%s (want 0x%04x); swap-outs %d, swapped %d before "
      "the guest touched them; swap-ins %d, faults %d (p50 %.0f us, max "
      "%.0f us); access scans %d"
      % (label, res[1:3][::-1].hex() if len(res) >= 3 else "none", want,
         b["swap-outs"], b["swapped-pages"], a["swap-ins"],
         a["fault-service"]["count"], a["fault-service"]["p50"],
         a["fault-service"]["max"], a["access-scans"]))
if len(res) < 3:
    raise SystemExit("the boot sector gave no sum within 30 s")
if b["swap-outs"] != 16 or b["swapped-pages"] != 16:
    raise SystemExit("the 16 pages were not swapped out before the guest "
                     "touched them")
if int.from_bytes(res[1:3], "little") != want:
    raise SystemExit("the guest read wrong data back")
if a["swap-ins"] < 16 or a["fault-service"]["count"] < 16:
    raise SystemExit("the pages did not come back through faults")
if a["policy"] == "access" and a["access-scans"] < 2:
    raise SystemExit("policy=access made %d scans" % a["access-scans"])
PY
}

QPID=
trap 'if [ -n "$QPID" ]; then kill $QPID 2>/dev/null || true; fi; [ -n "${KVM_TEST_KEEP:-}" ] || rm -rf "$WD"' EXIT
: > "$WD/figures"
run_case "anonymous RAM, policy=random" "" ""
# policy=access unmaps all RAM every scan (MADV_DONTNEED of the memfd):
# KVM must drop its mappings too, and the swap-out punches holes in it
run_case "memfd RAM, policy=access" \
    "-object memory-backend-memfd,id=mem0,size=128M,share=on -machine memory-backend=mem0" \
    ",policy=access,scan-interval=100"
gt_ok

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# 'make check': Tesseract from a libvirt domain, where no libvirtd can
# run as a host runs it.  The <qemu:commandline> block of
# docs/system/tesseract.rst (its image paths and limit replaced) goes
# into a domain that boots the guest kit under TCG; libvirt's embedded
# QEMU driver (qemu:///embed, no libvirtd) defines and starts it, as
# root, without namespaces or cgroups (so it also runs in a chroot); the
# guest runs diskcheck on the tesseract disk, and query-tesseract is read
# through libvirt (tests/guest/libvirt-run.py).  The whole documented
# flow, under libvirtd with QEMU as libvirt-qemu in libvirt's namespace
# and device cgroup, is tests/guest/libvirtd-test.sh.
#
# Passes if diskcheck verified every block, libvirt kept the passthrough
# in the live domain, and query-tesseract through libvirt shows the disk
# node with the guest's writes and the swapper attached, swapping, and
# within its limit.  Skips (with the reason) when libvirt's QEMU driver
# or its Python binding is not installed, or when not run as root.
#
#   tests/guest/libvirt-test.sh
#
# Environment: TESSERACT_BUILD (the build, default build/), GUEST_KIT (a
# built guest kit, default tests/guest/out, built if missing),
# LIBVIRT_TEST_KEEP=DIR (keep the run's files in DIR).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
NAME="libvirt domain with a tesseract disk and swapper (docs/system/tesseract.rst)"
BUILD=${TESSERACT_BUILD:-$TOP/build}
KIT=${GUEST_KIT:-$HERE/out}
LIMIT_MIB=32

skip() {
    echo "ok - $NAME # SKIP $1"
    exit 0
}

[ "$(id -u)" = 0 ] || skip "needs root (libvirt's privileged QEMU driver)"
ls /usr/lib/*/libvirt/connection-driver/libvirt_driver_qemu.so \
    >/dev/null 2>&1 || \
    skip "libvirt's QEMU driver is not installed (libvirt-daemon-driver-qemu)"
/usr/bin/python3 -c 'import libvirt, libvirt_qemu' 2>/dev/null || \
    skip "libvirt's Python binding is not installed (python3-libvirt)"
# the driver resolves its built-in default user before reading qemu.conf
getent passwd libvirt-qemu >/dev/null || \
    skip "no user libvirt-qemu (libvirt-daemon-system creates it)"

# shellcheck source=tests/guest/test-lib.sh
. "$HERE/test-lib.sh"
gt_workdir "${LIBVIRT_TEST_KEEP:-}"
[ -n "${GUEST_KIT:-}" ] || gt_kit
if [ ! -f "$KIT/vmlinuz" ] || [ ! -f "$KIT/initramfs.cpio.gz" ]; then
    not_ok "no guest kit in $KIT (tests/guest/build-kit.sh $KIT)"
fi
rm -rf "$WD/root" "$WD/img" "$WD/run"
mkdir -p "$WD/root/etc" "$WD/img" "$WD/run"

# the embedded driver's qemu.conf: a test host's settings (QEMU as root,
# no labelling, no cgroups, no private mount namespace: in a chroot, /
# is no mount point to make a slave of; QEMU's output to a file, not
# virtlogd)
cat > "$WD/root/etc/qemu.conf" <<'EOF'
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
EOF

"$BUILD/qemu-img" create -q -f qcow2 "$WD/img/vm1-bsst.qcow2" 256M
"$BUILD/qemu-img" create -q -f qcow2 "$WD/img/vm1.qcow2" 64M

# the user guide's <qemu:commandline>, with this run's paths and limit
# (the rST code block's indentation taken off)
block=$(sed -n '/^ *<qemu:commandline>/,/^ *<\/qemu:commandline>/p' \
            "$TOP/docs/system/tesseract.rst" | sed 's/^   //')
for word in /var/lib/libvirt/images/ limit=1536M tesseract-swapper \
            driver=tesseract; do
    case "$block" in
    *"$word"*) ;;
    *) not_ok "docs/system/tesseract.rst's <qemu:commandline> lacks '$word'" ;;
    esac
done
block=${block//\/var\/lib\/libvirt\/images\//$WD/img/}
block=${block//limit=1536M/limit=${LIMIT_MIB}M}

cat > "$WD/domain.xml" <<EOF
<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>tesseract-test</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$KIT/vmlinuz</kernel>
    <initrd>$KIT/initramfs.cpio.gz</initrd>
    <cmdline>console=ttyS0 panic=-1 quiet tsc=reliable workload=diskcheck diskcheck_mib=16 idle_after=60</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <emulator>$BUILD/qemu-system-x86_64</emulator>
    <serial type='file'><source path='$WD/run/console.log'/></serial>
    <memballoon model='none'/>
  </devices>
$block
</domain>
EOF

/usr/bin/python3 "$HERE/libvirt-run.py" "$WD/root" "$WD/domain.xml" \
    "$WD/run/console.log" "guest: idle for" "$WD/run/stats.json" 240 \
    > "$WD/err" 2>&1 || not_ok "$(tail -1 "$WD/err")"

tr -d '\r' < "$WD/run/console.log" > "$WD/console.txt"
line=$(grep -m1 '^diskcheck: wrote' "$WD/console.txt" || true)
case "$line" in
"diskcheck: wrote 16 MiB, read 16 MiB, 0 corrupt blocks,"*) ;;
*) not_ok "unexpected diskcheck result: ${line:-none}" ;;
esac
grep -q 'tesseract-swapper,id=swap0' "$WD/run/domain-live.xml" || \
    not_ok "the live domain lost the <qemu:commandline> passthrough"

/usr/bin/python3 - "$WD/run/stats.json" "$line" "$LIMIT_MIB" "$HERE" \
    > "$WD/figures" 2> "$WD/err" <<'EOF' || not_ok "$(tail -1 "$WD/err")"
import json
import sys

sys.path.insert(0, sys.argv[4])
from libvirt_checks import check_disk_and_swapper  # noqa: E402

print(sys.argv[2])
dk, sw, errs = check_disk_and_swapper(json.load(open(sys.argv[1])),
                                      int(sys.argv[3]) * 256,
                                      "through libvirt")
sys.exit("; ".join(errs) or None)
EOF

gt_ok

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# 'make check': the libvirt flow of docs/system/tesseract.rst ("Using it
# from libvirt") under a real libvirtd, as a Debian host runs it: QEMU as
# libvirt-qemu, in libvirt's private mount namespace and device cgroup,
# with libvirt's DAC security driver.  What the test runs comes from the
# document's own blocks (tests/guest/doc-block.py):
#
#   1. a libvirtd and a virtlogd of its own (Debian's libvirt-daemon-system
#      binaries), in a mount namespace where the test's directories stand
#      in for /etc/libvirt, /var/lib/libvirt, /run/libvirt,
#      /var/log/libvirt and /var/cache/libvirt: a libvirtd of the host
#      (systemd's, on a CI machine) is not touched, and the document's
#      paths (/var/lib/libvirt/images/...) are used as written;
#   2. the images, created and chowned by the document's commands (in
#      that namespace, smaller);
#   3. /dev/userfaultfd given to QEMU's group by the document's udev rule
#      (udevadm where udevd runs, else the document's chgrp/chmod);
#   4. the domain, defined from the document's XML with only these
#      changes: type='qemu' for 'kvm' (KVM cannot boot guests on every
#      test host; TCG can), 256 MiB for 2 GiB, a 32M limit for 1536M, this
#      build's QEMU for /usr/local/bin's, the test guest's kernel and
#      initramfs added to <os> (diskcheck on the tesseract disk), and the
#      serial port logged to a file;
#   5. 'virsh start' with libvirt's default qemu.conf (the packaged one
#      only has comments): it must fail with the swapper's "no permission
#      to use userfaultfd", which is why the document changes qemu.conf;
#   6. the document's cgroup_device_acl as the whole qemu.conf, libvirtd
#      restarted, and the document's virsh commands in order: start,
#      query-tesseract, 'info tesseract', tesseract-defrag, qom-set of the
#      limit, qemu-monitor-event (with --timeout for --loop), destroy,
#      undefine;
#   7. the variants the document describes, each started and removed:
#      without <acpi/> (refused: -no-acpi), <locked/> (refused by the
#      swapper; where root may not raise RLIMIT_MEMLOCK, libvirt cannot
#      try and the test says so), and policy=access with the document's
#      memfd and balloon (runs).
#
# Passes if every command succeeds and: QEMU ran as libvirt-qemu in a
# mount namespace of its own whose /dev is libvirt's tmpfs with
# /dev/userfaultfd as the rule made it, in a device cgroup that refuses a
# device off the list (/dev/kmsg) and allows /dev/userfaultfd; the guest's
# diskcheck verified every block; query-tesseract shows disk0 with the
# guest's writes and swap0 attached, swapping and within its limit (then
# at the limit qom-set gave); 'info tesseract' shows both; a defrag job
# runs to its end; what the document says libvirt does not know holds
# (not in domblklist, tainted custom-argv and custom-monitor); 'virsh
# save' and 'virsh restore' bring the domain back running (the guest's
# diskcheck goes on across them); and the variants end as the
# document says.  Afterwards no domain, daemon, rule, device mode or
# cgroup of the test is left.
#
# Skips (with the reason) when not root, without libvirt's daemon, client
# or the user libvirt-qemu, where / is not a mount point (a chroot: libvirt
# cannot give QEMU a mount namespace), without /dev/userfaultfd or a
# device cgroup (cgroup v1's devices or cgroup v2), where libvirt would
# use AppArmor or SELinux, or with vm.unprivileged_userfaultfd=1 (QEMU
# would not need the device).  tests/guest/libvirt-test.sh still runs
# the domain's <qemu:commandline> where this test cannot (a chroot).
#
#   tests/guest/libvirtd-test.sh
#
# Environment: TESSERACT_BUILD (the build, default build/), GUEST_KIT (a
# built guest kit, default tests/guest/out, built if missing),
# LIBVIRTD_TEST_KEEP=DIR (keep the run's files in DIR).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
NAME="documented libvirt flow under libvirtd (docs/system/tesseract.rst)"
BUILD=${TESSERACT_BUILD:-$TOP/build}
KIT=${GUEST_KIT:-$HERE/out}
DOC=$TOP/docs/system/tesseract.rst
SECTION="Using it from libvirt"
LIMIT_MIB=32
MEM_MIB=256
UFFD=/dev/userfaultfd

skip() {
    echo "ok - $NAME # SKIP $1"
    exit 0
}

[ "$(id -u)" = 0 ] || skip "needs root (a privileged libvirtd)"
for b in libvirtd virtlogd; do
    [ -x "/usr/sbin/$b" ] || \
        skip "no /usr/sbin/$b (Debian's libvirt-daemon-system installs it)"
done
command -v virsh > /dev/null || skip "no virsh (libvirt-clients)"
getent passwd libvirt-qemu > /dev/null || \
    skip "no user libvirt-qemu (libvirt-daemon-system creates it)"
for d in /etc/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt; do
    [ -d "$d" ] || skip "no $d (libvirt-daemon-system creates it)"
done
# libvirt makes / a slave mount in QEMU's namespace: / must be a mount
# (in a chroot it is not)
awk '$5 == "/" { found = 1 } END { exit !found }' /proc/self/mountinfo || \
    skip "/ is not a mount point (a chroot?): libvirt cannot give QEMU its mount namespace"
unshare --mount true 2> /dev/null || skip "cannot create a mount namespace here"
[ -c "$UFFD" ] || skip "no $UFFD (Linux 6.1 or later)"
[ "$(cat /proc/sys/vm/unprivileged_userfaultfd 2>/dev/null || echo 0)" = 0 ] || \
    skip "vm.unprivileged_userfaultfd=1: QEMU would not need $UFFD, which the documented setup is about"
if ! grep -qE '^[^ ]+ [^ ]+ cgroup2 ' /proc/mounts && \
   ! grep -qE '^[^ ]+ [^ ]+ cgroup [^ ]*\bdevices\b' /proc/mounts; then
    skip "no device cgroup (neither cgroup v1's devices controller nor cgroup v2 is mounted)"
fi
if [ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" = Y ] || \
   [ "$(cat /sys/fs/selinux/enforce 2>/dev/null)" = 1 ]; then
    skip "AppArmor or SELinux is enabled: libvirt would confine QEMU with it, which the document does not cover"
fi
if [ ! -x "$BUILD/qemu-system-x86_64" ] || [ ! -x "$BUILD/qemu-img" ]; then
    skip "no $BUILD/qemu-system-x86_64 or qemu-img: run make first"
fi

# shellcheck source=tests/guest/test-lib.sh
. "$HERE/test-lib.sh"
gt_workdir "${LIBVIRTD_TEST_KEEP:-}"
# gt_workdir's trap removes $WD; cleanup below does that after the rest
trap - EXIT
if [ -z "${GUEST_KIT:-}" ]; then
    gt_kit
fi
if [ ! -f "$KIT/vmlinuz" ] || [ ! -f "$KIT/initramfs.cpio.gz" ]; then
    not_ok "no guest kit in $KIT (tests/guest/build-kit.sh $KIT)"
fi

T0=$(date +%s)
NS=$WD/ns
URI="qemu:///system?socket=$NS/run/libvirt-sock"
LV_PID='' VL_PID='' RUN_CREATED='' UDEV_RULE=''
UFFD_WAS=$(stat -c '%u:%g %a' "$UFFD")
CG_BEFORE=$(find /sys/fs/cgroup -maxdepth 4 -type d -name machine 2>/dev/null || true)

# Leave the host as it was: the domain, the daemons, a QEMU that libvirt
# could not stop, the rule, the device's owner and mode, the cgroups
# libvirt made for the test's domains, /run/libvirt if the test made it.
cleanup() {
    local st=$? d pid
    set +e
    if [ -n "$LV_PID" ] && kill -0 "$LV_PID" 2> /dev/null; then
        timeout 30 virsh -q -c "$URI" destroy vm1 > /dev/null 2>&1
        timeout 30 virsh -q -c "$URI" undefine vm1 > /dev/null 2>&1
    fi
    stop_daemon LV_PID
    stop_daemon VL_PID
    for pid in "$NS"/run/qemu/*.pid; do
        [ -f "$pid" ] || continue
        pid=$(cat "$pid")
        case "$(cat "/proc/$pid/comm" 2> /dev/null)" in
        qemu-system-*) kill -9 "$pid" 2> /dev/null ;;
        esac
    done
    if [ -n "$UDEV_RULE" ]; then
        rm -f "$UDEV_RULE"
        udevadm control --reload
    fi
    chown "${UFFD_WAS% *}" "$UFFD"
    chmod "${UFFD_WAS#* }" "$UFFD"
    find /sys/fs/cgroup -maxdepth 4 -type d -name machine 2> /dev/null |
    while read -r d; do
        grep -qxF "$d" <<< "$CG_BEFORE" && continue
        find "$d" -depth -type d -exec rmdir {} \; 2> /dev/null
    done
    [ -z "$RUN_CREATED" ] || rmdir /run/libvirt 2> /dev/null
    [ -n "${LIBVIRTD_TEST_KEEP:-}" ] || rm -rf "$WD"
    exit "$st"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_daemon() {  # VAR: SIGTERM to the daemon whose pid VAR holds; wait
    local pid=${!1} i
    [ -n "$pid" ] || return 0
    kill "$pid" 2> /dev/null || true
    for i in $(seq 100); do
        kill -0 "$pid" 2> /dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2> /dev/null || true
    wait "$pid" 2> /dev/null || true
    eval "$1=''"
}

# --- the doc's blocks ---------------------------------------------------
block() {  # VAR LANG KEY: the block into VAR
    local _text
    _text=$(/usr/bin/python3 "$HERE/doc-block.py" "$DOC" "$SECTION" "$2" "$3" \
            2> "$WD/err") || not_ok "$(cat "$WD/err")"
    printf -v "$1" '%s' "$_text"
}
block XML xml "<domain"
block RULE text /etc/udev/rules.d/
block UDEV_CMDS shell udevadm
block QEMU_CONF text /etc/libvirt/qemu.conf
block IMG_CMDS shell "qemu-img create"
block VIRSH_CMDS shell "virsh define"
block MEMFD xml "<memoryBacking>"
block BALLOON xml "<memballoon"

replace() {  # VAR OLD NEW: in $VAR, OLD must be there
    local _text=${!1}
    case "$_text" in
    *"$2"*) ;;
    *) not_ok "the document's block no longer holds '$2'" ;;
    esac
    printf -v "$1" '%s' "${_text//"$2"/"$3"}"
}

# --- the daemons --------------------------------------------------------
# The directories stand in for the host's, with the packaged owners and
# modes where libvirt-qemu must find its way (Debian's postinst: images/
# and boot/ root 0711, qemu/ libvirt-qemu 0750).
mkdir -p "$NS"/{etc,lib,run,log/qemu,cache} "$WD/run" "$WD/bin"
chmod 0755 "$NS/lib" "$NS/log" "$NS/run"
chmod 0711 "$NS/cache"
install -d -m 0711 "$NS/lib/images" "$NS/lib/boot"
install -d -m 0750 -o libvirt-qemu -g libvirt-qemu "$NS/lib/qemu"
# the packaged qemu.conf is all comments: libvirt's defaults
: > "$NS/etc/qemu.conf"
chmod 0600 "$NS/etc/qemu.conf"
ln -s "$BUILD/qemu-img" "$WD/bin/qemu-img"
ln -s "$NS/log/qemu/vm1-console.log" "$WD/run/console.log"
cp "$KIT/vmlinuz" "$KIT/initramfs.cpio.gz" "$NS/lib/boot/"
if [ ! -d /run/libvirt ]; then
    mkdir /run/libvirt
    RUN_CREATED=1
fi

# ns_daemon COMMAND... &: the daemon in a new mount namespace with the
# test's directories; exec all the way, so that $! is the daemon
ns_daemon() {
    # shellcheck disable=SC2016  # $1 and $@ are the inner shell's
    exec unshare --mount --propagation private -- /bin/sh -ec '
        ns=$1; shift
        mount --bind "$ns/etc" /etc/libvirt
        mount --bind "$ns/lib" /var/lib/libvirt
        mount --bind "$ns/run" /run/libvirt
        mount --bind "$ns/log" /var/log/libvirt
        mount --bind "$ns/cache" /var/cache/libvirt
        exec "$@"' sh "$NS" "$@"
}

start_libvirtd() {
    local i
    ns_daemon /usr/sbin/libvirtd --pid-file="$WD/libvirtd.pid" \
        >> "$WD/libvirtd.log" 2>&1 &
    LV_PID=$!
    for i in $(seq 300); do
        kill -0 "$LV_PID" 2> /dev/null || {
            tail -5 "$WD/libvirtd.log" > "$WD/err"
            not_ok "libvirtd exited at start"
        }
        if virsh -q -c "$URI" uri > /dev/null 2>&1; then
            [ "$(cat "/proc/$LV_PID/comm")" = libvirtd ] || \
                not_ok "process $LV_PID is not libvirtd"
            return 0
        fi
        sleep 0.1
    done
    not_ok "libvirtd does not answer on $NS/run/libvirt-sock after 30 s"
}

# libvirtd does not start virtlogd for a privileged daemon (systemd's
# socket activation does on a host); QEMU's output goes through it
# (stdio_handler's default, "logd")
ns_daemon /usr/sbin/virtlogd --pid-file="$WD/virtlogd.pid" \
    > "$WD/virtlogd.log" 2>&1 &
VL_PID=$!
for t in $(seq 300); do
    [ -S "$NS/run/virtlogd-sock" ] && break
    kill -0 "$VL_PID" 2> /dev/null || not_ok "virtlogd exited at start: $(tail -1 "$WD/virtlogd.log")"
    [ "$t" -lt 300 ] || not_ok "virtlogd made no socket in 30 s"
    sleep 0.1
done
start_libvirtd

# --- the host: images, then /dev/userfaultfd ----------------------------
# (in virtlogd's namespace, where /var/lib/libvirt is the test's)
if [ "$(cat "/proc/$VL_PID/comm" 2> /dev/null)" != virtlogd ] ||
   [ "$(readlink "/proc/$VL_PID/ns/mnt")" = "$(readlink /proc/self/ns/mnt)" ]; then
    not_ok "virtlogd (pid $VL_PID) is not running in a namespace of its own"
fi
replace IMG_CMDS " 4G" " 256M"
replace IMG_CMDS " 20G" " 64M"
nsenter --mount="/proc/$VL_PID/ns/mnt" -- \
    env PATH="$WD/bin:$PATH" /bin/bash -euo pipefail -c "$IMG_CMDS" \
    > "$WD/err" 2>&1 || not_ok "the document's image commands failed"
[ "$(stat -c %U "$NS/lib/images/vm1.qcow2")" = libvirt-qemu ] || \
    not_ok "the image commands did not give vm1.qcow2 to libvirt-qemu"

# the rule: KERNEL=="userfaultfd", GROUP="G", MODE="M"
re='^KERNEL=="userfaultfd", GROUP="([a-z_-]+)", MODE="(0[0-7]{3})"$'
[[ $RULE =~ $re ]] || not_ok "unexpected udev rule in the document: $RULE"
UGROUP=${BASH_REMATCH[1]} UMODE=${BASH_REMATCH[2]}
if command -v udevadm > /dev/null && udevadm control --ping 2> /dev/null; then
    # a runtime rule (/run is volatile), the document's commands
    mkdir -p /run/udev/rules.d
    UDEV_RULE=/run/udev/rules.d/99-tesseract-test-userfaultfd.rules
    printf '%s\n' "$RULE" > "$UDEV_RULE"
    /bin/bash -euo pipefail -c "$UDEV_CMDS" > "$WD/err" 2>&1 || \
        not_ok "the document's udevadm commands failed"
    HOW="udev rule applied by udevadm"
else
    chgrp "$UGROUP" "$UFFD"
    chmod "$UMODE" "$UFFD"
    HOW="no udevd here: the rule's GROUP and MODE applied by chgrp/chmod"
fi
[ "$(stat -c '%G %a' "$UFFD")" = "$UGROUP ${UMODE#0}" ] || \
    not_ok "$UFFD is $(stat -c '%G %a' "$UFFD") after the rule, not $UGROUP $UMODE"
echo "$UFFD: group $UGROUP, mode $UMODE ($HOW)" >> "$WD/figures"

# --- the domain -----------------------------------------------------------
replace XML "<domain type='kvm'" "<domain type='qemu'"
replace XML "<memory unit='GiB'>2</memory>" "<memory unit='MiB'>$MEM_MIB</memory>"
replace XML "limit=1536M" "limit=${LIMIT_MIB}M"
replace XML "<emulator>/usr/local/bin/qemu-system-x86_64</emulator>" \
    "<emulator>$BUILD/qemu-system-x86_64</emulator>"
replace XML "<boot dev='hd'/>" "<boot dev='hd'/>
    <kernel>/var/lib/libvirt/boot/vmlinuz</kernel>
    <initrd>/var/lib/libvirt/boot/initramfs.cpio.gz</initrd>
    <cmdline>console=ttyS0 panic=-1 quiet tsc=reliable workload=diskcheck diskcheck_mib=16 idle_after=600</cmdline>"
replace XML "<serial type='pty'/>" \
    "<serial type='pty'><log file='/var/log/libvirt/qemu/vm1-console.log' append='on'/></serial>"
printf '%s\n' "$XML" > "$WD/vm1.xml"

# the document's virsh commands, one per line, in $WD (where vm1.xml is)
mapfile -t CMDS <<< "$VIRSH_CMDS"
N=0
run_virsh() {  # LINE: run it; its output in $WD/out.N, N its number
    local line=$1
    N=$((N + 1))
    case "$line" in
    "virsh "*) ;;
    *) not_ok "not a virsh command in the document's block: $line" ;;
    esac
    # --loop waits for events until interrupted: a few seconds will do
    case "$line" in *" --loop"*) line="$line --timeout 3" ;; esac
    (cd "$WD" && LIBVIRT_DEFAULT_URI=$URI timeout 120 /bin/bash -c "$line") \
        > "$WD/out.$N" 2> "$WD/err.$N"
}
test_virsh() {  # ARGS...: the test's own virsh commands
    LIBVIRT_DEFAULT_URI=$URI timeout 60 virsh "$@"
}

i=0
while [ "$i" -lt "${#CMDS[@]}" ] && [[ ${CMDS[$i]} != "virsh start "* ]]; do
    run_virsh "${CMDS[$i]}" || not_ok "'${CMDS[$i]}': $(cat "$WD/err.$N")"
    i=$((i + 1))
done
[ "$i" -lt "${#CMDS[@]}" ] || not_ok "no 'virsh start' in the document's block"
START=${CMDS[$i]}

# libvirt's defaults: no /dev/userfaultfd in QEMU's /dev and cgroup
if run_virsh "$START"; then
    not_ok "'$START' worked without the document's cgroup_device_acl: libvirt's default list has changed"
fi
grep -q "tesseract-swapper: no permission to use userfaultfd" "$WD/err.$N" || \
    not_ok "'$START' with libvirt's default qemu.conf failed, but not for userfaultfd: $(cat "$WD/err.$N")"
echo "with libvirt's default qemu.conf, '$START' is refused: $(grep -o 'tesseract-swapper: no permission to use userfaultfd' "$WD/err.$N")" >> "$WD/figures"

# the document's qemu.conf, and a restart
printf '%s\n' "$QEMU_CONF" > "$NS/etc/qemu.conf"
stop_daemon LV_PID
start_libvirtd

# QEMU as libvirt runs it: its user, its own mount namespace with
# libvirt's /dev, and the device cgroup (probed by a process that joins
# QEMU's cgroup: a device off the list is refused, /dev/userfaultfd not)
qemu_checks() {
    local pid fs
    pid=$(cat "$NS/run/qemu/vm1.pid" 2> /dev/null) || not_ok "libvirt wrote no QEMU pid file"
    [ "$(awk '/^Uid:/ {print $3}' "/proc/$pid/status")" = "$(id -u libvirt-qemu)" ] || \
        not_ok "QEMU does not run as libvirt-qemu ($(grep '^Uid:' "/proc/$pid/status"))"
    [ "$(readlink "/proc/$pid/ns/mnt")" != "$(readlink "/proc/$LV_PID/ns/mnt")" ] || \
        not_ok "QEMU runs in libvirtd's mount namespace: libvirt's namespaces are off"
    fs=$(awk '$5 == "/dev" { for (i = 7; $i != "-"; i++); print $(i + 1) }' \
         "/proc/$pid/mountinfo" | tail -1)
    [ "$fs" = tmpfs ] || not_ok "QEMU's /dev is '$fs', not libvirt's tmpfs"
    [ "$(stat -c '%G %a' "/proc/$pid/root$UFFD" 2> /dev/null)" = "$UGROUP ${UMODE#0}" ] || \
        not_ok "QEMU's $UFFD: $(ls -l "/proc/$pid/root$UFFD" 2>&1)"
    /usr/bin/python3 - "$pid" "$UFFD" > "$WD/cgroup" 2> "$WD/err" <<'PY' || \
        not_ok "QEMU's device cgroup: $(tail -1 "$WD/err")"
import os
import sys

pid, uffd = sys.argv[1], sys.argv[2]
mounts = [ln.split() for ln in open("/proc/mounts")]
path = None
for ln in open("/proc/%s/cgroup" % pid):
    _, ctrl, rel = ln.rstrip("\n").split(":", 2)
    rel = rel.strip("/")
    if "devices" in ctrl.split(",") and rel:
        mp = [m[1] for m in mounts if m[2] == "cgroup" and
              "devices" in m[3].split(",")]
        path, kind = os.path.join(mp[0], rel), "cgroup v1 devices"
        break
    if ctrl == "" and rel:
        mp = [m[1] for m in mounts if m[2] == "cgroup2"]
        path, kind = os.path.join(mp[0], rel), "cgroup v2 (BPF)"
if not path:
    sys.exit("QEMU is in no device cgroup of its own")
with open(os.path.join(path, "cgroup.procs"), "w") as f:
    f.write(str(os.getpid()))
try:
    os.close(os.open("/dev/kmsg", os.O_RDONLY))
    sys.exit("%s lets a process open /dev/kmsg" % path)
except PermissionError:
    pass
os.close(os.open(uffd, os.O_RDWR))
print("%s, %s: /dev/kmsg refused, %s opened" % (kind, path, uffd))
PY
    echo "QEMU (pid $pid) as libvirt-qemu, in a mount namespace of its own, /dev tmpfs with $UFFD $(stat -c '%U:%G %a' "/proc/$pid/root$UFFD")" >> "$WD/figures"
    echo "device cgroup: $(cat "$WD/cgroup")" >> "$WD/figures"
}

qmp() {  # JSON: the test's own QMP command through libvirt
    test_virsh qemu-monitor-command vm1 "$1"
}

wait_jobs() {  # PY-EXPR over the list J of query-jobs: until it is true
    local t
    for t in $(seq 120); do
        qmp '{"execute": "query-jobs"}' > "$WD/jobs" 2> "$WD/err" || \
            not_ok "query-jobs through libvirt failed"
        /usr/bin/python3 -c 'import json, sys
J = json.load(open(sys.argv[1]))["return"]
sys.exit(0 if eval(sys.argv[2]) else 1)' "$WD/jobs" "$1" && return 0
        sleep 0.5
    done
    not_ok "query-jobs: no '$1' after 60 s: $(cat "$WD/jobs")"
}

T1=$(date +%s)
for ((; i < ${#CMDS[@]}; i++)); do
    line=${CMDS[$i]}
    case "$line" in
    "virsh destroy "*)
        # before the document stops it: what it says libvirt does not know
        test_virsh domblklist vm1 > "$WD/domblklist" 2>&1 || \
            not_ok "virsh domblklist failed: $(cat "$WD/domblklist")"
        ! grep -qE 'vm1(-bsst)?\.qcow2' "$WD/domblklist" || \
            not_ok "virsh domblklist lists the passthrough disk"
        # (the log since the last start: the refused one is there too)
        taints=$(awk '/starting up libvirt/ { t = "" } /is tainted:/ { t = t " " $NF }
                      END { print t }' "$NS/log/qemu/vm1.log")
        [[ " $taints " == *" custom-argv "* && " $taints " == *" custom-monitor "* ]] || \
            not_ok "libvirt's taints of the domain: '$taints', not custom-argv and custom-monitor"
        # save and restore: the swapper's pages go whole into the file,
        # the tesseract node's indirections stay in the BSST, which the
        # restored QEMU reads again at its switchover
        test_virsh save vm1 /var/lib/libvirt/qemu/vm1.save > "$WD/save" 2>&1 || \
            not_ok "virsh save of a domain with a tesseract disk and a swapper failed: $(cat "$WD/save")"
        test_virsh restore /var/lib/libvirt/qemu/vm1.save > "$WD/restore" 2>&1 || \
            not_ok "virsh restore of the saved domain failed: $(cat "$WD/restore")"
        rm -f /var/lib/libvirt/qemu/vm1.save
        test_virsh domstate vm1 > "$WD/domstate" 2>&1
        grep -q running "$WD/domstate" || \
            not_ok "the restored domain is not running: $(cat "$WD/domstate")"
        echo "not in domblklist, tainted:$taints, virsh save and restore" >> "$WD/figures"
        ;;
    esac
    if ! run_virsh "$line"; then
        # qemu-monitor-event ends with status 1 when its timeout expires
        if [[ $line != *" --loop"* ]] || grep -q . "$WD/err.$N"; then
            not_ok "'$line': $(cat "$WD/err.$N")"
        fi
    fi
    case "$line" in
    "virsh start "*)
        START_N=$N
        T_START=$(date +%s)
        # the guest's workload runs to its end before the monitor commands
        for ((t = 0; ; t++)); do
            text=$(tr -d '\r' < "$NS/log/qemu/vm1-console.log" 2> /dev/null || true)
            case "$text" in
            *"guest: idle for"*) break ;;
            *"GUEST-RESULT: fail"*) not_ok "the guest failed" ;;
            esac
            [ "$(test_virsh domstate vm1 2> /dev/null | head -1)" = running ] || \
                not_ok "vm1 stopped before its workload ended"
            [ "$t" -lt 480 ] || not_ok "no end of the guest's workload after 240 s"
            sleep 0.5
        done
        T_GUEST=$(date +%s)
        qemu_checks
        ;;
    *"query-tesseract"*) QT_N=$N ;;
    *"info tesseract"*) INFO_N=$N ;;
    *"tesseract-defrag"*)
        DEFRAG_N=$N
        # the document's job ends; then one of the test's that stays
        # until dismissed, to see how it ended
        wait_jobs 'not [j for j in J if j["id"] == "disk0"]'
        qmp '{"execute": "tesseract-defrag", "arguments": {"job-id": "t-defrag", "node-name": "disk0", "auto-dismiss": false}}' \
            > "$WD/err" 2>&1 || not_ok "the test's tesseract-defrag failed"
        wait_jobs '[j for j in J if j["id"] == "t-defrag" and j["status"] == "concluded"]'
        ! grep -q '"error"' "$WD/jobs" || not_ok "the defrag job failed: $(cat "$WD/jobs")"
        qmp '{"execute": "job-dismiss", "arguments": {"id": "t-defrag"}}' \
            > "$WD/err" 2>&1 || not_ok "job-dismiss failed"
        echo "tesseract-defrag jobs through libvirt: the document's ended, the test's concluded without error" >> "$WD/figures"
        ;;
    *'"qom-set"'*)
        QOM_N=$N QOM_LINE=$line
        qmp '{"execute": "query-tesseract"}' > "$WD/after-qom" 2> "$WD/err" || \
            not_ok "query-tesseract after qom-set failed"
        ;;
    esac
done
T2=$(date +%s)
for v in START_N QT_N INFO_N DEFRAG_N QOM_N; do
    [ -n "${!v:-}" ] || not_ok "the document's virsh block lacks a command the test checks (${v%_N})"
done
grep -qx "Domain 'vm1' started" "$WD/out.$START_N" || \
    not_ok "'virsh start vm1' said: $(cat "$WD/out.$START_N")"
grep -qx "Domain 'vm1' destroyed" "$WD"/out.* || not_ok "the document's block did not destroy vm1"
grep -qx "Domain 'vm1' has been undefined" "$WD"/out.* || not_ok "the document's block did not undefine vm1"
[ -z "$(test_virsh list --all --name 2> /dev/null | tr -d '[:space:]')" ] || \
    not_ok "a domain is left after the document's commands"

# the guest's console of the document's flow (the variants rewrite it)
tr -d '\r' < "$NS/log/qemu/vm1-console.log" > "$WD/console.txt"

# --- the variants the document describes ----------------------------------
# vm1 again, from the same XML: without ACPI and locked it must not
# start, with the document's memfd and balloon and policy=access it must
# variant WHAT XML [MESSAGE [HOST-LIMIT WHY]]: define, start; it must be
# refused with MESSAGE (or, where this host cannot try, with HOST-LIMIT:
# WHY is said) or run
variant() {
    local what=$1 msg=${3:-} limit=${4:-}
    printf '%s\n' "$2" > "$WD/variant.xml"
    test_virsh define "$WD/variant.xml" > "$WD/err" 2>&1 || \
        not_ok "$what: virsh define failed"
    if [ -n "$msg" ]; then
        if test_virsh start vm1 > "$WD/err" 2>&1; then
            not_ok "$what: the domain started"
        fi
        if grep -qF -- "$msg" "$WD/err"; then
            echo "$what: refused ($msg)" >> "$WD/figures"
        elif [ -n "$limit" ] && grep -qF -- "$limit" "$WD/err"; then
            echo "$what: not tried here: $5" >> "$WD/figures"
        else
            not_ok "$what: not refused with '$msg'"
        fi
    else
        test_virsh start vm1 > "$WD/err" 2>&1 || not_ok "$what: virsh start failed"
    fi
}
variant_end() {
    if [ "$(test_virsh domstate vm1 2> /dev/null | head -1)" = running ]; then
        test_virsh destroy vm1 > "$WD/err" 2>&1 || not_ok "virsh destroy failed"
    fi
    test_virsh undefine vm1 > "$WD/err" 2>&1 || not_ok "virsh undefine failed"
}
T_VAR=$(date +%s)
VX=$XML
replace VX "<features><acpi/></features>" ""
variant "without <acpi/>" "$VX" "-no-acpi: invalid option"
variant_end
VX=$XML
replace VX "<features>" "<memoryBacking><locked/></memoryBacking>
  <features>"
# (libvirt raises QEMU's RLIMIT_MEMLOCK first, which needs
# CAP_SYS_RESOURCE: a sandbox's root may lack it)
variant "<locked/>" "$VX" "tesseract-swapper: guest memory is locked" \
    "cannot limit locked memory" \
    "libvirt cannot raise RLIMIT_MEMLOCK (root without CAP_SYS_RESOURCE)"
variant_end
VX=$XML
replace VX "limit=${LIMIT_MIB}M" "limit=${LIMIT_MIB}M,policy=access"
replace VX "<features>" "$MEMFD
  <features>"
replace VX "</devices>" "  $BALLOON
  </devices>"
variant "policy=access with the document's memfd and balloon" "$VX"
for t in $(seq 60); do
    qmp '{"execute": "query-tesseract"}' > "$WD/access" 2> "$WD/err" || \
        not_ok "policy=access: query-tesseract failed"
    /usr/bin/python3 -c 'import json, sys
sw = json.load(open(sys.argv[1]))["return"]["swappers"][0]
sys.exit(0 if sw["attached"] and sw["policy"] == "access" else 1)' "$WD/access" && break
    [ "$t" -lt 60 ] || not_ok "policy=access: swap0 not attached after 30 s: $(cat "$WD/access")"
    sleep 0.5
done
fpr=$(qmp '{"execute": "qom-get", "arguments": {"path": "/machine/peripheral/balloon0/virtio-backend", "property": "free-page-reporting"}}' 2> "$WD/err") || \
    not_ok "qom-get of the balloon's free-page-reporting failed"
[[ $fpr == *'"return":true'* ]] || not_ok "the balloon's free-page-reporting: $fpr"
variant_end
echo "policy=access with the document's memfd: swap0 attached; its balloon has free-page-reporting on" >> "$WD/figures"
T_VAR_END=$(date +%s)

# --- the results ------------------------------------------------------------
dc=$(grep -m1 '^diskcheck: wrote' "$WD/console.txt" || true)
case "$dc" in
"diskcheck: wrote 16 MiB, read 16 MiB, 0 corrupt blocks,"*) ;;
*) not_ok "unexpected diskcheck result: ${dc:-none}" ;;
esac
echo "$dc" >> "$WD/figures"
if ! grep -q "^swapper swap0 (bsst bsst0, limit $LIMIT_MIB MiB" "$WD/out.$INFO_N" ||
   ! grep -q "^disk disk0 (" "$WD/out.$INFO_N"; then
    not_ok "'info tesseract' through virsh lacks swap0 or disk0: $(head -3 "$WD/out.$INFO_N")"
fi

GUEST_TESTS=$HERE /usr/bin/python3 - "$WD" "$QT_N" "$DEFRAG_N" "$QOM_N" "$LIMIT_MIB" "$QOM_LINE" \
    >> "$WD/figures" 2> "$WD/err" <<'PY' || not_ok "$(tail -1 "$WD/err")"
import json
import os
import sys

sys.path.insert(0, os.environ["GUEST_TESTS"])
from libvirt_checks import check_disk_and_swapper  # noqa: E402

wd, qt, defrag, qom, limit_mib, qom_line = sys.argv[1:7]


def reply(n, what):
    text = open(os.path.join(wd, "out." + n)).read()
    try:
        r = json.loads(text)
    except ValueError:
        sys.exit("%s through virsh: not JSON: %s" % (what, text[:200]))
    if "return" not in r:
        sys.exit("%s through virsh: %s" % (what, text[:200]))
    return r["return"]


st = reply(qt, "query-tesseract")
for n, what in ((defrag, "tesseract-defrag"), (qom, "qom-set")):
    if reply(n, what) != {}:
        sys.exit("%s through virsh returned %s" % (what, reply(n, what)))
limit = int(limit_mib) * 256
dk, sw, errs = check_disk_and_swapper(st, limit, "virsh query-tesseract")
# the document's qom-set; a limit above the RAM is taken as the RAM's
# size (no limit)
value = json.loads(qom_line.split(" ", 3)[3].strip("'"))["arguments"]["value"]
after = json.load(open(os.path.join(wd, "after-qom")))["return"]
new = [s["limit"] for s in after["swappers"] if s["id"] == "swap0"]
if new != [min(value, sw["ram-pages"] * 4096)]:
    errs.append("swap0's limit after the document's qom-set of %d: %s"
                % (value, new))
sys.exit("; ".join(errs) or None)
PY

T3=$(date +%s)
echo "seconds: $((T1 - T0)) daemons and host setup (with the refused start), $((T_GUEST - T_START)) boot and diskcheck, $((T2 - T_GUEST)) the document's monitor commands to undefine, $((T_VAR_END - T_VAR)) the variants; $((T3 - T0)) in all" >> "$WD/figures"
gt_ok

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Boot the guest kit under QEMU with its disk behind a tesseract node (or,
# with --plain-disk, without one), run one workload, then read the node's
# statistics over QMP.
#
#   tests/guest/run-guest.sh [options] [-- extra QEMU arguments]
#
#   --qemu PATH         QEMU binary ($QEMU, default build/qemu-system-x86_64)
#   --qemu-img PATH     qemu-img ($QEMU_IMG, default build/qemu-img)
#   --kit DIR           guest kit ($GUEST_KIT, default tests/guest/out; built
#                       with build-kit.sh if it is the default and missing)
#   -m, --memory SIZE   guest RAM ($GUEST_MEM, default 256M)
#   --smp N             vCPUs ($GUEST_SMP, default 1)
#   --accel NAME        tcg or kvm ($GUEST_ACCEL, default tcg)
#   --cpu MODEL         -cpu MODEL ($GUEST_CPU, default: QEMU's default)
#   --machine TYPE      microvm or pc ($GUEST_MACHINE, default microvm)
#   --workload NAME     workload=NAME on the kernel command line
#   --append WORDS      more kernel command line ($GUEST_APPEND), e.g.
#                       "diskcheck_mib=32 diskcheck_seed=7"
#   --disk-size SIZE    guest disk (default 64M); --bsst-size SIZE (256M)
#   --disk-image PATH   use this existing guest disk image (qcow2 or raw)
#                       instead of creating one, e.g. a migration source's,
#                       which its destination opens too (shared storage on
#                       this host: -incoming opens images inactive, so its
#                       lock does not conflict); not with --hdd
#   --bsst-image PATH   use this existing BSST image instead of creating
#                       one: a migration source's, with shared-bsst=on
#                       in its --swapper options (the destination opens
#                       it inactive, like --disk-image); not with --hdd
#   --bsst-nbd SOCKET   the BSST is the NBD export "bsst" on unix socket
#                       SOCKET (e.g. qemu-storage-daemon exporting a qcow2
#                       BSST image), opened raw over NBD; not with --hdd,
#                       --bsst-image or --throttle
#   --plain-disk        no tesseract node: the guest disk's own qcow2 (or
#                       raw) node, disk0, is the virtio device's drive (a
#                       tesseract node blocks migration); with --swapper the
#                       BSST node bsst0 is still there for the swapper (no
#                       BSST at all without it); not with --swap-disk
#   --bsst-format FMT   qcow2 (default) or raw: the BSST image's format
#   --bsst-preallocation MODE
#                       qemu-img's preallocation for the BSST image (off,
#                       metadata, falloc, full); on the hdd spindle it is
#                       always full
#   --tesseract-opts O  appended to the tesseract -blockdev(s), e.g. indirect=off
#   --swap-disk SIZE    a second disk for the guest's own swap: a tesseract
#                       node 'swapdisk' (disk-id=swap, same BSST bsst0, same
#                       --tesseract-opts) on a virtio-blk device with
#                       serial=swap; the guest runs mkswap + swapon on it
#   --swap-image PATH   with --swap-disk: this existing qcow2 image is the
#                       swap disk's, instead of a new one (a migration
#                       source's, which its destination opens too)
#   --swapper OPTS      -object tesseract-swapper,id=swapper0,bsst=bsst0,OPTS
#                       (e.g. "limit=160M,policy=random")
#   --incoming URI      start QEMU with -incoming URI: the destination of a
#                       migration (give it the source's options, and
#                       --disk-image with the source's disk); the guest goes
#                       on here, and the run waits for its result as usual
#   --migrate-to URI    with --migrate-on PATTERN: once the guest console
#   --migrate-on PATTERN
#                       contains PATTERN (a fixed string), migrate to URI
#                       (QMP migrate) and wait until query-migrate says
#                       'completed' (a failed migration fails the run, with
#                       its error-desc); then save query-tesseract's result
#                       (stats.json, --stats) and query-migrate's
#                       (WORKDIR/migrate.json) and quit: the run is done
#                       without a GUEST-RESULT (which the destination
#                       prints).  WORKDIR/stats-premigrate.json gets
#                       query-tesseract's answer just before the migrate
#                       command
#   --migrate-gate FILE with --migrate-on: after PATTERN, also wait until
#                       FILE exists before migrating (another program
#                       decides when, e.g. bench/migrate.sh once the
#                       swapped-out share has settled; it can reach QEMU
#                       meanwhile on a QMP monitor of its own, given after
#                       '--')
#   --hmp-on PATTERN=COMMAND
#                       run the HMP COMMAND once the guest console shows
#                       PATTERN (a fixed string), after the --hmp-on before
#                       it and in what the console printed since (e.g.
#                       "pass 2=savevm s1" then "pass 5=loadvm s1"); one
#                       that prints anything fails the run (QMP's
#                       human-monitor-command: savevm and loadvm print only
#                       errors); WORKDIR/hmp.json: what ran, when
#   --balloon           a virtio-balloon with free page reporting: the guest
#                       gives the host its free memory back (in 2 MiB
#                       blocks, 2 s after they became free)
#   --cache MODE        writeback (default: through the host page cache) or
#                       direct (cache.direct=on: O_DIRECT to the host's disk,
#                       like cache=none) for the plain image files
#   --hdd IOPS,BPS[,buffered]
#                       a hard-disk model: one "spindle", a loop device
#                       (O_DIRECT to a sparse file in the workdir) with an
#                       ext4 file system that holds every image (guest
#                       disks, BSST), which QEMU opens with cache.direct=on
#                       (with 'buffered': through the host page cache, so
#                       only cache misses and writeback are limited); QEMU
#                       runs in a cgroup v1 blkio group that limits the
#                       spindle to IOPS reads + IOPS writes per second and
#                       BPS bytes/s each way, shared by all the images like
#                       one disk's head (needs root, mkfs.ext4 and
#                       /sys/fs/cgroup/blkio); the kernel does the waiting
#   --hdd-layout L      shared (default: the spindle above) or per-image
#                       (each image on its own loop device with its own
#                       IOPS/BPS budget: traffic moved from one image to
#                       another gets a free budget)
#   --hdd-swap SIZE     with the shared layout: a host swap file of SIZE on
#                       the spindle, enabled while QEMU runs (for QEMU in a
#                       memory cgroup: the kernel's host swapping pays the
#                       same disk)
#   --bsst-ssd          with --hdd: the BSST stays off the hard-disk model, a
#                       plain file (--cache) like the guest's in the ssd
#                       runs (the paper's "BSST placed on an SSD")
#   --hdd-extra-dev D   also throttle block device D (MAJ:MIN) in that group
#                       (e.g. a host swap device)
#   --throttle OPTS     put each guest image and the BSST image behind its
#                       own QEMU throttle node, each in a throttle group with
#                       these limits (e.g. "x-iops-total=150,x-bps-total=...").
#                       Beware: with a tesseract-swapper this can deadlock
#                       QEMU under TCG (throttled BSST reads wait for a timer
#                       of the main loop, which waits for the BQL held by a
#                       vCPU that waits for that read); prefer --hdd
#   --bsst-bench N      after QEMU stops, time N 4 KiB reads of the BSST
#                       image (qemu-img bench, queue depth 1, same cache mode
#                       and cgroup as QEMU) into WORKDIR/bsst-bench.txt
#   --cpus LIST         run QEMU (all its threads) on these host CPUs only
#                       (taskset -c LIST, e.g. 0 or 0-1)
#   --wrap 'CMD ARGS'   run QEMU as 'CMD ARGS qemu-system-... ' (the wrapper
#                       must exec QEMU so that its pid stays QEMU's), e.g.
#                       to start it in a memory cgroup
#   --timeout SECS      kill QEMU after SECS ($GUEST_TIMEOUT, default 120)
#   --workdir DIR       keep images, console.log, qemu.log, stats.json,
#                       cmdline there (default: a temporary dir, removed)
#   --stats FILE        also write the query-tesseract result (JSON) to FILE
#                       (the workdir also gets blockstats.json, the result
#                       of query-blockstats, and qemu-proc.txt, QEMU's
#                       /proc/PID/status and /proc/PID/io after the guest
#                       stopped)
#   --series SECS       while the guest runs, ask query-tesseract every SECS
#                       seconds and append each answer, with the workload's
#                       latest score time, to WORKDIR/series.jsonl (one JSON
#                       line per answer; see qmp.py --series)
#   --quiet             do not echo the guest console
#   (GUEST_GDB_ON_HANG=1: if QEMU ignores SIGTERM at the end, save every
#   thread's stack to WORKDIR/hang-backtrace.txt before killing it)
#   --kernel-log        show the kernel's boot messages (no 'quiet')
#   --shell             interactive: workload=shell on this terminal, no QMP
#
# Exit status 0 only if the guest printed "GUEST-RESULT: ok" (with
# --migrate-to: the migration completed) and query-tesseract answered.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)

QEMU=${QEMU:-$TOP/build/qemu-system-x86_64}
QEMU_IMG=${QEMU_IMG:-$TOP/build/qemu-img}
KIT=${GUEST_KIT:-$HERE/out}
MEM=${GUEST_MEM:-256M}
SMP=${GUEST_SMP:-1}
ACCEL=${GUEST_ACCEL:-tcg}
CPU=${GUEST_CPU:-}
MACHINE=${GUEST_MACHINE:-microvm}
APPEND=${GUEST_APPEND:-}
TIMEOUT=${GUEST_TIMEOUT:-120}
WORKLOAD=
DISK_SIZE=64M
DISK_IMAGE=
BSST_IMAGE=
BSST_NBD=
PLAIN_DISK=no
INCOMING=
MIGRATE_TO=
MIGRATE_ON=
MIGRATE_GATE=
HMP_ON=()
BSST_SIZE=256M
BSST_FMT=qcow2
BSST_PREALLOC=
TOPTS=
SWAP_DISK=
SWAP_IMAGE=
SWAPPER=
BALLOON=no
THROTTLE=
HDD=
HDD_LAYOUT=shared
HDD_SWAP=
HDD_EXTRA=
BSST_SSD=no
BSST_BENCH=
CACHE=writeback
WRAP=
CPUS=
WORKDIR=
STATS=
SERIES=
QUIET=no
KLOG=no
SHELL_MODE=no
EXTRA=()

say() { printf 'run-guest: %s\n' "$*" >&2; }
die() { printf 'run-guest: error: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
    --qemu) QEMU=$2; shift ;;
    --qemu-img) QEMU_IMG=$2; shift ;;
    --kit) KIT=$2; shift ;;
    -m|--memory) MEM=$2; shift ;;
    --smp) SMP=$2; shift ;;
    --accel) ACCEL=$2; shift ;;
    --cpu) CPU=$2; shift ;;
    --machine) MACHINE=$2; shift ;;
    --workload) WORKLOAD=$2; shift ;;
    --append) APPEND="$APPEND $2"; shift ;;
    --disk-size) DISK_SIZE=$2; shift ;;
    --disk-image) DISK_IMAGE=$2; shift ;;
    --bsst-image) BSST_IMAGE=$2; shift ;;
    --bsst-nbd) BSST_NBD=$2; shift ;;
    --plain-disk) PLAIN_DISK=yes ;;
    --incoming) INCOMING=$2; shift ;;
    --migrate-to) MIGRATE_TO=$2; shift ;;
    --migrate-on) MIGRATE_ON=$2; shift ;;
    --migrate-gate) MIGRATE_GATE=$2; shift ;;
    --hmp-on) HMP_ON+=(--hmp-on "$2"); shift ;;
    --bsst-size) BSST_SIZE=$2; shift ;;
    --bsst-format) BSST_FMT=$2; shift ;;
    --bsst-preallocation) BSST_PREALLOC=$2; shift ;;
    --tesseract-opts) TOPTS=$2; shift ;;
    --swap-disk) SWAP_DISK=$2; shift ;;
    --swap-image) SWAP_IMAGE=$2; shift ;;
    --swapper) SWAPPER=$2; shift ;;
    --balloon) BALLOON=yes ;;
    --throttle) THROTTLE=$2; shift ;;
    --cache) CACHE=$2; shift ;;
    --hdd) HDD=$2; shift ;;
    --hdd-layout) HDD_LAYOUT=$2; shift ;;
    --hdd-swap) HDD_SWAP=$2; shift ;;
    --bsst-ssd) BSST_SSD=yes ;;
    --hdd-extra-dev) HDD_EXTRA="$HDD_EXTRA $2"; shift ;;
    --bsst-bench) BSST_BENCH=$2; shift ;;
    --wrap) WRAP=$2; shift ;;
    --cpus) CPUS=$2; shift ;;
    --timeout) TIMEOUT=$2; shift ;;
    --workdir) WORKDIR=$2; shift ;;
    --stats) STATS=$2; shift ;;
    --series) SERIES=$2; shift ;;
    --quiet) QUIET=yes ;;
    --kernel-log) KLOG=yes ;;
    --shell) SHELL_MODE=yes ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '4,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
done

# --- Inputs -----------------------------------------------------------------
[ -x "$QEMU" ] || die "no QEMU binary at $QEMU (run 'make' first)"
[ -x "$QEMU_IMG" ] || die "no qemu-img at $QEMU_IMG (run 'make' first)"
if [ ! -f "$KIT/vmlinuz" ] || [ ! -f "$KIT/initramfs.cpio.gz" ]; then
    [ "$KIT" = "$HERE/out" ] || die "no guest kit in $KIT (run build-kit.sh $KIT)"
    "$HERE/build-kit.sh" "$KIT" >&2
fi

case "$MACHINE" in
microvm) BLKDEV=virtio-blk-device BALLOONDEV=virtio-balloon-device ;;
pc|q35|pc-*) BLKDEV=virtio-blk-pci BALLOONDEV=virtio-balloon-pci ;;
*) die "unsupported machine '$MACHINE' (microvm or pc)" ;;
esac

# Kernel command line: serial console, reboot (= QEMU stops) on panic.
CMDLINE="console=ttyS0 panic=-1"
[ "$KLOG" = yes ] || CMDLINE="$CMDLINE quiet"
if [ "$ACCEL" = tcg ]; then
    # microvm under TCG sometimes hangs calibrating the TSC: tell the kernel
    khz=$(awk -F: '/^cpu MHz/ { printf "%d", $2 * 1000; exit }' /proc/cpuinfo)
    [ -n "$khz" ] && CMDLINE="$CMDLINE tsc_early_khz=$khz"
    # TCG's TSC follows the host's clock, but the kernel's clocksource
    # watchdog checks it against jiffies, which lose ticks while the vCPU
    # waits for a host fault: after a few long stalls it marks the TSC
    # unstable and keeps time by counting ticks, and from then on the
    # guest's clock (and a workload's scores and pauses) runs several
    # times slower than real time whenever the guest stalls.
    CMDLINE="$CMDLINE tsc=reliable"
fi
[ "$SHELL_MODE" = yes ] && WORKLOAD=shell
[ "$SHELL_MODE" = no ] || [ -z "$MIGRATE_TO" ] || die "--shell has no QMP to migrate with (--migrate-to)"
[ -n "$WORKLOAD" ] && CMDLINE="$CMDLINE workload=$WORKLOAD"
[ -n "$SWAP_DISK" ] && CMDLINE="$CMDLINE guest_swap=swap"
read -ra words <<< "$APPEND"
[ ${#words[@]} = 0 ] || CMDLINE="$CMDLINE ${words[*]}"

# Firmware: the kit's own (qboot, linuxboot_dma.bin), then the host's.
FW=()
for d in "$KIT/firmware" /usr/share/seabios /usr/share/qemu; do
    [ -d "$d" ] && FW+=(-L "$d")
done

# --- Work directory and disk images ----------------------------------------
if [ -n "$WORKDIR" ]; then
    mkdir -p "$WORKDIR"
    WD=$(cd "$WORKDIR" && pwd)
    rm -f "$WD"/{console.log,qemu.log,stats.json,blockstats.json,qemu-proc.txt,qemu-threads.txt,host-cpu.txt,bsst-bench.txt,blkio.txt,cmdline,cmdline.short,migrate.json,stats-premigrate.json,hmp.json}
else
    WD=$(mktemp -d "${TMPDIR:-/tmp}/tesseract-guest.XXXXXX")
fi
SOCK=$WD/qmp.sock
# unix socket paths are limited to 107 bytes
[ ${#SOCK} -lt 100 ] || SOCK=$(mktemp -u "${TMPDIR:-/tmp}/tesseract-qmp.XXXXXX")

QPID=
HUNG=no
LOOPS=()
BLKCG=
SPINDLE_MNT=
SPINDLE_SWAP=
# Stop QEMU: SIGTERM, and SIGKILL if it is still there after 5 s (a QEMU
# whose main loop is stuck, e.g. deadlocked, ignores SIGTERM).
stop_qemu() {
    [ -n "$QPID" ] || return 0
    if kill -0 "$QPID" 2>/dev/null; then
        kill "$QPID" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$QPID" 2>/dev/null || break
            # a zombie counts as gone
            [ "$(awk '{ print $3 }' "/proc/$QPID/stat" 2>/dev/null)" != Z ] || break
            sleep 0.1
        done
        if kill -0 "$QPID" 2>/dev/null && \
           [ "$(awk '{ print $3 }' "/proc/$QPID/stat" 2>/dev/null)" != Z ]; then
            HUNG=yes
            # keep the evidence: every thread's stack, when gdb is at hand
            if [ -n "${GUEST_GDB_ON_HANG:-}" ] && command -v gdb > /dev/null; then
                timeout 60 gdb -p "$QPID" -batch -ex 'thread apply all bt 30' \
                    > "$WD/hang-backtrace.txt" 2>&1 || true
            fi
            kill -KILL "$QPID" 2>/dev/null || true
        fi
    fi
    wait "$QPID" 2>/dev/null || true
}
# shellcheck disable=SC2317  # called from the trap
cleanup() {
    stop_qemu
    local l
    [ -z "$SPINDLE_SWAP" ] || swapoff "$SPINDLE_SWAP" 2>/dev/null || true
    [ -z "$SPINDLE_MNT" ] || umount "$SPINDLE_MNT" 2>/dev/null || \
        umount -l "$SPINDLE_MNT" 2>/dev/null || true
    for l in "${LOOPS[@]}"; do
        losetup -d "$l" 2>/dev/null || true
    done
    [ -z "$BLKCG" ] || rmdir "$BLKCG" 2>/dev/null || true
    rm -f "$SOCK"
    [ -n "$WORKDIR" ] || rm -rf "$WD"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

case "$BSST_FMT" in qcow2|raw) ;; *) die "--bsst-format: qcow2 or raw" ;; esac
case "$CACHE" in writeback|direct) ;; *) die "--cache: writeback or direct, not '$CACHE'" ;; esac
case "$HDD_LAYOUT" in shared|per-image) ;; *) die "--hdd-layout: shared or per-image, not '$HDD_LAYOUT'" ;; esac
[ "$BSST_SSD" = no ] || [ -n "$HDD" ] || die "--bsst-ssd needs --hdd"
if [ "$PLAIN_DISK" = yes ] && [ -n "$SWAP_DISK" ]; then
    die "--plain-disk and --swap-disk: the swap disk is a tesseract node, which --plain-disk is without"
fi
[ "$PLAIN_DISK" = no ] || [ -n "$SWAPPER" ] || [ -z "$BSST_BENCH" ] || \
    die "--bsst-bench: --plain-disk without --swapper has no BSST"
if [ -n "$BSST_NBD" ]; then
    [ -S "$BSST_NBD" ] || die "--bsst-nbd: no socket at '$BSST_NBD'"
    [ -z "$HDD$BSST_IMAGE$THROTTLE" ] || die "--bsst-nbd: not with --hdd, --bsst-image or --throttle"
fi
if [ -n "$BSST_IMAGE" ]; then
    [ -f "$BSST_IMAGE" ] || die "--bsst-image: no image at '$BSST_IMAGE'"
    [ -z "$HDD" ] || die "--bsst-image and --hdd: the hard-disk model holds images of its own"
    BSST_IMAGE=$(cd "$(dirname "$BSST_IMAGE")" && pwd)/$(basename "$BSST_IMAGE")
fi
if [ -n "$SWAP_IMAGE" ]; then
    [ -n "$SWAP_DISK" ] || die "--swap-image needs --swap-disk"
    [ -f "$SWAP_IMAGE" ] || die "--swap-image: no image at '$SWAP_IMAGE'"
    SWAP_IMAGE=$(cd "$(dirname "$SWAP_IMAGE")" && pwd)/$(basename "$SWAP_IMAGE")
fi
if [ -n "$DISK_IMAGE" ]; then
    [ -f "$DISK_IMAGE" ] || die "--disk-image: no image at '$DISK_IMAGE'"
    [ -z "$HDD" ] || die "--disk-image and --hdd: the hard-disk model holds images of its own"
    DISK_IMAGE=$(cd "$(dirname "$DISK_IMAGE")" && pwd)/$(basename "$DISK_IMAGE")
fi
if [ -n "$MIGRATE_TO" ] || [ -n "$MIGRATE_ON" ]; then
    if [ -z "$MIGRATE_TO" ] || [ -z "$MIGRATE_ON" ]; then
        die "--migrate-to URI and --migrate-on PATTERN go together"
    fi
    [ -z "$INCOMING" ] || die "--migrate-to and --incoming: one side of a migration per run"
fi
[ -z "$MIGRATE_GATE" ] || [ -n "$MIGRATE_TO" ] || die "--migrate-gate needs --migrate-to and --migrate-on"
if [ -n "$HDD_SWAP" ] && { [ -z "$HDD" ] || [ "$HDD_LAYOUT" != shared ]; }; then
    die "--hdd-swap needs --hdd with the shared layout"
fi

# --hdd: a blkio cgroup for QEMU, and the spindle (shared layout) or a
# loop device per image (per-image layout, in image_proto)
HDD_IOPS= HDD_BPS= HDD_CACHE=
IMGDIR=$WD
BSST_DIR=$WD
if [ -n "$HDD" ]; then
    IFS=, read -r HDD_IOPS HDD_BPS HDD_CACHE <<< "$HDD"
    [ -n "$HDD_IOPS" ] && [ -n "$HDD_BPS" ] || die "--hdd IOPS,BPS"
    [ "$(id -u)" = 0 ] || die "--hdd needs root (loop devices, cgroups)"
    [ -f /sys/fs/cgroup/blkio/blkio.throttle.read_iops_device ] || \
        die "--hdd needs the cgroup v1 blkio controller at /sys/fs/cgroup/blkio"
    BLKCG=/sys/fs/cgroup/blkio/tesseract-guest-$$
    mkdir -p "$BLKCG"
fi
hdd_throttle_dev() {  # MAJ:MIN
    local f
    for f in read_iops_device write_iops_device; do
        echo "$1 $HDD_IOPS" > "$BLKCG/blkio.throttle.$f"
    done
    for f in read_bps_device write_bps_device; do
        echo "$1 $HDD_BPS" > "$BLKCG/blkio.throttle.$f"
    done
}
bytes() { numfmt --from=iec "$1" 2>/dev/null || die "not a size: '$1'"; }
if [ -n "$HDD" ]; then
    for d in $HDD_EXTRA; do hdd_throttle_dev "$d"; done
fi
if [ -n "$HDD" ] && [ "$HDD_LAYOUT" = shared ]; then
    command -v mkfs.ext4 > /dev/null || die "--hdd needs mkfs.ext4 (e2fsprogs)"
    sp_dio=on
    [ "$HDD_CACHE" != buffered ] || sp_dio=off
    # room for every image at its full size (qcow2 metadata included), the
    # host swap file, and ext4's own
    sp_bsst=$BSST_SIZE
    [ "$BSST_SSD" = no ] || sp_bsst=0
    sp_bytes=$(( ($(bytes "$DISK_SIZE") + $(bytes "$sp_bsst") + $(bytes "${SWAP_DISK:-0}") +
                  $(bytes "${HDD_SWAP:-0}")) * 21 / 20 + 256 * 1048576 ))
    rm -f "$WD/spindle.img"
    truncate -s "$sp_bytes" "$WD/spindle.img"
    sp_loop=$(losetup -f --show --direct-io=$sp_dio "$WD/spindle.img") || \
        die "losetup of the spindle failed"
    LOOPS+=("$sp_loop")
    mkfs.ext4 -q -F -m 0 -E lazy_itable_init=1,lazy_journal_init=1 "$sp_loop" || \
        die "mkfs.ext4 on the spindle failed"
    mkdir -p "$WD/spindle"
    mount -t ext4 -o noatime,lazytime "$sp_loop" "$WD/spindle" || die "cannot mount the spindle"
    SPINDLE_MNT=$WD/spindle
    IMGDIR=$SPINDLE_MNT
    [ "$BSST_SSD" = yes ] || BSST_DIR=$IMGDIR
    hdd_throttle_dev "$(lsblk -dno MAJ:MIN "$sp_loop" | tr -d ' ')"
    if [ -n "$HDD_SWAP" ]; then
        dd if=/dev/zero of="$IMGDIR/host-swap" bs=1M count=$(( $(bytes "$HDD_SWAP") / 1048576 )) \
            status=none || die "cannot write the host swap file"
        chmod 600 "$IMGDIR/host-swap"
        mkswap "$IMGDIR/host-swap" > /dev/null || die "mkswap failed"
        swapon "$IMGDIR/host-swap" || die "swapon of the host swap file failed"
        SPINDLE_SWAP=$IMGDIR/host-swap
    fi
fi

# A loop device (per-image --hdd) cannot grow: give qcow2 images their full
# length.  On the spindle, every image is written in full beforehand: ext4
# serialises O_DIRECT writes that allocate blocks (exclusive inode lock,
# journal) and answers reads of holes without touching the disk, neither
# of which a disk does.
QCOW_OPTS=()
RAW_OPTS=()
if [ -n "$HDD" ] && [ "$HDD_LAYOUT" = shared ]; then
    QCOW_OPTS=(-o preallocation=full)
    RAW_OPTS=(-o preallocation=full)
elif [ -n "$HDD" ]; then
    QCOW_OPTS=(-o preallocation=metadata)
fi
if [ -n "$DISK_IMAGE" ]; then
    GUEST_IMG=$DISK_IMAGE
    # -U: the migration source may be running on it
    GUEST_FMT=$("$QEMU_IMG" info -U --output=json "$DISK_IMAGE" | /usr/bin/python3 -c \
        'import json, sys; print(json.load(sys.stdin)["format"])') || \
        die "--disk-image: qemu-img info cannot read '$DISK_IMAGE'"
    case "$GUEST_FMT" in qcow2|raw) ;; *) die "--disk-image: a qcow2 or raw image, not '${GUEST_FMT:-?}'" ;; esac
else
    GUEST_IMG=$IMGDIR/guest.qcow2 GUEST_FMT=qcow2
    "$QEMU_IMG" create -q -f qcow2 "${QCOW_OPTS[@]}" "$GUEST_IMG" "$DISK_SIZE"
fi
# --plain-disk without a swapper: nothing uses a BSST
HAVE_BSST=yes
[ "$PLAIN_DISK" = no ] || [ -n "$SWAPPER" ] || HAVE_BSST=no
BSST_OPTS=("${RAW_OPTS[@]}")
[ "$BSST_FMT" = raw ] || BSST_OPTS=("${QCOW_OPTS[@]}")
[ "$BSST_SSD" = no ] || BSST_OPTS=()
[ -z "$BSST_PREALLOC" ] || [ "$BSST_DIR" = "$IMGDIR" -a -n "$SPINDLE_MNT" ] || \
    BSST_OPTS=(-o "preallocation=$BSST_PREALLOC")
BSST_IMG=$BSST_DIR/bsst.$BSST_FMT
if [ -n "$BSST_IMAGE" ]; then
    BSST_IMG=$BSST_IMAGE
    BSST_FMT=$("$QEMU_IMG" info -U --output=json "$BSST_IMAGE" | /usr/bin/python3 -c \
        'import json, sys; print(json.load(sys.stdin)["format"])') || \
        die "--bsst-image: qemu-img info cannot read '$BSST_IMAGE'"
elif [ "$HAVE_BSST" = yes ] && [ -z "$BSST_NBD" ]; then
    "$QEMU_IMG" create -q -f "$BSST_FMT" "${BSST_OPTS[@]}" "$BSST_IMG" "$BSST_SIZE"
fi
[ -z "$SWAP_DISK" ] || [ -n "$SWAP_IMAGE" ] || \
    "$QEMU_IMG" create -q -f qcow2 "${QCOW_OPTS[@]}" "$IMGDIR/swap.qcow2" "$SWAP_DISK"

# the protocol options of an image FILE (sets PROTO); "plain" as the second
# argument: a plain file even with --hdd
image_proto() {
    if [ -z "$HDD" ] || [ "${2:-}" = plain ]; then
        if [ "$CACHE" = direct ]; then
            PROTO="cache.direct=on,file.driver=file,file.filename=$1"
        else
            PROTO="file.driver=file,file.filename=$1"
        fi
    elif [ "$HDD_LAYOUT" = shared ]; then
        local direct=on
        [ "$HDD_CACHE" != buffered ] || direct=off
        PROTO="cache.direct=$direct,file.driver=file,file.filename=$1"
    elif [ -n "$HDD" ]; then
        local l
        local dio=on direct=on
        [ "$HDD_CACHE" != buffered ] || { dio=off; direct=off; }
        l=$(losetup -f --show --direct-io=$dio "$1") || die "losetup $1 failed"
        LOOPS+=("$l")
        hdd_throttle_dev "$(lsblk -dno MAJ:MIN "$l" | tr -d ' ')"
        PROTO="cache.direct=$direct,file.driver=host_device,file.filename=$l"
    fi
}

# An image node (qcow2 or raw over a file, or over a loop device with
# --hdd), behind a throttle node with --throttle:
# image_nodes NODE FILE [FORMAT] appends -blockdev options to CORE
TGROUPS=()
BSST_PROTO=
image_nodes() {  # NODE FILE [FORMAT]
    local node=$1 file=$2 fmt=$1 driver=${3:-qcow2}
    if [ "$node" = bsst0 ] && [ -n "$BSST_NBD" ]; then
        CORE+=(-blockdev "driver=raw,node-name=bsst0,file.driver=nbd,file.server.type=unix,file.server.path=$BSST_NBD,file.export=bsst")
        return
    fi
    [ -z "$THROTTLE" ] || fmt=$1-$driver
    if [ "$node" = bsst0 ] && [ "$BSST_SSD" = yes ]; then
        image_proto "$file" plain
    else
        image_proto "$file"
    fi
    [ "$node" != bsst0 ] || BSST_PROTO=$PROTO
    CORE+=(-blockdev "driver=$driver,node-name=$fmt,$PROTO")
    if [ -n "$THROTTLE" ]; then
        TGROUPS+=(-object "throttle-group,id=tg-$node,$THROTTLE")
        CORE+=(-blockdev "driver=throttle,node-name=$node,throttle-group=tg-$node,file=$fmt")
    fi
}

# --- QEMU command line ----------------------------------------------------------
# CORE is what matters (printed in short form); PLUMBING wires up console,
# QMP and firmware.
# debug-threads: qemu-threads.txt names each thread (CPU 0/TCG, tsr-fault...)
CORE=("$QEMU" -M "$MACHINE" -accel "$ACCEL" -m "$MEM" -smp "$SMP"
      -name "guest,debug-threads=on")
[ -n "$CPU" ] && CORE+=(-cpu "$CPU")
# policy=access scans which pages the guest maps back: RAM in a shared memfd
case ",$SWAPPER," in
*,policy=access,*)
    CORE+=(-object "memory-backend-memfd,id=ram0,size=$MEM,share=on"
           -machine memory-backend=ram0) ;;
esac
CORE+=(-kernel "$KIT/vmlinuz" -initrd "$KIT/initramfs.cpio.gz"
       -append "$CMDLINE")
if [ "$PLAIN_DISK" = yes ]; then
    image_nodes disk0 "$GUEST_IMG" "$GUEST_FMT"
    [ "$HAVE_BSST" = no ] || image_nodes bsst0 "$BSST_IMG" "$BSST_FMT"
    CORE+=(-device "$BLKDEV,drive=disk0")
else
    image_nodes disk0-fmt "$GUEST_IMG" "$GUEST_FMT"
    image_nodes bsst0 "$BSST_IMG" "$BSST_FMT"
    CORE+=(-blockdev "driver=tesseract,node-name=disk0,file=disk0-fmt,bsst=bsst0${TOPTS:+,$TOPTS}"
           -device "$BLKDEV,drive=disk0")
fi
if [ -n "$SWAP_DISK" ]; then
    image_nodes swapdisk-fmt "${SWAP_IMAGE:-$IMGDIR/swap.qcow2}"
    CORE+=(-blockdev "driver=tesseract,node-name=swapdisk,file=swapdisk-fmt,bsst=bsst0,disk-id=swap${TOPTS:+,$TOPTS}"
           -device "$BLKDEV,drive=swapdisk,serial=swap")
fi
[ -z "$SWAPPER" ] || CORE+=(-object "tesseract-swapper,id=swapper0,bsst=bsst0,$SWAPPER")
[ "$BALLOON" = no ] || CORE+=(-device "$BALLOONDEV,id=balloon0,free-page-reporting=on")
[ -z "$INCOMING" ] || CORE+=(-incoming "$INCOMING")
CORE=("${CORE[@]:0:1}" "${TGROUPS[@]}" "${CORE[@]:1}")
# QEMU starts in the blkio cgroup (the shell moves itself, then execs)
CGWRAP=()
[ -z "$BLKCG" ] || CGWRAP=(/bin/sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$BLKCG")
CORE=("${CGWRAP[@]}" "${CORE[@]}")
if [ -n "$CPUS" ]; then
    command -v taskset > /dev/null || die "--cpus needs taskset (util-linux)"
    taskset -c "$CPUS" true 2>/dev/null || die "--cpus: '$CPUS' is not a CPU list this machine can run on"
    CORE=(taskset -c "$CPUS" "${CORE[@]}")
fi
if [ -n "$WRAP" ]; then
    read -ra wrapwords <<< "$WRAP"
    CORE=("${wrapwords[@]}" "${CORE[@]}")
fi
PLUMBING=(-nodefaults -no-user-config -display none -no-reboot "${FW[@]}")

if [ "$SHELL_MODE" = yes ]; then
    say "interactive guest shell; 'poweroff -f' (or Ctrl-A x) to leave"
    "${CORE[@]}" "${PLUMBING[@]}" -serial mon:stdio "${EXTRA[@]}"
    exit 0
fi

# The VM stops at guest power-off (-no-shutdown) so QMP can still be asked.
if [ "$QUIET" = yes ]; then
    CON=(-chardev "file,id=con0,path=$WD/console.log")
else
    CON=(-chardev "stdio,id=con0,signal=off,logfile=$WD/console.log")
fi
PLUMBING+=(-no-shutdown -qmp "unix:$SOCK,server=on,wait=off" "${CON[@]}"
           -serial chardev:con0)
ALL=("${CORE[@]}" "${PLUMBING[@]}" "${EXTRA[@]}")
printf '%q ' "${ALL[@]}" > "$WD/cmdline"; echo >> "$WD/cmdline"
# short form: no plumbing, file names without directories
printf '%s ' "${CORE[@]}" "${EXTRA[@]}" \
    | sed -E "s#-append $CMDLINE#-append \"$CMDLINE\"#; s#(^| |=)/[^ ,]*/#\\1#g; s/ $//" \
    > "$WD/cmdline.short"
echo >> "$WD/cmdline.short"
[ "$QUIET" = yes ] || say "$(cat "$WD/cmdline.short")"

# --- Run ----------------------------------------------------------------------
: > "$WD/console.log"
START=$(date +%s.%N)
CPU0=$(grep '^cpu' /proc/stat)
"${ALL[@]}" < /dev/null 2> "$WD/qemu.log" &
QPID=$!

# Wait for the guest to power off (or, --migrate-to, for the migration),
# then ask for the statistics and quit.
qmp_rc=0
SERIES_ARGS=()
[ -n "$SERIES" ] && SERIES_ARGS=(--series "$WD/series.jsonl" --series-every "$SERIES")
MIGRATE_ARGS=()
[ -z "$MIGRATE_TO" ] || MIGRATE_ARGS=(--migrate "$MIGRATE_TO" --migrate-on "$MIGRATE_ON"
    --migrate-out "$WD/migrate.json" --migrate-before "$WD/stats-premigrate.json")
[ -z "$MIGRATE_GATE" ] || MIGRATE_ARGS+=(--migrate-gate "$MIGRATE_GATE")
[ "${#HMP_ON[@]}" = 0 ] || MIGRATE_ARGS+=("${HMP_ON[@]}" --hmp-out "$WD/hmp.json")
timeout -k 5 $((TIMEOUT + 30)) /usr/bin/python3 "$HERE/qmp.py" "$SOCK" --pid "$QPID" \
    --wait-shutdown "$TIMEOUT" --console "$WD/console.log" --out "$WD/stats.json" \
    "${SERIES_ARGS[@]}" "${MIGRATE_ARGS[@]}" query-tesseract query-blockstats \
    > "$WD/qmp.out" 2> "$WD/qmp.err" || qmp_rc=$?
# A migration that failed: the swapper's figures then, for the evidence
[ "$qmp_rc" != 5 ] || timeout -k 5 20 /usr/bin/python3 "$HERE/qmp.py" "$SOCK" --pid "$QPID" \
    --out "$WD/stats.json" query-tesseract > /dev/null 2>&1 || true
# A guest that made no progress: what QEMU was doing, before it goes
# (the run state and tesseract figures by QMP; with gdb, every node's
# requests in flight and every thread's stack: tests/guest/hang.gdb)
case "$qmp_rc" in
3|124|137)
    # gdb first: what follows changes the vCPU's state
    if command -v gdb > /dev/null; then
        timeout 60 gdb -p "$QPID" -batch -x "$HERE/hang.gdb" \
            > "$WD/hang-backtrace.txt" 2>&1 || true
    fi
    timeout -k 5 20 /usr/bin/python3 "$HERE/qmp.py" "$SOCK" --pid "$QPID" \
        query-status query-tesseract \
        'human-monitor-command={"command-line": "info registers"}' \
        'human-monitor-command={"command-line": "info lapic"}' \
        'human-monitor-command={"command-line": "info pic"}' \
        > "$WD/hang-qmp.txt" 2>&1 || true
    # A guest that waits for an interrupt it never gets goes on after
    # one; a guest that is stuck (or whose memory is not what it wrote)
    # does not.  Kick it with an NMI and see whether its console moves.
    hang_con=$(stat -c %s "$WD/console.log" 2>/dev/null || echo 0)
    timeout -k 5 20 /usr/bin/python3 "$HERE/qmp.py" "$SOCK" --pid "$QPID" \
        inject-nmi >> "$WD/hang-qmp.txt" 2>&1 || true
    sleep 15
    if [ "$(stat -c %s "$WD/console.log" 2>/dev/null || echo 0)" != "$hang_con" ]; then
        echo "after an NMI the guest's console moved: it was waiting for a wakeup" >> "$WD/hang-qmp.txt"
    else
        echo "after an NMI the guest's console did not move" >> "$WD/hang-qmp.txt"
    fi
    ;;
esac
if [ "$qmp_rc" = 0 ]; then
    sed -n 2p "$WD/qmp.out" | /usr/bin/python3 -c \
        'import json, sys; json.dump(json.load(sys.stdin)["return"], sys.stdout, indent=1)' \
        > "$WD/blockstats.json" 2>/dev/null || true
    # the QEMU process's own figures (host RSS, bytes it read and wrote)
    { cat "/proc/$QPID/status"; cat "/proc/$QPID/io"; } > "$WD/qemu-proc.txt" 2>/dev/null || true
    # CPU seconds per thread (name, user, system) and voluntary/involuntary
    # context switches
    for t in /proc/"$QPID"/task/*; do
        awk -v tck="$(getconf CLK_TCK)" '{ sub(/^[^)]*\) /, ""); printf "%.2f %.2f", $12 / tck, $13 / tck }' "$t/stat" 2>/dev/null
        printf ' %s %s %s\n' "$(awk '/^voluntary_ctxt/ { v = $2 } /^nonvoluntary_ctxt/ { n = $2 } END { print v, n }' "$t/status" 2>/dev/null)" \
            "$(tr ' ' _ < "$t/comm" 2>/dev/null)"
    done > "$WD/qemu-threads.txt" 2>/dev/null || true
    timeout -k 5 30 /usr/bin/python3 "$HERE/qmp.py" "$SOCK" --pid "$QPID" quit \
        >> "$WD/qmp.out" 2>> "$WD/qmp.err" || true
fi

# QEMU should be gone after 'quit'; make sure of it.
if [ "$qmp_rc" = 0 ]; then
    for _ in $(seq 50); do
        kill -0 "$QPID" 2>/dev/null || break
        sleep 0.1
    done
fi
stop_qemu
QPID=
# what the disk model's devices served (requests and bytes per operation)
if [ -n "$BLKCG" ]; then
    for f in io_serviced io_service_bytes; do
        sed "s/^/$f /" "$BLKCG/blkio.throttle.$f" 2>/dev/null
    done > "$WD/blkio.txt" || true
fi
ELAPSED=$(echo "$START $(date +%s.%N)" | awk '{ printf "%.1f", $2 - $1 }')
# What the host's CPUs did meanwhile (seconds; first line all CPUs, then
# one line per CPU): busy includes QEMU; steal is time the hypervisor under
# this machine gave to others.  The machine is shared: a run with much
# steal ran slower for it (with --cpus, look at QEMU's own CPU's line).
printf '%s\n%s\n' "$CPU0" "$(grep '^cpu' /proc/stat)" | awk -v tck="$(getconf CLK_TCK)" \
    '{ if (!($1 in first)) { first[$1] = 1; order[n++] = $1
                             for (i = 2; i <= 9; i++) v0[$1, i] = $i }
       else for (i = 2; i <= 9; i++) v1[$1, i] = $i }
     END { for (k = 0; k < n; k++) { c = order[k]; d = 0
               for (i = 2; i <= 9; i++) { x[i] = (v1[c, i] - v0[c, i]) / tck; d += x[i] }
               printf "%sbusy %.1f idle %.1f iowait %.1f steal %.1f total %.1f\n",
                      c == "cpu" ? "" : c " ",
                      x[2] + x[3] + x[4] + x[7] + x[8], x[5], x[6], x[9], d } }' \
    > "$WD/host-cpu.txt" 2>/dev/null || true

# The BSST image's own 4 KiB read latency, the way QEMU reached it
if [ -n "$BSST_BENCH" ] && [ "$HUNG" = no ]; then
    bargs=(-c "$BSST_BENCH" -d 1 -s 4096 -S 4096)
    case "$BSST_PROTO" in cache.direct=on,*) bargs+=(-t none -i threads) ;; esac
    bfile=${BSST_PROTO##*file.filename=}
    if "${CGWRAP[@]}" "$QEMU_IMG" bench -f "$BSST_FMT" "${bargs[@]}" "$bfile" \
            > "$WD/bsst-bench.log" 2>&1; then
        # "Run completed in 0.123 seconds."
        awk -v n="$BSST_BENCH" '/^Run completed in/ { printf "bsst-read-4k-us %.2f (%d reads, qemu-img bench, queue depth 1)\n", $4 * 1e6 / n, n }' \
            "$WD/bsst-bench.log" > "$WD/bsst-bench.txt"
    fi
fi

RESULT=$(tr -d '\r' < "$WD/console.log" 2>/dev/null | grep -o 'GUEST-RESULT:.*' | tail -1 || true)
[ -s "$WD/qemu.log" ] && [ "$QUIET" = no ] && sed 's/^/run-guest: qemu: /' "$WD/qemu.log" >&2

fail() {
    say "FAIL: $* (after $ELAPSED s)"
    if [ "$QUIET" = yes ]; then
        say "last lines of the guest console:"
        tr -d '\r' < "$WD/console.log" 2>/dev/null | tail -15 | sed 's/^/    /' >&2 || true
        [ -s "$WD/qemu.log" ] && sed 's/^/run-guest: qemu: /' "$WD/qemu.log" >&2
    fi
    [ -s "$WD/qmp.err" ] && sed 's/^/run-guest: /' "$WD/qmp.err" >&2
    if [ -s "$WD/hang-qmp.txt" ]; then
        say "QEMU when the guest timed out (query-status, query-tesseract):"
        cut -c1-2000 "$WD/hang-qmp.txt" | sed 's/^/    /' >&2
    fi
    if [ -s "$WD/hang-backtrace.txt" ]; then
        say "QEMU's state and threads then (gdb, tests/guest/hang.gdb):"
        grep -E '^(run state|node |  tesseract: |vCPU |virtual clock|main loop virtual|Thread |#[0-9]+ )' \
            "$WD/hang-backtrace.txt" | head -400 | sed 's/^/    /' >&2
    fi
    exit 1
}

case "$qmp_rc" in
0) ;;
3|124|137) if [ "$HUNG" = yes ]; then
               fail "timeout: no guest result within $TIMEOUT s, and QEMU ignored SIGTERM (hung; killed)${GUEST_GDB_ON_HANG:+, stacks in $WD/hang-backtrace.txt}"
           fi
           fail "timeout: no guest result within $TIMEOUT s" ;;
4) [ -n "$RESULT" ] || fail "QEMU exited before the guest printed a result"
   fail "QEMU exited (${RESULT})" ;;
5) fail "$(sed -n 's/^qmp.py: //p' "$WD/qmp.err" | tail -1)" ;;
*) [ "$RESULT" = "GUEST-RESULT: ok" ] || fail "${RESULT:-no GUEST-RESULT line}"
   fail "query-tesseract failed" ;;
esac
if [ -n "$MIGRATE_TO" ]; then
    # the guest goes on at the destination: a result here is no requirement
    [ -z "$RESULT" ] || [ "$RESULT" = "GUEST-RESULT: ok" ] || fail "$RESULT"
else
    [ -n "$RESULT" ] || fail "the guest stopped without printing GUEST-RESULT"
    [ "$RESULT" = "GUEST-RESULT: ok" ] || fail "$RESULT"
fi

[ -n "$STATS" ] && cp "$WD/stats.json" "$STATS"
if [ "$QUIET" = no ]; then
    say "query-tesseract: $(tr -d ' \n' < "$WD/stats.json")"
    [ -z "$MIGRATE_TO" ] || say "migrated to $MIGRATE_TO: $(tr -d ' \n' < "$WD/migrate.json")"
    say "PASS ($ELAPSED s)"
fi
exit 0

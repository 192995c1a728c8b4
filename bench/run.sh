#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# 'make bench': the Tesseract paper's double-paging experiment on the guest
# kit (tests/guest/), Tesseract against the baseline and against stock QEMU
# with host swap.
#
#   bench/run.sh [--quick|--full] [options]
#
#   --quick            short runs (CI, part of 'make check'); asserts that no
#                      scenario saw a corrupt page and exits 1 otherwise
#   --full             longer runs for the report (default)
#   --disks "ssd hdd hybrid"
#                      disk models to run (default: all three in full mode,
#                      ssd and hdd in quick mode)
#   --scenarios "..."  subset of: nooc baseline tesseract tesseract-defrag
#                      stock (default all; stock needs root, cgroup v1 memory
#                      and a host swap device; skipped with a reason if not);
#                      SCENARIO@POLICY runs a swapper scenario with another
#                      policy than BENCH_POLICY (e.g. tesseract@access);
#                      SCENARIO@PROP=VALUE[,...] with other swapper
#                      properties (e.g. tesseract@background-idle=0), and
#                      both: tesseract@access,background-idle=0
#   --secs N           measured seconds of the score workload per run
#                      (default 30; quick mode 10)
#   --hdd-secs N       the same on the hdd model (default: --secs if given,
#                      else 60 in full mode).  On the spindle the
#                      baseline's memhog took 33-73 s to inflate
#                      (Tesseract's 27-31 s): a 30 s window cut the
#                      baseline's paging off and left it after the
#                      measurement, so the two sides' scores covered
#                      different parts of the same work
#   --rounds N         run every scenario N times and report the medians,
#                      each round, and the --together pairs (full mode
#                      default 4: single runs vary by +-30% on their own,
#                      and the machine's speed drifts besides; with 2, the
#                      ssd model's pauses came out either way from one run
#                      to the next; keep it a multiple of the
#                      host CPUs the pairs rotate over, so the report's
#                      geometric mean of the pairs' ratios gives each side
#                      each CPU equally often)
#   --together "..."   scenarios that run at the same time, side by side, in
#                      each round and disk model (full mode default:
#                      "baseline tesseract"; "none": every run alone).  The
#                      machine is shared and its speed drifts 2-3x between
#                      runs a minute apart (steal, other tenants): runs made
#                      at the same time see the same machine, so their ratio
#                      is the comparison to trust.  Not with stock (its
#                      memory cgroup and host swap are per run).
#   --pin yes|no|shares
#                      with --together: yes gives each of those runs its own
#                      host CPU (taskset; the assignment rotates every round
#                      so no scenario keeps one CPU; all of a QEMU's threads
#                      share its one CPU); shares puts each run in a CPU
#                      cgroup of its own with equal weight (cgroup v1
#                      cpu.shares or v2 cpu.weight), on all CPUs: the
#                      placement libvirt gives each VM by default (one
#                      machine.slice scope per VM), where a VM's I/O
#                      threads may run on any CPU but no VM gets more than
#                      its share while both are busy; no lets the
#                      scheduler place every thread freely (a QEMU with
#                      more runnable threads gets more CPU).  Default yes
#                      when the machine has a CPU for each
#   --accel NAME       tcg (default) or kvm, passed to run-guest.sh
#   --out DIR          results directory (default bench/results/MODE-DATE;
#                      bench/results/latest points at the newest)
#   --keep-images      keep the disk images of every run
#
# Every run: a 256 MiB guest (1 vCPU, microvm) whose own swap is a 512 MiB
# virtio disk behind a tesseract node (disk-id=swap) sharing the BSST with
# the tesseract-swapper; in the guest, jbb runs a verifying transaction
# loop over a 180 MiB heap (160 in quick mode) and prints its score every
# 100 ms, and memhog allocates 96 MiB.  The guest has ~172 MiB for the two
# once its own memory is counted.  In the full mode memhog inflates as
# jbb's measurement starts (BENCH_MEMHOG_START, default 0 s), right after
# jbb built its heap under the swapper's limit: the paper's two phases (the
# hypervisor swaps first, then the guest pages).  The guest pages jbb's
# colder objects out to make room, the swapper already holds many of them
# (double paging), and jbb then pages them back; all of it in the
# measured scores.  In the quick mode memhog is allocated
# before jbb starts and goes cold, and the guest pages it out while jbb
# builds its heap, outside the measurement (with 160 MiB the measured
# phase then sees ~5 major faults; guest_vm_pgmajfault in summary.json
# shows how much the guest paged).  The guest boots with
# init_on_alloc=0 (BENCH_APPEND): Debian's kernels zero every page they
# allocate, which would fault in a host-swapped page just before a swap-in
# read overwrites it whole and hide the swapper's cancelled swap-ins.
# Host overcommit is 10% as in Tesseract (VEE 2014) (the swapper's limit 230
# of 256 MiB).
# Scenarios:
#   nooc              swapper limit = guest RAM (no host overcommit)
#   baseline          swapper limit 230M, indirect=off
#   tesseract         swapper limit 230M, indirect=on, defrag=off
#   tesseract-defrag  as tesseract, defrag=auto
#   tesseract-lazy    as tesseract, but the swapper leaves an indirected page
#                     swapped out until the guest touches it again
#                     (background-swapin=off; not run unless named)
#   stock             no swapper; QEMU in a cgroup v1 memory cgroup whose
#                     limit is 230M + QEMU's own overhead (measured in the
#                     nooc run), with a host swap area on a loop device
# Disk models: ssd (plain image files opened with cache.direct=on: O_DIRECT
# to this machine's disk; BENCH_SSD_CACHE=writeback for the host page
# cache), hdd (one "spindle": every image, the BSST included, is a file
# on one ext4 file system on one O_DIRECT loop device, opened with
# cache.direct=on and limited to $HDD_IOPS IOPS and $HDD_BPS bytes/s each
# way, all images together, by a cgroup v1 blkio group: run-guest.sh --hdd;
# for stock, the host swap file is on the same spindle), and hybrid
# (Tesseract (VEE 2014): "BSST placed on an SSD": the guest's images on the
# hdd spindle, the BSST a plain file as in ssd; stock's host swap as in
# ssd).  One budget for all images is what one disk gives;
# BENCH_HDD_LAYOUT=per-image gives each image its own loop device and budget instead (the stock scenario's host
# swap then gets its own too).  QEMU's own throttle groups are not used:
# the swapper reads the BSST's blocks from its host file with pread(), past
# any throttle node, so only a limit below QEMU (the cgroup) covers them.
# In the full mode, after the measurement, a read-back phase (BENCH_READBACK):
# memhog verifies its memory and exits, then jbb verifies its whole heap;
# the report's read-back table gives how long that took and compares
# defrag=auto with the baseline (no indirections) and with defrag=off.
# BENCH_GUEST_MIB, BENCH_LIMIT_MIB, BENCH_MEMHOG_MIB, BENCH_HEAP_MIB override
# the sizes, BENCH_MEMHOG_START when memhog inflates (seconds into the
# measurement, or 'before' jbb starts), BENCH_POLICY the swapper's policy; BENCH_SERIES how often (s,
# default 0.5; empty: never) each run's series.jsonl samples the counters
# (bench/series.py reads it).
#
# Outputs in the results directory: summary.json, report.md, scores-*.png,
# and runs/DISK-SCENARIO/ ('=' and ',' as '_'; console log, query-tesseract, blockstats,
# QEMU's /proc status, meta.json).  See bench/analyze.py for the metrics.
# QEMU comes from build/ (TESSERACT_BUILD, or QEMU and QEMU_IMG, for
# another; bench/lib.sh).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
BENCH_NAME=bench
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

MODE=full
DISKS=
SCENARIOS="nooc baseline tesseract tesseract-defrag stock"
SECS=
HDD_SECS=
ROUNDS=
ACCEL=tcg
TOGETHER=
PIN=
OUT=
KEEP_IMAGES=no

# sizes (MiB); BENCH_* in the environment override them for experiments
GUEST_MEM_MIB=${BENCH_GUEST_MIB:-256}
# the swapper's limit and policy: see after the options
MEMHOG_MIB=${BENCH_MEMHOG_MIB:-96}
# the heap: see after the options (it depends on the mode)
GUEST_MEM=${GUEST_MEM_MIB}M
# more guest kernel command line (BENCH_APPEND)
GUEST_APPEND=${BENCH_APPEND-init_on_alloc=0}
SWAP_DISK=512M
# 512 MiB: 5x what the busiest run uses; opening a new BSST reads it all
# (the blank check), which on hdd costs BSST_SIZE / HDD_BPS seconds
BSST_SIZE=512M
# The BSST is a raw image, a flat swap space as the paper's was;
# BENCH_BSST_FORMAT=qcow2 gives a qcow2 one (make check's swap-qcow2-test
# swaps to one: the swapper's fault reads go to the BSST's host file
# directly, past qcow2, see tests/guest/swap-qcow2-test.sh).
BSST_FORMAT=${BENCH_BSST_FORMAT:-raw}
# The BSST is written in full when created (qemu-img preallocation=full,
# BENCH_BSST_PREALLOC overrides), as a hypervisor's swap space is: on a
# file system (ext4 here), an O_DIRECT write that allocates blocks holds
# the file's inode lock exclusively for the whole write, so every fault
# read of the BSST waits for it.
BSST_PREALLOC=${BENCH_BSST_PREALLOC:-full}
# hdd IOPS per image: 200 for the report; the quick mode (a smoke test of
# every scenario for corruption, in 'make check') uses 1000 to stay within
# its 10 minutes: at 200, memhog's final verification alone faults ~20k
# host-swapped pages back at 5 ms each
HDD_IOPS=${BENCH_HDD_IOPS:-}
HDD_BPS=${BENCH_HDD_BPS:-104857600}
# direct (default: O_DIRECT, like cache=none) or buffered (host page cache)
HDD_CACHE=${BENCH_HDD_CACHE:-direct}
# shared (one budget for all images) or per-image
HDD_LAYOUT=${BENCH_HDD_LAYOUT:-shared}
case "$HDD_LAYOUT" in shared|per-image) ;; *) die "BENCH_HDD_LAYOUT: shared or per-image, not '$HDD_LAYOUT'" ;; esac
# ssd: direct (default: O_DIRECT to this machine's disk, cache=none) or
# writeback (the host page cache)
SSD_CACHE=${BENCH_SSD_CACHE:-direct}
# query-tesseract every SERIES seconds during each run, into the run's
# series.jsonl (the swapper's counters over time; BENCH_SERIES= for none)
SERIES=${BENCH_SERIES-0.5}

while [ $# -gt 0 ]; do
    case "$1" in
    --quick) MODE=quick ;;
    --full) MODE=full ;;
    --disks) DISKS=$2; shift ;;
    --scenarios) SCENARIOS=$2; shift ;;
    --secs) SECS=$2; shift ;;
    --hdd-secs) HDD_SECS=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --accel) ACCEL=$2; shift ;;
    --together) TOGETHER=$2; shift ;;
    --pin) PIN=$2; shift ;;
    --out) OUT=$2; shift ;;
    --keep-images) KEEP_IMAGES=yes ;;
    -h|--help) bench_usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
done
if [ -z "$HDD_SECS" ]; then
    if [ -n "$SECS" ] || [ "$MODE" = quick ]; then HDD_SECS=$SECS; else HDD_SECS=60; fi
fi
if [ -z "$SECS" ]; then
    if [ "$MODE" = quick ]; then SECS=10; else SECS=30; fi
fi
[ -n "$HDD_SECS" ] || HDD_SECS=$SECS
for v in "$SECS" "$HDD_SECS"; do
    bench_positive "$v" || die "--secs/--hdd-secs: a positive number of seconds, not '$v'"
done
if [ -z "$DISKS" ]; then
    if [ "$MODE" = quick ]; then DISKS="ssd hdd"; else DISKS="ssd hdd hybrid"; fi
fi
if [ -z "$HDD_IOPS" ]; then
    if [ "$MODE" = quick ]; then HDD_IOPS=1000; else HDD_IOPS=200; fi
fi
# The report (full mode): policy=access with a 180 MiB limit (30% host
# overcommit).  The swapper then takes the pages the guest does not touch,
# as a hypervisor with access bits does, and it must take some the guest
# still uses, which the guest then swaps out itself: double paging.  At
# 230 MiB (the paper's 10%) policy=access finds enough untouched pages and
# the guest never writes one the swapper holds (no double paging to
# measure); with policy=random (the paper's ESX) at 230 MiB it does, among
# ~15k faults on hot pages.  The quick mode (a corruption check in 'make
# check') keeps random at 230 MiB.  BENCH_LIMIT_MIB / BENCH_POLICY
# override.
if [ "$MODE" = quick ]; then
    LIMIT_MIB=${BENCH_LIMIT_MIB:-230}; POLICY=${BENCH_POLICY:-random}
else
    LIMIT_MIB=${BENCH_LIMIT_MIB:-180}; POLICY=${BENCH_POLICY:-access}
fi
LIMIT=${LIMIT_MIB}M
# When memhog inflates: the full mode (the report) as the paper's did,
# while jbb is being measured, BENCH_MEMHOG_START (0) seconds into it, so
# the guest's paging and the double paging fall into the measured scores
# (with memhog 2 s in, jbb runs alone first, those 2 s carry half of all
# transactions and no double paging, and jbb's faults bring back many of
# the pages the swapper held before the guest paged);
# the quick mode (and BENCH_MEMHOG_START=before) before jbb starts, so the
# guest pages memhog out while jbb builds its heap, outside the
# measurement.
if [ "$MODE" = quick ]; then
    MEMHOG_START=${BENCH_MEMHOG_START:-before}
else
    MEMHOG_START=${BENCH_MEMHOG_START:-0}
fi
case "$MEMHOG_START" in
before) MEMHOG_START=; HOG_START_APPEND= ;;
''|*[!0-9]*) die "BENCH_MEMHOG_START: seconds into the measurement or 'before', not '$MEMHOG_START'" ;;
*) HOG_START_APPEND=" jbb_measuring=/tmp/jbb.measuring memhog_start_file=/tmp/jbb.measuring memhog_start_secs=$MEMHOG_START" ;;
esac
# The read-back phase after the measurement (full mode; BENCH_READBACK=0
# or 1 to choose): memhog verifies its memory and exits, then jbb verifies
# its whole heap, and reports how long reading back what the guest paged
# out took (tests/guest/workloads/jbb.c); where defragmentation shows.
if [ "$MODE" = quick ]; then READBACK=${BENCH_READBACK:-0}; else READBACK=${BENCH_READBACK:-1}; fi
case "$READBACK" in
0) READBACK_APPEND= ;;
1) READBACK_APPEND=" jbb_readback=1" ;;
*) die "BENCH_READBACK: 0 or 1, not '$READBACK'" ;;
esac
if [ "$MODE" = quick ]; then
    HEAP_MIB=${BENCH_HEAP_MIB:-160}
else
    HEAP_MIB=${BENCH_HEAP_MIB:-180}
fi
if [ -z "$ROUNDS" ]; then
    if [ "$MODE" = quick ]; then ROUNDS=1; else ROUNDS=4; fi
fi
bench_positive "$ROUNDS" || die "--rounds: a positive number, not '$ROUNDS'"
if [ -z "$TOGETHER" ]; then
    if [ "$MODE" = quick ]; then TOGETHER=none; else TOGETHER="baseline tesseract"; fi
fi
[ "$TOGETHER" != none ] || TOGETHER=
# only the scenarios that run, in the order they run
together_set=
for sc in $TOGETHER; do
    case " $SCENARIOS " in *" $sc "*) ;; *) continue ;; esac
    [ "$sc" != stock ] || die "--together: stock cannot run beside others (its memory cgroup and host swap are per run)"
    together_set="$together_set $sc"
done
TOGETHER=$(echo $together_set)
[ "$(echo "$TOGETHER" | wc -w)" -ge 2 ] || TOGETHER=
NCPU=$(nproc)
if [ -z "$PIN" ]; then
    if [ "$(echo "$TOGETHER" | wc -w)" -le "$NCPU" ]; then PIN=yes; else PIN=no; fi
fi
case "$PIN" in
yes) PLACEMENT=pinned ;;
shares) PLACEMENT=shares ;;
no) PLACEMENT=free ;;
*) die "--pin: yes, no or shares, not '$PIN'" ;;
esac
# at 30% overcommit on the hdd model a baseline or stock run needs over
# 200 s (memhog's final check faults its 96 MiB back in at 200 IOPS)
run_timeout() {  # SECS: run-guest.sh's limit for a run measuring SECS
    if [ "$MODE" = quick ]; then echo $(($1 * 3 + 150)); else echo $(($1 * 6 + 300)); fi
}

# --- Tools: the guest kit and matplotlib --------------------------------------
bench_tools
if ! "$PY" -c 'import matplotlib' 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
        say "installing python3-matplotlib (Debian package) for the plots"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-matplotlib \
            > /dev/null 2>&1 || {
            DEBIAN_FRONTEND=noninteractive apt-get update -q > /dev/null 2>&1 || true
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-matplotlib \
                > /dev/null 2>&1 || say "cannot install python3-matplotlib: no plots"
        }
    else
        say "python3-matplotlib is missing and cannot be installed: no plots"
    fi
fi

# --- Results directory ------------------------------------------------------------
if [ -z "$OUT" ]; then
    OUT=$HERE/results/$MODE-$(date +%Y%m%d-%H%M%S)
    mkdir -p "$OUT"
    ln -sfn "$(basename "$OUT")" "$HERE/results/latest"
else
    mkdir -p "$OUT"
fi
OUT=$(cd "$OUT" && pwd)
mkdir -p "$OUT/runs"
say "mode $MODE, $ROUNDS round(s) of $SECS s per run (hdd: $HDD_SECS s), results in $OUT"

# --- Host swap and cgroups for the stock scenario -----------------------------------
# (the memory cgroup and swap file: bench/lib.sh)
CG_NAME=tesseract-bench-$$
HOST_SWAP_ARGS=()

# --pin shares: one CPU cgroup per side-by-side run, equal weights, in
# CPU_GROUPS (cgroup v1's cpu controller, else v2's).  Not in a subshell:
# cleanup must see CPU_GROUPS.
CPU_GROUPS=()
cpu_groups_on() {  # N
    local i d v1=/sys/fs/cgroup/cpu v2=/sys/fs/cgroup
    [ "$(id -u)" = 0 ] || die "--pin shares: needs root (CPU cgroups)"
    for i in $(seq 0 $(($1 - 1))); do
        if [ -f $v1/cpu.shares ]; then
            d=$v1/$CG_NAME-vm$i
            mkdir -p "$d" && CPU_GROUPS+=("$d") && echo 1024 > "$d/cpu.shares" ||
                die "--pin shares: cannot make the CPU cgroup $d"
        elif grep -qw cpu $v2/cgroup.controllers 2>/dev/null; then
            grep -qw cpu $v2/cgroup.subtree_control ||
                echo +cpu > $v2/cgroup.subtree_control ||
                die "--pin shares: cannot enable the cpu controller in $v2"
            d=$v2/$CG_NAME-vm$i
            mkdir -p "$d" && CPU_GROUPS+=("$d") && echo 100 > "$d/cpu.weight" ||
                die "--pin shares: cannot make the CPU cgroup $d"
        else
            die "--pin shares: no cgroup cpu controller (neither $v1 nor $v2)"
        fi
    done
}
# shellcheck disable=SC2317  # called from traps
cleanup() {
    local d
    host_cleanup
    for d in "${CPU_GROUPS[@]}"; do rmdir "$d" 2>/dev/null || true; done
}
bench_traps

stock_unsupported() {  # prints a reason, or nothing if stock can run
    [ "$(id -u)" = 0 ] || { echo "needs root (cgroups, swapon)"; return; }
    memcg_v1 || { echo "$MEMCG_V1_MISSING"; return; }
    command -v losetup > /dev/null && command -v mkswap > /dev/null && \
        command -v swapon > /dev/null || { echo "no losetup/mkswap/swapon"; return; }
    if [ "$(tail -n +2 /proc/swaps | wc -l)" != 0 ]; then
        echo "the host already has swap enabled; not touching it"; return
    fi
}

# host_swap_on DISK LIMIT: the memory cgroup, and a 1 GiB swap area on a
# loop device over a file (O_DIRECT, or buffered with
# BENCH_SSD_CACHE=writeback; on a per-image hdd run-guest.sh throttles it
# with the images); on the shared hdd, run-guest.sh --hdd-swap puts the
# swap file on the spindle instead.  Sets LOOPDEV, and HOST_SWAP_ARGS:
# the run-guest.sh options that go with the layout.  Not in a subshell:
# host_cleanup must see MEMCG and LOOPDEV.
host_swap_on() {
    local disk=$1 limit_bytes=$2 dio=on
    memcg_on "$CG_NAME" "$limit_bytes"
    HOST_SWAP_ARGS=()
    if [ "$disk" = hdd ] && [ "$HDD_LAYOUT" = shared ]; then
        HOST_SWAP_ARGS=(--hdd-swap 1G)
        return 0
    fi
    [ "$disk" = hdd ] || [ "$SSD_CACHE" = direct ] || dio=off
    swap_file_on "$OUT/runs/.host-swap.img" "$dio"
    if [ "$disk" = hdd ]; then
        HOST_SWAP_ARGS=(--hdd-extra-dev "$(lsblk -dno MAJ:MIN "$LOOPDEV" | tr -d ' ')")
    fi
}

hdd_desc() {  # DISK: the disk model in words, for meta.json and report.md
    [ "$1" = hdd ] || [ "$1" = hybrid ] || return 0
    if [ "$1" = hybrid ]; then
        echo "guest images as in hdd, the BSST (and stock's host swap) as in ssd"
    elif [ "$HDD_LAYOUT" = shared ]; then
        echo "blkio: $HDD_IOPS IOPS and $HDD_BPS B/s each way for all images together (one ext4 spindle on a loop device, cache $HDD_CACHE; stock's host swap file on it too)"
    else
        echo "blkio: $HDD_IOPS IOPS and $HDD_BPS B/s each way per image (loop devices, cache $HDD_CACHE; stock's host swap loop device limited alike)"
    fi
}

vmstat_swap() { awk '/^pswp(in|out) / { printf "%s ", $2 }' /proc/vmstat; }

# --- One run ------------------------------------------------------------------
NOOC_RSS_KIB=

run_one() {  # DISK SCENARIO ROUND [CPUS [TOGETHER-WITH [CPU-CGROUP]]]
    # the directory: '=' and ',' (SCENARIO@PROP=VALUE,...) would break
    # QEMU's option syntax in the paths run-guest.sh passes it
    local disk=$1 sc=$2 rn=$3 cpus=${4:-} with=${5:-} cpucg=${6:-} wd=$OUT/runs/$1-${2//[=,]/_} args=() topts= swapper= why
    [ "$rn" = 1 ] || wd=$wd.r$rn
    local t0 t1 rc=0 vm0 vm1 stock_limit= wrap= secs=$SECS
    [ "$disk" != hdd ] || secs=$HDD_SECS
    # SCENARIO@POLICY and SCENARIO@PROP=VALUE,...: that scenario with
    # another swapper policy or more swapper properties
    local base=${sc%%@*} pol=$POLICY extra= w words=()
    [ "$base" = "$sc" ] || IFS=, read -ra words <<< "${sc#*@}"
    for w in "${words[@]}"; do
        case "$w" in
        *=*) extra="$extra,$w" ;;
        ?*) pol=$w ;;
        esac
    done
    rm -rf "$wd"
    mkdir -p "$wd"
    case "$base" in
    nooc)             swapper="limit=$GUEST_MEM,policy=$pol"; topts="indirect=on" ;;
    baseline)         swapper="limit=$LIMIT,policy=$pol"; topts="indirect=off" ;;
    tesseract)        swapper="limit=$LIMIT,policy=$pol"; topts="indirect=on,defrag=off" ;;
    tesseract-defrag) swapper="limit=$LIMIT,policy=$pol"; topts="indirect=on,defrag=auto" ;;
    tesseract-lazy)   swapper="limit=$LIMIT,policy=$pol,background-swapin=off"; topts="indirect=on,defrag=off" ;;
    stock)            [ "$base" = "$sc" ] || die "stock has no swapper policy ('$sc')"
                      topts="indirect=on" ;;
    *) die "unknown scenario '$sc'" ;;
    esac
    swapper=$swapper$extra
    if [ "$sc" = stock ]; then
        why=$(stock_unsupported)
        if [ -n "$why" ]; then
            say "$disk/$sc: SKIPPED: $why"
            printf '{"disk": "%s", "scenario": "%s", "round": %s, "skipped": "%s"}\n' \
                "$disk" "$sc" "$rn" "$why" > "$wd/meta.json"
            return 0
        fi
        # the same guest-RAM budget as the swapper, plus what QEMU itself
        # needs besides guest RAM (measured in the nooc run, else 96 MiB)
        local overhead=$((96 * 1024))
        if [ -n "$NOOC_RSS_KIB" ] && [ "$NOOC_RSS_KIB" -gt $((GUEST_MEM_MIB * 1024)) ]; then
            overhead=$((NOOC_RSS_KIB - GUEST_MEM_MIB * 1024))
        fi
        stock_limit=$(( (LIMIT_MIB * 1024 + overhead) * 1024 ))
        host_swap_on "$disk" "$stock_limit"
        wrap="$HERE/cgroup-exec.sh $MEMCG"
        args+=("${HOST_SWAP_ARGS[@]}")
    fi
    [ -z "$swapper" ] || args+=(--swapper "$swapper")
    if [ "$disk" = hdd ]; then
        args+=(--hdd "$HDD_IOPS,$HDD_BPS,$HDD_CACHE" --hdd-layout "$HDD_LAYOUT")
        [ -z "$swapper" ] || args+=(--bsst-bench 200)
    elif [ "$disk" = hybrid ]; then
        args+=(--hdd "$HDD_IOPS,$HDD_BPS,$HDD_CACHE" --hdd-layout "$HDD_LAYOUT"
               --bsst-ssd --cache "$SSD_CACHE")
        [ -z "$swapper" ] || args+=(--bsst-bench 2000)
    else
        args+=(--cache "$SSD_CACHE")
        [ -z "$swapper" ] || args+=(--bsst-bench 2000)
    fi
    [ -z "$cpucg" ] || wrap="$HERE/cgroup-exec.sh $cpucg"
    [ -z "$wrap" ] || args+=(--wrap "$wrap")
    [ -z "$cpus" ] || args+=(--cpus "$cpus")
    [ -z "$SERIES" ] || args+=(--series "$SERIES")

    say "$disk/$sc (round $rn/$ROUNDS): running (${secs} s measured${with:+, at the same time as $with}${cpus:+, on CPU $cpus})"
    vm0=$(vmstat_swap)
    t0=$(date +%s.%N)
    "$GUEST/run-guest.sh" --quiet --workdir "$wd" --accel "$ACCEL" \
        -m "$GUEST_MEM" --timeout "$(run_timeout "$secs")" --workload jbb \
        --append "$GUEST_APPEND workload_bg=memhog memhog_mib=$MEMHOG_MIB jbb_heap_mib=$HEAP_MIB jbb_secs=$secs$HOG_START_APPEND$READBACK_APPEND" \
        --swap-disk "$SWAP_DISK" --bsst-size "$BSST_SIZE" --bsst-format "$BSST_FORMAT" \
        --bsst-preallocation "$BSST_PREALLOC" \
        --tesseract-opts "$topts" "${args[@]}" > /dev/null 2> "$wd/run-guest.err" || rc=$?
    t1=$(date +%s.%N)
    vm1=$(vmstat_swap)

    local cg_max= cg_fail= cg_oom=
    if [ "$sc" = stock ]; then
        cg_max=$(memcg_stat max_usage_in_bytes)
        cg_fail=$(memcg_stat failcnt)
        # the kernel's OOM killer in the memory cgroup (killed QEMU in 2
        # of 6 stock runs of one full run): a result of
        # host swapping, not of the harness
        cg_oom=$(memcg_oom_kills)
        host_cleanup
    fi
    # the BSST image's own 4 KiB read latency (run-guest.sh --bsst-bench:
    # queue depth 1, QEMU's cache mode and cgroup), next to the fault time
    local rawlat=
    rawlat=$(awk '{ print $2 }' "$wd/bsst-bench.txt" 2>/dev/null || true)
    if [ "$sc" = nooc ] && [ "$rc" = 0 ]; then
        NOOC_RSS_KIB=$(awk '/^VmHWM:/ { print $2 }' "$wd/qemu-proc.txt" 2>/dev/null || true)
    fi
    [ "$KEEP_IMAGES" = yes ] || rm -f "$wd"/*.qcow2 "$wd"/*.raw "$wd"/spindle.img
    local limit_mib=
    if [ "$sc" = nooc ]; then limit_mib=$GUEST_MEM_MIB
    elif [ -n "$swapper" ]; then limit_mib=$LIMIT_MIB; fi
    M_DISK=$disk M_SC=$sc M_ROUND=$rn M_RC=$rc M_T0=$t0 M_T1=$t1 M_VM0=$vm0 M_VM1=$vm1 \
    M_LIMIT=$limit_mib M_SWAPPER=$swapper M_TOPTS=$topts M_RAWLAT=$rawlat \
    M_THROTTLE=$(hdd_desc "$disk") M_CPUS=$cpus M_WITH=$with \
    M_PLACEMENT=${with:+$PLACEMENT} \
    M_STOCK_LIMIT=$stock_limit M_CG_MAX=$cg_max M_CG_FAIL=$cg_fail M_CG_OOM=$cg_oom \
    M_SECS=$secs M_MEM=$GUEST_MEM_MIB M_HOG=$MEMHOG_MIB M_HEAP=$HEAP_MIB M_HOG_START=$MEMHOG_START \
    M_FMT=$BSST_FORMAT M_ACCEL=$ACCEL M_APPEND=$GUEST_APPEND \
    M_SSD=$( [ "$disk" = ssd ] && { [ "$SSD_CACHE" = direct ] && echo "plain image files opened with cache.direct=on (O_DIRECT to this machine's disk, no host page cache)" || echo "plain image files in the host page cache"; } || true ) \
    /usr/bin/python3 - "$wd/meta.json" <<'EOF'
import json, os, sys
e = os.environ
num = lambda k: (float(e[k]) if "." in e[k] else int(e[k])) if e.get(k) else None
vm0, vm1 = e["M_VM0"].split(), e["M_VM1"].split()
ok = len(vm0) == 2 == len(vm1)
json.dump({
    "disk": e["M_DISK"], "scenario": e["M_SC"], "round": int(e["M_ROUND"]),
    "rc": int(e["M_RC"]),
    "wall_s": round(float(e["M_T1"]) - float(e["M_T0"]), 1),
    "secs": num("M_SECS"), "guest_mem_mib": num("M_MEM"),
    "limit_mib": num("M_LIMIT"), "memhog_mib": num("M_HOG"),
    "memhog_start_s": num("M_HOG_START"),
    "heap_mib": num("M_HEAP"), "swapper": e["M_SWAPPER"],
    "tesseract_opts": e["M_TOPTS"], "throttle": e["M_THROTTLE"],
    "bsst_format": e["M_FMT"], "accel": e["M_ACCEL"],
    "ssd_model": e["M_SSD"], "guest_append": e["M_APPEND"],
    "stock_cgroup_limit": num("M_STOCK_LIMIT"),
    "stock_cgroup_max_usage": num("M_CG_MAX"),
    "stock_cgroup_failcnt": num("M_CG_FAIL"),
    "stock_oom_kills": num("M_CG_OOM"),
    "host_pswpin": int(vm1[0]) - int(vm0[0]) if ok else None,
    "host_pswpout": int(vm1[1]) - int(vm0[1]) if ok else None,
    "bsst_raw_read_4k_us": num("M_RAWLAT"),
    "together_with": e["M_WITH"].split(),
    "cpus": e["M_CPUS"] or None,
    "cpu_placement": e["M_PLACEMENT"] or None,
}, open(sys.argv[1], "w"), indent=1)
EOF
    if [ "$rc" = 0 ]; then
        say "$disk/$sc (round $rn): done in $(echo "$t0 $t1" | awk '{ printf "%.0f", $2 - $1 }') s"
    else
        say "$disk/$sc (round $rn): FAILED (exit $rc): $(grep -m1 -E 'FAIL|error' "$wd/run-guest.err" || true)"
    fi
}

T0=$(date +%s)
for disk in $DISKS; do
    case "$disk" in ssd|hdd|hybrid) ;; *) die "unknown disk model '$disk' (ssd, hdd, hybrid)" ;; esac
done
# run_together DISK ROUND: the --together scenarios, all at once
run_together() {
    local disk=$1 rn=$2 i=0 n sc cpus cg pids=() others
    n=$(echo "$TOGETHER" | wc -w)
    for sc in $TOGETHER; do
        cpus= cg=
        # over the first n CPUs, so that in n rounds each side has each
        # of the same n CPUs once, whatever nproc is
        [ "$PIN" != yes ] || cpus=$(( (i + rn - 1) % n ))
        [ "$PIN" != shares ] || cg=${CPU_GROUPS[$i]}
        others=$(echo " $TOGETHER " | sed "s/ $sc / /" | xargs)
        run_one "$disk" "$sc" "$rn" "$cpus" "$others" "$cg" &
        pids+=($!)
        i=$((i + 1))
    done
    for p in "${pids[@]}"; do wait "$p" || true; done
    say "$disk: $n runs side by side (round $rn) done"
}

[ "$PIN" != shares ] || [ -z "$TOGETHER" ] || cpu_groups_on "$(echo "$TOGETHER" | wc -w)"
[ -z "$TOGETHER" ] || say "side by side in each round: $TOGETHER (CPU placement: $PLACEMENT)"
for rn in $(seq 1 "$ROUNDS"); do
    for disk in $DISKS; do
        started=no
        for sc in $SCENARIOS; do
            case " $TOGETHER " in
            *" $sc "*)
                [ "$started" = yes ] || run_together "$disk" "$rn"
                started=yes ;;
            *) run_one "$disk" "$sc" "$rn" ;;
            esac
        done
    done
done
say "all runs done in $(( $(date +%s) - T0 )) s; analysing"

rc=0
/usr/bin/python3 "$HERE/analyze.py" --mode "$MODE" "$OUT" || rc=$?
say "results: $OUT (summary.json, report.md, plots)"
if [ "$MODE" = quick ] && [ "$rc" != 0 ]; then
    say "FAIL: see $OUT/report.md"
fi
exit "$rc"

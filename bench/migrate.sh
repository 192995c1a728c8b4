#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# 'make bench-migrate': live migration of a guest with half its RAM
# swapped out, stock QEMU over host swap against the tesseract-swapper
# over a private BSST and over a shared one, side by side in one run.  A benchmark: it prints figures, it passes or
# fails on nothing but the runs themselves.
#
#   bench/migrate.sh [--quick] [--rounds N] [options]
#
#   --rounds N        rounds (default 3); each round runs the three
#                     configurations, one after the other, the order
#                     reversed from round to round
#   --quick           one round
#   --share PCT       the share of guest RAM swapped out before the
#                     migration (default 50)
#   --mib N           memhog's working set in MiB (default 160)
#   --hold SECS       how long memhog holds its memory before it verifies
#                     it and the guest powers off (default 60): long
#                     enough for the source to swap out (at most 30 s)
#                     and migrate (a round whose source saw memhog stop
#                     first fails)
#   --max-bandwidth B migrate-set-parameters max-bandwidth (bytes/s) on the
#                     source; default QEMU's (128 MiB/s)
#   --out DIR         results directory (default: migrate-DATE under
#                     bench/results/)
#   --keep-images     keep the guest disk and BSST images of every run
#
# One guest configuration: 256 MiB, 1 vCPU, microvm, TCG; workload
# memhog (tests/guest/workloads/memhog.c), which writes a pattern to
# every page of its working set, prints "memhog: holding", then sleeps
# without touching it (memverify cannot idle: after writing it verifies
# at once), and after --hold seconds verifies every page (on the
# destination by then) and exits.  Image files are opened with
# cache.direct=on (run-guest.sh --cache direct), the BSST's fault and
# migration reads too: both configurations read their swapped-out pages
# from this machine's disk, not from the host page cache.
#
# Both configurations start with no limit.  Once the guest has written
# its working set (the console shows "memhog: holding") the bench makes
# --share of guest RAM go out, then waits until the swapped-out amount has
# settled (bench/migrate.py drive):
#   stock    no swapper; QEMU in a cgroup v1 memory cgroup
#            (bench/cgroup-exec.sh through run-guest.sh --wrap) whose
#            memory.limit_in_bytes is lowered until that share of guest
#            RAM is on host swap: the Swap of QEMU's guest RAM mapping
#            (/proc/PID/smaps) less the cgroup's swap cache (memory.stat
#            swapcached); the kernel also swaps QEMU's other memory,
#            which the cgroup's "swap" counts too; the host swaps to a 1 GiB
#            swap file in the results directory, enabled for the bench
#            and removed at its end (swap the host already has is left
#            alone; ours gets the highest priority)
#   swapper  a tesseract-swapper over a private qcow2 BSST (as
#            tests/guest/migrate-test.sh), its limit set by qom-set to the
#            pages the guest touched minus that share
#   shared   the same with shared-bsst=on, both QEMUs on one BSST image
#            (run-guest.sh --bsst-image; the source starts first, as its
#            swapper formats the image, then the destination): the
#            swapped-out pages travel as their blocks, which the
#            destination adopts
# The source QEMU then migrates (run-guest.sh --migrate-to, with
# --migrate-gate: the bench opens the gate) over a unix socket to a
# second QEMU on this host started with -incoming (the same guest disk,
# --disk-image; stock: no cgroup; swapper: a swapper of its own, no
# limit, over its own BSST; shared: over the source's BSST).  The guest stays idle throughout: the faults
# counted are the migration's own.
#
# Figures per configuration, median over the rounds and each round:
# query-migrate's total-time, downtime and ram.transferred; the source
# QEMU's major faults (/proc/PID/stat majflt just before "migrate" and
# just after "completed"), the host's swap-ins (/proc/vmstat pswpin) and,
# stock, the cgroup's pgmajfault; swapper, the deltas of migration-faults,
# swap-ins and the pages sent from the BSST (or as blocks, and the
# destination's adopted blocks); the swapped-out share of guest RAM when
# the migration began.  Ratios to stock.  The
# destination's memhog verifies every page afterwards (its line is shown).
#
# Output: the table on stdout (also in report.txt), summary.json,
# bench-meta.json, and runs/CONFIG.rN/ with bench.json (the snapshots),
# meta.json, and the source's and destination's run-guest.sh workdirs
# (src/, dst/: console, query-tesseract, query-migrate, cmdline).
# Needs root, /sys/fs/cgroup/memory (cgroup v1) and swapon.  QEMU comes
# from build/ (TESSERACT_BUILD, or QEMU and QEMU_IMG, for another;
# bench/lib.sh).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
BENCH_NAME=bench-migrate
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

ROUNDS=3
SHARE=50
MIB=160
HOLD=60
MAX_BW=
OUT=
KEEP_IMAGES=no
GUEST_MEM=256M
PATTERN="memhog: holding"

while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) ROUNDS=$2; shift ;;
    --quick) ROUNDS=1 ;;
    --share) SHARE=$2; shift ;;
    --mib) MIB=$2; shift ;;
    --hold) HOLD=$2; shift ;;
    --max-bandwidth) MAX_BW=$2; shift ;;
    --out) OUT=$2; shift ;;
    --keep-images) KEEP_IMAGES=yes ;;
    -h|--help) bench_usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
done
for v in "$ROUNDS" "$SHARE" "$MIB" "$HOLD" ${MAX_BW:+"$MAX_BW"}; do
    bench_positive "$v" || die "not a positive number: '$v'"
done
[ "$SHARE" -lt 90 ] || die "--share: below 90"

# --- Prerequisites -----------------------------------------------------------
[ "$(id -u)" = 0 ] || die "needs root (memory cgroup, swapon)"
memcg_v1 || die "$MEMCG_V1_MISSING"
for c in mkswap swapon swapoff; do
    command -v "$c" > /dev/null || die "no $c (util-linux)"
done
bench_tools

if [ -z "$OUT" ]; then
    OUT=$HERE/results/migrate-$(date +%Y%m%d-%H%M%S)
fi
mkdir -p "$OUT/runs"
OUT=$(cd "$OUT" && pwd)

# --- Cleanup: our QEMUs, swap file and cgroups, at any exit ----------------------
# (the memory cgroup and swap file: bench/lib.sh)
PIDS=()
kill_tree() {  # pid: the process and everything under it, children first
    local c
    for c in $(pgrep -P "$1" || true); do
        kill_tree "$c"
    done
    kill "$1" 2>/dev/null || true
}
stop_runs() {
    local p
    for p in "${PIDS[@]}"; do
        kill_tree "$p"
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    PIDS=()
}
# shellcheck disable=SC2317  # called from the trap
cleanup() {
    stop_runs
    host_cleanup
}
bench_traps

# --- Host swap ----------------------------------------------------------------------
if [ -n "$(swapon --show --noheadings)" ]; then
    say "the host already has swap ($(swapon --show --noheadings | awk '{ print $1 }' | xargs)): left alone, ours comes first"
fi
swap_file_on "$OUT/host-swap" file 32767

DATE=$(date '+%Y-%m-%d %H:%M:%S %Z')
COMMIT=$(git -C "$TOP" rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(git -C "$TOP" status --porcelain --untracked-files=no 2>/dev/null)" ] || COMMIT="$COMMIT (with local changes)"
D_DATE=$DATE D_COMMIT=$COMMIT D_ROUNDS=$ROUNDS D_SHARE=$SHARE D_MIB=$MIB D_HOLD=$HOLD \
D_MEM=$GUEST_MEM D_BW=$MAX_BW D_HOST="$(uname -r), $(nproc) CPUs" "$PY" - "$OUT/bench-meta.json" <<'EOF'
import json, os, sys
e = os.environ
json.dump({"date": e["D_DATE"], "commit": e["D_COMMIT"],
           "rounds": int(e["D_ROUNDS"]), "share": int(e["D_SHARE"]),
           "guest_mem": e["D_MEM"], "accel": "tcg",
           "workload": "memhog %s MiB, idle (hold %s s)" % (e["D_MIB"], e["D_HOLD"]),
           "max_bandwidth": int(e["D_BW"]) if e["D_BW"] else None,
           "host": e["D_HOST"]}, open(sys.argv[1], "w"), indent=1)
EOF
say "$ROUNDS round(s), stock, swapper and shared, $SHARE% of $GUEST_MEM swapped out; results in $OUT"

# unix socket paths: < 108 bytes
sock_path() {  # DIR NAME
    local p=$1/$2
    [ ${#p} -lt 100 ] || p=$(mktemp -u "${TMPDIR:-/tmp}/tesseract-$2.XXXXXX")
    echo "$p"
}

# --- One migration ----------------------------------------------------------------
run_one() {  # CONFIG ROUND
    local cfg=$1 rn=$2 wd msock bsock gate common=() src_args=() t0
    local src_pid dst_pid src_rc=0 dst_rc=0 drive_rc=0 cg_oom='' cg_max=''
    wd=$OUT/runs/$cfg.r$rn
    rm -rf "$wd"
    mkdir -p "$wd"
    msock=$(sock_path "$wd" mig.sock)
    bsock=$(sock_path "$wd" bench.sock)
    gate=$wd/migrate.go
    rm -f "$msock" "$bsock" "$gate"
    "$QEMU_IMG" create -q -f qcow2 "$wd/guest.qcow2" 64M
    common=(--quiet -m "$GUEST_MEM" --accel tcg --workload memhog
            --append "memhog_mib=$MIB memhog_hold_secs=$HOLD"
            --plain-disk --disk-image "$wd/guest.qcow2" --cache direct)
    if [ "$cfg" = swapper ]; then
        # no limit until the working set is written (qom-set lowers it)
        common+=(--bsst-format qcow2 --bsst-size 1G --swapper "limit=$GUEST_MEM")
    elif [ "$cfg" = shared ]; then
        # one BSST image for both, which the source formats as it starts
        "$QEMU_IMG" create -q -f qcow2 "$wd/bsst.qcow2" 1G
        common+=(--bsst-image "$wd/bsst.qcow2" --swapper "limit=$GUEST_MEM,shared-bsst=on")
    fi
    say "$cfg (round $rn/$ROUNDS): running"
    t0=$(date +%s)
    if [ "$cfg" = stock ]; then
        memcg_on "tesseract-bench-migrate-$$" -1
        src_args=(--wrap "$HERE/cgroup-exec.sh $MEMCG")
    fi
    # the source migrates when the bench opens the gate
    start_src() {
        "$GUEST/run-guest.sh" "${common[@]}" "${src_args[@]}" --workdir "$wd/src" \
            --timeout 400 --migrate-to "unix:$msock" --migrate-on "$PATTERN" \
            --migrate-gate "$gate" -- -qmp "unix:$bsock,server=on,wait=off" \
            > /dev/null 2> "$wd/src.err" &
        src_pid=$!
        PIDS+=("$src_pid")
    }
    if [ "$cfg" = shared ]; then
        # the destination opens the BSST once the source formatted it
        start_src
        for _ in $(seq 300); do
            [ ! -s "$wd/src/console.log" ] || break
            kill -0 "$src_pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    # the destination runs until memhog's hold ends
    "$GUEST/run-guest.sh" "${common[@]}" --workdir "$wd/dst" \
        --timeout $((HOLD + 240)) --incoming "unix:$msock" \
        > /dev/null 2> "$wd/dst.err" &
    dst_pid=$!
    PIDS+=("$dst_pid")
    for _ in $(seq 300); do
        [ ! -S "$msock" ] || break
        kill -0 "$dst_pid" 2>/dev/null || break
        sleep 0.1
    done
    if [ ! -S "$msock" ]; then
        say "$cfg (round $rn): the destination does not listen: $(grep -m1 -E 'FAIL|error' "$wd/dst.err" || true)"
        stop_runs
        return 0
    fi
    [ "$cfg" = shared ] || start_src
    local drive=(drive --config "$cfg" --src "$wd/src" --sock "$bsock" --gate "$gate"
                 --pattern "$PATTERN" --share "$SHARE" --run-pid "$src_pid"
                 --out "$wd/bench.json")
    [ "$cfg" != stock ] || drive+=(--memcg "$MEMCG")
    [ -z "$MAX_BW" ] || drive+=(--max-bandwidth "$MAX_BW")
    # in the background: a signal to this script is handled at once
    "$PY" "$HERE/migrate.py" "${drive[@]}" 2> "$wd/drive.err" &
    PIDS+=($!)
    wait $! || drive_rc=$?
    if [ "$drive_rc" != 0 ]; then
        say "$cfg (round $rn): $(tail -1 "$wd/drive.err")"
        # no migration is coming: stop both sides
        kill_tree "$src_pid"
        kill_tree "$dst_pid"
    fi
    wait "$src_pid" || src_rc=$?
    wait "$dst_pid" || dst_rc=$?
    PIDS=()
    if [ "$cfg" = stock ]; then
        cg_oom=$(memcg_oom_kills)
        cg_max=$(memcg_stat max_usage_in_bytes)
        memcg_off
    fi
    rm -f "$msock" "$bsock"
    [ "$KEEP_IMAGES" = yes ] || rm -f "$wd"/guest.qcow2 "$wd"/bsst.qcow2 "$wd"/src/bsst.qcow2 "$wd"/dst/bsst.qcow2
    M_CFG=$cfg M_RN=$rn M_SRC=$src_rc M_DST=$dst_rc M_DRIVE=$drive_rc \
    M_DRIVE_ERR=$(tail -1 "$wd/drive.err" 2>/dev/null || true) \
    M_SRC_ERR=$(grep -m1 -E 'FAIL|error' "$wd/src.err" 2>/dev/null || true) \
    M_DST_ERR=$(grep -m1 -E 'FAIL|error' "$wd/dst.err" 2>/dev/null || true) \
    M_OOM=$cg_oom M_CGMAX=$cg_max M_WALL=$(( $(date +%s) - t0 )) \
    "$PY" - "$wd/meta.json" <<'EOF'
import json, os, sys
e = os.environ
num = lambda k: int(e[k]) if e.get(k) else None
json.dump({"config": e["M_CFG"], "round": int(e["M_RN"]),
           "src_rc": num("M_SRC"), "dst_rc": num("M_DST"),
           "drive_rc": num("M_DRIVE"), "drive_error": e["M_DRIVE_ERR"],
           "src_error": e["M_SRC_ERR"], "dst_error": e["M_DST_ERR"],
           "cg_oom": num("M_OOM"), "cg_max_usage": num("M_CGMAX"),
           "wall_s": num("M_WALL")}, open(sys.argv[1], "w"), indent=1)
EOF
    if [ "$src_rc" = 0 ] && [ "$dst_rc" = 0 ] && [ "$drive_rc" = 0 ]; then
        say "$cfg (round $rn): done in $(( $(date +%s) - t0 )) s"
    else
        say "$cfg (round $rn): FAILED (source $src_rc, destination $dst_rc, bench $drive_rc)"
        [ "$src_rc" = 0 ] || say "  source: $(grep -m1 -E 'FAIL|error' "$wd/src.err" || true)"
        [ "$dst_rc" = 0 ] || say "  destination: $(grep -m1 -E 'FAIL|error' "$wd/dst.err" || true)"
    fi
}

T0=$(date +%s)
for rn in $(seq 1 "$ROUNDS"); do
    # alternate the order: neither configuration always runs first
    if [ $((rn % 2)) = 1 ]; then order="stock swapper shared"; else order="shared swapper stock"; fi
    for cfg in $order; do
        run_one "$cfg" "$rn"
    done
done
cleanup
say "all runs done in $(( $(date +%s) - T0 )) s"
echo
"$PY" "$HERE/migrate.py" report "$OUT"

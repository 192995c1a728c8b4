# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=bash disable=SC2034  # its variables are the scripts'
#
# Shared by bench/run.sh and bench/migrate.sh: sourced once the script has
# set HERE (bench/) and BENCH_NAME (the prefix of its messages).
#
#   say MSG...            BENCH_NAME: MSG on stderr
#   die MSG...            BENCH_NAME: error: MSG on stderr; exit 2
#   bench_usage           the script's header comment (its --help)
#   bench_positive N      true if N is a positive integer
#   bench_tools           die unless $QEMU is there and the guest kit builds
#   bench_traps           the script's cleanup() at any exit; INT, TERM
#                         and HUP exit 130 through it
#
# The stock configuration's memory cgroup (cgroup v1) and host swap file,
# one at a time, in globals (not in a subshell: the cleanup must see them):
#   memcg_v1              true if $MEMCG_ROOT has the memory controller
#                         ($MEMCG_V1_MISSING says it is not there)
#   memcg_on NAME LIMIT   MEMCG=$MEMCG_ROOT/NAME, made, with
#                         memory.limit_in_bytes LIMIT (-1: none)
#   memcg_stat FILE       MEMCG's memory.FILE, or nothing
#   memcg_oom_kills       the OOM killer's kills in MEMCG, or nothing
#   memcg_off             kill what is left in MEMCG (our QEMU, by pid) and
#                         remove it
#   swap_file_on FILE DIO [PRIORITY]
#                         a 1 GiB swap area in FILE (mode 600), enabled on
#                         a loop device over it (losetup --direct-io=DIO,
#                         on or off) or, with DIO "file", on FILE itself;
#                         PRIORITY: swapon -p.  Sets SWAPFILE, SWAPDEV and
#                         LOOPDEV (the loop device, if any)
#   swap_file_off         swapoff, detach the loop device, remove the file
#   host_cleanup          memcg_off and swap_file_off
#
# Paths: TOP, GUEST (tests/guest), BUILD ($TESSERACT_BUILD, default
# build/), QEMU and QEMU_IMG (default: in BUILD; exported, so that
# tests/guest/run-guest.sh runs the same ones).

TOP=$(cd "$HERE/.." && pwd)
GUEST=$TOP/tests/guest
BUILD=${TESSERACT_BUILD:-$TOP/build}
QEMU=${QEMU:-$BUILD/qemu-system-x86_64}
QEMU_IMG=${QEMU_IMG:-$BUILD/qemu-img}
export QEMU QEMU_IMG
PY=/usr/bin/python3

say() { printf '%s: %s\n' "$BENCH_NAME" "$*" >&2; }
die() { printf '%s: error: %s\n' "$BENCH_NAME" "$*" >&2; exit 2; }

bench_usage() {
    sed -n '4,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

bench_positive() {  # N
    case "$1" in ''|*[!0-9]*|0) return 1 ;; esac
}

bench_tools() {
    [ -x "$QEMU" ] || die "no QEMU at $QEMU (run 'make')"
    "$GUEST/build-kit.sh" > /dev/null || die "cannot build the guest kit"
}

bench_traps() {
    trap cleanup EXIT
    trap 'exit 130' INT TERM HUP
}

# --- Memory cgroup (cgroup v1) ---------------------------------------------------
MEMCG_ROOT=/sys/fs/cgroup/memory
MEMCG_V1_MISSING="no cgroup v1 memory controller at $MEMCG_ROOT"
MEMCG=

memcg_v1() {
    [ -f "$MEMCG_ROOT/memory.limit_in_bytes" ]
}

memcg_on() {  # NAME LIMIT
    MEMCG=$MEMCG_ROOT/$1
    mkdir -p "$MEMCG"
    echo "$2" > "$MEMCG/memory.limit_in_bytes"
}

memcg_stat() {  # FILE
    cat "$MEMCG/memory.$1" 2>/dev/null || true
}

memcg_oom_kills() {
    awk '$1 == "oom_kill" { print $2 }' "$MEMCG/memory.oom_control" 2>/dev/null || true
}

memcg_off() {
    [ -n "$MEMCG" ] || return 0
    local p
    # a QEMU still in it (its run was not ended): ours, by pid
    while read -r p; do
        kill -KILL "$p" 2>/dev/null || true
    done 2>/dev/null < "$MEMCG/cgroup.procs" || true
    for _ in $(seq 50); do
        rmdir "$MEMCG" 2>/dev/null && break
        sleep 0.1
    done
    [ ! -d "$MEMCG" ] || say "warning: cannot remove the cgroup $MEMCG"
    MEMCG=
}

# --- Host swap file ----------------------------------------------------------------
SWAPFILE=
SWAPDEV=
LOOPDEV=

swap_file_on() {  # FILE DIO [PRIORITY]
    local file=$1 dio=$2 prio=${3:-}
    SWAPFILE=$file
    dd if=/dev/zero of="$file" bs=1M count=1024 status=none || die "cannot write $file"
    chmod 600 "$file"
    if [ "$dio" = file ]; then
        SWAPDEV=$file
    else
        LOOPDEV=$(losetup -f --show --direct-io="$dio" "$file") || die "losetup $file failed"
        SWAPDEV=$LOOPDEV
    fi
    mkswap "$SWAPDEV" > /dev/null || die "mkswap $SWAPDEV failed"
    swapon ${prio:+-p "$prio"} "$SWAPDEV" || die "swapon $SWAPDEV failed"
}

swap_file_off() {
    [ -z "$SWAPDEV" ] || swapoff "$SWAPDEV" 2>/dev/null || true
    [ -z "$LOOPDEV" ] || losetup -d "$LOOPDEV" 2>/dev/null || true
    [ -z "$SWAPFILE" ] || rm -f "$SWAPFILE"
    SWAPFILE='' SWAPDEV='' LOOPDEV=''
}

host_cleanup() {
    memcg_off
    swap_file_off
}

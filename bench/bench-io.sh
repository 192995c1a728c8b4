#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# I/O-path overhead of a tesseract node with no indirections against the
# plain qcow2 node under it, side by side in one run (rounds alternate so
# that machine noise hits both alike), plus the indirection map's lookup
# time and RAM per indirection at 1M entries.
#
#   bench/bench-io.sh [--quick]
#
# qemu-img bench has no random mode; a stride of 104729 blocks (a prime,
# coprime with the image's block count) visits every 4 KiB block of the
# image once in a scattered order, which defeats readahead like random I/O.
#
# The image is 1 GiB, two qcow2 L2 tables, so that every configuration
# starts with the first request's L2 table cold.  The tesseract node reads
# its label in the image's last block at open; on an image of 512 MiB or
# less (one L2 table) that read loads the table the first request needs.  How the first queue-depth batch starts
# decides the whole run with linux-aio: after a cold L2 load the 32
# requests go out together and stay in batches of 32 (6,253 io_submit
# calls for 200,000 reads); started one by one they stay split (7,570 to
# 182,013 calls, a plain file node alike), and each batch costs a virtio
# doorbell on this machine's disk.  A 256 MiB image gave the tesseract
# node the split start alone and made it look 13% slower.
set -euo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
B="$TOP/build"
IMG_MB=1024
COUNT=200000
ROUNDS=11
[ "${1:-}" = "--quick" ] && { COUNT=20000; ROUNDS=1; }
STEP=$((104729 * 4096))
WD=$(mktemp -d "${TMPDIR:-/var/tmp}/tesseract-bench-io.XXXXXX")
trap 'rm -rf "$WD"' EXIT

"$B/qemu-img" create -q -f qcow2 "$WD/guest.qcow2" ${IMG_MB}M
"$B/qemu-img" create -q -f qcow2 "$WD/bsst.qcow2" 1G
# allocate every cluster so that reads do real I/O
"$B/qemu-io" -f qcow2 -c "write -P 0x5a 0 ${IMG_MB}M" "$WD/guest.qcow2" >/dev/null

# O_DIRECT + linux-aio when the file system allows it
DIRECT=on AIO=native
if ! "$B/qemu-io" --image-opts -c 'read 0 4k' \
        "driver=qcow2,file.driver=file,file.filename=$WD/guest.qcow2,file.cache.direct=on,file.aio=native" \
        >/dev/null 2>&1; then
    DIRECT=off AIO=threads      # no O_DIRECT on this file system
fi
CACHE="cache.direct=$DIRECT, aio=$AIO"
PLAIN="driver=qcow2,file.driver=file,file.filename=$WD/guest.qcow2,file.cache.direct=$DIRECT,file.aio=$AIO"
# control: any extra format layer (raw) over the same qcow2 node
LAYER="driver=raw,file.driver=qcow2,file.file.driver=file,file.file.filename=$WD/guest.qcow2,file.file.cache.direct=$DIRECT,file.file.aio=$AIO"
TSR="driver=tesseract,file.driver=qcow2,file.file.driver=file,file.file.filename=$WD/guest.qcow2,file.file.cache.direct=$DIRECT,file.file.aio=$AIO,bsst.driver=qcow2,bsst.file.driver=file,bsst.file.filename=$WD/bsst.qcow2"

run() {  # opts extra-args -> ops/s, from qemu-img bench's own timing
    local out secs
    out=$("$B/qemu-img" bench --image-opts -c "$COUNT" -d 32 -s 4096 \
          -S "$STEP" "${@:2}" "$1" 2>&1) || {
        echo "bench-io: qemu-img bench failed: $out" >&2
        return 1
    }
    secs=$(echo "$out" | sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p')
    [ -n "$secs" ] || { echo "bench-io: no timing in: $out" >&2; return 1; }
    echo "$COUNT / $secs" | bc -l
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }

declare -A R
for mode in read write; do
    extra=()
    [ "$mode" = write ] && extra=(-w --pattern=0x33)
    plain=() layer=() tsr=()
    # rotate which goes first, so order effects cancel out
    for ((i = 0; i < ROUNDS; i++)); do
        for k in 0 1 2; do
            case $(( (i + k) % 3 )) in
            0) v=$(run "$PLAIN" "${extra[@]}") || exit 1; plain+=("$v") ;;
            1) v=$(run "$LAYER" "${extra[@]}") || exit 1; layer+=("$v") ;;
            2) v=$(run "$TSR" "${extra[@]}") || exit 1; tsr+=("$v") ;;
            esac
        done
    done
    R[$mode-plain]=$(printf '%s\n' "${plain[@]}" | median)
    R[$mode-layer]=$(printf '%s\n' "${layer[@]}" | median)
    R[$mode-tsr]=$(printf '%s\n' "${tsr[@]}" | median)
    # each round's own overheads: the machine's speed drifts between
    # rounds, the three runs of one round see about the same machine
    R[$mode-vp]=$(for ((i = 0; i < ROUNDS; i++)); do
        echo "(${plain[i]} - ${tsr[i]}) * 100 / ${plain[i]}" | bc -l
    done | median)
    R[$mode-vl]=$(for ((i = 0; i < ROUNDS; i++)); do
        echo "(${layer[i]} - ${tsr[i]}) * 100 / ${layer[i]}" | bc -l
    done | median)
done

"$B/tests/unit/tesseract/bench-bsst-map" 1000000 > "$WD/map.txt"
lookup=$(sed -n 's/.*lookup_ns=\([0-9.]*\).*/\1/p' "$WD/map.txt")
bytes=$(sed -n 's/.*bytes_per_indirection=\([0-9.]*\).*/\1/p' "$WD/map.txt")

printf '\nqemu-img bench: 4 KiB, queue depth 32, %d requests, scattered stride, %s, median of %d rounds\n' \
    "$COUNT" "$CACHE" "$ROUNDS"
printf '%-6s %12s %14s %16s %14s %14s\n' "mode" "qcow2 ops/s" "raw/qcow2 ops/s" \
    "tesseract ops/s" "vs qcow2" "vs raw/qcow2"
for mode in read write; do
    p=${R[$mode-plain]} l=${R[$mode-layer]} t=${R[$mode-tsr]}
    printf '%-6s %12.0f %14.0f %16.0f %13.2f%% %13.2f%%\n' "$mode" "$p" "$l" "$t" \
        "${R[$mode-vp]}" "${R[$mode-vl]}"
done
echo "(ops/s: medians of the rounds; overhead: the median of the rounds' own"
echo " overheads, how much slower the tesseract node was than the other two"
echo " runs of its round; raw/qcow2 is any extra format layer over the same"
echo " qcow2 node, the block layer's own cost)"
printf '\nindirection map at 1M entries: lookup %.0f ns, %.2f bytes of RAM per indirection\n' \
    "$lookup" "$bytes"

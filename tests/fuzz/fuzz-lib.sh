# SPDX-License-Identifier: GPL-2.0-or-later
#
# Shared by tests/fuzz/fuzz-test.sh (make check) and
# tests/long/fuzz-long-test.sh (make check-long): build the libFuzzer
# targets, replay their seeds and regression corpus, fuzz each for a
# while.  Prints TAP lines; the caller prints the plan.

FZ_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FZ_OUT="$FZ_TOP/build/tests/fuzz"
FZ_CORPUS="$FZ_TOP/tests/fuzz/corpus"
FZ_TARGETS="sb replay ckpt open"
FZ_N=0

fz_tap() {  # ok|not-ok description
    FZ_N=$((FZ_N + 1))
    if [ "$1" = ok ]; then
        echo "ok $FZ_N - $2"
    else
        echo "not ok $FZ_N - $2"
    fi
}

fz_max_len() {  # target: the largest input it reads
    case "$1" in
    sb) echo 8192 ;;
    replay) echo $((32 + 4 * 4096)) ;;
    ckpt) echo $((16 + 4 * 4096)) ;;
    open) echo $((12 * 4096)) ;;
    esac
}

# Build the targets (and their seeds).  0 on success.
fz_build() {
    local log="$FZ_OUT/build.log"

    mkdir -p "$FZ_OUT"
    if ! command -v "${CLANG:-clang}" >/dev/null; then
        fz_tap not-ok "build the fuzz targets: clang is not installed (./configure installs it)"
        return 1
    fi
    if make -s -f "$FZ_TOP/tests/fuzz/Makefile" > "$log" 2>&1; then
        fz_tap ok "build the fuzz targets (clang, ASan, UBSan, libFuzzer)"
        return 0
    fi
    fz_tap not-ok "build the fuzz targets (see $log)"
    tail -20 "$log" | sed 's/^/# /'
    return 1
}

# Run every seed and every committed regression input once.
fz_replay() {  # target
    local t=$1 log="$FZ_OUT/replay-$1.log" dirs n
    dirs="$FZ_OUT/seeds/$t"
    [ -d "$FZ_CORPUS/$t" ] && dirs="$dirs $FZ_CORPUS/$t"
    n=$(find $dirs -type f ! -name 'README*' | wc -l)
    # shellcheck disable=SC2086
    if "$FZ_OUT/fuzz-$t" -runs=0 -max_len="$(fz_max_len "$t")" \
           -timeout=10 $dirs > "$log" 2>&1; then
        fz_tap ok "fuzz-$t: $n seed and regression inputs replayed"
    else
        fz_tap not-ok "fuzz-$t: replaying seeds and regression inputs failed (see $log)"
        grep -E 'PROPERTY|ERROR|runtime error|SUMMARY' "$log" | head -5 | sed 's/^/# /'
    fi
}

# Fuzz one target for @secs seconds, adding to the corpus in @work.
fz_run() {  # target secs work-dir
    local t=$1 secs=$2 work=$3 log="$FZ_OUT/run-$1.log" dirs runs rate new
    mkdir -p "$work" "$FZ_OUT/artifacts"
    dirs="$FZ_OUT/seeds/$t"
    [ -d "$FZ_CORPUS/$t" ] && dirs="$dirs $FZ_CORPUS/$t"
    # shellcheck disable=SC2086
    if "$FZ_OUT/fuzz-$t" -max_total_time="$secs" -max_len="$(fz_max_len "$t")" \
           -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
           -artifact_prefix="$FZ_OUT/artifacts/$t-" \
           "$work" $dirs > "$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
        new=$(sed -n 's/^stat::new_units_added: *//p' "$log")
        fz_tap ok "fuzz-$t: ${secs} s, ${runs:-?} inputs (${rate:-?} exec/s), ${new:-?} new corpus inputs, no finding"
    else
        fz_tap not-ok "fuzz-$t: finding after fuzzing (log $log, input in $FZ_OUT/artifacts/)"
        grep -E 'PROPERTY|ERROR|runtime error|SUMMARY|Test unit written' "$log" | head -8 | sed 's/^/# /'
    fi
}

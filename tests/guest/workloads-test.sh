#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The guest workloads run on the host (they are plain static programs):
# memhog's start file (it must create --ready at once and inflate only once
# jbb's --measuring file exists), its verification, jbb's measuring file
# and its verdict.  Prints TAP.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$T"' EXIT
n=0
fails=0

check() {   # NAME COND...
    local name=$1
    shift
    n=$((n + 1))
    if "$@"; then
        echo "ok $n - workloads: $name"
    else
        echo "not ok $n - workloads: $name"
        fails=$((fails + 1))
    fi
}

for w in memhog jbb; do
    gcc -static -O2 -Wall -o "$T/$w" "$HERE/workloads/$w.c" 2> "$T/$w.cc" || {
        echo "1..1"; echo "not ok 1 - workloads: compile $w"; cat "$T/$w.cc"; exit 1; }
done

# jbb --measuring: the file appears once the heap is built; 0 corrupt
"$T/jbb" --heap-mib 4 --secs 1 --measuring "$T/measuring" > "$T/jbb.out"
rc=$?
check "jbb exits 0 and creates its --measuring file" \
    test "$rc" = 0 -a -e "$T/measuring"
check "jbb reports 0 corrupt objects" \
    grep -q "^jbb: done: .* 0 corrupt objects$" "$T/jbb.out"

# memhog --start-file: ready at once, no memory until the file exists
rm -f "$T/ready" "$T/start"
"$T/memhog" --mib 8 --ready "$T/ready" --start-file "$T/start" \
    --start-secs 2 > "$T/memhog.out" &
pid=$!
for _ in $(seq 50); do [ -e "$T/ready" ] && break; sleep 0.1; done
sleep 0.5
rss0=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
check "memhog --start-file creates --ready before inflating" test -e "$T/ready"
check "memhog --start-file holds no memory before the file (RSS ${rss0} KiB)" \
    test "${rss0:-99999}" -lt 4096
touch "$T/start"
sleep 0.5
rss1=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
check "memhog waits --start-secs after the file (RSS ${rss1} KiB)" \
    test "${rss1:-99999}" -lt 4096
for _ in $(seq 100); do grep -q "^memhog: holding" "$T/memhog.out" && break; sleep 0.1; done
rss2=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
check "memhog inflates after the file and --start-secs (RSS ${rss2} KiB)" \
    test "${rss2:-0}" -ge 8192
kill -USR1 "$pid"
wait "$pid"
rc=$?
check "memhog verifies all it held and exits 0" \
    test "$rc" = 0 -a -n "$(grep -E '^memhog: inflated 8 MiB in [0-9.]+ s$' "$T/memhog.out")" \
    -a -n "$(grep -E '^memhog: held 8 MiB .* 2048 pages verified, 0 corrupt pages$' "$T/memhog.out")"

# stopped before the start file: a failure, not a silent pass
rm -f "$T/start"
"$T/memhog" --mib 8 --start-file "$T/start" > "$T/memhog2.out" &
pid=$!
sleep 0.3
kill -USR1 "$pid"
wait "$pid"
rc=$?
check "memhog stopped before its start file exits 3 and says why" \
    test "$rc" = 3 -a -n "$(grep "stopped before $T/start appeared" "$T/memhog2.out")"

echo "1..$n"
[ "$fails" = 0 ]

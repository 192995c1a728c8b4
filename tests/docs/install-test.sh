#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# 'make install' installs what the docs name: the binaries in PREFIX/bin
# (the user guide's libvirt <emulator> is the default PREFIX's), the docs
# in PREFIX/share/doc/tesseract-qemu, under DESTDIR.  TAP.
#
#   tests/docs/install-test.sh      (TESSERACT_BUILD: another build)
set -uo pipefail

TOP=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${TESSERACT_BUILD:-$TOP/build}
N=0
FAIL=0
ok() { N=$((N + 1)); echo "ok $N - $1"; }
not_ok() { N=$((N + 1)); FAIL=1; echo "not ok $N - $1"; }

if [ ! -x "$BUILD/qemu-system-x86_64" ]; then
    echo "ok 1 - make install # SKIP no $BUILD/qemu-system-x86_64: run make first"
    echo "1..1"
    exit 0
fi
WD=$(mktemp -d "${TMPDIR:-/tmp}/tesseract-install.XXXXXX")
trap 'rm -rf "$WD"' EXIT

# the default PREFIX under a DESTDIR, then a PREFIX of its own
if make -s -C "$TOP" install BUILD="$BUILD" DESTDIR="$WD/dest" \
        > "$WD/log" 2>&1; then
    ok "make install DESTDIR=... (default PREFIX /usr/local)"
else
    not_ok "make install DESTDIR=...: $(tail -3 "$WD/log")"
fi
if make -s -C "$TOP" install BUILD="$BUILD" PREFIX="$WD/prefix" \
        > "$WD/log" 2>&1; then
    ok "make install PREFIX=..."
else
    not_ok "make install PREFIX=...: $(tail -3 "$WD/log")"
fi

for root in "$WD/dest/usr/local" "$WD/prefix"; do
    missing=
    for b in qemu-system-x86_64 qemu-img qemu-io qemu-nbd qemu-storage-daemon; do
        [ -x "$root/bin/$b" ] || missing="$missing bin/$b"
    done
    for d in README.md docs/system/tesseract.rst docs/devel/tesseract.rst \
             docs/interop/bsst-format.rst docs/results.md docs/fuzzing.md \
             bench/README.md; do
        [ -f "$root/share/doc/tesseract-qemu/$d" ] || \
            missing="$missing share/doc/tesseract-qemu/$d"
    done
    if [ -z "$missing" ]; then
        ok "${root#"$WD"/}: the binaries and the docs"
    else
        not_ok "${root#"$WD"/}: missing:$missing"
    fi
done

# the installed emulator runs, and knows the driver and the swapper
out=$(printf '%s\n' '{"execute":"qmp_capabilities"}' '{"execute":"quit"}' | \
      timeout 30 "$WD/prefix/bin/qemu-system-x86_64" -M q35 -S -display none \
          -qmp stdio -object tesseract-swapper,help 2>&1)
if echo "$out" | grep -q "limit=" && \
   "$WD/prefix/bin/qemu-img" --help | grep -qw tesseract; then
    ok "installed qemu-system-x86_64 and qemu-img know tesseract"
else
    not_ok "installed binaries: $(echo "$out" | tail -2)"
fi

# the user guide's libvirt <emulator> is what the default PREFIX installs
emu=$(sed -n 's|^ *<emulator>\(.*\)</emulator>|\1|p' \
          "$TOP/docs/system/tesseract.rst")
if [ "$emu" = /usr/local/bin/qemu-system-x86_64 ] && \
   [ -x "$WD/dest$emu" ]; then
    ok "the user guide's <emulator> $emu is installed"
else
    not_ok "the user guide's <emulator> '$emu' is not what make install installs"
fi
echo "1..$N"
exit $FAIL

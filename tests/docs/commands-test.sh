#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Every command README.md and docs/system/tesseract.rst show runs against
# the build, in a scratch directory, with the build's binaries first in
# PATH (qemu-img, qemu-io, qemu-system-x86_64, qemu-storage-daemon).
# Blocks that need a guest or libvirt carry a "not run" marker with the
# reason (TAP SKIP).  tests/docs/doc-commands.py says which blocks are
# commands and how a VM's command line is run (-S, QMP, quit).  TAP.
#
#   tests/docs/commands-test.sh      (TESSERACT_BUILD: another build)
set -euo pipefail

TOP=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${TESSERACT_BUILD:-$TOP/build}
for b in qemu-img qemu-system-x86_64; do
    if [ ! -x "$BUILD/$b" ]; then
        echo "ok 1 - documented commands # SKIP no $BUILD/$b: run make first"
        exit 0
    fi
done
WD=$(mktemp -d "${TMPDIR:-/tmp}/tesseract-docs.XXXXXX")
trap 'rm -rf "$WD"' EXIT
mkdir -p "$WD/bin"
for b in qemu-img qemu-io qemu-nbd qemu-system-x86_64 \
         storage-daemon/qemu-storage-daemon; do
    [ -x "$BUILD/$b" ] && ln -s "$BUILD/$b" "$WD/bin/$(basename "$b")"
done
cd "$TOP"
PATH="$WD/bin:$PATH" /usr/bin/python3 tests/docs/doc-commands.py "$WD" \
    README.md docs/system/tesseract.rst

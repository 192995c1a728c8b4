# SPDX-License-Identifier: GPL-2.0-or-later
#
# Shared by the guest tests (sourced; the test sets NAME first):
#   gt_workdir KEEP      WD: the directory KEEP if set (kept), else a
#                        temporary one removed at exit
#   not_ok REASON        the TAP failure line, then as '# ' lines the
#                        test's $WD/err and $WD/figures and the guest
#                        console's last lines; exit 1
#   gt_kit               build the guest kit (its output is no failure)
#   gt_run ARGS...       run-guest.sh --quiet --workdir $WD/run ARGS;
#                        not_ok with run-guest's first error if it fails
#   gt_ok                the TAP success line, then $WD/figures as '# '
#   gt_skip REASON       the TAP skip line; exit 0
#   gt_kvm               gt_skip unless /dev/kvm is there and $QEMU can
#                        use it
#   gt_boot_sector SRC   assemble SRC (GNU as, 16-bit entry) into the
#                        boot sector of a 1 MiB raw disk, $WD/disk.img

gt_workdir() {
    if [ -n "$1" ]; then
        mkdir -p "$1"
        WD=$(cd "$1" && pwd)
    else
        WD=$(mktemp -d "${TMPDIR:-/tmp}/tesseract-guest-test.XXXXXX")
        trap 'rm -rf "$WD"' EXIT
    fi
}

not_ok() {
    echo "not ok - $NAME: $1"
    [ -s "$WD/err" ] && sed 's/^/# /' "$WD/err"
    [ -s "$WD/figures" ] && sed 's/^/# /' "$WD/figures"
    if [ -s "$WD/run/console.log" ]; then
        echo "# last lines of the guest console:"
        tr -d '\r' < "$WD/run/console.log" | tail -12 | sed 's/^/#   /'
    fi
    exit 1
}

gt_kit() {
    "$HERE/build-kit.sh" > "$WD/err" 2>&1 || not_ok "cannot build the guest kit"
}

gt_run() {
    "$HERE/run-guest.sh" --quiet --workdir "$WD/run" "$@" \
        > /dev/null 2> "$WD/err" \
        || not_ok "$(grep -m1 -E 'FAIL|error' "$WD/err" | sed -E 's/^run-guest: (FAIL|error): //')"
}

gt_ok() {
    echo "ok - $NAME"
    [ ! -s "$WD/figures" ] || sed 's/^/# /' "$WD/figures"
}

gt_skip() {
    echo "ok - $NAME # SKIP $1"
    exit 0
}

gt_kvm() {
    [ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ] || \
        gt_skip "no usable /dev/kvm"
    if ! printf '%s\n' '{"execute":"qmp_capabilities"}' '{"execute":"quit"}' | \
            timeout 30 "$QEMU" -accel kvm -machine none -nodefaults \
            -display none -qmp stdio > "$WD/kvm-probe.out" 2>&1; then
        gt_skip "QEMU cannot use KVM here: $(grep -m1 -v '^{' "$WD/kvm-probe.out" || true)"
    fi
}

gt_boot_sector() {
    as --32 -o "$WD/boot.o" "$1" 2> "$WD/err" || \
        not_ok "cannot assemble $(basename "$1") (binutils)"
    ld -m elf_i386 -Ttext 0x7c00 --oformat binary -o "$WD/boot.bin" \
        "$WD/boot.o" 2> "$WD/err" || not_ok "cannot link $(basename "$1")"
    truncate -s 1M "$WD/disk.img"
    dd if="$WD/boot.bin" of="$WD/disk.img" conv=notrunc status=none
}

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Build the guest kit: a Debian cloud kernel and a busybox initramfs that
# runs the project's workloads (tests/guest/workloads/*.c).
#
#   tests/guest/build-kit.sh [OUTDIR]        (default: tests/guest/out)
#
# Outputs OUTDIR/vmlinuz, OUTDIR/initramfs.cpio.gz and OUTDIR/firmware/
# (qboot and the option ROMs that -kernel needs).  Packages come from
# Debian's archive with 'apt-get download' (nothing is installed on the
# host): the kernel behind linux-image-cloud-amd64, busybox-static and
# qemu-system-data, cached in ${TESSERACT_CACHE:-~/.cache/tesseract-qemu}/guest-debs.
# A second run rebuilds only what changed.
#
# Environment: TESSERACT_CACHE (download cache), GUEST_KERNEL_PKG (the
# kernel metapackage, default linux-image-cloud-amd64), CC (default gcc).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$HERE/out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
CACHE=${TESSERACT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tesseract-qemu}
DEBS=$CACHE/guest-debs
META=${GUEST_KERNEL_PKG:-linux-image-cloud-amd64}
CC=${CC:-gcc}
# insmod order; only those shipped as modules are packed (see init)
MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev
         virtio_pci virtio_mmio virtio_blk virtio_balloon"

say() { printf 'build-kit: %s\n' "$*"; }
die() { printf 'build-kit: error: %s\n' "$*" >&2; exit 1; }

mkdir -p "$DEBS"

# --- 1. Which packages and versions -----------------------------------------
# apt-cache takes a second per call here, so the answer is remembered until
# apt's package lists change.
APT_UPDATED=no
apt_update() {
    [ "$APT_UPDATED" = no ] || return 0
    APT_UPDATED=yes
    [ "$(id -u)" = 0 ] || { say "not root: cannot run apt-get update"; return 1; }
    say "running apt-get update"
    apt-get update -qq >/dev/null 2>&1 || say "apt-get update failed"
}

resolve() {  # prints "KERNEL-PKG KERNEL-VER BUSYBOX-VER FIRMWARE-VER"
    local kpkg
    kpkg=$(apt-cache depends "$META" 2>/dev/null \
           | sed -n 's/^ *Depends: \(linux-image-[^ ]*\)$/\1/p' | head -1)
    [ -n "$kpkg" ] || return 0
    # candidates; for qemu-system-data prefer a 10.0.x (the QEMU we build)
    apt-cache policy "$kpkg" busybox-static qemu-system-data 2>/dev/null \
        | awk -v k="$kpkg" '
        /^[^ ]/ { pkg = $1; sub(/:$/, "", pkg) }
        /^ *Candidate:/ { v[pkg] = $2 }
        pkg == "qemu-system-data" && NF == 2 && $2 ~ /^[0-9]+$/ && \
            $1 ~ /^1:10\.0\./ && !fw { fw = $1 }
        pkg == "qemu-system-data" && $1 == "***" && $2 ~ /^1:10\.0\./ && !fw { fw = $2 }
        END { print k, v[k], v["busybox-static"], fw ? fw : v["qemu-system-data"] }'
}

apt_key() {  # changes whenever apt's package lists change
    local newest
    newest=$(stat -c %Y /var/lib/apt/lists /var/lib/apt/lists/*Packages* 2>/dev/null \
             | sort -n | tail -1 || true)
    echo "$META $newest"
}
APT_KEY=$(apt_key)
RESOLVED=
if [ "$(sed -n 1p "$OUT/.apt-resolve" 2>/dev/null)" = "$APT_KEY" ]; then
    RESOLVED=$(sed -n 2p "$OUT/.apt-resolve")
fi
if [ -z "$RESOLVED" ]; then
    RESOLVED=$(resolve)
    if [ -z "$RESOLVED" ]; then
        apt_update || true
        RESOLVED=$(resolve)
    fi
    if [ -n "$RESOLVED" ]; then
        APT_KEY=$(apt_key)
        printf '%s\n%s\n' "$APT_KEY" "$RESOLVED" > "$OUT/.apt-resolve"
    fi
fi
read -r KPKG KVER BVER FVER <<< "${RESOLVED:-}" || true
if [ -z "$KPKG" ]; then
    # apt knows nothing: fall back to the newest kernel already downloaded
    cached=$(ls "$DEBS"/linux-image-*_amd64.deb 2>/dev/null | sort -V | tail -1 || true)
    [ -n "$cached" ] || die "cannot resolve $META with apt-cache and no kernel in $DEBS"
    KPKG=$(basename "$cached"); KPKG=${KPKG%%_*}
    KVER='' BVER='' FVER=''
    say "apt-cache cannot resolve $META; using cached $KPKG"
fi

# --- 2. Download (cached by package name and version) ----------------------
APT_OPTS=(-q)
# as root, apt's download sandbox user (_apt) cannot write to $HOME
[ "$(id -u)" = 0 ] && APT_OPTS+=(-o APT::Sandbox::User=root)

fetch() {  # $1 = package, $2 = wanted version (or empty); prints the .deb
    local pkg=$1 want=$2 f
    [ "$want" = "(none)" ] && want=
    for f in "$DEBS/${pkg}"_*.deb; do
        [ -f "$f" ] || continue
        if [ -z "$want" ] || [ "$(dpkg-deb -f "$f" Version)" = "$want" ]; then
            echo "$f"
            return 0
        fi
    done
    say "downloading $pkg${want:+ $want} into $DEBS" >&2
    (cd "$DEBS" && apt-get download "${APT_OPTS[@]}" "$pkg${want:+=$want}" >/dev/null) \
        || return 1
    ls -t "$DEBS/${pkg}"_*.deb | head -1
}

if ! { KDEB=$(fetch "$KPKG" "$KVER") && BDEB=$(fetch busybox-static "$BVER") &&
       FDEB=$(fetch qemu-system-data "$FVER"); }; then
    # stale package lists (the archive dropped that version): update and
    # start over once
    [ -z "${BUILD_KIT_RETRY:-}" ] || die "apt-get download failed"
    apt_update || die "apt-get download failed"
    rm -f "$OUT/.apt-resolve"
    BUILD_KIT_RETRY=1 exec "$HERE/build-kit.sh" "$OUT"
fi
say "using $(basename "$KDEB"), $(basename "$BDEB"), $(basename "$FDEB")"

# --- 3. Extract (once per .deb) --------------------------------------------
extract() {  # $1 = .deb; prints the extraction directory
    local deb=$1 dir
    dir="$OUT/.extract/$(basename "$deb" .deb)"
    if [ ! -f "$dir/.done" ]; then
        rm -rf "$dir"
        mkdir -p "$dir"
        dpkg-deb -x "$deb" "$dir"
        touch "$dir/.done"
    fi
    echo "$dir"
}
KDIR=$(extract "$KDEB")
BDIR=$(extract "$BDEB")
FDIR=$(extract "$FDEB")
for d in "$OUT"/.extract/*; do   # drop extractions of superseded packages
    case "$d" in "$KDIR"|"$BDIR"|"$FDIR") ;; *) rm -rf "$d" ;; esac
done
KREL=$(ls "$KDIR/lib/modules" | head -1)
[ -f "$KDIR/boot/vmlinuz-${KREL:-none}" ] || die "no kernel in $KDEB"
if ! cmp -s "$KDIR/boot/vmlinuz-$KREL" "$OUT/vmlinuz"; then
    cp "$KDIR/boot/vmlinuz-$KREL" "$OUT/vmlinuz"
    say "kernel $KREL -> $OUT/vmlinuz"
fi
if [ "$(cat "$OUT/kernel-release" 2>/dev/null)" != "$KREL" ]; then
    echo "$KREL" > "$OUT/kernel-release"
fi
BUSYBOX=$BDIR/bin/busybox
[ -x "$BUSYBOX" ] || die "no busybox in $BDEB"

# Firmware for direct kernel boot.  build/ installs no blobs and Debian's
# seabios package has no option ROMs, so -kernel would find no
# linuxboot_dma.bin; microvm boots fastest with qboot.
mkdir -p "$OUT/firmware"
for f in qboot.rom:bios-microvm.bin linuxboot_dma.bin linuxboot.bin pvh.bin \
         multiboot_dma.bin kvmvapic.bin; do
    src=$FDIR/usr/share/qemu/${f%%:*}
    dst=$OUT/firmware/${f##*:}
    [ -f "$src" ] || die "no ${f%%:*} in $FDEB"
    cmp -s "$src" "$dst" || cp "$src" "$dst"
done

# --- 4. Workloads: static binaries from tests/guest/workloads/*.c ----------
mkdir -p "$OUT/bin"
for bin in "$OUT"/bin/*; do      # drop workloads whose source is gone
    [ ! -e "$bin" ] || [ -f "$HERE/workloads/$(basename "$bin").c" ] || rm -f "$bin"
done
for src in "$HERE"/workloads/*.c; do
    [ -f "$src" ] || continue
    bin="$OUT/bin/$(basename "$src" .c)"
    if [ ! -x "$bin" ] || [ "$src" -nt "$bin" ] || [ "$HERE/workloads/workload.h" -nt "$bin" ]; then
        say "compiling $(basename "$src") (static)"
        "$CC" -static -O2 -Wall -o "$bin" "$src" || die "cannot compile $src"
    fi
done

# --- 5. Initramfs, rebuilt only when an input changed ----------------------
inputs=("$HERE/init" "$HERE/build-kit.sh" "$BUSYBOX" "$OUT"/bin/*)
for m in $MODULES; do
    ko=$(find "$KDIR/lib/modules/$KREL" -name "$m.ko*" | head -1)
    if [ -n "$ko" ]; then
        inputs+=("$ko")
    fi
done
STAMP=$(stat -c '%n %s %Y' "${inputs[@]}" | sort)
if [ -f "$OUT/initramfs.cpio.gz" ] && [ "$STAMP" = "$(cat "$OUT/.initramfs.stamp" 2>/dev/null)" ]; then
    say "up to date: $OUT/vmlinuz, $OUT/initramfs.cpio.gz"
    exit 0
fi

ROOT=$OUT/.initramfs-root
rm -rf "$ROOT"
mkdir -p "$ROOT"/{bin,sbin,dev,proc,sys,tmp,lib/modules}
cp "$BUSYBOX" "$ROOT/bin/busybox"
ln -s busybox "$ROOT/bin/sh"
cp "$HERE/init" "$ROOT/init"
chmod 755 "$ROOT/init"
cp "$OUT"/bin/* "$ROOT/bin/"
# a console node, if we may create one (else the kernel's built-in one)
mknod "$ROOT/dev/console" c 5 1 2>/dev/null || true

loaded=() builtin=()
for m in $MODULES; do
    ko=$(find "$KDIR/lib/modules/$KREL" -name "$m.ko*" | head -1)
    case "$ko" in
    "")       builtin+=("$m"); continue ;;
    *.ko)     cp "$ko" "$ROOT/lib/modules/$m.ko" ;;
    *.ko.xz)  "$BUSYBOX" unxz -c "$ko" > "$ROOT/lib/modules/$m.ko" ;;
    *.ko.gz)  "$BUSYBOX" gunzip -c "$ko" > "$ROOT/lib/modules/$m.ko" ;;
    *.ko.zst) command -v zstd >/dev/null || die "$ko needs zstd on the host"
              zstd -q -d -c "$ko" > "$ROOT/lib/modules/$m.ko" ;;
    *)        die "unknown module format: $ko" ;;
    esac
    loaded+=("$m")
done
say "modules: ${loaded[*]:-none}${builtin:+ (not shipped as modules: ${builtin[*]})}"

(cd "$ROOT" && find . | sort | "$BUSYBOX" cpio -o -H newc -R 0:0 2>/dev/null) \
    | gzip -9 > "$OUT/initramfs.cpio.gz.tmp"
mv "$OUT/initramfs.cpio.gz.tmp" "$OUT/initramfs.cpio.gz"
echo "$STAMP" > "$OUT/.initramfs.stamp"
say "initramfs $(du -k "$OUT/initramfs.cpio.gz" | cut -f1) KiB -> $OUT/initramfs.cpio.gz"

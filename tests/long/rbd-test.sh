#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# make check-long: a BSST in Ceph RBD, QEMU's rbd driver under qcow2,
# against a one-node cluster started here from Debian's packages (one
# monitor, one OSD on memstore, cephx authentication, loopback only), for
# the qtests that take $TESSERACT_TEST_RBD (skipped without it):
#
#   tesseract-swapper/bsst/rbd      faults served over the swapper's own
#                                   RBD handle, with indirections
#   tesseract-migrate/shared-rbd    shared-bsst migration, blocks adopted
#   tesseract-migrate/private-rbd   a BSST of its own on each side
#
# QEMU gets client.admin's key as libvirt passes it, in a secret object
# that the rbd node's key-secret names ($TESSERACT_TEST_RBD_KEY; its
# ceph.conf names no keyring), and bsst/rbd runs once more with the key in
# a keyring file that ceph.conf names.
#
# Prints TAP.  Needs root to install ceph-mon and ceph-osd when missing,
# and a QEMU built with the rbd driver (configure installs librbd-dev).

set -u
TOP=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${TESSERACT_BUILD:-$TOP/build}
PORT=${TESSERACT_CEPH_PORT:-13300}

echo "1..4"
skip_all() {
    local i
    for i in 1 2 3 4; do echo "ok $i # SKIP $1"; done
    exit 0
}

if ! command -v ceph-mon >/dev/null || ! command -v ceph-osd >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "# installing ceph-mon, ceph-osd, ceph-common"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends ceph-mon ceph-osd ceph-common >/dev/null 2>&1
    fi
    command -v ceph-osd >/dev/null ||
        skip_all "no Ceph (apt-get install ceph-mon ceph-osd ceph-common)"
fi
"$BUILD/qemu-img" --help 2>/dev/null | grep -qw rbd ||
    skip_all "QEMU in $BUILD has no rbd driver (configure with librbd-dev)"

D=$(mktemp -d /tmp/tesseract-ceph.XXXXXX)
stop_cluster() {
    local f
    for f in "$D"/run/*.pid; do
        [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
    done
    sleep 1
    for f in "$D"/run/*.pid; do
        [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
    done
    rm -rf "$D"
}
trap stop_cluster EXIT

# The daemons' own files under $D; clients (QEMU, qemu-img) log nowhere
mkdir -p "$D/mon.a" "$D/osd.0" "$D/run" "$D/log"
fsid=$(cat /proc/sys/kernel/random/uuid)
cat > "$D/ceph.conf" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$PORT
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = true
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
osd crush chooseleaf type = 0
ms bind ipv6 = false
keyring = $D/keyring
log file = /dev/null
admin socket =
[mon]
mon data = $D/\$name
log file = $D/log/\$name.log
pid file = $D/run/\$name.pid
mon cluster log file = $D/log/cluster.log
mon data avail warn = 1
mon data avail crit = 0
[osd]
osd objectstore = memstore
memstore device bytes = 1073741824
osd data = $D/\$name
keyring = $D/\$name/keyring
log file = $D/log/\$name.log
pid file = $D/run/\$name.pid
EOF
C="$D/ceph.conf"
# what QEMU reads: the cluster, and no keyring
cat > "$D/client.conf" <<EOF
[global]
mon host = v2:127.0.0.1:$PORT
auth client required = cephx
ms bind ipv6 = false
keyring = /dev/null
log file = /dev/null
admin socket =
EOF
up() {
    ceph-authtool --create-keyring "$D/keyring" --gen-key -n mon. \
        --cap mon 'allow *' &&
    ceph-authtool "$D/keyring" --gen-key -n client.admin \
        --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' &&
    monmaptool --create --addv a "[v2:127.0.0.1:$PORT]" --fsid "$fsid" \
        "$D/monmap" >/dev/null &&
    ceph-mon -c "$C" --mkfs -i a --monmap "$D/monmap" \
        --keyring "$D/keyring" &&
    ceph-mon -c "$C" -i a &&
    timeout 60 ceph -c "$C" osd create >/dev/null &&
    timeout 60 ceph -c "$C" auth get-or-create osd.0 mon 'allow profile osd' \
        osd 'allow *' mgr 'allow profile osd' -o "$D/osd.0/keyring" &&
    ceph-osd -c "$C" -i 0 --mkfs &&
    ceph-osd -c "$C" -i 0 &&
    timeout 60 ceph -c "$C" osd pool create rbd 8 &&
    timeout 60 ceph -c "$C" osd pool set rbd size 1 --yes-i-really-mean-it &&
    timeout 60 rbd -c "$C" pool init rbd
}
if ! up > "$D/log/up.log" 2>&1; then
    sed 's/^/# /' "$D/log/up.log"
    for i in 1 2 3 4; do echo "not ok $i - the Ceph cluster did not start"; done
    exit 1
fi
echo "# a one-node Ceph cluster on 127.0.0.1:$PORT ($D)"

key=$(timeout 60 ceph -c "$C" auth get-key client.admin 2>/dev/null)
export QTEST_QEMU_BINARY="$BUILD/qemu-system-x86_64"
export QTEST_QEMU_IMG="$BUILD/qemu-img"
export QTEST_QEMU_STORAGE_DAEMON_BINARY="$BUILD/storage-daemon/qemu-storage-daemon"
n=0 fails=0
# TEST CONF KEY ("-": none, the keyring file that CONF names)
for t in "tesseract-swapper-test:/tesseract-swapper/bsst/rbd $D/client.conf $key" \
         "tesseract-migrate-test:/tesseract-migrate/shared-rbd $D/client.conf $key" \
         "tesseract-migrate-test:/tesseract-migrate/private-rbd $D/client.conf $key" \
         "tesseract-swapper-test:/tesseract-swapper/bsst/rbd $C -"; do
    n=$((n + 1))
    read -r t conf k <<< "$t"
    how=key-secret
    [ "$k" = - ] && k= how="keyring file"
    bin=${t%%:*} path=/x86_64${t#*:}
    out=$(TESSERACT_TEST_RBD=$conf TESSERACT_TEST_RBD_KEY=$k \
          timeout 600 "$BUILD/tests/qtest/$bin" --tap -k -p "$path" 2>&1)
    rc=$?
    if [ $rc -eq 0 ] && grep -q "^ok 1 $path\$" <<< "$out"; then
        echo "ok $n - $path ($how)"
    else
        echo "not ok $n - $path, $how (exit $rc)"
        sed 's/^/# /' <<< "$out" | tail -40
        fails=$((fails + 1))
    fi
done
[ $fails -eq 0 ]

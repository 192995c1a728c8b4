#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# 'make check': tests/guest/migrate-shared-test.sh with the shared BSST on
# NBD: qemu-storage-daemon opens the qcow2 BSST image and exports it on a
# unix socket, and both QEMUs open it raw over NBD.  The swappers serve
# faults over a second NBD connection in their own IOThread.  4 passes:
# a fault waits for an NBD round trip (fault service p50 ~140 us here,
# against ~30 us over a local file), and a pass faults the whole working
# set in.
#
#   tests/guest/migrate-nbd-test.sh [run-guest.sh options]
exec env MIGRATE_TEST_SHARED=nbd MIGRATE_TEST_PASSES="${MIGRATE_TEST_PASSES:-4}" \
    "$(dirname "$0")/migrate-test.sh" "$@"

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# 'make check': tests/guest/migrate-shared-test.sh with tesseract nodes:
# the guest's disk and its swap disk are tesseract nodes on the shared
# BSST, over images both QEMUs open.  memverify's working set (320 MiB
# in a 256 MiB guest) makes the guest swap; its swap writes of pages the
# host swapped out become indirections before the migration.  At the
# switchover the source makes its records durable and the destination
# reads the BSST's metadata again; memverify goes on on the destination,
# swapping in through those indirections: 0 corrupt pages.
#
#   tests/guest/migrate-tesseract-test.sh [run-guest.sh options]
exec env MIGRATE_TEST_SHARED=1 MIGRATE_TEST_TDISK=1 \
    MIGRATE_TEST_MIB="${MIGRATE_TEST_MIB:-320}" \
    MIGRATE_TEST_PASSES="${MIGRATE_TEST_PASSES:-3}" \
    MIGRATE_TEST_TIMEOUT="${MIGRATE_TEST_TIMEOUT:-240}" \
    "$(dirname "$0")/migrate-test.sh" "$@"

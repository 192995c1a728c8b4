#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# 'make check': tests/guest/migrate-test.sh over a shared BSST: both QEMUs
# open one BSST image (the destination inactive until the switchover),
# the source's swapper with shared-bsst=on, so that swapped-out pages
# travel as their BSST blocks and the destination adopts them; memverify
# goes on verifying on the destination (0 corrupt pages), which reads
# the adopted blocks and swaps into blocks of its own.  See
# migrate-test.sh for the checks and the environment.  16 passes, not 50
# (MIGRATE_TEST_PASSES): every page arrives swapped out, and each pass
# then faults the whole working set in under the 32M limit.
#
#   tests/guest/migrate-shared-test.sh [run-guest.sh options]
exec env MIGRATE_TEST_SHARED=1 MIGRATE_TEST_PASSES="${MIGRATE_TEST_PASSES:-16}" \
    "$(dirname "$0")/migrate-test.sh" "$@"

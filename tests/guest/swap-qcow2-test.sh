#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# 'make check': the guest swap test (swap-test.sh) with a qcow2 BSST, the
# format the user guide (docs/system/tesseract.rst) names for it.  The
# fault path must not depend on qcow2's lock (a vCPU that faults may hold
# the BQL that a main-loop request holding that lock needs): this run
# would hang, and fail on its timeout, if it did.
#
#   tests/guest/swap-qcow2-test.sh [run-guest.sh options]
SWAP_TEST_BSST_FORMAT=qcow2 exec "$(dirname "$0")/swap-test.sh" "$@"

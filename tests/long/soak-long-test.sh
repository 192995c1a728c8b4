#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# 'make check-long': the swapper soak's stress mode (tests/guest/soak.py
# --long): 30 minutes of guest time (SOAK_SECS), a stop/cont every 2 s and
# a balloon step every 3 s, the BSST's writes delayed as in make check.
# Prints TAP.  SOAK_SECS=120 tests/long/soak-long-test.sh for a short look.
exec "$(dirname "$0")/../guest/soak.py" --long "$@"

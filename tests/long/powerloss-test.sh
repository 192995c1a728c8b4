#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# make check-long: the power-loss replay at >= 20,000 crash states
# (tests/crash/powerloss-test.sh in its long mode).
TESSERACT_LONG=1 exec "$(dirname "$0")/../crash/powerloss-test.sh" "$@"

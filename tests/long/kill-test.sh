#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# make check-long: kill torture with >= 2,000 kills
# (tests/crash/kill-test.sh in its long mode).
TESSERACT_LONG=1 exec "$(dirname "$0")/../crash/kill-test.sh" "$@"

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# 'make check': the swapper soak (tests/guest/soak.py, which says what
# runs and how to look at one part of it): a Linux guest under a small
# swapper limit verifying every page and block while disks outside
# tesseract read into its RAM by DMA (aio=native, aio=io_uring), a
# 512-byte-block disk behind tesseract takes concurrent sub-page I/O,
# the balloon reports and inflates, and the VM is stopped and continued;
# a watchdog turns a stall into a failure with every QEMU thread's stack.
# A second round keeps a tesseract disk in the guest's page cache under a
# swapper with silent-swap=on.  About 2 minutes; prints TAP.
exec "$(dirname "$0")/soak.py" "$@"

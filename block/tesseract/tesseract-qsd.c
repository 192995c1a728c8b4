/*
 * Tesseract: the commands of qemu-storage-daemon that need guest RAM
 *
 * qemu-storage-daemon serves query-tesseract and tesseract-defrag like
 * the system emulator; it has no guest RAM, so the commands that swap
 * guest pages out refuse with a reason.
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-tesseract.h"

void qmp_x_tesseract_test_swap_out(const char *bsst, uint64_t addr,
                                   uint64_t size, Error **errp)
{
    error_setg(errp, "x-tesseract-test-swap-out: qemu-storage-daemon has "
               "no guest RAM; use qemu-system-x86_64");
}

void coroutine_fn qmp_x_tesseract_swap_out(const char *id, uint64_t addr,
                                           uint64_t size, bool has_wait,
                                           bool wait, Error **errp)
{
    error_setg(errp, "x-tesseract-swap-out: qemu-storage-daemon has no "
               "guest RAM and no tesseract-swapper; use "
               "qemu-system-x86_64");
}

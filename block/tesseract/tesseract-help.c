/*
 * Tesseract block driver: -blockdev driver=tesseract,help
 *
 * QEMU's -blockdev has no help of its own ("Help is not available for
 * this option"); qemu-system and qemu-storage-daemon call this first.
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qobject/qdict.h"
#include "qemu/keyval.h"
#include "bsst-format.h"
#include "tesseract-help.h"

typedef struct TsrOptionHelp {
    const char *name;
    const char *type;
    const char *help;
} TsrOptionHelp;

/* Keep in step with BlockdevOptionsTesseract (qapi/block-core.json) */
static const TsrOptionHelp tsr_options[] = {
    { "file", "<node name or options>",
      "the guest image, in any format (qcow2, raw, ...); required" },
    { "bsst", "<node name or options>",
      "the block-swap store (BSST): a qcow2 or raw image on a host file, "
      "shared with the tesseract-swapper; required" },
    { "disk-id", "<str>",
      "this disk's name in the BSST, which keeps one indirection map per "
      "disk: 1-" stringify(BSST_DISK_ID_LEN_MAX) " characters of "
      "[A-Za-z0-9._-] (default: \"default\")" },
    { "indirect", "<bool (on/off)>",
      "a guest write of a page the swapper holds becomes an indirection "
      "to the BSST; off swaps the page in first, then writes "
      "(default: on)" },
    { "defrag", "<off|auto>",
      "auto copies indirected blocks home while guest I/O is light; off "
      "leaves that to the tesseract-defrag job (default: off)" },
};

bool tesseract_blockdev_help(const char *optarg)
{
    QDict *args;
    bool help = false;
    size_t i;

    args = keyval_parse(optarg, "driver", &help, NULL);
    if (!args) {
        return false;       /* -blockdev reports the error itself */
    }
    if (!help || g_strcmp0(qdict_get_try_str(args, "driver"),
                           "tesseract")) {
        qobject_unref(args);
        return false;
    }
    qobject_unref(args);

    printf("tesseract options:\n");
    for (i = 0; i < ARRAY_SIZE(tsr_options); i++) {
        g_autofree char *left = g_strdup_printf("%s=%s", tsr_options[i].name,
                                                tsr_options[i].type);

        printf("  %-32s - %s\n", left, tsr_options[i].help);
    }
    printf("and the options every -blockdev takes: node-name, read-only, "
           "auto-read-only, force-share, discard, detect-zeroes, "
           "cache.direct, cache.no-flush.  The user guide: "
           "docs/system/tesseract.rst.\n");
    return true;
}

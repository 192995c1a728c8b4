/*
 * Tesseract block driver: -blockdev driver=tesseract,help
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef BLOCK_TESSERACT_HELP_H
#define BLOCK_TESSERACT_HELP_H

/*
 * If @optarg (a -blockdev argument) is "driver=tesseract,help" (or asks
 * for help another way keyval accepts), print every option of the
 * tesseract driver with its default and meaning and return true: the
 * caller exits.  Otherwise print nothing and return false.
 */
bool tesseract_blockdev_help(const char *optarg);

#endif

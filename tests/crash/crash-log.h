/*
 * Tesseract crash tests: the ordered event log
 *
 * Two writers share one global order: the LD_PRELOAD recorder inside
 * QEMU (tsr-recorder.c) logs every host write and flush to the recorded
 * image files, and the workload driver (tests/qtest/tesseract-crash.c)
 * logs what the guest submitted and saw completed.  Both take their
 * sequence numbers from one 64-bit counter in a MAP_SHARED file, so
 * "a flush that started after this write completed" means the same in
 * both logs.  tests/crash/replay.py reads them.
 *
 * A record is a TsrCrashRec, followed by @len bytes of data for
 * TSR_REC_WRITE records.  All fields are little-endian (host order on
 * x86).  Each record is appended with one write() to an O_APPEND file,
 * so records of concurrent threads and processes never interleave.
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef TESTS_CRASH_CRASH_LOG_H
#define TESTS_CRASH_CRASH_LOG_H

#include <stdint.h>

#define TSR_CRASH_MAGIC     0x4c524354u     /* "TCRL" */
#define TSR_CRASH_MAX_FILES 8

enum {
    /*
     * Host I/O (recorder).  @file is the index of the file in
     * TSR_REC_FILES.  A start record is logged before the system call,
     * its done record (@ref = the start's @seq, @ret = the result) after
     * it returns.
     */
    TSR_REC_WRITE = 1,          /* @off, @len, data follows */
    TSR_REC_WRITE_DONE = 2,     /* @ret: bytes written or -errno */
    TSR_REC_FLUSH = 3,          /* fdatasync/fsync of @file */
    TSR_REC_FLUSH_DONE = 4,     /* @ret: 0 or -errno */
    TSR_REC_ZERO = 5,           /* @off, @len read as zeroes (fallocate) */
    TSR_REC_ZERO_DONE = 6,
    TSR_REC_TRUNC = 7,          /* size becomes @off (@len: old size) */
    TSR_REC_TRUNC_DONE = 8,
    TSR_REC_ESCAPE = 9,         /* I/O the recorder cannot follow: @ref */
    TSR_REC_SYNC_HINT = 10,     /* sync_file_range: no durability */

    /*
     * Guest level (driver).  @file is the disk; @ref the write or flush
     * id; @off the first sector; @len the sector count; @flags below.
     */
    TSR_EV_WRITE = 32,          /* submitted; data id = @ref */
    TSR_EV_WRITE_DONE = 33,     /* completed (@ret: virtio status) */
    TSR_EV_FLUSH = 34,          /* submitted */
    TSR_EV_FLUSH_DONE = 35,     /* completed */
    TSR_EV_KILL = 36,           /* QEMU @ref (pid) killed with SIGKILL */
    TSR_EV_SNAPSHOT = 37,       /* files copied after a kill: @ref = pid */
    TSR_EV_START = 38,          /* QEMU @ref (pid) started */
    TSR_EV_NOTE = 39,           /* free text follows (@len bytes) */
    /*
     * A power failure: the files were replaced by a crash state (@ref:
     * the segment it starts, its files base<@ref>-<i>); what follows is
     * replayed from there.
     */
    TSR_EV_SEGMENT = 40,
    /* what every sector held then: one u32 per sector, disk 0 then 1 */
    TSR_EV_BASE = 41,
};

/* TSR_REC_ESCAPE reasons */
enum {
    TSR_ESC_MMAP = 1,           /* shared writable mapping of a file */
    TSR_ESC_AIO = 2,            /* io_submit (linux-aio) */
    TSR_ESC_URING = 3,          /* io_uring */
    TSR_ESC_FALLOC = 4,         /* fallocate mode we cannot model */
    TSR_ESC_DIRECT = 5,         /* O_DIRECT: bypasses the page cache */
    TSR_ESC_DSYNC = 6,          /* O_DSYNC/O_SYNC or RWF_DSYNC write */
};

/* TSR_EV_WRITE flags */
#define TSR_EVF_ZEROES  1u      /* write-zeroes: the sectors read as zero */
#define TSR_EVF_DISCARD 2u      /* discard: zero or the previous value */
#define TSR_EVF_FUA     4u      /* durable once completed */

typedef struct TsrCrashRec {
    uint32_t magic;
    uint16_t type;
    uint16_t file;
    uint32_t pid;
    uint32_t flags;
    uint64_t seq;
    uint64_t ref;
    uint64_t off;
    uint64_t len;
    int64_t ret;
} TsrCrashRec;

/*
 * The self-identifying contents of one 512-byte guest sector: written by
 * the driver, checked by the driver (kill torture) and by replay.py.
 *     0  4  magic "TSRS"
 *     4  4  disk
 *     8  8  sector
 *    16  4  write id (never 0)
 *    20 12  zero
 *    32     120 32-bit words: tsr_sector_word(disk, sector, id, i)
 */
#define TSR_SECTOR_MAGIC    0x53525354u     /* "TSRS" */
#define TSR_SECTOR_HDR      32
#define TSR_SECTOR_WORDS    ((512 - TSR_SECTOR_HDR) / 4)

static inline uint32_t tsr_sector_word(uint32_t disk, uint64_t sector,
                                       uint32_t id, uint32_t i)
{
    return id * 0x9e3779b1u + (uint32_t)sector * 0x85ebca77u +
           disk * 0xc2b2ae3du + i * 0x27d4eb2fu;
}

#endif

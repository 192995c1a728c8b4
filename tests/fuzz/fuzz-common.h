/*
 * Fuzz targets of the BSST decoders: shared helpers
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * The targets link the pure files of block/tesseract/ and QEMU's util
 * library; see tests/fuzz/Makefile.
 */

#ifndef TESTS_FUZZ_FUZZ_COMMON_H
#define TESTS_FUZZ_FUZZ_COMMON_H

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/bswap.h"
#include "qemu/cutils.h"
#include "bsst-format.h"
#include "bsst-load.h"

#define BS BSST_BLOCK_SIZE

/*
 * Field offsets of the on-disk format (bsst-format.h is the spec; the
 * decoder keeps its own copies private)
 */
#define FZ_SB_CRC           12
#define FZ_SB_GENERATION    40
#define FZ_SB_TOTAL         48
#define FZ_SB_LOG_START     56
#define FZ_SB_LOG_LEN       64
#define FZ_SB_CKPT_START    72
#define FZ_SB_CKPT_AREA     120
#define FZ_SB_CKPT_BLOCKS   124
#define FZ_SB_CKPT_CRC      128
#define FZ_SB_LOG_HEAD      144
#define FZ_SB_END           160

#define FZ_REC_TYPE         4
#define FZ_REC_LEN          6
#define FZ_REC_SEQ          8
#define FZ_REC_EPOCH        16
#define FZ_REC_CRC          24
#define FZ_REC_DURABLE      28

#define FZ_CK_CRC           4
#define FZ_CK_USED          20

/* libFuzzer's own mutator, for use inside the custom ones */
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

/* CRC-32C of @len bytes with the 4-byte field at @off taken as zero */
uint32_t fz_crc_skip(const uint8_t *buf, size_t len, size_t off);

/* Fix the CRC of a superblock slot that carries the magic. */
void fz_fix_sb(uint8_t *block);

/*
 * Fix the CRC of every record of log block @block that a reader would
 * parse (magic and length right), in order.  Returns the offset after
 * the last of them.
 */
uint32_t fz_fix_log_block(uint8_t *block);

/* Offset after the last record a reader would parse (no change). */
uint32_t fz_log_used(const uint8_t *block);

/* Fix the CRC of a checkpoint block that carries the magic. */
void fz_fix_ckpt_block(uint8_t *block);

/* Bytes of a checkpoint block in use (header plus items), clamped. */
uint32_t fz_ckpt_used(const uint8_t *block);

/*
 * Is there a CRC-valid log record anywhere in @block (any byte offset)
 * whose epoch is above @epoch?  A real writer never leaves one (its
 * superblock of that generation was durable before its first record).
 */
bool fz_log_has_epoch_above(const uint8_t *block, uint64_t epoch);

/* A small, fast PRNG for the custom mutators (seeded by libFuzzer) */
typedef struct FzRand {
    uint64_t s;
} FzRand;

static inline uint32_t fz_rand(FzRand *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return (z ^ (z >> 31)) >> 32;
}

/* Uniform in [0, n) for n > 0 */
static inline uint32_t fz_below(FzRand *r, uint32_t n)
{
    return (uint64_t)fz_rand(r) * n >> 32;
}

/*
 * Append a well-formed record of a random kind at the end of the records
 * of @block (sequence number following the last one there), if it fits.
 */
void fz_log_append_random(uint8_t *block, FzRand *rand);

/*
 * The layout of the small images the targets use: @total blocks (at
 * least 16): two superblock slots, a log of 4 blocks, two checkpoint
 * areas of 3 blocks, the rest data (from block 12 on).
 */
void fz_small_layout(BsstLayout *l, uint64_t total);

/*
 * Mutate @len bytes at @p in place with libFuzzer's mutator (what it
 * shortens is zero-filled).
 */
void fz_mutate_region(uint8_t *p, size_t len);

/* ---- A model of the metadata state, built through BsstMetaOps ---- */

typedef struct FzState {
    char *id[BSST_MAX_DISKS];
    BsstMap *map[BSST_MAX_DISKS];
    uint64_t entries;
    uint64_t max_entries;       /* refuse to build more (as bsst_load) */
    uint64_t data_count;        /* BSST blocks are below it */
    uint64_t callbacks;
    uint64_t digest;            /* of the callbacks, in order */
} FzState;

FzState *fz_state_new(uint64_t max_entries, uint64_t data_count);
void fz_state_free(FzState *s);
extern const BsstMetaOps fz_state_ops;

/* Same disks, ids and entries? */
bool fz_maps_equal(char *const *ida, BsstMap *const *mapa,
                   char *const *idb, BsstMap *const *mapb);

/* Check every map's tree invariants; abort naming the first bad one. */
void fz_check_maps(BsstMap *const *maps);

/* ---- Seeds ---- */

/* Where seeds go (TESSERACT_FUZZ_SEEDS), or NULL: fuzz as usual. */
const char *fz_seed_dir(void);
void fz_write_seed(const char *dir, const char *name, const void *buf,
                   size_t len);

/* TESSERACT_FUZZ_VERBOSE set: the targets say what each input did */
bool fz_verbose(void);

/* Abort with a message: a property of the decoders does not hold. */
void G_NORETURN fz_fail(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

#define FZ_ASSERT(cond, ...) \
    do { \
        if (!(cond)) { \
            fz_fail(__VA_ARGS__); \
        } \
    } while (0)

#endif

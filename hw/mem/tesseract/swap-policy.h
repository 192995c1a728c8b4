/*
 * Tesseract: choosing the guest pages the swapper swaps out
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Pure logic (no QEMU types): linked by unit tests as is.
 *
 * The policy tracks which pages are resident and picks victims among
 * them.  TSR_POLICY_RANDOM is the policy of Tesseract (VEE 2014) and of
 * ESX: uniformly random over the resident pages, so that the swapper does
 * not second-guess the guest's own LRU, but never one of the pages
 * swapped in most recently (the victim cache) while another is resident,
 * so that a page the guest just needed is not thrown out again at once.
 * Every pick is O(1): the resident pages are kept in a dense array
 * grouped by class (in the victim cache or not, written or not), and a
 * pick is one random index into it.
 * TSR_POLICY_WP_AGE also prefers pages not written since the last ageing
 * sweep; the swapper write-protects pages at each sweep and reports the
 * write faults (tsr_policy_note_write()).  TSR_POLICY_ACCESS keeps each
 * resident page's idle age: the number of access scans in a row that
 * found it untouched (reads and writes alike; the swapper learns them by
 * unmapping shared guest RAM and seeing which pages the guest mapped
 * back, tsr_policy_scan()), and picks the oldest first, CLOCK-like.
 */

#ifndef HW_MEM_TESSERACT_SWAP_POLICY_H
#define HW_MEM_TESSERACT_SWAP_POLICY_H

typedef enum TsrPolicyKind {
    TSR_POLICY_RANDOM,
    TSR_POLICY_WP_AGE,
    TSR_POLICY_ACCESS,
} TsrPolicyKind;

/* ACCESS: idle ages saturate here */
#define TSR_POLICY_MAX_AGE 255

typedef struct TsrPolicy TsrPolicy;

/*
 * The victim cache holds 1/64 of guest RAM's pages (16 MiB of pages per
 * GiB of RAM), at least 1024 pages and at most 2^20 (4 GiB of pages):
 * with a uniform pick among R resident pages, a page just swapped in is
 * taken again within its next k picks with probability about k / R, and
 * both R (the limit) and the swap-in rate that fills the ring grow with
 * the guest, so a fixed ring protected a shorter and shorter time as
 * guests grew.  256 MiB of RAM gives the former 1024 pages, 2 GiB 8192.
 */
#define TSR_VICTIM_CACHE_RAM_DIV 64
#define TSR_VICTIM_CACHE_MIN 1024
#define TSR_VICTIM_CACHE_MAX (1u << 20)
unsigned tsr_policy_victim_cache_size(uint64_t npages);

TsrPolicy *tsr_policy_new(TsrPolicyKind kind, uint64_t npages,
                          unsigned victim_cache, uint32_t seed);
void tsr_policy_free(TsrPolicy *p);

void tsr_policy_set_resident(TsrPolicy *p, uint64_t page, bool resident);
bool tsr_policy_is_resident(const TsrPolicy *p, uint64_t page);
uint64_t tsr_policy_resident(const TsrPolicy *p);

/* @page was just swapped in: keep it out of the victims for a while. */
void tsr_policy_note_swapin(TsrPolicy *p, uint64_t page);
bool tsr_policy_in_victim_cache(const TsrPolicy *p, uint64_t page);

/*
 * WP_AGE: the guest wrote @page since the last sweep, or since it became
 * resident again (a page that is not resident forgets its writes; the
 * swapper places pages write-protected, so it sees the next one).
 */
void tsr_policy_note_write(TsrPolicy *p, uint64_t page);
bool tsr_policy_written(const TsrPolicy *p, uint64_t page);
/* WP_AGE: how many pages were written since the last sweep */
uint64_t tsr_policy_nwritten(const TsrPolicy *p);
/* WP_AGE: start a new ageing period (the caller write-protects pages). */
void tsr_policy_sweep(TsrPolicy *p);

/*
 * ACCESS: one access scan.  @accessed has a bit per page (npages bits),
 * set for the pages the guest touched since the previous scan: their age
 * becomes 0, every other resident page ages by one.
 */
void tsr_policy_scan(TsrPolicy *p, const unsigned long *accessed);
/*
 * ACCESS: one access scan of pages [@first, @first + @n) only (one slice
 * of RAM: the others keep their ages); @accessed as above.
 */
void tsr_policy_scan_range(TsrPolicy *p, const unsigned long *accessed,
                           uint64_t first, uint64_t n);
unsigned tsr_policy_age(const TsrPolicy *p, uint64_t page);

/*
 * Pick a resident page to swap out (it stays resident until the caller
 * says otherwise).  Returns false when nothing is resident.  RANDOM picks
 * uniformly among the resident pages not in the victim cache; WP_AGE
 * among those not written since the sweep, and only when there are none
 * among the written ones; ACCESS takes the oldest resident page, moving a
 * clock hand round the pages.  Pages in the victim cache are taken
 * (uniformly) only when nothing else is resident.  @npages of
 * tsr_policy_new() must be below 2^32 (16 TiB of 4 KiB pages).
 */
bool tsr_policy_pick(TsrPolicy *p, uint64_t *page);

#endif

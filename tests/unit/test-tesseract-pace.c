/*
 * Unit tests: pacing of defrag=auto by the disks' observed latency
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "tesseract-pace.h"

#define MIN_RATE 1
#define MAX_RATE 640
#define BASE_NS 20000           /* a copy on unloaded disks: 20 us */
/* requests a second of a guest on a fast disk: no cap below MAX_RATE */
#define BUSY_LOAD (MAX_RATE * TSR_PACE_BUSY_OPS * 4)

/* Unloaded disks, busy guest: from min_rate to max_rate in RAMP steps */
static void test_ramp_up(void)
{
    TsrPace p;
    unsigned i;

    tsr_pace_init(&p, MIN_RATE, MAX_RATE);
    g_assert_cmpuint(p.rate, ==, MIN_RATE);
    for (i = 1; i < TSR_PACE_RAMP; i++) {
        tsr_pace_update(&p, BASE_NS + i * 1000, false, BUSY_LOAD);
        g_assert_cmpuint(p.rate, <, MAX_RATE);
        g_assert_cmpuint(p.rate, ==, MIN_RATE + i * (MAX_RATE / TSR_PACE_RAMP));
    }
    tsr_pace_update(&p, BASE_NS, false, BUSY_LOAD);
    g_assert_cmpuint(p.rate, ==, MAX_RATE);
    tsr_pace_update(&p, BASE_NS, false, BUSY_LOAD);
    g_assert_cmpuint(p.rate, ==, MAX_RATE);
    g_assert_cmpuint(p.backoffs, ==, 0);
}

/* Copies queueing behind the guest: the rate halves each step, to min */
static void test_back_off(void)
{
    TsrPace p;
    uint64_t prev;
    unsigned i;

    tsr_pace_init(&p, MIN_RATE, MAX_RATE);
    for (i = 0; i < 5; i++) {
        tsr_pace_update(&p, BASE_NS, true, BUSY_LOAD);    /* 42 124 288 616 640 */
    }
    g_assert_cmpuint(p.rate, ==, MAX_RATE);
    for (i = 0; i < 12; i++) {
        prev = p.rate;
        tsr_pace_update(&p, 5 * BASE_NS, false, BUSY_LOAD);
        g_assert_cmpuint(p.rate, ==, MAX(MIN_RATE, prev / 2));
    }
    g_assert_cmpuint(p.rate, ==, MIN_RATE);
    g_assert_cmpuint(p.backoffs, ==, 12);

    /* at the threshold still counts as room; 10% above it does not */
    tsr_pace_update(&p, TSR_PACE_LOADED * p.base_ns, false, BUSY_LOAD);
    g_assert_cmpuint(p.rate, >, MIN_RATE);
    prev = p.rate;
    tsr_pace_update(&p, TSR_PACE_LOADED * p.base_ns * 11 / 10, false, BUSY_LOAD);
    g_assert_cmpuint(p.rate, ==, MAX(MIN_RATE, prev / 2));

    /* the load goes away: the rate climbs back */
    for (i = 0; i < TSR_PACE_RAMP; i++) {
        tsr_pace_update(&p, BASE_NS, false, BUSY_LOAD);
    }
    g_assert_cmpuint(p.rate, ==, MAX_RATE);
}

/*
 * An idle guest lets the rate double besides, but loaded disks halve it
 * all the same: the swapper's faults or another tenant may load them.
 */
static void test_idle(void)
{
    const uint64_t step = MAX_RATE / TSR_PACE_RAMP;
    TsrPace p;
    unsigned i;

    tsr_pace_init(&p, MIN_RATE, MAX_RATE);
    tsr_pace_update(&p, BASE_NS, false, BUSY_LOAD);
    g_assert_cmpuint(p.rate, ==, MIN_RATE + step);
    tsr_pace_update(&p, 10 * BASE_NS, true, BUSY_LOAD);
    g_assert_cmpuint(p.rate, ==, (MIN_RATE + step) / 2);
    g_assert_cmpuint(p.backoffs, ==, 1);
    tsr_pace_update(&p, BASE_NS, true, BUSY_LOAD);
    g_assert_cmpuint(p.rate, ==, (MIN_RATE + step) / 2 * 2 + step);
    for (i = 0; i < 3; i++) {
        tsr_pace_update(&p, BASE_NS, true, BUSY_LOAD);
    }
    g_assert_cmpuint(p.rate, ==, MAX_RATE);     /* 200, 440, 640 */
}

/*
 * The unloaded latency is the lowest seen; it follows disks that became
 * slower for good, slowly: a load lasting seconds keeps the rate down.
 */
static void test_base_drift(void)
{
    TsrPace p;
    unsigned i, loaded = 0;

    tsr_pace_init(&p, MIN_RATE, MAX_RATE);
    tsr_pace_update(&p, BASE_NS, false, BUSY_LOAD);
    tsr_pace_update(&p, BASE_NS / 2, false, BUSY_LOAD);
    g_assert_cmpuint(p.base_ns, ==, BASE_NS / 2);

    for (i = 0; i < 10000; i++) {
        uint64_t before = p.backoffs;

        tsr_pace_update(&p, 3 * BASE_NS / 2, false, BUSY_LOAD);    /* 3x the lowest */
        if (p.backoffs == before) {
            break;
        }
        loaded++;
    }
    /* 3x stays "loaded" for many steps, then is the new normal */
    g_assert_cmpuint(loaded, >=, TSR_PACE_DRIFT / 4);
    g_assert_cmpuint(loaded, <, 10000);
    g_assert_cmpuint(p.base_ns, <=, 3 * BASE_NS / 2);
    g_assert_cmpuint(p.base_ns * TSR_PACE_LOADED, >=, 3 * BASE_NS / 2);
}

/*
 * The copies keep the disks busy a share of the time at most: a disk that
 * serves requests in turn shows no queueing to them
 */
static void test_share(void)
{
    TsrPace p;
    unsigned i;

    tsr_pace_init(&p, MIN_RATE, MAX_RATE);
    for (i = 0; i < 2 * TSR_PACE_RAMP; i++) {
        tsr_pace_update(&p, 10000000, false, BUSY_LOAD);   /* 10 ms, never slower */
    }
    g_assert_cmpuint(p.rate, ==, 1000 / 10 / TSR_PACE_BUSY_SHARE);
    g_assert_cmpuint(p.backoffs, ==, 0);
    for (i = 0; i < 8; i++) {
        tsr_pace_update(&p, 10000000, true, BUSY_LOAD);
    }
    g_assert_cmpuint(p.rate, ==, 1000 / 10 / TSR_PACE_IDLE_SHARE);
    for (i = 0; i < TSR_PACE_RAMP; i++) {
        tsr_pace_update(&p, 200000, false, BUSY_LOAD);     /* 200 us: faster disks */
    }
    g_assert_cmpuint(p.rate, ==, 1000000 / 200 / TSR_PACE_BUSY_SHARE);
    /* never below the slowest rate, however long a copy takes */
    tsr_pace_update(&p, 5000000000ULL, false, BUSY_LOAD);
    g_assert_cmpuint(p.rate, ==, MIN_RATE);
}

static void test_step_blocks(void)
{
    g_assert_cmpuint(tsr_pace_step_blocks(1, 10, 64), ==, 1);
    g_assert_cmpuint(tsr_pace_step_blocks(15, 10, 64), ==, 2);
    g_assert_cmpuint(tsr_pace_step_blocks(640, 10, 64), ==, 64);
    g_assert_cmpuint(tsr_pace_step_blocks(5000, 10, 64), ==, 64);
}

/*
 * Behind an I/O throttle the copies return fast and show no queueing,
 * yet each takes a request from a paging guest: while the guest does
 * I/O, one copy per TSR_PACE_BUSY_OPS of its requests at most; when it
 * is idle, the request count does not hold the rate back.
 */
static void test_throttled(void)
{
    const uint64_t load = 200;          /* a paging spindle's requests/s */
    TsrPace p;
    unsigned i;

    tsr_pace_init(&p, MIN_RATE, MAX_RATE);
    for (i = 0; i < 4 * TSR_PACE_RAMP; i++) {
        tsr_pace_update(&p, BASE_NS, false, load);
        g_assert_cmpuint(p.rate, <=, load / TSR_PACE_BUSY_OPS);
    }
    g_assert_cmpuint(p.rate, ==, load / TSR_PACE_BUSY_OPS);
    g_assert_cmpuint(p.backoffs, ==, 0);
    /* idle: doubling besides, up to the time share */
    for (i = 0; i < TSR_PACE_RAMP; i++) {
        tsr_pace_update(&p, BASE_NS, true, 0);
    }
    g_assert_cmpuint(p.rate, ==, MAX_RATE);
}

/*
 * While the page sources moved TSR_PACE_PAGING_PAGES pages or more in
 * the last TSR_PACE_PAGING_STEPS steps, the copies wait; a trickle below
 * that, or a burst a window ago, does not hold them
 */
static void test_hold(void)
{
    TsrPace p;
    unsigned i;

    tsr_pace_init(&p, MIN_RATE, MAX_RATE);
    g_assert_false(tsr_pace_hold(&p, 0));
    /* a trickle: one page every other step */
    for (i = 0; i < 5 * TSR_PACE_PAGING_STEPS; i++) {
        g_assert_false(tsr_pace_hold(&p, i % 2));
    }
    /* one burst holds them for the window, then no more */
    g_assert_true(tsr_pace_hold(&p, TSR_PACE_PAGING_PAGES));
    for (i = 1; i < TSR_PACE_PAGING_STEPS; i++) {
        g_assert_true(tsr_pace_hold(&p, 0));
    }
    g_assert_false(tsr_pace_hold(&p, 0));
    /* steady paging below the burst size, above the rate: held */
    for (i = 0; i < 3 * TSR_PACE_PAGING_STEPS; i++) {
        bool held = tsr_pace_hold(&p, TSR_PACE_PAGING_PAGES /
                                      TSR_PACE_PAGING_STEPS);

        g_assert_true(held == (i >= TSR_PACE_PAGING_STEPS - 1));
    }
    /* a huge count does not wrap the window's sum */
    g_assert_true(tsr_pace_hold(&p, UINT64_MAX));
    /* the rate is kept while held, not reset */
    g_assert_cmpuint(p.rate, ==, MIN_RATE);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/tesseract/pace/ramp-up", test_ramp_up);
    g_test_add_func("/tesseract/pace/back-off", test_back_off);
    g_test_add_func("/tesseract/pace/idle", test_idle);
    g_test_add_func("/tesseract/pace/base-drift", test_base_drift);
    g_test_add_func("/tesseract/pace/share", test_share);
    g_test_add_func("/tesseract/pace/throttled", test_throttled);
    g_test_add_func("/tesseract/pace/step-blocks", test_step_blocks);
    g_test_add_func("/tesseract/pace/hold", test_hold);
    return g_test_run();
}

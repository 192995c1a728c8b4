/*
 * Unit tests: BSST indirection map (B+tree)
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/bitmap.h"
#include "bsst-map.h"

#define assert_map_sound(map) \
    g_assert_cmpstr(bsst_map_check(map), ==, NULL)

static void test_empty(void)
{
    BsstMap *map = bsst_map_new();
    uint64_t g, run;
    uint32_t b;

    g_assert_cmpuint(bsst_map_count(map), ==, 0);
    g_assert_false(bsst_map_lookup(map, 0, &b));
    g_assert_false(bsst_map_find_next(map, 0, UINT64_MAX, &g, &b, &run));
    g_assert_false(bsst_map_remove(map, 5, &b));
    g_assert_cmpuint(bsst_map_remove_range(map, 0, UINT64_MAX, NULL, NULL),
                     ==, 0);
    g_assert_cmpuint(bsst_map_height(map), ==, 1);
    g_assert_cmpuint(bsst_map_mem_bytes(map), >, 0);
    assert_map_sound(map);
    bsst_map_free(map);
}

static void test_basic(void)
{
    BsstMap *map = bsst_map_new();
    uint64_t g, run;
    uint32_t b = 0, old = 0;

    g_assert_false(bsst_map_insert(map, 10, 100, &old));
    g_assert_false(bsst_map_insert(map, 12, 7, &old));
    g_assert_false(bsst_map_insert(map, BSST_MAP_GBLOCK_MAX, UINT32_MAX,
                                   &old));
    g_assert_cmpuint(bsst_map_count(map), ==, 3);
    g_assert_true(bsst_map_lookup(map, 10, &b));
    g_assert_cmpuint(b, ==, 100);
    g_assert_false(bsst_map_lookup(map, 11, &b));
    g_assert_true(bsst_map_lookup(map, BSST_MAP_GBLOCK_MAX, &b));
    g_assert_cmpuint(b, ==, UINT32_MAX);

    /* replace returns the old block */
    g_assert_true(bsst_map_insert(map, 10, 200, &old));
    g_assert_cmpuint(old, ==, 100);
    g_assert_cmpuint(bsst_map_count(map), ==, 3);
    g_assert_true(bsst_map_lookup(map, 10, &b));
    g_assert_cmpuint(b, ==, 200);

    /* find_next: [start, end) semantics */
    g_assert_true(bsst_map_find_next(map, 0, 100, &g, &b, &run));
    g_assert_cmpuint(g, ==, 10);
    g_assert_cmpuint(run, ==, 1);
    g_assert_true(bsst_map_find_next(map, 11, 100, &g, &b, NULL));
    g_assert_cmpuint(g, ==, 12);
    g_assert_cmpuint(b, ==, 7);
    g_assert_false(bsst_map_find_next(map, 11, 12, &g, &b, NULL));
    g_assert_false(bsst_map_find_next(map, 13, BSST_MAP_GBLOCK_MAX, &g, &b,
                                      NULL));
    g_assert_true(bsst_map_find_next(map, 13, UINT64_MAX, &g, &b, NULL));
    g_assert_cmpuint(g, ==, BSST_MAP_GBLOCK_MAX);
    g_assert_false(bsst_map_find_next(map, 10, 10, &g, &b, NULL));

    g_assert_true(bsst_map_remove(map, 12, &old));
    g_assert_cmpuint(old, ==, 7);
    g_assert_false(bsst_map_remove(map, 12, &old));
    g_assert_cmpuint(bsst_map_count(map), ==, 2);
    assert_map_sound(map);

    bsst_map_clear(map);
    g_assert_cmpuint(bsst_map_count(map), ==, 0);
    g_assert_false(bsst_map_lookup(map, 10, NULL));
    assert_map_sound(map);
    bsst_map_free(map);
}

/* Runs: consecutive guest and BSST blocks, across leaf boundaries. */
static void test_runs(void)
{
    BsstMap *map = bsst_map_new();
    uint64_t g, run, i;
    uint32_t b;

    for (i = 0; i < 1000; i++) {
        bsst_map_insert(map, 5000 + i, 70000 + i, NULL);
    }
    bsst_map_insert(map, 6000, 1, NULL);            /* bblock breaks */
    bsst_map_insert(map, 6002, 70002, NULL);        /* gblock gap */
    g_assert_cmpuint(bsst_map_height(map), >=, 2);  /* spans leaves */
    assert_map_sound(map);

    g_assert_true(bsst_map_find_next(map, 0, UINT64_MAX, &g, &b, &run));
    g_assert_cmpuint(g, ==, 5000);
    g_assert_cmpuint(b, ==, 70000);
    g_assert_cmpuint(run, ==, 1000);
    g_assert_true(bsst_map_find_next(map, 5100, 5300, &g, &b, &run));
    g_assert_cmpuint(g, ==, 5100);
    g_assert_cmpuint(b, ==, 70100);
    g_assert_cmpuint(run, ==, 200);                 /* clipped to end */
    g_assert_true(bsst_map_find_next(map, 6000, UINT64_MAX, &g, &b, &run));
    g_assert_cmpuint(run, ==, 1);
    g_assert_true(bsst_map_find_next(map, 6001, UINT64_MAX, &g, &b, &run));
    g_assert_cmpuint(g, ==, 6002);
    g_assert_cmpuint(run, ==, 1);

    /* 5000..5999, 6000, 6002 */
    g_assert_cmpuint(bsst_map_runs(map), ==, 3);

    /* a BSST block number never wraps inside a run */
    bsst_map_insert(map, 100, UINT32_MAX, NULL);
    bsst_map_insert(map, 101, 0, NULL);
    g_assert_true(bsst_map_find_next(map, 100, UINT64_MAX, &g, &b, &run));
    g_assert_cmpuint(run, ==, 1);
    g_assert_cmpuint(bsst_map_runs(map), ==, 5);
    assert_map_sound(map);

    /* removing from the middle splits a run; putting it back joins it */
    g_assert_true(bsst_map_remove(map, 5500, NULL));
    g_assert_cmpuint(bsst_map_runs(map), ==, 6);
    bsst_map_insert(map, 5500, 70500, NULL);
    g_assert_cmpuint(bsst_map_runs(map), ==, 5);
    /* remapping one block of a run elsewhere splits it in three */
    bsst_map_insert(map, 5200, 9, NULL);
    g_assert_cmpuint(bsst_map_runs(map), ==, 7);
    bsst_map_insert(map, 5200, 70200, NULL);
    g_assert_cmpuint(bsst_map_runs(map), ==, 5);
    /* an entry that joins two runs: 6000 -> 1 goes, 6001 fills the gap */
    g_assert_true(bsst_map_remove(map, 6000, NULL));
    bsst_map_insert(map, 6000, 71000, NULL);        /* extends 5000..5999 */
    g_assert_cmpuint(bsst_map_runs(map), ==, 4);
    bsst_map_insert(map, 6001, 71001, NULL);        /* 6002 -> 70002 differs */
    g_assert_cmpuint(bsst_map_runs(map), ==, 4);
    bsst_map_insert(map, 6002, 71002, NULL);        /* now one run */
    g_assert_cmpuint(bsst_map_runs(map), ==, 3);
    /* the first and the last entry of a leaf: removal across leaves */
    g_assert_cmpuint(bsst_map_remove_range(map, 5100, 5900, NULL, NULL),
                     ==, 800);
    g_assert_cmpuint(bsst_map_runs(map), ==, 4);
    assert_map_sound(map);
    bsst_map_clear(map);
    g_assert_cmpuint(bsst_map_runs(map), ==, 0);
    bsst_map_free(map);
}

typedef struct Dropped {
    GArray *g;
    GArray *b;
} Dropped;

static void drop_cb(void *opaque, uint64_t gblock, uint32_t bblock)
{
    Dropped *d = opaque;

    g_array_append_val(d->g, gblock);
    g_array_append_val(d->b, bblock);
}

static void test_remove_range(void)
{
    BsstMap *map = bsst_map_new();
    Dropped d = {
        g_array_new(false, false, sizeof(uint64_t)),
        g_array_new(false, false, sizeof(uint32_t)),
    };
    uint64_t i, n;

    for (i = 0; i < 20000; i += 2) {
        bsst_map_insert(map, i, (uint32_t)(i * 3), NULL);
    }
    n = bsst_map_remove_range(map, 1001, 5001, drop_cb, &d);
    g_assert_cmpuint(n, ==, 2000);
    g_assert_cmpuint(d.g->len, ==, 2000);
    for (i = 0; i < d.g->len; i++) {
        g_assert_cmpuint(g_array_index(d.g, uint64_t, i), ==, 1002 + 2 * i);
        g_assert_cmpuint(g_array_index(d.b, uint32_t, i), ==,
                         (1002 + 2 * i) * 3);
    }
    g_assert_true(bsst_map_lookup(map, 1000, NULL));
    g_assert_false(bsst_map_lookup(map, 1002, NULL));
    g_assert_false(bsst_map_lookup(map, 5000, NULL));
    g_assert_true(bsst_map_lookup(map, 5002, NULL));
    g_assert_cmpuint(bsst_map_count(map), ==, 8000);
    assert_map_sound(map);

    /* everything, without a callback */
    n = bsst_map_remove_range(map, 0, UINT64_MAX, NULL, NULL);
    g_assert_cmpuint(n, ==, 8000);
    g_assert_cmpuint(bsst_map_count(map), ==, 0);
    g_assert_cmpuint(bsst_map_height(map), ==, 1);
    assert_map_sound(map);
    g_array_free(d.g, true);
    g_array_free(d.b, true);
    bsst_map_free(map);
}

typedef struct IterState {
    uint64_t n;
    uint64_t last;
    uint64_t stop_after;
} IterState;

static int iter_cb(void *opaque, uint64_t gblock, uint32_t bblock)
{
    IterState *st = opaque;

    if (st->n > 0) {
        g_assert_cmpuint(gblock, >, st->last);
    }
    g_assert_cmpuint(bblock, ==, (uint32_t)~gblock);
    st->last = gblock;
    st->n++;
    return st->n == st->stop_after ? 42 : 0;
}

static void test_foreach(void)
{
    BsstMap *map = bsst_map_new();
    IterState st = { 0 };
    GRand *rand = g_rand_new_with_seed(7);
    uint64_t i, g;

    for (i = 0; i < 30000; i++) {
        g = g_rand_int_range(rand, 0, 1000000);
        bsst_map_insert(map, g, (uint32_t)~g, NULL);
    }
    g_assert_cmpint(bsst_map_foreach(map, 0, UINT64_MAX, iter_cb, &st), ==, 0);
    g_assert_cmpuint(st.n, ==, bsst_map_count(map));

    memset(&st, 0, sizeof(st));
    st.stop_after = 100;
    g_assert_cmpint(bsst_map_foreach(map, 0, UINT64_MAX, iter_cb, &st), ==,
                    42);
    g_assert_cmpuint(st.n, ==, 100);

    memset(&st, 0, sizeof(st));
    bsst_map_foreach(map, 400000, 600000, iter_cb, &st);
    g_assert_cmpuint(st.n, >, 0);
    g_assert_cmpuint(st.last, <, 600000);
    g_rand_free(rand);
    bsst_map_free(map);
}

/*
 * Reference model over a window of KSPACE guest blocks starting at @base:
 * a bitmap of mapped blocks and their values.
 */
#define KSPACE (1u << 17)

typedef struct Model {
    uint64_t base;
    unsigned long *present;
    uint32_t *val;
    uint64_t count;
} Model;

static bool model_find_next(Model *m, uint64_t start, uint64_t end,
                            uint64_t *g, uint32_t *b, uint64_t *run)
{
    uint64_t i = find_next_bit(m->present, KSPACE, start), len = 1;

    if (i >= end || i >= KSPACE) {
        return false;
    }
    *g = i;
    *b = m->val[i];
    while (i + len < end && i + len < KSPACE &&
           test_bit(i + len, m->present) &&
           m->val[i + len] == (uint64_t)*b + len) {
        len++;
    }
    *run = len;
    return true;
}

static void check_against_model(BsstMap *map, Model *m)
{
    uint64_t i, start = 0, g, run;
    uint32_t b;

    assert_map_sound(map);
    g_assert_cmpuint(bsst_map_count(map), ==, m->count);
    /* walk the whole map by runs */
    while (bsst_map_find_next(map, m->base + start, UINT64_MAX, &g, &b,
                              &run)) {
        uint64_t mg, mrun;
        uint32_t mb;

        g_assert_true(model_find_next(m, start, KSPACE, &mg, &mb, &mrun));
        g_assert_cmpuint(g, ==, m->base + mg);
        g_assert_cmpuint(b, ==, mb);
        g_assert_cmpuint(run, ==, mrun);
        start = mg + run;
    }
    g_assert_false(model_find_next(m, start, KSPACE, &g, &b, &run));
    for (i = 0; i < 64; i++) {
        uint64_t k = g_test_rand_int_range(0, KSPACE);

        g_assert_cmpint(bsst_map_lookup(map, m->base + k, &b), ==,
                        test_bit(k, m->present));
    }
}

typedef struct RangeCheck {
    Model *m;
    uint64_t last;
    uint64_t n;
} RangeCheck;

static void range_drop_cb(void *opaque, uint64_t gblock, uint32_t bblock)
{
    RangeCheck *rc = opaque;
    uint64_t k = gblock - rc->m->base;

    g_assert_cmpuint(k, <, KSPACE);
    g_assert_true(test_bit(k, rc->m->present));
    g_assert_cmpuint(bblock, ==, rc->m->val[k]);
    if (rc->n) {
        g_assert_cmpuint(gblock, >, rc->last);
    }
    rc->last = gblock;
    rc->n++;
    clear_bit(k, rc->m->present);
    rc->m->count--;
}

/* Random operations against the model; @phases: grow, churn, shrink. */
static void run_random(uint64_t base, uint32_t seed, unsigned ops_per_phase)
{
    BsstMap *map = bsst_map_new();
    Model m = { .base = base };
    GRand *rand = g_rand_new_with_seed(seed);
    unsigned phase, op, max_height = 0;
    uint64_t max_count = 0;

    m.present = bitmap_new(KSPACE);
    m.val = g_new0(uint32_t, KSPACE);

    for (phase = 0; phase < 3; phase++) {
        /* percent of inserts: grow, churn, shrink */
        static const unsigned insert_pct[] = { 85, 50, 8 };

        for (op = 0; op < ops_per_phase; op++) {
            unsigned r = g_rand_int_range(rand, 0, 100);
            uint64_t k = g_rand_int_range(rand, 0, KSPACE);
            uint32_t v = g_rand_int(rand), b = 0, old = 0;
            uint64_t g, run, mg, mrun;
            uint32_t mb;

            if (r < insert_pct[phase]) {
                /* single insert, or a short run of consecutive blocks */
                unsigned len = g_rand_int_range(rand, 0, 4) ? 1 :
                               g_rand_int_range(rand, 1, 300);
                unsigned j;

                for (j = 0; j < len && k + j < KSPACE; j++) {
                    bool had = test_bit(k + j, m.present);
                    bool rep = bsst_map_insert(map, base + k + j, v + j, &old);

                    g_assert_cmpint(rep, ==, had);
                    if (had) {
                        g_assert_cmpuint(old, ==, m.val[k + j]);
                    } else {
                        set_bit(k + j, m.present);
                        m.count++;
                    }
                    m.val[k + j] = v + j;
                }
            } else if (r < 97) {
                bool had = test_bit(k, m.present);

                g_assert_cmpint(bsst_map_remove(map, base + k, &old), ==, had);
                if (had) {
                    g_assert_cmpuint(old, ==, m.val[k]);
                    clear_bit(k, m.present);
                    m.count--;
                }
                /* and a lookup and a find_next around it */
                k = g_rand_int_range(rand, 0, KSPACE);
                g_assert_cmpint(bsst_map_lookup(map, base + k, &b), ==,
                                test_bit(k, m.present));
                if (test_bit(k, m.present)) {
                    g_assert_cmpuint(b, ==, m.val[k]);
                }
                {
                    uint64_t end = MIN(KSPACE, k + g_rand_int_range(rand, 1,
                                                                    5000));
                    bool found = bsst_map_find_next(map, base + k, base + end,
                                                    &g, &b, &run);

                    g_assert_cmpint(found, ==,
                                    model_find_next(&m, k, end, &mg, &mb,
                                                    &mrun));
                    if (found) {
                        g_assert_cmpuint(g, ==, base + mg);
                        g_assert_cmpuint(b, ==, mb);
                        g_assert_cmpuint(run, ==, mrun);
                    }
                }
            } else {
                /* range removal: mostly small, sometimes large */
                uint64_t len = g_rand_int_range(rand, 0, 4) ?
                               g_rand_int_range(rand, 1, 64) :
                               g_rand_int_range(rand, 64, KSPACE / 8);
                uint64_t end = MIN(KSPACE, k + len), before = m.count;
                RangeCheck rc = { .m = &m };
                uint64_t n;

                n = bsst_map_remove_range(map, base + k, base + end,
                                          range_drop_cb, &rc);
                g_assert_cmpuint(n, ==, rc.n);
                g_assert_cmpuint(before - m.count, ==, n);
                g_assert_cmpuint(find_next_bit(m.present, end, k), ==, end);
            }
            max_height = MAX(max_height, bsst_map_height(map));
            max_count = MAX(max_count, m.count);
            if (op % 2000 == 0) {
                check_against_model(map, &m);
            }
        }
        check_against_model(map, &m);
    }
    g_test_message("base %" PRIu64 ": max %" PRIu64 " entries, height %u, "
                   "final %" PRIu64, base, max_count, max_height, m.count);
    /* the test must have exercised a tree of three levels */
    g_assert_cmpuint(max_height, >=, 3);

    bsst_map_remove_range(map, 0, UINT64_MAX, NULL, NULL);
    g_assert_cmpuint(bsst_map_count(map), ==, 0);
    g_assert_cmpuint(bsst_map_height(map), ==, 1);
    assert_map_sound(map);

    g_free(m.present);
    g_free(m.val);
    g_rand_free(rand);
    bsst_map_free(map);
}

static void test_random_low(void)
{
    run_random(0, 1234, 60000);
}

static void test_random_high(void)
{
    /* the window ends at the largest valid guest block */
    run_random(BSST_MAP_GBLOCK_MAX - KSPACE + 1, 99, 60000);
}

/* Memory: ascending, descending and random fills stay under 32 B/entry. */
static void test_memory_orders(void)
{
    const uint64_t n = 200000;
    BsstMap *map;
    uint64_t i;
    double bpe;

    map = bsst_map_new();
    for (i = 0; i < n; i++) {
        bsst_map_insert(map, i * 3, i, NULL);
    }
    assert_map_sound(map);
    bpe = (double)bsst_map_mem_bytes(map) / n;
    g_test_message("ascending fill: %.2f bytes/entry", bpe);
    g_assert_cmpfloat(bpe, <, 14.0);    /* the left spill keeps leaves full */
    bsst_map_free(map);

    map = bsst_map_new();
    for (i = n; i > 0; i--) {
        bsst_map_insert(map, i * 3, i, NULL);
    }
    assert_map_sound(map);
    bpe = (double)bsst_map_mem_bytes(map) / n;
    g_test_message("descending fill: %.2f bytes/entry", bpe);
    g_assert_cmpfloat(bpe, <=, 32.0);
    /* remove every other entry: nodes merge, memory stays bounded */
    for (i = n; i > 0; i -= 2) {
        g_assert_true(bsst_map_remove(map, i * 3, NULL));
    }
    assert_map_sound(map);
    bpe = (double)bsst_map_mem_bytes(map) / bsst_map_count(map);
    g_test_message("after removing half: %.2f bytes/entry", bpe);
    g_assert_cmpfloat(bpe, <=, 32.0);
    bsst_map_free(map);
}

/* 1M random entries: bytes/entry (asserted) and lookup time (printed). */
static void test_bench_1m(void)
{
    double ns, bpe;

    bsst_map_bench(1000000, 2014, &ns, &bpe);
    g_test_message("1M random entries: %.2f bytes/entry, %.1f ns/lookup",
                   bpe, ns);
    g_assert_cmpfloat(bpe, <=, 32.0);
    g_assert_cmpfloat(bpe, >=, 12.0);   /* sanity: the packed entry size */
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/tesseract/bsst-map/empty", test_empty);
    g_test_add_func("/tesseract/bsst-map/basic", test_basic);
    g_test_add_func("/tesseract/bsst-map/runs", test_runs);
    g_test_add_func("/tesseract/bsst-map/remove-range", test_remove_range);
    g_test_add_func("/tesseract/bsst-map/foreach", test_foreach);
    g_test_add_func("/tesseract/bsst-map/random-low", test_random_low);
    g_test_add_func("/tesseract/bsst-map/random-high", test_random_high);
    g_test_add_func("/tesseract/bsst-map/memory-orders", test_memory_orders);
    g_test_add_func("/tesseract/bsst-map/bench-1m", test_bench_1m);
    return g_test_run();
}

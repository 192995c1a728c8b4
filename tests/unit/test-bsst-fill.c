/*
 * Unit tests: slots waiting for the data of an indirected block
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "bsst-fill.h"

static BsstFill fill(uint32_t b, uint32_t slot, void *owner)
{
    return (BsstFill) { .bblock = b, .slot = slot, .gblock = b * 10,
                        .owner = owner };
}

static void test_basic(void)
{
    BsstFillTable *t = bsst_fill_new(4);
    BsstFill f = fill(7, 100, NULL), got, ev;
    bool evicted;

    g_assert_false(bsst_fill_take(t, 7, &got));
    g_assert_true(bsst_fill_add(t, &f, &ev, &evicted));
    g_assert_false(evicted);
    /* one slot per awaited block */
    f.slot = 101;
    g_assert_false(bsst_fill_add(t, &f, &ev, &evicted));
    g_assert_cmpuint(bsst_fill_count(t), ==, 1);
    g_assert_true(bsst_fill_take(t, 7, &got));
    g_assert_cmpuint(got.slot, ==, 100);
    g_assert_cmpuint(got.gblock, ==, 70);
    g_assert_false(bsst_fill_take(t, 7, &got));
    g_assert_cmpuint(bsst_fill_count(t), ==, 0);
    bsst_fill_free(t);
}

/* Full: the oldest entry goes, taken ones leave room. */
static void test_evict(void)
{
    BsstFillTable *t = bsst_fill_new(3);
    BsstFill f, got, ev;
    bool evicted;
    uint32_t b;

    for (b = 1; b <= 3; b++) {
        f = fill(b, 100 + b, NULL);
        g_assert_true(bsst_fill_add(t, &f, &ev, &evicted));
        g_assert_false(evicted);
    }
    f = fill(4, 104, NULL);
    g_assert_true(bsst_fill_add(t, &f, &ev, &evicted));
    g_assert_true(evicted);
    g_assert_cmpuint(ev.bblock, ==, 1);
    g_assert_cmpuint(ev.slot, ==, 101);
    g_assert_false(bsst_fill_take(t, 1, &got));

    /* take the oldest: the next add evicts nothing */
    g_assert_true(bsst_fill_take(t, 2, &got));
    f = fill(5, 105, NULL);
    g_assert_true(bsst_fill_add(t, &f, &ev, &evicted));
    g_assert_false(evicted);
    f = fill(6, 106, NULL);
    g_assert_true(bsst_fill_add(t, &f, &ev, &evicted));
    g_assert_true(evicted);
    g_assert_cmpuint(ev.bblock, ==, 3);
    g_assert_cmpuint(bsst_fill_count(t), ==, 3);
    for (b = 4; b <= 6; b++) {
        g_assert_true(bsst_fill_take(t, b, &got));
        g_assert_cmpuint(got.slot, ==, 100 + b);
    }
    bsst_fill_free(t);
}

static void test_purge(void)
{
    BsstFillTable *t = bsst_fill_new(8);
    GArray *out = g_array_new(false, false, sizeof(BsstFill));
    int a, b;
    BsstFill f, got, ev;
    bool evicted;
    uint32_t i;

    for (i = 0; i < 6; i++) {
        f = fill(i, 200 + i, i % 2 ? &a : &b);
        g_assert_true(bsst_fill_add(t, &f, &ev, &evicted));
    }
    bsst_fill_purge(t, &a, out);
    g_assert_cmpuint(out->len, ==, 3);
    for (i = 0; i < out->len; i++) {
        f = g_array_index(out, BsstFill, i);
        g_assert_true(f.owner == &a);
        g_assert_cmpuint(f.bblock % 2, ==, 1);
        g_assert_false(bsst_fill_take(t, f.bblock, &got));
    }
    g_assert_cmpuint(bsst_fill_count(t), ==, 3);
    for (i = 0; i < 6; i += 2) {
        g_assert_true(bsst_fill_take(t, i, &got));
        g_assert_true(got.owner == &b);
    }
    g_array_free(out, true);
    bsst_fill_free(t);
}

/*
 * Random adds, takes, purges against a model (entries in arrival order):
 * a take returns what was added unless it was evicted or purged, an
 * eviction takes the oldest live entry, and no slot is ever lost (each
 * slot added comes back exactly once: taken, evicted, purged or left).
 */
static void test_random(void)
{
    const unsigned cap = 16;
    BsstFillTable *t = bsst_fill_new(cap);
    GArray *model = g_array_new(false, false, sizeof(BsstFill));
    GArray *out = g_array_new(false, false, sizeof(BsstFill));
    GRand *r = g_rand_new_with_seed(42);
    unsigned back = 0, added = 0, i, j;
    int owners[3];

    for (i = 0; i < 20000; i++) {
        uint32_t b = g_rand_int_range(r, 0, 64);
        int op = g_rand_int_range(r, 0, 10);
        BsstFill f, got, ev;
        bool evicted, in_model = false;

        for (j = 0; j < model->len; j++) {
            if (g_array_index(model, BsstFill, j).bblock == b) {
                in_model = true;
                break;
            }
        }
        if (op < 5) {
            f = fill(b, 1000 + i, &owners[g_rand_int_range(r, 0, 3)]);
            if (!bsst_fill_add(t, &f, &ev, &evicted)) {
                g_assert_true(in_model);
                continue;
            }
            g_assert_false(in_model);
            added++;
            if (evicted) {
                BsstFill old = g_array_index(model, BsstFill, 0);

                g_assert_cmpuint(ev.bblock, ==, old.bblock);
                g_assert_cmpuint(ev.slot, ==, old.slot);
                g_array_remove_index(model, 0);
                back++;
            }
            g_array_append_val(model, f);
        } else if (op < 9) {
            g_assert_cmpint(bsst_fill_take(t, b, &got), ==, in_model);
            if (in_model) {
                g_assert_cmpuint(got.slot, ==,
                                 g_array_index(model, BsstFill, j).slot);
                g_array_remove_index(model, j);
                back++;
            }
        } else {
            void *owner = &owners[g_rand_int_range(r, 0, 3)];

            g_array_set_size(out, 0);
            bsst_fill_purge(t, owner, out);
            for (j = 0; j < model->len; ) {
                if (g_array_index(model, BsstFill, j).owner == owner) {
                    g_array_remove_index(model, j);
                } else {
                    j++;
                }
            }
            back += out->len;
        }
        g_assert_cmpuint(bsst_fill_count(t), ==, model->len);
        g_assert_cmpuint(model->len, <=, cap);
    }
    g_assert_cmpuint(back + model->len, ==, added);
    g_rand_free(r);
    g_array_free(out, true);
    g_array_free(model, true);
    bsst_fill_free(t);
}

/*
 * Fills that arrive together, sorted by slot, split into runs of
 * neighbouring slots for neighbouring guest blocks of one owner.
 */
static void test_run(void)
{
    int a, b;
    /* slot, gblock, owner */
    BsstFill f[] = {
        { .slot = 50, .gblock = 7, .owner = &a },
        { .slot = 10, .gblock = 100, .owner = &a },
        { .slot = 12, .gblock = 102, .owner = &a },
        { .slot = 11, .gblock = 101, .owner = &a },
        { .slot = 13, .gblock = 200, .owner = &a },     /* guest gap */
        { .slot = 14, .gblock = 201, .owner = &b },     /* other disk */
        { .slot = 51, .gblock = 8, .owner = &a },
        { .slot = 53, .gblock = 10, .owner = &a },      /* slot gap */
    };
    BsstFill *p[G_N_ELEMENTS(f)];
    unsigned i, n = G_N_ELEMENTS(f), runs[8], nruns = 0;

    for (i = 0; i < n; i++) {
        p[i] = &f[i];
    }
    qsort(p, n, sizeof(p[0]), bsst_fill_cmp_slot);
    for (i = 1; i < n; i++) {
        g_assert_cmpuint(p[i - 1]->slot, <, p[i]->slot);
    }
    for (i = 0; i < n; i += runs[nruns++]) {
        runs[nruns] = bsst_fill_run(&p[i], n - i, 64);
    }
    /* 10-12 | 13 | 14 | 50-51 | 53 */
    g_assert_cmpuint(nruns, ==, 5);
    g_assert_cmpuint(runs[0], ==, 3);
    g_assert_cmpuint(runs[1], ==, 1);
    g_assert_cmpuint(runs[2], ==, 1);
    g_assert_cmpuint(runs[3], ==, 2);
    g_assert_cmpuint(runs[4], ==, 1);
    /* capped */
    g_assert_cmpuint(bsst_fill_run(&p[0], n, 2), ==, 2);
    g_assert_cmpuint(bsst_fill_run(&p[0], 1, 64), ==, 1);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/tesseract/fill/basic", test_basic);
    g_test_add_func("/tesseract/fill/evict", test_evict);
    g_test_add_func("/tesseract/fill/purge", test_purge);
    g_test_add_func("/tesseract/fill/random", test_random);
    g_test_add_func("/tesseract/fill/run", test_run);
    return g_test_run();
}

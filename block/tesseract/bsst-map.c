/*
 * Tesseract: in-memory indirection map of one guest disk (a B+tree)
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "bsst-map.h"

/*
 * Node sizes are chosen so that a node plus the allocator's 16-byte chunk
 * header is 2 KiB.  Leaves hold LEAF_CAP entries, interior nodes INNER_CAP
 * children.  Every node but the root holds at least its MIN.
 */
#define LEAF_CAP 168
#define LEAF_MIN (LEAF_CAP / 2)
#define INNER_CAP 127
#define INNER_MIN ((INNER_CAP + 1) / 2)
#define MAX_HEIGHT 24

typedef struct BsstMapLeaf BsstMapLeaf;

struct BsstMapLeaf {
    BsstMapLeaf *next;              /* next leaf in key order */
    uint16_t n;
    uint32_t val[LEAF_CAP];
    uint64_t key[LEAF_CAP];         /* ascending */
};

/*
 * n children, n - 1 separators: every key under child[i] is < key[i] and
 * every key under child[i + 1] is >= key[i].
 */
typedef struct BsstMapInner {
    uint16_t n;
    uint64_t key[INNER_CAP - 1];
    void *child[INNER_CAP];
} BsstMapInner;

struct BsstMap {
    void *root;                     /* a leaf when height == 1 */
    unsigned height;
    uint64_t count;
    uint64_t runs;                  /* maximal runs, see bsst_map_runs() */
    size_t nleaves;
    size_t ninner;
};

/* One step of a root-to-leaf descent: the node and the child taken. */
typedef struct BsstMapPath {
    BsstMapInner *node;
    unsigned idx;
} BsstMapPath;

QEMU_BUILD_BUG_ON(LEAF_CAP > UINT16_MAX || INNER_CAP > UINT16_MAX);

static BsstMapLeaf *leaf_new(BsstMap *map)
{
    map->nleaves++;
    return g_new0(BsstMapLeaf, 1);
}

static void leaf_free(BsstMap *map, BsstMapLeaf *leaf)
{
    map->nleaves--;
    g_free(leaf);
}

static BsstMapInner *inner_new(BsstMap *map)
{
    map->ninner++;
    return g_new0(BsstMapInner, 1);
}

static void inner_free(BsstMap *map, BsstMapInner *inner)
{
    map->ninner--;
    g_free(inner);
}

/* First index whose key is >= @key (n if none). */
static unsigned leaf_lower_bound(const BsstMapLeaf *leaf, uint64_t key)
{
    unsigned lo = 0, hi = leaf->n;

    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;

        if (leaf->key[mid] < key) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* Index of the child whose subtree may hold @key. */
static unsigned inner_child_index(const BsstMapInner *inner, uint64_t key)
{
    unsigned lo = 0, hi = inner->n - 1;

    /* number of separators <= key */
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;

        if (inner->key[mid] <= key) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* Descend to the leaf for @key, recording the path if @path is non-NULL. */
static BsstMapLeaf *descend(const BsstMap *map, uint64_t key,
                            BsstMapPath *path)
{
    void *node = map->root;
    unsigned level;

    for (level = 0; level + 1 < map->height; level++) {
        BsstMapInner *inner = node;
        unsigned idx = inner_child_index(inner, key);

        if (path) {
            path[level].node = inner;
            path[level].idx = idx;
        }
        node = inner->child[idx];
    }
    return node;
}

static void leaf_insert_at(BsstMapLeaf *leaf, unsigned i, uint64_t key,
                           uint32_t val)
{
    assert(leaf->n < LEAF_CAP && i <= leaf->n);
    memmove(&leaf->key[i + 1], &leaf->key[i],
            (leaf->n - i) * sizeof(leaf->key[0]));
    memmove(&leaf->val[i + 1], &leaf->val[i],
            (leaf->n - i) * sizeof(leaf->val[0]));
    leaf->key[i] = key;
    leaf->val[i] = val;
    leaf->n++;
}

static void leaf_remove_at(BsstMapLeaf *leaf, unsigned i)
{
    assert(i < leaf->n);
    memmove(&leaf->key[i], &leaf->key[i + 1],
            (leaf->n - i - 1) * sizeof(leaf->key[0]));
    memmove(&leaf->val[i], &leaf->val[i + 1],
            (leaf->n - i - 1) * sizeof(leaf->val[0]));
    leaf->n--;
}

/* Move the @cnt entries of @src starting at @from to the end of @dst. */
static void leaf_move_tail(BsstMapLeaf *dst, BsstMapLeaf *src, unsigned from,
                           unsigned cnt)
{
    assert(dst->n + cnt <= LEAF_CAP && from + cnt <= src->n);
    memcpy(&dst->key[dst->n], &src->key[from], cnt * sizeof(src->key[0]));
    memcpy(&dst->val[dst->n], &src->val[from], cnt * sizeof(src->val[0]));
    dst->n += cnt;
    memmove(&src->key[from], &src->key[from + cnt],
            (src->n - from - cnt) * sizeof(src->key[0]));
    memmove(&src->val[from], &src->val[from + cnt],
            (src->n - from - cnt) * sizeof(src->val[0]));
    src->n -= cnt;
}

/* Insert separator @key at @i and @child right of it (as child i + 1). */
static void inner_insert_at(BsstMapInner *inner, unsigned i, uint64_t key,
                            void *child)
{
    assert(inner->n < INNER_CAP && i < inner->n);
    memmove(&inner->key[i + 1], &inner->key[i],
            (inner->n - 1 - i) * sizeof(inner->key[0]));
    memmove(&inner->child[i + 2], &inner->child[i + 1],
            (inner->n - 1 - i) * sizeof(inner->child[0]));
    inner->key[i] = key;
    inner->child[i + 1] = child;
    inner->n++;
}

/* Remove separator @i and child i + 1. */
static void inner_remove_at(BsstMapInner *inner, unsigned i)
{
    assert(i + 1 < inner->n);
    memmove(&inner->key[i], &inner->key[i + 1],
            (inner->n - 2 - i) * sizeof(inner->key[0]));
    memmove(&inner->child[i + 1], &inner->child[i + 2],
            (inner->n - 2 - i) * sizeof(inner->child[0]));
    inner->n--;
}

BsstMap *bsst_map_new(void)
{
    BsstMap *map = g_new0(BsstMap, 1);

    map->root = leaf_new(map);
    map->height = 1;
    return map;
}

static void free_subtree(BsstMap *map, void *node, unsigned height)
{
    if (height > 1) {
        BsstMapInner *inner = node;
        unsigned i;

        for (i = 0; i < inner->n; i++) {
            free_subtree(map, inner->child[i], height - 1);
        }
        inner_free(map, inner);
    } else {
        leaf_free(map, node);
    }
}

void bsst_map_clear(BsstMap *map)
{
    free_subtree(map, map->root, map->height);
    assert(map->nleaves == 0 && map->ninner == 0);
    map->root = leaf_new(map);
    map->height = 1;
    map->count = 0;
    map->runs = 0;
}

void bsst_map_free(BsstMap *map)
{
    if (!map) {
        return;
    }
    free_subtree(map, map->root, map->height);
    g_free(map);
}

uint64_t bsst_map_count(const BsstMap *map)
{
    return map->count;
}

uint64_t bsst_map_runs(const BsstMap *map)
{
    return map->runs;
}

size_t bsst_map_mem_bytes(const BsstMap *map)
{
    return sizeof(*map) + map->nleaves * sizeof(BsstMapLeaf) +
           map->ninner * sizeof(BsstMapInner);
}

unsigned bsst_map_height(const BsstMap *map)
{
    return map->height;
}

bool bsst_map_lookup(const BsstMap *map, uint64_t gblock, uint32_t *bblock)
{
    const BsstMapLeaf *leaf = descend(map, gblock, NULL);
    unsigned i = leaf_lower_bound(leaf, gblock);

    if (i < leaf->n && leaf->key[i] == gblock) {
        if (bblock) {
            *bblock = leaf->val[i];
        }
        return true;
    }
    return false;
}

bool bsst_map_find_next(const BsstMap *map, uint64_t start, uint64_t end,
                        uint64_t *gblock, uint32_t *bblock, uint64_t *run)
{
    const BsstMapLeaf *leaf;
    unsigned i;
    uint64_t g, len;
    uint32_t b;

    if (start >= end) {
        return false;
    }
    leaf = descend(map, start, NULL);
    i = leaf_lower_bound(leaf, start);
    if (i == leaf->n) {
        /* separators guarantee the successor is first in the next leaf */
        leaf = leaf->next;
        i = 0;
        if (!leaf) {
            return false;
        }
    }
    g = leaf->key[i];
    b = leaf->val[i];
    if (g >= end) {
        return false;
    }
    *gblock = g;
    *bblock = b;
    if (!run) {
        return true;
    }
    len = 1;
    for (;;) {
        if (++i == leaf->n) {
            leaf = leaf->next;
            i = 0;
            if (!leaf) {
                break;
            }
        }
        if (leaf->key[i] != g + len || leaf->key[i] >= end ||
            leaf->val[i] != (uint32_t)(b + len) || b + len > UINT32_MAX) {
            break;
        }
        len++;
    }
    *run = len;
    return true;
}

/*
 * Insert (@sep, @child) as the right neighbour of the child taken at
 * @level of @path, splitting interior nodes upwards as needed.
 */
static void insert_up(BsstMap *map, BsstMapPath *path, int level,
                      uint64_t sep, void *child)
{
    for (; level >= 0; level--) {
        BsstMapInner *node = path[level].node, *right;
        unsigned idx = path[level].idx, i, left_n;
        uint64_t tk[INNER_CAP];
        void *tc[INNER_CAP + 1];

        if (node->n < INNER_CAP) {
            inner_insert_at(node, idx, sep, child);
            return;
        }

        /* Full: lay out the INNER_CAP + 1 children, then split them. */
        memcpy(tk, node->key, idx * sizeof(tk[0]));
        tk[idx] = sep;
        memcpy(&tk[idx + 1], &node->key[idx],
               (INNER_CAP - 1 - idx) * sizeof(tk[0]));
        memcpy(tc, node->child, (idx + 1) * sizeof(tc[0]));
        tc[idx + 1] = child;
        memcpy(&tc[idx + 2], &node->child[idx + 1],
               (INNER_CAP - 1 - idx) * sizeof(tc[0]));

        left_n = (INNER_CAP + 1) / 2;
        right = inner_new(map);
        node->n = left_n;
        memcpy(node->key, tk, (left_n - 1) * sizeof(tk[0]));
        memcpy(node->child, tc, left_n * sizeof(tc[0]));
        right->n = INNER_CAP + 1 - left_n;
        for (i = 0; i < right->n; i++) {
            right->child[i] = tc[left_n + i];
            if (i + 1 < right->n) {
                right->key[i] = tk[left_n + i];
            }
        }
        sep = tk[left_n - 1];
        child = right;
    }

    /* The root split: grow the tree. */
    {
        BsstMapInner *root = inner_new(map);

        assert(map->height < MAX_HEIGHT);
        root->n = 2;
        root->key[0] = sep;
        root->child[0] = map->root;
        root->child[1] = child;
        map->root = root;
        map->height++;
    }
}

/*
 * How many of the neighbours of an entry (@gblock -> @bblock) at index @i
 * of @leaf continue its run: the entry before it if that maps gblock - 1
 * to bblock - 1, the entry after it if that maps gblock + 1 to bblock + 1
 * (a run does not wrap round either number space, as in
 * bsst_map_find_next()).  With @present, the entry itself is at @i; else
 * @i is where it would be inserted.  The predecessor of a leaf's first
 * entry is in another leaf: found by a descent.
 */
static unsigned run_neighbours(const BsstMap *map, const BsstMapLeaf *leaf,
                               unsigned i, bool present, uint64_t gblock,
                               uint32_t bblock)
{
    unsigned n = 0, succ = present ? i + 1 : i;
    uint32_t b;

    if (gblock > 0 && bblock > 0) {
        if (i > 0) {
            n += leaf->key[i - 1] == gblock - 1 &&
                 leaf->val[i - 1] == bblock - 1;
        } else {
            n += bsst_map_lookup(map, gblock - 1, &b) && b == bblock - 1;
        }
    }
    if (succ == leaf->n) {
        leaf = leaf->next;
        succ = 0;
    }
    if (leaf && succ < leaf->n && bblock < UINT32_MAX) {
        n += leaf->key[succ] == gblock + 1 && leaf->val[succ] == bblock + 1;
    }
    return n;
}

bool bsst_map_insert(BsstMap *map, uint64_t gblock, uint32_t bblock,
                     uint32_t *old_bblock)
{
    BsstMapPath path[MAX_HEIGHT];
    BsstMapLeaf *leaf, *right;
    int plevel = (int)map->height - 2;
    unsigned i;

    assert(gblock <= BSST_MAP_GBLOCK_MAX);
    leaf = descend(map, gblock, path);
    i = leaf_lower_bound(leaf, gblock);
    if (i < leaf->n && leaf->key[i] == gblock) {
        if (old_bblock) {
            *old_bblock = leaf->val[i];
        }
        /* the old entry's run contribution out, the new one's in */
        map->runs += run_neighbours(map, leaf, i, true, gblock, leaf->val[i]);
        map->runs -= run_neighbours(map, leaf, i, true, gblock, bblock);
        leaf->val[i] = bblock;
        return true;
    }
    map->count++;
    /* a new entry starts a run, unless it extends or joins its neighbours' */
    map->runs += 1;
    map->runs -= run_neighbours(map, leaf, i, false, gblock, bblock);
    if (leaf->n < LEAF_CAP) {
        leaf_insert_at(leaf, i, gblock, bblock);
        return false;
    }

    /*
     * Full.  If the left sibling has room, shift our first entry there:
     * this keeps ascending (sequential) fills close to 100% full.
     */
    if (plevel >= 0 && path[plevel].idx > 0) {
        BsstMapInner *parent = path[plevel].node;
        unsigned pidx = path[plevel].idx;
        BsstMapLeaf *left = parent->child[pidx - 1];

        if (left->n < LEAF_CAP) {
            if (i == 0) {
                /* the new key sorts between left's keys and ours */
                leaf_insert_at(left, left->n, gblock, bblock);
            } else {
                leaf_move_tail(left, leaf, 0, 1);
                leaf_insert_at(leaf, i - 1, gblock, bblock);
            }
            parent->key[pidx - 1] = leaf->key[0];
            return false;
        }
    }

    /* Split: the left half keeps LEAF_CAP / 2 + 1 entries in total. */
    right = leaf_new(map);
    if (i <= LEAF_MIN) {
        leaf_move_tail(right, leaf, LEAF_MIN, LEAF_CAP - LEAF_MIN);
        leaf_insert_at(leaf, i, gblock, bblock);
    } else {
        leaf_move_tail(right, leaf, LEAF_MIN + 1, LEAF_CAP - LEAF_MIN - 1);
        leaf_insert_at(right, i - LEAF_MIN - 1, gblock, bblock);
    }
    right->next = leaf->next;
    leaf->next = right;
    insert_up(map, path, plevel, right->key[0], right);
    return false;
}

/* Restore the fill of the interior node at @level of @path after a merge. */
static void rebalance_inner(BsstMap *map, BsstMapPath *path, int level)
{
    for (; level >= 0; level--) {
        BsstMapInner *node = path[level].node, *parent, *left, *right;
        unsigned pidx;

        if (level == 0) {
            if (node->n == 1) {
                map->root = node->child[0];
                map->height--;
                inner_free(map, node);
            }
            return;
        }
        if (node->n >= INNER_MIN) {
            return;
        }
        parent = path[level - 1].node;
        pidx = path[level - 1].idx;
        left = pidx > 0 ? parent->child[pidx - 1] : NULL;
        right = pidx + 1 < parent->n ? parent->child[pidx + 1] : NULL;

        if (left && left->n > INNER_MIN) {
            memmove(&node->key[1], &node->key[0],
                    (node->n - 1) * sizeof(node->key[0]));
            memmove(&node->child[1], &node->child[0],
                    node->n * sizeof(node->child[0]));
            node->child[0] = left->child[left->n - 1];
            node->key[0] = parent->key[pidx - 1];
            parent->key[pidx - 1] = left->key[left->n - 2];
            left->n--;
            node->n++;
            return;
        }
        if (right && right->n > INNER_MIN) {
            node->child[node->n] = right->child[0];
            node->key[node->n - 1] = parent->key[pidx];
            parent->key[pidx] = right->key[0];
            memmove(&right->key[0], &right->key[1],
                    (right->n - 2) * sizeof(right->key[0]));
            memmove(&right->child[0], &right->child[1],
                    (right->n - 1) * sizeof(right->child[0]));
            right->n--;
            node->n++;
            return;
        }
        if (left) {
            /* merge node into left */
            left->key[left->n - 1] = parent->key[pidx - 1];
            memcpy(&left->key[left->n], node->key,
                   (node->n - 1) * sizeof(node->key[0]));
            memcpy(&left->child[left->n], node->child,
                   node->n * sizeof(node->child[0]));
            left->n += node->n;
            inner_free(map, node);
            inner_remove_at(parent, pidx - 1);
        } else {
            /* merge right into node */
            assert(right);
            node->key[node->n - 1] = parent->key[pidx];
            memcpy(&node->key[node->n], right->key,
                   (right->n - 1) * sizeof(right->key[0]));
            memcpy(&node->child[node->n], right->child,
                   right->n * sizeof(right->child[0]));
            node->n += right->n;
            inner_free(map, right);
            inner_remove_at(parent, pidx);
        }
    }
}

static void rebalance_leaf(BsstMap *map, BsstMapPath *path, BsstMapLeaf *leaf)
{
    int plevel = (int)map->height - 2;
    BsstMapInner *parent;
    BsstMapLeaf *left, *right;
    unsigned pidx;

    if (plevel < 0 || leaf->n >= LEAF_MIN) {
        return;
    }
    parent = path[plevel].node;
    pidx = path[plevel].idx;
    left = pidx > 0 ? parent->child[pidx - 1] : NULL;
    right = pidx + 1 < parent->n ? parent->child[pidx + 1] : NULL;

    if (left && left->n > LEAF_MIN) {
        leaf_insert_at(leaf, 0, left->key[left->n - 1], left->val[left->n - 1]);
        left->n--;
        parent->key[pidx - 1] = leaf->key[0];
        return;
    }
    if (right && right->n > LEAF_MIN) {
        leaf_move_tail(leaf, right, 0, 1);
        parent->key[pidx] = right->key[0];
        return;
    }
    if (left) {
        leaf_move_tail(left, leaf, 0, leaf->n);
        left->next = leaf->next;
        leaf_free(map, leaf);
        inner_remove_at(parent, pidx - 1);
    } else {
        assert(right);
        leaf_move_tail(leaf, right, 0, right->n);
        leaf->next = right->next;
        leaf_free(map, right);
        inner_remove_at(parent, pidx);
    }
    rebalance_inner(map, path, plevel);
}

bool bsst_map_remove(BsstMap *map, uint64_t gblock, uint32_t *old_bblock)
{
    BsstMapPath path[MAX_HEIGHT];
    BsstMapLeaf *leaf = descend(map, gblock, path);
    unsigned i = leaf_lower_bound(leaf, gblock);

    if (i == leaf->n || leaf->key[i] != gblock) {
        return false;
    }
    if (old_bblock) {
        *old_bblock = leaf->val[i];
    }
    /* the reverse of an insertion: 1 - neighbours, may split a run in two */
    map->runs += run_neighbours(map, leaf, i, true, gblock, leaf->val[i]);
    map->runs -= 1;
    leaf_remove_at(leaf, i);
    map->count--;
    rebalance_leaf(map, path, leaf);
    return true;
}

uint64_t bsst_map_remove_range(BsstMap *map, uint64_t start, uint64_t end,
                               BsstMapDropFunc *drop, void *opaque)
{
    uint64_t g, removed = 0;
    uint32_t b;

    while (bsst_map_find_next(map, start, end, &g, &b, NULL)) {
        bsst_map_remove(map, g, NULL);
        removed++;
        if (drop) {
            drop(opaque, g, b);
        }
        if (g == UINT64_MAX) {
            break;
        }
        start = g + 1;
    }
    return removed;
}

int bsst_map_foreach(const BsstMap *map, uint64_t start, uint64_t end,
                     BsstMapIterFunc *fn, void *opaque)
{
    const BsstMapLeaf *leaf;
    unsigned i;
    int ret;

    if (start >= end) {
        return 0;
    }
    leaf = descend(map, start, NULL);
    i = leaf_lower_bound(leaf, start);
    while (leaf) {
        for (; i < leaf->n; i++) {
            if (leaf->key[i] >= end) {
                return 0;
            }
            ret = fn(opaque, leaf->key[i], leaf->val[i]);
            if (ret) {
                return ret;
            }
        }
        leaf = leaf->next;
        i = 0;
    }
    return 0;
}

typedef struct CheckState {
    const BsstMapLeaf *prev_leaf;
    uint64_t count;
    size_t nleaves, ninner;
} CheckState;

/* Every key in @node must lie in [lo, hi); hi_open means no upper bound. */
static const char *check_node(const BsstMap *map, const void *node,
                              unsigned height, uint64_t lo, uint64_t hi,
                              bool hi_open, CheckState *st)
{
    bool is_root = node == map->root;
    unsigned i;

    if (height == 1) {
        const BsstMapLeaf *leaf = node;

        st->nleaves++;
        if (!is_root && leaf->n < LEAF_MIN) {
            return "leaf under-full";
        }
        if (leaf->n > LEAF_CAP) {
            return "leaf over-full";
        }
        for (i = 0; i < leaf->n; i++) {
            if (i > 0 && leaf->key[i] <= leaf->key[i - 1]) {
                return "leaf keys not ascending";
            }
            if (leaf->key[i] < lo || (!hi_open && leaf->key[i] >= hi)) {
                return "leaf key outside its separators";
            }
        }
        if (st->prev_leaf && st->prev_leaf->next != leaf) {
            return "leaf chain broken";
        }
        st->prev_leaf = leaf;
        st->count += leaf->n;
        return NULL;
    } else {
        const BsstMapInner *inner = node;

        st->ninner++;
        if (inner->n < (is_root ? 2 : INNER_MIN)) {
            return "interior node under-full";
        }
        if (inner->n > INNER_CAP) {
            return "interior node over-full";
        }
        for (i = 0; i < inner->n; i++) {
            uint64_t clo = i > 0 ? inner->key[i - 1] : lo;
            uint64_t chi = i + 1 < inner->n ? inner->key[i] : hi;
            bool copen = i + 1 < inner->n ? false : hi_open;
            const char *err;

            if (i + 1 < inner->n) {
                if (inner->key[i] < lo || (!hi_open && inner->key[i] >= hi)) {
                    return "separator outside parent range";
                }
                if (i > 0 && inner->key[i] <= inner->key[i - 1]) {
                    return "separators not ascending";
                }
            }
            err = check_node(map, inner->child[i], height - 1, clo, chi,
                             copen, st);
            if (err) {
                return err;
            }
        }
        return NULL;
    }
}

/* The maximal runs, counted by walking the map (bsst_map_runs() keeps it) */
static uint64_t count_runs(const BsstMap *map)
{
    uint64_t from = 0, g, run, runs = 0;
    uint32_t b;

    while (bsst_map_find_next(map, from, UINT64_MAX, &g, &b, &run)) {
        runs++;
        from = g + run;
    }
    return runs;
}

const char *bsst_map_check(const BsstMap *map)
{
    CheckState st = { 0 };
    const char *err;

    if (map->height < 1 || map->height > MAX_HEIGHT) {
        return "bad height";
    }
    err = check_node(map, map->root, map->height, 0, 0, true, &st);
    if (err) {
        return err;
    }
    if (st.prev_leaf->next) {
        return "last leaf has a successor";
    }
    if (st.count != map->count) {
        return "entry count mismatch";
    }
    if (count_runs(map) != map->runs) {
        return "run count mismatch";
    }
    if (st.nleaves != map->nleaves || st.ninner != map->ninner) {
        return "node count mismatch";
    }
    return NULL;
}

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void bsst_map_bench(uint64_t n, uint32_t seed, double *lookup_ns,
                    double *bytes_per_entry)
{
    BsstMap *map = bsst_map_new();
    /* a guest disk 16 times larger than the mapped set */
    uint64_t space = MAX(n, 1) * 16;
    uint64_t state, i, found = 0;
    int64_t t0, t1;
    uint32_t b;

    state = seed;
    for (i = 0; i < n; i++) {
        bsst_map_insert(map, splitmix64(&state) % space, (uint32_t)i, NULL);
    }
    /*
     * Look the same keys up again in the same (random) order, regenerating
     * them rather than reading them from an array, so that the time is the
     * map's own.  Duplicates make the map hold slightly fewer than @n.
     */
    state = seed;
    t0 = g_get_monotonic_time();
    for (i = 0; i < n; i++) {
        found += bsst_map_lookup(map, splitmix64(&state) % space, &b);
    }
    t1 = g_get_monotonic_time();
    assert(found == n);
    *lookup_ns = n ? (double)(t1 - t0) * 1000.0 / n : 0;
    *bytes_per_entry = bsst_map_count(map) ?
        (double)bsst_map_mem_bytes(map) / bsst_map_count(map) : 0;
    bsst_map_free(map);
}

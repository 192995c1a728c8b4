/*
 * QTest: migrating a VM whose guest RAM a tesseract-swapper manages
 *
 * Two QEMUs on this host.  The source swaps pages out (x-tesseract-swap-out)
 * and migrates to the destination; every page must arrive with its
 * contents, the swapped-out ones read from the source's BSST without
 * being faulted back in (query-tesseract: migration-pages-sent,
 * migration-faults, swap-ins), and stay swapped out on the source; with
 * shared-bsst=on both open one BSST and the pages travel as its blocks.
 * Also savevm and loadvm under a limit.
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/units.h"
#include "libqtest.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"
#include "tesseract-qtest.h"

#define MG_PAGE     4096
#define MG_NDATA    256                 /* pages holding a pattern */
#define MG_NZERO    32                  /* pages holding zeroes */
#define MG_DATA     0x1000000ULL        /* their guest addresses */
#define MG_ZERO     0x2000000ULL
#define MG_RESIDENT 0x3000000ULL        /* pattern, never swapped out */
#define MG_NRES     64

typedef struct MgVM {
    QTestState *qts;
    const char *bsst;
} MgVM;

/* A source and its destination */
typedef struct MgPair {
    MgVM src, dst;
    uint8_t *data;          /* what MG_DATA's pages hold */
    uint8_t *res;           /* and MG_RESIDENT's */
    char *uri;              /* where the destination listens */
} MgPair;

static void fill(uint8_t *buf, size_t len, unsigned seed)
{
    size_t i;

    for (i = 0; i < len; i++) {
        buf[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 12) * 13 + 1);
    }
}

/*
 * A VM with a swapper on BSST image @bsst, or on a new one of its own
 * when @bsst is NULL; "nbd:SOCKET": the image qemu-storage-daemon exports
 * on SOCKET (tq_nbd_start()), opened raw over NBD; "driver=...": those
 * -blockdev options (tq_rbd_image()); @extra: e.g. -incoming
 */
static void mg_start(MgVM *vm, const char *bsst, const char *extra)
{
    g_autofree char *node = NULL;

    vm->bsst = bsst ? bsst : tq_image("qcow2", 64);
    if (g_str_has_prefix(vm->bsst, "nbd:")) {
        node = g_strdup_printf("driver=raw,node-name=bsst0,file.driver=nbd,"
                               "file.server.type=unix,file.server.path=%s,"
                               "file.export=f0", vm->bsst + 4);
    } else if (g_str_has_prefix(vm->bsst, "driver=")) {
        node = g_strdup(vm->bsst);
    } else {
        node = g_strdup_printf("driver=qcow2,node-name=bsst0,"
                               "file.driver=file,file.filename=%s",
                               vm->bsst);
    }
    vm->qts = qtest_initf("-machine pc -m 128 -display none -blockdev %s"
                          " -object tesseract-swapper,id=swap0,bsst=bsst0,"
                          "limit=128M %s", node, extra ? extra : "");
}

/* Quit @vm's QEMU, which must exit with @status */
static void mg_quit(MgVM *vm, int status)
{
    qtest_set_expected_status(vm->qts, status);
    qtest_quit(vm->qts);
    vm->qts = NULL;
}

static void mg_swap_out(QTestState *qts, uint64_t gpa, uint64_t size)
{
    tq_swap_out(qts, gpa, size, true);
}

/* Fill the source: patterned pages and zero pages swapped out, more resident */
static void mg_fill(QTestState *qts, uint8_t *data, uint8_t *res)
{
    g_autofree uint8_t *zero = g_malloc0(MG_NZERO * MG_PAGE);

    fill(data, MG_NDATA * MG_PAGE, 3);
    fill(res, MG_NRES * MG_PAGE, 5);
    qtest_memwrite(qts, MG_DATA, data, MG_NDATA * MG_PAGE);
    qtest_memwrite(qts, MG_ZERO, zero, MG_NZERO * MG_PAGE);
    qtest_memwrite(qts, MG_RESIDENT, res, MG_NRES * MG_PAGE);
    mg_swap_out(qts, MG_DATA, MG_NDATA * MG_PAGE);
    mg_swap_out(qts, MG_ZERO, MG_NZERO * MG_PAGE);
    g_assert_cmpint(tq_swapper_stat(qts, "swapped-pages"), ==, MG_NDATA);
    g_assert_cmpint(tq_swapper_stat(qts, "zero-swapouts"), >=, MG_NZERO);
}

/* Start the source of @p on BSST @bsst (mg_start()) and fill it */
static void mg_source_on(MgPair *p, const char *bsst)
{
    memset(p, 0, sizeof(*p));
    p->data = g_malloc(MG_NDATA * MG_PAGE);
    p->res = g_malloc(MG_NRES * MG_PAGE);
    mg_start(&p->src, bsst, NULL);
    mg_fill(p->src.qts, p->data, p->res);
}

/* Start the source of @p on a BSST of its own and fill it (mg_fill()) */
static void mg_source(MgPair *p)
{
    mg_source_on(p, NULL);
}

/*
 * Start a destination for @p, listening on a new socket (@p->uri), with
 * its swapper on BSST image @bsst, or on a new one when @bsst is NULL
 */
static void mg_dest(MgPair *p, const char *bsst)
{
    char *sock = tq_tmp("tesseract-mg-sock.XXXXXX", false);
    g_autofree char *incoming = g_strdup_printf("-incoming unix:%s", sock);

    g_free(p->uri);
    p->uri = g_strdup_printf("unix:%s", sock);
    mg_start(&p->dst, bsst, incoming);
}

/*
 * mg_dest(), but a failed load does not end the destination's QEMU
 * (migrate-incoming's exit-on-error off): killed with SIGTERM, it exits
 * with 0 whether or not its load failed first
 */
static void mg_dest_stays(MgPair *p)
{
    char *sock = tq_tmp("tesseract-mg-sock.XXXXXX", false);

    g_free(p->uri);
    p->uri = g_strdup_printf("unix:%s", sock);
    mg_start(&p->dst, NULL, "-incoming defer");
    qtest_qmp_assert_success(p->dst.qts, "{'execute': 'migrate-incoming', "
                             "'arguments': {'uri': %s, "
                             "'exit-on-error': false}}", p->uri);
}

/* A filled source and a destination waiting for it */
static void mg_pair(MgPair *p)
{
    mg_source(p);
    mg_dest(p, NULL);
}

/* Quit the QEMUs of @p still running (the destination first) */
static void mg_finish(MgPair *p)
{
    if (p->dst.qts) {
        mg_quit(&p->dst, 0);
    }
    if (p->src.qts) {
        mg_quit(&p->src, 0);
    }
    g_free(p->data);
    g_free(p->res);
    g_free(p->uri);
}

static char *mg_status(QTestState *qts, char **error)
{
    QDict *resp = qtest_qmp(qts, "{'execute': 'query-migrate'}");
    QDict *ret = qdict_get_qdict(resp, "return");
    char *status = g_strdup(qdict_haskey(ret, "status") ?
                            qdict_get_str(ret, "status") : "none");

    if (error) {
        *error = qdict_haskey(ret, "error-desc") ?
                 g_strdup(qdict_get_str(ret, "error-desc")) : NULL;
    }
    qobject_unref(resp);
    return status;
}

/* query-migrate's "tesseract" member's figure @key */
static int64_t mg_info_stat(QTestState *qts, const char *key)
{
    QDict *resp = qtest_qmp(qts, "{'execute': 'query-migrate'}");
    QDict *ret = qdict_get_qdict(resp, "return");
    int64_t v;

    g_assert_true(qdict_haskey(ret, "tesseract"));
    v = qdict_get_int(qdict_get_qdict(ret, "tesseract"), key);
    qobject_unref(resp);
    return v;
}

/* Wait until @qts's migration reaches @want (or fails: returns false) */
static bool mg_wait(QTestState *qts, const char *want, char **error)
{
    int i;

    for (i = 0; i < 6000; i++) {
        g_autofree char *st = mg_status(qts, error);

        if (!strcmp(st, want)) {
            return true;
        }
        if (!strcmp(st, "failed") || !strcmp(st, "cancelled")) {
            return false;
        }
        if (error) {
            g_free(*error);
            *error = NULL;
        }
        g_usleep(10 * 1000);
    }
    g_assert_not_reached();
}

/* Migrate @p's source to @p->uri */
static void mg_migrate(MgPair *p)
{
    qtest_qmp_assert_success(p->src.qts, "{'execute': 'migrate', "
                             "'arguments': {'uri': %s}}", p->uri);
}

/* Both sides of @p's migration complete */
static void mg_complete(MgPair *p)
{
    g_assert_true(mg_wait(p->src.qts, "completed", NULL));
    g_assert_true(mg_wait(p->dst.qts, "completed", NULL));
}

/* Migration capability @cap on */
static void mg_capability(QTestState *qts, const char *cap)
{
    qtest_qmp_assert_success(qts,
        "{'execute': 'migrate-set-capabilities', 'arguments': "
        "{'capabilities': [{'capability': %s, 'state': true}]}}", cap);
}

/* Go on from pause-before-switchover */
static void mg_continue(QTestState *qts)
{
    qtest_qmp_assert_success(qts,
        "{'execute': 'migrate-continue', 'arguments': "
        "{'state': 'pre-switchover'}}");
}

static void mg_check(QTestState *qts, uint64_t gpa, const uint8_t *expect,
                     size_t len)
{
    g_autofree uint8_t *back = g_malloc(len);

    qtest_memread(qts, gpa, back, len);
    g_assert_cmpmem(back, len, expect, len);
}

/* @qts's guest RAM holds @p's patterned and resident pages */
static void mg_check_pages(QTestState *qts, MgPair *p)
{
    mg_check(qts, MG_DATA, p->data, MG_NDATA * MG_PAGE);
    mg_check(qts, MG_RESIDENT, p->res, MG_NRES * MG_PAGE);
}

/* shared-bsst=on: migrations send the blocks of swapped-out pages */
static void mg_set_shared(QTestState *qts)
{
    qtest_qmp_assert_success(qts, "{'execute': 'qom-set', 'arguments': "
                             "{'path': '/objects/swap0', "
                             "'property': 'shared-bsst', 'value': true}}");
}

static void mg_hang(int sig)
{
    g_error("x-tesseract-swap-out on a migrated source did not return");
}

/*
 * A source that migrated (stopped, its BSST inactive) refuses a swap-out
 * at once: it cannot do it, and would otherwise hold the QMP monitor
 * until the VM ran here again (SIGALRM fails the test if it does)
 */
static void mg_migrated_refuses(QTestState *src)
{
    struct sigaction sa = { .sa_handler = mg_hang };
    QDict *resp;
    const char *desc;

    sigaction(SIGALRM, &sa, NULL);
    alarm(60);
    resp = qtest_qmp(src, "{'execute': 'x-tesseract-swap-out', 'arguments': "
                     "{'id': 'swap0', 'addr': %" PRIu64 ", 'size': %d}}",
                     (uint64_t)MG_RESIDENT, MG_PAGE);
    alarm(0);
    g_assert_true(qdict_haskey(resp, "error"));
    desc = qdict_get_str(qdict_get_qdict(resp, "error"), "desc");
    g_assert_nonnull(strstr(desc, "switchover"));
    qobject_unref(resp);
}

/*
 * Swapped-out pages travel from the BSST: none is faulted in, they stay
 * swapped out on the source, and all arrive.
 */
static void test_private_bsst(void)
{
    g_autofree uint8_t *zero = g_malloc0(MG_NZERO * MG_PAGE);
    MgPair p;
    QTestState *src, *dst;
    int64_t fills;

    mg_source(&p);
    fills = tq_swapper_stat(p.src.qts, "zero-fills");
    mg_dest(&p, NULL);
    src = p.src.qts;
    dst = p.dst.qts;
    mg_migrate(&p);
    mg_complete(&p);

    g_assert_cmpint(tq_swapper_stat(src, "migration-pages-sent"), ==,
                    MG_NDATA);
    /* pages never touched were not faulted in to be read either */
    g_assert_cmpint(tq_swapper_stat(src, "zero-fills") - fills, <, 64);
    g_assert_cmpint(tq_swapper_stat(src, "migration-zero-pages-sent"), >,
                    tq_swapper_stat(src, "ram-pages") / 2);
    g_assert_cmpint(tq_swapper_stat(src, "migration-zero-pages-sent"), >=,
                    MG_NZERO);
    g_assert_cmpint(tq_swapper_stat(src, "migration-faults"), ==, 0);
    g_assert_cmpint(tq_swapper_stat(src, "swap-ins"), ==, 0);
    g_assert_cmpint(tq_swapper_stat(src, "swapped-pages"), ==, MG_NDATA);
    g_assert_cmpint(tq_swapper_stat(dst, "migration-pages-received"), >=,
                    MG_NDATA + MG_NZERO);
    /* and query-migrate says so */
    g_assert_cmpint(mg_info_stat(src, "pages-sent"), ==, MG_NDATA);
    g_assert_cmpint(mg_info_stat(src, "blocks-sent"), ==, 0);
    g_assert_cmpint(mg_info_stat(src, "bytes-saved"), ==, 0);
    g_assert_cmpint(mg_info_stat(src, "faults"), ==, 0);
    g_assert_cmpint(mg_info_stat(src, "zero-pages-sent"), ==,
                    tq_swapper_stat(src, "migration-zero-pages-sent"));
    g_assert_cmpint(mg_info_stat(dst, "pages-received"), ==,
                    tq_swapper_stat(dst, "migration-pages-received"));
    mg_migrated_refuses(src);

    mg_check_pages(dst, &p);
    mg_check(dst, MG_ZERO, zero, MG_NZERO * MG_PAGE);
    /* the destination's swapper works on what arrived */
    mg_swap_out(dst, MG_DATA, MG_NDATA * MG_PAGE);
    mg_check(dst, MG_DATA, p.data, MG_NDATA * MG_PAGE);
    mg_finish(&p);
}

/*
 * Pages written after the swapper took them over (the VM stopped for the
 * switchover: pause-before-switchover) arrive with their new contents:
 * the write faults the page in and dirties it, and it is sent again.
 */
static void test_written_during(void)
{
    g_autofree uint8_t *upd = g_malloc(64 * MG_PAGE);
    MgPair p;

    mg_pair(&p);
    mg_capability(p.src.qts, "pause-before-switchover");
    mg_migrate(&p);
    g_assert_true(mg_wait(p.src.qts, "pre-switchover", NULL));

    /* half swapped-out pages, half resident ones */
    fill(upd, 64 * MG_PAGE, 11);
    qtest_memwrite(p.src.qts, MG_DATA + 32 * MG_PAGE, upd, 32 * MG_PAGE);
    qtest_memwrite(p.src.qts, MG_RESIDENT, upd + 32 * MG_PAGE, 32 * MG_PAGE);
    memcpy(p.data + 32 * MG_PAGE, upd, 32 * MG_PAGE);
    memcpy(p.res, upd + 32 * MG_PAGE, 32 * MG_PAGE);
    /* faulted in by the writer, not by the migration */
    g_assert_cmpint(tq_swapper_stat(p.src.qts, "swap-ins"), ==, 32);
    g_assert_cmpint(tq_swapper_stat(p.src.qts, "migration-faults"), ==, 0);

    mg_continue(p.src.qts);
    mg_complete(&p);
    mg_check_pages(p.dst.qts, &p);
    mg_finish(&p);
}

/*
 * A migration cancelled at the switchover (the VM stopped, the swapper's
 * BSST I/O held), and one whose destination dies: the source runs on,
 * swaps out again, keeps every page, and a later migration succeeds.
 */
static void test_cancel(void)
{
    MgPair p;
    QDict *resp;

    mg_source(&p);
    mg_capability(p.src.qts, "pause-before-switchover");

    /* cancelled with the VM stopped for the switchover */
    mg_dest(&p, NULL);
    mg_migrate(&p);
    g_assert_true(mg_wait(p.src.qts, "pre-switchover", NULL));
    qtest_qmp_assert_success(p.src.qts, "{'execute': 'migrate_cancel'}");
    g_assert_false(mg_wait(p.src.qts, "completed", NULL));
    mg_quit(&p.dst, 1);
    resp = qtest_qmp(p.src.qts, "{'execute': 'query-status'}");
    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(resp, "return"), "status"),
                    ==, "running");
    qobject_unref(resp);
    /* its BSST I/O runs again: this swap-out waits for it */
    mg_swap_out(p.src.qts, MG_RESIDENT, MG_NRES * MG_PAGE);
    g_assert_cmpint(tq_swapper_stat(p.src.qts, "swapped-pages"), ==,
                    MG_NDATA + MG_NRES);

    /* the destination dies in the middle */
    mg_dest_stays(&p);
    mg_migrate(&p);
    g_assert_true(mg_wait(p.src.qts, "pre-switchover", NULL));
    qtest_kill_qemu(p.dst.qts);
    mg_quit(&p.dst, 0);
    mg_continue(p.src.qts);
    g_assert_false(mg_wait(p.src.qts, "completed", NULL));
    mg_check_pages(p.src.qts, &p);
    g_assert_cmpint(tq_swapper_stat(p.src.qts, "swap-ins"), ==,
                    MG_NDATA + MG_NRES);

    /* and then it migrates */
    qtest_qmp_assert_success(p.src.qts, "{'execute': 'cont'}");
    mg_swap_out(p.src.qts, MG_DATA, MG_NDATA * MG_PAGE);
    mg_dest(&p, NULL);
    mg_migrate(&p);
    g_assert_true(mg_wait(p.src.qts, "pre-switchover", NULL));
    mg_continue(p.src.qts);
    mg_complete(&p);
    mg_check_pages(p.dst.qts, &p);
    mg_finish(&p);
}

/*
 * Migrate @p from a source on BSST @src_bsst to a destination on
 * @dst_bsst (mg_start()), each its own: every swapped page read from the
 * source's BSST, none faulted in; the source quits, the destination holds
 * the pages
 */
static void mg_private_migrate(MgPair *p, const char *src_bsst,
                               const char *dst_bsst)
{
    mg_source_on(p, src_bsst);
    mg_dest(p, dst_bsst);
    mg_migrate(p);
    mg_complete(p);
    g_assert_cmpint(mg_info_stat(p->src.qts, "pages-sent"), ==, MG_NDATA);
    g_assert_cmpint(tq_swapper_stat(p->src.qts, "migration-faults"), ==, 0);
    g_assert_cmpint(tq_swapper_stat(p->src.qts, "swap-ins"), ==, 0);
    mg_quit(&p->src, 0);
    mg_check_pages(p->dst.qts, p);
}

/*
 * The source's BSST on qemu-storage-daemon's NBD export, the
 * destination's its own file: the swapped-out pages are read over the
 * swapper's second connection, the last of them after the switchover
 * inactivated every node
 */
static void test_private_nbd(void)
{
    g_autofree char *nbd_bsst = NULL;
    TqNbd server;
    const char *sock = tq_nbd_start(&server, tq_image("qcow2", 64), "qcow2");
    MgPair p;

    if (!sock) {
        return;
    }
    nbd_bsst = g_strdup_printf("nbd:%s", sock);
    mg_private_migrate(&p, nbd_bsst, NULL);
    mg_finish(&p);
    tq_nbd_stop(&server);
}

/*
 * A destination whose swapper opened the source's own BSST image without
 * shared-bsst (a restore from a file finds the image its source left;
 * here both on one host): the pages arrive whole, the destination leaves
 * the image alone until the switchover (the source swaps on into it
 * meanwhile), and then swaps out into it itself.
 */
static void test_same_bsst(void)
{
    MgPair p;

    mg_source(&p);
    mg_dest(&p, p.src.bsst);
    /* the source still owns the image: it swaps in and out */
    mg_swap_out(p.src.qts, MG_RESIDENT, MG_NRES * MG_PAGE);
    mg_check(p.src.qts, MG_DATA, p.data, MG_NDATA * MG_PAGE);
    mg_swap_out(p.src.qts, MG_DATA, MG_NDATA / 2 * MG_PAGE);
    mg_migrate(&p);
    mg_complete(&p);
    g_assert_cmpint(tq_swapper_stat(p.src.qts, "migration-blocks-sent"), ==,
                    0);
    g_assert_cmpint(tq_swapper_stat(p.dst.qts, "migration-pages-adopted"),
                    ==, 0);
    mg_quit(&p.src, 0);

    mg_check_pages(p.dst.qts, &p);
    mg_swap_out(p.dst.qts, MG_DATA, MG_NDATA * MG_PAGE);
    mg_swap_out(p.dst.qts, MG_RESIDENT, MG_NRES * MG_PAGE);
    mg_check_pages(p.dst.qts, &p);
    mg_finish(&p);
}

/*
 * Pages sent from the BSST early in a migration, then swapped in,
 * written and swapped out again before it ends: RAM's section hands them
 * over again and they arrive with their new contents, not the copy sent
 * first.
 */
static void rewritten_and_swapped(bool shared)
{
    g_autofree uint8_t *upd = g_malloc(32 * MG_PAGE);
    g_autofree char *st = NULL;
    /* with a shared BSST, pages travel as blocks */
    const char *sent = shared ? "migration-blocks-sent" :
                                "migration-pages-sent";
    MgPair p;
    int64_t again, now = 0;
    bool partial = false;
    int i;

    mg_source(&p);
    if (shared) {
        mg_set_shared(p.src.qts);
    }
    mg_dest(&p, shared ? p.src.bsst : NULL);
    /*
     * x-hold-migration: no switchover until the pages are rewritten (it
     * would stop the VM for good, and the swap-out below would be
     * refused).  Slow: max-bandwidth paces this section too, a few pages
     * at a time, not all at once (blocks are too small to tell).
     */
    qtest_qmp_assert_success(p.src.qts, "{'execute': 'qom-set', "
                             "'arguments': {'path': '/objects/swap0', "
                             "'property': 'x-hold-migration', "
                             "'value': true}}");
    qtest_qmp_assert_success(p.src.qts,
        "{'execute': 'migrate-set-parameters', 'arguments': "
        "{'max-bandwidth': 262144}}");
    mg_migrate(&p);
    for (i = 0; i < 3000 && (now = tq_swapper_stat(p.src.qts, sent)) <
         MG_NDATA; i++) {
        partial |= now > 0;
        g_usleep(10 * 1000);
    }
    g_assert_cmpint(now, ==, MG_NDATA);
    if (!shared) {
        g_assert_true(partial);
    }
    st = mg_status(p.src.qts, NULL);
    g_assert_cmpstr(st, ==, "active");
    fill(upd, 32 * MG_PAGE, 13);
    qtest_memwrite(p.src.qts, MG_DATA + 64 * MG_PAGE, upd, 32 * MG_PAGE);
    memcpy(p.data + 64 * MG_PAGE, upd, 32 * MG_PAGE);
    mg_swap_out(p.src.qts, MG_DATA + 64 * MG_PAGE, 32 * MG_PAGE);
    qtest_qmp_assert_success(p.src.qts,
        "{'execute': 'migrate-set-parameters', 'arguments': "
        "{'max-bandwidth': 1073741824}}");
    qtest_qmp_assert_success(p.src.qts, "{'execute': 'qom-set', "
                             "'arguments': {'path': '/objects/swap0', "
                             "'property': 'x-hold-migration', "
                             "'value': false}}");
    mg_complete(&p);
    /*
     * the 32 again, and nothing else twice: each by this section, unless
     * RAM's sent its new contents before the swap-out (a slow host)
     */
    again = tq_swapper_stat(p.src.qts, sent) - MG_NDATA;
    g_assert_cmpint(again, >=, 0);
    g_assert_cmpint(again, <=, 32);
    if (again < 32) {
        g_test_message("%" PRId64 " of the 32 sent by RAM's section",
                       32 - again);
    }
    if (shared) {
        /* each new copy replaced the older one's block */
        g_assert_cmpint(tq_swapper_stat(p.dst.qts, "migration-pages-adopted"),
                        ==, MG_NDATA + again);
        g_assert_cmpint(tq_swapper_stat(p.dst.qts, "swapped-pages"), ==,
                        MG_NDATA - (32 - again));
        g_assert_cmpint(tq_swapper_stat(p.src.qts, "migration-pages-sent"),
                        ==, 0);
    }
    /* the destination on its own */
    mg_quit(&p.src, 0);
    mg_check_pages(p.dst.qts, &p);
    mg_finish(&p);
}

static void test_rewritten_and_swapped(void)
{
    rewritten_and_swapped(false);
}

static void test_shared_rewritten(void)
{
    rewritten_and_swapped(true);
}

/*
 * shared-bsst=on: both QEMUs open one BSST image (a file, or an NBD
 * export of qemu-storage-daemon).  Swapped-out pages travel as their
 * blocks: nothing is read on the source, the destination adopts the
 * blocks, and once the source is gone it reads them, and swaps more
 * pages out into blocks of its own without touching them.
 */
static void shared_bsst(const char *bsst)
{
    g_autofree uint8_t *zero = g_malloc0(MG_NZERO * MG_PAGE);
    MgPair p;
    QTestState *src, *dst;

    mg_source_on(&p, bsst);
    mg_set_shared(p.src.qts);
    /* the same image: -incoming opens it inactive, without its lock */
    mg_dest(&p, p.src.bsst);
    src = p.src.qts;
    dst = p.dst.qts;
    mg_migrate(&p);
    mg_complete(&p);

    g_assert_cmpint(tq_swapper_stat(src, "migration-blocks-sent"), ==,
                    MG_NDATA);
    g_assert_cmpint(tq_swapper_stat(src, "migration-pages-sent"), ==, 0);
    g_assert_cmpint(tq_swapper_stat(src, "migration-bsst-reads"), ==, 0);
    g_assert_cmpint(tq_swapper_stat(src, "migration-faults"), ==, 0);
    g_assert_cmpint(tq_swapper_stat(src, "swap-ins"), ==, 0);
    g_assert_cmpint(tq_swapper_stat(dst, "migration-pages-adopted"), ==,
                    MG_NDATA);
    g_assert_cmpint(tq_swapper_stat(dst, "swapped-pages"), ==, MG_NDATA);
    g_assert_cmpint(mg_info_stat(src, "blocks-sent"), ==, MG_NDATA);
    g_assert_cmpint(mg_info_stat(src, "pages-sent"), ==, 0);
    g_assert_cmpint(mg_info_stat(src, "bytes-saved"), ==, MG_NDATA * 4088);
    g_assert_cmpint(mg_info_stat(dst, "pages-adopted"), ==, MG_NDATA);
    mg_quit(&p.src, 0);

    /* new blocks for the destination's own swap-outs: none adopted */
    mg_swap_out(dst, MG_RESIDENT, MG_NRES * MG_PAGE);
    mg_check_pages(dst, &p);
    mg_check(dst, MG_ZERO, zero, MG_NZERO * MG_PAGE);
    g_assert_cmpint(tq_swapper_stat(dst, "swap-ins"), >=, MG_NDATA + MG_NRES);
    mg_swap_out(dst, MG_DATA, MG_NDATA * MG_PAGE);
    mg_check_pages(dst, &p);
    mg_finish(&p);
}

static void test_shared_bsst(void)
{
    shared_bsst(NULL);
}

static void test_shared_nbd(void)
{
    g_autofree char *bsst = NULL;
    TqNbd server;
    const char *sock = tq_nbd_start(&server, tq_image("qcow2", 64), "qcow2");

    if (sock) {
        bsst = g_strdup_printf("nbd:%s", sock);
        shared_bsst(bsst);
        tq_nbd_stop(&server);
    }
}

/* One RBD image of a Ceph cluster (make check-long; skipped without one) */
static void test_shared_rbd(void)
{
    g_autofree char *bsst = tq_rbd_image(64);

    if (bsst) {
        shared_bsst(bsst);
    }
}

/* A BSST of its own on each side, both in RBD images */
static void test_private_rbd(void)
{
    g_autofree char *src_bsst = tq_rbd_image(64);
    g_autofree char *dst_bsst = NULL;
    MgPair p;

    if (!src_bsst) {
        return;
    }
    dst_bsst = tq_rbd_image(64);
    mg_private_migrate(&p, src_bsst, dst_bsst);
    mg_swap_out(p.dst.qts, MG_DATA, MG_NDATA * MG_PAGE);
    mg_check_pages(p.dst.qts, &p);
    mg_finish(&p);
}

/*
 * The destination keeps its limit while the pages arrive: its own BSST
 * (not the source's) is activated at once, and its swapper swaps out
 * before the VM runs there, instead of holding every page the stream
 * brings until then.
 */
static void test_dest_limit(void)
{
    const uint64_t addr = 0x4000000, size = 48 * MiB;
    const int64_t limit_pages = 16 * MiB / MG_PAGE;
    g_autofree uint8_t *big = g_malloc(size);
    int64_t resident, most = 0, swapped_early = 0;
    MgPair p;
    int i;

    mg_pair(&p);
    fill(big, size, 17);
    qtest_bufwrite(p.src.qts, addr, big, size);
    qtest_qmp_assert_success(p.dst.qts, "{'execute': 'qom-set', "
                             "'arguments': {'path': '/objects/swap0', "
                             "'property': 'limit', 'value': %" PRId64 "}}",
                             limit_pages * MG_PAGE);
    qtest_qmp_assert_success(p.src.qts,
        "{'execute': 'migrate-set-parameters', 'arguments': "
        "{'max-bandwidth': 33554432}}");
    mg_migrate(&p);
    for (i = 0; i < 6000; i++) {
        g_autofree char *st = mg_status(p.dst.qts, NULL);

        if (strcmp(st, "active") && strcmp(st, "setup") &&
            strcmp(st, "none")) {
            break;
        }
        resident = tq_swapper_stat(p.dst.qts, "resident-pages");
        most = MAX(most, resident);
        swapped_early = tq_swapper_stat(p.dst.qts, "swap-outs");
        g_usleep(20 * 1000);
    }
    mg_complete(&p);
    g_test_message("destination while pages arrived: at most %" PRId64
                   " pages resident (limit %" PRId64 "), %" PRId64
                   " swap-outs", most, limit_pages, swapped_early);
    /* without: the whole 48 MiB (12288 pages) and more */
    g_assert_cmpint(swapped_early, >, 0);
    g_assert_cmpint(most, <=, limit_pages + 2048);
    mg_quit(&p.src, 0);
    mg_check_pages(p.dst.qts, &p);
    {
        g_autofree uint8_t *back = g_malloc(size);

        qtest_bufread(p.dst.qts, addr, back, size);
        g_assert_cmpmem(back, size, big, size);
    }
    mg_finish(&p);
}

/*
 * The source's worker still swapping out toward a lowered limit when the
 * VM stops for the switchover (slow BSST writes): the pages it swapped
 * out meanwhile arrive intact, and once migrated the source refuses a
 * swap-out at once (its worker must not sit waiting for the VM to run
 * again, with requests queued behind it)
 */
static void test_worker_at_switchover(void)
{
    const uint64_t addr = 0x4000000, chunks = 32;
    uint64_t c, off;
    MgPair p;

    mg_pair(&p);
    /* 32 MiB, each MiB its own byte (memset: fast; bufwrite is not) */
    for (c = 0; c < chunks; c++) {
        qtest_memset(p.src.qts, addr + c * MiB, c + 1, MiB);
    }
    qtest_qmp_assert_success(p.src.qts, "{'execute': 'qom-set', "
                             "'arguments': {'path': '/objects/swap0', "
                             "'property': 'x-io-delay', 'value': 20000}}");
    qtest_qmp_assert_success(p.src.qts, "{'execute': 'qom-set', "
                             "'arguments': {'path': '/objects/swap0', "
                             "'property': 'limit', 'value': %" PRIu64 "}}",
                             (uint64_t)4 * MiB);
    /* swapping out 32 pages every 20 ms: some 4 s of work */
    while (tq_swapper_stat(p.src.qts, "swap-outs") < 64) {
        g_usleep(10 * 1000);
    }
    /* a downtime that always fits: the switchover comes at once */
    qtest_qmp_assert_success(p.src.qts,
        "{'execute': 'migrate-set-parameters', 'arguments': "
        "{'downtime-limit': 60000}}");
    mg_migrate(&p);
    mg_complete(&p);
    g_test_message("%" PRId64 " pages swapped out on the source when it "
                   "stopped, %" PRId64 " resident",
                   tq_swapper_stat(p.src.qts, "swap-outs"),
                   tq_swapper_stat(p.src.qts, "resident-pages"));
    mg_migrated_refuses(p.src.qts);
    mg_quit(&p.src, 0);
    mg_check_pages(p.dst.qts, &p);
    for (c = 0; c < chunks; c++) {
        for (off = 0; off < MiB; off += MG_PAGE) {
            g_assert_cmphex(qtest_readq(p.dst.qts, addr + c * MiB + off), ==,
                            0x0101010101010101ULL * (c + 1));
        }
    }
    mg_finish(&p);
}

/*
 * shared-bsst=on, cancelled at the switchover after every block went:
 * the source runs on with its pages, and gives back the references it
 * held on the blocks it sent (once its pages are swapped in, no block is
 * in use)
 */
static void test_shared_cancel(void)
{
    MgPair p;

    mg_source(&p);
    mg_set_shared(p.src.qts);
    mg_capability(p.src.qts, "pause-before-switchover");
    mg_dest(&p, p.src.bsst);
    mg_migrate(&p);
    g_assert_true(mg_wait(p.src.qts, "pre-switchover", NULL));
    g_assert_cmpint(tq_swapper_stat(p.src.qts, "migration-blocks-sent"), ==,
                    MG_NDATA);
    qtest_qmp_assert_success(p.src.qts, "{'execute': 'migrate_cancel'}");
    g_assert_false(mg_wait(p.src.qts, "completed", NULL));
    mg_quit(&p.dst, 1);

    mg_check_pages(p.src.qts, &p);
    g_assert_cmpint(tq_swapper_stat(p.src.qts, "swapped-pages"), ==, 0);
    g_assert_cmpint(tq_store_stat(p.src.qts, NULL, "blocks-used"), ==, 0);
    mg_swap_out(p.src.qts, MG_DATA, MG_NDATA * MG_PAGE);
    mg_check_pages(p.src.qts, &p);
    mg_finish(&p);
}

/*
 * shared-bsst=on, but the destination opened another image: it refuses
 * (its UUID is not the source's), and the source keeps its pages.
 */
static void test_shared_other_image(void)
{
    MgPair p;

    mg_pair(&p);
    mg_set_shared(p.src.qts);
    /* a fresh BSST has its UUID only once written */
    mg_swap_out(p.dst.qts, MG_RESIDENT, MG_PAGE);
    mg_migrate(&p);
    g_assert_false(mg_wait(p.src.qts, "completed", NULL));
    mg_quit(&p.dst, 1);
    mg_check_pages(p.src.qts, &p);
    mg_finish(&p);
}

/*
 * migrate to a file, and a new QEMU started from it; shared-bsst=on
 * does not apply to a file (loaded later, when the blocks may be reused)
 */
static void test_file(void)
{
    char *file = tq_tmp("tesseract-mg-file.XXXXXX", false);
    g_autofree char *incoming = g_strdup_printf("-incoming file:%s", file);
    MgPair p;

    mg_source(&p);
    mg_set_shared(p.src.qts);
    p.uri = g_strdup_printf("file:%s", file);
    mg_migrate(&p);
    g_assert_true(mg_wait(p.src.qts, "completed", NULL));
    g_assert_cmpint(tq_swapper_stat(p.src.qts, "migration-pages-sent"), ==,
                    MG_NDATA);
    g_assert_cmpint(tq_swapper_stat(p.src.qts, "migration-blocks-sent"), ==,
                    0);
    g_assert_cmpint(tq_swapper_stat(p.src.qts, "swap-ins"), ==, 0);
    mg_quit(&p.src, 0);

    mg_start(&p.dst, NULL, incoming);
    g_assert_true(mg_wait(p.dst.qts, "completed", NULL));
    mg_check_pages(p.dst.qts, &p);
    mg_finish(&p);
}

/*
 * What the swapper cannot be part of is refused up front, naming the
 * conflict, and the source carries on with its pages intact.
 */
static void test_refused(void)
{
    g_autofree char *err = NULL;
    MgPair p;

    mg_pair(&p);
    /* on both sides, so that only the swapper refuses */
    mg_capability(p.src.qts, "postcopy-ram");
    mg_capability(p.dst.qts, "postcopy-ram");
    mg_migrate(&p);
    g_assert_false(mg_wait(p.src.qts, "completed", &err));
    g_assert_nonnull(err);
    g_test_message("refused: %s", err);
    g_assert_nonnull(strstr(err, "postcopy-ram"));
    g_assert_nonnull(strstr(err, "tesseract-swapper"));
    /* the destination found the section start and exits */
    mg_quit(&p.dst, 1);

    mg_check_pages(p.src.qts, &p);
    mg_finish(&p);
}

/* An HMP command's output ("" when it succeeded quietly) */
static char *mg_hmp(QTestState *qts, const char *cmd)
{
    QDict *resp = qtest_qmp(qts, "{'execute': 'human-monitor-command', "
                            "'arguments': {'command-line': %s}}", cmd);
    char *out = g_strdup(qdict_get_str(resp, "return"));

    qobject_unref(resp);
    return out;
}

/* The names of node @node's internal snapshots, comma-separated */
static char *mg_node_snapshots(QTestState *qts, const char *node)
{
    QDict *resp = qtest_qmp(qts, "{'execute': 'query-named-block-nodes', "
                            "'arguments': {'flat': true}}");
    QListEntry *e;
    GString *names = g_string_new("");

    QLIST_FOREACH_ENTRY(qdict_get_qlist(resp, "return"), e) {
        QDict *n = qobject_to(QDict, qlist_entry_obj(e));
        QDict *image = qdict_get_qdict(n, "image");
        QListEntry *sn;

        if (strcmp(qdict_get_str(n, "node-name"), node) ||
            !qdict_haskey(image, "snapshots")) {
            continue;
        }
        QLIST_FOREACH_ENTRY(qdict_get_qlist(image, "snapshots"), sn) {
            g_string_append_printf(names, "%s%s", names->len ? "," : "",
                qdict_get_str(qobject_to(QDict, qlist_entry_obj(sn)),
                              "name"));
        }
    }
    qobject_unref(resp);
    return g_string_free(names, false);
}

/* Wait for job @id to conclude; its error ("" if none), dismissed */
static char *mg_job_error(QTestState *qts, const char *id)
{
    int i;

    for (i = 0; i < 6000; i++) {
        QDict *resp = qtest_qmp(qts, "{'execute': 'query-jobs'}");
        QListEntry *e;
        char *err = NULL;

        QLIST_FOREACH_ENTRY(qdict_get_qlist(resp, "return"), e) {
            QDict *j = qobject_to(QDict, qlist_entry_obj(e));

            if (!strcmp(qdict_get_str(j, "id"), id) &&
                !strcmp(qdict_get_str(j, "status"), "concluded")) {
                err = g_strdup(qdict_haskey(j, "error") ?
                               qdict_get_str(j, "error") : "");
            }
        }
        qobject_unref(resp);
        if (err) {
            qtest_qmp_assert_success(qts, "{'execute': 'job-dismiss', "
                                     "'arguments': {'id': %s}}", id);
            return err;
        }
        g_usleep(10 * 1000);
    }
    g_assert_not_reached();
}

/*
 * savevm under a limit saves swapped-out pages from the BSST (none is
 * faulted in) and leaves the BSST out of the snapshot; loadvm, after the
 * guest rewrote everything and the swapper swapped the new contents out,
 * brings back every page: those swapped out here are rewritten, a zero
 * page swapped out with data here is cleared.
 */
static void test_savevm(void)
{
    g_autofree uint8_t *data = g_malloc(MG_NDATA * MG_PAGE);
    g_autofree uint8_t *res = g_malloc(MG_NRES * MG_PAGE);
    g_autofree uint8_t *zero = g_malloc0(MG_NZERO * MG_PAGE);
    g_autofree uint8_t *other = g_malloc(MG_NDATA * MG_PAGE);
    const char *disk = tq_image("qcow2", 16);
    g_autofree char *drive = NULL;
    g_autofree char *out = NULL;
    g_autofree char *sn_disk = NULL;
    g_autofree char *sn_bsst = NULL;
    int64_t swap_ins;
    MgVM vm;

    /* the VM state goes to the guest disk, a qcow2 image */
    drive = g_strdup_printf("-blockdev driver=qcow2,node-name=disk0,"
                            "file.driver=file,file.filename=%s"
                            " -device virtio-blk-pci,drive=disk0", disk);
    mg_start(&vm, NULL, drive);
    mg_fill(vm.qts, data, res);

    out = mg_hmp(vm.qts, "savevm s1");
    g_assert_cmpstr(out, ==, "");
    g_assert_cmpint(tq_swapper_stat(vm.qts, "migration-pages-sent"), ==, MG_NDATA);
    g_assert_cmpint(tq_swapper_stat(vm.qts, "migration-faults"), ==, 0);
    g_assert_cmpint(tq_swapper_stat(vm.qts, "swap-ins"), ==, 0);
    g_assert_cmpint(tq_swapper_stat(vm.qts, "swapped-pages"), ==, MG_NDATA);
    sn_disk = mg_node_snapshots(vm.qts, "disk0");
    sn_bsst = mg_node_snapshots(vm.qts, "bsst0");
    g_assert_cmpstr(sn_disk, ==, "s1");
    g_assert_cmpstr(sn_bsst, ==, "");

    /* naming the BSST in a snapshot's devices is refused, naming it */
    qtest_qmp_assert_success(vm.qts, "{'execute': 'snapshot-save', "
        "'arguments': {'job-id': 'j1', 'tag': 's2', 'vmstate': 'disk0', "
        "'devices': ['disk0', 'bsst0']}}");
    g_free(out);
    out = mg_job_error(vm.qts, "j1");
    g_assert_nonnull(strstr(out, "'bsst0' cannot be in a VM snapshot"));

    /* everything changes, and the new contents are swapped out */
    fill(other, MG_NDATA * MG_PAGE, 9);
    qtest_memwrite(vm.qts, MG_DATA, other, MG_NDATA * MG_PAGE);
    qtest_memwrite(vm.qts, MG_ZERO, other, MG_NZERO * MG_PAGE);
    qtest_memwrite(vm.qts, MG_RESIDENT, other, MG_NRES * MG_PAGE);
    mg_swap_out(vm.qts, MG_DATA, MG_NDATA * MG_PAGE);
    mg_swap_out(vm.qts, MG_ZERO, MG_NZERO * MG_PAGE);
    mg_swap_out(vm.qts, MG_RESIDENT, MG_NRES * MG_PAGE);
    g_assert_cmpint(tq_swapper_stat(vm.qts, "swapped-pages"), ==,
                    MG_NDATA + MG_NZERO + MG_NRES);

    g_free(out);
    swap_ins = tq_swapper_stat(vm.qts, "swap-ins");
    out = mg_hmp(vm.qts, "loadvm s1");
    g_assert_cmpstr(out, ==, "");
    /*
     * The swapper's section's pages replace the swapped-out copies
     * without reading them; RAM's section writes MG_RESIDENT's through
     * faults, which swap them in first
     */
    g_assert_cmpint(tq_swapper_stat(vm.qts, "swap-ins") - swap_ins, <=,
                    MG_NRES);
    mg_check(vm.qts, MG_DATA, data, MG_NDATA * MG_PAGE);
    mg_check(vm.qts, MG_ZERO, zero, MG_NZERO * MG_PAGE);
    mg_check(vm.qts, MG_RESIDENT, res, MG_NRES * MG_PAGE);
    /* and the swapper goes on with what loadvm brought back */
    mg_swap_out(vm.qts, MG_DATA, MG_NDATA * MG_PAGE);
    mg_check(vm.qts, MG_DATA, data, MG_NDATA * MG_PAGE);
    mg_quit(&vm, 0);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    if (!getenv("QTEST_QEMU_IMG") || access("/dev/userfaultfd", R_OK | W_OK)) {
        g_test_skip("QTEST_QEMU_IMG is not set, or no /dev/userfaultfd");
        return g_test_run();
    }
    qtest_add_func("/tesseract-migrate/private-bsst", test_private_bsst);
    qtest_add_func("/tesseract-migrate/written-during-switchover",
                   test_written_during);
    qtest_add_func("/tesseract-migrate/rewritten-and-swapped",
                   test_rewritten_and_swapped);
    qtest_add_func("/tesseract-migrate/cancel", test_cancel);
    qtest_add_func("/tesseract-migrate/same-bsst", test_same_bsst);
    qtest_add_func("/tesseract-migrate/private-nbd", test_private_nbd);
    qtest_add_func("/tesseract-migrate/file", test_file);
    qtest_add_func("/tesseract-migrate/refused", test_refused);
    qtest_add_func("/tesseract-migrate/savevm", test_savevm);
    qtest_add_func("/tesseract-migrate/shared-bsst", test_shared_bsst);
    qtest_add_func("/tesseract-migrate/shared-nbd", test_shared_nbd);
    qtest_add_func("/tesseract-migrate/shared-rbd", test_shared_rbd);
    qtest_add_func("/tesseract-migrate/private-rbd", test_private_rbd);
    qtest_add_func("/tesseract-migrate/shared-rewritten",
                   test_shared_rewritten);
    qtest_add_func("/tesseract-migrate/shared-other-image",
                   test_shared_other_image);
    qtest_add_func("/tesseract-migrate/shared-cancel", test_shared_cancel);
    qtest_add_func("/tesseract-migrate/destination-limit", test_dest_limit);
    qtest_add_func("/tesseract-migrate/worker-at-switchover",
                   test_worker_at_switchover);
    return g_test_run();
}

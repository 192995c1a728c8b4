/*
 * QTest: migrating a VM whose guest RAM a tesseract-swapper manages
 *
 * Two QEMUs on this host.  The source swaps pages out (x-tesseract-swap-out)
 * and migrates to the destination; every page must arrive with its
 * contents, the swapped-out ones read from the source's BSST without
 * being faulted back in (query-tesseract: migration-pages-sent,
 * migration-faults, swap-ins), and stay swapped out on the source.
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "libqtest.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"

#define MG_PAGE     4096
#define MG_NDATA    256                 /* pages holding a pattern */
#define MG_NZERO    32                  /* pages holding zeroes */
#define MG_DATA     0x1000000ULL        /* their guest addresses */
#define MG_ZERO     0x2000000ULL
#define MG_RESIDENT 0x3000000ULL        /* pattern, never swapped out */
#define MG_NRES     64

typedef struct MgVM {
    QTestState *qts;
    char *bsst;
} MgVM;

static void unlink_and_free(void *path)
{
    unlink(path);
    g_free(path);
}

static char *mg_tmp(const char *what, bool keep)
{
    char *path;
    int fd = g_file_open_tmp(what, &path, NULL);

    g_assert_cmpint(fd, >=, 0);
    close(fd);
    if (!keep) {
        unlink(path);
    }
    g_test_queue_destroy(unlink_and_free, path);
    return path;
}

static void fill(uint8_t *buf, size_t len, unsigned seed)
{
    size_t i;

    for (i = 0; i < len; i++) {
        buf[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 12) * 13 + 1);
    }
}

/*
 * A VM with a swapper on BSST image @bsst (NULL: a new one of its own);
 * @extra: e.g. -incoming
 */
static void mg_start_on(MgVM *vm, const char *bsst, const char *extra)
{
    if (bsst) {
        vm->bsst = g_strdup(bsst);
        g_test_queue_free(vm->bsst);
    } else {
        vm->bsst = mg_tmp("tesseract-mg-bsst.XXXXXX", true);
        g_assert_true(mkimg(vm->bsst, "qcow2", 64));
    }
    vm->qts = qtest_initf("-machine pc -m 128 -display none"
                          " -blockdev driver=qcow2,node-name=bsst0,"
                          "file.driver=file,file.filename=%s"
                          " -object tesseract-swapper,id=swap0,bsst=bsst0,"
                          "limit=128M %s", vm->bsst, extra ? extra : "");
}

static void mg_start(MgVM *vm, const char *extra)
{
    mg_start_on(vm, NULL, extra);
}

static void mg_set_shared(QTestState *qts)
{
    qtest_qmp_assert_success(qts, "{'execute': 'qom-set', 'arguments': "
                             "{'path': '/objects/swap0', "
                             "'property': 'shared-bsst', 'value': true}}");
}

static QDict *mg_swapper(QTestState *qts)
{
    QDict *resp = qtest_qmp(qts, "{'execute': 'query-tesseract'}");
    QList *list = qdict_get_qlist(qdict_get_qdict(resp, "return"),
                                  "swappers");
    QDict *sw;

    g_assert_cmpint(qlist_size(list), ==, 1);
    sw = qobject_to(QDict, qlist_peek(list));
    qobject_ref(sw);
    qobject_unref(resp);
    return sw;
}

static int64_t mg_stat(QTestState *qts, const char *key)
{
    QDict *sw = mg_swapper(qts);
    int64_t v = qdict_get_int(sw, key);

    qobject_unref(sw);
    return v;
}

static void mg_swap_out(QTestState *qts, uint64_t gpa, uint64_t size)
{
    qtest_qmp_assert_success(qts,
        "{'execute': 'x-tesseract-swap-out', 'arguments': "
        "{'id': 'swap0', 'addr': %" PRIu64 ", 'size': %" PRIu64 ", "
        "'wait': true}}", gpa, size);
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
    g_assert_cmpint(mg_stat(qts, "swapped-pages"), ==, MG_NDATA);
    g_assert_cmpint(mg_stat(qts, "zero-swapouts"), >=, MG_NZERO);
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

static void mg_migrate(QTestState *qts, const char *uri)
{
    qtest_qmp_assert_success(qts, "{'execute': 'migrate', 'arguments': "
                             "{'uri': %s}}", uri);
}

static void mg_check(QTestState *qts, uint64_t gpa, const uint8_t *expect,
                     size_t len)
{
    g_autofree uint8_t *back = g_malloc(len);

    qtest_memread(qts, gpa, back, len);
    g_assert_cmpmem(back, len, expect, len);
}

/*
 * Swapped-out pages travel from the BSST: none is faulted in, they stay
 * swapped out on the source, and all arrive.
 */
static void test_private_bsst(void)
{
    g_autofree uint8_t *data = g_malloc(MG_NDATA * MG_PAGE);
    g_autofree uint8_t *res = g_malloc(MG_NRES * MG_PAGE);
    g_autofree uint8_t *zero = g_malloc0(MG_NZERO * MG_PAGE);
    char *sock = mg_tmp("tesseract-mg-sock.XXXXXX", false);
    g_autofree char *incoming = g_strdup_printf("-incoming unix:%s", sock);
    g_autofree char *uri = g_strdup_printf("unix:%s", sock);
    MgVM src, dst;
    int64_t fills;

    mg_start(&src, NULL);
    mg_fill(src.qts, data, res);
    fills = mg_stat(src.qts, "zero-fills");
    mg_start(&dst, incoming);
    mg_migrate(src.qts, uri);
    g_assert_true(mg_wait(src.qts, "completed", NULL));
    g_assert_true(mg_wait(dst.qts, "completed", NULL));

    g_assert_cmpint(mg_stat(src.qts, "migration-pages-sent"), ==, MG_NDATA);
    /* pages never touched were not faulted in to be read either */
    g_assert_cmpint(mg_stat(src.qts, "zero-fills") - fills, <, 64);
    g_assert_cmpint(mg_stat(src.qts, "migration-zero-pages-sent"), >,
                    mg_stat(src.qts, "ram-pages") / 2);
    g_assert_cmpint(mg_stat(src.qts, "migration-zero-pages-sent"), >=,
                    MG_NZERO);
    g_assert_cmpint(mg_stat(src.qts, "migration-faults"), ==, 0);
    g_assert_cmpint(mg_stat(src.qts, "swap-ins"), ==, 0);
    g_assert_cmpint(mg_stat(src.qts, "swapped-pages"), ==, MG_NDATA);
    g_assert_cmpint(mg_stat(dst.qts, "migration-pages-received"), >=,
                    MG_NDATA + MG_NZERO);

    mg_check(dst.qts, MG_DATA, data, MG_NDATA * MG_PAGE);
    mg_check(dst.qts, MG_ZERO, zero, MG_NZERO * MG_PAGE);
    mg_check(dst.qts, MG_RESIDENT, res, MG_NRES * MG_PAGE);
    /* the destination's swapper works on what arrived */
    mg_swap_out(dst.qts, MG_DATA, MG_NDATA * MG_PAGE);
    mg_check(dst.qts, MG_DATA, data, MG_NDATA * MG_PAGE);
    qtest_quit(dst.qts);
    qtest_quit(src.qts);
}

/*
 * Pages written after the swapper took them over (the VM stopped for the
 * switchover: pause-before-switchover) arrive with their new contents:
 * the write faults the page in and dirties it, and it is sent again.
 */
static void test_written_during(void)
{
    g_autofree uint8_t *data = g_malloc(MG_NDATA * MG_PAGE);
    g_autofree uint8_t *res = g_malloc(MG_NRES * MG_PAGE);
    g_autofree uint8_t *upd = g_malloc(64 * MG_PAGE);
    char *sock = mg_tmp("tesseract-mg-sock.XXXXXX", false);
    g_autofree char *incoming = g_strdup_printf("-incoming unix:%s", sock);
    g_autofree char *uri = g_strdup_printf("unix:%s", sock);
    MgVM src, dst;

    mg_start(&src, NULL);
    mg_fill(src.qts, data, res);
    mg_start(&dst, incoming);
    qtest_qmp_assert_success(src.qts,
        "{'execute': 'migrate-set-capabilities', 'arguments': "
        "{'capabilities': [{'capability': 'pause-before-switchover', "
        "'state': true}]}}");
    mg_migrate(src.qts, uri);
    g_assert_true(mg_wait(src.qts, "pre-switchover", NULL));

    /* half swapped-out pages, half resident ones */
    fill(upd, 64 * MG_PAGE, 11);
    qtest_memwrite(src.qts, MG_DATA + 32 * MG_PAGE, upd, 32 * MG_PAGE);
    qtest_memwrite(src.qts, MG_RESIDENT, upd + 32 * MG_PAGE, 32 * MG_PAGE);
    memcpy(data + 32 * MG_PAGE, upd, 32 * MG_PAGE);
    memcpy(res, upd + 32 * MG_PAGE, 32 * MG_PAGE);
    /* faulted in by the writer, not by the migration */
    g_assert_cmpint(mg_stat(src.qts, "swap-ins"), ==, 32);
    g_assert_cmpint(mg_stat(src.qts, "migration-faults"), ==, 0);

    qtest_qmp_assert_success(src.qts,
        "{'execute': 'migrate-continue', 'arguments': "
        "{'state': 'pre-switchover'}}");
    g_assert_true(mg_wait(src.qts, "completed", NULL));
    g_assert_true(mg_wait(dst.qts, "completed", NULL));
    mg_check(dst.qts, MG_DATA, data, MG_NDATA * MG_PAGE);
    mg_check(dst.qts, MG_RESIDENT, res, MG_NRES * MG_PAGE);
    qtest_quit(dst.qts);
    qtest_quit(src.qts);
}

/*
 * A migration cancelled at the switchover (the VM stopped, the swapper's
 * BSST I/O held), and one whose destination dies: the source runs on,
 * swaps out again, keeps every page, and a later migration succeeds.
 */
static void test_cancel(void)
{
    g_autofree uint8_t *data = g_malloc(MG_NDATA * MG_PAGE);
    g_autofree uint8_t *res = g_malloc(MG_NRES * MG_PAGE);
    char *sock1 = mg_tmp("tesseract-mg-sock.XXXXXX", false);
    char *sock2 = mg_tmp("tesseract-mg-sock.XXXXXX", false);
    char *sock3 = mg_tmp("tesseract-mg-sock.XXXXXX", false);
    g_autofree char *in1 = g_strdup_printf("-incoming unix:%s", sock1);
    g_autofree char *in2 = g_strdup_printf("-incoming unix:%s", sock2);
    g_autofree char *in3 = g_strdup_printf("-incoming unix:%s", sock3);
    g_autofree char *uri1 = g_strdup_printf("unix:%s", sock1);
    g_autofree char *uri2 = g_strdup_printf("unix:%s", sock2);
    g_autofree char *uri3 = g_strdup_printf("unix:%s", sock3);
    MgVM src, dst;
    QDict *resp;

    mg_start(&src, NULL);
    mg_fill(src.qts, data, res);
    qtest_qmp_assert_success(src.qts,
        "{'execute': 'migrate-set-capabilities', 'arguments': "
        "{'capabilities': [{'capability': 'pause-before-switchover', "
        "'state': true}]}}");

    /* cancelled with the VM stopped for the switchover */
    mg_start(&dst, in1);
    mg_migrate(src.qts, uri1);
    g_assert_true(mg_wait(src.qts, "pre-switchover", NULL));
    qtest_qmp_assert_success(src.qts, "{'execute': 'migrate_cancel'}");
    g_assert_false(mg_wait(src.qts, "completed", NULL));
    qtest_set_expected_status(dst.qts, 1);
    qtest_quit(dst.qts);
    resp = qtest_qmp(src.qts, "{'execute': 'query-status'}");
    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(resp, "return"), "status"),
                    ==, "running");
    qobject_unref(resp);
    /* its BSST I/O runs again: this swap-out waits for it */
    mg_swap_out(src.qts, MG_RESIDENT, MG_NRES * MG_PAGE);
    g_assert_cmpint(mg_stat(src.qts, "swapped-pages"), ==,
                    MG_NDATA + MG_NRES);

    /* the destination dies in the middle */
    mg_start(&dst, in2);
    mg_migrate(src.qts, uri2);
    g_assert_true(mg_wait(src.qts, "pre-switchover", NULL));
    qtest_kill_qemu(dst.qts);
    qtest_quit(dst.qts);
    qtest_qmp_assert_success(src.qts,
        "{'execute': 'migrate-continue', 'arguments': "
        "{'state': 'pre-switchover'}}");
    g_assert_false(mg_wait(src.qts, "completed", NULL));
    mg_check(src.qts, MG_DATA, data, MG_NDATA * MG_PAGE);
    mg_check(src.qts, MG_RESIDENT, res, MG_NRES * MG_PAGE);
    g_assert_cmpint(mg_stat(src.qts, "swap-ins"), ==, MG_NDATA + MG_NRES);

    /* and then it migrates */
    qtest_qmp_assert_success(src.qts, "{'execute': 'cont'}");
    mg_swap_out(src.qts, MG_DATA, MG_NDATA * MG_PAGE);
    mg_start(&dst, in3);
    mg_migrate(src.qts, uri3);
    g_assert_true(mg_wait(src.qts, "pre-switchover", NULL));
    qtest_qmp_assert_success(src.qts,
        "{'execute': 'migrate-continue', 'arguments': "
        "{'state': 'pre-switchover'}}");
    g_assert_true(mg_wait(src.qts, "completed", NULL));
    g_assert_true(mg_wait(dst.qts, "completed", NULL));
    mg_check(dst.qts, MG_DATA, data, MG_NDATA * MG_PAGE);
    mg_check(dst.qts, MG_RESIDENT, res, MG_NRES * MG_PAGE);
    qtest_quit(dst.qts);
    qtest_quit(src.qts);
}

/*
 * A destination whose swapper opened the source's own BSST image refuses
 * at the start, before the source hands the image over; the source runs
 * on with its pages.
 */
static void test_same_bsst(void)
{
    g_autofree uint8_t *data = g_malloc(MG_NDATA * MG_PAGE);
    g_autofree uint8_t *res = g_malloc(MG_NRES * MG_PAGE);
    char *sock = mg_tmp("tesseract-mg-sock.XXXXXX", false);
    g_autofree char *uri = g_strdup_printf("unix:%s", sock);
    g_autofree char *err = NULL;
    QTestState *dst;
    MgVM src;

    mg_start(&src, NULL);
    mg_fill(src.qts, data, res);
    dst = qtest_initf("-machine pc -m 128 -display none"
                      " -blockdev driver=qcow2,node-name=bsst0,"
                      "file.driver=file,file.filename=%s"
                      " -object tesseract-swapper,id=swap0,bsst=bsst0,"
                      "limit=128M -incoming unix:%s", src.bsst, sock);
    mg_migrate(src.qts, uri);
    g_assert_false(mg_wait(src.qts, "completed", &err));
    qtest_set_expected_status(dst, 1);
    qtest_quit(dst);

    mg_check(src.qts, MG_DATA, data, MG_NDATA * MG_PAGE);
    mg_check(src.qts, MG_RESIDENT, res, MG_NRES * MG_PAGE);
    /* its BSST is its own still: it swaps out again */
    mg_swap_out(src.qts, MG_DATA, MG_NDATA * MG_PAGE);
    mg_check(src.qts, MG_DATA, data, MG_NDATA * MG_PAGE);
    qtest_quit(src.qts);
}

/*
 * Pages sent from the BSST early in a (slow) migration, then swapped in,
 * written and swapped out again before it ends: RAM's section hands them
 * over again and they arrive with their new contents, not the copy sent
 * first.
 */
static void rewritten_and_swapped(bool shared)
{
    g_autofree uint8_t *data = g_malloc(MG_NDATA * MG_PAGE);
    g_autofree uint8_t *res = g_malloc(MG_NRES * MG_PAGE);
    g_autofree uint8_t *upd = g_malloc(32 * MG_PAGE);
    char *sock = mg_tmp("tesseract-mg-sock.XXXXXX", false);
    g_autofree char *incoming = g_strdup_printf("-incoming unix:%s", sock);
    g_autofree char *uri = g_strdup_printf("unix:%s", sock);
    MgVM src, dst;
    /* with a shared BSST, pages travel as blocks */
    const char *sent = shared ? "migration-blocks-sent" :
                                "migration-pages-sent";
    int i;

    mg_start(&src, NULL);
    mg_fill(src.qts, data, res);
    if (shared) {
        mg_set_shared(src.qts);
    }
    mg_start_on(&dst, shared ? src.bsst : NULL, incoming);
    qtest_qmp_assert_success(src.qts,
        "{'execute': 'migrate-set-parameters', 'arguments': "
        "{'max-bandwidth': 262144}}");
    mg_migrate(src.qts, uri);
    for (i = 0; i < 3000 && mg_stat(src.qts, sent) < MG_NDATA; i++) {
        g_usleep(10 * 1000);
    }
    g_assert_cmpint(mg_stat(src.qts, sent), ==, MG_NDATA);
    {
        g_autofree char *st = mg_status(src.qts, NULL);

        g_assert_cmpstr(st, ==, "active");
    }
    fill(upd, 32 * MG_PAGE, 13);
    qtest_memwrite(src.qts, MG_DATA + 64 * MG_PAGE, upd, 32 * MG_PAGE);
    memcpy(data + 64 * MG_PAGE, upd, 32 * MG_PAGE);
    mg_swap_out(src.qts, MG_DATA + 64 * MG_PAGE, 32 * MG_PAGE);
    qtest_qmp_assert_success(src.qts,
        "{'execute': 'migrate-set-parameters', 'arguments': "
        "{'max-bandwidth': 1073741824}}");
    g_assert_true(mg_wait(src.qts, "completed", NULL));
    g_assert_true(mg_wait(dst.qts, "completed", NULL));
    /* the 32 again, and nothing else twice */
    g_assert_cmpint(mg_stat(src.qts, sent), ==, MG_NDATA + 32);
    if (shared) {
        /* each new copy replaced the older one's block */
        g_assert_cmpint(mg_stat(dst.qts, "migration-pages-adopted"), ==,
                        MG_NDATA + 32);
        g_assert_cmpint(mg_stat(dst.qts, "swapped-pages"), ==, MG_NDATA);
        g_assert_cmpint(mg_stat(src.qts, "migration-pages-sent"), ==, 0);
    }
    qtest_quit(src.qts);
    mg_check(dst.qts, MG_DATA, data, MG_NDATA * MG_PAGE);
    mg_check(dst.qts, MG_RESIDENT, res, MG_NRES * MG_PAGE);
    qtest_quit(dst.qts);
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
 * shared-bsst=on: both QEMUs open one BSST image.  Swapped-out pages
 * travel as their blocks: nothing is read on the source, the destination
 * adopts the blocks, and once the source is gone it reads them, and
 * swaps more pages out into blocks of its own without touching them.
 */
static void test_shared_bsst(void)
{
    g_autofree uint8_t *data = g_malloc(MG_NDATA * MG_PAGE);
    g_autofree uint8_t *res = g_malloc(MG_NRES * MG_PAGE);
    g_autofree uint8_t *zero = g_malloc0(MG_NZERO * MG_PAGE);
    char *sock = mg_tmp("tesseract-mg-sock.XXXXXX", false);
    g_autofree char *incoming = g_strdup_printf("-incoming unix:%s", sock);
    g_autofree char *uri = g_strdup_printf("unix:%s", sock);
    MgVM src, dst;

    mg_start(&src, NULL);
    mg_fill(src.qts, data, res);
    mg_set_shared(src.qts);
    /* the same image: -incoming opens it inactive, without its lock */
    mg_start_on(&dst, src.bsst, incoming);
    mg_migrate(src.qts, uri);
    g_assert_true(mg_wait(src.qts, "completed", NULL));
    g_assert_true(mg_wait(dst.qts, "completed", NULL));

    g_assert_cmpint(mg_stat(src.qts, "migration-blocks-sent"), ==, MG_NDATA);
    g_assert_cmpint(mg_stat(src.qts, "migration-pages-sent"), ==, 0);
    g_assert_cmpint(mg_stat(src.qts, "migration-bsst-reads"), ==, 0);
    g_assert_cmpint(mg_stat(src.qts, "migration-faults"), ==, 0);
    g_assert_cmpint(mg_stat(src.qts, "swap-ins"), ==, 0);
    g_assert_cmpint(mg_stat(dst.qts, "migration-pages-adopted"), ==,
                    MG_NDATA);
    g_assert_cmpint(mg_stat(dst.qts, "swapped-pages"), ==, MG_NDATA);
    qtest_quit(src.qts);

    /* new blocks for the destination's own swap-outs: none adopted */
    mg_swap_out(dst.qts, MG_RESIDENT, MG_NRES * MG_PAGE);
    mg_check(dst.qts, MG_DATA, data, MG_NDATA * MG_PAGE);
    mg_check(dst.qts, MG_ZERO, zero, MG_NZERO * MG_PAGE);
    mg_check(dst.qts, MG_RESIDENT, res, MG_NRES * MG_PAGE);
    g_assert_cmpint(mg_stat(dst.qts, "swap-ins"), >=, MG_NDATA + MG_NRES);
    mg_swap_out(dst.qts, MG_DATA, MG_NDATA * MG_PAGE);
    mg_check(dst.qts, MG_DATA, data, MG_NDATA * MG_PAGE);
    mg_check(dst.qts, MG_RESIDENT, res, MG_NRES * MG_PAGE);
    qtest_quit(dst.qts);
}

/*
 * shared-bsst=on, but the destination opened another image: it refuses
 * (its UUID is not the source's), and the source keeps its pages.
 */
static void test_shared_other_image(void)
{
    g_autofree uint8_t *data = g_malloc(MG_NDATA * MG_PAGE);
    g_autofree uint8_t *res = g_malloc(MG_NRES * MG_PAGE);
    char *sock = mg_tmp("tesseract-mg-sock.XXXXXX", false);
    g_autofree char *incoming = g_strdup_printf("-incoming unix:%s", sock);
    g_autofree char *uri = g_strdup_printf("unix:%s", sock);
    MgVM src, dst;

    mg_start(&src, NULL);
    mg_fill(src.qts, data, res);
    mg_set_shared(src.qts);
    mg_start(&dst, incoming);
    /* a fresh BSST has its UUID only once written */
    mg_swap_out(dst.qts, MG_RESIDENT, MG_PAGE);
    mg_migrate(src.qts, uri);
    g_assert_false(mg_wait(src.qts, "completed", NULL));
    qtest_set_expected_status(dst.qts, 1);
    qtest_quit(dst.qts);
    g_assert_cmpint(mg_stat(src.qts, "migration-pages-adopted"), ==, 0);
    mg_check(src.qts, MG_DATA, data, MG_NDATA * MG_PAGE);
    mg_check(src.qts, MG_RESIDENT, res, MG_NRES * MG_PAGE);
    qtest_quit(src.qts);
}

/* migrate to a file, and a new QEMU started from it */
static void test_file(void)
{
    g_autofree uint8_t *data = g_malloc(MG_NDATA * MG_PAGE);
    g_autofree uint8_t *res = g_malloc(MG_NRES * MG_PAGE);
    char *file = mg_tmp("tesseract-mg-file.XXXXXX", false);
    g_autofree char *incoming = g_strdup_printf("-incoming file:%s", file);
    g_autofree char *uri = g_strdup_printf("file:%s", file);
    MgVM src, dst;

    mg_start(&src, NULL);
    mg_fill(src.qts, data, res);
    mg_migrate(src.qts, uri);
    g_assert_true(mg_wait(src.qts, "completed", NULL));
    g_assert_cmpint(mg_stat(src.qts, "migration-pages-sent"), ==, MG_NDATA);
    g_assert_cmpint(mg_stat(src.qts, "swap-ins"), ==, 0);
    qtest_quit(src.qts);

    mg_start(&dst, incoming);
    g_assert_true(mg_wait(dst.qts, "completed", NULL));
    mg_check(dst.qts, MG_DATA, data, MG_NDATA * MG_PAGE);
    mg_check(dst.qts, MG_RESIDENT, res, MG_NRES * MG_PAGE);
    qtest_quit(dst.qts);
}

/*
 * What the swapper cannot be part of is refused up front, naming the
 * conflict, and the source carries on with its pages intact.
 */
static void test_refused(void)
{
    g_autofree uint8_t *data = g_malloc(MG_NDATA * MG_PAGE);
    g_autofree uint8_t *res = g_malloc(MG_NRES * MG_PAGE);
    char *sock = mg_tmp("tesseract-mg-sock.XXXXXX", false);
    g_autofree char *incoming = g_strdup_printf("-incoming unix:%s", sock);
    g_autofree char *uri = g_strdup_printf("unix:%s", sock);
    g_autofree char *err = NULL;
    MgVM src, dst;

    mg_start(&src, NULL);
    mg_fill(src.qts, data, res);
    mg_start(&dst, incoming);
    /* on both sides, so that only the swapper refuses */
    qtest_qmp_assert_success(src.qts,
        "{'execute': 'migrate-set-capabilities', 'arguments': "
        "{'capabilities': [{'capability': 'postcopy-ram', "
        "'state': true}]}}");
    qtest_qmp_assert_success(dst.qts,
        "{'execute': 'migrate-set-capabilities', 'arguments': "
        "{'capabilities': [{'capability': 'postcopy-ram', "
        "'state': true}]}}");
    mg_migrate(src.qts, uri);
    g_assert_false(mg_wait(src.qts, "completed", &err));
    g_assert_nonnull(err);
    g_test_message("refused: %s", err);
    g_assert_nonnull(strstr(err, "postcopy-ram"));
    g_assert_nonnull(strstr(err, "tesseract-swapper"));
    /* the destination found the section start and exits */
    qtest_set_expected_status(dst.qts, 1);
    qtest_quit(dst.qts);

    mg_check(src.qts, MG_DATA, data, MG_NDATA * MG_PAGE);
    mg_check(src.qts, MG_RESIDENT, res, MG_NRES * MG_PAGE);
    qtest_quit(src.qts);
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
    char *disk = mg_tmp("tesseract-mg-disk.XXXXXX", true);
    g_autofree char *drive = NULL;
    g_autofree char *out = NULL;
    g_autofree char *sn_disk = NULL;
    g_autofree char *sn_bsst = NULL;
    MgVM vm;

    /* the VM state goes to the guest disk, a qcow2 image */
    g_assert_true(mkimg(disk, "qcow2", 16));
    drive = g_strdup_printf("-blockdev driver=qcow2,node-name=disk0,"
                            "file.driver=file,file.filename=%s"
                            " -device virtio-blk-pci,drive=disk0", disk);
    mg_start(&vm, drive);
    mg_fill(vm.qts, data, res);

    out = mg_hmp(vm.qts, "savevm s1");
    g_assert_cmpstr(out, ==, "");
    g_assert_cmpint(mg_stat(vm.qts, "migration-pages-sent"), ==, MG_NDATA);
    g_assert_cmpint(mg_stat(vm.qts, "migration-faults"), ==, 0);
    g_assert_cmpint(mg_stat(vm.qts, "swap-ins"), ==, 0);
    g_assert_cmpint(mg_stat(vm.qts, "swapped-pages"), ==, MG_NDATA);
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
    g_assert_cmpint(mg_stat(vm.qts, "swapped-pages"), ==,
                    MG_NDATA + MG_NZERO + MG_NRES);

    g_free(out);
    out = mg_hmp(vm.qts, "loadvm s1");
    g_assert_cmpstr(out, ==, "");
    mg_check(vm.qts, MG_DATA, data, MG_NDATA * MG_PAGE);
    mg_check(vm.qts, MG_ZERO, zero, MG_NZERO * MG_PAGE);
    mg_check(vm.qts, MG_RESIDENT, res, MG_NRES * MG_PAGE);
    /* and the swapper goes on with what loadvm brought back */
    mg_swap_out(vm.qts, MG_DATA, MG_NDATA * MG_PAGE);
    mg_check(vm.qts, MG_DATA, data, MG_NDATA * MG_PAGE);
    qtest_quit(vm.qts);
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
    qtest_add_func("/tesseract-migrate/file", test_file);
    qtest_add_func("/tesseract-migrate/refused", test_refused);
    qtest_add_func("/tesseract-migrate/savevm", test_savevm);
    qtest_add_func("/tesseract-migrate/shared-bsst", test_shared_bsst);
    qtest_add_func("/tesseract-migrate/shared-rewritten",
                   test_shared_rewritten);
    qtest_add_func("/tesseract-migrate/shared-other-image",
                   test_shared_other_image);
    return g_test_run();
}

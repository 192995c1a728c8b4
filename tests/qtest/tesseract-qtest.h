/*
 * Helpers shared by the tesseract qtests
 *
 * Temporary files and images that go away when the test ends, a data
 * pattern, a child process that goes away with the test, the counters of
 * query-tesseract's swapper and store, and a swap-out.  Each QMP helper
 * takes the QTestState it asks; a test built on libqtest-single.h
 * (included before this header) also gets swapper_query(),
 * swapper_stat(), swapper_str() and swapper_swap_out() on global_qtest.
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef TESSERACT_QTEST_H
#define TESSERACT_QTEST_H

#include <signal.h>
#include <sys/prctl.h>
#include "libqtest.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"

static inline void tq_unlink_and_free(void *path)
{
    unlink(path);
    g_free(path);
}

/*
 * A new temporary file (g_file_open_tmp() template @tmpl), removed when
 * the test ends.  With !@keep only its name is reserved: the file is
 * removed at once, for a socket or a file to be created there.
 */
static inline char *tq_tmp(const char *tmpl, bool keep)
{
    char *path;
    int fd = g_file_open_tmp(tmpl, &path, NULL);

    g_assert_cmpint(fd, >=, 0);
    close(fd);
    if (!keep) {
        unlink(path);
    }
    g_test_queue_destroy(tq_unlink_and_free, path);
    return path;
}

/* A new image of @mb MiB in format @fmt, removed when the test ends */
static inline char *tq_image(const char *fmt, unsigned mb)
{
    char *path = tq_tmp("tesseract-qtest.XXXXXX", true);

    g_assert_true(mkimg(path, fmt, mb));
    return path;
}

/* @len bytes of pattern @seed: each page differs from the others */
static inline void tq_fill_pattern(uint8_t *buf, size_t len, unsigned seed)
{
    size_t i;

    for (i = 0; i < len; i++) {
        buf[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 12) * 13);
    }
}

/* g_spawn_*()'s child setup: the child is sent SIGTERM when the test dies */
static inline void tq_child_setup(gpointer data)
{
    prctl(PR_SET_PDEATHSIG, SIGTERM);
}

/* qtest_add_abrt_handler()'s: SIGTERM to the child whose GPid @opaque is */
static inline void tq_child_kill(void *opaque)
{
    kill(*(GPid *)opaque, SIGTERM);
}

/*
 * A qemu-storage-daemon exporting image @image of format @fmt ("file":
 * the file as it is) over NBD
 * (export "f0", writable) on a unix socket in a new directory: NULL (the
 * test is skipped) without a daemon binary, else the socket's path.
 */
typedef struct TqNbd {
    GPid pid;
    char *dir;
    char *sock;
} TqNbd;

static inline const char *tq_nbd_start(TqNbd *n, const char *image,
                                       const char *fmt)
{
    const char *qsd = getenv("QTEST_QEMU_STORAGE_DAEMON_BINARY");
    g_autofree char *cmd = NULL;
    gchar **argv = NULL;
    int i;

    memset(n, 0, sizeof(*n));
    if (!qsd) {
        g_test_skip("no qemu-storage-daemon");
        return NULL;
    }
    n->dir = g_dir_make_tmp("tesseract-nbd.XXXXXX", NULL);
    g_assert_nonnull(n->dir);
    n->sock = g_build_filename(n->dir, "nbd.sock", NULL);
    cmd = g_strdup_printf("%s --blockdev driver=%s,node-name=f0,%s=%s "
                          "--nbd-server addr.type=unix,addr.path=%s "
                          "--export type=nbd,id=e0,node-name=f0,"
                          "writable=on", qsd, fmt,
                          strcmp(fmt, "file") ?
                          "file.driver=file,file.filename" : "filename",
                          image, n->sock);
    g_assert_true(g_shell_parse_argv(cmd, NULL, &argv, NULL));
    g_assert_true(g_spawn_async(NULL, argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD |
                                G_SPAWN_STDOUT_TO_DEV_NULL, tq_child_setup,
                                NULL, &n->pid, NULL));
    g_strfreev(argv);
    qtest_add_abrt_handler(tq_child_kill, &n->pid);
    for (i = 0; i < 1000 && !g_file_test(n->sock, G_FILE_TEST_EXISTS); i++) {
        g_usleep(10 * 1000);
    }
    g_assert_true(g_file_test(n->sock, G_FILE_TEST_EXISTS));
    return n->sock;
}

static inline void tq_nbd_stop(TqNbd *n)
{
    if (!n->pid) {
        return;
    }
    qtest_remove_abrt_handler(&n->pid);
    kill(n->pid, SIGTERM);
    g_assert_cmpint(waitpid(n->pid, NULL, 0), ==, n->pid);
    g_spawn_close_pid(n->pid);
    unlink(n->sock);
    rmdir(n->dir);
    g_free(n->sock);
    g_free(n->dir);
    n->pid = 0;
}

static inline void tq_run(const char *cmd)
{
    g_autofree char *out = NULL, *err = NULL;
    int status;

    g_assert_true(g_spawn_command_line_sync(cmd, &out, &err, &status, NULL));
    if (!WIFEXITED(status) || WEXITSTATUS(status)) {
        g_error("%s: %s", cmd, err);
    }
}

/*
 * A new qcow2 image of @mb MiB in an RBD image of the Ceph cluster whose
 * configuration file $TESSERACT_TEST_RBD names (pool "rbd"; make
 * check-long's tests/long/rbd-test.sh starts a one-node cluster): NULL
 * (the test is skipped) without one, else the -blockdev options of a
 * qcow2 node "bsst0" over it, without librbd's cache (a swapper needs
 * cache.direct=on).  The cluster goes with its image.
 *
 * With $TESSERACT_TEST_RBD_KEY (client.admin's key, base64) QEMU
 * authenticates as libvirt has it do, with a secret object that the
 * options name (key-secret): then the object's own -object option
 * follows the -blockdev options in the string returned.
 */
static inline char *tq_rbd_image(unsigned mb)
{
    static unsigned count;
    const char *conf = getenv("TESSERACT_TEST_RBD");
    const char *key = getenv("TESSERACT_TEST_RBD_KEY");
    const char *img = getenv("QTEST_QEMU_IMG");
    g_autofree char *name = NULL, *cmd = NULL, *secret = NULL;
    char *local;

    if (!conf || !*conf) {
        g_test_skip("no Ceph cluster (TESSERACT_TEST_RBD: a ceph.conf; "
                    "make check-long starts one)");
        return NULL;
    }
    g_assert_nonnull(img);
    name = g_strdup_printf("tsr-%d-%u", (int)getpid(), count++);
    if (!key || !*key) {
        cmd = g_strdup_printf("%s create -q -f qcow2 rbd:rbd/%s:conf=%s %uM",
                              img, name, conf, mb);
        tq_run(cmd);
        return g_strdup_printf("driver=qcow2,node-name=bsst0,"
                               "cache.direct=on,file.driver=rbd,"
                               "file.pool=rbd,file.image=%s,file.conf=%s",
                               name, conf);
    }
    /*
     * qemu-img create -f qcow2 opens the new RBD image without the key:
     * create it raw, then copy a qcow2 header into it
     */
    secret = g_strdup_printf("secret,id=tsr-rbd-key,data=%s,format=base64",
                             key);
    cmd = g_strdup_printf("%s create -q -f raw --object %s "
                          "-o password-secret=tsr-rbd-key "
                          "rbd:rbd/%s:conf=%s %uM", img, secret, name, conf,
                          mb);
    tq_run(cmd);
    local = tq_image("qcow2", mb);
    g_free(cmd);
    cmd = g_strdup_printf("%s convert -q -n -f raw --object %s "
                          "--target-image-opts %s driver=rbd,pool=rbd,"
                          "image=%s,conf=%s,user=admin,"
                          "key-secret=tsr-rbd-key", img, secret, local, name,
                          conf);
    tq_run(cmd);
    return g_strdup_printf("driver=qcow2,node-name=bsst0,cache.direct=on,"
                           "file.driver=rbd,file.pool=rbd,file.image=%s,"
                           "file.conf=%s,file.user=admin,"
                           "file.key-secret=tsr-rbd-key -object %s",
                           name, conf, secret);
}

/* query-tesseract's one swapper (a new reference) */
static inline QDict *tq_swapper_query(QTestState *qts)
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

/* The swapper's counter @key */
static inline int64_t tq_swapper_stat(QTestState *qts, const char *key)
{
    QDict *sw = tq_swapper_query(qts);
    int64_t v = qdict_get_int(sw, key);

    qobject_unref(sw);
    return v;
}

/* The swapper's @key string, or NULL (freed by the caller) */
static inline char *tq_swapper_str(QTestState *qts, const char *key)
{
    QDict *sw = tq_swapper_query(qts);
    char *v = g_strdup(qdict_get_try_str(sw, key));

    qobject_unref(sw);
    return v;
}

/*
 * query-tesseract's first store (a new reference): of node @node, or of
 * every node when @node is NULL
 */
static inline QDict *tq_store_query(QTestState *qts, const char *node)
{
    QDict *resp = node ?
        qtest_qmp(qts, "{'execute': 'query-tesseract', "
                  " 'arguments': {'node-name': %s}}", node) :
        qtest_qmp(qts, "{'execute': 'query-tesseract'}");
    QList *stores = qdict_get_qlist(qdict_get_qdict(resp, "return"),
                                    "stores");
    QDict *st = qobject_to(QDict, qlist_peek(stores));

    qobject_ref(st);
    qobject_unref(resp);
    return st;
}

/* The store's counter @key (of @node, or the first store) */
static inline int64_t tq_store_stat(QTestState *qts, const char *node,
                                    const char *key)
{
    QDict *st = tq_store_query(qts, node);
    int64_t v = qdict_get_int(st, key);

    qobject_unref(st);
    return v;
}

/*
 * x-tesseract-swap-out of [@gpa, @gpa + @size) by swapper swap0; with
 * !@wait it returns while the swapper's worker swaps the pages out
 */
static inline void tq_swap_out(QTestState *qts, uint64_t gpa, uint64_t size,
                               bool wait)
{
    qtest_qmp_assert_success(qts,
        "{'execute': 'x-tesseract-swap-out', 'arguments': "
        "{'id': 'swap0', 'addr': %" PRIu64 ", 'size': %" PRIu64 ", "
        "'wait': %i}}", gpa, size, wait);
}

#ifdef LIBQTEST_SINGLE_H
static inline QDict *swapper_query(void)
{
    return tq_swapper_query(global_qtest);
}

static inline int64_t swapper_stat(const char *key)
{
    return tq_swapper_stat(global_qtest, key);
}

static inline char *swapper_str(const char *key)
{
    return tq_swapper_str(global_qtest, key);
}

/* Swap out [@gpa, @gpa + @size) and wait until it is done */
static inline void swapper_swap_out(uint64_t gpa, uint64_t size)
{
    tq_swap_out(global_qtest, gpa, size, true);
}
#endif

#endif

/*
 * Tesseract: swapped-out guest pages in migrations and snapshots
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * A RAM migration (or savevm, or 'migrate file:') reads every dirty page
 * of guest RAM; reading a page the swapper swapped out would fault it
 * back in.  Instead, RAM's section asks the swapper before it reads each
 * page (ram_block_set_migrate_elsewhere(), patches/0013): a page that is
 * not plainly resident is taken over by this section, which marks it in
 * mig_send and sends it itself, read straight from the BSST, and it stays
 * swapped out.
 *
 * Why every page arrives with its last contents: a swapped-out page
 * cannot change (a write faults it in first), so its contents are those
 * of its BSST block.  A page the guest writes is resident, and the write
 * sets its dirty bit: RAM's section sees it again, and either sends it
 * (resident) or hands it over (swapped out again meanwhile).  This
 * section runs after RAM's in each round and at the end, in the same
 * stream, so what it sends overrides RAM's older copy; RAM's newer copy
 * of a page comes after it.  A page taken over but swapped in before it
 * is sent is sent from RAM: any write after that copy dirties it again.
 *
 * The pages not in RAM when the migration starts are taken at once (RAM's
 * first pass would hand each over), so that they are read in the BSST's
 * order, close blocks in one read, as host swap reads ahead.  A page sent
 * while not in RAM, and not in RAM since (mig_sent), is unchanged: when
 * RAM's section comes to it, it is not sent again.
 *
 * The stream, in each part of the section: big-endian 64-bit words,
 * a page's RAM block offset ORed with TSW_MIG_DATA (then its 4 KiB) or
 * TSW_MIG_ZERO, ended by TSW_MIG_EOS.  The first part carries the
 * source's BSST UUID (TSW_MIG_UUID, then 16 bytes).  A destination with
 * a BSST of its own activates it at once, to keep its limit as pages
 * arrive; one whose swapper opened the source's image (a restore from a
 * file, or both on shared storage without shared-bsst) leaves it
 * inactive until the switchover, when its store reads it again
 * (bsst_store_co_reload()), and takes the pages into RAM meanwhile.
 *
 * With shared-bsst=on, source and destination open the same BSST image
 * (shared storage): a swapped-out page travels as its block
 * (TSW_MIG_BLOCK: the offset word, then the BSST block and its block in
 * the host file, 32 bits each), and the destination adopts the block
 * (bsst_store_adopt_block()) and registers the page as swapped out,
 * without reading it; a TSW_MIG_SHARED record before the UUID says so,
 * and the destination then insists on the same UUID.  Each block sent
 * is referenced once more until the migration ends (mig_held), so that
 * the source, which goes on running and swapping, does not reuse it for
 * another page meanwhile: the destination's copy of a page stays valid
 * until a newer copy overrides it.  The source's swapper writes no BSST
 * metadata for its pages, so the destination's store, which read the
 * image when it opened it, knows every other block in use.  Only a
 * stream to a socket carries blocks (tsw_migrate_to_live_peer()).
 *
 * savevm leaves the BSST out of the internal snapshot (patches/0015:
 * loadvm would revert the image under its store) and saves the pages of
 * this section in the VM state, like a migration to a file.  loadvm
 * loads into a running swapper: a page this section rewrites (data or
 * zeroes) that is swapped out here is dropped, not read back first;
 * RAM's section writes through a fault, which swaps it in first.
 *
 * At the switchover of a migration the VM stops and QEMU inactivates
 * every block node, the BSST's too: from then on the swapper must not
 * write to it, so its threads start no BSST I/O while the VM is stopped
 * for it (mig_frozen), and this section reads the BSST's host file
 * directly, as faults do.
 */

#include "qemu/osdep.h"
#include "qemu/bitmap.h"
#include "qemu/cutils.h"
#include "qemu/error-report.h"
#include "qemu/main-loop.h"
#include "qemu/memalign.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-migration.h"
#include "qapi/qapi-types-migration.h"
#include "qemu/userfaultfd.h"
#include "qemu/uuid.h"
#include "migration/misc.h"
#include "block/block-global-state.h"
#include "block/graph-lock.h"
#include "io/channel-socket.h"
#include "io/channel-tls.h"
#include "migration/qemu-file.h"
#include "migration/qemu-file-types.h"
#include "migration/register.h"
#include "system/runstate.h"
#include "trace.h"
#include "swapper-int.h"

#define TSW_MIG_DATA    0x1ULL
#define TSW_MIG_ZERO    0x2ULL
#define TSW_MIG_EOS     0x4ULL
#define TSW_MIG_UUID    0x8ULL
#define TSW_MIG_BLOCK   0x10ULL
#define TSW_MIG_SHARED  0x20ULL
#define TSW_MIG_FLAGS   (TSW_PAGE - 1)
/* a TSW_MIG_BLOCK record's size on the wire */
#define TSW_MIG_BLOCK_BYTES 16
/*
 * pages one round of save_live_iterate sends at most (4 MiB); it stops
 * sooner, between two reads, when the stream's rate limit (max-bandwidth)
 * is used up, and gives the pages it gathered but did not read back
 */
#define TSW_MIG_ROUND   1024
/*
 * Swapped-out pages gathered and sorted by block before they are read;
 * one read covers at most TSW_MIG_SPAN blocks, with gaps of at most
 * TSW_MIG_GAP blocks between two pages it sends
 */
#define TSW_MIG_GATHER  262144
#define TSW_MIG_SPAN    64
#define TSW_MIG_GAP     8
/* a page in the middle of a swap-out or swap-in: how long the end waits */
#define TSW_MIG_SETTLE_MS 10000

/* Migration capabilities whose stream this section cannot be part of */
static bool tsw_migrate_check_caps(TesseractSwapper *sw, Error **errp)
{
    static const struct {
        MigrationCapability cap;
        const char *why;
    } refused[] = {
        { MIGRATION_CAPABILITY_POSTCOPY_RAM, "postcopy registers guest RAM "
          "with a userfaultfd of its own" },
        { MIGRATION_CAPABILITY_BACKGROUND_SNAPSHOT, "a background snapshot "
          "write-protects guest RAM with a userfaultfd of its own" },
        { MIGRATION_CAPABILITY_MULTIFD, "multifd sends RAM on channels of "
          "its own, which the swapper's pages would race" },
        { MIGRATION_CAPABILITY_MAPPED_RAM, "mapped-ram writes RAM to fixed "
          "places in the file, which the swapper's pages bypass" },
        { MIGRATION_CAPABILITY_X_COLO, "COLO keeps a copy of guest RAM" },
    };
    MigrationCapabilityStatusList *caps, *c;
    bool ok = true;
    size_t i;

    caps = qmp_query_migrate_capabilities(NULL);
    for (c = caps; c && ok; c = c->next) {
        if (!c->value->state) {
            continue;
        }
        for (i = 0; i < ARRAY_SIZE(refused); i++) {
            if (c->value->capability == refused[i].cap) {
                error_setg(errp, "tesseract-swapper '%s': migration "
                           "capability '%s' is not supported: %s",
                           object_get_canonical_path_component(OBJECT(sw)),
                           MigrationCapability_str(refused[i].cap),
                           refused[i].why);
                ok = false;
                break;
            }
        }
    }
    qapi_free_MigrationCapabilityStatusList(caps);
    return ok;
}

/*
 * Whether page @idx is in RAM (under sw->lock): not swapped out or being
 * swapped, and populated (a page never touched, given back by the guest
 * or swapped out as zeroes is not: it reads as zeroes, through a fault)
 */
static bool tsw_migrate_in_ram(TesseractSwapper *sw, uint64_t idx)
{
    return sw->pages[idx].state == PG_RESIDENT &&
           tsr_policy_is_resident(sw->policy, idx);
}

/*
 * RAM's section is about to read page @offset of @rb (the migration
 * thread, once per dirty page): take it over unless it is in RAM.  Most
 * dirty pages are in RAM, and answered without sw->lock: a page that
 * leaves RAM just after is read by RAM's section like one that leaves
 * after the lock is dropped (and faulted in, counted in
 * migration-faults); one that enters RAM just after is taken and sent
 * from RAM by the swapper's section.
 */
static bool tsw_migrate_elsewhere(void *opaque, RAMBlock *rb,
                                  uint64_t offset)
{
    TesseractSwapper *sw = opaque;
    uint64_t idx = offset / TSW_PAGE;
    bool mine = false;

    if (idx >= sw->npages) {
        return false;
    }
    if (qatomic_read(&sw->pages[idx].state) == PG_RESIDENT &&
        tsr_policy_is_resident(sw->policy, idx)) {
        return false;
    }
    qemu_mutex_lock(&sw->lock);
    if (sw->mig_send && !tsw_migrate_in_ram(sw, idx)) {
        /* sent from the BSST, and not in RAM since: unchanged */
        if (!test_bit(idx, sw->mig_sent) &&
            !test_and_set_bit(idx, sw->mig_send)) {
            sw->mig_pending++;
        }
        mine = true;
    }
    qemu_mutex_unlock(&sw->lock);
    return mine;
}

static bool tsw_migrate_is_active(void *opaque)
{
    TesseractSwapper *sw = opaque;

    return sw->attached;
}

/*
 * Whether @f goes to a QEMU that loads it as it arrives: a socket (or TLS
 * over one).  Blocks outlive the stream only while nobody else writes
 * the BSST: what goes to a file, a pipe or a command (savevm, 'virsh
 * save', 'exec:') may be loaded long after, so it gets contents.
 */
static bool tsw_migrate_to_live_peer(QEMUFile *f)
{
    QIOChannel *ioc = qemu_file_get_ioc(f);

    if (object_dynamic_cast(OBJECT(ioc), TYPE_QIO_CHANNEL_TLS)) {
        ioc = QIO_CHANNEL_TLS(ioc)->master;
    }
    return object_dynamic_cast(OBJECT(ioc), TYPE_QIO_CHANNEL_SOCKET);
}

/*
 * The source's figures, in the order of TesseractMigrationStats: pages
 * sent, blocks sent, zero pages sent, faults, BSST reads.  Under sw->lock.
 */
static void tsw_migrate_figures_locked(TesseractSwapper *sw, uint64_t *f)
{
    f[0] = sw->mig_sent_bsst;
    f[1] = sw->mig_sent_loc;
    f[2] = sw->mig_sent_zero;
    f[3] = sw->mig_faults;
    f[4] = sw->mig_reads;
}

/*
 * query-migrate's "tesseract" member: every swapper's figures for the
 * outgoing migration (since it started), or for the incoming one
 */
static void tsw_migrate_info(MigrationInfo *info, bool incoming)
{
    TesseractMigrationStats *st = g_new0(TesseractMigrationStats, 1);
    ObjectPropertyIterator iter;
    ObjectProperty *prop;
    bool any = false;

    object_property_iter_init(&iter, object_get_objects_root());
    while ((prop = object_property_iter_next(&iter))) {
        Object *obj;
        TesseractSwapper *sw;
        uint64_t now[6], i;

        if (!strstart(prop->type, "child<", NULL)) {
            continue;
        }
        obj = object_resolve_path_component(object_get_objects_root(),
                                            prop->name);
        sw = obj ? (TesseractSwapper *)object_dynamic_cast(
                       obj, TYPE_TESSERACT_SWAPPER) : NULL;
        if (!sw || !sw->attached) {
            continue;
        }
        any = true;
        qemu_mutex_lock(&sw->lock);
        if (incoming) {
            st->pages_received += sw->mig_received;
            st->pages_adopted += sw->mig_adopted;
        } else {
            tsw_migrate_figures_locked(sw, now);
            for (i = 0; i < 5; i++) {
                now[i] -= sw->mig_base[i];
            }
            st->pages_sent += now[0];
            st->blocks_sent += now[1];
            st->zero_pages_sent += now[2];
            st->faults += now[3];
            st->bsst_reads += now[4];
            /* RAM's section: an 8-byte header and the page; a block: 16 */
            st->bytes_saved += now[1] * (8 + TSW_PAGE - TSW_MIG_BLOCK_BYTES);
        }
        qemu_mutex_unlock(&sw->lock);
    }
    if (!any) {
        g_free(st);
        return;
    }
    info->tesseract = st;
}

/* A page this section sends next (tsw_migrate_send()) */
typedef struct TswMigPage {
    uint64_t idx;
    uint32_t host_blk;      /* TSW_MIG_SWAPPED, _ITS_BLOCK: pinned */
    uint32_t bblock;        /* TSW_MIG_ITS_BLOCK */
    uint8_t kind;
} TswMigPage;

static int tsw_migrate_save_setup(QEMUFile *f, void *opaque, Error **errp)
{
    TesseractSwapper *sw = opaque;
    QemuUUID uuid;
    uint64_t i;

    if (!tsw_migrate_check_caps(sw, errp)) {
        return -ENOTSUP;
    }
    if (!sw->mig_gather) {
        sw->mig_gather = g_new(TswMigPage, TSW_MIG_GATHER);
        sw->mig_buf = qemu_memalign(TSW_PAGE, TSW_MIG_SPAN * TSW_PAGE);
    }
    qemu_mutex_lock(&sw->lock);
    g_free(sw->mig_send);
    g_free(sw->mig_sent);
    sw->mig_send = bitmap_new(sw->npages);
    sw->mig_sent = bitmap_new(sw->npages);
    sw->mig_pending = 0;
    /*
     * Every page not in RAM now is this section's: RAM's first pass would
     * hand each over anyway, and knowing them all at once lets their
     * reads go in the BSST's order (those in the middle of a swap-out or
     * swap-in are handed over when RAM's pass reaches them)
     */
    for (i = 0; i < sw->npages; i++) {
        if ((sw->pages[i].state == PG_SWAPPED ||
             sw->pages[i].state == PG_SILENT ||
             sw->pages[i].state == PG_RESIDENT) &&
            !tsw_migrate_in_ram(sw, i)) {
            set_bit(i, sw->mig_send);
            sw->mig_pending++;
        }
    }
    /* the thread that reads RAM for the migration (or savevm's) */
    sw->mig_tid = qemu_get_thread_id();
    tsw_migrate_figures_locked(sw, sw->mig_base);
    sw->mig_shared = qatomic_read(&sw->shared_bsst) &&
                     !runstate_check(RUN_STATE_SAVE_VM) &&
                     tsw_migrate_to_live_peer(f);
    if (!sw->mig_held) {
        sw->mig_held = g_array_new(false, false, sizeof(uint32_t));
    }
    qemu_mutex_unlock(&sw->lock);
    /*
     * The UUID sent is on disk: a destination that opened this image
     * blank by mistake sees it there before it writes (private BSST)
     */
    bsst_store_format_now(sw->store);
    bsst_store_uuid(sw->store, &uuid);
    if (sw->mig_shared) {
        qemu_put_be64(f, TSW_MIG_SHARED);
    }
    qemu_put_be64(f, TSW_MIG_UUID);
    qemu_put_buffer(f, uuid.data, sizeof(uuid.data));
    qemu_put_be64(f, TSW_MIG_EOS);
    return 0;
}

static void tsw_migrate_save_cleanup(void *opaque)
{
    TesseractSwapper *sw = opaque;
    g_autoptr(GArray) held = NULL;
    guint i;

    qemu_mutex_lock(&sw->lock);
    held = g_steal_pointer(&sw->mig_held);
    sw->mig_shared = false;
    g_free(sw->mig_send);
    g_free(sw->mig_sent);
    sw->mig_send = NULL;
    sw->mig_sent = NULL;
    sw->mig_pending = 0;
    sw->mig_tid = 0;
    qemu_mutex_unlock(&sw->lock);
    /* the blocks sent: the destination has them now, or the source again */
    for (i = 0; held && i < held->len; i++) {
        bsst_store_unref(sw->store, g_array_index(held, uint32_t, i));
    }
    g_free(sw->mig_gather);
    qemu_vfree(sw->mig_buf);
    sw->mig_gather = NULL;
    sw->mig_buf = NULL;
}

/*
 * TSW_MIG_ITS_BLOCK: swapped out, its block sent (mig_shared);
 * TSW_MIG_SILENT: swapped out silently, read from its guest disk
 */
enum { TSW_MIG_SWAPPED, TSW_MIG_IN_RAM, TSW_MIG_ZEROES, TSW_MIG_ITS_BLOCK,
       TSW_MIG_SILENT };

static int tsw_mig_page_cmp(const void *a, const void *b)
{
    const TswMigPage *x = a, *y = b;

    return x->host_blk < y->host_blk ? -1 : x->host_blk > y->host_blk;
}

/*
 * Take up to TSW_MIG_GATHER pages of mig_send into @pg (under sw->lock);
 * swapped-out ones are pinned.  A page in the middle of a swap-out or
 * swap-in is left for later (*@settling).  Returns how many.
 */
static int tsw_migrate_gather(TesseractSwapper *sw, TswMigPage *pg,
                              bool *settling)
{
    uint64_t idx = 0;
    int n = 0;

    while (n < TSW_MIG_GATHER) {
        TswPage *p;

        idx = find_next_bit(sw->mig_send, sw->npages, idx);
        if (idx >= sw->npages) {
            break;
        }
        p = &sw->pages[idx];
        if (p->state == PG_SWAPPED && tsw_pin_locked(sw, p)) {
            /* pinned: its block stays while it is read (or held) */
            pg[n].kind = sw->mig_shared && p->host_blk != TSW_NO_HOST ?
                         TSW_MIG_ITS_BLOCK : TSW_MIG_SWAPPED;
            pg[n].host_blk = p->host_blk;
            pg[n].bblock = p->bblock;
            set_bit(idx, sw->mig_sent);
        } else if (p->state == PG_SILENT) {
            /* read from its disk: tsw_migrate_send_silent() */
            pg[n].kind = TSW_MIG_SILENT;
        } else if (p->state == PG_RESIDENT) {
            if (tsw_migrate_in_ram(sw, idx)) {
                /* (a write after the copy dirties it: not mig_sent) */
                pg[n].kind = TSW_MIG_IN_RAM;
            } else {
                pg[n].kind = TSW_MIG_ZEROES;
                set_bit(idx, sw->mig_sent);
            }
        } else {
            *settling = true;
            idx++;
            continue;
        }
        pg[n++].idx = idx;
        clear_bit(idx, sw->mig_send);
        sw->mig_pending--;
        idx++;
    }
    return n;
}

/*
 * Unpin the swapped-out page @idx that was read, or whose block was sent
 * (@block), or neither (@ret < 0)
 */
static void tsw_migrate_unpin(TesseractSwapper *sw, uint64_t idx, int ret,
                              bool block)
{
    uint32_t unref;

    qemu_mutex_lock(&sw->lock);
    unref = tsw_unpin_locked(sw, idx);
    if (ret < 0) {
        /* still to send */
        clear_bit(idx, sw->mig_sent);
        if (!test_and_set_bit(idx, sw->mig_send)) {
            sw->mig_pending++;
        }
    } else if (block) {
        sw->mig_sent_loc++;
    } else {
        sw->mig_sent_bsst++;
        sw->bytes_read += TSW_PAGE;
    }
    qemu_mutex_unlock(&sw->lock);
    if (unref != UINT32_MAX) {
        bsst_store_unref(sw->store, unref);
    }
    trace_tsw_migrate_send(idx, true, false);
}

/*
 * Send the swapped-out pages @pg[0..@n) (sorted by block), read from the
 * BSST's host file: one read covers pages whose blocks lie close
 * together (at most TSW_MIG_SPAN blocks, gaps of at most TSW_MIG_GAP),
 * as host swap's readahead would.  With @paced, stops reading once the
 * stream's rate limit is used up (*@stopped).  Returns 0 or a negative
 * errno (the pages not sent, whatever the reason, are marked to send
 * again).
 */
static int tsw_migrate_send_swapped(TesseractSwapper *sw, QEMUFile *f,
                                    TswMigPage *pg, int n, uint8_t *buf,
                                    bool paced, bool *stopped)
{
    int i = 0, j, k, ret = 0;

    while (i < n) {
        uint32_t first = pg[i].host_blk;

        for (j = i; j + 1 < n &&
             pg[j + 1].host_blk - first < TSW_MIG_SPAN &&
             pg[j + 1].host_blk - pg[j].host_blk <= TSW_MIG_GAP; j++) {
            /* extend the span */
        }
        if (ret == 0 && paced && migration_rate_exceeded(f)) {
            *stopped = true;
        }
        if (ret == 0 && !*stopped) {
            tsw_io_enter(sw, TSW_IO_NOW);
            ret = tsw_pread(sw, buf,
                            (size_t)(pg[j].host_blk - first + 1) * TSW_PAGE,
                            (int64_t)first * TSW_PAGE);
            tsw_io_leave(sw);
            qemu_mutex_lock(&sw->lock);
            sw->mig_reads++;
            qemu_mutex_unlock(&sw->lock);
        }
        for (k = i; k <= j; k++) {
            if (ret == 0 && !*stopped) {
                qemu_put_be64(f, pg[k].idx * TSW_PAGE | TSW_MIG_DATA);
                qemu_put_buffer(f, buf + (size_t)(pg[k].host_blk - first) *
                                TSW_PAGE, TSW_PAGE);
            }
            tsw_migrate_unpin(sw, pg[k].idx, *stopped ? -EAGAIN : ret,
                              false);
        }
        i = j + 1;
    }
    return ret;
}

/*
 * Send silent page @idx read from its guest disk, unless @err (an earlier
 * page failed) or the stream's rate limit is used up (@paced,
 * *@stopped): those are marked to send again, as is a page that is no
 * longer silent (sent as what it is now).  The page is held
 * (PG_SWAPPING_IN, from its disk) while its block is read: a change of
 * the block waits (tsw_silent_preserve() finds it busy), a fault waits.
 * Not read through RAM: a block that cannot be read would park that
 * fault, and this thread with it.  It stays swapped out, unless its node
 * closed meanwhile (PG_PRESERVING): then it comes back into RAM, or,
 * unreadable, is lost as tsw_silent_forget() loses those it cannot read.
 * Returns 0 or a negative errno.
 */
static int tsw_migrate_send_silent(TesseractSwapper *sw, QEMUFile *f,
                                   uint64_t idx, uint8_t *buf, int err,
                                   bool paced, bool *stopped)
{
    const char *id = object_get_canonical_path_component(OBJECT(sw));
    TswPage *pg = &sw->pages[idx];
    g_autofree char *path = NULL;
    bool back, placing, held = false;
    int ret = err;

    if (!ret && paced && migration_rate_exceeded(f)) {
        *stopped = true;
    }
    qemu_mutex_lock(&sw->lock);
    if (!ret && !*stopped && pg->state == PG_SILENT) {
        pg->state = PG_SWAPPING_IN;
        held = true;
    } else if (!test_and_set_bit(idx, sw->mig_send)) {
        sw->mig_pending++;
    }
    qemu_mutex_unlock(&sw->lock);
    if (!held) {
        return ret;
    }

    ret = tsw_silent_pread(sw, idx, buf);
    if (ret == 0) {
        qemu_put_be64(f, idx * TSW_PAGE | TSW_MIG_DATA);
        qemu_put_buffer(f, buf, TSW_PAGE);
    }
    qemu_mutex_lock(&sw->lock);
    back = pg->flags & PG_PRESERVING;
    if (ret == 0) {
        set_bit(idx, sw->mig_sent);
        sw->mig_sent_bsst++;
    } else if (!test_and_set_bit(idx, sw->mig_send)) {
        sw->mig_pending++;
    }
    if (ret < 0) {
        path = tsw_silent_path_locked(sw, idx);
    }
    if (back && ret < 0) {
        pg->flags &= ~PG_PRESERVING;
        tsw_silent_drop_locked(sw, idx);
    }
    qemu_mutex_unlock(&sw->lock);
    if (back && ret < 0) {
        uffd_wakeup(sw->uffd, sw->host + idx * TSW_PAGE, TSW_PAGE);
        error_report("tesseract-swapper '%s': page %" PRIu64 ", swapped "
                     "out silently on '%s', whose node closed, could not "
                     "be read back: %s; the guest reads zeroes there", id,
                     idx, path, strerror(-ret));
    } else if (!back || tsw_swap_in(sw, idx, buf, true, &placing) < 0) {
        tsw_swap_in_abandon(sw, idx);
    }
    if (ret < 0) {
        error_report("tesseract-swapper '%s': cannot read page %" PRIu64
                     " for the migration from guest disk '%s', where it "
                     "was swapped out silently: %s", id, idx, path,
                     strerror(-ret));
    }
    trace_tsw_migrate_send(idx, true, false);
    return ret;
}

/*
 * Send pinned page @pg's block for the destination to adopt (mig_shared):
 * referenced once more until the migration ends, so that the source
 * does not reuse it meanwhile.  False if it cannot be held.
 */
static bool tsw_migrate_send_block(TesseractSwapper *sw, QEMUFile *f,
                                   TswMigPage *pg)
{
    if (bsst_store_ref(sw->store, pg->bblock) < 0) {
        return false;
    }
    qemu_put_be64(f, pg->idx * TSW_PAGE | TSW_MIG_BLOCK);
    qemu_put_be32(f, pg->bblock);
    qemu_put_be32(f, pg->host_blk);
    qemu_mutex_lock(&sw->lock);
    g_array_append_val(sw->mig_held, pg->bblock);
    qemu_mutex_unlock(&sw->lock);
    tsw_migrate_unpin(sw, pg->idx, 0, true);
    return true;
}

/*
 * Send the pages of mig_send, at most about @max of them (a batch more),
 * or (@paced) until the stream's rate limit is used up; a page in the
 * middle of a swap-out or swap-in is left for later (*@settling).
 * Returns the number gathered, or a negative errno (the BSST cannot be
 * read).
 */
static int64_t tsw_migrate_send(TesseractSwapper *sw, QEMUFile *f,
                                uint64_t max, bool paced, bool *settling)
{
    bool stopped = false;
    TswMigPage *pg = sw->mig_gather;
    uint8_t *buf = sw->mig_buf;
    uint64_t sent = 0;
    int n, i, nswapped, ret, err;

    *settling = false;
    while (sent < max && !(paced && migration_rate_exceeded(f))) {
        qemu_mutex_lock(&sw->lock);
        n = tsw_migrate_gather(sw, pg, settling);
        qemu_mutex_unlock(&sw->lock);
        if (!n) {
            break;
        }
        /* the others first (not under the lock: RAM may fault) */
        nswapped = 0;
        err = 0;
        for (i = 0; i < n; i++) {
            if (pg[i].kind == TSW_MIG_SILENT) {
                err = tsw_migrate_send_silent(sw, f, pg[i].idx, buf, err,
                                              paced, &stopped);
                continue;
            }
            if (pg[i].kind == TSW_MIG_ITS_BLOCK) {
                if (tsw_migrate_send_block(sw, f, &pg[i])) {
                    continue;
                }
                pg[i].kind = TSW_MIG_SWAPPED;   /* cannot hold: contents */
            }
            if (pg[i].kind == TSW_MIG_SWAPPED) {
                pg[nswapped++] = pg[i];
                continue;
            }
            if (pg[i].kind == TSW_MIG_ZEROES) {
                qemu_put_be64(f, pg[i].idx * TSW_PAGE | TSW_MIG_ZERO);
            } else {
                /*
                 * Swapped in since RAM's section handed it over: any write
                 * after this copy dirties it again
                 */
                memcpy(buf, sw->host + pg[i].idx * TSW_PAGE, TSW_PAGE);
                qemu_put_be64(f, pg[i].idx * TSW_PAGE | TSW_MIG_DATA);
                qemu_put_buffer(f, buf, TSW_PAGE);
            }
            qemu_mutex_lock(&sw->lock);
            if (pg[i].kind == TSW_MIG_ZEROES) {
                sw->mig_sent_zero++;
            } else {
                sw->mig_sent_ram++;
            }
            qemu_mutex_unlock(&sw->lock);
            trace_tsw_migrate_send(pg[i].idx, false,
                                   pg[i].kind == TSW_MIG_ZEROES);
        }
        qsort(pg, nswapped, sizeof(*pg), tsw_mig_page_cmp);
        ret = tsw_migrate_send_swapped(sw, f, pg, nswapped, buf, paced,
                                       &stopped);
        if (ret < 0 || err < 0) {
            return ret < 0 ? ret : err;
        }
        sent += n;
        if (stopped) {
            break;
        }
    }
    return sent;
}

static int tsw_migrate_save_iterate(QEMUFile *f, void *opaque)
{
    TesseractSwapper *sw = opaque;
    bool settling;
    int64_t ret;

    ret = tsw_migrate_send(sw, f, TSW_MIG_ROUND, true, &settling);
    qemu_put_be64(f, TSW_MIG_EOS);
    if (ret < 0) {
        error_report("tesseract-swapper '%s': cannot read a swapped-out "
                     "page for the migration: %s",
                     object_get_canonical_path_component(OBJECT(sw)),
                     strerror(-ret));
        return ret;
    }
    if (qatomic_read(&sw->mig_hold) && tsw_migrate_to_live_peer(f)) {
        if (!ret) {
            g_usleep(10 * 1000);    /* held: the thread would spin */
        }
        return 0;
    }
    qemu_mutex_lock(&sw->lock);
    ret = !sw->mig_pending;
    qemu_mutex_unlock(&sw->lock);
    return ret;
}

/*
 * The VM is stopped: send every page left.  A swap-out or swap-in under
 * way when it stopped ends soon (or fails, and is retried); wait for
 * those, up to TSW_MIG_SETTLE_MS.
 */
static int tsw_migrate_save_complete(QEMUFile *f, void *opaque)
{
    TesseractSwapper *sw = opaque;
    int64_t deadline = get_clock() + (int64_t)TSW_MIG_SETTLE_MS * SCALE_MS;
    bool settling;
    int64_t ret;

    for (;;) {
        ret = tsw_migrate_send(sw, f, UINT64_MAX, false, &settling);
        if (ret < 0 || !settling) {
            break;
        }
        if (get_clock() > deadline) {
            ret = -ETIMEDOUT;
            break;
        }
        g_usleep(1000);
    }
    qemu_put_be64(f, TSW_MIG_EOS);
    if (ret < 0) {
        error_report("tesseract-swapper '%s': cannot send its swapped-out "
                     "pages: %s", object_get_canonical_path_component(
                         OBJECT(sw)),
                     ret == -ETIMEDOUT ? "a page stayed in the middle of a "
                     "swap-out or swap-in" : strerror(-ret));
        return ret;
    }
    return 0;
}

static void tsw_migrate_pending(void *opaque, uint64_t *must_precopy,
                                uint64_t *can_postcopy)
{
    TesseractSwapper *sw = opaque;

    qemu_mutex_lock(&sw->lock);
    *must_precopy += sw->mig_pending * TSW_PAGE;
    qemu_mutex_unlock(&sw->lock);
    if (qatomic_read(&sw->mig_hold)) {
        /* x-hold-migration: never below the switchover's threshold */
        *must_precopy += 1ULL << 40;
    }
}

/*
 * The BSST node, active now, is this QEMU's own: its superblocks on disk
 * are still blank or this store's, not the source's (which formats its
 * own before it sends its UUID: another host may have written the image
 * since this QEMU opened it).  The source's image fails the migration.
 */
static bool tsw_migrate_own_bsst(TesseractSwapper *sw)
{
    const char *id = object_get_canonical_path_component(OBJECT(sw));
    QemuUUID disk, mine;
    int ret = bsst_store_read_disk_uuid(sw->store, &disk);

    bsst_store_uuid(sw->store, &mine);
    if (ret < 0) {
        warn_report("tesseract-swapper '%s': cannot read BSST node '%s' "
                    "(%s): the limit applies once the VM runs", id, sw->bsst,
                    strerror(-ret));
        return false;
    }
    if (ret == 1 && qemu_uuid_is_equal(&disk, &sw->mig_src_uuid)) {
        g_autofree char *u = qemu_uuid_unparse_strdup(&disk);

        error_report("tesseract-swapper '%s': BSST node '%s' is the "
                     "migration source's BSST (UUID %s, written since this "
                     "QEMU opened it); the destination needs a BSST image "
                     "of its own, or the source shared-bsst=on", id,
                     sw->bsst, u);
        qatomic_set(&sw->mig_load_error, -EEXIST);
        return false;
    }
    if (ret == 1 && !qemu_uuid_is_equal(&disk, &mine)) {
        warn_report("tesseract-swapper '%s': BSST node '%s' changed since "
                    "this QEMU opened it: the limit applies once the VM "
                    "runs", id, sw->bsst);
        return false;
    }
    return true;
}

/*
 * An incoming migration, and the BSST is this QEMU's own (not the
 * source's: the UUIDs differ), so it may be written before the
 * switchover: activate it (QEMU opened it inactive, like every node of a
 * destination), so that the swapper keeps the limit as pages arrive
 * rather than once the VM runs.  The guest's disks stay inactive.
 */
static void tsw_migrate_incoming_bh(void *opaque)
{
    TesseractSwapper *sw = opaque;
    BlockDriverState *bs;
    Error *err = NULL;
    int ret = -ENOENT;

    if (runstate_check(RUN_STATE_INMIGRATE) && sw->attached) {
        bdrv_graph_rdlock_main_loop();
        bs = bdrv_find_node(sw->bsst);
        if (bs) {
            /* (on one host, the image lock fails this for the source's) */
            ret = bdrv_activate(bs, &err);
        }
        bdrv_graph_rdunlock_main_loop();
        if (ret < 0 && err) {
            warn_reportf_err(err, "tesseract-swapper '%s': BSST node '%s' "
                             "stays inactive until the switchover, and the "
                             "limit applies once the VM runs: ",
                             object_get_canonical_path_component(OBJECT(sw)),
                             sw->bsst);
        } else if (ret >= 0 && tsw_migrate_own_bsst(sw)) {
            trace_tsw_migrate_incoming_active(sw->bsst);
            qatomic_set(&sw->incoming_swap, true);
            qemu_sem_post(&sw->kick);
        }
    }
    object_unref(OBJECT(sw));
}

/* The source's BSST UUID @src arrived: whether this side may go on */
static int tsw_migrate_check_uuid(TesseractSwapper *sw, const QemuUUID *src,
                                  bool shared)
{
    const char *id = object_get_canonical_path_component(OBJECT(sw));
    g_autofree char *su = qemu_uuid_unparse_strdup(src);
    g_autofree char *mu = NULL;
    QemuUUID mine;

    bsst_store_uuid(sw->store, &mine);
    mu = qemu_uuid_unparse_strdup(&mine);
    sw->mig_shared = shared;
    sw->mig_src_uuid = *src;
    qatomic_set(&sw->mig_load_error, 0);
    if (shared && !qemu_uuid_is_equal(src, &mine)) {
        if (bsst_store_opened_blank(sw->store)) {
            error_report("tesseract-swapper '%s': the source shares its "
                         "BSST (UUID %s), but BSST node '%s' was blank when "
                         "this QEMU opened it: start the destination after "
                         "the source's swapper formatted it (with "
                         "shared-bsst=on it does at once)", id, su, sw->bsst);
        } else {
            error_report("tesseract-swapper '%s': the source shares its "
                         "BSST (UUID %s), but BSST node '%s' here is another "
                         "image (UUID %s): open the source's image, or turn "
                         "shared-bsst off on the source", id, su, sw->bsst,
                         mu);
        }
        return -EINVAL;
    }
    /*
     * The source's own image, not shared: its pages arrive whole, and the
     * image is the source's until the switchover (a restore from a file
     * finds the image its source left).  (A BSST not formatted yet has no
     * UUID; loadvm restores this QEMU's own snapshot, with its own BSST.)
     */
    if (!shared && runstate_check(RUN_STATE_INMIGRATE) &&
        !qemu_uuid_is_null(&mine) && qemu_uuid_is_equal(src, &mine)) {
        trace_tsw_migrate_same_bsst(sw->bsst, mu);
        return 0;
    }
    if (!shared && runstate_check(RUN_STATE_INMIGRATE)) {
        /* from the main loop, out of the incoming coroutine */
        object_ref(OBJECT(sw));
        aio_bh_schedule_oneshot(qemu_get_aio_context(),
                                tsw_migrate_incoming_bh, sw);
    }
    return 0;
}

/* Page @idx, its block set, is swapped out (under sw->lock) */
static void tsw_migrate_adopted_locked(TesseractSwapper *sw, uint64_t idx)
{
    TswPage *p = &sw->pages[idx];

    if (p->state == PG_DISCARDING) {
        tsw_discarding_end(sw, p, PG_SWAPPED);
    } else {
        p->state = PG_SWAPPED;
    }
    sw->swapped++;
    sw->mig_adopted++;
    sw->mig_drop_cache = true;
    tsr_policy_set_resident(sw->policy, idx, false);
}

/*
 * Shared BSST: page @idx is swapped out in block @bblock (@host_blk in
 * the BSST's host file), which the source wrote: adopt it.  Whatever the
 * page held here (an older copy, in RAM or adopted) goes.
 */
static int tsw_migrate_adopt(TesseractSwapper *sw, uint64_t idx,
                             uint32_t bblock, uint32_t host_blk)
{
    const char *id = object_get_canonical_path_component(OBJECT(sw));
    TswPage *p = &sw->pages[idx];
    uint32_t old = UINT32_MAX;
    bool in_ram;
    int ret;

    if (!sw->mig_shared) {
        error_report("tesseract-swapper '%s': a BSST block arrived for "
                     "page %" PRIu64 ", but the source did not say it "
                     "shares its BSST", id, idx);
        return -EINVAL;
    }
    ret = bsst_store_adopt_block(sw->store, bblock);
    if (ret < 0) {
        error_report("tesseract-swapper '%s': cannot adopt block %" PRIu32
                     " of BSST node '%s' for page %" PRIu64 ": %s", id,
                     bblock, sw->bsst, idx, ret == -EBUSY ?
                     "this QEMU's store uses it (it opened the image before "
                     "the source last changed it?)" : strerror(-ret));
        return ret;
    }
    qemu_mutex_lock(&sw->lock);
    in_ram = tsw_migrate_in_ram(sw, idx);
    if (p->state == PG_SWAPPED) {
        old = p->bblock;
        sw->swapped--;
    } else if (p->state != PG_RESIDENT) {
        qemu_mutex_unlock(&sw->lock);
        bsst_store_drop_adopted(sw->store, bblock);
        error_report("tesseract-swapper '%s': page %" PRIu64 " is busy "
                     "(state %d) in an incoming migration", id, idx,
                     p->state);
        return -EBUSY;
    }
    /* its block first: a fault that sees the state reads it */
    p->bblock = bblock;
    p->host_blk = host_blk;
    p->flags &= ~PG_ZEROED;
    if (in_ram) {
        /* a fault waits until tsw_discarding_end() */
        p->state = PG_DISCARDING;
    } else {
        tsw_migrate_adopted_locked(sw, idx);
    }
    qemu_mutex_unlock(&sw->lock);
    if (old != UINT32_MAX) {
        bsst_store_drop_adopted(sw->store, old);
    }
    if (in_ram) {
        /* an older copy RAM's section sent */
        ret = tsw_discard(sw, idx);
        qemu_mutex_lock(&sw->lock);
        if (ret < 0) {
            tsw_discarding_end(sw, p, PG_RESIDENT);
        } else {
            tsw_migrate_adopted_locked(sw, idx);
        }
        qemu_mutex_unlock(&sw->lock);
        uffd_wakeup(sw->uffd, sw->host + idx * TSW_PAGE, TSW_PAGE);
        if (ret < 0) {
            bsst_store_drop_adopted(sw->store, bblock);
            error_report("tesseract-swapper '%s': cannot drop page %" PRIu64
                         " from RAM: %s", id, idx, strerror(-ret));
            return ret;
        }
    }
    return 0;
}

/*
 * Page @idx arrives whole (this section's data or zero record): a copy
 * of it swapped out here (a block adopted from the source, or under
 * loadvm this swapper's own) goes at once, and the page reads as zeroes
 * until it is placed.  Not faulted in first: no BSST read (whose failure
 * would leave the loading thread waiting for the BSST), none from a
 * block the source may not have flushed yet.
 */
static void tsw_migrate_drop_swapped(TesseractSwapper *sw, uint64_t idx)
{
    TswPage *p = &sw->pages[idx];
    uint32_t old = UINT32_MAX;
    bool adopted = false;

    qemu_mutex_lock(&sw->lock);
    if (p->state == PG_SWAPPED && !p->pins && !p->holds) {
        old = p->bblock;
        adopted = sw->mig_shared;
        p->state = PG_RESIDENT;     /* not resident in the policy: zeroes */
        p->host_blk = TSW_NO_HOST;
        sw->swapped--;
    }
    qemu_mutex_unlock(&sw->lock);
    if (old == UINT32_MAX) {
        return;
    }
    if (adopted) {
        bsst_store_drop_adopted(sw->store, old);
    } else {
        bsst_store_unref(sw->store, old);
    }
}

/*
 * Place @data in page @idx if it is not in RAM and reads as zeroes (on a
 * destination, every page the stream brings first): in one
 * UFFDIO_COPY, instead of a write that faults and waits for the fault
 * thread to map a zero page first.  False if it is not such a page (or
 * was placed meanwhile): the caller writes it.
 */
static bool tsw_migrate_place(TesseractSwapper *sw, uint64_t idx,
                              const void *data)
{
    TswPage *p = &sw->pages[idx];
    uint8_t *addr = sw->host + idx * TSW_PAGE;
    bool fresh;

    qemu_mutex_lock(&sw->lock);
    fresh = p->state == PG_RESIDENT &&
            !tsr_policy_is_resident(sw->policy, idx);
    qemu_mutex_unlock(&sw->lock);
    if (!fresh || tsw_place_wake(sw, addr, data, true) < 0) {
        return false;
    }
    qemu_mutex_lock(&sw->lock);
    tsw_placed_locked(sw, idx);
    qemu_mutex_unlock(&sw->lock);
    uffd_wakeup(sw->uffd, addr, TSW_PAGE);
    return true;
}

/* Destination (or loadvm): put the pages where they belong */
static int tsw_migrate_load(QEMUFile *f, void *opaque, int version_id)
{
    TesseractSwapper *sw = opaque;
    uint8_t *buf;
    bool shared = false;
    uint64_t n = 0;
    int err = qatomic_read(&sw->mig_load_error);

    if (err < 0) {
        return err;     /* tsw_migrate_own_bsst() said why */
    }
    /* loadvm: the disks were reverted under the hints */
    tsw_silent_forget_all(sw);

    for (;;) {
        uint64_t w = qemu_get_be64(f), off = w & ~(uint64_t)TSW_MIG_FLAGS;
        int ret = qemu_file_get_error(f);
        uint8_t *host;

        if (ret < 0) {
            return ret;
        }
        if (w == TSW_MIG_EOS) {
            break;
        }
        if (w == TSW_MIG_SHARED) {
            shared = true;
            continue;
        }
        if (w == TSW_MIG_UUID) {
            QemuUUID src;

            qemu_get_buffer(f, src.data, sizeof(src.data));
            ret = tsw_migrate_check_uuid(sw, &src, shared);
            if (ret < 0) {
                return ret;
            }
            continue;
        }
        if (off / TSW_PAGE >= sw->npages ||
            ((w & TSW_MIG_FLAGS) != TSW_MIG_DATA &&
             (w & TSW_MIG_FLAGS) != TSW_MIG_ZERO &&
             (w & TSW_MIG_FLAGS) != TSW_MIG_BLOCK)) {
            error_report("tesseract-swapper '%s': bad page record 0x%" PRIx64
                         " in the migration stream (the guest RAM here has "
                         "%" PRIu64 " pages)",
                         object_get_canonical_path_component(OBJECT(sw)), w,
                         sw->npages);
            return -EINVAL;
        }
        /* an access here that faults is served like any other */
        host = sw->host + off;
        if (w & TSW_MIG_BLOCK) {
            uint32_t bblock = qemu_get_be32(f);
            uint32_t host_blk = qemu_get_be32(f);

            ret = qemu_file_get_error(f);
            if (ret == 0) {
                ret = tsw_migrate_adopt(sw, off / TSW_PAGE, bblock, host_blk);
            }
            if (ret < 0) {
                return ret;
            }
            n++;
            continue;
        }
        /* a newer copy of a swapped-out page: not read from its block */
        tsw_migrate_drop_swapped(sw, off / TSW_PAGE);
        if (w & TSW_MIG_DATA) {
            /* the swapper's: a QEMU that exits mid-load leaks nothing */
            if (!sw->mig_load_buf) {
                sw->mig_load_buf = g_malloc(TSW_PAGE);
            }
            buf = sw->mig_load_buf;
            qemu_get_buffer(f, buf, TSW_PAGE);
            if (!tsw_migrate_place(sw, off / TSW_PAGE, buf)) {
                memcpy(host, buf, TSW_PAGE);
            }
        } else {
            TswPage *p = &sw->pages[off / TSW_PAGE];
            bool zero;

            /*
             * A page never touched, given back, swapped out as zeroes or
             * just dropped reads as zeroes already; one busy in a
             * swap-out or swap-in is faulted in and cleared
             */
            qemu_mutex_lock(&sw->lock);
            zero = p->state == PG_RESIDENT &&
                   !tsr_policy_is_resident(sw->policy, off / TSW_PAGE);
            qemu_mutex_unlock(&sw->lock);
            if (!zero && !buffer_is_zero(host, TSW_PAGE)) {
                memset(host, 0, TSW_PAGE);
            }
        }
        n++;
    }
    qemu_mutex_lock(&sw->lock);
    sw->mig_received += n;
    qemu_mutex_unlock(&sw->lock);
    return qemu_file_get_error(f);
}

static const SaveVMHandlers tsw_migrate_handlers = {
    .save_setup = tsw_migrate_save_setup,
    .save_cleanup = tsw_migrate_save_cleanup,
    .save_live_iterate = tsw_migrate_save_iterate,
    .save_live_complete_precopy = tsw_migrate_save_complete,
    .state_pending_estimate = tsw_migrate_pending,
    .state_pending_exact = tsw_migrate_pending,
    .is_active = tsw_migrate_is_active,
    .load_state = tsw_migrate_load,
};

/*
 * shared-bsst=on: a destination opening the BSST must find the source's
 * UUID there, not a blank image, even before the first swap-out
 */
void tsw_format_shared(TesseractSwapper *sw)
{
    int ret = bsst_store_format_now(sw->store);

    /* (-EPERM: inactive, this is an incoming migration's destination) */
    if (ret < 0 && ret != -EPERM) {
        warn_report("tesseract-swapper '%s': cannot format BSST node '%s' "
                    "for shared-bsst: %s",
                    object_get_canonical_path_component(OBJECT(sw)),
                    sw->bsst, strerror(-ret));
    }
}

bool tsw_migrate_attach(TesseractSwapper *sw, Error **errp)
{
    if (migration_is_running()) {
        error_setg(errp, "tesseract-swapper: cannot take over guest RAM "
                   "while a migration is running");
        return false;
    }
    /* the RAM block's name: the same on both sides of a migration */
    sw->mig_idstr = g_strdup_printf("tesseract-swapper/%s", sw->rb->idstr);
    if (register_savevm_live(sw->mig_idstr, 0, 1, &tsw_migrate_handlers,
                             sw) < 0) {
        error_setg(errp, "tesseract-swapper: cannot register its migration "
                   "section '%s'", sw->mig_idstr);
        g_free(sw->mig_idstr);
        sw->mig_idstr = NULL;
        return false;
    }
    ram_block_set_migrate_elsewhere(sw->rb, tsw_migrate_elsewhere, sw);
    migration_set_tesseract_info_fn(tsw_migrate_info);
    return true;
}

void tsw_migrate_detach(TesseractSwapper *sw)
{
    if (!sw->mig_idstr) {
        return;
    }
    ram_block_set_migrate_elsewhere(sw->rb, NULL, NULL);
    unregister_savevm(NULL, sw->mig_idstr, sw);
    g_free(sw->mig_idstr);
    sw->mig_idstr = NULL;
    g_free(sw->mig_send);
    g_free(sw->mig_sent);
    sw->mig_send = NULL;
    sw->mig_sent = NULL;
    g_free(sw->mig_gather);
    qemu_vfree(sw->mig_buf);
    g_free(sw->mig_load_buf);
    sw->mig_gather = NULL;
    sw->mig_buf = NULL;
    sw->mig_load_buf = NULL;
}

/*
 * The VM stops for a migration's switchover, after which its block nodes
 * are inactive: no more BSST I/O from the swapper's threads (those under
 * way end in the drain that follows) until it runs again, here or, once
 * migrated, never.
 */
void tsw_migrate_vm_state(TesseractSwapper *sw, bool running, RunState state)
{
    bool drop_cache = false;

    qemu_mutex_lock(&sw->lock);
    if (running) {
        drop_cache = sw->mig_drop_cache;
        sw->mig_drop_cache = false;
        sw->mig_frozen = false;
        qemu_cond_broadcast(&sw->io_resume);
    } else if (state == RUN_STATE_FINISH_MIGRATE) {
        sw->mig_frozen = true;
        /* a requested swap-out waiting out a drain gives up now */
        qemu_cond_broadcast(&sw->io_resume);
    }
    qemu_mutex_unlock(&sw->lock);
    if (drop_cache && sw->direct_fd >= 0) {
        /*
         * Adopted blocks read before the switchover (whole pages RAM's
         * section then overwrote) may have left the host's page cache
         * with older contents than the source flushed at the switchover
         * (another host's writes): read them from the disk from now on
         */
        posix_fadvise(sw->direct_fd, 0, 0, POSIX_FADV_DONTNEED);
    }
}

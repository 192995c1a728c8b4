/*
 * Tesseract crash tests: an LD_PRELOAD recorder of host writes and flushes
 *
 * Loaded into QEMU, it interposes the libc calls through which QEMU's
 * file driver (aio=threads, cache.direct=off) changes files, and logs
 * each one that touches a recorded file, in one global order shared with
 * the workload driver (see crash-log.h):
 *
 *   pwrite, pwritev, pwritev2, write, writev   a write (data logged)
 *   fallocate PUNCH_HOLE / ZERO_RANGE          a write of zeroes
 *   fallocate (allocate), posix_fallocate      nothing (size only)
 *   ftruncate                                  a size change
 *   copy_file_range                            a write (data read back)
 *   fdatasync, fsync, syncfs, sync             a flush
 *   sync_file_range                            a hint, no durability
 *
 * Each operation gets a sequence number when it starts and another when
 * it returns, so replay.py knows which writes a flush covers (those that
 * completed before it started) and which were in flight at any instant.
 * I/O it cannot follow (a shared writable mapping, linux-aio, O_DIRECT,
 * O_DSYNC) is logged as TSR_REC_ESCAPE, which replay.py reports as a
 * failure of the test set-up.
 *
 * Environment:
 *   TSR_REC_FILES     colon-separated paths; a file's index is its place
 *   TSR_REC_LOG       the log, appended to (O_APPEND)
 *   TSR_REC_SEQ       the sequence counter file (>= 8 bytes, shared)
 *                     (without these two nothing is logged: the delays
 *                     below still apply)
 *   TSR_REC_DELAY_US  optional: a flush takes up to this long more (and
 *                     one write in two up to half of it), as on a
 *                     disk with a volatile cache; requests that complete
 *                     meanwhile race with it.  One value for every file,
 *                     or one per file: "N0:N1:...".
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <libaio.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include "crash-log.h"

/* the real functions */
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static ssize_t (*real_pwritev2)(int, const struct iovec *, int, off_t, int);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pread)(int, void *, size_t, off_t);
static int (*real_fdatasync)(int);
static int (*real_fsync)(int);
static int (*real_syncfs)(int);
static void (*real_sync)(void);
static int (*real_sync_file_range)(int, off_t, off_t, unsigned int);
static int (*real_fallocate)(int, int, off_t, off_t);
static int (*real_posix_fallocate)(int, off_t, off_t);
static int (*real_ftruncate)(int, off_t);
static ssize_t (*real_copy_file_range)(int, off_t *, int, off_t *, size_t,
                                       unsigned int);
static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static int (*real_io_submit)(io_context_t, long, struct iocb **);

static struct {
    bool active;
    int nfiles;
    dev_t dev[TSR_CRASH_MAX_FILES];
    ino_t ino[TSR_CRASH_MAX_FILES];
    int log_fd;
    uint64_t *seq;
    unsigned delay_us[TSR_CRASH_MAX_FILES];
} rec;

static pthread_once_t rec_once = PTHREAD_ONCE_INIT;

#define REAL(name) \
    do { \
        real_##name = dlsym(RTLD_NEXT, #name); \
    } while (0)

static void die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fprintf(stderr, "tsr-recorder: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

static void rec_init(void)
{
    const char *files = getenv("TSR_REC_FILES");
    const char *log = getenv("TSR_REC_LOG");
    const char *seq = getenv("TSR_REC_SEQ");
    const char *delay = getenv("TSR_REC_DELAY_US");
    char *list, *p, *save = NULL;
    int fd;

    REAL(pwrite);
    REAL(pwritev);
    REAL(pwritev2);
    REAL(write);
    REAL(writev);
    REAL(pread);
    REAL(fdatasync);
    REAL(fsync);
    REAL(syncfs);
    REAL(sync);
    REAL(sync_file_range);
    REAL(fallocate);
    REAL(posix_fallocate);
    REAL(ftruncate);
    REAL(copy_file_range);
    REAL(mmap);
    REAL(io_submit);     /* NULL unless libaio is loaded */

    if (!files) {
        return;         /* loaded but not asked to record: pass through */
    }
    list = strdup(files);
    for (p = strtok_r(list, ":", &save); p; p = strtok_r(NULL, ":", &save)) {
        struct stat st;

        if (rec.nfiles == TSR_CRASH_MAX_FILES) {
            die("more than %d files in TSR_REC_FILES", TSR_CRASH_MAX_FILES);
        }
        if (stat(p, &st) < 0) {
            die("cannot stat %s: %s", p, strerror(errno));
        }
        rec.dev[rec.nfiles] = st.st_dev;
        rec.ino[rec.nfiles] = st.st_ino;
        rec.nfiles++;
    }
    free(list);

    rec.log_fd = -1;
    if (!log || !seq) {
        goto delays;    /* only slow the files' I/O down */
    }
    rec.log_fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (rec.log_fd < 0) {
        die("cannot open %s: %s", log, strerror(errno));
    }
    fd = open(seq, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        die("cannot open %s: %s", seq, strerror(errno));
    }
    rec.seq = real_mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                        0);
    if (rec.seq == MAP_FAILED) {
        die("cannot map %s: %s", seq, strerror(errno));
    }
    close(fd);
delays:
    /* "N" for every file, or "N0:N1:..." per file */
    for (int i = 0; i < rec.nfiles && delay && *delay; i++) {
        char *end;

        /* a library of its own, not linked with QEMU's qemu_strtoul() */
        rec.delay_us[i] = strtoul(delay, &end, 10);
        delay = *end == ':' ? end + 1 : end;
        if (!*end) {
            while (++i < rec.nfiles) {
                rec.delay_us[i] = rec.delay_us[i - 1];
            }
        }
    }
    rec.active = true;
}

static inline void rec_ready(void)
{
    pthread_once(&rec_once, rec_init);
}

static void __attribute__((constructor)) rec_constructor(void)
{
    rec_ready();
}

/* Index of the recorded file @fd refers to, or -1 */
static int rec_file(int fd)
{
    struct stat st;
    int i;

    if (!rec.active || fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        return -1;
    }
    for (i = 0; i < rec.nfiles; i++) {
        if (st.st_ino == rec.ino[i] && st.st_dev == rec.dev[i]) {
            return i;
        }
    }
    return -1;
}

static uint64_t rec_seq(void)
{
    return __atomic_add_fetch(rec.seq, 1, __ATOMIC_SEQ_CST);
}

/* Append one record (and its data) with a single write: never interleaved */
static uint64_t rec_log(uint16_t type, int file, uint64_t ref, uint64_t off,
                        uint64_t len, int64_t ret, uint32_t flags,
                        const struct iovec *data, int ndata)
{
    TsrCrashRec r = {
        .magic = TSR_CRASH_MAGIC, .type = type, .file = file,
        .pid = getpid(), .flags = flags, .ref = ref, .off = off,
        .len = len, .ret = ret,
    };
    struct iovec small[8], *iov = small;
    size_t total = sizeof(r);
    ssize_t n;
    int i, niov = 1;

    if (rec.log_fd < 0) {
        return 0;
    }
    if (ndata + 1 > IOV_MAX) {
        die("write with %d iovec elements", ndata);
    }
    if (ndata + 1 > (int)(sizeof(small) / sizeof(small[0]))) {
        iov = malloc((ndata + 1) * sizeof(*iov));
    }
    iov[0] = (struct iovec) { .iov_base = &r, .iov_len = sizeof(r) };
    for (i = 0; i < ndata; i++) {
        iov[niov++] = data[i];
        total += data[i].iov_len;
    }
    r.seq = rec_seq();
    n = real_writev(rec.log_fd, iov, niov);
    if (n != (ssize_t)total) {
        die("log write: %zd of %zu bytes (%s)", n, total, strerror(errno));
    }
    if (iov != small) {
        free(iov);
    }
    return r.seq;
}

/* A per-thread pseudo-random number (no lock, unlike rand()) */
static unsigned rec_rand(void)
{
    static __thread unsigned state;

    if (!state) {
        state = (unsigned)(uintptr_t)&state ^ (unsigned)time(NULL) ^
                (unsigned)getpid() << 16;
    }
    return rand_r(&state);
}

static void rec_delay(unsigned max_us)
{
    struct timespec ts;

    if (!max_us) {
        return;
    }
    ts.tv_sec = 0;
    ts.tv_nsec = (long)(rec_rand() % (max_us + 1)) * 1000;
    nanosleep(&ts, NULL);
}

static bool rec_odd_fd(int fd, int file)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl >= 0 && (fl & O_DIRECT)) {
        rec_log(TSR_REC_ESCAPE, file, TSR_ESC_DIRECT, 0, 0, 0, 0, NULL, 0);
        return true;
    }
    if (fl >= 0 && (fl & (O_DSYNC | O_SYNC))) {
        rec_log(TSR_REC_ESCAPE, file, TSR_ESC_DSYNC, 0, 0, 0, 0, NULL, 0);
        return true;
    }
    return false;
}

/* Record a write of @iov at @off around the call @op */
#define REC_WRITE(fd, file, iov, niov, off, call) \
    ({ \
        size_t len_ = 0; \
        uint64_t start_; \
        ssize_t ret_; \
        int i_; \
        rec_odd_fd(fd, file); \
        for (i_ = 0; i_ < (niov); i_++) { \
            len_ += (iov)[i_].iov_len; \
        } \
        if (rec.delay_us[file] && (rec_rand() & 1)) { \
            rec_delay(rec.delay_us[file] / 2); \
        } \
        start_ = rec_log(TSR_REC_WRITE, file, 0, off, len_, 0, 0, iov, \
                         niov); \
        ret_ = (call); \
        rec_log(TSR_REC_WRITE_DONE, file, start_, off, len_, \
                ret_ < 0 ? -errno : ret_, 0, NULL, 0); \
        ret_; \
    })

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = n };
    int file;

    rec_ready();
    file = rec_file(fd);
    if (file < 0) {
        return real_pwrite(fd, buf, n, off);
    }
    return REC_WRITE(fd, file, &iov, 1, off, real_pwrite(fd, buf, n, off));
}
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
    __attribute__((alias("pwrite")));

ssize_t pwritev(int fd, const struct iovec *iov, int niov, off_t off)
{
    int file;

    rec_ready();
    file = rec_file(fd);
    if (file < 0) {
        return real_pwritev(fd, iov, niov, off);
    }
    return REC_WRITE(fd, file, iov, niov, off,
                     real_pwritev(fd, iov, niov, off));
}
ssize_t pwritev64(int fd, const struct iovec *iov, int niov, off_t off)
    __attribute__((alias("pwritev")));

ssize_t pwritev2(int fd, const struct iovec *iov, int niov, off_t off,
                 int flags)
{
    int file;

    rec_ready();
    file = rec_file(fd);
    if (file < 0) {
        return real_pwritev2(fd, iov, niov, off, flags);
    }
    if (flags & (RWF_DSYNC | RWF_SYNC)) {
        rec_log(TSR_REC_ESCAPE, file, TSR_ESC_DSYNC, 0, 0, 0, 0, NULL, 0);
    }
    if (off == -1) {
        off = lseek(fd, 0, SEEK_CUR);
    }
    return REC_WRITE(fd, file, iov, niov, off,
                     real_pwritev2(fd, iov, niov, off, flags));
}
ssize_t pwritev64v2(int fd, const struct iovec *iov, int niov, off_t off,
                    int flags) __attribute__((alias("pwritev2")));

/* Offset of the next write(): the file position, or its end (O_APPEND) */
static off_t rec_pos(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    struct stat st;

    if (fl >= 0 && (fl & O_APPEND) && fstat(fd, &st) == 0) {
        return st.st_size;
    }
    return lseek(fd, 0, SEEK_CUR);
}

ssize_t write(int fd, const void *buf, size_t n)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = n };
    int file;

    rec_ready();
    file = rec_file(fd);
    if (file < 0) {
        return real_write(fd, buf, n);
    }
    return REC_WRITE(fd, file, &iov, 1, rec_pos(fd), real_write(fd, buf, n));
}

ssize_t writev(int fd, const struct iovec *iov, int niov)
{
    int file;

    rec_ready();
    file = rec_file(fd);
    if (file < 0) {
        return real_writev(fd, iov, niov);
    }
    return REC_WRITE(fd, file, iov, niov, rec_pos(fd),
                     real_writev(fd, iov, niov));
}

static int rec_flush(int fd, int file, int (*call)(int))
{
    uint64_t start;
    int ret;

    /* a slow flush: it covers only what completed before it started */
    start = rec_log(TSR_REC_FLUSH, file, 0, 0, 0, 0, 0, NULL, 0);
    rec_delay(rec.delay_us[file]);
    ret = call(fd);
    rec_log(TSR_REC_FLUSH_DONE, file, start, 0, 0, ret < 0 ? -errno : 0, 0,
            NULL, 0);
    return ret;
}

int fdatasync(int fd)
{
    int file;

    rec_ready();
    file = rec_file(fd);
    return file < 0 ? real_fdatasync(fd) : rec_flush(fd, file,
                                                      real_fdatasync);
}

int fsync(int fd)
{
    int file;

    rec_ready();
    file = rec_file(fd);
    return file < 0 ? real_fsync(fd) : rec_flush(fd, file, real_fsync);
}

/* syncfs() and sync() flush every file: log a flush of each */
static void rec_flush_all_begin(uint64_t *start)
{
    int i;

    for (i = 0; i < rec.nfiles; i++) {
        start[i] = rec_log(TSR_REC_FLUSH, i, 0, 0, 0, 0, 0, NULL, 0);
    }
}

static void rec_flush_all_end(const uint64_t *start, int ret)
{
    int i;

    for (i = 0; i < rec.nfiles; i++) {
        rec_log(TSR_REC_FLUSH_DONE, i, start[i], 0, 0, ret, 0, NULL, 0);
    }
}

int syncfs(int fd)
{
    uint64_t start[TSR_CRASH_MAX_FILES];
    int ret;

    rec_ready();
    if (!rec.active) {
        return real_syncfs(fd);
    }
    rec_flush_all_begin(start);
    ret = real_syncfs(fd);
    rec_flush_all_end(start, ret < 0 ? -errno : 0);
    return ret;
}

void sync(void)
{
    uint64_t start[TSR_CRASH_MAX_FILES];

    rec_ready();
    if (!rec.active) {
        real_sync();
        return;
    }
    rec_flush_all_begin(start);
    real_sync();
    rec_flush_all_end(start, 0);
}

int sync_file_range(int fd, off_t off, off_t n, unsigned int flags)
{
    int file;

    rec_ready();
    file = rec_file(fd);
    if (file >= 0) {
        rec_log(TSR_REC_SYNC_HINT, file, 0, off, n, 0, flags, NULL, 0);
    }
    return real_sync_file_range(fd, off, n, flags);
}

int fallocate(int fd, int mode, off_t off, off_t len)
{
    uint64_t start;
    int file, ret;

    rec_ready();
    file = rec_file(fd);
    if (file < 0) {
        return real_fallocate(fd, mode, off, len);
    }
    if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE |
                 FALLOC_FL_ZERO_RANGE)) {
        rec_log(TSR_REC_ESCAPE, file, TSR_ESC_FALLOC, off, len, mode, 0,
                NULL, 0);
        return real_fallocate(fd, mode, off, len);
    }
    if (!(mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))) {
        /* allocation only: the new range reads as zeroes, like a hole */
        return real_fallocate(fd, mode, off, len);
    }
    start = rec_log(TSR_REC_ZERO, file, 0, off, len, 0, mode, NULL, 0);
    ret = real_fallocate(fd, mode, off, len);
    rec_log(TSR_REC_ZERO_DONE, file, start, off, len, ret < 0 ? -errno : 0,
            mode, NULL, 0);
    return ret;
}
int fallocate64(int fd, int mode, off_t off, off_t len)
    __attribute__((alias("fallocate")));

int posix_fallocate(int fd, off_t off, off_t len)
{
    rec_ready();
    return real_posix_fallocate(fd, off, len);   /* size only */
}
int posix_fallocate64(int fd, off_t off, off_t len)
    __attribute__((alias("posix_fallocate")));

int ftruncate(int fd, off_t size)
{
    struct stat st;
    uint64_t start;
    int file, ret;

    rec_ready();
    file = rec_file(fd);
    if (file < 0 || fstat(fd, &st) < 0) {
        return real_ftruncate(fd, size);
    }
    start = rec_log(TSR_REC_TRUNC, file, 0, size, st.st_size, 0, 0, NULL, 0);
    ret = real_ftruncate(fd, size);
    rec_log(TSR_REC_TRUNC_DONE, file, start, size, st.st_size,
            ret < 0 ? -errno : 0, 0, NULL, 0);
    return ret;
}
int ftruncate64(int fd, off_t size) __attribute__((alias("ftruncate")));

/*
 * copy_file_range() into a recorded file: log it as a write of the
 * bytes it copied, read back from the destination once it returned.
 */
ssize_t copy_file_range(int in, off_t *in_off, int out, off_t *out_off,
                        size_t n, unsigned int flags)
{
    off_t off;
    uint64_t start;
    ssize_t ret;
    void *buf;
    struct iovec iov;
    int file;

    rec_ready();
    file = rec_file(out);
    if (file < 0) {
        return real_copy_file_range(in, in_off, out, out_off, n, flags);
    }
    off = out_off ? *out_off : lseek(out, 0, SEEK_CUR);
    buf = malloc(n ? n : 1);
    ret = real_pread(in, buf, n, in_off ? *in_off : lseek(in, 0, SEEK_CUR));
    iov = (struct iovec) { .iov_base = buf, .iov_len = ret > 0 ? ret : 0 };
    start = rec_log(TSR_REC_WRITE, file, 0, off, iov.iov_len, 0, 0, &iov, 1);
    ret = real_copy_file_range(in, in_off, out, out_off, n, flags);
    rec_log(TSR_REC_WRITE_DONE, file, start, off, iov.iov_len,
            ret < 0 ? -errno : ret, 0, NULL, 0);
    free(buf);
    return ret;
}

/* Escapes: writes the log would not see */
void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    int file;

    rec_ready();
    file = (prot & PROT_WRITE) && (flags & MAP_SHARED) ? rec_file(fd) : -1;
    if (file >= 0) {
        rec_log(TSR_REC_ESCAPE, file, TSR_ESC_MMAP, off, len, 0, 0, NULL, 0);
    }
    return real_mmap(addr, len, prot, flags, fd, off);
}
void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
    __attribute__((alias("mmap")));

int io_submit(io_context_t ctx, long nr, struct iocb **iocbs)
{
    long i;
    int file;

    rec_ready();
    if (!real_io_submit) {
        real_io_submit = dlsym(RTLD_NEXT, "io_submit");
    }
    for (i = 0; i < nr; i++) {
        file = rec_file(iocbs[i]->aio_fildes);
        if (file >= 0) {
            rec_log(TSR_REC_ESCAPE, file, TSR_ESC_AIO, 0, 0, 0, 0, NULL, 0);
        }
    }
    return real_io_submit ? real_io_submit(ctx, nr, iocbs) : -ENOSYS;
}

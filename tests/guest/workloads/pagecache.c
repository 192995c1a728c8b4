/*
 * pagecache: fill the guest's page cache from a disk, then read it again.
 *
 * Runs inside the test guest (statically linked, started by /init).
 * Writes a verifiable pattern to /dev/vda with O_DIRECT (so that the
 * writes leave nothing in the page cache), reads it back through the
 * page cache (buffered: each block is DMAed from the disk into a page
 * cache page), stays idle while the host swaps guest RAM out, and reads
 * it all again from the page cache.  Each step is diskcheck's, which
 * verifies every 4 KiB block; the exit status is the first failing
 * step's.
 *
 *   --mib N        pagecache_mib    MiB of the disk to use   (96)
 *   --idle-secs N  pagecache_idle   idle between the reads   (5)
 *   --rereads N    pagecache_rereads reads after the idle    (1)
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define WL_NAME "pagecache"
#include <fcntl.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
#include "workload.h"

/*
 * Run diskcheck in @mode over @mib MiB, @direct or buffered (a buffered
 * verify reads what the page cache holds)
 */
static int run_diskcheck(const char *mode, uint64_t mib, int direct)
{
    char mibs[32], directs[4];
    pid_t pid;
    int status;

    snprintf(mibs, sizeof(mibs), "%llu", (unsigned long long)mib);
    snprintf(directs, sizeof(directs), "%d", direct);
    printf("pagecache: diskcheck --mode %s --direct %d\n", mode, direct);
    fflush(stdout);
    pid = fork();
    if (pid < 0) {
        perror("pagecache: fork");
        return 2;
    }
    if (pid == 0) {
        execl("/bin/diskcheck", "diskcheck", "--mode", mode, "--mib", mibs,
              "--direct", directs, "--seed", "11", "--flush", "0",
              (char *)NULL);
        perror("pagecache: exec /bin/diskcheck");
        _exit(2);
    }
    if (waitpid(pid, &status, 0) < 0) {
        perror("pagecache: waitpid");
        return 2;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 2;
}

int main(int argc, char **argv)
{
    uint64_t mib = wl_param(argc, argv, "--mib", "pagecache_mib", 96);
    uint64_t idle = wl_param(argc, argv, "--idle-secs", "pagecache_idle", 5);
    uint64_t rereads = wl_param(argc, argv, "--rereads",
                                "pagecache_rereads", 1);
    uint64_t i;
    int rc, fd;

    /*
     * Held open throughout: Linux drops a block device's page cache when
     * its last opener closes it
     */
    fd = open("/dev/vda", O_RDONLY);
    if (fd < 0) {
        perror("pagecache: /dev/vda");
        return 2;
    }
    rc = run_diskcheck("write", mib, 1);
    if (!rc) {
        rc = run_diskcheck("verify", mib, 0);
    }
    for (i = 0; !rc && i < rereads; i++) {
        printf("pagecache: idle %llu s\n", (unsigned long long)idle);
        fflush(stdout);
        sleep(idle);
        rc = run_diskcheck("verify", mib, 0);
    }
    printf("pagecache: %s\n", rc ? "FAILED" : "all reads verified");
    close(fd);
    return rc;
}

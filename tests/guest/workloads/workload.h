/*
 * Helpers shared by the guest workloads (jbb, memhog, memverify): their
 * parameters come from argv ("--opt VALUE") or, for the ones /init starts,
 * from the kernel command line's environment ("name_opt=VALUE"), argv
 * winning.  Define WL_NAME (the program's name, for error messages)
 * before including this header.
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef TESSERACT_WORKLOAD_H
#define TESSERACT_WORKLOAD_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef WL_NAME
#error "define WL_NAME before including workload.h"
#endif

/* The value of @opt in argv, else of @env in the environment, else NULL */
static inline const char *wl_sparam(int argc, char **argv, const char *opt,
                                    const char *env)
{
    const char *s = getenv(env);

    for (int i = 1; i + 1 < argc; i++) {
        if (!strcmp(argv[i], opt)) {
            s = argv[i + 1];
        }
    }
    return s && *s ? s : NULL;
}

/* As wl_sparam(), as a number (C syntax), @def if unset; exits 2 if bad */
static inline uint64_t wl_param(int argc, char **argv, const char *opt,
                                const char *env, uint64_t def)
{
    const char *s = wl_sparam(argc, argv, opt, env);
    char *end;
    uint64_t v;

    if (!s) {
        return def;
    }
    v = strtoull(s, &end, 0);
    if (*end) {
        fprintf(stderr, WL_NAME ": bad value '%s' for %s\n", s, opt);
        exit(2);
    }
    return v;
}

/* A 64-bit mixing function (MurmurHash3's finaliser) for data patterns */
static inline uint64_t wl_mix(uint64_t z)
{
    z = (z ^ (z >> 33)) * UINT64_C(0xff51afd7ed558ccd);
    z = (z ^ (z >> 33)) * UINT64_C(0xc4ceb9fe1a85ec53);
    return z ^ (z >> 33);
}

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* pool.h: run independent jobs on a few threads; the first failure stops the rest. */
#ifndef KILN_POOL_H
#define KILN_POOL_H

#include <signal.h>
#include <stddef.h>

#include "common/error.h"

/*
 * Run jobs 0..NJOBS-1 on up to NTHREADS threads: each thread takes the next index and calls
 * FN(CTX, i, err). After the first failure *STOP is set, no new job starts (running ones may watch *STOP
 * to end early), and that first error is returned (later ones, usually caused by the stop, are dropped).
 */
int kiln_pool_run(size_t njobs, size_t nthreads, int (*fn)(void *ctx, size_t i, struct kiln_error **err),
                  void *ctx, volatile sig_atomic_t *stop, struct kiln_error **err);

#endif

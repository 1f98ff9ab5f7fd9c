/* SPDX-License-Identifier: Apache-2.0 */
/* pool.c: a small fixed pool of threads over a list of jobs. */
#include "common/pool.h"

#include <pthread.h>
#include <stdatomic.h>

#define MAX_THREADS 64

struct pool {
	size_t njobs;
	atomic_size_t next;
	int (*fn)(void *ctx, size_t i, struct kiln_error **err);
	void *ctx;
	volatile sig_atomic_t *stop;
	pthread_mutex_t lock;
	struct kiln_error *err; /* the first failure */
	int code;
};

static void *worker(void *arg)
{
	struct pool *p = arg;
	for (;;) {
		size_t i = atomic_fetch_add(&p->next, 1);
		if (i >= p->njobs || *p->stop)
			break;
		struct kiln_error *e = NULL;
		int rc = p->fn(p->ctx, i, &e);
		if (rc < 0) {
			pthread_mutex_lock(&p->lock);
			if (p->code == 0) {
				p->code = e ? e->code : rc;
				p->err = e;
				e = NULL;
			}
			pthread_mutex_unlock(&p->lock);
			kiln_error_free(e);
			*p->stop = 1;
			break;
		}
	}
	return NULL;
}

int kiln_pool_run(size_t njobs, size_t nthreads, int (*fn)(void *ctx, size_t i, struct kiln_error **err),
                  void *ctx, volatile sig_atomic_t *stop, struct kiln_error **err)
{
	struct pool p = {.njobs = njobs, .fn = fn, .ctx = ctx, .stop = stop};
	pthread_mutex_init(&p.lock, NULL);
	if (nthreads > njobs)
		nthreads = njobs;
	if (nthreads > MAX_THREADS)
		nthreads = MAX_THREADS;
	pthread_t tids[MAX_THREADS];
	size_t started = 0;
	for (; started < nthreads; started++)
		if (pthread_create(&tids[started], NULL, worker, &p) != 0)
			break;
	if (started == 0)
		worker(&p);
	for (size_t i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	pthread_mutex_destroy(&p.lock);
	if (p.code == 0)
		return 0;
	if (err) {
		kiln_error_free(*err);
		*err = p.err;
	} else {
		kiln_error_free(p.err);
	}
	return p.code;
}

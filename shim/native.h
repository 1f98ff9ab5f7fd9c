/* SPDX-License-Identifier: Apache-2.0 */
/* native.h: what native.c and native_capture.c share (private to them). */
#ifndef KILN_SHIM_NATIVE_H
#define KILN_SHIM_NATIVE_H

#include <pthread.h>

#include "kiln/predictor.h"
#include "shim/worker.h"

#define LINE_MAX_BYTES (1024 * 1024) /* a longer line of output is cut there */

/* One prediction: queued, then running. Guarded by shim_native.lock. */
struct native_job {
	struct native_job *next;
	char *id;
	char *input; /* JSON text */
	bool canceled;
};

/* One prediction thread. */
struct native_worker {
	struct shim *s;
	pthread_t thread;
	struct native_job *job; /* the one predict() runs, or NULL; guarded by shim_native.lock */
};

struct shim_native {
	char *project; /* absolute */
	char *path;    /* the library, absolute */
	void *handle;
	__typeof__(&kiln_predictor_abi_version) abi_version;
	__typeof__(&kiln_predictor_schema) schema;
	__typeof__(&kiln_predictor_setup) setup;
	__typeof__(&kiln_predictor_predict) predict;
	__typeof__(&kiln_predictor_teardown) teardown;
	__typeof__(&kiln_predictor_free) free;

	/* the queue and the threads; cond is broadcast on every change but a new job, which signals work */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_cond_t work;          /* idle prediction threads wait here for a job */
	struct native_worker *direct; /* nworkers slots for predictions run on their request's thread */
	long direct_running;
	double recent; /* seconds predict() took lately (a moving average), < 0 before the first */
	struct native_job *queue, **queue_end;
	struct native_worker *workers;
	long nworkers, live_workers; /* live_workers: started and not ended */
	long started_workers;
	bool stopping;
	pthread_t setup_thread;
	bool setup_thread_started, setup_done, setup_ok;

	/* fds 1 and 2 captured: pipes[k] is read here, saved[k] is the shim's own */
	pthread_mutex_t capture_lock; /* one reader of the pipes at a time */
	int pipes[2];
	int saved[2];
	struct kiln_buf lines[2];
	bool eof[2];
	bool pumping; /* the capture thread may hold bytes it read and has not emitted yet; atomic */
	bool partial; /* lines[] holds the start of a line; atomic */
	int wake;     /* eventfd: the capture thread stops */
	pthread_t capture;
	bool capture_started;
};

/* Send an event to predictions.c (and free it). */
void native_emit(struct shim *s, json_t *ev);

/* ---- native_capture.c ---- */

/* Point fds 1 and 2 at pipes that the capture thread reads; the shim's own log keeps the old stderr. */
int native_capture_start(struct shim *s, struct kiln_error **err);
/* Make sure what the library wrote so far has become log events (before its prediction ends). */
void native_capture_flush(struct shim *s);
/* Give fds 1 and 2 back to the shim and stop the capture thread after it read what is left. */
void native_capture_stop(struct shim *s);

#endif

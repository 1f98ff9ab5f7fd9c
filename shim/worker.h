/* SPDX-License-Identifier: Apache-2.0 */
/*
 * worker.h: the bottom layer that runs the predictor: the Python worker process (worker.c) or a native
 * predictor in this process (native.c), its setup and health. It calls nothing above it: what it learns
 * about a job reaches the table through the shim_jobs_ops the table registered in s->job_ops.
 */
#ifndef KILN_SHIM_WORKER_H
#define KILN_SHIM_WORKER_H

#include "shim/core.h"

/* What the worker layer tells the layer that holds the jobs; every call with s->lock held. */
struct shim_jobs_ops {
	/* An event of PROTOCOL.md about the job EV's "id" names: TYPE "started", "output", "log", "metrics",
	 * "done", "failed", "canceled" (any other type fails the job). */
	void (*event)(struct shim *s, const char *type, json_t *ev);
	/* The id of the job named ID (in any state), or, ID NULL, of the only job running: NULL when there is
	 * none (or, ID NULL, more than one). The string lives as long as the job. */
	const char *(*which)(struct shim *s, const char *id);
	/* Append TEXT[0..LEN), written by the worker to SOURCE ("stdout" or "stderr"), to the logs of job ID.
	 */
	void (*log)(struct shim *s, const char *id, const char *source, const char *text, size_t len);
	/* End job ID as failed with ERROR unless it has finished. */
	void (*fail)(struct shim *s, const char *id, const char *error);
	/* The worker is gone: end every unfinished job as failed with ERROR, DETAIL (why it is gone) a last
	 * line of its logs. */
	void (*fail_all)(struct shim *s, const char *error, const char *detail);
};

/* ---- worker.c ---- */

/* Finish setup (s->lock held): STATUS "succeeded" or "failed", the health that follows, ERROR appended to
 * the setup logs when not NULL. Only the first call counts. */
void shim_setup_done(struct shim *s, const char *status, enum shim_health health, const char *error);
/* Handle one event (PROTOCOL.md's shape) as if it came from the worker's fd 3 (s->lock not held: takes it).
 */
void shim_worker_event(struct shim *s, json_t *ev);
/* Handle DATA[0..LEN) as if the worker had written it and then closed STREAM ("events": fd 3's JSON lines,
 * "stdout", "stderr"), as the reader thread does (s->lock not held: takes it). For the fuzz target. */
void shim_worker_feed(struct shim *s, const char *stream, const char *data, size_t len);
/* Spawn the Python worker (or start the native predictor: "native:PATH") and the thread that reads its events
 * and output. */
int shim_worker_start(struct shim *s, struct kiln_error **err);
/* Send one request line (s->lock not held). 0, or -1 when the worker is gone. */
int shim_worker_send(struct shim *s, json_t *msg);
/* Run job ID with INPUT on this thread when the predictor can (a native one with a free slot; s->lock not
 * held): 0 when it ran (its events were emitted), 1 when it did not start (send it instead), -1 when
 * stopping. */
int shim_worker_run_direct(struct shim *s, const char *id, json_t *input);
/* The predictor's healthcheck(), run as Cog 0.22 runs it on every /health-check while READY and not busy
 * (s->lock held; released while the runner answers, in its 5 s and a margin): its error, NULL when it is
 * healthy or was not run. The caller frees it. */
char *shim_worker_healthcheck(struct shim *s);
/* Ask the worker to exit, wait up to TIMEOUT seconds, then kill it; join the reader. */
void shim_worker_stop(struct shim *s, double timeout);
/* Kill the worker at once (setup timeout). */
void shim_worker_kill(struct shim *s);

/* ---- native.c: a native predictor (include/kiln/predictor.h) in this process, in the worker's place ---- */

/* Capture fds 1 and 2, load the library at PATH (relative to the project) and run its setup() in a thread;
 * predictions then run in s->concurrency threads. Events reach the table through shim_worker_event. */
int shim_native_start(struct shim *s, const char *path, struct kiln_error **err);
/* A request of PROTOCOL.md's shape ("predict", "cancel", "shutdown"): 0, or -1 when stopping. */
int shim_native_send(struct shim *s, json_t *msg);
/* Run prediction ID with INPUT now on this thread when a slot is free (s->lock not held): 0 when it ran (its
 * events were emitted), 1 when it did not start (send it instead), -1 when stopping. */
int shim_native_predict_direct(struct shim *s, const char *id, json_t *input);
/* Wait up to TIMEOUT seconds for running predictions, call teardown(), restore fds 1 and 2. */
void shim_native_stop(struct shim *s, double timeout);
/* Setup timed out: native code cannot be interrupted; only say so (s->lock held). */
void shim_native_kill(struct shim *s);

#endif

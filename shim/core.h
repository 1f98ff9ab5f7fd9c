/* SPDX-License-Identifier: Apache-2.0 */
/*
 * core.h: the state of one kiln-shim (struct shim), shared by its layers (shim/README.md). Each group of
 * members belongs to one layer: only that layer's files write them; a layer above may read them.
 */
#ifndef KILN_SHIM_CORE_H
#define KILN_SHIM_CORE_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

#include "common/buf.h"
#include "common/error.h"
#include "pkg/manifest.h"
#include "shim/log.h"
#include "shim/shim.h"

#define SHIM_STREAM_HISTORY 1024 /* Cog's default COG_STREAM_HISTORY_CAPACITY */

/* The server's health, as /health-check names it (BUSY is READY with every slot taken). */
enum shim_health { SHIM_STARTING, SHIM_READY, SHIM_SETUP_FAILED, SHIM_DEFUNCT };

struct shim_job;      /* table.h */
struct shim_jobs_ops; /* worker.h */
struct shim_pyworker; /* worker.c */
struct shim_native;   /* native.h */
struct http_conns;    /* http.h */
struct MHD_Daemon;

struct shim {
	/* configuration (main.c), set before any thread starts */
	const char *project;
	char *predictor; /* "file.py:Class" */
	char *trainer;   /* train: "file.py:NAME", or NULL */
	long concurrency;
	const char *host;
	int port;
	int listen_fd; /* socket activation, else -1 */
	const char *upload_url;
	bool await_explicit_shutdown;
	double idle_exit;     /* seconds, 0: never */
	double setup_timeout; /* seconds, 0: none */
	size_t body_limit;
	long max_connections;   /* open at once; the oldest one not being answered is closed for a new one */
	double idle_timeout;    /* seconds a connection may wait between requests (or be silent) */
	double request_timeout; /* seconds a request's headers and body may take after its request line */
	size_t keep_bytes;      /* of finished jobs kept for PUT idempotency */
	long stream_history;    /* events an event stream attaching to a job may replay, 0: none
	                           (COG_STREAM_HISTORY_CAPACITY, default SHIM_STREAM_HISTORY) */
	const char *python;
	char *python_dir;
	struct kiln_manifest *manifest;
	struct shim_gpu_info gpu;
	struct shim_prefetch *prefetch;
	struct shim_weights *weights; /* serve.weights: registry: fetched at start (weights.h), or NULL */
	bool setup_pending;           /* main.c: setup waits for the weights (main thread only) */
	struct shim_webhooks *webhooks;

	/* every layer's state below is guarded by lock; cond is broadcast on every change */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool draining;           /* main.c: shutting down, no new jobs */
	bool shutdown_requested; /* main.c: asked for over HTTP */

	/* the worker layer (worker.h): setup, health, the worker process or the native predictor */
	enum shim_health health;
	json_t *schema;       /* from the runner, or NULL */
	json_t *train_schema; /* the schema as a training's input sees it (shim_schema_for_training), or
	                         NULL: no trainer */
	char setup_started[SHIM_TIME_LEN];
	char setup_completed[SHIM_TIME_LEN];
	const char *setup_status; /* "succeeded", "failed", or NULL while running */
	struct kiln_buf setup_logs;
	struct timespec setup_start_mono;
	bool warming;          /* the warmup prediction runs */
	bool has_healthcheck;  /* the predictor defines healthcheck() (the runner's "ready" says so) */
	bool streaming;        /* it opted in to server-sent events, @cog.streaming (the "ready" says so) */
	long long hc_sent;     /* healthcheck requests sent (their ids: 1, 2, ...) */
	long long hc_answered; /* the highest id answered */
	char *hc_error;        /* that answer's error, or NULL: healthy */
	char *cog_version;     /* the cog module's __version__ the runner imported, or NULL: none known */
	char *python_version;  /* the worker's Python ("3.11.2"), or NULL */
	bool worker_exited;    /* the worker's reader saw the end */
	struct shim_pyworker *pyworker;      /* the Python worker (worker.c), or NULL */
	struct shim_native *native;          /* a native predictor (native.c) in its place, or NULL */
	const struct shim_jobs_ops *job_ops; /* where the worker's job events go (the table registers it) */

	/* the table layer (table.h): predictions (and later other kinds of jobs) */
	struct shim_job *jobs;
	long ndone;        /* finished jobs in the table */
	size_t done_bytes; /* their bytes */
	long busy;         /* slots taken */
	/* called when a job changes, or with NULL when the health did (s->lock held), registered by the HTTP
	 * layer: it resumes the requests that wait for them */
	void (*job_changed)(struct shim *s, struct shim_job *p);

	/* the HTTP layer (http.h) */
	struct MHD_Daemon *daemon;
	struct http_conns *conns; /* connections.c */
	bool server_stopping;     /* suspended connections are resumed for good */
	/* main.c: socket activation (LISTEN_FDS, KILN_LISTEN_FD): a prediction that arrives while STARTING or
	 * with every slot taken waits (held) rather than answering 503 or 409, as the start it caused ends */
	bool activated;
	struct shim_waiter *held; /* those requests (s->lock) */
	int requests; /* HTTP requests not finished yet (their responses still going); atomic (__atomic_*) */
	long long last_request_ns; /* CLOCK_MONOTONIC, in ns; __atomic_* (no lock) */
};

#endif

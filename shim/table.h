/* SPDX-License-Identifier: Apache-2.0 */
/*
 * table.h: the table of jobs (predictions.c), the middle layer: their states, slots, responses and
 * webhooks; it sends them to the worker (worker.h) and takes the worker's events through the
 * shim_jobs_ops it registers. The HTTP layer (http.h) above it creates, finds and cancels jobs.
 */
#ifndef KILN_SHIM_TABLE_H
#define KILN_SHIM_TABLE_H

#include "shim/worker.h"

#define SHIM_KEEP_DONE 100 /* finished jobs kept for PUT idempotency (and s->keep_bytes of them) */
#define SHIM_TRIM_SLACK                                                                                      \
	32 /* finished ones beyond it before the table is trimmed (back to SHIM_KEEP_DONE)                   \
	    */

enum shim_status { JOB_STARTING, JOB_PROCESSING, JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELED };

/* What a job is: the worker request it becomes and the word its log lines use. A training runs the
 * trainer (train:) in the same worker, in the same slots, with the same response. */
enum shim_job_kind { SHIM_JOB_PREDICTION, SHIM_JOB_TRAINING };

/* What happened to a job, in order, as its event streams tell it (sse.c) between their "start" and
 * "completed": a log message (logs[from, to), written to stderr or stdout), an output item (output[from]) or
 * a change to its metrics. */
enum shim_event_kind { SHIM_EVENT_LOG, SHIM_EVENT_OUTPUT, SHIM_EVENT_METRIC };
struct shim_event {
	enum shim_event_kind kind;
	bool stderr;
	size_t from, to;
	json_t *metric; /* SHIM_EVENT_METRIC: {"name", "value", "mode"}, as Cog's "metric" event */
};

/* One job; guarded by shim.lock. Freed when finished, unreferenced and out of the kept list. */
struct shim_job {
	struct shim_job *next;
	enum shim_job_kind kind;
	char *id;
	json_t *body;  /* the request body as received: PUT compares it */
	json_t *input; /* the validated input, as responses report it */
	enum shim_status status;
	json_t *output; /* NULL until there is one; an array for iterators */
	bool iterator;  /* output events arrived */
	struct kiln_buf logs;
	struct shim_event *events; /* its log messages, output items and metric changes, in order */
	size_t nevents, events_cap;
	char *error;
	double predict_time; /* seconds, < 0 until known */
	json_t *metrics;     /* what the predictor recorded (an object), or NULL */
	char created_at[SHIM_TIME_LEN];
	char started_at[SHIM_TIME_LEN];
	char completed_at[SHIM_TIME_LEN];
	struct timespec started_mono;
	char *webhook;    /* or NULL */
	json_t *filter;   /* webhook_events_filter, or NULL */
	char *upload_url; /* output_file_prefix, else --upload-url, or NULL */
	char *tmpdir;     /* file inputs, removed when done */
	size_t bytes;     /* its inputs, outputs and logs, once finished (counted in shim.done_bytes) */
	bool cancel_requested;
	bool dispatched;             /* sent to the worker */
	bool counted;                /* holds a slot */
	int refs;                    /* request threads waiting on it */
	unsigned streams;            /* event streams of it open now (sse.c) */
	pthread_cond_t done;         /* broadcast when it finishes */
	struct shim_waiter *waiters; /* the HTTP layer's suspended connections (http.h), resumed through
	                                s->job_changed */
};

/* ---- predictions.c, responses.c (callers hold s->lock unless said otherwise) ---- */

/* Register the table with the worker layer (s->job_ops), before the worker starts. */
void shim_table_attach(struct shim *s);

const char *shim_status_name(enum shim_status st);
/* "prediction" or "training"; the key log lines give its id under ("prediction_id", "training_id"). */
const char *shim_job_noun(enum shim_job_kind kind);
const char *shim_job_id_key(enum shim_job_kind kind);
struct shim_job *shim_job_find(struct shim *s, const char *id);
/* A new job of KIND in the table with a slot taken, one reference held by the caller. */
struct shim_job *shim_job_new(struct shim *s, enum shim_job_kind kind, const char *id, json_t *body,
                              json_t *input);
/* P as Cog's prediction response, JSON text appended to B: 0, or -1 when memory runs out. */
int shim_job_text(const struct shim_job *p, struct kiln_buf *b);
/* The same response as an object (NULL when memory runs out). */
json_t *shim_job_json(const struct shim_job *p);
/* Drop the caller's reference; finished, unreferenced jobs beyond the newest SHIM_KEEP_DONE, or beyond
 * s->keep_bytes in all, are freed (a larger one before the smaller ones older than it). */
void shim_job_release(struct shim *s, struct shim_job *p);
/* Send P to the worker (s->lock not held: takes it). Finishes P as failed when that is impossible. DIRECT:
 * the caller waits for P anyway, so a native predictor may run it on the caller's thread. SENT (or NULL):
 * P's response as it was sent ("processing") appended, or nothing when it was not sent. */
void shim_job_dispatch(struct shim *s, struct shim_job *p, json_t *worker_input, bool direct,
                       struct kiln_buf *sent);
/* Finish P with STATUS and ERROR (may be NULL): completion time, slot, webhook, temp dir. */
void shim_job_finish(struct shim *s, struct shim_job *p, enum shim_status st, const char *error);
/* Ask for P to be canceled: 0, or -1 when it is not running. */
int shim_job_cancel(struct shim *s, struct shim_job *p);
/* Free every job (at exit; no thread uses them any more). */
void shim_job_free_all(struct shim *s);

#endif

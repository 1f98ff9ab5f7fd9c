/* SPDX-License-Identifier: Apache-2.0 */
/* server.h: what kiln-shim's own files share: its state, the prediction table, the worker, the server. */
#ifndef KILN_SHIM_SERVER_H
#define KILN_SHIM_SERVER_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>

#include "common/buf.h"
#include "common/error.h"
#include "pkg/manifest.h"
#include "shim/shim.h"

#define SHIM_TIME_LEN  40  /* "2024-01-02T03:04:05.123456+00:00" and its NUL */
#define SHIM_KEEP_DONE 100 /* finished predictions kept for PUT idempotency (and s->keep_bytes of them) */
#define SHIM_TRIM_SLACK                                                                                      \
	32 /* finished ones beyond it before the table is trimmed (back to SHIM_KEEP_DONE)                   \
	    */

/* The server's health, as /health-check names it (BUSY is READY with every slot taken). */
enum shim_health { SHIM_STARTING, SHIM_READY, SHIM_SETUP_FAILED, SHIM_DEFUNCT };

enum shim_status { PRED_STARTING, PRED_PROCESSING, PRED_SUCCEEDED, PRED_FAILED, PRED_CANCELED };

/* One prediction; guarded by shim.lock. Freed when finished, unreferenced and out of the kept list. */
struct shim_prediction {
	struct shim_prediction *next;
	char *id;
	json_t *body;  /* the request body as received: PUT compares it */
	json_t *input; /* the validated input, as responses report it */
	enum shim_status status;
	json_t *output; /* NULL until there is one; an array for iterators */
	bool iterator;  /* output events arrived */
	struct kiln_buf logs;
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
	pthread_cond_t done;         /* broadcast when it finishes */
	struct shim_waiter *waiters; /* suspended connections to resume when it changes (server.c) */
};

/* One pipe from the worker that its reader thread follows, with the bytes of its unfinished line. */
struct shim_stream {
	int fd;
	const char *name; /* "events", "stdout", "stderr" */
	struct kiln_buf line;
	bool too_long; /* the line passed worker.c's limit: the rest of it is dropped */
};

struct shim {
	/* configuration, set before any thread starts */
	const char *project;
	char *predictor; /* "file.py:Class" */
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
	size_t keep_bytes;      /* of finished predictions kept for PUT idempotency */
	const char *python;
	char *python_dir;
	struct kiln_manifest *manifest;
	struct shim_gpu_info gpu;
	struct shim_prefetch *prefetch;
	struct shim_webhooks *webhooks;

	/* state, guarded by lock; cond is broadcast on every change */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum shim_health health;
	json_t *schema; /* from the runner, or NULL */
	char setup_started[SHIM_TIME_LEN];
	char setup_completed[SHIM_TIME_LEN];
	const char *setup_status; /* "succeeded", "failed", or NULL while running */
	struct kiln_buf setup_logs;
	struct timespec setup_start_mono;
	bool warming;          /* the warmup prediction runs */
	bool has_healthcheck;  /* the predictor defines healthcheck() (the runner's "ready" says so) */
	long long hc_sent;     /* healthcheck requests sent (their ids: 1, 2, ...) */
	long long hc_answered; /* the highest id answered */
	char *hc_error;        /* that answer's error, or NULL: healthy */
	struct shim_prediction *preds;
	long ndone;        /* finished predictions in preds */
	size_t done_bytes; /* their bytes */
	long busy;         /* slots taken */
	bool draining;
	bool shutdown_requested;
	long long last_request_ns; /* CLOCK_MONOTONIC, in ns; __atomic_* (no lock) */

	/* the worker */
	pid_t worker_pid;
	int worker_in;         /* its stdin, or -1 */
	pthread_mutex_t wlock; /* one writer on worker_in at a time */
	pthread_t reader;
	struct shim_stream streams[3]; /* events (fd 3), stdout, stderr */
	bool reader_started;
	bool worker_exited; /* the reader saw the end; guarded by lock */

	struct shim_native *native; /* a native predictor (native.c) in place of the worker, or NULL */

	struct MHD_Daemon *daemon;
	struct http_conns *conns; /* connections.c */
	bool server_stopping;     /* suspended connections are resumed for good; guarded by lock */
	int requests; /* HTTP requests not finished yet (their responses still going); atomic (__atomic_*) */
};

/* ---- log.c ---- */

/* TEXT as a JSON string: in BUF (SIZE bytes) when it needs no escape and fits, else appended to SPILL by
 * jansson ("null" when even that fails). For the ids in log lines without a malloc. */
const char *shim_quoted(const char *text, char *buf, size_t size, struct kiln_buf *spill);
/* T seconds as JSON number text with microseconds ("0.000331"), into OUT. */
void shim_seconds_text(char out[32], double t);

/* Append V's JSON text to B. 0, or -1 when memory runs out. */
int shim_put_json(struct kiln_buf *b, const json_t *v);
/* Append the JSON string for TEXT (LEN bytes) to B: as it is when JSON needs no escape in it, else written
 * by jansson. 0, or -1 when memory runs out or TEXT is not UTF-8. */
int shim_put_text(struct kiln_buf *b, const char *text, size_t len);

/* Where shim_log writes: stderr, or the shim's own copy of it while native.c captures fds 1 and 2. */
extern FILE *shim_log_file;
/* Write one JSON log line to stderr, Cog's keys: {"timestamp", "severity" (LEVEL "info", "warning" or
 * "error" as "INFO", ...), "message"} plus EXTRA's keys (stolen; may be NULL). LOG_FORMAT=development:
 * "TIMESTAMP [level] message key=value ..." instead. */
void shim_log(const char *level, json_t *extra, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The same line with the message TEXT[0..LEN), as it is (a NUL too; bytes that are not UTF-8 become '?'). */
void shim_log_text(const char *level, json_t *extra, const char *text, size_t len);
/* TEXT[0..LEN) as a JSON string, NULs kept, bytes that are not UTF-8 replaced by '?' (NULL when memory runs
 * out). */
json_t *shim_json_text(const char *text, size_t len);
/* The same line without jansson, for the lines of every prediction: MSG is text that JSON writes as it is
 * (no quote, backslash or control character), and FIELDS a printf format of the line's further members,
 * JSON text such as "\"prediction_id\":\"%s\"" whose arguments need no escaping either. */
void shim_log_fields(const char *level, const char *msg, const char *fields, ...)
    __attribute__((format(printf, 3, 4)));
/* With ON, hold this thread's log lines back (for a stretch that takes s->lock, or one request); with !ON,
 * end the stretch: the outermost end writes them, in one write(2). Stretches nest. */
void shim_log_defer(bool on);
/* The current time as Cog writes it: RFC 3339 with microseconds and "+00:00". */
void shim_now(char out[SHIM_TIME_LEN]);
/* Seconds from A to now, CLOCK_MONOTONIC. */
double shim_since(const struct timespec *a);

/* ---- predictions.c (callers hold s->lock unless said otherwise) ---- */

const char *shim_status_name(enum shim_status st);
struct shim_prediction *shim_pred_find(struct shim *s, const char *id);
/* A new prediction in the table with a slot taken, one reference held by the caller. */
struct shim_prediction *shim_pred_new(struct shim *s, const char *id, json_t *body, json_t *input);
/* P as Cog's prediction response, JSON text appended to B: 0, or -1 when memory runs out. */
int shim_pred_text(const struct shim_prediction *p, struct kiln_buf *b);
/* The same response as an object (NULL when memory runs out). */
json_t *shim_pred_json(const struct shim_prediction *p);
/* Drop the caller's reference; finished, unreferenced predictions beyond the newest SHIM_KEEP_DONE, or
 * beyond s->keep_bytes in all, are freed (a larger one before the smaller ones older than it). */
void shim_pred_release(struct shim *s, struct shim_prediction *p);
/* Send P to the worker (s->lock not held: takes it). Finishes P as failed when that is impossible. DIRECT:
 * the caller waits for P anyway, so a native predictor may run it on the caller's thread. SENT (or NULL):
 * P's response as it was sent ("processing") appended, or nothing when it was not sent. */
void shim_pred_dispatch(struct shim *s, struct shim_prediction *p, json_t *worker_input, bool direct,
                        struct kiln_buf *sent);
/* Finish P with STATUS and ERROR (may be NULL): completion time, slot, webhook, temp dir. */
void shim_pred_finish(struct shim *s, struct shim_prediction *p, enum shim_status st, const char *error);
/* Handle a prediction event from the worker ("started", "output", "done", "failed", "canceled", "log"). */
void shim_pred_event(struct shim *s, const char *type, json_t *ev);
/* Append TEXT to P's logs (webhook "logs"). */
void shim_pred_log(struct shim *s, struct shim_prediction *p, const char *text, size_t len);
/* Fail every unfinished prediction with ERROR (the worker died). */
void shim_pred_fail_all(struct shim *s, const char *error);
/* Ask for P to be canceled: 0, or -1 when it is not running. */
int shim_pred_cancel(struct shim *s, struct shim_prediction *p);
/* Free every prediction (at exit; no thread uses them any more). */
void shim_pred_free_all(struct shim *s);

/* ---- worker.c ---- */

/* Finish setup (s->lock held): STATUS "succeeded" or "failed", the health that follows, ERROR appended to
 * the setup logs when not NULL. Only the first call counts. */
void shim_setup_done(struct shim *s, const char *status, enum shim_health health, const char *error);
/* Handle one event (PROTOCOL.md's shape) as if it came from the worker's fd 3 (s->lock not held: takes it).
 */
void shim_worker_event(struct shim *s, json_t *ev);
/* Spawn the Python worker (or start the native predictor: "native:PATH") and the thread that reads its events
 * and output. */
int shim_worker_start(struct shim *s, struct kiln_error **err);
/* Send one request line (s->lock not held). 0, or -1 when the worker is gone. */
int shim_worker_send(struct shim *s, json_t *msg);
/* Ask the worker to exit, wait up to TIMEOUT seconds, then kill it; join the reader. */
void shim_worker_stop(struct shim *s, double timeout);
/* Kill the worker at once (setup timeout). */
void shim_worker_kill(struct shim *s);

/* ---- native.c: a native predictor (include/kiln/predictor.h) in this process, in the worker's place ---- */

/* Capture fds 1 and 2, load the library at PATH (relative to the project) and run its setup() in a thread;
 * predictions then run in s->concurrency threads. Events reach predictions.c through shim_worker_event. */
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

/* ---- server.c ---- */

int shim_server_start(struct shim *s, struct kiln_error **err);
/* Stop accepting connections (the listening socket stays open until shim_server_stop). */
void shim_server_quiesce(struct shim *s);
void shim_server_stop(struct shim *s);
/* Resume the connections that wait for P to change (s->lock held). */
void shim_server_wake(struct shim *s, struct shim_prediction *p);
/* Resume the event streams that have been quiet for 15 s, for their keep-alive (s->lock not held). */
void shim_server_tick(struct shim *s);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* native.c: native predictors (include/kiln/predictor.h) in the shim's process, in the Python worker's place.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "kiln/predictor.h"
#include "shim/server.h"

#define LINE_MAX_BYTES     (1024 * 1024) /* a longer line of output is cut there */
#define DIRECT_MAX_SECONDS 0.0005 /* predict() runs on its request's thread when it takes less, lately */

/* Cog's OpenAPI document without Input and Output (templates/python/kiln_schema.py's document()). */
static const char DOCUMENT[] =
    "{\"openapi\":\"3.0.2\",\"info\":{\"title\":\"Cog\",\"version\":\"0.1.0\"},\"paths\":{\"/\":{\"get"
    "\":{\"summary\":\"Root\",\"operationId\":\"root__get\",\"responses\":{\"200\":{\"description\":\"S"
    "uccessful Response\",\"content\":{\"application/json\":{\"schema\":{}}}}}}},\"/health-check\":{\"g"
    "et\":{\"summary\":\"Healthcheck\",\"operationId\":\"healthcheck_health_check_get\",\"responses\":{"
    "\"200\":{\"description\":\"Successful Response\",\"content\":{\"application/json\":{\"schema\":{}}"
    "}}}}},\"/predictions\":{\"post\":{\"summary\":\"Predict\",\"description\":\"Run a single predictio"
    "n on the model\",\"operationId\":\"predict_predictions_post\",\"parameters\":[{\"required\":false,"
    "\"schema\":{\"title\":\"Prefer\",\"type\":\"string\"},\"name\":\"prefer\",\"in\":\"header\"}],\"re"
    "questBody\":{\"content\":{\"application/json\":{\"schema\":{\"$ref\":\"#/components/schemas/Predic"
    "tionRequest\"}}}},\"responses\":{\"200\":{\"description\":\"Successful Response\",\"content\":{\"a"
    "pplication/json\":{\"schema\":{\"$ref\":\"#/components/schemas/PredictionResponse\"}}}},\"422\":{"
    "\"description\":\"Validation Error\",\"content\":{\"application/json\":{\"schema\":{\"$ref\":\"#/c"
    "omponents/schemas/HTTPValidationError\"}}}}}}},\"/predictions/{prediction_id}\":{\"put\":{\"summar"
    "y\":\"Predict Idempotent\",\"description\":\"Run a single prediction on the model (idempotent crea"
    "tion).\",\"operationId\":\"predict_idempotent_predictions__prediction_id__put\",\"parameters\":[{"
    "\"required\":true,\"schema\":{\"title\":\"Prediction Id\",\"type\":\"string\"},\"name\":\"predicti"
    "on_id\",\"in\":\"path\"},{\"required\":false,\"schema\":{\"title\":\"Prefer\",\"type\":\"string\"}"
    ",\"name\":\"prefer\",\"in\":\"header\"}],\"requestBody\":{\"required\":true,\"content\":{\"applica"
    "tion/json\":{\"schema\":{\"allOf\":[{\"$ref\":\"#/components/schemas/PredictionRequest\"}],\"title"
    "\":\"Prediction Request\"}}}},\"responses\":{\"200\":{\"description\":\"Successful Response\",\"co"
    "ntent\":{\"application/json\":{\"schema\":{\"$ref\":\"#/components/schemas/PredictionResponse\"}}}"
    "},\"422\":{\"description\":\"Validation Error\",\"content\":{\"application/json\":{\"schema\":{\"$"
    "ref\":\"#/components/schemas/HTTPValidationError\"}}}}}}},\"/predictions/{prediction_id}/cancel\":"
    "{\"post\":{\"summary\":\"Cancel\",\"description\":\"Cancel a running prediction\",\"operationId\":"
    "\"cancel_predictions__prediction_id__cancel_post\",\"parameters\":[{\"required\":true,\"schema\":{"
    "\"title\":\"Prediction Id\",\"type\":\"string\"},\"name\":\"prediction_id\",\"in\":\"path\"}],\"re"
    "sponses\":{\"200\":{\"description\":\"Successful Response\",\"content\":{\"application/json\":{\"s"
    "chema\":{}}}},\"422\":{\"description\":\"Validation Error\",\"content\":{\"application/json\":{\"s"
    "chema\":{\"$ref\":\"#/components/schemas/HTTPValidationError\"}}}}}}},\"/shutdown\":{\"post\":{\"s"
    "ummary\":\"Start Shutdown\",\"operationId\":\"start_shutdown_shutdown_post\",\"responses\":{\"200"
    "\":{\"description\":\"Successful Response\",\"content\":{\"application/json\":{\"schema\":{}}}}}}}"
    "},\"components\":{\"schemas\":{\"HTTPValidationError\":{\"title\":\"HTTPValidationError\",\"type\""
    ":\"object\",\"properties\":{\"detail\":{\"title\":\"Detail\",\"type\":\"array\",\"items\":{\"$ref"
    "\":\"#/components/schemas/ValidationError\"}}}},\"ValidationError\":{\"title\":\"ValidationError\""
    ",\"required\":[\"loc\",\"msg\",\"type\"],\"type\":\"object\",\"properties\":{\"loc\":{\"title\":\""
    "Location\",\"type\":\"array\",\"items\":{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"integer\"}]}"
    "},\"msg\":{\"title\":\"Message\",\"type\":\"string\"},\"type\":{\"title\":\"Error Type\",\"type\":"
    "\"string\"}}},\"PredictionRequest\":{\"title\":\"PredictionRequest\",\"type\":\"object\",\"propert"
    "ies\":{\"id\":{\"title\":\"Id\",\"type\":\"string\"},\"input\":{\"$ref\":\"#/components/schemas/In"
    "put\"},\"webhook\":{\"title\":\"Webhook\",\"type\":\"string\",\"format\":\"uri\",\"minLength\":1,"
    "\"maxLength\":65536},\"webhook_events_filter\":{\"title\":\"Webhook Events Filter\",\"type\":\"arr"
    "ay\",\"items\":{\"$ref\":\"#/components/schemas/WebhookEvent\"},\"default\":[\"start\",\"output\","
    "\"logs\",\"completed\"]},\"created_at\":{\"title\":\"Created At\",\"type\":\"string\",\"format\":"
    "\"date-time\"}}},\"PredictionResponse\":{\"title\":\"PredictionResponse\",\"type\":\"object\",\"pr"
    "operties\":{\"input\":{\"$ref\":\"#/components/schemas/Input\"},\"output\":{\"$ref\":\"#/component"
    "s/schemas/Output\"},\"id\":{\"title\":\"Id\",\"type\":\"string\"},\"version\":{\"title\":\"Version"
    "\",\"type\":\"string\"},\"created_at\":{\"title\":\"Created At\",\"type\":\"string\",\"format\":\""
    "date-time\"},\"started_at\":{\"title\":\"Started At\",\"type\":\"string\",\"format\":\"date-time\""
    "},\"completed_at\":{\"title\":\"Completed At\",\"type\":\"string\",\"format\":\"date-time\"},\"log"
    "s\":{\"title\":\"Logs\",\"type\":\"string\",\"default\":\"\"},\"error\":{\"title\":\"Error\",\"typ"
    "e\":\"string\"},\"status\":{\"$ref\":\"#/components/schemas/Status\"},\"metrics\":{\"title\":\"Met"
    "rics\",\"type\":\"object\"}}},\"Status\":{\"title\":\"Status\",\"description\":\"An enumeration.\""
    ",\"type\":\"string\",\"enum\":[\"starting\",\"processing\",\"succeeded\",\"canceled\",\"failed\"]}"
    ",\"WebhookEvent\":{\"title\":\"WebhookEvent\",\"description\":\"An enumeration.\",\"type\":\"strin"
    "g\",\"enum\":[\"start\",\"output\",\"logs\",\"completed\"]}}}}";

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

/* A message made with printf's FORMAT (never NULL: aborts when out of memory). */
static char *msgf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *msgf(const char *fmt, ...)
{
	char *out;
	va_list ap;
	va_start(ap, fmt);
	int rc = vasprintf(&out, fmt, ap);
	va_end(ap);
	if (rc < 0)
		abort();
	return out;
}

/* Free P, a string the library returned, with its own free when it has one. */
static void release(struct shim_native *n, char *p)
{
	if (p && n->free)
		n->free(p);
	else
		free(p);
}

/* Send an event to predictions.c (and free it). */
static void emit(struct shim *s, json_t *ev)
{
	if (ev)
		shim_worker_event(s, ev);
	json_decref(ev);
}

/* ---- captured output ---- */

/* A log event for TEXT (LEN bytes), of the prediction that runs when exactly one does, else of no one.
 * Bytes that are not UTF-8 become '?'. */
static void emit_log(struct shim *s, const char *text, size_t len)
{
	struct shim_native *n = s->native;
	json_t *id = json_null();
	int running = 0;
	pthread_mutex_lock(&n->lock);
	for (long i = 0; i < 2 * n->nworkers; i++) {
		struct native_worker *w = i < n->nworkers ? &n->workers[i] : &n->direct[i - n->nworkers];
		if (w->job && running++ == 0) {
			json_decref(id);
			id = json_string(w->job->id);
		} else if (w->job) {
			json_decref(id);
			id = json_null();
		}
	}
	pthread_mutex_unlock(&n->lock);
	json_t *str = json_stringn(text, len);
	if (!str) {
		_cleanup_free_ char *copy = malloc(len);
		for (size_t i = 0; copy && i < len; i++)
			copy[i] = (unsigned char)text[i] < 0x80 ? text[i] : '?';
		str = copy ? json_stringn(copy, len) : json_string("");
	}
	emit(s, json_pack("{s:s, s:o, s:o}", "type", "log", "id", id, "text", str));
}

/* Read what the pipes hold now and emit each complete line (with its newline); with FLUSH, the unfinished
 * ones too. n->capture_lock held. */
static void pump(struct shim *s, bool flush)
{
	struct shim_native *n = s->native;
	for (int k = 0; k < 2; k++) {
		struct kiln_buf *b = &n->lines[k];
		char chunk[65536];
		for (;;) {
			ssize_t r = n->eof[k] ? 0 : read(n->pipes[k], chunk, sizeof(chunk));
			if (r < 0 && errno == EINTR)
				continue;
			if (r == 0)
				n->eof[k] = true;
			if (r <= 0)
				break;
			kiln_buf_put(b, chunk, (size_t)r);
			size_t start = 0;
			for (size_t i = 0; i < b->len; i++) {
				if (b->ptr[i] == '\n' || i - start + 1 >= LINE_MAX_BYTES) {
					emit_log(s, b->ptr + start, i - start + 1);
					start = i + 1;
				}
			}
			memmove(b->ptr, b->ptr + start, b->len - start);
			b->len -= start;
		}
		if (flush && b->len) {
			kiln_buf_puts(b, "\n");
			emit_log(s, b->ptr, b->len);
			b->len = 0;
		}
	}
}

/* Make sure what the library wrote so far has become log events (before its prediction ends). */
static void capture_flush(struct shim *s)
{
	/* __fpending takes no lock: the streams' locks are not touched when nothing is buffered */
	if (__fpending(stdout))
		fflush(stdout);
	if (__fpending(stderr))
		fflush(stderr);
	/* Nothing to wait for when the pipes are empty and the capture thread holds nothing: one poll(2)
	 * instead of the lock and two reads. The pipes first: the thread marks itself pumping before it
	 * reads, so bytes gone from a pipe are seen as pumping or partial. */
	struct shim_native *n = s->native;
	struct pollfd pfd[2] = {{.fd = n->eof[0] ? -1 : n->pipes[0], .events = POLLIN},
	                        {.fd = n->eof[1] ? -1 : n->pipes[1], .events = POLLIN}};
	if (poll(pfd, 2, 0) == 0 && !__atomic_load_n(&n->pumping, __ATOMIC_SEQ_CST) &&
	    !__atomic_load_n(&n->partial, __ATOMIC_SEQ_CST))
		return;
	pthread_mutex_lock(&n->capture_lock);
	pump(s, true);
	__atomic_store_n(&n->partial, false, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&n->capture_lock);
}

/* The capture thread: turns lines written to fds 1 and 2 into log events until n->wake is signaled. */
static void *capture_main(void *arg)
{
	struct shim *s = arg;
	struct shim_native *n = s->native;
	for (;;) {
		pthread_mutex_lock(&n->capture_lock);
		struct pollfd pfd[3] = {{.fd = n->eof[0] ? -1 : n->pipes[0], .events = POLLIN},
		                        {.fd = n->eof[1] ? -1 : n->pipes[1], .events = POLLIN},
		                        {.fd = n->wake, .events = POLLIN}};
		pthread_mutex_unlock(&n->capture_lock);
		if (poll(pfd, 3, -1) < 0 && errno != EINTR)
			break;
		bool stop = pfd[2].revents != 0;
		__atomic_store_n(&n->pumping, true, __ATOMIC_SEQ_CST);
		pthread_mutex_lock(&n->capture_lock);
		pump(s, stop);
		__atomic_store_n(&n->partial, n->lines[0].len + n->lines[1].len > 0, __ATOMIC_SEQ_CST);
		pthread_mutex_unlock(&n->capture_lock);
		__atomic_store_n(&n->pumping, false, __ATOMIC_SEQ_CST);
		if (stop)
			break;
	}
	return NULL;
}

/* Point fds 1 and 2 at pipes that the capture thread reads; the shim's own log keeps the old stderr. */
static int capture_start(struct shim *s, struct kiln_error **err)
{
	struct shim_native *n = s->native;
	int out[2] = {-1, -1}, er[2] = {-1, -1};
	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(er, O_CLOEXEC) < 0 ||
	    (n->wake = eventfd(0, EFD_CLOEXEC)) < 0) {
		int e = errno;
		for (int i = 0; i < 2; i++) {
			if (out[i] >= 0)
				close(out[i]);
			if (er[i] >= 0)
				close(er[i]);
		}
		return kiln_error_errno(err, e, "cannot create the pipes for the predictor's output");
	}
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	fcntl(er[0], F_SETFL, O_NONBLOCK);
	n->pipes[0] = out[0];
	n->pipes[1] = er[0];
	fflush(stdout);
	fflush(stderr);
	n->saved[0] = fcntl(1, F_DUPFD_CLOEXEC, 10);
	n->saved[1] = fcntl(2, F_DUPFD_CLOEXEC, 10);
	FILE *log = n->saved[1] >= 0 ? fdopen(n->saved[1], "w") : NULL;
	if (n->saved[0] < 0 || !log)
		return kiln_error_errno(err, errno, "cannot keep the shim's stdout and stderr");
	setvbuf(log, NULL, _IOLBF, 0);
	shim_log_file = log;
	dup2(out[1], 1);
	dup2(er[1], 2);
	close(out[1]);
	close(er[1]);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (pthread_create(&n->capture, NULL, capture_main, s) != 0)
		return kiln_error_set(err, KILN_EFAIL, "cannot start the output capture thread");
	return 0;
}

/* Give fds 1 and 2 back to the shim and stop the capture thread after it read what is left. */
static void capture_stop(struct shim *s)
{
	struct shim_native *n = s->native;
	fflush(stdout);
	fflush(stderr);
	dup2(n->saved[0], 1);
	dup2(n->saved[1], 2);
	uint64_t one = 1;
	if (write(n->wake, &one, sizeof(one)) < 0)
		shim_log("warning", NULL, "cannot stop the output capture thread: %s", strerror(errno));
	pthread_join(n->capture, NULL);
	for (int k = 0; k < 2; k++) {
		close(n->pipes[k]);
		kiln_buf_release(&n->lines[k]);
	}
	close(n->saved[0]);
	close(n->wake);
}

/* ---- setup ---- */

/* dlopen the library and find its symbols. NULL, or why it cannot be used. */
static char *load(struct shim_native *n)
{
	n->handle = dlopen(n->path, RTLD_NOW | RTLD_LOCAL);
	if (!n->handle)
		return msgf("cannot load the native predictor: %s", dlerror());
	n->abi_version = (__typeof__(n->abi_version))dlsym(n->handle, "kiln_predictor_abi_version");
	n->schema = (__typeof__(n->schema))dlsym(n->handle, "kiln_predictor_schema");
	n->setup = (__typeof__(n->setup))dlsym(n->handle, "kiln_predictor_setup");
	n->predict = (__typeof__(n->predict))dlsym(n->handle, "kiln_predictor_predict");
	n->teardown = (__typeof__(n->teardown))dlsym(n->handle, "kiln_predictor_teardown");
	n->free = (__typeof__(n->free))dlsym(n->handle, "kiln_predictor_free");
	if (!n->abi_version || !n->predict)
		return msgf("'%s' is not a native predictor: it does not export %s", n->path,
		            !n->abi_version ? "kiln_predictor_abi_version" : "kiln_predictor_predict");
	int version = n->abi_version();
	if (version != KILN_PREDICTOR_ABI_VERSION)
		return msgf(
		    "'%s' implements native predictor ABI version %d; this kiln-shim implements version %d",
		    n->path, version, KILN_PREDICTOR_ABI_VERSION);
	return NULL;
}

/* The OpenAPI document: Cog's around the library's schemas (see kiln_predictor_schema). NULL with *WHY set
 * when they are not usable. */
static json_t *document(struct shim_native *n, char **why)
{
	const char *text = n->schema ? n->schema() : NULL;
	json_error_t jerr;
	json_t *types = text ? json_loads(text, 0, &jerr) : json_object();
	if (!types) {
		*why = msgf("kiln_predictor_schema: invalid JSON: %s (line %d, column %d)", jerr.text,
		            jerr.line, jerr.column);
		return NULL;
	}
	json_t *input = json_object_get(types, "Input");
	json_t *output = json_object_get(types, "Output");
	if (!json_is_object(types) || (input && !json_is_object(input)) ||
	    (output && !json_is_object(output))) {
		*why = msgf("kiln_predictor_schema: expected an object of schemas with object \"Input\" and "
		            "\"Output\"");
		json_decref(types);
		return NULL;
	}
	if (!input)
		json_object_set_new(
		    types, "Input",
		    json_pack("{s:s, s:s, s:{}}", "title", "Input", "type", "object", "properties"));
	else if (!json_object_get(input, "title"))
		json_object_set_new(input, "title", json_string("Input"));
	if (!output)
		json_object_set_new(types, "Output", json_pack("{s:s}", "title", "Output"));
	json_t *doc = json_loads(DOCUMENT, 0, &jerr);
	json_object_update_missing(json_object_get(json_object_get(doc, "components"), "schemas"), types);
	json_decref(types);
	return doc;
}

/* The setup thread: load the library, send its schema, run setup(), then "ready" or "setup_failed". */
static void *setup_main(void *arg)
{
	struct shim *s = arg;
	struct shim_native *n = s->native;
	char *why = load(n);
	json_t *doc = why ? NULL : document(n, &why);
	if (doc)
		emit(s, json_pack("{s:s, s:o}", "type", "schema", "schema", doc));
	if (!why && n->setup) {
		char *error = NULL;
		if (n->setup(n->project, &error) != 0)
			why = msgf("%s", error ? error : "kiln_predictor_setup failed");
		release(n, error);
	}
	capture_flush(s);
	pthread_mutex_lock(&n->lock);
	n->setup_done = true;
	n->setup_ok = !why;
	pthread_cond_broadcast(&n->cond);
	pthread_mutex_unlock(&n->lock);
	if (why)
		emit(s, json_pack("{s:s, s:s}", "type", "setup_failed", "error", why));
	else
		emit(s, json_pack("{s:s}", "type", "ready"));
	free(why);
	return NULL;
}

/* ---- predictions ---- */

/* Run JOB on worker W: predict(), its output made log events, then "done", "failed" or "canceled". */
static void run_job(struct shim *s, struct native_worker *w, struct native_job *job)
{
	struct shim_native *n = s->native;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	char *output = NULL, *error = NULL;
	int rc = n->predict(job->input, &output, &error);
	double seconds = shim_since(&t0);
	capture_flush(s);
	pthread_mutex_lock(&n->lock);
	w->job = NULL;
	n->recent = n->recent < 0 ? seconds : 0.8 * n->recent + 0.2 * seconds;
	bool canceled = job->canceled;
	pthread_cond_broadcast(&n->cond);
	pthread_mutex_unlock(&n->lock);
	json_t *ev;
	json_error_t jerr;
	json_t *value;
	if (canceled) {
		ev = json_pack("{s:s, s:s}", "type", "canceled", "id", job->id);
	} else if (rc != 0) {
		ev = json_pack("{s:s, s:s, s:s}", "type", "failed", "id", job->id, "error",
		               error ? error : "prediction failed");
	} else if (!(value = output ? json_loads(output, JSON_DECODE_ANY, &jerr) : json_null())) {
		_cleanup_free_ char *why =
		    msgf("kiln_predictor_predict: the output is not JSON: %s (line %d, "
		         "column %d)",
		         jerr.text, jerr.line, jerr.column);
		ev = json_pack("{s:s, s:s, s:s}", "type", "failed", "id", job->id, "error", why);
	} else {
		ev = json_pack("{s:s, s:s, s:o, s:f}", "type", "done", "id", job->id, "output", value,
		               "predict_time", seconds);
	}
	release(n, output);
	release(n, error);
	emit(s, ev);
}

static void job_free(struct native_job *job)
{
	free(job->id);
	free(job->input);
	free(job);
}

/* A prediction thread: takes jobs off the queue until the shim stops and the queue is empty. */
static void *worker_main(void *arg)
{
	struct native_worker *w = arg;
	struct shim *s = w->s;
	struct shim_native *n = s->native;
	pthread_mutex_lock(&n->lock);
	for (;;) {
		while (!n->queue && !n->stopping)
			pthread_cond_wait(&n->work, &n->lock);
		struct native_job *job = n->queue;
		if (!job)
			break;
		n->queue = job->next;
		if (!n->queue)
			n->queue_end = &n->queue;
		w->job = job->canceled ? NULL : job;
		pthread_mutex_unlock(&n->lock);
		if (job->canceled)
			emit(s, json_pack("{s:s, s:s}", "type", "canceled", "id", job->id));
		else
			run_job(s, w, job);
		job_free(job);
		pthread_mutex_lock(&n->lock);
	}
	n->live_workers--;
	pthread_cond_broadcast(&n->cond);
	pthread_mutex_unlock(&n->lock);
	return NULL;
}

int shim_native_send(struct shim *s, json_t *msg)
{
	struct shim_native *n = s->native;
	const char *type = json_string_value(json_object_get(msg, "type"));
	const char *id = json_string_value(json_object_get(msg, "id"));
	if (!type || (strcmp(type, "shutdown") != 0 && !id))
		return -1;
	pthread_mutex_lock(&n->lock);
	int rc = 0;
	if (n->stopping) {
		rc = -1;
	} else if (strcmp(type, "predict") == 0) {
		struct native_job *job = calloc(1, sizeof(*job));
		if (!job)
			abort();
		job->id = strdup(id);
		job->input = json_dumps(json_object_get(msg, "input"), JSON_COMPACT);
		if (!job->input)
			job->input = strdup("{}");
		*n->queue_end = job;
		n->queue_end = &job->next;
		pthread_cond_signal(&n->work);
	} else if (strcmp(type, "cancel") == 0) {
		/* native code cannot be interrupted: a running prediction is reported canceled when it
		 * returns */
		for (struct native_job *job = n->queue; job; job = job->next)
			if (strcmp(job->id, id) == 0)
				job->canceled = true;
		for (long i = 0; i < n->nworkers; i++) {
			if (n->workers[i].job && strcmp(n->workers[i].job->id, id) == 0)
				n->workers[i].job->canceled = true;
			if (n->direct[i].job && strcmp(n->direct[i].job->id, id) == 0)
				n->direct[i].job->canceled = true;
		}
	}
	pthread_mutex_unlock(&n->lock);
	return rc;
}

int shim_native_predict_direct(struct shim *s, const char *id, json_t *input)
{
	struct shim_native *n = s->native;
	pthread_mutex_lock(&n->lock);
	if (n->stopping) {
		pthread_mutex_unlock(&n->lock);
		return -1;
	}
	struct native_worker *w = NULL;
	for (long i = 0; i < n->nworkers && !w; i++)
		if (!n->direct[i].job)
			w = &n->direct[i];
	long running = n->direct_running;
	for (long i = 0; i < n->nworkers; i++)
		running += n->workers[i].job != NULL;
	/* only a predict() known to be quick runs here: a slow one would hold up the server's event loop */
	if (!w || n->queue || running >= n->nworkers || n->recent < 0 || n->recent > DIRECT_MAX_SECONDS) {
		pthread_mutex_unlock(&n->lock);
		return 1; /* queue it */
	}
	struct native_job *job = calloc(1, sizeof(*job));
	if (!job)
		abort();
	job->id = strdup(id);
	job->input = json_dumps(input, JSON_COMPACT);
	if (!job->input)
		job->input = strdup("{}");
	w->s = s;
	w->job = job;
	n->direct_running++;
	pthread_mutex_unlock(&n->lock);
	run_job(s, w, job);
	pthread_mutex_lock(&n->lock);
	n->direct_running--;
	pthread_cond_broadcast(&n->cond);
	pthread_mutex_unlock(&n->lock);
	job_free(job);
	return 0;
}

/* ---- start and stop ---- */

int shim_native_start(struct shim *s, const char *path, struct kiln_error **err)
{
	struct shim_native *n = calloc(1, sizeof(*n));
	if (!n)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	pthread_mutex_init(&n->lock, NULL);
	pthread_cond_init(&n->cond, NULL);
	pthread_cond_init(&n->work, NULL);
	pthread_mutex_init(&n->capture_lock, NULL);
	n->queue_end = &n->queue;
	n->recent = -1;
	n->project = realpath(s->project, NULL);
	_cleanup_free_ char *joined = n->project ? kiln_path_join(n->project, path) : NULL;
	n->path = joined ? realpath(joined, NULL) : NULL;
	if (!n->project || !n->path || chdir(n->project) < 0) {
		int e = errno;
		free(n->project);
		free(n->path);
		free(n);
		return kiln_error_errno(err, e, "cannot find the native predictor '%s' in '%s'", path,
		                        s->project);
	}
	n->nworkers = s->concurrency > 0 ? s->concurrency : 1;
	n->workers = calloc((size_t)n->nworkers, sizeof(*n->workers));
	n->direct = calloc((size_t)n->nworkers, sizeof(*n->direct));
	if (!n->workers || !n->direct)
		abort();
	s->native = n;
	if (capture_start(s, err) < 0) {
		s->native = NULL; /* N stays: fds may point at its pipes */
		return -1;
	}
	n->capture_started = true;
	pthread_mutex_lock(&n->lock);
	for (long i = 0; i < n->nworkers; i++) {
		n->workers[i].s = s;
		if (pthread_create(&n->workers[i].thread, NULL, worker_main, &n->workers[i]) != 0)
			break;
		n->started_workers++;
		n->live_workers++;
	}
	bool ok = n->started_workers == n->nworkers;
	if (!ok || pthread_create(&n->setup_thread, NULL, setup_main, s) != 0) {
		n->setup_done = true; /* no setup to wait for */
		pthread_mutex_unlock(&n->lock);
		return kiln_error_set(err, KILN_EFAIL, "cannot start the native predictor's threads");
	}
	n->setup_thread_started = true;
	pthread_mutex_unlock(&n->lock);
	shim_log("info", json_pack("{s:s, s:i}", "library", n->path, "concurrency", (int)n->nworkers),
	         "loading the native predictor");
	return 0;
}

void shim_native_kill(struct shim *s)
{
	shim_log("warning", NULL,
	         "a native predictor's setup cannot be interrupted: it goes on in the background");
}

void shim_native_stop(struct shim *s, double timeout)
{
	struct shim_native *n = s->native;
	struct timespec end;
	clock_gettime(CLOCK_REALTIME, &end);
	end.tv_sec += (time_t)timeout;
	pthread_mutex_lock(&n->lock);
	n->stopping = true;
	pthread_cond_broadcast(&n->cond);
	pthread_cond_broadcast(&n->work);
	while (n->live_workers > 0 || n->direct_running > 0 || !n->setup_done)
		if (pthread_cond_timedwait(&n->cond, &n->lock, &end) == ETIMEDOUT)
			break;
	bool idle = n->live_workers == 0 && n->direct_running == 0, setup_done = n->setup_done,
	     setup_ok = n->setup_ok;
	pthread_mutex_unlock(&n->lock);
	if (setup_done && n->setup_thread_started)
		pthread_join(n->setup_thread, NULL);
	if (idle) {
		for (long i = 0; i < n->started_workers; i++)
			pthread_join(n->workers[i].thread, NULL);
		if (setup_ok && n->teardown)
			n->teardown();
	} else {
		shim_log("warning", json_pack("{s:f}", "timeout", timeout),
		         "native predictions still run: not calling kiln_predictor_teardown");
	}
	capture_stop(s);
	if (!idle || !setup_done)
		return; /* threads still use N: it stays until the process ends */
	/* the library stays loaded: its destructors may still be needed by what it started */
	free(n->workers);
	free(n->direct);
	free(n->project);
	free(n->path);
	pthread_mutex_destroy(&n->lock);
	pthread_cond_destroy(&n->cond);
	pthread_cond_destroy(&n->work);
	pthread_mutex_destroy(&n->capture_lock);
	s->native = NULL;
	free(n);
}

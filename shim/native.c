/* SPDX-License-Identifier: Apache-2.0 */
/* native.c: native predictors (include/kiln/predictor.h) in the shim's process, in the Python worker's
 * place: loading, setup, prediction threads. Their output on fds 1 and 2: native_capture.c. */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "kiln/predictor.h"
#include "shim/native.h"

#define DIRECT_MAX_SECONDS 0.0005 /* predict() runs on its request's thread when it takes less, lately */

/* Cog's OpenAPI document without Input and Output, as templates/python/kiln_schema_openapi.py's document()
 * writes it (Cog 0.22's static generator: its paths, components and key order). */
static const char DOCUMENT[] =
    "{\"components\":{\"schemas\":{\"PredictionRequest\":{\"properties\":{\"id\":{\"title\":\"Id\",\""
    "type\":\"string\"},\"input\":{\"$ref\":\"#/components/schemas/Input\"}},\"title\":\"PredictionRe"
    "quest\",\"type\":\"object\"},\"PredictionResponse\":{\"properties\":{\"completed_at\":{\"format\""
    ":\"date-time\",\"title\":\"Completed At\",\"type\":\"string\"},\"created_at\":{\"format\":\"date"
    "-time\",\"title\":\"Created At\",\"type\":\"string\"},\"error\":{\"title\":\"Error\",\"type\":\""
    "string\"},\"id\":{\"title\":\"Id\",\"type\":\"string\"},\"input\":{\"$ref\":\"#/components/schem"
    "as/Input\"},\"logs\":{\"title\":\"Logs\",\"type\":\"string\"},\"metrics\":{\"title\":\"Metrics\""
    ",\"type\":\"object\"},\"output\":{\"$ref\":\"#/components/schemas/Output\"},\"started_at\":{\"fo"
    "rmat\":\"date-time\",\"title\":\"Started At\",\"type\":\"string\"},\"status\":{\"title\":\"Statu"
    "s\",\"type\":\"string\"},\"version\":{\"title\":\"Version\",\"type\":\"string\"}},\"title\":\"Pr"
    "edictionResponse\",\"type\":\"object\"},\"Status\":{\"description\":\"An enumeration.\",\"enum\""
    ":[\"starting\",\"processing\",\"succeeded\",\"canceled\",\"failed\"],\"title\":\"Status\",\"type"
    "\":\"string\"},\"HTTPValidationError\":{\"properties\":{\"detail\":{\"items\":{\"$ref\":\"#/comp"
    "onents/schemas/ValidationError\"},\"title\":\"Detail\",\"type\":\"array\"}},\"title\":\"HTTPVali"
    "dationError\",\"type\":\"object\"},\"ValidationError\":{\"properties\":{\"loc\":{\"items\":{\"an"
    "yOf\":[{\"type\":\"string\"},{\"type\":\"integer\"}]},\"title\":\"Location\",\"type\":\"array\"}"
    ",\"msg\":{\"title\":\"Message\",\"type\":\"string\"},\"type\":{\"title\":\"Error Type\",\"type\""
    ":\"string\"}},\"required\":[\"loc\",\"msg\",\"type\"],\"title\":\"ValidationError\",\"type\":\"o"
    "bject\"}}},\"info\":{\"title\":\"Cog\",\"version\":\"0.1.0\"},\"openapi\":\"3.0.2\",\"paths\":{\""
    "/\":{\"get\":{\"operationId\":\"root__get\",\"responses\":{\"200\":{\"content\":{\"application/j"
    "son\":{\"schema\":{}}},\"description\":\"Successful Response\"}},\"summary\":\"Root\"}},\"/healt"
    "h-check\":{\"get\":{\"operationId\":\"healthcheck_health_check_get\",\"responses\":{\"200\":{\"c"
    "ontent\":{\"application/json\":{\"schema\":{}}},\"description\":\"Successful Response\"}},\"summ"
    "ary\":\"Healthcheck\"}},\"/predictions\":{\"post\":{\"description\":\"Run a single prediction on"
    " the model\",\"operationId\":\"predict_predictions_post\",\"requestBody\":{\"content\":{\"applic"
    "ation/json\":{\"schema\":{\"$ref\":\"#/components/schemas/PredictionRequest\"}}}},\"responses\":"
    "{\"200\":{\"content\":{\"application/json\":{\"schema\":{\"$ref\":\"#/components/schemas/Predict"
    "ionResponse\"}}},\"description\":\"Successful Response\"},\"422\":{\"content\":{\"application/js"
    "on\":{\"schema\":{\"$ref\":\"#/components/schemas/HTTPValidationError\"}}},\"description\":\"Val"
    "idation Error\"}},\"summary\":\"Predict\"}},\"/predictions/{prediction_id}/cancel\":{\"post\":{\""
    "operationId\":\"cancel_predictions__prediction_id__cancel_post\",\"parameters\":[{\"in\":\"path\""
    ",\"name\":\"prediction_id\",\"required\":true,\"schema\":{\"title\":\"Prediction Id\",\"type\":\""
    "string\"}}],\"responses\":{\"200\":{\"content\":{\"application/json\":{\"schema\":{}}},\"descrip"
    "tion\":\"Successful Response\"},\"422\":{\"content\":{\"application/json\":{\"schema\":{\"$ref\""
    ":\"#/components/schemas/HTTPValidationError\"}}},\"description\":\"Validation Error\"}},\"summar"
    "y\":\"Cancel\"}}}}";

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
void native_emit(struct shim *s, json_t *ev)
{
	if (ev)
		shim_worker_event(s, ev);
	json_decref(ev);
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
	/* the components in Cog's order: Input, Output, the library's other schemas, then the envelope's */
	json_t *doc = json_loads(DOCUMENT, 0, &jerr);
	json_t *components = json_object_get(doc, "components");
	json_t *schemas = json_object();
	if (!doc || !schemas || json_object_set(schemas, "Input", json_object_get(types, "Input")) < 0 ||
	    json_object_set(schemas, "Output", json_object_get(types, "Output")) < 0 ||
	    json_object_update_missing(schemas, types) < 0 ||
	    json_object_update_missing(schemas, json_object_get(components, "schemas")) < 0 ||
	    json_object_set_new(components, "schemas", json_incref(schemas)) < 0) {
		*why = msgf("out of memory");
		json_decref(schemas);
		json_decref(types);
		json_decref(doc);
		return NULL;
	}
	json_decref(schemas);
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
		native_emit(s, json_pack("{s:s, s:o}", "type", "schema", "schema", doc));
	if (!why && n->setup) {
		char *error = NULL;
		if (n->setup(n->project, &error) != 0)
			why = msgf("%s", error ? error : "kiln_predictor_setup failed");
		release(n, error);
	}
	native_capture_flush(s);
	pthread_mutex_lock(&n->lock);
	n->setup_done = true;
	n->setup_ok = !why;
	pthread_cond_broadcast(&n->cond);
	pthread_mutex_unlock(&n->lock);
	if (why)
		native_emit(s, json_pack("{s:s, s:s}", "type", "setup_failed", "error", why));
	else
		native_emit(s, json_pack("{s:s}", "type", "ready"));
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
	native_capture_flush(s);
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
	} else if (!(value = output ? json_loads(output, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr)
	                            : json_null())) {
		_cleanup_free_ char *why =
		    msgf("kiln_predictor_predict: the output is not JSON: %s (line %d, "
		         "column %d)",
		         jerr.text, jerr.line, jerr.column);
		ev = json_pack("{s:s, s:s, s:s}", "type", "failed", "id", job->id, "error", why);
	} else {
		/* the ABI's file outputs, {"$path": P}, marked out of band as the runner marks them */
		json_t *files = shim_files_take_path_markers(&value);
		ev = files ? json_pack("{s:s, s:s, s:o, s:o, s:f}", "type", "done", "id", job->id, "output",
		                       value, "files", files, "predict_time", seconds)
		           : json_pack("{s:s, s:s, s:s}", "type", "failed", "id", job->id, "error",
		                       "out of memory");
		if (!files)
			json_decref(value);
	}
	release(n, output);
	release(n, error);
	native_emit(s, ev);
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
			native_emit(s, json_pack("{s:s, s:s}", "type", "canceled", "id", job->id));
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
		job->input = kiln_json_dumps(json_object_get(msg, "input"), JSON_COMPACT);
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
	job->input = kiln_json_dumps(input, JSON_COMPACT);
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
	if (native_capture_start(s, err) < 0) {
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
	native_capture_stop(s);
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

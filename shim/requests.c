/* SPDX-License-Identifier: Apache-2.0 */
/* requests.c: prediction and training requests: POST /predictions, PUT /predictions/{id}, cancel, and the
 * same under /trainings; file inputs fetched before the job is sent (after the answer, for asynchronous
 * ones). */
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "shim/http.h"

/* The 406 answer to Accept: text/event-stream for a predictor that does not stream. */
#define NOT_STREAMING                                                                                        \
	"this model does not stream its predictions: mark its run() or predict() @cog.streaming (and "       \
	"return "                                                                                            \
	"an Iterator) to answer Accept: text/event-stream"

/* The 406 answer to Accept: text/event-stream on /trainings. */
#define NOT_STREAMING_TRAINING                                                                               \
	"training endpoints do not stream: POST /trainings and PUT /trainings/{id} answer in JSON only"

/* The 503 answer's error while predictions cannot run, or NULL when they can (s->lock held): coglet's words
 * while STARTING, kiln's (which say why) else. */
static const char *not_ready(const struct shim *s)
{
	if (s->draining)
		return "the server is shutting down";
	switch (s->health) {
	case SHIM_STARTING:
		return "Setup has not finished yet";
	case SHIM_SETUP_FAILED:
		return "setup failed: see /health-check";
	case SHIM_DEFUNCT:
		return "the predictor's worker has exited: the server is DEFUNCT";
	default:
		return NULL;
	}
}

/* Answer a prediction request with P (s->lock held, one reference held and handed over): 202 with its
 * current state when ASYNC, an event stream when SSE (ATTACH: P was there before the request), else its
 * final state once it is finished. */
static enum MHD_Result answer(struct shim *s, struct MHD_Connection *c, struct request *req,
                              struct shim_job *p, bool async, bool sse, bool attach, unsigned async_status)
{
	if (sse)
		return http_sse_answer(s, c, p, attach);
	if (!async && p->status < JOB_SUCCEEDED && !s->server_stopping) {
		/* answered when it finishes: on_request again, after s->job_changed resumed it */
		req->pred = p;
		http_suspend_on(p, &req->wait, c);
		pthread_mutex_unlock(&s->lock);
		return MHD_YES;
	}
	return http_reply_pred(s, c, async ? async_status : 200, p);
}

/* Whether SCHEMA (an input's) may describe a file: a "format": "uri" or a "$ref" anywhere in it. */
static bool may_be_file(const json_t *schema, int depth)
{
	if (depth > 64)
		return true; /* too deep to tell: assume it may */
	if (json_is_object(schema)) {
		const char *format = json_string_value(json_object_get(schema, "format"));
		if ((format && strcmp(format, "uri") == 0) || json_object_get(schema, "$ref"))
			return true;
		const char *key;
		json_t *v;
		json_object_foreach((json_t *)schema, key, v) if (may_be_file(v, depth + 1)) return true;
	} else if (json_is_array(schema)) {
		size_t i;
		json_t *v;
		json_array_foreach(schema, i, v) if (may_be_file(v, depth + 1)) return true;
	}
	return false;
}

/* The schema a job of KIND checks its input against (s->lock held): the predictor's, or the trainer's view
 * of it (NULL: no trainer). */
static json_t *schema_of(const struct shim *s, enum shim_job_kind kind)
{
	return kind == SHIM_JOB_TRAINING ? s->train_schema : s->schema;
}

/* Whether INPUT may have a file value to fetch into a directory. Conservative: shim_files_fetch_inputs only
 * fetches strings, alone or in arrays, of inputs whose schema is a URI. s->lock held. */
static bool may_fetch(struct shim *s, enum shim_job_kind kind, const json_t *input)
{
	const json_t *props = json_object_get(
	    json_object_get(json_object_get(json_object_get(schema_of(s, kind), "components"), "schemas"),
	                    "Input"),
	    "properties");
	const char *name;
	json_t *v;
	json_object_foreach((json_t *)input, name, v)
	{
		bool strings = json_is_string(v);
		size_t i;
		json_t *item;
		if (json_is_array(v))
			json_array_foreach(v, i, item) strings = strings || json_is_string(item);
		if (strings && may_be_file(json_object_get(props, name), 0))
			return true;
	}
	return false;
}

/* Download the file inputs of INPUT into a new temp dir of P (made only when there may be one) and send P
 * to the worker. 0, or -1 after finishing P as failed with MSG set. */
static int prepare_and_dispatch(struct shim *s, struct shim_job *p, bool fetch, bool direct,
                                struct kiln_buf *sent, char *msg, size_t size)
{
	if (!fetch) {
		shim_job_dispatch(s, p, p->input, direct, sent);
		return 0;
	}
	json_t *input = json_deep_copy(p->input);
	{
		const char *tmp = getenv("TMPDIR");
		char dir[4096];
		snprintf(dir, sizeof(dir), "%s/kiln-shim-XXXXXX", tmp && *tmp ? tmp : "/tmp");
		_cleanup_error_ struct kiln_error *err = NULL;
		int rc = -1;
		pthread_mutex_lock(&s->lock);
		json_t *schema = json_incref(schema_of(s, p->kind));
		pthread_mutex_unlock(&s->lock);
		if (!mkdtemp(dir))
			kiln_error_errno(&err, errno, "cannot create a directory for the file inputs");
		else
			rc = shim_files_fetch_inputs(schema, input, dir, &err);
		json_decref(schema);
		pthread_mutex_lock(&s->lock);
		if (*dir && rc == 0 && !p->tmpdir)
			p->tmpdir = strdup(dir);
		else if (rc < 0 && access(dir, F_OK) == 0)
			kiln_remove_tree(dir, NULL);
		if (rc < 0) {
			snprintf(msg, size, "%s", err ? err->message : "cannot fetch the file inputs");
			shim_job_finish(s, p, JOB_FAILED, msg);
			pthread_mutex_unlock(&s->lock);
			json_decref(input);
			return -1;
		}
		pthread_mutex_unlock(&s->lock);
	}
	shim_job_dispatch(s, p, input, direct, sent);
	json_decref(input);
	return 0;
}

/* A prediction whose file inputs a thread fetches after its request was answered. */
struct fetch_job {
	struct shim *s;
	struct shim_job *p; /* one reference held */
};

static void *fetch_main(void *arg)
{
	struct fetch_job *job = arg;
	char msg[512];
	/* a file that cannot be fetched fails the prediction (its webhook says why) */
	prepare_and_dispatch(job->s, job->p, true, false, NULL, msg, sizeof(msg));
	pthread_mutex_lock(&job->s->lock);
	shim_job_release(job->s, job->p);
	pthread_mutex_unlock(&job->s->lock);
	free(job);
	return NULL;
}

/* Fetch P's file inputs and dispatch it on a thread of its own: 0, or -1 when no thread could start. */
static int fetch_later(struct shim *s, struct shim_job *p)
{
	struct fetch_job *job = malloc(sizeof(*job));
	if (!job)
		return -1;
	*job = (struct fetch_job){s, p};
	pthread_mutex_lock(&s->lock);
	p->refs++;
	pthread_mutex_unlock(&s->lock);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int rc = pthread_create(&(pthread_t){0}, &attr, fetch_main, job);
	pthread_attr_destroy(&attr);
	if (rc == 0)
		return 0;
	pthread_mutex_lock(&s->lock);
	p->refs--;
	pthread_mutex_unlock(&s->lock);
	free(job);
	return -1;
}

#define ID_MAX  128 /* characters of a prediction id */
#define ID_RULE "a prediction ID is 1 to 128 letters, digits, '-', '_', '.' or '~'"

/* Whether ID (LEN bytes) is a prediction id the shim takes: ID_RULE, the characters a URL path carries
 * unescaped (Cog's own ids are 32 hex digits). */
static bool valid_id(const char *id, size_t len)
{
	if (len == 0 || len > ID_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)id[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '-' || ch == '_' || ch == '.' || ch == '~'))
			return false;
	}
	return true;
}

/* 400 for an id in the URL that is not valid_id. */
static enum MHD_Result bad_url_id(struct MHD_Connection *c)
{
	return http_detail(c, 400, "invalid prediction ID in the URL: " ID_RULE);
}

/* The 422 for BODY's "webhook" when it is not an http(s) URL (pydantic's AnyHttpUrl), else MHD_YES
 * with *ok set. */
static enum MHD_Result check_webhook(struct MHD_Connection *c, const json_t *body, bool *ok)
{
	const json_t *hook = json_object_get(body, "webhook");
	*ok = false;
	if (hook && !json_is_null(hook) && !json_is_string(hook))
		return http_invalid(c, json_pack("[s,s]", "body", "webhook"), "str type expected",
		                    "type_error.str");
	const char *url = json_string_value(hook);
	const char *why = url && *url ? shim_webhook_url_problem(url) : NULL;
	if (why)
		return http_invalid(c, json_pack("[s,s]", "body", "webhook"), why,
		                    strstr(why, "scheme") ? "value_error.url.scheme" : "value_error.url");
	*ok = true;
	return MHD_YES;
}

/* Whether two request inputs are the same (absent and null are the empty input). */
static bool same_input(json_t *a, json_t *b)
{
	bool ea = !a || json_is_null(a) || (json_is_object(a) && json_object_size(a) == 0);
	bool eb = !b || json_is_null(b) || (json_is_object(b) && json_object_size(b) == 0);
	return ea || eb ? ea && eb : json_equal(a, b);
}

/* POST /predictions and PUT /predictions/{id} (URL_ID: the id in the URL, or NULL), or /trainings. */
enum MHD_Result http_predict(struct shim *s, struct MHD_Connection *c, struct request *req,
                             enum shim_job_kind kind, const char *url_id)
{
	if (url_id && !valid_id(url_id, strlen(url_id)))
		return bad_url_id(c);
	json_t *body;
	if (req->body.len == 0) {
		body = json_object(); /* [compat] Cog runs a prediction with empty input */
	} else {
		json_error_t jerr;
		body = json_loadb(req->body.ptr, req->body.len, JSON_DECODE_ANY, &jerr);
		if (!body) {
			char msg[256];
			snprintf(msg, sizeof(msg), "%s: line %d column %d (char %d)", jerr.text, jerr.line,
			         jerr.column, jerr.position);
			return http_reply(c, 422,
			                  json_pack("{s:[{s:[s,i], s:s, s:s, s:{s:s, s:i, s:i, s:i}}]}",
			                            "detail", "loc", "body", jerr.position, "msg", msg,
			                            "type", "value_error.jsondecode", "ctx", "msg", jerr.text,
			                            "pos", jerr.position, "lineno", jerr.line, "colno",
			                            jerr.column));
		}
	}
	__attribute__((unused)) json_auto_t *owned = body; /* frees the body on every return */
	if (!json_is_object(body))
		return http_invalid(c, json_pack("[s]", "body"), "value is not a valid dict",
		                    "type_error.dict");
	json_t *jid = json_object_get(body, "id");
	if (jid && !json_is_null(jid) && !json_is_string(jid))
		return http_invalid(c, json_pack("[s,s]", "body", "id"), "str type expected",
		                    "type_error.str");
	const char *id = json_string_value(jid);
	if (id && !valid_id(id, json_string_length(jid)))
		return http_invalid(c, json_pack("[s,s]", "body", "id"), ID_RULE, "value_error");
	if (url_id && id && strcmp(id, url_id) != 0)
		return http_invalid(c, json_pack("[s,s]", "body", "id"),
		                    "prediction ID must match the ID supplied in the URL", "value_error");
	if (url_id)
		id = url_id;
	json_t *input = json_object_get(body, "input"); /* one that is no object: the validator's 422 */
	bool hook_ok;
	enum MHD_Result hook_answer = check_webhook(c, body, &hook_ok);
	if (!hook_ok)
		return hook_answer;
	const char *prefer = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Prefer");
	bool async = prefer && strcmp(prefer, "respond-async") == 0;
	const char *accept = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
	bool sse = accept && strstr(accept, "text/event-stream");
	/* kiln predict's own header: an event stream of any model, marked @cog.streaming or not */
	const char *always = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Kiln-Stream");
	if (always && strcmp(always, "always") != 0) {
		char msg[160];
		snprintf(msg, sizeof(msg), "X-Kiln-Stream: '%.64s' is not 'always' (the only value it takes)",
		         always);
		return http_detail(c, 400, msg);
	}
	bool any_model = always != NULL;

	pthread_mutex_lock(&s->lock);
	if (http_hold(s, req, c)) { /* routed again when it may run */
		pthread_mutex_unlock(&s->lock);
		return MHD_YES;
	}
	const char *why = not_ready(s);
	if (why) {
		pthread_mutex_unlock(&s->lock);
		return http_failed(c, 503, why);
	}
	json_t *schema = schema_of(s, kind);
	if (!schema) { /* set with the schema: the runner's, once it started */
		pthread_mutex_unlock(&s->lock);
		return http_detail(c, 404, "Not Found");
	}
	if (sse && kind == SHIM_JOB_TRAINING && !any_model) {
		/* Cog 0.22: training endpoints never stream, @cog.streaming or not */
		pthread_mutex_unlock(&s->lock);
		return http_detail(c, 406, NOT_STREAMING_TRAINING);
	}
	if (sse && !s->streaming && !any_model) {
		/* Cog 0.22: only a predictor marked @cog.streaming answers with an event stream */
		pthread_mutex_unlock(&s->lock);
		return http_detail(c, 406, NOT_STREAMING);
	}
	struct shim_job *p = id ? shim_job_find(s, id) : NULL;
	if (p && p->kind != kind) {
		pthread_mutex_unlock(&s->lock);
		char msg[96];
		snprintf(msg, sizeof(msg), "a %s has this ID", shim_job_noun(p->kind));
		return http_detail(c, 409, msg);
	}
	if (p && (p->status < JOB_SUCCEEDED || same_input(json_object_get(p->body, "input"), input))) {
		/* Cog: a prediction with this ID runs already: its current state, 202 (sync or not) */
		bool running = p->status < JOB_SUCCEEDED;
		p->refs++;
		return answer(s, c, req, p, async || running, sse, true, 202);
	}
	json_t *normalized = NULL, *problems = NULL;
	json_auto_t *none = json_object(); /* no input, or null: validated as {}, as coglet does */
	if (shim_validate_input(schema, input && !json_is_null(input) ? input : none, &normalized,
	                        &problems) < 0) {
		pthread_mutex_unlock(&s->lock);
		return http_reply(c, 422, json_pack("{s:o}", "detail", problems));
	}
	if (s->busy >= s->concurrency) {
		pthread_mutex_unlock(&s->lock);
		json_decref(normalized);
		return http_failed(c, 409, "At capacity - all prediction slots busy");
	}
	p = shim_job_new(s, kind, id, body, normalized);
	json_decref(normalized);
	_cleanup_free_ char *unknown = shim_validate_unknown(schema, input);
	if (unknown) {
		/* dropped as Cog 0.22 drops them, and said so: in the shim's log and the job's own logs */
		kiln_buf_printf(&p->logs, "warning: ignored input%s %s: not an input of this model\n",
		                strchr(unknown, ',') ? "s" : "", unknown);
	}
	bool fetch = may_fetch(s, kind, p->input);
	pthread_mutex_unlock(&s->lock);
	char idtext[48];
	_cleanup_buf_ struct kiln_buf spill = KILN_BUF_INIT; /* a client's id may hold any character */
	const char *qid = shim_quoted(p->id, idtext, sizeof(idtext), &spill);
	char started[32];
	snprintf(started, sizeof(started), "%s started", shim_job_noun(kind));
	shim_log_fields("info", started, "\"%s\":%s,\"async\":%s", shim_job_id_key(kind), qid,
	                async ? "true" : "false");
	if (unknown) {
		_cleanup_buf_ struct kiln_buf names = KILN_BUF_INIT;
		const char *q = shim_quoted(unknown, NULL, 0, &names);
		shim_log_fields("warning", "ignored unknown inputs", "\"%s\":%s,\"fields\":%s",
		                shim_job_id_key(kind), qid, q);
	}

	if (fetch && (async || sse) && fetch_later(s, p) == 0) {
		/* answered now, as Cog does: its files are fetched meanwhile ("starting" until then) */
		pthread_mutex_lock(&s->lock);
		return answer(s, c, req, p, async, sse, false, 202);
	}
	char msg[512];
	_cleanup_buf_ struct kiln_buf sent = KILN_BUF_INIT;
	if (prepare_and_dispatch(s, p, fetch, !async && !sse, async && !sse ? &sent : NULL, msg,
	                         sizeof(msg)) < 0) {
		pthread_mutex_lock(&s->lock);
		shim_job_release(s, p);
		pthread_mutex_unlock(&s->lock);
		return http_invalid(c, json_pack("[s,s]", "body", "input"), msg, "value_error");
	}
	pthread_mutex_lock(&s->lock);
	if (async && !sse && sent.len) {
		/* the state it was sent in: a fast predictor may have finished it meanwhile */
		shim_job_release(s, p);
		pthread_mutex_unlock(&s->lock);
		return http_reply_text(c, 202, &sent);
	}
	return answer(s, c, req, p, async, sse, false, 202);
}

/* POST /predictions/{id}/cancel (or /trainings/...): 200 {} when a cancel was sent, 404 {} when no job of
 * KIND runs with that id. */
enum MHD_Result http_cancel(struct shim *s, struct MHD_Connection *c, enum shim_job_kind kind, const char *id)
{
	if (!valid_id(id, strlen(id)))
		return bad_url_id(c);
	pthread_mutex_lock(&s->lock);
	struct shim_job *p = shim_job_find(s, id);
	int rc = -1;
	if (p && p->kind == kind) {
		p->refs++;
		rc = shim_job_cancel(s, p);
		shim_job_release(s, p);
	}
	pthread_mutex_unlock(&s->lock);
	return http_reply(c, rc < 0 ? 404 : 200, json_object());
}

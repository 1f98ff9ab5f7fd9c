/* SPDX-License-Identifier: Apache-2.0 */
/* server.c: Cog's HTTP API with libmicrohttpd: routing, request bodies, JSON replies, prediction requests. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "shim/server.h"

/* A connection suspended until its prediction changes; in the prediction's list while suspended. Guarded
 * by shim.lock. */
struct shim_waiter {
	struct shim_waiter *next;
	struct MHD_Connection *c;
	bool linked;
	struct sse *sse; /* the event stream that waits, or NULL (a synchronous request) */
};

/* One request: its body as it arrives; then the prediction a synchronous request waits for. */
struct request {
	struct kiln_buf body;
	bool too_large;
	struct shim_prediction *pred; /* one reference held, or NULL */
	struct shim_waiter wait;
};

/* Suspend W's connection until P changes (s->lock held; from MHD's callbacks only). */
static void suspend_on(struct shim_prediction *p, struct shim_waiter *w, struct MHD_Connection *c)
{
	w->c = c;
	w->next = p->waiters;
	w->linked = true;
	p->waiters = w;
	MHD_suspend_connection(c);
}

/* Take W out of P's list when it is there (s->lock held). */
static void unlink_waiter(struct shim_prediction *p, struct shim_waiter *w)
{
	if (!w->linked)
		return;
	for (struct shim_waiter **pp = &p->waiters; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	w->linked = false;
}

void shim_server_wake(struct shim *s, struct shim_prediction *p)
{
	(void)s;
	struct shim_waiter *w = p->waiters;
	p->waiters = NULL;
	while (w) {
		struct shim_waiter *next = w->next;
		w->linked = false;
		MHD_resume_connection(w->c);
		w = next;
	}
}

/* Queue a reply with STATUS whose body is the JSON text in B (taken: B is left empty). */
static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, struct kiln_buf *b)
{
	size_t len = b->len;
	char *text = kiln_buf_detach(b);
	struct MHD_Response *r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* Queue a JSON reply (BODY is stolen) with STATUS. */
static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, json_t *body)
{
	char *text = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(15));
	json_decref(body);
	if (!text)
		return MHD_NO;
	struct kiln_buf b = {text, strlen(text), strlen(text) + 1};
	return reply_text(c, status, &b);
}

/* Reply with P's response (s->lock held, released here; the caller's reference to P is dropped). */
static enum MHD_Result reply_pred(struct shim *s, struct MHD_Connection *c, unsigned status,
                                  struct shim_prediction *p)
{
	struct kiln_buf b = KILN_BUF_INIT;
	int rc = shim_pred_text(p, &b);
	shim_pred_release(s, p);
	pthread_mutex_unlock(&s->lock);
	if (rc < 0) {
		kiln_buf_release(&b);
		return MHD_NO;
	}
	return reply_text(c, status, &b);
}

static enum MHD_Result detail(struct MHD_Connection *c, unsigned status, const char *msg)
{
	return reply(c, status, json_pack("{s:s}", "detail", msg));
}

/* FastAPI's 422 for one problem at LOC (a JSON array, stolen). */
static enum MHD_Result invalid(struct MHD_Connection *c, json_t *loc, const char *msg, const char *type)
{
	return reply(c, 422,
	             json_pack("{s:[{s:o, s:s, s:s}]}", "detail", "loc", loc, "msg", msg, "type", type));
}

static const char *health_name(const struct shim *s)
{
	static const char *const names[] = {"STARTING", "READY", "SETUP_FAILED", "DEFUNCT"};
	if (s->health == SHIM_READY && s->busy >= s->concurrency)
		return "BUSY";
	return names[s->health];
}

static json_t *hint(long v)
{
	return v < 0 ? json_null() : json_integer(v);
}

/* GET /health-check: Cog's {"status", "setup"} and kiln's extras under "kiln". */
static enum MHD_Result health_check(struct shim *s, struct MHD_Connection *c)
{
	pthread_mutex_lock(&s->lock);
	json_t *setup = json_null();
	if (s->setup_status)
		setup = json_pack("{s:s, s:s, s:s%, s:s}", "started_at", s->setup_started, "completed_at",
		                  s->setup_completed, "logs", s->setup_logs.ptr ? s->setup_logs.ptr : "",
		                  s->setup_logs.len, "status", s->setup_status);
	json_t *o = json_pack("{s:s, s:o}", "status", health_name(s), "setup", setup);
	pthread_mutex_unlock(&s->lock);
	const struct kiln_manifest *m = s->manifest;
	json_t *hints =
	    json_pack("{s:o, s:o, s:o, s:o}", "min_instances", hint(m ? m->serve.min_instances : -1),
	              "max_instances", hint(m ? m->serve.max_instances : -1), "scaledown_window",
	              hint(m ? m->serve.scaledown_window : -1), "target_concurrency",
	              hint(m ? m->serve.target_concurrency : -1));
	json_object_set_new(o, "kiln",
	                    json_pack("{s:o, s:o, s:o}", "prefetch",
	                              s->prefetch ? shim_prefetch_json(s->prefetch) : json_null(), "gpu",
	                              shim_gpu_json(&s->gpu), "hints", hints));
	return reply(c, 200, o);
}

/* The 503 answer while predictions cannot run, or NULL when they can (s->lock held). */
static const char *not_ready(const struct shim *s)
{
	if (s->draining)
		return "the server is shutting down";
	switch (s->health) {
	case SHIM_STARTING:
		return "setup has not finished yet";
	case SHIM_SETUP_FAILED:
		return "setup failed: see /health-check";
	case SHIM_DEFUNCT:
		return "the predictor's worker has exited: the server is DEFUNCT";
	default:
		return NULL;
	}
}

/* The state of an SSE stream: what of its prediction was sent, and bytes not yet taken by MHD. */
struct sse {
	struct shim *s;
	struct shim_prediction *p;
	struct MHD_Connection *c;
	struct shim_waiter wait;
	bool quiet; /* suspended with nothing to send since quiet_since */
	struct timespec quiet_since;
	size_t outputs;
	size_t logs;
	bool done;
	struct kiln_buf pending;
	size_t off;
};

static void sse_event(struct kiln_buf *b, const char *event, json_t *data)
{
	char *text = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
	kiln_buf_printf(b, "event: %s\ndata: %s\n\n", event, text ? text : "null");
	free(text);
	json_decref(data);
}

/* Collect the events that happened since the last call (s->lock held). */
static void sse_collect(struct sse *e)
{
	struct shim_prediction *p = e->p;
	if (p->logs.len > e->logs) {
		sse_event(&e->pending, "logs", json_stringn(p->logs.ptr + e->logs, p->logs.len - e->logs));
		e->logs = p->logs.len;
	}
	if (p->iterator && json_is_array(p->output))
		for (; e->outputs < json_array_size(p->output); e->outputs++)
			sse_event(&e->pending, "output", json_incref(json_array_get(p->output, e->outputs)));
	if (p->status >= PRED_SUCCEEDED) {
		if (!p->iterator && p->output && !json_is_null(p->output))
			sse_event(&e->pending, "output", json_incref(p->output));
		sse_event(&e->pending, "completed", shim_pred_json(p));
		e->done = true;
	}
}

/* Seconds without an event before an SSE stream gets a keep-alive comment: 15, or KILN_SSE_KEEPALIVE. */
static double sse_keepalive(void)
{
	static double seconds = -1;
	if (seconds < 0) {
		const char *env = getenv("KILN_SSE_KEEPALIVE");
		double v = env && *env ? strtod(env, NULL) : 0;
		seconds = v > 0 ? v : 15.0;
	}
	return seconds;
}

/* MHD's reader for an SSE response: the events so far; with none, the connection is suspended until the
 * prediction changes (or shim_server_tick's keep-alive), and 0 returned. */
static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct sse *e = cls;
	(void)pos;
	if (e->off >= e->pending.len) {
		if (e->done)
			return MHD_CONTENT_READER_END_OF_STREAM;
		e->pending.len = 0;
		e->off = 0;
		pthread_mutex_lock(&e->s->lock);
		sse_collect(e);
		if (e->pending.len) {
			e->quiet = false;
		} else if (e->quiet && shim_since(&e->quiet_since) >= sse_keepalive()) {
			kiln_buf_puts(&e->pending, ": keep-alive\n\n");
			e->quiet = false;
		} else if (e->s->server_stopping) {
			e->done = true;
		} else {
			if (!e->quiet) {
				e->quiet = true;
				clock_gettime(CLOCK_MONOTONIC, &e->quiet_since);
			}
			suspend_on(e->p, &e->wait, e->c);
		}
		pthread_mutex_unlock(&e->s->lock);
		if (!e->pending.len)
			return e->done ? MHD_CONTENT_READER_END_OF_STREAM : 0;
	}
	size_t n = e->pending.len - e->off < max ? e->pending.len - e->off : max;
	memcpy(buf, e->pending.ptr + e->off, n);
	e->off += n;
	return (ssize_t)n;
}

static void sse_free(void *cls)
{
	struct sse *e = cls;
	pthread_mutex_lock(&e->s->lock);
	unlink_waiter(e->p, &e->wait);
	shim_pred_release(e->s, e->p);
	pthread_mutex_unlock(&e->s->lock);
	kiln_buf_release(&e->pending);
	free(e);
}

/* Answer a prediction request with P (s->lock held, one reference held and handed over): 202 with its
 * current state when ASYNC, an event stream when SSE, else its final state once it is finished. */
static enum MHD_Result answer(struct shim *s, struct MHD_Connection *c, struct request *req,
                              struct shim_prediction *p, bool async, bool sse, unsigned async_status)
{
	if (sse) {
		struct sse *e = calloc(1, sizeof(*e));
		e->s = s;
		e->p = p;
		e->c = c;
		e->wait.sse = e;
		pthread_mutex_unlock(&s->lock);
		struct MHD_Response *r =
		    MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, sse_read, e, sse_free);
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
		MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
		enum MHD_Result ret = MHD_queue_response(c, 200, r);
		MHD_destroy_response(r);
		return ret;
	}
	if (!async && p->status < PRED_SUCCEEDED && !s->server_stopping) {
		/* answered when it finishes: on_request again, after shim_server_wake resumed it */
		req->pred = p;
		suspend_on(p, &req->wait, c);
		pthread_mutex_unlock(&s->lock);
		return MHD_YES;
	}
	return reply_pred(s, c, async ? async_status : 200, p);
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

/* Whether INPUT may have a file value to fetch into a directory. Conservative: shim_files_fetch_inputs only
 * fetches strings, alone or in arrays, of inputs whose schema is a URI. s->lock held. */
static bool may_fetch(struct shim *s, const json_t *input)
{
	const json_t *props = json_object_get(
	    json_object_get(json_object_get(json_object_get(s->schema, "components"), "schemas"), "Input"),
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
static int prepare_and_dispatch(struct shim *s, struct shim_prediction *p, bool fetch, bool direct,
                                struct kiln_buf *sent, char *msg, size_t size)
{
	if (!fetch) {
		shim_pred_dispatch(s, p, p->input, direct, sent);
		return 0;
	}
	json_t *input = json_deep_copy(p->input);
	{
		const char *tmp = getenv("TMPDIR");
		char dir[4096];
		snprintf(dir, sizeof(dir), "%s/kiln-shim-XXXXXX", tmp && *tmp ? tmp : "/tmp");
		_cleanup_error_ struct kiln_error *err = NULL;
		int rc = -1;
		if (!mkdtemp(dir))
			kiln_error_errno(&err, errno, "cannot create a directory for the file inputs");
		else
			rc = shim_files_fetch_inputs(s->schema, input, dir, &err);
		pthread_mutex_lock(&s->lock);
		if (*dir && rc == 0 && !p->tmpdir)
			p->tmpdir = strdup(dir);
		else if (rc < 0 && access(dir, F_OK) == 0)
			kiln_remove_tree(dir, NULL);
		if (rc < 0) {
			snprintf(msg, size, "%s", err ? err->message : "cannot fetch the file inputs");
			shim_pred_finish(s, p, PRED_FAILED, msg);
			pthread_mutex_unlock(&s->lock);
			json_decref(input);
			return -1;
		}
		pthread_mutex_unlock(&s->lock);
	}
	shim_pred_dispatch(s, p, input, direct, sent);
	json_decref(input);
	return 0;
}

/* A prediction whose file inputs a thread fetches after its request was answered. */
struct fetch_job {
	struct shim *s;
	struct shim_prediction *p; /* one reference held */
};

static void *fetch_main(void *arg)
{
	struct fetch_job *job = arg;
	char msg[512];
	/* a file that cannot be fetched fails the prediction (its webhook says why) */
	prepare_and_dispatch(job->s, job->p, true, false, NULL, msg, sizeof(msg));
	pthread_mutex_lock(&job->s->lock);
	shim_pred_release(job->s, job->p);
	pthread_mutex_unlock(&job->s->lock);
	free(job);
	return NULL;
}

/* Fetch P's file inputs and dispatch it on a thread of its own: 0, or -1 when no thread could start. */
static int fetch_later(struct shim *s, struct shim_prediction *p)
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

/* Whether two request inputs are the same (absent and null are the empty input). */
static bool same_input(json_t *a, json_t *b)
{
	bool ea = !a || json_is_null(a) || (json_is_object(a) && json_object_size(a) == 0);
	bool eb = !b || json_is_null(b) || (json_is_object(b) && json_object_size(b) == 0);
	return ea || eb ? ea && eb : json_equal(a, b);
}

/* POST /predictions and PUT /predictions/{id} (URL_ID: the id in the URL, or NULL). */
static enum MHD_Result predict(struct shim *s, struct MHD_Connection *c, struct request *req,
                               const char *url_id)
{
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
			return reply(c, 422,
			             json_pack("{s:[{s:[s,i], s:s, s:s, s:{s:s, s:i, s:i, s:i}}]}", "detail",
			                       "loc", "body", jerr.position, "msg", msg, "type",
			                       "value_error.jsondecode", "ctx", "msg", jerr.text, "pos",
			                       jerr.position, "lineno", jerr.line, "colno", jerr.column));
		}
	}
	json_auto_t *owned = body;
	if (!json_is_object(body))
		return invalid(c, json_pack("[s]", "body"), "value is not a valid dict", "type_error.dict");
	json_t *jid = json_object_get(body, "id");
	if (jid && !json_is_null(jid) && !json_is_string(jid))
		return invalid(c, json_pack("[s,s]", "body", "id"), "str type expected", "type_error.str");
	const char *id = json_string_value(jid);
	if (url_id && id && strcmp(id, url_id) != 0)
		return invalid(c, json_pack("[s,s]", "body", "id"),
		               "prediction ID must match the ID supplied in the URL", "value_error");
	if (url_id)
		id = url_id;
	json_t *input = json_object_get(body, "input");
	if (input && !json_is_null(input) && !json_is_object(input))
		return invalid(c, json_pack("[s,s]", "body", "input"), "value is not a valid dict",
		               "type_error.dict");
	const char *prefer = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Prefer");
	bool async = prefer && strcmp(prefer, "respond-async") == 0;
	const char *accept = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
	bool sse = accept && strstr(accept, "text/event-stream");

	pthread_mutex_lock(&s->lock);
	const char *why = not_ready(s);
	if (why) {
		pthread_mutex_unlock(&s->lock);
		return detail(c, 503, why);
	}
	struct shim_prediction *p = id ? shim_pred_find(s, id) : NULL;
	if (p && (p->status < PRED_SUCCEEDED || same_input(json_object_get(p->body, "input"), input))) {
		/* Cog: a prediction with this ID runs already: its current state, 202 (sync or not) */
		bool running = p->status < PRED_SUCCEEDED;
		p->refs++;
		return answer(s, c, req, p, async || running, sse, 202);
	}
	json_t *normalized = NULL, *problems = NULL;
	if (shim_validate_input(s->schema, input && json_is_object(input) ? input : json_object(),
	                        &normalized, &problems) < 0) {
		pthread_mutex_unlock(&s->lock);
		return reply(c, 422, json_pack("{s:o}", "detail", problems));
	}
	if (s->busy >= s->concurrency) {
		pthread_mutex_unlock(&s->lock);
		json_decref(normalized);
		return detail(c, 409, "Already running a prediction");
	}
	p = shim_pred_new(s, id, body, normalized);
	json_decref(normalized);
	bool fetch = may_fetch(s, p->input);
	pthread_mutex_unlock(&s->lock);
	_cleanup_buf_ struct kiln_buf qid = KILN_BUF_INIT; /* a client's id may hold any character */
	shim_put_text(&qid, p->id, strlen(p->id));
	shim_log_fields("info", "prediction started", "\"prediction_id\":%s,\"async\":%s",
	                qid.ptr ? qid.ptr : "null", async ? "true" : "false");

	if (fetch && (async || sse) && fetch_later(s, p) == 0) {
		/* answered now, as Cog does: its files are fetched meanwhile ("starting" until then) */
		pthread_mutex_lock(&s->lock);
		return answer(s, c, req, p, async, sse, 202);
	}
	char msg[512];
	_cleanup_buf_ struct kiln_buf sent = KILN_BUF_INIT;
	if (prepare_and_dispatch(s, p, fetch, !async && !sse, async && !sse ? &sent : NULL, msg,
	                         sizeof(msg)) < 0) {
		pthread_mutex_lock(&s->lock);
		shim_pred_release(s, p);
		pthread_mutex_unlock(&s->lock);
		return invalid(c, json_pack("[s,s]", "body", "input"), msg, "value_error");
	}
	pthread_mutex_lock(&s->lock);
	if (async && !sse && sent.len) {
		/* the state it was sent in: a fast predictor may have finished it meanwhile */
		shim_pred_release(s, p);
		pthread_mutex_unlock(&s->lock);
		return reply_text(c, 202, &sent);
	}
	return answer(s, c, req, p, async, sse, 202);
}

/* POST /predictions/{id}/cancel: 200 {} when a cancel was sent, 404 {} when nothing runs with that id. */
static enum MHD_Result cancel(struct shim *s, struct MHD_Connection *c, const char *id)
{
	pthread_mutex_lock(&s->lock);
	struct shim_prediction *p = shim_pred_find(s, id);
	int rc = -1;
	if (p) {
		p->refs++;
		rc = shim_pred_cancel(s, p);
		shim_pred_release(s, p);
	}
	pthread_mutex_unlock(&s->lock);
	return reply(c, rc < 0 ? 404 : 200, json_object());
}

/* GET /docs and /redoc: as FastAPI serves them for Cog, pages that load Swagger UI or ReDoc from the
 * jsDelivr CDN in the browser and point it at /openapi.json. */
static enum MHD_Result docs_page(struct MHD_Connection *c, bool redoc)
{
	static const char SWAGGER[] =
	    "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>Cog - Swagger UI</title>\n"
	    "<link rel=\"stylesheet\" "
	    "href=\"https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css\">\n"
	    "</head>\n<body>\n<div id=\"swagger-ui\"></div>\n"
	    "<script src=\"https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js\"></script>\n"
	    "<script>\nSwaggerUIBundle({url: \"/openapi.json\", dom_id: \"#swagger-ui\", deepLinking: true,\n"
	    "  showExtensions: true, showCommonExtensions: true,\n"
	    "  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],\n"
	    "  layout: \"BaseLayout\"});\n</script>\n</body>\n</html>\n";
	static const char REDOC[] =
	    "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>Cog - ReDoc</title>\n"
	    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n</head>\n<body>\n"
	    "<redoc spec-url=\"/openapi.json\"></redoc>\n"
	    "<script src=\"https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js\"></script>\n"
	    "</body>\n</html>\n";
	const char *page = redoc ? REDOC : SWAGGER;
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(strlen(page), (void *)page, MHD_RESPMEM_PERSISTENT);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8");
	enum MHD_Result ret = MHD_queue_response(c, 200, r);
	MHD_destroy_response(r);
	return ret;
}

/* Route a complete request. */
static enum MHD_Result route(struct shim *s, struct MHD_Connection *c, const char *url, const char *method,
                             struct request *req)
{
	bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	bool post = strcmp(method, "POST") == 0;
	if (strcmp(url, "/health-check") == 0)
		return get ? health_check(s, c) : detail(c, 405, "Method Not Allowed");
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	__atomic_store_n(&s->last_request_ns, (long long)now.tv_sec * 1000000000LL + now.tv_nsec,
	                 __ATOMIC_RELAXED);
	if (strcmp(url, "/") == 0) {
		if (!get)
			return detail(c, 405, "Method Not Allowed");
		return reply(c, 200,
		             json_pack("{s:s, s:s}", "docs_url", "/docs", "openapi_url", "/openapi.json"));
	}
	if (strcmp(url, "/docs") == 0 || strcmp(url, "/redoc") == 0)
		return get ? docs_page(c, url[1] == 'r') : detail(c, 405, "Method Not Allowed");
	if (strcmp(url, "/openapi.json") == 0) {
		if (!get)
			return detail(c, 405, "Method Not Allowed");
		pthread_mutex_lock(&s->lock);
		json_t *schema = json_incref(s->schema);
		pthread_mutex_unlock(&s->lock);
		return schema ? reply(c, 200, schema) : detail(c, 503, "the schema is not known yet");
	}
	if (strcmp(url, "/shutdown") == 0) {
		if (!post)
			return detail(c, 405, "Method Not Allowed");
		shim_log("info", NULL, "shutdown requested via http");
		pthread_mutex_lock(&s->lock);
		s->shutdown_requested = true;
		pthread_cond_broadcast(&s->cond);
		pthread_mutex_unlock(&s->lock);
		return reply(c, 200, json_object());
	}
	if (strcmp(url, "/predictions") == 0)
		return post ? predict(s, c, req, NULL) : detail(c, 405, "Method Not Allowed");
	const char *rest = strncmp(url, "/predictions/", 13) == 0 ? url + 13 : NULL;
	if (rest && *rest) {
		const char *slash = strchr(rest, '/');
		if (!slash)
			return strcmp(method, "PUT") == 0 ? predict(s, c, req, rest)
			                                  : detail(c, 405, "Method Not Allowed");
		if (strcmp(slash, "/cancel") == 0 && slash > rest) {
			_cleanup_free_ char *id = strndup(rest, (size_t)(slash - rest));
			return post ? cancel(s, c, id) : detail(c, 405, "Method Not Allowed");
		}
	}
	return detail(c, 404, "Not Found");
}

/* MHD's access handler: collects the body (up to s->body_limit), then routes. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
	struct shim *s = cls;
	struct request *req = *con_cls;
	if (!req) {
		req = calloc(1, sizeof(*req));
		if (!req)
			return MHD_NO;
		*con_cls = req;
		const char *cl =
		    MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && strtoull(cl, NULL, 10) > s->body_limit)
			req->too_large = true;
		__atomic_add_fetch(&s->requests, 1, __ATOMIC_RELAXED);
		return MHD_YES;
	}
	if (*upload_data_size) {
		if (req->body.len + *upload_data_size > s->body_limit)
			req->too_large = true;
		if (!req->too_large && kiln_buf_put(&req->body, upload_data, *upload_data_size) < 0)
			req->too_large = true;
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (req->too_large)
		return detail(c, 413, "Request body too large");
	if (req->pred) {
		/* resumed: the prediction it waits for changed */
		pthread_mutex_lock(&s->lock);
		struct shim_prediction *p = req->pred;
		if (p->status < PRED_SUCCEEDED && !s->server_stopping) {
			suspend_on(p, &req->wait, c);
			pthread_mutex_unlock(&s->lock);
			return MHD_YES;
		}
		req->pred = NULL;
		return reply_pred(s, c, 200, p);
	}
	/* the request's log lines in one write(2), before its response goes */
	shim_log_defer(true);
	enum MHD_Result ret = route(s, c, url, method, req);
	shim_log_defer(false);
	return ret;
}

/* MHD's completion callback: the response went (or the connection broke). */
static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
	struct shim *s = cls;
	struct request *req = *con_cls;
	if (!req)
		return;
	kiln_buf_release(&req->body);
	*con_cls = NULL;
	if (req->pred) {
		pthread_mutex_lock(&s->lock);
		unlink_waiter(req->pred, &req->wait);
		shim_pred_release(s, req->pred);
		pthread_mutex_unlock(&s->lock);
	}
	free(req);
	__atomic_sub_fetch(&s->requests, 1, __ATOMIC_RELEASE); /* main.c polls it: nothing waits on s->cond */
}

/* libmicrohttpd's error messages, as the shim's log lines (never on fd 2, which a native predictor's
 * output capture may hold). */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	char msg[1024];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	size_t n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	shim_log("warning", NULL, "libmicrohttpd: %s", msg);
}

/* Each connection's memory for its request line, headers and buffers (libmicrohttpd's default: 32 KiB,
 * zeroed for every request). 16 KiB, as the request headers Cog's server (uvicorn, h11) takes. */
#define CONNECTION_MEMORY (16 * 1024)

int shim_server_start(struct shim *s, struct kiln_error **err)
{
	/* a few event-loop threads (epoll); requests that wait for a prediction are suspended meanwhile */
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
	                 MHD_USE_ITC | MHD_USE_ERROR_LOG;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	const char *threads = getenv("KILN_SHIM_THREADS");
	if (threads && *threads)
		ncpu = strtol(threads, NULL, 10);
	unsigned pool = ncpu < 1 ? 1 : ncpu > 64 ? 64 : (unsigned)ncpu;
	if (s->listen_fd >= 0) {
		s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_LISTEN_SOCKET,
		                             s->listen_fd, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
		                             MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY,
		                             MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
		                             MHD_OPTION_THREAD_POOL_SIZE, pool, MHD_OPTION_END);
	} else {
		struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)s->port)};
		struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
		const struct sockaddr *addr = (const struct sockaddr *)&a4;
		if (inet_pton(AF_INET, s->host, &a4.sin_addr) != 1) {
			if (inet_pton(AF_INET6, s->host, &a6.sin6_addr) != 1)
				return kiln_error_set(err, KILN_EINVAL,
				                      "invalid --host '%s': not an IP address", s->host);
			addr = (const struct sockaddr *)&a6;
			flags |= MHD_USE_IPv6;
		}
		s->daemon = MHD_start_daemon(
		    flags, (uint16_t)s->port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, addr,
		    MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
		    (size_t)CONNECTION_MEMORY, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
		    MHD_OPTION_LISTEN_BACKLOG_SIZE, 128, MHD_OPTION_THREAD_POOL_SIZE, pool, MHD_OPTION_END);
	}
	if (!s->daemon)
		return kiln_error_set(err, KILN_EIO, "cannot listen on %s:%d (is the port in use?)", s->host,
		                      s->port);
	return 0;
}

void shim_server_quiesce(struct shim *s)
{
	if (!s->daemon)
		return;
	MHD_socket fd = MHD_quiesce_daemon(s->daemon);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
}

void shim_server_tick(struct shim *s)
{
	pthread_mutex_lock(&s->lock);
	for (struct shim_prediction *p = s->preds; p; p = p->next) {
		bool due = false;
		for (struct shim_waiter *w = p->waiters; w && !due; w = w->next)
			due = w->sse && w->sse->quiet && shim_since(&w->sse->quiet_since) >= sse_keepalive();
		if (due)
			shim_server_wake(s, p);
	}
	pthread_mutex_unlock(&s->lock);
}

void shim_server_stop(struct shim *s)
{
	/* MHD must not stop with suspended connections: resume them for good */
	pthread_mutex_lock(&s->lock);
	s->server_stopping = true;
	for (struct shim_prediction *p = s->preds; p; p = p->next)
		shim_server_wake(s, p);
	pthread_mutex_unlock(&s->lock);
	if (s->daemon)
		MHD_stop_daemon(s->daemon);
	s->daemon = NULL;
}

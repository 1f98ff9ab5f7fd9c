/* SPDX-License-Identifier: Apache-2.0 */
/* server.c: Cog's HTTP API with libmicrohttpd: the daemon, routing, request bodies, replies, waiting
 * connections, the health check and the docs pages. Predictions: requests.c; event streams: sse.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/json.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "kiln_version.h"
#include "shim/http.h"
#include "shim/weights.h"

/* Put W, for connection C, on the list at HEAD and suspend C (s->lock held; from MHD's callbacks only). */
static void suspend_into(struct shim_waiter **head, struct shim_waiter *w, struct MHD_Connection *c)
{
	w->c = c;
	w->next = *head;
	w->linked = true;
	*head = w;
	MHD_suspend_connection(c);
}

/* Suspend W's connection until P changes (s->lock held; from MHD's callbacks only). */
void http_suspend_on(struct shim_job *p, struct shim_waiter *w, struct MHD_Connection *c)
{
	suspend_into(&p->waiters, w, c);
}

/* Take W out of the list at HEAD when it is there (s->lock held). */
static void unlink_from(struct shim_waiter **head, struct shim_waiter *w)
{
	if (!w->linked)
		return;
	for (struct shim_waiter **pp = head; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	w->linked = false;
}

void http_unlink_waiter(struct shim_job *p, struct shim_waiter *w)
{
	unlink_from(&p->waiters, w);
}

/* A prediction would wait for setup or a slot now (s->lock held). */
static bool must_wait(const struct shim *s)
{
	return s->activated && !s->draining && !s->server_stopping &&
	       (s->health == SHIM_STARTING || (s->health == SHIM_READY && s->busy >= s->concurrency));
}

bool http_hold(struct shim *s, struct request *req, struct MHD_Connection *c)
{
	if (!must_wait(s))
		return false;
	suspend_into(&s->held, &req->wait, c);
	return true;
}

/* Resume the connections of the list at HEAD (s->lock held). */
static void resume_all(struct shim_waiter **head)
{
	struct shim_waiter *w = *head;
	*head = NULL;
	while (w) {
		struct shim_waiter *next = w->next;
		w->linked = false;
		MHD_resume_connection(w->c);
		w = next;
	}
}

/* Resume the connections that wait for P, and the held ones when they need not wait any more (s->lock
 * held): s->job_changed (P NULL: the health changed). A held one routed again may be held again. */
static void wake(struct shim *s, struct shim_job *p)
{
	if (p)
		resume_all(&p->waiters);
	if (s->held && !must_wait(s))
		resume_all(&s->held);
}

/* Queue a reply with STATUS whose body is the JSON text in B (taken: B is left empty). */
enum MHD_Result http_reply_text(struct MHD_Connection *c, unsigned status, struct kiln_buf *b)
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
enum MHD_Result http_reply(struct MHD_Connection *c, unsigned status, json_t *body)
{
	char *text = kiln_json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (!text)
		return MHD_NO;
	struct kiln_buf b = {text, strlen(text), strlen(text) + 1};
	return http_reply_text(c, status, &b);
}

/* Reply with P's response (s->lock held, released here; the caller's reference to P is dropped). */
enum MHD_Result http_reply_pred(struct shim *s, struct MHD_Connection *c, unsigned status, struct shim_job *p)
{
	struct kiln_buf b = KILN_BUF_INIT;
	int rc = kiln_buf_grow(&b, 1023); /* a response of a few hundred bytes: one allocation */
	if (rc == 0)
		rc = shim_job_text(p, &b);
	shim_job_release(s, p);
	pthread_mutex_unlock(&s->lock);
	if (rc < 0) {
		kiln_buf_release(&b);
		return MHD_NO;
	}
	return http_reply_text(c, status, &b);
}

enum MHD_Result http_detail(struct MHD_Connection *c, unsigned status, const char *msg)
{
	return http_reply(c, status, json_pack("{s:s}", "detail", msg));
}

/* coglet's {"error": MSG, "status": "failed"} with STATUS, for a job that cannot start (409, 503). */
enum MHD_Result http_failed(struct MHD_Connection *c, unsigned status, const char *msg)
{
	return http_reply(c, status, json_pack("{s:s, s:s}", "error", msg, "status", "failed"));
}

/* FastAPI's 422 for one problem at LOC (a JSON array, stolen). */
enum MHD_Result http_invalid(struct MHD_Connection *c, json_t *loc, const char *msg, const char *type)
{
	return http_reply(c, 422,
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

/* What kiln-shim says for coglet's version: no coglet's, kiln's ("0.0.0" with "+kiln", as the bundled cog
 * module's __version__); kiln's own version is in /health-check's "kiln". */
#define SHIM_COGLET_VERSION "0.0.0+kiln"

/* Cog's version of the health check, {"coglet", "cog", "python"} (s->lock held): the cog module and the
 * Python the runner imported and runs, once it said (neither for a native predictor). */
static json_t *versions(const struct shim *s)
{
	json_t *v = json_pack("{s:s}", "coglet", SHIM_COGLET_VERSION);
	if (s->cog_version)
		json_object_set_new(v, "cog", json_string(s->cog_version));
	if (s->python_version)
		json_object_set_new(v, "python", json_string(s->python_version));
	return v;
}

/* Cog's setup object (s->lock held): {"started_at", "completed_at", "status", "logs"}, as coglet leaves out
 * what it has not got: "completed_at" until setup ended, "logs" while it runs and when there are none. */
static json_t *setup_json(const struct shim *s)
{
	json_t *o = json_pack("{s:s}", "started_at", s->setup_started);
	if (s->setup_status)
		json_object_set_new(o, "completed_at", json_string(s->setup_completed));
	json_object_set_new(o, "status", json_string(s->setup_status ? s->setup_status : "starting"));
	if (s->setup_status && s->setup_logs.len)
		json_object_set_new(o, "logs", shim_json_text(s->setup_logs.ptr, s->setup_logs.len));
	return o;
}

/* GET /health-check: Cog's {"status", "setup", "version", "user_healthcheck_error"} and kiln's extras under
 * "kiln". */
static enum MHD_Result health_check(struct shim *s, struct MHD_Connection *c)
{
	pthread_mutex_lock(&s->lock);
	char *unhealthy = shim_worker_healthcheck(s);
	json_t *o = json_pack("{s:s, s:o, s:o}", "status", unhealthy ? "UNHEALTHY" : health_name(s), "setup",
	                      setup_json(s), "version", versions(s));
	pthread_mutex_unlock(&s->lock);
	if (unhealthy)
		json_object_set_new(o, "user_healthcheck_error", json_string(unhealthy));
	free(unhealthy);
	const struct kiln_manifest *m = s->manifest;
	json_t *hints =
	    json_pack("{s:o, s:o, s:o, s:o}", "min_instances", hint(m ? m->serve.min_instances : -1),
	              "max_instances", hint(m ? m->serve.max_instances : -1), "scaledown_window",
	              hint(m ? m->serve.scaledown_window : -1), "target_concurrency",
	              hint(m ? m->serve.target_concurrency : -1));
	json_object_set_new(o, "kiln",
	                    json_pack("{s:s, s:o, s:o, s:o, s:o}", "version", KILN_VERSION, "prefetch",
	                              s->prefetch ? shim_prefetch_json(s->prefetch) : json_null(), "weights",
	                              s->weights ? shim_weights_json(s->weights) : json_null(), "gpu",
	                              shim_gpu_json(&s->gpu), "hints", hints));
	return http_reply(c, 200, o);
}

/*
 * GET /readyz and /livez, the probes kiln deploy's manifests use ({"status"}, as /health-check names it).
 * Ready: 200 while READY or BUSY, 503 while STARTING, after SETUP_FAILED, while healthcheck() fails, when
 * DEFUNCT (draining for a shutdown, the shim takes no new connections). Live: 200 unless SETUP_FAILED or
 * DEFUNCT (a restart is what helps then). Neither is a request for --idle-exit.
 */
static enum MHD_Result probe(struct shim *s, struct MHD_Connection *c, bool ready)
{
	pthread_mutex_lock(&s->lock);
	char *unhealthy = ready ? shim_worker_healthcheck(s) : NULL;
	bool ok = ready ? s->health == SHIM_READY && !unhealthy
	                : s->health == SHIM_STARTING || s->health == SHIM_READY;
	json_t *o = json_pack("{s:s}", "status", unhealthy ? "UNHEALTHY" : health_name(s));
	pthread_mutex_unlock(&s->lock);
	free(unhealthy);
	return http_reply(c, ok ? 200 : 503, o);
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

/* GET /: Cog's discovery document, the URLs of its API (the trainings' with a trainer) and cog_version: the
 * cog module's the runner imported, else (until it said, or a native predictor) SHIM_COGLET_VERSION. */
static enum MHD_Result discovery(struct shim *s, struct MHD_Connection *c)
{
	pthread_mutex_lock(&s->lock);
	json_t *o = json_pack("{s:s}", "cog_version", s->cog_version ? s->cog_version : SHIM_COGLET_VERSION);
	pthread_mutex_unlock(&s->lock);
	static const char *const URLS[][2] = {
	    {"docs_url", "/docs"},
	    {"openapi_url", "/openapi.json"},
	    {"shutdown_url", "/shutdown"},
	    {"healthcheck_url", "/health-check"},
	    {"predictions_url", "/predictions"},
	    {"predictions_idempotent_url", "/predictions/{prediction_id}"},
	    {"predictions_cancel_url", "/predictions/{prediction_id}/cancel"},
	    {"trainings_url", "/trainings"},
	    {"trainings_idempotent_url", "/trainings/{training_id}"},
	    {"trainings_cancel_url", "/trainings/{training_id}/cancel"},
	};
	size_t n = s->trainer ? 10 : 7; /* s->trainer is set before the server starts */
	for (size_t i = 0; i < n; i++)
		json_object_set_new(o, URLS[i][0], json_string(URLS[i][1]));
	return http_reply(c, 200, o);
}

/* Route a complete request. */
static enum MHD_Result route(struct shim *s, struct MHD_Connection *c, const char *url, const char *method,
                             struct request *req)
{
	bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	bool post = strcmp(method, "POST") == 0;
	if (strcmp(url, "/health-check") == 0)
		return get ? health_check(s, c) : http_detail(c, 405, "Method Not Allowed");
	if (strcmp(url, "/readyz") == 0 || strcmp(url, "/livez") == 0)
		return get ? probe(s, c, url[1] == 'r') : http_detail(c, 405, "Method Not Allowed");
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	__atomic_store_n(&s->last_request_ns, (long long)now.tv_sec * 1000000000LL + now.tv_nsec,
	                 __ATOMIC_RELAXED);
	if (strcmp(url, "/") == 0)
		return get ? discovery(s, c) : http_detail(c, 405, "Method Not Allowed");
	if (strcmp(url, "/docs") == 0 || strcmp(url, "/redoc") == 0)
		return get ? docs_page(c, url[1] == 'r') : http_detail(c, 405, "Method Not Allowed");
	if (strcmp(url, "/openapi.json") == 0) {
		if (!get)
			return http_detail(c, 405, "Method Not Allowed");
		pthread_mutex_lock(&s->lock);
		json_t *schema = json_incref(s->schema);
		pthread_mutex_unlock(&s->lock);
		return schema
		           ? http_reply(c, 200, schema)
		           : http_reply(c, 503, json_pack("{s:s}", "error", "OpenAPI schema not available"));
	}
	if (strcmp(url, "/shutdown") == 0) {
		if (!post)
			return http_detail(c, 405, "Method Not Allowed");
		shim_log("info", NULL, "shutdown requested via http");
		pthread_mutex_lock(&s->lock);
		s->shutdown_requested = true;
		pthread_cond_broadcast(&s->cond);
		pthread_mutex_unlock(&s->lock);
		return http_reply(c, 200, json_object());
	}
	static const struct {
		const char *prefix;
		size_t len;
		enum shim_job_kind kind;
	} jobs[] = {{"/predictions", 12, SHIM_JOB_PREDICTION}, {"/trainings", 10, SHIM_JOB_TRAINING}};
	for (size_t i = 0; i < sizeof(jobs) / sizeof(*jobs); i++) {
		if (strncmp(url, jobs[i].prefix, jobs[i].len) != 0)
			continue;
		enum shim_job_kind kind = jobs[i].kind;
		/* no trainer: no /trainings (Cog has no such routes then); s->trainer is set before the
		 * server */
		bool routed = kind != SHIM_JOB_TRAINING || s->trainer;
		const char *rest = url + jobs[i].len;
		if (!routed || (*rest && *rest != '/'))
			break;
		if (*rest == '\0')
			return post ? http_predict(s, c, req, kind, NULL)
			            : http_detail(c, 405, "Method Not Allowed");
		rest++;
		const char *slash = strchr(rest, '/');
		if (*rest && !slash)
			return strcmp(method, "PUT") == 0 ? http_predict(s, c, req, kind, rest)
			                                  : http_detail(c, 405, "Method Not Allowed");
		if (slash && strcmp(slash, "/cancel") == 0 && slash > rest) {
			_cleanup_free_ char *id = strndup(rest, (size_t)(slash - rest));
			return post ? http_cancel(s, c, kind, id) : http_detail(c, 405, "Method Not Allowed");
		}
		break;
	}
	return http_detail(c, 404, "Not Found");
}

/* MHD's URI callback, as each request line arrives (before it is unescaped): the request's state, and
 * the connection's deadline for the rest of the request. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
	struct shim *s = cls;
	struct request *req = calloc(1, sizeof(*req));
	size_t path = strcspn(uri, "?");
	for (size_t i = 0; req && i + 2 < path; i++)
		if (uri[i] == '%' && uri[i + 1] == '0' && uri[i + 2] == '0')
			req->nul_url = true;
	if (s->conns)
		http_conn_receiving(s->conns, c);
	return req;
}

/* MHD's access handler: collects the body (up to s->body_limit), then routes. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
	struct shim *s = cls;
	struct request *req = *con_cls;
	if (!req)
		return MHD_NO; /* on_uri ran out of memory */
	if (!req->started) {
		req->started = true;
		const char *cl =
		    MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		__atomic_add_fetch(&s->requests, 1, __ATOMIC_RELAXED);
		if (cl && strtoull(cl, NULL, 10) > s->body_limit) {
			/* refused before its body is read: MHD sends the answer and closes the connection */
			req->too_large = req->answered = true;
			if (s->conns)
				http_conn_answered(s->conns, c);
			return http_detail(c, 413, "Request body too large");
		}
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
	if (!req->answered) {
		/* all of it arrived: no deadline while it is answered (a prediction or a stream may be long)
		 */
		req->answered = true;
		if (s->conns)
			http_conn_answered(s->conns, c);
	}
	if (req->too_large)
		return http_detail(c, 413, "Request body too large");
	if (req->nul_url)
		return http_detail(c, 400, "invalid URL: its path holds an escaped NUL (%00)");
	if (req->pred) {
		/* resumed: the prediction it waits for changed */
		pthread_mutex_lock(&s->lock);
		struct shim_job *p = req->pred;
		if (p->status < JOB_SUCCEEDED && !s->server_stopping) {
			http_suspend_on(p, &req->wait, c);
			pthread_mutex_unlock(&s->lock);
			return MHD_YES;
		}
		req->pred = NULL;
		return http_reply_pred(s, c, 200, p);
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
	(void)toe;
	struct request *req = *con_cls;
	if (s->conns)
		http_conn_idle(s->conns, c);
	if (!req)
		return;
	kiln_buf_release(&req->body);
	*con_cls = NULL;
	if (req->pred) {
		pthread_mutex_lock(&s->lock);
		http_unlink_waiter(req->pred, &req->wait);
		shim_job_release(s, req->pred);
		pthread_mutex_unlock(&s->lock);
	} else if (req->wait.linked) { /* held, and its connection broke */
		pthread_mutex_lock(&s->lock);
		unlink_from(&s->held, &req->wait);
		pthread_mutex_unlock(&s->lock);
	}
	bool counted = req->started;
	free(req);
	if (counted) /* main.c polls it: nothing waits on s->cond */
		__atomic_sub_fetch(&s->requests, 1, __ATOMIC_RELEASE);
}

/* MHD's connection notifications, for connections.c. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
	struct shim *s = cls;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED)
		http_conn_started(s->conns, c, socket_context);
	else
		http_conn_closed(s->conns, socket_context);
}

/* libmicrohttpd's error messages, as the shim's log lines (never on fd 2, which a native predictor's
 * output capture may hold). */
static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
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

/* The file descriptors a connection bound of MAX needs: raise the soft RLIMIT_NOFILE to the hard one
 * when that is not enough; returns the bound that fits (the worker's pipes, the log and libcurl need a few
 * of them too). */
static long fit_fd_limit(long max)
{
	const long reserve = 128;
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return max;
	rlim_t want = (rlim_t)(max + max / 8 + reserve);
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want)
		return max;
	long fit = ((long)rl.rlim_cur - reserve) * 8 / 9;
	fit = fit < 16 ? 16 : fit;
	shim_log(
	    "warning",
	    json_pack("{s:i, s:i}", "max_connections", (json_int_t)fit, "nofile", (json_int_t)rl.rlim_cur),
	    "the file descriptor limit (ulimit -n) allows fewer connections than asked for");
	return fit;
}

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
	long max = fit_fd_limit(s->max_connections);
	if (http_conns_new(&s->conns, max, s->idle_timeout, s->request_timeout) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	pthread_mutex_lock(&s->lock);
	s->job_changed = wake;
	pthread_mutex_unlock(&s->lock);
	/* libmicrohttpd's own limit, shared among its threads, is above the bound: connections.c closes
	 * the oldest waiting one when a new one comes, and libmicrohttpd must still accept that one */
	unsigned limit = (unsigned)(max + max / 8 + 2 * pool);
	unsigned timeout = (unsigned)(s->idle_timeout + 0.999);
	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)s->port)};
	struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
	const struct sockaddr *addr = (const struct sockaddr *)&a4;
	if (s->listen_fd < 0 && inet_pton(AF_INET, s->host, &a4.sin_addr) != 1) {
		if (inet_pton(AF_INET6, s->host, &a6.sin6_addr) != 1)
			return kiln_error_set(err, KILN_EINVAL, "invalid --host '%s': not an IP address",
			                      s->host);
		addr = (const struct sockaddr *)&a6;
		flags |= MHD_USE_IPv6;
	}
	struct MHD_OptionItem where[] = {
	    s->listen_fd >= 0 ? (struct MHD_OptionItem){MHD_OPTION_LISTEN_SOCKET, s->listen_fd, NULL}
	                      : (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, (void *)addr},
	    s->listen_fd >= 0 ? (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL}
	                      : (struct MHD_OptionItem){MHD_OPTION_LISTEN_BACKLOG_SIZE, 128, NULL},
	    {MHD_OPTION_END, 0, NULL},
	};
	s->daemon = MHD_start_daemon(
	    flags, (uint16_t)s->port, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY, MHD_OPTION_NOTIFY_COMPLETED,
	    on_completed, s, MHD_OPTION_URI_LOG_CALLBACK, on_uri, s, MHD_OPTION_NOTIFY_CONNECTION,
	    on_connection, s, MHD_OPTION_CONNECTION_LIMIT, limit, MHD_OPTION_CONNECTION_TIMEOUT, timeout,
	    MHD_OPTION_THREAD_POOL_SIZE, pool, MHD_OPTION_ARRAY, where, MHD_OPTION_END);
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
	/* connections past their deadline, counted in one log line every 10 seconds at most */
	static long dropped;
	static double logged;
	if (s->conns)
		dropped += http_conns_sweep(s->conns);
	if (dropped && kiln_monotonic() - logged >= 10) {
		shim_log("warning", json_pack("{s:i}", "connections", (json_int_t)dropped),
		         "closed connections that waited too long for their request, or to make room for new "
		         "ones");
		dropped = 0;
		logged = kiln_monotonic();
	}
	pthread_mutex_lock(&s->lock);
	for (struct shim_job *p = s->jobs; p; p = p->next) {
		bool due = false;
		for (struct shim_waiter *w = p->waiters; w && !due; w = w->next)
			due = http_sse_due(w);
		if (due)
			wake(s, p);
	}
	pthread_mutex_unlock(&s->lock);
}

void shim_server_stop(struct shim *s)
{
	/* MHD must not stop with suspended connections: resume them for good */
	pthread_mutex_lock(&s->lock);
	s->server_stopping = true;
	for (struct shim_job *p = s->jobs; p; p = p->next)
		wake(s, p);
	wake(s, NULL);
	pthread_mutex_unlock(&s->lock);
	if (s->daemon)
		MHD_stop_daemon(s->daemon);
	s->daemon = NULL;
	http_conns_free(s->conns);
	s->conns = NULL;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * playground.c: the playground's server (libmicrohttpd, a thread per connection): the page's files, a
 * streaming reverse proxy of Cog's API on one target (libcurl in a thread of its own, its body passed on
 * through a pipe as it arrives, so server-sent events reach the page piece by piece), and a webhook sink
 * the page long-polls.
 */
#include "cli/playground.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "common/json.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PG_MAX_BODY   (256u << 20) /* a request body the proxy passes on (data URLs of files) */
#define PG_MAX_HOOK   (16u << 20)  /* a webhook's body */
#define PG_MAX_EVENTS 500          /* webhooks kept; the oldest go first */
#define PG_POLL_S     20           /* how long GET /playground/events waits for a new one */

struct kiln_playground {
	struct MHD_Daemon *d;
	char *target; /* without a trailing '/' */
	char *config; /* GET /playground/config's JSON */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	json_t *events; /* [{seq, received_at, body}] */
	long long seq;
	bool stopping;
};

/* A request's state between MHD's calls: its body so far. */
struct request {
	struct kiln_buf body;
	bool too_big;
};

bool kiln_playground_target_valid(const char *url)
{
	const char *rest = strncmp(url, "http://", 7) == 0    ? url + 7
	                   : strncmp(url, "https://", 8) == 0 ? url + 8
	                                                      : NULL;
	if (rest == NULL || *rest == '\0' || *rest == '/' || *rest == ':')
		return false;
	for (const char *p = url; *p; p++)
		if (*p == '?' || *p == '#' || *p == '@' || *p == '\\' || (unsigned char)*p <= ' ' ||
		    (unsigned char)*p >= 0x7f)
			return false;
	return true;
}

static bool id_char(char c)
{
	return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.';
}

bool kiln_playground_path_allowed(const char *p)
{
	if (strcmp(p, "openapi.json") == 0 || strcmp(p, "health-check") == 0)
		return true;
	static const char *const jobs[] = {"predictions", "trainings"};
	for (size_t i = 0; i < sizeof(jobs) / sizeof(*jobs); i++) {
		size_t n = strlen(jobs[i]);
		if (strncmp(p, jobs[i], n) != 0)
			continue;
		const char *r = p + n;
		if (*r == '\0')
			return true;
		if (*r++ != '/')
			return false;
		size_t id = 0;
		while (id_char(r[id]))
			id++;
		if (id == 0 || id > 128 || (id <= 2 && r[0] == '.'))
			return false;
		return r[id] == '\0' || strcmp(r + id, "/cancel") == 0;
	}
	return false;
}

/* Queue R (NULL when it could not be made) with its TYPE and the headers every answer has; an answer
 * not to STORE (the API's, the webhooks') says no-store. */
static enum MHD_Result send_response(struct MHD_Connection *c, unsigned status, struct MHD_Response *r,
                                     const char *type, bool store)
{
	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	if (!store)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type, const void *data,
                             size_t len)
{
	return send_response(c, status,
	                     MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_MUST_COPY), type,
	                     false);
}

static enum MHD_Result reply_json(struct MHD_Connection *c, unsigned status, json_t *j)
{
	_cleanup_free_ char *text = j ? kiln_json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (text == NULL)
		return MHD_NO;
	return reply(c, status, "application/json", text, strlen(text));
}

static enum MHD_Result reply_error(struct MHD_Connection *c, unsigned status, const char *msg)
{
	return reply_json(c, status, json_pack("{s:s}", "error", msg));
}

static const char *asset_type(const char *path)
{
	const char *dot = strrchr(path, '.');
	if (dot && strcmp(dot, ".html") == 0)
		return "text/html; charset=utf-8";
	if (dot && strcmp(dot, ".js") == 0)
		return "text/javascript; charset=utf-8";
	if (dot && strcmp(dot, ".css") == 0)
		return "text/css; charset=utf-8";
	if (dot && strcmp(dot, ".png") == 0)
		return "image/png";
	return "application/octet-stream";
}

/* The page's files: scripts and styles from here only; media from anywhere (outputs are URLs). */
static enum MHD_Result asset(struct MHD_Connection *c, const char *url)
{
	const char *want = strcmp(url, "/") == 0 ? "/index.html" : url;
	for (const struct kiln_asset *a = kiln_playground_assets; a->path; a++) {
		if (strcmp(a->path, want) != 0)
			continue;
		struct MHD_Response *r =
		    MHD_create_response_from_buffer(a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);
		if (r == NULL)
			return MHD_NO;
		MHD_add_response_header(r, "Content-Security-Policy",
		                        "default-src 'self'; script-src 'self'; style-src 'self'; "
		                        "img-src 'self' data: blob: http: https:; media-src 'self' data: "
		                        "blob: http: https:; connect-src 'self'; object-src 'none'; "
		                        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'");
		MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
		return send_response(c, MHD_HTTP_OK, r, asset_type(a->path), true);
	}
	return reply_error(c, MHD_HTTP_NOT_FOUND, "Not Found");
}

/* ---- the proxy ---- */

struct proxy {
	CURL *curl;
	struct curl_slist *headers;
	char *body;
	size_t len;
	int fd[2]; /* the target's body: written by the transfer's thread, read by MHD's */
	pthread_t thread;
	bool started; /* the thread runs: it closes fd[1] */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool head; /* the final response's headers are in */
	bool finished;
	long status;
	char type[256];
	CURLcode rc;
	char errbuf[CURL_ERROR_SIZE];
};

static size_t proxy_header(char *line, size_t size, size_t n, void *ctx)
{
	struct proxy *p = ctx;
	size_t len = size * n;
	if (len >= 13 && strncasecmp(line, "Content-Type:", 13) == 0) {
		const char *v = line + 13;
		while (*v == ' ' || *v == '\t')
			v++;
		size_t vl = strcspn(v, "\r\n");
		snprintf(p->type, sizeof(p->type), "%.*s", (int)(vl < sizeof(p->type) ? vl : 0), v);
	}
	if ((len == 2 && line[0] == '\r') || (len == 1 && line[0] == '\n')) {
		long status = 0;
		curl_easy_getinfo(p->curl, CURLINFO_RESPONSE_CODE, &status);
		if (status >= 200) { /* not an interim 1xx */
			pthread_mutex_lock(&p->mu);
			p->status = status;
			p->head = true;
			pthread_cond_broadcast(&p->cv);
			pthread_mutex_unlock(&p->mu);
		} else {
			p->type[0] = '\0';
		}
	}
	return len;
}

static size_t proxy_write(char *data, size_t size, size_t n, void *ctx)
{
	struct proxy *p = ctx;
	size_t len = size * n, off = 0;
	while (off < len) {
		ssize_t w = write(p->fd[1], data + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return 0; /* the page went away: the transfer stops */
		off += (size_t)w;
	}
	return len;
}

static void *proxy_run(void *ctx)
{
	struct proxy *p = ctx;
	CURLcode rc = curl_easy_perform(p->curl);
	pthread_mutex_lock(&p->mu);
	p->rc = rc;
	p->finished = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	close(p->fd[1]);
	p->fd[1] = -1;
	return NULL;
}

static void proxy_free(struct proxy *p)
{
	if (p->fd[0] >= 0)
		close(p->fd[0]);
	if (p->started)
		pthread_join(p->thread, NULL);
	else if (p->fd[1] >= 0)
		close(p->fd[1]);
	curl_easy_cleanup(p->curl);
	curl_slist_free_all(p->headers);
	free(p->body);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p);
}

static ssize_t proxy_read(void *ctx, uint64_t pos, char *buf, size_t max)
{
	(void)pos;
	struct proxy *p = ctx;
	for (;;) {
		ssize_t n = read(p->fd[0], buf, max);
		if (n > 0)
			return n;
		if (n == 0)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (errno != EINTR)
			return MHD_CONTENT_READER_END_WITH_ERROR;
	}
}

static void proxy_done(void *ctx)
{
	proxy_free(ctx);
}

/* Pass header NAME of the page's request on to the target. */
static void pass_header(struct proxy *p, struct MHD_Connection *c, const char *name)
{
	const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
	if (v == NULL)
		return;
	_cleanup_free_ char *line = NULL;
	if (asprintf(&line, "%s: %s", name, v) >= 0 && !strpbrk(v, "\r\n"))
		p->headers = curl_slist_append(p->headers, line);
}

static enum MHD_Result proxy(struct kiln_playground *pg, struct MHD_Connection *c, const char *path,
                             const char *method, struct request *req)
{
	if (!kiln_playground_path_allowed(path))
		return reply_error(c, MHD_HTTP_FORBIDDEN,
		                   "the playground passes on only Cog's API of its target (openapi.json, "
		                   "health-check, predictions, trainings)");
	bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0,
	     put = strcmp(method, "PUT") == 0;
	if (!get && !post && !put)
		return reply_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "Method Not Allowed");
	struct proxy *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return MHD_NO;
	p->fd[0] = p->fd[1] = -1;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	_cleanup_free_ char *url = NULL;
	if (asprintf(&url, "%s/%s", pg->target, path) < 0 || (p->curl = curl_easy_init()) == NULL ||
	    pipe2(p->fd, O_CLOEXEC) < 0) {
		proxy_free(p);
		return MHD_NO;
	}
	p->len = req->body.len;
	p->body = kiln_buf_detach(&req->body);
	pass_header(p, c, "Content-Type");
	pass_header(p, c, "Accept");
	pass_header(p, c, "Prefer");
	p->headers = curl_slist_append(p->headers, "Expect:");
	curl_easy_setopt(p->curl, CURLOPT_URL, url);
	curl_easy_setopt(p->curl, CURLOPT_HTTPHEADER, p->headers);
	curl_easy_setopt(p->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(p->curl, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(p->curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(p->curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(p->curl, CURLOPT_ERRORBUFFER, p->errbuf);
	curl_easy_setopt(p->curl, CURLOPT_HEADERFUNCTION, proxy_header);
	curl_easy_setopt(p->curl, CURLOPT_HEADERDATA, p);
	curl_easy_setopt(p->curl, CURLOPT_WRITEFUNCTION, proxy_write);
	curl_easy_setopt(p->curl, CURLOPT_WRITEDATA, p);
	if (post || put) {
		curl_easy_setopt(p->curl, CURLOPT_CUSTOMREQUEST, method);
		curl_easy_setopt(p->curl, CURLOPT_POSTFIELDS, p->body);
		curl_easy_setopt(p->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)p->len);
	}
	if (pthread_create(&p->thread, NULL, proxy_run, p) != 0) {
		proxy_free(p);
		return MHD_NO;
	}
	p->started = true;
	pthread_mutex_lock(&p->mu);
	while (!p->head && !p->finished)
		pthread_cond_wait(&p->cv, &p->mu);
	bool head = p->head;
	pthread_mutex_unlock(&p->mu);
	if (!head) { /* no answer at all: say why, as a gateway does */
		_cleanup_free_ char *msg = NULL;
		int rc = asprintf(&msg, "cannot reach the target %s: %s", pg->target,
		                  p->errbuf[0] ? p->errbuf : curl_easy_strerror(p->rc));
		proxy_free(p);
		return rc < 0 ? MHD_NO : reply_error(c, MHD_HTTP_BAD_GATEWAY, msg);
	}
	struct MHD_Response *r =
	    MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, proxy_read, p, proxy_done);
	if (r == NULL) {
		proxy_free(p);
		return MHD_NO;
	}
	return send_response(c, (unsigned)p->status, r, p->type[0] ? p->type : "application/octet-stream",
	                     false);
}

/* ---- the webhook sink ---- */

static enum MHD_Result webhook(struct kiln_playground *pg, struct MHD_Connection *c, struct request *req)
{
	json_error_t jerr;
	json_t *body = json_loadb(req->body.ptr ? req->body.ptr : "", req->body.len, 0, &jerr);
	if (body == NULL)
		return reply_error(c, MHD_HTTP_BAD_REQUEST, "a webhook's body is JSON");
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	pthread_mutex_lock(&pg->mu);
	json_t *ev = json_pack("{s:I,s:f,s:o}", "seq", (json_int_t)++pg->seq, "received_at",
	                       (double)now.tv_sec + now.tv_nsec / 1e9, "body", body);
	if (ev)
		json_array_append_new(pg->events, ev);
	while (json_array_size(pg->events) > PG_MAX_EVENTS)
		json_array_remove(pg->events, 0);
	pthread_cond_broadcast(&pg->cv);
	pthread_mutex_unlock(&pg->mu);
	return reply_json(c, MHD_HTTP_OK, json_object());
}

/* GET /playground/events?after=N: the webhooks after N, waiting up to PG_POLL_S for one; without after,
 * at once, none but the last one's number (where a page starts from). */
static enum MHD_Result events(struct kiln_playground *pg, struct MHD_Connection *c)
{
	const char *a = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "after");
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += PG_POLL_S;
	pthread_mutex_lock(&pg->mu);
	long long after = a ? strtoll(a, NULL, 10) : pg->seq;
	while (a && pg->seq <= after && !pg->stopping)
		if (pthread_cond_timedwait(&pg->cv, &pg->mu, &until) == ETIMEDOUT)
			break;
	json_t *out = json_array();
	size_t i;
	json_t *ev;
	json_array_foreach(pg->events, i, ev)
	{
		if (json_integer_value(json_object_get(ev, "seq")) > after)
			json_array_append(out, ev);
	}
	json_t *res = json_pack("{s:o,s:I}", "events", out, "last", (json_int_t)pg->seq);
	pthread_mutex_unlock(&pg->mu);
	return reply_json(c, MHD_HTTP_OK, res);
}

/* ---- routing ---- */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **state)
{
	(void)version;
	struct kiln_playground *pg = cls;
	struct request *req = *state;
	if (req == NULL) {
		if ((req = calloc(1, sizeof(*req))) == NULL)
			return MHD_NO;
		*state = req;
		return MHD_YES;
	}
	if (*upload_size) {
		size_t cap = strcmp(url, "/playground/webhook") == 0 ? PG_MAX_HOOK : PG_MAX_BODY;
		if (req->body.len + *upload_size > cap || kiln_buf_put(&req->body, upload, *upload_size) < 0)
			req->too_big = true;
		*upload_size = 0;
		return MHD_YES;
	}
	if (req->too_big)
		return reply_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "the request's body is too big");
	bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	if (strncmp(url, "/api/", 5) == 0)
		return proxy(pg, c, url + 5, method, req);
	if (strcmp(url, "/playground/webhook") == 0)
		return strcmp(method, "POST") == 0
		           ? webhook(pg, c, req)
		           : reply_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "Method Not Allowed");
	if (strcmp(url, "/playground/events") == 0)
		return get ? events(pg, c)
		           : reply_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "Method Not Allowed");
	if (strcmp(url, "/playground/config") == 0)
		return get ? reply(c, MHD_HTTP_OK, "application/json", pg->config, strlen(pg->config))
		           : reply_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "Method Not Allowed");
	if (!get)
		return reply_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "Method Not Allowed");
	return asset(c, url);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **state, enum MHD_RequestTerminationCode t)
{
	(void)cls;
	(void)c;
	(void)t;
	struct request *req = *state;
	if (req) {
		kiln_buf_release(&req->body);
		free(req);
	}
	*state = NULL;
}

int kiln_playground_start(struct kiln_playground **out, char **url, const struct kiln_playground_options *o,
                          struct kiln_error **err)
{
	if (!kiln_playground_target_valid(o->target))
		return kiln_error_set(err, KILN_EINVAL,
		                      "--target: '%s' is not an http:// or https:// URL of a host (without a "
		                      "query, fragment or user)",
		                      o->target);
	const char *host = o->host ? o->host : "127.0.0.1";
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return kiln_error_set(err, KILN_EINVAL, "--host: '%s' is not an IPv4 address", host);
	struct kiln_playground *pg = calloc(1, sizeof(*pg));
	if (pg == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	pthread_mutex_init(&pg->mu, NULL);
	pthread_cond_init(&pg->cv, NULL);
	pg->events = json_array();
	pg->target = strdup(o->target);
	size_t n = pg->target ? strlen(pg->target) : 0;
	while (n > 0 && pg->target[n - 1] == '/')
		pg->target[--n] = '\0';
	pg->d = MHD_start_daemon(
	    MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL,
	    NULL, on_request, pg, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_NOTIFY_COMPLETED, on_completed, pg,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)0, MHD_OPTION_END);
	if (pg->d == NULL) {
		int e = errno;
		kiln_playground_stop(pg);
		return kiln_error_errno(err, e, "cannot listen on %s:%ld", host, o->port);
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(pg->d, MHD_DAEMON_INFO_BIND_PORT);
	unsigned port = info ? info->port : (unsigned)o->port;
	_cleanup_free_ char *hook = NULL;
	char *where = NULL;
	if (asprintf(&where, "http://%s:%u", host, port) < 0 ||
	    asprintf(&hook, "%s/playground/webhook", o->webhook_base ? o->webhook_base : where) < 0) {
		free(where);
		kiln_playground_stop(pg);
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	json_t *config = json_pack("{s:s,s:s,s:s?}", "target", pg->target, "webhook", hook, "ref", o->ref);
	pg->config = config ? kiln_json_dumps(config, JSON_COMPACT) : NULL;
	json_decref(config);
	if (pg->config == NULL) {
		free(where);
		kiln_playground_stop(pg);
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	*out = pg;
	*url = where;
	return 0;
}

void kiln_playground_stop(struct kiln_playground *pg)
{
	if (pg == NULL)
		return;
	pthread_mutex_lock(&pg->mu);
	pg->stopping = true;
	pthread_cond_broadcast(&pg->cv);
	pthread_mutex_unlock(&pg->mu);
	if (pg->d)
		MHD_stop_daemon(pg->d);
	json_decref(pg->events);
	free(pg->target);
	free(pg->config);
	pthread_mutex_destroy(&pg->mu);
	pthread_cond_destroy(&pg->cv);
	free(pg);
}

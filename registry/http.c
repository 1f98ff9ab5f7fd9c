/* SPDX-License-Identifier: Apache-2.0 */
/* http.c: every HTTP request of the registry client goes through here (libcurl, one easy handle each). */
#include "registry/http.h"
#include "common/cleanup.h"
#include "kiln_version.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define DEFAULT_STALL_SECONDS   30
#define CONNECT_TIMEOUT_SECONDS 30
#define MAX_RETRY_AFTER         60.0

struct kiln_http {
	CURLSH *share;
	pthread_mutex_t locks[CURL_LOCK_DATA_LAST];
	char *ca_file;
	long stall_seconds;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;

static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void share_lock(CURL *handle, curl_lock_data data, curl_lock_access access, void *userp)
{
	struct kiln_http *h = userp;
	if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_lock(&h->locks[data]);
}

static void share_unlock(CURL *handle, curl_lock_data data, void *userp)
{
	struct kiln_http *h = userp;
	if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_unlock(&h->locks[data]);
}

long kiln_http_stall_seconds(long fallback)
{
	const char *s = getenv("KILN_HTTP_STALL_SECONDS");
	if (s && *s) {
		char *end = NULL;
		long v = strtol(s, &end, 10);
		if (end && *end == '\0' && v > 0)
			return v;
	}
	return fallback;
}

int kiln_http_new(struct kiln_http **out, const char *ca_file, struct kiln_error **err)
{
	*out = NULL;
	pthread_once(&global_once, global_init);
	if (global_rc != CURLE_OK)
		return kiln_error_set(err, KILN_EFAIL, "cannot initialize libcurl: %s",
		                      curl_easy_strerror(global_rc));
	struct kiln_http *h = calloc(1, sizeof(*h));
	if (h == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&h->locks[i], NULL);
	if (ca_file == NULL || *ca_file == '\0')
		ca_file = getenv("SSL_CERT_FILE");
	if (ca_file && *ca_file && (h->ca_file = strdup(ca_file)) == NULL)
		goto oom;
	h->stall_seconds = kiln_http_stall_seconds(DEFAULT_STALL_SECONDS);
	h->share = curl_share_init();
	if (h->share == NULL)
		goto oom;
	curl_share_setopt(h->share, CURLSHOPT_LOCKFUNC, share_lock);
	curl_share_setopt(h->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
	curl_share_setopt(h->share, CURLSHOPT_USERDATA, h);
	curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
	*out = h;
	return 0;
oom:
	kiln_http_free(h);
	return kiln_error_set(err, KILN_EFAIL, "out of memory");
}

void kiln_http_free(struct kiln_http *h)
{
	if (h == NULL)
		return;
	if (h->share)
		curl_share_cleanup(h->share);
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&h->locks[i]);
	free(h->ca_file);
	free(h);
}

static void clear_headers(struct kiln_http_response *r)
{
	char **fields[] = {&r->location,      &r->www_authenticate,      &r->range,
	                   &r->content_range, &r->docker_content_digest, &r->content_type,
	                   &r->retry_after};
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		free(*fields[i]);
		*fields[i] = NULL;
	}
}

void kiln_http_response_release(struct kiln_http_response *r)
{
	if (r == NULL)
		return;
	clear_headers(r);
	kiln_buf_release(&r->body);
	memset(r, 0, sizeof(*r));
}

/* The state one transfer's callbacks share. */
struct xfer {
	const struct kiln_http_request *req;
	struct kiln_http_response *resp;
	CURL *curl;
	uint64_t pos;        /* body bytes read so far in this attempt (after the last rewind) */
	bool answer_started; /* the 2xx answer's body has begun (its resume offset is settled) */
	uint64_t drop;       /* bytes of a 200 answer still to drop (they reached WRITE before) */
	struct kiln_error *cb_err;
	bool cancelled;
};

static long status_of(CURL *curl)
{
	long status = 0;
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	return status;
}

static bool is_2xx(CURL *curl)
{
	long status = status_of(curl);
	return status >= 200 && status < 300;
}

/* At the first body bytes of a resumed download's answer: a 206 must continue at the offset asked for;
 * of a 200 (the whole body again), the bytes WRITE already has are to be dropped. -1 with cb_err set. */
static int settle_resume(struct xfer *x)
{
	const struct kiln_http_request *req = x->req;
	x->answer_started = true;
	if (req->ranged) {
		uint64_t first = 0;
		const char *cr = x->resp->content_range;
		if (status_of(x->curl) != 206) {
			kiln_error_set(&x->cb_err, KILN_ENOTSUP, "%s answered %ld to a Range request",
			               req->url, status_of(x->curl));
			return -1;
		}
		if (kiln_http_content_range_first(cr, &first) < 0 || first != req->range_first) {
			kiln_error_set(&x->cb_err, KILN_EIO,
			               "asked for bytes %llu-%llu of %s, the answer has 'Content-Range: %s'",
			               (unsigned long long)req->range_first,
			               (unsigned long long)req->range_last, req->url, cr ? cr : "");
			return -1;
		}
		return 0;
	}
	if (req->resume_offset == 0)
		return 0;
	if (status_of(x->curl) != 206) {
		x->drop = req->resume_offset;
		return 0;
	}
	uint64_t first = 0;
	const char *cr = x->resp->content_range;
	if (kiln_http_content_range_first(cr, &first) < 0 || first != req->resume_offset) {
		kiln_error_set(&x->cb_err, KILN_EIO,
		               "asked for bytes %llu- of %s, the answer has 'Content-Range: %s'",
		               (unsigned long long)req->resume_offset, req->url, cr ? cr : "");
		return -1;
	}
	return 0;
}

int kiln_http_content_range_first(const char *cr, uint64_t *first)
{
	unsigned long long v = 0;
	if (cr == NULL || sscanf(cr, "bytes %llu-", &v) != 1)
		return -1;
	*first = v;
	return 0;
}

/* Keep one header's value; repeated WWW-Authenticate headers are joined with ", ". */
static void keep_header(char **slot, const char *value, size_t n, bool join)
{
	char *v = NULL;
	if (join && *slot) {
		if (asprintf(&v, "%s, %.*s", *slot, (int)n, value) < 0)
			return;
	} else {
		v = strndup(value, n);
	}
	if (v) {
		free(*slot);
		*slot = v;
	}
}

void kiln_http_header_line(struct kiln_http_response *r, const char *line, size_t n)
{
	if (n >= 5 && strncmp(line, "HTTP/", 5) == 0) {
		clear_headers(r);
		return;
	}
	const char *colon = memchr(line, ':', n);
	if (colon == NULL)
		return;
	size_t name_len = (size_t)(colon - line);
	const char *v = colon + 1;
	const char *end = line + n;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
		end--;
	static const struct {
		const char *name;
		size_t off;
	} wanted[] = {
	    {"location", offsetof(struct kiln_http_response, location)},
	    {"www-authenticate", offsetof(struct kiln_http_response, www_authenticate)},
	    {"range", offsetof(struct kiln_http_response, range)},
	    {"content-range", offsetof(struct kiln_http_response, content_range)},
	    {"docker-content-digest", offsetof(struct kiln_http_response, docker_content_digest)},
	    {"content-type", offsetof(struct kiln_http_response, content_type)},
	    {"retry-after", offsetof(struct kiln_http_response, retry_after)},
	};
	for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++) {
		if (strlen(wanted[i].name) == name_len && strncasecmp(line, wanted[i].name, name_len) == 0) {
			char **slot = (char **)((char *)r + wanted[i].off);
			keep_header(slot, v, (size_t)(end - v),
			            wanted[i].off == offsetof(struct kiln_http_response, www_authenticate));
		}
	}
}

/* CURLOPT_HEADERFUNCTION: capture the few headers the client needs; a new status line starts over. */
static size_t header_cb(char *line, size_t size, size_t nitems, void *userp)
{
	struct xfer *x = userp;
	size_t n = size * nitems;
	kiln_http_header_line(x->resp, line, n);
	return n;
}

/* CURLOPT_WRITEFUNCTION: a 2xx body goes to the request's writer or the capped buffer; other bodies are
 * kept (truncated) for the error message. Returning less than N stops the transfer. */
static size_t write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	struct xfer *x = userp;
	const struct kiln_http_request *req = x->req;
	size_t n = size * nmemb;
	if (is_2xx(x->curl)) {
		if (req->write) {
			if (!x->answer_started && settle_resume(x) < 0)
				return 0;
			size_t skip = x->drop < n ? (size_t)x->drop : n;
			x->drop -= skip;
			if (n > skip && req->write(req->write_ctx, data + skip, n - skip, &x->cb_err) < 0)
				return 0;
			x->resp->delivered += n - skip;
			return n;
		}
		size_t max = req->max_body ? req->max_body : KILN_HTTP_SMALL_BODY;
		if (x->resp->body.len + n > max) {
			x->resp->too_large = true;
			return 0;
		}
	} else if (x->resp->body.len + n > KILN_HTTP_SMALL_BODY) {
		size_t room = KILN_HTTP_SMALL_BODY - x->resp->body.len;
		if (room && kiln_buf_put(&x->resp->body, data, room) < 0)
			return 0;
		return n;
	}
	if (kiln_buf_put(&x->resp->body, data, n) < 0)
		return 0;
	return n;
}

/* CURLOPT_READFUNCTION: the request body from memory or from the blob source. */
static size_t read_cb(char *buf, size_t size, size_t nitems, void *userp)
{
	struct xfer *x = userp;
	const struct kiln_http_request *req = x->req;
	size_t want = size * nitems;
	uint64_t total = req->src ? req->src_len : req->data_len;
	if (x->pos >= total)
		return 0;
	if (want > total - x->pos)
		want = (size_t)(total - x->pos);
	size_t got;
	if (req->src) {
		ssize_t r = req->src->read(req->src->ctx, buf, want, &x->cb_err);
		if (r < 0)
			return CURL_READFUNC_ABORT;
		if (r == 0) {
			kiln_error_set(&x->cb_err, KILN_ECHANGED, "blob %s ended after %llu of %llu bytes",
			               req->src->digest, (unsigned long long)(req->src_offset + x->pos),
			               (unsigned long long)req->src->size);
			return CURL_READFUNC_ABORT;
		}
		got = (size_t)r;
	} else {
		memcpy(buf, (const char *)req->data + x->pos, want);
		got = want;
	}
	x->pos += got;
	x->resp->sent += got;
	if (req->progress)
		req->progress(req->progress_ctx, x->pos);
	return got;
}

/* CURLOPT_SEEKFUNCTION: curl rewinds the body (after a redirect or an auth round trip). */
static int seek_cb(void *userp, curl_off_t offset, int origin)
{
	struct xfer *x = userp;
	const struct kiln_http_request *req = x->req;
	uint64_t total = req->src ? req->src_len : req->data_len;
	if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > total)
		return CURL_SEEKFUNC_CANTSEEK;
	if (req->src && req->src->seek(req->src->ctx, req->src_offset + (uint64_t)offset, &x->cb_err) < 0)
		return CURL_SEEKFUNC_FAIL;
	x->pos = (uint64_t)offset;
	return CURL_SEEKFUNC_OK;
}

/* CURLOPT_XFERINFOFUNCTION: stop when the caller's cancel flag is set. */
static int xferinfo_cb(void *userp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
	struct xfer *x = userp;
	if (x->req->cancel && *x->req->cancel) {
		x->cancelled = true;
		return 1;
	}
	return 0;
}

bool kiln_http_code_retryable(int curl_code)
{
	switch ((CURLcode)curl_code) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_PARTIAL_FILE:
	case CURLE_GOT_NOTHING:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
		return true;
	default:
		return false;
	}
}

/* Set the options of one easy handle for REQ. */
static int setup(struct kiln_http *h, CURL *c, struct xfer *x, struct curl_slist **hdrs, char *errbuf)
{
	const struct kiln_http_request *req = x->req;
	bool has_body = strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0;
	uint64_t body_len = req->src ? req->src_len : req->data_len;
	CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                                        \
	do {                                                                                                 \
		if (rc == CURLE_OK)                                                                          \
			rc = curl_easy_setopt(c, opt, val);                                                  \
	} while (0)
	SET(CURLOPT_URL, req->url);
	SET(CURLOPT_SHARE, h->share);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_ERRORBUFFER, errbuf);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_USERAGENT, "kiln/" KILN_VERSION);
	SET(CURLOPT_CONNECTTIMEOUT_MS,
	    req->connect_timeout_ms > 0 ? req->connect_timeout_ms : CONNECT_TIMEOUT_SECONDS * 1000L);
	SET(CURLOPT_LOW_SPEED_LIMIT, 1024L);
	SET(CURLOPT_LOW_SPEED_TIME, h->stall_seconds);
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	if (h->ca_file)
		SET(CURLOPT_CAINFO, h->ca_file);
	SET(CURLOPT_HEADERFUNCTION, header_cb);
	SET(CURLOPT_HEADERDATA, x);
	SET(CURLOPT_WRITEFUNCTION, write_cb);
	SET(CURLOPT_WRITEDATA, x);
	SET(CURLOPT_NOPROGRESS, 0L);
	SET(CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
	SET(CURLOPT_XFERINFODATA, x);
	if (strcmp(req->method, "HEAD") == 0) {
		SET(CURLOPT_NOBODY, 1L);
	} else if (has_body) {
		SET(CURLOPT_UPLOAD, 1L);
		SET(CURLOPT_CUSTOMREQUEST, req->method);
		SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)body_len);
		SET(CURLOPT_READFUNCTION, read_cb);
		SET(CURLOPT_READDATA, x);
		SET(CURLOPT_SEEKFUNCTION, seek_cb);
		SET(CURLOPT_SEEKDATA, x);
	}
#undef SET
	if (rc != CURLE_OK)
		return -1;
	/* No "Expect: 100-continue" round trip; an empty Content-Type unless the caller gives one. */
	struct curl_slist *l = curl_slist_append(NULL, "Expect:");
	bool has_type = false;
	for (const char *const *p = req->headers; p && *p && l; p++) {
		has_type |= strncasecmp(*p, "Content-Type:", 13) == 0;
		l = curl_slist_append(l, *p);
	}
	if (l && has_body && !has_type)
		l = curl_slist_append(l, "Content-Type:");
	if (l && req->ranged) {
		char range[80];
		snprintf(range, sizeof(range), "Range: bytes=%llu-%llu", (unsigned long long)req->range_first,
		         (unsigned long long)req->range_last);
		l = curl_slist_append(l, range);
	} else if (l && req->resume_offset && !req->resume_whole) {
		char range[64];
		snprintf(range, sizeof(range), "Range: bytes=%llu-", (unsigned long long)req->resume_offset);
		l = curl_slist_append(l, range);
	}
	if (l && req->authorization) {
		_cleanup_free_ char *a = NULL;
		if (asprintf(&a, "Authorization: %s", req->authorization) < 0)
			a = NULL;
		struct curl_slist *n = a ? curl_slist_append(l, a) : NULL;
		if (a)
			explicit_bzero(a, strlen(a));
		if (n == NULL) {
			curl_slist_free_all(l);
			l = NULL;
		} else {
			l = n;
		}
	}
	if (l == NULL)
		return -1;
	*hdrs = l;
	return curl_easy_setopt(c, CURLOPT_HTTPHEADER, l) == CURLE_OK ? 0 : -1;
}

int kiln_http_perform(struct kiln_http *h, const struct kiln_http_request *req,
                      struct kiln_http_response *resp, struct kiln_error **err)
{
	kiln_http_response_release(resp);
	if (req->cancel && *req->cancel)
		return kiln_error_set(err, KILN_EINTR, "interrupted");
	if (req->src && req->src->seek(req->src->ctx, req->src_offset, err) < 0)
		return (*err) ? (*err)->code : KILN_EIO;
	CURL *c = curl_easy_init();
	if (c == NULL)
		return kiln_error_set(err, KILN_EFAIL, "cannot create a curl handle");
	struct xfer x = {.req = req, .resp = resp, .curl = c};
	struct curl_slist *hdrs = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	int ret = 0;
	if (setup(h, c, &x, &hdrs, errbuf) < 0) {
		ret = kiln_error_set(err, KILN_EFAIL, "cannot set up the request to %s", req->url);
		goto out;
	}
	CURLcode rc = curl_easy_perform(c);
	resp->curl_code = (int)rc;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
	if (rc == CURLE_OK) {
		if (resp->location) {
			char *abs = kiln_http_resolve(req->url, resp->location);
			if (abs) {
				free(resp->location);
				resp->location = abs;
			}
		}
		goto out;
	}
	if (x.cancelled) {
		ret = kiln_error_set(err, KILN_EINTR, "interrupted");
	} else if (x.cb_err) {
		/* The source or the writer failed: its own error, as it said it. */
		ret = x.cb_err->code;
		if (err) {
			kiln_error_free(*err);
			*err = steal_pointer(&x.cb_err);
		}
	} else if (resp->too_large) {
		ret = kiln_error_set(err, KILN_EINVAL, "answer larger than %zu bytes",
		                     req->max_body ? req->max_body : (size_t)KILN_HTTP_SMALL_BODY);
	} else {
		resp->retryable = kiln_http_code_retryable(rc);
		ret = kiln_error_set(err, KILN_EIO, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
	}
out:
	kiln_error_free(x.cb_err);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	return ret;
}

bool kiln_http_status_retryable(long status)
{
	return status == 408 || status == 429 || (status >= 500 && status <= 504);
}

double kiln_http_retry_after_seconds(const char *v)
{
	if (v == NULL || *v == '\0')
		return -1;
	/* RFC 9110: delay-seconds is 1*DIGIT (no sign, no fraction, no "nan" or "1e9"), else an HTTP-date */
	size_t digits = strspn(v, "0123456789");
	if (v[digits] == '\0') {
		double s = 0;
		for (size_t i = 0; i < digits && s < 1e9; i++)
			s = s * 10 + (v[i] - '0');
		return s;
	}
	time_t when = curl_getdate(v, NULL);
	if (when < 0)
		return -1;
	double d = difftime(when, time(NULL));
	return d < 0 ? 0 : d;
}

int kiln_http_backoff(double backoff, int attempt, const char *retry_after, volatile sig_atomic_t *cancel,
                      struct kiln_error **err)
{
	double delay = kiln_http_retry_after_seconds(retry_after);
	if (delay < 0) {
		delay = backoff;
		for (int i = 0; i < attempt && delay < MAX_RETRY_AFTER; i++)
			delay *= 2;
		/* Jitter: between the delay and one and a half times it. */
		delay *= 1.0 + (double)(arc4random() % 1000) / 2000.0;
	}
	if (delay > MAX_RETRY_AFTER)
		delay = MAX_RETRY_AFTER;
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		if (cancel && *cancel)
			return kiln_error_set(err, KILN_EINTR, "interrupted");
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		double left =
		    delay - ((double)(now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9);
		if (left <= 0)
			return 0;
		double step = left < 0.05 ? left : 0.05;
		struct timespec ts = {(time_t)step, (long)((step - (double)(time_t)step) * 1e9)};
		nanosleep(&ts, NULL);
	}
}

char *kiln_http_resolve(const char *base, const char *location)
{
	CURLU *u = curl_url();
	char *s = NULL, *out = NULL;
	if (u && curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK &&
	    curl_url_set(u, CURLUPART_URL, location, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK)
		out = strdup(s);
	curl_free(s);
	curl_url_cleanup(u);
	return out;
}

char *kiln_http_add_query(const char *url, const char *name, const char *value)
{
	_cleanup_free_ char *q = NULL;
	if (asprintf(&q, "%s=%s", name, value) < 0)
		return NULL;
	CURLU *u = curl_url();
	char *s = NULL, *out = NULL;
	if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_set(u, CURLUPART_QUERY, q, CURLU_APPENDQUERY | CURLU_URLENCODE) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK)
		out = strdup(s);
	curl_free(s);
	curl_url_cleanup(u);
	return out;
}

char *kiln_http_origin(const char *url)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL, *out = NULL;
	if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
		if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
			port = NULL;
		for (char *p = host; *p; p++)
			*p = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
		if (asprintf(&out, "%s://%s:%s", scheme, host, port ? port : "") < 0)
			out = NULL;
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return out;
}

char *kiln_http_basic(const char *user, const char *secret)
{
	size_t n = strlen(user) + 1 + strlen(secret);
	char *plain = malloc(n + 1);
	char *enc = malloc(4 * ((n + 2) / 3) + 1);
	char *out = NULL;
	if (plain && enc) {
		snprintf(plain, n + 1, "%s:%s", user, secret);
		EVP_EncodeBlock((unsigned char *)enc, (const unsigned char *)plain, (int)n);
		if (asprintf(&out, "Basic %s", enc) < 0)
			out = NULL;
		explicit_bzero(plain, n);
		explicit_bzero(enc, strlen(enc));
	}
	free(plain);
	free(enc);
	return out;
}

int kiln_base64_decode(char **out, size_t *len, const char *s)
{
	*out = NULL;
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
		n--;
	if (n % 4 != 0)
		return -1;
	unsigned char *buf = malloc(n / 4 * 3 + 1);
	if (buf == NULL)
		return -1;
	int r = n ? EVP_DecodeBlock(buf, (const unsigned char *)s, (int)n) : 0;
	if (r < 0) {
		free(buf);
		return -1;
	}
	/* EVP_DecodeBlock counts the padding as zero bytes. */
	if (n >= 1 && s[n - 1] == '=')
		r--;
	if (n >= 2 && s[n - 2] == '=')
		r--;
	buf[r] = '\0';
	*out = (char *)buf;
	if (len)
		*len = (size_t)r;
	return 0;
}

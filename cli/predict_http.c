/* SPDX-License-Identifier: Apache-2.0 */
/* predict_http.c: `kiln predict` talking to the shim over Cog's HTTP API (libcurl): the health check while
 * setup runs, and one prediction as server-sent events, its logs printed as they come. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/predict.h"
#include "common/json.h"
#include "common/buf.h"
#include "common/cleanup.h"

static size_t collect(char *data, size_t size, size_t nmemb, void *ctx)
{
	return kiln_buf_put(ctx, data, size * nmemb) < 0 ? 0 : size * nmemb;
}

/* Stop a transfer on Ctrl-C. */
static int on_progress(void *ctx, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	(void)ctx, (void)dt, (void)dn, (void)ut, (void)un;
	return cli_interrupted ? 1 : 0;
}

/* A handle for URL+PATH on loopback. */
static CURL *handle(const char *url, const char *path, char *full, size_t size)
{
	snprintf(full, size, "%s%s", url, path);
	CURL *c = curl_easy_init();
	if (!c)
		return NULL;
	curl_easy_setopt(c, CURLOPT_URL, full);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*"); /* the shim is on loopback: never through a proxy */
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
	return c;
}

int predict_get_json(const char *url, const char *path, json_t **out, struct kiln_error **err)
{
	char full[512];
	CURL *c = handle(url, path, full, sizeof(full));
	if (!c)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	_cleanup_buf_ struct kiln_buf body = KILN_BUF_INIT;
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
	CURLcode rc = curl_easy_perform(c);
	curl_easy_cleanup(c);
	if (rc != CURLE_OK)
		return rc == CURLE_ABORTED_BY_CALLBACK
		           ? kiln_error_set(err, KILN_EINTR, "interrupted")
		           : kiln_error_set(err, KILN_EIO, "GET %s: %s", full, curl_easy_strerror(rc));
	json_error_t jerr;
	*out = json_loadb(body.ptr ? body.ptr : "", body.len, 0, &jerr);
	return *out ? 0 : kiln_error_set(err, KILN_EIO, "GET %s: not JSON: %s", full, jerr.text);
}

/* The last non-empty line of TEXT, for a one-line message. */
static void last_line(char *out, size_t size, const char *text)
{
	const char *end = text + strlen(text);
	while (end > text && (end[-1] == '\n' || end[-1] == '\r'))
		end--;
	const char *start = end;
	while (start > text && start[-1] != '\n')
		start--;
	snprintf(out, size, "%.*s", (int)(end - start), start);
}

int predict_wait_ready(struct predict_runtime *rt, bool quiet, struct kiln_error **err)
{
	size_t shown = 0;
	for (;;) {
		if (cli_interrupted)
			return kiln_error_set(err, KILN_EINTR, "interrupted");
		json_t *h = NULL;
		struct kiln_error *e = NULL;
		const char *status = NULL, *logs = NULL;
		if (predict_get_json(rt->url, "/health-check", &h, &e) == 0) {
			status = json_string_value(json_object_get(h, "status"));
			logs = json_string_value(json_object_get(json_object_get(h, "setup"), "logs"));
		}
		kiln_error_free(e);
		if (logs && strlen(logs) > shown) {
			if (!quiet)
				fputs(logs + shown, stderr);
			shown = strlen(logs);
		}
		if (status && (strcmp(status, "READY") == 0 || strcmp(status, "BUSY") == 0)) {
			json_decref(h);
			return 0;
		}
		if (status && (strcmp(status, "SETUP_FAILED") == 0 || strcmp(status, "DEFUNCT") == 0)) {
			char line[1024];
			last_line(line, sizeof(line), logs ? logs : "");
			kiln_error_set(err, KILN_EFAIL, "setup failed%s%s", *line ? ": " : "", line);
			json_decref(h);
			return -1;
		}
		json_decref(h);
		if (!predict_runtime_alive(rt)) {
			_cleanup_free_ char *text = NULL;
			FILE *f = fopen(rt->log, "re");
			char line[1024] = "";
			if (f) {
				struct kiln_buf b = KILN_BUF_INIT;
				char chunk[4096];
				size_t n;
				while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
					kiln_buf_put(&b, chunk, n);
				fclose(f);
				text = kiln_buf_detach(&b);
				last_line(line, sizeof(line), text);
			}
			return kiln_error_set(err, KILN_EFAIL,
			                      "the model's server exited before it was ready%s%s",
			                      *line ? ": " : "", line);
		}
		usleep(100 * 1000);
	}
}

/* The state of one event stream. */
struct stream {
	struct kiln_buf pending; /* bytes of an event not complete yet */
	bool quiet;
	json_t *completed;
};

/* Handle one event (TEXT[0..LEN), its lines without the blank line that ended it). */
static void on_event(struct stream *st, const char *text, size_t len)
{
	char event[32] = "";
	struct kiln_buf data = KILN_BUF_INIT;
	for (const char *p = text; p < text + len;) {
		const char *nl = memchr(p, '\n', (size_t)(text + len - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(text + len - p);
		if (n >= 7 && strncmp(p, "event: ", 7) == 0)
			snprintf(event, sizeof(event), "%.*s", (int)(n - 7), p + 7);
		else if (n >= 6 && strncmp(p, "data: ", 6) == 0)
			kiln_buf_put(&data, p + 6, n - 6);
		p += n + 1;
	}
	json_t *v = data.ptr ? json_loadb(data.ptr, data.len, JSON_DECODE_ANY, NULL) : NULL;
	json_t *log = json_object_get(v, "data"); /* "log": {"source": "stdout" or "stderr", "data": TEXT} */
	if (strcmp(event, "log") == 0 && json_is_string(log) && !st->quiet) {
		fwrite(json_string_value(log), 1, json_string_length(log), stderr);
		fflush(stderr);
	} else if (strcmp(event, "completed") == 0 && json_is_object(v)) {
		json_decref(st->completed);
		st->completed = json_incref(v);
	}
	json_decref(v);
	kiln_buf_release(&data);
}

static size_t on_stream(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct stream *st = ctx;
	if (kiln_buf_put(&st->pending, data, size * nmemb) < 0)
		return 0;
	char *end;
	while (st->pending.ptr && (end = strstr(st->pending.ptr, "\n\n")) != NULL) {
		size_t n = (size_t)(end - st->pending.ptr);
		on_event(st, st->pending.ptr, n);
		memmove(st->pending.ptr, end + 2, st->pending.len - n - 2);
		st->pending.len -= n + 2;
		st->pending.ptr[st->pending.len] = '\0';
	}
	return size * nmemb;
}

/* Cog's "detail" as one line: a string as it is; pydantic's list as "NAME: MSG; ..." (the input's name is
 * the last member of each "loc"). */
static char *detail_text(const json_t *detail)
{
	if (json_is_string(detail))
		return strdup(json_string_value(detail));
	if (!json_is_array(detail))
		return json_dumps(detail, JSON_COMPACT | JSON_ENCODE_ANY);
	struct kiln_buf b = KILN_BUF_INIT;
	size_t i;
	json_t *e;
	json_array_foreach(detail, i, e)
	{
		const json_t *loc = json_object_get(e, "loc");
		const json_t *last = json_array_get(loc, json_array_size(loc) - 1);
		const char *msg = json_string_value(json_object_get(e, "msg"));
		kiln_buf_printf(&b, "%s%s%s%s", i ? "; " : "",
		                json_is_string(last) ? json_string_value(last) : "",
		                json_is_string(last) ? ": " : "", msg ? msg : "invalid");
	}
	return kiln_buf_detach(&b);
}

/* POST URL/PATH/ID/cancel, best effort. */
static void cancel(const char *url, const char *path, const char *id)
{
	char where[256], full[512];
	snprintf(where, sizeof(where), "%s/%s/cancel", path, id);
	CURL *c = handle(url, where, full, sizeof(full));
	if (!c)
		return;
	struct kiln_buf ignored = KILN_BUF_INIT;
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &ignored);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 1L); /* it must go even though we were interrupted */
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 5L);
	curl_easy_perform(c);
	curl_easy_cleanup(c);
	kiln_buf_release(&ignored);
}

int predict_send(const char *url, const char *path, const char *id, const json_t *input, bool quiet,
                 json_t **response, struct kiln_error **err)
{
	json_t *request = json_pack("{s:s, s:O}", "id", id, "input", input);
	_cleanup_free_ char *body = request ? kiln_json_dumps(request, JSON_COMPACT) : NULL;
	json_decref(request);
	if (!body)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	char full[512];
	CURL *c = handle(url, path, full, sizeof(full));
	if (!c)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
	headers = curl_slist_append(headers, "Accept: text/event-stream");
	/* kiln's own client: a stream of any model, not only of one marked @cog.streaming (kiln-shim(1)) */
	headers = curl_slist_append(headers, "X-Kiln-Stream: always");
	struct stream st = {.pending = KILN_BUF_INIT, .quiet = quiet, .completed = NULL};
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_stream);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &st);
	CURLcode rc = curl_easy_perform(c);
	long code = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(c);
	curl_slist_free_all(headers);
	int result = 0;
	if (rc == CURLE_ABORTED_BY_CALLBACK) {
		cancel(url, path, id);
		result = kiln_error_set(err, KILN_EINTR, "interrupted: the %s was canceled",
		                        strcmp(path, "/trainings") == 0 ? "training" : "prediction");
	} else if (rc != CURLE_OK) {
		result = kiln_error_set(err, KILN_EIO, "POST %s: %s", full, curl_easy_strerror(rc));
	} else if (code != 200) {
		/* not a stream: the answer is Cog's {"detail": ...} (422 for an invalid input), or coglet's
		 * {"error": ..., "status": "failed"} (409 busy, 503 not ready) */
		json_t *j = st.pending.ptr ? json_loadb(st.pending.ptr, st.pending.len, 0, NULL) : NULL;
		const char *error = json_string_value(json_object_get(j, "error"));
		_cleanup_free_ char *text = error ? strdup(error) : detail_text(json_object_get(j, "detail"));
		result = kiln_error_set(err, KILN_EINVAL, "%s (HTTP %ld): %s",
		                        code == 422 ? "the model refused the input"
		                                    : "the model's server refused it",
		                        code, text ? text : "no detail");
		json_decref(j);
	} else if (!st.completed) {
		result =
		    kiln_error_set(err, KILN_EIO, "the stream of POST %s ended without its result", full);
	} else {
		*response = st.completed;
		st.completed = NULL;
	}
	json_decref(st.completed);
	kiln_buf_release(&st.pending);
	return result;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* log.c: the shim's JSON-lines log and Cog's timestamps, cheap enough for two lines per prediction. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/json.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "shim/log.h"

/* ---- JSON text ---- */

int shim_put_json(struct kiln_buf *b, const json_t *v)
{
	return kiln_json_dumpb(b, v, JSON_COMPACT);
}

/* Whether JSON writes TEXT[0..LEN) as it is, between quotes: printable ASCII, no quote or backslash. */
static bool json_plain(const char *text, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];
		if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
			return false;
	}
	return true;
}

int shim_put_text(struct kiln_buf *b, const char *text, size_t len)
{
	if (json_plain(text, len)) {
		int rc = kiln_buf_puts(b, "\"");
		rc |= kiln_buf_put(b, text, len);
		rc |= kiln_buf_puts(b, "\"");
		return rc ? -1 : 0;
	}
	json_t *j = shim_json_text(text, len); /* what is not UTF-8 becomes U+FFFD: never a missing value */
	int rc = j ? shim_put_json(b, j) : -1;
	json_decref(j);
	return rc;
}

/* The length of the UTF-8 sequence (RFC 3629: no overlong form, no surrogate, at most U+10FFFF) that
 * starts at S (N bytes left), or 0 when none does. */
static size_t utf8_sequence(const unsigned char *s, size_t n)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t len;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
	else
		return 0;
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return len;
}

bool shim_utf8_valid(const char *text, size_t len)
{
	const unsigned char *s = (const unsigned char *)text;
	for (size_t i = 0, n; i < len; i += n)
		if ((n = utf8_sequence(s + i, len - i)) == 0)
			return false;
	return true;
}

int shim_put_utf8(struct kiln_buf *b, const char *text, size_t len)
{
	const unsigned char *s = (const unsigned char *)text;
	int rc = 0;
	for (size_t i = 0; i < len;) {
		size_t n = utf8_sequence(s + i, len - i);
		rc |= n ? kiln_buf_put(b, text + i, n) : kiln_buf_put(b, "\xef\xbf\xbd", 3);
		i += n ? n : 1;
	}
	return rc ? -1 : 0;
}

json_t *shim_json_text(const char *text, size_t len)
{
	if (shim_utf8_valid(text, len))
		return json_stringn(text, len);
	_cleanup_buf_ struct kiln_buf fixed = KILN_BUF_INIT;
	if (shim_put_utf8(&fixed, text, len) < 0)
		return NULL;
	return json_stringn(fixed.ptr ? fixed.ptr : "", fixed.len);
}

const char *shim_quoted(const char *text, char *buf, size_t size, struct kiln_buf *spill)
{
	size_t len = strlen(text);
	if (len + 3 <= size && json_plain(text, len)) {
		buf[0] = '"';
		memcpy(buf + 1, text, len);
		memcpy(buf + 1 + len, "\"", 2);
		return buf;
	}
	return shim_put_text(spill, text, len) == 0 && spill->ptr ? spill->ptr : "null";
}

/* T seconds as a JSON number with microseconds, the runner's precision: "0.000331", "2.5", "0.0" (no
 * floating-point printf on the path of every prediction). */
void shim_seconds_text(char out[32], double t)
{
	long long us = t > 0 ? (long long)(t * 1e6 + 0.5) : 0;
	int n = snprintf(out, 32, "%lld.%06lld", us / 1000000, us % 1000000);
	while (n > 2 && out[n - 1] == '0' && out[n - 2] != '.')
		out[--n] = '\0';
}

/* ---- time and log lines ---- */

void shim_now(char out[SHIM_TIME_LEN])
{
	/* the date and time to the second change once a second: format them then, per thread */
	static __thread time_t cached_sec = (time_t)-1;
	static __thread char cached[24];
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	if (t.tv_sec != cached_sec) {
		struct tm tm;
		gmtime_r(&t.tv_sec, &tm);
		strftime(cached, sizeof(cached), "%Y-%m-%dT%H:%M:%S", &tm);
		cached_sec = t.tv_sec;
	}
	size_t n = strlen(cached);
	memcpy(out, cached, n);
	out[n++] = '.';
	unsigned us = (unsigned)(t.tv_nsec / 1000) % 1000000u;
	for (int i = 5; i >= 0; i--, us /= 10)
		out[n + (size_t)i] = (char)('0' + us % 10);
	memcpy(out + n + 6, "+00:00", 7);
}

double shim_since(const struct timespec *a)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - a->tv_sec) + (double)(t.tv_nsec - a->tv_nsec) / 1e9;
}

FILE *shim_log_file;

/* This thread's log lines held back by shim_log_defer, written in one write(2) when the outermost
 * stretch ends. Its buffer is freed when the thread ends (deferred_key's destructor). */
struct deferred {
	int depth;
	char *buf;
	size_t len, cap;
};
static __thread struct deferred deferred;
static pthread_key_t deferred_key;
static pthread_once_t deferred_once = PTHREAD_ONCE_INIT;

static void deferred_free(void *p)
{
	struct deferred *d = p;
	free(d->buf);
	d->buf = NULL;
	d->len = d->cap = 0;
}

static void deferred_key_create(void)
{
	pthread_key_create(&deferred_key, deferred_free);
}

static int log_fd(void)
{
	return fileno(shim_log_file ? shim_log_file : stderr);
}

void shim_log_defer(bool on)
{
	if (on) {
		deferred.depth++;
		return;
	}
	if (deferred.depth > 0 && --deferred.depth > 0)
		return;
	if (deferred.len)
		kiln_write_all(log_fd(), deferred.buf, deferred.len);
	deferred.len = 0;
}

/* LOG_FORMAT=development, as Cog's: human-readable lines instead of JSON. */
static bool development(void)
{
	static int dev = -1;
	if (dev < 0) {
		const char *f = getenv("LOG_FORMAT");
		dev = f && strcmp(f, "development") == 0;
	}
	return dev;
}

/* The JSON line LINE as "TIMESTAMP [severity] message key=value ..." into OUT. */
static void render_development(struct kiln_buf *out, const char *line, size_t len)
{
	json_t *o = json_loadb(line, len, JSON_ALLOW_NUL, NULL);
	const char *ts = json_string_value(json_object_get(o, "timestamp"));
	const char *sev = json_string_value(json_object_get(o, "severity"));
	char level[16] = "";
	for (size_t i = 0; sev && sev[i] && i < sizeof(level) - 1; i++)
		level[i] = (char)(sev[i] >= 'A' && sev[i] <= 'Z' ? sev[i] + 32 : sev[i]);
	json_t *msg = json_object_get(o, "message");
	kiln_buf_printf(out, "%s [%-7s] ", ts ? ts : "", level);
	kiln_buf_put(out, json_string_value(msg) ?: "", json_string_length(msg));
	const char *key;
	json_t *v;
	json_object_foreach(o, key, v)
	{
		if (strcmp(key, "timestamp") == 0 || strcmp(key, "severity") == 0 ||
		    strcmp(key, "message") == 0)
			continue;
		kiln_buf_printf(out, " %s=", key);
		const char *str = json_string_value(v);
		if (str && *str && strlen(str) == json_string_length(v) && !strpbrk(str, " \"=\\\n\t"))
			kiln_buf_puts(out, str);
		else
			shim_put_json(out, v);
	}
	kiln_buf_puts(out, "\n");
	json_decref(o);
}

/* Write LINE (LEN bytes, its newline included): now, or held back while a deferred stretch lasts. Only
 * whole lines go to the fd in one write(2): the server's threads share no stdio lock. */
static void emit_line(const char *line, size_t len)
{
	static __thread bool rendering;
	if (development() && !rendering) {
		rendering = true;
		struct kiln_buf b = KILN_BUF_INIT;
		render_development(&b, line, len);
		if (b.len)
			emit_line(b.ptr, b.len);
		kiln_buf_release(&b);
		rendering = false;
		return;
	}
	if (deferred.depth > 0) {
		if (deferred.len + len > deferred.cap) {
			size_t cap = deferred.cap ? deferred.cap * 2 : 4096;
			while (cap < deferred.len + len)
				cap *= 2;
			if (!deferred.buf) { /* this thread's first: to be freed when it ends */
				pthread_once(&deferred_once, deferred_key_create);
				pthread_setspecific(deferred_key, &deferred);
			}
			char *b = realloc(deferred.buf, cap);
			if (b) {
				deferred.buf = b;
				deferred.cap = cap;
			}
		}
		if (deferred.len + len <= deferred.cap) {
			memcpy(deferred.buf + deferred.len, line, len);
			deferred.len += len;
			return;
		}
	}
	kiln_write_all(log_fd(), line, len);
}

/* The time as Cog's logs write it (structlog's ISO stamp): RFC 3339, microseconds, "Z". */
static void log_time(char ts[SHIM_TIME_LEN])
{
	shim_now(ts);
	char *zone = strchr(ts, '+');
	if (zone)
		memcpy(zone, "Z", 2);
}

/* LEVEL ("info", "warning", "error") as Cog's severity: "INFO", "WARNING", "ERROR". */
static const char *severity(const char *level)
{
	return strcmp(level, "error") == 0 ? "ERROR" : strcmp(level, "warning") == 0 ? "WARNING" : "INFO";
}

/* The start of a line, {"timestamp":"...","severity":"LEVEL","message":, into BUF (SIZE bytes); its
 * length. */
static size_t line_start(char *buf, size_t size, const char *level)
{
	char ts[SHIM_TIME_LEN];
	log_time(ts);
	int n = snprintf(buf, size, "{\"timestamp\":\"%s\",\"severity\":\"%s\",\"message\":", ts,
	                 severity(level));
	return n < 0 ? 0 : (size_t)n;
}

/* The whole line built by jansson: for lines too long for log_message's stack buffer. */
static void log_slow(const char *level, json_t *msg, json_t *extra)
{
	char ts[SHIM_TIME_LEN];
	log_time(ts);
	json_t *m = msg ? json_incref(msg) : json_string("(a message that is not UTF-8)");
	json_t *o = json_pack("{s:s, s:s, s:o}", "timestamp", ts, "severity", severity(level), "message", m);
	if (o && extra)
		json_object_update_missing(o, extra);
	char *line = o ? kiln_json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (line) {
		size_t len = strlen(line);
		line[len] = '\n'; /* the NUL becomes the newline: one write */
		emit_line(line, len + 1);
		free(line);
	}
}

/* One log line with the message MSG (a JSON string, or NULL for one that is not UTF-8; taken) and EXTRA's
 * members (taken). */
static void log_message(const char *level, json_t *msg, json_t *extra)
{
	char buf[8192];
	size_t n = line_start(buf, sizeof(buf), level);
	/* the message (any text: jansson escapes it), then EXTRA's members in their order: its "{" becomes
	 * the "," after "message" and its "}" ends the line's object */
	size_t k = msg ? json_dumpb(msg, buf + n, sizeof(buf) - n, JSON_ENCODE_ANY) : 0;
	bool members = extra && json_object_size(extra) > 0;
	size_t e = 0;
	if (k > 0 && k < sizeof(buf) - n) {
		n += k;
		_cleanup_free_ char *text = members ? kiln_json_dumps(extra, JSON_COMPACT) : NULL;
		e = members ? (text ? strlen(text) : 0) : 1;
		if (text && e < sizeof(buf) - n)
			memcpy(buf + n, text, e);
	}
	if (e == 0 || e + 1 > sizeof(buf) - n) {
		log_slow(level, msg, extra);
	} else {
		if (members)
			buf[n] = ',';
		else
			buf[n] = '}';
		n += e;
		buf[n++] = '\n';
		emit_line(buf, n);
	}
	json_decref(msg);
	json_decref(extra);
}

void shim_log(const char *level, json_t *extra, const char *fmt, ...)
{
	char msg[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_message(level, json_string(msg), extra);
}

void shim_log_text(const char *level, json_t *extra, const char *text, size_t len)
{
	log_message(level, shim_json_text(text, len), extra);
}

void shim_log_fields(const char *level, const char *msg, const char *fields, ...)
{
	char buf[1024];
	size_t n = line_start(buf, sizeof(buf), level);
	int k = snprintf(buf + n, sizeof(buf) - n, "\"%s\",", msg);
	if (k > 0 && (size_t)k < sizeof(buf) - n) {
		n += (size_t)k;
		va_list ap;
		va_start(ap, fields);
		k = vsnprintf(buf + n, sizeof(buf) - n, fields, ap);
		va_end(ap);
		if (k > 0 && (size_t)k + 2 < sizeof(buf) - n) {
			n += (size_t)k;
			buf[n++] = '}';
			buf[n++] = '\n';
			emit_line(buf, n);
			return;
		}
	}
	shim_log("error", NULL, "a log line for '%s' is too long", msg);
}

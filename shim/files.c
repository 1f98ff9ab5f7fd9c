/* SPDX-License-Identifier: Apache-2.0 */
/* files.c: file inputs (downloads and data: URIs into a directory) and file outputs (data: URIs, uploads). */
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "shim/shim.h"

#define DEFAULT_MAX_INPUT_BYTES (1024LL * 1024 * 1024)
#define CONNECT_TIMEOUT         30L  /* seconds */
#define TRANSFER_TIMEOUT        900L /* seconds for a whole download or upload */
#define STALL_SECONDS           60L  /* abort when less than 1 byte/s flows for this long */
#define MAX_NAME                128  /* bytes of a file name kept from a URL */
#define MAX_SCHEMA_DEPTH        8
#define B64_CHUNK               (4 * 16384) /* base64 characters decoded at a time */
#define RAW_CHUNK               (3 * 16384) /* bytes encoded at a time */
#define ERROR_BODY              512         /* bytes of an error answer kept for the message */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void curl_cleanupp(CURL **c)
{
	if (*c)
		curl_easy_cleanup(*c);
}
#define _cleanup_curl_ __attribute__((cleanup(curl_cleanupp)))

static void curl_slist_freep(struct curl_slist **l)
{
	curl_slist_free_all(*l);
}
#define _cleanup_slist_ __attribute__((cleanup(curl_slist_freep)))

/* A new curl handle with the settings all transfers here share, or NULL with *err set. */
static CURL *new_handle(char *errbuf, struct kiln_error **err)
{
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK) {
		kiln_error_set(err, KILN_EFAIL, "cannot initialize libcurl: %s",
		               curl_easy_strerror(curl_init_rc));
		return NULL;
	}
	CURL *c = curl_easy_init();
	if (!c) {
		kiln_error_set(err, KILN_EFAIL, "cannot initialize libcurl");
		return NULL;
	}
	errbuf[0] = 0;
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_USERAGENT, "kiln");
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, TRANSFER_TIMEOUT);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, STALL_SECONDS);
	return c;
}

/* curl's words for a failed transfer: its error buffer when filled, else the code's string. */
static const char *curl_words(CURLcode rc, const char *errbuf)
{
	return errbuf[0] ? errbuf : curl_easy_strerror(rc);
}

/* Append ": FIRST LINE" of an error answer's BODY to B when it is short printable text. */
static void put_body_excerpt(struct kiln_buf *b, const struct kiln_buf *body)
{
	size_t n = 0;
	while (n < body->len && n < 200 && body->ptr[n] != '\n' && body->ptr[n] != '\r' &&
	       isprint((unsigned char)body->ptr[n]))
		n++;
	if (n > 0 && (n == body->len || body->ptr[n] == '\n' || body->ptr[n] == '\r'))
		kiln_buf_printf(b, ": %.*s", (int)n, body->ptr);
}

/* $KILN_MAX_INPUT_BYTES, else (also when it is not a positive number) 1 GiB. */
static long long max_input_bytes(void)
{
	const char *s = getenv("KILN_MAX_INPUT_BYTES");
	if (!s || !*s)
		return DEFAULT_MAX_INPUT_BYTES;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	return errno || *end || v <= 0 ? DEFAULT_MAX_INPUT_BYTES : v;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The byte at S[*i], decoding a %XX escape (and moving *i past it). */
static char next_byte(const char *s, size_t len, size_t *i)
{
	char c = s[*i];
	if (c == '%' && *i + 2 < len && hexval(s[*i + 1]) >= 0 && hexval(s[*i + 2]) >= 0) {
		c = (char)(hexval(s[*i + 1]) * 16 + hexval(s[*i + 2]));
		*i += 2;
	}
	return c;
}

/* ---- names and MIME types ---- */

static const struct {
	const char *ext; /* with its dot */
	const char *mime;
} mime_types[] = {
    {".bin", "application/octet-stream"},
    {".bmp", "image/bmp"},
    {".csv", "text/csv"},
    {".flac", "audio/flac"},
    {".gif", "image/gif"},
    {".html", "text/html"},
    {".jpg", "image/jpeg"}, /* before .jpeg: the extension given to image/jpeg data */
    {".jpeg", "image/jpeg"},
    {".json", "application/json"},
    {".md", "text/markdown"},
    {".mp3", "audio/mpeg"},
    {".mp4", "video/mp4"},
    {".npy", "application/octet-stream"},
    {".ogg", "audio/ogg"},
    {".pdf", "application/pdf"},
    {".png", "image/png"},
    {".svg", "image/svg+xml"},
    {".tar", "application/x-tar"},
    {".tif", "image/tiff"},
    {".tiff", "image/tiff"},
    {".txt", "text/plain"},
    {".wav", "audio/wav"},
    {".webm", "video/webm"},
    {".webp", "image/webp"},
    {".zip", "application/zip"},
};
#define N_MIME_TYPES (sizeof(mime_types) / sizeof(mime_types[0]))

/* The MIME type for PATH's extension (any case), application/octet-stream when unknown. */
static const char *mime_for_path(const char *path)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	const char *dot = strrchr(base, '.');
	if (dot && dot != base)
		for (size_t i = 0; i < N_MIME_TYPES; i++)
			if (strcasecmp(dot, mime_types[i].ext) == 0)
				return mime_types[i].mime;
	return "application/octet-stream";
}

/* The extension (with its dot) for the MIME type MIME[0..LEN), or "" when unknown or generic. */
static const char *ext_for_mime(const char *mime, size_t len)
{
	for (size_t i = 0; i < N_MIME_TYPES; i++) {
		const char *m = mime_types[i].mime;
		if (strlen(m) == len && strncasecmp(mime, m, len) == 0 &&
		    strcmp(m, "application/octet-stream"))
			return mime_types[i].ext;
	}
	return "";
}

/*
 * A safe file name from S[0..LEN) (percent-escapes decoded): letters, digits, '.', '-' and '_' kept,
 * anything else '_', leading dots dropped, at most MAX_NAME bytes (the end, with the extension, kept).
 * Returns "" when nothing is left. Caller frees; NULL when memory runs out.
 */
static char *sanitize_name(const char *s, size_t len)
{
	_cleanup_buf_ struct kiln_buf b = KILN_BUF_INIT;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)next_byte(s, len, &i);
		if (c == '.' && b.len == 0)
			continue;
		if (!isalnum(c) && c != '.' && c != '-' && c != '_')
			c = '_';
		if (kiln_buf_put(&b, &c, 1) < 0)
			return NULL;
	}
	size_t skip = b.len > MAX_NAME ? b.len - MAX_NAME : 0;
	return strdup(b.ptr ? b.ptr + skip : "");
}

/* The last component of URL's path, sanitized (see sanitize_name). Caller frees. */
static char *name_from_url(const char *url)
{
	const char *p = strstr(url, "://");
	p = p ? p + 3 : url;
	p += strcspn(p, "/?#"); /* skip the authority */
	size_t len = strcspn(p, "?#");
	const char *end = p + len;
	while (end > p && end[-1] == '/')
		end--;
	const char *start = end;
	while (start > p && start[-1] != '/')
		start--;
	return sanitize_name(start, (size_t)(end - start));
}

/*
 * Create a new file in DIR named NAME, or NAME with "-1", "-2", ... before its extension when taken.
 * *path gets its path (caller frees); returns the open descriptor, or a negative code with *err set (the
 * message names the input INPUT).
 */
static int create_unique(char **path, const char *dir, const char *name, const char *input,
                         struct kiln_error **err)
{
	const char *dot = strrchr(name, '.');
	size_t stem = dot && dot != name ? (size_t)(dot - name) : strlen(name);
	for (int n = 0; n < 10000; n++) {
		_cleanup_buf_ struct kiln_buf b = KILN_BUF_INIT;
		int rc = n == 0 ? kiln_buf_printf(&b, "%s/%s", dir, name)
		                : kiln_buf_printf(&b, "%s/%.*s-%d%s", dir, (int)stem, name, n, name + stem);
		if (rc < 0)
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
		int fd = open(b.ptr, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd >= 0) {
			*path = kiln_buf_detach(&b);
			return fd;
		}
		if (errno != EEXIST)
			return kiln_error_errno(err, errno, "input '%s': cannot create '%s'", input, b.ptr);
	}
	return kiln_error_set(err, KILN_EIO, "input '%s': cannot create a file named after '%s' in '%s'",
	                      input, name, dir);
}

/* ---- inputs ---- */

struct download {
	CURL *curl;
	int fd;
	long long max;
	long long written;
	long status; /* of the answer whose body is arriving */
	bool too_large;
	int write_errno;
	struct kiln_buf error_body; /* the start of a non-2xx answer's body */
};

/* libcurl's write callback for a download: the body goes to the file unless the answer is an error. */
static size_t download_write(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct download *d = ctx;
	size_t n = size * nmemb;
	if (d->status == 0)
		curl_easy_getinfo(d->curl, CURLINFO_RESPONSE_CODE, &d->status);
	if (d->status >= 300) {
		if (d->error_body.len < ERROR_BODY)
			kiln_buf_put(&d->error_body, data, n < ERROR_BODY ? n : ERROR_BODY);
		return n;
	}
	if (d->written + (long long)n > d->max) {
		d->too_large = true;
		return 0;
	}
	if (kiln_write_all(d->fd, data, n) < 0) {
		d->write_errno = errno;
		return 0;
	}
	d->written += (long long)n;
	return n;
}

/* Download the http(s) URL into FD (PATH, for messages); the input is NAME. */
static int download(int fd, const char *path, const char *url, const char *name, struct kiln_error **err)
{
	char errbuf[CURL_ERROR_SIZE];
	_cleanup_curl_ CURL *c = new_handle(errbuf, err);
	if (!c)
		return kiln_error_wrap(err, "input '%s'", name);
	_cleanup_free_ char *shown = strndup(url, strcspn(url, "?#")); /* signed URLs carry secrets there */
	struct download d = {.curl = c, .fd = fd, .max = max_input_bytes(), .error_body = KILN_BUF_INIT};
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
	curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)d.max);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, download_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &d);
	CURLcode rc = curl_easy_perform(c);
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	int ret = 0;
	if (d.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
		ret = kiln_error_set(
		    err, KILN_EINVAL,
		    "input '%s': cannot download '%s': larger than %lld bytes (KILN_MAX_INPUT_BYTES)", name,
		    shown, d.max);
	} else if (d.write_errno) {
		ret = kiln_error_errno(err, d.write_errno, "input '%s': cannot write '%s'", name, path);
	} else if (rc != CURLE_OK) {
		ret = kiln_error_set(err, KILN_EIO, "input '%s': cannot download '%s': %s", name, shown,
		                     curl_words(rc, errbuf));
	} else if (status < 200 || status >= 300) {
		_cleanup_buf_ struct kiln_buf msg = KILN_BUF_INIT;
		kiln_buf_printf(&msg, "HTTP %ld", status);
		put_body_excerpt(&msg, &d.error_body);
		int code = status == 404 || status == 410 ? KILN_ENOTFOUND
		           : status >= 500                ? KILN_EIO
		                                          : KILN_EINVAL;
		ret = kiln_error_set(err, code, "input '%s': cannot download '%s': %s", name, shown,
		                     msg.ptr ? msg.ptr : "");
	}
	kiln_buf_release(&d.error_body);
	return ret;
}

/* Write LEN bytes to FD, counting them in *written against MAX. */
static int put_decoded(int fd, const void *data, size_t len, long long *written, long long max,
                       const char *path, const char *name, struct kiln_error **err)
{
	if (*written + (long long)len > max)
		return kiln_error_set(err, KILN_EINVAL,
		                      "input '%s': data: URI larger than %lld bytes (KILN_MAX_INPUT_BYTES)",
		                      name, max);
	if (kiln_write_all(fd, data, len) < 0)
		return kiln_error_errno(err, errno, "input '%s': cannot write '%s'", name, path);
	*written += (long long)len;
	return 0;
}

/* Write the chunk IN[0..N): as it is, or base64-decoded through OUT less PAD bytes of padding. */
static int flush_chunk(int fd, const unsigned char *in, size_t n, unsigned char *out, bool base64, size_t pad,
                       long long *written, long long max, const char *path, const char *name,
                       struct kiln_error **err)
{
	if (!base64)
		return put_decoded(fd, in, n, written, max, path, name, err);
	if (n == 0)
		return 0;
	int m = EVP_DecodeBlock(out, in, (int)n);
	if (m < 0 || (size_t)m < pad)
		return kiln_error_set(err, KILN_EINVAL, "input '%s': invalid base64 in data: URI", name);
	return put_decoded(fd, out, (size_t)m - pad, written, max, path, name, err);
}

/*
 * Decode the payload S[0..LEN) of a data: URI into FD: base64 (percent-escapes and whitespace allowed,
 * padding optional) when BASE64, else percent-encoded bytes. Streams through a fixed buffer.
 */
static int decode_data(int fd, const char *path, const char *s, size_t len, bool base64, const char *name,
                       struct kiln_error **err)
{
	long long max = max_input_bytes(), written = 0;
	_cleanup_free_ unsigned char *in = malloc(B64_CHUNK + 4);
	_cleanup_free_ unsigned char *out = malloc(B64_CHUNK / 4 * 3 + 3);
	if (!in || !out)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	size_t n = 0;
	int pad = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)next_byte(s, len, &i);
		if (!base64) {
			in[n++] = c;
		} else if (isspace(c)) {
			continue;
		} else if (c == '=' || pad > 0) {
			if (c != '=' || ++pad > 2)
				return kiln_error_set(err, KILN_EINVAL,
				                      "input '%s': invalid base64 in data: URI", name);
			continue;
		} else if (isalnum(c) || c == '+' || c == '/') {
			in[n++] = c;
		} else {
			return kiln_error_set(err, KILN_EINVAL, "input '%s': invalid base64 in data: URI",
			                      name);
		}
		if (n < B64_CHUNK)
			continue;
		int rc = flush_chunk(fd, in, n, out, base64, 0, &written, max, path, name, err);
		if (rc < 0)
			return rc;
		n = 0;
	}
	if (!base64)
		return put_decoded(fd, in, n, &written, max, path, name, err);
	if (n % 4 == 1)
		return kiln_error_set(err, KILN_EINVAL, "input '%s': invalid base64 in data: URI", name);
	size_t missing = n % 4 ? 4 - n % 4 : 0;
	for (size_t k = 0; k < missing; k++)
		in[n++] = '=';
	return flush_chunk(fd, in, n, out, true, missing, &written, max, path, name, err);
}

/*
 * Turn the file input VALUE of input NAME into a new file under DIR; *path gets its path (caller frees).
 * http(s) URLs are downloaded, data: URIs decoded; anything else is refused with KILN_EINVAL.
 */
static int fetch_one(char **path, const char *value, const char *name, const char *dir,
                     struct kiln_error **err)
{
	size_t scheme = strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-");
	bool has_scheme = scheme > 0 && value[scheme] == ':' && isalpha((unsigned char)value[0]);
	bool is_data = has_scheme && scheme == 4 && strncasecmp(value, "data", 4) == 0;
	bool is_http = has_scheme && ((scheme == 4 && strncasecmp(value, "http", 4) == 0) ||
	                              (scheme == 5 && strncasecmp(value, "https", 5) == 0));
	if (has_scheme && scheme == 4 && strncasecmp(value, "file", 4) == 0)
		return kiln_error_set(err, KILN_EINVAL, "input '%s': file:// URLs are not allowed", name);
	if (!has_scheme)
		return kiln_error_set(
		    err, KILN_EINVAL,
		    "input '%s': local paths are not allowed ('%s'); give an http(s) or data: URL", name,
		    value);
	if (!is_data && !is_http)
		return kiln_error_set(err, KILN_EINVAL,
		                      "input '%s': %.*s: URLs are not allowed (only http, https, data)", name,
		                      (int)scheme, value);

	_cleanup_free_ char *file = NULL;
	const char *comma = NULL;
	if (is_data) {
		comma = strchr(value, ',');
		if (!comma)
			return kiln_error_set(err, KILN_EINVAL, "input '%s': malformed data: URI (no ',')",
			                      name);
		const char *mime = value + 5;
		size_t mime_len = strcspn(mime, ";,");
		_cleanup_free_ char *stem = sanitize_name(name, strlen(name));
		if (!stem ||
		    asprintf(&file, "%s%s", *stem ? stem : "input", ext_for_mime(mime, mime_len)) < 0)
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
	} else {
		file = name_from_url(value);
		if (file && !*file) {
			free(file);
			file = sanitize_name(name, strlen(name));
		}
		if (!file)
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}

	_cleanup_free_ char *p = NULL;
	_cleanup_close_ int fd = create_unique(&p, dir, *file ? file : "input", name, err);
	if (fd < 0)
		return fd;
	int rc;
	if (is_data) {
		size_t meta = (size_t)(comma - value);
		bool b64 = meta >= 7 && strncasecmp(comma - 7, ";base64", 7) == 0;
		rc = decode_data(fd, p, comma + 1, strlen(comma + 1), b64, name, err);
	} else {
		rc = download(fd, p, value, name, err);
	}
	if (rc == 0 && close(kiln_steal_fd(&fd)) < 0)
		rc = kiln_error_errno(err, errno, "input '%s': cannot write '%s'", name, p);
	if (rc < 0) {
		unlink(p);
		return rc;
	}
	*path = steal_pointer(&p);
	return 0;
}

/* Follow a "#/components/schemas/NAME" reference within ROOT; NULL when it leads nowhere. */
static const json_t *resolve_ref(const json_t *root, const char *ref)
{
	if (strncmp(ref, "#/", 2) != 0)
		return NULL;
	const json_t *node = root;
	for (const char *p = ref + 2; node && *p;) {
		size_t len = strcspn(p, "/");
		char key[256];
		if (len >= sizeof(key))
			return NULL;
		memcpy(key, p, len);
		key[len] = 0;
		node = json_object_get(node, key);
		p += len + (p[len] == '/');
	}
	return node;
}

enum { NOT_FILE, FILE_ONE, FILE_LIST };

/* Whether SCHEMA (looking through $ref, allOf and anyOf) is a file ("format": "uri") or a list of them. */
static int file_kind(const json_t *root, const json_t *schema, int depth)
{
	if (!json_is_object(schema) || depth > MAX_SCHEMA_DEPTH)
		return NOT_FILE;
	const char *type = json_string_value(json_object_get(schema, "type"));
	const char *format = json_string_value(json_object_get(schema, "format"));
	if (format && strcmp(format, "uri") == 0 && (!type || strcmp(type, "string") == 0))
		return FILE_ONE;
	if (type && strcmp(type, "array") == 0)
		return file_kind(root, json_object_get(schema, "items"), depth + 1) == FILE_ONE ? FILE_LIST
		                                                                                : NOT_FILE;
	const char *ref = json_string_value(json_object_get(schema, "$ref"));
	if (ref)
		return file_kind(root, resolve_ref(root, ref), depth + 1);
	static const char *const lists[] = {"allOf", "anyOf"};
	for (size_t l = 0; l < 2; l++) {
		size_t i;
		const json_t *member;
		json_array_foreach(json_object_get(schema, lists[l]), i, member)
		{
			int kind = file_kind(root, member, depth + 1);
			if (kind != NOT_FILE)
				return kind;
		}
	}
	return NOT_FILE;
}

int shim_files_fetch_inputs(const json_t *schema, json_t *input, const char *dir, struct kiln_error **err)
{
	const json_t *props = json_object_get(
	    json_object_get(json_object_get(json_object_get(schema, "components"), "schemas"), "Input"),
	    "properties");
	const char *name;
	json_t *value;
	json_object_foreach(input, name, value)
	{
		int kind = file_kind(schema, json_object_get(props, name), 0);
		if (kind == FILE_ONE && json_is_string(value)) {
			char *path;
			int rc = fetch_one(&path, json_string_value(value), name, dir, err);
			if (rc < 0)
				return rc;
			json_object_set_new(input, name, json_string(path));
			free(path);
		} else if (kind == FILE_LIST && json_is_array(value)) {
			size_t i;
			json_t *item;
			json_array_foreach(value, i, item)
			{
				char *path;
				if (!json_is_string(item))
					continue;
				int rc = fetch_one(&path, json_string_value(item), name, dir, err);
				if (rc < 0)
					return rc;
				json_array_set_new(value, i, json_string(path));
				free(path);
			}
		}
	}
	return 0;
}

/* ---- outputs ---- */

/* A data: URI with PATH's contents, base64-encoded, into *out (caller frees). */
static int encode_data_uri(char **out, const char *path, struct kiln_error **err)
{
	_cleanup_fclose_ FILE *f = fopen(path, "rbe");
	if (!f)
		return kiln_error_errno(err, errno, "cannot open output '%s'", path);
	_cleanup_buf_ struct kiln_buf b = KILN_BUF_INIT;
	_cleanup_free_ unsigned char *raw = malloc(RAW_CHUNK);
	if (!raw || kiln_buf_printf(&b, "data:%s;base64,", mime_for_path(path)) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	for (;;) {
		size_t n = fread(raw, 1, RAW_CHUNK, f);
		if (n > 0) {
			if (kiln_buf_grow(&b, (n + 2) / 3 * 4 + 1) < 0)
				return kiln_error_set(err, KILN_EFAIL, "out of memory");
			int m = EVP_EncodeBlock((unsigned char *)b.ptr + b.len, raw, (int)n);
			b.len += (size_t)m;
		}
		if (n < RAW_CHUNK)
			break;
	}
	if (ferror(f))
		return kiln_error_errno(err, EIO, "cannot read output '%s'", path);
	*out = kiln_buf_detach(&b);
	return 0;
}

struct upload {
	struct kiln_buf location;
	struct kiln_buf error_body;
};

/* libcurl's header callback for an upload: keeps the Location header (of the last answer). */
static size_t upload_header(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct upload *u = ctx;
	size_t n = size * nmemb;
	if (n > 9 && strncasecmp(data, "location:", 9) == 0) {
		size_t start = 9, end = n;
		while (start < end && isspace((unsigned char)data[start]))
			start++;
		while (end > start && isspace((unsigned char)data[end - 1]))
			end--;
		u->location.len = 0;
		if (kiln_buf_put(&u->location, data + start, end - start) < 0)
			return 0;
	}
	return n;
}

/* libcurl's write callback for an upload: keeps the start of the answer's body for error messages. */
static size_t upload_write(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct upload *u = ctx;
	size_t n = size * nmemb;
	if (u->error_body.len < ERROR_BODY)
		kiln_buf_put(&u->error_body, data, n < ERROR_BODY ? n : ERROR_BODY);
	return n;
}

/* REF resolved against BASE (curl's URL parser) into *out (caller frees). */
static int resolve_url(char **out, const char *base, const char *ref, struct kiln_error **err)
{
	CURLU *u = curl_url();
	char *s = NULL;
	CURLUcode rc = CURLUE_OUT_OF_MEMORY;
	if (u && (rc = curl_url_set(u, CURLUPART_URL, base, 0)) == CURLUE_OK &&
	    (rc = curl_url_set(u, CURLUPART_URL, ref, 0)) == CURLUE_OK)
		rc = curl_url_get(u, CURLUPART_URL, &s, 0);
	curl_url_cleanup(u);
	if (rc != CURLUE_OK)
		return kiln_error_set(err, KILN_EINVAL, "cannot resolve Location '%s' against '%s': %s", ref,
		                      base, curl_url_strerror(rc));
	*out = strdup(s);
	curl_free(s);
	return *out ? 0 : kiln_error_set(err, KILN_EFAIL, "out of memory");
}

/*
 * PUT the file PATH to UPLOAD_URL/<basename> (streamed, with its Content-Type); *out gets the URL the
 * answer gave in Location (resolved), else the PUT URL. Non-2xx answers fail with the status.
 */
static int upload_file(char **out, const char *path, const char *upload_url, struct kiln_error **err)
{
	_cleanup_fclose_ FILE *f = fopen(path, "rbe");
	struct stat st;
	if (!f || fstat(fileno(f), &st) < 0)
		return kiln_error_errno(err, errno, "cannot open output '%s'", path);
	char errbuf[CURL_ERROR_SIZE];
	_cleanup_curl_ CURL *c = new_handle(errbuf, err);
	if (!c)
		return kiln_error_wrap(err, "cannot upload '%s'", path);
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	char *escaped = curl_easy_escape(c, base, 0);
	_cleanup_free_ char *url = NULL;
	size_t len = strlen(upload_url);
	if (!escaped ||
	    asprintf(&url, "%s%s%s", upload_url, len && upload_url[len - 1] == '/' ? "" : "/", escaped) < 0)
		url = NULL;
	curl_free(escaped);
	if (!url)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	_cleanup_free_ char *content_type = NULL;
	if (asprintf(&content_type, "Content-Type: %s", mime_for_path(path)) < 0) {
		content_type = NULL;
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	_cleanup_slist_ struct curl_slist *headers = curl_slist_append(NULL, content_type);
	struct curl_slist *more = headers ? curl_slist_append(headers, "Expect:") : NULL;
	if (!more)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	struct upload u = {KILN_BUF_INIT, KILN_BUF_INIT};
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(c, CURLOPT_READDATA, f); /* the default read function is fread */
	curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)st.st_size);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, upload_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &u);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, upload_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &u);
	CURLcode rc = curl_easy_perform(c);
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	_cleanup_free_ char *shown = strndup(url, strcspn(url, "?#"));
	int ret = 0;
	if (rc != CURLE_OK) {
		ret = kiln_error_set(err, KILN_EIO, "cannot upload '%s' to '%s': %s", path, shown,
		                     curl_words(rc, errbuf));
	} else if (status < 200 || status >= 300) {
		_cleanup_buf_ struct kiln_buf msg = KILN_BUF_INIT;
		kiln_buf_printf(&msg, "HTTP %ld", status);
		put_body_excerpt(&msg, &u.error_body);
		ret = kiln_error_set(err, status >= 500 ? KILN_EIO : KILN_EINVAL,
		                     "cannot upload '%s' to '%s': %s", path, shown, msg.ptr ? msg.ptr : "");
	} else if (u.location.len > 0) {
		ret = resolve_url(out, url, u.location.ptr, err);
	} else {
		*out = steal_pointer(&url);
	}
	kiln_buf_release(&u.location);
	kiln_buf_release(&u.error_body);
	return ret;
}

/*
 * Encode the outputs inside V: *replacement gets a new string for a {"$path": P} object (and stays NULL
 * otherwise); arrays and objects are walked and their members replaced in place.
 */
static int encode_value(json_t *v, json_t **replacement, const char *upload_url, struct kiln_error **err)
{
	*replacement = NULL;
	if (json_is_object(v)) {
		const char *path = json_string_value(json_object_get(v, "$path"));
		if (path && json_object_size(v) == 1) {
			char *s;
			int rc = upload_url && *upload_url ? upload_file(&s, path, upload_url, err)
			                                   : encode_data_uri(&s, path, err);
			if (rc < 0)
				return rc;
			*replacement = json_string(s);
			free(s);
			return *replacement ? 0 : kiln_error_set(err, KILN_EFAIL, "out of memory");
		}
		const char *key;
		json_t *member;
		json_object_foreach(v, key, member)
		{
			json_t *r;
			int rc = encode_value(member, &r, upload_url, err);
			if (rc < 0)
				return rc;
			if (r)
				json_object_set_new(v, key, r);
		}
	} else if (json_is_array(v)) {
		size_t i;
		json_t *member;
		json_array_foreach(v, i, member)
		{
			json_t *r;
			int rc = encode_value(member, &r, upload_url, err);
			if (rc < 0)
				return rc;
			if (r)
				json_array_set_new(v, i, r);
		}
	}
	return 0;
}

int shim_files_encode_output(json_t **value, const char *upload_url, struct kiln_error **err)
{
	json_t *r;
	int rc = encode_value(*value, &r, upload_url, err);
	if (rc < 0)
		return rc;
	if (r) {
		json_decref(*value);
		*value = r;
	}
	return 0;
}

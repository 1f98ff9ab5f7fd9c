/* SPDX-License-Identifier: Apache-2.0 */
/* files_http.c: file inputs downloaded from http(s) URLs and file outputs uploaded with PUT, by libcurl. */
#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "registry/http.h"
#include "shim/files.h"

#define CONNECT_TIMEOUT  30L  /* seconds */
#define TRANSFER_TIMEOUT 900L /* seconds for a whole download or upload */
#define STALL_SECONDS    60L /* abort when less than 1 byte/s flows for this long (KILN_HTTP_STALL_SECONDS) */
#define DOWNLOAD_RETRIES 4   /* tries of a download after the first */
#define RETRY_BACKOFF    0.5 /* seconds before the first retry, doubled for each next */

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

/* ---- downloads ---- */

/* Whether the IPv4 address A (host order) is loopback, private, link-local or otherwise not public:
 * 0.0.0.0/8, 10/8, 100.64/10 (shared), 127/8, 169.254/16, 172.16/12, 192.168/16, 224/4 and above. */
static bool private_ipv4(uint32_t a)
{
	return (a >> 24) == 0 || (a >> 24) == 10 || (a >> 22) == (100u << 2 | 1) || (a >> 24) == 127 ||
	       (a >> 16) == (169u << 8 | 254) || (a >> 20) == (172u << 4 | 1) ||
	       (a >> 16) == (192u << 8 | 168) || (a >> 28) >= 14;
}

bool files_private_address(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return private_ipv4(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr));
	if (sa->sa_family != AF_INET6)
		return true;
	const unsigned char *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
	static const unsigned char zeros[12];
	bool v4mapped = memcmp(b, zeros, 10) == 0 && b[10] == 0xff && b[11] == 0xff;
	bool v4compat = memcmp(b, zeros, 12) == 0; /* ::, ::1 and the deprecated ::a.b.c.d */
	bool nat64 = b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && !memcmp(b + 4, zeros, 8);
	if (v4mapped || nat64)
		return private_ipv4((uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 |
		                    b[15]);
	return v4compat || (b[0] & 0xfe) == 0xfc /* fc00::/7 */ ||
	       (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) /* fe80::/10 */ || b[0] == 0xff /* multicast */;
}

bool files_private_urls_allowed(void)
{
	const char *v = getenv("KILN_ALLOW_PRIVATE_URLS");
	return v && strcmp(v, "1") == 0;
}

struct download {
	CURL *curl;
	int fd;
	long long max;
	long long written;
	long status; /* of the answer whose body is arriving */
	bool too_large;
	int write_errno;
	char refused[INET6_ADDRSTRLEN]; /* the private address a connection was refused to, or "" */
};

/* libcurl's socket callback for a download: every address it connects to (after DNS, for each redirect)
 * must be public unless KILN_ALLOW_PRIVATE_URLS=1, so neither a name that resolves to an internal address
 * nor a redirect to one reaches it. */
static curl_socket_t download_socket(void *ctx, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct download *d = ctx;
	(void)purpose;
	if (files_private_address(&a->addr) && !files_private_urls_allowed()) {
		const void *ip = a->family == AF_INET6
		                     ? (const void *)&((struct sockaddr_in6 *)&a->addr)->sin6_addr
		                     : (const void *)&((struct sockaddr_in *)&a->addr)->sin_addr;
		if (!inet_ntop(a->family, ip, d->refused, sizeof(d->refused)))
			snprintf(d->refused, sizeof(d->refused), "?");
		return CURL_SOCKET_BAD;
	}
	return socket(a->family, a->socktype, a->protocol);
}

/* libcurl's write callback for a download: the body goes to the file unless the answer is an error (whose
 * body is dropped: a server's words are not handed to the client). */
static size_t download_write(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct download *d = ctx;
	size_t n = size * nmemb;
	if (d->status == 0)
		curl_easy_getinfo(d->curl, CURLINFO_RESPONSE_CODE, &d->status);
	if (d->status >= 300)
		return n;
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

/* Start the download D over: an empty file, no answer yet. */
static int download_rewind(struct download *d)
{
	if (ftruncate(d->fd, 0) < 0 || lseek(d->fd, 0, SEEK_SET) < 0) {
		d->write_errno = errno;
		return -1;
	}
	d->written = 0;
	d->status = 0;
	return 0;
}

static double seconds_since(const struct timespec *start)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

int files_download(int fd, const char *path, const char *url, const char *name, struct kiln_error **err)
{
	char errbuf[CURL_ERROR_SIZE];
	_cleanup_curl_ CURL *c = new_handle(errbuf, err);
	if (!c)
		return kiln_error_wrap(err, "input '%s'", name);
	_cleanup_free_ char *shown = strndup(url, strcspn(url, "?#")); /* signed URLs carry secrets there */
	struct download d = {.curl = c, .fd = fd, .max = files_max_input_bytes()};
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
	curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)d.max);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, download_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &d);
	curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, download_socket);
	curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &d);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, kiln_http_stall_seconds(STALL_SECONDS));
	/* A dropped or cut connection, a stall, 408, 429 and 5xx are tried again from the start (after
	 * Retry-After when the server gives one), within one transfer time limit for all the tries. */
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	CURLcode rc;
	long status;
	int attempt = 0;
	for (;; attempt++) {
		double left = (double)TRANSFER_TIMEOUT - seconds_since(&start);
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(left > 1 ? left * 1000 : 1000));
		errbuf[0] = 0;
		rc = curl_easy_perform(c);
		status = 0;
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
		bool again =
		    !d.too_large && !d.write_errno && !*d.refused &&
		    (rc != CURLE_OK ? kiln_http_code_retryable(rc) : kiln_http_status_retryable(status));
		if (!again || attempt == DOWNLOAD_RETRIES || seconds_since(&start) >= TRANSFER_TIMEOUT)
			break;
		curl_off_t wait = -1;
		char retry_after[32] = "";
		if (rc == CURLE_OK && curl_easy_getinfo(c, CURLINFO_RETRY_AFTER, &wait) == CURLE_OK &&
		    wait >= 0)
			snprintf(retry_after, sizeof(retry_after), "%lld", (long long)wait);
		if (kiln_http_backoff(RETRY_BACKOFF, attempt, retry_after, NULL, err) < 0 ||
		    download_rewind(&d) < 0)
			break;
	}
	char tries[48] = "";
	if (attempt > 0)
		snprintf(tries, sizeof(tries), " (gave up after %d %s)", attempt,
		         attempt == 1 ? "retry" : "retries");
	int ret = 0;
	if (d.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
		ret = kiln_error_set(
		    err, KILN_EINVAL,
		    "input '%s': cannot download '%s': larger than %lld bytes (KILN_MAX_INPUT_BYTES)", name,
		    shown, d.max);
	} else if (d.write_errno) {
		ret = kiln_error_errno(err, d.write_errno, "input '%s': cannot write '%s'", name, path);
	} else if (rc != CURLE_OK && *d.refused) {
		ret =
		    kiln_error_set(err, KILN_EINVAL,
		                   "input '%s': cannot download '%s': the address %s is private, loopback or "
		                   "link-local (allowed with KILN_ALLOW_PRIVATE_URLS=1)",
		                   name, shown, d.refused);
	} else if (rc != CURLE_OK) {
		ret = kiln_error_set(err, KILN_EIO, "input '%s': cannot download '%s': %s%s", name, shown,
		                     curl_words(rc, errbuf), tries);
	} else if (status < 200 || status >= 300) {
		int code = status == 404 || status == 410 ? KILN_ENOTFOUND
		           : status >= 500                ? KILN_EIO
		                                          : KILN_EINVAL;
		ret = kiln_error_set(err, code, "input '%s': cannot download '%s': HTTP %ld%s", name, shown,
		                     status, tries);
	}
	return ret;
}
/* ---- uploads ---- */

struct upload {
	struct kiln_buf location;
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

/* libcurl's write callback for an upload: the answer's body is not kept (nor handed to the client). */
static size_t upload_write(char *data, size_t size, size_t nmemb, void *ctx)
{
	(void)data;
	(void)ctx;
	return size * nmemb;
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
	if (rc != CURLUE_OK) /* without the queries: signed URLs carry secrets there */
		return kiln_error_set(err, KILN_EINVAL, "cannot resolve Location '%.*s' against '%.*s': %s",
		                      (int)strcspn(ref, "?#"), ref, (int)strcspn(base, "?#"), base,
		                      curl_url_strerror(rc));
	*out = strdup(s);
	curl_free(s);
	return *out ? 0 : kiln_error_set(err, KILN_EFAIL, "out of memory");
}

int files_upload(char **out, const char *path, const char *upload_url, struct kiln_error **err)
{
	struct stat st;
	int fd = files_open_output(path, &st, err);
	if (fd < 0)
		return fd;
	_cleanup_fclose_ FILE *f = fdopen(fd, "rb");
	if (!f) {
		close(fd);
		return kiln_error_errno(err, errno, "cannot open file output '%s'", path);
	}
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
	if (asprintf(&content_type, "Content-Type: %s", files_mime_for_path(path)) < 0) {
		content_type = NULL;
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	_cleanup_slist_ struct curl_slist *headers = curl_slist_append(NULL, content_type);
	struct curl_slist *more = headers ? curl_slist_append(headers, "Expect:") : NULL;
	if (!more)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	struct upload u = {KILN_BUF_INIT};
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
		ret = kiln_error_set(err, status >= 500 ? KILN_EIO : KILN_EINVAL,
		                     "cannot upload '%s' to '%s': HTTP %ld", path, shown, status);
	} else if (u.location.len > 0) {
		ret = resolve_url(out, url, u.location.ptr, err);
	} else {
		*out = steal_pointer(&url);
	}
	kiln_buf_release(&u.location);
	return ret;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * http.h: the registry client's thin libcurl wrapper (internal to registry/): one request at a time per
 * call, connections, DNS and TLS sessions shared between threads, bodies streamed both ways.
 */
#ifndef KILN_REGISTRY_HTTP_H
#define KILN_REGISTRY_HTTP_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/error.h"
#include "layers/recipe.h"
#include "registry/client.h"

/* Error bodies and other small answers are kept up to this size (the rest is dropped). */
#define KILN_HTTP_SMALL_BODY (64 * 1024)

struct kiln_http;

/* Shared state for all requests of one client: the CURLSH share, its locks and the TLS settings.
 * CA_FILE may be NULL (then SSL_CERT_FILE, then the system's CAs). */
int kiln_http_new(struct kiln_http **out, const char *ca_file, struct kiln_error **err);
void kiln_http_free(struct kiln_http *h);

struct kiln_http_request {
	const char *method; /* "GET", "HEAD", "PUT", ... */
	const char *url;
	const char *const *headers; /* NULL-terminated "Name: value" lines, or NULL */
	const char *authorization;  /* value of the Authorization header, or NULL */
	/* The body: DATA/LEN, or LEN bytes of SRC from SRC_OFFSET, or none. */
	const void *data;
	size_t data_len;
	const struct kiln_blob_source *src;
	uint64_t src_offset;
	uint64_t src_len;
	/* A 2xx answer's body goes to WRITE when set, else into the response (at most MAX_BODY bytes: a
	 * larger one fails with KILN_EINVAL and resp->too_large set). Non-2xx bodies are kept, truncated. */
	kiln_write_fn write;
	void *write_ctx;
	size_t max_body;
	/* A download resumed after RESUME_OFFSET bytes of the body reached WRITE in earlier attempts:
	 * "Range: bytes=RESUME_OFFSET-" is sent (unless RESUME_WHOLE: the server refused the range), a 206
	 * answer must start there (else KILN_EIO), and the first RESUME_OFFSET bytes of a 200 answer (the
	 * whole body) are dropped, so that WRITE gets each byte of the body once, in order. */
	uint64_t resume_offset;
	bool resume_whole;
	/* A part of the body: "Range: bytes=RANGE_FIRST-RANGE_LAST" is sent instead, and only a 206 answer
	 * starting at RANGE_FIRST is taken (a 200 fails with KILN_ENOTSUP: the server does not give ranges).
	 */
	bool ranged;
	uint64_t range_first, range_last;
	volatile sig_atomic_t *cancel;
	long connect_timeout_ms;                    /* for the connection and the TLS handshake; 0: 30 s */
	void (*progress)(void *ctx, uint64_t sent); /* body bytes sent by this request so far */
	void *progress_ctx;
};

struct kiln_http_response {
	long status;
	struct kiln_buf body;
	char *location; /* resolved against the request URL */
	char *www_authenticate;
	char *range;
	char *content_range;
	char *docker_content_digest;
	char *content_type;
	char *retry_after;
	uint64_t delivered; /* body bytes handed to the request's WRITE (those dropped when resuming not
	                       counted) */
	uint64_t sent;      /* request body bytes read from the source (rewinds included) */
	bool too_large;
	int curl_code;  /* CURLcode of the transfer (0 when it completed) */
	bool retryable; /* a transport failure worth retrying */
};

void kiln_http_response_release(struct kiln_http_response *r);

/*
 * Perform one request. 0 when an HTTP answer came back (whatever its status); a negative code with *err
 * set to curl's words when the transfer failed (resp->retryable says whether to try again; KILN_EINTR
 * when req->cancel was set; WRITE's own error when it stopped the transfer).
 */
int kiln_http_perform(struct kiln_http *h, const struct kiln_http_request *req,
                      struct kiln_http_response *resp, struct kiln_error **err);

/* Take one header line (LINE[0..N), as libcurl hands it over, CRLF included) into R: the headers R keeps
 * (Location as sent, WWW-Authenticate joined, Range, Content-Range, Docker-Content-Digest, Content-Type,
 * Retry-After); a status line clears them (a redirect's or a 100's headers are not the answer's). */
void kiln_http_header_line(struct kiln_http_response *r, const char *line, size_t n);

/* The first byte of a Content-Range value ("bytes FIRST-LAST/SIZE") into *FIRST: 0, or -1 when CR is NULL
 * or does not start so. */
int kiln_http_content_range_first(const char *cr, uint64_t *first);

/* Seconds to wait from a Retry-After value (RFC 9110: delta-seconds, digits only, or an HTTP-date; never
 * negative, at most about 1e9); -1 when V is NULL, empty or neither ("1.5", "-3", "nan", "1e9"). */
double kiln_http_retry_after_seconds(const char *v);

/* Whether an HTTP status is worth retrying: 408, 429, 500-504. */
bool kiln_http_status_retryable(long status);

/* Whether a transfer that failed with libcurl's CURL_CODE is worth retrying (a dropped or cut connection, a
 * stall, a failed handshake). */
bool kiln_http_code_retryable(int curl_code);

/* The stall limit in seconds: KILN_HTTP_STALL_SECONDS when it is a positive number (tests set it low), else
 * FALLBACK. */
long kiln_http_stall_seconds(long fallback);

/*
 * Sleep before retry number ATTEMPT (0-based): BACKOFF * 2^ATTEMPT with random jitter, or RETRY_AFTER
 * seconds when the server said so (capped at 60 s). KILN_EINTR when CANCEL gets set meanwhile.
 */
int kiln_http_backoff(double backoff, int attempt, const char *retry_after, volatile sig_atomic_t *cancel,
                      struct kiln_error **err);

/* Resolve LOCATION (absolute or relative) against BASE; caller frees; NULL when it cannot be parsed. */
char *kiln_http_resolve(const char *base, const char *location);

/* Append "NAME=VALUE" (VALUE URL-encoded) to URL's query; caller frees; NULL on failure. */
char *kiln_http_add_query(const char *url, const char *name, const char *value);

/* "scheme://host[:port]" of URL, lowercased host; caller frees; NULL on failure. */
char *kiln_http_origin(const char *url);

/* "Basic base64(user:secret)"; caller frees. */
char *kiln_http_basic(const char *user, const char *secret);

/* Base64 decode of S (OpenSSL); *out NUL-terminated, caller frees; -1 when S is not base64. */
int kiln_base64_decode(char **out, size_t *len, const char *s);

/* A parsed WWW-Authenticate header (challenge.c): the Bearer challenge when there is one, else the first. */
struct kiln_challenge {
	char *scheme; /* "basic", "bearer" (lowercased) */
	char *realm;
	char *service;
	char *scope;
	char *error; /* Bearer's error="invalid_token" and similar */
};

/* Parse HEADER (RFC 7235 challenges, comma-separated, quoted or bare values). -1 when it has none. */
int kiln_challenge_parse(struct kiln_challenge *out, const char *header);
void kiln_challenge_release(struct kiln_challenge *c);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* client_internal.h: what client.c (requests, auth, manifests) shares with upload.c (blob uploads). */
#ifndef KILN_REGISTRY_CLIENT_INTERNAL_H
#define KILN_REGISTRY_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#include "registry/auth.h"
#include "registry/client.h"
#include "registry/http.h"

/* A bearer token and the scope string it was asked for ("repository:foo:pull,push"). */
struct kiln_reg_token {
	char *scope;
	char *token;
	time_t expires;
	struct kiln_reg_token *next;
};

enum kiln_reg_scheme { KILN_REG_AUTH_NONE, KILN_REG_AUTH_BASIC, KILN_REG_AUTH_BEARER };

struct kiln_registry {
	char *host; /* as the user wrote it: "docker.io", "localhost:5000" */
	char *base; /* "https://registry-1.docker.io", "http://localhost:5000" */
	struct kiln_registry_options opt;
	struct kiln_credentials cred;
	struct kiln_http *http;
	bool monolithic_only; /* registries that reject chunked uploads */
	bool plain_ok;        /* loopback or insecure: plain HTTP allowed when the host speaks no TLS */
	bool probed;          /* the scheme has been settled (HTTPS first, then HTTP when plain_ok) */
	bool probe_timed_out; /* HTTP because the TLS probe ran out of time (not because it was refused) */
	pthread_mutex_t auth_lock; /* one authentication at a time: threads share its token */
	unsigned auth_gen;         /* bumped by each authentication (under lock) */
	pthread_mutex_t lock;      /* guards what follows */
	enum kiln_reg_scheme scheme;
	char *realm;
	char *service;
	struct kiln_reg_token *tokens;
};

/* "sha256:" and the first 12 hex digits, then "…": for messages. */
struct kiln_short_digest {
	char s[32];
};
struct kiln_short_digest kiln_reg_short(const char *digest);

/*
 * One request to the registry with authentication (Basic, or a Bearer token for SCOPE: space-separated
 * scopes or NULL) and, when RETRY, retries of transport failures and 408/429/5xx answers with backoff.
 * 0 with any other answer in RESP (the caller judges its status); a negative code with curl's words.
 * A 401 that persists after authenticating is an error ("HOST: authentication failed (401): ...").
 */
int kiln_reg_request(struct kiln_registry *r, const char *scope, bool retry, struct kiln_http_request *req,
                     struct kiln_http_response *resp, struct kiln_error **err);

/* Set *err from a non-success answer: the status and the registry's own words; KILN_ENOTFOUND for 404. */
int kiln_reg_status_error(struct kiln_registry *r, const struct kiln_http_response *resp, const char *repo,
                          struct kiln_error **err);

/*
 * The retries of one blob transfer (upload or download) share one budget of opt.max_retries, counted in
 * *RETRIES. After a retryable failure (*err set): wait the backoff (RETRY_AFTER when the server gave one)
 * and return 0 to try again, or, once the budget is used up, the error wrapped in "gave up after N
 * retries"; KILN_EINTR when cancelled meanwhile.
 */
int kiln_reg_retry(struct kiln_registry *r, int *retries, const char *retry_after, struct kiln_error **err);

/* After a retryable answer or transport failure (RC, RESP) for REPO: set *err from RESP when the transport
 * worked, release RESP, then kiln_reg_retry with the answer's Retry-After. */
int kiln_reg_retry_after_failure(struct kiln_registry *r, int *retries, const char *repo, int rc,
                                 struct kiln_http_response *resp, struct kiln_error **err);

/* Whether a finished request's outcome (RC, RESP) is a failure worth retrying. */
bool kiln_reg_transient(int rc, const struct kiln_http_response *resp);

/* "BASE/v2/<printf>"; caller frees; NULL when memory runs out. */
char *kiln_reg_url(struct kiln_registry *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif

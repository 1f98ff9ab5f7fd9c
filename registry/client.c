/* SPDX-License-Identifier: Apache-2.0 */
/* client.c: the registry client: opening, authentication (Basic, Bearer tokens), the request loop, ping. */
#include "registry/client.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "registry/client_internal.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_TOKEN_ANSWER       (1024 * 1024)
#define DEFAULT_TOKEN_LIFETIME 60
#define PROBE_TIMEOUT_MS       5000 /* connection and TLS handshake of the scheme probe (plain_ok hosts) */

void kiln_registry_options_init(struct kiln_registry_options *opt)
{
	memset(opt, 0, sizeof(*opt));
	opt->max_retries = 5;
	opt->backoff = 0.5;
	opt->chunk_size = 64ull * 1024 * 1024;
	opt->monolithic_max = 16ull * 1024 * 1024;
}

struct kiln_short_digest kiln_reg_short(const char *digest)
{
	struct kiln_short_digest d;
	if (digest && strlen(digest) > 19)
		snprintf(d.s, sizeof(d.s), "%.19s\xe2\x80\xa6", digest);
	else
		snprintf(d.s, sizeof(d.s), "%s", digest ? digest : "");
	return d;
}

/* The host name of "host[:port]" or "[v6]:port", without the port, into OUT. */
static void host_name(char *out, size_t size, const char *host)
{
	if (host[0] == '[') {
		size_t n = strcspn(host + 1, "]");
		snprintf(out, size, "%.*s", (int)n, host + 1);
		return;
	}
	const char *colon = strchr(host, ':');
	if (colon && strchr(colon + 1, ':') == NULL)
		snprintf(out, size, "%.*s", (int)(colon - host), host);
	else
		snprintf(out, size, "%s", host);
}

static bool is_loopback(const char *name)
{
	struct in_addr a4;
	if (strcasecmp(name, "localhost") == 0 || strcmp(name, "::1") == 0)
		return true;
	return inet_pton(AF_INET, name, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

/* Whether HOST (or its name without the port) is in a comma-separated LIST. */
static bool in_list(const char *list, const char *host, const char *name)
{
	if (list == NULL)
		return false;
	const char *p = list;
	while (*p) {
		while (*p == ',' || *p == ' ')
			p++;
		size_t n = strcspn(p, ", ");
		if (n && ((strlen(host) == n && strncasecmp(p, host, n) == 0) ||
		          (strlen(name) == n && strncasecmp(p, name, n) == 0)))
			return true;
		p += n;
	}
	return false;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

/* Registries known to reject chunked (PATCH) uploads. */
static bool rejects_chunks(const char *name)
{
	return strcasecmp(name, "ghcr.io") == 0 || strcasecmp(name, "gcr.io") == 0 ||
	       ends_with(name, ".gcr.io") || ends_with(name, ".pkg.dev") || ends_with(name, ".amazonaws.com");
}

/*
 * Settle the scheme once, when the client opens: HTTPS always, except that a loopback or insecure registry
 * that does not complete a TLS handshake (a plain HTTP server, or nothing answering yet) is used over
 * plain HTTP. The handshake gets PROBE_TIMEOUT_MS, not the usual 30 s, so that a plain server that ignores
 * it costs seconds. A TLS server whose certificate does not verify stays HTTPS and fails: plain HTTP is
 * never a way around verification.
 */
static int settle_scheme(struct kiln_registry *r, struct kiln_error **err)
{
	pthread_mutex_lock(&r->auth_lock);
	if (r->probed || !r->plain_ok) {
		r->probed = true;
		pthread_mutex_unlock(&r->auth_lock);
		return 0;
	}
	_cleanup_free_ char *url = kiln_reg_url(r, "%s", "");
	struct kiln_http_request req = {
	    .method = "GET", .url = url, .cancel = r->opt.cancel, .connect_timeout_ms = PROBE_TIMEOUT_MS};
	struct kiln_http_response resp = {0};
	struct kiln_error *e = NULL;
	int rc = url ? kiln_http_perform(r->http, &req, &resp, &e) : -1;
	/* Any failure but a certificate that does not verify means plain HTTP: the handshake failed (a plain
	 * server), or nothing answered (the usual local registry is plain; its own errors come later). */
	if (rc < 0 && resp.curl_code != CURLE_PEER_FAILED_VERIFICATION) {
		const char *api = r->base + strlen("https://");
		char *plain = NULL;
		if (asprintf(&plain, "http://%s", api) >= 0) {
			free(r->base);
			r->base = plain;
			r->probe_timed_out = resp.curl_code == CURLE_OPERATION_TIMEDOUT;
		}
	}
	kiln_error_free(e);
	kiln_http_response_release(&resp);
	r->probed = true;
	pthread_mutex_unlock(&r->auth_lock);
	if (url == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	return 0;
}

int kiln_registry_open(struct kiln_registry **out, const char *host, const struct kiln_registry_options *opt,
                       struct kiln_error **err)
{
	*out = NULL;
	if (host == NULL || *host == '\0' || strpbrk(host, "/ \t\r\n@?#"))
		return kiln_error_set(err, KILN_EINVAL, "invalid registry host '%s'", host ? host : "");
	struct kiln_registry *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	pthread_mutex_init(&r->lock, NULL);
	pthread_mutex_init(&r->auth_lock, NULL);
	if (opt)
		r->opt = *opt;
	else
		kiln_registry_options_init(&r->opt);
	if (r->opt.max_retries < 0)
		r->opt.max_retries = 0;
	if (r->opt.chunk_size == 0)
		r->opt.chunk_size = 64ull * 1024 * 1024;
	if (r->opt.backoff < 0)
		r->opt.backoff = 0;
	char name[256];
	host_name(name, sizeof(name), host);
	bool plain = is_loopback(name) || in_list(getenv("KILN_INSECURE_REGISTRIES"), host, name);
	for (const char *const *p = r->opt.insecure; p && *p && !plain; p++)
		plain = in_list(*p, host, name);
	r->opt.insecure = NULL;
	r->monolithic_only = rejects_chunks(name);
	const char *api = strcasecmp(host, "docker.io") == 0 || strcasecmp(host, "index.docker.io") == 0
	                      ? "registry-1.docker.io"
	                      : host;
	r->host = strdup(host);
	r->plain_ok = plain;
	if (r->host == NULL || asprintf(&r->base, "https://%s", api) < 0) {
		r->base = NULL;
		kiln_registry_free(r);
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	int crc = 0;
	if (r->opt.username && r->opt.password) {
		r->cred.username = strdup(r->opt.username);
		r->cred.secret = strdup(r->opt.password);
		if (r->cred.username == NULL || r->cred.secret == NULL)
			crc = kiln_error_set(err, KILN_EFAIL, "out of memory");
	} else {
		crc = kiln_auth_get(&r->cred, host, err);
	}
	r->opt.username = r->opt.password = NULL; /* not kept beyond this copy */
	if (crc < 0 || kiln_http_new(&r->http, r->opt.ca_file, err) < 0) {
		kiln_registry_free(r);
		return kiln_error_wrap(err, "cannot open registry %s", host);
	}
	r->opt.ca_file = NULL;
	if (settle_scheme(r, err) < 0) {
		kiln_registry_free(r);
		return -1;
	}
	*out = r;
	return 0;
}

void kiln_registry_free(struct kiln_registry *r)
{
	if (r == NULL)
		return;
	for (struct kiln_reg_token *t = r->tokens, *next; t; t = next) {
		next = t->next;
		explicit_bzero(t->token, strlen(t->token));
		free(t->token);
		free(t->scope);
		free(t);
	}
	kiln_http_free(r->http);
	kiln_credentials_release(&r->cred);
	free(r->realm);
	free(r->service);
	free(r->host);
	free(r->base);
	pthread_mutex_destroy(&r->lock);
	pthread_mutex_destroy(&r->auth_lock);
	free(r);
}

char *kiln_reg_url(struct kiln_registry *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *path = NULL;
	int n = vasprintf(&path, fmt, ap);
	va_end(ap);
	if (n < 0)
		return NULL;
	char *url = NULL;
	if (asprintf(&url, "%s/v2/%s", r->base, path) < 0)
		url = NULL;
	free(path);
	return url;
}

/* The registry's own words from an error body: distribution's {"errors":[{code,message}]} as
 * "CODE: message; ...", else the body's first line; "" when there is nothing. Caller frees. */
static char *registry_words(const struct kiln_http_response *resp)
{
	_cleanup_buf_ struct kiln_buf b = KILN_BUF_INIT;
	if (resp->body.len) {
		json_t *j = json_loadb(resp->body.ptr, resp->body.len, 0, NULL);
		json_t *errors = json_object_get(j, "errors");
		size_t i;
		json_t *e;
		json_array_foreach(errors, i, e)
		{
			const char *code = json_string_value(json_object_get(e, "code"));
			const char *msg = json_string_value(json_object_get(e, "message"));
			if (b.len)
				kiln_buf_puts(&b, "; ");
			if (code && msg)
				kiln_buf_printf(&b, "%s: %s", code, msg);
			else if (code || msg)
				kiln_buf_puts(&b, code ? code : msg);
		}
		/* Token servers answer {"details": "..."} or {"error": "..."}. */
		const char *details = json_string_value(json_object_get(j, "details"));
		if (details == NULL)
			details = json_string_value(json_object_get(j, "error"));
		if (b.len == 0 && details)
			kiln_buf_puts(&b, details);
		json_decref(j);
		if (b.len == 0 && j == NULL) {
			size_t n = strcspn(resp->body.ptr, "\r\n");
			if (n > 200)
				n = 200;
			kiln_buf_put(&b, resp->body.ptr, n);
		}
	}
	return kiln_buf_detach(&b);
}

int kiln_reg_status_error(struct kiln_registry *r, const struct kiln_http_response *resp, const char *repo,
                          struct kiln_error **err)
{
	_cleanup_free_ char *words = registry_words(resp);
	const char *sep = words[0] ? ": " : "";
	long s = resp->status;
	if (s == 401 && resp->www_authenticate && strstr(resp->www_authenticate, "insufficient_scope"))
		return kiln_error_set(err, KILN_EFAIL,
		                      "%s: access denied for %s: the credentials do not allow this (401 "
		                      "insufficient_scope)%s%s",
		                      r->host, repo ? repo : "this request", sep, words);
	if (s == 401)
		return kiln_error_set(err, KILN_EFAIL, "%s: authentication failed (401)%s%s", r->host, sep,
		                      words);
	if (s == 403)
		return kiln_error_set(err, KILN_EFAIL, "%s: permission denied for %s (403)%s%s", r->host,
		                      repo ? repo : "this request", sep, words);
	int code = s == 404 ? KILN_ENOTFOUND : s == 400 ? KILN_EINVAL : KILN_EFAIL;
	if (s == 400 && r->probe_timed_out) /* an HTTPS server spoken to in plain HTTP answers 400 */
		return kiln_error_set(
		    err, code,
		    "%s answered HTTP 400 to plain HTTP, which kiln used because a TLS handshake "
		    "did not complete within %d s: the registry may speak HTTPS and be slow",
		    r->host, PROBE_TIMEOUT_MS / 1000);
	if (words[0])
		return kiln_error_set(err, code, "%s (HTTP %ld)", words, s);
	return kiln_error_set(err, code, "%s answered HTTP %ld", r->host, s);
}

int kiln_reg_retry(struct kiln_registry *r, int *retries, const char *retry_after, struct kiln_error **err)
{
	if (*retries >= r->opt.max_retries)
		return kiln_error_wrap(err, "gave up after %d retries", *retries);
	if (kiln_http_backoff(r->opt.backoff, (*retries)++, retry_after, r->opt.cancel, err) < 0)
		return (*err)->code;
	kiln_error_free(*err);
	*err = NULL;
	return 0;
}

int kiln_reg_retry_after_failure(struct kiln_registry *r, int *retries, const char *repo, int rc,
                                 struct kiln_http_response *resp, struct kiln_error **err)
{
	if (rc == 0)
		kiln_reg_status_error(r, resp, repo, err);
	_cleanup_free_ char *retry_after = resp->retry_after ? strdup(resp->retry_after) : NULL;
	kiln_http_response_release(resp);
	return kiln_reg_retry(r, retries, retry_after, err);
}

bool kiln_reg_transient(int rc, const struct kiln_http_response *resp)
{
	return rc < 0 ? resp->retryable : kiln_http_status_retryable(resp->status);
}

/* Drop the cached token for SCOPE (after the registry refused it). */
static void forget_token(struct kiln_registry *r, const char *scope)
{
	pthread_mutex_lock(&r->lock);
	for (struct kiln_reg_token **pp = &r->tokens; *pp; pp = &(*pp)->next) {
		struct kiln_reg_token *t = *pp;
		if (strcmp(t->scope, scope) == 0) {
			*pp = t->next;
			explicit_bzero(t->token, strlen(t->token));
			free(t->token);
			free(t->scope);
			free(t);
			break;
		}
	}
	pthread_mutex_unlock(&r->lock);
}

/* The Authorization value for a request on SCOPE: Basic, a cached unexpired Bearer token, or NULL.
 * *need_token is set when the registry wants Bearer and no token is cached for SCOPE. */
static char *authorization_for(struct kiln_registry *r, const char *scope, bool *need_token)
{
	char *a = NULL;
	*need_token = false;
	pthread_mutex_lock(&r->lock);
	if (r->scheme == KILN_REG_AUTH_BASIC && r->cred.username) {
		a = kiln_http_basic(r->cred.username, r->cred.secret);
	} else if (r->scheme == KILN_REG_AUTH_BEARER) {
		time_t now = time(NULL);
		for (struct kiln_reg_token *t = r->tokens; t; t = t->next) {
			if (strcmp(t->scope, scope) == 0 && t->expires > now) {
				if (asprintf(&a, "Bearer %s", t->token) < 0)
					a = NULL;
				break;
			}
		}
		*need_token = a == NULL;
	}
	pthread_mutex_unlock(&r->lock);
	return a;
}

static void free_secret(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/* The token server's URL for SCOPE (space-separated scopes) plus the challenge's own scope. */
static char *token_url(const char *realm, const char *service, const char *scope, const char *extra)
{
	char *url = strdup(realm);
	if (url && service && *service) {
		char *u = kiln_http_add_query(url, "service", service);
		free(url);
		url = u;
	}
	const char *lists[] = {scope, extra};
	for (int l = 0; l < 2; l++) {
		const char *p = lists[l];
		while (url && p && *p) {
			while (*p == ' ')
				p++;
			size_t n = strcspn(p, " ");
			if (n == 0)
				break;
			_cleanup_free_ char *one = strndup(p, n);
			/* the challenge's scope again only when it is not one of ours */
			bool dup = l == 1 && scope && strstr(scope, one) != NULL;
			if (one && !dup) {
				char *u = kiln_http_add_query(url, "scope", one);
				free(url);
				url = u;
			}
			p += n;
		}
	}
	return url;
}

/* The body of an OAuth2 refresh-token request (credentials holding an identity token). */
static char *oauth_form(const char *service, const char *scope, const char *refresh)
{
	char *svc = curl_easy_escape(NULL, service ? service : "", 0);
	char *sc = curl_easy_escape(NULL, scope ? scope : "", 0);
	char *tok = curl_easy_escape(NULL, refresh, 0);
	char *form = NULL;
	if (svc && sc && tok &&
	    asprintf(&form, "grant_type=refresh_token&client_id=kiln&service=%s&scope=%s&refresh_token=%s",
	             svc, sc, tok) < 0)
		form = NULL;
	curl_free(svc);
	curl_free(sc);
	if (tok)
		explicit_bzero(tok, strlen(tok));
	curl_free(tok);
	return form;
}

/* Ask the token server (realm) for a token for SCOPE and cache it. EXTRA: the challenge's scope. */
static int fetch_token(struct kiln_registry *r, const char *scope, const char *extra, struct kiln_error **err)
{
	pthread_mutex_lock(&r->lock);
	_cleanup_free_ char *realm = r->realm ? strdup(r->realm) : NULL;
	_cleanup_free_ char *service = r->service ? strdup(r->service) : NULL;
	pthread_mutex_unlock(&r->lock);
	if (realm == NULL)
		return kiln_error_set(err, KILN_EFAIL,
		                      "%s: asked for a token without saying where (no realm)", r->host);
	bool oauth = r->cred.username && strcmp(r->cred.username, "<token>") == 0;
	_cleanup_free_ char *url = oauth ? strdup(realm) : token_url(realm, service, scope, extra);
	char *form = oauth ? oauth_form(service, scope, r->cred.secret) : NULL;
	char *auth = !oauth && r->cred.username ? kiln_http_basic(r->cred.username, r->cred.secret) : NULL;
	const char *hdrs[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
	struct kiln_http_request req = {
	    .method = oauth ? "POST" : "GET",
	    .url = url,
	    .authorization = auth,
	    .data = form,
	    .data_len = form ? strlen(form) : 0,
	    .headers = oauth ? hdrs : NULL,
	    .max_body = MAX_TOKEN_ANSWER,
	    .cancel = r->opt.cancel,
	};
	struct kiln_http_response resp = {0};
	int rc = url ? 0 : kiln_error_set(err, KILN_EFAIL, "out of memory");
	for (int attempt = 0; rc == 0; attempt++) {
		rc = kiln_http_perform(r->http, &req, &resp, err);
		bool again = rc < 0 ? resp.retryable : kiln_http_status_retryable(resp.status);
		if (!again || attempt >= r->opt.max_retries)
			break;
		rc = kiln_http_backoff(r->opt.backoff, attempt, resp.retry_after, r->opt.cancel, err);
	}
	free_secret(auth);
	free_secret(form);
	if (rc < 0) {
		kiln_http_response_release(&resp);
		return kiln_error_wrap(err, "%s: cannot get a token from %s", r->host, realm);
	}
	if (resp.status != 200) {
		if (resp.status == 401 || resp.status == 403) {
			resp.status = 401;
			rc = kiln_reg_status_error(r, &resp, NULL, err);
		} else {
			kiln_reg_status_error(r, &resp, NULL, err);
			rc = kiln_error_wrap(err, "%s: cannot get a token from %s", r->host, realm);
		}
		kiln_http_response_release(&resp);
		return rc;
	}
	json_t *j = json_loadb(resp.body.ptr, resp.body.len, 0, NULL);
	const char *tok = json_string_value(json_object_get(j, "token"));
	if (tok == NULL || *tok == '\0')
		tok = json_string_value(json_object_get(j, "access_token"));
	json_int_t life = json_integer_value(json_object_get(j, "expires_in"));
	struct kiln_reg_token *t = tok ? calloc(1, sizeof(*t)) : NULL;
	if (t) {
		t->scope = strdup(scope);
		t->token = strdup(tok);
		/* a little early, so that a token does not expire between the check and the request */
		t->expires = time(NULL) + (life > 0 ? life : DEFAULT_TOKEN_LIFETIME) - 5;
	}
	if (resp.body.ptr)
		explicit_bzero(resp.body.ptr, resp.body.len);
	json_decref(j);
	kiln_http_response_release(&resp);
	if (t == NULL || t->scope == NULL || t->token == NULL) {
		if (t) {
			free(t->scope);
			free_secret(t->token);
			free(t);
		}
		return kiln_error_set(err, KILN_EFAIL, "%s: the token server %s answered without a token",
		                      r->host, realm);
	}
	forget_token(r, scope);
	pthread_mutex_lock(&r->lock);
	t->next = r->tokens;
	r->tokens = t;
	pthread_mutex_unlock(&r->lock);
	return 0;
}

/* Answer a 401: learn the scheme from WWW-Authenticate, then get a token (Bearer) or use the
 * credentials (Basic). Fails when the registry wants credentials kiln does not have. */
static int authenticate(struct kiln_registry *r, const char *scope, const struct kiln_http_response *resp,
                        struct kiln_error **err)
{
	struct kiln_challenge c;
	if (kiln_challenge_parse(&c, resp->www_authenticate) < 0)
		return kiln_reg_status_error(r, resp, NULL, err);
	int rc = 0;
	if (strcmp(c.scheme, "basic") == 0) {
		if (r->cred.username == NULL)
			rc = kiln_error_set(err, KILN_EFAIL,
			                    "authentication required by %s: run 'kiln login %s'", r->host,
			                    r->host);
		pthread_mutex_lock(&r->lock);
		r->scheme = KILN_REG_AUTH_BASIC;
		pthread_mutex_unlock(&r->lock);
	} else if (strcmp(c.scheme, "bearer") == 0) {
		pthread_mutex_lock(&r->lock);
		r->scheme = KILN_REG_AUTH_BEARER;
		if (c.realm) {
			free(r->realm);
			r->realm = steal_pointer(&c.realm);
		}
		if (c.service) {
			free(r->service);
			r->service = steal_pointer(&c.service);
		}
		pthread_mutex_unlock(&r->lock);
		rc = fetch_token(r, scope, c.scope, err);
	} else {
		rc = kiln_error_set(err, KILN_EFAIL, "%s asks for unsupported authentication '%s'", r->host,
		                    c.scheme);
	}
	kiln_challenge_release(&c);
	return rc;
}

int kiln_reg_request(struct kiln_registry *r, const char *scope, bool retry, struct kiln_http_request *req,
                     struct kiln_http_response *resp, struct kiln_error **err)
{
	if (scope == NULL)
		scope = "";
	req->cancel = r->opt.cancel;
	bool authenticated = false; /* credentials or a fresh token were sent in this call */
	int attempt = 0;
	uint64_t sent = 0; /* body bytes of the earlier attempts */
	int waited = 0;    /* 401s answered by another thread's authentication */
	for (;;) {
		bool need_token = false;
		pthread_mutex_lock(&r->lock);
		unsigned gen = r->auth_gen;
		pthread_mutex_unlock(&r->lock);
		char *auth = authorization_for(r, scope, &need_token);
		if (need_token) {
			/* One thread asks for the token; the others wait for it and use it. */
			pthread_mutex_lock(&r->auth_lock);
			auth = authorization_for(r, scope, &need_token);
			int frc = need_token ? fetch_token(r, scope, NULL, err) : 0;
			if (need_token && frc == 0)
				auth = authorization_for(r, scope, &need_token);
			pthread_mutex_unlock(&r->auth_lock);
			if (frc < 0)
				return (*err)->code;
			authenticated = true;
		}
		req->authorization = auth;
		int rc = kiln_http_perform(r->http, req, resp, err);
		req->authorization = NULL;
		free_secret(auth);
		resp->sent += sent;
		sent = resp->sent;
		if (rc < 0) {
			if (retry && resp->retryable && resp->delivered == 0 &&
			    attempt < r->opt.max_retries) {
				if (kiln_http_backoff(r->opt.backoff, attempt++, NULL, r->opt.cancel, err) <
				    0)
					return (*err)->code;
				kiln_error_free(*err);
				*err = NULL;
				continue;
			}
			return rc;
		}
		if (resp->status == 401) {
			if (authenticated)
				return kiln_reg_status_error(r, resp, NULL, err);
			pthread_mutex_lock(&r->auth_lock);
			pthread_mutex_lock(&r->lock);
			bool other = r->auth_gen != gen;
			pthread_mutex_unlock(&r->lock);
			if (other && waited++ < 3) {
				/* another thread authenticated since this request left: try with its result
				 */
				pthread_mutex_unlock(&r->auth_lock);
				kiln_http_response_release(resp);
				continue;
			}
			forget_token(r, scope);
			int arc = authenticate(r, scope, resp, err);
			if (arc == 0) {
				pthread_mutex_lock(&r->lock);
				r->auth_gen++;
				pthread_mutex_unlock(&r->lock);
			}
			pthread_mutex_unlock(&r->auth_lock);
			if (arc < 0)
				return (*err)->code;
			authenticated = true;
			kiln_http_response_release(resp);
			continue;
		}
		if (retry && kiln_http_status_retryable(resp->status) && attempt < r->opt.max_retries) {
			if (kiln_http_backoff(r->opt.backoff, attempt++, resp->retry_after, r->opt.cancel,
			                      err) < 0)
				return (*err)->code;
			continue;
		}
		return 0;
	}
}

int kiln_registry_ping(struct kiln_registry *r, struct kiln_error **err)
{
	_cleanup_free_ char *url = kiln_reg_url(r, "%s", "");
	if (url == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	struct kiln_http_request req = {.method = "GET", .url = url};
	struct kiln_http_response resp = {0};
	int rc = kiln_reg_request(r, NULL, true, &req, &resp, err);
	if (rc == 0 && resp.status != 200)
		rc = kiln_reg_status_error(r, &resp, NULL, err);
	kiln_http_response_release(&resp);
	if (rc < 0)
		return kiln_error_wrap(err, "cannot reach registry %s", r->host);
	return 0;
}

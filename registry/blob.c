/* SPDX-License-Identifier: Apache-2.0 */
/* blob.c: blobs in a registry: whether one exists, cross-repository mounts, and downloads (redirects too). */
#include "common/cleanup.h"
#include "layers/digest.h"
#include "registry/client_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REDIRECTS 5

int kiln_registry_blob_exists(struct kiln_registry *r, const char *repo, const char *digest, bool *exists,
                              struct kiln_error **err)
{
	*exists = false;
	_cleanup_free_ char *url = kiln_reg_url(r, "%s/blobs/%s", repo, digest);
	_cleanup_free_ char *scope = NULL;
	if (url == NULL || asprintf(&scope, "repository:%s:pull", repo) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	struct kiln_http_request req = {.method = "HEAD", .url = url};
	struct kiln_http_response resp = {0};
	int rc = kiln_reg_request(r, scope, true, &req, &resp, err);
	if (rc == 0) {
		if (resp.status == 200)
			*exists = true;
		else if (resp.status != 404)
			rc = kiln_reg_status_error(r, &resp, repo, err);
	}
	kiln_http_response_release(&resp);
	if (rc < 0)
		return kiln_error_wrap(err, "cannot check blob %s in %s/%s", kiln_reg_short(digest).s,
		                       r->host, repo);
	return 0;
}

int kiln_registry_blob_mount(struct kiln_registry *r, const char *repo, const char *from_repo,
                             const char *digest, bool *mounted, struct kiln_error **err)
{
	*mounted = false;
	_cleanup_free_ char *base = kiln_reg_url(r, "%s/blobs/uploads/", repo);
	_cleanup_free_ char *u1 = base ? kiln_http_add_query(base, "mount", digest) : NULL;
	_cleanup_free_ char *url = u1 ? kiln_http_add_query(u1, "from", from_repo) : NULL;
	_cleanup_free_ char *scope = NULL;
	if (url == NULL ||
	    asprintf(&scope, "repository:%s:pull,push repository:%s:pull", repo, from_repo) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	struct kiln_http_request req = {.method = "POST", .url = url};
	struct kiln_http_response resp = {0};
	int rc = kiln_reg_request(r, scope, true, &req, &resp, err);
	if (rc == 0) {
		if (resp.status == 201) {
			*mounted = true;
		} else if (resp.status == 202) {
			/* The registry started an upload instead: cancel it (a failure here is harmless). */
			if (resp.location) {
				_cleanup_free_ char *loc = strdup(resp.location);
				struct kiln_http_request del = {.method = "DELETE", .url = loc};
				struct kiln_error *ignored = NULL;
				if (loc)
					kiln_reg_request(r, scope, false, &del, &resp, &ignored);
				kiln_error_free(ignored);
			}
		} else {
			rc = kiln_reg_status_error(r, &resp, repo, err);
		}
	}
	kiln_http_response_release(&resp);
	if (rc < 0)
		return kiln_error_wrap(err, "cannot mount blob %s from %s into %s/%s",
		                       kiln_reg_short(digest).s, from_repo, r->host, repo);
	return 0;
}

/* Hashes what goes to the caller's writer, to check the digest at the end, and counts it: where a cut-off
 * download resumes. */
struct hashing_writer {
	struct kiln_sha256 *sha;
	kiln_write_fn write;
	void *ctx;
	uint64_t written;
};

static int hashing_write(void *ctx, const void *data, size_t len, struct kiln_error **err)
{
	struct hashing_writer *h = ctx;
	kiln_sha256_update(h->sha, data, len);
	h->written += len;
	return h->write(h->ctx, data, len, err);
}

static bool is_redirect(long status)
{
	return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/* Follow a blob GET's redirects (object storage); the Authorization header goes only to the registry's
 * own origin. RESP holds the redirect on entry and the final answer on return. No retries here: the
 * caller starts again from the registry, which gives a fresh redirect. */
static int follow_redirects(struct kiln_registry *r, const char *scope, struct kiln_http_request *req,
                            struct kiln_http_response *resp, struct kiln_error **err)
{
	_cleanup_free_ char *origin = kiln_http_origin(r->base);
	for (int hops = 0; is_redirect(resp->status); hops++) {
		if (hops == MAX_REDIRECTS || resp->location == NULL)
			return kiln_error_set(err, KILN_EFAIL,
			                      "%s: too many redirects or a redirect without Location",
			                      r->host);
		_cleanup_free_ char *next = steal_pointer(&resp->location);
		_cleanup_free_ char *next_origin = kiln_http_origin(next);
		req->url = next;
		int rc = origin && next_origin && strcmp(origin, next_origin) == 0
		             ? kiln_reg_request(r, scope, false, req, resp, err)
		             : kiln_http_perform(r->http, req, resp, err);
		req->url = NULL;
		if (rc < 0)
			return rc;
	}
	return 0;
}

/*
 * GET the blob into HW, following redirects. A transfer cut off mid-body goes on with a Range request from
 * the bytes HW has (a registry that answers 416 to it, or the whole blob with 200, sends it whole again and
 * the bytes HW has are dropped); failures and 408/429/5xx answers are retried with backoff, all attempts
 * sharing one budget of opt.max_retries.
 */
static int get_resuming(struct kiln_registry *r, const char *repo, const char *scope, const char *url,
                        struct hashing_writer *hw, struct kiln_error **err)
{
	struct kiln_http_request req = {.method = "GET", .write = hashing_write, .write_ctx = hw};
	struct kiln_http_response resp = {0};
	int retries = 0;
	int rc;
	for (;;) {
		req.url = url;
		req.resume_offset = hw->written;
		rc = kiln_reg_request(r, scope, false, &req, &resp, err);
		if (rc == 0 && is_redirect(resp.status))
			rc = follow_redirects(r, scope, &req, &resp, err);
		if (rc == 0 && (resp.status == 200 || resp.status == 206))
			break;
		if (rc == 0 && resp.status == 416 && req.resume_offset && !req.resume_whole) {
			req.resume_whole = true;
			continue;
		}
		if (!kiln_reg_transient(rc, &resp)) {
			if (rc == 0)
				rc = kiln_reg_status_error(r, &resp, repo, err);
			break;
		}
		if ((rc = kiln_reg_retry_after_failure(r, &retries, repo, rc, &resp, err)) < 0)
			break;
	}
	kiln_http_response_release(&resp);
	return rc;
}

int kiln_registry_blob_get(struct kiln_registry *r, const char *repo, const char *digest, kiln_write_fn write,
                           void *ctx, struct kiln_error **err)
{
	_cleanup_free_ char *url = kiln_reg_url(r, "%s/blobs/%s", repo, digest);
	_cleanup_free_ char *scope = NULL;
	if (url == NULL || asprintf(&scope, "repository:%s:pull", repo) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	struct hashing_writer hw = {.write = write, .ctx = ctx};
	if (kiln_sha256_new(&hw.sha, err) < 0)
		return (*err)->code;
	int rc = get_resuming(r, repo, scope, url, &hw, err);
	char got[KILN_DIGEST_LEN];
	kiln_sha256_final(hw.sha, got);
	kiln_sha256_free(hw.sha);
	if (rc == 0 && strcmp(got, digest) != 0)
		rc = kiln_error_set(err, KILN_EIO, "the registry sent content with digest %s", got);
	if (rc < 0)
		return kiln_error_wrap(err, "cannot get blob %s from %s/%s", kiln_reg_short(digest).s,
		                       r->host, repo);
	return 0;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* upload.c: blob uploads: one PUT, or PATCH chunks that resume from the registry's offset after a failure. */
#include "common/cleanup.h"
#include "registry/client_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One upload in progress. */
struct upload {
	struct kiln_registry *r;
	const char *repo;
	const struct kiln_blob_source *src;
	const char *scope;
	char *location; /* where the next request of the session goes */
	uint64_t sent;  /* body bytes sent in all, retries included */
	int retries;    /* retries used, against opt.max_retries */
	void (*progress)(void *ctx, uint64_t done);
	void *progress_ctx;
	uint64_t base; /* offset of the current request's first byte, for progress */
};

/* Progress of one request, as a position in the whole blob. */
static void request_progress(void *ctx, uint64_t pos)
{
	struct upload *u = ctx;
	if (u->progress)
		u->progress(u->progress_ctx, u->base + pos);
}

/* Take the Location of an answer as the session's next URL (kept when the answer has none). */
static void follow_location(struct upload *u, struct kiln_http_response *resp)
{
	if (resp->location) {
		free(u->location);
		u->location = steal_pointer(&resp->location);
	}
}

/* POST /v2/REPO/blobs/uploads/: a new session, its URL in u->location. */
static int start_session(struct upload *u, struct kiln_error **err)
{
	_cleanup_free_ char *url = kiln_reg_url(u->r, "%s/blobs/uploads/", u->repo);
	if (url == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	struct kiln_http_request req = {.method = "POST", .url = url};
	struct kiln_http_response resp = {0};
	int rc = kiln_reg_request(u->r, u->scope, true, &req, &resp, err);
	if (rc == 0 && resp.status != 202)
		rc = kiln_reg_status_error(u->r, &resp, u->repo, err);
	if (rc == 0 && resp.location == NULL)
		rc = kiln_error_set(err, KILN_EFAIL, "%s started an upload without a Location", u->r->host);
	if (rc == 0) {
		free(u->location);
		u->location = NULL;
		follow_location(u, &resp);
	}
	kiln_http_response_release(&resp);
	return rc;
}

/* Check a 201 answer's Docker-Content-Digest against the blob's. */
static int check_created(struct upload *u, const struct kiln_http_response *resp, struct kiln_error **err)
{
	const char *got = resp->docker_content_digest;
	if (got && *got && strcmp(got, u->src->digest) != 0)
		return kiln_error_set(err, KILN_EIO, "the registry stored the blob as %s", got);
	return 0;
}

/* The upload as one PUT Location?digest=D with the whole body; failures start a new session. */
static int upload_monolithic(struct upload *u, struct kiln_error **err)
{
	for (;;) {
		if (start_session(u, err) < 0)
			return (*err)->code;
		_cleanup_free_ char *url = kiln_http_add_query(u->location, "digest", u->src->digest);
		if (url == NULL)
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
		const char *hdrs[] = {"Content-Type: application/octet-stream", NULL};
		struct kiln_http_request req = {.method = "PUT",
		                                .url = url,
		                                .headers = hdrs,
		                                .src = u->src,
		                                .src_offset = 0,
		                                .src_len = u->src->size,
		                                .progress = request_progress,
		                                .progress_ctx = u};
		struct kiln_http_response resp = {0};
		u->base = 0;
		int rc = kiln_reg_request(u->r, u->scope, false, &req, &resp, err);
		u->sent += resp.sent;
		if (rc == 0 && resp.status == 201) {
			rc = check_created(u, &resp, err);
			kiln_http_response_release(&resp);
			return rc;
		}
		if (kiln_reg_transient(rc, &resp)) {
			int s = kiln_reg_retry_after_failure(u->r, &u->retries, u->repo, rc, &resp, err);
			if (s < 0)
				return s;
			continue;
		}
		if (rc == 0)
			rc = kiln_reg_status_error(u->r, &resp, u->repo, err);
		kiln_http_response_release(&resp);
		return rc;
	}
}

/* Parse a Range header "0-N" (or "bytes=0-N") into the count of bytes the registry holds. */
static bool parse_range(const char *range, uint64_t *held)
{
	if (range == NULL)
		return false;
	if (strncmp(range, "bytes=", 6) == 0)
		range += 6;
	uint64_t first, last;
	if (sscanf(range, "%" SCNu64 "-%" SCNu64, &first, &last) != 2 || first != 0)
		return false;
	/* Registries say "0-0" for an empty session too (distribution does). */
	*held = last == 0 ? 0 : last + 1;
	return true;
}

/*
 * After a failed PATCH: ask the session how much it holds (GET Location → 204, Range "0-N") so the upload
 * goes on from byte N+1. *offset is set; *gone when the session no longer exists (a new one is needed).
 */
static int upload_status(struct upload *u, uint64_t *offset, bool *gone, struct kiln_error **err)
{
	*gone = false;
	for (;;) {
		struct kiln_http_request req = {.method = "GET", .url = u->location};
		struct kiln_http_response resp = {0};
		int rc = kiln_reg_request(u->r, u->scope, false, &req, &resp, err);
		if (rc == 0 && (resp.status == 204 || resp.status == 200)) {
			uint64_t held = 0;
			if (!parse_range(resp.range, &held) || held > u->src->size) {
				*gone = true;
			} else {
				*offset = held;
				follow_location(u, &resp);
			}
			kiln_http_response_release(&resp);
			return 0;
		}
		if (rc == 0 && (resp.status == 404 || resp.status == 400 || resp.status == 416)) {
			/* BLOB_UPLOAD_UNKNOWN / BLOB_UPLOAD_INVALID: the session is gone or unusable */
			*gone = true;
			kiln_http_response_release(&resp);
			return 0;
		}
		if (kiln_reg_transient(rc, &resp)) {
			int s = kiln_reg_retry_after_failure(u->r, &u->retries, u->repo, rc, &resp, err);
			if (s < 0)
				return s;
			continue;
		}
		if (rc == 0)
			rc = kiln_reg_status_error(u->r, &resp, u->repo, err);
		kiln_http_response_release(&resp);
		return rc;
	}
}

/* PATCH one chunk [offset, offset+len) to the session. *failed (with *err set) when it may be retried. */
static int patch_chunk(struct upload *u, uint64_t offset, uint64_t len, bool *failed, char **retry_after,
                       struct kiln_error **err)
{
	*failed = false;
	char range[64];
	snprintf(range, sizeof(range), "Content-Range: %" PRIu64 "-%" PRIu64, offset, offset + len - 1);
	const char *hdrs[] = {"Content-Type: application/octet-stream", range, NULL};
	struct kiln_http_request req = {.method = "PATCH",
	                                .url = u->location,
	                                .headers = hdrs,
	                                .src = u->src,
	                                .src_offset = offset,
	                                .src_len = len,
	                                .progress = request_progress,
	                                .progress_ctx = u};
	struct kiln_http_response resp = {0};
	u->base = offset;
	int rc = kiln_reg_request(u->r, u->scope, false, &req, &resp, err);
	u->sent += resp.sent;
	if (rc == 0 && resp.status == 202) {
		follow_location(u, &resp);
		kiln_http_response_release(&resp);
		return 0;
	}
	if (kiln_reg_transient(rc, &resp) || (rc == 0 && (resp.status == 416 || resp.status == 404))) {
		*failed = true;
		*retry_after = resp.retry_after ? strdup(resp.retry_after) : NULL;
		if (rc == 0)
			kiln_reg_status_error(u->r, &resp, u->repo, err);
		kiln_http_response_release(&resp);
		return 0;
	}
	if (rc == 0)
		rc = kiln_reg_status_error(u->r, &resp, u->repo, err);
	kiln_http_response_release(&resp);
	return rc;
}

/* PUT Location?digest=D with an empty body: the end of a chunked upload. *restart (with *err set) when
 * the registry threw the session away (BLOB_UPLOAD_INVALID/UNKNOWN, DIGEST_INVALID after a cut chunk):
 * the upload may start again from 0. */
static int finish_chunked(struct upload *u, bool *restart, struct kiln_error **err)
{
	*restart = false;
	_cleanup_free_ char *url = kiln_http_add_query(u->location, "digest", u->src->digest);
	if (url == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	const char *hdrs[] = {"Content-Type: application/octet-stream", NULL};
	struct kiln_http_request req = {
	    .method = "PUT", .url = url, .headers = hdrs, .data = "", .data_len = 0};
	struct kiln_http_response resp = {0};
	int rc = kiln_reg_request(u->r, u->scope, true, &req, &resp, err);
	if (rc == 0 && resp.status == 201) {
		rc = check_created(u, &resp, err);
	} else {
		/* A PUT whose answer was lost may have completed: the blob's presence says so. */
		bool exists = false;
		struct kiln_error *e2 = NULL;
		if (kiln_registry_blob_exists(u->r, u->repo, u->src->digest, &exists, &e2) == 0 && exists) {
			kiln_error_free(*err);
			*err = NULL;
			rc = 0;
		} else if (rc == 0) {
			rc = kiln_reg_status_error(u->r, &resp, u->repo, err);
			*restart = resp.status == 400 || resp.status == 404 || resp.status == 416;
		}
		kiln_error_free(e2);
	}
	kiln_http_response_release(&resp);
	return rc;
}

/*
 * The upload as PATCH chunks of opt.chunk_size, each to the Location the previous answer gave. After a
 * failed PATCH the session is asked what it holds and the upload goes on from there (the source is read
 * again from that offset); a session that is gone is replaced by a new one from offset 0.
 */
static int upload_chunked(struct upload *u, struct kiln_error **err)
{
again:
	if (start_session(u, err) < 0)
		return (*err)->code;
	uint64_t size = u->src->size;
	uint64_t offset = 0;
	while (offset < size) {
		uint64_t len = size - offset < u->r->opt.chunk_size ? size - offset : u->r->opt.chunk_size;
		bool failed = false;
		_cleanup_free_ char *retry_after = NULL;
		if (patch_chunk(u, offset, len, &failed, &retry_after, err) < 0)
			return (*err)->code;
		if (!failed) {
			offset += len;
			continue;
		}
		int s = kiln_reg_retry(u->r, &u->retries, retry_after, err);
		if (s < 0)
			return s;
		bool gone = false;
		if (upload_status(u, &offset, &gone, err) < 0)
			return (*err)->code;
		if (gone) {
			if (start_session(u, err) < 0)
				return (*err)->code;
			offset = 0;
		}
	}
	bool restart = false;
	int rc = finish_chunked(u, &restart, err);
	if (rc < 0 && restart) {
		int s = kiln_reg_retry(u->r, &u->retries, NULL, err);
		if (s < 0)
			return s;
		goto again;
	}
	return rc;
}

int kiln_registry_blob_upload(struct kiln_registry *r, const char *repo, const struct kiln_blob_source *src,
                              void (*progress)(void *ctx, uint64_t done), void *progress_ctx, uint64_t *sent,
                              struct kiln_error **err)
{
	_cleanup_free_ char *scope = NULL;
	if (asprintf(&scope, "repository:%s:pull,push", repo) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	struct upload u = {.r = r,
	                   .repo = repo,
	                   .src = src,
	                   .scope = scope,
	                   .progress = progress,
	                   .progress_ctx = progress_ctx};
	bool mono = src->size <= r->opt.monolithic_max || r->monolithic_only;
	int rc = mono ? upload_monolithic(&u, err) : upload_chunked(&u, err);
	free(u.location);
	if (sent)
		*sent = u.sent;
	if (rc < 0)
		return kiln_error_wrap(err, "cannot push blob %s to %s/%s", kiln_reg_short(src->digest).s,
		                       r->host, repo);
	if (progress)
		progress(progress_ctx, src->size);
	return 0;
}

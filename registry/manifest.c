/* SPDX-License-Identifier: Apache-2.0 */
/* manifest.c: pushing and fetching manifests and indexes (OCI and Docker v2), checked by digest. */
#include "common/cleanup.h"
#include "layers/digest.h"
#include "registry/client_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MANIFEST (4 * 1024 * 1024)

static const char *const manifest_accept =
    "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json";

/* "repo:tag" or "repo@sha256:…" for messages. */
static char *ref_name(const char *repo, const char *reference)
{
	char *s = NULL;
	bool digest = strchr(reference, ':') != NULL;
	if (asprintf(&s, "%s%s%s", repo, digest ? "@" : ":", reference) < 0)
		return NULL;
	return s;
}

int kiln_registry_manifest_put(struct kiln_registry *r, const char *repo, const char *reference,
                               const char *media_type, const char *data, size_t len,
                               char digest_out[KILN_DIGEST_LEN], struct kiln_error **err)
{
	_cleanup_free_ char *url = kiln_reg_url(r, "%s/manifests/%s", repo, reference);
	_cleanup_free_ char *scope = NULL;
	_cleanup_free_ char *ctype = NULL;
	_cleanup_free_ char *name = ref_name(repo, reference);
	if (url == NULL || name == NULL || asprintf(&scope, "repository:%s:pull,push", repo) < 0 ||
	    asprintf(&ctype, "Content-Type: %s", media_type) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	char digest[KILN_DIGEST_LEN];
	kiln_digest_buffer(digest, data, len);
	const char *hdrs[] = {ctype, NULL};
	struct kiln_http_request req = {
	    .method = "PUT", .url = url, .headers = hdrs, .data = data, .data_len = len};
	struct kiln_http_response resp = {0};
	int rc = kiln_reg_request(r, scope, true, &req, &resp, err);
	if (rc == 0 && resp.status != 201 && resp.status != 200)
		rc = kiln_reg_status_error(r, &resp, repo, err);
	if (rc == 0 && resp.docker_content_digest && strcmp(resp.docker_content_digest, digest) != 0)
		rc = kiln_error_set(err, KILN_EIO, "the registry stored it as %s instead of %s",
		                    resp.docker_content_digest, digest);
	kiln_http_response_release(&resp);
	if (rc < 0)
		return kiln_error_wrap(err, "cannot push manifest %s to %s", name, r->host);
	if (digest_out)
		memcpy(digest_out, digest, KILN_DIGEST_LEN);
	return 0;
}

int kiln_registry_manifest_check(char **media_type, const char *host, const char *content_type,
                                 const char *body, size_t len, struct kiln_error **err)
{
	*media_type = NULL;
	json_error_t je;
	json_t *j = json_loadb(body ? body : "", len, 0, &je);
	if (!json_is_object(j)) {
		json_decref(j);
		return kiln_error_set(err, KILN_EINVAL, "%s returned a manifest that is not JSON%s%s", host,
		                      j ? "" : ": ", j ? "" : je.text);
	}
	const char *mt = NULL;
	size_t n = 0;
	if (content_type && *content_type) {
		mt = content_type;
		n = strcspn(mt, "; ");
	}
	if (n == 0 || strncmp(mt, "application/json", n) == 0 || strncmp(mt, "text/plain", n) == 0) {
		const char *body_mt = json_string_value(json_object_get(j, "mediaType"));
		if (body_mt) {
			mt = body_mt;
			n = strlen(mt);
		}
	}
	*media_type = mt && n ? strndup(mt, n) : strdup("application/vnd.oci.image.manifest.v1+json");
	json_decref(j);
	if (*media_type == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	return 0;
}

int kiln_registry_manifest_get(struct kiln_registry *r, const char *repo, const char *reference, char **data,
                               size_t *len, char **media_type, char digest_out[KILN_DIGEST_LEN],
                               struct kiln_error **err)
{
	*data = NULL;
	*len = 0;
	*media_type = NULL;
	_cleanup_free_ char *url = kiln_reg_url(r, "%s/manifests/%s", repo, reference);
	_cleanup_free_ char *scope = NULL;
	_cleanup_free_ char *name = ref_name(repo, reference);
	if (url == NULL || name == NULL || asprintf(&scope, "repository:%s:pull", repo) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	const char *hdrs[] = {manifest_accept, NULL};
	struct kiln_http_request req = {
	    .method = "GET", .url = url, .headers = hdrs, .max_body = MAX_MANIFEST};
	struct kiln_http_response resp = {0};
	int rc = kiln_reg_request(r, scope, true, &req, &resp, err);
	if (rc < 0 && resp.too_large)
		rc = kiln_error_set(err, KILN_EINVAL, "manifest too large (over %d bytes)", MAX_MANIFEST);
	if (rc == 0 && resp.status != 200)
		rc = kiln_reg_status_error(r, &resp, repo, err);
	char digest[KILN_DIGEST_LEN] = "";
	if (rc == 0)
		rc = kiln_registry_manifest_check(media_type, r->host, resp.content_type, resp.body.ptr,
		                                  resp.body.len, err);
	if (rc == 0) {
		kiln_digest_buffer(digest, resp.body.ptr ? resp.body.ptr : "", resp.body.len);
		if (kiln_digest_valid(reference) && strcmp(reference, digest) != 0)
			rc = kiln_error_set(err, KILN_EIO, "%s sent a manifest whose digest is %s", r->host,
			                    digest);
	}
	if (rc < 0) {
		free(*media_type);
		*media_type = NULL;
		kiln_http_response_release(&resp);
		return kiln_error_wrap(err, "cannot get manifest %s from %s", name, r->host);
	}
	*len = resp.body.len;
	*data = kiln_buf_detach(&resp.body);
	kiln_http_response_release(&resp);
	if (digest_out)
		memcpy(digest_out, digest, KILN_DIGEST_LEN);
	return 0;
}

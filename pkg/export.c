/* SPDX-License-Identifier: Apache-2.0 */
/* export.c: writing an image from the store to an OCI layout or an OCI archive. */
#include "pkg/export.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "layers/archive.h"
#include "pkg/image.h"
#include "pkg/weights_registry.h"
#include "pkg/pull.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REF_ANNOTATION "org.opencontainers.image.ref.name"
#define LAYOUT_TEXT    "{\"imageLayoutVersion\":\"1.0.0\"}"

/* The blobs of an image: manifest, config, layers (digest and size each). */
struct blobs {
	char (*digest)[KILN_DIGEST_LEN];
	uint64_t *size;
	size_t n;
	/* serve.weights: registry: the artifact that carries the weights (among the blobs), else "" */
	char artifact[KILN_DIGEST_LEN];
	uint64_t artifact_size;
};

static void blobs_release(struct blobs *b)
{
	free(b->digest);
	free(b->size);
}

static int list_blobs(struct blobs *out, struct kiln_store *s, const char *digest, struct kiln_error **err)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	if (kiln_store_blob_read(s, digest, &text, &len, 4 << 20, err) < 0)
		return -1;
	json_t *m = json_loadb(text, len, 0, NULL);
	json_t *layers = json_object_get(m, "layers");
	json_t *config = json_object_get(m, "config");
	if (!json_is_array(layers) || !json_is_object(config)) {
		json_decref(m);
		return kiln_error_set(err, KILN_EIO, "manifest %s in the store is not an image manifest",
		                      digest);
	}
	out->n = json_array_size(layers) + 2;
	out->digest = calloc(out->n, sizeof(*out->digest));
	out->size = calloc(out->n, sizeof(*out->size));
	if (!out->digest || !out->size) {
		json_decref(m);
		blobs_release(out);
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	snprintf(out->digest[0], KILN_DIGEST_LEN, "%s", digest);
	out->size[0] = len;
	for (size_t i = 1; i < out->n; i++) {
		json_t *d = i == 1 ? config : json_array_get(layers, i - 2);
		const char *dg = json_string_value(json_object_get(d, "digest"));
		snprintf(out->digest[i], KILN_DIGEST_LEN, "%s", dg ? dg : "");
		out->size[i] = (uint64_t)json_integer_value(json_object_get(d, "size"));
		if (!kiln_digest_valid(out->digest[i])) {
			json_decref(m);
			blobs_release(out);
			return kiln_error_set(err, KILN_EIO, "manifest %s has a bad digest", digest);
		}
	}
	json_decref(m);
	return 0;
}

/*
 * serve.weights: registry: the weight blobs join the image's, with the artifact that carries them (its
 * config and manifest put in the store), so that the layout holds everything the image needs.
 */
static int add_weights(struct blobs *b, struct kiln_store *s, struct kiln_error **err)
{
	json_t *config = NULL;
	if (kiln_store_json_read(s, b->digest[1], 16 << 20, &config, err) < 0)
		return -1;
	json_t *list = NULL;
	int rc = kiln_weights_registry_of(&list, config, err);
	json_decref(config);
	if (rc < 0 || list == NULL)
		return rc;
	_cleanup_free_ char *am = NULL, *ac = NULL;
	char acd[KILN_DIGEST_LEN];
	size_t nw = json_array_size(list);
	char(*digest)[KILN_DIGEST_LEN] = realloc(b->digest, (b->n + nw + 2) * sizeof(*digest));
	if (digest)
		b->digest = digest;
	uint64_t *size = digest ? realloc(b->size, (b->n + nw + 2) * sizeof(*size)) : NULL;
	if (size)
		b->size = size;
	rc = !digest || !size ? kiln_error_set(err, KILN_EFAIL, "out of memory")
	                      : kiln_weights_artifact(&am, &ac, list, b->digest[0], b->size[0], err);
	if (rc == 0)
		rc = kiln_store_blob_put(s, ac, strlen(ac), acd, err);
	if (rc == 0)
		rc = kiln_store_blob_put(s, am, strlen(am), b->artifact, err);
	for (size_t i = 0; rc == 0 && i < nw; i++) {
		const json_t *w = json_array_get(list, i);
		snprintf(b->digest[b->n], KILN_DIGEST_LEN, "%s",
		         json_string_value(json_object_get(w, "digest")));
		b->size[b->n++] = (uint64_t)json_integer_value(json_object_get(w, "size"));
	}
	if (rc == 0) {
		memcpy(b->digest[b->n], acd, KILN_DIGEST_LEN);
		b->size[b->n++] = strlen(ac);
		memcpy(b->digest[b->n], b->artifact, KILN_DIGEST_LEN);
		b->artifact_size = strlen(am);
		b->size[b->n++] = b->artifact_size;
	}
	json_decref(list);
	return rc;
}

/* Split "oci:DIR:TAG" into its path and tag (TAG only when the last ':' part has no '/'). */
static int split_dest(const char *dest, char **path, char **tag, int *archive, struct kiln_error **err)
{
	const char *rest;
	if (strncmp(dest, "oci:", 4) == 0) {
		rest = dest + 4;
		*archive = 0;
	} else if (strncmp(dest, "oci-archive:", 12) == 0) {
		rest = dest + 12;
		*archive = 1;
	} else {
		return kiln_error_set(err, KILN_EINVAL,
		                      "--output '%s': expected 'oci:DIR[:TAG]' or 'oci-archive:FILE[:TAG]'",
		                      dest);
	}
	*path = strdup(rest);
	*tag = NULL;
	if (*path == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	char *colon = strrchr(*path, ':');
	if (colon && !strchr(colon, '/')) {
		*colon = '\0';
		*tag = strdup(colon + 1);
	}
	if (**path == '\0') {
		free(*path);
		free(*tag);
		return kiln_error_set(err, KILN_EINVAL, "--output '%s': the path is empty", dest);
	}
	return 0;
}

int kiln_export_check(const char *dest, struct kiln_error **err)
{
	char *path = NULL, *tag = NULL;
	int archive;
	int rc = split_dest(dest, &path, &tag, &archive, err);
	if (rc < 0)
		return rc;
	free(path);
	free(tag);
	return 0;
}

struct stream_ctx {
	struct kiln_store *s;
	const char *digest;
};

static int produce_blob(void *ctx, kiln_write_fn write, void *wctx, struct kiln_error **err)
{
	struct stream_ctx *c = ctx;
	return kiln_store_blob_stream(c->s, c->digest, write, wctx, err);
}

static int produce_text(void *ctx, kiln_write_fn write, void *wctx, struct kiln_error **err)
{
	const char *text = ctx;
	return write(wctx, text, strlen(text), err);
}

/* The layout's index.json with TAG pointing at the manifest (other images kept), and the weights'
 * artifact of B when it has one. */
static char *index_text(const char *existing_path, const struct blobs *b, const char *tag)
{
	const char *digest = b->digest[0];
	uint64_t size = b->size[0];
	json_t *index = existing_path ? json_load_file(existing_path, 0, NULL) : NULL;
	if (!json_is_array(json_object_get(index, "manifests"))) {
		json_decref(index);
		index = json_pack("{s:i,s:s,s:[]}", "schemaVersion", 2, "mediaType", KILN_MEDIA_INDEX,
		                  "manifests");
	}
	json_t *list = json_object_get(index, "manifests");
	for (size_t i = 0; i < json_array_size(list);) {
		const char *name = json_string_value(
		    json_object_get(json_object_get(json_array_get(list, i), "annotations"), REF_ANNOTATION));
		if (name && strcmp(name, tag) == 0)
			json_array_remove(list, i);
		else
			i++;
	}
	json_array_append_new(list, json_pack("{s:s,s:s,s:I,s:{s:s}}", "mediaType", KILN_MEDIA_MANIFEST,
	                                      "digest", digest, "size", (json_int_t)size, "annotations",
	                                      REF_ANNOTATION, tag));
	bool listed = false;
	for (size_t i = 0; *b->artifact && i < json_array_size(list); i++)
		listed = listed ||
		         strcmp(json_string_value(json_object_get(json_array_get(list, i), "digest")) ?: "",
		                b->artifact) == 0;
	if (*b->artifact && !listed)
		json_array_append_new(list,
		                      json_pack("{s:s,s:s,s:I,s:s}", "mediaType", KILN_MEDIA_MANIFEST,
		                                "digest", b->artifact, "size", (json_int_t)b->artifact_size,
		                                "artifactType", KILN_MEDIA_WEIGHTS_ARTIFACT));
	char *text = json_dumps(index, JSON_COMPACT);
	json_decref(index);
	return text;
}

/* Write one blob into DIR/blobs/sha256 unless a file of the right size is already there. */
static int layout_blob(struct kiln_store *s, const char *dir, const char *digest, uint64_t size,
                       uint64_t *written, struct kiln_error **err)
{
	_cleanup_free_ char *dst = NULL, *tmp = NULL;
	if (asprintf(&dst, "%s/blobs/sha256/%s", dir, kiln_digest_hex(digest)) < 0 ||
	    asprintf(&tmp, "%s/blobs/sha256/.%s.tmp-%d", dir, kiln_digest_hex(digest), (int)getpid()) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	struct stat st;
	if (stat(dst, &st) == 0 && (uint64_t)st.st_size == size)
		return 0;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return kiln_error_errno(err, errno, "cannot create '%s'", tmp);
	int rc = kiln_store_blob_stream(s, digest, kiln_write_to_fd, &fd, err);
	if (rc == 0 && fsync(fd) < 0)
		rc = kiln_error_errno(err, errno, "cannot write '%s'", dst);
	if (close(fd) < 0 && rc == 0)
		rc = kiln_error_errno(err, errno, "cannot write '%s'", dst);
	if (rc == 0 && rename(tmp, dst) < 0)
		rc = kiln_error_errno(err, errno, "cannot write '%s'", dst);
	if (rc < 0) {
		unlink(tmp);
		return kiln_error_wrap(err, "cannot export blob %s", digest);
	}
	*written += size;
	return 0;
}

static int export_layout(struct kiln_store *s, const struct blobs *b, const char *dir, const char *tag,
                         uint64_t *written, struct kiln_error **err)
{
	_cleanup_free_ char *blobdir = NULL, *layout = NULL, *index = NULL;
	if (asprintf(&blobdir, "%s/blobs/sha256", dir) < 0 || asprintf(&layout, "%s/oci-layout", dir) < 0 ||
	    asprintf(&index, "%s/index.json", dir) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	if (kiln_mkdir_p(blobdir, err) < 0)
		return -1;
	for (size_t i = b->n; i-- > 0;) /* layers first, the manifest last */
		if (layout_blob(s, dir, b->digest[i], b->size[i], written, err) < 0)
			return -1;
	if (kiln_write_file_atomic(layout, LAYOUT_TEXT, strlen(LAYOUT_TEXT), err) < 0)
		return -1;
	char *text = index_text(access(index, F_OK) == 0 ? index : NULL, b, tag);
	if (text == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	int rc = kiln_write_file_atomic(index, text, strlen(text), err);
	free(text);
	return rc;
}

static int export_archive(struct kiln_store *s, const struct blobs *b, const char *file, const char *tag,
                          uint64_t *written, struct kiln_error **err)
{
	_cleanup_free_ char *tmp = NULL;
	if (asprintf(&tmp, "%s.tmp-%d", file, (int)getpid()) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return kiln_error_errno(err, errno, "cannot create '%s'", tmp);
	struct kiln_archive *a = NULL;
	_cleanup_free_ char *index = index_text(NULL, b, tag);
	int rc =
	    index ? kiln_archive_create(&a, fd, 0, err) : kiln_error_set(err, KILN_EFAIL, "out of memory");
	if (rc == 0)
		rc = kiln_archive_add_file(a, "oci-layout", strlen(LAYOUT_TEXT), produce_text, LAYOUT_TEXT,
		                           err);
	if (rc == 0)
		rc = kiln_archive_add_file(a, "index.json", strlen(index), produce_text, index, err);
	if (rc == 0)
		rc = kiln_archive_add_dir(a, "blobs", err);
	if (rc == 0)
		rc = kiln_archive_add_dir(a, "blobs/sha256", err);
	for (size_t i = 0; rc == 0 && i < b->n; i++) {
		bool dup = false;
		for (size_t k = 0; k < i; k++)
			dup = dup || strcmp(b->digest[k], b->digest[i]) == 0;
		if (dup)
			continue;
		char name[KILN_DIGEST_LEN + 16];
		snprintf(name, sizeof(name), "blobs/sha256/%s", kiln_digest_hex(b->digest[i]));
		struct stream_ctx c = {s, b->digest[i]};
		rc = kiln_archive_add_file(a, name, b->size[i], produce_blob, &c, err);
		*written += b->size[i];
	}
	if (rc == 0)
		rc = kiln_archive_finish(a, err);
	kiln_archive_free(a);
	if (rc == 0 && fsync(fd) < 0)
		rc = kiln_error_errno(err, errno, "cannot write '%s'", file);
	if (close(fd) < 0 && rc == 0)
		rc = kiln_error_errno(err, errno, "cannot write '%s'", file);
	if (rc == 0 && rename(tmp, file) < 0)
		rc = kiln_error_errno(err, errno, "cannot write '%s'", file);
	if (rc < 0)
		unlink(tmp);
	return rc;
}

int kiln_export(struct kiln_store *s, const char *digest, const char *dest, const char *tag,
                uint64_t *written, const struct kiln_registry_options *ropt, struct kiln_error **err)
{
	_cleanup_free_ char *path = NULL, *dtag = NULL;
	int archive;
	uint64_t dummy = 0;
	if (written == NULL)
		written = &dummy;
	*written = 0;
	if (split_dest(dest, &path, &dtag, &archive, err) < 0)
		return -1;
	struct blobs b = {0};
	if (list_blobs(&b, s, digest, err) < 0)
		return -1;
	if (add_weights(&b, s, err) < 0) {
		blobs_release(&b);
		return kiln_error_wrap(err, "cannot write '%s'", dest);
	}
	for (size_t i = 0; i < b.n; i++) {
		if (!kiln_store_blob_exists(s, b.digest[i]) &&
		    kiln_fetch_blob(s, b.digest[i], 0, ropt, NULL, err) < 0) {
			blobs_release(&b);
			return kiln_error_wrap(err, "cannot write '%s'", dest);
		}
	}
	const char *t = dtag ? dtag : tag ? tag : "latest";
	int rc = archive ? export_archive(s, &b, path, t, written, err)
	                 : export_layout(s, &b, path, t, written, err);
	blobs_release(&b);
	if (rc < 0)
		return kiln_error_wrap(err, "cannot write '%s'", dest);
	return 0;
}

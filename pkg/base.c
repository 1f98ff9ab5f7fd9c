/* SPDX-License-Identifier: Apache-2.0 */
/* base.c: reading a base image from an OCI image layout into the store. */
#include "pkg/base.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "pkg/pull.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define JSON_MAX (16 << 20)

/* Read a blob of the layout DIR, checking its digest. */
static json_t *read_layout_json(const char *dir, const char *digest, struct kiln_error **err)
{
	if (!kiln_digest_valid(digest)) {
		kiln_error_set(err, KILN_EINVAL, "bad digest '%s'", digest);
		return NULL;
	}
	_cleanup_free_ char *path = NULL;
	_cleanup_free_ char *data = NULL;
	size_t len = 0;
	if (asprintf(&path, "%s/blobs/sha256/%s", dir, kiln_digest_hex(digest)) < 0 ||
	    kiln_read_file(&data, &len, path, JSON_MAX, err) < 0)
		return NULL;
	char got[KILN_DIGEST_LEN];
	kiln_digest_buffer(got, data, len);
	if (strcmp(got, digest) != 0) {
		kiln_error_set(err, KILN_EIO, "'%s' does not match its digest", path);
		return NULL;
	}
	json_error_t je;
	json_t *j = json_loadb(data, len, 0, &je);
	if (j == NULL)
		kiln_error_set(err, KILN_EINVAL, "'%s' is not valid JSON: %s", path, je.text);
	return j;
}

/* Pick the manifest descriptor tagged TAG (or the only one when TAG is NULL) from an index. */
static json_t *pick(json_t *index, const char *tag, const char *what, struct kiln_error **err)
{
	json_t *list = json_object_get(index, "manifests");
	if (tag == NULL && json_array_size(list) == 1)
		return json_array_get(list, 0);
	for (size_t i = 0; i < json_array_size(list); i++) {
		json_t *d = json_array_get(list, i);
		json_t *ann = json_object_get(d, "annotations");
		const char *name =
		    json_string_value(json_object_get(ann, "org.opencontainers.image.ref.name"));
		json_t *plat = json_object_get(d, "platform");
		if (tag && name && strcmp(name, tag) == 0)
			return d;
		if (tag == NULL && plat &&
		    strcmp(json_string_value(json_object_get(plat, "os")) ?: "", "linux") == 0 &&
		    strcmp(json_string_value(json_object_get(plat, "architecture")) ?: "", "amd64") == 0)
			return d;
	}
	kiln_error_set(err, KILN_ENOTFOUND,
	               tag ? "%s has no image tagged '%s'" : "%s has no linux/amd64 image%s", what,
	               tag ? tag : "");
	return NULL;
}

/* Put the layout's blob DIGEST into the store: a hard link when possible, else a verified copy. */
static int import_blob(struct kiln_store *s, const char *dir, const char *digest, struct kiln_error **err)
{
	/* A recipe is not enough: its source files may have changed since; the layout has the bytes. */
	_cleanup_free_ char *have = kiln_store_blob_path(s, digest);
	if (have)
		return 0;
	_cleanup_free_ char *src = NULL;
	if (asprintf(&src, "%s/blobs/sha256/%s", dir, kiln_digest_hex(digest)) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	char got[KILN_DIGEST_LEN];
	if (kiln_digest_file(got, src, err) < 0)
		return -1;
	if (strcmp(got, digest) != 0)
		return kiln_error_set(err, KILN_EIO, "'%s' does not match its digest", src);
	int fd;
	_cleanup_free_ char *tmp = NULL;
	if (kiln_store_tmpfile(s, &fd, &tmp, err) < 0)
		return -1;
	unlink(tmp);
	close(fd);
	if (link(src, tmp) == 0) {
		_cleanup_free_ char *dst = NULL;
		if (asprintf(&dst, "%s/blobs/sha256/%s", kiln_store_home(s), kiln_digest_hex(digest)) < 0 ||
		    rename(tmp, dst) < 0) {
			unlink(tmp);
			return kiln_error_errno(err, errno, "cannot store blob %s", digest);
		}
		return 0;
	}
	_cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (in < 0 || fd < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		unlink(tmp);
		return kiln_error_errno(err, e, "cannot copy '%s'", src);
	}
	_cleanup_free_ char *buf = malloc(1 << 20);
	ssize_t n;
	while (buf && (n = read(in, buf, 1 << 20)) > 0)
		if (kiln_write_all(fd, buf, (size_t)n) < 0) {
			n = -1;
			break;
		}
	if (buf == NULL || n < 0) {
		int e = buf ? errno : ENOMEM;
		close(fd);
		unlink(tmp);
		return kiln_error_errno(err, e, "cannot copy '%s'", src);
	}
	return kiln_store_blob_commit(s, fd, tmp, digest, err);
}

/* Docker's layer media types, as OCI's (the bytes are the same format). */
static void oci_media_types(json_t *layers)
{
	static const char *const map[][2] = {
	    {"application/vnd.docker.image.rootfs.diff.tar.gzip", KILN_MEDIA_LAYER_GZIP},
	    {"application/vnd.docker.image.rootfs.diff.tar", KILN_MEDIA_LAYER},
	};
	size_t i;
	json_t *l;
	json_array_foreach(layers, i, l)
	{
		const char *mt = json_string_value(json_object_get(l, "mediaType"));
		for (size_t k = 0; mt && k < sizeof(map) / sizeof(map[0]); k++)
			if (strcmp(mt, map[k][0]) == 0)
				json_object_set_new(l, "mediaType", json_string(map[k][1]));
	}
}

static int load_layout(struct kiln_base *out, const char *spec, struct kiln_store *s, struct kiln_error **err)
{
	_cleanup_free_ char *dir = strdup(spec);
	if (dir == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	char *tag = NULL;
	char *colon = strrchr(dir, ':');
	if (colon && !strchr(colon, '/')) {
		*colon = '\0';
		tag = colon + 1;
	}
	_cleanup_free_ char *index_path = kiln_path_join(dir, "index.json");
	json_error_t je;
	json_t *index = json_load_file(index_path, 0, &je);
	if (index == NULL)
		return kiln_error_set(err, access(index_path, F_OK) ? KILN_ENOTFOUND : KILN_EINVAL,
		                      "cannot read OCI layout '%s': %s", dir, je.text);
	int rc = -1;
	json_t *manifest = NULL, *sub = NULL;
	json_t *d = pick(index, tag, dir, err);
	const char *mt = json_string_value(json_object_get(d, "mediaType"));
	const char *digest = json_string_value(json_object_get(d, "digest"));
	if (d == NULL)
		goto cleanup;
	manifest = read_layout_json(dir, digest ?: "", err);
	if (manifest && mt &&
	    (strcmp(mt, KILN_MEDIA_INDEX) == 0 || strcmp(mt, KILN_MEDIA_DOCKER_LIST) == 0)) {
		json_t *pd = pick(manifest, NULL, "the base index", err);
		sub = pd ? read_layout_json(dir, json_string_value(json_object_get(pd, "digest")) ?: "", err)
		         : NULL;
		json_decref(manifest);
		manifest = sub;
		sub = NULL;
	}
	if (manifest == NULL)
		goto cleanup;
	const char *cdigest =
	    json_string_value(json_object_get(json_object_get(manifest, "config"), "digest"));
	out->config = read_layout_json(dir, cdigest ?: "", err);
	if (out->config == NULL)
		goto cleanup;
	out->layers = json_deep_copy(json_object_get(manifest, "layers"));
	oci_media_types(out->layers);
	if (!json_is_array(out->layers)) {
		kiln_error_set(err, KILN_EINVAL, "the base manifest has no layers");
		goto cleanup;
	}
	for (size_t i = 0; i < json_array_size(out->layers); i++) {
		const char *ld = json_string_value(json_object_get(json_array_get(out->layers, i), "digest"));
		if (ld == NULL || !kiln_digest_valid(ld)) {
			kiln_error_set(err, KILN_EINVAL, "the base manifest's layer %zu has no valid digest",
			               i);
			goto cleanup;
		}
		if (import_blob(s, dir, ld, err) < 0)
			goto cleanup;
	}
	rc = 0;
cleanup:
	json_decref(manifest);
	json_decref(index);
	return rc;
}

int kiln_base_load(struct kiln_base *out, const struct kiln_manifest *m, struct kiln_store *s,
                   const char *platform, const struct kiln_registry_options *ropt, struct kiln_error **err)
{
	memset(out, 0, sizeof(*out));
	const char *base = m->base ? m->base : "scratch";
	out->name = strdup(base);
	if (strcmp(base, "scratch") == 0)
		return 0;
	if (strncmp(base, "oci:", 4) == 0) {
		if (load_layout(out, base + 4, s, err) < 0) {
			kiln_base_release(out);
			return kiln_error_wrap(err, "%s:%d:%d: base '%s'", m->path, m->base_pos.line,
			                       m->base_pos.column, base);
		}
		return 0;
	}
	struct kiln_remote_image img;
	if (kiln_remote_resolve(&img, s, base, platform, ropt, err) < 0) {
		kiln_base_release(out);
		return kiln_error_wrap(err, "%s:%d:%d: base '%s'", m->path, m->base_pos.line,
		                       m->base_pos.column, base);
	}
	out->config = json_incref(img.config);
	out->layers = json_deep_copy(json_object_get(img.manifest, "layers"));
	kiln_remote_image_release(&img);
	oci_media_types(out->layers);
	return 0;
}

void kiln_base_release(struct kiln_base *b)
{
	free(b->name);
	json_decref(b->config);
	json_decref(b->layers);
	memset(b, 0, sizeof(*b));
}

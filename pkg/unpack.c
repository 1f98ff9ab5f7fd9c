/* SPDX-License-Identifier: Apache-2.0 */
/* unpack.c: unpacking an image's layers from the store into a directory, all or nothing. */
#include "pkg/unpack.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "layers/reader.h"
#include "pkg/image.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MANIFEST_MAX (4 << 20)
#define TEMP_INFIX   ".unpack-"

/* The extraction filter of a tar layer's MEDIA_TYPE (NULL: plain or gzip); -1 when it is no such layer. */
static int layer_filter(const char *media_type, enum kiln_extract_filter *out)
{
	static const struct {
		const char *prefix;
		bool any_suffix; /* ModelPack: application/vnd.cncf.model.<kind>.v1.tar[+gzip|+zstd] */
	} families[] = {
	    {"application/vnd.oci.image.layer.v1.tar", false},
	    {"application/vnd.oci.image.layer.nondistributable.v1.tar", false},
	    {"application/vnd.docker.image.rootfs.diff.tar", false},
	    {"application/vnd.docker.image.rootfs.foreign.diff.tar", false},
	    {"application/vnd.cncf.model.", true},
	};
	static const struct {
		const char *suffix;
		enum kiln_extract_filter filter;
	} suffixes[] = {
	    {"", KILN_EXTRACT_TAR},
	    {"+gzip", KILN_EXTRACT_GZIP},
	    {".gzip", KILN_EXTRACT_GZIP},
	    {"+zstd", KILN_EXTRACT_ZSTD},
	};
	if (media_type == NULL) {
		*out = KILN_EXTRACT_GZIP;
		return 0;
	}
	for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
		size_t plen = strlen(families[i].prefix);
		if (strncmp(media_type, families[i].prefix, plen) != 0)
			continue;
		const char *rest = media_type + plen;
		if (families[i].any_suffix) {
			/* "<kind>.v1.tar..." */
			const char *tar = strstr(rest, ".tar");
			if (tar == NULL || strchr(rest, '/') != NULL)
				return -1;
			rest = tar + strlen(".tar");
		}
		for (size_t j = 0; j < sizeof(suffixes) / sizeof(suffixes[0]); j++) {
			if (strcmp(rest, suffixes[j].suffix) == 0) {
				*out = suffixes[j].filter;
				return 0;
			}
		}
		return -1;
	}
	return -1;
}

bool kiln_unpack_media_type_ok(const char *media_type)
{
	enum kiln_extract_filter f;
	return media_type != NULL && layer_filter(media_type, &f) == 0;
}

int kiln_unpack_layer(struct kiln_store *s, const char *digest, const char *media_type, const char *dir,
                      const struct kiln_unpack_options *opt, struct kiln_unpack_stats *st,
                      struct kiln_error **err)
{
	struct kiln_extract_options xopt = {0};
	if (!kiln_digest_valid(digest))
		return kiln_error_set(err, KILN_EINVAL, "cannot unpack layer '%s': not a sha256 digest",
		                      digest);
	if (layer_filter(media_type, &xopt.filter) < 0)
		return kiln_error_set(err, KILN_EINVAL,
		                      "cannot unpack layer %s: its media type '%s' is not a tar layer's",
		                      digest, media_type);
	if (opt) {
		xopt.progress = opt->progress;
		xopt.progress_ctx = opt->progress_ctx;
		xopt.cancel = opt->cancel;
	}
	if (!kiln_store_blob_exists(s, digest))
		return kiln_error_set(err, KILN_ENOTFOUND, "layer %s is not in the store", digest);

	struct kiln_store_reader r;
	int rc = kiln_store_reader_open(&r, s, digest, err);
	if (rc < 0)
		return kiln_error_wrap(err, "cannot unpack layer %s", digest);
	/* A recipe's reader checks the digest of what it produces: no need to hash it twice. */
	if (r.recipe && strcmp(r.recipe->digest, digest) != 0) {
		rc = kiln_error_set(err, KILN_EIO,
		                    "cannot unpack layer %s: the store's recipe for it produces %s", digest,
		                    r.recipe->digest);
	} else {
		struct kiln_extract_stats xs = {0};
		rc = kiln_layer_extract(r.rd, r.recipe ? NULL : digest, dir, &xopt, &xs, err);
		if (rc < 0)
			kiln_error_wrap(err, "cannot unpack layer %s", digest);
		else if (st) {
			st->layers++;
			kiln_extract_stats_add(&st->sum, &xs);
		}
	}
	kiln_store_reader_release(&r);
	return rc;
}

/* The layer descriptors of the image manifest DIGEST (a new reference), each checked. */
static json_t *load_layers(struct kiln_store *s, const char *digest, struct kiln_error **err)
{
	json_t *m = NULL;
	if (kiln_store_json_read(s, digest, MANIFEST_MAX, &m, err) < 0) {
		kiln_error_wrap(err, "cannot unpack image %s", digest);
		return NULL;
	}
	const char *type = json_string_value(json_object_get(m, "mediaType"));
	json_t *layers = json_object_get(m, "layers");
	if (type && (strcmp(type, KILN_MEDIA_INDEX) == 0 || strcmp(type, KILN_MEDIA_DOCKER_LIST) == 0)) {
		kiln_error_set(err, KILN_EINVAL,
		               "cannot unpack image %s: it is an index, not an image manifest", digest);
		layers = NULL;
	} else if (!json_is_array(layers)) {
		kiln_error_set(err, KILN_EINVAL, "cannot unpack image %s: its manifest has no 'layers' array",
		               digest);
		layers = NULL;
	}
	size_t i;
	json_t *l;
	json_array_foreach(layers, i, l)
	{
		const char *d = json_string_value(json_object_get(l, "digest"));
		const char *t = json_string_value(json_object_get(l, "mediaType"));
		if (d == NULL || !kiln_digest_valid(d) || t == NULL) {
			kiln_error_set(
			    err, KILN_EINVAL,
			    "cannot unpack image %s: layer %zu has no valid 'digest' and 'mediaType'", digest,
			    i);
			layers = NULL;
			break;
		}
	}
	json_incref(layers);
	json_decref(m);
	return layers;
}

/* Remove the temporary directories that dead processes left for DIR (".BASE.unpack-PID-XXXXXX"). */
static void remove_stale(const char *parent, const char *base)
{
	_cleanup_closedir_ DIR *d = opendir(parent);
	_cleanup_free_ char *prefix = NULL;
	if (d == NULL || asprintf(&prefix, ".%s" TEMP_INFIX, base) < 0)
		return;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, prefix, strlen(prefix)) != 0)
			continue;
		char *end;
		long pid = strtol(de->d_name + strlen(prefix), &end, 10);
		if (pid <= 0 || *end != '-' || (kill((pid_t)pid, 0) == 0 || errno != ESRCH))
			continue;
		_cleanup_free_ char *path = kiln_path_join(parent, de->d_name);
		if (path)
			kiln_extract_remove(path, NULL);
	}
}

/* Make the temporary directory beside DIR, which must not exist. */
static int make_temp(char **out, const char *dir, struct kiln_error **err)
{
	_cleanup_free_ char *copy1 = strdup(dir);
	_cleanup_free_ char *copy2 = strdup(dir);
	if (copy1 == NULL || copy2 == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	const char *parent = dirname(copy1);
	const char *base = basename(copy2);
	if (strcmp(base, "/") == 0 || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
		return kiln_error_set(err, KILN_EINVAL, "cannot unpack into '%s': not a new directory's name",
		                      dir);
	struct stat st;
	if (lstat(dir, &st) == 0)
		return kiln_error_set(err, KILN_EINVAL, "cannot unpack into '%s': it already exists", dir);
	if (kiln_mkdir_p(parent, err) < 0)
		return kiln_error_wrap(err, "cannot unpack into '%s'", dir);
	remove_stale(parent, base);
	_cleanup_free_ char *tmp = NULL;
	if (asprintf(&tmp, "%s/.%s" TEMP_INFIX "%ld-XXXXXX", parent, base, (long)getpid()) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	if (mkdtemp(tmp) == NULL)
		return kiln_error_errno(err, errno, "cannot create a directory beside '%s'", dir);
	if (chmod(tmp, 0755) < 0) {
		int e = errno;
		rmdir(tmp);
		return kiln_error_errno(err, e, "cannot change the mode of '%s'", tmp);
	}
	*out = steal_pointer(&tmp);
	return 0;
}

/* Sync everything under TMP and rename it to DIR, which must still not exist. */
static int commit_dir(const char *tmp, const char *dir, struct kiln_error **err)
{
	_cleanup_close_ int fd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || syncfs(fd) < 0)
		return kiln_error_errno(err, errno, "cannot sync '%s'", tmp);
	int r = renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_NOREPLACE);
	if (r < 0 && (errno == EINVAL || errno == ENOSYS)) /* a filesystem without RENAME_NOREPLACE */
		r = rename(tmp, dir);
	if (r < 0)
		return errno == EEXIST || errno == ENOTEMPTY
		           ? kiln_error_set(err, KILN_EINVAL, "cannot unpack into '%s': it already exists",
		                            dir)
		           : kiln_error_errno(err, errno, "cannot rename '%s' to '%s'", tmp, dir);
	(void)kiln_fsync_parent(dir, NULL); /* DIR is complete now: failing to sync its name is no failure */
	return 0;
}

int kiln_unpack_image(struct kiln_store *s, const char *manifest_digest, size_t first_layer, const char *dir,
                      const struct kiln_unpack_options *opt, struct kiln_unpack_stats *st,
                      struct kiln_error **err)
{
	if (!kiln_digest_valid(manifest_digest))
		return kiln_error_set(err, KILN_EINVAL, "cannot unpack image '%s': not a sha256 digest",
		                      manifest_digest);
	json_t *layers = load_layers(s, manifest_digest, err);
	if (layers == NULL)
		return err && *err ? (*err)->code : KILN_EINVAL;
	int rc = 0;
	size_t n = json_array_size(layers);
	if (first_layer > n)
		rc = kiln_error_set(err, KILN_EINVAL,
		                    "cannot unpack image %s from layer %zu: it has %zu layers",
		                    manifest_digest, first_layer, n);
	for (size_t i = first_layer; rc == 0 && i < n; i++) {
		json_t *l = json_array_get(layers, i);
		const char *d = json_string_value(json_object_get(l, "digest"));
		const char *t = json_string_value(json_object_get(l, "mediaType"));
		if (!kiln_unpack_media_type_ok(t))
			rc = kiln_error_set(
			    err, KILN_EINVAL,
			    "cannot unpack layer %s: its media type '%s' is not a tar layer's", d, t);
		else if (!kiln_store_blob_exists(s, d))
			rc = kiln_error_set(err, KILN_ENOTFOUND, "layer %s is not in the store", d);
	}

	_cleanup_free_ char *tmp = NULL;
	struct kiln_unpack_stats sum = {0};
	if (rc == 0)
		rc = make_temp(&tmp, dir, err);
	for (size_t i = first_layer; rc == 0 && i < n; i++) {
		json_t *l = json_array_get(layers, i);
		if (opt && opt->place && (rc = opt->place(opt->ctx, i, l, tmp, err)) != 0)
			rc = rc > 0 ? 0 : rc;
		else
			rc = kiln_unpack_layer(s, json_string_value(json_object_get(l, "digest")),
			                       json_string_value(json_object_get(l, "mediaType")), tmp, opt,
			                       &sum, err);
	}
	if (rc == 0)
		rc = commit_dir(tmp, dir, err);
	if (rc < 0 && tmp)
		kiln_extract_remove(tmp, NULL);
	if (rc == 0 && st) {
		st->layers += sum.layers;
		kiln_extract_stats_add(&st->sum, &sum.sum);
	}
	json_decref(layers);
	return rc;
}

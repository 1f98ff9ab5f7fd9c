/* SPDX-License-Identifier: Apache-2.0 */
/* weights_registry.c: images whose weights stay in the registry (weights_registry.h). */
#include "pkg/weights_registry.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "layers/digest.h"
#include "layers/tar.h"
#include "pkg/weights_cache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

json_t *kiln_weights_registry_list(const struct kiln_plan *plan, const struct kiln_built_layer *mine)
{
	json_t *list = json_array();
	for (size_t i = 0; list && i < plan->nweights; i++) {
		const struct kiln_plan_file *f = &plan->weights[i];
		const struct kiln_built_layer *l = &mine[f->layer];
		if (strcmp(l->media_type, KILN_MEDIA_WEIGHT_RAW) != 0)
			continue;
		json_array_append_new(list, json_pack("{s:s+,s:s,s:I}", "path", "/src/", f->path, "digest",
		                                      l->digest, "size", (json_int_t)f->size));
	}
	return list;
}

int kiln_weights_links_layer(struct kiln_built_layer *out, struct kiln_store *s, const json_t *list,
                             int64_t mtime, struct kiln_error **err)
{
	size_t n = json_array_size(list);
	struct kiln_tar_entry *e = calloc(n + 1, sizeof(*e));
	_cleanup_free_ char *text = json_dumps(list, JSON_COMPACT | JSON_SORT_KEYS);
	_cleanup_free_ char *tmp = NULL, *ltmp = NULL;
	int fd = -1, lfd = -1, rc = -1;
	struct kiln_layer_out lout = {0};
	if (e == NULL || text == NULL) {
		rc = kiln_error_set(err, KILN_EFAIL, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		const json_t *w = json_array_get(list, i);
		e[i].type = KILN_TAR_SYMLINK;
		e[i].mode = 0777;
		if (asprintf(&e[i].name, "%s", json_string_value(json_object_get(w, "path")) + 1) < 0 ||
		    asprintf(&e[i].link_target, KILN_WEIGHTS_IMAGE_DIR "/sha256/%s",
		             json_string_value(json_object_get(w, "digest")) + 7) < 0) {
			e[i].name = e[i].link_target = NULL;
			rc = kiln_error_set(err, KILN_EFAIL, "out of memory");
			goto done;
		}
	}
	/* the list, a file of this build (the layer is compressed, so stored whole: the file may go after) */
	if (kiln_store_tmpfile(s, &fd, &tmp, err) < 0)
		goto done;
	struct stat st;
	if (kiln_write_all(fd, text, strlen(text)) < 0 || fstat(fd, &st) < 0) {
		rc = kiln_error_errno(err, errno, "cannot write the weights list");
		goto done;
	}
	e[n] = (struct kiln_tar_entry){.name = strdup(&KILN_WEIGHTS_LIST[1]),
	                               .type = KILN_TAR_FILE,
	                               .mode = 0644,
	                               .source = strdup(tmp),
	                               .size = (uint64_t)st.st_size};
	kiln_stat_fp_from(&e[n].fp, &st);
	if (e[n].name == NULL || e[n].source == NULL) {
		rc = kiln_error_set(err, KILN_EFAIL, "out of memory");
		goto done;
	}
	if (kiln_store_tmpfile(s, &lfd, &ltmp, err) < 0)
		goto done;
	struct kiln_layer_options lo = {.mtime = mtime, .fd = lfd, .compression = KILN_COMPRESS_GZIP};
	if (kiln_layer_write(&lout, e, n + 1, &lo, err) < 0) {
		kiln_error_wrap(err, "cannot write the weights' links layer");
		goto done;
	}
	rc = kiln_store_blob_commit(s, lfd, ltmp, lout.digest, err);
	lfd = -1;
	if (rc < 0)
		goto done;
	out->kind = KILN_LAYER_WEIGHTS;
	out->media_type = strdup(KILN_MEDIA_LAYER_GZIP);
	out->title = strdup("weights in the registry");
	memcpy(out->digest, lout.digest, KILN_DIGEST_LEN);
	memcpy(out->diff_id, lout.diff_id, KILN_DIGEST_LEN);
	out->size = lout.size;
	out->files = 1;
	if (out->media_type == NULL || out->title == NULL)
		rc = kiln_error_set(err, KILN_EFAIL, "out of memory");
done:
	kiln_layer_out_release(&lout);
	if (lfd >= 0) {
		close(lfd);
		unlink(ltmp);
	}
	if (fd >= 0) {
		close(fd);
		unlink(tmp);
	}
	for (size_t i = 0; e && i <= n; i++)
		kiln_tar_entry_release(&e[i]);
	free(e);
	return rc;
}

int kiln_weights_registry_of(json_t **out, const json_t *config, struct kiln_error **err)
{
	*out = NULL;
	const json_t *labels = json_object_get(json_object_get(config, "config"), "Labels");
	const char *mode = json_string_value(json_object_get(labels, KILN_LABEL_WEIGHTS_MODE));
	if (mode == NULL || strcmp(mode, "registry") != 0)
		return 0;
	const char *text = json_string_value(json_object_get(labels, KILN_LABEL_WEIGHTS));
	json_auto_t *w = text ? json_loads(text, 0, NULL) : NULL;
	if (!json_is_array(w))
		return kiln_error_set(err, KILN_EINVAL,
		                      "the image's label %s is 'registry' but its label %s is not a list of "
		                      "weights",
		                      KILN_LABEL_WEIGHTS_MODE, KILN_LABEL_WEIGHTS);
	/* from a registry, maybe anyone's: a path in the project (under /src), a digest, a size */
	json_auto_t *list = json_array();
	size_t i;
	json_t *f;
	json_array_foreach(w, i, f)
	{
		const char *path = json_string_value(json_object_get(f, "path"));
		json_t *e =
		    json_pack("{s:s+,s:O?,s:O?}", "path", "/src/", path && *path != '/' ? path : "/",
		              "digest", json_object_get(f, "layer"), "size", json_object_get(f, "size"));
		if (json_array_append_new(list, e) < 0)
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	_cleanup_free_ struct kiln_weight_blob *blobs = NULL;
	size_t n;
	uint64_t bytes;
	if (kiln_weights_list_blobs(list, "the image's label " KILN_LABEL_WEIGHTS, &blobs, &n, &bytes, err) <
	    0)
		return -1;
	*out = json_incref(list);
	return 0;
}

int kiln_weights_artifact(char **manifest_out, char **config_out, const json_t *list, const char *subject,
                          uint64_t subject_size, struct kiln_error **err)
{
	*manifest_out = *config_out = NULL;
	json_t *config = json_pack("{s:O}", "weights", (json_t *)list);
	char *ctext = config ? json_dumps(config, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(config);
	if (ctext == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	char cdigest[KILN_DIGEST_LEN];
	kiln_digest_buffer(cdigest, ctext, strlen(ctext));
	json_t *layers = json_array();
	size_t i;
	json_t *w;
	json_array_foreach(list, i, w)
	{
		json_array_append_new(
		    layers, json_pack("{s:s,s:O,s:O,s:{s:s}}", "mediaType", KILN_MEDIA_WEIGHT_RAW, "digest",
		                      json_object_get(w, "digest"), "size", json_object_get(w, "size"),
		                      "annotations", "org.opencontainers.image.title",
		                      json_string_value(json_object_get(w, "path"))));
	}
	json_t *m = json_pack("{s:i,s:s,s:s,s:{s:s,s:s,s:I},s:o,s:{s:s,s:s,s:I}}", "schemaVersion", 2,
	                      "mediaType", KILN_MEDIA_MANIFEST, "artifactType", KILN_MEDIA_WEIGHTS_ARTIFACT,
	                      "config", "mediaType", KILN_MEDIA_WEIGHTS_CONFIG, "digest", cdigest, "size",
	                      (json_int_t)strlen(ctext), "layers", layers, "subject", "mediaType",
	                      KILN_MEDIA_MANIFEST, "digest", subject, "size", (json_int_t)subject_size);
	char *mtext = m ? json_dumps(m, JSON_COMPACT) : NULL;
	json_decref(m);
	if (mtext == NULL) {
		free(ctext);
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	*manifest_out = mtext;
	*config_out = ctext;
	return 0;
}

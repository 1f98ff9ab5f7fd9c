/* SPDX-License-Identifier: Apache-2.0 */
/* pull.c: fetching manifests, configs and layers from registries into the store. */
#include "pkg/pull.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/pool.h"
#include "pkg/image.h"
#include "pkg/weights_registry.h"
#include "registry/reference.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

/* Download DIGEST (SIZE bytes, 0: not known) from REG/REPO into the store (verified by the client,
 * committed atomically). */
static int download(struct kiln_store *s, struct kiln_registry *reg, const char *repo, const char *digest,
                    uint64_t size, struct kiln_error **err)
{
	int fd;
	_cleanup_free_ char *tmp = NULL;
	if (kiln_store_tmpfile(s, &fd, &tmp, err) < 0)
		return -1;
	if (kiln_registry_blob_fetch(reg, repo, digest, size, fd, NULL, NULL, err) < 0) {
		close(fd);
		unlink(tmp);
		return -1;
	}
	return kiln_store_blob_commit(s, fd, tmp, digest, err);
}

static bool is_index(const char *media_type)
{
	return media_type &&
	       (strcmp(media_type, KILN_MEDIA_INDEX) == 0 || strcmp(media_type, KILN_MEDIA_DOCKER_LIST) == 0);
}

/* The descriptor of PLATFORM ("os/arch[/variant]") in an index. */
static json_t *pick_platform(json_t *index, const char *platform, const char *ref, struct kiln_error **err)
{
	char os[64] = "linux", arch[64] = "amd64", variant[64] = "";
	if (platform && sscanf(platform, "%63[^/]/%63[^/]/%63s", os, arch, variant) < 2) {
		kiln_error_set(err, KILN_EINVAL, "--platform '%s': expected OS/ARCH[/VARIANT]", platform);
		return NULL;
	}
	size_t i;
	json_t *d;
	json_array_foreach(json_object_get(index, "manifests"), i, d)
	{
		json_t *p = json_object_get(d, "platform");
		const char *dos = json_string_value(json_object_get(p, "os"));
		const char *darch = json_string_value(json_object_get(p, "architecture"));
		const char *dvar = json_string_value(json_object_get(p, "variant"));
		if (dos && darch && strcmp(dos, os) == 0 && strcmp(darch, arch) == 0 &&
		    (!*variant || (dvar && strcmp(dvar, variant) == 0)))
			return d;
	}
	kiln_error_set(err, KILN_ENOTFOUND, "'%s' has no image for %s/%s%s%s", ref, os, arch,
	               *variant ? "/" : "", variant);
	return NULL;
}

/* Store a fetched document as a blob, checking it has the digest it was fetched by. */
static int keep(struct kiln_store *s, const char *data, size_t len, const char *digest,
                struct kiln_error **err)
{
	char got[KILN_DIGEST_LEN];
	if (kiln_store_blob_put(s, data, len, got, err) < 0)
		return -1;
	if (strcmp(got, digest) != 0)
		return kiln_error_set(err, KILN_EIO, "the registry sent content with digest %s for %s", got,
		                      digest);
	return 0;
}

int kiln_remote_manifest_read(json_t **out, char **next, const char *data, size_t len, const char *mt,
                              const char *platform, const char *reference, struct kiln_error **err)
{
	*out = NULL;
	*next = NULL;
	json_t *doc = json_loadb(data, len, 0, NULL);
	if (is_index(mt)) {
		/* The entry's digest is copied out: it lives in DOC, which the caller never sees. */
		json_t *d = pick_platform(doc, platform, reference, err);
		const char *dd = json_string_value(json_object_get(d, "digest"));
		*next = dd ? strdup(dd) : NULL;
		json_decref(doc);
		if (d == NULL)
			return -1;
		if (dd == NULL)
			return kiln_error_set(err, KILN_EINVAL,
			                      "the entry for the platform in '%s' has no digest", reference);
		if (*next == NULL)
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
		return 0;
	}
	const char *cd = json_string_value(json_object_get(json_object_get(doc, "config"), "digest"));
	if (!json_is_array(json_object_get(doc, "layers")) || cd == NULL || !kiln_digest_valid(cd)) {
		json_decref(doc);
		return kiln_error_set(err, KILN_EINVAL, "'%s' is not an image manifest (media type %s)",
		                      reference, mt ? mt : "unknown");
	}
	size_t i;
	json_t *l;
	json_array_foreach(json_object_get(doc, "layers"), i, l)
	{
		const char *ld = json_string_value(json_object_get(l, "digest"));
		if (ld == NULL || !kiln_digest_valid(ld)) {
			json_decref(doc);
			return kiln_error_set(err, KILN_EINVAL, "layer %zu of '%s' has no valid digest", i,
			                      reference);
		}
	}
	*out = doc;
	return 0;
}

int kiln_remote_resolve(struct kiln_remote_image *out, struct kiln_store *s, const char *reference,
                        const char *platform, const struct kiln_registry_options *ropt,
                        struct kiln_error **err)
{
	memset(out, 0, sizeof(*out));
	struct kiln_reference *ref = NULL;
	struct kiln_registry *reg = NULL;
	char *data = NULL, *mt = NULL, *cpath = NULL, *pd = NULL;
	json_t *doc = NULL;
	size_t len = 0;
	char digest[KILN_DIGEST_LEN];
	int rc = -1;
	if (kiln_reference_parse(&ref, reference, err) < 0)
		return -1;
	out->reference = kiln_reference_string(ref);
	const char *tag = ref->digest ? ref->digest : ref->tag;
	if (kiln_registry_open(&reg, ref->registry, ropt, err) < 0 ||
	    kiln_registry_manifest_get(reg, ref->repository, tag, &data, &len, &mt, digest, err) < 0)
		goto cleanup;
	if (kiln_remote_manifest_read(&doc, &pd, data, len, mt, platform, reference, err) < 0)
		goto cleanup;
	if (pd) {
		free(data);
		free(mt);
		data = mt = NULL;
		if (kiln_registry_manifest_get(reg, ref->repository, pd, &data, &len, &mt, digest, err) < 0)
			goto cleanup;
		_cleanup_free_ char *again = NULL;
		if (kiln_remote_manifest_read(&doc, &again, data, len, mt, platform, reference, err) < 0)
			goto cleanup;
		if (again) {
			kiln_error_set(err, KILN_EINVAL, "'%s' is not an image manifest (media type %s)",
			               reference, mt ? mt : "unknown");
			goto cleanup;
		}
	}
	const char *cd = json_string_value(json_object_get(json_object_get(doc, "config"), "digest"));
	out->manifest = doc;
	doc = NULL;
	memcpy(out->manifest_digest, digest, KILN_DIGEST_LEN);
	out->manifest_size = len;
	out->media_type = mt;
	mt = NULL;
	if (keep(s, data, len, digest, err) < 0)
		goto cleanup;
	cpath = kiln_store_blob_path(s, cd);
	if (cpath == NULL && download(s, reg, ref->repository, cd, 0, err) < 0)
		goto cleanup;
	char *ctext = NULL;
	size_t clen = 0;
	if (kiln_store_blob_read(s, cd, &ctext, &clen, 16 << 20, err) < 0)
		goto cleanup;
	out->config = json_loadb(ctext, clen, 0, NULL);
	free(ctext);
	if (!json_is_object(out->config)) {
		kiln_error_set(err, KILN_EINVAL, "the config of '%s' is not a JSON object", reference);
		goto cleanup;
	}
	size_t i;
	json_t *l;
	json_array_foreach(json_object_get(out->manifest, "layers"), i, l)
	{
		const char *ld = json_string_value(json_object_get(l, "digest"));
		if (kiln_store_location_add(s, ld, ref->registry, ref->repository, err) < 0)
			goto cleanup;
	}
	rc = 0;
cleanup:
	if (rc < 0)
		kiln_remote_image_release(out);
	free(data);
	free(mt);
	free(cpath);
	free(pd);
	json_decref(doc);
	kiln_registry_free(reg);
	kiln_reference_free(ref);
	return rc;
}

void kiln_remote_image_release(struct kiln_remote_image *img)
{
	free(img->reference);
	free(img->media_type);
	json_decref(img->manifest);
	json_decref(img->config);
	memset(img, 0, sizeof(*img));
}

int kiln_fetch_blob(struct kiln_store *s, const char *digest, uint64_t size,
                    const struct kiln_registry_options *ropt, uint64_t *received, struct kiln_error **err)
{
	json_t *locs = kiln_store_locations(s, digest);
	size_t i;
	json_t *l;
	int rc = kiln_error_set(err, KILN_ENOTFOUND,
	                        "blob %s is not in the store and no registry is known to have it", digest);
	json_array_foreach(locs, i, l)
	{
		const char *host = json_string_value(json_object_get(l, "registry"));
		const char *repo = json_string_value(json_object_get(l, "repository"));
		struct kiln_registry *reg = NULL;
		if (host == NULL || repo == NULL)
			continue;
		if (err) {
			kiln_error_free(*err);
			*err = NULL;
		}
		rc = kiln_registry_open(&reg, host, ropt, err);
		if (rc == 0)
			rc = download(s, reg, repo, digest, size, err);
		kiln_registry_free(reg);
		if (rc == 0)
			break;
		kiln_error_wrap(err, "cannot fetch blob %s from %s/%s", digest, host, repo);
	}
	json_decref(locs);
	if (rc == 0 && received) {
		_cleanup_free_ char *path = kiln_store_blob_path(s, digest);
		struct stat st;
		if (path && stat(path, &st) == 0)
			*received += (uint64_t)st.st_size;
	}
	return rc;
}

/* Layers pulled at once. */
#define PULL_LAYERS_AT_ONCE 3

/* The layers of a pull the store lacks, fetched by kiln_pool_run's threads. */
struct layer_jobs {
	struct kiln_store *s;
	const struct kiln_registry_options *ropt;
	json_t **missing; /* their descriptors */
	uint64_t *received;
	size_t n;
	volatile sig_atomic_t stop;
};

static int fetch_layer(void *ctx, size_t i, struct kiln_error **err)
{
	struct layer_jobs *j = ctx;
	const json_t *l = j->missing[i];
	if (j->ropt && j->ropt->cancel && *j->ropt->cancel)
		return kiln_error_set(err, KILN_EINTR, "interrupted");
	return kiln_fetch_blob(j->s, json_string_value(json_object_get(l, "digest")),
	                       (uint64_t)json_integer_value(json_object_get(l, "size")), j->ropt,
	                       &j->received[i], err);
}

int kiln_pull(struct kiln_pull_result **out, struct kiln_store *s, const char *reference,
              const char *platform, const struct kiln_registry_options *ropt, struct kiln_error **err)
{
	double t0 = kiln_monotonic();
	struct kiln_remote_image img;
	struct kiln_reference *ref = NULL;
	struct kiln_pull_result *r = calloc(1, sizeof(*r));
	_cleanup_free_ char *name = NULL;
	struct layer_jobs jobs = {0};
	json_t *remote = NULL;
	if (r == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	int rc = -1;
	if (kiln_reference_parse(&ref, reference, err) < 0) {
		free(r);
		return -1;
	}
	if (kiln_remote_resolve(&img, s, reference, platform, ropt, err) < 0)
		goto cleanup_ref;
	r->reference = kiln_reference_string(ref);
	r->familiar = kiln_reference_familiar(ref);
	memcpy(r->manifest_digest, img.manifest_digest, KILN_DIGEST_LEN);
	json_t *layers = json_object_get(img.manifest, "layers");
	r->layers = json_array_size(layers);
	/* serve.weights: registry: the weight blobs, in the same repository, come too */
	if (kiln_weights_registry_of(&remote, img.config, err) < 0)
		goto cleanup;
	r->weights = json_array_size(remote);
	jobs.s = s;
	jobs.ropt = ropt;
	jobs.missing = calloc(r->layers + r->weights + 1, sizeof(*jobs.missing));
	jobs.received = calloc(r->layers + r->weights + 1, sizeof(*jobs.received));
	if (!jobs.missing || !jobs.received) {
		kiln_error_set(err, KILN_EFAIL, "out of memory");
		goto cleanup;
	}
	size_t i;
	json_t *l;
	json_array_foreach(layers, i, l)
	{
		_cleanup_free_ char *have =
		    kiln_store_blob_path(s, json_string_value(json_object_get(l, "digest")));
		if (!have)
			jobs.missing[jobs.n++] = l;
	}
	json_array_foreach(remote, i, l)
	{
		const char *wd = json_string_value(json_object_get(l, "digest"));
		_cleanup_free_ char *have = kiln_store_blob_path(s, wd);
		if (!have && kiln_store_location_add(s, wd, ref->registry, ref->repository, err) < 0)
			goto cleanup;
		if (!have)
			jobs.missing[jobs.n++] = l;
	}
	/* the layers the store lacks, a few at once (each large one in parts: kiln_registry_blob_fetch) */
	if (kiln_pool_run(jobs.n, PULL_LAYERS_AT_ONCE, fetch_layer, &jobs, &jobs.stop, err) < 0)
		goto cleanup;
	for (i = 0; i < jobs.n; i++)
		r->bytes_received += jobs.received[i];
	r->fetched = jobs.n;
	/* Tag it by the name it was pulled by (a digest reference is kept under its repository alone). */
	if (ref->tag)
		name = kiln_reference_string(ref);
	else if (asprintf(&name, "%s/%s@%s", ref->registry, ref->repository, ref->digest) < 0)
		name = NULL;
	if (name == NULL ||
	    kiln_store_tag(s, name, img.manifest_digest, img.manifest_size, img.media_type, err) < 0)
		goto cleanup;
	r->seconds = kiln_monotonic() - t0;
	*out = r;
	r = NULL;
	rc = 0;
cleanup:
	free(jobs.missing);
	free(jobs.received);
	json_decref(remote);
	kiln_remote_image_release(&img);
cleanup_ref:
	kiln_reference_free(ref);
	kiln_pull_result_free(r);
	if (rc < 0)
		kiln_error_wrap(err, "cannot pull '%s'", reference);
	return rc;
}

void kiln_pull_result_free(struct kiln_pull_result *r)
{
	if (r == NULL)
		return;
	free(r->reference);
	free(r->familiar);
	free(r);
}

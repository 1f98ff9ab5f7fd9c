/* SPDX-License-Identifier: Apache-2.0 */
/* push.c: push an image from the store, blob by blob, several at once, then its manifest. */
#include "pkg/push.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/pool.h"
#include "layers/reader.h"
#include "pkg/image.h"
#include "pkg/weights_registry.h"
#include "registry/reference.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

const char *kiln_blob_action_name(enum kiln_blob_action a)
{
	switch (a) {
	case KILN_BLOB_UPLOADED:
		return "uploaded";
	case KILN_BLOB_EXISTS:
		return "exists";
	case KILN_BLOB_MOUNTED:
		return "mounted";
	case KILN_BLOB_COPIED:
		return "copied";
	}
	return "?";
}

struct push {
	struct kiln_store *store;
	struct kiln_registry *target;
	const struct kiln_reference *ref;
	const struct kiln_push_options *opt;
	struct kiln_pushed_blob *blobs;
	size_t first; /* of the blobs being pushed */
	atomic_uint_least64_t sent;
	uint64_t total;
	volatile sig_atomic_t stop;
};

/* A blob source over a store reader. */
static int reader_seek(void *ctx, uint64_t offset, struct kiln_error **err)
{
	struct kiln_store_reader *r = ctx;
	return kiln_blob_reader_seek(r->rd, offset, err);
}

static ssize_t reader_read(void *ctx, void *buf, size_t len, struct kiln_error **err)
{
	struct kiln_store_reader *r = ctx;
	return kiln_blob_reader_read(r->rd, buf, len, err);
}

struct progress {
	struct push *p;
	const struct kiln_pushed_blob *b;
	uint64_t last;
};

static void on_upload_progress(void *ctx, uint64_t done)
{
	struct progress *pr = ctx;
	uint64_t delta = done > pr->last ? done - pr->last : 0;
	pr->last = done;
	uint64_t total = atomic_fetch_add(&pr->p->sent, delta) + delta;
	if (pr->p->opt->on_bytes)
		pr->p->opt->on_bytes(pr->p->opt->ctx, total, pr->p->total);
	if (pr->p->opt->on_blob_bytes)
		pr->p->opt->on_blob_bytes(pr->p->opt->ctx, pr->b, done);
}

/*
 * A blob source that streams a blob from another registry (registry-to-registry copy, nothing written to
 * disk): a thread downloads into a socket pair, the upload reads from it. Seeking starts the download
 * again and skips to the offset.
 */
struct copy_source {
	struct kiln_registry *from;
	const char *repo;
	const char *digest;
	pthread_t thread;
	bool running;
	int fds[2];
	int rc;
	struct kiln_error *err;
};

static int sock_write(void *ctx, const void *data, size_t len, struct kiln_error **err)
{
	int fd = *(int *)ctx;
	const char *p = data;
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return kiln_error_errno(err, errno, "copy stopped");
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void *copy_thread(void *arg)
{
	struct copy_source *c = arg;
	c->rc = kiln_registry_blob_get(c->from, c->repo, c->digest, sock_write, &c->fds[1], &c->err);
	close(c->fds[1]);
	return NULL;
}

static void copy_stop(struct copy_source *c)
{
	if (!c->running)
		return;
	close(c->fds[0]); /* the download fails with EPIPE and ends */
	pthread_join(c->thread, NULL);
	kiln_error_free(c->err);
	c->err = NULL;
	c->running = false;
}

static ssize_t copy_read(void *ctx, void *buf, size_t len, struct kiln_error **err)
{
	struct copy_source *c = ctx;
	if (!c->running)
		return 0;
	ssize_t n;
	do
		n = read(c->fds[0], buf, len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return kiln_error_errno(err, errno, "cannot read blob %s from its registry", c->digest);
	if (n == 0) {
		pthread_join(c->thread, NULL);
		close(c->fds[0]);
		c->running = false;
		if (c->rc < 0) {
			if (err) {
				kiln_error_free(*err);
				*err = c->err;
			} else {
				kiln_error_free(c->err);
			}
			c->err = NULL;
			return c->rc;
		}
	}
	return n;
}

static int copy_seek(void *ctx, uint64_t offset, struct kiln_error **err)
{
	struct copy_source *c = ctx;
	copy_stop(c);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, c->fds) < 0)
		return kiln_error_errno(err, errno, "cannot copy blob %s", c->digest);
	c->rc = 0;
	if (pthread_create(&c->thread, NULL, copy_thread, c) != 0) {
		close(c->fds[0]);
		close(c->fds[1]);
		return kiln_error_set(err, KILN_EFAIL, "cannot start copying blob %s", c->digest);
	}
	c->running = true;
	char buf[1 << 16];
	while (offset > 0) {
		ssize_t n = copy_read(c, buf, offset < sizeof(buf) ? (size_t)offset : sizeof(buf), err);
		if (n < 0)
			return (int)n;
		if (n == 0)
			return kiln_error_set(err, KILN_EIO, "blob %s ended early", c->digest);
		offset -= (uint64_t)n;
	}
	return 0;
}

/*
 * Copy the blob from REPO in REG, another registry known to hold it, straight to the target. *done when
 * it did; any failure is returned.
 */
static int try_copy(struct push *p, struct kiln_pushed_blob *b, const char *reg, const char *repo, bool *done,
                    struct kiln_error **err)
{
	struct copy_source c = {.repo = repo, .digest = b->digest};
	int rc = kiln_registry_open(&c.from, reg, p->opt->registry, err);
	if (rc < 0)
		return rc;
	struct kiln_blob_source src = {.size = b->size, .seek = copy_seek, .read = copy_read, .ctx = &c};
	memcpy(src.digest, b->digest, KILN_DIGEST_LEN);
	struct progress pr = {p, b, 0};
	rc = copy_seek(&c, 0, err);
	if (rc == 0)
		rc = kiln_registry_blob_upload(p->target, p->ref->repository, &src, on_upload_progress, &pr,
		                               &b->bytes_sent, err);
	copy_stop(&c);
	kiln_registry_free(c.from);
	*done = rc == 0;
	return rc;
}

/*
 * Put the blob at the target from a location the store knows holds it, by HOW. KILN_BLOB_MOUNTED: mount
 * it from another repository of the target registry, trying each in turn until one mounts it.
 * KILN_BLOB_COPIED: copy it from the first other registry (try_copy; its failure is returned, no other
 * registry is tried). *done when the blob is there; b->action and b->from then say how and from where.
 */
static int try_locations(struct push *p, struct kiln_pushed_blob *b, enum kiln_blob_action how, bool *done,
                         struct kiln_error **err)
{
	bool mount = how == KILN_BLOB_MOUNTED;
	json_t *locs = kiln_store_locations(p->store, b->digest);
	size_t i;
	json_t *l;
	int rc = 0;
	*done = false;
	json_array_foreach(locs, i, l)
	{
		const char *reg = json_string_value(json_object_get(l, "registry"));
		const char *repo = json_string_value(json_object_get(l, "repository"));
		if (!reg || !repo)
			continue;
		bool same_registry = strcmp(reg, p->ref->registry) == 0;
		if (mount ? !same_registry || strcmp(repo, p->ref->repository) == 0 : same_registry)
			continue;
		bool there = false;
		if (mount)
			rc = kiln_registry_blob_mount(p->target, p->ref->repository, repo, b->digest, &there,
			                              err);
		else
			rc = try_copy(p, b, reg, repo, &there, err);
		if (rc < 0)
			break;
		if (there) {
			b->action = how;
			if (asprintf(&b->from, "%s/%s", reg, repo) < 0)
				b->from = NULL;
			*done = true;
			break;
		}
	}
	json_decref(locs);
	return rc;
}

/* Put one blob at the target: exists, mounted, or uploaded from the store. */
static int push_blob(struct push *p, struct kiln_pushed_blob *b, struct kiln_error **err)
{
	bool exists = false, done = false;
	const char *repo = p->ref->repository;
	if (kiln_registry_blob_exists(p->target, repo, b->digest, &exists, err) < 0)
		return -1;
	if (exists) {
		b->action = KILN_BLOB_EXISTS;
	} else {
		if (try_locations(p, b, KILN_BLOB_MOUNTED, &done, err) < 0)
			return -1;
		if (!done && !kiln_store_blob_exists(p->store, b->digest)) {
			if (try_locations(p, b, KILN_BLOB_COPIED, &done, err) < 0)
				return -1;
			if (!done)
				return kiln_error_set(
				    err, KILN_ENOTFOUND,
				    "blob %s is not in the store and no registry is known to have it",
				    b->digest);
		}
		if (!done) {
			struct kiln_store_reader r;
			if (kiln_store_reader_open(&r, p->store, b->digest, err) < 0)
				return -1;
			struct kiln_blob_source src = {
			    .size = b->size, .seek = reader_seek, .read = reader_read, .ctx = &r};
			memcpy(src.digest, b->digest, KILN_DIGEST_LEN);
			struct progress pr = {p, b, 0};
			int rc = kiln_registry_blob_upload(p->target, repo, &src, on_upload_progress, &pr,
			                                   &b->bytes_sent, err);
			kiln_store_reader_release(&r);
			if (rc < 0)
				return rc;
			b->action = KILN_BLOB_UPLOADED;
		}
	}
	return kiln_store_location_add(p->store, b->digest, p->ref->registry, repo, err);
}

static int pool_job(void *ctx, size_t i, struct kiln_error **err)
{
	struct push *p = ctx;
	struct kiln_pushed_blob *b = &p->blobs[p->first + i];
	if (p->opt->cancel && *p->opt->cancel)
		return kiln_error_set(err, KILN_EINTR, "interrupted");
	if (push_blob(p, b, err) < 0)
		return kiln_error_wrap(err, "cannot push %s %s", b->what, b->digest);
	if (p->opt->on_blob)
		p->opt->on_blob(p->opt->ctx, b);
	return 0;
}

/* Push blobs [first, first + n) with opt->jobs threads. */
static int push_blobs(struct push *p, size_t first, size_t n, struct kiln_error **err)
{
	p->first = first;
	size_t nthreads = p->opt->jobs > 0 ? (size_t)p->opt->jobs : 4;
	int rc = kiln_pool_run(n, nthreads, pool_job, p, &p->stop, err);
	if (rc < 0)
		return rc;
	if (p->opt->cancel && *p->opt->cancel)
		return kiln_error_set(err, KILN_EINTR, "interrupted");
	return 0;
}

/* The manifest's blobs: every layer, then the config (pushed before the manifest that names them). */
static int list_blobs(struct kiln_push_result *r, const char *manifest, size_t len, struct kiln_error **err)
{
	json_t *m = json_loadb(manifest, len, 0, NULL);
	json_t *layers = json_object_get(m, "layers");
	json_t *config = json_object_get(m, "config");
	if (!json_is_array(layers) || !json_is_object(config)) {
		json_decref(m);
		return kiln_error_set(err, KILN_EIO, "manifest %s in the store is not an image manifest",
		                      r->manifest_digest);
	}
	r->n = json_array_size(layers) + 1;
	r->blobs = calloc(r->n, sizeof(*r->blobs));
	if (r->blobs == NULL) {
		json_decref(m);
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	for (size_t i = 0; i < r->n; i++) {
		json_t *d = i + 1 < r->n ? json_array_get(layers, i) : config;
		const char *dg = json_string_value(json_object_get(d, "digest"));
		if (dg == NULL || !kiln_digest_valid(dg)) {
			json_decref(m);
			return kiln_error_set(err, KILN_EIO, "manifest %s has a bad digest",
			                      r->manifest_digest);
		}
		memcpy(r->blobs[i].digest, dg, KILN_DIGEST_LEN);
		r->blobs[i].size = (uint64_t)json_integer_value(json_object_get(d, "size"));
		r->blobs[i].what = i + 1 < r->n ? "layer" : "config";
	}
	json_decref(m);
	return 0;
}

/*
 * serve.weights: registry: the image's weight blobs join its blobs (before the config, the last), and the
 * artifact that carries them is made (its config put in the store, its manifest into *ARTIFACT). Nothing
 * for an image whose weights are layers.
 */
static int add_weight_blobs(struct kiln_push_result *r, struct kiln_store *s, const char *manifest,
                            size_t mlen, char **artifact, struct kiln_error **err)
{
	json_t *m = json_loadb(manifest, mlen, 0, NULL);
	const char *cd = json_string_value(json_object_get(json_object_get(m, "config"), "digest"));
	json_t *config = NULL;
	int rc = cd ? kiln_store_json_read(s, cd, 16 << 20, &config, err) : 0;
	json_decref(m);
	if (rc < 0)
		return rc;
	json_t *list = NULL;
	rc = kiln_weights_registry_of(&list, config, err);
	json_decref(config);
	if (rc < 0 || list == NULL)
		return rc;
	_cleanup_free_ char *aconfig = NULL;
	char adigest[KILN_DIGEST_LEN];
	size_t nw = json_array_size(list);
	struct kiln_pushed_blob *blobs = realloc(r->blobs, (r->n + nw + 1) * sizeof(*blobs));
	if (blobs == NULL) {
		json_decref(list);
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	r->blobs = blobs;
	if ((rc = kiln_weights_artifact(artifact, &aconfig, list, r->manifest_digest, mlen, err)) < 0 ||
	    (rc = kiln_store_blob_put(s, aconfig, strlen(aconfig), adigest, err)) < 0) {
		json_decref(list);
		return rc;
	}
	/* the image's config stays last; the weights and the artifact's config go before it */
	struct kiln_pushed_blob cfg = blobs[r->n - 1];
	size_t at = r->n - 1;
	for (size_t i = 0; i < nw; i++) {
		const json_t *w = json_array_get(list, i);
		blobs[at + i] = (struct kiln_pushed_blob){
		    .size = (uint64_t)json_integer_value(json_object_get(w, "size")), .what = "weights"};
		snprintf(blobs[at + i].digest, KILN_DIGEST_LEN, "%s",
		         json_string_value(json_object_get(w, "digest")));
	}
	blobs[at + nw] = (struct kiln_pushed_blob){.size = strlen(aconfig), .what = "weights config"};
	memcpy(blobs[at + nw].digest, adigest, KILN_DIGEST_LEN);
	r->n += nw + 1;
	blobs[r->n - 1] = cfg;
	json_decref(list);
	return 0;
}

/*
 * The referrers tag schema (OCI distribution-spec 1.1, for registries without the referrers API): the
 * index at tag sha256-<hex> of the image lists the artifact ARTIFACT (DIGEST) that refers to it.
 */
static int put_referrer(struct kiln_registry *reg, const char *repo, const char *subject,
                        const char *artifact, const char *digest, struct kiln_error **err)
{
	char tag[80];
	snprintf(tag, sizeof(tag), "sha256-%s", kiln_digest_hex(subject));
	_cleanup_free_ char *data = NULL, *mt = NULL;
	size_t len = 0;
	char got[KILN_DIGEST_LEN];
	json_t *index = NULL;
	int rc = kiln_registry_manifest_get(reg, repo, tag, &data, &len, &mt, got, err);
	if (rc == KILN_ENOTFOUND) {
		kiln_error_free(*err);
		*err = NULL;
		index = json_pack("{s:i,s:s,s:[]}", "schemaVersion", 2, "mediaType", KILN_MEDIA_INDEX,
		                  "manifests");
	} else if (rc < 0) {
		return rc;
	} else if ((index = json_loadb(data, len, 0, NULL)) == NULL ||
	           !json_is_array(json_object_get(index, "manifests"))) {
		json_decref(index);
		return kiln_error_set(err, KILN_EIO, "%s:%s is not an image index", repo, tag);
	}
	json_t *ms = json_object_get(index, "manifests");
	size_t i;
	json_t *d;
	json_array_foreach(ms, i, d)
	{
		if (strcmp(json_string_value(json_object_get(d, "digest")) ?: "", digest) == 0) {
			json_decref(index);
			return 0; /* listed already */
		}
	}
	json_array_append_new(ms, json_pack("{s:s,s:s,s:I,s:s}", "mediaType", KILN_MEDIA_MANIFEST, "digest",
	                                    digest, "size", (json_int_t)strlen(artifact), "artifactType",
	                                    KILN_MEDIA_WEIGHTS_ARTIFACT));
	_cleanup_free_ char *text = json_dumps(index, JSON_COMPACT);
	json_decref(index);
	if (text == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	return kiln_registry_manifest_put(reg, repo, tag, KILN_MEDIA_INDEX, text, strlen(text), got, err);
}

int kiln_push(struct kiln_push_result **out, struct kiln_store *s, const struct kiln_push_options *opt,
              struct kiln_error **err)
{
	double t0 = kiln_monotonic();
	struct kiln_reference *src = NULL, *dst = NULL;
	struct kiln_push_result *r = calloc(1, sizeof(*r));
	struct push p = {.store = s, .opt = opt};
	_cleanup_free_ char *manifest = NULL, *src_full = NULL, *artifact = NULL;
	size_t mlen = 0;
	int rc = -1;
	if (r == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	if (kiln_reference_parse(&src, opt->image, err) < 0 ||
	    kiln_reference_parse(&dst, opt->target ? opt->target : opt->image, err) < 0)
		goto cleanup;
	if (dst->tag == NULL) {
		kiln_error_set(err, KILN_EINVAL, "cannot push to '%s': a push needs a tag, not only a digest",
		               opt->target ? opt->target : opt->image);
		goto cleanup;
	}
	src_full = kiln_reference_string(src);
	r->reference = kiln_reference_string(dst);
	r->familiar = kiln_reference_familiar(dst);
	if (kiln_store_resolve(s, src_full, r->manifest_digest, err) < 0 ||
	    kiln_store_blob_read(s, r->manifest_digest, &manifest, &mlen, 4 << 20, err) < 0 ||
	    list_blobs(r, manifest, mlen, err) < 0 ||
	    add_weight_blobs(r, s, manifest, mlen, &artifact, err) < 0)
		goto cleanup;
	if (kiln_registry_open(&p.target, dst->registry, opt->registry, err) < 0)
		goto cleanup;
	p.ref = dst;
	p.blobs = r->blobs;
	for (size_t i = 0; i < r->n; i++)
		p.total += r->blobs[i].size;
	/* the layers, several at once; then the config, which the registry may check them against */
	if (push_blobs(&p, 0, r->n - 1, err) < 0 || push_blobs(&p, r->n - 1, 1, err) < 0)
		goto cleanup;
	char pushed[KILN_DIGEST_LEN];
	if (kiln_registry_manifest_put(p.target, dst->repository, dst->tag, KILN_MEDIA_MANIFEST, manifest,
	                               mlen, pushed, err) < 0)
		goto cleanup;
	if (strcmp(pushed, r->manifest_digest) != 0) {
		kiln_error_set(err, KILN_EIO, "the registry holds manifest %s, not %s", pushed,
		               r->manifest_digest);
		goto cleanup;
	}
	/* the weights' artifact, by digest, and the referrers tag that finds it from the image */
	if (artifact) {
		char adigest[KILN_DIGEST_LEN];
		kiln_digest_buffer(adigest, artifact, strlen(artifact));
		if (kiln_registry_manifest_put(p.target, dst->repository, adigest, KILN_MEDIA_MANIFEST,
		                               artifact, strlen(artifact), adigest, err) < 0 ||
		    put_referrer(p.target, dst->repository, r->manifest_digest, artifact, adigest, err) < 0) {
			kiln_error_wrap(err, "the weights' artifact");
			goto cleanup;
		}
		mlen += strlen(artifact);
	}
	r->bytes_sent = p.sent + mlen;
	r->seconds = kiln_monotonic() - t0;
	*out = r;
	r = NULL;
	rc = 0;
cleanup:
	if (rc < 0) {
		if (err && *err)
			rc = (*err)->code;
		kiln_error_wrap(err, "cannot push '%s'", opt->target ? opt->target : opt->image);
	}
	kiln_registry_free(p.target);
	kiln_reference_free(src);
	kiln_reference_free(dst);
	kiln_push_result_free(r);
	return rc;
}

void kiln_push_result_free(struct kiln_push_result *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++)
		free(r->blobs[i].from);
	free(r->blobs);
	free(r->reference);
	free(r->familiar);
	free(r);
}

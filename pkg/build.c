/* SPDX-License-Identifier: Apache-2.0 */
/* build.c: the build pipeline: plan, layers in parallel through the layer cache, image, store. */
#include "pkg/build.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/pool.h"
#include "pkg/base.h"
#include "pkg/pip.h"
#include "pkg/plan.h"
#include "pkg/runtime.h"
#include "pkg/schema.h"
#include "pkg/source.h"
#include "pkg/weights_registry.h"
#include "registry/reference.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Bump when the bytes kiln writes for the same inputs change, so old cache entries are not reused. */
#define LAYER_FORMAT "kiln-layer-v1"

struct job {
	const struct kiln_plan_layer *pl;
	struct kiln_built_layer *out;
	char key[65];
};

struct pool {
	struct kiln_store *store;
	const struct kiln_build_options *opt;
	int64_t mtime;
	struct job *jobs;
	size_t njobs;
	atomic_uint_least64_t read;
	atomic_uint_least64_t written;
	uint64_t to_read;
	volatile sig_atomic_t
	    stop; /* set on the first failure or an interruption: layers being written stop */
};

int kiln_build_epoch(int64_t *out, struct kiln_error **err)
{
	const char *s = getenv("SOURCE_DATE_EPOCH");
	*out = 0;
	if (s == NULL || *s == '\0')
		return 0;
	char *end = NULL;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end || v < 0 || v > 253402300799LL)
		return kiln_error_set(err, KILN_EINVAL, "SOURCE_DATE_EPOCH: '%s' is not a number of seconds",
		                      s);
	*out = v;
	return 0;
}

/* The layer cache key: everything that decides the layer's bytes, including each source file's
 * stat fingerprint. Equal keys mean the layer need not be read again. */
static void layer_key(char out[65], const struct kiln_plan_layer *pl, int64_t mtime)
{
	_cleanup_buf_ struct kiln_buf b = KILN_BUF_INIT;
	kiln_buf_printf(&b, "%s\n%d\n%lld\n", LAYER_FORMAT, (int)pl->compression, (long long)mtime);
	for (size_t i = 0; i < pl->n; i++) {
		const struct kiln_tar_entry *e = &pl->entries[i];
		kiln_buf_printf(&b, "%d %o %s", (int)e->type, (unsigned)e->mode, e->name);
		kiln_buf_put(&b, "", 1);
		kiln_buf_puts(&b, e->link_target ? e->link_target : "");
		kiln_buf_put(&b, "", 1);
		kiln_buf_puts(&b, e->source ? e->source : "");
		kiln_buf_put(&b, "", 1);
		kiln_buf_printf(&b, "%llu %llu %llu %lld %lld\n", (unsigned long long)e->size,
		                (unsigned long long)e->fp.dev, (unsigned long long)e->fp.ino,
		                (long long)e->fp.mtime_ns, (long long)e->fp.ctime_ns);
	}
	char d[KILN_DIGEST_LEN];
	kiln_digest_buffer(d, b.ptr, b.len);
	memcpy(out, kiln_digest_hex(d), 65);
}

static void on_progress(void *ctx, uint64_t n)
{
	struct pool *p = ctx;
	uint64_t total = atomic_fetch_add(&p->read, n) + n;
	if (p->opt->cancel && *p->opt->cancel)
		p->stop = 1;
	if (p->opt->on_bytes)
		p->opt->on_bytes(p->opt->ctx, total, p->to_read);
}

/* Reuse a cached layer when its blob is still in the store. */
static bool from_cache(struct pool *p, struct job *j)
{
	json_t *c = kiln_store_cache_get(p->store, j->key);
	const char *digest = json_string_value(json_object_get(c, "digest"));
	const char *diff_id = json_string_value(json_object_get(c, "diff_id"));
	json_t *size = json_object_get(c, "size");
	bool ok = digest && diff_id && json_is_integer(size) && kiln_digest_valid(digest) &&
	          kiln_digest_valid(diff_id) && kiln_store_blob_exists(p->store, digest);
	if (ok) {
		snprintf(j->out->digest, KILN_DIGEST_LEN, "%s", digest);
		snprintf(j->out->diff_id, KILN_DIGEST_LEN, "%s", diff_id);
		j->out->size = (uint64_t)json_integer_value(size);
		j->out->cached = true;
	}
	json_decref(c);
	return ok;
}

/* Build one layer: a recipe for an uncompressed layer, a blob in the store for a compressed one. */
static int run_job(struct pool *p, struct job *j, struct kiln_error **err)
{
	const struct kiln_plan_layer *pl = j->pl;
	int64_t mtime = pl->fixed_mtime ? 0 : p->mtime;
	layer_key(j->key, pl, mtime);
	if (from_cache(p, j))
		return 0;
	struct kiln_layer_options lo = {
	    .mtime = mtime,
	    .fd = -1,
	    .compression = pl->compression,
	    .progress = on_progress,
	    .progress_ctx = p,
	    .cancel = &p->stop,
	};
	_cleanup_free_ char *tmp = NULL;
	struct kiln_layer_out lout = {0};
	if (pl->compression != KILN_COMPRESS_NONE && kiln_store_tmpfile(p->store, &lo.fd, &tmp, err) < 0)
		return -1;
	int rc = kiln_layer_write(&lout, pl->entries, pl->n, &lo, err);
	if (rc < 0) {
		if (lo.fd >= 0) {
			close(lo.fd);
			unlink(tmp);
		}
		return kiln_error_wrap(err, "cannot write layer '%s'", pl->title);
	}
	if (lo.fd >= 0) {
		rc = kiln_store_blob_commit(p->store, lo.fd, tmp, lout.digest, err);
		atomic_fetch_add(&p->written, lout.size);
	} else if (lout.recipe) {
		rc = kiln_store_recipe_put(p->store, lout.recipe, err);
		atomic_fetch_add(&p->written, 512 * (lout.recipe->nsegs + 1));
	}
	if (rc == 0) {
		json_t *c = json_pack("{s:s,s:s,s:I}", "digest", lout.digest, "diff_id", lout.diff_id, "size",
		                      (json_int_t)lout.size);
		rc = kiln_store_cache_put(p->store, j->key, c, err);
		json_decref(c);
	}
	memcpy(j->out->digest, lout.digest, KILN_DIGEST_LEN);
	memcpy(j->out->diff_id, lout.diff_id, KILN_DIGEST_LEN);
	j->out->size = lout.size;
	j->out->bytes_read = lout.bytes_read;
	kiln_layer_out_release(&lout);
	return rc;
}

/* One job of the pool: build a layer and report it. */
static int pool_job(void *ctx, size_t i, struct kiln_error **err)
{
	struct pool *p = ctx;
	if (run_job(p, &p->jobs[i], err) < 0)
		return (*err)->code;
	if (p->opt->on_layer)
		p->opt->on_layer(p->opt->ctx, p->jobs[i].out);
	return 0;
}

static int by_bytes_desc(const void *a, const void *b)
{
	const struct job *x = a, *y = b;
	return x->pl->bytes == y->pl->bytes ? 0 : x->pl->bytes < y->pl->bytes ? 1 : -1;
}

/* Build every layer of the plan into OUT (nlayers entries), several at once. */
static int build_layers(struct kiln_built_layer *out, const struct kiln_plan *plan, struct kiln_store *s,
                        const struct kiln_build_options *opt, int64_t mtime, uint64_t *read,
                        uint64_t *written, struct kiln_error **err)
{
	struct pool p = {.store = s, .opt = opt, .mtime = mtime, .njobs = plan->n};
	p.jobs = calloc(plan->n, sizeof(*p.jobs));
	if (p.jobs == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	for (size_t i = 0; i < plan->n; i++) {
		p.jobs[i].pl = &plan->layers[i];
		p.jobs[i].out = &out[i];
		p.to_read += plan->layers[i].bytes;
	}
	qsort(p.jobs, p.njobs, sizeof(*p.jobs), by_bytes_desc);
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	size_t nthreads = opt->jobs > 0 ? (size_t)opt->jobs : (size_t)(ncpu > 0 ? (ncpu < 8 ? ncpu : 8) : 2);
	int rc = kiln_pool_run(p.njobs, nthreads, pool_job, &p, &p.stop, err);
	free(p.jobs);
	*read = p.read;
	*written = p.written;
	if (rc < 0)
		return rc;
	if (opt->cancel && *opt->cancel)
		return kiln_error_set(err, KILN_EINTR, "interrupted");
	return 0;
}

/* "My Model_2" → "my-model_2": a repository name from a directory name. */
static char *repo_from_dir(const char *dir)
{
	char real[PATH_MAX];
	const char *path = realpath(dir, real) ? real : dir;
	_cleanup_free_ char *copy = strdup(path);
	if (copy == NULL)
		return NULL;
	const char *name = basename(copy);
	struct kiln_buf b = KILN_BUF_INIT;
	for (const char *c = name; *c; c++) {
		unsigned char ch = (unsigned char)tolower((unsigned char)*c);
		bool ok = isalnum(ch) || ch == '_' || ch == '.' || ch == '-';
		if (b.len == 0 && !isalnum(ch))
			continue;
		kiln_buf_put(&b, ok ? (const char *)&ch : "-", 1);
	}
	while (b.len > 0 && !isalnum((unsigned char)b.ptr[b.len - 1]))
		b.ptr[--b.len] = '\0';
	if (b.len == 0)
		kiln_buf_puts(&b, "model");
	kiln_buf_puts(&b, ":latest");
	return kiln_buf_detach(&b);
}

static int default_tag(char **out, const struct kiln_manifest *m, const char *dir)
{
	*out = m->image ? strdup(m->image) : repo_from_dir(dir);
	return *out ? 0 : -1;
}

char *kiln_build_manifest_tag(const struct kiln_manifest *m, const char *dir)
{
	char *tag = NULL;
	return default_tag(&tag, m, dir) < 0 ? NULL : tag;
}

int kiln_build_default_tag(char **out, const char *dir, const char *file, struct kiln_error **err)
{
	struct kiln_manifest *m = NULL;
	if (kiln_manifest_load(&m, dir, file, err) < 0)
		return -1;
	int rc = default_tag(out, m, dir);
	kiln_manifest_free(m);
	return rc < 0 ? kiln_error_set(err, KILN_EFAIL, "out of memory") : 0;
}

/* A store that lacks the runtime layer takes the one built with kiln, when it matches (pkg/runtime.h),
 * through the layer cache: the layer's job then finds it there. */
static void seed_runtime(struct kiln_store *s, const struct kiln_runtime *rt, const struct kiln_plan_layer *l)
{
	char key[65];
	layer_key(key, l, 0);
	json_t *c = kiln_store_cache_get(s, key);
	const char *digest = json_string_value(json_object_get(c, "digest"));
	if (!digest || !kiln_store_blob_exists(s, digest)) {
		json_decref(c);
		c = kiln_runtime_import(rt, l, s);
		/* a cache: when it cannot be written, the layer is built */
		if (c)
			kiln_store_cache_put(s, key, c, NULL);
	}
	json_decref(c);
}

static int add_warning(struct kiln_strv *w, char *msg);

/* Put the runtime layer (when the shim is installed) under the code layer, the plan's last, and describe a
 * Python predictor's inputs and outputs (the OpenAPI schema) with the runner's static generator; its
 * warnings (deprecated names: BasePredictor, predict()) join the build's. */
static int add_runtime(struct kiln_plan *plan, const struct kiln_manifest *m, struct kiln_store *s,
                       struct kiln_build_result *r, json_t **schema, struct kiln_error **err)
{
	struct kiln_runtime rt;
	struct kiln_error *e = NULL;
	if (kiln_runtime_locate(&rt, &e) < 0) {
		r->runtime_missing = e ? strdup(e->message) : NULL;
		kiln_error_free(e);
		return 0;
	}
	struct kiln_plan_layer l;
	int rc = 0;
	if (m->predict && strncmp(m->predict, "native:", 7) != 0) {
		json_t *warnings = NULL;
		rc = kiln_schema_describe(schema, s, rt.python_dir, m->dir, m->predict, m->train, &warnings,
		                          &e);
		size_t i;
		json_t *w;
		json_array_foreach(warnings, i, w)
		{
			char *text = strdup(json_string_value(w));
			if (!text || add_warning(&r->warnings, text) < 0)
				free(text);
		}
		json_decref(warnings);
		if (rc == KILN_ENOTFOUND) { /* no Python here: the image still works, the label waits */
			r->schema_missing = strdup(e->message);
			rc = 0;
		} else if (rc < 0) {
			kiln_error_free(*err);
			*err = e;
			e = NULL;
			kiln_error_wrap(err, "%s:%d:%d: run: cannot describe the predictor", m->path,
			                m->predict_pos.line, m->predict_pos.column);
		}
		kiln_error_free(e);
	}
	if (rc == 0 && (rc = kiln_runtime_layer(&l, &rt, s, err)) == 0)
		seed_runtime(s, &rt, &l);
	kiln_runtime_release(&rt);
	if (rc < 0)
		return rc;
	struct kiln_plan_layer *layers = realloc(plan->layers, (plan->n + 1) * sizeof(*layers));
	if (layers == NULL) {
		for (size_t i = 0; i < l.n; i++)
			kiln_tar_entry_release(&l.entries[i]);
		free(l.entries);
		free(l.title);
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	plan->layers = layers;
	size_t code = plan->n - 1;
	memmove(&layers[code + 1], &layers[code], sizeof(*layers));
	layers[code] = l;
	plan->n++;
	/* weight files point at their layers by index: the code layer moved one up, weights did not */
	r->runtime = true;
	return 0;
}

/* A base built by this kiln already holds the very runtime layer (one digest for every image of one kiln):
 * the image gets it once, from the base. */
static void drop_base_runtime(struct kiln_build_result *r, struct kiln_plan *plan, size_t nbase)
{
	struct kiln_built_layer *mine = r->layers + nbase;
	for (size_t i = 0; i < plan->n; i++) {
		if (plan->layers[i].kind != KILN_LAYER_RUNTIME)
			continue;
		bool in_base = false;
		for (size_t b = 0; b < nbase && !in_base; b++)
			in_base = strcmp(r->layers[b].digest, mine[i].digest) == 0;
		if (!in_base)
			continue;
		free((char *)mine[i].media_type);
		free(mine[i].title);
		memmove(&mine[i], &mine[i + 1], (plan->n - i - 1) * sizeof(*mine));
		kiln_plan_drop_layer(plan, i);
		r->n--;
		return;
	}
}

/* serve.weights: registry: the layer of links that stands for the raw weight blobs, after the last of
 * them in R's layers (they stay there, for the report; the image's manifest leaves them out). */
static int add_weight_links(struct kiln_build_result *r, const struct kiln_plan *plan, size_t nbase,
                            struct kiln_store *s, int64_t mtime, struct kiln_error **err)
{
	json_t *list = kiln_weights_registry_list(plan, r->layers + nbase);
	if (list == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	if (json_array_size(list) == 0) { /* no weights: nothing stands for them */
		json_decref(list);
		return 0;
	}
	struct kiln_built_layer links = {0};
	int rc = kiln_weights_links_layer(&links, s, list, mtime, err);
	json_decref(list);
	if (rc < 0)
		return rc;
	struct kiln_built_layer *layers = realloc(r->layers, (r->n + 1) * sizeof(*layers));
	if (layers == NULL) {
		free((char *)links.media_type);
		free(links.title);
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	r->layers = layers;
	size_t at = nbase;
	for (size_t i = nbase; i < r->n; i++)
		if (layers[i].kind == KILN_LAYER_WEIGHTS)
			at = i + 1;
	memmove(&layers[at + 1], &layers[at], (r->n - at) * sizeof(*layers));
	layers[at] = links;
	r->n++;
	return 0;
}

static size_t count_files(const struct kiln_plan_layer *pl)
{
	size_t n = 0;
	for (size_t i = 0; i < pl->n; i++)
		n += pl->entries[i].type == KILN_TAR_FILE;
	return n;
}

/* Add MSG (taken) to the build's warnings, with no position. */
static int add_warning(struct kiln_strv *w, char *msg)
{
	char **v = realloc(w->v, (w->n + 1) * sizeof(*v));
	if (v == NULL)
		return -1;
	w->v = v;
	struct kiln_pos *pos = realloc(w->pos, (w->n + 1) * sizeof(*pos));
	if (pos == NULL)
		return -1;
	w->pos = pos;
	v[w->n] = msg;
	pos[w->n++] = (struct kiln_pos){0, 0};
	return 0;
}

int kiln_build(struct kiln_build_result **out, struct kiln_store *s, const struct kiln_build_options *opt,
               struct kiln_error **err)
{
	double t0 = kiln_monotonic();
	struct kiln_manifest *m = NULL;
	struct kiln_plan *plan = NULL;
	struct kiln_base base = {0};
	struct kiln_env_result envr = {0};
	struct kiln_source src = {0};
	struct kiln_reference *ref = NULL;
	struct kiln_build_result *r = calloc(1, sizeof(*r));
	char *config = NULL, *manifest = NULL;
	json_t *schema = NULL;
	_cleanup_free_ char *tag = NULL;
	char *wsource = NULL;
	int64_t epoch = 0;
	int rc = -1;
	if (r == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	if (kiln_build_epoch(&epoch, err) < 0 || kiln_manifest_load(&m, opt->dir, opt->file, err) < 0)
		goto cleanup;
	r->warnings = m->warnings;
	memset(&m->warnings, 0, sizeof(m->warnings));
	if (opt->tag)
		tag = strdup(opt->tag);
	else if (default_tag(&tag, m, opt->dir) < 0)
		goto oom;
	if (kiln_reference_parse(&ref, tag, err) < 0) {
		if (!opt->tag && m->image)
			kiln_error_wrap(err, "%s: image", m->path);
		goto cleanup;
	}
	if (ref->tag == NULL) {
		rc = kiln_error_set(err, KILN_EINVAL,
		                    "invalid reference '%s': an image is tagged by name, not by digest", tag);
		goto cleanup;
	}
	r->reference = kiln_reference_string(ref);
	r->familiar = kiln_reference_familiar(ref);
	const char *wmode = opt->weights ? opt->weights : m->serve.weights ? m->serve.weights : "image";
	r->weights_registry = strcmp(wmode, "registry") == 0;
	struct kiln_plan_options po;
	kiln_plan_options_init(&po);
	po.manifest = opt->file ? m->path : NULL;
	if (r->weights_registry)
		po.single_threshold = 0; /* every weight file a blob of its own */
	if (kiln_plan_make(&plan, m, &po, err) < 0 ||
	    kiln_base_load(&base, m, s, opt->platform, opt->registry, err) < 0)
		goto cleanup;
	for (size_t i = 0; r->weights_registry && i < plan->n; i++)
		if (plan->layers[i].kind == KILN_LAYER_WEIGHTS)
			plan->layers[i].compression = KILN_COMPRESS_RAW;
	struct kiln_env_options eo = {
	    .secrets = opt->secrets,
	    .nsecrets = opt->nsecrets,
	    .mtime = epoch,
	    .registry = opt->registry,
	    .on_step = opt->on_step,
	    .on_output = opt->on_output,
	    .ctx = opt->ctx,
	    .cancel = opt->cancel,
	};
	/* scratch has no Python to install packages into: the image runs natively, with this machine's */
	if (base.config == NULL && kiln_pip_wanted(m) && m->system_packages.n == 0 && m->pre_install.n == 0 &&
	    m->run_commands.n == 0) {
		char *w = NULL;
		if (asprintf(&w,
		             "%s: python packages are not installed: base 'scratch' has no Python to install "
		             "them into (the image runs only with kiln predict --runtime native, with this "
		             "machine's packages)",
		             m->path) < 0 ||
		    add_warning(&r->warnings, w) < 0) {
			free(w);
			goto oom;
		}
	} else if (kiln_env_build(&envr, s, m, &base, &eo, err) < 0)
		goto cleanup;
	if (kiln_base_python_after_steps(&base, m, s, envr.layers, envr.n, err) < 0)
		goto cleanup;
	r->bytes_written += envr.bytes_written;
	if (kiln_source_describe(&src, opt->dir, err) < 0 || add_runtime(plan, m, s, r, &schema, err) < 0)
		goto cleanup;
	if (asprintf(&r->base, "%s (%s)", base.name, base.reason) < 0) {
		r->base = NULL;
		goto oom;
	}
	for (size_t i = 0; i < base.nwarnings; i++) {
		if (add_warning(&r->warnings, base.warnings[i]) < 0)
			goto oom;
		base.warnings[i] = NULL;
	}

	size_t nbase = json_array_size(base.layers) + envr.n;
	r->n = nbase + plan->n;
	r->layers = calloc(r->n ? r->n : 1, sizeof(*r->layers));
	if (r->layers == NULL)
		goto oom;
	json_t *diff_ids = json_object_get(json_object_get(base.config, "rootfs"), "diff_ids");
	for (size_t i = 0; i < envr.n; i++) { /* after the base's (kiln's layers follow) */
		struct kiln_built_layer *l = &r->layers[nbase - envr.n + i];
		*l = envr.layers[i];
		l->media_type = strdup(envr.layers[i].media_type);
		l->title = envr.layers[i].title ? strdup(envr.layers[i].title) : NULL;
		if (opt->on_layer)
			opt->on_layer(opt->ctx, l);
	}
	for (size_t i = 0; i < nbase - envr.n; i++) {
		json_t *d = json_array_get(base.layers, i);
		struct kiln_built_layer *l = &r->layers[i];
		l->kind = KILN_LAYER_BASE;
		l->media_type =
		    strdup(json_string_value(json_object_get(d, "mediaType")) ?: KILN_MEDIA_LAYER_GZIP);
		snprintf(l->digest, KILN_DIGEST_LEN, "%s", json_string_value(json_object_get(d, "digest")));
		snprintf(l->diff_id, KILN_DIGEST_LEN, "%s",
		         json_string_value(json_array_get(diff_ids, i)) ?: "");
		l->size = (uint64_t)json_integer_value(json_object_get(d, "size"));
		l->cached = true;
	}
	struct kiln_built_layer *mine = r->layers + nbase;
	for (size_t i = 0; i < plan->n; i++) {
		mine[i].kind = plan->layers[i].kind;
		enum kiln_compression c = plan->layers[i].compression;
		mine[i].media_type = strdup(c == KILN_COMPRESS_GZIP  ? KILN_MEDIA_LAYER_GZIP
		                            : c == KILN_COMPRESS_RAW ? KILN_MEDIA_WEIGHT_RAW
		                                                     : KILN_MEDIA_LAYER);
		mine[i].title = strdup(plan->layers[i].title);
		mine[i].files = count_files(&plan->layers[i]);
	}
	if (build_layers(mine, plan, s, opt, epoch, &r->bytes_hashed, &r->bytes_written, err) < 0)
		goto cleanup;
	drop_base_runtime(r, plan, nbase);
	if (r->weights_registry && add_weight_links(r, plan, nbase, s, epoch, err) < 0)
		goto cleanup;
	mine = r->layers + nbase;
	if (r->weights_registry && asprintf(&wsource, "%s/%s", ref->registry, ref->repository) < 0)
		goto oom;

	struct kiln_image_spec spec = {
	    .manifest = m,
	    .plan = plan,
	    .base = &base,
	    .layers = mine,
	    .nlayers = r->n - nbase,
	    .created = epoch,
	    .revision = src.revision,
	    .runtime = r->runtime,
	    .openapi = schema,
	    .source = src.url,
	    .env_layers = envr.layers,
	    .env_created_by = envr.created_by,
	    .nenv = envr.n,
	    .pip_freeze = envr.pip_freeze,
	    .deps = envr.deps,
	    .weights_registry = r->weights_registry,
	    .weights_source = wsource,
	};
	if (kiln_image_assemble(&config, &manifest, &spec, err) < 0)
		goto cleanup;
	if (kiln_store_blob_put(s, config, strlen(config), r->config_digest, err) < 0 ||
	    kiln_store_blob_put(s, manifest, strlen(manifest), r->manifest_digest, err) < 0)
		goto cleanup;
	r->manifest_size = strlen(manifest);
	r->bytes_written += strlen(config) + strlen(manifest);
	if (kiln_store_tag(s, r->reference, r->manifest_digest, r->manifest_size, KILN_MEDIA_MANIFEST, err) <
	    0)
		goto cleanup;
	for (size_t i = 0; i < r->n; i++)
		r->image_size += r->layers[i].size;
	r->skipped = plan->skipped;
	r->nskipped = plan->nskipped;
	plan->skipped = NULL;
	plan->nskipped = 0;
	r->seconds = kiln_monotonic() - t0;
	*out = r;
	r = NULL;
	rc = 0;
	goto cleanup;
oom:
	rc = kiln_error_set(err, KILN_EFAIL, "out of memory");
cleanup:
	if (rc < 0 && err && *err)
		rc = (*err)->code;
	if (rc < 0 && r && opt->warnings_on_failure) {
		for (size_t i = 0; i < base.nwarnings; i++) /* those not moved yet */
			if (base.warnings[i] && add_warning(&r->warnings, base.warnings[i]) == 0)
				base.warnings[i] = NULL;
		*opt->warnings_on_failure = r->warnings;
		memset(&r->warnings, 0, sizeof(r->warnings));
	}
	free(config);
	free(manifest);
	free(wsource);
	json_decref(schema);
	kiln_reference_free(ref);
	kiln_source_release(&src);
	kiln_base_release(&base);
	kiln_env_result_release(&envr);
	kiln_plan_free(plan);
	kiln_manifest_free(m);
	kiln_build_result_free(r);
	return rc;
}

void kiln_strv_release(struct kiln_strv *v)
{
	for (size_t i = 0; v && i < v->n; i++)
		free(v->v[i]);
	if (v) {
		free(v->v);
		free(v->pos);
		*v = (struct kiln_strv){0};
	}
}

void kiln_build_result_free(struct kiln_build_result *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++) {
		free((char *)r->layers[i].media_type);
		free(r->layers[i].title);
	}
	for (size_t i = 0; i < r->nskipped; i++)
		free(r->skipped[i]);
	free(r->skipped);
	for (size_t i = 0; i < r->warnings.n; i++)
		free(r->warnings.v[i]);
	free(r->warnings.v);
	free(r->warnings.pos);
	free(r->base);
	free(r->layers);
	free(r->reference);
	free(r->familiar);
	free(r->runtime_missing);
	free(r->schema_missing);
	free(r);
}

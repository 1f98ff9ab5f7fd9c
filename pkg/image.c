/* SPDX-License-Identifier: Apache-2.0 */
/* image.c: image config and manifest assembly. */
#include "pkg/image.h"
#include "common/json.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "pkg/runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

void kiln_image_time(char out[32], int64_t epoch)
{
	time_t t = (time_t)epoch;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Set NAME=value in the Env array, replacing an earlier value of NAME. */
static void env_set(json_t *env, const char *assignment)
{
	const char *eq = strchr(assignment, '=');
	size_t n = eq ? (size_t)(eq - assignment) + 1 : strlen(assignment);
	for (size_t i = 0; i < json_array_size(env); i++) {
		const char *old = json_string_value(json_array_get(env, i));
		if (old && strncmp(old, assignment, n) == 0) {
			json_array_set_new(env, i, json_string(assignment));
			return;
		}
	}
	json_array_append_new(env, json_string(assignment));
}

/* The weight index label: each weight file, its size and the layer that holds it. */
static json_t *weights_label(const struct kiln_image_spec *spec)
{
	json_t *a = json_array();
	for (size_t i = 0; i < spec->plan->nweights; i++) {
		const struct kiln_plan_file *f = &spec->plan->weights[i];
		json_array_append_new(a,
		                      json_pack("{s:s,s:I,s:s}", "path", f->path, "size", (json_int_t)f->size,
		                                "layer", spec->layers[f->layer].digest));
	}
	return a;
}

static int by_size_desc(const void *a, const void *b)
{
	const struct kiln_plan_file *x = *(const struct kiln_plan_file *const *)a;
	const struct kiln_plan_file *y = *(const struct kiln_plan_file *const *)b;
	if (x->size != y->size)
		return x->size < y->size ? 1 : -1;
	return strcmp(x->path, y->path);
}

/*
 * The serving label: the prefetch order (weight files matching the manifest's prefetch entries, in
 * their order, then the others largest first, paths in the image) and the warm-pool hints.
 */
json_t *kiln_image_prefetch_order(const struct kiln_manifest *m, const struct kiln_plan *p,
                                  const char *workdir)
{
	json_t *order = json_array();
	const struct kiln_plan_file **rest = calloc(p->nweights + 1, sizeof(*rest));
	bool *taken = calloc(p->nweights + 1, sizeof(*taken));
	size_t nrest = 0;
	for (size_t g = 0; g < m->serve.prefetch.n; g++)
		for (size_t i = 0; i < p->nweights; i++)
			if (!taken[i] && kiln_glob_match(m->serve.prefetch.v[g], p->weights[i].path)) {
				taken[i] = true;
				json_array_append_new(order,
				                      json_sprintf("%s/%s", workdir, p->weights[i].path));
			}
	for (size_t i = 0; i < p->nweights; i++)
		if (!taken[i])
			rest[nrest++] = &p->weights[i];
	qsort(rest, nrest, sizeof(*rest), by_size_desc);
	for (size_t i = 0; i < nrest; i++)
		json_array_append_new(order, json_sprintf("%s/%s", workdir, rest[i]->path));
	free(rest);
	free(taken);
	return order;
}

static json_t *serve_label(const struct kiln_image_spec *spec, const char *workdir)
{
	const struct kiln_manifest *m = spec->manifest;
	json_t *s =
	    json_pack("{s:o}", "prefetch", kiln_image_prefetch_order(spec->manifest, spec->plan, workdir));
	if (m->serve.min_instances >= 0)
		json_object_set_new(s, "min_instances", json_integer(m->serve.min_instances));
	if (m->serve.max_instances >= 0)
		json_object_set_new(s, "max_instances", json_integer(m->serve.max_instances));
	if (m->serve.scaledown_window >= 0)
		json_object_set_new(s, "scaledown_window", json_integer(m->serve.scaledown_window));
	if (m->serve.target_concurrency >= 0)
		json_object_set_new(s, "target_concurrency", json_integer(m->serve.target_concurrency));
	if (m->concurrency_max > 0)
		json_object_set_new(s, "concurrency_max", json_integer(m->concurrency_max));
	if (m->serve.warmup)
		json_object_set(s, "warmup", m->serve.warmup);
	return s;
}

static int set_label_json(json_t *labels, const char *name, json_t *value)
{
	char *text = kiln_json_dumps(value, JSON_COMPACT);
	json_decref(value);
	if (text == NULL)
		return -1;
	json_object_set_new(labels, name, json_string(text));
	free(text);
	return 0;
}

static json_t *descriptor(const char *media_type, const char *digest, uint64_t size)
{
	return json_pack("{s:s,s:s,s:I}", "mediaType", media_type, "digest", digest, "size",
	                 (json_int_t)size);
}

/* Layer L into the manifest's LAYERS, the config's DIFF_IDS and HISTORY (CREATED_BY, else kiln's line). */
static void add_layer(json_t *layers, json_t *diff_ids, json_t *history, const struct kiln_built_layer *l,
                      const char *created_by, const char *created)
{
	json_array_append_new(diff_ids, json_string(l->diff_id));
	if (created_by)
		json_array_append_new(history, json_pack("{s:s,s:s,s:s}", "created", created, "created_by",
		                                         created_by, "comment", "kiln"));
	else
		json_array_append_new(history, json_pack("{s:s,s:s+++,s:s}", "created", created, "created_by",
		                                         "kiln build: ", kiln_layer_kind_name(l->kind), " ",
		                                         l->title ? l->title : "", "comment", "kiln"));
	json_t *d = descriptor(l->media_type, l->digest, l->size);
	json_t *ann = json_pack("{s:s}", KILN_ANNOTATION_KIND, kiln_layer_kind_name(l->kind));
	if (l->title)
		json_object_set_new(ann, "org.opencontainers.image.title", json_string(l->title));
	json_object_set_new(d, "annotations", ann);
	json_array_append_new(layers, d);
}

int kiln_image_assemble(char **config_out, char **manifest_out, const struct kiln_image_spec *spec,
                        struct kiln_error **err)
{
	const struct kiln_manifest *m = spec->manifest;
	const char *workdir = "/src";
	char created[32];
	kiln_image_time(created, spec->created);

	json_t *config =
	    spec->base && spec->base->config ? json_deep_copy(spec->base->config) : json_object();
	json_object_set_new(config, "created", json_string(created));
	json_object_set_new(config, "architecture", json_string("amd64"));
	json_object_set_new(config, "os", json_string("linux"));
	json_t *cc = json_object_get(config, "config");
	if (!json_is_object(cc)) {
		cc = json_object();
		json_object_set_new(config, "config", cc);
	}
	json_t *env = json_object_get(cc, "Env");
	if (!json_is_array(env)) {
		env = json_array();
		json_object_set_new(cc, "Env", env);
		json_array_append_new(env, json_string(DEFAULT_PATH));
	}
	for (size_t i = 0; i < m->environment.n; i++)
		env_set(env, m->environment.v[i]);
	json_object_set_new(cc, "WorkingDir", json_string(workdir));
	if (spec->runtime) {
		json_object_set_new(cc, "Entrypoint", kiln_runtime_entrypoint());
		json_object_del(cc, "Cmd");
		env_set(env, "KILN_PYTHON_DIR=" KILN_RUNTIME_PYTHON);
		json_t *order = kiln_image_prefetch_order(spec->manifest, spec->plan, workdir);
		struct kiln_buf b = KILN_BUF_INIT;
		kiln_buf_puts(&b, "KILN_PREFETCH_FILES=");
		for (size_t i = 0; i < json_array_size(order); i++)
			kiln_buf_printf(&b, "%s%s", i ? "\n" : "",
			                json_string_value(json_array_get(order, i)));
		env_set(env, b.ptr);
		kiln_buf_release(&b);
		json_decref(order);
	}
	json_object_set_new(cc, "ExposedPorts", json_pack("{s:{}}", "5000/tcp"));
	json_t *labels = json_object_get(cc, "Labels");
	if (!json_is_object(labels)) {
		labels = json_object();
		json_object_set_new(cc, "Labels", labels);
	}
	set_label_json(labels, "run.cog.config", json_incref(m->json));
	if (spec->openapi)
		set_label_json(labels, "run.cog.openapi_schema", json_incref((json_t *)spec->openapi));
	else
		json_object_del(labels, "run.cog.openapi_schema");
	if (m->gpu) { /* what the NVIDIA container runtime looks for */
		env_set(env, "NVIDIA_VISIBLE_DEVICES=all");
		env_set(env, "NVIDIA_DRIVER_CAPABILITIES=compute,utility");
	}
	json_object_set_new(labels, "org.opencontainers.image.created", json_string(created));
	if (spec->revision)
		json_object_set_new(labels, "org.opencontainers.image.revision", json_string(spec->revision));
	else
		json_object_del(labels, "org.opencontainers.image.revision");
	if (spec->source)
		json_object_set_new(labels, "org.opencontainers.image.source", json_string(spec->source));
	else
		json_object_del(labels, "org.opencontainers.image.source"); /* the base's, not ours */
	if (spec->pip_freeze)
		json_object_set_new(labels, "run.cog.pip_freeze", json_string(spec->pip_freeze));
	if (spec->deps)
		set_label_json(labels, "dev.kiln.dependencies", json_incref((json_t *)spec->deps));
	set_label_json(labels, KILN_LABEL_WEIGHTS, weights_label(spec));
	if (spec->weights_registry) {
		json_object_set_new(labels, KILN_LABEL_WEIGHTS_MODE, json_string("registry"));
		if (spec->weights_source) {
			_cleanup_free_ char *v = NULL;
			if (asprintf(&v, "KILN_WEIGHTS_SOURCE=%s", spec->weights_source) >= 0)
				env_set(env, v);
		}
	} else {
		json_object_del(labels, KILN_LABEL_WEIGHTS_MODE); /* the base's, not ours */
	}
	set_label_json(labels, KILN_LABEL_SERVE, serve_label(spec, workdir));
	if (spec->base && spec->base->name)
		set_label_json(labels, KILN_LABEL_BASE,
		               json_pack("{s:s,s:s?,s:s?,s:s?}", "name", spec->base->name, "reason",
		                         spec->base->reason, "digest", spec->base->digest, "python",
		                         spec->base->python));
	else
		json_object_del(labels, KILN_LABEL_BASE); /* the base's own, not ours */

	/* rootfs and history: the base's, then one entry per layer of ours. */
	json_t *rootfs = json_object_get(config, "rootfs");
	json_t *diff_ids = json_object_get(rootfs, "diff_ids");
	if (!json_is_array(diff_ids)) {
		rootfs = json_pack("{s:s,s:[]}", "type", "layers", "diff_ids");
		json_object_set_new(config, "rootfs", rootfs);
		diff_ids = json_object_get(rootfs, "diff_ids");
	}
	json_t *history = json_object_get(config, "history");
	if (!json_is_array(history)) {
		history = json_array();
		json_object_set_new(config, "history", history);
	}
	json_t *layers = spec->base && spec->base->layers ? json_deep_copy(spec->base->layers) : json_array();
	bool env_done = spec->nenv == 0;
	for (size_t i = 0; i <= spec->nlayers; i++) {
		if (!env_done && (i == spec->nlayers || spec->layers[i].kind != KILN_LAYER_WEIGHTS)) {
			for (size_t e = 0; e < spec->nenv; e++)
				add_layer(layers, diff_ids, history, &spec->env_layers[e],
				          spec->env_created_by[e], created);
			env_done = true;
		}
		if (i < spec->nlayers && strcmp(spec->layers[i].media_type, KILN_MEDIA_WEIGHT_RAW) != 0)
			add_layer(layers, diff_ids, history, &spec->layers[i], NULL, created);
	}

	char *config_text = json_dumps(config, JSON_COMPACT);
	json_decref(config);
	if (config_text == NULL) {
		json_decref(layers);
		return kiln_error_set(err, KILN_EFAIL, "cannot encode the image config");
	}
	char config_digest[KILN_DIGEST_LEN];
	kiln_digest_buffer(config_digest, config_text, strlen(config_text));
	json_t *manifest =
	    json_pack("{s:i,s:s,s:o,s:o,s:{s:s}}", "schemaVersion", 2, "mediaType", KILN_MEDIA_MANIFEST,
	              "config", descriptor(KILN_MEDIA_CONFIG, config_digest, strlen(config_text)), "layers",
	              layers, "annotations", "org.opencontainers.image.created", created);
	char *manifest_text = manifest ? json_dumps(manifest, JSON_COMPACT) : NULL;
	json_decref(manifest);
	if (manifest_text == NULL) {
		free(config_text);
		return kiln_error_set(err, KILN_EFAIL, "cannot encode the image manifest");
	}
	*config_out = config_text;
	*manifest_out = manifest_text;
	return 0;
}

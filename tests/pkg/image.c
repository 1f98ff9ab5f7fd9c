/* SPDX-License-Identifier: Apache-2.0 */
/* tests/pkg/image.c: the image config and manifest assembled from a hand-made manifest, plan and layers. */
#include <criterion/criterion.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers/digest.h"
#include "pkg/image.h"
#include "pkg/manifest.h"
#include "pkg/plan.h"

#define DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define MAX_LAYERS   4

static struct kiln_manifest *m;
static struct kiln_plan *plan;
static struct kiln_built_layer layers[MAX_LAYERS];
static size_t nlayers;
static struct kiln_image_spec spec;
static char *config_text, *manifest_text;
static json_t *config, *manifest;

static void strv_add(struct kiln_strv *s, const char *v)
{
	s->v = realloc(s->v, (s->n + 1) * sizeof(*s->v));
	s->pos = realloc(s->pos, (s->n + 1) * sizeof(*s->pos));
	s->v[s->n] = strdup(v);
	s->pos[s->n] = (struct kiln_pos){1, 1};
	s->n++;
}

static void add_weight(const char *path, uint64_t size, size_t layer)
{
	plan->weights = realloc(plan->weights, (plan->nweights + 1) * sizeof(*plan->weights));
	plan->weights[plan->nweights++] = (struct kiln_plan_file){strdup(path), size, layer};
}

/* Add a layer to the plan and the matching built layer (digests made from its title). */
static void add_layer(enum kiln_layer_kind kind, const char *title, uint64_t bytes)
{
	cr_assert_lt(nlayers, MAX_LAYERS);
	plan->layers = realloc(plan->layers, (plan->n + 1) * sizeof(*plan->layers));
	bool gzip = kind == KILN_LAYER_CODE;
	plan->layers[plan->n++] = (struct kiln_plan_layer){
	    .kind = kind,
	    .compression = gzip ? KILN_COMPRESS_GZIP : KILN_COMPRESS_NONE,
	    .title = strdup(title),
	    .bytes = bytes,
	};
	struct kiln_built_layer *l = &layers[nlayers++];
	memset(l, 0, sizeof(*l));
	l->kind = kind;
	l->media_type = gzip ? KILN_MEDIA_LAYER_GZIP : KILN_MEDIA_LAYER;
	char seed[256];
	snprintf(seed, sizeof(seed), "blob of %s", title);
	kiln_digest_buffer(l->digest, seed, strlen(seed));
	snprintf(seed, sizeof(seed), "tar of %s", title);
	kiln_digest_buffer(l->diff_id, seed, strlen(seed));
	l->size = bytes + 1024;
	l->title = strdup(title);
	l->files = 1;
}

/* The fixture: a manifest with one environment entry, two weight files in layers 0 and 1, a code layer. */
static void setup(void)
{
	m = calloc(1, sizeof(*m));
	m->json = json_pack("{s:s,s:{s:b}}", "predict", "predict.py:Predictor", "build", "gpu", 0);
	m->concurrency_max = 0;
	m->serve.min_instances = -1;
	m->serve.max_instances = -1;
	m->serve.scaledown_window = -1;
	m->serve.target_concurrency = -1;
	strv_add(&m->environment, "A=b");

	plan = calloc(1, sizeof(*plan));
	nlayers = 0;
	add_layer(KILN_LAYER_WEIGHTS, "models/a.bin", 100);
	add_layer(KILN_LAYER_WEIGHTS, "models/b.bin", 200);
	add_layer(KILN_LAYER_CODE, "code", 50);
	add_weight("models/a.bin", 100, 0);
	add_weight("models/b.bin", 200, 1);

	spec = (struct kiln_image_spec){
	    .manifest = m,
	    .plan = plan,
	    .base = NULL,
	    .layers = layers,
	    .nlayers = nlayers,
	    .created = 0,
	};
	config_text = manifest_text = NULL;
	config = manifest = NULL;
}

static void teardown(void)
{
	for (size_t i = 0; i < nlayers; i++)
		free(layers[i].title);
	kiln_plan_free(plan);
	kiln_manifest_free(m);
	free(config_text);
	free(manifest_text);
	json_decref(config);
	json_decref(manifest);
}

TestSuite(image, .init = setup, .fini = teardown);

/* Assemble the spec into config_text/manifest_text and their parsed forms config/manifest. */
static void assemble(void)
{
	struct kiln_error *err = NULL;
	spec.nlayers = nlayers;
	cr_assert_eq(kiln_image_assemble(&config_text, &manifest_text, &spec, &err), 0, "%s",
	             err ? err->message : "");
	json_error_t je;
	config = json_loads(config_text, 0, &je);
	cr_assert_not_null(config, "config is not JSON: %s", je.text);
	manifest = json_loads(manifest_text, 0, &je);
	cr_assert_not_null(manifest, "manifest is not JSON: %s", je.text);
}

static const char *str_at(json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));
	cr_assert_not_null(s, "no string '%s'", key);
	return s;
}

/* The label NAME of the config, parsed as JSON (the caller decrefs). */
static json_t *label_json(const char *name)
{
	json_t *labels = json_object_get(json_object_get(config, "config"), "Labels");
	const char *text = str_at(labels, name);
	json_error_t je;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &je);
	cr_assert_not_null(j, "label %s is not JSON: %s", name, je.text);
	return j;
}

/* Check the serve label's prefetch list against the N paths of WANT. */
static void assert_prefetch(const char *const *want, size_t n)
{
	json_t *serve = label_json(KILN_LABEL_SERVE);
	json_t *order = json_object_get(serve, "prefetch");
	cr_assert(json_is_array(order));
	cr_assert_eq(json_array_size(order), n);
	for (size_t i = 0; i < n; i++)
		cr_assert_str_eq(json_string_value(json_array_get(order, i)), want[i], "prefetch[%zu]", i);
	json_decref(serve);
}

Test(image, config_has_platform_workdir_ports_and_env)
{
	assemble();
	cr_assert_str_eq(str_at(config, "architecture"), "amd64");
	cr_assert_str_eq(str_at(config, "os"), "linux");
	cr_assert_str_eq(str_at(config, "created"), "1970-01-01T00:00:00Z");
	json_t *cc = json_object_get(config, "config");
	cr_assert_str_eq(str_at(cc, "WorkingDir"), "/src");
	json_t *ports = json_object_get(cc, "ExposedPorts");
	cr_assert(json_is_object(json_object_get(ports, "5000/tcp")));
	cr_assert_eq(json_object_size(ports), 1);
	json_t *env = json_object_get(cc, "Env");
	cr_assert(json_is_array(env));
	cr_assert_eq(json_array_size(env), 2);
	cr_assert_str_eq(json_string_value(json_array_get(env, 0)), DEFAULT_PATH);
	cr_assert_str_eq(json_string_value(json_array_get(env, 1)), "A=b");
}

Test(image, environment_entry_replaces_an_earlier_value)
{
	strv_add(&m->environment, "PATH=/opt/bin");
	strv_add(&m->environment, "A=c");
	assemble();
	json_t *env = json_object_get(json_object_get(config, "config"), "Env");
	cr_assert_eq(json_array_size(env), 2);
	cr_assert_str_eq(json_string_value(json_array_get(env, 0)), "PATH=/opt/bin");
	cr_assert_str_eq(json_string_value(json_array_get(env, 1)), "A=c");
}

Test(image, rootfs_diff_ids_and_history_follow_layer_order)
{
	assemble();
	json_t *rootfs = json_object_get(config, "rootfs");
	cr_assert_str_eq(str_at(rootfs, "type"), "layers");
	json_t *diff_ids = json_object_get(rootfs, "diff_ids");
	cr_assert_eq(json_array_size(diff_ids), nlayers);
	for (size_t i = 0; i < nlayers; i++)
		cr_assert_str_eq(json_string_value(json_array_get(diff_ids, i)), layers[i].diff_id);
	json_t *history = json_object_get(config, "history");
	cr_assert_eq(json_array_size(history), nlayers);
	cr_assert_not_null(strstr(str_at(json_array_get(history, 2), "created_by"), "code"));
}

Test(image, labels_hold_cog_config_and_created_time)
{
	assemble();
	json_t *cog = label_json("run.cog.config");
	cr_assert(json_equal(cog, m->json));
	json_decref(cog);
	json_t *labels = json_object_get(json_object_get(config, "config"), "Labels");
	cr_assert_str_eq(str_at(labels, "org.opencontainers.image.created"), "1970-01-01T00:00:00Z");
	cr_assert_null(json_object_get(labels, "org.opencontainers.image.revision"));
	cr_assert_null(json_object_get(labels, "org.opencontainers.image.source"));
}

Test(image, revision_source_and_created_time_are_written)
{
	spec.created = 1700000000;
	spec.revision = "0123abc";
	spec.source = "https://example.com/m.git";
	assemble();
	json_t *labels = json_object_get(json_object_get(config, "config"), "Labels");
	cr_assert_str_eq(str_at(labels, "org.opencontainers.image.created"), "2023-11-14T22:13:20Z");
	cr_assert_str_eq(str_at(config, "created"), "2023-11-14T22:13:20Z");
	cr_assert_str_eq(str_at(labels, "org.opencontainers.image.revision"), "0123abc");
	cr_assert_str_eq(str_at(labels, "org.opencontainers.image.source"), "https://example.com/m.git");
}

Test(image, weights_label_maps_each_file_to_its_layer_digest)
{
	assemble();
	json_t *w = label_json(KILN_LABEL_WEIGHTS);
	cr_assert(json_is_array(w));
	cr_assert_eq(json_array_size(w), 2);
	for (size_t i = 0; i < 2; i++) {
		json_t *e = json_array_get(w, i);
		cr_assert_str_eq(str_at(e, "path"), plan->weights[i].path);
		cr_assert_eq((uint64_t)json_integer_value(json_object_get(e, "size")), plan->weights[i].size);
		cr_assert_str_eq(str_at(e, "layer"), layers[plan->weights[i].layer].digest);
	}
	json_decref(w);
}

Test(image, prefetch_without_hints_is_largest_first)
{
	assemble();
	static const char *const want[] = {"/src/models/b.bin", "/src/models/a.bin"};
	assert_prefetch(want, 2);
	json_t *serve = label_json(KILN_LABEL_SERVE);
	cr_assert_eq(json_object_size(serve), 1, "no hints are written when none are set");
	json_decref(serve);
}

Test(image, prefetch_matches_come_first_then_largest_first)
{
	add_weight("models/c.bin", 300, 1);
	add_weight("models/d.bin", 50, 1);
	strv_add(&m->serve.prefetch, "**/d.*");
	strv_add(&m->serve.prefetch, "models/a.bin");
	assemble();
	static const char *const want[] = {"/src/models/d.bin", "/src/models/a.bin", "/src/models/c.bin",
	                                   "/src/models/b.bin"};
	assert_prefetch(want, 4);
}

Test(image, serve_hints_are_written_when_set)
{
	m->serve.min_instances = 1;
	m->serve.max_instances = 4;
	m->serve.scaledown_window = 0;
	m->serve.target_concurrency = 2;
	m->concurrency_max = 8;
	m->serve.warmup = json_pack("{s:s}", "prompt", "hi");
	assemble();
	json_t *serve = label_json(KILN_LABEL_SERVE);
	cr_assert_eq(json_integer_value(json_object_get(serve, "min_instances")), 1);
	cr_assert_eq(json_integer_value(json_object_get(serve, "max_instances")), 4);
	cr_assert(json_is_integer(json_object_get(serve, "scaledown_window")));
	cr_assert_eq(json_integer_value(json_object_get(serve, "target_concurrency")), 2);
	cr_assert_eq(json_integer_value(json_object_get(serve, "concurrency_max")), 8);
	cr_assert(json_equal(json_object_get(serve, "warmup"), m->serve.warmup));
	json_decref(serve);
}

Test(image, manifest_references_config_by_its_digest)
{
	assemble();
	cr_assert_eq(json_integer_value(json_object_get(manifest, "schemaVersion")), 2);
	cr_assert_str_eq(str_at(manifest, "mediaType"), KILN_MEDIA_MANIFEST);
	json_t *c = json_object_get(manifest, "config");
	cr_assert_str_eq(str_at(c, "mediaType"), KILN_MEDIA_CONFIG);
	char want[KILN_DIGEST_LEN];
	kiln_digest_buffer(want, config_text, strlen(config_text));
	cr_assert_str_eq(str_at(c, "digest"), want);
	cr_assert_eq((size_t)json_integer_value(json_object_get(c, "size")), strlen(config_text));
}

Test(image, manifest_layers_carry_title_and_kind_annotations)
{
	assemble();
	static const char *const kinds[] = {"weights", "weights", "code"};
	json_t *ls = json_object_get(manifest, "layers");
	cr_assert_eq(json_array_size(ls), nlayers);
	for (size_t i = 0; i < nlayers; i++) {
		json_t *d = json_array_get(ls, i);
		cr_assert_str_eq(str_at(d, "mediaType"), layers[i].media_type);
		cr_assert_str_eq(str_at(d, "digest"), layers[i].digest);
		cr_assert_eq((uint64_t)json_integer_value(json_object_get(d, "size")), layers[i].size);
		json_t *ann = json_object_get(d, "annotations");
		cr_assert_str_eq(str_at(ann, "org.opencontainers.image.title"), layers[i].title);
		cr_assert_str_eq(str_at(ann, KILN_ANNOTATION_KIND), kinds[i]);
	}
}

Test(image, base_config_and_layers_come_first)
{
	static const char base_diff[] =
	    "sha256:1111111111111111111111111111111111111111111111111111111111111111";
	static const char base_blob[] =
	    "sha256:2222222222222222222222222222222222222222222222222222222222222222";
	struct kiln_base base = {
	    .name = "oci:/base:v1",
	    .config = json_pack("{s:s,s:{s:[s,s],s:{s:s}},s:{s:s,s:[s]},s:[{s:s}]}", "architecture", "amd64",
	                        "config", "Env", "PATH=/base/bin", "A=old", "Labels",
	                        "org.opencontainers.image.revision", "base-rev", "rootfs", "type", "layers",
	                        "diff_ids", base_diff, "history", "created_by", "base"),
	    .layers = json_pack("[{s:s,s:s,s:i}]", "mediaType", KILN_MEDIA_LAYER_GZIP, "digest", base_blob,
	                        "size", 10),
	};
	spec.base = &base;
	assemble();
	json_t *env = json_object_get(json_object_get(config, "config"), "Env");
	cr_assert_eq(json_array_size(env), 2);
	cr_assert_str_eq(json_string_value(json_array_get(env, 0)), "PATH=/base/bin");
	cr_assert_str_eq(json_string_value(json_array_get(env, 1)), "A=b");
	json_t *labels = json_object_get(json_object_get(config, "config"), "Labels");
	cr_assert_null(json_object_get(labels, "org.opencontainers.image.revision"),
	               "the base's revision is not this image's");
	json_t *diff_ids = json_object_get(json_object_get(config, "rootfs"), "diff_ids");
	cr_assert_eq(json_array_size(diff_ids), nlayers + 1);
	cr_assert_str_eq(json_string_value(json_array_get(diff_ids, 0)), base_diff);
	cr_assert_str_eq(json_string_value(json_array_get(diff_ids, 1)), layers[0].diff_id);
	cr_assert_eq(json_array_size(json_object_get(config, "history")), nlayers + 1);
	json_t *ls = json_object_get(manifest, "layers");
	cr_assert_eq(json_array_size(ls), nlayers + 1);
	cr_assert_str_eq(str_at(json_array_get(ls, 0), "digest"), base_blob);
	cr_assert_str_eq(str_at(json_array_get(ls, 1), "digest"), layers[0].digest);
	/* the base itself is left as it was */
	cr_assert_eq(json_array_size(json_object_get(json_object_get(base.config, "rootfs"), "diff_ids")), 1);
	cr_assert_eq(json_array_size(base.layers), 1);
	json_decref(base.config);
	json_decref(base.layers);
}

Test(image, base_source_label_is_not_inherited)
{
	struct kiln_base base = {
	    .name = "oci:/base:v1",
	    .config =
	        json_pack("{s:{s:{s:s,s:s}}}", "config", "Labels", "org.opencontainers.image.source",
	                  "https://example.com/base.git", "org.opencontainers.image.revision", "base-rev"),
	    .layers = json_array(),
	};
	spec.base = &base;
	assemble();
	json_t *labels = json_object_get(json_object_get(config, "config"), "Labels");
	json_decref(base.config);
	json_decref(base.layers);
	cr_assert_null(json_object_get(labels, "org.opencontainers.image.revision"));
	cr_assert_null(json_object_get(labels, "org.opencontainers.image.source"),
	               "the base's source is not this image's (as for the revision)");
}

Test(image, assembling_twice_gives_identical_text)
{
	strv_add(&m->serve.prefetch, "models/a.bin");
	assemble();
	char *config2 = NULL, *manifest2 = NULL;
	cr_assert_eq(kiln_image_assemble(&config2, &manifest2, &spec, NULL), 0);
	cr_assert_str_eq(config2, config_text);
	cr_assert_str_eq(manifest2, manifest_text);
	free(config2);
	free(manifest2);
}

Test(image, time_is_rfc3339_utc)
{
	char out[32];
	kiln_image_time(out, 0);
	cr_assert_str_eq(out, "1970-01-01T00:00:00Z");
	kiln_image_time(out, 1700000000);
	cr_assert_str_eq(out, "2023-11-14T22:13:20Z");
}

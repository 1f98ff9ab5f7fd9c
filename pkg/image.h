/* SPDX-License-Identifier: Apache-2.0 */
/*
 * image.h: the image config and manifest (OCI image-spec 1.1) of a build: layers, diff_ids, history,
 * Env, WorkingDir, ExposedPorts and the labels tools read (run.cog.config, org.opencontainers.image.*,
 * kiln's weight index and serving hints).
 */
#ifndef KILN_IMAGE_H
#define KILN_IMAGE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "layers/digest.h"
#include "pkg/manifest.h"
#include "pkg/plan.h"

#define KILN_MEDIA_MANIFEST        "application/vnd.oci.image.manifest.v1+json"
#define KILN_MEDIA_INDEX           "application/vnd.oci.image.index.v1+json"
#define KILN_MEDIA_CONFIG          "application/vnd.oci.image.config.v1+json"
#define KILN_MEDIA_LAYER           "application/vnd.oci.image.layer.v1.tar"
#define KILN_MEDIA_LAYER_GZIP      "application/vnd.oci.image.layer.v1.tar+gzip"
#define KILN_MEDIA_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define KILN_MEDIA_DOCKER_LIST     "application/vnd.docker.distribution.manifest.list.v2+json"
/* A weight file's bytes alone, a blob kept out of the layers (serve.weights: registry; CNCF ModelPack's
 * media type) */
#define KILN_MEDIA_WEIGHT_RAW "application/vnd.cncf.model.weight.v1.raw"

/* Labels kiln writes besides Cog's and OCI's. */
#define KILN_LABEL_WEIGHTS "dev.kiln.weights"
#define KILN_LABEL_SERVE   "dev.kiln.serve"
/* "registry" when the weights are blobs in the registry (pkg/weights_registry.h); absent: in the image */
#define KILN_LABEL_WEIGHTS_MODE "dev.kiln.weights.mode"
/* The base the image was built on and why: {"name", "reason", "digest", "python"} (pkg/base.h). */
#define KILN_LABEL_BASE "dev.kiln.base"
/* Annotation on each layer descriptor: its kind ("weights", "code", ...). */
#define KILN_ANNOTATION_KIND "dev.kiln.layer.kind"

/* One layer of the image, as built (or taken from the base). */
struct kiln_built_layer {
	enum kiln_layer_kind kind;
	const char *media_type;
	char digest[KILN_DIGEST_LEN];
	char diff_id[KILN_DIGEST_LEN];
	uint64_t size;
	char *title;         /* org.opencontainers.image.title, NULL for base layers */
	size_t files;        /* regular files in the layer (0 for base layers) */
	bool cached;         /* reused from the layer cache: nothing was read */
	uint64_t bytes_read; /* source bytes read to build it */
};

/* The base an image starts from: nothing (scratch), or another image's config and layers. */
struct kiln_base {
	char *name;     /* as written in the manifest ("scratch", "oci:DIR:TAG"), or the default chosen */
	json_t *config; /* the base image's config, or NULL for scratch */
	json_t *layers; /* array of layer descriptors (may be empty) */
	char *reason;   /* why this base ("a Python predictor without base:, Cog's default") */
	char *digest;   /* its manifest's digest, NULL for scratch */
	char *python;   /* its Python ("3.11"), "3" when only a python3 without version was seen, or NULL */
	bool python_from_steps; /* none, but the build steps may install one: checked after them
	                         * (kiln_base_python_after_steps) */
	char *warnings[4];      /* for the user: a deprecated python_version, a base without Python ... */
	size_t nwarnings;
};

struct kiln_image_spec {
	const struct kiln_manifest *manifest;
	const struct kiln_plan *plan;
	const struct kiln_base *base;
	const struct kiln_built_layer *layers; /* kiln's layers, in plan order (base layers excluded) */
	size_t nlayers;
	int64_t created;       /* SOURCE_DATE_EPOCH, else 0 */
	const char *revision;  /* may be NULL */
	const char *source;    /* may be NULL */
	bool runtime;          /* a runtime layer is there: the shim is the Entrypoint */
	const json_t *openapi; /* the predictor's OpenAPI schema (run.cog.openapi_schema), or NULL */
	/* the environment's layers (pkg/env.h), placed after the weights, with their history lines */
	const struct kiln_built_layer *env_layers;
	char *const *env_created_by;
	size_t nenv;
	const char *pip_freeze; /* run.cog.pip_freeze, or NULL */
	const json_t *deps;     /* dev.kiln.dependencies, or NULL */
	/* serve.weights: registry: the raw weight blobs (pkg/weights_registry.h), left out of the layers
	 * (their links layer is among LAYERS), and the repository they are fetched from ("host/repo") */
	bool weights_registry;
	const char *weights_source;
};

/* Make the config and manifest JSON documents (compact, deterministic); the caller frees both. */
int kiln_image_assemble(char **config_out, char **manifest_out, const struct kiln_image_spec *spec,
                        struct kiln_error **err);

/*
 * The order to prefetch the weight files in: those matching the manifest's serve.prefetch entries, in
 * their order, then the others largest first; each as ROOT/path (ROOT: "/src" in images, the project
 * directory for kiln serve). A new JSON array of strings.
 */
json_t *kiln_image_prefetch_order(const struct kiln_manifest *m, const struct kiln_plan *p, const char *root);

/* RFC 3339 UTC form of an epoch ("1970-01-01T00:00:00Z"). */
void kiln_image_time(char out[32], int64_t epoch);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * build.h: a whole build: manifest → plan → layers (in parallel, through the layer cache) → image → store.
 */
#ifndef KILN_BUILD_H
#define KILN_BUILD_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "pkg/env.h"
#include "pkg/image.h"
#include "pkg/manifest.h"
#include "pkg/store.h"
#include "registry/client.h"

struct kiln_build_options {
	const char *dir;     /* the project directory */
	const char *file;    /* -f: the manifest, or NULL */
	const char *tag;     /* -t: the reference, or NULL (manifest's image, else the directory's name) */
	const char *weights; /* --weights: "image" or "registry", or NULL (serve.weights, else "image") */
	int jobs;            /* layers built at once; 0: one per CPU, at most 8 */
	/* Events for progress output; called from worker threads, so they must be thread-safe. */
	void (*on_layer)(void *ctx, const struct kiln_built_layer *layer);
	void (*on_bytes)(void *ctx, uint64_t total_read, uint64_t total_to_read);
	void *ctx;
	volatile sig_atomic_t *cancel;                /* set by a signal handler to stop the build */
	const struct kiln_registry_options *registry; /* for registry bases (NULL: defaults) */
	const char *platform; /* the platform taken from a multi-platform base ("os/arch[/variant]"; NULL:
	                         linux/amd64) */
	/* The environment's steps (pkg/env.h): secrets for build.run's mounts, each step as it starts, and
	 * their output line by line (called from the building thread; may be NULL). */
	const struct kiln_secret *secrets;
	size_t nsecrets;
	void (*on_step)(void *ctx, const char *what);
	void (*on_output)(void *ctx, const char *line);
	/* When set and the build fails: the warnings gathered until then (the manifest's, the base's), moved
	 * here for the caller to show before the error; free them with kiln_strv_release. */
	struct kiln_strv *warnings_on_failure;
};

void kiln_strv_release(struct kiln_strv *v);

struct kiln_build_result {
	char *reference; /* full form, the store's tag */
	char *familiar;  /* the short form people type */
	char manifest_digest[KILN_DIGEST_LEN];
	uint64_t manifest_size;
	char config_digest[KILN_DIGEST_LEN];
	struct kiln_built_layer *layers; /* base layers first, then kiln's */
	size_t n;
	uint64_t bytes_hashed;  /* source bytes read and hashed */
	uint64_t bytes_written; /* bytes written to the store */
	uint64_t image_size;    /* sum of layer sizes */
	bool runtime;           /* the image has the runtime layer (the shim as its Entrypoint) */
	bool weights_registry;  /* its weight files are blobs left out of its layers (serve.weights) */
	char *runtime_missing;  /* else why not (the shim is not installed) */
	char *schema_missing;   /* why the image has no run.cog.openapi_schema label (no Python here) */
	char *base;     /* the base and why: "python:3.12-slim (a Python predictor without base:, ...)" */
	char **skipped; /* project files left out (sockets, fifos, devices) */
	size_t nskipped;
	struct kiln_strv warnings; /* the manifest's, then the base's (a deprecated python_version ...) */
	double seconds;
};

/* Build the project and tag the image in the store. */
int kiln_build(struct kiln_build_result **out, struct kiln_store *s, const struct kiln_build_options *opt,
               struct kiln_error **err);
void kiln_build_result_free(struct kiln_build_result *r);

/* The reference a build of DIR gets without -t: the manifest's image, else "<dirname>:latest". */
int kiln_build_default_tag(char **out, const char *dir, const char *file, struct kiln_error **err);
/* The same for a manifest already loaded from DIR (NULL on out of memory). */
char *kiln_build_manifest_tag(const struct kiln_manifest *m, const char *dir);

/* SOURCE_DATE_EPOCH, else 0. */
int kiln_build_epoch(int64_t *out, struct kiln_error **err);

#endif

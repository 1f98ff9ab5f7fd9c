/* SPDX-License-Identifier: Apache-2.0 */
/*
 * runtime.h: the runtime layer: the predictor shim, its shared-library closure and the loader (so it runs
 * on any x86-64 Linux base, scratch included), and the Python runner with the bundled cog module. Its
 * content depends only on the kiln installation, so every image built by one kiln shares its digest.
 */
#ifndef KILN_RUNTIME_H
#define KILN_RUNTIME_H

#include <jansson.h>

#include "common/error.h"
#include "pkg/plan.h"
#include "pkg/store.h"

/* Where the runtime's files live inside an image. */
#define KILN_RUNTIME_DIR    "/.kiln"
#define KILN_RUNTIME_LOADER "/.kiln/lib/ld-linux-x86-64.so.2"
#define KILN_RUNTIME_SHIM   "/.kiln/bin/kiln-shim"
#define KILN_RUNTIME_LIBDIR "/.kiln/lib"
#define KILN_RUNTIME_PYTHON "/.kiln/python"

struct kiln_runtime {
	char *shim;       /* the kiln-shim executable on this machine */
	char *python_dir; /* the runner files (kiln_runner.py, kiln_schema.py, cog/) */
	char *prebuilt;   /* the directory of the runtime layer built with kiln (runtime.json), or NULL */
	json_t *record;   /* its runtime.json, or NULL */
};

/*
 * Find the shim and the runner files: $KILN_SHIM and $KILN_PYTHON_DIR, else beside this executable
 * (kiln-shim in the same directory; ../share/kiln/python), else the source tree kiln was built from.
 * KILN_ENOTFOUND when the shim is not there. Also the runtime layer built with kiln, when there is one:
 * kiln-runtime/ beside this executable (the build tree), else ../share/kiln/runtime (installed).
 */
int kiln_runtime_locate(struct kiln_runtime *out, struct kiln_error **err);
void kiln_runtime_release(struct kiln_runtime *rt);

/* The runtime layer of the plan: the shim, each library of its closure (from ldd) under its soname, the
 * loader, and the runner files; gzip, fixed mtime. */
int kiln_runtime_layer(struct kiln_plan_layer *out, const struct kiln_runtime *rt, struct kiln_store *s,
                       struct kiln_error **err);

/*
 * Build the runtime layer into DIR, as the build of kiln does (the hidden `kiln __runtime-layer DIR`): the
 * blob (sha256-<hex>.tar.gz, replacing any other there) and runtime.json: its digest, diff_id and size, the
 * closure ldd gave, and the key of its inputs (see kiln_runtime_import).
 */
int kiln_runtime_prebuild(const char *dir, struct kiln_error **err);

/*
 * The runtime layer kiln was built with, for a fresh store: when L (from kiln_runtime_layer) has the very
 * inputs it was made from (the same entries, the same content of the shim and of the runner files, the
 * same stat fingerprints of the closure's libraries, the same kiln version), its blob goes into S (a hard
 * link, else a copy; its digest checked) and the layer cache's value {digest, diff_id, size} is returned.
 * NULL when there is none or it does not match: the caller then builds the layer, with the same result.
 */
json_t *kiln_runtime_import(const struct kiln_runtime *rt, const struct kiln_plan_layer *l,
                            struct kiln_store *s);

/* A store cache key (64 hex digits) for TAG and the stat fingerprints of the files PATHS (NULL-ended): it
 * changes when any of them changes. */
void kiln_cache_key(char out[65], const char *tag, const char *const *paths);

/* The image's Entrypoint: the loader running the shim with the bundled libraries. */
json_t *kiln_runtime_entrypoint(void);

#endif
